/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Retention: what the store forgets. Passes are bounded (STORE_PRUNE_BATCH rows of each
 * table) so that one never stalls the single-threaded daemon; each runs in a transaction of
 * its own. Besides store_prune(), a pass runs after every STORE_PRUNE_EVERY commits, and
 * after every commit while the last pass left work, so no caller has to remember it.
 */
#include "store-internal.h"

#include <errno.h>
#include <time.h>

#define STORE_PRUNE_BATCH 1000
#define STORE_PRUNE_EVERY 64

static bool retention_any(const struct store_retention *k) {
        return k->max_age_usec > 0 || k->max_regions > 0 || k->max_audit > 0;
}

int store_set_retention(struct store *s, const struct store_retention *k) {
        struct store_retention want = k ? *k : (struct store_retention) {};

        if (!s || want.max_age_usec < 0)
                return -EINVAL;
        s->retention = want;
        /* A database kept under older (or no) settings is brought down from the next commit. */
        s->prune_behind = retention_any(&want);
        s->commits_since_prune = 0;
        return 0;
}

static int64_t clamp_i64(uint64_t v) {
        return v > INT64_MAX ? INT64_MAX : (int64_t) v;
}

/* The rows older than this go; a limit reaching before the epoch of int64 keeps everything. */
static int64_t age_cutoff(int64_t now, int64_t max_age) {
        int64_t cutoff;

        return __builtin_sub_overflow(now, max_age, &cutoff) ? INT64_MIN : cutoff;
}

/*
 * Runs a delete whose ?1 is a bound and ?2 the most rows it may take: limit, within what is
 * left of the pass's budget for its table. The rows it took are added to *count and spent.
 */
static int prune_delete(struct store *s, enum store_stmt which, int64_t bound, uint64_t limit, uint64_t *budget,
                        uint64_t *count) {
        _cleanup_(stmt_resetp) sqlite3_stmt *st = s->stmt[which];
        uint64_t n;
        int rc, r;

        if ((rc = sqlite3_bind_int64(st, 1, bound)) != SQLITE_OK ||
            (rc = sqlite3_bind_int64(st, 2, (int64_t) (limit < *budget ? limit : *budget))) != SQLITE_OK)
                return store_fail(s, rc);
        r = stmt_run(s, st);
        if (r < 0)
                return r;
        n = (uint64_t) sqlite3_changes(s->db);
        *count += n;
        *budget -= n < *budget ? n : *budget;
        return 0;
}

/* The rows of which's table past the retention's age, when it has one. */
static int prune_aged(struct store *s, enum store_stmt which, int64_t now, uint64_t *budget, uint64_t *count) {
        if (s->retention.max_age_usec <= 0)
                return 0;
        return prune_delete(s, which, age_cutoff(now, s->retention.max_age_usec), UINT64_MAX, budget, count);
}

/*
 * Reclaimed regions past the age, then the oldest beyond the count; their peers go by the
 * cascade. A region a route holds is skipped by the deletes and waits for the route.
 */
static int prune_regions(struct store *s, int64_t now, uint64_t *budget, struct store_prune_result *res) {
        const struct store_retention *k = &s->retention;
        _cleanup_(stmt_resetp) sqlite3_stmt *st = NULL;
        int64_t count;
        int r;

        r = prune_aged(s, STMT_PRUNE_REGIONS_AGE, now, budget, &res->regions);
        if (r < 0)
                return r;
        if (k->max_regions == 0 || *budget == 0)
                return 0;

        count = s->reclaimed;
        if (count < 0) {
                st = s->stmt[STMT_PRUNE_REGIONS_COUNT];
                r = store_step_int(s, st, &count);
                if (r < 0)
                        return r;
                s->reclaimed = count;
        }
        if ((uint64_t) count <= k->max_regions)
                return 0;
        uint64_t before = res->regions;
        r = prune_delete(s, STMT_PRUNE_REGIONS_OLDEST, INT64_MAX, (uint64_t) count - k->max_regions, budget,
                         &res->regions);
        s->reclaimed -= (int64_t) (res->regions - before);
        return r;
}

