/* SPDX-License-Identifier: Apache-2.0 */
#include "core/broker.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "util/crashpoint.h"
#include "util/hashmap.h"
#include "util/log.h"
#include "util/num.h"

#define BROKER_UNPLUG_RETRY_USEC (2 * UINT64_C(1000000))
/* Retrying a failed take-down: from 1s, doubling, at most a minute apart. */
#define BROKER_RETRY_MIN_USEC (1 * UINT64_C(1000000))
#define BROKER_RETRY_MAX_USEC (60 * UINT64_C(1000000))
#define BROKER_REASON_UNDELIVERED "reply undelivered"

struct token_entry {
        char token[STORE_TOKEN_LEN + 1]; /* "" once the region is reclaimed */
        struct region *region;
        size_t peer;
};

struct region {
        uint64_t id;
        char *owner, *device, *label;
        const struct platform_pool *pool;
        uint64_t base, size;
        enum region_state state;
        int64_t deadline, created;
        bool owner_mapped;
        struct broker_unplug owner_unplug;
        size_t n_peers;
        struct broker_peer_info *peers; /* peers[i].domain points into domains[i] */
        char **domains;
        struct token_entry *tokens;     /* parallel to peers */
        struct range_node range;
        /* A take-down that failed (store error, scrub failure) is tried again at retry_at. */
        int64_t retry_at;
        uint64_t retry_backoff;
        struct region *revoking_prev, *revoking_next;
        bool on_revoking_list;
};

/* Live regions reachable from (device, domain), newest last; plus a recorded bounce. */
struct route {
        char *key; /* "device/domain": '/' never occurs in names */
        char *device, *domain;
        struct region **live;
        size_t n_live, cap_live;
        char *bounce_reason; /* set when the last share for this route bounced */
        int64_t updated;
};

struct usage {
        char *domain;
        uint64_t bytes, regions;
};

struct broker {
        struct platform *platform;
        struct policy *policy;
        struct backend *backend;
        struct store *store;
        struct placer *placer;
        uint64_t revoke_timeout_usec;
        enum unplug_escalation escalation;
        uint64_t unplug_grace_usec;
        /*
         * While starting or reconciling with a backend that has a survey: a removal requested
         * before (before the crash, before libvirtd went away) may still be pending in the
         * hypervisor, and asking again for a pending removal is not safe everywhere (libvirt
         * 9.0's daemon was seen to crash on it). So such removals are deferred: repeated only if
         * nothing completes them within BROKER_UNPLUG_RETRY_USEC. New removals go out at once.
         */
        bool defer_unmaps;
        bool has_deferred;
        bool has_retry;
        int64_t (*clock)(void *userdata);
        void *clock_userdata;
        void (*on_event)(void *userdata, const struct broker_event *ev);
        void *event_userdata;

        struct hashmap *regions; /* id -> region */
        struct hashmap *tokens;  /* token -> token_entry */
        struct hashmap *routes;  /* "device/domain" -> route */
        struct hashmap *usage;   /* owner domain -> usage */
        struct region *revoking; /* list of regions in state revoking */
};

