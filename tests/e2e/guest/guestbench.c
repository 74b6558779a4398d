/* SPDX-License-Identifier: Apache-2.0 */
/*
 * guestbench: one side of bench/data-plane-bench's cases, inside an e2e guest, against the same
 * program in another guest (bench/run-guest-data-plane-bench.sh drives both). The cases, what each
 * side does per message and the channel's setup are data-plane-bench's own code
 * (bench/data-plane-cases.c, data-plane-transport.c), linked statically; only the connection
 * differs:
 *   tcp        TCP over the guests' virtio-net link: B listens on --port, A connects to --peer-ip;
 *              TCP_NODELAY on both, default buffers
 *   channel    libbrokerd-channel over BAR2 of an ivshmem-doorbell device (ivshmem_doorbell.h),
 *              A creates it over the whole BAR with the largest power-of-two rings that fit, B joins;
 *              ring ends (--peer ID, vector 0 "data" / 1 "space"), wait ends our vectors
 * Usage: guestbench a|b TRANSPORT [--peer-ip IP] [--port N] [--peer ID] [--device PATH]
 *                   [--cases LIST] [--divide N]
 *        guestbench ring --peer ID [--device PATH]   ring the peer's vectors 0 and 1 once
 * TRANSPORT: tcp copy zc copy-nospin copy-poll zc-poll: data-plane-bench's transports (dp_transports[],
 * whose labels its error messages use) but the Unix socket. The side that must
 * be there first (B for tcp: it listens; A for the channel: it writes the header) prints "READY".
 * Every case, once done, prints a line "CASE side=.. key=.. n=.. size=.. elapsed_ns=.. cpu_ns=.. sys_ns=.."
 * plus, on A for ping-pong, " p50_ns=.. p99_ns=.. mean_ns=.. max_ns=..". B, once A has closed the
 * channel, clears its header so that the next A starts from scratch. Exit 0, or 1 with a message.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench-common.h"
#include "data-plane.h"
#include "ivshmem_doorbell.h"

#define CONNECT_TRIES 100 /* 100 ms apart */

struct options {
        enum dp_side side;
        const struct dp_transport *t;
        const char *peer_ip;
        unsigned port;
        long peer; /* channel: the other guest's IVPosition */
        const char *device;
        unsigned divide;
        bool case_selected[DP_N_CASES]; /* none: all */
        bool ring;                      /* "ring": ring the peer's two vectors once and exit */
};

static int fail(const char *what, int err) {
        fprintf(stderr, "guestbench: %s: %s\n", what, strerror(err < 0 ? -err : err));
        return err < 0 ? err : -err;
}

/* B: listens and accepts one connection; A: connects (B may not listen yet: retried). */
static int tcp_connect(const struct options *o, int *ret) {
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t) o->port) };
        int one = 1, fd, lfd;

        if (o->side == DP_SIDE_B) {
                lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
                    bind(lfd, (struct sockaddr *) &addr, sizeof(addr)) < 0 || listen(lfd, 1) < 0)
                        return fail("listen", errno);
                printf("READY\n");
                fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                close(lfd);
                if (fd < 0)
                        return fail("accept", errno);
        } else {
                if (!o->peer_ip || inet_pton(AF_INET, o->peer_ip, &addr.sin_addr) != 1)
                        return fail("--peer-ip (an IPv4 address)", EINVAL);
                for (unsigned i = 0;; i++) {
                        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                        if (fd < 0)
                                return fail("socket", errno);
                        if (connect(fd, (struct sockaddr *) &addr, sizeof(addr)) == 0)
                                break;
                        close(fd);
                        if (i + 1 >= CONNECT_TRIES)
                                return fail("connect", errno);
                        usleep(100000);
                }
        }
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
                close(fd);
                return fail("TCP_NODELAY", errno);
        }
        *ret = fd;
        return 0;
}

