/* SPDX-License-Identifier: Apache-2.0 */
/*
 * region.list in pages (docs/protocol.md "Paging") against a real broker (the docs' example
 * platform, sqlite in a temporary directory, the memfd backend) and a real RPC server's limits
 * (never listening): the cursor
 * covers every region exactly once, by increasing id, with and without filters and while
 * regions come and go; limit and the message budget end pages; bad paging params change nothing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend-memfd.h"
#include "core/broker.h"
#include "daemon/methods.h"
#include "rpc/server.h"
#include "util/macro.h"

#include "tmpdir.h"

#define MAX_REGIONS 320
#define E(n) (RPC_BROKER_CODE_BASE + (n))
/* {"jsonrpc":"2.0","id":1,"result":...}: what a reply line adds to its result here. */
#define ENVELOPE 34

static const struct rpc_caller HW0 = { .connection = 1, .uid = 0 };
static const struct rpc_caller VM2 = { .connection = 2, .uid = 1001 };
static const struct rpc_caller ADMIN = { .connection = 3, .uid = 0, .admin = true };

/* uid 1001 sees vm2's regions only; hw0 may hold MAX_REGIONS. */
static const char *policy_text =
        "{\"agents\": [{\"uid\": 0, \"domains\": [\"hw0\", \"vm1\"]}, {\"uid\": 1001, \"domains\": [\"vm2\"]}],"
        " \"shares\": [{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"rw\"},"
        "             {\"sharer\": \"hw0\", \"device\": \"gpu0\", \"peers\": [\"vm1\", \"vm2\"], \"access\": \"ro\","
        "              \"multi_peer\": true}],"
        " \"quotas\": [{\"domain\": \"hw0\", \"max_bytes\": \"1GiB\", \"max_regions\": 1000}]}";

struct fixture {
        char dir[64];
        struct methods *m;
        struct broker *b;
        sd_event *event;
        struct rpc_server *server;
        uint64_t ids[MAX_REGIONS]; /* shared, by increasing id */
        size_t n;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        struct diag_list diags = DIAG_LIST_INIT;
        struct broker_error err = {};
        struct broker_config cfg = {};
        const char *examples = getenv("BROKERD_EXAMPLES");
        char db[128], path[4096];

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/brokerd-list-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(db, sizeof(db), "%s/brokerd.db", f->dir);
        assert_int_equal(methods_new(NULL, &f->m), 0);
        assert_int_equal(sd_event_new(&f->event), 0);
        cfg = (struct broker_config) { .db_path = db, .on_event = methods_on_event, .event_userdata = f->m };
        assert_int_equal(backend_memfd_new(&cfg.backend), 0);
        /* The platform of the docs: pools net0 (2MiB granules), small0 (4KiB) and gpu1, devices nic0 and gpu0. */
        if (!examples)
                fail_msg("BROKERD_EXAMPLES is not set (run through meson test)");
        snprintf(path, sizeof(path), "%s/platform.json", examples);
        assert_int_equal(platform_load_file(path, &cfg.platform, &diags), 0);
        assert_int_equal(policy_load_string(policy_text, &cfg.policy, &diags), 0);
        diag_list_clear(&diags);
        if (broker_new(&cfg, &f->b, &err) < 0)
                fail_msg("broker_new: %s", err.message);
        methods_set_broker(f->m, f->b);
        *state = f;
        return 0;
}

/* The broker goes first: it holds the database in the directory. */
static int teardown(void **state) {
        struct fixture *f = *state;

        broker_free(f->b);
        methods_free(f->m);
        rpc_server_free(f->server);
        sd_event_unref(f->event);
        assert_int_equal(tmpdir_remove(f->dir), 0);
        free(f);
        return 0;
}

/* The daemon's limits with max_message bytes a line (0: no server, the defaults). */
static void set_max_message(struct fixture *f, size_t max_message) {
        struct rpc_server_limits limits = RPC_SERVER_LIMITS_DEFAULT;

        methods_set_server(f->m, NULL);
        rpc_server_free(f->server);
        f->server = NULL;
        if (max_message == 0)
                return;
        limits.max_message = max_message;
        assert_int_equal(rpc_server_new(f->event, &limits, methods_handle, NULL, f->m, &f->server), 0);
        methods_set_server(f->m, f->server);
}

