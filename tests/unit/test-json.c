/* SPDX-License-Identifier: Apache-2.0 */
/* util/json-load: bounded reads, strict parsing with positions, typed getters with JSON paths. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/json-load.h"

static const struct json_load_limits limits = { .max_size = 64, .max_depth = 4 };

/* The only diagnostic in l is an error at path whose message contains substr. */
static void assert_one_error(const struct diag_list *l, const char *path, const char *substr) {
        if (l->n != 1 || l->items[0].severity != DIAG_ERROR || strcmp(l->items[0].path, path) != 0 ||
            !strstr(l->items[0].message, substr)) {
                print_error("expected one error at '%s' containing '%s', got:\n", path, substr);
                diag_list_print(l, "test", stderr);
                fail();
        }
}

static void parse_fails(const char *text, int expected_r, const char *substr) {
        struct diag_list diags = DIAG_LIST_INIT;
        json_object *sentinel = (json_object *) &diags, *o = sentinel;

        assert_int_equal(json_load_string(text, &limits, &diags, &o), expected_r);
        assert_ptr_equal(o, sentinel);
        assert_one_error(&diags, "", substr);
        diag_list_clear(&diags);
}

static void test_parse(void **state) {
        struct diag_list diags = DIAG_LIST_INIT;
        json_object *o = NULL;

        (void) state;
        assert_int_equal(json_load_string("{\"a\": [1, \"x\"]}", &limits, &diags, &o), 0);
        assert_int_equal(diags.n, 0);
        assert_true(json_object_is_type(o, json_type_object));
        json_object_put(o);

        parse_fails("{\n  \"a\": [,]\n}", -EINVAL, "invalid JSON at line 2, column 9");
        parse_fails("{\"a\": 1", -EINVAL, "line 1, column 8");
        parse_fails("", -EINVAL, "line 1, column 1");
        parse_fails("{} {}", -EINVAL, "line 1, column 4");
        parse_fails("[1,]", -EINVAL, "invalid JSON"); /* strict: no trailing commas */
        parse_fails("\"\xff\"", -EINVAL, "invalid JSON"); /* not UTF-8 */
        parse_fails("[[[[[1]]]]]", -EINVAL, "nesting too deep");
        parse_fails("[18446744073709551616]", -EINVAL, "line 1, column 2: integer does not fit in 64 bits");
        parse_fails("[1, -9223372036854775809]", -EINVAL, "column 5: integer does not fit in 64 bits");
        parse_fails("[\"\\udc00\"]", -EINVAL, "line 1, column 3: a lone surrogate escape"); /* json-c: U+FFFD */
        parse_fails("[\"\xe0\x80\xaf\"]", -EINVAL, "line 1, column 3: invalid UTF-8");         /* overlong */
        /* Digits in strings and fractions are not integers. */
        assert_int_equal(json_load_string("[\"99999999999999999999\", 1e30, 18446744073709551615]", &limits, &diags, &o), 0);
        json_object_put(o);
        parse_fails("[                                                              1]", -EFBIG,
                    "input is larger than the limit of 0x40");
        assert_int_equal(json_load_string(NULL, &limits, &diags, &o), -EINVAL);
}

static int write_temp(char *path, const void *data, size_t len) {
        int fd = mkstemp(path);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t) len);
        assert_int_equal(close(fd), 0);
        return 0;
}

