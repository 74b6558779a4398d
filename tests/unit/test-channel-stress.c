/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libbrokerd-channel under concurrency: two threads stream and ping-pong messages of random
 * sizes over a small ring (every wrap, full ring and sleep path is taken), in blocking mode with
 * two vectors, with one, with no spin, and busy-polling; two processes over a memfd with real
 * eventfds; and a hostile peer that corrupts records and indices, or rings without end, while
 * the other side runs. Contents and order are checked byte by byte; durations never are.
 *
 * The counts shrink under valgrind, or with BROKERD_CHANNEL_STRESS=N (messages per run).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#include "channel-fixture.h"

#define RING 4096

static uint64_t messages = 200000;

/* Random sizes, most small, some up to max: the same sequence on both sides. */
static size_t message_size(uint64_t *rng, uint32_t max) {
        uint64_t r = fixture_rand(rng);

        return r % 4 == 0 ? 1 + (r >> 8) % max : 1 + (r >> 8) % 64;
}

static void fill(uint8_t *buf, uint64_t seq, size_t len) {
        for (size_t i = 0; i < len; i++)
                buf[i] = fixture_byte(seq, i);
}

static bool check(const uint8_t *buf, uint64_t seq, size_t len) {
        for (size_t i = 0; i < len; i++)
                if (buf[i] != fixture_byte(seq, i))
                        return false;
        return true;
}

/* Sends message seq of len bytes, copied or in place (then committed shorter by one when it can). */
static int put(struct brokerd_channel *ch, uint64_t seq, size_t len, int timeout_ms) {
        uint8_t buf[RING];
        void *dst;
        int r;

        if (seq % 2 == 0) {
                fill(buf, seq, len);
                return brokerd_channel_send(ch, buf, len, timeout_ms);
        }
        r = brokerd_channel_reserve(ch, len + (len < brokerd_channel_max_message(ch)), &dst, timeout_ms);
        if (r < 0)
                return r;
        fill(dst, seq, len);
        return brokerd_channel_commit(ch, len);
}

/* Receives message seq (expected len bytes), copied or in place: 0, an error, or -EBADMSG. */
static int get(struct brokerd_channel *ch, uint64_t seq, size_t len, int timeout_ms) {
        uint8_t buf[RING];
        const void *in;
        size_t n;
        ssize_t r;

        if (seq % 3 == 0) {
                r = brokerd_channel_recv(ch, buf, sizeof(buf), timeout_ms);
                if (r < 0)
                        return (int) r;
                return (size_t) r == len && check(buf, seq, len) ? 0 : -EBADMSG;
        }
        r = brokerd_channel_peek(ch, &in, &n, timeout_ms);
        if (r < 0)
                return (int) r;
        if (n != len || !check(in, seq, len))
                return -EBADMSG;
        return brokerd_channel_consume(ch);
}

struct peer {
        struct brokerd_channel *ch;
        uint64_t count;
        bool echo; /* ping-pong: receive each message and send it back */
        int result;
};

static void *producer_thread(void *userdata) {
        struct peer *p = userdata;
        uint64_t rng = 42;
        uint32_t max = brokerd_channel_max_message(p->ch);

        for (uint64_t seq = 0; seq < p->count && p->result == 0; seq++)
                p->result = put(p->ch, seq, message_size(&rng, max), -1);
        return NULL;
}

static void *echo_thread(void *userdata) {
        struct peer *p = userdata;
        uint64_t rng = 42;
        uint32_t max = brokerd_channel_max_message(p->ch);

        for (uint64_t seq = 0; seq < p->count && p->result == 0; seq++) {
                size_t len = message_size(&rng, max);

                p->result = get(p->ch, seq, len, -1);
                if (p->result == 0)
                        p->result = put(p->ch, seq, len, -1);
        }
        return NULL;
}

