/* SPDX-License-Identifier: Apache-2.0 */
#include "brokerd-client.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "util/error.h"
#include "util/macro.h"
#include "util/num.h"

/* The library is built with hidden visibility; only what the header declares is exported. */
#define _public_ __attribute__((visibility("default")))

/* How much one recvmsg() asks for. */
#define READ_CHUNK (64u * 1024)
/* Nesting the client accepts in a reply; the daemon's own limit is lower. */
#define JSON_MAX_DEPTH 64

struct bdc_queued_event {
        struct bdc_queued_event *next;
        char method[64];
        struct json_object *params;
};

struct bdc {
        int fd;
        int64_t next_id;
        /* Once the connection is unusable (closed, broken framing): the errno calls return. */
        int dead;

        /* Received bytes not yet consumed: [start, end) of buf; scan is where the search for
         * the next newline resumes. */
        char *buf;
        size_t start, end, scan, cap;

        /* Descriptors received since the current request was sent. */
        int fds[BDC_MAX_FDS];
        size_t n_fds;
        bool collecting_fds;

        struct bdc_queued_event *events_head, *events_tail;
        size_t n_events;
};

static void json_object_putp(struct json_object **o) {
        if (*o)
                json_object_put(*o);
}

static void fds_close(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

/* Adds an owned value (NULL after a failed allocation) to o. */
static int add_value(struct json_object *o, const char *key, struct json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int add_string(struct json_object *o, const char *key, const char *value) {
        return add_value(o, key, json_object_new_string(value));
}

static int add_u64(struct json_object *o, const char *key, uint64_t value) {
        return add_value(o, key, json_object_new_uint64(value));
}

_public_ void bdc_error_clear(struct bdc_error *err) {
        if (!err)
                return;
        if (err->data)
                json_object_put(err->data);
        *err = (struct bdc_error) {};
}

_public_ const char *bdc_error_name(const struct bdc_error *err) {
        if (!err)
                return "error";
        if (err->name[0])
                return err->name;
        switch (err->code) {
        case BDC_CODE_PARSE_ERROR:
                return "parse_error";
        case BDC_CODE_INVALID_REQUEST:
                return "invalid_request";
        case BDC_CODE_METHOD_NOT_FOUND:
                return "method_not_found";
        case BDC_CODE_INVALID_PARAMS:
                return "invalid_params";
        case BDC_CODE_INTERNAL_ERROR:
                return "internal_error";
        default:
                return "error";
        }
}

/* Fills err for a failure on the client side and returns -errnum. */
static int local_error(struct bdc_error *err, int errnum, const char *fmt, ...) _printf_(3, 4);
static int local_error(struct bdc_error *err, int errnum, const char *fmt, ...) {
        if (err) {
                const char *name;
                va_list ap;

                switch (errnum) {
                case ECONNRESET:
                case EPIPE:
                case ENOTCONN:
                        name = "disconnected";
                        break;
                case EBADMSG:
                case EMSGSIZE:
                case EPROTO:
                        name = "protocol_error";
                        break;
                case ENOMEM:
                        name = "no_memory";
                        break;
                case EINVAL:
                        name = "invalid_argument";
                        break;
                default:
                        name = "io_error";
                        break;
                }
                bdc_error_clear(err);
                snprintf(err->name, sizeof(err->name), "%s", name);
                va_start(ap, fmt);
                vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
        }
        return -errnum;
}

/* -errno for a daemon error code. */
static int code_to_errno(int code) {
        if (code > BDC_CODE_BASE && code < BDC_CODE_BASE + _BROKER_CODE_MAX)
                return -broker_code_errno((enum broker_code) (code - BDC_CODE_BASE));
        switch (code) {
        case BDC_CODE_PARSE_ERROR:
                return -EBADMSG;
        case BDC_CODE_INVALID_REQUEST:
        case BDC_CODE_INVALID_PARAMS:
                return -EINVAL;
        case BDC_CODE_METHOD_NOT_FOUND:
                return -EOPNOTSUPP;
        default:
                return -EIO;
        }
}

_public_ int bdc_parse_u64(const char *s, uint64_t *ret) {
        if (!ret)
                return -EINVAL;
        return num_parse_u64(s, ret);
}

_public_ const char *bdc_access_to_string(enum bdc_access a) {
        switch (a) {
        case BDC_ACCESS_RO:
                return "ro";
        case BDC_ACCESS_RW:
                return "rw";
        default:
                return NULL;
        }
}

_public_ int bdc_access_from_string(const char *s, enum bdc_access *ret) {
        if (streq_ptr(s, "ro"))
                *ret = BDC_ACCESS_RO;
        else if (streq_ptr(s, "rw"))
                *ret = BDC_ACCESS_RW;
        else
                return -EINVAL;
        return 0;
}

_public_ int bdc_connect_fd(int fd, struct bdc **ret) {
        _cleanup_(closep) int owned = fd;
        struct bdc *c;

        if (fd < 0 || !ret)
                return -EINVAL;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = TAKE_FD(owned);
        c->next_id = 1;
        *ret = c;
        return 0;
}

_public_ int bdc_connect(const char *path, struct bdc **ret) {
        _cleanup_(closep) int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t len;

        if (!ret)
                return -EINVAL;
        if (!path)
                path = secure_getenv(BDC_SOCKET_ENV);
        if (!path || !*path)
                path = BDC_AGENT_SOCKET;

        len = strlen(path);
        if (len >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, len);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        if (connect(fd, (struct sockaddr *) &sa, offsetof(struct sockaddr_un, sun_path) + len + 1) < 0)
                return negative_errno();

        return bdc_connect_fd(TAKE_FD(fd), ret);
}

static void event_free(struct bdc_queued_event *e) {
        if (!e)
                return;
        json_object_put(e->params);
        free(e);
}

_public_ void bdc_close(struct bdc *c) {
        if (!c)
                return;
        while (c->events_head) {
                struct bdc_queued_event *e = c->events_head;
                c->events_head = e->next;
                event_free(e);
        }
        fds_close(c->fds, c->n_fds);
        if (c->fd >= 0)
                close(c->fd);
        free(c->buf);
        free(c);
}

_public_ int bdc_fd(struct bdc *c) {
        return c ? c->fd : -EINVAL;
}

/* Marks the connection unusable; every later call fails with -ECONNRESET. */
static int bdc_kill(struct bdc *c, int r) {
        if (!c->dead)
                c->dead = ECONNRESET;
        if (c->fd >= 0)
                (void) shutdown(c->fd, SHUT_RDWR);
        return r;
}

static int send_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                struct pollfd pfd = { .fd = fd, .events = POLLOUT };
                                if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                                        return negative_errno();
                                continue;
                        }
                        return negative_errno();
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Stores received descriptors; outside a call nobody can own them, so they are closed. */
static int take_fds(struct bdc *c, const int *fds, size_t n) {
        int r = 0;

        for (size_t i = 0; i < n; i++) {
                if (c->collecting_fds && c->n_fds < BDC_MAX_FDS)
                        c->fds[c->n_fds++] = fds[i];
                else {
                        if (c->collecting_fds)
                                r = -EBADMSG; /* more than one reply may carry */
                        close(fds[i]);
                }
        }
        return r;
}

/*
 * One recvmsg() into the buffer. Returns 0, -EAGAIN (non-blocking socket, nothing there),
 * -ECONNRESET on end of stream, or another -errno.
 */
static int bdc_read(struct bdc *c) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * BDC_MAX_FDS)];
        } control;
        struct iovec iov;
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = sizeof(control),
        };
        ssize_t k;
        int r = 0;

        /* Compact, then make room for one chunk; the buffer never needs more than one line
         * plus one chunk. */
        if (c->start > 0) {
                memmove(c->buf, c->buf + c->start, c->end - c->start);
                c->end -= c->start;
                c->scan -= c->start;
                c->start = 0;
        }
        if (c->cap - c->end < READ_CHUNK) {
                size_t cap = c->end + READ_CHUNK;
                char *p;

                if (cap < c->cap * 2)
                        cap = c->cap * 2;
                p = realloc(c->buf, cap);
                if (!p)
                        return -ENOMEM;
                c->buf = p;
                c->cap = cap;
        }
        iov = (struct iovec) { .iov_base = c->buf + c->end, .iov_len = c->cap - c->end };

        do
                k = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return negative_errno();

        for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&mh); cmsg; cmsg = CMSG_NXTHDR(&mh, cmsg)) {
                if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
                        size_t n = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        int fds[BDC_MAX_FDS];

                        memcpy(fds, CMSG_DATA(cmsg), n * sizeof(int));
                        if (take_fds(c, fds, n) < 0)
                                r = -EBADMSG;
                }
        }
        if (mh.msg_flags & MSG_CTRUNC)
                return -EBADMSG; /* descriptors were dropped by the kernel */
        if (r < 0)
                return r;
        if (k == 0)
                return -ECONNRESET;
        c->end += (size_t) k;
        return 0;
}

