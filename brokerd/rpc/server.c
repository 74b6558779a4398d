/* SPDX-License-Identifier: Apache-2.0 */
#include "rpc/server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/error.h"
#include "util/hashmap.h"

/* Listeners are level-triggered: accepting a bounded number per wakeup keeps a connection
 * storm from starving the connections already open. */
#define ACCEPT_BURST 64
/* After EMFILE and friends the listening socket stays readable; without a pause the loop
 * would spin on it. */
#define ACCEPT_PAUSE_USEC (100 * 1000)
#define INPUT_MIN_ALLOC 4096
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

struct rpc_listener {
        struct rpc_server *server;
        struct rpc_listener *next;
        sd_event_source *source;
        int fd;
        bool admin;
        char *path; /* set when we bound it ourselves: unlinked on free, if still ours */
        dev_t dev;
        ino_t ino;
};

struct out_line {
        struct out_line *next;
        size_t size;
        size_t written;
        /* Sent with the first byte of the line, closed once sent; never set once written > 0. */
        int fds[RPC_MAX_FDS_PER_LINE];
        size_t n_fds;
        char data[];
};

struct uid_count {
        uint64_t uid; /* the key */
        unsigned n;
};

struct rpc_connection {
        struct rpc_server *server;
        /* On the server's live list while open; on its dead list (next only) once closed. */
        struct rpc_connection *prev, *next;
        struct rpc_caller caller; /* caller.connection is the by_id key */
        int fd;
        sd_event_source *source;
        uint32_t events;
        /* Armed while a partial line is buffered: a message must be complete in time. */
        sd_event_source *line_timer;

        char *in;
        size_t in_len, in_size;

        struct out_line *out_head, **out_tail;
        size_t out_pending;

        bool eof;     /* the peer shut down its writing side: answer what we have, then close */
        bool closing; /* broke a limit: no more input, close once the error is flushed */
        bool closed;  /* fd gone; waiting for the reaper to call on_disconnect and free it */
};

struct rpc_server {
        sd_event *event;
        struct rpc_server_limits limits;
        rpc_handler_t handler;
        rpc_disconnect_t on_disconnect;
        rpc_undelivered_t on_undelivered;
        rpc_uid_known_t uid_known;
        void *userdata;

        struct json_tokener *tok;
        struct rpc_listener *listeners;
        struct rpc_connection *connections;
        struct rpc_connection *dead;
        struct hashmap *by_id;
        struct hashmap *by_uid;
        /* on_disconnect runs from here, never from inside rpc_server_notify() or a handler,
         * so callers may walk their subscriber lists while notifying. */
        sd_event_source *reaper;
        sd_event_source *accept_timer;

        uint64_t last_id;
        struct rpc_server_stats stats;
};

static inline void json_object_putp(struct json_object **o) {
        if (*o)
                json_object_put(*o);
        *o = NULL;
}

