/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ivshmem server: its socket, its lifetime, the caller's calls; peers and admission are in
 * ivshmem-peers.c, connections in ivshmem-wire.c.
 */
#include "backend/ivshmem-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/log.h"
#include "util/pidfd.h"

static const char *const refusal_names[_IVSHMEM_REFUSAL_MAX] = {
        [IVSHMEM_REFUSED_UNEXPECTED] = "unexpected",
        [IVSHMEM_REFUSED_NO_CREDENTIALS] = "no_credentials",
        [IVSHMEM_REFUSED_IDS_EXHAUSTED] = "ids_exhausted",
        [IVSHMEM_REFUSED_TOO_MANY_PEERS] = "too_many_peers",
        [IVSHMEM_REFUSED_RESOURCES] = "resources",
};
_Static_assert(ELEMENTSOF(refusal_names) == _IVSHMEM_REFUSAL_MAX, "refusal_names");

static const char *const departure_names[_IVSHMEM_DEPARTURE_MAX] = {
        [IVSHMEM_GONE_REMOVED] = "removed",
        [IVSHMEM_GONE_CLOSED] = "closed",
        [IVSHMEM_GONE_OVERFLOW] = "overflow",
};
_Static_assert(ELEMENTSOF(departure_names) == _IVSHMEM_DEPARTURE_MAX, "departure_names");

const char *ivshmem_refusal_to_string(enum ivshmem_refusal r) {
        return (unsigned) r < _IVSHMEM_REFUSAL_MAX ? refusal_names[r] : NULL;
}

const char *ivshmem_departure_to_string(enum ivshmem_departure d) {
        return (unsigned) d < _IVSHMEM_DEPARTURE_MAX ? departure_names[d] : NULL;
}

/* ---- the socket and the server ---- */

static int listen_socket(const char *path, gid_t gid, int *ret) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(closep) int fd = -EBADF;
        mode_t old;
        int k = 0;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        /* A stale socket from a previous run (SIGKILL leaves it): never anything else. */
        struct stat st;
        if (lstat(path, &st) == 0) {
                if (!S_ISSOCK(st.st_mode))
                        return -EEXIST;
                if (unlink(path) < 0)
                        return negative_errno();
        }
        /* Born with no access for anyone but us, widened once its owner is right. */
        old = umask(0177);
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                k = negative_errno();
        umask(old);
        if (k < 0)
                return k;
        if ((geteuid() == 0 && chown(path, 0, gid) < 0) || chmod(path, 0660) < 0 || listen(fd, 16) < 0) {
                k = negative_errno();
                (void) unlink(path);
                return k;
        }
        *ret = TAKE_FD(fd);
        return 0;
}

static bool fd_name_is_valid(const char *s) {
        size_t n = s ? strlen(s) : 0;

        if (n == 0 || n > IVSHMEM_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", s[i]))
                        return false;
        return true;
}

static int config_check(const struct ivshmem_server_config *c) {
        struct stat st;

        if (!fd_name_is_valid(c->name) || !c->socket_path || c->socket_path[0] != '/' || c->memfd < 0 ||
            c->vectors < 1 || c->vectors > IVSHMEM_VECTORS_MAX || c->next_id > IVSHMEM_ID_LIMIT)
                return -EINVAL;
        if (fstat(c->memfd, &st) < 0)
                return negative_errno();
        /* QEMU asserts on a BAR that is not a power of two, and aborts (trap 4). */
        if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (st.st_size & (st.st_size - 1)) != 0)
                return -EINVAL;
        return 0;
}

