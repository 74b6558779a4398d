/* SPDX-License-Identifier: Apache-2.0 */
/*
 * json-c (0.16) accepts more than JSON and alters some of what it accepts: overlong UTF-8 and
 * encoded surrogates pass its UTF-8 check, a lone surrogate escape becomes U+FFFD, "\u0000"
 * cuts a member name short, NaN and Infinity are numbers, "01" is 1, and an integer beyond 64
 * bits is clamped to the nearest bound. A line is checked here before json-c sees it, so that
 * what the handler gets is exactly what the client sent, or the line is refused.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/server-internal.h"

static bool is_digit(unsigned char ch) {
        return ch >= '0' && ch <= '9';
}

static bool is_alpha(unsigned char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

/* The length of the valid UTF-8 sequence at s (RFC 3629: shortest form, no surrogates,
 * nothing above U+10FFFF), or 0. */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
        unsigned char lo = 0x80, hi = 0xbf;
        size_t len;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf)
                len = 2;
        else if (s[0] >= 0xe0 && s[0] <= 0xef) {
                len = 3;
                if (s[0] == 0xe0)
                        lo = 0xa0; /* overlong below */
                else if (s[0] == 0xed)
                        hi = 0x9f; /* U+D800..U+DFFF above */
        } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
                len = 4;
                if (s[0] == 0xf0)
                        lo = 0x90;
                else if (s[0] == 0xf4)
                        hi = 0x8f; /* beyond U+10FFFF above */
        } else
                return 0;
        if (n < len || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < len; i++)
                if (s[i] < 0x80 || s[i] > 0xbf)
                        return 0;
        return len;
}

size_t rpc_utf8_valid_prefix(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s;
        size_t i = 0;

        while (i < n) {
                size_t k = utf8_sequence(p + i, n - i);

                if (k == 0)
                        break;
                i += k;
        }
        return i;
}

static int refuse(char *msg, size_t msg_size, const char *why, size_t at) {
        snprintf(msg, msg_size, "Parse error: %s at byte %zu", why, at);
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

/* A string starting at p[*pos] == '"'; *pos moves past it. What json-c refuses anyway
 * (an unterminated string, a bad escape) is left to it. */
static int check_string(const unsigned char *p, size_t len, size_t *pos, char *msg, size_t msg_size) {
        size_t j = *pos + 1;
        bool has_nul = false;

        while (j < len && p[j] != '"') {
                long cp;

                if (p[j] != '\\') {
                        j++;
                        continue;
                }
                cp = escape_at(p + j, len - j);
                if (cp < 0) {
                        j += 2; /* any other escape: two bytes */
                        continue;
                }
                if (cp == 0)
                        has_nul = true;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                        return refuse(msg, msg_size, "a lone surrogate escape", j);
                if (cp >= 0xd800 && cp <= 0xdbff) {
                        long low = j + 6 < len ? escape_at(p + j + 6, len - j - 6) : -1;

                        if (low < 0xdc00 || low > 0xdfff)
                                return refuse(msg, msg_size, "a lone surrogate escape", j);
                        j += 6;
                }
                j += 6;
        }
        if (j >= len) {
                *pos = len;
                return 0;
        }
        *pos = ++j;
        /* Only a member name is followed by ':'; json-c would cut that name at the NUL. */
        while (j < len && (p[j] == ' ' || p[j] == '\t' || p[j] == '\r' || p[j] == '\n'))
                j++;
        if (has_nul && j < len && p[j] == ':')
                return refuse(msg, msg_size, "\\u0000 in a member name", *pos);
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

/* A number (or what starts like one) at p[*pos]; p[len] must be NUL, for strtod(). */
static int check_number(const unsigned char *p, size_t len, size_t *pos, char *msg, size_t msg_size) {
        size_t start = *pos, j = *pos, digits;
        bool negative = false, integer = true;

        if (p[j] == '-') {
                negative = true;
                j++;
        }
        digits = j;
        if (j >= len || !is_digit(p[j]))
                return refuse(msg, msg_size, "not a JSON number (NaN and Infinity are not JSON)", start);
        if (p[j] == '0' && j + 1 < len && is_digit(p[j + 1]))
                return refuse(msg, msg_size, "a number with a leading zero", start);
        while (j < len && is_digit(p[j]))
                j++;
        if (j < len && p[j] == '.') {
                integer = false;
                if (++j >= len || !is_digit(p[j]))
                        return refuse(msg, msg_size, "not a JSON number", start);
                while (j < len && is_digit(p[j]))
                        j++;
        }
        if (j < len && (p[j] == 'e' || p[j] == 'E')) {
                integer = false;
                j++;
                if (j < len && (p[j] == '+' || p[j] == '-'))
                        j++;
                if (j >= len || !is_digit(p[j]))
                        return refuse(msg, msg_size, "not a JSON number", start);
                while (j < len && is_digit(p[j]))
                        j++;
        }
        if (j < len && (is_alpha(p[j]) || is_digit(p[j]) || p[j] == '.' || p[j] == '+' || p[j] == '-'))
                return refuse(msg, msg_size, "not a JSON number", start);
        if (integer && !integer_fits(p + digits, j - digits, negative))
                return refuse(msg, msg_size, "an integer outside [-2^63, 2^64-1]", start);
        if (integer && negative && j - digits == 1 && p[digits] == '0')
                return refuse(msg, msg_size, "the integer -0", start);
        if (!integer && isinf(strtod((const char *) p + start, NULL)))
                return refuse(msg, msg_size, "a number too large for a double", start);
        *pos = j;
        return 0;
}

/* Outside strings, words are true, false and null; json-c also takes NaN and Infinity. */
static int check_word(const unsigned char *p, size_t len, size_t *pos, char *msg, size_t msg_size) {
        static const char *const words[] = { "true", "false", "null" };
        size_t j = *pos;

        while (j < len && is_alpha(p[j]))
                j++;
        for (size_t i = 0; i < ELEMENTSOF(words); i++)
                if (j - *pos == strlen(words[i]) && memcmp(p + *pos, words[i], j - *pos) == 0) {
                        *pos = j;
                        return 0;
                }
        return refuse(msg, msg_size, "a bare word that is not true, false or null (NaN and Infinity are not JSON)",
                      *pos);
}

int rpc_wire_check(const char *line, size_t len, char *msg, size_t msg_size) {
        const unsigned char *p = (const unsigned char *) line;
        size_t i = rpc_utf8_valid_prefix(line, len);

        if (i < len)
                return refuse(msg, msg_size, "invalid UTF-8", i);

        i = 0;
        while (i < len) {
                int r = 0;

                if (p[i] == '"')
                        r = check_string(p, len, &i, msg, msg_size);
                else if (p[i] == '-' || is_digit(p[i]))
                        r = check_number(p, len, &i, msg, msg_size);
                else if (is_alpha(p[i]))
                        r = check_word(p, len, &i, msg, msg_size);
                else
                        i++;
                if (r < 0)
                        return r;
        }
        return 0;
}