static void test_files(void **state) {
        char path[] = "/tmp/brokerd-test-json-XXXXXX";
        struct diag_list diags = DIAG_LIST_INIT;
        char big[65], *buf = NULL;
        json_object *o = NULL;
        size_t len = 0;

        (void) state;
        assert_int_equal(json_load_file("/nonexistent/brokerd", &limits, &diags, &o), -ENOENT);
        assert_one_error(&diags, "", "cannot open: No such file or directory");
        diag_list_clear(&diags);
        assert_int_equal(json_load_file("/tmp", &limits, &diags, &o), -EISDIR);
        assert_one_error(&diags, "", "cannot read: Is a directory");
        diag_list_clear(&diags);

        /* At the limit it is read in full; one byte more is refused. */
        memset(big, ' ', sizeof(big));
        big[0] = '[';
        big[62] = ']';
        write_temp(path, big, 64);
        assert_int_equal(json_read_file_bounded(path, 64, &buf, &len), 0);
        assert_int_equal(len, 64);
        assert_int_equal(buf[64], '\0');
        free(buf);
        assert_int_equal(json_load_file(path, &limits, &diags, &o), 0);
        assert_int_equal(diags.n, 0);
        json_object_put(o);
        assert_int_equal(json_read_file_bounded(path, 63, &buf, NULL), -EFBIG);
        unlink(path);

        strcpy(path, "/tmp/brokerd-test-json-XXXXXX");
        write_temp(path, big, 65);
        o = NULL;
        assert_int_equal(json_load_file(path, &limits, &diags, &o), -EFBIG);
        assert_null(o);
        assert_one_error(&diags, "", "file is larger than the limit of 0x40");
        diag_list_clear(&diags);
        unlink(path);

        /* A NUL byte is found where it is, not where C would stop. */
        strcpy(path, "/tmp/brokerd-test-json-XXXXXX");
        write_temp(path, "[1,\n 2\0]", 8);
        assert_int_equal(json_load_file(path, &limits, &diags, &o), -EINVAL);
        assert_one_error(&diags, "", "line 2, column 3: NUL byte in input");
        diag_list_clear(&diags);
        unlink(path);

        /* Not a regular file: read to the limit all the same. */
        assert_int_equal(json_read_file_bounded("/dev/zero", 4096, &buf, NULL), -EFBIG);
        assert_int_equal(json_read_file_bounded("/dev/null", 4096, &buf, &len), 0);
        assert_int_equal(len, 0);
        free(buf);
}

static json_object *parse(const char *text) {
        json_object *o = NULL;

        assert_int_equal(json_load_string(text, &(struct json_load_limits) { 4096, 8 }, NULL, &o), 0);
        return o;
}

static void test_members(void **state) {
        static const char *const keys[] = { "a", "b", NULL };
        struct diag_list diags = DIAG_LIST_INIT;
        struct json_loader l = { .diags = &diags };
        json_object *o = parse("{\"x\": {\"a\": 1, \"c\": 2, \"d\": null}, \"arr\": [1, 2, 3]}"), *v;
        size_t n = 0;

        (void) state;
        v = json_get_object(&l, o, "", "x", JSON_REQUIRED, keys);
        assert_non_null(v);
        assert_int_equal(l.n_errors, 2);
        assert_string_equal(diag_find(&diags, "x.c")->message, "unknown key (allowed: a, b)");
        assert_non_null(diag_find(&diags, "x.d"));
        diag_list_clear(&diags);

        /* A missing member: at its own path, or at its object's with missing_at_parent. */
        l = (struct json_loader) { .diags = &diags };
        assert_false(json_get_value(&l, v, "x", "b", JSON_OPTIONAL, &v));
        assert_int_equal(diags.n, 0);
        assert_false(json_get_value(&l, v, "x", "b", JSON_REQUIRED, &v));
        assert_one_error(&diags, "x.b", "missing required key \"b\"");
        diag_list_clear(&diags);
        l = (struct json_loader) { .diags = &diags, .missing_at_parent = true };
        assert_false(json_get_value(&l, v, "x", "b", JSON_REQUIRED, &v));
        assert_one_error(&diags, "x", "missing required key \"b\"");
        diag_list_clear(&diags);

        l = (struct json_loader) { .diags = &diags };
        assert_non_null(json_get_array(&l, o, "", "arr", JSON_REQUIRED, 3, &n));
        assert_int_equal(n, 3);
        assert_null(json_get_array(&l, o, "", "arr", JSON_REQUIRED, 2, &n));
        assert_one_error(&diags, "arr", "too many entries: 3 (at most 2)");
        diag_list_clear(&diags);
        assert_null(json_get_array(&l, o, "", "x", JSON_REQUIRED, 2, &n));
        assert_one_error(&diags, "x", "expected an array, got an object");
        diag_list_clear(&diags);
        /* With key NULL the object itself is the value, at path. */
        assert_null(json_get_object(&l, json_object_array_get_idx(json_object_object_get(o, "arr"), 1), "arr[1]", NULL,
                                    JSON_REQUIRED, NULL));
        assert_one_error(&diags, "arr[1]", "expected an object, got an integer");
        diag_list_clear(&diags);
        json_object_put(o);
}

