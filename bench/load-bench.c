/* SPDX-License-Identifier: Apache-2.0 */
/*
 * load-bench: many agents at once against a running brokerd (docs/load.md).
 *
 *   clients     N threads (default 64), one agent connection each, M requests each (default
 *               10,000) back to back: broker.info, route.lookup, region.get, region.list and
 *               grant cycles spread over the stream (share -> attach -> revoke -> release, each
 *               a durable commit or more), plus a few requests that must fail with a known
 *               error (a guessed token, a used token, a reclaimed region);
 *   admin       one admin connection subscribed to every event for the whole run; at the end it
 *               must have heard one region.reclaimed per cycle and still be connected;
 *   slow        a flooder (from a fifth of the way in, pipelines requests and never reads a
 *               reply: brokerd must drop it once its queue passes --max-pending), a stuck
 *               subscriber (from half-way, an agent subscribed to everything that never reads:
 *               dropped the same way), a half-line client (sends part of a request and stalls
 *               for the whole run, then finishes the line);
 *   daemon      VmRSS and the number of open fds of --pid, before, sampled every 50ms during
 *               (peak) and after (once every connection of ours but one is closed).
 *
 * Every reply is checked (a region, not a bounce; the token is vm1's; the attach names the
 * region; a provoked error has the expected error.data.name), so a broken daemon cannot look
 * fast. Prints throughput and latency percentiles overall, per method class and while each
 * slow client was stuck, and exits 1 on any failure: an error the bench did not provoke, a slow
 * client that was not dropped, the admin stream dropped or short of events, regions left over,
 * fds not back to the baseline, RSS over the bounds. It asserts nothing about time.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "brokerd-client.h"
#include "util/macro.h"
#include "bench-common.h"
#include "bench-stats.h"

#define DEFAULT_CLIENTS 64u
#define DEFAULT_REQUESTS 10000u
#define MAX_CLIENTS 1024u
#define MAX_REQUESTS 10000000u
#define DEFAULT_RSS_PEAK_MIB 256u
#define DEFAULT_RSS_AFTER_MIB 32u

#define OWNER "hw0"
#define DEVICE "nic0"
#define PEER "vm1"
#define SHARE_SIZE 4096u
/* Long enough that no revoke in the mix runs into its deadline before the client releases. */
#define REVOKE_DEADLINE_MS 120000

/* Out of 1000 requests (see choose()). */
#define MIX_PROVOKED 5
#define MIX_CYCLE 400
#define MIX_INFO 200
#define MIX_ROUTE 150
#define MIX_GET 150
/* the rest (95): region.list */

#define SAMPLE_INTERVAL_MS 50
#define SETTLE_TIMEOUT_MS 10000
/* The connections of ours besides the clients: stats, event stream, three slow clients. */
#define EXTRA_CONNECTIONS 5u
/* How long the flooder gets to be dropped once it has started. */
#define FLOOD_TIMEOUT_MS 30000
/* When the flooder and the stuck subscriber start, in permille of all requests done: after the
 * daemon's warm-up, apart, so that each one's effect on the others can be told apart. */
#define FLOOD_AT_PERMILLE 200
#define STUCK_AT_PERMILLE 500

#define NSEC_PER_SEC UINT64_C(1000000000)
#define NSEC_PER_MSEC UINT64_C(1000000)

enum cls {
        C_INFO,
        C_ROUTE,
        C_GET,
        C_LIST,
        C_SHARE,
        C_ATTACH,
        C_REVOKE,
        C_RELEASE,
        C_PROVOKED,
        _C_MAX,
};

static const struct {
        const char *key;
        const char *label;
} classes[_C_MAX] = {
        [C_INFO] = { "broker.info", "broker.info" },
        [C_ROUTE] = { "route.lookup", "route.lookup" },
        [C_GET] = { "region.get", "region.get" },
        [C_LIST] = { "region.list", "region.list" },
        [C_SHARE] = { "region.share", "region.share" },
        [C_ATTACH] = { "region.attach", "region.attach" },
        [C_REVOKE] = { "region.revoke", "region.revoke" },
        [C_RELEASE] = { "region.release", "region.release (+ reclaim)" },
        [C_PROVOKED] = { "provoked", "provoked errors" },
};

enum provoked {
        P_BAD_TOKEN,  /* attach with a guessed token: invalid_token */
        P_TOKEN_USED, /* attach again with the token already redeemed: token_used */
        P_GONE,       /* region.get of a region this client saw reclaimed: no_such_region */
        _P_MAX,
};

static const char *const provoked_names[_P_MAX] = {
        [P_BAD_TOKEN] = "invalid_token",
        [P_TOKEN_USED] = "token_used",
        [P_GONE] = "no_such_region",
};

/* The notifications an admin subscriber can hear, counted by name. */
static const char *const event_names[] = {
        "region.attached", "region.recall", "region.released", "region.revoked",
        "region.reclaimed", "route.changed", "region.unplug_overdue",
};
#define N_EVENT_NAMES (sizeof(event_names) / sizeof(event_names[0]))
#define EV_RECLAIMED 4

struct sample {
        uint64_t start; /* ns since the load started */
        uint64_t lat;   /* ns */
        uint8_t cls;
};

enum cycle_state {
        CY_NONE,
        CY_SHARED,
        CY_ATTACHED,
        CY_REVOKING,
};

struct client {
        struct bench *bench;
        unsigned index;
        pthread_t thread;
        bool started;
        struct bdc *bdc;
        uint64_t rng;

        struct sample *samples;
        size_t n_samples;

        enum cycle_state cycle;
        uint64_t region;
        char token[64];
        uint64_t last_reclaimed; /* 0: none yet */

        uint64_t cycles;
        uint64_t provoked[_P_MAX];
        uint64_t unprovoked;
        bool dead; /* the connection failed: the client stopped */
};

struct rss_fd {
        uint64_t rss_kib;
        uint64_t fds;
};

struct slow {
        pthread_t thread;
        bool started;
        int fd;
        /* ns since the load started; UINT64_MAX: never */
        uint64_t t_ready, t_dropped;
        uint64_t sent;     /* flooder: requests sent; half-line: bytes sent */
        uint64_t unread;   /* bytes the kernel had delivered that it never read */
        bool eof_confirmed; /* reading after the drop reached EOF: brokerd closed it */
        bool answered;     /* half-line: finishing the line got its answer */
        char failure[256];
};

struct bench {
        const char *socket_path, *admin_path;
        pid_t pid;
        unsigned n_clients, n_requests;
        uint64_t seed;
        bool json, slow_clients;
        bool grant_only; /* every request a grant cycle step: durable steps per second */
        uint64_t rss_peak_limit_kib, rss_after_limit_kib;

        uint64_t t0; /* CLOCK_MONOTONIC ns when the load started */
        pthread_barrier_t barrier;
        atomic_uint_fast64_t completed;
        atomic_bool load_done;

        struct client *clients;

        /* sampler */
        pthread_t sampler;
        bool sampler_started;
        atomic_bool sampler_stop;
        pthread_mutex_t sample_lock;
        struct rss_fd peak;
        uint64_t t_peak_rss, t_peak_fds;
        uint64_t n_daemon_samples;
        struct rss_fd *timeline; /* per second of the load: the max of that second */
        size_t n_timeline;

        /* event stream */
        pthread_t streamer;
        bool streamer_started;
        struct bdc *stream;
        atomic_bool streamer_stop;
        atomic_uint_fast64_t events[N_EVENT_NAMES + 1]; /* + other */
        bool stream_dropped;
        char stream_failure[256];

        struct slow stuck, flooder, half;
};

struct stats {
        size_t n;
        double p50_us, p99_us, max_us, mean_us;
};

static uint64_t since_t0(const struct bench *b) {
        uint64_t t = bench_now_nsec();

        return t > b->t0 ? t - b->t0 : 0;
}

static double sec(uint64_t ns) {
        return (double) ns / 1e9;
}

/* xorshift64*: reproducible per client for a given --seed. */
static uint64_t rnd(uint64_t *s) {
        uint64_t x = *s;

        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        *s = x;
        return x * UINT64_C(2685821657736338717);
}

/* Sorts lat in place. */
static void stats_compute(uint64_t *lat, size_t n, struct stats *ret) {
        struct bench_summary s;

        *ret = (struct stats) { .n = n };
        if (n == 0)
                return;
        bench_summarize(lat, n, &s);
        ret->mean_us = (double) (s.sum / n / 1e3L);
        ret->p50_us = (double) s.p50 / 1e3;
        ret->p99_us = (double) s.p99 / 1e3;
        ret->max_us = (double) s.max / 1e3;
}

/* ---- the daemon's RSS and fds ---- */

static int daemon_rss_fd(pid_t pid, struct rss_fd *ret) {
        char path[64], line[256];
        uint64_t rss = UINT64_MAX, fds = 0;
        struct dirent *de;
        FILE *f;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return -errno;
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "VmRSS: %" SCNu64 " kB", &rss) == 1)
                        break;
        fclose(f);
        if (rss == UINT64_MAX)
                return -ESRCH; /* a zombie has no VmRSS */

        snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
        d = opendir(path);
        if (!d)
                return -errno;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        fds++;
        closedir(d);

        *ret = (struct rss_fd) { .rss_kib = rss, .fds = fds };
        return 0;
}

/* CPU time (user + system) of pid in clock ticks, or 0. */
static uint64_t daemon_cpu_ticks(pid_t pid) {
        char path[64], buf[1024], *p;
        unsigned long long utime, stime;
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = 0;
        /* comm may hold spaces and parentheses: fields restart after the last ')'. */
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
                return 0;
        return utime + stime;
}

