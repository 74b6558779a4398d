/* SPDX-License-Identifier: Apache-2.0 */
/*
 * control-plane-bench: what a round trip to a running brokerd costs, measured in one run.
 *
 *   noop      broker.info round trips: socket, JSON, dispatch, no state change;
 *   cycle     share (hw0, nic0, 4KiB, vm1 rw) -> attach (vm1) -> revoke (owner hw0, 10s
 *             deadline) -> release (vm1), which reclaims the region; the whole cycle and
 *             each step;
 *   commit    BEGIN IMMEDIATE; INSERT; COMMIT on a sqlite database of our own with the
 *             store's pragmas (WAL, synchronous=FULL), in the directory of the daemon's
 *             database: the floor that any durable transition cannot beat.
 *
 * Each is run for a warm-up, then for --iterations samples timed with CLOCK_MONOTONIC.
 * Every step checks its answer (a region, not a bounce; the token is vm1's; the region is
 * gone after the release), so a broken daemon cannot look fast. Prints figures only; it
 * asserts nothing about time.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "brokerd-client.h"
#include "bench-common.h"
#include "bench-stats.h"

#define DEFAULT_ITERATIONS 2000u
#define DEFAULT_WARMUP 200u
/* Keeps the sample arrays (8 bytes each, seven of them) and the run time sane. */
#define MAX_ITERATIONS 10000000u
#define REVOKE_DEADLINE_MS 10000
#define SHARE_SIZE 4096u

#define OWNER "hw0"
#define DEVICE "nic0"
#define PEER "vm1"

enum {
        M_NOOP,
        M_CYCLE,
        M_SHARE,
        M_ATTACH,
        M_REVOKE,
        M_RELEASE,
        M_RECLAIMED,
        M_COMMIT,
        _M_MAX,
};

static const struct {
        const char *key;   /* JSON */
        const char *label; /* table */
} measures[_M_MAX] = {
        [M_NOOP] = { "noop_rpc", "no-op RPC (broker.info)" },
        [M_CYCLE] = { "grant_cycle", "grant cycle (4 RPCs, to reclaimed)" },
        [M_SHARE] = { "share", "  region.share" },
        [M_ATTACH] = { "attach", "  region.attach" },
        [M_REVOKE] = { "revoke", "  region.revoke (10s deadline)" },
        [M_RELEASE] = { "release", "  region.release (its reply)" },
        [M_RECLAIMED] = { "release_reclaimed", "  release -> region.reclaimed" },
        [M_COMMIT] = { "sqlite_commit", "sqlite BEGIN;INSERT;COMMIT" },
};

struct stats {
        double ops_per_sec, mean_us, p50_us, p99_us, max_us;
};

struct cycle_info {
        char pool[64];
        uint64_t size;
};

/* Sorts samples (nanoseconds) in place. ops/s is samples over the time they add up to. */
static void stats_compute(uint64_t *samples, size_t n, struct stats *ret) {
        struct bench_summary s;

        bench_summarize(samples, n, &s);
        *ret = (struct stats) {
                .ops_per_sec = s.sum > 0 ? (double) ((long double) n * 1e9L / s.sum) : 0,
                .mean_us = (double) (s.sum / n / 1e3L),
                .p50_us = (double) s.p50 / 1e3,
                .p99_us = (double) s.p99 / 1e3,
                .max_us = (double) s.max / 1e3,
        };
}

/* ---- no-op RPC ---- */

static int bench_noop(struct bdc *c, unsigned warmup, unsigned n, uint64_t *samples) {
        int r;

        for (unsigned i = 0; i < warmup; i++) {
                r = bench_call(c, "broker.info", NULL, NULL);
                if (r < 0)
                        return r;
        }
        for (unsigned i = 0; i < n; i++) {
                uint64_t t0 = bench_now_nsec();
                r = bench_call(c, "broker.info", NULL, NULL);
                if (r < 0)
                        return r;
                samples[i] = bench_now_nsec() - t0;
        }
        return 0;
}

