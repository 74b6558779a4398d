/* SPDX-License-Identifier: Apache-2.0 */
#include "rpc/rpc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rpc/server-internal.h"
#include "util/error.h"
#include "util/macro.h"

int rpc_error_from_broker(struct rpc_error *err, int broker_code, const char *message) {
        const char *name = broker_code_name(broker_code);

        if (err) {
                err->code = RPC_BROKER_CODE_BASE + broker_code;
                snprintf(err->name, sizeof(err->name), "%s", name);
                /* The message is for people; fall back to the name rather than send nothing. */
                snprintf(err->message, sizeof(err->message), "%s", message && *message ? message : name);
        }
        return -broker_code_errno(broker_code);
}

int rpc_error_set(struct rpc_error *err, int code, const char *fmt, ...) {
        if (err) {
                va_list ap;

                err->code = code;
                err->name[0] = '\0';
                va_start(ap, fmt);
                vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

int rpc_reply_add_fd(struct rpc_reply_fds *r, int fd) {
        if (fd < 0)
                return -EBADF;
        if (r->n >= RPC_MAX_FDS_PER_LINE) {
                close(fd);
                return -E2BIG;
        }
        r->fds[r->n] = fd;
        r->lent[r->n] = false;
        return (int) r->n++;
}

size_t rpc_fds_close_owned(const int *fds, const bool *lent, size_t n) {
        size_t n_lent = 0;

        for (size_t i = 0; i < n; i++)
                if (lent[i])
                        n_lent++;
                else if (fds[i] >= 0)
                        close(fds[i]);
        return n_lent;
}

int rpc_fds_keep(int *fds, bool *lent, size_t n, size_t *n_lent, int fd) {
        for (size_t i = 0; i < n && *n_lent > 0; i++) {
                int own;

                if (!lent[i] || (fd >= 0 && fds[i] != fd))
                        continue;
                own = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                if (own < 0)
                        return negative_errno();
                fds[i] = own;
                lent[i] = false;
                (*n_lent)--;
        }
        return 0;
}

int rpc_reply_fds_pin(struct rpc_reply_fds *r) {
        return rpc_fds_keep(r->fds, r->lent, r->n, &r->n_lent, -1);
}

void rpc_reply_fds_truncate(struct rpc_reply_fds *r, size_t from) {
        if (r->n <= from)
                return;
        r->n_lent -= rpc_fds_close_owned(r->fds + from, r->lent + from, r->n - from);
        r->n = from;
}

int rpc_reply_lend_fd(struct rpc_reply_fds *r, int fd) {
        if (fd < 0)
                return -EBADF;
        if (r->n >= RPC_MAX_FDS_PER_LINE)
                return -E2BIG;
        r->fds[r->n] = fd;
        r->lent[r->n] = true;
        r->n_lent++;
        return (int) r->n++;
}
