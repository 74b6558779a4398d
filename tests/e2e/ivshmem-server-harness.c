/* SPDX-License-Identifier: Apache-2.0 */
/*
 * backend/ivshmem-server.h as a process, for tests/e2e/test_ivshmem_server.py: serves one group
 * on SOCKET with a sealed memfd of SIZE bytes and VECTORS vectors, and takes commands on stdin,
 * one per line:
 *   expect DOMAIN PID     -> "ok" or "error <errno name>"
 *   remove ID             -> "ok" or "error ..."
 *   ring ID VECTOR        -> "ok" or "error ..."
 *   fds ID PID            -> "fds N0 N1 ..." then "ok": the fd numbers in process PID that are
 *                            peer ID's vector eventfds (the same open files as the server's
 *                            copies, by kcmp), -1 where it has none; the numbers an unplug of
 *                            that peer's device leaves behind in its QEMU (guest-doorbells.md)
 *   quit (or EOF)
 * It reports on stdout, one line each: "ready", "joined ID DOMAIN", "gone ID DOMAIN REASON",
 * "refused PID UID REASON".
 * Usage: ivshmem-server-harness SOCKET SIZE VECTORS GID
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <systemd/sd-event.h>

#include "backend/ivshmem-server.h"

struct harness {
        sd_event *event;
        struct ivshmem_server *server;
        char line[256];
        size_t n_line;
};

/* The server's copies of one peer's vector eventfds, collected from ivshmem_server_export_fds(). */
struct peer_fds {
        char prefix[32]; /* "harness-p<id>-v" */
        int fds[IVSHMEM_VECTORS_MAX];
        unsigned n;
};

static int collect_vector_fd(void *userdata, const char *name, int fd) {
        struct peer_fds *p = userdata;
        size_t len = strlen(p->prefix);
        unsigned long v;
        char *end;

        if (strncmp(name, p->prefix, len) != 0)
                return 0;
        v = strtoul(name + len, &end, 10);
        if (*end || v >= IVSHMEM_VECTORS_MAX)
                return -EINVAL;
        p->fds[v] = fd;
        if (v + 1 > p->n)
                p->n = (unsigned) v + 1;
        return 0;
}

/* The number under which process pid holds the same open file as our fd, or -1. */
static int fd_in_process(pid_t pid, int fd) {
        char dir[64];
        DIR *d;
        int found = -1;

        snprintf(dir, sizeof(dir), "/proc/%d/fd", (int) pid);
        d = opendir(dir);
        if (!d)
                return -1;
        for (struct dirent *e; found < 0 && (e = readdir(d));) {
                char *end;
                long n = strtol(e->d_name, &end, 10);

                if (*end || end == e->d_name)
                        continue;
                if (syscall(SYS_kcmp, (pid_t) pid, getpid(), KCMP_FILE, (unsigned long) n, (unsigned long) fd) == 0)
                        found = (int) n;
        }
        closedir(d);
        return found;
}

static int print_peer_fds(struct harness *h, long id, long pid) {
        struct peer_fds p = { .n = 0 };
        char out[16 * IVSHMEM_VECTORS_MAX + 8] = "fds";
        int k;

        if (id < 0 || id > 65535 || pid <= 0)
                return -EINVAL;
        snprintf(p.prefix, sizeof(p.prefix), "harness-p%ld-v", id);
        k = ivshmem_server_export_fds(h->server, collect_vector_fd, &p);
        if (k < 0)
                return k;
        if (p.n == 0)
                return -ENOENT;
        for (unsigned v = 0; v < p.n; v++)
                snprintf(out + strlen(out), sizeof(out) - strlen(out), " %d", fd_in_process((pid_t) pid, p.fds[v]));
        printf("%s\n", out);
        return 0;
}

static void on_refused(void *userdata, pid_t pid, uid_t uid, enum ivshmem_refusal reason) {
        (void) userdata;
        printf("refused %d %d %s\n", (int) pid, (int) uid, ivshmem_refusal_to_string(reason));
}

