/* SPDX-License-Identifier: Apache-2.0 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * brokerd is the database's only writer; a lock held by anyone else (an admin's sqlite3 shell)
 * would stall every client of the single-threaded daemon for as long as sqlite waits. Fail the
 * write with store_failed soon instead: the client may retry, nothing else waits.
 */
#define STORE_BUSY_TIMEOUT_MS 250
#define STORE_ERROR_MAX 256

/*
 * migrations[i] moves a database from user_version i to i + 1. Released entries never
 * change: a fix is a new entry. Each runs in its own BEGIN IMMEDIATE transaction together
 * with its user_version bump, so a database is always at exactly one version.
 */
static const char *const migrations[STORE_SCHEMA_VERSION] = {
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
};

enum {
        STMT_BEGIN,
        STMT_BEGIN_READ,
        STMT_COMMIT,
        STMT_ROLLBACK,
        STMT_REGION_INSERT,
        STMT_REGION_UPDATE,
        STMT_PEER_INSERT,
        STMT_PEER_UPDATE,
        STMT_ROUTE_SET,
        STMT_ROUTE_DELETE,
        STMT_AUDIT_APPEND,
        STMT_LOAD_REGIONS,
        STMT_LOAD_PEERS,
        STMT_LOAD_ROUTES,
        STMT_AUDIT_LIST,
        _STMT_MAX,
};

static const char *const statement_sql[_STMT_MAX] = {
        [STMT_BEGIN] = "BEGIN IMMEDIATE",
        [STMT_BEGIN_READ] = "BEGIN DEFERRED",
        [STMT_COMMIT] = "COMMIT",
        [STMT_ROLLBACK] = "ROLLBACK",
        [STMT_REGION_INSERT] =
                "INSERT INTO regions (owner, device, pool, label, base, size, state, deadline, owner_mapped,"
                "                     created, updated)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        [STMT_REGION_UPDATE] =
                "UPDATE regions SET state = ?2, deadline = ?3, owner_mapped = ?4, updated = ?5 WHERE id = ?1",
        [STMT_PEER_INSERT] =
                "INSERT INTO peers (region, domain, access, state, token, mapped)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
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
                "       created, updated"
                " FROM regions WHERE state != 'reclaimed' ORDER BY id",
        [STMT_LOAD_PEERS] =
                "SELECT p.region, p.domain, p.access, p.state, p.token, p.mapped"
                " FROM peers AS p JOIN regions AS r ON r.id = p.region"
                " WHERE r.state != 'reclaimed' ORDER BY p.region, p.domain",
        [STMT_LOAD_ROUTES] =
                "SELECT device, domain, kind, region, reason, updated FROM routes ORDER BY device, domain",
        [STMT_AUDIT_LIST] =
                "SELECT seq, time, actor, region, domain, action, from_state, to_state, reason"
                " FROM audit WHERE seq > ?1 AND time >= ?2 ORDER BY seq LIMIT ?3",
};

static const char *const route_kinds[] = {
        [ROUTE_REGION] = "region",
        [ROUTE_BOUNCE] = "bounce",
};

struct store {
        sqlite3 *db;
        sqlite3_stmt *stmt[_STMT_MAX];
        char error[STORE_ERROR_MAX];
        struct store_retention retention;
};

/* Bit-for-bit, so addresses above 2^63 survive sqlite's signed INTEGER. */
static int64_t u64_to_i64(uint64_t v) {
        int64_t r;
        memcpy(&r, &v, sizeof(r));
        return r;
}

static uint64_t i64_to_u64(int64_t v) {
        uint64_t r;
        memcpy(&r, &v, sizeof(r));
        return r;
}

static int errno_from_sqlite(int rc) {
        switch (rc) {
        case SQLITE_CONSTRAINT_UNIQUE:
        case SQLITE_CONSTRAINT_PRIMARYKEY:
        case SQLITE_CONSTRAINT_ROWID:
                return -EEXIST;
        }
        switch (rc & 0xff) {
        case SQLITE_CONSTRAINT:
                /* CHECK, FOREIGNKEY, NOTNULL, DATATYPE (a STRICT type mismatch), ... */
                return -EINVAL;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_NOMEM:
                return -ENOMEM;
        default:
                return -EIO;
        }
}

