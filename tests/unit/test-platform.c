/* SPDX-License-Identifier: Apache-2.0 */
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

#include "platform/platform.h"
#include "util/diag.h"
#include "util/macro.h"
#include "util/num.h"

#include "platform-docs.h"

static struct platform *load_ok(const char *text) {
        struct diag_list diags = DIAG_LIST_INIT;
        struct platform *p = NULL;
        int r;

        r = load(text, &p, &diags);
        if (r != 0 || diags.n != 0)
                diag_list_print(&diags, "test", stderr);
        assert_int_equal(r, 0);
        assert_int_equal(diags.n, 0);
        assert_non_null(p);
        diag_list_clear(&diags);
        return p;
}

static void expect_ok(const char *text) {
        platform_free(load_ok(text));
}

static void expect_diag(const char *text, int expected_r, enum diag_severity sev, const char *path, const char *substr) {
        struct diag_list diags = DIAG_LIST_INIT;
        struct platform *sentinel = (struct platform *) &diags, *p = sentinel;
        const struct diag *d;
        int r;

        r = load(text, &p, &diags);
        d = diag_find(&diags, path);
        if (r != expected_r || !d || d->severity != sev || !strstr(d->message, substr)) {
                print_error("expected %s at '%s' containing '%s', r=%d; got r=%d:\n",
                            sev == DIAG_ERROR ? "error" : "warning", path, substr, expected_r, r);
                diag_list_print(&diags, "test", stderr);
                fail();
        }
        if (expected_r < 0)
                assert_ptr_equal(p, sentinel); /* untouched on failure */
        else
                platform_free(p);
        diag_list_clear(&diags);
}

static void expect_error(const char *text, const char *path, const char *substr) {
        expect_diag(text, -EINVAL, DIAG_ERROR, path, substr);
}

static void expect_warning(const char *text, const char *path, const char *substr) {
        expect_diag(text, 0, DIAG_WARNING, path, substr);
}

static void test_base_document(void **state) {
        _cleanup_(platform_freep) struct platform *p = NULL;

        (void) state;
        p = load_ok(DOC("", POOL_A, DEV_64));
        assert_int_equal(p->n_banks, 2);
        assert_string_equal(p->banks[1].name, "bank1");
        assert_int_equal(p->banks[1].base, 4 * GiB);
        assert_int_equal(p->banks[1].end, 8 * GiB);
        assert_int_equal(p->banks[1].numa_node, 1);
        assert_int_equal(p->n_reserved, 0);
        assert_null(p->reserved);
        assert_int_equal(p->n_pools, 1);
        assert_string_equal(p->pools[0].name, "a");
        assert_int_equal(p->pools[0].base, GiB);
        assert_int_equal(p->pools[0].end, GiB + 64 * MiB);
        assert_int_equal(p->pools[0].granule, 2 * MiB);
        assert_int_equal(p->pools[0].backing, BACKING_MEMFD);
        assert_null(p->pools[0].backing_path);
        assert_int_equal(p->n_devices, 1);
        assert_string_equal(p->devices[0].owner, "hw0");
        assert_int_equal(p->devices[0].alignment, 1);
        assert_int_equal(p->devices[0].n_reserved_windows, 0);
}

static void test_optional_arrays(void **state) {
        (void) state;
        /* reserved and devices may be left out, pools may be empty. */
        expect_ok("{" MEMORY ",'pools':[" POOL_A "]}");
        expect_ok("{" MEMORY ",'pools':[]}");
        expect_ok("{'$schema':'platform.schema.json'," MEMORY ",'pools':[]}");
        expect_error("{'$schema':1," MEMORY ",'pools':[]}", "$schema", "expected a string, got an integer");
}

static void test_document_type(void **state) {
        (void) state;
        expect_error("[]", "", "expected an object, got an array");
        expect_error("null", "", "expected an object, got null");
        expect_error("42", "", "expected an object, got an integer");
}

static void test_unknown_keys(void **state) {
        (void) state;
        expect_error("{" MEMORY ",'pools':[],'pool':[]}", "pool", "unknown key");
        expect_error("{'memory':[{'name':'b','base':0,'size':'1GiB','numa_node':0,'node':0}],'pools':[]}",
                     "memory[0].node", "unknown key (allowed: name, base, size, numa_node)");
        expect_error(DOC("{'name':'r','base':0,'size':4096,'kind':'x'}", "", ""), "reserved[0].kind", "unknown key");
        expect_error(DOC("", "{'name':'a','base':'0x40000000','size':'64MiB','numa_node':0,'granule':'2MiB',"
                             "'backing':{'kind':'memfd'},'colour':'red'}", ""),
                     "pools[0].colour", "unknown key");
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MiB", "{'kind':'memfd','size':1}"), DEV_64),
                     "pools[0].backing.size", "unknown key (allowed: kind, path)");
        expect_error(DOC("", POOL_A, DEV(",'mask':32")), "devices[0].mask", "unknown key");
        expect_error(DOC("", POOL_A, DEV(",'dma_windows':[{'base':0,'size':'4GiB','name':'w'}]")),
                     "devices[0].dma_windows[0].name", "unknown key (allowed: base, size)");
        expect_error(DOC("", POOL_A, DEV(",'reserved_windows':[{'base':0,'size':4096,'flags':1}]")),
                     "devices[0].reserved_windows[0].flags", "unknown key");
}

static void test_wrong_types(void **state) {
        (void) state;
        expect_error("{'memory':{},'pools':[]}", "memory", "expected an array, got an object");
        expect_error("{" MEMORY ",'pools':{}}", "pools", "expected an array");
        expect_error("{" MEMORY ",'pools':[],'reserved':'none'}", "reserved", "expected an array, got a string");
        expect_error("{" MEMORY ",'pools':[],'devices':null}", "devices", "expected an array, got null");
        expect_error("{" MEMORY ",'pools':[7]}", "pools[0]", "expected an object, got an integer");
        expect_error("{'memory':[[]],'pools':[]}", "memory[0]", "expected an object, got an array");
        expect_error(DOC("", POOL_JSON("1", "'0x40000000'", "0"), ""),
                     "pools[0].name", "expected a string, got an integer");
        expect_error(DOC("", POOL_JSON("'a'", "'0x40000000'", "'0'"), ""),
                     "pools[0].numa_node", "expected an integer 0..1023");
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MiB", "'memfd'"), ""), "pools[0].backing",
                     "expected an object, got a string");
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MiB", "{'kind':true}"), ""), "pools[0].backing.kind",
                     "expected a string, got a boolean");
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MiB", "{'kind':'shm','path':['/dev/shm']}"), ""),
                     "pools[0].backing.path", "expected a string, got an array");
        expect_error(DOC("", POOL_A, "{'name':'d0','owner':'hw0','dma_mask_bits':32.0}"), "devices[0].dma_mask_bits",
                     "expected an integer 12..64");
        expect_error(DOC("", POOL_A, DEV(",'dma_windows':{}")), "devices[0].dma_windows", "expected an array");
        expect_error(DOC("", POOL_A, DEV(",'reserved_windows':[1]")), "devices[0].reserved_windows[0]",
                     "expected an object");
        /* Strings holding a NUL byte would be cut short by C. */
        expect_error(DOC("", POOL_JSON("'a\\u0000b'", "'0x40000000'", "0"), ""),
                     "pools[0].name", "must not contain a NUL character");
}

