/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Private to the methods layer (brokerd/daemon/methods*.c). A request goes:
 *   methods_handle() (methods-table.c) finds the method in the declarative table, refuses
 *   the admin socket's methods elsewhere and a state-changing method sent as a notification,
 *   checks params against the method's parameter list (methods-params.c: unknown and missing
 *   members, types, bounds; errors name data.member) into the method's args struct, makes
 *   room for an fd when its reply carries one, then calls the handler (methods-agent.c,
 *   methods-admin.c, methods-events.c), which calls the core and formats (methods-json.c).
 * A reply that could not be delivered runs the method's undo from the result.
 */
#include <json-c/json.h>
#include <stddef.h>

#include "daemon/methods.h"
#include "util/hashmap.h"
#include "util/macro.h"

#define METHODS_MAX_STRING 1024          /* any string member without a tighter bound */
#define METHODS_MAX_TOKEN 64             /* a token is STORE_TOKEN_LEN; anything longer is not one */
#define METHODS_MAX_SUBSCRIBE_DOMAINS 256
#define METHODS_DEFAULT_REVOKE_MS UINT64_C(10000)
#define METHODS_MAX_AUDIT_LIMIT 1000
#define METHODS_DEFAULT_AUDIT_LIMIT 100
#define METHODS_MAX_AUDIT_NEWEST 10000
/*
 * region.list pages (docs/protocol.md "Paging"): at most limit regions (default and max below),
 * and a page also ends before the region that would take its result past the message limit
 * less METHODS_LIST_REPLY_RESERVE, left for the reply's envelope (an id up to 400 bytes).
 */
#define METHODS_DEFAULT_LIST_LIMIT 256
#define METHODS_MAX_LIST_LIMIT 4096
#define METHODS_LIST_REPLY_RESERVE 512

typedef int (*methods_notify_t)(void *userdata, uint64_t connection, const char *method, struct json_object *params);

struct subscription {
        uint64_t connection; /* the hashmap key */
        uid_t uid;
        bool admin;
        bool all;            /* an admin that named no domain: every event */
        char **domains;
        size_t n_domains;
};

struct methods {
        char *policy_path;
        struct broker *broker;
        struct rpc_server *server;
        methods_notify_t notify;
        void *notify_userdata;
        struct hashmap *subscriptions; /* connection -> subscription */
        uint64_t dropped_subscribers;
        int64_t started;               /* CLOCK_MONOTONIC usec */
};

/* ---- the table's vocabulary ---- */

enum param_type {
        PARAM_STRING,  /* const char *: no NUL, at most .max bytes (else limit_exceeded) */
        PARAM_NAME,    /* const char *: a valid name, util/names.h (else invalid_request) */
        PARAM_ENUM,    /* the enum .parse fills; anything else is -32602 with .expect */
        PARAM_U64,     /* uint64_t: an integer, or a string in hex or with a binary suffix;
                        * outside .min..max is invalid_request */
        PARAM_BOOL,    /* bool */
        PARAM_OBJECTS, /* an array of at most .max objects (else limit_exceeded) whose members
                        * are .members, stored .item_size apart; the count at .count_offset */
        PARAM_NAMES,   /* an array of at most .max names: const char *[], the count at .count_offset */
        _PARAM_TYPE_MAX,
};

struct param {
        const char *name;        /* NULL ends a list */
        enum param_type type;
        bool required;
        size_t offset;           /* of the value in the method's args (or the array's item) */
        uint64_t min, max;       /* U64: the range; STRING: max length; arrays: max items */
        uint64_t def;            /* U64 and ENUM: the value when absent (or JSON null) */
        int (*parse)(const char *s, void *ret); /* ENUM */
        const char *expect;      /* ENUM: what the error says was expected */
        const struct param *members; /* OBJECTS */
        size_t item_size;        /* OBJECTS */
        size_t count_offset;     /* arrays */
};

/* Array bounds come from the storage, so the table can never promise more than fits. */
#define MEMBER_ELEMENTS(type, member) ELEMENTSOF(((type *) 0)->member)

enum method_socket {
        METHOD_AGENT, /* both sockets: agents act for their policy's domains, admins for any */
        METHOD_ADMIN, /* the admin socket only */
        _METHOD_SOCKET_MAX,
};

