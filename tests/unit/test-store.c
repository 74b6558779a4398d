/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store-internal.h"
#include "store/store.h"

/*
 * One write in a transition of its own, giving the write's result: the store refuses writes
 * outside a transition. store_begin() and store_commit() are reached through the store's
 * private header, where they live once the public one drops them.
 */
#define TX(s, expr)                                             \
        ({                                                      \
                struct store *_tx = (s);                        \
                assert_int_equal(store_begin(_tx), 0);          \
                int _r = (expr);                                \
                if (_r < 0)                                     \
                        store_rollback(_tx);                    \
                else                                            \
                        assert_int_equal(store_commit(_tx), 0); \
                _r;                                             \
        })

#define TOKEN_A "0123456789abcdef0123456789abcdef"
#define TOKEN_B "fedcba9876543210fedcba9876543210"
#define HIGH_BASE UINT64_C(0xfffffffffffff000)
#define HIGH_SIZE UINT64_C(0x8000000000001000)
#define SENTINEL ((struct store *) 0x1)

struct fixture {
        char dir[64];
        char path[128];
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-store-XXXXXX");
        if (!mkdtemp(f->dir)) {
                free(f);
                return -1;
        }
        snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
        *state = f;
        return 0;
}

/* Removes the db and whatever sqlite left beside it (-wal, -shm, -journal). */
static int teardown(void **state) {
        struct fixture *f = *state;
        struct dirent *de;
        DIR *d;
        int r = 0;

        d = opendir(f->dir);
        if (!d)
                r = -1;
        else {
                while ((de = readdir(d)))
                        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
                            unlinkat(dirfd(d), de->d_name, 0) < 0)
                                r = -1;
                closedir(d);
        }
        if (rmdir(f->dir) < 0)
                r = -1;
        free(f);
        return r;
}

static const char *side_path(const struct fixture *f, const char *suffix, char *buf, size_t n) {
        snprintf(buf, n, "%s%s", f->path, suffix);
        return buf;
}

/* Direct sqlite access, to inspect and tamper with what the store wrote. */
static void raw_exec(const char *path, const char *sql) {
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

/*
 * A copy of the database and its WAL, opened apart: the store holds its file exclusively (no
 * other connection may read it while it is open), and a copy taken between transitions is
 * what a crash at that moment would leave.
 */
static sqlite3 *raw_snapshot(const char *path) {
        char snap[PATH_MAX], from[PATH_MAX], to[PATH_MAX], buf[65536];
        sqlite3 *db = NULL;

        snprintf(snap, sizeof(snap), "%s.snap", path);
        for (size_t i = 0; i < 3; i++) {
                const char *ext = (const char *[]) { "", "-wal", "-shm" }[i];
                FILE *in, *out;
                size_t n;

                snprintf(from, sizeof(from), "%s%s", path, ext);
                snprintf(to, sizeof(to), "%s%s", snap, ext);
                (void) unlink(to);
                in = fopen(from, "rb");
                if (!in || i == 2) {
                        if (in)
                                fclose(in);
                        continue;
                }
                out = fopen(to, "wb");
                assert_non_null(out);
                while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
                        assert_int_equal(fwrite(buf, 1, n, out), n);
                fclose(in);
                assert_int_equal(fclose(out), 0);
        }
        assert_int_equal(sqlite3_open(snap, &db), SQLITE_OK);
        return db;
}

static void raw_snapshot_close(sqlite3 *db, const char *path) {
        char snap[PATH_MAX];

        assert_int_equal(sqlite3_close(db), SQLITE_OK);
        for (size_t i = 0; i < 3; i++) {
                snprintf(snap, sizeof(snap), "%s.snap%s", path, (const char *[]) { "", "-wal", "-shm" }[i]);
                (void) unlink(snap);
        }
}

static int64_t raw_int(const char *path, const char *sql) {
        sqlite3 *db = raw_snapshot(path);
        sqlite3_stmt *st = NULL;
        int64_t v;

        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        raw_snapshot_close(db, path);
        return v;
}

static void raw_text(const char *path, const char *sql, char *buf, size_t n) {
        sqlite3 *db = raw_snapshot(path);
        sqlite3_stmt *st = NULL;

        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        snprintf(buf, n, "%s", (const char *) sqlite3_column_text(st, 0) ?: "(null)");
        sqlite3_finalize(st);
        raw_snapshot_close(db, path);
}

static size_t read_file(const char *path, char *buf, size_t n) {
        FILE *fp = fopen(path, "rb");
        size_t len;

        assert_non_null(fp);
        len = fread(buf, 1, n, fp);
        assert_true(feof(fp));
        fclose(fp);
        return len;
}

static mode_t file_mode(const char *path) {
        struct stat st;

        assert_int_equal(stat(path, &st), 0);
        return st.st_mode & 07777;
}

/* What store_load and store_audit_list reported, copied out of the callbacks. */
struct seen {
        unsigned n_regions, n_peers, n_routes, n_audit;
        unsigned fail_region_at, fail_peer_at, fail_route_at, fail_audit_at; /* 1-based, 0 = never */
        struct {
                struct store_region r;
                char owner[32], device[32], pool[32], label[32];
                bool has_label;
        } regions[8];
        struct {
                struct store_peer p;
                char domain[32], token[40];
                bool has_token;
        } peers[8];
        struct {
                struct store_route r;
                char device[32], domain[32], reason[32];
                bool has_reason;
        } routes[8];
        struct {
                struct store_audit a;
                char actor[32], action[32], domain[32], reason[32];
                bool has_domain;
        } audit[8];
};

static int seen_region(void *userdata, const struct store_region *r) {
        struct seen *s = userdata;
        unsigned i = s->n_regions++;

        assert_true(i < ELEMENTSOF(s->regions));
        s->regions[i].r = *r;
        snprintf(s->regions[i].owner, sizeof(s->regions[i].owner), "%s", r->owner);
        snprintf(s->regions[i].device, sizeof(s->regions[i].device), "%s", r->device);
        snprintf(s->regions[i].pool, sizeof(s->regions[i].pool), "%s", r->pool);
        s->regions[i].has_label = r->label;
        snprintf(s->regions[i].label, sizeof(s->regions[i].label), "%s", r->label ?: "");
        return s->n_regions == s->fail_region_at ? -E2BIG : 0;
}

static int seen_peer(void *userdata, const struct store_peer *p) {
        struct seen *s = userdata;
        unsigned i = s->n_peers++;

        assert_true(i < ELEMENTSOF(s->peers));
        s->peers[i].p = *p;
        snprintf(s->peers[i].domain, sizeof(s->peers[i].domain), "%s", p->domain);
        s->peers[i].has_token = p->token;
        snprintf(s->peers[i].token, sizeof(s->peers[i].token), "%s", p->token ?: "");
        return s->n_peers == s->fail_peer_at ? -E2BIG : 0;
}

static int seen_route(void *userdata, const struct store_route *r) {
        struct seen *s = userdata;
        unsigned i = s->n_routes++;

        assert_true(i < ELEMENTSOF(s->routes));
        s->routes[i].r = *r;
        snprintf(s->routes[i].device, sizeof(s->routes[i].device), "%s", r->device);
        snprintf(s->routes[i].domain, sizeof(s->routes[i].domain), "%s", r->domain);
        s->routes[i].has_reason = r->reason;
        snprintf(s->routes[i].reason, sizeof(s->routes[i].reason), "%s", r->reason ?: "");
        return s->n_routes == s->fail_route_at ? -E2BIG : 0;
}

static int seen_audit(void *userdata, const struct store_audit *a) {
        struct seen *s = userdata;
        unsigned i = s->n_audit++;

        assert_true(i < ELEMENTSOF(s->audit));
        s->audit[i].a = *a;
        snprintf(s->audit[i].actor, sizeof(s->audit[i].actor), "%s", a->actor);
        snprintf(s->audit[i].action, sizeof(s->audit[i].action), "%s", a->action);
        s->audit[i].has_domain = a->domain;
        snprintf(s->audit[i].domain, sizeof(s->audit[i].domain), "%s", a->domain ?: "");
        snprintf(s->audit[i].reason, sizeof(s->audit[i].reason), "%s", a->reason ?: "");
        return s->n_audit == s->fail_audit_at ? -E2BIG : 0;
}

static const struct store_load_ops seen_ops = {
        .region = seen_region,
        .peer = seen_peer,
        .route = seen_route,
};

static int load(struct store *s, struct seen *seen) {
        unsigned fr = seen->fail_region_at, fp = seen->fail_peer_at, fo = seen->fail_route_at;

        *seen = (struct seen) { .fail_region_at = fr, .fail_peer_at = fp, .fail_route_at = fo };
        return store_load(s, &seen_ops, seen);
}

static struct store_region region_template(const char *owner) {
        return (struct store_region) {
                .owner = owner,
                .device = "nic0",
                .pool = "lowmem",
                .label = "rx ring",
                .base = 0x100000,
                .size = 0x200000,
                .state = REGION_OFFERED,
                .created = 1000,
                .updated = 1000,
        };
}

/* Inside an open transition. */
static uint64_t insert_region_raw(struct store *s, enum region_state state) {
        struct store_region r = region_template("vm-a");
        uint64_t id = 0;

        r.state = state;
        assert_int_equal(store_region_insert(s, &r, &id), 0);
        assert_true(id > 0);
        return id;
}

static void insert_peer_raw(struct store *s, uint64_t region, const char *domain, const char *token) {
        /* In the order of the calls, like a share's list of peers. */
        static uint64_t last_region;
        static unsigned next;
        struct store_peer p = {
                .region = region,
                .domain = domain,
                .access = ACCESS_RW,
                .state = PEER_GRANTED,
                .token = token,
        };

        if (region != last_region)
                next = 0;
        last_region = region;
        p.index = next++;
        assert_int_equal(store_peer_insert(s, &p), 0);
}

/* Each in a transition of its own. */
static uint64_t insert_region(struct store *s, enum region_state state) {
        return TX(s, (int) insert_region_raw(s, state));
}

static void insert_peer(struct store *s, uint64_t region, const char *domain, const char *token) {
        TX(s, (insert_peer_raw(s, region, domain, token), 0));
}

static void test_open_fresh(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL, *ret = SENTINEL;
        char buf[256], mode[16];

        assert_int_equal(store_open(f->path, &s), 0);
        assert_non_null(s);
        assert_string_equal(store_last_error(s), "");

        /* The state and sqlite's side files are root's alone, whatever the umask. */
        assert_int_equal(file_mode(f->path), 0600);
        assert_int_equal(file_mode(side_path(f, "-wal", buf, sizeof(buf))), 0600);
        /* Exclusive locking: the WAL index is in the store's heap, never in a shared -shm file. */
        assert_int_equal(access(side_path(f, "-shm", buf, sizeof(buf)), F_OK), -1);
        assert_int_equal(errno, ENOENT);
        /* And no other connection can read the file, let alone lock it, while the store is open. */
        {
                sqlite3 *other = NULL;
                assert_int_equal(sqlite3_open(f->path, &other), SQLITE_OK);
                assert_int_equal(sqlite3_exec(other, "SELECT count(*) FROM regions", NULL, NULL, NULL), SQLITE_BUSY);
                assert_int_equal(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_BUSY);
                assert_int_equal(sqlite3_close(other), SQLITE_OK);
        }
        /* Nor can a second store (a second brokerd on the same file does not start). */
        assert_int_equal(store_open(f->path, &ret), -EBUSY);
        assert_ptr_equal(ret, SENTINEL);

        raw_text(f->path, "PRAGMA journal_mode", mode, sizeof(mode));
        assert_string_equal(mode, "wal");
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND "
                                          "name IN ('regions', 'peers', 'routes', 'audit')"),
                         4);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                                          "name IN ('regions_reclaimed')"),
                         1);
        /* Schema 4: peers and routes are their primary key's b-tree alone; regions.state unindexed.
         * Schema 5: audit is one b-tree, numbered without sqlite_sequence. */
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"), 1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name = 'audit' AND "
                                          "sql LIKE '%AUTOINCREMENT%'"),
                         0);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_index_list('peers') WHERE origin = 'pk'"),
                         1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_index_list('routes') WHERE origin = 'pk'"),
                         1);
        store_close(s);

        /* An in-memory store works (no WAL there). */
        s = NULL;
        assert_int_equal(store_open(":memory:", &s), 0);
        insert_region(s, REGION_ACTIVE);
        store_close(s);

        /* Failing: a missing directory or no path at all, with the output untouched. */
        snprintf(buf, sizeof(buf), "%s/missing/state.db", f->dir);
        assert_int_equal(store_open(buf, &ret), -ENOENT);
        assert_ptr_equal(ret, SENTINEL);
        assert_int_equal(store_open(NULL, &ret), -EINVAL);
        assert_int_equal(store_open("", &ret), -EINVAL);
        assert_ptr_equal(ret, SENTINEL);
}

