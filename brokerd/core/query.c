/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Queries: what the caller may see of regions and routes, and the admin's views (domains
 * against their quotas, pools, the audit log, counts), as plain structs the RPC layer formats.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/broker-internal.h"

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

struct region_walk {
        const struct broker *b;
        const struct broker_caller *caller;
        int (*fn)(void *userdata, const struct broker_region_info *r);
        void *userdata;
};

static int region_walk_one(struct range_node *n, void *userdata) {
        const struct region_walk *w = userdata;
        const struct region *r = (const struct region *) ((const char *) n - offsetof(struct region, by_id));
        struct broker_region_info info;

        if (!region_visible(w->b, w->caller, r))
                return 0;
        region_info(r, &info);
        return w->fn(w->userdata, &info);
}

/* An in-order walk of the id tree from after + 1: O(log n) expected to start, one step per region. */
int broker_region_foreach_after(struct broker *b, const struct broker_caller *caller, uint64_t after,
                                int (*fn)(void *userdata, const struct broker_region_info *r), void *userdata) {
        struct region_walk w = { .b = b, .caller = caller, .fn = fn, .userdata = userdata };

        if (after == UINT64_MAX)
                return 0;
        return range_tree_foreach_from(&b->ids, after + 1, region_walk_one, &w);
}

int broker_region_foreach(struct broker *b, const struct broker_caller *caller,
                          int (*fn)(void *userdata, const struct broker_region_info *r), void *userdata) {
        return broker_region_foreach_after(b, caller, 0, fn, userdata);
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
                const struct region *r = route_current(rt);
                ssize_t i = region_find_peer(r, domain);
                *ret = (struct broker_route_info) {
                        .found = true, .kind = ROUTE_REGION, .region = r->id, .base = r->base, .size = r->size,
                        .access = i >= 0 ? r->peers[i].access : ACCESS_RO,
                };
        } else
                *ret = (struct broker_route_info) { .found = true, .kind = ROUTE_BOUNCE, .reason = rt->bounce_reason };
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

/* What live (not reclaimed) regions use of each pool, indexed like b->platform->pools: for admins. */
static int pool_use(struct broker *b, const struct broker_caller *caller, uint64_t **ret_used, uint64_t **ret_regions,
                    struct broker_error *err) {
        const struct platform *pl = b->platform;
        _cleanup_(xfreep) uint64_t *used = calloc(pl->n_pools + 1, sizeof(*used));
        _cleanup_(xfreep) uint64_t *regions = calloc(pl->n_pools + 1, sizeof(*regions));
        size_t it = 0;
        void *v;
        int q;

        q = check_admin(caller, err);
        if (q < 0)
                return q;
        if (!used || !regions)
                return broker_error_set(err, BROKER_E_STORE, "out of memory");
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

        q = pool_use(b, caller, &used, &regions, err);
        if (q < 0)
                return q;
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

        q = pool_use(b, caller, &used, &regions, err);
        if (q < 0)
                return q;
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

/* Walks audit rows, counting them; with stop_at, stops at that row (1-based) and keeps its seq. */
struct audit_count {
        uint64_t seen, stop_at;
        int64_t seq;
};

static int audit_count_one(void *userdata, const struct store_audit *a) {
        struct audit_count *c = userdata;

        c->seen++;
        if (c->stop_at && c->seen == c->stop_at) {
                c->seq = a->seq;
                return -ECANCELED;
        }
        return 0;
}

/* after_seq such that the rows after it (and since) are the newest limit ones: count, then find. */
static int audit_tail_start(struct broker *b, int64_t after_seq, int64_t since, unsigned limit, int64_t *ret) {
        struct audit_count c = {};
        int q;

        q = store_audit_list(b->store, after_seq, since, 0, audit_count_one, &c);
        if (q < 0)
                return q;
        if (c.seen <= limit) {
                *ret = after_seq;
                return 0;
        }
        c = (struct audit_count) { .stop_at = c.seen - limit + 1 };
        q = store_audit_list(b->store, after_seq, since, 0, audit_count_one, &c);
        if (q < 0 && q != -ECANCELED)
                return q;
        *ret = c.seq - 1;
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
        int q = check_admin(caller, err);
        struct broker_stats st = {};
        size_t it = 0;
        void *v;

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
