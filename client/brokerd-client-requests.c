/* SPDX-License-Identifier: Apache-2.0 */
/* libbrokerd-client's typed verbs: share, attach, map, release, revoke, and reading their replies. */
#include "brokerd-client-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Reply accessors: a missing or mistyped member is a protocol violation. */
int get_u64(struct json_object *o, const char *key, uint64_t *ret) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v))
                return -EBADMSG;
        if (json_object_is_type(v, json_type_int)) {
                if (json_object_get_int64(v) < 0)
                        return -EBADMSG;
                *ret = json_object_get_uint64(v);
                return 0;
        }
        if (json_object_is_type(v, json_type_string))
                return bdc_parse_u64(json_object_get_string(v), ret) < 0 ? -EBADMSG : 0;
        return -EBADMSG;
}

const char *get_string(struct json_object *o, const char *key) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

int take_fd_index(struct json_object *o, const char *key, int *fds, size_t n_fds, int *ret) {
        uint64_t index;

        if (get_u64(o, key, &index) < 0 || index >= n_fds || fds[index] < 0)
                return -EBADMSG;
        *ret = fds[index];
        fds[index] = -1;
        return 0;
}

/* The descriptor a result's "fd" member names; -1 when the result has no "fd" (backends that
 * map into VMs, such as libvirt, pass none). */
static int take_result_fd(struct json_object *result, int *fds, size_t n_fds, int *ret) {
        if (!json_object_object_get_ex(result, "fd", NULL)) {
                *ret = -1;
                return 0;
        }
        return take_fd_index(result, "fd", fds, n_fds, ret);
}

static void tokens_free(struct bdc_token *t, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(t[i].domain);
                free(t[i].token);
        }
        free(t);
}

_public_ void bdc_share_result_clear(struct bdc_share_result *r) {
        if (!r)
                return;
        free(r->reason);
        free(r->pool);
        tokens_free(r->tokens, r->n_tokens);
        if (r->fd >= 0)
                close(r->fd);
        *r = (struct bdc_share_result) { .fd = -1 };
}

