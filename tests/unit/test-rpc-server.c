/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "rpc/rpc.h"
#include "rpc/server.h"
#include "util/error.h"
#include "util/lent-fd.h"

/*
 * Real sockets in a temporary directory and a real sd_event loop, driven from the test:
 * a client writes, the test runs the loop until nothing is left to dispatch, then the
 * client reads without blocking. Everything is one thread, so "idle" is exact.
 */

#define MAX_RECORDED 64

struct fx {
        char dir[64];
        char path[128];
        char admin_path[128];
        sd_event *e;
        struct rpc_server *s;
        uint64_t disconnected[MAX_RECORDED];
        size_t n_disconnected;
        unsigned calls;
        int last_fd; /* the memfd the "fd" methods made last */
        int lent_fd; /* the handler's own memfd that "lend" lends ("lent" in it), -1: none */
        bool last_notification; /* caller->notification of the last call */
        struct {
                uint64_t connection;
                char method[32];
                char *result;
        } undelivered[MAX_RECORDED];
        size_t n_undelivered;
        bool uid_known; /* what the uid_known hook answers */
        unsigned uid_asked;
        bool gate_open; /* what the output gate answers */
        unsigned gate_asked;
};

struct client {
        int fd;
        char *buf;
        size_t len, size;
        size_t chunk; /* bytes per recvmsg(), to split replies; 0 = as much as fits */
        int fds[32];
        size_t n_fds;
        bool eof;
};

static const struct rpc_server_limits small_limits = {
        .max_message = 1024,
        .max_depth = 4,
        .max_batch = 4,
        .max_connections_per_uid = 8,
        .max_pending_bytes = 16 * 1024,
};

static void put_json(struct json_object **o) {
        if (*o)
                json_object_put(*o);
}

/* ---- the handler under test's interface ---- */

/* The lender closes its lent fd, and the number goes to another file ("other" in it). */
static void lender_replace(struct fx *f) {
        int other = memfd_create("rpc-other", MFD_CLOEXEC);

        assert_true(other >= 0 && f->lent_fd >= 0);
        assert_int_equal(write(other, "other", 5), 5);
        lent_fd_close(f->lent_fd); /* the lenders' contract (util/lent-fd.h) */
        assert_int_equal(dup2(other, f->lent_fd), f->lent_fd);
        close(other);
}

static size_t open_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        size_t n = 0;

        assert_non_null(d);
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static int test_handler(void *userdata, const struct rpc_caller *caller, const char *method, struct json_object *params,
                        struct rpc_reply_fds *fds, struct json_object **ret_result, struct rpc_error *err) {
        struct fx *f = userdata;
        struct json_object *v;

        f->calls++;
        f->last_notification = caller->notification;
        if (strcmp(method, "echo") == 0) {
                *ret_result = json_object_get(params);
                return 0;
        }
        if (strcmp(method, "fail") == 0) {
                err->data = json_object_new_object();
                json_object_object_add(err->data, "limit", json_object_new_int(5));
                json_object_object_add(err->data, "name", json_object_new_string("not-this-one"));
                return rpc_error_from_broker(err, BROKER_E_QUOTA, "over quota");
        }
        if (strcmp(method, "badparams") == 0) {
                err->data = json_object_new_object();
                json_object_object_add(err->data, "field", json_object_new_string("size"));
                return rpc_error_set(err, RPC_INVALID_PARAMS, "bad %s", "size");
        }
        if (strcmp(method, "broken") == 0)
                return -EIO;
        if (strcmp(method, "fd") == 0 || strcmp(method, "fd_fail") == 0) {
                int fd = memfd_create("rpc-test", MFD_CLOEXEC), idx;

                assert_true(fd >= 0);
                assert_int_equal(write(fd, "hello", 5), 5);
                f->last_fd = fd;
                idx = rpc_reply_add_fd(fds, fd);
                assert_true(idx >= 0);
                if (strcmp(method, "fd_fail") == 0)
                        return rpc_error_from_broker(err, BROKER_E_BACKEND, "mapping failed");
                *ret_result = json_object_new_object();
                json_object_object_add(*ret_result, "fd", json_object_new_int(idx));
                return 0;
        }
        if (strcmp(method, "lend") == 0) {
                int idx;

                if (f->lent_fd < 0) {
                        f->lent_fd = memfd_create("rpc-lent", MFD_CLOEXEC);
                        assert_true(f->lent_fd >= 0);
                        assert_int_equal(write(f->lent_fd, "lent", 4), 4);
                }
                idx = rpc_reply_lend_fd(fds, f->lent_fd);
                assert_true(idx >= 0);
                *ret_result = json_object_new_object();
                json_object_object_add(*ret_result, "fd", json_object_new_int(idx));
                return 0;
        }
        if (strcmp(method, "unlend") == 0) {
                lender_replace(f);
                *ret_result = json_object_new_object();
                return 0;
        }
        if (strcmp(method, "whoami") == 0) {
                *ret_result = json_object_new_object();
                json_object_object_add(*ret_result, "connection", json_object_new_uint64(caller->connection));
                json_object_object_add(*ret_result, "uid", json_object_new_int64(caller->uid));
                json_object_object_add(*ret_result, "gid", json_object_new_int64(caller->gid));
                json_object_object_add(*ret_result, "pid", json_object_new_int64(caller->pid));
                json_object_object_add(*ret_result, "admin", json_object_new_boolean(caller->admin));
                return 0;
        }
        if (strcmp(method, "big") == 0) {
                /* A reply far larger than a socket buffer, to force partial writes. */
                size_t n;
                char *s;

                assert_true(json_object_object_get_ex(params, "n", &v));
                n = (size_t) json_object_get_int64(v);
                s = malloc(n + 1);
                assert_non_null(s);
                memset(s, 'x', n);
                s[n] = '\0';
                *ret_result = json_object_new_object();
                json_object_object_add(*ret_result, "data", json_object_new_string_len(s, (int) n));
                free(s);
                return 0;
        }
        if (strcmp(method, "notify_self") == 0) {
                /* A notification queued while the request is being handled goes out first. */
                assert_int_equal(rpc_server_notify(f->s, caller->connection, "hello", params), 0);
                *ret_result = json_object_new_object();
                return 0;
        }
        return rpc_error_set(err, RPC_METHOD_NOT_FOUND, "no method %s", method);
}

static void test_disconnect(void *userdata, uint64_t connection) {
        struct fx *f = userdata;

        assert_true(f->n_disconnected < MAX_RECORDED);
        f->disconnected[f->n_disconnected++] = connection;
}

static void test_undelivered(void *userdata, const struct rpc_caller *caller, const char *method,
                             struct json_object *result) {
        struct fx *f = userdata;
        size_t i = f->n_undelivered++;

        assert_true(i < MAX_RECORDED);
        /* before the connection's on_disconnect, so that the undo can still see it */
        for (size_t k = 0; k < f->n_disconnected; k++)
                assert_true(f->disconnected[k] != caller->connection);
        f->undelivered[i].connection = caller->connection;
        snprintf(f->undelivered[i].method, sizeof(f->undelivered[i].method), "%s", method);
        f->undelivered[i].result = strdup(json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN));
        assert_non_null(f->undelivered[i].result);
}

static bool test_uid_known(void *userdata, uid_t uid) {
        struct fx *f = userdata;

        assert_int_equal(uid, getuid());
        f->uid_asked++;
        return f->uid_known;
}

static size_t disconnect_count(const struct fx *f, uint64_t connection) {
        size_t n = 0;

        for (size_t i = 0; i < f->n_disconnected; i++)
                n += f->disconnected[i] == connection;
        return n;
}

/* ---- fixture ---- */

static int setup(void **state) {
        struct fx *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        strcpy(f->dir, "/tmp/test-rpc-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/agent.sock", f->dir);
        snprintf(f->admin_path, sizeof(f->admin_path), "%s/admin.sock", f->dir);
        assert_int_equal(sd_event_new(&f->e), 0);
        f->last_fd = -1;
        f->lent_fd = -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fx *f = *state;
        struct dirent *de;
        DIR *d;

        rpc_server_free(f->s);
        if (f->lent_fd >= 0)
                close(f->lent_fd);
        /* on_disconnect exactly once per connection, also for those closed by the free. */
        for (size_t i = 0; i < f->n_disconnected; i++)
                assert_int_equal(disconnect_count(f, f->disconnected[i]), 1);
        for (size_t i = 0; i < f->n_undelivered; i++)
                free(f->undelivered[i].result);
        sd_event_unref(f->e);

        /* Whatever a test left (its own files, or anything after a failed assertion). */
        d = opendir(f->dir);
        assert_non_null(d);
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        assert_int_equal(unlinkat(dirfd(d), de->d_name, 0), 0);
        closedir(d);
        assert_int_equal(rmdir(f->dir), 0);
        free(f);
        return 0;
}

static void start(struct fx *f, const struct rpc_server_limits *limits) {
        assert_int_equal(rpc_server_new(f->e, limits ? limits : &small_limits, test_handler, test_disconnect, f, &f->s), 0);
        rpc_server_set_undelivered(f->s, test_undelivered);
        assert_int_equal(rpc_server_listen(f->s, f->path, 0660, getgid(), false), 0);
        assert_int_equal(rpc_server_listen(f->s, f->admin_path, 0600, (gid_t) -1, true), 0);
}

