/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Between the parts of the platform loader: its state (the JSON kit's loader plus what
 * each entry's checks found usable, for the checks across entries) and the range checks
 * shared by every array of ranges. Not for use outside brokerd/platform/.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform/platform.h"
#include "util/json-load.h"
#include "util/num.h"

#define PLATFORM_MAX_NUMA_NODE UINT64_C(1023) /* Linux: CONFIG_NODES_SHIFT <= 10 */
#define PLATFORM_MIN_DMA_BITS 12
#define PLATFORM_MAX_DMA_BITS 64
#define RANGE_FMT_MAX (2 * NUM_FMT_MAX + 8)

/* Indexed by enum backing_kind. */
extern const char *const backing_kind_names[_BACKING_KIND_MAX];

struct entry_state {
        bool range_ok;
        bool numa_ok;
        bool granule_ok;
};

struct platform_loader {
        struct json_loader json;
        struct entry_state *banks, *reserved, *pools;
};

/* One entry of an array for the cross-entry checks; entries that failed to parse have ok = false. */
struct span {
        uint64_t base, end;
        const char *name; /* may be NULL */
        bool ok;
};

/* "[0x1000, 0x2000)" */
const char *platform_format_range(uint64_t base, uint64_t end, char buf[static RANGE_FMT_MAX]);
/* The entry at path as an object with only the given keys, or NULL (reported). */
json_object *platform_entry(struct platform_loader *l, json_object *arr, size_t i, const char *path,
                            const char *const *keys);
/*
 * The array obj.key of at most max entries, with a zeroed span per entry at *ret_spans
 * (caller frees); NULL when absent, invalid (reported) or on allocation failure. For an
 * empty array *ret_n is 0 and *ret_spans NULL.
 */
json_object *platform_array(struct platform_loader *l, json_object *obj, const char *path, const char *key,
                            unsigned flags, size_t max, size_t *ret_n, struct span **ret_spans);
/* base and size of obj as a half-open range; false (reported) if either is unusable. */
bool platform_get_range(struct platform_loader *l, json_object *obj, const char *path, uint64_t *ret_base,
                        uint64_t *ret_end);
/* Reports each entry that overlaps an earlier one, naming the first such. */
void platform_check_overlaps(struct platform_loader *l, const char *path, const char *label, const struct span *s,
                             size_t n);
/* Reports every repeat of a name at path[i].name; NULL names (absent or invalid) are skipped. */
void platform_check_unique(struct platform_loader *l, const char *path, const struct span *s, size_t n);

void platform_load_devices(struct platform_loader *l, json_object *root, struct platform *p);
