/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libbrokerd-client against a socketpair whose far end is the test itself, writing canned
 * reply lines (and SCM_RIGHTS descriptors) the way the daemon frames them (client-fake.h).
 * This tests the client's framing, not the daemon. Replies are written before the call that
 * reads them: the socket buffers them, so nothing here depends on timing. Plus brokerctl's
 * argument parsing and output formatting. Doorbells: test-client-doorbells.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client-fake.h"
#include "client/brokerctl-util.h"
#include "client/brokerd-client.h"
#include "client/table.h"
#include "util/macro.h"

#define SENTINEL UINT64_C(0x5a5a5a5a5a5a5a5a)

static void test_call_result(void **state) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        struct json_object *result = NULL, *req, *params;
        struct pair p;

        (void) state;
        pair_open(&p);
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"version\":\"0.1.0\"}}");
        assert_int_equal(bdc_call(p.c, "broker.info", NULL, &result, NULL, NULL, &err), 0);
        assert_string_equal(member_string(result, "version"), "0.1.0");
        json_object_put(result);

        req = read_request(p.peer);
        assert_string_equal(member_string(req, "jsonrpc"), "2.0");
        assert_string_equal(member_string(req, "method"), "broker.info");
        assert_int_equal(member_int(req, "id"), 1);
        params = member(req, "params");
        assert_true(json_object_is_type(params, json_type_object));
        assert_int_equal(json_object_object_length(params), 0);
        json_object_put(req);

        /* Given params are sent as they are, and a string with a newline stays one line. */
        params = json_tokener_parse("{\"label\":\"two\\nlines\"}");
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}");
        assert_int_equal(bdc_call(p.c, "region.list", params, NULL, NULL, NULL, &err), 0);
        req = read_request(p.peer);
        assert_int_equal(member_int(req, "id"), 2);
        assert_string_equal(member_string(member(req, "params"), "label"), "two\nlines");
        json_object_put(req);
        json_object_put(params); /* borrowed: still ours */

        /* Failing: a reply for another id breaks the connection for good. */
        result = NULL;
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}");
        assert_int_equal(bdc_call(p.c, "broker.info", NULL, &result, NULL, NULL, &err), -EBADMSG);
        assert_null(result);
        assert_int_equal(err.code, 0);
        assert_string_equal(err.name, "protocol_error");
        assert_int_equal(bdc_call(p.c, "broker.info", NULL, &result, NULL, NULL, &err), -ECONNRESET);
        assert_string_equal(err.name, "disconnected");
        assert_null(result);
        pair_close(&p);
}

static void test_call_buffered_replies(void **state) {
        struct json_object *result = NULL;
        struct pair p;

        (void) state;
        pair_open(&p);
        /* Both replies arrive in one read: the second waits in the buffer for its call. */
        send_raw(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"n\":1}}\n"
                         "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"n\":2}}\n");
        assert_int_equal(bdc_call(p.c, "a", NULL, &result, NULL, NULL, NULL), 0);
        assert_int_equal(member_int(result, "n"), 1);
        json_object_put(result);
        assert_int_equal(bdc_call(p.c, "b", NULL, &result, NULL, NULL, NULL), 0);
        assert_int_equal(member_int(result, "n"), 2);
        json_object_put(result);

        /* A reply split over several writes is put back together. */
        send_raw(p.peer, "{\"jsonrpc\":\"2.0\",");
        send_raw(p.peer, "\"id\":3,\"result\":{\"n\":");
        send_raw(p.peer, "3}}\n");
        assert_int_equal(bdc_call(p.c, "c", NULL, &result, NULL, NULL, NULL), 0);
        assert_int_equal(member_int(result, "n"), 3);
        json_object_put(result);

        /* Failing: a line that is not JSON, and trailing garbage after a message. */
        result = NULL;
        send_raw(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{}} x\n");
        assert_int_equal(bdc_call(p.c, "d", NULL, &result, NULL, NULL, NULL), -EBADMSG);
        assert_null(result);
        pair_close(&p);

        pair_open(&p);
        send_raw(p.peer, "not json\n");
        assert_int_equal(bdc_call(p.c, "d", NULL, &result, NULL, NULL, NULL), -EBADMSG);
        pair_close(&p);

        /* Failing: a batch (we never send one) and a request from the daemon. */
        pair_open(&p);
        send_line(p.peer, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]");
        assert_int_equal(bdc_call(p.c, "d", NULL, &result, NULL, NULL, NULL), -EBADMSG);
        pair_close(&p);
        pair_open(&p);
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}");
        assert_int_equal(bdc_call(p.c, "d", NULL, &result, NULL, NULL, NULL), -EBADMSG);
        assert_null(result);
        pair_close(&p);
}

