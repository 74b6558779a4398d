/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * libbrokerd-channel's shared-memory layout and private state (docs/channel.md is the
 * language-neutral description; the static asserts below keep the two in step).
 *
 * Layout: a 128-byte header at offset 0, then one ring per direction (ring 0: creator -> joiner,
 * ring 1: joiner -> creator), each a 128-byte control block (producer line, consumer line) and
 * ring_size bytes of records. Only the owner of a field ever writes it; everything read from the
 * peer is loaded once into a local and checked before use.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brokerd-channel.h"

#define CHANNEL_EXPORT __attribute__((visibility("default")))
#define CHANNEL_LIKELY(x) __builtin_expect(!!(x), 1)
#define CHANNEL_UNLIKELY(x) __builtin_expect(!!(x), 0)

#define CHANNEL_CACHE_LINE 64
#define CHANNEL_HEADER_SIZE 128
#define CHANNEL_CONTROL_SIZE 128
#define CHANNEL_RECORD_HEADER 8
#define CHANNEL_RECORD_ALIGN 8

/* Record kinds: a message, or padding that fills the ring's tail so a message never wraps. */
enum {
        CHANNEL_RECORD_MESSAGE = 1,
        CHANNEL_RECORD_PADDING = 2,
};

/* Sides: the creator produces into ring 0, the joiner into ring 1. */
enum {
        CHANNEL_CREATOR = 0,
        CHANNEL_JOINER = 1,
};

struct channel_header {
        _Atomic uint64_t magic;      /* BROKERD_CHANNEL_MAGIC, stored last (release) */
        uint32_t version;            /* BROKERD_CHANNEL_VERSION */
        uint32_t header_size;        /* >= 128, a multiple of 64 */
        uint64_t ring_size;          /* data bytes per ring, a power of two */
        uint32_t max_message;        /* 1 .. ring_size / 2 - 8 */
        uint32_t reserved0;          /* 0 */
        uint64_t ring_offset[2];     /* control block of ring 0 and ring 1, 64-aligned */
        uint8_t reserved1[16];
        _Atomic uint32_t closed[2];  /* [side]: that side freed its end (written by it only) */
        uint8_t reserved2[56];
};

struct channel_ring_control {
        /* Producer's line: written by the producer only. */
        _Atomic uint64_t prod;          /* bytes ever published, multiple of 8 */
        _Atomic uint32_t prod_waiting;  /* producer sleeps for space: ring its space doorbell */
        uint8_t pad0[52];
        /* Consumer's line: written by the consumer only (the flags are cleared by the waker). */
        _Atomic uint64_t cons;          /* bytes ever freed, multiple of 8 */
        _Atomic uint32_t cons_sleeping; /* consumer sleeps for data: ring its data doorbell */
        uint8_t pad1[52];
};

_Static_assert(sizeof(struct channel_header) == CHANNEL_HEADER_SIZE, "header is two cache lines");
_Static_assert(offsetof(struct channel_header, version) == 8, "layout");
_Static_assert(offsetof(struct channel_header, ring_size) == 16, "layout");
_Static_assert(offsetof(struct channel_header, max_message) == 24, "layout");
_Static_assert(offsetof(struct channel_header, ring_offset) == 32, "layout");
_Static_assert(offsetof(struct channel_header, closed) == 64, "layout");
_Static_assert(sizeof(struct channel_ring_control) == CHANNEL_CONTROL_SIZE, "control is two cache lines");
_Static_assert(offsetof(struct channel_ring_control, prod_waiting) == 8, "layout");
_Static_assert(offsetof(struct channel_ring_control, cons) == 64, "layout");
_Static_assert(offsetof(struct channel_ring_control, cons_sleeping) == 72, "layout");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the layout is little-endian");

/* The producing end of one ring. pos is ours alone: it is never read back from shared memory. */
struct channel_tx {
        struct channel_ring_control *ctl;
        uint8_t *data;
        uint64_t pos;         /* our producer index */
        uint64_t cached_cons; /* the consumer index last read (checked) */
        uint64_t reserved_at; /* record start of the open reservation */
        uint32_t reserved;    /* length reserved, 0: no reservation */
};

/* The consuming end of the other ring. */
struct channel_rx {
        struct channel_ring_control *ctl;
        uint8_t *data;
        uint64_t pos;         /* our consumer index (published at consume) */
        uint64_t cached_prod; /* the producer index last read (checked) */
        uint64_t peeked_next; /* where the peeked message ends */
        const uint8_t *peek_buf;
        uint32_t peek_len;
        bool peeked;
};

struct brokerd_channel {
        int status;           /* 0, or -EPROTO (poisoned) / -EPIPE (peer gone): every call's answer */
        bool busy_poll;
        bool have_fds;
        unsigned side;
        uint32_t max_message;
        uint32_t spin_usec;
        uint64_t ring_size;
        uint64_t mask;
        struct channel_tx tx;
        struct channel_rx rx;
        struct channel_header *hdr;
        struct brokerd_channel_doorbells db;
};

/*
 * One wait: for cond() to become non-zero (> 0 ready, < 0 error), spinning spin_usec, then
 * sleeping on fd after arming *flag (Dekker: arm, seq_cst fence, re-check). flag may be NULL
 * (nothing to arm: the peer rings anyway), fd -1 (spin only).
 */
struct channel_waiter {
        int (*cond)(void *userdata);
        void *userdata;
        _Atomic uint32_t *flag;
        int fd;
        bool busy_poll;
        uint32_t spin_usec;
};

/* 0 once cond() > 0; cond()'s error; -EAGAIN (timeout 0) or -ETIMEDOUT. */
int channel_wait(const struct channel_waiter *w, int timeout_ms);
/* Writes 1 to an eventfd (a full counter, EAGAIN, is fine: it is readable anyway). */
void channel_ring_fd(int fd);

/* Marks the channel broken for good; returns -EPROTO. */
static inline int channel_poison(struct brokerd_channel *ch) {
        ch->status = -EPROTO;
        return -EPROTO;
}

/* Wakes the peer if it armed *flag (called after a seq_cst fence that follows our publish). */
static inline void channel_wake(_Atomic uint32_t *flag, int fd) {
        if (atomic_load_explicit(flag, memory_order_relaxed) &&
            atomic_exchange_explicit(flag, 0, memory_order_relaxed))
                channel_ring_fd(fd);
}

/* One load of a field the peer may write (no re-fetch after the check). */
#define CHANNEL_READ_ONCE(x) (*(const volatile __typeof__(x) *) &(x))

static inline uint64_t channel_record_size(uint64_t len) {
        return CHANNEL_RECORD_HEADER + ((len + CHANNEL_RECORD_ALIGN - 1) & ~(uint64_t) (CHANNEL_RECORD_ALIGN - 1));
}
