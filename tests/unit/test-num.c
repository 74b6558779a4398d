/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/diag.h"
#include "util/macro.h"
#include "util/num.h"

#define SENTINEL UINT64_C(0x5a5a5a5a5a5a5a5a)

static void parse_ok(const char *s, uint64_t expected) {
        uint64_t v = SENTINEL;

        if (num_parse_u64(s, &v) != 0)
                fail_msg("\"%s\" should parse", s);
        assert_int_equal(v, expected);
}

static void parse_fails(const char *s, int expected) {
        uint64_t v = SENTINEL;

        if (num_parse_u64(s, &v) != expected)
                fail_msg("\"%s\" should fail with %d", s, expected);
        assert_int_equal(v, SENTINEL); /* untouched on failure */
}

static void test_parse_decimal(void **state) {
        (void) state;
        parse_ok("0", 0);
        parse_ok("7", 7);
        parse_ok("4096", 4096);
        parse_ok("007", 7);
        parse_ok("18446744073709551615", UINT64_MAX);
        parse_fails("18446744073709551616", -ERANGE);
        parse_fails("99999999999999999999999", -ERANGE);
}

static void test_parse_hex(void **state) {
        (void) state;
        parse_ok("0x0", 0);
        parse_ok("0x1000", 0x1000);
        parse_ok("0XfEe00000", 0xfee00000);
        parse_ok("0xffffffffffffffff", UINT64_MAX);
        parse_ok("0x0000000000000000001", 1);
        parse_fails("0x10000000000000000", -ERANGE);
        parse_fails("0x", -EINVAL);
        parse_fails("0xg", -EINVAL);
        parse_fails("0x1000 ", -EINVAL);
        parse_fails("0x-1", -EINVAL);
        parse_fails("x10", -EINVAL);
        parse_fails("0x1KiB", -EINVAL);
}

static void test_parse_suffix(void **state) {
        (void) state;
        parse_ok("4KiB", UINT64_C(4) << 10);
        parse_ok("2MiB", UINT64_C(2) << 20);
        parse_ok("1GiB", UINT64_C(1) << 30);
        parse_ok("3TiB", UINT64_C(3) << 40);
        parse_ok("5PiB", UINT64_C(5) << 50);
        parse_ok("15EiB", UINT64_C(15) << 60);
        parse_ok("0KiB", 0);
        parse_ok("16383PiB", UINT64_C(16383) << 50);
        parse_fails("16384PiB", -ERANGE);
        parse_fails("16EiB", -ERANGE);
        parse_fails("16384EiB", -ERANGE);
        parse_fails("18014398509481984KiB", -ERANGE);
        parse_ok("18014398509481983KiB", UINT64_C(18014398509481983) << 10);
        parse_fails("2MB", -EINVAL);
        parse_fails("2M", -EINVAL);
        parse_fails("2mib", -EINVAL);
        parse_fails("2 MiB", -EINVAL);
        parse_fails("1.5GiB", -EINVAL);
        parse_fails("MiB", -EINVAL);
        parse_fails("2MiBKiB", -EINVAL);
}

static void test_parse_junk(void **state) {
        uint64_t v = SENTINEL;

        (void) state;
        parse_fails("", -EINVAL);
        parse_fails(" 1", -EINVAL);
        parse_fails("1 ", -EINVAL);
        parse_fails("-1", -EINVAL);
        parse_fails("+1", -EINVAL);
        parse_fails("1e3", -EINVAL);
        parse_fails("abc", -EINVAL);
        assert_int_equal(num_parse_u64(NULL, &v), -EINVAL);
        assert_int_equal(v, SENTINEL);
}

