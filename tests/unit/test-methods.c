/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The RPC surface against a real broker (real platform and policy loaders, sqlite in a
 * temporary directory, the memfd backend), called the way the server calls it: one
 * methods_handle() per request with params parsed from JSON text. No sockets: notifications
 * go through a recording notify function instead of the server.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/backend-memfd.h"
#include "core/broker.h"
#include "daemon/methods.h"

#define MiB (UINT64_C(1) << 20)
#define SEC INT64_C(1000000)

/* Each caller is its own connection. */
static const struct rpc_caller ROOT = { .connection = 1, .uid = 0 };     /* acts for hw0 */
static const struct rpc_caller VM1 = { .connection = 2, .uid = 1000 };   /* acts for vm1 */
static const struct rpc_caller VM2 = { .connection = 3, .uid = 1001 };   /* acts for vm2 */
static const struct rpc_caller ADMIN = { .connection = 4, .uid = 0, .admin = true };
static const struct rpc_caller NOBODY = { .connection = 5, .uid = 4242 }; /* acts for nothing */
static const struct rpc_caller VM3 = { .connection = 6, .uid = 1002 };   /* vm3 once the new policy is in */

/* pool p0: 64MiB at 1GiB, node 0, 4KiB granule, reachable by nic0 (32-bit) and gpu0.
 * pool p1: 64MiB at 8GiB, node 1, 2MiB granule, reachable by gpu0 only. */
static const char *platform_text =
        "{\"memory\": [{\"name\": \"bank0\", \"base\": 0, \"size\": \"8GiB\", \"numa_node\": 0},"
        "              {\"name\": \"bank1\", \"base\": \"8GiB\", \"size\": \"8GiB\", \"numa_node\": 1}],"
        " \"pools\": [{\"name\": \"p0\", \"base\": \"1GiB\", \"size\": \"64MiB\", \"numa_node\": 0,"
        "              \"granule\": \"4KiB\", \"backing\": {\"kind\": \"memfd\"}},"
        "            {\"name\": \"p1\", \"base\": \"8GiB\", \"size\": \"64MiB\", \"numa_node\": 1,"
        "              \"granule\": \"2MiB\", \"backing\": {\"kind\": \"memfd\"}}],"
        " \"devices\": [{\"name\": \"nic0\", \"owner\": \"hw0\", \"dma_mask_bits\": 32},"
        "             {\"name\": \"gpu0\", \"owner\": \"hw0\", \"dma_mask_bits\": 64}]}";

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

/* The same, plus uid 1002 acting for vm3. */
static const char *policy_text_vm3 =
        "{\"agents\": [{\"uid\": 0, \"domains\": [\"hw0\"]},"
        "             {\"uid\": 1000, \"domains\": [\"vm1\"]},"
        "             {\"uid\": 1001, \"domains\": [\"vm2\"]},"
        "             {\"uid\": 1002, \"domains\": [\"vm3\"]}],"
        " \"shares\": [{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"rw\"}]}";

/* Parses, but names a device the platform lacks. */
static const char *policy_text_bad =
        "{\"agents\": [{\"uid\": 1003, \"domains\": [\"vm4\"]}],"
        " \"shares\": [{\"sharer\": \"hw0\", \"device\": \"nope0\", \"peers\": [\"vm4\"], \"access\": \"rw\"}]}";

#define MAX_NOTES 64

struct note {
        uint64_t connection;
        char method[32];
        char *params; /* JSON text */
};

struct fixture {
        char dir[64];
        char db[128];
        char policy[128];
        int64_t now;
        struct methods *m;
        struct broker *b;
        struct note notes[MAX_NOTES];
        size_t n_notes;
        uint64_t failing_connection; /* notify answers -ENOBUFS for it */
        unsigned n_notify_calls;
};

/* ---- fixture ---- */

static int64_t fake_clock(void *userdata) {
        return ((struct fixture *) userdata)->now;
}

static int record_notify(void *userdata, uint64_t connection, const char *method, struct json_object *params) {
        struct fixture *f = userdata;
        struct note *n;

        f->n_notify_calls++;
        if (connection == f->failing_connection)
                return -ENOBUFS;
        assert_true(f->n_notes < MAX_NOTES);
        n = &f->notes[f->n_notes++];
        n->connection = connection;
        snprintf(n->method, sizeof(n->method), "%s", method);
        n->params = strdup(json_object_to_json_string_ext(params, JSON_C_TO_STRING_PLAIN));
        assert_non_null(n->params);
        return 0;
}

static void notes_clear(struct fixture *f) {
        for (size_t i = 0; i < f->n_notes; i++)
                free(f->notes[i].params);
        f->n_notes = 0;
}

static unsigned notes_count(struct fixture *f, uint64_t connection, const char *method) {
        unsigned n = 0;
        for (size_t i = 0; i < f->n_notes; i++)
                n += f->notes[i].connection == connection && strcmp(f->notes[i].method, method) == 0;
        return n;
}

static const struct note *note_find(struct fixture *f, uint64_t connection, const char *method) {
        for (size_t i = 0; i < f->n_notes; i++)
                if (f->notes[i].connection == connection && strcmp(f->notes[i].method, method) == 0)
                        return &f->notes[i];
        return NULL;
}

static void write_file(const char *path, const char *text) {
        FILE *fp = fopen(path, "we");
        assert_non_null(fp);
        assert_true(fputs(text, fp) >= 0);
        assert_int_equal(fclose(fp), 0);
}

static int setup_with(void **state, bool with_policy_path) {
        struct fixture *f = calloc(1, sizeof(*f));
        struct diag_list diags = DIAG_LIST_INIT;
        struct backend *memfd = NULL;
        struct broker_error err = {};
        struct broker_config cfg = {};

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/brokerd-methods-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->db, sizeof(f->db), "%s/brokerd.db", f->dir);
        snprintf(f->policy, sizeof(f->policy), "%s/policy.json", f->dir);
        write_file(f->policy, policy_text);
        f->now = 1700000000 * SEC;

        assert_int_equal(methods_new(with_policy_path ? f->policy : NULL, &f->m), 0);
        methods_set_server(f->m, NULL);
        methods_set_notify(f->m, record_notify, f);

        assert_int_equal(backend_memfd_new(&memfd), 0);
        cfg = (struct broker_config) {
                .db_path = f->db, .backend = memfd, .clock = fake_clock, .clock_userdata = f,
                .on_event = methods_on_event, .event_userdata = f->m,
        };
        if (platform_load_string(platform_text, &cfg.platform, &diags) < 0)
                diag_list_print(&diags, "platform", stderr);
        if (policy_load_file(f->policy, &cfg.policy, &diags) < 0)
                diag_list_print(&diags, "policy", stderr);
        diag_list_clear(&diags);
        assert_non_null(cfg.platform);
        assert_non_null(cfg.policy);
        if (broker_new(&cfg, &f->b, &err) < 0)
                fail_msg("broker_new: %s", err.message);
        methods_set_broker(f->m, f->b);
        *state = f;
        return 0;
}

static int setup(void **state) {
        return setup_with(state, true);
}

static int setup_no_policy_path(void **state) {
        return setup_with(state, false);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        return remove(path);
}

static int teardown(void **state) {
        struct fixture *f = *state;

        broker_free(f->b);
        methods_free(f->m);
        notes_clear(f);
        assert_int_equal(nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS), 0);
        free(f);
        return 0;
}

/* ---- calling ---- */

struct reply {
        int q;
        struct json_object *result;
        struct rpc_error err;
        struct rpc_reply_fds fds;
};

static void reply_clear(struct reply *r) {
        json_object_put(r->result);
        json_object_put(r->err.data);
        for (size_t i = 0; i < r->fds.n; i++)
                close(r->fds.fds[i]);
        *r = (struct reply) {};
}

static struct reply call(struct fixture *f, const struct rpc_caller *c, const char *method, const char *params_text) {
        struct json_object *params = NULL;
        struct reply r = {};

        if (params_text) {
                params = json_tokener_parse(params_text);
                if (!params)
                        fail_msg("bad test JSON: %s", params_text);
        }
        r.q = methods_handle(f->m, c, method, params, &r.fds, &r.result, &r.err);
        json_object_put(params);
        /* As a transport that keeps the fds does: what the broker lent, dup'ed. */
        assert_int_equal(rpc_reply_fds_pin(&r.fds), 0);
        if (r.q >= 0)
                assert_non_null(r.result);
        else
                assert_null(r.result);
        return r;
}

/* Succeeds, or fails the test with the error; the result is the caller's (put it). */
static struct json_object *call_ok(struct fixture *f, const struct rpc_caller *c, const char *method,
                                   const char *params_text) {
        struct reply r = call(f, c, method, params_text);
        if (r.q < 0)
                fail_msg("%s %s: %d %s: %s", method, params_text ?: "", r.err.code, r.err.name, r.err.message);
        for (size_t i = 0; i < r.fds.n; i++)
                close(r.fds.fds[i]);
        return r.result;
}

/* A brokerd error: code 1000 + n with data.name; a standard one: the code and an empty name. */
static void expect_fail(struct fixture *f, const struct rpc_caller *c, const char *method, const char *params_text,
                        int code, const char *name) {
        struct reply r = call(f, c, method, params_text);
        if (r.q >= 0)
                fail_msg("%s %s succeeded: %s", method, params_text ?: "",
                         json_object_to_json_string(r.result));
        if (r.err.code != code || strcmp(r.err.name, name) != 0)
                fail_msg("%s %s: expected %d %s, got %d %s: %s", method, params_text ?: "", code, name,
                         r.err.code, r.err.name, r.err.message);
        assert_int_equal(r.fds.n, 0);
        reply_clear(&r);
}

/* -32602 naming the member, in data.member. */
static void expect_invalid_params(struct fixture *f, const struct rpc_caller *c, const char *method,
                                  const char *params_text, const char *member) {
        struct reply r = call(f, c, method, params_text);
        struct json_object *v;

        if (r.q >= 0)
                fail_msg("%s %s succeeded", method, params_text);
        if (r.err.code != RPC_INVALID_PARAMS)
                fail_msg("%s %s: expected -32602, got %d %s: %s", method, params_text, r.err.code, r.err.name,
                         r.err.message);
        assert_non_null(r.err.data);
        assert_true(json_object_object_get_ex(r.err.data, "member", &v));
        assert_string_equal(json_object_get_string(v), member);
        assert_non_null(strstr(r.err.message, member));
        reply_clear(&r);
}

static struct json_object *get(struct json_object *o, const char *key) {
        struct json_object *v = NULL;
        if (!json_object_object_get_ex(o, key, &v))
                fail_msg("no member %s in %s", key, json_object_to_json_string(o));
        return v;
}

static const char *get_str(struct json_object *o, const char *key) {
        struct json_object *v = get(o, key);
        assert_true(json_object_is_type(v, json_type_string));
        return json_object_get_string(v);
}

