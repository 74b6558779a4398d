/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * For unit tests that need pidfds: valgrind 3.19 does not know pidfd_open (it answers ENOSYS),
 * so under memcheck such a test skips instead of failing or hanging. Include after cmocka.h.
 */
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline void skip_without_pidfds(void) {
        int fd = (int) syscall(SYS_pidfd_open, getpid(), 0);

        if (fd < 0 && errno == ENOSYS)
                skip();
        if (fd >= 0)
                close(fd);
}