static void test_reopen(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL, *ret = SENTINEL;
        struct seen seen = {};
        char junk[128], before[4096], after[4096];
        size_t n_before;
        uint64_t id;
        int fd;

        assert_int_equal(store_open(f->path, &s), 0);
        id = insert_region(s, REGION_ACTIVE);
        store_close(s);

        s = NULL;
        assert_int_equal(store_open(f->path, &s), 0);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 1);
        assert_int_equal(seen.regions[0].r.id, id);
        assert_string_equal(seen.regions[0].owner, "vm-a");
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
        store_close(s);

        /* Failing: a file that is not a database is refused and left as it was. */
        snprintf(junk, sizeof(junk), "%s/junk.db", f->dir);
        fd = open(junk, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        for (int i = 0; i < 64; i++)
                assert_int_equal(write(fd, "this is not an sqlite database ", 31), 31);
        close(fd);
        n_before = read_file(junk, before, sizeof(before));
        assert_int_equal(store_open(junk, &ret), -EIO);
        assert_ptr_equal(ret, SENTINEL);
        assert_int_equal(read_file(junk, after, sizeof(after)), n_before);
        assert_memory_equal(before, after, n_before);
}

static void test_future_version(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL, *ret = SENTINEL;
        static char before[1 << 16], after[1 << 16];
        char buf[256];
        size_t n_before;

        raw_exec(f->path, "CREATE TABLE later (x INTEGER); INSERT INTO later VALUES (42);"
                          "PRAGMA user_version = 99;");
        n_before = read_file(f->path, before, sizeof(before));
        assert_true(n_before > 0);

        /* Failing: refused, and not a byte changed (not even the switch to WAL). */
        assert_int_equal(store_open(f->path, &ret), -EPROTONOSUPPORT);
        assert_ptr_equal(ret, SENTINEL);
        assert_int_equal(read_file(f->path, after, sizeof(after)), n_before);
        assert_memory_equal(before, after, n_before);
        assert_int_equal(access(side_path(f, "-wal", buf, sizeof(buf)), F_OK), -1);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 99);

        /* Passing: an older (version 0) database with foreign tables is migrated in place. */
        raw_exec(f->path, "PRAGMA user_version = 0");
        assert_int_equal(store_open(f->path, &s), 0);
        store_close(s);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
        assert_int_equal(raw_int(f->path, "SELECT x FROM later"), 42);
}

static void test_migration_failure(void **state) {
        struct fixture *f = *state;
        struct store *ret = SENTINEL;

        /* Failing: a table in the way makes migration 0 -> 1 fail, and all of it rolls back. */
        raw_exec(f->path, "CREATE TABLE peers (x INTEGER)");
        assert_int_equal(store_open(f->path, &ret), -EIO);
        assert_ptr_equal(ret, SENTINEL);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 0);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name = 'regions'"), 0);

        /* Passing: with the obstacle gone the same file migrates. */
        raw_exec(f->path, "DROP TABLE peers");
        assert_int_equal(store_open(f->path, &ret), 0);
        store_close(ret);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
}

