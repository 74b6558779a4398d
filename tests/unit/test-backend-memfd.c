/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pidfd-skip.h"
#include "backend/backend-memfd.h"
#include "util/macro.h"

#define PAGE 4096u
#define REGION_SIZE (4 * PAGE)
#define NOBODY 65534

/* backend.h has no cleanup helper of its own. */

struct fixture {
        char dir[64];
        struct platform_pool memfd_pool, shm_pool;
        struct backend *b;
};

static int fixture_setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        strcpy(f->dir, "/dev/shm/brokerd-test-XXXXXX");
        if (!mkdtemp(f->dir)) {
                free(f);
                return -1;
        }
        f->memfd_pool = (struct platform_pool) {
                .name = (char *) "mem0",
                .base = 0x100000000,
                .end = 0x140000000,
                .granule = PAGE,
                .backing = BACKING_MEMFD,
        };
        f->shm_pool = (struct platform_pool) {
                .name = (char *) "shm0",
                .base = 0x200000000,
                .end = 0x240000000,
                .granule = PAGE,
                .backing = BACKING_SHM,
                .backing_path = f->dir,
        };
        if (backend_memfd_new(&f->b) < 0) {
                rmdir(f->dir);
                free(f);
                return -1;
        }
        *state = f;
        return 0;
}

static void remove_dir(const char *path) {
        DIR *d = opendir(path);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
        (void) rmdir(path);
}

static int fixture_teardown(void **state) {
        struct fixture *f = *state;

        backend_free(f->b);
        remove_dir(f->dir);
        free(f);
        return 0;
}

static struct backend_region region(const struct platform_pool *pool, uint64_t id, uint64_t size) {
        return (struct backend_region) { .id = id, .base = pool->base + (id - 1) * size, .size = size, .pool = pool };
}

static int be_create(struct backend *b, const struct backend_region *r) {
        return b->ops->create(b, r);
}
static int be_restore(struct backend *b, const struct backend_region *r) {
        return b->ops->restore(b, r);
}
static int be_map(struct backend *b, const struct backend_region *r, const char *domain, enum access_mode a,
                  struct backend_mapping *m) {
        return b->ops->map(b, r, domain, a, m);
}
static int be_unmap(struct backend *b, const struct backend_region *r, const char *domain) {
        return b->ops->unmap(b, r, &(struct backend_holder) { .domain = domain, .pidfd = -1 });
}
static int be_scrub(struct backend *b, const struct backend_region *r) {
        return b->ops->scrub(b, r);
}
static int be_destroy(struct backend *b, const struct backend_region *r) {
        return b->ops->destroy(b, r);
}

/* Maps and returns the new fd, asserting success. */
static int map_fd(struct backend *b, const struct backend_region *r, const char *domain, enum access_mode a) {
        struct backend_mapping m = { .fd = -1 };

        assert_int_equal(be_map(b, r, domain, a, &m), 0);
        assert_true(m.fd >= 0);
        assert_int_equal(m.size, r->size);
        return m.fd;
}

static uint8_t *mmap_rw(int fd, size_t size) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

        assert_true(p != MAP_FAILED);
        return p;
}

static const uint8_t *mmap_ro(int fd, size_t size) {
        void *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);

        assert_true(p != MAP_FAILED);
        return p;
}

static bool all_zero(const uint8_t *p, size_t size) {
        for (size_t i = 0; i < size; i++)
                if (p[i])
                        return false;
        return true;
}

static void test_ops_table(void **state) {
        struct fixture *f = *state;

        assert_string_equal(f->b->ops->name, "memfd");
        assert_non_null(f->b->ops->create);
        assert_non_null(f->b->ops->free);
        assert_null(f->b->callbacks.unmap_done);
}

/* The owner and a rw peer hold separate fds on the same memory and see each other's bytes. */
static void test_memfd_map_rw(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->memfd_pool, 1, REGION_SIZE);
        struct backend_mapping m = { .fd = -42, .size = 7 };
        int owner, peer;
        uint8_t *po, *pp;

        /* Nothing to map before create; the output is left alone. */
        assert_int_equal(be_map(f->b, &r, "owner", ACCESS_RW, &m), -ENOENT);
        assert_int_equal(m.fd, -42);
        assert_int_equal(m.size, 7);

        assert_int_equal(be_create(f->b, &r), 0);
        owner = map_fd(f->b, &r, "owner", ACCESS_RW);
        peer = map_fd(f->b, &r, "peer", ACCESS_RW);
        assert_int_not_equal(owner, peer);
        assert_int_equal(fcntl(owner, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
        assert_int_equal(fcntl(peer, F_GETFL) & O_ACCMODE, O_RDWR);

        po = mmap_rw(owner, REGION_SIZE);
        pp = mmap_rw(peer, REGION_SIZE);
        assert_true(all_zero(po, REGION_SIZE));
        memcpy(po, "from owner", 11);
        assert_memory_equal(pp, "from owner", 11);
        memcpy(pp + 3 * PAGE, "from peer", 10);
        assert_memory_equal(po + 3 * PAGE, "from peer", 10);

        /* Bad arguments are refused before anything else. */
        assert_int_equal(be_map(f->b, &r, "../x", ACCESS_RW, &m), -EINVAL);
        assert_int_equal(be_map(f->b, &r, "", ACCESS_RW, &m), -EINVAL);
        assert_int_equal(be_map(f->b, &r, "third", (enum access_mode) 0, &m), -EINVAL);
        assert_int_equal(be_map(f->b, &r, "third", (enum access_mode) 3, &m), -EINVAL);
        assert_int_equal(m.fd, -42);

        munmap(po, REGION_SIZE);
        munmap(pp, REGION_SIZE);
        close(owner);
        close(peer);
}

static void test_memfd_name(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->memfd_pool, 17, REGION_SIZE);
        char proc[64], target[PATH_MAX];
        ssize_t n;
        int fd;

        assert_int_equal(be_create(f->b, &r), 0);
        fd = map_fd(f->b, &r, "owner", ACCESS_RW);
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
        n = readlink(proc, target, sizeof(target) - 1);
        assert_true(n > 0);
        target[n] = 0;
        assert_string_equal(target, "/memfd:brokerd:mem0:17 (deleted)");
        close(fd);
}