static int64_t broker_now(const struct broker *b) {
        struct timespec ts;

        if (b->clock)
                return b->clock(b->clock_userdata);
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void caller_actor(const struct broker_caller *caller, char buf[static 48]) {
        if (!caller)
                snprintf(buf, 48, "broker");
        else
                snprintf(buf, 48, "%s:%u", caller->admin ? "admin" : "uid", (unsigned) caller->uid);
}

static void emit(struct broker *b, const struct broker_event *ev) {
        if (b->on_event)
                b->on_event(b->event_userdata, ev);
}

static const char *const broker_event_type_table[] = {
        [BROKER_EVENT_ATTACHED] = "attached",
        [BROKER_EVENT_RECALL] = "recall",
        [BROKER_EVENT_RELEASED] = "released",
        [BROKER_EVENT_REVOKED] = "revoked",
        [BROKER_EVENT_RECLAIMED] = "reclaimed",
        [BROKER_EVENT_ROUTE_CHANGED] = "route changed",
        [BROKER_EVENT_UNPLUG_OVERDUE] = "unplug overdue",
        [BROKER_EVENT_RECONCILED] = "reconciled",
};
_Static_assert(ELEMENTSOF(broker_event_type_table) == _BROKER_EVENT_TYPE_MAX, "one name per broker event type");

const char *broker_event_type_to_string(enum broker_event_type t) {
        return (unsigned) t < _BROKER_EVENT_TYPE_MAX ? broker_event_type_table[t] : NULL;
}

static struct backend_region backend_region_of(const struct region *r) {
        return (struct backend_region) { .id = r->id, .base = r->base, .size = r->size, .pool = r->pool };
}

/* ---- regions in memory ---- */

static void region_free(struct region *r) {
        if (!r)
                return;
        for (size_t i = 0; r->domains && i < r->n_peers; i++)
                free(r->domains[i]);
        free(r->domains);
        free(r->peers);
        free(r->tokens);
        free(r->owner);
        free(r->device);
        free(r->label);
        free(r);
}
DEFINE_CLEANUP(struct region, region_free);

static int region_alloc(const char *owner, const char *device, const char *label, size_t n_peers,
                        struct region **ret) {
        _cleanup_(region_freep) struct region *r = calloc(1, sizeof(*r));

        if (!r)
                return -ENOMEM;
        r->n_peers = n_peers;
        r->owner = strdup(owner);
        r->device = strdup(device);
        r->label = label ? strdup(label) : NULL;
        r->peers = calloc(n_peers, sizeof(*r->peers));
        r->domains = calloc(n_peers, sizeof(*r->domains));
        r->tokens = calloc(n_peers, sizeof(*r->tokens));
        if (!r->owner || !r->device || (label && !r->label) || !r->peers || !r->domains || !r->tokens)
                return -ENOMEM;
        *ret = TAKE_PTR(r);
        return 0;
}

static int region_set_peer(struct region *r, size_t i, const char *domain, enum access_mode access,
                           enum peer_state state, const char *token, bool mapped) {
        r->domains[i] = strdup(domain);
        if (!r->domains[i])
                return -ENOMEM;
        r->peers[i] = (struct broker_peer_info) {
                .domain = r->domains[i], .access = access, .state = state, .mapped = mapped,
        };
        r->tokens[i].region = r;
        r->tokens[i].peer = i;
        snprintf(r->tokens[i].token, sizeof(r->tokens[i].token), "%s", token ?: "");
        return 0;
}

static ssize_t region_find_peer(const struct region *r, const char *domain) {
        for (size_t i = 0; i < r->n_peers; i++)
                if (strcmp(r->peers[i].domain, domain) == 0)
                        return (ssize_t) i;
        return -1;
}

static void region_info(const struct region *r, struct broker_region_info *ret) {
        *ret = (struct broker_region_info) {
                .id = r->id, .owner = r->owner, .device = r->device, .pool = r->pool ? r->pool->name : NULL,
                .label = r->label, .base = r->base, .size = r->size, .state = r->state, .deadline = r->deadline,
                .created = r->created, .owner_mapped = r->owner_mapped, .owner_unplug = r->owner_unplug,
                .n_peers = r->n_peers, .peers = r->peers,
        };
}

static bool region_live(const struct region *r) {
        return r->state == REGION_OFFERED || r->state == REGION_ACTIVE;
}

static bool peer_final(enum peer_state s) {
        return s == PEER_RELEASED || s == PEER_REVOKED;
}

static void revoking_list_add(struct broker *b, struct region *r) {
        if (r->on_revoking_list)
                return;
        r->revoking_prev = NULL;
        r->revoking_next = b->revoking;
        if (b->revoking)
                b->revoking->revoking_prev = r;
        b->revoking = r;
        r->on_revoking_list = true;
}

static void revoking_list_remove(struct broker *b, struct region *r) {
        if (!r->on_revoking_list)
                return;
        if (r->revoking_prev)
                r->revoking_prev->revoking_next = r->revoking_next;
        else
                b->revoking = r->revoking_next;
        if (r->revoking_next)
                r->revoking_next->revoking_prev = r->revoking_prev;
        r->revoking_prev = r->revoking_next = NULL;
        r->on_revoking_list = false;
}

/* ---- usage (quotas) ---- */

static int usage_adjust(struct broker *b, const char *domain, int64_t bytes, int64_t regions) {
        struct usage *u = hashmap_get(b->usage, domain);
        int r;

        if (!u) {
                _cleanup_(xfreep) struct usage *n = calloc(1, sizeof(*n));
                if (!n || !(n->domain = strdup(domain)))
                        return -ENOMEM;
                r = hashmap_put(b->usage, n->domain, n);
                if (r < 0) {
                        free(n->domain);
                        return r;
                }
                u = TAKE_PTR(n);
        }
        u->bytes += (uint64_t) bytes;
        u->regions += (uint64_t) regions;
        return 0;
}

void broker_usage(const struct broker *b, const char *domain, uint64_t *bytes, uint64_t *regions) {
        const struct usage *u = hashmap_get(b->usage, domain);

        *bytes = u ? u->bytes : 0;
        *regions = u ? u->regions : 0;
}

/* ---- routes ---- */

static void route_free(struct route *rt) {
        if (!rt)
                return;
        free(rt->key);
        free(rt->device);
        free(rt->domain);
        free(rt->live);
        free(rt->bounce_reason);
        free(rt);
}

static int route_get(struct broker *b, const char *device, const char *domain, bool create, struct route **ret) {
        _cleanup_(xfreep) char *key = NULL;
        struct route *rt;
        int r;

        if (asprintf(&key, "%s/%s", device, domain) < 0)
                return -ENOMEM;
        rt = hashmap_get(b->routes, key);
        if (!rt && create) {
                rt = calloc(1, sizeof(*rt));
                if (!rt)
                        return -ENOMEM;
                rt->key = TAKE_PTR(key);
                rt->device = strdup(device);
                rt->domain = strdup(domain);
                if (!rt->device || !rt->domain || (r = hashmap_put(b->routes, rt->key, rt)) < 0) {
                        route_free(rt);
                        return -ENOMEM;
                }
        }
        if (!rt)
                return -ENOENT;
        *ret = rt;
        return 0;
}

static int route_add_live(struct route *rt, struct region *region) {
        if (rt->n_live == rt->cap_live) {
                size_t cap = rt->cap_live ? rt->cap_live * 2 : 4;
                struct region **live = reallocarray(rt->live, cap, sizeof(*live));
                if (!live)
                        return -ENOMEM;
                rt->live = live;
                rt->cap_live = cap;
        }
        rt->live[rt->n_live++] = region;
        return 0;
}

static void route_remove_live(struct route *rt, const struct region *region) {
        for (size_t i = 0; i < rt->n_live; i++)
                if (rt->live[i] == region) {
                        memmove(rt->live + i, rt->live + i + 1, (rt->n_live - i - 1) * sizeof(*rt->live));
                        rt->n_live--;
                        return;
                }
}

/*
 * What the durable routes table should say for rt. A region row's reason carries a bounce
 * answered while the region still served the route: it is the answer once the region goes.
 */
static int route_persist(struct broker *b, const struct route *rt, int64_t now) {
        if (rt->n_live > 0)
                return store_route_set(b->store, &(struct store_route) {
                        .device = rt->device, .domain = rt->domain, .kind = ROUTE_REGION,
                        .region = rt->live[rt->n_live - 1]->id, .reason = rt->bounce_reason, .updated = now,
                });
        if (rt->bounce_reason)
                return store_route_set(b->store, &(struct store_route) {
                        .device = rt->device, .domain = rt->domain, .kind = ROUTE_BOUNCE,
                        .reason = rt->bounce_reason, .updated = now,
                });
        int r = store_route_delete(b->store, rt->device, rt->domain);
        return r == -ENOENT ? 0 : r;
}

static void emit_route_changed(struct broker *b, const char *device, const char *domain, uint64_t region,
                               const char *reason) {
        emit(b, &(struct broker_event) {
                .type = BROKER_EVENT_ROUTE_CHANGED, .region = region, .device = device, .domain = domain,
                .reason = reason,
        });
}

/*
 * A region stops being usable for new traffic: record, in the open transaction, what its
 * routes say without it. Memory is left alone until the commit succeeded (routes_drop_region),
 * so a failed commit leaves the routes exactly as they were.
 */
static int routes_persist_without(struct broker *b, struct region *region, int64_t now) {
        for (size_t i = 0; i < region->n_peers; i++) {
                struct route *rt;
                int r;

                if (route_get(b, region->device, region->peers[i].domain, false, &rt) < 0 || rt->n_live == 0 ||
                    rt->live[rt->n_live - 1] != region)
                        continue;
                /* Persist as if it were gone: the current entry is the one before it. */
                rt->n_live--;
                r = route_persist(b, rt, now);
                rt->n_live++;
                if (r < 0)
                        return r;
        }
        return 0;
}

static void routes_drop_region(struct broker *b, struct region *region) {
        for (size_t i = 0; i < region->n_peers; i++) {
                struct route *rt;
                if (route_get(b, region->device, region->peers[i].domain, false, &rt) >= 0)
                        route_remove_live(rt, region);
        }
}

/*
 * One peer is done with a region that may stay live for others: the peer's route no longer
 * leads there. route_persist_without_peer() records it in the open transaction without touching
 * memory; route_drop_peer() follows the commit.
 */
static int route_persist_without_peer(struct broker *b, struct region *region, const char *domain, int64_t now) {
        struct route *rt;
        int q;

        if (route_get(b, region->device, domain, false, &rt) < 0 || rt->n_live == 0 ||
            rt->live[rt->n_live - 1] != region)
                return 0;
        rt->n_live--;
        q = route_persist(b, rt, now);
        rt->n_live++;
        return q;
}

static void route_drop_peer(struct broker *b, struct region *region, const char *domain, const char *reason) {
        struct route *rt;
        bool was_current;

        if (route_get(b, region->device, domain, false, &rt) < 0)
                return;
        was_current = rt->n_live > 0 && rt->live[rt->n_live - 1] == region;
        route_remove_live(rt, region);
        if (was_current)
                emit_route_changed(b, region->device, domain, rt->n_live > 0 ? rt->live[rt->n_live - 1]->id : 0,
                                   reason);
}

static void routes_announce(struct broker *b, const struct region *region, const char *reason) {
        for (size_t i = 0; i < region->n_peers; i++) {
                struct route *rt;
                uint64_t id = 0;
                if (route_get(b, region->device, region->peers[i].domain, false, &rt) >= 0 && rt->n_live > 0)
                        id = rt->live[rt->n_live - 1]->id;
                emit_route_changed(b, region->device, region->peers[i].domain, id, reason);
        }
}

/* ---- audit ---- */

static int audit(struct broker *b, const char *actor, const struct region *r, const char *domain,
                 const char *action, const char *from, const char *to, const char *reason, int64_t now) {
        return store_audit_append(b->store, &(struct store_audit) {
                .time = now, .actor = actor, .region = r ? r->id : 0, .domain = domain, .action = action,
                .from_state = from, .to_state = to, .reason = reason,
        });
}

static int store_fail(struct broker *b, int r, struct broker_error *err, const char *what) {
        store_rollback(b->store);
        return broker_error_set(err, BROKER_E_STORE, "could not record %s: %s", what, strerror(-r));
}

/* ---- reclaim path ---- */

static int region_finish(struct broker *b, struct region *r, const char *actor);

/* Records that domain's mapping of r is gone (the backend shows none): durably, then in memory. */
static int mapping_record_gone(struct broker *b, struct region *r, const char *domain) {
        int q;

        if (strcmp(domain, r->owner) == 0) {
                if (!r->owner_mapped)
                        return 0;
                q = store_region_update(b->store, r->id, r->state, r->deadline, false, broker_now(b));
                if (q < 0)
                        return q;
                r->owner_mapped = false;
                r->owner_unplug = (struct broker_unplug) {};
        } else {
                ssize_t i = region_find_peer(r, domain);
                if (i < 0 || !r->peers[i].mapped)
                        return 0;
                q = store_peer_update(b->store, r->id, domain, r->peers[i].state, false, false);
                if (q < 0)
                        return q;
                r->peers[i].mapped = false;
                r->peers[i].unplug = (struct broker_unplug) {};
        }
        return 0;
}

/* Marks one peer's attachment as gone (released or revoked) and unmaps it. */
static int peer_unmap(struct broker *b, struct region *r, size_t i) {
        struct backend_region br = backend_region_of(r);
        int q;

        if (!r->peers[i].mapped)
                return 0;
        if (b->defer_unmaps && r->peers[i].unplug.requested) {
                r->peers[i].unplug.deferred = b->has_deferred = true;
                return 0;
        }
        r->peers[i].unplug.deferred = false;
        q = backend_unmap(b->backend, &br, r->peers[i].domain);
        if (q == -EINPROGRESS) {
                /* Quarantined until backend_unmap_done(); the clock for escalation starts now. */
                if (!r->peers[i].unplug.requested)
                        r->peers[i].unplug.requested = broker_now(b);
                crashpoint("unmap-requested");
                return 0;
        }
        if (q < 0) {
                log_region(LOG_ERR, r->id, r->peers[i].domain, NULL, "unmap failed: %s; range stays quarantined",
                           strerror(-q));
                return q;
        }
        q = mapping_record_gone(b, r, r->peers[i].domain);
        if (q >= 0)
                crashpoint("unmap-recorded");
        return q;
}

static int owner_unmap(struct broker *b, struct region *r) {
        struct backend_region br = backend_region_of(r);
        int q;

        if (!r->owner_mapped)
                return 0;
        if (b->defer_unmaps && r->owner_unplug.requested) {
                r->owner_unplug.deferred = b->has_deferred = true;
                return 0;
        }
        r->owner_unplug.deferred = false;
        q = backend_unmap(b->backend, &br, r->owner);
        if (q == -EINPROGRESS) {
                if (!r->owner_unplug.requested)
                        r->owner_unplug.requested = broker_now(b);
                crashpoint("unmap-requested");
                return 0;
        }
        if (q < 0)
                return q;
        q = mapping_record_gone(b, r, r->owner);
        if (q >= 0)
                crashpoint("unmap-recorded");
        return q;
}

static void region_forget(struct broker *b, struct region *r) {
        for (size_t i = 0; i < r->n_peers; i++)
                if (r->tokens[i].token[0])
                        hashmap_remove(b->tokens, r->tokens[i].token);
        revoking_list_remove(b, r);
        placer_release(b->placer, &r->range);
        hashmap_remove(b->regions, &r->id);
        usage_adjust(b, r->owner, -(int64_t) r->size, -1);
        region_free(r);
}

/*
 * A region in state revoking is reclaimed once no peer is attached and no mapping is left
 * unconfirmed: scrub, free the memory, then record it reclaimed. Scrub and destroy come
 * before the commit so a crash in between repeats them (both are idempotent) rather than
 * leaking memory the database no longer mentions.
 */
static void region_retry_later(struct broker *b, struct region *r, int error) {
        int64_t now = broker_now(b);

        r->retry_backoff = r->retry_backoff ? r->retry_backoff * 2 : BROKER_RETRY_MIN_USEC;
        if (r->retry_backoff > BROKER_RETRY_MAX_USEC)
                r->retry_backoff = BROKER_RETRY_MAX_USEC;
        r->retry_at = now + (int64_t) r->retry_backoff;
        b->has_retry = true;
        log_region(LOG_WARNING, r->id, NULL, "broker", "taking the region down failed (%s); trying again in %" PRIu64 "s",
                   strerror(-error), r->retry_backoff / 1000000);
}

static int region_finish_once(struct broker *b, struct region *r, const char *actor);

/* region_finish_once(), and on failure a retry later: nothing is left half-done for good. */
static int region_finish(struct broker *b, struct region *r, const char *actor) {
        int q = region_finish_once(b, r, actor);

        if (q < 0)
                region_retry_later(b, r, q);
        return q;
}

static int region_finish_once(struct broker *b, struct region *r, const char *actor) {
        struct backend_region br = backend_region_of(r);
        int64_t now;
        int q;

        if (r->state != REGION_REVOKING)
                return 0;
        for (size_t i = 0; i < r->n_peers; i++)
                if (r->peers[i].state == PEER_ATTACHED)
                        return 0;
        for (size_t i = 0; i < r->n_peers; i++) {
                /* A removal that was never asked for, or whose record failed: ask (again) now. */
                if (r->peers[i].mapped && !r->peers[i].unplug.requested) {
                        q = peer_unmap(b, r, i);
                        if (q < 0)
                                return q;
                }
                if (r->peers[i].mapped)
                        return 0;
        }
        if (r->owner_mapped) {
                q = owner_unmap(b, r);
                if (q < 0 || r->owner_mapped)
                        return q;
        }

        if (r->pool) {
                q = backend_scrub(b->backend, &br);
                if (q < 0 && q != -ENOENT) {
                        log_region(LOG_ERR, r->id, NULL, actor, "scrub failed: %s; range stays quarantined",
                                   strerror(-q));
                        return q;
                }
                crashpoint("reclaim-scrubbed");
                q = backend_destroy(b->backend, &br);
                if (q < 0 && q != -ENOENT)
                        return q;
                crashpoint("reclaim-destroyed");
        }

        now = broker_now(b);
        q = store_begin(b->store);
        if (q < 0)
                return q;
        q = store_region_update(b->store, r->id, REGION_RECLAIMED, r->deadline, false, now);
        for (size_t i = 0; q >= 0 && i < r->n_peers; i++)
                q = store_peer_update(b->store, r->id, r->peers[i].domain, r->peers[i].state, true, false);
        if (q >= 0)
                q = audit(b, actor, r, NULL, "reclaim", "revoking", "reclaimed", "scrubbed and freed", now);
        if (q >= 0)
                q = store_commit(b->store);
        if (q < 0) {
                store_rollback(b->store);
                return q;
        }
        crashpoint("reclaimed");

        emit(b, &(struct broker_event) {
                .type = BROKER_EVENT_RECLAIMED, .region = r->id, .owner = r->owner, .device = r->device,
                .n_peers = r->n_peers, .peers = r->peers,
        });
        region_forget(b, r);
        return 0;
}

/* Forcibly revokes every attachment still held (deadline passed, force, domain gone). */
static int region_force(struct broker *b, struct region *r, const char *actor, const char *reason) {
        int64_t now = broker_now(b);
        bool any = false;
        int q;

        for (size_t i = 0; i < r->n_peers; i++)
                any = any || r->peers[i].state == PEER_ATTACHED;
        if (any) {
                q = store_begin(b->store);
                if (q < 0)
                        return q;
                for (size_t i = 0; q >= 0 && i < r->n_peers; i++)
                        if (r->peers[i].state == PEER_ATTACHED) {
                                q = store_peer_update(b->store, r->id, r->peers[i].domain, PEER_REVOKED, false,
                                                      r->peers[i].mapped);
                                if (q >= 0)
                                        q = audit(b, actor, r, r->peers[i].domain, "revoke-peer", "attached",
                                                  "revoked", reason, now);
                        }
                if (q >= 0)
                        q = store_commit(b->store);
                if (q < 0) {
                        store_rollback(b->store);
                        return q;
                }
                crashpoint("revoke-forced");
                for (size_t i = 0; i < r->n_peers; i++)
                        if (r->peers[i].state == PEER_ATTACHED) {
                                r->peers[i].state = PEER_REVOKED;
                                emit(b, &(struct broker_event) {
                                        .type = BROKER_EVENT_REVOKED, .region = r->id, .owner = r->owner,
                                        .device = r->device, .domain = r->peers[i].domain, .reason = reason,
                                });
                        }
        }
        for (size_t i = 0; i < r->n_peers; i++)
                if (peer_final(r->peers[i].state))
                        (void) peer_unmap(b, r, i); /* a failure keeps it quarantined; logged */
        (void) region_finish(b, r, actor); /* retried on failure */
        return 0;
}

/*
 * Moves a live region to revoking: outstanding grants are voided, attached peers recalled
 * with a deadline. One transaction. Then finishes at once if nobody is attached.
 */
static int region_start_revoke(struct broker *b, struct region *r, const char *actor, uint64_t timeout_usec,
                               bool force, const char *reason) {
        int64_t now = broker_now(b), deadline;
        enum region_state from = r->state;
        int q;

        deadline = now + (int64_t) timeout_usec;
        q = store_begin(b->store);
        if (q < 0)
                return q;
        q = store_region_update(b->store, r->id, REGION_REVOKING, deadline, r->owner_mapped, now);
        for (size_t i = 0; q >= 0 && i < r->n_peers; i++)
                if (r->peers[i].state == PEER_GRANTED) {
                        q = store_peer_update(b->store, r->id, r->peers[i].domain, PEER_REVOKED, false, false);
                        if (q >= 0)
                                q = audit(b, actor, r, r->peers[i].domain, "void-grant", "granted", "revoked",
                                          "region revoked before the peer attached", now);
                }
        if (q >= 0)
                q = routes_persist_without(b, r, now);
        if (q >= 0)
                q = audit(b, actor, r, NULL, "revoke", region_state_to_string(from), "revoking", reason, now);
        if (q >= 0)
                q = store_commit(b->store);
        if (q < 0) {
                store_rollback(b->store);
                return q;
        }
        crashpoint("revoke-recorded");
        routes_drop_region(b, r);

        r->state = REGION_REVOKING;
        r->deadline = deadline;
        for (size_t i = 0; i < r->n_peers; i++)
                if (r->peers[i].state == PEER_GRANTED)
                        r->peers[i].state = PEER_REVOKED;
        revoking_list_add(b, r);
        routes_announce(b, r, reason);

        for (size_t i = 0; i < r->n_peers; i++)
                if (r->peers[i].state == PEER_ATTACHED && !force)
                        emit(b, &(struct broker_event) {
                                .type = BROKER_EVENT_RECALL, .region = r->id, .owner = r->owner,
                                .device = r->device, .domain = r->peers[i].domain, .deadline = deadline,
                                .reason = reason,
                        });
        /* The revoke is recorded: what follows is retried on failure, not reported as one. */
        if (force)
                (void) region_force(b, r, actor, reason);
        else
                (void) region_finish(b, r, actor);
        return 0;
}

/*
 * Revokes one peer's grant or attachment at once (its domain went away, or its mapping was
 * lost for good): one transaction with its audit row, then the event and the unmap.
 * still_mapped says whether the backend may still show the region to the domain.
 */
static int peer_revoke_now(struct broker *b, struct region *r, size_t i, const char *actor, const char *why,
                           bool still_mapped) {
        enum peer_state from = r->peers[i].state;
        int64_t now = broker_now(b);
        int q;

        q = store_begin(b->store);
        if (q >= 0)
                q = store_peer_update(b->store, r->id, r->peers[i].domain, PEER_REVOKED, false, still_mapped);
        if (q >= 0)
                q = route_persist_without_peer(b, r, r->peers[i].domain, now);
        if (q >= 0)
                q = audit(b, actor, r, r->peers[i].domain, "revoke-peer", peer_state_to_string(from), "revoked", why, now);
        if (q >= 0)
                q = store_commit(b->store);
        if (q < 0) {
                store_rollback(b->store);
                return q;
        }
        r->peers[i].state = PEER_REVOKED;
        r->peers[i].mapped = still_mapped;
        if (!still_mapped)
                r->peers[i].unplug = (struct broker_unplug) {};
        route_drop_peer(b, r, r->peers[i].domain, why);
        if (from == PEER_ATTACHED)
                emit(b, &(struct broker_event) {
                        .type = BROKER_EVENT_REVOKED, .region = r->id, .owner = r->owner, .device = r->device,
                        .domain = r->peers[i].domain, .reason = why,
                });
        return peer_unmap(b, r, i);
}

/* A live region that no peer can use any more is taken down; a revoking one is finished. */
static int region_settle(struct broker *b, struct region *r, const char *actor, const char *why) {
        if (!region_live(r))
                return region_finish(b, r, actor);
        for (size_t i = 0; i < r->n_peers; i++)
                if (!peer_final(r->peers[i].state))
                        return 0;
        int q = region_start_revoke(b, r, actor, 0, false, why);
        if (q < 0)
                region_retry_later(b, r, q);
        return q;
}

/* ---- share ---- */

static bool label_is_valid(const char *label) {
        size_t n = 0;

        for (const unsigned char *p = (const unsigned char *) label; *p; p++, n++)
                if (*p < 0x20 || *p == 0x7f || n >= BROKER_MAX_LABEL)
                        return false;
        return true;
}

static int token_generate(char out[static STORE_TOKEN_LEN + 1]) {
        uint8_t raw[STORE_TOKEN_LEN / 2];
        ssize_t n;

        do
                n = getrandom(raw, sizeof(raw), 0);
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t) sizeof(raw))
                return n < 0 ? negative_errno() : -EIO;
        for (size_t i = 0; i < sizeof(raw); i++)
                snprintf(out + 2 * i, 3, "%02x", raw[i]);
        return 0;
}

