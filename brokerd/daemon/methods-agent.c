/* SPDX-License-Identifier: Apache-2.0 */
/* The agent methods (docs/protocol.md#agent-methods): params arrive checked; call, format. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon/methods-internal.h"
#include "util/log.h"

int method_broker_info(const struct method_call *call, const void *args, struct json_object **ret,
                       struct rpc_error *err) {
        const struct rpc_caller *c = call->caller;
        const struct rpc_server_limits *limits, defaults = RPC_SERVER_LIMITS_DEFAULT;
        _cleanup_(xfreep) const char **domains = NULL;
        struct json_object *o, *arr, *lim;
        size_t n = 0;
        bool ok = true;
        int q;

        (void) args;
        if (!c->admin) {
                q = agent_domains(call->m, c->uid, &domains, &n);
                if (q < 0)
                        return internal_error(err, q);
        }
        limits = call->m->server ? rpc_server_limits(call->m->server) : &defaults;

        o = json_object_new_object();
        obj_add_str(o, "version", BROKERD_VERSION, &ok);
        obj_add_str(o, "backend", broker_backend_name(call->m->broker), &ok);
        obj_add_u64(o, "uid", c->uid, &ok);
        obj_add_bool(o, "admin", c->admin, &ok);
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

/* ---- region.share ---- */

/* Takes a committed share back: its region and tokens vanish, its quota, range and fd are freed. */
static void share_take_back(struct methods *m, const struct rpc_caller *c, uint64_t region) {
        struct broker_caller bc = caller_of(c);
        struct broker_error berr = {};

        if (broker_share_undo(m->broker, &bc, region, &berr) < 0)
                log_error("region %" PRIu64 ": could not take back its undelivered share: %s", region, berr.message);
}

void undo_region_share(struct methods *m, const struct rpc_caller *caller, struct json_object *result) {
        const char *placement = json_object_get_string(member_get(result, "placement"));

        /* A bounce holds nothing. */
        if (placement && strcmp(placement, "region") == 0)
                share_take_back(m, caller, json_object_get_uint64(member_get(result, "region")));
}

static struct json_object *share_to_json(const struct broker_share_result *res, bool *ok) {
        struct json_object *o = json_object_new_object(), *tokens;

        obj_add_str(o, "placement", "region", ok);
        obj_add_u64(o, "region", res->region, ok);
        obj_add_addr(o, "base", res->base, ok);
        obj_add_u64(o, "size", res->size, ok);
        obj_add_u64(o, "alignment", res->alignment, ok);
        obj_add_str(o, "pool", res->pool, ok);
        tokens = json_object_new_array();
        for (size_t i = 0; i < res->n_tokens; i++) {
                struct json_object *t = json_object_new_object();
                obj_add_str(t, "domain", res->tokens[i].domain, ok);
                obj_add_str(t, "token", res->tokens[i].token, ok);
                arr_add(tokens, t, ok);
        }
        obj_add(o, "tokens", tokens, ok);
        obj_add_u64(o, "vectors", res->vectors, ok);
        return o;
}

int method_region_share(const struct method_call *call, const void *args, struct json_object **ret,
                        struct rpc_error *err) {
        const struct share_args *a = args;
        struct broker_share_request req = {
                .owner = a->owner, .device = a->device, .size = a->size, .peers = a->peers, .n_peers = a->n_peers,
                .has_numa_node = call_has(call, "numa_node"), .numa_node = (uint32_t) a->numa_node,
                .alignment = a->alignment, .label = a->label, .place = call_has(call, "base"), .base = a->base,
                .has_doorbells = call_has(call, "doorbells"), .doorbells = (unsigned) a->doorbells,
        };
        struct broker_caller bc = caller_of(call->caller);
        struct broker_share_result res;
        struct broker_error berr = {};
        struct json_object *o;
        bool ok = true;
        int q;

        q = broker_share(call->m->broker, &bc, &req, &res, &berr);
        if (q < 0)
                return fail_with_broker_error(err, &berr);
        if (res.bounce) {
                o = json_object_new_object();
                obj_add_str(o, "placement", "bounce", &ok);
                obj_add_str(o, "reason", res.reason, &ok);
                return result_finish(o, ok, ret, err);
        }
        o = share_to_json(&res, &ok);
        explicit_bzero(res.tokens, sizeof(res.tokens));
        q = result_finish_fd(o, ok, call->fds, TAKE_FD(res.owner_fd), res.owner_fd_lent, NULL, ret, err);
        if (q < 0)
                share_take_back(call->m, call->caller, res.region);
        return q;
}

