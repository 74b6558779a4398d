/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/policy.h"
#include "util/macro.h"
#include "util/num.h"

#define MiB (UINT64_C(1) << 20)

/* The policy most tests check requests against; mirrors docs/examples/policy.json. */
static const char example_text[] =
        "{\n"
        "  \"agents\": [\n"
        "    { \"user\": \"root\", \"domains\": [\"hw0\", \"vm1\", \"vm2\"] },\n"
        "    { \"uid\": 1000, \"domains\": [\"vm1\"] }\n"
        "  ],\n"
        "  \"shares\": [\n"
        "    { \"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"rw\", \"max_region\": \"64MiB\" },\n"
        "    { \"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm2\"], \"access\": \"ro\" },\n"
        "    { \"sharer\": \"hw0\", \"device\": \"blk0\", \"peers\": [\"vm1\"], \"access\": \"rw\" },\n"
        "    { \"sharer\": \"hw0\", \"device\": \"gpu0\", \"peers\": [\"vm1\", \"vm2\"], \"access\": \"ro\", \"multi_peer\": true }\n"
        "  ],\n"
        "  \"quotas\": [\n"
        "    { \"domain\": \"hw0\", \"max_bytes\": \"1GiB\", \"max_regions\": 64 },\n"
        "    { \"domain\": \"*\", \"max_bytes\": \"256MiB\", \"max_regions\": 16 }\n"
        "  ]\n"
        "}\n";

static struct policy *load_ok(const char *text, size_t n_warnings) {
        struct diag_list diags = DIAG_LIST_INIT;
        struct policy *p = NULL;
        int r;

        r = policy_load_string(text, &p, &diags);
        if (r != 0 || diag_count(&diags, DIAG_WARNING) != n_warnings)
                diag_list_print(&diags, "policy", stderr);
        assert_int_equal(r, 0);
        assert_non_null(p);
        assert_int_equal(diag_count(&diags, DIAG_ERROR), 0);
        assert_int_equal(diag_count(&diags, DIAG_WARNING), n_warnings);
        diag_list_clear(&diags);
        return p;
}

static void assert_diag(const struct diag_list *diags, enum diag_severity sev, const char *path, const char *message) {
        const struct diag *d = diag_find(diags, path);

        if (!d || d->severity != sev || !strstr(d->message, message)) {
                fprintf(stderr, "expected %s at \"%s\" containing \"%s\"; got:\n",
                        sev == DIAG_ERROR ? "error" : "warning", path, message);
                diag_list_print(diags, "policy", stderr);
        }
        assert_non_null(d);
        assert_int_equal(d->severity, sev);
        assert_non_null(strstr(d->message, message));
}

/* Loading fails with -EINVAL, leaves *ret alone, and reports an error at path. */
static void load_fails(const char *text, const char *path, const char *message) {
        struct diag_list diags = DIAG_LIST_INIT;
        struct policy *sentinel = (struct policy *) &diags, *p = sentinel;

        assert_int_equal(policy_load_string(text, &p, &diags), -EINVAL);
        assert_ptr_equal(p, sentinel);
        assert_diag(&diags, DIAG_ERROR, path, message);
        diag_list_clear(&diags);
}

/* A policy with one agent and one share, with the share's extra keys spliced in. */
static void share_fails(const char *share_body, const char *path, const char *message) {
        char text[2048];

        snprintf(text, sizeof(text), "{\"agents\": [], \"shares\": [{%s}]}", share_body);
        load_fails(text, path, message);
}

static int check(const struct policy *p, const char *sharer, const char *device,
                 const struct policy_peer_request *peers, size_t n, uint64_t size,
                 enum broker_code expected_code, const char *expected_message) {
        struct broker_error err = { .code = BROKER_OK };
        int r = policy_check_share(p, sharer, device, peers, n, size, &err);

        if (expected_code == BROKER_OK) {
                if (r != 0)
                        fprintf(stderr, "unexpected %s: %s\n", broker_code_name(err.code), err.message);
                assert_int_equal(r, 0);
                assert_int_equal(err.code, BROKER_OK);
                return r;
        }
        if (err.code != expected_code || (expected_message && !strstr(err.message, expected_message)))
                fprintf(stderr, "got %s: %s\n", broker_code_name(err.code), err.message);
        assert_int_equal(err.code, expected_code);
        assert_int_equal(r, -broker_code_errno(expected_code));
        if (expected_message)
                assert_non_null(strstr(err.message, expected_message));
        return r;
}

#define PEERS(...) ((const struct policy_peer_request[]) { __VA_ARGS__ })
#define NPEERS(...) (sizeof(PEERS(__VA_ARGS__)) / sizeof(struct policy_peer_request))
#define CHECK(p, sharer, device, size, code, msg, ...) \
        check((p), (sharer), (device), PEERS(__VA_ARGS__), NPEERS(__VA_ARGS__), (size), (code), (msg))

static void test_empty_policy_denies_everything(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL;
        uint64_t bytes = 0, regions = 0;

        (void) state;
        p = load_ok("{\"agents\": [], \"shares\": []}", 0);
        assert_int_equal(p->n_agents, 0);
        assert_int_equal(p->n_shares, 0);
        assert_int_equal(p->n_quotas, 0);
        assert_false(policy_agent_may_act(p, 0, "hw0"));
        CHECK(p, "hw0", "nic0", 4096, BROKER_E_FORBIDDEN, "policy does not allow hw0 to share nic0 with vm1",
              { "vm1", ACCESS_RO });
        policy_quota_for(p, "hw0", &bytes, &regions);
        assert_true(bytes == POLICY_DEFAULT_MAX_BYTES);
        assert_true(regions == POLICY_DEFAULT_MAX_REGIONS);
}

