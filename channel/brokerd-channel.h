/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * libbrokerd-channel: message channels laid over a region brokerd granted to two parties.
 *
 * The creator (usually the region's owner) writes a self-describing header at the start of the
 * memory it is given, followed by one single-producer single-consumer ring per direction; the
 * joiner (the peer) checks that header and takes the other end. Each side produces into one ring
 * and consumes from the other. Messages are variable-size (1 .. max_message bytes), either copied
 * (send/recv) or zero-copy (reserve, fill in place, commit; peek, read in place, consume).
 *
 * Waking: the doorbells brokerd hands with the region (eventfds, one per ordered pair of parties
 * and vector, docs/protocol.md "Doorbells"). A side rings the peer only when the peer said it is
 * about to sleep (an io_uring-style need-wakeup flag in shared memory), so a busy peer costs no
 * system call. A blocking call spins briefly (spin_usec) before it sleeps on its doorbells; in
 * busy-poll mode it never sleeps. The channel borrows the doorbell fds: the caller keeps them open
 * while the channel lives and closes them (after brokerd_channel_peer_gone()) when the broker
 * says the peer left.
 *
 * The peer is untrusted. Every index, length and header field read from shared memory is copied
 * once and checked before use: a hostile or corrupted peer yields -EPROTO (and the channel stays
 * broken: every later call returns -EPROTO), never an out-of-bounds access; a peer that stops
 * answering yields -ETIMEDOUT when a timeout is given. Bytes of a message read in place may still
 * change under the reader (the peer can write the memory): copy them before trusting them.
 *
 * Timeouts are in milliseconds: < 0 waits forever, 0 never waits (-EAGAIN when it would).
 * Every function returns 0 (or the documented non-negative value) or a negative errno; output
 * parameters are untouched on failure. A channel is used by one thread per side.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct brokerd_channel;

/* The header's first 8 bytes, "KRDKCHAN" (this value stored little-endian); its version. */
#define BROKERD_CHANNEL_MAGIC UINT64_C(0x4e4148434b44524b)
#define BROKERD_CHANNEL_VERSION 1
/* Bounds on one ring's capacity (a power of two, in bytes). */
#define BROKERD_CHANNEL_MIN_RING (4u * 1024)
#define BROKERD_CHANNEL_MAX_RING (1u << 30)
/* The default time a blocking call spins before it sleeps. */
#define BROKERD_CHANNEL_DEFAULT_SPIN_USEC 50

struct brokerd_channel_params {
        /* Bytes per ring (each direction), a power of two in [MIN_RING, MAX_RING];
         * 0: the largest that fits the memory given. */
        size_t ring_size;
        /* Largest message, at most ring_size / 2 less the record header; 0: that maximum. */
        uint32_t max_message;
};

/*
 * The four ends one side needs (brokerd hands them at share/attach and with region.doorbells):
 * ring_data/ring_space are the side's send ends to the peer for vector 0 ("data ready") and
 * vector 1 ("space free"); wait_data/wait_space its receive ends from the peer for the same
 * vectors. A region with one vector passes the same fd for data and space: the channel then
 * checks both conditions on each wake. The fds must be non-blocking eventfds (EFD_NONBLOCK; a
 * blocking one is refused with -EINVAL: a peer could fill the counter and hang a ring). -1
 * everywhere (or db NULL): busy-poll only, and brokerd_channel_set_mode(BLOCKING) is -EINVAL.
 */
struct brokerd_channel_doorbells {
        int ring_data;
        int ring_space;
        int wait_data;
        int wait_space;
};

enum brokerd_channel_mode {
        BROKERD_CHANNEL_BLOCKING,  /* spin spin_usec, then sleep on the doorbells (the default) */
        BROKERD_CHANNEL_BUSY_POLL, /* never sleep, never ring: both sides must busy-poll */
};

/* Bytes of memory a channel with these params needs (header and both rings); 0 if invalid. */
size_t brokerd_channel_size(const struct brokerd_channel_params *p);

/*
 * Writes the header and empty rings into mem[0 .. len) (which must be 64-byte aligned, shared
 * with the peer, writable) and rings the peer's data doorbell so a waiting joiner wakes.
 * -EINVAL for params that do not fit len or are not valid.
 */
int brokerd_channel_create(void *mem, size_t len, const struct brokerd_channel_params *p,
                           const struct brokerd_channel_doorbells *db, struct brokerd_channel **ret);
/*
 * Checks the header the creator wrote in mem[0 .. len) and takes the other end. Waits up to
 * timeout_ms for the creator (-ETIMEDOUT, or -EAGAIN with 0, while no header is there);
 * -EPROTO for a header that is not a valid channel of this version within len, or one that was
 * joined before (a channel is joined once).
 */
int brokerd_channel_join(void *mem, size_t len, const struct brokerd_channel_doorbells *db, int timeout_ms,
                         struct brokerd_channel **ret);
/* Frees the channel (not the memory, not the fds). Marks the side closed for the peer. NULL is fine. */

void brokerd_channel_free(struct brokerd_channel *ch);
/*
 * Frees the channel without touching the memory or the fds: for when this side lost the memory
 * (the broker revoked its hold: a forced revoke may truncate the region, and touching it would
 * raise SIGBUS) or unmapped it already. The peer sees no close mark; the broker's region.left
 * tells it. NULL is fine.
 */
void brokerd_channel_abandon(struct brokerd_channel *ch);

int brokerd_channel_set_mode(struct brokerd_channel *ch, enum brokerd_channel_mode mode);
/* How long a blocking call spins before sleeping (0: sleep at once); at most 1 s. */
int brokerd_channel_set_spin(struct brokerd_channel *ch, uint32_t spin_usec);
/* The negotiated largest message. */
uint32_t brokerd_channel_max_message(const struct brokerd_channel *ch);

/*
 * The broker said the peer left (released, revoked, gone): stop listening to its doorbells and
 * fail every later call with -EPIPE. The channel never touches the doorbell fds again.
 */
void brokerd_channel_peer_gone(struct brokerd_channel *ch);

/* Copy-in: sends len (1 .. max_message) bytes. -EMSGSIZE beyond; waits for space. */
int brokerd_channel_send(struct brokerd_channel *ch, const void *buf, size_t len, int timeout_ms);
/*
 * Copy-out: receives the oldest message into buf; returns its length. -EMSGSIZE (and the message
 * stays) when cap is too small. -EPIPE once the peer closed and the ring is empty.
 */
ssize_t brokerd_channel_recv(struct brokerd_channel *ch, void *buf, size_t cap, int timeout_ms);

/*
 * Zero-copy send: *ret_buf points at len contiguous bytes in the ring to fill in place; nothing is
 * visible to the peer until brokerd_channel_commit(). One reservation at a time.
 */
int brokerd_channel_reserve(struct brokerd_channel *ch, size_t len, void **ret_buf, int timeout_ms);
/* Publishes the reservation with its final length (1 .. the reserved length) and rings if needed. */
int brokerd_channel_commit(struct brokerd_channel *ch, size_t len);

/*
 * Zero-copy receive: the oldest message in place (valid until brokerd_channel_consume()).
 * One message at a time.
 */
int brokerd_channel_peek(struct brokerd_channel *ch, const void **ret_buf, size_t *ret_len, int timeout_ms);
/* Frees the peeked message's space and rings the producer if it waits for space. */
int brokerd_channel_consume(struct brokerd_channel *ch);

/*
 * For an event loop: the fds that become readable when the channel may have work (its wait ends;
 * one fd when data and space share one). Returns how many were stored (0..2). When one is readable,
 * call the channel with timeout 0: a call that returns -EAGAIN has drained the fd and armed
 * need-wakeup, so the next message or freed space rings it again.
 */
int brokerd_channel_poll_fds(const struct brokerd_channel *ch, int fds[2]);

#ifdef __cplusplus
}
#endif
