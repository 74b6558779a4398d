/* SPDX-License-Identifier: Apache-2.0 */
/* The connection: opening (file mode, pragmas, migration, kept statements), errors, transitions. */
#include "store-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
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

/* Bit-for-bit, so addresses above 2^63 survive sqlite's signed INTEGER. */
int64_t u64_to_i64(uint64_t v) {
        int64_t r;
        memcpy(&r, &v, sizeof(r));
        return r;
}

uint64_t i64_to_u64(int64_t v) {
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
int store_fail(struct store *s, int rc) {
        snprintf(s->error, sizeof(s->error), "%s", sqlite3_errmsg(s->db));
        return errno_from_sqlite(rc);
}

int store_failf(struct store *s, int r, const char *fmt, ...) {
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
void stmt_resetp(sqlite3_stmt **st) {
        if (*st) {
                sqlite3_reset(*st);
                sqlite3_clear_bindings(*st);
        }
}

int stmt_run(struct store *s, sqlite3_stmt *st) {
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return store_fail(s, rc);
        return 0;
}

int store_run(struct store *s, enum store_stmt which) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[which];
        return stmt_run(s, st);
}

int stmt_run_changed(struct store *s, sqlite3_stmt *st) {
        int r = stmt_run(s, st);

        if (r < 0)
                return r;
        return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

int store_step_int(struct store *s, sqlite3_stmt *st, int64_t *ret) {
        int rc = sqlite3_step(st);

        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? store_failf(s, -EIO, "%s: no result", sqlite3_sql(st)) : store_fail(s, rc);
        *ret = sqlite3_column_int64(st, 0);
        return 0;
}

/*
 * sqlite may end a transaction on its own (SQLITE_FULL, SQLITE_IOERR): then the flag is stale
 * and a write would run in autocommit, outside any transition. Both must say "open".
 */
int store_check_writable(struct store *s) {
        if (!s->in_transition || sqlite3_get_autocommit(s->db))
                return store_failf(s, -EPERM, "write outside a transition");
        return 0;
}

int bind_text(sqlite3_stmt *st, int i, const char *v) {
        /* Callers' strings outlive the statement's use: no copy needed. */
        return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

int bind_id(sqlite3_stmt *st, int i, uint64_t v) {
        /* Id 0 means "none"; sqlite never hands it out. */
        return v ? sqlite3_bind_int64(st, i, u64_to_i64(v)) : sqlite3_bind_null(st, i);
}

int column_text(sqlite3_stmt *st, int i, bool nullable, const char **ret) {
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
int store_exec(struct store *s, const char *sql) {
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

int store_query_int(struct store *s, const char *sql, int64_t *ret) {
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
        s->reclaimed = -1;

        r = store_vfs_init();
        if (r < 0)
                return r;
        rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                                     SQLITE_OPEN_EXRESCODE,
                             STORE_VFS_NAME);
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

        /*
         * Held exclusively from the first transaction on, until closed: no lock is taken or
         * dropped per commit (they were 6-8 fcntl() calls of each, docs/bench-control-plane.md),
         * the WAL index lives in our heap rather than a shared -shm file, and no other process
         * can block our writes, or read a state we are about to change. Set before WAL is.
         */
        if (!memory) {
                r = store_query_text_is(s, "PRAGMA locking_mode = EXCLUSIVE", "exclusive");
                if (r < 0)
                        return r;
        }
        r = store_query_text_is(s, "PRAGMA journal_mode = WAL", memory ? "memory" : "wal");
        if (r < 0)
                return r;
        r = store_exec(s, "PRAGMA synchronous = FULL");
        if (r < 0)
                return r;
        /* Migrations rebuild tables, which sqlite's ALTER TABLE procedure does with foreign keys
         * off (each step checks them before its commit); they are on from then on. */
        r = store_exec(s, "PRAGMA foreign_keys = OFF");
        if (r < 0)
                return r;
        r = store_migrate(s);
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
        /* Taken now rather than at the first write: from here on the file is ours alone. */
        if (!memory) {
                r = store_exec(s, "BEGIN EXCLUSIVE; COMMIT");
                if (r < 0)
                        return r;
        }

        for (size_t i = 0; i < _STMT_MAX; i++) {
                rc = sqlite3_prepare_v3(s->db, store_statement_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->stmt[i],
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
        (void) store_flush_join(s);
        for (size_t i = 0; i < _STMT_MAX; i++)
                sqlite3_finalize(s->stmt[i]);
        /* All statements are finalized, so this closes; an open transaction is rolled back. */
        sqlite3_close(s->db);
        free(s);
}

int store_begin(struct store *s) {
        int r;

        if (s->flushing)
                return store_failf(s, -EBUSY, "a flush is running on its own thread");
        if (s->in_transition && !sqlite3_get_autocommit(s->db))
                return store_failf(s, -EALREADY, "a transition is already open");
        r = store_run(s, STMT_BEGIN);
        s->in_transition = r >= 0;
        return r;
}

int store_commit_quiet(struct store *s) {
        int r;

        r = store_check_writable(s);
        if (r < 0)
                return r;
        r = store_run(s, STMT_COMMIT);
        if (r < 0)
                return r;
        s->in_transition = false;
        return 0;
}

int store_commit(struct store *s) {
        int r;

        r = store_commit_quiet(s);
        if (r < 0)
                return r;
        store_prune_after_commit(s);
        return 0;
}

void store_rollback(struct store *s) {
        s->in_transition = false;
        s->reclaimed = -1; /* whatever this transition counted may not have happened */
        /* sqlite may have rolled back already (e.g. on SQLITE_FULL): nothing left to do. */
        if (sqlite3_get_autocommit(s->db))
                return;
        (void) store_run(s, STMT_ROLLBACK);
}

int store_transition(struct store *s, store_write_t write, void *userdata, const struct store_audit *audit,
                     size_t n_audit) {
        int r;

        if (!s || (n_audit > 0 && !audit))
                return -EINVAL;

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
