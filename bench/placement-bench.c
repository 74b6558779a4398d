/* SPDX-License-Identifier: Apache-2.0 */
/*
 * How placement cost grows with the number of live regions. Prints figures; asserts
 * nothing about time (see docs/bench-placement.md for how to read them).
 *
 * One 1TiB pool (granule 4KiB) reachable by one device. For each N, the pool holds N
 * regions of 4KiB with a 4KiB hole after each, except one 16KiB hole half-way, so a
 * first fit for more than 4KiB has to get past N small holes. Timed operations:
 *   alloc-tail     compute (32KiB, fits only after the last region) + reserve + release
 *   alloc-hole     compute (16KiB, fits only in the hole half-way) + reserve + release
 *   place-overlap  place-mode compute on a live region's base (refused: overlaps_region)
 *   place-ok       place-mode compute on a free 4KiB hole (accepted)
 *   naive          first fit for 32KiB by a linear scan of a sorted array, for contrast
 * and, as a figure that does not depend on the machine, the depth of a range tree filled
 * the same way (the placer's own tree has the same shape: same inserts, same seed).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "placement/placement.h"

#define KiB (UINT64_C(1) << 10)
#define TiB (UINT64_C(1) << 40)

#define POOL_BASE TiB
#define POOL_SIZE TiB
#define REGION (4 * KiB)
#define STRIDE (8 * KiB)
#define MID_EXTRA (12 * KiB) /* widens the hole half-way to 16KiB */
#define TAIL_SIZE (32 * KiB)
#define HOLE_SIZE (16 * KiB)
#define REPEATS 5

static const size_t sizes[] = { 10, 100, 1000, 10000, 100000 };

enum op {
        OP_ALLOC_TAIL,
        OP_ALLOC_HOLE,
        OP_PLACE_OVERLAP,
        OP_PLACE_OK,
        OP_NAIVE,
        _OP_MAX,
};

static const char *const op_names[_OP_MAX] = {
        [OP_ALLOC_TAIL] = "alloc-tail",
        [OP_ALLOC_HOLE] = "alloc-hole",
        [OP_PLACE_OVERLAP] = "place-overlap",
        [OP_PLACE_OK] = "place-ok",
        [OP_NAIVE] = "naive",
};

static volatile uint64_t sink;

_Noreturn static void die(const char *what) {
        fprintf(stderr, "placement-bench: %s\n", what);
        exit(EXIT_FAILURE);
}

