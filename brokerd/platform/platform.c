/* SPDX-License-Identifier: Apache-2.0 */
/* A loaded platform: lookups and freeing (loading: platform-load.c). */
#include "platform/platform.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "platform/platform-internal.h"

const char *const backing_kind_names[_BACKING_KIND_MAX] = {
        [BACKING_MEMFD] = "memfd",
        [BACKING_SHM] = "shm",
        [BACKING_HUGETLBFS] = "hugetlbfs",
};
_Static_assert(ELEMENTSOF(backing_kind_names) == _BACKING_KIND_MAX, "a name for every backing kind");

const char *backing_kind_to_string(enum backing_kind k) {
        if ((unsigned) k >= _BACKING_KIND_MAX)
                return NULL;
        return backing_kind_names[k];
}

int backing_kind_from_string(const char *s, enum backing_kind *ret) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < _BACKING_KIND_MAX; i++)
                if (strcmp(s, backing_kind_names[i]) == 0) {
                        *ret = (enum backing_kind) i;
                        return 0;
                }
        return -EINVAL;
}

static void range_free_names(struct platform_range *r, size_t n) {
        for (size_t i = 0; r && i < n; i++)
                free(r[i].name);
        free(r);
}

void platform_free(struct platform *p) {
        if (!p)
                return;
        for (size_t i = 0; p->banks && i < p->n_banks; i++)
                free(p->banks[i].name);
        free(p->banks);
        range_free_names(p->reserved, p->n_reserved);
        for (size_t i = 0; p->pools && i < p->n_pools; i++) {
                free(p->pools[i].name);
                free(p->pools[i].backing_path);
        }
        free(p->pools);
        for (size_t i = 0; p->devices && i < p->n_devices; i++) {
                struct platform_device *d = &p->devices[i];
                free(d->name);
                free(d->owner);
                range_free_names(d->windows, d->n_windows);
                range_free_names(d->reserved_windows, d->n_reserved_windows);
        }
        free(p->devices);
        free(p);
}

const struct platform_device *platform_find_device(const struct platform *p, const char *name) {
        if (!p || !name)
                return NULL;
        for (size_t i = 0; i < p->n_devices; i++)
                if (strcmp(p->devices[i].name, name) == 0)
                        return &p->devices[i];
        return NULL;
}

const struct platform_pool *platform_find_pool(const struct platform *p, const char *name) {
        if (!p || !name)
                return NULL;
        for (size_t i = 0; i < p->n_pools; i++)
                if (strcmp(p->pools[i].name, name) == 0)
                        return &p->pools[i];
        return NULL;
}

size_t platform_pools_first_ending_after(const struct platform *p, uint64_t addr) {
        size_t lo = 0, hi = p->n_pools;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (p->pools[mid].end <= addr)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

const struct platform_pool *platform_pool_at(const struct platform *p, uint64_t addr) {
        size_t k;

        if (!p)
                return NULL;
        k = platform_pools_first_ending_after(p, addr);
        if (k < p->n_pools && p->pools[k].base <= addr)
                return &p->pools[k];
        return NULL;
}
