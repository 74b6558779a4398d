/* SPDX-License-Identifier: Apache-2.0 */
/* The typed getters of json-load.h: one wording for every loader's diagnostics. */
#include "json-load.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "names.h"
#include "num.h"

#define NUMBER_EXPECTED "expected a 64-bit number: integer, \"0x…\" hex, or with a KiB/MiB/GiB/TiB suffix"
#define NAME_EXPECTED "expected a name: 1..128 characters of [A-Za-z0-9_.:+-], not starting with '.' or '-'"
/* Bounds the "(allowed: …)" and "(expected …)" lists of a message. */
#define LIST_MAX 512

static const char *const type_names[] = {
        [json_type_null] = "null",
        [json_type_boolean] = "a boolean",
        [json_type_double] = "a fractional number",
        [json_type_int] = "an integer",
        [json_type_object] = "an object",
        [json_type_array] = "an array",
        [json_type_string] = "a string",
};
_Static_assert(ELEMENTSOF(type_names) == json_type_string + 1, "every json_type has a name");

static const char *type_name(enum json_type type) {
        return (unsigned) type < ELEMENTSOF(type_names) ? type_names[type] : "an unknown value";
}

const char *json_type_describe(json_object *o) {
        return type_name(json_object_get_type(o));
}

const char *json_value_text(json_object *o) {
        return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE) ?: "?";
}

bool json_expect_type(struct json_loader *l, json_object *v, const char *path, enum json_type type) {
        if (json_object_is_type(v, type))
                return true;
        json_loader_error(l, path, "expected %s, got %s", type_name(type), json_type_describe(v));
        return false;
}

/* "a, b, c" or, with quotes and a last word, "\"a\", \"b\" or \"c\"", cut short at size. */
static void format_list(char *buf, size_t size, const char *const *items, size_t n, bool quote, const char *last) {
        size_t k = 0, shown = 0, total = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < n; i++)
                total += items[i] != NULL;
        for (size_t i = 0; i < n && k < size; i++) {
                const char *sep;
                int w;

                if (!items[i])
                        continue;
                sep = shown == 0 ? "" : (last && shown == total - 1) ? last : ", ";
                w = snprintf(buf + k, size - k, quote ? "%s\"%s\"" : "%s%s", sep, items[i]);
                if (w < 0)
                        return;
                k += (size_t) w;
                shown++;
        }
}

void json_check_members(struct json_loader *l, json_object *obj, const char *path, const char *const *keys) {
        char allowed[LIST_MAX];
        size_t n = 0;

        while (keys[n])
                n++;
        format_list(allowed, sizeof(allowed), keys, n, false, NULL);
        json_object_object_foreach(obj, key, value) {
                bool known = false;

                (void) value;
                for (size_t i = 0; i < n && !known; i++)
                        known = strcmp(key, keys[i]) == 0;
                if (!known) {
                        _cleanup_(xfreep) char *p = json_loader_path_key(l, path, key);
                        json_loader_error(l, p, "unknown key (allowed: %s)", allowed);
                }
        }
}

bool json_get_value(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                    json_object **ret) {
        _cleanup_(xfreep) char *p = NULL;

        if (!key) {
                *ret = obj;
                return true;
        }
        if (json_object_object_get_ex(obj, key, ret))
                return true;
        if (!(flags & JSON_REQUIRED))
                return false;
        if (l->missing_at_parent) {
                json_loader_error(l, path, "missing required key \"%s\"", key);
                return false;
        }
        p = json_loader_path_key(l, path, key);
        json_loader_error(l, p, "missing required key \"%s\"", key);
        return false;
}

/* The value and its path (a copy, or NULL on allocation failure), or false as json_get_value(). */
static bool field(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                  json_object **ret, char **ret_path) {
        if (!json_get_value(l, obj, path, key, flags, ret))
                return false;
        *ret_path = key ? json_loader_path_key(l, path, key) : json_loader_strdup(l, path ?: "");
        return true;
}

json_object *json_get_object(struct json_loader *l, json_object *obj, const char *path, const char *key,
                             unsigned flags, const char *const *keys) {
        _cleanup_(xfreep) char *p = NULL;
        json_object *v;

        if (!field(l, obj, path, key, flags, &v, &p) || !json_expect_type(l, v, p, json_type_object))
                return NULL;
        if (keys)
                json_check_members(l, v, p, keys);
        return v;
}

json_object *json_get_array(struct json_loader *l, json_object *obj, const char *path, const char *key,
                            unsigned flags, size_t max, size_t *ret_n) {
        _cleanup_(xfreep) char *p = NULL;
        json_object *v;
        size_t n;

        if (!field(l, obj, path, key, flags, &v, &p) || !json_expect_type(l, v, p, json_type_array))
                return NULL;
        n = json_object_array_length(v);
        if (n > max) {
                json_loader_error(l, p, "too many entries: %zu (at most %zu)", n, max);
                return NULL;
        }
        *ret_n = n;
        return v;
}