static void test_missing_keys(void **state) {
        (void) state;
        expect_error("{'pools':[]}", "memory", "missing required key");
        expect_error("{" MEMORY "}", "pools", "missing required key");
        expect_error("{'memory':[{'name':'b','size':'1GiB','numa_node':0}],'pools':[]}", "memory[0].base",
                     "missing required key");
        expect_error("{'memory':[{'name':'b','base':0,'size':'1GiB'}],'pools':[]}", "memory[0].numa_node",
                     "missing required key");
        expect_error(DOC("{'base':0,'size':4096}", "", ""), "reserved[0].name", "missing required key");
        expect_error(DOC("", "{'name':'a','base':'0x40000000','size':'64MiB','numa_node':0,'backing':{'kind':'memfd'}}", ""),
                     "pools[0].granule", "missing required key");
        expect_error(DOC("", "{'name':'a','base':'0x40000000','size':'64MiB','numa_node':0,'granule':'2MiB'}", ""),
                     "pools[0].backing", "missing required key");
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MiB", "{}"), ""), "pools[0].backing.kind",
                     "missing required key");
        expect_error(DOC("", POOL_A, "{'name':'d0','dma_mask_bits':64}"), "devices[0].owner", "missing required key");
        expect_error(DOC("", POOL_A, "{'name':'d0','owner':'hw0'}"), "devices[0].dma_mask_bits", "missing required key");
        expect_error(DOC("", POOL_A, DEV(",'dma_windows':[{'base':0}]")), "devices[0].dma_windows[0].size",
                     "missing required key");
}

static void test_numbers(void **state) {
        _cleanup_(platform_freep) struct platform *p = NULL;

        (void) state;
        /* Every spelling: JSON integer, hex, decimal string, suffix. */
        p = load_ok(DOC("{'name':'r0','base':4096,'size':'8192'},{'name':'r1','base':'0X10000','size':'1KiB'}",
                        "{'name':'a','base':1073741824,'size':67108864,'numa_node':0,'granule':2097152,'backing':{'kind':'memfd'}}",
                        DEV_64));
        assert_int_equal(p->reserved[0].base, 4096);
        assert_int_equal(p->reserved[0].end, 4096 + 8192);
        assert_int_equal(p->reserved[1].base, 0x10000);
        assert_int_equal(p->reserved[1].end, 0x10000 + KiB);
        assert_int_equal(p->pools[0].base, GiB);
        assert_int_equal(p->pools[0].granule, 2 * MiB);

        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MB", MEMFD), ""), "pools[0].granule",
                     "expected a 64-bit number: integer, \"0x…\" hex, or with a KiB/MiB/GiB/TiB suffix (got \"2MB\")");
        expect_error(DOC("", POOL("a", "0x", "64MiB", "2MiB", MEMFD), ""), "pools[0].base", "expected a 64-bit number");
        expect_error(DOC("", POOL("a", "0x10000000000000000", "64MiB", "2MiB", MEMFD), ""), "pools[0].base",
                     "expected a 64-bit number");
        expect_error(DOC("", POOL("a", "0x40000000", "64 MiB", "2MiB", MEMFD), ""), "pools[0].size",
                     "expected a 64-bit number");
        expect_error(DOC("{'name':'r','base':-4096,'size':4096}", "", ""), "reserved[0].base",
                     "hex, or with a KiB/MiB/GiB/TiB suffix (got -4096)");
        expect_error(DOC("{'name':'r','base':4096.5,'size':4096}", "", ""), "reserved[0].base", "expected a 64-bit number");
        expect_error(DOC("{'name':'r','base':4096,'size':true}", "", ""), "reserved[0].size",
                     "suffix (got true)");
        expect_error(DOC("", POOL_A, DEV(",'alignment':null")), "devices[0].alignment", "expected a 64-bit number");
}

static void test_integer_literals(void **state) {
        _cleanup_(platform_freep) struct platform *p = NULL;

        (void) state;
        /* The largest JSON integer is exact; one more must not be clamped silently. */
        p = load_ok(DOC("{'name':'r','base':0,'size':18446744073709551615}", "", ""));
        assert_int_equal(p->reserved[0].end, UINT64_MAX);
        expect_error(DOC("{'name':'r','base':0,'size':18446744073709551616}", "", ""), "",
                     "integer does not fit in 64 bits");
        expect_error(DOC("{'name':'r','base':-9223372036854775809,'size':1}", "", ""), "",
                     "integer does not fit in 64 bits");
        /* Digits in strings are not numbers. */
        expect_ok(DOC("{'name':'r99999999999999999999999','base':0,'size':1}", POOL_A, DEV_64));
}

static void test_size_zero(void **state) {
        (void) state;
        expect_ok(DOC("{'name':'r','base':'0x0','size':1}", POOL_A, DEV_64));
        expect_error(DOC("{'name':'r','base':'0x0','size':0}", "", ""), "reserved[0].size", "size must not be zero");
        expect_error("{'memory':[{'name':'b','base':0,'size':'0x0','numa_node':0}],'pools':[]}", "memory[0].size",
                     "size must not be zero");
        expect_error(DOC("", POOL("a", "0x40000000", "0MiB", "2MiB", MEMFD), ""), "pools[0].size", "size must not be zero");
        expect_error(DOC("", POOL_A, DEV(",'dma_windows':[{'base':0,'size':0}]")), "devices[0].dma_windows[0].size",
                     "size must not be zero");
        expect_error(DOC("", POOL_A, DEV(",'reserved_windows':[{'base':0,'size':0}]")),
                     "devices[0].reserved_windows[0].size", "size must not be zero");
}

static void test_wrap(void **state) {
        _cleanup_(platform_freep) struct platform *p = NULL;

        (void) state;
        /* The end may be UINT64_MAX itself, never past it. */
        p = load_ok(DOC("{'name':'top','base':'0xfffffffffffff000','size':'0xfff'}", POOL_A, DEV_64));
        assert_int_equal(p->reserved[0].end, UINT64_MAX);
        expect_error(DOC("{'name':'top','base':'0xfffffffffffff000','size':'4KiB'}", "", ""), "reserved[0].size",
                     "base 0xfffffffffffff000 + size 4KiB wraps past the end of the 64-bit address space");
        expect_error("{'memory':[{'name':'b','base':'0xffffffffffffffff','size':1,'numa_node':0}],'pools':[]}",
                     "memory[0].size", "wraps past the end");
        expect_error(DOC("", POOL_A, DEV(",'dma_windows':[{'base':'0xffffffffffff0000','size':'1MiB'}]")),
                     "devices[0].dma_windows[0].size", "wraps past the end");
        expect_error(DOC("", POOL_A, DEV(",'reserved_windows':[{'base':'0xffffffffffff0000','size':'1MiB'}]")),
                     "devices[0].reserved_windows[0].size", "wraps past the end");
}

static void test_banks(void **state) {
        (void) state;
        /* Adjacent banks are fine (the base document), overlapping ones are not. */
        expect_ok(DOC("", POOL_A, DEV_64));
        expect_error("{'memory':[{'name':'bank0','base':0,'size':'4GiB','numa_node':0},"
                     "{'name':'bank1','base':'0xfffff000','size':'4GiB','numa_node':1}],'pools':[]}",
                     "memory[1]", "overlaps memory[0] \"bank0\" [0x0, 0x100000000)");
        expect_error("{'memory':[],'pools':[]}", "memory", "must list at least one RAM bank");
        expect_error("{'memory':[{'name':'b','base':0,'size':'1GiB','numa_node':1024}],'pools':[]}",
                     "memory[0].numa_node", "expected an integer 0..1023");
        expect_error("{'memory':[{'name':'b','base':0,'size':'1GiB','numa_node':-1}],'pools':[]}",
                     "memory[0].numa_node", "expected an integer 0..1023");
        expect_ok("{'memory':[{'name':'b','base':0,'size':'1GiB','numa_node':1023}],'pools':[]}");
}

