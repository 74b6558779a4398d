/* SPDX-License-Identifier: Apache-2.0 */
/*
 * backend/ivshmem-server.h over real Unix sockets, on an sd-event loop driven by the test. The
 * clients speak QEMU's side of the protocol: one int64 and at most one fd per recvmsg(). They
 * run in this process, so "the expected QEMU" is this process, and an unexpected one is
 * expected under another pid.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>
#include <systemd/sd-event.h>

#include "backend/ivshmem-server.h"
#include "pidfd-skip.h"

#define REGION_SIZE (64u << 10)
#define VECTORS 2u
/* Loop iterations a test waits for something before failing (10 ms each at most). */
#define MAX_SPINS 1000

struct fixture {
        char dir[64], path[96];
        sd_event *event;
        sd_event_source *far_timer;
        int memfd;
        struct ivshmem_server *server;
        unsigned joined, gone, refused;
        unsigned overflowed;
        uint16_t overflowed_id;
        enum ivshmem_refusal last_refusal;
        enum ivshmem_departure last_departure;
        pid_t refused_pid;
        uid_t refused_uid;
};

static void on_refused(void *userdata, pid_t pid, uid_t uid, enum ivshmem_refusal reason) {
        struct fixture *f = userdata;

        f->refused++;
        f->refused_pid = pid;
        f->refused_uid = uid;
        f->last_refusal = reason;
}

static void on_joined(void *userdata, uint16_t id, const char *domain) {
        struct fixture *f = userdata;

        (void) id, (void) domain;
        f->joined++;
}

static void on_gone(void *userdata, uint16_t id, const char *domain, enum ivshmem_departure reason) {
        struct fixture *f = userdata;

        (void) domain;
        f->gone++;
        if (reason == IVSHMEM_GONE_OVERFLOW) {
                f->overflowed++;
                f->overflowed_id = id;
        }
        f->last_departure = reason;
}

static int memfd_of_size(size_t size) {
        int fd = memfd_create("ivshmem-test", MFD_CLOEXEC);

        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t) size), 0);
        return fd;
}

static struct ivshmem_server_config config_of(struct fixture *f, unsigned vectors) {
        return (struct ivshmem_server_config) {
                .name = "test-group",
                .socket_path = f->path,
                .socket_gid = getgid(),
                .memfd = f->memfd,
                .vectors = vectors,
                .callbacks = { .refused = on_refused, .joined = on_joined, .gone = on_gone, .userdata = f },
        };
}

static void server_start(struct fixture *f, const struct ivshmem_server_config *c) {
        assert_int_equal(ivshmem_server_new(f->event, c, &f->server), 0);
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        strcpy(f->dir, "/tmp/brokerd-ivshmem-XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->path, sizeof(f->path), "%s/group.sock", f->dir);
        if (sd_event_new(&f->event) < 0)
                return -1;
        /* sd-event makes its CLOCK_MONOTONIC timerfd with the first timer: now, not in a counted section. */
        if (sd_event_add_time_relative(f->event, &f->far_timer, CLOCK_MONOTONIC, 3600ULL * 1000000ULL, 0, NULL, NULL) < 0)
                return -1;
        f->memfd = memfd_of_size(REGION_SIZE);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;

        ivshmem_server_free(f->server);
        sd_event_source_unref(f->far_timer);
        sd_event_unref(f->event);
        close(f->memfd);
        unlink(f->path);
        rmdir(f->dir);
        free(f);
        return 0;
}

static void spin(struct fixture *f) {
        assert_true(sd_event_run(f->event, 10000) >= 0);
}

static int client_connect(struct fixture *f) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
        assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        return fd;
}

