/* SPDX-License-Identifier: Apache-2.0 */
/* mapping-bench: the half through brokerd (share, attach, revoke, release, reclaimed). */
#include "mapping-bench.h"

/* Waits for notification method about region on c, dropping the others (attached, revoked, ...). */
static int wait_notification(struct bdc *c, const char *method, uint64_t region, unsigned timeout_ms) {
        uint64_t deadline = bench_now_nsec() + (uint64_t) timeout_ms * 1000000u;

        for (;;) {
                struct bdc_event ev = {};
                struct json_object *v;
                uint64_t now = bench_now_nsec();
                bool match;
                int r;

                if (now >= deadline) {
                        fprintf(stderr, "mapping-bench: no %s for region %" PRIu64 " in %ums\n", method, region,
                                timeout_ms);
                        return -ETIMEDOUT;
                }
                /* Rounded up, so that a wait of less than 1ms does not become "do not wait". */
                r = bdc_next_event(c, (int) ((deadline - now + 999999) / 1000000), &ev);
                if (r == -ETIMEDOUT || r == -EINTR)
                        continue;
                if (r < 0) {
                        fprintf(stderr, "mapping-bench: waiting for %s: %s\n", method, strerror(-r));
                        return r;
                }
                match = strcmp(ev.method, method) == 0 && json_object_object_get_ex(ev.params, "region", &v) &&
                        json_object_get_uint64(v) == region;
                bdc_event_clear(&ev);
                if (match)
                        return 0;
        }
}

/*
 * region.share and region.attach are sent with bdc_call(), not bdc_share()/bdc_attach(): those
 * insist on an fd in the reply, which the libvirt backend never passes (the memory is the
 * guest's BAR), so they fail with "malformed reply" against it.
 */
struct share_reply {
        uint64_t region, size;
        char pool[NAME_FIELD_MAX + 1];
        char token_domain[DOMAIN_NAME_MAX + 1];
        char token[64];
};

static int get_u64(struct json_object *o, const char *key, uint64_t *ret) {
        struct json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) < 0)
                return -EBADMSG;
        *ret = json_object_get_uint64(v);
        return 0;
}

