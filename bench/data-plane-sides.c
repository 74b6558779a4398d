/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The two sides' processes: forked, pinned, waited for (and killed when the other failed or
 * both are stuck); and the cache-line probe between their CPUs.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-common.h"
#include "data-plane.h"

/* A run of one transport that takes longer than this is stuck: both sides are killed. */
#define RUN_TIMEOUT_SEC 300

/* Waits for both sides (SIGCHLD is blocked); kills the other when one fails or both are stuck. */
static int wait_sides(pid_t pid[_DP_SIDE_MAX]) {
        const struct timespec tick = { .tv_sec = 1 };
        sigset_t chld;
        unsigned left = (pid[DP_SIDE_A] > 0) + (pid[DP_SIDE_B] > 0), waited = 0;
        int r = 0;

        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        while (left > 0) {
                for (unsigned s = 0; s < _DP_SIDE_MAX; s++) {
                        int status;

                        if (pid[s] <= 0 || waitpid(pid[s], &status, WNOHANG) != pid[s])
                                continue;
                        pid[s] = 0;
                        left--;
                        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                                r = -ECHILD;
                                if (pid[!s] > 0)
                                        kill(pid[!s], SIGKILL);
                        }
                }
                if (left > 0 && sigtimedwait(&chld, NULL, &tick) < 0 && ++waited >= RUN_TIMEOUT_SEC) {
                        fprintf(stderr, "%s: the sides took over %d s: killed\n", bench_program, RUN_TIMEOUT_SEC);
                        for (unsigned s = 0; s < _DP_SIDE_MAX; s++)
                                if (pid[s] > 0)
                                        kill(pid[s], SIGKILL);
                        r = -ETIMEDOUT;
                }
        }
        return r;
}

static int side_pin(const int cpu[_DP_SIDE_MAX], enum dp_side side) {
        cpu_set_t set;

        CPU_ZERO(&set);
        CPU_SET(cpu[side], &set);
        if (sched_setaffinity(0, sizeof(set), &set) < 0) {
                fprintf(stderr, "%s: cannot pin side %c to CPU %d: %m\n", bench_program, 'A' + side, cpu[side]);
                return -errno;
        }
        return 0;
}

int dp_fork_sides(const int cpu[_DP_SIDE_MAX], dp_side_fn fn, void (*parent_close)(void *), void *userdata) {
        pid_t pid[_DP_SIDE_MAX] = {}, coordinator = getpid();
        sigset_t none;
        int r = 0;

        fflush(NULL);
        sigemptyset(&none);
        for (unsigned s = 0; s < _DP_SIDE_MAX; s++) {
                pid[s] = fork();
                if (pid[s] < 0) {
                        r = -errno;
                        break;
                }
                if (pid[s] == 0) {
                        /* A side outlives no coordinator (killed, or gone with its reader: | head). */
                        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != coordinator)
                                _exit(1);
                        sigprocmask(SIG_SETMASK, &none, NULL);
                        r = side_pin(cpu, (enum dp_side) s);
                        if (r >= 0)
                                r = fn((enum dp_side) s, userdata);
                        _exit(r < 0 ? 1 : 0);
                }
        }
        if (parent_close)
                parent_close(userdata);
        if (r < 0)
                for (unsigned s = 0; s < _DP_SIDE_MAX; s++)
                        if (pid[s] > 0)
                                kill(pid[s], SIGKILL);
        return wait_sides(pid) < 0 ? -ECHILD : r;
}

/*
 * The floor under any shared-memory transport between the two CPUs: one cache line written by
 * A and awaited by B, another back, no library. Batches of PROBE_BATCH round trips are timed;
 * the median batch's mean is kept. Measured before each transport, it tells which placement of
 * the two CPUs that transport had (on a VM the host may move them, e.g. onto one core's threads).
 */
#define PROBE_BATCH 500u
#define PROBE_BATCHES 200u

struct probe {
        _Alignas(64) _Atomic uint64_t ping;
        _Alignas(64) _Atomic uint64_t pong;
        _Alignas(64) uint64_t samples[PROBE_BATCHES];
};

static inline void probe_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
}

static int probe_side(enum dp_side side, void *userdata) {
        struct probe *p = userdata;

        for (uint64_t seq = 1, b = 0; b < PROBE_BATCHES; b++) {
                uint64_t t0 = bench_now_nsec();

                for (unsigned i = 0; i < PROBE_BATCH; i++, seq++) {
                        if (side == DP_SIDE_A) {
                                atomic_store_explicit(&p->ping, seq, memory_order_release);
                                while (atomic_load_explicit(&p->pong, memory_order_acquire) != seq)
                                        probe_relax();
                        } else {
                                while (atomic_load_explicit(&p->ping, memory_order_acquire) != seq)
                                        probe_relax();
                                atomic_store_explicit(&p->pong, seq, memory_order_release);
                        }
                }
                if (side == DP_SIDE_A)
                        p->samples[b] = (bench_now_nsec() - t0) / PROBE_BATCH;
        }
        return 0;
}

uint64_t dp_probe_ns(const int cpu[_DP_SIDE_MAX]) {
        struct probe *p;
        uint64_t ns = 0;

        p = mmap(NULL, sizeof(*p), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return 0;
        if (dp_fork_sides(cpu, probe_side, NULL, p) >= 0) {
                bench_sort_u64(p->samples, PROBE_BATCHES);
                ns = bench_percentile(p->samples, PROBE_BATCHES, 500);
        }
        munmap(p, sizeof(*p));
        return ns;
}
