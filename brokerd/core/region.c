/* SPDX-License-Identifier: Apache-2.0 */
/* Regions in memory and the holders of their mappings; what each owner shares (quotas). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/broker-internal.h"
#include "util/num.h"

void region_free(struct region *r) {
        if (!r)
                return;
        /* A region is taken off its routes before it goes; should one be left, no route keeps
         * a link into freed memory. */
        for (size_t i = 0; r->route_links && i < r->n_peers; i++)
                if (r->route_links[i].route)
                        route_remove_live(r->route_links[i].route, r);
        if (r->holder_links)
                region_close_holders(r);
        bells_free(r);
        for (size_t i = 0; r->domains && i < r->n_peers; i++)
                free(r->domains[i]);
        free(r->holders); /* and the other per-holder arrays: one block */
        free(r->owner);
        free(r->device);
        free(r->label);
        free(r);
}

/* Ids come from sqlite (at most INT64_MAX), so id + 1 never wraps. */
int regions_add(struct broker *b, struct region *r) {
        int q = hashmap_put(b->regions, &r->id, r);

        if (q < 0)
                return q;
        q = range_tree_insert(&b->ids, &r->by_id, r->id, r->id + 1);
        if (q < 0)
                hashmap_remove(b->regions, &r->id);
        return q;
}

void regions_remove(struct broker *b, struct region *r) {
        if (hashmap_remove(b->regions, &r->id) == r)
                range_tree_remove(&b->ids, r->id);
}

/*
 * The per-holder arrays (holders, domains, tokens, route and holder links), in one block with
 * room for 1 + n_peers, grown from 1 + old_peers (0: none yet); what was there is kept, the new
 * entries are zero. Nothing may point into the arrays while they grow: regions grow only while
 * loading, before any route, token index or holder process knows them.
 */
static int region_arrays_grow(struct region *r, size_t old_peers, size_t n_peers) {
        const size_t size[] = { sizeof(holder_t), sizeof(char *), sizeof(struct token_entry),
                                sizeof(struct route_link), sizeof(struct holder_link) };
        size_t old_n = r->holders ? old_peers + 1 : 0, n = n_peers + 1, total = 0;
        size_t old_at[ELEMENTSOF(size)], at[ELEMENTSOF(size)];
        char *block;

        for (size_t k = 0, o = 0; k < ELEMENTSOF(size); k++) {
                old_at[k] = o;
                at[k] = total;
                o += old_n * size[k];
                total += n * size[k];
        }
        block = realloc(r->holders, total);
        if (!block)
                return -ENOMEM;
        /* The last array first: each moves up, onto where the next one was. */
        for (size_t k = ELEMENTSOF(size); k-- > 0;) {
                memmove(block + at[k], block + old_at[k], old_n * size[k]);
                memset(block + at[k] + old_n * size[k], 0, (n - old_n) * size[k]);
        }
        r->holders = (holder_t *) (block + at[0]);
        r->peers = r->holders + 1;
        r->domains = (char **) (block + at[1]);
        r->tokens = (struct token_entry *) (block + at[2]);
        r->route_links = (struct route_link *) (block + at[3]);
        r->holder_links = (struct holder_link *) (block + at[4]);
        return 0;
}

int region_alloc(const char *owner, const char *device, const char *label, size_t n_peers, struct region **ret) {
        _cleanup_(region_freep) struct region *r = calloc(1, sizeof(*r));

        if (!r)
                return -ENOMEM;
        r->n_peers = n_peers;
        r->owner = strdup(owner);
        r->device = strdup(device);
        r->label = label ? strdup(label) : NULL;
        if (!r->owner || !r->device || (label && !r->label) || region_arrays_grow(r, 0, n_peers) < 0)
                return -ENOMEM;
        r->holders[0] = (holder_t) { .domain = r->owner, .access = ACCESS_RW, .state = PEER_ATTACHED };
        *ret = TAKE_PTR(r);
        return 0;
}

int region_set_peer(struct region *r, size_t i, const char *domain, enum access_mode access, enum peer_state state,
                    const char *token, bool mapped) {
        r->domains[i] = strdup(domain);
        if (!r->domains[i])
                return -ENOMEM;
        r->peers[i] = (holder_t) {
                .domain = r->domains[i], .access = access, .state = state, .mapped = mapped,
        };
        r->tokens[i].region = r;
        r->tokens[i].peer = i;
        snprintf(r->tokens[i].token, sizeof(r->tokens[i].token), "%s", token ?: "");
        return 0;
}

/* On load, peers arrive one by one after their region. */
int region_add_peer(struct region *r, const struct store_peer *sp) {
        size_t n = r->n_peers + 1;
        int q = region_arrays_grow(r, r->n_peers, n);

        if (q < 0)
                return q;
        r->n_peers = n;
        return region_set_peer(r, n - 1, sp->domain, sp->access, sp->state, sp->token, sp->mapped);
}