/* ---- region.attach, region.release, region.revoke ---- */

static void attach_take_back(struct methods *m, const struct rpc_caller *c, const char *domain, uint64_t region) {
        struct broker_caller bc = caller_of(c);
        struct broker_error berr = {};

        /* The token is spent; give the grant back so the region does not wait on a peer that never
         * got its memory. */
        if (broker_attach_undo(m->broker, &bc, domain, region, &berr) < 0)
                log_error("region %" PRIu64 ": could not release the undelivered attach of %s: %s", region, domain,
                          berr.message);
}

void undo_region_attach(struct methods *m, const struct rpc_caller *caller, struct json_object *result) {
        const char *domain = json_object_get_string(member_get(result, "domain"));

        if (domain)
                attach_take_back(m, caller, domain, json_object_get_uint64(member_get(result, "region")));
}

int method_region_attach(const struct method_call *call, const void *args, struct json_object **ret,
                         struct rpc_error *err) {
        const struct attach_args *a = args;
        struct broker_caller bc = caller_of(call->caller);
        struct broker_attach_result res;
        struct broker_error berr = {};
        struct json_object *o;
        bool ok = true;
        int q;

        /* The doorbells must fit in the line: refused before anything happens, never taken back. */
        q = reply_fds_room(call->fds, broker_attach_fds(call->m->broker, a->token), err);
        if (q < 0)
                return q;
        q = broker_attach(call->m->broker, &bc, a->domain, a->token, &res, &berr);
        if (q < 0)
                return fail_with_broker_error(err, &berr);

        o = json_object_new_object();
        obj_add_u64(o, "region", res.region, &ok);
        obj_add_str(o, "domain", a->domain, &ok);
        obj_add_addr(o, "base", res.base, &ok);
        obj_add_u64(o, "size", res.size, &ok);
        obj_add_str(o, "access", access_to_string(res.access), &ok);
        q = result_finish_fd(o, ok, call->fds, TAKE_FD(res.fd), res.fd_lent, &res.doorbells, ret, err);
        if (q < 0)
                attach_take_back(call->m, call->caller, a->domain, res.region);
        return q;
}

int method_region_release(const struct method_call *call, const void *args, struct json_object **ret,
                          struct rpc_error *err) {
        const struct release_args *a = args;
        struct broker_caller bc = caller_of(call->caller);
        struct broker_region_info after;
        struct broker_error berr = {};
        int q;

        q = broker_release(call->m->broker, &bc, a->domain, a->region, &after, &berr);
        if (q < 0)
                return fail_with_broker_error(err, &berr);
        return region_state_result(after.id, after.state, ret, err);
}

int method_region_revoke(const struct method_call *call, const void *args, struct json_object **ret,
                         struct rpc_error *err) {
        const struct revoke_args *a = args;
        struct broker_caller bc = caller_of(call->caller);
        struct broker_region_info after;
        struct broker_error berr = {};
        int q;

        q = broker_revoke(call->m->broker, &bc, a->owner, a->region, a->deadline_ms * 1000, a->force, &after, &berr);
        if (q < 0)
                return fail_with_broker_error(err, &berr);
        return region_state_result(after.id, after.state, ret, err);
}

/* ---- queries ---- */

int method_region_get(const struct method_call *call, const void *args, struct json_object **ret,
                      struct rpc_error *err) {
        const struct region_args *a = args;
        struct broker_caller bc = caller_of(call->caller);
        struct broker_region_info info;
        struct broker_error berr = {};
        struct json_object *o;

        if (broker_region_get(call->m->broker, &bc, a->region, &info, &berr) < 0)
                return fail_with_broker_error(err, &berr);
        o = region_to_json(&info);
        return result_finish(o, o != NULL, ret, err);
}

