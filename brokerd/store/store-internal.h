/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The store's private parts, shared by its files and by nothing outside brokerd/store/: the
 * connection with its kept statements, the transition state, and the helpers that bind
 * values and turn sqlite's codes into -errno (keeping sqlite's message for
 * store_last_error()). Every kept statement is reset by whoever used it (stmt_resetp).
 */
#include <pthread.h>
#include <sqlite3.h>

#include "store.h"

#define STORE_ERROR_MAX 256

enum store_stmt {
        STMT_BEGIN,
        STMT_BEGIN_READ,
        STMT_COMMIT,
        STMT_ROLLBACK,
        STMT_REGION_INSERT,
        STMT_REGION_UPDATE,
        STMT_REGION_BELLS,
        STMT_PEER_INSERT,
        STMT_PEER_UPDATE,
        STMT_ROUTE_SET,
        STMT_ROUTE_DELETE,
        STMT_AUDIT_APPEND,
        STMT_LOAD_REGIONS,
        STMT_LOAD_PEERS,
        STMT_LOAD_ROUTES,
        STMT_AUDIT_LIST,
        STMT_AUDIT_TAIL,
        STMT_PRUNE_REGIONS_AGE,
        STMT_PRUNE_REGIONS_COUNT,
        STMT_PRUNE_REGIONS_OLDEST,
        STMT_PRUNE_AUDIT_AGE,
        STMT_PRUNE_AUDIT_COUNT,
        STMT_PRUNE_DUE_AUDIT,
        STMT_PRUNE_DUE_REGIONS_AGE,
        _STMT_MAX,
};

/*
 * Opening, ending and undoing a transition by hand: store_transition() and store_prune() use
 * them, and so does the unit test. (store.h declares them too until the core no longer calls
 * them; then they live here only.)
 */
int store_begin(struct store *s);
int store_commit(struct store *s);
void store_rollback(struct store *s);

/*
 * store-vfs.c: the VFS every store opens its database with (registered once, never the
 * default): sqlite's own, but a commit's WAL frames reach the file in one write.
 */
#define STORE_VFS_NAME "brokerd-wal"
int store_vfs_init(void);

/* store-schema.c: all the SQL the store runs. */
extern const char *const store_statement_sql[_STMT_MAX];
int store_migrate(struct store *s);

struct store {
        sqlite3 *db;
        sqlite3_stmt *stmt[_STMT_MAX];
        char error[STORE_ERROR_MAX];
        /* A write transaction of ours is open: the only time the write calls work. */
        bool in_transition;
        struct store_retention retention;
        /* Commits since the last opportunistic prune pass; and whether that pass left work. */
        unsigned commits_since_prune;
        bool prune_behind;
        /*
         * Reclaimed regions in the database (-1: unknown, counted by the next pass): raised by
         * every write to reclaimed, lowered by the pass that deletes them, forgotten by any
         * rollback; so a pass counts them (O(n)) only after a rollback or on the first pass.
         */
        int64_t reclaimed;
        /* Group sync (store-sync.c): on, and the commits since the last flush of the WAL. */
        bool group_sync;
        uint64_t unsynced;
        /* A flush on a thread of its own (store_flush_start()): the WAL it flushes, its result. */
        bool flushing;
        pthread_t flush_thread;
        sqlite3_file *flush_wal;
        int flush_rc;
        int sync_error; /* a failed flush: every later store_sync() fails with it */
};

/* Bit-for-bit, so addresses above 2^63 survive sqlite's signed INTEGER. */
int64_t u64_to_i64(uint64_t v);
uint64_t i64_to_u64(int64_t v);

int store_fail(struct store *s, int rc);
int store_failf(struct store *s, int r, const char *fmt, ...) _printf_(3, 4);
/* 0 inside a transition, else -EPERM: the guard at the top of every write. */
int store_check_writable(struct store *s);

void stmt_resetp(sqlite3_stmt **st);
int stmt_run(struct store *s, sqlite3_stmt *st);
int store_run(struct store *s, enum store_stmt which);
/* stmt_run() for updates and deletes by key: -ENOENT when the statement changed no row. */
int stmt_run_changed(struct store *s, sqlite3_stmt *st);
/* Runs a statement that yields one integer (or NULL, read as 0). */
int store_step_int(struct store *s, sqlite3_stmt *st, int64_t *ret);

int bind_text(sqlite3_stmt *st, int i, const char *v);
int bind_id(sqlite3_stmt *st, int i, uint64_t v);
int column_text(sqlite3_stmt *st, int i, bool nullable, const char **ret);

/* One-off SQL, used while opening and migrating, before the kept statements exist. */
int store_exec(struct store *s, const char *sql);
int store_query_int(struct store *s, const char *sql, int64_t *ret);

/* COMMIT without the opportunistic prune pass (which itself commits this way). */
int store_commit_quiet(struct store *s);
/* store-routes.c, for store_load(). */
int store_load_routes(struct store *s, int (*fn)(void *userdata, const struct store_route *r), void *userdata);

/* store-retention.c: after a commit, every so often, one bounded prune pass. */
void store_prune_after_commit(struct store *s);