static void test_region_roundtrip(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct store_region r = region_template("vm-a");
        struct seen seen = {};
        uint64_t id = 0, untouched = 77;

        assert_int_equal(store_open(f->path, &s), 0);

        r.base = HIGH_BASE;
        r.size = HIGH_SIZE;
        r.label = NULL;
        r.deadline = -5;
        r.owner_mapped = true;
        assert_int_equal(TX(s, store_region_insert(s, &r, &id)), 0);
        assert_int_equal(id, 1);

        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 1);
        assert_int_equal(seen.regions[0].r.id, id);
        assert_true(seen.regions[0].r.base == HIGH_BASE);
        assert_true(seen.regions[0].r.size == HIGH_SIZE);
        assert_string_equal(seen.regions[0].owner, "vm-a");
        assert_string_equal(seen.regions[0].device, "nic0");
        assert_string_equal(seen.regions[0].pool, "lowmem");
        assert_false(seen.regions[0].has_label);
        assert_int_equal(seen.regions[0].r.state, REGION_OFFERED);
        assert_int_equal(seen.regions[0].r.deadline, -5);
        assert_true(seen.regions[0].r.owner_mapped);
        assert_int_equal(seen.regions[0].r.created, 1000);
        assert_int_equal(seen.regions[0].r.updated, 1000);

        /* Bit-for-bit in sqlite's signed INTEGER. */
        assert_true(raw_int(f->path, "SELECT base FROM regions") == (int64_t) HIGH_BASE);
        assert_true(raw_int(f->path, "SELECT typeof(base) = 'integer' FROM regions") == 1);

        assert_int_equal(TX(s, store_region_update(s, id, REGION_REVOKING, 5000, false, 2000)), 0);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 1);
        assert_int_equal(seen.regions[0].r.state, REGION_REVOKING);
        assert_int_equal(seen.regions[0].r.deadline, 5000);
        assert_false(seen.regions[0].r.owner_mapped);
        assert_int_equal(seen.regions[0].r.created, 1000);
        assert_int_equal(seen.regions[0].r.updated, 2000);
        assert_true(seen.regions[0].r.base == HIGH_BASE);

        /* Failing: a missing row, a bad state, missing strings; the out-param stays put. */
        assert_int_equal(TX(s, store_region_update(s, id + 1, REGION_ACTIVE, 0, false, 3000)), -ENOENT);
        assert_int_equal(TX(s, store_region_update(s, id, _REGION_STATE_MAX, 0, false, 3000)), -EINVAL);
        assert_int_equal(TX(s, store_region_update(s, 0, REGION_ACTIVE, 0, false, 3000)), -EINVAL);
        r.owner = NULL;
        assert_int_equal(TX(s, store_region_insert(s, &r, &untouched)), -EINVAL);
        r.owner = "vm-a";
        r.state = (enum region_state) 42;
        assert_int_equal(TX(s, store_region_insert(s, &r, &untouched)), -EINVAL);
        assert_int_equal(untouched, 77);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 1);
        assert_int_equal(seen.regions[0].r.state, REGION_REVOKING);

        store_close(s);
}

static void test_region_ids_not_reused(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        uint64_t a, b, c;

        assert_int_equal(store_open(f->path, &s), 0);
        a = insert_region(s, REGION_ACTIVE);
        assert_int_equal(TX(s, store_region_update(s, a, REGION_RECLAIMED, 0, false, 2000)), 0);
        b = insert_region(s, REGION_OFFERED);
        assert_true(b > a);
        store_close(s);

        /* Even if the newest row vanished, its id is not handed out again. */
        raw_exec(f->path, "DELETE FROM regions WHERE id = (SELECT max(id) FROM regions)");
        s = NULL;
        assert_int_equal(store_open(f->path, &s), 0);
        c = insert_region(s, REGION_OFFERED);
        assert_true(c > b);

        /* Failing: the vanished id is gone for good. */
        assert_int_equal(TX(s, store_region_update(s, b, REGION_ACTIVE, 0, false, 3000)), -ENOENT);
        store_close(s);
}

static void test_peers(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct store_peer p = {
                .domain = "vm-b",
                .access = ACCESS_RO,
                .state = PEER_GRANTED,
                .token = TOKEN_B,
        };
        struct seen seen = {};
        uint64_t id;

        assert_int_equal(store_open(f->path, &s), 0);
        id = insert_region(s, REGION_OFFERED);
        insert_peer(s, id, "vm-a", TOKEN_A);

        /* Failing: same (region, domain), missing region, bad token, bad enums. (Tokens are not
         * indexed since schema 4: the broker refuses one it holds already, test-broker.) */
        p.region = id;
        p.domain = "vm-a";
        p.token = TOKEN_B;
        assert_int_equal(TX(s, store_peer_insert(s, &p)), -EEXIST);
        p.domain = "vm-b";
        p.region = id + 100;
        assert_int_equal(TX(s, store_peer_insert(s, &p)), -EINVAL);
        p.region = id;
        p.token = "0123456789abcdef0123456789abcde";
        assert_int_equal(TX(s, store_peer_insert(s, &p)), -EINVAL);
        p.token = TOKEN_B;
        p.access = (enum access_mode) 3;
        assert_int_equal(TX(s, store_peer_insert(s, &p)), -EINVAL);
        p.access = ACCESS_RO;
        p.state = _PEER_STATE_MAX;
        assert_int_equal(TX(s, store_peer_insert(s, &p)), -EINVAL);
        assert_int_equal(TX(s, store_peer_update(s, id, "vm-x", PEER_ATTACHED, true, true)), -ENOENT);
        assert_int_equal(TX(s, store_peer_update(s, id + 100, "vm-a", PEER_ATTACHED, true, true)), -ENOENT);
        assert_int_equal(TX(s, store_peer_update(s, id, NULL, PEER_ATTACHED, true, true)), -EINVAL);
        assert_int_not_equal(store_last_error(s)[0], '\0');

        /* Passing: a second peer, then updates with and without clearing the token. */
        p.state = PEER_GRANTED;
        assert_int_equal(TX(s, store_peer_insert(s, &p)), 0);
        assert_int_equal(TX(s, store_peer_update(s, id, "vm-a", PEER_ATTACHED, false, true)), 0);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_peers, 2);
        assert_string_equal(seen.peers[0].domain, "vm-a");
        assert_int_equal(seen.peers[0].p.region, id);
        assert_int_equal(seen.peers[0].p.access, ACCESS_RW);
        assert_int_equal(seen.peers[0].p.state, PEER_ATTACHED);
        assert_true(seen.peers[0].p.mapped);
        assert_true(seen.peers[0].has_token);
        assert_string_equal(seen.peers[0].token, TOKEN_A);
        assert_string_equal(seen.peers[1].domain, "vm-b");
        assert_int_equal(seen.peers[1].p.access, ACCESS_RO);
        assert_false(seen.peers[1].p.mapped);

        assert_int_equal(TX(s, store_peer_update(s, id, "vm-a", PEER_RELEASED, true, false)), 0);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.peers[0].p.state, PEER_RELEASED);
        assert_false(seen.peers[0].has_token);
        assert_false(seen.peers[0].p.mapped);
        assert_true(seen.peers[1].has_token);
        assert_string_equal(seen.peers[1].token, TOKEN_B);

        store_close(s);
}

static void test_rollback(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct seen seen = {};
        struct store_route rt = { .device = "nic0", .domain = "vm-b", .kind = ROUTE_REGION, .updated = 1 };
        struct store_audit a = { .time = 1, .actor = "vm-a", .action = "share" };
        uint64_t id;

        assert_int_equal(store_open(f->path, &s), 0);

        assert_int_equal(store_begin(s), 0);
        /* Failing: no nested transaction. */
        assert_int_equal(store_begin(s), -EALREADY);
        id = insert_region_raw(s, REGION_OFFERED);
        insert_peer_raw(s, id, "vm-b", TOKEN_A);
        rt.region = id;
        assert_int_equal(store_route_set(s, &rt), 0);
        a.region = id;
        assert_int_equal(store_audit_append(s, &a), 0);
        store_rollback(s);

        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 0);
        assert_int_equal(seen.n_peers, 0);
        assert_int_equal(seen.n_routes, 0);
        assert_int_equal(store_audit_list(s, 0, 0, 0, seen_audit, &seen), 0);
        assert_int_equal(seen.n_audit, 0);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM regions"), 0);

        /* Rolling back or committing with nothing open. */
        store_rollback(s);
        assert_int_equal(store_commit(s), -EPERM);

        /* Passing: the same work committed is there, also for another connection. */
        assert_int_equal(store_begin(s), 0);
        id = insert_region_raw(s, REGION_OFFERED);
        insert_peer_raw(s, id, "vm-b", TOKEN_A);
        assert_int_equal(store_commit(s), 0);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 1);
        assert_int_equal(seen.n_peers, 1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM peers"), 1);

        store_close(s);
}