/* As the server writes replies (rpc/server-internal.h), so that a region is measured as it is sent. */
#define LIST_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* One page of region.list being built. */
struct list_page {
        const struct list_args *filter;
        struct json_object *regions;
        size_t n;
        size_t room;   /* bytes the page's regions may still take */
        uint64_t last; /* the id of the page's last region */
        bool more;     /* a matching region follows the page */
};

static bool list_matches(const struct list_args *f, const struct broker_region_info *r) {
        bool match;

        if (f->state != _REGION_STATE_MAX && r->state != f->state)
                return false;
        if (f->device && strcmp(f->device, r->device) != 0)
                return false;
        if (f->pool && !streq_ptr(f->pool, r->pool))
                return false;
        if (!f->domain)
                return true;
        match = strcmp(f->domain, r->owner) == 0;
        for (size_t i = 0; i < r->n_peers && !match; i++)
                match = strcmp(f->domain, r->peers[i].domain) == 0;
        return match;
}

/*
 * Adds r, or stops the walk (1) at the first match that does not fit: limit reached, or its
 * text (measured as the reply will carry it, without "\/" escapes, plus a comma) over the
 * room left. A page's first region always goes in, so that paging moves on.
 */
static int list_one(void *userdata, const struct broker_region_info *r) {
        struct list_page *p = userdata;
        struct json_object *o;
        size_t len = 0;

        if (!list_matches(p->filter, r))
                return 0;
        if (p->n == p->filter->limit) {
                p->more = true;
                return 1;
        }
        o = region_to_json(r);
        if (!o || !json_object_to_json_string_length(o, LIST_JSON_FLAGS, &len)) {
                json_object_put(o);
                return -ENOMEM;
        }
        len += p->n > 0;
        if (p->n > 0 && len > p->room) {
                json_object_put(o);
                p->more = true;
                return 1;
        }
        p->room = len < p->room ? p->room - len : 0;
        if (walk_add(p->regions, o, true) < 0)
                return -ENOMEM;
        p->n++;
        p->last = r->id;
        return 0;
}

/*
 * A page: the visible regions with ids above after that match the filters, by increasing id,
 * walked in the broker's id tree. Cost: O(log n) expected to find the start, then one step per
 * region walked (the page's, those the filters or visibility skip, and the one that shows that
 * another follows), each page's regions turned into JSON once and measured once.
 */
int method_region_list(const struct method_call *call, const void *args, struct json_object **ret,
                       struct rpc_error *err) {
        const struct list_args *a = args;
        const struct rpc_server_limits defaults = RPC_SERVER_LIMITS_DEFAULT;
        size_t max = (call->m->server ? rpc_server_limits(call->m->server) : &defaults)->max_message;
        struct list_page p = {
                .filter = a, .room = max > METHODS_LIST_REPLY_RESERVE ? max - METHODS_LIST_REPLY_RESERVE : 0,
        };
        struct broker_caller bc = caller_of(call->caller);
        struct json_object *o;
        bool ok = true;
        int q;

        /* Filtering by a domain the caller does not act for is refused, not answered empty. */
        if (a->domain) {
                q = methods_check_acts_for(call->m, call->caller, a->domain, err);
                if (q < 0)
                        return q;
        }
        p.regions = json_object_new_array();
        if (!p.regions)
                return internal_error(err, -ENOMEM);
        /* The core walks only what the caller may see. */
        q = broker_region_foreach_after(call->m->broker, &bc, a->after, list_one, &p);
        if (q < 0) {
                json_object_put(p.regions);
                return internal_error(err, q);
        }
        o = json_object_new_object();
        obj_add(o, "regions", p.regions, &ok);
        if (p.more)
                obj_add_u64(o, "next", p.last, &ok);
        return result_finish(o, ok, ret, err);
}

int method_route_lookup(const struct method_call *call, const void *args, struct json_object **ret,
                        struct rpc_error *err) {
        const struct route_args *a = args;
        struct broker_caller bc = caller_of(call->caller);
        struct broker_route_info route;
        struct broker_error berr = {};
        struct json_object *o;
        bool ok = true;
        int q;

        q = broker_route_lookup(call->m->broker, &bc, a->device, a->domain, &route, &berr);
        if (q < 0)
                return fail_with_broker_error(err, &berr);

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
