/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/fdstore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "util/hashmap.h"
#include "util/log.h"
#include "util/num.h"

struct passed_fd {
        char *name; /* the hashmap key points here */
        int fd;
        bool ambiguous; /* passed more than once: nobody can tell which is right */
};

struct fdstore {
        struct hashmap *passed; /* name -> struct passed_fd; NULL once flushed */
        struct hashmap *kept;   /* name -> the same strdup()ed name: what the store holds now */
        uint64_t max;           /* $FDSTORE; 0: no bound known */
        size_t name_bytes;      /* of the kept names, each with its separator: FDSTORE_NAMES_MAX */
        bool enabled;           /* $NOTIFY_SOCKET is set */
        bool full_logged;
        struct backend_fd_store ops;
};

static void passed_fd_free(struct passed_fd *p) {
        if (!p)
                return;
        if (p->fd >= 0)
                close(p->fd);
        free(p->name);
        free(p);
}

/* FDNAME's alphabet as backends use it: systemd takes more, but never ':' (the separator). */
static bool store_name_is_valid(const char *name) {
        size_t n = strlen(name);

        if (n == 0 || n > BACKEND_FD_NAME_MAX)
                return false;
        return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") == n;
}

/* The notification, with fd attached when it is >= 0; -EOPNOTSUPP without a service manager. */
static int store_notify(const char *what, const char *name, int fd) {
        char msg[sizeof("FDSTOREREMOVE=1\nFDNAME=") + BACKEND_FD_NAME_MAX];
        int r;

        snprintf(msg, sizeof(msg), "%s=1\nFDNAME=%s", what, name);
        r = fd >= 0 ? sd_pid_notify_with_fds(0, false, msg, &fd, 1) : sd_pid_notify(0, false, msg);
        return r == 0 ? -EOPNOTSUPP : r < 0 ? r : 0;
}

/* name joins the kept names (the hashmap owns copy from now on). */
static int kept_add(struct fdstore *s, char *copy) {
        int r = hashmap_put(s->kept, copy, copy);

        if (r >= 0)
                s->name_bytes += strlen(copy) + 1;
        return r;
}

static void kept_remove(struct fdstore *s, const char *name) {
        char *copy = hashmap_remove(s->kept, name);

        if (copy)
                s->name_bytes -= strlen(copy) + 1;
        free(copy);
}

/* The store forgets name, and so do we: a passed fd of that name is closed, never taken. */
static int store_remove(struct fdstore *s, const char *name) {
        passed_fd_free(s->passed ? hashmap_remove(s->passed, name) : NULL);
        kept_remove(s, name);
        return store_notify("FDSTOREREMOVE", name, -EBADF);
}

/* Room for one more name: within FileDescriptorStoreMax= and within $LISTEN_FDNAMES's bound. */
static bool store_has_room(struct fdstore *s, const char *name) {
        if (hashmap_get(s->kept, name))
                return true; /* a replacement */
        if (s->max > 0 && hashmap_size(s->kept) >= s->max) {
                if (!s->full_logged)
                        log_warning("the fd store is full (FileDescriptorStoreMax=%llu): %s and what comes "
                                    "after it will not survive a restart",
                                    (unsigned long long) s->max, name);
                s->full_logged = true;
                return false;
        }
        if (s->name_bytes + strlen(name) + 1 > FDSTORE_NAMES_MAX) {
                if (!s->full_logged)
                        log_warning("the fd store's names reach %zu bytes, what $LISTEN_FDNAMES can carry at the "
                                    "next start: %s and what comes after it will not survive a restart",
                                    s->name_bytes, name);
                s->full_logged = true;
                return false;
        }
        return true;
}

static int fdstore_keep(void *userdata, const char *name, int fd) {
        struct fdstore *s = userdata;
        char *copy;
        int r;

        if (!store_name_is_valid(name) || fd < 0)
                return -EINVAL;
        if (!store_has_room(s, name))
                return -EXFULL;
        /* systemd keeps every fd sent under a name: replacing one means removing it first. */
        if (hashmap_get(s->kept, name) || (s->passed && hashmap_get(s->passed, name)))
                (void) store_remove(s, name);
        copy = strdup(name);
        if (!copy)
                return -ENOMEM;
        r = store_notify("FDSTORE", name, fd);
        if (r >= 0)
                r = kept_add(s, copy);
        if (r < 0) {
                free(copy);
                log_warning("cannot keep %s in the fd store (%s): it will not survive a restart", name,
                            strerror(-r));
        }
        return r;
}

