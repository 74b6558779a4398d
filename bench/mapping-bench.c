/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mapping-bench: what mapping a region into a running libvirt/QEMU guest costs through
 * brokerd, next to the same hot-plug made directly with libvirt, in one run against the same
 * two running domains: A (the owner, the HW domain) and B (the peer).
 *
 * Each iteration has two halves, and which one goes first alternates, so that neither always
 * meets guests that have just been busy:
 *
 *   raw      lookup   virDomainLookupByName(B) + virDomainGetXMLDesc(B) and a search for the
 *                     alias: what brokerd's libvirt backend did before every attach until it
 *                     kept domain handles and read the XML only when an attach fails. Timed on
 *                     its own, not part of attach.
 *            attach   virDomainAttachDeviceFlags(B, xml, VIR_DOMAIN_AFFECT_LIVE) with the XML
 *                     the backend builds, on a backing file created beforehand as the backend
 *                     creates it (/dev/shm/NAME, 0600, owned by libvirt-qemu, truncated to size).
 *            detach   virDomainDetachDeviceAlias(B, alias) until libvirt reports
 *                     VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED (the call itself is timed as well).
 *   brokerd  noop     a broker.info round trip: the RPC floor.
 *            share    region.share by A: commit, file, hot-plug into A.
 *            attach   region.attach by B: commit, hot-plug into B.
 *            revoke   region.revoke by A (60s deadline), then what B's agent does: wait for
 *                     the recall, region.release (which asks B to unplug). Timed: each RPC, and
 *                     from the revoke until B's and A's DEVICE_REMOVED reach this program's own
 *                     libvirt connection and until the region.reclaimed notification arrives.
 *
 * After every plug, both halves wait --settle-ms (untimed): so that the guest has handled the
 * insertion (ACPI hotplug, PCI enumeration) before it is asked to eject, as a real guest would
 * have (an eject racing an insertion measures something else), and so that each timed call
 * meets idle guests, raw and brokerd alike.
 *
 * Every step checks its result, untimed: the aliases are in (and then gone from) the live
 * definitions, the share gives a region with a token for B, the backing file is gone after the
 * reclaim. So a broken setup cannot look fast. Prints figures; asserts nothing about time.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "brokerd-client.h"
#include "bench-common.h"
#include "bench-stats.h"

#define DEFAULT_ITERATIONS 20u
#define DEFAULT_WARMUP 2u
/* 300 ms until issue 16: on a 2-CPU host A's TCG guest may still be taking in the share's
 * device when B's attach runs (docs/bench-mapping.md, "Where the attach time goes now"). */
#define DEFAULT_SETTLE_MS 1000u
#define DEFAULT_TIMEOUT_MS 60000u
#define DEFAULT_SIZE (UINT64_C(1) << 20)
#define DEFAULT_URI "qemu:///system"
#define DEFAULT_DEVICE "nic0"
/* Each iteration hot-plugs four devices; more than this is not a benchmark but a soak. */
#define MAX_ITERATIONS 100000u
#define MAX_SETTLE_MS 60000u
#define REVOKE_DEADLINE_MS 60000

/* Where libvirt puts an ivshmem-plain <shmem name='X'>: /dev/shm/X, as in the backend. */
#define SHM_DIR "/dev/shm"
#define QEMU_USER "libvirt-qemu"
#define RAW_ALIAS_PREFIX "ua-bench-"
/* The backend's alias (brokerd/backend/backend-libvirt.c). */
#define BROKERD_ALIAS_PREFIX "ua-brokerd-"
#define DOMAIN_NAME_MAX 128
#define NAME_FIELD_MAX 128

enum {
        M_RAW_LOOKUP,
        M_RAW_ATTACH,
        M_RAW_DETACH_CALL,
        M_RAW_DETACH,
        M_NOOP,
        M_SHARE,
        M_ATTACH,
        M_REVOKE,
        M_RELEASE,
        M_REVOKE_REMOVED_PEER,
        M_REVOKE_REMOVED_OWNER,
        M_REVOKE_RECLAIMED,
        _M_MAX,
};

static const struct {
        const char *key;   /* JSON */
        const char *label; /* table */
} measures[_M_MAX] = {
        [M_RAW_LOOKUP] = { "raw_lookup", "raw: lookup + live XML of B" },
        [M_RAW_ATTACH] = { "raw_attach", "raw: attach into B" },
        [M_RAW_DETACH_CALL] = { "raw_detach_call", "raw: detach call" },
        [M_RAW_DETACH] = { "raw_detach", "raw: detach -> DEVICE_REMOVED" },
        [M_NOOP] = { "noop_rpc", "brokerd: no-op RPC (broker.info)" },
        [M_SHARE] = { "share", "brokerd: region.share (plugs A)" },
        [M_ATTACH] = { "attach", "brokerd: region.attach (plugs B)" },
        [M_REVOKE] = { "revoke_rpc", "brokerd: region.revoke RPC" },
        [M_RELEASE] = { "release_rpc", "brokerd: region.release RPC" },
        [M_REVOKE_REMOVED_PEER] = { "revoke_to_removed_peer", "brokerd: revoke -> removed from B" },
        [M_REVOKE_REMOVED_OWNER] = { "revoke_to_removed_owner", "brokerd: revoke -> removed from A" },
        [M_REVOKE_RECLAIMED] = { "revoke_to_reclaimed", "brokerd: revoke -> reclaimed" },
};

struct stats {
        double mean_ms, p50_ms, p90_ms, max_ms;
};

static void sleep_msec(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
                ;
}

static const char *lv_error(void) {
        const char *m = virGetLastErrorMessage();
        return m ?: "unknown libvirt error";
}

/* libvirt prints every error to stderr by default; ours are printed where they matter. */
static void quiet_error(void *ud, virErrorPtr e) {
        (void) ud, (void) e;
}

/* ---- DEVICE_REMOVED, seen on libvirt's event thread, awaited on the main thread ---- */

enum expect_state { EXPECT_WAITING, EXPECT_REMOVED, EXPECT_FAILED };

struct expect {
        char domain[DOMAIN_NAME_MAX + 1];
        char alias[64];
        enum expect_state state;
        uint64_t at; /* when the event reached us, taken on the event thread */
};

