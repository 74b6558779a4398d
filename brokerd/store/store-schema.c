/* SPDX-License-Identifier: Apache-2.0 */
/* The store's SQL: the schema's migrations, the kept statements, and running migrations. */
#include <inttypes.h>
#include <stdio.h>

#include "store-internal.h"

/*
 * migrations[i] moves a database from user_version i to i + 1. Released entries never
 * change: a fix is a new entry. Each runs in its own BEGIN IMMEDIATE transaction together
 * with its user_version bump, so a database is always at exactly one version.
 */
static const char *const migrations[] = {
        /* 0 -> 1 */
        "CREATE TABLE regions ("
        "        id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "        owner TEXT NOT NULL,"
        "        device TEXT NOT NULL,"
        "        pool TEXT NOT NULL,"
        "        label TEXT,"
        "        base INTEGER NOT NULL,"
        "        size INTEGER NOT NULL,"
        "        state TEXT NOT NULL CHECK (state IN ('offered', 'active', 'revoking', 'reclaimed')),"
        "        deadline INTEGER NOT NULL DEFAULT 0,"
        "        owner_mapped INTEGER NOT NULL DEFAULT 0 CHECK (owner_mapped IN (0, 1)),"
        "        created INTEGER NOT NULL,"
        "        updated INTEGER NOT NULL"
        ") STRICT;"
        "CREATE INDEX regions_state ON regions(state);"
        "CREATE TABLE peers ("
        "        region INTEGER NOT NULL REFERENCES regions(id) ON DELETE CASCADE,"
        "        domain TEXT NOT NULL,"
        "        access TEXT NOT NULL CHECK (access IN ('ro', 'rw')),"
        "        state TEXT NOT NULL CHECK (state IN ('granted', 'attached', 'released', 'revoked')),"
        "        token TEXT UNIQUE CHECK (token IS NULL OR length(token) = 32),"
        "        mapped INTEGER NOT NULL DEFAULT 0 CHECK (mapped IN (0, 1)),"
        "        PRIMARY KEY (region, domain)"
        ") STRICT;"
        "CREATE TABLE routes ("
        "        device TEXT NOT NULL,"
        "        domain TEXT NOT NULL,"
        "        kind TEXT NOT NULL CHECK (kind IN ('region', 'bounce')),"
        "        region INTEGER REFERENCES regions(id),"
        "        reason TEXT,"
        "        updated INTEGER NOT NULL,"
        "        PRIMARY KEY (device, domain)"
        ") STRICT;"
        "CREATE TABLE audit ("
        "        seq INTEGER PRIMARY KEY AUTOINCREMENT,"
        "        time INTEGER NOT NULL,"
        "        actor TEXT NOT NULL,"
        "        region INTEGER,"
        "        domain TEXT,"
        "        action TEXT NOT NULL,"
        "        from_state TEXT,"
        "        to_state TEXT,"
        "        reason TEXT"
        ") STRICT;"
        "CREATE INDEX audit_time ON audit(time);",
        /* 1 -> 2: what retention's deletes need (the partial index matches their WHERE). */
        "CREATE INDEX regions_reclaimed ON regions(updated) WHERE state = 'reclaimed';",
        /* 2 -> 3: doorbells (docs/protocol.md "Doorbells"): vectors per ordered pair of parties, and
         * the generation of the region's eventfds (bumped when a start had to make them anew). */
        "ALTER TABLE regions ADD COLUMN bell_vectors INTEGER NOT NULL DEFAULT 0"
        "        CHECK (bell_vectors BETWEEN 0 AND 4);"
        "ALTER TABLE regions ADD COLUMN bell_generation INTEGER NOT NULL DEFAULT 0;",
        /* 3 -> 4: fewer b-trees written per commit (docs/bench-control-plane.md "Where a grant
         * step's time goes"): peers and routes keyed by their primary key alone (WITHOUT ROWID:
         * one b-tree each instead of a table and its key's index), the share order of peers in
         * a column of its own (it was the rowid), no index on regions.state (the start reads every
         * live region anyway; retention has its partial index), and no index on tokens (128 random
         * bits; the broker refuses a token it already holds). */
        "CREATE TABLE peers_v4 ("
        "        region INTEGER NOT NULL REFERENCES regions(id) ON DELETE CASCADE,"
        "        domain TEXT NOT NULL,"
        "        ord INTEGER NOT NULL,"
        "        access TEXT NOT NULL CHECK (access IN ('ro', 'rw')),"
        "        state TEXT NOT NULL CHECK (state IN ('granted', 'attached', 'released', 'revoked')),"
        "        token TEXT CHECK (token IS NULL OR length(token) = 32),"
        "        mapped INTEGER NOT NULL DEFAULT 0 CHECK (mapped IN (0, 1)),"
        "        PRIMARY KEY (region, domain)"
        ") STRICT, WITHOUT ROWID;"
        "INSERT INTO peers_v4 (region, domain, ord, access, state, token, mapped)"
        "        SELECT region, domain, row_number() OVER (PARTITION BY region ORDER BY rowid) - 1,"
        "               access, state, token, mapped FROM peers;"
        "DROP TABLE peers;"
        "ALTER TABLE peers_v4 RENAME TO peers;"
        "CREATE TABLE routes_v4 ("
        "        device TEXT NOT NULL,"
        "        domain TEXT NOT NULL,"
        "        kind TEXT NOT NULL CHECK (kind IN ('region', 'bounce')),"
        "        region INTEGER REFERENCES regions(id),"
        "        reason TEXT,"
        "        updated INTEGER NOT NULL,"
        "        PRIMARY KEY (device, domain)"
        ") STRICT, WITHOUT ROWID;"
        "INSERT INTO routes_v4 SELECT device, domain, kind, region, reason, updated FROM routes;"
        "DROP TABLE routes;"
        "ALTER TABLE routes_v4 RENAME TO routes;"
        "DROP INDEX regions_state;",
        /* 4 -> 5: an audit row is one b-tree page a commit, no longer three: no index on time
         * (retention by age goes oldest first by seq, whose order is time's but for clock steps),
         * and no AUTOINCREMENT (whose sqlite_sequence row every append rewrote): seq stays
         * increasing because retention never deletes the newest row, and the numbering the old
         * sequence reached is kept by a row of this migration when rows past the newest are gone. */
        "CREATE TABLE audit_v5 ("
        "        seq INTEGER PRIMARY KEY,"
        "        time INTEGER NOT NULL,"
        "        actor TEXT NOT NULL,"
        "        region INTEGER,"
        "        domain TEXT,"
        "        action TEXT NOT NULL,"
        "        from_state TEXT,"
        "        to_state TEXT,"
        "        reason TEXT"
        ") STRICT;"
        "INSERT INTO audit_v5 SELECT seq, time, actor, region, domain, action, from_state, to_state, reason FROM audit;"
        "INSERT INTO audit_v5 (seq, time, actor, action, reason)"
        "        SELECT q.seq, CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER), 'broker', 'schema',"
        "               'audit numbering kept across schema 5'"
        "        FROM sqlite_sequence AS q WHERE q.name = 'audit'"
        "        AND q.seq > (SELECT coalesce(max(seq), 0) FROM audit);"
        "DROP TABLE audit;"
        "DELETE FROM sqlite_sequence WHERE name = 'audit';"
        "ALTER TABLE audit_v5 RENAME TO audit;",
        /* 5 -> 6: the same rules for regions.state and peers.state, written as comparisons joined
         * by OR: sqlite checks `x IN (four constants)` against an ephemeral b-tree that it builds
         * and frees again in every UPDATE that sets x (a pager opened and closed, with their
         * allocations: a fifth of the daemon's instructions a grant cycle, callgrind in
         * docs/bench-control-plane.md "Sixth pass"). The tables rebuilt as sqlite's ALTER TABLE documentation does it (the
         * runner turns foreign keys off and checks them before the commit); regions keeps its
         * AUTOINCREMENT numbering (its sqlite_sequence row carried over before any insert). */
        "CREATE TABLE regions_v6 ("
        "        id INTEGER PRIMARY KEY AUTOINCREMENT,"
        "        owner TEXT NOT NULL,"
        "        device TEXT NOT NULL,"
        "        pool TEXT NOT NULL,"
        "        label TEXT,"
        "        base INTEGER NOT NULL,"
        "        size INTEGER NOT NULL,"
        "        state TEXT NOT NULL"
        "                CHECK (state = 'offered' OR state = 'active' OR state = 'revoking' OR state = 'reclaimed'),"
        "        deadline INTEGER NOT NULL DEFAULT 0,"
        "        owner_mapped INTEGER NOT NULL DEFAULT 0 CHECK (owner_mapped IN (0, 1)),"
        "        created INTEGER NOT NULL,"
        "        updated INTEGER NOT NULL,"
        "        bell_vectors INTEGER NOT NULL DEFAULT 0 CHECK (bell_vectors BETWEEN 0 AND 4),"
        "        bell_generation INTEGER NOT NULL DEFAULT 0"
        ") STRICT;"
        "INSERT INTO sqlite_sequence (name, seq) SELECT 'regions_v6', seq FROM sqlite_sequence WHERE name = 'regions';"
        "INSERT INTO regions_v6 (id, owner, device, pool, label, base, size, state, deadline, owner_mapped, created,"
        "                        updated, bell_vectors, bell_generation)"
        "        SELECT id, owner, device, pool, label, base, size, state, deadline, owner_mapped, created, updated,"
        "               bell_vectors, bell_generation FROM regions;"
        "DROP TABLE regions;"
        "ALTER TABLE regions_v6 RENAME TO regions;"
        "CREATE INDEX regions_reclaimed ON regions(updated) WHERE state = 'reclaimed';"
        "CREATE TABLE peers_v6 ("
        "        region INTEGER NOT NULL REFERENCES regions(id) ON DELETE CASCADE,"
        "        domain TEXT NOT NULL,"
        "        ord INTEGER NOT NULL,"
        "        access TEXT NOT NULL CHECK (access IN ('ro', 'rw')),"
        "        state TEXT NOT NULL"
        "                CHECK (state = 'granted' OR state = 'attached' OR state = 'released' OR state = 'revoked'),"
        "        token TEXT CHECK (token IS NULL OR length(token) = 32),"
        "        mapped INTEGER NOT NULL DEFAULT 0 CHECK (mapped IN (0, 1)),"
        "        PRIMARY KEY (region, domain)"
        ") STRICT, WITHOUT ROWID;"
        "INSERT INTO peers_v6 (region, domain, ord, access, state, token, mapped)"
        "        SELECT region, domain, ord, access, state, token, mapped FROM peers;"
        "DROP TABLE peers;"
        "ALTER TABLE peers_v6 RENAME TO peers;",
};
_Static_assert(ELEMENTSOF(migrations) == STORE_SCHEMA_VERSION, "one migration per version");

