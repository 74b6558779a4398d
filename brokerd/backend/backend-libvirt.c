/* SPDX-License-Identifier: Apache-2.0 */
#include "backend/backend-libvirt.h"
#include "backend/libvirt-xml.h"
#include "backend/region-file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "util/log.h"
#include "util/macro.h"
#include "util/names.h"
#include "util/num.h"

#define LIBVIRT_DEFAULT_URI "qemu:///system"
/* libvirt's ivshmem-plain files live here, whatever else the pool says. */
#define LIBVIRT_SHM_DIR "/dev/shm"
#define LIBVIRT_MIN_SIZE 4096
#define ALIAS_PREFIX LIBVIRT_ALIAS_PREFIX
/* Reconnecting to libvirtd: first retry after this, doubling up to the maximum. */
#define LIBVIRT_RECONNECT_MIN_USEC (250 * UINT64_C(1000))
#define LIBVIRT_RECONNECT_MAX_USEC (5 * UINT64_C(1000000))
/* Removals the guests have not confirmed yet; more is a runaway or a hung host. */
#define LIBVIRT_MAX_PENDING 4096
/* Events queued between the libvirt thread and the loop; past this they are dropped (logged). */
#define LIBVIRT_MAX_QUEUED 65536

enum lv_event_kind { LV_REMOVED, LV_REMOVAL_FAILED, LV_GONE, LV_DISCONNECTED };

struct lv_event {
        enum lv_event_kind kind;
        uint64_t id; /* LV_REMOVED, LV_REMOVAL_FAILED */
        char domain[NAME_MAX_LEN + 1];
        int reason;  /* LV_DISCONNECTED */
};

struct lv_pending {
        uint64_t id;
        char domain[NAME_MAX_LEN + 1];
};

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

static struct backend_libvirt *to_lv(struct backend *b) {
        return (struct backend_libvirt *) b;
}

/* libvirt prints every error to stderr by default; ours are logged where they matter. */
static void quiet_error(void *ud, virErrorPtr e) {
        (void) ud, (void) e;
}

static const char *last_error(void) {
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

static void on_device_removed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        uint64_t id;

        (void) conn;
        if (libvirt_alias_parse(alias, &id) < 0)
                return;
        queue_push(opaque, LV_REMOVED, id, virDomainGetName(dom), 0);
}

/* The guest refused the unplug (QEMU reports it for some buses; ACPI guests just ignore it). */
static void on_device_removal_failed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        uint64_t id;

        (void) conn;
        if (libvirt_alias_parse(alias, &id) < 0)
                return;
        queue_push(opaque, LV_REMOVAL_FAILED, id, virDomainGetName(dom), 0);
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
                        log_error("libvirt event loop: %s", last_error());
                        break;
                }
        return NULL;
}

static ssize_t pending_find(struct backend_libvirt *l, uint64_t id, const char *domain) {
        for (size_t i = 0; i < l->n_pending; i++)
                if (l->pending[i].id == id && strcmp(l->pending[i].domain, domain) == 0)
                        return (ssize_t) i;
        return -1;
}