static void fds_close(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

/* Drops the fds added after the first n (by a request whose result is not sent). */
static void reply_fds_truncate(struct rpc_reply_fds *fds, size_t n) {
        if (fds->n > n) {
                fds_close(fds->fds + n, fds->n - n);
                fds->n = n;
        }
}

static void connection_close(struct rpc_connection *c, bool dropped);
static int connection_flush(struct rpc_connection *c);

/* ---- JSON-RPC messages ---- */

static int json_add(struct json_object *o, const char *key, struct json_object *v) {
        if (!v)
                return -ENOMEM;
        if (json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static struct json_object *response_new(struct json_object *id) {
        _cleanup_(json_object_putp) struct json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        if (json_add(o, "jsonrpc", json_object_new_string("2.0")) < 0)
                return NULL;
        /* id NULL is a JSON null, which json-c adds as a NULL value. */
        if (json_object_object_add(o, "id", json_object_get(id)) < 0) {
                json_object_put(id);
                return NULL;
        }
        return TAKE_PTR(o);
}

static struct json_object *result_response(struct json_object *id, struct json_object *result) {
        _cleanup_(json_object_putp) struct json_object *r = result;
        _cleanup_(json_object_putp) struct json_object *o = response_new(id);

        if (!o)
                return NULL;
        if (json_add(o, "result", TAKE_PTR(r)) < 0)
                return NULL;
        return TAKE_PTR(o);
}

static const char *default_message(int code) {
        switch (code) {
        case RPC_PARSE_ERROR:
                return "Parse error";
        case RPC_INVALID_REQUEST:
                return "Invalid Request";
        case RPC_METHOD_NOT_FOUND:
                return "Method not found";
        case RPC_INVALID_PARAMS:
                return "Invalid params";
        default:
                return "Internal error";
        }
}

/*
 * brokerd's errors (codes from RPC_BROKER_CODE_BASE, or any with a name) always carry
 * data.name, with the handler's extra members merged in; standard errors carry data only
 * when the handler gave some. data is borrowed.
 */
static struct json_object *error_response(struct rpc_server *s, struct json_object *id, int code, const char *name,
                                          const char *message, struct json_object *data) {
        _cleanup_(json_object_putp) struct json_object *o = NULL, *e = NULL;

        if (code > RPC_BROKER_CODE_BASE && code < RPC_BROKER_CODE_BASE + _BROKER_CODE_MAX && (!name || !*name))
                name = broker_code_name(code - RPC_BROKER_CODE_BASE);

        e = json_object_new_object();
        if (!e)
                return NULL;
        if (json_add(e, "code", json_object_new_int(code)) < 0 ||
            json_add(e, "message", json_object_new_string(message && *message ? message : default_message(code))) < 0)
                return NULL;

        if (name && *name) {
                _cleanup_(json_object_putp) struct json_object *d = json_object_new_object();

                if (!d || json_add(d, "name", json_object_new_string(name)) < 0)
                        return NULL;
                if (json_object_is_type(data, json_type_object)) {
                        json_object_object_foreach(data, key, value) {
                                if (strcmp(key, "name") == 0)
                                        continue;
                                if (json_add(d, key, json_object_get(value)) < 0)
                                        return NULL;
                        }
                } else if (data) {
                        /* Not members to merge: keep it rather than lose it silently. */
                        if (json_add(d, "detail", json_object_get(data)) < 0)
                                return NULL;
                }
                if (json_add(e, "data", TAKE_PTR(d)) < 0)
                        return NULL;
        } else if (data) {
                if (json_add(e, "data", json_object_get(data)) < 0)
                        return NULL;
        }

        o = response_new(id);
        if (!o || json_add(o, "error", TAKE_PTR(e)) < 0)
                return NULL;
        s->stats.errors++;
        return TAKE_PTR(o);
}

static struct json_object *error_responsef(struct rpc_server *s, struct json_object *id, int code, const char *name,
                                           const char *fmt, ...) _printf_(5, 6);
static struct json_object *error_responsef(struct rpc_server *s, struct json_object *id, int code, const char *name,
                                           const char *fmt, ...) {
        char message[sizeof(((struct rpc_error *) NULL)->message)];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        return error_response(s, id, code, name, message, NULL);
}

static struct json_object *limit_error(struct rpc_server *s, const char *fmt, ...) _printf_(2, 3);
static struct json_object *limit_error(struct rpc_server *s, const char *fmt, ...) {
        char message[sizeof(((struct rpc_error *) NULL)->message)];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        return error_response(s, NULL, RPC_BROKER_CODE_BASE + BROKER_E_LIMIT, broker_code_name(BROKER_E_LIMIT),
                              message, NULL);
}

/* ---- output ---- */

static void out_line_free(struct out_line *l) {
        fds_close(l->fds, l->n_fds);
        free(l);
}

static void connection_update_events(struct rpc_connection *c) {
        uint32_t events = 0;

        if (c->closed)
                return;
        if (!c->eof && !c->closing)
                events |= EPOLLIN;
        if (c->out_head)
                events |= EPOLLOUT;
        if (events == c->events)
                return;
        if (sd_event_source_set_io_events(c->source, events) < 0) {
                connection_close(c, false);
                return;
        }
        c->events = events;
}

/*
 * Queues one line (the serialized message plus '\n') with its fds (taken, even on failure)
 * and writes what the socket takes right away. -ENOBUFS: the connection was over its
 * pending-output limit and has been dropped; -ECONNRESET: the peer is gone.
 */
static int connection_queue(struct rpc_connection *c, struct json_object *msg, int *fds, size_t n_fds) {
        struct rpc_server *s = c->server;
        struct out_line *l;
        const char *str;
        size_t len;
        bool was_empty;

        if (c->closed) {
                fds_close(fds, n_fds);
                return -ECONNRESET;
        }
        str = json_object_to_json_string_length(msg, JSON_FLAGS, &len);
        if (!str || len > SIZE_MAX - sizeof(*l) - 1) {
                fds_close(fds, n_fds);
                connection_close(c, false);
                return -ENOMEM;
        }
        l = malloc(sizeof(*l) + len + 1);
        if (!l) {
                fds_close(fds, n_fds);
                connection_close(c, false);
                return -ENOMEM;
        }
        memcpy(l->data, str, len);
        l->data[len] = '\n';
        l->size = len + 1;
        l->written = 0;
        l->next = NULL;
        l->n_fds = n_fds;
        if (n_fds > 0)
                memcpy(l->fds, fds, n_fds * sizeof(int));

        was_empty = !c->out_head;
        *c->out_tail = l;
        c->out_tail = &l->next;
        c->out_pending += l->size;

        if (was_empty && connection_flush(c) < 0)
                return -ECONNRESET;
        if (c->out_pending > s->limits.max_pending_bytes) {
                connection_close(c, true);
                return -ENOBUFS;
        }
        connection_update_events(c);
        return 0;
}

static int connection_flush(struct rpc_connection *c) {
        struct out_line *l;

        while ((l = c->out_head)) {
                union {
                        struct cmsghdr align;
                        char buf[CMSG_SPACE(sizeof(int) * RPC_MAX_FDS_PER_LINE)];
                } control;
                struct iovec iov = { .iov_base = l->data + l->written, .iov_len = l->size - l->written };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
                ssize_t n;

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

                n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        int r = -errno;

                        if (r == -EINTR)
                                continue;
                        if (r == -EAGAIN)
                                break;
                        connection_close(c, false);
                        return r;
                }
                /* The fds went with the first byte: the peer has its own copies now. */
                fds_close(l->fds, l->n_fds);
                l->n_fds = 0;
                l->written += (size_t) n;
                c->out_pending -= (size_t) n;
                if (l->written == l->size) {
                        c->out_head = l->next;
                        if (!c->out_head)
                                c->out_tail = &c->out_head;
                        free(l);
                }
        }
        connection_update_events(c);
        return 0;
}

/* ---- connections ---- */

static void uid_count_dec(struct rpc_server *s, uid_t uid) {
        uint64_t key = uid;
        struct uid_count *u = hashmap_get(s->by_uid, &key);

        if (!u)
                return;
        if (--u->n == 0) {
                hashmap_remove(s->by_uid, &key);
                free(u);
        }
}

static int uid_count_inc(struct rpc_server *s, uid_t uid) {
        uint64_t key = uid;
        _cleanup_(xfreep) struct uid_count *n = NULL;
        struct uid_count *u = hashmap_get(s->by_uid, &key);
        int r;

        if (u) {
                u->n++;
                return 0;
        }
        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->uid = uid;
        n->n = 1;
        r = hashmap_put(s->by_uid, &n->uid, n);
        if (r < 0)
                return r;
        TAKE_PTR(n);
        return 0;
}

static unsigned uid_count_get(struct rpc_server *s, uid_t uid) {
        uint64_t key = uid;
        struct uid_count *u = hashmap_get(s->by_uid, &key);

        return u ? u->n : 0;
}

static void connection_free(struct rpc_connection *c) {
        free(c->in);
        free(c);
}

/*
 * Closes the socket at once (the peer sees EOF now) and hands the connection to the reaper,
 * which calls on_disconnect and frees it on a later loop iteration. The struct stays valid
 * until then, so callers up the stack (the io callback, a handler) may still look at it.
 */
static void connection_close(struct rpc_connection *c, bool dropped) {
        struct rpc_server *s = c->server;
        struct out_line *l;

        if (c->closed)
                return;
        c->closed = true;

        c->source = sd_event_source_disable_unref(c->source);
        c->line_timer = sd_event_source_disable_unref(c->line_timer);
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -EBADF;
        while ((l = c->out_head)) {
                c->out_head = l->next;
                out_line_free(l);
        }
        c->out_tail = &c->out_head;
        c->out_pending = 0;

        hashmap_remove(s->by_id, &c->caller.connection);
        uid_count_dec(s, c->caller.uid);

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
        /* connection_fail() has counted it already. */
        if (dropped && !c->closing)
                s->stats.dropped++;
        (void) sd_event_source_set_enabled(s->reaper, SD_EVENT_ONESHOT);
}

static void server_reap(struct rpc_server *s) {
        struct rpc_connection *c;

        /* on_disconnect may close more connections: they land on the list and are reaped too. */
        while ((c = s->dead)) {
                s->dead = c->next;
                if (s->on_disconnect)
                        s->on_disconnect(s->userdata, c->caller.connection);
                connection_free(c);
        }
}

static int reaper_dispatch(sd_event_source *source, void *userdata) {
        (void) source;
        server_reap(userdata);
        return 0;
}

/* A fatal protocol error: send err (taken), read nothing more, close once it is flushed. */
static void connection_fail(struct rpc_connection *c, struct json_object *err) {
        _cleanup_(json_object_putp) struct json_object *e = err;

        if (c->closed || c->closing)
                return;
        c->closing = true;
        c->server->stats.dropped++;
        if (e)
                (void) connection_queue(c, e, NULL, 0);
        else
                connection_close(c, false);
        connection_update_events(c);
}

static bool is_json_ws(char ch) {
        return ch == ' ' || ch == '\t' || ch == '\r';
}

/*
 * One request object: calls the handler and returns the response to send, or NULL for a
 * notification (or when out of memory, which costs the peer its answer but not others theirs).
 */
static struct json_object *connection_handle_request(struct rpc_connection *c, struct json_object *req,
                                                     struct rpc_reply_fds *fds) {
        struct rpc_server *s = c->server;
        _cleanup_(json_object_putp) struct json_object *own_params = NULL, *result = NULL;
        struct json_object *id = NULL, *v, *params;
        struct rpc_error err = {};
        const char *method;
        bool has_id, id_ok = true;
        size_t n_fds;
        int r;

        s->stats.requests++;

        if (!json_object_is_type(req, json_type_object))
                return error_responsef(s, NULL, RPC_INVALID_REQUEST, NULL, "Invalid Request: not an object");

        has_id = json_object_object_get_ex(req, "id", &id);
        if (has_id && id && !json_object_is_type(id, json_type_string) && !json_object_is_type(id, json_type_int) &&
            !json_object_is_type(id, json_type_double)) {
                id_ok = false;
                id = NULL;
        }

        if (!json_object_object_get_ex(req, "jsonrpc", &v) || !json_object_is_type(v, json_type_string) ||
            strcmp(json_object_get_string(v), "2.0") != 0)
                return error_responsef(s, id, RPC_INVALID_REQUEST, NULL, "Invalid Request: \"jsonrpc\" must be \"2.0\"");
        if (!json_object_object_get_ex(req, "method", &v) || !json_object_is_type(v, json_type_string))
                return error_responsef(s, id, RPC_INVALID_REQUEST, NULL, "Invalid Request: \"method\" must be a string");
        method = json_object_get_string(v);
        if (!id_ok)
                return error_responsef(s, NULL, RPC_INVALID_REQUEST, NULL,
                                       "Invalid Request: \"id\" must be a string, a number or null");

        if (!json_object_object_get_ex(req, "params", &params)) {
                params = own_params = json_object_new_object();
                if (!params)
                        return NULL;
        } else if (json_object_is_type(params, json_type_array)) {
                /* Well-formed JSON-RPC, but no brokerd method takes positional params. */
                if (!has_id)
                        return NULL;
                return error_responsef(s, id, RPC_INVALID_PARAMS, NULL, "params must be an object");
        } else if (!json_object_is_type(params, json_type_object))
                return error_responsef(s, id, RPC_INVALID_REQUEST, NULL,
                                       "Invalid Request: \"params\" must be an object or an array");

        n_fds = fds->n;
        r = s->handler(s->userdata, &c->caller, method, params, fds, &result, &err);
        if (r < 0 || !result || !has_id || c->closed)
                reply_fds_truncate(fds, n_fds);
        if (!has_id || c->closed) {
                json_object_putp(&err.data);
                return NULL;
        }
        if (r < 0 || !result) {
                struct json_object *e;

                if (err.code == 0)
                        rpc_error_set(&err, RPC_INTERNAL_ERROR, "Internal error: %s", strerror(r < 0 ? -r : EIO));
                e = error_response(s, id, err.code, err.name, err.message, err.data);
                json_object_putp(&err.data);
                return e;
        }
        json_object_putp(&err.data);
        return result_response(id, TAKE_PTR(result));
}

static void connection_handle_line(struct rpc_connection *c, const char *line, size_t len) {
        struct rpc_server *s = c->server;
        _cleanup_(json_object_putp) struct json_object *msg = NULL, *reply = NULL;
        struct rpc_reply_fds fds = { .n = 0 };
        enum json_tokener_error jerr;
        size_t i, parse_end;

        for (i = 0; i < len && is_json_ws(line[i]); i++)
                ;
        if (i == len)
                return;

        /* line[len] is the NUL that replaced '\n': it ends the tokener's input (a trailing number
         * is complete), and parse_end == len proves no byte was left over (an embedded NUL,
         * garbage after the value). */
        msg = json_tokener_parse_ex(s->tok, line, (int) len + 1);
        jerr = json_tokener_get_error(s->tok);
        parse_end = json_tokener_get_parse_end(s->tok);
        /* A line that failed to parse leaves its partial objects on the tokener's stack; they go
         * now, not when the next line comes, so nothing of one client's line outlives it. */
        json_tokener_reset(s->tok);
        if (jerr != json_tokener_success || parse_end != len) {
                struct json_object *e;

                s->stats.requests++;
                if (jerr == json_tokener_error_depth) {
                        e = error_responsef(s, NULL, RPC_PARSE_ERROR, NULL, "Parse error: nesting deeper than %u",
                                            s->limits.max_depth);
                        connection_fail(c, e);
                        return;
                }
                e = error_responsef(s, NULL, RPC_PARSE_ERROR, NULL, "Parse error: %s",
                                    jerr != json_tokener_success ? json_tokener_error_desc(jerr)
                                                                 : "unexpected data after the JSON value");
                if (e)
                        (void) connection_queue(c, e, NULL, 0);
                json_object_put(e);
                return;
        }

        if (json_object_is_type(msg, json_type_array)) {
                size_t n = json_object_array_length(msg);

                if (n == 0) {
                        s->stats.requests++;
                        reply = error_responsef(s, NULL, RPC_INVALID_REQUEST, NULL, "Invalid Request: empty batch");
                } else if (n > s->limits.max_batch) {
                        s->stats.requests++;
                        reply = error_responsef(s, NULL, RPC_INVALID_REQUEST, NULL,
                                                "Invalid Request: batch of %zu requests is over the limit of %u", n,
                                                s->limits.max_batch);
                } else {
                        reply = json_object_new_array();
                        if (!reply)
                                return;
                        for (i = 0; i < n && !c->closed; i++) {
                                struct json_object *r;

                                r = connection_handle_request(c, json_object_array_get_idx(msg, i), &fds);
                                if (r && json_object_array_add(reply, r) < 0)
                                        json_object_put(r);
                        }
                        if (json_object_array_length(reply) == 0)
                                json_object_putp(&reply);
                }
        } else
                reply = connection_handle_request(c, msg, &fds);

        if (!reply || c->closed) {
                fds_close(fds.fds, fds.n);
                return;
        }
        (void) connection_queue(c, reply, fds.fds, fds.n);
}

static int on_line_timeout(sd_event_source *source, uint64_t usec, void *userdata) {
        struct rpc_connection *c = userdata;

        (void) source, (void) usec;
        if (c->in_len == 0 || c->closed || c->closing)
                return 0;
        connection_fail(c, limit_error(c->server, "message not completed within %" PRIu64 "s",
                                       c->server->limits.line_timeout_usec / 1000000));
        /* As after any input: close once the error is out (it usually went out at once). */
        if (!c->closed && !c->out_head)
                connection_close(c, false);
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
                connection_close(c, true);
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
                        connection_fail(c, limit_error(s, "message over the limit of %zu bytes", s->limits.max_message));
                        break;
                }
                *nl = '\0';
                start += len + 1;
                connection_handle_line(c, line, len);
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
                connection_fail(c, limit_error(s, "message over the limit of %zu bytes", s->limits.max_message));
}

static void connection_read(struct rpc_connection *c) {
        /* Room for the longest allowed line and its '\n'; what is left after the complete
         * lines are handled is at most max_message, so there is always space to read into. */
        size_t cap = c->server->limits.max_message + 1;
        ssize_t n;

        if (c->in_len == c->in_size) {
                size_t size = c->in_size * 2;
                char *p;

                if (size < INPUT_MIN_ALLOC)
                        size = INPUT_MIN_ALLOC;
                if (size > cap)
                        size = cap;
                p = realloc(c->in, size);
                if (!p) {
                        connection_close(c, false);
                        return;
                }
                c->in = p;
                c->in_size = size;
        }

        n = read(c->fd, c->in + c->in_len, c->in_size - c->in_len);
        if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                        return;
                connection_close(c, false);
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

static int connection_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        struct rpc_connection *c = userdata;

        (void) source;
        (void) fd;

        if (revents & EPOLLERR) {
                connection_close(c, false);
                return 0;
        }
        if ((revents & EPOLLOUT) && connection_flush(c) < 0)
                return 0;
        if (c->closed)
                return 0;
        /* On hang-up, read what the peer sent before it went (a last notification still
         * counts); EOF from read() then ends the connection below. */
        if ((revents & EPOLLIN) && !c->eof && !c->closing)
                connection_read(c);
        else if (revents & EPOLLHUP)
                connection_close(c, false);
        if (c->closed)
                return 0;

        if ((c->eof || c->closing) && !c->out_head)
                connection_close(c, false);
        else
                connection_update_events(c);
        return 0;
}

/* Best effort: the connection is refused, so it gets one try at a small error and no queue. */
static void refuse_connection(struct rpc_server *s, int fd, struct json_object *e) {
        const char *str;
        size_t len;

        if (e) {
                str = json_object_to_json_string_length(e, JSON_FLAGS, &len);
                if (str) {
                        struct iovec iov[2] = {
                                { .iov_base = (void *) str, .iov_len = len },
                                { .iov_base = (void *) "\n", .iov_len = 1 },
                        };
                        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };

                        (void) sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                }
                json_object_put(e);
        }
        close(fd);
        s->stats.dropped++;
}

