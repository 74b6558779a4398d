/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libbrokerd-channel, one thread: sizes, create and join (every corrupted header field refused),
 * copy and zero-copy semantics, wrap-around with padding, timeouts, closing, peer_gone, the
 * event-loop fds, and a hostile peer's indices and records (test-channel-stress has the threads
 * and the processes).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>

#include "channel-fixture.h"

#define RING 4096
#define MAX (RING / 2 - 8)

static void test_size(void **state) {
        (void) state;
        assert_int_equal(brokerd_channel_size(&(struct brokerd_channel_params) { RING, 0 }), 128 + 2 * (256 + RING));
        assert_int_equal(brokerd_channel_size(&(struct brokerd_channel_params) { RING, MAX }), 128 + 2 * (256 + RING));
        assert_int_equal(brokerd_channel_size(&(struct brokerd_channel_params) { 1u << 30, 0 }),
                         128 + 2 * (256 + (UINT64_C(1) << 30)));
        assert_int_equal(brokerd_channel_size(&(struct brokerd_channel_params) { RING, MAX + 1 }), 0);
        assert_int_equal(brokerd_channel_size(&(struct brokerd_channel_params) { 3000, 0 }), 0);
        assert_int_equal(brokerd_channel_size(&(struct brokerd_channel_params) { 2048, 0 }), 0);
        assert_int_equal(brokerd_channel_size(&(struct brokerd_channel_params) { 1u << 31, 0 }), 0);
        assert_int_equal(brokerd_channel_size(&(struct brokerd_channel_params) { 0, 0 }), 0);
        assert_int_equal(brokerd_channel_size(NULL), 0);
}

static void test_create_params(void **state) {
        struct brokerd_channel *ch = (void *) 0x1;
        struct fixture f = {};
        int blocking_fd;

        (void) state;
        fixture_memory(&f, 65536);
        fixture_bells(&f, BELLS_FOUR);
        /* Unaligned memory, too little of it, invalid params, half the doorbells, a blocking fd. */
        assert_int_equal(brokerd_channel_create((uint8_t *) f.mem + 8, 65528, NULL, NULL, &ch), -EINVAL);
        assert_int_equal(brokerd_channel_create(f.mem, 128 + 2 * (256 + RING) - 1,
                                                &(struct brokerd_channel_params) { RING, 0 }, NULL, &ch), -EINVAL);
        assert_int_equal(brokerd_channel_create(f.mem, 8192, NULL, NULL, &ch), -EINVAL);
        assert_int_equal(brokerd_channel_create(f.mem, f.len, &(struct brokerd_channel_params) { RING, MAX + 1 }, NULL,
                                                &ch), -EINVAL);
        assert_int_equal(brokerd_channel_create(f.mem, f.len, NULL,
                                                &(struct brokerd_channel_doorbells) { f.efd[0], -1, -1, -1 }, &ch),
                         -EINVAL);
        blocking_fd = eventfd(0, EFD_CLOEXEC);
        assert_true(blocking_fd >= 0);
        assert_int_equal(brokerd_channel_create(f.mem, f.len, NULL,
                                                &(struct brokerd_channel_doorbells) { f.efd[0], f.efd[1], f.efd[2],
                                                                                      blocking_fd }, &ch), -EINVAL);
        close(blocking_fd);
        assert_ptr_equal(ch, (void *) 0x1);

        /* ring_size 0: the largest that fits (65536 bytes hold two 16 KiB rings, not 32 KiB). */
        assert_int_equal(brokerd_channel_create(f.mem, f.len, NULL, &f.creator_db, &ch), 0);
        assert_int_equal(fixture_header(&f)->ring_size, 16384);
        assert_int_equal(brokerd_channel_max_message(ch), 16384 / 2 - 8);
        brokerd_channel_free(ch);
        assert_int_equal(brokerd_channel_create(f.mem, f.len, &(struct brokerd_channel_params) { RING, 100 }, NULL, &ch), 0);
        assert_int_equal(brokerd_channel_max_message(ch), 100);
        f.creator = ch;
        fixture_close(&f);
}