static void test_routes(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct seen seen = {};
        struct store_route rt = { .device = "nic0", .domain = "vm-b", .kind = ROUTE_REGION, .updated = 10 };
        uint64_t id;

        assert_int_equal(store_open(f->path, &s), 0);
        id = insert_region(s, REGION_ACTIVE);

        rt.region = id;
        assert_int_equal(TX(s, store_route_set(s, &rt)), 0);
        rt = (struct store_route) {
                .device = "nic0", .domain = "vm-a", .kind = ROUTE_BOUNCE, .reason = "no room", .updated = 11
        };
        assert_int_equal(TX(s, store_route_set(s, &rt)), 0);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_routes, 2);
        assert_string_equal(seen.routes[0].domain, "vm-a");
        assert_int_equal(seen.routes[0].r.kind, ROUTE_BOUNCE);
        assert_int_equal(seen.routes[0].r.region, 0);
        assert_string_equal(seen.routes[0].reason, "no room");
        assert_string_equal(seen.routes[1].device, "nic0");
        assert_string_equal(seen.routes[1].domain, "vm-b");
        assert_int_equal(seen.routes[1].r.kind, ROUTE_REGION);
        assert_int_equal(seen.routes[1].r.region, id);
        assert_false(seen.routes[1].has_reason);
        assert_int_equal(seen.routes[1].r.updated, 10);

        /* Upsert: vm-b now bounces. */
        rt = (struct store_route) {
                .device = "nic0", .domain = "vm-b", .kind = ROUTE_BOUNCE, .reason = "pool full", .updated = 12
        };
        assert_int_equal(TX(s, store_route_set(s, &rt)), 0);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_routes, 2);
        assert_int_equal(seen.routes[1].r.kind, ROUTE_BOUNCE);
        assert_int_equal(seen.routes[1].r.region, 0);
        assert_string_equal(seen.routes[1].reason, "pool full");
        assert_int_equal(seen.routes[1].r.updated, 12);

        assert_int_equal(TX(s, store_route_delete(s, "nic0", "vm-a")), 0);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_routes, 1);
        assert_string_equal(seen.routes[0].domain, "vm-b");

        /* Failing: deleting twice, missing region, region route without region, bad kind. */
        assert_int_equal(TX(s, store_route_delete(s, "nic0", "vm-a")), -ENOENT);
        assert_int_equal(TX(s, store_route_delete(s, NULL, "vm-a")), -EINVAL);
        rt = (struct store_route) { .device = "nic1", .domain = "vm-c", .kind = ROUTE_REGION, .region = id + 9 };
        assert_int_equal(TX(s, store_route_set(s, &rt)), -EINVAL);
        rt.region = 0;
        assert_int_equal(TX(s, store_route_set(s, &rt)), -EINVAL);
        rt.kind = ROUTE_BOUNCE;
        rt.region = id;
        assert_int_equal(TX(s, store_route_set(s, &rt)), -EINVAL);
        rt.kind = (enum route_kind) 5;
        assert_int_equal(TX(s, store_route_set(s, &rt)), -EINVAL);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_routes, 1);

        store_close(s);
}

static void test_audit(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct seen seen = {};
        uint64_t id;

        assert_int_equal(store_open(f->path, &s), 0);
        id = insert_region(s, REGION_OFFERED);

        for (int i = 1; i <= 5; i++) {
                struct store_audit a = {
                        .time = 100 * i,
                        .actor = "vm-a",
                        .action = i % 2 ? "share" : "attach",
                        .region = i % 2 ? id : 0,
                        .domain = i % 2 ? "vm-b" : NULL,
                        .from_state = "offered",
                        .to_state = "active",
                        .reason = "test",
                        .seq = 999, /* ignored: sqlite assigns it */
                };
                assert_int_equal(TX(s, store_audit_append(s, &a)), 0);
        }

        assert_int_equal(store_audit_list(s, 0, 0, 0, seen_audit, &seen), 0);
        assert_int_equal(seen.n_audit, 5);
        for (unsigned i = 0; i < 5; i++) {
                assert_int_equal(seen.audit[i].a.seq, i + 1);
                assert_int_equal(seen.audit[i].a.time, 100 * (i + 1));
        }
        assert_string_equal(seen.audit[0].actor, "vm-a");
        assert_string_equal(seen.audit[0].action, "share");
        assert_int_equal(seen.audit[0].a.region, id);
        assert_string_equal(seen.audit[0].domain, "vm-b");
        assert_string_equal(seen.audit[0].reason, "test");
        assert_int_equal(seen.audit[1].a.region, 0);
        assert_false(seen.audit[1].has_domain);

        seen = (struct seen) {};
        assert_int_equal(store_audit_list(s, 2, 0, 0, seen_audit, &seen), 0);
        assert_int_equal(seen.n_audit, 3);
        assert_int_equal(seen.audit[0].a.seq, 3);

        seen = (struct seen) {};
        assert_int_equal(store_audit_list(s, 0, 400, 0, seen_audit, &seen), 0);
        assert_int_equal(seen.n_audit, 2);
        assert_int_equal(seen.audit[0].a.seq, 4);

        seen = (struct seen) {};
        assert_int_equal(store_audit_list(s, 1, 200, 2, seen_audit, &seen), 0);
        assert_int_equal(seen.n_audit, 2);
        assert_int_equal(seen.audit[0].a.seq, 2);
        assert_int_equal(seen.audit[1].a.seq, 3);

        seen = (struct seen) {};
        assert_int_equal(store_audit_list(s, 5, 0, 0, seen_audit, &seen), 0);
        assert_int_equal(seen.n_audit, 0);

        /* Failing: missing actor or action, a callback error stops the listing. */
        assert_int_equal(TX(s, store_audit_append(s, &(struct store_audit) { .time = 1, .action = "x" })), -EINVAL);
        assert_int_equal(TX(s, store_audit_append(s, &(struct store_audit) { .time = 1, .actor = "x" })), -EINVAL);
        assert_int_equal(store_audit_list(s, 0, 0, 0, NULL, NULL), -EINVAL);
        seen = (struct seen) { .fail_audit_at = 2 };
        assert_int_equal(store_audit_list(s, 0, 0, 0, seen_audit, &seen), -E2BIG);
        assert_int_equal(seen.n_audit, 2);
        seen = (struct seen) {};
        assert_int_equal(store_audit_list(s, 0, 0, 0, seen_audit, &seen), 0);
        assert_int_equal(seen.n_audit, 5);

        store_close(s);
}

static void test_load_skips_reclaimed(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct seen seen = {};
        struct store_route rt = { .device = "nic0", .domain = "vm-c", .kind = ROUTE_REGION, .updated = 1 };
        uint64_t live, gone;

        assert_int_equal(store_open(f->path, &s), 0);
        live = insert_region(s, REGION_ACTIVE);
        gone = insert_region(s, REGION_ACTIVE);
        insert_peer(s, live, "vm-b", TOKEN_A);
        insert_peer(s, gone, "vm-b", TOKEN_B);
        insert_peer(s, gone, "vm-c", NULL);
        rt.region = gone;
        assert_int_equal(TX(s, store_route_set(s, &rt)), 0);

        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 2);
        assert_int_equal(seen.n_peers, 3);

        assert_int_equal(TX(s, store_region_update(s, gone, REGION_RECLAIMED, 0, false, 2000)), 0);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 1);
        assert_int_equal(seen.regions[0].r.id, live);
        assert_int_equal(seen.n_peers, 1);
        assert_int_equal(seen.peers[0].p.region, live);
        /* Routes are all loaded, whatever their region became. */
        assert_int_equal(seen.n_routes, 1);
        assert_int_equal(seen.routes[0].r.region, gone);

        /* NULL callbacks are skipped. */
        assert_int_equal(store_load(s, &(struct store_load_ops) {}, NULL), 0);
        assert_int_equal(store_load(s, NULL, NULL), -EINVAL);

        store_close(s);
}

static void test_load_callback_error(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct seen seen = {};
        struct store_route rt = { .device = "nic0", .domain = "vm-c", .kind = ROUTE_BOUNCE, .updated = 1 };
        uint64_t a, b;

        assert_int_equal(store_open(f->path, &s), 0);
        a = insert_region(s, REGION_ACTIVE);
        b = insert_region(s, REGION_OFFERED);
        insert_peer(s, a, "vm-b", NULL);
        insert_peer(s, b, "vm-b", NULL);
        assert_int_equal(TX(s, store_route_set(s, &rt)), 0);

        seen.fail_region_at = 1;
        assert_int_equal(load(s, &seen), -E2BIG);
        assert_int_equal(seen.n_regions, 1);
        assert_int_equal(seen.n_peers, 0);
        assert_int_equal(seen.n_routes, 0);

        seen = (struct seen) { .fail_peer_at = 2 };
        assert_int_equal(load(s, &seen), -E2BIG);
        assert_int_equal(seen.n_regions, 2);
        assert_int_equal(seen.n_peers, 2);
        assert_int_equal(seen.n_routes, 0);

        seen = (struct seen) { .fail_route_at = 1 };
        assert_int_equal(load(s, &seen), -E2BIG);
        assert_int_equal(seen.n_routes, 1);

        /* Passing: the failed loads left no transaction or statement behind. */
        seen = (struct seen) {};
        assert_int_equal(store_begin(s), 0);
        assert_int_equal(store_region_update(s, b, REGION_ACTIVE, 0, true, 2000), 0);
        /* A load inside the caller's transaction sees it and leaves the transaction open. */
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 2);
        assert_int_equal(seen.regions[1].r.state, REGION_ACTIVE);
        assert_int_equal(store_commit(s), 0);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 2);
        assert_int_equal(seen.n_peers, 2);
        assert_int_equal(seen.n_routes, 1);

        store_close(s);
}

