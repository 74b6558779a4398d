/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The libvirt backend's doorbell regions: one brokerd ivshmem server per region, living on the
 * ivshmem host thread (ivshmem-host.h says why), its socket "region-<id>.sock" in ivshmem_dir
 * (root:<QEMU's group> 0750; sockets 0660), and beside it "region-<id>.peers", the peer table
 * (ids and domains, and the next id to issue). The table lives in the runtime directory on
 * purpose: it describes connections that exist only while the QEMUs and the fd store do, and
 * neither outlives a reboot. Every fd a server holds is kept in the fd store (names "ivs-<id>-…"),
 * except the memory, which is the region's file, reopened at restore.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/ivshmem-host.h"
#include "backend/ivshmem-server.h"
#include "backend/ivshmem-table.h"
#include "backend/libvirt-internal.h"
#include "util/hashmap.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/names.h"

struct lv_bells {
        struct backend_libvirt *l; /* read on the host thread too: never changes */
        uint64_t id;
        unsigned vectors;
        char name[IVSHMEM_NAME_MAX + 1]; /* "ivs-<id>": the prefix of its fd store names */
        struct ivshmem_server *server;   /* host thread only (through ivshmem_host_call) */
};

enum bell_report_kind { REPORT_REFUSED, REPORT_JOINED, REPORT_GONE };

/* What a server's callback (host thread) tells the loop thread. */
struct bell_report {
        enum bell_report_kind kind;
        uint64_t region;
        uint16_t id;
        char domain[NAME_MAX_LEN + 1];
        pid_t pid;
        uid_t uid;
        int reason; /* enum ivshmem_refusal or enum ivshmem_departure */
};

/* ---- where things live ---- */

int libvirt_bells_socket(struct backend_libvirt *l, uint64_t id, char *buf, size_t n) {
        int k = snprintf(buf, n, "%s/region-%" PRIu64 ".sock", l->ivshmem_dir, id);
        return k < 0 || (size_t) k >= n ? -ENAMETOOLONG : 0;
}

static int table_path(struct backend_libvirt *l, uint64_t id, const char *suffix, char *buf, size_t n) {
        int k = snprintf(buf, n, "%s/region-%" PRIu64 ".peers%s", l->ivshmem_dir, id, suffix);
        return k < 0 || (size_t) k >= n ? -ENAMETOOLONG : 0;
}

/* The parents of path that are missing, 0755: QEMU must be able to pass through them. */
static int mkdir_parents(const char *path) {
        char buf[PATH_MAX];

        if (snprintf(buf, sizeof(buf), "%s", path) >= (int) sizeof(buf))
                return -ENAMETOOLONG;
        for (char *p = strchr(buf + 1, '/'); p; p = strchr(p + 1, '/')) {
                *p = 0;
                if (mkdir(buf, 0755) < 0 && errno != EEXIST)
                        return negative_errno();
                *p = '/';
        }
        return 0;
}

/* The directory QEMU reaches the sockets through: ours, its group QEMU's, nobody else's. */
static int dir_prepare(struct backend_libvirt *l) {
        struct stat st;
        int k;

        k = mkdir_parents(l->ivshmem_dir);
        if (k < 0)
                return k;
        if (mkdir(l->ivshmem_dir, 0750) < 0 && errno != EEXIST)
                return negative_errno();
        if (lstat(l->ivshmem_dir, &st) < 0)
                return negative_errno();
        if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid())
                return -EPERM;
        if ((geteuid() == 0 && chown(l->ivshmem_dir, 0, l->qemu_gid) < 0) || chmod(l->ivshmem_dir, 0750) < 0)
                return negative_errno();
        return 0;
}

static struct lv_bells *bells_find(struct backend_libvirt *l, uint64_t id, size_t *ret_i) {
        for (size_t i = 0; i < l->n_bells; i++)
                if (l->bells[i]->id == id) {
                        if (ret_i)
                                *ret_i = i;
                        return l->bells[i];
                }
        return NULL;
}

/* Doorbell regions one brokerd serves are bounded: each holds a socket, and fds per peer and vector. */
bool libvirt_bells_room(const struct backend_libvirt *l) {
        return l->n_bells < l->max_bells;
}

bool libvirt_bells_has(struct backend_libvirt *l, uint64_t id) {
        return bells_find(l, id, NULL) != NULL;
}

/* ---- the fd store ---- */

