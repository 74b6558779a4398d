/* SPDX-License-Identifier: Apache-2.0 */
/* One connection: reading lines, the output queue, and closing. */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc/server-internal.h"
#include "util/hashmap.h"

#define INPUT_MIN_ALLOC 4096

void rpc_connection_undelivered(struct rpc_connection *c, struct rpc_delivery *d) {
        struct rpc_delivery **tail = &c->undelivered;

        while (*tail)
                tail = &(*tail)->next;
        *tail = d;
}

static bool output_held(const struct rpc_connection *c) {
        const struct rpc_server *s = c->server;

        return s->output_gate && !s->output_gate(s->gate_userdata);
}

static void connection_update_events(struct rpc_connection *c) {
        uint32_t events = 0;

        if (c->closed)
                return;
        if (!c->eof && !c->closing)
                events |= EPOLLIN;
        /* Held output waits for rpc_server_flush(), not for the socket. */
        if (c->out_head && !output_held(c))
                events |= EPOLLOUT;
        if (events == c->events)
                return;
        if (epoll_ctl(c->server->epoll_fd, EPOLL_CTL_MOD, c->fd,
                      &(struct epoll_event) { .events = events, .data.ptr = c }) < 0) {
                rpc_connection_close(c, false);
                return;
        }
        c->events = events;
}

static void out_line_close_fds(struct rpc_server *s, struct rpc_out_line *l) {
        (void) rpc_fds_close_owned(l->fds, l->lent, l->n_fds);
        if (l->n_lent > 0)
                s->n_lent_lines--;
        free(l->fds);
        l->fds = NULL;
        l->lent = NULL;
        l->n_fds = l->n_lent = 0;
}

void rpc_server_keep_lent(struct lent_fd_borrower *b, int fd) {
        struct rpc_server *s = (struct rpc_server *) ((char *) b - offsetof(struct rpc_server, borrower));

        if (s->building && !s->building_c->closed &&
            rpc_fds_keep(s->building->fds, s->building->lent, s->building->n, &s->building->n_lent, fd) < 0)
                rpc_connection_close(s->building_c, false);
        for (struct rpc_connection *c = s->connections, *next; c && s->n_lent_lines > 0; c = next) {
                bool failed = false;

                next = c->next;
                for (struct rpc_out_line *l = c->out_head; l && !failed; l = l->next) {
                        if (l->n_lent == 0)
                                continue;
                        failed = rpc_fds_keep(l->fds, l->lent, l->n_fds, &l->n_lent, fd) < 0;
                        if (l->n_lent == 0)
                                s->n_lent_lines--;
                }
                /* Its reply cannot be sent whole: lost to the peer, like a write that fails. */
                if (failed)
                        rpc_connection_close(c, false);
        }
}

/* Lines written by one sendmsg(): the first, with its fds, and the fd-less ones after it. */
#define RPC_FLUSH_LINES_MAX 64

/*
 * The first line (from where it stopped) and as many lines after it as carry no fds, in one
 * sendmsg(): held output (group sync) is often many notifications to one subscriber. A later
 * line's fds must go with its own first byte, so a line with fds starts the next call.
 */
static int sendmsg_lines(int fd, struct rpc_out_line *l) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * RPC_MAX_FDS_PER_LINE)];
        } control;
        struct iovec iov[RPC_FLUSH_LINES_MAX];
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 0 };
        ssize_t n;

        for (const struct rpc_out_line *x = l; x && mh.msg_iovlen < RPC_FLUSH_LINES_MAX; x = x->next) {
                if (x != l && x->n_fds > 0)
                        break;
                iov[mh.msg_iovlen++] = (struct iovec) { .iov_base = (char *) x->data + x->written,
                                                        .iov_len = x->size - x->written };
        }

        if (l->n_fds > 0) {
                struct cmsghdr *cmsg;

                memset(&control, 0, sizeof(control));
                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * l->n_fds);
                cmsg = CMSG_FIRSTHDR(&mh);
                cmsg->cmsg_level = SOL_SOCKET;
                cmsg->cmsg_type = SCM_RIGHTS;
                cmsg->cmsg_len = CMSG_LEN(sizeof(int) * l->n_fds);
                memcpy(CMSG_DATA(cmsg), l->fds, sizeof(int) * l->n_fds);
        }
        n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        return n < 0 ? -errno : (int) n;
}