/* The child: one committed region, then a crash in the middle of a second transaction. */
static int crash_child(const char *path) {
        struct store *s = NULL;
        struct store_region r = region_template("vm-a");
        struct store_peer p = { .domain = "vm-b", .access = ACCESS_RO, .state = PEER_GRANTED, .token = TOKEN_A };
        uint64_t id;

        if (store_open(path, &s) < 0)
                return 10;
        if (store_begin(s) < 0 || store_region_insert(s, &r, &id) < 0 || store_commit(s) < 0)
                return 11;
        if (store_begin(s) < 0)
                return 12;
        r.base = HIGH_BASE;
        if (store_region_insert(s, &r, &p.region) < 0 || store_peer_insert(s, &p) < 0)
                return 13;
        if (store_region_update(s, id, REGION_REVOKING, 1, false, 2) < 0)
                return 14;
        return 0;
}

static void test_crash_consistency(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct seen seen = {};
        char check[64];
        unsigned char result = 0xff;
        int status, pipefd[2];
        pid_t pid;

        /*
         * The child reports through a pipe rather than its exit status: a leak checker
         * (valgrind) rightly finds the crashed child's memory unfreed and changes the status.
         */
        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                unsigned char r;

                close(pipefd[0]);
                r = (unsigned char) crash_child(f->path);
                if (write(pipefd[1], &r, 1) != 1)
                        _exit(1);
                _exit(0);
        }
        close(pipefd[1]);
        assert_int_equal(read(pipefd[0], &result, 1), 1);
        close(pipefd[0]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(result, 0);

        assert_int_equal(store_open(f->path, &s), 0);
        /* Passing: the committed region is there, unchanged. Failing: nothing uncommitted is. */
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 1);
        assert_int_equal(seen.regions[0].r.state, REGION_OFFERED);
        assert_int_equal(seen.regions[0].r.base, 0x100000);
        assert_int_equal(seen.n_peers, 0);
        raw_text(f->path, "PRAGMA integrity_check", check, sizeof(check));
        assert_string_equal(check, "ok");
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM regions"), 1);
        store_close(s);
}

static int write_region_and_peer(struct store *s, void *userdata) {
        uint64_t *ret_id = userdata;
        struct store_region r = region_template("vm-a");
        int q;

        q = store_region_insert(s, &r, ret_id);
        if (q < 0)
                return q;
        return store_peer_insert(s, &(struct store_peer) {
                .region = *ret_id, .domain = "vm-b", .access = ACCESS_RO, .state = PEER_GRANTED,
        });
}

static int write_nested(struct store *s, void *userdata) {
        int *ret = userdata;

        *ret = store_transition(s, NULL, NULL, NULL, 0);
        return 0;
}

static int write_then_fail(struct store *s, void *userdata) {
        uint64_t id;

        (void) userdata;
        return write_region_and_peer(s, &id) < 0 ? -EIO : -ENOTRECOVERABLE;
}

static void test_write_outside_transition(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct store_region r = region_template("vm-a");
        struct store_peer p = { .region = 1, .domain = "vm-b", .access = ACCESS_RW, .state = PEER_GRANTED };
        struct store_route rt = { .device = "nic0", .domain = "vm-b", .kind = ROUTE_BOUNCE, .updated = 1 };
        struct store_audit a = { .time = 1, .actor = "vm-a", .action = "share" };
        struct seen seen = {};
        uint64_t id = 77;
        int nested = 0;

        assert_int_equal(store_open(f->path, &s), 0);

        /* Failing: every write is refused outside a transition, and nothing is written. */
        assert_int_equal(store_region_insert(s, &r, &id), -EPERM);
        assert_int_equal(id, 77);
        assert_string_equal(store_last_error(s), "write outside a transition");
        assert_int_equal(store_region_update(s, 1, REGION_ACTIVE, 0, false, 2), -EPERM);
        assert_int_equal(store_peer_insert(s, &p), -EPERM);
        assert_int_equal(store_peer_update(s, 1, "vm-b", PEER_ATTACHED, false, true), -EPERM);
        assert_int_equal(store_route_set(s, &rt), -EPERM);
        assert_int_equal(store_route_delete(s, "nic0", "vm-b"), -EPERM);
        assert_int_equal(store_audit_append(s, &a), -EPERM);
        assert_int_equal(raw_int(f->path, "SELECT (SELECT count(*) FROM regions) + (SELECT count(*) FROM peers) +"
                                          " (SELECT count(*) FROM routes) + (SELECT count(*) FROM audit)"),
                         0);

        /* Passing: the same writes inside store_transition, with their audit row. */
        assert_int_equal(store_transition(s, write_region_and_peer, &id, &a, 1), 0);
        assert_int_equal(id, 1);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 1);
        assert_int_equal(seen.n_peers, 1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit"), 1);

        /* And once it is over, writes are refused again. */
        assert_int_equal(store_region_update(s, id, REGION_ACTIVE, 0, false, 2), -EPERM);

        /* No nesting; a failing write or audit row undoes the whole transition. */
        assert_int_equal(store_transition(s, write_nested, &nested, NULL, 0), 0);
        assert_int_equal(nested, -EALREADY);
        assert_int_equal(store_transition(s, write_then_fail, NULL, &a, 1), -ENOTRECOVERABLE);
        assert_int_equal(store_transition(s, write_region_and_peer, &id, &(struct store_audit) { .time = 1 }, 1),
                         -EINVAL);
        assert_int_equal(store_transition(s, NULL, NULL, NULL, 1), -EINVAL);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM regions"), 1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit"), 1);
        assert_int_equal(store_region_update(s, id, REGION_ACTIVE, 0, false, 2), -EPERM);

        store_close(s);
}

/* n audit rows at times 100, 200, ... in one transition. */
static int write_audit_rows(struct store *s, void *userdata) {
        const unsigned *n = userdata;

        for (unsigned i = 1; i <= *n; i++) {
                int q = store_audit_append(s, &(struct store_audit) {
                        .time = 100 * (int64_t) i, .actor = "vm-a", .action = "share",
                });
                if (q < 0)
                        return q;
        }
        return 0;
}

static void test_audit_tail(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct seen seen = {};
        unsigned n = 5;

        assert_int_equal(store_open(f->path, &s), 0);
        assert_int_equal(store_audit_tail(s, 3, seen_audit, &seen), 0);
        assert_int_equal(seen.n_audit, 0);

        assert_int_equal(store_transition(s, write_audit_rows, &n, NULL, 0), 0);
        /* The newest three, oldest first. */
        assert_int_equal(store_audit_tail(s, 3, seen_audit, &seen), 0);
        assert_int_equal(seen.n_audit, 3);
        for (unsigned i = 0; i < 3; i++) {
                assert_int_equal(seen.audit[i].a.seq, 3 + i);
                assert_int_equal(seen.audit[i].a.time, 300 + 100 * i);
        }
        assert_string_equal(seen.audit[0].actor, "vm-a");
        seen = (struct seen) {};
        assert_int_equal(store_audit_tail(s, 100, seen_audit, &seen), 0);
        assert_int_equal(seen.n_audit, 5);
        assert_int_equal(seen.audit[0].a.seq, 1);

        /* Failing: a tail of nothing, no callback, a callback error. */
        assert_int_equal(store_audit_tail(s, 0, seen_audit, &seen), -EINVAL);
        assert_int_equal(store_audit_tail(s, 1, NULL, NULL), -EINVAL);
        seen = (struct seen) { .fail_audit_at = 1 };
        assert_int_equal(store_audit_tail(s, 2, seen_audit, &seen), -E2BIG);
        assert_int_equal(seen.n_audit, 1);
        seen = (struct seen) {};
        assert_int_equal(store_audit_tail(s, 2, seen_audit, &seen), 0);
        assert_int_equal(seen.audit[0].a.seq, 4);

        store_close(s);
}

