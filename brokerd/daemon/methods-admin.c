/* SPDX-License-Identifier: Apache-2.0 */
/* The admin methods (docs/protocol.md#admin-methods); the table keeps agents out. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/methods-internal.h"

int method_admin_domain_gone(const struct method_call *call, const void *args, struct json_object **ret,
                             struct rpc_error *err) {
        const struct domain_args *a = args;
        struct broker_caller bc = caller_of(call->caller);
        struct broker_error berr = {};
        struct json_object *o;
        bool ok = true;
        int q;

        q = broker_domain_gone(call->m->broker, &bc, a->domain, &berr);
        if (q < 0)
                return broker_fail(err, &berr);
        o = json_object_new_object();
        obj_add_str(o, "domain", a->domain, &ok);
        return result_finish(o, ok, ret, err);
}

int method_admin_reconcile(const struct method_call *call, const void *args, struct json_object **ret,
                           struct rpc_error *err) {
        struct broker_reconcile_result res = {};
        const char *backend = call->m->backend_name;
        struct json_object *o;
        bool ok = true;
        int q;

        (void) args;
        q = broker_reconcile(call->m->broker, &res);
        if (q < 0)
                return broker_failf(err, BROKER_E_BACKEND, "reconciling with the %s backend: %s", backend,
                                    strerror(-q));
        o = json_object_new_object();
        obj_add_str(o, "backend", backend, &ok);
        obj_add_u64(o, "checked", res.checked, &ok);
        obj_add_u64(o, "repaired", res.repaired, &ok);
        obj_add_u64(o, "revoked", res.revoked, &ok);
        obj_add_u64(o, "completed", res.completed, &ok);
        obj_add_u64(o, "detached", res.detached, &ok);
        return result_finish(o, ok, ret, err);
}

/* ---- admin.domains ---- */

struct domain_entry {
        const char *name; /* borrowed: from the broker or the policy, stable during the call */
        uint64_t attached;
};

struct domain_walk {
        struct hashmap *map;
        struct domain_entry *entries;
        size_t n, cap;
};

static int domain_walk_add(struct domain_walk *w, const char *name, struct domain_entry **ret) {
        /* Entries are indexed by position; the map holds indexes + 1 so keys stay stable. */
        void *v = hashmap_get(w->map, name);
        struct domain_entry *e;
        int q;

        if (v) {
                if (ret)
                        *ret = &w->entries[(uintptr_t) v - 1];
                return 0;
        }
        if (w->n == w->cap) {
                size_t ncap = w->cap ? w->cap * 2 : 16;
                e = reallocarray(w->entries, ncap, sizeof(*e));
                if (!e)
                        return -ENOMEM;
                w->entries = e;
                w->cap = ncap;
        }
        w->entries[w->n] = (struct domain_entry) { .name = name };
        q = hashmap_put(w->map, name, (void *) (uintptr_t) (w->n + 1));
        if (q < 0)
                return q;
        if (ret)
                *ret = &w->entries[w->n];
        w->n++;
        return 0;
}

static int domains_one(void *userdata, const struct broker_region_info *r) {
        struct domain_walk *w = userdata;
        int q;

        q = domain_walk_add(w, r->owner, NULL);
        for (size_t i = 0; q >= 0 && i < r->n_peers; i++) {
                struct domain_entry *e;
                q = domain_walk_add(w, r->peers[i].domain, &e);
                if (q >= 0 && r->peers[i].state == PEER_ATTACHED)
                        e->attached++;
        }
        return q;
}

/* Every domain a region or the policy names, once. */
static int domains_collect(struct broker *b, struct domain_walk *w) {
        const struct policy *p = broker_policy(b);
        int q;

        q = hashmap_new(&hashmap_string_ops, &w->map);
        if (q >= 0)
                q = broker_region_foreach(b, domains_one, w);
        for (size_t i = 0; q >= 0 && p && i < p->n_agents; i++)
                for (size_t j = 0; q >= 0 && j < p->agents[i].n_domains; j++)
                        q = domain_walk_add(w, p->agents[i].domains[j], NULL);
        for (size_t i = 0; q >= 0 && p && i < p->n_quotas; i++)
                if (strcmp(p->quotas[i].domain, "*") != 0)
                        q = domain_walk_add(w, p->quotas[i].domain, NULL);
        return q;
}

static int cmp_domain_entry(const void *a, const void *b) {
        const struct domain_entry *x = a, *y = b;
        return strcmp(x->name, y->name);
}

static struct json_object *domain_to_json(struct broker *b, const struct domain_entry *e, bool *ok) {
        struct json_object *d = json_object_new_object();
        uint64_t bytes, regions, max_bytes, max_regions;