static int server_add_connection(struct rpc_server *s, int fd_in, bool admin) {
        _cleanup_(closep) int fd = fd_in;
        _cleanup_(xfreep) struct rpc_connection *c = NULL;
        struct ucred ucred;
        socklen_t len = sizeof(ucred);
        int r;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &ucred, &len) < 0)
                return -errno;
        if (len != sizeof(ucred))
                return -EIO;
        s->stats.accepted++;

        if (uid_count_get(s, ucred.uid) >= s->limits.max_connections_per_uid) {
                refuse_connection(s, TAKE_FD(fd),
                                  limit_error(s, "too many connections for uid %u (limit %u)", (unsigned) ucred.uid,
                                              s->limits.max_connections_per_uid));
                return -EUSERS;
        }

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->server = s;
        c->fd = -EBADF;
        c->out_tail = &c->out_head;
        c->caller = (struct rpc_caller) {
                .connection = ++s->last_id,
                .uid = ucred.uid,
                .gid = ucred.gid,
                .pid = ucred.pid,
                .admin = admin,
        };

        r = sd_event_add_io(s->event, &c->source, fd, EPOLLIN, connection_io, c);
        if (r < 0)
                return r;
        c->events = EPOLLIN;
        (void) sd_event_source_set_description(c->source, admin ? "rpc-admin-connection" : "rpc-connection");

        r = hashmap_put(s->by_id, &c->caller.connection, c);
        if (r < 0) {
                c->source = sd_event_source_disable_unref(c->source);
                return r;
        }
        r = uid_count_inc(s, ucred.uid);
        if (r < 0) {
                hashmap_remove(s->by_id, &c->caller.connection);
                c->source = sd_event_source_disable_unref(c->source);
                return r;
        }

        c->fd = TAKE_FD(fd);
        c->next = s->connections;
        if (s->connections)
                s->connections->prev = c;
        s->connections = TAKE_PTR(c);
        s->stats.connections++;
        return 0;
}

