/* SPDX-License-Identifier: Apache-2.0 */
/*
 * data-plane-bench: libbrokerd-channel over a region brokerd granted, next to TCP over loopback
 * and a Unix stream socket, in one run, with the same messages and the same process layout.
 *
 * For each transport the coordinator (this process, which only waits) forks two sides, each
 * pinned to a CPU of its own: A (the region's owner) sends the pings and the stream, B (the peer)
 * answers and receives. Both run the same cases in the same order:
 *   ping-pong  A sends size bytes, B receives them and sends size bytes back; A times each
 *              round trip (p50, p99);
 *   stream     A sends n messages of size bytes, B receives them and answers with one byte;
 *              A times the whole, each side takes its CPU time (getrusage: user + sys).
 * What each side does per message is in data-plane-transport.c. The channel is measured copying
 * (send/recv) and zero-copy (reserve/commit, peek/consume), blocking on its doorbells (with its
 * default spin, and with none) and busy-polling. Prints figures and the goals' ratios; it asserts
 * nothing about time.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench-common.h"
#include "data-plane.h"

#define DEFAULT_RING_SIZE (8u << 20)
#define MAX_MESSAGE (1u << 20)
#define JOIN_TIMEOUT_MS 10000
/* One-byte control messages: B is ready (ping-pong), B got the whole stream. */
#define FILL_READY 0xa5
#define FILL_ACK 0x5a

static const struct dp_transport transports[] = {
        { "tcp", "tcp loopback (TCP_NODELAY)", DP_TCP },
        { "unix", "unix stream socket", DP_UNIX },
        { "copy", "channel copy, blocking", DP_CHANNEL, false, BROKERD_CHANNEL_BLOCKING },
        { "zc", "channel zero-copy, blocking", DP_CHANNEL, true, BROKERD_CHANNEL_BLOCKING },
        { "copy-nospin", "channel copy, blocking, spin 0", DP_CHANNEL, false, BROKERD_CHANNEL_BLOCKING, true },
        { "copy-poll", "channel copy, busy-poll", DP_CHANNEL, false, BROKERD_CHANNEL_BUSY_POLL },
        { "zc-poll", "channel zero-copy, busy-poll", DP_CHANNEL, true, BROKERD_CHANNEL_BUSY_POLL },
};
#define N_TRANSPORTS (sizeof(transports) / sizeof(transports[0]))

/* Iterations per size: the slowest transport (TCP here) spends one to two seconds on each case. */
static const struct dp_case default_cases[] = {
        { "pp-14", DP_PINGPONG, 14, 50000, 5000 },
        { "pp-64", DP_PINGPONG, 64, 50000, 5000 },
        { "pp-1k", DP_PINGPONG, 1024, 50000, 5000 },
        { "pp-64k", DP_PINGPONG, 64u << 10, 10000, 1000 },
        { "pp-1m", DP_PINGPONG, 1u << 20, 1000, 100 },
        { "st-1k", DP_STREAM, 1024, 500000, 50000 },
        { "st-64k", DP_STREAM, 64u << 10, 100000, 10000 },
        { "st-1m", DP_STREAM, 1u << 20, 5000, 500 },
};
#define N_CASES (sizeof(default_cases) / sizeof(default_cases[0]))
_Static_assert(N_CASES <= DP_MAX_CASES, "DP_MAX_CASES too small");

struct options {
        struct dp_region_config region;
        int cpu[_DP_SIDE_MAX];
        unsigned divide; /* --quick: every count divided by this */
        bool transport_selected[N_TRANSPORTS]; /* none: all */
        bool case_selected[N_CASES];           /* none: all */
};

/* The connection the coordinator makes for one transport before it forks. */
struct connection {
        int fd[_DP_SIDE_MAX]; /* sockets */
        struct dp_region_setup region;
        bool has_region;
};

static uint8_t fill_of(unsigned i) {
        return (uint8_t) (1 + i % 251);
}

static void cpu_used(uint64_t *total, uint64_t *sys) {
        struct rusage ru;

        (void) getrusage(RUSAGE_SELF, &ru);
        *sys = (uint64_t) ru.ru_stime.tv_sec * 1000000000u + (uint64_t) ru.ru_stime.tv_usec * 1000u;
        *total = *sys + (uint64_t) ru.ru_utime.tv_sec * 1000000000u + (uint64_t) ru.ru_utime.tv_usec * 1000u;
}

