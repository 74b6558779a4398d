/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "placement/placement.h"
#include "util/macro.h"

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define TOP UINT64_C(0xfffffffffffff000)

/*
 * Platforms are built by hand here, the way platform.h describes a loaded one (arrays
 * sorted by base, dma_max = 2^bits - 1, a default window [0, dma_max]), so these tests
 * depend on nothing but the model.
 */
#define MAX_ITEMS 8

struct tplat {
        struct platform p;
        struct platform_pool pools[MAX_ITEMS];
        struct platform_range reserved[MAX_ITEMS];
        struct platform_device devices[MAX_ITEMS];
        struct platform_range windows[MAX_ITEMS][MAX_ITEMS];
        struct platform_range rwindows[MAX_ITEMS][MAX_ITEMS];
        bool default_window[MAX_ITEMS];
};

static void tp_init(struct tplat *t) {
        memset(t, 0, sizeof(*t));
        t->p.pools = t->pools;
        t->p.reserved = t->reserved;
        t->p.devices = t->devices;
}

/* Inserts item into a base-sorted array of n elements of size sz. */
#define SORTED_INSERT(arr, n, item)                                                     \
        do {                                                                            \
                size_t _i = (n);                                                        \
                assert_true(_i < MAX_ITEMS);                                            \
                while (_i > 0 && (arr)[_i - 1].base > (item).base) {                    \
                        (arr)[_i] = (arr)[_i - 1];                                      \
                        _i--;                                                           \
                }                                                                       \
                (arr)[_i] = (item);                                                     \
                (n)++;                                                                  \
        } while (0)

static void tp_pool(struct tplat *t, const char *name, uint64_t base, uint64_t size, uint32_t numa, uint64_t granule) {
        struct platform_pool pool = {
                .name = (char *) name,
                .base = base,
                .end = base + size,
                .numa_node = numa,
                .granule = granule,
                .backing = BACKING_MEMFD,
        };

        SORTED_INSERT(t->pools, t->p.n_pools, pool);
}

static void tp_reserved(struct tplat *t, const char *name, uint64_t base, uint64_t size) {
        struct platform_range r = { .base = base, .end = base + size, .name = (char *) name };

        SORTED_INSERT(t->reserved, t->p.n_reserved, r);
}

static size_t tp_device(struct tplat *t, const char *name, unsigned bits, uint64_t alignment) {
        size_t i = t->p.n_devices++;
        struct platform_device *d = &t->devices[i];

        assert_true(i < MAX_ITEMS);
        d->name = (char *) name;
        d->owner = (char *) "hw";
        d->dma_mask_bits = bits;
        d->dma_max = bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
        d->alignment = alignment;
        d->windows = t->windows[i];
        d->reserved_windows = t->rwindows[i];
        t->windows[i][0] = (struct platform_range) { .base = 0, .end = bits == 64 ? UINT64_MAX : d->dma_max + 1 };
        d->n_windows = 1;
        t->default_window[i] = true;
        return i;
}

static void tp_window(struct tplat *t, size_t dev, uint64_t base, uint64_t size) {
        struct platform_range r = { .base = base, .end = base + size };

        if (t->default_window[dev]) {
                t->devices[dev].n_windows = 0;
                t->default_window[dev] = false;
        }
        SORTED_INSERT(t->windows[dev], t->devices[dev].n_windows, r);
}

static void tp_rwindow(struct tplat *t, size_t dev, const char *name, uint64_t base, uint64_t size) {
        struct platform_range r = { .base = base, .end = base + size, .name = (char *) name };

        SORTED_INSERT(t->rwindows[dev], t->devices[dev].n_reserved_windows, r);
}

/* ---- helpers ---- */

static struct placer *new_placer(const struct tplat *t) {
        struct placer *p = NULL;

        assert_int_equal(placer_new(&t->p, &p), 0);
        assert_non_null(p);
        return p;
}

static struct placement_result alloc_ok(struct placer *p, const struct placement_request *req) {
        struct placement_result res;
        struct broker_error err = {};

        memset(&res, 0xaa, sizeof(res));
        assert_int_equal(placer_compute(p, req, &res, &err), 0);
        return res;
}