static int64_t get_int(struct json_object *o, const char *key) {
        struct json_object *v = get(o, key);
        assert_true(json_object_is_type(v, json_type_int));
        return json_object_get_int64(v);
}

static bool is_null(struct json_object *o, const char *key) {
        return get(o, key) == NULL;
}

static size_t get_len(struct json_object *o, const char *key) {
        struct json_object *v = get(o, key);
        assert_true(json_object_is_type(v, json_type_array));
        return json_object_array_length(v);
}

static struct json_object *get_idx(struct json_object *o, const char *key, size_t i) {
        struct json_object *v = get(o, key);
        assert_true(i < json_object_array_length(v));
        return json_object_array_get_idx(v, i);
}

struct shared {
        uint64_t region;
        char token[2][64];
        int fd;
};

/* hw0 shares on device with one peer; returns the region, its token, and the owner's fd. */
static struct shared share_ok(struct fixture *f, const char *device, const char *size, const char *peer,
                              const char *access) {
        struct shared s = { .fd = -1 };
        struct reply r;
        char *params;

        assert_true(asprintf(&params, "{\"owner\": \"hw0\", \"device\": \"%s\", \"size\": \"%s\","
                                      " \"peers\": [{\"domain\": \"%s\", \"access\": \"%s\"}]}",
                             device, size, peer, access) > 0);
        r = call(f, &ROOT, "region.share", params);
        free(params);
        if (r.q < 0)
                fail_msg("share: %s: %s", r.err.name, r.err.message);
        assert_string_equal(get_str(r.result, "placement"), "region");
        s.region = (uint64_t) get_int(r.result, "region");
        snprintf(s.token[0], sizeof(s.token[0]), "%s", get_str(get_idx(r.result, "tokens", 0), "token"));
        assert_int_equal(r.fds.n, 1);
        assert_int_equal(get_int(r.result, "fd"), 0);
        s.fd = r.fds.fds[0];
        r.fds.n = 0;
        reply_clear(&r);
        return s;
}

/* Attaches domain with token as caller; returns the peer's fd. */
static int attach_ok(struct fixture *f, const struct rpc_caller *c, const char *domain, const char *token) {
        struct reply r;
        char params[256];
        int fd;

        snprintf(params, sizeof(params), "{\"domain\": \"%s\", \"token\": \"%s\"}", domain, token);
        r = call(f, c, "region.attach", params);
        if (r.q < 0)
                fail_msg("attach: %s: %s", r.err.name, r.err.message);
        /* The mapping, then a send and a recv end per doorbell (closed here). */
        assert_int_equal(r.fds.n, 1 + 2 * get_len(r.result, "doorbells"));
        assert_int_equal(get_int(r.result, "fd"), 0);
        fd = fcntl(r.fds.fds[0], F_DUPFD_CLOEXEC, 3);
        assert_true(fd >= 0);
        reply_clear(&r);
        return fd;
}

/* hw0 shares 4KiB of gpu0 with vm1 and vm2, read-only; no owner fd is kept. */
static struct shared share_two_peers(struct fixture *f) {
        struct shared s = { .fd = -1 };
        struct reply r;

        r = call(f, &ROOT, "region.share",
                 "{\"owner\": \"hw0\", \"device\": \"gpu0\", \"size\": 4096,"
                 " \"peers\": [{\"domain\": \"vm1\", \"access\": \"ro\"}, {\"domain\": \"vm2\", \"access\": \"ro\"}]}");
        assert_int_equal(r.q, 0);
        s.region = (uint64_t) get_int(r.result, "region");
        for (size_t i = 0; i < 2; i++)
                snprintf(s.token[i], sizeof(s.token[i]), "%s", get_str(get_idx(r.result, "tokens", i), "token"));
        reply_clear(&r);
        return s;
}

static const char *state_of(struct fixture *f, uint64_t region) {
        static char buf[32];
        struct reply r;
        char params[64];

        snprintf(params, sizeof(params), "{\"region\": %" PRIu64 "}", region);
        r = call(f, &ADMIN, "region.get", params);
        if (r.q < 0) {
                assert_string_equal(r.err.name, "no_such_region");
                reply_clear(&r);
                return "gone";
        }
        snprintf(buf, sizeof(buf), "%s", get_str(r.result, "state"));
        reply_clear(&r);
        return buf;
}

static size_t list_count(struct fixture *f, const struct rpc_caller *c, const char *params) {
        struct json_object *o = call_ok(f, c, "region.list", params);
        size_t n = get_len(o, "regions");
        json_object_put(o);
        return n;
}

#define E(n) (RPC_BROKER_CODE_BASE + (n))

/* ---- region.share ---- */

static void test_share_region(void **state) {
        struct fixture *f = *state;
        struct reply r;
        struct json_object *t;
        char *owner;

        r = call(f, &ROOT, "region.share",
                 "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": \"1MiB\", \"label\": \"rx ring\","
                 " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}");
        assert_int_equal(r.q, 0);
        assert_string_equal(get_str(r.result, "placement"), "region");
        assert_int_equal(get_int(r.result, "region"), 1);
        assert_string_equal(get_str(r.result, "base"), "0x40000000");
        assert_int_equal(get_int(r.result, "size"), 1 * MiB);
        assert_int_equal(get_int(r.result, "alignment"), 4096);
        assert_string_equal(get_str(r.result, "pool"), "p0");
        assert_int_equal(get_len(r.result, "tokens"), 1);
        t = get_idx(r.result, "tokens", 0);
        assert_string_equal(get_str(t, "domain"), "vm1");
        assert_int_equal(strlen(get_str(t, "token")), 32);
        assert_int_equal(get_int(r.result, "fd"), 0);
        assert_int_equal(r.fds.n, 1);

        /* The fd is the region, writable by its owner. */
        owner = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_SHARED, r.fds.fds[0], 0);
        assert_ptr_not_equal(owner, MAP_FAILED);
        assert_int_equal(owner[0], 0); /* scrubbed */
        strcpy(owner, "hello");
        munmap(owner, MiB);
        reply_clear(&r);

        /* Place mode: a hex base, size as a plain integer; the label comes back in region.get. */
        r = call(f, &ROOT, "region.share",
                 "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 8192, \"base\": \"0x40200000\","
                 " \"alignment\": \"4KiB\", \"peers\": [{\"domain\": \"vm2\", \"access\": \"ro\"}]}");
        assert_int_equal(r.q, 0);
        assert_string_equal(get_str(r.result, "base"), "0x40200000");
        assert_int_equal(get_int(r.result, "size"), 8192);
        reply_clear(&r);
        /* ... and a misaligned one is refused with its own code. */
        expect_fail(f, &ROOT, "region.share",
                    "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 8192, \"base\": \"0x40300001\","
                    " \"peers\": [{\"domain\": \"vm2\", \"access\": \"ro\"}]}",
                    E(BROKER_E_NOT_ALIGNED), "not_aligned");

        /* A multi-peer share on gpu0 pinned to node 1: p1, 2MiB granule, one token per peer. */
        r = call(f, &ADMIN, "region.share",
                 "{\"owner\": \"hw0\", \"device\": \"gpu0\", \"size\": \"0x1000\", \"numa_node\": 1,"
                 " \"peers\": [{\"domain\": \"vm1\", \"access\": \"ro\"}, {\"domain\": \"vm2\", \"access\": \"ro\"}]}");
        assert_int_equal(r.q, 0);
        assert_string_equal(get_str(r.result, "pool"), "p1");
        assert_string_equal(get_str(r.result, "base"), "0x200000000");
        assert_int_equal(get_int(r.result, "size"), 2 * MiB);
        assert_int_equal(get_len(r.result, "tokens"), 2);
        assert_string_equal(get_str(get_idx(r.result, "tokens", 1), "domain"), "vm2");
        reply_clear(&r);

        struct json_object *o = call_ok(f, &ADMIN, "region.get", "{\"region\": 1}");
        assert_string_equal(get_str(o, "label"), "rx ring");
        json_object_put(o);
        o = call_ok(f, &ADMIN, "region.get", "{\"region\": 2}");
        assert_true(is_null(o, "label"));
        json_object_put(o);
}

static void test_share_bounce(void **state) {
        struct fixture *f = *state;
        struct reply r;

        /* nic0 is 32-bit: nothing it reaches lies on node 1. */
        r = call(f, &ROOT, "region.share",
                 "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096, \"numa_node\": 1,"
                 " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}");
        assert_int_equal(r.q, 0);
        assert_string_equal(get_str(r.result, "placement"), "bounce");
        assert_non_null(strstr(get_str(r.result, "reason"), "NUMA node 1"));
        assert_false(json_object_object_get_ex(r.result, "fd", NULL));
        assert_false(json_object_object_get_ex(r.result, "region", NULL));
        assert_int_equal(r.fds.n, 0);
        reply_clear(&r);
        assert_int_equal(list_count(f, &ADMIN, NULL), 0);
}

