/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where the channel's region and doorbells come from. Brokered (the figures): A shares the
 * region as the owner (2 doorbell vectors), hands B the token through a pipe, waits for
 * region.joined and takes its ends with region.doorbells; B attaches with the token and takes
 * its ends from the attach reply. Local (development, or where no daemon runs): a memfd and one
 * eventfd per sender and vector, made by the coordinator before it forks, as brokerd would.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench-common.h"
#include "data-plane.h"

#define REGION_ALIGN (UINT64_C(2) << 20)
#define DOORBELL_VECTORS 2u
#define JOIN_TIMEOUT_MS 10000
#define LEAVE_TIMEOUT_MS 5000
#define REVOKE_DEADLINE_MS 10000
#define TOKEN_MAX 256

uint64_t dp_region_size(const struct dp_region_config *cfg) {
        const struct brokerd_channel_params p = { .ring_size = cfg->ring_size };
        uint64_t n = brokerd_channel_size(&p);

        return n == 0 ? 0 : (n + REGION_ALIGN - 1) / REGION_ALIGN * REGION_ALIGN;
}

static void close_quiet(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

void dp_region_setup_close(struct dp_region_setup *s) {
        close_quiet(&s->memfd);
        for (unsigned i = 0; i < _DP_SIDE_MAX; i++)
                for (unsigned v = 0; v < 2; v++)
                        close_quiet(&s->bell[i][v]);
        close_quiet(&s->token_pipe[0]);
        close_quiet(&s->token_pipe[1]);
}

int dp_region_prepare(const struct dp_region_config *cfg, struct dp_region_setup *ret) {
        struct dp_region_setup s = { .cfg = cfg, .memfd = -1, .bell = { { -1, -1 }, { -1, -1 } },
                                     .token_pipe = { -1, -1 } };
        int r = 0;

        s.size = dp_region_size(cfg);
        if (s.size == 0)
                return -EINVAL;
        if (cfg->socket) {
                if (pipe2(s.token_pipe, O_CLOEXEC) < 0)
                        return -errno;
                *ret = s;
                return 0;
        }
        s.memfd = memfd_create("data-plane-bench", MFD_CLOEXEC);
        if (s.memfd < 0 || ftruncate(s.memfd, (off_t) s.size) < 0)
                r = -errno;
        for (unsigned i = 0; r == 0 && i < _DP_SIDE_MAX; i++)
                for (unsigned v = 0; r == 0 && v < 2; v++) {
                        s.bell[i][v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                        if (s.bell[i][v] < 0)
                                r = -errno;
                }
        if (r < 0) {
                dp_region_setup_close(&s);
                return r;
        }
        *ret = s;
        return 0;
}

/* Populated: no page is faulted in during a timed phase, whichever case touches it first. */
static int region_map(int fd, uint64_t size, struct dp_region *r) {
        void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);

        if (mem == MAP_FAILED)
                return -errno;
        r->mem = mem;
        r->size = size;
        return 0;
}

static int region_open_local(struct dp_region_setup *s, enum dp_side side, struct dp_region *ret) {
        struct dp_region r = { .conn = NULL };
        enum dp_side other = side == DP_SIDE_A ? DP_SIDE_B : DP_SIDE_A;
        int k;

        k = region_map(s->memfd, s->size, &r);
        if (k < 0)
                return k;
        r.db = (struct brokerd_channel_doorbells) {
                .ring_data = s->bell[side][0],
                .ring_space = s->bell[side][1],
                .wait_data = s->bell[other][0],
                .wait_space = s->bell[other][1],
        };
        *ret = r;
        return 0;
}

/* The doorbells (send and receive ends, vectors 0 and 1) with peer in bells. */
static int region_doorbells(const struct bdc_doorbells *bells, const char *peer, struct brokerd_channel_doorbells *ret) {
        const struct bdc_doorbell *data = bdc_doorbells_find(bells, peer, 0);
        const struct bdc_doorbell *space = bdc_doorbells_find(bells, peer, 1);

        if (!data || !space) {
                fprintf(stderr, "%s: region %" PRIu64 " has no doorbells (vectors 0 and 1) with %s\n", bench_program,
                        bells->region, peer);
                return -EBADMSG;
        }
        *ret = (struct brokerd_channel_doorbells) {
                .ring_data = data->send_fd,
                .ring_space = space->send_fd,
                .wait_data = data->recv_fd,
                .wait_space = space->recv_fd,
        };
        return 0;
}

/* Waits for the notification method about region and domain on c; other events are dropped. */
static int wait_event(struct bdc *c, const char *method, uint64_t region, const char *domain, int timeout_ms) {
        uint64_t deadline = bench_now_nsec() + (uint64_t) timeout_ms * 1000000u;

        for (;;) {
                struct bdc_event ev;
                struct json_object *v;
                uint64_t now = bench_now_nsec();
                bool match;
                int r;

                if (now >= deadline)
                        return -ETIMEDOUT;
                r = bdc_next_event(c, (int) ((deadline - now) / 1000000u) + 1, &ev);
                if (r == -EINTR)
                        continue;
                if (r < 0)
                        return r;
                match = strcmp(ev.method, method) == 0 && json_object_object_get_ex(ev.params, "region", &v) &&
                        json_object_get_uint64(v) == region && strcmp(bench_json_string(ev.params, "domain") ?: "", domain) == 0;
                bdc_event_clear(&ev);
                if (match)
                        return 0;
        }
}

static int region_share(struct dp_region_setup *s, struct dp_region *r) {
        const struct dp_region_config *cfg = s->cfg;
        const struct bdc_peer peer = { .domain = cfg->peer, .access = BDC_ACCESS_RW };
        const struct bdc_share_request req = {
                .owner = cfg->owner, .device = cfg->device, .size = s->size, .peers = &peer, .n_peers = 1,
                .label = "data-plane-bench", .has_doorbells = true, .doorbells = DOORBELL_VECTORS,
        };
        struct bdc_share_result share = { .fd = -1 };
        struct bdc_error err = BDC_ERROR_INIT;
        char token[TOKEN_MAX];
        int k;

        k = bdc_share(r->conn, &req, &share, &err);
        if (k < 0) {
                bench_fail_rpc("region.share", k, &err);
                bdc_error_clear(&err);
                return k;
        }
        if (share.placement != BDC_PLACEMENT_REGION || share.fd < 0 || share.n_tokens != 1 ||
            share.vectors < DOORBELL_VECTORS) {
                fprintf(stderr, "%s: region.share did not give a region with an fd, one token and %u doorbell vectors\n",
                        bench_program, DOORBELL_VECTORS);
                bdc_share_result_clear(&share);
                return -EBADMSG;
        }
        r->id = share.region;
        snprintf(token, sizeof(token), "%s", share.tokens[0].token);
        k = region_map(share.fd, share.size, r);
        bdc_share_result_clear(&share);
        if (k < 0)
                return k;
        /* The token and its NUL in one write: B reads until the pipe closes. */
        if (write(s->token_pipe[1], token, strlen(token) + 1) < 0)
                return -errno;
        close_quiet(&s->token_pipe[1]);
        k = wait_event(r->conn, "region.joined", r->id, cfg->peer, JOIN_TIMEOUT_MS);
        if (k < 0) {
                fprintf(stderr, "%s: %s did not join region %" PRIu64 ": %s\n", bench_program, cfg->peer, r->id,
                        strerror(-k));
                return k;
        }
        k = bdc_doorbells(r->conn, cfg->owner, r->id, &r->bells, &err);
        if (k < 0) {
                bench_fail_rpc("region.doorbells", k, &err);
                bdc_error_clear(&err);
                return k;
        }
        return region_doorbells(&r->bells, cfg->peer, &r->db);
}

static int region_attach(struct dp_region_setup *s, struct dp_region *r) {
        const struct dp_region_config *cfg = s->cfg;
        struct bdc_attach_result att = { .fd = -1 };
        struct bdc_error err = BDC_ERROR_INIT;
        char token[TOKEN_MAX];
        size_t got = 0;
        int k;

        close_quiet(&s->token_pipe[1]);
        for (;;) {
                ssize_t n = read(s->token_pipe[0], token + got, sizeof(token) - got);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                got += (size_t) n;
                if (got == sizeof(token))
                        return -EMSGSIZE;
        }
        if (got == 0 || token[got - 1] != '\0')
                return -EPIPE;
        k = bdc_attach(r->conn, cfg->peer, token, &att, &err);
        if (k < 0) {
                bench_fail_rpc("region.attach", k, &err);
                bdc_error_clear(&err);
                return k;
        }
        r->id = att.region;
        k = att.fd >= 0 ? region_map(att.fd, att.size, r) : -EBADMSG;
        /* The doorbells outlive the attach result: the channel borrows their fds. */
        r->bells = att.doorbells;
        att.doorbells = (struct bdc_doorbells) {};
        bdc_attach_result_clear(&att);
        if (k < 0)
                return k;
        return region_doorbells(&r->bells, cfg->owner, &r->db);
}

static int region_open_brokered(struct dp_region_setup *s, enum dp_side side, struct dp_region *ret) {
        const struct dp_region_config *cfg = s->cfg;
        struct dp_region r = { .conn = NULL };
        struct bdc_error err = BDC_ERROR_INIT;
        int k;

        k = bdc_connect(cfg->socket, &r.conn);
        if (k < 0) {
                fprintf(stderr, "%s: cannot connect to %s: %s\n", bench_program, cfg->socket, strerror(-k));
                return k;
        }
        if (side == DP_SIDE_A) {
                /* region.joined and region.left come to the owner's subscribers. */
                k = bdc_subscribe(r.conn, &cfg->owner, 1, &err);
                if (k < 0) {
                        bench_fail_rpc("events.subscribe", k, &err);
                        bdc_error_clear(&err);
                } else
                        k = region_share(s, &r);
        } else
                k = region_attach(s, &r);
        if (k < 0) {
                dp_region_close(&r, s, side);
                return k;
        }
        *ret = r;
        return 0;
}

int dp_region_open(struct dp_region_setup *s, enum dp_side side, struct dp_region *ret) {
        return s->cfg->socket ? region_open_brokered(s, side, ret) : region_open_local(s, side, ret);
}

void dp_region_close(struct dp_region *r, const struct dp_region_setup *s, enum dp_side side) {
        struct bdc_error err = BDC_ERROR_INIT;
        int k = 0;

        if (r->mem)
                munmap(r->mem, r->size);
        r->mem = NULL;
        if (!r->conn)
                return;
        if (r->id != 0 && side == DP_SIDE_B)
                k = bdc_release(r->conn, s->cfg->peer, r->id, &err);
        else if (r->id != 0 && wait_event(r->conn, "region.left", r->id, s->cfg->peer, LEAVE_TIMEOUT_MS) < 0) {
                /* B's release reclaims the region (it was the only peer); without it, take it back. */
                k = bdc_revoke(r->conn, s->cfg->owner, r->id, REVOKE_DEADLINE_MS, false, &err);
        }
        if (k < 0)
                bench_fail_rpc(side == DP_SIDE_B ? "region.release" : "region.revoke", k, &err);
        bdc_error_clear(&err);
        bdc_doorbells_clear(&r->bells);
        bdc_close(r->conn);
        r->conn = NULL;
}