/* Keeps sqlite's explanation for store_last_error() and turns rc into -errno. */
static int store_fail(struct store *s, int rc) {
        snprintf(s->error, sizeof(s->error), "%s", sqlite3_errmsg(s->db));
        return errno_from_sqlite(rc);
}

static int store_failf(struct store *s, int r, const char *fmt, ...) _printf_(3, 4);
static int store_failf(struct store *s, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(s->error, sizeof(s->error), fmt, ap);
        va_end(ap);
        return r;
}

const char *store_last_error(struct store *s) {
        return s->error;
}

/* Every use of a kept statement ends here, so the next user finds it clean. */
static void stmt_resetp(sqlite3_stmt **st) {
        if (*st) {
                sqlite3_reset(*st);
                sqlite3_clear_bindings(*st);
        }
}

static int stmt_run(struct store *s, sqlite3_stmt *st) {
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return store_fail(s, rc);
        return 0;
}

static int store_run(struct store *s, int which) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[which];
        return stmt_run(s, st);
}

static int bind_text(sqlite3_stmt *st, int i, const char *v) {
        /* Callers' strings outlive the statement's use: no copy needed. */
        return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static int bind_id(sqlite3_stmt *st, int i, uint64_t v) {
        /* Id 0 means "none"; sqlite never hands it out. */
        return v ? sqlite3_bind_int64(st, i, u64_to_i64(v)) : sqlite3_bind_null(st, i);
}

static int column_text(sqlite3_stmt *st, int i, bool nullable, const char **ret) {
        const char *t;

        if (sqlite3_column_type(st, i) == SQLITE_NULL) {
                if (!nullable)
                        return -EIO;
                *ret = NULL;
                return 0;
        }
        t = (const char *) sqlite3_column_text(st, i);
        if (!t)
                return -ENOMEM;
        *ret = t;
        return 0;
}

/* One-off statements used while opening, before the kept ones exist. */
static int store_exec(struct store *s, const char *sql) {
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return store_fail(s, rc);
        return 0;
}

static int store_query_row(struct store *s, const char *sql, sqlite3_stmt **ret) {
        sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return store_fail(s, rc);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
                int r = rc == SQLITE_DONE ? store_failf(s, -EIO, "%s: no result", sql) : store_fail(s, rc);
                sqlite3_finalize(st);
                return r;
        }
        *ret = st;
        return 0;
}

static int store_query_int(struct store *s, const char *sql, int64_t *ret) {
        sqlite3_stmt *st = NULL;
        int r;

        r = store_query_row(s, sql, &st);
        if (r < 0)
                return r;
        *ret = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return 0;
}

static int store_query_text_is(struct store *s, const char *sql, const char *want) {
        sqlite3_stmt *st = NULL;
        const char *t;
        int r;

        r = store_query_row(s, sql, &st);
        if (r < 0)
                return r;
        t = (const char *) sqlite3_column_text(st, 0);
        if (!t || strcmp(t, want) != 0)
                r = store_failf(s, -EIO, "%s: got '%s', want '%s'", sql, t ?: "(null)", want);
        sqlite3_finalize(st);
        return r;
}

/* One step of the migration; the caller holds the write lock and ends the transaction. */
static int store_migrate_one(struct store *s, bool *ret_done) {
        char bump[64];
        int64_t version;
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
        /* The version is our own counter, never outside data. */
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %" PRId64, version + 1);
        return store_exec(s, bump);
}

/*
 * user_version is re-read under the write lock each round, so two processes opening the
 * same file at once migrate it exactly once.
 */
static int store_migrate(struct store *s) {
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

/* sqlite would create the file with the umask's mode; the state is root's alone. */
static int store_create_file(const char *path) {
        int fd;

        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0)
                return errno == EEXIST ? 0 : negative_errno();
        close(fd);
        return 0;
}