static void run_idle(struct fx *f) {
        int r = 0;

        for (unsigned i = 0; i < 1000000; i++) {
                r = sd_event_run(f->e, 0);
                assert_true(r >= 0);
                if (r == 0)
                        return;
        }
        fail_msg("the loop never went idle");
}

static struct rpc_server_stats stats(struct fx *f) {
        struct rpc_server_stats st;

        rpc_server_get_stats(f->s, &st);
        return st;
}

/* ---- client ---- */

static void client_connect(struct fx *f, struct client *c, const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        memset(c, 0, sizeof(*c));
        strcpy(sa.sun_path, path);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(c->fd >= 0);
        assert_int_equal(connect(c->fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        /* Let the server accept now, so connections are accepted in the order they are made. */
        run_idle(f);
}

static void client_close(struct client *c) {
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        for (size_t i = 0; i < c->n_fds; i++)
                close(c->fds[i]);
        c->n_fds = 0;
        free(c->buf);
        c->buf = NULL;
}

static void client_write(struct fx *f, struct client *c, const char *data, size_t len) {
        while (len > 0) {
                ssize_t n = send(c->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);

                if (n < 0) {
                        assert_int_equal(errno, EAGAIN);
                        assert_true(sd_event_run(f->e, 0) > 0);
                        continue;
                }
                data += n;
                len -= (size_t) n;
        }
}

static void client_send(struct fx *f, struct client *c, const char *line) {
        client_write(f, c, line, strlen(line));
        client_write(f, c, "\n", 1);
}

/* One recvmsg() without blocking: > 0 bytes, 0 at EOF, -EAGAIN. */
static int client_recv_once(struct client *c) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * RPC_MAX_FDS_PER_LINE)];
        } control;
        struct iovec iov;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof(control) };
        size_t want = c->chunk ? c->chunk : 65536;
        ssize_t n;

        if (c->size - c->len < want) {
                c->size = c->len + want;
                c->buf = realloc(c->buf, c->size);
                assert_non_null(c->buf);
        }
        iov = (struct iovec) { .iov_base = c->buf + c->len, .iov_len = want };
        n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
                assert_true(errno == EAGAIN || errno == ECONNRESET);
                return errno == EAGAIN ? -EAGAIN : 0;
        }
        assert_false(mh.msg_flags & MSG_CTRUNC);
        for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&mh); cmsg; cmsg = CMSG_NXTHDR(&mh, cmsg)) {
                size_t k;

                assert_int_equal(cmsg->cmsg_level, SOL_SOCKET);
                assert_int_equal(cmsg->cmsg_type, SCM_RIGHTS);
                k = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                assert_true(c->n_fds + k <= ELEMENTSOF(c->fds));
                memcpy(c->fds + c->n_fds, CMSG_DATA(cmsg), k * sizeof(int));
                c->n_fds += k;
        }
        if (n == 0)
                return 0;
        c->len += (size_t) n;
        return 1;
}

/* Runs the loop until a whole line has arrived: 1 with *ret (malloc'd, no '\n'), 0 at EOF,
 * -EAGAIN when the server is idle and has sent nothing more. */
static int client_read_line(struct fx *f, struct client *c, char **ret) {
        bool idle = false;

        for (unsigned i = 0;; i++) {
                char *nl = c->buf ? memchr(c->buf, '\n', c->len) : NULL;
                int r;

                if (nl) {
                        size_t n = (size_t) (nl - c->buf);

                        *ret = strndup(c->buf, n);
                        assert_non_null(*ret);
                        memmove(c->buf, nl + 1, c->len - n - 1);
                        c->len -= n + 1;
                        return 1;
                }
                if (c->eof)
                        return 0;
                r = client_recv_once(c);
                if (r > 0) {
                        idle = false;
                        continue;
                }
                if (r == 0) {
                        c->eof = true;
                        continue;
                }
                if (idle)
                        return -EAGAIN;
                if (i > 1000000)
                        fail_msg("the loop never went idle");
                if (sd_event_run(f->e, 0) == 0)
                        idle = true;
        }
}

static struct json_object *client_reply(struct fx *f, struct client *c) {
        char *line = NULL;
        struct json_object *o;

        assert_int_equal(client_read_line(f, c, &line), 1);
        /* Every reply is one line of valid JSON. */
        o = json_tokener_parse(line);
        if (!o)
                fail_msg("not JSON: %s", line);
        free(line);
        return o;
}

static struct json_object *call(struct fx *f, struct client *c, const char *request) {
        client_send(f, c, request);
        return client_reply(f, c);
}

static void assert_no_reply(struct fx *f, struct client *c) {
        char *line = NULL;

        run_idle(f);
        assert_int_equal(client_read_line(f, c, &line), -EAGAIN);
}

static void assert_eof(struct fx *f, struct client *c) {
        char *line = NULL;

        assert_int_equal(client_read_line(f, c, &line), 0);
        /* on_disconnect runs from the loop: let it */
        run_idle(f);
}

static const char *id_of(struct json_object *reply) {
        struct json_object *id;

        assert_true(json_object_object_get_ex(reply, "id", &id));
        return json_object_to_json_string_ext(id, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static struct json_object *get(struct json_object *o, const char *key) {
        struct json_object *v = NULL;

        if (!json_object_object_get_ex(o, key, &v))
                fail_msg("no \"%s\" in %s", key, json_object_to_json_string(o));
        return v;
}

static void assert_result(struct json_object *reply, const char *id, const char *result) {
        struct json_object *v;

        assert_string_equal(json_object_get_string(get(reply, "jsonrpc")), "2.0");
        assert_string_equal(id_of(reply), id);
        assert_false(json_object_object_get_ex(reply, "error", &v));
        assert_string_equal(json_object_to_json_string_ext(get(reply, "result"), JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE), result);
}

/* name NULL: a standard error, data absent. */
static void assert_error(struct json_object *reply, const char *id, int code, const char *name) {
        struct json_object *e, *v;

        assert_string_equal(json_object_get_string(get(reply, "jsonrpc")), "2.0");
        assert_string_equal(id_of(reply), id);
        assert_false(json_object_object_get_ex(reply, "result", &v));
        e = get(reply, "error");
        assert_int_equal(json_object_get_int(get(e, "code")), code);
        assert_true(json_object_is_type(get(e, "message"), json_type_string));
        if (name)
                assert_string_equal(json_object_get_string(get(get(e, "data"), "name")), name);
        else
                assert_false(json_object_object_get_ex(e, "data", &v));
}

static void expect_result(struct fx *f, struct client *c, const char *request, const char *id, const char *result) {
        _cleanup_(put_json) struct json_object *r = call(f, c, request);

        assert_result(r, id, result);
}

static void expect_error(struct fx *f, struct client *c, const char *request, const char *id, int code, const char *name) {
        _cleanup_(put_json) struct json_object *r = call(f, c, request);

        assert_error(r, id, code, name);
}

static bool fd_is_open(int fd) {
        return fcntl(fd, F_GETFD) >= 0;
}

/* ---- rpc.c ---- */

static void test_rpc_errors(void **state) {
        struct rpc_error err = {};

        (void) state;
        assert_int_equal(rpc_error_from_broker(&err, BROKER_E_QUOTA, "over quota"), -EDQUOT);
        assert_int_equal(err.code, 1008);
        assert_string_equal(err.name, "quota_exceeded");
        assert_string_equal(err.message, "over quota");
        assert_int_equal(rpc_error_from_broker(&err, BROKER_E_NOT_ALIGNED, NULL), -EINVAL);
        assert_int_equal(err.code, 1009);
        assert_string_equal(err.message, "not_aligned");
        assert_int_equal(rpc_error_from_broker(NULL, BROKER_E_LIMIT, "x"), -E2BIG);

        assert_int_equal(rpc_error_set(&err, RPC_METHOD_NOT_FOUND, "no method %s", "x.y"), -EINVAL);
        assert_int_equal(err.code, RPC_METHOD_NOT_FOUND);
        assert_string_equal(err.name, "");
        assert_string_equal(err.message, "no method x.y");
}

static void test_reply_add_fd(void **state) {
        struct rpc_reply_fds r = { .n = 0 };
        int extra;

        (void) state;
        for (int i = 0; i < RPC_MAX_FDS_PER_LINE; i++)
                assert_int_equal(rpc_reply_add_fd(&r, memfd_create("t", MFD_CLOEXEC)), i);
        extra = memfd_create("t", MFD_CLOEXEC);
        assert_true(extra >= 0);
        assert_int_equal(rpc_reply_add_fd(&r, extra), -E2BIG);
        assert_false(fd_is_open(extra)); /* ownership was taken */
        assert_int_equal(rpc_reply_add_fd(&r, -1), -EBADF);
        assert_int_equal(r.n, RPC_MAX_FDS_PER_LINE);
        for (size_t i = 0; i < r.n; i++) {
                assert_true(fd_is_open(r.fds[i]));
                close(r.fds[i]);
        }
}

/* ---- server ---- */

static void test_new_validates(void **state) {
        struct fx *f = *state;
        struct rpc_server_limits l = small_limits;
        struct rpc_server *s = NULL;

        assert_int_equal(rpc_server_new(f->e, NULL, NULL, NULL, NULL, &s), -EINVAL);
        l.max_batch = 0;
        assert_int_equal(rpc_server_new(f->e, &l, test_handler, NULL, f, &s), -EINVAL);
        l = small_limits;
        l.max_message = 0;
        assert_int_equal(rpc_server_new(f->e, &l, test_handler, NULL, f, &s), -EINVAL);
        assert_null(s);
        assert_int_equal(rpc_server_new(f->e, NULL, test_handler, NULL, f, &s), 0);
        assert_int_equal(rpc_server_limits(s)->max_message, 64 * 1024);
        assert_int_equal(rpc_server_limits(s)->max_batch, 32);
        rpc_server_free(s);
        /* the caps added later: 0 is the default */
        assert_int_equal(rpc_server_new(f->e, &small_limits, test_handler, NULL, f, &s), 0);
        assert_int_equal(rpc_server_limits(s)->max_connections, 1024);
        assert_int_equal(rpc_server_limits(s)->max_connections_unknown_uid, 2);
        rpc_server_free(s);
}

static void test_single_request(void **state) {
        struct fx *f = *state;
        struct client c;

        start(f, NULL);
        client_connect(f, &c, f->path);
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"a\":[1,\"x/y\\n\"]}}", "1",
                      "{\"a\":[1,\"x/y\\n\"]}");
        /* absent params = {} */
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":\"s-1\",\"method\":\"echo\"}", "\"s-1\"", "{}");
        expect_result(f, &c, "{\"id\":null,\"method\":\"echo\",\"jsonrpc\":\"2.0\"}", "null", "{}");
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"echo\"}", "1.5", "{}");
        /* trailing whitespace and CRLF are fine */
        expect_result(f, &c, "  {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\"} \t\r", "2", "{}");
        /* empty lines are ignored */
        client_send(f, &c, "");
        client_send(f, &c, " \r");
        assert_no_reply(f, &c);

        /* errors from the handler */
        {
                _cleanup_(put_json) struct json_object *r =
                        call(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"fail\"}");
                struct json_object *data = get(get(r, "error"), "data");

                assert_error(r, "3", 1008, "quota_exceeded");
                assert_string_equal(json_object_get_string(get(get(r, "error"), "message")), "over quota");
                /* the handler's members merged in, its "name" never over ours */
                assert_int_equal(json_object_get_int(get(data, "limit")), 5);
                assert_int_equal(json_object_object_length(data), 2);
        }
        {
                _cleanup_(put_json) struct json_object *r =
                        call(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"badparams\"}");
                struct json_object *data = get(get(r, "error"), "data");

                assert_int_equal(json_object_get_int(get(get(r, "error"), "code")), RPC_INVALID_PARAMS);
                assert_string_equal(json_object_get_string(get(data, "field")), "size");
                assert_int_equal(json_object_object_length(data), 1);
        }
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"nope\"}", "5", RPC_METHOD_NOT_FOUND, NULL);
        /* a handler failing without saying why is an internal error */
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"broken\"}", "6", RPC_INTERNAL_ERROR, NULL);
        client_close(&c);
}

