/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store's VFS (brokerd/store/store-vfs.c), seen from below: a counting VFS registered as
 * sqlite's default before the first store opens, so the store's VFS wraps it. It counts the
 * writes that reach the WAL and can fail them, which is how a commit's frames are shown to go
 * in one write and a failed write to fail its commit alone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store-internal.h"
#include "store/store.h"

struct counted_file {
        sqlite3_file base;
        sqlite3_file *real;
};

static sqlite3_vfs counting_vfs;
static sqlite3_vfs *unix_vfs;
static sqlite3_io_methods counted_methods;
static unsigned wal_writes;
static size_t wal_bytes;
static int fail_wal_writes; /* the next N writes to a WAL fail with SQLITE_IOERR_WRITE */

static int counted_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off) {
        struct counted_file *f = (struct counted_file *) file;

        if (fail_wal_writes > 0) {
                fail_wal_writes--;
                return SQLITE_IOERR_WRITE;
        }
        wal_writes++;
        wal_bytes += (size_t) amt;
        return f->real->pMethods->xWrite(f->real, buf, amt, off);
}

#define PASS(name, ...) ((struct counted_file *) file)->real->pMethods->name(((struct counted_file *) file)->real, __VA_ARGS__)
static int counted_close(sqlite3_file *file) {
        return ((struct counted_file *) file)->real->pMethods->xClose(((struct counted_file *) file)->real);
}
static int counted_read(sqlite3_file *file, void *b, int n, sqlite3_int64 o) { return PASS(xRead, b, n, o); }
static int counted_truncate(sqlite3_file *file, sqlite3_int64 n) { return PASS(xTruncate, n); }
static int counted_sync(sqlite3_file *file, int flags) { return PASS(xSync, flags); }
static int counted_size(sqlite3_file *file, sqlite3_int64 *n) { return PASS(xFileSize, n); }
static int counted_lock(sqlite3_file *file, int l) { return PASS(xLock, l); }
static int counted_unlock(sqlite3_file *file, int l) { return PASS(xUnlock, l); }
static int counted_reserved(sqlite3_file *file, int *o) { return PASS(xCheckReservedLock, o); }
static int counted_fcntl(sqlite3_file *file, int op, void *a) { return PASS(xFileControl, op, a); }
static int counted_sector(sqlite3_file *file) {
        return ((struct counted_file *) file)->real->pMethods->xSectorSize(((struct counted_file *) file)->real);
}
static int counted_chars(sqlite3_file *file) {
        return ((struct counted_file *) file)->real->pMethods->xDeviceCharacteristics(((struct counted_file *) file)->real);
}
#undef PASS

static int counting_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags, int *out) {
        struct counted_file *f = (struct counted_file *) file;
        int rc;

        (void) vfs;
        if (!(flags & SQLITE_OPEN_WAL))
                return unix_vfs->xOpen(unix_vfs, name, file, flags, out);
        *f = (struct counted_file) { .real = (sqlite3_file *) (f + 1) };
        rc = unix_vfs->xOpen(unix_vfs, name, f->real, flags, out);
        if (rc != SQLITE_OK) {
                if (f->real->pMethods)
                        f->real->pMethods->xClose(f->real);
                return rc;
        }
        f->base.pMethods = &counted_methods;
        return SQLITE_OK;
}

static int setup_counting_vfs(void **state) {
        (void) state;
        unix_vfs = sqlite3_vfs_find(NULL);
        assert_non_null(unix_vfs);
        counting_vfs = *unix_vfs;
        counting_vfs.zName = "counting";
        counting_vfs.szOsFile = (int) sizeof(struct counted_file) + unix_vfs->szOsFile;
        counting_vfs.xOpen = counting_open;
        counting_vfs.pNext = NULL;
        counted_methods = (sqlite3_io_methods) {
                .iVersion = 1, .xClose = counted_close, .xRead = counted_read, .xWrite = counted_write,
                .xTruncate = counted_truncate, .xSync = counted_sync, .xFileSize = counted_size,
                .xLock = counted_lock, .xUnlock = counted_unlock, .xCheckReservedLock = counted_reserved,
                .xFileControl = counted_fcntl, .xSectorSize = counted_sector,
                .xDeviceCharacteristics = counted_chars,
        };
        /* The default from now on: the store's VFS, registered at the first store_open, wraps it. */
        assert_int_equal(sqlite3_vfs_register(&counting_vfs, 1), SQLITE_OK);
        return 0;
}

struct db {
        char dir[64], path[96];
};

static void db_make(struct db *d) {
        snprintf(d->dir, sizeof(d->dir), "/tmp/test-store-vfs.XXXXXX");
        assert_non_null(mkdtemp(d->dir));
        snprintf(d->path, sizeof(d->path), "%s/brokerd.db", d->dir);
}

static void db_remove(struct db *d) {
        static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
        char p[128];

        for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
                snprintf(p, sizeof(p), "%s%s", d->path, suffixes[i]);
                (void) unlink(p);
        }
        (void) rmdir(d->dir);
}

/* One region with peers and an audit row: a share's shape, five or so pages. */
struct share {
        unsigned n_regions;
        unsigned n_peers;
};