/* A fresh channel, one field changed by corrupt(), must be refused by the joiner. */
static void join_refused(void (*corrupt)(struct fixture *f), size_t len_cut) {
        struct brokerd_channel *ch = (void *) 0x1;
        struct fixture f;

        fixture_open(&f, RING, 0, BELLS_NONE);
        brokerd_channel_free(f.joiner);
        f.joiner = NULL;
        fixture_ring(&f, 0)->cons = 0;
        fixture_header(&f)->closed[CHANNEL_JOINER] = 0;
        assert_int_equal(brokerd_channel_join(f.mem, f.len, NULL, 0, &ch), 0);
        brokerd_channel_free(ch);
        fixture_header(&f)->closed[CHANNEL_JOINER] = 0;

        if (corrupt)
                corrupt(&f);
        ch = (void *) 0x1;
        assert_int_equal(brokerd_channel_join(f.mem, f.len - len_cut, NULL, 0, &ch), -EPROTO);
        assert_ptr_equal(ch, (void *) 0x1);
        fixture_close(&f);
}

static void bad_magic(struct fixture *f) { fixture_header(f)->magic = BROKERD_CHANNEL_MAGIC ^ 0x100; }
static void bad_version(struct fixture *f) { fixture_header(f)->version = 2; }
static void header_small(struct fixture *f) { fixture_header(f)->header_size = 64; }
static void header_unaligned(struct fixture *f) { fixture_header(f)->header_size = 136; }
static void header_huge(struct fixture *f) { fixture_header(f)->header_size = 1u << 20; }
static void header_over_ring(struct fixture *f) { fixture_header(f)->header_size = 192; }
static void ring_not_pow2(struct fixture *f) { fixture_header(f)->ring_size = 3072; }
static void ring_small(struct fixture *f) { fixture_header(f)->ring_size = 2048; }
static void ring_huge(struct fixture *f) { fixture_header(f)->ring_size = UINT64_C(1) << 40; }
static void ring_bigger(struct fixture *f) { fixture_header(f)->ring_size = 8192; }
static void max_zero(struct fixture *f) { fixture_header(f)->max_message = 0; }
static void max_half(struct fixture *f) { fixture_header(f)->max_message = RING / 2 - 7; }
static void off_unaligned(struct fixture *f) { fixture_header(f)->ring_offset[0] += 8; }
static void off_in_header(struct fixture *f) { fixture_header(f)->ring_offset[0] = 64; }
static void off_beyond(struct fixture *f) { fixture_header(f)->ring_offset[1] = UINT64_MAX - 63; }
static void off_overlap(struct fixture *f) { fixture_header(f)->ring_offset[1] = fixture_header(f)->ring_offset[0] + RING; }
static void off_same(struct fixture *f) { fixture_header(f)->ring_offset[1] = fixture_header(f)->ring_offset[0]; }
static void joiner_cons(struct fixture *f) { fixture_ring(f, 0)->cons = 8; }
static void joiner_prod(struct fixture *f) { fixture_ring(f, 1)->prod = 16; }
static void joiner_closed(struct fixture *f) { fixture_header(f)->closed[CHANNEL_JOINER] = 1; }

static void test_join_header_checks(void **state) {
        void (*const corruptions[])(struct fixture *) = {
                bad_magic, bad_version, header_small, header_unaligned, header_huge, header_over_ring,
                ring_not_pow2, ring_small, ring_huge, ring_bigger, max_zero, max_half, off_unaligned,
                off_in_header, off_beyond, off_overlap, off_same, joiner_cons, joiner_prod, joiner_closed,
        };

        (void) state;
        for (size_t i = 0; i < sizeof(corruptions) / sizeof(corruptions[0]); i++)
                join_refused(corruptions[i], 0);
        /* The memory given is shorter than the header says. */
        join_refused(NULL, 64);
}

