/* SPDX-License-Identifier: Apache-2.0 */
/*
 * brokerd-agent: what a VMM or a vhost-user style backend embeds, as a small program.
 * It uses nothing but libbrokerd-client.
 *
 *   brokerd-agent [--socket PATH] share --owner D --device X --size S --peer DOMAIN[:ro|rw]...
 *                 [--label L] [--alignment A] [--numa-node N] [--base ADDR] [--write TEXT] [--hold]
 *   brokerd-agent [--socket PATH] attach --domain D --token T [--read N] [--write TEXT]
 *                 [--expect-ro] [--hold] [--release-on-recall]
 *
 * share prints "region=<id> base=<hex> size=<n> token.<domain>=<token>" per peer token (or
 * "bounce reason=<reason>"); attach prints "attached region=<id> access=<ro|rw> size=<n>".
 * Exit status: 0 success, 1 failure ("brokerd-agent: <name>: <message>"), 2 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "brokerd-client.h"

#ifndef BROKERD_VERSION
#define BROKERD_VERSION "unknown"
#endif

#define EXIT_USAGE 2
#define MAX_PEERS 64
/* Where a peer writes its answer: the second page, so it never overlaps the owner's text. */
#define PEER_WRITE_OFFSET 4096

enum mode {
        MODE_SHARE,
        MODE_ATTACH,
};

enum {
        OPT_OWNER = 1 << 0,
        OPT_DEVICE = 1 << 1,
        OPT_SIZE = 1 << 2,
        OPT_PEER = 1 << 3,
        OPT_LABEL = 1 << 4,
        OPT_ALIGNMENT = 1 << 5,
        OPT_NUMA = 1 << 6,
        OPT_BASE = 1 << 7,
        OPT_DOMAIN = 1 << 8,
        OPT_TOKEN = 1 << 9,
        OPT_READ = 1 << 10,
        OPT_EXPECT_RO = 1 << 11,
        OPT_RELEASE = 1 << 12,
        OPT_WRITE = 1 << 13,
        OPT_HOLD = 1 << 14,
};

#define SHARE_OPTIONS                                                                                        \
        (OPT_OWNER | OPT_DEVICE | OPT_SIZE | OPT_PEER | OPT_LABEL | OPT_ALIGNMENT | OPT_NUMA | OPT_BASE |   \
         OPT_WRITE | OPT_HOLD)
#define ATTACH_OPTIONS (OPT_DOMAIN | OPT_TOKEN | OPT_READ | OPT_EXPECT_RO | OPT_RELEASE | OPT_WRITE | OPT_HOLD)

static const struct option options[] = {
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { "socket", required_argument, NULL, 'S' },
        { "owner", required_argument, NULL, 'o' },
        { "device", required_argument, NULL, 'd' },
        { "size", required_argument, NULL, 's' },
        { "peer", required_argument, NULL, 'p' },
        { "label", required_argument, NULL, 'l' },
        { "alignment", required_argument, NULL, 'a' },
        { "numa-node", required_argument, NULL, 'n' },
        { "base", required_argument, NULL, 'b' },
        { "domain", required_argument, NULL, 'D' },
        { "token", required_argument, NULL, 't' },
        { "read", required_argument, NULL, 'r' },
        { "write", required_argument, NULL, 'w' },
        { "expect-ro", no_argument, NULL, 'E' },
        { "hold", no_argument, NULL, 'H' },
        { "release-on-recall", no_argument, NULL, 'R' },
        {}
};

/* The option each short code stands for, to check it belongs to the mode. */
static const struct {
        int code;
        unsigned flag;
} option_flags[] = {
        { 'o', OPT_OWNER },     { 'd', OPT_DEVICE },   { 's', OPT_SIZE },      { 'p', OPT_PEER },
        { 'l', OPT_LABEL },     { 'a', OPT_ALIGNMENT }, { 'n', OPT_NUMA },     { 'b', OPT_BASE },
        { 'D', OPT_DOMAIN },    { 't', OPT_TOKEN },    { 'r', OPT_READ },      { 'w', OPT_WRITE },
        { 'E', OPT_EXPECT_RO }, { 'H', OPT_HOLD },     { 'R', OPT_RELEASE },
};

