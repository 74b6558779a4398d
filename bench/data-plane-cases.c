/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cases of data-plane-bench, run the same way by every transport: ping-pong and stream, each
 * side's part, timed and accounted (CPU time per side); and the channel's opening and closing over
 * a mapped region. Needs only libc and libbrokerd-channel, so that tests/e2e/guest/guestbench.c
 * runs the very same cases inside the e2e guests.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench-common.h"
#include "data-plane.h"

#define JOIN_TIMEOUT_MS 10000
/* One-byte control messages: B is ready (ping-pong), B got the whole stream. */
#define FILL_READY 0xa5
#define FILL_ACK 0x5a

const struct dp_transport dp_transports[DP_N_TRANSPORTS] = {
        { "tcp", "tcp loopback (TCP_NODELAY)", DP_TCP },
        { "unix", "unix stream socket", DP_UNIX },
        { "copy", "channel copy, blocking", DP_CHANNEL, false, BROKERD_CHANNEL_BLOCKING },
        { "zc", "channel zero-copy, blocking", DP_CHANNEL, true, BROKERD_CHANNEL_BLOCKING },
        { "copy-nospin", "channel copy, blocking, spin 0", DP_CHANNEL, false, BROKERD_CHANNEL_BLOCKING, true },
        { "copy-poll", "channel copy, busy-poll", DP_CHANNEL, false, BROKERD_CHANNEL_BUSY_POLL },
        { "zc-poll", "channel zero-copy, busy-poll", DP_CHANNEL, true, BROKERD_CHANNEL_BUSY_POLL },
};

/* Iterations per size: the slowest transport (TCP here) spends one to two seconds on each case. */
const struct dp_case dp_default_cases[DP_N_CASES] = {
        { "pp-14", DP_PINGPONG, 14, 50000, 5000 },
        { "pp-64", DP_PINGPONG, 64, 50000, 5000 },
        { "pp-1k", DP_PINGPONG, 1024, 50000, 5000 },
        { "pp-64k", DP_PINGPONG, 64u << 10, 10000, 1000 },
        { "pp-1m", DP_PINGPONG, 1u << 20, 1000, 100 },
        { "st-1k", DP_STREAM, 1024, 500000, 50000 },
        { "st-64k", DP_STREAM, 64u << 10, 100000, 10000 },
        { "st-1m", DP_STREAM, 1u << 20, 5000, 500 },
};


static uint8_t fill_of(unsigned i) {
        return (uint8_t) (1 + i % 251);
}

static void cpu_used(uint64_t *total, uint64_t *sys) {
        struct rusage ru;

        (void) getrusage(RUSAGE_SELF, &ru);
        *sys = (uint64_t) ru.ru_stime.tv_sec * 1000000000u + (uint64_t) ru.ru_stime.tv_usec * 1000u;
        *total = *sys + (uint64_t) ru.ru_utime.tv_sec * 1000000000u + (uint64_t) ru.ru_utime.tv_usec * 1000u;
}

/* The timed phase's start (begin) or end for side: CPU time, and A's wall time. */
static void mark(struct dp_result *res, enum dp_side side, bool begin) {
        uint64_t total, sys, now = bench_now_nsec();

        cpu_used(&total, &sys);
        if (begin) {
                res->cpu_ns[side] = total;
                res->sys_ns[side] = sys;
                if (side == DP_SIDE_A)
                        res->elapsed_ns = now;
                return;
        }
        res->cpu_ns[side] = total - res->cpu_ns[side];
        res->sys_ns[side] = sys - res->sys_ns[side];
        if (side == DP_SIDE_A)
                res->elapsed_ns = now - res->elapsed_ns;
        res->cpu[side] = sched_getcpu();
        res->done[side] = true;
}

static int pingpong_a(struct dp_end *e, const struct dp_case *c, uint64_t *samples, struct dp_result *res) {
        int r;

        for (unsigned i = 0; i < c->warmup; i++)
                if ((r = dp_send(e, c->size, fill_of(i))) < 0 || (r = dp_recv(e, c->size, fill_of(i))) < 0)
                        return r;
        if ((r = dp_recv(e, 1, FILL_READY)) < 0)
                return r;
        mark(res, DP_SIDE_A, true);
        for (unsigned i = 0; i < c->n; i++) {
                uint64_t t0 = bench_now_nsec();

                if ((r = dp_send(e, c->size, fill_of(i))) < 0 || (r = dp_recv(e, c->size, fill_of(i))) < 0)
                        return r;
                samples[i] = bench_now_nsec() - t0;
        }
        mark(res, DP_SIDE_A, false);
        bench_summarize(samples, c->n, &res->rtt);
        return 0;
}

static int pingpong_b(struct dp_end *e, const struct dp_case *c, struct dp_result *res) {
        int r;

        for (unsigned i = 0; i < c->warmup; i++)
                if ((r = dp_recv(e, c->size, fill_of(i))) < 0 || (r = dp_send(e, c->size, fill_of(i))) < 0)
                        return r;
        mark(res, DP_SIDE_B, true);
        if ((r = dp_send(e, 1, FILL_READY)) < 0)
                return r;
        for (unsigned i = 0; i < c->n; i++)
                if ((r = dp_recv(e, c->size, fill_of(i))) < 0 || (r = dp_send(e, c->size, fill_of(i))) < 0)
                        return r;
        mark(res, DP_SIDE_B, false);
        return 0;
}

