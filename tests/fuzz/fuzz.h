/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The libFuzzer entry points every target in tests/fuzz defines. The same object files are
 * linked either with libFuzzer (clang, -Dfuzzing=true: fuzz-<target>) or with replay.c's
 * main() (any compiler: replay-<target>, the fuzz-replay test suite), so a stored input
 * runs through exactly the code the fuzzer ran it through.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

/* Called once before the first input; argc/argv may be left alone. Returns 0. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
/* One input; returns 0 (libFuzzer reserves other values). Aborts on a broken invariant. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with a message naming the failed check: a finding, whatever the build. */
#define fuzz_assert(expr)                                                                          \
        do {                                                                                       \
                if (!(expr))                                                                       \
                        fuzz_fail(__FILE__, __LINE__, #expr);                                      \
        } while (0)

_Noreturn void fuzz_fail(const char *file, int line, const char *expr);

/* A file that reads back exactly what was last written to it, for the loaders' _file()
 * entry points: a memfd, named by its /proc/self/fd path. Returns 0 or -errno. */
struct fuzz_file {
        int fd;
        char path[64];
};

int fuzz_file_open(struct fuzz_file *f, const char *name);
int fuzz_file_set(struct fuzz_file *f, const void *data, size_t size);

/* docs/examples/platform.json (three pools on two NUMA nodes; nic0 32-bit with a DMA window,
 * gpu0 64-bit, blk0 48-bit with 64KiB alignment and a reserved window), embedded so that a
 * target runs from any directory. */
extern const char fuzz_example_platform[];

struct diag_list;

/*
 * A file loader's answer r for one input: loaded means it set its object (ret, which started as
 * sentinel) and diagnosed no error; refused means the sentinel untouched, an error a loader may
 * return, and (but for -ENOMEM) an error diagnosed. Either way the diagnostics are formatted
 * (to out, as file what) and cleared. Returns whether it loaded.
 */
bool fuzz_check_load(int r, const void *ret, const void *sentinel, struct diag_list *diags, const char *what,
                     FILE *out);
