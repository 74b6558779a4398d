/* SPDX-License-Identifier: Apache-2.0 */
/*
 * data-plane-bench's tables and goals. GB is 10^9 bytes. CPU is user + sys of both sides over
 * their timed phases (getrusage), so a side that spins counts in full. The goals are ratios of
 * this run's figures against this run's TCP; they are printed with met/missed, never enforced.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "data-plane.h"

static const char *size_label(size_t size, char *buf, size_t n) {
        if (size >= (1u << 20) && size % (1u << 20) == 0)
                snprintf(buf, n, "%zu MiB", size >> 20);
        else if (size >= 1024 && size % 1024 == 0)
                snprintf(buf, n, "%zu KiB", size >> 10);
        else
                snprintf(buf, n, "%zu B", size);
        return buf;
}

static double cpu_sec(const struct dp_result *r) {
        return (double) (r->cpu_ns[DP_SIDE_A] + r->cpu_ns[DP_SIDE_B]) / 1e9;
}

static double gb_per_sec(const struct dp_case *c, const struct dp_result *r) {
        return r->elapsed_ns ? (double) c->n * (double) c->size / (double) r->elapsed_ns : 0;
}

static double cpu_per_gb(const struct dp_case *c, const struct dp_result *r) {
        return cpu_sec(r) / ((double) c->n * (double) c->size / 1e9);
}

static double busy(const struct dp_result *r, enum dp_side s) {
        return r->elapsed_ns ? 100.0 * (double) r->cpu_ns[s] / (double) r->elapsed_ns : 0;
}

static void print_pingpong(const struct dp_case *c, size_t i, const struct dp_run *runs, size_t n_runs) {
        char sz[32];

        printf("\n== ping-pong round trip, %s each way (us; CPU: both sides, per round trip) ==\n",
               size_label(c->size, sz, sizeof(sz)));
        printf("%-32s %7s %9s %9s %9s %9s %7s  %s\n", "transport", "n", "p50", "p99", "mean", "max", "CPU", "ran on");
        for (size_t t = 0; t < n_runs; t++) {
                const struct dp_result *r = &runs[t].res[i];

                if (!runs[t].ran)
                        continue;
                printf("%-32s %7u %9.2f %9.2f %9.2f %9.1f %7.2f  A cpu%d B cpu%d\n", runs[t].t->label, c->n,
                       (double) r->rtt.p50 / 1e3, (double) r->rtt.p99 / 1e3, (double) (r->rtt.sum / c->n / 1e3L),
                       (double) r->rtt.max / 1e3, cpu_sec(r) * 1e6 / c->n, r->cpu[DP_SIDE_A], r->cpu[DP_SIDE_B]);
        }
}

static void print_stream(const struct dp_case *c, size_t i, const struct dp_run *runs, size_t n_runs) {
        char sz[32];

        printf("\n== stream of %s messages, A to B (CPU: both sides; busy: a side's CPU over the wall time) ==\n",
               size_label(c->size, sz, sizeof(sz)));
        printf("%-32s %7s %7s %9s %9s %10s %6s %6s %5s  %s\n", "transport", "n", "GB/s", "msg/s", "CPU s/GB",
               "CPU us/msg", "busyA%", "busyB%", "sys%", "ran on");
        for (size_t t = 0; t < n_runs; t++) {
                const struct dp_result *r = &runs[t].res[i];
                double cpu = cpu_sec(r);

                if (!runs[t].ran)
                        continue;
                printf("%-32s %7u %7.2f %9.0f %9.3f %10.3f %6.0f %6.0f %5.0f  A cpu%d B cpu%d\n", runs[t].t->label, c->n,
                       gb_per_sec(c, r), r->elapsed_ns ? (double) c->n * 1e9 / (double) r->elapsed_ns : 0,
                       cpu_per_gb(c, r), cpu * 1e6 / c->n, busy(r, DP_SIDE_A), busy(r, DP_SIDE_B),
                       cpu > 0 ? 100.0 * (double) (r->sys_ns[DP_SIDE_A] + r->sys_ns[DP_SIDE_B]) / 1e9 / cpu : 0,
                       r->cpu[DP_SIDE_A], r->cpu[DP_SIDE_B]);
        }
}

static const struct dp_result *find(const struct dp_case *cases, size_t n_cases, const struct dp_run *run,
                                    enum dp_pattern pattern, size_t size, const struct dp_case **ret_case) {
        if (!run->ran)
                return NULL;
        for (size_t i = 0; i < n_cases; i++)
                if (cases[i].pattern == pattern && cases[i].size == size) {
                        *ret_case = &cases[i];
                        return &run->res[i];
                }
        return NULL;
}

static const struct dp_run *find_tcp(const struct dp_run *runs, size_t n_runs) {
        for (size_t t = 0; t < n_runs; t++)
                if (runs[t].ran && runs[t].t->kind == DP_TCP)
                        return &runs[t];
        return NULL;
}

enum goal_measure {
        GOAL_RTT_RATIO,  /* p50 round trip against TCP's */
        GOAL_GBPS_RATIO, /* GB/s against TCP's */
        GOAL_CPU_RATIO,  /* CPU s/GB against TCP's */
        GOAL_RTT_ABS,    /* p50 round trip in ns */
};

