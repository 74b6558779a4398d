/* SPDX-License-Identifier: Apache-2.0 */
/* placement/dma-spans: what of the pools each device can reach, from loaded and hand-built platforms. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "placement/dma-spans.h"
#include "platform/platform.h"
#include "util/diag.h"
#include "util/macro.h"
#include "util/num.h"

#include "platform-docs.h"

struct want_span {
        uint64_t base, end;
        const char *pool;
};

/* Loads text, which may draw warnings but no errors. */
static struct platform *load_warned(const char *text) {
        struct diag_list diags = DIAG_LIST_INIT;
        struct platform *p = NULL;
        int r;

        r = load(text, &p, &diags);
        if (r != 0)
                diag_list_print(&diags, "test", stderr);
        assert_int_equal(r, 0);
        assert_non_null(p);
        diag_list_clear(&diags);
        return p;
}

static void expect_spans(const struct platform *p, const struct platform_device *d, const struct want_span *want,
                         size_t n_want) {
        _cleanup_(xfreep) struct dma_span *spans = NULL;
        size_t n = SIZE_MAX;

        assert_int_equal(dma_spans_of_device(p, d, &spans, &n), 0);
        if (n != n_want) {
                print_error("device %s: %zu spans, expected %zu:\n", d->name, n, n_want);
                for (size_t i = 0; i < n; i++)
                        print_error("  [%#" PRIx64 ", %#" PRIx64 ") in %s\n", spans[i].base, spans[i].end,
                                    spans[i].pool->name);
                fail();
        }
        if (n == 0)
                assert_null(spans);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(spans[i].base, want[i].base);
                assert_int_equal(spans[i].end, want[i].end);
                assert_string_equal(spans[i].pool->name, want[i].pool);
                /* The pool pointer is the platform's own entry. */
                assert_ptr_equal(spans[i].pool, platform_find_pool(p, want[i].pool));
        }
}

static void expect_loaded_spans(const char *text, const struct want_span *want, size_t n_want) {
        _cleanup_(platform_freep) struct platform *p = load_warned(text);

        assert_true(p->n_devices >= 1);
        expect_spans(p, &p->devices[0], want, n_want);
}

#define EXPECT_SPANS(text, ...)                                                                  \
        do {                                                                                     \
                static const struct want_span _want[] = { __VA_ARGS__ };                         \
                expect_loaded_spans(text, _want, sizeof(_want) / sizeof(_want[0]));              \
        } while (0)
#define EXPECT_NO_SPANS(text) expect_loaded_spans(text, NULL, 0)

static void test_spans_windows(void **state) {
        (void) state;
        /* The default window takes the whole pool. */
        EXPECT_SPANS(DOC("", POOL_A, DEV_64), { GiB, GiB + 64 * MiB, "a" });
        /* A window inside the pool, one over its start, one over its end. */
        EXPECT_SPANS(DOC("", POOL_A, DEV(",'dma_windows':[{'base':'0x41000000','size':'8MiB'}]")),
                     { GiB + 16 * MiB, GiB + 24 * MiB, "a" });
        EXPECT_SPANS(DOC("", POOL_A, DEV(",'dma_windows':[{'base':'0x3ff00000','size':'3MiB'}]")),
                     { GiB, GiB + 2 * MiB, "a" });
        EXPECT_SPANS(DOC("", POOL_A, DEV(",'dma_windows':[{'base':'0x43f00000','size':'16MiB'}]")),
                     { GiB + 63 * MiB, GiB + 64 * MiB, "a" });
        /* Two windows, listed out of order, give two spans in order. */
        EXPECT_SPANS(DOC("", POOL_A, DEV(",'dma_windows':[{'base':'0x42000000','size':'1MiB'},"
                                         "{'base':'0x40100000','size':'1MiB'}]")),
                     { GiB + 1 * MiB, GiB + 2 * MiB, "a" }, { GiB + 32 * MiB, GiB + 33 * MiB, "a" });
        /* Windows that miss the pool, just below and just above it. */
        EXPECT_NO_SPANS(DOC("", POOL_A, DEV(",'dma_windows':[{'base':0,'size':'1GiB'},"
                                            "{'base':'0x44000000','size':'1GiB'}]")));
}