/* ---- grant cycle ---- */

/* Waits on watcher (subscribed to OWNER's events) for region.reclaimed of region. */
static int wait_reclaimed(struct bdc *watcher, uint64_t region) {
        for (;;) {
                struct bdc_event ev = {};
                struct json_object *id;
                bool found;
                int r = bdc_next_event(watcher, 10000, &ev);

                if (r < 0) {
                        fprintf(stderr, "control-plane-bench: no region.reclaimed for region %" PRIu64 ": %s\n", region,
                                strerror(-r));
                        return r;
                }
                found = strcmp(ev.method, "region.reclaimed") == 0 &&
                        json_object_object_get_ex(ev.params, "region", &id) &&
                        json_object_get_uint64(id) == region;
                bdc_event_clear(&ev);
                if (found)
                        return 0;
        }
}

/*
 * One share -> attach -> revoke -> release on two connections (the owner's agent and the
 * peer's), step times into t[M_SHARE..M_RECLAIMED] and the whole into t[M_CYCLE] (NULL: do
 * not record). release -> reclaimed ends when a third connection, subscribed to the owner's
 * events as an owner's agent would be, hears region.reclaimed: the release's reply says it is
 * durable, and brokerd may reclaim the region right after it (docs/store.md "Group sync"). The
 * region must be gone afterwards: that check is not timed.
 */
static int cycle_once(struct bdc *owner, struct bdc *peer, struct bdc *watcher, uint64_t *t,
                      struct cycle_info *info) {
        const struct bdc_peer p = { .domain = PEER, .access = BDC_ACCESS_RW };
        const struct bdc_share_request req = {
                .owner = OWNER, .device = DEVICE, .size = SHARE_SIZE, .peers = &p, .n_peers = 1,
        };
        struct bdc_share_result share = { .fd = -1 };
        struct bdc_attach_result attach = { .fd = -1 };
        struct bdc_error err = BDC_ERROR_INIT;
        struct json_object *params = NULL;
        char token[64];
        uint64_t region, t0, t1, t2, t3, t4, t5;
        int r;

        t0 = bench_now_nsec();
        r = bdc_share(owner, &req, &share, &err);
        if (r < 0) {
                bench_fail_rpc("region.share", r, &err);
                goto out;
        }
        if (share.placement != BDC_PLACEMENT_REGION || share.n_tokens != 1 ||
            strcmp(share.tokens[0].domain, PEER) != 0) {
                fprintf(stderr, "control-plane-bench: region.share gave %s%s, not a region with a token for %s\n",
                        share.placement == BDC_PLACEMENT_BOUNCE ? "a bounce: " : "an unexpected answer",
                        share.reason ?: "", PEER);
                r = -EBADMSG;
                goto out;
        }
        region = share.region;
        snprintf(token, sizeof(token), "%s", share.tokens[0].token);
        if (info) {
                snprintf(info->pool, sizeof(info->pool), "%s", share.pool ?: "?");
                info->size = share.size;
        }
        /* The control plane is what is measured: the owner does not keep a mapping. */
        bdc_share_result_clear(&share);

        t1 = bench_now_nsec();
        r = bdc_attach(peer, PEER, token, &attach, &err);
        if (r < 0) {
                bench_fail_rpc("region.attach", r, &err);
                goto out;
        }
        if (attach.region != region || attach.access != BDC_ACCESS_RW) {
                fprintf(stderr, "control-plane-bench: region.attach answered region %" PRIu64 ", not %" PRIu64 "\n",
                        attach.region, region);
                r = -EBADMSG;
                goto out;
        }
        bdc_attach_result_clear(&attach);

        t2 = bench_now_nsec();
        r = bdc_revoke(owner, OWNER, region, REVOKE_DEADLINE_MS, false, &err);
        if (r < 0) {
                bench_fail_rpc("region.revoke", r, &err);
                goto out;
        }

        t3 = bench_now_nsec();
        r = bdc_release(peer, PEER, region, &err);
        if (r < 0) {
                bench_fail_rpc("region.release", r, &err);
                goto out;
        }
        t4 = bench_now_nsec();
        r = wait_reclaimed(watcher, region);
        if (r < 0)
                goto out;
        t5 = bench_now_nsec();

        /* Released by its only peer while revoking: it must have been reclaimed at once. */
        params = json_object_new_object();
        if (!params || json_object_object_add(params, "region", json_object_new_uint64(region)) < 0) {
                r = -ENOMEM;
                goto out;
        }
        r = bdc_call(owner, "region.get", params, NULL, NULL, NULL, &err);
        if (r >= 0 || strcmp(err.name, "no_such_region") != 0) {
                fprintf(stderr, "control-plane-bench: region %" PRIu64 " still exists after its release%s%s\n", region,
                        r < 0 ? ": " : "", r < 0 ? bdc_error_name(&err) : "");
                r = -EBADMSG;
                goto out;
        }
        r = 0;

        if (t) {
                t[M_SHARE] = t1 - t0;
                t[M_ATTACH] = t2 - t1;
                t[M_REVOKE] = t3 - t2;
                t[M_RELEASE] = t4 - t3;
                t[M_RECLAIMED] = t5 - t3;
                t[M_CYCLE] = t5 - t0;
        }
out:
        json_object_put(params);
        bdc_share_result_clear(&share);
        bdc_attach_result_clear(&attach);
        bdc_error_clear(&err);
        return r;
}