/* 0 and the result (the caller's), or the error's code with name copied to name (64 bytes). */
static int call(struct fixture *f, const struct rpc_caller *c, const char *method, const char *params_text,
                struct json_object **ret, char *name) {
        struct json_object *params = params_text ? json_tokener_parse(params_text) : NULL;
        struct rpc_reply_fds fds = {};
        struct rpc_error err = {};
        int q;

        if (params_text && !params)
                fail_msg("bad test JSON: %s", params_text);
        *ret = NULL;
        q = methods_handle(f->m, c, method, params, &fds, ret, &err);
        json_object_put(params);
        assert_int_equal(rpc_reply_fds_pin(&fds), 0); /* the broker's own, lent: dup'ed to close */
        for (size_t i = 0; i < fds.n; i++)
                close(fds.fds[i]);
        if (q >= 0)
                return 0;
        if (name)
                snprintf(name, 64, "%s", err.name);
        json_object_put(err.data);
        return err.code;
}

static struct json_object *member(struct json_object *o, const char *key) {
        struct json_object *v = NULL;
        return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* Region i: gpu0 with vm1 and vm2 (every third), else nic0 with vm1; a 100-byte label on every fifth. */
static uint64_t share_one(struct fixture *f, size_t i) {
        struct json_object *o;
        char params[512], label[128] = "";
        uint64_t id;

        if (i % 5 == 0)
                snprintf(label, sizeof(label), ", \"label\": \"%0100zu\"", i);
        snprintf(params, sizeof(params), "{\"owner\": \"hw0\", \"device\": \"%s\", \"size\": 4096, \"peers\": %s%s}",
                 i % 3 == 0 ? "gpu0" : "nic0",
                 i % 3 == 0 ? "[{\"domain\": \"vm1\", \"access\": \"ro\"}, {\"domain\": \"vm2\", \"access\": \"ro\"}]"
                            : "[{\"domain\": \"vm1\", \"access\": \"rw\"}]",
                 label);
        assert_int_equal(call(f, &HW0, "region.share", params, &o, NULL), 0);
        id = json_object_get_uint64(member(o, "region"));
        json_object_put(o);
        return id;
}

static void share_many(struct fixture *f, size_t n) {
        for (size_t i = 0; i < n; i++) {
                f->ids[f->n] = share_one(f, f->n);
                assert_true(f->n == 0 || f->ids[f->n] > f->ids[f->n - 1]);
                f->n++;
        }
}

/* A share as if its reply never reached the client: the region is taken down and forgotten. */
static void unshare(struct fixture *f, uint64_t id) {
        struct json_object *result = json_object_new_object();
        char params[64], name[64];

        json_object_object_add(result, "placement", json_object_new_string("region"));
        json_object_object_add(result, "region", json_object_new_uint64(id));
        methods_undelivered(f->m, &HW0, "region.share", result);
        json_object_put(result);
        snprintf(params, sizeof(params), "{\"region\": %" PRIu64 "}", id);
        assert_int_equal(call(f, &ADMIN, "region.get", params, &result, name), E(BROKER_E_NO_SUCH_REGION));
}

/*
 * Pages with filter (a JSON members fragment, "" for none) and limit (0: none given) until next
 * is absent; checks each page (ids rising across pages, next the last id, at most limit, its
 * reply line within max_line bytes unless it holds one region) and stores every id in ids.
 * Between pages it calls between(f, page) when given. Returns the number of ids; pages in *ret_pages.
 */
static size_t walk(struct fixture *f, const struct rpc_caller *c, const char *filter, unsigned limit, size_t max_line,
                   void (*between)(struct fixture *f, unsigned page), uint64_t *ids, unsigned *ret_pages) {
        uint64_t after = 0;
        unsigned pages = 0;
        size_t n = 0;
        bool more = true;

        while (more) {
                struct json_object *o, *regions, *next;
                char params[512], lim[32] = "";
                size_t k, len;

                if (limit)
                        snprintf(lim, sizeof(lim), ", \"limit\": %u", limit);
                snprintf(params, sizeof(params), "{\"after\": %" PRIu64 "%s%s%s}", after, lim, filter[0] ? ", " : "",
                         filter);
                assert_int_equal(call(f, c, "region.list", params, &o, NULL), 0);
                regions = member(o, "regions");
                next = member(o, "next");
                k = json_object_array_length(regions);
                assert_true(!limit || k <= limit);
                assert_true(json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len) != NULL);
                assert_true(k <= 1 || len + ENVELOPE <= max_line);
                for (size_t i = 0; i < k; i++) {
                        uint64_t id = json_object_get_uint64(member(json_object_array_get_idx(regions, i), "region"));
                        assert_true(id > after);
                        assert_true(n < MAX_REGIONS);
                        ids[n++] = after = id;
                }
                more = next != NULL;
                if (more)
                        assert_int_equal(json_object_get_uint64(next), after);
                else
                        assert_int_equal(json_object_object_length(o), 1);
                json_object_put(o);
                pages++;
                if (more && between)
                        between(f, pages);
        }
        if (ret_pages)
                *ret_pages = pages;
        return n;
}

