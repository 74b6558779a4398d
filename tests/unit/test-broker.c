/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The grant lifecycle end to end inside one process: real platform and policy loaders,
 * the real placer, a real sqlite file, and the real memfd backend (or, where a test needs
 * an unmap that completes later, that backend wrapped so unmap answers -EINPROGRESS).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pidfd-skip.h"
#include "backend/backend-memfd.h"
#include "core/broker.h"

#define MiB (UINT64_C(1) << 20)
#define SEC INT64_C(1000000)

static const struct broker_caller ROOT = { .uid = 0 };     /* acts for hw0 */
static const struct broker_caller VM1 = { .uid = 1000 };   /* acts for vm1 */
static const struct broker_caller VM2 = { .uid = 1001 };   /* acts for vm2 */
static const struct broker_caller ADMIN = { .uid = 0, .admin = true };

/* pool p0: 64MiB at 1GiB, node 0, 4KiB granule, below 4GiB (nic0 reaches it).
 * pool p1: 64MiB at 8GiB, node 1, 2MiB granule (only 64-bit gpu0 reaches it). */
#define PLATFORM_FMT \
        "{\"memory\": [{\"name\": \"bank0\", \"base\": 0, \"size\": \"8GiB\", \"numa_node\": 0}," \
        "              {\"name\": \"bank1\", \"base\": \"8GiB\", \"size\": \"8GiB\", \"numa_node\": 1}]," \
        " \"reserved\": [{\"name\": \"msi\", \"base\": \"0xfee00000\", \"size\": \"1MiB\"}]," \
        " \"pools\": [{\"name\": \"p0\", \"base\": \"1GiB\", \"size\": \"64MiB\", \"numa_node\": 0," \
        "              \"granule\": \"4KiB\", \"backing\": %s}," \
        "            {\"name\": \"p1\", \"base\": \"8GiB\", \"size\": \"64MiB\", \"numa_node\": 1," \
        "              \"granule\": \"2MiB\", \"backing\": {\"kind\": \"memfd\"}}]," \
        " \"devices\": [{\"name\": \"nic0\", \"owner\": \"hw0\", \"dma_mask_bits\": 32}," \
        "             {\"name\": \"gpu0\", \"owner\": \"hw0\", \"dma_mask_bits\": 64}," \
        "             {\"name\": \"blk0\", \"owner\": \"hw1\", \"dma_mask_bits\": 64}]}"

static const char *policy_text =
        "{\"agents\": [{\"uid\": 0, \"domains\": [\"hw0\"]},"
        "             {\"uid\": 1000, \"domains\": [\"vm1\"]},"
        "             {\"uid\": 1001, \"domains\": [\"vm2\"]}],"
        " \"shares\": [{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"rw\","
        "              \"max_region\": \"32MiB\"},"
        "             {\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm2\"], \"access\": \"ro\"},"
        "             {\"sharer\": \"hw0\", \"device\": \"gpu0\", \"peers\": [\"vm1\", \"vm2\"], \"access\": \"ro\","
        "              \"multi_peer\": true}],"
        " \"quotas\": [{\"domain\": \"hw0\", \"max_bytes\": \"48MiB\", \"max_regions\": 4}]}";

struct fixture {
        char dir[64];
        char db[128];
        char backing[160];
        bool shm;           /* pool p0 backed by files (durable) instead of memfds */
        bool async_unmap;   /* wrap the backend so unmaps complete later */
        bool guest_bells;   /* wrap the backend as one whose doorbells are in the guests */
        bool flush_hook;    /* give the broker request_flush, as the daemon does */
        unsigned n_flush_requests;
        int64_t now;
        struct broker *b;
        struct backend *async; /* the wrapper, when async_unmap */
        /* events seen */
        unsigned n_recall, n_reclaimed, n_revoked, n_attached, n_released, n_route, n_joined, n_left;
        size_t last_parties;  /* who heard the last JOINED or LEFT */
        char last_left[64];
        uint64_t last_reclaimed;
        int64_t last_deadline;
        /* holders' processes the broker asked to watch (its pidfds), and how many it let go */
        int watched[8];
        unsigned n_watched, n_unwatched;
        /* a fake fd store (systemd's), when with_store: what it keeps, by name */
        bool with_store;
        struct { char name[64]; int fd; } kept[64];
        unsigned n_kept, n_taken;
};

/* ---- a backend whose unmaps complete later, like a hypervisor's hot-unplug ---- */

struct async_backend {
        struct backend backend;
        struct backend *inner;
        uint64_t pending_region;
        char pending_domain[64];
        unsigned n_pending;
        bool fail_map, fail_create;
        bool bells_full; /* as a backend at its limit of doorbell regions */
};

static int async_check(struct backend *b, const struct backend_region *r, char *why, size_t len) {
        if (r->doorbells > 0 && ((struct async_backend *) b)->bells_full) {
                snprintf(why, len, "no room for another doorbell region");
                return -E2BIG;
        }
        if (r->size & (r->size - 1)) {
                snprintf(why, len, "sizes must be a power of two");
                return -EINVAL;
        }
        return 0;
}
static int async_create(struct backend *b, const struct backend_region *r) {
        struct async_backend *a = (struct async_backend *) b;
        return a->fail_create ? -EIO : a->inner->ops->create(a->inner, r);
}
static int async_restore(struct backend *b, const struct backend_region *r) {
        struct async_backend *a = (struct async_backend *) b;
        return a->inner->ops->restore(a->inner, r);
}
static int async_map(struct backend *b, const struct backend_region *r, const char *domain, enum access_mode access,
                     struct backend_mapping *ret) {
        struct async_backend *a = (struct async_backend *) b;
        return a->fail_map ? -EIO : a->inner->ops->map(a->inner, r, domain, access, ret);
}
static int async_unmap(struct backend *b, const struct backend_region *r, const struct backend_holder *h) {
        struct async_backend *a = (struct async_backend *) b;
        const char *domain = h->domain;
        int q = a->inner->ops->unmap(a->inner, r, h);
        if (q < 0)
                return q;
        a->pending_region = r->id;
        snprintf(a->pending_domain, sizeof(a->pending_domain), "%s", domain);
        a->n_pending++;
        return -EINPROGRESS;
}
static int async_scrub(struct backend *b, const struct backend_region *r) {
        struct async_backend *a = (struct async_backend *) b;
        return a->inner->ops->scrub(a->inner, r);
}
static int async_destroy(struct backend *b, const struct backend_region *r) {
        struct async_backend *a = (struct async_backend *) b;
        return a->inner->ops->destroy(a->inner, r);
}
static void async_free(struct backend *b) {
        struct async_backend *a = (struct async_backend *) b;
        backend_free(a->inner);
        free(a);
}
static const struct backend_ops async_ops = {
        .name = "async-test", .check = async_check, .create = async_create, .restore = async_restore, .map = async_map,
        .unmap = async_unmap, .scrub = async_scrub, .destroy = async_destroy, .free = async_free,
        .slow_maps = true, /* as a hypervisor's */
};

/* As the libvirt backend: no fds for the holders, doorbells in the guests' devices. */
static unsigned guest_bells_seen;
static int guest_create(struct backend *b, const struct backend_region *r) {
        guest_bells_seen = r->doorbells;
        return async_create(b, r);
}
static int guest_map(struct backend *b, const struct backend_region *r, const char *domain, enum access_mode access,
                     struct backend_mapping *ret) {
        int q = async_map(b, r, domain, access, ret);
        if (q >= 0) {
                close(ret->fd);
                ret->fd = -1;
                guest_bells_seen = r->doorbells;
        }
        return q;
}
static int guest_unmap(struct backend *b, const struct backend_region *r, const struct backend_holder *h) {
        return ((struct async_backend *) b)->inner->ops->unmap(((struct async_backend *) b)->inner, r, h);
}
/* hw0's device joined as 0, vm1's as 5; nobody else's. */
static int guest_doorbell_id(struct backend *b, const struct backend_region *r, const char *domain, uint32_t *ret) {
        (void) b, (void) r;
        if (strcmp(domain, "hw0") != 0 && strcmp(domain, "vm1") != 0)
                return -ENOENT;
        *ret = strcmp(domain, "hw0") == 0 ? 0 : 5;
        return 0;
}
static const struct backend_ops guest_ops = {
        .name = "guest-test", .guest_doorbells = true, .check = async_check, .create = guest_create,
        .restore = async_restore, .map = guest_map, .unmap = guest_unmap, .doorbell_id = guest_doorbell_id,
        .scrub = async_scrub, .destroy = async_destroy, .free = async_free,
};

/* ---- fixture ---- */

static int64_t fake_clock(void *userdata) {
        return ((struct fixture *) userdata)->now;
}

static void on_event(void *userdata, const struct broker_event *ev) {
        struct fixture *f = userdata;
        switch (ev->type) {
        case BROKER_EVENT_RECALL:
                f->n_recall++;
                f->last_deadline = ev->deadline;
                break;
        case BROKER_EVENT_RECLAIMED:
                f->n_reclaimed++;
                f->last_reclaimed = ev->region;
                break;
        case BROKER_EVENT_REVOKED:
                f->n_revoked++;
                break;
        case BROKER_EVENT_ATTACHED:
                f->n_attached++;
                break;
        case BROKER_EVENT_RELEASED:
                f->n_released++;
                break;
        case BROKER_EVENT_ROUTE_CHANGED:
                f->n_route++;
                break;
        case BROKER_EVENT_UNPLUG_OVERDUE:
                fail_msg("no unplug can be overdue here: %s", ev->reason);
                break;
        case BROKER_EVENT_JOINED:
                f->n_joined++;
                f->last_parties = ev->n_parties;
                break;
        case BROKER_EVENT_LEFT:
                f->n_left++;
                f->last_parties = ev->n_parties;
                snprintf(f->last_left, sizeof(f->last_left), "%s", ev->domain);
                break;
        case BROKER_EVENT_RECONCILED:
        case _BROKER_EVENT_TYPE_MAX:
                break;
        }
}

static struct platform *make_platform(struct fixture *f) {
        char backing[256], *text;
        struct platform *p = NULL;
        struct diag_list diags = DIAG_LIST_INIT;

        if (f->shm)
                snprintf(backing, sizeof(backing), "{\"kind\": \"shm\", \"path\": \"%s\"}", f->backing);
        else
                snprintf(backing, sizeof(backing), "{\"kind\": \"memfd\"}");
        assert_true(asprintf(&text, PLATFORM_FMT, backing) > 0);
        if (platform_load_string(text, &p, &diags) < 0)
                diag_list_print(&diags, "platform", stderr);
        assert_non_null(p);
        diag_list_clear(&diags);
        free(text);
        return p;
}

static struct policy *make_policy(const char *text) {
        struct policy *p = NULL;
        struct diag_list diags = DIAG_LIST_INIT;

        if (policy_load_string(text, &p, &diags) < 0)
                diag_list_print(&diags, "policy", stderr);
        assert_non_null(p);
        diag_list_clear(&diags);
        return p;
}

static int watch_process(void *userdata, int pidfd, void **ret_handle) {
        struct fixture *f = userdata;

        assert_true(f->n_watched < ELEMENTSOF(f->watched));
        f->watched[f->n_watched++] = pidfd;
        *ret_handle = f; /* any non-NULL handle */
        return 0;
}

static void unwatch_process(void *userdata, void *handle) {
        struct fixture *f = userdata;

        assert_ptr_equal(handle, f);
        f->n_unwatched++;
}

static int kept_index(struct fixture *f, const char *name) {
        for (unsigned i = 0; i < f->n_kept; i++)
                if (strcmp(f->kept[i].name, name) == 0)
                        return (int) i;
        return -1;
}

static int store_drop(void *userdata, const char *name) {
        struct fixture *f = userdata;
        int i = kept_index(f, name);

        if (i >= 0) {
                close(f->kept[i].fd);
                f->kept[i] = f->kept[--f->n_kept];
        }
        return 0;
}

static int store_keep(void *userdata, const char *name, int fd) {
        struct fixture *f = userdata;

        (void) store_drop(f, name);
        assert_true(f->n_kept < ELEMENTSOF(f->kept) && strlen(name) < sizeof(f->kept[0].name));
        strcpy(f->kept[f->n_kept].name, name);
        f->kept[f->n_kept].fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        assert_true(f->kept[f->n_kept++].fd >= 0);
        return 0;
}

/* As systemd hands the fds back at the next start: each a copy, the store keeps its own. */
static int store_take(void *userdata, const char *name, int *ret_fd) {
        struct fixture *f = userdata;
        int i = kept_index(f, name);

        if (i < 0)
                return -ENOENT;
        *ret_fd = fcntl(f->kept[i].fd, F_DUPFD_CLOEXEC, 3);
        f->n_taken++;
        return 0;
}

static const struct backend_fd_store fake_store_ops = { .keep = store_keep, .drop = store_drop, .take = store_take };