/* ---- listeners ---- */

static void server_set_accepting(struct rpc_server *s, bool on) {
        for (struct rpc_listener *l = s->listeners; l; l = l->next)
                (void) sd_event_source_set_enabled(l->source, on ? SD_EVENT_ON : SD_EVENT_OFF);
}

static int accept_timer_dispatch(sd_event_source *source, uint64_t usec, void *userdata) {
        struct rpc_server *s = userdata;

        (void) source;
        (void) usec;
        s->accept_timer = sd_event_source_disable_unref(s->accept_timer);
        server_set_accepting(s, true);
        return 0;
}

static void server_pause_accepting(struct rpc_server *s) {
        if (s->accept_timer)
                return;
        if (sd_event_add_time_relative(s->event, &s->accept_timer, CLOCK_MONOTONIC, ACCEPT_PAUSE_USEC, 0,
                                       accept_timer_dispatch, s) < 0)
                return; /* keep trying on the next wakeup rather than never again */
        server_set_accepting(s, false);
}

static int listener_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        struct rpc_listener *l = userdata;

        (void) source;
        (void) revents;

        for (unsigned i = 0; i < ACCEPT_BURST; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

                if (cfd < 0) {
                        switch (errno) {
                        case EAGAIN:
                                return 0;
                        case EMFILE:
                        case ENFILE:
                        case ENOBUFS:
                        case ENOMEM:
                                server_pause_accepting(l->server);
                                return 0;
                        default:
                                /* ECONNABORTED, EINTR, EPROTO, ...: that one peer's problem. */
                                continue;
                        }
                }
                (void) server_add_connection(l->server, cfd, l->admin);
        }
        return 0;
}

