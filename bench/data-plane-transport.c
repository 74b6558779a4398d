/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One message over each transport. What each side does per message, the same for every transport:
 * the sender writes every byte of the message (memset to the message's fill byte), into its own
 * buffer that send() or brokerd_channel_send() then copies, or in place in the ring (reserve,
 * commit); the receiver reads every byte and checks it against the fill byte, in its own buffer
 * after recv() or brokerd_channel_recv(), or in place in the ring (peek, consume).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include "bench-common.h"
#include "data-plane.h"

/* 64 bytes as one vector (GCC splits it into what the target has). */
typedef uint64_t dp_u64x8 __attribute__((vector_size(64)));

/*
 * Reads every byte once: nonzero unless every one is fill. Built for the widest vectors the CPU
 * has (target_clones), two accumulators wide, so that the check reads about as fast as memcpy
 * and does not hide the transports' differences behind its own cost.
 */
__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
static int dp_check(const uint8_t *p, size_t len, uint8_t fill) {
        const uint64_t pattern = UINT64_C(0x0101010101010101) * fill;
        const dp_u64x8 pat = { pattern, pattern, pattern, pattern, pattern, pattern, pattern, pattern };
        dp_u64x8 d0 = {}, d1 = {};
        uint64_t diff = 0;
        size_t i = 0;

        for (; i + 2 * sizeof(dp_u64x8) <= len; i += 2 * sizeof(dp_u64x8)) {
                dp_u64x8 w0, w1;

                memcpy(&w0, p + i, sizeof(w0));
                memcpy(&w1, p + i + sizeof(w0), sizeof(w1));
                d0 |= w0 ^ pat;
                d1 |= w1 ^ pat;
        }
        d0 |= d1;
        for (unsigned k = 0; k < 8; k++)
                diff |= d0[k];
        for (; i < len; i++)
                diff |= (uint8_t) (p[i] ^ fill);
        return diff ? -EBADMSG : 0;
}

static int socket_recv(int fd, uint8_t *p, size_t len) {
        while (len > 0) {
                ssize_t n = recv(fd, p, len, MSG_WAITALL);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -EPIPE;
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

int dp_send(struct dp_end *e, size_t len, uint8_t fill) {
        void *p;
        int r;

        if (e->t->kind == DP_CHANNEL && e->t->zero_copy) {
                r = brokerd_channel_reserve(e->ch, len, &p, -1);
                if (r < 0)
                        return r;
                memset(p, fill, len);
                return brokerd_channel_commit(e->ch, len);
        }
        memset(e->buf, fill, len);
        if (e->t->kind == DP_CHANNEL)
                return brokerd_channel_send(e->ch, e->buf, len, -1);
        return bench_send_all(e->fd, e->buf, len);
}

int dp_recv(struct dp_end *e, size_t len, uint8_t fill) {
        const void *p;
        size_t n;
        ssize_t got;
        int r;

        if (e->t->kind == DP_CHANNEL && e->t->zero_copy) {
                r = brokerd_channel_peek(e->ch, &p, &n, -1);
                if (r < 0)
                        return r;
                r = n == len ? dp_check(p, n, fill) : -EBADMSG;
                if (r < 0)
                        return r;
                return brokerd_channel_consume(e->ch);
        }
        if (e->t->kind == DP_CHANNEL) {
                got = brokerd_channel_recv(e->ch, e->buf, e->cap, -1);
                if (got < 0)
                        return (int) got;
                if ((size_t) got != len)
                        return -EBADMSG;
        } else {
                r = socket_recv(e->fd, e->buf, len);
                if (r < 0)
                        return r;
        }
        return dp_check(e->buf, len, fill);
}