/* Schema 1, as migration 0 -> 1 made it (store-schema.c). */
#define V1_SCHEMA \
        "CREATE TABLE regions (id INTEGER PRIMARY KEY AUTOINCREMENT, owner TEXT NOT NULL, device TEXT NOT NULL," \
        " pool TEXT NOT NULL, label TEXT, base INTEGER NOT NULL, size INTEGER NOT NULL," \
        " state TEXT NOT NULL CHECK (state IN ('offered', 'active', 'revoking', 'reclaimed'))," \
        " deadline INTEGER NOT NULL DEFAULT 0, owner_mapped INTEGER NOT NULL DEFAULT 0 CHECK (owner_mapped IN (0, 1))," \
        " created INTEGER NOT NULL, updated INTEGER NOT NULL) STRICT;" \
        "CREATE INDEX regions_state ON regions(state);" \
        "CREATE TABLE peers (region INTEGER NOT NULL REFERENCES regions(id) ON DELETE CASCADE," \
        " domain TEXT NOT NULL, access TEXT NOT NULL CHECK (access IN ('ro', 'rw'))," \
        " state TEXT NOT NULL CHECK (state IN ('granted', 'attached', 'released', 'revoked'))," \
        " token TEXT UNIQUE CHECK (token IS NULL OR length(token) = 32)," \
        " mapped INTEGER NOT NULL DEFAULT 0 CHECK (mapped IN (0, 1)), PRIMARY KEY (region, domain)) STRICT;" \
        "CREATE TABLE routes (device TEXT NOT NULL, domain TEXT NOT NULL," \
        " kind TEXT NOT NULL CHECK (kind IN ('region', 'bounce')), region INTEGER REFERENCES regions(id)," \
        " reason TEXT, updated INTEGER NOT NULL, PRIMARY KEY (device, domain)) STRICT;" \
        "CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, actor TEXT NOT NULL," \
        " region INTEGER, domain TEXT, action TEXT NOT NULL, from_state TEXT, to_state TEXT, reason TEXT) STRICT;" \
        "CREATE INDEX audit_time ON audit(time);"

/* How many ephemeral b-trees sqlite's program for sql opens (EXPLAIN), on a copy of the file. */
static int raw_ephemeral_tables(const char *path, const char *sql) {
        sqlite3 *db = raw_snapshot(path);
        sqlite3_stmt *st = NULL;
        char explain[512];
        int n = 0;

        snprintf(explain, sizeof(explain), "EXPLAIN %s", sql);
        assert_int_equal(sqlite3_prepare_v2(db, explain, -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW)
                n += strcmp((const char *) sqlite3_column_text(st, 1), "OpenEphemeral") == 0;
        sqlite3_finalize(st);
        raw_snapshot_close(db, path);
        return n;
}

/* What sqlite answers to one statement on a copy of the file. */
static int raw_step(const char *path, const char *sql) {
        sqlite3 *db = raw_snapshot(path);
        sqlite3_stmt *st = NULL;
        int rc;

        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        raw_snapshot_close(db, path);
        return rc;
}

static void test_migrate_from_version_1(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct seen seen = {};
        struct store_region next = region_template("vm-a");
        uint64_t id = 0;

        /* A version-1 database as schema 1 made it, with two peers in share order z, b; its
         * regions were numbered up to 2, and 2 is gone. */
        raw_exec(f->path, V1_SCHEMA
                 "INSERT INTO regions (owner, device, pool, base, size, state, created, updated)"
                 "  VALUES ('vm-a', 'nic0', 'net0', 0, 4096, 'active', 1, 1);"
                 "INSERT INTO regions (owner, device, pool, base, size, state, created, updated)"
                 "  VALUES ('vm-a', 'nic0', 'net0', 4096, 4096, 'reclaimed', 1, 1);"
                 "DELETE FROM regions WHERE id = 2;"
                 "INSERT INTO peers (region, domain, access, state, token) VALUES (1, 'vm-z', 'rw', 'granted', '"
                 TOKEN_A "');"
                 "INSERT INTO peers (region, domain, access, state, token) VALUES (1, 'vm-b', 'ro', 'attached', NULL);"
                 "INSERT INTO routes (device, domain, kind, region, updated) VALUES ('nic0', 'vm-z', 'region', 1, 1);"
                 "INSERT INTO audit (time, actor, action) VALUES (1, 'vm-a', 'share'), (2, 'vm-a', 'share'),"
                 "  (3, 'vm-a', 'share');"
                 "DELETE FROM audit WHERE seq = 3;" /* the numbering reached 3; the rows end at 2 */
                 "PRAGMA user_version = 1;");
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                                          "name = 'regions_reclaimed'"),
                         0);

        assert_int_equal(store_open(f->path, &s), 0);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                                          "name = 'regions_reclaimed'"),
                         1);
        /* The deletes retention runs use the new index. */
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_index_info('regions_reclaimed')"), 1);
        /* Schema 4 kept every row, the share order and the routes. */
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name = 'regions_state'"), 0);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 1);
        assert_int_equal(seen.n_peers, 2);
        assert_string_equal(seen.peers[0].domain, "vm-z");
        assert_string_equal(seen.peers[0].token, TOKEN_A);
        assert_string_equal(seen.peers[1].domain, "vm-b");
        assert_int_equal(seen.n_routes, 1);
        /* Schema 5 kept the audit rows, and the numbering: a row at 3 says so, the next is 4. */
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit WHERE seq <= 2 AND action = 'share'"), 2);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM audit WHERE seq = 3 AND action = 'schema'"), 1);
        assert_int_equal(store_transition(s, NULL, NULL, &(struct store_audit) {
                .time = 5, .actor = "vm-a", .action = "share",
        }, 1), 0);
        assert_int_equal(raw_int(f->path, "SELECT max(seq) FROM audit"), 4);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_sequence WHERE name = 'audit'"), 0);
        /* Schema 6 kept the regions' numbering (the next is 3, never 2 again) and the state rules,
         * now checked without an ephemeral b-tree in the updates that set a state. */
        assert_int_equal(TX(s, store_region_insert(s, &next, &id)), 0);
        assert_int_equal(id, 3);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_sequence WHERE name = 'regions'"), 1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name LIKE '%_v6'"), 0);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM pragma_index_info('regions_reclaimed')"), 1);
        assert_int_equal(raw_ephemeral_tables(f->path, "UPDATE regions SET state = 'revoking' WHERE id = 1"), 0);
        assert_int_equal(raw_ephemeral_tables(f->path, "UPDATE peers SET state = 'released' WHERE region = 1"), 0);
        assert_int_equal(raw_step(f->path, "UPDATE regions SET state = 'gone' WHERE id = 1"), SQLITE_CONSTRAINT);
        assert_int_equal(raw_step(f->path, "UPDATE peers SET state = 'gone' WHERE region = 1"), SQLITE_CONSTRAINT);
        store_close(s);
}

static uint64_t insert_region_with_bells(struct store *s) {
        struct store_region r = region_template("vm-a");
        uint64_t id = 0;

        r.bell_vectors = 3;
        r.bell_generation = 5;
        assert_int_equal(store_region_insert(s, &r, &id), 0);
        return id;
}

static int set_generation_7(struct store *s, void *userdata) {
        return store_region_set_bell_generation(s, *(uint64_t *) userdata, 7, 2000);
}

/* Doorbells are recorded with the region; peers come back in share order, not by name. */
static void test_region_bells(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct seen seen = {};
        struct store_region bad = region_template("vm-a");
        uint64_t id;

        assert_int_equal(store_open(f->path, &s), 0);
        id = TX(s, (int) insert_region_with_bells(s));
        insert_peer(s, id, "vm-z", TOKEN_A);
        insert_peer(s, id, "vm-b", NULL);
        bad.bell_vectors = 5;
        assert_int_equal(TX(s, store_region_insert(s, &bad, NULL)), -EINVAL);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.regions[0].r.bell_vectors, 3);
        assert_int_equal(seen.regions[0].r.bell_generation, 5);
        assert_string_equal(seen.peers[0].domain, "vm-z");
        assert_string_equal(seen.peers[1].domain, "vm-b");
        assert_int_equal(store_transition(s, set_generation_7, &id, &(struct store_audit) {
                .time = 2000, .actor = "broker", .region = id, .action = "doorbells",
        }, 1), 0);
        memset(&seen, 0, sizeof(seen));
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.regions[0].r.bell_generation, 7);
        store_close(s);

        /* A version-2 database: its regions migrate without doorbells. */
        assert_int_equal(unlink(f->path), 0);
        raw_exec(f->path, V1_SCHEMA "CREATE INDEX regions_reclaimed ON regions(updated) WHERE state = 'reclaimed';"
                 "INSERT INTO regions (owner, device, pool, base, size, state, created, updated)"
                 "  VALUES ('vm-a', 'nic0', 'net0', 0, 4096, 'offered', 1, 1);"
                 "PRAGMA user_version = 2;");
        assert_int_equal(store_open(f->path, &s), 0);
        assert_int_equal(raw_int(f->path, "PRAGMA user_version"), STORE_SCHEMA_VERSION);
        memset(&seen, 0, sizeof(seen));
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 1);
        assert_int_equal(seen.regions[0].r.bell_vectors, 0);
        assert_int_equal(seen.regions[0].r.bell_generation, 0);
        store_close(s);
}