static int pending_add(struct backend_libvirt *l, uint64_t id, const char *domain) {
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

static void pending_remove(struct backend_libvirt *l, size_t i) {
        l->pending[i] = l->pending[--l->n_pending];
}

static void reconnect_schedule(struct backend_libvirt *l);
static void conn_drop(struct backend_libvirt *l);

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
        if (ev->kind == LV_REMOVAL_FAILED) {
                i = pending_find(l, ev->id, ev->domain);
                if (i >= 0)
                        pending_remove(l, (size_t) i);
                log_warning("libvirt: %s refused the removal of " ALIAS_PREFIX "%" PRIu64, ev->domain, ev->id);
                backend_unmap_done(&l->backend, ev->id, ev->domain, -EBUSY);
                return;
        }
        if (ev->kind == LV_REMOVED) {
                i = pending_find(l, ev->id, ev->domain);
                if (i >= 0)
                        pending_remove(l, (size_t) i);
                log_info("libvirt: %s" ALIAS_PREFIX "%" PRIu64 " removed from %s", i >= 0 ? "" : "unrequested: ",
                         ev->id, ev->domain);
                /* Also when nobody asked: a device that left on its own is unmapped all the same. */
                backend_unmap_done(&l->backend, ev->id, ev->domain, 0);
                return;
        }

        /* A stopped domain holds no devices: its outstanding removals are complete. */
        for (size_t k = 0; k < l->n_pending;) {
                if (strcmp(l->pending[k].domain, ev->domain) == 0) {
                        uint64_t id = l->pending[k].id;

                        pending_remove(l, k);
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

static int lv_attach_event(struct backend *b, sd_event *e) {
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
                log_error("libvirt: cannot register for domain events: %s", last_error());
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


/* ---- files ---- */

static bool pool_dir_is_libvirts(const char *path) {
        size_t n;

        if (!path)
                return false;
        n = strlen(path);
        while (n > 1 && path[n - 1] == '/')
                n--;
        return n == strlen(LIBVIRT_SHM_DIR) && strncmp(path, LIBVIRT_SHM_DIR, n) == 0;
}

static int region_check(const struct backend_region *r) {
        if (!r || !r->pool || !name_is_valid(r->pool->name))
                return -EINVAL;
        if (r->pool->backing != BACKING_SHM || !pool_dir_is_libvirts(r->pool->backing_path))
                return -EINVAL;
        if (r->size < LIBVIRT_MIN_SIZE || r->size > (uint64_t) INT64_MAX || !num_is_pow2(r->size))
                return -EINVAL;
        return 0;
}

/* The <shmem name>, which libvirt turns into LIBVIRT_SHM_DIR/<name>. */
static void shm_name(const struct backend_region *r, char *buf, size_t n) {
        snprintf(buf, n, "brokerd-%s-%" PRIu64, r->pool->name, r->id);
}

static void shm_path(const struct backend_region *r, char *buf, size_t n) {
        snprintf(buf, n, LIBVIRT_SHM_DIR "/brokerd-%s-%" PRIu64, r->pool->name, r->id);
}

/* One of ours: a regular file of the QEMU user that nobody else may open, of the right size. */
static int check_region_file(struct backend_libvirt *l, int fd, uint64_t size) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode) || st.st_uid != l->qemu_uid || (st.st_mode & 0077))
                return -EBADFD;
        if ((uint64_t) st.st_size != size)
                return -EINVAL;
        return 0;
}

static int lv_check(struct backend *b, const struct platform_pool *pool, uint64_t size, char *why, size_t why_len) {
        (void) b;
        if (!pool || pool->backing != BACKING_SHM || !pool_dir_is_libvirts(pool->backing_path)) {
                snprintf(why, why_len,
                         "the libvirt backend needs an shm pool backed by " LIBVIRT_SHM_DIR
                         " (where libvirt puts ivshmem memory)");
                return -EINVAL;
        }
        if (size < LIBVIRT_MIN_SIZE || !num_is_pow2(size)) {
                snprintf(why, why_len, "QEMU's ivshmem needs a power-of-two size of at least 4KiB, not %" PRIu64,
                         size);
                return -EINVAL;
        }
        return 0;
}

static int lv_create(struct backend *b, const struct backend_region *r) {
        struct backend_libvirt *l = to_lv(b);
        _cleanup_(closep) int fd = -EBADF;
        char path[PATH_MAX];
        int k;

        k = region_check(r);
        if (k < 0)
                return k;
        shm_path(r, path, sizeof(path));

        for (unsigned attempt = 0; attempt < 3 && fd < 0; attempt++) {
                fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
                if (fd >= 0)
                        break;
                if (errno != EEXIST)
                        return negative_errno();
                /*
                 * Left by a crash of ours, or planted (and maybe held open) by anyone running as
                 * the QEMU user: nothing was mapped from a region still being created, so a
                 * fresh inode costs nothing and trusts nobody.
                 */
                if (unlink(path) < 0 && errno != ENOENT)
                        return negative_errno();
        }
        if (fd < 0)
                return -EEXIST;
        if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t) r->size) < 0 ||
            fchown(fd, l->qemu_uid, l->qemu_gid) < 0) {
                k = negative_errno();
                (void) unlink(path);
                return k;
        }
        return 0;
}

