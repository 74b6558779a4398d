/* SPDX-License-Identifier: Apache-2.0 */
#include "fuzz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "util/diag.h"
#include "util/macro.h"

/* docs/examples/platform.json, so policies naming its devices get past the platform check. */
const char fuzz_example_platform[] =
        "{\"memory\": [{\"name\": \"bank0\", \"base\": \"0x0\", \"size\": \"16GiB\", \"numa_node\": 0},"
        "             {\"name\": \"bank1\", \"base\": \"0x400000000\", \"size\": \"16GiB\", \"numa_node\": 1}],"
        " \"reserved\": [{\"name\": \"firmware\", \"base\": \"0x0\", \"size\": \"1MiB\"},"
        "               {\"name\": \"acpi-tables\", \"base\": \"0xbff00000\", \"size\": \"1MiB\"},"
        "               {\"name\": \"msi-doorbell\", \"base\": \"0xfee00000\", \"size\": \"1MiB\"}],"
        " \"pools\": [{\"name\": \"net0\", \"base\": \"0x40000000\", \"size\": \"256MiB\", \"numa_node\": 0,"
        "             \"granule\": \"2MiB\", \"backing\": {\"kind\": \"memfd\"}},"
        "            {\"name\": \"small0\", \"base\": \"0x80000000\", \"size\": \"64MiB\", \"numa_node\": 0,"
        "             \"granule\": \"4KiB\", \"backing\": {\"kind\": \"memfd\"}},"
        "            {\"name\": \"gpu1\", \"base\": \"0x400000000\", \"size\": \"1GiB\", \"numa_node\": 1,"
        "             \"granule\": \"2MiB\", \"backing\": {\"kind\": \"memfd\"}}],"
        " \"devices\": [{\"name\": \"nic0\", \"owner\": \"hw0\", \"dma_mask_bits\": 32,"
        "               \"dma_windows\": [{\"base\": \"0x40000000\", \"size\": \"2GiB\"}]},"
        "              {\"name\": \"gpu0\", \"owner\": \"hw0\", \"dma_mask_bits\": 64},"
        "              {\"name\": \"blk0\", \"owner\": \"hw0\", \"dma_mask_bits\": 48, \"alignment\": \"64KiB\","
        "               \"reserved_windows\": [{\"name\": \"msi\", \"base\": \"0xfee00000\", \"size\": \"1MiB\"}]}]}";

_Noreturn void fuzz_fail(const char *file, int line, const char *expr) {
        fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", file, line, expr);
        /* abort(), not exit(): libFuzzer and the sanitizers treat it as a crash and keep the input. */
        abort();
}

int fuzz_file_open(struct fuzz_file *f, const char *name) {
        f->fd = memfd_create(name, MFD_CLOEXEC);
        if (f->fd < 0)
                return negative_errno();
        snprintf(f->path, sizeof(f->path), "/proc/self/fd/%d", f->fd);
        return 0;
}

int fuzz_file_set(struct fuzz_file *f, const void *data, size_t size) {
        const char *p = data;
        off_t off = 0;

        if (ftruncate(f->fd, 0) < 0)
                return negative_errno();
        while (size > 0) {
                ssize_t n = pwrite(f->fd, p, size, off);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                p += n;
                off += n;
                size -= (size_t) n;
        }
        return 0;
}

bool fuzz_check_load(int r, const void *ret, const void *sentinel, struct diag_list *diags, const char *what,
                     FILE *out) {
        diag_list_print(diags, what, out);
        if (r == 0) {
                fuzz_assert(ret != sentinel && ret);
                fuzz_assert(diag_count(diags, DIAG_ERROR) == 0);
        } else {
                fuzz_assert(ret == sentinel);
                fuzz_assert(r == -EINVAL || r == -EFBIG || r == -ENOMEM);
                fuzz_assert(r == -ENOMEM || diag_count(diags, DIAG_ERROR) > 0);
        }
        diag_list_clear(diags);
        return r == 0;
}