static bool store_has(struct backend_libvirt *l, const char *name) {
        return l->bell_fds_kept && hashmap_get(l->bell_fds_kept, name);
}

static int store_mark(struct backend_libvirt *l, const char *name) {
        char *copy;
        int k;

        if (store_has(l, name))
                return 0;
        copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        k = hashmap_put(l->bell_fds_kept, copy, copy);
        if (k < 0)
                free(copy);
        return k;
}

/* name may be the set's own copy: it is freed last. */
static void store_drop(struct backend_libvirt *l, const char *name) {
        if (l->fd_store.drop)
                (void) l->fd_store.drop(l->fd_store.userdata, name);
        free(l->bell_fds_kept ? hashmap_remove(l->bell_fds_kept, name) : NULL);
}

/* export_fds callback, on the host thread while the loop thread waits: keeps what is new. */
static int store_keep_new(void *userdata, const char *name, int fd) {
        struct backend_libvirt *l = userdata;
        size_t n = strlen(name);

        /* The memory is the region's file: restore reopens it. */
        if (n >= 4 && strcmp(name + n - 4, "-mem") == 0)
                return 0;
        if (!l->fd_store.keep || store_has(l, name))
                return 0;
        if (l->fd_store.keep(l->fd_store.userdata, name, fd) < 0)
                return 0; /* costs durability only; the keeper logged it */
        return store_mark(l, name);
}

/* restore's take, on the host thread while the loop thread waits. */
static int store_take(void *userdata, const char *name, int *ret_fd) {
        struct backend_libvirt *l = userdata;
        int k;

        if (!l->fd_store.take)
                return -ENOENT;
        k = l->fd_store.take(l->fd_store.userdata, name, ret_fd);
        if (k >= 0)
                (void) store_mark(l, name);
        return k;
}

static void store_drop_peer(struct backend_libvirt *l, const struct lv_bells *b, uint16_t id) {
        char name[BACKEND_FD_NAME_MAX + 1];

        snprintf(name, sizeof(name), "%s-p%u-conn", b->name, id);
        store_drop(l, name);
        snprintf(name, sizeof(name), "%s-p%u-pid", b->name, id);
        store_drop(l, name);
        for (unsigned v = 0; v < b->vectors; v++) {
                snprintf(name, sizeof(name), "%s-p%u-v%u", b->name, id, v);
                store_drop(l, name);
        }
}

static void store_drop_all(struct backend_libvirt *l, const struct lv_bells *b) {
        char prefix[IVSHMEM_NAME_MAX + 2], **names = NULL;
        size_t n = 0, i = 0, plen;
        void *v;

        if (!l->bell_fds_kept)
                return;
        plen = (size_t) snprintf(prefix, sizeof(prefix), "%s-", b->name);
        names = calloc(hashmap_size(l->bell_fds_kept) + 1, sizeof(*names));
        if (!names)
                return;
        while (hashmap_iterate(l->bell_fds_kept, &i, &v))
                if (strncmp(v, prefix, plen) == 0)
                        names[n++] = v;
        for (i = 0; i < n; i++)
                store_drop(l, names[i]); /* frees names[i], last */
        free(names);
}

/* ---- host thread calls ---- */

struct call_args {
        struct lv_bells *b;
        struct ivshmem_server_config config;
        const struct ivshmem_peer_record *peers;
        size_t n_peers;
        const char *domain;
        int pidfd;
        uint16_t id;
        struct ivshmem_table table; /* snapshot */
        int eventfds[IVSHMEM_VECTORS_MAX];
        size_t fds_sent;
        bool pause;
};

static int call_new(sd_event *e, void *userdata) {
        struct call_args *a = userdata;
        return ivshmem_server_new(e, &a->config, &a->b->server);
}

static int call_restore(sd_event *e, void *userdata) {
        struct call_args *a = userdata;
        return ivshmem_server_restore(e, &a->config, a->peers, a->n_peers, store_take, a->b->l, &a->b->server);
}

static int call_export(sd_event *e, void *userdata) {
        struct call_args *a = userdata;
        (void) e;
        return ivshmem_server_export_fds(a->b->server, store_keep_new, a->b->l);
}

static int call_expect(sd_event *e, void *userdata) {
        struct call_args *a = userdata;
        (void) e;
        return ivshmem_server_expect(a->b->server, a->domain, 0, a->pidfd);
}

static int call_unexpect(sd_event *e, void *userdata) {
        struct call_args *a = userdata;
        (void) e;
        return ivshmem_server_unexpect(a->b->server, a->domain);
}

