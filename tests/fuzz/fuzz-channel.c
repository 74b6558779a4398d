/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz-channel: libbrokerd-channel against a hostile peer's memory. The input is the shared
 * memory's first image and a script of writes into it (what the peer does) interleaved with
 * calls of one side (what we do), all with timeout 0 so that nothing waits. We either join a
 * channel the hostile side created (its header, its producer index and records in ring 0, its
 * consumer index of ring 1) or create one and let the hostile side play the joiner. Besides the
 * sanitizers (the memory is allocated to exactly its length), it checks the library's contract
 * (brokerd-channel.h): answers are among the documented ones, -EPROTO is for good, peer_gone
 * means -EPIPE for good, output parameters are untouched on failure, and a message read in place
 * lies inside the memory and within max_message.
 *
 * Input: u8 flags, u16 len (the memory's length, at most MEM_MAX), u16 n, n bytes of image
 * (copied at offset 0; the rest is zero), then operations (one byte each, arguments after it,
 * little-endian), see enum op. flags: bit 0 create (else join), bit 1 blocking mode with a real
 * eventfd for all four doorbells (else no fds: busy-poll), bit 2 an 8 KiB ring when creating,
 * bits 3..7 max_message / 64 when creating (0: the largest).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "channel/brokerd-channel.h"
#include "fuzz.h"
#include "util/macro.h"

#define MEM_MAX 20000
#define SENTINEL ((void *) 0x5a5a)

enum op {
        OP_WRITE,     /* u16 offset, u8 n, n bytes: the peer writes memory */
        OP_WRITE64,   /* u16 offset (rounded down to 8), u64: the peer stores an index or a record header */
        OP_RECV,      /* u16 cap */
        OP_PEEK,
        OP_CONSUME,
        OP_SEND,      /* u16 len */
        OP_RESERVE,   /* u16 len: reserve and fill */
        OP_COMMIT,    /* u16 len */
        OP_PEER_GONE,
        OP_MODE,      /* u8: blocking (odd) or busy-poll */
        OP_RING,      /* the peer rings spuriously */
        _OP_MAX,
};

static int bell = -1;
static bool trace;
static uint8_t scratch[65536];

static void cleanup(void) {
        if (bell >= 0)
                close(bell);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        (void) argc, (void) argv;
        trace = getenv("BROKERD_FUZZ_TRACE");
        bell = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        fuzz_assert(bell >= 0);
        atexit(cleanup);
        return 0;
}

struct input {
        const uint8_t *p;
        size_t left;
};

static uint64_t take(struct input *in, size_t n) {
        uint64_t v = 0;

        for (size_t i = 0; i < n && in->left > 0; i++, in->p++, in->left--)
                v |= (uint64_t) in->p[0] << (8 * i);
        return v;
}

struct state {
        struct brokerd_channel *ch;
        uint8_t *mem;
        size_t len;
        uint32_t max_message;
        int sticky; /* -EPROTO or -EPIPE once the channel said so for good */
        bool reserved;
        size_t reserved_len;
};

/* An answer r of a call that may also answer the errors in allowed (0-terminated). */
static void check_answer(struct state *s, long r, const int *allowed) {
        if (trace)
                fprintf(stderr, "  -> %ld%s\n", r, r < 0 ? " (error)" : "");
        if (s->sticky) {
                fuzz_assert(r == s->sticky);
                return;
        }
        if (r == -EPROTO) {
                s->sticky = -EPROTO;
                return;
        }
        if (r >= 0)
                return;
        for (; *allowed; allowed++)
                if (r == *allowed)
                        return;
        fprintf(stderr, "unexpected answer %ld\n", r);
        fuzz_assert(!"answer among the documented ones");
}

static void check_in_place(const struct state *s, const void *buf, size_t len) {
        const uint8_t *b = buf;
        uint8_t sum = 0;

        fuzz_assert(len >= 1 && len <= s->max_message);
        fuzz_assert(b >= s->mem && b + len <= s->mem + s->len);
        for (size_t i = 0; i < len; i++)
                sum += b[i];
        (void) sum;
}

static void run_op(struct state *s, struct input *in) {
        static const int recv_errors[] = { -EAGAIN, -EPIPE, -EMSGSIZE, 0 };
        static const int send_errors[] = { -EAGAIN, -EPIPE, -EMSGSIZE, -EINVAL, -EBUSY, 0 };
        static const int consume_errors[] = { -EINVAL, 0 };
        static const char *const names[_OP_MAX] = {
                "write", "write64", "recv", "peek", "consume", "send", "reserve", "commit", "peer_gone", "mode", "ring",
        };
        enum op op = take(in, 1) % _OP_MAX;
        const void *buf = SENTINEL;
        size_t len = 12345, n, off;
        void *wbuf = SENTINEL;
        long r;

        _Static_assert(ELEMENTSOF(names) == _OP_MAX, "every operation named");
        if (trace)
                fprintf(stderr, "%s\n", names[op]);
        switch (op) {
        case OP_WRITE:
                off = take(in, 2) % s->len;
                n = take(in, 1);
                n = n < in->left ? n : in->left;
                n = n < s->len - off ? n : s->len - off;
                memcpy(s->mem + off, in->p, n);
                in->p += n, in->left -= n;
                return;
        case OP_WRITE64: {
                uint64_t v;

                off = (take(in, 2) % s->len) & ~(size_t) 7;
                v = take(in, 8);
                if (off + 8 <= s->len)
                        memcpy(s->mem + off, &v, 8);
                return;
        }
        case OP_RECV:
                n = take(in, 2);
                r = brokerd_channel_recv(s->ch, scratch, n, 0);
                check_answer(s, r, recv_errors);
                if (r >= 0)
                        fuzz_assert((size_t) r <= n && r >= 1 && r <= s->max_message);
                return;
        case OP_PEEK:
                r = brokerd_channel_peek(s->ch, &buf, &len, 0);
                check_answer(s, r, recv_errors);
                if (r == 0)
                        check_in_place(s, buf, len);
                else
                        fuzz_assert(buf == SENTINEL && len == 12345);
                return;
        case OP_CONSUME:
                check_answer(s, brokerd_channel_consume(s->ch), consume_errors);
                return;
        case OP_SEND:
                n = take(in, 2);
                memset(scratch, 0xa5, n);
                check_answer(s, brokerd_channel_send(s->ch, scratch, n, 0), send_errors);
                return;
        case OP_RESERVE:
                n = take(in, 2);
                r = brokerd_channel_reserve(s->ch, n, &wbuf, 0);
                check_answer(s, r, send_errors);
                if (r == 0) {
                        check_in_place(s, wbuf, n);
                        memset(wbuf, 0x5a, n);
                        s->reserved = true;
                        s->reserved_len = n;
                } else
                        fuzz_assert(wbuf == SENTINEL);
                return;
        case OP_COMMIT:
                n = take(in, 2);
                r = brokerd_channel_commit(s->ch, n);
                check_answer(s, r, send_errors);
                if (r == 0) {
                        fuzz_assert(s->reserved && n >= 1 && n <= s->reserved_len);
                        s->reserved = false;
                }
                return;
        case OP_PEER_GONE:
                brokerd_channel_peer_gone(s->ch);
                if (!s->sticky)
                        s->sticky = -EPIPE;
                return;
        case OP_MODE:
                r = brokerd_channel_set_mode(s->ch, take(in, 1) & 1 ? BROKERD_CHANNEL_BLOCKING : BROKERD_CHANNEL_BUSY_POLL);
                check_answer(s, r, consume_errors);
                return;
        case OP_RING: {
                uint64_t one = 1;

                if (write(bell, &one, sizeof(one)) < 0)
                        fuzz_assert(errno == EAGAIN);
                return;
        }
        case _OP_MAX:
                break;
        }
        fuzz_assert(!"unknown operation");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct input in = { data, size };
        struct state s = {};
        uint8_t flags = take(&in, 1);
        const struct brokerd_channel_doorbells fds = { bell, bell, bell, bell };
        const struct brokerd_channel_doorbells *db = flags & 2 ? &fds : NULL;
        struct brokerd_channel *ch = SENTINEL;
        void *mem = NULL;
        size_t n;
        int r;

        s.len = take(&in, 2) % (MEM_MAX + 1);
        if (s.len < 8 || posix_memalign(&mem, 64, s.len) != 0)
                return 0;
        s.mem = mem;
        memset(s.mem, 0, s.len);
        n = take(&in, 2);
        n = n < in.left ? n : in.left;
        memcpy(s.mem, in.p, n < s.len ? n : s.len);
        in.p += n, in.left -= n;

        if (flags & 1) {
                struct brokerd_channel_params p = { flags & 4 ? 8192 : 4096, (uint32_t) (flags >> 3) * 64 };

                r = brokerd_channel_create(s.mem, s.len, &p, db, &ch);
                fuzz_assert(r == 0 || r == -EINVAL);
                fuzz_assert(r == 0 ? brokerd_channel_size(&p) <= s.len : ch == SENTINEL);
        } else {
                r = brokerd_channel_join(s.mem, s.len, db, 0, &ch);
                if (trace)
                        fprintf(stderr, "join -> %d\n", r);
                fuzz_assert(r == 0 || r == -EINVAL || r == -EAGAIN || r == -EPROTO);
                fuzz_assert(r == 0 || ch == SENTINEL);
        }
        if (r == 0) {
                int fds_out[2];

                s.ch = ch;
                s.max_message = brokerd_channel_max_message(ch);
                fuzz_assert(brokerd_channel_poll_fds(ch, fds_out) == (db ? 1 : 0));
                while (in.left > 0)
                        run_op(&s, &in);
                brokerd_channel_free(ch);
        }
        free(mem);
        return 0;
}
