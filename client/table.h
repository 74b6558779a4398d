/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Column-aligned text tables for brokerctl, in the style of busctl and virsh: one header
 * line (the legend, optional), then one line per row, columns separated by two spaces and
 * padded to the widest cell, no trailing blanks. Cells are filled left to right; a new row
 * starts when the previous one is full. Control characters in cells (which come from the
 * daemon, and so from other clients: labels, reasons) are shown as '?' so a cell cannot
 * drive the terminal; an empty cell is shown as "-" so every column stays a word.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "util/macro.h"

struct table;

/* headers: n_columns column titles (copied). Returns 0 or -EINVAL/-ENOMEM. */
int table_new(const char *const *headers, size_t n_columns, struct table **ret);
void table_free(struct table *t);
DEFINE_CLEANUP(struct table, table_free);

/* Appends one cell (copied; NULL shows as "-"). Returns 0 or -ENOMEM. */
int table_add_cell(struct table *t, const char *s);
int table_add_cellf(struct table *t, const char *fmt, ...) _printf_(2, 3);

size_t table_rows(const struct table *t);
/* Prints the legend (when asked) and every row; a partial last row is padded with "-". */
int table_print(const struct table *t, bool legend, FILE *f);
/*
 * The same, each column at least widths[i] wide (n_columns entries), which become the widths
 * printed: a table printed in parts (pages) stays aligned unless a later part is wider.
 */
int table_print_widths(const struct table *t, bool legend, size_t *widths, FILE *f);