static void test_share_errors(void **state) {
        struct fixture *f = *state;
        struct json_object *o;
        char params[4096];
        size_t k;

#define SHARE(extra) "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096," \
                     " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]" extra "}"
        /* uid 1000 acts for vm1, not for the owner hw0; nobody acts for anything. */
        expect_fail(f, &VM1, "region.share", SHARE(""), E(BROKER_E_FORBIDDEN), "forbidden");
        expect_fail(f, &NOBODY, "region.share", SHARE(""), E(BROKER_E_FORBIDDEN), "forbidden");
        /* Structure: unknown members, types, missing members. */
        expect_invalid_params(f, &ROOT, "region.share", SHARE(", \"colour\": \"red\""), "colour");
        expect_invalid_params(f, &ROOT, "region.share",
                              "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": true,"
                              " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}", "size");
        expect_invalid_params(f, &ROOT, "region.share",
                              "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": \"2MiX\","
                              " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}", "size");
        expect_invalid_params(f, &ROOT, "region.share",
                              "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": -4096,"
                              " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}", "size");
        expect_invalid_params(f, &ROOT, "region.share",
                              "{\"owner\": \"hw0\", \"device\": \"nic0\","
                              " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}", "size");
        expect_invalid_params(f, &ROOT, "region.share",
                              "{\"owner\": 7, \"device\": \"nic0\", \"size\": 4096,"
                              " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}", "owner");
        expect_invalid_params(f, &ROOT, "region.share",
                              "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096, \"peers\": {}}", "peers");
        expect_invalid_params(f, &ROOT, "region.share",
                              "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096,"
                              " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rx\"}]}", "peers[0].access");
        expect_invalid_params(f, &ROOT, "region.share",
                              "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096,"
                              " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\", \"extra\": 1}]}",
                              "peers[0].extra");
        expect_invalid_params(f, &ROOT, "region.share",
                              "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096,"
                              " \"peers\": [{\"access\": \"rw\"}]}", "peers[0].domain");
        expect_invalid_params(f, &ROOT, "region.share", SHARE(", \"label\": 5"), "label");
        expect_invalid_params(f, &ROOT, "region.share", SHARE(", \"numa_node\": 1.5"), "numa_node");
        expect_invalid_params(f, &ROOT, "region.share", "[1, 2]", "params");
        /* Values: malformed names, out of range numbers, limits. */
        expect_fail(f, &ROOT, "region.share",
                    "{\"owner\": \"-hw0\", \"device\": \"nic0\", \"size\": 4096,"
                    " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}",
                    E(BROKER_E_INVALID), "invalid_request");
        expect_fail(f, &ROOT, "region.share",
                    "{\"owner\": \"hw\\u00000\", \"device\": \"nic0\", \"size\": 4096,"
                    " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}",
                    E(BROKER_E_INVALID), "invalid_request");
        expect_fail(f, &ROOT, "region.share", SHARE(", \"numa_node\": \"0x100000000\""), E(BROKER_E_INVALID),
                    "invalid_request");
        expect_fail(f, &ROOT, "region.share", SHARE(", \"alignment\": 3"), E(BROKER_E_INVALID), "invalid_request");
        expect_fail(f, &ROOT, "region.share",
                    "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 0,"
                    " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}",
                    E(BROKER_E_INVALID), "invalid_request");
        snprintf(params, sizeof(params), SHARE(", \"label\": \"%0129d\""), 0);
        expect_fail(f, &ROOT, "region.share", params, E(BROKER_E_LIMIT), "limit_exceeded");
        k = (size_t) snprintf(params, sizeof(params),
                              "{\"owner\": \"hw0\", \"device\": \"gpu0\", \"size\": 4096, \"peers\": [");
        for (int i = 0; i < BROKER_MAX_PEERS + 1; i++)
                k += (size_t) snprintf(params + k, sizeof(params) - k, "%s{\"domain\": \"vm%d\", \"access\": \"ro\"}",
                                       i ? ", " : "", i);
        snprintf(params + k, sizeof(params) - k, "]}");
        expect_fail(f, &ROOT, "region.share", params, E(BROKER_E_LIMIT), "limit_exceeded");
        /* Broker refusals come through with their codes. */
        expect_fail(f, &ROOT, "region.share",
                    "{\"owner\": \"hw0\", \"device\": \"nope0\", \"size\": 4096,"
                    " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}",
                    E(BROKER_E_UNKNOWN_DEVICE), "unknown_device");
        expect_fail(f, &ROOT, "region.share",
                    "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": \"33MiB\","
                    " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}",
                    E(BROKER_E_TOO_LARGE), "region_too_large");
        expect_fail(f, &ROOT, "region.share",
                    "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096,"
                    " \"peers\": [{\"domain\": \"vm2\", \"access\": \"rw\"}]}",
                    E(BROKER_E_FORBIDDEN), "forbidden");
        expect_fail(f, &ROOT, "region.share",
                    "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096, \"peers\": []}",
                    E(BROKER_E_INVALID), "invalid_request");
#undef SHARE

        /* None of it left a trace. */
        assert_int_equal(list_count(f, &ADMIN, NULL), 0);
        o = call_ok(f, &ADMIN, "admin.audit", NULL);
        assert_int_equal(get_len(o, "entries"), 0);
        json_object_put(o);
        /* The allowed case still works. */
        close(share_ok(f, "nic0", "4KiB", "vm1", "rw").fd);
        assert_int_equal(list_count(f, &ADMIN, NULL), 1);
}

static void test_fd_room(void **state) {
        struct fixture *f = *state;
        struct json_object *params = json_tokener_parse(
                "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096,"
                " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}");
        struct json_object *result = NULL;
        struct rpc_reply_fds fds = { .n = RPC_MAX_FDS_PER_LINE };
        struct rpc_error err = {};

        /* A line with no room for the region's fd is refused before anything is shared. */
        assert_true(methods_handle(f->m, &ROOT, "region.share", params, &fds, &result, &err) < 0);
        assert_int_equal(err.code, E(BROKER_E_LIMIT));
        assert_string_equal(err.name, "limit_exceeded");
        assert_null(result);
        assert_int_equal(fds.n, RPC_MAX_FDS_PER_LINE);
        assert_int_equal(list_count(f, &ADMIN, NULL), 0);

        /* A transport that passes no fds gets the result without one. */
        err = (struct rpc_error) {};
        assert_int_equal(methods_handle(f->m, &ROOT, "region.share", params, NULL, &result, &err), 0);
        assert_string_equal(get_str(result, "placement"), "region");
        assert_false(json_object_object_get_ex(result, "fd", NULL));
        json_object_put(result);
        json_object_put(params);
        assert_int_equal(list_count(f, &ADMIN, NULL), 1);
}

/* ---- region.attach ---- */

static void test_attach(void **state) {
        struct fixture *f = *state;
        struct shared rw = share_ok(f, "nic0", "1MiB", "vm1", "rw");
        struct shared ro = share_ok(f, "nic0", "4KiB", "vm2", "ro");
        struct reply r;
        char params[256], *owner, *peer;
        void *p;
        int fd;

        /* Wrong callers and wrong tokens first: none of them spends the token. */
        snprintf(params, sizeof(params), "{\"domain\": \"vm1\", \"token\": \"%s\"}", rw.token[0]);
        expect_fail(f, &VM2, "region.attach", params, E(BROKER_E_FORBIDDEN), "forbidden");
        snprintf(params, sizeof(params), "{\"domain\": \"vm2\", \"token\": \"%s\"}", rw.token[0]);
        expect_fail(f, &ADMIN, "region.attach", params, E(BROKER_E_WRONG_DOMAIN), "wrong_domain");
        expect_fail(f, &VM1, "region.attach", "{\"domain\": \"vm1\", \"token\": \"00000000000000000000000000000000\"}",
                    E(BROKER_E_BAD_TOKEN), "invalid_token");
        expect_fail(f, &VM1, "region.attach", "{\"domain\": \"vm1\", \"token\": \"short\"}", E(BROKER_E_BAD_TOKEN),
                    "invalid_token");
        snprintf(params, sizeof(params), "{\"domain\": \"vm1\", \"token\": \"%065d\"}", 0);
        expect_fail(f, &VM1, "region.attach", params, E(BROKER_E_LIMIT), "limit_exceeded");
        expect_invalid_params(f, &VM1, "region.attach", "{\"domain\": \"vm1\", \"token\": 12}", "token");
        expect_invalid_params(f, &VM1, "region.attach", "{\"domain\": \"vm1\"}", "token");
        expect_invalid_params(f, &VM1, "region.attach", "{\"domain\": \"vm1\", \"token\": \"x\", \"fd\": 0}", "fd");

        r = call(f, &VM1, "region.attach", (snprintf(params, sizeof(params),
                 "{\"domain\": \"vm1\", \"token\": \"%s\"}", rw.token[0]), params));
        assert_int_equal(r.q, 0);
        assert_int_equal(get_int(r.result, "region"), (int64_t) rw.region);
        assert_string_equal(get_str(r.result, "base"), "0x40000000");
        assert_int_equal(get_int(r.result, "size"), MiB);
        assert_string_equal(get_str(r.result, "access"), "rw");
        assert_int_equal(get_int(r.result, "fd"), 0);
        /* Doorbells with the owner on the default 2 vectors: the mapping and 2 x 2 ends. */
        assert_int_equal(get_int(r.result, "vectors"), 2);
        assert_int_equal(get_int(r.result, "generation"), 1);
        assert_int_equal(get_len(r.result, "doorbells"), 2);
        assert_string_equal(get_str(get_idx(r.result, "doorbells", 1), "peer"), "hw0");
        assert_int_equal(get_int(get_idx(r.result, "doorbells", 1), "vector"), 1);
        assert_int_equal(r.fds.n, 5);

        /* Both ends see the same memory. */
        owner = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_SHARED, rw.fd, 0);
        peer = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_SHARED, r.fds.fds[0], 0);
        assert_ptr_not_equal(owner, MAP_FAILED);
        assert_ptr_not_equal(peer, MAP_FAILED);
        strcpy(owner, "from hw0");
        assert_string_equal(peer, "from hw0");
        munmap(owner, MiB);
        munmap(peer, MiB);
        reply_clear(&r);
        assert_string_equal(state_of(f, rw.region), "active");

        /* The token works once. */
        expect_fail(f, &VM1, "region.attach", params, E(BROKER_E_TOKEN_USED), "token_used");

        /* A read-only peer's fd refuses a writable mapping. */
        fd = attach_ok(f, &VM2, "vm2", ro.token[0]);
        p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        assert_ptr_equal(p, MAP_FAILED);
        assert_int_equal(errno, EACCES);
        p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
        assert_ptr_not_equal(p, MAP_FAILED);
        munmap(p, 4096);
        close(fd);
        close(rw.fd);
        close(ro.fd);
}

/* ---- region.release / region.revoke ---- */

static void test_release(void **state) {
        struct fixture *f = *state;
        struct shared s = share_ok(f, "gpu0", "4KiB", "vm1", "ro");
        struct json_object *o;
        int fd;

        close(s.fd);
        fd = attach_ok(f, &VM1, "vm1", s.token[0]);
        close(fd);

        expect_fail(f, &VM2, "region.release", "{\"domain\": \"vm1\", \"region\": 1}", E(BROKER_E_FORBIDDEN),
                    "forbidden");
        expect_fail(f, &VM1, "region.release", "{\"domain\": \"vm1\", \"region\": 99}", E(BROKER_E_NO_SUCH_REGION),
                    "no_such_region");
        expect_invalid_params(f, &VM1, "region.release", "{\"domain\": \"vm1\", \"region\": \"one\"}", "region");
        expect_invalid_params(f, &VM1, "region.release", "{\"domain\": \"vm1\"}", "region");
        assert_string_equal(state_of(f, s.region), "active");

        /* Its only peer gone, the region is taken down at once. */
        o = call_ok(f, &VM1, "region.release", "{\"domain\": \"vm1\", \"region\": \"0x1\"}");
        assert_int_equal(get_int(o, "region"), 1);
        assert_string_equal(get_str(o, "state"), "reclaimed");
        json_object_put(o);
        expect_fail(f, &VM1, "region.release", "{\"domain\": \"vm1\", \"region\": 1}", E(BROKER_E_NO_SUCH_REGION),
                    "no_such_region");
}

static void test_release_twice(void **state) {
        struct fixture *f = *state;
        struct shared s = share_two_peers(f);
        struct json_object *o;

        /* Two peers on gpu0: releasing one leaves the region active, releasing again is refused. */
        close(attach_ok(f, &VM1, "vm1", s.token[0]));

        o = call_ok(f, &VM1, "region.release", "{\"domain\": \"vm1\", \"region\": 1}");
        assert_string_equal(get_str(o, "state"), "active");
        json_object_put(o);
        expect_fail(f, &VM1, "region.release", "{\"domain\": \"vm1\", \"region\": 1}", E(BROKER_E_BAD_STATE),
                    "invalid_state");
}

