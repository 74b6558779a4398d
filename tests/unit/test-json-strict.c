/* SPDX-License-Identifier: Apache-2.0 */
/* util/json-strict and util/utf8: what json-c takes but JSON does not, refused with a place and a reason. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "util/json-strict.h"
#include "util/macro.h"
#include "util/utf8.h"

static void passes(const char *text) {
        size_t offset = 12345;
        const char *reason = "untouched";

        if (json_strict_check(text, strlen(text), &offset, &reason) != 0)
                fail_msg("'%s' refused at byte %zu: %s", text, offset, reason);
        assert_int_equal(offset, 12345);
        assert_string_equal(reason, "untouched");
}

static void refused(const char *text, size_t expected_offset, const char *substr) {
        size_t offset = SIZE_MAX;
        const char *reason = NULL;

        assert_int_equal(json_strict_check(text, strlen(text), &offset, &reason), -EBADMSG);
        assert_non_null(reason);
        if (offset != expected_offset || !strstr(reason, substr))
                fail_msg("'%s': refused at byte %zu with \"%s\", expected byte %zu with \"%s\"", text, offset, reason,
                         expected_offset, substr);
        /* a reason never carries the text's bytes */
        for (const char *p = reason; *p; p++)
                assert_true((unsigned char) *p >= 0x20 && (unsigned char) *p < 0x80);
}

struct refusal {
        const char *text;
        size_t offset;
        const char *reason;
};

static void test_utf8(void **state) {
        (void) state;
        assert_int_equal(utf8_valid_prefix("", 0), 0);
        assert_int_equal(utf8_valid_prefix("a\0b", 3), 3);
        assert_int_equal(utf8_valid_prefix("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 13), 13);
        assert_int_equal(utf8_valid_prefix("ab\xc0\xaf", 4), 2);         /* overlong '/' */
        assert_int_equal(utf8_valid_prefix("\xc1\xbf", 2), 0);           /* overlong */
        assert_int_equal(utf8_valid_prefix("a\xe0\x80\xaf", 4), 1);      /* overlong, three bytes */
        assert_int_equal(utf8_valid_prefix("\xf0\x80\x80\xaf", 4), 0);   /* overlong, four bytes */
        assert_int_equal(utf8_valid_prefix("x\xed\xa0\x80", 4), 1);      /* U+D800 */
        assert_int_equal(utf8_valid_prefix("\xed\x9f\xbf\xed\xbf\xbf", 6), 3); /* U+D7FF, then U+DFFF */
        assert_int_equal(utf8_valid_prefix("\xf4\x90\x80\x80", 4), 0);   /* U+110000 */
        assert_int_equal(utf8_valid_prefix("\xf5\x80\x80\x80", 4), 0);
        assert_int_equal(utf8_valid_prefix("\xf8\x88\x80\x80\x80", 5), 0);
        assert_int_equal(utf8_valid_prefix("\x80", 1), 0);               /* a continuation alone */
        assert_int_equal(utf8_valid_prefix("a\xe2\x82", 3), 1);          /* cut short */
        assert_int_equal(utf8_valid_prefix("\xe2\x82\xac", 2), 0);       /* cut by the length */
        assert_int_equal(utf8_valid_prefix("\xe2\x28\xa1", 3), 0);       /* not a continuation */
}

static void test_valid(void **state) {
        (void) state;
        passes("");
        passes("{\"a\": [1, -2, 0, 0.5, -0.0, 1e5, 1E-2, 2.5e+3, true, false, null, \"x\"]}");
        passes("[18446744073709551615, -9223372036854775808, 1e308, 0.1000000000000000000001]");
        passes("[\"99999999999999999999\", \"NaN\", \"'\", \"-0\", \"01\"]");
        passes("[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbd\"]");
        passes("[\"\\ud83d\\ude00\\u00e9\\\\ud800\\\\\", \"\\\"\\u0041\"]");
        passes("{\"k\": \"a\\u0000b\", \"a:\": \":\"}"); /* NUL in a value: the reader decides */
        /* what json-c refuses itself is left to it */
        passes("[\"unterminated");
        passes("[\"\\x41\", \"\\u12\"]");
        passes("[1,,]");
}

static void test_refused(void **state) {
        static const struct refusal cases[] = {
                /* strings */
                { "[\"\xc0\xaf\"]", 2, "invalid UTF-8" },
                { "{\"\xed\xa0\x80\": 1}", 2, "invalid UTF-8" },
                { "[\"ok\", \"\xf4\x90\x80\x80\"]", 8, "invalid UTF-8" },
                { "[1]\xff", 3, "invalid UTF-8" },
                { "[\"\\ud800\"]", 2, "lone surrogate escape" },
                { "[\"\\uDBFF\\u0041\"]", 2, "lone surrogate escape" },
                { "[\"ab\\ud800x\"]", 4, "lone surrogate escape" },
                { "[\"\\udc00\"]", 2, "lone surrogate escape" },
                { "[\"\\ude00\\ud83d\"]", 2, "lone surrogate escape" },
                { "[\"x\\ud83d\"]", 3, "lone surrogate escape" },
                { "{\"a\\u0000b\" : 1}", 11, "\\u0000 in a member name" },
                { "{'a': 1}", 1, "single-quoted" },
                { "[1, '']", 4, "single-quoted" },
                /* numbers and words */
                { "[NaN]", 1, "NaN and Infinity are not JSON" },
                { "[nan]", 1, "bare word" },
                { "[Infinity]", 1, "bare word" },
                { "[1, -Infinity]", 4, "not a JSON number" },
                { "[True]", 1, "bare word" },
                { "[18446744073709551616]", 1, "integer does not fit in 64 bits" },
                { "[1, -9223372036854775809]", 4, "outside [-2^63, 2^64-1]" },
                { "[99999999999999999999999]", 1, "outside" },
                { "[1e400]", 1, "too large for a double" },
                { "[-1.5e309]", 1, "too large for a double" },
                { "[007]", 1, "leading zero" },
                { "[-01]", 1, "leading zero" },
                { "[-0]", 1, "the integer -0" },
                { "[1.]", 1, "not a JSON number" },
                { "[.5]", 1, "not a JSON number" },
                { "[1e]", 1, "not a JSON number" },
                { "[1e+]", 1, "not a JSON number" },
                { "[12abc]", 1, "not a JSON number" },
                { "[0x10]", 1, "not a JSON number" },
                { "[1.5.2]", 1, "not a JSON number" },
                { "-", 0, "not a JSON number" },
                /* the first offence is the one reported */
                { "[01, \"\\ud800\"]", 1, "leading zero" },
        };

        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                refused(cases[i].text, cases[i].offset, cases[i].reason);
}

/* Optional outputs, and text that ends inside a token. */
static void test_edges(void **state) {
        const char text[] = "[1e999";

        (void) state;
        assert_int_equal(json_strict_check("[NaN]", 5, NULL, NULL), -EBADMSG);
        assert_int_equal(json_strict_check(text, strlen(text), NULL, NULL), -EBADMSG);
        assert_int_equal(json_strict_check("[\"\\ud800", 8, NULL, NULL), -EBADMSG);
        assert_int_equal(json_strict_check("[\"\\u", 4, NULL, NULL), 0);
        assert_int_equal(json_strict_check("[\"\\", 3, NULL, NULL), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_utf8),
                cmocka_unit_test(test_valid),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_edges),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
