/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data path: producing into our ring (reserve, commit, send) and consuming from the peer's
 * (peek, consume, recv). Indices are free-running byte counters; a side re-reads the other's
 * index only when its cached copy says full or empty, and checks it before use. The hot path is
 * a memcpy, one release store and (in blocking mode) a fence and a load of the peer's flag.
 */
#include <errno.h>
#include <string.h>

#include "channel-internal.h"

/* ---- producing ---- */

/* Re-reads the consumer's index: it may only have moved forward, and not past what we produced. */
static int tx_refresh(struct brokerd_channel *ch) {
        struct channel_tx *tx = &ch->tx;
        uint64_t c = atomic_load_explicit(&tx->ctl->cons, memory_order_acquire);

        if (c - tx->cached_cons > tx->pos - tx->cached_cons || (c & (CHANNEL_RECORD_ALIGN - 1)))
                return channel_poison(ch);
        tx->cached_cons = c;
        return 0;
}

struct tx_want {
        struct brokerd_channel *ch;
        uint64_t total; /* bytes the reservation takes, its padding included */
};

/* 1 when total bytes are free, 0 when not yet, -EPIPE when the peer closed. */
static int tx_space(void *userdata) {
        struct tx_want *w = userdata;
        struct brokerd_channel *ch = w->ch;
        struct channel_tx *tx = &ch->tx;
        int r;

        if (CHANNEL_UNLIKELY(atomic_load_explicit(&ch->hdr->closed[1 - ch->side], memory_order_relaxed)))
                return -EPIPE;
        if (CHANNEL_LIKELY(tx->pos + w->total - tx->cached_cons <= ch->ring_size))
                return 1;
        r = tx_refresh(ch);
        if (r < 0)
                return r;
        return tx->pos + w->total - tx->cached_cons <= ch->ring_size;
}

static int tx_reserve(struct brokerd_channel *ch, size_t len, void **ret_buf, int timeout_ms) {
        struct channel_tx *tx = &ch->tx;
        uint64_t need, off, tail, rec;
        struct tx_want want = { .ch = ch };
        int r;

        if (CHANNEL_UNLIKELY(ch->status))
                return ch->status;
        if (tx->reserved)
                return -EBUSY;
        if (len == 0)
                return -EINVAL;
        if (len > ch->max_message)
                return -EMSGSIZE;

        /* A record never wraps: if it does not fit before the end, padding fills the tail. */
        need = channel_record_size(len);
        off = tx->pos & ch->mask;
        tail = ch->ring_size - off;
        want.total = need <= tail ? need : tail + need;
        r = tx_space(&want);
        if (CHANNEL_UNLIKELY(r <= 0)) {
                if (r == 0)
                        r = channel_wait(&(struct channel_waiter) {
                                .cond = tx_space,
                                .userdata = &want,
                                .flag = &tx->ctl->prod_waiting,
                                .fd = ch->db.wait_space,
                                .busy_poll = ch->busy_poll,
                                .spin_usec = ch->spin_usec,
                        }, timeout_ms);
                if (r < 0)
                        return r;
        }

        rec = tx->pos;
        if (want.total != need) {
                uint32_t *pad = (uint32_t *) (tx->data + off);

                pad[0] = (uint32_t) (tail - CHANNEL_RECORD_HEADER);
                pad[1] = CHANNEL_RECORD_PADDING;
                rec += tail;
        }
        tx->reserved_at = rec;
        tx->reserved = (uint32_t) len;
        *ret_buf = tx->data + (rec & ch->mask) + CHANNEL_RECORD_HEADER;
        return 0;
}

static int tx_commit(struct brokerd_channel *ch, size_t len) {
        struct channel_tx *tx = &ch->tx;
        uint32_t *rec;

        if (CHANNEL_UNLIKELY(ch->status))
                return ch->status;
        if (!tx->reserved || len == 0 || len > tx->reserved)
                return -EINVAL;

        rec = (uint32_t *) (tx->data + (tx->reserved_at & ch->mask));
        rec[0] = (uint32_t) len;
        rec[1] = CHANNEL_RECORD_MESSAGE;
        tx->pos = tx->reserved_at + channel_record_size(len);
        tx->reserved = 0;
        atomic_store_explicit(&tx->ctl->prod, tx->pos, memory_order_release);
        if (!ch->busy_poll) {
                atomic_thread_fence(memory_order_seq_cst);
                channel_wake(&tx->ctl->cons_sleeping, ch->db.ring_data);
        }
        return 0;
}

CHANNEL_EXPORT int brokerd_channel_reserve(struct brokerd_channel *ch, size_t len, void **ret_buf, int timeout_ms) {
        if (!ch || !ret_buf)
                return -EINVAL;
        return tx_reserve(ch, len, ret_buf, timeout_ms);
}

CHANNEL_EXPORT int brokerd_channel_commit(struct brokerd_channel *ch, size_t len) {
        if (!ch)
                return -EINVAL;
        return tx_commit(ch, len);
}

CHANNEL_EXPORT int brokerd_channel_send(struct brokerd_channel *ch, const void *buf, size_t len, int timeout_ms) {
        void *dst;
        int r;

        if (!ch || (!buf && len > 0))
                return -EINVAL;
        r = tx_reserve(ch, len, &dst, timeout_ms);
        if (r < 0)
                return r;
        memcpy(dst, buf, len);
        return tx_commit(ch, len);
}