static void test_top_level(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL;
        struct diag_list diags = DIAG_LIST_INIT;

        (void) state;
        p = load_ok("{\"$schema\": \"policy.schema.json\", \"agents\": [], \"shares\": [], \"quotas\": []}", 0);

        load_fails("[]", "", "expected an object");
        load_fails("{\"agents\": []}", "", "missing required key \"shares\"");
        load_fails("{\"shares\": []}", "", "missing required key \"agents\"");
        load_fails("{\"agents\": {}, \"shares\": []}", "agents", "expected an array");
        load_fails("{\"agents\": [], \"shares\": null}", "shares", "expected an array");
        load_fails("{\"agents\": [], \"shares\": [], \"quotas\": 3}", "quotas", "expected an array");
        load_fails("{\"agents\": [], \"shares\": [], \"$schema\": 1}", "$schema", "expected a string");
        load_fails("{\"agents\": [], \"shares\": [], \"rules\": []}", "rules", "unknown key");

        /* Every problem in one pass. */
        assert_int_equal(policy_load_string("{\"extra\": 1, \"agents\": [{\"uid\": -1, \"domains\": []}],"
                                            " \"shares\": [{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"wr\"}]}",
                                            &p, &diags), -EINVAL);
        assert_int_equal(diag_count(&diags, DIAG_ERROR), 4);
        assert_diag(&diags, DIAG_ERROR, "extra", "unknown key");
        assert_diag(&diags, DIAG_ERROR, "agents[0].uid", "expected an integer from 0 to 4294967294");
        assert_diag(&diags, DIAG_ERROR, "agents[0].domains", "must list at least one domain");
        assert_diag(&diags, DIAG_ERROR, "shares[0].access", "expected \"ro\" or \"rw\"");
        diag_list_clear(&diags);
}

static void test_json_syntax(void **state) {
        struct diag_list diags = DIAG_LIST_INIT;
        struct policy *p = NULL;
        char deep[200] = "{\"agents\": ";

        (void) state;
        load_fails("{\n  \"agents\": [,]\n}", "", "line 2, column 14");
        load_fails("{\"agents\": [], \"shares\": [],}", "", "invalid JSON at line 1, column 29");
        load_fails("{\"agents\": [], \"shares\": []} x", "", "invalid JSON");
        load_fails("{\"agents\": [", "", "unexpected end of data");
        load_fails("", "", "invalid JSON at line 1, column 1");
        /* What json-c's strict mode still takes: refused whole, with the position and why. */
        load_fails("{'agents': [], 'shares': []}", "", "invalid JSON at line 1, column 2: a single-quoted string");
        load_fails("{\"$schema\": \"p\xc0\xaf\", \"agents\": [], \"shares\": []}", "",
                   "invalid JSON at line 1, column 15: invalid UTF-8");
        load_fails("{\"agents\": [],\n \"shares\": [], \"$schema\": \"\\ud83d\"}", "",
                   "invalid JSON at line 2, column 28: a lone surrogate escape");
        load_fails("{\"agents\": [{\"user\": \"r\xed\xa0\x80t\", \"domains\": [\"hw0\"]}], \"shares\": []}", "",
                   "invalid UTF-8");
        load_fails("{\"agents\": [], \"shares\": [], \"quotas\": [{\"domain\": \"hw0\", \"max_bytes\": 18446744073709551616}]}",
                   "", "integer does not fit in 64 bits");

        /* json-c refuses more than 32 levels instead of recursing on. */
        for (int i = 0; i < 40; i++)
                strcat(deep, "[");
        load_fails(deep, "", "nesting too deep");

        /* 31 levels below the top are fine as JSON, and then wrong as a policy. */
        strcpy(deep, "{\"agents\": [], \"shares\": [], \"quotas\": ");
        for (int i = 0; i < 30; i++)
                strcat(deep, "[");
        for (int i = 0; i < 30; i++)
                strcat(deep, "]");
        strcat(deep, "}");
        load_fails(deep, "quotas[0]", "expected an object");

        assert_int_equal(policy_load_string(NULL, &p, &diags), -EINVAL);
        assert_null(p);
}

static void test_size_limit(void **state) {
        struct diag_list diags = DIAG_LIST_INIT;
        _cleanup_(xfreep) char *big = NULL;
        struct policy *p = NULL;
        const char *prefix = "{\"agents\": [], \"shares\": [], \"$schema\": \"";
        size_t len;

        (void) state;
        /* Exactly at the limit is accepted... */
        len = POLICY_MAX_FILE_SIZE;
        big = malloc(len + 2);
        assert_non_null(big);
        memset(big, 'a', len);
        memcpy(big, prefix, strlen(prefix));
        memcpy(big + len - 2, "\"}", 2);
        big[len] = '\0';
        assert_int_equal(policy_load_string(big, &p, &diags), 0);
        assert_int_equal(diag_count(&diags, DIAG_ERROR), 0);
        policy_free(TAKE_PTR(p));

        /* ...one byte more is not. */
        memcpy(big + len - 2, " \"}", 3);
        big[len + 1] = '\0';
        assert_int_equal(policy_load_string(big, &p, &diags), -EFBIG);
        assert_null(p);
        assert_diag(&diags, DIAG_ERROR, "", "larger than the limit of 4MiB");
        diag_list_clear(&diags);
}

static void test_entry_limits(void **state) {
        _cleanup_(xfreep) char *text = NULL;
        size_t cap = 64 + (size_t) (POLICY_MAX_ENTRIES + 1) * 8, len;
        struct diag_list diags = DIAG_LIST_INIT;
        struct policy *p = NULL;

        (void) state;
        text = malloc(cap);
        assert_non_null(text);

        /* POLICY_MAX_ENTRIES domains for one agent load... */
        len = (size_t) snprintf(text, cap, "{\"shares\": [], \"agents\": [{\"uid\": 1, \"domains\": [");
        for (int i = 0; i < POLICY_MAX_ENTRIES; i++)
                len += (size_t) snprintf(text + len, cap - len, "%s\"d%d\"", i ? "," : "", i);
        snprintf(text + len, cap - len, "]}]}");
        assert_int_equal(policy_load_string(text, &p, &diags), 0);
        assert_int_equal(p->agents[0].n_domains, POLICY_MAX_ENTRIES);
        assert_true(policy_agent_may_act(p, 1, "d4095"));
        policy_free(TAKE_PTR(p));

        /* ...one more does not. */
        snprintf(text + len, cap - len, ",\"d%d\"]}]}", POLICY_MAX_ENTRIES);
        assert_int_equal(policy_load_string(text, &p, &diags), -EINVAL);
        assert_diag(&diags, DIAG_ERROR, "agents[0].domains", "too many entries: 4097 (at most 4096)");
        diag_list_clear(&diags);

        /* The same bound on a top-level array. */
        len = (size_t) snprintf(text, cap, "{\"agents\": [], \"shares\": [], \"quotas\": [");
        for (int i = 0; i <= POLICY_MAX_ENTRIES; i++)
                len += (size_t) snprintf(text + len, cap - len, "%s{}", i ? "," : "");
        snprintf(text + len, cap - len, "]}");
        assert_int_equal(policy_load_string(text, &p, &diags), -EINVAL);
        assert_diag(&diags, DIAG_ERROR, "quotas", "too many entries: 4097 (at most 4096)");
        /* Entries past the limit are not examined one by one. */
        assert_int_equal(diag_count(&diags, DIAG_ERROR), 1);
        diag_list_clear(&diags);
}

