/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Doorbells (docs/protocol.md "Doorbells"): one eventfd per ordered pair of a region's parties and
 * per vector. The broker keeps a copy of each while both ends are parties (and one in the fd store,
 * so a restart hands the same ones again); a party gets dups of its ends. An eventfd once passed
 * cannot be taken back, so a departure is cut by the broker forgetting the pairs and by the remaining
 * parties dropping their ends on region.left: nobody who joins later ever gets them.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/broker-internal.h"
#include "util/lent-fd.h"
#include "util/log.h"

static int *bell_slot(const struct region *r, size_t from, size_t to, unsigned v) {
        return &r->bells.fd[(from * r->bells.n + to) * r->bells.vectors + v];
}

/* bell-<region>-<from>-<to>-<vector>: within the fd store's alphabet and length. */
static void bell_store_name(const struct region *r, size_t from, size_t to, unsigned v,
                            char buf[static BACKEND_FD_NAME_MAX + 1]) {
        snprintf(buf, BACKEND_FD_NAME_MAX + 1, "bell-%" PRIu64 "-%zu-%zu-%u", r->id, from, to, v);
}

int bells_init(struct region *r, unsigned vectors, uint64_t generation, bool in_guests) {
        size_t n = r->n_peers + 1;
        bool *party;
        int *fd;

        if (vectors > BROKER_MAX_DOORBELL_VECTORS)
                return -EINVAL;
        if (vectors == 0) {
                r->bells = (struct region_bells) { .generation = generation };
                return 0;
        }
        /* One block: the fds, then who is a party (freed with the fds). */
        fd = malloc(n * n * vectors * sizeof(*fd) + n * sizeof(*party));
        if (!fd)
                return -ENOMEM;
        party = (bool *) (fd + n * n * vectors);
        memset(party, 0, n * sizeof(*party));
        for (size_t i = 0; i < n * n * vectors; i++)
                fd[i] = -1;
        /* The owner is a party from its share on. */
        party[0] = true;
        r->bells = (struct region_bells) { .vectors = vectors, .generation = generation, .n = n, .party = party,
                                           .fd = fd, .in_guests = in_guests };
        return 0;
}

void bells_free(struct region *r) {
        for (size_t i = 0; r->bells.fd && i < r->bells.n * r->bells.n * r->bells.vectors; i++)
                lent_fd_close(r->bells.fd[i]); /* perhaps lent to a reply (bells_get()) */
        free(r->bells.fd); /* and party, in the same block */
        r->bells = (struct region_bells) {};
}

/* The pairs between from and to (both directions, every vector) closed and dropped from the fd store. */
static void bells_cut_pair(struct broker *b, struct region *r, size_t x, size_t y) {
        char name[BACKEND_FD_NAME_MAX + 1];

        for (unsigned v = 0; v < r->bells.vectors; v++)
                for (int dir = 0; dir < 2; dir++) {
                        size_t from = dir ? y : x, to = dir ? x : y;
                        int *slot = bell_slot(r, from, to, v);

                        if (*slot < 0)
                                continue;
                        lent_fd_close(*slot);
                        *slot = -1;
                        if (b->fd_store.drop) {
                                bell_store_name(r, from, to, v, name);
                                (void) b->fd_store.drop(b->fd_store.userdata, name);
                        }
                }
}

static void bells_cut(struct broker *b, struct region *r, size_t k) {
        for (size_t j = 0; j < r->bells.n; j++)
                if (j != k)
                        bells_cut_pair(b, r, k, j);
        r->bells.party[k] = false;
}

/* The eventfd of (from, to, v): taken back from the fd store when it kept one, else made anew (1). */
static int bell_make(struct broker *b, struct region *r, size_t from, size_t to, unsigned v, bool take) {
        char name[BACKEND_FD_NAME_MAX + 1];
        int fd;

        bell_store_name(r, from, to, v, name);
        if (take && b->fd_store.take && b->fd_store.take(b->fd_store.userdata, name, &fd) >= 0) {
                *bell_slot(r, from, to, v) = fd;
                return 0;
        }
        fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0)
                return negative_errno();
        *bell_slot(r, from, to, v) = fd;
        if (b->fd_store.keep)
                (void) b->fd_store.keep(b->fd_store.userdata, name, fd);
        return 1;
}

