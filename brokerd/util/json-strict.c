/* SPDX-License-Identifier: Apache-2.0 */
/* One pass over the text that knows just enough of JSON to tell strings, numbers and words apart. */
#include "json-strict.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "utf8.h"

struct strict_scan {
        const unsigned char *p;
        size_t len;
        size_t pos;         /* the next byte to look at */
        size_t offset;      /* of the offence, once refused */
        const char *reason; /* likewise */
};

static bool is_digit(unsigned char ch) {
        return ch >= '0' && ch <= '9';
}

static bool is_alpha(unsigned char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

static bool is_ws(unsigned char ch) {
        return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

static int refuse(struct strict_scan *s, size_t offset, const char *reason) {
        s->offset = offset;
        s->reason = reason;
        return -EBADMSG;
}

/* The code point of "\uXXXX" at p (which starts with the backslash), or -1. */
static long escape_at(const unsigned char *p, size_t n) {
        char hex[5];

        if (n < 6 || p[0] != '\\' || p[1] != 'u')
                return -1;
        memcpy(hex, p + 2, 4);
        hex[4] = '\0';
        for (size_t i = 0; i < 4; i++)
                if (!strchr("0123456789abcdefABCDEF", hex[i]))
                        return -1;
        return strtol(hex, NULL, 16);
}

/* The string at s->pos (its opening quote). What json-c refuses anyway (an unterminated
 * string, a bad escape) is left to it. */
static int check_string(struct strict_scan *s) {
        const unsigned char *p = s->p;
        size_t j = s->pos + 1, end;
        bool has_nul = false;

        while (j < s->len && p[j] != '"') {
                long cp;

                if (p[j] != '\\') {
                        j++;
                        continue;
                }
                cp = escape_at(p + j, s->len - j);
                if (cp < 0) {
                        j += 2; /* any other escape: two bytes */
                        continue;
                }
                if (cp == 0)
                        has_nul = true;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                        return refuse(s, j, "a lone surrogate escape");
                if (cp >= 0xd800 && cp <= 0xdbff) {
                        long low = j + 6 < s->len ? escape_at(p + j + 6, s->len - j - 6) : -1;

                        if (low < 0xdc00 || low > 0xdfff)
                                return refuse(s, j, "a lone surrogate escape");
                        j += 6;
                }
                j += 6;
        }
        if (j >= s->len) {
                s->pos = s->len;
                return 0;
        }
        end = s->pos = j + 1;
        /* Only a member name is followed by ':'; json-c would cut that name at the NUL. */
        while (end < s->len && is_ws(p[end]))
                end++;
        if (has_nul && end < s->len && p[end] == ':')
                return refuse(s, s->pos, "\\u0000 in a member name");
        return 0;
}

/* An integer's digits (no sign) against the bound for its sign. */
static bool integer_fits(const unsigned char *digits, size_t n, bool negative) {
        const char *bound = negative ? "9223372036854775808" : "18446744073709551615";
        size_t bound_len = strlen(bound);

        if (n != bound_len)
                return n < bound_len;
        return memcmp(digits, bound, n) <= 0;
}

/* The digits at *j; false when there is none. */
static bool skip_digits(const struct strict_scan *s, size_t *j) {
        size_t start = *j;

        while (*j < s->len && is_digit(s->p[*j]))
                (*j)++;
        return *j > start;
}

/* A number, or what starts like one, at s->pos. */
static int check_number(struct strict_scan *s) {
        const unsigned char *p = s->p;
        size_t start = s->pos, j = s->pos, digits;
        bool negative = p[j] == '-', integer = true;

        if (negative)
                j++;
        digits = j;
        if (j >= s->len || !is_digit(p[j]))
                return refuse(s, start, "not a JSON number (NaN and Infinity are not JSON)");
        if (p[j] == '0' && j + 1 < s->len && is_digit(p[j + 1]))
                return refuse(s, start, "a number with a leading zero");
        (void) skip_digits(s, &j);
        if (j < s->len && p[j] == '.') {
                integer = false;
                j++;
                if (!skip_digits(s, &j))
                        return refuse(s, start, "not a JSON number");
        }
        if (j < s->len && (p[j] == 'e' || p[j] == 'E')) {
                integer = false;
                j++;
                if (j < s->len && (p[j] == '+' || p[j] == '-'))
                        j++;
                if (!skip_digits(s, &j))
                        return refuse(s, start, "not a JSON number");
        }
        if (j < s->len && (is_alpha(p[j]) || is_digit(p[j]) || p[j] == '.' || p[j] == '+' || p[j] == '-'))
                return refuse(s, start, "not a JSON number");
        if (integer && !integer_fits(p + digits, j - digits, negative))
                return refuse(s, start, "integer does not fit in 64 bits (outside [-2^63, 2^64-1])");
        if (integer && negative && j - digits == 1 && p[digits] == '0')
                return refuse(s, start, "the integer -0");
        /* strtod() stops where the grammar above did: at p[j], or at the NUL after the text. */
        if (!integer && isinf(strtod((const char *) p + start, NULL)))
                return refuse(s, start, "a number too large for a double");
        s->pos = j;
        return 0;
}

/* Outside strings, words are true, false and null; json-c also takes NaN and Infinity. */
static int check_word(struct strict_scan *s) {
        static const char *const words[] = { "true", "false", "null" };
        size_t j = s->pos;

        while (j < s->len && is_alpha(s->p[j]))
                j++;
        for (size_t i = 0; i < ELEMENTSOF(words); i++)
                if (j - s->pos == strlen(words[i]) && memcmp(s->p + s->pos, words[i], j - s->pos) == 0) {
                        s->pos = j;
                        return 0;
                }
        return refuse(s, s->pos, "a bare word that is not true, false or null (NaN and Infinity are not JSON)");
}

static int check_token(struct strict_scan *s) {
        unsigned char ch = s->p[s->pos];

        if (ch == '"')
                return check_string(s);
        if (ch == '-' || is_digit(ch))
                return check_number(s);
        if (is_alpha(ch))
                return check_word(s);
        /* a fraction without its integer part: json-c refuses it, but say why */
        if (ch == '.')
                return refuse(s, s->pos, "not a JSON number");
        /* json-c takes 'x' for a member name in strict mode too */
        if (ch == '\'')
                return refuse(s, s->pos, "a single-quoted string (JSON strings are in double quotes)");
        s->pos++;
        return 0;
}

int json_strict_check(const char *text, size_t len, size_t *ret_offset, const char **ret_reason) {
        struct strict_scan s = { .p = (const unsigned char *) text, .len = len };
        size_t valid = utf8_valid_prefix(text, len);
        int r = 0;

        if (valid < len)
                r = refuse(&s, valid, "invalid UTF-8");
        while (r == 0 && s.pos < len)
                r = check_token(&s);
        if (r < 0) {
                if (ret_offset)
                        *ret_offset = s.offset;
                if (ret_reason)
                        *ret_reason = s.reason;
        }
        return r;
}