static void test_agent_may_act(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL;

        (void) state;
        p = load_ok(example_text, 0);
        assert_true(policy_agent_may_act(p, 0, "hw0"));
        assert_true(policy_agent_may_act(p, 0, "vm2"));
        assert_false(policy_agent_may_act(p, 0, "vm3"));
        assert_true(policy_agent_may_act(p, 1000, "vm1"));
        assert_false(policy_agent_may_act(p, 1000, "vm2"));
        assert_false(policy_agent_may_act(p, 1000, "hw0"));
        assert_false(policy_agent_may_act(p, 1001, "vm1"));
        assert_false(policy_agent_may_act(p, 0, NULL));
        assert_false(policy_agent_may_act(NULL, 0, "hw0"));
        /* Names are compared exactly. */
        assert_false(policy_agent_may_act(p, 0, "HW0"));
        assert_false(policy_agent_may_act(p, 0, "hw"));
}

static void test_agent_user_and_uid(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL;

        (void) state;
        p = load_ok("{\"shares\": [], \"agents\": [{\"user\": \"root\", \"domains\": [\"hw0\"]},"
                    " {\"uid\": 4294967294, \"domains\": [\"vm1\"]}, {\"uid\": 0, \"domains\": [\"vm2\"]}]}", 0);
        assert_int_equal(p->agents[0].uid, 0);
        assert_string_equal(p->agents[0].user, "root");
        assert_int_equal(p->agents[1].uid, 4294967294u);
        assert_null(p->agents[1].user);
        assert_true(policy_agent_may_act(p, 4294967294u, "vm1"));
        /* Two entries for the same uid both count. */
        assert_true(policy_agent_may_act(p, 0, "hw0"));
        assert_true(policy_agent_may_act(p, 0, "vm2"));

        load_fails("{\"shares\": [], \"agents\": [{\"user\": \"root\", \"uid\": 0, \"domains\": [\"hw0\"]}]}",
                   "agents[0]", "has both \"user\" and \"uid\"");
        load_fails("{\"shares\": [], \"agents\": [{\"domains\": [\"hw0\"]}]}", "agents[0]", "needs \"user\" or \"uid\"");
        load_fails("{\"shares\": [], \"agents\": [{\"user\": \"brokerd-no-such-user\", \"domains\": [\"hw0\"]}]}",
                   "agents[0].user", "unknown user \"brokerd-no-such-user\"");
        load_fails("{\"shares\": [], \"agents\": [{\"user\": \"\", \"domains\": [\"hw0\"]}]}",
                   "agents[0].user", "expected a user name of 1 to 256 characters");
        load_fails("{\"shares\": [], \"agents\": [{\"user\": \"ro\\not\", \"domains\": [\"hw0\"]}]}",
                   "agents[0].user", "control character");
        load_fails("{\"shares\": [], \"agents\": [{\"user\": 0, \"domains\": [\"hw0\"]}]}", "agents[0].user", "expected a string");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": 4294967295, \"domains\": [\"hw0\"]}]}",
                   "agents[0].uid", "expected an integer from 0 to 4294967294");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": 18446744073709551615, \"domains\": [\"hw0\"]}]}",
                   "agents[0].uid", "expected an integer from 0 to 4294967294");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": -1, \"domains\": [\"hw0\"]}]}",
                   "agents[0].uid", "expected an integer from 0 to 4294967294");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": \"1000\", \"domains\": [\"hw0\"]}]}",
                   "agents[0].uid", "expected an integer");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": 1000.0, \"domains\": [\"hw0\"]}]}",
                   "agents[0].uid", "expected an integer");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": 1000, \"domains\": [\"hw0\"], \"group\": \"x\"}]}",
                   "agents[0].group", "unknown key");
        load_fails("{\"shares\": [], \"agents\": [7]}", "agents[0]", "expected an object");
}

static void test_agent_domains(void **state) {
        (void) state;
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": 1}]}", "agents[0]", "missing required key \"domains\"");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": 1, \"domains\": []}]}", "agents[0].domains",
                   "must list at least one domain");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": 1, \"domains\": \"vm1\"}]}", "agents[0].domains",
                   "expected an array");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": 1, \"domains\": [\"vm1\", \"vm2\", \"vm1\"]}]}",
                   "agents[0].domains[2]", "domain vm1 is already listed at [0]");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": 1, \"domains\": [\"vm1\", \".vm2\"]}]}",
                   "agents[0].domains[1]", "not a valid name");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": 1, \"domains\": [\"vm 1\"]}]}",
                   "agents[0].domains[0]", "not a valid name");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": 1, \"domains\": [\"*\"]}]}",
                   "agents[0].domains[0]", "not a valid name");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": 1, \"domains\": [\"vm1\\u0000x\"]}]}",
                   "agents[0].domains[0]", "contains a NUL character");
        load_fails("{\"shares\": [], \"agents\": [{\"uid\": 1, \"domains\": [1]}]}",
                   "agents[0].domains[0]", "expected a string");
}

