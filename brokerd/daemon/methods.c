/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/methods.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/hashmap.h"
#include "util/num.h"

#ifndef VERSION
#define VERSION "0.1.0"
#endif

/* Bounds on what one request may name, beyond those the broker enforces itself. */
#define METHODS_MAX_STRING 1024          /* any string member without a tighter bound */
#define METHODS_MAX_TOKEN 64             /* a token is STORE_TOKEN_LEN; anything longer is not one */
#define METHODS_MAX_SUBSCRIBE_DOMAINS 256
#define METHODS_DEFAULT_REVOKE_MS UINT64_C(10000)
#define METHODS_MAX_AUDIT_LIMIT 1000
#define METHODS_DEFAULT_AUDIT_LIMIT 100

struct subscription {
        uint64_t connection; /* the hashmap key */
        uid_t uid;
        bool admin;
        bool all;            /* an admin that named no domain: every event */
        char **domains;
        size_t n_domains;
};

typedef int (*methods_notify_t)(void *userdata, uint64_t connection, const char *method, struct json_object *params);

struct methods {
        char *policy_path;
        struct broker *broker;
        struct rpc_server *server;
        const char *backend_name;
        methods_notify_t notify;
        void *notify_userdata;
        struct hashmap *subscriptions; /* connection -> subscription */
        uint64_t dropped_subscribers;
        int64_t started;               /* CLOCK_MONOTONIC usec */
};

static int64_t monotonic_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void subscription_free(struct subscription *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_domains; i++)
                free(s->domains[i]);
        free(s->domains);
        free(s);
}
DEFINE_CLEANUP(struct subscription, subscription_free);

int methods_new(const char *policy_path, struct methods **ret) {
        _cleanup_(methods_freep) struct methods *m = calloc(1, sizeof(*m));
        int q;

        if (!m)
                return -ENOMEM;
        if (policy_path && !(m->policy_path = strdup(policy_path)))
                return -ENOMEM;
        q = hashmap_new(&hashmap_u64_ops, &m->subscriptions);
        if (q < 0)
                return q;
        m->backend_name = "unknown";
        m->started = monotonic_usec();
        *ret = TAKE_PTR(m);
        return 0;
}

void methods_free(struct methods *m) {
        void *v;

        if (!m)
                return;
        if (m->subscriptions) {
                size_t i = 0;
                while (hashmap_iterate(m->subscriptions, &i, &v))
                        subscription_free(v);
                hashmap_free(m->subscriptions);
        }
        free(m->policy_path);
        free(m);
}

void methods_set_broker(struct methods *m, struct broker *b) {
        m->broker = b;
}

static int server_notify(void *userdata, uint64_t connection, const char *method, struct json_object *params) {
        return rpc_server_notify(userdata, connection, method, params);
}

void methods_set_server(struct methods *m, struct rpc_server *s) {
        m->server = s;
        m->notify = s ? server_notify : NULL;
        m->notify_userdata = s;
}

void methods_set_notify(struct methods *m, methods_notify_t notify, void *userdata) {
        m->notify = notify;
        m->notify_userdata = userdata;
}

void methods_set_backend_name(struct methods *m, const char *name) {
        m->backend_name = name ?: "unknown";
}

/* ---- errors ---- */

static int broker_fail(struct rpc_error *err, const struct broker_error *berr) {
        return rpc_error_from_broker(err, berr->code, berr->message);
}

