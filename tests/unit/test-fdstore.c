/* SPDX-License-Identifier: Apache-2.0 */
/* daemon/fdstore.c against a datagram socket standing in for the service manager's. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/fdstore.h"

struct fixture {
        char dir[64], path[96];
        int sock;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        if (!f)
                return -1;
        strcpy(f->dir, "/tmp/brokerd-fdstore-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->path, sizeof(f->path), "%s/notify", f->dir);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
        f->sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (f->sock < 0 || bind(f->sock, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -1;
        setenv("NOTIFY_SOCKET", f->path, 1);
        unsetenv("FDSTORE");
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;

        close(f->sock);
        unlink(f->path);
        rmdir(f->dir);
        free(f);
        unsetenv("NOTIFY_SOCKET");
        unsetenv("FDSTORE");
        return 0;
}

/* The next notification's text; *ret_fd the fd it carried (or -1). -EAGAIN: none pending. */
static int next_message(struct fixture *f, char *buf, size_t len, int *ret_fd) {
        union {
                struct cmsghdr h;
                char space[CMSG_SPACE(sizeof(int) * 4)];
        } control;
        struct iovec iov = { buf, len - 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof(control) };
        ssize_t n = recvmsg(f->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

        if (n < 0)
                return -errno;
        buf[n] = 0;
        *ret_fd = -1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                        assert_int_equal(c->cmsg_len, CMSG_LEN(sizeof(int)));
                        memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
                }
        return 0;
}

static void expect_message(struct fixture *f, const char *text, bool with_fd) {
        char buf[512];
        int fd;

        assert_int_equal(next_message(f, buf, sizeof(buf), &fd), 0);
        assert_string_equal(buf, text);
        assert_int_equal(fd >= 0, with_fd);
        if (fd >= 0)
                close(fd);
}

static void expect_none(struct fixture *f) {
        char buf[512];
        int fd;

        assert_int_equal(next_message(f, buf, sizeof(buf), &fd), -EAGAIN);
}