static void test_share_fields(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL;
        struct diag_list diags = DIAG_LIST_INIT;
        struct policy *q = NULL;

        (void) state;
        p = load_ok("{\"agents\": [], \"shares\": ["
                    "{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\"},"
                    "{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\", \"vm2\"], \"access\": \"rw\","
                    " \"multi_peer\": false, \"max_region\": \"0x200000\"},"
                    "{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"rw\", \"max_region\": 4096}]}", 0);
        assert_int_equal(p->n_shares, 3);
        assert_string_equal(p->shares[0].sharer, "hw0");
        assert_string_equal(p->shares[0].device, "nic0");
        assert_int_equal(p->shares[0].n_peers, 1);
        assert_string_equal(p->shares[0].peers[0], "vm1");
        assert_int_equal(p->shares[0].access, ACCESS_RO);
        assert_false(p->shares[0].multi_peer);
        assert_true(p->shares[0].max_region == UINT64_MAX);
        assert_int_equal(p->shares[1].access, ACCESS_RW);
        assert_int_equal(p->shares[1].n_peers, 2);
        assert_true(p->shares[1].max_region == 2 * MiB);
        assert_true(p->shares[2].max_region == 4096);

        share_fails("\"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\"", "shares[0]", "missing required key \"sharer\"");
        share_fails("\"sharer\": \"hw0\", \"peers\": [\"vm1\"], \"access\": \"ro\"", "shares[0]", "missing required key \"device\"");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"access\": \"ro\"", "shares[0]", "missing required key \"peers\"");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"]", "shares[0]", "missing required key \"access\"");
        share_fails("\"sharer\": \"-hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\"", "shares[0].sharer", "not a valid name");
        share_fails("\"sharer\": \"hw0\", \"device\": \"\", \"peers\": [\"vm1\"], \"access\": \"ro\"", "shares[0].device", "not a valid name");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"RW\"", "shares[0].access", "expected \"ro\" or \"rw\"");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": 2", "shares[0].access", "expected \"ro\" or \"rw\"");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"rw\\u0000\"", "shares[0].access", "expected \"ro\" or \"rw\"");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [], \"access\": \"ro\"", "shares[0].peers", "must list at least one peer");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\", \"vm1\"], \"access\": \"ro\"", "shares[0].peers[1]", "peer vm1 is already listed at [0]");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\", \"hw0\"], \"access\": \"ro\"", "shares[0].peers[1]", "hw0 is the sharer");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\", \"multi_peer\": \"yes\"", "shares[0].multi_peer", "expected true or false");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\", \"max_region\": \"64MB\"", "shares[0].max_region", "malformed size");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\", \"max_region\": \"64MiB\\u0000\"", "shares[0].max_region", "contains a NUL character");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\", \"max_region\": 1.5", "shares[0].max_region", "expected a non-negative integer or a string");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\", \"max_region\": -4096", "shares[0].max_region", "must not be negative");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\", \"max_region\": \"16EiB\"", "shares[0].max_region", "does not fit in 64 bits");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\", \"max_region\": 0", "shares[0].max_region", "must be greater than 0");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\", \"max_region\": \"0x0\"", "shares[0].max_region", "must be greater than 0");
        share_fails("\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\", \"colour\": \"blue\"", "shares[0].colour", "unknown key");

        /* multi_peer on a single-peer rule loads, with a warning. */
        assert_int_equal(policy_load_string("{\"agents\": [], \"shares\": [{\"sharer\": \"hw0\", \"device\": \"nic0\","
                                            " \"peers\": [\"vm1\"], \"access\": \"ro\", \"multi_peer\": true}]}", &q, &diags), 0);
        assert_non_null(q);
        assert_int_equal(diag_count(&diags, DIAG_ERROR), 0);
        assert_diag(&diags, DIAG_WARNING, "shares[0].multi_peer", "has no effect");
        assert_true(q->shares[0].multi_peer);
        policy_free(q);
        diag_list_clear(&diags);
}

static void test_quota_fields(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL;

        (void) state;
        p = load_ok("{\"agents\": [], \"shares\": [], \"quotas\": [{\"domain\": \"vm1\"},"
                    " {\"domain\": \"*\", \"max_bytes\": 1048576, \"max_regions\": 0}]}", 0);
        assert_string_equal(p->quotas[0].domain, "vm1");
        assert_true(p->quotas[0].max_bytes == UINT64_MAX);
        assert_true(p->quotas[0].max_regions == UINT64_MAX);
        assert_string_equal(p->quotas[1].domain, "*");
        assert_true(p->quotas[1].max_bytes == MiB);
        assert_true(p->quotas[1].max_regions == 0);

        load_fails("{\"agents\": [], \"shares\": [], \"quotas\": [{\"max_bytes\": 1}]}", "quotas[0]", "missing required key \"domain\"");
        load_fails("{\"agents\": [], \"shares\": [], \"quotas\": [{\"domain\": \"**\"}]}", "quotas[0].domain", "not a valid name");
        load_fails("{\"agents\": [], \"shares\": [], \"quotas\": [{\"domain\": \"vm1\"}, {\"domain\": \"vm2\"}, {\"domain\": \"vm1\"}]}",
                   "quotas[2].domain", "vm1 already has a quota at quotas[0]");
        load_fails("{\"agents\": [], \"shares\": [], \"quotas\": [{\"domain\": \"*\"}, {\"domain\": \"*\"}]}",
                   "quotas[1].domain", "* already has a quota at quotas[0]");
        load_fails("{\"agents\": [], \"shares\": [], \"quotas\": [{\"domain\": \"vm1\", \"max_bytes\": \"1 GiB\"}]}",
                   "quotas[0].max_bytes", "malformed size");
        load_fails("{\"agents\": [], \"shares\": [], \"quotas\": [{\"domain\": \"vm1\", \"max_regions\": \"16\"}]}",
                   "quotas[0].max_regions", "expected a non-negative integer");
        load_fails("{\"agents\": [], \"shares\": [], \"quotas\": [{\"domain\": \"vm1\", \"max_regions\": -1}]}",
                   "quotas[0].max_regions", "expected a non-negative integer");
        load_fails("{\"agents\": [], \"shares\": [], \"quotas\": [{\"domain\": \"vm1\", \"max_size\": 1}]}",
                   "quotas[0].max_size", "unknown key");
}

