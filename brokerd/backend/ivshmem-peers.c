/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ivshmem server's peers: admission from memory in the accept handler, refusal by "-1 and
 * hold", the peer table and its ids, and departures (peer-gone to the others).
 */
#include "backend/ivshmem-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/log.h"
#include "util/pidfd.h"

/* ---- the peer table ---- */

struct ivshmem_peer *ivshmem_peer_find(struct ivshmem_server *s, uint16_t id) {
        for (size_t i = 0; i < s->n_peers; i++)
                if (s->peers[i]->id == id)
                        return s->peers[i];
        return NULL;
}

struct ivshmem_peer *ivshmem_peer_find_domain(struct ivshmem_server *s, const char *domain) {
        for (size_t i = 0; i < s->n_peers; i++)
                if (streq_ptr(s->peers[i]->domain, domain))
                        return s->peers[i];
        return NULL;
}

void ivshmem_peer_free(struct ivshmem_server *s, struct ivshmem_peer *p) {
        if (!p)
                return;
        for (unsigned v = 0; p->eventfds && v < s->vectors; v++)
                if (p->eventfds[v] >= 0)
                        close(p->eventfds[v]);
        free(p->eventfds);
        if (p->pidfd >= 0)
                close(p->pidfd);
        free(p);
}

static void peer_unlink(struct ivshmem_server *s, struct ivshmem_peer *p) {
        for (size_t i = 0; i < s->n_peers; i++)
                if (s->peers[i] == p) {
                        memmove(s->peers + i, s->peers + i + 1, (s->n_peers - i - 1) * sizeof(*s->peers));
                        s->n_peers--;
                        return;
                }
}

static void conn_unlink(struct ivshmem_server *s, struct ivshmem_conn *c) {
        for (size_t i = 0; i < s->n_conns; i++)
                if (s->conns[i] == c) {
                        s->conns[i] = s->conns[--s->n_conns];
                        if (s->listen_io)
                                (void) sd_event_source_set_enabled(s->listen_io, SD_EVENT_ON);
                        return;
                }
}

static void drop_overflowed(struct ivshmem_server *s);

/* Takes p out of the table: peer-gone to the others, its eventfds closed, its connection held. */
void ivshmem_peer_depart(struct ivshmem_server *s, struct ivshmem_peer *p, enum ivshmem_departure why) {
        char domain[sizeof(p->domain)];
        uint16_t id = p->id;

        peer_unlink(s, p);
        if (p->conn) {
                /* What was queued for it (other peers' eventfds among them) never reaches it. */
                ivshmem_conn_clear(p->conn);
                p->conn->peer = NULL;
                if (ivshmem_conn_hold(p->conn) < 0) {
                        conn_unlink(s, p->conn);
                        ivshmem_conn_free(p->conn);
                }
        }
        for (size_t i = 0; i < s->n_peers && !s->quiet_departures; i++)
                if (ivshmem_conn_send(s->peers[i]->conn, id, -1) < 0)
                        s->peers[i]->overflowed = true;
        memcpy(domain, p->domain, sizeof(domain));
        ivshmem_peer_free(s, p);
        log_debug("ivshmem %s: peer %u (%s) gone: %s", s->name, id, domain, ivshmem_departure_to_string(why));
        if (s->cb.gone)
                s->cb.gone(s->cb.userdata, id, domain, why);
        drop_overflowed(s);
}

/*
 * Peers whose queue passed the limit stopped reading: they leave the group (their connection is
 * held, not closed). Done after a broadcast, as each departure is a broadcast of its own.
 */
static void drop_overflowed(struct ivshmem_server *s) {
        for (size_t i = 0; i < s->n_peers; i++)
                if (s->peers[i]->overflowed) {
                        ivshmem_peer_depart(s, s->peers[i], IVSHMEM_GONE_OVERFLOW);
                        return;
                }
}