/* What region.get says of region id's member key, as text ("" when it is null). */
static void region_member(struct fixture *f, uint64_t id, const char *key, char *buf, size_t size) {
        struct json_object *o;
        char params[64];

        snprintf(params, sizeof(params), "{\"region\": %" PRIu64 "}", id);
        assert_int_equal(call(f, &ADMIN, "region.get", params, &o, NULL), 0);
        snprintf(buf, size, "%s", json_object_get_string(member(o, key)) ?: "");
        json_object_put(o);
}

static void test_every_region_once(void **state) {
        struct fixture *f = *state;
        static uint64_t seen[MAX_REGIONS];
        unsigned pages;

        share_many(f, 40);
        /* limit 7: 40 regions in 6 pages; 8 (a multiple): the fifth page is the last, with no next. */
        assert_int_equal(walk(f, &ADMIN, "", 7, SIZE_MAX, NULL, seen, &pages), 40);
        assert_int_equal(pages, 6);
        assert_memory_equal(seen, f->ids, 40 * sizeof(seen[0]));
        assert_int_equal(walk(f, &ADMIN, "", 8, SIZE_MAX, NULL, seen, &pages), 40);
        assert_int_equal(pages, 5);
        assert_int_equal(walk(f, &ADMIN, "", 0, SIZE_MAX, NULL, seen, &pages), 40);
        assert_int_equal(pages, 1);
        /* A cursor past everything, and one between ids. */
        assert_int_equal(walk(f, &ADMIN, "", 3, SIZE_MAX, NULL, seen, &pages), 40);
        {
                struct json_object *o;
                char params[96];

                assert_int_equal(call(f, &ADMIN, "region.list", "{\"after\": 18446744073709551615}", &o, NULL), 0);
                assert_int_equal(json_object_array_length(member(o, "regions")), 0);
                assert_null(member(o, "next"));
                json_object_put(o);
                snprintf(params, sizeof(params), "{\"after\": %" PRIu64 ", \"limit\": 1}", f->ids[10] - 1);
                assert_int_equal(call(f, &ADMIN, "region.list", params, &o, NULL), 0);
                assert_int_equal(json_object_get_uint64(member(o, "next")), f->ids[10]);
                json_object_put(o);
        }
}

/* Every filter, with paging, lists exactly the regions region.get says match, by increasing id. */
static void test_filters_page(void **state) {
        static const char *const filters[] = {
                "\"device\": \"gpu0\"", "\"domain\": \"vm2\"", "\"pool\": \"net0\"", "\"state\": \"offered\"",
                "\"domain\": \"vm1\", \"device\": \"nic0\"", "\"state\": \"active\"",
        };
        struct fixture *f = *state;
        static uint64_t seen[MAX_REGIONS], want[MAX_REGIONS];

        share_many(f, 30);
        for (size_t i = 0; i < ELEMENTSOF(filters); i++) {
                size_t n_want = 0, n;

                for (size_t k = 0; k < f->n; k++) {
                        char device[32], pool[32];
                        region_member(f, f->ids[k], "device", device, sizeof(device));
                        region_member(f, f->ids[k], "pool", pool, sizeof(pool));
                        bool gpu = strcmp(device, "gpu0") == 0;
                        bool match[] = { gpu, gpu, strcmp(pool, "net0") == 0, true, !gpu, false };
                        if (match[i])
                                want[n_want++] = f->ids[k];
                }
                n = walk(f, &ADMIN, filters[i], 4, SIZE_MAX, NULL, seen, NULL);
                assert_int_equal(n, n_want);
                assert_memory_equal(seen, want, n * sizeof(seen[0]));
        }
        /* An agent pages through what it may see only: vm2 is a peer of the gpu0 regions. */
        assert_int_equal(walk(f, &VM2, "", 3, SIZE_MAX, NULL, seen, NULL), 10);
        for (size_t k = 0; k < 10; k++)
                assert_int_equal(seen[k], f->ids[3 * k]);
}

/* Between pages: a region not yet listed goes away, one already listed too, and a new one comes. */
static void churn(struct fixture *f, unsigned page) {
        if (page != 2)
                return;
        unshare(f, f->ids[1]);
        unshare(f, f->ids[15]);
        share_many(f, 1);
}

