/* SPDX-License-Identifier: Apache-2.0 */
#include "policy/policy.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/macro.h"
#include "util/names.h"
#include "util/num.h"

#define POLICY_JSON_MAX_DEPTH 32
#define POLICY_USER_MAX 256
/* (uid_t) -1 means "no change" to chown() and friends, so it can name no agent. */
#define POLICY_UID_MAX UINT64_C(4294967294)
/* getpwnam_r() buffers grow up to this before a lookup is given up. */
#define POLICY_PWBUF_MAX (1024 * 1024)

/*
 * Counts errors itself: diags may be NULL, or may already hold problems found by
 * someone else, and neither may change whether this load succeeds.
 */
struct loader {
        struct diag_list *diags;
        size_t n_errors;
};

static int loader_add(struct loader *l, enum diag_severity sev, const char *path, const char *fmt, ...) _printf_(4, 5);

static int loader_add(struct loader *l, enum diag_severity sev, const char *path, const char *fmt, ...) {
        va_list ap;
        int r;

        if (sev == DIAG_ERROR)
                l->n_errors++;
        va_start(ap, fmt);
        r = diag_addv(l->diags, sev, path, fmt, ap);
        va_end(ap);
        return r;
}

#define loader_error(l, path, ...) loader_add((l), DIAG_ERROR, (path), __VA_ARGS__)
#define loader_warning(l, path, ...) loader_add((l), DIAG_WARNING, (path), __VA_ARGS__)

static bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

/*
 * The get_*() helpers below return 1 with *ret set, 0 when the problem was reported
 * (loading goes on so every problem is found in one pass), or -errno when loading must stop.
 */

static int get_object(struct loader *l, struct json_object *o, const char *path, const char *const *keys) {
        int r;

        if (!json_object_is_type(o, json_type_object))
                return loader_error(l, path, "expected an object");

        json_object_object_foreach(o, key, value) {
                _cleanup_(xfreep) char *p = NULL;
                bool known = false;

                (void) value;
                for (size_t i = 0; keys[i] && !known; i++)
                        known = streq(keys[i], key);
                if (known)
                        continue;
                p = diag_path_key(path, key);
                if (!p)
                        return -ENOMEM;
                r = loader_error(l, p, "unknown key");
                if (r < 0)
                        return r;
        }
        return 1;
}

static int get_array(struct loader *l, struct json_object *o, const char *path, size_t *ret) {
        size_t n = 0;

        if (!json_object_is_type(o, json_type_array))
                return loader_error(l, path, "expected an array");
        n = json_object_array_length(o);
        if (n > POLICY_MAX_ENTRIES)
                return loader_error(l, path, "too many entries: %zu, at most %d", n, POLICY_MAX_ENTRIES);
        *ret = n;
        return 1;
}

static int get_string(struct loader *l, struct json_object *o, const char *path, const char **ret) {
        const char *s = NULL;

        if (!json_object_is_type(o, json_type_string))
                return loader_error(l, path, "expected a string");
        s = json_object_get_string(o);
        /* "\u0000" is valid JSON; a C string would silently end there. */
        if (strlen(s) != (size_t) json_object_get_string_len(o))
                return loader_error(l, path, "contains a NUL character");
        *ret = s;
        return 1;
}

static int get_name(struct loader *l, struct json_object *o, const char *path, bool allow_star, const char **ret) {
        const char *s = NULL;
        int r;

        r = get_string(l, o, path, &s);
        if (r <= 0)
                return r;
        if (!(allow_star && streq(s, "*")) && !name_is_valid(s))
                return loader_error(l, path,
                                    "not a valid name: 1 to %d characters of A-Z a-z 0-9 _ . : + -, not starting with '.' or '-'%s",
                                    NAME_MAX_LEN, allow_star ? "; or \"*\"" : "");
        *ret = s;
        return 1;
}

static int get_size(struct loader *l, struct json_object *o, const char *path, uint64_t *ret) {
        const char *s = NULL;
        uint64_t v;
        int r;

        if (json_object_is_type(o, json_type_string)) {
                r = get_string(l, o, path, &s);
                if (r <= 0)
                        return r;
        } else if (!json_object_is_type(o, json_type_int))
                return loader_error(l, path, "expected a non-negative integer or a string such as \"64MiB\" or \"0x1000\"");

        r = num_from_json(o, &v);
        if (r == -ERANGE)
                return loader_error(l, path, json_object_is_type(o, json_type_int) ? "must not be negative" : "does not fit in 64 bits");
        if (r < 0)
                return loader_error(l, path,
                                    "malformed size: expected a decimal or 0x hex integer, optionally with a KiB, MiB, GiB, TiB, PiB or EiB suffix");
        *ret = v;
        return 1;
}