static void test_notifications_queued(void **state) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        struct json_object *result = NULL;
        struct bdc_event ev = {};
        struct pair p;

        (void) state;
        pair_open(&p);
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"method\":\"region.attached\",\"params\":{\"region\":3,\"domain\":\"vm1\"}}");
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"method\":\"region.recall\",\"params\":{\"region\":4,\"domain\":null}}");
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"domains\":[\"hw0\"]}}");
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"method\":\"region.reclaimed\"}");
        assert_int_equal(bdc_call(p.c, "events.subscribe", NULL, &result, NULL, NULL, &err), 0);
        json_object_put(result);

        /* In arrival order, the one after the reply included; then nothing. */
        assert_int_equal(bdc_next_event(p.c, 0, &ev), 0);
        assert_string_equal(ev.method, "region.attached");
        assert_int_equal(member_int(ev.params, "region"), 3);
        assert_string_equal(member_string(ev.params, "domain"), "vm1");
        bdc_event_clear(&ev);
        assert_int_equal(bdc_next_event(p.c, 0, &ev), 0);
        assert_string_equal(ev.method, "region.recall");
        assert_int_equal(member_int(ev.params, "region"), 4);
        bdc_event_clear(&ev);
        assert_int_equal(bdc_next_event(p.c, 0, &ev), 0);
        assert_string_equal(ev.method, "region.reclaimed");
        assert_true(json_object_is_type(ev.params, json_type_object)); /* no params: {} */
        bdc_event_clear(&ev);
        assert_int_equal(bdc_next_event(p.c, 0, &ev), -ETIMEDOUT);
        assert_null(ev.params);

        /* Read straight from the socket when nothing is queued, with a timeout too. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"method\":\"route.changed\",\"params\":{\"region\":0}}");
        assert_int_equal(bdc_next_event(p.c, 1000, &ev), 0);
        assert_string_equal(ev.method, "route.changed");
        bdc_event_clear(&ev);
        assert_int_equal(bdc_next_event(p.c, 1, &ev), -ETIMEDOUT);

        /* The descriptor polls readable when something waits. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"method\":\"region.released\",\"params\":{\"region\":3}}");
        {
                struct pollfd pfd = { .fd = bdc_fd(p.c), .events = POLLIN };
                assert_int_equal(poll(&pfd, 1, 0), 1);
        }
        assert_int_equal(bdc_next_event(p.c, 0, &ev), 0);
        bdc_event_clear(&ev);

        /* Failing: a response nobody asked for. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{}}");
        assert_int_equal(bdc_next_event(p.c, 0, &ev), -EBADMSG);
        assert_null(ev.params);
        pair_close(&p);

        /* Failing: a notification whose params are not an object. */
        pair_open(&p);
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"method\":\"region.recall\",\"params\":[1]}");
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
        assert_int_equal(bdc_call(p.c, "events.subscribe", NULL, NULL, NULL, NULL, &err), -EBADMSG);
        assert_string_equal(err.name, "protocol_error");
        pair_close(&p);
}

static void test_connection_closed(void **state) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        struct json_object *result = NULL;
        struct bdc_event ev = {};
        struct pair p;

        (void) state;
        /* Closed before any reply. */
        pair_open(&p);
        close(p.peer);
        p.peer = -1;
        assert_int_equal(bdc_call(p.c, "broker.info", NULL, &result, NULL, NULL, &err), -ECONNRESET);
        assert_string_equal(err.name, "disconnected");
        assert_null(result);
        pair_close(&p);

        /* Closed in the middle of a line, after a notification: the event is still handed out. */
        pair_open(&p);
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"method\":\"region.recall\",\"params\":{\"region\":1}}");
        send_raw(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":1,");
        shutdown(p.peer, SHUT_WR);
        assert_int_equal(bdc_call(p.c, "broker.info", NULL, &result, NULL, NULL, &err), -ECONNRESET);
        assert_int_equal(bdc_next_event(p.c, 0, &ev), 0);
        assert_string_equal(ev.method, "region.recall");
        bdc_event_clear(&ev);
        assert_int_equal(bdc_next_event(p.c, 0, &ev), -ECONNRESET);
        assert_int_equal(bdc_next_event(p.c, -1, &ev), -ECONNRESET);
        pair_close(&p);

        /* Waiting for events when the daemon goes away. */
        pair_open(&p);
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"method\":\"region.revoked\",\"params\":{\"region\":2}}");
        close(p.peer);
        p.peer = -1;
        assert_int_equal(bdc_next_event(p.c, -1, &ev), 0);
        assert_string_equal(ev.method, "region.revoked");
        bdc_event_clear(&ev);
        assert_int_equal(bdc_next_event(p.c, -1, &ev), -ECONNRESET);
        pair_close(&p);

        /* The daemon explaining why it drops us (id null) ends the event stream. */
        pair_open(&p);
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":1002,\"message\":\"too slow\","
                          "\"data\":{\"name\":\"limit_exceeded\"}}}");
        assert_int_equal(bdc_next_event(p.c, 0, &ev), -ECONNRESET);
        pair_close(&p);
}