static int connection_flush(struct rpc_connection *c) {
        struct rpc_out_line *l;

        /* Held stops it too: then the next line queued asks the gate again (it may open). */
        while (!(c->held = output_held(c)) && (l = c->out_head)) {
                int n = sendmsg_lines(c->fd, l);

                if (n == -EINTR)
                        continue;
                if (n == -EAGAIN)
                        break;
                if (n < 0) {
                        rpc_connection_close(c, false);
                        return n;
                }
                /* The fds went with the first byte: the peer has its own copies now. */
                out_line_close_fds(c->server, l);
                for (size_t left = (size_t) n; left > 0 && (l = c->out_head);) {
                        size_t take = l->size - l->written < left ? l->size - l->written : left;

                        l->written += take;
                        c->out_pending -= take;
                        left -= take;
                        if (l->written < l->size)
                                break;
                        c->out_head = l->next;
                        if (!c->out_head)
                                c->out_tail = &c->out_head;
                        /* Whole in the socket: delivered, whatever the peer does next. */
                        rpc_delivery_free_all(l->deliveries);
                        free(l);
                }
        }
        connection_update_events(c);
        return 0;
}

void rpc_server_flush(struct rpc_server *s) {
        struct rpc_connection *c, *next;

        for (c = s->connections; c; c = next) {
                next = c->next;
                if (c->closed || !c->out_head || connection_flush(c) < 0 || c->closed)
                        continue;
                /* A peer that said all it had waited only for its replies. */
                if ((c->eof || c->closing) && !c->out_head)
                        rpc_connection_close(c, false);
        }
}

bool rpc_server_has_output(const struct rpc_server *s) {
        for (const struct rpc_connection *c = s->connections; c; c = c->next)
                if (!c->closed && c->out_head)
                        return true;
        return false;
}

static struct rpc_out_line *out_line_new(struct json_object *msg) {
        struct rpc_out_line *l;
        const char *str;
        size_t len;

        str = json_object_to_json_string_length(msg, RPC_JSON_FLAGS, &len);
        if (!str || len > SIZE_MAX - sizeof(*l) - 1)
                return NULL;
        l = malloc(sizeof(*l) + len + 1);
        if (!l)
                return NULL;
        memcpy(l->data, str, len);
        l->data[len] = '\n';
        l->size = len + 1;
        l->written = 0;
        l->next = NULL;
        l->fds = NULL;
        l->lent = NULL;
        l->n_fds = l->n_lent = 0;
        l->deliveries = NULL;
        return l;
}

int rpc_connection_queue(struct rpc_connection *c, struct json_object *msg, struct rpc_reply_fds *fds,
                         struct rpc_delivery *deliveries) {
        struct rpc_server *s = c->server;
        size_t n_fds = fds ? fds->n : 0;
        struct rpc_out_line *l;
        bool was_empty;

        if (c->closed) {
                if (fds)
                        rpc_reply_fds_truncate(fds, 0);
                rpc_connection_undelivered(c, deliveries);
                return -ECONNRESET;
        }
        l = out_line_new(msg);
        if (l && n_fds > 0) {
                l->fds = malloc(n_fds * (sizeof(int) + sizeof(bool)));
                if (!l->fds) {
                        free(l);
                        l = NULL;
                }
        }
        if (!l) {
                if (fds)
                        rpc_reply_fds_truncate(fds, 0);
                rpc_connection_undelivered(c, deliveries);
                rpc_connection_close(c, false);
                return -ENOMEM;
        }
        if (n_fds > 0) {
                l->lent = (bool *) (l->fds + n_fds);
                memcpy(l->fds, fds->fds, n_fds * sizeof(int));
                memcpy(l->lent, fds->lent, n_fds * sizeof(bool));
                l->n_fds = n_fds;
                l->n_lent = fds->n_lent;
                s->n_lent_lines += l->n_lent > 0;
                fds->n = fds->n_lent = 0; /* the line's now */
        }
        l->deliveries = deliveries;

        was_empty = !c->out_head;
        *c->out_tail = l;
        c->out_tail = &l->next;
        c->out_pending += l->size;

        /* Behind a full socket, the next EPOLLOUT writes it; behind the gate, try now. */
        if ((was_empty || c->held) && connection_flush(c) < 0)
                return -ECONNRESET;
        if (c->out_pending > s->limits.max_pending_bytes) {
                rpc_connection_close(c, true);
                return -ENOBUFS;
        }
        connection_update_events(c);
        return 0;
}

/* Every line still queued is at best partly written: its results never arrive. */
static void connection_drop_output(struct rpc_connection *c) {
        struct rpc_out_line *l;

        while ((l = c->out_head)) {
                c->out_head = l->next;
                out_line_close_fds(c->server, l);
                rpc_connection_undelivered(c, l->deliveries);
                free(l);
        }
        c->out_tail = &c->out_head;
        c->out_pending = 0;
}