/*
 * Asked to lend, a rw mapping is the backend's own fd (the same open file a dup would be: the
 * caller sends it before anything can close it); a ro one is a fresh read-only open file,
 * the caller's to close, as without lending.
 */
static void test_memfd_map_lend(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->memfd_pool, 3, REGION_SIZE);
        struct backend_mapping a = { .fd = -1, .lend = true }, b = { .fd = -1, .lend = true };
        int owner;

        assert_int_equal(be_create(f->b, &r), 0);
        owner = map_fd(f->b, &r, "owner", ACCESS_RW);
        assert_int_equal(be_map(f->b, &r, "peer", ACCESS_RW, &a), 0);
        assert_true(a.lent);
        assert_int_equal(syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, owner, a.fd), 0);
        assert_int_equal(be_map(f->b, &r, "peer", ACCESS_RW, &a), 0); /* again: the same fd */
        assert_true(a.lent);
        assert_int_equal(be_map(f->b, &r, "reader", ACCESS_RO, &b), 0);
        assert_false(b.lent);
        assert_int_equal(fcntl(b.fd, F_GETFL) & O_ACCMODE, O_RDONLY);
        close(b.fd);
        close(owner);
        /* The lent fd was the backend's: still open until the region is destroyed. */
        assert_true(fcntl(a.fd, F_GETFD) >= 0);
        assert_int_equal(be_destroy(f->b, &r), 0);
}

/* A ro peer can read, but the kernel refuses it any writable shared mapping. */
static void test_memfd_map_ro(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->memfd_pool, 2, REGION_SIZE);
        int owner, ro;
        uint8_t *po;
        const uint8_t *pr;
        void *p;

        assert_int_equal(be_create(f->b, &r), 0);
        owner = map_fd(f->b, &r, "owner", ACCESS_RW);
        po = mmap_rw(owner, REGION_SIZE);
        memcpy(po + PAGE, "shared data", 12);

        ro = map_fd(f->b, &r, "reader", ACCESS_RO);
        assert_int_equal(fcntl(ro, F_GETFL) & O_ACCMODE, O_RDONLY);
        assert_int_equal(fcntl(ro, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);

        pr = mmap_ro(ro, REGION_SIZE);
        assert_memory_equal(pr + PAGE, "shared data", 12);
        memcpy(po + PAGE, "changed", 8);
        assert_memory_equal(pr + PAGE, "changed", 8);

        errno = 0;
        p = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
        assert_true(p == MAP_FAILED);
        assert_int_equal(errno, EACCES);

        errno = 0;
        assert_int_equal(mprotect((void *) pr, REGION_SIZE, PROT_READ | PROT_WRITE), -1);
        assert_int_equal(errno, EACCES);
        /* Still readable, and the rw fd can still upgrade its own mapping. */
        assert_int_equal(mprotect((void *) pr, REGION_SIZE, PROT_READ), 0);
        assert_int_equal(mprotect(po, REGION_SIZE, PROT_READ | PROT_WRITE), 0);

        munmap((void *) pr, REGION_SIZE);
        munmap(po, REGION_SIZE);
        close(owner);
        close(ro);
}

static void test_memfd_sealed(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->memfd_pool, 3, REGION_SIZE);
        struct stat st;
        int fd;

        assert_int_equal(be_create(f->b, &r), 0);
        fd = map_fd(f->b, &r, "owner", ACCESS_RW);

        assert_int_equal(fcntl(fd, F_GET_SEALS), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
        errno = 0;
        assert_int_equal(ftruncate(fd, REGION_SIZE * 2), -1);
        assert_int_equal(errno, EPERM);
        errno = 0;
        assert_int_equal(ftruncate(fd, PAGE), -1);
        assert_int_equal(errno, EPERM);
        errno = 0;
        assert_int_equal(fallocate(fd, 0, 0, REGION_SIZE * 2), -1);
        assert_int_equal(errno, EPERM);
        errno = 0;
        assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), -1);
        assert_int_equal(errno, EPERM);
        /* Truncating to the same size changes nothing and is allowed. */
        assert_int_equal(ftruncate(fd, REGION_SIZE), 0);

        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_size, REGION_SIZE);
        assert_int_equal(st.st_mode & 07777, 0600);
        close(fd);
}