/* One request as a handler sees it; params are already checked and parsed into args. */
struct method_call {
        struct methods *m;
        const struct rpc_caller *caller;
        struct json_object *params; /* for call_has() only */
        struct rpc_reply_fds *fds;  /* may be NULL: the transport passes no fds */
};

typedef int (*method_handler_t)(const struct method_call *call, const void *args, struct json_object **ret,
                                struct rpc_error *err);
/* Takes back what a call did, from the result it could not deliver (borrowed). */
typedef void (*method_undo_t)(struct methods *m, const struct rpc_caller *caller, struct json_object *result);

struct method {
        const char *name;
        enum method_socket socket;
        bool mutating;            /* changes state: never run for a notification */
        bool reply_fd;            /* the result may carry one fd: room is made before the call */
        size_t args_size;
        const struct param *params; /* ends with {} */
        method_handler_t handler;
        method_undo_t undo;       /* NULL: nothing to take back */
};

/* ---- args: where the table puts each method's params ---- */

struct share_args {
        const char *owner, *device, *label;
        uint64_t size, numa_node, alignment, base;
        struct broker_share_peer peers[BROKER_MAX_PEERS];
        size_t n_peers;
        uint64_t doorbells;
};

struct attach_args {
        const char *domain, *token;
};

struct release_args {
        const char *domain;
        uint64_t region;
};

struct revoke_args {
        const char *owner; /* NULL for admin.revoke */
        uint64_t region, deadline_ms;
        bool force;
};

struct region_args {
        uint64_t region;
};

struct list_args {
        const char *domain, *device, *pool;
        enum region_state state; /* _REGION_STATE_MAX: any */
        uint64_t after, limit;   /* the page: ids above after, at most limit of them */
};

struct route_args {
        const char *device, *domain;
};

struct subscribe_args {
        const char *domains[METHODS_MAX_SUBSCRIBE_DOMAINS];
        size_t n_domains;
};

struct domain_args {
        const char *domain;
};

struct audit_args {
        uint64_t after_seq, since_usec, limit, newest;
};

/* ---- methods-params.c ---- */

/* Checks params (NULL: {}) against the list and fills args; -errno with err naming the member. */
int params_parse(const struct param *list, struct json_object *params, void *args, struct rpc_error *err);
/* Whether the request gave that member (not absent, not JSON null). */
bool call_has(const struct method_call *call, const char *member);

/* ---- methods-json.c: errors and JSON output ---- */

int fail_with_broker_error(struct rpc_error *err, const struct broker_error *berr);
int fail_with_code(struct rpc_error *err, enum broker_code code, const char *fmt, ...) _printf_(3, 4);
/* -32602 naming the member: in the message and, for clients, as data.member. */
int invalid_params(struct rpc_error *err, const char *member, const char *fmt, ...) _printf_(3, 4);
int internal_error(struct rpc_error *err, int q);

/* Builders record any allocation failure in *ok so that they stay linear. */
void obj_add(struct json_object *o, const char *key, struct json_object *v, bool *ok);
void obj_add_null(struct json_object *o, const char *key, bool *ok);
void obj_add_str(struct json_object *o, const char *key, const char *s, bool *ok);
void obj_add_bool(struct json_object *o, const char *key, bool v, bool *ok);
void obj_add_u64(struct json_object *o, const char *key, uint64_t v, bool *ok);
void obj_add_i64(struct json_object *o, const char *key, int64_t v, bool *ok);
void obj_add_addr(struct json_object *o, const char *key, uint64_t v, bool *ok);
/* UINT64_MAX ("unlimited") as null. */
void obj_add_limit(struct json_object *o, const char *key, uint64_t v, bool *ok);
void arr_add(struct json_object *a, struct json_object *v, bool *ok);
/* For a walk's callback: appends v (built with ok) to arr, or drops it; -ENOMEM stops the walk. */
int walk_add(struct json_object *arr, struct json_object *v, bool ok);
/* Hands o over as the result, or drops it and reports an internal error. */
int result_finish(struct json_object *o, bool ok, struct json_object **ret, struct rpc_error *err);
/* A member, or NULL when absent or JSON null. */
struct json_object *member_get(struct json_object *o, const char *key);