ssize_t region_find_peer(const struct region *r, const char *domain) {
        for (size_t i = 0; i < r->n_peers; i++)
                if (strcmp(r->peers[i].domain, domain) == 0)
                        return (ssize_t) i;
        return -1;
}

holder_t *region_holder(struct region *r, const char *domain) {
        for (size_t i = 0; i <= r->n_peers; i++)
                if (strcmp(r->holders[i].domain, domain) == 0)
                        return &r->holders[i];
        return NULL;
}

bool holder_is_owner(const struct region *r, const holder_t *h) {
        return h == r->holders;
}

bool region_live(const struct region *r) {
        return r->state == REGION_OFFERED || r->state == REGION_ACTIVE;
}

bool holder_entitled(const struct region *r, const holder_t *h) {
        return holder_is_owner(r, h) ? region_live(r) : h->state == PEER_ATTACHED;
}

bool region_any_attached(const struct region *r) {
        for (size_t i = 0; i < r->n_peers; i++)
                if (r->peers[i].state == PEER_ATTACHED)
                        return true;
        return false;
}

bool peer_final(enum peer_state s) {
        return s == PEER_RELEASED || s == PEER_REVOKED;
}

void region_info(const struct region *r, struct broker_region_info *ret) {
        *ret = (struct broker_region_info) {
                .id = r->id, .owner = r->owner, .device = r->device, .pool = r->pool ? r->pool->name : NULL,
                .label = r->label, .base = r->base, .size = r->size, .state = r->state, .deadline = r->deadline,
                .created = r->created, .owner_mapped = r->holders[0].mapped, .owner_unplug = r->holders[0].unplug,
                .n_peers = r->n_peers, .peers = r->peers, .bell_vectors = r->bells.vectors,
                .bell_generation = r->bells.generation, .bell_parties = r->bells.party,
        };
}

struct backend_region backend_region_of(const struct region *r) {
        return (struct backend_region) {
                .id = r->id, .base = r->base, .size = r->size, .pool = r->pool, .doorbells = r->bells.vectors,
        };
}

void revoking_list_add(struct broker *b, struct region *r) {
        if (r->on_revoking_list)
                return;
        r->revoking_prev = NULL;
        r->revoking_next = b->revoking;
        if (b->revoking)
                b->revoking->revoking_prev = r;
        b->revoking = r;
        r->on_revoking_list = true;
}

void revoking_list_remove(struct broker *b, struct region *r) {
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

int usage_adjust(struct broker *b, const char *domain, int64_t bytes, int64_t regions) {
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

/* May owner share size bytes more, in one more region? */
int quota_check(struct broker *b, const char *owner, uint64_t size, struct broker_error *err) {
        uint64_t used_bytes, used_regions, max_bytes, max_regions;

        broker_usage(b, owner, &used_bytes, &used_regions);
        policy_quota_for(b->policy, owner, &max_bytes, &max_regions);
        if (used_regions + 1 > max_regions)
                return broker_error_set(err, BROKER_E_QUOTA, "%s already shares %" PRIu64 " regions; its quota is %" PRIu64,
                                        owner, used_regions, max_regions);
        if (size > max_bytes || used_bytes > max_bytes - size) {
                char s1[NUM_FMT_MAX], s2[NUM_FMT_MAX], s3[NUM_FMT_MAX];
                return broker_error_set(err, BROKER_E_QUOTA, "%s shares %s; %s more exceeds its quota of %s", owner,
                                        num_format_size(used_bytes, s1), num_format_size(size, s2),
                                        num_format_size(max_bytes, s3));
        }
        return 0;
}

/* ---- recording a peer's change ---- */

struct peer_write {
        struct broker *b;
        struct region *r;
        const holder_t *h;
        const struct peer_change *c;
        int64_t now;
};

static int peer_write(struct store *s, void *userdata) {
        const struct peer_write *w = userdata;
        const struct peer_change *c = w->c;
        int q = store_peer_update(s, w->r->id, w->h->domain, c->state, false, c->mapped);

        if (q >= 0 && c->set_region)
                q = store_region_update(s, w->r->id, c->region_state, w->r->deadline, w->r->holders[0].mapped, w->now);
        if (q >= 0 && c->drop_route)
                q = route_persist_without_peer(w->b, s, w->r, w->h->domain, w->now);
        return q;
}

int peer_record(struct broker *b, struct region *r, holder_t *h, const struct peer_change *c,
                const struct store_audit *audit) {
        struct peer_write w = { .b = b, .r = r, .h = h, .c = c, .now = audit->time };

        return store_transition(b->store, peer_write, &w, audit, 1);
}

holder_t *region_holder_at(struct region *r, size_t k) {
        return k < r->n_peers ? &r->peers[k] : &r->holders[0];
}