/* One message as QEMU reads it: 1 (value, *ret_fd or -1), 0 on EOF, -EAGAIN when nothing came. */
static int client_try_read(int sock, int64_t *ret_value, int *ret_fd) {
        union {
                struct cmsghdr h;
                char space[CMSG_SPACE(sizeof(int) * 4)];
        } control;
        int64_t le;
        struct iovec iov = { &le, sizeof(le) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof(control) };
        ssize_t n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

        if (n < 0)
                return -errno;
        if (n == 0)
                return 0;
        assert_int_equal(n, sizeof(le));
        assert_false(mh.msg_flags & MSG_CTRUNC);
        *ret_fd = -1;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                assert_int_equal(c->cmsg_type, SCM_RIGHTS);
                /* Never more than one fd per message: QEMU would close the rest. */
                assert_int_equal(c->cmsg_len, CMSG_LEN(sizeof(int)));
                assert_int_equal(*ret_fd, -1);
                memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
        }
        *ret_value = (int64_t) le64toh((uint64_t) le);
        return 1;
}

/* The next message, running the loop until it comes. */
static int64_t client_read(struct fixture *f, int sock, int *ret_fd) {
        int64_t v = 0;

        for (int i = 0; i < MAX_SPINS; i++) {
                int k = client_try_read(sock, &v, ret_fd);
                if (k == 1)
                        return v;
                assert_int_equal(k, -EAGAIN);
                spin(f);
        }
        fail_msg("no message came");
        return 0;
}

static void client_expect(struct fixture *f, int sock, int64_t value, bool with_fd) {
        int fd;

        assert_int_equal(client_read(f, sock, &fd), value);
        assert_int_equal(fd >= 0, with_fd);
        if (fd >= 0)
                close(fd);
}

/* Nothing more is pending and the connection is open (no EOF). */
static void client_expect_quiet(struct fixture *f, int sock) {
        int64_t v;
        int fd;

        for (int i = 0; i < 5; i++)
                spin(f);
        assert_int_equal(client_try_read(sock, &v, &fd), -EAGAIN);
}

/* Reads whatever is pending (closing the fds that came) until nothing more comes and no EOF. */
static unsigned client_drain(struct fixture *f, int sock) {
        unsigned n = 0;
        int64_t v;
        int fd, k;

        for (int i = 0; i < 5; i++)
                spin(f);
        while ((k = client_try_read(sock, &v, &fd)) == 1) {
                n++;
                if (fd >= 0)
                        close(fd);
        }
        assert_int_equal(k, -EAGAIN);
        return n;
}

static bool same_file(int a, int b) {
        struct stat x, y;

        return fstat(a, &x) == 0 && fstat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/* Reads a whole setup for peer id with n_others earlier peers; returns its own eventfds. */
static void client_read_setup(struct fixture *f, int sock, int64_t id, unsigned vectors, const int64_t *others,
                              size_t n_others, int *own) {
        struct stat st;
        int fd;

        client_expect(f, sock, 0, false);
        client_expect(f, sock, id, false);
        assert_int_equal(client_read(f, sock, &fd), -1);
        assert_true(fd >= 0);
        assert_true(same_file(fd, f->memfd));
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_size, REGION_SIZE);
        close(fd);
        for (unsigned v = 0; v < vectors; v++) {
                assert_int_equal(client_read(f, sock, &own[v]), id);
                assert_true(own[v] >= 0);
        }
        for (size_t i = 0; i < n_others; i++)
                for (unsigned v = 0; v < vectors; v++)
                        client_expect(f, sock, others[i], true);
}

static unsigned count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        unsigned n = 0;

        assert_non_null(d);
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static void close_all(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                close(fds[i]);
}

/* Two peers, A (id 0) then B (id 1), each with the whole setup read, and each other's vectors. */
struct pair {
        int a, b;
        int a_own[VECTORS], b_own[VECTORS], a_to_b[VECTORS], b_to_a[VECTORS];
};

