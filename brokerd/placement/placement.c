/* SPDX-License-Identifier: Apache-2.0 */
#include "placement/placement.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "placement/dma-spans.h"
#include "util/hashmap.h"
#include "util/names.h"
#include "util/num.h"

/* What one device can use: sorted by base, each span inside one pool and one DMA window. */
struct device_view {
        const struct platform_device *device;
        struct dma_span *spans;
        size_t n_spans;
};

struct placer {
        const struct platform *platform;
        struct range_tree used;
        struct device_view *views;
        size_t n_views;
        struct hashmap *by_name; /* device name -> struct device_view */
};

static uint64_t u64_max(uint64_t a, uint64_t b) {
        return a > b ? a : b;
}

static uint64_t u64_min(uint64_t a, uint64_t b) {
        return a < b ? a : b;
}

/* The device's DMA reach as an exclusive end; UINT64_MAX stands for 2^64 with a 64-bit mask. */
static uint64_t dma_cap(const struct platform_device *d) {
        return d->dma_max == UINT64_MAX ? UINT64_MAX : d->dma_max + 1;
}

/* What the spans rely on: sorted disjoint pools with power-of-two granules, sane devices. */
static int platform_check(const struct platform *plat) {
        for (size_t i = 0; i < plat->n_pools; i++) {
                const struct platform_pool *pool = &plat->pools[i];

                if (pool->end <= pool->base || !num_is_pow2(pool->granule))
                        return -EINVAL;
                if (i > 0 && plat->pools[i - 1].end > pool->base)
                        return -EINVAL;
        }
        for (size_t i = 0; i < plat->n_devices; i++) {
                const struct platform_device *d = &plat->devices[i];

                if (!d->name || (d->alignment != 0 && !num_is_pow2(d->alignment)))
                        return -EINVAL;
        }
        return 0;
}

void placer_free(struct placer *p) {
        if (!p)
                return;
        hashmap_free(p->by_name);
        for (size_t i = 0; i < p->n_views; i++)
                free(p->views[i].spans);
        free(p->views);
        free(p);
}

int placer_new(const struct platform *platform, struct placer **ret) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        int r;

        if (!platform || !ret)
                return -EINVAL;
        r = platform_check(platform);
        if (r < 0)
                return r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->platform = platform;
        range_tree_init(&p->used);

        r = hashmap_new(&hashmap_string_ops, &p->by_name);
        if (r < 0)
                return r;
        if (platform->n_devices > 0) {
                p->views = calloc(platform->n_devices, sizeof(*p->views));
                if (!p->views)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < platform->n_devices; i++) {
                struct device_view *v = &p->views[i];

                v->device = &platform->devices[i];
                r = dma_spans_of_device(platform, v->device, &v->spans, &v->n_spans);
                if (r < 0)
                        return r;
                p->n_views++;
                r = hashmap_put(p->by_name, v->device->name, v);
                if (r == -EEXIST)
                        return -EINVAL; /* two devices with one name */
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(p);
        return 0;
}

static uint64_t device_alignment(const struct platform_device *d) {
        return d->alignment ? d->alignment : 1;
}

/* Alignment and rounded size of the request in pool; -ERANGE when rounding overflows. */
static int request_geometry(const struct platform_device *d, const struct platform_pool *pool,
                            const struct placement_request *req, uint64_t *ret_size, uint64_t *ret_align) {
        uint64_t size;

        if (num_align_up(req->size, pool->granule, &size) < 0)
                return -ERANGE;
        *ret_size = size;
        *ret_align = u64_max(u64_max(pool->granule, device_alignment(d)), req->alignment);
        return 0;
}

/* First of ranges (sorted by base) overlapping [base, end), or NULL. */
static const struct platform_range *range_hit(const struct platform_range *ranges, size_t n, uint64_t base,
                                              uint64_t end) {
        for (size_t i = 0; i < n && ranges[i].base < end; i++)
                if (ranges[i].end > base)
                        return &ranges[i];
        return NULL;
}

static bool inside_window(const struct platform_device *d, uint64_t base, uint64_t end) {
        if (d->n_windows == 0)
                return end <= dma_cap(d);
        for (size_t i = 0; i < d->n_windows && d->windows[i].base <= base; i++)
                if (end <= d->windows[i].end)
                        return true;
        return false;
}