static int call_peer_id(sd_event *e, void *userdata) {
        struct call_args *a = userdata;
        (void) e;
        return ivshmem_server_peer_id(a->b->server, a->domain, &a->id);
}

static int call_peer_eventfds(sd_event *e, void *userdata) {
        struct call_args *a = userdata;
        int k;

        (void) e;
        k = ivshmem_server_peer_id(a->b->server, a->domain, &a->id);
        if (k >= 0)
                k = ivshmem_server_peer_fds_sent(a->b->server, a->id, &a->fds_sent);
        if (k < 0)
                return k;
        /* A connection restored after a restart counts from then: at least the memory and every peer's vectors. */
        if (a->fds_sent < 1 + (size_t) a->b->vectors * ivshmem_server_n_peers(a->b->server))
                a->fds_sent = 1 + (size_t) a->b->vectors * ivshmem_server_n_peers(a->b->server);
        return ivshmem_server_peer_eventfds(a->b->server, a->id, a->eventfds, a->b->vectors);
}

static int call_pause(sd_event *e, void *userdata) {
        struct call_args *a = userdata;
        int k;

        (void) e;
        k = ivshmem_server_pause_domain(a->b->server, a->domain, a->pause);
        return k == -ENOENT ? 0 : k;
}

static int call_remove(sd_event *e, void *userdata) {
        struct call_args *a = userdata;
        int k;

        (void) e;
        k = ivshmem_server_peer_id(a->b->server, a->domain, &a->id);
        if (k < 0)
                return k;
        return ivshmem_server_remove_peer(a->b->server, a->id, IVSHMEM_GONE_REMOVED);
}

static int call_snapshot(sd_event *e, void *userdata) {
        struct ivshmem_table *t = &((struct call_args *) userdata)->table;
        struct ivshmem_server *server = ((struct call_args *) userdata)->b->server;
        size_t n = ivshmem_server_n_peers(server);
        const char *domain;

        (void) e;
        t->peers = calloc(n + 1, sizeof(*t->peers));
        if (!t->peers)
                return -ENOMEM;
        for (t->n = 0; t->n < n; t->n++) {
                if (ivshmem_server_peer_at(server, t->n, &t->peers[t->n].id, &domain) < 0)
                        break;
                snprintf(t->peers[t->n].domain, sizeof(t->peers[t->n].domain), "%s", domain);
        }
        t->next_id = ivshmem_server_next_id(server);
        return 0;
}

static int call_free(sd_event *e, void *userdata) {
        struct lv_bells *b = userdata;
        (void) e;
        b->server = (ivshmem_server_free(b->server), NULL);
        return 0;
}

static int call_abandon(sd_event *e, void *userdata) {
        struct lv_bells *b = userdata;
        (void) e;
        if (b->server)
                ivshmem_server_abandon(b->server);
        b->server = NULL;
        return 0;
}

/* ---- the peer table ---- */

/* on_host: called on the host thread itself (the server is at hand), else through a call. */
static int table_save_on(struct backend_libvirt *l, struct lv_bells *b, bool on_host) {
        struct call_args a = { .b = b };
        char path[PATH_MAX];
        int k;

        k = on_host ? call_snapshot(NULL, &a) : ivshmem_host_call(l->host, call_snapshot, &a);
        if (k >= 0)
                k = table_path(l, b->id, "", path, sizeof(path));
        if (k >= 0)
                k = ivshmem_table_save(path, &a.table);
        free(a.table.peers);
        if (k < 0)
                log_error("ivshmem: cannot save the peer table of region %" PRIu64 ": %s", b->id, strerror(-k));
        return k;
}

static int table_save(struct backend_libvirt *l, struct lv_bells *b) {
        return table_save_on(l, b, false);
}

/* ---- reports from the host thread ---- */

static void on_report(void *userdata, const void *msg) {
        struct backend_libvirt *l = userdata;
        const struct bell_report *r = msg;
        struct lv_bells *b = bells_find(l, r->region, NULL);
        char who[64];

        switch (r->kind) {
        case REPORT_REFUSED:
                snprintf(who, sizeof(who), "pid %d uid %d", (int) r->pid, (int) r->uid);
                backend_refused(&l->backend, r->region, who, ivshmem_refusal_to_string((enum ivshmem_refusal) r->reason));
                break;
        case REPORT_JOINED:
                log_info("ivshmem: region %" PRIu64 ": %s joined its doorbells as peer %u", r->region, r->domain, r->id);
                break;
        case REPORT_GONE:
                log_info("ivshmem: region %" PRIu64 ": peer %u (%s) left its doorbells: %s", r->region, r->id,
                         r->domain, ivshmem_departure_to_string((enum ivshmem_departure) r->reason));
                if (b) {
                        store_drop_peer(l, b, r->id);
                        (void) table_save(l, b);
                }
                break;
        }
}