static void test_quota_lookup(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL, *no_default = NULL;
        uint64_t bytes = 0, regions = 0;

        (void) state;
        p = load_ok(example_text, 0);
        /* Own entry first... */
        policy_quota_for(p, "hw0", &bytes, &regions);
        assert_true(bytes == 1024 * MiB);
        assert_true(regions == 64);
        /* ...else "*"... */
        policy_quota_for(p, "vm1", &bytes, &regions);
        assert_true(bytes == 256 * MiB);
        assert_true(regions == 16);
        policy_quota_for(p, NULL, &bytes, NULL);
        assert_true(bytes == 256 * MiB);

        /* ...else the built-in default; an entry's absent field means unlimited, not the default. */
        no_default = load_ok("{\"agents\": [], \"shares\": [], \"quotas\": [{\"domain\": \"*\", \"max_bytes\": 4096},"
                             " {\"domain\": \"hw0\", \"max_bytes\": 8192}]}", 0);
        policy_quota_for(no_default, "vm9", &bytes, &regions);
        assert_true(bytes == 4096);
        assert_true(regions == UINT64_MAX);
        policy_quota_for(no_default, "hw0", &bytes, &regions);
        assert_true(bytes == 8192);
        policy_free(TAKE_PTR(no_default));

        no_default = load_ok("{\"agents\": [], \"shares\": [], \"quotas\": [{\"domain\": \"hw0\", \"max_regions\": 3}]}", 0);
        policy_quota_for(no_default, "vm1", &bytes, &regions);
        assert_true(bytes == POLICY_DEFAULT_MAX_BYTES);
        assert_true(regions == POLICY_DEFAULT_MAX_REGIONS);
        policy_quota_for(no_default, "hw0", &bytes, &regions);
        assert_true(bytes == UINT64_MAX);
        assert_true(regions == 3);
        policy_quota_for(NULL, "hw0", &bytes, &regions);
        assert_true(regions == POLICY_DEFAULT_MAX_REGIONS);
}

static void test_share_request_validation(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL;
        struct broker_error err = {};
        _cleanup_(xfreep) struct policy_peer_request *many = NULL;

        (void) state;
        p = load_ok(example_text, 0);

        assert_int_equal(policy_check_share(p, "hw0", "nic0", NULL, 0, 4096, &err), -EINVAL);
        assert_int_equal(err.code, BROKER_E_INVALID);
        assert_non_null(strstr(err.message, "at least one peer"));
        CHECK(p, "hw0", "gpu0", 4096, BROKER_E_INVALID, "peer vm1 is listed twice", { "vm1", ACCESS_RO }, { "vm1", ACCESS_RO });
        CHECK(p, "hw0", "nic0", 4096, BROKER_E_INVALID, "hw0 cannot be a peer of its own region", { "hw0", ACCESS_RO });
        CHECK(p, "hw0", "gpu0", 4096, BROKER_E_INVALID, "hw0 cannot be a peer", { "vm1", ACCESS_RO }, { "hw0", ACCESS_RO });
        CHECK(p, "hw0", "nic0", 4096, BROKER_E_INVALID, "invalid access mode", { "vm1", 0 });
        CHECK(p, "hw0", "nic0", 4096, BROKER_E_INVALID, "no domain", { NULL, ACCESS_RO });
        assert_int_equal(policy_check_share(p, NULL, "nic0", PEERS({ "vm1", ACCESS_RO }), 1, 4096, &err), -EINVAL);
        assert_int_equal(policy_check_share(p, "hw0", NULL, PEERS({ "vm1", ACCESS_RO }), 1, 4096, NULL), -EINVAL);

        many = calloc(POLICY_MAX_ENTRIES + 1, sizeof(*many));
        assert_non_null(many);
        for (size_t i = 0; i <= POLICY_MAX_ENTRIES; i++)
                many[i] = (struct policy_peer_request) { "vm1", ACCESS_RO };
        assert_int_equal(policy_check_share(p, "hw0", "gpu0", many, POLICY_MAX_ENTRIES + 1, 4096, &err), -EINVAL);
        assert_non_null(strstr(err.message, "4097 peers, at most 4096"));
}

static void test_share_single_peer(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL;

        (void) state;
        p = load_ok(example_text, 0);

        /* rw rule: rw and ro both allowed, up to max_region. */
        CHECK(p, "hw0", "nic0", 64 * MiB, BROKER_OK, NULL, { "vm1", ACCESS_RW });
        CHECK(p, "hw0", "nic0", 4096, BROKER_OK, NULL, { "vm1", ACCESS_RO });
        CHECK(p, "hw0", "nic0", 128 * MiB, BROKER_E_TOO_LARGE,
              "a region of 128MiB exceeds the policy's max_region of 64MiB for hw0/nic0", { "vm1", ACCESS_RW });
        CHECK(p, "hw0", "nic0", 64 * MiB + 4096, BROKER_E_TOO_LARGE, "a region of 65540KiB exceeds", { "vm1", ACCESS_RO });

        /* ro rule: no max_region, so any size; rw refused. */
        CHECK(p, "hw0", "nic0", UINT64_MAX, BROKER_OK, NULL, { "vm2", ACCESS_RO });
        CHECK(p, "hw0", "nic0", 4096, BROKER_E_FORBIDDEN, "policy allows only ro for hw0/nic0 -> vm2", { "vm2", ACCESS_RW });

        /* No rule for the triple. */
        CHECK(p, "hw0", "nic0", 4096, BROKER_E_FORBIDDEN, "policy does not allow hw0 to share nic0 with vm3", { "vm3", ACCESS_RO });
        CHECK(p, "hw0", "blk0", 4096, BROKER_E_FORBIDDEN, "policy does not allow hw0 to share blk0 with vm2", { "vm2", ACCESS_RO });
        CHECK(p, "hw1", "nic0", 4096, BROKER_E_FORBIDDEN, "policy does not allow hw1 to share nic0 with vm1", { "vm1", ACCESS_RO });
        CHECK(p, "vm1", "nic0", 4096, BROKER_E_FORBIDDEN, "policy does not allow vm1 to share nic0 with vm2", { "vm2", ACCESS_RO });
        CHECK(p, "hw0", "nic1", 4096, BROKER_E_FORBIDDEN, NULL, { "vm1", ACCESS_RO });

        /* A multi_peer rule also covers one of its peers alone. */
        CHECK(p, "hw0", "gpu0", 4096, BROKER_OK, NULL, { "vm2", ACCESS_RO });
        CHECK(p, "hw0", "gpu0", 4096, BROKER_E_FORBIDDEN, "policy allows only ro for hw0/gpu0 -> vm2", { "vm2", ACCESS_RW });
}