static void test_notification(void **state) {
        struct fx *f = *state;
        struct client c;

        start(f, NULL);
        client_connect(f, &c, f->path);
        /* handled, but nothing is sent: not the result, not even an error */
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":{}}");
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"method\":\"fail\"}");
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"method\":\"nope\"}");
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\",\"params\":[1]}");
        assert_no_reply(f, &c);
        assert_int_equal(f->calls, 3);
        /* the same with an id is answered */
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}", "1", "{}");
        assert_int_equal(f->calls, 4);
        client_close(&c);
}

static void test_batch(void **state) {
        struct fx *f = *state;
        struct client c;

        start(f, NULL);
        client_connect(f, &c, f->path);

        /* mixed with a notification and an invalid element */
        {
                _cleanup_(put_json) struct json_object *r = call(
                        f, &c,
                        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"a\":1}},"
                        "{\"jsonrpc\":\"2.0\",\"method\":\"echo\"},"
                        "{\"jsonrpc\":\"2.0\",\"id\":\"b\",\"method\":\"fail\"},"
                        "{\"foo\":\"boo\"}]");

                assert_true(json_object_is_type(r, json_type_array));
                assert_int_equal(json_object_array_length(r), 3);
                assert_result(json_object_array_get_idx(r, 0), "1", "{\"a\":1}");
                assert_error(json_object_array_get_idx(r, 1), "\"b\"", 1008, "quota_exceeded");
                assert_error(json_object_array_get_idx(r, 2), "null", RPC_INVALID_REQUEST, NULL);
                assert_int_equal(f->calls, 3);
        }
        /* invalid elements each get their own error */
        {
                _cleanup_(put_json) struct json_object *r = call(f, &c, "[1,2]");

                assert_int_equal(json_object_array_length(r), 2);
                assert_error(json_object_array_get_idx(r, 0), "null", RPC_INVALID_REQUEST, NULL);
                assert_error(json_object_array_get_idx(r, 1), "null", RPC_INVALID_REQUEST, NULL);
        }
        /* only notifications: no reply at all */
        client_send(f, &c, "[{\"jsonrpc\":\"2.0\",\"method\":\"echo\"},{\"jsonrpc\":\"2.0\",\"method\":\"fail\"}]");
        assert_no_reply(f, &c);
        assert_int_equal(f->calls, 5);

        /* empty: one error, not an array */
        expect_error(f, &c, "[]", "null", RPC_INVALID_REQUEST, NULL);
        expect_error(f, &c, " [ ] ", "null", RPC_INVALID_REQUEST, NULL);

        /* at the limit (4) it is handled, above it refused whole, the handler never called */
        {
                _cleanup_(put_json) struct json_object *r = call(
                        f, &c,
                        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\"},"
                        "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"echo\"},{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"echo\"}]");

                assert_int_equal(json_object_array_length(r), 4);
                assert_result(json_object_array_get_idx(r, 3), "4", "{}");
        }
        f->calls = 0;
        {
                _cleanup_(put_json) struct json_object *r = call(
                        f, &c,
                        "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\"},"
                        "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"echo\"},{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"echo\"},"
                        "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"echo\"}]");

                assert_true(json_object_is_type(r, json_type_object));
                assert_error(r, "null", RPC_INVALID_REQUEST, NULL);
                assert_non_null(strstr(json_object_get_string(get(get(r, "error"), "message")), "limit of 4"));
                assert_int_equal(f->calls, 0);
        }
        /* the connection is still fine */
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"echo\"}", "9", "{}");
        client_close(&c);
}

static void test_invalid_requests(void **state) {
        struct fx *f = *state;
        struct client c;

        start(f, NULL);
        client_connect(f, &c, f->path);
        /* the id is echoed when it is valid */
        expect_error(f, &c, "{\"id\":7,\"method\":\"echo\"}", "7", RPC_INVALID_REQUEST, NULL);
        expect_error(f, &c, "{\"jsonrpc\":\"1.0\",\"id\":8,\"method\":\"echo\"}", "8", RPC_INVALID_REQUEST, NULL);
        expect_error(f, &c, "{\"jsonrpc\":2.0,\"id\":8,\"method\":\"echo\"}", "8", RPC_INVALID_REQUEST, NULL);
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":5}", "9", RPC_INVALID_REQUEST, NULL);
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":9}", "9", RPC_INVALID_REQUEST, NULL);
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"echo\",\"params\":\"x\"}", "10",
                     RPC_INVALID_REQUEST, NULL);
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":10,\"method\":\"echo\",\"params\":null}", "10",
                     RPC_INVALID_REQUEST, NULL);
        /* positional params are valid JSON-RPC, refused as params */
        {
                _cleanup_(put_json) struct json_object *r =
                        call(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"echo\",\"params\":[1]}");

                assert_error(r, "11", RPC_INVALID_PARAMS, NULL);
                assert_string_equal(json_object_get_string(get(get(r, "error"), "message")), "params must be an object");
        }
        /* an invalid id is not echoed */
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":{\"a\":1},\"method\":\"echo\"}", "null", RPC_INVALID_REQUEST, NULL);
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":[1],\"method\":\"echo\"}", "null", RPC_INVALID_REQUEST, NULL);
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":true,\"method\":\"echo\"}", "null", RPC_INVALID_REQUEST, NULL);
        /* an invalid request without an id is not a notification: it is answered */
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"method\":7}", "null", RPC_INVALID_REQUEST, NULL);
        expect_error(f, &c, "5", "null", RPC_INVALID_REQUEST, NULL);
        expect_error(f, &c, "null", "null", RPC_INVALID_REQUEST, NULL);
        expect_error(f, &c, "\"x\"", "null", RPC_INVALID_REQUEST, NULL);
        assert_int_equal(f->calls, 0);
        client_close(&c);
}

