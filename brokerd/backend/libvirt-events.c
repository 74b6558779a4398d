/* SPDX-License-Identifier: Apache-2.0 */
#include "backend/libvirt-internal.h"
#include "backend/libvirt-xml.h"

#include <errno.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "util/log.h"
#include "util/macro.h"
#include "util/names.h"

#define ALIAS_PREFIX LIBVIRT_ALIAS_PREFIX
/* Reconnecting to libvirtd: first retry after this, doubling up to the maximum. */
#define LIBVIRT_RECONNECT_MIN_USEC (250 * UINT64_C(1000))
#define LIBVIRT_RECONNECT_MAX_USEC (5 * UINT64_C(1000000))
/* Removals the guests have not confirmed yet; more is a runaway or a hung host. */
#define LIBVIRT_MAX_PENDING 4096
/* Events queued between the libvirt thread and the loop; past this they are dropped (logged). */
#define LIBVIRT_MAX_QUEUED 65536

enum lv_event_kind { LV_REMOVED, LV_REMOVAL_FAILED, LV_GONE, LV_DISCONNECTED, LV_DETACH_FAILED };

struct lv_event {
        enum lv_event_kind kind;
        uint64_t id; /* LV_REMOVED, LV_REMOVAL_FAILED, LV_DETACH_FAILED */
        char domain[NAME_MAX_LEN + 1];
        int reason;  /* LV_DISCONNECTED; LV_DETACH_FAILED: libvirt's error code */
};

struct lv_pending {
        uint64_t id;
        char domain[NAME_MAX_LEN + 1];
};

/* libvirt prints every error to stderr by default; ours are logged where they matter. */
static void quiet_error(void *ud, virErrorPtr e) {
        (void) ud, (void) e;
}

const char *libvirt_last_error(void) {
        const char *m = virGetLastErrorMessage();
        return m ?: "unknown libvirt error";
}

/* ---- events: the libvirt thread queues, the loop thread acts ---- */

static void queue_push(struct backend_libvirt *l, enum lv_event_kind kind, uint64_t id, const char *domain,
                       int reason) {
        uint64_t one = 1;

        if (kind == LV_DISCONNECTED)
                domain = "";
        else if (!domain || strlen(domain) > NAME_MAX_LEN)
                return; /* not a domain name brokerd could have mapped */
        pthread_mutex_lock(&l->lock);
        if (l->n_queue == l->n_queue_allocated) {
                size_t n = l->n_queue_allocated ? l->n_queue_allocated * 2 : 16;
                struct lv_event *p = n <= LIBVIRT_MAX_QUEUED ? reallocarray(l->queue, n, sizeof(*p)) : NULL;

                if (!p) {
                        pthread_mutex_unlock(&l->lock);
                        log_error("libvirt: dropping an event for %s: queue full", domain);
                        return;
                }
                l->queue = p;
                l->n_queue_allocated = n;
        }
        l->queue[l->n_queue] = (struct lv_event) { .kind = kind, .id = id, .reason = reason };
        strcpy(l->queue[l->n_queue].domain, domain);
        l->n_queue++;
        pthread_mutex_unlock(&l->lock);
        (void) !write(l->efd, &one, sizeof(one));
}

/* A device event: only aliases of ours name a region. */
static void queue_push_alias(struct backend_libvirt *l, enum lv_event_kind kind, virDomainPtr dom, const char *alias) {
        uint64_t id;

        if (libvirt_alias_parse(alias, &id) < 0)
                return;
        queue_push(l, kind, id, virDomainGetName(dom), 0);
}

void libvirt_detach_failed(struct backend_libvirt *l, uint64_t id, const char *domain, int code) {
        queue_push(l, LV_DETACH_FAILED, id, domain, code);
}

static void on_device_removed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        (void) conn;
        queue_push_alias(opaque, LV_REMOVED, dom, alias);
}

