/* SPDX-License-Identifier: Apache-2.0 */
/* A peer redeems its token (attach) and gives its grant back (release, or undo of an attach). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/broker-internal.h"
#include "util/crashpoint.h"

void region_info_after(struct broker *b, uint64_t id, struct broker_region_info *ret) {
        struct region *r = hashmap_get(b->regions, &id);

        if (!ret)
                return;
        if (r)
                region_info(r, ret);
        else
                *ret = (struct broker_region_info) { .id = id, .state = REGION_RECLAIMED };
}

/* The grant token stands for, if domain may redeem it now. */
static int token_redeemable(struct broker *b, const char *domain, const char *token, struct region **ret_r,
                            size_t *ret_i, struct broker_error *err) {
        struct token_entry *te = hashmap_get(b->tokens, token);
        struct region *r;
        size_t i;

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
        *ret_r = r;
        *ret_i = i;
        return 0;
}

/* The backend could not map it: the attachment is recorded undone, the token usable again. */
static void attach_revert(struct broker *b, struct region *r, holder_t *h, enum region_state from, int error) {
        struct store_audit a = audit_row("broker", r, h->domain, "attach-failed", "attached", "granted", strerror(-error),
                                         broker_now(b));

        if (peer_record(b, r, h, &(struct peer_change) {
                    .state = PEER_GRANTED, .set_region = from == REGION_OFFERED, .region_state = from,
            }, &a) < 0)
                return;
        h->state = PEER_GRANTED;
        h->mapped = false;
        r->state = from;
}

