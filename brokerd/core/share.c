/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A share: checked (names, permission, policy, placement, backend, quota), recorded with a
 * grant token per peer, then made real (memory created, zeroed, mapped for the owner). A share
 * that cannot be placed is a bounce answer, recorded on its routes. Also its undo.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/broker-internal.h"
#include "util/crashpoint.h"
#include "util/log.h"
#include "util/num.h"
#include "util/random.h"

static bool label_is_valid(const char *label) {
        size_t n = 0;

        for (const unsigned char *p = (const unsigned char *) label; *p; p++, n++)
                if (*p < 0x20 || *p == 0x7f || n >= BROKER_MAX_LABEL)
                        return false;
        return true;
}

static int token_generate(char out[static STORE_TOKEN_LEN + 1]) {
        uint8_t raw[STORE_TOKEN_LEN / 2];
        int q = random_bytes(raw, sizeof(raw));

        if (q < 0)
                return q;
        for (size_t i = 0; i < sizeof(raw); i++) {
                out[2 * i] = "0123456789abcdef"[raw[i] >> 4];
                out[2 * i + 1] = "0123456789abcdef"[raw[i] & 0xf];
        }
        explicit_bzero(raw, sizeof(raw));
        out[STORE_TOKEN_LEN] = '\0';
        return 0;
}

static int share_validate(const struct broker *b, const struct broker_share_request *req, struct broker_error *err) {
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
        if (req->has_doorbells && req->doorbells > BROKER_MAX_DOORBELL_VECTORS)
                return broker_error_set(err, BROKER_E_INVALID, "doorbells must be 0..%d", BROKER_MAX_DOORBELL_VECTORS);
        if (req->has_doorbells && req->doorbells > 0 && !backend_hands_fds(b->backend) &&
            !backend_guest_doorbells(b->backend))
                return broker_error_set(err, BROKER_E_INVALID,
                                        "the %s backend has no doorbells to give: doorbells must be 0",
                                        backend_name(b->backend));

        dev = platform_find_device(b->platform, req->device);
        if (!dev)
                return broker_error_set(err, BROKER_E_UNKNOWN_DEVICE, "no device %s on this platform", req->device);
        if (strcmp(dev->owner, req->owner) != 0)
                return broker_error_set(err, BROKER_E_NOT_DEVICE_OWNER, "device %s is driven by %s, not %s",
                                        dev->name, dev->owner, req->owner);
        return 0;
}

/* Is the share well-formed, and may this caller make it under the policy in force? */
static int share_check(struct broker *b, const struct broker_caller *caller, const struct broker_share_request *req,
                       struct broker_error *err) {
        struct policy_peer_request ppeers[BROKER_MAX_PEERS];
        int q;

        q = share_validate(b, req, err);
        if (q >= 0)
                q = check_acts_for(b, caller, req->owner, err);
        if (q < 0)
                return q;
        for (size_t i = 0; i < req->n_peers; i++)
                ppeers[i] = (struct policy_peer_request) { .domain = req->peers[i].domain, .access = req->peers[i].access };
        return policy_check_share(b->policy, req->owner, req->device, ppeers, req->n_peers, req->size, err);
}

struct bounce_write {
        struct broker *b;
        struct route **routes;
        size_t n;
        int64_t now;
};

static int bounce_write(struct store *s, void *userdata) {
        const struct bounce_write *w = userdata;
        int q = 0;

        for (size_t i = 0; q >= 0 && i < w->n; i++)
                q = route_persist(s, w->routes[i], w->now);
        return q;
}