/* The guest refused the unplug (QEMU reports it for some buses; ACPI guests just ignore it). */
static void on_device_removal_failed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        (void) conn;
        queue_push_alias(opaque, LV_REMOVAL_FAILED, dom, alias);
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque) {
        (void) conn, (void) detail;
        if (event == VIR_DOMAIN_EVENT_STOPPED || event == VIR_DOMAIN_EVENT_CRASHED ||
            event == VIR_DOMAIN_EVENT_UNDEFINED)
                queue_push(opaque, LV_GONE, 0, virDomainGetName(dom), 0);
        return 0;
}

static void on_close(virConnectPtr conn, int reason, void *opaque) {
        (void) conn;
        if (reason != VIR_CONNECT_CLOSE_REASON_CLIENT)
                queue_push(opaque, LV_DISCONNECTED, 0, NULL, reason);
}

static void on_wakeup(int timer, void *opaque) {
        (void) opaque;
        virEventRemoveTimeout(timer);
}

static void *event_thread(void *p) {
        struct backend_libvirt *l = p;

        while (!atomic_load(&l->stop))
                if (virEventRunDefaultImpl() < 0) {
                        log_error("libvirt event loop: %s", libvirt_last_error());
                        break;
                }
        return NULL;
}

ssize_t libvirt_pending_find(struct backend_libvirt *l, uint64_t id, const char *domain) {
        for (size_t i = 0; i < l->n_pending; i++)
                if (l->pending[i].id == id && strcmp(l->pending[i].domain, domain) == 0)
                        return (ssize_t) i;
        return -1;
}

int libvirt_pending_add(struct backend_libvirt *l, uint64_t id, const char *domain) {
        if (l->n_pending >= LIBVIRT_MAX_PENDING)
                return -E2BIG;
        if (l->n_pending == l->n_pending_allocated) {
                size_t n = l->n_pending_allocated ? l->n_pending_allocated * 2 : 8;
                struct lv_pending *p = reallocarray(l->pending, n, sizeof(*p));

                if (!p)
                        return -ENOMEM;
                l->pending = p;
                l->n_pending_allocated = n;
        }
        l->pending[l->n_pending] = (struct lv_pending) { .id = id };
        strcpy(l->pending[l->n_pending].domain, domain);
        l->n_pending++;
        return 0;
}

void libvirt_pending_remove(struct backend_libvirt *l, size_t i) {
        l->pending[i] = l->pending[--l->n_pending];
}

static void reconnect_schedule(struct backend_libvirt *l);
static void conn_drop(struct backend_libvirt *l);

/* A detach call failed (libvirt-detach.c): the removal it was to start is over. */
static void handle_detach_failed(struct backend_libvirt *l, const struct lv_event *ev) {
        ssize_t i = libvirt_pending_find(l, ev->id, ev->domain);

        if (i < 0)
                return; /* ended meanwhile: its event, the domain's stop, the connection lost */
        libvirt_pending_remove(l, (size_t) i);
        if (ev->reason == VIR_ERR_DEVICE_MISSING) {
                /* Removed while brokerd was not looking: its stale fd numbers, if any, now. */
                libvirt_stale_fill(l, ev->id, ev->domain);
                backend_unmap_done(&l->backend, ev->id, ev->domain, 0);
        } else if (ev->reason == VIR_ERR_OPERATION_INVALID || ev->reason == VIR_ERR_NO_DOMAIN)
                backend_unmap_done(&l->backend, ev->id, ev->domain, 0); /* not running: it holds nothing */
        else
                backend_unmap_done(&l->backend, ev->id, ev->domain, -EIO); /* logged by the call's thread */
}