static int bench_cycle(struct bdc *owner, struct bdc *peer, struct bdc *watcher, unsigned warmup, unsigned n,
                       uint64_t *samples[], struct cycle_info *info) {
        int r;

        for (unsigned i = 0; i < warmup; i++) {
                r = cycle_once(owner, peer, watcher, NULL, info);
                if (r < 0)
                        return r;
        }
        for (unsigned i = 0; i < n; i++) {
                uint64_t t[_M_MAX];
                r = cycle_once(owner, peer, watcher, t, info);
                if (r < 0)
                        return r;
                for (int m = M_CYCLE; m <= M_RECLAIMED; m++)
                        samples[m][i] = t[m];
        }
        return 0;
}

/* ---- bare durable sqlite commit ---- */

struct commit_db {
        sqlite3 *db;
        sqlite3_stmt *begin, *insert, *commit;
        char path[PATH_MAX];
};

static void commit_db_close(struct commit_db *d) {
        static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
        char p[PATH_MAX + 16];

        sqlite3_finalize(d->begin);
        sqlite3_finalize(d->insert);
        sqlite3_finalize(d->commit);
        if (d->db)
                sqlite3_close(d->db);
        if (!d->path[0])
                return;
        for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
                snprintf(p, sizeof(p), "%s%s", d->path, suffixes[i]);
                if (unlink(p) < 0 && errno != ENOENT)
                        fprintf(stderr, "control-plane-bench: could not remove %s: %m\n", p);
        }
}

