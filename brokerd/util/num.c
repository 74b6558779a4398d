/* SPDX-License-Identifier: Apache-2.0 */
#include "num.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

static const struct {
        const char *suffix;
        unsigned shift;
} units[] = {
        { "EiB", 60 }, { "PiB", 50 }, { "TiB", 40 }, { "GiB", 30 }, { "MiB", 20 }, { "KiB", 10 },
};

static int parse_digits(const char *s, size_t len, unsigned base, uint64_t *ret) {
        uint64_t v = 0;

        if (len == 0)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                unsigned d;
                char c = s[i];

                if (c >= '0' && c <= '9')
                        d = (unsigned) (c - '0');
                else if (base == 16 && c >= 'a' && c <= 'f')
                        d = (unsigned) (c - 'a' + 10);
                else if (base == 16 && c >= 'A' && c <= 'F')
                        d = (unsigned) (c - 'A' + 10);
                else
                        return -EINVAL;
                if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, d, &v))
                        return -ERANGE;
        }
        *ret = v;
        return 0;
}

int num_parse_decimal(const char *s, uint64_t *ret) {
        if (!s)
                return -EINVAL;
        return parse_digits(s, strlen(s), 10, ret);
}

int num_parse_u64(const char *s, uint64_t *ret) {
        size_t len;
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        len = strlen(s);

        if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
                r = parse_digits(s + 2, len - 2, 16, &v);
                if (r < 0)
                        return r;
                *ret = v;
                return 0;
        }

        for (size_t i = 0; i < (sizeof(units) / sizeof(units[0])); i++) {
                size_t sl = strlen(units[i].suffix);

                if (len > sl && strcmp(s + len - sl, units[i].suffix) == 0) {
                        r = parse_digits(s, len - sl, 10, &v);
                        if (r < 0)
                                return r;
                        if (v > (UINT64_MAX >> units[i].shift))
                                return -ERANGE;
                        *ret = v << units[i].shift;
                        return 0;
                }
        }

        r = parse_digits(s, len, 10, &v);
        if (r < 0)
                return r;
        *ret = v;
        return 0;
}

int num_parse_duration_usec(const char *s, uint64_t *ret, bool *ret_has_unit) {
        static const struct {
                const char *unit;
                uint64_t usec;
        } durations[] = {
                { "ms", UINT64_C(1000) },         { "s", UINT64_C(1000000) },
                { "m", UINT64_C(60000000) },      { "min", UINT64_C(60000000) },
                { "h", UINT64_C(3600000000) },    { "d", UINT64_C(86400000000) },
        };
        uint64_t v, mult = UINT64_C(1000000);
        size_t digits = 0;
        bool has_unit = false;
        int r;

        if (!s)
                return -EINVAL;
        while (s[digits] >= '0' && s[digits] <= '9')
                digits++;
        r = parse_digits(s, digits, 10, &v);
        if (r < 0)
                return r;
        if (s[digits]) {
                size_t i;
                for (i = 0; i < sizeof(durations) / sizeof(durations[0]); i++)
                        if (strcmp(s + digits, durations[i].unit) == 0)
                                break;
                if (i == sizeof(durations) / sizeof(durations[0]))
                        return -EINVAL;
                mult = durations[i].usec;
                has_unit = true;
        }
        if (__builtin_mul_overflow(v, mult, &v))
                return -ERANGE;
        *ret = v;
        if (ret_has_unit)
                *ret_has_unit = has_unit;
        return 0;
}

int num_from_json(struct json_object *o, uint64_t *ret) {
        switch (json_object_get_type(o)) {
        case json_type_int:
                /* json-c clamps get_int64 for values above INT64_MAX but keeps them as uint64. */
                if (json_object_get_int64(o) < 0)
                        return -ERANGE;
                *ret = json_object_get_uint64(o);
                return 0;
        case json_type_string:
                return num_parse_u64(json_object_get_string(o), ret);
        default:
                return -EINVAL;
        }
}

int num_from_json_unscanned(struct json_object *o, uint64_t *ret) {
        /*
         * json-c saturates integer literals of 2^64 and above to 2^64-1, so where the text was
         * not scanned for them, that value cannot be told from an overflow: refused as one. No
         * size, base, id or limit brokerd takes can be 2^64-1 anyway, and the string
         * "0xffffffffffffffff" still spells it exactly.
         */
        if (json_object_is_type(o, json_type_int) && json_object_get_int64(o) >= 0 &&
            json_object_get_uint64(o) == UINT64_MAX)
                return -ERANGE;
        return num_from_json(o, ret);
}

const char *num_format_size(uint64_t v, char buf[static NUM_FMT_MAX]) {
        if (v == 0) {
                snprintf(buf, NUM_FMT_MAX, "0");
                return buf;
        }
        for (size_t i = 0; i < (sizeof(units) / sizeof(units[0])); i++) {
                uint64_t unit = UINT64_C(1) << units[i].shift;
                if (v % unit == 0) {
                        snprintf(buf, NUM_FMT_MAX, "%" PRIu64 "%s", v / unit, units[i].suffix);
                        return buf;
                }
        }
        snprintf(buf, NUM_FMT_MAX, "0x%" PRIx64, v);
        return buf;
}

const char *num_format_addr(uint64_t v, char buf[static NUM_FMT_MAX]) {
        snprintf(buf, NUM_FMT_MAX, "0x%" PRIx64, v);
        return buf;
}
