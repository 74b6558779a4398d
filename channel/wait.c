/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Waiting for the peer: spin, then sleep on a doorbell with the need-wakeup protocol.
 *
 * The sleeper arms its flag, issues a seq_cst fence and re-checks its condition before it
 * sleeps; the waker publishes its index, issues a seq_cst fence and reads the flag. One of the
 * two always sees the other (Dekker), so no wakeup is lost, and a waker whose peer is busy makes
 * no system call. Every wait ends by the caller's deadline however often the fd turns readable.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "channel-internal.h"

/* Spin iterations between two clock reads (a vDSO call, ~20 ns, against ~100 ns a check). */
#define SPIN_CLOCK_EVERY 32

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield" ::: "memory");
#else
        atomic_signal_fence(memory_order_seq_cst);
#endif
}

static uint64_t now_ns(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000000) + (uint64_t) ts.tv_nsec;
}

void channel_ring_fd(int fd) {
        uint64_t one = 1;

        /* EAGAIN: the counter is full, so the fd is readable already; nothing else can help. */
        (void) !write(fd, &one, sizeof(one));
}

/* Resets a readable eventfd; an empty one answers EAGAIN (the fds are non-blocking). */
static void drain_fd(int fd) {
        uint64_t count;

        (void) !read(fd, &count, sizeof(count));
}

/* Arms the flag and re-checks: > 0 or < 0 from cond() (flag disarmed again), 0 armed. */
static int arm_and_check(const struct channel_waiter *w) {
        int r;

        if (!w->flag)
                return w->cond(w->userdata);
        atomic_store_explicit(w->flag, 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_seq_cst);
        r = w->cond(w->userdata);
        if (r != 0)
                atomic_store_explicit(w->flag, 0, memory_order_relaxed);
        return r;
}

/* Spins until cond() answers or until 'until' (ns); 0 when it is time to sleep. */
static int spin(const struct channel_waiter *w, uint64_t until) {
        for (;;) {
                for (unsigned i = 0; i < SPIN_CLOCK_EVERY; i++) {
                        int r = w->cond(w->userdata);

                        if (r != 0)
                                return r;
                        cpu_relax();
                }
                if (now_ns() >= until)
                        return 0;
        }
}

static int sleep_on_fd(const struct channel_waiter *w, uint64_t deadline) {
        for (;;) {
                struct pollfd pfd = { .fd = w->fd, .events = POLLIN };
                struct timespec ts, *tsp = NULL;
                uint64_t t;
                int r;

                r = arm_and_check(w);
                if (r != 0)
                        return r;
                if (deadline != UINT64_MAX) {
                        t = now_ns();
                        if (t >= deadline)
                                return -ETIMEDOUT;
                        ts.tv_sec = (time_t) ((deadline - t) / 1000000000);
                        ts.tv_nsec = (long) ((deadline - t) % 1000000000);
                        tsp = &ts;
                }
                r = ppoll(&pfd, 1, tsp, NULL);
                if (r < 0 && errno != EINTR)
                        return -errno;
                /* Drained before the next arm, so a ring after it is never lost. */
                if (r > 0 && (pfd.revents & POLLIN))
                        drain_fd(w->fd);
                else if (r > 0 && (pfd.revents & (POLLNVAL | POLLERR)))
                        return -EBADF;
        }
}

int channel_wait(const struct channel_waiter *w, int timeout_ms) {
        uint64_t deadline, spin_until;
        int r;

        r = w->cond(w->userdata);
        if (r != 0)
                return r < 0 ? r : 0;
        if (timeout_ms == 0) {
                /* For an event loop: leave the fd drained and the flag armed. */
                if (w->busy_poll || w->fd < 0)
                        return -EAGAIN;
                drain_fd(w->fd);
                r = arm_and_check(w);
                return r > 0 ? 0 : r < 0 ? r : -EAGAIN;
        }

        deadline = timeout_ms < 0 ? UINT64_MAX : now_ns() + (uint64_t) timeout_ms * 1000000;
        if (w->busy_poll || w->fd < 0)
                spin_until = deadline;
        else {
                spin_until = now_ns() + (uint64_t) w->spin_usec * 1000;
                if (spin_until > deadline)
                        spin_until = deadline;
        }
        r = spin(w, spin_until);
        if (r == 0 && (w->busy_poll || w->fd < 0))
                r = -ETIMEDOUT;
        else if (r == 0)
                r = sleep_on_fd(w, deadline);
        return r > 0 ? 0 : r;
}