static void run_pair(enum fixture_bells bells, uint32_t spin_usec, bool pingpong, uint64_t count) {
        struct fixture f;
        struct peer other = { .count = count };
        uint64_t rng = 42;
        pthread_t t;

        fixture_open(&f, RING, 0, bells);
        other.ch = pingpong ? f.joiner : f.creator;
        if (bells != BELLS_NONE) {
                assert_int_equal(brokerd_channel_set_spin(f.creator, spin_usec), 0);
                assert_int_equal(brokerd_channel_set_spin(f.joiner, spin_usec), 0);
        }
        assert_int_equal(pthread_create(&t, NULL, pingpong ? echo_thread : producer_thread, &other), 0);
        for (uint64_t seq = 0; seq < count; seq++) {
                size_t len = message_size(&rng, brokerd_channel_max_message(f.creator));

                if (pingpong) {
                        assert_int_equal(put(f.creator, seq, len, -1), 0);
                        assert_int_equal(get(f.creator, seq, len, -1), 0);
                } else
                        assert_int_equal(get(f.joiner, seq, len, -1), 0);
        }
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(other.result, 0);
        /* Nothing more: the peer closes, and the end is -EPIPE. */
        brokerd_channel_free(other.ch);
        if (pingpong)
                f.joiner = NULL;
        else
                f.creator = NULL;
        assert_int_equal(brokerd_channel_recv(pingpong ? f.creator : f.joiner, NULL, 0, -1), -EPIPE);
        fixture_close(&f);
}

static void test_stream_blocking(void **state) {
        (void) state;
        run_pair(BELLS_FOUR, BROKERD_CHANNEL_DEFAULT_SPIN_USEC, false, messages);
        /* No spin: every wait sleeps on its eventfd. */
        run_pair(BELLS_FOUR, 0, false, messages / 4);
}

static void test_stream_one_vector(void **state) {
        (void) state;
        run_pair(BELLS_ONE, 0, false, messages / 4);
}

/* Busy-polling threads that share a CPU (a loaded box, valgrind) hand over once per time slice:
 * fewer messages keep the test short there, and the ring still wraps thousands of times. */
static void test_stream_busy_poll(void **state) {
        (void) state;
        run_pair(BELLS_NONE, 0, false, messages / 4);
}

static void test_pingpong(void **state) {
        (void) state;
        run_pair(BELLS_FOUR, 0, true, messages / 10);
        run_pair(BELLS_ONE, BROKERD_CHANNEL_DEFAULT_SPIN_USEC, true, messages / 10);
        run_pair(BELLS_NONE, 0, true, messages / 100);
}

/* The joiner in a child process: echoes every message until the creator closes. */
static int child_echo(struct fixture *f) {
        struct brokerd_channel *ch;
        uint8_t buf[RING];
        ssize_t n;
        int r;

        /* The creator may not have written the header yet: this waits for its ring. */
        r = brokerd_channel_join(f->mem, f->len, &f->joiner_db, 10000, &ch);
        if (r < 0)
                return 10;
        for (;;) {
                n = brokerd_channel_recv(ch, buf, sizeof(buf), -1);
                if (n == -EPIPE)
                        break;
                if (n < 0)
                        return 11;
                if (brokerd_channel_send(ch, buf, (size_t) n, -1) < 0)
                        return 12;
        }
        brokerd_channel_free(ch);
        return 0;
}

static void test_two_processes(void **state) {
        struct brokerd_channel_params p = { RING, 0 };
        uint64_t rng = 7, count = messages / 10;
        struct fixture f = {};
        int status;
        pid_t pid;

        (void) state;
        fixture_memory(&f, brokerd_channel_size(&p));
        fixture_bells(&f, BELLS_FOUR);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(child_echo(&f));

        assert_int_equal(brokerd_channel_create(f.mem, f.len, &p, &f.creator_db, &f.creator), 0);
        assert_int_equal(brokerd_channel_set_spin(f.creator, 0), 0);
        for (uint64_t seq = 0; seq < count; seq++) {
                size_t len = message_size(&rng, brokerd_channel_max_message(f.creator));

                assert_int_equal(put(f.creator, seq, len, -1), 0);
                assert_int_equal(get(f.creator, seq, len, -1), 0);
        }
        brokerd_channel_free(f.creator);
        f.creator = NULL;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
        fixture_close(&f);
}

/* ---- a hostile peer while the other side runs ---- */

struct runner {
        struct brokerd_channel *ch;
        atomic_bool stop;
        int result;
};

/* Sends until told to stop or until an error other than a timeout. */
static void *send_forever(void *userdata) {
        struct runner *r = userdata;
        uint8_t buf[512] = {};

        for (uint64_t seq = 0; !atomic_load(&r->stop); seq++) {
                int k = brokerd_channel_send(r->ch, buf, 1 + seq % sizeof(buf), 100);

                if (k < 0 && k != -ETIMEDOUT) {
                        r->result = k;
                        break;
                }
        }
        return NULL;
}