/* The string of v, which is one; false (reported) if it holds a NUL or is longer than max_len. */
static bool string_ok(struct json_loader *l, json_object *v, const char *path, size_t max_len, const char **ret) {
        const char *s = json_object_get_string(v);
        size_t len = (size_t) json_object_get_string_len(v);

        /* JSON may spell a NUL byte as \u0000; C would silently cut the string there. */
        if (strlen(s) != len) {
                json_loader_error(l, path,
                                  "contains a NUL character at byte %zu: strings must not contain a NUL character",
                                  strlen(s));
                return false;
        }
        if (len > max_len) {
                json_loader_error(l, path, "too long: %zu bytes (at most %zu)", len, max_len);
                return false;
        }
        *ret = s;
        return true;
}

bool json_get_string(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                     size_t max_len, const char **ret) {
        _cleanup_(xfreep) char *p = NULL;
        json_object *v;

        return field(l, obj, path, key, flags, &v, &p) && json_expect_type(l, v, p, json_type_string) &&
               string_ok(l, v, p, max_len, ret);
}

bool json_get_name(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                   char **ret) {
        _cleanup_(xfreep) char *p = NULL;
        json_object *v;
        const char *s;

        if (!field(l, obj, path, key, flags, &v, &p) || !json_expect_type(l, v, p, json_type_string) ||
            !string_ok(l, v, p, SIZE_MAX, &s))
                return false;
        if (!name_is_valid(s) && !((flags & JSON_ALLOW_STAR) && strcmp(s, "*") == 0)) {
                json_loader_error(l, p, "not a valid name: " NAME_EXPECTED "%s (got %.*s)",
                                  flags & JSON_ALLOW_STAR ? ", or \"*\"" : "", JSON_QUOTE_MAX, json_value_text(v));
                return false;
        }
        *ret = json_loader_strdup(l, s);
        return *ret != NULL;
}

bool json_get_u64(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                  uint64_t *ret) {
        _cleanup_(xfreep) char *p = NULL;
        const char *why, *s;
        json_object *v;
        int r;

        if (!field(l, obj, path, key, flags, &v, &p))
                return false;
        if (json_object_is_type(v, json_type_string) && !string_ok(l, v, p, SIZE_MAX, &s))
                return false;
        r = num_from_json(v, ret);
        if (r >= 0)
                return true;
        if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_string))
                why = "expected a non-negative integer or a string";
        else if (json_object_is_type(v, json_type_int))
                why = "must not be negative";
        else if (r == -ERANGE)
                why = "does not fit in 64 bits";
        else
                why = "malformed size";
        json_loader_error(l, p, "%s: " NUMBER_EXPECTED " (got %.*s)", why, JSON_QUOTE_MAX, json_value_text(v));
        return false;
}

bool json_get_uint(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                   uint64_t min, uint64_t max, const char *expected, uint64_t *ret) {
        _cleanup_(xfreep) char *p = NULL;
        json_object *v;
        int64_t i;

        if (!field(l, obj, path, key, flags, &v, &p))
                return false;
        if (json_object_is_type(v, json_type_int)) {
                /* json-c keeps integers past INT64_MAX as uint64; the text was checked for 64 bits. */
                uint64_t u = json_object_get_uint64(v);

                i = json_object_get_int64(v);
                if (i >= 0 && u >= min && u <= max) {
                        *ret = u;
                        return true;
                }
        }
        if (expected)
                json_loader_error(l, p, "expected %s (got %.*s)", expected, JSON_QUOTE_MAX, json_value_text(v));
        else
                json_loader_error(l, p, "expected an integer %" PRIu64 "..%" PRIu64 " (got %.*s)", min, max,
                                  JSON_QUOTE_MAX, json_value_text(v));
        return false;
}

bool json_get_bool(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                   bool *ret) {
        _cleanup_(xfreep) char *p = NULL;
        json_object *v;

        if (!field(l, obj, path, key, flags, &v, &p))
                return false;
        if (!json_object_is_type(v, json_type_boolean)) {
                json_loader_error(l, p, "expected true or false, got %s", json_type_describe(v));
                return false;
        }
        *ret = json_object_get_boolean(v);
        return true;
}

bool json_get_enum(struct json_loader *l, json_object *obj, const char *path, const char *key, unsigned flags,
                   const char *what, const char *const *table, size_t n, unsigned *ret) {
        _cleanup_(xfreep) char *p = NULL;
        char expected[LIST_MAX];
        const char *s;
        json_object *v;
        size_t len;

        if (!field(l, obj, path, key, flags, &v, &p))
                return false;
        format_list(expected, sizeof(expected), table, n, true, " or ");
        if (!json_object_is_type(v, json_type_string)) {
                json_loader_error(l, p, "expected a string, got %s (expected %s)", json_type_describe(v), expected);
                return false;
        }
        s = json_object_get_string(v);
        len = (size_t) json_object_get_string_len(v);
        /* A NUL inside makes it no entry of the table, whatever strcmp() would say. */
        for (size_t i = 0; i < n && strlen(s) == len; i++)
                if (table[i] && strcmp(s, table[i]) == 0) {
                        *ret = (unsigned) i;
                        return true;
                }
        json_loader_error(l, p, "unknown %s %.*s (expected %s)", what, JSON_QUOTE_MAX, json_value_text(v), expected);
        return false;
}
