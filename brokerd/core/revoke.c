/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Revoking: a live region moves to revoking (grants voided, attached peers recalled with a
 * deadline), and at the deadline, or at once with force, the attachments still held are
 * revoked; then the region is taken down (takedown.c). Also a domain that went away.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/broker-internal.h"
#include "util/crashpoint.h"
#include "util/log.h"

struct region_write {
        struct broker *b;
        struct region *r;
        int64_t deadline, now;
};

static int force_write(struct store *s, void *userdata) {
        const struct region_write *w = userdata;
        const struct region *r = w->r;
        int q = 0;

        for (size_t i = 0; q >= 0 && i < r->n_peers; i++)
                if (r->peers[i].state == PEER_ATTACHED)
                        q = store_peer_update(s, r->id, r->peers[i].domain, PEER_REVOKED, false, r->peers[i].mapped);
        return q;
}

/* Records every attachment still held as revoked, then tells whom it concerns. */
static int region_revoke_attached(struct broker *b, struct region *r, const char *actor, const char *reason) {
        _cleanup_(xfreep) struct store_audit *audits = calloc(r->n_peers + 1, sizeof(*audits));
        struct region_write w = { .b = b, .r = r, .now = broker_now(b) };
        size_t n = 0;
        int q;

        if (!audits)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_peers; i++)
                if (r->peers[i].state == PEER_ATTACHED)
                        audits[n++] = audit_row(actor, r, r->peers[i].domain, "revoke-peer", "attached", "revoked", reason,
                                                w.now);
        if (n == 0)
                return 0;
        q = store_transition(b->store, force_write, &w, audits, n);
        if (q < 0)
                return q;
        crashpoint("revoke-forced");
        for (size_t i = 0; i < r->n_peers; i++)
                if (r->peers[i].state == PEER_ATTACHED) {
                        r->peers[i].state = PEER_REVOKED;
                        broker_emit(b, &(struct broker_event) {
                                .type = BROKER_EVENT_REVOKED, .region = r->id, .owner = r->owner,
                                .device = r->device, .domain = r->peers[i].domain, .reason = reason,
                        });
                }
        bells_sync(b, r, reason);
        return 0;
}

/* Forcibly revokes every attachment still held (deadline passed, force, domain gone). */
int region_force(struct broker *b, struct region *r, const char *actor, const char *reason) {
        int q = region_revoke_attached(b, r, actor, reason);

        if (q < 0)
                return q;
        for (size_t i = 0; i < r->n_peers; i++)
                if (peer_final(r->peers[i].state))
                        (void) holder_unmap(b, r, &r->peers[i]); /* a failure keeps it quarantined; logged */
        (void) region_finish(b, r, actor); /* retried on failure */
        return 0;
}

static int start_revoke_write(struct store *s, void *userdata) {
        const struct region_write *w = userdata;
        struct region *r = w->r;
        int q = store_region_update(s, r->id, REGION_REVOKING, w->deadline, r->holders[0].mapped, w->now);

        for (size_t i = 0; q >= 0 && i < r->n_peers; i++)
                if (r->peers[i].state == PEER_GRANTED)
                        q = store_peer_update(s, r->id, r->peers[i].domain, PEER_REVOKED, false, false);
        if (q >= 0)
                q = routes_persist_without(w->b, s, r, w->now);
        return q;
}

/* The revoke's transition: the region revoking, its grants voided, its routes without it. */
static int start_revoke_record(struct broker *b, struct region *r, const char *actor, int64_t deadline,
                               const char *reason) {
        _cleanup_(xfreep) struct store_audit *audits = calloc(r->n_peers + 1, sizeof(*audits));
        struct region_write w = { .b = b, .r = r, .deadline = deadline, .now = broker_now(b) };
        size_t n = 0;

        if (!audits)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_peers; i++)
                if (r->peers[i].state == PEER_GRANTED)
                        audits[n++] = audit_row(actor, r, r->peers[i].domain, "void-grant", "granted", "revoked",
                                                "region revoked before the peer attached", w.now);
        audits[n++] = audit_row(actor, r, NULL, "revoke", region_state_to_string(r->state), "revoking", reason, w.now);
        return store_transition(b->store, start_revoke_write, &w, audits, n);
}

/*
 * Moves a live region to revoking: outstanding grants are voided, attached peers recalled
 * with a deadline. One transition. Then finishes at once if nobody is attached.
 */
