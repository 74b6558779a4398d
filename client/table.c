/* SPDX-License-Identifier: Apache-2.0 */
#include "table.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct table {
        size_t n_columns;
        char **headers;
        char **cells;
        size_t n_cells, cap;
};

/* A copy safe to print: control bytes become '?', "" becomes "-". */
static char *cell_dup(const char *s) {
        char *c;

        if (!s || !*s)
                return strdup("-");
        c = strdup(s);
        if (!c)
                return NULL;
        for (char *p = c; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = '?';
        return c;
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t cell_width(const char *s) {
        size_t w = 0;
        for (; *s; s++)
                if (((unsigned char) *s & 0xc0) != 0x80)
                        w++;
        return w;
}

void table_free(struct table *t) {
        if (!t)
                return;
        for (size_t i = 0; i < t->n_columns; i++)
                free(t->headers[i]);
        free(t->headers);
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
}

int table_new(const char *const *headers, size_t n_columns, struct table **ret) {
        _cleanup_(table_freep) struct table *t = NULL;

        if (!headers || n_columns == 0 || !ret)
                return -EINVAL;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->headers = calloc(n_columns, sizeof(char *));
        if (!t->headers)
                return -ENOMEM;
        t->n_columns = n_columns;
        for (size_t i = 0; i < n_columns; i++) {
                t->headers[i] = cell_dup(headers[i]);
                if (!t->headers[i])
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(t);
        return 0;
}

int table_add_cell(struct table *t, const char *s) {
        char *c;

        if (t->n_cells == t->cap) {
                size_t cap = t->cap ? t->cap * 2 : 16 * t->n_columns;
                char **p;

                if (cap > SIZE_MAX / sizeof(char *))
                        return -ENOMEM;
                p = realloc(t->cells, cap * sizeof(char *));
                if (!p)
                        return -ENOMEM;
                t->cells = p;
                t->cap = cap;
        }
        c = cell_dup(s);
        if (!c)
                return -ENOMEM;
        t->cells[t->n_cells++] = c;
        return 0;
}

int table_add_cellf(struct table *t, const char *fmt, ...) {
        _cleanup_(xfreep) char *s = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (r < 0) {
                s = NULL;
                return -ENOMEM;
        }
        return table_add_cell(t, s);
}

size_t table_rows(const struct table *t) {
        return (t->n_cells + t->n_columns - 1) / t->n_columns;
}

static void print_row(const struct table *t, char *const *row, size_t n, const size_t *widths, FILE *f) {
        for (size_t i = 0; i < t->n_columns; i++) {
                const char *s = i < n ? row[i] : "-";

                fputs(s, f);
                if (i + 1 < t->n_columns)
                        fprintf(f, "%*s", (int) (widths[i] - cell_width(s) + 2), "");
        }
        fputc('\n', f);
}

int table_print(const struct table *t, bool legend, FILE *f) {
        _cleanup_(xfreep) size_t *widths = calloc(t->n_columns, sizeof(size_t));

        if (!widths)
                return -ENOMEM;
        return table_print_widths(t, legend, widths, f);
}

int table_print_widths(const struct table *t, bool legend, size_t *widths, FILE *f) {
        for (size_t i = 0; i < t->n_columns; i++) {
                size_t w = legend ? cell_width(t->headers[i]) : 1; /* 1: a padding "-" */
                if (w > widths[i])
                        widths[i] = w;
        }
        for (size_t i = 0; i < t->n_cells; i++) {
                size_t w = cell_width(t->cells[i]);
                if (w > widths[i % t->n_columns])
                        widths[i % t->n_columns] = w;
        }

        if (legend)
                print_row(t, t->headers, t->n_columns, widths, f);
        for (size_t i = 0; i < t->n_cells; i += t->n_columns) {
                size_t n = t->n_cells - i < t->n_columns ? t->n_cells - i : t->n_columns;
                print_row(t, t->cells + i, n, widths, f);
        }
        return ferror(f) ? -EIO : 0;
}
