/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/server-internal.h"
#include "util/error.h"
#include "util/utf8.h"

int rpc_json_add(struct json_object *o, const char *key, struct json_object *v) {
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
        if (rpc_json_add(o, "jsonrpc", json_object_new_string("2.0")) < 0)
                return NULL;
        /* id NULL is a JSON null, which json-c adds as a NULL value. */
        if (json_object_object_add(o, "id", json_object_get(id)) < 0) {
                json_object_put(id);
                return NULL;
        }
        return TAKE_PTR(o);
}

struct json_object *rpc_result_response(struct json_object *id, struct json_object *result) {
        _cleanup_(json_object_putp) struct json_object *r = result;
        _cleanup_(json_object_putp) struct json_object *o = response_new(id);

        if (!o)
                return NULL;
        if (rpc_json_add(o, "result", TAKE_PTR(r)) < 0)
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

/* A string for people, cut before its first byte that is not valid UTF-8: a message built
 * with snprintf() may end in half a character, and nothing invalid is ever sent. */
static struct json_object *text_new(const char *s) {
        return json_object_new_string_len(s, (int) utf8_valid_prefix(s, strlen(s)));
}

/* error.data for a named error: data.name, then the handler's members (data borrowed). */
static struct json_object *error_data_named(const char *name, struct json_object *data) {
        _cleanup_(json_object_putp) struct json_object *d = json_object_new_object();

        if (!d || rpc_json_add(d, "name", text_new(name)) < 0)
                return NULL;
        if (json_object_is_type(data, json_type_object)) {
                json_object_object_foreach(data, key, value) {
                        if (strcmp(key, "name") == 0)
                                continue;
                        if (rpc_json_add(d, key, json_object_get(value)) < 0)
                                return NULL;
                }
        } else if (data) {
                /* Not members to merge: keep it rather than lose it silently. */
                if (rpc_json_add(d, "detail", json_object_get(data)) < 0)
                        return NULL;
        }
        return TAKE_PTR(d);
}

/*
 * brokerd's errors (codes from RPC_BROKER_CODE_BASE, or any with a name) always carry
 * data.name, with the handler's extra members merged in; standard errors carry data only
 * when the handler gave some. data is borrowed.
 */
struct json_object *rpc_error_response(struct rpc_server *s, struct json_object *id, int code, const char *name,
                                       const char *message, struct json_object *data) {
        _cleanup_(json_object_putp) struct json_object *o = NULL, *e = NULL;

        if (code > RPC_BROKER_CODE_BASE && code < RPC_BROKER_CODE_BASE + _BROKER_CODE_MAX && (!name || !*name))
                name = broker_code_name(code - RPC_BROKER_CODE_BASE);

        e = json_object_new_object();
        if (!e)
                return NULL;
        if (rpc_json_add(e, "code", json_object_new_int(code)) < 0 ||
            rpc_json_add(e, "message", text_new(message && *message ? message : default_message(code))) < 0)
                return NULL;
        if (name && *name) {
                if (rpc_json_add(e, "data", error_data_named(name, data)) < 0)
                        return NULL;
        } else if (data) {
                if (rpc_json_add(e, "data", json_object_get(data)) < 0)
                        return NULL;
        }

        o = response_new(id);
        if (!o || rpc_json_add(o, "error", TAKE_PTR(e)) < 0)
                return NULL;
        s->stats.errors++;
        return TAKE_PTR(o);
}

static struct json_object *error_responsev(struct rpc_server *s, struct json_object *id, int code, const char *name,
                                          const char *fmt, va_list ap) _printf_(5, 0);
static struct json_object *error_responsev(struct rpc_server *s, struct json_object *id, int code, const char *name,
                                          const char *fmt, va_list ap) {
        char message[sizeof(((struct rpc_error *) NULL)->message)];

        vsnprintf(message, sizeof(message), fmt, ap);
        return rpc_error_response(s, id, code, name, message, NULL);
}

struct json_object *rpc_error_responsef(struct rpc_server *s, struct json_object *id, int code, const char *name,
                                        const char *fmt, ...) {
        struct json_object *e;
        va_list ap;

        va_start(ap, fmt);
        e = error_responsev(s, id, code, name, fmt, ap);
        va_end(ap);
        return e;
}

struct json_object *rpc_limit_error(struct rpc_server *s, const char *fmt, ...) {
        struct json_object *e;
        va_list ap;

        va_start(ap, fmt);
        e = error_responsev(s, NULL, RPC_BROKER_CODE_BASE + BROKER_E_LIMIT, broker_code_name(BROKER_E_LIMIT), fmt, ap);
        va_end(ap);
        return e;
}

void rpc_delivery_free_all(struct rpc_delivery *d) {
        while (d) {
                struct rpc_delivery *next = d->next;

                json_object_put(d->result);
                free(d);
                d = next;
        }
}