static void pair_admit(struct fixture *f, struct pair *p) {
        assert_int_equal(ivshmem_server_expect(f->server, "dom-a", getpid(), -1), 0);
        assert_int_equal(ivshmem_server_expect(f->server, "dom-a", getpid(), -1), -EEXIST);
        p->a = client_connect(f);
        client_read_setup(f, p->a, 0, VECTORS, NULL, 0, p->a_own);
        assert_int_equal(ivshmem_server_expect(f->server, "dom-a", getpid(), -1), -EEXIST);
        assert_int_equal(ivshmem_server_expect(f->server, "dom-b", getpid(), -1), 0);
        p->b = client_connect(f);
        client_read_setup(f, p->b, 1, VECTORS, NULL, 0, p->b_own);
        /* Then A's vectors, in vector order: QEMU counts them. */
        for (unsigned v = 0; v < VECTORS; v++)
                assert_int_equal(client_read(f, p->b, &p->b_to_a[v]), 0);
        for (unsigned v = 0; v < VECTORS; v++)
                assert_int_equal(client_read(f, p->a, &p->a_to_b[v]), 1);
}

/* Closes what the clients hold; a or b < 0: closed already. */
static void pair_close(struct pair *p) {
        close_all(p->a_own, VECTORS);
        close_all(p->b_own, VECTORS);
        close_all(p->a_to_b, VECTORS);
        close_all(p->b_to_a, VECTORS);
        if (p->a >= 0)
                close(p->a);
        if (p->b >= 0)
                close(p->b);
}

static void test_admit_two(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, VECTORS);
        struct pair p;
        uint64_t one = 1, got = 0;
        uint16_t id;

        server_start(f, &c);
        pair_admit(f, &p);
        assert_int_equal(f->joined, 2);
        client_expect_quiet(f, p.a);
        client_expect_quiet(f, p.b);
        assert_int_equal(ivshmem_server_peer_id(f->server, "dom-b", &id), 0);
        assert_int_equal(id, 1);

        /* B ringing A's vector 1 wakes A's own vector 1, and only that one. */
        assert_int_equal(write(p.b_to_a[1], &one, sizeof(one)), sizeof(one));
        assert_int_equal(read(p.a_own[1], &got, sizeof(got)), sizeof(got));
        assert_int_equal(got, 1);
        assert_int_equal(read(p.a_own[0], &got, sizeof(got)), -1);
        assert_int_equal(errno, EAGAIN);
        assert_int_equal(write(p.a_to_b[0], &one, sizeof(one)), sizeof(one));
        assert_int_equal(read(p.b_own[0], &got, sizeof(got)), sizeof(got));
        /* The host rings B. */
        assert_int_equal(ivshmem_server_ring(f->server, 1, 0), 0);
        assert_int_equal(read(p.b_own[0], &got, sizeof(got)), sizeof(got));
        assert_int_equal(ivshmem_server_ring(f->server, 1, VECTORS), -EINVAL);
        assert_int_equal(ivshmem_server_ring(f->server, 7, 0), -ENOENT);
        assert_int_equal(f->refused, 0);
        pair_close(&p);
}

/* Admission by pidfd: the expected process named by its pidfd. */
static void test_admit_by_pidfd(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, 1);
        int pidfd, own, a;

        skip_without_pidfds();
        pidfd = (int) syscall(SYS_pidfd_open, getpid(), 0);
        assert_true(pidfd >= 0);
        c.next_id = 7;
        server_start(f, &c);
        assert_int_equal(ivshmem_server_expect(f->server, "dom-a", 0, pidfd), 0);
        close(pidfd);
        a = client_connect(f);
        client_read_setup(f, a, 7, 1, NULL, 0, &own);
        assert_int_equal(ivshmem_server_next_id(f->server), 8);
        close(own);
        close(a);
}

static void test_refusal_held(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, VECTORS);
        unsigned before;
        int x;

        server_start(f, &c);
        before = count_fds();
        /* Expected under another pid: this process is not it. */
        assert_int_equal(ivshmem_server_expect(f->server, "dom-a", getppid(), -1), 0);
        x = client_connect(f);
        client_expect(f, x, -1, false);
        assert_int_equal(f->refused, 1);
        assert_int_equal(f->refused_pid, getpid());
        assert_int_equal(f->refused_uid, getuid());
        assert_int_equal(f->last_refusal, IVSHMEM_REFUSED_UNEXPECTED);
        assert_string_equal(ivshmem_refusal_to_string(f->last_refusal), "unexpected");
        /* Held: no EOF while the client keeps it open. */
        client_expect_quiet(f, x);
        assert_int_equal(f->joined, 0);
        assert_int_equal(ivshmem_server_n_peers(f->server), 0);

        /* The client closes: so does the server (its socket end leaves the fd table). */
        close(x);
        for (int i = 0; i < MAX_SPINS && count_fds() != before; i++)
                spin(f);
        assert_int_equal(count_fds(), before);
        /* The expectation was not used up by someone else's connection. */
        assert_int_equal(ivshmem_server_unexpect(f->server, "dom-a"), 0);
        assert_int_equal(ivshmem_server_unexpect(f->server, "dom-a"), -ENOENT);
}

