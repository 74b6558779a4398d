/* SPDX-License-Identifier: Apache-2.0 */
/* The devices of a platform file: DMA mask, alignment, DMA windows and reserved windows. */
#include <inttypes.h>

#include "platform/platform-internal.h"

/* Without dma_windows: the whole range below the mask; for 64 bits the last byte is not representable. */
static bool default_window(struct platform_loader *l, struct platform_device *d, bool mask_ok) {
        if (!mask_ok)
                return false;
        d->windows = json_loader_alloc(&l->json, 1, sizeof(*d->windows));
        if (!d->windows)
                return false;
        d->n_windows = 1;
        d->windows[0].end = d->dma_max == UINT64_MAX ? UINT64_MAX : d->dma_max + 1;
        return true;
}

static void check_window_mask(struct platform_loader *l, const char *path, const struct platform_device *d,
                              const struct platform_range *w) {
        char b1[RANGE_FMT_MAX], b2[NUM_FMT_MAX];

        if (w->base > d->dma_max)
                json_loader_error(&l->json, path,
                                  "window %s lies wholly above the DMA mask (highest reachable address %s)",
                                  platform_format_range(w->base, w->end, b1), num_format_addr(d->dma_max, b2));
        else if (w->end - 1 > d->dma_max)
                json_loader_warning(&l->json, path,
                                    "window %s extends above the DMA mask; addresses above %s are unreachable",
                                    platform_format_range(w->base, w->end, b1), num_format_addr(d->dma_max, b2));
}

/* Returns whether every window is a usable range, which the reserved-window check relies on. */
static bool load_windows(struct platform_loader *l, json_object *dev, const char *dev_path, struct platform_device *d,
                         bool mask_ok) {
        static const char *const keys[] = { "base", "size", NULL };
        _cleanup_(xfreep) struct span *spans = NULL;
        _cleanup_(xfreep) char *arr_path = json_loader_path_key(&l->json, dev_path, "dma_windows");
        bool all_ok = true;
        json_object *arr;
        size_t n = 0;

        if (!json_object_object_get_ex(dev, "dma_windows", NULL))
                return default_window(l, d, mask_ok);
        arr = platform_array(l, dev, dev_path, "dma_windows", JSON_OPTIONAL, PLATFORM_MAX_WINDOWS, &n, &spans);
        if (arr && n == 0)
                json_loader_error(&l->json, arr_path, "must list at least one window "
                                                      "(leave it out for the whole range below the DMA mask)");
        if (!arr || n == 0)
                return false;
        d->windows = json_loader_alloc(&l->json, n, sizeof(*d->windows));
        if (!d->windows)
                return false;
        d->n_windows = n;

        for (size_t i = 0; i < n; i++) {
                struct platform_range *w = &d->windows[i];
                _cleanup_(xfreep) char *path = json_loader_path_index(&l->json, arr_path, i);

                if (platform_entry(l, arr, i, path, keys)) {
                        spans[i].ok = platform_get_range(l, json_object_array_get_idx(arr, i), path, &w->base,
                                                         &w->end);
                        spans[i].base = w->base;
                        spans[i].end = w->end;
                }
                all_ok = all_ok && spans[i].ok;
                if (spans[i].ok && mask_ok)
                        check_window_mask(l, path, d, w);
        }
        platform_check_overlaps(l, arr_path, "dma_windows", spans, n);
        return all_ok;
}