bool broker_caller_acts_for(const struct broker *b, const struct broker_caller *caller, const char *domain) {
        return caller->admin || policy_agent_may_act(b->policy, caller->uid, domain);
}

static int check_acts_for(const struct broker *b, const struct broker_caller *caller, const char *domain,
                          struct broker_error *err) {
        if (!broker_caller_acts_for(b, caller, domain))
                return broker_error_set(err, BROKER_E_FORBIDDEN, "uid %u may not act for domain %s",
                                        (unsigned) caller->uid, domain);
        return 0;
}

static bool region_visible(const struct broker *b, const struct broker_caller *caller, const struct region *r) {
        if (broker_caller_acts_for(b, caller, r->owner))
                return true;
        for (size_t i = 0; i < r->n_peers; i++)
                if (broker_caller_acts_for(b, caller, r->peers[i].domain))
                        return true;
        return false;
}

/* Has an earlier entry of the policy (agent a, domain d) already given uid this domain? */
static bool agent_domain_seen(const struct policy *p, uid_t uid, size_t a, size_t d) {
        const char *name = p->agents[a].domains[d];

        for (size_t i = 0; i <= a; i++) {
                if (p->agents[i].uid != uid)
                        continue;
                for (size_t j = 0; j < (i == a ? d : p->agents[i].n_domains); j++)
                        if (strcmp(p->agents[i].domains[j], name) == 0)
                                return true;
        }
        return false;
}

int broker_caller_domains(const struct broker *b, const struct broker_caller *caller,
                          int (*fn)(void *userdata, const char *domain), void *userdata) {
        const struct policy *p = b->policy;

        if (caller->admin)
                return 0;
        for (size_t i = 0; i < p->n_agents; i++) {
                if (p->agents[i].uid != caller->uid)
                        continue;
                for (size_t j = 0; j < p->agents[i].n_domains; j++) {
                        if (agent_domain_seen(p, caller->uid, i, j))
                                continue;
                        int q = fn(userdata, p->agents[i].domains[j]);
                        if (q != 0)
                                return q;
                }
        }
        return 0;
}

bool broker_uid_known(const struct broker *b, uid_t uid) {
        for (size_t i = 0; i < b->policy->n_agents; i++)
                if (b->policy->agents[i].uid == uid)
                        return true;
        return false;
}

static int share_validate(const struct broker *b, const struct broker_share_request *req,
                          const struct platform_device **ret_dev, struct broker_error *err) {
        const struct platform_device *dev;

        if (!name_is_valid(req->owner))
                return broker_error_set(err, BROKER_E_INVALID, "owner is not a valid domain name");
        if (!name_is_valid(req->device))
                return broker_error_set(err, BROKER_E_INVALID, "device is not a valid device name");
        if (req->n_peers == 0)
                return broker_error_set(err, BROKER_E_INVALID, "a share needs at least one peer");
        if (req->n_peers > BROKER_MAX_PEERS)
                return broker_error_set(err, BROKER_E_LIMIT, "%zu peers; at most %d", req->n_peers,
                                        BROKER_MAX_PEERS);
        for (size_t i = 0; i < req->n_peers; i++) {
                if (!name_is_valid(req->peers[i].domain))
                        return broker_error_set(err, BROKER_E_INVALID, "peers[%zu] is not a valid domain name", i);
                if (req->peers[i].access != ACCESS_RO && req->peers[i].access != ACCESS_RW)
                        return broker_error_set(err, BROKER_E_INVALID, "peers[%zu].access must be ro or rw", i);
        }
        if (req->label && !label_is_valid(req->label))
                return broker_error_set(err, BROKER_E_LIMIT, "label must be printable and at most %d bytes",
                                        BROKER_MAX_LABEL);
        if (req->size == 0)
                return broker_error_set(err, BROKER_E_INVALID, "size must be greater than zero");

        dev = platform_find_device(b->platform, req->device);
        if (!dev)
                return broker_error_set(err, BROKER_E_UNKNOWN_DEVICE, "no device %s on this platform", req->device);
        if (strcmp(dev->owner, req->owner) != 0)
                return broker_error_set(err, BROKER_E_NOT_DEVICE_OWNER, "device %s is driven by %s, not %s",
                                        dev->name, dev->owner, req->owner);
        *ret_dev = dev;
        return 0;
}

static int share_bounce(struct broker *b, const char *actor, const struct broker_share_request *req,
                        const struct placement_result *pr, struct broker_share_result *ret,
                        struct broker_error *err) {
        int64_t now = broker_now(b);
        struct route *routes[BROKER_MAX_PEERS] = {};
        char *old[BROKER_MAX_PEERS] = {};
        int q;

        for (size_t i = 0; i < req->n_peers; i++) {
                q = route_get(b, req->device, req->peers[i].domain, true, &routes[i]);
                if (q < 0)
                        return broker_error_set(err, BROKER_E_STORE, "out of memory");
        }
        q = store_begin(b->store);
        if (q < 0)
                return store_fail(b, q, err, "the bounce route");
        /* A live region still serves the route; the bounce is recorded for when it goes. */
        for (size_t i = 0; i < req->n_peers; i++) {
                old[i] = routes[i]->bounce_reason;
                routes[i]->bounce_reason = strdup(pr->reason);
                if (!routes[i]->bounce_reason) {
                        q = -ENOMEM;
                        break;
                }
                q = route_persist(b, routes[i], now);
                if (q >= 0)
                        q = audit(b, actor, NULL, req->peers[i].domain, "bounce", NULL, NULL, pr->reason, now);
                if (q < 0)
                        break;
        }
        if (q >= 0)
                q = store_commit(b->store);
        if (q < 0) {
                for (size_t i = 0; i < req->n_peers; i++)
                        if (routes[i]->bounce_reason != old[i]) {
                                free(routes[i]->bounce_reason);
                                routes[i]->bounce_reason = old[i];
                        }
                return store_fail(b, q, err, "the bounce route");
        }
        for (size_t i = 0; i < req->n_peers; i++) {
                free(old[i]);
                routes[i]->updated = now;
                if (routes[i]->n_live == 0)
                        emit_route_changed(b, req->device, req->peers[i].domain, 0, pr->reason);
        }
        *ret = (struct broker_share_result) { .bounce = true, .owner_fd = -1 };
        snprintf(ret->reason, sizeof(ret->reason), "%s", pr->reason);
        return 0;
}

/* Durably undoes a committed share whose memory could not be made real. */
static void share_abort(struct broker *b, struct region *r, const char *actor, const char *why) {
        r->owner_mapped = false;
        if (region_start_revoke(b, r, actor, 0, true, why) < 0)
                log_region(LOG_ERR, r->id, NULL, actor, "could not roll back the share; it is revoked on restart");
}

