/* SPDX-License-Identifier: Apache-2.0 */
/* The platform loader: the document, RAM banks, reserved ranges and pools (devices: platform-devices.c). */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "placement/dma-spans.h"
#include "platform/platform-internal.h"

#define PLATFORM_JSON_DEPTH 32
/* The smallest huge page on the architectures brokerd runs on (x86-64, arm64 with 4K pages). */
#define HUGETLBFS_MIN_GRANULE (UINT64_C(2) << 20)

static const struct json_load_limits platform_limits = {
        .max_size = PLATFORM_MAX_FILE_SIZE,
        .max_depth = PLATFORM_JSON_DEPTH,
};

static void loader_done(struct platform_loader *l) {
        free(l->banks);
        free(l->reserved);
        free(l->pools);
}

static void load_banks(struct platform_loader *l, json_object *root, struct platform *p) {
        static const char *const keys[] = { "name", "base", "size", "numa_node", NULL };
        _cleanup_(xfreep) struct span *spans = NULL;
        json_object *arr;
        size_t n = 0;

        arr = platform_array(l, root, "", "memory", JSON_REQUIRED, PLATFORM_MAX_ENTRIES, &n, &spans);
        if (arr && n == 0)
                json_loader_error(&l->json, "memory", "must list at least one RAM bank");
        if (!arr || n == 0)
                return;
        p->banks = json_loader_alloc(&l->json, n, sizeof(*p->banks));
        l->banks = json_loader_alloc(&l->json, n, sizeof(*l->banks));
        if (!p->banks || !l->banks)
                return;
        p->n_banks = n;

        for (size_t i = 0; i < n; i++) {
                struct platform_bank *b = &p->banks[i];
                _cleanup_(xfreep) char *path = json_loader_path_index(&l->json, "memory", i);
                uint64_t node = 0;
                json_object *e;

                e = platform_entry(l, arr, i, path, keys);
                if (!e)
                        continue;
                json_get_name(&l->json, e, path, "name", JSON_REQUIRED, &b->name);
                l->banks[i].range_ok = platform_get_range(l, e, path, &b->base, &b->end);
                l->banks[i].numa_ok = json_get_uint(&l->json, e, path, "numa_node", JSON_REQUIRED, 0,
                                                    PLATFORM_MAX_NUMA_NODE, NULL, &node);
                b->numa_node = (uint32_t) node;
                spans[i] = (struct span) { b->base, b->end, b->name, l->banks[i].range_ok };
        }
        platform_check_unique(l, "memory", spans, n);
        platform_check_overlaps(l, "memory", "memory", spans, n);
}

static void load_reserved(struct platform_loader *l, json_object *root, struct platform *p) {
        static const char *const keys[] = { "name", "base", "size", NULL };
        _cleanup_(xfreep) struct span *spans = NULL;
        json_object *arr;
        size_t n = 0;

        arr = platform_array(l, root, "", "reserved", JSON_OPTIONAL, PLATFORM_MAX_ENTRIES, &n, &spans);
        if (!arr || n == 0)
                return;
        p->reserved = json_loader_alloc(&l->json, n, sizeof(*p->reserved));
        l->reserved = json_loader_alloc(&l->json, n, sizeof(*l->reserved));
        if (!p->reserved || !l->reserved)
                return;
        p->n_reserved = n;

        for (size_t i = 0; i < n; i++) {
                struct platform_range *r = &p->reserved[i];
                _cleanup_(xfreep) char *path = json_loader_path_index(&l->json, "reserved", i);
                json_object *e;

                e = platform_entry(l, arr, i, path, keys);
                if (!e)
                        continue;
                json_get_name(&l->json, e, path, "name", JSON_REQUIRED, &r->name);
                l->reserved[i].range_ok = platform_get_range(l, e, path, &r->base, &r->end);
                spans[i] = (struct span) { r->base, r->end, r->name, l->reserved[i].range_ok };
        }
        /* Reserved ranges may overlap each other: firmware maps often nest them. */
        platform_check_unique(l, "reserved", spans, n);
}

