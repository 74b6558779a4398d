/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * brokerd's stable error codes. Each has a symbolic name that clients match on
 * ("not_aligned"), which never changes once released, and an errno that functions
 * return (negated). A refused request changes nothing. Placement failures for lack
 * of room are not errors: they are a "bounce" answer (see placement.h).
 */
#include <stddef.h>

#include "macro.h"

enum broker_code {
        BROKER_OK = 0,
        BROKER_E_INVALID,             /* invalid_request: malformed or out-of-range argument */
        BROKER_E_LIMIT,               /* limit_exceeded: too many peers, label too long, ... */
        BROKER_E_UNKNOWN_DEVICE,      /* unknown_device */
        BROKER_E_NOT_DEVICE_OWNER,    /* not_device_owner: sharer does not drive that device */
        BROKER_E_FORBIDDEN,           /* forbidden: default deny, agent or share not allowed */
        BROKER_E_MULTI_PEER,          /* multi_peer_forbidden: >1 peer without multi_peer */
        BROKER_E_TOO_LARGE,           /* region_too_large: above the policy's max_region */
        BROKER_E_QUOTA,               /* quota_exceeded */
        BROKER_E_NOT_ALIGNED,         /* not_aligned */
        BROKER_E_BEYOND_DMA_MASK,     /* beyond_dma_mask */
        BROKER_E_NOT_DMA_REACHABLE,   /* not_dma_reachable: outside every DMA window */
        BROKER_E_RESERVED,            /* reserved_range: hits a reserved range or window */
        BROKER_E_NOT_IN_POOL,         /* not_in_pool */
        BROKER_E_NUMA_MISMATCH,       /* numa_mismatch */
        BROKER_E_OVERLAP,             /* overlaps_region: hits a live (or unreclaimed) region */
        BROKER_E_SIZE_UNSUPPORTED,    /* size_unsupported: the mapping backend cannot take it */
        BROKER_E_NO_SUCH_REGION,      /* no_such_region */
        BROKER_E_BAD_TOKEN,           /* invalid_token */
        BROKER_E_TOKEN_USED,          /* token_used */
        BROKER_E_WRONG_DOMAIN,        /* wrong_domain: token belongs to another domain */
        BROKER_E_BAD_STATE,           /* invalid_state: transition not allowed from here */
        BROKER_E_BACKEND,             /* backend_failed */
        BROKER_E_STORE,               /* store_failed */
        _BROKER_CODE_MAX,
};

#define BROKER_MESSAGE_MAX 256

struct broker_error {
        enum broker_code code;
        char message[BROKER_MESSAGE_MAX];
};

const char *broker_code_name(enum broker_code code);
/* The positive errno a code maps to. */
int broker_code_errno(enum broker_code code);
/* Fills err (which may be NULL) and returns -broker_code_errno(code). */
int broker_error_set(struct broker_error *err, enum broker_code code, const char *fmt, ...) _printf_(3, 4);
