/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Inside the libvirt backend (backend-libvirt.h says what it does). backend-libvirt.c has the
 * ops: region files, devices, survey, escalation. libvirt-events.c has the connection to
 * libvirtd (with its reconnects), the thread that runs libvirt's events and their delivery
 * on the sd-event loop, and the removals the guests have not confirmed yet (pending).
 * libvirt-doorbells.c has the doorbell regions' ivshmem servers (on the ivshmem host thread),
 * libvirt-qemu.c finds the QEMU process of a domain, libvirt-stale.c works around QEMU 7.2's
 * stale fd handlers after a doorbell device's unplug under TCG, libvirt-domains.c keeps the
 * domains' handles between calls, libvirt-detach.c makes the detach calls on threads of their own.
 * Everything here but the queue and the detach calls runs on the loop's thread.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>
#include <libvirt/libvirt.h>
#include <systemd/sd-event.h>

#include "backend/backend-libvirt.h"

struct lv_event;
struct lv_pending;
struct lv_bells;
struct lv_stale;
struct detach_call;
struct ivshmem_host;
struct hashmap;

struct backend_libvirt {
        struct backend backend; /* first, so a struct backend * is a struct backend_libvirt * */
        char *uri;
        virConnectPtr conn; /* NULL while libvirtd is away */
        uid_t qemu_uid;
        gid_t qemu_gid;
        int cb_removed, cb_removal_failed, cb_lifecycle;

        /* Shared with the libvirt thread, under lock. */
        pthread_mutex_t lock;
        struct lv_event *queue;
        size_t n_queue, n_queue_allocated;
        int efd;
        struct detach_call *detach_head, *detach_tail; /* waiting for a thread (libvirt-detach.c) */
        size_t n_detaching;      /* detach calls waiting or running */
        size_t n_detach_threads; /* threads making them */
        pthread_cond_t detached;

        pthread_t thread;
        bool thread_started;
        atomic_bool stop;

        /* Main thread only. */
        sd_event *event;
        sd_event_source *source, *reconnect;
        uint64_t reconnect_delay;
        struct lv_pending *pending;
        size_t n_pending, n_pending_allocated;
        struct hashmap *domains; /* name -> struct lv_domain: handles kept (libvirt-domains.c) */

        /* Doorbell regions (libvirt-doorbells.c), main thread only. */
        char *ivshmem_dir;
        struct backend_fd_store fd_store; /* all NULL: no store */
        struct ivshmem_host *host;        /* made with the first doorbell region */
        struct lv_bells **bells;
        size_t n_bells, n_bells_allocated;
        unsigned max_bells; /* backend_libvirt_options.max_doorbell_regions */
        struct hashmap *bell_fds_kept;    /* names this backend keeps in the fd store */
        struct lv_stale *stale;           /* unplugs whose stale fd numbers wait to be filled */
        size_t n_stale;
};

static inline struct backend_libvirt *to_lv(struct backend *b) {
        return (struct backend_libvirt *) b;
}

/* libvirt's message for the last error of this thread, never NULL. */
const char *libvirt_last_error(void);

/* Once per process: libvirt's event implementation, with its errors kept off stderr. */
int libvirt_events_init(void);
/*
 * With l->uri set: the queue, the connection (registered for the events brokerd acts on) and
 * the event thread. On failure, libvirt_events_stop() still undoes what was done.
 */
int libvirt_events_start(struct backend_libvirt *l);
/* Stops the thread, drops the connection, lets go of the loop; l is then freed by the caller. */
void libvirt_events_stop(struct backend_libvirt *l);
/* The attach_event op. */
int libvirt_events_attach(struct backend *b, sd_event *e);

/* Removals requested and not yet confirmed, by region and domain: an index, or -1. */
ssize_t libvirt_pending_find(struct backend_libvirt *l, uint64_t id, const char *domain);
int libvirt_pending_add(struct backend_libvirt *l, uint64_t id, const char *domain);
void libvirt_pending_remove(struct backend_libvirt *l, size_t i);

/*
 * libvirt-domains.c: a domain by name. lookup asks libvirtd (-ESRCH: no such domain, -ENOTCONN,
 * -EIO). get gives a handle kept from an earlier call when there is one (*ret_kept), else looks
 * it up and keeps it; a caller that gets VIR_ERR_NO_DOMAIN on a kept handle forgets it and
 * looks the name up again. Either way the caller frees *ret (virDomainFree). Handles are
 * forgotten when their domain stops or is undefined, and all of them with the connection.
 */
int libvirt_domain_lookup(struct backend_libvirt *l, const char *domain, virDomainPtr *ret);
int libvirt_domain_get(struct backend_libvirt *l, const char *domain, bool *ret_kept, virDomainPtr *ret);
void libvirt_domain_forget(struct backend_libvirt *l, const char *domain);
void libvirt_domains_forget_all(struct backend_libvirt *l);

