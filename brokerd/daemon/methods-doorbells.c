/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Doorbells on the wire (docs/protocol.md "Doorbells"): region.doorbells, and the doorbells an
 * attach reply and a region object carry. The eventfds travel as fd indices in the reply line,
 * which holds at most RPC_MAX_FDS_PER_LINE: a result that would overflow it fails before it
 * is made (limit_exceeded), so nothing has to be taken back.
 */
#include <errno.h>
#include <inttypes.h>
#include <unistd.h>

#include "daemon/methods-internal.h"

int reply_fds_room(const struct rpc_reply_fds *fds, size_t need, struct rpc_error *err) {
        if (fds && need > RPC_MAX_FDS_PER_LINE - fds->n)
                return fail_with_code(err, BROKER_E_LIMIT,
                                      "the reply would carry %zu more fds; a reply line has room for %zu more (at most %d)",
                                      need, (size_t) (RPC_MAX_FDS_PER_LINE - fds->n), RPC_MAX_FDS_PER_LINE);
        return 0;
}

/* Appends fd (taken, or lent: the broker's own) to the line as member key of o. */
static int add_fd_member(struct json_object *o, const char *key, struct rpc_reply_fds *fds, int fd, bool lent,
                         bool *ok) {
        int idx = lent ? rpc_reply_lend_fd(fds, fd) : rpc_reply_add_fd(fds, fd);

        if (idx < 0)
                return idx;
        obj_add(o, key, json_object_new_int(idx), ok);
        return 0;
}

int result_add_doorbells(struct json_object *o, struct rpc_reply_fds *fds, struct broker_doorbells *d, bool *ok) {
        struct json_object *arr = json_object_new_array();
        int q = 0;

        obj_add_u64(o, "vectors", d->vectors, ok);
        obj_add_u64(o, "generation", d->generation, ok);
        /* Without an fd table (the transport passes none) a party has no doorbells to hold. */
        for (size_t i = 0; fds && q >= 0 && i < d->n; i++) {
                struct broker_doorbell *e = &d->bells[i];
                struct json_object *b = json_object_new_object();

                obj_add_str(b, "peer", e->peer, ok);
                obj_add_u64(b, "vector", e->vector, ok);
                q = add_fd_member(b, "send", fds, TAKE_FD(e->send_fd), d->lent, ok);
                if (q >= 0)
                        q = add_fd_member(b, "recv", fds, TAKE_FD(e->recv_fd), d->lent, ok);
                arr_add(arr, b, ok);
        }
        broker_doorbells_close(d); /* what was not handed over */
        obj_add(o, "doorbells", arr, ok);
        if (d->in_guests) {
                struct json_object *guests = json_object_new_array();

                for (size_t i = 0; i < d->n_guests; i++) {
                        struct json_object *g = json_object_new_object();

                        obj_add_str(g, "domain", d->guests[i].domain, ok);
                        obj_add_u64(g, "id", d->guests[i].id, ok);
                        arr_add(guests, g, ok);
                }
                obj_add(o, "guests", guests, ok);
        }
        return q < 0 ? q : *ok ? 0 : -ENOMEM;
}

struct json_object *region_doorbells_to_json(const struct broker_region_info *r, bool *ok) {
        struct json_object *o = json_object_new_object(), *pairs = json_object_new_array();

        obj_add_u64(o, "vectors", r->bell_vectors, ok);
        for (size_t from = 0; r->bell_parties && from <= r->n_peers; from++)
                for (size_t to = 0; to <= r->n_peers; to++) {
                        struct json_object *p;

                        if (from == to || !r->bell_parties[from] || !r->bell_parties[to])
                                continue;
                        p = json_object_new_object();
                        obj_add_str(p, "from", from == 0 ? r->owner : r->peers[from - 1].domain, ok);
                        obj_add_str(p, "to", to == 0 ? r->owner : r->peers[to - 1].domain, ok);
                        arr_add(pairs, p, ok);
                }
        obj_add(o, "pairs", pairs, ok);
        return o;
}

int method_region_doorbells(const struct method_call *call, const void *args, struct json_object **ret,
                            struct rpc_error *err) {
        const struct release_args *a = args;
        struct broker_caller bc = caller_of(call->caller);
        struct broker_doorbells d;
        struct broker_error berr = {};
        struct json_object *o;
        bool ok = true;
        int q;

        if (broker_region_doorbells(call->m->broker, &bc, a->domain, a->region, &d, &berr) < 0)
                return fail_with_broker_error(err, &berr);
        q = reply_fds_room(call->fds, 2 * d.n, err);
        if (q < 0) {
                broker_doorbells_close(&d);
                return q;
        }
        o = json_object_new_object();
        obj_add_u64(o, "region", d.region, &ok);
        obj_add_str(o, "domain", a->domain, &ok);
        q = result_add_doorbells(o, call->fds, &d, &ok);
        if (q < 0) {
                json_object_put(o);
                return internal_error(err, q);
        }
        *ret = o;
        return 0;
}