static void test_error_reply(void **state) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        struct json_object *result = NULL, *diags;
        int fds[2] = { -1, -1 };
        size_t n_fds = 2;
        struct pair p;

        (void) state;
        pair_open(&p);
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1017,\"message\":\"no region 9\","
                          "\"data\":{\"name\":\"no_such_region\"}}}");
        assert_int_equal(bdc_call(p.c, "region.get", NULL, &result, fds, &n_fds, &err), -ENOENT);
        assert_null(result);
        assert_int_equal(n_fds, 2); /* untouched */
        assert_int_equal(fds[0], -1);
        assert_int_equal(err.code, 1017);
        assert_string_equal(err.name, "no_such_region");
        assert_string_equal(bdc_error_name(&err), "no_such_region");
        assert_string_equal(err.message, "no region 9");
        assert_non_null(err.data);

        /* The same err again: the old data is released (valgrind watches). */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":1001,\"message\":\"bad policy\","
                          "\"data\":{\"name\":\"invalid_request\",\"diagnostics\":[\"shares[0].access: bad\"]}}}");
        assert_int_equal(bdc_call(p.c, "admin.reload", NULL, &result, NULL, NULL, &err), -EINVAL);
        assert_string_equal(err.name, "invalid_request");
        diags = member(err.data, "diagnostics");
        assert_int_equal(json_object_array_length(diags), 1);
        assert_string_equal(json_object_get_string(json_object_array_get_idx(diags, 0)), "shares[0].access: bad");

        /* A standard code has no name; bdc_error_name() still gives one. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32601,\"message\":\"Method not found\"}}");
        assert_int_equal(bdc_call(p.c, "nope", NULL, &result, NULL, NULL, &err), -EOPNOTSUPP);
        assert_int_equal(err.code, -32601);
        assert_string_equal(err.name, "");
        assert_null(err.data);
        assert_string_equal(bdc_error_name(&err), "method_not_found");

        /* A connection-level error (id null) answers the request that was waiting. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":1002,\"message\":\"too many\","
                          "\"data\":{\"name\":\"limit_exceeded\"}}}");
        assert_int_equal(bdc_call(p.c, "broker.info", NULL, &result, NULL, NULL, &err), -E2BIG);
        assert_string_equal(err.name, "limit_exceeded");

        /* Each code maps to its errno. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":5,\"error\":{\"code\":1008,\"message\":\"q\","
                          "\"data\":{\"name\":\"quota_exceeded\"}}}");
        assert_int_equal(bdc_call(p.c, "region.share", NULL, &result, NULL, NULL, &err), -EDQUOT);
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":6,\"error\":{\"code\":1005,\"message\":\"no\","
                          "\"data\":{\"name\":\"forbidden\"}}}");
        assert_int_equal(bdc_call(p.c, "region.share", NULL, &result, NULL, NULL, NULL), -EACCES);

        /* Failing: an error object without a code. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"message\":\"?\"}}");
        assert_int_equal(bdc_call(p.c, "x", NULL, &result, NULL, NULL, &err), -EBADMSG);
        assert_string_equal(err.name, "protocol_error");
        assert_null(err.data);

        /* Failing: neither result nor error. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":8}");
        assert_int_equal(bdc_call(p.c, "x", NULL, &result, NULL, NULL, &err), -EBADMSG);
        assert_null(result);
        pair_close(&p);
}

static void test_fds_received(void **state) {
        struct json_object *result = NULL;
        struct probe a, b;
        int fds[4] = { -1, -1, -1, -1 };
        size_t n_fds;
        struct stat st1, st2;
        struct pair p;

        (void) state;
        pair_open(&p);
        probe_open(&a);
        probe_open(&b);

        /* A notification first, then the reply carrying two descriptors. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"method\":\"region.attached\",\"params\":{\"region\":1}}");
        send_line_fds(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"fd\":0}}", (int[]) { a.wr, b.wr }, 2);
        n_fds = ELEMENTSOF(fds);
        assert_int_equal(bdc_call(p.c, "region.attach", NULL, &result, fds, &n_fds, NULL), 0);
        json_object_put(result);
        assert_int_equal(n_fds, 2);
        assert_int_equal(fstat(fds[0], &st1), 0);
        assert_int_equal(fstat(a.wr, &st2), 0);
        assert_int_equal(st1.st_ino, st2.st_ino);
        assert_int_equal(fcntl(fds[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
        assert_int_equal(fstat(fds[1], &st1), 0);
        assert_int_equal(fstat(b.wr, &st2), 0);
        assert_int_equal(st1.st_ino, st2.st_ino);
        /* Ours now: the probes see our copies still open. */
        assert_false(probe_all_closed(&a));
        close(fds[0]);
        close(fds[1]);
        assert_true(probe_all_closed(&a));
        assert_true(probe_all_closed(&b));
        probe_close(&a);
        probe_close(&b);

        /* Capacity 1: the second descriptor is closed, not leaked. */
        probe_open(&a);
        probe_open(&b);
        send_line_fds(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}", (int[]) { a.wr, b.wr }, 2);
        n_fds = 1;
        assert_int_equal(bdc_call(p.c, "region.attach", NULL, NULL, fds, &n_fds, NULL), 0);
        assert_int_equal(n_fds, 1);
        assert_true(probe_all_closed(&b));
        assert_false(probe_all_closed(&a));
        close(fds[0]);
        assert_true(probe_all_closed(&a));
        probe_close(&a);
        probe_close(&b);

        /* No room at all, and an error reply: closed as well. */
        probe_open(&a);
        send_line_fds(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}", &a.wr, 1);
        assert_int_equal(bdc_call(p.c, "region.attach", NULL, NULL, NULL, NULL, NULL), 0);
        assert_true(probe_all_closed(&a));
        probe_close(&a);
        probe_open(&a);
        send_line_fds(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":4,\"error\":{\"code\":1018,\"message\":\"t\"}}", &a.wr, 1);
        n_fds = ELEMENTSOF(fds);
        fds[0] = -1;
        assert_int_equal(bdc_call(p.c, "region.attach", NULL, NULL, fds, &n_fds, NULL), -ENOKEY);
        assert_int_equal(n_fds, ELEMENTSOF(fds));
        assert_int_equal(fds[0], -1);
        assert_true(probe_all_closed(&a));
        probe_close(&a);

        /* A descriptor that comes with a notification, outside any call, is closed. */
        probe_open(&a);
        send_line_fds(p.peer, "{\"jsonrpc\":\"2.0\",\"method\":\"region.recall\",\"params\":{\"region\":1}}", &a.wr, 1);
        {
                struct bdc_event ev = {};

                /* First the one queued during the first call, then this one. */
                assert_int_equal(bdc_next_event(p.c, 0, &ev), 0);
                assert_string_equal(ev.method, "region.attached");
                bdc_event_clear(&ev);
                assert_int_equal(bdc_next_event(p.c, 0, &ev), 0);
                assert_string_equal(ev.method, "region.recall");
                bdc_event_clear(&ev);
        }
        assert_true(probe_all_closed(&a));
        probe_close(&a);
        pair_close(&p);
}