static void on_request_flush(void *userdata) {
        struct fixture *f = userdata;
        f->n_flush_requests++;
}

static int broker_open(struct fixture *f, const char *policy, struct broker_error *err) {
        struct backend *memfd = NULL;
        struct backend_fd_store store = fake_store_ops;
        struct broker_config cfg = {
                .db_path = f->db, .clock = fake_clock, .clock_userdata = f, .on_event = on_event,
                .event_userdata = f, .watch_process = watch_process, .unwatch_process = unwatch_process,
                .watch_userdata = f, .fd_store = f->with_store ? &store : NULL,
        };
        int q;

        store.userdata = f;
        if (f->flush_hook) {
                cfg.request_flush = on_request_flush;
                cfg.flush_userdata = f;
        }
        assert_int_equal(backend_memfd_new(&memfd), 0);
        if (f->async_unmap || f->guest_bells) {
                struct async_backend *a = calloc(1, sizeof(*a));
                assert_non_null(a);
                a->backend.ops = f->guest_bells ? &guest_ops : &async_ops;
                a->inner = memfd;
                cfg.backend = &a->backend;
                f->async = &a->backend;
        } else
                cfg.backend = memfd;
        cfg.platform = make_platform(f);
        cfg.policy = make_policy(policy ?: policy_text);
        q = broker_new(&cfg, &f->b, err);
        /* On failure the config still owns what it was given. */
        platform_free(cfg.platform);
        policy_free(cfg.policy);
        backend_free(cfg.backend);
        return q;
}

static void broker_restart(struct fixture *f) {
        struct broker_error err = {};
        broker_free(f->b);
        f->b = NULL;
        f->async = NULL;
        if (broker_open(f, NULL, &err) < 0)
                fail_msg("restart failed: %s", err.message);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        return remove(path);
}

static int setup_common(void **state, bool shm, bool async_unmap) {
        struct fixture *f = calloc(1, sizeof(*f));
        struct broker_error err = {};

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/dev/shm/brokerd-test-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->db, sizeof(f->db), "%s/brokerd.db", f->dir);
        snprintf(f->backing, sizeof(f->backing), "%s/pool", f->dir);
        assert_int_equal(mkdir(f->backing, 0700), 0);
        f->shm = shm;
        f->async_unmap = async_unmap;
        f->now = 1700000000 * SEC;
        if (broker_open(f, NULL, &err) < 0)
                fail_msg("broker_new failed: %s", err.message);
        *state = f;
        return 0;
}

static int setup(void **state) {
        return setup_common(state, false, false);
}
static int setup_shm(void **state) {
        return setup_common(state, true, false);
}
static int setup_async(void **state) {
        return setup_common(state, false, true);
}

static int teardown(void **state) {
        struct fixture *f = *state;
        broker_free(f->b);
        nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

/* ---- helpers ---- */

static int share(struct fixture *f, const struct broker_caller *caller, const char *device, uint64_t size,
                 const char *peer, enum access_mode access, struct broker_share_result *ret,
                 struct broker_error *err) {
        struct broker_share_peer peers[] = { { peer, access } };
        return broker_share(f->b, caller, &(struct broker_share_request) {
                .owner = "hw0", .device = device, .size = size, .peers = peers, .n_peers = 1,
        }, ret, err);
}

static struct broker_share_result share_ok(struct fixture *f, const char *device, uint64_t size, const char *peer,
                                           enum access_mode access) {
        struct broker_share_result res = {};
        struct broker_error err = {};
        if (share(f, &ROOT, device, size, peer, access, &res, &err) < 0)
                fail_msg("share failed: %s: %s", broker_code_name(err.code), err.message);
        assert_false(res.bounce);
        return res;
}

static struct broker_attach_result attach_ok(struct fixture *f, const struct broker_caller *c, const char *domain,
                                             const char *token) {
        struct broker_attach_result res = {};
        struct broker_error err = {};
        if (broker_attach(f->b, c, domain, token, &res, &err) < 0)
                fail_msg("attach failed: %s: %s", broker_code_name(err.code), err.message);
        return res;
}

static enum region_state state_of(struct fixture *f, uint64_t id) {
        struct broker_region_info info;
        if (broker_region_get(f->b, &ADMIN, id, &info, NULL) < 0)
                return REGION_RECLAIMED;
        return info.state;
}

static void expect_code(int q, const struct broker_error *err, enum broker_code code) {
        if (q >= 0 || err->code != code)
                fail_msg("expected %s, got %d %s: %s", broker_code_name(code), q, broker_code_name(err->code),
                         err->message);
}

struct audit_count {
        const char *action;
        unsigned n;
};

static int audit_count_one(void *userdata, const struct store_audit *a) {
        struct audit_count *c = userdata;
        c->n += strcmp(a->action, c->action) == 0;
        return 0;
}

static unsigned audit_rows(struct fixture *f, const char *action) {
        struct audit_count c = { action, 0 };
        assert_int_equal(broker_audit_foreach(f->b, &ADMIN, 0, 0, 0, false, audit_count_one, &c, NULL), 0);
        return c.n;
}

/* ---- tests ---- */

static void test_share_attach_roundtrip(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 1 * MiB, "vm1", ACCESS_RW);
        struct broker_attach_result a;
        char *owner, *peer;

        assert_int_equal(s.base, UINT64_C(1) << 30); /* lowest address of pool p0 */
        assert_int_equal(s.size, 1 * MiB);
        assert_string_equal(s.pool, "p0");
        assert_int_equal(s.n_tokens, 1);
        assert_string_equal(s.tokens[0].domain, "vm1");
        assert_int_equal(strlen(s.tokens[0].token), 32);
        assert_true(s.owner_fd >= 0);
        assert_int_equal(state_of(f, s.region), REGION_OFFERED);

        owner = mmap(NULL, s.size, PROT_READ | PROT_WRITE, MAP_SHARED, s.owner_fd, 0);
        assert_ptr_not_equal(owner, MAP_FAILED);
        strcpy(owner, "packet from hw0");

        a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        assert_int_equal(a.region, s.region);
        assert_int_equal(a.access, ACCESS_RW);
        assert_int_equal(state_of(f, s.region), REGION_ACTIVE);
        assert_int_equal(f->n_attached, 1);
        peer = mmap(NULL, a.size, PROT_READ | PROT_WRITE, MAP_SHARED, a.fd, 0);
        assert_ptr_not_equal(peer, MAP_FAILED);
        assert_string_equal(peer, "packet from hw0");
        strcpy(peer + 4096, "reply from vm1");
        assert_string_equal(owner + 4096, "reply from vm1");

        munmap(owner, s.size);
        munmap(peer, a.size);
        close(s.owner_fd);
        close(a.fd);
        assert_int_equal(audit_rows(f, "share"), 1);
        assert_int_equal(audit_rows(f, "attach"), 1);
}

static void test_ro_peer_cannot_map_writable(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 4096, "vm2", ACCESS_RO);
        struct broker_attach_result a = attach_ok(f, &VM2, "vm2", s.tokens[0].token);
        void *p;

        assert_int_equal(a.access, ACCESS_RO);
        p = mmap(NULL, a.size, PROT_READ | PROT_WRITE, MAP_SHARED, a.fd, 0);
        assert_ptr_equal(p, MAP_FAILED);
        assert_int_equal(errno, EACCES);
        p = mmap(NULL, a.size, PROT_READ, MAP_SHARED, a.fd, 0);
        assert_ptr_not_equal(p, MAP_FAILED);
        munmap(p, a.size);
        close(a.fd);
        close(s.owner_fd);
}

static void test_identity_and_policy_deny(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = {};
        struct broker_error err = {};
        int q;

        /* uid 1000 speaks for vm1, not for hw0. */
        q = share(f, &VM1, "nic0", 4096, "vm1", ACCESS_RW, &s, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        /* No rule lets hw0 share nic0 with vm3. */
        q = share(f, &ROOT, "nic0", 4096, "vm3", ACCESS_RO, &s, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        /* vm2 may only read. */
        q = share(f, &ROOT, "nic0", 4096, "vm2", ACCESS_RW, &s, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        /* Above the rule's max_region. */
        q = share(f, &ROOT, "nic0", 33 * MiB, "vm1", ACCESS_RW, &s, &err);
        expect_code(q, &err, BROKER_E_TOO_LARGE);
        q = share(f, &ROOT, "nope0", 4096, "vm1", ACCESS_RW, &s, &err);
        expect_code(q, &err, BROKER_E_UNKNOWN_DEVICE);
        q = broker_share(f->b, &ADMIN, &(struct broker_share_request) {
                .owner = "hw0", .device = "blk0", .size = 4096,
                .peers = (struct broker_share_peer[]) { { "vm1", ACCESS_RW } }, .n_peers = 1,
        }, &s, &err);
        expect_code(q, &err, BROKER_E_NOT_DEVICE_OWNER);
        q = share(f, &ROOT, "nic0", 0, "vm1", ACCESS_RW, &s, &err);
        expect_code(q, &err, BROKER_E_INVALID);
        /* Nothing of the refused requests was recorded. */
        assert_int_equal(audit_rows(f, "share"), 0);
        /* The allowed case. */
        s = share_ok(f, "nic0", 4096, "vm2", ACCESS_RO);
        close(s.owner_fd);
        assert_int_equal(audit_rows(f, "share"), 1);
}

static void test_multi_peer(void **state) {
        struct fixture *f = *state;
        struct broker_share_peer both[] = { { "vm1", ACCESS_RO }, { "vm2", ACCESS_RO } };
        struct broker_share_result s = {};
        struct broker_error err = {};
        int q;

        /* nic0 sharing is single-peer: one region seen by two peers is refused. */
        q = broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = 4096, .peers = both, .n_peers = 2,
        }, &s, &err);
        expect_code(q, &err, BROKER_E_MULTI_PEER);
        /* gpu0 sharing is marked multi_peer. */
        q = broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "gpu0", .size = 4096, .peers = both, .n_peers = 2,
        }, &s, &err);
        assert_int_equal(q, 0);
        assert_int_equal(s.n_tokens, 2);
        assert_string_not_equal(s.tokens[0].token, s.tokens[1].token);
        close(s.owner_fd);
}

static void test_quota(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s[5] = {};
        struct broker_error err = {};
        uint64_t bytes, regions;
        int q;

        /* hw0: 48MiB and 4 regions. */
        s[0] = share_ok(f, "nic0", 32 * MiB, "vm1", ACCESS_RW);
        q = share(f, &ROOT, "nic0", 17 * MiB, "vm2", ACCESS_RO, &s[1], &err);
        expect_code(q, &err, BROKER_E_QUOTA);
        s[1] = share_ok(f, "nic0", 16 * MiB, "vm2", ACCESS_RO);
        broker_usage(f->b, "hw0", &bytes, &regions);
        assert_int_equal(bytes, 48 * MiB);
        assert_int_equal(regions, 2);
        assert_int_equal(broker_revoke(f->b, &ROOT, "hw0", s[0].region, 0, false, NULL, &err), 0);
        for (int i = 2; i < 5; i++)
                s[i] = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        q = share(f, &ROOT, "nic0", 4096, "vm1", ACCESS_RW, &s[0], &err);
        expect_code(q, &err, BROKER_E_QUOTA);
        for (int i = 1; i < 5; i++)
                close(s[i].owner_fd);
}