/* A large granule does not make a memfd pool use MFD_HUGETLB (which would refuse 4KiB). */
static void test_memfd_large_granule(void **state) {
        struct fixture *f = *state;
        struct platform_pool pool = f->memfd_pool;
        struct backend_region r;
        int fd;

        pool.granule = 2u * 1024 * 1024;
        r = region(&pool, 4, PAGE);
        assert_int_equal(be_create(f->b, &r), 0);
        fd = map_fd(f->b, &r, "owner", ACCESS_RW);
        assert_int_equal(fcntl(fd, F_GET_SEALS), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
        close(fd);
}

/* In a child that dropped to nobody: 0 if open(path, flags) worked, else its errno. */
static int child_open(const char *path, int flags, int ro_fd) {
        pid_t pid;
        int status;

        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                int fd;
                void *p;

                if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
                        _exit(200);
                /* The fd it holds still works: only a new writable open is refused. */
                if (ro_fd >= 0) {
                        p = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, ro_fd, 0);
                        if (p == MAP_FAILED)
                                _exit(201);
                        munmap(p, PAGE);
                }
                fd = open(path, flags | O_CLOEXEC);
                if (fd >= 0)
                        _exit(0);
                _exit(errno > 0 && errno < 200 ? errno : 202);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        return WEXITSTATUS(status);
}

static void test_ro_reopen_denied(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->memfd_pool, 5, REGION_SIZE);
        char proc[64];
        int ro, open_fd;

        if (geteuid() != 0)
                skip();

        assert_int_equal(be_create(f->b, &r), 0);
        ro = map_fd(f->b, &r, "reader", ACCESS_RO);
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", ro);
        assert_int_equal(child_open(proc, O_RDWR, ro), EACCES);
        assert_int_equal(child_open(proc, O_WRONLY, ro), EACCES);

        /* The same check on a memfd left at its default mode: the reopen works there. */
        open_fd = memfd_create("brokerd-test-open", MFD_CLOEXEC);
        assert_true(open_fd >= 0);
        assert_int_equal(ftruncate(open_fd, PAGE), 0);
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", open_fd);
        assert_int_equal(child_open(proc, O_RDWR, -1), 0);

        close(open_fd);
        close(ro);
}

/* After scrub, every mapping that still exists, rw or ro, reads zeros. */
static void test_scrub(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->memfd_pool, 6, REGION_SIZE), other = region(&f->memfd_pool, 7, PAGE);
        struct backend_region wrong = r;
        int owner, ro, keep;
        uint8_t *po, *pk;
        const uint8_t *pr;
        struct stat st;

        assert_int_equal(be_scrub(f->b, &r), -ENOENT);
        assert_int_equal(be_create(f->b, &r), 0);
        assert_int_equal(be_create(f->b, &other), 0);
        owner = map_fd(f->b, &r, "owner", ACCESS_RW);
        ro = map_fd(f->b, &r, "revoked", ACCESS_RO);
        keep = map_fd(f->b, &other, "owner", ACCESS_RW);
        po = mmap_rw(owner, REGION_SIZE);
        pr = mmap_ro(ro, REGION_SIZE);
        pk = mmap_rw(keep, PAGE);
        memset(po, 0xa5, REGION_SIZE);
        memset(pk, 0x5a, PAGE);
        assert_false(all_zero(pr, REGION_SIZE));

        /* A region described with another size is refused, and nothing is zeroed. */
        wrong.size = PAGE;
        assert_int_equal(be_scrub(f->b, &wrong), -ENOENT);
        assert_int_equal(pr[REGION_SIZE - 1], 0xa5);

        assert_int_equal(be_scrub(f->b, &r), 0);
        assert_true(all_zero(po, REGION_SIZE));
        assert_true(all_zero(pr, REGION_SIZE));
        /* Other regions are untouched. */
        assert_int_equal(pk[0], 0x5a);
        assert_int_equal(pk[PAGE - 1], 0x5a);
        assert_int_equal(fstat(owner, &st), 0);
        assert_int_equal(st.st_size, REGION_SIZE);

        /* Idempotent, and the memory is usable again afterwards. */
        assert_int_equal(be_scrub(f->b, &r), 0);
        po[5] = 1;
        assert_int_equal(pr[5], 1);

        munmap(po, REGION_SIZE);
        munmap((void *) pr, REGION_SIZE);
        munmap(pk, PAGE);
        close(owner);
        close(ro);
        close(keep);
}

static void test_memfd_destroy(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->memfd_pool, 8, REGION_SIZE);
        struct backend_mapping m = { .fd = -42 };
        int fd;

        assert_int_equal(be_create(f->b, &r), 0);
        fd = map_fd(f->b, &r, "owner", ACCESS_RW);
        close(fd);
        assert_int_equal(be_destroy(f->b, &r), 0);
        assert_int_equal(be_map(f->b, &r, "owner", ACCESS_RW, &m), -ENOENT);
        assert_int_equal(m.fd, -42);
        assert_int_equal(be_scrub(f->b, &r), -ENOENT);
        assert_int_equal(be_destroy(f->b, &r), 0);
        /* Gone for good: a memfd cannot be found again. */
        assert_int_equal(be_restore(f->b, &r), -ENOENT);
        /* The id is free for a new region. */
        assert_int_equal(be_create(f->b, &r), 0);
        fd = map_fd(f->b, &r, "owner", ACCESS_RW);
        close(fd);
}

static void test_memfd_create_restore(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->memfd_pool, 9, REGION_SIZE), bigger = r;
        _cleanup_(backend_freep) struct backend *restarted = NULL;

        bigger.size = 2 * REGION_SIZE;
        assert_int_equal(be_restore(f->b, &r), -ENOENT);
        assert_int_equal(be_create(f->b, &r), 0);
        assert_int_equal(be_create(f->b, &r), 0);
        assert_int_equal(be_create(f->b, &bigger), -EEXIST);
        /* Held in memory: restore finds it, but only with the same size. */
        assert_int_equal(be_restore(f->b, &r), 0);
        assert_int_equal(be_restore(f->b, &bigger), -EINVAL);

        /* A restarted daemon has lost every memfd. */
        assert_int_equal(backend_memfd_new(&restarted), 0);
        assert_int_equal(be_restore(restarted, &r), -ENOENT);
}