static void test_share(void **state) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        _cleanup_(closep) int memfd = -EBADF;
        const struct bdc_peer peers[] = { { "vm1", BDC_ACCESS_RW }, { "vm2", BDC_ACCESS_RO } };
        struct bdc_share_request req = {
                .owner = "hw0", .device = "nic0", .size = 65536, .peers = peers, .n_peers = 2, .label = "rx ring",
        };
        struct bdc_share_result res = { .fd = -1 }, untouched;
        struct json_object *r, *params, *jpeers;
        struct probe a;
        struct pair p;
        void *mem = NULL;

        (void) state;
        memfd = memfd_create("test-client", MFD_CLOEXEC);
        assert_true(memfd >= 0);
        assert_int_equal(ftruncate(memfd, 65536), 0);
        assert_int_equal(pwrite(memfd, "hello", 5, 0), 5);

        pair_open(&p);
        send_line_fds(p.peer,
                      "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"placement\":\"region\",\"region\":7,"
                      "\"base\":\"0x40000000\",\"size\":65536,\"alignment\":4096,\"pool\":\"net0\","
                      "\"tokens\":[{\"domain\":\"vm1\",\"token\":\"t-one\"},{\"domain\":\"vm2\",\"token\":\"t-two\"}],"
                      "\"fd\":0}}",
                      &memfd, 1);
        assert_int_equal(bdc_share(p.c, &req, &res, &err), 0);
        assert_int_equal(res.placement, BDC_PLACEMENT_REGION);
        assert_int_equal(res.region, 7);
        assert_int_equal(res.base, 0x40000000);
        assert_int_equal(res.size, 65536);
        assert_int_equal(res.alignment, 4096);
        assert_string_equal(res.pool, "net0");
        assert_int_equal(res.n_tokens, 2);
        assert_string_equal(res.tokens[0].domain, "vm1");
        assert_string_equal(res.tokens[0].token, "t-one");
        assert_string_equal(res.tokens[1].domain, "vm2");
        assert_string_equal(res.tokens[1].token, "t-two");
        assert_null(res.reason);
        assert_true(res.fd >= 0);
        assert_int_equal(bdc_map(res.fd, res.size, true, &mem), 0);
        assert_memory_equal(mem, "hello", 5);
        munmap(mem, 65536);

        r = read_request(p.peer);
        assert_string_equal(member_string(r, "method"), "region.share");
        params = member(r, "params");
        assert_string_equal(member_string(params, "owner"), "hw0");
        assert_string_equal(member_string(params, "device"), "nic0");
        assert_int_equal(member_int(params, "size"), 65536);
        assert_string_equal(member_string(params, "label"), "rx ring");
        assert_null(member(params, "numa_node")); /* not asked for */
        assert_null(member(params, "alignment"));
        assert_null(member(params, "base"));
        jpeers = member(params, "peers");
        assert_int_equal(json_object_array_length(jpeers), 2);
        assert_string_equal(member_string(json_object_array_get_idx(jpeers, 0), "domain"), "vm1");
        assert_string_equal(member_string(json_object_array_get_idx(jpeers, 0), "access"), "rw");
        assert_string_equal(member_string(json_object_array_get_idx(jpeers, 1), "access"), "ro");
        json_object_put(r);
        bdc_share_result_clear(&res);
        assert_int_equal(res.fd, -1);

        /* Place mode and a NUMA node 0 are sent when asked for. */
        req.place = true;
        req.base = 0x80000000;
        req.has_numa_node = true;
        req.numa_node = 0;
        req.alignment = 2 * 1024 * 1024;
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"placement\":\"bounce\",\"reason\":\"no room\"}}");
        assert_int_equal(bdc_share(p.c, &req, &res, &err), 0);
        assert_int_equal(res.placement, BDC_PLACEMENT_BOUNCE);
        assert_string_equal(res.reason, "no room");
        assert_int_equal(res.fd, -1);
        assert_int_equal(res.n_tokens, 0);
        bdc_share_result_clear(&res);
        r = read_request(p.peer);
        params = member(r, "params");
        assert_string_equal(member_string(params, "base"), "0x80000000");
        assert_int_equal(member_int(params, "numa_node"), 0);
        assert_int_equal(member_int(params, "alignment"), 2 * 1024 * 1024);
        json_object_put(r);

        /* A backend that maps into VMs (libvirt) passes no fd: fd is -1, not an error. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"placement\":\"region\",\"region\":9,"
                          "\"base\":\"0x2000\",\"size\":4096,\"alignment\":4096,\"pool\":\"p\",\"tokens\":[]}}");
        assert_int_equal(bdc_share(p.c, &req, &res, &err), 0);
        assert_int_equal(res.placement, BDC_PLACEMENT_REGION);
        assert_int_equal(res.region, 9);
        assert_int_equal(res.fd, -1);
        bdc_share_result_clear(&res);
        json_object_put(read_request(p.peer));

        /* Failing: "fd" names a descriptor that did not come; the one that did is closed and
         * the result is untouched. */
        probe_open(&a);
        send_line_fds(p.peer,
                      "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"placement\":\"region\",\"region\":8,"
                      "\"base\":\"0x1000\",\"size\":4096,\"tokens\":[],\"fd\":1}}",
                      &a.wr, 1);
        memset(&untouched, 0x5a, sizeof(untouched));
        res = untouched;
        assert_int_equal(bdc_share(p.c, &req, &res, &err), -EBADMSG);
        assert_string_equal(err.name, "protocol_error");
        assert_memory_equal(&res, &untouched, sizeof(res));
        assert_true(probe_all_closed(&a));
        probe_close(&a);
        json_object_put(read_request(p.peer));

        /* Failing: a daemon error is passed through. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":5,\"error\":{\"code\":1006,\"message\":\"one peer\","
                          "\"data\":{\"name\":\"multi_peer_forbidden\"}}}");
        assert_int_equal(bdc_share(p.c, &req, &res, &err), -EACCES);
        assert_string_equal(err.name, "multi_peer_forbidden");
        assert_memory_equal(&res, &untouched, sizeof(res));
        json_object_put(read_request(p.peer));

        /* Failing: an invalid request never reaches the wire. */
        req.owner = NULL;
        assert_int_equal(bdc_share(p.c, &req, &res, &err), -EINVAL);
        assert_string_equal(err.name, "invalid_argument");
        pair_close(&p);
}

