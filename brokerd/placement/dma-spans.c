/* SPDX-License-Identifier: Apache-2.0 */
#include "placement/dma-spans.h"

#include <errno.h>
#include <stdlib.h>

#include "util/macro.h"
#include "util/num.h"

/* A reserved range or window, merged into a sorted list of disjoint holes. */
struct hole {
        uint64_t base, end;
};

static int hole_compare(const void *a, const void *b) {
        const struct hole *x = a, *y = b;

        if (x->base != y->base)
                return x->base < y->base ? -1 : 1;
        return x->end < y->end ? -1 : x->end > y->end;
}

/* Index of the first hole with end > addr in a sorted list of disjoint holes. */
static size_t holes_first_ending_after(const struct hole *h, size_t n, uint64_t addr) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (h[mid].end <= addr)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

/*
 * The platform's reserved ranges and the device's reserved windows as one sorted list of
 * disjoint, non-empty holes. Both lists are sorted once loaded, so merging them is enough
 * (the loader does this for every device); a hand-built platform that is not gets sorted.
 */
static int collect_holes(const struct platform *p, const struct platform_device *d, struct hole **ret,
                         size_t *ret_n) {
        _cleanup_(xfreep) struct hole *holes = NULL;
        size_t total = p->n_reserved + d->n_reserved_windows, n = 0, i = 0, j = 0;
        bool sorted = true;

        if (total == 0) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        holes = calloc(total, sizeof(*holes));
        if (!holes)
                return -ENOMEM;
        while (i < p->n_reserved || j < d->n_reserved_windows) {
                const struct platform_range *r;

                if (j == d->n_reserved_windows ||
                    (i < p->n_reserved && p->reserved[i].base <= d->reserved_windows[j].base))
                        r = &p->reserved[i++];
                else
                        r = &d->reserved_windows[j++];
                sorted = sorted && (n == 0 || holes[n - 1].base <= r->base);
                holes[n++] = (struct hole) { .base = r->base, .end = r->end };
        }
        if (!sorted)
                qsort(holes, n, sizeof(*holes), hole_compare);

        /* Reserved ranges may nest, and may touch or cover reserved windows. */
        n = 0;
        for (size_t k = 0; k < total; k++) {
                if (holes[k].end <= holes[k].base)
                        continue;
                if (n > 0 && holes[k].base <= holes[n - 1].end) {
                        if (holes[k].end > holes[n - 1].end)
                                holes[n - 1].end = holes[k].end;
                } else
                        holes[n++] = holes[k];
        }
        *ret = TAKE_PTR(holes);
        *ret_n = n;
        return 0;
}

/* [base, end) of pool minus the holes, stored at out unless it is NULL; returns the number of pieces. */
static size_t carve(uint64_t base, uint64_t end, const struct platform_pool *pool, const struct hole *holes,
                    size_t n_holes, struct dma_span *out) {
        size_t n = 0;

        for (size_t i = holes_first_ending_after(holes, n_holes, base); i < n_holes && holes[i].base < end; i++) {
                if (holes[i].base > base) {
                        if (out)
                                out[n] = (struct dma_span) { .base = base, .end = holes[i].base, .pool = pool };
                        n++;
                }
                base = holes[i].end;
                if (base >= end)
                        return n;
        }
        if (out)
                out[n] = (struct dma_span) { .base = base, .end = end, .pool = pool };
        return n + 1;
}

/* Every pool ∩ window ∩ mask, minus the holes: counted, and stored at out unless it is NULL. */
static size_t device_pieces(const struct platform *p, const struct platform_device *d, const struct hole *holes,
                            size_t n_holes, struct dma_span *out) {
        /* The exclusive end of the DMA reach; with a 64-bit mask the last byte is not representable. */
        uint64_t limit = d->dma_max == UINT64_MAX ? UINT64_MAX : d->dma_max + 1;
        const struct platform_range dflt = { .base = 0, .end = limit };
        const struct platform_range *windows = d->n_windows > 0 ? d->windows : &dflt;
        size_t n_windows = d->n_windows > 0 ? d->n_windows : 1, n = 0;

        for (size_t w = 0; w < n_windows; w++) {
                uint64_t lo = windows[w].base, hi = windows[w].end < limit ? windows[w].end : limit;

                if (lo >= hi)
                        continue;
                for (size_t k = platform_pools_first_ending_after(p, lo); k < p->n_pools && p->pools[k].base < hi;
                     k++) {
                        const struct platform_pool *pool = &p->pools[k];
                        uint64_t from = lo > pool->base ? lo : pool->base, to = hi < pool->end ? hi : pool->end;

                        if (from < to)
                                n += carve(from, to, pool, holes, n_holes, out ? out + n : NULL);
                }
        }
        return n;
}

static int span_compare(const void *a, const void *b) {
        const struct dma_span *x = a, *y = b;

        return x->base < y->base ? -1 : x->base > y->base;
}

int dma_spans_of_device(const struct platform *p, const struct platform_device *d, struct dma_span **ret,
                        size_t *ret_n) {
        _cleanup_(xfreep) struct hole *holes = NULL;
        _cleanup_(xfreep) struct dma_span *spans = NULL;
        size_t n_holes, n;
        int r;

        if (!p || !d || !ret || !ret_n)
                return -EINVAL;
        r = collect_holes(p, d, &holes, &n_holes);
        if (r < 0)
                return r;

        /* Count first, then fill an array of the exact size. */
        n = device_pieces(p, d, holes, n_holes, NULL);
        if (n > 0) {
                spans = calloc(n, sizeof(*spans));
                if (!spans)
                        return -ENOMEM;
                device_pieces(p, d, holes, n_holes, spans);
                /* Already in order for sorted, disjoint windows; a hand-built device's may overlap. */
                for (size_t i = 1; i < n; i++)
                        if (spans[i - 1].base > spans[i].base) {
                                qsort(spans, n, sizeof(*spans), span_compare);
                                break;
                        }
        }
        *ret = TAKE_PTR(spans);
        *ret_n = n;
        return 0;
}

bool dma_spans_hold_granule(const struct platform_device *d, const struct dma_span *spans, size_t n) {
        for (size_t k = 0; k < n; k++) {
                const struct platform_pool *pool = spans[k].pool;
                uint64_t align = pool->granule > d->alignment ? pool->granule : d->alignment, start;

                if (num_align_up(spans[k].base, align, &start) >= 0 && start < spans[k].end &&
                    spans[k].end - start >= pool->granule)
                        return true;
        }
        return false;
}
