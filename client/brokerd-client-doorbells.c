/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libbrokerd-client's doorbells (docs/protocol.md "Doorbells"): reading them from attach and
 * region.doorbells replies, where each names its eventfds by index into the reply's descriptors,
 * and the small set operations an agent needs when parties join and leave. A reply that names a
 * descriptor that did not come, or one twice, is a protocol violation: nothing is handed out and
 * every descriptor of the reply is closed.
 */
#include "brokerd-client-internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void doorbell_close(struct bdc_doorbell *b) {
        free(b->peer);
        if (b->send_fd >= 0)
                close(b->send_fd);
        if (b->recv_fd >= 0)
                close(b->recv_fd);
}

_public_ void bdc_doorbells_clear(struct bdc_doorbells *d) {
        if (!d)
                return;
        for (size_t i = 0; i < d->n; i++)
                doorbell_close(&d->bells[i]);
        free(d->bells);
        *d = (struct bdc_doorbells) {};
}

static const struct bdc_doorbell *find_bell(const struct bdc_doorbell *bells, size_t n, const char *peer,
                                            unsigned vector) {
        for (size_t i = 0; i < n; i++)
                if (bells[i].vector == vector && strcmp(bells[i].peer, peer) == 0)
                        return &bells[i];
        return NULL;
}

_public_ const struct bdc_doorbell *bdc_doorbells_find(const struct bdc_doorbells *d, const char *peer,
                                                       unsigned vector) {
        if (!d || !peer)
                return NULL;
        return find_bell(d->bells, d->n, peer, vector);
}

_public_ size_t bdc_doorbells_drop_peer(struct bdc_doorbells *d, const char *peer) {
        size_t kept = 0, n;

        if (!d || !peer)
                return 0;
        for (size_t i = 0; i < d->n; i++) {
                if (strcmp(d->bells[i].peer, peer) == 0)
                        doorbell_close(&d->bells[i]);
                else
                        d->bells[kept++] = d->bells[i];
        }
        n = d->n - kept;
        d->n = kept;
        if (kept == 0) {
                free(d->bells);
                d->bells = NULL;
        }
        return n;
}

int parse_vectors(struct json_object *result, unsigned *ret) {
        uint64_t v;

        if (!json_object_object_get_ex(result, "vectors", NULL)) {
                *ret = 0; /* a daemon, or a backend, without doorbells */
                return 0;
        }
        if (get_u64(result, "vectors", &v) < 0 || v > BDC_MAX_DOORBELL_VECTORS)
                return -EBADMSG;
        *ret = (unsigned) v;
        return 0;
}

/* One entry of "doorbells" into b (whose fds start at -1); the peer's name is owned by b. */
static int parse_doorbell(struct json_object *o, unsigned vectors, int *fds, size_t n_fds, struct bdc_doorbell *b) {
        const char *peer = get_string(o, "peer");
        uint64_t vector;

        if (!json_object_is_type(o, json_type_object) || !peer || !*peer || get_u64(o, "vector", &vector) < 0 ||
            vector >= vectors)
                return -EBADMSG;
        b->peer = strdup(peer);
        if (!b->peer)
                return -ENOMEM;
        b->vector = (unsigned) vector;
        if (take_fd_index(o, "send", fds, n_fds, &b->send_fd) < 0 || take_fd_index(o, "recv", fds, n_fds, &b->recv_fd) < 0)
                return -EBADMSG;
        return 0;
}

/* The "doorbells" array into d->bells (d->vectors already set). */
static int parse_bells(struct json_object *a, int *fds, size_t n_fds, struct bdc_doorbells *d) {
        size_t n;
        int r;

        if (!json_object_is_type(a, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(a);
        if (n == 0)
                return 0;
        /* Each doorbell takes two descriptors of its own: more than came is a lie. */
        if (d->vectors == 0 || n > n_fds / 2)
                return -EBADMSG;
        d->bells = calloc(n, sizeof(*d->bells));
        if (!d->bells)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct bdc_doorbell *b = &d->bells[d->n++];

                *b = (struct bdc_doorbell) { .send_fd = -1, .recv_fd = -1 };
                r = parse_doorbell(json_object_array_get_idx(a, i), d->vectors, fds, n_fds, b);
                if (r < 0)
                        return r;
                if (find_bell(d->bells, i, b->peer, b->vector))
                        return -EBADMSG; /* the same pair and vector twice */
        }
        return 0;
}

int parse_doorbells(struct json_object *result, uint64_t region, int *fds, size_t n_fds, struct bdc_doorbells *ret) {
        _cleanup_(bdc_doorbells_clear) struct bdc_doorbells d = { .region = region };
        struct json_object *a;
        int r;

        r = parse_vectors(result, &d.vectors);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(result, "generation", NULL) && get_u64(result, "generation", &d.generation) < 0)
                return -EBADMSG;
        if (json_object_object_get_ex(result, "doorbells", &a)) {
                r = parse_bells(a, fds, n_fds, &d);
                if (r < 0)
                        return r;
        }
        *ret = d;
        d = (struct bdc_doorbells) {};
        return 0;
}

_public_ int bdc_doorbells(struct bdc *c, const char *domain, uint64_t region, struct bdc_doorbells *ret,
                           struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *params = NULL, *result = NULL;
        int fds[BDC_MAX_FDS];
        size_t n_fds = ELEMENTSOF(fds);
        const char *d;
        uint64_t got;
        int r;

        if (!c || !domain || !ret)
                return local_error(err, EINVAL, "invalid arguments");
        params = json_object_new_object();
        if (!params || add_string(params, "domain", domain) < 0 || add_u64(params, "region", region) < 0)
                return local_error(err, ENOMEM, "out of memory");

        r = bdc_call(c, "region.doorbells", params, &result, fds, &n_fds, err);
        if (r < 0)
                return r;

        r = -EBADMSG;
        d = get_string(result, "domain");
        if (get_u64(result, "region", &got) >= 0 && got == region && (!d || strcmp(d, domain) == 0))
                r = parse_doorbells(result, region, fds, n_fds, ret);
        fds_close(fds, n_fds);
        if (r < 0)
                return reply_error(err, r, "region.doorbells");
        return 0;
}
