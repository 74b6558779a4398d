/* SPDX-License-Identifier: Apache-2.0 */
/* Devices: IOMMU groups and their reserved regions, PCI functions and their DMA masks. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform/platform.h"
#include "probe-internal.h"
#include "util/json-load.h"
#include "util/names.h"
#include "util/num.h"

static int member_compare(const void *a, const void *b) {
        const struct group_member *x = a, *y = b;

        return strcmp(x->device, y->device);
}

static const struct iommu_group *device_group(const struct probe *p, const char *device) {
        struct group_member key = { .device = (char *) device }, *m;

        if (p->n_members == 0)
                return NULL;
        m = bsearch(&key, p->members, p->n_members, sizeof(*p->members), member_compare);
        return m ? &p->groups[m->group] : NULL;
}

static bool type_is_direct(const char *type) {
        return strcmp(type, "direct") == 0 || strcmp(type, "direct-relaxable") == 0;
}

/* "0x00000000fee00000 0x00000000feefffff msi" per line: base, last address, type. */
static int parse_reserved_regions(const struct probe *p, const char *path, char *text, struct iommu_group *g) {
        char *line, *next;

        for (line = text; line && *line; line = next) {
                char *tok[4] = {}, *save = NULL;
                size_t n = 0;
                struct hole h = {};

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                for (char *t = strtok_r(line, " \t", &save); t && n < ELEMENTSOF(tok); t = strtok_r(NULL, " \t", &save))
                        tok[n++] = t;
                if (n == 0)
                        continue;
                if (n != 3 || probe_parse_hex(tok[0], strlen(tok[0]), &h.base) < 0 ||
                    probe_parse_hex(tok[1], strlen(tok[1]), &h.last) < 0 || h.last < h.base ||
                    strlen(tok[2]) >= TYPE_MAX ||
                    strspn(tok[2], "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(tok[2])) {
                        probe_note(p, "%s: malformed line: the devices of group %s are left out", path, g->id);
                        return -EINVAL;
                }
                strcpy(h.type, tok[2]);
                if (probe_grow(&g->holes, &g->cap, g->n_holes + 1, sizeof(*g->holes)) < 0)
                        return -ENOMEM;
                g->holes[g->n_holes++] = h;
        }
        return 0;
}

/* Direct regions are memory the device DMAs to (for the firmware): no pool may hold it. */
static int reserve_direct(struct probe *p, const struct hole *h) {
        uint64_t end = h->last == UINT64_MAX ? UINT64_MAX : h->last + 1;
        char *name = NULL;

        if (end <= h->base)
                return 0;
        for (size_t i = 0; i < p->reserved.n; i++) {
                struct range *r = &p->reserved.items[i];

                /* Groups sharing an RMRR list it each; one entry is enough. */
                if (r->base == h->base && r->name && strncmp(r->name, "iommu-", 6) == 0) {
                        if (end > r->end)
                                r->end = end;
                        return 0;
                }
        }
        if (asprintf(&name, "iommu-direct-0x%" PRIx64, h->base) < 0)
                return -ENOMEM;
        return probe_range_list_add(&p->reserved, h->base, end, 0, name);
}

/* One IOMMU group: its reserved regions and its devices. A group that cannot be read is noted. */
static int probe_group(struct probe *p, const char *dir, const char *id) {
        _cleanup_(xfreep) char *regions_path = NULL, *devices_path = NULL, *text = NULL;
        _cleanup_(probe_entries_clear) struct entries devices = {};
        struct iommu_group *g;
        int r;

        if (probe_grow(&p->groups, &p->groups_cap, p->n_groups + 1, sizeof(*p->groups)) < 0)
                return -ENOMEM;
        g = &p->groups[p->n_groups];
        *g = (struct iommu_group) { .id = strdup(id) };
        if (!g->id)
                return -ENOMEM;
        p->n_groups++;

        regions_path = probe_path(p, "%s/%s/reserved_regions", dir, id);
        devices_path = probe_path(p, "%s/%s/devices", dir, id);
        if (!regions_path || !devices_path)
                return -ENOMEM;

        r = probe_read_file(regions_path, ATTR_MAX, &text);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                probe_note(p, "%s: %s: the devices of group %s are left out", regions_path, strerror(-r), g->id);
        else {
                r = parse_reserved_regions(p, regions_path, text, g);
                if (r == -ENOMEM)
                        return r;
                g->known = r >= 0;
                for (size_t k = 0; g->known && k < g->n_holes; k++)
                        if (type_is_direct(g->holes[k].type) && reserve_direct(p, &g->holes[k]) < 0)
                                return -ENOMEM;
        }

        r = probe_list_dir(devices_path, NULL, NULL, &devices);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                probe_note(p, "%s: %s", devices_path, strerror(-r));
                p->members_complete = false;
                return 0;
        }
        for (size_t k = 0; k < devices.n; k++) {
                if (probe_grow(&p->members, &p->members_cap, p->n_members + 1, sizeof(*p->members)) < 0)
                        return -ENOMEM;
                p->members[p->n_members++] = (struct group_member) {
                        .device = TAKE_PTR(devices.names[k]),
                        .group = p->n_groups - 1,
                };
        }
        return 0;
}