static void *sampler_main(void *userdata) {
        struct bench *b = userdata;

        while (!atomic_load(&b->sampler_stop)) {
                struct rss_fd s;

                if (daemon_rss_fd(b->pid, &s) >= 0) {
                        uint64_t t = since_t0(b);
                        size_t sec_i = (size_t) (t / NSEC_PER_SEC);

                        pthread_mutex_lock(&b->sample_lock);
                        b->n_daemon_samples++;
                        if (s.rss_kib > b->peak.rss_kib) {
                                b->peak.rss_kib = s.rss_kib;
                                b->t_peak_rss = t;
                        }
                        if (s.fds > b->peak.fds) {
                                b->peak.fds = s.fds;
                                b->t_peak_fds = t;
                        }
                        if (b->t0 > 0 && sec_i < 100000) {
                                if (sec_i >= b->n_timeline) {
                                        struct rss_fd *p = realloc(b->timeline, (sec_i + 1) * sizeof(*p));
                                        if (p) {
                                                memset(p + b->n_timeline, 0, (sec_i + 1 - b->n_timeline) * sizeof(*p));
                                                b->timeline = p;
                                                b->n_timeline = sec_i + 1;
                                        }
                                }
                                if (sec_i < b->n_timeline) {
                                        if (s.rss_kib > b->timeline[sec_i].rss_kib)
                                                b->timeline[sec_i].rss_kib = s.rss_kib;
                                        if (s.fds > b->timeline[sec_i].fds)
                                                b->timeline[sec_i].fds = s.fds;
                                }
                        }
                        pthread_mutex_unlock(&b->sample_lock);
                }
                (void) poll(NULL, 0, SAMPLE_INTERVAL_MS);
        }
        return NULL;
}

/* ---- raw connections (the slow clients speak the line protocol themselves) ---- */

static int unix_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t len = strlen(path);
        int fd, r;

        if (len >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, len + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* Reads until the first '\n' within timeout_ms; the line (NUL-terminated, truncated to size) in buf. */
static int read_line(int fd, char *buf, size_t size, int timeout_ms) {
        uint64_t deadline = bench_now_nsec() + (uint64_t) timeout_ms * NSEC_PER_MSEC;
        size_t len = 0;
        char ch;

        for (;;) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                uint64_t t = bench_now_nsec();
                ssize_t n;
                int q;

                if (t >= deadline)
                        return -ETIMEDOUT;
                q = poll(&p, 1, (int) ((deadline - t) / NSEC_PER_MSEC) + 1);
                if (q < 0 && errno != EINTR)
                        return -errno;
                if (q <= 0)
                        continue;
                n = read(fd, &ch, 1);
                if (n < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -ECONNRESET;
                if (ch == '\n')
                        break;
                if (len + 1 < size)
                        buf[len++] = ch;
        }
        buf[len] = 0;
        return 0;
}

/*
 * Waits (without reading) until the peer closes fd or stop is set. Returns 1 when closed,
 * 0 when stopped. POLLIN is not asked for: the data the slow client never reads must not wake it.
 */
static int wait_closed(int fd, atomic_bool *stop, int timeout_ms) {
        uint64_t deadline = timeout_ms >= 0 ? bench_now_nsec() + (uint64_t) timeout_ms * NSEC_PER_MSEC : UINT64_MAX;

        while (!(stop && atomic_load(stop)) && bench_now_nsec() < deadline) {
                struct pollfd p = { .fd = fd, .events = POLLRDHUP };
                int q = poll(&p, 1, SAMPLE_INTERVAL_MS);

                if (q < 0 && errno != EINTR)
                        return -errno;
                if (q > 0 && (p.revents & (POLLHUP | POLLRDHUP | POLLERR)))
                        return 1;
        }
        return 0;
}

/* After a drop: read what the kernel still holds until EOF (which proves brokerd closed it). */
static void drain_to_eof(struct slow *s) {
        char buf[65536];
        int flags = fcntl(s->fd, F_GETFL);

        if (flags >= 0)
                (void) fcntl(s->fd, F_SETFL, flags & ~O_NONBLOCK);
        for (;;) {
                ssize_t n = read(s->fd, buf, sizeof(buf));

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == ECONNRESET) {
                        s->eof_confirmed = true;
                        return;
                }
                if (n <= 0) {
                        s->eof_confirmed = n == 0;
                        return;
                }
                s->unread += (uint64_t) n;
        }
}

/* Waits until permille of all requests are done (or the load is). */
static void wait_progress(struct bench *b, unsigned permille) {
        uint64_t trigger = (uint64_t) b->n_clients * b->n_requests * permille / 1000;

        while (atomic_load(&b->completed) < trigger && !atomic_load(&b->load_done))
                (void) poll(NULL, 0, 5);
}

/* The stuck subscriber: subscribes to every domain it acts for, then never reads again. */
static int stuck_setup(struct bench *b) {
        static const char req[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"events.subscribe\",\"params\":{}}\n";
        char line[4096];
        int r;

        b->stuck.fd = unix_connect(b->socket_path);
        if (b->stuck.fd < 0)
                return b->stuck.fd;
        r = bench_send_all(b->stuck.fd, req, sizeof(req) - 1);
        if (r >= 0)
                r = read_line(b->stuck.fd, line, sizeof(line), 10000);
        if (r < 0)
                return r;
        if (!strstr(line, "\"result\"") || !strstr(line, "\"id\":1")) {
                snprintf(b->stuck.failure, sizeof(b->stuck.failure), "events.subscribe answered %.200s", line);
                return -EBADMSG;
        }
        return 0;
}

static void *stuck_main(void *userdata) {
        struct bench *b = userdata;
        struct slow *s = &b->stuck;
        int q;

        wait_progress(b, STUCK_AT_PERMILLE);
        q = stuck_setup(b);
        if (q < 0) {
                if (!s->failure[0])
                        snprintf(s->failure, sizeof(s->failure), "subscribing: %s", strerror(-q));
                return NULL;
        }
        s->t_ready = since_t0(b);
        /* Until the end of the load and a little after (the last events may be what overflows it). */
        q = wait_closed(s->fd, &b->streamer_stop, -1);
        if (q > 0)
                s->t_dropped = since_t0(b);
        else if (q < 0)
                snprintf(s->failure, sizeof(s->failure), "poll: %s", strerror(-q));
        return NULL;
}

/* The half-line client: part of a request, then nothing for the whole run. */
#define HALF_LINE_HEAD "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"broker.in"
#define HALF_LINE_TAIL "fo\",\"params\":{}}\n"

static int half_setup(struct bench *b) {
        int r;

        b->half.fd = unix_connect(b->socket_path);
        if (b->half.fd < 0)
                return b->half.fd;
        r = bench_send_all(b->half.fd, HALF_LINE_HEAD, strlen(HALF_LINE_HEAD));
        if (r < 0)
                return r;
        b->half.sent = strlen(HALF_LINE_HEAD);
        return 0;
}

static void *half_main(void *userdata) {
        struct bench *b = userdata;
        struct slow *s = &b->half;
        int q;

        s->t_ready = 0;
        q = wait_closed(s->fd, &b->load_done, -1);
        if (q > 0)
                s->t_dropped = since_t0(b);
        else if (q < 0)
                snprintf(s->failure, sizeof(s->failure), "poll: %s", strerror(-q));
        return NULL;
}

/* Once the load is done: if brokerd kept the connection, finish the line and expect the answer. */
static void half_finish(struct bench *b) {
        struct slow *s = &b->half;
        char line[4096];
        int r;

        if (s->t_dropped != UINT64_MAX) {
                drain_to_eof(s);
                return;
        }
        r = bench_send_all(s->fd, HALF_LINE_TAIL, strlen(HALF_LINE_TAIL));
        if (r >= 0)
                r = read_line(s->fd, line, sizeof(line), 10000);
        if (r < 0) {
                snprintf(s->failure, sizeof(s->failure), "finishing its line: %s", strerror(-r));
                return;
        }
        if (strstr(line, "\"id\":7") && strstr(line, "\"result\"") && strstr(line, "\"version\""))
                s->answered = true;
        else
                snprintf(s->failure, sizeof(s->failure), "finishing its line got %.200s", line);
}

/* The flooder: pipelines broker.info and never reads a reply. */
static void *flooder_main(void *userdata) {
        struct bench *b = userdata;
        struct slow *s = &b->flooder;
        uint64_t deadline;
        char batch[64 * 80];
        size_t len = 0, off = 0;
        int fd, flags;

        for (unsigned i = 0; i < 64; i++)
                len += (size_t) snprintf(batch + len, sizeof(batch) - len,
                                         "{\"jsonrpc\":\"2.0\",\"id\":%u,\"method\":\"broker.info\"}\n", i + 1);

        wait_progress(b, FLOOD_AT_PERMILLE);
        fd = unix_connect(b->socket_path);
        if (fd < 0) {
                snprintf(s->failure, sizeof(s->failure), "connect: %s", strerror(-fd));
                return NULL;
        }
        s->fd = fd;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
                snprintf(s->failure, sizeof(s->failure), "fcntl: %m");
                return NULL;
        }
        s->t_ready = since_t0(b);
        deadline = bench_now_nsec() + FLOOD_TIMEOUT_MS * NSEC_PER_MSEC;

        while (bench_now_nsec() < deadline) {
                ssize_t n = send(fd, batch + off, len - off, MSG_NOSIGNAL);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                struct pollfd p = { .fd = fd, .events = POLLOUT | POLLRDHUP };

                                (void) poll(&p, 1, SAMPLE_INTERVAL_MS);
                                if (p.revents & (POLLHUP | POLLRDHUP | POLLERR)) {
                                        s->t_dropped = since_t0(b);
                                        return NULL;
                                }
                                continue;
                        }
                        if (errno == EPIPE || errno == ECONNRESET) {
                                s->t_dropped = since_t0(b);
                                return NULL;
                        }
                        snprintf(s->failure, sizeof(s->failure), "send: %m");
                        return NULL;
                }
                /* Count whole lines sent. */
                for (size_t i = off; i < off + (size_t) n; i++)
                        if (batch[i] == '\n')
                                s->sent++;
                off += (size_t) n;
                if (off == len)
                        off = 0;
        }
        snprintf(s->failure, sizeof(s->failure), "not dropped within %d ms of flooding", FLOOD_TIMEOUT_MS);
        return NULL;
}