static void test_parse_errors(void **state) {
        struct fx *f = *state;
        struct client c;

        start(f, NULL);
        client_connect(f, &c, f->path);
        expect_error(f, &c, "{\"jsonrpc\":", "null", RPC_PARSE_ERROR, NULL);
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"} x", "null", RPC_PARSE_ERROR, NULL);
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}{}", "null", RPC_PARSE_ERROR, NULL);
        expect_error(f, &c, "[1,]", "null", RPC_PARSE_ERROR, NULL);
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}", "null", RPC_PARSE_ERROR, NULL);
        /* an embedded NUL ends nothing: the rest of the line is garbage */
        {
                static const char line[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}\0{}\n";
                _cleanup_(put_json) struct json_object *r = NULL;

                client_write(f, &c, line, sizeof(line) - 1);
                r = client_reply(f, &c);
                assert_error(r, "null", RPC_PARSE_ERROR, NULL);
        }
        assert_int_equal(f->calls, 0);
        /* a parse error costs that line only */
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}", "1", "{}");
        client_close(&c);
}

static void test_depth_limit(void **state) {
        struct fx *f = *state;
        const uint64_t id = 2; /* connections are numbered from 1 in accept order */
        struct client c, other;

        start(f, NULL);
        client_connect(f, &other, f->path);
        client_connect(f, &c, f->path);
        /* max_depth 4 counts every value: the 1 below is at level 4 */
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"a\":[1]}}", "1",
                      "{\"a\":[1]}");
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"a\":[[]]}}", "1",
                      "{\"a\":[[]]}");
        assert_int_equal(stats(f).dropped, 0);

        /* one level more: a parse error, then the connection is closed */
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"a\":[[1]]}}", "null",
                     RPC_PARSE_ERROR, NULL);
        assert_eof(f, &c);
        assert_int_equal(stats(f).dropped, 1);
        assert_int_equal(stats(f).connections, 1);
        assert_int_equal(disconnect_count(f, id), 1);
        /* nobody else notices */
        expect_result(f, &other, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\"}", "2", "{}");
        assert_int_equal(disconnect_count(f, 1), 0);
        client_close(&c);
        client_close(&other);
}

static const char line_head[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"s\":\"";
static const char line_tail[] = "\"}}";

/* An echo request of exactly total bytes. */
static char *make_line(size_t total) {
        size_t head = strlen(line_head), tail = strlen(line_tail), pad;
        char *line;

        if (total < head + tail || total > 100000)
                abort();
        pad = total - head - tail;
        line = malloc(total + 1);
        if (!line)
                abort();
        memcpy(line, line_head, head);
        memset(line + head, 'x', pad);
        memcpy(line + head + pad, line_tail, tail + 1);
        assert_int_equal(strlen(line), total);
        return line;
}

static void test_message_limit(void **state) {
        struct fx *f = *state;
        struct client c, other;
        char *line;

        start(f, NULL);
        client_connect(f, &other, f->path);
        client_connect(f, &c, f->path);

        /* exactly max_message (1024) bytes before the '\n' */
        line = make_line(1024);
        {
                _cleanup_(put_json) struct json_object *r = call(f, &c, line);

                assert_int_equal(json_object_get_string_len(get(get(r, "result"), "s")), (int) (1024 - strlen(line_head) - strlen(line_tail)));
        }
        free(line);

        /* one more: limit_exceeded with id null, then closed */
        line = make_line(1025);
        expect_error(f, &c, line, "null", 1002, "limit_exceeded");
        free(line);
        assert_eof(f, &c);
        client_close(&c);
        assert_int_equal(disconnect_count(f, 2), 1);

        /* a partial line already over the limit does not wait for its '\n' */
        client_connect(f, &c, f->path);
        line = make_line(2000);
        client_write(f, &c, line, 2000);
        free(line);
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &c);

                assert_error(r, "null", 1002, "limit_exceeded");
        }
        assert_eof(f, &c);
        client_close(&c);
        assert_int_equal(stats(f).dropped, 2);

        /* the other client kept working all along */
        expect_result(f, &other, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\"}", "2", "{}");
        assert_int_equal(disconnect_count(f, 1), 0);
        client_close(&other);
}

/* A message must be complete within line_timeout_usec of its first byte. */
static void test_line_timeout(void **state) {
        struct fx *f = *state;
        struct rpc_server_limits l = small_limits;
        struct client c, other;
        uint64_t t0, now;

        l.line_timeout_usec = 300 * 1000;
        start(f, &l);
        client_connect(f, &other, f->path);
        client_connect(f, &c, f->path);

        /* Complete lines sent in pieces, each within the limit, are served. */
        client_write(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,", strlen("{\"jsonrpc\":\"2.0\",\"id\":1,"));
        run_idle(f);
        client_send(f, &c, "\"method\":\"echo\"}");
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &c);
                assert_string_equal(id_of(r), "1");
        }

        /* A line left half-sent: limit_exceeded, then closed, once the time is up. */
        assert_int_equal(sd_event_now(f->e, CLOCK_MONOTONIC, &t0), 0);
        client_write(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":2,\"meth", strlen("{\"jsonrpc\":\"2.0\",\"id\":2,\"meth"));
        run_idle(f);
        assert_no_reply(f, &c);
        do {
                assert_true(sd_event_run(f->e, 100 * 1000) >= 0);
                assert_int_equal(sd_event_now(f->e, CLOCK_MONOTONIC, &now), 0);
                assert_true(now - t0 < 5 * 1000 * 1000);
        } while (disconnect_count(f, 2) == 0);
        assert_true(now - t0 >= 300 * 1000);
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &c);
                assert_error(r, "null", 1002, "limit_exceeded");
        }
        assert_eof(f, &c);
        client_close(&c);

        /* The other connection, idle with nothing buffered, stays and works. */
        expect_result(f, &other, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"echo\"}", "3", "{}");
        assert_int_equal(disconnect_count(f, 1), 0);
        client_close(&other);
}

static void test_pipelined(void **state) {
        struct fx *f = *state;
        struct client c;
        static const char requests[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"n\":1}}\n"
                                       "{\"jsonrpc\":\"2.0\",\"method\":\"echo\"}\n"
                                       "\n"
                                       "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"fail\"}\n"
                                       "[{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"echo\"}]\n"
                                       "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"echo\"}\n";

        start(f, NULL);
        client_connect(f, &c, f->path);
        client_write(f, &c, requests, sizeof(requests) - 1);
        {
                _cleanup_(put_json) struct json_object *r1 = client_reply(f, &c);
                _cleanup_(put_json) struct json_object *r2 = client_reply(f, &c);
                _cleanup_(put_json) struct json_object *r3 = client_reply(f, &c);
                _cleanup_(put_json) struct json_object *r4 = client_reply(f, &c);

                assert_result(r1, "1", "{\"n\":1}");
                assert_error(r2, "2", 1008, "quota_exceeded");
                assert_int_equal(json_object_array_length(r3), 1);
                assert_result(json_object_array_get_idx(r3, 0), "3", "{}");
                assert_result(r4, "4", "{}");
        }
        assert_no_reply(f, &c);
        assert_int_equal(f->calls, 5);

        /* a request split over several writes */
        client_write(f, &c, "{\"jsonrpc\":\"2.0\",", 17);
        assert_no_reply(f, &c);
        client_write(f, &c, "\"id\":5,\"method\":\"echo\"}\n{\"jsonrpc\"", 34);
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &c);

                assert_result(r, "5", "{}");
        }
        assert_no_reply(f, &c);
        client_write(f, &c, ":\"2.0\",\"id\":6,\"method\":\"echo\"}\n", 31);
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &c);

                assert_result(r, "6", "{}");
        }
        client_close(&c);
}

static void test_partial_writes(void **state) {
        struct fx *f = *state;
        struct rpc_server_limits l = small_limits;
        struct client c;
        static const char requests[] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"big\",\"params\":{\"n\":400000}}\n"
                                       "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\"}\n";

        l.max_pending_bytes = 1024 * 1024;
        start(f, &l);
        client_connect(f, &c, f->path);
        /* The reply is larger than the socket buffer: the server writes part, waits for
         * EPOLLOUT, and the client gets it over many small reads. */
        c.chunk = 1000;
        client_write(f, &c, requests, sizeof(requests) - 1);
        run_idle(f);
        {
                _cleanup_(put_json) struct json_object *r1 = client_reply(f, &c);
                _cleanup_(put_json) struct json_object *r2 = client_reply(f, &c);

                assert_string_equal(id_of(r1), "1");
                assert_int_equal(json_object_get_string_len(get(get(r1, "result"), "data")), 400000);
                assert_result(r2, "2", "{}");
        }
        assert_no_reply(f, &c);
        assert_int_equal(stats(f).dropped, 0);

        /* the client goes away in the middle of a reply: no SIGPIPE, one on_disconnect */
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"big\",\"params\":{\"n\":400000}}");
        run_idle(f);
        assert_true(client_recv_once(&c) > 0);
        client_close(&c);
        run_idle(f);
        assert_int_equal(stats(f).connections, 0);
        assert_int_equal(f->n_disconnected, 1);
        assert_int_equal(disconnect_count(f, 1), 1);
}