int broker_share(struct broker *b, const struct broker_caller *caller, const struct broker_share_request *req,
                 struct broker_share_result *ret, struct broker_error *err) {
        _cleanup_(region_freep) struct region *r = NULL;
        _cleanup_(closep) int owner_fd = -EBADF;
        struct policy_peer_request ppeers[BROKER_MAX_PEERS];
        const struct platform_device *dev;
        struct placement_result pr;
        struct backend_mapping owner_map = { .fd = -1 };
        struct backend_region br;
        uint64_t used_bytes, used_regions, max_bytes, max_regions;
        char actor[48];
        int64_t now;
        int q;

        caller_actor(caller, actor);
        q = share_validate(b, req, &dev, err);
        if (q < 0)
                return q;
        q = check_acts_for(b, caller, req->owner, err);
        if (q < 0)
                return q;
        for (size_t i = 0; i < req->n_peers; i++)
                ppeers[i] = (struct policy_peer_request) { .domain = req->peers[i].domain, .access = req->peers[i].access };
        q = policy_check_share(b->policy, req->owner, req->device, ppeers, req->n_peers, req->size, err);
        if (q < 0)
                return q;

        q = placer_compute(b->placer, &(struct placement_request) {
                .device = req->device, .size = req->size, .has_numa_node = req->has_numa_node,
                .numa_node = req->numa_node, .alignment = req->alignment, .place = req->place, .base = req->base,
        }, &pr, err);
        if (q < 0)
                return q;
        if (pr.bounce)
                return share_bounce(b, actor, req, &pr, ret, err);

        char unsupported[160] = "";
        q = backend_check(b->backend, pr.pool, pr.size, unsupported, sizeof(unsupported));
        if (q < 0)
                return broker_error_set(err, BROKER_E_SIZE_UNSUPPORTED, "the %s backend cannot map %s: %s",
                                        backend_name(b->backend), num_format_size(pr.size, (char[NUM_FMT_MAX]) {}),
                                        unsupported[0] ? unsupported : strerror(-q));

        broker_usage(b, req->owner, &used_bytes, &used_regions);
        policy_quota_for(b->policy, req->owner, &max_bytes, &max_regions);
        if (used_regions + 1 > max_regions) {
                return broker_error_set(err, BROKER_E_QUOTA, "%s already shares %" PRIu64 " regions; its quota is %" PRIu64,
                                        req->owner, used_regions, max_regions);
        }
        if (pr.size > max_bytes || used_bytes > max_bytes - pr.size) {
                char s1[NUM_FMT_MAX], s2[NUM_FMT_MAX], s3[NUM_FMT_MAX];
                return broker_error_set(err, BROKER_E_QUOTA, "%s shares %s; %s more exceeds its quota of %s",
                                        req->owner, num_format_size(used_bytes, s1), num_format_size(pr.size, s2),
                                        num_format_size(max_bytes, s3));
        }

        q = region_alloc(req->owner, req->device, req->label, req->n_peers, &r);
        if (q < 0)
                return broker_error_set(err, BROKER_E_STORE, "out of memory");
        r->pool = pr.pool;
        r->base = pr.base;
        r->size = pr.size;
        r->state = REGION_OFFERED;
        r->owner_mapped = true;
        now = broker_now(b);
        r->created = now;
        for (size_t i = 0; i < req->n_peers; i++) {
                char token[STORE_TOKEN_LEN + 1];
                q = token_generate(token);
                if (q < 0)
                        return broker_error_set(err, BROKER_E_STORE, "getrandom failed: %s", strerror(-q));
                q = region_set_peer(r, i, req->peers[i].domain, req->peers[i].access, PEER_GRANTED, token, false);
                if (q < 0)
                        return broker_error_set(err, BROKER_E_STORE, "out of memory");
        }

        /* Commit first: the database must know the region before any memory exists for it. */
        q = store_begin(b->store);
        if (q < 0)
                return store_fail(b, q, err, "the share");
        q = store_region_insert(b->store, &(struct store_region) {
                .owner = r->owner, .device = r->device, .pool = r->pool->name, .label = r->label,
                .base = r->base, .size = r->size, .state = REGION_OFFERED, .owner_mapped = true,
                .created = now, .updated = now,
        }, &r->id);
        for (size_t i = 0; q >= 0 && i < r->n_peers; i++)
                q = store_peer_insert(b->store, &(struct store_peer) {
                        .region = r->id, .domain = r->peers[i].domain, .access = r->peers[i].access,
                        .state = PEER_GRANTED, .token = r->tokens[i].token,
                });
        if (q >= 0) {
                char sz[NUM_FMT_MAX], why[160];
                snprintf(why, sizeof(why), "%s at 0x%" PRIx64 " in pool %s for %s", num_format_size(r->size, sz),
                         r->base, r->pool->name, r->device);
                q = audit(b, actor, r, NULL, "share", NULL, "offered", why, now);
        }
        if (q < 0)
                return store_fail(b, q, err, "the share");

        /* Index before commit so a failure below can still be undone in memory. */
        q = placer_reserve(b->placer, &r->range, r->base, r->size);
        if (q < 0) {
                store_rollback(b->store);
                return broker_error_set(err, BROKER_E_OVERLAP, "range already in use");
        }
        q = hashmap_put(b->regions, &r->id, r);
        if (q < 0) {
                placer_release(b->placer, &r->range);
                store_rollback(b->store);
                return broker_error_set(err, BROKER_E_STORE, "out of memory");
        }
        for (size_t i = 0; q >= 0 && i < r->n_peers; i++) {
                struct route *rt;
                q = route_get(b, r->device, r->peers[i].domain, true, &rt);
                if (q >= 0)
                        q = route_add_live(rt, r);
                if (q >= 0) {
                        /* The route has room again: an older bounce is not recorded as pending. */
                        char *pending = TAKE_PTR(rt->bounce_reason);
                        q = route_persist(b, rt, now);
                        rt->bounce_reason = pending;
                }
        }
        if (q >= 0)
                q = store_commit(b->store);
        if (q >= 0)
                /* The route has room again: an older bounce answer no longer holds. */
                for (size_t i = 0; i < r->n_peers; i++) {
                        struct route *rt;
                        if (route_get(b, r->device, r->peers[i].domain, false, &rt) >= 0) {
                                free(rt->bounce_reason);
                                rt->bounce_reason = NULL;
                                rt->updated = now;
                        }
                }
        if (q < 0) {
                store_rollback(b->store);
                for (size_t i = 0; i < r->n_peers; i++) {
                        struct route *rt;
                        if (route_get(b, r->device, r->peers[i].domain, false, &rt) >= 0)
                                route_remove_live(rt, r);
                }
                hashmap_remove(b->regions, &r->id);
                placer_release(b->placer, &r->range);
                return broker_error_set(err, BROKER_E_STORE, "could not record the share: %s", strerror(-q));
        }
        for (size_t i = 0; i < r->n_peers; i++)
                (void) hashmap_put(b->tokens, r->tokens[i].token, &r->tokens[i]);
        (void) usage_adjust(b, r->owner, (int64_t) r->size, 1);
        struct region *region = TAKE_PTR(r);
        crashpoint("share-recorded");

        /* Make the memory real, zeroed, and map it for the owner. */
        br = backend_region_of(region);
        q = backend_create(b->backend, &br);
        if (q >= 0)
                q = backend_scrub(b->backend, &br);
        if (q >= 0) {
                crashpoint("share-created");
                q = backend_map(b->backend, &br, region->owner, ACCESS_RW, &owner_map);
        }
        if (q < 0) {
                uint64_t id = region->id;
                share_abort(b, region, actor, "the backend could not create the region's memory");
                return broker_error_set(err, BROKER_E_BACKEND, "%s backend could not create region %" PRIu64 ": %s",
                                        backend_name(b->backend), id, strerror(-q));
        }
        owner_fd = owner_map.fd;
        crashpoint("share-mapped");

        *ret = (struct broker_share_result) {
                .region = region->id, .base = region->base, .size = region->size, .alignment = pr.alignment,
                .pool = region->pool->name, .n_tokens = region->n_peers, .owner_fd = TAKE_FD(owner_fd),
        };
        for (size_t i = 0; i < region->n_peers; i++) {
                snprintf(ret->tokens[i].domain, sizeof(ret->tokens[i].domain), "%s", region->peers[i].domain);
                memcpy(ret->tokens[i].token, region->tokens[i].token, sizeof(ret->tokens[i].token));
        }
        routes_announce(b, region, "region shared");
        return 0;
}

/* ---- attach / release ---- */

int broker_attach(struct broker *b, const struct broker_caller *caller, const char *domain, const char *token,
                  struct broker_attach_result *ret, struct broker_error *err) {
        struct backend_mapping map = { .fd = -1 };
        struct backend_region br;
        struct token_entry *te;
        struct region *r;
        enum region_state from;
        char actor[48];
        int64_t now;
        size_t i;
        int q;

        caller_actor(caller, actor);
        if (!name_is_valid(domain))
                return broker_error_set(err, BROKER_E_INVALID, "domain is not a valid domain name");
        if (!token || strlen(token) != STORE_TOKEN_LEN)
                return broker_error_set(err, BROKER_E_BAD_TOKEN, "a token is %d hex characters", STORE_TOKEN_LEN);
        q = check_acts_for(b, caller, domain, err);
        if (q < 0)
                return q;
        te = hashmap_get(b->tokens, token);
        if (!te)
                return broker_error_set(err, BROKER_E_BAD_TOKEN, "no live grant has this token");
        r = te->region;
        i = te->peer;
        if (strcmp(r->peers[i].domain, domain) != 0)
                return broker_error_set(err, BROKER_E_WRONG_DOMAIN, "this token is for another domain, not %s", domain);
        if (r->peers[i].state != PEER_GRANTED)
                return broker_error_set(err, BROKER_E_TOKEN_USED, "the token for %s on region %" PRIu64 " was already %s",
                                        domain, r->id,
                                        r->peers[i].state == PEER_REVOKED ? "voided by a revoke" : "redeemed");
        if (!region_live(r))
                return broker_error_set(err, BROKER_E_BAD_STATE, "region %" PRIu64 " is %s", r->id,
                                        region_state_to_string(r->state));

        /* Record the attachment (mapped: the mapping may exist) before mapping, so a crash
         * in between leaves a record that restart unmaps, never a mapping nobody knows of. */
        now = broker_now(b);
        from = r->state;
        q = store_begin(b->store);
        if (q < 0)
                return store_fail(b, q, err, "the attach");
        q = store_peer_update(b->store, r->id, domain, PEER_ATTACHED, false, true);
        if (q >= 0 && from == REGION_OFFERED)
                q = store_region_update(b->store, r->id, REGION_ACTIVE, r->deadline, r->owner_mapped, now);
        if (q >= 0)
                q = audit(b, actor, r, domain, "attach", "granted", "attached", access_to_string(r->peers[i].access), now);
        if (q >= 0)
                q = store_commit(b->store);
        if (q < 0)
                return store_fail(b, q, err, "the attach");
        r->peers[i].state = PEER_ATTACHED;
        r->peers[i].mapped = true;
        r->state = REGION_ACTIVE;
        crashpoint("attach-recorded");

        br = backend_region_of(r);
        q = backend_map(b->backend, &br, domain, r->peers[i].access, &map);
        if (q < 0) {
                int u = store_begin(b->store);
                if (u >= 0)
                        u = store_peer_update(b->store, r->id, domain, PEER_GRANTED, false, false);
                if (u >= 0 && from == REGION_OFFERED)
                        u = store_region_update(b->store, r->id, from, r->deadline, r->owner_mapped, now);
                if (u >= 0)
                        u = audit(b, "broker", r, domain, "attach-failed", "attached", "granted", strerror(-q), now);
                if (u >= 0)
                        u = store_commit(b->store);
                if (u < 0)
                        store_rollback(b->store);
                else {
                        r->peers[i].state = PEER_GRANTED;
                        r->peers[i].mapped = false;
                        r->state = from;
                }
                return broker_error_set(err, BROKER_E_BACKEND, "%s backend could not map region %" PRIu64 " for %s: %s",
                                        backend_name(b->backend), r->id, domain, strerror(-q));
        }

        crashpoint("attach-mapped");
        *ret = (struct broker_attach_result) {
                .region = r->id, .base = r->base, .size = r->size, .access = r->peers[i].access, .fd = map.fd,
        };
        emit(b, &(struct broker_event) {
                .type = BROKER_EVENT_ATTACHED, .region = r->id, .owner = r->owner, .device = r->device, .domain = domain,
        });
        return 0;
}

/* region_info() of the region as a verb left it; only id and state once it is reclaimed. */
static void region_info_after(struct broker *b, uint64_t id, struct broker_region_info *ret) {
        struct region *r = hashmap_get(b->regions, &id);

        if (!ret)
                return;
        if (r)
                region_info(r, ret);
        else
                *ret = (struct broker_region_info) { .id = id, .state = REGION_RECLAIMED };
}

/* The region domain holds a grant or attachment on, or no_such_region. */
static int peer_lookup(struct broker *b, const char *domain, uint64_t id, struct region **ret_r, size_t *ret_i,
                       struct broker_error *err) {
        struct region *r = hashmap_get(b->regions, &id);
        ssize_t i = r ? region_find_peer(r, domain) : -1;

        if (i < 0)
                return broker_error_set(err, BROKER_E_NO_SUCH_REGION, "%s holds no grant on region %" PRIu64, domain, id);
        *ret_r = r;
        *ret_i = (size_t) i;
        return 0;
}