/* The next complete line, NUL-terminated in place (without its newline), or NULL. */
static char *next_line(struct bdc *c, size_t *ret_len) {
        char *nl, *line;

        if (c->scan == c->end)
                return NULL; /* also before the first read, when buf is NULL */
        nl = memchr(c->buf + c->scan, '\n', c->end - c->scan);
        if (!nl) {
                c->scan = c->end;
                return NULL;
        }
        line = c->buf + c->start;
        *nl = 0;
        *ret_len = (size_t) (nl - line);
        c->start = c->scan = (size_t) (nl - c->buf) + 1;
        if (c->start == c->end)
                c->start = c->end = c->scan = 0;
        return line;
}

static int parse_line(const char *line, size_t len, struct json_object **ret) {
        _cleanup_(json_object_putp) struct json_object *o = NULL;
        struct json_tokener *tok;
        enum json_tokener_error jerr;
        size_t end;

        if (len > INT_MAX)
                return -EMSGSIZE;
        tok = json_tokener_new_ex(JSON_MAX_DEPTH);
        if (!tok)
                return -ENOMEM;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
        o = json_tokener_parse_ex(tok, line, (int) len);
        jerr = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        if (!o || jerr != json_tokener_success)
                return -EBADMSG;
        for (; end < len; end++)
                if (!strchr(" \t\r", line[end]))
                        return -EBADMSG;
        *ret = TAKE_PTR(o);
        return 0;
}