int ivshmem_server_alloc(sd_event *e, const struct ivshmem_server_config *c, struct ivshmem_server **ret) {
        _cleanup_(ivshmem_server_freep) struct ivshmem_server *s = NULL;
        int k;

        if (!e || !c || !ret)
                return -EINVAL;
        k = config_check(c);
        if (k < 0)
                return k;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->listen_fd = s->memfd = -EBADF;
        s->event = sd_event_ref(e);
        snprintf(s->name, sizeof(s->name), "%s", c->name);
        s->vectors = c->vectors;
        s->next_id = c->next_id;
        s->quiet_departures = c->quiet_departures;
        s->hold_timeout_usec = c->hold_timeout_usec ? c->hold_timeout_usec : IVSHMEM_HOLD_TIMEOUT_USEC_DEFAULT;
        s->max_connections = c->max_connections ? c->max_connections : IVSHMEM_MAX_CONNECTIONS_DEFAULT;
        s->max_queue = c->max_queue ? c->max_queue : IVSHMEM_MAX_QUEUE_DEFAULT;
        s->cb = c->callbacks;
        s->conns = calloc(s->max_connections, sizeof(*s->conns));
        s->socket_path = strdup(c->socket_path);
        if (!s->conns || !s->socket_path)
                return -ENOMEM;
        s->memfd = fcntl(c->memfd, F_DUPFD_CLOEXEC, 3);
        if (s->memfd < 0)
                return negative_errno();
        *ret = TAKE_PTR(s);
        return 0;
}

int ivshmem_server_listen(struct ivshmem_server *s, int listen_fd, gid_t gid) {
        int k;

        if (listen_fd < 0) {
                k = listen_socket(s->socket_path, gid, &listen_fd);
                if (k < 0)
                        return k;
        }
        s->listen_fd = listen_fd;
        return sd_event_add_io(s->event, &s->listen_io, s->listen_fd, EPOLLIN, ivshmem_server_on_accept, s);
}

int ivshmem_server_new(sd_event *e, const struct ivshmem_server_config *c, struct ivshmem_server **ret) {
        _cleanup_(ivshmem_server_freep) struct ivshmem_server *s = NULL;
        int k;

        k = ivshmem_server_alloc(e, c, &s);
        if (k >= 0)
                k = ivshmem_server_listen(s, -EBADF, c->socket_gid);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(s);
        return 0;
}

static void server_close(struct ivshmem_server *s, bool unlink_socket) {
        sd_event_source_disable_unref(s->listen_io);
        s->listen_io = NULL;
        while (s->n_conns > 0) {
                struct ivshmem_conn *c = s->conns[--s->n_conns];
                if (c->peer)
                        c->peer->conn = NULL;
                ivshmem_conn_free(c);
        }
        for (size_t i = 0; i < s->n_peers; i++)
                ivshmem_peer_free(s, s->peers[i]);
        while (s->n_expects > 0)
                ivshmem_expect_drop(s, s->n_expects - 1);
        if (s->listen_fd >= 0) {
                close(s->listen_fd);
                if (unlink_socket)
                        (void) unlink(s->socket_path);
        }
        if (s->memfd >= 0)
                close(s->memfd);
        free(s->socket_path);
        free(s->conns);
        free(s->peers);
        free(s->expects);
        sd_event_unref(s->event);
        free(s);
}

void ivshmem_server_free(struct ivshmem_server *s) {
        if (s)
                server_close(s, true);
}

void ivshmem_server_abandon(struct ivshmem_server *s) {
        if (s)
                server_close(s, false);
}

int ivshmem_server_expect(struct ivshmem_server *s, const char *domain, pid_t pid, int pidfd) {
        struct ivshmem_expect *x, *xs;
        int fd = -EBADF;

        if (!name_is_valid(domain) || (pidfd < 0 && pid <= 0))
                return -EINVAL;
        if (ivshmem_peer_find_domain(s, domain))
                return -EEXIST;
        for (size_t i = 0; i < s->n_expects; i++)
                if (streq_ptr(s->expects[i].domain, domain))
                        return -EEXIST;
        xs = realloc(s->expects, (s->n_expects + 1) * sizeof(*xs));
        if (!xs)
                return -ENOMEM;
        s->expects = xs;
        if (pidfd >= 0) {
                fd = fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        return negative_errno();
        }
        x = &s->expects[s->n_expects++];
        *x = (struct ivshmem_expect) { .pid = pidfd >= 0 ? 0 : pid, .pidfd = fd };
        snprintf(x->domain, sizeof(x->domain), "%s", domain);
        return 0;
}