const char *const store_statement_sql[_STMT_MAX] = {
        [STMT_BEGIN] = "BEGIN IMMEDIATE",
        [STMT_BEGIN_READ] = "BEGIN DEFERRED",
        [STMT_COMMIT] = "COMMIT",
        [STMT_ROLLBACK] = "ROLLBACK",
        [STMT_REGION_INSERT] =
                "INSERT INTO regions (owner, device, pool, label, base, size, state, deadline, owner_mapped,"
                "                     created, updated, bell_vectors, bell_generation)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        [STMT_REGION_UPDATE] =
                "UPDATE regions SET state = ?2, deadline = ?3, owner_mapped = ?4, updated = ?5 WHERE id = ?1",
        [STMT_REGION_BELLS] = "UPDATE regions SET bell_generation = ?2, updated = ?3 WHERE id = ?1",
        [STMT_PEER_INSERT] =
                "INSERT INTO peers (region, domain, access, state, token, mapped, ord)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        [STMT_PEER_UPDATE] =
                "UPDATE peers SET state = ?3, token = CASE WHEN ?4 THEN NULL ELSE token END, mapped = ?5"
                " WHERE region = ?1 AND domain = ?2",
        [STMT_ROUTE_SET] =
                "INSERT INTO routes (device, domain, kind, region, reason, updated)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                " ON CONFLICT (device, domain) DO UPDATE SET"
                "   kind = excluded.kind, region = excluded.region, reason = excluded.reason,"
                "   updated = excluded.updated",
        [STMT_ROUTE_DELETE] = "DELETE FROM routes WHERE device = ?1 AND domain = ?2",
        [STMT_AUDIT_APPEND] =
                "INSERT INTO audit (time, actor, region, domain, action, from_state, to_state, reason)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        [STMT_LOAD_REGIONS] =
                "SELECT id, owner, device, pool, label, base, size, state, deadline, owner_mapped,"
                "       created, updated, bell_vectors, bell_generation"
                " FROM regions WHERE state != 'reclaimed' ORDER BY id",
        [STMT_LOAD_PEERS] =
                "SELECT p.region, p.domain, p.access, p.state, p.token, p.mapped"
                " FROM peers AS p JOIN regions AS r ON r.id = p.region"
                " WHERE r.state != 'reclaimed' ORDER BY p.region, p.ord", /* share order */
        [STMT_LOAD_ROUTES] =
                "SELECT device, domain, kind, region, reason, updated FROM routes ORDER BY device, domain",
        [STMT_AUDIT_LIST] =
                "SELECT seq, time, actor, region, domain, action, from_state, to_state, reason"
                " FROM audit WHERE seq > ?1 AND time >= ?2 ORDER BY seq LIMIT ?3",
        [STMT_AUDIT_TAIL] =
                "SELECT * FROM ("
                "  SELECT seq, time, actor, region, domain, action, from_state, to_state, reason"
                "  FROM audit ORDER BY seq DESC LIMIT ?1"
                ") ORDER BY seq",
        /*
         * Retention. Each delete takes at most ?2 rows, oldest first, through an index. A
         * region a route still names is kept (routes name live regions only; this keeps a
         * stray one from failing every pass on the foreign key).
         */
        [STMT_PRUNE_REGIONS_AGE] =
                "DELETE FROM regions WHERE id IN ("
                "  SELECT id FROM regions INDEXED BY regions_reclaimed WHERE state = 'reclaimed' AND updated < ?1"
                "  AND id NOT IN (SELECT region FROM routes WHERE region IS NOT NULL)"
                "  ORDER BY updated LIMIT ?2)",
        [STMT_PRUNE_REGIONS_COUNT] = "SELECT count(*) FROM regions WHERE state = 'reclaimed'",
        [STMT_PRUNE_REGIONS_OLDEST] =
                "DELETE FROM regions WHERE id IN ("
                "  SELECT id FROM regions INDEXED BY regions_reclaimed WHERE state = 'reclaimed' AND updated <= ?1"
                "  AND id NOT IN (SELECT region FROM routes WHERE region IS NOT NULL)"
                "  ORDER BY updated, id LIMIT ?2)",
        /*
         * Audit rows go oldest first by seq, as a prefix (the rows left are numbered without gaps),
         * and never the newest (seq is the rowid: sqlite numbers a new row one past the largest).
         * By age: the oldest rows up to the first of the oldest ?2 that is not older than ?1 (rows
         * after one a clock step made young wait for it).
         */
        [STMT_PRUNE_AUDIT_AGE] =
                "DELETE FROM audit WHERE seq IN ("
                "  SELECT seq FROM audit WHERE seq < (SELECT max(seq) FROM audit)"
                "  AND seq < coalesce((SELECT seq FROM (SELECT seq, time FROM audit ORDER BY seq LIMIT ?2)"
                "                      WHERE time >= ?1 ORDER BY seq LIMIT 1), 9223372036854775807)"
                "  ORDER BY seq LIMIT ?2)",
        /* seq has no gaps but those pruning made: the newest ?1 seqs are the newest ?1 rows. */
        [STMT_PRUNE_AUDIT_COUNT] =
                "DELETE FROM audit WHERE seq IN ("
                "  SELECT seq FROM audit WHERE seq <= (SELECT max(seq) FROM audit) - max(?1, 1) ORDER BY seq LIMIT ?2)",
        /*
         * What decides whether a pass is due: O(log n) each (rowid and index ends). INDEXED BY:
         * a planner that preferred another index (schema 2 and 3 had one on regions.state) made a
         * query O(reclaimed rows).
         */
        [STMT_PRUNE_DUE_AUDIT] = "SELECT (SELECT max(seq) FROM audit) - (SELECT min(seq) FROM audit) + 1,"
                                 " (SELECT time FROM audit ORDER BY seq LIMIT 1)",
        [STMT_PRUNE_DUE_REGIONS_AGE] =
                "SELECT updated FROM regions INDEXED BY regions_reclaimed WHERE state = 'reclaimed' ORDER BY updated LIMIT 1",
};
_Static_assert(ELEMENTSOF(store_statement_sql) == _STMT_MAX, "one statement per STMT_*");