void ivshmem_server_conn_lost(struct ivshmem_server *s, struct ivshmem_conn *c, enum ivshmem_departure why) {
        if (c->peer) {
                c->peer->conn = NULL;
                ivshmem_peer_depart(s, c->peer, why);
        }
        conn_unlink(s, c);
        ivshmem_conn_free(c);
}

/* ---- admission ---- */

static void refuse(struct ivshmem_server *s, struct ivshmem_conn *c, pid_t pid, uid_t uid, enum ivshmem_refusal why) {
        log_notice("ivshmem %s: refused pid %d uid %d: %s", s->name, (int) pid, (int) uid,
                   ivshmem_refusal_to_string(why));
        /* -1 as the version: QEMU fails realize cleanly, and closes the socket itself (trap 2). */
        if (ivshmem_conn_send(c, -1, -1) < 0 || ivshmem_conn_hold(c) < 0) {
                conn_unlink(s, c);
                ivshmem_conn_free(c);
        }
        if (s->cb.refused)
                s->cb.refused(s->cb.userdata, pid, uid, why);
}

/*
 * The expectation the peer (its pid, its pidfd taken at accept) meets, or -1. A pidfd
 * expectation matches only while both pidfds name the same live pid: the pid cannot have been
 * reused while the expected process lives.
 */
static ssize_t expect_match(struct ivshmem_server *s, pid_t pid, int peer_pidfd) {
        pid_t now;

        if (pidfd_pid(peer_pidfd, &now) < 0 || now != pid)
                return -1;
        for (size_t i = 0; i < s->n_expects; i++) {
                struct ivshmem_expect *x = &s->expects[i];
                pid_t xpid;

                if (x->pidfd < 0) {
                        if (x->pid == pid)
                                return (ssize_t) i;
                } else if (pidfd_pid(x->pidfd, &xpid) == 0 && xpid == pid && pidfd_exited(x->pidfd) == 0)
                        return (ssize_t) i;
        }
        return -1;
}

void ivshmem_expect_drop(struct ivshmem_server *s, size_t i) {
        if (s->expects[i].pidfd >= 0)
                close(s->expects[i].pidfd);
        s->expects[i] = s->expects[--s->n_expects];
}