static void test_revoke(void **state) {
        struct fixture *f = *state;
        struct shared a = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        struct shared b = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        struct json_object *o;
        int fd;

        close(a.fd);
        close(b.fd);
        /* Only an agent for the owner may revoke. */
        expect_fail(f, &VM1, "region.revoke", "{\"owner\": \"hw0\", \"region\": 1}", E(BROKER_E_FORBIDDEN),
                    "forbidden");
        expect_fail(f, &VM1, "region.revoke", "{\"owner\": \"vm1\", \"region\": 1}", E(BROKER_E_FORBIDDEN),
                    "forbidden");
        expect_fail(f, &ROOT, "region.revoke", "{\"owner\": \"hw0\", \"region\": 77}", E(BROKER_E_NO_SUCH_REGION),
                    "no_such_region");
        expect_fail(f, &ROOT, "region.revoke", "{\"owner\": \"hw0\", \"region\": 1, \"deadline_ms\": 86400001}",
                    E(BROKER_E_INVALID), "invalid_request");
        expect_invalid_params(f, &ROOT, "region.revoke", "{\"owner\": \"hw0\", \"region\": 1, \"deadline_ms\": \"10s\"}",
                              "deadline_ms");
        expect_invalid_params(f, &ROOT, "region.revoke", "{\"owner\": \"hw0\", \"region\": 1, \"force\": 1}", "force");
        expect_invalid_params(f, &ROOT, "region.revoke", "{\"region\": 1}", "owner");
        assert_string_equal(state_of(f, 1), "offered");

        /* Nobody attached: reclaimed at once. */
        o = call_ok(f, &ROOT, "region.revoke", "{\"owner\": \"hw0\", \"region\": 1}");
        assert_int_equal(get_int(o, "region"), 1);
        assert_string_equal(get_str(o, "state"), "reclaimed");
        json_object_put(o);

        /* With a peer attached the region waits for it, until the deadline (default 10s). */
        fd = attach_ok(f, &VM1, "vm1", b.token[0]);
        o = call_ok(f, &ROOT, "region.revoke", "{\"owner\": \"hw0\", \"region\": 2}");
        assert_string_equal(get_str(o, "state"), "revoking");
        json_object_put(o);
        o = call_ok(f, &ADMIN, "region.get", "{\"region\": 2}");
        assert_int_equal(get_int(o, "deadline_usec"), f->now + 10 * SEC);
        json_object_put(o);
        /* Force finishes it. */
        o = call_ok(f, &ROOT, "region.revoke", "{\"owner\": \"hw0\", \"region\": 2, \"force\": true}");
        assert_string_equal(get_str(o, "state"), "reclaimed");
        json_object_put(o);
        close(fd);
}

static void test_revoke_deadline(void **state) {
        struct fixture *f = *state;
        struct shared s = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        struct json_object *o;
        int fd;

        close(s.fd);
        fd = attach_ok(f, &VM1, "vm1", s.token[0]);
        o = call_ok(f, &ROOT, "region.revoke", "{\"owner\": \"hw0\", \"region\": 1, \"deadline_ms\": \"0x3e8\"}");
        assert_string_equal(get_str(o, "state"), "revoking");
        json_object_put(o);
        o = call_ok(f, &ADMIN, "region.get", "{\"region\": 1}");
        assert_int_equal(get_int(o, "deadline_usec"), f->now + 1 * SEC);
        json_object_put(o);
        f->now += 1 * SEC;
        assert_int_equal(broker_process_deadlines(f->b), 0);
        assert_string_equal(state_of(f, 1), "gone");
        close(fd);
}

/* ---- region.get / region.list ---- */

static void test_get_list_visibility(void **state) {
        struct fixture *f = *state;
        struct shared a = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        struct shared b = share_ok(f, "nic0", "8KiB", "vm2", "ro");
        struct json_object *o, *peer;

        close(a.fd);
        close(b.fd);
        close(attach_ok(f, &VM2, "vm2", b.token[0]));

        /* The region object. */
        o = call_ok(f, &VM2, "region.get", "{\"region\": 2}");
        assert_int_equal(get_int(o, "region"), 2);
        assert_string_equal(get_str(o, "owner"), "hw0");
        assert_string_equal(get_str(o, "device"), "nic0");
        assert_string_equal(get_str(o, "pool"), "p0");
        assert_true(is_null(o, "label"));
        assert_string_equal(get_str(o, "base"), "0x40001000");
        assert_int_equal(get_int(o, "size"), 8192);
        assert_string_equal(get_str(o, "state"), "active");
        assert_int_equal(get_int(o, "deadline_usec"), 0);
        assert_int_equal(get_int(o, "created_usec"), f->now);
        assert_int_equal(get_len(o, "peers"), 1);
        peer = get_idx(o, "peers", 0);
        assert_string_equal(get_str(peer, "domain"), "vm2");
        assert_string_equal(get_str(peer, "access"), "ro");
        assert_string_equal(get_str(peer, "state"), "attached");
        assert_false(json_object_object_get_ex(peer, "token", NULL));
        json_object_put(o);

        /* Each agent sees the regions of its domains only. */
        expect_fail(f, &VM1, "region.get", "{\"region\": 2}", E(BROKER_E_FORBIDDEN), "forbidden");
        expect_fail(f, &NOBODY, "region.get", "{\"region\": 1}", E(BROKER_E_FORBIDDEN), "forbidden");
        expect_fail(f, &VM1, "region.get", "{\"region\": 3}", E(BROKER_E_NO_SUCH_REGION), "no_such_region");
        expect_invalid_params(f, &VM1, "region.get", "{}", "region");
        json_object_put(call_ok(f, &VM1, "region.get", "{\"region\": 1}"));
        json_object_put(call_ok(f, &ROOT, "region.get", "{\"region\": 2}"));

        assert_int_equal(list_count(f, &VM1, NULL), 1);
        assert_int_equal(list_count(f, &VM2, "{}"), 1);
        assert_int_equal(list_count(f, &ROOT, NULL), 2);
        assert_int_equal(list_count(f, &NOBODY, NULL), 0);
        assert_int_equal(list_count(f, &ADMIN, NULL), 2);
        o = call_ok(f, &ADMIN, "region.list", NULL);
        assert_int_equal(get_int(get_idx(o, "regions", 0), "region"), 1); /* sorted by id */
        assert_int_equal(get_int(get_idx(o, "regions", 1), "region"), 2);
        json_object_put(o);
        o = call_ok(f, &VM1, "region.list", NULL);
        assert_int_equal(get_int(get_idx(o, "regions", 0), "region"), 1);
        json_object_put(o);

        /* Filters. */
        assert_int_equal(list_count(f, &ADMIN, "{\"domain\": \"vm2\"}"), 1);
        assert_int_equal(list_count(f, &ADMIN, "{\"domain\": \"hw0\"}"), 2);
        assert_int_equal(list_count(f, &ROOT, "{\"domain\": \"hw0\", \"state\": \"offered\"}"), 1);
        assert_int_equal(list_count(f, &ADMIN, "{\"state\": \"active\"}"), 1);
        assert_int_equal(list_count(f, &ADMIN, "{\"state\": \"revoking\"}"), 0);
        assert_int_equal(list_count(f, &ADMIN, "{\"device\": \"gpu0\"}"), 0);
        assert_int_equal(list_count(f, &ADMIN, "{\"device\": \"nic0\", \"pool\": \"p0\"}"), 2);
        assert_int_equal(list_count(f, &ADMIN, "{\"pool\": \"p1\"}"), 0);
        expect_fail(f, &VM1, "region.list", "{\"domain\": \"vm2\"}", E(BROKER_E_FORBIDDEN), "forbidden");
        expect_invalid_params(f, &ADMIN, "region.list", "{\"state\": \"bogus\"}", "state");
        expect_invalid_params(f, &ADMIN, "region.list", "{\"owner\": \"hw0\"}", "owner");
        expect_invalid_params(f, &ADMIN, "region.list", "{\"device\": [\"nic0\"]}", "device");
}

/* ---- route.lookup ---- */

static void test_route_lookup(void **state) {
        struct fixture *f = *state;
        struct json_object *o;
        struct reply r;

        o = call_ok(f, &VM1, "route.lookup", "{\"device\": \"nic0\", \"domain\": \"vm1\"}");
        assert_string_equal(get_str(o, "route"), "none");
        json_object_put(o);

        close(share_ok(f, "nic0", "64KiB", "vm1", "rw").fd);
        o = call_ok(f, &VM1, "route.lookup", "{\"device\": \"nic0\", \"domain\": \"vm1\"}");
        assert_string_equal(get_str(o, "route"), "region");
        assert_int_equal(get_int(o, "region"), 1);
        assert_string_equal(get_str(o, "base"), "0x40000000");
        assert_int_equal(get_int(o, "size"), 65536);
        assert_string_equal(get_str(o, "access"), "rw");
        json_object_put(o);

        r = call(f, &ROOT, "region.share",
                 "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096, \"numa_node\": 1,"
                 " \"peers\": [{\"domain\": \"vm2\", \"access\": \"ro\"}]}");
        assert_int_equal(r.q, 0);
        assert_string_equal(get_str(r.result, "placement"), "bounce");
        reply_clear(&r);
        o = call_ok(f, &VM2, "route.lookup", "{\"device\": \"nic0\", \"domain\": \"vm2\"}");
        assert_string_equal(get_str(o, "route"), "bounce");
        assert_non_null(strstr(get_str(o, "reason"), "NUMA node 1"));
        json_object_put(o);

        expect_fail(f, &VM1, "route.lookup", "{\"device\": \"nic0\", \"domain\": \"vm2\"}", E(BROKER_E_FORBIDDEN),
                    "forbidden");
        expect_invalid_params(f, &VM1, "route.lookup", "{\"domain\": \"vm1\"}", "device");
        expect_fail(f, &ADMIN, "route.lookup", "{\"device\": \"nic/0\", \"domain\": \"vm1\"}", E(BROKER_E_INVALID),
                    "invalid_request");
}

/* ---- broker.info ---- */

static void test_broker_info(void **state) {
        struct fixture *f = *state;
        struct json_object *o, *lim;

        o = call_ok(f, &VM1, "broker.info", "{}");
        assert_string_equal(get_str(o, "version"), "0.1.0");
        assert_string_equal(get_str(o, "backend"), "memfd");
        assert_int_equal(get_int(o, "uid"), 1000);
        assert_false(json_object_get_boolean(get(o, "admin")));
        assert_int_equal(get_len(o, "domains"), 1);
        assert_string_equal(json_object_get_string(get_idx(o, "domains", 0)), "vm1");
        lim = get(o, "limits");
        assert_int_equal(get_int(lim, "max_message"), 64 * 1024);
        assert_int_equal(get_int(lim, "max_depth"), 16);
        assert_int_equal(get_int(lim, "max_batch"), 32);
        assert_int_equal(get_int(lim, "max_connections_per_uid"), 16);
        assert_int_equal(get_int(lim, "max_pending_bytes"), 1024 * 1024);
        json_object_put(o);

        o = call_ok(f, &NOBODY, "broker.info", NULL);
        assert_int_equal(get_len(o, "domains"), 0);
        json_object_put(o);
        o = call_ok(f, &ADMIN, "broker.info", NULL);
        assert_true(json_object_get_boolean(get(o, "admin")));
        assert_int_equal(get_len(o, "domains"), 0);
        json_object_put(o);

        expect_invalid_params(f, &VM1, "broker.info", "{\"verbose\": true}", "verbose");
        expect_invalid_params(f, &VM1, "broker.info", "\"x\"", "params");
}