static int queue_event(struct bdc *c, struct json_object *msg) {
        struct json_object *method, *params = NULL;
        struct bdc_queued_event *e;
        const char *m;

        if (!json_object_object_get_ex(msg, "method", &method) || !json_object_is_type(method, json_type_string))
                return -EBADMSG;
        m = json_object_get_string(method);
        if (strlen(m) >= sizeof(e->method))
                return -EBADMSG;
        if (json_object_object_get_ex(msg, "params", &params) && !json_object_is_type(params, json_type_object))
                return -EBADMSG;
        if (c->n_events >= BDC_MAX_QUEUED_EVENTS)
                return -ENOBUFS;

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        snprintf(e->method, sizeof(e->method), "%s", m);
        e->params = params ? json_object_get(params) : json_object_new_object();
        if (!e->params) {
                free(e);
                return -ENOMEM;
        }
        if (c->events_tail)
                c->events_tail->next = e;
        else
                c->events_head = e;
        c->events_tail = e;
        c->n_events++;
        return 0;
}

/*
 * Consumes buffered lines: notifications are queued, and the first response is returned
 * in *ret_response (1), else 0 once no complete line is left. A line that is neither
 * is a protocol violation.
 */
static int process_lines(struct bdc *c, struct json_object **ret_response) {
        for (;;) {
                _cleanup_(json_object_putp) struct json_object *msg = NULL;
                size_t len;
                char *line;
                int r;

                line = next_line(c, &len);
                if (!line) {
                        if (c->end - c->start > BDC_MAX_LINE)
                                return -EMSGSIZE;
                        return 0;
                }
                if (len > BDC_MAX_LINE)
                        return -EMSGSIZE;
                r = parse_line(line, len, &msg);
                if (r < 0)
                        return r;
                if (!json_object_is_type(msg, json_type_object))
                        return -EBADMSG; /* we never send batches, so never get one back */

                if (json_object_object_get_ex(msg, "id", NULL)) {
                        if (json_object_object_get_ex(msg, "method", NULL))
                                return -EBADMSG; /* the daemon never sends requests */
                        *ret_response = TAKE_PTR(msg);
                        return 1;
                }
                r = queue_event(c, msg);
                if (r < 0)
                        return r;
        }
}

