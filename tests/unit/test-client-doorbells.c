/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libbrokerd-client's doorbells against the fake daemon (client-fake.h): the share param and
 * "vectors", the attach reply's and region.doorbells' doorbells (each end matched to the
 * descriptor its index names), the set operations, and the replies the client must refuse
 * (an index that did not come, one named twice, too few descriptors, a vector out of range):
 * each fails with -EBADMSG, leaves the result untouched and closes every descriptor that came.
 * Probes (pipes whose write ends are sent) tell when every copy of a descriptor is closed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client-fake.h"
#include "client/brokerd-client.h"
#include "util/macro.h"

#define MAX_PROBES 16

struct probes {
        struct probe p[MAX_PROBES];
        int wr[MAX_PROBES];
        size_t n;
};

static void probes_open(struct probes *ps, size_t n) {
        assert_true(n <= MAX_PROBES);
        ps->n = n;
        for (size_t i = 0; i < n; i++) {
                probe_open(&ps->p[i]);
                ps->wr[i] = ps->p[i].wr;
        }
}

/* Drops our write ends: true when nobody else holds any of them. */
static bool probes_all_closed(struct probes *ps) {
        bool all = true;

        for (size_t i = 0; i < ps->n; i++)
                if (!probe_all_closed(&ps->p[i]))
                        all = false;
        return all;
}

static void probes_close(struct probes *ps) {
        for (size_t i = 0; i < ps->n; i++)
                probe_close(&ps->p[i]);
        ps->n = 0;
}

/* fd is the very file probe i's write end is. */
static bool is_probe(const struct probes *ps, size_t i, int fd) {
        struct stat a, b;

        return fd >= 0 && fstat(fd, &a) == 0 && fstat(ps->p[i].wr, &b) == 0 && a.st_dev == b.st_dev &&
               a.st_ino == b.st_ino;
}

static void send_reply(struct pair *p, int64_t id, const char *result, const struct probes *ps) {
        char line[4096];

        assert_true((size_t) snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"id\":%" PRId64 ",\"result\":%s}", id,
                                      result) < sizeof(line));
        send_line_fds(p->peer, line, ps ? ps->wr : NULL, ps ? ps->n : 0);
}

static void test_share_vectors(void **state) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        const struct bdc_peer peer = { "vm1", BDC_ACCESS_RW };
        struct bdc_share_request req = {
                .owner = "hw0", .device = "nic0", .size = 65536, .peers = &peer, .n_peers = 1,
                .has_doorbells = true, .doorbells = 3,
        };
        struct bdc_share_result res = { .fd = -1 }, untouched;
        struct json_object *r;
        struct probes ps;
        struct pair p;

        (void) state;
        pair_open(&p);
        probes_open(&ps, 1);
        send_reply(&p, 1,
                   "{\"placement\":\"region\",\"region\":7,\"base\":\"0x1000\",\"size\":65536,\"tokens\":[],"
                   "\"fd\":0,\"vectors\":3}",
                   &ps);
        assert_int_equal(bdc_share(p.c, &req, &res, &err), 0);
        assert_int_equal(res.vectors, 3);
        assert_true(is_probe(&ps, 0, res.fd));
        r = read_request(p.peer);
        assert_int_equal(member_int(member(r, "params"), "doorbells"), 3);
        json_object_put(r);
        bdc_share_result_clear(&res);
        assert_true(probes_all_closed(&ps));
        probes_close(&ps);

        /* Not asked for: the daemon's default, nothing sent; no "vectors" in the reply: none. */
        req.has_doorbells = false;
        send_reply(&p, 2, "{\"placement\":\"region\",\"region\":8,\"base\":\"0x1000\",\"size\":4096,\"tokens\":[]}", NULL);
        assert_int_equal(bdc_share(p.c, &req, &res, &err), 0);
        assert_int_equal(res.vectors, 0);
        r = read_request(p.peer);
        assert_null(member(member(r, "params"), "doorbells"));
        json_object_put(r);
        bdc_share_result_clear(&res);

        /* Failing: more vectors than the protocol allows, from the daemon: its fd is closed. */
        probes_open(&ps, 1);
        send_reply(&p, 3,
                   "{\"placement\":\"region\",\"region\":7,\"base\":\"0x1000\",\"size\":65536,\"tokens\":[],"
                   "\"fd\":0,\"vectors\":5}",
                   &ps);
        memset(&untouched, 0x5a, sizeof(untouched));
        res = untouched;
        assert_int_equal(bdc_share(p.c, &req, &res, &err), -EBADMSG);
        assert_string_equal(err.name, "protocol_error");
        assert_memory_equal(&res, &untouched, sizeof(res));
        assert_true(probes_all_closed(&ps));
        probes_close(&ps);
        json_object_put(read_request(p.peer));

        /* Failing: asked for by the caller, it never reaches the wire. */
        req.has_doorbells = true;
        req.doorbells = BDC_MAX_DOORBELL_VECTORS + 1;
        assert_int_equal(bdc_share(p.c, &req, &res, &err), -EINVAL);
        assert_string_equal(err.name, "invalid_argument");
        assert_memory_equal(&res, &untouched, sizeof(res));
        pair_close(&p);
}

