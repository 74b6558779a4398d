/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Random bytes for secrets (attach tokens): the kernel's CSPRNG, read a few hundred bytes at a
 * time so that a share does not pay a system call for its 16 bytes. Bytes handed out are wiped
 * from the reserve at once. Not for a process that forks after using it (brokerd does not):
 * parent and child would hand out the same bytes. 0 or -errno; out untouched on failure.
 */
#include <stddef.h>

int random_bytes(void *out, size_t n);
/* Forgets (and wipes) the reserve: the next random_bytes() reads the kernel. For the fuzzers,
 * whose getrandom() is a counter they set. */
void random_reset(void);