static void test_refusal_hold_timeout(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, VECTORS);
        int64_t v;
        int x, fd, k = -EAGAIN;

        c.hold_timeout_usec = 1000;
        server_start(f, &c);
        x = client_connect(f);
        client_expect(f, x, -1, false);
        /* The hold ends in EOF, not in a second message. */
        for (int i = 0; i < MAX_SPINS && k == -EAGAIN; i++) {
                spin(f);
                k = client_try_read(x, &v, &fd);
        }
        assert_int_equal(k, 0);
        assert_int_equal(f->refused, 1);
        close(x);
}

static void test_ids_not_reissued(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, VECTORS);
        int own[VECTORS], a, b;

        server_start(f, &c);
        assert_int_equal(ivshmem_server_expect(f->server, "dom-a", getpid(), -1), 0);
        a = client_connect(f);
        client_read_setup(f, a, 0, VECTORS, NULL, 0, own);
        close_all(own, VECTORS);
        close(a);
        for (int i = 0; i < MAX_SPINS && f->gone == 0; i++)
                spin(f);
        assert_int_equal(f->gone, 1);
        assert_int_equal(f->last_departure, IVSHMEM_GONE_CLOSED);
        assert_int_equal(ivshmem_server_n_peers(f->server), 0);

        /* The same domain comes back: a new id, not 0. */
        assert_int_equal(ivshmem_server_expect(f->server, "dom-a", getpid(), -1), 0);
        b = client_connect(f);
        client_read_setup(f, b, 1, VECTORS, NULL, 0, own);
        assert_int_equal(ivshmem_server_next_id(f->server), 2);
        close_all(own, VECTORS);
        close(b);
}

static void test_ids_exhausted(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, VECTORS);
        int own[VECTORS], a, x;

        c.next_id = IVSHMEM_ID_LIMIT - 1;
        server_start(f, &c);
        assert_int_equal(ivshmem_server_expect(f->server, "dom-a", getpid(), -1), 0);
        a = client_connect(f);
        client_read_setup(f, a, 65535, VECTORS, NULL, 0, own);
        assert_int_equal(ivshmem_server_expect(f->server, "dom-b", getpid(), -1), 0);
        x = client_connect(f);
        client_expect(f, x, -1, false);
        assert_int_equal(f->last_refusal, IVSHMEM_REFUSED_IDS_EXHAUSTED);
        close_all(own, VECTORS);
        close(a);
        close(x);
}

static void test_remove_peer(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, VECTORS);
        struct pair p;
        unsigned before;

        server_start(f, &c);
        pair_admit(f, &p);
        before = count_fds();
        assert_int_equal(ivshmem_server_remove_peer(f->server, 1, IVSHMEM_GONE_REMOVED), 0);
        /* A hears that 1 is gone: its id without an fd. */
        client_expect(f, p.a, 1, false);
        client_expect_quiet(f, p.a);
        /* The server's copies of B's eventfds and B's pidfd are closed; B's connection is held. */
        assert_int_equal(count_fds(), before - VECTORS - 1);
        client_expect_quiet(f, p.b);
        assert_int_equal(f->gone, 1);
        assert_int_equal(f->last_departure, IVSHMEM_GONE_REMOVED);
        assert_int_equal(ivshmem_server_remove_peer(f->server, 1, IVSHMEM_GONE_REMOVED), -ENOENT);
        assert_int_equal(ivshmem_server_ring(f->server, 1, 0), -ENOENT);
        /* B closing its held connection is no second departure. */
        close(TAKE_FD(p.b));
        for (int i = 0; i < 5; i++)
                spin(f);
        assert_int_equal(f->gone, 1);
        /* The server's end of it, and ours. */
        assert_int_equal(count_fds(), before - VECTORS - 3);
        pair_close(&p);
}

