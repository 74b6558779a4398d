/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Time: revoke deadlines (attachments still held are revoked), retries of take-downs that
 * failed, removals deferred while reconciling, and escalation against a domain that ignores
 * the removal of a mapping past its deadline.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/broker-internal.h"
#include "util/log.h"

static int64_t min_i64(int64_t a, int64_t b) {
        return a < b ? a : b;
}

/* When a pending removal becomes overdue: the revoke deadline, plus a grace from the request. */
static int64_t unplug_due(const struct broker *b, const struct region *r, const holder_t *h) {
        const struct broker_unplug *u = &h->unplug;
        int64_t due;

        if (!h->mapped || !u->requested || u->escalated || r->state != REGION_REVOKING)
                return INT64_MAX;
        due = u->requested > INT64_MAX - (int64_t) b->unplug_grace_usec ? INT64_MAX
                                                                         : u->requested + (int64_t) b->unplug_grace_usec;
        return due > r->deadline ? due : r->deadline;
}

/*
 * The domain ignored the removal past its deadline. Whatever the configured action, the
 * range stays quarantined until the backend confirms the removal; the action only stops the
 * guest (or process) from using it meanwhile (pause/stop) or ends it (destroy/kill, which
 * completes it). Returns 1 when the backend says the holder is cut off by now.
 */
static int unplug_escalate(struct broker *b, struct region *r, holder_t *h, int64_t now) {
        struct broker_unplug *u = &h->unplug;
        struct backend_region br = backend_region_of(r);
        struct backend_holder bh = backend_holder_of(r, h);
        char why[320], action[32];
        struct store_audit a;
        int q = backend_escalate(b->backend, &br, &bh, b->escalation);

        u->escalated = now;
        u->action = b->escalation;
        u->action_failed = q < 0;
        snprintf(why, sizeof(why),
                 "%s still holds region %" PRIu64 " %" PRId64 "s after its removal was requested%s; the range stays "
                 "quarantined; escalation: %s%s%s",
                 h->domain, r->id, (now - u->requested) / 1000000, u->failed ? " (the guest refused it)" : "",
                 escalation_to_string(b->escalation), q < 0 ? " failed: " : "", q < 0 ? strerror(-q) : "");

        /* No state changes (the mapping stays until confirmed gone): from/to stay null. */
        snprintf(action, sizeof(action), "escalate-%s", escalation_to_string(b->escalation));
        a = audit_row("broker", r, h->domain, action, NULL, NULL, why, now);
        (void) audit_only(b, &a);
        log_region(LOG_WARNING, r->id, h->domain, "broker", "%s", why);
        broker_emit(b, &(struct broker_event) {
                .type = BROKER_EVENT_UNPLUG_OVERDUE, .region = r->id, .owner = r->owner, .device = r->device,
                .domain = h->domain, .reason = why, .escalation = b->escalation,
        });
        return q;
}

/* When a deferred removal (see defer_unmaps), or one to check again, is asked for; INT64_MAX if none is. */
static int64_t deferred_due(const holder_t *h) {
        if (!h->mapped)
                return INT64_MAX;
        if (h->unplug.deferred)
                return h->unplug.requested + (int64_t) BROKER_UNPLUG_RETRY_USEC;
        return h->unplug.recheck ?: INT64_MAX;
}

static int64_t region_deferred_due(const struct region *r) {
        int64_t next = INT64_MAX;

        for (size_t k = 0; k <= r->n_peers; k++)
                next = min_i64(next, deferred_due(&r->holders[k]));
        return next;
}

static int64_t region_retry_due(const struct region *r) {
        return r->retry_at ?: INT64_MAX;
}

/* The earliest due(r) over the regions, while *pending; clears *pending when none is left. */
static int64_t regions_earliest(struct broker *b, bool *pending, int64_t (*due)(const struct region *r)) {
        int64_t next = INT64_MAX;
        size_t it = 0;
        void *v;

        if (!*pending)
                return INT64_MAX;
        while (hashmap_iterate(b->regions, &it, &v))
                next = min_i64(next, due(v));
        *pending = next != INT64_MAX;
        return next;
}

