/* SPDX-License-Identifier: Apache-2.0 */
/* Routes: which region (or bounce) serves a device for a domain. */
#include "store-internal.h"

#include <errno.h>
#include <string.h>

static const char *const route_kinds[] = {
        [ROUTE_REGION] = "region",
        [ROUTE_BOUNCE] = "bounce",
};
_Static_assert(ELEMENTSOF(route_kinds) == _ROUTE_KIND_MAX, "one name per route kind");

int store_route_set(struct store *s, const struct store_route *r) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_ROUTE_SET];
        int rc, q;

        q = store_check_writable(s);
        if (q < 0)
                return q;

        if (!r || !r->device || !r->domain || (unsigned) r->kind >= ELEMENTSOF(route_kinds))
                return -EINVAL;
        /* A region route without a region, or a bounce pointing at one, would load as nonsense. */
        if ((r->kind == ROUTE_REGION) != (r->region != 0))
                return -EINVAL;

        if ((rc = bind_text(st, 1, r->device)) != SQLITE_OK ||
            (rc = bind_text(st, 2, r->domain)) != SQLITE_OK ||
            (rc = bind_text(st, 3, route_kinds[r->kind])) != SQLITE_OK ||
            (rc = bind_id(st, 4, r->region)) != SQLITE_OK ||
            (rc = bind_text(st, 5, r->reason)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 6, r->updated)) != SQLITE_OK)
                return store_fail(s, rc);

        return stmt_run(s, st);
}

int store_route_delete(struct store *s, const char *device, const char *domain) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_ROUTE_DELETE];
        int rc, r;

        r = store_check_writable(s);
        if (r < 0)
                return r;

        if (!device || !domain)
                return -EINVAL;

        if ((rc = bind_text(st, 1, device)) != SQLITE_OK ||
            (rc = bind_text(st, 2, domain)) != SQLITE_OK)
                return store_fail(s, rc);

        return stmt_run_changed(s, st);
}

int store_load_routes(struct store *s, int (*fn)(void *userdata, const struct store_route *r), void *userdata) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_LOAD_ROUTES];
        int rc, r;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct store_route rt = {
                        .region = i64_to_u64(sqlite3_column_int64(st, 3)),
                        .updated = sqlite3_column_int64(st, 5),
                };
                const char *kind;

                if ((r = column_text(st, 0, false, &rt.device)) < 0 ||
                    (r = column_text(st, 1, false, &rt.domain)) < 0 ||
                    (r = column_text(st, 2, false, &kind)) < 0 ||
                    (r = column_text(st, 4, true, &rt.reason)) < 0)
                        return store_failf(s, r, "route: unreadable row");
                if (strcmp(kind, route_kinds[ROUTE_REGION]) == 0)
                        rt.kind = ROUTE_REGION;
                else if (strcmp(kind, route_kinds[ROUTE_BOUNCE]) == 0)
                        rt.kind = ROUTE_BOUNCE;
                else
                        return store_failf(s, -EIO, "route %s/%s: invalid kind", rt.device, rt.domain);

                r = fn(userdata, &rt);
                if (r < 0)
                        return r;
        }
        if (rc != SQLITE_DONE)
                return store_fail(s, rc);
        return 0;
}