/* The timed phase's start (begin) or end for side: CPU time, and A's wall time. */
static void mark(struct dp_result *res, enum dp_side side, bool begin) {
        uint64_t total, sys, now = bench_now_nsec();

        cpu_used(&total, &sys);
        if (begin) {
                res->cpu_ns[side] = total;
                res->sys_ns[side] = sys;
                if (side == DP_SIDE_A)
                        res->elapsed_ns = now;
                return;
        }
        res->cpu_ns[side] = total - res->cpu_ns[side];
        res->sys_ns[side] = sys - res->sys_ns[side];
        if (side == DP_SIDE_A)
                res->elapsed_ns = now - res->elapsed_ns;
        res->cpu[side] = sched_getcpu();
        res->done[side] = true;
}

static int pingpong_a(struct dp_end *e, const struct dp_case *c, uint64_t *samples, struct dp_result *res) {
        int r;

        for (unsigned i = 0; i < c->warmup; i++)
                if ((r = dp_send(e, c->size, fill_of(i))) < 0 || (r = dp_recv(e, c->size, fill_of(i))) < 0)
                        return r;
        if ((r = dp_recv(e, 1, FILL_READY)) < 0)
                return r;
        mark(res, DP_SIDE_A, true);
        for (unsigned i = 0; i < c->n; i++) {
                uint64_t t0 = bench_now_nsec();

                if ((r = dp_send(e, c->size, fill_of(i))) < 0 || (r = dp_recv(e, c->size, fill_of(i))) < 0)
                        return r;
                samples[i] = bench_now_nsec() - t0;
        }
        mark(res, DP_SIDE_A, false);
        bench_summarize(samples, c->n, &res->rtt);
        return 0;
}

static int pingpong_b(struct dp_end *e, const struct dp_case *c, struct dp_result *res) {
        int r;

        for (unsigned i = 0; i < c->warmup; i++)
                if ((r = dp_recv(e, c->size, fill_of(i))) < 0 || (r = dp_send(e, c->size, fill_of(i))) < 0)
                        return r;
        mark(res, DP_SIDE_B, true);
        if ((r = dp_send(e, 1, FILL_READY)) < 0)
                return r;
        for (unsigned i = 0; i < c->n; i++)
                if ((r = dp_recv(e, c->size, fill_of(i))) < 0 || (r = dp_send(e, c->size, fill_of(i))) < 0)
                        return r;
        mark(res, DP_SIDE_B, false);
        return 0;
}

static int stream_a(struct dp_end *e, const struct dp_case *c, struct dp_result *res) {
        int r;

        for (unsigned i = 0; i < c->warmup; i++)
                if ((r = dp_send(e, c->size, fill_of(i))) < 0)
                        return r;
        if ((r = dp_recv(e, 1, FILL_ACK)) < 0)
                return r;
        mark(res, DP_SIDE_A, true);
        for (unsigned i = 0; i < c->n; i++)
                if ((r = dp_send(e, c->size, fill_of(i))) < 0)
                        return r;
        if ((r = dp_recv(e, 1, FILL_ACK)) < 0)
                return r;
        mark(res, DP_SIDE_A, false);
        return 0;
}

static int stream_b(struct dp_end *e, const struct dp_case *c, struct dp_result *res) {
        int r;

        for (unsigned i = 0; i < c->warmup; i++)
                if ((r = dp_recv(e, c->size, fill_of(i))) < 0)
                        return r;
        mark(res, DP_SIDE_B, true);
        if ((r = dp_send(e, 1, FILL_ACK)) < 0)
                return r;
        for (unsigned i = 0; i < c->n; i++)
                if ((r = dp_recv(e, c->size, fill_of(i))) < 0)
                        return r;
        if ((r = dp_send(e, 1, FILL_ACK)) < 0)
                return r;
        mark(res, DP_SIDE_B, false);
        return 0;
}