/* k's pairs with every party, both directions. 1 when any was made anew, 0 when all were taken back. */
static int bells_connect(struct broker *b, struct region *r, size_t k, bool take) {
        int made = 0;

        if (r->bells.in_guests)
                return 0;
        for (size_t j = 0; j < r->bells.n; j++) {
                if (j == k || !r->bells.party[j])
                        continue;
                for (unsigned v = 0; v < r->bells.vectors; v++)
                        for (int dir = 0; dir < 2; dir++) {
                                size_t from = dir ? j : k, to = dir ? k : j;
                                int q;

                                if (*bell_slot(r, from, to, v) >= 0)
                                        continue;
                                q = bell_make(b, r, from, to, v, take);
                                if (q < 0)
                                        return q;
                                made |= q;
                        }
        }
        return made;
}

int bells_join(struct broker *b, struct region *r, size_t k) {
        int q;

        if (r->bells.vectors == 0 || r->bells.party[k])
                return 0;
        q = bells_connect(b, r, k, false);
        if (q < 0) {
                bells_cut(b, r, k);
                return q;
        }
        r->bells.party[k] = true;
        return 0;
}

void bells_unjoin(struct broker *b, struct region *r, size_t k) {
        if (r->bells.vectors > 0)
                bells_cut(b, r, k);
}

size_t bells_join_fds(const struct region *r) {
        size_t n = 0;

        if (r->bells.in_guests)
                return 0;
        for (size_t j = 0; j < r->bells.n; j++)
                n += r->bells.party[j];
        return 2 * r->bells.vectors * n;
}

/* Tells every party but k that k joined or left. */
static void bells_announce(struct broker *b, struct region *r, size_t k, enum broker_event_type type,
                           const char *reason) {
        const char *parties[BROKER_MAX_PEERS + 1];
        size_t n = 0;

        for (size_t j = 0; j < r->bells.n; j++)
                if (j != k && r->bells.party[j])
                        parties[n++] = r->holders[j].domain;
        if (n == 0)
                return;
        broker_emit(b, &(struct broker_event) {
                .type = type, .region = r->id, .owner = r->owner, .device = r->device,
                .domain = r->holders[k].domain, .reason = reason, .n_parties = n, .parties = parties,
        });
}

void bells_announce_join(struct broker *b, struct region *r, size_t k) {
        if (r->bells.vectors > 0)
                bells_announce(b, r, k, BROKER_EVENT_JOINED, NULL);
}

static bool holder_is_party(const struct region *r, size_t k) {
        return k == 0 ? !r->bells.owner_gone : r->holders[k].state == PEER_ATTACHED;
}

void bells_sync(struct broker *b, struct region *r, const char *reason) {
        bool left[BROKER_MAX_PEERS + 1] = {};

        if (r->bells.vectors == 0)
                return;
        /* All departures cut first, so that none of them hears of another. */
        for (size_t k = 0; k < r->bells.n; k++)
                if (r->bells.party[k] && !holder_is_party(r, k)) {
                        bells_cut(b, r, k);
                        left[k] = true;
                }
        for (size_t k = 0; k < r->bells.n; k++)
                if (left[k]) {
                        if (!streq_ptr(reason, BROKER_REASON_RECLAIMED))
                                log_region(LOG_DEBUG, r->id, r->holders[k].domain, "broker", "doorbells cut: %s",
                                           reason ?: "its hold ended");
                        bells_announce(b, r, k, BROKER_EVENT_LEFT, reason);
                }
}

void bells_owner_gone(struct broker *b, struct region *r, const char *reason) {
        r->bells.owner_gone = true;
        bells_sync(b, r, reason);
}

struct generation_write {
        const struct region *r;
        uint64_t generation;
        int64_t now;
};

static int generation_write(struct store *s, void *userdata) {
        const struct generation_write *w = userdata;

        return store_region_set_bell_generation(s, w->r->id, w->generation, w->now);
}

int bells_resume(struct broker *b, struct region *r) {
        struct generation_write w = { .r = r, .generation = r->bells.generation + 1, .now = broker_now(b) };
        struct store_audit a;
        int made = 0, q;

        if (r->bells.vectors == 0)
                return 0;
        for (size_t k = 0; k < r->bells.n; k++) {
                r->bells.party[k] = holder_is_party(r, k);
                if (!r->bells.party[k])
                        continue;
                q = bells_connect(b, r, k, true);
                if (q < 0) {
                        /* Out of fds: k is no party (it learns so from region.doorbells). */
                        log_region(LOG_ERR, r->id, r->holders[k].domain, NULL, "cannot make its doorbells: %s",
                                   strerror(-q));
                        bells_cut(b, r, k);
                        continue;
                }
                made |= q;
        }
        if (!made)
                return 0;
        /* The parties' old ends no longer connect: the generation tells them to fetch the new ones. */
        a = audit_row("broker", r, NULL, "doorbells", NULL, NULL, "made anew at start (the fd store kept none)", w.now);
        q = store_transition(b->store, generation_write, &w, &a, 1);
        if (q < 0)
                log_region(LOG_ERR, r->id, NULL, NULL, "cannot record the doorbells' new generation: %s", strerror(-q));
        r->bells.generation = w.generation;
        return 0;
}