int ivshmem_peer_new(struct ivshmem_server *s, const char *domain, bool make_eventfds, struct ivshmem_peer **ret) {
        struct ivshmem_peer *p = calloc(1, sizeof(*p));

        if (!p)
                return -ENOMEM;
        p->pidfd = -EBADF;
        p->eventfds = malloc(s->vectors * sizeof(int));
        if (!p->eventfds) {
                free(p);
                return -ENOMEM;
        }
        for (unsigned v = 0; v < s->vectors; v++)
                p->eventfds[v] = -EBADF;
        for (unsigned v = 0; make_eventfds && v < s->vectors; v++) {
                p->eventfds[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (p->eventfds[v] < 0) {
                        int k = negative_errno();
                        ivshmem_peer_free(s, p);
                        return k;
                }
        }
        snprintf(p->domain, sizeof(p->domain), "%s", domain);
        *ret = p;
        return 0;
}

static int peer_send_vectors(struct ivshmem_conn *to, const struct ivshmem_peer *p, unsigned vectors) {
        for (unsigned v = 0; v < vectors; v++) {
                int k = ivshmem_conn_send(to, p->id, p->eventfds[v]);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* The whole setup for p, queued at once; then p's vectors to every other peer. */
static int peer_setup(struct ivshmem_server *s, struct ivshmem_peer *p) {
        int k;

        k = ivshmem_conn_send(p->conn, 0, -1);
        if (k >= 0)
                k = ivshmem_conn_send(p->conn, p->id, -1);
        if (k >= 0)
                k = ivshmem_conn_send(p->conn, -1, s->memfd);
        if (k >= 0)
                k = peer_send_vectors(p->conn, p, s->vectors);
        for (size_t i = 0; k >= 0 && i < s->n_peers; i++)
                k = peer_send_vectors(p->conn, s->peers[i], s->vectors);
        if (k < 0)
                return k;
        for (size_t i = 0; i < s->n_peers; i++)
                if (peer_send_vectors(s->peers[i]->conn, p, s->vectors) < 0)
                        s->peers[i]->overflowed = true;
        /* Ids only grow, so appending keeps the table in id order. */
        s->peers[s->n_peers++] = p;
        drop_overflowed(s);
        return 0;
}

static int admit(struct ivshmem_server *s, struct ivshmem_conn *c, size_t x, int pidfd, enum ivshmem_refusal *why) {
        struct ivshmem_peer *p = NULL;
        struct ivshmem_peer **peers;
        int k;

        *why = IVSHMEM_REFUSED_IDS_EXHAUSTED;
        if (s->next_id >= IVSHMEM_ID_LIMIT)
                return -ENOSPC;
        *why = IVSHMEM_REFUSED_TOO_MANY_PEERS;
        if (3 + (size_t) s->vectors * (s->n_peers + 1) > s->max_queue)
                return -ENOSPC;
        *why = IVSHMEM_REFUSED_RESOURCES;
        peers = realloc(s->peers, (s->n_peers + 1) * sizeof(*peers));
        if (!peers)
                return -ENOMEM;
        s->peers = peers;
        k = ivshmem_peer_new(s, s->expects[x].domain, true, &p);
        if (k < 0)
                return k;
        p->pidfd = pidfd;
        p->id = (uint16_t) s->next_id;
        p->conn = c;
        c->peer = p;
        k = peer_setup(s, p);
        if (k < 0) {
                c->peer = NULL;
                ivshmem_conn_clear(c);
                p->pidfd = -EBADF; /* still the caller's */
                ivshmem_peer_free(s, p);
                return k;
        }
        /* Issued even if the peer leaves at once: ids are never reissued. */
        s->next_id++;
        ivshmem_expect_drop(s, x);
        log_info("ivshmem %s: admitted %s as peer %u", s->name, p->domain, p->id);
        if (s->cb.joined)
                s->cb.joined(s->cb.userdata, p->id, p->domain);
        return 0;
}

static void serve_connection(struct ivshmem_server *s, struct ivshmem_conn *c) {
        struct ucred cred = { .pid = 0, .uid = (uid_t) -1 };
        socklen_t len = sizeof(cred);
        _cleanup_(closep) int pidfd = -EBADF;
        enum ivshmem_refusal why = IVSHMEM_REFUSED_NO_CREDENTIALS;
        ssize_t x;

        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid <= 0 ||
            pidfd_of_peer(c->fd, cred.pid, &pidfd) < 0) {
                refuse(s, c, cred.pid, cred.uid, why);
                return;
        }
        x = expect_match(s, cred.pid, pidfd);
        if (x < 0) {
                refuse(s, c, cred.pid, cred.uid, IVSHMEM_REFUSED_UNEXPECTED);
                return;
        }
        if (admit(s, c, (size_t) x, pidfd, &why) < 0) {
                refuse(s, c, cred.pid, cred.uid, why);
                return;
        }
        TAKE_FD(pidfd);
}

int ivshmem_server_on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct ivshmem_server *s = userdata;
        struct ivshmem_conn *c;
        int cfd, k;

        (void) src, (void) revents;
        cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0)
                return 0;
        k = ivshmem_conn_new(s, cfd, &c);
        if (k < 0) {
                close(cfd);
                return 0;
        }
        s->conns[s->n_conns++] = c;
        /*
         * At the limit, stop accepting rather than close anyone: EOF would wedge a QEMU in realize,
         * while a full backlog fails its connect (chardev-add) cleanly.
         */
        if (s->n_conns >= s->max_connections)
                (void) sd_event_source_set_enabled(s->listen_io, SD_EVENT_OFF);
        serve_connection(s, c);
        return 0;
}