static void report(struct lv_bells *b, const struct bell_report *r) {
        struct bell_report m = *r;

        m.region = b->id;
        (void) ivshmem_host_post(b->l->host, on_report, b->l, &m, sizeof(m));
}

static void cb_refused(void *userdata, pid_t pid, uid_t uid, enum ivshmem_refusal reason) {
        report(userdata, &(struct bell_report) { .kind = REPORT_REFUSED, .pid = pid, .uid = uid, .reason = (int) reason });
}

static void cb_joined(void *userdata, uint16_t id, const char *domain) {
        struct bell_report r = { .kind = REPORT_JOINED, .id = id };
        struct lv_bells *b = userdata;

        /*
         * Kept at once, not after the attach call returns: QEMU reads its setup in a device_add that
         * follows the chardev-add that connected, and a connection closed in between (brokerd
         * killed) wedges QEMU with its monitor dead. Kept in the fd store it stays open, and the
         * table lets a restart serve it on. Admissions happen only while the loop thread waits in
         * that attach call (expectations live only then), so the loop thread's fd store and table
         * are not in use meanwhile.
         */
        if (b->server) {
                (void) ivshmem_server_export_fds(b->server, store_keep_new, b->l);
                (void) table_save_on(b->l, b, true);
        }

        snprintf(r.domain, sizeof(r.domain), "%s", domain);
        report(userdata, &r);
}

static void cb_gone(void *userdata, uint16_t id, const char *domain, enum ivshmem_departure reason) {
        struct bell_report r = { .kind = REPORT_GONE, .id = id, .reason = (int) reason };

        snprintf(r.domain, sizeof(r.domain), "%s", domain);
        report(userdata, &r);
}

/* ---- regions ---- */

static int host_ensure(struct backend_libvirt *l) {
        int k;

        if (l->host)
                return 0;
        if (!l->event)
                return -ENOTCONN; /* no loop to report to before backend_attach_event() */
        if (!l->bell_fds_kept) {
                k = hashmap_new(&hashmap_string_ops, &l->bell_fds_kept);
                if (k < 0)
                        return k;
        }
        return ivshmem_host_new(l->event, &l->host);
}

/* A new entry for region r, not listed yet, or -E2BIG past the limit. */
static int bells_new(struct backend_libvirt *l, const struct backend_region *r, struct lv_bells **ret) {
        struct lv_bells *b;
        int k;

        if (r->doorbells == 0 || r->doorbells > IVSHMEM_VECTORS_MAX)
                return -EINVAL;
        if (!libvirt_bells_room(l))
                return -E2BIG;
        k = host_ensure(l);
        if (k >= 0)
                k = dir_prepare(l);
        if (k < 0)
                return k;
        if (l->n_bells == l->n_bells_allocated) {
                size_t n = l->n_bells_allocated ? l->n_bells_allocated * 2 : 8;
                struct lv_bells **p = reallocarray(l->bells, n, sizeof(*p));

                if (!p)
                        return -ENOMEM;
                l->bells = p;
                l->n_bells_allocated = n;
        }
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        *b = (struct lv_bells) { .l = l, .id = r->id, .vectors = r->doorbells };
        snprintf(b->name, sizeof(b->name), "ivs-%" PRIu64, r->id);
        *ret = b;
        return 0;
}