void broker_doorbells_close(struct broker_doorbells *d) {
        for (size_t i = 0; i < d->n && !d->lent; i++) {
                if (d->bells[i].send_fd >= 0)
                        close(d->bells[i].send_fd);
                if (d->bells[i].recv_fd >= 0)
                        close(d->bells[i].recv_fd);
        }
        d->n = 0;
}

static int dup_fd(int fd) {
        int q = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        return q < 0 ? negative_errno() : q;
}

/* Every party's id in its guest's device, for regions whose doorbells are in the guests. */
static void bells_get_guests(struct broker *b, const struct region *r, struct broker_doorbells *d) {
        struct backend_region br = backend_region_of(r);

        d->in_guests = true;
        for (size_t j = 0; j < r->bells.n; j++) {
                uint32_t id;

                if (r->bells.party[j] && backend_doorbell_id(b->backend, &br, r->holders[j].domain, &id) >= 0)
                        d->guests[d->n_guests++] = (struct broker_guest_bell) { .domain = r->holders[j].domain, .id = id };
        }
}

int bells_get(struct broker *b, const struct region *r, size_t k, bool lend, struct broker_doorbells *ret) {
        struct broker_doorbells d = {
                .region = r->id, .vectors = r->bells.vectors, .generation = r->bells.generation, .lent = lend,
        };

        if (r->bells.in_guests) {
                bells_get_guests(b, r, &d);
                *ret = d;
                return 0;
        }

        for (size_t j = 0; j < r->bells.n; j++) {
                if (j == k || !r->bells.party[j])
                        continue;
                for (unsigned v = 0; v < r->bells.vectors; v++) {
                        struct broker_doorbell *e = &d.bells[d.n];
                        *e = (struct broker_doorbell) { .peer = r->holders[j].domain, .vector = v, .send_fd = -1 };
                        d.n++;
                        if (lend) {
                                e->send_fd = *bell_slot(r, k, j, v);
                                e->recv_fd = *bell_slot(r, j, k, v);
                                continue;
                        }
                        e->send_fd = dup_fd(*bell_slot(r, k, j, v));
                        e->recv_fd = e->send_fd < 0 ? -1 : dup_fd(*bell_slot(r, j, k, v));
                        if (e->recv_fd < 0) {
                                int q = e->send_fd < 0 ? e->send_fd : e->recv_fd;
                                broker_doorbells_close(&d);
                                return q;
                        }
                }
        }
        *ret = d;
        return 0;
}

size_t broker_attach_fds(const struct broker *b, const char *token) {
        const struct token_entry *te = token ? hashmap_get(b->tokens, token) : NULL;

        if (!te)
                return 0;
        return (backend_hands_fds(b->backend) ? 1 : 0) + bells_join_fds(te->region);
}

int broker_region_doorbells(struct broker *b, const struct broker_caller *caller, const char *domain, uint64_t id,
                            struct broker_doorbells *ret, struct broker_error *err) {
        struct region *r;
        holder_t *h;
        int q;

        if (!name_is_valid(domain))
                return broker_error_set(err, BROKER_E_INVALID, "domain is not a valid domain name");
        q = check_acts_for(b, caller, domain, err);
        if (q < 0)
                return q;
        r = hashmap_get(b->regions, &id);
        h = r ? region_holder(r, domain) : NULL;
        /* Without doorbells a holder has none: an empty list, as for a party alone in its region. */
        if (!h || (r->bells.vectors == 0 ? !holder_entitled(r, h) : !r->bells.party[h - r->holders]))
                return broker_error_set(err, BROKER_E_NO_SUCH_REGION, "%s holds no doorbells of region %" PRIu64,
                                        domain, id);
        q = bells_get(b, r, (size_t) (h - r->holders), caller->lend_fds, ret);
        if (q < 0)
                return broker_error_set(err, q == -EMFILE || q == -ENFILE ? BROKER_E_LIMIT : BROKER_E_STORE,
                                        "cannot hand the doorbells of region %" PRIu64 ": %s", id, strerror(-q));
        return 0;
}