static int broker_failf(struct rpc_error *err, enum broker_code code, const char *fmt, ...) _printf_(3, 4);
static int broker_failf(struct rpc_error *err, enum broker_code code, const char *fmt, ...) {
        char msg[BROKER_MESSAGE_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return rpc_error_from_broker(err, code, msg);
}

/* -32602 naming the member: in the message and, for clients, as data.member. */
static int invalid_params(struct rpc_error *err, const char *member, const char *fmt, ...) _printf_(3, 4);
static int invalid_params(struct rpc_error *err, const char *member, const char *fmt, ...) {
        char msg[192];
        struct json_object *data;
        va_list ap;
        int q;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        q = rpc_error_set(err, RPC_INVALID_PARAMS, "%.64s: %s", member, msg);
        data = json_object_new_object();
        if (data) {
                struct json_object *s = json_object_new_string_len(member, (int) strnlen(member, 128));
                if (!s || json_object_object_add(data, "member", s) < 0) {
                        json_object_put(s);
                        json_object_put(data);
                        data = NULL;
                }
        }
        err->data = data;
        return q;
}

static int internal_error(struct rpc_error *err, int q) {
        rpc_error_set(err, RPC_INTERNAL_ERROR, "internal error: %s", strerror(q < 0 ? -q : EIO));
        return q < 0 ? q : -EIO;
}

/* ---- params ---- */

/* params may be absent (NULL, treated as {}), else must be an object naming only known members. */
static int params_check(struct json_object *params, const char *const *allowed, struct rpc_error *err) {
        if (!params)
                return 0;
        if (!json_object_is_type(params, json_type_object))
                return invalid_params(err, "params", "expected an object");
        json_object_object_foreach(params, key, val) {
                bool known = false;
                (void) val;
                for (size_t i = 0; allowed[i] && !known; i++)
                        known = strcmp(key, allowed[i]) == 0;
                if (!known)
                        return invalid_params(err, key, "unknown member");
        }
        return 0;
}

/* A member, or NULL when absent or JSON null. */
static struct json_object *member_get(struct json_object *o, const char *key) {
        struct json_object *v = NULL;

        if (!o || !json_object_object_get_ex(o, key, &v))
                return NULL;
        return v;
}

static int value_string(struct json_object *v, const char *path, size_t max, const char **ret,
                        struct rpc_error *err) {
        const char *s;
        size_t len;

        if (!json_object_is_type(v, json_type_string))
                return invalid_params(err, path, "expected a string");
        s = json_object_get_string(v);
        len = (size_t) json_object_get_string_len(v);
        if (strlen(s) != len)
                return broker_failf(err, BROKER_E_INVALID, "%.64s contains a NUL byte", path);
        if (len > max)
                return broker_failf(err, BROKER_E_LIMIT, "%.64s is longer than %zu bytes", path, max);
        *ret = s;
        return 0;
}

static int value_name(struct json_object *v, const char *path, const char **ret, struct rpc_error *err) {
        const char *s = NULL; /* set on success; gcc -O3 cannot see that */
        int q;

        q = value_string(v, path, NAME_MAX_LEN, &s, err);
        if (q < 0)
                return q;
        if (!name_is_valid(s))
                return broker_failf(err, BROKER_E_INVALID, "%.64s is not a valid name", path);
        *ret = s;
        return 0;
}

static int param_string(struct json_object *params, const char *key, bool required, size_t max, const char **ret,
                        struct rpc_error *err) {
        struct json_object *v = member_get(params, key);

        if (!v)
                return required ? invalid_params(err, key, "missing") : 0;
        return value_string(v, key, max, ret, err);
}

static int param_name(struct json_object *params, const char *key, bool required, const char **ret,
                      struct rpc_error *err) {
        struct json_object *v = member_get(params, key);

        if (!v)
                return required ? invalid_params(err, key, "missing") : 0;
        return value_name(v, key, ret, err);
}

static int param_u64(struct json_object *params, const char *key, bool required, bool *ret_present, uint64_t *ret,
                     struct rpc_error *err) {
        struct json_object *v = member_get(params, key);

        if (!v) {
                if (required)
                        return invalid_params(err, key, "missing");
                if (ret_present)
                        *ret_present = false;
                return 0;
        }
        if (num_from_json_unscanned(v, ret) < 0)
                return invalid_params(err, key,
                                      "expected a non-negative integer, or a string such as \"2MiB\" or \"0x1000\"");
        if (ret_present)
                *ret_present = true;
        return 0;
}

static int param_bool(struct json_object *params, const char *key, bool *ret, struct rpc_error *err) {
        struct json_object *v = member_get(params, key);

        if (!v)
                return 0;
        if (!json_object_is_type(v, json_type_boolean))
                return invalid_params(err, key, "expected true or false");
        *ret = json_object_get_boolean(v);
        return 0;
}

/* ---- JSON out: one flag records any allocation failure so builders stay linear ---- */

static void obj_add(struct json_object *o, const char *key, struct json_object *v, bool *ok) {
        if (!o || !v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                *ok = false;
        }
}

static void obj_add_null(struct json_object *o, const char *key, bool *ok) {
        if (!o || json_object_object_add(o, key, NULL) < 0)
                *ok = false;
}

static void obj_add_str(struct json_object *o, const char *key, const char *s, bool *ok) {
        if (s)
                obj_add(o, key, json_object_new_string(s), ok);
        else
                obj_add_null(o, key, ok);
}

static struct json_object *json_u64(uint64_t v) {
        return v <= INT64_MAX ? json_object_new_int64((int64_t) v) : json_object_new_uint64(v);
}

static void obj_add_u64(struct json_object *o, const char *key, uint64_t v, bool *ok) {
        obj_add(o, key, json_u64(v), ok);
}

static void obj_add_i64(struct json_object *o, const char *key, int64_t v, bool *ok) {
        obj_add(o, key, json_object_new_int64(v), ok);
}

static void obj_add_addr(struct json_object *o, const char *key, uint64_t v, bool *ok) {
        char buf[NUM_FMT_MAX];
        obj_add(o, key, json_object_new_string(num_format_addr(v, buf)), ok);
}

/* Quotas at UINT64_MAX mean "unlimited": null, since no client reads 2^64-1 exactly. */
static void obj_add_limit(struct json_object *o, const char *key, uint64_t v, bool *ok) {
        if (v == UINT64_MAX)
                obj_add_null(o, key, ok);
        else
                obj_add_u64(o, key, v, ok);
}

static void arr_add(struct json_object *a, struct json_object *v, bool *ok) {
        if (!a || !v || json_object_array_add(a, v) < 0) {
                json_object_put(v);
                *ok = false;
        }
}

/* Hands the result over, or drops it and reports an internal error. */
static int result_finish(struct json_object *o, bool ok, struct json_object **ret, struct rpc_error *err) {
        if (!ok || !o) {
                json_object_put(o);
                return internal_error(err, -ENOMEM);
        }
        *ret = o;
        return 0;
}

/* ---- identity ---- */

static struct broker_caller caller_of(const struct rpc_caller *c) {
        return (struct broker_caller) { .uid = c->uid, .admin = c->admin };
}

static int check_acts_for(const struct methods *m, const struct rpc_caller *c, const char *domain,
                          struct rpc_error *err) {
        struct broker_caller bc = caller_of(c);

        if (broker_caller_acts_for(m->broker, &bc, domain))
                return 0;
        return broker_failf(err, BROKER_E_FORBIDDEN, "uid %u may not act for domain %s", (unsigned) c->uid, domain);
}

struct domain_list {
        const char **list;
        size_t n;
};

static int domain_list_add(void *userdata, const char *domain) {
        struct domain_list *l = userdata;
        const char **nl = reallocarray(l->list, l->n + 1, sizeof(*nl));

        if (!nl)
                return -ENOMEM;
        l->list = nl;
        l->list[l->n++] = domain;
        return 0;
}

/* The domains the policy gives an agent's uid, without repeats; borrowed from the broker. */
static int agent_domains(const struct methods *m, uid_t uid, const char ***ret, size_t *ret_n) {
        struct domain_list l = {};
        int q = broker_caller_domains(m->broker, &(struct broker_caller) { .uid = uid }, domain_list_add, &l);

        if (q < 0) {
                free(l.list);
                return q;
        }
        *ret = l.list;
        *ret_n = l.n;
        return 0;
}

/* ---- shared result pieces ---- */

static int region_state_result(const struct broker_region_info *info, struct json_object **ret,
                               struct rpc_error *err) {
        struct json_object *o = json_object_new_object();
        bool ok = true;

        obj_add_u64(o, "region", info->id, &ok);
        obj_add_str(o, "state", region_state_to_string(info->state), &ok);
        return result_finish(o, ok, ret, err);
}

static struct json_object *unplug_to_json(const struct broker_unplug *u, bool *ok) {
        struct json_object *o = json_object_new_object();

        obj_add_i64(o, "requested_usec", u->requested, ok);
        obj_add(o, "failed", json_object_new_boolean(u->failed), ok);
        if (u->escalated) {
                obj_add_i64(o, "escalated_usec", u->escalated, ok);
                obj_add_str(o, "escalation", escalation_to_string(u->action), ok);
                obj_add(o, "escalation_failed", json_object_new_boolean(u->action_failed), ok);
        }
        return o;
}

static struct json_object *region_to_json(const struct broker_region_info *r) {
        struct json_object *o = json_object_new_object(), *peers = json_object_new_array();
        bool ok = true;

        obj_add_u64(o, "region", r->id, &ok);
        obj_add_str(o, "owner", r->owner, &ok);
        obj_add_str(o, "device", r->device, &ok);
        obj_add_str(o, "pool", r->pool, &ok);
        obj_add_str(o, "label", r->label, &ok);
        obj_add_addr(o, "base", r->base, &ok);
        obj_add_u64(o, "size", r->size, &ok);
        obj_add_str(o, "state", region_state_to_string(r->state), &ok);
        obj_add_i64(o, "deadline_usec", r->deadline, &ok);
        obj_add_i64(o, "created_usec", r->created, &ok);
        obj_add(o, "owner_mapped", json_object_new_boolean(r->owner_mapped), &ok);
        if (r->owner_mapped && r->owner_unplug.requested)
                obj_add(o, "owner_unplug", unplug_to_json(&r->owner_unplug, &ok), &ok);
        for (size_t i = 0; i < r->n_peers; i++) {
                struct json_object *p = json_object_new_object();
                obj_add_str(p, "domain", r->peers[i].domain, &ok);
                obj_add_str(p, "access", access_to_string(r->peers[i].access), &ok);
                obj_add_str(p, "state", peer_state_to_string(r->peers[i].state), &ok);
                obj_add(p, "mapped", json_object_new_boolean(r->peers[i].mapped), &ok);
                if (r->peers[i].mapped && r->peers[i].unplug.requested)
                        obj_add(p, "unplug", unplug_to_json(&r->peers[i].unplug, &ok), &ok);
                arr_add(peers, p, &ok);
        }
        obj_add(o, "peers", peers, &ok);
        if (!ok) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

/* Room for one more fd in the reply, checked before a call that would produce one. */
static int check_fd_room(const struct rpc_reply_fds *fds, struct rpc_error *err) {
        if (fds && fds->n >= RPC_MAX_FDS_PER_LINE)
                return broker_failf(err, BROKER_E_LIMIT, "no room for another fd in this reply");
        return 0;
}

/*
 * Attaches fd (taking it) and records its index as "fd". Without an fd table the transport
 * cannot pass one, so the reply simply has none.
 */
static int attach_fd(struct json_object *o, struct rpc_reply_fds *fds, int fd) {
        bool ok = true;
        int idx;

        if (fd < 0)
                return 0;
        if (!fds) {
                close(fd);
                return 0;
        }
        idx = rpc_reply_add_fd(fds, fd);
        if (idx < 0)
                return idx;
        obj_add(o, "fd", json_object_new_int(idx), &ok);
        if (!ok) {
                /* The index is already claimed: close the fd and drop it from the line. */
                fds->n--;
                close(fds->fds[fds->n]);
                return -ENOMEM;
        }
        return 0;
}

/* ---- agent methods ---- */

static int method_broker_info(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                              struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { NULL };
        const struct rpc_server_limits *limits, defaults = RPC_SERVER_LIMITS_DEFAULT;
        _cleanup_(xfreep) const char **domains = NULL;
        struct json_object *o, *arr, *lim;
        size_t n = 0;
        bool ok = true;
        int q;

        (void) fds;
        q = params_check(params, allowed, err);
        if (q < 0)
                return q;
        if (!c->admin) {
                q = agent_domains(m, c->uid, &domains, &n);
                if (q < 0)
                        return internal_error(err, q);
        }
        limits = m->server ? rpc_server_limits(m->server) : &defaults;

        o = json_object_new_object();
        obj_add_str(o, "version", VERSION, &ok);
        obj_add_str(o, "backend", m->backend_name, &ok);
        obj_add_u64(o, "uid", c->uid, &ok);
        obj_add(o, "admin", json_object_new_boolean(c->admin), &ok);
        arr = json_object_new_array();
        for (size_t i = 0; i < n; i++)
                arr_add(arr, json_object_new_string(domains[i]), &ok);
        obj_add(o, "domains", arr, &ok);
        lim = json_object_new_object();
        obj_add_u64(lim, "max_message", limits->max_message, &ok);
        obj_add_u64(lim, "max_depth", limits->max_depth, &ok);
        obj_add_u64(lim, "max_batch", limits->max_batch, &ok);
        obj_add_u64(lim, "max_connections_per_uid", limits->max_connections_per_uid, &ok);
        obj_add_u64(lim, "max_pending_bytes", limits->max_pending_bytes, &ok);
        obj_add(o, "limits", lim, &ok);
        return result_finish(o, ok, ret, err);
}

static int parse_peers(struct json_object *params, struct broker_share_peer *peers, size_t *ret_n,
                       struct rpc_error *err) {
        static const char *const allowed[] = { "domain", "access", NULL };
        struct json_object *arr = member_get(params, "peers");
        size_t n;
        int q;

        if (!arr)
                return invalid_params(err, "peers", "missing");
        if (!json_object_is_type(arr, json_type_array))
                return invalid_params(err, "peers", "expected an array");
        n = json_object_array_length(arr);
        if (n > BROKER_MAX_PEERS)
                return broker_failf(err, BROKER_E_LIMIT, "%zu peers; at most %d", n, BROKER_MAX_PEERS);
        for (size_t i = 0; i < n; i++) {
                struct json_object *p = json_object_array_get_idx(arr, i), *v;
                char path[48];
                const char *access;

                snprintf(path, sizeof(path), "peers[%zu]", i);
                if (!json_object_is_type(p, json_type_object))
                        return invalid_params(err, path, "expected an object");
                json_object_object_foreach(p, key, val) {
                        bool known = false;
                        (void) val;
                        for (size_t k = 0; allowed[k] && !known; k++)
                                known = strcmp(key, allowed[k]) == 0;
                        if (!known) {
                                char kpath[128];
                                snprintf(kpath, sizeof(kpath), "%s.%.64s", path, key);
                                return invalid_params(err, kpath, "unknown member");
                        }
                }
                snprintf(path, sizeof(path), "peers[%zu].domain", i);
                v = member_get(p, "domain");
                if (!v)
                        return invalid_params(err, path, "missing");
                q = value_name(v, path, &peers[i].domain, err);
                if (q < 0)
                        return q;
                snprintf(path, sizeof(path), "peers[%zu].access", i);
                v = member_get(p, "access");
                if (!v)
                        return invalid_params(err, path, "missing");
                if (!json_object_is_type(v, json_type_string))
                        return invalid_params(err, path, "expected \"ro\" or \"rw\"");
                access = json_object_get_string(v);
                if (access_from_string(access, &peers[i].access) < 0 ||
                    strlen(access) != (size_t) json_object_get_string_len(v))
                        return invalid_params(err, path, "expected \"ro\" or \"rw\"");
        }
        *ret_n = n;
        return 0;
}

static int method_region_share(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                               struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { "owner", "device", "size", "peers", "numa_node",
                                               "alignment", "label", "base", NULL };
        struct broker_share_peer peers[BROKER_MAX_PEERS];
        struct broker_share_request req = { .peers = peers };
        struct broker_share_result res;
        struct broker_error berr = {};
        struct broker_caller bc = caller_of(c);
        struct json_object *o, *tokens;
        uint64_t numa = 0;
        bool ok = true;
        int q;

        q = params_check(params, allowed, err);
        if (q >= 0)
                q = param_name(params, "owner", true, &req.owner, err);
        if (q >= 0)
                q = param_name(params, "device", true, &req.device, err);
        if (q >= 0)
                q = param_u64(params, "size", true, NULL, &req.size, err);
        if (q >= 0)
                q = parse_peers(params, peers, &req.n_peers, err);
        if (q >= 0)
                q = param_u64(params, "numa_node", false, &req.has_numa_node, &numa, err);
        if (q >= 0)
                q = param_u64(params, "alignment", false, NULL, &req.alignment, err);
        if (q >= 0)
                q = param_string(params, "label", false, BROKER_MAX_LABEL, &req.label, err);
        if (q >= 0)
                q = param_u64(params, "base", false, &req.place, &req.base, err);
        if (q < 0)
                return q;
        if (req.has_numa_node && numa > UINT32_MAX)
                return broker_failf(err, BROKER_E_INVALID, "numa_node %" PRIu64 " is out of range", numa);
        req.numa_node = (uint32_t) numa;

        q = check_acts_for(m, c, req.owner, err);
        if (q < 0)
                return q;
        q = check_fd_room(fds, err);
        if (q < 0)
                return q;

        q = broker_share(m->broker, &bc, &req, &res, &berr);
        if (q < 0)
                return broker_fail(err, &berr);

        o = json_object_new_object();
        if (res.bounce) {
                obj_add_str(o, "placement", "bounce", &ok);
                obj_add_str(o, "reason", res.reason, &ok);
                return result_finish(o, ok, ret, err);
        }
        obj_add_str(o, "placement", "region", &ok);
        obj_add_u64(o, "region", res.region, &ok);
        obj_add_addr(o, "base", res.base, &ok);
        obj_add_u64(o, "size", res.size, &ok);
        obj_add_u64(o, "alignment", res.alignment, &ok);
        obj_add_str(o, "pool", res.pool, &ok);
        tokens = json_object_new_array();
        for (size_t i = 0; i < res.n_tokens; i++) {
                struct json_object *t = json_object_new_object();
                obj_add_str(t, "domain", res.tokens[i].domain, &ok);
                obj_add_str(t, "token", res.tokens[i].token, &ok);
                arr_add(tokens, t, &ok);
        }
        obj_add(o, "tokens", tokens, &ok);
        explicit_bzero(res.tokens, sizeof(res.tokens));
        if (ok)
                q = attach_fd(o, fds, TAKE_FD(res.owner_fd));
        else
                closep(&res.owner_fd);
        if (!ok || q < 0) {
                json_object_put(o);
                (void) broker_share_undo(m->broker, &bc, res.region, NULL);
                return internal_error(err, q < 0 ? q : -ENOMEM);
        }
        *ret = o;
        return 0;
}

static int method_region_attach(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                                struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { "domain", "token", NULL };
        const char *domain = NULL, *token = NULL;
        struct broker_attach_result res;
        struct broker_error berr = {};
        struct broker_caller bc = caller_of(c);
        struct json_object *o;
        bool ok = true;
        int q;

        q = params_check(params, allowed, err);
        if (q >= 0)
                q = param_name(params, "domain", true, &domain, err);
        if (q >= 0)
                q = param_string(params, "token", true, METHODS_MAX_TOKEN, &token, err);
        if (q < 0)
                return q;
        q = check_acts_for(m, c, domain, err);
        if (q < 0)
                return q;
        q = check_fd_room(fds, err);
        if (q < 0)
                return q;

        q = broker_attach(m->broker, &bc, domain, token, &res, &berr);
        if (q < 0)
                return broker_fail(err, &berr);

        o = json_object_new_object();
        obj_add_u64(o, "region", res.region, &ok);
        obj_add_addr(o, "base", res.base, &ok);
        obj_add_u64(o, "size", res.size, &ok);
        obj_add_str(o, "access", access_to_string(res.access), &ok);
        if (ok)
                q = attach_fd(o, fds, TAKE_FD(res.fd));
        else
                closep(&res.fd);
        if (!ok || q < 0) {
                /* The token is spent; give the grant back so the region does not wait on a peer
                 * that never got its memory. */
                json_object_put(o);
                (void) broker_attach_undo(m->broker, &bc, domain, res.region, NULL);
                return internal_error(err, q < 0 ? q : -ENOMEM);
        }
        *ret = o;
        return 0;
}

static int method_region_release(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                                 struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { "domain", "region", NULL };
        const char *domain = NULL;
        struct broker_error berr = {};
        struct broker_caller bc = caller_of(c);
        struct broker_region_info info;
        uint64_t region = 0;
        int q;

        (void) fds;
        q = params_check(params, allowed, err);
        if (q >= 0)
                q = param_name(params, "domain", true, &domain, err);
        if (q >= 0)
                q = param_u64(params, "region", true, NULL, &region, err);
        if (q < 0)
                return q;
        q = check_acts_for(m, c, domain, err);
        if (q < 0)
                return q;
        q = broker_release(m->broker, &bc, domain, region, &info, &berr);
        if (q < 0)
                return broker_fail(err, &berr);
        return region_state_result(&info, ret, err);
}

static int parse_revoke(struct json_object *params, uint64_t *ret_region, uint64_t *ret_timeout, bool *ret_force,
                        struct rpc_error *err) {
        uint64_t ms = METHODS_DEFAULT_REVOKE_MS;
        int q;

        q = param_u64(params, "region", true, NULL, ret_region, err);
        if (q >= 0)
                q = param_u64(params, "deadline_ms", false, NULL, &ms, err);
        if (q >= 0)
                q = param_bool(params, "force", ret_force, err);
        if (q < 0)
                return q;
        if (ms > BROKER_MAX_REVOKE_TIMEOUT_USEC / 1000)
                return broker_failf(err, BROKER_E_INVALID, "deadline_ms may be at most %" PRIu64,
                                    BROKER_MAX_REVOKE_TIMEOUT_USEC / 1000);
        *ret_timeout = ms * 1000;
        return 0;
}

/* region.revoke names the owner it acts as; admin.revoke acts as admin for any owner. */
static int revoke_common(struct methods *m, const struct rpc_caller *c, struct json_object *params, bool by_owner,
                         struct json_object **ret, struct rpc_error *err) {
        static const char *const owner_allowed[] = { "owner", "region", "deadline_ms", "force", NULL };
        static const char *const admin_allowed[] = { "region", "deadline_ms", "force", NULL };
        const char *owner = NULL;
        struct broker_error berr = {};
        struct broker_caller bc = caller_of(c);
        struct broker_region_info info;
        uint64_t region = 0, timeout = 0;
        bool force = false;
        int q;

        q = params_check(params, by_owner ? owner_allowed : admin_allowed, err);
        if (q >= 0 && by_owner)
                q = param_name(params, "owner", true, &owner, err);
        if (q >= 0)
                q = parse_revoke(params, &region, &timeout, &force, err);
        if (q >= 0 && by_owner)
                q = check_acts_for(m, c, owner, err);
        if (q < 0)
                return q;
        q = broker_revoke(m->broker, &bc, owner, region, timeout, force, &info, &berr);
        if (q < 0)
                return broker_fail(err, &berr);
        return region_state_result(&info, ret, err);
}

static int method_region_revoke(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                                struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        (void) fds;
        return revoke_common(m, c, params, true, ret, err);
}

static int method_region_get(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                             struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { "region", NULL };
        struct broker_region_info info;
        struct broker_error berr = {};
        struct broker_caller bc = caller_of(c);
        struct json_object *o;
        uint64_t region = 0;
        int q;

        (void) fds;
        q = params_check(params, allowed, err);
        if (q >= 0)
                q = param_u64(params, "region", true, NULL, &region, err);
        if (q < 0)
                return q;
        if (broker_region_get(m->broker, &bc, region, &info, &berr) < 0)
                return broker_fail(err, &berr);
        o = region_to_json(&info);
        return result_finish(o, o != NULL, ret, err);
}

struct list_walk {
        struct methods *m;
        const struct rpc_caller *caller;
        const char *domain, *device, *pool;
        bool has_state;
        enum region_state state;
        struct json_object *regions;
        bool ok;
};

static int list_one(void *userdata, const struct broker_region_info *r) {
        struct list_walk *w = userdata;

        if (w->has_state && r->state != w->state)
                return 0;
        if (w->device && strcmp(w->device, r->device) != 0)
                return 0;
        if (w->pool && !streq_ptr(w->pool, r->pool))
                return 0;
        if (w->domain) {
                bool match = strcmp(w->domain, r->owner) == 0;
                for (size_t i = 0; i < r->n_peers && !match; i++)
                        match = strcmp(w->domain, r->peers[i].domain) == 0;
                if (!match)
                        return 0;
        }
        arr_add(w->regions, region_to_json(r), &w->ok);
        return w->ok ? 0 : -ENOMEM;
}

static int cmp_region_json(const void *a, const void *b) {
        struct json_object *const *x = a, *const *y = b;
        struct json_object *rx = member_get(*x, "region"), *ry = member_get(*y, "region");
        uint64_t ix = json_object_get_uint64(rx), iy = json_object_get_uint64(ry);

        return ix < iy ? -1 : ix > iy;
}

static int method_region_list(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                              struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { "domain", "state", "device", "pool", NULL };
        struct list_walk w = { .m = m, .caller = c, .ok = true };
        const char *state = NULL;
        struct json_object *o;
        bool ok = true;
        int q;

        (void) fds;
        q = params_check(params, allowed, err);
        if (q >= 0)
                q = param_name(params, "domain", false, &w.domain, err);
        if (q >= 0)
                q = param_string(params, "state", false, METHODS_MAX_STRING, &state, err);
        if (q >= 0)
                q = param_name(params, "device", false, &w.device, err);
        if (q >= 0)
                q = param_name(params, "pool", false, &w.pool, err);
        if (q < 0)
                return q;
        if (state) {
                if (region_state_from_string(state, &w.state) < 0)
                        return invalid_params(err, "state",
                                              "expected \"offered\", \"active\", \"revoking\" or \"reclaimed\"");
                w.has_state = true;
        }
        if (w.domain) {
                q = check_acts_for(m, c, w.domain, err);
                if (q < 0)
                        return q;
        }

        w.regions = json_object_new_array();
        if (!w.regions)
                return internal_error(err, -ENOMEM);
        q = broker_region_foreach(m->broker, &(struct broker_caller) { .uid = c->uid, .admin = c->admin }, list_one,
                                  &w);
        if (q < 0 || !w.ok) {
                json_object_put(w.regions);
                return internal_error(err, q < 0 ? q : -ENOMEM);
        }
        json_object_array_sort(w.regions, cmp_region_json);
        o = json_object_new_object();
        obj_add(o, "regions", w.regions, &ok);
        return result_finish(o, ok, ret, err);
}

static int method_route_lookup(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                               struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { "device", "domain", NULL };
        const char *device = NULL, *domain = NULL;
        struct broker_route_info route;
        struct broker_error berr = {};
        struct broker_caller bc = caller_of(c);
        struct json_object *o;
        bool ok = true;
        int q;

        (void) fds;
        q = params_check(params, allowed, err);
        if (q >= 0)
                q = param_name(params, "device", true, &device, err);
        if (q >= 0)
                q = param_name(params, "domain", true, &domain, err);
        if (q < 0)
                return q;
        q = broker_route_lookup(m->broker, &bc, device, domain, &route, &berr);
        if (q < 0)
                return broker_fail(err, &berr);

        o = json_object_new_object();
        if (!route.found)
                obj_add_str(o, "route", "none", &ok);
        else if (route.kind == ROUTE_REGION) {
                obj_add_str(o, "route", "region", &ok);
                obj_add_u64(o, "region", route.region, &ok);
                obj_add_addr(o, "base", route.base, &ok);
                obj_add_u64(o, "size", route.size, &ok);
                obj_add_str(o, "access", access_to_string(route.access), &ok);
        } else {
                obj_add_str(o, "route", "bounce", &ok);
                obj_add_str(o, "reason", route.reason ?: "", &ok);
        }
        return result_finish(o, ok, ret, err);
}

static int subscription_add_domain(struct subscription *s, const char *domain) {
        char **l, *d;

        for (size_t i = 0; i < s->n_domains; i++)
                if (strcmp(s->domains[i], domain) == 0)
                        return 0;
        d = strdup(domain);
        if (!d)
                return -ENOMEM;
        l = reallocarray(s->domains, s->n_domains + 1, sizeof(*l));
        if (!l) {
                free(d);
                return -ENOMEM;
        }
        s->domains = l;
        s->domains[s->n_domains++] = d;
        return 0;
}

static int method_events_subscribe(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                                   struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { "domains", NULL };
        _cleanup_(subscription_freep) struct subscription *s = NULL;
        struct json_object *arr, *o, *list;
        struct subscription *old;
        size_t n = 0;
        bool ok = true;
        int q;

        (void) fds;
        q = params_check(params, allowed, err);
        if (q < 0)
                return q;
        arr = member_get(params, "domains");
        if (arr) {
                if (!json_object_is_type(arr, json_type_array))
                        return invalid_params(err, "domains", "expected an array of domain names");
                n = json_object_array_length(arr);
                if (n > METHODS_MAX_SUBSCRIBE_DOMAINS)
                        return broker_failf(err, BROKER_E_LIMIT, "%zu domains; at most %d", n,
                                            METHODS_MAX_SUBSCRIBE_DOMAINS);
        }

        s = calloc(1, sizeof(*s));
        if (!s)
                return internal_error(err, -ENOMEM);
        s->connection = c->connection;
        s->uid = c->uid;
        s->admin = c->admin;

        /* Check every name before anything is kept: a refused subscribe changes nothing. */
        for (size_t i = 0; i < n; i++) {
                const char *d;
                char path[48];

                snprintf(path, sizeof(path), "domains[%zu]", i);
                q = value_name(json_object_array_get_idx(arr, i), path, &d, err);
                if (q < 0)
                        return q;
                q = check_acts_for(m, c, d, err);
                if (q < 0)
                        return q;
                q = subscription_add_domain(s, d);
                if (q < 0)
                        return internal_error(err, q);
        }
        /* No domain named (absent or []): the default, every domain the caller acts for. */
        if (n == 0) {
                if (c->admin)
                        s->all = true;
                else {
                        _cleanup_(xfreep) const char **domains = NULL;
                        size_t nd = 0;

                        q = agent_domains(m, c->uid, &domains, &nd);
                        for (size_t i = 0; q >= 0 && i < nd; i++)
                                q = subscription_add_domain(s, domains[i]);
                        if (q < 0)
                                return internal_error(err, q);
                }
        }

        o = json_object_new_object();
        list = json_object_new_array();
        for (size_t i = 0; i < s->n_domains; i++)
                arr_add(list, json_object_new_string(s->domains[i]), &ok);
        obj_add(o, "domains", list, &ok);
        if (!ok) {
                json_object_put(o);
                return internal_error(err, -ENOMEM);
        }

        /* Re-subscribing replaces what the connection had. */
        old = hashmap_remove(m->subscriptions, &c->connection);
        q = hashmap_put(m->subscriptions, &s->connection, s);
        if (q < 0) {
                if (old)
                        (void) hashmap_put(m->subscriptions, &old->connection, old);
                json_object_put(o);
                return internal_error(err, q);
        }
        subscription_free(old);
        TAKE_PTR(s);
        *ret = o;
        return 0;
}

/* ---- admin methods ---- */

static int method_admin_revoke(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                               struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        (void) fds;
        return revoke_common(m, c, params, false, ret, err);
}

static int method_admin_domain_gone(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                                    struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { "domain", NULL };
        struct broker_error berr = {};
        struct broker_caller bc = caller_of(c);
        const char *domain = NULL;
        struct json_object *o;
        bool ok = true;
        int q;

        (void) fds;
        q = params_check(params, allowed, err);
        if (q >= 0)
                q = param_name(params, "domain", true, &domain, err);
        if (q < 0)
                return q;
        q = broker_domain_gone(m->broker, &bc, domain, NULL, &berr);
        if (q < 0)
                return broker_fail(err, &berr);
        o = json_object_new_object();
        obj_add_str(o, "domain", domain, &ok);
        return result_finish(o, ok, ret, err);
}

static int method_admin_reconcile(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                                  struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { NULL };
        struct broker_reconcile_result res = {};
        struct json_object *o;
        bool ok = true;
        int q;

        (void) c, (void) fds;
        q = params_check(params, allowed, err);
        if (q < 0)
                return q;
        q = broker_reconcile(m->broker, &res);
        if (q < 0)
                return broker_failf(err, BROKER_E_BACKEND, "reconciling with the %s backend: %s", m->backend_name,
                                    strerror(-q));
        o = json_object_new_object();
        obj_add_str(o, "backend", m->backend_name, &ok);
        obj_add_u64(o, "checked", res.checked, &ok);
        obj_add_u64(o, "repaired", res.repaired, &ok);
        obj_add_u64(o, "revoked", res.revoked, &ok);
        obj_add_u64(o, "completed", res.completed, &ok);
        obj_add_u64(o, "detached", res.detached, &ok);
        return result_finish(o, ok, ret, err);
}

static int domains_one(void *userdata, const struct broker_domain_info *d) {
        struct json_object *arr = userdata, *o = json_object_new_object();
        bool ok = true;

        obj_add_str(o, "domain", d->domain, &ok);
        obj_add_u64(o, "regions_owned", d->regions_owned, &ok);
        obj_add_u64(o, "bytes_owned", d->bytes_owned, &ok);
        obj_add_limit(o, "max_regions", d->max_regions, &ok);
        obj_add_limit(o, "max_bytes", d->max_bytes, &ok);
        obj_add_u64(o, "attached", d->attached, &ok);
        arr_add(arr, o, &ok);
        return ok ? 0 : -ENOMEM;
}

static int method_admin_domains(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                                struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { NULL };
        struct broker_caller bc = caller_of(c);
        struct broker_error berr = {};
        struct json_object *o, *arr;
        bool ok = true;
        int q;

        (void) fds;
        q = params_check(params, allowed, err);
        if (q < 0)
                return q;
        arr = json_object_new_array();
        if (!arr)
                return internal_error(err, -ENOMEM);
        q = broker_domain_foreach(m->broker, &bc, domains_one, arr, &berr);
        if (q < 0) {
                json_object_put(arr);
                return berr.code ? broker_fail(err, &berr) : internal_error(err, q);
        }
        o = json_object_new_object();
        obj_add(o, "domains", arr, &ok);
        return result_finish(o, ok, ret, err);
}

static int pools_one(void *userdata, const struct broker_pool_info *p) {
        struct json_object *arr = userdata, *j = json_object_new_object();
        bool ok = true;

        obj_add_str(j, "pool", p->pool, &ok);
        obj_add_u64(j, "numa_node", p->numa_node, &ok);
        obj_add_addr(j, "base", p->base, &ok);
        obj_add_u64(j, "size", p->size, &ok);
        obj_add_u64(j, "granule", p->granule, &ok);
        obj_add_u64(j, "used", p->used, &ok);
        obj_add_u64(j, "free", p->free, &ok);
        obj_add_u64(j, "regions", p->regions, &ok);
        arr_add(arr, j, &ok);
        return ok ? 0 : -ENOMEM;
}

static int numa_one(void *userdata, const struct broker_numa_info *n) {
        struct json_object *arr = userdata, *j = json_object_new_object();
        bool ok = true;

        obj_add_u64(j, "numa_node", n->numa_node, &ok);
        obj_add_u64(j, "size", n->size, &ok);
        obj_add_u64(j, "used", n->used, &ok);
        arr_add(arr, j, &ok);
        return ok ? 0 : -ENOMEM;
}

static int method_admin_pools(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                              struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { NULL };
        struct broker_caller bc = caller_of(c);
        struct broker_error berr = {};
        struct json_object *o, *pools, *numa;
        bool ok = true;
        int q;

        (void) fds;
        q = params_check(params, allowed, err);
        if (q < 0)
                return q;
        o = json_object_new_object();
        pools = json_object_new_array();
        numa = json_object_new_array();
        obj_add(o, "pools", pools, &ok);
        obj_add(o, "numa", numa, &ok);
        if (!ok) {
                json_object_put(o);
                return internal_error(err, -ENOMEM);
        }
        q = broker_pool_foreach(m->broker, &bc, pools_one, pools, &berr);
        if (q >= 0)
                q = broker_numa_foreach(m->broker, &bc, numa_one, numa, &berr);
        if (q < 0) {
                json_object_put(o);
                return berr.code ? broker_fail(err, &berr) : internal_error(err, q);
        }
        return result_finish(o, ok, ret, err);
}

struct audit_walk {
        struct json_object *entries;
        bool ok;
};

static int audit_one(void *userdata, const struct store_audit *a) {
        struct audit_walk *w = userdata;
        struct json_object *e = json_object_new_object();

        obj_add_i64(e, "seq", a->seq, &w->ok);
        obj_add_i64(e, "time_usec", a->time, &w->ok);
        obj_add_str(e, "actor", a->actor, &w->ok);
        obj_add_str(e, "action", a->action, &w->ok);
        if (a->region)
                obj_add_u64(e, "region", a->region, &w->ok);
        else
                obj_add_null(e, "region", &w->ok);
        obj_add_str(e, "domain", a->domain, &w->ok);
        obj_add_str(e, "from", a->from_state, &w->ok);
        obj_add_str(e, "to", a->to_state, &w->ok);
        obj_add_str(e, "reason", a->reason, &w->ok);
        arr_add(w->entries, e, &w->ok);
        return w->ok ? 0 : -ENOMEM;
}

static int method_admin_audit(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                              struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { "after_seq", "since_usec", "limit", NULL };
        uint64_t after = 0, since = 0, limit = METHODS_DEFAULT_AUDIT_LIMIT;
        struct audit_walk w = { .ok = true };
        struct broker_caller bc = caller_of(c);
        struct broker_error berr = {};
        struct json_object *o;
        bool ok = true;
        int q;

        (void) fds;
        q = params_check(params, allowed, err);
        if (q >= 0)
                q = param_u64(params, "after_seq", false, NULL, &after, err);
        if (q >= 0)
                q = param_u64(params, "since_usec", false, NULL, &since, err);
        if (q >= 0)
                q = param_u64(params, "limit", false, NULL, &limit, err);
        if (q < 0)
                return q;
        if (after > INT64_MAX)
                return broker_failf(err, BROKER_E_INVALID, "after_seq is out of range");
        if (since > INT64_MAX)
                return broker_failf(err, BROKER_E_INVALID, "since_usec is out of range");
        if (limit < 1 || limit > METHODS_MAX_AUDIT_LIMIT)
                return broker_failf(err, BROKER_E_INVALID, "limit must be 1..%d", METHODS_MAX_AUDIT_LIMIT);

        w.entries = json_object_new_array();
        if (!w.entries)
                return internal_error(err, -ENOMEM);
        q = broker_audit_foreach(m->broker, &bc, (int64_t) after, (int64_t) since, (unsigned) limit, false,
                                 audit_one, &w, &berr);
        if (q < 0 || !w.ok) {
                json_object_put(w.entries);
                if (q < 0 && berr.code)
                        return broker_fail(err, &berr);
                return internal_error(err, -ENOMEM);
        }
        o = json_object_new_object();
        obj_add(o, "entries", w.entries, &ok);
        return result_finish(o, ok, ret, err);
}

static int method_admin_stats(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                              struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { NULL };
        struct rpc_server_stats st = {};
        struct broker_stats w = {};
        struct broker_caller bc = caller_of(c);
        struct broker_error berr = {};
        struct json_object *o;
        int64_t up;
        bool ok = true;
        int q;

        (void) fds;
        q = params_check(params, allowed, err);
        if (q < 0)
                return q;
        if (m->server)
                rpc_server_get_stats(m->server, &st);
        q = broker_stats(m->broker, &bc, &w, &berr);
        if (q < 0)
                return broker_fail(err, &berr);
        up = monotonic_usec() - m->started;

        o = json_object_new_object();
        obj_add_i64(o, "uptime_usec", up > 0 ? up : 0, &ok);
        obj_add_u64(o, "connections", st.connections, &ok);
        obj_add_u64(o, "requests", st.requests, &ok);
        obj_add_u64(o, "errors", st.errors, &ok);
        obj_add_u64(o, "regions_live", w.regions_live, &ok);
        obj_add_u64(o, "regions_revoking", w.regions_revoking, &ok);
        obj_add_u64(o, "subscribers", hashmap_size(m->subscriptions), &ok);
        obj_add_u64(o, "dropped_subscribers", m->dropped_subscribers, &ok);
        return result_finish(o, ok, ret, err);
}

int methods_reload(struct methods *m, struct diag_list *diags) {
        if (!m->broker)
                return -ENXIO;
        if (!m->policy_path) {
                (void) diag_add(diags, DIAG_ERROR, "", "brokerd was started without a policy file to reload");
                return -EINVAL;
        }
        return broker_reload_policy(m->broker, m->policy_path, diags);
}

static int method_admin_reload(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                               struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err) {
        static const char *const allowed[] = { NULL };
        struct diag_list diags = DIAG_LIST_INIT;
        struct json_object *o, *data, *list;
        bool ok = true;
        int q;

        (void) c, (void) fds;
        q = params_check(params, allowed, err);
        if (q < 0)
                return q;
        q = methods_reload(m, &diags);
        if (q >= 0) {
                diag_list_clear(&diags);
                o = json_object_new_object();
                obj_add(o, "reloaded", json_object_new_boolean(true), &ok);
                return result_finish(o, ok, ret, err);
        }

        data = json_object_new_object();
        list = json_object_new_array();
        for (size_t i = 0; i < diags.n; i++) {
                const struct diag *d = &diags.items[i];
                char *s = NULL;

                if (asprintf(&s, "%s%s%s%s", d->severity == DIAG_WARNING ? "warning: " : "", d->path,
                             d->path[0] ? ": " : "", d->message) < 0) {
                        ok = false;
                        continue;
                }
                arr_add(list, json_object_new_string(s), &ok);
                free(s);
        }
        if (diags.n == 0)
                arr_add(list, json_object_new_string(strerror(-q)), &ok);
        obj_add(data, "diagnostics", list, &ok);
        diag_list_clear(&diags);
        q = broker_failf(err, BROKER_E_INVALID, "policy %s not reloaded; the policy in force is kept",
                         m->policy_path ?: "(none)");
        if (ok)
                err->data = data;
        else
                json_object_put(data);
        return q;
}

/* ---- dispatch ---- */

typedef int (*method_fn)(struct methods *m, const struct rpc_caller *c, struct json_object *params,
                         struct rpc_reply_fds *fds, struct json_object **ret, struct rpc_error *err);

static const struct {
        const char *name;
        bool admin;
        method_fn fn;
} method_table[] = {
        { "broker.info", false, method_broker_info },
        { "region.share", false, method_region_share },
        { "region.attach", false, method_region_attach },
        { "region.release", false, method_region_release },
        { "region.revoke", false, method_region_revoke },
        { "region.get", false, method_region_get },
        { "region.list", false, method_region_list },
        { "route.lookup", false, method_route_lookup },
        { "events.subscribe", false, method_events_subscribe },
        { "admin.revoke", true, method_admin_revoke },
        { "admin.domain_gone", true, method_admin_domain_gone },
        { "admin.reconcile", true, method_admin_reconcile },
        { "admin.domains", true, method_admin_domains },
        { "admin.pools", true, method_admin_pools },
        { "admin.audit", true, method_admin_audit },
        { "admin.stats", true, method_admin_stats },
        { "admin.reload", true, method_admin_reload },
};

int methods_handle(void *userdata, const struct rpc_caller *caller, const char *method, struct json_object *params,
                   struct rpc_reply_fds *fds, struct json_object **ret_result, struct rpc_error *err) {
        struct methods *m = userdata;

        for (size_t i = 0; method && i < ELEMENTSOF(method_table); i++) {
                if (strcmp(method, method_table[i].name) != 0)
                        continue;
                if (method_table[i].admin && !caller->admin)
                        return rpc_error_from_broker(err, BROKER_E_FORBIDDEN, "admin socket only");
                if (!m->broker)
                        return internal_error(err, -ENXIO);
                return method_table[i].fn(m, caller, params, fds, ret_result, err);
        }
        return rpc_error_set(err, RPC_METHOD_NOT_FOUND, "unknown method %.64s", method ?: "");
}

void methods_disconnect(void *userdata, uint64_t connection) {
        struct methods *m = userdata;

        subscription_free(hashmap_remove(m->subscriptions, &connection));
}

/* ---- events ---- */

static bool subscription_wants(const struct methods *m, const struct subscription *s, const char *const *targets,
                               size_t n_targets) {
        if (s->all)
                return true;
        for (size_t i = 0; i < n_targets; i++) {
                if (!targets[i])
                        continue;
                for (size_t j = 0; j < s->n_domains; j++)
                        /* An agent whose domain was taken away by a reload hears no more of it. */
                        if (strcmp(targets[i], s->domains[j]) == 0 &&
                            broker_caller_acts_for(m->broker, &(struct broker_caller) { .uid = s->uid, .admin = s->admin },
                                                   targets[i]))
                                return true;
        }
        return false;
}

void methods_on_event(void *userdata, const struct broker_event *ev) {
        struct methods *m = userdata;
        const char *targets[2 + BROKER_MAX_PEERS] = {};
        size_t n_targets = 0, n = 0, it = 0;
        _cleanup_(xfreep) uint64_t *conns = NULL;
        const char *method = NULL;
        struct json_object *params;
        bool ok = true;
        void *v;

        if (!m->notify || hashmap_size(m->subscriptions) == 0)
                return;

        switch (ev->type) {
        case BROKER_EVENT_ATTACHED:
                method = "region.attached";
                targets[n_targets++] = ev->owner;
                break;
        case BROKER_EVENT_RECALL:
                method = "region.recall";
                targets[n_targets++] = ev->domain;
                break;
        case BROKER_EVENT_RELEASED:
                method = "region.released";
                targets[n_targets++] = ev->owner;
                break;
        case BROKER_EVENT_REVOKED:
                method = "region.revoked";
                targets[n_targets++] = ev->owner;
                targets[n_targets++] = ev->domain;
                break;
        case BROKER_EVENT_RECLAIMED:
                method = "region.reclaimed";
                targets[n_targets++] = ev->owner;
                for (size_t i = 0; i < ev->n_peers && n_targets < ELEMENTSOF(targets); i++)
                        targets[n_targets++] = ev->peers[i].domain;
                break;
        case BROKER_EVENT_ROUTE_CHANGED:
                method = "route.changed";
                targets[n_targets++] = ev->domain;
                break;
        case BROKER_EVENT_UNPLUG_OVERDUE:
                method = "region.unplug_overdue";
                targets[n_targets++] = ev->owner;
                targets[n_targets++] = ev->domain;
                break;
        case BROKER_EVENT_RECONCILED:
        case _BROKER_EVENT_TYPE_MAX:
                break;
        }
        if (!method)
                return;

        /* Collect first: a failed notify may drop its connection, which edits the map. */
        conns = calloc(hashmap_size(m->subscriptions), sizeof(*conns));
        if (!conns)
                return;
        while (hashmap_iterate(m->subscriptions, &it, &v))
                if (subscription_wants(m, v, targets, n_targets))
                        conns[n++] = ((struct subscription *) v)->connection;
        if (n == 0)
                return;

        params = json_object_new_object();
        obj_add_u64(params, "region", ev->region, &ok);
        obj_add_str(params, "owner", ev->owner, &ok);
        obj_add_str(params, "device", ev->device, &ok);
        obj_add_str(params, "domain", ev->domain, &ok);
        if (ev->type == BROKER_EVENT_RECALL)
                obj_add_i64(params, "deadline_usec", ev->deadline, &ok);
        if (ev->type == BROKER_EVENT_UNPLUG_OVERDUE)
                obj_add_str(params, "escalation", escalation_to_string(ev->escalation), &ok);
        if (ev->reason)
                obj_add_str(params, "reason", ev->reason, &ok);
        if (!ok) {
                json_object_put(params);
                return;
        }

        for (size_t i = 0; i < n; i++) {
                int q = m->notify(m->notify_userdata, conns[i], method, params);
                if (q == -ENOBUFS || q == -ENOENT) {
                        /* That subscriber is gone (dropped for being slow); the rest still hear. */
                        if (q == -ENOBUFS)
                                m->dropped_subscribers++;
                        subscription_free(hashmap_remove(m->subscriptions, &conns[i]));
                }
        }
        json_object_put(params);
}