static void test_attach_release_revoke_subscribe(void **state) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        _cleanup_(closep) int memfd = -EBADF;
        struct bdc_attach_result res = { .fd = -1 }, untouched = { .region = 99, .fd = -7 };
        const char *const domains[] = { "vm1", "vm2" };
        struct json_object *r, *params;
        struct pair p;
        void *mem = NULL;

        (void) state;
        memfd = memfd_create("test-client", MFD_CLOEXEC);
        assert_true(memfd >= 0);
        assert_int_equal(ftruncate(memfd, 8192), 0);

        pair_open(&p);
        send_line_fds(p.peer,
                      "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"region\":5,\"base\":\"0x2000\",\"size\":8192,"
                      "\"access\":\"ro\",\"fd\":0}}",
                      &memfd, 1);
        assert_int_equal(bdc_attach(p.c, "vm2", "tok", &res, &err), 0);
        assert_int_equal(res.region, 5);
        assert_int_equal(res.base, 0x2000);
        assert_int_equal(res.size, 8192);
        assert_int_equal(res.access, BDC_ACCESS_RO);
        assert_true(res.fd >= 0);
        assert_int_equal(bdc_map(res.fd, res.size, false, &mem), 0);
        munmap(mem, 8192);
        r = read_request(p.peer);
        assert_string_equal(member_string(r, "method"), "region.attach");
        assert_string_equal(member_string(member(r, "params"), "domain"), "vm2");
        assert_string_equal(member_string(member(r, "params"), "token"), "tok");
        json_object_put(r);
        bdc_attach_result_clear(&res);

        /* Failing: an access the protocol does not know. */
        send_line_fds(p.peer,
                      "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"region\":5,\"base\":\"0x2000\",\"size\":8192,"
                      "\"access\":\"rx\",\"fd\":0}}",
                      &memfd, 1);
        res = untouched;
        assert_int_equal(bdc_attach(p.c, "vm2", "tok", &res, &err), -EBADMSG);
        assert_int_equal(res.region, 99);
        assert_int_equal(res.fd, -7);
        json_object_put(read_request(p.peer));
        pair_close(&p);

        pair_open(&p);
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"region\":5,\"state\":\"active\"}}");
        assert_int_equal(bdc_release(p.c, "vm1", 5, &err), 0);
        r = read_request(p.peer);
        assert_string_equal(member_string(r, "method"), "region.release");
        assert_int_equal(member_int(member(r, "params"), "region"), 5);
        json_object_put(r);

        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"region\":5,\"state\":\"revoking\"}}");
        assert_int_equal(bdc_revoke(p.c, "hw0", 5, 300, false, &err), 0);
        r = read_request(p.peer);
        assert_string_equal(member_string(r, "method"), "region.revoke");
        params = member(r, "params");
        assert_string_equal(member_string(params, "owner"), "hw0");
        assert_int_equal(member_int(params, "deadline_ms"), 300);
        assert_null(member(params, "force"));
        json_object_put(r);

        /* No owner: the admin method; no deadline: left to the daemon. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"region\":5,\"state\":\"reclaimed\"}}");
        assert_int_equal(bdc_revoke(p.c, NULL, 5, -1, true, &err), 0);
        r = read_request(p.peer);
        assert_string_equal(member_string(r, "method"), "admin.revoke");
        params = member(r, "params");
        assert_null(member(params, "owner"));
        assert_null(member(params, "deadline_ms"));
        assert_true(json_object_get_boolean(member(params, "force")));
        json_object_put(r);

        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"domains\":[\"vm1\",\"vm2\"]}}");
        assert_int_equal(bdc_subscribe(p.c, domains, 2, &err), 0);
        r = read_request(p.peer);
        assert_string_equal(member_string(r, "method"), "events.subscribe");
        assert_int_equal(json_object_array_length(member(member(r, "params"), "domains")), 2);
        json_object_put(r);
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"domains\":[\"vm1\"]}}");
        assert_int_equal(bdc_subscribe(p.c, NULL, 0, &err), 0);
        r = read_request(p.peer);
        assert_null(member(member(r, "params"), "domains"));
        json_object_put(r);

        /* Failing: the daemon refuses the release. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":6,\"error\":{\"code\":1021,\"message\":\"not attached\","
                          "\"data\":{\"name\":\"invalid_state\"}}}");
        assert_int_equal(bdc_release(p.c, "vm1", 5, &err), -EBUSY);
        assert_string_equal(err.name, "invalid_state");
        assert_string_equal(err.message, "not attached");
        json_object_put(read_request(p.peer));
        pair_close(&p);

        /* Failing: bdc_map refuses what it cannot map. */
        assert_int_equal(bdc_map(-1, 4096, false, &mem), -EINVAL);
        assert_int_equal(bdc_map(memfd, 0, false, &mem), -EINVAL);
}