int ivshmem_server_unexpect(struct ivshmem_server *s, const char *domain) {
        for (size_t i = 0; i < s->n_expects; i++)
                if (streq_ptr(s->expects[i].domain, domain)) {
                        ivshmem_expect_drop(s, i);
                        return 0;
                }
        return -ENOENT;
}

int ivshmem_server_remove_peer(struct ivshmem_server *s, uint16_t id, enum ivshmem_departure reason) {
        struct ivshmem_peer *p = ivshmem_peer_find(s, id);

        if ((unsigned) reason >= _IVSHMEM_DEPARTURE_MAX)
                return -EINVAL;
        if (!p)
                return -ENOENT;
        ivshmem_peer_depart(s, p, reason);
        return 0;
}

int ivshmem_server_ring(struct ivshmem_server *s, uint16_t id, unsigned vector) {
        struct ivshmem_peer *p = ivshmem_peer_find(s, id);
        uint64_t one = 1;

        if (!p)
                return -ENOENT;
        if (vector >= s->vectors)
                return -EINVAL;
        /* EAGAIN: the counter is saturated, so the guest has a wake-up pending anyway. */
        if (write(p->eventfds[vector], &one, sizeof(one)) < 0 && errno != EAGAIN)
                return negative_errno();
        return 0;
}

int ivshmem_server_peer_eventfds(struct ivshmem_server *s, uint16_t id, int *ret_fds, unsigned n) {
        struct ivshmem_peer *p = ivshmem_peer_find(s, id);
        unsigned v;

        if (!p)
                return -ENOENT;
        if (n != s->vectors)
                return -EINVAL;
        for (v = 0; v < n; v++) {
                ret_fds[v] = fcntl(p->eventfds[v], F_DUPFD_CLOEXEC, 3);
                if (ret_fds[v] < 0) {
                        int k = negative_errno();
                        while (v > 0)
                                close(ret_fds[--v]);
                        return k;
                }
        }
        return 0;
}

int ivshmem_server_pause_domain(struct ivshmem_server *s, const char *domain, bool pause) {
        struct ivshmem_peer *p = ivshmem_peer_find_domain(s, domain);

        if (!p || !p->conn)
                return -ENOENT;
        if (pause)
                p->conn->paused = true;
        else if (p->conn->paused)
                return ivshmem_conn_resume(p->conn);
        return 0;
}

int ivshmem_server_peer_fds_sent(struct ivshmem_server *s, uint16_t id, size_t *ret) {
        struct ivshmem_peer *p = ivshmem_peer_find(s, id);

        if (!p || !p->conn)
                return -ENOENT;
        *ret = p->conn->fds_sent;
        return 0;
}

int ivshmem_server_peer_id(struct ivshmem_server *s, const char *domain, uint16_t *ret) {
        struct ivshmem_peer *p = ivshmem_peer_find_domain(s, domain);

        if (!p)
                return -ENOENT;
        *ret = p->id;
        return 0;
}

int ivshmem_server_peer_queued(struct ivshmem_server *s, uint16_t id, size_t *ret) {
        struct ivshmem_peer *p = ivshmem_peer_find(s, id);

        if (!p)
                return -ENOENT;
        *ret = p->conn->n_queue;
        return 0;
}

uint32_t ivshmem_server_next_id(const struct ivshmem_server *s) {
        return s->next_id;
}

size_t ivshmem_server_n_peers(const struct ivshmem_server *s) {
        return s->n_peers;
}

int ivshmem_server_peer_at(struct ivshmem_server *s, size_t i, uint16_t *ret_id, const char **ret_domain) {
        if (i >= s->n_peers)
                return -ENOENT;
        if (ret_id)
                *ret_id = s->peers[i]->id;
        if (ret_domain)
                *ret_domain = s->peers[i]->domain;
        return 0;
}
