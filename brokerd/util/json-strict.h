/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * What json-c (0.16, even with JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8) accepts but
 * JSON (RFC 8259) does not, or accepts and alters: invalid UTF-8 (overlong forms, encoded
 * surrogates, beyond U+10FFFF: util/utf8.h), escapes of lone surrogates (json-c makes them
 * U+FFFD), "\u0000" in a member name (json-c cuts the name there), single-quoted strings,
 * NaN, Infinity and other bare words, numbers outside the JSON grammar ("01", ".5", "1."),
 * integers outside [-2^63, 2^64-1] (json-c clamps them), the integer "-0" (json-c makes it 0)
 * and numbers too large for a double.
 *
 * Run it on a text before or after json-c: it refuses only text that json-c would either refuse
 * itself or take for something that was not written, and leaves the rest of the grammar (an
 * unterminated string, a bad escape, a missing comma) to json-c.
 */
#include <stddef.h>

/*
 * 0 when text (len bytes; text[len] must be a NUL byte) holds none of the above. Otherwise
 * -EBADMSG with the byte offset of the first offence in *ret_offset and a short static reason
 * ("invalid UTF-8", "a lone surrogate escape", …) that never quotes the text in *ret_reason;
 * both may be NULL and are untouched on success.
 */
int json_strict_check(const char *text, size_t len, size_t *ret_offset, const char **ret_reason);