int probe_iommu(struct probe *p) {
        static const char dir[] = "/sys/kernel/iommu_groups";
        _cleanup_(xfreep) char *path = probe_path(p, "%s", dir);
        _cleanup_(probe_entries_clear) struct entries ids = {};
        int r;

        if (!path)
                return -ENOMEM;
        r = probe_list_dir(path, "", "", &ids);
        if (r == -ENOMEM)
                return r;
        if (r == -ENOENT || (r >= 0 && ids.n == 0)) {
                probe_note(p, "%s: %s: no IOMMU translates DMA, so no device has reserved windows", path,
                           r < 0 ? "absent" : "no groups");
                p->groups_known = p->members_complete = true;
                return 0;
        }
        if (r < 0) {
                probe_note(p, "%s: %s: IOMMU groups unknown", path, strerror(-r));
                return 0;
        }
        p->groups_known = p->members_complete = true;

        for (size_t i = 0; i < ids.n; i++) {
                r = probe_group(p, dir, ids.names[i]);
                if (r < 0)
                        return r;
        }
        if (p->n_members > 1)
                qsort(p->members, p->n_members, sizeof(*p->members), member_compare);
        if (!p->members_complete)
                probe_note(p, "%s: the device list of some group is unreadable: devices in no known group are left out",
                           path);
        return 0;
}

static void types_add(char *types, size_t size, const char *type) {
        size_t len = strlen(type);

        for (const char *s = types; *s;) {
                size_t n = strcspn(s, "+");
                if (n == len && strncmp(s, type, len) == 0)
                        return;
                s += n;
                s += *s == '+';
        }
        if (strlen(types) + (types[0] ? 1 : 0) + len < size) {
                if (types[0])
                        strcat(types, "+");
                strcat(types, type);
        }
}

/*
 * The group's holes the device can reach, merged where they overlap, as reserved windows:
 * inside the default window [0, 2^bits) as the loader requires. Returns 0, -E2BIG (more
 * than a device may have), -ENOMEM.
 */
static int device_reserved_windows(const struct iommu_group *g, unsigned bits, json_object **ret) {
        _cleanup_(xfreep) struct hole *h = NULL;
        uint64_t limit = bits == 64 ? UINT64_MAX : UINT64_C(1) << bits;
        json_object *a;
        size_t n = 0;

        *ret = NULL;
        if (!g || g->n_holes == 0)
                return 0;
        h = calloc(g->n_holes, sizeof(*h));
        if (!h)
                return -ENOMEM;
        for (size_t i = 0; i < g->n_holes; i++) {
                if (g->holes[i].base >= limit)
                        continue;
                h[n] = g->holes[i];
                /* last becomes the exclusive end here. */
                h[n].last = g->holes[i].last >= limit - 1 ? limit : g->holes[i].last + 1;
                n++;
        }
        if (n == 0)
                return 0;
        for (size_t i = 1; i < n; i++)
                for (size_t k = i; k > 0 && h[k].base < h[k - 1].base; k--) {
                        struct hole t = h[k];
                        h[k] = h[k - 1];
                        h[k - 1] = t;
                }

        a = json_object_new_array();
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < n;) {
                char types[96] = "", name[NAME_MAX_LEN + 1];
                uint64_t end = h[i].last;
                size_t j = i;
                json_object *w;

                for (; j < n && (j == i || h[j].base < end); j++) {
                        types_add(types, sizeof(types), h[j].type);
                        if (h[j].last > end)
                                end = h[j].last;
                }
                snprintf(name, sizeof(name), "%s-0x%" PRIx64, types, h[i].base);
                w = probe_range_json(name_is_valid(name) ? name : NULL, h[i].base, end);
                if (probe_json_append(a, w) < 0) {
                        json_object_put(a);
                        return -ENOMEM;
                }
                i = j;
        }
        if (json_object_array_length(a) > PLATFORM_MAX_WINDOWS) {
                json_object_put(a);
                return -E2BIG;
        }
        *ret = a;
        return 0;
}

