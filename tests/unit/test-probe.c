/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <ftw.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "platform/platform.h"
#include "client/probe.h"
#include "util/diag.h"
#include "util/macro.h"

/*
 * A fake host under a temp dir. make_host() builds the base one, which cases vary:
 * - node0: memory blocks 0, 1, 2 (contiguous) and 4; node1: blocks 8 and 9 (9 offline);
 *   128MiB blocks, so banks [0, 384MiB) and [512MiB, 640MiB) on node 0, [1GiB, 1.25GiB)
 *   on node 1;
 * - /proc/iomem: System RAM with holes at [0, 4KiB) and [0x9fc00, 1MiB) in the first bank;
 * - huge pages of 2MiB (4, 3 free) and 1GiB (none);
 * - PCI: 00:00.0 a host bridge; 00:02.0 a 64-bit NIC with a driver in IOMMU group 1
 *   (direct, msi and reserved regions); 00:03.0 without dma_mask_bits; 00:04.0 a 32-bit
 *   device without a driver in group 2, whose msi and reserved regions overlap.
 */
struct host {
        char dir[PATH_MAX];
};

static void mkdir_p(const char *path) {
        char buf[PATH_MAX];

        assert_true(strlen(path) < sizeof(buf));
        strcpy(buf, path);
        for (char *s = buf + 1; *s; s++)
                if (*s == '/') {
                        *s = '\0';
                        assert_true(mkdir(buf, 0755) == 0 || errno == EEXIST);
                        *s = '/';
                }
        assert_true(mkdir(buf, 0755) == 0 || errno == EEXIST);
}

static char *host_path(const struct host *h, const char *rel) {
        char *p;

        assert_true(asprintf(&p, "%s/%s", h->dir, rel) > 0);
        return p;
}

static void parent_dir(const char *path) {
        _cleanup_(xfreep) char *d = strdup(path);

        assert_non_null(d);
        *strrchr(d, '/') = '\0';
        mkdir_p(d);
}

_printf_(3, 4) static void put(const struct host *h, const char *rel, const char *fmt, ...) {
        _cleanup_(xfreep) char *p = host_path(h, rel);
        FILE *f;
        va_list ap;

        parent_dir(p);
        f = fopen(p, "we");
        assert_non_null(f);
        va_start(ap, fmt);
        vfprintf(f, fmt, ap);
        va_end(ap);
        assert_int_equal(fclose(f), 0);
}

static void link_to(const struct host *h, const char *rel, const char *target) {
        _cleanup_(xfreep) char *p = host_path(h, rel);

        parent_dir(p);
        assert_int_equal(symlink(target, p), 0);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) flag;
        (void) ftw;
        return remove(path);
}

