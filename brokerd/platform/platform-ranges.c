/* SPDX-License-Identifier: Apache-2.0 */
/* The checks every array of ranges in a platform file shares. */
#include <stdio.h>
#include <stdlib.h>

#include "platform/platform-internal.h"

const char *platform_format_range(uint64_t base, uint64_t end, char buf[static RANGE_FMT_MAX]) {
        char b1[NUM_FMT_MAX], b2[NUM_FMT_MAX];

        snprintf(buf, RANGE_FMT_MAX, "[%s, %s)", num_format_addr(base, b1), num_format_addr(end, b2));
        return buf;
}

json_object *platform_entry(struct platform_loader *l, json_object *arr, size_t i, const char *path,
                            const char *const *keys) {
        return json_get_object(&l->json, json_object_array_get_idx(arr, i), path, NULL, JSON_REQUIRED, keys);
}

json_object *platform_array(struct platform_loader *l, json_object *obj, const char *path, const char *key,
                            unsigned flags, size_t max, size_t *ret_n, struct span **ret_spans) {
        json_object *arr;
        size_t n = 0;

        arr = json_get_array(&l->json, obj, path, key, flags, max, &n);
        if (!arr)
                return NULL;
        *ret_spans = json_loader_alloc(&l->json, n, sizeof(**ret_spans));
        if (n > 0 && !*ret_spans)
                return NULL;
        *ret_n = n;
        return arr;
}

bool platform_get_range(struct platform_loader *l, json_object *obj, const char *path, uint64_t *ret_base,
                        uint64_t *ret_end) {
        char b1[NUM_FMT_MAX], b2[NUM_FMT_MAX];
        uint64_t base = 0, size = 0, end;
        bool base_ok, size_ok;

        base_ok = json_get_u64(&l->json, obj, path, "base", JSON_REQUIRED, &base);
        size_ok = json_get_u64(&l->json, obj, path, "size", JSON_REQUIRED, &size);
        if (size_ok && size == 0) {
                _cleanup_(xfreep) char *p = json_loader_path_key(&l->json, path, "size");
                json_loader_error(&l->json, p, "size must not be zero");
                return false;
        }
        if (!base_ok || !size_ok)
                return false;
        if (num_range_end(base, size, &end) < 0) {
                _cleanup_(xfreep) char *p = json_loader_path_key(&l->json, path, "size");
                json_loader_error(&l->json, p, "base %s + size %s wraps past the end of the 64-bit address space",
                                  num_format_addr(base, b1), num_format_size(size, b2));
                return false;
        }
        *ret_base = base;
        *ret_end = end;
        return true;
}

/* A file with n entries yields at most n diagnostics. Quadratic, but n is bounded by the entry limits. */
void platform_check_overlaps(struct platform_loader *l, const char *path, const char *label, const struct span *s,
                             size_t n) {
        for (size_t j = 1; j < n; j++) {
                if (!s[j].ok)
                        continue;
                for (size_t i = 0; i < j; i++) {
                        _cleanup_(xfreep) char *p = NULL;
                        char buf[RANGE_FMT_MAX];

                        if (!s[i].ok || !num_ranges_overlap(s[i].base, s[i].end, s[j].base, s[j].end))
                                continue;
                        p = json_loader_path_index(&l->json, path, j);
                        json_loader_error(&l->json, p, "overlaps %s[%zu]%s%s%s %s", label, i, s[i].name ? " \"" : "",
                                          s[i].name ?: "", s[i].name ? "\"" : "",
                                          platform_format_range(s[i].base, s[i].end, buf));
                        break;
                }
        }
}

void platform_check_unique(struct platform_loader *l, const char *path, const struct span *s, size_t n) {
        _cleanup_(xfreep) const char **names = NULL;
        _cleanup_(xfreep) size_t *first = NULL;

        names = json_loader_alloc(&l->json, n, sizeof(*names));
        if (!names)
                return;
        for (size_t i = 0; i < n; i++)
                names[i] = s[i].name;
        first = json_loader_find_duplicates(&l->json, names, n);
        for (size_t i = 0; first && i < n; i++) {
                _cleanup_(xfreep) char *entry = NULL, *p = NULL;

                if (first[i] == SIZE_MAX)
                        continue;
                entry = json_loader_path_index(&l->json, path, i);
                p = json_loader_path_key(&l->json, entry, "name");
                json_loader_error(&l->json, p, "duplicate name \"%s\" (also used by %s[%zu])", names[i], path,
                                  first[i]);
        }
}
