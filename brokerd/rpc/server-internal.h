/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The RPC server's internals, shared by its files and by nothing else:
 *   server.c     the server object, its hooks, the reaper that finishes closed connections
 *   listener.c   listening sockets, accept, and admission (the connection caps)
 *   connection.c one connection's I/O: reading, the output queue, closing
 *   request.c    framing: one line to one request or a batch, calls to the handler
 *   response.c   building result and error responses
 *   wire-check.c the wire's rules: strict JSON (util/json-strict.h) in, ids echoed exactly
 * Everything runs on the event loop's thread. A connection that closes stays allocated (on
 * the server's dead list) until the reaper has run the hooks for it, so that nothing up the
 * stack ever holds a freed connection.
 */
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "rpc/server.h"
#include "util/lent-fd.h"

#define RPC_JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

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

/* A successful result on its way out: if its line is not fully written, the undelivered hook
 * hears of it. */
struct rpc_delivery {
        struct rpc_delivery *next;
        struct json_object *result; /* a reference of our own */
        char method[];
};

struct rpc_out_line {
        struct rpc_out_line *next;
        size_t size;
        size_t written;
        /* Sent with the first byte of the line, closed once sent; never set once written > 0. */
        int *fds; /* n_fds of them (malloc'ed: most lines carry none, a few up to RPC_MAX_FDS_PER_LINE) */
        bool *lent; /* n_fds of them, after fds in the same block: a handler's own, not closed */
        size_t n_fds, n_lent;
        struct rpc_delivery *deliveries;
        char data[];
};

struct rpc_connection {
        struct rpc_server *server;
        /* On the server's live list while open; on its dead list (next only) once closed. */
        struct rpc_connection *prev, *next;
        struct rpc_caller caller; /* caller.connection is the by_id key */
        int fd;
        uint32_t events; /* what the server's epoll watches it for */
        /* Armed while a partial line is buffered: a message must be complete in time. */
        sd_event_source *line_timer;

        char *in;
        size_t in_len, in_size;

        struct rpc_out_line *out_head, **out_tail;
        size_t out_pending;
        /* Results that never reached the peer; the reaper reports them. */
        struct rpc_delivery *undelivered;

        bool eof;     /* the peer shut down its writing side: answer what we have, then close */
        bool closing; /* broke a limit: no more input, close once the error is flushed */
        bool closed;  /* fd gone; waiting for the reaper to run the hooks and free it */
        bool held;    /* its last flush stopped at the output gate, not at a full socket */
};

struct rpc_server {
        sd_event *event;
        struct rpc_server_limits limits;
        rpc_handler_t handler;
        rpc_disconnect_t on_disconnect;
        rpc_undelivered_t on_undelivered;
        rpc_uid_known_t uid_known;
        void *userdata;
        /* Optional: whether output may go now (rpc_server_set_output_gate), and what runs once a
         * connection's input was handled. */
        bool (*output_gate)(void *userdata);
        void *gate_userdata;
        void (*input_done)(void *userdata, unsigned n);
        void *input_done_userdata;

        struct json_tokener *tok;
        struct rpc_listener *listeners;
        struct rpc_connection *connections;
        struct rpc_connection *dead;
        /*
         * The connections' sockets are watched by an epoll of the server's own, one source of the
         * loop: one turn of the loop handles every connection that is ready (sd-event dispatches
         * one source a turn, and each turn costs an epoll_wait of its own).
         */
        int epoll_fd;
        sd_event_source *connections_source;
        struct hashmap *by_id;
        struct hashmap *by_uid;
        /* The hooks run from here, never from inside rpc_server_notify() or a handler, so
         * callers may walk their subscriber lists while notifying. */
        sd_event_source *reaper;
        sd_event_source *accept_timer;

        uint64_t last_id;
        size_t n_lent_lines; /* queued lines that carry lent fds */
        struct lent_fd_borrower borrower;
        /* The reply of the line being handled (its requests may lend fds) and its connection. */
        struct rpc_reply_fds *building;
        struct rpc_connection *building_c;
        struct rpc_server_stats stats;
};