static void test_join_waits(void **state) {
        struct brokerd_channel *ch = (void *) 0x1;
        struct fixture f = {};

        (void) state;
        fixture_memory(&f, 128 + 2 * (256 + RING));
        fixture_bells(&f, BELLS_FOUR);
        /* No header yet: not there (0), a while (a timeout), a length that cannot hold one. */
        assert_int_equal(brokerd_channel_join(f.mem, f.len, &f.joiner_db, 0, &ch), -EAGAIN);
        assert_int_equal(brokerd_channel_join(f.mem, f.len, &f.joiner_db, 5, &ch), -ETIMEDOUT);
        assert_int_equal(brokerd_channel_join(f.mem, f.len, NULL, 5, &ch), -ETIMEDOUT);
        assert_int_equal(brokerd_channel_join(f.mem, 64, NULL, 0, &ch), -EINVAL);
        assert_int_equal(brokerd_channel_join((uint8_t *) f.mem + 32, f.len - 32, NULL, 0, &ch), -EINVAL);
        assert_ptr_equal(ch, (void *) 0x1);
        /* The creator rings the joiner's data doorbell: a joiner asleep on it wakes. */
        assert_int_equal(brokerd_channel_create(f.mem, f.len, NULL, &f.creator_db, &f.creator), 0);
        assert_int_equal(brokerd_channel_join(f.mem, f.len, &f.joiner_db, -1, &f.joiner), 0);
        fixture_close(&f);
}

static void test_send_recv(void **state) {
        uint8_t buf[MAX + 1], out[MAX + 1];
        struct fixture f;

        (void) state;
        for (size_t i = 0; i < sizeof(buf); i++)
                buf[i] = (uint8_t) i;
        fixture_open(&f, RING, 0, BELLS_FOUR);
        assert_int_equal(brokerd_channel_send(f.creator, buf, 1, 0), 0);
        assert_int_equal(brokerd_channel_send(f.creator, buf, 14, 0), 0);
        assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 0), 0);
        assert_int_equal(brokerd_channel_send(f.creator, buf, MAX + 1, 0), -EMSGSIZE);
        assert_int_equal(brokerd_channel_send(f.creator, buf, 0, 0), -EINVAL);

        assert_int_equal(brokerd_channel_recv(f.joiner, out, sizeof(out), 0), 1);
        assert_int_equal(out[0], 0);
        /* Too small a buffer: -EMSGSIZE, and the message stays for a larger one. */
        assert_int_equal(brokerd_channel_recv(f.joiner, out, 13, 0), -EMSGSIZE);
        assert_int_equal(brokerd_channel_recv(f.joiner, out, 14, 0), 14);
        assert_memory_equal(out, buf, 14);
        assert_int_equal(brokerd_channel_recv(f.joiner, out, sizeof(out), 0), MAX);
        assert_memory_equal(out, buf, MAX);
        assert_int_equal(brokerd_channel_recv(f.joiner, out, sizeof(out), 0), -EAGAIN);

        /* And the other way. */
        assert_int_equal(brokerd_channel_send(f.joiner, "pong", 4, 0), 0);
        assert_int_equal(brokerd_channel_recv(f.creator, out, sizeof(out), 0), 4);
        assert_memory_equal(out, "pong", 4);
        fixture_close(&f);
}

