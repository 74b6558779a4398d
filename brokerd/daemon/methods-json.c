/* SPDX-License-Identifier: Apache-2.0 */
/* The methods layer's JSON out: error replies, result builders, the region object, fds. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "daemon/methods-internal.h"
#include "util/num.h"

int fail_with_broker_error(struct rpc_error *err, const struct broker_error *berr) {
        return rpc_error_from_broker(err, berr->code, berr->message);
}

int fail_with_code(struct rpc_error *err, enum broker_code code, const char *fmt, ...) {
        char msg[BROKER_MESSAGE_MAX];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        return rpc_error_from_broker(err, code, msg);
}

int invalid_params(struct rpc_error *err, const char *member, const char *fmt, ...) {
        char msg[192];
        struct json_object *data;
        va_list ap;
        int q;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        q = rpc_error_set(err, RPC_INVALID_PARAMS, "%.64s: %s", member, msg);
        data = json_object_new_object();
        if (data) {
                struct json_object *s = json_object_new_string_len(member, (int) strnlen(member, 128));
                if (!s || json_object_object_add(data, "member", s) < 0) {
                        json_object_put(s);
                        json_object_put(data);
                        data = NULL;
                }
        }
        err->data = data;
        return q;
}

int internal_error(struct rpc_error *err, int q) {
        rpc_error_set(err, RPC_INTERNAL_ERROR, "internal error: %s", strerror(q < 0 ? -q : EIO));
        return q < 0 ? q : -EIO;
}

void obj_add(struct json_object *o, const char *key, struct json_object *v, bool *ok) {
        if (!o || !v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                *ok = false;
        }
}

void obj_add_null(struct json_object *o, const char *key, bool *ok) {
        if (!o || json_object_object_add(o, key, NULL) < 0)
                *ok = false;
}

void obj_add_str(struct json_object *o, const char *key, const char *s, bool *ok) {
        if (s)
                obj_add(o, key, json_object_new_string(s), ok);
        else
                obj_add_null(o, key, ok);
}

void obj_add_bool(struct json_object *o, const char *key, bool v, bool *ok) {
        obj_add(o, key, json_object_new_boolean(v), ok);
}

void obj_add_u64(struct json_object *o, const char *key, uint64_t v, bool *ok) {
        obj_add(o, key, v <= INT64_MAX ? json_object_new_int64((int64_t) v) : json_object_new_uint64(v), ok);
}

void obj_add_i64(struct json_object *o, const char *key, int64_t v, bool *ok) {
        obj_add(o, key, json_object_new_int64(v), ok);
}

void obj_add_addr(struct json_object *o, const char *key, uint64_t v, bool *ok) {
        char buf[NUM_FMT_MAX];
        obj_add(o, key, json_object_new_string(num_format_addr(v, buf)), ok);
}

/* Quotas at UINT64_MAX mean "unlimited": null, since no client reads 2^64-1 exactly. */
void obj_add_limit(struct json_object *o, const char *key, uint64_t v, bool *ok) {
        if (v == UINT64_MAX)
                obj_add_null(o, key, ok);
        else
                obj_add_u64(o, key, v, ok);
}

void arr_add(struct json_object *a, struct json_object *v, bool *ok) {
        if (!a || !v || json_object_array_add(a, v) < 0) {
                json_object_put(v);
                *ok = false;
        }
}

int walk_add(struct json_object *arr, struct json_object *v, bool ok) {
        if (!ok) {
                json_object_put(v);
                return -ENOMEM;
        }
        arr_add(arr, v, &ok);
        return ok ? 0 : -ENOMEM;
}

int result_finish(struct json_object *o, bool ok, struct json_object **ret, struct rpc_error *err) {
        if (!ok || !o) {
                json_object_put(o);
                return internal_error(err, -ENOMEM);
        }
        *ret = o;
        return 0;
}

struct json_object *member_get(struct json_object *o, const char *key) {
        struct json_object *v = NULL;

        if (!o || !json_object_object_get_ex(o, key, &v))
                return NULL;
        return v;
}

