/* SPDX-License-Identifier: Apache-2.0 */
/*
 * data-plane-bench's tables and goals. GB is 10^9 bytes. CPU is user + sys of both sides over
 * their timed phases (getrusage), so a side that spins counts in full. The goals are ratios of
 * this run's figures against this run's TCP; they are printed with met/missed, never enforced.
 */
#include <stdio.h>
#include <string.h>

#include "data-plane.h"

#define GOAL_LATENCY_RATIO 0.5
#define GOAL_STREAM_RATIO 4.0
#define GOAL_CPU_RATIO 0.5
#define GOAL_BUSY_POLL_NS 1000.0
#define GOAL_LATENCY_SIZE 14u
#define GOAL_STREAM_SIZE (64u << 10)

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

static const char *mark(bool met) {
        return met ? "met" : "MISSED";
}

static void print_goals(const struct dp_case *cases, size_t n_cases, const struct dp_run *runs, size_t n_runs) {
        const struct dp_run *tcp = find_tcp(runs, n_runs);
        const struct dp_result *tl = NULL, *ts = NULL, *r;
        const struct dp_case *cl = NULL, *cs = NULL, *c;

        printf("\n== goals: ratios against TCP from this run (printed, not enforced) ==\n");
        if (tcp) {
                tl = find(cases, n_cases, tcp, DP_PINGPONG, GOAL_LATENCY_SIZE, &cl);
                ts = find(cases, n_cases, tcp, DP_STREAM, GOAL_STREAM_SIZE, &cs);
        }
        printf("blocking ping-pong at 14 B <= %.1f x TCP (p50; p99 beside it):\n", GOAL_LATENCY_RATIO);
        for (size_t t = 0; tl && t < n_runs; t++)
                if (runs[t].t->kind == DP_CHANNEL && runs[t].t->mode == BROKERD_CHANNEL_BLOCKING &&
                    (r = find(cases, n_cases, &runs[t], DP_PINGPONG, GOAL_LATENCY_SIZE, &c))) {
                        double ratio = (double) r->rtt.p50 / (double) tl->rtt.p50;

                        printf("  %-32s %7.2f / %7.2f us = %5.3f x (p99 %5.3f x)  %s\n", runs[t].t->label,
                               (double) r->rtt.p50 / 1e3, (double) tl->rtt.p50 / 1e3, ratio,
                               (double) r->rtt.p99 / (double) tl->rtt.p99, mark(ratio <= GOAL_LATENCY_RATIO));
                }
        printf("streaming at 64 KiB >= %.0f x TCP (GB/s):\n", GOAL_STREAM_RATIO);
        for (size_t t = 0; ts && t < n_runs; t++)
                if (runs[t].t->kind == DP_CHANNEL && (r = find(cases, n_cases, &runs[t], DP_STREAM, GOAL_STREAM_SIZE, &c))) {
                        double ratio = gb_per_sec(c, r) / gb_per_sec(cs, ts);

                        printf("  %-32s %7.2f / %7.2f GB/s = %5.2f x  %s\n", runs[t].t->label, gb_per_sec(c, r),
                               gb_per_sec(cs, ts), ratio, mark(ratio >= GOAL_STREAM_RATIO));
                }
        printf("CPU per GB (streaming at 64 KiB) <= %.1f x TCP (both sides' CPU seconds per GB):\n", GOAL_CPU_RATIO);
        for (size_t t = 0; ts && t < n_runs; t++)
                if (runs[t].t->kind == DP_CHANNEL && (r = find(cases, n_cases, &runs[t], DP_STREAM, GOAL_STREAM_SIZE, &c))) {
                        double ratio = cpu_per_gb(c, r) / cpu_per_gb(cs, ts);

                        printf("  %-32s %7.3f / %7.3f s/GB = %5.3f x  %s\n", runs[t].t->label, cpu_per_gb(c, r),
                               cpu_per_gb(cs, ts), ratio, mark(ratio <= GOAL_CPU_RATIO));
                }
        if (!tcp)
                printf("  (TCP did not run: no ratios)\n");
        printf("busy-poll round trip at 14 B < %.0f us (p50; p99 beside it):\n", GOAL_BUSY_POLL_NS / 1e3);
        for (size_t t = 0; t < n_runs; t++)
                if (runs[t].t->kind == DP_CHANNEL && runs[t].t->mode == BROKERD_CHANNEL_BUSY_POLL &&
                    (r = find(cases, n_cases, &runs[t], DP_PINGPONG, GOAL_LATENCY_SIZE, &c)))
                        printf("  %-32s %7.3f us (p99 %.3f us)  %s\n", runs[t].t->label, (double) r->rtt.p50 / 1e3,
                               (double) r->rtt.p99 / 1e3, mark((double) r->rtt.p50 < GOAL_BUSY_POLL_NS));
}

void dp_report(const struct dp_case *cases, size_t n_cases, const struct dp_run *runs, size_t n_runs) {
        for (size_t i = 0; i < n_cases; i++) {
                if (cases[i].pattern == DP_PINGPONG)
                        print_pingpong(&cases[i], i, runs, n_runs);
                else
                        print_stream(&cases[i], i, runs, n_runs);
        }
        print_goals(cases, n_cases, runs, n_runs);
}
