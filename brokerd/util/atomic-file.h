/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * A small file replaced whole: written to "<path>.tmp" (mode, no symlink followed) by fill, then
 * renamed over path, so a reader (or a start after a crash) sees the old file or the new one,
 * never half of one. No fsync: for files in the runtime directory (tmpfs), which describe state
 * that does not outlive a reboot either. fill returns 0 or -errno; so does the call, leaving no
 * "<path>.tmp" behind on failure.
 */
#include <stdio.h>
#include <sys/types.h>

int atomic_file_write(const char *path, mode_t mode, int (*fill)(FILE *f, const void *userdata), const void *userdata);
