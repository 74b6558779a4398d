/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Inside the libvirt backend (backend-libvirt.h says what it does). backend-libvirt.c has the
 * ops: region files, devices, survey, escalation. libvirt-events.c has the connection to
 * libvirtd (with its reconnects), the thread that runs libvirt's events and their delivery
 * on the sd-event loop, and the removals the guests have not confirmed yet (pending).
 * Everything here but the queue runs on the loop's thread.
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

        pthread_t thread;
        bool thread_started;
        atomic_bool stop;

        /* Main thread only. */
        sd_event *event;
        sd_event_source *source, *reconnect;
        uint64_t reconnect_delay;
        struct lv_pending *pending;
        size_t n_pending, n_pending_allocated;
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