static int place(struct placer *p, const struct device_view *v, const struct placement_request *req,
                 struct placement_result *ret, struct broker_error *err) {
        const struct platform_device *d = v->device;
        const struct platform_pool *pool;
        const struct platform_range *hit;
        const struct range_node *busy;
        char b0[NUM_FMT_MAX], b1[NUM_FMT_MAX], b2[NUM_FMT_MAX], b3[NUM_FMT_MAX];
        uint64_t base = req->base, end, size, align;

        if (num_range_end(base, req->size, &end) < 0)
                return broker_error_set(err, BROKER_E_INVALID, "%s + %s wraps past the end of the address space",
                                        num_format_addr(base, b0), num_format_size(req->size, b1));

        pool = platform_pool_at(p->platform, base);
        if (!pool)
                return broker_error_set(err, BROKER_E_NOT_IN_POOL, "%s is in no pool", num_format_addr(base, b0));
        if (request_geometry(d, pool, req, &size, &align) < 0 || num_range_end(base, size, &end) < 0 ||
            end > pool->end)
                return broker_error_set(err, BROKER_E_NOT_IN_POOL,
                                        "size %s at %s does not fit in pool %s, which ends at %s",
                                        num_format_size(req->size, b0), num_format_addr(base, b1), pool->name,
                                        num_format_addr(pool->end, b2));

        if (req->has_numa_node && pool->numa_node != req->numa_node)
                return broker_error_set(err, BROKER_E_NUMA_MISMATCH, "pool %s is on NUMA node %" PRIu32 ", not %" PRIu32,
                                        pool->name, pool->numa_node, req->numa_node);

        if (!num_is_aligned(base, align)) {
                char src[NAME_MAX_LEN + 32];

                if (align == req->alignment)
                        snprintf(src, sizeof(src), "the request");
                else if (align == device_alignment(d) && align > pool->granule)
                        snprintf(src, sizeof(src), "device %s", d->name);
                else
                        snprintf(src, sizeof(src), "the granule of pool %s", pool->name);
                return broker_error_set(err, BROKER_E_NOT_ALIGNED, "%s is not aligned to %s, as required by %s",
                                        num_format_addr(base, b0), num_format_size(align, b1), src);
        }

        if (end - 1 > d->dma_max)
                return broker_error_set(err, BROKER_E_BEYOND_DMA_MASK,
                                        "[%s, %s) goes beyond the %u-bit DMA mask of %s", num_format_addr(base, b0),
                                        num_format_addr(end, b1), d->dma_mask_bits, d->name);

        if (!inside_window(d, base, end))
                return broker_error_set(err, BROKER_E_NOT_DMA_REACHABLE, "[%s, %s) is not inside one DMA window of %s",
                                        num_format_addr(base, b0), num_format_addr(end, b1), d->name);

        hit = range_hit(p->platform->reserved, p->platform->n_reserved, base, end);
        if (hit)
                return broker_error_set(err, BROKER_E_RESERVED, "[%s, %s) overlaps the reserved range %s%s[%s, %s)",
                                        num_format_addr(base, b0), num_format_addr(end, b1),
                                        hit->name ?: "", hit->name ? " " : "", num_format_addr(hit->base, b2),
                                        num_format_addr(hit->end, b3));
        hit = range_hit(d->reserved_windows, d->n_reserved_windows, base, end);
        if (hit)
                return broker_error_set(err, BROKER_E_RESERVED,
                                        "[%s, %s) overlaps the reserved window %s%s[%s, %s) of %s",
                                        num_format_addr(base, b0), num_format_addr(end, b1),
                                        hit->name ?: "", hit->name ? " " : "", num_format_addr(hit->base, b2),
                                        num_format_addr(hit->end, b3), d->name);

        busy = range_tree_find_overlap(&p->used, base, end);
        if (busy)
                return broker_error_set(err, BROKER_E_OVERLAP, "[%s, %s) overlaps the region at [%s, %s)",
                                        num_format_addr(base, b0), num_format_addr(end, b1),
                                        num_format_addr(busy->base, b2),
                                        num_format_addr(busy->end, b3));

        *ret = (struct placement_result) {
                .pool = pool,
                .base = base,
                .size = size,
                .alignment = align,
        };
        return 0;
}

static bool span_eligible(const struct dma_span *s, const struct placement_request *req) {
        return !req->has_numa_node || s->pool->numa_node == req->numa_node;
}