        broker_usage(b, e->name, &bytes, &regions);
        policy_quota_for(broker_policy(b), e->name, &max_bytes, &max_regions);
        obj_add_str(d, "domain", e->name, ok);
        obj_add_u64(d, "regions_owned", regions, ok);
        obj_add_u64(d, "bytes_owned", bytes, ok);
        obj_add_limit(d, "max_regions", max_regions, ok);
        obj_add_limit(d, "max_bytes", max_bytes, ok);
        obj_add_u64(d, "attached", e->attached, ok);
        return d;
}

int method_admin_domains(const struct method_call *call, const void *args, struct json_object **ret,
                         struct rpc_error *err) {
        struct domain_walk w = {};
        struct json_object *o = NULL, *arr;
        bool ok = true;
        int q;

        (void) args;
        q = domains_collect(call->m->broker, &w);
        if (q >= 0) {
                if (w.n > 0)
                        qsort(w.entries, w.n, sizeof(*w.entries), cmp_domain_entry);
                o = json_object_new_object();
                arr = json_object_new_array();
                for (size_t i = 0; i < w.n; i++)
                        arr_add(arr, domain_to_json(call->m->broker, &w.entries[i], &ok), &ok);
                obj_add(o, "domains", arr, &ok);
        }
        hashmap_free(w.map);
        free(w.entries);
        if (q < 0)
                return internal_error(err, q);
        return result_finish(o, ok, ret, err);
}

/* ---- admin.pools ---- */

struct pool_walk {
        const struct platform *platform;
        uint64_t *used, *regions;
};

static int pools_one(void *userdata, const struct broker_region_info *r) {
        struct pool_walk *w = userdata;
        const struct platform_pool *pool = r->pool ? platform_find_pool(w->platform, r->pool) : NULL;

        if (pool) {
                size_t i = (size_t) (pool - w->platform->pools);
                w->used[i] += r->size;
                w->regions[i]++;
        }
        return 0;
}

static struct json_object *pool_to_json(const struct platform_pool *pool, uint64_t used, uint64_t regions,
                                        bool *ok) {
        struct json_object *j = json_object_new_object();
        uint64_t size = pool->end - pool->base;

        obj_add_str(j, "pool", pool->name, ok);
        obj_add_u64(j, "numa_node", pool->numa_node, ok);
        obj_add_addr(j, "base", pool->base, ok);
        obj_add_u64(j, "size", size, ok);
        obj_add_u64(j, "granule", pool->granule, ok);
        obj_add_u64(j, "used", used, ok);
        obj_add_u64(j, "free", size > used ? size - used : 0, ok);
        obj_add_u64(j, "regions", regions, ok);
        return j;
}

/* Totals per NUMA node, ascending, each node once. */
static struct json_object *numa_to_json(const struct platform *pl, const uint64_t *used, bool *ok) {
        struct json_object *numa = json_object_new_array();
        uint32_t last_node = 0;

        for (bool have_last = false;; have_last = true) {
                uint64_t size = 0, u = 0;
                uint32_t node = 0;
                bool found = false;

                for (size_t i = 0; i < pl->n_pools; i++) {
                        uint32_t n = pl->pools[i].numa_node;
                        if ((!have_last || n > last_node) && (!found || n < node)) {
                                node = n;
                                found = true;
                        }
                }
                if (!found)
                        return numa;
                for (size_t i = 0; i < pl->n_pools; i++)
                        if (pl->pools[i].numa_node == node) {
                                size += pl->pools[i].end - pl->pools[i].base;
                                u += used[i];
                        }
                struct json_object *j = json_object_new_object();
                obj_add_u64(j, "numa_node", node, ok);
                obj_add_u64(j, "size", size, ok);
                obj_add_u64(j, "used", u, ok);
                arr_add(numa, j, ok);
                last_node = node;
        }
}

int method_admin_pools(const struct method_call *call, const void *args, struct json_object **ret,
                       struct rpc_error *err) {
        const struct platform *pl = broker_platform(call->m->broker);
        _cleanup_(xfreep) uint64_t *used = NULL, *regions = NULL;
        struct json_object *o, *pools;
        bool ok = true;

        (void) args;
        used = calloc(pl->n_pools + 1, sizeof(*used));
        regions = calloc(pl->n_pools + 1, sizeof(*regions));
        if (!used || !regions)
                return internal_error(err, -ENOMEM);
        (void) broker_region_foreach(call->m->broker, pools_one,
                                     &(struct pool_walk) { .platform = pl, .used = used, .regions = regions });

        o = json_object_new_object();
        pools = json_object_new_array();
        for (size_t i = 0; i < pl->n_pools; i++)
                arr_add(pools, pool_to_json(&pl->pools[i], used[i], regions[i], &ok), &ok);
        obj_add(o, "pools", pools, &ok);
        obj_add(o, "numa", numa_to_json(pl, used, &ok), &ok);
        return result_finish(o, ok, ret, err);
}