/* No room: the answer is a bounce, recorded on each route (for when its live region goes). */
static int share_bounce(struct broker *b, const char *actor, const struct broker_share_request *req,
                        const struct placement_result *pr, struct broker_share_result *ret,
                        struct broker_error *err) {
        struct route *routes[BROKER_MAX_PEERS] = {};
        char *old[BROKER_MAX_PEERS] = {};
        struct store_audit audits[BROKER_MAX_PEERS];
        struct bounce_write w = { .b = b, .routes = routes, .n = req->n_peers, .now = broker_now(b) };
        int q = 0;

        for (size_t i = 0; i < req->n_peers; i++) {
                q = route_get(b, req->device, req->peers[i].domain, true, &routes[i]);
                if (q < 0)
                        return broker_error_set(err, BROKER_E_STORE, "out of memory");
                audits[i] = audit_row(actor, NULL, req->peers[i].domain, "bounce", NULL, NULL, pr->reason, w.now);
        }
        /* A live region still serves the route; the bounce is recorded for when it goes. */
        for (size_t i = 0; q >= 0 && i < req->n_peers; i++) {
                old[i] = routes[i]->bounce_reason;
                routes[i]->bounce_reason = strdup(pr->reason);
                if (!routes[i]->bounce_reason)
                        q = -ENOMEM;
        }
        if (q >= 0)
                q = store_transition(b->store, bounce_write, &w, audits, req->n_peers);
        if (q < 0) {
                for (size_t i = 0; i < req->n_peers; i++)
                        if (routes[i]->bounce_reason != old[i]) {
                                free(routes[i]->bounce_reason);
                                routes[i]->bounce_reason = old[i];
                        }
                return store_failed(q, err, "the bounce route");
        }
        for (size_t i = 0; i < req->n_peers; i++) {
                free(old[i]);
                routes[i]->updated = w.now;
                if (routes[i]->n_live == 0)
                        emit_route_changed(b, req->device, req->peers[i].domain, 0, pr->reason);
        }
        *ret = (struct broker_share_result) { .bounce = true, .owner_fd = -1 };
        snprintf(ret->reason, sizeof(ret->reason), "%s", pr->reason);
        log_region(LOG_INFO, 0, NULL, actor, "bounce buffers on %s: %s", req->device, pr->reason);
        return 0;
}

/* The doorbell vectors of a new region: as asked, else the default where the backend hands fds. */
static unsigned share_vectors(const struct broker *b, const struct broker_share_request *req) {
        if (req->has_doorbells)
                return req->doorbells;
        return backend_hands_fds(b->backend) ? BROKER_DEFAULT_DOORBELL_VECTORS : 0;
}
/* Whether token is held by a live region, or by one of r's first n peers. */
static bool token_taken(const struct broker *b, const struct region *r, size_t n, const char *token) {
        if (hashmap_get(b->tokens, token))
                return true;
        for (size_t i = 0; i < n; i++)
                if (strcmp(r->tokens[i].token, token) == 0)
                        return true;
        return false;
}

/* The region in memory, not indexed yet: placed, with a fresh token per peer. */
static int share_region_new(const struct broker *b, const struct broker_share_request *req,
                            const struct placement_result *pr, int64_t now, struct region **ret,
                            struct broker_error *err) {
        _cleanup_(region_freep) struct region *r = NULL;
        int q;

        q = region_alloc(req->owner, req->device, req->label, req->n_peers, &r);
        if (q >= 0)
                q = bells_init(r, share_vectors(b, req), 1, backend_guest_doorbells(b->backend));
        if (q < 0)
                return broker_error_set(err, BROKER_E_STORE, "out of memory");
        r->pool = pr->pool;
        r->base = pr->base;
        r->size = pr->size;
        r->state = REGION_OFFERED;
        r->holders[0].mapped = true;
        r->created = now;
        for (size_t i = 0; i < req->n_peers; i++) {
                char token[STORE_TOKEN_LEN + 1];
                /* 128 random bits never repeat in practice; a repeat is refused all the same (the
                 * database keeps no index of tokens). */
                do
                        q = token_generate(token);
                while (q >= 0 && token_taken(b, r, i, token));
                if (q < 0)
                        return broker_error_set(err, BROKER_E_STORE, "getrandom failed: %s", strerror(-q));
                q = region_set_peer(r, i, req->peers[i].domain, req->peers[i].access, PEER_GRANTED, token, false);
                if (q < 0)
                        return broker_error_set(err, BROKER_E_STORE, "out of memory");
        }
        *ret = TAKE_PTR(r);
        return 0;
}

struct share_write {
        struct broker *b;
        struct region *r;
        struct store_audit *audit;
        bool indexed;
};

