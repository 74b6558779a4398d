/* SPDX-License-Identifier: Apache-2.0 */
/* A loaded policy: the decisions it makes (loading: policy-load.c). */
#include "policy/policy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json-load.h"
#include "util/macro.h"
#include "util/num.h"

static bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

static void strv_free(char **v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                free(v[i]);
        free(v);
}

void policy_free(struct policy *p) {
        if (!p)
                return;
        for (size_t i = 0; i < p->n_agents; i++) {
                free(p->agents[i].user);
                strv_free(p->agents[i].domains, p->agents[i].n_domains);
        }
        free(p->agents);
        for (size_t i = 0; i < p->n_shares; i++) {
                free(p->shares[i].sharer);
                free(p->shares[i].device);
                strv_free(p->shares[i].peers, p->shares[i].n_peers);
        }
        free(p->shares);
        for (size_t i = 0; i < p->n_quotas; i++)
                free(p->quotas[i].domain);
        free(p->quotas);
        free(p);
}

int policy_check_platform(const struct policy *p, const struct platform *platform, struct diag_list *diags) {
        struct json_loader l = { .diags = diags };

        if (!p || !platform)
                return -EINVAL;

        for (size_t i = 0; i < p->n_shares; i++) {
                const struct policy_share *s = &p->shares[i];
                const struct platform_device *d = NULL;
                char path[64];

                /* Looked up here rather than with platform_find_device() so that only the
                 * data structure, not the platform loader, is needed. */
                for (size_t j = 0; j < platform->n_devices && !d; j++)
                        if (streq_ptr(platform->devices[j].name, s->device))
                                d = &platform->devices[j];

                if (!d) {
                        snprintf(path, sizeof(path), "shares[%zu].device", i);
                        json_loader_error(&l, path, "the platform has no device %s", s->device);
                } else if (!d->owner) {
                        snprintf(path, sizeof(path), "shares[%zu].sharer", i);
                        json_loader_error(&l, path, "device %s has no owner on the platform", s->device);
                } else if (!streq_ptr(d->owner, s->sharer)) {
                        snprintf(path, sizeof(path), "shares[%zu].sharer", i);
                        json_loader_error(&l, path, "device %s is driven by %s, not %s", s->device, d->owner,
                                          s->sharer);
                }
        }
        return json_loader_result(&l);
}

bool policy_agent_may_act(const struct policy *p, uid_t uid, const char *domain) {
        if (!p || !domain)
                return false;
        for (size_t i = 0; i < p->n_agents; i++) {
                const struct policy_agent *a = &p->agents[i];

                if (a->uid != uid)
                        continue;
                for (size_t j = 0; j < a->n_domains; j++)
                        if (streq_ptr(a->domains[j], domain))
                                return true;
        }
        return false;
}

static bool share_lists_peer(const struct policy_share *s, const char *peer) {
        for (size_t i = 0; i < s->n_peers; i++)
                if (streq_ptr(s->peers[i], peer))
                        return true;
        return false;
}

/* "vm1 and vm2", "vm1, vm2 and vm3", "vm1, vm2, vm3 and 4 more". */
static void format_peer_list(const struct policy_peer_request *peers, size_t n, char *buf, size_t size) {
        size_t shown = n > 3 ? 3 : n;
        int k = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < shown && k >= 0 && (size_t) k < size; i++) {
                const char *sep = i == 0 ? "" : (i == shown - 1 && n == shown) ? " and " : ", ";
                int w = snprintf(buf + k, size - (size_t) k, "%s%s", sep, peers[i].domain);
                k = w < 0 ? -1 : k + w;
        }
        if (n > shown && k >= 0 && (size_t) k < size)
                snprintf(buf + k, size - (size_t) k, " and %zu more", n - shown);
}

/* The request's own consistency, before any rule is looked at. */
static int check_peers(const char *sharer, const struct policy_peer_request *peers, size_t n_peers,
                       struct broker_error *err) {
        if (n_peers == 0 || !peers)
                return broker_error_set(err, BROKER_E_INVALID, "a region needs at least one peer");
        /* No rule lists more peers, and this bounds the quadratic checks below. */
        if (n_peers > POLICY_MAX_ENTRIES)
                return broker_error_set(err, BROKER_E_INVALID, "%zu peers, at most %d", n_peers, POLICY_MAX_ENTRIES);
        for (size_t i = 0; i < n_peers; i++) {
                if (!peers[i].domain)
                        return broker_error_set(err, BROKER_E_INVALID, "peer %zu has no domain", i);
                if (peers[i].access != ACCESS_RO && peers[i].access != ACCESS_RW)
                        return broker_error_set(err, BROKER_E_INVALID, "invalid access mode for peer %s",
                                                peers[i].domain);
                if (streq(peers[i].domain, sharer))
                        return broker_error_set(err, BROKER_E_INVALID, "%s cannot be a peer of its own region", sharer);
                for (size_t j = 0; j < i; j++)
                        if (streq(peers[i].domain, peers[j].domain))
                                return broker_error_set(err, BROKER_E_INVALID, "peer %s is listed twice",
                                                        peers[i].domain);
        }
        return 0;
}

/*
 * For several peers: a peer no rule names at all is refused as such, since marking the
 * sharing multi_peer would not help.
 */