static void test_share_multi_peer(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL, *q = NULL;

        (void) state;
        p = load_ok(example_text, 0);

        CHECK(p, "hw0", "gpu0", 256 * MiB, BROKER_OK, NULL, { "vm1", ACCESS_RO }, { "vm2", ACCESS_RO });
        CHECK(p, "hw0", "gpu0", 4096, BROKER_OK, NULL, { "vm2", ACCESS_RO }, { "vm1", ACCESS_RO });
        CHECK(p, "hw0", "gpu0", 4096, BROKER_E_FORBIDDEN, "policy allows only ro for hw0/gpu0 -> vm1",
              { "vm1", ACCESS_RW }, { "vm2", ACCESS_RO });
        CHECK(p, "hw0", "gpu0", 4096, BROKER_E_FORBIDDEN, "policy does not allow hw0 to share gpu0 with vm3",
              { "vm1", ACCESS_RO }, { "vm3", ACCESS_RO });

        /* Both peers are allowed on nic0, but not together. */
        CHECK(p, "hw0", "nic0", 4096, BROKER_E_MULTI_PEER,
              "a region seen by vm1 and vm2 would leak one peer's data to the other; "
              "the policy does not mark this sharing multi_peer",
              { "vm1", ACCESS_RO }, { "vm2", ACCESS_RO });
        /* A peer no rule names is refused for that, not for multi_peer. */
        CHECK(p, "hw0", "nic0", 4096, BROKER_E_FORBIDDEN, "policy does not allow hw0 to share nic0 with vm3",
              { "vm1", ACCESS_RO }, { "vm3", ACCESS_RO });

        q = load_ok("{\"agents\": [], \"shares\": ["
                    "{\"sharer\": \"hw0\", \"device\": \"gpu0\", \"peers\": [\"vm1\", \"vm2\", \"vm3\"], \"access\": \"rw\","
                    " \"multi_peer\": true, \"max_region\": \"2MiB\"},"
                    "{\"sharer\": \"hw0\", \"device\": \"gpu0\", \"peers\": [\"vm1\", \"vm2\"], \"access\": \"rw\"},"
                    "{\"sharer\": \"hw0\", \"device\": \"gpu0\", \"peers\": [\"vm4\", \"vm5\"], \"access\": \"rw\", \"multi_peer\": true},"
                    "{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\", \"vm2\"], \"access\": \"rw\", \"multi_peer\": true}]}", 0);
        /* Any subset of a multi_peer rule's peers. */
        CHECK(q, "hw0", "gpu0", 2 * MiB, BROKER_OK, NULL, { "vm3", ACCESS_RW }, { "vm1", ACCESS_RO });
        CHECK(q, "hw0", "gpu0", 2 * MiB, BROKER_OK, NULL, { "vm1", ACCESS_RW }, { "vm2", ACCESS_RW }, { "vm3", ACCESS_RO });
        /* The multi_peer rule's max_region applies even though a plain rule names the same peers. */
        CHECK(q, "hw0", "gpu0", 4 * MiB, BROKER_E_TOO_LARGE, "a region of 4MiB exceeds the policy's max_region of 2MiB",
              { "vm1", ACCESS_RO }, { "vm2", ACCESS_RO });
        CHECK(q, "hw0", "gpu0", 4 * MiB, BROKER_OK, NULL, { "vm1", ACCESS_RW });
        /* Every peer is named, but no single multi_peer rule covers them all. */
        CHECK(q, "hw0", "gpu0", 4096, BROKER_E_MULTI_PEER, "a region seen by vm1, vm4 and vm3 would leak one peer's data to the others",
              { "vm1", ACCESS_RO }, { "vm4", ACCESS_RO }, { "vm3", ACCESS_RO });
        CHECK(q, "hw0", "gpu0", 4096, BROKER_E_MULTI_PEER, "a region seen by vm1, vm2, vm3 and 1 more would leak",
              { "vm1", ACCESS_RO }, { "vm2", ACCESS_RO }, { "vm3", ACCESS_RO }, { "vm4", ACCESS_RO });
        /* multi_peer on another device does not carry over. */
        CHECK(q, "hw0", "nic0", 4096, BROKER_OK, NULL, { "vm1", ACCESS_RW }, { "vm2", ACCESS_RW });
        CHECK(q, "hw0", "nic0", 4096, BROKER_E_FORBIDDEN, "policy does not allow hw0 to share nic0 with vm3",
              { "vm1", ACCESS_RW }, { "vm3", ACCESS_RW });
}

static void test_share_several_rules(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL;

        (void) state;
        p = load_ok("{\"agents\": [], \"shares\": ["
                    "{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\"},"
                    "{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"rw\", \"max_region\": \"1MiB\"},"
                    "{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"rw\", \"max_region\": \"4MiB\"},"
                    "{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"rw\", \"max_region\": \"2MiB\"},"
                    "{\"sharer\": \"hw0\", \"device\": \"blk0\", \"peers\": [\"vm1\"], \"access\": \"ro\", \"max_region\": \"1MiB\"},"
                    "{\"sharer\": \"hw0\", \"device\": \"blk0\", \"peers\": [\"vm1\"], \"access\": \"rw\", \"max_region\": \"8MiB\"}]}", 0);

        /* Success if any rule allows. */
        CHECK(p, "hw0", "nic0", 8 * MiB, BROKER_OK, NULL, { "vm1", ACCESS_RO });
        CHECK(p, "hw0", "nic0", 3 * MiB, BROKER_OK, NULL, { "vm1", ACCESS_RW });
        /* too_large wins over the ro rule's access failure, and names the largest limit. */
        CHECK(p, "hw0", "nic0", 8 * MiB, BROKER_E_TOO_LARGE, "a region of 8MiB exceeds the policy's max_region of 4MiB for hw0/nic0",
              { "vm1", ACCESS_RW });
        /* The rw rule is the one whose limit counts for ro too. */
        CHECK(p, "hw0", "blk0", 4 * MiB, BROKER_OK, NULL, { "vm1", ACCESS_RO });
        CHECK(p, "hw0", "blk0", 16 * MiB, BROKER_E_TOO_LARGE, "max_region of 8MiB", { "vm1", ACCESS_RO });
}