/* ---- events ---- */

static void test_subscribe(void **state) {
        struct fixture *f = *state;
        struct json_object *o;

        o = call_ok(f, &VM1, "events.subscribe", NULL);
        assert_int_equal(get_len(o, "domains"), 1);
        assert_string_equal(json_object_get_string(get_idx(o, "domains", 0)), "vm1");
        json_object_put(o);
        o = call_ok(f, &VM2, "events.subscribe", "{\"domains\": [\"vm2\", \"vm2\"]}");
        assert_int_equal(get_len(o, "domains"), 1);
        json_object_put(o);
        o = call_ok(f, &ADMIN, "events.subscribe", "{\"domains\": [\"vm7\"]}");
        assert_string_equal(json_object_get_string(get_idx(o, "domains", 0)), "vm7");
        json_object_put(o);

        expect_fail(f, &VM1, "events.subscribe", "{\"domains\": [\"vm1\", \"vm2\"]}", E(BROKER_E_FORBIDDEN),
                    "forbidden");
        expect_fail(f, &NOBODY, "events.subscribe", "{\"domains\": [\"vm1\"]}", E(BROKER_E_FORBIDDEN), "forbidden");
        expect_fail(f, &VM1, "events.subscribe", "{\"domains\": [\"vm 1\"]}", E(BROKER_E_INVALID),
                    "invalid_request");
        expect_invalid_params(f, &VM1, "events.subscribe", "{\"domains\": \"vm1\"}", "domains");
        expect_invalid_params(f, &VM1, "events.subscribe", "{\"domains\": [1]}", "domains[0]");
        expect_invalid_params(f, &VM1, "events.subscribe", "{\"domain\": [\"vm1\"]}", "domain");

        /* A refused re-subscribe kept the old one: 3 subscribers. */
        o = call_ok(f, &ADMIN, "admin.stats", NULL);
        assert_int_equal(get_int(o, "subscribers"), 3);
        json_object_put(o);
        methods_disconnect(f->m, VM2.connection);
        methods_disconnect(f->m, 12345); /* unknown: nothing happens */
        o = call_ok(f, &ADMIN, "admin.stats", NULL);
        assert_int_equal(get_int(o, "subscribers"), 2);
        json_object_put(o);
}

/* method about vm1 in region 1 went to the other party's subscribers (hw0's: ROOT, and the admin), not vm1's. */
static void expect_party_note(struct fixture *f, const char *method, const char *reason) {
        struct json_object *p;

        assert_int_equal(notes_count(f, ROOT.connection, method), 1);
        assert_int_equal(notes_count(f, ADMIN.connection, method), 1);
        assert_int_equal(notes_count(f, VM1.connection, method), 0);
        p = json_tokener_parse(note_find(f, ROOT.connection, method)->params);
        assert_string_equal(get_str(p, "domain"), "vm1");
        assert_int_equal(get_int(p, "region"), 1);
        if (reason)
                assert_string_equal(get_str(p, "reason"), reason);
        else
                assert_false(json_object_object_get_ex(p, "reason", NULL));
        json_object_put(p);
}

static void test_notifications(void **state) {
        struct fixture *f = *state;
        const struct note *n;
        struct json_object *p, *v;
        struct shared s;
        int fd;

        json_object_put(call_ok(f, &ROOT, "events.subscribe", NULL));   /* hw0 */
        json_object_put(call_ok(f, &VM1, "events.subscribe", NULL));    /* vm1 */
        json_object_put(call_ok(f, &VM2, "events.subscribe", NULL));    /* vm2 */
        json_object_put(call_ok(f, &ADMIN, "events.subscribe", NULL));  /* everything */

        /* A share for vm1 changes vm1's route: vm1 and the admin hear it, nobody else. */
        s = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        close(s.fd);
        assert_int_equal(notes_count(f, VM1.connection, "route.changed"), 1);
        assert_int_equal(notes_count(f, ADMIN.connection, "route.changed"), 1);
        assert_int_equal(f->n_notes, 2);
        n = note_find(f, VM1.connection, "route.changed");
        p = json_tokener_parse(n->params);
        assert_int_equal(get_int(p, "region"), 1);
        assert_true(is_null(p, "owner"));
        assert_string_equal(get_str(p, "device"), "nic0");
        assert_string_equal(get_str(p, "domain"), "vm1");
        assert_string_equal(get_str(p, "reason"), "region shared");
        json_object_put(p);
        notes_clear(f);

        /* Attach: the owner's subscribers; and the owner, a doorbell party, hears vm1 joined. */
        fd = attach_ok(f, &VM1, "vm1", s.token[0]);
        assert_int_equal(notes_count(f, ROOT.connection, "region.attached"), 1);
        assert_int_equal(notes_count(f, ADMIN.connection, "region.attached"), 1);
        expect_party_note(f, "region.joined", NULL);
        assert_int_equal(f->n_notes, 4);
        p = json_tokener_parse(note_find(f, ROOT.connection, "region.attached")->params);
        assert_int_equal(get_int(p, "region"), 1);
        assert_string_equal(get_str(p, "owner"), "hw0");
        assert_string_equal(get_str(p, "domain"), "vm1");
        assert_false(json_object_object_get_ex(p, "reason", NULL));
        json_object_put(p);
        notes_clear(f);

        /* Revoke: the recalled peer gets the deadline; its route goes too. */
        json_object_put(call_ok(f, &ROOT, "region.revoke", "{\"owner\": \"hw0\", \"region\": 1, \"deadline_ms\": 5000}"));
        assert_int_equal(notes_count(f, VM1.connection, "region.recall"), 1);
        assert_int_equal(notes_count(f, ADMIN.connection, "region.recall"), 1);
        assert_int_equal(notes_count(f, ROOT.connection, "region.recall"), 0);
        assert_int_equal(notes_count(f, VM2.connection, "region.recall"), 0);
        p = json_tokener_parse(note_find(f, VM1.connection, "region.recall")->params);
        assert_int_equal(get_int(p, "deadline_usec"), f->now + 5 * SEC);
        assert_string_equal(get_str(p, "reason"), "revoked by owner hw0");
        json_object_put(p);
        assert_int_equal(notes_count(f, VM1.connection, "route.changed"), 1);
        notes_clear(f);

        /* The deadline passes: revoked (owner and peer), then reclaimed (owner and every peer). */
        f->now += 5 * SEC;
        assert_int_equal(broker_process_deadlines(f->b), 0);
        assert_int_equal(notes_count(f, ROOT.connection, "region.revoked"), 1);
        assert_int_equal(notes_count(f, VM1.connection, "region.revoked"), 1);
        assert_int_equal(notes_count(f, ADMIN.connection, "region.revoked"), 1);
        assert_int_equal(notes_count(f, ROOT.connection, "region.reclaimed"), 1);
        assert_int_equal(notes_count(f, VM1.connection, "region.reclaimed"), 1);
        assert_int_equal(notes_count(f, ADMIN.connection, "region.reclaimed"), 1);
        assert_int_equal(notes_count(f, VM2.connection, "region.reclaimed"), 0);
        /* The revoked peer's doorbells are cut: the owner hears it left; vm1 itself does not. */
        expect_party_note(f, "region.left", "revoke deadline passed");
        assert_int_equal(f->n_notes, 8);
        p = json_tokener_parse(note_find(f, ROOT.connection, "region.reclaimed")->params);
        assert_true(is_null(p, "domain"));
        assert_true(json_object_object_get_ex(p, "region", &v));
        json_object_put(p);
        notes_clear(f);
        close(fd);

        /* Release: the owner's subscribers. A disconnected subscriber hears nothing more. */
        methods_disconnect(f->m, ROOT.connection);
        s = share_ok(f, "nic0", "4KiB", "vm2", "ro");
        close(s.fd);
        close(attach_ok(f, &VM2, "vm2", s.token[0]));
        notes_clear(f);
        json_object_put(call_ok(f, &VM2, "region.release", "{\"domain\": \"vm2\", \"region\": 2}"));
        assert_int_equal(notes_count(f, ADMIN.connection, "region.released"), 1);
        assert_int_equal(notes_count(f, ROOT.connection, "region.released"), 0);
        assert_int_equal(notes_count(f, ROOT.connection, "region.reclaimed"), 0);
        assert_int_equal(notes_count(f, VM2.connection, "region.reclaimed"), 1);
        assert_int_equal(notes_count(f, VM1.connection, "region.reclaimed"), 0);
        notes_clear(f);

        /* Re-subscribing replaces: the admin now hears vm2 only. */
        json_object_put(call_ok(f, &ADMIN, "events.subscribe", "{\"domains\": [\"vm2\"]}"));
        s = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        close(s.fd);
        assert_int_equal(notes_count(f, ADMIN.connection, "route.changed"), 0);
        assert_int_equal(notes_count(f, VM1.connection, "route.changed"), 1);
        notes_clear(f);
}

static void test_notify_failure_isolated(void **state) {
        struct fixture *f = *state;
        struct json_object *o;
        struct shared s;

        json_object_put(call_ok(f, &VM1, "events.subscribe", NULL));
        json_object_put(call_ok(f, &ADMIN, "events.subscribe", NULL));
        json_object_put(call_ok(f, &NOBODY, "events.subscribe", NULL)); /* acts for nothing: hears nothing */

        /* The admin's connection is over its output limit: it is dropped, vm1 still hears. */
        f->failing_connection = ADMIN.connection;
        s = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        close(s.fd);
        assert_int_equal(notes_count(f, VM1.connection, "route.changed"), 1);
        assert_int_equal(f->n_notes, 1);
        assert_int_equal(f->n_notify_calls, 2);

        o = call_ok(f, &ADMIN, "admin.stats", NULL);
        assert_int_equal(get_int(o, "dropped_subscribers"), 1);
        assert_int_equal(get_int(o, "subscribers"), 2);
        json_object_put(o);

        /* Dropped means dropped: no more attempts for it. */
        f->n_notify_calls = 0;
        close(attach_ok(f, &VM1, "vm1", s.token[0]));
        assert_int_equal(f->n_notify_calls, 0); /* attached goes to hw0's subscribers: none left */
        notes_clear(f);
}

