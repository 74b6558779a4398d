/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Surviving a restart of brokerd: every fd the server holds, by name, for the fd store; and a
 * server rebuilt from those fds and the persisted peer table, so that the QEMUs' connections,
 * which never reconnect, stay served.
 */
#include "backend/ivshmem-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* "<server name>-<suffix>": the fd store's name for one of the server's fds. */
static void fd_name(const struct ivshmem_server *s, char *buf, size_t len, const char *fmt, ...) _printf_(4, 5);
static void fd_name(const struct ivshmem_server *s, char *buf, size_t len, const char *fmt, ...) {
        char suffix[32];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(suffix, sizeof(suffix), fmt, ap);
        va_end(ap);
        snprintf(buf, len, "%s-%s", s->name, suffix);
}

#define FD_NAME_LEN (IVSHMEM_NAME_MAX + 64)

int ivshmem_server_export_fds(struct ivshmem_server *s, ivshmem_fd_fn fn, void *userdata) {
        char name[FD_NAME_LEN];
        int k;

        fd_name(s, name, sizeof(name), "listen");
        k = fn(userdata, name, s->listen_fd);
        if (k >= 0) {
                fd_name(s, name, sizeof(name), "mem");
                k = fn(userdata, name, s->memfd);
        }
        for (size_t i = 0; k >= 0 && i < s->n_peers; i++) {
                const struct ivshmem_peer *p = s->peers[i];
                fd_name(s, name, sizeof(name), "p%u-conn", p->id);
                k = fn(userdata, name, p->conn->fd);
                if (k >= 0 && p->pidfd >= 0) {
                        fd_name(s, name, sizeof(name), "p%u-pid", p->id);
                        k = fn(userdata, name, p->pidfd);
                }
                for (unsigned v = 0; k >= 0 && v < s->vectors; v++) {
                        fd_name(s, name, sizeof(name), "p%u-v%u", p->id, v);
                        k = fn(userdata, name, p->eventfds[v]);
                }
        }
        return k < 0 ? k : 0;
}

static int take_fd(struct ivshmem_server *s, ivshmem_take_fn take, void *userdata, int *ret, const char *fmt, ...)
        _printf_(5, 6);
static int take_fd(struct ivshmem_server *s, ivshmem_take_fn take, void *userdata, int *ret, const char *fmt, ...) {
        char name[FD_NAME_LEN], suffix[32];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(suffix, sizeof(suffix), fmt, ap);
        va_end(ap);
        fd_name(s, name, sizeof(name), "%s", suffix);
        return take(userdata, name, ret);
}

/* One peer back from its fds: 0, or -ENOENT when one of them did not come back (it is lost). */
static int restore_peer(struct ivshmem_server *s, const struct ivshmem_peer_record *r, ivshmem_take_fn take,
                        void *userdata) {
        _cleanup_(closep) int conn_fd = -EBADF;
        struct ivshmem_peer *p = NULL;
        struct ivshmem_conn *c;
        int k, flags;

        k = ivshmem_peer_new(s, r->domain, false, &p);
        if (k < 0)
                return k;
        p->id = r->id;
        k = take_fd(s, take, userdata, &conn_fd, "p%u-conn", r->id);
        for (unsigned v = 0; k >= 0 && v < s->vectors; v++)
                k = take_fd(s, take, userdata, &p->eventfds[v], "p%u-v%u", r->id, v);
        /* The pidfd is for the record; a peer is served without it. */
        if (k >= 0 && take_fd(s, take, userdata, &p->pidfd, "p%u-pid", r->id) < 0)
                p->pidfd = -EBADF;
        if (k >= 0) {
                flags = fcntl(conn_fd, F_GETFL);
                if (flags < 0 || fcntl(conn_fd, F_SETFL, flags | O_NONBLOCK) < 0)
                        k = negative_errno();
        }
        if (k >= 0)
                k = ivshmem_conn_new(s, conn_fd, &c);
        if (k < 0) {
                ivshmem_peer_free(s, p);
                return k;
        }
        TAKE_FD(conn_fd);
        c->peer = p;
        p->conn = c;
        s->conns[s->n_conns++] = c;
        s->peers[s->n_peers++] = p;
        return 0;
}

static int records_check(const struct ivshmem_server_config *c, const struct ivshmem_peer_record *peers,
                         size_t n_peers) {
        unsigned max = c->max_connections ? c->max_connections : IVSHMEM_MAX_CONNECTIONS_DEFAULT;

        if (n_peers > max || (n_peers > 0 && !peers))
                return -EINVAL;
        for (size_t i = 0; i < n_peers; i++)
                /* In id order, and below the high-water mark: ids are never reissued. */
                if (!name_is_valid(peers[i].domain) || peers[i].id >= c->next_id ||
                    (i > 0 && peers[i].id <= peers[i - 1].id))
                        return -EINVAL;
        return 0;
}

int ivshmem_server_restore(sd_event *e, const struct ivshmem_server_config *c,
                           const struct ivshmem_peer_record *peers, size_t n_peers, ivshmem_take_fn take,
                           void *userdata, struct ivshmem_server **ret) {
        _cleanup_(ivshmem_server_freep) struct ivshmem_server *s = NULL;
        _cleanup_(xfreep) size_t *lost = NULL;
        size_t n_lost = 0;
        int listen_fd = -EBADF, k;

        if (!c || !take || !ret)
                return -EINVAL;
        k = records_check(c, peers, n_peers);
        if (k >= 0)
                k = ivshmem_server_alloc(e, c, &s);
        if (k < 0)
                return k;
        s->peers = calloc(n_peers + 1, sizeof(*s->peers));
        lost = calloc(n_peers + 1, sizeof(*lost));
        if (!s->peers || !lost)
                return -ENOMEM;
        for (size_t i = 0; i < n_peers; i++) {
                k = restore_peer(s, &peers[i], take, userdata);
                if (k == -ENOENT || k == -EBADF)
                        lost[n_lost++] = i;
                else if (k < 0)
                        return k;
        }
        /* The old listening socket, if it came back: its path still names it (abandon() left it). */
        if (take_fd(s, take, userdata, &listen_fd, "listen") < 0)
                listen_fd = -EBADF;
        k = ivshmem_server_listen(s, listen_fd, c->socket_gid);
        if (k < 0) {
                if (s->listen_fd < 0 && listen_fd >= 0)
                        close(listen_fd);
                return k;
        }
        /* A peer that did not come back is gone for the others, whose QEMUs still hold its eventfds. */
        for (size_t i = 0; i < n_lost; i++) {
                const struct ivshmem_peer_record *r = &peers[lost[i]];
                for (size_t j = 0; j < s->n_peers && !s->quiet_departures; j++)
                        (void) ivshmem_conn_send(s->peers[j]->conn, r->id, -1);
                if (s->cb.gone)
                        s->cb.gone(s->cb.userdata, r->id, r->domain, IVSHMEM_GONE_CLOSED);
        }
        *ret = TAKE_PTR(s);
        return 0;
}