static void test_granule(void **state) {
        (void) state;
        expect_ok(DOC("", POOL("a", "0x40000000", "64MiB", "4KiB", MEMFD), DEV_64));
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "3MiB", MEMFD), ""), "pools[0].granule",
                     "granule 3MiB is not a power of two");
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "0", MEMFD), ""), "pools[0].granule",
                     "is not a power of two");
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2KiB", MEMFD), ""), "pools[0].granule",
                     "granule 2KiB is smaller than 4KiB");
}

static void test_pool_alignment(void **state) {
        (void) state;
        expect_error(DOC("", POOL("a", "0x1234000", "64MiB", "2MiB", MEMFD), ""), "pools[0].base",
                     "0x1234000 is not aligned to the pool granule 2MiB");
        expect_error(DOC("", POOL("a", "0x40000000", "3MiB", "2MiB", MEMFD), ""), "pools[0].size",
                     "size 3MiB is not a multiple of the pool granule 2MiB");
        /* 4KiB-aligned is enough for a 4KiB granule. */
        expect_ok(DOC("", POOL("a", "0x1234000", "12KiB", "4KiB", MEMFD), DEV_64));
}

static void test_pool_in_bank(void **state) {
        (void) state;
        /* Straddling two adjacent banks is not inside one bank. */
        expect_error(DOC("", POOL("a", "0xffe00000", "4MiB", "2MiB", MEMFD), ""), "pools[0]",
                     "[0xffe00000, 0x100200000) is not inside one RAM bank");
        expect_error(DOC("", POOL("a", "0x200000000", "2MiB", "2MiB", MEMFD), ""), "pools[0]",
                     "is not inside one RAM bank");
        /* A pool in a bank that failed to parse only gets the bank's error. */
        {
                struct diag_list diags = DIAG_LIST_INIT;
                struct platform *p = NULL;

                assert_int_equal(load("{'memory':[{'name':'bank0','base':'0x0','size':'4GiB','numa_node':0},"
                                      "{'name':'bank1','base':'0x100000000','size':'4GB','numa_node':1}],"
                                      "'pools':[{'name':'a','base':'0x100000000','size':'64MiB','numa_node':1,"
                                      "'granule':'2MiB','backing':{'kind':'memfd'}}]}",
                                      &p, &diags),
                                 -EINVAL);
                assert_int_equal(diags.n, 1);
                assert_string_equal(diags.items[0].path, "memory[1].size");
                diag_list_clear(&diags);
        }
        /* Filling a bank exactly is fine. */
        expect_ok(DOC("", POOL("a", "0x0", "4GiB", "2MiB", MEMFD), DEV_64));
}

static void test_pool_numa(void **state) {
        (void) state;
        expect_error(DOC("", POOL_JSON("'a'", "'0x100000000'", "0"), ""),
                     "pools[0].numa_node", "numa_node 0 does not match RAM bank \"bank1\" on node 1");
        expect_ok(DOC("", POOL_JSON("'a'", "'0x100000000'", "1"), DEV_64));
}

static void test_pool_overlaps(void **state) {
        (void) state;
        expect_ok(DOC("", POOL_A "," POOL("b", "0x44000000", "64MiB", "2MiB", MEMFD), DEV_64));
        expect_error(DOC("", POOL_A "," POOL("b", "0x43e00000", "64MiB", "2MiB", MEMFD), ""), "pools[1]",
                     "overlaps pools[0] \"a\" [0x40000000, 0x44000000)");
}

static void test_pool_reserved(void **state) {
        (void) state;
        expect_ok(DOC("{'name':'fw','base':'0x3ff00000','size':'1MiB'}", POOL_A, DEV_64));
        expect_error(DOC("{'name':'fw','base':'0x3ff00000','size':'2MiB'}", POOL_A, ""), "pools[0]",
                     "overlaps reserved[0] \"fw\" [0x3ff00000, 0x40100000)");
        /* Reserved ranges may overlap each other and lie outside RAM. */
        expect_ok(DOC("{'name':'r0','base':'0x0','size':'2MiB'},{'name':'r1','base':'0x100000','size':'2MiB'},"
                      "{'name':'mmio','base':'0x10000000000','size':'1GiB'}",
                      POOL_A, DEV_64));
}

static void test_backing(void **state) {
        _cleanup_(platform_freep) struct platform *p = NULL;

        (void) state;
        p = load_ok(DOC("", POOL("m", "0x40000000", "64MiB", "2MiB", MEMFD) ","
                            POOL("s", "0x44000000", "64MiB", "2MiB", "{'kind':'shm','path':'/dev/shm'}") ","
                            POOL("h", "0x48000000", "64MiB", "2MiB", "{'kind':'hugetlbfs','path':'/dev/hugepages'}"),
                        DEV_64));
        assert_int_equal(p->pools[0].backing, BACKING_MEMFD);
        assert_null(p->pools[0].backing_path);
        assert_int_equal(p->pools[1].backing, BACKING_SHM);
        assert_string_equal(p->pools[1].backing_path, "/dev/shm");
        assert_int_equal(p->pools[2].backing, BACKING_HUGETLBFS);
        assert_string_equal(p->pools[2].backing_path, "/dev/hugepages");
        assert_false(p->pools[0].revocable); /* sealed unless asked */
        platform_free(TAKE_PTR(p));

        p = load_ok(DOC("", POOL("m", "0x40000000", "64MiB", "2MiB", MEMFD ",'revocable':true"), DEV_64));
        assert_true(p->pools[0].revocable);
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MiB", MEMFD ",'revocable':1"), ""), "pools[0].revocable",
                     "expected true or false, got an integer");

        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MiB", "{'kind':'tmpfs'}"), ""), "pools[0].backing.kind",
                     "unknown backing kind \"tmpfs\" (expected \"memfd\", \"shm\" or \"hugetlbfs\")");
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MiB", "{'kind':'shm'}"), ""), "pools[0].backing.path",
                     "missing required key: shm backing needs a directory");
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MiB", "{'kind':'hugetlbfs'}"), ""),
                     "pools[0].backing.path", "hugetlbfs backing needs a directory");
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MiB", "{'kind':'shm','path':'dev/shm'}"), ""),
                     "pools[0].backing.path", "must be an absolute path");
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MiB", "{'kind':'shm','path':''}"), ""),
                     "pools[0].backing.path", "must be an absolute path");
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MiB", "{'kind':'memfd','path':'/dev/shm'}"), ""),
                     "pools[0].backing.path", "not allowed with memfd backing");
}

static void test_hugetlbfs_granule(void **state) {
        (void) state;
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "1MiB", "{'kind':'hugetlbfs','path':'/dev/hugepages'}"), ""),
                     "pools[0].granule", "hugetlbfs pools need a granule of at least 2MiB (got 1MiB)");
        expect_ok(DOC("", POOL("a", "0x40000000", "1GiB", "1GiB", "{'kind':'hugetlbfs','path':'/dev/hugepages1G'}"), DEV_64));
        /* shm takes small granules. */
        expect_ok(DOC("", POOL("a", "0x40000000", "64MiB", "4KiB", "{'kind':'shm','path':'/dev/shm'}"), DEV_64));
}

