/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* A unit test's scratch directory (a database, policy files) removed with all it holds. */
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static int tmpdir_remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        return remove(path);
}

/* 0, or -1 with errno set. */
static inline int tmpdir_remove(const char *dir) {
        return nftw(dir, tmpdir_remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}