static void test_bad_regions(void **state) {
        struct fixture *f = *state;
        struct platform_pool bad_name = f->memfd_pool, no_path = f->shm_pool, missing = f->shm_pool,
                             relative = f->shm_pool;
        struct backend_region r = region(&f->memfd_pool, 10, 0);

        assert_int_equal(be_create(f->b, &r), -EINVAL);
        r.size = UINT64_MAX & ~(uint64_t) (PAGE - 1);
        assert_int_equal(be_create(f->b, &r), -EINVAL);
        r.size = PAGE;
        r.pool = NULL;
        assert_int_equal(be_create(f->b, &r), -EINVAL);

        bad_name.name = (char *) "../etc";
        r = region(&bad_name, 10, PAGE);
        assert_int_equal(be_create(f->b, &r), -EINVAL);

        no_path.backing_path = NULL;
        r = region(&no_path, 10, PAGE);
        assert_int_equal(be_create(f->b, &r), -EINVAL);
        assert_int_equal(be_restore(f->b, &r), -EINVAL);

        relative.backing_path = (char *) "dev/shm";
        r = region(&relative, 10, PAGE);
        assert_int_equal(be_create(f->b, &r), -EINVAL);

        missing.backing_path = (char *) "/nonexistent-brokerd-dir";
        r = region(&missing, 10, PAGE);
        assert_int_equal(be_create(f->b, &r), -ENOENT);

        /* None of it left anything behind: the id is still free. */
        r = region(&f->memfd_pool, 10, PAGE);
        assert_int_equal(be_create(f->b, &r), 0);
}

static void shm_path(const struct fixture *f, uint64_t id, char *buf, size_t n) {
        snprintf(buf, n, "%s/brokerd-shm0-%" PRIu64, f->dir, id);
}

static void test_shm_lifecycle(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->shm_pool, 11, REGION_SIZE), bigger = r;
        _cleanup_(backend_freep) struct backend *restarted = NULL;
        _cleanup_(backend_freep) struct backend *restarted2 = NULL;
        char path[PATH_MAX];
        struct stat st;
        mode_t old_umask;
        uint8_t *p;
        int fd;

        bigger.size = 2 * REGION_SIZE;
        shm_path(f, 11, path, sizeof(path));
        assert_int_equal(be_restore(f->b, &r), -ENOENT);

        /* A umask that would leave the owner without write access does not leak through. */
        old_umask = umask(0277);
        assert_int_equal(be_create(f->b, &r), 0);
        umask(old_umask);
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(st.st_size, REGION_SIZE);
        assert_int_equal(st.st_uid, geteuid());

        assert_int_equal(be_create(f->b, &r), 0);
        assert_int_equal(be_create(f->b, &bigger), -EEXIST);

        fd = map_fd(f->b, &r, "owner", ACCESS_RW);
        p = mmap_rw(fd, REGION_SIZE);
        memcpy(p + 2 * PAGE, "durable", 8);
        munmap(p, REGION_SIZE);
        close(fd);

        /* A restart: the file outlives the backend instance and is found again. */
        backend_free(f->b);
        f->b = NULL;
        assert_int_equal(lstat(path, &st), 0);
        assert_int_equal(backend_memfd_new(&restarted), 0);
        assert_int_equal(be_restore(restarted, &bigger), -EINVAL);
        assert_int_equal(be_restore(restarted, &r), 0);
        assert_int_equal(be_restore(restarted, &r), 0);
        fd = map_fd(restarted, &r, "owner", ACCESS_RW);
        p = mmap_rw(fd, REGION_SIZE);
        assert_memory_equal(p + 2 * PAGE, "durable", 8);
        munmap(p, REGION_SIZE);
        close(fd);

        assert_int_equal(be_destroy(restarted, &r), 0);
        errno = 0;
        assert_int_equal(lstat(path, &st), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(be_destroy(restarted, &r), 0);
        assert_int_equal(be_restore(restarted, &r), -ENOENT);

        /* Backend instance must be valid again for the teardown. */
        assert_int_equal(backend_memfd_new(&restarted2), 0);
        f->b = TAKE_PTR(restarted2);
}

/* After a restart the core repeats a destroy it had not finished: the file still goes. */
static void test_shm_destroy_unheld(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->shm_pool, 12, REGION_SIZE);
        _cleanup_(backend_freep) struct backend *restarted = NULL;
        char path[PATH_MAX];
        struct stat st;

        shm_path(f, 12, path, sizeof(path));
        assert_int_equal(be_create(f->b, &r), 0);
        assert_int_equal(backend_memfd_new(&restarted), 0);
        assert_int_equal(be_destroy(restarted, &r), 0);
        assert_int_equal(lstat(path, &st), -1);
        assert_int_equal(be_destroy(restarted, &r), 0);
        /* The first instance still holds it and can let it go too. */
        assert_int_equal(be_destroy(f->b, &r), 0);
}

static int write_file(const char *path, mode_t mode, size_t size, uint8_t fill) {
        _cleanup_(closep) int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
        _cleanup_(xfreep) uint8_t *buf = malloc(size ? size : 1);

        if (fd < 0 || !buf)
                return -1;
        memset(buf, fill, size);
        if (write(fd, buf, size) != (ssize_t) size || fchmod(fd, mode) < 0)
                return -1;
        return 0;
}

