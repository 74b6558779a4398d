/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libbrokerd-client's wire: sending a request line, reading lines and the descriptors that
 * come with them, queueing notifications met on the way, and bdc_call() on top.
 */
#include "brokerd-client-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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
int bdc_read(struct bdc *c) {
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
int process_lines(struct bdc *c, struct json_object **ret_response) {
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

/* The request as one line, newline-terminated (malloc'ed). */
static int request_line(const char *method, struct json_object *params, int64_t id, char **ret, size_t *ret_len) {
        _cleanup_(json_object_putp) struct json_object *req = json_object_new_object();
        const char *s;
        char *line;
        size_t len;

        if (!req || add_string(req, "jsonrpc", "2.0") < 0 || add_value(req, "id", json_object_new_int64(id)) < 0 ||
            add_string(req, "method", method) < 0 ||
            add_value(req, "params", params ? json_object_get(params) : json_object_new_object()) < 0)
                return -ENOMEM;

        /* PLAIN never emits a raw newline: string contents are escaped. */
        s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return -ENOMEM;
        len = strlen(s);
        line = malloc(len + 2);
        if (!line)
                return -ENOMEM;
        memcpy(line, s, len);
        line[len++] = '\n';
        line[len] = 0;
        *ret = line;
        *ret_len = len;
        return 0;
}

/* A failure to send or receive ends the connection; err says which. */
static int transfer_failed(struct bdc *c, int r, const char *method, bool sending, struct bdc_error *err) {
        stop_collecting_fds(c);
        if (r == -ECONNRESET || r == -EPIPE)
                return local_error(err, bdc_kill(c, ECONNRESET), "brokerd closed the connection");
        if (sending)
                return local_error(err, -bdc_kill(c, r), "sending %s: %s", method, strerror(-r));
        if (r == -EMSGSIZE)
                return local_error(err, -bdc_kill(c, r), "a message from brokerd exceeds %u bytes", BDC_MAX_LINE);
        if (r == -EBADMSG)
                return local_error(err, -bdc_kill(c, r), "malformed message from brokerd");
        if (r == -ENOBUFS)
                return local_error(err, -bdc_kill(c, r), "more than %u notifications queued", BDC_MAX_QUEUED_EVENTS);
        return local_error(err, -bdc_kill(c, r), "receiving the reply to %s: %s", method, strerror(-r));
}

/* Hands the descriptors that came with the reply to the caller (up to *n_fds), closing the rest. */
static void hand_out_fds(struct bdc *c, int *ret_fds, size_t *n_fds) {
        size_t cap = ret_fds ? *n_fds : 0;

        if (cap > c->n_fds)
                cap = c->n_fds;
        if (ret_fds) {
                memcpy(ret_fds, c->fds, cap * sizeof(int));
                *n_fds = cap;
        }
        fds_close(c->fds + cap, c->n_fds - cap);
        c->n_fds = 0;
        c->collecting_fds = false;
}

/* The reply's result (borrowed from reply), after checking that it answers request want. */
static int reply_result(struct bdc *c, struct json_object *reply, int64_t want, const char *method,
                        struct json_object **ret, struct bdc_error *err) {
        struct json_object *id = NULL, *error;

        /* An error with id null answers a connection-level problem (a limit): it is ours. */
        json_object_object_get_ex(reply, "id", &id);
        if (!(id == NULL && json_object_object_get_ex(reply, "error", NULL)) &&
            !(json_object_is_type(id, json_type_int) && json_object_get_int64(id) == want))
                return local_error(err, -bdc_kill(c, -EBADMSG), "reply id %s does not match request id %" PRId64,
                                   id ? json_object_to_json_string(id) : "null", want);
        if (json_object_object_get_ex(reply, "error", &error))
                return error_from_reply(error, err);
        if (!json_object_object_get_ex(reply, "result", ret))
                return local_error(err, -bdc_kill(c, -EBADMSG), "reply to %s has neither result nor error", method);
        return 0;
}

_public_ int bdc_call(struct bdc *c, const char *method, struct json_object *params, struct json_object **ret_result,
                      int *ret_fds, size_t *n_fds, struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *reply = NULL;
        _cleanup_(xfreep) char *line = NULL;
        struct json_object *result = NULL;
        int64_t want;
        size_t len;
        int r;

        if (!c || !method || (ret_fds && !n_fds))
                return local_error(err, EINVAL, "invalid arguments");
        if (params && !json_object_is_type(params, json_type_object) && !json_object_is_type(params, json_type_array))
                return local_error(err, EINVAL, "params must be an object or an array");
        if (c->dead)
                return local_error(err, c->dead, "the connection to brokerd is closed");

        want = c->next_id++;
        if (request_line(method, params, want, &line, &len) < 0)
                return local_error(err, ENOMEM, "out of memory");

        /* Descriptors left over from an earlier exchange belong to nobody. */
        stop_collecting_fds(c);
        c->collecting_fds = true;

        r = send_all(c->fd, line, len);
        if (r < 0)
                return transfer_failed(c, r, method, true, err);
        r = read_response(c, &reply);
        if (r < 0)
                return transfer_failed(c, r, method, false, err);
        r = reply_result(c, reply, want, method, &result, err);
        if (r < 0) {
                stop_collecting_fds(c);
                return r;
        }

        hand_out_fds(c, ret_fds, n_fds);
        if (ret_result)
                *ret_result = json_object_get(result);
        return 0;
}
