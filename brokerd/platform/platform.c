/* SPDX-License-Identifier: Apache-2.0 */
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/names.h"
#include "util/num.h"

/* Linux supports at most 1024 NUMA nodes (CONFIG_NODES_SHIFT <= 10). */
#define PLATFORM_MAX_NUMA_NODE UINT64_C(1023)
#define PLATFORM_JSON_DEPTH 32
#define PLATFORM_MIN_DMA_BITS 12
#define PLATFORM_MAX_DMA_BITS 64
/* The smallest huge page on the architectures brokerd runs on (x86-64, arm64 with 4K pages). */
#define HUGETLBFS_MIN_GRANULE (UINT64_C(2) << 20)

#define NUMBER_EXPECTED "expected a 64-bit number: integer, \"0x…\" hex, or with a KiB/MiB/GiB/TiB suffix"
#define NAME_EXPECTED "expected a name: 1..128 characters of [A-Za-z0-9_.:+-], not starting with '.' or '-'"
/* How much of an offending value a message quotes. */
#define QUOTE_MAX 64

static const char *const backing_kind_table[_BACKING_KIND_MAX] = {
        [BACKING_MEMFD] = "memfd",
        [BACKING_SHM] = "shm",
        [BACKING_HUGETLBFS] = "hugetlbfs",
};

const char *backing_kind_to_string(enum backing_kind k) {
        if ((unsigned) k >= _BACKING_KIND_MAX)
                return NULL;
        return backing_kind_table[k];
}

