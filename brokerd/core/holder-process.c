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
#include <string.h>
#include <unistd.h>

#include "core/broker-internal.h"
#include "util/log.h"

void holder_track(struct broker *b, const struct region *r, holder_t *h, const struct broker_caller *caller) {
        int fd;

        if (!caller || caller->pidfd <= 0)
                return;
        holder_untrack(b, h);
        fd = fcntl(caller->pidfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0) {
                log_region(LOG_WARNING, r->id, h->domain, NULL, "cannot keep the holder's pidfd: %s; its exit goes unseen",
                           strerror(errno));
                return;
        }
        h->pidfd = fd;
        if (b->watch_process && b->watch_process(b->watch_userdata, fd, &h->watch) < 0) {
                h->watch = NULL;
                log_region(LOG_WARNING, r->id, h->domain, NULL, "cannot watch the holder's process; its exit goes unseen");
        }
}

void holder_untrack(struct broker *b, holder_t *h) {
        if (h->watch && b->unwatch_process)
                b->unwatch_process(b->watch_userdata, h->watch);
        h->watch = NULL;
        if (h->pidfd >= 0)
                close(h->pidfd);
        h->pidfd = -1;
}

void region_untrack(struct broker *b, struct region *r) {
        for (size_t k = 0; k <= r->n_peers; k++)
                holder_untrack(b, &r->holders[k]);
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
        holder_untrack(b, h);
        log_region(LOG_INFO, r->id, h->domain, "broker", "%s", BROKER_REASON_HOLDER_EXITED);
        if (k == 0) {
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