static int run_cases(struct dp_end *e, enum dp_side side, const struct dp_case *cases, size_t n_cases,
                     struct dp_result *res) {
        uint64_t *samples = NULL;
        int r = 0;

        if (side == DP_SIDE_A) {
                unsigned most = 1;

                for (size_t i = 0; i < n_cases; i++)
                        most = cases[i].n > most ? cases[i].n : most;
                samples = calloc(most, sizeof(*samples));
                if (!samples)
                        return -ENOMEM;
        }
        for (size_t i = 0; r >= 0 && i < n_cases; i++) {
                const struct dp_case *c = &cases[i];

                if (c->pattern == DP_PINGPONG)
                        r = side == DP_SIDE_A ? pingpong_a(e, c, samples, &res[i]) : pingpong_b(e, c, &res[i]);
                else
                        r = side == DP_SIDE_A ? stream_a(e, c, &res[i]) : stream_b(e, c, &res[i]);
                if (r < 0)
                        fprintf(stderr, "%s: %s, side %c, %s of %zu bytes: %s\n", bench_program, e->t->label,
                                'A' + side, c->pattern == DP_PINGPONG ? "ping-pong" : "stream", c->size, strerror(-r));
        }
        free(samples);
        return r;
}

/* A creates the channel over the whole region, B joins it; both set the transport's mode. */
static int channel_open(struct dp_end *e, const struct options *o, struct dp_region *reg, enum dp_side side) {
        const struct brokerd_channel_params p = { .ring_size = o->region.ring_size };
        int r;

        if (side == DP_SIDE_A)
                r = brokerd_channel_create(reg->mem, reg->size, &p, &reg->db, &e->ch);
        else
                r = brokerd_channel_join(reg->mem, reg->size, &reg->db, JOIN_TIMEOUT_MS, &e->ch);
        if (r < 0) {
                fprintf(stderr, "%s: brokerd_channel_%s: %s\n", bench_program, side == DP_SIDE_A ? "create" : "join",
                        strerror(-r));
                return r;
        }
        r = brokerd_channel_set_mode(e->ch, e->t->mode);
        if (r >= 0 && e->t->spin_zero)
                r = brokerd_channel_set_spin(e->ch, 0);
        if (r >= 0 && brokerd_channel_max_message(e->ch) < MAX_MESSAGE)
                r = -EMSGSIZE;
        return r;
}

/*
 * B waits for A to free its end (recv answers -EPIPE) before it lets the region go: B's release
 * reclaims the region, and brokerd scrubs it, under A if A were still reading its last answer.
 */
static int channel_wait_closed(struct dp_end *e) {
        ssize_t n = brokerd_channel_recv(e->ch, e->buf, e->cap, JOIN_TIMEOUT_MS);

        if (n == -EPIPE)
                return 0;
        fprintf(stderr, "%s: %s: side A did not close its end: %s\n", bench_program, e->t->label,
                n < 0 ? strerror((int) -n) : "a message came instead");
        return n < 0 ? (int) n : -EBADMSG;
}

/* One side's process (pinned already): connected, every case, then the region let go. */
static int side_main(const struct options *o, const struct dp_transport *t, enum dp_side side,
                     struct connection *conn, const struct dp_case *cases, size_t n_cases, struct dp_result *res) {
        struct dp_end e = { .t = t, .fd = conn->fd[side], .cap = MAX_MESSAGE };
        struct dp_region reg = {};
        int r;

        e.buf = aligned_alloc(64, e.cap);
        if (!e.buf)
                return -ENOMEM;
        /* Faulted in now, not in the first timed message. */
        memset(e.buf, 0, e.cap);
        if (t->kind == DP_CHANNEL) {
                r = dp_region_open(&conn->region, side, &reg);
                if (r >= 0)
                        r = channel_open(&e, o, &reg, side);
        } else
                r = 0;
        if (r >= 0)
                r = run_cases(&e, side, cases, n_cases, res);
        if (r >= 0 && e.ch && side == DP_SIDE_B)
                r = channel_wait_closed(&e);
        brokerd_channel_free(e.ch);
        if (t->kind == DP_CHANNEL)
                dp_region_close(&reg, &conn->region, side);
        free(e.buf);
        return r;
}

static void connection_close(struct connection *conn) {
        for (unsigned s = 0; s < _DP_SIDE_MAX; s++) {
                if (conn->fd[s] >= 0)
                        close(conn->fd[s]);
                conn->fd[s] = -1;
        }
        if (conn->has_region)
                dp_region_setup_close(&conn->region);
        conn->has_region = false;
}