static uint64_t now_ns(void) {
        struct timespec ts;

        if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
                die("clock_gettime failed");
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static uint64_t region_base(size_t i, size_t n) {
        return POOL_BASE + i * STRIDE + (i >= n / 2 ? MID_EXTRA : 0);
}

static uint64_t next_index(uint64_t *state, size_t n) {
        *state = *state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
        return (*state >> 33) % n;
}

struct fixture {
        struct platform plat;
        struct platform_pool pool;
        struct platform_device dev;
        struct platform_range window;
        struct placer *placer;
        struct range_node *nodes;
        struct range_node extra;
        uint64_t *naive_base, *naive_end;
        size_t n;
};

static void fixture_init(struct fixture *f, size_t n) {
        memset(f, 0, sizeof(*f));
        f->pool = (struct platform_pool) {
                .name = (char *) "big",
                .base = POOL_BASE,
                .end = POOL_BASE + POOL_SIZE,
                .granule = 4 * KiB,
                .backing = BACKING_MEMFD,
        };
        f->window = (struct platform_range) { .base = 0, .end = UINT64_MAX };
        f->dev = (struct platform_device) {
                .name = (char *) "nic0",
                .owner = (char *) "hw",
                .dma_mask_bits = 64,
                .dma_max = UINT64_MAX,
                .windows = &f->window,
                .n_windows = 1,
                .alignment = 1,
        };
        f->plat = (struct platform) { .pools = &f->pool, .n_pools = 1, .devices = &f->dev, .n_devices = 1 };
        if (placer_new(&f->plat, &f->placer) < 0)
                die("placer_new failed");

        f->n = n;
        f->nodes = calloc(n, sizeof(*f->nodes));
        f->naive_base = calloc(n, sizeof(*f->naive_base));
        f->naive_end = calloc(n, sizeof(*f->naive_end));
        if (!f->nodes || !f->naive_base || !f->naive_end)
                die("out of memory");
        for (size_t i = 0; i < n; i++) {
                uint64_t base = region_base(i, n);

                if (placer_reserve(f->placer, &f->nodes[i], base, REGION) < 0)
                        die("placer_reserve failed while filling");
                f->naive_base[i] = base;
                f->naive_end[i] = base + REGION;
        }
}

static void fixture_done(struct fixture *f) {
        placer_free(f->placer);
        free(f->nodes);
        free(f->naive_base);
        free(f->naive_end);
}

/* compute + reserve + release; checks the answer so a broken placer cannot look fast */
static uint64_t op_alloc(struct fixture *f, uint64_t size, uint64_t expect) {
        struct placement_request req = { .device = "nic0", .size = size };
        struct placement_result res;
        struct broker_error err;

        if (placer_compute(f->placer, &req, &res, &err) < 0 || res.bounce || res.base != expect)
                die("allocate gave an unexpected answer");
        if (placer_reserve(f->placer, &f->extra, res.base, res.size) < 0)
                die("reserve failed");
        placer_release(f->placer, &f->extra);
        return res.base;
}

static uint64_t op_place(struct fixture *f, uint64_t base, bool expect_ok) {
        struct placement_request req = { .device = "nic0", .size = REGION, .place = true, .base = base };
        struct placement_result res;
        struct broker_error err;
        int r;

        r = placer_compute(f->placer, &req, &res, &err);
        if (expect_ok ? r < 0 : (r >= 0 || err.code != BROKER_E_OVERLAP))
                die("place gave an unexpected answer");
        return r < 0 ? 1 : res.base;
}

/* The obvious alternative: walk the sorted regions until a gap is big enough. */
static uint64_t naive_first_fit(const struct fixture *f, uint64_t size) {
        uint64_t cursor = POOL_BASE;

        for (size_t i = 0; i < f->n; i++) {
                if (f->naive_base[i] - cursor >= size)
                        return cursor;
                cursor = f->naive_end[i];
        }
        return cursor;
}

struct depth {
        uint64_t sum, max;
};

static void depth_walk(const struct range_node *n, uint64_t d, struct depth *acc) {
        for (; n; n = n->right, d++) {
                acc->sum += d;
                if (d > acc->max)
                        acc->max = d;
                depth_walk(n->left, d + 1, acc);
        }
}

static struct depth tree_depth(size_t n) {
        struct range_tree t;
        struct range_node *nodes = calloc(n, sizeof(*nodes));
        struct depth acc = {};

        if (!nodes)
                die("out of memory");
        range_tree_init(&t);
        for (size_t i = 0; i < n; i++)
                if (range_tree_insert(&t, &nodes[i], region_base(i, n), region_base(i, n) + REGION) < 0)
                        die("range_tree_insert failed");
        depth_walk(t.root, 1, &acc);
        free(nodes);
        return acc;
}

static double run(struct fixture *f, enum op op, size_t iters) {
        uint64_t tail = region_base(f->n - 1, f->n) + REGION;
        uint64_t hole = region_base(f->n / 2 - 1, f->n) + REGION;
        uint64_t best = UINT64_MAX, rng = 42;
        uint64_t *idx;

        /* indices drawn up front so the generator is not timed */
        idx = calloc(iters, sizeof(*idx));
        if (!idx)
                die("out of memory");
        for (size_t i = 0; i < iters; i++)
                idx[i] = next_index(&rng, f->n);

        for (int rep = 0; rep < REPEATS; rep++) {
                uint64_t acc = 0, t0 = now_ns(), dt;

                for (size_t i = 0; i < iters; i++) {
                        switch (op) {
                        case OP_ALLOC_TAIL:
                                acc += op_alloc(f, TAIL_SIZE, tail);
                                break;
                        case OP_ALLOC_HOLE:
                                acc += op_alloc(f, HOLE_SIZE, hole);
                                break;
                        case OP_PLACE_OVERLAP:
                                acc += op_place(f, f->naive_base[idx[i]], false);
                                break;
                        case OP_PLACE_OK:
                                acc += op_place(f, f->naive_end[idx[i]], true);
                                break;
                        case OP_NAIVE:
                                acc += naive_first_fit(f, TAIL_SIZE);
                                break;
                        default:
                                die("unknown operation");
                        }
                }
                dt = now_ns() - t0;
                sink += acc;
                if (dt < best)
                        best = dt;
        }
        if (op == OP_NAIVE && naive_first_fit(f, TAIL_SIZE) != tail)
                die("naive first fit gave an unexpected answer");
        free(idx);
        return (double) best / (double) iters;
}

int main(void) {
        double ns[ELEMENTSOF(sizes)][_OP_MAX];
        struct depth depth[ELEMENTSOF(sizes)];

        printf("placement benchmark: one 1TiB pool (granule 4KiB), N live 4KiB regions with 4KiB holes\n");
        printf("and one 16KiB hole half-way; ns per operation, best of %d runs; (xR) = ratio to N=%zu\n\n",
               REPEATS, sizes[0]);

        for (size_t s = 0; s < ELEMENTSOF(sizes); s++) {
                struct fixture f;
                size_t n = sizes[s];

                depth[s] = tree_depth(n);
                fixture_init(&f, n);
                for (enum op op = 0; op < _OP_MAX; op++) {
                        /* ~0.1s per figure: fewer rounds for the linear scan at large N */
                        size_t iters = op == OP_NAIVE ? 20000000 / n : 200000;

                        ns[s][op] = run(&f, op, iters < 100 ? 100 : iters);
                }
                if (placer_count(f.placer) != n)
                        die("region count drifted");
                fixture_done(&f);
        }

        printf("%8s", "N");
        for (enum op op = 0; op < _OP_MAX; op++)
                printf("  %20s", op_names[op]);
        printf("  %16s\n", "tree depth avg/max");
        for (size_t s = 0; s < ELEMENTSOF(sizes); s++) {
                printf("%8zu", sizes[s]);
                for (enum op op = 0; op < _OP_MAX; op++) {
                        char cell[32];

                        snprintf(cell, sizeof(cell), "%.0f (x%.1f)", ns[s][op], ns[s][op] / ns[0][op]);
                        printf("  %20s", cell);
                }
                printf("  %10.1f / %3" PRIu64 "\n", (double) depth[s].sum / (double) sizes[s], depth[s].max);
        }
        printf("\nFrom the first row to the last, N grows x%zu and log2(N) x%.1f.\n",
               sizes[ELEMENTSOF(sizes) - 1] / sizes[0],
               log2((double) sizes[ELEMENTSOF(sizes) - 1]) / log2((double) sizes[0]));
        printf("(sink %" PRIu64 ")\n", (uint64_t) sink);
        return 0;
}