static void test_zero_copy(void **state) {
        const void *in = (void *) 0x1;
        size_t len = 12345;
        void *buf, *other = (void *) 0x1;
        struct fixture f;

        (void) state;
        fixture_open(&f, RING, 0, BELLS_FOUR);
        assert_int_equal(brokerd_channel_commit(f.creator, 1), -EINVAL);
        assert_int_equal(brokerd_channel_reserve(f.creator, 1000, &buf, 0), 0);
        /* In the ring, after the record header. */
        assert_ptr_equal(buf, fixture_data(&f, 0) + 8);
        assert_int_equal(brokerd_channel_reserve(f.creator, 10, &other, 0), -EBUSY);
        assert_ptr_equal(other, (void *) 0x1);
        assert_int_equal(brokerd_channel_send(f.creator, "x", 1, 0), -EBUSY);
        memset(buf, 'z', 1000);
        /* Nothing is visible before the commit. */
        assert_int_equal(brokerd_channel_peek(f.joiner, &in, &len, 0), -EAGAIN);
        assert_ptr_equal(in, (void *) 0x1);
        assert_int_equal(len, 12345);
        assert_int_equal(brokerd_channel_commit(f.creator, 0), -EINVAL);
        assert_int_equal(brokerd_channel_commit(f.creator, 1001), -EINVAL);
        assert_int_equal(brokerd_channel_commit(f.creator, 600), 0);
        assert_int_equal(brokerd_channel_commit(f.creator, 600), -EINVAL);

        assert_int_equal(brokerd_channel_consume(f.joiner), -EINVAL);
        assert_int_equal(brokerd_channel_peek(f.joiner, &in, &len, 0), 0);
        assert_ptr_equal(in, buf);
        assert_int_equal(len, 600);
        /* Peeking again gives the same message until it is consumed. */
        assert_int_equal(brokerd_channel_peek(f.joiner, &in, &len, 0), 0);
        assert_ptr_equal(in, buf);
        assert_int_equal(((const uint8_t *) in)[599], 'z');
        assert_int_equal(brokerd_channel_consume(f.joiner), 0);
        assert_int_equal(brokerd_channel_consume(f.joiner), -EINVAL);
        /* The consumer index moved past the 600 bytes rounded to 8, plus the record header. */
        assert_int_equal(fixture_ring(&f, 0)->cons, 8 + 600);
        assert_int_equal(brokerd_channel_peek(f.joiner, &in, &len, 0), -EAGAIN);
        fixture_close(&f);
}

static void test_wrap_padding(void **state) {
        uint8_t buf[MAX], out[MAX];
        struct fixture f;

        (void) state;
        fixture_open(&f, RING, 0, BELLS_NONE);
        /* 3 x 1008 bytes, then 1508 do not fit in the 1072 left: padding, then the record at 0. */
        for (uint64_t round = 0; round < 40; round++) {
                size_t len = round % 4 == 3 ? 1500 : 1000;

                for (size_t i = 0; i < len; i++)
                        buf[i] = fixture_byte(round, i);
                assert_int_equal(brokerd_channel_send(f.creator, buf, len, 0), 0);
                assert_int_equal(brokerd_channel_recv(f.joiner, out, sizeof(out), 0), len);
                assert_memory_equal(out, buf, len);
        }
        /* The first wrap left its padding record at 3024: {len 1064, kind padding}. */
        assert_int_equal(((uint32_t *) (fixture_data(&f, 0) + 3024))[1], CHANNEL_RECORD_PADDING);
        assert_true(fixture_ring(&f, 0)->prod > 4 * RING);
        fixture_close(&f);
}

static void test_full_and_timeouts(void **state) {
        enum fixture_bells kinds[] = { BELLS_FOUR, BELLS_ONE, BELLS_NONE };
        uint8_t buf[MAX] = {};
        struct fixture f;

        (void) state;
        for (size_t k = 0; k < 3; k++) {
                fixture_open(&f, RING, 0, kinds[k]);
                assert_int_equal(brokerd_channel_recv(f.joiner, buf, sizeof(buf), 0), -EAGAIN);
                assert_int_equal(brokerd_channel_recv(f.joiner, buf, sizeof(buf), 10), -ETIMEDOUT);
                /* Two records of the largest message (2048 bytes each) fill the ring. */
                assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 0), 0);
                assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 0), 0);
                assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 0), -EAGAIN);
                assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 10), -ETIMEDOUT);
                assert_int_equal(brokerd_channel_set_spin(f.creator, 0), 0);
                assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 10), -ETIMEDOUT);
                assert_int_equal(brokerd_channel_recv(f.joiner, buf, sizeof(buf), 0), MAX);
                assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 0), 0);
                fixture_close(&f);
        }
}