/* A file left by a crash mid-create is taken over (and zeroed) only if it is plainly ours. */
static void test_shm_leftover_file(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->shm_pool, 13, REGION_SIZE);
        char path[PATH_MAX];
        const uint8_t *p;
        struct stat st;
        int fd;

        shm_path(f, 13, path, sizeof(path));
        assert_int_equal(write_file(path, 0600, REGION_SIZE, 0x77), 0);
        assert_int_equal(be_create(f->b, &r), 0);
        fd = map_fd(f->b, &r, "owner", ACCESS_RO);
        p = mmap_ro(fd, REGION_SIZE);
        assert_true(all_zero(p, REGION_SIZE));
        munmap((void *) p, REGION_SIZE);
        close(fd);
        assert_int_equal(be_destroy(f->b, &r), 0);

        /* Empty: the crash came before ftruncate(). */
        assert_int_equal(write_file(path, 0600, 0, 0), 0);
        assert_int_equal(be_create(f->b, &r), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_size, REGION_SIZE);
        assert_int_equal(be_destroy(f->b, &r), 0);

        /* Another size, other permissions, another owner, a symlink: not ours. */
        assert_int_equal(write_file(path, 0600, PAGE, 0x77), 0);
        assert_int_equal(be_create(f->b, &r), -EEXIST);
        assert_int_equal(unlink(path), 0);

        assert_int_equal(write_file(path, 0644, REGION_SIZE, 0x77), 0);
        assert_int_equal(be_create(f->b, &r), -EEXIST);
        assert_int_equal(unlink(path), 0);

        if (geteuid() == 0) {
                assert_int_equal(write_file(path, 0600, REGION_SIZE, 0x77), 0);
                assert_int_equal(chown(path, NOBODY, NOBODY), 0);
                assert_int_equal(be_create(f->b, &r), -EEXIST);
                assert_int_equal(unlink(path), 0);
        }

        assert_int_equal(symlink("/etc/passwd", path), 0);
        assert_int_equal(be_create(f->b, &r), -EEXIST);
        assert_int_equal(unlink(path), 0);

        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(be_create(f->b, &r), -EEXIST);
        assert_int_equal(rmdir(path), 0);
}

static void test_shm_restore_checks(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->shm_pool, 14, REGION_SIZE);
        char path[PATH_MAX];

        shm_path(f, 14, path, sizeof(path));
        assert_int_equal(be_restore(f->b, &r), -ENOENT);

        assert_int_equal(symlink("/etc/passwd", path), 0);
        assert_int_equal(be_restore(f->b, &r), -EBADFD);
        assert_int_equal(unlink(path), 0);

        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(be_restore(f->b, &r), -EBADFD);
        assert_int_equal(rmdir(path), 0);

        assert_int_equal(write_file(path, 0644, REGION_SIZE, 0), 0);
        assert_int_equal(be_restore(f->b, &r), -EBADFD);
        assert_int_equal(unlink(path), 0);

        if (geteuid() == 0) {
                assert_int_equal(write_file(path, 0600, REGION_SIZE, 0), 0);
                assert_int_equal(chown(path, NOBODY, NOBODY), 0);
                assert_int_equal(be_restore(f->b, &r), -EBADFD);
                assert_int_equal(unlink(path), 0);
        }

        assert_int_equal(write_file(path, 0600, REGION_SIZE - PAGE, 0), 0);
        assert_int_equal(be_restore(f->b, &r), -EINVAL);
        assert_int_equal(unlink(path), 0);

        /* And the plain good case, with the bytes that were there. */
        assert_int_equal(write_file(path, 0600, REGION_SIZE, 0x3c), 0);
        assert_int_equal(be_restore(f->b, &r), 0);
        {
                int rw = map_fd(f->b, &r, "writer", ACCESS_RW);
                int fd = map_fd(f->b, &r, "owner", ACCESS_RO);
                const uint8_t *p = mmap_ro(fd, REGION_SIZE);

                /* Opened O_NONBLOCK (a planted FIFO must not hang us), handed out without it. */
                assert_int_equal(fcntl(rw, F_GETFL) & (O_NONBLOCK | O_ACCMODE), O_RDWR);
                close(rw);
                assert_int_equal(p[0], 0x3c);
                assert_int_equal(p[REGION_SIZE - 1], 0x3c);
                munmap((void *) p, REGION_SIZE);
                close(fd);
        }
        assert_int_equal(be_destroy(f->b, &r), 0);
}

/* The ro protections hold for the file kinds too (a fresh O_RDONLY open of the file). */
static void test_shm_map_ro(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->shm_pool, 15, REGION_SIZE);
        int ro;
        void *p;

        assert_int_equal(be_create(f->b, &r), 0);
        ro = map_fd(f->b, &r, "reader", ACCESS_RO);
        assert_int_equal(fcntl(ro, F_GETFL) & O_ACCMODE, O_RDONLY);
        errno = 0;
        p = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);
        assert_true(p == MAP_FAILED);
        assert_int_equal(errno, EACCES);
        p = mmap(NULL, REGION_SIZE, PROT_READ, MAP_SHARED, ro, 0);
        assert_true(p != MAP_FAILED);
        munmap(p, REGION_SIZE);
        close(ro);
}

