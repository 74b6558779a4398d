/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Durable state in sqlite: the truth from which the in-memory index is rebuilt on start.
 * WAL journal, foreign keys, STRICT tables, migrations by PRAGMA user_version (each in one
 * transaction), prepared statements only. Every write happens inside store_transition(),
 * which records a state change together with its audit rows in one transaction: the write
 * calls fail with -EPERM outside one, so nothing is ever written half-way or unaudited.
 * Retention (store_set_retention) bounds the past the database keeps; pruning runs inside
 * the store, in bounded passes after commits, and on demand (store_prune).
 * 64-bit addresses are stored bit-for-bit in sqlite's signed INTEGER.
 * Times are CLOCK_REALTIME microseconds.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/macro.h"
#include "util/model.h"

#define STORE_TOKEN_LEN 32 /* hex characters of a 128-bit token */
#define STORE_SCHEMA_VERSION 6

struct store;

struct store_region {
        uint64_t id;
        const char *owner, *device, *pool, *label; /* label may be NULL */
        uint64_t base, size;
        enum region_state state;
        int64_t deadline;    /* revoke deadline, 0 if none */
        bool owner_mapped;   /* the owner's mapping exists (or its removal is unconfirmed) */
        int64_t created, updated;
        unsigned bell_vectors;    /* doorbell vectors per ordered pair of parties, 0..4 */
        uint64_t bell_generation; /* of the region's eventfds: bumped when a start makes them anew */
};

struct store_peer {
        uint64_t region;
        const char *domain;
        enum access_mode access;
        enum peer_state state;
        const char *token;   /* NULL once redeemed or voided */
        bool mapped;         /* the backend mapping exists (or its removal is unconfirmed) */
        unsigned index;      /* its place in the share's list of peers (store_load delivers them so) */
};

enum route_kind {
        ROUTE_REGION,
        ROUTE_BOUNCE,
        _ROUTE_KIND_MAX,
};

struct store_route {
        const char *device, *domain;
        enum route_kind kind;
        uint64_t region;     /* ROUTE_REGION */
        const char *reason;  /* ROUTE_BOUNCE */
        int64_t updated;
};

struct store_audit {
        int64_t seq, time;
        const char *actor, *action, *domain, *from_state, *to_state, *reason; /* may be NULL */
        uint64_t region;     /* 0 if none */
};

/* Opens or creates the database and migrates it to STORE_SCHEMA_VERSION. ":memory:" works. */
int store_open(const char *path, struct store **ret);
void store_close(struct store *s);
DEFINE_CLEANUP(struct store, store_close);
/* sqlite's message for the last failure on s, for logs; "" if none. Never NULL. */
const char *store_last_error(struct store *s);

/*
 * One state transition, durably (under group sync, below: at the next store_sync()): BEGIN
 * IMMEDIATE, write(s, userdata) (the insert/update calls below), then the n_audit audit rows,
 * then COMMIT. On any error it rolls back, nothing has
 * changed, and the error (-errno) is returned. write may be NULL (an audit-only transition).
 * -EALREADY when called inside a transition (no nesting). After the commit, the store may run
 * one bounded retention pass of its own; its failure does not touch the transition.
 */
typedef int (*store_write_t)(struct store *s, void *userdata);
int store_transition(struct store *s, store_write_t write, void *userdata, const struct store_audit *audit,
                     size_t n_audit);

/*
 * Group sync (off by default): with it on, a transition's commit is atomic and visible at once
 * but durable only after the next store_sync(), which flushes the WAL once for every commit
 * since the last (store_unsynced() counts them). Whoever turns it on must tell nobody about a
 * commit before it is synced. A failed store_sync() (-EIO) leaves it unknown what reached the
 * disk: sqlite's own answer to that is to stop. On a ":memory:" store syncing does nothing.
 */