/* brokerctl's ids and counts: decimal digits and nothing else. */
static void test_parse_decimal_only(void **state) {
        uint64_t v = SENTINEL;

        (void) state;
        assert_int_equal(num_parse_decimal("42", &v), 0);
        assert_int_equal(v, 42);
        assert_int_equal(num_parse_decimal("18446744073709551615", &v), 0);
        assert_int_equal(v, UINT64_MAX);
        v = SENTINEL;
        assert_int_equal(num_parse_decimal("0x2a", &v), -EINVAL);
        assert_int_equal(num_parse_decimal("4KiB", &v), -EINVAL);
        assert_int_equal(num_parse_decimal("4 2", &v), -EINVAL);
        assert_int_equal(num_parse_decimal("-1", &v), -EINVAL);
        assert_int_equal(num_parse_decimal("", &v), -EINVAL);
        assert_int_equal(num_parse_decimal(NULL, &v), -EINVAL);
        assert_int_equal(num_parse_decimal("18446744073709551616", &v), -ERANGE);
        assert_int_equal(v, SENTINEL);
}

/* The value is parsed inside an array, as json-c parses values inside documents. */
static void from_json_text(const char *text, int expected_r, uint64_t expected) {
        _cleanup_(xfreep) char *doc = NULL;
        json_object *arr;
        uint64_t v = SENTINEL;

        assert_true(asprintf(&doc, "[%s]", text) > 0);
        arr = json_tokener_parse(doc);
        assert_non_null(arr);
        assert_int_equal(json_object_array_length(arr), 1);
        if (num_from_json(json_object_array_get_idx(arr, 0), &v) != expected_r)
                fail_msg("%s should give %d", text, expected_r);
        assert_int_equal(v, expected_r == 0 ? expected : SENTINEL);
        json_object_put(arr);
}

static void test_from_json(void **state) {
        json_object *o;
        uint64_t v = SENTINEL;

        (void) state;
        o = json_object_new_int64(4096);
        assert_int_equal(num_from_json(o, &v), 0);
        assert_int_equal(v, 4096);
        json_object_put(o);

        /* Above INT64_MAX json-c keeps the value as uint64; 2^64-1 is where it saturates
         * larger literals, so where the text was not scanned that one is refused. */
        o = json_object_new_uint64(UINT64_MAX - 1);
        assert_int_equal(num_from_json_unscanned(o, &v), 0);
        assert_int_equal(v, UINT64_MAX - 1);
        json_object_put(o);
        o = json_object_new_uint64(UINT64_MAX);
        assert_int_equal(num_from_json(o, &v), 0);
        assert_int_equal(v, UINT64_MAX);
        v = 7;
        assert_int_equal(num_from_json_unscanned(o, &v), -ERANGE);
        assert_int_equal(v, 7);
        json_object_put(o);
        o = json_object_new_uint64((uint64_t) INT64_MAX + 1);
        assert_int_equal(num_from_json(o, &v), 0);
        assert_int_equal(v, (uint64_t) INT64_MAX + 1);
        json_object_put(o);

        from_json_text("0", 0, 0);
        from_json_text("9223372036854775807", 0, INT64_MAX);
        from_json_text("9223372036854775808", 0, (uint64_t) INT64_MAX + 1);
        from_json_text("18446744073709551615", 0, UINT64_MAX);
        from_json_text("\"0xffffffffffffffff\"", 0, UINT64_MAX);
        from_json_text("\"0x1000\"", 0, 0x1000);
        from_json_text("\"2MiB\"", 0, UINT64_C(2) << 20);
        from_json_text("-1", -ERANGE, 0);
        from_json_text("-9223372036854775808", -ERANGE, 0);
        from_json_text("\"0x10000000000000000\"", -ERANGE, 0);
        from_json_text("\"2MB\"", -EINVAL, 0);
        from_json_text("1.5", -EINVAL, 0);
        from_json_text("1.0", -EINVAL, 0);
        from_json_text("true", -EINVAL, 0);
        from_json_text("[1]", -EINVAL, 0);
        from_json_text("{}", -EINVAL, 0);

        /* JSON null is a NULL object in json-c. */
        v = SENTINEL;
        assert_int_equal(num_from_json(NULL, &v), -EINVAL);
        assert_int_equal(v, SENTINEL);
}

