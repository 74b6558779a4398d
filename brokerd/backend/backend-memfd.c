/* SPDX-License-Identifier: Apache-2.0 */
#include "backend/backend-memfd.h"
#include "backend/region-file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/hashmap.h"
#include "util/lent-fd.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/names.h"
#include "util/pidfd.h"

/* How long an escalation waits for the signal to take effect before leaving it to the exit watch. */
#define MEMFD_ESCALATE_WAIT_MS 500

/* A region is shown to the owner and its peers; more than this is a runaway caller. */
#define MEMFD_MAX_MAPPINGS 64

struct memfd_mapping {
        char domain[NAME_MAX_LEN + 1];
        enum access_mode access;
};

struct memfd_region {
        uint64_t id; /* the hashmap key points here */
        uint64_t size;
        enum backing_kind kind;
        int fd;     /* the master fd: read-write, never handed out itself */
        char *path; /* file kinds only */
        /* A memfd zero-filled by create, no fd of it handed out since: a scrub has nothing to do
         * (a share's create-then-scrub costs no second pass over fresh memory). Never a file:
         * whoever may open its path could have written it. */
        bool fresh;
        struct memfd_mapping *mappings;
        size_t n_mappings, n_allocated;
};

struct backend_memfd {
        struct backend backend; /* first, so a struct backend * is a struct backend_memfd * */
        struct hashmap *regions;
        struct backend_fd_store store;
        bool has_store;
};

static struct backend_memfd *to_memfd(struct backend *b) {
        return (struct backend_memfd *) b;
}

static void memfd_region_free(struct memfd_region *e) {
        if (!e)
                return;
        lent_fd_close(e->fd); /* a rw mapping's fd may be lent to a reply (open_mapping_fd()) */
        free(e->path);
        free(e->mappings);
        free(e);
}
DEFINE_CLEANUP(struct memfd_region, memfd_region_free);

static int memfd_region_new(uint64_t id, uint64_t size, enum backing_kind kind, struct memfd_region **ret) {
        struct memfd_region *e = calloc(1, sizeof(*e));

        if (!e)
                return -ENOMEM;
        e->id = id;
        e->size = size;
        e->kind = kind;
        e->fd = -EBADF;
        *ret = e;
        return 0;
}

static bool kind_is_file(enum backing_kind k) {
        return k == BACKING_SHM || k == BACKING_HUGETLBFS;
}

/* Checks what every op needs from the region description before it touches anything. */
static int region_check(const struct backend_region *r) {
        if (!r || !r->pool || !name_is_valid(r->pool->name))
                return -EINVAL;
        if ((unsigned) r->pool->backing >= _BACKING_KIND_MAX)
                return -EINVAL;
        /* off_t is signed: ftruncate() and mmap() cannot express more. */
        if (r->size == 0 || r->size > (uint64_t) INT64_MAX)
                return -EINVAL;
        return 0;
}

/* "<path>/brokerd-<pool>-<id>": the pool name's alphabet has no '/', so this stays in <path>. */
static int region_file_path(const struct backend_region *r, char **ret) {
        char *p;

        if (!r->pool->backing_path || r->pool->backing_path[0] != '/')
                return -EINVAL;
        if (asprintf(&p, "%s/brokerd-%s-%" PRIu64, r->pool->backing_path, r->pool->name, r->id) < 0)
                return -ENOMEM;
        if (strlen(p) >= PATH_MAX) {
                free(p);
                return -ENAMETOOLONG;
        }
        *ret = p;
        return 0;
}

/*
 * A file we may trust as one of our regions: a regular file owned by us that nobody else
 * can open. Anyone may plant a file in a world-writable tmpfs like /dev/shm, and a planted
 * one would give its owner the memory.
 */
static int check_own_file(int fd, struct stat *ret) {
        /* brokerd never changes its euid: asked once, not once a region at every start. */
        static uid_t euid = (uid_t) -1;
        struct stat st;

        if (euid == (uid_t) -1)
                euid = geteuid();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode) || st.st_uid != euid || (st.st_mode & 0077))
                return -EBADFD;
        *ret = st;
        return 0;
}

