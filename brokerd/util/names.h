/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Names of domains, devices and pools. They travel into logs, sqlite, JSON replies and
 * (for domains) libvirt, so they are kept to a conservative alphabet: 1..NAME_MAX_LEN
 * bytes of [A-Za-z0-9_.:+-], not starting with '.' or '-'.
 */
#include <stdbool.h>
#include <string.h>

#define NAME_MAX_LEN 128

static inline bool name_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n == 0 || n > NAME_MAX_LEN || s[0] == '.' || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == ':' || c == '+' || c == '-'))
                        return false;
        }
        return true;
}