static int get_count(struct loader *l, struct json_object *o, const char *path, uint64_t *ret) {
        if (!json_object_is_type(o, json_type_int) || json_object_get_int64(o) < 0)
                return loader_error(l, path, "expected a non-negative integer");
        *ret = json_object_get_uint64(o);
        return 1;
}

static int get_bool(struct loader *l, struct json_object *o, const char *path, bool *ret) {
        if (!json_object_is_type(o, json_type_boolean))
                return loader_error(l, path, "expected true or false");
        *ret = json_object_get_boolean(o);
        return 1;
}

static int missing_key(struct loader *l, const char *path, const char *key) {
        return loader_error(l, path, "missing required key \"%s\"", key);
}

static int cmp_name_index(const void *a, const void *b, void *userdata) {
        char *const *names = userdata;
        size_t i = *(const size_t *) a, j = *(const size_t *) b;
        int c = strcmp(names[i], names[j]);

        if (c != 0)
                return c;
        return i < j ? -1 : i > j;
}

/*
 * *ret_first[i] is the index of the first earlier entry equal to names[i], or SIZE_MAX.
 * NULL names (entries that were already reported as invalid) are skipped. Sorting keeps
 * this O(n log n) for lists of up to POLICY_MAX_ENTRIES.
 */
static int find_duplicates(char *const *names, size_t n, size_t **ret_first) {
        _cleanup_(xfreep) size_t *order = NULL, *first = NULL;
        size_t m = 0;

        order = calloc(n ?: 1, sizeof(*order));
        first = calloc(n ?: 1, sizeof(*first));
        if (!order || !first)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                first[i] = SIZE_MAX;
                if (names[i])
                        order[m++] = i;
        }
        qsort_r(order, m, sizeof(*order), cmp_name_index, (void *) names);
        for (size_t k = 1, start = 0; k < m; k++) {
                if (streq(names[order[k]], names[order[start]]))
                        first[order[k]] = order[start];
                else
                        start = k;
        }
        *ret_first = TAKE_PTR(first);
        return 0;
}

/* A non-empty list of unique names; when sharer is set, it may not appear in the list. */
static int load_name_list(struct loader *l, struct json_object *o, const char *path, const char *what,
                          const char *sharer, char ***names, size_t *n_names) {
        _cleanup_(xfreep) size_t *first = NULL;
        size_t n = 0;
        int r;

        r = get_array(l, o, path, &n);
        if (r <= 0)
                return r;
        if (n == 0)
                return loader_error(l, path, "must list at least one %s", what);

        *names = calloc(n, sizeof(**names));
        if (!*names)
                return -ENOMEM;
        *n_names = n;

        for (size_t i = 0; i < n; i++) {
                _cleanup_(xfreep) char *p = diag_path_index(path, i);
                const char *s = NULL;

                if (!p)
                        return -ENOMEM;
                r = get_name(l, json_object_array_get_idx(o, i), p, false, &s);
                if (r < 0)
                        return r;
                if (r == 0)
                        continue;
                if (sharer && streq(s, sharer)) {
                        r = loader_error(l, p, "%s is the sharer; a domain cannot be a peer of its own region", s);
                        if (r < 0)
                                return r;
                        continue;
                }
                (*names)[i] = strdup(s);
                if (!(*names)[i])
                        return -ENOMEM;
        }

        r = find_duplicates(*names, n, &first);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                _cleanup_(xfreep) char *p = NULL;

                if (first[i] == SIZE_MAX)
                        continue;
                p = diag_path_index(path, i);
                if (!p)
                        return -ENOMEM;
                r = loader_error(l, p, "%s %s is already listed at [%zu]", what, (*names)[i], first[i]);
                if (r < 0)
                        return r;
        }
        return 1;
}