static void test_half_close(void **state) {
        struct fx *f = *state;
        struct rpc_server_limits l = small_limits;
        struct client c;

        l.max_pending_bytes = 1024 * 1024;
        start(f, &l);
        /* shut down writing, still read the answers */
        client_connect(f, &c, f->path);
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}");
        client_write(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\"}", 40); /* no '\n': not a message */
        assert_int_equal(shutdown(c.fd, SHUT_WR), 0);
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &c);

                assert_result(r, "1", "{}");
        }
        assert_eof(f, &c);
        client_close(&c);
        assert_int_equal(f->calls, 1);
        assert_int_equal(disconnect_count(f, 1), 1);

        /* shut down with a reply still queued: it is all delivered, then EOF */
        client_connect(f, &c, f->path);
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"big\",\"params\":{\"n\":400000}}");
        assert_int_equal(shutdown(c.fd, SHUT_WR), 0);
        run_idle(f);
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &c);

                assert_int_equal(json_object_get_string_len(get(get(r, "result"), "data")), 400000);
        }
        assert_eof(f, &c);
        client_close(&c);
        assert_int_equal(disconnect_count(f, 2), 1);

        /* a last notification before closing is still handled */
        client_connect(f, &c, f->path);
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\"}");
        client_close(&c);
        run_idle(f);
        assert_int_equal(f->calls, 3);
        assert_int_equal(disconnect_count(f, 3), 1);
        assert_int_equal(stats(f).connections, 0);
}

static void test_fd_passing(void **state) {
        struct fx *f = *state;
        struct client c;
        char buf[8] = {};

        start(f, NULL);
        client_connect(f, &c, f->path);

        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"fd\"}");
        run_idle(f);
        /* sent, so the daemon's copy is closed */
        assert_false(fd_is_open(f->last_fd));
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &c);

                assert_result(r, "1", "{\"fd\":0}");
        }
        assert_int_equal(c.n_fds, 1);
        assert_int_equal(pread(c.fds[0], buf, 5, 0), 5);
        assert_string_equal(buf, "hello");
        assert_true(fcntl(c.fds[0], F_GETFD) & FD_CLOEXEC);
        client_close(&c);

        /* one line, two fds, indexed in order */
        client_connect(f, &c, f->path);
        c.chunk = 7; /* the fds come with the first byte of the line */
        {
                _cleanup_(put_json) struct json_object *r = call(
                        f, &c, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"fd\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"fd\"}]");

                assert_result(json_object_array_get_idx(r, 0), "1", "{\"fd\":0}");
                assert_result(json_object_array_get_idx(r, 1), "2", "{\"fd\":1}");
        }
        assert_int_equal(c.n_fds, 2);
        for (size_t i = 0; i < 2; i++)
                assert_int_equal(pread(c.fds[i], buf, 5, 0), 5);
        assert_int_not_equal(c.fds[0], c.fds[1]);
        client_close(&c);

        /* no reply, no fd: a notification's fds are closed, and do not shift the others */
        client_connect(f, &c, f->path);
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"method\":\"fd\"}");
        assert_no_reply(f, &c);
        assert_false(fd_is_open(f->last_fd));
        {
                _cleanup_(put_json) struct json_object *r = call(
                        f, &c, "[{\"jsonrpc\":\"2.0\",\"method\":\"fd\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"fd\"}]");

                assert_int_equal(json_object_array_length(r), 1);
                assert_result(json_object_array_get_idx(r, 0), "2", "{\"fd\":0}");
        }
        assert_int_equal(c.n_fds, 1);
        /* a failed request's fds are not sent either */
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"fd_fail\"}");
        run_idle(f);
        assert_false(fd_is_open(f->last_fd));
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &c);

                assert_error(r, "3", 1022, "backend_failed");
        }
        assert_int_equal(c.n_fds, 1);
        client_close(&c);
}

/* The received fd's content: "lent" when the line carried the lender's file as it was. */
#define assert_fd_reads(fd, want)                                                                  \
        do {                                                                                       \
                char buf_[8] = {};                                                                 \
                assert_int_equal(pread((fd), buf_, sizeof(buf_) - 1, 0), (ssize_t) strlen(want)); \
                assert_string_equal(buf_, (want));                                                 \
        } while (0)

static bool test_gate(void *userdata);

/*
 * A lent fd stays the handler's: sent at once, it is never closed or copied by the server;
 * still queued when the server calls a handler again or returns to the loop, the line holds
 * a dup of its own, so that the lender closing its fd (and the number going to another file)
 * changes nothing the peer receives.
 */
static void test_lent_fds(void **state) {
        struct fx *f = *state;
        struct client c;
        size_t n_open;

        start(f, NULL);
        rpc_server_set_output_gate(f->s, test_gate, f);
        f->gate_open = true;
        client_connect(f, &c, f->path);

        /* Sent at once: the lender's fd is untouched and still open. */
        {
                _cleanup_(put_json) struct json_object *r = call(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"lend\"}");
                assert_result(r, "1", "{\"fd\":0}");
        }
        assert_true(fd_is_open(f->lent_fd));
        assert_int_equal(c.n_fds, 1);
        assert_fd_reads(c.fds[0], "lent");

        /* A later request of the same batch replaces the lender's file: the line already has its own. */
        {
                _cleanup_(put_json) struct json_object *r = call(
                        f, &c, "[{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"lend\"},{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"unlend\"}]");
                assert_result(json_object_array_get_idx(r, 0), "2", "{\"fd\":0}");
        }
        assert_int_equal(c.n_fds, 2);
        assert_fd_reads(c.fds[1], "lent");
        assert_fd_reads(f->lent_fd, "other");
        close(f->lent_fd);
        f->lent_fd = -1;

        /* Held by the gate past the loop's turn: no dup is made while the lender keeps its fd
         * (the held replies of a busy turn cost nothing); one is when the lender lets go. */
        f->gate_open = false;
        n_open = open_fds();
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"lend\"}");
        run_idle(f);
        assert_no_reply(f, &c);
        assert_int_equal(open_fds(), n_open + 1); /* the lender's new file, and no copy */
        lender_replace(f);
        assert_int_equal(open_fds(), n_open + 2); /* its number reused, and the line's copy */
        f->gate_open = true;
        rpc_server_flush(f->s);
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &c);
                assert_result(r, "4", "{\"fd\":0}");
        }
        assert_int_equal(c.n_fds, 3);
        assert_fd_reads(c.fds[2], "lent");
        assert_fd_reads(f->lent_fd, "other");

        /* A notification's lent fd is neither sent nor closed; a lone one's line is dropped with
         * the connection without closing it either. */
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"method\":\"lend\"}");
        assert_no_reply(f, &c);
        assert_true(fd_is_open(f->lent_fd));
        f->gate_open = false;
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"lend\"}");
        client_close(&c);
        run_idle(f);
        assert_true(fd_is_open(f->lent_fd));
        assert_fd_reads(f->lent_fd, "other");
}

static void test_peercred_and_admin(void **state) {
        struct fx *f = *state;
        struct client a, b;
        _cleanup_(put_json) struct json_object *ra = NULL, *rb = NULL;

        start(f, NULL);
        client_connect(f, &a, f->path);
        client_connect(f, &b, f->admin_path);
        ra = call(f, &a, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"whoami\"}");
        rb = call(f, &b, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"whoami\"}");

        assert_int_equal(json_object_get_int64(get(get(ra, "result"), "uid")), getuid());
        assert_int_equal(json_object_get_int64(get(get(ra, "result"), "gid")), getgid());
        assert_int_equal(json_object_get_int64(get(get(ra, "result"), "pid")), getpid());
        assert_int_equal(json_object_get_uint64(get(get(ra, "result"), "connection")), 1);
        assert_false(json_object_get_boolean(get(get(ra, "result"), "admin")));

        assert_int_equal(json_object_get_int64(get(get(rb, "result"), "uid")), getuid());
        assert_int_equal(json_object_get_uint64(get(get(rb, "result"), "connection")), 2);
        assert_true(json_object_get_boolean(get(get(rb, "result"), "admin")));
        client_close(&a);
        client_close(&b);
}

static void expect_refused_connection(struct fx *f, const char *path, const char *why) {
        struct client c;
        _cleanup_(put_json) struct json_object *r = NULL;

        client_connect(f, &c, path);
        r = client_reply(f, &c);
        assert_error(r, "null", 1002, "limit_exceeded");
        if (!strstr(json_object_get_string(get(get(r, "error"), "message")), why))
                fail_msg("refused for another reason: %s", json_object_to_json_string(r));
        assert_eof(f, &c);
        client_close(&c);
}

static void test_connections_per_uid(void **state) {
        struct fx *f = *state;
        struct rpc_server_limits l = small_limits;
        struct client a, b, d;

        l.max_connections_per_uid = 2;
        start(f, &l);
        client_connect(f, &a, f->path);
        client_connect(f, &b, f->admin_path);
        /* counted across both sockets: the third is refused */
        expect_refused_connection(f, f->path, "too many connections for uid");
        assert_int_equal(stats(f).accepted, 3);
        assert_int_equal(stats(f).connections, 2);
        assert_int_equal(stats(f).dropped, 1);
        /* it never became a connection: no on_disconnect for it */
        run_idle(f);
        assert_int_equal(f->n_disconnected, 0);

        expect_result(f, &a, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}", "1", "{}");
        expect_result(f, &b, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}", "1", "{}");

        /* once one goes, there is room again */
        client_close(&a);
        run_idle(f);
        assert_int_equal(disconnect_count(f, 1), 1);
        client_connect(f, &d, f->admin_path);
        expect_result(f, &d, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}", "1", "{}");
        assert_int_equal(stats(f).connections, 2);
        client_close(&b);
        client_close(&d);
}

