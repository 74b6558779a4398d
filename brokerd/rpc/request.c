/* SPDX-License-Identifier: Apache-2.0 */
/* Framing: one line is one request or a batch; each request goes to the handler. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/server-internal.h"

static bool is_json_ws(char ch) {
        return ch == ' ' || ch == '\t' || ch == '\r';
}

/* Remembers a result on its way out, for the undelivered hook. Without memory the reply is
 * still sent, only not watched. */
static void deliveries_add(struct rpc_delivery **list, const char *method, struct json_object *result) {
        size_t n = strlen(method) + 1;
        struct rpc_delivery *d = malloc(sizeof(*d) + n);

        if (!d)
                return;
        memcpy(d->method, method, n);
        d->result = json_object_get(result);
        d->next = NULL;
        while (*list)
                list = &(*list)->next;
        *list = d;
}

/* Calls the handler; returns the response, or NULL for a notification (or out of memory). */
static struct json_object *request_call(struct rpc_connection *c, struct json_object *id, bool notification,
                                        const char *method, struct json_object *params, struct rpc_reply_fds *fds,
                                        struct rpc_delivery **deliveries) {
        struct rpc_server *s = c->server;
        _cleanup_(json_object_putp) struct json_object *result = NULL;
        struct rpc_caller caller = c->caller;
        struct rpc_error err = {};
        struct json_object *response;
        size_t n_fds = fds->n;
        int r;

        caller.notification = notification;
        r = s->handler(s->userdata, &caller, method, params, fds, &result, &err);
        if (r < 0 || !result || notification)
                rpc_reply_fds_truncate(fds, n_fds);
        if (notification) {
                json_object_putp(&err.data);
                return NULL;
        }
        if (r < 0 || !result) {
                if (err.code == 0)
                        rpc_error_set(&err, RPC_INTERNAL_ERROR, "Internal error: %s", strerror(r < 0 ? -r : EIO));
                response = rpc_error_response(s, id, err.code, err.name, err.message, err.data);
                json_object_putp(&err.data);
                return response;
        }
        json_object_putp(&err.data);
        response = rpc_result_response(id, json_object_get(result));
        if (response)
                deliveries_add(deliveries, method, result);
        return response;
}

/* One request object: the response to send, or NULL for a notification. */
static struct json_object *request_handle(struct rpc_connection *c, struct json_object *req,
                                          struct rpc_reply_fds *fds, struct rpc_delivery **deliveries) {
        struct rpc_server *s = c->server;
        _cleanup_(json_object_putp) struct json_object *own_params = NULL;
        struct json_object *id = NULL, *v, *params;
        const char *method;
        bool has_id, id_ok;

        s->stats.requests++;

        if (!json_object_is_type(req, json_type_object))
                return rpc_error_responsef(s, NULL, RPC_INVALID_REQUEST, NULL, "Invalid Request: not an object");

        has_id = json_object_object_get_ex(req, "id", &id);
        id_ok = rpc_wire_id_valid(id);
        if (!id_ok)
                id = NULL;

        if (!json_object_object_get_ex(req, "jsonrpc", &v) || !json_object_is_type(v, json_type_string) ||
            strcmp(json_object_get_string(v), "2.0") != 0)
                return rpc_error_responsef(s, id, RPC_INVALID_REQUEST, NULL,
                                           "Invalid Request: \"jsonrpc\" must be \"2.0\"");
        if (!json_object_object_get_ex(req, "method", &v) || !json_object_is_type(v, json_type_string))
                return rpc_error_responsef(s, id, RPC_INVALID_REQUEST, NULL,
                                           "Invalid Request: \"method\" must be a string");
        method = json_object_get_string(v);
        if (!id_ok)
                return rpc_error_responsef(s, NULL, RPC_INVALID_REQUEST, NULL,
                                           "Invalid Request: \"id\" must be a string, a finite number or null");

        if (!json_object_object_get_ex(req, "params", &params)) {
                params = own_params = json_object_new_object();
                if (!params)
                        return NULL;
        } else if (json_object_is_type(params, json_type_array)) {
                /* Well-formed JSON-RPC, but no brokerd method takes positional params. */
                if (!has_id)
                        return NULL;
                return rpc_error_responsef(s, id, RPC_INVALID_PARAMS, NULL, "params must be an object");
        } else if (!json_object_is_type(params, json_type_object))
                return rpc_error_responsef(s, id, RPC_INVALID_REQUEST, NULL,
                                           "Invalid Request: \"params\" must be an object or an array");

        return request_call(c, id, !has_id, method, params, fds, deliveries);
}