static void test_unmap(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->memfd_pool, 16, REGION_SIZE);
        struct backend_mapping m = { .fd = -42 };
        int a, b;

        /* Nothing held or nothing mapped: done already. */
        assert_int_equal(be_unmap(f->b, &r, "vm1"), 0);
        assert_int_equal(be_create(f->b, &r), 0);
        assert_int_equal(be_unmap(f->b, &r, "vm1"), 0);
        assert_int_equal(be_unmap(f->b, &r, "not/a/name"), -EINVAL);

        a = map_fd(f->b, &r, "vm1", ACCESS_RW);
        /* The same domain again: same access is a new fd, other access is refused. */
        assert_int_equal(be_map(f->b, &r, "vm1", ACCESS_RO, &m), -EEXIST);
        assert_int_equal(m.fd, -42);
        b = map_fd(f->b, &r, "vm1", ACCESS_RW);
        assert_int_not_equal(a, b);
        close(b);

        assert_int_equal(be_unmap(f->b, &r, "vm1"), 0);
        assert_int_equal(be_unmap(f->b, &r, "vm1"), 0);
        /* Forgotten: it may come back with another access. */
        b = map_fd(f->b, &r, "vm1", ACCESS_RO);
        assert_int_equal(fcntl(b, F_GETFL) & O_ACCMODE, O_RDONLY);
        close(b);
        close(a);
}

static void test_mapping_limit(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->memfd_pool, 18, PAGE);
        struct backend_mapping m = { .fd = -42 };
        char name[32];
        int n, fd;

        assert_int_equal(be_create(f->b, &r), 0);
        for (n = 0;; n++) {
                snprintf(name, sizeof(name), "vm%d", n);
                if (be_map(f->b, &r, name, n % 2 ? ACCESS_RO : ACCESS_RW, &m) < 0)
                        break;
                close(m.fd);
                m.fd = -42;
                assert_true(n < 1000);
        }
        assert_int_equal(n, 64);
        assert_int_equal(be_map(f->b, &r, name, ACCESS_RW, &m), -E2BIG);
        assert_int_equal(m.fd, -42);

        /* Known domains still get their fds at the limit. */
        fd = map_fd(f->b, &r, "vm0", ACCESS_RW);
        close(fd);
        assert_int_equal(be_unmap(f->b, &r, "vm7"), 0);
        fd = map_fd(f->b, &r, name, ACCESS_RW);
        close(fd);
        assert_int_equal(be_map(f->b, &r, "vm7", ACCESS_RO, &m), -E2BIG);
}

/* A hugetlbfs mount with a free huge page, or skip: most machines (and CI) have none. */
static bool find_hugetlbfs(char *mnt, size_t n, uint64_t *ret_page) {
        FILE *f = setmntent("/proc/self/mounts", "re");
        struct mntent *me;
        bool found = false;

        if (!f)
                return false;
        while (!found && (me = getmntent(f))) {
                struct statfs sfs;
                char p[128];
                FILE *free_f;
                unsigned long free_pages = 0;

                if (strcmp(me->mnt_type, "hugetlbfs") != 0 || access(me->mnt_dir, W_OK) < 0)
                        continue;
                if (statfs(me->mnt_dir, &sfs) < 0 || sfs.f_bsize <= 0)
                        continue;
                snprintf(p, sizeof(p), "/sys/kernel/mm/hugepages/hugepages-%lukB/free_hugepages",
                         (unsigned long) sfs.f_bsize / 1024);
                free_f = fopen(p, "re");
                if (!free_f)
                        continue;
                if (fscanf(free_f, "%lu", &free_pages) != 1)
                        free_pages = 0;
                fclose(free_f);
                if (free_pages >= 1 && strlen(me->mnt_dir) + 32 < n) {
                        snprintf(mnt, n, "%s", me->mnt_dir);
                        *ret_page = (uint64_t) sfs.f_bsize;
                        found = true;
                }
        }
        endmntent(f);
        return found;
}

static void test_hugetlbfs(void **state) {
        struct fixture *f = *state;
        char dir[PATH_MAX], path[PATH_MAX + 64];
        struct platform_pool pool;
        struct backend_region r;
        uint64_t page = 0;
        uint8_t *p;
        int fd;

        if (!find_hugetlbfs(dir, sizeof(dir), &page)) {
                skip();
                return;
        }
        strcat(dir, "/brokerd-test-XXXXXX");
        assert_non_null(mkdtemp(dir));

        pool = (struct platform_pool) {
                .name = (char *) "huge0",
                .granule = page,
                .backing = BACKING_HUGETLBFS,
                .backing_path = dir,
        };
        r = region(&pool, 1, page);
        snprintf(path, sizeof(path), "%s/brokerd-huge0-1", dir);

        assert_int_equal(be_create(f->b, &r), 0);
        fd = map_fd(f->b, &r, "owner", ACCESS_RW);
        p = mmap_rw(fd, page);
        memset(p, 0xee, page);
        assert_int_equal(be_scrub(f->b, &r), 0);
        assert_true(all_zero(p, page));
        munmap(p, page);
        close(fd);
        assert_int_equal(access(path, F_OK), 0);
        assert_int_equal(be_destroy(f->b, &r), 0);
        assert_int_equal(access(path, F_OK), -1);
        remove_dir(dir);
}

static int be_unmap_forced(struct backend *b, const struct backend_region *r, const char *domain, int pidfd) {
        return b->ops->unmap(b, r, &(struct backend_holder) { .domain = domain, .pidfd = pidfd, .forced = true });
}

