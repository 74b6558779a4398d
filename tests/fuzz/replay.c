/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The replay runner: feeds stored inputs through a fuzz target's LLVMFuzzerTestOneInput()
 * without libFuzzer, so the corpus (and every fixed crash-* reproducer in it) runs in the
 * normal test suite, under any compiler, ASan or valgrind.
 *
 *     replay-<target> PATH...    each PATH a file, or a directory whose files run in name order
 *
 * Exits 0 when every input ran (a broken invariant aborts, as under the fuzzer), 1 when a
 * path could not be read or held no input at all.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "util/macro.h"

static int read_file(const char *path, uint8_t **ret, size_t *ret_size) {
        _cleanup_(fclosep) FILE *f = fopen(path, "re");
        _cleanup_(xfreep) uint8_t *buf = NULL;
        size_t size = 0, cap = 0;

        if (!f)
                return negative_errno();
        for (;;) {
                size_t n;

                if (size == cap) {
                        size_t ncap = cap ? cap * 2 : 4096;
                        uint8_t *nbuf = realloc(buf, ncap);

                        if (!nbuf)
                                return -ENOMEM;
                        buf = nbuf;
                        cap = ncap;
                }
                n = fread(buf + size, 1, cap - size, f);
                size += n;
                if (n == 0) {
                        if (ferror(f))
                                return -EIO;
                        break;
                }
        }
        *ret = TAKE_PTR(buf);
        *ret_size = size;
        return 0;
}

static int run_file(const char *path) {
        _cleanup_(xfreep) uint8_t *data = NULL;
        size_t size;
        int r;

        r = read_file(path, &data, &size);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(-r));
                return r;
        }
        /* libFuzzer hands over a buffer of exactly size bytes: so does this (ASan sees overreads). */
        (void) LLVMFuzzerTestOneInput(size > 0 ? data : NULL, size);
        return 0;
}

static int compare_names(const struct dirent **a, const struct dirent **b) {
        return strcmp((*a)->d_name, (*b)->d_name);
}

static int skip_hidden(const struct dirent *d) {
        return d->d_name[0] != '.';
}

/* Returns the number of inputs run, or -errno. */
static int run_path(const char *path) {
        struct dirent **names = NULL;
        struct stat st;
        int n, count = 0, r = 0;

        if (stat(path, &st) < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return negative_errno();
        }
        if (!S_ISDIR(st.st_mode)) {
                r = run_file(path);
                return r < 0 ? r : 1;
        }

        n = scandir(path, &names, skip_hidden, compare_names);
        if (n < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return negative_errno();
        }
        for (int i = 0; i < n; i++) {
                _cleanup_(xfreep) char *child = NULL;

                if (r >= 0) {
                        if (asprintf(&child, "%s/%s", path, names[i]->d_name) < 0)
                                r = -ENOMEM;
                        else if (stat(child, &st) == 0 && S_ISREG(st.st_mode)) {
                                r = run_file(child);
                                count += r >= 0;
                        }
                }
                free(names[i]);
        }
        free(names);
        return r < 0 ? r : count;
}

int main(int argc, char **argv) {
        int total = 0;

        if (argc < 2) {
                fprintf(stderr, "usage: %s PATH...\n", argv[0]);
                return 1;
        }
        (void) LLVMFuzzerInitialize(&argc, &argv);
        for (int i = 1; i < argc; i++) {
                int r = run_path(argv[i]);

                if (r < 0)
                        return 1;
                total += r;
        }
        printf("%d inputs replayed\n", total);
        return total > 0 ? 0 : 1;
}