static int share_params(const struct bdc_share_request *req, struct json_object **ret) {
        _cleanup_(json_object_putp) struct json_object *p = json_object_new_object();
        struct json_object *peers;

        if (!p)
                return -ENOMEM;
        if (add_string(p, "owner", req->owner) < 0 || add_string(p, "device", req->device) < 0 ||
            add_u64(p, "size", req->size) < 0)
                return -ENOMEM;

        peers = json_object_new_array_ext((int) req->n_peers);
        if (!peers || json_object_object_add(p, "peers", peers) < 0) {
                json_object_put(peers);
                return -ENOMEM;
        }
        for (size_t i = 0; i < req->n_peers; i++) {
                struct json_object *peer = json_object_new_object();
                if (!peer || json_object_array_add(peers, peer) < 0) {
                        json_object_put(peer);
                        return -ENOMEM;
                }
                if (add_string(peer, "domain", req->peers[i].domain) < 0 ||
                    add_string(peer, "access", bdc_access_to_string(req->peers[i].access)) < 0)
                        return -ENOMEM;
        }

        if (req->label && add_string(p, "label", req->label) < 0)
                return -ENOMEM;
        if (req->alignment > 0 && add_u64(p, "alignment", req->alignment) < 0)
                return -ENOMEM;
        if (req->has_numa_node && add_u64(p, "numa_node", req->numa_node) < 0)
                return -ENOMEM;
        if (req->has_doorbells && add_u64(p, "doorbells", req->doorbells) < 0)
                return -ENOMEM;
        if (req->place) {
                char buf[32];
                snprintf(buf, sizeof(buf), "0x%" PRIx64, req->base);
                if (add_string(p, "base", buf) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(p);
        return 0;
}

static int parse_tokens(struct json_object *result, struct bdc_token **ret, size_t *ret_n) {
        struct bdc_token *tokens = NULL;
        struct json_object *a;
        size_t n;

        if (!json_object_object_get_ex(result, "tokens", &a) || !json_object_is_type(a, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(a);
        if (n > 0) {
                tokens = calloc(n, sizeof(*tokens));
                if (!tokens)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                struct json_object *t = json_object_array_get_idx(a, i);
                const char *domain = get_string(t, "domain"), *token = get_string(t, "token");

                if (!domain || !token) {
                        tokens_free(tokens, n);
                        return -EBADMSG;
                }
                tokens[i].domain = strdup(domain);
                tokens[i].token = strdup(token);
                if (!tokens[i].domain || !tokens[i].token) {
                        tokens_free(tokens, n);
                        return -ENOMEM;
                }
        }
        *ret = tokens;
        *ret_n = n;
        return 0;
}

int reply_error(struct bdc_error *err, int r, const char *method) {
        if (r == -ENOMEM)
                return local_error(err, ENOMEM, "out of memory");
        return local_error(err, EBADMSG, "malformed reply to %s", method);
}

_public_ int bdc_share(struct bdc *c, const struct bdc_share_request *req, struct bdc_share_result *ret,
                       struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *params = NULL, *result = NULL;
        _cleanup_(bdc_share_result_clear) struct bdc_share_result res = { .fd = -1 };
        int fds[BDC_MAX_FDS];
        size_t n_fds = ELEMENTSOF(fds);
        const char *placement, *s;
        int r;

        if (!c || !req || !ret || !req->owner || !req->device || (req->n_peers > 0 && !req->peers))
                return local_error(err, EINVAL, "invalid arguments");
        for (size_t i = 0; i < req->n_peers; i++)
                if (!req->peers[i].domain || !bdc_access_to_string(req->peers[i].access))
                        return local_error(err, EINVAL, "peer %zu is invalid", i);
        if (req->n_peers > INT_MAX)
                return local_error(err, EINVAL, "too many peers");
        if (req->has_doorbells && req->doorbells > BDC_MAX_DOORBELL_VECTORS)
                return local_error(err, EINVAL, "at most %d doorbell vectors", BDC_MAX_DOORBELL_VECTORS);

        r = share_params(req, &params);
        if (r < 0)
                return local_error(err, ENOMEM, "out of memory");
        r = bdc_call(c, "region.share", params, &result, fds, &n_fds, err);
        if (r < 0)
                return r;

        placement = get_string(result, "placement");
        if (streq_ptr(placement, "bounce")) {
                fds_close(fds, n_fds);
                res.placement = BDC_PLACEMENT_BOUNCE;
                s = get_string(result, "reason");
                res.reason = strdup(s ?: "");
                if (!res.reason)
                        return local_error(err, ENOMEM, "out of memory");
                *ret = res;
                res = (struct bdc_share_result) { .fd = -1 };
                return 0;
        }

        r = -EBADMSG;
        if (streq_ptr(placement, "region") && get_u64(result, "region", &res.region) >= 0 &&
            get_u64(result, "base", &res.base) >= 0 && get_u64(result, "size", &res.size) >= 0 &&
            parse_vectors(result, &res.vectors) >= 0)
                r = take_result_fd(result, fds, n_fds, &res.fd);
        fds_close(fds, n_fds);
        if (r < 0)
                return reply_error(err, r, "region.share");
        res.placement = BDC_PLACEMENT_REGION;
        (void) get_u64(result, "alignment", &res.alignment); /* informative */
        s = get_string(result, "pool");
        if (s) {
                res.pool = strdup(s);
                if (!res.pool)
                        return local_error(err, ENOMEM, "out of memory");
        }
        r = parse_tokens(result, &res.tokens, &res.n_tokens);
        if (r < 0)
                return reply_error(err, r, "region.share");

        *ret = res;
        res = (struct bdc_share_result) { .fd = -1 };
        return 0;
}

_public_ void bdc_attach_result_clear(struct bdc_attach_result *r) {
        if (!r)
                return;
        if (r->fd >= 0)
                close(r->fd);
        bdc_doorbells_clear(&r->doorbells);
        *r = (struct bdc_attach_result) { .fd = -1 };
}

_public_ int bdc_attach(struct bdc *c, const char *domain, const char *token, struct bdc_attach_result *ret,
                        struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *params = NULL, *result = NULL;
        _cleanup_(bdc_attach_result_clear) struct bdc_attach_result res = { .fd = -1 };
        int fds[BDC_MAX_FDS];
        size_t n_fds = ELEMENTSOF(fds);
        int r;

        if (!c || !domain || !token || !ret)
                return local_error(err, EINVAL, "invalid arguments");
        params = json_object_new_object();
        if (!params || add_string(params, "domain", domain) < 0 || add_string(params, "token", token) < 0)
                return local_error(err, ENOMEM, "out of memory");

        r = bdc_call(c, "region.attach", params, &result, fds, &n_fds, err);
        if (r < 0)
                return r;

        r = -EBADMSG;
        if (get_u64(result, "region", &res.region) >= 0 && get_u64(result, "base", &res.base) >= 0 &&
            get_u64(result, "size", &res.size) >= 0 &&
            bdc_access_from_string(get_string(result, "access"), &res.access) >= 0)
                r = take_result_fd(result, fds, n_fds, &res.fd);
        if (r >= 0)
                r = parse_doorbells(result, res.region, fds, n_fds, &res.doorbells);
        fds_close(fds, n_fds); /* what the reply did not name */
        if (r < 0)
                return reply_error(err, r, "region.attach");

        *ret = res;
        res = (struct bdc_attach_result) { .fd = -1 };
        return 0;
}

_public_ int bdc_map(int fd, uint64_t size, bool writable, void **ret_addr) {
        void *p;

        if (fd < 0 || size == 0 || size > SIZE_MAX || !ret_addr)
                return -EINVAL;
        p = mmap(NULL, (size_t) size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return negative_errno();
        *ret_addr = p;
        return 0;
}

_public_ int bdc_release(struct bdc *c, const char *domain, uint64_t region, struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *params = NULL, *result = NULL;

        if (!c || !domain)
                return local_error(err, EINVAL, "invalid arguments");
        params = json_object_new_object();
        if (!params || add_string(params, "domain", domain) < 0 || add_u64(params, "region", region) < 0)
                return local_error(err, ENOMEM, "out of memory");
        return bdc_call(c, "region.release", params, &result, NULL, NULL, err);
}

_public_ int bdc_revoke(struct bdc *c, const char *owner, uint64_t region, int64_t deadline_ms, bool force,
                        struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *params = NULL, *result = NULL;

        if (!c)
                return local_error(err, EINVAL, "invalid arguments");
        params = json_object_new_object();
        if (!params || (owner && add_string(params, "owner", owner) < 0) || add_u64(params, "region", region) < 0 ||
            (deadline_ms >= 0 && add_u64(params, "deadline_ms", (uint64_t) deadline_ms) < 0))
                return local_error(err, ENOMEM, "out of memory");
        if (force) {
                struct json_object *t = json_object_new_boolean(1);
                if (!t || json_object_object_add(params, "force", t) < 0) {
                        json_object_put(t);
                        return local_error(err, ENOMEM, "out of memory");
                }
        }
        return bdc_call(c, owner ? "region.revoke" : "admin.revoke", params, &result, NULL, NULL, err);
}
