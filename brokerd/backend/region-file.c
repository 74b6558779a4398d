/* SPDX-License-Identifier: Apache-2.0 */
#include "backend/region-file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>

#include "util/macro.h"

int region_file_open(const char *path, int *ret) {
        _cleanup_(closep) int fd = -EBADF;

        fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        if (fd < 0)
                /* A symlink, a directory, a socket: not a region file. */
                return errno == ELOOP || errno == EISDIR || errno == ENXIO ? -EBADFD : negative_errno();
        /* O_NONBLOCK was the only status flag we set (F_SETFL leaves the access mode alone):
         * clear it without reading the flags first, one system call a region at every start. */
        if (fcntl(fd, F_SETFL, 0) < 0)
                return negative_errno();
        *ret = TAKE_FD(fd);
        return 0;
}

int region_file_punch_out(int fd, uint64_t size) {
        void *p;

        if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t) size) >= 0)
                return 0;
        if (errno != EOPNOTSUPP)
                return negative_errno();

        /* A file system without hole punching: zero through a shared mapping instead. */
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED)
                return negative_errno();
        memset(p, 0, size);
        munmap(p, size);
        return 0;
}