void rpc_connection_close(struct rpc_connection *c, bool dropped) {
        struct rpc_server *s = c->server;

        if (c->closed)
                return;
        c->closed = true;

        c->line_timer = sd_event_source_disable_unref(c->line_timer);
        if (c->fd >= 0) {
                /* A batch of events read before this may still name c: it stays allocated and closed. */
                (void) epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
        }
        c->fd = -EBADF;
        connection_drop_output(c);

        hashmap_remove(s->by_id, &c->caller.connection);
        rpc_uid_count_dec(s, c->caller.uid, c->caller.admin);

        if (c->prev)
                c->prev->next = c->next;
        else
                s->connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = NULL;
        c->next = s->dead;
        s->dead = c;

        s->stats.connections--;
        /* rpc_connection_fail() has counted it already. */
        if (dropped && !c->closing)
                s->stats.dropped++;
        rpc_server_wake_reaper(s);
}

void rpc_connection_free(struct rpc_connection *c) {
        if (c->caller.pidfd >= 0)
                close(c->caller.pidfd);
        rpc_delivery_free_all(c->undelivered);
        free(c->in);
        free(c);
}

void rpc_connection_fail(struct rpc_connection *c, struct json_object *err) {
        _cleanup_(json_object_putp) struct json_object *e = err;

        if (c->closed || c->closing)
                return;
        c->closing = true;
        c->server->stats.dropped++;
        if (e)
                (void) rpc_connection_queue(c, e, NULL, NULL);
        else
                rpc_connection_close(c, false);
        connection_update_events(c);
}

static int on_line_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        struct rpc_connection *c = userdata;

        (void) source, (void) usec;
        if (c->in_len == 0 || c->closed || c->closing)
                return 0;
        rpc_connection_fail(c, rpc_limit_error(c->server, "message not completed within %" PRIu64 "s",
                                               c->server->limits.line_timeout_usec / 1000000));
        /* As after any input: close once the error is out (it usually went out at once). */
        if (!c->closed && !c->out_head)
                rpc_connection_close(c, false);
        return 0;
}

/*
 * A partial line holds a connection slot and its buffer: it must be finished within
 * line_timeout_usec of its first byte, or the connection is dropped (like an over-long one).
 */
static void connection_watch_partial(struct rpc_connection *c) {
        struct rpc_server *s = c->server;
        int r;

        if (c->in_len == 0 || c->closed || c->closing) {
                if (c->line_timer)
                        (void) sd_event_source_set_enabled(c->line_timer, SD_EVENT_OFF);
                return;
        }
        if (c->line_timer) {
                int enabled = SD_EVENT_OFF;
                (void) sd_event_source_get_enabled(c->line_timer, &enabled);
                if (enabled != SD_EVENT_OFF)
                        return; /* the line started earlier: its clock keeps running */
                r = sd_event_source_set_time_relative(c->line_timer, s->limits.line_timeout_usec);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->line_timer, SD_EVENT_ONESHOT);
        } else
                r = sd_event_add_time_relative(s->event, &c->line_timer, CLOCK_MONOTONIC, s->limits.line_timeout_usec,
                                               100 * 1000 /* accuracy: 100ms */, on_line_timeout, c);
        if (r < 0)
                rpc_connection_close(c, true);
}

static void connection_fail_too_long(struct rpc_connection *c) {
        rpc_connection_fail(c, rpc_limit_error(c->server, "message over the limit of %zu bytes",
                                               c->server->limits.max_message));
}

static void connection_process_input(struct rpc_connection *c) {
        struct rpc_server *s = c->server;
        size_t start = 0;

        while (!c->closed && !c->closing) {
                char *line = c->in + start, *nl;
                size_t len;

                nl = memchr(line, '\n', c->in_len - start);
                if (!nl)
                        break;
                len = (size_t) (nl - line);
                if (len > s->limits.max_message) {
                        connection_fail_too_long(c);
                        break;
                }
                *nl = '\0';
                start += len + 1;
                rpc_connection_handle_line(c, line, len);
        }
        if (c->closed || c->closing) {
                c->in_len = 0;
                return;
        }

        memmove(c->in, c->in + start, c->in_len - start);
        c->in_len -= start;
        /* An idle connection should not keep a large line's buffer. */
        if (c->in_len == 0 && c->in_size > INPUT_MIN_ALLOC) {
                free(c->in);
                c->in = NULL;
                c->in_size = 0;
        }
        /* A partial line already this long can only end up over the limit: refuse it now
         * rather than buffer more of it. */
        if (c->in_len > s->limits.max_message)
                connection_fail_too_long(c);
}

