/* SPDX-License-Identifier: Apache-2.0 */
/* mapping-bench: DEVICE_REMOVED, seen on libvirt's event thread, awaited on the main thread. */
#include "mapping-bench.h"

void sleep_msec(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
                ;
}

const char *lv_error(void) {
        const char *m = virGetLastErrorMessage();
        return m ?: "unknown libvirt error";
}

/* libvirt prints every error to stderr by default; ours are printed where they matter. */
void quiet_error(void *ud, virErrorPtr e) {
        (void) ud, (void) e;
}


struct watch watch = { .lock = PTHREAD_MUTEX_INITIALIZER };
atomic_bool events_stop;

static void watch_mark(virDomainPtr dom, const char *alias, enum expect_state state) {
        const char *name = virDomainGetName(dom);
        uint64_t t = bench_now_nsec();
        bool matched = false;

        if (!name || !alias)
                return;
        pthread_mutex_lock(&watch.lock);
        for (size_t i = 0; i < watch.n; i++) {
                struct expect *x = &watch.e[i];
                if (x->state == EXPECT_WAITING && strcmp(x->domain, name) == 0 && strcmp(x->alias, alias) == 0) {
                        x->state = state;
                        x->at = t;
                        matched = true;
                        pthread_cond_broadcast(&watch.cond);
                }
        }
        if (!matched && state == EXPECT_REMOVED && strncmp(alias, "ua-", 3) == 0 &&
            (strcmp(name, watch.owner) == 0 || strcmp(name, watch.peer) == 0)) {
                watch.stray++;
                fprintf(stderr, "\nmapping-bench: %s left %s unasked\n", alias, name);
        }
        pthread_mutex_unlock(&watch.lock);
}

void on_device_removed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        (void) conn, (void) opaque;
        watch_mark(dom, alias, EXPECT_REMOVED);
}

void on_removal_failed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        (void) conn, (void) opaque;
        watch_mark(dom, alias, EXPECT_FAILED);
}

/* Armed before the call that triggers the removal, so that the event cannot overtake it. */
int watch_arm(const char *domain, const char *alias) {
        int r = 0;

        pthread_mutex_lock(&watch.lock);
        if (watch.n >= MAX_EXPECT)
                r = -E2BIG;
        else {
                struct expect *x = &watch.e[watch.n++];
                *x = (struct expect) { .state = EXPECT_WAITING };
                snprintf(x->domain, sizeof(x->domain), "%s", domain);
                snprintf(x->alias, sizeof(x->alias), "%s", alias);
        }
        pthread_mutex_unlock(&watch.lock);
        return r;
}

void watch_reset(void) {
        pthread_mutex_lock(&watch.lock);
        watch.n = 0;
        pthread_mutex_unlock(&watch.lock);
}

/*
 * Waits until every armed removal has been reported, then disarms them all. ret_at[i] is when
 * the i-th armed one arrived. -ETIMEDOUT, or -EIO if libvirt reported a removal as failed.
 */
int watch_wait(unsigned timeout_ms, uint64_t ret_at[static MAX_EXPECT]) {
        uint64_t deadline = bench_now_nsec() + (uint64_t) timeout_ms * 1000000u, at[MAX_EXPECT] = {};
        struct timespec ts = { .tv_sec = (time_t) (deadline / 1000000000u), .tv_nsec = (long) (deadline % 1000000000u) };
        int r = 0;

        pthread_mutex_lock(&watch.lock);
        for (;;) {
                bool waiting = false;

                for (size_t i = 0; i < watch.n; i++) {
                        if (watch.e[i].state == EXPECT_FAILED) {
                                fprintf(stderr, "mapping-bench: libvirt could not remove %s from %s\n",
                                        watch.e[i].alias, watch.e[i].domain);
                                r = -EIO;
                        }
                        waiting |= watch.e[i].state == EXPECT_WAITING;
                        at[i] = watch.e[i].at;
                }
                if (r < 0 || !waiting)
                        break;
                if (pthread_cond_timedwait(&watch.cond, &watch.lock, &ts) == ETIMEDOUT) {
                        for (size_t i = 0; i < watch.n; i++)
                                if (watch.e[i].state == EXPECT_WAITING)
                                        fprintf(stderr, "mapping-bench: no DEVICE_REMOVED for %s from %s in %ums\n",
                                                watch.e[i].alias, watch.e[i].domain, timeout_ms);
                        r = -ETIMEDOUT;
                        break;
                }
        }
        watch.n = 0;
        pthread_mutex_unlock(&watch.lock);
        if (r >= 0)
                memcpy(ret_at, at, sizeof(at));
        return r;
}

void *event_thread(void *p) {
        (void) p;
        while (!atomic_load(&events_stop))
                if (virEventRunDefaultImpl() < 0) {
                        fprintf(stderr, "mapping-bench: libvirt event loop: %s\n", lv_error());
                        break;
                }
        return NULL;
}

void on_wakeup(int timer, void *opaque) {
        (void) opaque;
        virEventRemoveTimeout(timer);
}
