/* SPDX-License-Identifier: Apache-2.0 */
/* Listening sockets, accept, and who may connect (the connection caps). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "rpc/server-internal.h"
#include "util/log.h"
#include "util/pidfd.h"
#include "util/hashmap.h"

/* Listeners are level-triggered: accepting a bounded number per wakeup keeps a connection
 * storm from starving the connections already open. */
#define ACCEPT_BURST 64
/* After EMFILE and friends the listening socket stays readable; without a pause the loop
 * would spin on it. */
#define ACCEPT_PAUSE_USEC (100 * 1000)

struct uid_count {
        uint64_t uid; /* the key */
        unsigned n;   /* on both sockets */
        unsigned n_agent; /* on agent sockets only: what the unknown-uid cap counts */
};

static struct uid_count *uid_count_get(struct rpc_server *s, uid_t uid) {
        uint64_t key = uid;

        return hashmap_get(s->by_uid, &key);
}

void rpc_uid_count_dec(struct rpc_server *s, uid_t uid, bool admin) {
        struct uid_count *u = uid_count_get(s, uid);

        if (!u)
                return;
        if (!admin)
                u->n_agent--;
        if (--u->n == 0) {
                hashmap_remove(s->by_uid, &u->uid);
                free(u);
        }
}

int rpc_uid_count_inc(struct rpc_server *s, uid_t uid, bool admin) {
        _cleanup_(xfreep) struct uid_count *n = NULL;
        struct uid_count *u = uid_count_get(s, uid);
        int r;

        if (!u) {
                n = calloc(1, sizeof(*n));
                if (!n)
                        return -ENOMEM;
                n->uid = uid;
                r = hashmap_put(s->by_uid, &n->uid, n);
                if (r < 0)
                        return r;
                u = TAKE_PTR(n);
        }
        u->n++;
        if (!admin)
                u->n_agent++;
        return 0;
}

/* Best effort: the connection is refused, so it gets one try at a small error and no queue. */
static void refuse_connection(struct rpc_server *s, int fd, struct json_object *e) {
        const char *str;
        size_t len;

        if (e) {
                str = json_object_to_json_string_length(e, RPC_JSON_FLAGS, &len);
                if (str) {
                        struct iovec iov[2] = {
                                { .iov_base = (void *) str, .iov_len = len },
                                { .iov_base = (void *) "\n", .iov_len = 1 },
                        };
                        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };

                        (void) sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
                }
                json_object_put(e);
        }
        close(fd);
        s->stats.dropped++;
        s->stats.refused++;
}

/* NULL when the caps let ucred in, else the error to refuse it with. */
static struct json_object *admission_error(struct rpc_server *s, const struct ucred *ucred, bool admin) {
        const struct rpc_server_limits *lim = &s->limits;
        struct uid_count *u = uid_count_get(s, ucred->uid);
        unsigned uid = (unsigned) ucred->uid;

        if (s->stats.connections >= lim->max_connections)
                return rpc_limit_error(s, "too many connections (limit %u)", lim->max_connections);
        if (u && u->n >= lim->max_connections_per_uid)
                return rpc_limit_error(s, "too many connections for uid %u (limit %u)", uid,
                                       lim->max_connections_per_uid);
        /* The admin socket is for the administrator, whom the policy need not list. */
        if (!admin && u && u->n_agent >= lim->max_connections_unknown_uid && s->uid_known &&
            !s->uid_known(s->userdata, ucred->uid))
                return rpc_limit_error(s, "too many connections for uid %u, which the policy does not know (limit %u)",
                                       uid, lim->max_connections_unknown_uid);
        return NULL;
}

static int server_add_connection(struct rpc_server *s, int fd_in, bool admin) {
        _cleanup_(closep) int fd = fd_in, pidfd = -EBADF;
        struct json_object *refusal;
        int r;
        struct ucred ucred;
        socklen_t len = sizeof(ucred);

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &ucred, &len) < 0)
                return -errno;
        if (len != sizeof(ucred))
                return -EIO;
        s->stats.accepted++;

        refusal = admission_error(s, &ucred, admin);
        if (refusal) {
                refuse_connection(s, TAKE_FD(fd), refusal);
                return -EUSERS;
        }
        /*
         * The process that connected is gone: whoever holds the socket now is nobody brokerd could
         * act on, so it is not served. Any other failure (no pidfds at all) is served untracked.
         */
        r = pidfd_of_peer(fd, ucred.pid, &pidfd);
        if (r == -ESRCH)
                return r;
        if (r < 0)
                log_warning("rpc: no pidfd for pid %d (%s): its mappings will not follow its process", (int) ucred.pid,
                            strerror(-r));
        return rpc_connection_add(s, TAKE_FD(fd), &ucred, TAKE_FD(pidfd), admin);
}

static void server_set_accepting(struct rpc_server *s, bool on) {
        for (struct rpc_listener *l = s->listeners; l; l = l->next)
                (void) sd_event_source_set_enabled(l->source, on ? SD_EVENT_ON : SD_EVENT_OFF);
}

static int accept_timer_dispatch(sd_event_source *source, uint64_t usec, void *userdata) {
        struct rpc_server *s = userdata;

        (void) source;
        (void) usec;
        s->accept_timer = sd_event_source_disable_unref(s->accept_timer);
        server_set_accepting(s, true);
        return 0;
}

