/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libbrokerd-channel: creating, joining and freeing a channel; its settings. The header written
 * here and checked at join is described field by field in docs/channel.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#include "channel-internal.h"

/* Where each ring's control block starts, what the header promises. */
struct channel_layout {
        uint64_t ring_size;
        uint32_t max_message;
        uint64_t ring_offset[2];
};

static bool ring_size_valid(uint64_t ring) {
        return ring >= BROKERD_CHANNEL_MIN_RING && ring <= BROKERD_CHANNEL_MAX_RING && (ring & (ring - 1)) == 0;
}

static uint32_t largest_message(uint64_t ring) {
        return (uint32_t) (ring / 2 - CHANNEL_RECORD_HEADER);
}

CHANNEL_EXPORT size_t brokerd_channel_size(const struct brokerd_channel_params *p) {
        if (!p || !ring_size_valid(p->ring_size) || p->max_message > largest_message(p->ring_size))
                return 0;
        return CHANNEL_HEADER_SIZE + 2 * (CHANNEL_CONTROL_SIZE + p->ring_size);
}

/* All four fds valid and non-blocking (a blocking one could hang a call: a peer can fill the
 * eventfd counter it shares with us), or all -1 (busy-poll only). */
static int check_doorbells(const struct brokerd_channel_doorbells *db, bool *ret_have) {
        const int fds[] = { db ? db->ring_data : -1, db ? db->ring_space : -1,
                            db ? db->wait_data : -1, db ? db->wait_space : -1 };
        unsigned missing = 0;

        for (size_t i = 0; i < 4; i++)
                missing += fds[i] < 0;
        if (missing == 4) {
                *ret_have = false;
                return 0;
        }
        if (missing > 0)
                return -EINVAL;
        for (size_t i = 0; i < 4; i++) {
                int flags = fcntl(fds[i], F_GETFL);

                if (flags < 0)
                        return -EBADF;
                if (!(flags & O_NONBLOCK))
                        return -EINVAL;
        }
        *ret_have = true;
        return 0;
}

static struct brokerd_channel *channel_new(void *mem, unsigned side, const struct channel_layout *l,
                                           const struct brokerd_channel_doorbells *db, bool have_fds) {
        struct brokerd_channel *ch = calloc(1, sizeof(*ch));
        unsigned peer = 1 - side;

        if (!ch)
                return NULL;
        ch->side = side;
        ch->have_fds = have_fds;
        ch->busy_poll = !have_fds;
        ch->spin_usec = BROKERD_CHANNEL_DEFAULT_SPIN_USEC;
        ch->ring_size = l->ring_size;
        ch->mask = l->ring_size - 1;
        ch->max_message = l->max_message;
        ch->hdr = mem;
        ch->db = have_fds ? *db : (struct brokerd_channel_doorbells) { -1, -1, -1, -1 };
        /* Each side produces into the ring of its own number and consumes the other. */
        ch->tx.ctl = (struct channel_ring_control *) ((uint8_t *) mem + l->ring_offset[side]);
        ch->tx.data = (uint8_t *) ch->tx.ctl + CHANNEL_CONTROL_SIZE;
        ch->rx.ctl = (struct channel_ring_control *) ((uint8_t *) mem + l->ring_offset[peer]);
        ch->rx.data = (uint8_t *) ch->rx.ctl + CHANNEL_CONTROL_SIZE;
        return ch;
}

