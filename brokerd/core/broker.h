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
 * Permission is decided here, once, from the caller's identity (struct broker_caller):
 * the RPC layer parses, calls and formats, and never reads the policy or the store.
 * broker_new() takes the backend over and installs all of its callbacks (unmap done,
 * domain gone, reconnected), so the backend reports to the broker, never to the daemon.
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
/*
 * Doorbells (docs/protocol.md "Doorbells"): one eventfd per ordered pair of the region's parties
 * (its owner and its attached peers) and per vector. A region takes 0..BROKER_MAX_DOORBELL_VECTORS
 * vectors, by default BROKER_DEFAULT_DOORBELL_VECTORS where the backend hands fds, else 0.
 */
#define BROKER_MAX_DOORBELL_VECTORS 4
#define BROKER_DEFAULT_DOORBELL_VECTORS 2
/* A party's doorbells: one per other party (at most every peer, or the owner and the other peers) and vector. */
#define BROKER_MAX_DOORBELLS (BROKER_MAX_PEERS * BROKER_MAX_DOORBELL_VECTORS)

/*
 * Who is asking. Agents act for the domains the policy gives their uid; admins for any.
 * pidfd: the process at the other end of the caller's connection (borrowed); a verb that hands
 * it an fd (share: the owner's, attach: a peer's) keeps its own dup to know who holds the
 * mapping. 0 or negative: unknown (so a zero-initialised caller has none).
 * connection: the caller's connection, unique for the user's lifetime (0: none). Holders whose
 * fds went to one connection share one dup of its pidfd and one watch, until
 * broker_connection_closed().
 * lend_fds: the caller sends the doorbells a verb returns before it calls the broker again,
 * and dups what it keeps longer: they are then the broker's own (broker_doorbells.lent), not
 * dups for the caller to close.
 */
struct broker_caller {
        uid_t uid;
        bool admin;
        int pidfd;
        pid_t pid;   /* pidfd's process in our pid namespace; 0 when unknown */
        uint64_t connection;
        bool lend_fds;
};

enum broker_event_type {
        BROKER_EVENT_ATTACHED,      /* a peer attached: for the owner */
        BROKER_EVENT_RECALL,        /* the region is being revoked: peers must release by deadline */
        BROKER_EVENT_RELEASED,      /* a peer released: for the owner */
        BROKER_EVENT_REVOKED,       /* a peer's attachment was forcibly revoked */
        BROKER_EVENT_RECLAIMED,     /* the region is gone and its range scrubbed */
        BROKER_EVENT_ROUTE_CHANGED, /* route (device, domain) now points elsewhere */
        BROKER_EVENT_UNPLUG_OVERDUE, /* a domain kept a mapping past its deadline: escalated */
        BROKER_EVENT_RECONCILED,    /* the backend came back and the broker reconciled with it */
        BROKER_EVENT_JOINED,        /* domain became a party of the region's doorbells: for the other parties */
        BROKER_EVENT_LEFT,          /* domain is no party any more, its pairs cut: for the remaining parties */
        _BROKER_EVENT_TYPE_MAX,
};

/* "attached", "recall", ..., for logs; NULL out of range. */
const char *broker_event_type_to_string(enum broker_event_type t);

struct broker_peer_info;

struct broker_event {
        enum broker_event_type type;
        uint64_t region;     /* 0 for some route changes */
        const char *owner;   /* the region's owner, or NULL */
        const char *device;
        const char *domain;  /* the peer concerned, or NULL */
        int64_t deadline;    /* RECALL */
        const char *reason;  /* may be NULL */
        enum unplug_escalation escalation; /* UNPLUG_OVERDUE */
        /* RECLAIMED: the region's peers (the event is the last word on them). */
        size_t n_peers;
        const struct broker_peer_info *peers;
        /* JOINED, LEFT: the parties that hear of it (every other party holding the region). */
        size_t n_parties;
        const char *const *parties;
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
        /* What the database keeps of the past (reclaimed regions, audit rows); zero: everything. */
        struct store_retention retention;
        /*
         * Optional: watch a holder's process (the broker's pidfd) for its exit, on the event loop
         * that calls the broker; the user then calls broker_process_exited(b, pidfd). watch stores a
         * handle that unwatch gets back; unwatch runs before the broker closes the pidfd.
         */
        int (*watch_process)(void *userdata, int pidfd, void **ret_handle);
        void (*unwatch_process)(void *userdata, void *handle);
        void *watch_userdata;
        /*
         * Optional: where each holder's pidfd is kept across restarts (systemd's fd store, the
         * backends' interface; copied, its userdata must outlive the broker). A holder's pidfd is
         * kept when its process is recorded and dropped when the broker lets it go; at start the
         * broker takes back those of holders still mapped and watches them again. Without it, a
         * restart forgets which processes hold the mappings.
         */
        const struct backend_fd_store *fd_store;
        /*
         * Optional, with group sync: the broker queued take-downs to run after the next flush
         * (broker_finish_queued()); flush soon. Memory a holder may still read is scrubbed only
         * once its partners heard region.left (and stopped reading), and that may go only once
         * the release is durable: so a take-down waits for the flush that every request of the
         * loop's turn shares, instead of flushing on its own.
         */
        void (*request_flush)(void *userdata);
        void *flush_userdata;
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
        bool has_doorbells; /* else BROKER_DEFAULT_DOORBELL_VECTORS, or 0 where the backend hands no fds */
        unsigned doorbells; /* vectors per ordered pair of parties */
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
        int owner_fd; /* the owner's mapping for fd backends (caller closes unless lent), else -1 */
        bool owner_fd_lent; /* the broker's own (broker_caller.lend_fds) */
        unsigned vectors; /* doorbell vectors per ordered pair of parties */
};