static void test_dma_mask_bits(void **state) {
        _cleanup_(platform_freep) struct platform *p = NULL;

        (void) state;
        p = load_ok(DOC("", POOL_A, "{'name':'d64','owner':'hw0','dma_mask_bits':64},"
                                    "{'name':'d32','owner':'hw0','dma_mask_bits':32}"));
        assert_int_equal(p->devices[0].dma_mask_bits, 64);
        assert_int_equal(p->devices[0].dma_max, UINT64_MAX);
        /* The default window covers everything below the mask; for 64 bits up to UINT64_MAX. */
        assert_int_equal(p->devices[0].n_windows, 1);
        assert_int_equal(p->devices[0].windows[0].base, 0);
        assert_int_equal(p->devices[0].windows[0].end, UINT64_MAX);
        assert_null(p->devices[0].windows[0].name);
        assert_int_equal(p->devices[1].dma_mask_bits, 32);
        assert_int_equal(p->devices[1].dma_max, UINT64_C(0xffffffff));
        assert_int_equal(p->devices[1].windows[0].end, 4 * GiB);

        expect_error(DOC("", POOL_A, "{'name':'d','owner':'hw0','dma_mask_bits':11}"), "devices[0].dma_mask_bits",
                     "expected an integer 12..64 (got 11)");
        expect_error(DOC("", POOL_A, "{'name':'d','owner':'hw0','dma_mask_bits':65}"), "devices[0].dma_mask_bits",
                     "expected an integer 12..64");
        expect_error(DOC("", POOL_A, "{'name':'d','owner':'hw0','dma_mask_bits':'32'}"), "devices[0].dma_mask_bits",
                     "expected an integer 12..64");
        /* 12 bits reach only [0, 4KiB): valid, but the device reaches no pool. */
        expect_warning(DOC("", POOL_A, "{'name':'d','owner':'hw0','dma_mask_bits':12}"), "devices[0]", "can reach no pool");
}

static void test_windows(void **state) {
        _cleanup_(platform_freep) struct platform *p = NULL;

        (void) state;
        p = load_ok(DOC("", POOL_A, DEV(",'dma_windows':[{'base':'0x40000000','size':'1GiB'},{'base':'0','size':'1GiB'}]")));
        assert_int_equal(p->devices[0].n_windows, 2);
        expect_error(DOC("", POOL_A, DEV(",'dma_windows':[{'base':'0x40000000','size':'1GiB'},{'base':'0','size':'0x40001000'}]")),
                     "devices[0].dma_windows[1]", "overlaps dma_windows[0] [0x40000000, 0x80000000)");
        expect_error(DOC("", POOL_A, DEV(",'dma_windows':[]")), "devices[0].dma_windows",
                     "must list at least one window");
}

static void test_window_mask(void **state) {
        (void) state;
        /* Ending exactly at the mask is fine. */
        expect_ok(DOC("", POOL_A, DEV32(",'dma_windows':[{'base':'0x40000000','size':'3GiB'}]")));
        expect_warning(DOC("", POOL_A, DEV32(",'dma_windows':[{'base':'0x40000000','size':'4GiB'}]")),
                       "devices[0].dma_windows[0]",
                       "window [0x40000000, 0x140000000) extends above the DMA mask; addresses above 0xffffffff are unreachable");
        expect_error(DOC("", POOL_A, DEV32(",'dma_windows':[{'base':'0x40000000','size':'1GiB'},"
                                                "{'base':'0x100000000','size':'1GiB'}]")),
                     "devices[0].dma_windows[1]",
                     "window [0x100000000, 0x140000000) lies wholly above the DMA mask (highest reachable address 0xffffffff)");
}

static void test_reserved_windows(void **state) {
        _cleanup_(platform_freep) struct platform *p = NULL;

        (void) state;
        p = load_ok(DOC("", POOL_A, DEV(",'reserved_windows':[{'name':'msi','base':'0xfee00000','size':'1MiB'},"
                                        "{'base':'0','size':'4KiB'}]")));
        assert_int_equal(p->devices[0].n_reserved_windows, 2);
        /* Sorted by base; the name is optional. */
        assert_null(p->devices[0].reserved_windows[0].name);
        assert_string_equal(p->devices[0].reserved_windows[1].name, "msi");

        /* Inside one window, not across two adjacent ones. */
        expect_ok(DOC("", POOL_A, DEV(",'dma_windows':[{'base':'0','size':'1GiB'},{'base':'0x40000000','size':'1GiB'}],"
                                      "'reserved_windows':[{'base':'0x3ff00000','size':'1MiB'}]")));
        expect_error(DOC("", POOL_A, DEV(",'dma_windows':[{'base':'0','size':'1GiB'},{'base':'0x40000000','size':'1GiB'}],"
                                         "'reserved_windows':[{'base':'0x3ff00000','size':'2MiB'}]")),
                     "devices[0].reserved_windows[0]",
                     "reserved window [0x3ff00000, 0x40100000) is not inside any DMA window of the device");
        /* Against the default window too: a 32-bit device reaches nothing at 4GiB. */
        expect_error(DOC("", POOL_A, DEV32(",'reserved_windows':[{'base':'0x100000000','size':'4KiB'}]")),
                     "devices[0].reserved_windows[0]", "is not inside any DMA window");

        expect_ok(DOC("", POOL_A, DEV(",'reserved_windows':[{'base':'0','size':'4KiB'},{'base':'4KiB','size':'4KiB'}]")));
        expect_error(DOC("", POOL_A, DEV(",'reserved_windows':[{'name':'x','base':'0','size':'8KiB'},{'base':'4KiB','size':'4KiB'}]")),
                     "devices[0].reserved_windows[1]", "overlaps reserved_windows[0] \"x\" [0x0, 0x2000)");
}

static void test_alignment(void **state) {
        _cleanup_(platform_freep) struct platform *p = NULL;

        (void) state;
        p = load_ok(DOC("", POOL_A, DEV(",'alignment':'64KiB'")));
        assert_int_equal(p->devices[0].alignment, 64 * KiB);
        expect_error(DOC("", POOL_A, DEV(",'alignment':'48KiB'")), "devices[0].alignment",
                     "alignment 48KiB is not a power of two");
        expect_error(DOC("", POOL_A, DEV(",'alignment':0")), "devices[0].alignment", "alignment 0 is not a power of two");
}

static void test_names(void **state) {
        static const char long_name[] = "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
                                        "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn";
        _cleanup_(xfreep) char *ok = NULL, *bad = NULL;

        (void) state;
        assert_int_equal(strlen(long_name), 128);
        assert_true(asprintf(&ok, DOC("", POOL_A, "{'name':'%s','owner':'hw0','dma_mask_bits':64}"), long_name) > 0);
        expect_ok(ok);
        assert_true(asprintf(&bad, DOC("", POOL_A, "{'name':'%sx','owner':'hw0','dma_mask_bits':64}"), long_name) > 0);
        expect_error(bad, "devices[0].name", "expected a name: 1..128 characters");

        expect_ok(DOC("", POOL("a:b+c_d.e-f", "0x40000000", "64MiB", "2MiB", MEMFD), DEV_64));
        expect_error(DOC("", POOL(".a", "0x40000000", "64MiB", "2MiB", MEMFD), ""), "pools[0].name",
                     "expected a name: 1..128 characters of [A-Za-z0-9_.:+-], not starting with '.' or '-' (got \".a\")");
        expect_error(DOC("", POOL("", "0x40000000", "64MiB", "2MiB", MEMFD), ""), "pools[0].name", "expected a name");
        expect_error(DOC("", POOL("a b", "0x40000000", "64MiB", "2MiB", MEMFD), ""), "pools[0].name", "expected a name");
        expect_error(DOC("", POOL_A, "{'name':'d0','owner':'-hw0','dma_mask_bits':64}"), "devices[0].owner",
                     "expected a name");
        expect_error(DOC("{'name':'r/1','base':0,'size':1}", "", ""), "reserved[0].name", "expected a name");
        expect_error(DOC("", POOL_A, DEV(",'reserved_windows':[{'name':'m\\nsi','base':0,'size':1}]")),
                     "devices[0].reserved_windows[0].name", "(got \"m\\nsi\")");
}