static void listener_free(struct rpc_listener *l) {
        struct stat st;

        l->source = sd_event_source_disable_unref(l->source);
        if (l->fd >= 0)
                close(l->fd);
        /* Only our own socket: a newer daemon may have bound the path since. */
        if (l->path && lstat(l->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == l->dev &&
            st.st_ino == l->ino)
                (void) unlink(l->path);
        free(l->path);
        free(l);
}

static int server_add_listener(struct rpc_server *s, int fd, bool admin, char *path, const struct stat *st) {
        _cleanup_(xfreep) struct rpc_listener *l = calloc(1, sizeof(*l));
        int r;

        if (!l)
                return -ENOMEM;
        l->server = s;
        l->fd = fd;
        l->admin = admin;
        r = sd_event_add_io(s->event, &l->source, fd, EPOLLIN, listener_io, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(l->source, admin ? "rpc-admin-listener" : "rpc-listener");
        if (s->accept_timer)
                (void) sd_event_source_set_enabled(l->source, SD_EVENT_OFF);
        if (path) {
                l->path = path;
                l->dev = st->st_dev;
                l->ino = st->st_ino;
        }
        l->next = s->listeners;
        s->listeners = TAKE_PTR(l);
        return 0;
}

int rpc_server_add_listener_fd(struct rpc_server *s, int fd, bool admin) {
        int flags, accepting = 0;
        socklen_t len = sizeof(accepting);

        if (!s || fd < 0)
                return -EINVAL;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0)
                return -errno;
        if (!accepting)
                return -EINVAL;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        return server_add_listener(s, fd, admin, NULL, NULL);
}

int rpc_server_listen(struct rpc_server *s, const char *path, mode_t mode, gid_t group, bool admin) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(xfreep) char *p = NULL;
        _cleanup_(closep) int fd = -EBADF;
        struct stat st;
        size_t len;
        int r;

        if (!s || !path || !*path)
                return -EINVAL;
        len = strlen(path);
        if (len >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, len + 1);
        p = strdup(path);
        if (!p)
                return -ENOMEM;

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;

        /* A socket left by an earlier run is stale; anything else at the path is not ours
         * to remove, and bind() refuses it. */
        if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode) && unlink(path) < 0 && errno != ENOENT)
                return -errno;
        if (bind(fd, (struct sockaddr *) &sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + len + 1)) < 0)
                return -errno;

        /* Permissions before listen(): nobody can connect until they are right. */
        if (chmod(path, mode) < 0)
                goto fail_errno;
        if (group != (gid_t) -1 && fchownat(AT_FDCWD, path, (uid_t) -1, group, AT_SYMLINK_NOFOLLOW) < 0)
                goto fail_errno;
        if (lstat(path, &st) < 0)
                goto fail_errno;
        if (listen(fd, SOMAXCONN) < 0)
                goto fail_errno;

        r = server_add_listener(s, fd, admin, p, &st);
        if (r < 0) {
                (void) unlink(path);
                return r;
        }
        TAKE_PTR(p);
        TAKE_FD(fd);
        return 0;