/* Reads until a response arrives. */
static int read_response(struct bdc *c, struct json_object **ret) {
        for (;;) {
                int r = process_lines(c, ret);
                if (r != 0)
                        return r < 0 ? r : 0;
                r = bdc_read(c);
                if (r == -EAGAIN) {
                        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
                        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                                return negative_errno();
                        continue;
                }
                if (r < 0)
                        return r;
        }
}

static void stop_collecting_fds(struct bdc *c) {
        fds_close(c->fds, c->n_fds);
        c->n_fds = 0;
        c->collecting_fds = false;
}

static int error_from_reply(struct json_object *error, struct bdc_error *err) {
        struct json_object *code, *message, *data, *name;
        int errnum;

        if (!json_object_is_type(error, json_type_object) || !json_object_object_get_ex(error, "code", &code) ||
            !json_object_is_type(code, json_type_int))
                return local_error(err, EBADMSG, "malformed error object in reply");
        errnum = code_to_errno(json_object_get_int(code));
        if (!err)
                return errnum;

        bdc_error_clear(err);
        err->code = json_object_get_int(code);
        if (json_object_object_get_ex(error, "message", &message) && json_object_is_type(message, json_type_string))
                snprintf(err->message, sizeof(err->message), "%s", json_object_get_string(message));
        if (json_object_object_get_ex(error, "data", &data) && data) {
                if (json_object_is_type(data, json_type_object) && json_object_object_get_ex(data, "name", &name) &&
                    json_object_is_type(name, json_type_string))
                        snprintf(err->name, sizeof(err->name), "%s", json_object_get_string(name));
                err->data = json_object_get(data);
        }
        return errnum;
}