static void test_format_size(void **state) {
        char buf[NUM_FMT_MAX];

        (void) state;
        assert_string_equal(num_format_size(0, buf), "0");
        assert_string_equal(num_format_size(1, buf), "0x1");
        assert_string_equal(num_format_size(1536, buf), "0x600");
        assert_string_equal(num_format_size(1024, buf), "1KiB");
        assert_string_equal(num_format_size(4096, buf), "4KiB");
        assert_string_equal(num_format_size(3 * 1024 + 1024 * 1024, buf), "1027KiB");
        assert_string_equal(num_format_size(UINT64_C(2) << 20, buf), "2MiB");
        assert_string_equal(num_format_size(UINT64_C(3) << 30, buf), "3GiB");
        assert_string_equal(num_format_size(UINT64_C(1) << 40, buf), "1TiB");
        assert_string_equal(num_format_size(UINT64_C(1) << 50, buf), "1PiB");
        assert_string_equal(num_format_size(UINT64_C(15) << 60, buf), "15EiB");
        assert_string_equal(num_format_size(UINT64_C(1) << 63, buf), "8EiB");
        assert_string_equal(num_format_size(UINT64_MAX, buf), "0xffffffffffffffff");
        /* What it prints parses back to the same value. */
        for (uint64_t v = 1; v != 0; v <<= 1) {
                uint64_t back = 0;
                assert_int_equal(num_parse_u64(num_format_size(v, buf), &back), 0);
                assert_int_equal(back, v);
        }
        /* The returned pointer is the caller's buffer. */
        assert_ptr_equal(num_format_size(5, buf), buf);
}

static void test_format_addr(void **state) {
        char buf[NUM_FMT_MAX];

        (void) state;
        assert_string_equal(num_format_addr(0, buf), "0x0");
        assert_string_equal(num_format_addr(0x1000, buf), "0x1000");
        assert_string_equal(num_format_addr(0xfee00000, buf), "0xfee00000");
        assert_string_equal(num_format_addr(UINT64_MAX, buf), "0xffffffffffffffff");
        assert_ptr_equal(num_format_addr(1, buf), buf);
}

static void test_helpers(void **state) {
        uint64_t v = SENTINEL;

        (void) state;
        assert_false(num_is_pow2(0));
        assert_true(num_is_pow2(1));
        assert_true(num_is_pow2(4096));
        assert_true(num_is_pow2(UINT64_C(1) << 63));
        assert_false(num_is_pow2(3));
        assert_false(num_is_pow2(UINT64_MAX));

        assert_int_equal(num_range_end(0x1000, 0x1000, &v), 0);
        assert_int_equal(v, 0x2000);
        assert_int_equal(num_range_end(UINT64_MAX - 1, 1, &v), 0);
        assert_int_equal(v, UINT64_MAX);
        v = SENTINEL;
        assert_int_equal(num_range_end(UINT64_MAX, 1, &v), -ERANGE);
        assert_int_equal(num_range_end(1, UINT64_MAX, &v), -ERANGE);
        assert_int_equal(v, SENTINEL);

        assert_int_equal(num_align_up(0, 4096, &v), 0);
        assert_int_equal(v, 0);
        assert_int_equal(num_align_up(1, 4096, &v), 0);
        assert_int_equal(v, 4096);
        assert_int_equal(num_align_up(4096, 4096, &v), 0);
        assert_int_equal(v, 4096);
        assert_int_equal(num_align_up(12345, 1, &v), 0);
        assert_int_equal(v, 12345);
        assert_int_equal(num_align_up(UINT64_MAX - 4095, 4096, &v), 0);
        assert_int_equal(v, UINT64_MAX - 4095);
        v = SENTINEL;
        assert_int_equal(num_align_up(UINT64_MAX - 4094, 4096, &v), -ERANGE);
        assert_int_equal(v, SENTINEL);

        assert_true(num_is_aligned(0, 4096));
        assert_true(num_is_aligned(8192, 4096));
        assert_false(num_is_aligned(4097, 4096));
        assert_true(num_is_aligned(4097, 1));

        /* Half-open: touching ranges do not overlap. */
        assert_true(num_ranges_overlap(0, 10, 5, 15));
        assert_true(num_ranges_overlap(5, 15, 0, 10));
        assert_true(num_ranges_overlap(0, 10, 2, 3));
        assert_false(num_ranges_overlap(0, 10, 10, 20));
        assert_false(num_ranges_overlap(10, 20, 0, 10));
}