/* The region's file, opened and checked to be ours (owner, mode, size). */
static int open_own_region_file(struct backend_libvirt *l, const struct backend_region *r, int *ret) {
        _cleanup_(closep) int fd = -EBADF;
        char path[PATH_MAX];
        int k;

        k = region_check(r);
        if (k < 0)
                return k;
        shm_path(r, path, sizeof(path));
        k = region_file_open(path, &fd);
        if (k < 0)
                return k;
        k = check_region_file(l, fd, r->size);
        if (k < 0)
                return k;
        *ret = TAKE_FD(fd);
        return 0;
}

static int lv_restore(struct backend *b, const struct backend_region *r) {
        _cleanup_(closep) int fd = -EBADF;

        return open_own_region_file(to_lv(b), r, &fd);
}

static int lv_scrub(struct backend *b, const struct backend_region *r) {
        _cleanup_(closep) int fd = -EBADF;
        int k;

        k = open_own_region_file(to_lv(b), r, &fd);
        if (k < 0)
                return k;
        return region_file_punch_out(fd, r->size);
}

static int lv_destroy(struct backend *b, const struct backend_region *r) {
        char path[PATH_MAX];
        int k;

        (void) b;
        k = region_check(r);
        if (k < 0)
                return k;
        shm_path(r, path, sizeof(path));
        if (unlink(path) < 0 && errno != ENOENT)
                return negative_errno();
        return 0;
}

/* ---- devices ---- */

static void alias_of(uint64_t id, char *buf, size_t n) {
        snprintf(buf, n, ALIAS_PREFIX "%" PRIu64, id);
}

static int lookup_domain(struct backend_libvirt *l, const char *domain, virDomainPtr *ret) {
        virDomainPtr d;

        if (!l->conn)
                return -ENOTCONN;
        d = virDomainLookupByName(l->conn, domain);
        if (!d)
                return virGetLastErrorCode() == VIR_ERR_NO_DOMAIN ? -ESRCH : -EIO;
        *ret = d;
        return 0;
}

struct region_match {
        uint64_t id;
        const char *name;
};

static int region_is(void *userdata, uint64_t region, const char *name) {
        const struct region_match *m = userdata;

        return region == m->id && strcmp(name, m->name) == 0;
}

/* Is brokerd's device for this region (same id, same file) in the domain's live definition? */
static int domain_has_region(virDomainPtr d, const struct backend_region *r) {
        char name[NAME_MAX_LEN + 64], *xml = virDomainGetXMLDesc(d, 0);
        int found;

        if (!xml)
                return -EIO;
        shm_name(r, name, sizeof(name));
        found = libvirt_xml_foreach_region(xml, region_is, &(struct region_match) { .id = r->id, .name = name });
        free(xml);
        return found;
}

/* "brokerd-<pool>-<id>" -> pool, when id matches: the pool part of a device of ours. */
static int shm_name_pool(const char *name, uint64_t id, char *pool, size_t n) {
        char suffix[32];
        size_t len = strlen(name), plen = strlen("brokerd-"), slen;

        slen = (size_t) snprintf(suffix, sizeof(suffix), "-%" PRIu64, id);
        if (strncmp(name, "brokerd-", plen) != 0 || len <= plen + slen || strcmp(name + len - slen, suffix) != 0)
                return -EINVAL;
        if (len - plen - slen >= n)
                return -EINVAL;
        memcpy(pool, name + plen, len - plen - slen);
        pool[len - plen - slen] = 0;
        return name_is_valid(pool) ? 0 : -EINVAL;
}