static void on_joined(void *userdata, uint16_t id, const char *domain) {
        (void) userdata;
        printf("joined %u %s\n", id, domain);
}

static void on_gone(void *userdata, uint16_t id, const char *domain, enum ivshmem_departure reason) {
        (void) userdata;
        printf("gone %u %s %s\n", id, domain, ivshmem_departure_to_string(reason));
}

static void reply(int k) {
        if (k < 0)
                printf("error %s\n", strerror(-k));
        else
                printf("ok\n");
}

static void run_command(struct harness *h, char *cmd) {
        char domain[130];
        long a, b;

        if (sscanf(cmd, "expect %129s %ld", domain, &a) == 2)
                reply(ivshmem_server_expect(h->server, domain, (pid_t) a, -1));
        else if (sscanf(cmd, "remove %ld", &a) == 1)
                reply(a < 0 || a > 65535 ? -EINVAL : ivshmem_server_remove_peer(h->server, (uint16_t) a, IVSHMEM_GONE_REMOVED));
        else if (sscanf(cmd, "ring %ld %ld", &a, &b) == 2)
                reply(a < 0 || a > 65535 || b < 0 ? -EINVAL : ivshmem_server_ring(h->server, (uint16_t) a, (unsigned) b));
        else if (sscanf(cmd, "fds %ld %ld", &a, &b) == 2)
                reply(print_peer_fds(h, a, b));
        else if (strcmp(cmd, "quit") == 0)
                (void) sd_event_exit(h->event, 0);
        else
                reply(-EINVAL);
}

static int on_stdin(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct harness *h = userdata;
        ssize_t n;

        (void) s, (void) revents;
        n = read(fd, h->line + h->n_line, sizeof(h->line) - 1 - h->n_line);
        if (n <= 0)
                return sd_event_exit(h->event, 0);
        h->n_line += (size_t) n;
        h->line[h->n_line] = 0;
        for (char *nl; (nl = strchr(h->line, '\n'));) {
                *nl = 0;
                run_command(h, h->line);
                memmove(h->line, nl + 1, h->n_line - (size_t) (nl + 1 - h->line) + 1);
                h->n_line -= (size_t) (nl + 1 - h->line);
        }
        if (h->n_line == sizeof(h->line) - 1)
                h->n_line = 0; /* an overlong line: dropped */
        return 0;
}

int main(int argc, char **argv) {
        struct harness h = {};
        struct ivshmem_server_config c;
        sd_event_source *in = NULL;
        int memfd, k;

        if (argc != 5) {
                fprintf(stderr, "usage: %s SOCKET SIZE VECTORS GID\n", argv[0]);
                return 2;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        memfd = memfd_create("ivshmem-harness", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (memfd < 0 || ftruncate(memfd, strtoll(argv[2], NULL, 0)) < 0 ||
            fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
                perror("memfd");
                return 1;
        }
        c = (struct ivshmem_server_config) {
                .name = "harness",
                .socket_path = argv[1],
                .socket_gid = (gid_t) strtoul(argv[4], NULL, 10),
                .memfd = memfd,
                .vectors = (unsigned) strtoul(argv[3], NULL, 10),
                .callbacks = { .refused = on_refused, .joined = on_joined, .gone = on_gone, .userdata = &h },
        };
        k = sd_event_default(&h.event);
        if (k >= 0)
                k = ivshmem_server_new(h.event, &c, &h.server);
        close(memfd);
        if (k >= 0)
                k = sd_event_add_io(h.event, &in, STDIN_FILENO, EPOLLIN, on_stdin, &h);
        if (k < 0) {
                fprintf(stderr, "ivshmem-server-harness: %s\n", strerror(-k));
                return 1;
        }
        printf("ready\n");
        k = sd_event_loop(h.event);
        sd_event_source_unref(in);
        ivshmem_server_free(h.server);
        sd_event_unref(h.event);
        return k < 0 ? 1 : 0;
}