/*
 * What create_memfd() seals a region's memfd with, and what restore() insists on. A revocable
 * pool's keeps shrinking possible: that is how a forced revoke cuts holders off.
 */
static int memfd_seals(const struct platform_pool *pool) {
        return (pool->revocable ? 0 : F_SEAL_SHRINK) | F_SEAL_GROW | F_SEAL_SEAL;
}

/*
 * The memfd's own name, which /proc shows as "/memfd:<name> (deleted)": restore() reads it
 * back to know a handed-back fd is this region's memfd, not some other file.
 */
static void memfd_name(const struct backend_region *r, char *buf, size_t len) {
        snprintf(buf, len, "brokerd:%s:%" PRIu64, r->pool->name, r->id);
}

/* The fd store's name: the id decides (the database's key); the pool is a check. */
static void store_name(const struct backend_region *r, char buf[static BACKEND_FD_NAME_MAX + 1]) {
        size_t n = (size_t) snprintf(buf, BACKEND_FD_NAME_MAX + 1, "region-%" PRIu64 "-%s", r->id, r->pool->name);

        for (size_t i = 0; i < n && i < BACKEND_FD_NAME_MAX; i++)
                if (buf[i] == ':' || buf[i] == '+')
                        buf[i] = '_';
}

/* O_NONBLOCK only so that opening a planted FIFO cannot hang us; cleared once it is known regular. */
static int create_memfd(const struct backend_region *r, int *ret) {
        _cleanup_(closep) int fd = -EBADF;
        char name[NAME_MAX_LEN + 64];

        memfd_name(r, name, sizeof(name));
        /*
         * Never MFD_HUGETLB, whatever the granule: a memfd pool is plain shmem, huge pages
         * come from hugetlbfs pools, whose reservations the admin sized.
         */
        fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return negative_errno();
        if (ftruncate(fd, (off_t) r->size) < 0)
                return negative_errno();
        /* memfd inodes start as 0777: without this a ro peer could reopen ours rw via /proc. */
        if (fchmod(fd, 0600) < 0)
                return negative_errno();
        if (fcntl(fd, F_ADD_SEALS, memfd_seals(r->pool)) < 0)
                return negative_errno();
        *ret = TAKE_FD(fd);
        return 0;
}

/*
 * The file may exist already if we crashed after creating it. It is ours to take over only
 * if it is a regular file of ours of the right size, or empty (a crash before ftruncate()).
 * Nothing was mapped from a region that was still being created, so it is zeroed again to
 * keep create()'s promise of zero-filled memory.
 */
static int reopen_half_created(const char *path, uint64_t size, int *ret) {
        _cleanup_(closep) int fd = -EBADF;
        struct stat st;
        int r;

        r = region_file_open(path, &fd);
        if (r == -ENOENT)
                return -EAGAIN;
        if (r == -EBADFD || r == -EACCES || r == -EPERM)
                return -EEXIST;
        if (r < 0)
                return r;
        if (check_own_file(fd, &st) < 0)
                return -EEXIST;
        if (st.st_size == 0) {
                if (ftruncate(fd, (off_t) size) < 0)
                        return negative_errno();
        } else if ((uint64_t) st.st_size != size)
                return -EEXIST;
        if (fchmod(fd, 0600) < 0)
                return negative_errno();
        r = region_file_punch_out(fd, size);
        if (r < 0)
                return r;
        *ret = TAKE_FD(fd);
        return 0;
}

static int create_file(const char *path, uint64_t size, int *ret) {
        _cleanup_(closep) int fd = -EBADF;
        int r;

        for (unsigned attempt = 0; attempt < 3; attempt++) {
                fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
                if (fd >= 0)
                        break;
                if (errno != EEXIST)
                        return negative_errno();
                r = reopen_half_created(path, size, ret);
                /* -EAGAIN: it vanished between the two opens; try creating it again. */
                if (r != -EAGAIN)
                        return r;
        }
        if (fd < 0)
                return -EEXIST;

        /* The umask may have taken bits away; 0600 is what the header promises, no less. */
        if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t) size) < 0) {
                r = negative_errno();
                (void) unlink(path);
                return r;
        }
        *ret = TAKE_FD(fd);
        return 0;
}

