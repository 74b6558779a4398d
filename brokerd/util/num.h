/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * 64-bit quantities as they appear in brokerd's files and requests.
 * Accepted spellings: a non-negative JSON integer, or a string holding a decimal number,
 * a hex number ("0x80000000"), or a number with a binary suffix ("4KiB", "2MiB", "1GiB",
 * "1TiB", "1PiB", "1EiB"). Anything else, or a value that does not fit in 64 bits, is
 * refused. Parsers return 0 or -EINVAL/-ERANGE and leave *ret untouched on failure.
 */
#include <stdbool.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>

struct json_object;

#define NUM_FMT_MAX 32

int num_parse_u64(const char *s, uint64_t *ret);
/* Plain decimal digits only (a count or an id on a command line): no hex, no suffix, no sign. */
int num_parse_decimal(const char *s, uint64_t *ret);
int num_from_json(struct json_object *o, uint64_t *ret);
/*
 * num_from_json() for JSON whose text was not scanned for integer literals past 64 bits
 * (json-c saturates them to 2^64-1): 2^64-1 as an integer is refused with -ERANGE.
 */
int num_from_json_unscanned(struct json_object *o, uint64_t *ret);

static inline bool num_is_pow2(uint64_t x) {
        return x != 0 && (x & (x - 1)) == 0;
}

/* *ret = base + size as an exclusive end; -ERANGE if that does not fit below 2^64. */
static inline int num_range_end(uint64_t base, uint64_t size, uint64_t *ret) {
        uint64_t end;
        if (__builtin_add_overflow(base, size, &end))
                return -ERANGE;
        *ret = end;
        return 0;
}

/* Round x up to a multiple of align (a power of two); -ERANGE on overflow. */
static inline int num_align_up(uint64_t x, uint64_t align, uint64_t *ret) {
        uint64_t r;
        if (__builtin_add_overflow(x, align - 1, &r))
                return -ERANGE;
        *ret = r & ~(align - 1);
        return 0;
}

static inline bool num_is_aligned(uint64_t x, uint64_t align) {
        return (x & (align - 1)) == 0;
}

static inline bool num_ranges_overlap(uint64_t a_base, uint64_t a_end, uint64_t b_base, uint64_t b_end) {
        return a_base < b_end && b_base < a_end;
}

/*
 * A duration: digits with an optional unit ms, s, m, min, h or d, in microseconds. A plain
 * number is seconds; *ret_has_unit (may be NULL) says whether a unit was written, for callers
 * that give plain numbers another meaning. -EINVAL or -ERANGE, *ret untouched on failure.
 */
int num_parse_duration_usec(const char *s, uint64_t *ret, bool *ret_has_unit);

/* "2MiB" when v is an exact multiple of a binary unit, else "0x1234" (or "0"). */
const char *num_format_size(uint64_t v, char buf[static NUM_FMT_MAX]);
/* Always "0x…" hex. */
const char *num_format_addr(uint64_t v, char buf[static NUM_FMT_MAX]);