int region_start_revoke(struct broker *b, struct region *r, const char *actor, uint64_t timeout_usec, bool force,
                        const char *reason) {
        int64_t deadline = broker_now(b) + (int64_t) timeout_usec;
        int q;

        q = start_revoke_record(b, r, actor, deadline, reason);
        if (q < 0)
                return q;
        crashpoint("revoke-recorded");
        routes_drop_region(b, r);

        r->state = REGION_REVOKING;
        r->deadline = deadline;
        for (size_t i = 0; i < r->n_peers; i++)
                if (r->peers[i].state == PEER_GRANTED)
                        r->peers[i].state = PEER_REVOKED;
        revoking_list_add(b, r);
        routes_announce(b, r, reason);

        /* Each holder's recall (or forced revoke) is logged with the reason; nobody's, the revoke is. */
        if (!region_any_attached(r))
                log_region(LOG_INFO, r->id, NULL, actor, "revoke on %s: %s", r->device, reason);
        for (size_t i = 0; i < r->n_peers; i++)
                if (r->peers[i].state == PEER_ATTACHED && !force)
                        broker_emit(b, &(struct broker_event) {
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
 * lost for good): one transition with its audit row, then the event and the unmap.
 * still_mapped says whether the backend may still show the region to the domain.
 */
int peer_revoke_now(struct broker *b, struct region *r, size_t i, const char *actor, const char *why,
                    bool still_mapped) {
        holder_t *h = &r->peers[i];
        enum peer_state from = h->state;
        struct store_audit a = audit_row(actor, r, h->domain, "revoke-peer", peer_state_to_string(from), "revoked", why,
                                         broker_now(b));
        int q;

        q = peer_record(b, r, h, &(struct peer_change) {
                .state = PEER_REVOKED, .mapped = still_mapped, .drop_route = true,
        }, &a);
        if (q < 0)
                return q;
        h->state = PEER_REVOKED;
        h->mapped = still_mapped;
        if (!still_mapped) {
                h->unplug = (struct broker_unplug) {};
                holder_untrack(b, r, h);
        }
        route_drop_peer(b, r, h->domain, why);
        if (from == PEER_ATTACHED)
                broker_emit(b, &(struct broker_event) {
                        .type = BROKER_EVENT_REVOKED, .region = r->id, .owner = r->owner, .device = r->device,
                        .domain = h->domain, .reason = why,
                });
        bells_sync(b, r, why);
        return holder_unmap(b, r, h);
}

/* A live region that no peer can use any more is taken down; a revoking one is finished. */
int region_settle(struct broker *b, struct region *r, const char *actor, const char *why) {
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

static int deadline_write(struct store *s, void *userdata) {
        const struct region_write *w = userdata;

        return store_region_update(s, w->r->id, w->r->state, w->deadline, w->r->holders[0].mapped, w->now);
}

/* A revoke of a region already being revoked: force it, or bring its deadline forward. */
static int region_revoke_again(struct broker *b, struct region *r, const char *actor, uint64_t timeout_usec,
                               bool force, const char *why) {
        int64_t now = broker_now(b);
        struct region_write w = { .b = b, .r = r, .deadline = now + (int64_t) timeout_usec, .now = now };
        struct store_audit a;
        char reason[160];
        int q;

        if (force)
                return region_force(b, r, actor, why);
        if (w.deadline >= r->deadline)
                return 0;
        snprintf(reason, sizeof(reason), "%s; deadline brought forward", why);
        /* No state changes (the region stays revoking): from/to stay null. */
        a = audit_row(actor, r, NULL, "revoke-deadline", NULL, NULL, reason, now);
        q = store_transition(b->store, deadline_write, &w, &a, 1);
        if (q < 0)
                return q;
        r->deadline = w.deadline;
        return 0;
}

int broker_revoke(struct broker *b, const struct broker_caller *caller, const char *owner, uint64_t id,
                  uint64_t timeout_usec, bool force, struct broker_region_info *ret, struct broker_error *err) {
        struct region *r;
        char actor[BROKER_ACTOR_MAX], why[96];
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

/* One region the gone domain owns or holds: its grant revoked, the region revoked or settled. */
static int domain_gone_region(struct broker *b, struct region *r, const char *actor, const char *domain,
                              const char *why, struct broker_domain_gone_result *res) {
        ssize_t i = region_find_peer(r, domain);
        int q;

        if (i >= 0 && !peer_final(r->peers[i].state)) {
                q = peer_revoke_now(b, r, (size_t) i, actor, why, r->peers[i].mapped);
                if (q < 0 && !peer_final(r->peers[i].state))
                        return q;
                res->peers_revoked++;
        } else if (i >= 0 && r->peers[i].mapped)
                /* Its removal may have been refused earlier; ask again now that the domain is gone. */
                (void) holder_unmap(b, r, &r->peers[i]);
        if (strcmp(r->owner, domain) == 0)
                bells_owner_gone(b, r, why);
        if (strcmp(r->owner, domain) != 0 || !region_live(r))
                return region_settle(b, r, actor, why);
        q = region_start_revoke(b, r, actor, b->revoke_timeout_usec, false, why);
        if (q >= 0)
                res->regions_revoked++;
        return q;
}

int domain_gone(struct broker *b, const char *actor, const char *domain, struct broker_domain_gone_result *ret,
                struct broker_error *err) {
        _cleanup_(xfreep) uint64_t *ids = NULL;
        struct broker_domain_gone_result res = {};
        size_t n = 0;
        char why[160];
        int q, first_error = 0;

        snprintf(why, sizeof(why), "domain %s went away", domain);
        if (regions_collect_ids(b, &ids, &n) < 0)
                return broker_error_set(err, BROKER_E_STORE, "out of memory");
        for (size_t k = 0; k < n; k++) {
                struct region *r = hashmap_get(b->regions, &ids[k]);

                if (!r || !region_holder(r, domain))
                        continue;
                q = domain_gone_region(b, r, actor, domain, why, &res);
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
        char actor[BROKER_ACTOR_MAX];

        caller_actor(caller, actor);
        if (!caller->admin)
                return broker_error_set(err, BROKER_E_FORBIDDEN, "only an admin may report a domain gone");
        if (!name_is_valid(domain))
                return broker_error_set(err, BROKER_E_INVALID, "domain is not a valid domain name");
        return domain_gone(b, actor, domain, ret, err);
}
