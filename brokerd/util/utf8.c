/* SPDX-License-Identifier: Apache-2.0 */
#include "utf8.h"

#include <stdint.h>
#include <string.h>

/* The length of the valid sequence at s (n > 0 bytes), or 0. */
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
                        lo = 0x90; /* overlong below */
                else if (s[0] == 0xf4)
                        hi = 0x8f; /* beyond U+10FFFF above */
        } else
                return 0; /* a continuation byte, 0xc0/0xc1 (overlong), or 0xf5.. */
        if (n < len || s[1] < lo || s[1] > hi)
                return 0;
        for (size_t i = 2; i < len; i++)
                if (s[i] < 0x80 || s[i] > 0xbf)
                        return 0;
        return len;
}

size_t utf8_valid_prefix(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s;
        size_t i = 0;

        while (i < n) {
                size_t k;

                /* Most of what arrives is ASCII: skip it eight bytes at a time. */
                while (n - i >= 8) {
                        uint64_t w;

                        memcpy(&w, p + i, sizeof(w));
                        if (w & UINT64_C(0x8080808080808080))
                                break;
                        i += 8;
                }
                if (i == n)
                        break;
                k = utf8_sequence(p + i, n - i);

                if (k == 0)
                        break;
                i += k;
        }
        return i;
}