static struct json_object *batch_handle(struct rpc_connection *c, struct json_object *batch,
                                        struct rpc_reply_fds *fds, struct rpc_delivery **deliveries) {
        struct rpc_server *s = c->server;
        size_t n = json_object_array_length(batch);
        _cleanup_(json_object_putp) struct json_object *reply = NULL;

        if (n == 0) {
                s->stats.requests++;
                return rpc_error_responsef(s, NULL, RPC_INVALID_REQUEST, NULL, "Invalid Request: empty batch");
        }
        if (n > s->limits.max_batch) {
                s->stats.requests++;
                return rpc_error_responsef(s, NULL, RPC_INVALID_REQUEST, NULL,
                                           "Invalid Request: batch of %zu requests is over the limit of %u", n,
                                           s->limits.max_batch);
        }
        reply = json_object_new_array();
        if (!reply)
                return NULL;
        for (size_t i = 0; i < n && !c->closed; i++) {
                struct json_object *r = request_handle(c, json_object_array_get_idx(batch, i), fds, deliveries);

                if (r && json_object_array_add(reply, r) < 0)
                        json_object_put(r);
        }
        if (json_object_array_length(reply) == 0)
                return NULL;
        return TAKE_PTR(reply);
}

/* 0 with the line as JSON in *ret (NULL for the JSON null), or -EBADMSG with the error reply
 * already queued. */
static int line_parse(struct rpc_connection *c, const char *line, size_t len, struct json_object **ret) {
        struct rpc_server *s = c->server;
        char why[sizeof(((struct rpc_error *) NULL)->message)];
        _cleanup_(json_object_putp) struct json_object *msg = NULL, *e = NULL;
        enum json_tokener_error jerr;
        size_t parse_end;

        if (rpc_wire_check(line, len, why, sizeof(why)) < 0) {
                s->stats.requests++;
                e = rpc_error_responsef(s, NULL, RPC_PARSE_ERROR, NULL, "%s", why);
                if (e)
                        (void) rpc_connection_queue(c, e, NULL, NULL);
                return -EBADMSG;
        }

        /* line[len] is the NUL that replaced '\n': it ends the tokener's input (a trailing number
         * is complete), and parse_end == len proves no byte was left over (an embedded NUL,
         * garbage after the value). */
        msg = json_tokener_parse_ex(s->tok, line, (int) len + 1);
        jerr = json_tokener_get_error(s->tok);
        parse_end = json_tokener_get_parse_end(s->tok);
        /* A line that failed to parse leaves its partial objects on the tokener's stack; they go
         * now, not when the next line comes, so nothing of one client's line outlives it. */
        json_tokener_reset(s->tok);
        if (jerr == json_tokener_success && parse_end == len) {
                *ret = TAKE_PTR(msg);
                return 0;
        }

        s->stats.requests++;
        if (jerr == json_tokener_error_depth) {
                rpc_connection_fail(c, rpc_error_responsef(s, NULL, RPC_PARSE_ERROR, NULL,
                                                           "Parse error: nesting deeper than %u", s->limits.max_depth));
                return -EBADMSG;
        }
        e = rpc_error_responsef(s, NULL, RPC_PARSE_ERROR, NULL, "Parse error: %s",
                                jerr != json_tokener_success ? json_tokener_error_desc(jerr)
                                                             : "unexpected data after the JSON value");
        if (e)
                (void) rpc_connection_queue(c, e, NULL, NULL);
        return -EBADMSG;
}

void rpc_connection_handle_line(struct rpc_connection *c, const char *line, size_t len) {
        _cleanup_(json_object_putp) struct json_object *msg = NULL, *reply = NULL;
        struct rpc_reply_fds fds = { .n = 0 };
        struct rpc_delivery *deliveries = NULL;
        size_t i;

        for (i = 0; i < len && is_json_ws(line[i]); i++)
                ;
        if (i == len)
                return;

        if (line_parse(c, line, len, &msg) < 0)
                return;
        /* A later request of a batch may let go of what an earlier one lent (rpc_server_keep_lent()). */
        c->server->building = &fds;
        c->server->building_c = c;
        if (json_object_is_type(msg, json_type_array))
                reply = batch_handle(c, msg, &fds, &deliveries);
        else
                reply = request_handle(c, msg, &fds, &deliveries);
        c->server->building = NULL;
        c->server->building_c = NULL;

        if (!reply || c->closed) {
                rpc_reply_fds_truncate(&fds, 0);
                if (deliveries) {
                        /* Results that no line will carry: the connection is lost to the peer. */
                        rpc_connection_undelivered(c, deliveries);
                        rpc_connection_close(c, false);
                }
                return;
        }
        (void) rpc_connection_queue(c, reply, &fds, deliveries);
}