/*
 * The start of create and restore: r checked, and a new entry for it in *ret, with its file's
 * path when the pool is file-backed. 1 when this backend already holds r with the same size and
 * backing (nothing to do), `mismatch` when it holds another region under that id.
 */
static int region_entry_new(struct backend_memfd *m, const struct backend_region *r, int mismatch,
                            struct memfd_region **ret) {
        _cleanup_(memfd_region_freep) struct memfd_region *e = NULL;
        struct memfd_region *old;
        int k;

        k = region_check(r);
        if (k < 0)
                return k;
        old = hashmap_get(m->regions, &r->id);
        if (old)
                return old->size == r->size && old->kind == r->pool->backing ? 1 : mismatch;

        k = memfd_region_new(r->id, r->size, r->pool->backing, &e);
        if (k < 0)
                return k;
        if (kind_is_file(r->pool->backing)) {
                k = region_file_path(r, &e->path);
                if (k < 0)
                        return k;
        }
        *ret = TAKE_PTR(e);
        return 0;
}

static int memfd_create_region(struct backend *b, const struct backend_region *r) {
        struct backend_memfd *m = to_memfd(b);
        _cleanup_(memfd_region_freep) struct memfd_region *e = NULL;
        int k;

        k = region_entry_new(m, r, -EEXIST, &e);
        if (k != 0)
                return k < 0 ? k : 0;
        k = e->path ? create_file(e->path, r->size, &e->fd) : create_memfd(r, &e->fd);
        if (k < 0)
                return k;
        e->fresh = !e->path;
        if (!e->path && m->has_store) {
                char name[BACKEND_FD_NAME_MAX + 1];

                /* Before anyone sees the memory. Failing costs only durability (backend.h). */
                store_name(r, name);
                (void) m->store.keep(m->store.userdata, name, e->fd);
        }

        k = hashmap_put(m->regions, &e->id, e);
        if (k < 0) {
                if (e->path)
                        (void) unlink(e->path);
                return k;
        }
        TAKE_PTR(e);
        return 0;
}

/*
 * Whether fd is r's memfd as create_memfd() left it: its name, our own 0600 regular file,
 * open read-write, of r's size, sealed exactly so. Whatever handed it back is not trusted.
 * A revocable region's memfd that a forced revoke truncated is its own but holds no memory:
 * -ENOENT, as for memory that did not survive (the restart then finishes the revoke).
 */
static int check_memfd(int fd, const struct backend_region *r) {
        char proc[sizeof("/proc/self/fd/") + 3 * sizeof(int)], link[NAME_MAX_LEN + 128];
        char want[NAME_MAX_LEN + 128], name[NAME_MAX_LEN + 64];
        struct stat st;
        ssize_t n;
        int k, flags, seals;

        k = check_own_file(fd, &st);
        if (k < 0)
                return k;
        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return negative_errno();
        if ((flags & O_ACCMODE) != O_RDWR)
                return -EBADFD;
        seals = fcntl(fd, F_GET_SEALS);
        if (seals < 0)
                return errno == EINVAL ? -EBADFD : negative_errno();
        if (seals != memfd_seals(r->pool))
                return -EBADFD;
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        n = readlink(proc, link, sizeof(link) - 1);
        if (n < 0)
                return errno == ENOENT ? -ENOSYS : negative_errno();
        link[n] = 0;
        memfd_name(r, name, sizeof(name));
        snprintf(want, sizeof(want), "/memfd:%s (deleted)", name);
        if (strcmp(link, want) != 0)
                return -EBADFD;
        if (st.st_size == 0 && r->pool->revocable)
                return -ENOENT;
        return (uint64_t) st.st_size == r->size ? 0 : -EINVAL;
}