/* What to fill: n regions (reclaimed at updated = time, time + 1, ...) each with a peer, and n audit rows. */
struct fill {
        unsigned n;
        int64_t time;
        enum region_state state;
};

static int write_fill(struct store *s, void *userdata) {
        const struct fill *fl = userdata;

        for (unsigned i = 0; i < fl->n; i++) {
                struct store_region r = region_template("vm-a");
                uint64_t id;
                int q;

                r.state = fl->state;
                r.created = r.updated = fl->time + i;
                q = store_region_insert(s, &r, &id);
                if (q >= 0)
                        q = store_peer_insert(s, &(struct store_peer) {
                                .region = id, .domain = "vm-b", .access = ACCESS_RW, .state = PEER_RELEASED,
                        });
                if (q >= 0)
                        q = store_audit_append(s, &(struct store_audit) {
                                .time = fl->time + i, .actor = "vm-a", .action = "reclaim", .region = id,
                                .reason = "a reason of a few dozen bytes, as real ones are",
                        });
                if (q < 0)
                        return q;
        }
        return 0;
}

static void fill(struct store *s, unsigned n, int64_t time, enum region_state state) {
        struct fill fl = { .n = n, .time = time, .state = state };
        assert_int_equal(store_transition(s, write_fill, &fl, NULL, 0), 0);
}

/* Prunes until nothing more is due; returns the number of passes. */
static unsigned prune_all(struct store *s, int64_t now, struct store_prune_result *total) {
        struct store_prune_result res;
        unsigned passes = 0;

        *total = (struct store_prune_result) {};
        do {
                assert_int_equal(store_prune(s, now, &res), 0);
                /* Bounded: one pass never deletes more than a thousand rows of a table. */
                assert_true(res.regions <= 1000 && res.audit <= 1000);
                total->regions += res.regions;
                total->audit += res.audit;
                passes++;
        } while (res.more);
        return passes;
}

static int64_t count(const char *path, const char *table) {
        char sql[96];

        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
        return raw_int(path, sql);
}

static void test_prune_limits(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct store_prune_result res = { .regions = 99 };
        struct store_route rt = { .device = "nic0", .domain = "vm-c", .kind = ROUTE_REGION, .updated = 1 };
        struct seen seen = {};
        uint64_t routed;

        assert_int_equal(store_open(f->path, &s), 0);
        fill(s, 50, 1000, REGION_RECLAIMED);  /* reclaimed at 1000..1049 */
        fill(s, 3, 1000, REGION_ACTIVE);      /* live, as old */

        /* No retention set: a pass deletes nothing. */
        assert_int_equal(store_prune(s, 1000000, &res), 0);
        assert_int_equal(res.regions, 0);
        assert_int_equal(res.audit, 0);
        assert_false(res.more);

        /* Failing: a negative age is refused and changes nothing. */
        assert_int_equal(store_set_retention(s, &(struct store_retention) { .max_age_usec = -1 }), -EINVAL);
        assert_int_equal(store_prune(s, 1000000, &res), 0);
        assert_int_equal(res.regions, 0);

        /* By age: reclaimed before 1040 go, live regions stay; audit rows go oldest first as a
         * prefix, up to the first not old enough (1040): the three written after it at 1000-1002
         * wait for it, and the newest row always stays (seq is numbered from it). */
        assert_int_equal(store_set_retention(s, &(struct store_retention) { .max_age_usec = 60 }), 0);
        assert_int_equal(store_prune(s, 1100, &res), 0);
        assert_int_equal(res.regions, 40);
        assert_int_equal(res.audit, 40);
        assert_false(res.more);
        assert_int_equal(count(f->path, "regions"), 10 + 3);
        assert_int_equal(count(f->path, "peers"), 10 + 3);
        assert_int_equal(raw_int(f->path, "SELECT min(updated) FROM regions WHERE state = 'reclaimed'"), 1040);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM regions WHERE state = 'active'"), 3);
        assert_int_equal(count(f->path, "audit"), 13);
        assert_int_equal(raw_int(f->path, "SELECT max(seq) - min(seq) + 1 FROM audit"), 13);

        /* By count: the newest 4 reclaimed regions and the newest 6 audit rows stay. */
        assert_int_equal(store_set_retention(s, &(struct store_retention) { .max_regions = 4, .max_audit = 6 }), 0);
        assert_int_equal(store_prune(s, 1100, &res), 0);
        assert_int_equal(res.regions, 6);
        assert_int_equal(res.audit, 7);
        assert_int_equal(raw_int(f->path, "SELECT min(updated) FROM regions WHERE state = 'reclaimed'"), 1046);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM regions WHERE state = 'active'"), 3);
        assert_int_equal(raw_int(f->path, "SELECT min(seq) FROM audit"), raw_int(f->path, "SELECT max(seq) - 5 FROM audit"));
        assert_int_equal(count(f->path, "peers"), 4 + 3);

        /* A reclaimed region a route still names is kept, and the pass does not fail on it. */
        assert_int_equal(load(s, &seen), 0);
        routed = seen.regions[0].r.id;
        rt.region = routed;
        assert_int_equal(TX(s, store_route_set(s, &rt)), 0);
        assert_int_equal(TX(s, store_region_update(s, routed, REGION_RECLAIMED, 0, false, 1)), 0);
        assert_int_equal(store_set_retention(s, &(struct store_retention) { .max_regions = 1 }), 0);
        assert_int_equal(store_prune(s, 1100, &res), 0);
        /* It counts towards the limit, so the others go; it stays, as the oldest. */
        assert_int_equal(res.regions, 4);
        assert_false(res.more);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM regions WHERE state = 'reclaimed'"), 1);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM regions WHERE id = (SELECT region FROM routes)"), 1);

        /* Not inside a transition. */
        assert_int_equal(store_begin(s), 0);
        assert_int_equal(store_prune(s, 1100, &res), -EALREADY);
        store_rollback(s);

        /* NULL settings: keep everything again. */
        assert_int_equal(store_set_retention(s, NULL), 0);
        fill(s, 5, 1, REGION_RECLAIMED);
        assert_int_equal(store_prune(s, INT64_MAX, NULL), 0);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM regions WHERE state = 'reclaimed'"), 6);
        store_close(s);
}

/* Commits of one audit row each, as the daemon's transitions are. */
static void audit_transitions(struct store *s, unsigned n) {
        for (unsigned i = 0; i < n; i++)
                assert_int_equal(store_transition(s, NULL, NULL, &(struct store_audit) {
                        .time = 1, .actor = "vm-a", .action = "share",
                }, 1), 0);
}

static void test_prune_by_itself(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;

        assert_int_equal(store_open(f->path, &s), 0);
        /* A backlog of 3000 rows, then settings: the commits that follow bring it down. */
        fill(s, 3000, 1, REGION_RECLAIMED);
        assert_int_equal(store_set_retention(s, &(struct store_retention) { .max_regions = 10, .max_audit = 20 }),
                         0);
        audit_transitions(s, 1);
        /* One bounded pass ran right after that commit, and is still behind. */
        assert_int_equal(count(f->path, "regions"), 3000 - 1000);
        audit_transitions(s, 2);
        assert_int_equal(count(f->path, "regions"), 10);
        assert_int_equal(count(f->path, "audit"), 20);

        /* Then a pass every 64 commits: never more than 20 + 64 rows. */
        for (unsigned i = 0; i < 5; i++) {
                audit_transitions(s, 50);
                assert_true(count(f->path, "audit") <= 20 + 64);
        }
        store_close(s);
}

static void audit_transitions_at(struct store *s, unsigned n, int64_t time) {
        for (unsigned i = 0; i < n; i++)
                assert_int_equal(store_transition(s, NULL, NULL, &(struct store_audit) {
                        .time = time, .actor = "vm-a", .action = "share",
                }, 1), 0);
}

/* With an age only: what the age reaches goes by itself, and what it does not stays however
 * many commits come (a store within its limits deletes nothing). */