static int stream_a(struct dp_end *e, const struct dp_case *c, struct dp_result *res) {
        int r;

        for (unsigned i = 0; i < c->warmup; i++)
                if ((r = dp_send(e, c->size, fill_of(i))) < 0)
                        return r;
        if ((r = dp_recv(e, 1, FILL_ACK)) < 0)
                return r;
        mark(res, DP_SIDE_A, true);
        for (unsigned i = 0; i < c->n; i++)
                if ((r = dp_send(e, c->size, fill_of(i))) < 0)
                        return r;
        if ((r = dp_recv(e, 1, FILL_ACK)) < 0)
                return r;
        mark(res, DP_SIDE_A, false);
        return 0;
}

static int stream_b(struct dp_end *e, const struct dp_case *c, struct dp_result *res) {
        int r;

        for (unsigned i = 0; i < c->warmup; i++)
                if ((r = dp_recv(e, c->size, fill_of(i))) < 0)
                        return r;
        mark(res, DP_SIDE_B, true);
        if ((r = dp_send(e, 1, FILL_ACK)) < 0)
                return r;
        for (unsigned i = 0; i < c->n; i++)
                if ((r = dp_recv(e, c->size, fill_of(i))) < 0)
                        return r;
        if ((r = dp_send(e, 1, FILL_ACK)) < 0)
                return r;
        mark(res, DP_SIDE_B, false);
        return 0;
}

int dp_run_cases(struct dp_end *e, enum dp_side side, const struct dp_case *cases, size_t n_cases,
                     struct dp_result *res) {
        uint64_t *samples = NULL;
        int r = 0;

        if (side == DP_SIDE_A) {
                unsigned most = 1;

                for (size_t i = 0; i < n_cases; i++)
                        most = cases[i].n > most ? cases[i].n : most;
                samples = calloc(most, sizeof(*samples));
                if (!samples)
                        return -ENOMEM;
        }
        for (size_t i = 0; r >= 0 && i < n_cases; i++) {
                const struct dp_case *c = &cases[i];

                if (c->pattern == DP_PINGPONG)
                        r = side == DP_SIDE_A ? pingpong_a(e, c, samples, &res[i]) : pingpong_b(e, c, &res[i]);
                else
                        r = side == DP_SIDE_A ? stream_a(e, c, &res[i]) : stream_b(e, c, &res[i]);
                if (r < 0)
                        fprintf(stderr, "%s: %s, side %c, %s of %zu bytes: %s\n", bench_program, e->t->label,
                                'A' + side, c->pattern == DP_PINGPONG ? "ping-pong" : "stream", c->size, strerror(-r));
        }
        free(samples);
        return r;
}

/* A creates the channel over the whole region, B joins it; both set the transport's mode. */
int dp_channel_open(struct dp_end *e, size_t ring_size, struct dp_region *reg, enum dp_side side) {
        const struct brokerd_channel_params p = { .ring_size = ring_size };
        int r;

        if (side == DP_SIDE_A)
                r = brokerd_channel_create(reg->mem, reg->size, &p, &reg->db, &e->ch);
        else
                r = brokerd_channel_join(reg->mem, reg->size, &reg->db, JOIN_TIMEOUT_MS, &e->ch);
        if (r < 0) {
                fprintf(stderr, "%s: brokerd_channel_%s: %s\n", bench_program, side == DP_SIDE_A ? "create" : "join",
                        strerror(-r));
                return r;
        }
        r = brokerd_channel_set_mode(e->ch, e->t->mode);
        if (r >= 0 && e->t->spin_zero)
                r = brokerd_channel_set_spin(e->ch, 0);
        if (r >= 0 && brokerd_channel_max_message(e->ch) < DP_MAX_MESSAGE)
                r = -EMSGSIZE;
        return r;
}

/*
 * B waits for A to free its end (recv answers -EPIPE) before it lets the region go: B's release
 * reclaims the region, and brokerd scrubs it, under A if A were still reading its last answer.
 */
int dp_channel_wait_closed(struct dp_end *e) {
        ssize_t n = brokerd_channel_recv(e->ch, e->buf, e->cap, JOIN_TIMEOUT_MS);

        if (n == -EPIPE)
                return 0;
        fprintf(stderr, "%s: %s: side A did not close its end: %s\n", bench_program, e->t->label,
                n < 0 ? strerror((int) -n) : "a message came instead");
        return n < 0 ? (int) n : -EBADMSG;
}

const char *dp_case_key(size_t i) {
        return dp_default_cases[i].key;
}

bool dp_none_selected(const bool *selected, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (selected[i])
                        return false;
        return true;
}

int dp_parse_keys(const char *list, const char *what, const char *(*key_of)(size_t i), size_t n, bool *selected) {
        bool sel[DP_MAX_KEYS] = {};
        const char *p = list;

        if (n > DP_MAX_KEYS)
                return -EINVAL;
        while (*p) {
                size_t len = strcspn(p, ","), i;

                for (i = 0; i < n; i++)
                        if (strlen(key_of(i)) == len && strncmp(key_of(i), p, len) == 0)
                                break;
                if (i == n) {
                        fprintf(stderr, "%s: %s has no '%.*s' (--help)\n", bench_program, what, (int) len, p);
                        return -EINVAL;
                }
                sel[i] = true;
                p += len + (p[len] == ',');
        }
        memcpy(selected, sel, n * sizeof(*selected));
        return 0;
}

size_t dp_select_cases(const bool selected[DP_N_CASES], unsigned divide, struct dp_case ret[DP_N_CASES]) {
        bool all = dp_none_selected(selected, DP_N_CASES);
        size_t n = 0;

        for (size_t i = 0; i < DP_N_CASES; i++) {
                if (!all && !selected[i])
                        continue;
                ret[n] = dp_default_cases[i];
                ret[n].n = ret[n].n / divide ?: 1;
                ret[n].warmup /= divide;
                n++;
        }
        return n;
}
