/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Ownership helpers shared by every module.
 * _cleanup_(xfreep) frees on scope exit; TAKE_PTR()/TAKE_FD() steal a value so the
 * cleanup does nothing, which keeps every early return leak-free.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _warn_unused_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

#define TAKE_PTR(p)                             \
        ({                                      \
                __typeof__(p) *_pp_ = &(p);     \
                __typeof__(p) _p_ = *_pp_;      \
                *_pp_ = NULL;                   \
                _p_;                            \
        })

#define TAKE_FD(fd)                             \
        ({                                      \
                int *_pfd_ = &(fd);             \
                int _fd_ = *_pfd_;              \
                *_pfd_ = -EBADF;                \
                _fd_;                           \
        })

static inline void xfreep(void *p) {
        free(*(void **)p);
}

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}

/* Declares a cleanup function `funcp(type **)` for a free function `func(type *)`. */
#define DEFINE_CLEANUP(type, func)                      \
        static inline void func##p(type **p) {          \
                if (*p)                                 \
                        func(*p);                       \
        }

/* Return the negative errno of the last failed libc call, never 0. */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        for (; *a && *a == *b; a++, b++)
                ;
        return *a == *b;
}