int region_state_result(uint64_t region, enum region_state state, struct json_object **ret, struct rpc_error *err) {
        struct json_object *o = json_object_new_object();
        bool ok = true;

        obj_add_u64(o, "region", region, &ok);
        obj_add_str(o, "state", region_state_to_string(state), &ok);
        return result_finish(o, ok, ret, err);
}

static struct json_object *unplug_to_json(const struct broker_unplug *u, bool *ok) {
        struct json_object *o = json_object_new_object();

        obj_add_i64(o, "requested_usec", u->requested, ok);
        obj_add_bool(o, "failed", u->failed, ok);
        if (u->escalated) {
                obj_add_i64(o, "escalated_usec", u->escalated, ok);
                obj_add_str(o, "escalation", escalation_to_string(u->action), ok);
                obj_add_bool(o, "escalation_failed", u->action_failed, ok);
        }
        return o;
}

static struct json_object *peer_to_json(const struct broker_peer_info *p, bool *ok) {
        struct json_object *o = json_object_new_object();

        obj_add_str(o, "domain", p->domain, ok);
        obj_add_str(o, "access", access_to_string(p->access), ok);
        obj_add_str(o, "state", peer_state_to_string(p->state), ok);
        obj_add_bool(o, "mapped", p->mapped, ok);
        if (p->mapped && p->unplug.requested)
                obj_add(o, "unplug", unplug_to_json(&p->unplug, ok), ok);
        return o;
}

struct json_object *region_to_json(const struct broker_region_info *r) {
        struct json_object *o = json_object_new_object(), *peers = json_object_new_array();
        bool ok = true;

        obj_add_u64(o, "region", r->id, &ok);
        obj_add_str(o, "owner", r->owner, &ok);
        obj_add_str(o, "device", r->device, &ok);
        obj_add_str(o, "pool", r->pool, &ok);
        obj_add_str(o, "label", r->label, &ok);
        obj_add_addr(o, "base", r->base, &ok);
        obj_add_u64(o, "size", r->size, &ok);
        obj_add_str(o, "state", region_state_to_string(r->state), &ok);
        obj_add_i64(o, "deadline_usec", r->deadline, &ok);
        obj_add_i64(o, "created_usec", r->created, &ok);
        obj_add_bool(o, "owner_mapped", r->owner_mapped, &ok);
        if (r->owner_mapped && r->owner_unplug.requested)
                obj_add(o, "owner_unplug", unplug_to_json(&r->owner_unplug, &ok), &ok);
        for (size_t i = 0; i < r->n_peers; i++)
                arr_add(peers, peer_to_json(&r->peers[i], &ok), &ok);
        obj_add(o, "peers", peers, &ok);
        obj_add(o, "doorbells", region_doorbells_to_json(r, &ok), &ok);
        if (!ok) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

/* Attaches fd (taking it, or lent) as "fd": <index>; without an fd table the reply simply has none. */
static int result_attach_fd(struct json_object *o, struct rpc_reply_fds *fds, int fd, bool lent) {
        bool ok = true;
        int idx;

        if (fd < 0)
                return 0;
        if (!fds) {
                if (!lent)
                        close(fd);
                return 0;
        }
        idx = lent ? rpc_reply_lend_fd(fds, fd) : rpc_reply_add_fd(fds, fd);
        if (idx < 0)
                return idx;
        obj_add(o, "fd", json_object_new_int(idx), &ok);
        if (!ok) {
                /* The index is already claimed: drop it from the line (closed unless lent). */
                rpc_reply_fds_truncate(fds, fds->n - 1);
                return -ENOMEM;
        }
        return 0;
}

int result_finish_fd(struct json_object *o, bool ok, struct rpc_reply_fds *fds, int fd, bool fd_lent,
                     struct broker_doorbells *d, struct json_object **ret, struct rpc_error *err) {
        int q = -ENOMEM;

        if (ok && o)
                q = result_attach_fd(o, fds, fd, fd_lent);
        else if (fd >= 0 && !fd_lent)
                close(fd);
        if (q >= 0 && d)
                q = result_add_doorbells(o, fds, d, &ok);
        else if (d)
                broker_doorbells_close(d);
        if (q < 0) {
                json_object_put(o);
                return internal_error(err, q);
        }
        *ret = o;
        return 0;
}
