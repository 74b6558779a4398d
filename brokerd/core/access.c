/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Permission, decided here only: an admin acts for every domain, an agent for the domains the
 * policy in force gives its uid. Nothing outside the core reads the policy's agent list.
 */
#include <stdio.h>
#include <string.h>

#include "core/broker-internal.h"

/* Who an audit row names: "uid:1000", "admin:0", or "broker" for the broker's own acts. */
void caller_actor(const struct broker_caller *caller, char buf[static BROKER_ACTOR_MAX]) {
        if (!caller)
                snprintf(buf, BROKER_ACTOR_MAX, "broker");
        else
                snprintf(buf, BROKER_ACTOR_MAX, "%s:%u", caller->admin ? "admin" : "uid", (unsigned) caller->uid);
}

bool broker_caller_acts_for(const struct broker *b, const struct broker_caller *caller, const char *domain) {
        return caller->admin || policy_agent_may_act(b->policy, caller->uid, domain);
}

int check_acts_for(const struct broker *b, const struct broker_caller *caller, const char *domain,
                   struct broker_error *err) {
        if (!broker_caller_acts_for(b, caller, domain))
                return broker_error_set(err, BROKER_E_FORBIDDEN, "uid %u may not act for domain %s",
                                        (unsigned) caller->uid, domain);
        return 0;
}

int check_admin(const struct broker_caller *caller, struct broker_error *err) {
        if (!caller->admin)
                return broker_error_set(err, BROKER_E_FORBIDDEN, "only an admin may ask this");
        return 0;
}

bool region_visible(const struct broker *b, const struct broker_caller *caller, const struct region *r) {
        for (size_t i = 0; i <= r->n_peers; i++)
                if (broker_caller_acts_for(b, caller, r->holders[i].domain))
                        return true;
        return false;
}

/* Has an earlier entry of the policy (agent a, domain d) already given uid this domain? */
static bool agent_domain_seen(const struct policy *p, uid_t uid, size_t a, size_t d) {
        const char *name = p->agents[a].domains[d];

        for (size_t i = 0; i <= a; i++) {
                if (p->agents[i].uid != uid)
                        continue;
                for (size_t j = 0; j < (i == a ? d : p->agents[i].n_domains); j++)
                        if (strcmp(p->agents[i].domains[j], name) == 0)
                                return true;
        }
        return false;
}

int broker_caller_domains(const struct broker *b, const struct broker_caller *caller,
                          int (*fn)(void *userdata, const char *domain), void *userdata) {
        const struct policy *p = b->policy;

        if (caller->admin)
                return 0;
        for (size_t i = 0; i < p->n_agents; i++) {
                if (p->agents[i].uid != caller->uid)
                        continue;
                for (size_t j = 0; j < p->agents[i].n_domains; j++) {
                        if (agent_domain_seen(p, caller->uid, i, j))
                                continue;
                        int q = fn(userdata, p->agents[i].domains[j]);
                        if (q != 0)
                                return q;
                }
        }
        return 0;
}

bool broker_uid_known(const struct broker *b, uid_t uid) {
        for (size_t i = 0; i < b->policy->n_agents; i++)
                if (b->policy->agents[i].uid == uid)
                        return true;
        return false;
}