static void test_closed(void **state) {
        uint8_t out[64];
        struct fixture f;

        (void) state;
        fixture_open(&f, RING, 0, BELLS_FOUR);
        assert_int_equal(brokerd_channel_send(f.creator, "one", 3, 0), 0);
        assert_int_equal(brokerd_channel_send(f.creator, "two", 3, 0), 0);
        brokerd_channel_free(f.creator);
        f.creator = NULL;
        /* What was sent before the close is still delivered, then -EPIPE, also when waiting. */
        assert_int_equal(brokerd_channel_recv(f.joiner, out, sizeof(out), 0), 3);
        assert_int_equal(brokerd_channel_recv(f.joiner, out, sizeof(out), -1), 3);
        assert_memory_equal(out, "two", 3);
        assert_int_equal(brokerd_channel_recv(f.joiner, out, sizeof(out), 0), -EPIPE);
        assert_int_equal(brokerd_channel_recv(f.joiner, out, sizeof(out), -1), -EPIPE);
        assert_int_equal(brokerd_channel_send(f.joiner, "x", 1, -1), -EPIPE);
        fixture_close(&f);
}

static void test_peer_gone(void **state) {
        const void *in = (void *) 0x1;
        size_t len = 1;
        int fds[2], pipefd[2];
        uint8_t out[16];
        void *buf = (void *) 0x1;
        struct fixture f;

        (void) state;
        fixture_open(&f, RING, 0, BELLS_FOUR);
        assert_int_equal(brokerd_channel_send(f.creator, "x", 1, 0), 0);
        /* Let the creator arm both flags, so that a free() would ring. */
        assert_int_equal(brokerd_channel_recv(f.creator, out, sizeof(out), 0), -EAGAIN);
        brokerd_channel_peer_gone(f.joiner);
        assert_int_equal(brokerd_channel_recv(f.joiner, out, sizeof(out), -1), -EPIPE);
        assert_int_equal(brokerd_channel_peek(f.joiner, &in, &len, -1), -EPIPE);
        assert_int_equal(brokerd_channel_consume(f.joiner), -EPIPE);
        assert_int_equal(brokerd_channel_send(f.joiner, "y", 1, -1), -EPIPE);
        assert_int_equal(brokerd_channel_reserve(f.joiner, 1, &buf, -1), -EPIPE);
        assert_int_equal(brokerd_channel_commit(f.joiner, 1), -EPIPE);
        assert_int_equal(brokerd_channel_set_mode(f.joiner, BROKERD_CHANNEL_BUSY_POLL), -EPIPE);
        assert_int_equal(brokerd_channel_poll_fds(f.joiner, fds), 0);
        assert_ptr_equal(in, (void *) 0x1);
        assert_ptr_equal(buf, (void *) 0x1);

        /* Its fds are never touched again: put a pipe where its ring end was; free() writes nothing. */
        assert_int_equal(pipe2(pipefd, O_NONBLOCK | O_CLOEXEC), 0);
        assert_true(dup2(pipefd[1], f.efd[2]) == f.efd[2]);
        brokerd_channel_free(f.joiner);
        f.joiner = NULL;
        assert_int_equal(read(pipefd[0], out, sizeof(out)), -1);
        assert_int_equal(errno, EAGAIN);
        close(pipefd[0]);
        close(pipefd[1]);
        fixture_close(&f);
}