/* Starts a server for b (restoring it when peers is not NULL), lists b, keeps its fds, saves its table. */
static int bells_start(struct backend_libvirt *l, const struct backend_region *r, struct lv_bells *b,
                       const struct ivshmem_table *t) {
        _cleanup_(xfreep) struct ivshmem_peer_record *records = NULL;
        _cleanup_(closep) int memfd = -EBADF;
        char path[PATH_MAX];
        struct call_args a = { .b = b };
        int k;

        k = libvirt_region_file_open(l, r, &memfd);
        if (k >= 0)
                k = libvirt_bells_socket(l, r->id, path, sizeof(path));
        if (k < 0)
                return k;
        a.config = (struct ivshmem_server_config) {
                .name = b->name, .socket_path = path, .socket_gid = l->qemu_gid, .memfd = memfd,
                .vectors = b->vectors,
                /* QEMU 7.2 would free the departed peer's eventfds twice at its own unplug. */
                .quiet_departures = true,
                /* One more than recorded: the attach under way when brokerd died may have taken it. */
                .next_id = t ? (t->next_id < IVSHMEM_ID_LIMIT ? t->next_id + 1 : IVSHMEM_ID_LIMIT) : 0,
                .callbacks = { .refused = cb_refused, .joined = cb_joined, .gone = cb_gone, .userdata = b },
        };
        if (t) {
                records = calloc(t->n + 1, sizeof(*records));
                if (!records)
                        return -ENOMEM;
                for (size_t i = 0; i < t->n; i++)
                        records[i] = (struct ivshmem_peer_record) { .id = t->peers[i].id, .domain = t->peers[i].domain };
                a.peers = records;
                a.n_peers = t->n;
        }
        k = ivshmem_host_call(l->host, t ? call_restore : call_new, &a);
        if (k < 0)
                return k;
        l->bells[l->n_bells++] = b;
        (void) ivshmem_host_call(l->host, call_export, &a);
        (void) table_save(l, b);
        return 0;
}

int libvirt_bells_create(struct backend_libvirt *l, const struct backend_region *r) {
        struct lv_bells *b = NULL;
        int k;

        /* Made again after a crash: whatever served the old file goes with it. */
        libvirt_bells_close(l, r->id);
        k = bells_new(l, r, &b);
        if (k >= 0)
                k = bells_start(l, r, b, NULL);
        if (k < 0) {
                free(b);
                log_error("ivshmem: cannot serve the doorbells of region %" PRIu64 ": %s", r->id, strerror(-k));
        }
        return k;
}

int libvirt_bells_restore(struct backend_libvirt *l, const struct backend_region *r) {
        struct ivshmem_table t = {};
        struct lv_bells *b = NULL;
        char path[PATH_MAX];
        int k;

        if (bells_find(l, r->id, NULL))
                return 0;
        k = bells_new(l, r, &b);
        if (k >= 0)
                k = table_path(l, r->id, "", path, sizeof(path));
        if (k >= 0) {
                k = ivshmem_table_load(path, &t);
                if (k < 0)
                        log_error("ivshmem: region %" PRIu64 ": unreadable peer table %s (%s): its guests' doorbells "
                                  "start anew", r->id, path, strerror(-k));
                k = bells_start(l, r, b, &t);
        }
        free(t.peers);
        if (k < 0) {
                free(b);
                log_error("ivshmem: cannot serve the doorbells of region %" PRIu64 " again: %s", r->id, strerror(-k));
                return k;
        }
        log_info("ivshmem: region %" PRIu64 ": serving its doorbells again (%zu peers recorded)", r->id, t.n);
        /* Domains whose stale fd numbers still wait to be filled get nothing meanwhile. */
        libvirt_stale_pause_all(l);
        return 0;
}

int libvirt_bells_expect(struct backend_libvirt *l, uint64_t id, const char *domain) {
        struct call_args a = { .b = bells_find(l, id, NULL), .domain = domain, .pidfd = -EBADF };
        int k;

        if (!a.b)
                return -ENOENT;
        k = libvirt_qemu_pidfd(domain, &a.pidfd);
        if (k < 0) {
                log_error("ivshmem: region %" PRIu64 ": cannot find %s's QEMU process: %s", id, domain, strerror(-k));
                return k;
        }
        k = ivshmem_host_call(l->host, call_expect, &a);
        close(a.pidfd);
        return k;
}

int libvirt_bells_attached(struct backend_libvirt *l, uint64_t id, const char *domain, bool ok) {
        struct call_args a = { .b = bells_find(l, id, NULL), .domain = domain };
        int k;

        if (!a.b)
                return -ENOENT;
        if (!ok) {
                (void) ivshmem_host_call(l->host, call_unexpect, &a);
                return 0;
        }
        /* libvirt's attach returns once QEMU realized the device, which read its setup from us. */
        k = ivshmem_host_call(l->host, call_peer_id, &a);
        if (k < 0) {
                (void) ivshmem_host_call(l->host, call_unexpect, &a);
                log_error("ivshmem: region %" PRIu64 ": %s's device is attached but its QEMU never joined", id, domain);
                return -EPROTO;
        }
        (void) ivshmem_host_call(l->host, call_export, &a);
        (void) table_save(l, a.b);
        return 0;
}

