/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Diagnostics collected while loading a file: every problem with its JSON path
 * ("pools[2].base") and a reason, so a loader can report all of them at once.
 * Paths use the same dotted/indexed form everywhere; "" names the document itself.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include "macro.h"

enum diag_severity {
        DIAG_ERROR,
        DIAG_WARNING,
};

struct diag {
        enum diag_severity severity;
        char *path;
        char *message;
};

struct diag_list {
        struct diag *items;
        size_t n, cap;
};

#define DIAG_LIST_INIT {}

void diag_list_clear(struct diag_list *l);
/* Returns 0 or -ENOMEM; the list stays usable either way. */
int diag_add(struct diag_list *l, enum diag_severity sev, const char *path, const char *fmt, ...) _printf_(4, 5);
int diag_addv(struct diag_list *l, enum diag_severity sev, const char *path, const char *fmt, va_list ap)
        _printf_(4, 0);
size_t diag_count(const struct diag_list *l, enum diag_severity sev);
/* First diagnostic whose path equals path (any severity), or NULL. */
const struct diag *diag_find(const struct diag_list *l, const char *path);
/* One line each: "error: pools[2].base: 0x1234000 is not aligned to the pool granule 2MiB". */
void diag_list_print(const struct diag_list *l, const char *file, FILE *out);

/* Builds a child path: "" + "pools" -> "pools"; "pools" + [2] -> "pools[2]". */
char *diag_path_key(const char *parent, const char *key);
char *diag_path_index(const char *parent, size_t index);