/* The memory is gone (a forced revoke truncated it): abandon() must not touch it, nor the fds. */
static void test_abandon(void **state) {
        uint8_t out[16];
        struct fixture f;

        (void) state;
        fixture_open(&f, RING, 0, BELLS_FOUR);
        assert_int_equal(brokerd_channel_send(f.creator, "x", 1, 0), 0);
        assert_int_equal(brokerd_channel_recv(f.joiner, out, sizeof(out), 0), 1);
        /* The joiner armed its data flag, so the creator's free() would write the close mark and ring it. */
        assert_int_equal(brokerd_channel_recv(f.joiner, out, sizeof(out), 0), -EAGAIN);
        assert_int_equal(mprotect(f.mem, f.len, PROT_NONE), 0);
        brokerd_channel_abandon(f.creator);
        f.creator = NULL;
        assert_int_equal(mprotect(f.mem, f.len, PROT_READ | PROT_WRITE), 0);
        assert_int_equal(atomic_load(&fixture_header(&f)->closed[0]), 0);
        assert_int_equal(read(f.efd[0], out, sizeof(uint64_t)), -1);
        assert_int_equal(errno, EAGAIN);
        brokerd_channel_abandon(NULL);
        fixture_close(&f);
}

static void test_modes(void **state) {
        struct fixture f;

        (void) state;
        fixture_open(&f, RING, 0, BELLS_NONE);
        /* Without doorbells there is nothing to sleep on. */
        assert_int_equal(brokerd_channel_set_mode(f.creator, BROKERD_CHANNEL_BLOCKING), -EINVAL);
        assert_int_equal(brokerd_channel_set_mode(f.creator, BROKERD_CHANNEL_BUSY_POLL), 0);
        assert_int_equal(brokerd_channel_set_mode(f.creator, (enum brokerd_channel_mode) 7), -EINVAL);
        assert_int_equal(brokerd_channel_set_spin(f.creator, 1000000), 0);
        assert_int_equal(brokerd_channel_set_spin(f.creator, 1000001), -EINVAL);
        fixture_close(&f);
        fixture_open(&f, RING, 0, BELLS_FOUR);
        assert_int_equal(brokerd_channel_set_mode(f.creator, BROKERD_CHANNEL_BUSY_POLL), 0);
        assert_int_equal(brokerd_channel_set_mode(f.creator, BROKERD_CHANNEL_BLOCKING), 0);
        fixture_close(&f);
}

/* fd readable within a second (the test asserts readiness, never how fast it came). */
static bool readable(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        return poll(&p, 1, 1000) == 1;
}

static bool readable_now(int fd) {
        struct pollfd p = { .fd = fd, .events = POLLIN };

        return poll(&p, 1, 0) == 1;
}

