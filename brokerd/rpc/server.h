/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The JSON-RPC 2.0 server on Unix stream sockets, driven by sd-event: newline-delimited
 * messages, batches and notifications per the spec, SO_PEERCRED identity, fds passed with
 * SCM_RIGHTS, and a limit on everything a client controls (docs/protocol.md#limits).
 * A client that breaks a limit gets an error and is disconnected; nobody else notices.
 * Writes never block the loop: output is queued per connection up to max_pending_bytes,
 * beyond which the connection is dropped.
 * The wire never lies: a line that json-c would read as something other than what was sent
 * (invalid UTF-8, a lone surrogate escape, NaN, an integer beyond 64 bits) is refused whole
 * (-32700), and a reply's id is exactly the request's (docs/protocol.md#the-wire-text-numbers-ids).
 * Hooks run from the loop, never from inside a handler or rpc_server_notify(): for each
 * result whose reply line was not wholly written when its connection closed, the undelivered
 * hook (its fds are closed); then the disconnect hook, once per connection.
 * Internals: server-internal.h.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "rpc/rpc.h"
#include "util/macro.h"

struct rpc_server_limits {
        size_t max_message;             /* bytes per line, default 64 KiB */
        unsigned max_depth;             /* JSON nesting, default 16 */
        unsigned max_batch;             /* default 32 */
        unsigned max_connections_per_uid; /* default 16 */
        unsigned max_connections;       /* all connections, default 1024 (0: the default) */
        /* agent-socket connections per uid the uid_known hook denies, default 2 (0: the default) */
        unsigned max_connections_unknown_uid;
        size_t max_pending_bytes;       /* queued output per connection, default 1 MiB */
        uint64_t line_timeout_usec;     /* a started message must end within this, default 30 s */
};

#define RPC_SERVER_LIMITS_DEFAULT                                               \
        ((struct rpc_server_limits) {                                           \
                .max_message = 64 * 1024, .max_depth = 16, .max_batch = 32,    \
                .max_connections_per_uid = 16, .max_connections = 1024,  \
                .max_connections_unknown_uid = 2, .max_pending_bytes = 1024 * 1024, \
                .line_timeout_usec = 30 * UINT64_C(1000000),                    \
        })

struct rpc_server_stats {
        uint64_t connections;   /* open now */
        uint64_t accepted;      /* since start */
        uint64_t requests;
        uint64_t errors;        /* error replies sent */
        uint64_t dropped;       /* connections dropped for breaking a limit or being slow */
        uint64_t refused;       /* of those, refused at accept by a connection cap */
};

struct rpc_server;

int rpc_server_new(sd_event *event, const struct rpc_server_limits *limits, rpc_handler_t handler,
                   rpc_disconnect_t on_disconnect, void *userdata, struct rpc_server **ret);
void rpc_server_free(struct rpc_server *s);
DEFINE_CLEANUP(struct rpc_server, rpc_server_free);

/* Serve an already bound and listening socket (socket activation). Takes the fd on success. */
int rpc_server_add_listener_fd(struct rpc_server *s, int fd, bool admin);
/* Bind path (replacing a stale socket file), chmod mode, chown to group unless (gid_t) -1, listen. */
int rpc_server_listen(struct rpc_server *s, const char *path, mode_t mode, gid_t group, bool admin);

/* Queue a notification for one connection. -ENOENT: no such connection; -ENOBUFS: it was over
 * its pending-output limit and has been dropped. Never blocks. */
int rpc_server_notify(struct rpc_server *s, uint64_t connection, const char *method, struct json_object *params);

/*
 * Optional: a gate on all output. While gate(userdata) says false, replies and notifications
 * are queued but not written (the pending-output limit still counts them); the user then calls
 * rpc_server_flush() once it says true again. brokerd holds output until its commits are
 * durable (group sync).
 */
void rpc_server_set_output_gate(struct rpc_server *s, bool (*gate)(void *userdata), void *userdata);
/*
 * Optional: fn(userdata, n) runs after the input of n connections that were ready together was
 * handled (every whole request in it answered or queued), from the loop: where the user may
 * flush held output at once when nothing else is ready, rather than one loop turn later.
 */
void rpc_server_set_input_done(struct rpc_server *s, void (*fn)(void *userdata, unsigned n), void *userdata);
/* Writes what every connection has queued, as far as its socket takes it. */
void rpc_server_flush(struct rpc_server *s);
/* Whether any connection has output queued. */
bool rpc_server_has_output(const struct rpc_server *s);

/* Optional hooks (see rpc.h); both get the server's userdata. */
void rpc_server_set_undelivered(struct rpc_server *s, rpc_undelivered_t fn);
void rpc_server_set_uid_known(struct rpc_server *s, rpc_uid_known_t fn);

void rpc_server_get_stats(const struct rpc_server *s, struct rpc_server_stats *ret);
const struct rpc_server_limits *rpc_server_limits(const struct rpc_server *s);