_public_ int bdc_call(struct bdc *c, const char *method, struct json_object *params, struct json_object **ret_result,
                      int *ret_fds, size_t *n_fds, struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *req = NULL, *reply = NULL;
        struct json_object *id, *result, *error;
        _cleanup_(xfreep) char *line = NULL;
        const char *s;
        int64_t want;
        size_t len, cap;
        int r;

        if (!c || !method || (ret_fds && !n_fds))
                return local_error(err, EINVAL, "invalid arguments");
        if (params && !json_object_is_type(params, json_type_object) && !json_object_is_type(params, json_type_array))
                return local_error(err, EINVAL, "params must be an object or an array");
        if (c->dead)
                return local_error(err, c->dead, "the connection to brokerd is closed");

        want = c->next_id++;
        req = json_object_new_object();
        if (!req)
                return local_error(err, ENOMEM, "out of memory");
        if (add_string(req, "jsonrpc", "2.0") < 0 || add_value(req, "id", json_object_new_int64(want)) < 0 ||
            add_string(req, "method", method) < 0 ||
            add_value(req, "params", params ? json_object_get(params) : json_object_new_object()) < 0)
                return local_error(err, ENOMEM, "out of memory");

        /* PLAIN never emits a raw newline: string contents are escaped. */
        s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return local_error(err, ENOMEM, "out of memory");
        len = strlen(s);
        line = malloc(len + 2);
        if (!line)
                return local_error(err, ENOMEM, "out of memory");
        memcpy(line, s, len);
        line[len++] = '\n';
        line[len] = 0;

        /* Descriptors left over from an earlier exchange belong to nobody. */
        stop_collecting_fds(c);
        c->collecting_fds = true;

        r = send_all(c->fd, line, len);
        if (r < 0) {
                stop_collecting_fds(c);
                if (r == -EPIPE || r == -ECONNRESET)
                        return local_error(err, bdc_kill(c, ECONNRESET), "brokerd closed the connection");
                return local_error(err, -bdc_kill(c, r), "sending %s: %s", method, strerror(-r));
        }

        r = read_response(c, &reply);
        if (r < 0) {
                stop_collecting_fds(c);
                if (r == -ECONNRESET || r == -EPIPE)
                        return local_error(err, bdc_kill(c, ECONNRESET), "brokerd closed the connection");
                if (r == -EMSGSIZE)
                        return local_error(err, -bdc_kill(c, r), "a message from brokerd exceeds %u bytes",
                                           BDC_MAX_LINE);
                if (r == -EBADMSG)
                        return local_error(err, -bdc_kill(c, r), "malformed message from brokerd");
                if (r == -ENOBUFS)
                        return local_error(err, -bdc_kill(c, r), "more than %u notifications queued",
                                           BDC_MAX_QUEUED_EVENTS);
                return local_error(err, -bdc_kill(c, r), "receiving the reply to %s: %s", method, strerror(-r));
        }

        /* An error with id null answers a connection-level problem (a limit): it is ours. */
        json_object_object_get_ex(reply, "id", &id);
        if (!(id == NULL && json_object_object_get_ex(reply, "error", NULL)) &&
            !(json_object_is_type(id, json_type_int) && json_object_get_int64(id) == want)) {
                stop_collecting_fds(c);
                return local_error(err, -bdc_kill(c, -EBADMSG), "reply id %s does not match request id %" PRId64,
                                   id ? json_object_to_json_string(id) : "null", want);
        }

        if (json_object_object_get_ex(reply, "error", &error)) {
                stop_collecting_fds(c);
                return error_from_reply(error, err);
        }
        if (!json_object_object_get_ex(reply, "result", &result)) {
                stop_collecting_fds(c);
                return local_error(err, -bdc_kill(c, -EBADMSG), "reply to %s has neither result nor error", method);
        }

        cap = ret_fds ? *n_fds : 0;
        if (cap > c->n_fds)
                cap = c->n_fds;
        if (ret_fds) {
                memcpy(ret_fds, c->fds, cap * sizeof(int));
                *n_fds = cap;
        }
        fds_close(c->fds + cap, c->n_fds - cap);
        c->n_fds = 0;
        c->collecting_fds = false;

        if (ret_result)
                *ret_result = json_object_get(result);
        return 0;
}

_public_ void bdc_event_clear(struct bdc_event *ev) {
        if (!ev)
                return;
        if (ev->params)
                json_object_put(ev->params);
        *ev = (struct bdc_event) {};
}

static uint64_t now_msec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

_public_ int bdc_next_event(struct bdc *c, int timeout_ms, struct bdc_event *ret) {
        uint64_t until = 0;

        if (!c || !ret)
                return -EINVAL;
        if (timeout_ms > 0)
                until = now_msec() + (uint64_t) timeout_ms;

        for (;;) {
                struct json_object *response = NULL;
                struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
                int r, wait;

                if (c->events_head) {
                        struct bdc_queued_event *e = c->events_head;

                        c->events_head = e->next;
                        if (!c->events_head)
                                c->events_tail = NULL;
                        c->n_events--;
                        memcpy(ret->method, e->method, sizeof(ret->method));
                        ret->params = TAKE_PTR(e->params);
                        free(e);
                        return 0;
                }
                if (c->dead)
                        return -c->dead;

                r = process_lines(c, &response);
                if (r > 0) {
                        struct json_object *id = NULL;
                        bool closing;

                        /* An error with id null is the daemon saying why it closes the
                         * connection (a limit); any other response has no request. */
                        json_object_object_get_ex(response, "id", &id);
                        closing = !id && json_object_object_get_ex(response, "error", NULL);
                        json_object_put(response);
                        return bdc_kill(c, closing ? -ECONNRESET : -EBADMSG);
                }
                if (r < 0)
                        return r == -ENOMEM ? r : bdc_kill(c, r);
                if (c->events_head)
                        continue;

                if (timeout_ms < 0)
                        wait = -1;
                else if (timeout_ms == 0)
                        wait = 0;
                else {
                        uint64_t now = now_msec();
                        wait = now >= until ? 0 : (int) (until - now);
                }
                r = poll(&pfd, 1, wait);
                if (r < 0)
                        return negative_errno();
                if (r == 0)
                        return -ETIMEDOUT;

                r = bdc_read(c);
                if (r == -EAGAIN)
                        continue;
                if (r == -ECONNRESET || r == -EPIPE) {
                        bdc_kill(c, 0);
                        continue; /* hand out what was queued first */
                }
                if (r < 0)
                        return r == -ENOMEM ? r : bdc_kill(c, r);
        }
}

