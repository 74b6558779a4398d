/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * What test-channel and test-channel-stress share: two ends of one channel over one piece of
 * memory, with the doorbells wired the way brokerd hands them (the creator's ring ends are the
 * joiner's wait ends and the other way round), four eventfds, one per direction, or none.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "brokerd-channel.h"
#include "channel-internal.h"

enum fixture_bells {
        BELLS_FOUR, /* two vectors: data and space apart */
        BELLS_ONE,  /* one vector: one eventfd per direction for both */
        BELLS_NONE, /* busy-poll only */
};

struct fixture {
        void *mem;
        size_t len;
        int efd[4];
        struct brokerd_channel_doorbells creator_db, joiner_db;
        struct brokerd_channel *creator, *joiner;
};

/* The memory is MAP_SHARED (it survives fork() shared) and created by a memfd as a region is. */
static inline void fixture_memory(struct fixture *f, size_t len) {
        int fd = memfd_create("test-channel", MFD_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t) len), 0);
        f->mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        assert_true(f->mem != MAP_FAILED);
        f->len = len;
        close(fd);
}

static inline void fixture_bells(struct fixture *f, enum fixture_bells bells) {
        for (int i = 0; i < 4; i++)
                f->efd[i] = -1;
        if (bells == BELLS_NONE) {
                f->creator_db = f->joiner_db = (struct brokerd_channel_doorbells) { -1, -1, -1, -1 };
                return;
        }
        for (int i = 0; i < (bells == BELLS_FOUR ? 4 : 2); i++) {
                f->efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
                assert_true(f->efd[i] >= 0);
        }
        if (bells == BELLS_FOUR) {
                /* efd[0]: data to the joiner, [1]: space to the joiner, [2]/[3] the same to the creator. */
                f->creator_db = (struct brokerd_channel_doorbells) { f->efd[0], f->efd[1], f->efd[2], f->efd[3] };
                f->joiner_db = (struct brokerd_channel_doorbells) { f->efd[2], f->efd[3], f->efd[0], f->efd[1] };
        } else {
                f->creator_db = (struct brokerd_channel_doorbells) { f->efd[0], f->efd[0], f->efd[1], f->efd[1] };
                f->joiner_db = (struct brokerd_channel_doorbells) { f->efd[1], f->efd[1], f->efd[0], f->efd[0] };
        }
}

/* Memory for a ring of ring_size (max_message 0: the largest), created and joined. */
static inline void fixture_open(struct fixture *f, size_t ring_size, uint32_t max_message, enum fixture_bells bells) {
        struct brokerd_channel_params p = { ring_size, max_message };

        memset(f, 0, sizeof(*f));
        fixture_memory(f, brokerd_channel_size(&p));
        fixture_bells(f, bells);
        assert_int_equal(brokerd_channel_create(f->mem, f->len, &p, &f->creator_db, &f->creator), 0);
        assert_int_equal(brokerd_channel_join(f->mem, f->len, &f->joiner_db, 0, &f->joiner), 0);
}

static inline void fixture_close(struct fixture *f) {
        brokerd_channel_free(f->creator);
        brokerd_channel_free(f->joiner);
        for (int i = 0; i < 4; i++)
                if (f->efd[i] >= 0)
                        close(f->efd[i]);
        if (f->mem)
                munmap(f->mem, f->len);
        memset(f, 0, sizeof(*f));
}

/* The shared layout, for the tests that play a hostile peer. */
static inline struct channel_header *fixture_header(const struct fixture *f) {
        return f->mem;
}

static inline struct channel_ring_control *fixture_ring(const struct fixture *f, unsigned ring) {
        return (struct channel_ring_control *) ((uint8_t *) f->mem + fixture_header(f)->ring_offset[ring]);
}

static inline uint8_t *fixture_data(const struct fixture *f, unsigned ring) {
        return (uint8_t *) fixture_ring(f, ring) + CHANNEL_CONTROL_SIZE;
}

/* Rings an eventfd as a peer would. */
static inline void fixture_ring_fd(int fd) {
        uint64_t one = 1;

        assert_true(write(fd, &one, sizeof(one)) == sizeof(one) || errno == EAGAIN);
}

/* The byte i of message number seq: what the stress tests send and check. */
static inline uint8_t fixture_byte(uint64_t seq, size_t i) {
        return (uint8_t) (seq * 131 + i * 7 + (i >> 8));
}

static inline uint64_t fixture_rand(uint64_t *state) {
        /* xorshift64: reproducible sizes without libc's global state. */
        uint64_t x = *state;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        return *state = x;
}