int libvirt_bells_id(struct backend_libvirt *l, uint64_t id, const char *domain, uint32_t *ret) {
        struct call_args a = { .b = bells_find(l, id, NULL), .domain = domain };
        int k;

        if (!a.b)
                return -ENOENT;
        k = ivshmem_host_call(l->host, call_peer_id, &a);
        if (k < 0)
                return k;
        *ret = a.id;
        return 0;
}

/* Before a TCG guest's unplug: which of its QEMU's fd numbers will hold stale handlers. */
static void note_stale(struct backend_libvirt *l, struct call_args *a) {
        int k = ivshmem_host_call(l->host, call_peer_eventfds, a);

        if (k == -ENOENT)
                /*
                 * Its device is there but this server does not know it: admitted just before a
                 * crash of brokerd, its connection lost. Its QEMU got its socket, the memory and
                 * its own eventfds first: those fd numbers, by count.
                 */
                k = libvirt_stale_note(l, a->b->id, a->domain, NULL, 0, 2 + (size_t) a->b->vectors);
        else if (k >= 0) {
                /* The chardev's own socket is one more fd the device held in QEMU. */
                k = libvirt_stale_note(l, a->b->id, a->domain, a->eventfds, a->b->vectors, a->fds_sent + 1);
                for (unsigned v = 0; v < a->b->vectors; v++)
                        close(a->eventfds[v]);
        }
        if (k < 0)
                log_warning("libvirt: cannot note %s's doorbell fd numbers of region %" PRIu64
                            " before its unplug (%s): its QEMU may spin after it",
                            a->domain, a->b->id, strerror(-k));
}

void libvirt_bells_pause_domain(struct backend_libvirt *l, const char *domain, bool pause) {
        for (size_t i = 0; i < l->n_bells; i++) {
                struct call_args a = { .b = l->bells[i], .domain = domain, .pause = pause };
                int k = ivshmem_host_call(l->host, call_pause, &a);

                if (k < 0)
                        log_warning("ivshmem: region %" PRIu64 ": cannot %s %s's connection: %s", l->bells[i]->id,
                                    pause ? "pause" : "resume", domain, strerror(-k));
        }
}

int libvirt_bells_remove(struct backend_libvirt *l, uint64_t id, const char *domain, bool tcg) {
        struct call_args a = { .b = bells_find(l, id, NULL), .domain = domain };
        int k;

        if (!a.b)
                return 0;
        (void) ivshmem_host_call(l->host, call_unexpect, &a);
        if (tcg)
                note_stale(l, &a);
        k = ivshmem_host_call(l->host, call_remove, &a);
        if (k == -ENOENT)
                return 0;
        if (k < 0)
                return k;
        store_drop_peer(l, a.b, a.id);
        (void) table_save(l, a.b);
        return 0;
}

static void bells_unlist(struct backend_libvirt *l, size_t i) {
        struct lv_bells *b = l->bells[i];
        char path[PATH_MAX];

        (void) ivshmem_host_call(l->host, call_free, b);
        store_drop_all(l, b);
        if (table_path(l, b->id, "", path, sizeof(path)) >= 0)
                (void) unlink(path);
        l->bells[i] = l->bells[--l->n_bells];
        free(b);
}

void libvirt_bells_close(struct backend_libvirt *l, uint64_t id) {
        size_t i;

        if (bells_find(l, id, &i))
                bells_unlist(l, i);
}

void libvirt_bells_stop(struct backend_libvirt *l) {
        for (size_t i = 0; i < l->n_bells; i++) {
                (void) ivshmem_host_call(l->host, call_abandon, l->bells[i]);
                free(l->bells[i]);
        }
        free(l->bells);
        l->bells = NULL;
        l->n_bells = l->n_bells_allocated = 0;
        ivshmem_host_free(l->host);
        l->host = NULL;
        if (l->bell_fds_kept) {
                size_t i = 0;
                void *v;

                while (hashmap_iterate(l->bell_fds_kept, &i, &v))
                        free(v);
                hashmap_free(l->bell_fds_kept);
                l->bell_fds_kept = NULL;
        }
        free(l->ivshmem_dir);
        l->ivshmem_dir = NULL;
}