/* 0 with *ret set, -ESRCH when there is no such user, other -errno on lookup failure. */
static int resolve_user(const char *name, uid_t *ret) {
        long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
        size_t size = hint > 0 && hint <= POLICY_PWBUF_MAX ? (size_t) hint : 4096;

        for (;;) {
                _cleanup_(xfreep) char *buf = malloc(size);
                struct passwd pw, *result = NULL;
                int r;

                if (!buf)
                        return -ENOMEM;
                r = getpwnam_r(name, &pw, buf, size, &result);
                if (r == 0 && result) {
                        *ret = result->pw_uid;
                        return 0;
                }
                /* These are how NSS modules say "no such user" (see getpwnam_r(3)). */
                if (r == 0 || r == ENOENT || r == ESRCH || r == EBADF || r == EPERM)
                        return -ESRCH;
                if (r != ERANGE)
                        return -r;
                if (size >= POLICY_PWBUF_MAX)
                        return -ERANGE;
                size *= 2;
        }
}

static int load_user(struct loader *l, struct json_object *o, const char *path, struct policy_agent *a) {
        const char *s = NULL;
        size_t len;
        uid_t uid = 0;
        int r;

        r = get_string(l, o, path, &s);
        if (r <= 0)
                return r;
        len = strlen(s);
        if (len == 0 || len > POLICY_USER_MAX)
                return loader_error(l, path, "expected a user name of 1 to %d characters", POLICY_USER_MAX);
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return loader_error(l, path, "user name contains a control character");

        r = resolve_user(s, &uid);
        if (r == -ENOMEM)
                return r;
        if (r == -ESRCH)
                return loader_error(l, path, "unknown user \"%s\"", s);
        if (r < 0)
                return loader_error(l, path, "cannot look up user \"%s\": %s", s, strerror(-r));

        a->user = strdup(s);
        if (!a->user)
                return -ENOMEM;
        a->uid = uid;
        return 1;
}

static int load_uid(struct loader *l, struct json_object *o, const char *path, struct policy_agent *a) {
        /* json-c keeps values above INT64_MAX as uint64, for which get_int64 saturates. */
        if (!json_object_is_type(o, json_type_int) || json_object_get_int64(o) < 0 ||
            (uint64_t) json_object_get_int64(o) > POLICY_UID_MAX)
                return loader_error(l, path, "expected an integer from 0 to %" PRIu64, POLICY_UID_MAX);
        a->uid = (uid_t) json_object_get_int64(o);
        return 1;
}

static int load_agent(struct loader *l, struct json_object *o, const char *path, struct policy_agent *a) {
        static const char *const keys[] = { "user", "uid", "domains", NULL };
        _cleanup_(xfreep) char *p_user = NULL, *p_uid = NULL, *p_domains = NULL;
        struct json_object *user = NULL, *uid = NULL, *domains = NULL;
        bool has_user, has_uid;
        int r;

        r = get_object(l, o, path, keys);
        if (r <= 0)
                return r;
        p_user = diag_path_key(path, "user");
        p_uid = diag_path_key(path, "uid");
        p_domains = diag_path_key(path, "domains");
        if (!p_user || !p_uid || !p_domains)
                return -ENOMEM;

        has_user = json_object_object_get_ex(o, "user", &user);
        has_uid = json_object_object_get_ex(o, "uid", &uid);
        if (has_user && has_uid)
                r = loader_error(l, path, "has both \"user\" and \"uid\"; give only one");
        else if (!has_user && !has_uid)
                r = loader_error(l, path, "needs \"user\" or \"uid\"");
        if (r < 0)
                return r;

        if (has_user) {
                r = load_user(l, user, p_user, a);
                if (r < 0)
                        return r;
        }
        if (has_uid) {
                r = load_uid(l, uid, p_uid, a);
                if (r < 0)
                        return r;
        }

        if (json_object_object_get_ex(o, "domains", &domains))
                r = load_name_list(l, domains, p_domains, "domain", NULL, &a->domains, &a->n_domains);
        else
                r = missing_key(l, path, "domains");
        return r < 0 ? r : 1;
}

static int load_access(struct loader *l, struct json_object *o, const char *path, enum access_mode *ret) {
        if (!json_object_is_type(o, json_type_string) ||
            (size_t) json_object_get_string_len(o) != strlen(json_object_get_string(o)) ||
            access_from_string(json_object_get_string(o), ret) < 0)
                return loader_error(l, path, "expected \"ro\" or \"rw\"");
        return 1;
}