/* Allocates, asserts it did not bounce, and returns the base. */
static uint64_t alloc_base(struct placer *p, const char *dev, uint64_t size) {
        struct placement_request req = { .device = dev, .size = size };
        struct placement_result res = alloc_ok(p, &req);

        assert_false(res.bounce);
        return res.base;
}

static void expect_bounce(struct placer *p, const struct placement_request *req, const char *reason) {
        struct placement_result res = alloc_ok(p, req);

        assert_true(res.bounce);
        assert_null(res.pool);
        assert_string_equal(res.reason, reason);
}

static void expect_error(struct placer *p, const struct placement_request *req, enum broker_code code,
                         int errnum, const char *needle) {
        struct placement_result res, before;
        struct broker_error err = {};

        memset(&res, 0x5a, sizeof(res));
        before = res;
        assert_int_equal(placer_compute(p, req, &res, &err), -errnum);
        assert_string_equal(broker_code_name(err.code), broker_code_name(code));
        if (!strstr(err.message, needle))
                fail_msg("message \"%s\" lacks \"%s\"", err.message, needle);
        /* a refused request leaves the result alone */
        assert_memory_equal(&res, &before, sizeof(res));
}

static struct placement_result place_ok(struct placer *p, const char *dev, uint64_t base, uint64_t size) {
        struct placement_request req = { .device = dev, .size = size, .place = true, .base = base };
        struct placement_result res = alloc_ok(p, &req);

        assert_false(res.bounce);
        assert_int_equal(res.base, base);
        return res;
}

static void place_err(struct placer *p, const char *dev, uint64_t base, uint64_t size, enum broker_code code,
                      const char *needle) {
        struct placement_request req = { .device = dev, .size = size, .place = true, .base = base };

        expect_error(p, &req, code, broker_code_errno(code), needle);
}

static void reserve(struct placer *p, struct range_node *n, uint64_t base, uint64_t size) {
        assert_int_equal(placer_reserve(p, n, base, size), 0);
}

/* ---- validation ---- */

static void test_request_validation(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct tplat t;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "p0", 1 * GiB, 1 * GiB, 0, 4 * KiB);
        tp_device(&t, "nic0", 64, 1);
        p = new_placer(&t);

        assert_int_equal(alloc_base(p, "nic0", 4 * KiB), 1 * GiB);
        expect_error(p, &(struct placement_request) { .device = "nic1", .size = 4 * KiB }, BROKER_E_UNKNOWN_DEVICE,
                     ENODEV, "nic1");
        expect_error(p, &(struct placement_request) { .device = "bad name", .size = 4 * KiB }, BROKER_E_INVALID,
                     EINVAL, "device name");
        expect_error(p, &(struct placement_request) { .device = NULL, .size = 4 * KiB }, BROKER_E_INVALID, EINVAL,
                     "device name");
        expect_error(p, &(struct placement_request) { .device = "nic0", .size = 0 }, BROKER_E_INVALID, EINVAL,
                     "size");
        expect_error(p, &(struct placement_request) { .device = "nic0", .size = UINT64_MAX - 10 }, BROKER_E_INVALID,
                     EINVAL, "rounded");
        expect_error(p, &(struct placement_request) { .device = "nic0", .size = 4 * KiB, .alignment = 3 * KiB },
                     BROKER_E_INVALID, EINVAL, "power of two");
}

static void test_placer_new_checks_platform(void **state) {
        struct placer *p = NULL;
        struct tplat t;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "p0", 0, 1 * GiB, 0, 4 * KiB);
        tp_pool(&t, "p1", 2 * GiB, 1 * GiB, 0, 4 * KiB);
        tp_device(&t, "nic0", 64, 1);
        assert_int_equal(placer_new(&t.p, &p), 0);
        placer_free(p);
        p = NULL;

        /* overlapping pools */
        t.pools[1].base = 1 * GiB - 4 * KiB;
        assert_int_equal(placer_new(&t.p, &p), -EINVAL);
        assert_null(p);
        t.pools[1].base = 2 * GiB;
        /* a granule that is not a power of two */
        t.pools[1].granule = 12 * KiB;
        assert_int_equal(placer_new(&t.p, &p), -EINVAL);
        t.pools[1].granule = 4 * KiB;
        /* two devices with one name */
        tp_device(&t, "nic0", 32, 1);
        assert_int_equal(placer_new(&t.p, &p), -EINVAL);
        assert_null(p);
}

/* ---- alignment ---- */