static void load_reserved_windows(struct platform_loader *l, json_object *dev, const char *dev_path,
                                  struct platform_device *d, bool windows_ok) {
        static const char *const keys[] = { "name", "base", "size", NULL };
        _cleanup_(xfreep) struct span *spans = NULL;
        _cleanup_(xfreep) char *arr_path = json_loader_path_key(&l->json, dev_path, "reserved_windows");
        json_object *arr;
        size_t n = 0;

        arr = platform_array(l, dev, dev_path, "reserved_windows", JSON_OPTIONAL, PLATFORM_MAX_WINDOWS, &n,
                             &spans);
        if (!arr || n == 0)
                return;
        d->reserved_windows = json_loader_alloc(&l->json, n, sizeof(*d->reserved_windows));
        if (!d->reserved_windows)
                return;
        d->n_reserved_windows = n;

        for (size_t i = 0; i < n; i++) {
                struct platform_range *r = &d->reserved_windows[i];
                _cleanup_(xfreep) char *path = json_loader_path_index(&l->json, arr_path, i);
                bool inside = false;
                char buf[RANGE_FMT_MAX];
                json_object *e;

                e = platform_entry(l, arr, i, path, keys);
                if (!e)
                        continue;
                json_get_name(&l->json, e, path, "name", JSON_OPTIONAL, &r->name);
                spans[i] = (struct span) { .name = r->name };
                spans[i].ok = platform_get_range(l, e, path, &r->base, &r->end);
                spans[i].base = r->base;
                spans[i].end = r->end;
                if (!spans[i].ok || !windows_ok)
                        continue;
                for (size_t k = 0; k < d->n_windows && !inside; k++)
                        inside = d->windows[k].base <= r->base && r->end <= d->windows[k].end;
                if (!inside)
                        json_loader_error(&l->json, path,
                                          "reserved window %s is not inside any DMA window of the device",
                                          platform_format_range(r->base, r->end, buf));
        }
        platform_check_unique(l, arr_path, spans, n);
        platform_check_overlaps(l, arr_path, "reserved_windows", spans, n);
}

static void load_device(struct platform_loader *l, json_object *e, const char *path, struct platform_device *d) {
        bool mask_ok, windows_ok;
        uint64_t bits = 0;

        json_get_name(&l->json, e, path, "name", JSON_REQUIRED, &d->name);
        json_get_name(&l->json, e, path, "owner", JSON_REQUIRED, &d->owner);
        mask_ok = json_get_uint(&l->json, e, path, "dma_mask_bits", JSON_REQUIRED, PLATFORM_MIN_DMA_BITS,
                                PLATFORM_MAX_DMA_BITS, NULL, &bits);
        if (mask_ok) {
                d->dma_mask_bits = (unsigned) bits;
                d->dma_max = bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
        }

        d->alignment = 1;
        if (json_get_u64(&l->json, e, path, "alignment", JSON_OPTIONAL, &d->alignment) &&
            !num_is_pow2(d->alignment)) {
                _cleanup_(xfreep) char *ap = json_loader_path_key(&l->json, path, "alignment");
                char buf[NUM_FMT_MAX];
                json_loader_error(&l->json, ap, "alignment %s is not a power of two",
                                  num_format_size(d->alignment, buf));
        }

        windows_ok = load_windows(l, e, path, d, mask_ok);
        load_reserved_windows(l, e, path, d, windows_ok);
}

void platform_load_devices(struct platform_loader *l, json_object *root, struct platform *p) {
        static const char *const keys[] = { "name",        "owner",           "dma_mask_bits", "dma_windows",
                                            "reserved_windows", "alignment", NULL };
        _cleanup_(xfreep) struct span *names = NULL;
        json_object *arr;
        size_t n = 0;

        arr = platform_array(l, root, "", "devices", JSON_OPTIONAL, PLATFORM_MAX_ENTRIES, &n, &names);
        if (!arr || n == 0)
                return;
        p->devices = json_loader_alloc(&l->json, n, sizeof(*p->devices));
        if (!p->devices)
                return;
        p->n_devices = n;

        for (size_t i = 0; i < n; i++) {
                _cleanup_(xfreep) char *path = json_loader_path_index(&l->json, "devices", i);
                json_object *e;

                e = platform_entry(l, arr, i, path, keys);
                if (!e)
                        continue;
                load_device(l, e, path, &p->devices[i]);
                names[i].name = p->devices[i].name;
        }
        platform_check_unique(l, "devices", names, n);
}