static bool driver_sets_no_mask(const char *driver) {
        static const char *const stubs[] = { "vfio-pci", "pci-stub", "uio_pci_generic" };

        if (!driver)
                return true;
        for (size_t i = 0; i < ELEMENTSOF(stubs); i++)
                if (strcmp(driver, stubs[i]) == 0)
                        return true;
        return false;
}

/* The bound driver's name, NULL for none; -errno when the link cannot be read. */
static int device_driver(const char *path, char **ret) {
        char target[4096];
        ssize_t n;
        const char *base;

        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0) {
                if (errno == ENOENT) {
                        *ret = NULL;
                        return 0;
                }
                return negative_errno();
        }
        target[n] = '\0';
        base = strrchr(target, '/');
        *ret = strdup(base ? base + 1 : target);
        return *ret ? 0 : -ENOMEM;
}

/*
 * The DMA mask of a PCI function: 1 with *ret_bits set, 0 when the device is left out
 * (noted), -ENOMEM. Doubts about the value are noted too.
 */
static int device_dma_mask(struct probe *p, const char *dir, const char *name, unsigned *ret_bits) {
        _cleanup_(xfreep) char *driver_path = NULL, *mask_path = NULL, *coherent_path = NULL, *driver = NULL;
        uint64_t bits, coherent;
        bool driver_known;
        int r;

        driver_path = probe_path(p, "%s/%s/driver", dir, name);
        mask_path = probe_path(p, "%s/%s/dma_mask_bits", dir, name);
        coherent_path = probe_path(p, "%s/%s/consistent_dma_mask_bits", dir, name);
        if (!driver_path || !mask_path || !coherent_path)
                return -ENOMEM;

        r = device_driver(driver_path, &driver);
        if (r == -ENOMEM)
                return r;
        driver_known = r >= 0;
        if (!driver_known)
                probe_note(p, "%s: %s", driver_path, strerror(-r));

        r = probe_read_number(p, mask_path, false, true, &bits);
        if (r == -ENOMEM)
                return r;
        if (r == -ENOENT) {
                probe_note(p, "%s: not exposed by this kernel: device %s left out (its DMA mask is unknown)",
                           mask_path, name);
                return 0;
        }
        if (r < 0) {
                probe_note(p, "device %s left out: its DMA mask is unknown", name);
                return 0;
        }
        if (bits < DMA_BITS_MIN || bits > DMA_BITS_MAX) {
                probe_note(p, "%s: %" PRIu64 " bits, outside %d..%d: device %s left out", mask_path, bits,
                           DMA_BITS_MIN, DMA_BITS_MAX, name);
                return 0;
        }
        /* Until a driver sets it, the mask is the PCI core's 32-bit default, or what an earlier
         * driver left behind, neither of which says what the device reaches. */
        if (driver_known && driver_sets_no_mask(driver))
                probe_note(p, "device %s: %s%s: its %" PRIu64 "-bit DMA mask is the kernel's default or an earlier "
                              "driver's, not necessarily what the device can reach: check it",
                           name, driver ? "bound to " : "no driver bound", driver ?: "", bits);
        r = probe_read_number(p, coherent_path, false, true, &coherent);
        if (r == -ENOMEM)
                return r;
        if (r >= 0 && coherent < bits)
                probe_note(p, "device %s: coherent DMA mask %" PRIu64 " bits, below the %" PRIu64
                              "-bit mask used: coherent buffers must stay lower",
                           name, coherent, bits);
        *ret_bits = (unsigned) bits;
        return 1;
}