/* The directory of a shm or hugetlbfs backing (none for memfd). */
static void load_backing_path(struct platform_loader *l, json_object *b, const char *path, bool kind_ok,
                              struct platform_pool *out) {
        _cleanup_(xfreep) char *dir_path = json_loader_path_key(&l->json, path, "path");
        json_object *dir_json = NULL;
        const char *dir = NULL;
        bool has_dir;

        has_dir = json_object_object_get_ex(b, "path", &dir_json);
        if (kind_ok && out->backing == BACKING_MEMFD) {
                if (has_dir)
                        json_loader_error(&l->json, dir_path, "not allowed with memfd backing");
        } else if (kind_ok && !has_dir) {
                json_loader_error(&l->json, dir_path, "missing required key: %s backing needs a directory",
                                  backing_kind_to_string(out->backing));
        } else if (json_get_string(&l->json, b, path, "path", JSON_OPTIONAL, SIZE_MAX, &dir)) {
                if (dir[0] != '/' || strlen(dir) >= PATH_MAX)
                        json_loader_error(&l->json, dir_path,
                                          "must be an absolute path shorter than %d bytes (got %.*s)", PATH_MAX,
                                          JSON_QUOTE_MAX, json_value_text(dir_json));
                else if (kind_ok)
                        out->backing_path = json_loader_strdup(&l->json, dir);
        }
}

static void load_backing(struct platform_loader *l, json_object *pool, const char *pool_path, struct platform_pool *out,
                         bool granule_ok) {
        static const char *const keys[] = { "kind", "path", NULL };
        _cleanup_(xfreep) char *path = NULL;
        unsigned kind = 0;
        bool kind_ok;
        json_object *b;

        b = json_get_object(&l->json, pool, pool_path, "backing", JSON_REQUIRED, keys);
        if (!b)
                return;
        path = json_loader_path_key(&l->json, pool_path, "backing");
        kind_ok = json_get_enum(&l->json, b, path, "kind", JSON_REQUIRED, "backing kind", backing_kind_names,
                                _BACKING_KIND_MAX,
                                &kind);
        if (kind_ok)
                out->backing = (enum backing_kind) kind;
        load_backing_path(l, b, path, kind_ok, out);

        if (kind_ok && granule_ok && out->backing == BACKING_HUGETLBFS && out->granule < HUGETLBFS_MIN_GRANULE) {
                _cleanup_(xfreep) char *g = json_loader_path_key(&l->json, pool_path, "granule");
                char buf[NUM_FMT_MAX];
                json_loader_error(&l->json, g, "hugetlbfs pools need a granule of at least 2MiB (got %s)",
                                  num_format_size(out->granule, buf));
        }
}

static bool load_granule(struct platform_loader *l, json_object *e, const char *path, struct platform_pool *pool) {
        _cleanup_(xfreep) char *gp = NULL;
        char buf[NUM_FMT_MAX];

        if (!json_get_u64(&l->json, e, path, "granule", JSON_REQUIRED, &pool->granule))
                return false;
        gp = json_loader_path_key(&l->json, path, "granule");
        if (!num_is_pow2(pool->granule))
                json_loader_error(&l->json, gp, "granule %s is not a power of two",
                                  num_format_size(pool->granule, buf));
        else if (pool->granule < PLATFORM_MIN_GRANULE)
                json_loader_error(&l->json, gp, "granule %s is smaller than 4KiB", num_format_size(pool->granule, buf));
        else
                return true;
        return false;
}

static void check_pool_alignment(struct platform_loader *l, const char *path, const struct platform_pool *pool) {
        char b1[NUM_FMT_MAX], b2[NUM_FMT_MAX];

        if (!num_is_aligned(pool->base, pool->granule)) {
                _cleanup_(xfreep) char *p = json_loader_path_key(&l->json, path, "base");
                json_loader_error(&l->json, p, "%s is not aligned to the pool granule %s",
                                  num_format_addr(pool->base, b1), num_format_size(pool->granule, b2));
        }
        if (!num_is_aligned(pool->end - pool->base, pool->granule)) {
                _cleanup_(xfreep) char *p = json_loader_path_key(&l->json, path, "size");
                json_loader_error(&l->json, p, "size %s is not a multiple of the pool granule %s",
                                  num_format_size(pool->end - pool->base, b1), num_format_size(pool->granule, b2));
        }
}