static void test_align_granule(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct placement_result res;
        struct tplat t;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "huge", 1 * GiB, 1 * GiB, 0, 2 * MiB);
        tp_device(&t, "nic0", 64, 1);
        p = new_placer(&t);

        res = place_ok(p, "nic0", 1 * GiB + 2 * MiB, 4 * KiB);
        assert_int_equal(res.alignment, 2 * MiB);
        assert_string_equal(res.pool->name, "huge");
        place_err(p, "nic0", 1 * GiB + 4 * KiB, 4 * KiB, BROKER_E_NOT_ALIGNED, "not aligned to 2MiB, as required by the granule of pool huge");
}

static void test_align_device(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct range_node n;
        struct placement_result res;
        struct tplat t;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "p0", 1 * GiB, 1 * GiB, 0, 4 * KiB);
        tp_device(&t, "gpu0", 64, 64 * KiB);
        tp_device(&t, "nic0", 64, 1);
        p = new_placer(&t);

        res = place_ok(p, "gpu0", 1 * GiB + 64 * KiB, 4 * KiB);
        assert_int_equal(res.alignment, 64 * KiB);
        assert_int_equal(res.size, 4 * KiB);
        place_err(p, "gpu0", 1 * GiB + 4 * KiB, 4 * KiB, BROKER_E_NOT_ALIGNED, "not aligned to 64KiB, as required by device gpu0");
        /* the same base is fine for a device without the constraint */
        place_ok(p, "nic0", 1 * GiB + 4 * KiB, 4 * KiB);

        /* allocate mode skips to the next 64KiB boundary */
        reserve(p, &n, 1 * GiB, 4 * KiB);
        assert_int_equal(alloc_base(p, "gpu0", 4 * KiB), 1 * GiB + 64 * KiB);
        assert_int_equal(alloc_base(p, "nic0", 4 * KiB), 1 * GiB + 4 * KiB);
}

static void test_align_request(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct placement_result res;
        struct tplat t;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "p0", 1 * GiB + 4 * KiB, 1 * GiB, 0, 4 * KiB);
        tp_device(&t, "nic0", 64, 16 * KiB);
        p = new_placer(&t);

        res = place_ok(p, "nic0", 1 * GiB + 1 * MiB, 4 * KiB);
        assert_int_equal(res.alignment, 16 * KiB);
        res = alloc_ok(p, &(struct placement_request) {
                .device = "nic0", .size = 4 * KiB, .place = true, .base = 1 * GiB + 1 * MiB, .alignment = 1 * MiB });
        assert_false(res.bounce);
        assert_int_equal(res.alignment, 1 * MiB);
        expect_error(p, &(struct placement_request) {
                .device = "nic0", .size = 4 * KiB, .place = true, .base = 1 * GiB + 64 * KiB, .alignment = 1 * MiB },
                BROKER_E_NOT_ALIGNED, EINVAL, "not aligned to 1MiB, as required by the request");

        /* the pool starts 4KiB past 1GiB: the first 1MiB boundary inside is 1GiB + 1MiB */
        res = alloc_ok(p, &(struct placement_request) { .device = "nic0", .size = 4 * KiB, .alignment = 1 * MiB });
        assert_false(res.bounce);
        assert_int_equal(res.base, 1 * GiB + 1 * MiB);
        assert_int_equal(alloc_base(p, "nic0", 4 * KiB), 1 * GiB + 16 * KiB);
}

/* ---- DMA ---- */

static void test_dma_mask(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct range_node n;
        struct tplat t;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "p0", 3 * GiB, 2 * GiB, 0, 4 * KiB);
        tp_device(&t, "nic0", 32, 1);
        tp_device(&t, "nic1", 64, 1);
        p = new_placer(&t);

        place_ok(p, "nic0", 4 * GiB - 4 * KiB, 4 * KiB);
        place_err(p, "nic0", 4 * GiB - 4 * KiB, 8 * KiB, BROKER_E_BEYOND_DMA_MASK, "32-bit DMA mask of nic0");
        place_ok(p, "nic1", 4 * GiB - 4 * KiB, 8 * KiB);

        /* allocate stays below 4GiB for nic0 */
        reserve(p, &n, 3 * GiB, 1 * GiB - 4 * KiB);
        assert_int_equal(alloc_base(p, "nic0", 4 * KiB), 4 * GiB - 4 * KiB);
        expect_bounce(p, &(struct placement_request) { .device = "nic0", .size = 8 * KiB },
                      "reachable pools exhausted: 4KiB free, 8KiB needed");
        assert_int_equal(alloc_base(p, "nic1", 8 * KiB), 4 * GiB - 4 * KiB);
        expect_bounce(p, &(struct placement_request) { .device = "nic0", .size = 1 * GiB + 4 * KiB },
                      "request larger than any reachable span: largest is 1GiB, 1048580KiB needed");
}