static void test_diag_list(void **state) {
        struct diag_list l = DIAG_LIST_INIT;
        const struct diag *d;

        (void) state;
        assert_int_equal(diag_count(&l, DIAG_ERROR), 0);
        assert_null(diag_find(&l, ""));

        assert_int_equal(diag_add(&l, DIAG_ERROR, "pools[2].base", "%s is not aligned to the pool granule %s",
                                  "0x1234000", "2MiB"),
                         0);
        assert_int_equal(diag_add(&l, DIAG_WARNING, "devices[0]", "unreachable"), 0);
        assert_int_equal(diag_add(&l, DIAG_ERROR, NULL, "syntax %d", 3), 0);
        assert_int_equal(diag_add(&l, DIAG_ERROR, "devices[0]", "second"), 0);
        assert_int_equal(l.n, 4);
        assert_int_equal(diag_count(&l, DIAG_ERROR), 3);
        assert_int_equal(diag_count(&l, DIAG_WARNING), 1);
        assert_int_equal(diag_count(NULL, DIAG_ERROR), 0);

        d = diag_find(&l, "pools[2].base");
        assert_non_null(d);
        assert_int_equal(d->severity, DIAG_ERROR);
        assert_string_equal(d->message, "0x1234000 is not aligned to the pool granule 2MiB");
        /* The first match wins. */
        d = diag_find(&l, "devices[0]");
        assert_non_null(d);
        assert_string_equal(d->message, "unreachable");
        /* A NULL path is the document itself. */
        d = diag_find(&l, "");
        assert_non_null(d);
        assert_string_equal(d->message, "syntax 3");
        assert_null(diag_find(&l, "pools[2]"));
        assert_null(diag_find(NULL, ""));

        /* Growing past the initial capacity keeps every entry. */
        for (int i = 0; i < 100; i++)
                assert_int_equal(diag_add(&l, DIAG_WARNING, "x", "%d", i), 0);
        assert_int_equal(l.n, 104);
        assert_string_equal(l.items[103].message, "99");
        assert_string_equal(l.items[0].path, "pools[2].base");

        diag_list_clear(&l);
        assert_int_equal(l.n, 0);
        assert_null(l.items);
        assert_int_equal(diag_count(&l, DIAG_WARNING), 0);
        /* Reusable after clearing. */
        assert_int_equal(diag_add(&l, DIAG_ERROR, "a", "b"), 0);
        assert_int_equal(l.n, 1);
        diag_list_clear(&l);

        /* No list: nothing recorded, no error. */
        assert_int_equal(diag_add(NULL, DIAG_ERROR, "a", "b"), 0);
}

static void test_diag_print(void **state) {
        struct diag_list l = DIAG_LIST_INIT;
        char *out = NULL;
        size_t size = 0;
        FILE *f;

        (void) state;
        assert_int_equal(diag_add(&l, DIAG_ERROR, "pools[2].base", "0x1234000 is not aligned"), 0);
        assert_int_equal(diag_add(&l, DIAG_WARNING, "devices[0]", "unreachable"), 0);
        assert_int_equal(diag_add(&l, DIAG_ERROR, "", "JSON syntax error"), 0);

        f = open_memstream(&out, &size);
        assert_non_null(f);
        diag_list_print(&l, NULL, f);
        diag_list_print(&l, "platform.json", f);
        assert_int_equal(fclose(f), 0);
        assert_string_equal(out,
                            "error: pools[2].base: 0x1234000 is not aligned\n"
                            "warning: devices[0]: unreachable\n"
                            "error: JSON syntax error\n"
                            "platform.json: error: pools[2].base: 0x1234000 is not aligned\n"
                            "platform.json: warning: devices[0]: unreachable\n"
                            "platform.json: error: JSON syntax error\n");
        free(out);
        diag_list_clear(&l);
}

