/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "util/random.h"

/* Sixteen tokens' worth: one getrandom() for sixteen shares of one peer. */
#define RANDOM_RESERVE 256

static unsigned char reserve[RANDOM_RESERVE];
static size_t reserve_left;

static int refill(void) {
        ssize_t n;

        do
                n = getrandom(reserve, sizeof(reserve), 0);
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t) sizeof(reserve))
                return n < 0 ? -errno : -EIO;
        reserve_left = sizeof(reserve);
        return 0;
}

void random_reset(void) {
        explicit_bzero(reserve, sizeof(reserve));
        reserve_left = 0;
}

int random_bytes(void *out, size_t n) {
        unsigned char *p = out;

        while (n > 0) {
                size_t take;
                unsigned char *from;

                if (reserve_left == 0) {
                        int r = refill();
                        if (r < 0)
                                return r;
                }
                take = n < reserve_left ? n : reserve_left;
                from = reserve + sizeof(reserve) - reserve_left;
                memcpy(p, from, take);
                explicit_bzero(from, take);
                reserve_left -= take;
                p += take;
                n -= take;
        }
        return 0;
}