/* A paused domain's connection queues what it is sent (a newcomer's vectors) until resumed. */
static void test_pause_domain(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, VECTORS);
        int own[VECTORS], from_c[VECTORS], cc;
        struct pair p;
        size_t queued = 0;

        server_start(f, &c);
        pair_admit(f, &p);
        assert_int_equal(ivshmem_server_pause_domain(f->server, "dom-a", true), 0);
        assert_int_equal(ivshmem_server_pause_domain(f->server, "dom-x", true), -ENOENT);
        assert_int_equal(ivshmem_server_expect(f->server, "dom-c", getpid(), -1), 0);
        cc = client_connect(f);
        client_read_setup(f, cc, 2, VECTORS, (const int64_t[]) { 0, 1 }, 2, own);
        /* B hears of C at once; A does not while paused. */
        for (unsigned v = 0; v < VECTORS; v++) {
                int fd = -1;
                assert_int_equal(client_read(f, p.b, &fd), 2);
                close(fd);
        }
        client_expect_quiet(f, p.a);
        assert_int_equal(ivshmem_server_peer_queued(f->server, 0, &queued), 0);
        assert_int_equal(queued, VECTORS);
        assert_int_equal(ivshmem_server_pause_domain(f->server, "dom-a", false), 0);
        for (unsigned v = 0; v < VECTORS; v++)
                assert_int_equal(client_read(f, p.a, &from_c[v]), 2);
        close_all(from_c, VECTORS);
        close_all(own, VECTORS);
        close(cc);
        pair_close(&p);
}

/* quiet_departures: nobody hears of a departure, but the server's copies go all the same. */
static void test_quiet_departure(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, VECTORS);
        struct pair p;
        unsigned before;

        c.quiet_departures = true;
        server_start(f, &c);
        pair_admit(f, &p);
        before = count_fds();
        assert_int_equal(ivshmem_server_remove_peer(f->server, 1, IVSHMEM_GONE_REMOVED), 0);
        client_expect_quiet(f, p.a);
        client_expect_quiet(f, p.b);
        assert_int_equal(count_fds(), before - VECTORS - 1);
        assert_int_equal(f->gone, 1);
        /* A leaving by closing its connection is as quiet. */
        close(TAKE_FD(p.a));
        for (int i = 0; i < 5; i++)
                spin(f);
        assert_int_equal(f->gone, 2);
        assert_int_equal(ivshmem_server_n_peers(f->server), 0);
        pair_close(&p);
}

static void test_bad_config(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, VECTORS);
        struct ivshmem_server *s = (struct ivshmem_server *) 0x1;
        struct stat st;
        int odd = memfd_of_size(3u << 12);

        c.memfd = odd;
        assert_int_equal(ivshmem_server_new(f->event, &c, &s), -EINVAL);
        c = config_of(f, 0);
        assert_int_equal(ivshmem_server_new(f->event, &c, &s), -EINVAL);
        c = config_of(f, IVSHMEM_VECTORS_MAX + 1);
        assert_int_equal(ivshmem_server_new(f->event, &c, &s), -EINVAL);
        c = config_of(f, VECTORS);
        c.name = "a/b";
        assert_int_equal(ivshmem_server_new(f->event, &c, &s), -EINVAL);
        c = config_of(f, VECTORS);
        c.next_id = IVSHMEM_ID_LIMIT + 1;
        assert_int_equal(ivshmem_server_new(f->event, &c, &s), -EINVAL);
        /* Nothing was made, and the output was left alone. */
        assert_ptr_equal(s, (struct ivshmem_server *) 0x1);
        assert_int_equal(lstat(f->path, &st), -1);
        close(odd);
}