static bool test_gate(void *userdata) {
        struct fx *f = userdata;

        f->gate_asked++;
        return f->gate_open;
}

/* A closed gate holds replies and notifications, on every connection, until a flush after it
 * opens; the input side goes on meanwhile, and a peer that hung up gets what it was owed. */
static void test_output_gate(void **state) {
        struct fx *f = *state;
        struct client c, other;
        _cleanup_(put_json) struct json_object *params = json_object_new_object();
        char *line = NULL;

        start(f, NULL);
        rpc_server_set_output_gate(f->s, test_gate, f);
        client_connect(f, &c, f->path);
        client_connect(f, &other, f->path);
        f->gate_open = false;
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"a\":1}}");
        client_send(f, &other, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\",\"params\":{\"b\":2}}");
        assert_no_reply(f, &c);
        assert_no_reply(f, &other);
        assert_int_equal(rpc_server_notify(f->s, 1, "tick", params), 0);
        assert_no_reply(f, &c);
        assert_true(f->gate_asked > 0);
        assert_true(rpc_server_has_output(f->s));
        /* A flush while it is still closed writes nothing either. */
        rpc_server_flush(f->s);
        assert_no_reply(f, &c);

        f->gate_open = true;
        rpc_server_flush(f->s);
        assert_false(rpc_server_has_output(f->s));
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &c);
                assert_result(r, "1", "{\"a\":1}");
        }
        {
                _cleanup_(put_json) struct json_object *n = client_reply(f, &c);
                struct json_object *v;
                assert_true(json_object_object_get_ex(n, "method", &v));
                assert_string_equal(json_object_get_string(v), "tick");
        }
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &other);
                assert_result(r, "2", "{\"b\":2}");
        }

        /* Held when the client shuts its side down: delivered at the flush, then closed. */
        f->gate_open = false;
        client_send(f, &other, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"echo\",\"params\":{}}");
        assert_int_equal(shutdown(other.fd, SHUT_WR), 0);
        run_idle(f);
        assert_int_equal(stats(f).connections, 2);
        f->gate_open = true;
        rpc_server_flush(f->s);
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &other);
                assert_result(r, "3", "{}");
        }
        assert_int_equal(client_read_line(f, &other, &line), 0);
        run_idle(f);
        assert_int_equal(stats(f).connections, 1);
        assert_int_equal(f->n_undelivered, 0);
        client_close(&other);

        /* Many held lines go out together (one sendmsg() for fd-less runs), in order, and a
         * line with an fd still brings it with its own first byte, read a few bytes at a time. */
        f->gate_open = false;
        for (int i = 0; i < 100; i++)
                assert_int_equal(rpc_server_notify(f->s, 1, "tick", params), 0);
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"fd\"}");
        run_idle(f);
        assert_int_equal(rpc_server_notify(f->s, 1, "tock", params), 0);
        f->gate_open = true;
        rpc_server_flush(f->s);
        assert_false(fd_is_open(f->last_fd));
        c.chunk = 5;
        for (int i = 0; i < 100; i++) {
                _cleanup_(put_json) struct json_object *n = client_reply(f, &c);
                struct json_object *v;
                assert_true(json_object_object_get_ex(n, "method", &v));
                assert_string_equal(json_object_get_string(v), "tick");
        }
        assert_int_equal(c.n_fds, 0);
        {
                _cleanup_(put_json) struct json_object *r = client_reply(f, &c);
                assert_result(r, "4", "{\"fd\":0}");
        }
        assert_int_equal(c.n_fds, 1);
        {
                _cleanup_(put_json) struct json_object *n = client_reply(f, &c);
                struct json_object *v;
                assert_true(json_object_object_get_ex(n, "method", &v));
                assert_string_equal(json_object_get_string(v), "tock");
        }
        client_close(&c);
}

static void test_notify(void **state) {
        struct fx *f = *state;
        struct client c, other;
        _cleanup_(put_json) struct json_object *params = json_object_new_object(), *pad = NULL;
        const uint64_t id = 2;
        unsigned i;
        int r = 0;
        char *line = NULL, big[1024];

        start(f, NULL);
        client_connect(f, &other, f->path);
        client_connect(f, &c, f->path);
        json_object_object_add(params, "n", json_object_new_int(1));

        assert_int_equal(rpc_server_notify(f->s, 99, "tick", params), -ENOENT);
        assert_int_equal(rpc_server_notify(f->s, id, "tick", params), 0);
        /* written at once when the socket has room, without waiting for the loop */
        assert_true(client_recv_once(&c) > 0);
        {
                _cleanup_(put_json) struct json_object *n = client_reply(f, &c);
                struct json_object *v;

                assert_string_equal(json_object_to_json_string_ext(n, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                                    "{\"jsonrpc\":\"2.0\",\"method\":\"tick\",\"params\":{\"n\":1}}");
                assert_false(json_object_object_get_ex(n, "id", &v));
        }
        /* a notification queued by a handler goes out before that handler's reply */
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"notify_self\",\"params\":{\"a\":1}}");
        {
                _cleanup_(put_json) struct json_object *n = client_reply(f, &c);
                _cleanup_(put_json) struct json_object *rr = client_reply(f, &c);

                assert_string_equal(json_object_get_string(get(n, "method")), "hello");
                assert_result(rr, "7", "{}");
        }

        /* a subscriber that never reads: the socket fills, then the queue, then it is dropped */
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        pad = json_object_new_object();
        json_object_object_add(pad, "pad", json_object_new_string(big));
        for (i = 0; i < 100000; i++) {
                r = rpc_server_notify(f->s, id, "tick", pad);
                if (r < 0)
                        break;
        }
        assert_int_equal(r, -ENOBUFS);
        assert_true(i > 0);
        assert_int_equal(stats(f).dropped, 1);
        assert_int_equal(stats(f).connections, 1);
        assert_int_equal(rpc_server_notify(f->s, id, "tick", pad), -ENOENT);
        /* on_disconnect comes from the loop, never from inside rpc_server_notify() */
        assert_int_equal(disconnect_count(f, id), 0);
        run_idle(f);
        assert_int_equal(disconnect_count(f, id), 1);
        /* it gets what was written, then EOF */
        while ((r = client_read_line(f, &c, &line)) > 0)
                free(line);
        assert_int_equal(r, 0);
        client_close(&c);

        /* the others are unaffected */
        assert_int_equal(rpc_server_notify(f->s, 1, "tick", params), 0);
        {
                _cleanup_(put_json) struct json_object *n = client_reply(f, &other);

                assert_string_equal(json_object_get_string(get(n, "method")), "tick");
        }
        run_idle(f);
        assert_int_equal(f->n_disconnected, 1);
        client_close(&other);
}

static void test_stats(void **state) {
        struct fx *f = *state;
        struct client c;
        struct rpc_server_stats st;

        start(f, NULL);
        st = stats(f);
        assert_int_equal(st.accepted, 0);
        assert_int_equal(st.connections, 0);

        client_connect(f, &c, f->path);
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}", "1", "{}");
        expect_error(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"fail\"}", "2", 1008, "quota_exceeded");
        expect_error(f, &c, "{", "null", RPC_PARSE_ERROR, NULL);
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"method\":\"fail\"}"); /* not answered: not an error sent */
        assert_no_reply(f, &c);
        {
                _cleanup_(put_json) struct json_object *r =
                        call(f, &c, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"nope\"}]");

                assert_int_equal(json_object_array_length(r), 2);
        }
        st = stats(f);
        assert_int_equal(st.accepted, 1);
        assert_int_equal(st.connections, 1);
        assert_int_equal(st.requests, 6);
        assert_int_equal(st.errors, 3);
        assert_int_equal(st.dropped, 0);

        client_close(&c);
        run_idle(f);
        st = stats(f);
        assert_int_equal(st.connections, 0);
        assert_int_equal(st.accepted, 1);
        assert_int_equal(st.dropped, 0);
}

