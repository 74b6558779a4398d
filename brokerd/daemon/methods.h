/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The RPC surface of the broker: every method of docs/protocol.md, from a declarative table
 * (methods-table.c) that checks params before a thin handler calls the broker and formats
 * its answer, and the fan-out of broker events to subscribers as notifications.
 * methods_handle() is an rpc_handler_t, methods_disconnect() an rpc_disconnect_t,
 * methods_undelivered() an rpc_undelivered_t, methods_uid_known() an rpc_uid_known_t (all
 * with the methods as userdata), and methods_on_event() the broker's event callback.
 * A method that changes state is not run when sent as a notification, and is undone when
 * its result cannot be delivered.
 */
#include "core/broker.h"
#include "rpc/rpc.h"
#include "rpc/server.h"

struct methods;

/* policy_path: the file admin.reload (and SIGHUP) re-reads; may be NULL (reload refused). */
int methods_new(const char *policy_path, struct methods **ret);
void methods_free(struct methods *m);
DEFINE_CLEANUP(struct methods, methods_free);

/* Wiring, after each exists. The methods borrow both. */
void methods_set_broker(struct methods *m, struct broker *b);
/* Also installs rpc_server_notify() as the way notifications leave; NULL: they go nowhere. */
void methods_set_server(struct methods *m, struct rpc_server *s);
/* Replaces how notifications leave (tests record them); notify returns 0, or -ENOBUFS / -ENOENT
 * when that subscriber is gone, which drops its subscription and nobody else's. */
void methods_set_notify(struct methods *m,
                        int (*notify)(void *userdata, uint64_t connection, const char *method,
                                      struct json_object *params),
                        void *userdata);

int methods_handle(void *userdata, const struct rpc_caller *caller, const char *method, struct json_object *params,
                   struct rpc_reply_fds *fds, struct json_object **ret_result, struct rpc_error *err);
void methods_disconnect(void *userdata, uint64_t connection);
/* Takes back a share or an attach whose result (borrowed) never reached the caller. */
void methods_undelivered(void *userdata, const struct rpc_caller *caller, const char *method,
                         struct json_object *result);
/* Whether the policy gives uid any domain (the server caps unknown uids' connections lower). */
bool methods_uid_known(void *userdata, uid_t uid);
void methods_on_event(void *userdata, const struct broker_event *ev);

/* Policy reload for SIGHUP and admin.reload: 0, or -errno with diags filled; old policy kept. */
int methods_reload(struct methods *m, struct diag_list *diags);
