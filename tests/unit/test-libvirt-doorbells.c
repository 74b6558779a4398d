/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The libvirt backend's doorbell regions against libvirt's in-process test driver: the server
 * made with the region (socket, modes, peer table, fds kept in an fd store), strangers refused
 * and reported, an attach refused when the domain has no QEMU to admit, a restart served from
 * the fd store, and everything gone with the region. Hot-plugging needs QEMU: tests/e2e
 * (test_libvirt_doorbells.py) covers it. Needs root and a libvirt-qemu user; skips otherwise.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "backend/backend-libvirt.h"
#include "util/macro.h"

#define URI "test:///default"
#define MIB (UINT64_C(1) << 20)
#define MAX_KEPT 64

/* An fd store in memory, as the daemon's is to backends. */
struct store {
        char *names[MAX_KEPT];
        int fds[MAX_KEPT];
        size_t n;
};

struct fixture {
        char pool_name[32], dir[64];
        struct platform_pool pool;
        sd_event *loop;
        struct backend *b;
        struct store store;
        struct backend_fd_store ops;
        gid_t qemu_gid;
        unsigned max_bells; /* 0: the backend's default */
        unsigned refused;
        char last_who[64], last_why[64];
};

static ssize_t store_find(struct store *s, const char *name) {
        for (size_t i = 0; i < s->n; i++)
                if (strcmp(s->names[i], name) == 0)
                        return (ssize_t) i;
        return -1;
}

static int store_keep(void *userdata, const char *name, int fd) {
        struct store *s = userdata;

        assert_true(store_find(s, name) < 0); /* the backend never keeps a name twice */
        assert_true(s->n < MAX_KEPT);
        s->names[s->n] = strdup(name);
        s->fds[s->n] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        assert_true(s->fds[s->n] >= 0);
        s->n++;
        return 0;
}

static int store_drop(void *userdata, const char *name) {
        struct store *s = userdata;
        ssize_t i = store_find(s, name);

        if (i < 0)
                return 0;
        free(s->names[i]);
        close(s->fds[i]);
        s->names[i] = s->names[--s->n];
        s->fds[i] = s->fds[s->n];
        return 0;
}

static int store_take(void *userdata, const char *name, int *ret) {
        struct store *s = userdata;
        ssize_t i = store_find(s, name);

        if (i < 0)
                return -ENOENT;
        /* The daemon's store hands the fd over and keeps the name; so does this one. */
        *ret = fcntl(s->fds[i], F_DUPFD_CLOEXEC, 3);
        return *ret < 0 ? -errno : 0;
}

static void on_refused(void *userdata, uint64_t region, const char *who, const char *why) {
        struct fixture *f = userdata;

        assert_int_equal(region, 1);
        f->refused++;
        snprintf(f->last_who, sizeof(f->last_who), "%s", who);
        snprintf(f->last_why, sizeof(f->last_why), "%s", why);
}

static int backend_start(struct fixture *f) {
        int k = backend_libvirt_new_with(&(struct backend_libvirt_options) {
                .uri = URI, .ivshmem_dir = f->dir, .fd_store = &f->ops, .max_doorbell_regions = f->max_bells,
        }, &f->b);
        if (k < 0)
                return k;
        backend_set_callbacks(f->b, &(struct backend_callbacks) { .refused = on_refused, .userdata = f });
        return backend_attach_event(f->b, f->loop);
}

static int fixture_setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        snprintf(f->pool_name, sizeof(f->pool_name), "udb%d", (int) getpid());
        snprintf(f->dir, sizeof(f->dir), "/run/brokerd-test-%d/ivshmem", (int) getpid());
        f->pool = (struct platform_pool) {
                .name = f->pool_name, .base = 0x40000000, .end = 0x80000000, .granule = 4096,
                .backing = BACKING_SHM, .backing_path = (char *) "/dev/shm",
        };
        f->ops = (struct backend_fd_store) { .keep = store_keep, .drop = store_drop, .take = store_take,
                                             .userdata = &f->store };
        f->qemu_gid = getpwnam("libvirt-qemu")->pw_gid;
        if (sd_event_new(&f->loop) < 0 || backend_start(f) < 0) {
                free(f);
                return -1;
        }
        *state = f;
        return 0;
}