/* Peer i gives its grant or attachment up (reason: NULL for a plain release). */
static int peer_release(struct broker *b, const char *actor, struct region *r, size_t i, const char *reason,
                        struct broker_error *err) {
        const char *domain = r->peers[i].domain;
        enum peer_state from = r->peers[i].state;
        int64_t now;
        int q;

        if (peer_final(from))
                return broker_error_set(err, BROKER_E_BAD_STATE, "%s's grant on region %" PRIu64 " is already %s",
                                        domain, r->id, peer_state_to_string(from));
        now = broker_now(b);
        q = store_begin(b->store);
        if (q < 0)
                return store_fail(b, q, err, "the release");
        q = store_peer_update(b->store, r->id, domain, PEER_RELEASED, false, r->peers[i].mapped);
        if (q >= 0)
                q = route_persist_without_peer(b, r, domain, now);
        if (q >= 0)
                q = audit(b, actor, r, domain, "release", peer_state_to_string(from), "released", reason, now);
        if (q >= 0)
                q = store_commit(b->store);
        if (q < 0)
                return store_fail(b, q, err, "the release");
        crashpoint("release-recorded");
        r->peers[i].state = PEER_RELEASED;
        route_drop_peer(b, r, domain, "the peer released the region");
        emit(b, &(struct broker_event) {
                .type = BROKER_EVENT_RELEASED, .region = r->id, .owner = r->owner, .device = r->device, .domain = domain,
                .reason = reason,
        });

        (void) peer_unmap(b, r, i);
        /* Nobody can use it any more: take it down rather than keep it forever (retried on failure;
         * the release itself is recorded). */
        (void) region_settle(b, r, region_live(r) ? "broker" : actor, "every peer released the region");
        return 0;
}

int broker_release(struct broker *b, const struct broker_caller *caller, const char *domain, uint64_t id,
                   struct broker_region_info *ret, struct broker_error *err) {
        struct region *r = NULL;
        char actor[48];
        size_t i = 0;
        int q;

        caller_actor(caller, actor);
        if (!name_is_valid(domain))
                return broker_error_set(err, BROKER_E_INVALID, "domain is not a valid domain name");
        q = check_acts_for(b, caller, domain, err);
        if (q >= 0)
                q = peer_lookup(b, domain, id, &r, &i, err);
        if (q >= 0)
                q = peer_release(b, actor, r, i, NULL, err);
        if (q < 0)
                return q;
        region_info_after(b, id, ret);
        return 0;
}

int broker_attach_undo(struct broker *b, const struct broker_caller *caller, const char *domain, uint64_t id,
                       struct broker_error *err) {
        struct region *r = NULL;
        char actor[48];
        size_t i = 0;
        int q;

        caller_actor(caller, actor);
        if (!name_is_valid(domain))
                return broker_error_set(err, BROKER_E_INVALID, "domain is not a valid domain name");
        q = check_acts_for(b, caller, domain, err);
        if (q >= 0)
                q = peer_lookup(b, domain, id, &r, &i, err);
        if (q < 0)
                return q;
        if (r->peers[i].state != PEER_ATTACHED)
                return broker_error_set(err, BROKER_E_BAD_STATE, "%s is not attached to region %" PRIu64, domain, id);
        return peer_release(b, actor, r, i, BROKER_REASON_UNDELIVERED, err);
}

/* ---- revoke ---- */

struct deadline_write {
        const struct region *r;
        int64_t deadline, now;
};

static int deadline_write(struct store *s, void *userdata) {
        const struct deadline_write *w = userdata;

        return store_region_update(s, w->r->id, w->r->state, w->deadline, w->r->owner_mapped, w->now);
}

/* A revoke of a region already being revoked: force it, or bring its deadline forward. */
static int region_revoke_again(struct broker *b, struct region *r, const char *actor, uint64_t timeout_usec,
                               bool force, const char *why) {
        int64_t now = broker_now(b);
        struct deadline_write w = { .r = r, .deadline = now + (int64_t) timeout_usec, .now = now };
        char reason[160];
        int q;

        if (force)
                return region_force(b, r, actor, why);
        if (w.deadline >= r->deadline)
                return 0;
        snprintf(reason, sizeof(reason), "%s; deadline brought forward", why);
        q = store_transition(b->store, deadline_write, &w, &(struct store_audit) {
                .time = now, .actor = actor, .region = r->id, .action = "revoke", .from_state = "revoking",
                .to_state = "revoking", .reason = reason,
        }, 1);
        if (q < 0)
                return q;
        r->deadline = w.deadline;
        return 0;
}

int broker_revoke(struct broker *b, const struct broker_caller *caller, const char *owner, uint64_t id,
                  uint64_t timeout_usec, bool force, struct broker_region_info *ret, struct broker_error *err) {
        struct region *r;
        char actor[48], why[96];
        int q;

        caller_actor(caller, actor);
        if (timeout_usec > BROKER_MAX_REVOKE_TIMEOUT_USEC)
                return broker_error_set(err, BROKER_E_INVALID, "the revoke deadline may be at most 24h away");
        if (!owner && !caller->admin)
                return broker_error_set(err, BROKER_E_FORBIDDEN, "only an admin may revoke without naming the owner");
        if (owner) {
                if (!name_is_valid(owner))
                        return broker_error_set(err, BROKER_E_INVALID, "owner is not a valid domain name");
                q = check_acts_for(b, caller, owner, err);
                if (q < 0)
                        return q;
        }
        r = hashmap_get(b->regions, &id);
        if (!r)
                return broker_error_set(err, BROKER_E_NO_SUCH_REGION, "no live region %" PRIu64, id);
        if (owner && strcmp(r->owner, owner) != 0)
                return broker_error_set(err, BROKER_E_FORBIDDEN, "region %" PRIu64 " belongs to %s, not %s", id,
                                        r->owner, owner);

        snprintf(why, sizeof(why), "revoked by %s%s", owner ? "owner " : "admin", owner ?: "");
        if (r->state == REGION_REVOKING)
                q = region_revoke_again(b, r, actor, timeout_usec, force, why);
        else
                q = region_start_revoke(b, r, actor, timeout_usec, force, why);
        if (q < 0)
                return broker_error_set(err, BROKER_E_STORE, "revoke of region %" PRIu64 " did not complete: %s", id,
                                        strerror(-q));
        region_info_after(b, id, ret);
        return 0;
}

int broker_share_undo(struct broker *b, const struct broker_caller *caller, uint64_t id, struct broker_error *err) {
        struct region *r = hashmap_get(b->regions, &id);
        char actor[48];
        int q;

        caller_actor(caller, actor);
        if (!r)
                return broker_error_set(err, BROKER_E_NO_SUCH_REGION, "no live region %" PRIu64, id);
        q = check_acts_for(b, caller, r->owner, err);
        if (q < 0)
                return q;
        if (!region_live(r))
                return broker_error_set(err, BROKER_E_BAD_STATE, "region %" PRIu64 " is %s", id,
                                        region_state_to_string(r->state));
        q = region_start_revoke(b, r, actor, 0, true, BROKER_REASON_UNDELIVERED);
        if (q < 0)
                return broker_error_set(err, BROKER_E_STORE, "could not take region %" PRIu64 " down: %s", id,
                                        strerror(-q));
        return 0;
}

/* What broker_domain_gone() does, for an admin or the backend (actor). */
static int domain_gone(struct broker *b, const char *actor, const char *domain, struct broker_domain_gone_result *ret,
                       struct broker_error *err) {
        _cleanup_(xfreep) struct region **list = NULL;
        struct broker_domain_gone_result res = {};
        size_t n = 0, it = 0;
        char why[160];
        void *v;
        int q, first_error = 0;

        snprintf(why, sizeof(why), "domain %s went away", domain);
        /* Collect first: finishing a region removes it from the map we walk. */
        list = calloc(hashmap_size(b->regions) + 1, sizeof(*list));
        if (!list)
                return broker_error_set(err, BROKER_E_STORE, "out of memory");
        while (hashmap_iterate(b->regions, &it, &v)) {
                struct region *r = v;
                if (strcmp(r->owner, domain) == 0 || region_find_peer(r, domain) >= 0)
                        list[n++] = r;
        }

        for (size_t k = 0; k < n; k++) {
                struct region *r = list[k];
                ssize_t i = region_find_peer(r, domain);

                if (i >= 0 && !peer_final(r->peers[i].state)) {
                        q = peer_revoke_now(b, r, (size_t) i, actor, why, r->peers[i].mapped);
                        if (q < 0 && !peer_final(r->peers[i].state)) {
                                first_error = first_error ?: q;
                                continue;
                        }
                        res.peers_revoked++;
                } else if (i >= 0 && r->peers[i].mapped)
                        /* Its removal may have been refused earlier; ask again now that the domain is gone. */
                        (void) peer_unmap(b, r, (size_t) i);
                if (strcmp(r->owner, domain) == 0 && region_live(r)) {
                        q = region_start_revoke(b, r, actor, b->revoke_timeout_usec, false, why);
                        res.regions_revoked += q >= 0;
                } else
                        q = region_settle(b, r, actor, why);
                if (q < 0)
                        first_error = first_error ?: q;
        }
        if (first_error < 0)
                return broker_error_set(err, BROKER_E_STORE, "some regions of %s could not be revoked: %s", domain,
                                        strerror(-first_error));
        if (ret)
                *ret = res;
        return 0;
}

int broker_domain_gone(struct broker *b, const struct broker_caller *caller, const char *domain,
                       struct broker_domain_gone_result *ret, struct broker_error *err) {
        char actor[48];

        caller_actor(caller, actor);
        if (!caller->admin)
                return broker_error_set(err, BROKER_E_FORBIDDEN, "only an admin may report a domain gone");
        if (!name_is_valid(domain))
                return broker_error_set(err, BROKER_E_INVALID, "domain is not a valid domain name");
        return domain_gone(b, actor, domain, ret, err);
}

/* ---- escalation ---- */

/* When a pending removal becomes overdue: the revoke deadline, plus a grace from the request. */
static int64_t unplug_due(const struct broker *b, const struct region *r, bool mapped, const struct broker_unplug *u) {
        int64_t due;

        if (!mapped || !u->requested || u->escalated || r->state != REGION_REVOKING)
                return INT64_MAX;
        due = u->requested > INT64_MAX - (int64_t) b->unplug_grace_usec ? INT64_MAX
                                                                         : u->requested + (int64_t) b->unplug_grace_usec;
        return due > r->deadline ? due : r->deadline;
}

/*
 * The domain ignored the removal past its deadline. Whatever the configured action, the
 * range stays quarantined until the backend confirms the removal; the action only stops the
 * guest from using it meanwhile (pause) or ends the guest (destroy, which completes it).
 */
static void unplug_escalate(struct broker *b, struct region *r, const char *domain, struct broker_unplug *u,
                            int64_t now) {
        char why[320];
        int q = 0;

        q = backend_escalate(b->backend, domain, b->escalation);
        u->escalated = now;
        u->action = b->escalation;
        u->action_failed = q < 0;
        snprintf(why, sizeof(why),
                 "%s still holds region %" PRIu64 " %" PRId64 "s after its removal was requested%s; the range stays "
                 "quarantined; escalation: %s%s%s",
                 domain, r->id, (now - u->requested) / 1000000, u->failed ? " (the guest refused it)" : "",
                 escalation_to_string(b->escalation), q < 0 ? " failed: " : "", q < 0 ? strerror(-q) : "");
        char action[32];

        /* No state changes (the mapping stays until confirmed gone): from/to stay null. */
        snprintf(action, sizeof(action), "escalate-%s", escalation_to_string(b->escalation));
        (void) audit(b, "broker", r, domain, action, NULL, NULL, why, now);
        log_region(LOG_WARNING, r->id, domain, "broker", "%s", why);
        emit(b, &(struct broker_event) {
                .type = BROKER_EVENT_UNPLUG_OVERDUE, .region = r->id, .owner = r->owner, .device = r->device,
                .domain = domain, .reason = why, .escalation = b->escalation,
        });
}

static int64_t min_i64(int64_t a, int64_t b) {
        return a < b ? a : b;
}

/* When a deferred removal (see defer_unmaps) is asked for again; INT64_MAX if none is. */
static int64_t deferred_due(bool mapped, const struct broker_unplug *u) {
        if (!mapped || !u->deferred)
                return INT64_MAX;
        return u->requested + (int64_t) BROKER_UNPLUG_RETRY_USEC;
}

/* The earliest deferred removal; clears has_deferred when there is none left. */
static int64_t deferred_next(struct broker *b) {
        int64_t next = INT64_MAX;
        size_t it = 0;
        void *v;

        if (!b->has_deferred)
                return INT64_MAX;
        while (hashmap_iterate(b->regions, &it, &v)) {
                const struct region *r = v;
                for (size_t i = 0; i < r->n_peers; i++)
                        next = min_i64(next, deferred_due(r->peers[i].mapped, &r->peers[i].unplug));
                next = min_i64(next, deferred_due(r->owner_mapped, &r->owner_unplug));
        }
        b->has_deferred = next != INT64_MAX;
        return next;
}

