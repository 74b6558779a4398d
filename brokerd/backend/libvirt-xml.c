/* SPDX-License-Identifier: Apache-2.0 */
#include "backend/libvirt-xml.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
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

void libvirt_alias_format(uint64_t id, char buf[static LIBVIRT_ALIAS_MAX]) {
        snprintf(buf, LIBVIRT_ALIAS_MAX, LIBVIRT_ALIAS_PREFIX "%" PRIu64, id);
}

/* The quoted value after the first "tag" in [start, end), into buf; -ENOENT if none fits. */
static int attr_value(const char *start, const char *end, const char *tag, char *buf, size_t n) {
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
                if (!close || close >= end || (size_t) (close - v) >= n)
                        return -ENOENT;
                memcpy(buf, v, (size_t) (close - v));
                buf[close - v] = 0;
                return 0;
        }
        return -ENOENT;
}

/* The alias of one <shmem>...</shmem> element, between start and end. */
static int shmem_region(const char *start, const char *end, uint64_t *ret) {
        char value[64];

        if (attr_value(start, end, "<alias name=", value, sizeof(value)) < 0)
                return -ENOENT;
        return libvirt_alias_parse(value, ret) < 0 ? -ENOENT : 0;
}

int libvirt_xml_foreach_region(const char *xml, int (*fn)(void *userdata, uint64_t region, const char *name),
                               void *userdata) {
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
                        char name[LIBVIRT_SHMEM_NAME_MAX] = "";
                        const char *tag_end = strchr(p, '>');
                        int q;

                        /* The name attribute sits in the opening tag only. */
                        if (tag_end && tag_end < end && attr_value(p, tag_end, " name=", name, sizeof(name)) < 0)
                                name[0] = 0;
                        q = fn(userdata, id, name);
                        if (q != 0)
                                return q;
                }
                p = end + strlen("</shmem>");
        }
        return 0;
}

static int region_is_id(void *userdata, uint64_t region, const char *name) {
        (void) name;
        return region == *(const uint64_t *) userdata;
}

bool libvirt_xml_has_region(const char *xml, uint64_t id) {
        return libvirt_xml_foreach_region(xml, region_is_id, &id) > 0;
}

bool libvirt_xml_is_tcg(const char *xml) {
        const char *tag = xml ? strstr(xml, "<domain") : NULL;

        return tag && (strncmp(tag, "<domain type='qemu'", 19) == 0 || strncmp(tag, "<domain type=\"qemu\"", 19) == 0);
}