static void test_pages_while_regions_change(void **state) {
        struct fixture *f = *state;
        static uint64_t seen[MAX_REGIONS];
        size_t n;

        share_many(f, 20);
        /* Pages of 5: ids[0..9] are listed before the churn, ids[15] is gone before its page. */
        n = walk(f, &ADMIN, "", 5, SIZE_MAX, churn, seen, NULL);
        assert_int_equal(n, 20);
        assert_memory_equal(seen, f->ids, 15 * sizeof(seen[0]));
        assert_memory_equal(seen + 15, f->ids + 16, 5 * sizeof(seen[0]));
        assert_true(f->ids[20] > f->ids[19]);
}

/*
 * The message budget ends pages before limit does: with max_message 4096 every reply line fits
 * in it; at the smallest max_message (256) every page holds one region; with 1 MiB the default
 * limit (256) ends the first page. Each way every region is listed once.
 */
static void test_budget(void **state) {
        struct fixture *f = *state;
        static uint64_t seen[MAX_REGIONS];
        unsigned pages;

        share_many(f, 300);
        set_max_message(f, 4096);
        assert_int_equal(walk(f, &ADMIN, "", 0, 4096, NULL, seen, &pages), 300);
        assert_memory_equal(seen, f->ids, 300 * sizeof(seen[0]));
        assert_true(pages > 300 / 16 && pages < 300 / 4);
        set_max_message(f, 256);
        assert_int_equal(walk(f, &ADMIN, "", 0, 0, NULL, seen, &pages), 300);
        assert_int_equal(pages, 300);
        set_max_message(f, 1 << 20);
        assert_int_equal(walk(f, &ADMIN, "", 0, 1 << 20, NULL, seen, &pages), 300);
        assert_int_equal(pages, 2);
        set_max_message(f, 0); /* no server: the default 64 KiB */
        assert_int_equal(walk(f, &ADMIN, "", 4096, 65536, NULL, seen, &pages), 300);
        assert_true(pages >= 2);
        assert_memory_equal(seen, f->ids, 300 * sizeof(seen[0]));
}

static void test_bad_params(void **state) {
        static const struct {
                const char *params;
                int code;
        } bad[] = {
                { "{\"limit\": 0}", E(BROKER_E_INVALID) },
                { "{\"limit\": 4097}", E(BROKER_E_INVALID) },
                { "{\"limit\": -1}", RPC_INVALID_PARAMS },
                { "{\"limit\": 1.5}", RPC_INVALID_PARAMS },
                { "{\"limit\": \"many\"}", RPC_INVALID_PARAMS },
                { "{\"limit\": true}", RPC_INVALID_PARAMS },
                { "{\"after\": \"abc\"}", RPC_INVALID_PARAMS },
                { "{\"after\": -3}", RPC_INVALID_PARAMS },
                { "{\"after\": 2.5}", RPC_INVALID_PARAMS },
                { "{\"after\": [1]}", RPC_INVALID_PARAMS },
                { "{\"cursor\": 1}", RPC_INVALID_PARAMS },
        };
        struct fixture *f = *state;
        static uint64_t seen[MAX_REGIONS];
        struct json_object *o;

        share_many(f, 5);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char name[64] = "";
                int code = call(f, &ADMIN, "region.list", bad[i].params, &o, name);
                if (code != bad[i].code)
                        fail_msg("%s: expected %d, got %d %s", bad[i].params, bad[i].code, code, name);
                assert_null(o);
        }
        assert_int_equal(walk(f, &ADMIN, "", 2, SIZE_MAX, NULL, seen, NULL), 5);
        assert_memory_equal(seen, f->ids, 5 * sizeof(seen[0]));
        /* The bounds themselves, and null as absent. */
        assert_int_equal(call(f, &ADMIN, "region.list", "{\"limit\": 4096, \"after\": null}", &o, NULL), 0);
        assert_int_equal(json_object_array_length(member(o, "regions")), 5);
        json_object_put(o);
        assert_int_equal(call(f, &ADMIN, "region.list", "{\"limit\": 1, \"after\": \"0x0\"}", &o, NULL), 0);
        assert_int_equal(json_object_get_uint64(member(o, "next")), f->ids[0]);
        json_object_put(o);
}

/* Each test on a broker of its own. */
#define TEST(t) cmocka_unit_test_setup_teardown(t, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                TEST(test_every_region_once), TEST(test_filters_page), TEST(test_pages_while_regions_change),
                TEST(test_budget),            TEST(test_bad_params),
        };
        return cmocka_run_group_tests_name("region.list pages", tests, NULL, NULL);
}
