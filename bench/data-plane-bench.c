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
#include <sys/socket.h>
#include <unistd.h>

#include "bench-common.h"
#include "data-plane.h"

#define DEFAULT_RING_SIZE (8u << 20)

struct options {
        struct dp_region_config region;
        int cpu[_DP_SIDE_MAX];
        unsigned divide; /* --quick: every count divided by this */
        bool transport_selected[DP_N_TRANSPORTS]; /* none: all */
        bool case_selected[DP_N_CASES];           /* none: all */
};

/* The connection the coordinator makes for one transport before it forks. */
struct connection {
        int fd[_DP_SIDE_MAX]; /* sockets */
        struct dp_region_setup region;
        bool has_region;
};

/* One side's process (pinned already): connected, every case, then the region let go. */
static int side_main(const struct options *o, const struct dp_transport *t, enum dp_side side,
                     struct connection *conn, const struct dp_case *cases, size_t n_cases, struct dp_result *res) {
        struct dp_end e = { .t = t, .fd = conn->fd[side], .cap = DP_MAX_MESSAGE };
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
                        r = dp_channel_open(&e, o->region.ring_size, &reg, side);
        } else
                r = 0;
        if (r >= 0)
                r = dp_run_cases(&e, side, cases, n_cases, res);
        if (r >= 0 && e.ch && side == DP_SIDE_B)
                r = dp_channel_wait_closed(&e);
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
        return dp_transports[i].key;
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
                        r = dp_parse_keys(optarg, "--transports", transport_key, DP_N_TRANSPORTS, o->transport_selected);
                        break;
                case ARG_CASES:
                        r = dp_parse_keys(optarg, "--cases", dp_case_key, DP_N_CASES, o->case_selected);
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

int main(int argc, char *argv[]) {
        struct options o = {
                .region = { .owner = "hw0", .peer = "vm1", .device = "nic0", .ring_size = DEFAULT_RING_SIZE },
                .cpu = { -1, -1 },
                .divide = 1,
        };
        struct dp_case cases[DP_N_CASES];
        struct dp_run *runs;
        sigset_t chld;
        size_t n_cases;
        bool all;
        int r, failed = 0;

        bench_program = "data-plane-bench";
        if (parse_options(argc, argv, &o) < 0)
                return 2;
        all = dp_none_selected(o.transport_selected, DP_N_TRANSPORTS);
        n_cases = dp_select_cases(o.case_selected, o.divide, cases);
        if (o.cpu[DP_SIDE_A] < 0 && (r = default_cpus(o.cpu)) < 0) {
                fprintf(stderr, "%s: cannot read the CPUs allowed: %s\n", bench_program, strerror(-r));
                return 1;
        }
        if (print_setup(&o) < 0)
                return 1;
        /* Before the progress lines on stderr. */
        fflush(stdout);

        /* Shared with the sides, which write their figures into it. */
        runs = mmap(NULL, DP_N_TRANSPORTS * sizeof(*runs), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (runs == MAP_FAILED) {
                fprintf(stderr, "%s: cannot map the results: %m\n", bench_program);
                return 1;
        }
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        sigprocmask(SIG_BLOCK, &chld, NULL);
        for (size_t i = 0; i < DP_N_TRANSPORTS; i++) {
                runs[i].t = &dp_transports[i];
                if (!all && !o.transport_selected[i])
                        continue;
                fprintf(stderr, "%s: %s...\n", bench_program, dp_transports[i].label);
                runs[i].probe_ns = dp_probe_ns(o.cpu);
                if (run_transport(&o, cases, n_cases, &runs[i]) < 0) {
                        fprintf(stderr, "%s: %s failed\n", bench_program, dp_transports[i].label);
                        failed++;
                }
        }
        dp_report(cases, n_cases, runs, DP_N_TRANSPORTS);
        munmap(runs, DP_N_TRANSPORTS * sizeof(*runs));
        if (fflush(stdout) != 0)
                return 1;
        return failed ? 1 : 0;
}