/* The region's rows, then (its id known) the index and its routes, which now lead to it. */
static int share_write(struct store *s, void *userdata) {
        struct share_write *w = userdata;
        struct region *r = w->r;
        int q;

        q = store_region_insert(s, &(struct store_region) {
                .owner = r->owner, .device = r->device, .pool = r->pool->name, .label = r->label,
                .base = r->base, .size = r->size, .state = REGION_OFFERED, .owner_mapped = true,
                .created = r->created, .updated = r->created, .bell_vectors = r->bells.vectors,
                .bell_generation = r->bells.generation,
        }, &r->id);
        for (size_t i = 0; q >= 0 && i < r->n_peers; i++)
                q = store_peer_insert(s, &(struct store_peer) {
                        .region = r->id, .domain = r->peers[i].domain, .access = r->peers[i].access,
                        .state = PEER_GRANTED, .token = r->tokens[i].token, .index = (unsigned) i,
                });
        if (q < 0)
                return q;
        w->audit->region = r->id;
        /* Indexed before the commit so a failed commit can still be undone in memory. */
        q = regions_add(w->b, r);
        if (q < 0)
                return q;
        w->indexed = true;
        for (size_t i = 0; q >= 0 && i < r->n_peers; i++) {
                struct route *rt;
                q = route_get(w->b, r->device, r->peers[i].domain, false, &rt);
                if (q >= 0) {
                        /* The route has room again: an older bounce is not recorded as pending. */
                        char *pending = TAKE_PTR(rt->bounce_reason);
                        q = route_persist(s, rt, r->created);
                        rt->bounce_reason = pending;
                }
        }
        return q;
}

/* Drops r from the routes it was added to (all of them up to n). */
static void share_unroute(struct broker *b, struct region *r, size_t n) {
        for (size_t i = 0; i < n; i++) {
                struct route *rt;
                if (route_get(b, r->device, r->peers[i].domain, false, &rt) >= 0)
                        route_remove_live(rt, r);
        }
}

/* Commit first: the database must know the region before any memory exists for it. */
static int share_record(struct broker *b, const char *actor, struct region *r, struct broker_error *err) {
        char sz[NUM_FMT_MAX], why[160];
        struct store_audit a;
        struct share_write w = { .b = b, .r = r, .audit = &a };
        size_t routed = 0;
        int q;

        snprintf(why, sizeof(why), "%s at 0x%" PRIx64 " in pool %s for %s", num_format_size(r->size, sz), r->base,
                 r->pool->name, r->device);
        a = audit_row(actor, r, NULL, "share", NULL, "offered", why, r->created);
        if (placer_reserve(b->placer, &r->range, r->base, r->size) < 0)
                return broker_error_set(err, BROKER_E_OVERLAP, "range already in use");
        for (q = 0; q >= 0 && routed < r->n_peers; routed++) {
                struct route *rt;
                q = route_get(b, r->device, r->peers[routed].domain, true, &rt);
                if (q >= 0)
                        q = route_add_live(rt, r);
        }
        if (q >= 0)
                q = store_transition(b->store, share_write, &w, &a, 1);
        if (q < 0) {
                share_unroute(b, r, routed);
                if (w.indexed)
                        regions_remove(b, r);
                placer_release(b->placer, &r->range);
                return store_failed(q, err, "the share");
        }
        for (size_t i = 0; i < r->n_peers; i++) {
                struct route *rt;
                /* The route has room again: an older bounce answer no longer holds. */
                if (route_get(b, r->device, r->peers[i].domain, false, &rt) >= 0) {
                        free(rt->bounce_reason);
                        rt->bounce_reason = NULL;
                        rt->updated = r->created;
                }
                (void) hashmap_put(b->tokens, r->tokens[i].token, &r->tokens[i]);
        }
        (void) usage_adjust(b, r->owner, (int64_t) r->size, 1);
        return 0;
}

/* Make the memory real, zeroed, and map it for the owner; a failure takes the share back. */
static int share_make_real(struct broker *b, struct region *r, const char *actor, struct backend_mapping *ret,
                           struct broker_error *err) {
        struct backend_region br = backend_region_of(r);
        uint64_t id = r->id;
        int q;

        q = backend_create(b->backend, &br);
        if (q >= 0)
                q = backend_scrub(b->backend, &br);
        if (q >= 0) {
                crashpoint("share-created");
                q = map_flushing(b, &br, r->owner, ACCESS_RW, ret);
        }
        if (q >= 0)
                return 0;
        r->holders[0].mapped = false;
        if (region_start_revoke(b, r, actor, 0, true, "the backend could not create the region's memory") < 0)
                log_region(LOG_ERR, id, NULL, actor, "could not roll back the share; it is revoked on restart");
        return broker_error_set(err, BROKER_E_BACKEND, "%s backend could not create region %" PRIu64 ": %s",
                                backend_name(b->backend), id, strerror(-q));
}

