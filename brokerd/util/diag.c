/* SPDX-License-Identifier: Apache-2.0 */
#include "diag.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void diag_list_clear(struct diag_list *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].path);
                free(l->items[i].message);
        }
        free(l->items);
        *l = (struct diag_list) {};
}

int diag_addv(struct diag_list *l, enum diag_severity sev, const char *path, const char *fmt, va_list ap) {
        _cleanup_(xfreep) char *p = NULL, *m = NULL;

        if (!l)
                return 0;
        if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 8;
                struct diag *items = reallocarray(l->items, cap, sizeof(*items));
                if (!items)
                        return -ENOMEM;
                l->items = items;
                l->cap = cap;
        }
        p = strdup(path ?: "");
        if (!p)
                return -ENOMEM;
        if (vasprintf(&m, fmt, ap) < 0) {
                m = NULL; /* undefined after a failure */
                return -ENOMEM;
        }
        l->items[l->n++] = (struct diag) { .severity = sev, .path = TAKE_PTR(p), .message = TAKE_PTR(m) };
        return 0;
}

int diag_add(struct diag_list *l, enum diag_severity sev, const char *path, const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = diag_addv(l, sev, path, fmt, ap);
        va_end(ap);
        return r;
}

size_t diag_count(const struct diag_list *l, enum diag_severity sev) {
        size_t c = 0;
        for (size_t i = 0; l && i < l->n; i++)
                c += l->items[i].severity == sev;
        return c;
}

const struct diag *diag_find(const struct diag_list *l, const char *path) {
        for (size_t i = 0; l && i < l->n; i++)
                if (strcmp(l->items[i].path, path) == 0)
                        return &l->items[i];
        return NULL;
}

void diag_list_print(const struct diag_list *l, const char *file, FILE *out) {
        for (size_t i = 0; i < l->n; i++) {
                const struct diag *d = &l->items[i];
                fprintf(out, "%s%s%s: %s%s%s\n",
                        file ?: "", file ? ": " : "",
                        d->severity == DIAG_ERROR ? "error" : "warning",
                        d->path, d->path[0] ? ": " : "", d->message);
        }
}

char *diag_path_key(const char *parent, const char *key) {
        char *s;
        if (asprintf(&s, "%s%s%s", parent ?: "", parent && parent[0] ? "." : "", key) < 0)
                return NULL;
        return s;
}

char *diag_path_index(const char *parent, size_t index) {
        char *s;
        if (asprintf(&s, "%s[%zu]", parent ?: "", index) < 0)
                return NULL;
        return s;
}