static int write_shares(struct store *s, void *userdata) {
        const struct share *sh = userdata;

        for (unsigned i = 0; i < sh->n_regions; i++) {
                struct store_region r = {
                        .owner = "hw0", .device = "nic0", .pool = "lowmem", .label = "rx ring",
                        .base = 0x100000 + (uint64_t) i * 0x200000, .size = 0x200000,
                        .state = REGION_OFFERED, .created = 1000, .updated = 1000,
                };
                uint64_t id;
                int q = store_region_insert(s, &r, &id);

                for (unsigned p = 0; q >= 0 && p < sh->n_peers; p++) {
                        char domain[16], token[48];

                        snprintf(domain, sizeof(domain), "vm%u", p);
                        /* A token is 32 characters, unique among live regions. */
                        snprintf(token, sizeof(token), "%024" PRIu64 "%08x", id, p & 0xffffffu);
                        q = store_peer_insert(s, &(struct store_peer) {
                                .region = id, .domain = domain, .access = ACCESS_RW, .state = PEER_GRANTED,
                                .token = token, .index = p,
                        });
                }
                if (q < 0)
                        return q;
        }
        return 0;
}

static const struct store_audit share_audit = {
        .time = 1000, .actor = "hw0", .action = "share", .reason = "a reason of a few dozen bytes, as real ones are",
};

static int count_region(void *userdata, const struct store_region *r) {
        (void) r;
        ++*(unsigned *) userdata;
        return 0;
}

static unsigned live_regions(struct store *s) {
        unsigned n = 0;

        assert_int_equal(store_load(s, &(struct store_load_ops) { .region = count_region }, &n), 0);
        return n;
}

/* Each commit after the WAL's first reaches the file in exactly one write, of several frames. */
static void test_one_write_a_commit(void **state) {
        struct db d;
        struct store *s = NULL;
        struct share one = { .n_regions = 1, .n_peers = 3 };
        unsigned writes;
        size_t bytes;

        (void) state;
        db_make(&d);
        assert_int_equal(store_open(d.path, &s), 0);
        assert_int_equal(store_transition(s, write_shares, &one, &share_audit, 1), 0);

        writes = wal_writes;
        bytes = wal_bytes;
        for (int i = 0; i < 50; i++)
                assert_int_equal(store_transition(s, write_shares, &one, &share_audit, 1), 0);
        assert_int_equal(wal_writes - writes, 50);
        /* More than one frame (24-byte header + 4 KiB page) a commit: the frames were joined. */
        assert_true((wal_bytes - bytes) / 50 >= 2 * (24 + 4096));
        assert_int_equal(live_regions(s), 51);

        store_close(s);
        /* What was written is what sqlite wrote: the database opens again with every row. */
        assert_int_equal(store_open(d.path, &s), 0);
        assert_int_equal(live_regions(s), 51);
        store_close(s);
        db_remove(&d);
}

/*
 * A transaction too big to keep (thousands of pages, spilled from sqlite's cache and read back
 * by the checkpoint) is written in bounded pieces and reads back whole.
 */
static void test_big_transaction(void **state) {
        struct db d;
        struct store *s = NULL;
        struct share many = { .n_regions = 3000, .n_peers = 4 };
        unsigned writes;

        (void) state;
        db_make(&d);
        assert_int_equal(store_open(d.path, &s), 0);
        writes = wal_writes;
        assert_int_equal(store_transition(s, write_shares, &many, &share_audit, 1), 0);
        assert_true(wal_writes - writes > 1);
        assert_int_equal(store_transition(s, write_shares, &many, &share_audit, 1), 0);
        assert_int_equal(live_regions(s), 6000);
        assert_int_equal(store_sync(s), 0);
        store_close(s);
        assert_int_equal(store_open(d.path, &s), 0);
        assert_int_equal(live_regions(s), 6000);
        store_close(s);
        db_remove(&d);
}

/* A write that fails is its commit's failure: nothing of it stays, and the next commit works. */
static void test_failed_write_fails_its_commit(void **state) {
        struct db d;
        struct store *s = NULL;
        struct share one = { .n_regions = 1, .n_peers = 2 };

        (void) state;
        db_make(&d);
        assert_int_equal(store_open(d.path, &s), 0);
        assert_int_equal(store_set_group_sync(s, true), 0);
        assert_int_equal(store_transition(s, write_shares, &one, &share_audit, 1), 0);

        fail_wal_writes = 1;
        assert_true(store_transition(s, write_shares, &one, &share_audit, 1) < 0);
        assert_int_equal(fail_wal_writes, 0);
        assert_int_equal(live_regions(s), 1);

        assert_int_equal(store_transition(s, write_shares, &one, &share_audit, 1), 0);
        assert_int_equal(store_sync(s), 0);
        assert_int_equal(live_regions(s), 2);
        store_close(s);
        assert_int_equal(store_open(d.path, &s), 0);
        assert_int_equal(live_regions(s), 2);
        store_close(s);
        db_remove(&d);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_one_write_a_commit),
                cmocka_unit_test(test_big_transaction),
                cmocka_unit_test(test_failed_write_fails_its_commit),
        };
        return cmocka_run_group_tests(tests, setup_counting_vfs, NULL);
}