static int fdstore_drop(void *userdata, const char *name) {
        struct fdstore *s = userdata;
        int r;

        if (!store_name_is_valid(name))
                return -EINVAL;
        r = store_remove(s, name);
        if (r < 0)
                log_warning("cannot remove %s from the fd store (%s); the next start closes it", name,
                            strerror(-r));
        return r;
}

static int fdstore_take(void *userdata, const char *name, int *ret_fd) {
        struct fdstore *s = userdata;
        struct passed_fd *p = s->passed ? hashmap_remove(s->passed, name) : NULL;
        char *copy;

        if (!p)
                return -ENOENT;
        if (p->ambiguous) {
                log_warning("the fd store passed %s more than once: refusing every one of them", name);
                passed_fd_free(p);
                (void) store_notify("FDSTOREREMOVE", name, -EBADF);
                return -EBADFD;
        }
        copy = strdup(name);
        if (!copy || kept_add(s, copy) < 0) {
                free(copy);
                (void) hashmap_put(s->passed, p->name, p); /* cannot fail: the slot was just freed */
                return -ENOMEM;
        }
        *ret_fd = TAKE_FD(p->fd);
        passed_fd_free(p);
        return 0;
}

int fdstore_new(struct fdstore **ret) {
        _cleanup_(xfreep) struct fdstore *s = calloc(1, sizeof(*s));
        const char *max = getenv("FDSTORE");
        int r;

        if (!s)
                return -ENOMEM;
        r = hashmap_new(&hashmap_string_ops, &s->passed);
        if (r >= 0)
                r = hashmap_new(&hashmap_string_ops, &s->kept);
        if (r < 0) {
                hashmap_free(s->passed);
                return r;
        }
        s->enabled = getenv("NOTIFY_SOCKET") != NULL;
        if (max && num_parse_u64(max, &s->max) < 0) {
                log_warning("ignoring $FDSTORE=%s: not a number", max);
                s->max = 0;
        }
        s->ops = (struct backend_fd_store) {
                .keep = fdstore_keep, .drop = fdstore_drop, .take = fdstore_take, .userdata = s,
        };
        *ret = TAKE_PTR(s);
        return 0;
}

static void passed_free_all(struct fdstore *s) {
        size_t i = 0;
        void *v;

        while (s->passed && hashmap_iterate(s->passed, &i, &v))
                passed_fd_free(v);
        hashmap_free(s->passed);
        s->passed = NULL;
}

void fdstore_free(struct fdstore *s) {
        size_t i = 0;
        void *v;

        if (!s)
                return;
        passed_free_all(s);
        while (hashmap_iterate(s->kept, &i, &v))
                free(v);
        hashmap_free(s->kept);
        free(s);
}

int fdstore_add_passed(struct fdstore *s, const char *name, int fd) {
        struct passed_fd *p, *old;
        int r;

        old = s->passed ? hashmap_get(s->passed, name) : NULL;
        if (old || !s->passed) {
                close(fd);
                if (!old)
                        return -ESTALE;
                old->ambiguous = true;
                return -EBADFD;
        }
        p = calloc(1, sizeof(*p));
        if (!p || !(p->name = strdup(name))) {
                free(p);
                close(fd);
                return -ENOMEM;
        }
        p->fd = fd;
        r = hashmap_put(s->passed, p->name, p);
        if (r < 0)
                passed_fd_free(p);
        return r;
}

const struct backend_fd_store *fdstore_backend(struct fdstore *s) {
        return s->enabled ? &s->ops : NULL;
}

void fdstore_flush_unclaimed(struct fdstore *s) {
        size_t i = 0;
        void *v;

        while (s->passed && hashmap_iterate(s->passed, &i, &v)) {
                struct passed_fd *p = v;

                log_warning("closing %s, passed at start: no region or mapped holder claims it", p->name);
                if (s->enabled && store_name_is_valid(p->name))
                        (void) store_notify("FDSTOREREMOVE", p->name, -EBADF);
        }
        passed_free_all(s);
}

size_t fdstore_size(const struct fdstore *s) {
        return hashmap_size(s->kept);
}
