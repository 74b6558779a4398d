/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz-platform: the platform description loader, entered the way the daemon and brokerctl
 * enter it (platform_load_file(): read with its size limit, NUL check, strict JSON, 64-bit
 * numbers, every semantic check with its JSON path), then what consumes an accepted
 * platform: every device's usable spans, and the placer built from them asked for a few
 * placements. Besides the sanitizers, it checks the loader's contract (platform.h): an
 * accepted platform has sorted, non-empty, non-wrapping ranges, its diagnostics hold no
 * error, and the placer takes it; a refused one leaves *ret alone and says why.
 * Nothing is kept between inputs but the memfd the input is written to.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"
#include "placement/dma-spans.h"
#include "placement/placement.h"
#include "platform/platform.h"
#include "util/diag.h"
#include "util/num.h"

static struct fuzz_file input;
static FILE *devnull;

static void cleanup(void) {
        if (devnull)
                fclose(devnull);
        devnull = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc, (void) argv;
        fuzz_assert(fuzz_file_open(&input, "fuzz-platform") == 0);
        /* Printing the diagnostics is part of what brokerctl does with them. */
        devnull = fopen("/dev/null", "we");
        fuzz_assert(devnull);
        atexit(cleanup);
        return 0;
}

static void check_ranges(const struct platform_range *r, size_t n) {
        for (size_t i = 0; i < n; i++) {
                fuzz_assert(r[i].base < r[i].end);
                fuzz_assert(i == 0 || r[i - 1].base <= r[i].base);
        }
}

static void check_platform(const struct platform *p) {
        for (size_t i = 0; i < p->n_banks; i++)
                fuzz_assert(p->banks[i].base < p->banks[i].end && p->banks[i].name);
        check_ranges(p->reserved, p->n_reserved);
        for (size_t i = 0; i < p->n_pools; i++) {
                const struct platform_pool *pool = &p->pools[i];

                fuzz_assert(pool->name && pool->base < pool->end);
                fuzz_assert(pool->granule >= PLATFORM_MIN_GRANULE && num_is_pow2(pool->granule));
                fuzz_assert(pool->base % pool->granule == 0 && pool->end % pool->granule == 0);
                /* Sorted and disjoint: the placer relies on it. */
                fuzz_assert(i == 0 || p->pools[i - 1].end <= pool->base);
                fuzz_assert((pool->backing == BACKING_MEMFD) == (pool->backing_path == NULL));
                fuzz_assert(platform_find_pool(p, pool->name) == pool);
                fuzz_assert(platform_pool_at(p, pool->base) == pool);
                fuzz_assert(platform_pool_at(p, pool->end - 1) == pool);
        }
        for (size_t i = 0; i < p->n_devices; i++) {
                const struct platform_device *d = &p->devices[i];
                _cleanup_(xfreep) struct dma_span *spans = NULL;
                size_t n = 0;
                int r;

                fuzz_assert(d->name && d->owner);
                fuzz_assert(d->dma_mask_bits >= 12 && d->dma_mask_bits <= 64);
                fuzz_assert(d->alignment >= 1 && num_is_pow2(d->alignment));
                fuzz_assert(platform_find_device(p, d->name) == d);
                check_ranges(d->windows, d->n_windows);
                check_ranges(d->reserved_windows, d->n_reserved_windows);
                /* A window may extend above the mask (a warning: spans clip it), never lie above it. */
                for (size_t j = 0; j < d->n_windows; j++)
                        fuzz_assert(d->windows[j].base <= d->dma_max);

                r = dma_spans_of_device(p, d, &spans, &n);
                fuzz_assert(r == 0 || r == -ENOMEM);
                for (size_t j = 0; r == 0 && j < n; j++) {
                        fuzz_assert(spans[j].base < spans[j].end && spans[j].end - 1 <= d->dma_max);
                        fuzz_assert(spans[j].pool && spans[j].base >= spans[j].pool->base &&
                                    spans[j].end <= spans[j].pool->end);
                        fuzz_assert(j == 0 || spans[j - 1].end <= spans[j].base);
                }
        }
}

/* A few requests per device, each mode once: allocate (any node, node 0) and place at the
 * first pool's base. Their answers are not checked, only that asking is safe. */
static void exercise_placer(const struct platform *p) {
        _cleanup_(placer_freep) struct placer *placer = NULL;
        int r;

        r = placer_new(p, &placer);
        /* The loader's checks include the placer's: what one accepts, the other must take. */
        fuzz_assert(r == 0 || r == -ENOMEM);
        if (r < 0)
                return;
        for (size_t i = 0; i < p->n_devices; i++) {
                const struct placement_request reqs[] = {
                        { .device = p->devices[i].name, .size = 4096 },
                        { .device = p->devices[i].name, .size = UINT64_C(2) << 20, .has_numa_node = true },
                        { .device = p->devices[i].name, .size = UINT64_C(1) << 30, .alignment = UINT64_C(1) << 21 },
                        { .device = p->devices[i].name, .size = 4096, .place = true,
                          .base = p->n_pools > 0 ? p->pools[0].base : 0 },
                };

                for (size_t j = 0; j < ELEMENTSOF(reqs); j++) {
                        struct placement_result res;
                        struct broker_error err = {};

                        (void) placer_compute(placer, &reqs[j], &res, &err);
                }
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct platform *const sentinel = (struct platform *) &input;
        struct platform *p = sentinel;
        struct diag_list diags = DIAG_LIST_INIT;
        int r;

        /* Past the loader's own limit there is nothing new to find, only slower runs. */
        if (size > PLATFORM_MAX_FILE_SIZE + 1)
                return 0;
        fuzz_assert(fuzz_file_set(&input, data, size) == 0);

        r = platform_load_file(input.path, &p, &diags);
        if (fuzz_check_load(r, p, sentinel, &diags, "platform.json", devnull)) {
                check_platform(p);
                exercise_placer(p);
                platform_free(p);
        }
        return 0;
}
