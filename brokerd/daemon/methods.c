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

int methods_reload(struct methods *m, struct diag_list *diags) {
        if (!m->broker)
                return -ENXIO;
        if (!m->policy_path) {
                (void) diag_add(diags, DIAG_ERROR, "", "brokerd was started without a policy file to reload");
                return -EINVAL;
        }
        return broker_reload_policy(m->broker, m->policy_path, diags);
}

/* ---- identity: the core decides; these only ask it ---- */

struct broker_caller caller_of(const struct rpc_caller *c) {
        return (struct broker_caller) { .uid = c->uid, .admin = c->admin, .pidfd = c->pidfd, .pid = c->pid,
                                        .connection = c->connection, .lend_fds = true };
}

int methods_check_acts_for(const struct methods *m, const struct rpc_caller *c, const char *domain,
                           struct rpc_error *err) {
        struct broker_caller bc = caller_of(c);

        if (broker_caller_acts_for(m->broker, &bc, domain))
                return 0;
        return fail_with_code(err, BROKER_E_FORBIDDEN, "uid %u may not act for domain %s", (unsigned) c->uid, domain);
}

struct domain_list {
        const char **list;
        size_t n;
};

static int domain_list_add(void *userdata, const char *domain) {
        struct domain_list *l = userdata;
        const char **nl = reallocarray(l->list, l->n + 1, sizeof(*nl));

        if (!nl)
                return -ENOMEM;
        l->list = nl;
        l->list[l->n++] = domain;
        return 0;
}

int agent_domains(const struct methods *m, uid_t uid, const char ***ret, size_t *ret_n) {
        struct domain_list l = {};
        int q;

        q = broker_caller_domains(m->broker, &(struct broker_caller) { .uid = uid }, domain_list_add, &l);
        if (q < 0) {
                free(l.list);
                return q;
        }
        *ret = l.list;
        *ret_n = l.n;
        return 0;
}

bool methods_uid_known(void *userdata, uid_t uid) {
        const struct methods *m = userdata;

        return m->broker && broker_uid_known(m->broker, uid);
}
