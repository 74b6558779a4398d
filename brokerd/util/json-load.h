/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Loading JSON documents that people write (platform, policy): parse with bounds, then read
 * the tree with typed getters that report every problem to a diag_list with its JSON path
 * ("pools[2].base"), so one pass finds them all.
 *
 * Parsing: json_load_file()/json_load_string() refuse input above limits->max_size
 * (-EFBIG), NUL bytes, anything but strict JSON (json-c's strict mode, then
 * util/json-strict.h: invalid UTF-8, lone surrogate escapes, NaN, single quotes, integer
 * literals past 64 bits, …) and nesting deeper than limits->max_depth, each as one error at
 * path "" with its line and column. They return 0 with *ret set, or -errno with *ret untouched.
 *
 * Getters: (l, obj, path, key, flags, ..., ret) read member key of the object obj, whose
 * path is path; with key NULL, obj itself is the value and path its path. They return true
 * with *ret set for a present, valid value, and false for an absent optional one (silently)
 * or a missing or invalid one (reported). Allocation failures are sticky (l->oom), so a
 * loader checks json_loader_result() once at the end. No dependency beyond json-c and util.
 */
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "macro.h"

/* How much of an offending value a message quotes. */
#define JSON_QUOTE_MAX 64

struct json_load_limits {
        size_t max_size; /* bytes */
        int max_depth;   /* nesting of arrays and objects, as json-c counts it */
};

struct json_loader {
        struct diag_list *diags; /* may be NULL: errors are counted all the same */
        size_t n_errors;         /* only this load's, whatever diags held before */
        bool oom;
        /* Report a missing required member at its object's path, as JSON Schema does,
         * rather than at the member's own path. */
        bool missing_at_parent;
};

enum json_get_flags {
        JSON_OPTIONAL = 0,
        JSON_REQUIRED = 1 << 0,
        JSON_ALLOW_STAR = 1 << 1, /* json_get_name(): "*" is allowed too */
};

static inline void json_object_unrefp(json_object **o) {
        if (*o)
                json_object_put(*o);
}

int json_load_string(const char *text, const struct json_load_limits *limits, struct diag_list *diags,
                     json_object **ret);
/* An I/O error is reported too, as "cannot open: …" or "cannot read: …" at path "". */
int json_load_file(const char *path, const struct json_load_limits *limits, struct diag_list *diags,
                   json_object **ret);
/*
 * The whole file, NUL-terminated, read without trusting its claimed size: -EFBIG beyond
 * max bytes (a pipe or a growing file included). *ret_len may be NULL.
 */
int json_read_file_bounded(const char *path, size_t max, char **ret, size_t *ret_len);

void json_loader_report(struct json_loader *l, enum diag_severity sev, const char *path, const char *fmt, ...)
        _printf_(4, 5);
#define json_loader_error(l, path, ...) json_loader_report((l), DIAG_ERROR, (path), __VA_ARGS__)
#define json_loader_warning(l, path, ...) json_loader_report((l), DIAG_WARNING, (path), __VA_ARGS__)
/* -ENOMEM after an allocation failure, -EINVAL after any error, else 0. */
int json_loader_result(const struct json_loader *l);
/* diag_path_key()/diag_path_index() whose failure is sticky; free the result. */
char *json_loader_path_key(struct json_loader *l, const char *parent, const char *key);
char *json_loader_path_index(struct json_loader *l, const char *parent, size_t index);
/* calloc() whose failure is sticky; NULL for n == 0 too. */
void *json_loader_alloc(struct json_loader *l, size_t n, size_t size);
char *json_loader_strdup(struct json_loader *l, const char *s);
/*
 * For each names[i], the index of the first earlier equal name, or SIZE_MAX; NULL names
 * (entries already reported as invalid) are skipped. O(n log n). Caller frees; NULL for
 * n == 0 or (sticky) on allocation failure.
 */
size_t *json_loader_find_duplicates(struct json_loader *l, const char *const *names, size_t n);

/* "an integer", "a string", …, for "expected X, got Y". */
const char *json_type_describe(json_object *o);
/* The value as escaped JSON text, safe to quote in a diagnostic line. */
const char *json_value_text(json_object *o);

/* "expected an object, got an array"; type names: json_type_describe() of that type. */
bool json_expect_type(struct json_loader *l, json_object *v, const char *path, enum json_type type);
/* Reports each member of obj not in keys (NULL-terminated) as "unknown key (allowed: …)". */
void json_check_members(struct json_loader *l, json_object *obj, const char *path, const char *const *keys);
/* The member (or obj itself with key NULL); a JSON null is a present member. */
bool json_get_value(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                    json_object **ret);

/* An object; with keys set, its unknown members are reported too (the object is still returned). */
json_object *json_get_object(struct json_loader *l, json_object *obj, const char *path, const char *key,
                             unsigned flags, const char *const *keys);
/* An array of at most max entries. */
json_object *json_get_array(struct json_loader *l, json_object *obj, const char *path, const char *key,
                            unsigned flags, size_t max, size_t *ret_n);
/* A string without NUL characters and of at most max_len bytes; *ret points into obj. */
bool json_get_string(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                     size_t max_len, const char **ret);
/* A name (util/names.h), or "*" with JSON_ALLOW_STAR; *ret is a copy, the caller frees it. */
bool json_get_name(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                   char **ret);
/* A 64-bit quantity as util/num.h spells it: integer, "0x…", "2MiB". */
bool json_get_u64(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                  uint64_t *ret);
/*
 * A plain JSON integer in [min, max]. expected says what is wanted in the message
 * ("expected <expected> (got …)"); NULL for "an integer <min>..<max>".
 */
bool json_get_uint(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                   uint64_t min, uint64_t max, const char *expected, uint64_t *ret);
bool json_get_bool(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                   bool *ret);
/*
 * A string from table (n entries indexed by the enum's values, NULL for gaps); *ret is its
 * index. what names the thing for "unknown <what> "x" (expected "a", "b" or "c")".
 */
bool json_get_enum(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                   const char *what, const char *const *table, size_t n, unsigned *ret);
