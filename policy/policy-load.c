/* SPDX-License-Identifier: Apache-2.0 */
/* Loading a policy file: agents, shares and quotas, with the JSON kit (util/json-load.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"
#include "util/json-load.h"

#define POLICY_JSON_MAX_DEPTH 32
#define POLICY_USER_MAX 256
/* (uid_t) -1 means "no change" to chown() and friends, so it can name no agent. */
#define POLICY_UID_MAX UINT64_C(4294967294)
#define POLICY_UID_EXPECTED "an integer from 0 to 4294967294"
/* getpwnam_r() buffers grow up to this before a lookup is given up. */
#define POLICY_PWBUF_MAX (1024 * 1024)

static const struct json_load_limits policy_limits = {
        .max_size = POLICY_MAX_FILE_SIZE,
        .max_depth = POLICY_JSON_MAX_DEPTH,
};

/*
 * A non-empty list of unique names at obj.key; when sharer is set, it may not appear in
 * the list. Names that fail stay NULL.
 */
static void load_name_list(struct json_loader *l, json_object *obj, const char *path, const char *key,
                           const char *what, const char *sharer, char ***ret, size_t *ret_n) {
        _cleanup_(xfreep) char *list_path = NULL;
        _cleanup_(xfreep) size_t *first = NULL;
        json_object *arr;
        char **names;
        size_t n = 0;

        arr = json_get_array(l, obj, path, key, JSON_REQUIRED, POLICY_MAX_ENTRIES, &n);
        if (!arr)
                return;
        list_path = json_loader_path_key(l, path, key);
        if (n == 0) {
                json_loader_error(l, list_path, "must list at least one %s", what);
                return;
        }
        names = *ret = json_loader_alloc(l, n, sizeof(*names));
        if (!names)
                return;
        *ret_n = n;

        for (size_t i = 0; i < n; i++) {
                _cleanup_(xfreep) char *p = json_loader_path_index(l, list_path, i);

                if (!json_get_name(l, json_object_array_get_idx(arr, i), p, NULL, JSON_REQUIRED, &names[i]))
                        continue;
                if (sharer && strcmp(names[i], sharer) == 0) {
                        json_loader_error(l, p, "%s is the sharer; a domain cannot be a peer of its own region",
                                          names[i]);
                        free(names[i]);
                        names[i] = NULL;
                }
        }

        first = json_loader_find_duplicates(l, (const char *const *) names, n);
        for (size_t i = 0; first && i < n; i++) {
                _cleanup_(xfreep) char *p = NULL;

                if (first[i] == SIZE_MAX)
                        continue;
                p = json_loader_path_index(l, list_path, i);
                json_loader_error(l, p, "%s %s is already listed at [%zu]", what, names[i], first[i]);
        }
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

static void load_user(struct json_loader *l, json_object *o, const char *path, struct policy_agent *a) {
        _cleanup_(xfreep) char *p = NULL;
        const char *s = NULL;
        uid_t uid = 0;
        int r;

        if (!json_get_string(l, o, path, "user", JSON_REQUIRED, SIZE_MAX, &s))
                return;
        p = json_loader_path_key(l, path, "user");
        if (s[0] == '\0' || strlen(s) > POLICY_USER_MAX) {
                json_loader_error(l, p, "expected a user name of 1 to %d characters", POLICY_USER_MAX);
                return;
        }
        for (const char *c = s; *c; c++)
                if ((unsigned char) *c < 0x20 || *c == 0x7f) {
                        json_loader_error(l, p, "user name contains a control character");
                        return;
                }

        r = resolve_user(s, &uid);
        if (r == -ENOMEM)
                l->oom = true;
        else if (r == -ESRCH)
                json_loader_error(l, p, "unknown user \"%s\"", s);
        else if (r < 0)
                json_loader_error(l, p, "cannot look up user \"%s\": %s", s, strerror(-r));
        else {
                a->user = json_loader_strdup(l, s);
                a->uid = uid;
        }
}

static void load_agent(struct json_loader *l, json_object *arr, size_t i, const char *path, void *entry) {
        static const char *const keys[] = { "user", "uid", "domains", NULL };
        struct policy_agent *a = entry;
        json_object *o;
        bool has_user, has_uid;
        uint64_t uid;

        o = json_get_object(l, json_object_array_get_idx(arr, i), path, NULL, JSON_REQUIRED, keys);
        if (!o)
                return;
        has_user = json_object_object_get_ex(o, "user", NULL);
        has_uid = json_object_object_get_ex(o, "uid", NULL);
        if (has_user && has_uid)
                json_loader_error(l, path, "has both \"user\" and \"uid\"; give only one");
        else if (!has_user && !has_uid)
                json_loader_error(l, path, "needs \"user\" or \"uid\"");

        if (has_user)
                load_user(l, o, path, a);
        if (has_uid && json_get_uint(l, o, path, "uid", JSON_REQUIRED, 0, POLICY_UID_MAX, POLICY_UID_EXPECTED, &uid))
                a->uid = (uid_t) uid;
        load_name_list(l, o, path, "domains", "domain", NULL, &a->domains, &a->n_domains);
}

static void load_share(struct json_loader *l, json_object *arr, size_t i, const char *path, void *entry) {
        static const char *const keys[] = { "sharer", "device", "peers", "access", "multi_peer", "max_region", NULL };
        struct policy_share *s = entry;
        json_object *o;
        unsigned access;
        uint64_t max;

        s->max_region = UINT64_MAX;
        o = json_get_object(l, json_object_array_get_idx(arr, i), path, NULL, JSON_REQUIRED, keys);
        if (!o)
                return;
        json_get_name(l, o, path, "sharer", JSON_REQUIRED, &s->sharer);
        json_get_name(l, o, path, "device", JSON_REQUIRED, &s->device);
        load_name_list(l, o, path, "peers", "peer", s->sharer, &s->peers, &s->n_peers);
        if (json_get_enum(l, o, path, "access", JSON_REQUIRED, "access mode", access_mode_names, _ACCESS_MODE_MAX,
                          &access))
                s->access = (enum access_mode) access;

        if (json_get_bool(l, o, path, "multi_peer", JSON_OPTIONAL, &s->multi_peer) && s->multi_peer &&
            s->n_peers == 1) {
                _cleanup_(xfreep) char *p = json_loader_path_key(l, path, "multi_peer");
                json_loader_warning(l, p, "has no effect: the rule names a single peer");
        }
        if (json_get_u64(l, o, path, "max_region", JSON_OPTIONAL, &max)) {
                _cleanup_(xfreep) char *p = json_loader_path_key(l, path, "max_region");

                if (max == 0)
                        json_loader_error(l, p, "must be greater than 0");
                else
                        s->max_region = max;
        }
}

static void load_quota(struct json_loader *l, json_object *arr, size_t i, const char *path, void *entry) {
        static const char *const keys[] = { "domain", "max_bytes", "max_regions", NULL };
        struct policy_quota *q = entry;
        json_object *o;

        q->max_bytes = UINT64_MAX;
        q->max_regions = UINT64_MAX;
        o = json_get_object(l, json_object_array_get_idx(arr, i), path, NULL, JSON_REQUIRED, keys);
        if (!o)
                return;
        json_get_name(l, o, path, "domain", JSON_REQUIRED | JSON_ALLOW_STAR, &q->domain);
        json_get_u64(l, o, path, "max_bytes", JSON_OPTIONAL, &q->max_bytes);
        json_get_uint(l, o, path, "max_regions", JSON_OPTIONAL, 0, UINT64_MAX, "a non-negative integer",
                      &q->max_regions);
}

static void check_quota_domains(struct json_loader *l, const struct policy *p) {
        _cleanup_(xfreep) const char **domains = NULL;
        _cleanup_(xfreep) size_t *first = NULL;

        domains = json_loader_alloc(l, p->n_quotas, sizeof(*domains));
        if (!domains)
                return;
        for (size_t i = 0; i < p->n_quotas; i++)
                domains[i] = p->quotas[i].domain;
        first = json_loader_find_duplicates(l, domains, p->n_quotas);
        for (size_t i = 0; first && i < p->n_quotas; i++) {
                char path[64];

                if (first[i] == SIZE_MAX)
                        continue;
                snprintf(path, sizeof(path), "quotas[%zu].domain", i);
                json_loader_error(l, path, "%s already has a quota at quotas[%zu]", domains[i], first[i]);
        }
}

/*
 * The entries of root.key, an array, into a calloc'ed array of n items of size bytes each,
 * through load(); absent or empty leaves *ret NULL.
 */
typedef void (*entry_loader_t)(struct json_loader *l, json_object *arr, size_t i, const char *path, void *entry);


static void load_entries(struct json_loader *l, json_object *root, const char *key, unsigned flags, size_t size,
                         entry_loader_t load, void **ret, size_t *ret_n) {
        json_object *arr;
        size_t n = 0;
        char *items;

        arr = json_get_array(l, root, "", key, flags, POLICY_MAX_ENTRIES, &n);
        if (!arr || n == 0)
                return;
        items = *ret = json_loader_alloc(l, n, size);
        if (!items)
                return;
        *ret_n = n;
        for (size_t i = 0; i < n; i++) {
                _cleanup_(xfreep) char *path = json_loader_path_index(l, key, i);

                if (path)
                        load(l, arr, i, path, items + i * size);
        }
}

int policy_load_json(json_object *root, struct policy **ret, struct diag_list *diags) {
        static const char *const keys[] = { "$schema", "agents", "shares", "quotas", NULL };
        _cleanup_(policy_freep) struct policy *p = NULL;
        struct json_loader l = { .diags = diags, .missing_at_parent = true };
        const char *schema;
        int r;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        if (!json_get_object(&l, root, "", NULL, JSON_REQUIRED, keys))
                return json_loader_result(&l);
        json_get_string(&l, root, "", "$schema", JSON_OPTIONAL, SIZE_MAX, &schema);

        load_entries(&l, root, "agents", JSON_REQUIRED, sizeof(*p->agents), load_agent,
                     (void **) &p->agents, &p->n_agents);
        load_entries(&l, root, "shares", JSON_REQUIRED, sizeof(*p->shares), load_share,
                     (void **) &p->shares, &p->n_shares);
        load_entries(&l, root, "quotas", JSON_OPTIONAL, sizeof(*p->quotas), load_quota,
                     (void **) &p->quotas, &p->n_quotas);
        check_quota_domains(&l, p);

        r = json_loader_result(&l);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

int policy_load_string(const char *text, struct policy **ret, struct diag_list *diags) {
        _cleanup_(json_object_unrefp) json_object *root = NULL;
        int r = json_load_string(text, &policy_limits, diags, &root);
        return r < 0 ? r : policy_load_json(root, ret, diags);
}

int policy_load_file(const char *path, struct policy **ret, struct diag_list *diags) {
        _cleanup_(json_object_unrefp) json_object *root = NULL;
        int r = json_load_file(path, &policy_limits, diags, &root);
        return r < 0 ? r : policy_load_json(root, ret, diags);
}