static void test_dma_windows(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct tplat t;
        size_t d;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "p0", 0, 4 * GiB, 0, 4 * KiB);
        d = tp_device(&t, "nic0", 64, 1);
        tp_window(&t, d, 2 * GiB, 16 * MiB);
        tp_window(&t, d, 1 * GiB, 16 * MiB);
        tp_window(&t, d, 1 * GiB + 16 * MiB, 16 * MiB); /* adjacent to the one before */
        p = new_placer(&t);

        place_ok(p, "nic0", 1 * GiB, 16 * MiB);
        place_ok(p, "nic0", 2 * GiB + 8 * MiB, 8 * MiB);
        place_err(p, "nic0", 2 * GiB + 8 * MiB, 16 * MiB, BROKER_E_NOT_DMA_REACHABLE, "not inside one DMA window of nic0");
        place_err(p, "nic0", 512 * MiB, 4 * KiB, BROKER_E_NOT_DMA_REACHABLE, "DMA window");
        /* adjacent windows are still two windows */
        place_err(p, "nic0", 1 * GiB + 8 * MiB, 16 * MiB, BROKER_E_NOT_DMA_REACHABLE, "DMA window");

        assert_int_equal(alloc_base(p, "nic0", 4 * KiB), 1 * GiB);
        expect_bounce(p, &(struct placement_request) { .device = "nic0", .size = 32 * MiB },
                      "request larger than any reachable span: largest is 16MiB, 32MiB needed");
}

/* ---- reserved ranges ---- */

static void test_platform_reserved(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct tplat t;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "p0", 0, 1 * GiB, 0, 4 * KiB);
        tp_reserved(&t, "firmware", 0, 1 * MiB);
        tp_reserved(&t, NULL, 8 * MiB, 4 * KiB);
        tp_device(&t, "nic0", 64, 1);
        p = new_placer(&t);

        assert_int_equal(alloc_base(p, "nic0", 4 * KiB), 1 * MiB);
        place_ok(p, "nic0", 1 * MiB, 7 * MiB);
        place_err(p, "nic0", 0, 4 * KiB, BROKER_E_RESERVED, "overlaps the reserved range firmware [0x0, 0x100000)");
        place_err(p, "nic0", 4 * MiB, 4 * MiB + 4 * KiB, BROKER_E_RESERVED, "overlaps the reserved range [0x800000, 0x801000)");
        place_ok(p, "nic0", 8 * MiB + 4 * KiB, 4 * KiB);
        /* allocate goes around the unnamed one too */
        expect_bounce(p, &(struct placement_request) { .device = "nic0", .size = 1 * GiB - 1 * MiB },
                      "request larger than any reachable span: largest is 1040380KiB, 1023MiB needed");
}

static void test_device_reserved_window(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct tplat t;
        size_t d;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "p0", 16 * MiB, 1 * GiB, 0, 4 * KiB);
        d = tp_device(&t, "nic0", 64, 1);
        tp_rwindow(&t, d, "msi", 16 * MiB, 1 * MiB);
        tp_device(&t, "nic1", 64, 1);
        p = new_placer(&t);

        place_err(p, "nic0", 16 * MiB + 512 * KiB, 4 * KiB, BROKER_E_RESERVED, "reserved window msi [0x1000000, 0x1100000) of nic0");
        place_ok(p, "nic1", 16 * MiB + 512 * KiB, 4 * KiB);
        place_ok(p, "nic0", 17 * MiB, 4 * KiB);
        assert_int_equal(alloc_base(p, "nic0", 4 * KiB), 17 * MiB);
        assert_int_equal(alloc_base(p, "nic1", 4 * KiB), 16 * MiB);
}

/* ---- NUMA ---- */