static void test_no_notify_without_server(void **state) {
        struct fixture *f = *state;
        struct shared s;

        methods_set_server(f->m, NULL); /* back to "no server": notifications go nowhere */
        json_object_put(call_ok(f, &VM1, "events.subscribe", NULL));
        s = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        close(s.fd);
        assert_int_equal(f->n_notify_calls, 0);
        methods_set_notify(f->m, record_notify, f);
        close(attach_ok(f, &VM1, "vm1", s.token[0]));
        json_object_put(call_ok(f, &VM1, "region.release", "{\"domain\": \"vm1\", \"region\": 1}"));
        assert_int_equal(notes_count(f, VM1.connection, "region.reclaimed"), 1);
        notes_clear(f);
}

/* ---- admin ---- */

static void test_admin_forbidden_for_agents(void **state) {
        struct fixture *f = *state;
        static const char *const methods[] = {
                "admin.revoke", "admin.domain_gone", "admin.domains", "admin.pools",
                "admin.audit", "admin.stats", "admin.reload",
        };

        for (size_t i = 0; i < ELEMENTSOF(methods); i++) {
                struct reply r = call(f, &ROOT, methods[i], "{}");
                assert_true(r.q < 0);
                assert_int_equal(r.err.code, E(BROKER_E_FORBIDDEN));
                assert_string_equal(r.err.name, "forbidden");
                assert_string_equal(r.err.message, "admin socket only");
                reply_clear(&r);
        }
}

static void test_admin_revoke_and_domain_gone(void **state) {
        struct fixture *f = *state;
        struct shared a = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        struct shared b = share_ok(f, "nic0", "4KiB", "vm2", "ro");
        struct json_object *o;
        int fd;

        close(a.fd);
        close(b.fd);
        expect_fail(f, &ADMIN, "admin.revoke", "{\"region\": 9}", E(BROKER_E_NO_SUCH_REGION), "no_such_region");
        expect_invalid_params(f, &ADMIN, "admin.revoke", "{\"region\": 1, \"owner\": \"hw0\"}", "owner");
        expect_fail(f, &ADMIN, "admin.revoke", "{\"region\": 1, \"deadline_ms\": \"1EiB\"}", E(BROKER_E_INVALID),
                    "invalid_request");
        o = call_ok(f, &ADMIN, "admin.revoke", "{\"region\": 1, \"deadline_ms\": 0}");
        assert_int_equal(get_int(o, "region"), 1);
        assert_string_equal(get_str(o, "state"), "reclaimed");
        json_object_put(o);

        fd = attach_ok(f, &VM2, "vm2", b.token[0]);
        expect_fail(f, &ADMIN, "admin.domain_gone", "{\"domain\": \"vm 2\"}", E(BROKER_E_INVALID), "invalid_request");
        expect_invalid_params(f, &ADMIN, "admin.domain_gone", "{}", "domain");
        assert_string_equal(state_of(f, 2), "active");
        o = call_ok(f, &ADMIN, "admin.domain_gone", "{\"domain\": \"vm2\"}");
        assert_string_equal(get_str(o, "domain"), "vm2");
        json_object_put(o);
        /* Its only peer gone, the region went with it. */
        assert_string_equal(state_of(f, 2), "gone");
        close(fd);
}

static void test_admin_domains(void **state) {
        struct fixture *f = *state;
        struct shared s = share_ok(f, "nic0", "1MiB", "vm1", "rw");
        struct json_object *o, *d;

        close(s.fd);
        close(attach_ok(f, &VM1, "vm1", s.token[0]));
        o = call_ok(f, &ADMIN, "admin.domains", NULL);
        /* Sorted: hw0 (owner, agent, quota), vm1 (peer, agent), vm2 (agent). */
        assert_int_equal(get_len(o, "domains"), 3);
        d = get_idx(o, "domains", 0);
        assert_string_equal(get_str(d, "domain"), "hw0");
        assert_int_equal(get_int(d, "regions_owned"), 1);
        assert_int_equal(get_int(d, "bytes_owned"), MiB);
        assert_int_equal(get_int(d, "max_regions"), 4);
        assert_int_equal(get_int(d, "max_bytes"), 48 * MiB);
        assert_int_equal(get_int(d, "attached"), 0);
        d = get_idx(o, "domains", 1);
        assert_string_equal(get_str(d, "domain"), "vm1");
        assert_int_equal(get_int(d, "regions_owned"), 0);
        assert_int_equal(get_int(d, "bytes_owned"), 0);
        assert_int_equal(get_int(d, "max_regions"), 1024);
        assert_true(is_null(d, "max_bytes")); /* unlimited */
        assert_int_equal(get_int(d, "attached"), 1);
        d = get_idx(o, "domains", 2);
        assert_string_equal(get_str(d, "domain"), "vm2");
        assert_int_equal(get_int(d, "attached"), 0);
        json_object_put(o);
        expect_invalid_params(f, &ADMIN, "admin.domains", "{\"all\": true}", "all");
}

static void test_admin_pools(void **state) {
        struct fixture *f = *state;
        struct json_object *o, *p;

        close(share_ok(f, "nic0", "1MiB", "vm1", "rw").fd);
        close(share_ok(f, "nic0", "4KiB", "vm2", "ro").fd);
        o = call_ok(f, &ADMIN, "admin.pools", NULL);
        assert_int_equal(get_len(o, "pools"), 2);
        p = get_idx(o, "pools", 0);
        assert_string_equal(get_str(p, "pool"), "p0");
        assert_int_equal(get_int(p, "numa_node"), 0);
        assert_string_equal(get_str(p, "base"), "0x40000000");
        assert_int_equal(get_int(p, "size"), 64 * MiB);
        assert_int_equal(get_int(p, "granule"), 4096);
        assert_int_equal(get_int(p, "used"), MiB + 4096);
        assert_int_equal(get_int(p, "free"), 64 * MiB - MiB - 4096);
        assert_int_equal(get_int(p, "regions"), 2);
        p = get_idx(o, "pools", 1);
        assert_string_equal(get_str(p, "pool"), "p1");
        assert_int_equal(get_int(p, "numa_node"), 1);
        assert_string_equal(get_str(p, "base"), "0x200000000");
        assert_int_equal(get_int(p, "granule"), 2 * MiB);
        assert_int_equal(get_int(p, "used"), 0);
        assert_int_equal(get_int(p, "regions"), 0);
        assert_int_equal(get_len(o, "numa"), 2);
        p = get_idx(o, "numa", 0);
        assert_int_equal(get_int(p, "numa_node"), 0);
        assert_int_equal(get_int(p, "size"), 64 * MiB);
        assert_int_equal(get_int(p, "used"), MiB + 4096);
        p = get_idx(o, "numa", 1);
        assert_int_equal(get_int(p, "numa_node"), 1);
        assert_int_equal(get_int(p, "used"), 0);
        json_object_put(o);
}

static void test_admin_audit(void **state) {
        struct fixture *f = *state;
        struct shared s = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        struct json_object *o, *e;
        char params[64];
        int64_t first;

        close(s.fd);
        close(attach_ok(f, &VM1, "vm1", s.token[0]));
        o = call_ok(f, &ADMIN, "admin.audit", NULL);
        assert_int_equal(get_len(o, "entries"), 2);
        e = get_idx(o, "entries", 0);
        first = get_int(e, "seq");
        assert_string_equal(get_str(e, "action"), "share");
        assert_string_equal(get_str(e, "actor"), "uid:0");
        assert_int_equal(get_int(e, "region"), 1);
        assert_int_equal(get_int(e, "time_usec"), f->now);
        assert_true(is_null(e, "domain"));
        assert_true(is_null(e, "from"));
        assert_string_equal(get_str(e, "to"), "offered");
        e = get_idx(o, "entries", 1);
        assert_string_equal(get_str(e, "action"), "attach");
        assert_string_equal(get_str(e, "domain"), "vm1");
        assert_string_equal(get_str(e, "from"), "granted");
        assert_string_equal(get_str(e, "to"), "attached");
        assert_string_equal(get_str(e, "reason"), "rw");
        json_object_put(o);

        o = call_ok(f, &ADMIN, "admin.audit", "{\"limit\": 1}");
        assert_int_equal(get_len(o, "entries"), 1);
        json_object_put(o);
        snprintf(params, sizeof(params), "{\"after_seq\": %" PRId64 "}", first);
        o = call_ok(f, &ADMIN, "admin.audit", params);
        assert_int_equal(get_len(o, "entries"), 1);
        assert_string_equal(get_str(get_idx(o, "entries", 0), "action"), "attach");
        json_object_put(o);
        snprintf(params, sizeof(params), "{\"since_usec\": \"0x%" PRIx64 "\"}", (uint64_t) f->now + 1);
        o = call_ok(f, &ADMIN, "admin.audit", params);
        assert_int_equal(get_len(o, "entries"), 0);
        json_object_put(o);
        expect_fail(f, &ADMIN, "admin.audit", "{\"limit\": 1001}", E(BROKER_E_INVALID), "invalid_request");
        expect_fail(f, &ADMIN, "admin.audit", "{\"limit\": 0}", E(BROKER_E_INVALID), "invalid_request");
        expect_fail(f, &ADMIN, "admin.audit", "{\"after_seq\": \"0x8000000000000000\"}", E(BROKER_E_INVALID),
                    "invalid_request");
        expect_invalid_params(f, &ADMIN, "admin.audit", "{\"limit\": \"many\"}", "limit");
        expect_invalid_params(f, &ADMIN, "admin.audit", "{\"before_seq\": 1}", "before_seq");
}

/* newest: the newest N rows (after the filters), still oldest first, like journalctl -n. */
static void test_admin_audit_newest(void **state) {
        struct fixture *f = *state;
        struct shared s = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        struct json_object *o, *all;
        char params[64];
        int64_t first;
        size_t n;

        close(s.fd);
        close(attach_ok(f, &VM1, "vm1", s.token[0]));
        json_object_put(call_ok(f, &VM1, "region.release", "{\"domain\": \"vm1\", \"region\": 1}"));
        all = call_ok(f, &ADMIN, "admin.audit", NULL);
        n = get_len(all, "entries");
        assert_true(n >= 3);
        first = get_int(get_idx(all, "entries", 0), "seq");

        o = call_ok(f, &ADMIN, "admin.audit", "{\"newest\": 2}");
        assert_int_equal(get_len(o, "entries"), 2);
        for (size_t i = 0; i < 2; i++)
                assert_int_equal(get_int(get_idx(o, "entries", i), "seq"),
                                 get_int(get_idx(all, "entries", n - 2 + i), "seq"));
        json_object_put(o);
        /* With after_seq, the newest of what follows it: all but the first. */
        snprintf(params, sizeof(params), "{\"newest\": 10000, \"after_seq\": %" PRId64 "}", first);
        o = call_ok(f, &ADMIN, "admin.audit", params);
        assert_int_equal(get_len(o, "entries"), n - 1);
        assert_int_equal(get_int(get_idx(o, "entries", 0), "seq"), get_int(get_idx(all, "entries", 1), "seq"));
        json_object_put(o);
        json_object_put(all);

        expect_fail(f, &ADMIN, "admin.audit", "{\"newest\": 0}", E(BROKER_E_INVALID), "invalid_request");
        expect_fail(f, &ADMIN, "admin.audit", "{\"newest\": 10001}", E(BROKER_E_INVALID), "invalid_request");
        expect_fail(f, &ADMIN, "admin.audit", "{\"newest\": 5, \"limit\": 5}", E(BROKER_E_INVALID),
                    "invalid_request");
        expect_invalid_params(f, &ADMIN, "admin.audit", "{\"newest\": -1}", "newest");
}