static int check_peers_named(const struct policy *p, const char *sharer, const char *device,
                             const struct policy_peer_request *peers, size_t n_peers, struct broker_error *err) {
        for (size_t i = 0; i < n_peers; i++) {
                bool named = false;

                for (size_t k = 0; p && k < p->n_shares && !named; k++) {
                        const struct policy_share *s = &p->shares[k];

                        named = streq_ptr(s->sharer, sharer) && streq_ptr(s->device, device) &&
                                share_lists_peer(s, peers[i].domain);
                }
                if (!named)
                        return broker_error_set(err, BROKER_E_FORBIDDEN, "policy does not allow %s to share %s with %s",
                                                sharer, device, peers[i].domain);
        }
        return 0;
}

/* How far a candidate rule got; the best one decides the error reported. */
enum share_failure {
        FAIL_NO_RULE,
        FAIL_ACCESS,
        FAIL_TOO_LARGE,
};

struct share_verdict {
        enum share_failure fail;
        const struct policy_share *denied; /* FAIL_ACCESS: the rule */
        const char *denied_peer;           /* FAIL_ACCESS: the peer it gives too little */
        uint64_t best_max;                 /* FAIL_TOO_LARGE: the largest max_region seen */
};

/* Whether rule s allows the request; if not, how far it got goes into v. */
static bool rule_allows(const struct policy_share *s, const struct policy_peer_request *peers, size_t n_peers,
                        uint64_t size, struct share_verdict *v) {
        const char *short_peer = NULL;

        if (n_peers > 1 && !s->multi_peer)
                return false;
        for (size_t i = 0; i < n_peers; i++) {
                if (!share_lists_peer(s, peers[i].domain))
                        return false;
                if (!short_peer && peers[i].access > s->access)
                        short_peer = peers[i].domain;
        }
        if (short_peer) {
                if (v->fail < FAIL_ACCESS)
                        *v = (struct share_verdict) { .fail = FAIL_ACCESS, .denied = s, .denied_peer = short_peer };
                return false;
        }
        if (size > s->max_region) {
                if (v->fail < FAIL_TOO_LARGE || s->max_region > v->best_max)
                        *v = (struct share_verdict) { .fail = FAIL_TOO_LARGE, .best_max = s->max_region };
                return false;
        }
        return true;
}

static int share_refused(const struct share_verdict *v, const char *sharer, const char *device,
                         const struct policy_peer_request *peers, size_t n_peers, uint64_t size,
                         struct broker_error *err) {
        char a[NUM_FMT_MAX], b[NUM_FMT_MAX];

        switch (v->fail) {
        case FAIL_TOO_LARGE:
                return broker_error_set(err, BROKER_E_TOO_LARGE,
                                        "a region of %s exceeds the policy's max_region of %s for %s/%s",
                                        num_format_size(size, a), num_format_size(v->best_max, b), sharer, device);
        case FAIL_ACCESS:
                return broker_error_set(err, BROKER_E_FORBIDDEN, "policy allows only %s for %s/%s -> %s",
                                        access_to_string(v->denied->access), sharer, device, v->denied_peer);
        case FAIL_NO_RULE:
                break;
        }

        if (n_peers > 1) {
                char list[BROKER_MESSAGE_MAX];

                format_peer_list(peers, n_peers, list, sizeof(list));
                return broker_error_set(err, BROKER_E_MULTI_PEER,
                                        "a region seen by %s would leak one peer's data to the other%s; "
                                        "the policy does not mark this sharing multi_peer",
                                        list, n_peers > 2 ? "s" : "");
        }
        return broker_error_set(err, BROKER_E_FORBIDDEN, "policy does not allow %s to share %s with %s",
                                sharer, device, peers[0].domain);
}

int policy_check_share(const struct policy *p, const char *sharer, const char *device,
                       const struct policy_peer_request *peers, size_t n_peers, uint64_t size,
                       struct broker_error *err) {
        struct share_verdict v = { .fail = FAIL_NO_RULE };
        int r;

        if (!sharer || !device)
                return broker_error_set(err, BROKER_E_INVALID, "no sharer or device given");
        r = check_peers(sharer, peers, n_peers, err);
        if (r < 0)
                return r;
        if (n_peers > 1) {
                r = check_peers_named(p, sharer, device, peers, n_peers, err);
                if (r < 0)
                        return r;
        }
        for (size_t k = 0; p && k < p->n_shares; k++) {
                const struct policy_share *s = &p->shares[k];

                if (streq_ptr(s->sharer, sharer) && streq_ptr(s->device, device) &&
                    rule_allows(s, peers, n_peers, size, &v))
                        return 0;
        }
        return share_refused(&v, sharer, device, peers, n_peers, size, err);
}

void policy_quota_for(const struct policy *p, const char *domain, uint64_t *max_bytes, uint64_t *max_regions) {
        const struct policy_quota *own = NULL, *fallback = NULL;
        uint64_t bytes = POLICY_DEFAULT_MAX_BYTES, regions = POLICY_DEFAULT_MAX_REGIONS;

        for (size_t i = 0; p && i < p->n_quotas; i++) {
                const struct policy_quota *q = &p->quotas[i];

                if (domain && streq_ptr(q->domain, domain))
                        own = q;
                else if (streq_ptr(q->domain, "*"))
                        fallback = q;
        }
        if (own ?: fallback) {
                bytes = (own ?: fallback)->max_bytes;
                regions = (own ?: fallback)->max_regions;
        }
        if (max_bytes)
                *max_bytes = bytes;
        if (max_regions)
                *max_regions = regions;
}