static void test_strings(void **state) {
        struct diag_list diags = DIAG_LIST_INIT;
        struct json_loader l = { .diags = &diags };
        json_object *o = parse("{\"s\": \"abc\", \"nul\": \"ab\\u0000c\", \"n\": 1, \"bad\": \".x\", \"star\": \"*\"}");
        const char *s = NULL;
        char *name = NULL;

        (void) state;
        assert_true(json_get_string(&l, o, "", "s", JSON_REQUIRED, 3, &s));
        assert_string_equal(s, "abc");
        assert_false(json_get_string(&l, o, "", "s", JSON_REQUIRED, 2, &s));
        assert_one_error(&diags, "s", "too long: 3 bytes (at most 2)");
        diag_list_clear(&diags);
        assert_false(json_get_string(&l, o, "", "nul", JSON_REQUIRED, SIZE_MAX, &s));
        assert_one_error(&diags, "nul", "contains a NUL character at byte 2: strings must not contain a NUL character");
        diag_list_clear(&diags);
        assert_false(json_get_string(&l, o, "", "n", JSON_REQUIRED, SIZE_MAX, &s));
        assert_one_error(&diags, "n", "expected a string, got an integer");
        diag_list_clear(&diags);

        assert_true(json_get_name(&l, o, "", "s", JSON_REQUIRED, &name));
        assert_string_equal(name, "abc");
        free(name);
        assert_false(json_get_name(&l, o, "", "bad", JSON_REQUIRED, &name));
        assert_one_error(&diags, "bad", "not a valid name: expected a name: 1..128 characters of [A-Za-z0-9_.:+-], "
                                        "not starting with '.' or '-' (got \".x\")");
        diag_list_clear(&diags);
        assert_false(json_get_name(&l, o, "", "star", JSON_REQUIRED, &name));
        assert_int_equal(diags.n, 1);
        diag_list_clear(&diags);
        assert_true(json_get_name(&l, o, "", "star", JSON_REQUIRED | JSON_ALLOW_STAR, &name));
        assert_string_equal(name, "*");
        free(name);
        json_object_put(o);
}

static void u64_fails(json_object *o, const char *key, const char *substr) {
        struct diag_list diags = DIAG_LIST_INIT;
        struct json_loader l = { .diags = &diags };
        uint64_t v = 42;

        assert_false(json_get_u64(&l, o, "", key, JSON_REQUIRED, &v));
        assert_int_equal(v, 42);
        assert_one_error(&diags, key, substr);
        diag_list_clear(&diags);
}

static void test_numbers(void **state) {
        struct diag_list diags = DIAG_LIST_INIT;
        struct json_loader l = { .diags = &diags };
        json_object *o = parse("{\"int\": 4096, \"max\": 18446744073709551615, \"hex\": \"0x1000\", \"mib\": \"2MiB\", "
                               "\"neg\": -1, \"frac\": 1.5, \"bool\": true, \"junk\": \"2MB\", \"big\": \"16EiB\", "
                               "\"str\": \"7\"}");
        uint64_t v = 0;
        bool b = false;

        (void) state;
        assert_true(json_get_u64(&l, o, "", "int", JSON_REQUIRED, &v));
        assert_int_equal(v, 4096);
        assert_true(json_get_u64(&l, o, "", "max", JSON_REQUIRED, &v));
        assert_true(v == UINT64_MAX);
        assert_true(json_get_u64(&l, o, "", "hex", JSON_REQUIRED, &v));
        assert_int_equal(v, 4096);
        assert_true(json_get_u64(&l, o, "", "mib", JSON_REQUIRED, &v));
        assert_int_equal(v, 2 << 20);
        assert_false(json_get_u64(&l, o, "", "absent", JSON_OPTIONAL, &v));
        assert_int_equal(diags.n, 0);
        u64_fails(o, "neg", "must not be negative: expected a 64-bit number");
        u64_fails(o, "frac", "expected a non-negative integer or a string: expected a 64-bit number");
        u64_fails(o, "bool", "suffix (got true)");
        u64_fails(o, "junk", "malformed size: expected a 64-bit number: integer, \"0x…\" hex, or with a "
                             "KiB/MiB/GiB/TiB suffix (got \"2MB\")");
        u64_fails(o, "big", "does not fit in 64 bits");

        assert_true(json_get_uint(&l, o, "", "int", JSON_REQUIRED, 0, 4096, NULL, &v));
        assert_false(json_get_uint(&l, o, "", "int", JSON_REQUIRED, 0, 4095, NULL, &v));
        assert_one_error(&diags, "int", "expected an integer 0..4095 (got 4096)");
        diag_list_clear(&diags);
        assert_false(json_get_uint(&l, o, "", "str", JSON_REQUIRED, 0, 10, "a small count", &v));
        assert_one_error(&diags, "str", "expected a small count (got \"7\")");
        diag_list_clear(&diags);
        assert_true(json_get_uint(&l, o, "", "max", JSON_REQUIRED, 0, UINT64_MAX, NULL, &v));
        assert_false(json_get_uint(&l, o, "", "neg", JSON_REQUIRED, 0, UINT64_MAX, NULL, &v));
        diag_list_clear(&diags);

        assert_true(json_get_bool(&l, o, "", "bool", JSON_REQUIRED, &b));
        assert_true(b);
        assert_false(json_get_bool(&l, o, "", "str", JSON_REQUIRED, &b));
        assert_one_error(&diags, "str", "expected true or false, got a string");
        diag_list_clear(&diags);
        json_object_put(o);
}