static void test_token_reuse_and_wrong_domain(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        struct broker_attach_result a = {};
        struct broker_error err = {};
        char bogus[33];
        int q;

        /* vm2's agent presents vm1's token: refused, and the token stays good for vm1. */
        q = broker_attach(f->b, &VM2, "vm2", s.tokens[0].token, &a, &err);
        expect_code(q, &err, BROKER_E_WRONG_DOMAIN);
        /* vm2's agent claiming to be vm1: it does not speak for vm1. */
        q = broker_attach(f->b, &VM2, "vm1", s.tokens[0].token, &a, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        memset(bogus, 'a', 32);
        bogus[32] = 0;
        q = broker_attach(f->b, &VM1, "vm1", bogus, &a, &err);
        expect_code(q, &err, BROKER_E_BAD_TOKEN);
        q = broker_attach(f->b, &VM1, "vm1", "short", &a, &err);
        expect_code(q, &err, BROKER_E_BAD_TOKEN);

        a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        close(a.fd);
        q = broker_attach(f->b, &VM1, "vm1", s.tokens[0].token, &a, &err);
        expect_code(q, &err, BROKER_E_TOKEN_USED);
        close(s.owner_fd);
}

static void test_revoke_without_peers(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        struct broker_attach_result a = {};
        struct broker_error err = {};
        int q;

        /* Another domain cannot revoke it. */
        q = broker_revoke(f->b, &VM1, "vm1", s.region, 0, false, NULL, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        assert_int_equal(state_of(f, s.region), REGION_OFFERED);

        assert_int_equal(broker_revoke(f->b, &ROOT, "hw0", s.region, 5 * SEC, false, NULL, &err), 0);
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
        assert_int_equal(f->n_reclaimed, 1);
        assert_int_equal(f->n_recall, 0);
        /* The grant died with the region. */
        q = broker_attach(f->b, &VM1, "vm1", s.tokens[0].token, &a, &err);
        expect_code(q, &err, BROKER_E_BAD_TOKEN);
        q = broker_revoke(f->b, &ROOT, "hw0", s.region, 0, false, NULL, &err);
        expect_code(q, &err, BROKER_E_NO_SUCH_REGION);
        close(s.owner_fd);
}

static void test_revoke_with_peer_release(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        struct broker_attach_result a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        struct broker_error err = {};
        int q;

        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, s.region, 5 * SEC, false, NULL, &err), 0);
        assert_int_equal(state_of(f, s.region), REGION_REVOKING);
        assert_int_equal(f->n_recall, 1);
        assert_int_equal(f->last_deadline, f->now + 5 * SEC);
        assert_int_equal(broker_next_deadline(f->b), f->now + 5 * SEC);
        /* Only vm1's agent may release vm1's attachment. */
        q = broker_release(f->b, &VM2, "vm1", s.region, NULL, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        assert_int_equal(broker_release(f->b, &VM1, "vm1", s.region, NULL, &err), 0);
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
        assert_int_equal(f->n_reclaimed, 1);
        assert_int_equal(f->n_revoked, 0);
        assert_int_equal(broker_next_deadline(f->b), INT64_MAX);
        close(a.fd);
        close(s.owner_fd);
}

/*
 * With group sync (the daemon's), the last peer's release is recorded and told, but the memory
 * is scrubbed only by broker_finish_queued(), which the daemon runs after the flush that
 * delivers region.left: the partners hear of the departure before the memory turns to zeros.
 */
static void test_takedown_waits_for_flush(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s, s2;
        struct broker_attach_result a, a2;
        struct broker_error err = {};
        char c = 0;

        f->flush_hook = true;
        broker_restart(f);
        assert_int_equal(broker_set_group_sync(f->b, true), 0);
        s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        assert_int_equal(pwrite(a.fd, "x", 1, 0), 1);
        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, s.region, 5 * SEC, false, NULL, &err), 0);
        assert_int_equal(broker_release(f->b, &VM1, "vm1", s.region, NULL, &err), 0);
        /* Released and told; not yet scrubbed or reclaimed, and a flush was asked for. */
        assert_int_equal(f->n_released, 1);
        assert_int_equal(state_of(f, s.region), REGION_REVOKING);
        assert_int_equal(f->n_reclaimed, 0);
        assert_int_equal(f->n_flush_requests, 1);
        assert_int_equal(pread(s.owner_fd, &c, 1, 0), 1);
        assert_int_equal(c, 'x');
        /* What the daemon runs once the flush delivered what it held: once. */
        assert_int_equal(broker_finish_queued(f->b), 1);
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
        assert_int_equal(f->n_reclaimed, 1);
        assert_int_equal(pread(s.owner_fd, &c, 1, 0), 1);
        assert_int_equal(c, 0); /* scrubbed */
        assert_int_equal(broker_finish_queued(f->b), 0);
        assert_int_equal(broker_sync(f->b), 0);

        /* A daemon that dies between the release and the queued take-down: the start finishes it. */
        s2 = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        a2 = attach_ok(f, &VM1, "vm1", s2.tokens[0].token);
        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, s2.region, 5 * SEC, false, NULL, &err), 0);
        assert_int_equal(broker_release(f->b, &VM1, "vm1", s2.region, NULL, &err), 0);
        assert_int_equal(state_of(f, s2.region), REGION_REVOKING);
        assert_int_equal(broker_sync(f->b), 0);
        broker_restart(f);
        assert_int_equal(state_of(f, s2.region), REGION_RECLAIMED);
        assert_int_equal(broker_finish_queued(f->b), 0);
        close(a.fd);
        close(s.owner_fd);
        close(a2.fd);
        close(s2.owner_fd);
}

/*
 * With group sync and a backend whose maps wait for a hypervisor, the commit recorded before the
 * map is flushed on a thread while the map runs: nothing is left for the flush after it.
 */
static void test_slow_map_flushes_meanwhile(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s;
        struct broker_attach_result a;

        assert_int_equal(broker_set_group_sync(f->b, true), 0);
        s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        assert_int_equal(broker_unsynced(f->b), 0);
        a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        assert_int_equal(broker_unsynced(f->b), 0);
        /* A commit with no map after it waits for the daemon's flush, as before. */
        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, s.region, 5 * SEC, false, NULL, NULL), 0);
        assert_int_equal(broker_unsynced(f->b), 1);
        assert_int_equal(broker_sync(f->b), 0);
        assert_int_equal(broker_unsynced(f->b), 0);
        if (a.fd >= 0)
                close(a.fd);
        if (s.owner_fd >= 0)
                close(s.owner_fd);
}

static void test_deadline_forces_revoke_and_scrubs(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        struct broker_attach_result a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        struct broker_share_result again = {};
        struct broker_error err = {};
        char *peer;
        int q;

        peer = mmap(NULL, a.size, PROT_READ | PROT_WRITE, MAP_SHARED, a.fd, 0);
        assert_ptr_not_equal(peer, MAP_FAILED);
        strcpy(peer, "secret of hw0");

        assert_int_equal(broker_revoke(f->b, &ROOT, "hw0", s.region, 5 * SEC, false, NULL, &err), 0);
        /* While revoking, the range is not handed out again. */
        q = broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = 4096, .place = true, .base = s.base,
                .peers = (struct broker_share_peer[]) { { "vm1", ACCESS_RW } }, .n_peers = 1,
        }, &again, &err);
        expect_code(q, &err, BROKER_E_OVERLAP);

        f->now += 4 * SEC;
        assert_int_equal(broker_process_deadlines(f->b), 0);
        assert_int_equal(state_of(f, s.region), REGION_REVOKING);
        assert_string_equal(peer, "secret of hw0");

        f->now += 2 * SEC;
        assert_int_equal(broker_process_deadlines(f->b), 0);
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
        assert_int_equal(f->n_revoked, 1);
        /* The peer ignored the recall and still maps the memory: it now reads zeros. */
        assert_int_equal(peer[0], 0);
        assert_int_equal(audit_rows(f, "revoke-peer"), 1);
        assert_int_equal(audit_rows(f, "reclaim"), 1);

        /* Reclaimed: the same range can be placed again, and it starts zeroed. */
        q = broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = 4096, .place = true, .base = s.base,
                .peers = (struct broker_share_peer[]) { { "vm1", ACCESS_RW } }, .n_peers = 1,
        }, &again, &err);
        assert_int_equal(q, 0);
        assert_int_equal(again.base, s.base);
        char *fresh = mmap(NULL, again.size, PROT_READ, MAP_SHARED, again.owner_fd, 0);
        assert_ptr_not_equal(fresh, MAP_FAILED);
        assert_int_equal(fresh[0], 0);
        munmap(fresh, again.size);
        munmap(peer, a.size);
        close(again.owner_fd);
        close(a.fd);
        close(s.owner_fd);
}

static void test_force_revoke(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        struct broker_attach_result a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        struct broker_error err = {};

        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, s.region, 60 * SEC, true, NULL, &err), 0);
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
        assert_int_equal(f->n_revoked, 1);
        close(a.fd);
        close(s.owner_fd);
}

static void test_all_peers_released_reclaims(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        struct broker_attach_result a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        struct broker_error err = {};
        int q;

        assert_int_equal(broker_release(f->b, &VM1, "vm1", s.region, NULL, &err), 0);
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
        q = broker_release(f->b, &VM1, "vm1", s.region, NULL, &err);
        expect_code(q, &err, BROKER_E_NO_SUCH_REGION);
        close(a.fd);
        close(s.owner_fd);
}

static void test_bounce_and_route_lookup(void **state) {
        struct fixture *f = *state;
        struct broker_share_result big, s = {};
        struct broker_route_info route;
        struct broker_error err = {};
        int q;

        assert_int_equal(broker_route_lookup(f->b, &ADMIN, "nic0", "vm1", &route, NULL), 0);
        assert_false(route.found);

        big = share_ok(f, "nic0", 32 * MiB, "vm1", ACCESS_RW);
        assert_int_equal(broker_route_lookup(f->b, &ADMIN, "nic0", "vm1", &route, NULL), 0);
        assert_true(route.found);
        assert_int_equal(route.kind, ROUTE_REGION);
        assert_int_equal(route.region, big.region);
        assert_int_equal(route.access, ACCESS_RW);

        /* 16MiB of the only pool nic0 reaches are left after this. */
        q = share(f, &ROOT, "nic0", 16 * MiB, "vm2", ACCESS_RO, &s, &err);
        assert_int_equal(q, 0);
        close(s.owner_fd);

        q = broker_share(f->b, &ADMIN, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = 17 * MiB, .peers = (struct broker_share_peer[]) {
                        { "vm2", ACCESS_RO } }, .n_peers = 1,
        }, &s, &err);
        assert_int_equal(q, 0);
        assert_true(s.bounce);
        assert_non_null(strstr(s.reason, "exhausted"));
        assert_int_equal(broker_route_lookup(f->b, &ADMIN, "nic0", "vm2", &route, NULL), 0);
        /* vm2 still has its 16MiB region: the route points there. */
        assert_int_equal(route.kind, ROUTE_REGION);

        /* The pending bounce survives a restart while the region still serves the route. */
        broker_restart(f);
        assert_int_equal(broker_route_lookup(f->b, &ADMIN, "nic0", "vm2", &route, NULL), 0);
        assert_int_equal(route.kind, ROUTE_REGION);

        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, route.region, 0, true, NULL, &err), 0);
        assert_int_equal(broker_route_lookup(f->b, &ADMIN, "nic0", "vm2", &route, NULL), 0);
        assert_true(route.found);
        assert_int_equal(route.kind, ROUTE_BOUNCE);
        assert_non_null(strstr(route.reason, "exhausted"));
        assert_int_equal(audit_rows(f, "bounce"), 1);

        /* The bounce answer survives a restart. */
        close(big.owner_fd);
        broker_restart(f);
        assert_int_equal(broker_route_lookup(f->b, &ADMIN, "nic0", "vm2", &route, NULL), 0);
        assert_true(route.found);
        assert_int_equal(route.kind, ROUTE_BOUNCE);
        assert_int_equal(broker_route_lookup(f->b, &ADMIN, "nic0", "vm1", &route, NULL), 0);
        assert_int_equal(route.kind, ROUTE_REGION);
        assert_int_equal(route.region, big.region);

        /* Room again: a new share replaces the bounce answer, and for good: once that region
         * goes too (after a restart as well), the route leads nowhere, not to the old bounce. */
        s = share_ok(f, "nic0", 4096, "vm2", ACCESS_RO);
        assert_int_equal(broker_route_lookup(f->b, &ADMIN, "nic0", "vm2", &route, NULL), 0);
        assert_int_equal(route.kind, ROUTE_REGION);
        assert_int_equal(route.region, s.region);
        close(s.owner_fd);
        broker_restart(f);
        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, s.region, 0, true, NULL, &err), 0);
        assert_int_equal(broker_route_lookup(f->b, &ADMIN, "nic0", "vm2", &route, NULL), 0);
        assert_false(route.found);
}

static uint64_t route_region(struct fixture *f, const char *domain) {
        struct broker_route_info route;

        assert_int_equal(broker_route_lookup(f->b, &ADMIN, "nic0", domain, &route, NULL), 0);
        if (!route.found)
                return 0;
        assert_int_equal(route.kind, ROUTE_REGION);
        return route.region;
}

/*
 * A route leads to its newest live region whichever of its regions go, in any order: from the
 * middle, the newest, the oldest (a region leaves its routes through a list, not a scan), and
 * the same after a restart, which rebuilds the routes from the database.
 */