fail_errno:
        r = -errno;
        (void) unlink(path);
        return r;
}

/* ---- server ---- */

int rpc_server_new(sd_event *event, const struct rpc_server_limits *limits, rpc_handler_t handler,
                   rpc_disconnect_t on_disconnect, void *userdata, struct rpc_server **ret) {
        _cleanup_(rpc_server_freep) struct rpc_server *s = NULL;
        struct rpc_server_limits lim = limits ? *limits : RPC_SERVER_LIMITS_DEFAULT;
        int r;

        if (!event || !handler || !ret)
                return -EINVAL;
        if (lim.max_message == 0 || lim.max_message > INT_MAX - 1 || lim.max_depth == 0 || lim.max_depth > INT_MAX ||
            lim.max_batch == 0 || lim.max_connections_per_uid == 0 || lim.max_pending_bytes == 0)
                return -EINVAL;
        if (lim.line_timeout_usec == 0)
                lim.line_timeout_usec = RPC_SERVER_LIMITS_DEFAULT.line_timeout_usec;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->event = sd_event_ref(event);
        s->limits = lim;
        s->handler = handler;
        s->on_disconnect = on_disconnect;
        s->userdata = userdata;

        s->tok = json_tokener_new_ex((int) lim.max_depth);
        if (!s->tok)
                return -ENOMEM;
        json_tokener_set_flags(s->tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);

        r = hashmap_new(&hashmap_u64_ops, &s->by_id);
        if (r < 0)
                return r;
        r = hashmap_new(&hashmap_u64_ops, &s->by_uid);
        if (r < 0)
                return r;
        r = sd_event_add_defer(event, &s->reaper, reaper_dispatch, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->reaper, "rpc-reaper");
        r = sd_event_source_set_enabled(s->reaper, SD_EVENT_OFF);
        if (r < 0)
                return r;
        /*
         * sd-event opens a clock's timerfd when its first time source is added and keeps it.
         * Add one now for CLOCK_MONOTONIC (partial-line and accept timers), so the daemon's fd
         * count is the same before and after its first slow client: a stable baseline is what
         * makes fd leaks visible.
         */
        {
                sd_event_source *warm = NULL;
                r = sd_event_add_time(event, &warm, CLOCK_MONOTONIC, UINT64_MAX, 0, NULL, NULL);
                if (r < 0)
                        return r;
                sd_event_source_disable_unref(warm);
        }

        *ret = TAKE_PTR(s);
        return 0;
}

