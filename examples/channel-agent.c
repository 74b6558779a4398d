/* SPDX-License-Identifier: Apache-2.0 */
/*
 * channel-agent: the data path end to end, as two small agents in one program. It uses
 * libbrokerd-client for the region and its doorbells, and libbrokerd-channel for the messages.
 *
 *   channel-agent [--socket PATH] owner --owner D --device X --size S --peer P [--doorbells N]
 *                 [--revoke-after K]
 *   channel-agent [--socket PATH] peer --domain P --token T [--rounds N]
 *
 * The owner shares a region with doorbells and prints "region=<id> ... token.<P>=<token>"; the
 * peer attaches with that token. On region.joined the owner fetches its doorbells with the peer
 * (region.doorbells) and creates a channel over the region; the peer joins it. The peer sends
 * "ping i" for i = 1..N and the owner answers "pong i", alternating copy and zero-copy in each
 * direction, both blocking on the doorbells and the broker's socket at once; then the peer says
 * "bye", the owner answers "bye" (a close handshake: what the peer sent is read before it lets
 * go, since its release makes brokerd tell the owner it left, and cutting a departed party off
 * comes first), the peer frees the channel and releases the region, and brokerd takes the region
 * down (its last peer released it) while the owner waits for region.reclaimed. With
 * --revoke-after K the owner revokes the region after the K-th ping instead of answering it: the
 * peer is recalled, releases and ends; the owner sees region.left, its channel says EPIPE.
 * Each step is a line on stdout. Exit status: 0 success, 1 failure, 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "brokerd-channel.h"
#include "brokerd-client.h"

#define EXIT_USAGE 2
#define MAX_TEXT 256
/* The doorbells the owner asks for: "data ready" and "space free" (docs/protocol.md). */
#define DEFAULT_VECTORS 2

struct agent {
        struct bdc *c;
        bool owner;
        const char *self;  /* our domain */
        char partner[128]; /* the other end of the channel */
        uint64_t region, size;
        void *mem;
        struct bdc_doorbells bells;
        struct brokerd_channel *ch;
        bool recalled;  /* the broker wants the region back (peer) */
        bool revoked;   /* it took it: the memory may be gone (peer) */
        bool reclaimed; /* the region is over (owner) */
};

static int fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const char *name, const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "channel-agent: %s: ", name);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return -EIO;
}

static int fail_daemon(struct bdc_error *err, int r) {
        fail(bdc_error_name(err), "%s", err->message[0] ? err->message : strerror(-r));
        bdc_error_clear(err);
        return r;
}