static void server_pause_accepting(struct rpc_server *s) {
        if (s->accept_timer)
                return;
        if (sd_event_add_time_relative(s->event, &s->accept_timer, CLOCK_MONOTONIC, ACCEPT_PAUSE_USEC, 0,
                                       accept_timer_dispatch, s) < 0)
                return; /* keep trying on the next wakeup rather than never again */
        server_set_accepting(s, false);
}

static int listener_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        struct rpc_listener *l = userdata;

        (void) source;
        (void) revents;

        for (unsigned i = 0; i < ACCEPT_BURST; i++) {
                int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

                if (cfd < 0) {
                        switch (errno) {
                        case EAGAIN:
                                return 0;
                        case EMFILE:
                        case ENFILE:
                        case ENOBUFS:
                        case ENOMEM:
                                server_pause_accepting(l->server);
                                return 0;
                        default:
                                /* ECONNABORTED, EINTR, EPROTO, ...: that one peer's problem. */
                                continue;
                        }
                }
                (void) server_add_connection(l->server, cfd, l->admin);
        }
        return 0;
}

void rpc_listener_free(struct rpc_listener *l) {
        struct stat st;

        l->source = sd_event_source_disable_unref(l->source);
        if (l->fd >= 0)
                close(l->fd);
        /* Only our own socket: a newer daemon may have bound the path since. */
        if (l->path && lstat(l->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == l->dev &&
            st.st_ino == l->ino)
                (void) unlink(l->path);
        free(l->path);
        free(l);
}

static int server_add_listener(struct rpc_server *s, int fd, bool admin, char *path, const struct stat *st) {
        _cleanup_(xfreep) struct rpc_listener *l = calloc(1, sizeof(*l));
        int r;

        if (!l)
                return -ENOMEM;
        l->server = s;
        l->fd = fd;
        l->admin = admin;
        r = sd_event_add_io(s->event, &l->source, fd, EPOLLIN, listener_io, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(l->source, admin ? "rpc-admin-listener" : "rpc-listener");
        if (s->accept_timer)
                (void) sd_event_source_set_enabled(l->source, SD_EVENT_OFF);
        if (path) {
                l->path = path;
                l->dev = st->st_dev;
                l->ino = st->st_ino;
        }
        l->next = s->listeners;
        s->listeners = TAKE_PTR(l);
        return 0;
}

int rpc_server_add_listener_fd(struct rpc_server *s, int fd, bool admin) {
        int flags, accepting = 0;
        socklen_t len = sizeof(accepting);

        if (!s || fd < 0)
                return -EINVAL;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0)
                return -errno;
        if (!accepting)
                return -EINVAL;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return -errno;
        if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        return server_add_listener(s, fd, admin, NULL, NULL);
}

/* The name the socket is bound under until it listens: beside path, in the same directory. */
#define LISTEN_TMP_SUFFIX ".new"

/*
 * Binds under a temporary name, sets the permissions, listens, and only then renames it to
 * path: whoever sees path can connect (a client that waits for the file to appear never meets
 * ECONNREFUSED in the moment between bind() and listen()), and nobody ever reaches it with
 * other permissions. A socket left at path (or at the temporary name) by an earlier run is
 * stale and replaced; anything else at path is not ours to replace.
 */
int rpc_server_listen(struct rpc_server *s, const char *path, mode_t mode, gid_t group, bool admin) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_(xfreep) char *p = NULL;
        _cleanup_(closep) int fd = -EBADF;
        char *tmp;
        struct stat st;
        size_t len;
        int r;

        if (!s || !path || !*path)
                return -EINVAL;
        len = strlen(path);
        if (len + strlen(LISTEN_TMP_SUFFIX) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, len);
        memcpy(sa.sun_path + len, LISTEN_TMP_SUFFIX, sizeof(LISTEN_TMP_SUFFIX));
        tmp = sa.sun_path;
        p = strdup(path);
        if (!p)
                return -ENOMEM;

        if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
                return -EADDRINUSE;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (lstat(tmp, &st) == 0 && S_ISSOCK(st.st_mode) && unlink(tmp) < 0 && errno != ENOENT)
                return -errno;
        if (bind(fd, (struct sockaddr *) &sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + strlen(tmp) + 1)) < 0)
                return -errno;

        if (chmod(tmp, mode) < 0)
                goto fail_errno;
        if (group != (gid_t) -1 && fchownat(AT_FDCWD, tmp, (uid_t) -1, group, AT_SYMLINK_NOFOLLOW) < 0)
                goto fail_errno;
        if (listen(fd, SOMAXCONN) < 0)
                goto fail_errno;
        if (lstat(tmp, &st) < 0)
                goto fail_errno;
        if (rename(tmp, path) < 0)
                goto fail_errno;

        r = server_add_listener(s, fd, admin, p, &st);
        if (r < 0) {
                (void) unlink(path);
                return r;
        }
        TAKE_PTR(p);
        TAKE_FD(fd);
        return 0;

fail_errno:
        r = -errno;
        (void) unlink(tmp);
        return r;
}