int store_open(const char *path, struct store **ret) {
        _cleanup_(store_closep) struct store *s = NULL;
        bool memory;
        int64_t version, fk;
        int rc, r;

        if (!path || !*path || !ret)
                return -EINVAL;
        memory = strcmp(path, ":memory:") == 0;

        if (!memory) {
                r = store_create_file(path);
                if (r < 0)
                        return r;
        }

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;

        rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                                     SQLITE_OPEN_EXRESCODE,
                             NULL);
        if (rc != SQLITE_OK)
                return s->db ? store_fail(s, rc) : -ENOMEM;

        rc = sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
        if (rc != SQLITE_OK)
                return store_fail(s, rc);

        /*
         * Refuse a newer schema before anything could write to the file: switching to WAL
         * already rewrites its header.
         */
        r = store_query_int(s, "PRAGMA user_version", &version);
        if (r < 0)
                return r;
        if (version > STORE_SCHEMA_VERSION || version < 0)
                return -EPROTONOSUPPORT;

        r = store_query_text_is(s, "PRAGMA journal_mode = WAL", memory ? "memory" : "wal");
        if (r < 0)
                return r;
        r = store_exec(s, "PRAGMA synchronous = FULL");
        if (r < 0)
                return r;
        r = store_exec(s, "PRAGMA foreign_keys = ON");
        if (r < 0)
                return r;
        /* A build without foreign key support accepts the pragma silently. */
        r = store_query_int(s, "PRAGMA foreign_keys", &fk);
        if (r < 0)
                return r;
        if (fk != 1)
                return -EOPNOTSUPP;

        r = store_migrate(s);
        if (r < 0)
                return r;

        for (size_t i = 0; i < _STMT_MAX; i++) {
                rc = sqlite3_prepare_v3(s->db, statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
                                        NULL);
                if (rc != SQLITE_OK)
                        return store_fail(s, rc);
        }

        *ret = TAKE_PTR(s);
        return 0;
}

void store_close(struct store *s) {
        if (!s)
                return;
        for (size_t i = 0; i < _STMT_MAX; i++)
                sqlite3_finalize(s->stmt[i]);
        /* All statements are finalized, so this closes; an open transaction is rolled back. */
        sqlite3_close(s->db);
        free(s);
}

int store_begin(struct store *s) {
        return store_run(s, STMT_BEGIN);
}

int store_commit(struct store *s) {
        return store_run(s, STMT_COMMIT);
}

void store_rollback(struct store *s) {
        /* sqlite may have rolled back already (e.g. on SQLITE_FULL): nothing left to do. */
        if (sqlite3_get_autocommit(s->db))
                return;
        (void) store_run(s, STMT_ROLLBACK);
}

int store_transition(struct store *s, store_write_t write, void *userdata, const struct store_audit *audit,
                     size_t n_audit) {
        int r;

        r = store_begin(s);
        if (r < 0)
                return r;
        if (write)
                r = write(s, userdata);
        for (size_t i = 0; r >= 0 && i < n_audit; i++)
                r = store_audit_append(s, &audit[i]);
        if (r >= 0)
                r = store_commit(s);
        if (r < 0)
                store_rollback(s);
        return r;
}

void store_set_retention(struct store *s, const struct store_retention *r) {
        s->retention = r ? *r : (struct store_retention) {};
}

int store_region_insert(struct store *s, const struct store_region *r, uint64_t *ret_id) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_REGION_INSERT];
        int rc, q;

        if (!r || !r->owner || !r->device || !r->pool || (unsigned) r->state >= _REGION_STATE_MAX)
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
            (rc = sqlite3_bind_int64(st, 11, r->updated)) != SQLITE_OK)
                return store_fail(s, rc);

        q = stmt_run(s, st);
        if (q < 0)
                return q;
        if (ret_id)
                *ret_id = i64_to_u64(sqlite3_last_insert_rowid(s->db));
        return 0;
}