static void test_listen(void **state) {
        struct fx *f = *state;
        struct stat st;
        char other[256], file[300], toolong[200];
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct client c;
        int fd;

        start(f, NULL);
        /* modes and group applied */
        assert_int_equal(stat(f->path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0660);
        assert_int_equal(st.st_gid, getgid());
        assert_int_equal(stat(f->admin_path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);

        /* a stale socket (nobody listening) is replaced, and so is one a start that died left
         * at the temporary name (the socket is bound there and renamed once it listens) */
        snprintf(other, sizeof(other), "%s/other.sock", f->dir);
        strcpy(sa.sun_path, other);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        close(fd);
        snprintf(file, sizeof(file), "%s.new", other);
        strcpy(sa.sun_path, file);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        close(fd);
        assert_int_equal(stat(other, &st), 0);
        assert_int_equal(rpc_server_listen(f->s, other, 0666, (gid_t) -1, false), 0);
        assert_int_equal(lstat(file, &st), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(stat(other, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0666);
        client_connect(f, &c, other);
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}", "1", "{}");
        client_close(&c);

        /* anything else at the path is left alone */
        snprintf(file, sizeof(file), "%s/file", f->dir);
        fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(rpc_server_listen(f->s, file, 0600, (gid_t) -1, false), -EADDRINUSE);
        assert_int_equal(stat(file, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(unlink(file), 0);

        memset(toolong, 'a', sizeof(toolong) - 1);
        toolong[sizeof(toolong) - 1] = '\0';
        toolong[0] = '/';
        assert_int_equal(rpc_server_listen(f->s, toolong, 0600, (gid_t) -1, false), -ENAMETOOLONG);
        /* the temporary name must fit too: sun_path less ".new" */
        toolong[sizeof(sa.sun_path) - 4] = '\0';
        assert_int_equal(rpc_server_listen(f->s, toolong, 0600, (gid_t) -1, false), -ENAMETOOLONG);
        assert_int_equal(rpc_server_listen(f->s, "", 0600, (gid_t) -1, false), -EINVAL);
        assert_int_equal(rpc_server_listen(f->s, "/nonexistent-dir/x.sock", 0600, (gid_t) -1, false), -ENOENT);

        /* a path bound by us but replaced since is not ours to unlink */
        assert_int_equal(rpc_server_listen(f->s, file, 0600, (gid_t) -1, false), 0);
        assert_int_equal(unlink(file), 0);
        fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        close(fd);

        /* free unlinks the sockets it bound itself, and only those */
        rpc_server_free(f->s);
        f->s = NULL;
        assert_int_equal(stat(f->path, &st), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(stat(f->admin_path, &st), -1);
        assert_int_equal(stat(other, &st), -1);
        assert_int_equal(stat(file, &st), 0);
}

static void test_listener_fd(void **state) {
        struct fx *f = *state;
        char other[256];
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        struct client c;
        int fd;

        assert_int_equal(rpc_server_new(f->e, &small_limits, test_handler, test_disconnect, f, &f->s), 0);
        snprintf(other, sizeof(other), "%s/other.sock", f->dir);
        strcpy(sa.sun_path, other);

        /* not listening: refused, and the fd stays the caller's */
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(rpc_server_add_listener_fd(f->s, fd, true), -EINVAL);
        assert_true(fd_is_open(fd));
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 8), 0);
        /* activated sockets may come blocking */
        assert_int_equal(rpc_server_add_listener_fd(f->s, fd, true), 0);
        assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);

        client_connect(f, &c, other);
        {
                _cleanup_(put_json) struct json_object *r = call(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"whoami\"}");

                assert_true(json_object_get_boolean(get(get(r, "result"), "admin")));
        }
        client_close(&c);

        /* the activated socket's file is the service manager's: free leaves it */
        rpc_server_free(f->s);
        f->s = NULL;
        assert_int_equal(stat(other, &st), 0);
        assert_false(fd_is_open(fd));
        assert_int_equal(f->n_disconnected, 1);
}

/* ---- what json-c would alter: refused whole ---- */

/* The line is refused as a parse error with id null, its message valid UTF-8 without the
 * line's bytes, the handler not called, the connection still fine. */
static void expect_refused_line(struct fx *f, struct client *c, const char *line, const char *why) {
        unsigned calls = f->calls;
        _cleanup_(put_json) struct json_object *r = call(f, c, line);
        const char *message = json_object_get_string(get(get(r, "error"), "message"));

        assert_error(r, "null", RPC_PARSE_ERROR, NULL);
        if (!strstr(message, why))
                fail_msg("\"%s\" does not say \"%s\"", message, why);
        for (const char *p = message; *p; p++)
                assert_true((unsigned char) *p < 0x80);
        assert_int_equal(f->calls, calls);
}

#define ECHO_S(s) "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"s\":\"" s "\"}}"

/* 0 when s is valid UTF-8 (a second opinion: Python's decoder would refuse the same) */
static int utf8_check(const char *s) {
        const unsigned char *p = (const unsigned char *) s;

        while (*p) {
                unsigned cp, n;

                if (*p < 0x80) {
                        p++;
                        continue;
                }
                n = *p >= 0xf0 ? 3 : *p >= 0xe0 ? 2 : 1;
                cp = *p & (0x3f >> n);
                for (unsigned i = 1; i <= n; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return -1;
                        cp = (cp << 6) | (p[i] & 0x3f);
                }
                if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
                    (cp >= 0xd800 && cp <= 0xdfff) || *p >= 0xf8 || (*p & 0xc0) == 0x80)
                        return -1;
                p += n + 1;
        }
        return 0;
}

static void test_wire_utf8(void **state) {
        struct fx *f = *state;
        struct client c;

        start(f, NULL);
        client_connect(f, &c, f->path);
        /* json-c's own check lets these through */
        expect_refused_line(f, &c, ECHO_S("\xc0\xaf"), "invalid UTF-8 at byte 55");
        expect_refused_line(f, &c, ECHO_S("a\xe0\x80\xaf"), "invalid UTF-8");       /* overlong '/' */
        expect_refused_line(f, &c, ECHO_S("\xed\xa0\x80"), "invalid UTF-8");        /* U+D800 */
        expect_refused_line(f, &c, ECHO_S("\xed\xbf\xbf"), "invalid UTF-8");        /* U+DFFF */
        expect_refused_line(f, &c, ECHO_S("\xf4\x90\x80\x80"), "invalid UTF-8");    /* U+110000 */
        expect_refused_line(f, &c, ECHO_S("\xf8\x88\x80\x80\x80"), "invalid UTF-8");
        expect_refused_line(f, &c, ECHO_S("\xe2\x82"), "invalid UTF-8");            /* cut short */
        expect_refused_line(f, &c, ECHO_S("\x80"), "invalid UTF-8");
        /* in a member name, the method, the id: the same */
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"\xc0\xaf\":1}}",
                            "invalid UTF-8");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"e\xed\xa0\x80\"}", "invalid UTF-8");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":\"\xc0\xaf\",\"method\":\"echo\"}", "invalid UTF-8");
        /* json-c turns a lone surrogate escape into U+FFFD: the client did not send that */
        expect_refused_line(f, &c, ECHO_S("\\ud800"), "lone surrogate");
        expect_refused_line(f, &c, ECHO_S("\\uDBFF\\u0041"), "lone surrogate");
        expect_refused_line(f, &c, ECHO_S("\\ud800x"), "lone surrogate");
        expect_refused_line(f, &c, ECHO_S("\\udc00"), "lone surrogate");
        expect_refused_line(f, &c, ECHO_S("x\\ud83d"), "lone surrogate");
        expect_refused_line(f, &c, ECHO_S("\\ude00\\ud83d"), "lone surrogate");
        /* json-c cuts a member name at \u0000 */
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"a\\u0000b\" :1}}",
                            "member name");
        assert_int_equal(stats(f).dropped, 0);

        /* what is valid passes, exactly */
        expect_result(f, &c, ECHO_S("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\xef\xbf\xbd"), "1",
                      "{\"s\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\xef\xbf\xbd\"}");
        expect_result(f, &c, ECHO_S("\\ud83d\\ude00\\u00e9\\\\ud800\\\\"), "1",
                      "{\"s\":\"\xf0\x9f\x98\x80\xc3\xa9\\\\ud800\\\\\"}");
        /* NUL in a value is kept (its length says where it ends): the method decides */
        expect_result(f, &c, ECHO_S("a\\u0000b"), "1", "{\"s\":\"a\\u0000b\"}");
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"k\":\"a\\u0000b\",\"a:\":\":\"}}",
                      "1", "{\"k\":\"a\\u0000b\",\"a:\":\":\"}");
        client_close(&c);
}

static void test_wire_numbers(void **state) {
        struct fx *f = *state;
        struct client c;

        start(f, NULL);
        client_connect(f, &c, f->path);
        /* ids json-c accepted and echoed as something that is not JSON, or not the id */
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":NaN,\"method\":\"echo\"}", "NaN");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":Infinity,\"method\":\"echo\"}", "Infinity");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":-Infinity,\"method\":\"echo\"}", "Infinity");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":18446744073709551616,\"method\":\"echo\"}",
                            "outside [-2^63, 2^64-1]");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":-9223372036854775809,\"method\":\"echo\"}",
                            "outside [-2^63, 2^64-1]");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":99999999999999999999999,\"method\":\"echo\"}",
                            "outside");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1e400,\"method\":\"echo\"}", "too large");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":-1.5e309,\"method\":\"echo\"}", "too large");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":007,\"method\":\"echo\"}", "leading zero");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":-0,\"method\":\"echo\"}", "-0");
        /* in params too: the handler never sees a clamped or invented number */
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"n\":NaN}}", "NaN");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"n\":[18446744073709551616]}}",
                            "outside");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"n\":1.}}",
                            "not a JSON number");
        expect_refused_line(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"n\":.5}}", "");

        /* every other id comes back exactly as it was sent */
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":18446744073709551615,\"method\":\"echo\"}",
                      "18446744073709551615", "{}");
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":-9223372036854775808,\"method\":\"echo\"}",
                      "-9223372036854775808", "{}");
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"echo\"}", "0", "{}");
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":-0.0,\"method\":\"echo\"}", "-0.0", "{}");
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1E2,\"method\":\"echo\"}", "1E2", "{}");
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":0.1000000000000000000001,\"method\":\"echo\"}",
                      "0.1000000000000000000001", "{}");
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":\"NaN\",\"method\":\"echo\"}", "\"NaN\"", "{}");
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"n\":18446744073709551615}}",
                      "1", "{\"n\":18446744073709551615}");
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"t\":true,\"f\":false,\"z\":null}}",
                      "1", "{\"t\":true,\"f\":false,\"z\":null}");
        client_close(&c);
}