/* ---- the admin event stream ---- */

static void *streamer_main(void *userdata) {
        struct bench *b = userdata;

        for (;;) {
                struct bdc_event ev = {};
                int r = bdc_next_event(b->stream, SAMPLE_INTERVAL_MS * 2, &ev);
                size_t i;

                if (r == -ETIMEDOUT || r == -EINTR) {
                        if (atomic_load(&b->streamer_stop))
                                break;
                        continue;
                }
                if (r < 0) {
                        b->stream_dropped = r == -ECONNRESET;
                        snprintf(b->stream_failure, sizeof(b->stream_failure), "event stream: %s", strerror(-r));
                        break;
                }
                for (i = 0; i < N_EVENT_NAMES; i++)
                        if (strcmp(ev.method, event_names[i]) == 0)
                                break;
                atomic_fetch_add(&b->events[i], 1);
                bdc_event_clear(&ev);
        }
        return NULL;
}

/* ---- the clients ---- */

struct call {
        struct bdc_error err;
        struct json_object *result;
        int r;
};

static void call_clear(struct call *k) {
        bdc_error_clear(&k->err);
        json_object_put(k->result);
        k->result = NULL;
}

static int unprovoked(struct client *c, const char *what, const struct call *k, const char *detail) {
        c->unprovoked++;
        if (c->unprovoked <= 3)
                fprintf(stderr, "load-bench: client %u: %s failed: %s%s%s%s%s\n", c->index, what,
                        k && k->r < 0 ? strerror(-k->r) : "unexpected answer",
                        k && k->r < 0 && (k->err.code != 0 || k->err.name[0]) ? " (" : "",
                        k && k->r < 0 && (k->err.code != 0 || k->err.name[0]) ? bdc_error_name(&k->err) : "",
                        k && k->r < 0 && (k->err.code != 0 || k->err.name[0]) ? ")" : "", detail ? detail : "");
        /* A dead connection cannot go on: the client stops and the run fails. */
        if (k && (k->r == -ECONNRESET || k->r == -EBADMSG || (k->r < 0 && k->err.code == 0)))
                c->dead = true;
        return -EBADMSG;
}

