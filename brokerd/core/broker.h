/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The broker: validates, places, records and maps every share, and drives each grant
 * through its lifecycle. sqlite is the truth; the in-memory index (regions, tokens,
 * ranges in use, routes, quota usage) is rebuilt from it by broker_new(), which also
 * resumes work a crash interrupted (unconfirmed unmaps, half-done revokes).
 *
 * Every call that changes state commits one transaction (with its audit row) before it
 * touches memory or reports success; a refused call changes nothing. Calls return 0 or
 * -errno, with err (may be NULL) carrying the stable code and a message.
 * Single-threaded: the daemon calls it from its event loop. The broker never sleeps:
 * deadlines are acted on by broker_process_deadlines(), which the loop calls at
 * broker_next_deadline().
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend/backend.h"
#include "placement/placement.h"
#include "platform/platform.h"
#include "policy/policy.h"
#include "store/store.h"
#include "util/error.h"
#include "util/model.h"
#include "util/names.h"

#define BROKER_MAX_PEERS 16
#define BROKER_MAX_LABEL 128
#define BROKER_DEFAULT_REVOKE_TIMEOUT_USEC (10 * UINT64_C(1000000))
#define BROKER_MAX_REVOKE_TIMEOUT_USEC (24 * 3600 * UINT64_C(1000000))
#define BROKER_DEFAULT_UNPLUG_GRACE_USEC (10 * UINT64_C(1000000))

/* Who is asking. Agents act for the domains the policy gives their uid; admins for any. */
struct broker_caller {
        uid_t uid;
        bool admin;
};

enum broker_event_type {
        BROKER_EVENT_ATTACHED,      /* a peer attached: for the owner */
        BROKER_EVENT_RECALL,        /* the region is being revoked: peers must release by deadline */
        BROKER_EVENT_RELEASED,      /* a peer released: for the owner */
        BROKER_EVENT_REVOKED,       /* a peer's attachment was forcibly revoked */
        BROKER_EVENT_RECLAIMED,     /* the region is gone and its range scrubbed */
        BROKER_EVENT_ROUTE_CHANGED, /* route (device, domain) now points elsewhere */
        BROKER_EVENT_UNPLUG_OVERDUE, /* a domain kept a mapping past its deadline: escalated */
};

struct broker_event {
        enum broker_event_type type;
        uint64_t region;     /* 0 for some route changes */
        const char *owner;   /* the region's owner, or NULL */
        const char *device;
        const char *domain;  /* the peer concerned, or NULL */
        int64_t deadline;    /* RECALL */
        const char *reason;  /* may be NULL */
        enum unplug_escalation escalation; /* UNPLUG_OVERDUE */
};

struct broker_config {
        const char *db_path;
        /* Taken over by broker_new() on success (the fields are set to NULL). */
        struct platform *platform;
        struct policy *policy;
        struct backend *backend;
        /* Deadline for revokes the broker starts itself (domain gone, all peers released). */
        uint64_t revoke_timeout_usec;
        /* CLOCK_REALTIME in microseconds; NULL means the real clock. */
        int64_t (*clock)(void *userdata);
        void *clock_userdata;
        void (*on_event)(void *userdata, const struct broker_event *ev);
        void *event_userdata;
        /*
         * A domain that still holds a mapping once the revoke deadline has passed and at least
         * unplug_grace_usec after its removal was requested is escalated against, once per
         * request: the unplug state lives in memory, so after a restart the removal is requested
         * again and, if still ignored, escalated again (pause and destroy are idempotent).
         */
        enum unplug_escalation escalation;
        uint64_t unplug_grace_usec; /* 0: BROKER_DEFAULT_UNPLUG_GRACE_USEC */
};

struct broker_share_peer {
        const char *domain;
        enum access_mode access;
};

struct broker_share_request {
        const char *owner; /* the sharing (HW) domain */
        const char *device;
        uint64_t size;
        const struct broker_share_peer *peers;
        size_t n_peers;
        bool has_numa_node;
        uint32_t numa_node;
        uint64_t alignment; /* 0 or a power of two */
        const char *label;  /* may be NULL */
        bool place;         /* place mode: base proposed by the caller */
        uint64_t base;
};

struct broker_token {
        char domain[NAME_MAX_LEN + 1];
        char token[STORE_TOKEN_LEN + 1];
};

struct broker_share_result {
        bool bounce; /* no placement: use bounce buffers; reason says why */
        char reason[PLACEMENT_REASON_MAX];
        uint64_t region;
        uint64_t base, size, alignment;
        const char *pool; /* valid while the broker lives */
        size_t n_tokens;
        struct broker_token tokens[BROKER_MAX_PEERS];
        int owner_fd; /* the owner's mapping for fd backends (caller closes), else -1 */
};