/* r's memfd, handed back by the store: checked, and dropped from the store if refused. */
static int take_memfd(struct backend_memfd *m, const struct backend_region *r, int *ret) {
        _cleanup_(closep) int fd = -EBADF;
        char name[BACKEND_FD_NAME_MAX + 1];
        int k;

        /* Without a store, a memfd died with the process that held it. */
        if (!m->has_store)
                return -ENOENT;
        store_name(r, name);
        k = m->store.take(m->store.userdata, name, &fd);
        if (k < 0)
                return k;
        k = check_memfd(fd, r);
        if (k < 0) {
                (void) m->store.drop(m->store.userdata, name);
                return k;
        }
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return negative_errno();
        *ret = TAKE_FD(fd);
        return 0;
}

static int memfd_restore(struct backend *b, const struct backend_region *r) {
        struct backend_memfd *m = to_memfd(b);
        _cleanup_(memfd_region_freep) struct memfd_region *e = NULL;
        struct stat st;
        int k;

        k = region_entry_new(m, r, -EINVAL, &e);
        if (k != 0)
                return k < 0 ? k : 0;
        if (!e->path)
                k = take_memfd(m, r, &e->fd);
        else {
                k = region_file_open(e->path, &e->fd);
                if (k >= 0)
                        k = check_own_file(e->fd, &st);
                if (k >= 0 && (uint64_t) st.st_size != r->size)
                        k = -EINVAL;
        }
        if (k < 0)
                return k;

        k = hashmap_put(m->regions, &e->id, e);
        if (k < 0)
                return k;
        TAKE_PTR(e);
        return 0;
}

static struct memfd_region *region_get(struct backend_memfd *m, const struct backend_region *r) {
        struct memfd_region *e = hashmap_get(m->regions, &r->id);

        /* Another size means the caller confused two regions: touch neither. */
        if (e && e->size != r->size)
                return NULL;
        return e;
}

static struct memfd_mapping *mapping_find(struct memfd_region *e, const char *domain) {
        for (size_t i = 0; i < e->n_mappings; i++)
                if (strcmp(e->mappings[i].domain, domain) == 0)
                        return &e->mappings[i];
        return NULL;
}

static int mapping_add(struct memfd_region *e, const char *domain, enum access_mode access) {
        if (e->n_mappings >= MEMFD_MAX_MAPPINGS)
                return -E2BIG;
        if (e->n_mappings == e->n_allocated) {
                /* From one: most regions have their owner and a peer or two, and 100,000 live
                 * regions with room for four would hold 40 MB of empty names. */
                size_t n = e->n_allocated ? e->n_allocated * 2 : 1;
                struct memfd_mapping *p;

                if (n > MEMFD_MAX_MAPPINGS)
                        n = MEMFD_MAX_MAPPINGS;
                p = reallocarray(e->mappings, n, sizeof(*p));
                if (!p)
                        return -ENOMEM;
                e->mappings = p;
                e->n_allocated = n;
        }
        /* name_is_valid() bounded the length, so this fits with its NUL. */
        strcpy(e->mappings[e->n_mappings].domain, domain);
        e->mappings[e->n_mappings].access = access;
        e->n_mappings++;
        return 0;
}