static void test_socket_file(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, VECTORS);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        int stale, file;

        /* A regular file in the way is not ours to remove. */
        file = open(f->path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        assert_true(file >= 0);
        close(file);
        assert_int_equal(ivshmem_server_new(f->event, &c, &f->server), -EEXIST);
        assert_int_equal(unlink(f->path), 0);

        /* A stale socket (a server killed before) is replaced. */
        stale = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
        assert_int_equal(bind(stale, (struct sockaddr *) &sa, sizeof(sa)), 0);
        close(stale);
        if (geteuid() == 0)
                c.socket_gid = 64055;
        server_start(f, &c);
        assert_int_equal(lstat(f->path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0660);
        if (geteuid() == 0) {
                assert_int_equal(st.st_uid, 0);
                assert_int_equal(st.st_gid, 64055);
        }
        ivshmem_server_free(f->server);
        f->server = NULL;
        assert_int_equal(lstat(f->path, &st), -1);
}

/* A peer joins and leaves at once without reading anything: 2 * vectors + 1 messages to the others. */
static void churn_one_peer(struct fixture *f, unsigned i) {
        char domain[32];
        unsigned joined = f->joined;
        uint16_t id;
        int j;

        snprintf(domain, sizeof(domain), "dom-j%u", i);
        assert_int_equal(ivshmem_server_expect(f->server, domain, getpid(), -1), 0);
        j = client_connect(f);
        for (int k = 0; k < MAX_SPINS && f->joined == joined; k++)
                spin(f);
        assert_int_equal(f->joined, joined + 1);
        close(j);
        for (int k = 0; k < MAX_SPINS && ivshmem_server_peer_id(f->server, domain, &id) == 0; k++)
                spin(f);
        assert_int_equal(ivshmem_server_peer_id(f->server, domain, &id), -ENOENT);
}

static void test_stuck_client(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, IVSHMEM_VECTORS_MAX);
        int a_own[IVSHMEM_VECTORS_MAX], c_own[IVSHMEM_VECTORS_MAX];
        size_t queued = 0;
        unsigned rounds = 0, drained = 0;
        int64_t v;
        int a, x, fd;

        server_start(f, &c);
        assert_int_equal(ivshmem_server_expect(f->server, "dom-a", getpid(), -1), 0);
        a = client_connect(f);
        client_read_setup(f, a, 0, IVSHMEM_VECTORS_MAX, NULL, 0, a_own);
        /* A stops reading; peers come and go until its socket is full and the server queues for it. */
        while (queued == 0) {
                assert_true(rounds < 1000);
                churn_one_peer(f, rounds++);
                assert_int_equal(ivshmem_server_peer_queued(f->server, 0, &queued), 0);
        }
        /* The server still serves everyone else at once. */
        assert_int_equal(ivshmem_server_expect(f->server, "dom-c", getpid(), -1), 0);
        x = client_connect(f);
        client_read_setup(f, x, rounds + 1, IVSHMEM_VECTORS_MAX, (const int64_t[]) { 0 }, 1, c_own);
        /* A reads again: everything queued reaches it, ending with C's vectors. */
        for (int i = 0; i < MAX_SPINS; i++) {
                int k = client_try_read(a, &v, &fd);
                if (k == -EAGAIN) {
                        assert_int_equal(ivshmem_server_peer_queued(f->server, 0, &queued), 0);
                        if (queued == 0 && drained > 0 && v == rounds + 1)
                                break;
                        spin(f);
                        continue;
                }
                assert_int_equal(k, 1);
                drained++;
                if (fd >= 0)
                        close(fd);
        }
        assert_int_equal(v, rounds + 1);
        assert_int_equal(queued, 0);
        assert_true(drained >= rounds * (IVSHMEM_VECTORS_MAX + 1));
        close_all(a_own, IVSHMEM_VECTORS_MAX);
        close_all(c_own, IVSHMEM_VECTORS_MAX);
        close(a);
        close(x);
}

