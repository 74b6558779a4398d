/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Who may share what with whom. Default deny: an agent (local uid) may act only for
 * the domains the policy lists for it, and a share is allowed only when a rule names the
 * (sharer domain, device) and the peer with at least the requested access. A region has
 * exactly one peer unless one rule marked multi_peer covers every peer of the request
 * (peers of one region can read each other's data). Quotas bound what a domain shares.
 * policy_load_*() reports every problem with its JSON path and returns 0 (*ret set),
 * -EINVAL when any error was found, or another -errno; *ret is untouched on failure, so a
 * bad file never replaces the policy in force. Loading is policy-load.c (on the JSON kit,
 * util/json-load.h); the decisions are policy.c.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "platform/platform.h"
#include "util/diag.h"
#include "util/error.h"
#include "util/model.h"

struct json_object;

#define POLICY_MAX_ENTRIES 4096   /* per array */
#define POLICY_MAX_FILE_SIZE (4u * 1024 * 1024)
/* Applied to a domain that no quota entry (nor a "*" entry) names. */
#define POLICY_DEFAULT_MAX_REGIONS UINT64_C(1024)
#define POLICY_DEFAULT_MAX_BYTES UINT64_MAX

struct policy_agent {
        uid_t uid;    /* resolved at load time when the file names a user */
        char *user;   /* as written, or NULL */
        char **domains;
        size_t n_domains;
};

struct policy_share {
        char *sharer;
        char *device;
        char **peers;
        size_t n_peers;
        enum access_mode access; /* the most a peer may get */
        bool multi_peer;
        uint64_t max_region;     /* UINT64_MAX when unlimited */
};

struct policy_quota {
        char *domain;            /* "*" for the default */
        uint64_t max_bytes;
        uint64_t max_regions;
};

struct policy {
        struct policy_agent *agents;
        size_t n_agents;
        struct policy_share *shares;
        size_t n_shares;
        struct policy_quota *quotas;
        size_t n_quotas;
};

struct policy_peer_request {
        const char *domain;
        enum access_mode access;
};

int policy_load_file(const char *path, struct policy **ret, struct diag_list *diags);
int policy_load_string(const char *text, struct policy **ret, struct diag_list *diags);
int policy_load_json(struct json_object *root, struct policy **ret, struct diag_list *diags);
void policy_free(struct policy *p);
DEFINE_CLEANUP(struct policy, policy_free);

/* Rules must name devices the platform has, owned by the rule's sharer: errors otherwise. */
int policy_check_platform(const struct policy *p, const struct platform *platform, struct diag_list *diags);

bool policy_agent_may_act(const struct policy *p, uid_t uid, const char *domain);

/*
 * 0 if sharer may share a region of size bytes from device with exactly these peers,
 * else -errno with err set: forbidden, multi_peer_forbidden, region_too_large, or
 * invalid_request (no peers, duplicate peer, peer == sharer).
 */
int policy_check_share(const struct policy *p, const char *sharer, const char *device,
                       const struct policy_peer_request *peers, size_t n_peers, uint64_t size,
                       struct broker_error *err);

/* The quota that applies to domain: its own entry, else "*", else the built-in default. */
void policy_quota_for(const struct policy *p, const char *domain, uint64_t *max_bytes, uint64_t *max_regions);