static void test_spans_mask(void **state) {
        (void) state;
        /* A 30-bit mask ends at 1GiB: it cuts the pool [1GiB-32MiB, 1GiB+32MiB) in half. */
        EXPECT_SPANS(DOC("", POOL("m", "0x3e000000", "64MiB", "2MiB", MEMFD),
                         "{'name':'d','owner':'hw0','dma_mask_bits':30}"),
                     { GiB - 32 * MiB, GiB, "m" });
        EXPECT_SPANS(DOC("", POOL("m", "0x3e000000", "64MiB", "2MiB", MEMFD),
                         "{'name':'d','owner':'hw0','dma_mask_bits':31}"),
                     { GiB - 32 * MiB, GiB + 32 * MiB, "m" });
        /* A window reaching above the mask is cut at the mask too (the loader warns about it). */
        EXPECT_SPANS(DOC("", POOL("m", "0xfc000000", "64MiB", "2MiB", MEMFD),
                         DEV32(",'dma_windows':[{'base':'0xfe000000','size':'1GiB'}]")),
                     { 4 * GiB - 32 * MiB, 4 * GiB, "m" });
        /* A window cut at a mask below the end of the pool. */
        EXPECT_SPANS(DOC("", POOL("m", "0x7e000000", "64MiB", "2MiB", MEMFD),
                         "{'name':'d','owner':'hw0','dma_mask_bits':31,"
                         "'dma_windows':[{'base':'0x40000000','size':'2GiB'}]}"),
                     { 2 * GiB - 32 * MiB, 2 * GiB, "m" });
        /* A pool inside the window but wholly above the mask. */
        EXPECT_NO_SPANS(DOC("", POOL_JSON("'h'", "'0x100000000'", "1"),
                            DEV32(",'dma_windows':[{'base':'0xfe000000','size':'1GiB'}]")));
        /* A pool wholly above the mask. */
        EXPECT_NO_SPANS(DOC("", POOL_A, "{'name':'d','owner':'hw0','dma_mask_bits':30}"));
        EXPECT_NO_SPANS(DOC("", POOL("m", "0xfc000000", "64MiB", "2MiB", MEMFD),
                            "{'name':'d','owner':'hw0','dma_mask_bits':31}"));
}

static void test_spans_reserved_windows(void **state) {
        (void) state;
        /* Holes at the start, in the middle and at the end of the pool. */
        EXPECT_SPANS(DOC("", POOL_A, DEV(",'reserved_windows':[{'name':'w','base':'0x40200000','size':'1MiB'},"
                                         "{'base':'0x3ff00000','size':'2MiB'},{'base':'0x43000000','size':'1GiB'}]")),
                     { GiB + 1 * MiB, GiB + 2 * MiB, "a" }, { GiB + 3 * MiB, GiB + 48 * MiB, "a" });
        /* Adjacent reserved windows leave no empty span between them. */
        EXPECT_SPANS(DOC("", POOL_A, DEV(",'reserved_windows':[{'base':'0x40100000','size':'1MiB'},"
                                         "{'base':'0x40200000','size':'1MiB'}]")),
                     { GiB, GiB + 1 * MiB, "a" }, { GiB + 3 * MiB, GiB + 64 * MiB, "a" });
        /* Reserved windows covering the whole pool. */
        EXPECT_NO_SPANS(DOC("", POOL_A, DEV(",'reserved_windows':[{'base':'0x40000000','size':'32MiB'},"
                                            "{'base':'0x42000000','size':'32MiB'}]")));
        /* Only the window's part counts: the reserved window lies in the second window. */
        EXPECT_SPANS(DOC("", POOL_A, DEV(",'dma_windows':[{'base':'0x40000000','size':'4MiB'},"
                                         "{'base':'0x42000000','size':'4MiB'}],"
                                         "'reserved_windows':[{'base':'0x42000000','size':'1MiB'}]")),
                     { GiB, GiB + 4 * MiB, "a" }, { GiB + 33 * MiB, GiB + 36 * MiB, "a" });
}

