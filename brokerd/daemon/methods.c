/* SPDX-License-Identifier: Apache-2.0 */
/* The methods object, its wiring, and who the caller may act for. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/methods-internal.h"

int64_t monotonic_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int methods_new(const char *policy_path, struct methods **ret) {
        _cleanup_(methods_freep) struct methods *m = calloc(1, sizeof(*m));
        int q;

        if (!m)
                return -ENOMEM;
        if (policy_path && !(m->policy_path = strdup(policy_path)))
                return -ENOMEM;
        q = hashmap_new(&hashmap_u64_ops, &m->subscriptions);
        if (q < 0)
                return q;
        m->backend_name = "unknown";
        m->started = monotonic_usec();
        *ret = TAKE_PTR(m);
        return 0;
}

void methods_free(struct methods *m) {
        void *v;

        if (!m)
                return;
        if (m->subscriptions) {
                size_t i = 0;
                while (hashmap_iterate(m->subscriptions, &i, &v))
                        subscription_free(v);
                hashmap_free(m->subscriptions);
        }
        free(m->policy_path);
        free(m);
}

void methods_set_broker(struct methods *m, struct broker *b) {
        m->broker = b;
}

static int server_notify(void *userdata, uint64_t connection, const char *method, struct json_object *params) {
        return rpc_server_notify(userdata, connection, method, params);
}

void methods_set_server(struct methods *m, struct rpc_server *s) {
        m->server = s;
        m->notify = s ? server_notify : NULL;
        m->notify_userdata = s;
}

void methods_set_notify(struct methods *m, methods_notify_t notify, void *userdata) {
        m->notify = notify;
        m->notify_userdata = userdata;
}

void methods_set_backend_name(struct methods *m, const char *name) {
        m->backend_name = name ?: "unknown";
}

int methods_reload(struct methods *m, struct diag_list *diags) {
        if (!m->broker)
                return -ENXIO;
        if (!m->policy_path) {
                (void) diag_add(diags, DIAG_ERROR, "", "brokerd was started without a policy file to reload");
                return -EINVAL;
        }
        return broker_reload_policy(m->broker, m->policy_path, diags);
}

/* ---- identity ---- */

struct broker_caller caller_of(const struct rpc_caller *c) {
        return (struct broker_caller) { .uid = c->uid, .admin = c->admin };
}

bool acts_for(const struct methods *m, uid_t uid, bool admin, const char *domain) {
        return admin || policy_agent_may_act(broker_policy(m->broker), uid, domain);
}

int check_acts_for(const struct methods *m, const struct rpc_caller *c, const char *domain, struct rpc_error *err) {
        if (acts_for(m, c->uid, c->admin, domain))
                return 0;
        return broker_failf(err, BROKER_E_FORBIDDEN, "uid %u may not act for domain %s", (unsigned) c->uid, domain);
}

bool region_visible(const struct methods *m, const struct rpc_caller *c, const struct broker_region_info *r) {
        if (acts_for(m, c->uid, c->admin, r->owner))
                return true;
        for (size_t i = 0; i < r->n_peers; i++)
                if (acts_for(m, c->uid, c->admin, r->peers[i].domain))
                        return true;
        return false;
}

static int list_add_once(const char ***list, size_t *n, size_t *cap, const char *d) {
        for (size_t k = 0; k < *n; k++)
                if (strcmp((*list)[k], d) == 0)
                        return 0;
        if (*n == *cap) {
                size_t ncap = *cap ? *cap * 2 : 8;
                const char **nl = reallocarray(*list, ncap, sizeof(*nl));
                if (!nl)
                        return -ENOMEM;
                *list = nl;
                *cap = ncap;
        }
        (*list)[(*n)++] = d;
        return 0;
}

int agent_domains(const struct methods *m, uid_t uid, const char ***ret, size_t *ret_n) {
        const struct policy *p = m->broker ? broker_policy(m->broker) : NULL;
        _cleanup_(xfreep) const char **list = NULL;
        size_t n = 0, cap = 0;
        int q;

        for (size_t i = 0; p && i < p->n_agents; i++) {
                if (p->agents[i].uid != uid)
                        continue;
                for (size_t j = 0; j < p->agents[i].n_domains; j++) {
                        q = list_add_once(&list, &n, &cap, p->agents[i].domains[j]);
                        if (q < 0)
                                return q;
                }
        }
        *ret = TAKE_PTR(list);
        *ret_n = n;
        return 0;
}

bool methods_uid_known(void *userdata, uid_t uid) {
        const struct methods *m = userdata;
        const struct policy *p = m->broker ? broker_policy(m->broker) : NULL;

        for (size_t i = 0; p && i < p->n_agents; i++)
                if (p->agents[i].uid == uid && p->agents[i].n_domains > 0)
                        return true;
        return false;
}
