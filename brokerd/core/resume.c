/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Start: the in-memory index rebuilt from the database, then the work a crash interrupted
 * resumed (unconfirmed unmaps, half-done revokes, memory that did not survive).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/broker-internal.h"
#include "util/log.h"

static int load_region(void *userdata, const struct store_region *sr) {
        struct broker *b = userdata;
        _cleanup_(region_freep) struct region *r = NULL;
        int q;

        /* Peers come after all regions; they are added as they arrive (load_peer). */
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
        r->holders[0].mapped = sr->owner_mapped;
        /* What the doorbells were; they are made once the peers are loaded (broker_resume). */
        r->bells.vectors = sr->bell_vectors;
        r->bells.generation = sr->bell_generation;
        q = placer_reserve(b->placer, &r->range, r->base, r->size);
        if (q < 0) {
                log_region(LOG_ERR, r->id, NULL, NULL, "overlaps another live region in the database");
                return -EUCLEAN;
        }
        q = regions_add(b, r);
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

static int load_peer(void *userdata, const struct store_peer *sp) {
        struct broker *b = userdata;
        struct region *r = hashmap_get(b->regions, &sp->region);

        if (!r)
                return 0;
        return region_add_peer(r, sp);
}

static int load_route(void *userdata, const struct store_route *sr) {
        struct broker *b = userdata;
        struct route *rt;
        int q;

        /* Region routes are derived from the live regions; only a bounce answer is kept, a
         * pending one (on a region row) included. */
        if (sr->kind != ROUTE_BOUNCE && !sr->reason)
                return 0;
        q = route_get(b, sr->device, sr->domain, true, &rt);
        if (q < 0)
                return q;
        free(rt->bounce_reason);
        rt->bounce_reason = strdup(sr->reason ?: "");
        rt->updated = sr->updated;
        return rt->bounce_reason ? 0 : -ENOMEM;
}

int broker_load(struct broker *b) {
        return store_load(b->store, &(struct store_load_ops) {
                .region = load_region, .peer = load_peer, .route = load_route,
        }, b);
}

static int cmp_region_id(const void *a, const void *b) {
        uint64_t x = (*(struct region *const *) a)->id, y = (*(struct region *const *) b)->id;
        return x < y ? -1 : x > y;
}

/* A loaded region's tokens and routes indexed; removals in progress at the crash marked pending. */
static int region_index(struct broker *b, struct region *r) {
        bool none_attached = true;
        int q;

        /* Removals that were in progress when we went down may still be pending. */
        for (size_t i = 0; i < r->n_peers; i++) {
                if (peer_final(r->peers[i].state) && r->peers[i].mapped)
                        r->peers[i].unplug.requested = broker_now(b);
                none_attached = none_attached && peer_final(r->peers[i].state);
        }
        /* The owner's is asked together with the peers' once none is attached (takedown.c). */
        if (r->state == REGION_REVOKING && r->holders[0].mapped && none_attached)
                r->holders[0].unplug.requested = broker_now(b);
        for (size_t i = 0; i < r->n_peers; i++) {
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
        return 0;
}

/* Its memory is gone, or there but not as it was left (a crash while it was being created):
 * memory that cannot be vouched for is never handed out again. 1: the region was taken down. */
static int region_restore_memory(struct broker *b, struct region *r) {
        struct backend_region br = backend_region_of(r);
        bool seen = r->holders[0].mapped;
        int q;

        q = backend_restore(b->backend, &br);
        if (q < 0 && q != -ENOENT)
                log_region(LOG_ERR, r->id, NULL, NULL, "could not restore its memory: %s", strerror(-q));
        if (q >= 0 || !region_live(r))
                return 0;
        for (size_t i = 0; i < r->n_peers; i++)
                seen = seen || r->peers[i].state != PEER_GRANTED;
        if (!seen) {
                /* Nobody has seen the memory yet: making it anew loses nothing. */
                q = backend_create(b->backend, &br);
                if (q >= 0)
                        q = backend_scrub(b->backend, &br);
                if (q >= 0)
                        return 0;
        }
        /* Holders would see different memory than new attachers: take it down. */
        for (size_t k = 0; k <= r->n_peers; k++)
                r->holders[k].mapped = false;
        q = region_start_revoke(b, r, "broker", 0, true, "its memory did not survive the restart");
        return q < 0 ? q : 1;
}

/* What a crash left of one region, carried on. */
static int region_resume(struct broker *b, struct region *r) {
        int q;

        if (!r->pool)
                /* The platform no longer has the pool: nothing can back this region. */
                return region_live(r) ? region_start_revoke(b, r, "broker", 0, true, "its pool is no longer in the platform")
                                      : region_force(b, r, "broker", "its pool is no longer in the platform");
        q = region_restore_memory(b, r);
        if (q != 0)
                return q < 0 ? q : 0;

        /* Finish unmaps a crash interrupted (region_index() marked them): the peers', and the
         * owner's once no peer is attached. A backend without events of its own would otherwise
         * never be asked again for one marked requested. */
        for (size_t k = 0; k <= r->n_peers; k++) {
                holder_t *h = region_holder_at(r, k);

                if (h->mapped && h->unplug.requested)
                        (void) holder_unmap(b, r, h);
        }
        if (region_live(r))
                /* A crash between a release and the take-down it called for. */
                return region_settle(b, r, "broker", "every peer released the region");
        if (r->state == REGION_REVOKING)
                return r->deadline <= broker_now(b) ? region_force(b, r, "broker", "revoke deadline passed")
                                                    : region_finish(b, r, "broker");
        return 0;
}

/* After loading: token index, routes (oldest first, so the newest is current), resumed work. */
int broker_resume(struct broker *b) {
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
                q = region_index(b, list[k]);
                if (q < 0)
                        return q;
                /* Before any resumed unmap: a forced one waits for the holders it now knows again. */
                region_take_holders(b, list[k]);
                q = bells_init(list[k], list[k]->bells.vectors, list[k]->bells.generation,
                               backend_guest_doorbells(b->backend));
                if (q < 0)
                        return q;
                q = bells_resume(b, list[k]);
                if (q < 0)
                        return q;
        }
        /* Each region is resumed once and may be freed by it: list[k] is not touched again. */
        for (size_t k = 0; k < n; k++) {
                q = region_resume(b, list[k]);
                if (q < 0)
                        return q;
        }
        return 0;
}