/* A connected TCP pair over 127.0.0.1 (A connects, B is accepted), both with TCP_NODELAY. */
static int tcp_pair(int fd[_DP_SIDE_MAX]) {
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(addr);
        int one = 1, lfd, r = 0;

        lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (lfd < 0)
                return -errno;
        fd[DP_SIDE_A] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd[DP_SIDE_A] < 0 || bind(lfd, (struct sockaddr *) &addr, sizeof(addr)) < 0 || listen(lfd, 1) < 0 ||
            getsockname(lfd, (struct sockaddr *) &addr, &len) < 0 ||
            connect(fd[DP_SIDE_A], (struct sockaddr *) &addr, sizeof(addr)) < 0)
                r = -errno;
        if (r == 0 && (fd[DP_SIDE_B] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) < 0)
                r = -errno;
        for (unsigned s = 0; r == 0 && s < _DP_SIDE_MAX; s++)
                if (setsockopt(fd[s], IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
                        r = -errno;
        close(lfd);
        return r;
}

static int connection_open(const struct options *o, const struct dp_transport *t, struct connection *ret) {
        struct connection conn = { .fd = { -1, -1 } };
        int r = 0;

        if (t->kind == DP_TCP)
                r = tcp_pair(conn.fd);
        else if (t->kind == DP_UNIX)
                r = socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, conn.fd) < 0 ? -errno : 0;
        else {
                r = dp_region_prepare(&o->region, &conn.region);
                conn.has_region = r >= 0;
        }
        if (r < 0) {
                fprintf(stderr, "%s: cannot connect %s: %s\n", bench_program, t->label, strerror(-r));
                connection_close(&conn);
                return r;
        }
        *ret = conn;
        return 0;
}

struct transport_run {
        const struct options *o;
        const struct dp_case *cases;
        size_t n_cases;
        struct dp_run *run;
        struct connection conn;
};

static int transport_side(enum dp_side side, void *userdata) {
        struct transport_run *tr = userdata;

        return side_main(tr->o, tr->run->t, side, &tr->conn, tr->cases, tr->n_cases, tr->run->res);
}

static void transport_parent_close(void *userdata) {
        struct transport_run *tr = userdata;

        connection_close(&tr->conn);
}

static int run_transport(const struct options *o, const struct dp_case *cases, size_t n_cases, struct dp_run *run) {
        struct transport_run tr = { .o = o, .cases = cases, .n_cases = n_cases, .run = run };
        int r;

        r = connection_open(o, run->t, &tr.conn);
        if (r < 0)
                return r;
        r = dp_fork_sides(o->cpu, transport_side, transport_parent_close, &tr);
        run->ran = r >= 0;
        return r;
}

static void help(void) {
        printf("Usage: data-plane-bench [OPTIONS]\n"
               "\n"
               "Ping-pong round trips and streams between two pinned processes over TCP (loopback),\n"
               "a Unix stream socket and libbrokerd-channel, side by side (docs/bench-data-plane.md).\n"
               "The channel's region comes from brokerd with --socket (A shares it as --owner, B\n"
               "attaches as --peer), else from a local memfd with eventfds for doorbells.\n"
               "\n"
               "  --socket PATH        brokerd's agent socket (the caller acts for owner and peer)\n"
               "  --owner DOMAIN       default hw0\n"
               "  --peer DOMAIN        default vm1\n"
               "  --device NAME        the owner's device to share for (default nic0)\n"
               "  --ring-size BYTES    each direction's ring, a power of two (default 8MiB)\n"
               "  --cpus A,B           the CPUs of sides A and B (default: the first two allowed)\n"
               "  --transports LIST    comma-separated, of: tcp unix copy zc copy-nospin copy-poll zc-poll\n"
               "                       (default: all)\n"
               "  --cases LIST         comma-separated, of: pp-14 pp-64 pp-1k pp-64k pp-1m (ping-pong)\n"
               "                       st-1k st-64k st-1m (stream) (default: all)\n"
               "  --quick              a hundredth of the iterations (a smoke test, not figures)\n"
               "  -h, --help           this text\n");
}

static const char *transport_key(size_t i) {
        return transports[i].key;
}

static const char *case_key(size_t i) {
        return default_cases[i].key;
}