static void test_duplicate_names(void **state) {
        (void) state;
        /* Unique per array; the same name in different arrays is fine. */
        expect_ok(DOC("{'name':'x','base':0,'size':1}", POOL("x", "0x40000000", "64MiB", "2MiB", MEMFD),
                      "{'name':'x','owner':'x','dma_mask_bits':64,'reserved_windows':[{'name':'x','base':0,'size':1}]}"));
        expect_error("{'memory':[{'name':'b','base':0,'size':'1GiB','numa_node':0},"
                     "{'name':'b','base':'1GiB','size':'1GiB','numa_node':0}],'pools':[]}",
                     "memory[1].name", "duplicate name \"b\" (also used by memory[0])");
        expect_error(DOC("{'name':'r','base':0,'size':1},{'name':'s','base':0,'size':1},{'name':'r','base':8,'size':1}", "", ""),
                     "reserved[2].name", "duplicate name \"r\" (also used by reserved[0])");
        expect_error(DOC("", POOL_A "," POOL("a", "0x44000000", "64MiB", "2MiB", MEMFD), ""), "pools[1].name",
                     "duplicate name \"a\"");
        expect_error(DOC("", POOL_A, DEV_64 "," DEV_64), "devices[1].name", "duplicate name \"d0\" (also used by devices[0])");
        expect_error(DOC("", POOL_A, DEV(",'reserved_windows':[{'name':'m','base':0,'size':1},{'name':'m','base':8,'size':1}]")),
                     "devices[0].reserved_windows[1].name", "duplicate name \"m\" (also used by devices[0].reserved_windows[0])");
}

static void test_all_errors_in_one_pass(void **state) {
        struct diag_list diags = DIAG_LIST_INIT;
        struct platform *p = NULL;

        (void) state;
        assert_int_equal(load(DOC("{'name':'r','base':0,'size':0}",
                                  POOL("a", "0x1000", "64MiB", "2MiB", MEMFD) "," POOL("b", "0x40000000", "64MiB", "3MiB", MEMFD),
                                  "{'name':'d','owner':'hw0','dma_mask_bits':70}"),
                              &p, &diags),
                         -EINVAL);
        assert_null(p);
        assert_int_equal(diag_count(&diags, DIAG_ERROR), 4);
        assert_non_null(diag_find(&diags, "reserved[0].size"));
        assert_non_null(diag_find(&diags, "pools[0].base"));
        assert_non_null(diag_find(&diags, "pools[1].granule"));
        assert_non_null(diag_find(&diags, "devices[0].dma_mask_bits"));
        diag_list_clear(&diags);

        /* Without a diag list the verdict is the same. */
        assert_int_equal(load(DOC("{'name':'r','base':0,'size':0}", "", ""), &p, NULL), -EINVAL);
        assert_null(p);
        p = NULL;
        assert_int_equal(load(DOC("", POOL_A, DEV_64), &p, NULL), 0);
        platform_free(p);
}

static void test_reachability(void **state) {
        (void) state;
        /* Window below the pool. */
        expect_warning(DOC("", POOL_A, DEV(",'dma_windows':[{'base':0,'size':'1GiB'}]")), "devices[0]",
                       "device \"d0\" can reach no pool");
        /* Mask below the pool. */
        expect_warning(DOC("", POOL_A, "{'name':'d0','owner':'hw0','dma_mask_bits':30}"), "devices[0]", "can reach no pool");
        expect_ok(DOC("", POOL_A, "{'name':'d0','owner':'hw0','dma_mask_bits':31}"));
        /* A window that covers less than one aligned granule. */
        expect_warning(DOC("", POOL_A, DEV(",'dma_windows':[{'base':'0x40001000','size':'2MiB'}]")), "devices[0]",
                       "can reach no pool");
        expect_ok(DOC("", POOL_A, DEV(",'dma_windows':[{'base':'0x3ff00000','size':'3MiB'}]")));
        /* Reserved windows covering the pool, leaving only unaligned scraps. */
        expect_warning(DOC("", POOL_A, DEV(",'reserved_windows':[{'base':'0x40000000','size':'0x2001000'},"
                                           "{'base':'0x42100000','size':'0x1f00000'}]")),
                       "devices[0]", "can reach no pool");
        expect_ok(DOC("", POOL_A, DEV(",'reserved_windows':[{'base':'0x40000000','size':'0x2000000'},"
                                      "{'base':'0x42200000','size':'0x1e00000'}]")));
        /* The device alignment counts too: 64MiB alignment over [1GiB+2MiB, 1GiB+64MiB) finds nothing. */
        expect_warning(DOC("", POOL_A, DEV(",'alignment':'64MiB','dma_windows':[{'base':'0x40200000','size':'62MiB'}]")),
                       "devices[0]", "can reach no pool");
        expect_ok(DOC("", POOL_A, DEV(",'alignment':'64MiB'")));
        /* No pools at all. */
        expect_warning("{" MEMORY ",'pools':[],'devices':[" DEV_64 "]}", "devices[0]", "can reach no pool");
        /* Only the second of several pools is reachable, through the second window. */
        expect_ok(DOC("{'name':'r','base':'0x50000000','size':'1MiB'}",
                      POOL_A "," POOL("b", "0x60000000", "64MiB", "2MiB", MEMFD) ","
                                   POOL("c", "0x70000000", "64MiB", "2MiB", MEMFD),
                      DEV(",'dma_windows':[{'base':'0','size':'1GiB'},{'base':'0x62000000','size':'4MiB'}],"
                          "'reserved_windows':[{'base':'0x62000000','size':'1MiB'}]")));
        expect_warning(DOC("{'name':'r','base':'0x50000000','size':'1MiB'}",
                           POOL_A "," POOL("b", "0x60000000", "64MiB", "2MiB", MEMFD) ","
                                   POOL("c", "0x70000000", "64MiB", "2MiB", MEMFD),
                           DEV(",'dma_windows':[{'base':'0','size':'1GiB'},{'base':'0x62000000','size':'3MiB'}],"
                               "'reserved_windows':[{'base':'0x62000000','size':'1MiB'}]")),
                       "devices[0]", "can reach no pool");
}