static void test_notification_flag(void **state) {
        struct fx *f = *state;
        struct client c;

        start(f, NULL);
        client_connect(f, &c, f->path);
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\"}");
        assert_no_reply(f, &c);
        assert_int_equal(f->calls, 1);
        assert_true(f->last_notification);
        /* an id, even null, makes it a request */
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"echo\"}", "null", "{}");
        assert_false(f->last_notification);
        client_send(f, &c, "[{\"jsonrpc\":\"2.0\",\"method\":\"echo\"}]");
        assert_no_reply(f, &c);
        assert_true(f->last_notification);
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"echo\"}", "2", "{}");
        assert_false(f->last_notification);
        client_close(&c);
}

/* ---- results that never reached their client ---- */

static void test_undelivered_replies(void **state) {
        struct fx *f = *state;
        struct rpc_server_limits l = small_limits;
        struct client c;
        int fd;

        l.max_pending_bytes = 1024 * 1024;
        start(f, &l);

        /* sent and gone at once: the reply's write fails (EPIPE), the hook hears of it once */
        client_connect(f, &c, f->path);
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\",\"params\":{\"a\":1}}");
        client_close(&c);
        run_idle(f);
        assert_int_equal(f->calls, 1);
        assert_int_equal(f->n_undelivered, 1);
        assert_int_equal(f->undelivered[0].connection, 1);
        assert_string_equal(f->undelivered[0].method, "echo");
        assert_string_equal(f->undelivered[0].result, "{\"a\":1}");
        assert_int_equal(disconnect_count(f, 1), 1);

        /* a batch: each result, not the errors, not the notifications; its fds are closed */
        client_connect(f, &c, f->path);
        client_send(f, &c, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"fd\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"fail\"},"
                           "{\"jsonrpc\":\"2.0\",\"method\":\"echo\"},{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"echo\"}]");
        client_close(&c);
        run_idle(f);
        assert_int_equal(f->n_undelivered, 3);
        assert_false(fd_is_open(f->last_fd));
        assert_string_equal(f->undelivered[1].method, "fd");
        assert_string_equal(f->undelivered[1].result, "{\"fd\":0}");
        assert_string_equal(f->undelivered[2].method, "echo");
        assert_int_equal(f->undelivered[2].connection, 2);

        /* read, or only written to the socket and never read: delivered */
        client_connect(f, &c, f->path);
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}", "1", "{}");
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"fd\"}");
        run_idle(f);
        fd = f->last_fd;
        assert_false(fd_is_open(fd));
        client_close(&c);
        run_idle(f);
        assert_int_equal(f->n_undelivered, 3);
        assert_int_equal(disconnect_count(f, 3), 1);

        /* a reply larger than the socket buffer, the client gone half-way: undelivered */
        client_connect(f, &c, f->path);
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"big\",\"params\":{\"n\":400000}}");
        run_idle(f);
        assert_true(client_recv_once(&c) > 0);
        client_close(&c);
        run_idle(f);
        assert_int_equal(f->n_undelivered, 4);
        assert_string_equal(f->undelivered[3].method, "big");

        /* a notification has no reply to lose; an error is not a result */
        client_connect(f, &c, f->path);
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"method\":\"echo\"}");
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"fail\"}");
        client_close(&c);
        run_idle(f);
        assert_int_equal(f->n_undelivered, 4);
}

static void test_undelivered_when_dropped(void **state) {
        struct fx *f = *state;
        struct rpc_server_limits l = small_limits;
        struct client c, other;

        l.max_pending_bytes = 300 * 1000;
        start(f, &l);
        /* a client that does not read: its queue passes the limit and it is dropped, with the
         * replies it never got */
        client_connect(f, &c, f->path);
        client_connect(f, &other, f->path);
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"big\",\"params\":{\"n\":200000}}");
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"big\",\"params\":{\"n\":200000}}");
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"big\",\"params\":{\"n\":200000}}");
        run_idle(f);
        assert_int_equal(stats(f).dropped, 1);
        assert_true(f->n_undelivered >= 1);
        for (size_t i = 0; i < f->n_undelivered; i++) {
                assert_int_equal(f->undelivered[i].connection, 1);
                assert_string_equal(f->undelivered[i].method, "big");
        }
        /* the others are not affected */
        expect_result(f, &other, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}", "1", "{}");
        client_close(&c);
        client_close(&other);

        /* on server free, queued replies are undelivered too; without the hook, nothing is called */
        client_connect(f, &c, f->path);
        rpc_server_set_undelivered(f->s, NULL);
        client_send(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"fd\"}");
        client_close(&c);
        run_idle(f);
        assert_false(fd_is_open(f->last_fd));
}

/* ---- connection caps ---- */

static void test_connection_caps(void **state) {
        struct fx *f = *state;
        struct rpc_server_limits l = small_limits;
        struct client a, b, c, d;

        /* the global cap, across both sockets */
        l.max_connections = 3;
        start(f, &l);
        client_connect(f, &a, f->path);
        client_connect(f, &b, f->admin_path);
        client_connect(f, &c, f->path);
        expect_refused_connection(f, f->path, "too many connections (limit 3)");
        expect_refused_connection(f, f->admin_path, "too many connections (limit 3)");
        assert_int_equal(stats(f).connections, 3);
        assert_int_equal(stats(f).refused, 2);
        client_close(&a);
        run_idle(f);
        client_connect(f, &a, f->path);
        expect_result(f, &a, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}", "1", "{}");
        client_close(&a);
        client_close(&b);
        client_close(&c);
        run_idle(f);
        rpc_server_free(f->s);
        f->s = NULL;
        f->n_disconnected = 0;

        /* a uid the policy does not know: two on the agent socket, the admin socket apart */
        l = small_limits;
        l.max_connections_unknown_uid = 2;
        start(f, &l);
        rpc_server_set_uid_known(f->s, test_uid_known);
        client_connect(f, &a, f->path);
        client_connect(f, &b, f->path);
        expect_refused_connection(f, f->path, "which the policy does not know (limit 2)");
        client_connect(f, &c, f->admin_path);
        expect_result(f, &c, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}", "1", "{}");
        assert_int_equal(stats(f).connections, 3);
        assert_true(f->uid_asked >= 1);
        /* once the policy knows it, the per-uid cap (8) is the one that counts */
        f->uid_known = true;
        client_connect(f, &d, f->path);
        expect_result(f, &d, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}", "1", "{}");
        client_close(&d);
        f->uid_known = false;
        run_idle(f);
        /* room again when one goes */
        client_close(&a);
        run_idle(f);
        client_connect(f, &a, f->path);
        expect_result(f, &a, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"echo\"}", "1", "{}");
        assert_int_equal(stats(f).refused, 1);
        client_close(&a);
        client_close(&b);
        client_close(&c);
}

static void test_error_message_utf8(void **state) {
        struct fx *f = *state;
        struct client c;
        char line[512];

        start(f, NULL);
        client_connect(f, &c, f->path);
        /* "no method <name>" cut at 255 bytes in the middle of a character: the half goes */
        snprintf(line, sizeof(line), "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"%s", "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn");
        for (size_t i = 0; i < 100; i++)
                strcat(line, "\xc3\xa9");
        strcat(line, "\"}");
        {
                _cleanup_(put_json) struct json_object *r = call(f, &c, line);
                const char *m = json_object_get_string(get(get(r, "error"), "message"));

                assert_error(r, "1", RPC_METHOD_NOT_FOUND, NULL);
                /* "no method " and 52 bytes, then whole 2-byte characters: the 255th byte was the
                 * first half of one */
                assert_int_equal(strlen(m), 254);
                assert_int_equal(utf8_check(m), 0);
        }
        client_close(&c);
}

static const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rpc_errors),
        cmocka_unit_test(test_reply_add_fd),
        cmocka_unit_test_setup_teardown(test_new_validates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notification, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_depth_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_message_limit, setup, teardown),
cmocka_unit_test_setup_teardown(test_line_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fd_passing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lent_fds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peercred_and_admin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connections_per_uid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_gate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listener_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wire_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wire_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notification_flag, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undelivered_replies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undelivered_when_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_message_utf8, setup, teardown),
};

int main(void) {
        return cmocka_run_group_tests(tests, NULL, NULL);
}
