/* SPDX-License-Identifier: Apache-2.0 */
#include "util/pidfd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "util/macro.h"

/* Keeps pidfds clear of 0..2, so that a zero-initialised field never names one. */
static int fd_move_high(int fd) {
        int high;

        if (fd >= 3)
                return fd;
        high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        close(fd);
        return high < 0 ? negative_errno() : high;
}

int pidfd_of_peer(int sock, pid_t fallback_pid, int *ret) {
        int fd = -EBADF;
        socklen_t len = sizeof(fd);

        if (getsockopt(sock, SOL_SOCKET, SO_PEERPIDFD, &fd, &len) < 0) {
                if (errno != ENOPROTOOPT && errno != EINVAL)
                        return negative_errno();
                if (fallback_pid <= 0)
                        return -ESRCH;
                /* O_CLOEXEC is implied. */
                fd = (int) syscall(SYS_pidfd_open, fallback_pid, 0);
                if (fd < 0)
                        return negative_errno();
        } else if (len != sizeof(fd) || fd < 0)
                return -EIO;
        fd = fd_move_high(fd);
        if (fd < 0)
                return fd;
        *ret = fd;
        return 0;
}

int pidfd_exited(int pidfd) {
        struct pollfd p = { .fd = pidfd, .events = POLLIN };
        int k = poll(&p, 1, 0);

        if (k < 0)
                return negative_errno();
        return k > 0 && (p.revents & (POLLIN | POLLHUP | POLLNVAL)) ? 1 : 0;
}

/*
 * /proc/<pid>/... could not be opened: -ESRCH if the process exited, else -EACCES (hidden from us,
 * e.g. ProtectProc=invisible for another user's process): never mistake hidden for gone.
 */
static int proc_open_failed(int pidfd) {
        if (errno != ENOENT)
                return negative_errno();
        return pidfd_exited(pidfd) == 1 ? -ESRCH : -EACCES;
}

int pidfd_pid(int pidfd, pid_t *ret) {
        char path[64], line[128];
        FILE *f;
        long pid = 0;
        bool found = false;

        snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
        f = fopen(path, "re");
        if (!f)
                return negative_errno();
        while (fgets(line, sizeof(line), f))
                if (sscanf(line, "Pid: %ld", &pid) == 1) {
                        found = true;
                        break;
                }
        fclose(f);
        if (!found)
                return -EBADF;
        if (pid <= 0)
                return -ESRCH;
        *ret = (pid_t) pid;
        return 0;
}

int pidfd_reopen(int pidfd, pid_t pid, int *ret) {
        int fd, k;

        if (pid <= 0) {
                k = pidfd_pid(pidfd, &pid);
                if (k < 0)
                        return k;
        }
        fd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (fd < 0)
                return negative_errno();
        /* An exited process keeps its pid until it is reaped: still running now, it was the one opened. */
        k = pidfd_exited(pidfd);
        if (k != 0) {
                close(fd);
                return k < 0 ? k : -ESRCH;
        }
        fd = fd_move_high(fd);
        if (fd < 0)
                return fd;
        *ret = fd;
        return 0;
}

int pidfd_stopped(int pidfd) {
        char path[64], buf[512], *p;
        pid_t pid = 0;
        ssize_t n;
        int fd, k;

        k = pidfd_pid(pidfd, &pid);
        if (k < 0)
                return k;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return proc_open_failed(pidfd);
        n = read(fd, buf, sizeof(buf) - 1);
        k = n < 0 ? negative_errno() : 0;
        close(fd);
        if (k < 0)
                return k;
        buf[n] = 0;
        /* "pid (comm) S ...": comm may hold anything, so the state follows the last ')'. */
        p = strrchr(buf, ')');
        if (!p || p[1] != ' ')
                return -EIO;
        /* The pid could have been reused between fdinfo and stat: only a live pidfd vouches for it. */
        k = pidfd_exited(pidfd);
        if (k != 0)
                return k < 0 ? k : -ESRCH;
        return p[2] == 'T' || p[2] == 't';
}

int pidfd_signal(int pidfd, int sig) {
        if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0)
                return negative_errno();
        return 0;
}

int pidfd_wait(int pidfd, bool stopped, int timeout_ms) {
        for (int waited = 0;; waited++) {
                int k = pidfd_exited(pidfd);

                if (k == 0 && stopped)
                        k = pidfd_stopped(pidfd);
                if (k == -ESRCH)
                        return 1;
                if (k != 0)
                        return k;
                if (waited >= timeout_ms)
                        return 0;
                (void) nanosleep(&(struct timespec) { .tv_nsec = 1000000 }, NULL);
        }
}

static int fds_reach(int pidfd, pid_t pid, dev_t dev, ino_t ino) {
        char path[64];
        struct dirent *de;
        DIR *d;
        int found = 0;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
        d = opendir(path);
        if (!d)
                return proc_open_failed(pidfd);
        while (!found && (de = readdir(d))) {
                struct stat st;
                if (de->d_name[0] == '.')
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, 0) == 0 && st.st_dev == dev && st.st_ino == ino)
                        found = 1;
        }
        closedir(d);
        return found;
}

static int maps_reach(int pidfd, pid_t pid, dev_t dev, ino_t ino) {
        char path[64], *line = NULL;
        size_t len = 0;
        FILE *f;
        int found = 0;

        snprintf(path, sizeof(path), "/proc/%d/maps", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return proc_open_failed(pidfd);
        while (!found && getline(&line, &len, f) > 0) {
                unsigned maj, min;
                uint64_t inode;
                /* "start-end perms offset maj:min inode [path]" */
                if (sscanf(line, "%*s %*s %*s %x:%x %" SCNu64, &maj, &min, &inode) == 3 &&
                    makedev(maj, min) == dev && inode == (uint64_t) ino)
                        found = 1;
        }
        free(line);
        fclose(f);
        return found;
}

int pidfd_reaches_file(int pidfd, dev_t dev, ino_t ino) {
        pid_t pid = 0;
        int k, alive;

        k = pidfd_pid(pidfd, &pid);
        if (k < 0)
                return k;
        k = fds_reach(pidfd, pid, dev, ino);
        if (k == 0)
                k = maps_reach(pidfd, pid, dev, ino);
        /* What was read is this process's only if it still lives (its pid cannot have been reused). */
        alive = pidfd_exited(pidfd);
        if (alive != 0)
                return alive < 0 ? alive : -ESRCH;
        return k;
}