static void test_sorting(void **state) {
        _cleanup_(platform_freep) struct platform *p = NULL;

        (void) state;
        p = load_ok(DOC("{'name':'r2','base':'0x90000000','size':1},{'name':'r0','base':'0x10000','size':1},"
                        "{'name':'r1','base':'0x20000','size':1}",
                        POOL("c", "0x48000000", "64MiB", "2MiB", MEMFD) "," POOL_A "," POOL("b", "0x44000000", "64MiB", "2MiB", MEMFD),
                        DEV(",'dma_windows':[{'base':'0x80000000','size':'1GiB'},{'base':'0x40000000','size':'1GiB'}],"
                            "'reserved_windows':[{'name':'w1','base':'0x80000000','size':1},"
                            "{'name':'w0','base':'0x40000000','size':1}]")));
        static const char *const pool_names[] = { "a", "b", "c" };
        for (size_t i = 0; i < 3; i++) {
                char name[8];

                snprintf(name, sizeof(name), "r%zu", i);
                assert_string_equal(p->reserved[i].name, name);
                assert_string_equal(p->pools[i].name, pool_names[i]);
        }
        assert_int_equal(p->reserved[0].base, 0x10000);
        assert_int_equal(p->pools[1].base, GiB + 64 * MiB);
        assert_int_equal(p->devices[0].windows[0].base, GiB);
        assert_int_equal(p->devices[0].windows[1].base, 2 * GiB);
        assert_string_equal(p->devices[0].reserved_windows[0].name, "w0");
        assert_string_equal(p->devices[0].reserved_windows[1].name, "w1");
}

static void test_find(void **state) {
        _cleanup_(platform_freep) struct platform *p = NULL;
        const struct platform_pool *pool;

        (void) state;
        p = load_ok(DOC("",
                        POOL("c", "0x48000000", "64MiB", "2MiB", MEMFD) "," POOL_A ","
                        POOL("b", "0x44000000", "32MiB", "2MiB", MEMFD),
                        DEV_64 ",{'name':'d1','owner':'hw1','dma_mask_bits':64}"));
        assert_ptr_equal(platform_find_device(p, "d1"), &p->devices[1]);
        assert_ptr_equal(platform_find_device(p, "d0"), &p->devices[0]);
        assert_null(platform_find_device(p, "d2"));
        assert_null(platform_find_device(p, NULL));
        assert_null(platform_find_device(NULL, "d0"));
        pool = platform_find_pool(p, "b");
        assert_non_null(pool);
        assert_string_equal(pool->name, "b");
        assert_null(platform_find_pool(p, "hw0"));
        assert_null(platform_find_pool(p, NULL));

        /* a = [1GiB, 1GiB+64MiB), b = [1GiB+64MiB, 1GiB+96MiB), gap, c = [1GiB+128MiB, 1GiB+192MiB). */
        assert_null(platform_pool_at(p, 0));
        assert_null(platform_pool_at(p, GiB - 1));
        assert_string_equal(platform_pool_at(p, GiB)->name, "a");
        assert_string_equal(platform_pool_at(p, GiB + 64 * MiB - 1)->name, "a");
        assert_string_equal(platform_pool_at(p, GiB + 64 * MiB)->name, "b");
        assert_string_equal(platform_pool_at(p, GiB + 96 * MiB - 1)->name, "b");
        assert_null(platform_pool_at(p, GiB + 96 * MiB));
        assert_null(platform_pool_at(p, GiB + 128 * MiB - 1));
        assert_string_equal(platform_pool_at(p, GiB + 128 * MiB)->name, "c");
        assert_string_equal(platform_pool_at(p, GiB + 192 * MiB - 1)->name, "c");
        assert_null(platform_pool_at(p, GiB + 192 * MiB));
        assert_null(platform_pool_at(p, UINT64_MAX));
        assert_null(platform_pool_at(NULL, GiB));
}

static void test_backing_kind_strings(void **state) {
        enum backing_kind k = BACKING_SHM;

        (void) state;
        for (int i = 0; i < _BACKING_KIND_MAX; i++) {
                enum backing_kind back;
                assert_non_null(backing_kind_to_string((enum backing_kind) i));
                assert_int_equal(backing_kind_from_string(backing_kind_to_string((enum backing_kind) i), &back), 0);
                assert_int_equal(back, i);
        }
        assert_string_equal(backing_kind_to_string(BACKING_MEMFD), "memfd");
        assert_string_equal(backing_kind_to_string(BACKING_SHM), "shm");
        assert_string_equal(backing_kind_to_string(BACKING_HUGETLBFS), "hugetlbfs");
        assert_null(backing_kind_to_string(_BACKING_KIND_MAX));
        assert_null(backing_kind_to_string((enum backing_kind) -1));
        assert_int_equal(backing_kind_from_string("hugetlbfs", &k), 0);
        assert_int_equal(k, BACKING_HUGETLBFS);
        assert_int_equal(backing_kind_from_string("Memfd", &k), -EINVAL);
        assert_int_equal(backing_kind_from_string("", &k), -EINVAL);
        assert_int_equal(backing_kind_from_string(NULL, &k), -EINVAL);
        assert_int_equal(k, BACKING_HUGETLBFS);
}

static void test_syntax_errors(void **state) {
        char deep[200] = "{'memory':";

        (void) state;
        expect_error("{\n  'memory': [,\n", "", "invalid JSON at line 2, column 14");
        expect_error("{'memory':[]", "", "invalid JSON at line 1, column 13: unexpected end of data");
        expect_error("", "", "invalid JSON at line 1, column 1");
        expect_error("{} {}", "", "invalid JSON at line 1, column 4");
        /* Strict JSON: no trailing commas, comments or single-quoted strings (here: \'). */
        expect_error("{'pools':[],}", "", "invalid JSON");
        expect_error("/* c */ {}", "", "invalid JSON");
        expect_error("{'a':\"\xff\"}", "", "invalid JSON");

        /* Nesting is bounded (json-c's depth counts every array and object). */
        for (int i = 0; i < 40; i++)
                strcat(deep, "[");
        strcat(deep, "]");
        expect_error(deep, "", "nesting too deep");
        expect_error("{'memory':[[[[1]]]],'pools':[]}", "memory[0]", "expected an object");
}

