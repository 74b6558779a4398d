/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The parts of bench-common.h that need only libc (the clock, whole sends, the program's name), so
 * that the data-plane cases also build statically for the e2e guests (tests/e2e/guest/guestbench.c).
 */
#include <errno.h>
#include <sys/socket.h>
#include <time.h>

#include "bench-common.h"

const char *bench_program = "bench";

uint64_t bench_now_nsec(void) {
        struct timespec ts;

        /* CLOCK_MONOTONIC cannot fail with a valid pointer. */
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000000) + (uint64_t) ts.tv_nsec;
}

int bench_send_all(int fd, const void *data, size_t len) {
        const char *p = data;

        while (len > 0) {
                ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}