/* A writer that sends more than the client accepts, from a child (the socket would fill). */
static void test_line_limit(void **state) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        struct json_object *result = NULL;
        struct pair p;
        pid_t pid;
        int status;

        (void) state;
        /* A 1 MiB reply takes several reads and buffer growth: accepted. */
        pair_open(&p);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                size_t n = 1024 * 1024;
                char *s = malloc(n + 64);
                int len;

                if (!s)
                        _exit(1);
                len = sprintf(s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"s\":\"");
                memset(s + len, 'a', n);
                strcpy(s + len + n, "\"}}\n");
                _exit(send(p.peer, s, strlen(s), MSG_NOSIGNAL) == (ssize_t) strlen(s) ? 0 : 1);
        }
        assert_int_equal(bdc_call(p.c, "x", NULL, &result, NULL, NULL, &err), 0);
        assert_int_equal(strlen(member_string(result, "s")), 1024 * 1024);
        json_object_put(result);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        pair_close(&p);

        /* Failing: a line longer than BDC_MAX_LINE. */
        pair_open(&p);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                static char chunk[65536];
                size_t sent = 0;

                memset(chunk, 'a', sizeof(chunk));
                chunk[0] = '"';
                while (sent <= BDC_MAX_LINE + sizeof(chunk)) {
                        ssize_t k = send(p.peer, chunk, sizeof(chunk), MSG_NOSIGNAL);
                        if (k <= 0)
                                _exit(0); /* the client gave up on us: expected */
                        sent += (size_t) k;
                        chunk[0] = 'a';
                }
                _exit(0);
        }
        close(p.peer);
        p.peer = -1;
        result = NULL;
        assert_int_equal(bdc_call(p.c, "x", NULL, &result, NULL, NULL, &err), -EMSGSIZE);
        assert_string_equal(err.name, "protocol_error");
        assert_null(result);
        bdc_close(p.c);
        p.c = NULL;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        pair_close(&p);
}

static void test_connect(void **state) {
        _cleanup_(xfreep) char *path = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char dir[] = "/tmp/test-client-XXXXXX";
        char longpath[200];
        struct bdc *c = (struct bdc *) 0x1;
        int fd;

        (void) state;
        assert_non_null(mkdtemp(dir));
        assert_true(asprintf(&path, "%s/agent.sock", dir) > 0);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        strcpy(sa.sun_path, path);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 4), 0);

        assert_int_equal(bdc_connect(path, &c), 0);
        assert_true(bdc_fd(c) >= 0);
        bdc_close(c);

        /* NULL: $BROKERD_SOCKET. */
        c = (struct bdc *) 0x1;
        assert_int_equal(setenv(BDC_SOCKET_ENV, path, 1), 0);
        assert_int_equal(bdc_connect(NULL, &c), 0);
        bdc_close(c);

        /* Failing: nobody there, and a path no socket address can hold; *ret untouched. */
        c = (struct bdc *) 0x1;
        assert_int_equal(setenv(BDC_SOCKET_ENV, "/nonexistent/brokerd.sock", 1), 0);
        assert_int_equal(bdc_connect(NULL, &c), -ENOENT);
        assert_ptr_equal(c, (struct bdc *) 0x1);
        memset(longpath, 'x', sizeof(longpath) - 1);
        longpath[0] = '/';
        longpath[sizeof(longpath) - 1] = 0;
        assert_int_equal(bdc_connect(longpath, &c), -ENAMETOOLONG);
        assert_ptr_equal(c, (struct bdc *) 0x1);
        unsetenv(BDC_SOCKET_ENV);

        close(fd);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