static const char *event_string(const struct bdc_event *ev, const char *key) {
        struct json_object *v;

        if (!json_object_object_get_ex(ev->params, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static bool event_is_ours(const struct agent *ag, const struct bdc_event *ev) {
        struct json_object *v;

        return strncmp(ev->method, "region.", 7) == 0 && json_object_object_get_ex(ev->params, "region", &v) &&
               json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 0 &&
               json_object_get_uint64(v) == ag->region;
}

/* The channel's four ends toward partner: vector 0 "data ready", vector 1 "space free" (with
 * one vector, the same fd for both). */
static int channel_bells(const struct bdc_doorbells *d, const char *partner, struct brokerd_channel_doorbells *ret) {
        const struct bdc_doorbell *data, *space;

        data = bdc_doorbells_find(d, partner, 0);
        space = bdc_doorbells_find(d, partner, d->vectors > 1 ? 1 : 0);
        if (!data || !space)
                return fail("no_doorbells", "brokerd gave no doorbells with %s in region %" PRIu64, partner, d->region);
        *ret = (struct brokerd_channel_doorbells) {
                .ring_data = data->send_fd, .ring_space = space->send_fd,
                .wait_data = data->recv_fd, .wait_space = space->recv_fd,
        };
        return 0;
}

/* The owner: the partner joined the region; fetch our doorbells with it and lay the channel. */
static int owner_joined(struct agent *ag, const char *domain) {
        struct bdc_error err = BDC_ERROR_INIT;
        struct brokerd_channel_doorbells db;
        int r;

        if (ag->ch || strcmp(domain, ag->partner) != 0)
                return 0; /* this example talks to one peer */
        bdc_doorbells_clear(&ag->bells);
        r = bdc_doorbells(ag->c, ag->self, ag->region, &ag->bells, &err);
        if (r < 0)
                return fail_daemon(&err, r);
        r = channel_bells(&ag->bells, domain, &db);
        if (r < 0)
                return r;
        r = brokerd_channel_create(ag->mem, (size_t) ag->size, &(struct brokerd_channel_params) {}, &db, &ag->ch);
        if (r < 0)
                return fail("channel_failed", "creating the channel: %s", strerror(-r));
        printf("channel created with %s: %u doorbell vector(s), max_message=%" PRIu32 "\n", domain,
               ag->bells.vectors, brokerd_channel_max_message(ag->ch));
        return 0;
}

/* The broker's word about the region; a party that left is cut off before anything else. */
static int handle_event(struct agent *ag, const struct bdc_event *ev) {
        const char *m = ev->method + strlen("region."), *domain = event_string(ev, "domain");
        const char *reason = event_string(ev, "reason");
        bool about_us = !domain || strcmp(domain, ag->self) == 0;

        printf("event %s region=%" PRIu64 "%s%s%s%s\n", m, ag->region, domain ? " domain=" : "", domain ?: "",
               reason ? " reason=" : "", reason ?: "");
        if (strcmp(m, "joined") == 0 && domain && ag->owner)
                return owner_joined(ag, domain);
        if (strcmp(m, "left") == 0 && domain && strcmp(domain, ag->partner) == 0) {
                /* Stop listening to it first, then close its ends: it can no longer wake us. */
                if (ag->ch)
                        brokerd_channel_peer_gone(ag->ch);
                printf("cut off %s: %zu doorbell(s) closed\n", domain, bdc_doorbells_drop_peer(&ag->bells, domain));
        } else if (strcmp(m, "recall") == 0 && about_us && !ag->owner)
                ag->recalled = true;
        else if (strcmp(m, "revoked") == 0 && about_us && !ag->owner)
                ag->recalled = ag->revoked = true;
        else if (strcmp(m, "reclaimed") == 0)
                ag->reclaimed = true;
        return 0;
}

/* Handles the broker's next word, waiting up to timeout_ms for it (-ETIMEDOUT: none came). */
static int next_event(struct agent *ag, int timeout_ms) {
        struct bdc_event ev = {};
        int r;

        do
                r = bdc_next_event(ag->c, timeout_ms, &ev);
        while (r == -EINTR);
        if (r == -ETIMEDOUT)
                return r;
        if (r < 0)
                return fail("disconnected", "brokerd: %s", strerror(-r));
        if (event_is_ours(ag, &ev))
                r = handle_event(ag, &ev);
        bdc_event_clear(&ev);
        return r;
}

/* Handles what the broker said so far (also what came during a call), without waiting. */
static int drain_events(struct agent *ag) {
        int r;

        while ((r = next_event(ag, 0)) >= 0)
                ;
        return r == -ETIMEDOUT ? 0 : r;
}

/* Blocks until the broker says something, and handles it. */
static int wait_event(struct agent *ag) {
        return next_event(ag, -1);
}

/*
 * Runs try_once (a channel call with timeout 0) until it does not say -EAGAIN, sleeping
 * meanwhile on the channel's doorbells and the broker's socket together, so that a recall
 * (-ECANCELED) or the partner leaving (the channel's -EPIPE) ends the wait.
 */
static int channel_wait(struct agent *ag, int (*try_once)(struct agent *ag, void *arg), void *arg) {
        for (;;) {
                struct pollfd pfd[3] = {};
                int fds[2], n, r;

                r = drain_events(ag);
                if (r < 0)
                        return r;
                if (ag->recalled)
                        return -ECANCELED;
                r = try_once(ag, arg);
                if (r != -EAGAIN)
                        return r;
                n = brokerd_channel_poll_fds(ag->ch, fds);
                for (int i = 0; i < n; i++)
                        pfd[i] = (struct pollfd) { .fd = fds[i], .events = POLLIN };
                pfd[n++] = (struct pollfd) { .fd = bdc_fd(ag->c), .events = POLLIN };
                if (poll(pfd, (nfds_t) n, -1) < 0 && errno != EINTR)
                        return -errno;
        }
}

struct message {
        char text[MAX_TEXT];
        size_t len;
};

static int try_send(struct agent *ag, void *arg) {
        const struct message *m = arg;
        return brokerd_channel_send(ag->ch, m->text, m->len, 0);
}

static int try_reserve(struct agent *ag, void *arg) {
        const struct message *m = arg;
        void *buf;
        int r = brokerd_channel_reserve(ag->ch, m->len, &buf, 0);

        if (r < 0)
                return r;
        memcpy(buf, m->text, m->len); /* filled in place, in the region */
        return brokerd_channel_commit(ag->ch, m->len);
}

static int try_recv(struct agent *ag, void *arg) {
        struct message *m = arg;
        ssize_t k = brokerd_channel_recv(ag->ch, m->text, sizeof(m->text) - 1, 0);

        if (k < 0)
                return (int) k;
        m->len = (size_t) k;
        return 0;
}

static int try_peek(struct agent *ag, void *arg) {
        struct message *m = arg;
        const void *buf;
        size_t len;
        int r = brokerd_channel_peek(ag->ch, &buf, &len, 0);

        if (r < 0)
                return r;
        /* Read in place, but the peer can still write there: copy before trusting. */
        m->len = len < sizeof(m->text) - 1 ? len : sizeof(m->text) - 1;
        memcpy(m->text, buf, m->len);
        return brokerd_channel_consume(ag->ch);
}

static const char *how(bool zero_copy) {
        return zero_copy ? "zero-copy" : "copy";
}

static int say(struct agent *ag, bool zero_copy, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int say(struct agent *ag, bool zero_copy, const char *fmt, ...) {
        struct message m;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vsnprintf(m.text, sizeof(m.text), fmt, ap);
        va_end(ap);
        if (r < 0 || (size_t) r >= sizeof(m.text))
                return -EMSGSIZE;
        m.len = (size_t) r;
        r = channel_wait(ag, zero_copy ? try_reserve : try_send, &m);
        if (r < 0)
                return r;
        printf("sent \"%s\" (%s)\n", m.text, how(zero_copy));
        return 0;
}

static int hear(struct agent *ag, bool zero_copy, struct message *m) {
        int r = channel_wait(ag, zero_copy ? try_peek : try_recv, m);

        if (r < 0)
                return r;
        m->text[m->len] = 0;
        for (size_t i = 0; i < m->len; i++)
                if ((unsigned char) m->text[i] < 0x20 || m->text[i] == 0x7f)
                        m->text[i] = '.';
        printf("received \"%s\" (%s)\n", m->text, how(zero_copy));
        return 0;
}

static int connect_subscribed(const char *socket, const char *domain, struct agent *ag) {
        struct bdc_error err = BDC_ERROR_INIT;
        int r;

        r = bdc_connect(socket, &ag->c);
        if (r < 0)
                return fail("connection_failed", "%s", strerror(-r));
        /* Before share or attach, so that no joined/left/recall is missed. */
        r = bdc_subscribe(ag->c, &domain, 1, &err);
        if (r < 0)
                return fail_daemon(&err, r);
        return 0;
}

/* The owner ends the share: revoke as owner; its peer is recalled. */
static int owner_revoke(struct agent *ag) {
        struct bdc_error err = BDC_ERROR_INIT;
        int r;

        r = bdc_revoke(ag->c, ag->self, ag->region, 5000, false, &err);
        if (r == -ENOENT) {
                /* Over meanwhile (its last peer left): hear what the broker said about it first. */
                bdc_error_clear(&err);
                r = drain_events(ag);
                ag->reclaimed = true;
                return r;
        }
        if (r < 0)
                return fail_daemon(&err, r);
        printf("revoking region=%" PRIu64 "\n", ag->region);
        return 0;
}

struct owner_args {
        struct bdc_share_request req;
        struct bdc_peer peer;
        uint64_t revoke_after; /* 0: never */
};

/*
 * Answers pings until bye (answered with bye: *ret_closed), the partner's departure (EPIPE), or
 * the K-th ping with --revoke-after (*ret_revoked).
 */
static int owner_talk(struct agent *ag, const struct owner_args *o, bool *ret_revoked, bool *ret_closed) {
        int r;

        for (uint64_t i = 1;; i++) {
                struct message m;

                r = hear(ag, i % 2 == 1, &m);
                if (r >= 0 && strcmp(m.text, "bye") == 0) {
                        r = say(ag, false, "bye");
                        *ret_closed = r >= 0;
                        if (r >= 0)
                                return 0;
                }
                if (r >= 0 && i == o->revoke_after) {
                        /* Mid-conversation: the peer is recalled, and its departure cuts the channel. */
                        r = owner_revoke(ag);
                        if (r < 0)
                                return r;
                        *ret_revoked = true;
                        continue;
                }
                if (r >= 0)
                        r = say(ag, i % 2 == 1, "pong %" PRIu64 " to %s", i, ag->partner);
                if (r == -EPIPE) {
                        printf("channel: %s is gone (EPIPE)\n", ag->partner);
                        return 0;
                }
                if (r < 0)
                        return fail("channel_failed", "%s", strerror(-r));
        }
}

static int owner_run_channel(struct agent *ag, const struct owner_args *o) {
        bool revoked = false, closed = false;
        int r;

        while (!ag->ch && !ag->reclaimed) {
                r = wait_event(ag);
                if (r < 0)
                        return r;
        }
        if (!ag->ch)
                return fail("no_channel", "region %" PRIu64 " ended before %s joined", ag->region, ag->partner);
        r = owner_talk(ag, o, &revoked, &closed);
        /* A single-peer region whose peer's process died is over already; after a bye, the peer's
         * release ends it (a revoke now would race the peer reading our bye). */
        if (r >= 0 && !revoked && !closed && !ag->reclaimed)
                r = owner_revoke(ag);
        while (r >= 0 && !ag->reclaimed)
                r = wait_event(ag);
        if (r >= 0)
                printf("done: region=%" PRIu64 " reclaimed\n", ag->region);
        return r;
}

static int run_owner(struct agent *ag, const char *socket, const struct owner_args *o) {
        struct bdc_error err = BDC_ERROR_INIT;
        struct bdc_share_result res = { .fd = -1 };
        int r;

        ag->owner = true;
        ag->self = o->req.owner;
        snprintf(ag->partner, sizeof(ag->partner), "%s", o->peer.domain);
        r = connect_subscribed(socket, ag->self, ag);
        if (r < 0)
                return r;
        r = bdc_share(ag->c, &o->req, &res, &err);
        if (r < 0)
                return fail_daemon(&err, r);
        if (res.placement == BDC_PLACEMENT_BOUNCE || res.n_tokens != 1) {
                r = fail("no_region", "brokerd answered bounce: %s", res.reason ?: "");
                goto finish;
        }
        ag->region = res.region;
        ag->size = res.size;
        r = bdc_map(res.fd, res.size, true, &ag->mem);
        if (r < 0) {
                fail("map_failed", "mapping region %" PRIu64 ": %s", res.region, strerror(-r));
                goto finish;
        }
        printf("region=%" PRIu64 " base=0x%" PRIx64 " size=%" PRIu64 " vectors=%u token.%s=%s\n", res.region,
               res.base, res.size, res.vectors, res.tokens[0].domain, res.tokens[0].token);
        fflush(stdout);
        r = owner_run_channel(ag, o);
finish:
        if (ag->ch)
                brokerd_channel_free(ag->ch);
        ag->ch = NULL;
        if (ag->mem)
                munmap(ag->mem, (size_t) ag->size);
        ag->mem = NULL;
        bdc_share_result_clear(&res);
        return r;
}

/* The peer: join the channel the owner lays, waiting on our data doorbell from it. */
static int try_join(struct agent *ag, const struct brokerd_channel_doorbells *db) {
        struct pollfd pfd = { .fd = db->wait_data, .events = POLLIN };
        uint64_t rings;

        /* Drain a ring before looking for the header, so that a ring after the look wakes us. */
        if (poll(&pfd, 1, 0) == 1 && read(db->wait_data, &rings, sizeof(rings)) < 0 && errno != EAGAIN)
                return -errno;
        return brokerd_channel_join(ag->mem, (size_t) ag->size, db, 0, &ag->ch);
}

static int peer_join(struct agent *ag) {
        struct brokerd_channel_doorbells db;
        int r;

        r = channel_bells(&ag->bells, ag->partner, &db);
        if (r < 0)
                return r;
        for (;;) {
                struct pollfd pfd[2] = {
                        { .fd = bdc_fd(ag->c), .events = POLLIN },
                        { .fd = db.wait_data, .events = POLLIN },
                };

                r = drain_events(ag);
                if (r < 0)
                        return r;
                if (ag->recalled)
                        return -ECANCELED;
                r = try_join(ag, &db);
                if (r != -EAGAIN)
                        break;
                if (poll(pfd, 2, -1) < 0 && errno != EINTR) {
                        r = -errno;
                        break;
                }
        }
        if (r < 0)
                return fail("channel_failed", "joining the channel: %s", strerror(-r));
        printf("joined the channel of %s: max_message=%" PRIu32 "\n", ag->partner, brokerd_channel_max_message(ag->ch));
        return 0;
}

static int peer_talk(struct agent *ag, uint64_t rounds) {
        int r;

        r = peer_join(ag);
        if (r < 0 && r != -ECANCELED)
                return r; /* said why */
        for (uint64_t i = 1; r >= 0 && i <= rounds; i++) {
                struct message m;

                r = say(ag, i % 2 == 0, "ping %" PRIu64 " from %s", i, ag->self);
                if (r >= 0)
                        r = hear(ag, i % 2 == 0, &m);
        }
        if (r >= 0)
                r = say(ag, false, "bye");
        if (r >= 0) {
                struct message m;

                r = hear(ag, false, &m); /* the owner's "bye": it read everything we sent */
        }
        if (r == -ECANCELED) {
                printf("recalled region=%" PRIu64 ": giving it back\n", ag->region);
                return 0;
        }
        if (r == -EPIPE) {
                printf("channel: %s is gone (EPIPE)\n", ag->partner);
                return 0;
        }
        return r < 0 ? fail("channel_failed", "%s", strerror(-r)) : 0;
}

static int run_peer(struct agent *ag, const char *socket, const char *domain, const char *token, uint64_t rounds) {
        struct bdc_error err = BDC_ERROR_INIT;
        struct bdc_attach_result res = { .fd = -1 };
        int r, k;

        ag->self = domain;
        r = connect_subscribed(socket, domain, ag);
        if (r < 0)
                return r;
        r = bdc_attach(ag->c, domain, token, &res, &err);
        if (r < 0)
                return fail_daemon(&err, r);
        ag->region = res.region;
        ag->size = res.size;
        ag->bells = res.doorbells; /* ours now */
        res.doorbells = (struct bdc_doorbells) {};
        r = bdc_map(res.fd, res.size, true, &ag->mem);
        if (r < 0) {
                fail("map_failed", "mapping region %" PRIu64 ": %s", res.region, strerror(-r));
                goto finish;
        }
        /* The owner comes first in the doorbells. */
        snprintf(ag->partner, sizeof(ag->partner), "%s", ag->bells.n > 0 ? ag->bells.bells[0].peer : "the owner");
        printf("attached region=%" PRIu64 " size=%" PRIu64 " doorbells with %s: %u vector(s)\n", res.region, res.size,
               ag->partner, ag->bells.vectors);
        fflush(stdout);
        r = peer_talk(ag, rounds);

        /* Done with the memory before giving it back: after the release it is scrubbed. Freeing
         * marks our side closed in the region; after a forced revoke the memory may be truncated
         * (SIGBUS on touch), so the channel is then abandoned: freed without touching it. */
        if (ag->revoked)
                brokerd_channel_abandon(ag->ch);
        else
                brokerd_channel_free(ag->ch);
        ag->ch = NULL;
        munmap(ag->mem, (size_t) ag->size);
        ag->mem = NULL;
        if (!ag->revoked) {
                k = bdc_release(ag->c, domain, ag->region, &err);
                if (k < 0)
                        return fail_daemon(&err, k);
                printf("released region=%" PRIu64 "\n", ag->region);
        }
finish:
        bdc_attach_result_clear(&res);
        return r;
}

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "socket", required_argument, NULL, 'S' },
        { "owner", required_argument, NULL, 'o' },
        { "device", required_argument, NULL, 'd' },
        { "size", required_argument, NULL, 's' },
        { "peer", required_argument, NULL, 'p' },
        { "doorbells", required_argument, NULL, 'b' },
        { "revoke-after", required_argument, NULL, 'k' },
        { "domain", required_argument, NULL, 'D' },
        { "token", required_argument, NULL, 't' },
        { "rounds", required_argument, NULL, 'n' },
        {}
};

static int usage(FILE *f, const char *problem) {
        if (problem)
                fprintf(f, "channel-agent: %s\n\n", problem);
        fputs("Usage: channel-agent [--socket PATH] owner --owner D --device X --size S --peer P\n"
              "                     [--doorbells N] [--revoke-after K]\n"
              "       channel-agent [--socket PATH] peer --domain P --token T [--rounds N]\n"
              "\n"
              "owner: shares S bytes of device X with peer P (read-write) and N doorbell vectors (1..4, default 2),\n"
              "       prints the region and P's token, lays a channel over the region when P joins and\n"
              "       answers its pings; with --revoke-after K it revokes the region after the K-th ping.\n"
              "peer:  attaches with the token, joins the channel, sends N pings (default 3), then bye.\n",
              f);
        return problem ? EXIT_USAGE : EXIT_SUCCESS;
}

int main(int argc, char **argv) {
        struct owner_args o = { .req.doorbells = DEFAULT_VECTORS, .req.has_doorbells = true };
        const char *socket = NULL, *domain = NULL, *token = NULL;
        struct agent ag = {};
        uint64_t rounds = 3, u;
        int c, r;

        /* Whoever reads our output through a pipe wants each line as it happens. */
        setvbuf(stdout, NULL, _IOLBF, 0);
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        return usage(stdout, NULL);
                case 'S':
                        socket = optarg;
                        break;
                case 'o':
                        o.req.owner = optarg;
                        break;
                case 'd':
                        o.req.device = optarg;
                        break;
                case 's':
                        if (bdc_parse_u64(optarg, &o.req.size) < 0 || o.req.size == 0)
                                return usage(stderr, "invalid --size");
                        break;
                case 'p':
                        o.peer = (struct bdc_peer) { .domain = optarg, .access = BDC_ACCESS_RW };
                        o.req.peers = &o.peer;
                        o.req.n_peers = 1;
                        break;
                case 'b':
                        /* The channel sleeps on doorbells: it needs at least one. */
                        if (bdc_parse_u64(optarg, &u) < 0 || u == 0 || u > BDC_MAX_DOORBELL_VECTORS)
                                return usage(stderr, "invalid --doorbells (1..4)");
                        o.req.doorbells = (unsigned) u;
                        break;
                case 'k':
                        if (bdc_parse_u64(optarg, &o.revoke_after) < 0 || o.revoke_after == 0)
                                return usage(stderr, "invalid --revoke-after");
                        break;
                case 'D':
                        domain = optarg;
                        break;
                case 't':
                        token = optarg;
                        break;
                case 'n':
                        if (bdc_parse_u64(optarg, &rounds) < 0)
                                return usage(stderr, "invalid --rounds");
                        break;
                default:
                        return usage(stderr, "unknown option, or one without its argument");
                }
        }
        if (optind + 1 != argc)
                return usage(stderr, "give one role: owner or peer");

        if (strcmp(argv[optind], "owner") == 0) {
                if (!o.req.owner || !o.req.device || o.req.size == 0 || o.req.n_peers == 0)
                        return usage(stderr, "owner needs --owner, --device, --size and --peer");
                r = run_owner(&ag, socket, &o);
        } else if (strcmp(argv[optind], "peer") == 0) {
                if (!domain || !token)
                        return usage(stderr, "peer needs --domain and --token");
                r = run_peer(&ag, socket, domain, token, rounds);
        } else
                return usage(stderr, "the role is owner or peer");

        bdc_doorbells_clear(&ag.bells);
        bdc_close(ag.c);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
