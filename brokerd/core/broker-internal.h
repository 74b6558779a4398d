/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The broker's insides, shared by the files of brokerd/core/ and by nothing else. One file per
 * concern: region.c (regions and the holders of their mappings, quotas), route.c, access.c
 * (permission), share.c, attach.c (attach, release), revoke.c, deadline.c (deadlines, retries,
 * escalation), takedown.c (unmap, scrub, reclaim), reconcile.c (survey, repair, backend
 * callbacks), resume.c (rebuild from the database), query.c, broker.c (life cycle).
 *
 * Every durable change goes through store_transition() (one transaction with its audit rows);
 * memory follows only once it committed. The backend is called only through backend/backend.h.
 */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/broker.h"
#include "util/hashmap.h"

#define BROKER_UNPLUG_RETRY_USEC (2 * UINT64_C(1000000))
/* Retrying a failed take-down: from 1s, doubling, at most a minute apart. */
#define BROKER_RETRY_MIN_USEC (1 * UINT64_C(1000000))
#define BROKER_RETRY_MAX_USEC (60 * UINT64_C(1000000))
#define BROKER_REASON_UNDELIVERED "reply undelivered"
#define BROKER_ACTOR_MAX 48

struct token_entry {
        char token[STORE_TOKEN_LEN + 1]; /* "" once the region is reclaimed */
        struct region *region;
        size_t peer;
};

/*
 * The doorbells of a region (doorbell.c). Parties are numbered by holder: 0 the owner, 1.. the
 * peers in share order. fd[(from * n + to) * vectors + v] is the broker's copy of the eventfd
 * from rings to on v (-1: no pair), n being 1 + n_peers; it lives exactly while both are parties.
 */
struct region_bells {
        unsigned vectors;    /* 0: the region has no doorbells (nothing else is allocated) */
        uint64_t generation;
        size_t n;
        bool *party;
        int *fd;
        bool owner_gone;     /* the owner's process exited: it is no party any more */
        /*
         * The backend rings them in the guests' devices (backend_guest_doorbells()): the core keeps
         * only who is a party (for region.joined/left); fd[] stays all -1.
         */
        bool in_guests;
};

/*
 * A region and the holders of its mappings. holders[0] is the owner (its domain is owner; its
 * access is rw and its state unused: the owner is entitled while the region is live), and
 * peers = holders + 1 are the n_peers peers, in the order the share named them. The owner and
 * the peers take the same paths through unmap, repair and reconcile.
 */
struct region {
        uint64_t id;
        char *owner, *device, *label;
        const struct platform_pool *pool;
        uint64_t base, size;
        enum region_state state;
        int64_t deadline, created;
        size_t n_peers;
        struct broker_peer_info *holders; /* 1 + n_peers */
        struct broker_peer_info *peers;   /* holders + 1 */
        char **domains;                   /* the peers' names; peers[i].domain points to domains[i] */
        struct token_entry *tokens;       /* parallel to peers */
        struct route_link *route_links;   /* parallel to peers */
        struct holder_link *holder_links; /* parallel to holders */
        struct range_node range;
        struct range_node by_id;          /* in broker.ids: [id, id + 1) */
        /* A take-down that failed (store error, scrub failure) is tried again at retry_at. */
        int64_t retry_at;
        uint64_t retry_backoff;
        struct region *revoking_prev, *revoking_next;
        bool on_revoking_list;
        bool finish_queued; /* on broker.finish_queue */
        struct region_bells bells;
};

typedef struct broker_peer_info holder_t;


/*
 * A region's place among one peer's route's live regions (region.route_links, parallel to its
 * peers): a list, so that a region leaves its routes in O(1) however many are live.
 */
struct route_link {
        struct region *region;
        struct route *route; /* NULL while on no route */
        struct route_link *older, *newer;
};

/*
 * The process a holder's fd went to (holder-process.c): one pidfd of the broker's own and one
 * watch, shared by every holder whose fd went to the same connection's process; under an fd
 * store, one a holder (the store keeps one fd per open file, and each holder's is named).
 */