static void test_admin_stats(void **state) {
        struct fixture *f = *state;
        struct shared s;
        struct json_object *o;
        int fd;

        o = call_ok(f, &ADMIN, "admin.stats", NULL);
        assert_true(get_int(o, "uptime_usec") >= 0);
        assert_int_equal(get_int(o, "connections"), 0); /* no server */
        assert_int_equal(get_int(o, "requests"), 0);
        assert_int_equal(get_int(o, "errors"), 0);
        assert_int_equal(get_int(o, "regions_live"), 0);
        assert_int_equal(get_int(o, "regions_revoking"), 0);
        assert_int_equal(get_int(o, "subscribers"), 0);
        assert_int_equal(get_int(o, "dropped_subscribers"), 0);
        json_object_put(o);

        s = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        close(s.fd);
        close(share_ok(f, "nic0", "4KiB", "vm1", "rw").fd);
        fd = attach_ok(f, &VM1, "vm1", s.token[0]);
        json_object_put(call_ok(f, &ADMIN, "admin.revoke", "{\"region\": 1}"));
        json_object_put(call_ok(f, &VM1, "events.subscribe", NULL));
        o = call_ok(f, &ADMIN, "admin.stats", NULL);
        assert_int_equal(get_int(o, "regions_live"), 1);
        assert_int_equal(get_int(o, "regions_revoking"), 1);
        assert_int_equal(get_int(o, "subscribers"), 1);
        json_object_put(o);
        close(fd);
        expect_invalid_params(f, &ADMIN, "admin.stats", "{\"reset\": true}", "reset");
}

static void test_admin_reload(void **state) {
        struct fixture *f = *state;
        struct json_object *o, *data, *diags;
        struct reply r;

        /* uid 1002 acts for nothing yet. */
        expect_fail(f, &VM3, "events.subscribe", "{\"domains\": [\"vm3\"]}", E(BROKER_E_FORBIDDEN), "forbidden");

        write_file(f->policy, policy_text_vm3);
        o = call_ok(f, &ADMIN, "admin.reload", NULL);
        assert_true(json_object_get_boolean(get(o, "reloaded")));
        json_object_put(o);
        o = call_ok(f, &VM3, "broker.info", NULL);
        assert_string_equal(json_object_get_string(get_idx(o, "domains", 0)), "vm3");
        json_object_put(o);

        /* A policy the platform contradicts: refused with its diagnostics, the one in force kept. */
        write_file(f->policy, policy_text_bad);
        r = call(f, &ADMIN, "admin.reload", "{}");
        assert_true(r.q < 0);
        assert_int_equal(r.err.code, E(BROKER_E_INVALID));
        assert_string_equal(r.err.name, "invalid_request");
        data = r.err.data;
        assert_non_null(data);
        assert_true(json_object_object_get_ex(data, "diagnostics", &diags));
        assert_int_equal(json_object_array_length(diags), 1);
        assert_string_equal(json_object_get_string(json_object_array_get_idx(diags, 0)),
                            "shares[0].device: the platform has no device nope0");
        reply_clear(&r);
        o = call_ok(f, &VM3, "broker.info", NULL);
        assert_string_equal(json_object_get_string(get_idx(o, "domains", 0)), "vm3");
        json_object_put(o);

        /* Not JSON at all. */
        write_file(f->policy, "{\"agents\": [");
        r = call(f, &ADMIN, "admin.reload", NULL);
        assert_int_equal(r.err.code, E(BROKER_E_INVALID));
        assert_true(json_object_object_get_ex(r.err.data, "diagnostics", &diags));
        assert_non_null(strstr(json_object_get_string(json_object_array_get_idx(diags, 0)), "invalid JSON"));
        reply_clear(&r);

        /* methods_reload() is the same path, for SIGHUP. */
        {
                struct diag_list dl = DIAG_LIST_INIT;
                assert_true(methods_reload(f->m, &dl) < 0);
                assert_true(dl.n >= 1);
                diag_list_clear(&dl);
                write_file(f->policy, policy_text);
                assert_int_equal(methods_reload(f->m, &dl), 0);
                assert_int_equal(dl.n, 0);
        }
        expect_fail(f, &VM3, "broker.info", "{\"x\": 1}", RPC_INVALID_PARAMS, "");
        o = call_ok(f, &VM3, "broker.info", NULL);
        assert_int_equal(get_len(o, "domains"), 0);
        json_object_put(o);
        expect_invalid_params(f, &ADMIN, "admin.reload", "{\"path\": \"/etc/passwd\"}", "path");
}

/* A reload that takes a domain away from an agent also stops its events for that domain. */
static void test_reload_narrows_subscriptions(void **state) {
        struct fixture *f = *state;
        struct json_object *o;

        json_object_put(call_ok(f, &VM1, "events.subscribe", NULL));
        close(share_ok(f, "nic0", "4KiB", "vm1", "rw").fd);
        assert_int_equal(notes_count(f, VM1.connection, "route.changed"), 1);
        notes_clear(f);

        write_file(f->policy,
                   "{\"agents\": [{\"uid\": 0, \"domains\": [\"hw0\"]}],"
                   " \"shares\": [{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"rw\"}]}");
        o = call_ok(f, &ADMIN, "admin.reload", NULL);
        json_object_put(o);
        close(share_ok(f, "nic0", "4KiB", "vm1", "rw").fd);
        assert_int_equal(notes_count(f, VM1.connection, "route.changed"), 0);
        assert_int_equal(f->n_notes, 0);
}

static void test_admin_reload_without_file(void **state) {
        struct fixture *f = *state;
        struct json_object *diags;
        struct reply r = call(f, &ADMIN, "admin.reload", NULL);

        assert_true(r.q < 0);
        assert_int_equal(r.err.code, E(BROKER_E_INVALID));
        assert_string_equal(r.err.name, "invalid_request");
        assert_true(json_object_object_get_ex(r.err.data, "diagnostics", &diags));
        assert_non_null(strstr(json_object_get_string(json_object_array_get_idx(diags, 0)), "without a policy file"));
        reply_clear(&r);
        /* The policy in force is untouched. */
        close(share_ok(f, "nic0", "4KiB", "vm1", "rw").fd);
}

static void test_unknown_method(void **state) {
        struct fixture *f = *state;

        expect_fail(f, &VM1, "region.frobnicate", "{}", RPC_METHOD_NOT_FOUND, "");
        expect_fail(f, &ADMIN, "admin.nope", NULL, RPC_METHOD_NOT_FOUND, "");
        expect_fail(f, &ADMIN, "", NULL, RPC_METHOD_NOT_FOUND, "");
        /* The policy decides nothing here: unknown is unknown for everybody. */
        expect_fail(f, &NOBODY, "admin.shutdown", NULL, RPC_METHOD_NOT_FOUND, "");
}

/* Agents never act for a domain the policy does not give them, whatever the method. */
static void test_identity_everywhere(void **state) {
        struct fixture *f = *state;
        struct shared s = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        char params[128];

        close(s.fd);
        snprintf(params, sizeof(params), "{\"domain\": \"vm1\", \"token\": \"%s\"}", s.token[0]);
        expect_fail(f, &NOBODY, "region.attach", params, E(BROKER_E_FORBIDDEN), "forbidden");
        expect_fail(f, &NOBODY, "region.release", "{\"domain\": \"vm1\", \"region\": 1}", E(BROKER_E_FORBIDDEN),
                    "forbidden");
        expect_fail(f, &NOBODY, "region.revoke", "{\"owner\": \"hw0\", \"region\": 1}", E(BROKER_E_FORBIDDEN),
                    "forbidden");
        expect_fail(f, &NOBODY, "route.lookup", "{\"device\": \"nic0\", \"domain\": \"vm1\"}", E(BROKER_E_FORBIDDEN),
                    "forbidden");
        expect_fail(f, &NOBODY, "region.list", "{\"domain\": \"vm1\"}", E(BROKER_E_FORBIDDEN), "forbidden");
        /* Still there, untouched, and the token unspent. */
        assert_string_equal(state_of(f, 1), "offered");
        close(attach_ok(f, &VM1, "vm1", s.token[0]));
}

/* ---- the table: numbers, notifications, undelivered replies, unknown uids ---- */

/* docs/protocol.md: every 64-bit input takes an integer, up to 2^64-1 as a JSON integer. */
static void test_u64_integers(void **state) {
        struct fixture *f = *state;

        /* These were -32602 before: the value reaches its bounds check, or the broker. */
        expect_fail(f, &ADMIN, "region.get", "{\"region\": 18446744073709551615}", E(BROKER_E_NO_SUCH_REGION),
                    "no_such_region");
        expect_fail(f, &ADMIN, "region.get", "{\"region\": 9223372036854775808}", E(BROKER_E_NO_SUCH_REGION),
                    "no_such_region");
        expect_fail(f, &ROOT, "region.share",
                    "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 18446744073709551615,"
                    " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}", E(BROKER_E_TOO_LARGE),
                    "region_too_large");
        expect_fail(f, &ROOT, "region.share",
                    "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096, \"numa_node\": 18446744073709551615,"
                    " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}", E(BROKER_E_INVALID),
                    "invalid_request");
        expect_fail(f, &ROOT, "region.revoke", "{\"owner\": \"hw0\", \"region\": 1, \"deadline_ms\": 18446744073709551615}",
                    E(BROKER_E_INVALID), "invalid_request");
        expect_fail(f, &ADMIN, "admin.audit", "{\"after_seq\": 18446744073709551615}", E(BROKER_E_INVALID),
                    "invalid_request");
        /* Negative, fractional and non-numbers stay -32602. */
        static const char *const refused[] = {
                "{\"region\": -1}", "{\"region\": -9223372036854775809}", "{\"region\": 1.0}", "{\"region\": 1e3}",
                "{\"region\": \"0x10000000000000000\"}", "{\"region\": false}",
        };
        for (size_t i = 0; i < ELEMENTSOF(refused); i++)
                expect_invalid_params(f, &ADMIN, "region.get", refused[i], "region");
        assert_int_equal(list_count(f, &ADMIN, NULL), 0);
}

