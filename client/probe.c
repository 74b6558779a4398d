/* SPDX-License-Identifier: Apache-2.0 */
#include "probe.h"
#include "probe-internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform/platform.h"
#include "util/diag.h"
#include "util/macro.h"
#include "util/names.h"
#include "util/num.h"

static void probe_done(struct probe *p) {
        free(p->root);
        free(p->nodes);
        free(p->block_nodes);
        probe_range_list_clear(&p->ram);
        probe_range_list_clear(&p->banks);
        probe_range_list_clear(&p->reserved);
        for (size_t i = 0; i < p->n_groups; i++) {
                free(p->groups[i].id);
                free(p->groups[i].holes);
        }
        free(p->groups);
        for (size_t i = 0; i < p->n_members; i++)
                free(p->members[i].device);
        free(p->members);
}

int probe_json_add(json_object *o, const char *key, json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int probe_json_append(json_object *a, json_object *v) {
        if (!v || json_object_array_add(a, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

json_object *probe_range_json(const char *name, uint64_t base, uint64_t end) {
        json_object *o = json_object_new_object();
        char buf[NUM_FMT_MAX];

        if (!o)
                return NULL;
        if ((name && probe_json_add(o, "name", json_object_new_string(name)) < 0) ||
            probe_json_add(o, "base", json_object_new_string(num_format_addr(base, buf))) < 0 ||
            probe_json_add(o, "size", json_object_new_string(num_format_size(end - base, buf))) < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

/* "msi", or "msi+reserved" for overlapping regions of two types. */
static int build_memory(const struct probe *p, json_object *root) {
        json_object *a = json_object_new_array();

        if (probe_json_add(root, "memory", a) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < p->banks.n; i++) {
                const struct range *b = &p->banks.items[i];
                char name[32];
                json_object *o;

                snprintf(name, sizeof(name), "bank%zu", i);
                o = probe_range_json(name, b->base, b->end);
                if (probe_json_append(a, o) < 0 ||
                    probe_json_add(o, "numa_node", json_object_new_int((int) b->node)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int build_reserved(const struct probe *p, json_object *root) {
        json_object *a;

        if (p->reserved.n == 0)
                return 0;
        a = json_object_new_array();
        if (probe_json_add(root, "reserved", a) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < p->reserved.n; i++) {
                const struct range *r = &p->reserved.items[i];
                if (probe_json_append(a, probe_range_json(r->name, r->base, r->end)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* "devices[3]", and nothing below it. */
static bool is_device_path(const char *path) {
        static const char prefix[] = "devices[";
        size_t digits;

        if (strncmp(path, prefix, strlen(prefix)) != 0)
                return false;
        path += strlen(prefix);
        digits = strspn(path, "0123456789");
        return digits > 0 && strcmp(path + digits, "]") == 0;
}

/* Loads what was built the way the daemon would read it back; errors make it unusable. */
static int self_check(const struct probe *p, json_object *root) {
        _cleanup_(platform_freep) struct platform *platform = NULL;
        struct diag_list diags = DIAG_LIST_INIT;
        size_t unreachable = 0;
        const char *text;
        int r;

        text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        r = platform_load_string(text, &platform, &diags);
        for (size_t i = 0; i < diags.n; i++) {
                const struct diag *d = &diags.items[i];

                /* With no pools, every device warns that it reaches none, at the device's own path;
                 * say that once. */
                if (d->severity == DIAG_WARNING && is_device_path(d->path)) {
                        unreachable++;
                        continue;
                }
                probe_note(p, "%s: %s%s%s", d->severity == DIAG_ERROR ? "error" : "warning", d->path,
                           d->path[0] ? ": " : "", d->message);
        }
        diag_list_clear(&diags);
        if (r < 0) {
                if (r != -ENOMEM)
                        probe_note(p, "the description does not load: not written");
                return r;
        }
        if (unreachable > 0)
                probe_note(p, "%zu device%s can reach no pool until pools are added", unreachable,
                           unreachable == 1 ? "" : "s");
        return 0;
}

int probe_platform(const char *sysfs_root, json_object **ret, FILE *report) {
        _cleanup_(probe_done) struct probe p = { .report = report };
        json_object *root = NULL, *devices;
        bool from_blocks;
        size_t len;
        int r;

        if (!sysfs_root || !*sysfs_root || !ret)
                return -EINVAL;
        len = strlen(sysfs_root);
        while (len > 0 && sysfs_root[len - 1] == '/')
                len--;
        p.root = strndup(sysfs_root, len);
        if (!p.root)
                return -ENOMEM;

        r = probe_nodes(&p);
        if (r >= 0)
                r = probe_iomem(&p);
        if (r >= 0)
                r = probe_blocks(&p);
        if (r < 0)
                return r;
        from_blocks = p.banks.n > 0;
        if (!from_blocks) {
                r = banks_from_iomem(&p);
                if (r < 0)
                        return r;
        }
        if (p.banks.n == 0) {
                probe_note(&p, "no RAM could be read: no description");
                return -ENODATA;
        }
        if (from_blocks && reserve_non_ram(&p) < 0)
                return -ENOMEM;
        report_nodes(&p, from_blocks);
        r = probe_hugepages(&p);
        if (r >= 0)
                r = probe_iommu(&p);
        if (r < 0)
                return r;
        if (p.reserved.n > 1)
                qsort(p.reserved.items, p.reserved.n, sizeof(*p.reserved.items), probe_range_compare);

        root = json_object_new_object();
        if (!root)
                return -ENOMEM;
        devices = json_object_new_array();
        if (build_memory(&p, root) < 0 || build_reserved(&p, root) < 0 ||
            probe_json_add(root, "pools", json_object_new_array()) < 0 ||
            probe_json_add(root, "devices", devices) < 0) {
                json_object_put(root);
                return -ENOMEM;
        }
        r = probe_devices(&p, devices);
        if (r >= 0)
                r = self_check(&p, root);
        if (r < 0) {
                json_object_put(root);
                return r;
        }

        probe_note(&p, "%zu memory bank%s, %zu reserved range%s, %zu device%s", p.banks.n, p.banks.n == 1 ? "" : "s",
                   p.reserved.n, p.reserved.n == 1 ? "" : "s", json_object_array_length(devices),
                   json_object_array_length(devices) == 1 ? "" : "s");
        probe_note(&p, "pools: none, since which memory brokerd may hand out is yours to decide: add pools inside the "
                       "memory banks, clear of the reserved ranges");
        if (json_object_array_length(devices) > 0)
                probe_note(&p,
                           "devices: every owner is \"host\": set each to the hardware domain that drives the device");
        *ret = root;
        return 0;
}
