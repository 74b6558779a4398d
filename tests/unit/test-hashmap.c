/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/hashmap.h"

struct item {
        uint64_t id;
        char name[16];
};

static void test_string_keys(void **state) {
        _cleanup_(hashmap_freep) struct hashmap *h = NULL;
        struct item a = { .name = "alpha" }, b = { .name = "beta" }, dup = { .name = "alpha" };

        (void) state;
        assert_int_equal(hashmap_new(&hashmap_string_ops, &h), 0);
        assert_null(hashmap_get(h, "alpha"));
        assert_int_equal(hashmap_put(h, a.name, &a), 0);
        assert_int_equal(hashmap_put(h, b.name, &b), 0);
        assert_int_equal(hashmap_put(h, dup.name, &dup), -EEXIST);
        assert_ptr_equal(hashmap_get(h, "alpha"), &a);
        assert_ptr_equal(hashmap_get(h, "beta"), &b);
        assert_null(hashmap_get(h, "gamma"));
        assert_ptr_equal(hashmap_remove(h, "alpha"), &a);
        assert_null(hashmap_remove(h, "alpha"));
        assert_null(hashmap_get(h, "alpha"));
        assert_int_equal(hashmap_size(h), 1);
}

/* Many inserts and removals against a plain array as the model: probe runs survive deletion. */
static void test_u64_against_model(void **state) {
        enum { N = 20000 };
        _cleanup_(hashmap_freep) struct hashmap *h = NULL;
        _cleanup_(xfreep) struct item *items = calloc(N, sizeof(*items));
        _cleanup_(xfreep) bool *present = calloc(N, sizeof(*present));
        uint64_t rng = 88172645463325252ull;
        size_t count = 0, seen = 0, it = 0;
        void *v;

        (void) state;
        assert_non_null(items);
        assert_non_null(present);
        assert_int_equal(hashmap_new(&hashmap_u64_ops, &h), 0);
        for (size_t i = 0; i < N; i++)
                items[i].id = i * 7919;

        for (int step = 0; step < 200000; step++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                size_t i = rng % N;
                if (present[i]) {
                        assert_ptr_equal(hashmap_remove(h, &items[i].id), &items[i]);
                        present[i] = false;
                        count--;
                } else {
                        assert_int_equal(hashmap_put(h, &items[i].id, &items[i]), 0);
                        present[i] = true;
                        count++;
                }
        }
        assert_int_equal(hashmap_size(h), count);
        for (size_t i = 0; i < N; i++)
                assert_ptr_equal(hashmap_get(h, &items[i].id), present[i] ? &items[i] : NULL);
        while (hashmap_iterate(h, &it, &v)) {
                assert_true(present[(struct item *) v - items]);
                seen++;
        }
        assert_int_equal(seen, count);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_string_keys),
                cmocka_unit_test(test_u64_against_model),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
