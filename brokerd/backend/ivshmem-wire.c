/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connections of the ivshmem server: non-blocking sockets, each with a queue of (int64, fd)
 * messages sent one per sendmsg() (QEMU takes at most one fd per read and closes the rest).
 */
#include "backend/ivshmem-internal.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static struct ivshmem_msg *conn_msg(struct ivshmem_conn *c, size_t i) {
        return &c->queue[(c->head + i) % c->n_allocated];
}

static void conn_pop(struct ivshmem_conn *c) {
        struct ivshmem_msg *m = conn_msg(c, 0);

        if (m->fd >= 0)
                close(m->fd);
        c->head = (c->head + 1) % c->n_allocated;
        c->n_queue--;
}

void ivshmem_conn_clear(struct ivshmem_conn *c) {
        while (c->n_queue > 0)
                conn_pop(c);
}

static int send_one(int sock, const struct ivshmem_msg *m) {
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } control = {};
        int64_t le = (int64_t) htole64((uint64_t) m->value);
        struct iovec iov = { .iov_base = &le, .iov_len = sizeof(le) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (m->fd >= 0) {
                struct cmsghdr *cm;

                mh.msg_control = control.buf;
                mh.msg_controllen = sizeof(control.buf);
                cm = CMSG_FIRSTHDR(&mh);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(cm), &m->fd, sizeof(int));
        }
        n = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
                return negative_errno();
        /* A stream socket takes 8 bytes whole or not at all when it has room for them. */
        return n == (ssize_t) sizeof(le) ? 0 : -EIO;
}

/* Sends what the socket takes; watches for room when it takes no more. */
static int conn_flush(struct ivshmem_conn *c) {
        int k;

        while (c->n_queue > 0 && !c->paused) {
                k = send_one(c->fd, conn_msg(c, 0));
                if (k == -EAGAIN)
                        break;
                if (k < 0)
                        return k;
                c->fds_sent += conn_msg(c, 0)->fd >= 0;
                conn_pop(c);
        }
        return sd_event_source_set_io_events(c->io,
                                             EPOLLIN | EPOLLRDHUP | (c->n_queue > 0 && !c->paused ? EPOLLOUT : 0));
}

static int conn_lost(struct ivshmem_conn *c, enum ivshmem_departure why) {
        ivshmem_server_conn_lost(c->server, c, why);
        return 0;
}

static int on_conn_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct ivshmem_conn *c = userdata;
        char buf[64];

        (void) src;
        if (revents & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
                /* QEMU sends nothing; whatever comes is drained, and EOF ends the connection. */
                ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                        return conn_lost(c, IVSHMEM_GONE_CLOSED);
        }
        if (conn_flush(c) < 0)
                return conn_lost(c, IVSHMEM_GONE_CLOSED);
        return 0;
}

int ivshmem_conn_new(struct ivshmem_server *s, int fd, struct ivshmem_conn **ret) {
        struct ivshmem_conn *c = calloc(1, sizeof(*c));
        int k;

        if (!c)
                return -ENOMEM;
        c->server = s;
        c->fd = fd;
        k = sd_event_add_io(s->event, &c->io, fd, EPOLLIN | EPOLLRDHUP, on_conn_io, c);
        if (k < 0) {
                free(c);
                return k;
        }
        *ret = c;
        return 0;
}

void ivshmem_conn_free(struct ivshmem_conn *c) {
        if (!c)
                return;
        ivshmem_conn_clear(c);
        free(c->queue);
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->hold);
        if (c->fd >= 0)
                close(c->fd);
        free(c);
}

static int conn_grow(struct ivshmem_conn *c) {
        size_t n = c->n_allocated ? c->n_allocated * 2 : 16;
        struct ivshmem_msg *q = malloc(n * sizeof(*q));

        if (!q)
                return -ENOMEM;
        for (size_t i = 0; i < c->n_queue; i++)
                q[i] = *conn_msg(c, i);
        free(c->queue);
        c->queue = q;
        c->head = 0;
        c->n_allocated = n;
        return 0;
}

int ivshmem_conn_send(struct ivshmem_conn *c, int64_t value, int fd) {
        struct ivshmem_msg m = { .value = value, .fd = -EBADF };
        int k;

        if (c->n_queue >= c->server->max_queue)
                return -ENOBUFS;
        if (c->n_queue == c->n_allocated) {
                k = conn_grow(c);
                if (k < 0)
                        return k;
        }
        if (fd >= 0) {
                /* A copy of its own: the original may be closed (peer gone) before this is sent. */
                m.fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (m.fd < 0)
                        return negative_errno();
        }
        *conn_msg(c, c->n_queue) = m;
        c->n_queue++;
        /* Errors surface as EOF/HUP on the next loop iteration, where the connection is dropped. */
        (void) conn_flush(c);
        return 0;
}

static int on_hold_timeout(sd_event_source *src, uint64_t usec, void *userdata) {
        struct ivshmem_conn *c = userdata;

        (void) src, (void) usec;
        return conn_lost(c, IVSHMEM_GONE_CLOSED);
}

int ivshmem_conn_hold(struct ivshmem_conn *c) {
        struct ivshmem_server *s = c->server;
        uint64_t now;
        int k;

        if (c->hold)
                return 0;
        k = sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        if (k < 0)
                return k;
        return sd_event_add_time(s->event, &c->hold, CLOCK_MONOTONIC, now + s->hold_timeout_usec, 0,
                                 on_hold_timeout, c);
}

int ivshmem_conn_resume(struct ivshmem_conn *c) {
        c->paused = false;
        return conn_flush(c);
}