static void handle_event(struct backend_libvirt *l, const struct lv_event *ev) {
        ssize_t i;

        if (ev->kind == LV_DISCONNECTED) {
                if (!l->conn)
                        return;
                log_error("libvirt: lost the connection to libvirtd (reason %d); reconnecting. Mappings cannot "
                          "change meanwhile; ranges being unmapped stay quarantined", ev->reason);
                conn_drop(l);
                /* Their completion events are lost with the connection: reconciliation redoes them. */
                l->n_pending = 0;
                reconnect_schedule(l);
                return;
        }
        if (ev->kind == LV_DETACH_FAILED) {
                handle_detach_failed(l, ev);
                return;
        }
        if (ev->kind == LV_REMOVAL_FAILED) {
                i = libvirt_pending_find(l, ev->id, ev->domain);
                if (i >= 0)
                        libvirt_pending_remove(l, (size_t) i);
                log_warning("libvirt: %s refused the removal of " ALIAS_PREFIX "%" PRIu64, ev->domain, ev->id);
                backend_unmap_done(&l->backend, ev->id, ev->domain, -EBUSY);
                return;
        }
        if (ev->kind == LV_REMOVED) {
                i = libvirt_pending_find(l, ev->id, ev->domain);
                if (i >= 0)
                        libvirt_pending_remove(l, (size_t) i);
                log_info("libvirt: %s" ALIAS_PREFIX "%" PRIu64 " removed from %s", i >= 0 ? "" : "unrequested: ",
                         ev->id, ev->domain);
                /* Before anything else can open an fd in that QEMU (libvirt_stale_fill()). */
                libvirt_stale_fill(l, ev->id, ev->domain);
                /* Also when nobody asked: a device that left on its own is unmapped all the same. */
                backend_unmap_done(&l->backend, ev->id, ev->domain, 0);
                return;
        }

        libvirt_stale_forget_domain(l, ev->domain);
        libvirt_domain_forget(l, ev->domain);
        /* A stopped domain holds no devices: its outstanding removals are complete. */
        for (size_t k = 0; k < l->n_pending;) {
                if (strcmp(l->pending[k].domain, ev->domain) == 0) {
                        uint64_t id = l->pending[k].id;

                        libvirt_pending_remove(l, k);
                        backend_unmap_done(&l->backend, id, ev->domain, 0);
                } else
                        k++;
        }
        backend_domain_gone(&l->backend, ev->domain);
}

static int on_efd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct backend_libvirt *l = userdata;
        struct lv_event *batch;
        size_t n;
        uint64_t v;

        (void) s, (void) revents;
        (void) !read(fd, &v, sizeof(v));
        pthread_mutex_lock(&l->lock);
        batch = l->queue;
        n = l->n_queue;
        l->queue = NULL;
        l->n_queue = l->n_queue_allocated = 0;
        pthread_mutex_unlock(&l->lock);

        /* Outside the lock: the callbacks reach back into the backend's ops. */
        for (size_t i = 0; i < n; i++)
                handle_event(l, &batch[i]);
        free(batch);
        return 0;
}

int libvirt_events_attach(struct backend *b, sd_event *e) {
        struct backend_libvirt *l = to_lv(b);
        int k;

        if (l->source)
                return -EBUSY;
        k = sd_event_add_io(e, &l->source, l->efd, EPOLLIN, on_efd, l);
        if (k < 0)
                return k;
        l->event = sd_event_ref(e);
        return 0;
}

bool backend_libvirt_connected(struct backend *b) {
        return to_lv(b)->conn != NULL;
}

/* ---- the connection ---- */

static void conn_drop(struct backend_libvirt *l) {
        if (!l->conn)
                return;
        (void) virConnectUnregisterCloseCallback(l->conn, on_close);
        if (l->cb_removed >= 0)
                virConnectDomainEventDeregisterAny(l->conn, l->cb_removed);
        if (l->cb_removal_failed >= 0)
                virConnectDomainEventDeregisterAny(l->conn, l->cb_removal_failed);
        if (l->cb_lifecycle >= 0)
                virConnectDomainEventDeregisterAny(l->conn, l->cb_lifecycle);
        l->cb_removed = l->cb_removal_failed = l->cb_lifecycle = -1;
        libvirt_domains_forget_all(l);
        virConnectClose(l->conn);
        l->conn = NULL;
}