static int fixture_teardown(void **state) {
        struct fixture *f = *state;
        char parent[64];

        backend_free(f->b);
        sd_event_unref(f->loop);
        while (f->store.n > 0)
                store_drop(&f->store, f->store.names[0]);
        (void) rmdir(f->dir);
        snprintf(parent, sizeof(parent), "/run/brokerd-test-%d", (int) getpid());
        (void) rmdir(parent);
        free(f);
        return 0;
}

static struct backend_region region_of(struct fixture *f, unsigned doorbells) {
        return (struct backend_region) { .id = 1, .base = 0x40000000, .size = MIB, .pool = &f->pool, .doorbells = doorbells };
}

static void path_in_dir(struct fixture *f, const char *file, char *buf, size_t n) {
        snprintf(buf, n, "%s/%s", f->dir, file);
}

/* Connects like a QEMU that nobody expects and reads the one answer: -1, and no fd. */
static void stranger_is_refused(struct fixture *f) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        unsigned before = f->refused;
        int64_t v = 0;
        int s;

        path_in_dir(f, "region-1.sock", sa.sun_path, sizeof(sa.sun_path));
        s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(s >= 0);
        assert_int_equal(connect(s, (struct sockaddr *) &sa, sizeof(sa)), 0);
        /* The server answers on its own thread; the refusal is reported on our loop. */
        assert_int_equal(poll(&(struct pollfd) { .fd = s, .events = POLLIN }, 1, 5000), 1);
        assert_int_equal(recv(s, &v, sizeof(v), 0), sizeof(v));
        assert_int_equal((int64_t) le64toh((uint64_t) v), -1);
        for (int i = 0; i < 500 && f->refused == before; i++)
                assert_true(sd_event_run(f->loop, 10 * 1000) >= 0);
        assert_int_equal(f->refused, before + 1);
        assert_non_null(strstr(f->last_who, "pid "));
        assert_string_equal(f->last_why, "unexpected");
        close(s);
}