static int connection_grow_input(struct rpc_connection *c) {
        /* Room for the longest allowed line and its '\n'; what is left after the complete
         * lines are handled is at most max_message, so there is always space to read into. */
        size_t cap = c->server->limits.max_message + 1, size = c->in_size * 2;
        char *p;

        if (size < INPUT_MIN_ALLOC)
                size = INPUT_MIN_ALLOC;
        if (size > cap)
                size = cap;
        p = realloc(c->in, size);
        if (!p)
                return -ENOMEM;
        c->in = p;
        c->in_size = size;
        return 0;
}

static void connection_read(struct rpc_connection *c) {
        ssize_t n;

        if (c->in_len == c->in_size && connection_grow_input(c) < 0) {
                rpc_connection_close(c, false);
                return;
        }
        n = read(c->fd, c->in + c->in_len, c->in_size - c->in_len);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return;
                rpc_connection_close(c, false);
                return;
        }
        if (n == 0) {
                /* Every message ends with '\n': an unterminated tail is not a message. */
                c->eof = true;
                c->in_len = 0;
                connection_watch_partial(c);
                return;
        }
        c->in_len += (size_t) n;
        connection_process_input(c);
        connection_watch_partial(c);
}

static void connection_io_one(struct rpc_connection *c, uint32_t revents) {
        if (revents & EPOLLERR) {
                rpc_connection_close(c, false);
                return;
        }
        if ((revents & EPOLLOUT) && connection_flush(c) < 0)
                return;
        if (c->closed)
                return;
        /* On hang-up, read what the peer sent before it went (a last notification still
         * counts); EOF from read() then ends the connection below. */
        if ((revents & EPOLLIN) && !c->eof && !c->closing)
                connection_read(c);
        else if (revents & EPOLLHUP)
                rpc_connection_close(c, false);
        if (c->closed)
                return;

        if ((c->eof || c->closing) && !c->out_head)
                rpc_connection_close(c, false);
        else
                connection_update_events(c);
}

/* Connections handled in one turn of the loop, at most: the rest are ready for the next turn. */
#define RPC_IO_BATCH 64

int rpc_connections_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        struct rpc_server *s = userdata;
        struct epoll_event ev[RPC_IO_BATCH];
        unsigned handled = 0;
        int n;

        (void) source, (void) fd, (void) revents;
        n = epoll_wait(s->epoll_fd, ev, RPC_IO_BATCH, 0);
        /* Closed connections are freed by the reaper, never during a batch: a closed one is skipped. */
        for (int i = 0; i < n; i++) {
                struct rpc_connection *c = ev[i].data.ptr;

                if (c->closed)
                        continue;
                connection_io_one(c, ev[i].events);
                handled++;
        }
        if (handled > 0 && s->input_done)
                s->input_done(s->input_done_userdata, handled);
        return 0;
}

int rpc_connection_add(struct rpc_server *s, int fd_in, const struct ucred *ucred, int pidfd_in, bool admin) {
        _cleanup_(closep) int fd = fd_in, pidfd = pidfd_in;
        _cleanup_(xfreep) struct rpc_connection *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->server = s;
        c->fd = -EBADF;
        c->out_tail = &c->out_head;
        c->caller = (struct rpc_caller) {
                .connection = ++s->last_id,
                .uid = ucred->uid,
                .gid = ucred->gid,
                .pid = ucred->pid,
                .pidfd = -1,
                .admin = admin,
        };

        r = hashmap_put(s->by_id, &c->caller.connection, c);
        if (r < 0)
                return r;
        r = rpc_uid_count_inc(s, ucred->uid, admin);
        if (r < 0) {
                hashmap_remove(s->by_id, &c->caller.connection);
                return r;
        }
        if (epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &(struct epoll_event) { .events = EPOLLIN, .data.ptr = c }) < 0) {
                r = negative_errno();
                rpc_uid_count_dec(s, ucred->uid, admin);
                hashmap_remove(s->by_id, &c->caller.connection);
                return r;
        }
        c->events = EPOLLIN;

        c->fd = TAKE_FD(fd);
        c->caller.pidfd = pidfd >= 0 ? TAKE_FD(pidfd) : -1;
        c->next = s->connections;
        if (s->connections)
                s->connections->prev = c;
        s->connections = TAKE_PTR(c);
        s->stats.connections++;
        return 0;
}