static bool same_inode(int a, int b) {
        struct stat x, y;

        return fstat(a, &x) == 0 && fstat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

static void test_take_keep_drop(void **state) {
        struct fixture *f = *state;
        struct fdstore *s = NULL;
        const struct backend_fd_store *b;
        int one = memfd_create("one", MFD_CLOEXEC), probe = dup(one), fd = -1;

        assert_int_equal(fdstore_new(&s), 0);
        assert_int_equal(fdstore_add_passed(s, "region-1-a", one), 0);
        assert_int_equal(fdstore_add_passed(s, "region-2-a", memfd_create("two", MFD_CLOEXEC)), 0);
        assert_int_equal(fdstore_add_passed(s, "region-2-a", memfd_create("two-again", MFD_CLOEXEC)), -EBADFD);
        assert_int_equal(fdstore_add_passed(s, "region-9-a", memfd_create("nine", MFD_CLOEXEC)), 0);
        b = fdstore_backend(s);
        assert_non_null(b);

        /* Taken once; a name passed twice is nobody's, and leaves the store. */
        assert_int_equal(b->take(b->userdata, "region-1-a", &fd), 0);
        assert_true(same_inode(fd, probe));
        close(fd);
        assert_int_equal(b->take(b->userdata, "region-1-a", &fd), -ENOENT);
        assert_int_equal(b->take(b->userdata, "region-2-a", &fd), -EBADFD);
        expect_message(f, "FDSTOREREMOVE=1\nFDNAME=region-2-a", false);
        expect_none(f);

        /* Keeping a new name sends it; keeping one the store holds replaces it. */
        assert_int_equal(b->keep(b->userdata, "region-3-a", probe), 0);
        expect_message(f, "FDSTORE=1\nFDNAME=region-3-a", true);
        assert_int_equal(b->keep(b->userdata, "region-1-a", probe), 0);
        expect_message(f, "FDSTOREREMOVE=1\nFDNAME=region-1-a", false);
        expect_message(f, "FDSTORE=1\nFDNAME=region-1-a", true);
        assert_int_equal(fdstore_size(s), 2);
        /* Names FDNAME cannot carry, or that are no backend's, are refused unsent. */
        assert_int_equal(b->keep(b->userdata, "region:1", probe), -EINVAL);
        assert_int_equal(b->drop(b->userdata, ""), -EINVAL);
        expect_none(f);

        assert_int_equal(b->drop(b->userdata, "region-3-a"), 0);
        expect_message(f, "FDSTOREREMOVE=1\nFDNAME=region-3-a", false);
        assert_int_equal(fdstore_size(s), 1);

        /* What nobody took is closed and removed. */
        fdstore_flush_unclaimed(s);
        expect_message(f, "FDSTOREREMOVE=1\nFDNAME=region-9-a", false);
        expect_none(f);
        assert_int_equal(b->take(b->userdata, "region-9-a", &fd), -ENOENT);
        fdstore_free(s);
        close(probe);
}

static void test_cap(void **state) {
        struct fixture *f = *state;
        struct fdstore *s = NULL;
        const struct backend_fd_store *b;
        int fd = memfd_create("x", MFD_CLOEXEC);

        setenv("FDSTORE", "1", 1);
        assert_int_equal(fdstore_new(&s), 0);
        b = fdstore_backend(s);
        assert_int_equal(b->keep(b->userdata, "region-1-a", fd), 0);
        expect_message(f, "FDSTORE=1\nFDNAME=region-1-a", true);
        assert_int_equal(b->keep(b->userdata, "region-2-a", fd), -EXFULL);
        expect_none(f);
        /* Replacing what is kept needs no room. */
        assert_int_equal(b->keep(b->userdata, "region-1-a", fd), 0);
        expect_message(f, "FDSTOREREMOVE=1\nFDNAME=region-1-a", false);
        expect_message(f, "FDSTORE=1\nFDNAME=region-1-a", true);
        assert_int_equal(b->drop(b->userdata, "region-1-a"), 0);
        expect_message(f, "FDSTOREREMOVE=1\nFDNAME=region-1-a", false);
        assert_int_equal(b->keep(b->userdata, "region-2-a", fd), 0);
        expect_message(f, "FDSTORE=1\nFDNAME=region-2-a", true);
        fdstore_free(s);
        close(fd);
}

/* Names past what $LISTEN_FDNAMES can carry are refused, so the next start's exec cannot fail. */
static void test_names_bound(void **state) {
        struct fixture *f = *state;
        struct fdstore *s = NULL;
        const struct backend_fd_store *b;
        int fd = memfd_create("x", MFD_CLOEXEC);
        char name[201], text[256];
        size_t bytes = 0, kept = 0;

        assert_int_equal(fdstore_new(&s), 0);
        b = fdstore_backend(s);
        memset(name, 'n', sizeof(name) - 1);
        name[sizeof(name) - 1] = 0;
        for (;; kept++) {
                int n = snprintf(name, sizeof(name), "region-%zu", kept);
                name[n] = '-'; /* the rest stays 'n': every name is 200 characters */
                if (bytes + sizeof(name) > FDSTORE_NAMES_MAX)
                        break;
                assert_int_equal(b->keep(b->userdata, name, fd), 0);
                snprintf(text, sizeof(text), "FDSTORE=1\nFDNAME=%s", name);
                expect_message(f, text, true);
                bytes += sizeof(name);
        }
        assert_true(kept > 600);
        assert_int_equal(fdstore_size(s), kept);
        /* One more would not fit: refused, nothing sent. */
        assert_int_equal(b->keep(b->userdata, name, fd), -EXFULL);
        expect_none(f);
        /* A replacement needs no room. */
        memset(name, 'n', sizeof(name) - 1);
        snprintf(name, sizeof(name), "region-0");
        name[8] = '-';
        assert_int_equal(b->keep(b->userdata, name, fd), 0);
        snprintf(text, sizeof(text), "FDSTOREREMOVE=1\nFDNAME=%s", name);
        expect_message(f, text, false);
        snprintf(text, sizeof(text), "FDSTORE=1\nFDNAME=%s", name);
        expect_message(f, text, true);
        /* A drop makes room again. */
        assert_int_equal(b->drop(b->userdata, name), 0);
        snprintf(text, sizeof(text), "FDSTOREREMOVE=1\nFDNAME=%s", name);
        expect_message(f, text, false);
        assert_int_equal(b->keep(b->userdata, "region-new-a", fd), 0);
        expect_message(f, "FDSTORE=1\nFDNAME=region-new-a", true);
        fdstore_free(s);
        close(fd);
}

static void test_without_service_manager(void **state) {
        struct fixture *f = *state;
        struct fdstore *s = NULL;
        int fd = memfd_create("x", MFD_CLOEXEC), probe = dup(fd);
        struct stat st;

        unsetenv("NOTIFY_SOCKET");
        assert_int_equal(fdstore_new(&s), 0);
        assert_null(fdstore_backend(s));
        assert_int_equal(fdstore_add_passed(s, "region-1-a", fd), 0);
        fdstore_flush_unclaimed(s);
        expect_none(f);
        /* Closed, not kept open for nothing. */
        assert_int_equal(fstat(fd, &st) < 0 ? errno : 0, EBADF);
        fdstore_free(s);
        close(probe);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_take_keep_drop, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
                cmocka_unit_test_setup_teardown(test_names_bound, setup, teardown),
                cmocka_unit_test_setup_teardown(test_without_service_manager, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