/* The device's BAR2, mapped, and the doorbells with peer: data-plane-bench's struct dp_region. */
static int region_open(const struct options *o, struct dp_region *ret) {
        struct dp_region r = { .db = { -1, -1, -1, -1 } };
        struct ivdb_info info;
        int fd = open(o->device, O_RDWR | O_CLOEXEC), k = 0;

        if (fd < 0)
                return fail(o->device, errno);
        if (ioctl(fd, IVDB_INFO, &info) < 0)
                k = fail("IVDB_INFO", errno);
        else if (info.vectors < 2 || o->peer < 0 || o->peer > 65535)
                k = fail("the device needs 2 vectors, --peer an id", EINVAL);
        if (k == 0) {
                struct ivdb_ring ring = { .peer = (uint16_t) o->peer, .vector = 0 };
                uint32_t vector = 0;

                r.db.ring_data = ioctl(fd, IVDB_RING_FD, &ring);
                r.db.wait_data = ioctl(fd, IVDB_WAIT_FD, &vector);
                ring.vector = vector = 1;
                r.db.ring_space = ioctl(fd, IVDB_RING_FD, &ring);
                r.db.wait_space = ioctl(fd, IVDB_WAIT_FD, &vector);
                if (r.db.ring_data < 0 || r.db.ring_space < 0 || r.db.wait_data < 0 || r.db.wait_space < 0)
                        k = fail("doorbell fds", errno);
        }
        if (k == 0) {
                r.size = info.shm_size;
                /* MAP_POPULATE as on the host: no timed phase faults a page in. */
                r.mem = mmap(NULL, r.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
                if (r.mem == MAP_FAILED)
                        k = fail("mmap", errno);
        }
        close(fd); /* the mapping and the doorbell fds hold the device */
        if (k < 0)
                return k;
        printf("DEVICE id=%u peer=%ld size=%llu\n", info.ivposition, o->peer, (unsigned long long) info.shm_size);
        *ret = r;
        return 0;
}

/* The largest power-of-two rings whose channel fits in size bytes (0 if none does). */
static size_t ring_size_for(uint64_t size) {
        size_t ring = BROKERD_CHANNEL_MAX_RING;

        while (ring >= 4096) {
                const struct brokerd_channel_params p = { .ring_size = ring };

                if (brokerd_channel_size(&p) <= size)
                        return ring;
                ring /= 2;
        }
        return 0;
}

static void print_case(const struct options *o, const struct dp_case *c, const struct dp_result *x) {
        printf("CASE side=%c key=%s n=%u size=%zu elapsed_ns=%llu cpu_ns=%llu sys_ns=%llu", 'A' + o->side, c->key, c->n,
               c->size, (unsigned long long) x->elapsed_ns, (unsigned long long) x->cpu_ns[o->side],
               (unsigned long long) x->sys_ns[o->side]);
        if (o->side == DP_SIDE_A && c->pattern == DP_PINGPONG)
                printf(" p50_ns=%llu p99_ns=%llu mean_ns=%.0Lf max_ns=%llu", (unsigned long long) x->rtt.p50,
                       (unsigned long long) x->rtt.p99, x->rtt.sum / c->n, (unsigned long long) x->rtt.max);
        printf("\n");
}

/* Each case's line as soon as it is done: the driver sees progress, and where a run stopped. */
static int run(const struct options *o, const struct dp_case *cases, size_t n_cases) {
        struct dp_end e = { .t = o->t, .fd = -1, .cap = DP_MAX_MESSAGE };
        struct dp_region reg = {};
        int r;

        e.buf = aligned_alloc(64, e.cap);
        if (!e.buf)
                return fail("malloc", ENOMEM);
        memset(e.buf, 0, e.cap);
        if (o->t->kind == DP_TCP)
                r = tcp_connect(o, &e.fd);
        else {
                r = region_open(o, &reg);
                if (r >= 0)
                        r = dp_channel_open(&e, ring_size_for(reg.size), &reg, o->side);
                if (r >= 0 && o->side == DP_SIDE_A)
                        printf("READY\n");
        }
        for (size_t i = 0; r >= 0 && i < n_cases; i++) {
                struct dp_result res = {};

                r = dp_run_cases(&e, o->side, &cases[i], 1, &res);
                if (r >= 0)
                        print_case(o, &cases[i], &res);
        }
        if (r >= 0 && e.ch && o->side == DP_SIDE_B) {
                r = dp_channel_wait_closed(&e);
                /* A has let go: the next A writes a fresh header, and no B joins this one. */
                if (r >= 0)
                        __atomic_store_n((uint64_t *) reg.mem, 0, __ATOMIC_SEQ_CST);
        }
        brokerd_channel_free(e.ch);
        if (e.fd >= 0)
                close(e.fd);
        free(e.buf);
        return r;
}

static int parse_options(int argc, char *argv[], struct options *o) {
        static const struct option options[] = {
                { "peer-ip", required_argument, NULL, 'i' }, { "port", required_argument, NULL, 'p' },
                { "peer", required_argument, NULL, 'e' },    { "device", required_argument, NULL, 'd' },
                { "cases", required_argument, NULL, 'c' },   { "divide", required_argument, NULL, 'n' },
                {},
        };
        char *end;
        int c;

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
                errno = 0;
                if (c == 'i')
                        o->peer_ip = optarg;
                else if (c == 'd')
                        o->device = optarg;
                else if (c == 'c') {
                        if (dp_parse_keys(optarg, "--cases", dp_case_key, DP_N_CASES, o->case_selected) < 0)
                                return -EINVAL;
                } else if (c == 'p' || c == 'e' || c == 'n') {
                        unsigned long v = strtoul(optarg, &end, 10);

                        if (errno || *end || end == optarg || v > 65535 || (c != 'e' && v == 0))
                                return fail(c == 'p' ? "--port" : c == 'e' ? "--peer" : "--divide", EINVAL);
                        if (c == 'p')
                                o->port = (unsigned) v;
                        else if (c == 'e')
                                o->peer = (long) v;
                        else
                                o->divide = (unsigned) v;
                } else
                        return -EINVAL;
        }
        if (argc - optind == 1 && strcmp(argv[optind], "ring") == 0) {
                o->ring = true;
                return 0;
        }
        if (argc - optind != 2 || (strcmp(argv[optind], "a") != 0 && strcmp(argv[optind], "b") != 0))
                return -EINVAL;
        o->side = argv[optind][0] == 'a' ? DP_SIDE_A : DP_SIDE_B;
        /* data-plane-bench's transports but the Unix socket, which cannot cross between guests. */
        for (size_t i = 0; i < DP_N_TRANSPORTS; i++)
                if (dp_transports[i].kind != DP_UNIX && strcmp(dp_transports[i].key, argv[optind + 1]) == 0)
                        o->t = &dp_transports[i];
        return o->t ? 0 : fail(argv[optind + 1], EINVAL);
}