struct holder_process {
        struct broker *broker;
        unsigned n_ref;       /* linked holders, plus one while its connection's entry is there */
        uint64_t fd_key;      /* pidfd: the key in broker.processes */
        uint64_t connection;  /* the key in broker.connections while it is there, else 0 */
        int pidfd;
        void *watch;          /* NULL: its exit goes unseen */
        struct holder_link *holders;
};

/* A holder's place in its process's list (region.holder_links, parallel to its holders). */
struct holder_link {
        struct region *region;
        struct holder_process *process; /* NULL: no process known */
        struct holder_link *prev, *next;
};

/* Live regions reachable from (device, domain), newest last; plus a recorded bounce. */
struct route {
        char *key; /* "device/domain": '/' never occurs in names */
        char *device, *domain;
        struct route_link *oldest, *newest;
        size_t n_live;
        char *bounce_reason; /* set when the last share for this route bounced */
        int64_t updated;
};

struct usage {
        char *domain;
        uint64_t bytes, regions;
};

struct broker {
        struct platform *platform;
        struct policy *policy;
        struct backend *backend;
        struct store *store;
        struct placer *placer;
        uint64_t revoke_timeout_usec;
        enum unplug_escalation escalation;
        uint64_t unplug_grace_usec;
        /*
         * While starting or reconciling with a backend that has a survey: a removal requested
         * before (before the crash, before libvirtd went away) may still be pending in the
         * hypervisor, and asking again for a pending removal is not safe everywhere (libvirt
         * 9.0's daemon was seen to crash on it). So such removals are deferred: repeated only if
         * nothing completes them within BROKER_UNPLUG_RETRY_USEC. New removals go out at once.
         */
        bool defer_unmaps;
        bool has_deferred;
        /* Inside a take-down: mappings that go at once are recorded with its commit (takedown.c). */
        bool gone_batch;
        /* Take-downs whose scrub waits for the next flush (takedown.c), in the order queued. */
        void (*request_flush)(void *userdata);
        void *flush_userdata;
        struct finish_entry *finish_queue;
        size_t n_finish_queued, finish_queue_size;
        bool finishing_queued;
        bool has_retry;
        int64_t (*clock)(void *userdata);
        void *clock_userdata;
        void (*on_event)(void *userdata, const struct broker_event *ev);
        void *event_userdata;
        int (*watch_process)(void *userdata, int pidfd, void **ret_handle);
        void (*unwatch_process)(void *userdata, void *handle);
        void *watch_userdata;
        struct backend_fd_store fd_store; /* .keep NULL: none */

        struct hashmap *regions; /* id -> region */
        struct range_tree ids;   /* the same regions in id order, for paging (region.list) */
        struct hashmap *tokens;  /* token -> token_entry */
        struct hashmap *routes;  /* "device/domain" -> route */
        struct hashmap *usage;   /* owner domain -> usage */
        struct hashmap *processes;   /* pidfd -> holder_process */
        struct hashmap *connections; /* caller's connection -> its process's holder_process */
        struct region *revoking; /* list of regions in state revoking */
};

/* broker.c */
int64_t broker_now(const struct broker *b);
/*
 * backend_map(); with a backend whose maps wait for a hypervisor, the commits made so far (the
 * map's own record) are flushed on a thread meanwhile, so that the reply after the map finds
 * them durable instead of flushing then.
 */
int map_flushing(struct broker *b, const struct backend_region *br, const char *domain, enum access_mode access,
                 struct backend_mapping *ret);
void broker_emit(struct broker *b, const struct broker_event *ev);
/* An audit row of a transition. */
struct store_audit audit_row(const char *actor, const struct region *r, const char *domain, const char *action,
                             const char *from, const char *to, const char *reason, int64_t now);
/* A transition with no write of its own: only its audit row. */
int audit_only(struct broker *b, const struct store_audit *a);
int store_failed(int q, struct broker_error *err, const char *what);
/* Live regions by id, collected first: acting on one may reclaim (free) it. */
int regions_collect_ids(struct broker *b, uint64_t **ret, size_t *ret_n);

/* access.c */
void caller_actor(const struct broker_caller *caller, char buf[static BROKER_ACTOR_MAX]);
int check_acts_for(const struct broker *b, const struct broker_caller *caller, const char *domain,
                   struct broker_error *err);
