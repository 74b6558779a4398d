/* SPDX-License-Identifier: Apache-2.0 */
/* libbrokerd-client: errors, small conversions, and opening and closing a connection. */
#include "brokerd-client-internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "util/error.h"
#include "util/num.h"

void json_object_putp(struct json_object **o) {
        if (*o)
                json_object_put(*o);
}

void fds_close(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
}

int add_value(struct json_object *o, const char *key, struct json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int add_string(struct json_object *o, const char *key, const char *value) {
        return add_value(o, key, json_object_new_string(value));
}

int add_u64(struct json_object *o, const char *key, uint64_t value) {
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

int local_error(struct bdc_error *err, int errnum, const char *fmt, ...) _printf_(3, 4);
int local_error(struct bdc_error *err, int errnum, const char *fmt, ...) {
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

int error_from_reply(struct json_object *error, struct bdc_error *err) {
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
int bdc_kill(struct bdc *c, int r) {
        if (!c->dead)
                c->dead = ECONNRESET;
        if (c->fd >= 0)
                (void) shutdown(c->fd, SHUT_RDWR);
        return r;
}

