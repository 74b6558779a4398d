/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* What every benchmark here needs to turn samples into figures: sorting and percentiles. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static inline int bench_cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return (x > y) - (x < y);
}

static inline void bench_sort_u64(uint64_t *samples, size_t n) {
        qsort(samples, n, sizeof(*samples), bench_cmp_u64);
}

/*
 * Nearest rank, in integers: the smallest sample with at least permille/1000 of them at or
 * below it (99% of 2000 is rank 1980, not 1981 by a rounding error). sorted must hold n >= 1.
 */
static inline uint64_t bench_percentile(const uint64_t *sorted, size_t n, unsigned permille) {
        size_t rank = (n * permille + 999) / 1000;

        if (rank < 1)
                rank = 1;
        return sorted[rank - 1];
}