static int open_mapping_fd(const struct memfd_region *e, enum access_mode access, bool lend, int *ret,
                           bool *ret_lent) {
        char proc[sizeof("/proc/self/fd/") + 3 * sizeof(int)];
        int fd;

        *ret_lent = false;
        if (access == ACCESS_RW && lend) {
                /* The same open file as a dup would be: sent, the peer gets its own fd of it. */
                *ret = e->fd;
                *ret_lent = true;
                return 0;
        }
        if (access == ACCESS_RW) {
                fd = fcntl(e->fd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        return negative_errno();
                *ret = fd;
                return 0;
        }

        /*
         * A new open file description that is read-only: a dup would share the master's
         * O_RDWR, and mmap() looks at the description, not at the fd.
         */
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", e->fd);
        fd = open(proc, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                /* ENOENT here is a missing /proc, not a missing region. */
                return errno == ENOENT ? -ENOSYS : negative_errno();
        *ret = fd;
        return 0;
}

static int memfd_map(struct backend *b, const struct backend_region *r, const char *domain, enum access_mode access,
                     struct backend_mapping *ret) {
        struct backend_memfd *m = to_memfd(b);
        struct memfd_region *e;
        struct memfd_mapping *mp;
        bool lent;
        int k, fd;

        if (!r || !ret || !name_is_valid(domain) || (access != ACCESS_RO && access != ACCESS_RW))
                return -EINVAL;
        e = region_get(m, r);
        if (!e)
                return -ENOENT;

        mp = mapping_find(e, domain);
        if (mp && mp->access != access)
                return -EEXIST;
        if (!mp && e->n_mappings >= MEMFD_MAX_MAPPINGS)
                return -E2BIG;

        k = open_mapping_fd(e, access, ret->lend, &fd, &lent);
        if (k < 0)
                return k;
        e->fresh = false;
        if (!mp) {
                k = mapping_add(e, domain, access);
                if (k < 0) {
                        if (!lent)
                                close(fd);
                        return k;
                }
        }

        ret->fd = fd;
        ret->lent = lent;
        ret->size = e->size;
        return 0;
}

/*
 * Whether a forcibly revoked holder still reaches the memory: 0 when it cannot (revocable region
 * truncated; process unknown, stopped or gone; or it holds neither an fd of it nor a mapping),
 * -EINPROGRESS while it can (or cannot be looked at).
 */
static int holder_cut_off(struct memfd_region *e, const struct backend_region *r, const struct backend_holder *h) {
        struct stat st;
        int k;

        if (r->pool && r->pool->revocable) {
                /* Every holder, this one or not, gets SIGBUS on its next touch. */
                if (ftruncate(e->fd, 0) < 0)
                        return negative_errno();
                return 0;
        }
        if (h->pidfd < 0)
                return 0;
        k = pidfd_stopped(h->pidfd);
        if (k == 1 || k == -ESRCH)
                return 0;
        if (k == 0) {
                k = fstat(e->fd, &st) < 0 ? negative_errno() : pidfd_reaches_file(h->pidfd, st.st_dev, st.st_ino);
                if (k == 0 || k == -ESRCH)
                        return 0;
        }
        /* Asked again every few seconds while pending: not a warning each time. */
        if (k < 0)
                log_full(LOG_DEBUG, "memfd: region %" PRIu64 ": cannot tell whether %s's process still reaches it: %s",
                         r->id, h->domain, strerror(-k));
        return -EINPROGRESS;
}

/*
 * Unmapping a domain that is not mapped (or a region we do not hold) is not an error: the
 * core repeats interrupted unmaps after a crash, and the end state is the same. A holder that
 * gave its mapping up is believed; one forcibly revoked is done only once it is cut off.
 */
static int memfd_unmap(struct backend *b, const struct backend_region *r, const struct backend_holder *h) {
        struct backend_memfd *m = to_memfd(b);
        struct memfd_region *e;
        struct memfd_mapping *mp;
        int k;

        if (!r || !h || !name_is_valid(h->domain))
                return -EINVAL;
        e = hashmap_get(m->regions, &r->id);
        if (!e)
                return 0;
        mp = mapping_find(e, h->domain);
        /* Mappings handed out before a restart are not on record, yet with the fd store their
         * holders still reach the memory: a revocable region is cut off all the same, and a
         * holder whose process the core took back from the store (h->pidfd) is waited for. */
        if (!mp && !(h->forced && ((r->pool && r->pool->revocable) || h->pidfd >= 0)))
                return 0;
        if (h->forced) {
                k = holder_cut_off(e, r, h);
                if (k < 0)
                        return k;
        }
        if (mp)
                *mp = e->mappings[--e->n_mappings];
        return 0;
}

/*
 * stop (ESCALATION_PAUSE): SIGSTOP, so the process can no longer touch the memory; kill
 * (ESCALATION_DESTROY): SIGKILL. Either is awaited briefly; 1 once it took effect.
 */
static int memfd_escalate(struct backend *b, const struct backend_region *r, const struct backend_holder *h,
                          enum unplug_escalation action) {
        bool stop = action == ESCALATION_PAUSE;
        int k;

        (void) b;
        if (!r || !h || (action != ESCALATION_PAUSE && action != ESCALATION_DESTROY))
                return -EINVAL;
        if (h->pidfd < 0)
                return -ESRCH; /* nobody known to act on (e.g. after a restart without the fd store) */
        k = pidfd_signal(h->pidfd, stop ? SIGSTOP : SIGKILL);
        if (k == -ESRCH)
                return 1;
        if (k < 0)
                return k;
        log_warning("memfd: region %" PRIu64 ": %s %s's process: it kept a revoked mapping", r->id,
                    stop ? "stopped" : "killed", h->domain);
        return pidfd_wait(h->pidfd, stop, MEMFD_ESCALATE_WAIT_MS);
}

static int memfd_scrub(struct backend *b, const struct backend_region *r) {
        struct memfd_region *e;

        if (!r)
                return -EINVAL;
        e = region_get(to_memfd(b), r);
        if (!e)
                return -ENOENT;
        if (e->fresh)
                return 0;
        return region_file_punch_out(e->fd, e->size);
}

static int memfd_destroy(struct backend *b, const struct backend_region *r) {
        struct backend_memfd *m = to_memfd(b);
        _cleanup_(xfreep) char *path = NULL;
        struct memfd_region *e;
        int k;

        k = region_check(r);
        if (k < 0)
                return k;

        if (!kind_is_file(r->pool->backing) && m->has_store) {
                char name[BACKEND_FD_NAME_MAX + 1];

                /* Held or not (repeated after a restart): nothing of it may come back. */
                store_name(r, name);
                (void) m->store.drop(m->store.userdata, name);
        }
        e = hashmap_get(m->regions, &r->id);
        if (!e) {
                /* Not held, e.g. repeated after a restart: the file may still be there. */
                if (!kind_is_file(r->pool->backing))
                        return 0;
                k = region_file_path(r, &path);
                if (k < 0)
                        return k;
                if (unlink(path) < 0 && errno != ENOENT)
                        return negative_errno();
                return 0;
        }

        /* Unlink first, so a failure leaves the entry for a retry. */
        if (e->path && unlink(e->path) < 0 && errno != ENOENT)
                return negative_errno();
        hashmap_remove(m->regions, &e->id);
        memfd_region_free(e);
        return 0;
}

/* Files stay on disk: they are the durable state that restore() finds after a restart. */
static void memfd_free(struct backend *b) {
        struct backend_memfd *m = to_memfd(b);
        size_t i = 0;
        void *v;

        while (hashmap_iterate(m->regions, &i, &v))
                memfd_region_free(v);
        hashmap_free(m->regions);
        free(m);
}

static const struct backend_ops memfd_ops = {
        .name = "memfd",
        .hands_fds = true,
        .create = memfd_create_region,
        .restore = memfd_restore,
        .map = memfd_map,
        .unmap = memfd_unmap,
        .escalate = memfd_escalate,
        .scrub = memfd_scrub,
        .destroy = memfd_destroy,
        .free = memfd_free,
};

int backend_memfd_new(struct backend **ret) {
        return backend_memfd_new_with_store(NULL, ret);
}

int backend_memfd_new_with_store(const struct backend_fd_store *store, struct backend **ret) {
        _cleanup_(xfreep) struct backend_memfd *m = calloc(1, sizeof(*m));
        int k;

        if (!m)
                return -ENOMEM;
        if (store && (!store->keep || !store->drop || !store->take))
                return -EINVAL;
        k = hashmap_new(&hashmap_u64_ops, &m->regions);
        if (k < 0)
                return k;
        m->backend.ops = &memfd_ops;
        if (store) {
                m->store = *store;
                m->has_store = true;
        }
        *ret = &TAKE_PTR(m)->backend;
        return 0;
}
