/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * UTF-8 as RFC 3629 has it: shortest form only, no encoded surrogates (U+D800..U+DFFF),
 * nothing above U+10FFFF. Stricter than json-c 0.16's own check, which lets overlong forms
 * and surrogates through. Pure functions on (pointer, length); NUL is an ordinary character.
 */
#include <stddef.h>

/* The length of the longest prefix of s (n bytes) that is valid UTF-8: n when all of it is. */
size_t utf8_valid_prefix(const char *s, size_t n);