static void test_poll_fds(void **state) {
        uint8_t buf[MAX] = {};
        int fds[2] = { -1, -1 };
        struct fixture f;

        (void) state;
        fixture_open(&f, RING, 0, BELLS_FOUR);
        assert_int_equal(brokerd_channel_poll_fds(f.joiner, fds), 2);
        assert_int_equal(fds[0], f.efd[0]);
        assert_int_equal(fds[1], f.efd[1]);
        /* create() rang the data doorbell; -EAGAIN drains it and arms: the next send rings it again. */
        assert_true(readable_now(f.efd[0]));
        assert_int_equal(brokerd_channel_recv(f.joiner, buf, sizeof(buf), 0), -EAGAIN);
        assert_false(readable_now(f.efd[0]));
        assert_int_equal(brokerd_channel_send(f.creator, "a", 1, 0), 0);
        assert_true(readable(f.efd[0]));
        assert_int_equal(brokerd_channel_recv(f.joiner, buf, sizeof(buf), 0), 1);
        /* The flag was taken by that ring: a second send while nobody sleeps rings nothing. */
        assert_int_equal(brokerd_channel_recv(f.joiner, buf, sizeof(buf), 0), -EAGAIN);
        assert_int_equal(brokerd_channel_send(f.creator, "b", 1, 0), 0);
        assert_int_equal(brokerd_channel_send(f.creator, "c", 1, 0), 0);
        assert_true(readable(f.efd[0]));
        assert_int_equal(brokerd_channel_recv(f.joiner, buf, sizeof(buf), 0), 1);
        assert_int_equal(brokerd_channel_recv(f.joiner, buf, sizeof(buf), 0), 1);
        assert_int_equal(brokerd_channel_recv(f.joiner, buf, sizeof(buf), 0), -EAGAIN);
        assert_false(readable_now(f.efd[0]));

        /* Space: a full producer that got -EAGAIN is rung when the consumer frees a record
         * (at 48 + 2048 the next needs 2000 bytes of padding and 2048 more). */
        assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 0), 0);
        assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 0), -EAGAIN);
        assert_false(readable_now(f.efd[3]));
        assert_int_equal(brokerd_channel_recv(f.joiner, buf, sizeof(buf), 0), MAX);
        assert_true(readable(f.efd[3]));
        assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 0), 0);
        fixture_close(&f);

        fixture_open(&f, RING, 0, BELLS_ONE);
        assert_int_equal(brokerd_channel_poll_fds(f.joiner, fds), 1);
        assert_int_equal(fds[0], f.efd[0]);
        fixture_close(&f);
        fixture_open(&f, RING, 0, BELLS_NONE);
        assert_int_equal(brokerd_channel_poll_fds(f.joiner, fds), 0);
        fixture_close(&f);
}

/* ---- a hostile producer (we are the joiner) and a hostile consumer (we produce) ---- */

static void expect_poisoned(struct fixture *f, struct brokerd_channel *ch) {
        uint8_t out[MAX];
        void *buf;

        assert_int_equal(brokerd_channel_recv(ch, out, sizeof(out), 0), -EPROTO);
        /* Broken for good, whatever the memory says now. */
        assert_int_equal(brokerd_channel_recv(ch, out, sizeof(out), -1), -EPROTO);
        assert_int_equal(brokerd_channel_send(ch, "x", 1, -1), -EPROTO);
        assert_int_equal(brokerd_channel_reserve(ch, 1, &buf, -1), -EPROTO);
        assert_int_equal(brokerd_channel_set_spin(ch, 10), -EPROTO);
        (void) f;
}

/* The creator sends 30 bytes; then the hostile creator rewrites index or record with evil(). */
static void hostile_record(void (*evil)(struct fixture *f)) {
        struct fixture f;

        fixture_open(&f, RING, 0, BELLS_FOUR);
        assert_int_equal(brokerd_channel_send(f.creator, "thirty bytes of hostile memory", 30, 0), 0);
        evil(&f);
        expect_poisoned(&f, f.joiner);
        fixture_close(&f);
}

static void rec_set(struct fixture *f, size_t off, uint32_t len, uint32_t kind) {
        uint32_t *rec = (uint32_t *) (fixture_data(f, 0) + off);

        rec[0] = len;
        rec[1] = kind;
}

static void prod_beyond(struct fixture *f) { fixture_ring(f, 0)->prod = RING + 8; }
static void prod_unaligned(struct fixture *f) { fixture_ring(f, 0)->prod = 36; }
static void prod_huge(struct fixture *f) { fixture_ring(f, 0)->prod = UINT64_MAX - 7; }
static void len_beyond_published(struct fixture *f) { rec_set(f, 0, 100, CHANNEL_RECORD_MESSAGE); }
static void len_beyond_max(struct fixture *f) { fixture_ring(f, 0)->prod = 4000; rec_set(f, 0, MAX + 1, CHANNEL_RECORD_MESSAGE); }
static void len_zero(struct fixture *f) { rec_set(f, 0, 0, CHANNEL_RECORD_MESSAGE); }
static void len_huge(struct fixture *f) { rec_set(f, 0, UINT32_MAX, CHANNEL_RECORD_MESSAGE); }
static void kind_unknown(struct fixture *f) { rec_set(f, 0, 30, 3); }
static void kind_zero(struct fixture *f) { rec_set(f, 0, 30, 0); }
static void padding_at_zero(struct fixture *f) { fixture_ring(f, 0)->prod = RING; rec_set(f, 0, RING - 8, CHANNEL_RECORD_PADDING); }