struct args {
        enum mode mode;
        unsigned seen;
        const char *socket;
        /* share */
        struct bdc_share_request req;
        struct bdc_peer peers[MAX_PEERS];
        /* attach */
        const char *domain, *token;
        uint64_t read;
        /* both */
        const char *write;
};

static void usage(FILE *f) {
        fputs("Usage: brokerd-agent [--socket PATH] share --owner D --device X --size S --peer DOMAIN[:ro|rw]...\n"
              "                     [--label L] [--alignment A] [--numa-node N] [--base ADDR]\n"
              "                     [--write TEXT] [--hold]\n"
              "       brokerd-agent [--socket PATH] attach --domain D --token T [--read N] [--write TEXT]\n"
              "                     [--expect-ro] [--hold] [--release-on-recall]\n"
              "\n"
              "Share a region as its owner, or attach to one as a peer, through brokerd's agent socket\n"
              "(default: $" BDC_SOCKET_ENV ", else " BDC_AGENT_SOCKET ").\n"
              "\n"
              "share:   --write writes TEXT at offset 0; --hold keeps the region mapped and prints its\n"
              "         events until it is reclaimed.\n"
              "attach:  --read N prints the first N bytes (up to a NUL); --write writes TEXT at offset 4096;\n"
              "         --expect-ro checks that a writable mapping is refused; --hold waits for a recall,\n"
              "         and with --release-on-recall releases the region and exits.\n",
              f);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("brokerd-agent: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\n\n", stderr);
        usage(stderr);
        return -EINVAL;
}

static int fail_daemon(struct bdc_error *err, int r) {
        fprintf(stderr, "brokerd-agent: %s: %s\n", bdc_error_name(err), err->message[0] ? err->message : strerror(-r));
        bdc_error_clear(err);
        return r;
}

static int fail(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const char *name, const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "brokerd-agent: %s: ", name);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return -EIO;
}

static int parse_peer(char *s, struct bdc_peer *ret) {
        char *colon = strrchr(s, ':');
        enum bdc_access access = BDC_ACCESS_RW;

        if (colon) {
                if (bdc_access_from_string(colon + 1, &access) < 0)
                        return -EINVAL;
                *colon = 0;
        }
        if (!*s)
                return -EINVAL;
        *ret = (struct bdc_peer) { .domain = s, .access = access };
        return 0;
}

