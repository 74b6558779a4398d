/* SPDX-License-Identifier: Apache-2.0 */
/*
 * chantool: runs inside a guest (the e2e guests; README.md here). libbrokerd-channel, unchanged,
 * over the BAR2 of an ivshmem-doorbell device, woken by its interrupts through
 * ivshmem_doorbell.ko's fds (ivshmem_doorbell.h): ring ends are (PEER, vector 0 "data" / 1
 * "space"), wait ends our vectors.
 *   chantool info                    print "ID <own id> VECTORS <n> SIZE <bytes>"
 *   chantool create PEER [--poll]    write the channel header at BAR2 offset 0, answer every
 *                                    message with the same bytes until the peer closes; then clear
 *                                    the header so that the next create starts from scratch
 *   chantool join PEER N SIZE        N copied and N zero-copy pings of SIZE bytes, each answer checked
 *   chantool ping-poll PEER N SIZE   N copied pings with both sides busy-polling (create --poll)
 *   chantool ring PEER VECTOR        ring that vector of that peer once through the driver's ring fd
 *                                    (no channel): "RANG" once the write went through
 *   chantool hold                    hold BAR2 and doorbell fds, print "HOLDING", wait until the
 *                                    device is removed, then print what the fds and the mapping do:
 *                                    "GONE ring=<errno> wait=<errno> map=<SIGBUS|readable>"
 * Blocking roles never spin (spin 0: the library still checks 32 times before it sleeps), and join
 * pauses PAUSE_USEC between pings (outside the timing) so that the peer is asleep when a ping
 * comes: each ping wakes the peer by interrupt, and the answer wakes the pinger. Round trips are printed as "RTT <kind> n=.. avg_us=.. p50_us=.. p99_us=.. max_us=..".
 * $CHANTOOL_DEVICE: the device to use instead of /dev/ivshmem-doorbell0.
 * Waits are cut into slices (WAIT_SLICE_MS); join, ping-poll and create end with
 * "SLICES_EXPIRED <n>": slices that ended without the peer's ring (see WAIT_SLICE_MS).
 * Exit status 0 on success; 1 with a message on stderr otherwise.
 * Build: make chantool (Makefile; CHANNEL= the channel library's sources, default ../../channel)
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "brokerd-channel.h"
#include "ivshmem_doorbell.h"

#define DEVICE_DEFAULT "/dev/ivshmem-doorbell0"
/* $CHANTOOL_DEVICE picks another device (a guest holding several doorbell regions). */
static const char *device_path(void) {
        const char *d = getenv("CHANTOOL_DEVICE");
        return d && *d ? d : DEVICE_DEFAULT;
}
#define RING_SIZE (64u * 1024)
#define OP_TIMEOUT_MS 30000
#define SERVE_TIMEOUT_MS 120000
#define PAUSE_USEC 300

/*
 * QEMU 7.2 under TCG emits a one-vCPU guest's memory barriers as nothing, so the channel's
 * need-wakeup handshake between two such guests can lose a wake-up (docs/guest-doorbells.md):
 * every wait is cut into slices of WAIT_SLICE_MS, and a slice that ends without the peer's ring
 * is counted and the channel looked at again. Printed as "SLICES_EXPIRED <n>" at the end.
 */
#define WAIT_SLICE_MS 2000
static unsigned long slices_expired;

struct region {
        struct ivdb_info info;
        void *mem;
        struct brokerd_channel_doorbells db;
};

static int send_p(struct brokerd_channel *ch, const void *buf, size_t len, int total_ms) {
        int k = -ETIMEDOUT;

        for (int t = 0; t < total_ms && k == -ETIMEDOUT; t += WAIT_SLICE_MS, slices_expired += k == -ETIMEDOUT)
                k = brokerd_channel_send(ch, buf, len, WAIT_SLICE_MS);
        return k;
}

static ssize_t recv_p(struct brokerd_channel *ch, void *buf, size_t cap, int total_ms) {
        ssize_t n = -ETIMEDOUT;

        for (int t = 0; t < total_ms && n == -ETIMEDOUT; t += WAIT_SLICE_MS, slices_expired += n == -ETIMEDOUT)
                n = brokerd_channel_recv(ch, buf, cap, WAIT_SLICE_MS);
        return n;
}

