/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The fake daemon libbrokerd-client's unit tests talk to: a socketpair whose far end is the
 * test, writing canned reply lines (with SCM_RIGHTS descriptors on their first byte, as brokerd
 * frames them) and reading the request lines the client wrote; and probes, pipes whose write
 * end is sent so that the test can tell when every copy of it was closed.
 * Include after cmocka.h.
 */
#include <fcntl.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/brokerd-client.h"

struct pair {
        struct bdc *c;
        int peer; /* the daemon's end */
};

static inline void pair_open(struct pair *p) {
        int sv[2];

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        assert_int_equal(bdc_connect_fd(sv[0], &p->c), 0);
        p->peer = sv[1];
}

static inline void pair_close(struct pair *p) {
        bdc_close(p->c);
        if (p->peer >= 0)
                close(p->peer);
        *p = (struct pair) { .peer = -1 };
}

/* One line from the daemon's end, with descriptors attached to its first byte. */
static inline void send_line_fds(int fd, const char *line, const int *fds, size_t n_fds) {
        union {
                struct cmsghdr align;
                char buf[CMSG_SPACE(sizeof(int) * BDC_MAX_FDS)];
        } control = {};
        size_t len = strlen(line);
        struct iovec iov[2] = {
                { .iov_base = (void *) line, .iov_len = len },
                { .iov_base = (void *) "\n", .iov_len = 1 },
        };
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };

        if (n_fds > 0) {
                struct cmsghdr *cmsg;

                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                cmsg = CMSG_FIRSTHDR(&mh);
                cmsg->cmsg_level = SOL_SOCKET;
                cmsg->cmsg_type = SCM_RIGHTS;
                cmsg->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * n_fds);
        }
        assert_int_equal(sendmsg(fd, &mh, MSG_NOSIGNAL), (ssize_t) len + 1);
}

static inline void send_line(int fd, const char *line) {
        send_line_fds(fd, line, NULL, 0);
}

static inline void send_raw(int fd, const char *data) {
        assert_int_equal(send(fd, data, strlen(data), MSG_NOSIGNAL), (ssize_t) strlen(data));
}

/* The next request the client wrote, parsed; asserts it is exactly one line. */
static inline struct json_object *read_request(int fd) {
        char buf[65536];
        size_t len = 0;
        struct json_object *o;

        for (;;) {
                ssize_t k;

                assert_true(len < sizeof(buf) - 1);
                k = recv(fd, buf + len, 1, 0);
                assert_int_equal(k, 1);
                if (buf[len++] == '\n')
                        break;
        }
        buf[len - 1] = 0;
        assert_null(memchr(buf, '\n', len - 1));
        o = json_tokener_parse(buf);
        assert_non_null(o);
        return o;
}

static inline const char *member_string(struct json_object *o, const char *key) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static inline int64_t member_int(struct json_object *o, const char *key) {
        struct json_object *v;

        assert_true(json_object_object_get_ex(o, key, &v));
        assert_true(json_object_is_type(v, json_type_int));
        return json_object_get_int64(v);
}

static inline struct json_object *member(struct json_object *o, const char *key) {
        struct json_object *v = NULL;

        json_object_object_get_ex(o, key, &v);
        return v;
}

/* A pipe whose write end we send: the reader sees EOF only once every copy is closed. */
struct probe {
        int rd, wr;
};

static inline void probe_open(struct probe *p) {
        int fds[2];

        assert_int_equal(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
        p->rd = fds[0];
        p->wr = fds[1];
}

/* After we drop our write end: true when nobody else holds one. */
static inline bool probe_all_closed(struct probe *p) {
        char c;

        if (p->wr >= 0) {
                close(p->wr);
                p->wr = -1;
        }
        return read(p->rd, &c, 1) == 0;
}

static inline void probe_close(struct probe *p) {
        if (p->wr >= 0)
                close(p->wr);
        close(p->rd);
}