static void *recv_forever(void *userdata) {
        struct runner *r = userdata;
        uint8_t buf[RING];

        while (!atomic_load(&r->stop)) {
                ssize_t k = brokerd_channel_recv(r->ch, buf, sizeof(buf), 100);

                if (k < 0 && k != -ETIMEDOUT) {
                        r->result = (int) k;
                        break;
                }
        }
        return NULL;
}

/* Both sides run; the test, the hostile one, scribbles over what evil() picks until the victim
 * reports -EPROTO, which it must keep answering. */
static void hostile_while_running(enum fixture_bells bells, bool victim_consumes) {
        struct runner prod = {}, cons = {};
        struct fixture f;
        pthread_t tp, tc;
        struct runner *victim = victim_consumes ? &cons : &prod;

        fixture_open(&f, RING, 0, bells);
        prod.ch = f.creator;
        cons.ch = f.joiner;
        assert_int_equal(pthread_create(&tp, NULL, send_forever, &prod), 0);
        assert_int_equal(pthread_create(&tc, NULL, recv_forever, &cons), 0);
        while (!__atomic_load_n(&victim->result, __ATOMIC_ACQUIRE)) {
                if (victim_consumes)
                        /* Every unread record becomes {len 0xffffffff, kind 0xffffffff}. */
                        memset(fixture_data(&f, 0), 0xff, RING);
                else
                        atomic_store(&fixture_ring(&f, 0)->cons, 4);
                if (f.efd[0] >= 0)
                        fixture_ring_fd(victim_consumes ? f.efd[0] : f.efd[1]);
                usleep(100);
        }
        atomic_store(&prod.stop, true);
        atomic_store(&cons.stop, true);
        assert_int_equal(pthread_join(tp, NULL), 0);
        assert_int_equal(pthread_join(tc, NULL), 0);
        assert_int_equal(victim->result, -EPROTO);
        assert_int_equal(brokerd_channel_send(victim->ch, "x", 1, -1), -EPROTO);
        assert_int_equal(brokerd_channel_recv(victim->ch, NULL, 0, -1), -EPROTO);
        fixture_close(&f);
}

static void test_hostile_records_while_running(void **state) {
        (void) state;
        hostile_while_running(BELLS_FOUR, true);
        hostile_while_running(BELLS_NONE, true);
}

static void test_hostile_index_while_running(void **state) {
        (void) state;
        hostile_while_running(BELLS_FOUR, false);
        hostile_while_running(BELLS_ONE, false);
}

static void *ring_forever(void *userdata) {
        struct runner *r = userdata;

        while (!atomic_load(&r->stop))
                fixture_ring_fd(r->result);
        return NULL;
}

static void test_spurious_rings(void **state) {
        struct runner ringer = {};
        uint8_t buf[64];
        struct fixture f;
        pthread_t t;

        (void) state;
        /* A peer that rings without end cannot keep a call with a timeout from returning. */
        fixture_open(&f, RING, 0, BELLS_FOUR);
        ringer.result = f.efd[0];
        assert_int_equal(pthread_create(&t, NULL, ring_forever, &ringer), 0);
        assert_int_equal(brokerd_channel_recv(f.joiner, buf, sizeof(buf), 50), -ETIMEDOUT);
        assert_int_equal(brokerd_channel_set_spin(f.joiner, 0), 0);
        assert_int_equal(brokerd_channel_recv(f.joiner, buf, sizeof(buf), 50), -ETIMEDOUT);
        atomic_store(&ringer.stop, true);
        assert_int_equal(pthread_join(t, NULL), 0);
        fixture_close(&f);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_stream_blocking),
                cmocka_unit_test(test_stream_one_vector),
                cmocka_unit_test(test_stream_busy_poll),
                cmocka_unit_test(test_pingpong),
                cmocka_unit_test(test_two_processes),
                cmocka_unit_test(test_hostile_records_while_running),
                cmocka_unit_test(test_hostile_index_while_running),
                cmocka_unit_test(test_spurious_rings),
        };
        const char *env = getenv("BROKERD_CHANNEL_STRESS");

        if (env)
                messages = strtoull(env, NULL, 10) ?: 1;
        else if (RUNNING_ON_VALGRIND)
                messages = 3000;
        return cmocka_run_group_tests(tests, NULL, NULL);
}
