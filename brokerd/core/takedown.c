/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Taking a region down: its holders' mappings removed (at once, or confirmed later by the
 * backend while the range stays quarantined), then scrub, free, and record it reclaimed.
 * A take-down that fails is retried later with a backoff: nothing is left half-done for good.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/broker-internal.h"
#include "util/crashpoint.h"
#include "util/log.h"

struct holder_write {
        const struct region *r;
        const holder_t *h;
        int64_t now;
};

/* The holder's mapping is gone: its row says unmapped (the owner's is the region's row). */
static int holder_write_gone(struct store *s, void *userdata) {
        const struct holder_write *w = userdata;

        if (holder_is_owner(w->r, w->h))
                return store_region_update(s, w->r->id, w->r->state, w->r->deadline, false, w->now);
        return store_peer_update(s, w->r->id, w->h->domain, w->h->state, false, false);
}

static void holder_forget_mapping(struct broker *b, struct region *r, holder_t *h) {
        h->mapped = false;
        h->unplug = (struct broker_unplug) {};
        holder_untrack(b, r, h);
}

/* Records that h's mapping of r is gone (the backend shows none): durably, then in memory. */
int mapping_record_gone(struct broker *b, struct region *r, holder_t *h) {
        struct holder_write w = { .r = r, .h = h, .now = broker_now(b) };
        int q;

        if (!h->mapped)
                return 0;
        q = store_transition(b->store, holder_write_gone, &w, NULL, 0);
        if (q < 0)
                return q;
        holder_forget_mapping(b, r, h);
        return 0;
}

static int gone_write(struct store *s, void *userdata) {
        const struct holder_write *w = userdata;
        int q = 0;

        for (size_t k = 0; q >= 0 && k <= w->r->n_peers; k++) {
                const holder_t *h = region_holder_at((struct region *) w->r, k);
                struct holder_write one = { .r = w->r, .h = h, .now = w->now };

                if (h->gone_unrecorded)
                        q = holder_write_gone(s, &one);
        }
        return q;
}

/*
 * The mappings of r that a batch let go in memory only, written in one commit. If that fails
 * they count as mapped again: their removal is asked again later (backends' unmaps are
 * idempotent), and memory never claims less than the database.
 */
static int region_record_gone(struct broker *b, struct region *r) {
        struct holder_write w = { .r = r, .now = broker_now(b) };
        bool any = false;
        int q;

        for (size_t k = 0; k <= r->n_peers; k++)
                any = any || region_holder_at(r, k)->gone_unrecorded;
        if (!any)
                return 0;
        q = store_transition(b->store, gone_write, &w, NULL, 0);
        for (size_t k = 0; k <= r->n_peers; k++) {
                holder_t *h = region_holder_at(r, k);

                if (h->gone_unrecorded && q < 0)
                        h->mapped = true;
                h->gone_unrecorded = false;
        }
        if (q >= 0)
                crashpoint("unmap-recorded");
        return q;
}

bool gone_batch_begin(struct broker *b) {
        bool outer = !b->gone_batch;

        b->gone_batch = true;
        return outer;
}

int gone_batch_end(struct broker *b, uint64_t region_id, bool outer) {
        struct region *r;

        if (!outer)
                return 0;
        b->gone_batch = false;
        r = hashmap_get(b->regions, &region_id);
        /* A queued take-down writes them with its reclaim (or records them if it stops short). */
        return r && !r->finish_queued ? region_record_gone(b, r) : 0;
}

/* Asks the backend to remove h's mapping of r; records it gone when that completes at once. */
int holder_unmap(struct broker *b, struct region *r, holder_t *h) {
        struct backend_region br = backend_region_of(r);
        struct backend_holder bh = backend_holder_of(r, h);
        int q;

        if (!h->mapped)
                return 0;
        if (b->defer_unmaps && h->unplug.requested) {
                h->unplug.deferred = b->has_deferred = true;
                return 0;
        }
        h->unplug.deferred = false;
        q = backend_unmap(b->backend, &br, &bh);
        if (q == -EINPROGRESS) {
                /* Quarantined until backend_unmap_done(); the clock for escalation starts now. */
                if (!h->unplug.requested)
                        h->unplug.requested = broker_now(b);
                /* Nobody will report its end (a process lets go silently): ask again later. */
                if (!backend_can_survey(b->backend)) {
                        h->unplug.recheck = broker_now(b) + (int64_t) BROKER_UNPLUG_RETRY_USEC;
                        b->has_deferred = true;
                }
                crashpoint("unmap-requested");
                return 0;
        }
        if (q < 0) {
                log_region(LOG_ERR, r->id, h->domain, NULL, "unmap failed: %s; range stays quarantined", strerror(-q));
                return q;
        }
        if (b->gone_batch) {
                holder_forget_mapping(b, r, h);
                h->gone_unrecorded = true;
                return 0;
        }
        q = mapping_record_gone(b, r, h);
        if (q >= 0)
                crashpoint("unmap-recorded");
        return q;
}