/* The earliest deferred removal (see defer_unmaps). */
static int64_t deferred_next(struct broker *b) {
        return regions_earliest(b, &b->has_deferred, region_deferred_due);
}

/* The earliest retry of a failed take-down. */
static int64_t retry_next(struct broker *b) {
        return regions_earliest(b, &b->has_retry, region_retry_due);
}

static void retry_one(struct broker *b, struct region *r, int64_t now) {
        r->retry_at = 0;
        if (r->state == REGION_REVOKING && r->deadline <= now) {
                int q = region_force(b, r, "broker", "revoke deadline passed");
                if (q < 0)
                        region_retry_later(b, r, q);
        } else
                (void) region_settle(b, r, "broker", "retrying a take-down that failed");
}

static void retry_failed(struct broker *b, int64_t now) {
        _cleanup_(xfreep) uint64_t *ids = NULL;
        size_t n = 0;

        if (retry_next(b) > now || regions_collect_ids(b, &ids, &n) < 0)
                return;
        for (size_t k = 0; k < n; k++) {
                struct region *r = hashmap_get(b->regions, &ids[k]);
                if (!r || !r->retry_at || r->retry_at > now)
                        continue;
                retry_one(b, r, now);
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
        size_t n = 0;

        if (deferred_next(b) > now || regions_collect_ids(b, &ids, &n) < 0)
                return;
        /* By id: a removal that completes at once may reclaim (free) its region. */
        for (size_t k = 0; k < n; k++) {
                struct region *r = hashmap_get(b->regions, &ids[k]);
                for (size_t j = 0; r && j <= r->n_peers; j++) {
                        holder_t *h = region_holder_at(r, j);
                        if (deferred_due(h) > now)
                                continue;
                        (void) holder_unmap(b, r, h);
                        (void) region_finish(b, r, "broker");
                        r = hashmap_get(b->regions, &ids[k]);
                }
        }
        (void) deferred_next(b);
}

static void escalate_overdue(struct broker *b, int64_t now) {
        _cleanup_(xfreep) uint64_t *cut = NULL;
        size_t n_cut = 0, n = 0;

        for (struct region *r = b->revoking; r; r = r->revoking_next)
                n++;
        cut = calloc(n ?: 1, sizeof(*cut));
        /* Escalating never frees a region here: those whose holders were cut off are finished after. */
        for (struct region *r = b->revoking; r; r = r->revoking_next)
                for (size_t j = 0; j <= r->n_peers; j++) {
                        holder_t *h = region_holder_at(r, j);
                        if (unplug_due(b, r, h) > now)
                                continue;
                        if (unplug_escalate(b, r, h, now) > 0 && cut && mapping_record_gone(b, r, h) >= 0) {
                                if (n_cut == 0 || cut[n_cut - 1] != r->id)
                                        cut[n_cut++] = r->id;
                        } else if (h->unplug.failed)
                                /* A refused removal is no longer pending: ask again. */
                                (void) holder_unmap(b, r, h);
                }
        for (size_t k = 0; k < n_cut; k++) {
                struct region *r = hashmap_get(b->regions, &cut[k]);
                if (r)
                        (void) region_finish(b, r, "broker");
        }
}

int broker_process_deadlines(struct broker *b) {
        int64_t now = broker_now(b);
        struct region *r, *next;
        int first_error = 0;

        for (r = b->revoking; r; r = next) {
                next = r->revoking_next;
                /* Without attachments it waits for removals, or for a retry below. */
                if (r->deadline > now || r->retry_at > now || !region_any_attached(r))
                        continue;
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

        for (struct region *r = b->revoking; r; r = r->revoking_next) {
                for (size_t k = 0; k <= r->n_peers; k++)
                        next = min_i64(next, unplug_due(b, r, &r->holders[k]));
                /* A force that failed waits for its retry instead of spinning on a past deadline. */
                if (region_any_attached(r) && !r->retry_at)
                        next = min_i64(next, r->deadline);
        }
        return next;
}