/* Structure and bounds come from the table, for every kind of parameter. */
static void test_table_checks(void **state) {
        struct fixture *f = *state;

        expect_invalid_params(f, &VM1, "broker.info", "{\"x\": 1}", "x");
        expect_invalid_params(f, &VM1, "broker.info", "[]", "params");
        expect_invalid_params(f, &VM1, "region.list", "{\"state\": \"gone\"}", "state");
        expect_invalid_params(f, &VM1, "region.list", "{\"state\": 1}", "state");
        expect_invalid_params(f, &VM1, "region.list", "{\"device\": 1}", "device");
        expect_invalid_params(f, &VM1, "events.subscribe", "{\"domains\": \"vm1\"}", "domains");
        expect_invalid_params(f, &VM1, "events.subscribe", "{\"domains\": [1]}", "domains[0]");
        expect_fail(f, &VM1, "events.subscribe", "{\"domains\": [\"-vm1\"]}", E(BROKER_E_INVALID),
                    "invalid_request");
        expect_invalid_params(f, &VM1, "region.attach", "{\"domain\": \"vm1\"}", "token");
        expect_invalid_params(f, &ROOT, "region.revoke", "{\"owner\": \"hw0\", \"region\": 1, \"force\": 1}",
                              "force");
        expect_invalid_params(f, &ADMIN, "admin.revoke", "{\"owner\": \"hw0\", \"region\": 1}", "owner");
        expect_fail(f, &ADMIN, "admin.audit", "{\"limit\": 0}", E(BROKER_E_INVALID), "invalid_request");
        expect_fail(f, &ADMIN, "admin.audit", "{\"limit\": 1001}", E(BROKER_E_INVALID), "invalid_request");
        expect_invalid_params(f, &ADMIN, "admin.domain_gone", NULL, "domain");
        /* JSON null is absence: optional members take their defaults, required ones are missing. */
        json_object_put(call_ok(f, &VM1, "region.list", "{\"state\": null, \"domain\": null}"));
        expect_invalid_params(f, &ADMIN, "region.get", "{\"region\": null}", "region");
        /* The socket is checked before the params. */
        expect_fail(f, &VM1, "admin.audit", "{\"nope\": 1}", E(BROKER_E_FORBIDDEN), "forbidden");
}

/* A state-changing method sent as a notification (no reply would carry its result) does not run. */
static void test_notification_not_run(void **state) {
        struct fixture *f = *state;
        struct rpc_caller root = ROOT, vm1 = VM1, admin = ADMIN;
        struct shared s = share_ok(f, "nic0", "4KiB", "vm1", "rw");
        char params[128];
        struct json_object *o;

        close(s.fd);
        root.notification = vm1.notification = admin.notification = true;
        expect_fail(f, &root, "region.share",
                    "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096,"
                    " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}", E(BROKER_E_INVALID),
                    "invalid_request");
        snprintf(params, sizeof(params), "{\"domain\": \"vm1\", \"token\": \"%s\"}", s.token[0]);
        expect_fail(f, &vm1, "region.attach", params, E(BROKER_E_INVALID), "invalid_request");
        expect_fail(f, &vm1, "region.release", "{\"domain\": \"vm1\", \"region\": 1}", E(BROKER_E_INVALID),
                    "invalid_request");
        expect_fail(f, &root, "region.revoke", "{\"owner\": \"hw0\", \"region\": 1}", E(BROKER_E_INVALID),
                    "invalid_request");
        expect_fail(f, &admin, "admin.revoke", "{\"region\": 1}", E(BROKER_E_INVALID), "invalid_request");
        expect_fail(f, &admin, "admin.domain_gone", "{\"domain\": \"vm1\"}", E(BROKER_E_INVALID), "invalid_request");
        expect_fail(f, &admin, "admin.reload", NULL, E(BROKER_E_INVALID), "invalid_request");
        expect_fail(f, &admin, "admin.reconcile", NULL, E(BROKER_E_INVALID), "invalid_request");
        /* Nothing happened: one region, still offered, its token unspent, one audit row (the share). */
        assert_int_equal(list_count(f, &ADMIN, NULL), 1);
        assert_string_equal(state_of(f, s.region), "offered");
        o = call_ok(f, &ADMIN, "admin.audit", NULL);
        assert_int_equal(get_len(o, "entries"), 1);
        json_object_put(o);
        /* Methods that change nothing still run (their result is simply not sent). */
        json_object_put(call_ok(f, &vm1, "broker.info", NULL));
        json_object_put(call_ok(f, &vm1, "region.list", NULL));
        close(attach_ok(f, &VM1, "vm1", s.token[0]));
        assert_string_equal(state_of(f, s.region), "active");
}

static void test_undelivered_share(void **state) {
        struct fixture *f = *state;
        struct json_object *share, *o;
        struct reply r;
        bool undone = false, reclaimed = false;

        /* hw0 may hold 4 regions; an undelivered share must give its slot back. */
        for (int i = 0; i < 3; i++)
                close(share_ok(f, "nic0", "4KiB", "vm1", "rw").fd);
        r = call(f, &ROOT, "region.share",
                 "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096,"
                 " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}");
        assert_int_equal(r.q, 0);
        share = r.result;
        r.result = NULL;
        reply_clear(&r); /* the fd went nowhere */
        assert_int_equal(get_int(share, "region"), 4);
        expect_fail(f, &ROOT, "region.share",
                    "{\"owner\": \"hw0\", \"device\": \"nic0\", \"size\": 4096,"
                    " \"peers\": [{\"domain\": \"vm1\", \"access\": \"rw\"}]}", E(BROKER_E_QUOTA), "quota_exceeded");

        methods_undelivered(f->m, &ROOT, "region.share", share);
        json_object_put(share);
        /* The region and its token are gone, the quota and the range free again. */
        assert_string_equal(state_of(f, 4), "gone");
        assert_int_equal(list_count(f, &ADMIN, NULL), 3);
        close(share_ok(f, "nic0", "4KiB", "vm1", "rw").fd);
        o = call_ok(f, &ADMIN, "admin.audit", "{\"limit\": 1000}");
        /* Audited as an undo, down to the reclaim. */
        for (size_t i = 0; i < get_len(o, "entries"); i++) {
                struct json_object *e = get_idx(o, "entries", i);
                if (is_null(e, "region") || get_int(e, "region") != 4)
                        continue;
                undone |= !is_null(e, "reason") && strstr(get_str(e, "reason"), "undelivered");
                reclaimed |= strcmp(get_str(e, "to"), "reclaimed") == 0;
        }
        assert_true(undone);
        assert_true(reclaimed);
        json_object_put(o);

        /* Nothing to take back: a bounce, a method that changes nothing, an unknown one. */
        o = json_tokener_parse("{\"placement\": \"bounce\", \"reason\": \"exhausted\"}");
        methods_undelivered(f->m, &ROOT, "region.share", o);
        methods_undelivered(f->m, &ROOT, "region.get", o);
        methods_undelivered(f->m, &ROOT, "region.nope", o);
        json_object_put(o);
        assert_int_equal(list_count(f, &ADMIN, NULL), 4);
}

static void test_undelivered_attach(void **state) {
        struct fixture *f = *state;
        struct shared s = share_two_peers(f);
        struct json_object *attach, *o, *peer;
        char params[256];
        struct reply r;

        /* Two peers: one attach's reply is lost, the other's arrives. */
        close(attach_ok(f, &VM2, "vm2", s.token[1]));

        snprintf(params, sizeof(params), "{\"domain\": \"vm1\", \"token\": \"%s\"}", s.token[0]);
        r = call(f, &VM1, "region.attach", params);
        assert_int_equal(r.q, 0);
        attach = r.result;
        r.result = NULL;
        reply_clear(&r);
        assert_string_equal(get_str(attach, "domain"), "vm1");
        methods_undelivered(f->m, &VM1, "region.attach", attach);
        json_object_put(attach);

        /* vm1's mapping is released; vm2 keeps its own, the region stays active for it. */
        snprintf(params, sizeof(params), "{\"region\": %" PRIu64 "}", s.region);
        o = call_ok(f, &ADMIN, "region.get", params);
        assert_string_equal(get_str(o, "state"), "active");
        peer = get_idx(o, "peers", 0);
        assert_string_equal(get_str(peer, "domain"), "vm1");
        assert_string_equal(get_str(peer, "state"), "released");
        assert_false(json_object_get_boolean(get(peer, "mapped")));
        assert_string_equal(get_str(get_idx(o, "peers", 1), "state"), "attached");
        json_object_put(o);
}

static void test_uid_known(void **state) {
        struct fixture *f = *state;

        assert_true(methods_uid_known(f->m, 0));
        assert_true(methods_uid_known(f->m, 1000));
        assert_false(methods_uid_known(f->m, 4242));
        assert_false(methods_uid_known(f->m, 1002));
        /* The policy in force decides: uid 1002 is known once a policy gives it vm3. */
        write_file(f->policy, policy_text_vm3);
        json_object_put(call_ok(f, &ADMIN, "admin.reload", NULL));
        assert_true(methods_uid_known(f->m, 1002));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_share_region, setup, teardown),
                cmocka_unit_test_setup_teardown(test_share_bounce, setup, teardown),
                cmocka_unit_test_setup_teardown(test_share_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fd_room, setup, teardown),
                cmocka_unit_test_setup_teardown(test_attach, setup, teardown),
                cmocka_unit_test_setup_teardown(test_release, setup, teardown),
                cmocka_unit_test_setup_teardown(test_release_twice, setup, teardown),
                cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
                cmocka_unit_test_setup_teardown(test_revoke_deadline, setup, teardown),
                cmocka_unit_test_setup_teardown(test_get_list_visibility, setup, teardown),
                cmocka_unit_test_setup_teardown(test_route_lookup, setup, teardown),
                cmocka_unit_test_setup_teardown(test_broker_info, setup, teardown),
                cmocka_unit_test_setup_teardown(test_subscribe, setup, teardown),
                cmocka_unit_test_setup_teardown(test_notifications, setup, teardown),
                cmocka_unit_test_setup_teardown(test_notify_failure_isolated, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_notify_without_server, setup, teardown),
                cmocka_unit_test_setup_teardown(test_admin_forbidden_for_agents, setup, teardown),
                cmocka_unit_test_setup_teardown(test_admin_revoke_and_domain_gone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_admin_domains, setup, teardown),
                cmocka_unit_test_setup_teardown(test_admin_pools, setup, teardown),
                cmocka_unit_test_setup_teardown(test_admin_audit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_admin_audit_newest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_admin_stats, setup, teardown),
                cmocka_unit_test_setup_teardown(test_admin_reload, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reload_narrows_subscriptions, setup, teardown),
                cmocka_unit_test_setup_teardown(test_admin_reload_without_file, setup_no_policy_path, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_method, setup, teardown),
                cmocka_unit_test_setup_teardown(test_identity_everywhere, setup, teardown),
                cmocka_unit_test_setup_teardown(test_u64_integers, setup, teardown),
                cmocka_unit_test_setup_teardown(test_table_checks, setup, teardown),
                cmocka_unit_test_setup_teardown(test_notification_not_run, setup, teardown),
                cmocka_unit_test_setup_teardown(test_undelivered_share, setup, teardown),
                cmocka_unit_test_setup_teardown(test_undelivered_attach, setup, teardown),
                cmocka_unit_test_setup_teardown(test_uid_known, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