static void test_enum(void **state) {
        static const char *const table[] = { NULL, "ro", "rw" };
        struct diag_list diags = DIAG_LIST_INIT;
        struct json_loader l = { .diags = &diags };
        json_object *o = parse("{\"a\": \"rw\", \"b\": \"RW\", \"c\": 2, \"d\": \"rw\\u0000\"}");
        unsigned v = 0;

        (void) state;
        assert_true(json_get_enum(&l, o, "", "a", JSON_REQUIRED, "access mode", table, 3, &v));
        assert_int_equal(v, 2);
        assert_false(json_get_enum(&l, o, "", "b", JSON_REQUIRED, "access mode", table, 3, &v));
        assert_one_error(&diags, "b", "unknown access mode \"RW\" (expected \"ro\" or \"rw\")");
        diag_list_clear(&diags);
        assert_false(json_get_enum(&l, o, "", "c", JSON_REQUIRED, "access mode", table, 3, &v));
        assert_one_error(&diags, "c", "expected a string, got an integer (expected \"ro\" or \"rw\")");
        diag_list_clear(&diags);
        assert_false(json_get_enum(&l, o, "", "d", JSON_REQUIRED, "access mode", table, 3, &v));
        assert_one_error(&diags, "d", "unknown access mode");
        diag_list_clear(&diags);
        assert_int_equal(v, 2);
        json_object_put(o);
}

static void test_loader(void **state) {
        struct diag_list diags = DIAG_LIST_INIT;
        struct json_loader l = { .diags = &diags };
        const char *names[] = { "b", NULL, "a", "b", "a", "b" };
        size_t *first;

        (void) state;
        /* Warnings do not fail a load; errors do, and only this load's count. */
        diag_add(&diags, DIAG_ERROR, "", "someone else's");
        json_loader_warning(&l, "x", "just saying");
        assert_int_equal(json_loader_result(&l), 0);
        json_loader_error(&l, "y", "%d problems", 2);
        assert_int_equal(json_loader_result(&l), -EINVAL);
        assert_string_equal(diag_find(&diags, "y")->message, "2 problems");
        l.oom = true;
        assert_int_equal(json_loader_result(&l), -ENOMEM);
        diag_list_clear(&diags);

        /* Without a list, errors are still counted. */
        l = (struct json_loader) {};
        json_loader_error(&l, "", "counted");
        assert_int_equal(json_loader_result(&l), -EINVAL);

        first = json_loader_find_duplicates(&l, names, ELEMENTSOF(names));
        assert_non_null(first);
        assert_true(first[0] == SIZE_MAX && first[1] == SIZE_MAX && first[2] == SIZE_MAX);
        assert_int_equal(first[3], 0);
        assert_int_equal(first[4], 2);
        assert_int_equal(first[5], 0);
        free(first);
        assert_null(json_loader_find_duplicates(&l, names, 0));
        assert_false(l.oom);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_files),
                cmocka_unit_test(test_members),
                cmocka_unit_test(test_strings),
                cmocka_unit_test(test_numbers),
                cmocka_unit_test(test_enum),
                cmocka_unit_test(test_loader),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
