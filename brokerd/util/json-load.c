/* SPDX-License-Identifier: Apache-2.0 */
/* The loader's bookkeeping, bounded reads and strict parsing; the getters are in json-get.c. */
#include "json-load.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json-strict.h"
#include "num.h"

void json_loader_report(struct json_loader *l, enum diag_severity sev, const char *path, const char *fmt, ...) {
        va_list ap;

        if (sev == DIAG_ERROR)
                l->n_errors++;
        va_start(ap, fmt);
        if (diag_addv(l->diags, sev, path, fmt, ap) < 0)
                l->oom = true;
        va_end(ap);
}

int json_loader_result(const struct json_loader *l) {
        if (l->oom)
                return -ENOMEM;
        return l->n_errors > 0 ? -EINVAL : 0;
}

char *json_loader_path_key(struct json_loader *l, const char *parent, const char *key) {
        char *p = diag_path_key(parent, key);
        if (!p)
                l->oom = true;
        return p;
}

char *json_loader_path_index(struct json_loader *l, const char *parent, size_t index) {
        char *p = diag_path_index(parent, index);
        if (!p)
                l->oom = true;
        return p;
}

void *json_loader_alloc(struct json_loader *l, size_t n, size_t size) {
        void *p;

        if (n == 0)
                return NULL;
        p = calloc(n, size);
        if (!p)
                l->oom = true;
        return p;
}

char *json_loader_strdup(struct json_loader *l, const char *s) {
        char *d = strdup(s);
        if (!d)
                l->oom = true;
        return d;
}

static int name_index_compare(const void *a, const void *b, void *userdata) {
        const char *const *names = userdata;
        size_t i = *(const size_t *) a, j = *(const size_t *) b;
        int c = strcmp(names[i], names[j]);

        if (c != 0)
                return c;
        return i < j ? -1 : i > j;
}

size_t *json_loader_find_duplicates(struct json_loader *l, const char *const *names, size_t n) {
        _cleanup_(xfreep) size_t *order = NULL, *first = NULL;
        size_t m = 0;

        order = json_loader_alloc(l, n, sizeof(*order));
        first = json_loader_alloc(l, n, sizeof(*first));
        if (!order || !first)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                first[i] = SIZE_MAX;
                if (names[i])
                        order[m++] = i;
        }
        qsort_r(order, m, sizeof(*order), name_index_compare, (void *) names);
        for (size_t k = 1, start = 0; k < m; k++) {
                if (strcmp(names[order[k]], names[order[start]]) == 0)
                        first[order[k]] = order[start];
                else
                        start = k;
        }
        return TAKE_PTR(first);
}

static void offset_position(const char *text, size_t offset, size_t *ret_line, size_t *ret_column) {
        size_t line = 1, column = 1;

        for (size_t i = 0; i < offset; i++) {
                if (text[i] == '\n') {
                        line++;
                        column = 1;
                } else
                        column++;
        }
        *ret_line = line;
        *ret_column = column;
}

/* Always -EINVAL, or -ENOMEM when the diagnostic could not be recorded. */
static int syntax_error(struct diag_list *diags, const char *text, size_t offset, const char *what) {
        size_t line, column;

        offset_position(text, offset, &line, &column);
        if (diag_add(diags, DIAG_ERROR, "", "invalid JSON at line %zu, column %zu: %s", line, column, what) < 0)
                return -ENOMEM;
        return -EINVAL;
}

static void json_tokener_freep(struct json_tokener **t) {
        if (*t)
                json_tokener_free(*t);
}

static int too_big(struct diag_list *diags, const char *what, size_t limit) {
        char buf[NUM_FMT_MAX];

        if (diag_add(diags, DIAG_ERROR, "", "%s is larger than the limit of %s", what, num_format_size(limit, buf)) < 0)
                return -ENOMEM;
        return -EFBIG;
}