/* A comma-separated list of keys (key_of(0 .. n-1)) into selected[]; what names the option. */
static int parse_keys(const char *list, const char *what, const char *(*key_of)(size_t i), size_t n, bool *selected) {
        bool sel[DP_MAX_CASES > N_TRANSPORTS ? DP_MAX_CASES : N_TRANSPORTS] = {};
        const char *p = list;

        while (*p) {
                size_t len = strcspn(p, ","), i;

                for (i = 0; i < n; i++)
                        if (strlen(key_of(i)) == len && strncmp(key_of(i), p, len) == 0)
                                break;
                if (i == n) {
                        fprintf(stderr, "%s: %s has no '%.*s' (--help)\n", bench_program, what, (int) len, p);
                        return -EINVAL;
                }
                sel[i] = true;
                p += len + (p[len] == ',');
        }
        memcpy(selected, sel, n * sizeof(*selected));
        return 0;
}

static int parse_cpus(const char *s, int cpu[_DP_SIDE_MAX]) {
        unsigned a, b;
        int end = 0;

        if (sscanf(s, "%u,%u%n", &a, &b, &end) != 2 || s[end] != '\0' || a >= CPU_SETSIZE || b >= CPU_SETSIZE) {
                fprintf(stderr, "%s: --cpus takes two CPU numbers, A,B, not '%s'\n", bench_program, s);
                return -EINVAL;
        }
        cpu[DP_SIDE_A] = (int) a;
        cpu[DP_SIDE_B] = (int) b;
        return 0;
}

/* The first two CPUs this process may run on (one if there is only one). */
static int default_cpus(int cpu[_DP_SIDE_MAX]) {
        cpu_set_t set;
        int found = 0;

        if (sched_getaffinity(0, sizeof(set), &set) < 0)
                return -errno;
        for (int c = 0; c < CPU_SETSIZE && found < _DP_SIDE_MAX; c++)
                if (CPU_ISSET(c, &set))
                        cpu[found++] = c;
        if (found == 0)
                return -ENODEV;
        if (found == 1)
                cpu[1] = cpu[0];
        return 0;
}

static int parse_options(int argc, char *argv[], struct options *o) {
        enum { ARG_SOCKET = 0x100, ARG_OWNER, ARG_PEER, ARG_DEVICE, ARG_RING, ARG_CPUS, ARG_TRANSPORTS, ARG_CASES, ARG_QUICK };
        static const struct option options[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "owner", required_argument, NULL, ARG_OWNER },
                { "peer", required_argument, NULL, ARG_PEER },
                { "device", required_argument, NULL, ARG_DEVICE },
                { "ring-size", required_argument, NULL, ARG_RING },
                { "cpus", required_argument, NULL, ARG_CPUS },
                { "transports", required_argument, NULL, ARG_TRANSPORTS },
                { "cases", required_argument, NULL, ARG_CASES },
                { "quick", no_argument, NULL, ARG_QUICK },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        uint64_t ring;
        int c, r = 0;

        while (r >= 0 && (c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_SOCKET:
                        o->region.socket = optarg;
                        break;
                case ARG_OWNER:
                        o->region.owner = optarg;
                        break;
                case ARG_PEER:
                        o->region.peer = optarg;
                        break;
                case ARG_DEVICE:
                        o->region.device = optarg;
                        break;
                case ARG_RING:
                        /* 1 MiB messages need a ring of at least twice that and a bit. */
                        r = bench_parse_u64(optarg, "--ring-size", 4u << 20, BROKERD_CHANNEL_MAX_RING, &ring);
                        if (r >= 0 && (ring & (ring - 1)) != 0) {
                                fprintf(stderr, "%s: --ring-size must be a power of two\n", bench_program);
                                r = -EINVAL;
                        }
                        o->region.ring_size = (size_t) ring;
                        break;
                case ARG_CPUS:
                        r = parse_cpus(optarg, o->cpu);
                        break;
                case ARG_TRANSPORTS:
                        r = parse_keys(optarg, "--transports", transport_key, N_TRANSPORTS, o->transport_selected);
                        break;
                case ARG_CASES:
                        r = parse_keys(optarg, "--cases", case_key, N_CASES, o->case_selected);
                        break;
                case ARG_QUICK:
                        o->divide = 100;
                        break;
                case 'h':
                        help();
                        exit(0);
                default:
                        r = -EINVAL;
                }
        }
        if (r >= 0 && optind < argc) {
                fprintf(stderr, "%s: unexpected argument '%s' (--help)\n", bench_program, argv[optind]);
                r = -EINVAL;
        }
        return r;
}

