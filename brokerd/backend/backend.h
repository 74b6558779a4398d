/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Mapping backends, as a driver table (like libvirt's): how a region's memory is made
 * real and shown to a domain. Backends are made by name through backend/registry.h, and
 * attached to the event loop (backend_attach_event()) before the first map, so that their
 * events are wired by then. The core calls them in this order for a region:
 *   create (or restore after a restart) -> map(owner), map(peer)... -> unmap(...)
 *   -> scrub -> destroy.
 * unmap either completes at once (returns 0) or returns -EINPROGRESS and later calls
 * backend_unmap_done(); until then the core keeps the range quarantined.
 * Every op returns 0 or -errno and must be idempotent for the same arguments, because
 * the core repeats interrupted work after a crash. unmap must also work when only r->id is
 * set: reconciliation removes mappings of regions the database no longer knows.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/survey.h"
#include "platform/platform.h"
#include "util/macro.h"
#include "util/model.h"

struct backend;
/* sd-event's loop, declared here so that users of the table need not include libsystemd. */
typedef struct sd_event sd_event;

struct backend_region {
        uint64_t id;
        uint64_t base, size;
        const struct platform_pool *pool;
        /* Doorbell vectors the backend gives the domains (backend_ops.guest_doorbells); 0: none. */
        unsigned doorbells;
};

/*
 * Who holds a mapping: the domain, and for host processes the process that received its fd
 * (a pidfd, borrowed; -1 when unknown, e.g. after a restart). forced: the holder did not give the
 * mapping up itself (its attachment was revoked); a backend may then refuse to call the removal
 * complete while the holder can still reach the memory (-EINPROGRESS, completed by the user when
 * the process is stopped or gone, or by the backend through backend_unmap_done()).
 */
struct backend_holder {
        const char *domain;
        int pidfd;
        bool forced;
};

struct backend_mapping {
        int fd;        /* for fd-based backends, owned by the caller; -1 otherwise */
        /*
         * In: the caller sends fd before it calls the backend again (and dups it to keep it),
         * so the backend may hand its own fd where a dup would do. Out: lent, fd is the
         * backend's own (the caller must not close it).
         */
        bool lend, lent;
        uint64_t size;
};

/* result < 0: the removal failed (the guest refused it); the mapping is still there. */
typedef void (*backend_unmap_done_t)(void *userdata, uint64_t region_id, const char *domain, int result);

struct backend_ops {
        const char *name;
        /*
         * map hands the parties fds (struct backend_mapping.fd) that they use in their own
         * processes: only then can the core hand them doorbells (eventfds) along with them.
         */
        bool hands_fds;
        /*
         * map gives each domain a device with r->doorbells interrupt vectors, rung between the
         * domains without the core (the libvirt backend's ivshmem-doorbell devices, served by
         * brokerd's own ivshmem server): the core makes no eventfds for such regions.
         */
        bool guest_doorbells;
        /*
         * map waits for a hypervisor (tens of milliseconds): the core flushes the database on a
         * thread of its own meanwhile (store_flush_start()), so that the reply need not wait for
         * the flush after the map. map must not call back into the core.
         */
        bool slow_maps;
        /*
         * Optional: deliver the backend's own events (the callbacks below) on e's thread. Called
         * once, before the first map; -EBUSY when attached already. NULL: the backend has no
         * events of its own (its unmaps complete at once and it never loses its hypervisor).
         */
        int (*attach_event)(struct backend *b, sd_event *e);
        /*
         * Optional: can this backend make and map region r (pool, size, doorbells; no id yet)?
         * Called at share time, before anything is recorded; with why filled, -EINVAL refuses the
         * share with size_unsupported, -E2BIG with limit_exceeded (a backend's own limit, e.g.
         * doorbell servers). NULL means every region the placer produces is fine.
         */
        int (*check)(struct backend *b, const struct backend_region *r, char *why, size_t why_len);
        /* Make the region's memory exist, zero-filled. */
        int (*create)(struct backend *b, const struct backend_region *r);
        /* After a restart: find the memory again. -ENOENT if it did not survive. */
        int (*restore)(struct backend *b, const struct backend_region *r);
        int (*map)(struct backend *b, const struct backend_region *r, const char *domain, enum access_mode access,
                   struct backend_mapping *ret);
        int (*unmap)(struct backend *b, const struct backend_region *r, const struct backend_holder *h);
        /*
         * Optional: the domains running now and every mapping of brokerd's found in them, for
         * reconciliation (on start, and when the backend comes back from losing its hypervisor).
         * NULL: the backend's mappings cannot be seen from outside (fds held by processes).
         */
        int (*survey)(struct backend *b, struct backend_survey *ret);
        /*
         * Optional: the holder ignores the removal of its mapping of r past its deadline; act on it
         * (pause/stop or destroy/kill the domain or process; REPORT does nothing here). NULL: only
         * reporting. Returns 1 when the action cut the holder off from the memory by the time it
         * returns (the user records the mapping gone), 0 when the removal stays pending (completed
         * later through backend_unmap_done(), or by the user when the process exits).
         */
        int (*escalate)(struct backend *b, const struct backend_region *r, const struct backend_holder *h,
                        enum unplug_escalation action);
        /*
         * Optional, for guest_doorbells: the id domain's device has in r's doorbell group (what the
         * other guests write to ring it); -ENOENT when its device has not joined.
         */
        int (*doorbell_id)(struct backend *b, const struct backend_region *r, const char *domain, uint32_t *ret);
        /* Zero the memory so nothing of it reaches whoever holds it next (or still holds it). */
        int (*scrub)(struct backend *b, const struct backend_region *r);
        /* Free the memory after reclaim. */
        int (*destroy)(struct backend *b, const struct backend_region *r);
        void (*free)(struct backend *b);
};

/*
 * What a backend reports to its user (the core), on the event loop's thread. Every member may
 * be NULL. unmap_done: an unmap that returned -EINPROGRESS finished (result < 0: the removal
 * failed and the mapping is still there). domain_gone: a domain stopped, crashed or was
 * undefined, so every mapping it had is gone. reconnected: the backend lost its hypervisor and
 * is back; events were lost meanwhile, so the user reconciles. refused: something that is not a
 * domain the backend is mapping region into (who: "pid N uid U") tried to reach the region's
 * doorbells and was turned away (why: a short reason), for the audit trail.
 */
struct backend_callbacks {
        backend_unmap_done_t unmap_done;
        void (*domain_gone)(void *userdata, const char *domain);
        void (*reconnected)(void *userdata);
        void (*refused)(void *userdata, uint64_t region_id, const char *who, const char *why);
        void *userdata;
};

/*
 * A place outside the daemon that keeps fds across its restarts (systemd's file descriptor
 * store), given to a backend by whoever creates it, and to the core (broker_config.fd_store,
 * for holders' pidfds); one that has none keeps nothing. Names are the user's own, 1..
 * BACKEND_FD_NAME_MAX characters of [A-Za-z0-9_.-]: the memfd backend's "region-…", the core's
 * "holder-…".
 * keep: a copy of fd is kept under name, in place of anything kept under it before; fd stays
 * the caller's. drop: nothing is kept under name any more (0 when nothing was). take: the fd
 * that was kept under name when the daemon started, now the caller's (-ENOENT when none came
 * back); whatever nobody takes while the core resumes is closed and dropped by the keeper.
 * Each returns 0 or -errno, on the event loop's thread; a failed keep or drop costs only
 * durability (the keeper says so in the log), so backends carry on without it.
 */
#define BACKEND_FD_NAME_MAX 255

struct backend_fd_store {
        int (*keep)(void *userdata, const char *name, int fd);
        int (*drop)(void *userdata, const char *name);
        int (*take)(void *userdata, const char *name, int *ret_fd);
        void *userdata;
};

struct backend {
        const struct backend_ops *ops;
        struct backend_callbacks callbacks;
};

/* Installs the callbacks (copied); NULL clears them. */
void backend_set_callbacks(struct backend *b, const struct backend_callbacks *cb);
const char *backend_name(const struct backend *b);

/*
 * Everyone calls the backend only through these: each checks for an optional operation.
 * backend_attach_event, backend_check: 0 when the op is missing. backend_survey / backend_restore: -EOPNOTSUPP when
 * missing (restore missing means the memory cannot survive). backend_escalate: 0 for
 * ESCALATION_REPORT, -EOPNOTSUPP when the op is missing.
 */
int backend_attach_event(struct backend *b, sd_event *e);
int backend_check(struct backend *b, const struct backend_region *r, char *why, size_t why_len);
int backend_create(struct backend *b, const struct backend_region *r);
int backend_restore(struct backend *b, const struct backend_region *r);
int backend_map(struct backend *b, const struct backend_region *r, const char *domain, enum access_mode access,
                struct backend_mapping *ret);
int backend_unmap(struct backend *b, const struct backend_region *r, const struct backend_holder *h);
bool backend_can_survey(const struct backend *b);
/* Whether map hands the holders fds of their own (backend_ops.hands_fds). */
bool backend_hands_fds(const struct backend *b);
/* Whether map gives the domains doorbell devices of their own (backend_ops.guest_doorbells). */
bool backend_guest_doorbells(const struct backend *b);
/* Whether map waits for a hypervisor (backend_ops.slow_maps). */
bool backend_slow_maps(const struct backend *b);
int backend_survey(struct backend *b, struct backend_survey *ret);
int backend_escalate(struct backend *b, const struct backend_region *r, const struct backend_holder *h,
                     enum unplug_escalation action);
/* -EOPNOTSUPP when the op is missing. */
int backend_doorbell_id(struct backend *b, const struct backend_region *r, const char *domain, uint32_t *ret);
int backend_scrub(struct backend *b, const struct backend_region *r);
int backend_destroy(struct backend *b, const struct backend_region *r);
void backend_free(struct backend *b);
DEFINE_CLEANUP(struct backend, backend_free);

/* For backends: report to the user (no-ops when the callback is not set). */
void backend_unmap_done(struct backend *b, uint64_t region_id, const char *domain, int result);
void backend_domain_gone(struct backend *b, const char *domain);
void backend_reconnected(struct backend *b);
void backend_refused(struct backend *b, uint64_t region_id, const char *who, const char *why);