/* text[len] must be a NUL byte. */
static int parse_text(const char *text, size_t len, const struct json_load_limits *limits, struct diag_list *diags,
                      json_object **ret) {
        _cleanup_(json_tokener_freep) struct json_tokener *tok = NULL;
        _cleanup_(json_object_unrefp) json_object *root = NULL;
        enum json_tokener_error jerr;
        const char *nul, *why;
        size_t end;

        nul = memchr(text, 0, len);
        if (nul)
                return syntax_error(diags, text, (size_t) (nul - text), "NUL byte in input");

        tok = json_tokener_new_ex(limits->max_depth);
        if (!tok)
                return -ENOMEM;
        /* Strict: no comments or trailing commas, and nothing but white space after the
         * document, so the loaders accept what the JSON Schema tools accept. */
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
        /* Passing the terminating NUL tells json-c the input ends there. */
        root = json_tokener_parse_ex(tok, text, (int) len + 1);
        jerr = json_tokener_get_error(tok);
        end = json_tokener_get_parse_end(tok);
        if (end > len)
                end = len;
        if (jerr != json_tokener_success)
                return syntax_error(diags, text, end,
                                    jerr == json_tokener_continue ? "unexpected end of input"
                                                                  : json_tokener_error_desc(jerr));
        /* What json-c let through but is not JSON, or not what was written (a clamped
         * integer, a lone surrogate escape turned into U+FFFD, an overlong UTF-8 form). */
        if (json_strict_check(text, len, &end, &why) < 0)
                return syntax_error(diags, text, end, why);

        *ret = TAKE_PTR(root);
        return 0;
}

int json_load_string(const char *text, const struct json_load_limits *limits, struct diag_list *diags,
                     json_object **ret) {
        size_t len;

        if (!text || !limits || !ret)
                return -EINVAL;
        len = strnlen(text, limits->max_size + 1);
        if (len > limits->max_size)
                return too_big(diags, "input", limits->max_size);
        return parse_text(text, len, limits, diags, ret);
}

/* *ret_opened says whether a failure came after the file was opened. */
static int read_bounded(const char *path, size_t max, char **ret, size_t *ret_len, bool *ret_opened) {
        _cleanup_(closep) int fd = -EBADF;
        _cleanup_(xfreep) char *buf = NULL;
        size_t len = 0, cap;
        struct stat st;

        *ret_opened = false;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        *ret_opened = true;
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (S_ISREG(st.st_mode) && (uint64_t) st.st_size > max)
                return -EFBIG;

        /* Room for one byte past the limit, so that a growing file or a pipe is caught too;
         * a regular file's size is only a hint (sysfs claims 4096 for everything). */
        cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t) st.st_size + 1 : 4096;
        if (cap > max + 1)
                cap = max + 1;
        buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n;

                if (len == cap) {
                        size_t ncap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
                        char *nbuf;

                        if (ncap <= cap)
                                return -EFBIG;
                        nbuf = realloc(buf, ncap + 1);
                        if (!nbuf)
                                return -ENOMEM;
                        buf = nbuf;
                        cap = ncap;
                }
                n = read(fd, buf + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        if (len > max)
                return -EFBIG;
        buf[len] = '\0';
        if (ret_len)
                *ret_len = len;
        *ret = TAKE_PTR(buf);
        return 0;
}

int json_read_file_bounded(const char *path, size_t max, char **ret, size_t *ret_len) {
        bool opened;

        if (!path || !ret)
                return -EINVAL;
        return read_bounded(path, max, ret, ret_len, &opened);
}

int json_load_file(const char *path, const struct json_load_limits *limits, struct diag_list *diags,
                   json_object **ret) {
        _cleanup_(xfreep) char *buf = NULL;
        bool opened;
        size_t len;
        int r;

        if (!path || !limits || !ret)
                return -EINVAL;
        r = read_bounded(path, limits->max_size, &buf, &len, &opened);
        if (r == -EFBIG)
                return too_big(diags, "file", limits->max_size);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                (void) diag_add(diags, DIAG_ERROR, "", "cannot %s: %s", opened ? "read" : "open", strerror(-r));
                return r;
        }
        return parse_text(buf, len, limits, diags, ret);
}