int store_region_update(struct store *s, uint64_t id, enum region_state state, int64_t deadline, bool owner_mapped,
                        int64_t now) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_REGION_UPDATE];
        int rc, r;

        if (id == 0 || (unsigned) state >= _REGION_STATE_MAX)
                return -EINVAL;

        if ((rc = sqlite3_bind_int64(st, 1, u64_to_i64(id))) != SQLITE_OK ||
            (rc = bind_text(st, 2, region_state_to_string(state))) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 3, deadline)) != SQLITE_OK ||
            (rc = sqlite3_bind_int(st, 4, owner_mapped)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 5, now)) != SQLITE_OK)
                return store_fail(s, rc);

        r = stmt_run(s, st);
        if (r < 0)
                return r;
        return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

int store_peer_insert(struct store *s, const struct store_peer *p) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_PEER_INSERT];
        int rc;

        if (!p || p->region == 0 || !p->domain || (p->access != ACCESS_RO && p->access != ACCESS_RW) ||
            (unsigned) p->state >= _PEER_STATE_MAX)
                return -EINVAL;

        if ((rc = sqlite3_bind_int64(st, 1, u64_to_i64(p->region))) != SQLITE_OK ||
            (rc = bind_text(st, 2, p->domain)) != SQLITE_OK ||
            (rc = bind_text(st, 3, access_to_string(p->access))) != SQLITE_OK ||
            (rc = bind_text(st, 4, peer_state_to_string(p->state))) != SQLITE_OK ||
            (rc = bind_text(st, 5, p->token)) != SQLITE_OK ||
            (rc = sqlite3_bind_int(st, 6, p->mapped)) != SQLITE_OK)
                return store_fail(s, rc);

        return stmt_run(s, st);
}

int store_peer_update(struct store *s, uint64_t region, const char *domain, enum peer_state state, bool clear_token,
                      bool mapped) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_PEER_UPDATE];
        int rc, r;

        if (region == 0 || !domain || (unsigned) state >= _PEER_STATE_MAX)
                return -EINVAL;

        if ((rc = sqlite3_bind_int64(st, 1, u64_to_i64(region))) != SQLITE_OK ||
            (rc = bind_text(st, 2, domain)) != SQLITE_OK ||
            (rc = bind_text(st, 3, peer_state_to_string(state))) != SQLITE_OK ||
            (rc = sqlite3_bind_int(st, 4, clear_token)) != SQLITE_OK ||
            (rc = sqlite3_bind_int(st, 5, mapped)) != SQLITE_OK)
                return store_fail(s, rc);

        r = stmt_run(s, st);
        if (r < 0)
                return r;
        return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

int store_route_set(struct store *s, const struct store_route *r) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_ROUTE_SET];
        int rc;

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

        if (!device || !domain)
                return -EINVAL;

        if ((rc = bind_text(st, 1, device)) != SQLITE_OK ||
            (rc = bind_text(st, 2, domain)) != SQLITE_OK)
                return store_fail(s, rc);

        r = stmt_run(s, st);
        if (r < 0)
                return r;
        return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

int store_audit_append(struct store *s, const struct store_audit *a) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_AUDIT_APPEND];
        int rc;

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

static int store_load_routes(struct store *s, const struct store_load_ops *ops, void *userdata) {
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

                r = ops->route(userdata, &rt);
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
                r = store_load_routes(s, ops, userdata);

        if (own_txn) {
                if (r >= 0)
                        r = store_run(s, STMT_COMMIT);
                if (r < 0)
                        store_rollback(s);
        }
        return r;
}

int store_audit_list(struct store *s, int64_t after_seq, int64_t since_time, unsigned limit,
                     int (*fn)(void *userdata, const struct store_audit *a), void *userdata) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[STMT_AUDIT_LIST];
        int rc, r;

        if (!fn)
                return -EINVAL;

        /* LIMIT -1 is sqlite's "no limit". */
        if ((rc = sqlite3_bind_int64(st, 1, after_seq)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 2, since_time)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 3, limit ? (int64_t) limit : -1)) != SQLITE_OK)
                return store_fail(s, rc);

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