static int lv_map(struct backend *b, const struct backend_region *r, const char *domain, enum access_mode access,
                  struct backend_mapping *ret) {
        struct backend_libvirt *l = to_lv(b);
        char alias[64], name[NAME_MAX_LEN + 64], *xml = NULL;
        virDomainPtr d = NULL;
        int k;

        if (!ret || !name_is_valid(domain) || (access != ACCESS_RO && access != ACCESS_RW))
                return -EINVAL;
        k = region_check(r);
        if (k < 0)
                return k;
        /* ivshmem gives the guest a writable BAR: there is no read-only sharing to offer. */
        if (access != ACCESS_RW)
                return -EOPNOTSUPP;
        if (pending_find(l, r->id, domain) >= 0)
                return -EBUSY; /* the previous mapping is still on its way out */

        k = lookup_domain(l, domain, &d);
        if (k < 0) {
                log_error("libvirt: %s: %s", domain, k == -ENOTCONN ? "libvirtd is not connected" : last_error());
                return k;
        }
        alias_of(r->id, alias, sizeof(alias));
        k = domain_has_region(d, r);
        if (k == 0) {
                shm_name(r, name, sizeof(name));
                if (asprintf(&xml,
                             "<shmem name='%s'><model type='ivshmem-plain'/><size unit='B'>%" PRIu64
                             "</size><alias name='%s'/></shmem>",
                             name, r->size, alias) < 0)
                        k = -ENOMEM;
                else if (virDomainAttachDeviceFlags(d, xml, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                        log_error("libvirt: attaching %s to %s: %s", alias, domain, last_error());
                        k = -EIO;
                }
                free(xml);
        } else if (k > 0)
                k = 0; /* attached before a crash: the same mapping */
        else
                log_error("libvirt: reading %s's definition: %s", domain, last_error());
        virDomainFree(d);
        if (k < 0)
                return k;
        ret->fd = -1;
        ret->size = r->size;
        return 0;
}

static int lv_unmap(struct backend *b, const struct backend_region *r, const char *domain) {
        struct backend_libvirt *l = to_lv(b);
        virDomainPtr d = NULL;
        char alias[64];
        int k, code;

        if (!r || !name_is_valid(domain))
                return -EINVAL;
        if (pending_find(l, r->id, domain) >= 0)
                return -EINPROGRESS;

        k = lookup_domain(l, domain, &d);
        if (k == -ESRCH)
                return 0; /* no domain, no device */
        if (k < 0) {
                log_error("libvirt: %s: %s", domain, k == -ENOTCONN ? "libvirtd is not connected" : last_error());
                return k;
        }
        alias_of(r->id, alias, sizeof(alias));
        /* Registered before the call, so that a removal event cannot overtake it. */
        k = pending_add(l, r->id, domain);
        if (k < 0) {
                virDomainFree(d);
                return k;
        }
        if (virDomainDetachDeviceAlias(d, alias, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                code = virGetLastErrorCode();
                pending_remove(l, (size_t) pending_find(l, r->id, domain));
                virDomainFree(d);
                /* Not there (never attached, or removed already), or the domain is not running. */
                if (code == VIR_ERR_DEVICE_MISSING || code == VIR_ERR_OPERATION_INVALID || code == VIR_ERR_NO_DOMAIN)
                        return 0;
                log_error("libvirt: detaching %s from %s: %s", alias, domain, last_error());
                return -EIO;
        }
        virDomainFree(d);
        log_info("libvirt: removal of %s from %s requested", alias, domain);
        /* The call returns before the guest lets go: completion is the DEVICE_REMOVED event. */
        return -EINPROGRESS;
}

struct survey_walk {
        struct backend_survey *survey;
        const char *domain;
};

static int survey_found(void *userdata, uint64_t region, const char *name) {
        struct survey_walk *w = userdata;
        char pool[NAME_MAX_LEN + 1];

        /* Our alias on a file brokerd did not name: not a device of ours to account for. */
        if (shm_name_pool(name, region, pool, sizeof(pool)) < 0)
                return 0;
        return survey_add_mapping(w->survey, region, pool, w->domain);
}

/* Every running (or paused) domain, and brokerd's devices in each one's live XML. */
static int lv_survey(struct backend *b, struct backend_survey *ret) {
        struct backend_libvirt *l = to_lv(b);
        struct backend_survey s = {};
        virDomainPtr *doms = NULL;
        int n, k = 0;

        if (!l->conn)
                return -ENOTCONN;
        n = virConnectListAllDomains(l->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0) {
                log_error("libvirt: listing domains: %s", last_error());
                return -EIO;
        }
        for (int i = 0; i < n; i++) {
                const char *name = virDomainGetName(doms[i]);
                char *xml;

                if (k >= 0 && name && name_is_valid(name)) {
                        k = survey_add_running(&s, name);
                        xml = k >= 0 ? virDomainGetXMLDesc(doms[i], 0) : NULL;
                        if (k >= 0 && xml)
                                k = libvirt_xml_foreach_region(xml, survey_found,
                                                               &(struct survey_walk) { .survey = &s, .domain = name });
                        else if (k >= 0 && virDomainIsActive(doms[i]) == 1) {
                                /* An active domain whose devices we cannot see: do not guess. */
                                log_error("libvirt: reading %s's definition: %s", name, last_error());
                                k = -EIO;
                        }
                        free(xml);
                }
                virDomainFree(doms[i]);
        }
        free(doms);
        if (k < 0) {
                survey_done(&s);
                return k;
        }
        *ret = s;
        return 0;
}

static int lv_escalate(struct backend *b, const char *domain, enum unplug_escalation action) {
        struct backend_libvirt *l = to_lv(b);
        virDomainPtr d = NULL;
        int k, state = 0, reason = 0;

        if (action == ESCALATION_REPORT)
                return 0;
        if (!name_is_valid(domain) || (action != ESCALATION_PAUSE && action != ESCALATION_DESTROY))
                return -EINVAL;
        k = lookup_domain(l, domain, &d);
        if (k == -ESRCH)
                return 0; /* gone already: its stop event completes the removal */
        if (k < 0)
                return k;
        if (action == ESCALATION_PAUSE) {
                if (virDomainGetState(d, &state, &reason, 0) == 0 && state == VIR_DOMAIN_PAUSED)
                        k = 0;
                else if (virDomainSuspend(d) < 0)
                        k = -EIO;
        } else if (virDomainDestroy(d) < 0)
                k = virGetLastErrorCode() == VIR_ERR_OPERATION_INVALID ? 0 : -EIO; /* not running: fine */
        if (k < 0)
                log_error("libvirt: %s %s: %s", action == ESCALATION_PAUSE ? "pausing" : "destroying", domain,
                          last_error());
        else
                log_warning("libvirt: %s %s: it ignored the removal of a revoked region",
                            action == ESCALATION_PAUSE ? "paused" : "destroyed", domain);
        virDomainFree(d);
        return k;
}

static void lv_free(struct backend *b) {
        struct backend_libvirt *l = to_lv(b);

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
        free(l->uri);
        if (l->efd >= 0)
                close(l->efd);
        pthread_mutex_destroy(&l->lock);
        free(l->queue);
        free(l->pending);
        free(l);
}

static const struct backend_ops libvirt_ops = {
        .name = "libvirt",
        .attach_event = lv_attach_event,
        .check = lv_check,
        .create = lv_create,
        .restore = lv_restore,
        .map = lv_map,
        .unmap = lv_unmap,
        .survey = lv_survey,
        .escalate = lv_escalate,
        .scrub = lv_scrub,
        .destroy = lv_destroy,
        .free = lv_free,
};

static pthread_once_t event_impl_once = PTHREAD_ONCE_INIT;
static int event_impl_result;

static void event_impl_register(void) {
        virSetErrorFunc(NULL, quiet_error);
        event_impl_result = virEventRegisterDefaultImpl();
}

int backend_libvirt_new(const char *uri, const char *qemu_user, struct backend **ret) {
        struct backend_libvirt *l;
        struct passwd *pw;
        int k;

        pthread_once(&event_impl_once, event_impl_register);
        if (event_impl_result < 0)
                return -EIO;

        qemu_user = qemu_user ?: BACKEND_LIBVIRT_DEFAULT_QEMU_USER;
        pw = getpwnam(qemu_user);
        if (!pw) {
                log_error("libvirt: no user %s (the user QEMU runs as: see \"user\" in /etc/libvirt/qemu.conf)",
                          qemu_user);
                return -ESRCH;
        }

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->backend.ops = &libvirt_ops;
        l->qemu_uid = pw->pw_uid;
        l->qemu_gid = pw->pw_gid;
        l->cb_removed = l->cb_removal_failed = l->cb_lifecycle = -1;
        l->uri = strdup(uri ?: LIBVIRT_DEFAULT_URI);
        if (!l->uri) {
                free(l);
                return -ENOMEM;
        }
        pthread_mutex_init(&l->lock, NULL);
        l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (l->efd < 0) {
                k = negative_errno();
                goto fail;
        }

        k = conn_open(l);
        if (k < 0) {
                if (k == -ECONNREFUSED)
                        log_error("libvirt: cannot connect to %s: %s", l->uri, last_error());
                goto fail;
        }
        k = -pthread_create(&l->thread, NULL, event_thread, l);
        if (k < 0)
                goto fail;
        l->thread_started = true;
        *ret = &l->backend;
        return 0;
fail:
        lv_free(&l->backend);
        return k;
}