/* Placement relative to RAM banks and reserved ranges: a pool is RAM brokerd may hand out. */
static void check_pool_placement(struct platform_loader *l, const struct platform *p, size_t i, const char *path) {
        const struct platform_pool *pool = &p->pools[i];
        const struct platform_bank *bank = NULL;
        bool banks_ok = p->n_banks > 0;
        char buf[RANGE_FMT_MAX];

        for (size_t k = 0; k < p->n_banks; k++) {
                banks_ok = banks_ok && l->banks[k].range_ok;
                if (l->banks[k].range_ok && p->banks[k].base <= pool->base && pool->end <= p->banks[k].end) {
                        bank = &p->banks[k];
                        if (l->pools[i].numa_ok && l->banks[k].numa_ok && pool->numa_node != bank->numa_node) {
                                _cleanup_(xfreep) char *np = json_loader_path_key(&l->json, path, "numa_node");
                                json_loader_error(&l->json, np,
                                                  "numa_node %" PRIu32
                                                  " does not match RAM bank \"%s\" on node %" PRIu32,
                                                  pool->numa_node, bank->name ?: "?", bank->numa_node);
                        }
                        break;
                }
        }
        /* With a broken bank the pool may well be inside it; that bank's error says enough. */
        if (!bank && banks_ok)
                json_loader_error(&l->json, path, "%s is not inside one RAM bank",
                                  platform_format_range(pool->base, pool->end, buf));

        for (size_t k = 0; k < p->n_reserved; k++) {
                const struct platform_range *r = &p->reserved[k];

                if (l->reserved[k].range_ok && num_ranges_overlap(pool->base, pool->end, r->base, r->end)) {
                        json_loader_error(&l->json, path, "overlaps reserved[%zu] \"%s\" %s", k, r->name ?: "?",
                                          platform_format_range(r->base, r->end, buf));
                        break;
                }
        }
}

static void load_pool(struct platform_loader *l, json_object *e, const char *path, struct platform *p, size_t i) {
        struct platform_pool *pool = &p->pools[i];
        struct entry_state *st = &l->pools[i];
        uint64_t node = 0;

        json_get_name(&l->json, e, path, "name", JSON_REQUIRED, &pool->name);
        st->range_ok = platform_get_range(l, e, path, &pool->base, &pool->end);
        st->numa_ok = json_get_uint(&l->json, e, path, "numa_node", JSON_REQUIRED, 0, PLATFORM_MAX_NUMA_NODE, NULL,
                                    &node);
        pool->numa_node = (uint32_t) node;
        st->granule_ok = load_granule(l, e, path, pool);
        load_backing(l, e, path, pool, st->granule_ok);
        (void) json_get_bool(&l->json, e, path, "revocable", JSON_OPTIONAL, &pool->revocable);

        if (st->range_ok && st->granule_ok)
                check_pool_alignment(l, path, pool);
        if (st->range_ok)
                check_pool_placement(l, p, i, path);
}

static void load_pools(struct platform_loader *l, json_object *root, struct platform *p) {
        static const char *const keys[] = { "name", "base", "size", "numa_node", "granule", "backing", "revocable", NULL };
        _cleanup_(xfreep) struct span *spans = NULL;
        json_object *arr;
        size_t n = 0;

        arr = platform_array(l, root, "", "pools", JSON_REQUIRED, PLATFORM_MAX_ENTRIES, &n, &spans);
        if (!arr || n == 0)
                return;
        p->pools = json_loader_alloc(&l->json, n, sizeof(*p->pools));
        l->pools = json_loader_alloc(&l->json, n, sizeof(*l->pools));
        if (!p->pools || !l->pools)
                return;
        p->n_pools = n;

        for (size_t i = 0; i < n; i++) {
                struct platform_pool *pool = &p->pools[i];
                _cleanup_(xfreep) char *path = json_loader_path_index(&l->json, "pools", i);
                json_object *e;

                e = platform_entry(l, arr, i, path, keys);
                if (!e)
                        continue;
                load_pool(l, e, path, p, i);
                spans[i] = (struct span) { pool->base, pool->end, pool->name, l->pools[i].range_ok };
        }
        platform_check_unique(l, "pools", spans, n);
        platform_check_overlaps(l, "pools", "pools", spans, n);
}