static void test_check_platform(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL, *bad = NULL;
        struct platform_device devices[] = {
                { .name = (char *) "nic0", .owner = (char *) "hw0" },
                { .name = (char *) "gpu0", .owner = (char *) "hw0" },
                { .name = (char *) "blk0", .owner = (char *) "hw0" },
                { .name = (char *) "nic1", .owner = (char *) "hw1" },
        };
        struct platform platform = { .devices = devices, .n_devices = ELEMENTSOF(devices) };
        struct diag_list diags = DIAG_LIST_INIT;

        (void) state;
        p = load_ok(example_text, 0);
        assert_int_equal(policy_check_platform(p, &platform, &diags), 0);
        assert_int_equal(diags.n, 0);

        bad = load_ok("{\"agents\": [], \"shares\": ["
                      "{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\"},"
                      "{\"sharer\": \"hw1\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"ro\"},"
                      "{\"sharer\": \"hw0\", \"device\": \"nic9\", \"peers\": [\"vm1\"], \"access\": \"ro\"},"
                      "{\"sharer\": \"hw0\", \"device\": \"nic1\", \"peers\": [\"vm1\"], \"access\": \"ro\"}]}", 0);
        assert_int_equal(policy_check_platform(bad, &platform, &diags), -EINVAL);
        assert_int_equal(diag_count(&diags, DIAG_ERROR), 3);
        assert_null(diag_find(&diags, "shares[0].sharer"));
        assert_null(diag_find(&diags, "shares[0].device"));
        assert_diag(&diags, DIAG_ERROR, "shares[1].sharer", "device nic0 is driven by hw0, not hw1");
        assert_diag(&diags, DIAG_ERROR, "shares[2].device", "the platform has no device nic9");
        assert_diag(&diags, DIAG_ERROR, "shares[3].sharer", "device nic1 is driven by hw1, not hw0");
        diag_list_clear(&diags);

        /* An empty platform has no devices for any rule. */
        platform.n_devices = 0;
        assert_int_equal(policy_check_platform(p, &platform, NULL), -EINVAL);
}

static const char *examples_dir(void) {
        const char *d = getenv("BROKERD_EXAMPLES");

        if (!d) {
                fprintf(stderr, "BROKERD_EXAMPLES is not set (run through meson test)\n");
                skip();
        }
        return d;
}

static void test_example_file(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL;
        struct diag_list diags = DIAG_LIST_INIT;
        _cleanup_(xfreep) char *path = NULL;
        int r;

        (void) state;
        assert_true(asprintf(&path, "%s/policy.json", examples_dir()) > 0);
        r = policy_load_file(path, &p, &diags);
        if (r != 0 || diags.n != 0)
                diag_list_print(&diags, path, stderr);
        assert_int_equal(r, 0);
        assert_int_equal(diags.n, 0);
        assert_int_equal(p->n_agents, 2);
        assert_int_equal(p->n_shares, 4);
        assert_int_equal(p->n_quotas, 2);
        assert_true(policy_agent_may_act(p, 0, "hw0"));
        CHECK(p, "hw0", "nic0", 64 * MiB, BROKER_OK, NULL, { "vm1", ACCESS_RW });
        CHECK(p, "hw0", "gpu0", 4096, BROKER_OK, NULL, { "vm1", ACCESS_RO }, { "vm2", ACCESS_RO });
        CHECK(p, "hw0", "nic0", 4096, BROKER_E_MULTI_PEER, NULL, { "vm1", ACCESS_RO }, { "vm2", ACCESS_RO });
}

/* The two example files agree: every rule names a device of the example platform and its owner. */
static void test_example_platform(void **state) {
        _cleanup_(platform_freep) struct platform *platform = NULL;
        _cleanup_(policy_freep) struct policy *p = NULL;
        _cleanup_(xfreep) char *platform_path = NULL, *policy_path = NULL;
        struct diag_list diags = DIAG_LIST_INIT;
        int r;

        (void) state;
        assert_true(asprintf(&platform_path, "%s/platform.json", examples_dir()) > 0);
        assert_true(asprintf(&policy_path, "%s/policy.json", examples_dir()) > 0);
        if (access(platform_path, F_OK) < 0) {
                fprintf(stderr, "%s: not there yet\n", platform_path);
                skip();
        }
        r = platform_load_file(platform_path, &platform, &diags);
        if (r != 0)
                diag_list_print(&diags, platform_path, stderr);
        assert_int_equal(r, 0);
        diag_list_clear(&diags);
        assert_int_equal(policy_load_file(policy_path, &p, &diags), 0);
        r = policy_check_platform(p, platform, &diags);
        if (r != 0)
                diag_list_print(&diags, policy_path, stderr);
        assert_int_equal(r, 0);
        assert_int_equal(diags.n, 0);
}

static char *read_expect_string(struct json_object *o, const char *key) {
        struct json_object *v;

        assert_true(json_object_object_get_ex(o, key, &v));
        if (json_object_is_type(v, json_type_null))
                return NULL;
        assert_true(json_object_is_type(v, json_type_string));
        return strdup(json_object_get_string(v));
}

static void test_broken_examples(void **state) {
        _cleanup_(xfreep) char *pattern = NULL;
        glob_t g = {};
        size_t n = 0;

        (void) state;
        assert_true(asprintf(&pattern, "%s/broken/policy-*.json", examples_dir()) > 0);
        assert_int_equal(glob(pattern, 0, NULL, &g), 0);

        for (size_t i = 0; i < g.gl_pathc; i++) {
                const char *file = g.gl_pathv[i];
                _cleanup_(xfreep) char *expect_path = NULL, *loader_path = NULL, *message = NULL, *schema = NULL;
                struct diag_list diags = DIAG_LIST_INIT;
                struct json_object *expect;
                struct policy *p = NULL;
                const struct diag *d;
                int r;

                assert_true(asprintf(&expect_path, "%.*s.expect", (int) (strlen(file) - strlen(".json")), file) > 0);
                expect = json_object_from_file(expect_path);
                if (!expect)
                        fprintf(stderr, "%s: cannot read\n", expect_path);
                assert_non_null(expect);
                schema = read_expect_string(expect, "schema");
                loader_path = read_expect_string(expect, "loader_path");
                message = read_expect_string(expect, "message");
                json_object_put(expect);
                assert_non_null(schema);
                assert_string_equal(schema, "policy");
                assert_non_null(loader_path);
                assert_non_null(message);

                r = policy_load_file(file, &p, &diags);
                d = diag_find(&diags, loader_path);
                if (r != -EINVAL || !d || d->severity != DIAG_ERROR || !strstr(d->message, message)) {
                        fprintf(stderr, "%s: expected an error at \"%s\" containing \"%s\"; got %d:\n",
                                file, loader_path, message, r);
                        diag_list_print(&diags, file, stderr);
                }
                assert_int_equal(r, -EINVAL);
                assert_null(p);
                assert_non_null(d);
                assert_int_equal(d->severity, DIAG_ERROR);
                assert_non_null(strstr(d->message, message));
                diag_list_clear(&diags);
                n++;
        }
        globfree(&g);
        /* The brief asks for at least these eight cases. */
        assert_true(n >= 8);
}