/* Reply accessors: a missing or mistyped member is a protocol violation. */
static int get_u64(struct json_object *o, const char *key, uint64_t *ret) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v))
                return -EBADMSG;
        if (json_object_is_type(v, json_type_int)) {
                if (json_object_get_int64(v) < 0)
                        return -EBADMSG;
                *ret = json_object_get_uint64(v);
                return 0;
        }
        if (json_object_is_type(v, json_type_string))
                return bdc_parse_u64(json_object_get_string(v), ret) < 0 ? -EBADMSG : 0;
        return -EBADMSG;
}

static const char *get_string(struct json_object *o, const char *key) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

/*
 * The descriptor a result's "fd" member names, taken out of fds (set to -1 there); -1 when the
 * result has no "fd" (backends that map into VMs, such as libvirt, pass none).
 */
static int take_result_fd(struct json_object *result, int *fds, size_t n_fds, int *ret) {
        uint64_t index;

        if (!json_object_object_get_ex(result, "fd", NULL)) {
                *ret = -1;
                return 0;
        }
        if (get_u64(result, "fd", &index) < 0 || index >= n_fds)
                return -EBADMSG;
        *ret = fds[index];
        fds[index] = -1;
        return 0;
}

_public_ int bdc_subscribe(struct bdc *c, const char *const *domains, size_t n, struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *params = json_object_new_object(), *result = NULL;

        if (!params)
                return local_error(err, ENOMEM, "out of memory");
        if (domains && n > 0) {
                struct json_object *a = json_object_new_array_ext((int) n);
                if (!a || json_object_object_add(params, "domains", a) < 0) {
                        json_object_put(a);
                        return local_error(err, ENOMEM, "out of memory");
                }
                for (size_t i = 0; i < n; i++) {
                        if (!domains[i])
                                return local_error(err, EINVAL, "domain %zu is NULL", i);
                        struct json_object *d = json_object_new_string(domains[i]);
                        if (!d || json_object_array_add(a, d) < 0) {
                                json_object_put(d);
                                return local_error(err, ENOMEM, "out of memory");
                        }
                }
        }
        return bdc_call(c, "events.subscribe", params, &result, NULL, NULL, err);
}

static void tokens_free(struct bdc_token *t, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(t[i].domain);
                free(t[i].token);
        }
        free(t);
}

_public_ void bdc_share_result_clear(struct bdc_share_result *r) {
        if (!r)
                return;
        free(r->reason);
        free(r->pool);
        tokens_free(r->tokens, r->n_tokens);
        if (r->fd >= 0)
                close(r->fd);
        *r = (struct bdc_share_result) { .fd = -1 };
}

