/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <systemd/sd-event.h>
#include <unistd.h>
#include <cmocka.h>

#include "backend/ivshmem-host.h"

struct fixture {
        sd_event *loop;
        struct ivshmem_host *host;
        pthread_t main_thread;
        unsigned seen[8];
        size_t n_seen;
        int pipe[2];
        sd_event_source *pipe_source; /* on the host's loop */
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        assert_int_equal(sd_event_new(&f->loop), 0);
        assert_int_equal(ivshmem_host_new(f->loop, &f->host), 0);
        f->main_thread = pthread_self();
        f->pipe[0] = f->pipe[1] = -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;

        ivshmem_host_free(f->host);
        sd_event_unref(f->loop);
        if (f->pipe[0] >= 0)
                close(f->pipe[0]);
        if (f->pipe[1] >= 0)
                close(f->pipe[1]);
        free(f);
        return 0;
}

static int call_where(sd_event *e, void *userdata) {
        struct fixture *f = userdata;

        assert_non_null(e);
        return pthread_equal(pthread_self(), f->main_thread) ? -EBADE : 42;
}

static void test_call_runs_on_the_host_thread(void **state) {
        struct fixture *f = *state;

        assert_int_equal(ivshmem_host_call(f->host, call_where, f), 42);
        assert_int_equal(ivshmem_host_call(f->host, NULL, f), -EINVAL);
}

static void on_report(void *userdata, const void *msg) {
        struct fixture *f = userdata;
        unsigned v;

        /* Reports run on the loop thread, in the order they were posted. */
        assert_true(pthread_equal(pthread_self(), f->main_thread));
        memcpy(&v, msg, sizeof(v));
        assert_true(f->n_seen < 8);
        f->seen[f->n_seen++] = v;
}

static int call_post_three(sd_event *e, void *userdata) {
        struct fixture *f = userdata;
        unsigned char big[IVSHMEM_HOST_MAX_MSG + 1] = {};

        (void) e;
        for (unsigned v = 1; v <= 3; v++)
                assert_int_equal(ivshmem_host_post(f->host, on_report, f, &v, sizeof(v)), 0);
        assert_int_equal(ivshmem_host_post(f->host, on_report, f, big, sizeof(big)), -E2BIG);
        return 0;
}

static void run_until(struct fixture *f, size_t n) {
        for (int i = 0; i < 1000 && f->n_seen < n; i++)
                assert_true(sd_event_run(f->loop, 10 * 1000) >= 0);
        assert_int_equal(f->n_seen, n);
}

static void test_posts_reach_the_loop_in_order(void **state) {
        struct fixture *f = *state;

        assert_int_equal(ivshmem_host_call(f->host, call_post_three, f), 0);
        run_until(f, 3);
        assert_int_equal(f->seen[0], 1);
        assert_int_equal(f->seen[2], 3);
}

static int on_pipe(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct fixture *f = userdata;
        unsigned v;

        (void) s, (void) revents;
        assert_int_equal(read(fd, &v, sizeof(v)), sizeof(v));
        return ivshmem_host_post(f->host, on_report, f, &v, sizeof(v));
}

static int call_watch_pipe(sd_event *e, void *userdata) {
        struct fixture *f = userdata;
        return sd_event_add_io(e, &f->pipe_source, f->pipe[0], EPOLLIN, on_pipe, f);
}

static int call_unwatch_pipe(sd_event *e, void *userdata) {
        struct fixture *f = userdata;

        (void) e;
        f->pipe_source = sd_event_source_disable_unref(f->pipe_source);
        return 0;
}

/* The host's loop serves its sources while the loop thread does something else entirely. */
static void test_host_loop_serves_by_itself(void **state) {
        struct fixture *f = *state;
        unsigned v = 7;

        assert_int_equal(pipe(f->pipe), 0);
        assert_int_equal(ivshmem_host_call(f->host, call_watch_pipe, f), 0);
        assert_int_equal(write(f->pipe[1], &v, sizeof(v)), sizeof(v));
        /* Not running our loop: the host thread reads the pipe on its own (and posts). */
        for (int i = 0; i < 5000; i++) {
                int queued = -1;
                assert_int_equal(ioctl(f->pipe[0], FIONREAD, &queued), 0);
                if (queued == 0)
                        break;
                usleep(1000);
        }
        int left = -1;
        assert_int_equal(ioctl(f->pipe[0], FIONREAD, &left), 0);
        assert_int_equal(left, 0);
        assert_int_equal(f->n_seen, 0); /* reports wait for the loop thread */
        run_until(f, 1);
        assert_int_equal(f->seen[0], 7);
        assert_int_equal(ivshmem_host_call(f->host, call_unwatch_pipe, f), 0);
}

static int call_flood(sd_event *e, void *userdata) {
        struct fixture *f = userdata;
        unsigned v = 0;

        (void) e;
        for (unsigned i = 0; i < IVSHMEM_HOST_MAX_POSTS; i++)
                if (ivshmem_host_post(f->host, on_report, NULL, &v, sizeof(v)) < 0)
                        return -EIO;
        return ivshmem_host_post(f->host, on_report, NULL, &v, sizeof(v));
}

/* Past the limit posts are refused; what is queued is dropped (freed) when the host goes. */
static void test_post_limit(void **state) {
        struct fixture *f = *state;

        assert_int_equal(ivshmem_host_call(f->host, call_flood, f), -ENOBUFS);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_call_runs_on_the_host_thread, setup, teardown),
                cmocka_unit_test_setup_teardown(test_posts_reach_the_loop_in_order, setup, teardown),
                cmocka_unit_test_setup_teardown(test_host_loop_serves_by_itself, setup, teardown),
                cmocka_unit_test_setup_teardown(test_post_limit, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