/* The earliest retry of a failed take-down; clears has_retry when none is left. */
static int64_t retry_next(struct broker *b) {
        int64_t next = INT64_MAX;
        size_t it = 0;
        void *v;

        if (!b->has_retry)
                return INT64_MAX;
        while (hashmap_iterate(b->regions, &it, &v)) {
                const struct region *r = v;
                if (r->retry_at)
                        next = min_i64(next, r->retry_at);
        }
        b->has_retry = next != INT64_MAX;
        return next;
}

static void retry_failed(struct broker *b, int64_t now) {
        _cleanup_(xfreep) uint64_t *ids = NULL;
        size_t n = 0, it = 0;
        void *v;

        if (retry_next(b) > now)
                return;
        ids = calloc(hashmap_size(b->regions) + 1, sizeof(*ids));
        if (!ids)
                return;
        while (hashmap_iterate(b->regions, &it, &v))
                if (((struct region *) v)->retry_at && ((struct region *) v)->retry_at <= now)
                        ids[n++] = ((struct region *) v)->id;
        for (size_t k = 0; k < n; k++) {
                struct region *r = hashmap_get(b->regions, &ids[k]);
                if (!r)
                        continue;
                r->retry_at = 0;
                if (r->state == REGION_REVOKING && r->deadline <= now) {
                        int q = region_force(b, r, "broker", "revoke deadline passed");
                        if (q < 0)
                                region_retry_later(b, r, q);
                } else
                        (void) region_settle(b, r, "broker", "retrying a take-down that failed");
                /* Success resets the backoff; failure rescheduled it. */
                r = hashmap_get(b->regions, &ids[k]);
                if (r && !r->retry_at)
                        r->retry_backoff = 0;
        }
        (void) retry_next(b);
}

/* Deferred removals that nothing completed: ask for them now. */
static void retry_deferred(struct broker *b, int64_t now) {
        _cleanup_(xfreep) uint64_t *ids = NULL;
        size_t n = 0, it = 0;
        void *v;

        if (deferred_next(b) > now)
                return;
        ids = calloc(hashmap_size(b->regions) + 1, sizeof(*ids));
        if (!ids)
                return;
        while (hashmap_iterate(b->regions, &it, &v))
                ids[n++] = ((struct region *) v)->id;
        /* By id: a removal that completes at once may reclaim (free) its region. */
        for (size_t k = 0; k < n; k++) {
                struct region *r = hashmap_get(b->regions, &ids[k]);
                for (size_t i = 0; r && i < r->n_peers; i++)
                        if (deferred_due(r->peers[i].mapped, &r->peers[i].unplug) <= now) {
                                (void) peer_unmap(b, r, i);
                                (void) region_finish(b, r, "broker");
                                r = hashmap_get(b->regions, &ids[k]);
                        }
                if (r && deferred_due(r->owner_mapped, &r->owner_unplug) <= now) {
                        (void) owner_unmap(b, r);
                        (void) region_finish(b, r, "broker");
                }
        }
        (void) deferred_next(b);
}

static void escalate_overdue(struct broker *b, int64_t now) {
        struct region *r, *next;

        /* Escalating never frees a region (a destroyed domain reports back through the backend). */
        for (r = b->revoking; r; r = next) {
                next = r->revoking_next;
                for (size_t i = 0; i < r->n_peers; i++)
                        if (unplug_due(b, r, r->peers[i].mapped, &r->peers[i].unplug) <= now) {
                                unplug_escalate(b, r, r->peers[i].domain, &r->peers[i].unplug, now);
                                /* A refused removal is no longer pending: ask again. */
                                if (r->peers[i].unplug.failed)
                                        (void) peer_unmap(b, r, i);
                        }
                if (unplug_due(b, r, r->owner_mapped, &r->owner_unplug) <= now) {
                        unplug_escalate(b, r, r->owner, &r->owner_unplug, now);
                        if (r->owner_unplug.failed)
                                (void) owner_unmap(b, r);
                }
        }
}

int broker_process_deadlines(struct broker *b) {
        int64_t now = broker_now(b);
        struct region *r, *next;
        int first_error = 0;

        for (r = b->revoking; r; r = next) {
                next = r->revoking_next;
                if (r->deadline > now || r->retry_at > now)
                        continue;
                bool attached = false;
                for (size_t i = 0; i < r->n_peers; i++)
                        attached = attached || r->peers[i].state == PEER_ATTACHED;
                if (!attached)
                        continue; /* waiting for removals, or for a retry below */
                int q = region_force(b, r, "broker", "revoke deadline passed");
                if (q < 0) {
                        region_retry_later(b, r, q);
                        first_error = first_error ?: q;
                }
        }
        retry_failed(b, now);
        retry_deferred(b, now);
        escalate_overdue(b, now);
        return first_error;
}

int64_t broker_next_deadline(struct broker *b) {
        int64_t next = min_i64(deferred_next(b), retry_next(b));

        for (const struct region *r = b->revoking; r; r = r->revoking_next) {
                bool attached = false;
                for (size_t i = 0; i < r->n_peers; i++) {
                        int64_t due = unplug_due(b, r, r->peers[i].mapped, &r->peers[i].unplug);
                        attached = attached || r->peers[i].state == PEER_ATTACHED;
                        if (due < next)
                                next = due;
                }
                /* A force that failed waits for its retry instead of spinning on a past deadline. */
                if (attached && !r->retry_at && r->deadline < next)
                        next = r->deadline;
                int64_t due = unplug_due(b, r, r->owner_mapped, &r->owner_unplug);
                if (due < next)
                        next = due;

        }
        return next;
}

/* ---- repair and reconciliation ---- */

/*
 * A mapping the database holds for an entitled domain (the owner of a live region, an
 * attached peer) is not there: map it again; what cannot be is revoked.
 */
static int mapping_repair(struct broker *b, struct region *r, const char *domain, const char *why, bool *ret_repaired) {
        struct backend_region br = backend_region_of(r);
        struct backend_mapping map = { .fd = -1 };
        bool owner = strcmp(domain, r->owner) == 0;
        ssize_t i = owner ? -1 : region_find_peer(r, domain);
        char reason[256];
        int q;

        if (!owner && i < 0)
                return -ENOENT;
        q = r->pool ? backend_map(b->backend, &br, domain, owner ? ACCESS_RW : r->peers[i].access, &map)
                    : -ENOENT;
        if (q >= 0) {
                if (map.fd >= 0)
                        close(map.fd); /* an fd backend's holder keeps its own fd */
                snprintf(reason, sizeof(reason), "%s; mapped again", why);
                (void) audit(b, "broker", r, domain, "repair", NULL, NULL, reason, broker_now(b));
                log_region(LOG_WARNING, r->id, domain, "broker", "%s", reason);
                *ret_repaired = true;
                return 0;
        }
        snprintf(reason, sizeof(reason), "%s and could not be restored: %s", why, strerror(-q));
        log_region(LOG_ERR, r->id, domain, "broker", "%s", reason);
        *ret_repaired = false;
        if (owner) {
                q = mapping_record_gone(b, r, domain);
                if (q < 0)
                        return q;
                return region_live(r) ? region_start_revoke(b, r, "broker", 0, true, reason) : region_finish(b, r, "broker");
        }
        q = peer_revoke_now(b, r, (size_t) i, "broker", reason, false);
        if (q < 0)
                return q;
        return region_settle(b, r, "broker", reason);
}

/* A removal the backend confirmed after the fact (event, survey). */
static int mapping_gone(struct broker *b, struct region *r, const char *domain) {
        int q = mapping_record_gone(b, r, domain);

        if (q >= 0)
                crashpoint("unmap-confirmed");
        return q;
}

/* Does the database expect domain to hold a mapping of region id (from that pool)? */
static bool mapping_known(struct broker *b, uint64_t id, const char *pool, const char *domain) {
        struct region *r = hashmap_get(b->regions, &id);
        ssize_t i;

        if (!r || !r->pool || strcmp(r->pool->name, pool) != 0)
                return false;
        if (strcmp(domain, r->owner) == 0)
                return r->owner_mapped;
        i = region_find_peer(r, domain);
        return i >= 0 && r->peers[i].mapped;
}

/* One mapping the database records for domain in r, against the survey. */
static int reconcile_mapping(struct broker *b, const struct backend_survey *s, struct region *r, const char *domain,
                             struct broker_reconcile_result *res) {
        bool owner = strcmp(domain, r->owner) == 0;
        ssize_t i = owner ? -1 : region_find_peer(r, domain);
        bool mapped = owner ? r->owner_mapped : r->peers[i].mapped;
        bool entitled = owner ? region_live(r) : r->peers[i].state == PEER_ATTACHED;
        bool running = survey_is_running(s, domain);
        bool found = running && r->pool && survey_has_mapping(s, r->id, r->pool->name, domain);
        char why[160];
        bool repaired;
        int q;

        if (!running) {
                if (!entitled && !mapped)
                        return 0;
                /* A domain that stopped while nobody was watching: as if its stop event had come. */
                snprintf(why, sizeof(why), "domain %s is not running", domain);
                if (mapped) {
                        q = mapping_gone(b, r, domain);
                        if (q < 0)
                                return q;
                        res->completed += !entitled;
                }
                if (!entitled)
                        return region_finish(b, r, "broker");
                res->revoked++;
                if (owner)
                        return region_start_revoke(b, r, "broker", 0, true, why);
                q = peer_revoke_now(b, r, (size_t) i, "broker", why, false);
                return q < 0 ? q : region_settle(b, r, "broker", why);
        }
        if (!mapped)
                return 0; /* found-but-unknown ones are detached by the caller */
        if (found) {
                if (entitled) {
                        res->checked++;
                        return 0;
                }
                /* Still there though it should go: (re)request its removal. */
                if (owner)
                        return region_finish(b, r, "broker");
                return peer_unmap(b, r, (size_t) i);
        }
        if (!entitled) {
                /* The removal completed while nobody was watching. */
                q = mapping_gone(b, r, domain);
                if (q < 0)
                        return q;
                res->completed++;
                return region_finish(b, r, "broker");
        }
        snprintf(why, sizeof(why), "the mapping of region %" PRIu64 " into %s was lost", r->id, domain);
        q = mapping_repair(b, r, domain, why, &repaired);
        if (repaired)
                res->repaired++;
        else
                res->revoked++;
        return q;
}

static int reconcile_survey(struct broker *b, struct broker_reconcile_result *ret);

int broker_reconcile(struct broker *b, struct broker_reconcile_result *ret) {
        bool saved = b->defer_unmaps;
        int q;

        b->defer_unmaps = true;
        q = reconcile_survey(b, ret);
        b->defer_unmaps = saved;
        return q;
}

static int reconcile_survey(struct broker *b, struct broker_reconcile_result *ret) {
        _cleanup_(xfreep) uint64_t *ids = NULL;
        struct broker_reconcile_result res = {};
        struct backend_survey s = {};
        size_t n = 0, it = 0;
        int q, first_error = 0;
        void *v;

        if (!backend_can_survey(b->backend)) {
                if (ret)
                        *ret = res;
                return 0;
        }
        q = backend_survey(b->backend, &s);
        if (q < 0) {
                log_error("reconcile: the %s backend could not say what it has: %s", backend_name(b->backend), strerror(-q));
                return q;
        }

        /* Devices of ours that the database does not know: nobody may keep them. */
        for (size_t k = 0; k < s.n_mappings; k++) {
                const struct survey_mapping *m = &s.mappings[k];
                struct region *r = hashmap_get(b->regions, &m->region);
                struct backend_region br = r && r->pool && strcmp(r->pool->name, m->pool) == 0
                                                   ? backend_region_of(r)
                                                   : (struct backend_region) { .id = m->region };
                char why[160];

                if (mapping_known(b, m->region, m->pool, m->domain))
                        continue;
                /* Another brokerd's (other pools, other database): not ours to judge. */
                if (!platform_find_pool(b->platform, m->pool))
                        continue;
                q = backend_unmap(b->backend, &br, m->domain);
                snprintf(why, sizeof(why), "a mapping of region %" PRIu64 " in %s that the database does not hold%s%s",
                         m->region, m->domain, q < 0 && q != -EINPROGRESS ? ": detach failed: " : ": detached",
                         q < 0 && q != -EINPROGRESS ? strerror(-q) : "");
                log_region(r ? LOG_WARNING : LOG_ERR, m->region, m->domain, "broker", "%s", why);
                (void) store_audit_append(b->store, &(struct store_audit) {
                        .time = broker_now(b), .actor = "broker", .region = m->region, .domain = m->domain,
                        .action = "detach-unknown", .reason = why,
                });
                if (q < 0 && q != -EINPROGRESS)
                        first_error = first_error ?: q;
                else
                        res.detached++;
        }

        /* Ids first: reconciling one region may reclaim (free) it. */
        ids = calloc(hashmap_size(b->regions) + 1, sizeof(*ids));
        if (!ids) {
                survey_done(&s);
                return -ENOMEM;
        }
        while (hashmap_iterate(b->regions, &it, &v))
                ids[n++] = ((struct region *) v)->id;
        for (size_t k = 0; k < n; k++) {
                struct region *r = hashmap_get(b->regions, &ids[k]);
                _cleanup_(xfreep) char *owner = NULL;

                for (size_t i = 0; r && i < r->n_peers; i++) {
                        _cleanup_(xfreep) char *domain = strdup(r->peers[i].domain);
                        if (!domain) {
                                q = -ENOMEM;
                                break;
                        }
                        q = reconcile_mapping(b, &s, r, domain, &res);
                        if (q < 0)
                                first_error = first_error ?: q;
                        r = hashmap_get(b->regions, &ids[k]);
                }
                if (!r)
                        continue;
                owner = strdup(r->owner);
                q = owner ? reconcile_mapping(b, &s, r, owner, &res) : -ENOMEM;
                if (q < 0)
                        first_error = first_error ?: q;
        }
        survey_done(&s);

        log_info("reconciled with the %s backend: %u as expected, %u repaired, %u revoked, %u removals completed, "
                 "%u unknown detached", backend_name(b->backend), res.checked, res.repaired, res.revoked, res.completed,
                 res.detached);
        if (ret)
                *ret = res;
        return first_error;
}

