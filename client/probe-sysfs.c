/* SPDX-License-Identifier: Apache-2.0 */
/* Reading what the host shows under the probe's root: attributes, numbers, directories. */
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
#include "util/num.h"

_printf_(2, 3) void probe_note(const struct probe *p, const char *fmt, ...) {
        va_list ap;

        if (!p->report)
                return;
        fputs("probe: ", p->report);
        va_start(ap, fmt);
        vfprintf(p->report, fmt, ap);
        va_end(ap);
        fputc('\n', p->report);
}

/* Makes room for need items in *items (an array of size-byte items with capacity *cap). */
int probe_grow(void *items, size_t *cap, size_t need, size_t size) {
        void **p = items;
        size_t ncap;
        void *n;

        if (need <= *cap)
                return 0;
        ncap = *cap > 0 ? *cap * 2 : 16;
        if (ncap < need)
                ncap = need;
        n = reallocarray(*p, ncap, size);
        if (!n)
                return -ENOMEM;
        *p = n;
        *cap = ncap;
        return 0;
}

void probe_range_list_clear(struct range_list *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->items[i].name);
        free(l->items);
        *l = (struct range_list) {};
}

/* Takes name (may be NULL), also on failure. */
int probe_range_list_add(struct range_list *l, uint64_t base, uint64_t end, uint32_t node, char *name) {
        if (probe_grow(&l->items, &l->cap, l->n + 1, sizeof(*l->items)) < 0) {
                free(name);
                return -ENOMEM;
        }
        l->items[l->n++] = (struct range) { .base = base, .end = end, .node = node, .name = name };
        return 0;
}

int probe_range_compare(const void *a, const void *b) {
        const struct range *x = a, *y = b;

        if (x->base != y->base)
                return x->base < y->base ? -1 : 1;
        return x->end < y->end ? -1 : x->end > y->end;
}

_printf_(2, 3) char *probe_path(const struct probe *p, const char *fmt, ...) {
        char *rel = NULL, *s = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&rel, fmt, ap);
        va_end(ap);
        if (r < 0)
                return NULL;
        if (asprintf(&s, "%s%s", p->root, rel) < 0)
                s = NULL;
        free(rel);
        return s;
}

int probe_read_file(const char *path, size_t max, char **ret) {
        _cleanup_(xfreep) char *buf = NULL;
        size_t len;
        int r;

        r = json_read_file_bounded(path, max, &buf, &len);
        if (r < 0)
                return r;
        if (memchr(buf, 0, len))
                return -EBADMSG;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* A one-value attribute, without its trailing newline. */
int probe_read_attr(const char *path, char **ret) {
        char *s = NULL;
        size_t n;
        int r;

        r = probe_read_file(path, ATTR_MAX, &s);
        if (r < 0)
                return r;
        n = strlen(s);
        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t'))
                s[--n] = '\0';
        *ret = s;
        return 0;
}

int probe_parse_hex(const char *s, size_t len, uint64_t *ret) {
        uint64_t v = 0;

        if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
                s += 2;
                len -= 2;
        }
        if (len == 0)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                unsigned d;

                if (c >= '0' && c <= '9')
                        d = (unsigned) (c - '0');
                else if (c >= 'a' && c <= 'f')
                        d = (unsigned) (c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        d = (unsigned) (c - 'A' + 10);
                else
                        return -EINVAL;
                if (v >> 60)
                        return -ERANGE;
                v = v << 4 | d;
        }
        *ret = v;
        return 0;
}

int probe_parse_dec(const char *s, size_t len, uint64_t *ret) {
        uint64_t v = 0;

        if (len == 0)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t) (s[i] - '0'), &v))
                        return -ERANGE;
        }
        *ret = v;
        return 0;
}

/*
 * A number attribute; on failure the reason is noted and a negative errno returned, except
 * for a missing file when quiet_missing (the caller says it better).
 */
int probe_read_number(const struct probe *p, const char *path, bool hex, bool quiet_missing, uint64_t *ret) {
        _cleanup_(xfreep) char *s = NULL;
        int r;

        r = probe_read_attr(path, &s);
        if (r == -ENOMEM)
                return r;
        if (r >= 0) {
                r = hex ? probe_parse_hex(s, strlen(s), ret) : probe_parse_dec(s, strlen(s), ret);
                if (r < 0) {
                        probe_note(p, "%s: not a %s number", path, hex ? "hexadecimal" : "decimal");
                        return r;
                }
                return 0;
        }
        if (!(quiet_missing && r == -ENOENT))
                probe_note(p, "%s: %s", path, strerror(-r));
        return r;
}

/* name is prefix, decimal digits, suffix; the number goes to *ret. */
bool probe_match_number(const char *name, const char *prefix, const char *suffix, uint64_t *ret) {
        size_t lp = strlen(prefix), ls = strlen(suffix), n = strlen(name);

        if (n <= lp + ls || strncmp(name, prefix, lp) != 0 || strcmp(name + n - ls, suffix) != 0)
                return false;
        return probe_parse_dec(name + lp, n - lp - ls, ret) >= 0;
}

void probe_entries_clear(struct entries *e) {
        for (size_t i = 0; i < e->n; i++)
                free(e->names[i]);
        free(e->names);
        *e = (struct entries) {};
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

static int name_compare(const void *a, const void *b) {
        return strverscmp(*(char *const *) a, *(char *const *) b);
}

/*
 * The entries of a directory in natural order ("memory2" before "memory10"): with a prefix,
 * those named prefix<number>suffix; without, all but the dot files.
 */
int probe_list_dir(const char *path, const char *prefix, const char *suffix, struct entries *ret) {
        _cleanup_(probe_entries_clear) struct entries e = {};
        _cleanup_(closedirp) DIR *d = NULL;

        d = opendir(path);
        if (!d)
                return negative_errno();
        for (;;) {
                struct dirent *de;
                uint64_t number;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return negative_errno();
                        break;
                }
                if (prefix ? !probe_match_number(de->d_name, prefix, suffix, &number) : de->d_name[0] == '.')
                        continue;
                if (e.n >= DIR_MAX_ENTRIES)
                        return -E2BIG;
                if (probe_grow(&e.names, &e.cap, e.n + 1, sizeof(*e.names)) < 0)
                        return -ENOMEM;
                e.names[e.n] = strdup(de->d_name);
                if (!e.names[e.n])
                        return -ENOMEM;
                e.n++;
        }
        if (e.n > 1)
                qsort(e.names, e.n, sizeof(*e.names), name_compare);
        *ret = e;
        e = (struct entries) {};
        return 0;
}
