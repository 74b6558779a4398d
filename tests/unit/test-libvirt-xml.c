/* SPDX-License-Identifier: Apache-2.0 */
/* Finding brokerd's devices in a domain's live XML: only <shmem> aliases in our exact form. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>

#include "backend/libvirt-xml.h"

#include <stdio.h>
#include <string.h>

struct found {
        uint64_t ids[8];
        char names[8][64];
        size_t n;
};

static int collect(void *userdata, uint64_t region, const char *name) {
        struct found *f = userdata;
        if (f->n >= 8)
                return -E2BIG;
        snprintf(f->names[f->n], sizeof(f->names[f->n]), "%s", name);
        f->ids[f->n++] = region;
        return 0;
}

static void test_alias_parse(void **state) {
        uint64_t id = 0;

        (void) state;
        assert_int_equal(libvirt_alias_parse("ua-brokerd-1", &id), 0);
        assert_int_equal(id, 1);
        assert_int_equal(libvirt_alias_parse("ua-brokerd-18446744073709551615", &id), 0);
        assert_true(id == UINT64_MAX);
        id = 7;
        assert_int_equal(libvirt_alias_parse("ua-brokerd-0", &id), -EINVAL);
        assert_int_equal(libvirt_alias_parse("ua-brokerd-01", &id), -EINVAL);
        assert_int_equal(libvirt_alias_parse("ua-brokerd-", &id), -EINVAL);
        assert_int_equal(libvirt_alias_parse("ua-brokerd-0x10", &id), -EINVAL);
        assert_int_equal(libvirt_alias_parse("ua-brokerd-12a", &id), -EINVAL);
        assert_int_equal(libvirt_alias_parse("ua-brokerd--1", &id), -EINVAL);
        assert_int_equal(libvirt_alias_parse("ua-brokerd-18446744073709551616", &id), -EINVAL);
        assert_int_equal(libvirt_alias_parse("ua-other-1", &id), -EINVAL);
        assert_int_equal(libvirt_alias_parse("shmem0", &id), -EINVAL);
        assert_int_equal(libvirt_alias_parse(NULL, &id), -EINVAL);
        assert_int_equal(id, 7); /* untouched on failure */

        /* What brokerd writes, it reads back, up to the largest id. */
        char alias[LIBVIRT_ALIAS_MAX];
        libvirt_alias_format(42, alias);
        assert_string_equal(alias, "ua-brokerd-42");
        libvirt_alias_format(UINT64_MAX, alias);
        assert_int_equal(libvirt_alias_parse(alias, &id), 0);
        assert_true(id == UINT64_MAX);
}

static void test_live_xml(void **state) {
        /* Shaped like libvirt 9's live XML: hot-plugged shmem devices next to other devices. */
        static const char xml[] =
                "<domain type='qemu' id='3'>\n"
                "  <name>guest-a</name>\n"
                "  <description>has &lt;alias name='ua-brokerd-99'/&gt; in text</description>\n"
                "  <devices>\n"
                "    <serial type='pipe'><alias name='ua-brokerd-98'/></serial>\n"
                "    <shmem name='brokerd-pool0-5'>\n"
                "      <model type='ivshmem-plain'/>\n"
                "      <size unit='M'>1</size>\n"
                "      <alias name='ua-brokerd-5'/>\n"
                "      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>\n"
                "    </shmem>\n"
                "    <shmem name='someone-elses'>\n"
                "      <model type='ivshmem-plain'/>\n"
                "      <alias name='shmem0'/>\n"
                "    </shmem>\n"
                "    <shmemx><alias name='ua-brokerd-97'/></shmemx>\n"
                "    <shmem name=\"brokerd-pool0-12\"><alias name=\"ua-brokerd-12\"/></shmem>\n"
                "  </devices>\n"
                "</domain>\n";
        struct found f = {};

        (void) state;
        assert_int_equal(libvirt_xml_foreach_region(xml, collect, &f), 0);
        assert_int_equal(f.n, 2);
        assert_int_equal(f.ids[0], 5);
        assert_string_equal(f.names[0], "brokerd-pool0-5");
        assert_int_equal(f.ids[1], 12);
        assert_string_equal(f.names[1], "brokerd-pool0-12");
        /* Only brokerd's shmem devices count, not aliases in text or in other devices. */
        assert_true(libvirt_xml_has_region(xml, 5));
        assert_true(libvirt_xml_has_region(xml, 12));
        assert_false(libvirt_xml_has_region(xml, 99));
        assert_false(libvirt_xml_has_region(xml, 98));
        assert_false(libvirt_xml_has_region(xml, 97));
        assert_true(libvirt_xml_is_tcg(xml));
        assert_false(libvirt_xml_is_tcg("<domain type='kvm' id='3'><name>x</name></domain>"));
        assert_true(libvirt_xml_is_tcg("<domain type=\"qemu\">"));
        assert_false(libvirt_xml_is_tcg(NULL));
}

static int stop_at_first(void *userdata, uint64_t region, const char *name) {
        (void) name;
        *(uint64_t *) userdata = region;
        return 1;
}

static void test_edge_cases(void **state) {
        struct found f = {};
        uint64_t first = 0;

        (void) state;
        assert_int_equal(libvirt_xml_foreach_region("", collect, &f), 0);
        /* An unterminated element is not a device. */
        assert_int_equal(libvirt_xml_foreach_region("<shmem name='x'><alias name='ua-brokerd-3'/>", collect, &f), 0);
        /* A shmem without an alias does not borrow the next element's. */
        assert_int_equal(libvirt_xml_foreach_region("<shmem name='x'></shmem><disk><alias name='ua-brokerd-4'/></disk>",
                                                    collect, &f),
                         0);
        /* An alias value too long for an id. */
        assert_int_equal(libvirt_xml_foreach_region("<shmem><alias name='ua-brokerd-1111111111111111111111111111111111111"
                                                    "111111111111111111111111111111111'/></shmem>",
                                                    collect, &f),
                         0);
        assert_int_equal(f.n, 0);
        /* No name attribute (or one only inside the element): reported as "". */
        assert_int_equal(libvirt_xml_foreach_region("<shmem><source name='x'/><alias name='ua-brokerd-6'/></shmem>",
                                                    collect, &f),
                         0);
        assert_int_equal(f.n, 1);
        assert_string_equal(f.names[0], "");
        assert_int_equal(libvirt_xml_foreach_region("<shmem><alias name='ua-brokerd-8'/></shmem>"
                                                    "<shmem><alias name='ua-brokerd-9'/></shmem>",
                                                    stop_at_first, &first),
                         1);
        assert_int_equal(first, 8);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_alias_parse),
                cmocka_unit_test(test_live_xml),
                cmocka_unit_test(test_edge_cases),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