/* A peer that never reads again is dropped from the group when its queue passes the limit, not before. */
static void test_queue_limit(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, IVSHMEM_VECTORS_MAX);
        int a_own[IVSHMEM_VECTORS_MAX];
        unsigned rounds = 0;
        int a;

        c.max_queue = 3 + 2 * IVSHMEM_VECTORS_MAX;
        server_start(f, &c);
        assert_int_equal(ivshmem_server_expect(f->server, "dom-a", getpid(), -1), 0);
        a = client_connect(f);
        client_read_setup(f, a, 0, IVSHMEM_VECTORS_MAX, NULL, 0, a_own);
        while (ivshmem_server_n_peers(f->server) > 0) {
                assert_true(rounds < 1000);
                churn_one_peer(f, rounds++);
        }
        assert_int_equal(f->overflowed, 1);
        assert_int_equal(f->overflowed_id, 0);
        /* Dropped from the group, but its connection is held, never closed first. */
        assert_true(client_drain(f, a) > 0);
        client_expect_quiet(f, a);
        close_all(a_own, IVSHMEM_VECTORS_MAX);
        close(a);
}

/* Stands in for the fd store: copies kept by name, taken back once. */
struct store {
        char names[16][96];
        int fds[16];
        size_t n;
};

static int store_keep(void *userdata, const char *name, int fd) {
        struct store *st = userdata;

        assert_true(st->n < ELEMENTSOF(st->fds));
        snprintf(st->names[st->n], sizeof(st->names[0]), "%s", name);
        st->fds[st->n] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        assert_true(st->fds[st->n++] >= 0);
        return 0;
}

static int store_take(void *userdata, const char *name, int *ret_fd) {
        struct store *st = userdata;

        for (size_t i = 0; i < st->n; i++)
                if (strcmp(st->names[i], name) == 0) {
                        *ret_fd = st->fds[i];
                        st->n--;
                        memmove(st->names[i], st->names[st->n], sizeof(st->names[0]));
                        st->fds[i] = st->fds[st->n];
                        return 0;
                }
        return -ENOENT;
}

/* Takes name back from the store, or fails. */
static int store_expect(struct store *st, const char *name) {
        int fd = -1;

        if (store_take(st, name, &fd) < 0)
                fail_msg("%s not kept", name);
        return fd;
}

static void test_export_fds(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, 1);
        struct store st = {};
        uint64_t one = 1, got;
        int own, a, fd;
        uint16_t id;
        const char *domain;
        const char *others[] = { "test-group-listen", "test-group-p5-conn", "test-group-p5-pid" };

        c.next_id = 5;
        server_start(f, &c);
        assert_int_equal(ivshmem_server_expect(f->server, "dom-a", getpid(), -1), 0);
        a = client_connect(f);
        client_read_setup(f, a, 5, 1, NULL, 0, &own);
        assert_int_equal(ivshmem_server_export_fds(f->server, store_keep, &st), 0);
        assert_int_equal(st.n, 2 + 3);
        fd = store_expect(&st, "test-group-mem");
        assert_true(same_file(fd, f->memfd));
        close(fd);
        fd = store_expect(&st, "test-group-p5-v0");
        assert_int_equal(write(fd, &one, sizeof(one)), sizeof(one));
        assert_int_equal(read(own, &got, sizeof(got)), sizeof(got));
        close(fd);
        for (size_t i = 0; i < ELEMENTSOF(others); i++)
                close(store_expect(&st, others[i]));
        assert_int_equal(st.n, 0);
        assert_int_equal(ivshmem_server_peer_at(f->server, 0, &id, &domain), 0);
        assert_int_equal(id, 5);
        assert_string_equal(domain, "dom-a");
        assert_int_equal(ivshmem_server_peer_at(f->server, 1, &id, &domain), -ENOENT);
        close(own);
        close(a);
}


/*
 * A restart: the fds go to the store, the server is abandoned (as if brokerd died), and one is
 * restored from them: the connections stay up and are served on, ids go on from the mark.
 * lose_b: B's connection did not come back, so B is gone for A.
 */
