/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Group sync: commits made atomic at once and durable together. With it on, sqlite runs at
 * synchronous = NORMAL (in WAL mode a commit is atomic and consistent, but its WAL frames are
 * not flushed to the disk), and store_sync() flushes the WAL once for every commit made since
 * the last one. The daemon holds everything it would tell anyone (replies, notifications)
 * until then, so what it acknowledged is as durable as under synchronous = FULL, and the
 * agents that arrive together share one flush (docs/bench-control-plane.md, "Group commit").
 * A commit that fails (a full disk) still fails by itself, changing nothing: only the flush is
 * shared, never a transaction.
 */
#include <errno.h>

#include "store/store-internal.h"

/* sqlite's default: a passive checkpoint once the WAL holds this many frames. */
#define STORE_WAL_AUTOCHECKPOINT 1000

/*
 * Called after every commit that reached the WAL (ours or retention's; a failed one never
 * gets here): counted. Taking the WAL hook replaces sqlite's auto-checkpoint, so it does what
 * that did. A checkpoint under synchronous = NORMAL flushes the WAL before it copies frames.
 */
static int store_count_commit(void *userdata, sqlite3 *db, const char *name, int frames) {
        struct store *s = userdata;

        s->unsynced++;
        if (frames >= STORE_WAL_AUTOCHECKPOINT)
                (void) sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        return SQLITE_OK;
}

int store_set_group_sync(struct store *s, bool on) {
        int r;

        if (s->in_transition)
                return store_failf(s, -EBUSY, "group sync cannot change inside a transition");
        /* Whatever FULL left unflushed (nothing) or NORMAL did (what is counted) goes first. */
        r = store_sync(s);
        if (r < 0)
                return r;
        r = store_exec(s, on ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL");
        if (r < 0)
                return r;
        if (on)
                sqlite3_wal_hook(s->db, store_count_commit, s);
        else
                sqlite3_wal_autocheckpoint(s->db, STORE_WAL_AUTOCHECKPOINT);
        s->group_sync = on;
        return 0;
}

uint64_t store_unsynced(const struct store *s) {
        return s->unsynced;
}

/* The WAL's own file handle, through sqlite's VFS (*ret NULL: none open): what sqlite flushes. */
static int wal_file(struct store *s, sqlite3_file **ret) {
        sqlite3_file *wal = NULL;
        int rc = sqlite3_file_control(s->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &wal);

        if (rc != SQLITE_OK)
                return store_fail(s, rc);
        *ret = wal && wal->pMethods ? wal : NULL;
        return 0;
}

static int wal_sync_failed(struct store *s, int rc) {
        return store_failf(s, -EIO, "flushing the WAL: %s", sqlite3_errstr(rc));
}

int store_sync(struct store *s) {
        sqlite3_file *wal;
        int r;

        if (s->flushing)
                return store_failf(s, -EBUSY, "a flush is running on its own thread");
        if (s->sync_error < 0)
                return s->sync_error;
        if (s->unsynced == 0)
                return 0;
        r = wal_file(s, &wal);
        if (r < 0)
                return r;
        if (wal) {
                int rc = wal->pMethods->xSync(wal, SQLITE_SYNC_NORMAL);
                if (rc != SQLITE_OK)
                        return wal_sync_failed(s, rc);
        }
        s->unsynced = 0;
        return 0;
}

bool store_group_sync(const struct store *s) {
        return s->group_sync;
}

static void *flush_run(void *userdata) {
        struct store *s = userdata;

        s->flush_rc = s->flush_wal->pMethods->xSync(s->flush_wal, SQLITE_SYNC_NORMAL);
        return NULL;
}

int store_flush_start(struct store *s) {
        sqlite3_file *wal;

        if (!s->group_sync || s->flushing || s->sync_error < 0 || s->unsynced == 0)
                return 0;
        if (wal_file(s, &wal) < 0 || !wal)
                return 0; /* left to store_sync() */
        s->flush_wal = wal;
        if (pthread_create(&s->flush_thread, NULL, flush_run, s) != 0)
                return 0;
        s->flushing = true;
        return 1;
}

int store_flush_join(struct store *s) {
        if (!s->flushing)
                return 0;
        (void) pthread_join(s->flush_thread, NULL);
        s->flushing = false;
        if (s->flush_rc != SQLITE_OK)
                return s->sync_error = wal_sync_failed(s, s->flush_rc);
        /* Nothing could commit meanwhile (store_begin() refuses): it covered every commit. */
        s->unsynced = 0;
        return 0;
}