static int conn_open(struct backend_libvirt *l) {
        l->conn = virConnectOpen(l->uri);
        if (!l->conn)
                return -ECONNREFUSED;
        /* A libvirtd that hangs rather than exits is noticed too (remote URIs only; others refuse). */
        (void) virConnectSetKeepAlive(l->conn, 5, 3);
        l->cb_removed = virConnectDomainEventRegisterAny(l->conn, NULL, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                                                         VIR_DOMAIN_EVENT_CALLBACK(on_device_removed), l, NULL);
        l->cb_removal_failed = virConnectDomainEventRegisterAny(l->conn, NULL, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED,
                                                                VIR_DOMAIN_EVENT_CALLBACK(on_device_removal_failed), l,
                                                                NULL);
        l->cb_lifecycle = virConnectDomainEventRegisterAny(l->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                           VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), l, NULL);
        if (l->cb_removed < 0 || l->cb_removal_failed < 0 || l->cb_lifecycle < 0 ||
            virConnectRegisterCloseCallback(l->conn, on_close, l, NULL) < 0) {
                log_error("libvirt: cannot register for domain events: %s", libvirt_last_error());
                conn_drop(l);
                return -EIO;
        }
        return 0;
}

static int on_reconnect_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct backend_libvirt *l = userdata;

        if (conn_open(l) < 0) {
                l->reconnect_delay = l->reconnect_delay * 2 > LIBVIRT_RECONNECT_MAX_USEC ? LIBVIRT_RECONNECT_MAX_USEC
                                                                                         : l->reconnect_delay * 2;
                (void) sd_event_source_set_time(s, usec + l->reconnect_delay);
                return sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        }
        log_info("libvirt: connected to %s again", l->uri);
        /* Whatever happened meanwhile (removals, stopped domains) is found by reconciling. */
        backend_reconnected(&l->backend);
        return 0;
}

static void reconnect_schedule(struct backend_libvirt *l) {
        uint64_t now;
        int k;

        if (!l->event) {
                log_error("libvirt: no event loop to reconnect from");
                return;
        }
        l->reconnect_delay = LIBVIRT_RECONNECT_MIN_USEC;
        k = sd_event_now(l->event, CLOCK_MONOTONIC, &now);
        if (k >= 0 && !l->reconnect)
                k = sd_event_add_time(l->event, &l->reconnect, CLOCK_MONOTONIC, now + l->reconnect_delay, 0,
                                      on_reconnect_timer, l);
        else if (k >= 0) {
                k = sd_event_source_set_time(l->reconnect, now + l->reconnect_delay);
                if (k >= 0)
                        k = sd_event_source_set_enabled(l->reconnect, SD_EVENT_ONESHOT);
        }
        if (k < 0)
                log_error("libvirt: cannot schedule the reconnect: %s", strerror(-k));
}

static pthread_once_t event_impl_once = PTHREAD_ONCE_INIT;
static int event_impl_result;

static void event_impl_register(void) {
        virSetErrorFunc(NULL, quiet_error);
        event_impl_result = virEventRegisterDefaultImpl();
}

int libvirt_events_init(void) {
        pthread_once(&event_impl_once, event_impl_register);
        return event_impl_result < 0 ? -EIO : 0;
}

int libvirt_events_start(struct backend_libvirt *l) {
        int k;

        l->cb_removed = l->cb_removal_failed = l->cb_lifecycle = -1;
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->detached, NULL);
        l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (l->efd < 0)
                return negative_errno();
        k = conn_open(l);
        if (k < 0) {
                if (k == -ECONNREFUSED)
                        log_error("libvirt: cannot connect to %s: %s", l->uri, libvirt_last_error());
                return k;
        }
        k = -pthread_create(&l->thread, NULL, event_thread, l);
        if (k < 0)
                return k;
        l->thread_started = true;
        return 0;
}

void libvirt_events_stop(struct backend_libvirt *l) {
        /* Their threads report into the queue and use the connection. */
        libvirt_detach_wait(l);
        conn_drop(l);
        if (l->thread_started) {
                atomic_store(&l->stop, true);
                /* A due timer wakes virEventRunDefaultImpl() so the thread sees the flag. */
                if (virEventAddTimeout(0, on_wakeup, NULL, NULL) >= 0)
                        pthread_join(l->thread, NULL);
                else
                        pthread_detach(l->thread);
        }
        sd_event_source_disable_unref(l->source);
        sd_event_source_disable_unref(l->reconnect);
        sd_event_unref(l->event);
        if (l->efd >= 0)
                close(l->efd);
        pthread_cond_destroy(&l->detached);
        pthread_mutex_destroy(&l->lock);
        free(l->queue);
        free(l->pending);
}
