/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The method table (docs/protocol.md; schemas/rpc/<method>.params.json say the same for
 * clients) and dispatch. Each entry says which socket may call it, whether it changes state,
 * whether its reply carries an fd, its parameters with their types and bounds, its handler
 * and what undoes it when its result could not be delivered.
 */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "daemon/methods-internal.h"
#include "util/log.h"

/* PARAM_ENUM stores and defaults through an int. */
_Static_assert(sizeof(enum access_mode) == sizeof(int), "PARAM_ENUM stores through an int");
_Static_assert(sizeof(enum region_state) == sizeof(int), "PARAM_ENUM stores through an int");

static int parse_access(const char *s, void *ret) {
        return access_from_string(s, ret);
}

static int parse_region_state(const char *s, void *ret) {
        return region_state_from_string(s, ret);
}

/* Wire names are the args' member names. */
#define P_NAME(T, f, req) { .name = #f, .type = PARAM_NAME, .required = (req), .offset = offsetof(T, f) }
#define P_STRING(T, f, req, len) \
        { .name = #f, .type = PARAM_STRING, .required = (req), .offset = offsetof(T, f), .max = (len) }
#define P_U64(T, f, req, lo, hi, dflt)                                                                 \
        { .name = #f, .type = PARAM_U64, .required = (req), .offset = offsetof(T, f), .min = (lo), .max = (hi), \
          .def = (dflt) }
#define P_BOOL(T, f) { .name = #f, .type = PARAM_BOOL, .offset = offsetof(T, f) }
#define P_ENUM(T, f, req, fn, what, dflt)                                                                \
        { .name = #f, .type = PARAM_ENUM, .required = (req), .offset = offsetof(T, f), .parse = (fn), \
          .expect = (what), .def = (dflt) }
#define P_OBJECTS(T, f, req, n_f, list)                                                                  \
        { .name = #f, .type = PARAM_OBJECTS, .required = (req), .offset = offsetof(T, f),                \
          .max = MEMBER_ELEMENTS(T, f), .members = (list), .item_size = sizeof(((T *) 0)->f[0]),         \
          .count_offset = offsetof(T, n_f) }
#define P_NAMES(T, f, req, n_f)                                                                          \
        { .name = #f, .type = PARAM_NAMES, .required = (req), .offset = offsetof(T, f),                  \
          .max = MEMBER_ELEMENTS(T, f), .count_offset = offsetof(T, n_f) }

static const struct param no_params[] = { {} };

static const struct param share_peer_params[] = {
        P_NAME(struct broker_share_peer, domain, true),
        P_ENUM(struct broker_share_peer, access, true, parse_access, "\"ro\" or \"rw\"", 0),
        {}
};

static const struct param share_params[] = {
        P_NAME(struct share_args, owner, true),
        P_NAME(struct share_args, device, true),
        P_U64(struct share_args, size, true, 0, UINT64_MAX, 0),
        P_OBJECTS(struct share_args, peers, true, n_peers, share_peer_params),
        P_U64(struct share_args, numa_node, false, 0, UINT32_MAX, 0),
        P_U64(struct share_args, alignment, false, 0, UINT64_MAX, 0),
        P_STRING(struct share_args, label, false, BROKER_MAX_LABEL),
        P_U64(struct share_args, base, false, 0, UINT64_MAX, 0),
        P_U64(struct share_args, doorbells, false, 0, BROKER_MAX_DOORBELL_VECTORS, BROKER_DEFAULT_DOORBELL_VECTORS),
        {}
};

static const struct param attach_params[] = {
        P_NAME(struct attach_args, domain, true),
        P_STRING(struct attach_args, token, true, METHODS_MAX_TOKEN),
        {}
};

static const struct param release_params[] = {
        P_NAME(struct release_args, domain, true),
        P_U64(struct release_args, region, true, 0, UINT64_MAX, 0),
        {}
};

#define REVOKE_PARAMS                                                                                    \
        P_U64(struct revoke_args, region, true, 0, UINT64_MAX, 0),                                       \
        P_U64(struct revoke_args, deadline_ms, false, 0, BROKER_MAX_REVOKE_TIMEOUT_USEC / 1000,           \
              METHODS_DEFAULT_REVOKE_MS),                                                                \
        P_BOOL(struct revoke_args, force)

static const struct param revoke_params[] = { P_NAME(struct revoke_args, owner, true), REVOKE_PARAMS, {} };
static const struct param admin_revoke_params[] = { REVOKE_PARAMS, {} };

static const struct param region_params[] = {
        P_U64(struct region_args, region, true, 0, UINT64_MAX, 0),
        {}
};

static const struct param list_params[] = {
        P_NAME(struct list_args, domain, false),
        P_ENUM(struct list_args, state, false, parse_region_state,
               "\"offered\", \"active\", \"revoking\" or \"reclaimed\"", _REGION_STATE_MAX),
        P_NAME(struct list_args, device, false),
        P_NAME(struct list_args, pool, false),
        P_U64(struct list_args, after, false, 0, UINT64_MAX, 0),
        P_U64(struct list_args, limit, false, 1, METHODS_MAX_LIST_LIMIT, METHODS_DEFAULT_LIST_LIMIT),
        {}
};

static const struct param route_params[] = {
        P_NAME(struct route_args, device, true),
        P_NAME(struct route_args, domain, true),
        {}
};

static const struct param subscribe_params[] = {
        P_NAMES(struct subscribe_args, domains, false, n_domains),
        {}
};

static const struct param domain_params[] = {
        P_NAME(struct domain_args, domain, true),
        {}
};

static const struct param audit_params[] = {
        P_U64(struct audit_args, after_seq, false, 0, INT64_MAX, 0),
        P_U64(struct audit_args, since_usec, false, 0, INT64_MAX, 0),
        P_U64(struct audit_args, limit, false, 1, METHODS_MAX_AUDIT_LIMIT, METHODS_DEFAULT_AUDIT_LIMIT),
        P_U64(struct audit_args, newest, false, 1, METHODS_MAX_AUDIT_NEWEST, 0),
        {}
};

/* Room for any method's args. */
union method_args {
        struct share_args share;
        struct attach_args attach;
        struct release_args release;
        struct revoke_args revoke;
        struct region_args region;
        struct list_args list;
        struct route_args route;
        struct subscribe_args subscribe;
        struct domain_args domain;
        struct audit_args audit;
};

#define ARGS(T) .args_size = sizeof(T)

static const struct method method_table[] = {
        { "broker.info", METHOD_AGENT, .params = no_params, .handler = method_broker_info },
        { "region.share", METHOD_AGENT, .mutating = true, .reply_fd = true, ARGS(struct share_args),
          .params = share_params, .handler = method_region_share, .undo = undo_region_share },
        { "region.attach", METHOD_AGENT, .mutating = true, .reply_fd = true, ARGS(struct attach_args),
          .params = attach_params, .handler = method_region_attach, .undo = undo_region_attach },
        { "region.release", METHOD_AGENT, .mutating = true, ARGS(struct release_args), .params = release_params,
          .handler = method_region_release },
        { "region.revoke", METHOD_AGENT, .mutating = true, ARGS(struct revoke_args), .params = revoke_params,
          .handler = method_region_revoke },
        { "region.get", METHOD_AGENT, ARGS(struct region_args), .params = region_params,
          .handler = method_region_get },
        { "region.list", METHOD_AGENT, ARGS(struct list_args), .params = list_params,
          .handler = method_region_list },
        /* Hands dups of the broker's eventfds; changes nothing. */
        { "region.doorbells", METHOD_AGENT, ARGS(struct release_args), .params = release_params,
          .handler = method_region_doorbells },
        { "route.lookup", METHOD_AGENT, ARGS(struct route_args), .params = route_params,
          .handler = method_route_lookup },
        /* Subscribing changes only the connection's own state, which dies with it. */
        { "events.subscribe", METHOD_AGENT, ARGS(struct subscribe_args), .params = subscribe_params,
          .handler = method_events_subscribe },
        { "admin.revoke", METHOD_ADMIN, .mutating = true, ARGS(struct revoke_args), .params = admin_revoke_params,
          .handler = method_region_revoke },
        { "admin.domain_gone", METHOD_ADMIN, .mutating = true, ARGS(struct domain_args), .params = domain_params,
          .handler = method_admin_domain_gone },
        { "admin.reconcile", METHOD_ADMIN, .mutating = true, .params = no_params,
          .handler = method_admin_reconcile },
        { "admin.domains", METHOD_ADMIN, .params = no_params, .handler = method_admin_domains },
        { "admin.pools", METHOD_ADMIN, .params = no_params, .handler = method_admin_pools },
        { "admin.audit", METHOD_ADMIN, ARGS(struct audit_args), .params = audit_params,
          .handler = method_admin_audit },
        { "admin.stats", METHOD_ADMIN, .params = no_params, .handler = method_admin_stats },
        { "admin.reload", METHOD_ADMIN, .mutating = true, .params = no_params, .handler = method_admin_reload },
};

static const struct method *method_find(const char *name) {
        for (size_t i = 0; name && i < ELEMENTSOF(method_table); i++)
                if (strcmp(name, method_table[i].name) == 0)
                        return &method_table[i];
        return NULL;
}

int methods_handle(void *userdata, const struct rpc_caller *caller, const char *method, struct json_object *params,
                   struct rpc_reply_fds *fds, struct json_object **ret_result, struct rpc_error *err) {
        struct methods *m = userdata;
        const struct method *e = method_find(method);
        struct method_call call = { .m = m, .caller = caller, .params = params, .fds = fds };
        union method_args args;
        int q;

        if (!e)
                return rpc_error_set(err, RPC_METHOD_NOT_FOUND, "unknown method %.64s", method ?: "");
        if (e->socket == METHOD_ADMIN && !caller->admin)
                return rpc_error_from_broker(err, BROKER_E_FORBIDDEN, "admin socket only");
        if (!m->broker)
                return internal_error(err, -ENXIO);
        if (e->mutating && caller->notification) {
                /* Nobody would learn what it did (a share's tokens, an attach's fd): it must not run. */
                log_info("%s from uid %u sent as a notification: refused, not run", e->name, (unsigned) caller->uid);
                return fail_with_code(err, BROKER_E_INVALID, "%s changes state: it must carry an id to be run",
                                      e->name);
        }
        assert(e->args_size <= sizeof(args));
        memset(&args, 0, sizeof(args));
        q = params_parse(e->params, params, &args, err);
        if (q < 0)
                return q;
        /* Checked before anything happens: a result whose fd cannot travel would have to be undone. */
        if (e->reply_fd && fds && fds->n >= RPC_MAX_FDS_PER_LINE)
                return fail_with_code(err, BROKER_E_LIMIT, "no room for another fd in this reply");
        return e->handler(&call, &args, ret_result, err);
}

void methods_undelivered(void *userdata, const struct rpc_caller *caller, const char *method,
                         struct json_object *result) {
        struct methods *m = userdata;
        const struct method *e = method_find(method);

        if (!e || !e->undo || !m->broker || !result)
                return;
        log_notice("the reply to %s for uid %u could not be delivered: undoing it", e->name, (unsigned) caller->uid);
        e->undo(m, caller, result);
}