/* Why nothing fit, for the bounce reason: sizes and alignment needed, free and largest bytes. */
static void explain_no_room(const struct placer *p, const struct device_view *v, const struct placement_request *req,
                            struct placement_result *res) {
        const struct platform_device *d = v->device;
        char b0[NUM_FMT_MAX], b1[NUM_FMT_MAX], b2[NUM_FMT_MAX];
        uint64_t free_bytes = 0, largest = 0, needed = UINT64_MAX, needed_align = UINT64_MAX, covered = 0;

        for (size_t i = 0; i < v->n_spans; i++) {
                const struct dma_span *s = &v->spans[i];
                uint64_t size, align, start;

                if (!span_eligible(s, req))
                        continue;
                if (request_geometry(d, s->pool, req, &size, &align) == 0) {
                        needed = u64_min(needed, size);
                        needed_align = u64_min(needed_align, align);
                }
                largest = u64_max(largest, s->end - s->base);
                /* spans could overlap if windows did: count each byte once */
                start = u64_max(s->base, covered);
                if (start < s->end) {
                        free_bytes += (s->end - start) - range_tree_used(&p->used, start, s->end);
                        covered = s->end;
                }
        }
        if (needed == UINT64_MAX) {
                /* rounding overflowed in every pool: the request itself is the measure */
                needed = req->size;
                needed_align = u64_max(device_alignment(d), req->alignment);
        }

        if (largest < needed)
                snprintf(res->reason, sizeof(res->reason),
                         "request larger than any reachable span: largest is %s, %s needed",
                         num_format_size(largest, b0), num_format_size(needed, b1));
        else if (free_bytes < needed)
                snprintf(res->reason, sizeof(res->reason), "reachable pools exhausted: %s free, %s needed",
                         num_format_size(free_bytes, b0), num_format_size(needed, b1));
        else
                snprintf(res->reason, sizeof(res->reason),
                         "reachable pools fragmented: %s free but no %s aligned to %s contiguous",
                         num_format_size(free_bytes, b0), num_format_size(needed, b1),
                         num_format_size(needed_align, b2));
        res->size = needed;
        res->alignment = needed_align;
}

static int allocate(struct placer *p, const struct device_view *v, const struct placement_request *req,
                    struct placement_result *ret) {
        const struct platform_device *d = v->device;
        struct placement_result res = { .bounce = true };
        size_t n_eligible = 0;

        for (size_t i = 0; i < v->n_spans; i++) {
                const struct dma_span *s = &v->spans[i];
                uint64_t size, align, x;

                if (!span_eligible(s, req))
                        continue;
                n_eligible++;
                if (request_geometry(d, s->pool, req, &size, &align) < 0)
                        continue;
                if (range_tree_first_fit(&p->used, s->base, s->end, size, align, &x) == 0) {
                        *ret = (struct placement_result) {
                                .pool = s->pool,
                                .base = x,
                                .size = size,
                                .alignment = align,
                        };
                        return 0;
                }
        }

        /* No room: work out why, for the bounce reason. */
        if (v->n_spans == 0)
                snprintf(res.reason, sizeof(res.reason), "device %s can reach no pool", d->name);
        else if (n_eligible == 0)
                snprintf(res.reason, sizeof(res.reason), "no pool reachable by %s on NUMA node %" PRIu32, d->name,
                         req->numa_node);
        else
                explain_no_room(p, v, req, &res);
        *ret = res;
        return 0;
}

int placer_compute(struct placer *p, const struct placement_request *req, struct placement_result *ret,
                   struct broker_error *err) {
        const struct device_view *v;
        char b0[NUM_FMT_MAX];
        uint64_t rounded;

        if (!name_is_valid(req->device))
                return broker_error_set(err, BROKER_E_INVALID, "invalid device name");
        v = hashmap_get(p->by_name, req->device);
        if (!v)
                return broker_error_set(err, BROKER_E_UNKNOWN_DEVICE, "unknown device %s", req->device);
        if (req->size == 0)
                return broker_error_set(err, BROKER_E_INVALID, "size must not be 0");
        if (req->alignment != 0 && !num_is_pow2(req->alignment))
                return broker_error_set(err, BROKER_E_INVALID, "alignment %s is not a power of two",
                                        num_format_addr(req->alignment, b0));
        /* Every granule is at least the minimum; rounding to a bigger one is checked per pool. */
        if (num_align_up(req->size, PLATFORM_MIN_GRANULE, &rounded) < 0)
                return broker_error_set(err, BROKER_E_INVALID, "size %s cannot be rounded up to a page",
                                        num_format_addr(req->size, b0));

        if (req->place)
                return place(p, v, req, ret, err);
        return allocate(p, v, req, ret);
}

int placer_reserve(struct placer *p, struct range_node *node, uint64_t base, uint64_t size) {
        uint64_t end;
        int r;

        if (size == 0)
                return -EINVAL;
        r = num_range_end(base, size, &end);
        if (r < 0)
                return r;
        return range_tree_insert(&p->used, node, base, end);
}

void placer_release(struct placer *p, struct range_node *node) {
        /* Only take out this very node: another range may have been reserved at the same base since. */
        if (range_tree_find(&p->used, node->base) == node)
                range_tree_remove(&p->used, node->base);
}

size_t placer_count(const struct placer *p) {
        return p->used.n;
}

uint64_t placer_used(const struct placer *p, uint64_t lo, uint64_t hi) {
        return range_tree_used(&p->used, lo, hi);
}