static void test_attach_doorbells(void **state) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        struct bdc_attach_result res = { .fd = -1 };
        const struct bdc_doorbell *b;
        struct probes ps;
        struct pair p;

        (void) state;
        pair_open(&p);
        /* The region fd, 2 parties x 2 vectors x (send, recv), and one the reply does not name. */
        probes_open(&ps, 10);
        send_reply(&p, 1,
                   "{\"region\":5,\"base\":\"0x2000\",\"size\":8192,\"access\":\"rw\",\"fd\":0,\"vectors\":2,"
                   "\"generation\":3,\"doorbells\":["
                   "{\"peer\":\"hw0\",\"vector\":0,\"send\":1,\"recv\":2},{\"peer\":\"hw0\",\"vector\":1,\"send\":3,\"recv\":4},"
                   "{\"peer\":\"vm2\",\"vector\":0,\"send\":8,\"recv\":7},{\"peer\":\"vm2\",\"vector\":1,\"send\":6,\"recv\":5}]}",
                   &ps);
        assert_int_equal(bdc_attach(p.c, "vm1", "tok", &res, &err), 0);
        json_object_put(read_request(p.peer));
        assert_int_equal(res.region, 5);
        assert_true(is_probe(&ps, 0, res.fd));
        assert_int_equal(res.doorbells.region, 5);
        assert_int_equal(res.doorbells.vectors, 2);
        assert_int_equal(res.doorbells.generation, 3);
        assert_int_equal(res.doorbells.n, 4);
        assert_string_equal(res.doorbells.bells[0].peer, "hw0"); /* owner first, as sent */

        b = bdc_doorbells_find(&res.doorbells, "hw0", 1);
        assert_non_null(b);
        assert_int_equal(b->vector, 1);
        assert_true(is_probe(&ps, 3, b->send_fd));
        assert_true(is_probe(&ps, 4, b->recv_fd));
        b = bdc_doorbells_find(&res.doorbells, "vm2", 0);
        assert_non_null(b);
        assert_true(is_probe(&ps, 8, b->send_fd));
        assert_true(is_probe(&ps, 7, b->recv_fd));
        assert_int_equal(fcntl(b->recv_fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
        assert_null(bdc_doorbells_find(&res.doorbells, "vm2", 2));
        assert_null(bdc_doorbells_find(&res.doorbells, "vm3", 0));
        assert_null(bdc_doorbells_find(&res.doorbells, NULL, 0));
        assert_null(bdc_doorbells_find(NULL, "vm2", 0));

        /* The unnamed descriptor is closed at once; vm2 leaving closes its four ends only. */
        assert_true(probe_all_closed(&ps.p[9]));
        assert_int_equal(bdc_doorbells_drop_peer(&res.doorbells, "vm2"), 2);
        assert_int_equal(res.doorbells.n, 2);
        assert_null(bdc_doorbells_find(&res.doorbells, "vm2", 0));
        for (size_t i = 5; i <= 8; i++)
                assert_true(probe_all_closed(&ps.p[i]));
        assert_non_null(bdc_doorbells_find(&res.doorbells, "hw0", 0));
        assert_false(probe_all_closed(&ps.p[1]));
        assert_int_equal(bdc_doorbells_drop_peer(&res.doorbells, "vm2"), 0);
        assert_int_equal(bdc_doorbells_drop_peer(&res.doorbells, NULL), 0);

        /* Clearing the result closes the rest and leaves it reusable. */
        bdc_attach_result_clear(&res);
        assert_int_equal(res.fd, -1);
        assert_int_equal(res.doorbells.n, 0);
        assert_null(res.doorbells.bells);
        assert_true(probes_all_closed(&ps));
        probes_close(&ps);

        /* A backend without doorbells: none, and no error. */
        send_reply(&p, 2, "{\"region\":6,\"base\":\"0x2000\",\"size\":8192,\"access\":\"ro\",\"vectors\":0,\"doorbells\":[]}",
                   NULL);
        assert_int_equal(bdc_attach(p.c, "vm1", "tok", &res, &err), 0);
        json_object_put(read_request(p.peer));
        assert_int_equal(res.doorbells.vectors, 0);
        assert_int_equal(res.doorbells.n, 0);
        bdc_attach_result_clear(&res);
        bdc_doorbells_clear(&res.doorbells); /* twice is fine */
        bdc_doorbells_clear(NULL);
        pair_close(&p);
}

/* Replies the client must refuse; each comes with five descriptors (probes 0..4). */
static const struct {
        const char *what;
        const char *members;
} bad_replies[] = {
        { "an index that was not sent", "\"vectors\":2,\"doorbells\":[{\"peer\":\"hw0\",\"vector\":0,\"send\":1,\"recv\":5}]" },
        { "a negative index", "\"vectors\":2,\"doorbells\":[{\"peer\":\"hw0\",\"vector\":0,\"send\":-1,\"recv\":2}]" },
        { "the region's index again", "\"vectors\":2,\"doorbells\":[{\"peer\":\"hw0\",\"vector\":0,\"send\":0,\"recv\":2}]" },
        { "send and recv the same", "\"vectors\":2,\"doorbells\":[{\"peer\":\"hw0\",\"vector\":0,\"send\":1,\"recv\":1}]" },
        { "an index in two doorbells",
          "\"vectors\":2,\"doorbells\":[{\"peer\":\"hw0\",\"vector\":0,\"send\":1,\"recv\":2},"
          "{\"peer\":\"hw0\",\"vector\":1,\"send\":3,\"recv\":2}]" },
        { "too few descriptors for the doorbells",
          "\"vectors\":2,\"doorbells\":[{\"peer\":\"hw0\",\"vector\":0,\"send\":1,\"recv\":2},"
          "{\"peer\":\"hw0\",\"vector\":1,\"send\":3,\"recv\":4},{\"peer\":\"vm2\",\"vector\":0,\"send\":1,\"recv\":2}]" },
        { "a vector out of range", "\"vectors\":1,\"doorbells\":[{\"peer\":\"hw0\",\"vector\":1,\"send\":1,\"recv\":2}]" },
        { "more vectors than allowed", "\"vectors\":5,\"doorbells\":[]" },
        { "doorbells without vectors", "\"vectors\":0,\"doorbells\":[{\"peer\":\"hw0\",\"vector\":0,\"send\":1,\"recv\":2}]" },
        { "the same pair and vector twice",
          "\"vectors\":2,\"doorbells\":[{\"peer\":\"hw0\",\"vector\":0,\"send\":1,\"recv\":2},"
          "{\"peer\":\"hw0\",\"vector\":0,\"send\":3,\"recv\":4}]" },
        { "no peer", "\"vectors\":2,\"doorbells\":[{\"vector\":0,\"send\":1,\"recv\":2}]" },
        { "an empty peer", "\"vectors\":2,\"doorbells\":[{\"peer\":\"\",\"vector\":0,\"send\":1,\"recv\":2}]" },
        { "no recv", "\"vectors\":2,\"doorbells\":[{\"peer\":\"hw0\",\"vector\":0,\"send\":1}]" },
        { "an index as text", "\"vectors\":2,\"doorbells\":[{\"peer\":\"hw0\",\"vector\":0,\"send\":\"one\",\"recv\":2}]" },
        { "an entry that is not an object", "\"vectors\":2,\"doorbells\":[1]" },
        { "doorbells not an array", "\"vectors\":2,\"doorbells\":{}" },
        { "a generation that is not a number", "\"vectors\":2,\"generation\":true,\"doorbells\":[]" },
};

static void test_attach_doorbells_refused(void **state) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        struct bdc_attach_result res, untouched;
        struct pair p;

        (void) state;
        pair_open(&p);
        memset(&untouched, 0x5a, sizeof(untouched));
        for (size_t i = 0; i < ELEMENTSOF(bad_replies); i++) {
                char result[1024];
                struct probes ps;

                print_message("refused: %s\n", bad_replies[i].what);
                probes_open(&ps, 5);
                snprintf(result, sizeof(result),
                         "{\"region\":5,\"base\":\"0x2000\",\"size\":8192,\"access\":\"rw\",\"fd\":0,%s}",
                         bad_replies[i].members);
                send_reply(&p, (int64_t) i + 1, result, &ps);
                res = untouched;
                assert_int_equal(bdc_attach(p.c, "vm1", "tok", &res, &err), -EBADMSG);
                assert_string_equal(err.name, "protocol_error");
                assert_memory_equal(&res, &untouched, sizeof(res));
                assert_true(probes_all_closed(&ps));
                probes_close(&ps);
                json_object_put(read_request(p.peer));
        }

        /* The connection survives a refused reply. */
        send_reply(&p, (int64_t) ELEMENTSOF(bad_replies) + 1, "{\"region\":5,\"base\":0,\"size\":8192,\"access\":\"rw\"}",
                   NULL);
        res = (struct bdc_attach_result) { .fd = -1 };
        assert_int_equal(bdc_attach(p.c, "vm1", "tok", &res, &err), 0);
        bdc_attach_result_clear(&res);
        pair_close(&p);
}