static void test_numa(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct placement_result res;
        struct tplat t;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "n0", 1 * GiB, 1 * GiB, 0, 4 * KiB);
        tp_pool(&t, "n1", 5 * GiB, 1 * GiB, 1, 4 * KiB);
        tp_pool(&t, "n2", 8 * GiB, 1 * GiB, 2, 4 * KiB);
        tp_device(&t, "nic0", 64, 1);
        tp_device(&t, "nic32", 32, 1);
        p = new_placer(&t);

        res = alloc_ok(p, &(struct placement_request) { .device = "nic0", .size = 4 * KiB, .has_numa_node = true, .numa_node = 1 });
        assert_false(res.bounce);
        assert_int_equal(res.base, 5 * GiB);
        assert_string_equal(res.pool->name, "n1");
        assert_int_equal(alloc_base(p, "nic0", 4 * KiB), 1 * GiB);

        res = alloc_ok(p, &(struct placement_request) {
                .device = "nic0", .size = 4 * KiB, .place = true, .base = 1 * GiB, .has_numa_node = true, .numa_node = 0 });
        assert_false(res.bounce);
        expect_error(p, &(struct placement_request) {
                .device = "nic0", .size = 4 * KiB, .place = true, .base = 1 * GiB, .has_numa_node = true, .numa_node = 1 },
                BROKER_E_NUMA_MISMATCH, EINVAL, "pool n0 is on NUMA node 0, not 1");

        expect_bounce(p, &(struct placement_request) { .device = "nic0", .size = 4 * KiB, .has_numa_node = true, .numa_node = 3 },
                      "no pool reachable by nic0 on NUMA node 3");
        /* node 1 exists but nic32 cannot reach it */
        expect_bounce(p, &(struct placement_request) { .device = "nic32", .size = 4 * KiB, .has_numa_node = true, .numa_node = 1 },
                      "no pool reachable by nic32 on NUMA node 1");
        res = alloc_ok(p, &(struct placement_request) { .device = "nic32", .size = 4 * KiB, .has_numa_node = true, .numa_node = 0 });
        assert_false(res.bounce);
        assert_int_equal(res.base, 1 * GiB);
}

/* ---- wrap-around near 2^64 ---- */

static void test_wrap_around(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct tplat t;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "top", TOP - 16 * MiB, 16 * MiB, 0, 4 * KiB);
        tp_device(&t, "nic0", 64, 1);
        tp_device(&t, "nic48", 48, 1);
        p = new_placer(&t);

        place_ok(p, "nic0", TOP - 4 * KiB, 4 * KiB);
        /* fits as asked, but rounded up to the granule it would end at 2^64 */
        place_err(p, "nic0", TOP - 4 * KiB, 4 * KiB + 1, BROKER_E_NOT_IN_POOL, "does not fit in pool top");
        place_err(p, "nic0", TOP - 4 * KiB, 8 * KiB - 1, BROKER_E_NOT_IN_POOL, "does not fit in pool top");
        place_err(p, "nic0", TOP - 16 * MiB - 4 * KiB, 8 * KiB, BROKER_E_NOT_IN_POOL, "is in no pool");
        place_err(p, "nic0", TOP, 1, BROKER_E_NOT_IN_POOL, "0xfffffffffffff000 is in no pool");
        place_err(p, "nic0", TOP, 4 * KiB, BROKER_E_INVALID, "wraps"); /* ends exactly at 2^64 */
        place_err(p, "nic0", UINT64_MAX - 0xfff, 8 * KiB, BROKER_E_INVALID, "wraps");
        place_err(p, "nic0", TOP - 4 * KiB, 8 * KiB, BROKER_E_INVALID, "wraps");
        place_err(p, "nic0", TOP - 4 * KiB, UINT64_MAX - 0x2000, BROKER_E_INVALID, "wraps");
        /* a 48-bit device cannot reach up there */
        place_err(p, "nic48", TOP - 4 * KiB, 4 * KiB, BROKER_E_BEYOND_DMA_MASK, "48-bit");

        assert_int_equal(alloc_base(p, "nic0", 16 * MiB), TOP - 16 * MiB);
        expect_bounce(p, &(struct placement_request) { .device = "nic0", .size = 16 * MiB + 4 * KiB },
                      "request larger than any reachable span: largest is 16MiB, 16388KiB needed");
        expect_bounce(p, &(struct placement_request) { .device = "nic48", .size = 4 * KiB },
                      "device nic48 can reach no pool");
}

