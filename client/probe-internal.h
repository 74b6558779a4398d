/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Between the parts of the host probe (probe.h): its state, and the helpers they share.
 * probe-sysfs.c reads attributes, numbers and directories under the probe's root;
 * probe-memory.c finds NUMA nodes, memory blocks, /proc/iomem and huge pages;
 * probe-devices.c finds IOMMU groups and PCI devices; probe.c builds the description and
 * checks it with the platform loader. Functions return 0 or -errno like everywhere; a
 * problem with what the host shows is noted on the report and is not an error.
 */
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/macro.h"

#define ATTR_MAX (64u * 1024)
/* /proc/iomem of a large machine is some hundred KiB. */
#define IOMEM_MAX (4u * 1024 * 1024)
/* More entries than any real directory here has (memory blocks of a 64 TiB host at 128MiB). */
#define DIR_MAX_ENTRIES (1u << 20)
#define NUMA_NODE_MAX 1023
#define DMA_BITS_MIN 12
#define DMA_BITS_MAX 64
#define TYPE_MAX 32

struct range {
        uint64_t base, end; /* [base, end) */
        uint32_t node;      /* banks only */
        char *name;         /* may be NULL */
};

struct range_list {
        struct range *items;
        size_t n, cap;
};

struct node {
        uint32_t id;
        bool memtotal_ok;
        uint64_t memtotal_kb;
        size_t blocks;
        uint64_t block_bytes;
};

struct block_node {
        uint64_t block;
        uint32_t node;
};

/* One line of an IOMMU group's reserved_regions: [base, last], inclusive as the kernel shows it. */
struct hole {
        uint64_t base, last;
        char type[TYPE_MAX];
};

struct iommu_group {
        char *id;
        bool known; /* reserved_regions was read */
        struct hole *holes;
        size_t n_holes, cap;
};

struct group_member {
        char *device;
        size_t group;
};

struct probe {
        char *root; /* prefixed to every path; "" for "/" */
        FILE *report;

        /* NUMA nodes: nodes_known when the node directory was listed, or is absent (numa = false). */
        bool nodes_known, numa;
        struct node *nodes;
        size_t n_nodes, nodes_cap;
        struct block_node *block_nodes; /* sorted by block once nodes are read */
        size_t n_block_nodes, block_nodes_cap;

        /* /proc/iomem: ram holds its System RAM ranges, sorted and merged, when iomem_ok. */
        bool iomem_ok;
        struct range_list ram;

        struct range_list banks, reserved;

        /* IOMMU groups: groups_known when listed (or absent: no IOMMU). members_complete when
         * every group's device list was read, so a device in none is in none. */
        bool groups_known, members_complete;
        struct iommu_group *groups;
        size_t n_groups, groups_cap;
        struct group_member *members;
        size_t n_members, members_cap;
};

/* The entries of a directory, in natural order. */
struct entries {
        char **names;
        size_t n, cap;
};

/* One "probe: ..." line on the report, if there is one. */
_printf_(2, 3) void probe_note(const struct probe *p, const char *fmt, ...);
/* Makes room for need items in *items (an array of size-byte items with capacity *cap). */
int probe_grow(void *items, size_t *cap, size_t need, size_t size);
void probe_range_list_clear(struct range_list *l);
/* Takes name (may be NULL), also on failure. */
int probe_range_list_add(struct range_list *l, uint64_t base, uint64_t end, uint32_t node, char *name);
/* By base, then end: for qsort(). */
int probe_range_compare(const void *a, const void *b);
/* The root prefixed to a path given as printf format; NULL on allocation failure. */
_printf_(2, 3) char *probe_path(const struct probe *p, const char *fmt, ...);
/* The whole file as a string; -EFBIG beyond max bytes, -EBADMSG if it holds a NUL byte. */
int probe_read_file(const char *path, size_t max, char **ret);
/* A one-value attribute, without its trailing newline. */
int probe_read_attr(const char *path, char **ret);
int probe_parse_hex(const char *s, size_t len, uint64_t *ret);
int probe_parse_dec(const char *s, size_t len, uint64_t *ret);
/* A number attribute; a failure is noted (a missing file only unless quiet_missing). */
int probe_read_number(const struct probe *p, const char *path, bool hex, bool quiet_missing, uint64_t *ret);
/* name is prefix, decimal digits, suffix; the number goes to *ret. */
bool probe_match_number(const char *name, const char *prefix, const char *suffix, uint64_t *ret);
void probe_entries_clear(struct entries *e);
/* With a prefix, the entries named prefix<number>suffix; without, all but dot files. */
int probe_list_dir(const char *path, const char *prefix, const char *suffix, struct entries *ret);

/* json-c builders that free v on failure and return -ENOMEM. */
int probe_json_add(json_object *o, const char *key, json_object *v);
int probe_json_append(json_object *a, json_object *v);
/* {"name", "base", "size"} of [base, end); name may be NULL. */
json_object *probe_range_json(const char *name, uint64_t base, uint64_t end);

/* probe-memory.c, in the order probe_platform() calls them. */
int probe_nodes(struct probe *p);
int probe_blocks(struct probe *p);
int probe_iomem(struct probe *p);
int banks_from_iomem(struct probe *p);
int reserve_non_ram(struct probe *p);
void report_nodes(const struct probe *p, bool from_blocks);
int probe_hugepages(const struct probe *p);

/* probe-devices.c */
int probe_iommu(struct probe *p);
int probe_devices(struct probe *p, json_object *devices);