static int range_compare(const void *a, const void *b) {
        const struct platform_range *x = a, *y = b;

        if (x->base != y->base)
                return x->base < y->base ? -1 : 1;
        if (x->end != y->end)
                return x->end < y->end ? -1 : 1;
        return strcmp(x->name ?: "", y->name ?: "");
}

static int pool_compare(const void *a, const void *b) {
        const struct platform_pool *x = a, *y = b;

        /* Validated pools are disjoint and non-empty, so bases are distinct. */
        return x->base < y->base ? -1 : x->base > y->base;
}

static void platform_sort(struct platform *p) {
        if (p->n_reserved > 0)
                qsort(p->reserved, p->n_reserved, sizeof(*p->reserved), range_compare);
        if (p->n_pools > 0)
                qsort(p->pools, p->n_pools, sizeof(*p->pools), pool_compare);
        for (size_t i = 0; i < p->n_devices; i++) {
                struct platform_device *d = &p->devices[i];
                if (d->n_windows > 0)
                        qsort(d->windows, d->n_windows, sizeof(*d->windows), range_compare);
                if (d->n_reserved_windows > 0)
                        qsort(d->reserved_windows, d->n_reserved_windows, sizeof(*d->reserved_windows),
                              range_compare);
        }
}

/* Warns about every device that can place nothing in any pool. Needs the platform sorted. */
static void check_reachability(struct platform_loader *l, const struct platform *p) {
        for (size_t i = 0; i < p->n_devices; i++) {
                const struct platform_device *d = &p->devices[i];
                _cleanup_(xfreep) struct dma_span *spans = NULL;
                _cleanup_(xfreep) char *path = NULL;
                size_t n;

                /* The platform is valid here, so only allocation can fail. */
                if (dma_spans_of_device(p, d, &spans, &n) < 0) {
                        l->json.oom = true;
                        return;
                }
                if (dma_spans_hold_granule(d, spans, n))
                        continue;
                path = json_loader_path_index(&l->json, "devices", i);
                json_loader_warning(
                        &l->json, path,
                        "device \"%s\" can reach no pool: no pool has a free granule inside its DMA windows, "
                        "below its DMA mask and clear of reserved ranges and reserved windows",
                        d->name);
        }
}

int platform_load_json(json_object *root, struct platform **ret, struct diag_list *diags) {
        static const char *const keys[] = { "$schema", "memory", "reserved", "pools", "devices", NULL };
        _cleanup_(platform_freep) struct platform *p = NULL;
        _cleanup_(loader_done) struct platform_loader l = { .json.diags = diags };
        const char *schema;
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        if (!json_get_object(&l.json, root, "", NULL, JSON_REQUIRED, keys))
                return json_loader_result(&l.json);
        json_get_string(&l.json, root, "", "$schema", JSON_OPTIONAL, SIZE_MAX, &schema);

        load_banks(&l, root, p);
        load_reserved(&l, root, p);
        load_pools(&l, root, p);
        platform_load_devices(&l, root, p);
        r = json_loader_result(&l.json);
        if (r < 0)
                return r;

        platform_sort(p);
        /* Only meaningful for a platform without errors, hence after the verdict. */
        check_reachability(&l, p);
        if (l.json.oom)
                return -ENOMEM;

        *ret = TAKE_PTR(p);
        return 0;
}

int platform_load_string(const char *text, struct platform **ret, struct diag_list *diags) {
        _cleanup_(json_object_unrefp) json_object *root = NULL;
        int r = json_load_string(text, &platform_limits, diags, &root);
        return r < 0 ? r : platform_load_json(root, ret, diags);
}

int platform_load_file(const char *path, struct platform **ret, struct diag_list *diags) {
        _cleanup_(json_object_unrefp) json_object *root = NULL;
        int r = json_load_file(path, &platform_limits, diags, &root);
        return r < 0 ? r : platform_load_json(root, ret, diags);
}