/* region.doorbells: what it sends, and the most descriptors one reply can carry (SCM_MAX_FD). */
static void test_region_doorbells(void **state) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        struct bdc_doorbells d = {}, untouched;
        char *result = NULL;
        size_t len = 0, n_bells = (BDC_MAX_FDS - 1) / 2;
        int fds[BDC_MAX_FDS];
        FILE *f;
        struct json_object *r;
        struct probe a;
        struct pair p;

        (void) state;
        pair_open(&p);
        probe_open(&a);
        for (size_t i = 0; i < BDC_MAX_FDS; i++)
                fds[i] = a.wr; /* each copy arrives as a descriptor of its own */

        /* 126 peers on one vector take 252 descriptors; the 253rd is not named and is closed. */
        f = open_memstream(&result, &len);
        assert_non_null(f);
        fprintf(f, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"region\":9,\"domain\":\"vm1\",\"vectors\":1,"
                   "\"generation\":1,\"doorbells\":[");
        for (size_t i = 0; i < n_bells; i++)
                fprintf(f, "%s{\"peer\":\"p%zu\",\"vector\":0,\"send\":%zu,\"recv\":%zu}", i ? "," : "", i, 2 * i,
                        2 * i + 1);
        fputs("]}}", f);
        assert_int_equal(fclose(f), 0);
        send_line_fds(p.peer, result, fds, BDC_MAX_FDS);
        free(result);

        assert_int_equal(bdc_doorbells(p.c, "vm1", 9, &d, &err), 0);
        r = read_request(p.peer);
        assert_string_equal(member_string(r, "method"), "region.doorbells");
        assert_string_equal(member_string(member(r, "params"), "domain"), "vm1");
        assert_int_equal(member_int(member(r, "params"), "region"), 9);
        json_object_put(r);
        assert_int_equal(d.region, 9);
        assert_int_equal(d.vectors, 1);
        assert_int_equal(d.n, n_bells);
        for (size_t i = 0; i < n_bells; i++) {
                assert_true(d.bells[i].send_fd >= 0 && d.bells[i].recv_fd >= 0);
                assert_true(d.bells[i].send_fd != d.bells[i].recv_fd);
        }
        assert_non_null(bdc_doorbells_find(&d, "p125", 0));
        assert_int_equal(bdc_doorbells_drop_peer(&d, "p0"), 1);
        assert_null(bdc_doorbells_find(&d, "p0", 0));
        assert_false(probe_all_closed(&a));
        bdc_doorbells_clear(&d);
        assert_int_equal(d.n, 0);
        assert_true(probe_all_closed(&a));
        probe_close(&a);

        /* Failing: an answer about another region, or for another domain; d untouched. */
        memset(&untouched, 0x5a, sizeof(untouched));
        d = untouched;
        send_reply(&p, 2, "{\"region\":8,\"domain\":\"vm1\",\"vectors\":1,\"doorbells\":[]}", NULL);
        assert_int_equal(bdc_doorbells(p.c, "vm1", 9, &d, &err), -EBADMSG);
        json_object_put(read_request(p.peer));
        send_reply(&p, 3, "{\"region\":9,\"domain\":\"vm2\",\"vectors\":1,\"doorbells\":[]}", NULL);
        assert_int_equal(bdc_doorbells(p.c, "vm1", 9, &d, &err), -EBADMSG);
        json_object_put(read_request(p.peer));
        assert_memory_equal(&d, &untouched, sizeof(d));

        /* Failing: the daemon's error (the domain does not hold the region) is passed through. */
        send_line(p.peer, "{\"jsonrpc\":\"2.0\",\"id\":4,\"error\":{\"code\":1021,\"message\":\"not held\","
                          "\"data\":{\"name\":\"invalid_state\"}}}");
        assert_int_equal(bdc_doorbells(p.c, "vm1", 9, &d, &err), -EBUSY);
        assert_string_equal(err.name, "invalid_state");
        assert_memory_equal(&d, &untouched, sizeof(d));
        json_object_put(read_request(p.peer));

        assert_int_equal(bdc_doorbells(p.c, NULL, 9, &d, &err), -EINVAL);
        pair_close(&p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_share_vectors),
                cmocka_unit_test(test_attach_doorbells),
                cmocka_unit_test(test_attach_doorbells_refused),
                cmocka_unit_test(test_region_doorbells),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