static void test_region_lifecycle(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region_of(f, 2);
        struct backend_mapping m = { .fd = -1 };
        char path[128], text[128] = "";
        struct stat st;
        FILE *fp;

        assert_true(backend_guest_doorbells(f->b));
        assert_int_equal(backend_create(f->b, &r), 0);
        assert_int_equal(lstat(f->dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0750);
        assert_int_equal(st.st_gid, f->qemu_gid);
        path_in_dir(f, "region-1.sock", path, sizeof(path));
        assert_int_equal(lstat(path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0660);
        assert_int_equal(st.st_uid, 0);
        assert_int_equal(st.st_gid, f->qemu_gid);
        path_in_dir(f, "region-1.peers", path, sizeof(path));
        fp = fopen(path, "re");
        assert_non_null(fp);
        assert_int_equal(fread(text, 1, sizeof(text) - 1, fp) > 0, 1);
        fclose(fp);
        assert_string_equal(text, "brokerd-ivshmem-peers 1\nnext 0\n");
        assert_true(store_find(&f->store, "ivs-1-listen") >= 0);
        assert_true(store_find(&f->store, "ivs-1-mem") < 0); /* the memory is the region's file */

        stranger_is_refused(f);

        /* The test driver's domain has no QEMU: nobody to admit, so no attach is tried. */
        assert_int_equal(backend_map(f->b, &r, "test", ACCESS_RW, &m), -ESRCH);
        /* Unmapping a domain that never joined (and does not exist) is nothing to do. */
        assert_int_equal(backend_unmap(f->b, &r, &(struct backend_holder) { .domain = "no-such", .pidfd = -1 }), 0);

        assert_int_equal(backend_destroy(f->b, &r), 0);
        path_in_dir(f, "region-1.sock", path, sizeof(path));
        assert_int_equal(access(path, F_OK), -1);
        path_in_dir(f, "region-1.peers", path, sizeof(path));
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(f->store.n, 0);
}

static void test_restart_from_the_fd_store(void **state) {
        struct fixture *f = *state;
        struct backend_region r = region_of(f, 1);
        char path[128];
        struct stat before, after;

        assert_int_equal(backend_create(f->b, &r), 0);
        path_in_dir(f, "region-1.sock", path, sizeof(path));
        assert_int_equal(stat(path, &before), 0);
        /* brokerd goes away: the socket file and the table stay, its fds live on in the store. */
        backend_free(f->b);
        f->b = NULL;
        assert_int_equal(access(path, F_OK), 0);
        assert_int_equal(backend_start(f), 0);
        assert_int_equal(backend_restore(f->b, &r), 0);
        /* The same listening socket (no new file), serving as before. */
        assert_int_equal(stat(path, &after), 0);
        assert_int_equal(before.st_ino, after.st_ino);
        stranger_is_refused(f);
        assert_int_equal(backend_destroy(f->b, &r), 0);

        /* Without a store (and without the file) a restart makes a new socket. */
        assert_int_equal(backend_create(f->b, &r), 0);
        backend_free(f->b);
        f->b = NULL;
        while (f->store.n > 0)
                store_drop(&f->store, f->store.names[0]);
        assert_int_equal(backend_start(f), 0);
        assert_int_equal(backend_restore(f->b, &r), 0);
        stranger_is_refused(f);
        assert_int_equal(backend_destroy(f->b, &r), 0);
}

static bool exists_in_dir(struct fixture *f, const char *file) {
        char path[128];

        path_in_dir(f, file, path, sizeof(path));
        return access(path, F_OK) == 0;
}

/* Past its limit of doorbell regions the backend refuses at share time, and makes nothing. */
static void test_doorbell_region_limit(void **state) {
        struct fixture *f = *state;
        struct backend_region r1 = region_of(f, 1), r2 = region_of(f, 4), r3 = region_of(f, 2), plain = region_of(f, 0);
        char why[128] = "";

        backend_free(f->b);
        f->max_bells = 2;
        assert_int_equal(backend_start(f), 0);
        r2.id = 2, r3.id = 3, plain.id = 4;
        r2.base += MIB, r3.base += 2 * MIB, plain.base += 3 * MIB;

        assert_int_equal(backend_check(f->b, &r1, why, sizeof(why)), 0);
        assert_int_equal(backend_create(f->b, &r1), 0);
        assert_int_equal(backend_create(f->b, &r2), 0);
        assert_int_equal(backend_check(f->b, &r3, why, sizeof(why)), -E2BIG);
        assert_non_null(strstr(why, "at most 2 doorbell regions"));
        /* Made anyway (a restart's remake): refused, and neither socket nor memory is left. */
        assert_int_equal(backend_create(f->b, &r3), -E2BIG);
        assert_false(exists_in_dir(f, "region-3.sock"));
        assert_false(exists_in_dir(f, "region-3.peers"));
        snprintf(why, sizeof(why), "/dev/shm/brokerd-%s-3", f->pool_name);
        assert_int_equal(access(why, F_OK), -1);
        /* Plain regions hold no server: not counted. */
        why[0] = 0;
        assert_int_equal(backend_check(f->b, &plain, why, sizeof(why)), 0);
        /* One gone, room for one more. */
        assert_int_equal(backend_destroy(f->b, &r1), 0);
        assert_int_equal(backend_check(f->b, &r3, why, sizeof(why)), 0);
        assert_int_equal(backend_create(f->b, &r3), 0);
        assert_true(exists_in_dir(f, "region-3.sock"));
        assert_int_equal(backend_destroy(f->b, &r2), 0);
        assert_int_equal(backend_destroy(f->b, &r3), 0);
        assert_int_equal(f->store.n, 0);
}

static void test_bad_dir(void **state) {
        struct backend *b = NULL;

        (void) state;
        assert_int_equal(backend_libvirt_new_with(&(struct backend_libvirt_options) {
                .uri = URI, .ivshmem_dir = "relative/dir" }, &b), -ENAMETOOLONG);
        assert_int_equal(backend_libvirt_new_with(&(struct backend_libvirt_options) {
                .uri = URI,
                .ivshmem_dir = "/run/a-directory-name-so-long-that-no-socket-path-in-it-could-fit-in-sun-path-x" },
                &b), -ENAMETOOLONG);
        assert_null(b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_region_lifecycle, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_restart_from_the_fd_store, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_doorbell_region_limit, fixture_setup, fixture_teardown),
                cmocka_unit_test(test_bad_dir),
        };

        if (geteuid() != 0 || !getpwnam("libvirt-qemu")) {
                printf("skipped: needs root and a libvirt-qemu user\n");
                return 77;
        }
        return cmocka_run_group_tests(tests, NULL, NULL);
}