static void test_spans_pools(void **state) {
        (void) state;
        /* Pools listed out of order; spans come sorted, each in its own pool, and the
         * reserved range between pools leaves them whole. */
        EXPECT_SPANS(DOC("{'name':'r','base':'0x50000000','size':'1MiB'}",
                         POOL("c", "0x70000000", "64MiB", "2MiB", MEMFD) "," POOL_A ","
                         POOL("b", "0x60000000", "64MiB", "2MiB", MEMFD),
                         DEV_64),
                     { GiB, GiB + 64 * MiB, "a" }, { 0x60000000, 0x64000000, "b" },
                     { 0x70000000, 0x74000000, "c" });
        /* One window across the end of b and the start of c; another inside a. */
        EXPECT_SPANS(DOC("", POOL("c", "0x70000000", "64MiB", "2MiB", MEMFD) "," POOL_A ","
                             POOL("b", "0x60000000", "64MiB", "2MiB", MEMFD),
                         DEV(",'dma_windows':[{'base':'0x63000000','size':'0x10000000'},"
                             "{'base':'0x40000000','size':'2MiB'}]")),
                     { GiB, GiB + 2 * MiB, "a" }, { 0x63000000, 0x64000000, "b" },
                     { 0x70000000, 0x73000000, "c" });
        /* A device between pools reaches none of them. */
        EXPECT_NO_SPANS(DOC("", POOL_A "," POOL("b", "0x60000000", "64MiB", "2MiB", MEMFD),
                            DEV(",'dma_windows':[{'base':'0x50000000','size':'256MiB'}]")));
        /* No pools at all. */
        EXPECT_NO_SPANS("{" MEMORY ",'pools':[],'devices':[" DEV_64 "]}");
}

/*
 * Platforms built by hand, as placement's tests do: a device without windows, and
 * reserved ranges that nest, overlap, touch the device's reserved windows, or are not
 * sorted, none of which the loader produces.
 */
static void test_spans_hand_built(void **state) {
        struct platform_pool pools[] = {
                { .name = (char *) "p", .base = 16 * MiB, .end = 32 * MiB, .granule = 4 * KiB },
                { .name = (char *) "q", .base = 64 * MiB, .end = 128 * MiB, .granule = 4 * KiB },
        };
        struct platform_range reserved[] = {
                { .base = 20 * MiB, .end = 24 * MiB },
                { .base = 21 * MiB, .end = 22 * MiB }, /* nested */
                { .base = 23 * MiB, .end = 25 * MiB }, /* overlapping */
                { .base = 27 * MiB, .end = 27 * MiB }, /* empty */
        };
        struct platform_range rwindows[] = {
                { .base = 25 * MiB, .end = 26 * MiB }, /* touching reserved[2] */
                { .base = 30 * MiB, .end = 31 * MiB },
        };
        struct platform_device d = {
                .name = (char *) "hand",
                .dma_mask_bits = 27,
                .dma_max = (UINT64_C(1) << 27) - 1, /* 128MiB */
                .reserved_windows = rwindows,
                .n_reserved_windows = 2,
                .alignment = 1,
        };
        struct platform p = {
                .reserved = reserved,
                .n_reserved = 4,
                .pools = pools,
                .n_pools = 2,
                .devices = &d,
                .n_devices = 1,
        };

        (void) state;
        /* No windows: the default [0, dma_max]. */
        expect_spans(&p, &d,
                     (const struct want_span[]) { { 16 * MiB, 20 * MiB, "p" }, { 26 * MiB, 30 * MiB, "p" },
                                                  { 31 * MiB, 32 * MiB, "p" }, { 64 * MiB, 128 * MiB, "q" } },
                     4);

        /* The same holes given out of order. */
        reserved[0] = (struct platform_range) { .base = 23 * MiB, .end = 25 * MiB };
        reserved[2] = (struct platform_range) { .base = 20 * MiB, .end = 24 * MiB };
        expect_spans(&p, &d,
                     (const struct want_span[]) { { 16 * MiB, 20 * MiB, "p" }, { 26 * MiB, 30 * MiB, "p" },
                                                  { 31 * MiB, 32 * MiB, "p" }, { 64 * MiB, 128 * MiB, "q" } },
                     4);

        /* A 26-bit mask (64MiB) stops before q. */
        d.dma_max = (UINT64_C(1) << 26) - 1;
        expect_spans(&p, &d,
                     (const struct want_span[]) { { 16 * MiB, 20 * MiB, "p" }, { 26 * MiB, 30 * MiB, "p" },
                                                  { 31 * MiB, 32 * MiB, "p" } },
                     3);

        /* Overlapping windows, q's first: spans still come sorted by base. */
        d.dma_max = UINT64_MAX;
        d.windows = (struct platform_range[]) { { .base = 100 * MiB, .end = 101 * MiB },
                                                { .base = 0, .end = 17 * MiB },
                                                { .base = 16 * MiB, .end = 18 * MiB } };
        d.n_windows = 3;
        expect_spans(&p, &d,
                     (const struct want_span[]) { { 16 * MiB, 17 * MiB, "p" }, { 16 * MiB, 18 * MiB, "p" },
                                                  { 100 * MiB, 101 * MiB, "q" } },
                     3);

        /* A window that is all hole, one below the mask that misses the pools, and an empty one. */
        d.dma_max = (UINT64_C(1) << 26) - 1;
        d.windows = (struct platform_range[]) { { .base = 21 * MiB, .end = 26 * MiB },
                                                { .base = 40 * MiB, .end = 50 * MiB },
                                                { .base = 64 * MiB, .end = 64 * MiB } };
        expect_spans(&p, &d, NULL, 0);
}