/* Returns 1 to go on, 0 when done (--help, --version), or -EINVAL (usage). */
static int parse_args(int argc, char **argv, struct args *a) {
        uint64_t u;
        unsigned allowed;
        int c;

        opterr = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0) {
                for (size_t i = 0; i < sizeof(option_flags) / sizeof(option_flags[0]); i++)
                        if (option_flags[i].code == c)
                                a->seen |= option_flags[i].flag;

                switch (c) {
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        puts("brokerd-agent " BROKERD_VERSION);
                        return 0;
                case 'S':
                        a->socket = optarg;
                        break;
                case 'o':
                        a->req.owner = optarg;
                        break;
                case 'd':
                        a->req.device = optarg;
                        break;
                case 's':
                        if (bdc_parse_u64(optarg, &a->req.size) < 0 || a->req.size == 0)
                                return usage_error("invalid --size '%s' (like 65536, 0x10000, 2MiB)", optarg);
                        break;
                case 'p':
                        if (a->req.n_peers == MAX_PEERS)
                                return usage_error("at most %d --peer", MAX_PEERS);
                        if (parse_peer(optarg, &a->peers[a->req.n_peers]) < 0)
                                return usage_error("invalid --peer '%s' (DOMAIN, DOMAIN:ro or DOMAIN:rw)", optarg);
                        a->req.n_peers++;
                        break;
                case 'l':
                        a->req.label = optarg;
                        break;
                case 'a':
                        if (bdc_parse_u64(optarg, &a->req.alignment) < 0)
                                return usage_error("invalid --alignment '%s'", optarg);
                        break;
                case 'n':
                        if (bdc_parse_u64(optarg, &u) < 0 || u > UINT32_MAX)
                                return usage_error("invalid --numa-node '%s'", optarg);
                        a->req.has_numa_node = true;
                        a->req.numa_node = (uint32_t) u;
                        break;
                case 'b':
                        if (bdc_parse_u64(optarg, &a->req.base) < 0)
                                return usage_error("invalid --base '%s'", optarg);
                        a->req.place = true;
                        break;
                case 'D':
                        a->domain = optarg;
                        break;
                case 't':
                        a->token = optarg;
                        break;
                case 'r':
                        if (bdc_parse_u64(optarg, &a->read) < 0)
                                return usage_error("invalid --read '%s'", optarg);
                        break;
                case 'w':
                        a->write = optarg;
                        break;
                case 'E':
                case 'H':
                case 'R':
                        break;
                case ':':
                        return usage_error("option '%s' needs an argument", argv[optind - 1]);
                default:
                        if (optopt)
                                return usage_error("unknown option '-%c'", optopt);
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                }
        }

        if (optind >= argc)
                return usage_error("missing mode (share or attach)");
        if (strcmp(argv[optind], "share") == 0) {
                a->mode = MODE_SHARE;
                allowed = SHARE_OPTIONS;
        } else if (strcmp(argv[optind], "attach") == 0) {
                a->mode = MODE_ATTACH;
                allowed = ATTACH_OPTIONS;
        } else
                return usage_error("unknown mode '%s'", argv[optind]);
        if (optind + 1 < argc)
                return usage_error("unexpected argument '%s'", argv[optind + 1]);

        for (size_t i = 0; i < sizeof(options) / sizeof(options[0]) - 1; i++)
                for (size_t j = 0; j < sizeof(option_flags) / sizeof(option_flags[0]); j++)
                        if (options[i].val == option_flags[j].code && (a->seen & option_flags[j].flag) &&
                            !(allowed & option_flags[j].flag))
                                return usage_error("--%s does not apply to %s", options[i].name, argv[optind]);

        if (a->mode == MODE_SHARE) {
                if (!a->req.owner || !a->req.device || !(a->seen & OPT_SIZE) || a->req.n_peers == 0)
                        return usage_error("share needs --owner, --device, --size and at least one --peer");
                a->req.peers = a->peers;
        } else {
                if (!a->domain || !a->token)
                        return usage_error("attach needs --domain and --token");
                if ((a->seen & OPT_RELEASE) && !(a->seen & OPT_HOLD))
                        return usage_error("--release-on-recall needs --hold");
        }
        return 1;
}

/* Writes text, and its NUL when there is room, at offset; -EFBIG when the text does not fit. */
static int write_text(void *mem, uint64_t size, uint64_t offset, const char *text) {
        size_t len = strlen(text);

        if (offset > size || len > size - offset)
                return -EFBIG;
        memcpy((char *) mem + offset, text, len);
        if (len < size - offset)
                ((char *) mem)[offset + len] = 0;
        return 0;
}

static bool event_region_is(const struct bdc_event *ev, uint64_t region) {
        struct json_object *v;

        return json_object_object_get_ex(ev->params, "region", &v) && json_object_is_type(v, json_type_int) &&
               json_object_get_int64(v) >= 0 && json_object_get_uint64(v) == region;
}