static void parse_u64_ok(const char *s, uint64_t expected) {
        uint64_t v = SENTINEL;
        if (bdc_parse_u64(s, &v) != 0)
                fail_msg("\"%s\" should parse", s);
        assert_int_equal(v, expected);
}

static void parse_u64_fails(const char *s, int expected) {
        uint64_t v = SENTINEL;
        if (bdc_parse_u64(s, &v) != expected)
                fail_msg("\"%s\" should fail with %d", s, expected);
        assert_int_equal(v, SENTINEL);
}

static void test_parse_u64(void **state) {
        (void) state;
        parse_u64_ok("0", 0);
        parse_u64_ok("65536", 65536);
        parse_u64_ok("0x40000000", 0x40000000);
        parse_u64_ok("0XfEe00000", 0xfee00000);
        parse_u64_ok("4KiB", 4096);
        parse_u64_ok("2MiB", 2 * 1024 * 1024);
        parse_u64_ok("15EiB", UINT64_C(15) << 60);
        parse_u64_ok("18446744073709551615", UINT64_MAX);
        parse_u64_fails("", -EINVAL);
        parse_u64_fails("0x", -EINVAL);
        parse_u64_fails("-1", -EINVAL);
        parse_u64_fails("12KB", -EINVAL);
        parse_u64_fails("2 MiB", -EINVAL);
        parse_u64_fails("0x1KiB", -EINVAL);
        parse_u64_fails("16EiB", -ERANGE);
        parse_u64_fails("18446744073709551616", -ERANGE);
        parse_u64_fails("0x10000000000000000", -ERANGE);
}

static void deadline_ok(const char *s, uint64_t expected) {
        uint64_t v = SENTINEL;
        if (parse_deadline_ms(s, &v) != 0)
                fail_msg("\"%s\" should parse", s);
        assert_int_equal(v, expected);
}

static void deadline_fails(const char *s, int expected) {
        uint64_t v = SENTINEL;
        if (parse_deadline_ms(s, &v) != expected)
                fail_msg("\"%s\" should fail with %d", s, expected);
        assert_int_equal(v, SENTINEL);
}

static void test_parse_deadline(void **state) {
        (void) state;
        deadline_ok("500ms", 500);
        deadline_ok("5s", 5000);
        deadline_ok("2m", 120000);
        deadline_ok("2min", 120000);
        deadline_ok("1h", 3600000);
        deadline_ok("7", 7000); /* plain: seconds */
        deadline_ok("0", 0);
        deadline_fails("", -EINVAL);
        deadline_fails("s", -EINVAL);
        deadline_fails("5x", -EINVAL);
        deadline_fails("1.5s", -EINVAL);
        deadline_fails("-5s", -EINVAL);
        deadline_fails("5 s", -EINVAL);
        deadline_fails("99999999999999999999", -ERANGE);
        deadline_fails("18446744073709551d", -ERANGE);
}

static void test_parse_since(void **state) {
        const uint64_t now = UINT64_C(1700000000123456);
        uint64_t v;

        (void) state;
        assert_int_equal(parse_since_usec("10m", now, &v), 0);
        assert_int_equal(v, now - UINT64_C(600000000));
        assert_int_equal(parse_since_usec("1h", now, &v), 0);
        assert_int_equal(v, now - UINT64_C(3600000000));
        assert_int_equal(parse_since_usec("30s", now, &v), 0);
        assert_int_equal(v, now - UINT64_C(30000000));
        assert_int_equal(parse_since_usec("1690000000", now, &v), 0); /* absolute */
        assert_int_equal(v, UINT64_C(1690000000000000));

        v = SENTINEL;
        assert_int_equal(parse_since_usec("10y", now, &v), -EINVAL);
        assert_int_equal(parse_since_usec("", now, &v), -EINVAL);
        assert_int_equal(parse_since_usec("@10", now, &v), -EINVAL);
        assert_int_equal(parse_since_usec("100000d", now, &v), -ERANGE); /* before 1970 */
        assert_int_equal(parse_since_usec("99999999999999999", now, &v), -ERANGE);
        assert_int_equal(v, SENTINEL);
}

static char *print_table(const struct table *t, bool legend) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        assert_non_null(f);
        assert_int_equal(table_print(t, legend, f), 0);
        fclose(f);
        return buf;
}