static const struct goal {
        const char *title;
        enum goal_measure measure;
        enum dp_pattern pattern;
        size_t size;
        bool blocking_only, busy_poll_only;
        double bound;
        bool at_most; /* met when the figure is <= bound (else >=; GOAL_RTT_ABS: <) */
} goals[] = {
        { "blocking ping-pong at 14 B <= 0.5 x TCP (p50; p99 ratio beside it)", GOAL_RTT_RATIO, DP_PINGPONG, 14,
          true, false, 0.5, true },
        { "streaming at 64 KiB >= 4 x TCP (GB/s)", GOAL_GBPS_RATIO, DP_STREAM, 64u << 10, false, false, 4.0, false },
        { "CPU per GB, streaming at 64 KiB, <= 0.5 x TCP (both sides' CPU s/GB)", GOAL_CPU_RATIO, DP_STREAM, 64u << 10,
          false, false, 0.5, true },
        { "busy-poll round trip at 14 B < 1 us (p50; p99 beside it)", GOAL_RTT_ABS, DP_PINGPONG, 14, false, true, 1000.0,
          true },
};

static double goal_value(const struct goal *g, const struct dp_case *c, const struct dp_result *r) {
        switch (g->measure) {
        case GOAL_GBPS_RATIO:
                return gb_per_sec(c, r);
        case GOAL_CPU_RATIO:
                return cpu_per_gb(c, r);
        default:
                return (double) r->rtt.p50;
        }
}

/*
 * One channel transport's line under goal g; base is TCP's result (NULL for an absolute goal).
 * The goals are about the default configuration: spin 0 is shown for reference, unmarked.
 */
static void print_goal_line(const struct goal *g, const struct dp_transport *t, const struct dp_case *c,
                            const struct dp_result *r, const struct dp_case *bc, const struct dp_result *base) {
        static const char *const unit[] = {
                [GOAL_RTT_RATIO] = "us", [GOAL_GBPS_RATIO] = "GB/s", [GOAL_CPU_RATIO] = "s/GB", [GOAL_RTT_ABS] = "us",
        };
        double v = goal_value(g, c, r), b, ratio, scale = g->measure == GOAL_RTT_RATIO ? 1e3 : 1;
        const char *label = t->label;
        bool met;

        if (g->measure == GOAL_RTT_ABS) {
                printf("  %-32s %7.3f us (p99 %.3f us)  %s\n", label, v / 1e3, (double) r->rtt.p99 / 1e3,
                       v < g->bound ? "met" : "MISSED");
                return;
        }
        b = goal_value(g, bc, base);
        ratio = v / b;
        met = g->at_most ? ratio <= g->bound : ratio >= g->bound;
        printf("  %-32s %7.3f / %7.3f %-4s = %6.3f x", label, v / scale, b / scale, unit[g->measure], ratio);
        if (g->measure == GOAL_RTT_RATIO)
                printf(" (p99 %.3f x)", (double) r->rtt.p99 / (double) base->rtt.p99);
        printf("  %s\n", t->spin_zero ? "(reference)" : met ? "met" : "MISSED");
}

static void print_goals(const struct dp_case *cases, size_t n_cases, const struct dp_run *runs, size_t n_runs) {
        const struct dp_run *tcp = find_tcp(runs, n_runs);

        printf("\n== goals: against this run's TCP (printed, not enforced) ==\n");
        for (size_t i = 0; i < sizeof(goals) / sizeof(goals[0]); i++) {
                const struct goal *g = &goals[i];
                const struct dp_result *base = NULL, *r;
                const struct dp_case *bc = NULL, *c;
                unsigned lines = 0;

                printf("%s:\n", g->title);
                if (g->measure != GOAL_RTT_ABS && !(tcp && (base = find(cases, n_cases, tcp, g->pattern, g->size, &bc)))) {
                        printf("  (TCP was not measured at this size: no ratio)\n");
                        continue;
                }
                for (size_t t = 0; t < n_runs; t++) {
                        const struct dp_transport *tr = runs[t].t;

                        if (tr->kind != DP_CHANNEL || (g->blocking_only && tr->mode != BROKERD_CHANNEL_BLOCKING) ||
                            (g->busy_poll_only && tr->mode != BROKERD_CHANNEL_BUSY_POLL) ||
                            !(r = find(cases, n_cases, &runs[t], g->pattern, g->size, &c)))
                                continue;
                        print_goal_line(g, tr, c, r, bc, base);
                        lines++;
                }
                if (lines == 0)
                        printf("  (no channel transport was measured at this size)\n");
        }
}

/* Each transport's probe, and a warning when they differ: the run then spans two placements. */
static void print_probes(const struct dp_run *runs, size_t n_runs) {
        uint64_t lo = UINT64_MAX, hi = 0;

        printf("cache-line round trip between the two CPUs just before each transport (no library, "
               "busy-polling; ns):\n");
        for (size_t t = 0; t < n_runs; t++) {
                if (!runs[t].ran)
                        continue;
                printf("  %-32s %5" PRIu64 "\n", runs[t].t->label, runs[t].probe_ns);
                lo = runs[t].probe_ns < lo ? runs[t].probe_ns : lo;
                hi = runs[t].probe_ns > hi ? runs[t].probe_ns : hi;
        }
        if (hi > 0 && hi * 2 > lo * 3)
                printf("  (the CPUs' placement changed during the run: compare rows with like probes only)\n");
}

void dp_report(const struct dp_case *cases, size_t n_cases, const struct dp_run *runs, size_t n_runs) {
        print_probes(runs, n_runs);
        for (size_t i = 0; i < n_cases; i++) {
                if (cases[i].pattern == DP_PINGPONG)
                        print_pingpong(&cases[i], i, runs, n_runs);
                else
                        print_stream(&cases[i], i, runs, n_runs);
        }
        print_goals(cases, n_cases, runs, n_runs);
}
