/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Subscriptions (events.subscribe, dropped when their connection closes) and the fan-out
 * of broker events to them as notifications (docs/protocol.md#notifications).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/methods-internal.h"

void subscription_free(struct subscription *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_domains; i++)
                free(s->domains[i]);
        free(s->domains);
        free(s);
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

/* The named domains (each one the caller acts for), or by default every domain it acts for. */
static int subscription_fill(const struct method_call *call, const struct subscribe_args *a, struct subscription *s,
                             struct rpc_error *err) {
        const struct rpc_caller *c = call->caller;
        _cleanup_(xfreep) const char **domains = NULL;
        size_t n = 0;
        int q;

        for (size_t i = 0; i < a->n_domains; i++) {
                q = methods_check_acts_for(call->m, c, a->domains[i], err);
                if (q < 0)
                        return q;
                q = subscription_add_domain(s, a->domains[i]);
                if (q < 0)
                        return internal_error(err, q);
        }
        if (a->n_domains > 0)
                return 0;
        if (c->admin) {
                s->all = true;
                return 0;
        }
        q = agent_domains(call->m, c->uid, &domains, &n);
        for (size_t i = 0; q >= 0 && i < n; i++)
                q = subscription_add_domain(s, domains[i]);
        return q < 0 ? internal_error(err, q) : 0;
}

int method_events_subscribe(const struct method_call *call, const void *args, struct json_object **ret,
                            struct rpc_error *err) {
        struct methods *m = call->m;
        _cleanup_(subscription_freep) struct subscription *s = calloc(1, sizeof(*s));
        struct json_object *o, *list;
        struct subscription *old;
        bool ok = true;
        int q;

        if (!s)
                return internal_error(err, -ENOMEM);
        *s = (struct subscription) { .connection = call->caller->connection, .uid = call->caller->uid,
                                     .admin = call->caller->admin };
        /* Everything is checked before anything is kept: a refused subscribe changes nothing. */
        q = subscription_fill(call, args, s, err);
        if (q < 0)
                return q;

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
        old = hashmap_remove(m->subscriptions, &s->connection);
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

void methods_disconnect(void *userdata, uint64_t connection) {
        struct methods *m = userdata;

        subscription_free(hashmap_remove(m->subscriptions, &connection));
        if (m->broker)
                broker_connection_closed(m->broker, connection);
}

static bool subscription_wants(const struct methods *m, const struct subscription *s, const char *const *targets,
                               size_t n_targets) {
        const struct broker_caller subscriber = { .uid = s->uid, .admin = s->admin };

        if (s->all)
                return true;
        for (size_t i = 0; i < n_targets; i++) {
                if (!targets[i])
                        continue;
                for (size_t j = 0; j < s->n_domains; j++)
                        /* An agent whose domain was taken away by a reload hears no more of it. */
                        if (strcmp(targets[i], s->domains[j]) == 0 &&
                            broker_caller_acts_for(m->broker, &subscriber, targets[i]))
                                return true;
        }
        return false;
}

#define EVENT_MAX_TARGETS (2 + BROKER_MAX_PEERS)

/* The notification's method (NULL: none) and the domains whose subscribers hear it. */
static const char *event_route(const struct broker_event *ev, const char **targets, size_t *ret_n) {
        static const char *const methods[] = {
                [BROKER_EVENT_ATTACHED] = "region.attached",   [BROKER_EVENT_RECALL] = "region.recall",
                [BROKER_EVENT_RELEASED] = "region.released",   [BROKER_EVENT_REVOKED] = "region.revoked",
                [BROKER_EVENT_RECLAIMED] = "region.reclaimed", [BROKER_EVENT_ROUTE_CHANGED] = "route.changed",
                [BROKER_EVENT_UNPLUG_OVERDUE] = "region.unplug_overdue",
                [BROKER_EVENT_RECONCILED] = NULL, /* the daemon's business, not the clients' */
                [BROKER_EVENT_JOINED] = "region.joined",       [BROKER_EVENT_LEFT] = "region.left",
        };
        size_t n = 0;

        _Static_assert(ELEMENTSOF(methods) == _BROKER_EVENT_TYPE_MAX, "one entry per broker event");
        if ((size_t) ev->type >= ELEMENTSOF(methods) || !methods[ev->type])
                return NULL;
        /* Doorbells: the other parties only (the one that joined or left has its answer). */
        if (ev->type == BROKER_EVENT_JOINED || ev->type == BROKER_EVENT_LEFT) {
                for (size_t i = 0; i < ev->n_parties && n < EVENT_MAX_TARGETS; i++)
                        targets[n++] = ev->parties[i];
                *ret_n = n;
                return methods[ev->type];
        }
        /* The owner hears about its region, the peer concerned about itself. */
        if (ev->type != BROKER_EVENT_RECALL && ev->type != BROKER_EVENT_ROUTE_CHANGED)
                targets[n++] = ev->owner;
        if (ev->type != BROKER_EVENT_ATTACHED && ev->type != BROKER_EVENT_RELEASED &&
            ev->type != BROKER_EVENT_RECLAIMED)
                targets[n++] = ev->domain;
        /* Every peer hears of a reclaim. */
        if (ev->type == BROKER_EVENT_RECLAIMED)
                for (size_t i = 0; i < ev->n_peers && n < EVENT_MAX_TARGETS; i++)
                        targets[n++] = ev->peers[i].domain;
        *ret_n = n;
        return methods[ev->type];
}

static struct json_object *event_params(const struct broker_event *ev) {
        struct json_object *params = json_object_new_object();
        bool ok = true;

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
                return NULL;
        }
        return params;
}

void methods_on_event(void *userdata, const struct broker_event *ev) {
        struct methods *m = userdata;
        const char *targets[EVENT_MAX_TARGETS] = {}, *method;
        _cleanup_(xfreep) uint64_t *conns = NULL;
        size_t n_targets = 0, n = 0, it = 0;
        struct json_object *params;
        void *v;

        if (!m->notify || !m->broker || hashmap_size(m->subscriptions) == 0)
                return;
        method = event_route(ev, targets, &n_targets);
        if (!method)
                return;

        /* Collect first: a failed notify may drop its connection, which edits the map. */
        conns = calloc(hashmap_size(m->subscriptions), sizeof(*conns));
        if (!conns)
                return;
        while (hashmap_iterate(m->subscriptions, &it, &v))
                if (subscription_wants(m, v, targets, n_targets))
                        conns[n++] = ((struct subscription *) v)->connection;
        if (n == 0 || !(params = event_params(ev)))
                return;

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