static void region_forget(struct broker *b, struct region *r) {
        for (size_t i = 0; i < r->n_peers; i++)
                if (r->tokens[i].token[0])
                        hashmap_remove(b->tokens, r->tokens[i].token);
        revoking_list_remove(b, r);
        bells_owner_gone(b, r, BROKER_REASON_RECLAIMED);
        region_untrack(b, r);
        placer_release(b->placer, &r->range);
        regions_remove(b, r);
        usage_adjust(b, r->owner, -(int64_t) r->size, -1);
        region_free(r);
}

void region_retry_later(struct broker *b, struct region *r, int error) {
        int64_t now = broker_now(b);

        r->retry_backoff = r->retry_backoff ? r->retry_backoff * 2 : BROKER_RETRY_MIN_USEC;
        if (r->retry_backoff > BROKER_RETRY_MAX_USEC)
                r->retry_backoff = BROKER_RETRY_MAX_USEC;
        r->retry_at = now + (int64_t) r->retry_backoff;
        b->has_retry = true;
        log_region(LOG_WARNING, r->id, NULL, "broker", "taking the region down failed (%s); trying again in %" PRIu64 "s",
                   strerror(-error), r->retry_backoff / 1000000);
}

/*
 * Every mapping of r asked away: 1 once none is left, 0 while removals are pending. Every
 * holder is asked at once (a guest's unplug takes tens of milliseconds: one after another,
 * they would add up), and one the backend failed to ask does not hold the others back; the
 * range stays quarantined until each removal is confirmed. A removal already requested is
 * awaited, not asked for again -- except while starting or reconciling (defer_unmaps), where
 * holder_unmap() defers it: it may have been lost with the daemon or the connection.
 */
static int region_unmap_all(struct broker *b, struct region *r) {
        bool pending = false;
        int first_error = 0;

        for (size_t k = 0; k <= r->n_peers; k++) {
                holder_t *h = region_holder_at(r, k);

                /* Never asked, or its request failed: ask (again) now. */
                if (h->mapped && (!h->unplug.requested || b->defer_unmaps)) {
                        int q = holder_unmap(b, r, h);
                        if (q < 0)
                                first_error = first_error ?: q;
                }
                pending = pending || h->mapped;
        }
        if (first_error < 0)
                return first_error;
        return !pending;
}

/* Scrub and free the memory. Before the commit, so a crash in between repeats them (both are
 * idempotent) rather than leaking memory the database no longer mentions. */
static int region_free_memory(struct broker *b, struct region *r, const char *actor) {
        struct backend_region br = backend_region_of(r);
        int q;

        if (!r->pool)
                return 0;
        q = backend_scrub(b->backend, &br);
        if (q < 0 && q != -ENOENT) {
                log_region(LOG_ERR, r->id, NULL, actor, "scrub failed: %s; range stays quarantined", strerror(-q));
                return q;
        }
        crashpoint("reclaim-scrubbed");
        q = backend_destroy(b->backend, &br);
        if (q < 0 && q != -ENOENT)
                return q;
        crashpoint("reclaim-destroyed");
        return 0;
}

static int reclaim_write(struct store *s, void *userdata) {
        const struct holder_write *w = userdata;
        const struct region *r = w->r;
        int q = store_region_update(s, r->id, REGION_RECLAIMED, r->deadline, false, w->now);

        for (size_t i = 0; q >= 0 && i < r->n_peers; i++)
                q = store_peer_update(s, r->id, r->peers[i].domain, r->peers[i].state, true, false);
        return q;
}

struct finish_entry {
        uint64_t region;
        char actor[BROKER_ACTOR_MAX];
};