static int params_region(uint64_t region, struct json_object **ret) {
        struct json_object *p = json_object_new_object(), *v = json_object_new_uint64(region);

        if (!p || !v || json_object_object_add(p, "region", v) < 0) {
                json_object_put(p);
                json_object_put(v);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

static int do_info(struct client *c) {
        struct call k = {};

        k.r = bdc_call(c->bdc, "broker.info", NULL, &k.result, NULL, NULL, &k.err);
        if (k.r < 0 || !bench_json_string(k.result, "version")) {
                unprovoked(c, "broker.info", &k, NULL);
                call_clear(&k);
                return -EBADMSG;
        }
        call_clear(&k);
        return 0;
}

static int do_route(struct client *c) {
        struct json_object *p = json_object_new_object();
        struct call k = {};
        const char *route;

        if (!p || json_object_object_add(p, "device", json_object_new_string(DEVICE)) < 0 ||
            json_object_object_add(p, "domain", json_object_new_string(PEER)) < 0) {
                json_object_put(p);
                return -ENOMEM;
        }
        k.r = bdc_call(c->bdc, "route.lookup", p, &k.result, NULL, NULL, &k.err);
        json_object_put(p);
        route = k.r >= 0 ? bench_json_string(k.result, "route") : NULL;
        if (!route || (strcmp(route, "region") != 0 && strcmp(route, "bounce") != 0 && strcmp(route, "none") != 0)) {
                unprovoked(c, "route.lookup", &k, NULL);
                call_clear(&k);
                return -EBADMSG;
        }
        call_clear(&k);
        return 0;
}

static int do_get(struct client *c) {
        struct json_object *p = NULL, *v;
        struct call k = {};
        int r;

        r = params_region(c->region, &p);
        if (r < 0)
                return r;
        k.r = bdc_call(c->bdc, "region.get", p, &k.result, NULL, NULL, &k.err);
        json_object_put(p);
        if (k.r < 0 || !json_object_object_get_ex(k.result, "region", &v) ||
            (uint64_t) json_object_get_uint64(v) != c->region || !bench_json_string(k.result, "state")) {
                unprovoked(c, "region.get", &k, NULL);
                call_clear(&k);
                return -EBADMSG;
        }
        call_clear(&k);
        return 0;
}

static int do_list(struct client *c) {
        struct call k = {};
        struct json_object *v;
        bool found = c->cycle == CY_NONE;

        k.r = bdc_call(c->bdc, "region.list", NULL, &k.result, NULL, NULL, &k.err);
        if (k.r < 0 || !json_object_object_get_ex(k.result, "regions", &v) || !json_object_is_type(v, json_type_array)) {
                unprovoked(c, "region.list", &k, NULL);
                call_clear(&k);
                return -EBADMSG;
        }
        /* A region this client holds must be listed. */
        for (size_t i = 0; !found && i < json_object_array_length(v); i++) {
                struct json_object *id;
                if (json_object_object_get_ex(json_object_array_get_idx(v, i), "region", &id) &&
                    (uint64_t) json_object_get_uint64(id) == c->region)
                        found = true;
        }
        call_clear(&k);
        if (!found)
                return unprovoked(c, "region.list", NULL, ": a region the client holds is not listed");
        return 0;
}

static int do_share(struct client *c) {
        const struct bdc_peer p = { .domain = PEER, .access = BDC_ACCESS_RW };
        char label[32];
        struct bdc_share_request req = {
                .owner = OWNER, .device = DEVICE, .size = SHARE_SIZE, .peers = &p, .n_peers = 1, .label = label,
        };
        struct bdc_share_result res = { .fd = -1 };
        struct call k = {};

        snprintf(label, sizeof(label), "load-%u", c->index);
        k.r = bdc_share(c->bdc, &req, &res, &k.err);
        if (k.r < 0) {
                unprovoked(c, "region.share", &k, NULL);
                call_clear(&k);
                return -EBADMSG;
        }
        if (res.placement != BDC_PLACEMENT_REGION || res.n_tokens != 1 || strcmp(res.tokens[0].domain, PEER) != 0 ||
            strlen(res.tokens[0].token) >= sizeof(c->token) || res.fd < 0) {
                unprovoked(c, "region.share", NULL,
                           res.placement == BDC_PLACEMENT_BOUNCE ? ": a bounce, not a region" : ": not a region for vm1");
                bdc_share_result_clear(&res);
                return -EBADMSG;
        }
        c->region = res.region;
        snprintf(c->token, sizeof(c->token), "%s", res.tokens[0].token);
        c->cycle = CY_SHARED;
        /* The control plane is what is loaded: the owner's mapping fd is closed at once. */
        bdc_share_result_clear(&res);
        return 0;
}

static int do_attach(struct client *c) {
        struct bdc_attach_result res = { .fd = -1 };
        struct call k = {};

        k.r = bdc_attach(c->bdc, PEER, c->token, &res, &k.err);
        if (k.r < 0) {
                unprovoked(c, "region.attach", &k, NULL);
                call_clear(&k);
                return -EBADMSG;
        }
        if (res.region != c->region || res.access != BDC_ACCESS_RW || res.fd < 0) {
                bdc_attach_result_clear(&res);
                return unprovoked(c, "region.attach", NULL, ": another region or access");
        }
        bdc_attach_result_clear(&res);
        c->cycle = CY_ATTACHED;
        return 0;
}

static int do_revoke(struct client *c) {
        struct call k = {};

        k.r = bdc_revoke(c->bdc, OWNER, c->region, REVOKE_DEADLINE_MS, false, &k.err);
        if (k.r < 0) {
                unprovoked(c, "region.revoke", &k, NULL);
                call_clear(&k);
                return -EBADMSG;
        }
        c->cycle = CY_REVOKING;
        return 0;
}

static int do_release(struct client *c) {
        struct call k = {};

        k.r = bdc_release(c->bdc, PEER, c->region, &k.err);
        if (k.r < 0) {
                unprovoked(c, "region.release", &k, NULL);
                call_clear(&k);
                return -EBADMSG;
        }
        /* Its only peer released it while revoking: reclaimed before the reply. */
        c->last_reclaimed = c->region;
        c->region = 0;
        c->cycle = CY_NONE;
        c->cycles++;
        return 0;
}

static int do_cycle_step(struct client *c, enum cls *cls) {
        switch (c->cycle) {
        case CY_NONE:
                *cls = C_SHARE;
                return do_share(c);
        case CY_SHARED:
                *cls = C_ATTACH;
                return do_attach(c);
        case CY_ATTACHED:
                *cls = C_REVOKE;
                return do_revoke(c);
        case CY_REVOKING:
                *cls = C_RELEASE;
                return do_release(c);
        }
        return -EINVAL;
}

static int do_provoked(struct client *c) {
        uint64_t n = 0;
        enum provoked kind;
        struct call k = {};

        for (int i = 0; i < _P_MAX; i++)
                n += c->provoked[i];
        kind = (enum provoked) (n % _P_MAX);
        if (kind == P_TOKEN_USED && c->cycle != CY_ATTACHED && c->cycle != CY_REVOKING)
                kind = P_BAD_TOKEN;
        if (kind == P_GONE && c->last_reclaimed == 0)
                kind = P_BAD_TOKEN;

        switch (kind) {
        case P_BAD_TOKEN: {
                struct bdc_attach_result res = { .fd = -1 };
                char token[33];

                for (int i = 0; i < 32; i += 16)
                        snprintf(token + i, sizeof(token) - (size_t) i, "%016" PRIx64, rnd(&c->rng));
                k.r = bdc_attach(c->bdc, PEER, token, &res, &k.err);
                bdc_attach_result_clear(&res);
                break;
        }
        case P_TOKEN_USED: {
                struct bdc_attach_result res = { .fd = -1 };

                k.r = bdc_attach(c->bdc, PEER, c->token, &res, &k.err);
                bdc_attach_result_clear(&res);
                break;
        }
        case P_GONE: {
                struct json_object *p = NULL;
                int r = params_region(c->last_reclaimed, &p);

                if (r < 0)
                        return r;
                k.r = bdc_call(c->bdc, "region.get", p, &k.result, NULL, NULL, &k.err);
                json_object_put(p);
                break;
        }
        default:
                return -EINVAL;
        }
        if (k.r >= 0 || strcmp(k.err.name, provoked_names[kind]) != 0) {
                char detail[96];

                snprintf(detail, sizeof(detail), ": expected error %s", provoked_names[kind]);
                unprovoked(c, kind == P_GONE ? "region.get (of a reclaimed region)" : "region.attach (provoked)",
                           &k, detail);
                call_clear(&k);
                return -EBADMSG;
        }
        c->provoked[kind]++;
        call_clear(&k);
        return 0;
}

/* Steps left in the current grant cycle. */
static unsigned cycle_left(const struct client *c) {
        switch (c->cycle) {
        case CY_SHARED:
                return 3;
        case CY_ATTACHED:
                return 2;
        case CY_REVOKING:
                return 1;
        default:
                return 0;
        }
}

/* One request of the mix; every cycle is finished before the client's requests run out. */
static int request_once(struct client *c, unsigned remaining, enum cls *cls) {
        unsigned left = cycle_left(c), r;
        bool can_cycle = left > 0 || remaining >= 4;

        if (left > 0 && remaining <= left)
                return do_cycle_step(c, cls);
        if (c->bench->grant_only) {
                if (can_cycle)
                        return do_cycle_step(c, cls);
                *cls = C_INFO;
                return do_info(c);
        }

        r = (unsigned) (rnd(&c->rng) % 1000);
        if (r < MIX_PROVOKED) {
                *cls = C_PROVOKED;
                return do_provoked(c);
        }
        r -= MIX_PROVOKED;
        if (r < MIX_CYCLE) {
                if (can_cycle)
                        return do_cycle_step(c, cls);
                *cls = C_INFO;
                return do_info(c);
        }
        r -= MIX_CYCLE;
        if (r < MIX_INFO) {
                *cls = C_INFO;
                return do_info(c);
        }
        r -= MIX_INFO;
        if (r < MIX_ROUTE) {
                *cls = C_ROUTE;
                return do_route(c);
        }
        r -= MIX_ROUTE;
        if (r < MIX_GET) {
                /* Of the region this client holds; none held: the next cycle step instead. */
                if (c->cycle != CY_NONE) {
                        *cls = C_GET;
                        return do_get(c);
                }
                if (can_cycle)
                        return do_cycle_step(c, cls);
                *cls = C_ROUTE;
                return do_route(c);
        }
        *cls = C_LIST;
        return do_list(c);
}

static void *client_main(void *userdata) {
        struct client *c = userdata;
        struct bench *b = c->bench;

        (void) pthread_barrier_wait(&b->barrier);
        for (unsigned i = 0; i < b->n_requests && !c->dead; i++) {
                enum cls cls = C_INFO;
                uint64_t t0 = bench_now_nsec(), t1;

                (void) request_once(c, b->n_requests - i, &cls);
                t1 = bench_now_nsec();
                c->samples[c->n_samples++] = (struct sample) {
                        .start = t0 > b->t0 ? t0 - b->t0 : 0,
                        .lat = t1 - t0,
                        .cls = (uint8_t) cls,
                };
                atomic_fetch_add(&b->completed, 1);
        }
        return NULL;
}

/* ---- admin calls ---- */

static int admin_stats(struct bdc *c, struct json_object **ret) {
        struct bdc_error err = BDC_ERROR_INIT;
        int r = bdc_call(c, "admin.stats", NULL, ret, NULL, NULL, &err);

        if (r < 0)
                fprintf(stderr, "load-bench: admin.stats: %s%s%s\n", strerror(-r), err.name[0] ? ": " : "", err.name);
        bdc_error_clear(&err);
        return r;
}

static uint64_t get_u64(struct json_object *o, const char *key) {
        struct json_object *v;

        return json_object_object_get_ex(o, key, &v) ? (uint64_t) json_object_get_uint64(v) : 0;
}

/* ---- results ---- */

struct window {
        const char *key, *label;
        uint64_t from, to; /* ns since t0, requests started in [from, to) */
        bool outside;      /* instead: started in [from, to) but in no window before this one */
        uint64_t span;     /* ns the window covers */
        struct stats st;
};

/* The time a window covers; for an outside window, less the union of the windows before it. */
static uint64_t window_span(const struct window *windows, size_t w) {
        const struct window *win = &windows[w];
        uint64_t span = win->to > win->from ? win->to - win->from : 0, covered = 0, at = win->from;

        if (!win->outside)
                return span;
        /* Sweep: the earliest start at or after `at` among the inside windows, clipped to win. */
        for (;;) {
                uint64_t lo = UINT64_MAX, hi = 0;

                for (size_t x = 0; x < w; x++) {
                        uint64_t a = windows[x].from > at ? windows[x].from : at;
                        uint64_t z = windows[x].to < win->to ? windows[x].to : win->to;

                        if (windows[x].outside || z <= a)
                                continue;
                        if (a < lo || (a == lo && z > hi)) {
                                lo = a;
                                hi = z;
                        }
                }
                if (lo == UINT64_MAX)
                        break;
                /* Extend over whatever overlaps it. */
                for (bool grew = true; grew;) {
                        grew = false;
                        for (size_t x = 0; x < w; x++) {
                                uint64_t z = windows[x].to < win->to ? windows[x].to : win->to;

                                if (!windows[x].outside && windows[x].from <= hi && z > hi) {
                                        hi = z;
                                        grew = true;
                                }
                        }
                }
                covered += hi - lo;
                at = hi;
        }
        return span > covered ? span - covered : 0;
}

struct results {
        uint64_t wall_ns;
        uint64_t total, cycles, unprovoked, provoked[_P_MAX], provoked_total;
        unsigned dead_clients;
        struct stats overall, per_class[_C_MAX];
        struct window windows[4];
        size_t n_windows;
        struct rss_fd before, after;
        bool fds_settled;
        uint64_t settle_ms;
        uint64_t daemon_cpu_ticks;
        struct json_object *stats_before, *stats_after;
        double load_before[3], load_after[3];
        double bench_cpu_s;
        uint64_t events[N_EVENT_NAMES + 1], events_total;
        bool stream_alive;
        /* the per-second timeline: completions, max latency */
        uint64_t *tl_count, *tl_max;
        size_t n_tl;
        char failures[2048];
        size_t failures_len;
        char version[64], backend[64];
        uint64_t max_pending;
};

static void fail(struct results *res, const char *fmt, ...) _printf_(2, 3);
static void fail(struct results *res, const char *fmt, ...) {
        va_list ap;
        int n;

        if (res->failures_len + 4 >= sizeof(res->failures))
                return;
        if (res->failures_len > 0)
                res->failures_len += (size_t) snprintf(res->failures + res->failures_len,
                                                       sizeof(res->failures) - res->failures_len, "; ");
        va_start(ap, fmt);
        n = vsnprintf(res->failures + res->failures_len, sizeof(res->failures) - res->failures_len, fmt, ap);
        va_end(ap);
        if (n > 0)
                res->failures_len += (size_t) n;
        if (res->failures_len >= sizeof(res->failures))
                res->failures_len = sizeof(res->failures) - 1;
}

static int compute(struct bench *b, struct results *res) {
        size_t total = 0, n;
        uint64_t *lat;

        for (unsigned i = 0; i < b->n_clients; i++)
                total += b->clients[i].n_samples;
        lat = malloc((total ? total : 1) * sizeof(*lat));
        if (!lat)
                return -ENOMEM;

        n = 0;
        for (unsigned i = 0; i < b->n_clients; i++)
                for (size_t j = 0; j < b->clients[i].n_samples; j++)
                        lat[n++] = b->clients[i].samples[j].lat;
        stats_compute(lat, n, &res->overall);

        for (int k = 0; k < _C_MAX; k++) {
                n = 0;
                for (unsigned i = 0; i < b->n_clients; i++)
                        for (size_t j = 0; j < b->clients[i].n_samples; j++)
                                if (b->clients[i].samples[j].cls == k)
                                        lat[n++] = b->clients[i].samples[j].lat;
                stats_compute(lat, n, &res->per_class[k]);
        }

        for (size_t w = 0; w < res->n_windows; w++) {
                struct window *win = &res->windows[w];

                n = 0;
                for (unsigned i = 0; i < b->n_clients; i++)
                        for (size_t j = 0; j < b->clients[i].n_samples; j++) {
                                const struct sample *s = &b->clients[i].samples[j];
                                bool in = s->start >= win->from && s->start < win->to;

                                for (size_t x = 0; in && win->outside && x < w; x++)
                                        if (!res->windows[x].outside && s->start >= res->windows[x].from &&
                                            s->start < res->windows[x].to)
                                                in = false;
                                if (in)
                                        lat[n++] = s->lat;
                        }
                stats_compute(lat, n, &win->st);
                win->span = window_span(res->windows, w);
        }
        free(lat);

        res->n_tl = (size_t) (res->wall_ns / NSEC_PER_SEC) + 1;
        res->tl_count = calloc(res->n_tl, sizeof(uint64_t));
        res->tl_max = calloc(res->n_tl, sizeof(uint64_t));
        if (!res->tl_count || !res->tl_max)
                return -ENOMEM;
        for (unsigned i = 0; i < b->n_clients; i++)
                for (size_t j = 0; j < b->clients[i].n_samples; j++) {
                        const struct sample *s = &b->clients[i].samples[j];
                        size_t k = (size_t) ((s->start + s->lat) / NSEC_PER_SEC);

                        if (k >= res->n_tl)
                                k = res->n_tl - 1;
                        res->tl_count[k]++;
                        if (s->lat > res->tl_max[k])
                                res->tl_max[k] = s->lat;
                }
        return 0;
}

static void print_stats_row(const char *label, const struct stats *st, double wall_s) {
        if (st->n == 0) {
                printf("  %-28s %9s\n", label, "0");
                return;
        }
        printf("  %-28s %9zu %9.0f %9.1f %9.1f %9.1f %10.1f\n", label, st->n, (double) st->n / wall_s, st->mean_us,
               st->p50_us, st->p99_us, st->max_us);
}

static void print_slow(const char *label, const struct slow *s) {
        printf("  %-18s", label);
        if (s->t_ready == UINT64_MAX) {
                printf(" did not run%s%s\n", s->failure[0] ? ": " : "", s->failure);
                return;
        }
        printf(" from %.2fs: ", sec(s->t_ready));
        if (s->t_dropped == UINT64_MAX)
                printf("not dropped");
        else
                printf("dropped by brokerd at %.2fs (after %.2fs)%s", sec(s->t_dropped), sec(s->t_dropped - s->t_ready),
                       s->eof_confirmed ? ", EOF confirmed" : "");
        if (s->failure[0])
                printf(" [%s]", s->failure);
        printf("\n");
}

static double mib(uint64_t kib) {
        return (double) kib / 1024.0;
}

static void print_text(const struct bench *b, const struct results *res) {
        double wall = sec(res->wall_ns);
        long hz = sysconf(_SC_CLK_TCK);

        printf("brokerd %s, %s backend (pid %d, max_pending %" PRIu64 " bytes); %u clients x %u requests, "
               "seed %" PRIu64 "\n",
               res->version, res->backend, (int) b->pid, res->max_pending, b->n_clients, b->n_requests, b->seed);
        printf("load average before %.2f %.2f %.2f, after %.2f %.2f %.2f (%ld CPUs); daemon CPU %.1fs (%.0f%% of one "
               "CPU), bench CPU %.1fs\n\n",
               res->load_before[0], res->load_before[1], res->load_before[2], res->load_after[0], res->load_after[1],
               res->load_after[2], sysconf(_SC_NPROCESSORS_ONLN), hz > 0 ? (double) res->daemon_cpu_ticks / hz : 0,
               hz > 0 && wall > 0 ? 100.0 * (double) res->daemon_cpu_ticks / hz / wall : 0, res->bench_cpu_s);

        printf("throughput: %" PRIu64 " requests in %.2fs = %.0f requests/s; %" PRIu64 " grant cycles = %.0f cycles/s\n\n",
               res->total, wall, wall > 0 ? (double) res->total / wall : 0, res->cycles,
               wall > 0 ? (double) res->cycles / wall : 0);
        printf("  %-28s %9s %9s %9s %9s %9s %10s\n", "latency (us)", "count", "req/s", "mean", "p50", "p99", "max");
        print_stats_row("all requests", &res->overall, wall);
        for (int k = 0; k < _C_MAX; k++)
                print_stats_row(classes[k].label, &res->per_class[k], wall);

        printf("\nerrors: %" PRIu64 " unprovoked; %" PRIu64 " provoked, all as expected (invalid_token %" PRIu64
               ", token_used %" PRIu64 ", no_such_region %" PRIu64 ")",
               res->unprovoked, res->provoked_total, res->provoked[P_BAD_TOKEN], res->provoked[P_TOKEN_USED],
               res->provoked[P_GONE]);
        printf("; daemon counted %" PRIu64 " error replies\n",
               get_u64(res->stats_after, "errors") - get_u64(res->stats_before, "errors"));

        printf("admin event stream: %" PRIu64 " events (", res->events_total);
        for (size_t i = 0; i < N_EVENT_NAMES; i++)
                printf("%s%s %" PRIu64, i ? ", " : "", event_names[i], res->events[i]);
        printf("), %s\n", res->stream_alive ? "still connected at the end" : "NOT connected at the end");

        if (b->slow_clients) {
                printf("\nslow clients:\n");
                print_slow("stuck subscriber", &b->stuck);
                if (b->stuck.t_dropped != UINT64_MAX)
                        printf("  %-18s  it never read %.0f KiB the kernel had delivered; brokerd's queue held the rest\n",
                               "", (double) b->stuck.unread / 1024);
                print_slow("flooder", &b->flooder);
                if (b->flooder.t_ready != UINT64_MAX)
                        printf("  %-18s  %" PRIu64 " requests pipelined, %.0f KiB of replies never read\n", "",
                               b->flooder.sent, (double) b->flooder.unread / 1024);
                print_slow("half-line client", &b->half);
                if (b->half.t_dropped == UINT64_MAX)
                        printf("  %-18s  held %" PRIu64 " bytes of a request for the whole run; %s\n", "", b->half.sent,
                               b->half.answered ? "finishing its line afterwards got its answer" : "NO answer afterwards");
                printf("\n  %-28s %9s %9s %9s %9s %9s %10s\n", "others' latency (us)", "count", "req/s", "mean", "p50",
                       "p99", "max");
                for (size_t w = 0; w < res->n_windows; w++) {
                        double span = sec(res->windows[w].span);
                        print_stats_row(res->windows[w].label, &res->windows[w].st, span > 0 ? span : 1);
                }
        }

        printf("\ndaemon: RSS %.1f MiB before, %.1f MiB peak (at %.1fs), %.1f MiB after; fds %" PRIu64 " before, %" PRIu64
               " peak (at %.1fs), %" PRIu64 " after (%s in %" PRIu64 " ms); %" PRIu64 " samples\n",
               mib(res->before.rss_kib), mib(b->peak.rss_kib), sec(b->t_peak_rss), mib(res->after.rss_kib),
               res->before.fds, b->peak.fds, sec(b->t_peak_fds), res->after.fds,
               res->fds_settled ? "settled" : "NOT settled", res->settle_ms, b->n_daemon_samples);
        printf("daemon counters: requests +%" PRIu64 ", dropped_subscribers +%" PRIu64 ", regions live %" PRIu64
               ", revoking %" PRIu64 ", connections %" PRIu64 "\n",
               get_u64(res->stats_after, "requests") - get_u64(res->stats_before, "requests"),
               get_u64(res->stats_after, "dropped_subscribers") - get_u64(res->stats_before, "dropped_subscribers"),
               get_u64(res->stats_after, "regions_live"), get_u64(res->stats_after, "regions_revoking"),
               get_u64(res->stats_after, "connections"));

        printf("\nresult: %s%s\n", res->failures_len ? "FAIL: " : "PASS", res->failures_len ? res->failures : "");
}

static struct json_object *stats_json(const struct stats *st, double span_s) {
        struct json_object *o = json_object_new_object();
        int r = o ? 0 : -ENOMEM;

        bench_json_put(o, "count", json_object_new_uint64(st->n), &r);
        bench_json_put(o, "per_sec", json_object_new_double(span_s > 0 ? (double) st->n / span_s : 0), &r);
        bench_json_put(o, "mean_us", json_object_new_double(st->mean_us), &r);
        bench_json_put(o, "p50_us", json_object_new_double(st->p50_us), &r);
        bench_json_put(o, "p99_us", json_object_new_double(st->p99_us), &r);
        bench_json_put(o, "max_us", json_object_new_double(st->max_us), &r);
        if (r < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static struct json_object *slow_json(const struct slow *s, bool half) {
        struct json_object *o = json_object_new_object();
        int r = o ? 0 : -ENOMEM;

        bench_json_put(o, "ran", json_object_new_boolean(s->t_ready != UINT64_MAX), &r);
        if (r >= 0 && s->t_ready != UINT64_MAX)
                r = bench_json_add(o, "start_s", json_object_new_double(sec(s->t_ready)));
        bench_json_put(o, "dropped", json_object_new_boolean(s->t_dropped != UINT64_MAX), &r);
        if (r >= 0 && s->t_dropped != UINT64_MAX)
                r = bench_json_add(o, "dropped_at_s", json_object_new_double(sec(s->t_dropped)));
        bench_json_put(o, "eof_confirmed", json_object_new_boolean(s->eof_confirmed), &r);
        bench_json_put(o, half ? "bytes_sent" : "requests_sent", json_object_new_uint64(s->sent), &r);
        bench_json_put(o, "unread_bytes", json_object_new_uint64(s->unread), &r);
        if (r >= 0 && half)
                r = bench_json_add(o, "answered_after", json_object_new_boolean(s->answered));
        if (r >= 0 && s->failure[0])
                r = bench_json_add(o, "failure", json_object_new_string(s->failure));
        if (r < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

static int print_json(const struct bench *b, const struct results *res) {
        struct json_object *o = json_object_new_object(), *cls = json_object_new_object(), *ev = json_object_new_object(),
                           *daemon = json_object_new_object(), *slow = json_object_new_object(),
                           *win = json_object_new_object(), *tl = json_object_new_array(),
                           *errs = json_object_new_object(), *load = json_object_new_array();
        double wall = sec(res->wall_ns);
        long hz = sysconf(_SC_CLK_TCK);
        int r = o && cls && ev && daemon && slow && win && tl && errs && load ? 0 : -ENOMEM;

        for (int k = 0; r >= 0 && k < _C_MAX; k++)
                r = bench_json_add(cls, classes[k].key, stats_json(&res->per_class[k], wall));
        for (size_t i = 0; r >= 0 && i < N_EVENT_NAMES; i++)
                r = bench_json_add(ev, event_names[i], json_object_new_uint64(res->events[i]));
        bench_json_put(ev, "other", json_object_new_uint64(res->events[N_EVENT_NAMES]), &r);
        bench_json_put(ev, "total", json_object_new_uint64(res->events_total), &r);
        bench_json_put(ev, "connected_at_end", json_object_new_boolean(res->stream_alive), &r);
        for (size_t w = 0; r >= 0 && w < res->n_windows; w++) {
                struct json_object *x = stats_json(&res->windows[w].st, sec(res->windows[w].span));
                if (x) {
                        r = bench_json_add(x, "from_s", json_object_new_double(sec(res->windows[w].from)));
                        bench_json_put(x, "to_s", json_object_new_double(sec(res->windows[w].to)), &r);
                }
                bench_json_put(win, res->windows[w].key, x, &r);
        }
        if (r >= 0 && b->slow_clients) {
                r = bench_json_add(slow, "stuck_subscriber", slow_json(&b->stuck, false));
                bench_json_put(slow, "flooder", slow_json(&b->flooder, false), &r);
                bench_json_put(slow, "half_line", slow_json(&b->half, true), &r);
                bench_json_put(slow, "others_latency", json_object_get(win), &r);
        }
        for (size_t i = 0; r >= 0 && i < res->n_tl; i++) {
                struct json_object *x = json_object_new_object();

                if (!x) {
                        r = -ENOMEM;
                        break;
                }
                r = bench_json_add(x, "second", json_object_new_uint64(i));
                bench_json_put(x, "requests", json_object_new_uint64(res->tl_count[i]), &r);
                bench_json_put(x, "max_us", json_object_new_double((double) res->tl_max[i] / 1e3), &r);
                if (r >= 0 && i < b->n_timeline) {
                        r = bench_json_add(x, "rss_kib", json_object_new_uint64(b->timeline[i].rss_kib));
                        bench_json_put(x, "fds", json_object_new_uint64(b->timeline[i].fds), &r);
                }
                if (r < 0 || json_object_array_add(tl, x) < 0) {
                        json_object_put(x);
                        r = -ENOMEM;
                }
        }
        bench_json_put(daemon, "pid", json_object_new_int(b->pid), &r);
        bench_json_put(daemon, "rss_kib_before", json_object_new_uint64(res->before.rss_kib), &r);
        bench_json_put(daemon, "rss_kib_peak", json_object_new_uint64(b->peak.rss_kib), &r);
        bench_json_put(daemon, "rss_kib_after", json_object_new_uint64(res->after.rss_kib), &r);
        bench_json_put(daemon, "fds_before", json_object_new_uint64(res->before.fds), &r);
        bench_json_put(daemon, "fds_peak", json_object_new_uint64(b->peak.fds), &r);
        bench_json_put(daemon, "fds_after", json_object_new_uint64(res->after.fds), &r);
        bench_json_put(daemon, "fds_settled_ms", json_object_new_uint64(res->settle_ms), &r);
        bench_json_put(daemon, "samples", json_object_new_uint64(b->n_daemon_samples), &r);
        bench_json_put(daemon, "cpu_s", json_object_new_double(hz > 0 ? (double) res->daemon_cpu_ticks / hz : 0), &r);
        bench_json_put(daemon, "stats_before", json_object_get(res->stats_before), &r);
        bench_json_put(daemon, "stats_after", json_object_get(res->stats_after), &r);
        bench_json_put(errs, "unprovoked", json_object_new_uint64(res->unprovoked), &r);
        for (int k = 0; r >= 0 && k < _P_MAX; k++)
                r = bench_json_add(errs, provoked_names[k], json_object_new_uint64(res->provoked[k]));
        bench_json_put(errs, "daemon_error_replies", json_object_new_uint64(get_u64(res->stats_after, "errors") -
                                                                    get_u64(res->stats_before, "errors")), &r);
        for (int i = 0; r >= 0 && i < 3; i++) {
                struct json_object *x = json_object_new_double(res->load_before[i]);

                if (!x || json_object_array_add(load, x) < 0) {
                        json_object_put(x);
                        r = -ENOMEM;
                }
        }

        bench_json_put(o, "version", json_object_new_string(res->version), &r);
        bench_json_put(o, "backend", json_object_new_string(res->backend), &r);
        bench_json_put(o, "clients", json_object_new_uint64(b->n_clients), &r);
        bench_json_put(o, "requests_per_client", json_object_new_uint64(b->n_requests), &r);
        bench_json_put(o, "seed", json_object_new_uint64(b->seed), &r);
        bench_json_put(o, "cpus", json_object_new_int64(sysconf(_SC_NPROCESSORS_ONLN)), &r);
        bench_json_put(o, "loadavg_before", load, &r);
        load = NULL;
        bench_json_put(o, "loadavg_after_1min", json_object_new_double(res->load_after[0]), &r);
        bench_json_put(o, "wall_s", json_object_new_double(wall), &r);
        bench_json_put(o, "requests", json_object_new_uint64(res->total), &r);
        bench_json_put(o, "requests_per_sec", json_object_new_double(wall > 0 ? (double) res->total / wall : 0), &r);
        bench_json_put(o, "cycles", json_object_new_uint64(res->cycles), &r);
        bench_json_put(o, "cycles_per_sec", json_object_new_double(wall > 0 ? (double) res->cycles / wall : 0), &r);
        bench_json_put(o, "latency", stats_json(&res->overall, wall), &r);
        bench_json_put(o, "per_class", cls, &r);
        cls = NULL;
        bench_json_put(o, "errors", errs, &r);
        errs = NULL;
        bench_json_put(o, "admin_events", ev, &r);
        ev = NULL;
        bench_json_put(o, "slow_clients", slow, &r);
        slow = NULL;
        bench_json_put(o, "daemon", daemon, &r);
        daemon = NULL;
        bench_json_put(o, "timeline", tl, &r);
        tl = NULL;
        bench_json_put(o, "passed", json_object_new_boolean(res->failures_len == 0), &r);
        if (r >= 0 && res->failures_len)
                r = bench_json_add(o, "failures", json_object_new_string(res->failures));
        json_object_put(cls);
        json_object_put(ev);
        json_object_put(daemon);
        json_object_put(slow);
        json_object_put(win);
        json_object_put(tl);
        json_object_put(errs);
        json_object_put(load);
        return bench_json_emit(o, r);
}

/* ---- main ---- */


static void help(void) {
        printf("Usage: load-bench --socket PATH --admin-socket PATH --pid PID [OPTIONS]\n"
               "\n"
               "Runs N concurrent agents x M requests (broker.info, route.lookup, region.get,\n"
               "region.list, share/attach/revoke/release cycles, a few provoked errors) against a\n"
               "running brokerd, with an admin streaming every event and three slow clients (a stuck\n"
               "subscriber, a flooder that never reads, a half-line client), and samples the daemon's\n"
               "RSS and fds. The caller must act for " OWNER " and " PEER ", and brokerd's\n"
               "--max-connections-per-uid must allow N + %u connections of the caller's uid.\n"
               "Prints figures; exits 1 on an unprovoked error, a slow client not dropped, a leak.\n"
               "\n"
               "  --socket PATH          the agent socket\n"
               "  --admin-socket PATH    the admin socket\n"
               "  --pid PID              brokerd's pid (/proc/PID/status, /proc/PID/fd)\n"
               "  --clients N            concurrent agent connections (default %u)\n"
               "  --requests M           requests per client (default %u)\n"
               "  --seed S               of the request mix (default 1)\n"
               "  --no-slow-clients      no stuck subscriber, flooder or half-line client\n"
               "  --grant-only           every request a grant cycle step (share, attach, revoke,\n"
               "                         release): durable steps per second (group commit)\n"
               "  --rss-peak-limit MiB   fail if the daemon's RSS grows more than this during the run (%u)\n"
               "  --rss-after-limit MiB  fail if it stays more than this above the baseline after (%u)\n"
               "  --json                 print a JSON object instead of the table\n"
               "  -h, --help             this text\n",
               EXTRA_CONNECTIONS, DEFAULT_CLIENTS, DEFAULT_REQUESTS, DEFAULT_RSS_PEAK_MIB, DEFAULT_RSS_AFTER_MIB);
}

static int daemon_info(struct bdc *c, struct results *res, uint64_t *ret_max_conn) {
        struct json_object *result = NULL, *limits;
        int r;

        r = bench_daemon_info(c, res->version, sizeof(res->version), res->backend, sizeof(res->backend), &result);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(result, "limits", &limits)) {
                *ret_max_conn = get_u64(limits, "max_connections_per_uid");
                res->max_pending = get_u64(limits, "max_pending_bytes");
        }
        json_object_put(result);
        return 0;
}
static void slow_init(struct slow *s) {
        *s = (struct slow) { .fd = -EBADF, .t_ready = UINT64_MAX, .t_dropped = UINT64_MAX };
}

static void check(const struct bench *b, struct results *res) {
        uint64_t want = (uint64_t) b->n_clients * b->n_requests;
        uint64_t daemon_errors = get_u64(res->stats_after, "errors") - get_u64(res->stats_before, "errors");

        if (res->unprovoked > 0)
                fail(res, "%" PRIu64 " unprovoked errors", res->unprovoked);
        if (res->dead_clients > 0)
                fail(res, "%u clients lost their connection", res->dead_clients);
        if (res->total != want)
                fail(res, "%" PRIu64 " of %" PRIu64 " requests done", res->total, want);
        if (daemon_errors != res->provoked_total)
                fail(res, "brokerd sent %" PRIu64 " error replies, the bench provoked %" PRIu64, daemon_errors,
                     res->provoked_total);
        if (!res->stream_alive)
                fail(res, "the admin event stream was %s%s%s", b->stream_dropped ? "dropped" : "lost",
                     b->stream_failure[0] ? ": " : "", b->stream_failure);
        if (res->events[EV_RECLAIMED] != res->cycles)
                fail(res, "the admin heard %" PRIu64 " region.reclaimed for %" PRIu64 " cycles", res->events[EV_RECLAIMED],
                     res->cycles);
        if (get_u64(res->stats_after, "regions_live") || get_u64(res->stats_after, "regions_revoking"))
                fail(res, "regions left: %" PRIu64 " live, %" PRIu64 " revoking", get_u64(res->stats_after, "regions_live"),
                     get_u64(res->stats_after, "regions_revoking"));
        if (!res->fds_settled)
                fail(res, "brokerd's fds did not come back to %" PRIu64 " (%" PRIu64 ")", res->before.fds, res->after.fds);
        if (b->peak.rss_kib > res->before.rss_kib + b->rss_peak_limit_kib)
                fail(res, "RSS peaked %.1f MiB above the baseline (limit %.0f)", mib(b->peak.rss_kib - res->before.rss_kib),
                     mib(b->rss_peak_limit_kib));
        if (res->after.rss_kib > res->before.rss_kib + b->rss_after_limit_kib)
                fail(res, "RSS stayed %.1f MiB above the baseline (limit %.0f)",
                     mib(res->after.rss_kib - res->before.rss_kib), mib(b->rss_after_limit_kib));
        if (!b->slow_clients)
                return;
        if (b->stuck.t_dropped == UINT64_MAX || !b->stuck.eof_confirmed)
                fail(res, "the stuck subscriber was not dropped%s%s", b->stuck.failure[0] ? ": " : "", b->stuck.failure);
        if (get_u64(res->stats_after, "dropped_subscribers") - get_u64(res->stats_before, "dropped_subscribers") < 1)
                fail(res, "brokerd counted no dropped subscriber");
        if (b->flooder.t_dropped == UINT64_MAX || !b->flooder.eof_confirmed)
                fail(res, "the flooder was not dropped%s%s", b->flooder.failure[0] ? ": " : "", b->flooder.failure);
        /* brokerd has no read timeout: keeping a half line is allowed, but it must then be served. */
        if (b->half.t_dropped == UINT64_MAX && !b->half.answered)
                fail(res, "the half-line client %s", b->half.failure[0] ? b->half.failure : "got no answer");
}

int main(int argc, char *argv[]) {
        enum {
                ARG_SOCKET = 0x100, ARG_ADMIN_SOCKET, ARG_PID, ARG_CLIENTS, ARG_REQUESTS, ARG_SEED, ARG_NO_SLOW,
                ARG_RSS_PEAK, ARG_RSS_AFTER, ARG_JSON, ARG_GRANT_ONLY,
        };
        static const struct option options[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "admin-socket", required_argument, NULL, ARG_ADMIN_SOCKET },
                { "pid", required_argument, NULL, ARG_PID },
                { "clients", required_argument, NULL, ARG_CLIENTS },
                { "requests", required_argument, NULL, ARG_REQUESTS },
                { "seed", required_argument, NULL, ARG_SEED },
                { "no-slow-clients", no_argument, NULL, ARG_NO_SLOW },
                { "grant-only", no_argument, NULL, ARG_GRANT_ONLY },
                { "rss-peak-limit", required_argument, NULL, ARG_RSS_PEAK },
                { "rss-after-limit", required_argument, NULL, ARG_RSS_AFTER },
                { "json", no_argument, NULL, ARG_JSON },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        struct bench b = {
                .n_clients = DEFAULT_CLIENTS,
                .n_requests = DEFAULT_REQUESTS,
                .seed = 1,
                .slow_clients = true,
                .rss_peak_limit_kib = DEFAULT_RSS_PEAK_MIB * 1024,
                .rss_after_limit_kib = DEFAULT_RSS_AFTER_MIB * 1024,
                .sample_lock = PTHREAD_MUTEX_INITIALIZER,
        };
        struct results res = {};
        struct bdc *stats = NULL;
        bool barrier = false;
        uint64_t v, max_conn = 0, need, cpu0, t_settle;
        struct rusage ru;
        int c, r;

        bench_program = "load-bench";
        slow_init(&b.stuck);
        slow_init(&b.flooder);
        slow_init(&b.half);

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_SOCKET:
                        b.socket_path = optarg;
                        break;
                case ARG_ADMIN_SOCKET:
                        b.admin_path = optarg;
                        break;
                case ARG_PID:
                        if (bench_parse_u64(optarg, "--pid", 1, INT32_MAX, &v) < 0)
                                return 2;
                        b.pid = (pid_t) v;
                        break;
                case ARG_CLIENTS:
                        if (bench_parse_unsigned(optarg, "--clients", 1, MAX_CLIENTS, &b.n_clients) < 0)
                                return 2;
                        break;
                case ARG_REQUESTS:
                        if (bench_parse_unsigned(optarg, "--requests", 1, MAX_REQUESTS, &b.n_requests) < 0)
                                return 2;
                        break;
                case ARG_SEED:
                        if (bench_parse_u64(optarg, "--seed", 0, UINT64_MAX, &b.seed) < 0)
                                return 2;
                        break;
                case ARG_GRANT_ONLY:
                        b.grant_only = true;
                        break;
                case ARG_NO_SLOW:
                        b.slow_clients = false;
                        break;
                case ARG_RSS_PEAK:
                        if (bench_parse_u64(optarg, "--rss-peak-limit", 1, 1024 * 1024, &v) < 0)
                                return 2;
                        b.rss_peak_limit_kib = v * 1024;
                        break;
                case ARG_RSS_AFTER:
                        if (bench_parse_u64(optarg, "--rss-after-limit", 0, 1024 * 1024, &v) < 0)
                                return 2;
                        b.rss_after_limit_kib = v * 1024;
                        break;
                case ARG_JSON:
                        b.json = true;
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        return 2;
                }
        }
        if (optind < argc || !b.socket_path || !b.admin_path || b.pid <= 0) {
                fprintf(stderr, "load-bench: --socket, --admin-socket and --pid are required, and nothing else (--help)\n");
                return 2;
        }

        r = bdc_connect(b.admin_path, &stats);
        if (r < 0) {
                fprintf(stderr, "load-bench: cannot connect to %s: %s\n", b.admin_path, strerror(-r));
                goto out;
        }
        r = daemon_info(stats, &res, &max_conn);
        if (r < 0)
                goto out;
        need = b.n_clients + EXTRA_CONNECTIONS;
        if (max_conn < need) {
                fprintf(stderr, "load-bench: brokerd allows %" PRIu64 " connections per uid, the bench needs %" PRIu64
                                " (start it with --max-connections-per-uid %" PRIu64 " or more)\n",
                        max_conn, need, need);
                r = -EUSERS;
                goto out;
        }

        r = admin_stats(stats, &res.stats_before);
        if (r >= 0)
                r = daemon_rss_fd(b.pid, &res.before);
        if (r < 0) {
                fprintf(stderr, "load-bench: cannot sample brokerd (pid %d): %s\n", (int) b.pid, strerror(-r));
                goto out;
        }
        if (getloadavg(res.load_before, 3) < 0)
                memset(res.load_before, 0, sizeof(res.load_before));

        /* The admin's event stream, for the whole run. */
        r = bdc_connect(b.admin_path, &b.stream);
        if (r >= 0)
                r = bdc_subscribe(b.stream, NULL, 0, NULL);
        if (r < 0) {
                fprintf(stderr, "load-bench: admin events.subscribe: %s\n", strerror(-r));
                goto out;
        }
        r = -pthread_create(&b.streamer, NULL, streamer_main, &b);
        if (r < 0)
                goto out;
        b.streamer_started = true;

        if (b.slow_clients) {
                r = half_setup(&b);
                if (r < 0) {
                        fprintf(stderr, "load-bench: half-line client: %s\n", strerror(-r));
                        goto out;
                }
        }

        b.clients = calloc(b.n_clients, sizeof(*b.clients));
        if (!b.clients) {
                r = -ENOMEM;
                goto out;
        }
        for (unsigned i = 0; i < b.n_clients; i++) {
                struct client *cl = &b.clients[i];

                cl->bench = &b;
                cl->index = i;
                cl->rng = (b.seed + 1) * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t) (i + 1) * UINT64_C(0xbf58476d1ce4e5b9);
                if (cl->rng == 0)
                        cl->rng = 1;
                cl->samples = calloc(b.n_requests, sizeof(*cl->samples));
                if (!cl->samples) {
                        r = -ENOMEM;
                        goto out;
                }
                r = bdc_connect(b.socket_path, &cl->bdc);
                if (r < 0) {
                        fprintf(stderr, "load-bench: client %u cannot connect to %s: %s\n", i, b.socket_path,
                                strerror(-r));
                        goto out;
                }
        }

        r = -pthread_barrier_init(&b.barrier, NULL, b.n_clients + 1);
        if (r < 0)
                goto out;
        barrier = true;
        for (unsigned i = 0; i < b.n_clients; i++) {
                r = -pthread_create(&b.clients[i].thread, NULL, client_main, &b.clients[i]);
                if (r < 0) {
                        fprintf(stderr, "load-bench: pthread_create: %s\n", strerror(-r));
                        /* The barrier would never open: nothing to recover. */
                        _exit(1);
                }
                b.clients[i].started = true;
        }

        cpu0 = daemon_cpu_ticks(b.pid);
        b.t0 = bench_now_nsec();
        (void) pthread_barrier_wait(&b.barrier);

        if (pthread_create(&b.sampler, NULL, sampler_main, &b) == 0)
                b.sampler_started = true;
        if (b.slow_clients) {
                if (pthread_create(&b.stuck.thread, NULL, stuck_main, &b) == 0)
                        b.stuck.started = true;
                if (pthread_create(&b.half.thread, NULL, half_main, &b) == 0)
                        b.half.started = true;
                if (pthread_create(&b.flooder.thread, NULL, flooder_main, &b) == 0)
                        b.flooder.started = true;
        }

        for (unsigned i = 0; i < b.n_clients; i++) {
                (void) pthread_join(b.clients[i].thread, NULL);
                b.clients[i].started = false;
        }
        res.wall_ns = since_t0(&b);
        res.daemon_cpu_ticks = daemon_cpu_ticks(b.pid) - cpu0;
        atomic_store(&b.load_done, true);

        for (unsigned i = 0; i < b.n_clients; i++) {
                const struct client *cl = &b.clients[i];

                res.total += cl->n_samples;
                res.cycles += cl->cycles;
                res.unprovoked += cl->unprovoked;
                res.dead_clients += cl->dead;
                for (int k = 0; k < _P_MAX; k++) {
                        res.provoked[k] += cl->provoked[k];
                        res.provoked_total += cl->provoked[k];
                }
        }

        if (b.slow_clients) {
                if (b.flooder.started) {
                        (void) pthread_join(b.flooder.thread, NULL);
                        b.flooder.started = false;
                        if (b.flooder.t_dropped != UINT64_MAX)
                                drain_to_eof(&b.flooder);
                }
                if (b.half.started) {
                        (void) pthread_join(b.half.thread, NULL);
                        b.half.started = false;
                        half_finish(&b);
                }
        }

        /* Let the stream catch up: one region.reclaimed per cycle (or 10s of silence). */
        for (uint64_t deadline = bench_now_nsec() + SETTLE_TIMEOUT_MS * NSEC_PER_MSEC; bench_now_nsec() < deadline;) {
                if (atomic_load(&b.events[EV_RECLAIMED]) >= res.cycles)
                        break;
                (void) poll(NULL, 0, SAMPLE_INTERVAL_MS);
        }
        atomic_store(&b.streamer_stop, true);
        (void) pthread_join(b.streamer, NULL);
        b.streamer_started = false;
        if (b.stuck.started) {
                (void) pthread_join(b.stuck.thread, NULL);
                b.stuck.started = false;
                if (b.stuck.t_dropped != UINT64_MAX)
                        drain_to_eof(&b.stuck);
        }
        for (size_t i = 0; i <= N_EVENT_NAMES; i++) {
                res.events[i] = atomic_load(&b.events[i]);
                res.events_total += res.events[i];
        }
        if (!b.stream_failure[0]) {
                struct json_object *o = NULL;

                res.stream_alive = admin_stats(b.stream, &o) >= 0;
                json_object_put(o);
        }

        /* Everything of ours but the stats connection goes; brokerd must come back to its baseline. */
        for (unsigned i = 0; i < b.n_clients; i++) {
                bdc_close(b.clients[i].bdc);
                b.clients[i].bdc = NULL;
        }
        bdc_close(b.stream);
        b.stream = NULL;
        closep(&b.stuck.fd);
        closep(&b.flooder.fd);
        closep(&b.half.fd);
        b.stuck.fd = b.flooder.fd = b.half.fd = -EBADF;

        t_settle = bench_now_nsec();
        for (;;) {
                r = daemon_rss_fd(b.pid, &res.after);
                if (r < 0) {
                        fprintf(stderr, "load-bench: cannot sample brokerd (pid %d) after the run: %s\n", (int) b.pid,
                                strerror(-r));
                        goto out;
                }
                if (res.after.fds <= res.before.fds) {
                        res.fds_settled = res.after.fds == res.before.fds;
                        break;
                }
                if (bench_now_nsec() - t_settle > SETTLE_TIMEOUT_MS * NSEC_PER_MSEC)
                        break;
                (void) poll(NULL, 0, SAMPLE_INTERVAL_MS);
        }
        res.settle_ms = (bench_now_nsec() - t_settle) / NSEC_PER_MSEC;
        atomic_store(&b.sampler_stop, true);
        if (b.sampler_started) {
                (void) pthread_join(b.sampler, NULL);
                b.sampler_started = false;
        }
        r = admin_stats(stats, &res.stats_after);
        if (r < 0)
                goto out;
        if (getloadavg(res.load_after, 3) < 0)
                memset(res.load_after, 0, sizeof(res.load_after));
        if (getrusage(RUSAGE_SELF, &ru) == 0)
                res.bench_cpu_s = (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6 +
                                  (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;

        if (b.slow_clients) {
                uint64_t end = res.wall_ns;
                const struct slow *const ss[] = { &b.flooder, &b.stuck };
                static const char *const keys[] = { "while_flooding", "while_subscriber_stuck" };
                static const char *const labels[] = { "while the flooder flooded", "while the subscriber stuck" };

                /* From its start until brokerd dropped it (or the end of the load). */
                for (size_t i = 0; i < ELEMENTSOF(ss); i++)
                        if (ss[i]->t_ready < end)
                                res.windows[res.n_windows++] = (struct window) {
                                        keys[i], labels[i], ss[i]->t_ready,
                                        ss[i]->t_dropped < end ? ss[i]->t_dropped : end,
                                };
                res.windows[res.n_windows++] = (struct window) {
                        "no_slow_client_but_half_line", "the rest (only the half-line)", 0, end, .outside = true,
                };
                res.windows[res.n_windows++] = (struct window) {
                        "whole_run", "whole run", 0, end,
                };
        }
        r = compute(&b, &res);
        if (r < 0)
                goto out;
        check(&b, &res);

        if (b.json)
                r = print_json(&b, &res);
        else
                print_text(&b, &res);
        if (r >= 0 && fflush(stdout) != 0)
                r = -errno;
        if (r >= 0 && res.failures_len > 0) {
                fprintf(stderr, "load-bench: FAIL: %s\n", res.failures);
                r = -EBADMSG;
        }

out:
        atomic_store(&b.load_done, true);
        atomic_store(&b.streamer_stop, true);
        atomic_store(&b.sampler_stop, true);
        if (b.sampler_started)
                (void) pthread_join(b.sampler, NULL);
        if (b.streamer_started)
                (void) pthread_join(b.streamer, NULL);
        if (b.clients) {
                for (unsigned i = 0; i < b.n_clients; i++) {
                        if (b.clients[i].started)
                                (void) pthread_join(b.clients[i].thread, NULL);
                        if (b.clients[i].bdc)
                                bdc_close(b.clients[i].bdc);
                        free(b.clients[i].samples);
                }
                free(b.clients);
        }
        if (barrier)
                (void) pthread_barrier_destroy(&b.barrier);
        if (b.stream)
                bdc_close(b.stream);
        closep(&b.stuck.fd);
        closep(&b.flooder.fd);
        closep(&b.half.fd);
        if (stats)
                bdc_close(stats);
        json_object_put(res.stats_before);
        json_object_put(res.stats_after);
        free(res.tl_count);
        free(res.tl_max);
        free(b.timeline);
        return r < 0 ? 1 : 0;
}