static void test_route_after_takedowns_in_any_order(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s[5];
        struct broker_error err = {};

        /* vm1: 0 1 3; vm2: 2 (the quota is 4 regions) */
        for (size_t i = 0; i < 4; i++) {
                s[i] = share_ok(f, "nic0", 4096, i == 2 ? "vm2" : "vm1", i == 2 ? ACCESS_RO : ACCESS_RW);
                close(s[i].owner_fd);
        }
        assert_int_equal(route_region(f, "vm1"), s[3].region);
        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, s[1].region, 0, true, NULL, &err), 0);
        assert_int_equal(route_region(f, "vm1"), s[3].region);
        s[4] = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        close(s[4].owner_fd);
        assert_int_equal(route_region(f, "vm1"), s[4].region);
        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, s[4].region, 0, true, NULL, &err), 0);
        assert_int_equal(route_region(f, "vm1"), s[3].region);
        assert_int_equal(route_region(f, "vm2"), s[2].region);
        broker_restart(f);
        assert_int_equal(route_region(f, "vm1"), s[3].region);
        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, s[0].region, 0, true, NULL, &err), 0);
        assert_int_equal(route_region(f, "vm1"), s[3].region);
        /* a new share is the newest again, ahead of what was loaded */
        s[1] = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        close(s[1].owner_fd);
        assert_int_equal(route_region(f, "vm1"), s[1].region);
        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, s[1].region, 0, true, NULL, &err), 0);
        assert_int_equal(route_region(f, "vm1"), s[3].region);
        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, s[3].region, 0, true, NULL, &err), 0);
        assert_int_equal(route_region(f, "vm1"), 0);
        broker_restart(f);
        assert_int_equal(route_region(f, "vm1"), 0);
        assert_int_equal(route_region(f, "vm2"), s[2].region);
}

/* A file-backed region whose file a crash left half-created is never handed out. */
static void test_restart_half_created_file(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 8192, "vm1", ACCESS_RW);
        struct broker_region_info info;
        char path[256];
        int fd;

        close(s.owner_fd);
        broker_free(f->b);
        f->b = NULL;
        /* As if killed between open(O_CREAT) and ftruncate(). */
        snprintf(path, sizeof(path), "%s/brokerd-p0-%" PRIu64, f->backing, s.region);
        fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
        assert_true(fd >= 0);
        close(fd);
        broker_restart(f);
        /* The owner had it mapped: revoked and reclaimed, the file gone. */
        assert_int_equal(broker_region_get(f->b, &ADMIN, s.region, &info, NULL), -ENOENT);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(f->n_reclaimed, 1);
}

static void test_bounce_no_reachable_pool_on_node(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = {};
        struct broker_error err = {};

        /* nic0 (32-bit) reaches only p0 on node 0. */
        assert_int_equal(broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = 4096, .has_numa_node = true, .numa_node = 1,
                .peers = (struct broker_share_peer[]) { { "vm1", ACCESS_RW } }, .n_peers = 1,
        }, &s, &err), 0);
        assert_true(s.bounce);
        /* gpu0 reaches p1 on node 1. */
        assert_int_equal(broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "gpu0", .size = 4096, .has_numa_node = true, .numa_node = 1,
                .peers = (struct broker_share_peer[]) { { "vm1", ACCESS_RO } }, .n_peers = 1,
        }, &s, &err), 0);
        assert_false(s.bounce);
        assert_string_equal(s.pool, "p1");
        assert_int_equal(s.size, 2 * MiB); /* rounded up to p1's granule */
        close(s.owner_fd);
}

static void test_place_mode_errors(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = {};
        struct broker_error err = {};
        struct broker_share_request req = {
                .owner = "hw0", .device = "nic0", .size = 4096, .place = true,
                .peers = (struct broker_share_peer[]) { { "vm1", ACCESS_RW } }, .n_peers = 1,
        };
        int q;

        req.base = (UINT64_C(1) << 30) + 100;
        q = broker_share(f->b, &ROOT, &req, &s, &err);
        expect_code(q, &err, BROKER_E_NOT_ALIGNED);
        req.base = UINT64_C(8) << 30; /* p1: above nic0's 32-bit mask */
        q = broker_share(f->b, &ROOT, &req, &s, &err);
        expect_code(q, &err, BROKER_E_BEYOND_DMA_MASK);
        req.base = UINT64_C(3) << 30;
        q = broker_share(f->b, &ROOT, &req, &s, &err);
        expect_code(q, &err, BROKER_E_NOT_IN_POOL);
        req.base = (UINT64_C(1) << 30) + 8192;
        assert_int_equal(broker_share(f->b, &ROOT, &req, &s, &err), 0);
        assert_int_equal(s.base, req.base);
        close(s.owner_fd);
        q = broker_share(f->b, &ROOT, &req, &s, &err);
        expect_code(q, &err, BROKER_E_OVERLAP);
}

static void test_restart_keeps_live_regions(void **state) {
        struct fixture *f = *state;
        struct broker_share_peer both[] = { { "vm1", ACCESS_RO }, { "vm2", ACCESS_RO } };
        struct broker_share_result s = {};
        struct broker_attach_result a1, a2;
        struct broker_region_info info;
        struct broker_error err = {};
        char *p;
        int q;

        /* p0 is file-backed in this fixture: its memory outlives the daemon. */
        assert_int_equal(broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = 4096,
                .peers = (struct broker_share_peer[]) { { "vm1", ACCESS_RW } }, .n_peers = 1, .label = "rx ring",
        }, &s, &err), 0);
        p = mmap(NULL, s.size, PROT_READ | PROT_WRITE, MAP_SHARED, s.owner_fd, 0);
        assert_ptr_not_equal(p, MAP_FAILED);
        strcpy(p, "survives restart");
        munmap(p, s.size);
        close(s.owner_fd);

        struct broker_share_result g = {};
        assert_int_equal(broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "gpu0", .size = 4096, .peers = both, .n_peers = 2,
                .has_numa_node = true, .numa_node = 1, /* pool p1: memfd-backed */
        }, &g, &err), 0);
        assert_string_equal(g.pool, "p1");
        close(g.owner_fd);
        a1 = attach_ok(f, &VM1, "vm1", g.tokens[0].token);
        close(a1.fd);

        struct broker_share_result t = share_ok(f, "nic0", 4096, "vm2", ACCESS_RO);
        close(t.owner_fd);
        a1 = attach_ok(f, &VM2, "vm2", t.tokens[0].token);
        close(a1.fd);

        broker_restart(f);

        assert_int_equal(broker_region_get(f->b, &ADMIN, s.region, &info, NULL), 0);
        assert_int_equal(info.state, REGION_OFFERED);
        assert_string_equal(info.label, "rx ring");
        assert_int_equal(info.base, s.base);
        a2 = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        p = mmap(NULL, a2.size, PROT_READ, MAP_SHARED, a2.fd, 0);
        assert_ptr_not_equal(p, MAP_FAILED);
        assert_string_equal(p, "survives restart");
        munmap(p, a2.size);
        close(a2.fd);
        /* Redeemable once, across the restart too. */
        q = broker_attach(f->b, &VM1, "vm1", s.tokens[0].token, &a2, &err);
        expect_code(q, &err, BROKER_E_TOKEN_USED);

        /* A token redeemed before the restart is still known as spent. */
        q = broker_attach(f->b, &VM2, "vm2", t.tokens[0].token, &a2, &err);
        expect_code(q, &err, BROKER_E_TOKEN_USED);

        /* The gpu0 region was memfd-backed and had been seen: its memory is gone, so it was
         * taken down rather than handed out as different memory. */
        assert_int_equal(state_of(f, g.region), REGION_RECLAIMED);
        q = broker_attach(f->b, &VM2, "vm2", g.tokens[1].token, &a2, &err);
        expect_code(q, &err, BROKER_E_BAD_TOKEN);

        /* The range in use survives too: placing over it is refused. */
        q = broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = 4096, .place = true, .base = s.base,
                .peers = (struct broker_share_peer[]) { { "vm1", ACCESS_RW } }, .n_peers = 1,
        }, &g, &err);
        expect_code(q, &err, BROKER_E_OVERLAP);
        uint64_t bytes, regions;
        broker_usage(f->b, "hw0", &bytes, &regions);
        assert_int_equal(regions, 2);
}

static void test_restart_finishes_revoke(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        struct broker_attach_result a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        struct broker_error err = {};
        char path[256];

        close(s.owner_fd);
        close(a.fd);
        assert_int_equal(broker_revoke(f->b, &ROOT, "hw0", s.region, 5 * SEC, false, NULL, &err), 0);
        assert_int_equal(state_of(f, s.region), REGION_REVOKING);

        /* The daemon stops with the revoke half done; it comes back after the deadline. */
        f->now += 10 * SEC;
        broker_restart(f);
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
        /* Nothing leaked: the region's backing file is gone. */
        snprintf(path, sizeof(path), "%s/brokerd-p0-%" PRIu64, f->backing, s.region);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(audit_rows(f, "reclaim"), 1);
}

static void test_restart_before_deadline_keeps_waiting(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        struct broker_attach_result a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        struct broker_error err = {};

        close(s.owner_fd);
        close(a.fd);
        assert_int_equal(broker_revoke(f->b, &ROOT, "hw0", s.region, 5 * SEC, false, NULL, &err), 0);
        f->now += 1 * SEC;
        broker_restart(f);
        assert_int_equal(state_of(f, s.region), REGION_REVOKING);
        assert_int_equal(broker_next_deadline(f->b), f->now + 4 * SEC);
        assert_int_equal(broker_release(f->b, &VM1, "vm1", s.region, NULL, &err), 0);
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
}

static void test_async_unmap_quarantines(void **state) {
        struct fixture *f = *state;
        struct async_backend *ab = (struct async_backend *) f->async;
        struct broker_share_result s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        struct broker_attach_result a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        struct broker_share_result again = {};
        struct broker_error err = {};
        int q;

        close(s.owner_fd);
        close(a.fd);
        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, s.region, 0, true, NULL, &err), 0);
        /* Both unmaps asked at once, the peer's then the owner's; neither is confirmed: not
         * reclaimed, not reusable. */
        assert_int_equal(state_of(f, s.region), REGION_REVOKING);
        assert_int_equal(ab->n_pending, 2);
        assert_string_equal(ab->pending_domain, "hw0");
        q = broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = 4096, .place = true, .base = s.base,
                .peers = (struct broker_share_peer[]) { { "vm1", ACCESS_RW } }, .n_peers = 1,
        }, &again, &err);
        expect_code(q, &err, BROKER_E_OVERLAP);

        /* The owner's confirmed first: the peer's, still pending, keeps it quarantined. */
        backend_unmap_done(f->async, s.region, "hw0", 0);
        assert_int_equal(state_of(f, s.region), REGION_REVOKING);

        /* A failed unmap keeps it quarantined. */
        backend_unmap_done(f->async, s.region, "vm1", -EIO);
        assert_int_equal(state_of(f, s.region), REGION_REVOKING);
        q = broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = 4096, .place = true, .base = s.base,
                .peers = (struct broker_share_peer[]) { { "vm1", ACCESS_RW } }, .n_peers = 1,
        }, &again, &err);
        expect_code(q, &err, BROKER_E_OVERLAP);
        assert_int_equal(ab->n_pending, 2); /* nobody asks anew at once: escalation's job */

        /* The last one confirmed: only then reclaim. */
        backend_unmap_done(f->async, s.region, "vm1", 0);
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);

        /* A restart while an unmap is unconfirmed asks again. */
        s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        close(s.owner_fd);
        close(a.fd);
        assert_int_equal(broker_release(f->b, &VM1, "vm1", s.region, NULL, &err), 0);
        assert_int_equal(state_of(f, s.region), REGION_REVOKING);
        assert_int_equal(ab->n_pending, 4);
        f->shm = false;
        broker_restart(f);
        ab = (struct async_backend *) f->async;
        /* memfd memory is gone after the restart; what matters is that the range stays
         * quarantined until every unmap is confirmed. */
        assert_int_equal(state_of(f, s.region), REGION_REVOKING);
        backend_unmap_done(f->async, s.region, "vm1", 0);
        assert_int_equal(state_of(f, s.region), REGION_REVOKING);
        backend_unmap_done(f->async, s.region, "hw0", 0);
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
}

static void test_backend_failures_change_nothing(void **state) {
        struct fixture *f = *state;
        struct async_backend *ab = (struct async_backend *) f->async;
        struct broker_share_result s = {};
        struct broker_attach_result a = {};
        struct broker_error err = {};
        uint64_t bytes, regions;
        int q;

        /* A size the backend cannot take is refused before anything is recorded. */
        q = share(f, &ROOT, "nic0", 3 * 4096, "vm1", ACCESS_RW, &s, &err);
        expect_code(q, &err, BROKER_E_SIZE_UNSUPPORTED);
        assert_non_null(strstr(err.message, "power of two"));
        assert_int_equal(audit_rows(f, "share"), 0);

        ab->fail_create = true;
        q = share(f, &ROOT, "nic0", 4096, "vm1", ACCESS_RW, &s, &err);
        expect_code(q, &err, BROKER_E_BACKEND);
        broker_usage(f->b, "hw0", &bytes, &regions);
        assert_int_equal(regions, 0);
        ab->fail_create = false;

        s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        close(s.owner_fd);
        ab->fail_map = true;
        q = broker_attach(f->b, &VM1, "vm1", s.tokens[0].token, &a, &err);
        expect_code(q, &err, BROKER_E_BACKEND);
        assert_int_equal(state_of(f, s.region), REGION_OFFERED);
        ab->fail_map = false;
        /* The token was not spent by the failed attach. */
        a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        close(a.fd);
}