static void on_unmap_done(void *userdata, uint64_t id, const char *domain, int result) {
        struct broker *b = userdata;
        struct region *r = hashmap_get(b->regions, &id);
        ssize_t i;
        int q;

        if (!r)
                return;
        bool owner = strcmp(domain, r->owner) == 0;
        i = owner ? -1 : region_find_peer(r, domain);
        if (!owner && i < 0)
                return;
        if (result < 0) {
                /* Still mapped: quarantined, and overdue at the deadline like any ignored removal. */
                if (owner)
                        r->owner_unplug.failed = true;
                else
                        r->peers[i].unplug.failed = true;
                log_region(LOG_ERR, id, domain, NULL, "the removal failed: %s; the range stays quarantined",
                           strerror(-result));
                return;
        }
        if (owner ? region_live(r) : r->peers[i].state == PEER_ATTACHED) {
                /* Nobody asked: the guest or someone else removed it. The grant still holds. */
                bool repaired;
                char why[160];

                if (!(owner ? r->owner_mapped : r->peers[i].mapped))
                        return;
                snprintf(why, sizeof(why), "the mapping of region %" PRIu64 " into %s went away unrequested", id, domain);
                (void) mapping_repair(b, r, domain, why, &repaired);
                return;
        }
        q = mapping_gone(b, r, domain);
        if (q < 0)
                return;
        (void) region_finish(b, r, "broker");
}

/* A domain stopped, crashed or was undefined (the backend saw it): what it held or shared goes. */
static void on_domain_gone(void *userdata, const char *domain) {
        struct broker *b = userdata;
        struct broker_error err = {};
        char actor[48];

        snprintf(actor, sizeof(actor), "backend:%s", backend_name(b->backend));
        if (!name_is_valid(domain))
                return;
        if (domain_gone(b, actor, domain, NULL, &err) < 0)
                log_error("domain %s went away, but its regions could not be revoked: %s", domain, err.message);
        else
                log_info("domain %s stopped: whatever it held or shared is revoked", domain);
}

/* The backend is back from losing its hypervisor: events were lost, so compare with what it has. */
static void on_reconnected(void *userdata) {
        struct broker *b = userdata;
        int q = broker_reconcile(b, NULL);

        if (q < 0)
                log_error("reconciling after the %s backend came back: %s", backend_name(b->backend), strerror(-q));
        emit(b, &(struct broker_event) { .type = BROKER_EVENT_RECONCILED, .reason = "the backend reconnected" });
}

/* ---- queries ---- */


int broker_region_get(struct broker *b, const struct broker_caller *caller, uint64_t id,
                      struct broker_region_info *ret, struct broker_error *err) {
        struct region *r = hashmap_get(b->regions, &id);

        if (!r)
                return broker_error_set(err, BROKER_E_NO_SUCH_REGION, "no live region %" PRIu64, id);
        if (!region_visible(b, caller, r))
                return broker_error_set(err, BROKER_E_FORBIDDEN, "uid %u acts for no domain of region %" PRIu64,
                                        (unsigned) caller->uid, id);
        region_info(r, ret);
        return 0;
}

int broker_region_foreach(struct broker *b, const struct broker_caller *caller,
                          int (*fn)(void *userdata, const struct broker_region_info *r), void *userdata) {
        size_t it = 0;
        void *v;

        while (hashmap_iterate(b->regions, &it, &v)) {
                struct broker_region_info info;

                if (!region_visible(b, caller, v))
                        continue;
                region_info(v, &info);
                int q = fn(userdata, &info);
                if (q != 0)
                        return q;
        }
        return 0;
}

int broker_route_lookup(struct broker *b, const struct broker_caller *caller, const char *device, const char *domain,
                        struct broker_route_info *ret, struct broker_error *err) {
        struct route *rt;
        int q;

        if (!name_is_valid(device) || !name_is_valid(domain))
                return broker_error_set(err, BROKER_E_INVALID, "device or domain is not a valid name");
        q = check_acts_for(b, caller, domain, err);
        if (q < 0)
                return q;
        if (route_get(b, device, domain, false, &rt) < 0 || (rt->n_live == 0 && !rt->bounce_reason)) {
                *ret = (struct broker_route_info) { .found = false };
                return 0;
        }
        if (rt->n_live > 0) {
                const struct region *r = rt->live[rt->n_live - 1];
                ssize_t i = region_find_peer(r, domain);
                *ret = (struct broker_route_info) {
                        .found = true, .kind = ROUTE_REGION, .region = r->id, .base = r->base, .size = r->size,
                        .access = i >= 0 ? r->peers[i].access : ACCESS_RO,
                };
        } else
                *ret = (struct broker_route_info) { .found = true, .kind = ROUTE_BOUNCE, .reason = rt->bounce_reason };
        return 0;
}

static int check_admin(const struct broker_caller *caller, struct broker_error *err) {
        if (!caller->admin)
                return broker_error_set(err, BROKER_E_FORBIDDEN, "only an admin may ask this");
        return 0;
}

/* admin.domains: every name a region or the policy mentions, with how often it is attached. */
struct domain_mention {
        const char *name;
        bool attached;
};

static int cmp_domain_mention(const void *a, const void *b) {
        return strcmp(((const struct domain_mention *) a)->name, ((const struct domain_mention *) b)->name);
}

static int domain_mentions(struct broker *b, struct domain_mention **ret, size_t *ret_n) {
        const struct policy *p = b->policy;
        _cleanup_(xfreep) struct domain_mention *list = NULL;
        size_t n = 0, cap = p->n_quotas, it = 0;
        void *v;

        for (size_t i = 0; i < p->n_agents; i++)
                cap += p->agents[i].n_domains;
        while (hashmap_iterate(b->regions, &it, &v))
                cap += 1 + ((struct region *) v)->n_peers;
        list = calloc(cap + 1, sizeof(*list));
        if (!list)
                return -ENOMEM;
        it = 0;
        while (hashmap_iterate(b->regions, &it, &v)) {
                const struct region *r = v;
                list[n++] = (struct domain_mention) { .name = r->owner };
                for (size_t i = 0; i < r->n_peers; i++)
                        list[n++] = (struct domain_mention) {
                                .name = r->peers[i].domain, .attached = r->peers[i].state == PEER_ATTACHED,
                        };
        }
        for (size_t i = 0; i < p->n_agents; i++)
                for (size_t j = 0; j < p->agents[i].n_domains; j++)
                        list[n++] = (struct domain_mention) { .name = p->agents[i].domains[j] };
        for (size_t i = 0; i < p->n_quotas; i++)
                if (strcmp(p->quotas[i].domain, "*") != 0)
                        list[n++] = (struct domain_mention) { .name = p->quotas[i].domain };
        if (n > 0)
                qsort(list, n, sizeof(*list), cmp_domain_mention);
        *ret = TAKE_PTR(list);
        *ret_n = n;
        return 0;
}

int broker_domain_foreach(struct broker *b, const struct broker_caller *caller,
                          int (*fn)(void *userdata, const struct broker_domain_info *d), void *userdata,
                          struct broker_error *err) {
        _cleanup_(xfreep) struct domain_mention *list = NULL;
        size_t n = 0;
        int q;

        q = check_admin(caller, err);
        if (q < 0)
                return q;
        q = domain_mentions(b, &list, &n);
        if (q < 0)
                return broker_error_set(err, BROKER_E_STORE, "out of memory");
        for (size_t i = 0; i < n;) {
                struct broker_domain_info d = { .domain = list[i].name };

                for (; i < n && strcmp(list[i].name, d.domain) == 0; i++)
                        d.attached += list[i].attached;
                broker_usage(b, d.domain, &d.bytes_owned, &d.regions_owned);
                policy_quota_for(b->policy, d.domain, &d.max_bytes, &d.max_regions);
                q = fn(userdata, &d);
                if (q != 0)
                        return q;
        }
        return 0;
}

/* What live (not reclaimed) regions use of each pool, indexed like b->platform->pools. */
static int pool_use(struct broker *b, uint64_t **ret_used, uint64_t **ret_regions) {
        const struct platform *pl = b->platform;
        _cleanup_(xfreep) uint64_t *used = calloc(pl->n_pools + 1, sizeof(*used));
        _cleanup_(xfreep) uint64_t *regions = calloc(pl->n_pools + 1, sizeof(*regions));
        size_t it = 0;
        void *v;

        if (!used || !regions)
                return -ENOMEM;
        while (hashmap_iterate(b->regions, &it, &v)) {
                const struct region *r = v;
                if (!r->pool)
                        continue;
                used[r->pool - pl->pools] += r->size;
                regions[r->pool - pl->pools]++;
        }
        *ret_used = TAKE_PTR(used);
        *ret_regions = TAKE_PTR(regions);
        return 0;
}

int broker_pool_foreach(struct broker *b, const struct broker_caller *caller,
                        int (*fn)(void *userdata, const struct broker_pool_info *p), void *userdata,
                        struct broker_error *err) {
        const struct platform *pl = b->platform;
        _cleanup_(xfreep) uint64_t *used = NULL, *regions = NULL;
        int q;

        q = check_admin(caller, err);
        if (q < 0)
                return q;
        if (pool_use(b, &used, &regions) < 0)
                return broker_error_set(err, BROKER_E_STORE, "out of memory");
        for (size_t i = 0; i < pl->n_pools; i++) {
                const struct platform_pool *pool = &pl->pools[i];
                uint64_t size = pool->end - pool->base;

                q = fn(userdata, &(struct broker_pool_info) {
                        .pool = pool->name, .numa_node = pool->numa_node, .base = pool->base, .size = size,
                        .granule = pool->granule, .used = used[i], .free = size > used[i] ? size - used[i] : 0,
                        .regions = regions[i],
                });
                if (q != 0)
                        return q;
        }
        return 0;
}

/* The smallest NUMA node of a pool above after (any, when !have_after); false when none is. */
static bool numa_next(const struct platform *pl, bool have_after, uint32_t after, uint32_t *ret) {
        bool found = false;

        for (size_t i = 0; i < pl->n_pools; i++) {
                uint32_t n = pl->pools[i].numa_node;
                if ((!have_after || n > after) && (!found || n < *ret)) {
                        *ret = n;
                        found = true;
                }
        }
        return found;
}

int broker_numa_foreach(struct broker *b, const struct broker_caller *caller,
                        int (*fn)(void *userdata, const struct broker_numa_info *n), void *userdata,
                        struct broker_error *err) {
        const struct platform *pl = b->platform;
        _cleanup_(xfreep) uint64_t *used = NULL, *regions = NULL;
        struct broker_numa_info info = {};
        int q;

        q = check_admin(caller, err);
        if (q < 0)
                return q;
        if (pool_use(b, &used, &regions) < 0)
                return broker_error_set(err, BROKER_E_STORE, "out of memory");
        for (bool first = true; numa_next(pl, !first, info.numa_node, &info.numa_node); first = false) {
                info.size = info.used = 0;
                for (size_t i = 0; i < pl->n_pools; i++)
                        if (pl->pools[i].numa_node == info.numa_node) {
                                info.size += pl->pools[i].end - pl->pools[i].base;
                                info.used += used[i];
                        }
                q = fn(userdata, &info);
                if (q != 0)
                        return q;
        }
        return 0;
}

