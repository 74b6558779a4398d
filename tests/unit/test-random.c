/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "util/random.h"

#define DRAWS 20000
#define TOKEN 16

static int cmp_token(const void *a, const void *b) {
        return memcmp(a, b, TOKEN);
}

/* Tokens drawn across many refills of the reserve never repeat: no byte is handed out twice. */
static void test_tokens_distinct(void **state) {
        unsigned char (*t)[TOKEN] = calloc(DRAWS, TOKEN);

        (void) state;
        assert_non_null(t);
        for (size_t i = 0; i < DRAWS; i++)
                assert_int_equal(random_bytes(t[i], TOKEN), 0);
        qsort(t, DRAWS, TOKEN, cmp_token);
        for (size_t i = 1; i < DRAWS; i++)
                assert_true(memcmp(t[i - 1], t[i], TOKEN) != 0);
        free(t);
}

/* Draws of odd sizes, larger than the reserve too, fill every byte they are asked for. */
static void test_odd_sizes(void **state) {
        unsigned char a[1000], b[1000];

        (void) state;
        for (size_t n = 1; n <= sizeof(a); n = n * 3 + 1) {
                memset(a, 0, sizeof(a));
                memset(b, 0, sizeof(b));
                assert_int_equal(random_bytes(a, n), 0);
                assert_int_equal(random_bytes(b, n), 0);
                if (n >= 8)
                        assert_true(memcmp(a, b, n) != 0);
                /* nothing past n is written */
                for (size_t i = n; i < sizeof(a); i++)
                        assert_int_equal(a[i], 0);
        }
        assert_int_equal(random_bytes(a, 0), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_tokens_distinct),
                cmocka_unit_test(test_odd_sizes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