static void test_domain_gone(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s1 = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        struct broker_share_result s2 = share_ok(f, "nic0", 4096, "vm2", ACCESS_RO);
        struct broker_attach_result a1 = attach_ok(f, &VM1, "vm1", s1.tokens[0].token);
        struct broker_attach_result a2 = attach_ok(f, &VM2, "vm2", s2.tokens[0].token);
        struct broker_error err = {};
        int q;

        q = broker_domain_gone(f->b, &VM1, "vm1", NULL, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);

        /* The peer vm1 disappears: its attachment goes, and with no other peer, the region. */
        assert_int_equal(broker_domain_gone(f->b, &ADMIN, "vm1", NULL, &err), 0);
        assert_int_equal(state_of(f, s1.region), REGION_RECLAIMED);
        assert_int_equal(state_of(f, s2.region), REGION_ACTIVE);

        /* The owner hw0 disappears: its regions are revoked, peers recalled. */
        assert_int_equal(broker_domain_gone(f->b, &ADMIN, "hw0", NULL, &err), 0);
        assert_int_equal(state_of(f, s2.region), REGION_REVOKING);
        assert_int_equal(f->n_recall, 1);
        f->now += BROKER_DEFAULT_REVOKE_TIMEOUT_USEC + 1;
        assert_int_equal(broker_process_deadlines(f->b), 0);
        assert_int_equal(state_of(f, s2.region), REGION_RECLAIMED);
        close(a1.fd);
        close(a2.fd);
        close(s1.owner_fd);
        close(s2.owner_fd);
}

static void test_policy_reload(void **state) {
        struct fixture *f = *state;
        struct diag_list diags = DIAG_LIST_INIT;
        struct broker_share_result s = {};
        struct broker_error err = {};
        char path[128];
        FILE *fp;
        int q;

        snprintf(path, sizeof(path), "%s/policy.json", f->dir);
        /* A broken file is refused and the policy in force stays. */
        fp = fopen(path, "we");
        assert_non_null(fp);
        fputs("{\"agents\": [], \"shares\": [{\"sharer\": \"hw0\"}]", fp);
        fclose(fp);
        assert_true(broker_reload_policy(f->b, path, &diags) < 0);
        assert_true(diag_count(&diags, DIAG_ERROR) > 0);
        diag_list_clear(&diags);
        s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        close(s.owner_fd);

        /* A policy naming a device the platform lacks is refused too. */
        fp = fopen(path, "we");
        fputs("{\"agents\": [{\"uid\": 0, \"domains\": [\"hw0\"]}],"
              " \"shares\": [{\"sharer\": \"hw0\", \"device\": \"ghost0\", \"peers\": [\"vm1\"], \"access\": \"rw\"}]}", fp);
        fclose(fp);
        assert_true(broker_reload_policy(f->b, path, &diags) < 0);
        assert_non_null(diag_find(&diags, "shares[0].device"));
        diag_list_clear(&diags);

        /* A good file takes effect: default deny for everything it no longer allows. */
        fp = fopen(path, "we");
        fputs("{\"agents\": [{\"uid\": 0, \"domains\": [\"hw0\"]}], \"shares\": []}", fp);
        fclose(fp);
        assert_int_equal(broker_reload_policy(f->b, path, &diags), 0);
        diag_list_clear(&diags);
        q = share(f, &ROOT, "nic0", 4096, "vm1", ACCESS_RW, &s, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
}

static void test_limits(void **state) {
        struct fixture *f = *state;
        struct broker_share_peer many[BROKER_MAX_PEERS + 1];
        struct broker_share_result s = {};
        struct broker_error err = {};
        char label[BROKER_MAX_LABEL + 2];
        int q;

        for (size_t i = 0; i < BROKER_MAX_PEERS + 1; i++)
                many[i] = (struct broker_share_peer) { "vm1", ACCESS_RO };
        q = broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "gpu0", .size = 4096, .peers = many, .n_peers = BROKER_MAX_PEERS + 1,
        }, &s, &err);
        expect_code(q, &err, BROKER_E_LIMIT);

        memset(label, 'x', sizeof(label) - 1);
        label[sizeof(label) - 1] = 0;
        q = broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = 4096, .label = label,
                .peers = (struct broker_share_peer[]) { { "vm1", ACCESS_RW } }, .n_peers = 1,
        }, &s, &err);
        expect_code(q, &err, BROKER_E_LIMIT);
        label[BROKER_MAX_LABEL] = 0;
        q = broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = 4096, .label = label,
                .peers = (struct broker_share_peer[]) { { "vm1", ACCESS_RW } }, .n_peers = 1,
        }, &s, &err);
        assert_int_equal(q, 0);
        close(s.owner_fd);

        q = broker_revoke(f->b, &ROOT, "hw0", s.region, BROKER_MAX_REVOKE_TIMEOUT_USEC + 1, false, NULL, &err);
        expect_code(q, &err, BROKER_E_INVALID);
}

struct audit_find {
        const char *action, *reason;
        unsigned n;
};

static int audit_find_one(void *userdata, const struct store_audit *a) {
        struct audit_find *w = userdata;
        w->n += strcmp(a->action, w->action) == 0 && a->reason && strstr(a->reason, w->reason);
        return 0;
}

/* Audit rows of this action whose reason contains reason. */
static unsigned audit_rows_with(struct fixture *f, const char *action, const char *reason) {
        struct audit_find w = { action, reason, 0 };
        assert_int_equal(broker_audit_foreach(f->b, &ADMIN, 0, 0, 0, false, audit_find_one, &w, NULL), 0);
        return w.n;
}

/* Bringing a revoke deadline forward is one recorded, audited change: it survives a restart. */
static void test_revoke_deadline_forward_is_durable(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        struct broker_attach_result a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        struct broker_region_info info;
        struct broker_error err = {};

        assert_int_equal(broker_revoke(f->b, &ROOT, "hw0", s.region, 60 * SEC, false, &info, &err), 0);
        assert_int_equal(info.state, REGION_REVOKING);
        assert_int_equal(info.deadline, f->now + 60 * SEC);
        /* A later deadline changes nothing. */
        assert_int_equal(broker_revoke(f->b, &ROOT, "hw0", s.region, 90 * SEC, false, &info, &err), 0);
        assert_int_equal(info.deadline, f->now + 60 * SEC);
        assert_int_equal(audit_rows_with(f, "revoke-deadline", "deadline brought forward"), 0);

        assert_int_equal(broker_revoke(f->b, &ADMIN, NULL, s.region, 5 * SEC, false, &info, &err), 0);
        assert_int_equal(info.deadline, f->now + 5 * SEC);
        assert_int_equal(audit_rows_with(f, "revoke-deadline", "deadline brought forward"), 1);

        broker_restart(f);
        assert_int_equal(broker_region_get(f->b, &ADMIN, s.region, &info, &err), 0);
        assert_int_equal(info.state, REGION_REVOKING);
        assert_int_equal(info.deadline, f->now + 5 * SEC);
        assert_int_equal(broker_next_deadline(f->b), f->now + 5 * SEC);
        close(a.fd);
        close(s.owner_fd);
}

static void test_verbs_return_state(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "gpu0", 4096, "vm1", ACCESS_RO);
        struct broker_attach_result a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        struct broker_region_info info = {};
        struct broker_error err = {};
        int q;

        /* A refused call leaves ret alone. */
        info.id = 42;
        q = broker_release(f->b, &VM2, "vm1", s.region, &info, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        assert_int_equal(info.id, 42);

        assert_int_equal(broker_release(f->b, &VM1, "vm1", s.region, &info, &err), 0);
        /* Its only peer is gone, so the region was taken down by the release. */
        assert_int_equal(info.id, s.region);
        assert_int_equal(info.state, REGION_RECLAIMED);
        assert_null(info.owner);
        close(a.fd);
        close(s.owner_fd);
}

static void test_share_undo(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 1 * MiB, "vm1", ACCESS_RW);
        struct broker_attach_result a = {};
        struct broker_error err = {};
        uint64_t bytes, regions;
        int q;

        /* Only a caller acting for the owner may take the share back. */
        q = broker_share_undo(f->b, &VM1, s.region, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        assert_int_equal(state_of(f, s.region), REGION_OFFERED);
        q = broker_share_undo(f->b, &ROOT, s.region + 100, &err);
        expect_code(q, &err, BROKER_E_NO_SUCH_REGION);

        assert_int_equal(broker_share_undo(f->b, &ROOT, s.region, &err), 0);
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
        broker_usage(f->b, "hw0", &bytes, &regions);
        assert_int_equal(bytes, 0);
        assert_int_equal(regions, 0);
        assert_int_equal(audit_rows_with(f, "revoke", "reply undelivered"), 1);
        assert_int_equal(audit_rows(f, "reclaim"), 1);
        /* Its token reaches nothing. */
        q = broker_attach(f->b, &VM1, "vm1", s.tokens[0].token, &a, &err);
        expect_code(q, &err, BROKER_E_BAD_TOKEN);
        /* The range is free again: the same placement succeeds. */
        struct broker_share_result again = share_ok(f, "nic0", 1 * MiB, "vm1", ACCESS_RW);
        assert_int_equal(again.base, s.base);
        q = broker_share_undo(f->b, &ROOT, s.region, &err);
        expect_code(q, &err, BROKER_E_NO_SUCH_REGION);
        close(again.owner_fd);
        close(s.owner_fd);
}

static void test_attach_undo(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "gpu0", 4096, "vm1", ACCESS_RO);
        struct broker_attach_result a;
        struct broker_error err = {};
        int q;

        /* Nothing attached yet: nothing to undo. */
        q = broker_attach_undo(f->b, &VM1, "vm1", s.region, &err);
        expect_code(q, &err, BROKER_E_BAD_STATE);
        a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        q = broker_attach_undo(f->b, &VM2, "vm1", s.region, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        q = broker_attach_undo(f->b, &VM2, "vm2", s.region, &err);
        expect_code(q, &err, BROKER_E_NO_SUCH_REGION);

        assert_int_equal(broker_attach_undo(f->b, &VM1, "vm1", s.region, &err), 0);
        assert_int_equal(audit_rows_with(f, "release", "reply undelivered"), 1);
        assert_int_equal(f->n_released, 1);
        /* Its only peer gave it back: the region went with it. */
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
        close(a.fd);
        close(s.owner_fd);
}

static int count_region(void *userdata, const struct broker_region_info *r) {
        (void) r;
        ++*(unsigned *) userdata;
        return 0;
}

static int collect_domain(void *userdata, const char *domain) {
        char *buf = userdata;
        strcat(buf, domain);
        strcat(buf, ",");
        return 0;
}

