/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The backend registry, built here without libvirt: drivers are found by name, listed in
 * order, a driver the build lacks is known but refused, and a driver's backend goes through
 * the table's wrappers (memfd has no events: attaching it to a loop is a no-op).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "backend/registry.h"

static void test_find(void **state) {
        const struct backend_driver *d;

        (void) state;
        d = backend_driver_find(BACKEND_DRIVER_DEFAULT);
        assert_non_null(d);
        assert_string_equal(d->name, "memfd");
        assert_non_null(d->new);
        assert_non_null(backend_driver_find("libvirt"));
        assert_null(backend_driver_find("xen"));
        assert_null(backend_driver_find(""));
        assert_null(backend_driver_find(NULL));
}

static void test_list(void **state) {
        size_t n = 0;

        (void) state;
        for (; backend_driver_at(n); n++) {
                assert_non_null(backend_driver_at(n)->summary);
                assert_ptr_equal(backend_driver_find(backend_driver_at(n)->name), backend_driver_at(n));
        }
        assert_int_equal(n, 2);
        assert_string_equal(backend_driver_at(0)->name, "memfd");
        assert_string_equal(backend_driver_at(1)->name, "libvirt");
}

static void test_new(void **state) {
        struct backend *b = (struct backend *) 0x1;
        sd_event *e = NULL;

        (void) state;
        assert_int_equal(backend_driver_new("xen", &(struct backend_options) {}, &b), -ENOENT);
        assert_int_equal(backend_driver_new("libvirt", &(struct backend_options) {}, &b), -EOPNOTSUPP);
        assert_ptr_equal(b, (struct backend *) 0x1);

        assert_int_equal(backend_driver_new("memfd", NULL, &b), 0);
        assert_string_equal(backend_name(b), "memfd");
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(backend_attach_event(b, e), 0);
        backend_free(b);
        sd_event_unref(e);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_find),
                cmocka_unit_test(test_list),
                cmocka_unit_test(test_new),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