/*
 * With group sync, a region's memory is scrubbed only after the flush that every request of the
 * loop's turn shares: its partners must hear region.left (and stop reading) before it turns to
 * zeros, and they may hear it only once the release is durable. Flushing at each take-down
 * instead cost one fdatasync per release under load.
 */
static bool finish_waits_for_flush(const struct broker *b, const struct region *r) {
        return b->request_flush && !b->finishing_queued && r->pool && store_group_sync(b->store);
}

static int finish_queue(struct broker *b, struct region *r, const char *actor) {
        struct finish_entry *e;

        if (r->finish_queued)
                return 0;
        if (b->n_finish_queued == b->finish_queue_size) {
                size_t size = b->finish_queue_size ? b->finish_queue_size * 2 : 16;

                e = reallocarray(b->finish_queue, size, sizeof(*e));
                if (!e)
                        return -ENOMEM;
                b->finish_queue = e;
                b->finish_queue_size = size;
        }
        e = &b->finish_queue[b->n_finish_queued++];
        e->region = r->id;
        snprintf(e->actor, sizeof(e->actor), "%s", actor);
        r->finish_queued = true;
        b->request_flush(b->flush_userdata);
        return 0;
}

size_t broker_finish_queued(struct broker *b) {
        struct finish_entry *queue = TAKE_PTR(b->finish_queue);
        size_t n = b->n_finish_queued, ran = 0;

        b->n_finish_queued = b->finish_queue_size = 0;
        b->finishing_queued = true;
        for (size_t i = 0; i < n; i++) {
                struct region *r = hashmap_get(b->regions, &queue[i].region);

                if (!r || !r->finish_queued)
                        continue;
                r->finish_queued = false;
                (void) region_finish(b, r, queue[i].actor); /* retried later on failure */
                ran++;
        }
        b->finishing_queued = false;
        free(queue);
        return ran;
}

void broker_finish_queue_free(struct broker *b) {
        free(b->finish_queue);
        b->finish_queue = NULL;
        b->n_finish_queued = b->finish_queue_size = 0;
}

/*
 * A region in state revoking is reclaimed once no peer is attached and no mapping is left
 * unconfirmed: scrub, free the memory, then record it reclaimed. With group sync, the scrub and
 * what follows wait for the next flush (finish_waits_for_flush()).
 */
static int region_finish_once(struct broker *b, struct region *r, const char *actor) {
        struct holder_write w = { .r = r };
        struct store_audit a;
        uint64_t id = r->id;
        bool outer;
        int q, k;

        if (r->state != REGION_REVOKING || region_any_attached(r))
                return 0;
        /* Mappings that go at once are written with the reclaim (it writes every holder unmapped),
         * or together when the take-down stops short of it. */
        outer = gone_batch_begin(b);
        q = region_unmap_all(b, r);
        if (q > 0 && finish_waits_for_flush(b, r)) {
                q = finish_queue(b, r, actor);
                if (q >= 0)
                        q = -EINPROGRESS; /* the mappings gone so far are written with the reclaim */
        } else if (q > 0)
                q = region_free_memory(b, r, actor);
        else if (q == 0)
                q = -EINPROGRESS; /* removals pending: not an error */
        if (q >= 0) {
                w.now = broker_now(b);
                a = audit_row(actor, r, NULL, "reclaim", "revoking", "reclaimed", "scrubbed and freed", w.now);
                q = store_transition(b->store, reclaim_write, &w, &a, 1);
        }
        if (q < 0) {
                k = gone_batch_end(b, id, outer);
                return q == -EINPROGRESS ? k : q;
        }
        crashpoint("reclaimed");

        broker_emit(b, &(struct broker_event) {
                .type = BROKER_EVENT_RECLAIMED, .region = r->id, .owner = r->owner, .device = r->device,
                .n_peers = r->n_peers, .peers = r->peers,
        });
        region_forget(b, r);
        /* The reclaim wrote every holder unmapped, and the region is gone: nothing left to write. */
        (void) gone_batch_end(b, id, outer);
        return 0;
}

/* region_finish_once(), and on failure a retry later. */
int region_finish(struct broker *b, struct region *r, const char *actor) {
        int q = region_finish_once(b, r, actor);

        if (q < 0)
                region_retry_later(b, r, q);
        return q;
}
