/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Params checked against a method's parameter list before its handler runs. Structure
 * (unknown and missing members, wrong types) is -32602 with data.member naming the member
 * ("peers[0].access"); a well-typed value out of its bounds is a brokerd error:
 * invalid_request, or limit_exceeded for lengths and counts. Nothing is kept on failure.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "daemon/methods-internal.h"
#include "util/names.h"
#include "util/num.h"

#define PATH_MAX_LEN 160

static int parse_members(const struct param *list, struct json_object *obj, void *dest, const char *prefix,
                         struct rpc_error *err);

static void *field(void *dest, size_t offset) {
        return (char *) dest + offset;
}

static int parse_string(const struct param *p, struct json_object *v, const char *path, const char **ret,
                        struct rpc_error *err) {
        size_t len, max = p->type == PARAM_NAME ? NAME_MAX_LEN : p->max;
        const char *s;

        if (!json_object_is_type(v, json_type_string))
                return invalid_params(err, path, "expected a string");
        s = json_object_get_string(v);
        len = (size_t) json_object_get_string_len(v);
        if (strlen(s) != len)
                return fail_with_code(err, BROKER_E_INVALID, "%.64s contains a NUL byte", path);
        if (len > max)
                return fail_with_code(err, BROKER_E_LIMIT, "%.64s is longer than %zu bytes", path, max);
        if (p->type == PARAM_NAME && !name_is_valid(s))
                return fail_with_code(err, BROKER_E_INVALID, "%.64s is not a valid name", path);
        *ret = s;
        return 0;
}

static int parse_enum(const struct param *p, struct json_object *v, const char *path, void *ret,
                      struct rpc_error *err) {
        const char *s = json_object_get_string(v);

        if (!json_object_is_type(v, json_type_string) || strlen(s) != (size_t) json_object_get_string_len(v) ||
            p->parse(s, ret) < 0)
                return invalid_params(err, path, "expected %s", p->expect);
        return 0;
}

/*
 * A JSON integer up to 2^64-1 (json-c keeps those above INT64_MAX as uint64; a negative one
 * is refused), or a string num_parse_u64() takes. Fractions, booleans and the rest are -32602.
 */
static int parse_u64(const struct param *p, struct json_object *v, const char *path, uint64_t *ret,
                     struct rpc_error *err) {
        uint64_t x;

        if (num_from_json(v, &x) < 0)
                return invalid_params(err, path,
                                      "expected a non-negative integer, or a string such as \"2MiB\" or \"0x1000\"");
        if (x < p->min || x > p->max)
                return fail_with_code(err, BROKER_E_INVALID, "%.64s %" PRIu64 " is out of range %" PRIu64 "..%" PRIu64,
                                    path, x, p->min, p->max);
        *ret = x;
        return 0;
}

static int check_array(const struct param *p, struct json_object *v, const char *path, size_t *ret_n,
                       struct rpc_error *err) {
        size_t n;

        if (!json_object_is_type(v, json_type_array))
                return invalid_params(err, path, "expected an array");
        n = json_object_array_length(v);
        if (n > p->max)
                return fail_with_code(err, BROKER_E_LIMIT, "%zu %.64s; at most %" PRIu64, n, path, p->max);
        *ret_n = n;
        return 0;
}

static int parse_array(const struct param *p, struct json_object *v, const char *path, void *dest,
                       struct rpc_error *err) {
        size_t n = 0;
        int q;

        q = check_array(p, v, path, &n, err);
        for (size_t i = 0; q >= 0 && i < n; i++) {
                struct json_object *item = json_object_array_get_idx(v, i);
                char ipath[PATH_MAX_LEN];

                snprintf(ipath, sizeof(ipath), "%.64s[%zu]", path, i);
                if (p->type == PARAM_NAMES) {
                        const struct param name = { .type = PARAM_NAME };
                        q = parse_string(&name, item, ipath, (const char **) field(dest, p->offset) + i, err);
                } else if (!json_object_is_type(item, json_type_object))
                        q = invalid_params(err, ipath, "expected an object");
                else
                        q = parse_members(p->members, item, field(dest, p->offset + i * p->item_size), ipath, err);
        }
        if (q < 0)
                return q;
        *(size_t *) field(dest, p->count_offset) = n;
        return 0;
}

static int parse_value(const struct param *p, struct json_object *v, const char *path, void *dest,
                       struct rpc_error *err) {
        void *at = field(dest, p->offset);

        switch (p->type) {
        case PARAM_STRING:
        case PARAM_NAME:
                return parse_string(p, v, path, at, err);
        case PARAM_ENUM:
                return parse_enum(p, v, path, at, err);
        case PARAM_U64:
                return parse_u64(p, v, path, at, err);
        case PARAM_BOOL:
                if (!json_object_is_type(v, json_type_boolean))
                        return invalid_params(err, path, "expected true or false");
                *(bool *) at = json_object_get_boolean(v);
                return 0;
        case PARAM_OBJECTS:
        case PARAM_NAMES:
                return parse_array(p, v, path, dest, err);
        case _PARAM_TYPE_MAX:
                break;
        }
        return internal_error(err, -EINVAL);
}

static void set_default(const struct param *p, void *dest) {
        if (p->type == PARAM_U64)
                *(uint64_t *) field(dest, p->offset) = p->def;
        else if (p->type == PARAM_ENUM)
                *(int *) field(dest, p->offset) = (int) p->def; /* the table checks enums are int-sized */
}

/* "prefix.name" in buf (cut to fit), or name itself at the top level: no formatting per member. */
static const char *path_join(char buf[static PATH_MAX_LEN], const char *prefix, const char *name) {
        size_t a, b;

        if (!prefix[0])
                return name;
        a = strnlen(prefix, PATH_MAX_LEN - 2);
        b = strnlen(name, PATH_MAX_LEN - 2 - a);
        memcpy(buf, prefix, a);
        buf[a] = '.';
        memcpy(buf + a + 1, name, b);
        buf[a + 1 + b] = '\0';
        return buf;
}

static const struct param *param_find(const struct param *list, const char *name) {
        for (const struct param *p = list; p && p->name; p++)
                if (strcmp(p->name, name) == 0)
                        return p;
        return NULL;
}

static int parse_members(const struct param *list, struct json_object *obj, void *dest, const char *prefix,
                         struct rpc_error *err) {
        char path[PATH_MAX_LEN];
        int q;

        /* Unknown members first: a misspelt optional member must not pass as absent. */
        if (obj) {
                json_object_object_foreach(obj, key, val) {
                        (void) val;
                        if (param_find(list, key))
                                continue;
                        snprintf(path, sizeof(path), "%s%s%.64s", prefix, prefix[0] ? "." : "", key);
                        return invalid_params(err, path, "unknown member");
                }
        }
        for (const struct param *p = list; p && p->name; p++) {
                struct json_object *v = member_get(obj, p->name);
                const char *path_of = path_join(path, prefix, p->name);

                if (!v) {
                        if (p->required)
                                return invalid_params(err, path_of, "missing");
                        set_default(p, dest);
                        continue;
                }
                q = parse_value(p, v, path_of, dest, err);
                if (q < 0)
                        return q;
        }
        return 0;
}

int params_parse(const struct param *list, struct json_object *params, void *args, struct rpc_error *err) {
        /* Absent params are {}. */
        if (params && !json_object_is_type(params, json_type_object))
                return invalid_params(err, "params", "expected an object");
        return parse_members(list, params, args, "", err);
}

bool call_has(const struct method_call *call, const char *member) {
        return member_get(call->params, member) != NULL;
}
