/* SPDX-License-Identifier: Apache-2.0 */
/* The server object, its hooks, and the reaper that finishes closed connections. */
#include "rpc/server.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "rpc/server-internal.h"
#include "util/hashmap.h"

void rpc_server_reap(struct rpc_server *s) {
        struct rpc_connection *c;

        /* The hooks may close more connections: they land on the list and are reaped too. */
        while ((c = s->dead)) {
                struct rpc_delivery *d;

                s->dead = c->next;
                while ((d = c->undelivered)) {
                        c->undelivered = d->next;
                        if (s->on_undelivered)
                                s->on_undelivered(s->userdata, &c->caller, d->method, d->result);
                        d->next = NULL;
                        rpc_delivery_free_all(d);
                }
                if (s->on_disconnect)
                        s->on_disconnect(s->userdata, c->caller.connection);
                rpc_connection_free(c);
        }
}

static int reaper_dispatch(sd_event_source *source, void *userdata) {
        (void) source;
        rpc_server_reap(userdata);
        return 0;
}

void rpc_server_wake_reaper(struct rpc_server *s) {
        (void) sd_event_source_set_enabled(s->reaper, SD_EVENT_ONESHOT);
}

/* 0 in the limits added later means the default, so that older initializers keep working. */
static int limits_check(const struct rpc_server_limits *in, struct rpc_server_limits *ret) {
        const struct rpc_server_limits def = RPC_SERVER_LIMITS_DEFAULT;
        struct rpc_server_limits lim = in ? *in : def;

        if (lim.max_message == 0 || lim.max_message > INT_MAX - 1 || lim.max_depth == 0 || lim.max_depth > INT_MAX ||
            lim.max_batch == 0 || lim.max_connections_per_uid == 0 || lim.max_pending_bytes == 0)
                return -EINVAL;
        if (lim.line_timeout_usec == 0)
                lim.line_timeout_usec = def.line_timeout_usec;
        if (lim.max_connections == 0)
                lim.max_connections = def.max_connections;
        if (lim.max_connections_unknown_uid == 0)
                lim.max_connections_unknown_uid = def.max_connections_unknown_uid;
        *ret = lim;
        return 0;
}

/*
 * sd-event opens a clock's timerfd when its first time source is added and keeps it. Add one
 * now for CLOCK_MONOTONIC (partial-line and accept timers), so the daemon's fd count is the
 * same before and after its first slow client: a stable baseline is what makes fd leaks visible.
 */
static int warm_monotonic_clock(sd_event *event) {
        sd_event_source *warm = NULL;
        int r = sd_event_add_time(event, &warm, CLOCK_MONOTONIC, UINT64_MAX, 0, NULL, NULL);

        if (r < 0)
                return r;
        sd_event_source_disable_unref(warm);
        return 0;
}

int rpc_server_new(sd_event *event, const struct rpc_server_limits *limits, rpc_handler_t handler,
                   rpc_disconnect_t on_disconnect, void *userdata, struct rpc_server **ret) {
        _cleanup_(rpc_server_freep) struct rpc_server *s = NULL;
        struct rpc_server_limits lim;
        int r;

        if (!event || !handler || !ret)
                return -EINVAL;
        r = limits_check(limits, &lim);
        if (r < 0)
                return r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->epoll_fd = -EBADF;
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
        s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (s->epoll_fd < 0)
                return negative_errno();
        r = sd_event_add_io(event, &s->connections_source, s->epoll_fd, EPOLLIN, rpc_connections_io, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->connections_source, "rpc-connections");
        r = sd_event_add_defer(event, &s->reaper, reaper_dispatch, s);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s->reaper, "rpc-reaper");
        r = sd_event_source_set_enabled(s->reaper, SD_EVENT_OFF);
        if (r < 0)
                return r;
        r = warm_monotonic_clock(event);
        if (r < 0)
                return r;
        s->borrower.keep = rpc_server_keep_lent;
        lent_fd_borrower_add(&s->borrower);

        *ret = TAKE_PTR(s);
        return 0;
}

void rpc_server_free(struct rpc_server *s) {
        struct rpc_listener *l;

        if (!s)
                return;
        if (s->borrower.keep)
                lent_fd_borrower_remove(&s->borrower);
        while ((l = s->listeners)) {
                s->listeners = l->next;
                rpc_listener_free(l);
        }
        while (s->connections)
                rpc_connection_close(s->connections, false);
        rpc_server_reap(s);

        s->accept_timer = sd_event_source_disable_unref(s->accept_timer);
        s->reaper = sd_event_source_disable_unref(s->reaper);
        s->connections_source = sd_event_source_disable_unref(s->connections_source);
        if (s->epoll_fd >= 0)
                close(s->epoll_fd);
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
        if (!msg || rpc_json_add(msg, "jsonrpc", json_object_new_string("2.0")) < 0 ||
            rpc_json_add(msg, "method", json_object_new_string(method)) < 0 ||
            rpc_json_add(msg, "params", params ? json_object_get(params) : json_object_new_object()) < 0)
                return -ENOMEM;
        return rpc_connection_queue(c, msg, NULL, NULL);
}

void rpc_server_set_undelivered(struct rpc_server *s, rpc_undelivered_t fn) {
        s->on_undelivered = fn;
}

void rpc_server_set_uid_known(struct rpc_server *s, rpc_uid_known_t fn) {
        s->uid_known = fn;
}

void rpc_server_set_output_gate(struct rpc_server *s, bool (*gate)(void *userdata), void *userdata) {
        s->output_gate = gate;
        s->gate_userdata = userdata;
}

void rpc_server_set_input_done(struct rpc_server *s, void (*fn)(void *userdata, unsigned n), void *userdata) {
        s->input_done = fn;
        s->input_done_userdata = userdata;
}

void rpc_server_get_stats(const struct rpc_server *s, struct rpc_server_stats *ret) {
        *ret = s->stats;
}

const struct rpc_server_limits *rpc_server_limits(const struct rpc_server *s) {
        return &s->limits;
}