/* The removals the main thread waits for: the raw half waits for one, the brokerd half for two. */
#define MAX_EXPECT 2

struct watch {
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct expect e[MAX_EXPECT];
        size_t n;
        /* The two domains, set before the event thread starts. */
        const char *owner, *peer;
        /*
         * Devices of ours (ua-...) that left A or B while nobody here waited for them: someone
         * else (another brokerd, virsh) is acting on these domains, and the figures mean nothing.
         */
        unsigned stray;
};

static struct watch watch = { .lock = PTHREAD_MUTEX_INITIALIZER };
static atomic_bool events_stop;

static void watch_mark(virDomainPtr dom, const char *alias, enum expect_state state) {
        const char *name = virDomainGetName(dom);
        uint64_t t = bench_now_nsec();
        bool matched = false;

        if (!name || !alias)
                return;
        pthread_mutex_lock(&watch.lock);
        for (size_t i = 0; i < watch.n; i++) {
                struct expect *x = &watch.e[i];
                if (x->state == EXPECT_WAITING && strcmp(x->domain, name) == 0 && strcmp(x->alias, alias) == 0) {
                        x->state = state;
                        x->at = t;
                        matched = true;
                        pthread_cond_broadcast(&watch.cond);
                }
        }
        if (!matched && state == EXPECT_REMOVED && strncmp(alias, "ua-", 3) == 0 &&
            (strcmp(name, watch.owner) == 0 || strcmp(name, watch.peer) == 0)) {
                watch.stray++;
                fprintf(stderr, "\nmapping-bench: %s left %s unasked\n", alias, name);
        }
        pthread_mutex_unlock(&watch.lock);
}

static void on_device_removed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        (void) conn, (void) opaque;
        watch_mark(dom, alias, EXPECT_REMOVED);
}

static void on_removal_failed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque) {
        (void) conn, (void) opaque;
        watch_mark(dom, alias, EXPECT_FAILED);
}

/* Armed before the call that triggers the removal, so that the event cannot overtake it. */
static int watch_arm(const char *domain, const char *alias) {
        int r = 0;

        pthread_mutex_lock(&watch.lock);
        if (watch.n >= MAX_EXPECT)
                r = -E2BIG;
        else {
                struct expect *x = &watch.e[watch.n++];
                *x = (struct expect) { .state = EXPECT_WAITING };
                snprintf(x->domain, sizeof(x->domain), "%s", domain);
                snprintf(x->alias, sizeof(x->alias), "%s", alias);
        }
        pthread_mutex_unlock(&watch.lock);
        return r;
}

static void watch_reset(void) {
        pthread_mutex_lock(&watch.lock);
        watch.n = 0;
        pthread_mutex_unlock(&watch.lock);
}

/*
 * Waits until every armed removal has been reported, then disarms them all. ret_at[i] is when
 * the i-th armed one arrived. -ETIMEDOUT, or -EIO if libvirt reported a removal as failed.
 */
static int watch_wait(unsigned timeout_ms, uint64_t ret_at[static MAX_EXPECT]) {
        uint64_t deadline = bench_now_nsec() + (uint64_t) timeout_ms * 1000000u, at[MAX_EXPECT] = {};
        struct timespec ts = { .tv_sec = (time_t) (deadline / 1000000000u), .tv_nsec = (long) (deadline % 1000000000u) };
        int r = 0;

        pthread_mutex_lock(&watch.lock);
        for (;;) {
                bool waiting = false;

                for (size_t i = 0; i < watch.n; i++) {
                        if (watch.e[i].state == EXPECT_FAILED) {
                                fprintf(stderr, "mapping-bench: libvirt could not remove %s from %s\n",
                                        watch.e[i].alias, watch.e[i].domain);
                                r = -EIO;
                        }
                        waiting |= watch.e[i].state == EXPECT_WAITING;
                        at[i] = watch.e[i].at;
                }
                if (r < 0 || !waiting)
                        break;
                if (pthread_cond_timedwait(&watch.cond, &watch.lock, &ts) == ETIMEDOUT) {
                        for (size_t i = 0; i < watch.n; i++)
                                if (watch.e[i].state == EXPECT_WAITING)
                                        fprintf(stderr, "mapping-bench: no DEVICE_REMOVED for %s from %s in %ums\n",
                                                watch.e[i].alias, watch.e[i].domain, timeout_ms);
                        r = -ETIMEDOUT;
                        break;
                }
        }
        watch.n = 0;
        pthread_mutex_unlock(&watch.lock);
        if (r >= 0)
                memcpy(ret_at, at, sizeof(at));
        return r;
}

static void *event_thread(void *p) {
        (void) p;
        while (!atomic_load(&events_stop))
                if (virEventRunDefaultImpl() < 0) {
                        fprintf(stderr, "mapping-bench: libvirt event loop: %s\n", lv_error());
                        break;
                }
        return NULL;
}

static void on_wakeup(int timer, void *opaque) {
        (void) opaque;
        virEventRemoveTimeout(timer);
}

/* ---- the libvirt side ---- */

struct bench {
        /* arguments */
        const char *socket_path, *uri, *owner, *peer, *device, *raw_prefix;
        uint64_t size;
        unsigned settle_ms, timeout_ms;
        bool raw_shared; /* the raw half plugs its file into A first, as the share does */

        virConnectPtr conn;
        virDomainPtr dom_owner, dom_peer;
        int cb_removed, cb_failed;
        uid_t qemu_uid;
        gid_t qemu_gid;
        struct bdc *c_owner, *c_peer;
        unsigned seq; /* numbers the raw devices: unique aliases and files within a run */
};

/* Is a device with this alias in the domain's live definition? 1, 0 or -EIO. */
static int domain_has_alias(virDomainPtr d, const char *alias) {
        char needle[96];
        char *xml = virDomainGetXMLDesc(d, 0);
        bool found;

        if (!xml)
                return -EIO;
        snprintf(needle, sizeof(needle), "<alias name='%s'/>", alias);
        found = strstr(xml, needle) != NULL;
        free(xml);
        return found;
}