/* Audit rows past the age, then beyond the newest max_audit. */
static int prune_audit(struct store *s, int64_t now, uint64_t *budget, struct store_prune_result *res) {
        const struct store_retention *k = &s->retention;
        int r;

        r = prune_aged(s, STMT_PRUNE_AUDIT_AGE, now, budget, &res->audit);
        if (r < 0)
                return r;
        if (k->max_audit == 0 || *budget == 0)
                return 0;
        return prune_delete(s, STMT_PRUNE_AUDIT_COUNT, clamp_i64(k->max_audit), UINT64_MAX, budget, &res->audit);
}

int store_prune(struct store *s, int64_t now, struct store_prune_result *ret) {
        struct store_prune_result res = {};
        int r;

        if (!s)
                return -EINVAL;
        if (!retention_any(&s->retention)) {
                if (ret)
                        *ret = res;
                return 0;
        }

        r = store_begin(s);
        if (r < 0)
                return r;
        /* Each table has its own budget; one spent whole means more may be due there. */
        uint64_t regions_budget = STORE_PRUNE_BATCH, audit_budget = STORE_PRUNE_BATCH;
        r = prune_regions(s, now, &regions_budget, &res);
        if (r >= 0)
                r = prune_audit(s, now, &audit_budget, &res);
        res.more = regions_budget == 0 || audit_budget == 0;
        if (r >= 0)
                r = store_commit_quiet(s);
        if (r < 0) {
                store_rollback(s);
                return r;
        }
        s->prune_behind = res.more;
        if (ret)
                *ret = res;
        return 0;
}

static int64_t realtime_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One row of int64 columns (NULL read as INT64_MIN); false if the read failed. */
static bool read_row(sqlite3_stmt *st, int64_t *a, int64_t *b) {
        _cleanup_(stmt_resetp) sqlite3_stmt *row = st;

        if (sqlite3_step(row) != SQLITE_ROW)
                return false;
        *a = sqlite3_column_type(row, 0) == SQLITE_NULL ? INT64_MIN : sqlite3_column_int64(row, 0);
        if (b)
                *b = sqlite3_column_type(row, 1) == SQLITE_NULL ? INT64_MIN : sqlite3_column_int64(row, 1);
        return true;
}

/*
 * Whether a pass would find anything to delete, from a few O(log n) reads outside any write
 * transaction: most commits of a daemon within its limits then cost no pass at all. A read
 * that fails says "due", and the pass reports the failure.
 */
static bool prune_due(struct store *s, int64_t now) {
        const struct store_retention *k = &s->retention;
        int64_t cutoff = k->max_age_usec > 0 ? age_cutoff(now, k->max_age_usec) : INT64_MIN;
        int64_t n, oldest;

        if (s->prune_behind || (k->max_regions > 0 && (s->reclaimed < 0 || (uint64_t) s->reclaimed > k->max_regions)))
                return true;
        if (k->max_age_usec > 0 && s->reclaimed != 0) {
                if (!read_row(s->stmt[STMT_PRUNE_DUE_REGIONS_AGE], &oldest, NULL))
                        return true;
                if (oldest != INT64_MIN && oldest < cutoff)
                        return true;
        }
        if (!read_row(s->stmt[STMT_PRUNE_DUE_AUDIT], &n, &oldest))
                return true;
        if (n == INT64_MIN || n <= 0)
                return false;
        return (k->max_audit > 0 && (uint64_t) n > k->max_audit) || (k->max_age_usec > 0 && oldest < cutoff);
}

void store_prune_after_commit(struct store *s) {
        if (!retention_any(&s->retention))
                return;
        if (!s->prune_behind && ++s->commits_since_prune < STORE_PRUNE_EVERY)
                return;
        s->commits_since_prune = 0;
        if (!prune_due(s, realtime_usec()))
                return;
        /*
         * The caller's transition is committed whatever happens here. A pass that fails (the
         * lock taken by someone else meanwhile) is retried STORE_PRUNE_EVERY commits later,
         * not on the next one, so a held lock does not cost every commit the busy timeout.
         */
        if (store_prune(s, realtime_usec(), NULL) < 0)
                s->prune_behind = false;
}