/* One doorbell of a party: with peer (the other party), on vector. */
struct broker_doorbell {
        const char *peer;   /* valid until the next call that changes the broker */
        unsigned vector;
        int send_fd;        /* ring peer: write an 8-byte 1 (the caller's dup: it closes it) */
        int recv_fd;        /* readable when peer rings (the caller's dup) */
};

/* A party's doorbell id in its guest's device (regions whose doorbells are in the guests). */
struct broker_guest_bell {
        const char *domain; /* valid until the next call that changes the broker */
        uint32_t id;        /* what the guest writes to ring it: (id << 16) | vector */
};

/*
 * A party's doorbells with every other party holding the region, owner first, then peers in share
 * order. Where the doorbells are in the guests (no eventfds: n is 0), guests lists the id of every
 * party whose device has joined, the caller's own among them, in the same order.
 */
struct broker_doorbells {
        uint64_t region;
        unsigned vectors;
        uint64_t generation; /* changes when a start had to make the eventfds anew */
        size_t n;
        struct broker_doorbell bells[BROKER_MAX_DOORBELLS];
        bool lent; /* the fds are the broker's own, valid until the next call into it */
        bool in_guests;
        size_t n_guests;
        struct broker_guest_bell guests[BROKER_MAX_PEERS + 1];
};

/* Closes every fd of d (n becomes 0). */
void broker_doorbells_close(struct broker_doorbells *d);

struct broker_attach_result {
        uint64_t region;
        uint64_t base, size;
        enum access_mode access;
        int fd; /* for fd backends (caller closes unless lent), else -1 */
        bool fd_lent; /* the broker's own (broker_caller.lend_fds) */
        struct broker_doorbells doorbells; /* the new peer's, with every other party (caller closes) */
};

/* A mapping whose removal was requested and is not confirmed yet (requested 0: none). */
struct broker_unplug {
        int64_t requested;  /* CLOCK_REALTIME usec */
        bool failed;        /* the backend reported that the guest refused the removal */
        int64_t escalated;  /* when the escalation ran, 0 if it has not */
        enum unplug_escalation action;
        bool action_failed; /* the backend could not carry the action out */
        bool deferred;      /* found on start: the request is repeated only if no removal follows */
        /*
         * Backends without events of their own (host processes): when the pending removal is asked
         * again, to see whether the holder let go by now. 0: not pending there.
         */
        int64_t recheck;
};