/* The share's line in the log, with its peers (its routes' changes restate it, at debug). */
static void log_share(const struct region *r, const char *actor) {
        char peers[320] = "";
        size_t n = 0;

        for (size_t i = 0; i < r->n_peers && n < sizeof(peers); i++) {
                int k = snprintf(peers + n, sizeof(peers) - n, "%s%s (%s)", i ? ", " : "", r->peers[i].domain,
                                 access_to_string(r->peers[i].access));
                if (k < 0)
                        break;
                n += (size_t) k;
        }
        log_region(LOG_INFO, r->id, NULL, actor, "shared on %s with %s", r->device, peers);
}

int broker_share(struct broker *b, const struct broker_caller *caller, const struct broker_share_request *req,
                 struct broker_share_result *ret, struct broker_error *err) {
        _cleanup_(region_freep) struct region *r = NULL;
        struct backend_mapping owner_map = { .fd = -1, .lend = caller && caller->lend_fds };
        struct placement_result pr;
        char actor[BROKER_ACTOR_MAX], unsupported[160] = "";
        struct region *region;
        int q;

        caller_actor(caller, actor);
        q = share_check(b, caller, req, err);
        if (q >= 0)
                q = placer_compute(b->placer, &(struct placement_request) {
                        .device = req->device, .size = req->size, .has_numa_node = req->has_numa_node,
                        .numa_node = req->numa_node, .alignment = req->alignment, .place = req->place,
                        .base = req->base,
                }, &pr, err);
        if (q < 0)
                return q;
        if (pr.bounce)
                return share_bounce(b, actor, req, &pr, ret, err);
        q = backend_check(b->backend,
                          &(struct backend_region) { .pool = pr.pool, .base = pr.base, .size = pr.size,
                                                     .doorbells = share_vectors(b, req) },
                          unsupported, sizeof(unsupported));
        if (q == -E2BIG)
                return broker_error_set(err, BROKER_E_LIMIT, "the %s backend cannot take the region: %s",
                                        backend_name(b->backend), unsupported[0] ? unsupported : strerror(-q));
        if (q < 0)
                return broker_error_set(err, BROKER_E_SIZE_UNSUPPORTED, "the %s backend cannot map %s: %s",
                                        backend_name(b->backend), num_format_size(pr.size, (char[NUM_FMT_MAX]) {}),
                                        unsupported[0] ? unsupported : strerror(-q));
        q = quota_check(b, req->owner, pr.size, err);
        if (q >= 0)
                q = share_region_new(b, req, &pr, broker_now(b), &r, err);
        if (q >= 0)
                q = share_record(b, actor, r, err);
        if (q < 0)
                return q;
        region = TAKE_PTR(r);
        crashpoint("share-recorded");

        q = share_make_real(b, region, actor, &owner_map, err);
        if (q < 0)
                return q;
        crashpoint("share-mapped");
        if (owner_map.fd >= 0)
                holder_track(b, region, &region->holders[0], caller);

        *ret = (struct broker_share_result) {
                .region = region->id, .base = region->base, .size = region->size, .alignment = pr.alignment,
                .pool = region->pool->name, .n_tokens = region->n_peers, .owner_fd = owner_map.fd,
                .owner_fd_lent = owner_map.lent, .vectors = region->bells.vectors,
        };
        for (size_t i = 0; i < region->n_peers; i++) {
                snprintf(ret->tokens[i].domain, sizeof(ret->tokens[i].domain), "%s", region->peers[i].domain);
                memcpy(ret->tokens[i].token, region->tokens[i].token, sizeof(ret->tokens[i].token));
        }
        routes_announce(b, region, "region shared");
        log_share(region, actor);
        return 0;
}

int broker_share_undo(struct broker *b, const struct broker_caller *caller, uint64_t id, struct broker_error *err) {
        struct region *r = hashmap_get(b->regions, &id);
        char actor[BROKER_ACTOR_MAX];
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