static void expect_file_error(const char *text, size_t len, const char *substr) {
        struct diag_list diags = DIAG_LIST_INIT;
        char dir[] = "/tmp/test-platform-XXXXXX";
        _cleanup_(xfreep) char *path = NULL;
        struct platform *p = NULL;
        FILE *f;

        assert_non_null(mkdtemp(dir));
        assert_true(asprintf(&path, "%s/p.json", dir) > 0);
        f = fopen(path, "we");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(platform_load_file(path, &p, &diags), -EINVAL);
        assert_null(p);
        if (!diag_find(&diags, "") || !strstr(diag_find(&diags, "")->message, substr)) {
                diag_list_print(&diags, path, stderr);
                fail_msg("expected an error containing '%s'", substr);
        }
        diag_list_clear(&diags);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

static void test_file_content(void **state) {
        static const char nul[] = "{\"memory\":[],\n\"pools\":[]}\0 ";

        (void) state;
        expect_file_error(nul, sizeof(nul) - 1, "invalid JSON at line 2, column 12: NUL byte in input");
        /* Strict parsing refuses anything but white space after the document. */
        expect_file_error("{}\n{}", 5, "line 2, column 1: unexpected character");
        expect_ok(DOC("", POOL_A, DEV_64) "\n\t \r\n");
}

/* What json-c takes but JSON does not, or turns into what was not written, is refused whole
 * with its position, whether from a string or a file. */
static void test_strict_json(void **state) {
        static const char surrogate[] = "{\"memory\":[],\n\"pools\":[{\"name\":\"a\",\"backing\":"
                                        "{\"kind\":\"shm\",\"path\":\"/dev/shm/\\ud800\"}}]}";
        static const char overlong[] = "{\"$schema\":\"x\xc0\xaf\",\"memory\":[],\"pools\":[]}";

        (void) state;
        /* A free-form string, an overlong '/', a path json-c would have made U+FFFD of. */
        expect_error("{'$schema':'p\xc0\xaf'," MEMORY ",'reserved':[],'pools':[" POOL_A "],'devices':[" DEV_64 "]}",
                     "", "invalid JSON at line 1, column 14: invalid UTF-8");
        expect_error(DOC("", POOL("a", "0x40000000", "64MiB", "2MiB", "{'kind':'shm','path':'/dev/shm/\\udc00x'}"),
                         DEV_64),
                     "", "a lone surrogate escape");
        expect_error(DOC("{'name':'r\xed\xa0\x80','base':0,'size':1}", "", ""), "", "invalid UTF-8");
        expect_error(DOC("{'name':'r','base':0,'size':1.}", "", ""), "", "not a JSON number");
        expect_error(DOC("{'name':'r','base':-0,'size':1}", "", ""), "", "the integer -0");
        expect_error(DOC("{'name':'r','base':0,'size':1e999}", "", ""), "", "a number too large for a double");
        expect_file_error(overlong, sizeof(overlong) - 1, "invalid JSON at line 1, column 14: invalid UTF-8");
        expect_file_error(surrogate, sizeof(surrogate) - 1,
                          "invalid JSON at line 2, column 63: a lone surrogate escape");
        expect_file_error("{'memory':[],'pools':[]}", 24, "invalid JSON at line 1, column 2: a single-quoted string");
}

static void test_file_limits(void **state) {
        struct diag_list diags = DIAG_LIST_INIT;
        char dir[] = "/tmp/test-platform-XXXXXX";
        _cleanup_(xfreep) char *path = NULL, *big = NULL;
        struct platform *p = NULL;
        int fd;

        (void) state;
        assert_non_null(mkdtemp(dir));
        assert_true(asprintf(&path, "%s/p.json", dir) > 0);

        assert_int_equal(platform_load_file(path, &p, &diags), -ENOENT);
        assert_non_null(strstr(diag_find(&diags, "")->message, "cannot open: No such file or directory"));
        diag_list_clear(&diags);
        assert_int_equal(platform_load_file(dir, &p, &diags), -EISDIR);
        assert_non_null(strstr(diag_find(&diags, "")->message, "cannot read: Is a directory"));
        diag_list_clear(&diags);

        /* One byte over the limit, as a file and as a string. */
        big = malloc(PLATFORM_MAX_FILE_SIZE + 2);
        assert_non_null(big);
        memset(big, ' ', PLATFORM_MAX_FILE_SIZE + 1);
        big[0] = '{';
        big[PLATFORM_MAX_FILE_SIZE] = '}';
        big[PLATFORM_MAX_FILE_SIZE + 1] = '\0';
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, big, PLATFORM_MAX_FILE_SIZE + 1), PLATFORM_MAX_FILE_SIZE + 1);
        assert_int_equal(close(fd), 0);
        assert_int_equal(platform_load_file(path, &p, &diags), -EFBIG);
        assert_null(p);
        assert_non_null(diag_find(&diags, ""));
        assert_non_null(strstr(diag_find(&diags, "")->message, "larger than the limit of 4MiB"));
        diag_list_clear(&diags);
        assert_int_equal(platform_load_string(big, &p, &diags), -EFBIG);
        assert_non_null(strstr(diag_find(&diags, "")->message, "input is larger than the limit of 4MiB"));
        diag_list_clear(&diags);

        /* Exactly at the limit is read and parsed: this one lacks memory. */
        big[PLATFORM_MAX_FILE_SIZE] = '\0';
        big[PLATFORM_MAX_FILE_SIZE - 1] = '}';
        assert_int_equal(platform_load_string(big, &p, &diags), -EINVAL);
        assert_string_equal(diags.items[0].path, "memory");
        diag_list_clear(&diags);
        assert_int_equal(truncate(path, PLATFORM_MAX_FILE_SIZE), 0);
        fd = open(path, O_WRONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "}", 1, PLATFORM_MAX_FILE_SIZE - 1), 1);
        assert_int_equal(close(fd), 0);
        assert_int_equal(platform_load_file(path, &p, &diags), -EINVAL);
        assert_string_equal(diags.items[0].path, "memory");
        diag_list_clear(&diags);

        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

/* A document with n reserved ranges (4KiB each, from 8GiB up) and, per device, n windows. */
static char *doc_with_entries(size_t n_reserved, size_t n_windows, size_t n_reserved_windows) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&buf, &size);
        assert_non_null(f);
        fputs("{" MEMORY ",'pools':[" POOL_A "],'reserved':[", f);
        for (size_t i = 0; i < n_reserved; i++)
                fprintf(f, "%s{'name':'r%zu','base':%" PRIu64 ",'size':4096}", i ? "," : "", i, 8 * GiB + i * 4096);
        fputs("],'devices':[{'name':'d0','owner':'hw0','dma_mask_bits':64,'dma_windows':[", f);
        for (size_t i = 0; i < n_windows; i++)
                fprintf(f, "%s{'base':%" PRIu64 ",'size':'1GiB'}", i ? "," : "", i * GiB);
        fputs("],'reserved_windows':[", f);
        for (size_t i = 0; i < n_reserved_windows; i++)
                fprintf(f, "%s{'base':%" PRIu64 ",'size':4096}", i ? "," : "", 2 * GiB + i * 4096);
        fputs("]}]}", f);
        assert_int_equal(fclose(f), 0);
        return buf;
}

static void test_entry_limits(void **state) {
        _cleanup_(xfreep) char *ok = NULL, *too_many = NULL, *windows = NULL, *reserved_windows = NULL;
        _cleanup_(platform_freep) struct platform *p = NULL;

        (void) state;
        ok = doc_with_entries(PLATFORM_MAX_ENTRIES, PLATFORM_MAX_WINDOWS, PLATFORM_MAX_WINDOWS);
        p = load_ok(ok);
        assert_int_equal(p->n_reserved, PLATFORM_MAX_ENTRIES);
        assert_int_equal(p->devices[0].n_windows, PLATFORM_MAX_WINDOWS);
        assert_int_equal(p->devices[0].n_reserved_windows, PLATFORM_MAX_WINDOWS);

        too_many = doc_with_entries(PLATFORM_MAX_ENTRIES + 1, 1, 0);
        expect_error(too_many, "reserved", "too many entries: 4097 (at most 4096)");
        windows = doc_with_entries(1, PLATFORM_MAX_WINDOWS + 1, 0);
        expect_error(windows, "devices[0].dma_windows", "too many entries: 257 (at most 256)");
        reserved_windows = doc_with_entries(1, 4, PLATFORM_MAX_WINDOWS + 1);
        expect_error(reserved_windows, "devices[0].reserved_windows", "too many entries");
}

static void test_load_json(void **state) {
        _cleanup_(xfreep) char *text = q(DOC("", POOL_A, DEV_64));
        struct diag_list diags = DIAG_LIST_INIT;
        struct platform *p = NULL;
        json_object *root;

        (void) state;
        root = json_tokener_parse(text);
        assert_non_null(root);
        assert_int_equal(platform_load_json(root, &p, &diags), 0);
        assert_non_null(p);
        platform_free(p);
        p = NULL;
        json_object_object_del(root, "pools");
        assert_int_equal(platform_load_json(root, &p, &diags), -EINVAL);
        assert_null(p);
        assert_non_null(diag_find(&diags, "pools"));
        diag_list_clear(&diags);
        json_object_put(root);
        assert_int_equal(platform_load_json(NULL, &p, &diags), -EINVAL);
        assert_string_equal(diags.items[0].message, "expected an object, got null");
        diag_list_clear(&diags);
}