/* A reply of an fd-passing backend would bring descriptors: none are wanted here. */
static void close_fds(const int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

static int share_rpc(struct bench *b, struct share_reply *ret, struct bdc_error *err) {
        struct json_object *params = json_object_new_object(), *peers = json_object_new_array(),
                           *peer = json_object_new_object(), *result = NULL, *tokens, *t0;
        int fds[BDC_MAX_FDS];
        size_t n_fds = BDC_MAX_FDS;
        const char *placement, *pool, *dom, *tok;
        int r = -ENOMEM;

        if (!params || !peers || !peer)
                goto out;
        if (bench_json_add(peer, "domain", json_object_new_string(b->peer)) < 0 ||
            bench_json_add(peer, "access", json_object_new_string("rw")) < 0 || json_object_array_add(peers, peer) < 0)
                goto out;
        peer = NULL;
        if (bench_json_add(params, "owner", json_object_new_string(b->owner)) < 0 ||
            bench_json_add(params, "device", json_object_new_string(b->device)) < 0 ||
            bench_json_add(params, "size", json_object_new_uint64(b->size)) < 0)
                goto out;
        r = bench_json_add(params, "peers", peers);
        peers = NULL;
        if (r < 0)
                goto out;

        r = bdc_call(b->c_owner, "region.share", params, &result, fds, &n_fds, err);
        if (r < 0) {
                bench_fail_rpc("region.share", r, err);
                goto out;
        }
        close_fds(fds, n_fds);
        placement = bench_json_string(result, "placement");
        pool = bench_json_string(result, "pool");
        r = -EBADMSG;
        if (!placement || strcmp(placement, "region") != 0) {
                fprintf(stderr, "mapping-bench: region.share gave %s: %s\n", placement ?: "no placement",
                        bench_json_string(result, "reason") ?: "");
                goto out;
        }
        if (get_u64(result, "region", &ret->region) < 0 || get_u64(result, "size", &ret->size) < 0 || !pool ||
            strlen(pool) > NAME_FIELD_MAX || !json_object_object_get_ex(result, "tokens", &tokens) ||
            !json_object_is_type(tokens, json_type_array) || json_object_array_length(tokens) != 1) {
                fprintf(stderr, "mapping-bench: malformed region.share reply: %s\n", json_object_to_json_string(result));
                goto out;
        }
        t0 = json_object_array_get_idx(tokens, 0);
        dom = bench_json_string(t0, "domain");
        tok = bench_json_string(t0, "token");
        if (!dom || !tok || strlen(dom) > DOMAIN_NAME_MAX || strlen(tok) >= sizeof(ret->token)) {
                fprintf(stderr, "mapping-bench: malformed token in %s\n", json_object_to_json_string(result));
                goto out;
        }
        snprintf(ret->pool, sizeof(ret->pool), "%s", pool);
        snprintf(ret->token_domain, sizeof(ret->token_domain), "%s", dom);
        snprintf(ret->token, sizeof(ret->token), "%s", tok);
        r = 0;
out:
        json_object_put(peer);
        json_object_put(peers);
        json_object_put(params);
        json_object_put(result);
        return r;
}

/* region.attach by the peer; *ret_region is the region the reply names, checked to be rw. */
static int attach_rpc(struct bench *b, const char *token, uint64_t *ret_region, struct bdc_error *err) {
        struct json_object *params = json_object_new_object(), *result = NULL;
        int fds[BDC_MAX_FDS];
        size_t n_fds = BDC_MAX_FDS;
        const char *access_mode;
        int r = -ENOMEM;

        if (!params || bench_json_add(params, "domain", json_object_new_string(b->peer)) < 0 ||
            bench_json_add(params, "token", json_object_new_string(token)) < 0)
                goto out;
        r = bdc_call(b->c_peer, "region.attach", params, &result, fds, &n_fds, err);
        if (r < 0) {
                bench_fail_rpc("region.attach", r, err);
                goto out;
        }
        close_fds(fds, n_fds);
        access_mode = bench_json_string(result, "access");
        r = -EBADMSG;
        if (get_u64(result, "region", ret_region) < 0 || !access_mode || strcmp(access_mode, "rw") != 0) {
                fprintf(stderr, "mapping-bench: unexpected region.attach reply: %s\n", json_object_to_json_string(result));
                goto out;
        }
        r = 0;
out:
        json_object_put(params);
        json_object_put(result);
        return r;
}

/* The brokerd half: t[M_NOOP..M_REVOKE_RECLAIMED] (NULL: warm-up). */
int brokerd_once(struct bench *b, uint64_t *t) {
        struct share_reply share = {};
        struct bdc_error err = BDC_ERROR_INIT;
        char alias[64], path[PATH_MAX];
        uint64_t region = 0, attached = 0, t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, removed[MAX_EXPECT] = {};
        bool shared = false;
        int r;

        t0 = bench_now_nsec();
        r = bench_call(b->c_owner, "broker.info", NULL, NULL);
        if (r < 0)
                goto out;

        t1 = bench_now_nsec();
        r = share_rpc(b, &share, &err);
        t2 = bench_now_nsec();
        if (r < 0)
                goto out;
        region = share.region;
        shared = true;
        if (strcmp(share.token_domain, b->peer) != 0 || share.size != b->size) {
                fprintf(stderr, "mapping-bench: region.share gave %" PRIu64 " bytes with a token for %s, not %" PRIu64
                                " bytes for %s\n",
                        share.size, share.token_domain, b->size, b->peer);
                r = -EBADMSG;
                goto out;
        }
        snprintf(alias, sizeof(alias), BROKERD_ALIAS_PREFIX "%" PRIu64, region);
        snprintf(path, sizeof(path), SHM_DIR "/brokerd-%s-%" PRIu64, share.pool, region);
        r = expect_alias(b->dom_owner, alias, true);
        if (r < 0)
                goto out;
        /*
         * B's agent gets the token out of band, later; and the raw attach meets guests that are
         * not busy either. Without this, B's attach would share the host's CPUs with A's guest
         * taking in its new device (TCG), which is not brokerd's cost.
         */
        sleep_msec(b->settle_ms);

        t3 = bench_now_nsec();
        r = attach_rpc(b, share.token, &attached, &err);
        t4 = bench_now_nsec();
        if (r < 0)
                goto out;
        if (attached != region) {
                fprintf(stderr, "mapping-bench: region.attach answered region %" PRIu64 ", not %" PRIu64 "\n",
                        attached, region);
                r = -EBADMSG;
                goto out;
        }
        r = expect_alias(b->dom_peer, alias, true);
        if (r < 0)
                goto out;

        sleep_msec(b->settle_ms);

        /* In this order: removed[0] is the peer's, removed[1] the owner's. */
        r = watch_arm(b->peer, alias);
        if (r >= 0)
                r = watch_arm(b->owner, alias);
        if (r < 0)
                goto out;
        t5 = bench_now_nsec();
        r = bdc_revoke(b->c_owner, b->owner, region, REVOKE_DEADLINE_MS, false, &err);
        t6 = bench_now_nsec();
        if (r < 0) {
                bench_fail_rpc("region.revoke", r, &err);
                goto out;
        }
        /* What B's agent does: release on its recall. */
        r = wait_notification(b->c_peer, "region.recall", region, b->timeout_ms);
        if (r < 0)
                goto out;
        t7 = bench_now_nsec();
        r = bdc_release(b->c_peer, b->peer, region, &err);
        t8 = bench_now_nsec();
        if (r < 0) {
                bench_fail_rpc("region.release", r, &err);
                goto out;
        }
        r = wait_notification(b->c_owner, "region.reclaimed", region, b->timeout_ms);
        t9 = bench_now_nsec();
        if (r < 0)
                goto out;
        shared = false;
        /* Our own libvirt connection hears the removals independently of brokerd's. */
        r = watch_wait(b->timeout_ms, removed);
        if (r < 0)
                goto out;

        r = expect_alias(b->dom_owner, alias, false);
        if (r >= 0)
                r = expect_alias(b->dom_peer, alias, false);
        if (r < 0)
                goto out;
        if (access(path, F_OK) == 0 || errno != ENOENT) {
                fprintf(stderr, "mapping-bench: %s is still there after the reclaim\n", path);
                r = -EBADMSG;
                goto out;
        }

        if (t) {
                t[M_NOOP] = t1 - t0;
                t[M_SHARE] = t2 - t1;
                t[M_ATTACH] = t4 - t3;
                t[M_REVOKE] = t6 - t5;
                t[M_RELEASE] = t8 - t7;
                t[M_REVOKE_REMOVED_PEER] = removed[0] - t5;
                t[M_REVOKE_REMOVED_OWNER] = removed[1] - t5;
                t[M_REVOKE_RECLAIMED] = t9 - t5;
        }
out:
        watch_reset();
        /* Best effort, so that brokerd does not keep a failed iteration's region mapped. */
        if (r < 0 && shared)
                (void) bdc_revoke(b->c_owner, b->owner, region, 0, true, NULL);
        bdc_error_clear(&err);
        return r;
}