static int share_params(const struct bdc_share_request *req, struct json_object **ret) {
        _cleanup_(json_object_putp) struct json_object *p = json_object_new_object();
        struct json_object *peers;

        if (!p)
                return -ENOMEM;
        if (add_string(p, "owner", req->owner) < 0 || add_string(p, "device", req->device) < 0 ||
            add_u64(p, "size", req->size) < 0)
                return -ENOMEM;

        peers = json_object_new_array_ext((int) req->n_peers);
        if (!peers || json_object_object_add(p, "peers", peers) < 0) {
                json_object_put(peers);
                return -ENOMEM;
        }
        for (size_t i = 0; i < req->n_peers; i++) {
                struct json_object *peer = json_object_new_object();
                if (!peer || json_object_array_add(peers, peer) < 0) {
                        json_object_put(peer);
                        return -ENOMEM;
                }
                if (add_string(peer, "domain", req->peers[i].domain) < 0 ||
                    add_string(peer, "access", bdc_access_to_string(req->peers[i].access)) < 0)
                        return -ENOMEM;
        }

        if (req->label && add_string(p, "label", req->label) < 0)
                return -ENOMEM;
        if (req->alignment > 0 && add_u64(p, "alignment", req->alignment) < 0)
                return -ENOMEM;
        if (req->has_numa_node && add_u64(p, "numa_node", req->numa_node) < 0)
                return -ENOMEM;
        if (req->place) {
                char buf[32];
                snprintf(buf, sizeof(buf), "0x%" PRIx64, req->base);
                if (add_string(p, "base", buf) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(p);
        return 0;
}

static int parse_tokens(struct json_object *result, struct bdc_token **ret, size_t *ret_n) {
        struct bdc_token *tokens = NULL;
        struct json_object *a;
        size_t n;

        if (!json_object_object_get_ex(result, "tokens", &a) || !json_object_is_type(a, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(a);
        if (n > 0) {
                tokens = calloc(n, sizeof(*tokens));
                if (!tokens)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                struct json_object *t = json_object_array_get_idx(a, i);
                const char *domain = get_string(t, "domain"), *token = get_string(t, "token");

                if (!domain || !token) {
                        tokens_free(tokens, n);
                        return -EBADMSG;
                }
                tokens[i].domain = strdup(domain);
                tokens[i].token = strdup(token);
                if (!tokens[i].domain || !tokens[i].token) {
                        tokens_free(tokens, n);
                        return -ENOMEM;
                }
        }
        *ret = tokens;
        *ret_n = n;
        return 0;
}

static int reply_error(struct bdc_error *err, int r, const char *method) {
        if (r == -ENOMEM)
                return local_error(err, ENOMEM, "out of memory");
        return local_error(err, EBADMSG, "malformed reply to %s", method);
}

_public_ int bdc_share(struct bdc *c, const struct bdc_share_request *req, struct bdc_share_result *ret,
                       struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *params = NULL, *result = NULL;
        _cleanup_(bdc_share_result_clear) struct bdc_share_result res = { .fd = -1 };
        int fds[BDC_MAX_FDS];
        size_t n_fds = ELEMENTSOF(fds);
        const char *placement, *s;
        int r;

        if (!c || !req || !ret || !req->owner || !req->device || (req->n_peers > 0 && !req->peers))
                return local_error(err, EINVAL, "invalid arguments");
        for (size_t i = 0; i < req->n_peers; i++)
                if (!req->peers[i].domain || !bdc_access_to_string(req->peers[i].access))
                        return local_error(err, EINVAL, "peer %zu is invalid", i);
        if (req->n_peers > INT_MAX)
                return local_error(err, EINVAL, "too many peers");

        r = share_params(req, &params);
        if (r < 0)
                return local_error(err, ENOMEM, "out of memory");
        r = bdc_call(c, "region.share", params, &result, fds, &n_fds, err);
        if (r < 0)
                return r;

        placement = get_string(result, "placement");
        if (streq_ptr(placement, "bounce")) {
                fds_close(fds, n_fds);
                res.placement = BDC_PLACEMENT_BOUNCE;
                s = get_string(result, "reason");
                res.reason = strdup(s ?: "");
                if (!res.reason)
                        return local_error(err, ENOMEM, "out of memory");
                *ret = res;
                res = (struct bdc_share_result) { .fd = -1 };
                return 0;
        }

        r = -EBADMSG;
        if (streq_ptr(placement, "region") && get_u64(result, "region", &res.region) >= 0 &&
            get_u64(result, "base", &res.base) >= 0 && get_u64(result, "size", &res.size) >= 0)
                r = take_result_fd(result, fds, n_fds, &res.fd);
        fds_close(fds, n_fds);
        if (r < 0)
                return reply_error(err, r, "region.share");
        res.placement = BDC_PLACEMENT_REGION;
        (void) get_u64(result, "alignment", &res.alignment); /* informative */
        s = get_string(result, "pool");
        if (s) {
                res.pool = strdup(s);
                if (!res.pool)
                        return local_error(err, ENOMEM, "out of memory");
        }
        r = parse_tokens(result, &res.tokens, &res.n_tokens);
        if (r < 0)
                return reply_error(err, r, "region.share");

        *ret = res;
        res = (struct bdc_share_result) { .fd = -1 };
        return 0;
}

_public_ void bdc_attach_result_clear(struct bdc_attach_result *r) {
        if (!r)
                return;
        if (r->fd >= 0)
                close(r->fd);
        *r = (struct bdc_attach_result) { .fd = -1 };
}

_public_ int bdc_attach(struct bdc *c, const char *domain, const char *token, struct bdc_attach_result *ret,
                        struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *params = NULL, *result = NULL;
        struct bdc_attach_result res = { .fd = -1 };
        int fds[BDC_MAX_FDS];
        size_t n_fds = ELEMENTSOF(fds);
        int r;

        if (!c || !domain || !token || !ret)
                return local_error(err, EINVAL, "invalid arguments");
        params = json_object_new_object();
        if (!params || add_string(params, "domain", domain) < 0 || add_string(params, "token", token) < 0)
                return local_error(err, ENOMEM, "out of memory");

        r = bdc_call(c, "region.attach", params, &result, fds, &n_fds, err);
        if (r < 0)
                return r;

        r = -EBADMSG;
        if (get_u64(result, "region", &res.region) >= 0 && get_u64(result, "base", &res.base) >= 0 &&
            get_u64(result, "size", &res.size) >= 0 &&
            bdc_access_from_string(get_string(result, "access"), &res.access) >= 0)
                r = take_result_fd(result, fds, n_fds, &res.fd);
        fds_close(fds, n_fds);
        if (r < 0)
                return reply_error(err, r, "region.attach");

        *ret = res;
        return 0;
}

_public_ int bdc_map(int fd, uint64_t size, bool writable, void **ret_addr) {
        void *p;

        if (fd < 0 || size == 0 || size > SIZE_MAX || !ret_addr)
                return -EINVAL;
        p = mmap(NULL, (size_t) size, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return negative_errno();
        *ret_addr = p;
        return 0;
}

_public_ int bdc_release(struct bdc *c, const char *domain, uint64_t region, struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *params = NULL, *result = NULL;

        if (!c || !domain)
                return local_error(err, EINVAL, "invalid arguments");
        params = json_object_new_object();
        if (!params || add_string(params, "domain", domain) < 0 || add_u64(params, "region", region) < 0)
                return local_error(err, ENOMEM, "out of memory");
        return bdc_call(c, "region.release", params, &result, NULL, NULL, err);
}

_public_ int bdc_revoke(struct bdc *c, const char *owner, uint64_t region, int64_t deadline_ms, bool force,
                        struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *params = NULL, *result = NULL;

        if (!c)
                return local_error(err, EINVAL, "invalid arguments");
        params = json_object_new_object();
        if (!params || (owner && add_string(params, "owner", owner) < 0) || add_u64(params, "region", region) < 0 ||
            (deadline_ms >= 0 && add_u64(params, "deadline_ms", (uint64_t) deadline_ms) < 0))
                return local_error(err, ENOMEM, "out of memory");
        if (force) {
                struct json_object *t = json_object_new_boolean(1);
                if (!t || json_object_object_add(params, "force", t) < 0) {
                        json_object_put(t);
                        return local_error(err, ENOMEM, "out of memory");
                }
        }
        return bdc_call(c, owner ? "region.revoke" : "admin.revoke", params, &result, NULL, NULL, err);
}
