/* SPDX-License-Identifier: Apache-2.0 */
/* Regions and their peers: the writes, and store_load(), which rebuilds the daemon's index. */
#include "store-internal.h"

#include <errno.h>
#include <inttypes.h>

/* Keeps the retention's estimate of reclaimed rows an upper bound (store-internal.h). */
static void store_count_reclaimed(struct store *s, enum region_state state) {
        if (state == REGION_RECLAIMED && s->reclaimed >= 0)
                s->reclaimed++;
}

int store_region_insert(struct store *s, const struct store_region *r, uint64_t *ret_id) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_REGION_INSERT];
        int rc, q;

        q = store_check_writable(s);
        if (q < 0)
                return q;
        if (!r || !r->owner || !r->device || !r->pool || (unsigned) r->state >= _REGION_STATE_MAX ||
            r->bell_vectors > 4)
                return -EINVAL;

        if ((rc = bind_text(st, 1, r->owner)) != SQLITE_OK ||
            (rc = bind_text(st, 2, r->device)) != SQLITE_OK ||
            (rc = bind_text(st, 3, r->pool)) != SQLITE_OK ||
            (rc = bind_text(st, 4, r->label)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 5, u64_to_i64(r->base))) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 6, u64_to_i64(r->size))) != SQLITE_OK ||
            (rc = bind_text(st, 7, region_state_to_string(r->state))) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 8, r->deadline)) != SQLITE_OK ||
            (rc = sqlite3_bind_int(st, 9, r->owner_mapped)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 10, r->created)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 11, r->updated)) != SQLITE_OK ||
            (rc = sqlite3_bind_int(st, 12, (int) r->bell_vectors)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 13, u64_to_i64(r->bell_generation))) != SQLITE_OK)
                return store_fail(s, rc);

        q = stmt_run(s, st);
        if (q < 0)
                return q;
        store_count_reclaimed(s, r->state);
        if (ret_id)
                *ret_id = i64_to_u64(sqlite3_last_insert_rowid(s->db));
        return 0;
}

int store_region_update(struct store *s, uint64_t id, enum region_state state, int64_t deadline, bool owner_mapped,
                        int64_t now) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_REGION_UPDATE];
        int rc, r;

        r = store_check_writable(s);
        if (r < 0)
                return r;
        if (id == 0 || (unsigned) state >= _REGION_STATE_MAX)
                return -EINVAL;

        if ((rc = sqlite3_bind_int64(st, 1, u64_to_i64(id))) != SQLITE_OK ||
            (rc = bind_text(st, 2, region_state_to_string(state))) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 3, deadline)) != SQLITE_OK ||
            (rc = sqlite3_bind_int(st, 4, owner_mapped)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 5, now)) != SQLITE_OK)
                return store_fail(s, rc);

        r = stmt_run_changed(s, st);
        if (r >= 0)
                store_count_reclaimed(s, state);
        return r;
}

int store_region_set_bell_generation(struct store *s, uint64_t id, uint64_t generation, int64_t now) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_REGION_BELLS];
        int rc, r;

        r = store_check_writable(s);
        if (r < 0)
                return r;
        if (id == 0)
                return -EINVAL;
        if ((rc = sqlite3_bind_int64(st, 1, u64_to_i64(id))) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 2, u64_to_i64(generation))) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 3, now)) != SQLITE_OK)
                return store_fail(s, rc);
        return stmt_run_changed(s, st);
}

int store_peer_insert(struct store *s, const struct store_peer *p) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_PEER_INSERT];
        int rc, r;

        r = store_check_writable(s);
        if (r < 0)
                return r;
        if (!p || p->region == 0 || !p->domain || (p->access != ACCESS_RO && p->access != ACCESS_RW) ||
            (unsigned) p->state >= _PEER_STATE_MAX)
                return -EINVAL;

        if ((rc = sqlite3_bind_int64(st, 1, u64_to_i64(p->region))) != SQLITE_OK ||
            (rc = bind_text(st, 2, p->domain)) != SQLITE_OK ||
            (rc = bind_text(st, 3, access_to_string(p->access))) != SQLITE_OK ||
            (rc = bind_text(st, 4, peer_state_to_string(p->state))) != SQLITE_OK ||
            (rc = bind_text(st, 5, p->token)) != SQLITE_OK ||
            (rc = sqlite3_bind_int(st, 6, p->mapped)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 7, p->index)) != SQLITE_OK)
                return store_fail(s, rc);

        return stmt_run(s, st);
}