static int reserve_p(struct brokerd_channel *ch, size_t len, void **out, int total_ms) {
        int k = -ETIMEDOUT;

        for (int t = 0; t < total_ms && k == -ETIMEDOUT; t += WAIT_SLICE_MS, slices_expired += k == -ETIMEDOUT)
                k = brokerd_channel_reserve(ch, len, out, WAIT_SLICE_MS);
        return k;
}

static int peek_p(struct brokerd_channel *ch, const void **in, size_t *len, int total_ms) {
        int k = -ETIMEDOUT;

        for (int t = 0; t < total_ms && k == -ETIMEDOUT; t += WAIT_SLICE_MS, slices_expired += k == -ETIMEDOUT)
                k = brokerd_channel_peek(ch, in, len, WAIT_SLICE_MS);
        return k;
}

static int fail(const char *what, int err) {
        fprintf(stderr, "chantool: %s: %s\n", what, strerror(err < 0 ? -err : err));
        return 1;
}

static int open_region(struct region *r, long peer) {
        int fd = open(device_path(), O_RDWR | O_CLOEXEC);
        struct ivdb_ring ring = { .peer = (uint16_t) peer };
        uint32_t vector;

        if (fd < 0)
                return -errno;
        if (ioctl(fd, IVDB_INFO, &r->info) < 0)
                goto err;
        r->mem = mmap(NULL, r->info.shm_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (r->mem == MAP_FAILED)
                goto err;
        r->db = (struct brokerd_channel_doorbells) { -1, -1, -1, -1 };
        if (peer < 0) {
                close(fd);
                return 0;
        }
        if (r->info.vectors < 2 || peer > 65535) {
                errno = EINVAL;
                goto err;
        }
        ring.vector = 0;
        r->db.ring_data = ioctl(fd, IVDB_RING_FD, &ring);
        ring.vector = 1;
        r->db.ring_space = ioctl(fd, IVDB_RING_FD, &ring);
        vector = 0;
        r->db.wait_data = ioctl(fd, IVDB_WAIT_FD, &vector);
        vector = 1;
        r->db.wait_space = ioctl(fd, IVDB_WAIT_FD, &vector);
        if (r->db.ring_data < 0 || r->db.ring_space < 0 || r->db.wait_data < 0 || r->db.wait_space < 0)
                goto err;
        close(fd); /* the mapping and the doorbell fds hold the device */
        return 0;
err:
        close(fd);
        return -errno;
}

static uint64_t now_ns(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static void pause_usec(uint64_t usec) {
        uint64_t until = now_ns() + usec * 1000;

        while (now_ns() < until)
                ;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

static void print_rtt(const char *kind, uint64_t *ns, size_t n) {
        uint64_t sum = 0;

        qsort(ns, n, sizeof(*ns), cmp_u64);
        for (size_t i = 0; i < n; i++)
                sum += ns[i];
        printf("RTT %s n=%zu avg_us=%.1f p50_us=%.1f p99_us=%.1f max_us=%.1f\n", kind, n, sum / 1e3 / (double) n,
               ns[n / 2] / 1e3, ns[n * 99 / 100] / 1e3, ns[n - 1] / 1e3);
}

static void fill(uint8_t *buf, size_t len, uint64_t seq) {
        for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t) (seq * 131 + i);
}

static int serve(long peer, int poll_mode) {
        struct brokerd_channel_params p = { .ring_size = RING_SIZE };
        struct brokerd_channel *ch = NULL;
        struct region r;
        unsigned long served = 0;
        int k;

        k = open_region(&r, peer);
        if (k < 0)
                return fail(device_path(), k);
        k = brokerd_channel_create(r.mem, r.info.shm_size, &p, &r.db, &ch);
        if (k < 0)
                return fail("create", k);
        k = brokerd_channel_set_mode(ch, poll_mode ? BROKERD_CHANNEL_BUSY_POLL : BROKERD_CHANNEL_BLOCKING);
        if (k == 0 && !poll_mode)
                k = brokerd_channel_set_spin(ch, 0);
        for (; k == 0; served++) {
                const void *in;
                void *out;
                size_t len;

                k = peek_p(ch, &in, &len, SERVE_TIMEOUT_MS);
                if (k < 0)
                        break;
                k = reserve_p(ch, len, &out, OP_TIMEOUT_MS);
                if (k == 0) {
                        memcpy(out, in, len);
                        k = brokerd_channel_commit(ch, len);
                }
                if (k == 0)
                        k = brokerd_channel_consume(ch);
        }
        brokerd_channel_free(ch);
        /* The peer has closed: a fresh header may follow; joiners wait while the magic is 0. */
        __atomic_store_n((uint64_t *) r.mem, 0, __ATOMIC_SEQ_CST);
        if (k != -EPIPE)
                return fail("serve", k);
        printf("SERVED %lu\nSLICES_EXPIRED %lu\n", served, slices_expired);
        return 0;
}

static int ping_copy(struct brokerd_channel *ch, size_t size, uint64_t seq, uint8_t *out, uint8_t *in) {
        ssize_t n;
        int k;

        fill(out, size, seq);
        k = send_p(ch, out, size, OP_TIMEOUT_MS);
        if (k < 0)
                return k;
        n = recv_p(ch, in, size, OP_TIMEOUT_MS);
        if (n < 0)
                return (int) n;
        return (size_t) n == size && memcmp(in, out, size) == 0 ? 0 : -EBADMSG;
}

static int ping_zero_copy(struct brokerd_channel *ch, size_t size, uint64_t seq, uint8_t *expect) {
        const void *in;
        void *out;
        size_t len;
        int k;

        fill(expect, size, seq);
        k = reserve_p(ch, size, &out, OP_TIMEOUT_MS);
        if (k < 0)
                return k;
        memcpy(out, expect, size);
        k = brokerd_channel_commit(ch, size);
        if (k < 0)
                return k;
        k = peek_p(ch, &in, &len, OP_TIMEOUT_MS);
        if (k < 0)
                return k;
        k = len == size && memcmp(in, expect, size) == 0 ? 0 : -EBADMSG;
        if (k == 0)
                k = brokerd_channel_consume(ch);
        return k;
}

static int ping(long peer, long n, long size, int poll_mode) {
        struct brokerd_channel *ch = NULL;
        uint8_t *out, *in;
        uint64_t *rtt;
        struct region r;
        int k;

        if (n <= 0 || size <= 0 || size > 4096)
                return fail("N and SIZE (1..4096)", EINVAL);
        out = malloc((size_t) size);
        in = malloc((size_t) size);
        rtt = calloc((size_t) n, sizeof(*rtt));
        if (!out || !in || !rtt)
                return fail("malloc", ENOMEM);
        k = open_region(&r, peer);
        if (k < 0)
                return fail(device_path(), k);
        k = brokerd_channel_join(r.mem, r.info.shm_size, &r.db, OP_TIMEOUT_MS, &ch);
        if (k < 0)
                return fail("join", k);
        k = brokerd_channel_set_mode(ch, poll_mode ? BROKERD_CHANNEL_BUSY_POLL : BROKERD_CHANNEL_BLOCKING);
        if (k == 0 && !poll_mode)
                k = brokerd_channel_set_spin(ch, 0);
        for (long i = 0; k == 0 && i < n; i++) {
                uint64_t t0;

                if (!poll_mode)
                        pause_usec(PAUSE_USEC);
                t0 = now_ns();
                k = ping_copy(ch, (size_t) size, (uint64_t) i, out, in);
                rtt[i] = now_ns() - t0;
        }
        if (k < 0)
                return fail("copied ping", k);
        print_rtt(poll_mode ? "poll-copy" : "irq-copy", rtt, (size_t) n);
        for (long i = 0; !poll_mode && k == 0 && i < n; i++) {
                uint64_t t0;

                pause_usec(PAUSE_USEC);
                t0 = now_ns();
                k = ping_zero_copy(ch, (size_t) size, (uint64_t) (n + i), out);
                rtt[i] = now_ns() - t0;
        }
        if (k < 0)
                return fail("zero-copy ping", k);
        if (!poll_mode)
                print_rtt("irq-zero-copy", rtt, (size_t) n);
        printf("SLICES_EXPIRED %lu\n", slices_expired);
        brokerd_channel_free(ch);
        free(out), free(in), free(rtt);
        return 0;
}

static sigjmp_buf bus_error;

static void on_sigbus(int sig) {
        siglongjmp(bus_error, sig);
}

static const char *errno_name(int e) {
        return e == 0 ? "none" : e == ENODEV ? "ENODEV" : strerror(e);
}

/* What a process holding the device sees once it is removed (the driver's -ENODEV promise). */
static int hold(void) {
        struct sigaction sa = { .sa_handler = on_sigbus };
        struct pollfd pfd;
        struct region r;
        uint64_t v = 1;
        int ring_err, wait_err, k;
        const char *volatile map = "readable";

        k = open_region(&r, 0);
        if (k < 0)
                return fail(device_path(), k);
        printf("HOLDING\n");
        pfd = (struct pollfd) { .fd = r.db.wait_data, .events = POLLIN };
        while (poll(&pfd, 1, -1) >= 0 && !(pfd.revents & (POLLERR | POLLHUP)))
                (void) !read(r.db.wait_data, &v, sizeof(v));
        ring_err = write(r.db.ring_data, &v, sizeof(v)) < 0 ? errno : 0;
        wait_err = read(r.db.wait_data, &v, sizeof(v)) < 0 ? errno : 0;
        sigaction(SIGBUS, &sa, NULL);
        if (sigsetjmp(bus_error, 1) == 0)
                (void) *(volatile uint8_t *) r.mem;
        else
                map = "SIGBUS";
        printf("GONE ring=%s wait=%s map=%s\n", errno_name(ring_err), errno_name(wait_err), map);
        return 0;
}

/* One doorbell, no channel: what a revoked peer's id gets (the e2e test counts the interrupts). */
static int ring_once(long peer, long vector) {
        struct ivdb_ring ring = { .peer = (uint16_t) peer, .vector = (uint16_t) vector };
        uint64_t v = 1;
        int fd, rfd, k = 0;

        if (peer < 0 || peer > 65535 || vector < 0 || vector > 65535)
                return fail("PEER and VECTOR", EINVAL);
        fd = open(device_path(), O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return fail(device_path(), errno);
        rfd = ioctl(fd, IVDB_RING_FD, &ring);
        if (rfd < 0 || write(rfd, &v, sizeof(v)) != (ssize_t) sizeof(v))
                k = errno;
        if (rfd >= 0)
                close(rfd);
        close(fd);
        if (k)
                return fail("ring", k);
        printf("RANG\n");
        return 0;
}

int main(int argc, char **argv) {
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (argc == 2 && strcmp(argv[1], "info") == 0) {
                struct region r;
                int k = open_region(&r, -1);

                if (k < 0)
                        return fail(device_path(), k);
                printf("ID %u VECTORS %u SIZE %llu\n", r.info.ivposition, r.info.vectors,
                       (unsigned long long) r.info.shm_size);
                return 0;
        }
        if (argc == 2 && strcmp(argv[1], "hold") == 0)
                return hold();
        if (argc == 4 && strcmp(argv[1], "ring") == 0)
                return ring_once(strtol(argv[2], NULL, 10), strtol(argv[3], NULL, 10));
        if ((argc == 3 || (argc == 4 && strcmp(argv[3], "--poll") == 0)) && strcmp(argv[1], "create") == 0)
                return serve(strtol(argv[2], NULL, 10), argc == 4);
        if (argc == 5 && strcmp(argv[1], "join") == 0)
                return ping(strtol(argv[2], NULL, 10), strtol(argv[3], NULL, 10), strtol(argv[4], NULL, 10), 0);
        if (argc == 5 && strcmp(argv[1], "ping-poll") == 0)
                return ping(strtol(argv[2], NULL, 10), strtol(argv[3], NULL, 10), strtol(argv[4], NULL, 10), 1);
        fprintf(stderr, "usage: chantool info | hold | ring PEER VECTOR | create PEER [--poll] | join PEER N SIZE | ping-poll PEER N SIZE\n");
        return 2;
}