int backing_kind_from_string(const char *s, enum backing_kind *ret) {
        if (!s)
                return -EINVAL;
        for (size_t i = 0; i < _BACKING_KIND_MAX; i++)
                if (strcmp(s, backing_kind_table[i]) == 0) {
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

/*
 * Loader state. Allocation failures are sticky rather than propagated through every
 * check: the checks keep going harmlessly and the load reports -ENOMEM at the end.
 */
struct entry_state {
        bool range_ok;
        bool numa_ok;
        bool granule_ok;
};

struct loader {
        struct diag_list *diags;
        size_t n_errors;
        bool oom;
        struct entry_state *banks, *reserved, *pools;
};

static void loader_done(struct loader *l) {
        free(l->banks);
        free(l->reserved);
        free(l->pools);
}

_printf_(4, 5) static void report(struct loader *l, enum diag_severity sev, const char *path, const char *fmt, ...) {
        va_list ap;

        if (sev == DIAG_ERROR)
                l->n_errors++;
        va_start(ap, fmt);
        if (diag_addv(l->diags, sev, path, fmt, ap) < 0)
                l->oom = true;
        va_end(ap);
}

static char *path_key(struct loader *l, const char *parent, const char *key) {
        char *p = diag_path_key(parent, key);
        if (!p)
                l->oom = true;
        return p;
}

static char *path_index(struct loader *l, const char *parent, size_t index) {
        char *p = diag_path_index(parent, index);
        if (!p)
                l->oom = true;
        return p;
}

static void *alloc_array(struct loader *l, size_t n, size_t size) {
        void *p;

        if (n == 0)
                return NULL;
        p = calloc(n, size);
        if (!p)
                l->oom = true;
        return p;
}

static char *dup_string(struct loader *l, const char *s) {
        char *d = strdup(s);
        if (!d)
                l->oom = true;
        return d;
}

/* The value as JSON text, escaped so that a hostile value cannot forge diagnostic lines. */
static const char *json_text(json_object *o) {
        return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE) ?: "?";
}

static const char *type_desc(json_object *o) {
        switch (json_object_get_type(o)) {
        case json_type_null:
                return "null";
        case json_type_boolean:
                return "a boolean";
        case json_type_double:
                return "a fractional number";
        case json_type_int:
                return "an integer";
        case json_type_object:
                return "an object";
        case json_type_array:
                return "an array";
        case json_type_string:
                return "a string";
        }
        return "an unknown value";
}

static bool expect_type(struct loader *l, json_object *o, const char *path, enum json_type type, const char *what) {
        if (json_object_is_type(o, type))
                return true;
        report(l, DIAG_ERROR, path, "expected %s, got %s", what, type_desc(o));
        return false;
}

/* Reports every member of obj that is not in keys (a NULL-terminated list). */
static void check_keys(struct loader *l, json_object *obj, const char *path, const char *const *keys,
                       const char *allowed) {
        json_object_object_foreach(obj, key, value) {
                bool known = false;

                (void) value;
                for (const char *const *k = keys; *k; k++)
                        if (strcmp(key, *k) == 0) {
                                known = true;
                                break;
                        }
                if (!known) {
                        _cleanup_(xfreep) char *p = path_key(l, path, key);
                        report(l, DIAG_ERROR, p, "unknown key (allowed: %s)", allowed);
                }
        }
}

/*
 * Whether obj has the member key, which json-c hands out as NULL for a JSON null; a
 * missing required key is reported at its own path.
 */
static bool member(struct loader *l, json_object *obj, const char *path, const char *key, bool required,
                   json_object **ret) {
        if (json_object_object_get_ex(obj, key, ret))
                return true;
        if (required) {
                _cleanup_(xfreep) char *p = path_key(l, path, key);
                report(l, DIAG_ERROR, p, "missing required key");
        }
        return false;
}

/*
 * The getters below return true with *ret set for a present, valid value. They return
 * false for an absent optional value (silently, *ret untouched) and for a missing or
 * invalid one (reported).
 */
static bool get_u64(struct loader *l, json_object *obj, const char *path, const char *key, bool required,
                    uint64_t *ret) {
        _cleanup_(xfreep) char *p = NULL;
        json_object *v;

        if (!member(l, obj, path, key, required, &v))
                return false;
        if (num_from_json(v, ret) >= 0)
                return true;
        p = path_key(l, path, key);
        report(l, DIAG_ERROR, p, NUMBER_EXPECTED " (got %.*s)", QUOTE_MAX, json_text(v));
        return false;
}

/* A plain JSON integer in [min, max]. */
static bool get_uint(struct loader *l, json_object *obj, const char *path, const char *key, uint64_t min,
                     uint64_t max, uint64_t *ret) {
        _cleanup_(xfreep) char *p = NULL;
        json_object *v;
        int64_t i;

        if (!member(l, obj, path, key, true, &v))
                return false;
        if (json_object_is_type(v, json_type_int)) {
                i = json_object_get_int64(v);
                if (i >= 0 && (uint64_t) i >= min && (uint64_t) i <= max) {
                        *ret = (uint64_t) i;
                        return true;
                }
        }
        p = path_key(l, path, key);
        report(l, DIAG_ERROR, p, "expected an integer %" PRIu64 "..%" PRIu64 " (got %.*s)", min, max, QUOTE_MAX,
               json_text(v));
        return false;
}

static bool get_string(struct loader *l, json_object *obj, const char *path, const char *key, bool required,
                       const char **ret) {
        _cleanup_(xfreep) char *p = NULL;
        json_object *v;
        const char *s;

        if (!member(l, obj, path, key, required, &v))
                return false;
        p = path_key(l, path, key);
        if (!expect_type(l, v, p, json_type_string, "a string"))
                return false;
        s = json_object_get_string(v);
        /* JSON may spell a NUL byte as \u0000; C would silently truncate there. */
        if (strlen(s) != (size_t) json_object_get_string_len(v)) {
                report(l, DIAG_ERROR, p, "must not contain a NUL character");
                return false;
        }
        *ret = s;
        return true;
}

static bool get_name(struct loader *l, json_object *obj, const char *path, const char *key, bool required,
                     char **ret) {
        const char *s;

        if (!get_string(l, obj, path, key, required, &s))
                return false;
        if (!name_is_valid(s)) {
                _cleanup_(xfreep) char *p = path_key(l, path, key);
                report(l, DIAG_ERROR, p, NAME_EXPECTED " (got %.*s)", QUOTE_MAX,
                       json_text(json_object_object_get(obj, key)));
                return false;
        }
        *ret = dup_string(l, s);
        return *ret != NULL;
}

/* An array of at most max entries; reports a wrong type or too many entries. */
static json_object *get_array(struct loader *l, json_object *obj, const char *path, const char *key, bool required,
                              size_t max, size_t *ret_n) {
        _cleanup_(xfreep) char *p = NULL;
        json_object *v;
        size_t n;

        if (!member(l, obj, path, key, required, &v))
                return NULL;
        p = path_key(l, path, key);
        if (!expect_type(l, v, p, json_type_array, "an array"))
                return NULL;
        n = json_object_array_length(v);
        if (n > max) {
                report(l, DIAG_ERROR, p, "too many entries: %zu (at most %zu)", n, max);
                return NULL;
        }
        *ret_n = n;
        return v;
}

/* base and size of obj as a half-open range; false (reported) if either is unusable. */
static bool get_range(struct loader *l, json_object *obj, const char *path, uint64_t *ret_base, uint64_t *ret_end) {
        char b1[NUM_FMT_MAX], b2[NUM_FMT_MAX];
        uint64_t base = 0, size = 0, end;
        bool base_ok, size_ok;

        base_ok = get_u64(l, obj, path, "base", true, &base);
        size_ok = get_u64(l, obj, path, "size", true, &size);
        if (size_ok && size == 0) {
                _cleanup_(xfreep) char *p = path_key(l, path, "size");
                report(l, DIAG_ERROR, p, "size must not be zero");
                return false;
        }
        if (!base_ok || !size_ok)
                return false;
        if (num_range_end(base, size, &end) < 0) {
                _cleanup_(xfreep) char *p = path_key(l, path, "size");
                report(l, DIAG_ERROR, p, "base %s + size %s wraps past the end of the 64-bit address space",
                       num_format_addr(base, b1), num_format_size(size, b2));
                return false;
        }
        *ret_base = base;
        *ret_end = end;
        return true;
}

#define RANGE_FMT_MAX (2 * NUM_FMT_MAX + 8)

static const char *format_range(uint64_t base, uint64_t end, char buf[static RANGE_FMT_MAX]) {
        char b1[NUM_FMT_MAX], b2[NUM_FMT_MAX];

        snprintf(buf, RANGE_FMT_MAX, "[%s, %s)", num_format_addr(base, b1), num_format_addr(end, b2));
        return buf;
}

/* One entry of an array for the cross-entry checks; entries that failed to parse have ok = false. */
struct span {
        uint64_t base, end;
        const char *name; /* may be NULL */
        bool ok;
};

/*
 * Reports each entry that overlaps an earlier one, naming the first such, so a file with
 * n entries yields at most n diagnostics. Quadratic, but n is bounded by the entry limits.
 */
static void check_overlaps(struct loader *l, const char *path, const char *label, const struct span *s, size_t n) {
        for (size_t j = 1; j < n; j++) {
                if (!s[j].ok)
                        continue;
                for (size_t i = 0; i < j; i++) {
                        _cleanup_(xfreep) char *p = NULL;
                        char buf[RANGE_FMT_MAX];

                        if (!s[i].ok || !num_ranges_overlap(s[i].base, s[i].end, s[j].base, s[j].end))
                                continue;
                        p = path_index(l, path, j);
                        report(l, DIAG_ERROR, p, "overlaps %s[%zu]%s%s%s %s", label, i, s[i].name ? " \"" : "",
                               s[i].name ?: "", s[i].name ? "\"" : "", format_range(s[i].base, s[i].end, buf));
                        break;
                }
        }
}

struct name_ref {
        const char *name;
        size_t index;
};

static int name_ref_compare(const void *a, const void *b) {
        const struct name_ref *x = a, *y = b;
        int c = strcmp(x->name, y->name);

        if (c != 0)
                return c;
        return x->index < y->index ? -1 : x->index > y->index;
}

/* Reports every repeat of a name at path[i].name; NULL names (absent or invalid) are skipped. */
static void check_unique(struct loader *l, const char *path, const struct span *s, size_t n) {
        _cleanup_(xfreep) struct name_ref *refs = NULL;
        size_t m = 0, first = 0;

        refs = alloc_array(l, n, sizeof(*refs));
        if (!refs)
                return;
        for (size_t i = 0; i < n; i++)
                if (s[i].name)
                        refs[m++] = (struct name_ref) { .name = s[i].name, .index = i };
        qsort(refs, m, sizeof(*refs), name_ref_compare);
        for (size_t k = 1; k < m; k++) {
                _cleanup_(xfreep) char *entry = NULL, *p = NULL;

                if (strcmp(refs[k].name, refs[first].name) != 0) {
                        first = k;
                        continue;
                }
                entry = path_index(l, path, refs[k].index);
                p = path_key(l, entry, "name");
                report(l, DIAG_ERROR, p, "duplicate name \"%s\" (also used by %s[%zu])", refs[k].name, path,
                       refs[first].index);
        }
}

static json_object *entry_object(struct loader *l, json_object *arr, size_t i, const char *path) {
        json_object *e = json_object_array_get_idx(arr, i);

        if (!expect_type(l, e, path, json_type_object, "an object"))
                return NULL;
        return e;
}

static void load_banks(struct loader *l, json_object *root, struct platform *p) {
        static const char *const keys[] = { "name", "base", "size", "numa_node", NULL };
        _cleanup_(xfreep) struct span *spans = NULL;
        json_object *arr;
        size_t n = 0;

        arr = get_array(l, root, "", "memory", true, PLATFORM_MAX_ENTRIES, &n);
        if (!arr)
                return;
        if (n == 0) {
                report(l, DIAG_ERROR, "memory", "must list at least one RAM bank");
                return;
        }
        p->banks = alloc_array(l, n, sizeof(*p->banks));
        l->banks = alloc_array(l, n, sizeof(*l->banks));
        spans = alloc_array(l, n, sizeof(*spans));
        if (!p->banks || !l->banks || !spans)
                return;
        p->n_banks = n;

        for (size_t i = 0; i < n; i++) {
                struct platform_bank *b = &p->banks[i];
                _cleanup_(xfreep) char *path = path_index(l, "memory", i);
                uint64_t node = 0;
                json_object *e;

                e = entry_object(l, arr, i, path);
                if (!e)
                        continue;
                check_keys(l, e, path, keys, "name, base, size, numa_node");
                get_name(l, e, path, "name", true, &b->name);
                l->banks[i].range_ok = get_range(l, e, path, &b->base, &b->end);
                l->banks[i].numa_ok = get_uint(l, e, path, "numa_node", 0, PLATFORM_MAX_NUMA_NODE, &node);
                b->numa_node = (uint32_t) node;
                spans[i] = (struct span) { b->base, b->end, b->name, l->banks[i].range_ok };
        }
        check_unique(l, "memory", spans, n);
        check_overlaps(l, "memory", "memory", spans, n);
}

static void load_reserved(struct loader *l, json_object *root, struct platform *p) {
        static const char *const keys[] = { "name", "base", "size", NULL };
        _cleanup_(xfreep) struct span *spans = NULL;
        json_object *arr;
        size_t n = 0;

        arr = get_array(l, root, "", "reserved", false, PLATFORM_MAX_ENTRIES, &n);
        if (!arr || n == 0)
                return;
        p->reserved = alloc_array(l, n, sizeof(*p->reserved));
        l->reserved = alloc_array(l, n, sizeof(*l->reserved));
        spans = alloc_array(l, n, sizeof(*spans));
        if (!p->reserved || !l->reserved || !spans)
                return;
        p->n_reserved = n;

        for (size_t i = 0; i < n; i++) {
                struct platform_range *r = &p->reserved[i];
                _cleanup_(xfreep) char *path = path_index(l, "reserved", i);
                json_object *e;

                e = entry_object(l, arr, i, path);
                if (!e)
                        continue;
                check_keys(l, e, path, keys, "name, base, size");
                get_name(l, e, path, "name", true, &r->name);
                l->reserved[i].range_ok = get_range(l, e, path, &r->base, &r->end);
                spans[i] = (struct span) { r->base, r->end, r->name, l->reserved[i].range_ok };
        }
        /* Reserved ranges may overlap each other: firmware maps often nest them. */
        check_unique(l, "reserved", spans, n);
}

static void load_backing(struct loader *l, json_object *pool, const char *pool_path, struct platform_pool *out,
                         bool granule_ok) {
        static const char *const keys[] = { "kind", "path", NULL };
        _cleanup_(xfreep) char *path = NULL, *kind_path = NULL, *dir_path = NULL;
        const char *kind = NULL, *dir = NULL;
        json_object *b, *dir_json = NULL;
        bool kind_ok = false, has_dir;

        if (!member(l, pool, pool_path, "backing", true, &b))
                return;
        path = path_key(l, pool_path, "backing");
        if (!expect_type(l, b, path, json_type_object, "an object"))
                return;
        check_keys(l, b, path, keys, "kind, path");
        kind_path = path_key(l, path, "kind");
        dir_path = path_key(l, path, "path");

        if (get_string(l, b, path, "kind", true, &kind)) {
                kind_ok = backing_kind_from_string(kind, &out->backing) >= 0;
                if (!kind_ok)
                        report(l, DIAG_ERROR, kind_path,
                               "unknown backing kind %.*s (expected memfd, shm or hugetlbfs)", QUOTE_MAX,
                               json_text(json_object_object_get(b, "kind")));
        }

        has_dir = json_object_object_get_ex(b, "path", &dir_json);
        if (kind_ok && out->backing == BACKING_MEMFD) {
                if (has_dir)
                        report(l, DIAG_ERROR, dir_path, "not allowed with memfd backing");
        } else if (kind_ok && !has_dir) {
                report(l, DIAG_ERROR, dir_path, "missing required key: %s backing needs a directory",
                       backing_kind_to_string(out->backing));
        } else if (get_string(l, b, path, "path", false, &dir)) {
                if (dir[0] != '/' || strlen(dir) >= PATH_MAX)
                        report(l, DIAG_ERROR, dir_path, "must be an absolute path shorter than %d bytes (got %.*s)",
                               PATH_MAX, QUOTE_MAX, json_text(dir_json));
                else if (kind_ok)
                        out->backing_path = dup_string(l, dir);
        }

        if (kind_ok && granule_ok && out->backing == BACKING_HUGETLBFS && out->granule < HUGETLBFS_MIN_GRANULE) {
                _cleanup_(xfreep) char *g = path_key(l, pool_path, "granule");
                char buf[NUM_FMT_MAX];
                report(l, DIAG_ERROR, g, "hugetlbfs pools need a granule of at least 2MiB (got %s)",
                       num_format_size(out->granule, buf));
        }
}

static void check_pool_alignment(struct loader *l, const char *path, const struct platform_pool *pool) {
        char b1[NUM_FMT_MAX], b2[NUM_FMT_MAX];

        if (!num_is_aligned(pool->base, pool->granule)) {
                _cleanup_(xfreep) char *p = path_key(l, path, "base");
                report(l, DIAG_ERROR, p, "%s is not aligned to the pool granule %s", num_format_addr(pool->base, b1),
                       num_format_size(pool->granule, b2));
        }
        if (!num_is_aligned(pool->end - pool->base, pool->granule)) {
                _cleanup_(xfreep) char *p = path_key(l, path, "size");
                report(l, DIAG_ERROR, p, "size %s is not a multiple of the pool granule %s",
                       num_format_size(pool->end - pool->base, b1), num_format_size(pool->granule, b2));
        }
}

/* Placement relative to RAM banks and reserved ranges: a pool is RAM brokerd may hand out. */
static void check_pool_placement(struct loader *l, const struct platform *p, size_t i, const char *path) {
        const struct platform_pool *pool = &p->pools[i];
        const struct platform_bank *bank = NULL;
        bool banks_ok = p->n_banks > 0;
        char buf[RANGE_FMT_MAX];

        for (size_t k = 0; k < p->n_banks; k++) {
                banks_ok = banks_ok && l->banks[k].range_ok;
                if (l->banks[k].range_ok && p->banks[k].base <= pool->base && pool->end <= p->banks[k].end) {
                        bank = &p->banks[k];
                        if (l->pools[i].numa_ok && l->banks[k].numa_ok && pool->numa_node != bank->numa_node) {
                                _cleanup_(xfreep) char *np = path_key(l, path, "numa_node");
                                report(l, DIAG_ERROR, np,
                                       "numa_node %" PRIu32 " does not match RAM bank \"%s\" on node %" PRIu32,
                                       pool->numa_node, bank->name ?: "?", bank->numa_node);
                        }
                        break;
                }
        }
        /* With a broken bank the pool may well be inside it; that bank's error says enough. */
        if (!bank && banks_ok)
                report(l, DIAG_ERROR, path, "%s is not inside one RAM bank", format_range(pool->base, pool->end, buf));

        for (size_t k = 0; k < p->n_reserved; k++) {
                const struct platform_range *r = &p->reserved[k];

                if (l->reserved[k].range_ok && num_ranges_overlap(pool->base, pool->end, r->base, r->end)) {
                        report(l, DIAG_ERROR, path, "overlaps reserved[%zu] \"%s\" %s", k, r->name ?: "?",
                               format_range(r->base, r->end, buf));
                        break;
                }
        }
}

static void load_pools(struct loader *l, json_object *root, struct platform *p) {
        static const char *const keys[] = { "name", "base", "size", "numa_node", "granule", "backing", NULL };
        _cleanup_(xfreep) struct span *spans = NULL;
        json_object *arr;
        size_t n = 0;

        arr = get_array(l, root, "", "pools", true, PLATFORM_MAX_ENTRIES, &n);
        if (!arr || n == 0)
                return;
        p->pools = alloc_array(l, n, sizeof(*p->pools));
        l->pools = alloc_array(l, n, sizeof(*l->pools));
        spans = alloc_array(l, n, sizeof(*spans));
        if (!p->pools || !l->pools || !spans)
                return;
        p->n_pools = n;

        for (size_t i = 0; i < n; i++) {
                struct platform_pool *pool = &p->pools[i];
                struct entry_state *st = &l->pools[i];
                _cleanup_(xfreep) char *path = path_index(l, "pools", i);
                uint64_t node = 0;
                json_object *e;

                e = entry_object(l, arr, i, path);
                if (!e)
                        continue;
                check_keys(l, e, path, keys, "name, base, size, numa_node, granule, backing");
                get_name(l, e, path, "name", true, &pool->name);
                st->range_ok = get_range(l, e, path, &pool->base, &pool->end);
                st->numa_ok = get_uint(l, e, path, "numa_node", 0, PLATFORM_MAX_NUMA_NODE, &node);
                pool->numa_node = (uint32_t) node;
                if (get_u64(l, e, path, "granule", true, &pool->granule)) {
                        _cleanup_(xfreep) char *gp = path_key(l, path, "granule");
                        char buf[NUM_FMT_MAX];

                        if (!num_is_pow2(pool->granule))
                                report(l, DIAG_ERROR, gp, "granule %s is not a power of two",
                                       num_format_size(pool->granule, buf));
                        else if (pool->granule < PLATFORM_MIN_GRANULE)
                                report(l, DIAG_ERROR, gp, "granule %s is smaller than 4KiB",
                                       num_format_size(pool->granule, buf));
                        else
                                st->granule_ok = true;
                }
                load_backing(l, e, path, pool, st->granule_ok);

                if (st->range_ok && st->granule_ok)
                        check_pool_alignment(l, path, pool);
                if (st->range_ok)
                        check_pool_placement(l, p, i, path);
                spans[i] = (struct span) { pool->base, pool->end, pool->name, st->range_ok };
        }
        check_unique(l, "pools", spans, n);
        check_overlaps(l, "pools", "pools", spans, n);
}

/* Returns whether every window is a usable range, which the reserved-window check relies on. */
static bool load_windows(struct loader *l, json_object *dev, const char *dev_path, struct platform_device *d,
                         bool mask_ok) {
        static const char *const keys[] = { "base", "size", NULL };
        _cleanup_(xfreep) struct span *spans = NULL;
        _cleanup_(xfreep) char *arr_path = path_key(l, dev_path, "dma_windows");
        bool all_ok = true;
        json_object *arr;
        size_t n = 0;

        if (!json_object_object_get_ex(dev, "dma_windows", NULL)) {
                if (!mask_ok)
                        return false;
                /* The whole range below the mask; for 64 bits the last byte is not representable. */
                d->windows = alloc_array(l, 1, sizeof(*d->windows));
                if (!d->windows)
                        return false;
                d->n_windows = 1;
                d->windows[0].end = d->dma_max == UINT64_MAX ? UINT64_MAX : d->dma_max + 1;
                return true;
        }

        arr = get_array(l, dev, dev_path, "dma_windows", false, PLATFORM_MAX_WINDOWS, &n);
        if (!arr)
                return false;
        if (n == 0) {
                report(l, DIAG_ERROR, arr_path,
                       "must list at least one window (leave it out for the whole range below the DMA mask)");
                return false;
        }
        d->windows = alloc_array(l, n, sizeof(*d->windows));
        spans = alloc_array(l, n, sizeof(*spans));
        if (!d->windows || !spans)
                return false;
        d->n_windows = n;

        for (size_t i = 0; i < n; i++) {
                struct platform_range *w = &d->windows[i];
                _cleanup_(xfreep) char *path = path_index(l, arr_path, i);
                char b1[RANGE_FMT_MAX], b2[NUM_FMT_MAX];
                json_object *e;

                e = entry_object(l, arr, i, path);
                if (e) {
                        check_keys(l, e, path, keys, "base, size");
                        spans[i].ok = get_range(l, e, path, &w->base, &w->end);
                        spans[i].base = w->base;
                        spans[i].end = w->end;
                }
                all_ok = all_ok && spans[i].ok;
                if (!spans[i].ok || !mask_ok)
                        continue;
                if (w->base > d->dma_max)
                        report(l, DIAG_ERROR, path,
                               "window %s lies wholly above the DMA mask (highest reachable address %s)",
                               format_range(w->base, w->end, b1), num_format_addr(d->dma_max, b2));
                else if (w->end - 1 > d->dma_max)
                        report(l, DIAG_WARNING, path,
                               "window %s extends above the DMA mask; addresses above %s are unreachable",
                               format_range(w->base, w->end, b1), num_format_addr(d->dma_max, b2));
        }
        check_overlaps(l, arr_path, "dma_windows", spans, n);
        return all_ok;
}

static void load_reserved_windows(struct loader *l, json_object *dev, const char *dev_path,
                                  struct platform_device *d, bool windows_ok) {
        static const char *const keys[] = { "name", "base", "size", NULL };
        _cleanup_(xfreep) struct span *spans = NULL;
        _cleanup_(xfreep) char *arr_path = path_key(l, dev_path, "reserved_windows");
        json_object *arr;
        size_t n = 0;

        arr = get_array(l, dev, dev_path, "reserved_windows", false, PLATFORM_MAX_WINDOWS, &n);
        if (!arr || n == 0)
                return;
        d->reserved_windows = alloc_array(l, n, sizeof(*d->reserved_windows));
        spans = alloc_array(l, n, sizeof(*spans));
        if (!d->reserved_windows || !spans)
                return;
        d->n_reserved_windows = n;

        for (size_t i = 0; i < n; i++) {
                struct platform_range *r = &d->reserved_windows[i];
                _cleanup_(xfreep) char *path = path_index(l, arr_path, i);
                bool inside = false;
                char buf[RANGE_FMT_MAX];
                json_object *e;

                e = entry_object(l, arr, i, path);
                if (!e)
                        continue;
                check_keys(l, e, path, keys, "name, base, size");
                get_name(l, e, path, "name", false, &r->name);
                spans[i] = (struct span) { .name = r->name };
                spans[i].ok = get_range(l, e, path, &r->base, &r->end);
                spans[i].base = r->base;
                spans[i].end = r->end;
                if (!spans[i].ok || !windows_ok)
                        continue;
                for (size_t k = 0; k < d->n_windows && !inside; k++)
                        inside = d->windows[k].base <= r->base && r->end <= d->windows[k].end;
                if (!inside)
                        report(l, DIAG_ERROR, path, "reserved window %s is not inside any DMA window of the device",
                               format_range(r->base, r->end, buf));
        }
        check_unique(l, arr_path, spans, n);
        check_overlaps(l, arr_path, "reserved_windows", spans, n);
}

static void load_devices(struct loader *l, json_object *root, struct platform *p) {
        static const char *const keys[] = { "name",        "owner",           "dma_mask_bits", "dma_windows",
                                            "reserved_windows", "alignment", NULL };
        _cleanup_(xfreep) struct span *names = NULL;
        json_object *arr;
        size_t n = 0;

        arr = get_array(l, root, "", "devices", false, PLATFORM_MAX_ENTRIES, &n);
        if (!arr || n == 0)
                return;
        p->devices = alloc_array(l, n, sizeof(*p->devices));
        names = alloc_array(l, n, sizeof(*names));
        if (!p->devices || !names)
                return;
        p->n_devices = n;

        for (size_t i = 0; i < n; i++) {
                struct platform_device *d = &p->devices[i];
                _cleanup_(xfreep) char *path = path_index(l, "devices", i);
                bool mask_ok, windows_ok;
                uint64_t bits = 0;
                json_object *e;

                e = entry_object(l, arr, i, path);
                if (!e)
                        continue;
                check_keys(l, e, path, keys, "name, owner, dma_mask_bits, dma_windows, reserved_windows, alignment");
                get_name(l, e, path, "name", true, &d->name);
                names[i].name = d->name;
                get_name(l, e, path, "owner", true, &d->owner);
                mask_ok = get_uint(l, e, path, "dma_mask_bits", PLATFORM_MIN_DMA_BITS, PLATFORM_MAX_DMA_BITS, &bits);
                if (mask_ok) {
                        d->dma_mask_bits = (unsigned) bits;
                        d->dma_max = bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
                }

                d->alignment = 1;
                if (get_u64(l, e, path, "alignment", false, &d->alignment) && !num_is_pow2(d->alignment)) {
                        _cleanup_(xfreep) char *ap = path_key(l, path, "alignment");
                        char buf[NUM_FMT_MAX];
                        report(l, DIAG_ERROR, ap, "alignment %s is not a power of two",
                               num_format_size(d->alignment, buf));
                }

                windows_ok = load_windows(l, e, path, d, mask_ok);
                load_reserved_windows(l, e, path, d, windows_ok);
        }
        check_unique(l, "devices", names, n);
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

/* Index of the first range with end > addr in a sorted list of disjoint ranges. */
static size_t ranges_first_ending_after(const struct platform_range *r, size_t n, uint64_t addr) {
        size_t lo = 0, hi = n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (r[mid].end <= addr)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static size_t pools_first_ending_after(const struct platform *p, uint64_t addr) {
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

/*
 * The platform's reserved ranges and the device's reserved windows as one sorted list of
 * disjoint, non-empty holes. Both lists are sorted once loaded, so merging them is enough
 * (the loader does this for every device); a hand-built platform that is not gets sorted.
 */
static int collect_holes(const struct platform *p, const struct platform_device *d, struct platform_range **ret,
                         size_t *ret_n) {
        _cleanup_(xfreep) struct platform_range *holes = NULL;
        size_t total = p->n_reserved + d->n_reserved_windows, n = 0, i = 0, j = 0;
        bool sorted = true;

        if (total == 0) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        holes = calloc(total, sizeof(*holes));
        if (!holes)
                return -ENOMEM;
        while (i < p->n_reserved || j < d->n_reserved_windows) {
                const struct platform_range *r;

                if (j == d->n_reserved_windows ||
                    (i < p->n_reserved && p->reserved[i].base <= d->reserved_windows[j].base))
                        r = &p->reserved[i++];
                else
                        r = &d->reserved_windows[j++];
                sorted = sorted && (n == 0 || holes[n - 1].base <= r->base);
                holes[n++] = (struct platform_range) { .base = r->base, .end = r->end };
        }
        if (!sorted)
                qsort(holes, n, sizeof(*holes), range_compare);

        /* Reserved ranges may nest, and may touch or cover reserved windows. */
        n = 0;
        for (size_t k = 0; k < total; k++) {
                if (holes[k].end <= holes[k].base)
                        continue;
                if (n > 0 && holes[k].base <= holes[n - 1].end) {
                        if (holes[k].end > holes[n - 1].end)
                                holes[n - 1].end = holes[k].end;
                } else
                        holes[n++] = holes[k];
        }
        *ret = TAKE_PTR(holes);
        *ret_n = n;
        return 0;
}

/* [base, end) of pool minus the holes, stored at out unless it is NULL; returns the number of pieces. */
static size_t carve(uint64_t base, uint64_t end, const struct platform_pool *pool, const struct platform_range *holes,
                    size_t n_holes, struct platform_span *out) {
        size_t n = 0;

        for (size_t i = ranges_first_ending_after(holes, n_holes, base); i < n_holes && holes[i].base < end; i++) {
                if (holes[i].base > base) {
                        if (out)
                                out[n] = (struct platform_span) { .base = base, .end = holes[i].base, .pool = pool };
                        n++;
                }
                base = holes[i].end;
                if (base >= end)
                        return n;
        }
        if (out)
                out[n] = (struct platform_span) { .base = base, .end = end, .pool = pool };
        return n + 1;
}

/* Every pool ∩ window ∩ mask, minus the holes: counted, and stored at out unless it is NULL. */
static size_t device_pieces(const struct platform *p, const struct platform_device *d,
                            const struct platform_range *holes, size_t n_holes, struct platform_span *out) {
        /* The exclusive end of the DMA reach; with a 64-bit mask the last byte is not representable. */
        uint64_t limit = d->dma_max == UINT64_MAX ? UINT64_MAX : d->dma_max + 1;
        const struct platform_range dflt = { .base = 0, .end = limit };
        const struct platform_range *windows = d->n_windows > 0 ? d->windows : &dflt;
        size_t n_windows = d->n_windows > 0 ? d->n_windows : 1, n = 0;

        for (size_t w = 0; w < n_windows; w++) {
                uint64_t lo = windows[w].base, hi = windows[w].end < limit ? windows[w].end : limit;

                if (lo >= hi)
                        continue;
                for (size_t k = pools_first_ending_after(p, lo); k < p->n_pools && p->pools[k].base < hi; k++) {
                        const struct platform_pool *pool = &p->pools[k];
                        uint64_t from = lo > pool->base ? lo : pool->base, to = hi < pool->end ? hi : pool->end;

                        if (from < to)
                                n += carve(from, to, pool, holes, n_holes, out ? out + n : NULL);
                }
        }
        return n;
}

static int span_compare(const void *a, const void *b) {
        const struct platform_span *x = a, *y = b;

        return x->base < y->base ? -1 : x->base > y->base;
}

int platform_device_spans(const struct platform *p, const struct platform_device *d, struct platform_span **ret,
                          size_t *ret_n) {
        _cleanup_(xfreep) struct platform_range *holes = NULL;
        _cleanup_(xfreep) struct platform_span *spans = NULL;
        size_t n_holes, n;
        int r;

        if (!p || !d || !ret || !ret_n)
                return -EINVAL;
        r = collect_holes(p, d, &holes, &n_holes);
        if (r < 0)
                return r;

        /* Count first, then fill an array of the exact size. */
        n = device_pieces(p, d, holes, n_holes, NULL);
        if (n > 0) {
                spans = calloc(n, sizeof(*spans));
                if (!spans)
                        return -ENOMEM;
                device_pieces(p, d, holes, n_holes, spans);
                /* Already in order for sorted, disjoint windows; a hand-built device's may overlap. */
                for (size_t i = 1; i < n; i++)
                        if (spans[i - 1].base > spans[i].base) {
                                qsort(spans, n, sizeof(*spans), span_compare);
                                break;
                        }
        }
        *ret = TAKE_PTR(spans);
        *ret_n = n;
        return 0;
}

/*
 * Warns about every device none of whose spans holds a granule at the alignment the
 * placer would use (max of granule and device alignment). Needs the platform sorted.
 */
static void check_reachability(struct loader *l, const struct platform *p) {
        for (size_t i = 0; i < p->n_devices; i++) {
                const struct platform_device *d = &p->devices[i];
                _cleanup_(xfreep) struct platform_span *spans = NULL;
                _cleanup_(xfreep) char *path = NULL;
                bool reaches = false;
                size_t n;

                /* The platform is valid here, so only allocation can fail. */
                if (platform_device_spans(p, d, &spans, &n) < 0) {
                        l->oom = true;
                        return;
                }
                for (size_t k = 0; k < n && !reaches; k++) {
                        const struct platform_pool *pool = spans[k].pool;
                        uint64_t align = pool->granule > d->alignment ? pool->granule : d->alignment, start;

                        reaches = num_align_up(spans[k].base, align, &start) >= 0 && start < spans[k].end &&
                                  spans[k].end - start >= pool->granule;
                }
                if (reaches)
                        continue;
                path = path_index(l, "devices", i);
                report(l, DIAG_WARNING, path,
                       "device \"%s\" can reach no pool: no pool has a free granule inside its DMA windows, "
                       "below its DMA mask and clear of reserved ranges and reserved windows",
                       d->name);
        }
}

int platform_load_json(json_object *root, struct platform **ret, struct diag_list *diags) {
        static const char *const keys[] = { "$schema", "memory", "reserved", "pools", "devices", NULL };
        _cleanup_(platform_freep) struct platform *p = NULL;
        _cleanup_(loader_done) struct loader l = { .diags = diags };
        const char *schema;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;

        if (!json_object_is_type(root, json_type_object)) {
                report(&l, DIAG_ERROR, "", "expected an object, got %s", type_desc(root));
                return l.oom ? -ENOMEM : -EINVAL;
        }
        check_keys(&l, root, "", keys, "$schema, memory, reserved, pools, devices");
        get_string(&l, root, "", "$schema", false, &schema);

        load_banks(&l, root, p);
        load_reserved(&l, root, p);
        load_pools(&l, root, p);
        load_devices(&l, root, p);
        if (l.oom)
                return -ENOMEM;
        if (l.n_errors > 0)
                return -EINVAL;

        platform_sort(p);
        /* Only meaningful for a platform without errors, hence after the verdict. */
        check_reachability(&l, p);
        if (l.oom)
                return -ENOMEM;

        *ret = TAKE_PTR(p);
        return 0;
}

static void offset_position(const char *text, size_t offset, size_t *ret_line, size_t *ret_column) {
        size_t line = 1, column = 1;

        for (size_t i = 0; i < offset; i++) {
                if (text[i] == '\n') {
                        line++;
                        column = 1;
                } else
                        column++;
        }
        *ret_line = line;
        *ret_column = column;
}

_printf_(4, 5) static void report_at_offset(struct loader *l, const char *text, size_t offset, const char *fmt, ...) {
        _cleanup_(xfreep) char *msg = NULL;
        size_t line, column;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0) {
                msg = NULL;
                l->oom = true;
                return;
        }
        offset_position(text, offset, &line, &column);
        report(l, DIAG_ERROR, "", "JSON syntax error at line %zu, column %zu: %s", line, column, msg);
}

static bool integer_fits(const char *digits, size_t n, bool negative) {
        const char *limit = negative ? "9223372036854775808" : "18446744073709551615";
        size_t limit_len = strlen(limit);

        if (n != limit_len)
                return n < limit_len;
        return memcmp(digits, limit, n) <= 0;
}

/*
 * json-c clamps integer literals beyond 64 bits to INT64_MIN/UINT64_MAX without an error,
 * which would turn a typo into a huge but valid-looking size. Finds such a literal in
 * text that json-c already accepted (so the lexing can stay simple).
 */
static bool find_oversized_integer(const char *text, size_t len, size_t *ret_offset) {
        bool in_string = false;

        for (size_t i = 0; i < len; i++) {
                char c = text[i];
                size_t start, digits;
                bool negative;

                if (in_string) {
                        if (c == '\\')
                                i++;
                        else if (c == '"')
                                in_string = false;
                        continue;
                }
                if (c == '"') {
                        in_string = true;
                        continue;
                }
                if (c != '-' && !(c >= '0' && c <= '9'))
                        continue;

                start = i;
                negative = c == '-';
                if (negative)
                        i++;
                digits = i;
                while (i < len && text[i] >= '0' && text[i] <= '9')
                        i++;
                if ((i >= len || (text[i] != '.' && text[i] != 'e' && text[i] != 'E')) &&
                    !integer_fits(text + digits, i - digits, negative)) {
                        *ret_offset = start;
                        return true;
                }
                while (i < len && strchr("0123456789.eE+-", text[i]))
                        i++;
                i--;
        }
        return false;
}

static void json_tokener_freep(struct json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

static void json_object_putp(json_object **o) {
        if (*o)
                json_object_put(*o);
}

/* text[len] must be a NUL byte. */
static int load_buffer(const char *text, size_t len, struct platform **ret, struct diag_list *diags) {
        _cleanup_(json_tokener_freep) struct json_tokener *tok = NULL;
        _cleanup_(json_object_putp) json_object *root = NULL;
        struct loader l = { .diags = diags };
        enum json_tokener_error jerr;
        const char *nul;
        size_t end;

        if (len > PLATFORM_MAX_FILE_SIZE) {
                char buf[NUM_FMT_MAX];
                report(&l, DIAG_ERROR, "", "input is %zu bytes, more than the limit of %s", len,
                       num_format_size(PLATFORM_MAX_FILE_SIZE, buf));
                return l.oom ? -ENOMEM : -EFBIG;
        }

        nul = memchr(text, 0, len);
        if (nul) {
                report_at_offset(&l, text, (size_t) (nul - text), "NUL byte in input");
                return l.oom ? -ENOMEM : -EINVAL;
        }

        tok = json_tokener_new_ex(PLATFORM_JSON_DEPTH);
        if (!tok)
                return -ENOMEM;
        /* Strict: no comments, single quotes or trailing commas, and nothing but white space
         * after the document, so the loader accepts what the JSON Schema tools accept. */
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        /* Passing the terminating NUL tells json-c the input ends there. */
        root = json_tokener_parse_ex(tok, text, (int) len + 1);
        jerr = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        if (end > len)
                end = len;
        if (jerr != json_tokener_success) {
                report_at_offset(&l, text, end, "%s",
                                 jerr == json_tokener_continue ? "unexpected end of input"
                                                               : json_tokener_error_desc(jerr));
                return l.oom ? -ENOMEM : -EINVAL;
        }
        if (find_oversized_integer(text, len, &end)) {
                report_at_offset(&l, text, end, "integer does not fit in 64 bits");
                return l.oom ? -ENOMEM : -EINVAL;
        }

        return platform_load_json(root, ret, diags);
}

int platform_load_string(const char *text, struct platform **ret, struct diag_list *diags) {
        if (!text)
                return -EINVAL;
        return load_buffer(text, strlen(text), ret, diags);
}

static int file_too_big(struct diag_list *diags) {
        char buf[NUM_FMT_MAX];

        if (diag_add(diags, DIAG_ERROR, "", "file is larger than the limit of %s",
                     num_format_size(PLATFORM_MAX_FILE_SIZE, buf)) < 0)
                return -ENOMEM;
        return -EFBIG;
}

int platform_load_file(const char *path, struct platform **ret, struct diag_list *diags) {
        _cleanup_(closep) int fd = -EBADF;
        _cleanup_(xfreep) char *buf = NULL;
        size_t len = 0, cap;
        struct stat st;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (S_ISREG(st.st_mode) && (uint64_t) st.st_size > PLATFORM_MAX_FILE_SIZE)
                return file_too_big(diags);

        /* Read one byte past the limit so that a growing file or a pipe is caught too. */
        cap = S_ISREG(st.st_mode) ? (size_t) st.st_size + 2 : 64 * 1024;
        buf = malloc(cap);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n;

                if (len + 1 == cap) {
                        size_t ncap = cap * 2 > PLATFORM_MAX_FILE_SIZE + 2 ? PLATFORM_MAX_FILE_SIZE + 2 : cap * 2;
                        char *nbuf;

                        if (ncap <= cap)
                                return file_too_big(diags);
                        nbuf = realloc(buf, ncap);
                        if (!nbuf)
                                return -ENOMEM;
                        buf = nbuf;
                        cap = ncap;
                }
                n = read(fd, buf + len, cap - 1 - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                if (len > PLATFORM_MAX_FILE_SIZE)
                        return file_too_big(diags);
        }
        buf[len] = '\0';
        return load_buffer(buf, len, ret, diags);
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

const struct platform_pool *platform_pool_at(const struct platform *p, uint64_t addr) {
        size_t k;

        if (!p)
                return NULL;
        k = pools_first_ending_after(p, addr);
        if (k < p->n_pools && p->pools[k].base <= addr)
                return &p->pools[k];
        return NULL;
}