/* ---- overlap and rounding ---- */

static void test_place_overlap(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct range_node n;
        struct tplat t;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "p0", 1 * GiB, 1 * GiB, 0, 4 * KiB);
        tp_device(&t, "nic0", 64, 1);
        p = new_placer(&t);

        reserve(p, &n, 1 * GiB + 2 * MiB, 2 * MiB);
        place_err(p, "nic0", 1 * GiB + 2 * MiB, 4 * KiB, BROKER_E_OVERLAP, "overlaps the region at [0x40200000, 0x40400000)");
        place_err(p, "nic0", 1 * GiB + 1 * MiB, 2 * MiB, BROKER_E_OVERLAP, "overlaps the region");
        place_ok(p, "nic0", 1 * GiB, 2 * MiB);              /* touches it from below */
        place_ok(p, "nic0", 1 * GiB + 4 * MiB, 2 * MiB);    /* and from above */
}

/* Each check fires only when every earlier one passed: the order is part of the contract. */
static void test_place_error_order(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct range_node n;
        struct tplat t;
        size_t d;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "p0", 3 * GiB, 2 * GiB, 1, 2 * MiB);
        tp_reserved(&t, "fw", 3 * GiB, 2 * MiB);
        d = tp_device(&t, "nic0", 32, 1);
        tp_window(&t, d, 3 * GiB, 512 * MiB);
        p = new_placer(&t);
        reserve(p, &n, 3 * GiB, 4 * MiB); /* under the reserved range too */

#define ORDER(base_, numa_, code_)                                                                       \
        expect_error(p, &(struct placement_request) { .device = "nic0", .size = 2 * MiB, .place = true, \
                                                       .base = (base_), .has_numa_node = true,          \
                                                       .numa_node = (numa_) },                          \
                     (code_), broker_code_errno(code_), "")

        ORDER(2 * GiB, 0, BROKER_E_NOT_IN_POOL);                        /* before numa */
        ORDER(4 * GiB + 4 * KiB, 0, BROKER_E_NUMA_MISMATCH);            /* before alignment */
        ORDER(4 * GiB + 4 * KiB, 1, BROKER_E_NOT_ALIGNED);              /* before the mask */
        ORDER(4 * GiB, 1, BROKER_E_BEYOND_DMA_MASK);                    /* before the windows */
        ORDER(3 * GiB + 512 * MiB, 1, BROKER_E_NOT_DMA_REACHABLE);
        ORDER(3 * GiB, 1, BROKER_E_RESERVED);                           /* before overlap */
        ORDER(3 * GiB + 2 * MiB, 1, BROKER_E_OVERLAP);
#undef ORDER
        place_ok(p, "nic0", 3 * GiB + 4 * MiB, 2 * MiB);
}

static void test_round_to_granule(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct range_node n;
        struct placement_result res;
        struct tplat t;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "small", 1 * GiB, 8 * MiB, 0, 4 * KiB);
        tp_pool(&t, "huge", 2 * GiB, 1 * GiB, 0, 2 * MiB);
        tp_device(&t, "nic0", 64, 1);
        p = new_placer(&t);

        res = place_ok(p, "nic0", 2 * GiB, 1);
        assert_int_equal(res.size, 2 * MiB);
        res = place_ok(p, "nic0", 1 * GiB, 1);
        assert_int_equal(res.size, 4 * KiB);
        place_ok(p, "nic0", 1 * GiB + 8 * MiB - 4 * KiB, 4 * KiB);
        place_err(p, "nic0", 1 * GiB + 8 * MiB - 4 * KiB, 4 * KiB + 1, BROKER_E_NOT_IN_POOL,
                  "size 0x1001 at 0x407ff000 does not fit in pool small, which ends at 0x40800000");
        res = place_ok(p, "nic0", 2 * GiB, 2 * MiB + 1);
        assert_int_equal(res.size, 4 * MiB);

        /* rounded up, the request reaches a region it would not touch as asked */
        reserve(p, &n, 2 * GiB + 2 * MiB, 2 * MiB);
        place_ok(p, "nic0", 2 * GiB, 2 * MiB);
        place_ok(p, "nic0", 2 * GiB, 2 * MiB - 4 * KiB + 1);
        place_err(p, "nic0", 2 * GiB, 2 * MiB + 1, BROKER_E_OVERLAP, "overlaps the region");

        /* allocate rounds per pool: 5MiB is 5MiB in small, 6MiB in huge */
        res = alloc_ok(p, &(struct placement_request) { .device = "nic0", .size = 5 * MiB });
        assert_string_equal(res.pool->name, "small");
        assert_int_equal(res.size, 5 * MiB);
        res = alloc_ok(p, &(struct placement_request) { .device = "nic0", .size = 9 * MiB });
        assert_string_equal(res.pool->name, "huge");
        assert_int_equal(res.size, 10 * MiB);
        assert_int_equal(res.alignment, 2 * MiB);
        assert_int_equal(res.base, 2 * GiB + 4 * MiB);
}

