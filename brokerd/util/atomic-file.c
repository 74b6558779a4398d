/* SPDX-License-Identifier: Apache-2.0 */
#include "util/atomic-file.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#include "util/macro.h"

int atomic_file_write(const char *path, mode_t mode, int (*fill)(FILE *f, const void *userdata), const void *userdata) {
        _cleanup_(fclosep) FILE *f = NULL;
        char tmp[PATH_MAX];
        int fd, k;

        if ((size_t) snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
                return -ENAMETOOLONG;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return negative_errno();
        f = fdopen(fd, "w");
        if (!f) {
                k = negative_errno();
                close(fd);
                (void) unlink(tmp);
                return k;
        }
        k = fill(f, userdata);
        if (k >= 0)
                k = fflush(f) == 0 && !ferror(f) ? 0 : -EIO;
        if (k >= 0 && rename(tmp, path) < 0)
                k = negative_errno();
        if (k < 0)
                (void) unlink(tmp);
        return k;
}