/*
 * Rings --peer's vectors 0 and 1 once: the driver's probe of a stalled run (a wake-up that was
 * lost, or sides that wait for each other's data?). Coalesces with any ring pending there.
 */
static int ring_peer(const struct options *o) {
        struct dp_region reg;
        const uint64_t one = 1;
        int r = region_open(o, &reg);

        if (r < 0)
                return r;
        if (write(reg.db.ring_data, &one, sizeof(one)) != sizeof(one) ||
            write(reg.db.ring_space, &one, sizeof(one)) != sizeof(one))
                return fail("ring", errno);
        return 0;
}

int main(int argc, char *argv[]) {
        struct options o = { .port = 5201, .peer = -1, .device = "/dev/ivshmem-doorbell0", .divide = 1 };
        struct dp_case cases[DP_N_CASES];
        size_t n;

        bench_program = "guestbench";
        setvbuf(stdout, NULL, _IOLBF, 0);
        if (parse_options(argc, argv, &o) < 0) {
                fprintf(stderr, "usage: guestbench a|b TRANSPORT [--peer-ip IP] [--port N] [--peer ID] "
                                "[--device PATH] [--cases LIST] [--divide N] | guestbench ring --peer ID\n");
                return 2;
        }
        if (o.ring)
                return ring_peer(&o) < 0 ? 1 : 0;
        n = dp_select_cases(o.case_selected, o.divide, cases);
        return run(&o, cases, n) < 0 ? 1 : 0;
}