int broker_attach(struct broker *b, const struct broker_caller *caller, const char *domain, const char *token,
                  struct broker_attach_result *ret, struct broker_error *err) {
        struct backend_mapping map = { .fd = -1, .lend = caller && caller->lend_fds };
        struct broker_doorbells bells;
        struct backend_region br;
        struct store_audit a;
        struct region *r = NULL;
        enum region_state from;
        char actor[BROKER_ACTOR_MAX];
        holder_t *h;
        size_t i = 0;
        int q;

        caller_actor(caller, actor);
        if (!name_is_valid(domain))
                return broker_error_set(err, BROKER_E_INVALID, "domain is not a valid domain name");
        if (!token || strlen(token) != STORE_TOKEN_LEN)
                return broker_error_set(err, BROKER_E_BAD_TOKEN, "a token is %d hex characters", STORE_TOKEN_LEN);
        q = check_acts_for(b, caller, domain, err);
        if (q >= 0)
                q = token_redeemable(b, domain, token, &r, &i, err);
        if (q < 0)
                return q;
        h = &r->peers[i];
        /* The doorbells first: a failure to make them (out of fds) changes nothing. */
        q = bells_join(b, r, i + 1);
        if (q >= 0)
                q = bells_get(b, r, i + 1, caller && caller->lend_fds, &bells);
        if (q < 0) {
                bells_unjoin(b, r, i + 1);
                return broker_error_set(err, q == -EMFILE || q == -ENFILE ? BROKER_E_LIMIT : BROKER_E_STORE,
                                        "cannot make the doorbells of region %" PRIu64 " for %s: %s", r->id, domain,
                                        strerror(-q));
        }

        /* Record the attachment (mapped: the mapping may exist) before mapping, so a crash
         * in between leaves a record that restart unmaps, never a mapping nobody knows of. */
        from = r->state;
        a = audit_row(actor, r, domain, "attach", "granted", "attached", access_to_string(h->access), broker_now(b));
        q = peer_record(b, r, h, &(struct peer_change) {
                .state = PEER_ATTACHED, .mapped = true, .set_region = from == REGION_OFFERED,
                .region_state = REGION_ACTIVE,
        }, &a);
        if (q < 0) {
                broker_doorbells_close(&bells);
                bells_unjoin(b, r, i + 1);
                return store_failed(q, err, "the attach");
        }
        h->state = PEER_ATTACHED;
        h->mapped = true;
        r->state = REGION_ACTIVE;
        crashpoint("attach-recorded");

        br = backend_region_of(r);
        q = map_flushing(b, &br, domain, h->access, &map);
        if (q < 0) {
                attach_revert(b, r, h, from, q);
                broker_doorbells_close(&bells);
                bells_unjoin(b, r, i + 1);
                return broker_error_set(err, BROKER_E_BACKEND, "%s backend could not map region %" PRIu64 " for %s: %s",
                                        backend_name(b->backend), r->id, domain, strerror(-q));
        }

        crashpoint("attach-mapped");
        /* In guests the new party's id exists only now that its device joined. */
        if (r->bells.in_guests)
                (void) bells_get(b, r, i + 1, caller && caller->lend_fds, &bells);
        if (map.fd >= 0)
                holder_track(b, r, h, caller);
        *ret = (struct broker_attach_result) {
                .region = r->id, .base = r->base, .size = r->size, .access = h->access, .fd = map.fd, .fd_lent = map.lent,
                .doorbells = bells,
        };
        broker_emit(b, &(struct broker_event) {
                .type = BROKER_EVENT_ATTACHED, .region = r->id, .owner = r->owner, .device = r->device, .domain = domain,
        });
        bells_announce_join(b, r, i + 1);
        return 0;
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
int peer_release(struct broker *b, const char *actor, struct region *r, size_t i, const char *reason,
                        struct broker_error *err) {
        holder_t *h = &r->peers[i];
        enum peer_state from = h->state;
        struct store_audit a;
        uint64_t id;
        bool outer;
        int q;

        if (peer_final(from))
                return broker_error_set(err, BROKER_E_BAD_STATE, "%s's grant on region %" PRIu64 " is already %s",
                                        h->domain, r->id, peer_state_to_string(from));
        a = audit_row(actor, r, h->domain, "release", peer_state_to_string(from), "released", reason, broker_now(b));
        q = peer_record(b, r, h, &(struct peer_change) {
                .state = PEER_RELEASED, .mapped = h->mapped, .drop_route = true,
        }, &a);
        if (q < 0)
                return store_failed(q, err, "the release");
        crashpoint("release-recorded");
        h->state = PEER_RELEASED;
        /* A holder that gives its mapping up is believed: its process is no longer ours to watch. */
        holder_untrack(b, r, h);
        route_drop_peer(b, r, h->domain, "the peer released the region");
        /* region.left before region.released: whoever reads both at once cuts the party off
         * first, and never reads memory the take-down below may have scrubbed already. */
        bells_sync(b, r, reason ?: "released");
        broker_emit(b, &(struct broker_event) {
                .type = BROKER_EVENT_RELEASED, .region = r->id, .owner = r->owner, .device = r->device,
                .domain = h->domain, .reason = reason,
        });

        id = r->id;
        outer = gone_batch_begin(b);
        (void) holder_unmap(b, r, h);
        /* Nobody can use it any more: take it down rather than keep it forever (retried on failure;
         * the release itself is recorded). */
        (void) region_settle(b, r, region_live(r) ? "broker" : actor, "every peer released the region");
        (void) gone_batch_end(b, id, outer);
        return 0;
}

/* A caller acting for domain gives its grant on region id back; an undo only an attachment. */
static int release_as(struct broker *b, const struct broker_caller *caller, const char *domain, uint64_t id,
                      bool undo, struct broker_error *err) {
        struct region *r = NULL;
        char actor[BROKER_ACTOR_MAX];
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
        if (undo && r->peers[i].state != PEER_ATTACHED)
                return broker_error_set(err, BROKER_E_BAD_STATE, "%s is not attached to region %" PRIu64, domain, id);
        return peer_release(b, actor, r, i, undo ? BROKER_REASON_UNDELIVERED : NULL, err);
}

int broker_release(struct broker *b, const struct broker_caller *caller, const char *domain, uint64_t id,
                   struct broker_region_info *ret, struct broker_error *err) {
        int q = release_as(b, caller, domain, id, false, err);

        if (q < 0)
                return q;
        region_info_after(b, id, ret);
        return 0;
}

int broker_attach_undo(struct broker *b, const struct broker_caller *caller, const char *domain, uint64_t id,
                       struct broker_error *err) {
        return release_as(b, caller, domain, id, true, err);
}
