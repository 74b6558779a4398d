/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The seam between the JSON-RPC transport (rpc/server.c: sockets, framing, limits, batches,
 * fd passing) and the method handlers (daemon/methods.c: JSON <-> broker calls). See
 * docs/protocol.md for the wire contract.
 *
 * The server calls the handler once per request (each element of a batch, notifications
 * included: their result is simply not sent). A handler returns 0 with *ret_result set (an
 * owned json_object, never NULL), or a negative errno with err filled. It may attach fds
 * to the reply line with rpc_reply_add_fd() or lend them with rpc_reply_lend_fd(); "fd":
 * <index> in its result names them.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct json_object;

/* JSON-RPC 2.0 standard codes. */
#define RPC_PARSE_ERROR -32700
#define RPC_INVALID_REQUEST -32600
#define RPC_METHOD_NOT_FOUND -32601
#define RPC_INVALID_PARAMS -32602
#define RPC_INTERNAL_ERROR -32603
/* brokerd's own: RPC_BROKER_CODE_BASE + enum broker_code, with data.name. */
#define RPC_BROKER_CODE_BASE 1000

/* The kernel's SCM_MAX_FD: the most one sendmsg() can pass. */
#define RPC_MAX_FDS_PER_LINE 253

struct rpc_caller {
        uint64_t connection; /* unique for the daemon's lifetime, never 0 */
        uid_t uid;
        gid_t gid;
        pid_t pid;
        /*
         * The connecting process, as a pidfd taken at accept (SO_PEERPIDFD, or pidfd_open() of the
         * SO_PEERCRED pid on older kernels: see util/pidfd.h). Borrowed: valid while the handler
         * runs; -1 if none could be taken.
         */
        int pidfd;
        bool admin;          /* connected on the admin socket */
        bool notification;   /* the request has no id: no reply will be sent */
};

struct rpc_error {
        int code;            /* a standard code above, or RPC_BROKER_CODE_BASE + n */
        char name[48];       /* data.name: the stable symbolic name; "" for standard codes */
        char message[256];
        struct json_object *data; /* optional extra data members (owned; merged into error.data) */
};

/* Fills err for a brokerd error code (enum broker_code) and returns -errno for it. */
int rpc_error_from_broker(struct rpc_error *err, int broker_code, const char *message);
/* Fills err for a standard code; returns -EINVAL. */
int rpc_error_set(struct rpc_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

struct rpc_reply_fds {
        int fds[RPC_MAX_FDS_PER_LINE];
        bool lent[RPC_MAX_FDS_PER_LINE]; /* the handler's own: never closed by the server */
        size_t n, n_lent;
};

/* Takes ownership of fd (closes it on failure); returns its index in the line, or -E2BIG. */
int rpc_reply_add_fd(struct rpc_reply_fds *r, int fd);
/*
 * Lends fd: it stays the handler's, who closes it only with lent_fd_close() (util/lent-fd.h):
 * the server then dups it first if a line still holds it. A line that leaves before its
 * lender lets go (every reply, unless a later request takes its region down before the
 * turn's flush) cost no dup. Returns its index in the line, or -E2BIG (nothing to close).
 */
int rpc_reply_lend_fd(struct rpc_reply_fds *r, int fd);
/* Every lent fd of r replaced by a dup of its own (a transport that keeps the fds past the
 * lender's next call does this first); -errno when one cannot be (that one stays lent). */
int rpc_reply_fds_pin(struct rpc_reply_fds *r);
/* Takes the fds from index from on off the line again (closing those not lent). */
void rpc_reply_fds_truncate(struct rpc_reply_fds *r, size_t from);

typedef int (*rpc_handler_t)(void *userdata, const struct rpc_caller *caller, const char *method,
                             struct json_object *params, struct rpc_reply_fds *fds,
                             struct json_object **ret_result, struct rpc_error *err);
/* Called when a connection closes (for dropping its subscriptions). */
typedef void (*rpc_disconnect_t)(void *userdata, uint64_t connection);
/*
 * A reply that carried a result could not be delivered: the connection closed (or was dropped)
 * before the whole line was written. The handler undoes what the method did. result is the
 * result object that was to be sent (borrowed).
 */
typedef void (*rpc_undelivered_t)(void *userdata, const struct rpc_caller *caller, const char *method,
                                  struct json_object *result);
/* Whether the policy knows uid (it acts for some domain); decides which connection cap applies. */
typedef bool (*rpc_uid_known_t)(void *userdata, uid_t uid);