/* ---- admin.audit, admin.stats, admin.reload ---- */

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

int method_admin_audit(const struct method_call *call, const void *args, struct json_object **ret,
                       struct rpc_error *err) {
        const struct audit_args *a = args;
        struct audit_walk w = { .ok = true };
        struct json_object *o;
        bool ok = true;
        int q;

        w.entries = json_object_new_array();
        if (!w.entries)
                return internal_error(err, -ENOMEM);
        q = store_audit_list(broker_store(call->m->broker), (int64_t) a->after_seq, (int64_t) a->since_usec,
                             (unsigned) a->limit, audit_one, &w);
        if (q < 0 || !w.ok) {
                json_object_put(w.entries);
                if (q < 0 && q != -ENOMEM)
                        return broker_failf(err, BROKER_E_STORE, "could not read the audit log: %s", strerror(-q));
                return internal_error(err, -ENOMEM);
        }
        o = json_object_new_object();
        obj_add(o, "entries", w.entries, &ok);
        return result_finish(o, ok, ret, err);
}

struct stats_walk {
        uint64_t live, revoking;
};

static int stats_one(void *userdata, const struct broker_region_info *r) {
        struct stats_walk *w = userdata;

        if (r->state == REGION_REVOKING)
                w->revoking++;
        else if (r->state == REGION_OFFERED || r->state == REGION_ACTIVE)
                w->live++;
        return 0;
}

int method_admin_stats(const struct method_call *call, const void *args, struct json_object **ret,
                       struct rpc_error *err) {
        struct methods *m = call->m;
        struct rpc_server_stats st = {};
        struct stats_walk w = {};
        struct json_object *o;
        int64_t up;
        bool ok = true;

        (void) args;
        if (m->server)
                rpc_server_get_stats(m->server, &st);
        (void) broker_region_foreach(m->broker, stats_one, &w);
        up = monotonic_usec() - m->started;

        o = json_object_new_object();
        obj_add_i64(o, "uptime_usec", up > 0 ? up : 0, &ok);
        obj_add_u64(o, "connections", st.connections, &ok);
        obj_add_u64(o, "requests", st.requests, &ok);
        obj_add_u64(o, "errors", st.errors, &ok);
        obj_add_u64(o, "regions_live", w.live, &ok);
        obj_add_u64(o, "regions_revoking", w.revoking, &ok);
        obj_add_u64(o, "subscribers", hashmap_size(m->subscriptions), &ok);
        obj_add_u64(o, "dropped_subscribers", m->dropped_subscribers, &ok);
        return result_finish(o, ok, ret, err);
}

/* data.diagnostics: ["path: reason", ...], or the errno's text when the loader said nothing. */
static struct json_object *diagnostics_to_json(const struct diag_list *diags, int q, bool *ok) {
        struct json_object *data = json_object_new_object(), *list = json_object_new_array();

        for (size_t i = 0; i < diags->n; i++) {
                const struct diag *d = &diags->items[i];
                char *s = NULL;

                if (asprintf(&s, "%s%s%s%s", d->severity == DIAG_WARNING ? "warning: " : "", d->path,
                             d->path[0] ? ": " : "", d->message) < 0) {
                        *ok = false;
                        continue;
                }
                arr_add(list, json_object_new_string(s), ok);
                free(s);
        }
        if (diags->n == 0)
                arr_add(list, json_object_new_string(strerror(-q)), ok);
        obj_add(data, "diagnostics", list, ok);
        return data;
}

int method_admin_reload(const struct method_call *call, const void *args, struct json_object **ret,
                        struct rpc_error *err) {
        struct diag_list diags = DIAG_LIST_INIT;
        struct json_object *o, *data;
        bool ok = true;
        int q;

        (void) args;
        q = methods_reload(call->m, &diags);
        if (q >= 0) {
                diag_list_clear(&diags);
                o = json_object_new_object();
                obj_add_bool(o, "reloaded", true, &ok);
                return result_finish(o, ok, ret, err);
        }
        data = diagnostics_to_json(&diags, q, &ok);
        diag_list_clear(&diags);
        q = broker_failf(err, BROKER_E_INVALID, "policy %s not reloaded; the policy in force is kept",
                         call->m->policy_path ?: "(none)");
        if (ok)
                err->data = data;
        else
                json_object_put(data);
        return q;
}
