/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* What every benchmark here needs to turn samples into figures: sorting, percentiles, a summary. */
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

/* Samples in their unit (nanoseconds here), summed in long double so that means stay exact. */
struct bench_summary {
        long double sum;
        uint64_t p50, p90, p99, max;
};

/* Sorts samples in place and summarizes them; n >= 1. */
static inline void bench_summarize(uint64_t *samples, size_t n, struct bench_summary *ret) {
        long double sum = 0;

        bench_sort_u64(samples, n);
        for (size_t i = 0; i < n; i++)
                sum += samples[i];
        *ret = (struct bench_summary) {
                .sum = sum,
                .p50 = bench_percentile(samples, n, 500),
                .p90 = bench_percentile(samples, n, 900),
                .p99 = bench_percentile(samples, n, 990),
                .max = samples[n - 1],
        };
}