/* $BROKERD_EXAMPLES (set by meson test); when run by hand, found from this file's path. */
static const char *examples_dir(void) {
        static char *dir;
        char exe[PATH_MAX], *slash;
        const char *env = getenv("BROKERD_EXAMPLES"), *suffix = "tests/unit/test-platform.c";
        size_t len;
        ssize_t n;

        if (env && *env)
                return env;
        if (dir)
                return dir;
        /* Meson compiles with __FILE__ relative to the build dir, which holds tests/<binary>. */
        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        assert_true(n > 0);
        exe[n] = '\0';
        for (int i = 0; i < 2; i++) {
                slash = strrchr(exe, '/');
                assert_non_null(slash);
                *slash = '\0';
        }
        len = strlen(__FILE__);
        assert_true(len >= strlen(suffix));
        assert_true(asprintf(&dir, "%s%s%.*sdocs/examples", __FILE__[0] == '/' ? "" : exe,
                             __FILE__[0] == '/' ? "" : "/", (int) (len - strlen(suffix)), __FILE__) > 0);
        return dir;
}

static void test_example_file(void **state) {
        struct diag_list diags = DIAG_LIST_INIT;
        _cleanup_(platform_freep) struct platform *p = NULL;
        _cleanup_(xfreep) char *path = NULL;
        const struct platform_device *d;
        const struct platform_pool *pool;

        (void) state;
        assert_true(asprintf(&path, "%s/platform.json", examples_dir()) > 0);
        if (platform_load_file(path, &p, &diags) != 0 || diags.n != 0) {
                diag_list_print(&diags, path, stderr);
                fail_msg("%s must load without errors or warnings", path);
        }
        diag_list_clear(&diags);

        /* Other modules' tests rely on these. */
        assert_int_equal(p->n_banks, 2);
        assert_int_not_equal(p->banks[0].numa_node, p->banks[1].numa_node);
        static const char *const pool_names[] = { "net0", "small0", "gpu1" };
        for (size_t i = 0; i < 3; i++) {
                pool = platform_find_pool(p, pool_names[i]);
                assert_non_null(pool);
                assert_int_equal(pool->backing, BACKING_MEMFD);
        }
        assert_int_equal(platform_find_pool(p, "small0")->granule, 4 * KiB);
        assert_int_equal(platform_find_pool(p, "net0")->granule, 2 * MiB);
        assert_true(platform_find_pool(p, "net0")->end <= 4 * GiB);
        assert_int_equal(platform_find_pool(p, "gpu1")->numa_node, 1);
        d = platform_find_device(p, "nic0");
        assert_non_null(d);
        assert_string_equal(d->owner, "hw0");
        assert_int_equal(d->dma_mask_bits, 32);
        d = platform_find_device(p, "gpu0");
        assert_non_null(d);
        assert_int_equal(d->dma_mask_bits, 64);
        d = platform_find_device(p, "blk0");
        assert_non_null(d);
        assert_int_equal(d->alignment, 64 * KiB);
        assert_true(d->n_reserved_windows >= 1);
        for (size_t i = 0; i < p->n_devices; i++)
                assert_string_equal(p->devices[i].owner, "hw0");
        for (size_t i = 0; i < p->n_reserved; i++)
                if (p->reserved[i].base <= 0xfee00000 && 0xfee00000 < p->reserved[i].end)
                        return;
        fail_msg("the example reserves the MSI doorbell at 0xfee00000");
}

static void check_broken(const char *dir, const char *name) {
        _cleanup_(xfreep) char *path = NULL, *expect_path = NULL;
        struct diag_list diags = DIAG_LIST_INIT;
        const char *loader_path, *message;
        struct platform *p = NULL;
        json_object *expect, *v;
        bool found = false;
        int r;

        assert_true(asprintf(&path, "%s/%s", dir, name) > 0);
        assert_true(asprintf(&expect_path, "%.*s.expect", (int) (strlen(path) - strlen(".json")), path) > 0);
        expect = json_object_from_file(expect_path);
        if (!expect)
                fail_msg("%s: cannot read", expect_path);
        assert_true(json_object_object_get_ex(expect, "loader_path", &v));
        loader_path = json_object_get_string(v);
        assert_true(json_object_object_get_ex(expect, "message", &v));
        message = json_object_get_string(v);
        assert_true(json_object_object_get_ex(expect, "schema", &v));
        assert_string_equal(json_object_get_string(v), "platform");

        r = platform_load_file(path, &p, &diags);
        for (size_t i = 0; i < diags.n; i++)
                found = found || (diags.items[i].severity == DIAG_ERROR && strcmp(diags.items[i].path, loader_path) == 0 &&
                                  strstr(diags.items[i].message, message));
        if (r != -EINVAL || !found) {
                diag_list_print(&diags, path, stderr);
                fail_msg("%s: expected an error at '%s' containing '%s'", path, loader_path, message);
        }
        assert_null(p);
        diag_list_clear(&diags);
        json_object_put(expect);
}

static void test_broken_examples(void **state) {
        _cleanup_(xfreep) char *dir = NULL;
        struct dirent *de;
        size_t n = 0;
        DIR *d;

        (void) state;
        assert_true(asprintf(&dir, "%s/broken", examples_dir()) > 0);
        d = opendir(dir);
        assert_non_null(d);
        while ((de = readdir(d))) {
                size_t len = strlen(de->d_name);

                if (strncmp(de->d_name, "platform-", 9) != 0 || len < 5 || strcmp(de->d_name + len - 5, ".json") != 0)
                        continue;
                check_broken(dir, de->d_name);
                n++;
        }
        closedir(d);
        /* The brief's twelve cases at least. */
        assert_true(n >= 12);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_base_document),
                cmocka_unit_test(test_strict_json),
                cmocka_unit_test(test_optional_arrays),
                cmocka_unit_test(test_document_type),
                cmocka_unit_test(test_unknown_keys),
                cmocka_unit_test(test_wrong_types),
                cmocka_unit_test(test_missing_keys),
                cmocka_unit_test(test_numbers),
                cmocka_unit_test(test_integer_literals),
                cmocka_unit_test(test_size_zero),
                cmocka_unit_test(test_wrap),
                cmocka_unit_test(test_banks),
                cmocka_unit_test(test_granule),
                cmocka_unit_test(test_pool_alignment),
                cmocka_unit_test(test_pool_in_bank),
                cmocka_unit_test(test_pool_numa),
                cmocka_unit_test(test_pool_overlaps),
                cmocka_unit_test(test_pool_reserved),
                cmocka_unit_test(test_backing),
                cmocka_unit_test(test_hugetlbfs_granule),
                cmocka_unit_test(test_dma_mask_bits),
                cmocka_unit_test(test_windows),
                cmocka_unit_test(test_window_mask),
                cmocka_unit_test(test_reserved_windows),
                cmocka_unit_test(test_alignment),
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_duplicate_names),
                cmocka_unit_test(test_all_errors_in_one_pass),
                cmocka_unit_test(test_reachability),
                cmocka_unit_test(test_sorting),
                cmocka_unit_test(test_find),
                cmocka_unit_test(test_backing_kind_strings),
                cmocka_unit_test(test_syntax_errors),
                cmocka_unit_test(test_file_content),
                cmocka_unit_test(test_file_limits),
                cmocka_unit_test(test_entry_limits),
                cmocka_unit_test(test_load_json),
                cmocka_unit_test(test_example_file),
                cmocka_unit_test(test_broken_examples),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
