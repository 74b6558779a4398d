/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Where a share may go. For each device the placer precomputes its usable spans
 * (placement/dma-spans.h): every pool intersected with the device's DMA windows and mask,
 * minus the platform's reserved ranges and the device's reserved windows. A request is then either
 *  - allocate: the lowest-address aligned fit among the spans (optionally on one NUMA node),
 *    with alignment = max(pool granule, device alignment, requested alignment) and size
 *    rounded up to the pool granule; or
 *  - place: a caller-proposed base checked against the same constraints and against every
 *    range in use.
 * placer_compute() only decides; placer_reserve()/placer_release() change the set in use.
 * No room is not an error: the result says bounce, with a reason. Errors (negative errno
 * with err filled) are for requests that are wrong.
 */
#include <stdbool.h>
#include <stdint.h>

#include "placement/rangetree.h"
#include "platform/platform.h"
#include "util/error.h"

#define PLACEMENT_REASON_MAX 192

struct placement_request {
        const char *device;
        uint64_t size;
        bool has_numa_node;
        uint32_t numa_node;
        uint64_t alignment; /* 0: no extra alignment; else a power of two */
        bool place;         /* place mode: base is the caller's proposal */
        uint64_t base;
};

struct placement_result {
        bool bounce;
        char reason[PLACEMENT_REASON_MAX]; /* why bounce */
        const struct platform_pool *pool;
        uint64_t base, size, alignment;
};

struct placer;

/* The placer borrows platform, which must outlive it. */
int placer_new(const struct platform *platform, struct placer **ret);
void placer_free(struct placer *p);
DEFINE_CLEANUP(struct placer, placer_free);

int placer_compute(struct placer *p, const struct placement_request *req, struct placement_result *ret,
                   struct broker_error *err);
/* Marks [base, base+size) in use through node; -EEXIST if it overlaps a range in use. */
int placer_reserve(struct placer *p, struct range_node *node, uint64_t base, uint64_t size);
void placer_release(struct placer *p, struct range_node *node);
/* Number of ranges in use; bytes in use within [lo, hi). */
size_t placer_count(const struct placer *p);
uint64_t placer_used(const struct placer *p, uint64_t lo, uint64_t hi);