struct json_object *region_to_json(const struct broker_region_info *r);
/* {region, state}: what a verb left. */
int region_state_result(uint64_t region, enum region_state state, struct json_object **ret, struct rpc_error *err);
/* result_finish() for a result that carries fd (taken) as "fd": <index> (none without an fd
 * table), and then doorbells d (may be NULL; taken, see result_add_doorbells()). On failure
 * nothing is handed over: the caller takes its call back. */
int result_finish_fd(struct json_object *o, bool ok, struct rpc_reply_fds *fds, int fd, bool fd_lent,
                     struct broker_doorbells *d,
                     struct json_object **ret, struct rpc_error *err);

/* ---- methods-doorbells.c ---- */

/* limit_exceeded unless the reply line has room for need more fds (always, without an fd table). */
int reply_fds_room(const struct rpc_reply_fds *fds, size_t need, struct rpc_error *err);
/*
 * Adds vectors, generation and doorbells to o, each end's fd (taken from d) joining the line as
 * an index; every fd of d is closed or handed over, also on failure (-errno, the line's new fds
 * dropped with the error reply).
 */
int result_add_doorbells(struct json_object *o, struct rpc_reply_fds *fds, struct broker_doorbells *d, bool *ok);
/* The region object's doorbells: {vectors, pairs: [{from, to}]}. */
struct json_object *region_doorbells_to_json(const struct broker_region_info *r, bool *ok);

/* ---- methods.c: identity, as the core decides it ---- */

struct broker_caller caller_of(const struct rpc_caller *c);
/* forbidden unless the core says the caller acts for domain (for filters; verbs check in the core). */
int methods_check_acts_for(const struct methods *m, const struct rpc_caller *c, const char *domain,
                           struct rpc_error *err);
/* The domains the core says uid acts for, each once; the strings live until the policy changes. */
int agent_domains(const struct methods *m, uid_t uid, const char ***ret, size_t *ret_n);
int64_t monotonic_usec(void);

/* ---- handlers ---- */

int method_broker_info(const struct method_call *call, const void *args, struct json_object **ret,
                       struct rpc_error *err);
int method_region_share(const struct method_call *call, const void *args, struct json_object **ret,
                        struct rpc_error *err);
int method_region_attach(const struct method_call *call, const void *args, struct json_object **ret,
                         struct rpc_error *err);
int method_region_release(const struct method_call *call, const void *args, struct json_object **ret,
                          struct rpc_error *err);
/* region.revoke and admin.revoke: args.owner NULL acts as admin. */
int method_region_revoke(const struct method_call *call, const void *args, struct json_object **ret,
                         struct rpc_error *err);
int method_region_get(const struct method_call *call, const void *args, struct json_object **ret,
                      struct rpc_error *err);
int method_region_list(const struct method_call *call, const void *args, struct json_object **ret,
                       struct rpc_error *err);
int method_route_lookup(const struct method_call *call, const void *args, struct json_object **ret,
                        struct rpc_error *err);
int method_region_doorbells(const struct method_call *call, const void *args, struct json_object **ret,
                            struct rpc_error *err);
int method_events_subscribe(const struct method_call *call, const void *args, struct json_object **ret,
                            struct rpc_error *err);
int method_admin_domain_gone(const struct method_call *call, const void *args, struct json_object **ret,
                             struct rpc_error *err);
int method_admin_reconcile(const struct method_call *call, const void *args, struct json_object **ret,
                           struct rpc_error *err);
int method_admin_domains(const struct method_call *call, const void *args, struct json_object **ret,
                         struct rpc_error *err);
int method_admin_pools(const struct method_call *call, const void *args, struct json_object **ret,
                       struct rpc_error *err);
int method_admin_audit(const struct method_call *call, const void *args, struct json_object **ret,
                       struct rpc_error *err);
int method_admin_stats(const struct method_call *call, const void *args, struct json_object **ret,
                       struct rpc_error *err);
int method_admin_reload(const struct method_call *call, const void *args, struct json_object **ret,
                        struct rpc_error *err);

void undo_region_share(struct methods *m, const struct rpc_caller *caller, struct json_object *result);
void undo_region_attach(struct methods *m, const struct rpc_caller *caller, struct json_object *result);

/* ---- methods-events.c ---- */

void subscription_free(struct subscription *s);
DEFINE_CLEANUP(struct subscription, subscription_free);