static void test_table(void **state) {
        static const char *const headers[] = { "ID", "STATE", "LABEL" };
        _cleanup_(table_freep) struct table *t = NULL;
        char *out;

        (void) state;
        assert_int_equal(table_new(headers, 0, &t), -EINVAL);
        assert_int_equal(table_new(headers, 3, &t), 0);
        assert_int_equal(table_add_cell(t, "3"), 0);
        assert_int_equal(table_add_cell(t, "active"), 0);
        assert_int_equal(table_add_cell(t, "rx ring"), 0);
        assert_int_equal(table_add_cellf(t, "%d", 12), 0);
        assert_int_equal(table_add_cell(t, ""), 0);      /* shown as "-" */
        assert_int_equal(table_add_cell(t, "a\033[2Jb"), 0); /* no terminal control */
        assert_int_equal(table_add_cell(t, "100"), 0);
        assert_int_equal(table_add_cell(t, "é"), 0);     /* one column, two bytes */
        assert_int_equal(table_rows(t), 3);

        out = print_table(t, true);
        assert_string_equal(out, "ID   STATE   LABEL\n"
                                 "3    active  rx ring\n"
                                 "12   -       a?[2Jb\n"
                                 "100  é       -\n");
        free(out);
        out = print_table(t, false);
        assert_string_equal(out, "3    active  rx ring\n"
                                 "12   -       a?[2Jb\n"
                                 "100  é       -\n");
        free(out);
}

static void test_format(void **state) {
        char buf[FORMAT_MAX];
        struct json_object *v;
        char *s;

        (void) state;
        assert_string_equal(format_bytes(2 * 1024 * 1024, buf), "2MiB");
        assert_string_equal(format_bytes(65536, buf), "64KiB");
        assert_string_equal(format_bytes(4097, buf), "4097");
        assert_string_equal(format_bytes(0, buf), "0");
        assert_string_equal(format_bytes(UINT64_C(1) << 62, buf), "4EiB");
        assert_string_equal(format_time_usec(UINT64_C(1700000000123456), buf), "2023-11-14T22:13:20.123Z");
        assert_string_equal(format_time_usec(0, buf), "-");
        assert_string_equal(format_duration_usec(0, buf), "0");
        assert_string_equal(format_duration_usec(250000, buf), "250ms");
        assert_string_equal(format_duration_usec(UINT64_C(93784000000), buf), "1d 2h 3min 4s");

        v = json_tokener_parse("[1,\"a\",true,null]");
        s = format_json_value(v);
        assert_string_equal(s, "1,a,yes,-");
        free(s);
        json_object_put(v);
        v = json_object_new_uint64(UINT64_MAX);
        s = format_json_value(v);
        assert_string_equal(s, "18446744073709551615");
        free(s);
        json_object_put(v);
        v = json_object_new_int64(-3);
        s = format_json_value(v);
        assert_string_equal(s, "-3");
        free(s);
        json_object_put(v);
}

static void test_event_line(void **state) {
        struct json_object *params;
        char *line = NULL;

        (void) state;
        params = json_tokener_parse("{\"owner\":\"hw0\",\"region\":3,\"device\":\"nic0\",\"domain\":\"vm1\","
                                    "\"reason\":\"admin revoke\",\"deadline_usec\":1700000005000000,\"extra\":1}");
        assert_int_equal(format_event_line("region.recall", params, &line), 0);
        assert_string_equal(line, "region.recall region=3 domain=vm1 deadline=2023-11-14T22:13:25.000Z owner=hw0 "
                                  "device=nic0 reason=\"admin revoke\" extra=1");
        free(line);
        json_object_put(params);

        /* Null members are left out; a value that would break the line is quoted. */
        params = json_tokener_parse("{\"region\":4,\"domain\":null,\"owner\":\"a=b\",\"reason\":\"x\\ny\"}");
        assert_int_equal(format_event_line("region.reclaimed", params, &line), 0);
        assert_string_equal(line, "region.reclaimed region=4 owner=\"a=b\" reason=\"x\\ny\"");
        free(line);
        json_object_put(params);

        assert_int_equal(format_event_line("region.attached", NULL, &line), 0);
        assert_string_equal(line, "region.attached");
        free(line);
}

static void test_access_strings(void **state) {
        enum bdc_access a = 0;

        (void) state;
        assert_int_equal(bdc_access_from_string("ro", &a), 0);
        assert_int_equal(a, BDC_ACCESS_RO);
        assert_int_equal(bdc_access_from_string("rw", &a), 0);
        assert_int_equal(a, BDC_ACCESS_RW);
        assert_string_equal(bdc_access_to_string(BDC_ACCESS_RO), "ro");
        assert_int_equal(bdc_access_from_string("wr", &a), -EINVAL);
        assert_int_equal(bdc_access_from_string(NULL, &a), -EINVAL);
        assert_int_equal(a, BDC_ACCESS_RW);
        assert_null(bdc_access_to_string(0));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_call_result),
                cmocka_unit_test(test_call_buffered_replies),
                cmocka_unit_test(test_notifications_queued),
                cmocka_unit_test(test_connection_closed),
                cmocka_unit_test(test_error_reply),
                cmocka_unit_test(test_fds_received),
                cmocka_unit_test(test_share),
                cmocka_unit_test(test_attach_release_revoke_subscribe),
                cmocka_unit_test(test_line_limit),
                cmocka_unit_test(test_connect),
                cmocka_unit_test(test_parse_u64),
                cmocka_unit_test(test_parse_deadline),
                cmocka_unit_test(test_parse_since),
                cmocka_unit_test(test_table),
                cmocka_unit_test(test_format),
                cmocka_unit_test(test_event_line),
                cmocka_unit_test(test_access_strings),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