static void test_hostile_producer(void **state) {
        void (*const evils[])(struct fixture *) = {
                prod_beyond, prod_unaligned, prod_huge, len_beyond_published, len_beyond_max, len_zero,
                len_huge, kind_unknown, kind_zero, padding_at_zero,
        };

        (void) state;
        for (size_t i = 0; i < sizeof(evils) / sizeof(evils[0]); i++)
                hostile_record(evils[i]);
}

static void test_hostile_padding(void **state) {
        uint8_t buf[1500] = {};
        struct fixture f;

        (void) state;
        /* Padding of the wrong length, and padding published only in part. */
        for (int variant = 0; variant < 3; variant++) {
                fixture_open(&f, RING, 0, BELLS_NONE);
                for (int i = 0; i < 3; i++) {
                        assert_int_equal(brokerd_channel_send(f.creator, buf, 1000, 0), 0);
                        assert_int_equal(brokerd_channel_recv(f.joiner, buf, sizeof(buf), 0), 1000);
                }
                assert_int_equal(brokerd_channel_send(f.creator, buf, 1500, 0), 0);
                if (variant == 0)
                        rec_set(&f, 3024, 1000, CHANNEL_RECORD_PADDING);
                else if (variant == 1)
                        fixture_ring(&f, 0)->prod = 3024 + 512;
                else
                        /* A message record where the padding was: it would run past the ring's end. */
                        rec_set(&f, 3024, 1500, CHANNEL_RECORD_MESSAGE);
                expect_poisoned(&f, f.joiner);
                fixture_close(&f);
        }
}

static void test_hostile_consumer(void **state) {
        /* After two records of 2048 bytes the consumer index may only be in [0, 4096], by 8s. */
        const uint64_t evil_cons[] = { 4104, 4, UINT64_MAX - 7 };
        uint8_t buf[MAX] = {};
        struct fixture f;

        (void) state;
        for (size_t i = 0; i <= sizeof(evil_cons) / sizeof(evil_cons[0]); i++) {
                fixture_open(&f, RING, 0, BELLS_NONE);
                assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 0), 0);
                assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 0), 0);
                assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 0), -EAGAIN);
                if (i < sizeof(evil_cons) / sizeof(evil_cons[0]))
                        fixture_ring(&f, 0)->cons = evil_cons[i];
                else {
                        /* Forward within what was produced is the consumer's right; back is not. */
                        fixture_ring(&f, 0)->cons = 2048;
                        assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 0), 0);
                        fixture_ring(&f, 0)->cons = 8;
                }
                assert_int_equal(brokerd_channel_send(f.creator, buf, MAX, 0), -EPROTO);
                assert_int_equal(brokerd_channel_send(f.creator, buf, 1, 0), -EPROTO);
                fixture_close(&f);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_size),
                cmocka_unit_test(test_create_params),
                cmocka_unit_test(test_join_header_checks),
                cmocka_unit_test(test_join_waits),
                cmocka_unit_test(test_send_recv),
                cmocka_unit_test(test_zero_copy),
                cmocka_unit_test(test_wrap_padding),
                cmocka_unit_test(test_full_and_timeouts),
                cmocka_unit_test(test_closed),
                cmocka_unit_test(test_peer_gone),
                cmocka_unit_test(test_abandon),
                cmocka_unit_test(test_modes),
                cmocka_unit_test(test_poll_fds),
                cmocka_unit_test(test_hostile_producer),
                cmocka_unit_test(test_hostile_padding),
                cmocka_unit_test(test_hostile_consumer),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