/* Where the sides run and where the region comes from, above the tables. */
static int print_setup(const struct options *o) {
        const struct brokerd_channel_params p = { .ring_size = o->region.ring_size };
        char version[64], backend[64];
        struct bdc *c = NULL;
        int r;

        printf("side A (owner: sends pings and streams) pinned to CPU %d, side B (peer: answers, receives) "
               "pinned to CPU %d%s\n",
               o->cpu[DP_SIDE_A], o->cpu[DP_SIDE_B], o->cpu[DP_SIDE_A] == o->cpu[DP_SIDE_B] ? " (the same CPU!)" : "");
        if (!o->region.socket) {
                printf("channel region: LOCAL memfd of %" PRIu64 " bytes with eventfds as doorbells (not brokered)\n",
                       dp_region_size(&o->region));
                return 0;
        }
        r = bdc_connect(o->region.socket, &c);
        if (r < 0) {
                fprintf(stderr, "%s: cannot connect to %s: %s\n", bench_program, o->region.socket, strerror(-r));
                return r;
        }
        r = bench_daemon_info(c, version, sizeof(version), backend, sizeof(backend), NULL);
        bdc_close(c);
        if (r < 0)
                return r;
        printf("channel region: brokered by brokerd %s (backend %s): %s shares %" PRIu64 " bytes for %s to %s, "
               "who attaches; 2 doorbell vectors\n",
               version, backend, o->region.owner, dp_region_size(&o->region), o->region.device, o->region.peer);
        printf("channel: %zu-byte rings each way (brokerd_channel_size %zu), default spin %u us\n",
               o->region.ring_size, brokerd_channel_size(&p), BROKERD_CHANNEL_DEFAULT_SPIN_USEC);
        return 0;
}

static bool none_selected(const bool *selected, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (selected[i])
                        return false;
        return true;
}

/* The cases --cases selected (all without it), their counts divided for --quick; returns how many. */
static size_t select_cases(const struct options *o, struct dp_case cases[N_CASES]) {
        bool all = none_selected(o->case_selected, N_CASES);
        size_t n = 0;

        for (size_t i = 0; i < N_CASES; i++) {
                if (!all && !o->case_selected[i])
                        continue;
                cases[n] = default_cases[i];
                cases[n].n = cases[n].n / o->divide ?: 1;
                cases[n].warmup /= o->divide;
                n++;
        }
        return n;
}

int main(int argc, char *argv[]) {
        struct options o = {
                .region = { .owner = "hw0", .peer = "vm1", .device = "nic0", .ring_size = DEFAULT_RING_SIZE },
                .cpu = { -1, -1 },
                .divide = 1,
        };
        struct dp_case cases[N_CASES];
        struct dp_run *runs;
        sigset_t chld;
        size_t n_cases;
        bool all;
        int r, failed = 0;

        bench_program = "data-plane-bench";
        if (parse_options(argc, argv, &o) < 0)
                return 2;
        all = none_selected(o.transport_selected, N_TRANSPORTS);
        n_cases = select_cases(&o, cases);
        if (o.cpu[DP_SIDE_A] < 0 && (r = default_cpus(o.cpu)) < 0) {
                fprintf(stderr, "%s: cannot read the CPUs allowed: %s\n", bench_program, strerror(-r));
                return 1;
        }
        if (print_setup(&o) < 0)
                return 1;
        /* Before the progress lines on stderr. */
        fflush(stdout);

        /* Shared with the sides, which write their figures into it. */
        runs = mmap(NULL, N_TRANSPORTS * sizeof(*runs), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (runs == MAP_FAILED) {
                fprintf(stderr, "%s: cannot map the results: %m\n", bench_program);
                return 1;
        }
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        sigprocmask(SIG_BLOCK, &chld, NULL);
        for (size_t i = 0; i < N_TRANSPORTS; i++) {
                runs[i].t = &transports[i];
                if (!all && !o.transport_selected[i])
                        continue;
                fprintf(stderr, "%s: %s...\n", bench_program, transports[i].label);
                runs[i].probe_ns = dp_probe_ns(o.cpu);
                if (run_transport(&o, cases, n_cases, &runs[i]) < 0) {
                        fprintf(stderr, "%s: %s failed\n", bench_program, transports[i].label);
                        failed++;
                }
        }
        dp_report(cases, n_cases, runs, N_TRANSPORTS);
        munmap(runs, N_TRANSPORTS * sizeof(*runs));
        if (fflush(stdout) != 0)
                return 1;
        return failed ? 1 : 0;
}