static void test_queries_see_what_the_caller_may(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        const struct broker_caller stranger = { .uid = 4242 };
        struct broker_region_info info = {};
        struct broker_route_info route = {};
        struct broker_stats st = {};
        struct broker_error err = {};
        unsigned n = 0;
        char domains[64] = "";
        int q;

        assert_int_equal(broker_region_get(f->b, &VM1, s.region, &info, &err), 0);
        assert_int_equal(broker_region_get(f->b, &ROOT, s.region, &info, &err), 0);
        q = broker_region_get(f->b, &VM2, s.region, &info, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        q = broker_region_get(f->b, &ADMIN, s.region + 1, &info, &err);
        expect_code(q, &err, BROKER_E_NO_SUCH_REGION);

        assert_int_equal(broker_region_foreach(f->b, &VM2, count_region, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(broker_region_foreach(f->b, &VM1, count_region, &n), 0);
        assert_int_equal(n, 1);

        q = broker_route_lookup(f->b, &VM2, "nic0", "vm1", &route, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        q = broker_route_lookup(f->b, &VM1, "nic0", "not a name", &route, &err);
        expect_code(q, &err, BROKER_E_INVALID);
        assert_int_equal(broker_route_lookup(f->b, &VM1, "nic0", "vm1", &route, &err), 0);
        assert_true(route.found);
        assert_int_equal(route.region, s.region);

        assert_true(broker_caller_acts_for(f->b, &VM1, "vm1"));
        assert_false(broker_caller_acts_for(f->b, &VM1, "vm2"));
        assert_true(broker_caller_acts_for(f->b, &ADMIN, "anything"));
        assert_int_equal(broker_caller_domains(f->b, &VM1, collect_domain, domains), 0);
        assert_string_equal(domains, "vm1,");
        assert_true(broker_uid_known(f->b, 1001));
        assert_false(broker_uid_known(f->b, 4242));
        assert_int_equal(broker_region_foreach(f->b, &stranger, count_region, &n), 0);
        assert_int_equal(n, 1);

        /* Admin queries are for admins. */
        q = broker_stats(f->b, &ROOT, &st, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        q = broker_audit_foreach(f->b, &VM1, 0, 0, 0, false, audit_count_one, &(struct audit_count) { "share", 0 },
                                 &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        assert_int_equal(broker_stats(f->b, &ADMIN, &st, &err), 0);
        assert_int_equal(st.regions_live, 1);
        assert_int_equal(st.regions_revoking, 0);
        assert_string_equal(broker_backend_name(f->b), "memfd");
        close(s.owner_fd);
}

struct domain_seen {
        char names[128];
        uint64_t hw0_bytes, hw0_max_regions, vm1_attached;
};

static int domain_seen_one(void *userdata, const struct broker_domain_info *d) {
        struct domain_seen *w = userdata;
        strcat(w->names, d->domain);
        strcat(w->names, ",");
        if (strcmp(d->domain, "hw0") == 0) {
                w->hw0_bytes = d->bytes_owned;
                w->hw0_max_regions = d->max_regions;
        }
        if (strcmp(d->domain, "vm1") == 0)
                w->vm1_attached = d->attached;
        return 0;
}

struct pool_seen {
        unsigned n_pools, n_nodes;
        uint64_t p0_used, node0_used, node1_size;
};

static int pool_seen_one(void *userdata, const struct broker_pool_info *p) {
        struct pool_seen *w = userdata;
        w->n_pools++;
        if (strcmp(p->pool, "p0") == 0) {
                w->p0_used = p->used;
                assert_int_equal(p->free, p->size - p->used);
                assert_int_equal(p->regions, 1);
        }
        return 0;
}

static int numa_seen_one(void *userdata, const struct broker_numa_info *n) {
        struct pool_seen *w = userdata;
        assert_int_equal(n->numa_node, w->n_nodes); /* ascending, each once */
        w->n_nodes++;
        if (n->numa_node == 0)
                w->node0_used = n->used;
        else
                w->node1_size = n->size;
        return 0;
}

static void test_admin_views(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 1 * MiB, "vm1", ACCESS_RW);
        struct broker_attach_result a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        struct domain_seen d = {};
        struct pool_seen p = {};
        struct broker_error err = {};

        assert_int_equal(broker_domain_foreach(f->b, &ADMIN, domain_seen_one, &d, &err), 0);
        assert_string_equal(d.names, "hw0,vm1,vm2,");
        assert_int_equal(d.hw0_bytes, 1 * MiB);
        assert_int_equal(d.hw0_max_regions, 4);
        assert_int_equal(d.vm1_attached, 1);
        assert_int_equal(broker_pool_foreach(f->b, &ADMIN, pool_seen_one, &p, &err), 0);
        assert_int_equal(broker_numa_foreach(f->b, &ADMIN, numa_seen_one, &p, &err), 0);
        assert_int_equal(p.n_pools, 2);
        assert_int_equal(p.n_nodes, 2);
        assert_int_equal(p.p0_used, 1 * MiB);
        assert_int_equal(p.node0_used, 1 * MiB);
        assert_int_equal(p.node1_size, 64 * MiB);
        expect_code(broker_domain_foreach(f->b, &ROOT, domain_seen_one, &d, &err), &err, BROKER_E_FORBIDDEN);
        expect_code(broker_pool_foreach(f->b, &VM1, pool_seen_one, &p, &err), &err, BROKER_E_FORBIDDEN);
        close(a.fd);
        close(s.owner_fd);
}

struct audit_seqs {
        int64_t seqs[16];
        unsigned n;
};

static int audit_seq_one(void *userdata, const struct store_audit *a) {
        struct audit_seqs *w = userdata;
        if (w->n < ELEMENTSOF(w->seqs))
                w->seqs[w->n] = a->seq;
        w->n++;
        return 0;
}

static void test_audit_newest(void **state) {
        struct fixture *f = *state;
        struct audit_seqs all = {}, tail = {}, head = {}, few = {};
        struct broker_error err = {};

        for (int i = 0; i < 3; i++) {
                struct broker_share_result s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
                close(s.owner_fd);
        }
        assert_int_equal(broker_audit_foreach(f->b, &ADMIN, 0, 0, 0, false, audit_seq_one, &all, &err), 0);
        assert_int_equal(all.n, 3);
        assert_int_equal(broker_audit_foreach(f->b, &ADMIN, 0, 0, 2, true, audit_seq_one, &tail, &err), 0);
        assert_int_equal(tail.n, 2);
        /* The newest two, oldest first. */
        assert_int_equal(tail.seqs[0], all.seqs[1]);
        assert_int_equal(tail.seqs[1], all.seqs[2]);
        assert_int_equal(broker_audit_foreach(f->b, &ADMIN, 0, 0, 2, false, audit_seq_one, &head, &err), 0);
        assert_int_equal(head.seqs[0], all.seqs[0]);
        assert_int_equal(head.seqs[1], all.seqs[1]);
        /* Fewer rows than the limit: all of them. */
        assert_int_equal(broker_audit_foreach(f->b, &ADMIN, all.seqs[0], 0, 10, true, audit_seq_one, &few, &err), 0);
        assert_int_equal(few.n, 2);
        assert_int_equal(few.seqs[0], all.seqs[1]);
}

static void test_backend_reports_domain_gone(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        struct broker_attach_result a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        struct broker_domain_gone_result res = { 7, 7 };
        struct broker_error err = {};
        int q;

        q = broker_domain_gone(f->b, &ROOT, "vm1", &res, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        assert_int_equal(res.peers_revoked, 7);

        /* The backend says so itself (libvirt's lifecycle events): audited as the backend. */
        backend_domain_gone(f->async, "vm1");
        assert_int_equal(f->n_revoked, 1);
        assert_int_equal(state_of(f, s.region), REGION_REVOKING); /* the async unmap is pending */
        assert_int_equal(audit_rows_with(f, "revoke-peer", "domain vm1 went away"), 1);

        assert_int_equal(broker_domain_gone(f->b, &ADMIN, "hw0", &res, &err), 0);
        assert_int_equal(res.peers_revoked, 0);
        assert_int_equal(res.regions_revoked, 0); /* already being revoked */
        close(a.fd);
        close(s.owner_fd);
}

static void test_event_names(void **state) {
        (void) state;
        for (int t = 0; t < _BROKER_EVENT_TYPE_MAX; t++)
                assert_non_null(broker_event_type_to_string(t));
        assert_string_equal(broker_event_type_to_string(BROKER_EVENT_UNPLUG_OVERDUE), "unplug overdue");
        assert_null(broker_event_type_to_string(_BROKER_EVENT_TYPE_MAX));
}

/* A child that waits to be killed, and a pidfd of it. */
static pid_t idle_child(int *ret_pidfd) {
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0)
                for (;;)
                        pause();
        *ret_pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        assert_true(*ret_pidfd >= 0);
        return pid;
}

static void kill_child(pid_t pid) {
        int status;

        assert_int_equal(kill(pid, SIGKILL), 0);
        assert_int_equal(waitpid(pid, &status, 0), pid);
}

/*
 * The broker keeps a pidfd of the process each fd went to (its own dup, watched). When a peer's
 * process exits its attachment is released; when an owner's does, its region is revoked.
 */
static void test_holder_process_exit(void **state) {
        struct fixture *f = *state;
        struct broker_caller owner = ROOT, peer = VM1;
        struct broker_share_result s;
        struct broker_attach_result a;
        pid_t owner_pid, peer_pid;

        skip_without_pidfds();
        owner_pid = idle_child(&owner.pidfd);
        peer_pid = idle_child(&peer.pidfd);

        /* Unknown to the broker: nothing happens. */
        assert_int_equal(broker_process_exited(f->b, owner.pidfd), 0);

        assert_int_equal(share(f, &owner, "nic0", 4096, "vm1", ACCESS_RW, &s, NULL), 0);
        a = attach_ok(f, &peer, "vm1", s.tokens[0].token);
        assert_int_equal(f->n_watched, 2);
        assert_true(f->watched[0] != owner.pidfd && f->watched[1] != peer.pidfd); /* dups, its own */
        kill_child(peer_pid);
        assert_int_equal(broker_process_exited(f->b, f->watched[1]), 0);
        assert_int_equal(audit_rows_with(f, "release", "holder process exited"), 1);
        /* Its only peer gone, the region was taken down, and every holder's pidfd let go. */
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
        assert_int_equal(f->n_unwatched, 2);
        close(a.fd);
        close(s.owner_fd);

        /* The owner's process exits: its region is revoked with the configured deadline. */
        assert_int_equal(share(f, &owner, "nic0", 4096, "vm1", ACCESS_RW, &s, NULL), 0);
        a = attach_ok(f, &VM1, "vm1", s.tokens[0].token); /* no process known for this one */
        assert_int_equal(f->n_watched, 3);
        kill_child(owner_pid);
        assert_int_equal(broker_process_exited(f->b, f->watched[2]), 0);
        assert_int_equal(state_of(f, s.region), REGION_REVOKING);
        assert_int_equal(audit_rows_with(f, "revoke", "owner process exited"), 1);
        assert_int_equal(f->n_recall, 1);
        assert_int_equal(f->n_unwatched, 3);
        close(a.fd);
        close(s.owner_fd);
        close(owner.pidfd);
        close(peer.pidfd);
}

/*
 * Holders whose fds went to one connection share one pidfd and one watch: one exit walks them
 * all. A connection that closes keeps its holders watched; one whose process exited, or a new
 * connection of the same process, gets a watch of its own.
 */
static void test_holder_process_per_connection(void **state) {
        struct fixture *f = *state;
        struct broker_caller owner = ROOT, peer = VM1;
        struct broker_share_result s[3];
        struct broker_attach_result a[3];
        pid_t owner_pid, peer_pid;

        skip_without_pidfds();
        owner_pid = idle_child(&owner.pidfd);
        peer_pid = idle_child(&peer.pidfd);
        owner.connection = 7;
        peer.connection = 8;

        for (int i = 0; i < 3; i++)
                assert_int_equal(share(f, &owner, "nic0", 4096, "vm1", ACCESS_RW, &s[i], NULL), 0);
        a[0] = attach_ok(f, &peer, "vm1", s[0].tokens[0].token);
        a[1] = attach_ok(f, &peer, "vm1", s[1].tokens[0].token);
        assert_int_equal(f->n_watched, 2); /* one a connection, not one a holder */

        /* The peer's connection closes: its holders stay, still watched through the same pidfd. */
        broker_connection_closed(f->b, peer.connection);
        broker_connection_closed(f->b, 12345); /* not known: nothing */
        assert_int_equal(f->n_unwatched, 0);
        /* The same process on a new connection: a watch of its own. */
        peer.connection = 9;
        a[2] = attach_ok(f, &peer, "vm1", s[2].tokens[0].token);
        assert_int_equal(f->n_watched, 3);

        /* The peer exits: the one exit releases both attachments made on the first connection. */
        kill_child(peer_pid);
        assert_int_equal(broker_process_exited(f->b, f->watched[1]), 0);
        assert_int_equal(audit_rows_with(f, "release", "holder process exited"), 2);
        assert_int_equal(state_of(f, s[0].region), REGION_RECLAIMED); /* their only peer gone */
        assert_int_equal(state_of(f, s[1].region), REGION_RECLAIMED);
        assert_int_equal(state_of(f, s[2].region), REGION_ACTIVE);
        assert_int_equal(f->n_unwatched, 1);
        assert_int_equal(broker_process_exited(f->b, f->watched[1]), 0); /* no longer the broker's */
        assert_int_equal(audit_rows_with(f, "release", "holder process exited"), 2);
        assert_int_equal(broker_process_exited(f->b, f->watched[2]), 0);
        assert_int_equal(audit_rows_with(f, "release", "holder process exited"), 3);
        assert_int_equal(state_of(f, s[2].region), REGION_RECLAIMED);
        assert_int_equal(f->n_unwatched, 2);

        /* The owner's connection still open: its process is still the one watched. */
        for (int i = 0; i < 3; i++)
                close(s[i].owner_fd);
        assert_int_equal(share(f, &owner, "nic0", 4096, "vm1", ACCESS_RW, &s[0], NULL), 0);
        assert_int_equal(share(f, &owner, "nic0", 4096, "vm1", ACCESS_RW, &s[1], NULL), 0);
        assert_int_equal(f->n_watched, 3);
        kill_child(owner_pid);
        assert_int_equal(broker_process_exited(f->b, f->watched[0]), 0);
        assert_int_equal(audit_rows_with(f, "revoke", "owner process exited"), 2);
        assert_int_equal(state_of(f, s[0].region), REGION_RECLAIMED); /* nothing attached */
        assert_int_equal(state_of(f, s[1].region), REGION_RECLAIMED);
        assert_int_equal(f->n_unwatched, 3);

        /* A request its connection still had in flight: a watch of its own, whose exit is seen. */
        s[2].owner_fd = -1;
        assert_int_equal(share(f, &owner, "nic0", 4096, "vm1", ACCESS_RW, &s[2], NULL), 0);
        assert_int_equal(f->n_watched, 4);
        assert_int_equal(broker_process_exited(f->b, f->watched[3]), 0);
        assert_int_equal(state_of(f, s[2].region), REGION_RECLAIMED);
        assert_int_equal(f->n_unwatched, 4);
        broker_connection_closed(f->b, owner.connection);
        assert_int_equal(f->n_unwatched, 4);

        for (int i = 0; i < 3; i++) {
                close(a[i].fd);
                broker_doorbells_close(&a[i].doorbells);
                close(s[i].owner_fd);
        }
        close(owner.pidfd);
        close(peer.pidfd);
}

/*
 * With an fd store, each holder's pidfd is kept there (holder-<region>-<domain>), survives the
 * broker, is taken back and watched at the next start for holders still mapped, and is dropped
 * when the broker lets the holder go. A name no mapped holder has is not taken.
 */
static void test_holder_pidfds_survive_a_restart(void **state) {
        struct fixture *f = *state;
        struct broker_caller owner = ROOT, peer = VM1;
        struct broker_share_result s;
        struct broker_attach_result a;
        char name[64];
        pid_t owner_pid, peer_pid;
        int owner_kept;

        skip_without_pidfds();
        owner_pid = idle_child(&owner.pidfd);
        peer_pid = idle_child(&peer.pidfd);

        f->with_store = true;
        broker_restart(f);
        assert_int_equal(share(f, &owner, "nic0", 4096, "vm1", ACCESS_RW, &s, NULL), 0);
        a = attach_ok(f, &peer, "vm1", s.tokens[0].token);
        snprintf(name, sizeof(name), "holder-%" PRIu64 "-vm1", s.region);
        assert_true(kept_index(f, name) >= 0);
        snprintf(name, sizeof(name), "holder-%" PRIu64 "-hw0", s.region);
        assert_true(kept_index(f, name) >= 0);
        /* Each an open file of its own (systemd keeps one fd per open file), not a dup. */
        owner_kept = kept_index(f, name);
        snprintf(name, sizeof(name), "holder-%" PRIu64 "-vm1", s.region);
        assert_int_equal(syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, f->kept[owner_kept].fd,
                                 f->kept[kept_index(f, name)].fd) != 0, 1);
        store_keep(f, "holder-999-vm1", f->kept[0].fd); /* no mapped holder has it */
        /* Two pidfds, the stray one, and the doorbells: 2 parties, 2 vectors, both directions. */
        assert_int_equal(f->n_kept, 3 + 4);

        f->n_watched = f->n_unwatched = 0;
        broker_restart(f);
        assert_int_equal(f->n_kept, 3 + 4); /* a stop forgets nothing */
        assert_int_equal(f->n_taken, 2 + 4);
        assert_int_equal(f->n_watched, 2);

        /* The peer of before the restart exits: seen, its attachment released, its pidfd dropped. */
        kill_child(peer_pid);
        for (unsigned i = 0; i < f->n_watched; i++)
                assert_int_equal(broker_process_exited(f->b, f->watched[i]), 0);
        assert_int_equal(audit_rows_with(f, "release", "holder process exited"), 1);
        snprintf(name, sizeof(name), "holder-%" PRIu64 "-vm1", s.region);
        assert_int_equal(kept_index(f, name), -1);
        /* Its only peer gone, the region is reclaimed: the owner's pidfd is dropped too, and the doorbells. */
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
        assert_int_equal(f->n_kept, 1);
        broker_doorbells_close(&a.doorbells);
        kill_child(owner_pid);
        (void) store_drop(f, "holder-999-vm1");
        close(a.fd);
        close(s.owner_fd);
        close(owner.pidfd);
        close(peer.pidfd);
}


/* ---- doorbells (core/doorbell.c) ---- */

static void bell_ring(int fd) {
        uint64_t one = 1;
        assert_int_equal(write(fd, &one, sizeof(one)), (ssize_t) sizeof(one));
}

/* Whether fd was rung (and reset it). An eventfd is readable as soon as write() returned. */
static bool bell_rung(int fd) {
        uint64_t n;
        return read(fd, &n, sizeof(n)) == (ssize_t) sizeof(n);
}

static unsigned kept_bells(struct fixture *f) {
        unsigned n = 0;
        for (unsigned i = 0; i < f->n_kept; i++)
                n += strncmp(f->kept[i].name, "bell-", 5) == 0;
        return n;
}

/* gpu0 to vm1 and vm2 (multi-peer, ro), with vectors (or the default when negative). */
static struct broker_share_result share_two(struct fixture *f, int vectors, struct broker_error *err, int *ret_q) {
        struct broker_share_peer peers[] = { { "vm1", ACCESS_RO }, { "vm2", ACCESS_RO } };
        struct broker_share_result res = { .owner_fd = -1 };

        *ret_q = broker_share(f->b, &ROOT, &(struct broker_share_request) {
                .owner = "hw0", .device = "gpu0", .size = 4096, .peers = peers, .n_peers = 2,
                .has_doorbells = vectors >= 0, .doorbells = vectors < 0 ? 0 : (unsigned) vectors,
        }, &res, err);
        return res;
}

static struct broker_doorbells bells_of(struct fixture *f, const struct broker_caller *c, const char *domain,
                                        uint64_t region) {
        struct broker_doorbells d = {};
        struct broker_error err = {};
        if (broker_region_doorbells(f->b, c, domain, region, &d, &err) < 0)
                fail_msg("region.doorbells of %s: %s", domain, err.message);
        return d;
}

static const struct broker_doorbell *bell_find(const struct broker_doorbells *d, const char *peer, unsigned v) {
        for (size_t i = 0; i < d->n; i++)
                if (strcmp(d->bells[i].peer, peer) == 0 && d->bells[i].vector == v)
                        return &d->bells[i];
        fail_msg("no doorbell with %s on %u", peer, v);
        return NULL;
}

static void close_all(struct broker_attach_result *a) {
        broker_doorbells_close(&a->doorbells);
        close(a->fd);
}

/* A backend with doorbells in the guests: vectors recorded and passed on, no eventfds anywhere. */
static void test_doorbells_in_guests(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s;
        struct broker_attach_result a;
        struct broker_doorbells d;
        struct broker_error err = {};
        int q;

        f->guest_bells = f->with_store = true;
        broker_restart(f);
        /* Without asking, a region has none there. */
        s = share_two(f, -1, &err, &q);
        assert_int_equal(q, 0);
        assert_int_equal(s.vectors, 0);
        s = share_two(f, BROKER_MAX_DOORBELL_VECTORS + 1, &err, &q);
        assert_int_equal(q, -EINVAL);
        s = share_two(f, 3, &err, &q);
        assert_int_equal(q, 0);
        assert_int_equal(s.vectors, 3);
        assert_int_equal(guest_bells_seen, 3); /* the backend made it with its vectors */
        guest_bells_seen = 0;
        assert_int_equal(broker_attach_fds(f->b, s.tokens[0].token), 0);
        a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        assert_int_equal(guest_bells_seen, 3);
        assert_int_equal(a.fd, -1);
        assert_int_equal(a.doorbells.vectors, 3);
        assert_int_equal(a.doorbells.n, 0);
        /* Each party's id in the guests' group, its own among them, owner first. */
        assert_true(a.doorbells.in_guests);
        assert_int_equal(a.doorbells.n_guests, 2);
        assert_string_equal(a.doorbells.guests[0].domain, "hw0");
        assert_int_equal(a.doorbells.guests[0].id, 0);
        assert_string_equal(a.doorbells.guests[1].domain, "vm1");
        assert_int_equal(a.doorbells.guests[1].id, 5);
        d = bells_of(f, &VM1, "vm1", s.region);
        assert_int_equal(d.vectors, 3);
        assert_int_equal(d.n, 0);
        assert_int_equal(d.n_guests, 2);
        assert_int_equal(f->n_joined, 1); /* the other parties still hear of it */
        assert_int_equal(kept_bells(f), 0);

        /* A restart makes nothing anew: no eventfds, no new generation. */
        broker_restart(f);
        d = bells_of(f, &VM1, "vm1", s.region);
        assert_int_equal(d.generation, 1);
        assert_int_equal(d.n, 0);
        assert_int_equal(audit_rows(f, "doorbells"), 0);

        /* What the backend turned away is audited against the region. */
        backend_refused(f->async, s.region, "pid 4242 uid 64055", "unexpected");
        assert_int_equal(audit_rows(f, "doorbell-refused"), 1);

        /* A backend at its limit of doorbell servers: limit_exceeded, and nothing recorded. */
        ((struct async_backend *) f->async)->bells_full = true;
        unsigned shares = audit_rows(f, "share");
        s = share_two(f, 2, &err, &q);
        assert_int_equal(q, -broker_code_errno(BROKER_E_LIMIT));
        assert_int_equal(err.code, BROKER_E_LIMIT);
        assert_non_null(strstr(err.message, "no room for another doorbell region"));
        assert_int_equal(audit_rows(f, "share"), shares);
        assert_int_equal(audit_rows(f, "revoke"), 0);
        /* Regions without doorbells still go. */
        s = share_two(f, -1, &err, &q);
        assert_int_equal(q, 0);
}

/* Pairs are made with every party when a peer attaches, kept in the store, and cut on release and undo. */
static void test_doorbells_join_and_cut(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s;
        struct broker_attach_result a1, a2;
        struct broker_doorbells owner;
        struct broker_region_info info;
        struct broker_error err = {};
        char name[64];
        int q;

        f->with_store = true;
        broker_restart(f);
        s = share_two(f, -1, &err, &q);
        assert_int_equal(q, 0);
        assert_int_equal(s.vectors, BROKER_DEFAULT_DOORBELL_VECTORS);
        assert_int_equal(kept_bells(f), 0);
        /* The mapping, and a send and a recv end with the owner on each vector. */
        assert_int_equal(broker_attach_fds(f->b, s.tokens[0].token), 1 + 2 * 2);
        assert_int_equal(broker_attach_fds(f->b, "no such token"), 0);

        a1 = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        assert_int_equal(a1.doorbells.n, 2);
        assert_int_equal(a1.doorbells.generation, 1);
        assert_string_equal(a1.doorbells.bells[0].peer, "hw0");
        assert_int_equal(f->n_joined, 1);
        assert_int_equal(f->last_parties, 1); /* the owner hears it */
        assert_int_equal(kept_bells(f), 4);
        snprintf(name, sizeof(name), "bell-%" PRIu64 "-1-0-1", s.region);
        assert_true(kept_index(f, name) >= 0);

        owner = bells_of(f, &ROOT, "hw0", s.region);
        assert_int_equal(owner.n, 2);
        bell_ring(bell_find(&a1.doorbells, "hw0", 0)->send_fd);
        assert_true(bell_rung(bell_find(&owner, "vm1", 0)->recv_fd));
        assert_false(bell_rung(bell_find(&owner, "vm1", 1)->recv_fd));
        bell_ring(bell_find(&owner, "vm1", 1)->send_fd);
        assert_true(bell_rung(bell_find(&a1.doorbells, "hw0", 1)->recv_fd));
        broker_doorbells_close(&owner);

        assert_int_equal(broker_attach_fds(f->b, s.tokens[1].token), 1 + 2 * 2 * 2);
        a2 = attach_ok(f, &VM2, "vm2", s.tokens[1].token);
        assert_int_equal(a2.doorbells.n, 4);
        assert_string_equal(a2.doorbells.bells[0].peer, "hw0"); /* owner first, then peers in share order */
        assert_string_equal(a2.doorbells.bells[2].peer, "vm1");
        assert_int_equal(f->n_joined, 2);
        assert_int_equal(f->last_parties, 2);
        assert_int_equal(kept_bells(f), 12);
        bell_ring(bell_find(&a2.doorbells, "vm1", 1)->send_fd);
        owner = bells_of(f, &VM1, "vm1", s.region);
        assert_true(bell_rung(bell_find(&owner, "vm2", 1)->recv_fd));
        assert_false(bell_rung(bell_find(&a1.doorbells, "hw0", 1)->recv_fd));
        broker_doorbells_close(&owner);
        assert_int_equal(broker_region_get(f->b, &ADMIN, s.region, &info, NULL), 0);
        assert_int_equal(info.bell_vectors, 2);
        assert_true(info.bell_parties[0] && info.bell_parties[1] && info.bell_parties[2]);

        /* Only a party gets them, and only for whom the caller acts. */
        q = broker_region_doorbells(f->b, &VM2, "vm1", s.region, &owner, &err);
        expect_code(q, &err, BROKER_E_FORBIDDEN);
        q = broker_region_doorbells(f->b, &VM2, "vm2", s.region + 1, &owner, &err);
        expect_code(q, &err, BROKER_E_NO_SUCH_REGION);

        /* vm2 releases: its pairs are cut (and leave the store), the others hear. */
        assert_int_equal(broker_release(f->b, &VM2, "vm2", s.region, NULL, &err), 0);
        assert_int_equal(f->n_left, 1);
        assert_string_equal(f->last_left, "vm2");
        assert_int_equal(f->last_parties, 2);
        assert_int_equal(kept_bells(f), 4);
        q = broker_region_doorbells(f->b, &VM2, "vm2", s.region, &owner, &err);
        expect_code(q, &err, BROKER_E_NO_SUCH_REGION);
        assert_int_equal(broker_region_get(f->b, &ADMIN, s.region, &info, NULL), 0);
        assert_false(info.bell_parties[2]);

        /* vm1's attach is taken back (its reply undelivered): the owner hears; then the region
         * goes, and the owner with it (nobody is left to hear). */
        assert_int_equal(broker_attach_undo(f->b, &VM1, "vm1", s.region, &err), 0);
        assert_int_equal(f->n_left, 2);
        assert_string_equal(f->last_left, "vm1");
        assert_int_equal(f->last_parties, 1);
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
        assert_int_equal(kept_bells(f), 0);
        close_all(&a1);
        close_all(&a2);
        close(s.owner_fd);
}

/* A forced departure cuts as a release does: a domain gone, a revoke's deadline. */
static void test_doorbells_cut_by_revoke(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s;
        struct broker_attach_result a1, a2;
        struct broker_doorbells d;
        struct broker_error err = {};
        int q;

        f->with_store = true;
        broker_restart(f);
        s = share_two(f, 1, &err, &q);
        assert_int_equal(q, 0);
        a1 = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        a2 = attach_ok(f, &VM2, "vm2", s.tokens[1].token);
        assert_int_equal(a2.doorbells.n, 2); /* one vector, with hw0 and vm1 */
        assert_int_equal(kept_bells(f), 6);

        assert_int_equal(broker_domain_gone(f->b, &ADMIN, "vm1", NULL, &err), 0);
        assert_int_equal(f->n_left, 1);
        assert_string_equal(f->last_left, "vm1");
        assert_int_equal(kept_bells(f), 2);
        q = broker_region_doorbells(f->b, &VM1, "vm1", s.region, &d, &err);
        expect_code(q, &err, BROKER_E_NO_SUCH_REGION);

        assert_int_equal(broker_revoke(f->b, &ROOT, "hw0", s.region, SEC, false, NULL, &err), 0);
        assert_int_equal(f->n_left, 1); /* recalled, still attached: still a party */
        d = bells_of(f, &ROOT, "hw0", s.region); /* the owner stays one while the region is revoked */
        assert_int_equal(d.n, 1);
        broker_doorbells_close(&d);
        f->now += SEC;
        assert_int_equal(broker_process_deadlines(f->b), 0);
        assert_int_equal(f->n_left, 2);
        assert_string_equal(f->last_left, "vm2");
        assert_int_equal(state_of(f, s.region), REGION_RECLAIMED);
        assert_int_equal(kept_bells(f), 0);
        close_all(&a1);
        close_all(&a2);
        close(s.owner_fd);
}

/* The owner's domain goes away: it is no party any more, its peers hear it; they stay parties while recalled. */
static void test_doorbells_owner_gone(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s;
        struct broker_attach_result a1, a2;
        struct broker_doorbells d;
        struct broker_error err = {};
        int q;

        s = share_two(f, -1, &err, &q);
        assert_int_equal(q, 0);
        a1 = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        a2 = attach_ok(f, &VM2, "vm2", s.tokens[1].token);
        assert_int_equal(broker_domain_gone(f->b, &ADMIN, "hw0", NULL, &err), 0);
        assert_int_equal(f->n_left, 1);
        assert_string_equal(f->last_left, "hw0");
        assert_int_equal(f->last_parties, 2);
        q = broker_region_doorbells(f->b, &ROOT, "hw0", s.region, &d, &err);
        expect_code(q, &err, BROKER_E_NO_SUCH_REGION);
        d = bells_of(f, &VM1, "vm1", s.region);
        assert_int_equal(d.n, 2); /* with vm2 only */
        assert_string_equal(d.bells[0].peer, "vm2");
        broker_doorbells_close(&d);
        close_all(&a1);
        close_all(&a2);
        close(s.owner_fd);
}

/* With a store the pairs come back as they were; without one they are made anew, a new generation. */
static void test_doorbells_restart(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s;
        struct broker_attach_result a;
        struct broker_doorbells owner, peer;

        f->with_store = true;
        broker_restart(f);
        s = share_ok(f, "nic0", 4096, "vm1", ACCESS_RW);
        a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        /* Its peers' names die with the broker: its ends are, in order, with hw0 on vectors 0 and 1. */
        f->n_taken = 0;
        broker_restart(f);
        assert_int_equal(f->n_taken, 4); /* the 4 eventfds; no pidfd was kept (no process here) */
        owner = bells_of(f, &ROOT, "hw0", s.region);
        assert_int_equal(owner.generation, 1);
        /* The very eventfds the peer holds from before the restart. */
        bell_ring(bell_find(&owner, "vm1", 0)->send_fd);
        assert_true(bell_rung(a.doorbells.bells[0].recv_fd));
        bell_ring(a.doorbells.bells[1].send_fd);
        assert_true(bell_rung(bell_find(&owner, "vm1", 1)->recv_fd));
        assert_int_equal(audit_rows_with(f, "doorbells", "made anew"), 0);

        /* No store: new pairs, a new generation (durable, audited); the old ends reach nobody. */
        f->with_store = false;
        broker_restart(f);
        peer = bells_of(f, &VM1, "vm1", s.region);
        assert_int_equal(peer.generation, 2);
        assert_int_equal(audit_rows_with(f, "doorbells", "made anew at start (the fd store kept none)"), 1);
        bell_ring(owner.bells[0].send_fd);
        bell_ring(a.doorbells.bells[0].send_fd);
        assert_false(bell_rung(bell_find(&peer, "hw0", 0)->recv_fd));
        broker_doorbells_close(&owner);
        owner = bells_of(f, &ROOT, "hw0", s.region);
        assert_false(bell_rung(bell_find(&owner, "vm1", 0)->recv_fd));
        bell_ring(bell_find(&owner, "vm1", 0)->send_fd);
        assert_true(bell_rung(bell_find(&peer, "hw0", 0)->recv_fd));
        /* The generation is durable: the next start without a store counts on from it. */
        broker_doorbells_close(&peer);
        broker_restart(f);
        peer = bells_of(f, &VM1, "vm1", s.region);
        assert_int_equal(peer.generation, 3);
        broker_doorbells_close(&peer);
        broker_doorbells_close(&owner);
        close_all(&a);
        close(s.owner_fd);
}

/* Bad vectors are refused and change nothing; a backend that hands no fds has no doorbells. */
static void test_doorbells_limits(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s;
        struct broker_error err = {};
        int q;

        unsigned live = 0;

        s = share_two(f, BROKER_MAX_DOORBELL_VECTORS + 1, &err, &q);
        expect_code(q, &err, BROKER_E_INVALID);
        assert_int_equal(broker_region_foreach(f->b, &ADMIN, count_region, &live), 0);
        assert_int_equal(live, 0);
        assert_int_equal(audit_rows_with(f, "share", ""), 0);
        s = share_two(f, BROKER_MAX_DOORBELL_VECTORS, &err, &q);
        assert_int_equal(q, 0);
        assert_int_equal(s.vectors, 4);
        assert_int_equal(broker_attach_fds(f->b, s.tokens[0].token), 1 + 2 * 4);

        /* Out of fds when the pairs are made: limit_exceeded, and the token is still unspent. */
        {
                struct broker_attach_result a;
                struct rlimit old, low;
                int fds[256];
                size_t n = 0;

                assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
                low = (struct rlimit) { .rlim_cur = 200, .rlim_max = old.rlim_max };
                assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
                while (n < ELEMENTSOF(fds) && (fds[n] = fcntl(0, F_DUPFD_CLOEXEC, 0)) >= 0)
                        n++;
                assert_true(n > 4);
                close(fds[--n]); /* room for some of the owner's 8 eventfds, not all */
                close(fds[--n]);
                q = broker_attach(f->b, &VM1, "vm1", s.tokens[0].token, &a, &err);
                while (n > 0)
                        close(fds[--n]);
                assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
                expect_code(q, &err, BROKER_E_LIMIT);
                assert_int_equal(f->n_joined, 0);
                a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
                assert_int_equal(a.doorbells.n, 4);
                close_all(&a);
        }
        close(s.owner_fd);
}

static void test_doorbells_need_fds(void **state) {
        struct fixture *f = *state;
        struct broker_share_result s;
        struct broker_attach_result a;
        struct broker_doorbells d;
        struct broker_error err = {};
        int q;

        s = share_two(f, 1, &err, &q);
        expect_code(q, &err, BROKER_E_INVALID);
        s = share_two(f, -1, &err, &q);
        assert_int_equal(q, 0);
        assert_int_equal(s.vectors, 0);
        a = attach_ok(f, &VM1, "vm1", s.tokens[0].token);
        assert_int_equal(a.doorbells.n, 0);
        assert_int_equal(f->n_joined, 0);
        d = bells_of(f, &ROOT, "hw0", s.region); /* a holder without doorbells: an empty list */
        assert_int_equal(d.n, 0);
        close(a.fd);
        close(s.owner_fd);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_share_attach_roundtrip, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ro_peer_cannot_map_writable, setup, teardown),
                cmocka_unit_test_setup_teardown(test_identity_and_policy_deny, setup, teardown),
                cmocka_unit_test_setup_teardown(test_multi_peer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_quota, setup, teardown),
                cmocka_unit_test_setup_teardown(test_token_reuse_and_wrong_domain, setup, teardown),
                cmocka_unit_test_setup_teardown(test_revoke_without_peers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_revoke_with_peer_release, setup, teardown),
                cmocka_unit_test_setup_teardown(test_deadline_forces_revoke_and_scrubs, setup, teardown),
                cmocka_unit_test_setup_teardown(test_force_revoke, setup, teardown),
                cmocka_unit_test_setup_teardown(test_all_peers_released_reclaims, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bounce_and_route_lookup, setup_shm, teardown),
                cmocka_unit_test_setup_teardown(test_route_after_takedowns_in_any_order, setup_shm, teardown),
                cmocka_unit_test_setup_teardown(test_restart_half_created_file, setup_shm, teardown),
                cmocka_unit_test_setup_teardown(test_bounce_no_reachable_pool_on_node, setup, teardown),
                cmocka_unit_test_setup_teardown(test_place_mode_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restart_keeps_live_regions, setup_shm, teardown),
                cmocka_unit_test_setup_teardown(test_restart_finishes_revoke, setup_shm, teardown),
                cmocka_unit_test_setup_teardown(test_restart_before_deadline_keeps_waiting, setup_shm, teardown),
                cmocka_unit_test_setup_teardown(test_async_unmap_quarantines, setup_async, teardown),
                cmocka_unit_test_setup_teardown(test_backend_failures_change_nothing, setup_async, teardown),
                cmocka_unit_test_setup_teardown(test_domain_gone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_policy_reload, setup, teardown),
                cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
                cmocka_unit_test_setup_teardown(test_revoke_deadline_forward_is_durable, setup, teardown),
                cmocka_unit_test_setup_teardown(test_holder_process_exit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_holder_process_per_connection, setup, teardown),
                cmocka_unit_test_setup_teardown(test_verbs_return_state, setup, teardown),
                cmocka_unit_test_setup_teardown(test_share_undo, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attach_undo, setup, teardown),
                cmocka_unit_test_setup_teardown(test_queries_see_what_the_caller_may, setup, teardown),
                cmocka_unit_test_setup_teardown(test_admin_views, setup, teardown),
                cmocka_unit_test_setup_teardown(test_audit_newest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_backend_reports_domain_gone, setup_async, teardown),
                cmocka_unit_test_setup_teardown(test_holder_pidfds_survive_a_restart, setup_shm, teardown),
                cmocka_unit_test_setup_teardown(test_doorbells_join_and_cut, setup, teardown),
                cmocka_unit_test_setup_teardown(test_doorbells_in_guests, setup_shm, teardown),
                cmocka_unit_test_setup_teardown(test_doorbells_cut_by_revoke, setup, teardown),
                cmocka_unit_test_setup_teardown(test_doorbells_owner_gone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_doorbells_restart, setup_shm, teardown),
                cmocka_unit_test_setup_teardown(test_doorbells_limits, setup, teardown),
                cmocka_unit_test_setup_teardown(test_doorbells_need_fds, setup_async, teardown),
                cmocka_unit_test_setup_teardown(test_takedown_waits_for_flush, setup, teardown),
                cmocka_unit_test_setup_teardown(test_slow_map_flushes_meanwhile, setup_async, teardown),
                cmocka_unit_test(test_event_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