/* Checks (untimed) that alias is, or is not, plugged into d. */
static int expect_alias(virDomainPtr d, const char *alias, bool present) {
        int k = domain_has_alias(d, alias);

        if (k < 0) {
                fprintf(stderr, "mapping-bench: reading %s's live XML: %s\n", virDomainGetName(d), lv_error());
                return k;
        }
        if ((k > 0) != present) {
                fprintf(stderr, "mapping-bench: %s is %s %s's live definition\n", alias, present ? "missing from" : "still in",
                        virDomainGetName(d));
                return -EBADMSG;
        }
        return 0;
}

/* The backing file as the backend makes it: fresh, 0600, the QEMU user's, of the right size. */
static int raw_file_create(struct bench *b, const char *path) {
        int fd = -1, r;

        for (unsigned attempt = 0; attempt < 2 && fd < 0; attempt++) {
                fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
                /* A leftover of an interrupted run with the same prefix: never reuse an inode. */
                if (fd < 0 && (errno != EEXIST || unlink(path) < 0))
                        break;
        }
        if (fd < 0) {
                r = -errno;
                fprintf(stderr, "mapping-bench: creating %s: %m\n", path);
                return r;
        }
        r = 0;
        if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t) b->size) < 0 || fchown(fd, b->qemu_uid, b->qemu_gid) < 0) {
                r = -errno;
                fprintf(stderr, "mapping-bench: preparing %s: %m\n", path);
                (void) unlink(path);
        }
        close(fd);
        return r;
}

/* The backend's XML for a region file, with our own alias; NULL when out of memory. */
static char *shmem_xml(const char *name, uint64_t size, const char *alias) {
        char *xml;

        if (asprintf(&xml, "<shmem name='%s'><model type='ivshmem-plain'/><size unit='B'>%" PRIu64
                           "</size><alias name='%s'/></shmem>", name, size, alias) < 0)
                return NULL;
        return xml;
}

/*
 * The raw half: t[M_RAW_*] (NULL: warm-up). The device gets the backend's XML with our own
 * alias, which brokerd's backend ignores in its DEVICE_REMOVED handler (not its prefix).
 */
