/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which process is a domain's QEMU: libvirt (qemu:///system) writes its pid to
 * /run/libvirt/qemu/<domain>.pid (root's, in root's directory), and starts it with
 * "-name guest=<domain>,...". The pid is pinned by a pidfd, its command line checked, and the
 * pidfd checked again, so a pid reused in between is not taken for the domain's QEMU. Under
 * ProtectProc=invisible (brokerd.service) another user's process is not in /proc at all: then
 * the pid file, which only root writes, is all there is, and the command line is not checked.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "backend/libvirt-internal.h"
#include "util/macro.h"
#include "util/names.h"
#include "util/num.h"
#include "util/pidfd.h"

#define LIBVIRT_QEMU_RUN_DIR "/run/libvirt/qemu"
/* QEMU's command lines under libvirt run to a few KiB; "-name" comes early. */
#define CMDLINE_MAX (64 * 1024)

static int read_small_file(const char *path, char *buf, size_t n, size_t *ret_len) {
        _cleanup_(closep) int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        size_t len = 0;

        if (fd < 0)
                return negative_errno();
        while (len < n) {
                ssize_t k = read(fd, buf + len, n - len);
                if (k < 0)
                        return negative_errno();
                if (k == 0)
                        break;
                len += (size_t) k;
        }
        *ret_len = len;
        return 0;
}

static int pid_of_domain(const char *domain, pid_t *ret) {
        char path[PATH_MAX], buf[32];
        uint64_t pid;
        size_t len;
        int k;

        snprintf(path, sizeof(path), LIBVIRT_QEMU_RUN_DIR "/%s.pid", domain);
        k = read_small_file(path, buf, sizeof(buf) - 1, &len);
        if (k < 0)
                return k == -ENOENT ? -ESRCH : k;
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
                len--;
        buf[len] = 0;
        if (num_parse_u64(buf, &pid) < 0 || pid < 2 || pid > INT_MAX)
                return -EBADMSG;
        *ret = (pid_t) pid;
        return 0;
}

/* Whether the command line (NUL-separated) has "-name" followed by "guest=<domain>[,...]". */
static bool cmdline_names(const char *cmd, size_t len, const char *domain) {
        size_t dlen = strlen(domain);

        for (size_t i = 0; i < len;) {
                const char *arg = cmd + i;
                size_t alen = strnlen(arg, len - i);

                if (strcmp(arg, "-name") == 0 && i + alen + 1 < len) {
                        const char *v = arg + alen + 1;
                        return strncmp(v, "guest=", 6) == 0 && strncmp(v + 6, domain, dlen) == 0 &&
                               (v[6 + dlen] == ',' || v[6 + dlen] == 0);
                }
                i += alen + 1;
        }
        return false;
}

int libvirt_qemu_pidfd(const char *domain, int *ret) {
        _cleanup_(closep) int pidfd = -EBADF;
        _cleanup_(xfreep) char *cmd = NULL;
        char path[64];
        pid_t pid, now;
        size_t len;
        int k;

        if (!name_is_valid(domain) || !ret)
                return -EINVAL;
        k = pid_of_domain(domain, &pid);
        if (k < 0)
                return k;
        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0)
                return errno == ESRCH ? -ESRCH : negative_errno();
        cmd = malloc(CMDLINE_MAX);
        if (!cmd)
                return -ENOMEM;
        snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) pid);
        k = read_small_file(path, cmd, CMDLINE_MAX, &len);
        if (k < 0 && k != -ENOENT && k != -EACCES)
                return k;
        if (k >= 0 && !cmdline_names(cmd, len, domain))
                return -ESRCH; /* the pid file outlived its QEMU, and the pid went to someone else */
        /* Not in /proc although the pidfd says it runs: hidden from us (ProtectProc=invisible). */
        /* The command line was read from the process the pidfd pins, not from a successor. */
        k = pidfd_pid(pidfd, &now);
        if (k < 0 || now != pid)
                return -ESRCH;
        if (fcntl(pidfd, F_SETFD, FD_CLOEXEC) < 0)
                return negative_errno();
        *ret = TAKE_FD(pidfd);
        return 0;
}
