/* SPDX-License-Identifier: Apache-2.0 */
/* The broker's life cycle (new, free, policy swap) and what every part of the core shares. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/broker-internal.h"
#include "util/log.h"

static const char *const broker_event_type_table[] = {
        [BROKER_EVENT_ATTACHED] = "attached",
        [BROKER_EVENT_RECALL] = "recall",
        [BROKER_EVENT_RELEASED] = "released",
        [BROKER_EVENT_REVOKED] = "revoked",
        [BROKER_EVENT_RECLAIMED] = "reclaimed",
        [BROKER_EVENT_ROUTE_CHANGED] = "route changed",
        [BROKER_EVENT_UNPLUG_OVERDUE] = "unplug overdue",
        [BROKER_EVENT_RECONCILED] = "reconciled",
        [BROKER_EVENT_JOINED] = "joined",
        [BROKER_EVENT_LEFT] = "left",
};
_Static_assert(ELEMENTSOF(broker_event_type_table) == _BROKER_EVENT_TYPE_MAX, "one name per broker event type");

const char *broker_event_type_to_string(enum broker_event_type t) {
        return (unsigned) t < _BROKER_EVENT_TYPE_MAX ? broker_event_type_table[t] : NULL;
}

int64_t broker_now(const struct broker *b) {
        struct timespec ts;

        if (b->clock)
                return b->clock(b->clock_userdata);
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void broker_emit(struct broker *b, const struct broker_event *ev) {
        if (b->on_event)
                b->on_event(b->event_userdata, ev);
}

struct store_audit audit_row(const char *actor, const struct region *r, const char *domain, const char *action,
                             const char *from, const char *to, const char *reason, int64_t now) {
        return (struct store_audit) {
                .time = now, .actor = actor, .region = r ? r->id : 0, .domain = domain, .action = action,
                .from_state = from, .to_state = to, .reason = reason,
        };
}

int audit_only(struct broker *b, const struct store_audit *a) {
        return store_transition(b->store, NULL, NULL, a, 1);
}

int store_failed(int q, struct broker_error *err, const char *what) {
        return broker_error_set(err, BROKER_E_STORE, "could not record %s: %s", what, strerror(-q));
}

int regions_collect_ids(struct broker *b, uint64_t **ret, size_t *ret_n) {
        uint64_t *ids = calloc(hashmap_size(b->regions) + 1, sizeof(*ids));
        size_t n = 0, it = 0;
        void *v;

        if (!ids)
                return -ENOMEM;
        while (hashmap_iterate(b->regions, &it, &v))
                ids[n++] = ((struct region *) v)->id;
        *ret = ids;
        *ret_n = n;
        return 0;
}

const char *broker_backend_name(const struct broker *b) {
        return backend_name(b->backend);
}

int broker_set_policy(struct broker *b, struct policy *policy, struct diag_list *diags) {
        int q = policy_check_platform(policy, b->platform, diags);

        if (q < 0)
                return q;
        policy_free(b->policy);
        b->policy = policy;
        return 0;
}

int broker_reload_policy(struct broker *b, const char *path, struct diag_list *diags) {
        _cleanup_(policy_freep) struct policy *p = NULL;
        int q;

        q = policy_load_file(path, &p, diags);
        if (q < 0)
                return q;
        q = broker_set_policy(b, p, diags);
        if (q < 0)
                return q;
        TAKE_PTR(p);
        return 0;
}

/* The parts broker_new() needs before it takes anything over. */
static int broker_alloc(const struct broker_config *cfg, struct broker **ret, struct broker_error *err) {
        _cleanup_(broker_freep) struct broker *b = calloc(1, sizeof(*b));
        int q;

        if (!b)
                return -ENOMEM;
        b->revoke_timeout_usec = cfg->revoke_timeout_usec ?: BROKER_DEFAULT_REVOKE_TIMEOUT_USEC;
        b->escalation = cfg->escalation;
        b->unplug_grace_usec = cfg->unplug_grace_usec ?: BROKER_DEFAULT_UNPLUG_GRACE_USEC;
        range_tree_init(&b->ids);
        b->clock = cfg->clock;
        b->clock_userdata = cfg->clock_userdata;
        b->on_event = cfg->on_event;
        b->event_userdata = cfg->event_userdata;
        b->watch_process = cfg->watch_process;
        b->request_flush = cfg->request_flush;
        b->flush_userdata = cfg->flush_userdata;
        b->unwatch_process = cfg->unwatch_process;
        b->watch_userdata = cfg->watch_userdata;
        if (cfg->fd_store)
                b->fd_store = *cfg->fd_store;

        if (hashmap_new(&hashmap_u64_ops, &b->regions) < 0 || hashmap_new(&hashmap_string_ops, &b->tokens) < 0 ||
            hashmap_new(&hashmap_string_ops, &b->routes) < 0 || hashmap_new(&hashmap_string_ops, &b->usage) < 0 ||
            hashmap_new(&hashmap_u64_ops, &b->processes) < 0 || hashmap_new(&hashmap_u64_ops, &b->connections) < 0)
                return broker_error_set(err, BROKER_E_STORE, "out of memory");
        q = policy_check_platform(cfg->policy, cfg->platform, NULL);
        if (q < 0)
                return broker_error_set(err, BROKER_E_INVALID, "the policy names devices the platform does not have "
                                                                "or does not give to the rule's sharer");
        q = placer_new(cfg->platform, &b->placer);
        if (q < 0)
                return broker_error_set(err, BROKER_E_STORE, "placer: %s", strerror(-q));
        q = store_open(cfg->db_path, &b->store);
        if (q < 0)
                return broker_error_set(err, BROKER_E_STORE, "cannot open database %s: %s", cfg->db_path, strerror(-q));
        store_set_retention(b->store, &cfg->retention);
        *ret = TAKE_PTR(b);
        return 0;
}