static int load_share(struct loader *l, struct json_object *o, const char *path, struct policy_share *s) {
        static const char *const keys[] = { "sharer", "device", "peers", "access", "multi_peer", "max_region", NULL };
        _cleanup_(xfreep) char *p_sharer = NULL, *p_device = NULL, *p_peers = NULL, *p_access = NULL,
                *p_multi = NULL, *p_max = NULL;
        struct json_object *v;
        const char *name;
        int r;

        s->max_region = UINT64_MAX;

        r = get_object(l, o, path, keys);
        if (r <= 0)
                return r;
        p_sharer = diag_path_key(path, "sharer");
        p_device = diag_path_key(path, "device");
        p_peers = diag_path_key(path, "peers");
        p_access = diag_path_key(path, "access");
        p_multi = diag_path_key(path, "multi_peer");
        p_max = diag_path_key(path, "max_region");
        if (!p_sharer || !p_device || !p_peers || !p_access || !p_multi || !p_max)
                return -ENOMEM;

        if (json_object_object_get_ex(o, "sharer", &v)) {
                r = get_name(l, v, p_sharer, false, &name);
                if (r > 0 && !(s->sharer = strdup(name)))
                        return -ENOMEM;
        } else
                r = missing_key(l, path, "sharer");
        if (r < 0)
                return r;

        if (json_object_object_get_ex(o, "device", &v)) {
                r = get_name(l, v, p_device, false, &name);
                if (r > 0 && !(s->device = strdup(name)))
                        return -ENOMEM;
        } else
                r = missing_key(l, path, "device");
        if (r < 0)
                return r;

        if (json_object_object_get_ex(o, "peers", &v))
                r = load_name_list(l, v, p_peers, "peer", s->sharer, &s->peers, &s->n_peers);
        else
                r = missing_key(l, path, "peers");
        if (r < 0)
                return r;

        if (json_object_object_get_ex(o, "access", &v))
                r = load_access(l, v, p_access, &s->access);
        else
                r = missing_key(l, path, "access");
        if (r < 0)
                return r;

        if (json_object_object_get_ex(o, "multi_peer", &v)) {
                r = get_bool(l, v, p_multi, &s->multi_peer);
                if (r < 0)
                        return r;
                if (r > 0 && s->multi_peer && s->n_peers == 1) {
                        r = loader_warning(l, p_multi, "has no effect: the rule names a single peer");
                        if (r < 0)
                                return r;
                }
        }

        if (json_object_object_get_ex(o, "max_region", &v)) {
                uint64_t max;

                r = get_size(l, v, p_max, &max);
                if (r < 0)
                        return r;
                if (r > 0 && max == 0)
                        r = loader_error(l, p_max, "must be greater than 0");
                else if (r > 0)
                        s->max_region = max;
                if (r < 0)
                        return r;
        }
        return 1;
}

static int load_quota(struct loader *l, struct json_object *o, const char *path, struct policy_quota *q) {
        static const char *const keys[] = { "domain", "max_bytes", "max_regions", NULL };
        _cleanup_(xfreep) char *p_domain = NULL, *p_bytes = NULL, *p_regions = NULL;
        struct json_object *v;
        const char *name;
        int r;

        q->max_bytes = UINT64_MAX;
        q->max_regions = UINT64_MAX;

        r = get_object(l, o, path, keys);
        if (r <= 0)
                return r;
        p_domain = diag_path_key(path, "domain");
        p_bytes = diag_path_key(path, "max_bytes");
        p_regions = diag_path_key(path, "max_regions");
        if (!p_domain || !p_bytes || !p_regions)
                return -ENOMEM;

        if (json_object_object_get_ex(o, "domain", &v)) {
                r = get_name(l, v, p_domain, true, &name);
                if (r > 0 && !(q->domain = strdup(name)))
                        return -ENOMEM;
        } else
                r = missing_key(l, path, "domain");
        if (r < 0)
                return r;

        if (json_object_object_get_ex(o, "max_bytes", &v)) {
                r = get_size(l, v, p_bytes, &q->max_bytes);
                if (r < 0)
                        return r;
        }
        if (json_object_object_get_ex(o, "max_regions", &v)) {
                r = get_count(l, v, p_regions, &q->max_regions);
                if (r < 0)
                        return r;
        }
        return 1;
}