static void test_spans_arguments(void **state) {
        _cleanup_(platform_freep) struct platform *p = NULL;
        struct dma_span *sentinel = (struct dma_span *) &p, *spans = sentinel;
        size_t n = 42;

        (void) state;
        p = load_warned(DOC("", POOL_A, DEV_64));
        assert_int_equal(dma_spans_of_device(NULL, &p->devices[0], &spans, &n), -EINVAL);
        assert_int_equal(dma_spans_of_device(p, NULL, &spans, &n), -EINVAL);
        assert_int_equal(dma_spans_of_device(p, &p->devices[0], NULL, &n), -EINVAL);
        assert_int_equal(dma_spans_of_device(p, &p->devices[0], &spans, NULL), -EINVAL);
        /* Untouched on failure. */
        assert_ptr_equal(spans, sentinel);
        assert_int_equal(n, 42);

        assert_int_equal(dma_spans_of_device(p, &p->devices[0], &spans, &n), 0);
        assert_int_equal(n, 1);
        assert_ptr_equal(spans[0].pool, &p->pools[0]);
        free(spans);
}

static void test_hold_granule(void **state) {
        static const struct platform_pool pool = { .name = (char *) "a", .base = 0, .end = 64 * MiB, .granule = 2 * MiB };
        struct platform_device d = { .name = (char *) "d", .alignment = 1 };
        struct dma_span spans[] = {
                { .base = 1 * MiB, .end = 3 * MiB, .pool = &pool },  /* 2MiB, but no aligned granule */
                { .base = 5 * MiB, .end = 8 * MiB, .pool = &pool },  /* [6MiB, 8MiB) fits */
        };

        (void) state;
        assert_false(dma_spans_hold_granule(&d, spans, 0));
        assert_false(dma_spans_hold_granule(&d, spans, 1));
        assert_true(dma_spans_hold_granule(&d, spans, 2));
        /* A device alignment above the granule must be honoured too: 8MiB alignment leaves nothing. */
        d.alignment = 8 * MiB;
        assert_false(dma_spans_hold_granule(&d, spans, 2));
        spans[1].end = 10 * MiB;
        assert_true(dma_spans_hold_granule(&d, spans, 2));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_spans_windows),
                cmocka_unit_test(test_spans_mask),
                cmocka_unit_test(test_spans_reserved_windows),
                cmocka_unit_test(test_spans_pools),
                cmocka_unit_test(test_spans_hand_built),
                cmocka_unit_test(test_spans_arguments),
                cmocka_unit_test(test_hold_granule),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
