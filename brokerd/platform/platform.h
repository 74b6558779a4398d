/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The platform description: the machine as the hypervisor sees it (RAM banks, reserved
 * ranges, the pools brokerd may hand out, and the DMA view of every device).
 * platform_load_*() checks everything and records every problem in diags with its JSON
 * path; it returns 0 (warnings allowed) with *ret set, -EINVAL when any error was found,
 * or another -errno (I/O, ENOMEM). *ret is untouched on failure.
 * All ranges are half-open [base, end) with end = base + size < 2^64.
 * Bus addresses equal physical addresses (identity IOVA); see docs/architecture.md.
 * What a device can reach of the pools is placement/dma-spans.h's business.
 * The loader lives in platform-load.c (document, banks, reserved ranges, pools) and
 * platform-devices.c (devices and their windows), with platform-internal.h between them.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/diag.h"
#include "util/macro.h"

struct json_object;

#define PLATFORM_MIN_GRANULE UINT64_C(4096)
/* Bounds on what a platform file may declare, so a hostile file cannot exhaust memory. */
#define PLATFORM_MAX_ENTRIES 4096 /* per top-level array */
#define PLATFORM_MAX_WINDOWS 256  /* per device, windows and reserved windows each */
#define PLATFORM_MAX_FILE_SIZE (4u * 1024 * 1024)

enum backing_kind {
        BACKING_MEMFD,     /* anonymous memfd per region (durable only in a service manager's fd store) */
        BACKING_SHM,       /* a file per region in a tmpfs directory, default /dev/shm */
        BACKING_HUGETLBFS, /* a file per region in a hugetlbfs mount */
        _BACKING_KIND_MAX,
};

struct platform_range {
        uint64_t base, end;
        char *name; /* may be NULL */
};

struct platform_bank {
        char *name;
        uint64_t base, end;
        uint32_t numa_node;
};

struct platform_pool {
        char *name;
        uint64_t base, end;
        uint32_t numa_node;
        uint64_t granule;
        enum backing_kind backing;
        char *backing_path; /* NULL for memfd */
        /*
         * Regions of this pool may be cut off by force: no shrink seal, and a forced revoke truncates
         * the memory to zero, so every holder that touches it gets SIGBUS. Default false (sealed): a
         * peer is then safe from an owner that truncates under it.
         */
        bool revocable;
};

struct platform_device {
        char *name;
        char *owner;            /* the HW domain that drives the device */
        unsigned dma_mask_bits; /* 12..64 */
        uint64_t dma_max;       /* highest reachable address, inclusive: 2^bits - 1 */
        struct platform_range *windows; /* sorted by base; defaults to [0, dma_max] */
        size_t n_windows;
        struct platform_range *reserved_windows; /* sorted by base */
        size_t n_reserved_windows;
        uint64_t alignment; /* power of two, >= 1 */
};

struct platform {
        struct platform_bank *banks;
        size_t n_banks;
        struct platform_range *reserved; /* sorted by base */
        size_t n_reserved;
        struct platform_pool *pools; /* sorted by base */
        size_t n_pools;
        struct platform_device *devices;
        size_t n_devices;
};

int platform_load_file(const char *path, struct platform **ret, struct diag_list *diags);
int platform_load_string(const char *text, struct platform **ret, struct diag_list *diags);
int platform_load_json(struct json_object *root, struct platform **ret, struct diag_list *diags);
void platform_free(struct platform *p);
DEFINE_CLEANUP(struct platform, platform_free);

const struct platform_device *platform_find_device(const struct platform *p, const char *name);
const struct platform_pool *platform_find_pool(const struct platform *p, const char *name);
/* The pool containing addr, or NULL. */
const struct platform_pool *platform_pool_at(const struct platform *p, uint64_t addr);

/* Index of the first pool with end > addr; the pools must be sorted and disjoint (as loaded). */
size_t platform_pools_first_ending_after(const struct platform *p, uint64_t addr);

const char *backing_kind_to_string(enum backing_kind k);
int backing_kind_from_string(const char *s, enum backing_kind *ret);