static void rm(const struct host *h, const char *rel) {
        _cleanup_(xfreep) char *p = host_path(h, rel);

        assert_int_equal(nftw(p, rm_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
}

/* Unreadable to root as well: replace the file by a directory. */
static void make_dir(const struct host *h, const char *rel) {
        _cleanup_(xfreep) char *p = host_path(h, rel);

        (void) nftw(p, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        mkdir_p(p);
}

/* Or by a dangling symlink. */
static void make_dangling(const struct host *h, const char *rel) {
        _cleanup_(xfreep) char *p = host_path(h, rel);

        (void) nftw(p, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        link_to(h, rel, "/nonexistent/brokerd-probe-test");
}

static void block(const struct host *h, unsigned id, unsigned index, unsigned node, const char *state) {
        char rel[256], target[64];

        snprintf(rel, sizeof(rel), "sys/devices/system/memory/memory%u/phys_index", id);
        put(h, rel, "%08x\n", index);
        snprintf(rel, sizeof(rel), "sys/devices/system/memory/memory%u/state", id);
        put(h, rel, "%s\n", state);
        snprintf(rel, sizeof(rel), "sys/devices/system/node/node%u/memory%u", node, id);
        snprintf(target, sizeof(target), "../../memory/memory%u", id);
        link_to(h, rel, target);
}

static void pci(const struct host *h, const char *addr, const char *class, const char *driver, const char *mask) {
        char rel[256], target[128];

        snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/class", addr);
        put(h, rel, "%s\n", class);
        if (driver) {
                snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/driver", addr);
                snprintf(target, sizeof(target), "../../../../bus/pci/drivers/%s", driver);
                link_to(h, rel, target);
        }
        if (mask) {
                snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/dma_mask_bits", addr);
                put(h, rel, "%s\n", mask);
                snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/consistent_dma_mask_bits", addr);
                put(h, rel, "%s\n", mask);
        }
}

static void group(const struct host *h, unsigned id, const char *device, const char *regions) {
        char rel[256];

        snprintf(rel, sizeof(rel), "sys/kernel/iommu_groups/%u/reserved_regions", id);
        put(h, rel, "%s", regions);
        snprintf(rel, sizeof(rel), "sys/kernel/iommu_groups/%u/devices/%s", id, device);
        link_to(h, rel, "../../../../devices/pci0000:00/dev");
}

#define IOMEM                                 \
        "00000000-00000fff : Reserved\n"      \
        "00001000-0009fbff : System RAM\n"    \
        "0009fc00-000fffff : Reserved\n"      \
        "  000f0000-000fffff : System ROM\n"  \
        "00100000-17ffffff : System RAM\n"    \
        "  01000000-01ffffff : Kernel code\n" \
        "18000000-1fffffff : PCI Bus 0000:00\n" \
        "20000000-27ffffff : System RAM\n"    \
        "40000000-4fffffff : System RAM\n"

#define GROUP1                                           \
        "0x00000000000a0000 0x00000000000bffff direct\n" \
        "0x00000000fee00000 0x00000000feefffff msi\n"    \
        "0x000000fd00000000 0x000000ffffffffff reserved\n"
#define GROUP2                                             \
        "0x00000000fee00000 0x00000000feefffff msi\n"      \
        "0x00000000fee80000 0x00000000fef00fff reserved\n" \
        "0x00000000fef00000 0x00000000fef0ffff reserved\n"

static int host_setup(void **state) {
        struct host *h = calloc(1, sizeof(*h));

        assert_non_null(h);
        snprintf(h->dir, sizeof(h->dir), "%s/brokerd-probe-XXXXXX", getenv("TMPDIR") ?: "/tmp");
        assert_non_null(mkdtemp(h->dir));

        put(h, "sys/devices/system/memory/block_size_bytes", "8000000\n");
        block(h, 0, 0, 0, "online");
        block(h, 1, 1, 0, "online");
        block(h, 2, 2, 0, "online");
        block(h, 4, 4, 0, "online");
        block(h, 8, 8, 1, "online");
        block(h, 9, 9, 1, "offline");
        put(h, "sys/devices/system/node/node0/meminfo", "Node 0 MemTotal:         393216 kB\nNode 0 MemFree: 1 kB\n");
        put(h, "sys/devices/system/node/node1/meminfo", "Node 1 MemTotal:         262144 kB\n");
        put(h, "sys/devices/system/node/online", "0-1\n");
        put(h, "proc/iomem", IOMEM);
        put(h, "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "4\n");
        put(h, "sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "3\n");
        put(h, "sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages", "0\n");
        put(h, "sys/kernel/mm/hugepages/hugepages-1048576kB/free_hugepages", "0\n");
        pci(h, "0000:00:00.0", "0x060000", NULL, "32");
        pci(h, "0000:00:02.0", "0x020000", "e1000e", "64");
        pci(h, "0000:00:03.0", "0x010802", "nvme", NULL);
        pci(h, "0000:00:04.0", "0x030000", NULL, "32");
        group(h, 0, "0000:00:00.0", "");
        group(h, 1, "0000:00:02.0", GROUP1);
        group(h, 2, "0000:00:04.0", GROUP2);

        *state = h;
        return 0;
}

static int host_teardown(void **state) {
        struct host *h = *state;

        assert_int_equal(nftw(h->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
        free(h);
        return 0;
}

struct result {
        int r;
        json_object *root;
        char *report;
};

static void result_clear(struct result *res) {
        json_object_put(res->root);
        free(res->report);
}

static struct result run_root(const char *root) {
        struct result res = {};
        size_t len = 0;
        FILE *f = open_memstream(&res.report, &len);

        assert_non_null(f);
        res.r = probe_platform(root, &res.root, f);
        assert_int_equal(fclose(f), 0);
        return res;
}

static struct result run(const struct host *h) {
        return run_root(h->dir);
}

/* The value at a path like "memory[1].base", or NULL. */
static json_object *at(json_object *o, const char *path) {
        char key[64];

        while (o && *path) {
                size_t n = strcspn(path, ".[");

                if (n > 0) {
                        assert_true(n < sizeof(key));
                        memcpy(key, path, n);
                        key[n] = '\0';
                        if (!json_object_object_get_ex(o, key, &o))
                                return NULL;
                        path += n;
                } else if (*path == '[') {
                        char *end;
                        unsigned long i = strtoul(path + 1, &end, 10);

                        if (!json_object_is_type(o, json_type_array) || i >= json_object_array_length(o))
                                return NULL;
                        o = json_object_array_get_idx(o, i);
                        path = end + 1;
                } else
                        path++;
        }
        return o;
}

static const char *str_at(json_object *root, const char *path) {
        json_object *v = at(root, path);

        if (!v)
                fail_msg("no value at %s", path);
        return json_object_get_string(v);
}

static size_t len_at(json_object *root, const char *path) {
        json_object *v = at(root, path);

        if (!v)
                return 0;
        assert_true(json_object_is_type(v, json_type_array));
        return json_object_array_length(v);
}

static void assert_range(json_object *root, const char *path, const char *name, const char *base, const char *size) {
        char p[128];

        snprintf(p, sizeof(p), "%s.name", path);
        if (name)
                assert_string_equal(str_at(root, p), name);
        else
                assert_null(at(root, p));
        snprintf(p, sizeof(p), "%s.base", path);
        assert_string_equal(str_at(root, p), base);
        snprintf(p, sizeof(p), "%s.size", path);
        assert_string_equal(str_at(root, p), size);
}

static void assert_reported(const struct result *res, const char *text) {
        if (!strstr(res->report, text))
                fail_msg("report lacks \"%s\":\n%s", text, res->report);
}

static void assert_not_reported(const struct result *res, const char *text) {
        if (strstr(res->report, text))
                fail_msg("report has \"%s\":\n%s", text, res->report);
}

/* What the probe produced loads without errors, as the probe promises. */
static void assert_loads(const struct result *res, size_t warnings) {
        _cleanup_(platform_freep) struct platform *p = NULL;
        struct diag_list diags = DIAG_LIST_INIT;
        const char *text = json_object_to_json_string_ext(res->root, JSON_C_TO_STRING_PRETTY);
        int r;

        assert_non_null(text);
        r = platform_load_string(text, &p, &diags);
        if (r != 0 || diag_count(&diags, DIAG_ERROR) > 0)
                diag_list_print(&diags, "probe", stderr);
        assert_int_equal(r, 0);
        assert_int_equal(diag_count(&diags, DIAG_ERROR), 0);
        assert_int_equal(diag_count(&diags, DIAG_WARNING), warnings);
        diag_list_clear(&diags);
}

static void test_host(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result res = run(h);

        assert_int_equal(res.r, 0);
        assert_non_null(res.root);

        /* Contiguous blocks merged per node; the gap at block 3 splits node 0. */
        assert_int_equal(len_at(res.root, "memory"), 3);
        assert_range(res.root, "memory[0]", "bank0", "0x0", "384MiB");
        assert_int_equal(json_object_get_int(at(res.root, "memory[0].numa_node")), 0);
        assert_range(res.root, "memory[1]", "bank1", "0x20000000", "128MiB");
        assert_int_equal(json_object_get_int(at(res.root, "memory[1].numa_node")), 0);
        assert_range(res.root, "memory[2]", "bank2", "0x40000000", "256MiB");
        assert_int_equal(json_object_get_int(at(res.root, "memory[2].numa_node")), 1);

        /* Non-RAM inside the banks, and the direct region of group 1, sorted by base. */
        assert_int_equal(len_at(res.root, "reserved"), 3);
        assert_range(res.root, "reserved[0]", "not-ram-0x0", "0x0", "4KiB");
        assert_range(res.root, "reserved[1]", "not-ram-0x9fc00", "0x9fc00", "385KiB");
        assert_range(res.root, "reserved[2]", "iommu-direct-0xa0000", "0xa0000", "128KiB");

        assert_non_null(at(res.root, "pools"));
        assert_int_equal(len_at(res.root, "pools"), 0);

        /* No bridge, no device without a mask. */
        assert_int_equal(len_at(res.root, "devices"), 2);
        assert_string_equal(str_at(res.root, "devices[0].name"), "0000:00:02.0");
        assert_string_equal(str_at(res.root, "devices[0].owner"), "host");
        assert_int_equal(json_object_get_int(at(res.root, "devices[0].dma_mask_bits")), 64);
        assert_int_equal(len_at(res.root, "devices[0].reserved_windows"), 3);
        assert_range(res.root, "devices[0].reserved_windows[0]", "direct-0xa0000", "0xa0000", "128KiB");
        assert_range(res.root, "devices[0].reserved_windows[1]", "msi-0xfee00000", "0xfee00000", "1MiB");
        assert_range(res.root, "devices[0].reserved_windows[2]", "reserved-0xfd00000000", "0xfd00000000", "12GiB");
        assert_null(at(res.root, "devices[0].dma_windows"));
        assert_null(at(res.root, "devices[0].alignment"));

        /* Overlapping regions of two types become one window. */
        assert_string_equal(str_at(res.root, "devices[1].name"), "0000:00:04.0");
        assert_int_equal(json_object_get_int(at(res.root, "devices[1].dma_mask_bits")), 32);
        assert_int_equal(len_at(res.root, "devices[1].reserved_windows"), 1);
        assert_range(res.root, "devices[1].reserved_windows[0]", "msi+reserved-0xfee00000", "0xfee00000", "1088KiB");

        assert_loads(&res, 2);

        assert_reported(&res, "0000:00:03.0/dma_mask_bits: not exposed by this kernel: device 0000:00:03.0 left out");
        assert_reported(&res, "probe: device 0000:00:04.0: no driver bound: its 32-bit DMA mask is the kernel's "
                              "default or an earlier driver's, not necessarily what the device can reach: check it\n");
        assert_not_reported(&res, "device 0000:00:02.0:");
        assert_not_reported(&res, "0000:00:00.0");
        assert_reported(&res, "probe: huge page sizes: 2MiB (4 pages, 3 free), 1GiB (0 pages, 0 free)");
        assert_reported(&res, "probe: node0: MemTotal 393216 kB; 512MiB in 4 memory blocks\n");
        assert_reported(&res, "probe: node1: MemTotal 262144 kB; 256MiB in 2 memory blocks\n");
        assert_reported(&res, "probe: 1 memory block is offline");
        assert_reported(&res, "probe: 2 devices can reach no pool until pools are added\n");
        assert_reported(&res, "probe: 3 memory banks, 3 reserved ranges, 2 devices\n");
        assert_reported(&res, "probe: pools: none");
        assert_reported(&res, "set each to the hardware domain");
        assert_not_reported(&res, "error");
}

static void test_arguments(void **state) {
        struct host *h = *state;
        json_object *root = (json_object *) state; /* a sentinel: must stay untouched */
        _cleanup_(xfreep) char *slash = NULL;
        _cleanup_(result_clear) struct result a = {}, b = {};

        assert_int_equal(probe_platform(NULL, &root, NULL), -EINVAL);
        assert_int_equal(probe_platform("", &root, NULL), -EINVAL);
        assert_ptr_equal(root, (json_object *) state);
        assert_int_equal(probe_platform(h->dir, NULL, NULL), -EINVAL);

        /* No report stream is fine, and a trailing slash changes nothing. */
        root = NULL;
        assert_int_equal(probe_platform(h->dir, &root, NULL), 0);
        assert_non_null(root);
        assert_true(asprintf(&slash, "%s//", h->dir) > 0);
        a = run_root(slash);
        assert_int_equal(a.r, 0);
        assert_true(json_object_equal(a.root, root));
        json_object_put(root);

        /* A root with nothing in it has no RAM. */
        b = run_root("/nonexistent/brokerd-probe-test");
        assert_int_equal(b.r, -ENODATA);
        assert_null(b.root);
        assert_reported(&b, "probe: /nonexistent/brokerd-probe-test/sys/devices/system/memory/block_size_bytes: "
                            "No such file or directory\n");
        assert_reported(&b, "probe: /nonexistent/brokerd-probe-test/proc/iomem: No such file or directory\n");
        assert_reported(&b, "probe: no RAM could be read: no description\n");
}

/* Unreadable memory blocks: iomem's System RAM instead, on the host's single node. */
static void test_blocks_unreadable_one_node(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result res = {};

        rm(h, "sys/devices/system/node/node1");
        make_dir(h, "sys/devices/system/memory/block_size_bytes");
        res = run(h);
        assert_int_equal(res.r, 0);
        assert_reported(&res, "/sys/devices/system/memory/block_size_bytes: Is a directory\n");
        assert_reported(&res,
                        "probe: memory from the System RAM of /proc/iomem instead: 786043KiB in 4 ranges on node 0\n");
        assert_int_equal(len_at(res.root, "memory"), 4);
        assert_range(res.root, "memory[0]", "bank0", "0x1000", "635KiB");
        assert_range(res.root, "memory[1]", "bank1", "0x100000", "383MiB");
        assert_range(res.root, "memory[2]", "bank2", "0x20000000", "128MiB");
        assert_range(res.root, "memory[3]", "bank3", "0x40000000", "256MiB");
        assert_int_equal(json_object_get_int(at(res.root, "memory[3].numa_node")), 0);
        /* Banks are System RAM exactly: nothing of them is not RAM. */
        assert_int_equal(len_at(res.root, "reserved"), 1);
        assert_range(res.root, "reserved[0]", "iommu-direct-0xa0000", "0xa0000", "128KiB");
        assert_loads(&res, 2);
}

/* Without blocks, two nodes and iomem cannot say which RAM is whose: no description. */
static void test_blocks_unreadable_two_nodes(void **state) {
        struct host *h = *state;
        json_object *root = (json_object *) state;
        _cleanup_(xfreep) char *report = NULL;
        size_t len = 0;
        FILE *f;

        make_dangling(h, "sys/devices/system/memory/block_size_bytes");
        f = open_memstream(&report, &len);
        assert_non_null(f);
        assert_int_equal(probe_platform(h->dir, &root, f), -ENODATA);
        fclose(f);
        assert_ptr_equal(root, (json_object *) state);
        assert_non_null(strstr(report, "block_size_bytes: No such file or directory\n"));
        assert_non_null(strstr(report, "this host has several nodes: its System RAM is left out\n"));
        assert_non_null(strstr(report, "probe: no RAM could be read: no description\n"));
}

static void test_block_size_invalid(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result a = {}, b = {};

        rm(h, "sys/devices/system/node/node1");
        put(h, "sys/devices/system/memory/block_size_bytes", "3000\n");
        a = run(h);
        assert_int_equal(a.r, 0);
        assert_reported(&a, "block_size_bytes: block size 0x3000 is not a power of two of at least 4KiB\n");
        assert_int_equal(len_at(a.root, "memory"), 4);

        put(h, "sys/devices/system/memory/block_size_bytes", "0x8000000 junk\n");
        b = run(h);
        assert_int_equal(b.r, 0);
        assert_reported(&b, "block_size_bytes: not a hexadecimal number\n");
        assert_reported(&b, "from the System RAM of /proc/iomem instead");
}

/* A kernel without NUMA has no node directory: every block is node 0. */
static void test_no_numa(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result res = {};

        rm(h, "sys/devices/system/node");
        res = run(h);
        assert_int_equal(res.r, 0);
        assert_reported(&res, "/sys/devices/system/node: absent: a kernel without NUMA, all memory is on node 0\n");
        assert_int_equal(len_at(res.root, "memory"), 3);
        assert_range(res.root, "memory[0]", "bank0", "0x0", "384MiB");
        assert_range(res.root, "memory[1]", "bank1", "0x20000000", "128MiB");
        assert_range(res.root, "memory[2]", "bank2", "0x40000000", "256MiB");
        assert_int_equal(json_object_get_int(at(res.root, "memory[2].numa_node")), 0);
        assert_not_reported(&res, "node0: MemTotal");
        assert_loads(&res, 2);
}

static void test_no_numa_merges_nodes(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result res = {};

        /* Blocks 8 and 9 renumbered right after block 4: one bank once nodes do not split them. */
        put(h, "sys/devices/system/memory/memory8/phys_index", "00000005\n");
        put(h, "sys/devices/system/memory/memory9/phys_index", "00000006\n");
        res = run(h);
        assert_int_equal(res.r, 0);
        assert_int_equal(len_at(res.root, "memory"), 3);
        assert_range(res.root, "memory[1]", "bank1", "0x20000000", "128MiB");
        assert_range(res.root, "memory[2]", "bank2", "0x28000000", "256MiB");

        rm(h, "sys/devices/system/node");
        result_clear(&res);
        res = run(h);
        assert_int_equal(res.r, 0);
        assert_int_equal(len_at(res.root, "memory"), 2);
        assert_range(res.root, "memory[1]", "bank1", "0x20000000", "384MiB");
}

static void test_block_problems(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result res = {};

        /* Block 1 unreadable: bank0 splits around it. Block 4 in no node, block 8 in two. */
        make_dir(h, "sys/devices/system/memory/memory1/phys_index");
        rm(h, "sys/devices/system/node/node0/memory4");
        link_to(h, "sys/devices/system/node/node0/memory8", "../../memory/memory8");
        res = run(h);
        assert_int_equal(res.r, 0);
        assert_reported(&res, "/sys/devices/system/memory/memory1/phys_index: Is a directory\n");
        assert_reported(&res, "/sys/devices/system/memory/memory1: left out\n");
        assert_reported(&res, "/sys/devices/system/memory/memory4: listed under no NUMA node: left out\n");
        assert_reported(&res, "/sys/devices/system/memory/memory8: listed under more than one NUMA node: left out\n");
        assert_int_equal(len_at(res.root, "memory"), 3);
        assert_range(res.root, "memory[0]", "bank0", "0x0", "128MiB");
        assert_range(res.root, "memory[1]", "bank1", "0x10000000", "128MiB");
        assert_range(res.root, "memory[2]", "bank2", "0x48000000", "128MiB");
        assert_int_equal(json_object_get_int(at(res.root, "memory[2].numa_node")), 1);
        assert_loads(&res, 2);
}

static void test_block_beyond_2_64(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result res = {};

        put(h, "sys/devices/system/memory/memory9/phys_index", "1fffffffff\n");
        res = run(h);
        assert_int_equal(res.r, 0);
        assert_reported(&res, "memory9/phys_index: block 0x1fffffffff of 0x8000000 bytes lies beyond 2^64: left out\n");
        assert_range(res.root, "memory[2]", "bank2", "0x40000000", "128MiB");
}

/* sysfs contradicting itself is caught by the probe's own check, not written. */
static void test_self_check(void **state) {
        struct host *h = *state;
        json_object *root = (json_object *) state;
        _cleanup_(xfreep) char *report = NULL;
        size_t len = 0;
        FILE *f;

        block(h, 5, 4, 0, "online");
        f = open_memstream(&report, &len);
        assert_non_null(f);
        assert_int_equal(probe_platform(h->dir, &root, f), -EINVAL);
        fclose(f);
        assert_ptr_equal(root, (json_object *) state);
        assert_non_null(
                strstr(report, "probe: error: memory[2]: overlaps memory[1] \"bank1\" [0x20000000, 0x28000000)\n"));
        assert_non_null(strstr(report, "probe: the description does not load: not written\n"));
}

static void test_iomem_hidden(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result res = {};

        put(h, "proc/iomem", "00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n"
                             "  00000000-00000000 : Kernel code\n");
        res = run(h);
        assert_int_equal(res.r, 0);
        assert_reported(&res, "/proc/iomem: addresses hidden");
        assert_reported(&res, "none are listed in reserved; add them before defining pools\n");
        assert_int_equal(len_at(res.root, "memory"), 3);
        assert_int_equal(len_at(res.root, "reserved"), 1);
        assert_range(res.root, "reserved[0]", "iommu-direct-0xa0000", "0xa0000", "128KiB");
        assert_loads(&res, 2);
}

static void test_iomem_unreadable(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result res = {};

        make_dangling(h, "proc/iomem");
        res = run(h);
        assert_int_equal(res.r, 0);
        assert_reported(&res, "/proc/iomem: No such file or directory\n");
        assert_reported(&res, "none are listed in reserved");
        assert_int_equal(len_at(res.root, "reserved"), 1);

        /* Malformed lines are counted and skipped; the rest still counts. */
        rm(h, "proc/iomem");
        put(h, "proc/iomem", "garbage\n" IOMEM "00100000-000fffff : System RAM\n");
        result_clear(&res);
        res = run(h);
        assert_int_equal(res.r, 0);
        assert_reported(&res, "/proc/iomem: 2 malformed lines ignored\n");
        assert_int_equal(len_at(res.root, "reserved"), 3);
}

/* The reserved regions of a group unreadable or malformed: its devices cannot be described safely. */
static void test_reserved_regions_unreadable(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result a = {}, b = {};

        make_dir(h, "sys/kernel/iommu_groups/1/reserved_regions");
        a = run(h);
        assert_int_equal(a.r, 0);
        assert_reported(&a, "/sys/kernel/iommu_groups/1/reserved_regions: Is a directory: "
                            "the devices of group 1 are left out\n");
        assert_reported(&a,
                        "probe: device 0000:00:02.0 left out: the reserved regions of its IOMMU group 1 are unknown\n");
        assert_int_equal(len_at(a.root, "devices"), 1);
        assert_string_equal(str_at(a.root, "devices[0].name"), "0000:00:04.0");
        /* Nor is group 1's direct region known. */
        assert_int_equal(len_at(a.root, "reserved"), 2);
        assert_loads(&a, 1);

        make_dangling(h, "sys/kernel/iommu_groups/1/reserved_regions");
        put(h, "sys/kernel/iommu_groups/2/reserved_regions", "0x00000000fee00000 0x00000000fedfffff msi\n");
        b = run(h);
        assert_int_equal(b.r, 0);
        assert_reported(&b, "reserved_regions: No such file or directory: the devices of group 1 are left out\n");
        assert_reported(&b, "/sys/kernel/iommu_groups/2/reserved_regions: malformed line: "
                            "the devices of group 2 are left out\n");
        assert_int_equal(len_at(b.root, "devices"), 0);
        assert_loads(&b, 0);
}

static void test_reserved_regions_malformed(void **state) {
        static const char *const bad[] = {
                "0xfee00000 msi\n",
                "0xfee00000 0xfeefffff msi extra\n",
                "0xfee00000 0xfeefffff MSI\n",
                "0xfee0000g 0xfeefffff msi\n",
                "0xfee00000 0x1fffffffffffffffff msi\n",
                "0xfee00000 0xfeefffff an-overly-long-region-type-name-x\n",
        };
        struct host *h = *state;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(result_clear) struct result res = {};

                put(h, "sys/kernel/iommu_groups/2/reserved_regions", "%s", bad[i]);
                res = run(h);
                assert_int_equal(res.r, 0);
                assert_reported(&res, "iommu_groups/2/reserved_regions: malformed line");
                assert_int_equal(len_at(res.root, "devices"), 1);
                assert_string_equal(str_at(res.root, "devices[0].name"), "0000:00:02.0");
        }
        /* Blank lines and an unknown but well-formed type are fine. */
        {
                _cleanup_(result_clear) struct result res = {};

                put(h, "sys/kernel/iommu_groups/2/reserved_regions", "\n0xfee00000 0xfeefffff msi-sw2\n\n");
                res = run(h);
                assert_int_equal(res.r, 0);
                assert_not_reported(&res, "malformed");
                assert_range(res.root, "devices[1].reserved_windows[0]", "msi-sw2-0xfee00000", "0xfee00000", "1MiB");
        }
}

/* Holes beyond what a mask reaches are dropped, holes across its end clipped. */
static void test_windows_clipped(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result res = {};

        put(h, "sys/kernel/iommu_groups/1/reserved_regions",
            "0xfffffffffffff000 0xffffffffffffffff reserved\n0x0000000000000000 0x0000000000000fff reserved\n");
        put(h, "sys/kernel/iommu_groups/2/reserved_regions",
            "0x00000000fff00000 0x00000001000fffff reserved\n0x0000000100000000 0x00000001ffffffff msi\n");
        res = run(h);
        assert_int_equal(res.r, 0);
        assert_int_equal(len_at(res.root, "devices[0].reserved_windows"), 2);
        assert_range(res.root, "devices[0].reserved_windows[0]", "reserved-0x0", "0x0", "4KiB");
        /* With a 64-bit mask the last byte is not representable: the window ends below it. */
        assert_range(res.root, "devices[0].reserved_windows[1]", "reserved-0xfffffffffffff000", "0xfffffffffffff000",
                     "0xfff");
        assert_int_equal(len_at(res.root, "devices[1].reserved_windows"), 1);
        assert_range(res.root, "devices[1].reserved_windows[0]", "reserved-0xfff00000", "0xfff00000", "1MiB");
        assert_loads(&res, 2);
}

/* Direct regions of several groups are one platform reserved range. */
static void test_direct_shared(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result res = {};

        put(h, "sys/kernel/iommu_groups/2/reserved_regions",
            "0x00000000000a0000 0x00000000000cffff direct-relaxable\n");
        res = run(h);
        assert_int_equal(res.r, 0);
        assert_int_equal(len_at(res.root, "reserved"), 3);
        assert_range(res.root, "reserved[2]", "iommu-direct-0xa0000", "0xa0000", "192KiB");
        assert_range(res.root, "devices[1].reserved_windows[0]", "direct-relaxable-0xa0000", "0xa0000", "192KiB");
        assert_loads(&res, 2);
}

static void test_no_iommu(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result a = {}, b = {}, c = {};

        rm(h, "sys/kernel/iommu_groups/2/devices");
        put(h, "sys/kernel/iommu_groups/2/devices", "not a directory\n");
        a = run(h);
        assert_int_equal(a.r, 0);
        assert_reported(&a, "/sys/kernel/iommu_groups/2/devices: Not a directory\n");
        assert_reported(&a,
                        "probe: device 0000:00:04.0 left out: it may be in an IOMMU group whose devices are unknown\n");
        assert_int_equal(len_at(a.root, "devices"), 1);

        make_dangling(h, "sys/kernel/iommu_groups");
        b = run(h);
        assert_int_equal(b.r, 0);
        assert_reported(&b, "/sys/kernel/iommu_groups: absent: no IOMMU translates DMA, "
                            "so no device has reserved windows\n");
        assert_int_equal(len_at(b.root, "devices"), 2);
        assert_null(at(b.root, "devices[0].reserved_windows"));
        assert_int_equal(len_at(b.root, "reserved"), 2);
        assert_loads(&b, 2);

        make_dir(h, "sys/kernel/iommu_groups");
        c = run(h);
        assert_int_equal(c.r, 0);
        assert_reported(&c, "/sys/kernel/iommu_groups: no groups: no IOMMU translates DMA");
        assert_int_equal(len_at(c.root, "devices"), 2);
}

static void test_dma_masks(void **state) {
        static const struct {
                const char *value, *report;
        } bad[] = {
                { "65", "/dma_mask_bits: 65 bits, outside 12..64: device 0000:00:02.0 left out\n" },
                { "0", "/dma_mask_bits: 0 bits, outside 12..64: device 0000:00:02.0 left out\n" },
                { "abc",
                  "/dma_mask_bits: not a decimal number\n"
                  "probe: device 0000:00:02.0 left out: its DMA mask is unknown\n" },
                { "", "/dma_mask_bits: not a decimal number\n" },
        };
        struct host *h = *state;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(result_clear) struct result res = {};

                put(h, "sys/bus/pci/devices/0000:00:02.0/dma_mask_bits", "%s\n", bad[i].value);
                res = run(h);
                assert_int_equal(res.r, 0);
                assert_reported(&res, bad[i].report);
                assert_int_equal(len_at(res.root, "devices"), 1);
                assert_string_equal(str_at(res.root, "devices[0].name"), "0000:00:04.0");
        }
        {
                _cleanup_(result_clear) struct result res = {};

                make_dir(h, "sys/bus/pci/devices/0000:00:02.0/dma_mask_bits");
                res = run(h);
                assert_reported(&res, "0000:00:02.0/dma_mask_bits: Is a directory\n");
                assert_int_equal(len_at(res.root, "devices"), 1);
        }
        {
                _cleanup_(result_clear) struct result res = {};

                /* The smallest valid mask, a coherent mask below it, and a stub driver. */
                rm(h, "sys/bus/pci/devices/0000:00:02.0/dma_mask_bits");
                put(h, "sys/bus/pci/devices/0000:00:02.0/dma_mask_bits", "12\n");
                put(h, "sys/bus/pci/devices/0000:00:04.0/consistent_dma_mask_bits", "31\n");
                link_to(h, "sys/bus/pci/devices/0000:00:04.0/driver", "../../../../bus/pci/drivers/vfio-pci");
                res = run(h);
                assert_int_equal(res.r, 0);
                assert_int_equal(json_object_get_int(at(res.root, "devices[0].dma_mask_bits")), 12);
                /* Every hole of group 1 lies above 4KiB: none left. */
                assert_null(at(res.root, "devices[0].reserved_windows"));
                assert_reported(&res, "probe: device 0000:00:04.0: bound to vfio-pci: its 32-bit DMA mask is the "
                                      "kernel's default or an earlier driver's, not necessarily what the device can "
                                      "reach: check it\n");
                assert_reported(&res,
                                "probe: device 0000:00:04.0: coherent DMA mask 31 bits, below the 32-bit mask used");
                assert_loads(&res, 2);
        }
}

static void test_devices_other(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result a = {}, b = {};

        /* Without a readable class a device stays; a name the format refuses does not. */
        make_dir(h, "sys/bus/pci/devices/0000:00:00.0/class");
        pci(h, "-bad", "0x020000", "e1000e", "64");
        a = run(h);
        assert_int_equal(a.r, 0);
        assert_reported(&a, "0000:00:00.0/class: Is a directory\n");
        assert_reported(&a, "/sys/bus/pci/devices/-bad: not usable as a device name: left out\n");
        assert_int_equal(len_at(a.root, "devices"), 3);
        assert_string_equal(str_at(a.root, "devices[0].name"), "0000:00:00.0");
        assert_null(at(a.root, "devices[0].reserved_windows"));
        assert_loads(&a, 3);

        rm(h, "sys/bus/pci");
        b = run(h);
        assert_int_equal(b.r, 0);
        assert_reported(&b, "/sys/bus/pci/devices: absent: no devices\n");
        assert_int_equal(len_at(b.root, "devices"), 0);
        assert_not_reported(&b, "owner");
        assert_loads(&b, 0);
}

static void test_hugepages_and_meminfo(void **state) {
        struct host *h = *state;
        _cleanup_(result_clear) struct result a = {}, b = {};

        make_dir(h, "sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");
        make_dangling(h, "sys/devices/system/node/node1/meminfo");
        put(h, "sys/devices/system/node/node0/meminfo", "Node 0 MemFree: 1 kB\n");
        a = run(h);
        assert_int_equal(a.r, 0);
        assert_reported(&a, "hugepages-2048kB/nr_hugepages: Is a directory\n");
        assert_reported(&a, "probe: huge page sizes: 2MiB, 1GiB (0 pages, 0 free)");
        assert_reported(&a, "node1/meminfo: No such file or directory\n");
        assert_reported(&a, "node0/meminfo: no MemTotal line\n");
        assert_reported(&a, "probe: node0: MemTotal unknown; 512MiB in 4 memory blocks\n");

        rm(h, "sys/kernel/mm/hugepages");
        b = run(h);
        assert_reported(&b, "/sys/kernel/mm/hugepages: No such file or directory: huge page sizes unknown\n");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_host, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_arguments, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_blocks_unreadable_one_node, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_blocks_unreadable_two_nodes, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_block_size_invalid, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_no_numa, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_no_numa_merges_nodes, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_block_problems, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_block_beyond_2_64, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_self_check, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_iomem_hidden, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_iomem_unreadable, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_reserved_regions_unreadable, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_reserved_regions_malformed, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_windows_clipped, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_direct_shared, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_no_iommu, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_dma_masks, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_devices_other, host_setup, host_teardown),
                cmocka_unit_test_setup_teardown(test_hugepages_and_meminfo, host_setup, host_teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