static void test_prune_by_itself_by_age(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct timespec ts;
        int64_t now, day = 24 * 3600 * INT64_C(1000000);

        clock_gettime(CLOCK_REALTIME, &ts);
        now = (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
        assert_int_equal(store_open(f->path, &s), 0);
        assert_int_equal(store_set_retention(s, &(struct store_retention) { .max_age_usec = day }), 0);
        /* Rows a day and an hour old, then new ones: the passes take the old, and only them. */
        fill(s, 20, now - day - 3600 * INT64_C(1000000), REGION_RECLAIMED);
        fill(s, 50, now, REGION_RECLAIMED);
        audit_transitions_at(s, 64, now);
        assert_int_equal(count(f->path, "regions"), 50);
        assert_int_equal(count(f->path, "audit"), 50 + 64);
        audit_transitions_at(s, 3 * 64, now);
        assert_int_equal(count(f->path, "regions"), 50);
        assert_int_equal(count(f->path, "audit"), 50 + 4 * 64);
        /* Old rows written after young ones (a clock stepped back) wait for those, as audit rows
         * go oldest first by seq; old reclaimed regions go whenever (they have an index by age). */
        fill(s, 20, now - day - 3600 * INT64_C(1000000), REGION_RECLAIMED);
        audit_transitions_at(s, 64, now);
        assert_int_equal(count(f->path, "regions"), 50);
        assert_int_equal(count(f->path, "audit"), 50 + 20 + 5 * 64);
        store_close(s);
}

static int64_t page_count(const char *path) {
        return raw_int(path, "PRAGMA page_count");
}

/*
 * A broker that has granted ten million regions has a bounded database: under churn (fill,
 * prune, repeated), sqlite reuses the freed pages, so the file stops growing once the
 * limits are reached. Here 200,000 reclaimed regions, peers and audit rows, 20,000 a cycle,
 * through a store that keeps 2,000 regions and 5,000 audit rows.
 */
/*
 * Group sync counts the commits that reached the WAL since the last flush: not reads, not a
 * transition that rolled back, nothing while it is off; a flush (or turning it off) clears
 * the count. What was committed is visible at once and survives a close either way.
 */
static void test_group_sync(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct seen seen = {};
        struct store_peer dup = { .domain = "vm-b", .access = ACCESS_RW, .state = PEER_GRANTED };
        uint64_t id;

        assert_int_equal(store_open(f->path, &s), 0);
        (void) insert_region(s, REGION_OFFERED);
        assert_int_equal(store_unsynced(s), 0);

        assert_int_equal(store_set_group_sync(s, true), 0);
        id = insert_region(s, REGION_OFFERED);
        insert_peer(s, id, "vm-b", TOKEN_A);
        assert_int_equal(store_unsynced(s), 2);
        assert_int_equal(load(s, &seen), 0);
        assert_int_equal(seen.n_regions, 2);
        dup.region = id;
        assert_int_equal(TX(s, store_peer_insert(s, &dup)), -EEXIST);
        assert_int_equal(store_unsynced(s), 2);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM peers"), 1);
        assert_int_equal(store_sync(s), 0);
        assert_int_equal(store_unsynced(s), 0);
        assert_int_equal(store_sync(s), 0);

        (void) insert_region(s, REGION_ACTIVE);
        assert_int_equal(store_unsynced(s), 1);
        assert_int_equal(store_set_group_sync(s, false), 0);
        assert_int_equal(store_unsynced(s), 0);
        (void) insert_region(s, REGION_ACTIVE);
        assert_int_equal(store_unsynced(s), 0);
        assert_int_equal(store_set_group_sync(s, true), 0);
        (void) insert_region(s, REGION_ACTIVE);
        store_close(s);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM regions"), 5);

        /* In memory there is nothing to flush. */
        assert_int_equal(store_open(":memory:", &s), 0);
        assert_int_equal(store_set_group_sync(s, true), 0);
        (void) insert_region(s, REGION_OFFERED);
        assert_int_equal(store_sync(s), 0);
        assert_int_equal(store_unsynced(s), 0);
        store_close(s);
}

/*
 * The flush on a thread of its own (while a hypervisor plugs a device): it covers the commits
 * made before it started; the store refuses work until it is joined; nothing to flush, no thread.
 */
static void test_flush_on_a_thread(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;

        assert_int_equal(store_open(f->path, &s), 0);
        assert_int_equal(store_flush_start(s), 0); /* group sync off: every commit flushed itself */
        assert_int_equal(store_set_group_sync(s, true), 0);
        assert_int_equal(store_flush_start(s), 0); /* nothing to flush */
        assert_int_equal(store_flush_join(s), 0);
        (void) insert_region(s, REGION_OFFERED);
        (void) insert_region(s, REGION_OFFERED);
        assert_int_equal(store_unsynced(s), 2);

        assert_int_equal(store_flush_start(s), 1);
        assert_int_equal(store_flush_start(s), 0); /* one at a time */
        assert_int_equal(store_begin(s), -EBUSY);
        assert_int_equal(store_sync(s), -EBUSY);
        assert_int_equal(store_flush_join(s), 0);
        assert_int_equal(store_unsynced(s), 0);
        assert_int_equal(store_flush_join(s), 0);
        (void) insert_region(s, REGION_ACTIVE);
        assert_int_equal(store_unsynced(s), 1);
        assert_int_equal(store_sync(s), 0);
        /* Closing joins a flush still running. */
        (void) insert_region(s, REGION_ACTIVE);
        assert_int_equal(store_flush_start(s), 1);
        store_close(s);
        assert_int_equal(raw_int(f->path, "SELECT count(*) FROM regions"), 4);
}

/* Closed (which folds the WAL into the file) and opened again with the same retention. */
static void reopen_folded(struct fixture *f, struct store **s) {
        store_close(*s);
        *s = NULL;
        assert_int_equal(store_open(f->path, s), 0);
        assert_int_equal(store_set_retention(*s, &(struct store_retention) { .max_regions = 2000, .max_audit = 5000 }),
                         0);
}

static void test_prune_bounds_the_file(void **state) {
        struct fixture *f = *state;
        struct store *s = NULL;
        struct store_prune_result total;
        int64_t one_fill = 0, settled = 0;

        assert_int_equal(store_open(f->path, &s), 0);
        assert_int_equal(store_set_retention(s, &(struct store_retention) { .max_regions = 2000, .max_audit = 5000 }),
                         0);
        for (unsigned cycle = 0; cycle < 10; cycle++) {
                int64_t pages;

                fill(s, 20000, 1000000 * (int64_t) cycle, REGION_RECLAIMED);
                fill(s, 1, 1000000 * (int64_t) cycle, REGION_ACTIVE);
                /* The WAL folded into the file, so page_count is the file's. */
                reopen_folded(f, &s);
                if (cycle == 0)
                        one_fill = page_count(f->path);
                prune_all(s, 0, &total);
                assert_int_equal(count(f->path, "regions"), 2000 + cycle + 1);
                assert_int_equal(count(f->path, "audit"), 5000);
                reopen_folded(f, &s);
                pages = page_count(f->path);
                print_message("cycle %u: %" PRId64 " pages, %" PRId64 " regions, %" PRId64 " audit rows\n", cycle,
                              pages, count(f->path, "regions"), count(f->path, "audit"));
                /* Ten fills went through; the file never holds much more than one. */
                assert_true(pages <= one_fill + one_fill / 2);
                /* The first cycles shape the indexes; from then on the file holds still. */
                if (cycle == 2)
                        settled = pages;
                if (cycle > 2)
                        assert_true(pages <= settled + settled / 20);
        }
        print_message("one fill of 20000: %" PRId64 " pages\n", one_fill);
        store_close(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_open_fresh, setup, teardown),
                cmocka_unit_test_setup_teardown(test_group_sync, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flush_on_a_thread, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
                cmocka_unit_test_setup_teardown(test_future_version, setup, teardown),
                cmocka_unit_test_setup_teardown(test_migration_failure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_region_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_region_ids_not_reused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_peers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
                cmocka_unit_test_setup_teardown(test_routes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_audit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_load_skips_reclaimed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_load_callback_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crash_consistency, setup, teardown),
                cmocka_unit_test_setup_teardown(test_write_outside_transition, setup, teardown),
                cmocka_unit_test_setup_teardown(test_audit_tail, setup, teardown),
                cmocka_unit_test_setup_teardown(test_region_bells, setup, teardown),
                cmocka_unit_test_setup_teardown(test_migrate_from_version_1, setup, teardown),
                cmocka_unit_test_setup_teardown(test_prune_limits, setup, teardown),
                cmocka_unit_test_setup_teardown(test_prune_by_itself, setup, teardown),
                cmocka_unit_test_setup_teardown(test_prune_by_itself_by_age, setup, teardown),
                cmocka_unit_test_setup_teardown(test_prune_bounds_the_file, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