static int raw_once(struct bench *b, uint64_t *t) {
        char name[PATH_MAX], path[PATH_MAX + 16], alias[64], alias_a[64], *xml = NULL, *xml_a = NULL;
        uint64_t t0, t1, t2, t3, t4, t5, removed[MAX_EXPECT] = {}, removed_a[MAX_EXPECT] = {};
        bool attached = false, gone = false, in_a = false;
        virDomainPtr d;
        int k, r;

        snprintf(name, sizeof(name), "%s-%u", b->raw_prefix, b->seq);
        snprintf(path, sizeof(path), SHM_DIR "/%s", name);
        snprintf(alias, sizeof(alias), RAW_ALIAS_PREFIX "%u", b->seq);
        snprintf(alias_a, sizeof(alias_a), RAW_ALIAS_PREFIX "a%u", b->seq);
        b->seq++;
        r = raw_file_create(b, path);
        if (r < 0)
                return r;
        xml = shmem_xml(name, b->size, alias);
        if (!xml) {
                r = -ENOMEM;
                goto out;
        }

        /* --raw-shared: the file is in A already when B gets it, as after a region.share. */
        if (b->raw_shared) {
                xml_a = shmem_xml(name, b->size, alias_a);
                if (!xml_a) {
                        r = -ENOMEM;
                        goto out;
                }
                if (virDomainAttachDeviceFlags(b->dom_owner, xml_a, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                        fprintf(stderr, "mapping-bench: attaching %s to %s: %s\n", alias_a, b->owner, lv_error());
                        r = -EIO;
                        goto out;
                }
                in_a = true;
                r = expect_alias(b->dom_owner, alias_a, true);
                if (r < 0)
                        goto out;
                sleep_msec(b->settle_ms);
        }

        /* What lv_map() does before it attaches: find the domain, read its live XML. */
        t0 = bench_now_nsec();
        d = virDomainLookupByName(b->conn, b->peer);
        k = d ? domain_has_alias(d, alias) : -EIO;
        t1 = bench_now_nsec();
        if (d)
                virDomainFree(d);
        if (k != 0) {
                fprintf(stderr, "mapping-bench: looking up %s: %s\n", b->peer, k < 0 ? lv_error() : "alias already there");
                r = k < 0 ? k : -EEXIST;
                goto out;
        }

        t2 = bench_now_nsec();
        if (virDomainAttachDeviceFlags(b->dom_peer, xml, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                fprintf(stderr, "mapping-bench: attaching %s to %s: %s\n", alias, b->peer, lv_error());
                r = -EIO;
                goto out;
        }
        t3 = bench_now_nsec();
        attached = true;
        r = expect_alias(b->dom_peer, alias, true);
        if (r < 0)
                goto out;

        sleep_msec(b->settle_ms);

        r = watch_arm(b->peer, alias);
        if (r < 0)
                goto out;
        t4 = bench_now_nsec();
        if (virDomainDetachDeviceAlias(b->dom_peer, alias, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                fprintf(stderr, "mapping-bench: detaching %s from %s: %s\n", alias, b->peer, lv_error());
                watch_reset();
                r = -EIO;
                goto out;
        }
        t5 = bench_now_nsec();
        r = watch_wait(b->timeout_ms, removed);
        if (r < 0)
                goto out;
        gone = true;
        r = expect_alias(b->dom_peer, alias, false);
        if (r < 0)
                goto out;
        if (in_a) {
                r = watch_arm(b->owner, alias_a);
                if (r < 0)
                        goto out;
                if (virDomainDetachDeviceAlias(b->dom_owner, alias_a, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                        fprintf(stderr, "mapping-bench: detaching %s from %s: %s\n", alias_a, b->owner, lv_error());
                        watch_reset();
                        r = -EIO;
                        goto out;
                }
                r = watch_wait(b->timeout_ms, removed_a);
                if (r < 0)
                        goto out;
                in_a = false;
        }

        if (t) {
                t[M_RAW_LOOKUP] = t1 - t0;
                t[M_RAW_ATTACH] = t3 - t2;
                t[M_RAW_DETACH_CALL] = t5 - t4;
                t[M_RAW_DETACH] = removed[0] - t4;
        }
out:
        /* Best effort, so that a failed run does not leave the device behind in B. */
        if (attached && !gone)
                (void) virDomainDetachDeviceAlias(b->dom_peer, alias, VIR_DOMAIN_AFFECT_LIVE);
        if (in_a)
                (void) virDomainDetachDeviceAlias(b->dom_owner, alias_a, VIR_DOMAIN_AFFECT_LIVE);
        if (unlink(path) < 0 && errno != ENOENT)
                fprintf(stderr, "mapping-bench: removing %s: %m\n", path);
        free(xml);
        free(xml_a);
        return r;
}

/* ---- the brokerd side ---- */

/* Waits for notification method about region on c, dropping the others (attached, revoked, ...). */
static int wait_notification(struct bdc *c, const char *method, uint64_t region, unsigned timeout_ms) {
        uint64_t deadline = bench_now_nsec() + (uint64_t) timeout_ms * 1000000u;

        for (;;) {
                struct bdc_event ev = {};
                struct json_object *v;
                uint64_t now = bench_now_nsec();
                bool match;
                int r;

                if (now >= deadline) {
                        fprintf(stderr, "mapping-bench: no %s for region %" PRIu64 " in %ums\n", method, region,
                                timeout_ms);
                        return -ETIMEDOUT;
                }
                /* Rounded up, so that a wait of less than 1ms does not become "do not wait". */
                r = bdc_next_event(c, (int) ((deadline - now + 999999) / 1000000), &ev);
                if (r == -ETIMEDOUT || r == -EINTR)
                        continue;
                if (r < 0) {
                        fprintf(stderr, "mapping-bench: waiting for %s: %s\n", method, strerror(-r));
                        return r;
                }
                match = strcmp(ev.method, method) == 0 && json_object_object_get_ex(ev.params, "region", &v) &&
                        json_object_get_uint64(v) == region;
                bdc_event_clear(&ev);
                if (match)
                        return 0;
        }
}

/*
 * region.share and region.attach are sent with bdc_call(), not bdc_share()/bdc_attach(): those
 * insist on an fd in the reply, which the libvirt backend never passes (the memory is the
 * guest's BAR), so they fail with "malformed reply" against it.
 */
struct share_reply {
        uint64_t region, size;
        char pool[NAME_FIELD_MAX + 1];
        char token_domain[DOMAIN_NAME_MAX + 1];
        char token[64];
};

static int get_u64(struct json_object *o, const char *key, uint64_t *ret) {
        struct json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int) ||
            json_object_get_int64(v) < 0)
                return -EBADMSG;
        *ret = json_object_get_uint64(v);
        return 0;
}

/* A reply of an fd-passing backend would bring descriptors: none are wanted here. */
static void close_fds(const int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

static int share_rpc(struct bench *b, struct share_reply *ret, struct bdc_error *err) {
        struct json_object *params = json_object_new_object(), *peers = json_object_new_array(),
                           *peer = json_object_new_object(), *result = NULL, *tokens, *t0;
        int fds[BDC_MAX_FDS];
        size_t n_fds = BDC_MAX_FDS;
        const char *placement, *pool, *dom, *tok;
        int r = -ENOMEM;

        if (!params || !peers || !peer)
                goto out;
        if (bench_json_add(peer, "domain", json_object_new_string(b->peer)) < 0 ||
            bench_json_add(peer, "access", json_object_new_string("rw")) < 0 || json_object_array_add(peers, peer) < 0)
                goto out;
        peer = NULL;
        if (bench_json_add(params, "owner", json_object_new_string(b->owner)) < 0 ||
            bench_json_add(params, "device", json_object_new_string(b->device)) < 0 ||
            bench_json_add(params, "size", json_object_new_uint64(b->size)) < 0)
                goto out;
        r = bench_json_add(params, "peers", peers);
        peers = NULL;
        if (r < 0)
                goto out;

        r = bdc_call(b->c_owner, "region.share", params, &result, fds, &n_fds, err);
        if (r < 0) {
                bench_fail_rpc("region.share", r, err);
                goto out;
        }
        close_fds(fds, n_fds);
        placement = bench_json_string(result, "placement");
        pool = bench_json_string(result, "pool");
        r = -EBADMSG;
        if (!placement || strcmp(placement, "region") != 0) {
                fprintf(stderr, "mapping-bench: region.share gave %s: %s\n", placement ?: "no placement",
                        bench_json_string(result, "reason") ?: "");
                goto out;
        }
        if (get_u64(result, "region", &ret->region) < 0 || get_u64(result, "size", &ret->size) < 0 || !pool ||
            strlen(pool) > NAME_FIELD_MAX || !json_object_object_get_ex(result, "tokens", &tokens) ||
            !json_object_is_type(tokens, json_type_array) || json_object_array_length(tokens) != 1) {
                fprintf(stderr, "mapping-bench: malformed region.share reply: %s\n", json_object_to_json_string(result));
                goto out;
        }
        t0 = json_object_array_get_idx(tokens, 0);
        dom = bench_json_string(t0, "domain");
        tok = bench_json_string(t0, "token");
        if (!dom || !tok || strlen(dom) > DOMAIN_NAME_MAX || strlen(tok) >= sizeof(ret->token)) {
                fprintf(stderr, "mapping-bench: malformed token in %s\n", json_object_to_json_string(result));
                goto out;
        }
        snprintf(ret->pool, sizeof(ret->pool), "%s", pool);
        snprintf(ret->token_domain, sizeof(ret->token_domain), "%s", dom);
        snprintf(ret->token, sizeof(ret->token), "%s", tok);
        r = 0;
out:
        json_object_put(peer);
        json_object_put(peers);
        json_object_put(params);
        json_object_put(result);
        return r;
}

/* region.attach by the peer; *ret_region is the region the reply names, checked to be rw. */
static int attach_rpc(struct bench *b, const char *token, uint64_t *ret_region, struct bdc_error *err) {
        struct json_object *params = json_object_new_object(), *result = NULL;
        int fds[BDC_MAX_FDS];
        size_t n_fds = BDC_MAX_FDS;
        const char *access_mode;
        int r = -ENOMEM;

        if (!params || bench_json_add(params, "domain", json_object_new_string(b->peer)) < 0 ||
            bench_json_add(params, "token", json_object_new_string(token)) < 0)
                goto out;
        r = bdc_call(b->c_peer, "region.attach", params, &result, fds, &n_fds, err);
        if (r < 0) {
                bench_fail_rpc("region.attach", r, err);
                goto out;
        }
        close_fds(fds, n_fds);
        access_mode = bench_json_string(result, "access");
        r = -EBADMSG;
        if (get_u64(result, "region", ret_region) < 0 || !access_mode || strcmp(access_mode, "rw") != 0) {
                fprintf(stderr, "mapping-bench: unexpected region.attach reply: %s\n", json_object_to_json_string(result));
                goto out;
        }
        r = 0;
out:
        json_object_put(params);
        json_object_put(result);
        return r;
}

/* The brokerd half: t[M_NOOP..M_REVOKE_RECLAIMED] (NULL: warm-up). */
static int brokerd_once(struct bench *b, uint64_t *t) {
        struct share_reply share = {};
        struct bdc_error err = BDC_ERROR_INIT;
        char alias[64], path[PATH_MAX];
        uint64_t region = 0, attached = 0, t0, t1, t2, t3, t4, t5, t6, t7, t8, t9, removed[MAX_EXPECT] = {};
        bool shared = false;
        int r;

        t0 = bench_now_nsec();
        r = bench_call(b->c_owner, "broker.info", NULL, NULL);
        if (r < 0)
                goto out;

        t1 = bench_now_nsec();
        r = share_rpc(b, &share, &err);
        t2 = bench_now_nsec();
        if (r < 0)
                goto out;
        region = share.region;
        shared = true;
        if (strcmp(share.token_domain, b->peer) != 0 || share.size != b->size) {
                fprintf(stderr, "mapping-bench: region.share gave %" PRIu64 " bytes with a token for %s, not %" PRIu64
                                " bytes for %s\n",
                        share.size, share.token_domain, b->size, b->peer);
                r = -EBADMSG;
                goto out;
        }
        snprintf(alias, sizeof(alias), BROKERD_ALIAS_PREFIX "%" PRIu64, region);
        snprintf(path, sizeof(path), SHM_DIR "/brokerd-%s-%" PRIu64, share.pool, region);
        r = expect_alias(b->dom_owner, alias, true);
        if (r < 0)
                goto out;
        /*
         * B's agent gets the token out of band, later; and the raw attach meets guests that are
         * not busy either. Without this, B's attach would share the host's CPUs with A's guest
         * taking in its new device (TCG), which is not brokerd's cost.
         */
        sleep_msec(b->settle_ms);

        t3 = bench_now_nsec();
        r = attach_rpc(b, share.token, &attached, &err);
        t4 = bench_now_nsec();
        if (r < 0)
                goto out;
        if (attached != region) {
                fprintf(stderr, "mapping-bench: region.attach answered region %" PRIu64 ", not %" PRIu64 "\n",
                        attached, region);
                r = -EBADMSG;
                goto out;
        }
        r = expect_alias(b->dom_peer, alias, true);
        if (r < 0)
                goto out;

        sleep_msec(b->settle_ms);

        /* In this order: removed[0] is the peer's, removed[1] the owner's. */
        r = watch_arm(b->peer, alias);
        if (r >= 0)
                r = watch_arm(b->owner, alias);
        if (r < 0)
                goto out;
        t5 = bench_now_nsec();
        r = bdc_revoke(b->c_owner, b->owner, region, REVOKE_DEADLINE_MS, false, &err);
        t6 = bench_now_nsec();
        if (r < 0) {
                bench_fail_rpc("region.revoke", r, &err);
                goto out;
        }
        /* What B's agent does: release on its recall. */
        r = wait_notification(b->c_peer, "region.recall", region, b->timeout_ms);
        if (r < 0)
                goto out;
        t7 = bench_now_nsec();
        r = bdc_release(b->c_peer, b->peer, region, &err);
        t8 = bench_now_nsec();
        if (r < 0) {
                bench_fail_rpc("region.release", r, &err);
                goto out;
        }
        r = wait_notification(b->c_owner, "region.reclaimed", region, b->timeout_ms);
        t9 = bench_now_nsec();
        if (r < 0)
                goto out;
        shared = false;
        /* Our own libvirt connection hears the removals independently of brokerd's. */
        r = watch_wait(b->timeout_ms, removed);
        if (r < 0)
                goto out;

        r = expect_alias(b->dom_owner, alias, false);
        if (r >= 0)
                r = expect_alias(b->dom_peer, alias, false);
        if (r < 0)
                goto out;
        if (access(path, F_OK) == 0 || errno != ENOENT) {
                fprintf(stderr, "mapping-bench: %s is still there after the reclaim\n", path);
                r = -EBADMSG;
                goto out;
        }

        if (t) {
                t[M_NOOP] = t1 - t0;
                t[M_SHARE] = t2 - t1;
                t[M_ATTACH] = t4 - t3;
                t[M_REVOKE] = t6 - t5;
                t[M_RELEASE] = t8 - t7;
                t[M_REVOKE_REMOVED_PEER] = removed[0] - t5;
                t[M_REVOKE_REMOVED_OWNER] = removed[1] - t5;
                t[M_REVOKE_RECLAIMED] = t9 - t5;
        }
out:
        watch_reset();
        /* Best effort, so that brokerd does not keep a failed iteration's region mapped. */
        if (r < 0 && shared)
                (void) bdc_revoke(b->c_owner, b->owner, region, 0, true, NULL);
        bdc_error_clear(&err);
        return r;
}

/* ---- output ---- */

/* Sorts samples (nanoseconds) in place. */
static void stats_compute(uint64_t *samples, size_t n, struct stats *ret) {
        struct bench_summary s;

        bench_summarize(samples, n, &s);
        *ret = (struct stats) {
                .mean_ms = (double) (s.sum / n / 1e6L),
                .p50_ms = (double) s.p50 / 1e6,
                .p90_ms = (double) s.p90 / 1e6,
                .max_ms = (double) s.max / 1e6,
        };
}

struct run_info {
        unsigned n, warmup;
        char brokerd_version[64], backend[64];
        unsigned long libvirt_version, qemu_version;
};

static void version_string(unsigned long v, char *buf, size_t n) {
        snprintf(buf, n, "%lu.%lu.%lu", v / 1000000, v / 1000 % 1000, v % 1000);
}

static void print_table(const struct bench *b, const struct stats *st, const struct run_info *ri) {
        char lv[32], qemu[32];

        version_string(ri->libvirt_version, lv, sizeof(lv));
        version_string(ri->qemu_version, qemu, sizeof(qemu));
        printf("brokerd %s (%s backend), libvirt %s, QEMU %s; A=%s (owner) B=%s (peer), %" PRIu64
               " bytes;\n%u iterations after %u warm-up, settle %ums, halves alternating%s\n\n",
               ri->brokerd_version, ri->backend, lv, qemu, b->owner, b->peer, b->size, ri->n, ri->warmup,
               b->settle_ms, b->raw_shared ? "; the raw file is in A before B's attach (--raw-shared)" : "");
        printf("%-34s %10s %10s %10s %10s\n", "measurement", "p50 ms", "p90 ms", "max ms", "mean ms");
        for (int m = 0; m < _M_MAX; m++)
                printf("%-34s %10.3f %10.3f %10.3f %10.3f\n", measures[m].label, st[m].p50_ms, st[m].p90_ms,
                       st[m].max_ms, st[m].mean_ms);
        printf("\nbrokerd attach / raw attach (p50): %.2f  (%+.3f ms; a lookup + live XML, no longer made per attach: %.3f ms)\n",
               st[M_ATTACH].p50_ms / st[M_RAW_ATTACH].p50_ms, st[M_ATTACH].p50_ms - st[M_RAW_ATTACH].p50_ms,
               st[M_RAW_LOOKUP].p50_ms);
}

static int print_json(const struct bench *b, const struct stats *st, const struct run_info *ri) {
        struct json_object *o = json_object_new_object(), *res = json_object_new_object();
        char lv[32], qemu[32];
        int r = o && res ? 0 : -ENOMEM;

        version_string(ri->libvirt_version, lv, sizeof(lv));
        version_string(ri->qemu_version, qemu, sizeof(qemu));
        for (int m = 0; r >= 0 && m < _M_MAX; m++) {
                struct json_object *e = json_object_new_object();
                r = bench_json_add(res, measures[m].key, e);
                bench_json_put(e, "p50_ms", json_object_new_double(st[m].p50_ms), &r);
                bench_json_put(e, "p90_ms", json_object_new_double(st[m].p90_ms), &r);
                bench_json_put(e, "max_ms", json_object_new_double(st[m].max_ms), &r);
                bench_json_put(e, "mean_ms", json_object_new_double(st[m].mean_ms), &r);
        }
        bench_json_put(o, "iterations", json_object_new_int64(ri->n), &r);
        bench_json_put(o, "warmup", json_object_new_int64(ri->warmup), &r);
        bench_json_put(o, "settle_ms", json_object_new_int64(b->settle_ms), &r);
        bench_json_put(o, "raw_shared", json_object_new_boolean(b->raw_shared), &r);
        bench_json_put(o, "size", json_object_new_uint64(b->size), &r);
        bench_json_put(o, "owner", json_object_new_string(b->owner), &r);
        bench_json_put(o, "peer", json_object_new_string(b->peer), &r);
        bench_json_put(o, "brokerd_version", json_object_new_string(ri->brokerd_version), &r);
        bench_json_put(o, "backend", json_object_new_string(ri->backend), &r);
        bench_json_put(o, "libvirt_version", json_object_new_string(lv), &r);
        bench_json_put(o, "qemu_version", json_object_new_string(qemu), &r);
        bench_json_put(o, "attach_ratio_p50", json_object_new_double(st[M_ATTACH].p50_ms / st[M_RAW_ATTACH].p50_ms), &r);
        bench_json_put(o, "results", res, &r);
        return bench_json_emit(o, r);
}

/* ---- setup ---- */

/* broker.info's version and backend; anything but the libvirt backend makes the figures moot. */
static int daemon_info(struct bench *b, struct run_info *ri) {
        int r;

        r = bench_daemon_info(b->c_owner, ri->brokerd_version, sizeof(ri->brokerd_version), ri->backend,
                              sizeof(ri->backend), NULL);
        if (r < 0)
                return r;
        if (strcmp(ri->backend, "libvirt") != 0) {
                fprintf(stderr, "mapping-bench: brokerd runs the %s backend, not libvirt (--backend libvirt)\n",
                        ri->backend);
                return -EINVAL;
        }
        return 0;
}
static int lookup_running(struct bench *b, const char *name, virDomainPtr *ret) {
        virDomainPtr d = virDomainLookupByName(b->conn, name);

        if (!d) {
                fprintf(stderr, "mapping-bench: no domain %s: %s\n", name, lv_error());
                return -ESRCH;
        }
        if (virDomainIsActive(d) != 1) {
                fprintf(stderr, "mapping-bench: domain %s is not running\n", name);
                virDomainFree(d);
                return -ESRCH;
        }
        *ret = d;
        return 0;
}

static int libvirt_setup(struct bench *b, struct run_info *ri, pthread_t *thread) {
        struct passwd *pw;
        int r;

        pw = getpwnam(QEMU_USER);
        if (!pw) {
                fprintf(stderr, "mapping-bench: no user %s (the user QEMU runs as)\n", QEMU_USER);
                return -ESRCH;
        }
        b->qemu_uid = pw->pw_uid;
        b->qemu_gid = pw->pw_gid;

        virSetErrorFunc(NULL, quiet_error);
        /* Before the connection opens: events need the loop that is registered at that point. */
        if (virEventRegisterDefaultImpl() < 0) {
                fprintf(stderr, "mapping-bench: virEventRegisterDefaultImpl: %s\n", lv_error());
                return -EIO;
        }
        b->conn = virConnectOpen(b->uri);
        if (!b->conn) {
                fprintf(stderr, "mapping-bench: cannot connect to %s: %s\n", b->uri, lv_error());
                return -ECONNREFUSED;
        }
        if (virGetVersion(&ri->libvirt_version, NULL, NULL) < 0 || virConnectGetVersion(b->conn, &ri->qemu_version) < 0) {
                fprintf(stderr, "mapping-bench: versions: %s\n", lv_error());
                return -EIO;
        }
        watch.owner = b->owner;
        watch.peer = b->peer;
        r = lookup_running(b, b->owner, &b->dom_owner);
        if (r >= 0)
                r = lookup_running(b, b->peer, &b->dom_peer);
        if (r < 0)
                return r;
        b->cb_removed = virConnectDomainEventRegisterAny(b->conn, NULL, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                                                         VIR_DOMAIN_EVENT_CALLBACK(on_device_removed), NULL, NULL);
        b->cb_failed = virConnectDomainEventRegisterAny(b->conn, NULL, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED,
                                                        VIR_DOMAIN_EVENT_CALLBACK(on_removal_failed), NULL, NULL);
        if (b->cb_removed < 0 || b->cb_failed < 0) {
                fprintf(stderr, "mapping-bench: cannot register for device events: %s\n", lv_error());
                return -EIO;
        }
        r = -pthread_create(thread, NULL, event_thread, NULL);
        if (r < 0)
                fprintf(stderr, "mapping-bench: pthread_create: %s\n", strerror(-r));
        return r;
}

static void libvirt_teardown(struct bench *b, pthread_t *thread, bool thread_started) {
        if (b->conn) {
                if (b->cb_removed >= 0)
                        virConnectDomainEventDeregisterAny(b->conn, b->cb_removed);
                if (b->cb_failed >= 0)
                        virConnectDomainEventDeregisterAny(b->conn, b->cb_failed);
        }
        if (b->dom_owner)
                virDomainFree(b->dom_owner);
        if (b->dom_peer)
                virDomainFree(b->dom_peer);
        if (b->conn)
                virConnectClose(b->conn);
        if (thread_started) {
                atomic_store(&events_stop, true);
                /* A due timer wakes virEventRunDefaultImpl() so that the thread sees the flag. */
                if (virEventAddTimeout(0, on_wakeup, NULL, NULL) >= 0)
                        pthread_join(*thread, NULL);
                else
                        pthread_detach(*thread);
        }
}

static int brokerd_setup(struct bench *b, struct run_info *ri) {
        struct bdc_error err = BDC_ERROR_INIT;
        int r;

        r = bdc_connect(b->socket_path, &b->c_owner);
        if (r >= 0)
                r = bdc_connect(b->socket_path, &b->c_peer);
        if (r < 0) {
                fprintf(stderr, "mapping-bench: cannot connect to %s: %s\n", b->socket_path, strerror(-r));
                return r;
        }
        r = daemon_info(b, ri);
        if (r < 0)
                return r;
        /* The owner hears region.reclaimed, the peer its region.recall. */
        r = bdc_subscribe(b->c_owner, &b->owner, 1, &err);
        if (r >= 0)
                r = bdc_subscribe(b->c_peer, &b->peer, 1, &err);
        if (r < 0)
                bench_fail_rpc("events.subscribe", r, &err);
        bdc_error_clear(&err);
        return r;
}


static void help(void) {
        printf("Usage: mapping-bench --socket PATH --owner DOMAIN --peer DOMAIN [OPTIONS]\n"
               "\n"
               "Times hot-plugging an ivshmem-plain region into running libvirt domains directly\n"
               "(raw libvirt calls into the peer) and through brokerd (region.share by the owner,\n"
               "region.attach by the peer, revoke -> release -> reclaimed), alternating, in one run.\n"
               "brokerd must run with --backend libvirt, a platform giving DEVICE to the owner in a\n"
               "/dev/shm pool, and a policy that lets the caller act for both domains.\n"
               "\n"
               "  --socket PATH       brokerd's agent socket\n"
               "  --owner DOMAIN      domain A, the sharer (owns DEVICE)\n"
               "  --peer DOMAIN       domain B, the peer; the raw half plugs into it too\n"
               "  --device NAME       A's device in brokerd's platform (default " DEFAULT_DEVICE ")\n"
               "  --uri URI           libvirt connection (default " DEFAULT_URI ")\n"
               "  --size BYTES        region size, a power of two (default 1MiB)\n"
               "  --raw-prefix NAME   the raw half's files are /dev/shm/NAME-<n> (default\n"
               "                      mapping-bench-<pid>)\n"
               "  --iterations N      timed iterations (default %u)\n"
               "  --warmup N          untimed iterations first (default %u)\n"
               "  --settle-ms MS      wait after plugging, before unplugging (default %u)\n"
               "  --raw-shared        the raw half plugs its file into the owner first (untimed),\n"
               "                      as brokerd's share does before the peer's attach\n"
               "  --timeout-ms MS     longest wait for an event or notification (default %u)\n"
               "  --json              print a JSON object instead of the table\n"
               "  -h, --help          this text\n",
               DEFAULT_ITERATIONS, DEFAULT_WARMUP, DEFAULT_SETTLE_MS, DEFAULT_TIMEOUT_MS);
}

int main(int argc, char *argv[]) {
        enum {
                ARG_SOCKET = 0x100, ARG_OWNER, ARG_PEER, ARG_DEVICE, ARG_URI, ARG_SIZE, ARG_RAW_PREFIX,
                ARG_ITERATIONS, ARG_WARMUP, ARG_SETTLE, ARG_TIMEOUT, ARG_JSON, ARG_RAW_SHARED,
        };
        static const struct option options[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "owner", required_argument, NULL, ARG_OWNER },
                { "peer", required_argument, NULL, ARG_PEER },
                { "device", required_argument, NULL, ARG_DEVICE },
                { "uri", required_argument, NULL, ARG_URI },
                { "size", required_argument, NULL, ARG_SIZE },
                { "raw-prefix", required_argument, NULL, ARG_RAW_PREFIX },
                { "iterations", required_argument, NULL, ARG_ITERATIONS },
                { "warmup", required_argument, NULL, ARG_WARMUP },
                { "settle-ms", required_argument, NULL, ARG_SETTLE },
                { "timeout-ms", required_argument, NULL, ARG_TIMEOUT },
                { "json", no_argument, NULL, ARG_JSON },
                { "raw-shared", no_argument, NULL, ARG_RAW_SHARED },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        struct bench b = {
                .uri = DEFAULT_URI,
                .device = DEFAULT_DEVICE,
                .size = DEFAULT_SIZE,
                .settle_ms = DEFAULT_SETTLE_MS,
                .timeout_ms = DEFAULT_TIMEOUT_MS,
                .cb_removed = -1,
                .cb_failed = -1,
        };
        struct run_info ri = { .n = DEFAULT_ITERATIONS, .warmup = DEFAULT_WARMUP };
        char default_prefix[64];
        uint64_t *samples[_M_MAX] = {};
        struct stats st[_M_MAX];
        pthread_condattr_t ca;
        pthread_t thread;
        bool json = false, thread_started = false, progress = isatty(STDERR_FILENO);
        int c, r;

        bench_program = "mapping-bench";

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_SOCKET:
                        b.socket_path = optarg;
                        break;
                case ARG_OWNER:
                        b.owner = optarg;
                        break;
                case ARG_PEER:
                        b.peer = optarg;
                        break;
                case ARG_DEVICE:
                        b.device = optarg;
                        break;
                case ARG_URI:
                        b.uri = optarg;
                        break;
                case ARG_SIZE:
                        /* QEMU's ivshmem aborts on anything but a power of two. */
                        if (bench_parse_u64(optarg, "--size", 4096, UINT64_C(1) << 40, &b.size) < 0 ||
                            (b.size & (b.size - 1)) != 0) {
                                fprintf(stderr, "mapping-bench: --size must be a power of two of at least 4KiB\n");
                                return 2;
                        }
                        break;
                case ARG_RAW_PREFIX:
                        b.raw_prefix = optarg;
                        break;
                case ARG_ITERATIONS:
                        if (bench_parse_unsigned(optarg, "--iterations", 1, MAX_ITERATIONS, &ri.n) < 0)
                                return 2;
                        break;
                case ARG_WARMUP:
                        if (bench_parse_unsigned(optarg, "--warmup", 0, MAX_ITERATIONS, &ri.warmup) < 0)
                                return 2;
                        break;
                case ARG_SETTLE:
                        if (bench_parse_unsigned(optarg, "--settle-ms", 0, MAX_SETTLE_MS, &b.settle_ms) < 0)
                                return 2;
                        break;
                case ARG_TIMEOUT:
                        if (bench_parse_unsigned(optarg, "--timeout-ms", 1, 3600000, &b.timeout_ms) < 0)
                                return 2;
                        break;
                case ARG_JSON:
                        json = true;
                        break;
                case ARG_RAW_SHARED:
                        b.raw_shared = true;
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        return 2;
                }
        }
        if (optind < argc || !b.socket_path || !b.owner || !b.peer) {
                fprintf(stderr, "mapping-bench: --socket, --owner and --peer are required, and nothing else (--help)\n");
                return 2;
        }
        if (strlen(b.owner) > DOMAIN_NAME_MAX || strlen(b.peer) > DOMAIN_NAME_MAX || strcmp(b.owner, b.peer) == 0) {
                fprintf(stderr, "mapping-bench: --owner and --peer must be two different domain names\n");
                return 2;
        }
        if (!b.raw_prefix) {
                snprintf(default_prefix, sizeof(default_prefix), "mapping-bench-%d", (int) getpid());
                b.raw_prefix = default_prefix;
        }
        if (strchr(b.raw_prefix, '/') || strchr(b.raw_prefix, '\'') || strlen(b.raw_prefix) > 200) {
                fprintf(stderr, "mapping-bench: --raw-prefix must be a short file name\n");
                return 2;
        }

        /* Deadlines are CLOCK_MONOTONIC, like every other time here. */
        if (pthread_condattr_init(&ca) != 0 || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
            pthread_cond_init(&watch.cond, &ca) != 0) {
                fprintf(stderr, "mapping-bench: cannot set up a condition variable\n");
                return 1;
        }
        pthread_condattr_destroy(&ca);

        for (int m = 0; m < _M_MAX; m++) {
                samples[m] = calloc(ri.n, sizeof(uint64_t));
                if (!samples[m]) {
                        fprintf(stderr, "mapping-bench: out of memory\n");
                        r = -ENOMEM;
                        goto out;
                }
        }

        r = libvirt_setup(&b, &ri, &thread);
        if (r < 0)
                goto out;
        thread_started = true;
        r = brokerd_setup(&b, &ri);
        if (r < 0)
                goto out;

        for (unsigned i = 0; i < ri.warmup + ri.n; i++) {
                uint64_t t[_M_MAX] = {}, *tp = i >= ri.warmup ? t : NULL;

                if (progress)
                        fprintf(stderr, "\rmapping-bench: %s %u/%u ", i < ri.warmup ? "warm-up" : "iteration",
                                i < ri.warmup ? i + 1 : i - ri.warmup + 1, i < ri.warmup ? ri.warmup : ri.n);
                /* Alternating which half goes first, so that neither always follows the other. */
                if (i % 2 == 0) {
                        r = raw_once(&b, tp);
                        if (r >= 0)
                                r = brokerd_once(&b, tp);
                } else {
                        r = brokerd_once(&b, tp);
                        if (r >= 0)
                                r = raw_once(&b, tp);
                }
                if (r < 0)
                        goto out;
                if (tp)
                        for (int m = 0; m < _M_MAX; m++)
                                samples[m][i - ri.warmup] = t[m];
        }
        if (progress)
                fprintf(stderr, "\n");

        for (int m = 0; m < _M_MAX; m++)
                stats_compute(samples[m], ri.n, &st[m]);
        if (json)
                r = print_json(&b, st, &ri);
        else
                print_table(&b, st, &ri);
        if (r >= 0 && fflush(stdout) != 0)
                r = -errno;
        pthread_mutex_lock(&watch.lock);
        if (r >= 0 && watch.stray > 0) {
                fprintf(stderr, "mapping-bench: %u device(s) left the domains without being asked to: something "
                                "else acts on them; these figures are not valid\n", watch.stray);
                r = -EBADMSG;
        }
        pthread_mutex_unlock(&watch.lock);

out:
        if (b.c_owner)
                bdc_close(b.c_owner);
        if (b.c_peer)
                bdc_close(b.c_peer);
        libvirt_teardown(&b, &thread, thread_started);
        for (int m = 0; m < _M_MAX; m++)
                free(samples[m]);
        return r < 0 ? 1 : 0;
}