static int load_agents(struct loader *l, struct json_object *root, struct policy *p) {
        struct json_object *a;
        size_t n = 0;
        int r;

        if (!json_object_object_get_ex(root, "agents", &a))
                return missing_key(l, "", "agents");
        r = get_array(l, a, "agents", &n);
        if (r <= 0 || n == 0)
                return r;
        p->agents = calloc(n, sizeof(*p->agents));
        if (!p->agents)
                return -ENOMEM;
        p->n_agents = n;
        for (size_t i = 0; i < n; i++) {
                _cleanup_(xfreep) char *path = diag_path_index("agents", i);

                if (!path)
                        return -ENOMEM;
                r = load_agent(l, json_object_array_get_idx(a, i), path, &p->agents[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int load_shares(struct loader *l, struct json_object *root, struct policy *p) {
        struct json_object *a;
        size_t n = 0;
        int r;

        if (!json_object_object_get_ex(root, "shares", &a))
                return missing_key(l, "", "shares");
        r = get_array(l, a, "shares", &n);
        if (r <= 0 || n == 0)
                return r;
        p->shares = calloc(n, sizeof(*p->shares));
        if (!p->shares)
                return -ENOMEM;
        p->n_shares = n;
        for (size_t i = 0; i < n; i++) {
                _cleanup_(xfreep) char *path = diag_path_index("shares", i);

                if (!path)
                        return -ENOMEM;
                r = load_share(l, json_object_array_get_idx(a, i), path, &p->shares[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int load_quotas(struct loader *l, struct json_object *root, struct policy *p) {
        _cleanup_(xfreep) char **domains = NULL;
        _cleanup_(xfreep) size_t *first = NULL;
        struct json_object *a;
        size_t n = 0;
        int r;

        if (!json_object_object_get_ex(root, "quotas", &a))
                return 0;
        r = get_array(l, a, "quotas", &n);
        if (r <= 0 || n == 0)
                return r;
        p->quotas = calloc(n, sizeof(*p->quotas));
        if (!p->quotas)
                return -ENOMEM;
        p->n_quotas = n;
        for (size_t i = 0; i < n; i++) {
                _cleanup_(xfreep) char *path = diag_path_index("quotas", i);

                if (!path)
                        return -ENOMEM;
                r = load_quota(l, json_object_array_get_idx(a, i), path, &p->quotas[i]);
                if (r < 0)
                        return r;
        }

        domains = calloc(n, sizeof(*domains));
        if (!domains)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                domains[i] = p->quotas[i].domain;
        r = find_duplicates(domains, n, &first);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                char path[64];

                if (first[i] == SIZE_MAX)
                        continue;
                snprintf(path, sizeof(path), "quotas[%zu].domain", i);
                r = loader_error(l, path, "%s already has a quota at quotas[%zu]", domains[i], first[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

int policy_load_json(struct json_object *root, struct policy **ret, struct diag_list *diags) {
        static const char *const keys[] = { "$schema", "agents", "shares", "quotas", NULL };
        _cleanup_(policy_freep) struct policy *p = NULL;
        struct loader l = { .diags = diags };
        struct json_object *v;
        const char *s = NULL;
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;

        r = get_object(&l, root, "", keys);
        if (r < 0)
                return r;
        if (r == 0)
                return -EINVAL;

        if (json_object_object_get_ex(root, "$schema", &v)) {
                r = get_string(&l, v, "$schema", &s);
                if (r < 0)
                        return r;
        }
        r = load_agents(&l, root, p);
        if (r < 0)
                return r;
        r = load_shares(&l, root, p);
        if (r < 0)
                return r;
        r = load_quotas(&l, root, p);
        if (r < 0)
                return r;

        if (l.n_errors > 0)
                return -EINVAL;
        *ret = TAKE_PTR(p);
        return 0;
}

static void offset_to_line_column(const char *text, size_t offset, size_t *line, size_t *column) {
        *line = 1;
        *column = 1;
        for (size_t i = 0; i < offset && text[i]; i++) {
                if (text[i] == '\n') {
                        (*line)++;
                        *column = 1;
                } else
                        (*column)++;
        }
}

/* text[len] must be '\0'. */
static int load_text(const char *text, size_t len, struct policy **ret, struct diag_list *diags) {
        struct json_tokener *tok = NULL;
        struct json_object *root = NULL;
        enum json_tokener_error jerr;
        const char *nul;
        size_t end;
        int r;

        nul = memchr(text, 0, len);
        if (nul) {
                size_t line, column;

                offset_to_line_column(text, (size_t) (nul - text), &line, &column);
                r = diag_add(diags, DIAG_ERROR, "", "invalid JSON at line %zu, column %zu: NUL byte", line, column);
                return r < 0 ? r : -EINVAL;
        }

        tok = json_tokener_new_ex(POLICY_JSON_MAX_DEPTH);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        /* Handing over the terminating NUL tells the tokener the input ends here. */
        root = json_tokener_parse_ex(tok, text, (int) (len + 1));
        jerr = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);

        if (!root || jerr != json_tokener_success) {
                size_t line, column;

                json_object_put(root);
                offset_to_line_column(text, end, &line, &column);
                r = diag_add(diags, DIAG_ERROR, "", "invalid JSON at line %zu, column %zu: %s", line, column,
                             json_tokener_error_desc(jerr == json_tokener_success ? json_tokener_error_parse_eof : jerr));
                return r < 0 ? r : -EINVAL;
        }

        r = policy_load_json(root, ret, diags);
        json_object_put(root);
        return r;
}

static int too_big(struct diag_list *diags) {
        char buf[NUM_FMT_MAX];
        int r;

        r = diag_add(diags, DIAG_ERROR, "", "larger than %s", num_format_size(POLICY_MAX_FILE_SIZE, buf));
        return r < 0 ? r : -EFBIG;
}

int policy_load_string(const char *text, struct policy **ret, struct diag_list *diags) {
        size_t len;

        if (!text)
                return -EINVAL;
        len = strnlen(text, (size_t) POLICY_MAX_FILE_SIZE + 1);
        if (len > POLICY_MAX_FILE_SIZE)
                return too_big(diags);
        return load_text(text, len, ret, diags);
}

int policy_load_file(const char *path, struct policy **ret, struct diag_list *diags) {
        _cleanup_(closep) int fd = -EBADF;
        _cleanup_(xfreep) char *buf = NULL;
        size_t len = 0, cap = 0;
        int r;

        if (!path)
                return -EINVAL;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                r = negative_errno();
                (void) diag_add(diags, DIAG_ERROR, "", "cannot open: %s", strerror(-r));
                return r;
        }

        /* Read at most one byte past the limit, whatever the file claims its size is. */
        for (;;) {
                ssize_t k;

                if (len == cap) {
                        size_t ncap = cap ? cap * 2 : 65536;
                        char *nbuf;

                        if (ncap > (size_t) POLICY_MAX_FILE_SIZE + 1)
                                ncap = (size_t) POLICY_MAX_FILE_SIZE + 1;
                        if (ncap <= cap)
                                return too_big(diags);
                        nbuf = realloc(buf, ncap + 1);
                        if (!nbuf)
                                return -ENOMEM;
                        buf = nbuf;
                        cap = ncap;
                }
                k = read(fd, buf + len, cap - len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = negative_errno();
                        (void) diag_add(diags, DIAG_ERROR, "", "cannot read: %s", strerror(-r));
                        return r;
                }
                if (k == 0)
                        break;
                len += (size_t) k;
        }
        if (len > POLICY_MAX_FILE_SIZE)
                return too_big(diags);
        if (!buf) {
                buf = malloc(1);
                if (!buf)
                        return -ENOMEM;
        }
        buf[len] = '\0';
        return load_text(buf, len, ret, diags);
}

static void strv_free(char **v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                free(v[i]);
        free(v);
}

void policy_free(struct policy *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n_agents; i++) {
                free(p->agents[i].user);
                strv_free(p->agents[i].domains, p->agents[i].n_domains);
        }
        free(p->agents);
        for (size_t i = 0; i < p->n_shares; i++) {
                free(p->shares[i].sharer);
                free(p->shares[i].device);
                strv_free(p->shares[i].peers, p->shares[i].n_peers);
        }
        free(p->shares);
        for (size_t i = 0; i < p->n_quotas; i++)
                free(p->quotas[i].domain);
        free(p->quotas);
        free(p);
}

int policy_check_platform(const struct policy *p, const struct platform *platform, struct diag_list *diags) {
        struct loader l = { .diags = diags };
        int r;

        if (!p || !platform)
                return -EINVAL;

        for (size_t i = 0; i < p->n_shares; i++) {
                const struct policy_share *s = &p->shares[i];
                const struct platform_device *d = NULL;
                char path[64];

                /* Looked up here rather than with platform_find_device() so that only the
                 * data structure, not the platform loader, is needed. */
                for (size_t j = 0; j < platform->n_devices && !d; j++)
                        if (streq_ptr(platform->devices[j].name, s->device))
                                d = &platform->devices[j];

                if (!d) {
                        snprintf(path, sizeof(path), "shares[%zu].device", i);
                        r = loader_error(&l, path, "the platform has no device %s", s->device);
                } else if (!d->owner) {
                        snprintf(path, sizeof(path), "shares[%zu].sharer", i);
                        r = loader_error(&l, path, "device %s has no owner on the platform", s->device);
                } else if (!streq_ptr(d->owner, s->sharer)) {
                        snprintf(path, sizeof(path), "shares[%zu].sharer", i);
                        r = loader_error(&l, path, "device %s is driven by %s, not %s", s->device, d->owner, s->sharer);
                } else
                        r = 0;
                if (r < 0)
                        return r;
        }
        return l.n_errors > 0 ? -EINVAL : 0;
}

bool policy_agent_may_act(const struct policy *p, uid_t uid, const char *domain) {
        if (!p || !domain)
                return false;
        for (size_t i = 0; i < p->n_agents; i++) {
                const struct policy_agent *a = &p->agents[i];

                if (a->uid != uid)
                        continue;
                for (size_t j = 0; j < a->n_domains; j++)
                        if (streq_ptr(a->domains[j], domain))
                                return true;
        }
        return false;
}

static bool share_lists_peer(const struct policy_share *s, const char *peer) {
        for (size_t i = 0; i < s->n_peers; i++)
                if (streq_ptr(s->peers[i], peer))
                        return true;
        return false;
}

/* "vm1 and vm2", "vm1, vm2 and vm3", "vm1, vm2, vm3 and 4 more". */
static void format_peer_list(const struct policy_peer_request *peers, size_t n, char *buf, size_t size) {
        size_t shown = n > 3 ? 3 : n;
        int k = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < shown && k >= 0 && (size_t) k < size; i++) {
                const char *sep = i == 0 ? "" : (i == shown - 1 && n == shown) ? " and " : ", ";
                int w = snprintf(buf + k, size - (size_t) k, "%s%s", sep, peers[i].domain);
                k = w < 0 ? -1 : k + w;
        }
        if (n > shown && k >= 0 && (size_t) k < size)
                snprintf(buf + k, size - (size_t) k, " and %zu more", n - shown);
}

/* How far a candidate rule got; the best one decides the error reported. */
enum share_failure {
        FAIL_NO_RULE,
        FAIL_ACCESS,
        FAIL_TOO_LARGE,
};

int policy_check_share(const struct policy *p, const char *sharer, const char *device,
                       const struct policy_peer_request *peers, size_t n_peers, uint64_t size,
                       struct broker_error *err) {
        enum share_failure fail = FAIL_NO_RULE;
        const struct policy_share *denied = NULL;
        const char *denied_peer = NULL;
        uint64_t best_max = 0;
        char a[NUM_FMT_MAX], b[NUM_FMT_MAX];
        size_t n_shares = p ? p->n_shares : 0;

        if (!sharer || !device)
                return broker_error_set(err, BROKER_E_INVALID, "no sharer or device given");
        if (n_peers == 0 || !peers)
                return broker_error_set(err, BROKER_E_INVALID, "a region needs at least one peer");
        /* No rule lists more peers, and this bounds the quadratic checks below. */
        if (n_peers > POLICY_MAX_ENTRIES)
                return broker_error_set(err, BROKER_E_INVALID, "%zu peers, at most %d", n_peers, POLICY_MAX_ENTRIES);
        for (size_t i = 0; i < n_peers; i++) {
                if (!peers[i].domain)
                        return broker_error_set(err, BROKER_E_INVALID, "peer %zu has no domain", i);
                if (peers[i].access != ACCESS_RO && peers[i].access != ACCESS_RW)
                        return broker_error_set(err, BROKER_E_INVALID, "invalid access mode for peer %s", peers[i].domain);
                if (streq(peers[i].domain, sharer))
                        return broker_error_set(err, BROKER_E_INVALID, "%s cannot be a peer of its own region", sharer);
                for (size_t j = 0; j < i; j++)
                        if (streq(peers[i].domain, peers[j].domain))
                                return broker_error_set(err, BROKER_E_INVALID, "peer %s is listed twice", peers[i].domain);
        }

        if (n_peers > 1) {
                /* A peer no rule names at all is refused as such: marking the sharing
                 * multi_peer would not help. */
                for (size_t i = 0; i < n_peers; i++) {
                        bool named = false;

                        for (size_t k = 0; k < n_shares && !named; k++) {
                                const struct policy_share *s = &p->shares[k];

                                named = streq_ptr(s->sharer, sharer) && streq_ptr(s->device, device) &&
                                        share_lists_peer(s, peers[i].domain);
                        }
                        if (!named)
                                return broker_error_set(err, BROKER_E_FORBIDDEN, "policy does not allow %s to share %s with %s",
                                                        sharer, device, peers[i].domain);
                }
        }

        for (size_t k = 0; k < n_shares; k++) {
                const struct policy_share *s = &p->shares[k];
                const char *short_peer = NULL;
                bool covers = true;

                if (!streq_ptr(s->sharer, sharer) || !streq_ptr(s->device, device))
                        continue;
                if (n_peers > 1 && !s->multi_peer)
                        continue;
                for (size_t i = 0; i < n_peers && covers; i++) {
                        covers = share_lists_peer(s, peers[i].domain);
                        if (covers && !short_peer && peers[i].access > s->access)
                                short_peer = peers[i].domain;
                }
                if (!covers)
                        continue;

                if (short_peer) {
                        if (fail < FAIL_ACCESS) {
                                fail = FAIL_ACCESS;
                                denied = s;
                                denied_peer = short_peer;
                        }
                        continue;
                }
                if (size > s->max_region) {
                        if (fail < FAIL_TOO_LARGE || s->max_region > best_max) {
                                fail = FAIL_TOO_LARGE;
                                best_max = s->max_region;
                        }
                        continue;
                }
                return 0;
        }

        switch (fail) {
        case FAIL_TOO_LARGE:
                return broker_error_set(err, BROKER_E_TOO_LARGE,
                                        "a region of %s exceeds the policy's max_region of %s for %s/%s",
                                        num_format_size(size, a), num_format_size(best_max, b), sharer, device);
        case FAIL_ACCESS:
                return broker_error_set(err, BROKER_E_FORBIDDEN, "policy allows only %s for %s/%s -> %s",
                                        access_to_string(denied->access), sharer, device, denied_peer);
        case FAIL_NO_RULE:
                break;
        }

        if (n_peers > 1) {
                char list[BROKER_MESSAGE_MAX];

                format_peer_list(peers, n_peers, list, sizeof(list));
                return broker_error_set(err, BROKER_E_MULTI_PEER,
                                        "a region seen by %s would leak one peer's data to the other%s; "
                                        "the policy does not mark this sharing multi_peer",
                                        list, n_peers > 2 ? "s" : "");
        }
        return broker_error_set(err, BROKER_E_FORBIDDEN, "policy does not allow %s to share %s with %s",
                                sharer, device, peers[0].domain);
}

void policy_quota_for(const struct policy *p, const char *domain, uint64_t *max_bytes, uint64_t *max_regions) {
        const struct policy_quota *own = NULL, *fallback = NULL;
        uint64_t bytes = POLICY_DEFAULT_MAX_BYTES, regions = POLICY_DEFAULT_MAX_REGIONS;

        for (size_t i = 0; p && i < p->n_quotas; i++) {
                const struct policy_quota *q = &p->quotas[i];

                if (domain && streq_ptr(q->domain, domain))
                        own = q;
                else if (streq_ptr(q->domain, "*"))
                        fallback = q;
        }
        if (own ?: fallback) {
                bytes = (own ?: fallback)->max_bytes;
                regions = (own ?: fallback)->max_regions;
        }
        if (max_bytes)
                *max_bytes = bytes;
        if (max_regions)
                *max_regions = regions;
}