static void write_file(const char *path, const void *data, size_t len) {
        _cleanup_(closep) int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t) len);
}

static void test_load_file(void **state) {
        char dir[] = "/tmp/test-policy-XXXXXX";
        char good[PATH_MAX], nul[PATH_MAX], big[PATH_MAX], empty[PATH_MAX];
        struct diag_list diags = DIAG_LIST_INIT;
        struct policy *p = NULL;
        _cleanup_(xfreep) char *data = NULL;

        (void) state;
        assert_non_null(mkdtemp(dir));
        snprintf(good, sizeof(good), "%s/good.json", dir);
        snprintf(nul, sizeof(nul), "%s/nul.json", dir);
        snprintf(big, sizeof(big), "%s/big.json", dir);
        snprintf(empty, sizeof(empty), "%s/empty.json", dir);

        write_file(good, example_text, strlen(example_text));
        assert_int_equal(policy_load_file(good, &p, &diags), 0);
        assert_int_equal(diags.n, 0);
        assert_int_equal(p->n_shares, 4);
        policy_free(TAKE_PTR(p));

        write_file(nul, "{\"agents\": [],\n \"shares\": []}\0", 31);
        assert_int_equal(policy_load_file(nul, &p, &diags), -EINVAL);
        assert_null(p);
        assert_diag(&diags, DIAG_ERROR, "", "line 2, column 15: NUL byte");
        diag_list_clear(&diags);

        write_file(empty, "", 0);
        assert_int_equal(policy_load_file(empty, &p, &diags), -EINVAL);
        assert_diag(&diags, DIAG_ERROR, "", "invalid JSON");
        diag_list_clear(&diags);

        data = malloc(POLICY_MAX_FILE_SIZE + 1);
        assert_non_null(data);
        memset(data, ' ', POLICY_MAX_FILE_SIZE + 1);
        write_file(big, data, POLICY_MAX_FILE_SIZE + 1);
        assert_int_equal(policy_load_file(big, &p, &diags), -EFBIG);
        assert_null(p);
        assert_diag(&diags, DIAG_ERROR, "", "larger than the limit of 4MiB");
        diag_list_clear(&diags);
        /* At the limit it is read in full (and is then not JSON). */
        write_file(big, data, POLICY_MAX_FILE_SIZE);
        assert_int_equal(policy_load_file(big, &p, &diags), -EINVAL);
        assert_diag(&diags, DIAG_ERROR, "", "invalid JSON");
        diag_list_clear(&diags);

        assert_int_equal(unlink(good), 0);
        assert_int_equal(policy_load_file(good, &p, &diags), -ENOENT);
        assert_null(p);
        assert_diag(&diags, DIAG_ERROR, "", "cannot open");
        diag_list_clear(&diags);
        assert_int_equal(policy_load_file(dir, &p, NULL), -EISDIR);

        assert_int_equal(unlink(nul), 0);
        assert_int_equal(unlink(empty), 0);
        assert_int_equal(unlink(big), 0);
        assert_int_equal(rmdir(dir), 0);
}

static void test_load_json(void **state) {
        _cleanup_(policy_freep) struct policy *p = NULL;
        struct diag_list diags = DIAG_LIST_INIT;
        struct json_object *root = json_tokener_parse(example_text);

        (void) state;
        assert_non_null(root);
        assert_int_equal(policy_load_json(root, &p, &diags), 0);
        assert_int_equal(diags.n, 0);
        assert_int_equal(p->n_agents, 2);
        json_object_put(root);

        /* Errors found before (by someone else) in the same list do not fail this load. */
        assert_int_equal(diag_add(&diags, DIAG_ERROR, "x", "earlier"), 0);
        policy_free(TAKE_PTR(p));
        root = json_tokener_parse("{\"agents\": [], \"shares\": []}");
        assert_int_equal(policy_load_json(root, &p, &diags), 0);
        assert_non_null(p);
        json_object_put(root);
        diag_list_clear(&diags);

        policy_free(TAKE_PTR(p));
        assert_int_equal(policy_load_json(NULL, &p, &diags), -EINVAL);
        assert_null(p);
        assert_diag(&diags, DIAG_ERROR, "", "expected an object");
        diag_list_clear(&diags);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_empty_policy_denies_everything),
                cmocka_unit_test(test_top_level),
                cmocka_unit_test(test_json_syntax),
                cmocka_unit_test(test_size_limit),
                cmocka_unit_test(test_entry_limits),
                cmocka_unit_test(test_agent_may_act),
                cmocka_unit_test(test_agent_user_and_uid),
                cmocka_unit_test(test_agent_domains),
                cmocka_unit_test(test_share_fields),
                cmocka_unit_test(test_quota_fields),
                cmocka_unit_test(test_quota_lookup),
                cmocka_unit_test(test_share_request_validation),
                cmocka_unit_test(test_share_single_peer),
                cmocka_unit_test(test_share_multi_peer),
                cmocka_unit_test(test_share_several_rules),
                cmocka_unit_test(test_check_platform),
                cmocka_unit_test(test_example_file),
                cmocka_unit_test(test_example_platform),
                cmocka_unit_test(test_broken_examples),
                cmocka_unit_test(test_load_file),
                cmocka_unit_test(test_load_json),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