static int commit_db_exec(struct commit_db *d, const char *sql) {
        char *msg = NULL;

        if (sqlite3_exec(d->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
                fprintf(stderr, "control-plane-bench: %s: %s\n", sql, msg ?: sqlite3_errmsg(d->db));
                sqlite3_free(msg);
                return -EIO;
        }
        return 0;
}

/* The store's settings (brokerd/store/store.c): WAL, synchronous=FULL, foreign keys. */
static int commit_db_open(const char *dir, struct commit_db *d) {
        sqlite3_stmt *st = NULL;
        const char *mode;
        int fd, rc, r;

        if ((size_t) snprintf(d->path, sizeof(d->path), "%s/cpbench-XXXXXX.db", dir) >= sizeof(d->path)) {
                d->path[0] = 0;
                return -ENAMETOOLONG;
        }
        fd = mkostemps(d->path, 3, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                fprintf(stderr, "control-plane-bench: could not create a database in %s: %m\n", dir);
                d->path[0] = 0;
                return r;
        }
        close(fd);

        rc = sqlite3_open_v2(d->path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
                             NULL);
        if (rc != SQLITE_OK) {
                fprintf(stderr, "control-plane-bench: sqlite3_open %s: %s\n", d->path,
                        d->db ? sqlite3_errmsg(d->db) : sqlite3_errstr(rc));
                return -EIO;
        }

        rc = sqlite3_prepare_v2(d->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        mode = rc == SQLITE_ROW ? (const char *) sqlite3_column_text(st, 0) : NULL;
        r = mode && strcmp(mode, "wal") == 0 ? 0 : -EIO;
        sqlite3_finalize(st);
        if (r < 0) {
                fprintf(stderr, "control-plane-bench: %s would not switch to WAL\n", d->path);
                return r;
        }
        r = commit_db_exec(d, "PRAGMA synchronous = FULL");
        if (r >= 0)
                r = commit_db_exec(d, "PRAGMA foreign_keys = ON");
        /* A row of about the size of an audit entry, in a STRICT table like the store's. */
        if (r >= 0)
                r = commit_db_exec(d, "CREATE TABLE t ("
                                      "        seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                                      "        time INTEGER NOT NULL,"
                                      "        actor TEXT NOT NULL,"
                                      "        reason TEXT"
                                      ") STRICT");
        if (r < 0)
                return r;

        if (sqlite3_prepare_v3(d->db, "BEGIN IMMEDIATE", -1, SQLITE_PREPARE_PERSISTENT, &d->begin, NULL) != SQLITE_OK ||
            sqlite3_prepare_v3(d->db, "INSERT INTO t (time, actor, reason) VALUES (?1, ?2, ?3)", -1,
                               SQLITE_PREPARE_PERSISTENT, &d->insert, NULL) != SQLITE_OK ||
            sqlite3_prepare_v3(d->db, "COMMIT", -1, SQLITE_PREPARE_PERSISTENT, &d->commit, NULL) != SQLITE_OK) {
                fprintf(stderr, "control-plane-bench: prepare: %s\n", sqlite3_errmsg(d->db));
                return -EIO;
        }
        return 0;
}

static int step_done(struct commit_db *d, sqlite3_stmt *st) {
        int rc = sqlite3_step(st);

        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
                fprintf(stderr, "control-plane-bench: %s: %s\n", sqlite3_sql(st), sqlite3_errmsg(d->db));
                return -EIO;
        }
        return 0;
}

static int commit_once(struct commit_db *d, int64_t i) {
        int r;

        r = step_done(d, d->begin);
        if (r < 0)
                return r;
        if (sqlite3_bind_int64(d->insert, 1, i) != SQLITE_OK ||
            sqlite3_bind_text(d->insert, 2, "uid:0 pid:1", -1, SQLITE_STATIC) != SQLITE_OK ||
            sqlite3_bind_text(d->insert, 3, "4KiB at 0x80000000 in pool small0 for nic0", -1, SQLITE_STATIC) !=
                    SQLITE_OK)
                r = -EIO;
        if (r >= 0)
                r = step_done(d, d->insert);
        if (r >= 0)
                r = step_done(d, d->commit);
        if (r < 0 && !sqlite3_get_autocommit(d->db))
                (void) sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}

static int bench_commit(const char *dir, unsigned warmup, unsigned n, uint64_t *samples) {
        struct commit_db d = {};
        int64_t k = 0;
        int r;

        r = commit_db_open(dir, &d);
        for (unsigned i = 0; r >= 0 && i < warmup; i++)
                r = commit_once(&d, k++);
        for (unsigned i = 0; r >= 0 && i < n; i++) {
                uint64_t t0 = bench_now_nsec();
                r = commit_once(&d, k++);
                samples[i] = bench_now_nsec() - t0;
        }
        commit_db_close(&d);
        return r;
}

/* ---- output ---- */

static void print_table(const struct stats *st, unsigned n, unsigned warmup, const char *version,
                        const char *backend, const struct cycle_info *info, const char *db_dir) {
        printf("brokerd %s, %s backend; %u iterations after %u warm-up; the cycle shares %" PRIu64
               " bytes in pool %s;\nsqlite commits in %s\n\n",
               version, backend, n, warmup, info->size, info->pool, db_dir);
        printf("%-32s %10s %10s %10s %10s %10s\n", "measurement", "ops/s", "mean us", "p50 us", "p99 us", "max us");
        for (int m = 0; m < _M_MAX; m++)
                printf("%-32s %10.0f %10.1f %10.1f %10.1f %10.1f\n", measures[m].label, st[m].ops_per_sec,
                       st[m].mean_us, st[m].p50_us, st[m].p99_us, st[m].max_us);
        printf("\nA cycle costs %.1f bare commits (mean over mean).\n", st[M_CYCLE].mean_us / st[M_COMMIT].mean_us);
}

static int print_json(const struct stats *st, unsigned n, unsigned warmup, const char *version,
                      const char *backend, const struct cycle_info *info, const char *socket_path,
                      const char *db_dir) {
        struct json_object *o = json_object_new_object(), *res = json_object_new_object();
        int r = o && res ? 0 : -ENOMEM;

        for (int m = 0; r >= 0 && m < _M_MAX; m++) {
                struct json_object *e = json_object_new_object();
                r = bench_json_add(res, measures[m].key, e);
                bench_json_put(e, "ops_per_sec", json_object_new_double(st[m].ops_per_sec), &r);
                bench_json_put(e, "mean_us", json_object_new_double(st[m].mean_us), &r);
                bench_json_put(e, "p50_us", json_object_new_double(st[m].p50_us), &r);
                bench_json_put(e, "p99_us", json_object_new_double(st[m].p99_us), &r);
                bench_json_put(e, "max_us", json_object_new_double(st[m].max_us), &r);
        }
        bench_json_put(o, "iterations", json_object_new_int64(n), &r);
        bench_json_put(o, "warmup", json_object_new_int64(warmup), &r);
        bench_json_put(o, "socket", json_object_new_string(socket_path), &r);
        bench_json_put(o, "db_dir", json_object_new_string(db_dir), &r);
        bench_json_put(o, "version", json_object_new_string(version), &r);
        bench_json_put(o, "backend", json_object_new_string(backend), &r);
        bench_json_put(o, "cycle_pool", json_object_new_string(info->pool), &r);
        bench_json_put(o, "cycle_size", json_object_new_uint64(info->size), &r);
        bench_json_put(o, "results", res, &r);
        return bench_json_emit(o, r);
}

static void help(void) {
        printf("Usage: control-plane-bench --socket PATH --db-dir DIR [OPTIONS]\n"
               "\n"
               "Times no-op RPCs, grant cycles (share -> attach -> revoke -> release) and bare\n"
               "durable sqlite commits against a running brokerd. The caller must be allowed to act\n"
               "for " OWNER " and " PEER " (the example policy allows root).\n"
               "\n"
               "  --socket PATH      the daemon's agent socket\n"
               "  --db-dir DIR       the directory of the daemon's database; a scratch database is\n"
               "                     created (and removed) there for the sqlite measurement\n"
               "  --iterations N     timed samples per measurement (default %u)\n"
               "  --warmup N         untimed runs before each measurement (default %u)\n"
               "  --json             print a JSON object instead of the table\n"
               "  -h, --help         this text\n",
               DEFAULT_ITERATIONS, DEFAULT_WARMUP);
}

int main(int argc, char *argv[]) {
        enum { ARG_SOCKET = 0x100, ARG_DB_DIR, ARG_ITERATIONS, ARG_WARMUP, ARG_JSON };
        static const struct option options[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "db-dir", required_argument, NULL, ARG_DB_DIR },
                { "iterations", required_argument, NULL, ARG_ITERATIONS },
                { "warmup", required_argument, NULL, ARG_WARMUP },
                { "json", no_argument, NULL, ARG_JSON },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        const char *socket_path = NULL, *db_dir = NULL;
        unsigned n = DEFAULT_ITERATIONS, warmup = DEFAULT_WARMUP;
        bool json = false;
        uint64_t *samples[_M_MAX] = {};
        struct stats st[_M_MAX];
        struct cycle_info info = { .pool = "?" };
        struct bdc *owner = NULL, *peer = NULL, *watcher = NULL;
        char version[64], backend[64];
        int c, r;

        bench_program = "control-plane-bench";
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_SOCKET:
                        socket_path = optarg;
                        break;
                case ARG_DB_DIR:
                        db_dir = optarg;
                        break;
                case ARG_ITERATIONS:
                        if (bench_parse_unsigned(optarg, "--iterations", 1, MAX_ITERATIONS, &n) < 0)
                                return 2;
                        break;
                case ARG_WARMUP:
                        if (bench_parse_unsigned(optarg, "--warmup", 0, MAX_ITERATIONS, &warmup) < 0)
                                return 2;
                        break;
                case ARG_JSON:
                        json = true;
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        return 2;
                }
        }
        if (optind < argc || !socket_path || !db_dir) {
                fprintf(stderr, "control-plane-bench: --socket and --db-dir are required, and nothing else "
                                "(--help)\n");
                return 2;
        }

        for (int m = 0; m < _M_MAX; m++) {
                samples[m] = calloc(n, sizeof(uint64_t));
                if (!samples[m]) {
                        fprintf(stderr, "control-plane-bench: out of memory\n");
                        r = -ENOMEM;
                        goto out;
                }
        }

        r = bdc_connect(socket_path, &owner);
        if (r >= 0)
                r = bdc_connect(socket_path, &peer);
        if (r >= 0)
                r = bdc_connect(socket_path, &watcher);
        if (r < 0) {
                fprintf(stderr, "control-plane-bench: cannot connect to %s: %s\n", socket_path, strerror(-r));
                goto out;
        }
        r = bench_daemon_info(owner, version, sizeof(version), backend, sizeof(backend), NULL);
        if (r >= 0) {
                const char *domains[] = { OWNER };
                struct bdc_error err = BDC_ERROR_INIT;

                r = bdc_subscribe(watcher, domains, 1, &err);
                if (r < 0)
                        bench_fail_rpc("events.subscribe", r, &err);
                bdc_error_clear(&err);
        }
        if (r >= 0)
                r = bench_noop(owner, warmup, n, samples[M_NOOP]);
        if (r >= 0)
                r = bench_cycle(owner, peer, watcher, warmup, n, samples, &info);
        if (r >= 0)
                r = bench_commit(db_dir, warmup, n, samples[M_COMMIT]);
        if (r < 0)
                goto out;

        for (int m = 0; m < _M_MAX; m++)
                stats_compute(samples[m], n, &st[m]);
        if (json)
                r = print_json(st, n, warmup, version, backend, &info, socket_path, db_dir);
        else
                print_table(st, n, warmup, version, backend, &info, db_dir);
        if (r >= 0 && fflush(stdout) != 0)
                r = -errno;

out:
        if (owner)
                bdc_close(owner);
        if (peer)
                bdc_close(peer);
        if (watcher)
                bdc_close(watcher);
        for (int m = 0; m < _M_MAX; m++)
                free(samples[m]);
        return r < 0 ? 1 : 0;
}