int check_admin(const struct broker_caller *caller, struct broker_error *err);
bool region_visible(const struct broker *b, const struct broker_caller *caller, const struct region *r);

/* region.c */
/* r joins (leaves) the index of regions, by id and in id order: regions_add() is -EEXIST or -ENOMEM. */
int regions_add(struct broker *b, struct region *r);
void regions_remove(struct broker *b, struct region *r);
int region_alloc(const char *owner, const char *device, const char *label, size_t n_peers, struct region **ret);
void region_free(struct region *r);
DEFINE_CLEANUP(struct region, region_free);
int region_set_peer(struct region *r, size_t i, const char *domain, enum access_mode access, enum peer_state state,
                    const char *token, bool mapped);
int region_add_peer(struct region *r, const struct store_peer *sp);
ssize_t region_find_peer(const struct region *r, const char *domain);
holder_t *region_holder(struct region *r, const char *domain);
/* The k-th holder for k in [0, n_peers]: the peers first, then the owner. */
holder_t *region_holder_at(struct region *r, size_t k);
bool holder_is_owner(const struct region *r, const holder_t *h);
/* The owner while the region is live; a peer while attached. */
bool holder_entitled(const struct region *r, const holder_t *h);
bool region_live(const struct region *r);
bool region_any_attached(const struct region *r);
bool peer_final(enum peer_state s);
void region_info(const struct region *r, struct broker_region_info *ret);
struct backend_region backend_region_of(const struct region *r);
void revoking_list_add(struct broker *b, struct region *r);
void revoking_list_remove(struct broker *b, struct region *r);
int usage_adjust(struct broker *b, const char *domain, int64_t bytes, int64_t regions);
int quota_check(struct broker *b, const char *owner, uint64_t size, struct broker_error *err);
/*
 * One peer's row changes (and with it, maybe, the region's state and the peer's route), with
 * its audit row, in one transition; memory is the caller's to update once it committed.
 */
struct peer_change {
        enum peer_state state;
        bool mapped;
        bool drop_route;       /* the peer's route no longer leads to the region */
        bool set_region;       /* the region moves to region_state */
        enum region_state region_state;
};
int peer_record(struct broker *b, struct region *r, holder_t *h, const struct peer_change *c,
                const struct store_audit *audit);

/* route.c */
void route_free(struct route *rt);
int route_get(struct broker *b, const char *device, const char *domain, bool create, struct route **ret);
/* Makes region rt's newest live region (-ENOENT: none of its peers is rt's domain). */
int route_add_live(struct route *rt, struct region *region);
/* Takes region off rt, wherever it is among rt's live regions; nothing if it is not on rt. */
void route_remove_live(struct route *rt, struct region *region);
/* The region rt leads to now (its newest live one), NULL if none. */
struct region *route_current(const struct route *rt);
/* Inside a transition (s): what the durable routes table says for rt. */
int route_persist(struct store *s, const struct route *rt, int64_t now);
void emit_route_changed(struct broker *b, const char *device, const char *domain, uint64_t region,
                        const char *reason);
int routes_persist_without(struct broker *b, struct store *s, struct region *region, int64_t now);
void routes_drop_region(struct broker *b, struct region *region);
int route_persist_without_peer(struct broker *b, struct store *s, struct region *region, const char *domain,
                               int64_t now);
void route_drop_peer(struct broker *b, struct region *region, const char *domain, const char *reason);
void routes_announce(struct broker *b, const struct region *region, const char *reason);

/* holder-process.c: the process that received a holder's fd (see broker_caller.pidfd). */
#define BROKER_REASON_HOLDER_EXITED "holder process exited"
/* h now holds an fd handed to the caller's process: know that process (a pidfd) and watch it. */
void holder_track(struct broker *b, struct region *r, holder_t *h, const struct broker_caller *caller);
/* Forget h's process (its mapping is gone or was given up), in the fd store too. */
void holder_untrack(struct broker *b, struct region *r, holder_t *h);
void region_untrack(struct broker *b, struct region *r);
/* The broker stops (or r is freed): its holders let go of their processes; the fd store keeps
 * their pidfds for the next start. */