/* ---- consuming ---- */

/* Re-reads the producer's index: forward only, at most a ring ahead of what we consumed. */
static int rx_refresh(struct brokerd_channel *ch) {
        struct channel_rx *rx = &ch->rx;
        uint64_t p = atomic_load_explicit(&rx->ctl->prod, memory_order_acquire);

        if (p - rx->cached_prod > ch->ring_size - (rx->cached_prod - rx->pos) || (p & (CHANNEL_RECORD_ALIGN - 1)))
                return channel_poison(ch);
        rx->cached_prod = p;
        return 0;
}

/* 1 with the oldest message in rx->peek_buf/peek_len, 0 when the ring is empty, or -EPROTO. */
static int rx_next(struct brokerd_channel *ch) {
        struct channel_rx *rx = &ch->rx;

        /* At most two records: padding is valid only before the ring's end, never at offset 0. */
        for (;;) {
                uint64_t pos = rx->pos, avail, off, size;
                const uint32_t *rec;
                uint32_t len, kind;
                int r;

                if (rx->cached_prod == pos) {
                        r = rx_refresh(ch);
                        if (r < 0)
                                return r;
                        if (rx->cached_prod == pos)
                                return 0;
                }
                avail = rx->cached_prod - pos;
                off = pos & ch->mask;
                rec = (const uint32_t *) (rx->data + off);
                len = CHANNEL_READ_ONCE(rec[0]);
                kind = CHANNEL_READ_ONCE(rec[1]);

                if (kind == CHANNEL_RECORD_PADDING) {
                        if (off == 0 || len != ch->ring_size - off - CHANNEL_RECORD_HEADER ||
                            avail < ch->ring_size - off)
                                return channel_poison(ch);
                        rx->pos = pos + ch->ring_size - off;
                        continue;
                }
                size = channel_record_size(len);
                if (kind != CHANNEL_RECORD_MESSAGE || len == 0 || len > ch->max_message || size > avail ||
                    off + size > ch->ring_size)
                        return channel_poison(ch);
                rx->peek_buf = rx->data + off + CHANNEL_RECORD_HEADER;
                rx->peek_len = len;
                rx->peeked_next = pos + size;
                rx->peeked = true;
                return 1;
        }
}

/* The wait condition for data: a message, or -EPIPE once the peer closed and all is read. */
static int rx_ready(void *userdata) {
        struct brokerd_channel *ch = userdata;
        int r;

        r = rx_next(ch);
        if (r != 0)
                return r;
        if (!atomic_load_explicit(&ch->hdr->closed[1 - ch->side], memory_order_acquire))
                return 0;
        /* Everything it published before closing is visible now. */
        r = rx_next(ch);
        return r != 0 ? r : -EPIPE;
}

static int rx_peek(struct brokerd_channel *ch, int timeout_ms) {
        struct channel_rx *rx = &ch->rx;
        int r;

        if (CHANNEL_UNLIKELY(ch->status))
                return ch->status;
        if (rx->peeked)
                return 0;
        r = rx_next(ch);
        if (CHANNEL_LIKELY(r > 0))
                return 0;
        if (r < 0)
                return r;
        return channel_wait(&(struct channel_waiter) {
                .cond = rx_ready,
                .userdata = ch,
                .flag = &rx->ctl->cons_sleeping,
                .fd = ch->db.wait_data,
                .busy_poll = ch->busy_poll,
                .spin_usec = ch->spin_usec,
        }, timeout_ms);
}

static int rx_consume(struct brokerd_channel *ch) {
        struct channel_rx *rx = &ch->rx;

        if (CHANNEL_UNLIKELY(ch->status))
                return ch->status;
        if (!rx->peeked)
                return -EINVAL;
        rx->pos = rx->peeked_next;
        rx->peeked = false;
        atomic_store_explicit(&rx->ctl->cons, rx->pos, memory_order_release);
        if (!ch->busy_poll) {
                atomic_thread_fence(memory_order_seq_cst);
                channel_wake(&rx->ctl->prod_waiting, ch->db.ring_space);
        }
        return 0;
}

CHANNEL_EXPORT int brokerd_channel_peek(struct brokerd_channel *ch, const void **ret_buf, size_t *ret_len,
                                        int timeout_ms) {
        int r;

        if (!ch || !ret_buf || !ret_len)
                return -EINVAL;
        r = rx_peek(ch, timeout_ms);
        if (r < 0)
                return r;
        *ret_buf = ch->rx.peek_buf;
        *ret_len = ch->rx.peek_len;
        return 0;
}

CHANNEL_EXPORT int brokerd_channel_consume(struct brokerd_channel *ch) {
        if (!ch)
                return -EINVAL;
        return rx_consume(ch);
}

CHANNEL_EXPORT ssize_t brokerd_channel_recv(struct brokerd_channel *ch, void *buf, size_t cap, int timeout_ms) {
        size_t len;
        int r;

        if (!ch || (!buf && cap > 0))
                return -EINVAL;
        r = rx_peek(ch, timeout_ms);
        if (r < 0)
                return r;
        len = ch->rx.peek_len;
        if (len > cap)
                return -EMSGSIZE;
        memcpy(buf, ch->rx.peek_buf, len);
        r = rx_consume(ch);
        return r < 0 ? r : (ssize_t) len;
}