static const char *event_string(const struct bdc_event *ev, const char *key) {
        struct json_object *v;

        if (!json_object_object_get_ex(ev->params, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/* Waits for the next event about region; -ECONNRESET etc. are reported here. */
static int wait_event(struct bdc *c, uint64_t region, struct bdc_event *ret) {
        for (;;) {
                struct bdc_event ev = {};
                int r;

                r = bdc_next_event(c, -1, &ev);
                if (r == -EINTR)
                        continue;
                if (r == -ECONNRESET)
                        return fail("disconnected", "brokerd closed the connection");
                if (r < 0)
                        return fail(r == -EBADMSG ? "protocol_error" : "io_error", "waiting for events: %s",
                                    strerror(-r));
                /* route.changed carries the route's region, not ours. */
                if (strncmp(ev.method, "region.", 7) == 0 && event_region_is(&ev, region)) {
                        *ret = ev;
                        return 0;
                }
                bdc_event_clear(&ev);
        }
}

static int run_share(struct bdc *c, const struct args *a) {
        struct bdc_error err = BDC_ERROR_INIT;
        struct bdc_share_result res = { .fd = -1 };
        void *mem = NULL;
        int r;

        /* Subscribe first, so an attach that follows the share at once is not missed. */
        if (a->seen & OPT_HOLD) {
                r = bdc_subscribe(c, &a->req.owner, 1, &err);
                if (r < 0)
                        return fail_daemon(&err, r);
        }

        r = bdc_share(c, &a->req, &res, &err);
        if (r < 0)
                return fail_daemon(&err, r);

        if (res.placement == BDC_PLACEMENT_BOUNCE) {
                printf("bounce reason=%s\n", res.reason);
                bdc_share_result_clear(&res);
                return 0;
        }

        r = bdc_map(res.fd, res.size, true, &mem);
        if (r < 0) {
                fail("map_failed", "mapping region %" PRIu64 ": %s", res.region, strerror(-r));
                goto finish;
        }
        if (a->write && write_text(mem, res.size, 0, a->write) < 0) {
                r = fail("write_failed", "--write text does not fit in %" PRIu64 " bytes", res.size);
                goto finish;
        }

        for (size_t i = 0; i < res.n_tokens; i++)
                printf("region=%" PRIu64 " base=0x%" PRIx64 " size=%" PRIu64 " token.%s=%s\n", res.region, res.base,
                       res.size, res.tokens[i].domain, res.tokens[i].token);
        if (res.n_tokens == 0)
                printf("region=%" PRIu64 " base=0x%" PRIx64 " size=%" PRIu64 "\n", res.region, res.base, res.size);
        fflush(stdout);

        if (!(a->seen & OPT_HOLD))
                goto finish;

        for (;;) {
                struct bdc_event ev;
                const char *domain, *reason;
                bool reclaimed;

                r = wait_event(c, res.region, &ev);
                if (r < 0)
                        break;
                domain = event_string(&ev, "domain");
                reason = event_string(&ev, "reason");
                printf("%s region=%" PRIu64 "%s%s%s%s\n", ev.method + 7, res.region, domain ? " domain=" : "",
                       domain ?: "", reason ? " reason=" : "", reason ?: "");
                fflush(stdout);
                reclaimed = strcmp(ev.method, "region.reclaimed") == 0;
                bdc_event_clear(&ev);
                if (reclaimed)
                        break;
        }

finish:
        if (mem)
                munmap(mem, (size_t) res.size);
        bdc_share_result_clear(&res);
        return r;
}

static void read_text(const void *mem, uint64_t size, uint64_t n) {
        const char *p = mem;

        if (n > size)
                n = size;
        fputs("read: ", stdout);
        for (uint64_t i = 0; i < n && p[i]; i++)
                putchar((unsigned char) p[i] < 0x20 || p[i] == 0x7f ? '.' : p[i]);
        putchar('\n');
}

static int run_attach(struct bdc *c, const struct args *a) {
        struct bdc_error err = BDC_ERROR_INIT;
        struct bdc_attach_result res = { .fd = -1 };
        bool writable;
        void *mem = NULL;
        int r;

        if (a->seen & OPT_HOLD) {
                r = bdc_subscribe(c, &a->domain, 1, &err);
                if (r < 0)
                        return fail_daemon(&err, r);
        }

        r = bdc_attach(c, a->domain, a->token, &res, &err);
        if (r < 0)
                return fail_daemon(&err, r);

        writable = res.access == BDC_ACCESS_RW;
        r = bdc_map(res.fd, res.size, writable, &mem);
        if (r < 0) {
                fail("map_failed", "mapping region %" PRIu64 ": %s", res.region, strerror(-r));
                goto finish;
        }
        printf("attached region=%" PRIu64 " access=%s size=%" PRIu64 "\n", res.region,
               bdc_access_to_string(res.access), res.size);
        fflush(stdout);

        if (a->seen & OPT_EXPECT_RO) {
                void *w = NULL;

                r = bdc_map(res.fd, res.size, true, &w);
                if (r == 0) {
                        munmap(w, (size_t) res.size);
                        r = fail("not_enforced", "a writable mapping of region %" PRIu64 " was allowed", res.region);
                        goto finish;
                }
                if (r != -EACCES) {
                        fail("map_failed", "a writable mapping failed with %s, not EACCES", strerror(-r));
                        goto finish;
                }
                puts("ro-enforced");
        }
        if (a->seen & OPT_READ)
                read_text(mem, res.size, a->read);
        if (a->write) {
                if (!writable) {
                        r = fail("read_only", "region %" PRIu64 " is mapped read-only", res.region);
                        goto finish;
                }
                if (write_text(mem, res.size, PEER_WRITE_OFFSET, a->write) < 0) {
                        r = fail("write_failed", "--write text does not fit after offset %d in %" PRIu64 " bytes",
                                 PEER_WRITE_OFFSET, res.size);
                        goto finish;
                }
        }
        fflush(stdout);
        r = 0;
        if (!(a->seen & OPT_HOLD))
                goto finish;

        for (;;) {
                struct bdc_event ev;
                const char *domain;
                bool done = false;

                r = wait_event(c, res.region, &ev);
                if (r < 0)
                        break;
                domain = event_string(&ev, "domain");

                if (strcmp(ev.method, "region.recall") == 0 && (!domain || strcmp(domain, a->domain) == 0)) {
                        printf("recall region=%" PRIu64 "\n", res.region);
                        fflush(stdout);
                        if (a->seen & OPT_RELEASE) {
                                /* Drop the mapping before giving the memory back: after the release
                                 * it is scrubbed and may go to someone else. */
                                munmap(mem, (size_t) res.size);
                                mem = NULL;
                                r = bdc_release(c, a->domain, res.region, &err);
                                if (r < 0)
                                        fail_daemon(&err, r);
                                else
                                        printf("released region=%" PRIu64 "\n", res.region);
                                done = true;
                        }
                } else if (strcmp(ev.method, "region.revoked") == 0 && (!domain || strcmp(domain, a->domain) == 0)) {
                        printf("revoked region=%" PRIu64 "\n", res.region);
                        done = true;
                } else if (strcmp(ev.method, "region.reclaimed") == 0) {
                        printf("reclaimed region=%" PRIu64 "\n", res.region);
                        done = true;
                }
                fflush(stdout);
                bdc_event_clear(&ev);
                if (done)
                        break;
        }

finish:
        if (mem)
                munmap(mem, (size_t) res.size);
        bdc_attach_result_clear(&res);
        return r;
}

int main(int argc, char **argv) {
        struct args a = {};
        struct bdc *c = NULL;
        const char *path;
        int r;

        /* Whoever reads our output through a pipe wants each line as it happens. */
        setvbuf(stdout, NULL, _IOLBF, 0);

        r = parse_args(argc, argv, &a);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_SUCCESS;

        r = bdc_connect(a.socket, &c);
        if (r < 0) {
                path = a.socket;
                if (!path || !*path)
                        path = getenv(BDC_SOCKET_ENV);
                if (!path || !*path)
                        path = BDC_AGENT_SOCKET;
                fprintf(stderr, "brokerd-agent: connection_failed: %s: %s\n", path, strerror(-r));
                return EXIT_FAILURE;
        }

        r = a.mode == MODE_SHARE ? run_share(c, &a) : run_attach(c, &a);
        bdc_close(c);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