struct broker_attach_result {
        uint64_t region;
        uint64_t base, size;
        enum access_mode access;
        int fd; /* for fd backends (caller closes), else -1 */
};

/* A mapping whose removal was requested and is not confirmed yet (requested 0: none). */
struct broker_unplug {
        int64_t requested;  /* CLOCK_REALTIME usec */
        bool failed;        /* the backend reported that the guest refused the removal */
        int64_t escalated;  /* when the escalation ran, 0 if it has not */
        enum unplug_escalation action;
        bool action_failed; /* the backend could not carry the action out */
        bool deferred;      /* found on start: the request is repeated only if no removal follows */
};

/* Read-only views; valid until the next call that changes the broker. */
struct broker_peer_info {
        const char *domain;
        enum access_mode access;
        enum peer_state state;
        bool mapped; /* the backend may still show the region to the domain */
        struct broker_unplug unplug;
};

struct broker_region_info {
        uint64_t id;
        const char *owner, *device, *pool, *label;
        uint64_t base, size;
        enum region_state state;
        int64_t deadline, created;
        bool owner_mapped;
        struct broker_unplug owner_unplug;
        size_t n_peers;
        const struct broker_peer_info *peers;
};

/* What broker_reconcile() found and did. */
struct broker_reconcile_result {
        unsigned checked;   /* mappings the database expects, and found as expected */
        unsigned repaired;  /* expected but missing: mapped again */
        unsigned revoked;   /* expected but missing and not repairable, or the domain is not running */
        unsigned completed; /* removals that finished while nobody was watching */
        unsigned detached;  /* brokerd devices the database does not know: removal requested */
};

struct broker_route_info {
        bool found;
        enum route_kind kind;
        uint64_t region; /* ROUTE_REGION */
        uint64_t base, size;
        enum access_mode access;
        const char *reason; /* ROUTE_BOUNCE */
};

struct broker;

int broker_new(struct broker_config *cfg, struct broker **ret, struct broker_error *err);
void broker_free(struct broker *b);
DEFINE_CLEANUP(struct broker, broker_free);

/* Swap the policy in force. Takes ownership of policy on success only. */
int broker_set_policy(struct broker *b, struct policy *policy, struct diag_list *diags);
/* Load a policy file and put it in force; on any error the old policy stays. */
int broker_reload_policy(struct broker *b, const char *path, struct diag_list *diags);

int broker_share(struct broker *b, const struct broker_caller *caller, const struct broker_share_request *req,
                 struct broker_share_result *ret, struct broker_error *err);
int broker_attach(struct broker *b, const struct broker_caller *caller, const char *domain, const char *token,
                  struct broker_attach_result *ret, struct broker_error *err);
int broker_release(struct broker *b, const struct broker_caller *caller, const char *domain, uint64_t region,
                   struct broker_error *err);
/*
 * Revoke by the owner (acting as owner) or an admin (owner NULL). Peers still attached are
 * recalled and have timeout_usec to release; at the deadline, or at once with force, their
 * attachments are revoked. Revoking a region already being revoked can only bring its
 * deadline forward (or force it).
 */
int broker_revoke(struct broker *b, const struct broker_caller *caller, const char *owner, uint64_t region,
                  uint64_t timeout_usec, bool force, struct broker_error *err);
/* A domain went away: its attachments are revoked, its own regions revoked. Admin only. */
int broker_domain_gone(struct broker *b, const struct broker_caller *caller, const char *domain,
                       struct broker_error *err);

/*
 * Compares the database with what the backend really has (its survey) and converges:
 * unknown mappings are detached, missing ones repaired or revoked, removals that completed
 * unseen recorded. Runs on start (in broker_new) and whenever the caller learns that the
 * backend may have changed behind its back (the hypervisor connection came back).
 * Backends without a survey op make it a no-op.
 */
int broker_reconcile(struct broker *b, struct broker_reconcile_result *ret);

/* Acts on every deadline that has passed: revokes, and escalations against unplugs. */
int broker_process_deadlines(struct broker *b);
/* The earliest pending deadline or escalation (CLOCK_REALTIME usec), or INT64_MAX when none. */
int64_t broker_next_deadline(struct broker *b);

int broker_route_lookup(struct broker *b, const char *device, const char *domain, struct broker_route_info *ret);
int broker_region_get(struct broker *b, uint64_t id, struct broker_region_info *ret);
/* Live regions (not reclaimed), in no particular order; fn returning non-zero stops the walk. */
int broker_region_foreach(struct broker *b, int (*fn)(void *userdata, const struct broker_region_info *r),
                          void *userdata);
/* What domain shares now, against its quota. */
void broker_usage(const struct broker *b, const char *domain, uint64_t *bytes, uint64_t *regions);

const struct platform *broker_platform(const struct broker *b);
const struct policy *broker_policy(const struct broker *b);
struct store *broker_store(struct broker *b);