static void test_lowest_address_across_pools(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct range_node n;
        struct placement_result res;
        struct tplat t;

        (void) state;
        tp_init(&t);
        /* declared high first; the model keeps them sorted */
        tp_pool(&t, "high", 8 * GiB, 1 * GiB, 0, 4 * KiB);
        tp_pool(&t, "mid", 4 * GiB, 64 * MiB, 0, 4 * KiB);
        tp_pool(&t, "low", 1 * GiB, 16 * MiB, 0, 4 * KiB);
        tp_device(&t, "nic0", 64, 1);
        p = new_placer(&t);

        res = alloc_ok(p, &(struct placement_request) { .device = "nic0", .size = 4 * KiB });
        assert_string_equal(res.pool->name, "low");
        assert_int_equal(res.base, 1 * GiB);
        /* too big for low: the next pool up, not the biggest */
        res = alloc_ok(p, &(struct placement_request) { .device = "nic0", .size = 32 * MiB });
        assert_string_equal(res.pool->name, "mid");
        assert_int_equal(res.base, 4 * GiB);
        /* a hole freed low down is found again before anything higher */
        reserve(p, &n, 1 * GiB + 4 * KiB, 16 * MiB - 4 * KiB);
        assert_int_equal(alloc_base(p, "nic0", 4 * KiB), 1 * GiB);
        assert_int_equal(alloc_base(p, "nic0", 8 * KiB), 4 * GiB);
}

/* ---- bounces ---- */

static void test_bounce_exhausted(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct range_node n;
        struct tplat t;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "p0", 1 * GiB, 64 * MiB, 0, 4 * KiB);
        tp_device(&t, "nic0", 64, 1);
        p = new_placer(&t);

        reserve(p, &n, 1 * GiB, 63 * MiB);
        expect_bounce(p, &(struct placement_request) { .device = "nic0", .size = 4 * MiB },
                      "reachable pools exhausted: 1MiB free, 4MiB needed");
        assert_int_equal(alloc_base(p, "nic0", 1 * MiB), 1 * GiB + 63 * MiB);
}

static void test_bounce_fragmented(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct range_node n[4];
        struct placement_result res;
        struct tplat t;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "p0", 1 * GiB, 8 * MiB, 0, 4 * KiB);
        tp_device(&t, "nic0", 64, 1);
        p = new_placer(&t);

        for (unsigned i = 0; i < 4; i++)
                reserve(p, &n[i], 1 * GiB + 2 * i * MiB, 1 * MiB);
        expect_bounce(p, &(struct placement_request) { .device = "nic0", .size = 2 * MiB },
                      "reachable pools fragmented: 4MiB free but no 2MiB aligned to 4KiB contiguous");
        /* long enough holes, but none at a 2MiB boundary */
        expect_bounce(p, &(struct placement_request) { .device = "nic0", .size = 1 * MiB, .alignment = 2 * MiB },
                      "reachable pools fragmented: 4MiB free but no 1MiB aligned to 2MiB contiguous");
        res = alloc_ok(p, &(struct placement_request) { .device = "nic0", .size = 1 * MiB, .alignment = 1 * MiB });
        assert_false(res.bounce);
        assert_int_equal(res.base, 1 * GiB + 1 * MiB);
        assert_int_equal(res.alignment, 1 * MiB);
}