/* Read-only views; valid until the next call that changes the broker. */
struct broker_peer_info {
        const char *domain;
        enum access_mode access;
        enum peer_state state;
        bool mapped; /* the backend may still show the region to the domain */
        struct broker_unplug unplug;
        /* Gone (mapped is false) while its row still says mapped: the take-down's next commit
         * writes it (docs/bench-control-plane.md: one commit where there were four). */
        bool gone_unrecorded;
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
        /* Doorbells: vectors (0: none), and per holder (0: the owner, 1..: peers) whether it is a party. */
        unsigned bell_vectors;
        uint64_t bell_generation;
        const bool *bell_parties; /* 1 + n_peers entries, or NULL without doorbells */
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

/* What broker_domain_gone() did. */
struct broker_domain_gone_result {
        unsigned peers_revoked;  /* grants and attachments of the domain revoked */
        unsigned regions_revoked; /* live regions it owned, now being revoked */
};

/* One domain as admin.domains shows it: what it shares against its quota. */
struct broker_domain_info {
        const char *domain;
        uint64_t regions_owned, bytes_owned;
        uint64_t max_regions, max_bytes; /* UINT64_MAX: unlimited */
        uint64_t attached;               /* attachments it holds as a peer */
};

/* One pool of the platform and how much of it live regions use. */
struct broker_pool_info {
        const char *pool;
        uint32_t numa_node;
        uint64_t base, size, granule;
        uint64_t used, free;
        uint64_t regions;
};

/* Pools summed per NUMA node. */
struct broker_numa_info {
        uint32_t numa_node;
        uint64_t size, used;
};

struct broker_stats {
        uint64_t regions_live;     /* offered or active */
        uint64_t regions_revoking;
};

struct broker;

int broker_new(struct broker_config *cfg, struct broker **ret, struct broker_error *err);
void broker_free(struct broker *b);
DEFINE_CLEANUP(struct broker, broker_free);

/* Swap the policy in force. Takes ownership of policy on success only. */
int broker_set_policy(struct broker *b, struct policy *policy, struct diag_list *diags);
/* Load a policy file and put it in force; on any error the old policy stays. */
int broker_reload_policy(struct broker *b, const char *path, struct diag_list *diags);

/*
 * Permission, decided here only. An admin acts for every domain; an agent for the domains
 * the policy in force lists for its uid. A region is visible to whoever acts for its owner
 * or one of its peers.
 */
bool broker_caller_acts_for(const struct broker *b, const struct broker_caller *caller, const char *domain);
/*
 * The domains an agent acts for, each once, in policy order; nothing for an admin (who acts
 * for all). fn returning non-zero stops the walk with that value. Strings live until the
 * policy changes.
 */
int broker_caller_domains(const struct broker *b, const struct broker_caller *caller,
                          int (*fn)(void *userdata, const char *domain), void *userdata);
/* Does the policy in force name this uid as an agent? */
bool broker_uid_known(const struct broker *b, uid_t uid);

/*
 * The verbs. Each checks that the caller acts for the domain it names (forbidden otherwise),
 * records the transition with its audit row in one transaction, then touches the backend.
 */
int broker_share(struct broker *b, const struct broker_caller *caller, const struct broker_share_request *req,
                 struct broker_share_result *ret, struct broker_error *err);
int broker_attach(struct broker *b, const struct broker_caller *caller, const char *domain, const char *token,
                  struct broker_attach_result *ret, struct broker_error *err);
/* How many fds an attach with token would hand now (its mapping's and its doorbells'); 0: unknown token, or none. */
size_t broker_attach_fds(const struct broker *b, const char *token);
/*
 * region.doorbells: domain's doorbells in region, as dups the caller closes (the same eventfds
 * on every call while the pairs live). domain must hold the region as a party (its owner until
 * the region is reclaimed or the owner's process exits, or an attached peer): no_such_region
 * otherwise, forbidden when the caller does not act for domain.
 */
int broker_region_doorbells(struct broker *b, const struct broker_caller *caller, const char *domain, uint64_t id,
                            struct broker_doorbells *ret, struct broker_error *err);
/*
 * domain gives up its grant or attachment. ret (may be NULL) is the region after the call;
 * once a region is reclaimed only ret->id and ret->state (REGION_RECLAIMED) are set.
 */
int broker_release(struct broker *b, const struct broker_caller *caller, const char *domain, uint64_t region,
                   struct broker_region_info *ret, struct broker_error *err);
/*
 * Revoke by the owner (acting as owner) or an admin (owner NULL). Peers still attached are
 * recalled and have timeout_usec to release; at the deadline, or at once with force, their
 * attachments are revoked. Revoking a region already being revoked can only bring its
 * deadline forward (recorded, audited as "revoke-deadline") or force it. ret as for broker_release().
 */
int broker_revoke(struct broker *b, const struct broker_caller *caller, const char *owner, uint64_t region,
                  uint64_t timeout_usec, bool force, struct broker_region_info *ret, struct broker_error *err);
/* A domain went away: its attachments are revoked, its own regions revoked. Admin only. ret may be NULL. */
int broker_domain_gone(struct broker *b, const struct broker_caller *caller, const char *domain,
                       struct broker_domain_gone_result *ret, struct broker_error *err);

/*
 * Undo for a verb whose reply could not be delivered, audited with reason "reply undelivered".
 * broker_share_undo: a caller acting for the owner takes the region it just shared down at
 * once (forced revoke, scrub, reclaim: quota and range freed, its tokens void); a region that
 * is no longer live is bad_state. broker_attach_undo: a caller acting for domain gives back
 * the attachment it just made (the peer is released and its mapping removed).
 */
int broker_share_undo(struct broker *b, const struct broker_caller *caller, uint64_t region,
                      struct broker_error *err);
int broker_attach_undo(struct broker *b, const struct broker_caller *caller, const char *domain, uint64_t region,
                       struct broker_error *err);

/*
 * Compares the database with what the backend really has (its survey) and converges:
 * unknown mappings are detached, missing ones repaired or revoked, removals that completed
 * unseen recorded. Runs on start (in broker_new) and when the backend reports that it
 * reconnected (then BROKER_EVENT_RECONCILED follows). Backends without a survey: a no-op.
 */
int broker_reconcile(struct broker *b, struct broker_reconcile_result *ret);

/*
 * The process behind pidfd (one the broker handed to watch_process) exited. Its mapping is gone:
 * an attachment it held is released (audited "holder process exited"), a region it owned and
 * still live is revoked with the configured deadline, a revoked mapping it kept is recorded gone.
 * 0 also when pidfd is no longer the broker's.
 */
int broker_process_exited(struct broker *b, int pidfd);
/* connection (broker_caller.connection) closed: a later connection of its process is watched anew. */
void broker_connection_closed(struct broker *b, uint64_t connection);

/*
 * Group sync (store.h): the broker's commits become durable together at broker_sync(). The
 * user must then hold every reply and notification while broker_unsynced() is not 0, and stop
 * if broker_sync() fails (what reached the disk is unknown).
 */
int broker_set_group_sync(struct broker *b, bool on);
uint64_t broker_unsynced(struct broker *b);
int broker_sync(struct broker *b);
/*
 * With group sync and request_flush: runs the take-downs queued until a flush (scrub, free,
 * record reclaimed). Call right after broker_sync() and delivering what it held; their commits
 * then wait for the next flush. Returns how many ran.
 */
size_t broker_finish_queued(struct broker *b);

/* Acts on every deadline that has passed: revokes, and escalations against unplugs. */
int broker_process_deadlines(struct broker *b);
/* The earliest pending deadline or escalation (CLOCK_REALTIME usec), or INT64_MAX when none. */
int64_t broker_next_deadline(struct broker *b);

/*
 * Queries: the caller sees only what it may. Views are valid until the next call that
 * changes the broker.
 * broker_region_get: no_such_region (-ENOENT) when there is no live region id, forbidden
 * (-EPERM) when the caller acts for none of its domains.
 * broker_region_foreach: the live regions the caller may see, by increasing id; fn returning
 * non-zero stops the walk with that value. broker_region_foreach_after: those with an id above
 * after only (a page's start, region.list): O(log n) expected to find the first, then one step
 * per region walked, visible or not (the broker keeps its live ids in a balanced tree).
 * broker_route_lookup: the caller must act for domain.
 */
int broker_region_get(struct broker *b, const struct broker_caller *caller, uint64_t id,
                      struct broker_region_info *ret, struct broker_error *err);
int broker_region_foreach(struct broker *b, const struct broker_caller *caller,
                          int (*fn)(void *userdata, const struct broker_region_info *r), void *userdata);
int broker_region_foreach_after(struct broker *b, const struct broker_caller *caller, uint64_t after,
                                int (*fn)(void *userdata, const struct broker_region_info *r), void *userdata);
int broker_route_lookup(struct broker *b, const struct broker_caller *caller, const char *device, const char *domain,
                        struct broker_route_info *ret, struct broker_error *err);
/* What domain shares now, against its quota. */
void broker_usage(const struct broker *b, const char *domain, uint64_t *bytes, uint64_t *regions);

/*
 * Admin queries (forbidden, -EPERM, for agents; err may be NULL), each walk stopping when fn
 * returns non-zero (that value is returned).
 * broker_domain_foreach: every domain a region, the policy's agents or its quotas name, by name.
 * broker_pool_foreach / broker_numa_foreach: the platform's pools in base order / NUMA nodes
 * ascending, with what live regions use of them.
 * broker_audit_foreach: audit rows with seq > after_seq and time >= since, oldest first, at
 * most limit (0: no limit); newest: the newest limit such rows (still delivered oldest first).
 */
int broker_domain_foreach(struct broker *b, const struct broker_caller *caller,
                          int (*fn)(void *userdata, const struct broker_domain_info *d), void *userdata,
                          struct broker_error *err);
int broker_pool_foreach(struct broker *b, const struct broker_caller *caller,
                        int (*fn)(void *userdata, const struct broker_pool_info *p), void *userdata,
                        struct broker_error *err);
int broker_numa_foreach(struct broker *b, const struct broker_caller *caller,
                        int (*fn)(void *userdata, const struct broker_numa_info *n), void *userdata,
                        struct broker_error *err);
int broker_audit_foreach(struct broker *b, const struct broker_caller *caller, int64_t after_seq, int64_t since,
                         unsigned limit, bool newest, int (*fn)(void *userdata, const struct store_audit *a),
                         void *userdata, struct broker_error *err);
int broker_stats(struct broker *b, const struct broker_caller *caller, struct broker_stats *ret,
                 struct broker_error *err);
/* The mapping backend's name ("memfd", "libvirt"). */
const char *broker_backend_name(const struct broker *b);
