/* SPDX-License-Identifier: Apache-2.0 */
#include "backend/libvirt-xml.h"

#include <errno.h>
#include <string.h>

#include "util/num.h"

int libvirt_alias_parse(const char *alias, uint64_t *ret) {
        size_t n = strlen(LIBVIRT_ALIAS_PREFIX);
        uint64_t id;

        if (!alias || strncmp(alias, LIBVIRT_ALIAS_PREFIX, n) != 0)
                return -EINVAL;
        /* Decimal digits only: the alias is ours only in the exact form we write. */
        if (!alias[n] || strspn(alias + n, "0123456789") != strlen(alias + n) || (alias[n] == '0'))
                return -EINVAL;
        if (num_parse_u64(alias + n, &id) < 0 || id == 0)
                return -EINVAL;
        *ret = id;
        return 0;
}

/* The alias of one <shmem>...</shmem> element, between start and end. */
static int shmem_region(const char *start, const char *end, uint64_t *ret) {
        static const char tag[] = "<alias name=";
        char value[64];

        for (const char *p = start; p && p < end; p++) {
                const char *v, *close;
                char quote;

                p = strstr(p, tag);
                if (!p || p >= end)
                        return -ENOENT;
                v = p + strlen(tag);
                quote = *v;
                if (quote != '\'' && quote != '"')
                        continue;
                v++;
                close = strchr(v, quote);
                if (!close || close >= end || (size_t) (close - v) >= sizeof(value))
                        continue;
                memcpy(value, v, (size_t) (close - v));
                value[close - v] = 0;
                return libvirt_alias_parse(value, ret) < 0 ? -ENOENT : 0;
        }
        return -ENOENT;
}

int libvirt_xml_foreach_region(const char *xml, int (*fn)(void *userdata, uint64_t region), void *userdata) {
        const char *p = xml;

        while (p && (p = strstr(p, "<shmem")) != NULL) {
                const char *end;
                uint64_t id;
                char after = p[strlen("<shmem")];

                /* "<shmem " or "<shmem>", not "<shmemfoo". */
                if (after != ' ' && after != '>' && after != '\n' && after != '\t') {
                        p++;
                        continue;
                }
                end = strstr(p, "</shmem>");
                if (!end)
                        break;
                if (shmem_region(p, end, &id) == 0) {
                        int q = fn(userdata, id);
                        if (q != 0)
                                return q;
                }
                p = end + strlen("</shmem>");
        }
        return 0;
}