static inline void json_object_putp(struct json_object **o) {
        if (*o)
                json_object_put(*o);
        *o = NULL;
}

/* connection.c: the connections_source's handler. */
int rpc_connections_io(sd_event_source *source, int fd, uint32_t revents, void *userdata);

/* rpc.c: fds[0..n) with lent[] flags (a lent fd is its lender's, never closed here). Closes
 * the others; returns how many were lent. */
size_t rpc_fds_close_owned(const int *fds, const bool *lent, size_t n);
/* Each lent copy of fd (every lent fd when fd < 0) replaced by a dup of its own, counting
 * *n_lent down; -errno on the first that cannot be (it and the rest stay lent). */
int rpc_fds_keep(int *fds, bool *lent, size_t n, size_t *n_lent, int fd);
/*
 * The server's lent_fd_borrower: fd's lender closes it, so every queued line, and the reply
 * being built, that holds it lent gets a dup of its own. A connection whose copy cannot be
 * made loses its output (reported undelivered) and is closed.
 */
void rpc_server_keep_lent(struct lent_fd_borrower *b, int fd);

/* server.c */
void rpc_server_wake_reaper(struct rpc_server *s);
void rpc_server_reap(struct rpc_server *s);

/* listener.c */
void rpc_listener_free(struct rpc_listener *l);
int rpc_uid_count_inc(struct rpc_server *s, uid_t uid, bool admin);
void rpc_uid_count_dec(struct rpc_server *s, uid_t uid, bool admin);

/* connection.c */
/* A new connection on fd (taken: closed on failure) for the peer ucred, caps already checked. */
/* Takes fd and pidfd (-1: none) over, also on failure. */
int rpc_connection_add(struct rpc_server *s, int fd, const struct ucred *ucred, int pidfd, bool admin);
/* Queues one message (serialized plus '\n') with its fds and deliveries (all taken, even on
 * failure) and writes what the socket takes right away. -ENOBUFS: the connection was over its
 * pending-output limit and has been dropped; -ECONNRESET: the peer is gone. */
int rpc_connection_queue(struct rpc_connection *c, struct json_object *msg, struct rpc_reply_fds *fds,
                         struct rpc_delivery *deliveries);
/* Results (taken) that will never reach the peer: the reaper reports them. */
void rpc_connection_undelivered(struct rpc_connection *c, struct rpc_delivery *d);
/* A fatal protocol error: send err (taken), read nothing more, close once it is flushed. */
void rpc_connection_fail(struct rpc_connection *c, struct json_object *err);
/* Closes the socket now; the reaper runs the hooks and frees the connection later. */
void rpc_connection_close(struct rpc_connection *c, bool dropped);
void rpc_connection_free(struct rpc_connection *c);

/* request.c */
void rpc_connection_handle_line(struct rpc_connection *c, const char *line, size_t len);

/* response.c */
int rpc_json_add(struct json_object *o, const char *key, struct json_object *v);
struct json_object *rpc_result_response(struct json_object *id, struct json_object *result);
struct json_object *rpc_error_response(struct rpc_server *s, struct json_object *id, int code, const char *name,
                                       const char *message, struct json_object *data);
struct json_object *rpc_error_responsef(struct rpc_server *s, struct json_object *id, int code, const char *name,
                                        const char *fmt, ...) _printf_(5, 6);
/* A limit_exceeded error with id null. */
struct json_object *rpc_limit_error(struct rpc_server *s, const char *fmt, ...) _printf_(2, 3);
void rpc_delivery_free_all(struct rpc_delivery *d);

/* wire-check.c */
/* 0 when line (len bytes) is strict JSON as util/json-strict.h has it; otherwise -EBADMSG
 * with "Parse error: <why> at byte <n>" (never quoting the input) in msg. line[len] must be
 * readable and NUL (the server puts one where the '\n' was). */
int rpc_wire_check(const char *line, size_t len, char *msg, size_t msg_size);
/* Whether a request's id can be echoed exactly: absent, a string, null, an integer, or a
 * finite number (a line that passed rpc_wire_check()). */
bool rpc_wire_id_valid(struct json_object *id);