int store_set_group_sync(struct store *s, bool on);
bool store_group_sync(const struct store *s);
uint64_t store_unsynced(const struct store *s);
int store_sync(struct store *s);
/*
 * The same flush on a thread of its own, for a caller about to wait on something else (a
 * hypervisor plugging a device): 1 when it started, 0 when nothing needed it (or it could not
 * start: store_sync() flushes later). Nothing may use the store until store_flush_join(), which
 * waits for it: 0, or -EIO, which every later store_sync() returns as well.
 */
int store_flush_start(struct store *s);
int store_flush_join(struct store *s);

/*
 * What the store keeps of the past: reclaimed regions (with their peers) and audit rows are
 * deleted once older than max_age_usec or beyond the newest max_regions / max_audit. 0 in a
 * field: no limit of that kind. Live regions are never deleted.
 */
struct store_retention {
        int64_t max_age_usec;
        uint64_t max_regions;
        uint64_t max_audit;
};
/* The daemon's defaults (--retain-age, --retain-regions, --retain-audit). */
#define STORE_RETAIN_AGE_DEFAULT_USEC (INT64_C(30) * 24 * 3600 * 1000000)
#define STORE_RETAIN_REGIONS_DEFAULT UINT64_C(100000)
#define STORE_RETAIN_AUDIT_DEFAULT UINT64_C(1000000)
/* NULL: keep everything (the default of a freshly opened store). -EINVAL for a negative age. */
int store_set_retention(struct store *s, const struct store_retention *r);

/*
 * One bounded pass of retention under the current settings, in its own transaction
 * (-EALREADY inside a transition), against now (CLOCK_REALTIME usec): deletes at most a
 * thousand or so rows of each table. ret (may be NULL) says what went and whether more is due
 * (call again; the store also goes on by itself after its next commits).
 */
struct store_prune_result {
        uint64_t regions;   /* reclaimed regions deleted, each with its peers */
        uint64_t audit;     /* audit rows deleted */
        bool more;          /* the pass stopped at its bound: more rows are past the limits */
};
int store_prune(struct store *s, int64_t now, struct store_prune_result *ret);

/* The writes: -EPERM outside a transition. Region ids are never reused: sqlite AUTOINCREMENT. */
int store_region_insert(struct store *s, const struct store_region *r, uint64_t *ret_id);
int store_region_update(struct store *s, uint64_t id, enum region_state state, int64_t deadline, bool owner_mapped,
                        int64_t now);
/* A start made the region's doorbells anew: their generation is now generation. */
int store_region_set_bell_generation(struct store *s, uint64_t id, uint64_t generation, int64_t now);
int store_peer_insert(struct store *s, const struct store_peer *p);
int store_peer_update(struct store *s, uint64_t region, const char *domain, enum peer_state state, bool clear_token,
                      bool mapped);
int store_route_set(struct store *s, const struct store_route *r);
int store_route_delete(struct store *s, const char *device, const char *domain);
int store_audit_append(struct store *s, const struct store_audit *a);

/*
 * Loads every region that is not reclaimed, with its peers, and every route.
 * Strings passed to callbacks live only for the duration of the call.
 * A callback returning < 0 stops the load with that value.
 */
struct store_load_ops {
        int (*region)(void *userdata, const struct store_region *r);
        int (*peer)(void *userdata, const struct store_peer *p);
        int (*route)(void *userdata, const struct store_route *r);
};
int store_load(struct store *s, const struct store_load_ops *ops, void *userdata);

/* Audit rows with seq > after_seq and time >= since_time, oldest first, at most limit (0: all). */
typedef int (*store_audit_fn_t)(void *userdata, const struct store_audit *a);
int store_audit_list(struct store *s, int64_t after_seq, int64_t since_time, unsigned limit, store_audit_fn_t fn,
                     void *userdata);
/* The newest limit (> 0) audit rows, delivered oldest first (`journalctl -n`); callback as above. */
int store_audit_tail(struct store *s, unsigned limit, store_audit_fn_t fn, void *userdata);