/* The seqs of the last n rows seen, as a ring: for the newest rows of the audit log. */
struct audit_tail {
        int64_t *seqs;
        unsigned n, seen;
};

static int audit_tail_one(void *userdata, const struct store_audit *a) {
        struct audit_tail *t = userdata;

        t->seqs[t->seen++ % t->n] = a->seq;
        return 0;
}

/* after_seq such that the rows after it (and since) are the newest limit ones. */
static int audit_tail_start(struct broker *b, int64_t after_seq, int64_t since, unsigned limit, int64_t *ret) {
        _cleanup_(xfreep) int64_t *seqs = calloc(limit, sizeof(*seqs));
        struct audit_tail t = { .seqs = seqs, .n = limit };
        int q;

        if (!seqs)
                return -ENOMEM;
        q = store_audit_list(b->store, after_seq, since, 0, audit_tail_one, &t);
        if (q < 0)
                return q;
        /* Full ring: the oldest kept seq is the next slot to be overwritten. */
        *ret = t.seen < limit ? after_seq : seqs[t.seen % limit] - 1;
        return 0;
}

int broker_audit_foreach(struct broker *b, const struct broker_caller *caller, int64_t after_seq, int64_t since,
                         unsigned limit, bool newest, int (*fn)(void *userdata, const struct store_audit *a),
                         void *userdata, struct broker_error *err) {
        int q;

        q = check_admin(caller, err);
        if (q < 0)
                return q;
        if (after_seq < 0 || since < 0)
                return broker_error_set(err, BROKER_E_INVALID, "after_seq and since must not be negative");
        if (newest && limit > 0) {
                q = audit_tail_start(b, after_seq, since, limit, &after_seq);
                if (q < 0)
                        return broker_error_set(err, BROKER_E_STORE, "could not read the audit log: %s", strerror(-q));
        }
        q = store_audit_list(b->store, after_seq, since, limit, fn, userdata);
        if (q < 0 && q != -ENOMEM)
                return broker_error_set(err, BROKER_E_STORE, "could not read the audit log: %s", strerror(-q));
        return q;
}

int broker_stats(struct broker *b, const struct broker_caller *caller, struct broker_stats *ret,
                 struct broker_error *err) {
        struct broker_stats st = {};
        size_t it = 0;
        void *v;
        int q;

        q = check_admin(caller, err);
        if (q < 0)
                return q;
        while (hashmap_iterate(b->regions, &it, &v)) {
                const struct region *r = v;
                st.regions_live += region_live(r);
                st.regions_revoking += r->state == REGION_REVOKING;
        }
        *ret = st;
        return 0;
}

const char *broker_backend_name(const struct broker *b) {
        return backend_name(b->backend);
}

/* ---- policy ---- */

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

/* ---- start: rebuild from the database and resume ---- */

struct load_state {
        struct broker *b;
        struct region *current; /* region whose peers are being loaded */
        size_t next_peer;
        int64_t now;
};

static int load_region(void *userdata, const struct store_region *sr) {
        struct load_state *ls = userdata;
        struct broker *b = ls->b;
        _cleanup_(region_freep) struct region *r = NULL;
        int q;

        /* Peers come after all regions; count them as they arrive (region_add_peer below). */
        q = region_alloc(sr->owner, sr->device, sr->label, 0, &r);
        if (q < 0)
                return q;
        r->id = sr->id;
        r->pool = platform_find_pool(b->platform, sr->pool);
        r->base = sr->base;
        r->size = sr->size;
        r->state = sr->state;
        r->deadline = sr->deadline;
        r->created = sr->created;
        r->owner_mapped = sr->owner_mapped;
        q = placer_reserve(b->placer, &r->range, r->base, r->size);
        if (q < 0) {
                log_region(LOG_ERR, r->id, NULL, NULL, "overlaps another live region in the database");
                return -EUCLEAN;
        }
        q = hashmap_put(b->regions, &r->id, r);
        if (q < 0) {
                placer_release(b->placer, &r->range);
                return q;
        }
        (void) usage_adjust(b, r->owner, (int64_t) r->size, 1);
        if (r->state == REGION_REVOKING)
                revoking_list_add(b, r);
        TAKE_PTR(r);
        return 0;
}

static int region_add_peer(struct region *r, const struct store_peer *sp) {
        size_t n = r->n_peers + 1;
        struct broker_peer_info *peers = reallocarray(r->peers, n, sizeof(*peers));
        if (!peers)
                return -ENOMEM;
        r->peers = peers;
        char **domains = reallocarray(r->domains, n, sizeof(*domains));
        if (!domains)
                return -ENOMEM;
        r->domains = domains;
        struct token_entry *tokens = reallocarray(r->tokens, n, sizeof(*tokens));
        if (!tokens)
                return -ENOMEM;
        r->tokens = tokens;
        r->n_peers = n;
        return region_set_peer(r, n - 1, sp->domain, sp->access, sp->state, sp->token, sp->mapped);
}

static int load_peer(void *userdata, const struct store_peer *sp) {
        struct load_state *ls = userdata;
        struct region *r = hashmap_get(ls->b->regions, &sp->region);

        if (!r)
                return 0;
        return region_add_peer(r, sp);
}

static int load_route(void *userdata, const struct store_route *sr) {
        struct load_state *ls = userdata;
        struct route *rt;
        int q;

        /* Region routes are derived from the live regions; only a bounce answer is kept, a
         * pending one (on a region row) included. */
        if (sr->kind != ROUTE_BOUNCE && !sr->reason)
                return 0;
        q = route_get(ls->b, sr->device, sr->domain, true, &rt);
        if (q < 0)
                return q;
        free(rt->bounce_reason);
        rt->bounce_reason = strdup(sr->reason ?: "");
        rt->updated = sr->updated;
        return rt->bounce_reason ? 0 : -ENOMEM;
}

static int cmp_region_id(const void *a, const void *b) {
        uint64_t x = (*(struct region *const *) a)->id, y = (*(struct region *const *) b)->id;
        return x < y ? -1 : x > y;
}

/* After loading: token index, routes (oldest first, so the newest is current), resumed work. */
static int broker_resume(struct broker *b) {
        _cleanup_(xfreep) struct region **list = NULL;
        size_t n = 0, it = 0;
        void *v;
        int q;

        list = calloc(hashmap_size(b->regions) + 1, sizeof(*list));
        if (!list)
                return -ENOMEM;
        while (hashmap_iterate(b->regions, &it, &v))
                list[n++] = v;
        qsort(list, n, sizeof(*list), cmp_region_id);

        for (size_t k = 0; k < n; k++) {
                struct region *r = list[k];
                bool all_done = true;

                /* Removals that were in progress when we went down may still be pending. */
                for (size_t i = 0; i < r->n_peers; i++) {
                        if (peer_final(r->peers[i].state) && r->peers[i].mapped)
                                r->peers[i].unplug.requested = broker_now(b);
                        all_done = all_done && peer_final(r->peers[i].state) && !r->peers[i].mapped;
                }
                if (r->state == REGION_REVOKING && r->owner_mapped && all_done)
                        r->owner_unplug.requested = broker_now(b);
                for (size_t i = 0; i < r->n_peers; i++) {
                        /* Fix the pointers region_add_peer's reallocs may have moved. */
                        r->peers[i].domain = r->domains[i];
                        r->tokens[i].region = r;
                        r->tokens[i].peer = i;
                        /* Spent tokens stay indexed too, so reuse says token_used, as before the restart. */
                        if (r->tokens[i].token[0]) {
                                q = hashmap_put(b->tokens, r->tokens[i].token, &r->tokens[i]);
                                if (q < 0)
                                        return q;
                        }
                        if (region_live(r) && !peer_final(r->peers[i].state)) {
                                struct route *rt;
                                q = route_get(b, r->device, r->peers[i].domain, true, &rt);
                                if (q >= 0)
                                        q = route_add_live(rt, r);
                                if (q < 0)
                                        return q;
                        }
                }
        }

        for (size_t k = 0; k < n; k++) {
                struct region *r = list[k];
                struct backend_region br = backend_region_of(r);

                if (!r->pool) {
                        /* The platform no longer has the pool: nothing can back this region. */
                        q = region_live(r) ? region_start_revoke(b, r, "broker", 0, true,
                                                                 "its pool is no longer in the platform")
                                           : region_force(b, r, "broker", "its pool is no longer in the platform");
                        if (q < 0)
                                return q;
                        continue;
                }
                q = backend_restore(b->backend, &br);
                if (q < 0 && q != -ENOENT)
                        log_region(LOG_ERR, r->id, NULL, NULL, "could not restore its memory: %s", strerror(-q));
                /* Gone, or there but not as it was left (a crash while it was being created):
                 * memory that cannot be vouched for is never handed out again. */
                if (q < 0 && region_live(r)) {
                        bool seen = r->owner_mapped;
                        for (size_t i = 0; i < r->n_peers; i++)
                                seen = seen || r->peers[i].state != PEER_GRANTED;
                        if (!seen) {
                                /* Nobody has seen the memory yet: making it anew loses nothing. */
                                q = backend_create(b->backend, &br);
                                if (q >= 0)
                                        q = backend_scrub(b->backend, &br);
                        }
                        if (seen || q < 0) {
                                /* Holders would see different memory than new attachers: take it down. */
                                for (size_t i = 0; i < r->n_peers; i++)
                                        r->peers[i].mapped = false;
                                r->owner_mapped = false;
                                q = region_start_revoke(b, r, "broker", 0, true,
                                                        "its memory did not survive the restart");
                                if (q < 0)
                                        return q;
                                continue;
                        }
                }

                /* Finish unmaps a crash interrupted. */
                for (size_t i = 0; i < r->n_peers; i++)
                        if (peer_final(r->peers[i].state) && r->peers[i].mapped)
                                (void) peer_unmap(b, r, i);
                if (region_live(r)) {
                        /* A crash between a release and the take-down it called for. */
                        q = region_settle(b, r, "broker", "every peer released the region");
                        if (q < 0)
                                return q;
                        continue;
                }
                if (r->state == REGION_REVOKING) {
                        q = r->deadline <= broker_now(b) ? region_force(b, r, "broker", "revoke deadline passed")
                                                         : region_finish(b, r, "broker");
                        if (q < 0)
                                return q;
                }
        }
        return 0;
}

int broker_new(struct broker_config *cfg, struct broker **ret, struct broker_error *err) {
        _cleanup_(broker_freep) struct broker *b = NULL;
        struct load_state ls = {};
        int q;

        if (!cfg->platform || !cfg->policy || !cfg->backend || !cfg->db_path)
                return broker_error_set(err, BROKER_E_INVALID, "platform, policy, backend and database are required");
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->revoke_timeout_usec = cfg->revoke_timeout_usec ?: BROKER_DEFAULT_REVOKE_TIMEOUT_USEC;
        b->escalation = cfg->escalation;
        b->unplug_grace_usec = cfg->unplug_grace_usec ?: BROKER_DEFAULT_UNPLUG_GRACE_USEC;
        b->clock = cfg->clock;
        b->clock_userdata = cfg->clock_userdata;
        b->on_event = cfg->on_event;
        b->event_userdata = cfg->event_userdata;

        if (hashmap_new(&hashmap_u64_ops, &b->regions) < 0 || hashmap_new(&hashmap_string_ops, &b->tokens) < 0 ||
            hashmap_new(&hashmap_string_ops, &b->routes) < 0 || hashmap_new(&hashmap_string_ops, &b->usage) < 0)
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

        /* From here on the broker owns them (broker_free releases them on failure too). */
        b->platform = TAKE_PTR(cfg->platform);
        b->policy = TAKE_PTR(cfg->policy);
        b->backend = TAKE_PTR(cfg->backend);
        store_set_retention(b->store, &cfg->retention);
        backend_set_callbacks(b->backend, &(struct backend_callbacks) {
                .unmap_done = on_unmap_done, .domain_gone = on_domain_gone, .reconnected = on_reconnected,
                .userdata = b,
        });

        ls.b = b;
        q = store_load(b->store, &(struct store_load_ops) {
                .region = load_region, .peer = load_peer, .route = load_route,
        }, &ls);
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
        while (hashmap_iterate(b->regions, &it, &v))
                region_free(v);
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
        placer_free(b->placer);
        store_close(b->store);
        backend_free(b->backend);
        policy_free(b->policy);
        platform_free(b->platform);
        free(b);
}
