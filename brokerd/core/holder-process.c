/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The processes that hold mappings. A verb that hands an fd out keeps a pidfd of the process it
 * went to (its own, never a pid number). The backend gets it to tell whether a forcibly revoked
 * holder can still reach the memory, and to stop or kill it; the daemon watches it, and when the
 * process exits its mappings are gone with it: a mapping lives as long as the process that
 * received the fd over the socket.
 *
 * Holders whose fds went to one connection share one struct holder_process: one dup of the
 * connection's pidfd and one watch, however many regions the process holds, and its exit walks
 * that process's own holders. It is found by the connection, never by pid (no reuse race), and
 * outlives the connection while a holder is linked to it. Under an fd store every holder has
 * one of its own (an open file of its own, kept under the holder's name).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/broker-internal.h"
#include "util/log.h"
#include "util/pidfd.h"

/*
 * The fd store's name of h's pidfd: holder-<region>-<domain>, the domain escaped one to one
 * into the store's alphabet ('_' -> "_u", ':' -> "_c", '+' -> "_p"), so that two domains never
 * share a name. -ENAMETOOLONG for a domain too long to fit (its pidfd is not kept).
 */
static int holder_store_name(const struct region *r, const holder_t *h, char buf[static BACKEND_FD_NAME_MAX + 1]) {
        size_t n = (size_t) snprintf(buf, BACKEND_FD_NAME_MAX + 1, "holder-%" PRIu64 "-", r->id);

        for (const char *c = h->domain; *c; c++) {
                const char *esc = *c == '_' ? "_u" : *c == ':' ? "_c" : *c == '+' ? "_p" : NULL;
                size_t len = esc ? 2 : 1;

                if (n + len > BACKEND_FD_NAME_MAX)
                        return -ENAMETOOLONG;
                memcpy(buf + n, esc ?: c, len);
                n += len;
        }
        buf[n] = '\0';
        return 0;
}

static void holder_store(struct broker *b, const struct region *r, const holder_t *h, int pidfd) {
        char name[BACKEND_FD_NAME_MAX + 1];

        if (!b->fd_store.keep || holder_store_name(r, h, name) < 0)
                return;
        if (pidfd >= 0)
                (void) b->fd_store.keep(b->fd_store.userdata, name, pidfd);
        else
                (void) b->fd_store.drop(b->fd_store.userdata, name);
}

static struct holder_link *link_of(struct region *r, const holder_t *h) {
        return &r->holder_links[h - r->holders];
}

static void process_unref(struct holder_process *p) {
        struct broker *b = p->broker;

        if (--p->n_ref > 0)
                return;
        hashmap_remove(b->processes, &p->fd_key);
        if (p->watch && b->unwatch_process)
                b->unwatch_process(b->watch_userdata, p->watch);
        close(p->pidfd);
        free(p);
}

/* Its connection's entry removed (a later fd to that connection gets a process of its own),
 * and p freed if that was all that kept it. */
static void process_drop_connection(struct holder_process *p) {
        if (!p->connection)
                return;
        hashmap_remove(p->broker->connections, &p->connection);
        p->connection = 0;
        process_unref(p);
}

/*
 * A process for pidfd (taken, closed on failure too), known by connection when that is not 0,
 * and watched. -errno when it cannot be kept at all.
 */
static int process_new(struct broker *b, const struct region *r, int pidfd, uint64_t connection,
                       struct holder_process **ret) {
        struct holder_process *p = calloc(1, sizeof(*p));
        int q;

        if (!p) {
                close(pidfd);
                return -ENOMEM;
        }
        *p = (struct holder_process) { .broker = b, .fd_key = (uint64_t) pidfd, .pidfd = pidfd };
        q = hashmap_put(b->processes, &p->fd_key, p);
        if (q < 0) {
                close(pidfd);
                free(p);
                return q;
        }
        if (connection) {
                p->connection = connection;
                if (hashmap_put(b->connections, &p->connection, p) >= 0)
                        p->n_ref++;
                else
                        p->connection = 0; /* only not shared */
        }
        if (b->watch_process && b->watch_process(b->watch_userdata, p->pidfd, &p->watch) < 0) {
                p->watch = NULL;
                log_region(LOG_WARNING, r->id, NULL, NULL, "cannot watch a holder's process; its exit goes unseen");
        }
        *ret = p;
        return 0;
}

static void link_attach(struct holder_link *l, struct region *r, struct holder_process *p) {
        *l = (struct holder_link) { .region = r, .process = p, .next = p->holders };
        if (p->holders)
                p->holders->prev = l;
        p->holders = l;
        p->n_ref++;
}

static void link_detach(struct holder_link *l) {
        struct holder_process *p = l->process;

        if (!p)
                return;
        if (l->prev)
                l->prev->next = l->next;
        else
                p->holders = l->next;
        if (l->next)
                l->next->prev = l->prev;
        *l = (struct holder_link) {};
        process_unref(p);
}

/* The caller's process for a new holder: its connection's, or a new one. */
static int process_of_caller(struct broker *b, const struct region *r, const struct broker_caller *caller,
                             struct holder_process **ret) {
        struct holder_process *p = caller->connection ? hashmap_get(b->connections, &caller->connection) : NULL;
        int fd, q;

        if (p && !b->fd_store.keep) {
                *ret = p;
                return 0;
        }
        /*
         * Under an fd store, an open file of its own: the store keeps one fd per open file, not
         * per holder. Without one, the connection's pidfd is as good and costs one call, not two.
         */
        q = b->fd_store.keep ? pidfd_reopen(caller->pidfd, caller->pid, &fd) : -EBADF;
        /* No store; or the process exited already (its watch fires at once), or no /proc. */
        if (q < 0)
                q = (fd = fcntl(caller->pidfd, F_DUPFD_CLOEXEC, 3)) < 0 ? negative_errno() : 0;
        if (q < 0)
                return q;
        return process_new(b, r, fd, b->fd_store.keep ? 0 : caller->connection, ret);
}

static int holder_pidfd(struct region *r, const holder_t *h) {
        const struct holder_link *l = link_of(r, h);

        return l->process ? l->process->pidfd : -1;
}

void holder_track(struct broker *b, struct region *r, holder_t *h, const struct broker_caller *caller) {
        struct holder_link *l = link_of(r, h);
        struct holder_process *p;
        int q;

        if (!caller || caller->pidfd <= 0)
                return;
        link_detach(l); /* the store's copy is replaced below */
        q = process_of_caller(b, r, caller, &p);
        if (q < 0) {
                log_region(LOG_WARNING, r->id, h->domain, NULL, "cannot keep the holder's pidfd: %s; its exit goes unseen",
                           strerror(-q));
                holder_store(b, r, h, -1);
                return;
        }
        link_attach(l, r, p);
        holder_store(b, r, h, p->pidfd);
}

void holder_untrack(struct broker *b, struct region *r, holder_t *h) {
        struct holder_link *l = link_of(r, h);

        if (l->process)
                holder_store(b, r, h, -1);
        link_detach(l);
}

void region_untrack(struct broker *b, struct region *r) {
        for (size_t k = 0; k <= r->n_peers; k++)
                holder_untrack(b, r, &r->holders[k]);
}

void region_close_holders(struct region *r) {
        for (size_t k = 0; k <= r->n_peers; k++)
                link_detach(&r->holder_links[k]);
}

void processes_free(struct broker *b) {
        size_t it = 0;
        void *v;

        /* Only connections' entries are left (every region let go of its holders first). */
        while (b->connections && hashmap_iterate(b->connections, &it, &v)) {
                process_drop_connection(v);
                it = 0; /* the map changed */
        }
}

void broker_connection_closed(struct broker *b, uint64_t connection) {
        struct holder_process *p = connection ? hashmap_get(b->connections, &connection) : NULL;

        if (p)
                process_drop_connection(p);
}

void region_take_holders(struct broker *b, struct region *r) {
        char name[BACKEND_FD_NAME_MAX + 1];

        if (!b->fd_store.take)
                return;
        for (size_t k = 0; k <= r->n_peers; k++) {
                holder_t *h = &r->holders[k];
                struct holder_process *p;
                int fd;

                /* A holder no longer mapped has no pidfd worth taking: the store drops it unclaimed. */
                if (!h->mapped || r->holder_links[k].process || holder_store_name(r, h, name) < 0 ||
                    b->fd_store.take(b->fd_store.userdata, name, &fd) < 0)
                        continue;
                /* Already exited? The watch fires at once and the exit is handled as usual. */
                if (process_new(b, r, fd, 0, &p) >= 0)
                        link_attach(&r->holder_links[k], r, p);
        }
}

struct backend_holder backend_holder_of(const struct region *r, const holder_t *h) {
        return (struct backend_holder) {
                .domain = h->domain, .pidfd = holder_pidfd((struct region *) r, h),
                .forced = !holder_is_owner(r, h) && h->state == PEER_REVOKED,
        };
}

/* A peer that kept a revoked mapping is gone: the removal is complete. */
static int revoked_holder_exited(struct broker *b, struct region *r, holder_t *h) {
        struct store_audit a = audit_row("broker", r, h->domain, "unmap", NULL, NULL, BROKER_REASON_HOLDER_EXITED,
                                         broker_now(b));
        int q;

        (void) audit_only(b, &a);
        q = mapping_record_gone(b, r, h);
        if (q < 0) {
                region_retry_later(b, r, q);
                return q;
        }
        return region_finish(b, r, "broker");
}

/* h's process exited. Lets go of h's link first, whatever happens next. */
static int holder_exited(struct broker *b, struct region *r, holder_t *h) {
        int q;

        holder_untrack(b, r, h);
        log_region(LOG_INFO, r->id, h->domain, "broker", "%s", BROKER_REASON_HOLDER_EXITED);
        if (holder_is_owner(r, h)) {
                bells_owner_gone(b, r, "owner process exited");
                /* The owner's mapping went with it; its peers get the usual recall and deadline. */
                if (!region_live(r))
                        return 0;
                q = region_start_revoke(b, r, "broker", b->revoke_timeout_usec, false, "owner process exited");
                if (q < 0)
                        region_retry_later(b, r, q);
                return q;
        }
        if (h->state == PEER_ATTACHED)
                return peer_release(b, "broker", r, (size_t) (h - r->peers), BROKER_REASON_HOLDER_EXITED, NULL);
        if (h->mapped)
                return revoked_holder_exited(b, r, h);
        return 0;
}

int broker_process_exited(struct broker *b, int pidfd) {
        uint64_t key = (uint64_t) pidfd;
        struct holder_process *p = pidfd >= 0 ? hashmap_get(b->processes, &key) : NULL;
        struct holder_link *l;
        int q = 0;

        if (!p)
                return 0;
        /* Held across the walk: one holder's exit may let others of the same process go. */
        p->n_ref++;
        /* A later fd to its connection gets a process of its own, whose watch fires at once. */
        process_drop_connection(p);
        while ((l = p->holders)) {
                struct region *r = l->region;
                int k = holder_exited(b, r, &r->holders[l - r->holder_links]);

                q = q < 0 ? q : k;
        }
        process_unref(p);
        return q;
}