void region_close_holders(struct region *r);
/* The broker stops: the processes no holder uses any more, let go. */
void processes_free(struct broker *b);
/* At start: the pidfds the fd store kept for r's holders still mapped, taken back and watched. */
void region_take_holders(struct broker *b, struct region *r);
/* What the backend is told about h; forced unless h gave its mapping up (or owns the region). */
struct backend_holder backend_holder_of(const struct region *r, const holder_t *h);

/* doorbell.c (docs/protocol.md "Doorbells"). */
#define BROKER_REASON_RECLAIMED "region reclaimed"
/* r gets vectors (0: none) of doorbells; holder 0 (the owner) is a party unless vectors is 0. */
int bells_init(struct region *r, unsigned vectors, uint64_t generation, bool in_guests);
/* Closes the broker's copies (the fd store keeps them: the broker stops) and frees. */
void bells_free(struct region *r);
/* Holder k becomes a party: pairs with every party, kept in the fd store. Nothing announced yet. */
int bells_join(struct broker *b, struct region *r, size_t k);
/* The join went no further (the attach failed): k's pairs cut without a word to anyone. */
void bells_unjoin(struct broker *b, struct region *r, size_t k);
/* Tells the other parties that k joined (BROKER_EVENT_JOINED). */
void bells_announce_join(struct broker *b, struct region *r, size_t k);
/* Every party whose hold ended (a peer no longer attached, the owner gone) is cut off; the rest hear. */
void bells_sync(struct broker *b, struct region *r, const char *reason);
/* The owner's hold ended (its process exited, the region is being forgotten). */
void bells_owner_gone(struct broker *b, struct region *r, const char *reason);
/* fds a join of k would hand k now (2 per vector and other party). */
size_t bells_join_fds(const struct region *r);
/* Dups of party k's ends (broker_doorbells), owner first, then the peers in share order. */
/* k's doorbells: dups, or with lend the broker's own (broker_caller.lend_fds). */
int bells_get(struct broker *b, const struct region *r, size_t k, bool lend, struct broker_doorbells *ret);
/* At start: parties from the record, their pairs taken back from the fd store or made anew. */
int bells_resume(struct broker *b, struct region *r);

/* takedown.c */
int mapping_record_gone(struct broker *b, struct region *r, holder_t *h);
/*
 * A batch of take-down work: until its end, mappings whose removal completes at once are let go
 * in memory only (holder_t.gone_unrecorded), and the reclaim's commit, or else one commit at the
 * end, writes them. begin returns whether this is the outermost batch; end takes it and the
 * region's id (the region may be gone by then: reclaimed, everything written).
 */
bool gone_batch_begin(struct broker *b);
int gone_batch_end(struct broker *b, uint64_t region_id, bool outer);
void broker_finish_queue_free(struct broker *b);
int holder_unmap(struct broker *b, struct region *r, holder_t *h);
int region_finish(struct broker *b, struct region *r, const char *actor);
void region_retry_later(struct broker *b, struct region *r, int error);

/* revoke.c */
int region_force(struct broker *b, struct region *r, const char *actor, const char *reason);
int region_start_revoke(struct broker *b, struct region *r, const char *actor, uint64_t timeout_usec, bool force,
                        const char *reason);
int peer_revoke_now(struct broker *b, struct region *r, size_t i, const char *actor, const char *why,
                    bool still_mapped);
int region_settle(struct broker *b, struct region *r, const char *actor, const char *why);
int domain_gone(struct broker *b, const char *actor, const char *domain, struct broker_domain_gone_result *ret,
                struct broker_error *err);

/* attach.c */
int peer_release(struct broker *b, const char *actor, struct region *r, size_t i, const char *reason,
                 struct broker_error *err);
void region_info_after(struct broker *b, uint64_t id, struct broker_region_info *ret);

/* reconcile.c */
void broker_on_unmap_done(void *userdata, uint64_t id, const char *domain, int result);
void broker_on_domain_gone(void *userdata, const char *domain);
void broker_on_reconnected(void *userdata);
void broker_on_refused(void *userdata, uint64_t region_id, const char *who, const char *why);

/* resume.c */
int broker_load(struct broker *b);
int broker_resume(struct broker *b);