/* A revocable pool: not sealed against shrinking, and a forced unmap truncates it for everyone. */
static void test_memfd_revocable(void **state) {
        struct fixture *f = *state;
        struct platform_pool pool = f->memfd_pool;
        struct backend_region r;
        struct stat st;
        int fd;

        pool.revocable = true;
        r = region(&pool, 7, REGION_SIZE);
        assert_int_equal(be_create(f->b, &r), 0);
        fd = map_fd(f->b, &r, "owner", ACCESS_RW);
        close(map_fd(f->b, &r, "peer", ACCESS_RW));
        assert_int_equal(fcntl(fd, F_GET_SEALS), F_SEAL_GROW | F_SEAL_SEAL);
        /* A peer that gave its mapping up leaves the memory alone. */
        assert_int_equal(be_unmap(f->b, &r, "peer"), 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_size, REGION_SIZE);
        close(map_fd(f->b, &r, "peer", ACCESS_RW));
        assert_int_equal(be_unmap_forced(f->b, &r, "peer", -1), 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_size, 0);
        assert_int_equal(be_scrub(f->b, &r), 0);
        assert_int_equal(be_destroy(f->b, &r), 0);
        close(fd);
}

/* A child that keeps its mapping: a forced unmap stays pending until it is stopped, or killed. */
static void test_forced_unmap_waits_for_the_process(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region(&f->memfd_pool, 8, REGION_SIZE);
        struct backend_holder h = { .domain = "peer", .forced = true };
        int fd, status;

        skip_without_pidfds();
        assert_int_equal(be_create(f->b, &r), 0);
        for (int round = 0; round < 2; round++) {
                enum unplug_escalation action = round == 0 ? ESCALATION_PAUSE : ESCALATION_DESTROY;
                pid_t pid;

                fd = map_fd(f->b, &r, "peer", ACCESS_RW);
                pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                        void *p = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                        close(fd);
                        for (;;)
                                if (p != MAP_FAILED)
                                        pause();
                }
                close(fd);
                h.pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
                assert_true(h.pidfd >= 0);
                usleep(100000); /* the child has mapped it and closed its fd by now */
                assert_int_equal(f->b->ops->unmap(f->b, &r, &h), -EINPROGRESS);
                assert_int_equal(f->b->ops->escalate(f->b, &r, &h, action), 1);
                assert_int_equal(f->b->ops->unmap(f->b, &r, &h), 0);
                (void) kill(pid, SIGKILL);
                assert_int_equal(waitpid(pid, &status, 0), pid);
                close(h.pidfd);
        }
        /* Nobody to act on (after a restart): the escalation cannot be carried out. */
        h.pidfd = -1;
        assert_int_equal(f->b->ops->escalate(f->b, &r, &h, ESCALATION_DESTROY), -ESRCH);
        assert_int_equal(be_destroy(f->b, &r), 0);
}

/* The daemon's fd store as the backend sees it: a few named slots; take hands back a copy. */
struct fake_store {
        char names[4][BACKEND_FD_NAME_MAX + 1];
        int fds[4];
        unsigned keeps, drops;
};

static int fake_find(struct fake_store *s, const char *name) {
        for (int i = 0; i < 4; i++)
                if (s->fds[i] >= 0 && strcmp(s->names[i], name) == 0)
                        return i;
        return -1;
}

static int fake_drop(void *userdata, const char *name) {
        struct fake_store *s = userdata;
        int i = fake_find(s, name);

        s->drops++;
        if (i >= 0) {
                close(s->fds[i]);
                s->fds[i] = -1;
        }
        return 0;
}

static int fake_keep(void *userdata, const char *name, int fd) {
        struct fake_store *s = userdata;

        (void) fake_drop(s, name);
        s->drops--;
        s->keeps++;
        for (int i = 0; i < 4; i++)
                if (s->fds[i] < 0) {
                        snprintf(s->names[i], sizeof(s->names[i]), "%s", name);
                        s->fds[i] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                        return s->fds[i] < 0 ? -errno : 0;
                }
        return -EXFULL;
}

static int fake_take(void *userdata, const char *name, int *ret) {
        struct fake_store *s = userdata;
        int i = fake_find(s, name);

        if (i < 0)
                return -ENOENT;
        *ret = fcntl(s->fds[i], F_DUPFD, 3); /* as passed at exec: without O_CLOEXEC */
        return *ret < 0 ? -errno : 0;
}

static void fake_store_clear(struct fake_store *s) {
        for (int i = 0; i < 4; i++)
                if (s->fds[i] >= 0)
                        close(s->fds[i]);
}