static void test_diag_paths(void **state) {
        char *p, *c;

        (void) state;
        p = diag_path_key("", "pools");
        assert_string_equal(p, "pools");
        c = diag_path_index(p, 2);
        assert_string_equal(c, "pools[2]");
        free(p);
        p = diag_path_key(c, "base");
        assert_string_equal(p, "pools[2].base");
        free(c);
        c = diag_path_key(p, "x");
        assert_string_equal(c, "pools[2].base.x");
        free(c);
        free(p);

        p = diag_path_key(NULL, "memory");
        assert_string_equal(p, "memory");
        free(p);
        p = diag_path_index("", 0);
        assert_string_equal(p, "[0]");
        free(p);
        p = diag_path_index("devices[1].dma_windows", 255);
        assert_string_equal(p, "devices[1].dma_windows[255]");
        free(p);
        p = diag_path_index(NULL, SIZE_MAX);
        c = NULL;
        assert_true(asprintf(&c, "[%zu]", (size_t) SIZE_MAX) > 0);
        assert_string_equal(p, c);
        free(c);
        free(p);
}

static void test_parse_duration(void **state) {
        uint64_t v = 7;
        bool unit = true;

        (void) state;
        assert_int_equal(num_parse_duration_usec("5", &v, &unit), 0);
        assert_int_equal(v, 5000000);
        assert_false(unit);
        assert_int_equal(num_parse_duration_usec("500ms", &v, &unit), 0);
        assert_int_equal(v, 500000);
        assert_true(unit);
        assert_int_equal(num_parse_duration_usec("2m", &v, NULL), 0);
        assert_int_equal(v, 120000000);
        assert_int_equal(num_parse_duration_usec("2min", &v, NULL), 0);
        assert_int_equal(v, 120000000);
        assert_int_equal(num_parse_duration_usec("1h", &v, NULL), 0);
        assert_int_equal(v, UINT64_C(3600000000));
        assert_int_equal(num_parse_duration_usec("1d", &v, NULL), 0);
        assert_int_equal(v, UINT64_C(86400000000));

        v = 7;
        assert_int_equal(num_parse_duration_usec("", &v, NULL), -EINVAL);
        assert_int_equal(num_parse_duration_usec("s", &v, NULL), -EINVAL);
        assert_int_equal(num_parse_duration_usec("5 s", &v, NULL), -EINVAL);
        assert_int_equal(num_parse_duration_usec("5w", &v, NULL), -EINVAL);
        assert_int_equal(num_parse_duration_usec("-5s", &v, NULL), -EINVAL);
        assert_int_equal(num_parse_duration_usec("99999999999999999d", &v, NULL), -ERANGE);
        assert_int_equal(num_parse_duration_usec("99999999999999999999", &v, NULL), -ERANGE);
        assert_int_equal(num_parse_duration_usec(NULL, &v, NULL), -EINVAL);
        assert_int_equal(v, 7);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_duration),
                cmocka_unit_test(test_parse_decimal),
                cmocka_unit_test(test_parse_decimal_only),
                cmocka_unit_test(test_parse_hex),
                cmocka_unit_test(test_parse_suffix),
                cmocka_unit_test(test_parse_junk),
                cmocka_unit_test(test_from_json),
                cmocka_unit_test(test_format_size),
                cmocka_unit_test(test_format_addr),
                cmocka_unit_test(test_helpers),
                cmocka_unit_test(test_diag_list),
                cmocka_unit_test(test_diag_print),
                cmocka_unit_test(test_diag_paths),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