int broker_new(struct broker_config *cfg, struct broker **ret, struct broker_error *err) {
        _cleanup_(broker_freep) struct broker *b = NULL;
        int q;

        if (!cfg->platform || !cfg->policy || !cfg->backend || !cfg->db_path)
                return broker_error_set(err, BROKER_E_INVALID, "platform, policy, backend and database are required");
        q = broker_alloc(cfg, &b, err);
        if (q < 0)
                return q;

        /* From here on the broker owns them (broker_free releases them on failure too). */
        b->platform = TAKE_PTR(cfg->platform);
        b->policy = TAKE_PTR(cfg->policy);
        b->backend = TAKE_PTR(cfg->backend);
        /* Before the first map: whatever the backend reports from now on reaches the broker. */
        backend_set_callbacks(b->backend, &(struct backend_callbacks) {
                .unmap_done = broker_on_unmap_done, .domain_gone = broker_on_domain_gone,
                .reconnected = broker_on_reconnected, .refused = broker_on_refused, .userdata = b,
        });

        q = broker_load(b);
        if (q < 0)
                return broker_error_set(err, BROKER_E_STORE, "cannot load state from %s: %s", cfg->db_path, strerror(-q));
        b->defer_unmaps = backend_can_survey(b->backend);
        q = broker_resume(b);
        if (q < 0)
                return broker_error_set(err, BROKER_E_STORE, "cannot resume interrupted work: %s", strerror(-q));
        /* Resumed work only acted on what the database said; now compare with reality. */
        q = broker_reconcile(b, NULL);
        b->defer_unmaps = false;
        if (q < 0)
                log_error("reconciling with the %s backend on start: %s; some state is left for the next reconcile",
                          backend_name(b->backend), strerror(-q));

        *ret = TAKE_PTR(b);
        return 0;
}

void broker_free(struct broker *b) {
        size_t it = 0;
        void *v;

        if (!b)
                return;
        if (b->backend)
                backend_set_callbacks(b->backend, NULL);
        while (hashmap_iterate(b->regions, &it, &v))
                region_free(v); /* its holders let go of their processes; the fd store keeps them */
        processes_free(b);
        broker_finish_queue_free(b);
        it = 0;
        while (hashmap_iterate(b->routes, &it, &v))
                route_free(v);
        it = 0;
        while (hashmap_iterate(b->usage, &it, &v)) {
                struct usage *u = v;
                free(u->domain);
                free(u);
        }
        hashmap_free(b->regions);
        hashmap_free(b->tokens);
        hashmap_free(b->routes);
        hashmap_free(b->usage);
        hashmap_free(b->processes);
        hashmap_free(b->connections);
        placer_free(b->placer);
        store_close(b->store);
        backend_free(b->backend);
        policy_free(b->policy);
        platform_free(b->platform);
        free(b);
}

int broker_set_group_sync(struct broker *b, bool on) {
        return store_set_group_sync(b->store, on);
}

uint64_t broker_unsynced(struct broker *b) {
        return store_unsynced(b->store);
}

int map_flushing(struct broker *b, const struct backend_region *br, const char *domain, enum access_mode access,
                 struct backend_mapping *ret) {
        bool flushing = backend_slow_maps(b->backend) && store_flush_start(b->store) > 0;
        int q = backend_map(b->backend, br, domain, access, ret);

        /* A flush that failed is kept: the daemon's next broker_sync() fails and it stops. */
        if (flushing && store_flush_join(b->store) < 0)
                log_error("flushing the database: %s", store_last_error(b->store));
        return q;
}

int broker_sync(struct broker *b) {
        int q = store_sync(b->store);

        if (q < 0)
                log_error("flushing the database: %s (%s)", strerror(-q), store_last_error(b->store));
        return q;
}