static void restart(struct fixture *f, bool lose_b) {
        struct ivshmem_server_config c = config_of(f, VECTORS);
        struct ivshmem_peer_record records[2];
        struct store st = {};
        struct stat sb;
        struct pair p;
        int c_own[VECTORS], c_to_a[VECTORS];
        uint64_t one = 1, got;
        const char *domain;
        int x;

        server_start(f, &c);
        pair_admit(f, &p);

        assert_int_equal(ivshmem_server_export_fds(f->server, store_keep, &st), 0);
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(ivshmem_server_peer_at(f->server, i, &records[i].id, &domain), 0);
                records[i].domain = i == 0 ? "dom-a" : "dom-b";
                assert_string_equal(domain, records[i].domain);
        }
        c.next_id = ivshmem_server_next_id(f->server);
        ivshmem_server_abandon(f->server);
        f->server = NULL;
        /* The clients noticed nothing, and the socket file is still there. */
        client_expect_quiet(f, p.a);
        client_expect_quiet(f, p.b);
        assert_int_equal(lstat(f->path, &sb), 0);
        if (lose_b)
                close(store_expect(&st, "test-group-p1-conn"));

        close(store_expect(&st, "test-group-mem")); /* the memfd comes from the config */
        assert_int_equal(ivshmem_server_restore(f->event, &c, records, 2, store_take, &st, &f->server), 0);
        assert_int_equal(st.n, lose_b ? VECTORS + 1 : 0);
        close_all(st.fds, st.n);
        if (lose_b) {
                assert_int_equal(f->gone, 1);
                client_expect(f, p.a, 1, false);
                assert_int_equal(ivshmem_server_n_peers(f->server), 1);
        } else {
                /* The restored server serves the old connection: B's removal reaches A. */
                assert_int_equal(ivshmem_server_remove_peer(f->server, 1, IVSHMEM_GONE_REMOVED), 0);
                client_expect(f, p.a, 1, false);
        }
        /* A newcomer gets the next id, A's vectors, and rings the very eventfds A holds. */
        assert_int_equal(ivshmem_server_expect(f->server, "dom-c", getpid(), -1), 0);
        x = client_connect(f);
        client_read_setup(f, x, 2, VECTORS, NULL, 0, c_own);
        for (unsigned v = 0; v < VECTORS; v++)
                assert_int_equal(client_read(f, x, &c_to_a[v]), 0);
        for (unsigned v = 0; v < VECTORS; v++)
                client_expect(f, p.a, 2, true);
        assert_int_equal(write(c_to_a[1], &one, sizeof(one)), sizeof(one));
        assert_int_equal(read(p.a_own[1], &got, sizeof(got)), sizeof(got));

        pair_close(&p);
        close_all(c_own, VECTORS);
        close_all(c_to_a, VECTORS);
        close(x);
}

static void test_restore(void **state) {
        restart(*state, false);
}

static void test_restore_lost_peer(void **state) {
        restart(*state, true);
}

static void test_restore_bad_records(void **state) {
        struct fixture *f = *state;
        struct ivshmem_server_config c = config_of(f, VECTORS);
        struct ivshmem_peer_record above[] = { { 3, "dom-a" } }, unordered[] = { { 1, "dom-a" }, { 0, "dom-b" } };
        struct ivshmem_server *s = (struct ivshmem_server *) 0x1;
        struct store st = {};

        c.next_id = 3;
        assert_int_equal(ivshmem_server_restore(f->event, &c, above, 1, store_take, &st, &s), -EINVAL);
        assert_int_equal(ivshmem_server_restore(f->event, &c, unordered, 2, store_take, &st, &s), -EINVAL);
        assert_ptr_equal(s, (struct ivshmem_server *) 0x1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_admit_two, setup, teardown),
                cmocka_unit_test_setup_teardown(test_admit_by_pidfd, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refusal_held, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refusal_hold_timeout, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ids_not_reissued, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ids_exhausted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_remove_peer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_quiet_departure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_pause_domain, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
                cmocka_unit_test_setup_teardown(test_socket_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stuck_client, setup, teardown),
                cmocka_unit_test_setup_teardown(test_queue_limit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_export_fds, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restore, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restore_lost_peer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_restore_bad_records, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