int store_peer_update(struct store *s, uint64_t region, const char *domain, enum peer_state state, bool clear_token,
                      bool mapped) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_PEER_UPDATE];
        int rc, r;

        r = store_check_writable(s);
        if (r < 0)
                return r;
        if (region == 0 || !domain || (unsigned) state >= _PEER_STATE_MAX)
                return -EINVAL;

        if ((rc = sqlite3_bind_int64(st, 1, u64_to_i64(region))) != SQLITE_OK ||
            (rc = bind_text(st, 2, domain)) != SQLITE_OK ||
            (rc = bind_text(st, 3, peer_state_to_string(state))) != SQLITE_OK ||
            (rc = sqlite3_bind_int(st, 4, clear_token)) != SQLITE_OK ||
            (rc = sqlite3_bind_int(st, 5, mapped)) != SQLITE_OK)
                return store_fail(s, rc);

        return stmt_run_changed(s, st);
}

static int store_load_regions(struct store *s, const struct store_load_ops *ops, void *userdata) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_LOAD_REGIONS];
        int rc, r;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct store_region reg = {
                        .id = i64_to_u64(sqlite3_column_int64(st, 0)),
                        .base = i64_to_u64(sqlite3_column_int64(st, 5)),
                        .size = i64_to_u64(sqlite3_column_int64(st, 6)),
                        .deadline = sqlite3_column_int64(st, 8),
                        .owner_mapped = sqlite3_column_int(st, 9) != 0,
                        .created = sqlite3_column_int64(st, 10),
                        .updated = sqlite3_column_int64(st, 11),
                        .bell_vectors = (unsigned) sqlite3_column_int(st, 12),
                        .bell_generation = i64_to_u64(sqlite3_column_int64(st, 13)),
                };
                const char *state;

                if ((r = column_text(st, 1, false, &reg.owner)) < 0 ||
                    (r = column_text(st, 2, false, &reg.device)) < 0 ||
                    (r = column_text(st, 3, false, &reg.pool)) < 0 ||
                    (r = column_text(st, 4, true, &reg.label)) < 0 ||
                    (r = column_text(st, 7, false, &state)) < 0)
                        return store_failf(s, r, "region %" PRIu64 ": unreadable row", reg.id);
                if (region_state_from_string(state, &reg.state) < 0)
                        return store_failf(s, -EIO, "region %" PRIu64 ": invalid state", reg.id);

                r = ops->region(userdata, &reg);
                if (r < 0)
                        return r;
        }
        if (rc != SQLITE_DONE)
                return store_fail(s, rc);
        return 0;
}

static int store_load_peers(struct store *s, const struct store_load_ops *ops, void *userdata) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_LOAD_PEERS];
        int rc, r;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                struct store_peer p = {
                        .region = i64_to_u64(sqlite3_column_int64(st, 0)),
                        .mapped = sqlite3_column_int(st, 5) != 0,
                };
                const char *access, *state;

                if ((r = column_text(st, 1, false, &p.domain)) < 0 ||
                    (r = column_text(st, 2, false, &access)) < 0 ||
                    (r = column_text(st, 3, false, &state)) < 0 ||
                    (r = column_text(st, 4, true, &p.token)) < 0)
                        return store_failf(s, r, "peer of region %" PRIu64 ": unreadable row", p.region);
                if (access_from_string(access, &p.access) < 0 || peer_state_from_string(state, &p.state) < 0)
                        return store_failf(s, -EIO, "peer of region %" PRIu64 ": invalid access or state",
                                           p.region);

                r = ops->peer(userdata, &p);
                if (r < 0)
                        return r;
        }
        if (rc != SQLITE_DONE)
                return store_fail(s, rc);
        return 0;
}

int store_load(struct store *s, const struct store_load_ops *ops, void *userdata) {
        bool own_txn;
        int r = 0;

        if (!ops)
                return -EINVAL;

        /* One snapshot, so every peer's region and every route's region is in the same view. */
        own_txn = sqlite3_get_autocommit(s->db);
        if (own_txn) {
                r = store_run(s, STMT_BEGIN_READ);
                if (r < 0)
                        return r;
        }

        if (ops->region)
                r = store_load_regions(s, ops, userdata);
        if (r >= 0 && ops->peer)
                r = store_load_peers(s, ops, userdata);
        if (r >= 0 && ops->route)
                r = store_load_routes(s, ops->route, userdata);

        if (own_txn) {
                if (r >= 0)
                        r = store_run(s, STMT_COMMIT);
                if (r < 0)
                        store_rollback(s);
        }
        return r;
}

