/* SPDX-License-Identifier: Apache-2.0 */
/* The audit log: appending (inside a transition), paging forward, and the newest rows. */
#include "store-internal.h"

#include <errno.h>
#include <inttypes.h>

int store_audit_append(struct store *s, const struct store_audit *a) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_AUDIT_APPEND];
        int rc, r;

        r = store_check_writable(s);
        if (r < 0)
                return r;

        if (!a || !a->actor || !a->action)
                return -EINVAL;

        if ((rc = sqlite3_bind_int64(st, 1, a->time)) != SQLITE_OK ||
            (rc = bind_text(st, 2, a->actor)) != SQLITE_OK ||
            (rc = bind_id(st, 3, a->region)) != SQLITE_OK ||
            (rc = bind_text(st, 4, a->domain)) != SQLITE_OK ||
            (rc = bind_text(st, 5, a->action)) != SQLITE_OK ||
            (rc = bind_text(st, 6, a->from_state)) != SQLITE_OK ||
            (rc = bind_text(st, 7, a->to_state)) != SQLITE_OK ||
            (rc = bind_text(st, 8, a->reason)) != SQLITE_OK)
                return store_fail(s, rc);

        return stmt_run(s, st);
}

/* Delivers every row st yields to fn, in the statement's order; the caller resets st. */
static int audit_deliver(struct store *s, sqlite3_stmt *st, store_audit_fn_t fn, void *userdata) {
        int rc, r;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct store_audit a = {
                        .seq = sqlite3_column_int64(st, 0),
                        .time = sqlite3_column_int64(st, 1),
                        .region = i64_to_u64(sqlite3_column_int64(st, 3)),
                };

                if ((r = column_text(st, 2, false, &a.actor)) < 0 ||
                    (r = column_text(st, 4, true, &a.domain)) < 0 ||
                    (r = column_text(st, 5, false, &a.action)) < 0 ||
                    (r = column_text(st, 6, true, &a.from_state)) < 0 ||
                    (r = column_text(st, 7, true, &a.to_state)) < 0 ||
                    (r = column_text(st, 8, true, &a.reason)) < 0)
                        return store_failf(s, r, "audit %" PRId64 ": unreadable row", a.seq);

                r = fn(userdata, &a);
                if (r < 0)
                        return r;
        }
        if (rc != SQLITE_DONE)
                return store_fail(s, rc);
        return 0;
}

int store_audit_list(struct store *s, int64_t after_seq, int64_t since_time, unsigned limit, store_audit_fn_t fn,
                     void *userdata) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_AUDIT_LIST];
        int rc;

        if (!fn)
                return -EINVAL;

        /* LIMIT -1 is sqlite's "no limit". */
        if ((rc = sqlite3_bind_int64(st, 1, after_seq)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 2, since_time)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 3, limit ? (int64_t) limit : -1)) != SQLITE_OK)
                return store_fail(s, rc);
        return audit_deliver(s, st, fn, userdata);
}

int store_audit_tail(struct store *s, unsigned limit, store_audit_fn_t fn, void *userdata) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_AUDIT_TAIL];
        int rc;

        if (limit == 0 || !fn)
                return -EINVAL;

        rc = sqlite3_bind_int64(st, 1, limit);
        if (rc != SQLITE_OK)
                return store_fail(s, rc);
        return audit_deliver(s, st, fn, userdata);
}