CHANNEL_EXPORT int brokerd_channel_create(void *mem, size_t len, const struct brokerd_channel_params *p,
                                          const struct brokerd_channel_doorbells *db, struct brokerd_channel **ret) {
        struct brokerd_channel_params q = { p ? p->ring_size : 0, p ? p->max_message : 0 };
        struct channel_header *hdr = mem;
        struct channel_layout l;
        struct brokerd_channel *ch;
        bool have_fds;
        int r;

        if (!mem || !ret || ((uintptr_t) mem & (CHANNEL_CACHE_LINE - 1)))
                return -EINVAL;
        if (q.ring_size == 0) {
                /* The largest power of two whose channel fits len. */
                q.ring_size = BROKERD_CHANNEL_MAX_RING;
                while (q.ring_size > BROKERD_CHANNEL_MIN_RING && brokerd_channel_size(&q) > len)
                        q.ring_size /= 2;
        }
        if (brokerd_channel_size(&q) == 0 || brokerd_channel_size(&q) > len)
                return -EINVAL;
        r = check_doorbells(db, &have_fds);
        if (r < 0)
                return r;

        l = (struct channel_layout) {
                .ring_size = q.ring_size,
                .max_message = q.max_message ?: largest_message(q.ring_size),
                .ring_offset = { CHANNEL_HEADER_SIZE, CHANNEL_HEADER_SIZE + CHANNEL_CONTROL_SIZE + q.ring_size },
        };
        ch = channel_new(mem, CHANNEL_CREATOR, &l, db, have_fds);
        if (!ch)
                return -ENOMEM;

        /* A joiner reads nothing before the magic, stored last with release. */
        atomic_store_explicit(&hdr->magic, 0, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        memset((uint8_t *) mem + sizeof(hdr->magic), 0, CHANNEL_HEADER_SIZE - sizeof(hdr->magic));
        hdr->version = BROKERD_CHANNEL_VERSION;
        hdr->header_size = CHANNEL_HEADER_SIZE;
        hdr->ring_size = l.ring_size;
        hdr->max_message = l.max_message;
        hdr->ring_offset[0] = l.ring_offset[0];
        hdr->ring_offset[1] = l.ring_offset[1];
        memset(ch->tx.ctl, 0, CHANNEL_CONTROL_SIZE);
        memset(ch->rx.ctl, 0, CHANNEL_CONTROL_SIZE);
        atomic_store_explicit(&hdr->magic, BROKERD_CHANNEL_MAGIC, memory_order_release);

        if (have_fds)
                channel_ring_fd(ch->db.ring_data);
        *ret = ch;
        return 0;
}

static bool ring_fits(uint64_t off, uint64_t header_size, uint64_t ring, size_t len) {
        return off % CHANNEL_CACHE_LINE == 0 && off >= header_size && off <= len &&
               CHANNEL_CONTROL_SIZE + ring <= len - off;
}

/* Reads every header field once and checks it: -EPROTO unless a channel of ours fits len. */
static int header_check(const struct channel_header *hdr, size_t len, struct channel_layout *ret) {
        uint64_t magic = atomic_load_explicit(&((struct channel_header *) hdr)->magic, memory_order_acquire);
        uint32_t version = CHANNEL_READ_ONCE(hdr->version);
        uint32_t header_size = CHANNEL_READ_ONCE(hdr->header_size);
        uint64_t ring = CHANNEL_READ_ONCE(hdr->ring_size);
        uint32_t max_message = CHANNEL_READ_ONCE(hdr->max_message);
        uint64_t off0 = CHANNEL_READ_ONCE(hdr->ring_offset[0]);
        uint64_t off1 = CHANNEL_READ_ONCE(hdr->ring_offset[1]);
        uint64_t span = CHANNEL_CONTROL_SIZE + ring;
        const struct channel_ring_control *ctl0, *ctl1;

        if (magic != BROKERD_CHANNEL_MAGIC || version != BROKERD_CHANNEL_VERSION)
                return -EPROTO;
        if (header_size < CHANNEL_HEADER_SIZE || header_size % CHANNEL_CACHE_LINE != 0 || header_size > len)
                return -EPROTO;
        if (!ring_size_valid(ring) || max_message == 0 || max_message > largest_message(ring))
                return -EPROTO;
        if (!ring_fits(off0, header_size, ring, len) || !ring_fits(off1, header_size, ring, len))
                return -EPROTO;
        if ((off0 < off1 ? off1 - off0 : off0 - off1) < span)
                return -EPROTO;

        /* The joiner's own fields start untouched: a channel is joined once. */
        ctl0 = (const struct channel_ring_control *) ((const uint8_t *) hdr + off0);
        ctl1 = (const struct channel_ring_control *) ((const uint8_t *) hdr + off1);
        if (atomic_load_explicit(&((struct channel_header *) hdr)->closed[CHANNEL_JOINER], memory_order_relaxed) ||
            atomic_load_explicit(&((struct channel_ring_control *) ctl0)->cons, memory_order_relaxed) ||
            atomic_load_explicit(&((struct channel_ring_control *) ctl1)->prod, memory_order_relaxed))
                return -EPROTO;

        *ret = (struct channel_layout) {
                .ring_size = ring,
                .max_message = max_message,
                .ring_offset = { off0, off1 },
        };
        return 0;
}

static int header_published(void *userdata) {
        struct channel_header *hdr = userdata;

        return atomic_load_explicit(&hdr->magic, memory_order_acquire) != 0;
}

CHANNEL_EXPORT int brokerd_channel_join(void *mem, size_t len, const struct brokerd_channel_doorbells *db,
                                        int timeout_ms, struct brokerd_channel **ret) {
        struct channel_layout l;
        struct brokerd_channel *ch;
        bool have_fds;
        int r;

        if (!mem || !ret || ((uintptr_t) mem & (CHANNEL_CACHE_LINE - 1)) || len < CHANNEL_HEADER_SIZE)
                return -EINVAL;
        r = check_doorbells(db, &have_fds);
        if (r < 0)
                return r;

        /* The creator rings our data doorbell once it has written the header. */
        r = channel_wait(&(struct channel_waiter) {
                .cond = header_published,
                .userdata = mem,
                .fd = have_fds ? db->wait_data : -1,
                .busy_poll = !have_fds,
                .spin_usec = BROKERD_CHANNEL_DEFAULT_SPIN_USEC,
        }, timeout_ms);
        if (r < 0)
                return r;
        r = header_check(mem, len, &l);
        if (r < 0)
                return r;
        ch = channel_new(mem, CHANNEL_JOINER, &l, db, have_fds);
        if (!ch)
                return -ENOMEM;
        *ret = ch;
        return 0;
}

CHANNEL_EXPORT void brokerd_channel_free(struct brokerd_channel *ch) {
        if (!ch)
                return;
        atomic_store_explicit(&ch->hdr->closed[ch->side], 1, memory_order_release);
        /* The peer may sleep for data or for space: it re-checks closed after arming (in any
         * mode of ours: a close is rare). After brokerd_channel_peer_gone() the fds are -1. */
        if (ch->db.ring_data >= 0) {
                atomic_thread_fence(memory_order_seq_cst);
                channel_wake(&ch->tx.ctl->cons_sleeping, ch->db.ring_data);
                channel_wake(&ch->rx.ctl->prod_waiting, ch->db.ring_space);
        }
        free(ch);
}

CHANNEL_EXPORT void brokerd_channel_abandon(struct brokerd_channel *ch) {
        free(ch);
}

CHANNEL_EXPORT int brokerd_channel_set_mode(struct brokerd_channel *ch, enum brokerd_channel_mode mode) {
        if (!ch)
                return -EINVAL;
        if (ch->status)
                return ch->status;
        switch (mode) {
        case BROKERD_CHANNEL_BLOCKING:
                if (!ch->have_fds)
                        return -EINVAL;
                ch->busy_poll = false;
                return 0;
        case BROKERD_CHANNEL_BUSY_POLL:
                ch->busy_poll = true;
                return 0;
        }
        return -EINVAL;
}

CHANNEL_EXPORT int brokerd_channel_set_spin(struct brokerd_channel *ch, uint32_t spin_usec) {
        if (!ch || spin_usec > 1000000)
                return -EINVAL;
        if (ch->status)
                return ch->status;
        ch->spin_usec = spin_usec;
        return 0;
}

CHANNEL_EXPORT uint32_t brokerd_channel_max_message(const struct brokerd_channel *ch) {
        return ch ? ch->max_message : 0;
}

CHANNEL_EXPORT void brokerd_channel_peer_gone(struct brokerd_channel *ch) {
        if (!ch)
                return;
        if (ch->status != -EPROTO)
                ch->status = -EPIPE;
        ch->db = (struct brokerd_channel_doorbells) { -1, -1, -1, -1 };
}

CHANNEL_EXPORT int brokerd_channel_poll_fds(const struct brokerd_channel *ch, int fds[2]) {
        int n = 0;

        if (!ch || !fds)
                return -EINVAL;
        if (ch->busy_poll || ch->db.wait_data < 0)
                return 0;
        fds[n++] = ch->db.wait_data;
        if (ch->db.wait_space != ch->db.wait_data)
                fds[n++] = ch->db.wait_space;
        return n;
}
