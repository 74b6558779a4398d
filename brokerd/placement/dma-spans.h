/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * DMA span geometry: the stretches of memory a device can be given. A device's spans are
 * every pool ∩ each DMA window ∩ [0, dma_max], minus the platform's reserved ranges and the
 * device's reserved windows, sorted by base and never empty. A device with no windows gets
 * the default one, [0, dma_max]. Pools must be sorted and disjoint (as loaded); reserved
 * ranges and windows may overlap each other and need not be sorted. Pure functions over a
 * struct platform: the placer builds on them, the platform loader uses them to warn about
 * devices that can reach no pool.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform/platform.h"

/* A stretch of one pool a device may use; [base, end) is never empty. */
struct dma_span {
        uint64_t base, end;
        const struct platform_pool *pool;
};

/*
 * *ret is malloc'ed (caller frees) and NULL when *ret_n is 0. Returns 0, -EINVAL or
 * -ENOMEM; the outputs are untouched on failure.
 */
int dma_spans_of_device(const struct platform *p, const struct platform_device *d, struct dma_span **ret,
                        size_t *ret_n);

/*
 * Whether one of the spans holds a whole granule of its pool at the alignment the placer
 * would use: the larger of the granule and the device's alignment.
 */
bool dma_spans_hold_granule(const struct platform_device *d, const struct dma_span *spans, size_t n);