/* One step of the migration; the caller holds the write lock and ends the transaction. */
static int store_migrate_one(struct store *s, bool *ret_done) {
        char bump[64];
        int64_t version, violations;
        int r;

        r = store_query_int(s, "PRAGMA user_version", &version);
        if (r < 0)
                return r;
        if (version > STORE_SCHEMA_VERSION || version < 0)
                return store_failf(s, -EPROTONOSUPPORT, "schema version %" PRId64 " is not in 0..%d", version,
                                   STORE_SCHEMA_VERSION);
        if (version == STORE_SCHEMA_VERSION) {
                *ret_done = true;
                return 0;
        }

        r = store_exec(s, migrations[version]);
        if (r < 0)
                return r;
        /* Run with foreign keys off (a table rebuilt under them would lose its children): what
         * the step wrote must satisfy them all the same. */
        r = store_query_int(s, "SELECT count(*) FROM pragma_foreign_key_check", &violations);
        if (r < 0)
                return r;
        if (violations != 0)
                return store_failf(s, -EIO, "migration %" PRId64 " -> %" PRId64 " breaks %" PRId64 " foreign keys",
                                   version, version + 1, violations);
        /* The version is our own counter, never outside data. */
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %" PRId64, version + 1);
        return store_exec(s, bump);
}

/*
 * user_version is re-read under the write lock each round, so two processes opening the
 * same file at once migrate it exactly once.
 */
int store_migrate(struct store *s) {
        for (;;) {
                bool done = false;
                int r;

                r = store_exec(s, "BEGIN IMMEDIATE");
                if (r < 0)
                        return r;
                r = store_migrate_one(s, &done);
                if (r >= 0)
                        r = store_exec(s, "COMMIT");
                if (r < 0) {
                        if (!sqlite3_get_autocommit(s->db))
                                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
                        return r;
                }
                if (done)
                        return 0;
        }
}