/*
 * The reserved windows of a device from its IOMMU group: 1 with *ret set (NULL for none),
 * 0 when the device is left out (noted), -ENOMEM.
 */
static int device_iommu_windows(struct probe *p, const char *name, unsigned bits, json_object **ret) {
        const struct iommu_group *g;
        int r;

        if (!p->groups_known) {
                probe_note(p, "device %s left out: its IOMMU reserved regions are unknown", name);
                return 0;
        }
        g = device_group(p, name);
        if (!g && !p->members_complete) {
                probe_note(p, "device %s left out: it may be in an IOMMU group whose devices are unknown", name);
                return 0;
        }
        if (g && !g->known) {
                probe_note(p, "device %s left out: the reserved regions of its IOMMU group %s are unknown", name,
                           g->id);
                return 0;
        }
        r = device_reserved_windows(g, bits, ret);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                probe_note(p, "device %s left out: IOMMU group %s has more than %d reserved regions", name, g->id,
                           PLATFORM_MAX_WINDOWS);
                return 0;
        }
        return 1;
}

/* Appends the device's entry to devices; takes windows (may be NULL), also on failure. */
static int device_json(json_object *devices, const char *name, unsigned bits, json_object *windows) {
        json_object *d = json_object_new_object();

        if (!d || probe_json_append(devices, d) < 0 || probe_json_add(d, "name", json_object_new_string(name)) < 0 ||
            probe_json_add(d, "owner", json_object_new_string("host")) < 0 ||
            probe_json_add(d, "dma_mask_bits", json_object_new_int((int) bits)) < 0) {
                json_object_put(windows);
                return -ENOMEM;
        }
        if (windows && probe_json_add(d, "reserved_windows", windows) < 0)
                return -ENOMEM;
        return 0;
}

/* One PCI function: added to devices, or left out with the reason noted. */
static int probe_device(struct probe *p, const char *dir, const char *name, json_object *devices) {
        _cleanup_(xfreep) char *class_path = NULL;
        json_object *windows = NULL;
        uint64_t class;
        unsigned bits = 0;
        int r;

        class_path = probe_path(p, "%s/%s/class", dir, name);
        if (!class_path)
                return -ENOMEM;
        /* Bridges forward DMA, they do not do it into shared regions. Without a class the
         * device stays: one entry too many is the admin's to delete, one too few a surprise. */
        r = probe_read_number(p, class_path, true, false, &class);
        if (r == -ENOMEM)
                return r;
        if (r >= 0 && (class >> 16) == 0x06)
                return 0;

        r = device_dma_mask(p, dir, name, &bits);
        if (r <= 0)
                return r;
        r = device_iommu_windows(p, name, bits, &windows);
        if (r <= 0)
                return r;
        return device_json(devices, name, bits, windows);
}

int probe_devices(struct probe *p, json_object *devices) {
        static const char dir[] = "/sys/bus/pci/devices";
        _cleanup_(xfreep) char *path = probe_path(p, "%s", dir);
        _cleanup_(probe_entries_clear) struct entries names = {};
        int r;

        if (!path)
                return -ENOMEM;
        r = probe_list_dir(path, NULL, NULL, &names);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                probe_note(p, "%s: %s: no devices", path, r == -ENOENT ? "absent" : strerror(-r));
                return 0;
        }
        for (size_t i = 0; i < names.n; i++) {
                if (json_object_array_length(devices) >= PLATFORM_MAX_ENTRIES) {
                        probe_note(p, "more than %d devices: %s and the rest are left out", PLATFORM_MAX_ENTRIES,
                                   names.names[i]);
                        break;
                }
                if (!name_is_valid(names.names[i])) {
                        probe_note(p, "%s/%s: not usable as a device name: left out", path, names.names[i]);
                        continue;
                }
                r = probe_device(p, dir, names.names[i], devices);
                if (r < 0)
                        return r;
        }
        return 0;
}
