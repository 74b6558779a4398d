/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * data-plane-bench's parts. A transport (struct dp_transport) is one way of moving messages
 * between the two processes: TCP over loopback, a Unix stream socket, or libbrokerd-channel over
 * a region in one of its modes. One side of a connection (struct dp_end) sends and receives
 * whole messages of a size both sides know; the sender writes every byte of each message (the
 * message's fill byte) and the receiver reads every byte and checks it, so that no transport
 * skips the data. The region and its doorbells come from one place, dp_region_open(): a local
 * memfd and eventfds, or brokerd (the owner shares, the peer attaches through libbrokerd-client).
 * Functions return 0 or -errno and leave their output parameters untouched on failure.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bench-stats.h"
#include "brokerd-channel.h"
#include "brokerd-client.h"

enum dp_kind {
        DP_TCP,
        DP_UNIX,
        DP_CHANNEL,
};

struct dp_transport {
        const char *key;   /* short name, for --transports */
        const char *label; /* table */
        enum dp_kind kind;
        bool zero_copy;                 /* channel: reserve/commit, peek/consume */
        enum brokerd_channel_mode mode; /* channel */
        bool spin_zero;                 /* channel, blocking: sleep at once (no spin) */
};

/* The two processes: A owns the region, sends the pings and the stream; B attaches and answers. */
enum dp_side {
        DP_SIDE_A,
        DP_SIDE_B,
        _DP_SIDE_MAX,
};

/* One side of a connection. */
struct dp_end {
        const struct dp_transport *t;
        int fd;                     /* sockets */
        struct brokerd_channel *ch; /* channel */
        uint8_t *buf;               /* the side's own message buffer (copying transports) */
        size_t cap;
};

/* What is measured: round trips of one size (A sends, B answers with as many bytes), or a stream
 * of messages of one size from A to B. n messages are timed after warmup untimed ones. */
enum dp_pattern {
        DP_PINGPONG,
        DP_STREAM,
};

struct dp_case {
        const char *key; /* for --cases */
        enum dp_pattern pattern;
        size_t size;
        unsigned n, warmup;
};

#define DP_MAX_CASES 8
/* The largest message of any case. */
#define DP_MAX_MESSAGE (1u << 20)

/* Every transport, in the order data-plane-bench runs them (data-plane-cases.c). */
#define DP_N_TRANSPORTS 7
extern const struct dp_transport dp_transports[DP_N_TRANSPORTS];

/* Every case, in the order they run, with the counts of a full run (data-plane-cases.c). */
#define DP_N_CASES 8
_Static_assert(DP_N_CASES <= DP_MAX_CASES, "DP_MAX_CASES too small");
extern const struct dp_case dp_default_cases[DP_N_CASES];

/* One case on one transport, written by the two sides into memory the coordinator shares. */
struct dp_result {
        uint64_t elapsed_ns;                  /* A: the timed phase */
        uint64_t cpu_ns[_DP_SIDE_MAX];        /* user + sys of each side over its timed phase */
        uint64_t sys_ns[_DP_SIDE_MAX];
        struct bench_summary rtt;             /* ping-pong: the round trips, in ns */
        int cpu[_DP_SIDE_MAX];                /* the CPU each side was on when the case ended */
        bool done[_DP_SIDE_MAX];
};

/* One transport's run. */
struct dp_run {
        const struct dp_transport *t;
        struct dp_result res[DP_MAX_CASES];
        uint64_t probe_ns; /* the cache-line round trip between the two CPUs just before this run */
        bool ran;
};

/* What a side's process runs once pinned to its CPU; returns 0 or -errno. */
typedef int (*dp_side_fn)(enum dp_side side, void *userdata);

/*
 * Forks the two sides, each pinned to cpu[side] and running fn, then (in the coordinator, which
 * must block SIGCHLD) parent_close(userdata) if given, so that only the sides hold their ends,
 * and waits for both: -ECHILD when one failed (the other is killed) or both were stuck.
 */
int dp_fork_sides(const int cpu[_DP_SIDE_MAX], dp_side_fn fn, void (*parent_close)(void *), void *userdata);

/* The bare cache-line round trip between the two CPUs in ns (the median batch), 0 if it failed. */
uint64_t dp_probe_ns(const int cpu[_DP_SIDE_MAX]);

/* The tables (one per case, a row per transport) and the goals' ratios, on stdout. */
void dp_report(const struct dp_case *cases, size_t n_cases, const struct dp_run *runs, size_t n_runs);

/*
 * side's part of every case on e, in order, into res[i] (ping-pong: A's round trips; stream: A's
 * wall time; both: each side's CPU time). Before each timed phase B tells A it is ready. Failures
 * are reported on stderr.
 */
int dp_run_cases(struct dp_end *e, enum dp_side side, const struct dp_case *cases, size_t n_cases,
                 struct dp_result *res);

/* Options that select some of a list by key. */
#define DP_MAX_KEYS 16
/* dp_default_cases[i]'s key, as key_of for dp_parse_keys(). */
const char *dp_case_key(size_t i);
bool dp_none_selected(const bool *selected, size_t n);
/*
 * A comma-separated list of keys (key_of(0 .. n-1), n <= DP_MAX_KEYS) into selected[]; an unknown
 * key is reported (what names the option) and -EINVAL.
 */
int dp_parse_keys(const char *list, const char *what, const char *(*key_of)(size_t i), size_t n, bool *selected);
/* The selected cases (all if none is), their counts divided by divide (n at least 1); returns how many. */
size_t dp_select_cases(const bool selected[DP_N_CASES], unsigned divide, struct dp_case ret[DP_N_CASES]);

struct dp_region; /* below */

/* Over reg (mapped, with its doorbells): A creates the channel with rings of ring_size bytes, B
 * joins it (waiting up to 10 s for A); both set e->t's mode and spin. */
int dp_channel_open(struct dp_end *e, size_t ring_size, struct dp_region *reg, enum dp_side side);

/*
 * B, once done: waits for A to free its end (recv answers -EPIPE) before the region may go (a
 * brokered region is scrubbed when B releases it, under A if A were still reading).
 */
int dp_channel_wait_closed(struct dp_end *e);


/* Sends a message of len bytes, every one of them fill. */
int dp_send(struct dp_end *e, size_t len, uint8_t fill);
/* Receives the next message, which must be len bytes, every one of them fill (-EBADMSG if not). */
int dp_recv(struct dp_end *e, size_t len, uint8_t fill);

/* Where the region comes from. */
struct dp_region_config {
        const char *socket; /* brokerd's agent socket; NULL: a local memfd and eventfds */
        const char *owner;  /* A's domain */
        const char *peer;   /* B's domain */
        const char *device;
        size_t ring_size;   /* bytes per direction */
};

/* What the coordinator makes before it forks the two sides, for one connection. */
struct dp_region_setup {
        const struct dp_region_config *cfg;
        uint64_t size;     /* the region's bytes */
        int memfd;         /* local */
        int bell[_DP_SIDE_MAX][2]; /* local: [sender][vector] eventfds */
        int token_pipe[2]; /* brokered: A writes the peer's token, B reads it */
};

/* One side's view of the region: its mapping and its doorbells. */
struct dp_region {
        void *mem;
        uint64_t size;
        struct brokerd_channel_doorbells db;
        /* brokered */
        struct bdc *conn;
        uint64_t id;
        struct bdc_doorbells bells;
};

/* The size a region needs for cfg's rings, a multiple of 2 MiB (any pool's granule divides it). */
uint64_t dp_region_size(const struct dp_region_config *cfg);
int dp_region_prepare(const struct dp_region_config *cfg, struct dp_region_setup *ret);
/* The coordinator's copies, once both sides are forked (and on failure). */
void dp_region_setup_close(struct dp_region_setup *s);
/* In side's process: maps the region and finds its doorbells (A shares, B attaches). */
int dp_region_open(struct dp_region_setup *s, enum dp_side side, struct dp_region *ret);
/* Unmaps and ends the hold: B releases; A waits (briefly) for B to leave and revokes. */
void dp_region_close(struct dp_region *r, const struct dp_region_setup *s, enum dp_side side);