static void test_memfd_store(void **state) {
        struct fixture *f = *state;
        struct fake_store fs = { .fds = { -1, -1, -1, -1 } };
        struct backend_fd_store store = { fake_keep, fake_drop, fake_take, &fs };
        struct platform_pool odd = f->memfd_pool;
        struct backend_region r = region(&f->memfd_pool, 9, REGION_SIZE), q = region(&odd, 12, REGION_SIZE);
        struct backend *a = NULL, *b = NULL;
        int fd, forged;
        char *p;

        odd.name = (char *) "mem:1+x";
        assert_int_equal(backend_memfd_new_with_store(&(struct backend_fd_store) { fake_keep }, &a), -EINVAL);
        assert_int_equal(backend_memfd_new_with_store(&store, &a), 0);
        assert_int_equal(be_create(a, &r), 0);
        assert_int_equal(be_create(a, &q), 0);
        assert_int_equal(fs.keeps, 2);
        assert_int_equal(fake_find(&fs, "region-9-mem0"), 0);
        assert_int_equal(fake_find(&fs, "region-12-mem_1_x"), 1);
        fd = map_fd(a, &r, "owner", ACCESS_RW);
        p = mmap(NULL, REGION_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        assert_ptr_not_equal(p, MAP_FAILED);
        memcpy(p, "kept", 4);
        close(fd);
        backend_free(a); /* the daemon dies; the store holds the memory */

        /* The next start finds it again, the same memory, and hands it out read-write. */
        assert_int_equal(backend_memfd_new_with_store(&store, &b), 0);
        assert_int_equal(be_restore(b, &r), 0);
        fd = map_fd(b, &r, "vm1", ACCESS_RO);
        assert_memory_equal(p, "kept", 4);
        close(fd);
        munmap(p, REGION_SIZE);
        /* Reclaim: destroy drops it from the store, whether held or not. */
        assert_int_equal(be_destroy(b, &r), 0);
        assert_int_equal(fake_find(&fs, "region-9-mem0"), -1);
        assert_int_equal(be_destroy(b, &q), 0);
        assert_int_equal(fake_find(&fs, "region-12-mem_1_x"), -1);

        /* A memfd of the right name and size but not sealed as ours: refused and dropped. */
        forged = memfd_create("brokerd:mem0:9", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        assert_true(forged >= 0);
        assert_int_equal(ftruncate(forged, REGION_SIZE), 0);
        assert_int_equal(fchmod(forged, 0600), 0);
        assert_int_equal(fake_keep(&fs, "region-9-mem0", forged), 0);
        assert_int_equal(be_restore(b, &r), -EBADFD);
        assert_int_equal(fake_find(&fs, "region-9-mem0"), -1);
        /* Sealed as ours but one page short: refused. */
        assert_int_equal(ftruncate(forged, REGION_SIZE - PAGE), 0);
        assert_int_equal(fcntl(forged, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
        assert_int_equal(fake_keep(&fs, "region-9-mem0", forged), 0);
        assert_int_equal(be_restore(b, &r), -EINVAL);
        close(forged);
        /* Nothing handed back: the memory did not survive. */
        assert_int_equal(be_restore(b, &r), -ENOENT);
        backend_free(b);
        fake_store_clear(&fs);
}

/*
 * A revocable region in the store: restore() expects its seals (no shrink seal) and refuses the
 * sealed kind; after a restart its holders are not on record, yet a forced unmap truncates it,
 * and the truncated memfd is no memory to restore (-ENOENT, dropped), not a failure.
 */
static void test_memfd_store_revocable(void **state) {
        struct fixture *f = *state;
        struct fake_store fs = { .fds = { -1, -1, -1, -1 } };
        struct backend_fd_store store = { fake_keep, fake_drop, fake_take, &fs };
        struct platform_pool pool = f->memfd_pool;
        struct backend_region r, q;
        struct backend *a = NULL, *b = NULL;
        struct stat st;
        int fd, forged;

        pool.revocable = true;
        r = region(&pool, 10, REGION_SIZE);
        q = region(&pool, 11, REGION_SIZE);
        assert_int_equal(backend_memfd_new_with_store(&store, &a), 0);
        assert_int_equal(be_create(a, &r), 0);
        fd = map_fd(a, &r, "owner", ACCESS_RW);
        close(map_fd(a, &r, "peer", ACCESS_RW));
        backend_free(a);

        assert_int_equal(backend_memfd_new_with_store(&store, &b), 0);
        assert_int_equal(be_restore(b, &r), 0);
        assert_int_equal(be_unmap_forced(b, &r, "peer", -1), 0);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_size, 0);
        backend_free(b);

        assert_int_equal(backend_memfd_new_with_store(&store, &b), 0);
        assert_int_equal(be_restore(b, &r), -ENOENT);
        assert_int_equal(fake_find(&fs, "region-10-mem0"), -1);
        assert_int_equal(be_destroy(b, &r), 0);
        close(fd);

        /* Sealed as a sealed pool's: not this revocable region's memfd. */
        forged = memfd_create("brokerd:mem0:11", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        assert_true(forged >= 0);
        assert_int_equal(ftruncate(forged, REGION_SIZE), 0);
        assert_int_equal(fchmod(forged, 0600), 0);
        assert_int_equal(fcntl(forged, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
        assert_int_equal(fake_keep(&fs, "region-11-mem0", forged), 0);
        assert_int_equal(be_restore(b, &q), -EBADFD);
        assert_int_equal(fake_find(&fs, "region-11-mem0"), -1);
        close(forged);
        backend_free(b);
        fake_store_clear(&fs);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_ops_table),
                T(test_memfd_map_rw),
                T(test_memfd_map_lend),
                T(test_memfd_name),
                T(test_memfd_map_ro),
                T(test_memfd_sealed),
                T(test_memfd_large_granule),
                T(test_ro_reopen_denied),
                T(test_scrub),
                T(test_memfd_destroy),
                T(test_memfd_create_restore),
                T(test_memfd_store),
                T(test_memfd_store_revocable),
                T(test_bad_regions),
                T(test_shm_lifecycle),
                T(test_shm_destroy_unheld),
                T(test_shm_leftover_file),
                T(test_shm_restore_checks),
                T(test_shm_map_ro),
                T(test_unmap),
                T(test_mapping_limit),
                T(test_hugetlbfs),
                T(test_memfd_revocable),
                T(test_forced_unmap_waits_for_the_process),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
