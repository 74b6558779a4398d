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

        q = broker_domain_gone(call->m->broker, &bc, a->domain, NULL, &berr);
        if (q < 0)
                return fail_with_broker_error(err, &berr);
        o = json_object_new_object();
        obj_add_str(o, "domain", a->domain, &ok);
        return result_finish(o, ok, ret, err);
}

int method_admin_reconcile(const struct method_call *call, const void *args, struct json_object **ret,
                           struct rpc_error *err) {
        struct broker_reconcile_result res = {};
        const char *backend = broker_backend_name(call->m->broker);
        struct json_object *o;
        bool ok = true;
        int q;

        (void) args;
        q = broker_reconcile(call->m->broker, &res);
        if (q < 0)
                return fail_with_code(err, BROKER_E_BACKEND, "reconciling with the %s backend: %s", backend,
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

/* ---- admin.domains, admin.pools: the core's views, formatted ---- */

/*
 * Hands o over once the core's walk (returning q) filled it; a failed walk is the core's
 * refusal, or (stopped by a builder) out of memory.
 */
static int query_finish(struct json_object *o, bool ok, int q, const struct broker_error *berr,
                        struct json_object **ret, struct rpc_error *err) {
        if (q >= 0)
                return result_finish(o, ok, ret, err);
        json_object_put(o);
        return berr->code != BROKER_OK ? fail_with_broker_error(err, berr) : internal_error(err, q);
}

static int domain_one(void *userdata, const struct broker_domain_info *d) {
        struct json_object *arr = userdata, *j = json_object_new_object();
        bool ok = true;

        obj_add_str(j, "domain", d->domain, &ok);
        obj_add_u64(j, "regions_owned", d->regions_owned, &ok);
        obj_add_u64(j, "bytes_owned", d->bytes_owned, &ok);
        obj_add_limit(j, "max_regions", d->max_regions, &ok);
        obj_add_limit(j, "max_bytes", d->max_bytes, &ok);
        obj_add_u64(j, "attached", d->attached, &ok);
        return walk_add(arr, j, ok);
}

int method_admin_domains(const struct method_call *call, const void *args, struct json_object **ret,
                         struct rpc_error *err) {
        struct broker_caller bc = caller_of(call->caller);
        struct broker_error berr = {};
        struct json_object *o = json_object_new_object(), *arr = json_object_new_array();
        bool ok = true;
        int q;

        (void) args;
        obj_add(o, "domains", arr, &ok);
        if (!ok)
                return result_finish(o, ok, ret, err);
        q = broker_domain_foreach(call->m->broker, &bc, domain_one, arr, &berr);
        return query_finish(o, ok, q, &berr, ret, err);
}

static int pool_one(void *userdata, const struct broker_pool_info *p) {
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
        return walk_add(arr, j, ok);
}

static int numa_one(void *userdata, const struct broker_numa_info *n) {
        struct json_object *arr = userdata, *j = json_object_new_object();
        bool ok = true;

        obj_add_u64(j, "numa_node", n->numa_node, &ok);
        obj_add_u64(j, "size", n->size, &ok);
        obj_add_u64(j, "used", n->used, &ok);
        return walk_add(arr, j, ok);
}

int method_admin_pools(const struct method_call *call, const void *args, struct json_object **ret,
                       struct rpc_error *err) {
        struct broker_caller bc = caller_of(call->caller);
        struct broker_error berr = {};
        struct json_object *o = json_object_new_object(), *pools = json_object_new_array(),
                           *numa = json_object_new_array();
        bool ok = true;
        int q;

        (void) args;
        obj_add(o, "pools", pools, &ok);
        obj_add(o, "numa", numa, &ok);
        if (!ok)
                return result_finish(o, ok, ret, err);
        q = broker_pool_foreach(call->m->broker, &bc, pool_one, pools, &berr);
        if (q >= 0)
                q = broker_numa_foreach(call->m->broker, &bc, numa_one, numa, &berr);
        return query_finish(o, ok, q, &berr, ret, err);
}

/* ---- admin.audit, admin.stats, admin.reload ---- */

static int audit_one(void *userdata, const struct store_audit *a) {
        struct json_object *arr = userdata, *e = json_object_new_object();
        bool ok = true;

        obj_add_i64(e, "seq", a->seq, &ok);
        obj_add_i64(e, "time_usec", a->time, &ok);
        obj_add_str(e, "actor", a->actor, &ok);
        obj_add_str(e, "action", a->action, &ok);
        if (a->region)
                obj_add_u64(e, "region", a->region, &ok);
        else
                obj_add_null(e, "region", &ok);
        obj_add_str(e, "domain", a->domain, &ok);
        obj_add_str(e, "from", a->from_state, &ok);
        obj_add_str(e, "to", a->to_state, &ok);
        obj_add_str(e, "reason", a->reason, &ok);
        return walk_add(arr, e, ok);
}

int method_admin_audit(const struct method_call *call, const void *args, struct json_object **ret,
                       struct rpc_error *err) {
        const struct audit_args *a = args;
        struct broker_caller bc = caller_of(call->caller);
        struct broker_error berr = {};
        bool newest = call_has(call, "newest"), ok = true;
        struct json_object *o, *entries;
        int q;

        if (newest && call_has(call, "limit"))
                return fail_with_code(err, BROKER_E_INVALID, "limit and newest exclude each other");
        o = json_object_new_object();
        entries = json_object_new_array();
        obj_add(o, "entries", entries, &ok);
        if (!ok)
                return result_finish(o, ok, ret, err);
        q = broker_audit_foreach(call->m->broker, &bc, (int64_t) a->after_seq, (int64_t) a->since_usec,
                                 (unsigned) (newest ? a->newest : a->limit), newest, audit_one, entries, &berr);
        return query_finish(o, ok, q, &berr, ret, err);
}

int method_admin_stats(const struct method_call *call, const void *args, struct json_object **ret,
                       struct rpc_error *err) {
        struct methods *m = call->m;
        struct broker_caller bc = caller_of(call->caller);
        struct rpc_server_stats st = {};
        struct broker_stats w = {};
        struct broker_error berr = {};
        struct json_object *o;
        int64_t up;
        bool ok = true;
        int q;

        (void) args;
        q = broker_stats(m->broker, &bc, &w, &berr);
        if (q < 0)
                return fail_with_broker_error(err, &berr);
        if (m->server)
                rpc_server_get_stats(m->server, &st);
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
        q = fail_with_code(err, BROKER_E_INVALID, "policy %s not reloaded; the policy in force is kept",
                         call->m->policy_path ?: "(none)");
        if (ok)
                err->data = data;
        else
                json_object_put(data);
        return q;
}