/*
 * libvirt-detach.c: the detach call of region id's device (its alias) from d, on a thread (a few
 * at most, the rest queued); the removal must be pending already (libvirt_pending_add()). A call
 * that fails reports through the event queue (libvirt_detach_failed(), any thread): the loop then
 * ends the pending removal. wait: until no call waits or runs (before the queue goes).
 */
int libvirt_detach_start(struct backend_libvirt *l, virDomainPtr d, uint64_t id, const char *domain);
void libvirt_detach_wait(struct backend_libvirt *l);
void libvirt_detach_failed(struct backend_libvirt *l, uint64_t id, const char *domain, int code);

/* The region's file, opened and checked to be ours (owner, mode, size). */
int libvirt_region_file_open(struct backend_libvirt *l, const struct backend_region *r, int *ret);

/*
 * libvirt-qemu.c: a pidfd for the QEMU process libvirt runs domain in (its pid file under
 * /run/libvirt/qemu, checked against the process's command line). -ESRCH when none runs.
 */
int libvirt_qemu_pidfd(const char *domain, int *ret);

/*
 * libvirt-doorbells.c: a doorbell region's server. create: a new one (any old one of the region
 * closed); restore: the one of before a restart, from the fd store and the peer table (a no-op
 * when it runs already). expect before the attach call, attached after it (ok: the call
 * succeeded; the peer's fds are then kept and the table saved). remove: the domain leaves the
 * group before its device is unplugged (see libvirt_bells_remove()); 0 when it was no peer. close: the
 * region is destroyed. stop: the backend goes away; the servers are abandoned (socket files and
 * tables stay for the next start). Each returns 0 or -errno.
 */
int libvirt_bells_socket(struct backend_libvirt *l, uint64_t id, char *buf, size_t n);
int libvirt_bells_create(struct backend_libvirt *l, const struct backend_region *r);
int libvirt_bells_restore(struct backend_libvirt *l, const struct backend_region *r);
bool libvirt_bells_has(struct backend_libvirt *l, uint64_t id);
/* Whether one more doorbell region may be served (max_bells). */
bool libvirt_bells_room(const struct backend_libvirt *l);
int libvirt_bells_expect(struct backend_libvirt *l, uint64_t id, const char *domain);
int libvirt_bells_attached(struct backend_libvirt *l, uint64_t id, const char *domain, bool ok);
/*
 * The domain's device leaves the group (brokerd's copies of its eventfds closed, nobody told: see
 * quiet_departures). tcg: the domain runs under TCG, whose QEMU keeps stale handlers on the
 * device's own fd numbers (libvirt-stale.c).
 */
int libvirt_bells_remove(struct backend_libvirt *l, uint64_t id, const char *domain, bool tcg);
/* domain's connections on every server queue rather than send while paused (libvirt-stale.c). */
void libvirt_bells_pause_domain(struct backend_libvirt *l, const char *domain, bool pause);
/* The id domain's QEMU has in region id's group; -ENOENT when it is not a peer. */
int libvirt_bells_id(struct backend_libvirt *l, uint64_t id, const char *domain, uint32_t *ret);
void libvirt_bells_close(struct backend_libvirt *l, uint64_t id);
void libvirt_bells_stop(struct backend_libvirt *l);

/*
 * libvirt-stale.c: note, before the unplug, which fd numbers of domain's QEMU hold eventfds (the
 * device's own, as dups), or, where brokerd may not look into QEMU's fds, how many fds the device
 * held (device_fds); fill them after DEVICE_REMOVED (logged when it cannot); forget them when the
 * domain stops.
 */
int libvirt_stale_note(struct backend_libvirt *l, uint64_t region, const char *domain, const int *eventfds,
                       unsigned n, size_t device_fds);
void libvirt_stale_fill(struct backend_libvirt *l, uint64_t region, const char *domain);
/*
 * Before anything is plugged into domain d: its notes whose devices are gone are filled now;
 * -EBUSY while one of them is still being unplugged (a new device's fds would take the numbers
 * the unplug is about to free, and their stale handlers would run on them).
 */
int libvirt_stale_settle(struct backend_libvirt *l, virDomainPtr d, const char *domain);
/* At start: the notes of before (their files), for the QEMUs that still run; settled at once. */
void libvirt_stale_load(struct backend_libvirt *l);
/* Every domain with a note gets its connections paused (after a server was restored). */
void libvirt_stale_pause_all(struct backend_libvirt *l);
void libvirt_stale_forget_domain(struct backend_libvirt *l, const char *domain);
void libvirt_stale_free(struct backend_libvirt *l);
