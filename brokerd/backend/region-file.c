/* SPDX-License-Identifier: Apache-2.0 */
#include "backend/region-file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>

#include "util/macro.h"

int region_file_open(const char *path, int *ret) {
        _cleanup_(closep) int fd = -EBADF;
        int flags;

        fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        if (fd < 0)
                /* A symlink, a directory, a socket: not a region file. */
                return errno == ELOOP || errno == EISDIR || errno == ENXIO ? -EBADFD : negative_errno();
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
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