static void test_bounce_no_reachable_pool(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct tplat t;
        size_t d;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "high", 8 * GiB, 1 * GiB, 0, 4 * KiB);
        tp_pool(&t, "low", 1 * GiB, 1 * MiB, 0, 4 * KiB);
        tp_reserved(&t, "bios", 1 * GiB, 1 * MiB); /* all of low */
        tp_device(&t, "nic32", 32, 1);
        tp_device(&t, "nic64", 64, 1);
        d = tp_device(&t, "blind", 64, 1);
        tp_window(&t, d, 16 * GiB, 1 * GiB);
        p = new_placer(&t);

        expect_bounce(p, &(struct placement_request) { .device = "nic32", .size = 4 * KiB }, "device nic32 can reach no pool");
        expect_bounce(p, &(struct placement_request) { .device = "blind", .size = 4 * KiB }, "device blind can reach no pool");
        assert_int_equal(alloc_base(p, "nic64", 4 * KiB), 8 * GiB);
}

/* ---- reserve / release ---- */

static void test_reserve_release(void **state) {
        _cleanup_(placer_freep) struct placer *p = NULL;
        struct range_node a, b, c;
        struct tplat t;
        uint64_t x;

        (void) state;
        tp_init(&t);
        tp_pool(&t, "p0", 1 * GiB, 16 * MiB, 0, 4 * KiB);
        tp_device(&t, "nic0", 64, 1);
        p = new_placer(&t);

        assert_int_equal(placer_count(p), 0);
        x = alloc_base(p, "nic0", 8 * MiB);
        assert_int_equal(x, 1 * GiB);
        /* compute alone changes nothing */
        assert_int_equal(alloc_base(p, "nic0", 8 * MiB), 1 * GiB);
        reserve(p, &a, x, 8 * MiB);
        assert_int_equal(placer_count(p), 1);
        assert_int_equal(placer_used(p, 0, UINT64_MAX), 8 * MiB);
        assert_int_equal(placer_used(p, 1 * GiB + 4 * MiB, 2 * GiB), 4 * MiB);
        assert_int_equal(placer_reserve(p, &b, x + 4 * MiB, 8 * MiB), -EEXIST);
        assert_int_equal(placer_reserve(p, &b, x + 8 * MiB, 0), -EINVAL);
        assert_int_equal(placer_reserve(p, &b, UINT64_MAX - 10, 4 * KiB), -ERANGE);
        assert_int_equal(placer_count(p), 1);

        reserve(p, &b, alloc_base(p, "nic0", 8 * MiB), 8 * MiB);
        assert_int_equal(b.base, 1 * GiB + 8 * MiB);
        expect_bounce(p, &(struct placement_request) { .device = "nic0", .size = 4 * KiB },
                      "reachable pools exhausted: 0 free, 4KiB needed");

        placer_release(p, &a);
        assert_int_equal(placer_count(p), 1);
        assert_int_equal(alloc_base(p, "nic0", 8 * MiB), 1 * GiB);
        place_ok(p, "nic0", 1 * GiB, 8 * MiB);

        /* releasing a stale node does not take out the range now at its base */
        reserve(p, &c, 1 * GiB, 4 * KiB);
        placer_release(p, &a);
        assert_int_equal(placer_count(p), 2);
        place_err(p, "nic0", 1 * GiB, 4 * KiB, BROKER_E_OVERLAP, "overlaps");
        placer_release(p, &c);
        placer_release(p, &b);
        assert_int_equal(placer_count(p), 0);
        assert_int_equal(placer_used(p, 0, UINT64_MAX), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_request_validation),
                cmocka_unit_test(test_placer_new_checks_platform),
                cmocka_unit_test(test_align_granule),
                cmocka_unit_test(test_align_device),
                cmocka_unit_test(test_align_request),
                cmocka_unit_test(test_dma_mask),
                cmocka_unit_test(test_dma_windows),
                cmocka_unit_test(test_platform_reserved),
                cmocka_unit_test(test_device_reserved_window),
                cmocka_unit_test(test_numa),
                cmocka_unit_test(test_wrap_around),
                cmocka_unit_test(test_place_overlap),
                cmocka_unit_test(test_place_error_order),
                cmocka_unit_test(test_round_to_granule),
                cmocka_unit_test(test_lowest_address_across_pools),
                cmocka_unit_test(test_bounce_exhausted),
                cmocka_unit_test(test_bounce_fragmented),
                cmocka_unit_test(test_bounce_no_reachable_pool),
                cmocka_unit_test(test_reserve_release),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