void rpc_server_free(struct rpc_server *s) {
        struct rpc_listener *l;

        if (!s)
                return;
        while ((l = s->listeners)) {
                s->listeners = l->next;
                listener_free(l);
        }
        while (s->connections)
                connection_close(s->connections, false);
        server_reap(s);

        s->accept_timer = sd_event_source_disable_unref(s->accept_timer);
        s->reaper = sd_event_source_disable_unref(s->reaper);
        hashmap_free(s->by_uid);
        hashmap_free(s->by_id);
        if (s->tok)
                json_tokener_free(s->tok);
        sd_event_unref(s->event);
        free(s);
}

int rpc_server_notify(struct rpc_server *s, uint64_t connection, const char *method, struct json_object *params) {
        _cleanup_(json_object_putp) struct json_object *msg = NULL;
        struct rpc_connection *c;

        if (!s || !method)
                return -EINVAL;
        c = hashmap_get(s->by_id, &connection);
        if (!c)
                return -ENOENT;

        msg = json_object_new_object();
        if (!msg || json_add(msg, "jsonrpc", json_object_new_string("2.0")) < 0 ||
            json_add(msg, "method", json_object_new_string(method)) < 0 ||
            json_add(msg, "params", params ? json_object_get(params) : json_object_new_object()) < 0)
                return -ENOMEM;
        return connection_queue(c, msg, NULL, 0);
}

void rpc_server_set_undelivered(struct rpc_server *s, rpc_undelivered_t fn) {
        s->on_undelivered = fn;
}

void rpc_server_set_uid_known(struct rpc_server *s, rpc_uid_known_t fn) {
        s->uid_known = fn;
}

void rpc_server_get_stats(const struct rpc_server *s, struct rpc_server_stats *ret) {
        *ret = s->stats;
}

const struct rpc_server_limits *rpc_server_limits(const struct rpc_server *s) {
        return &s->limits;
}
