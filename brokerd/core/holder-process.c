/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The processes that hold mappings. A verb that hands an fd out keeps a pidfd of the process it
 * went to (the caller's connection's, dup'ed: one per holder), never a pid number. The backend
 * gets it to tell whether a forcibly revoked holder can still reach the memory, and to stop or
 * kill it; the daemon watches it, and when the process exits its mapping is gone with it: a mapping
 * lives as long as the process that received the fd over the socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
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

static void holder_store(struct broker *b, const struct region *r, const holder_t *h, bool keep) {
        char name[BACKEND_FD_NAME_MAX + 1];

        if (!b->fd_store.keep || holder_store_name(r, h, name) < 0)
                return;
        if (keep)
                (void) b->fd_store.keep(b->fd_store.userdata, name, h->pidfd);
        else
                (void) b->fd_store.drop(b->fd_store.userdata, name);
}

static void holder_watch(struct broker *b, const struct region *r, holder_t *h) {
        if (b->watch_process && b->watch_process(b->watch_userdata, h->pidfd, &h->watch) < 0) {
                h->watch = NULL;
                log_region(LOG_WARNING, r->id, h->domain, NULL, "cannot watch the holder's process; its exit goes unseen");
        }
}

/* The pidfd closed and unwatched; the fd store keeps it (the broker stops, the holder does not). */
static void holder_close(struct broker *b, holder_t *h) {
        if (h->watch && b->unwatch_process)
                b->unwatch_process(b->watch_userdata, h->watch);
        h->watch = NULL;
        if (h->pidfd >= 0)
                close(h->pidfd);
        h->pidfd = -1;
}

void holder_track(struct broker *b, const struct region *r, holder_t *h, const struct broker_caller *caller) {
        int fd, q;

        if (!caller || caller->pidfd <= 0)
                return;
        holder_close(b, h); /* the store's copy is replaced below */
        /*
         * Under an fd store, an open file of its own: the store keeps one fd per open file, not
         * per holder. Without one, the connection's pidfd is as good and costs one call, not two.
         */
        q = b->fd_store.keep ? pidfd_reopen(caller->pidfd, caller->pid, &fd) : -EBADF;
        /* No store; or the process exited already (its watch fires at once), or no /proc. */
        if (q < 0)
                q = (fd = fcntl(caller->pidfd, F_DUPFD_CLOEXEC, 3)) < 0 ? negative_errno() : 0;
        if (q < 0) {
                log_region(LOG_WARNING, r->id, h->domain, NULL, "cannot keep the holder's pidfd: %s; its exit goes unseen",
                           strerror(-q));
                holder_store(b, r, h, false);
                return;
        }
        h->pidfd = fd;
        holder_store(b, r, h, true);
        holder_watch(b, r, h);
}

void holder_untrack(struct broker *b, const struct region *r, holder_t *h) {
        if (h->pidfd >= 0)
                holder_store(b, r, h, false);
        holder_close(b, h);
}

void region_untrack(struct broker *b, struct region *r) {
        for (size_t k = 0; k <= r->n_peers; k++)
                holder_untrack(b, r, &r->holders[k]);
}

void region_close_holders(struct broker *b, struct region *r) {
        for (size_t k = 0; k <= r->n_peers; k++)
                holder_close(b, &r->holders[k]);
}

void region_take_holders(struct broker *b, struct region *r) {
        char name[BACKEND_FD_NAME_MAX + 1];

        if (!b->fd_store.take)
                return;
        for (size_t k = 0; k <= r->n_peers; k++) {
                holder_t *h = &r->holders[k];
                int fd;

                /* A holder no longer mapped has no pidfd worth taking: the store drops it unclaimed. */
                if (!h->mapped || h->pidfd >= 0 || holder_store_name(r, h, name) < 0 ||
                    b->fd_store.take(b->fd_store.userdata, name, &fd) < 0)
                        continue;
                h->pidfd = fd;
                /* Already exited? The watch fires at once and the exit is handled as usual. */
                holder_watch(b, r, h);
        }
}

struct backend_holder backend_holder_of(const struct region *r, const holder_t *h) {
        return (struct backend_holder) {
                .domain = h->domain, .pidfd = h->pidfd,
                .forced = !holder_is_owner(r, h) && h->state == PEER_REVOKED,
        };
}

static bool holder_find(struct broker *b, int pidfd, struct region **ret_r, size_t *ret_k) {
        size_t it = 0;
        void *v;

        while (hashmap_iterate(b->regions, &it, &v)) {
                struct region *r = v;
                for (size_t k = 0; k <= r->n_peers; k++)
                        if (r->holders[k].pidfd == pidfd) {
                                *ret_r = r;
                                *ret_k = k;
                                return true;
                        }
        }
        return false;
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

int broker_process_exited(struct broker *b, int pidfd) {
        struct region *r = NULL;
        size_t k = 0;
        holder_t *h;
        int q;

        if (pidfd < 0 || !holder_find(b, pidfd, &r, &k))
                return 0;
        h = &r->holders[k];
        holder_untrack(b, r, h);
        log_region(LOG_INFO, r->id, h->domain, "broker", "%s", BROKER_REASON_HOLDER_EXITED);
        if (k == 0) {
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
                return peer_release(b, "broker", r, k - 1, BROKER_REASON_HOLDER_EXITED, NULL);
        if (h->mapped)
                return revoked_holder_exited(b, r, h);
        return 0;
}
