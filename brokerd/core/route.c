/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Routes: which live region (device, domain) leads to now, the newest one, or the bounce answer
 * recorded when the last share for it could not be placed. Derived from the live regions in
 * memory; the durable routes table is written inside the transitions that change it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/broker-internal.h"

void route_free(struct route *rt) {
        if (!rt)
                return;
        free(rt->key);
        free(rt->device);
        free(rt->domain);
        free(rt->bounce_reason);
        free(rt);
}

int route_get(struct broker *b, const char *device, const char *domain, bool create, struct route **ret) {
        /* Names are at most NAME_MAX_LEN: the key fits on the stack (a share looks up several). */
        char key[2 * NAME_MAX_LEN + 2];
        size_t n_device = strlen(device), n_domain = strlen(domain);
        struct route *rt;
        int r;

        if (n_device > NAME_MAX_LEN || n_domain > NAME_MAX_LEN)
                return -EINVAL;
        memcpy(key, device, n_device);
        key[n_device] = '/';
        memcpy(key + n_device + 1, domain, n_domain + 1);
        rt = hashmap_get(b->routes, key);
        if (!rt && create) {
                rt = calloc(1, sizeof(*rt));
                if (!rt)
                        return -ENOMEM;
                rt->key = strdup(key);
                rt->device = strdup(device);
                rt->domain = strdup(domain);
                if (!rt->key || !rt->device || !rt->domain || (r = hashmap_put(b->routes, rt->key, rt)) < 0) {
                        route_free(rt);
                        return -ENOMEM;
                }
        }
        if (!rt)
                return -ENOENT;
        *ret = rt;
        return 0;
}

/* The link of region's peer whose route rt is; NULL if no peer of region is rt's domain. */
static struct route_link *route_link_of(const struct route *rt, struct region *region) {
        ssize_t i = strcmp(region->device, rt->device) == 0 ? region_find_peer(region, rt->domain) : -1;

        return i >= 0 ? &region->route_links[i] : NULL;
}

int route_add_live(struct route *rt, struct region *region) {
        struct route_link *l = route_link_of(rt, region);

        if (!l)
                return -ENOENT;
        if (l->route == rt)
                return 0;
        *l = (struct route_link) { .region = region, .route = rt, .older = rt->newest };
        if (rt->newest)
                rt->newest->newer = l;
        else
                rt->oldest = l;
        rt->newest = l;
        rt->n_live++;
        return 0;
}

void route_remove_live(struct route *rt, struct region *region) {
        struct route_link *l = route_link_of(rt, region);

        if (!l || l->route != rt)
                return;
        if (l->older)
                l->older->newer = l->newer;
        else
                rt->oldest = l->newer;
        if (l->newer)
                l->newer->older = l->older;
        else
                rt->newest = l->older;
        *l = (struct route_link) {};
        rt->n_live--;
}

struct region *route_current(const struct route *rt) {
        return rt->newest ? rt->newest->region : NULL;
}

/*
 * What the durable routes table should say for rt. A region row's reason carries a bounce
 * answered while the region still served the route: it is the answer once the region goes.
 */
static int route_persist_leading_to(struct store *s, const struct route *rt, const struct region *current,
                                    int64_t now) {
        if (current)
                return store_route_set(s, &(struct store_route) {
                        .device = rt->device, .domain = rt->domain, .kind = ROUTE_REGION,
                        .region = current->id, .reason = rt->bounce_reason, .updated = now,
                });
        if (rt->bounce_reason)
                return store_route_set(s, &(struct store_route) {
                        .device = rt->device, .domain = rt->domain, .kind = ROUTE_BOUNCE,
                        .reason = rt->bounce_reason, .updated = now,
                });
        int r = store_route_delete(s, rt->device, rt->domain);
        return r == -ENOENT ? 0 : r;
}

int route_persist(struct store *s, const struct route *rt, int64_t now) {
        return route_persist_leading_to(s, rt, route_current(rt), now);
}

void emit_route_changed(struct broker *b, const char *device, const char *domain, uint64_t region,
                               const char *reason) {
        broker_emit(b, &(struct broker_event) {
                .type = BROKER_EVENT_ROUTE_CHANGED, .region = region, .device = device, .domain = domain,
                .reason = reason,
        });
}

/*
 * One peer is done with a region that may stay live for others: the peer's route no longer
 * leads there. route_persist_without_peer() records it inside a transition without touching
 * memory (the current entry is persisted as if it were gone); route_drop_peer() follows the
 * commit, so a failed commit leaves the routes exactly as they were.
 */
int route_persist_without_peer(struct broker *b, struct store *s, struct region *region, const char *domain,
                               int64_t now) {
        struct route *rt;

        if (route_get(b, region->device, domain, false, &rt) < 0 || route_current(rt) != region)
                return 0;
        return route_persist_leading_to(s, rt, rt->newest->older ? rt->newest->older->region : NULL, now);
}

/* A region stops being usable for new traffic: the same, for every peer's route. */
int routes_persist_without(struct broker *b, struct store *s, struct region *region, int64_t now) {
        for (size_t i = 0; i < region->n_peers; i++) {
                int q = route_persist_without_peer(b, s, region, region->peers[i].domain, now);
                if (q < 0)
                        return q;
        }
        return 0;
}

void routes_drop_region(struct broker *b, struct region *region) {
        for (size_t i = 0; i < region->n_peers; i++) {
                struct route *rt;
                if (route_get(b, region->device, region->peers[i].domain, false, &rt) >= 0)
                        route_remove_live(rt, region);
        }
}

void route_drop_peer(struct broker *b, struct region *region, const char *domain, const char *reason) {
        struct route *rt;
        bool was_current;

        if (route_get(b, region->device, domain, false, &rt) < 0)
                return;
        was_current = route_current(rt) == region;
        route_remove_live(rt, region);
        if (was_current)
                emit_route_changed(b, region->device, domain, route_current(rt) ? route_current(rt)->id : 0, reason);
}

void routes_announce(struct broker *b, const struct region *region, const char *reason) {
        for (size_t i = 0; i < region->n_peers; i++) {
                struct route *rt;
                uint64_t id = 0;
                if (route_get(b, region->device, region->peers[i].domain, false, &rt) >= 0 && route_current(rt))
                        id = route_current(rt)->id;
                emit_route_changed(b, region->device, region->peers[i].domain, id, reason);
        }
}
