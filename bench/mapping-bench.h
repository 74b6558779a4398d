/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mapping-bench (mapping-bench.c: what it measures, output, setup, main): what its parts share.
 * mapping-watch.c sees DEVICE_REMOVED on libvirt's event thread and lets the main thread wait
 * for it; mapping-raw.c is the raw libvirt half of an iteration, mapping-brokerd.c the half
 * through brokerd. Each half fills t[M_*] (NULL: a warm-up) and returns 0 or -errno.
 */
#pragma once

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

extern struct watch watch;
extern atomic_bool events_stop;

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

void sleep_msec(unsigned ms);
const char *lv_error(void);
/* libvirt prints every error to stderr by default; ours are printed where they matter. */
void quiet_error(void *ud, virErrorPtr e);
/* Armed before the call that triggers the removal, so that the event cannot overtake it. */
int watch_arm(const char *domain, const char *alias);
void watch_reset(void);
/* Waits until every armed removal has been reported, then disarms them all (see mapping-watch.c). */
int watch_wait(unsigned timeout_ms, uint64_t ret_at[static MAX_EXPECT]);
void *event_thread(void *p);
void on_wakeup(int timer, void *opaque);
void on_device_removed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque);
void on_removal_failed(virConnectPtr conn, virDomainPtr dom, const char *alias, void *opaque);

/* Is a device with this alias in the domain's live definition? 1, 0 or -EIO. */
int domain_has_alias(virDomainPtr d, const char *alias);
/* Checks (untimed) that alias is, or is not, plugged into d. */
int expect_alias(virDomainPtr d, const char *alias, bool present);
int raw_once(struct bench *b, uint64_t *t);
int brokerd_once(struct bench *b, uint64_t *t);
