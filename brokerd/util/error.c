/* SPDX-License-Identifier: Apache-2.0 */
#include "error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

static const struct {
        const char *name;
        int errnum;
} codes[] = {
        [BROKER_OK] = { "ok", 0 },
        [BROKER_E_INVALID] = { "invalid_request", EINVAL },
        [BROKER_E_LIMIT] = { "limit_exceeded", E2BIG },
        [BROKER_E_UNKNOWN_DEVICE] = { "unknown_device", ENODEV },
        [BROKER_E_NOT_DEVICE_OWNER] = { "not_device_owner", EPERM },
        [BROKER_E_FORBIDDEN] = { "forbidden", EACCES },
        [BROKER_E_MULTI_PEER] = { "multi_peer_forbidden", EACCES },
        [BROKER_E_TOO_LARGE] = { "region_too_large", EFBIG },
        [BROKER_E_QUOTA] = { "quota_exceeded", EDQUOT },
        [BROKER_E_NOT_ALIGNED] = { "not_aligned", EINVAL },
        [BROKER_E_BEYOND_DMA_MASK] = { "beyond_dma_mask", ERANGE },
        [BROKER_E_NOT_DMA_REACHABLE] = { "not_dma_reachable", ERANGE },
        [BROKER_E_RESERVED] = { "reserved_range", EADDRNOTAVAIL },
        [BROKER_E_NOT_IN_POOL] = { "not_in_pool", EADDRNOTAVAIL },
        [BROKER_E_NUMA_MISMATCH] = { "numa_mismatch", EINVAL },
        [BROKER_E_OVERLAP] = { "overlaps_region", EBUSY },
        [BROKER_E_SIZE_UNSUPPORTED] = { "size_unsupported", EINVAL },
        [BROKER_E_NO_SUCH_REGION] = { "no_such_region", ENOENT },
        [BROKER_E_BAD_TOKEN] = { "invalid_token", ENOKEY },
        [BROKER_E_TOKEN_USED] = { "token_used", EALREADY },
        [BROKER_E_WRONG_DOMAIN] = { "wrong_domain", EACCES },
        [BROKER_E_BAD_STATE] = { "invalid_state", EBUSY },
        [BROKER_E_BACKEND] = { "backend_failed", EIO },
        [BROKER_E_STORE] = { "store_failed", EIO },
};
_Static_assert(sizeof(codes) / sizeof(codes[0]) == _BROKER_CODE_MAX, "a name and errno for every code");

const char *broker_code_name(enum broker_code code) {
        if ((unsigned) code >= _BROKER_CODE_MAX)
                return "unknown";
        return codes[code].name;
}

int broker_code_errno(enum broker_code code) {
        if ((unsigned) code >= _BROKER_CODE_MAX || code == BROKER_OK)
                return EIO;
        return codes[code].errnum;
}

int broker_error_set(struct broker_error *err, enum broker_code code, const char *fmt, ...) {
        if (err) {
                va_list ap;
                err->code = code;
                va_start(ap, fmt);
                vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
        }
        return -broker_code_errno(code);
}
