/* SPDX-License-Identifier: Apache-2.0 */
/* brokerctl's output: tables and key/value views of replies, JSON, events, errors. */
#include "brokerctl.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "brokerctl-util.h"

void json_putp(struct json_object **o) {
        if (*o)
                json_object_put(*o);
}

int print_error(const struct bdc_error *err, int r) {
        fprintf(stderr, "brokerctl: %s: %s\n", bdc_error_name(err), err->message[0] ? err->message : strerror(-r));
        return r;
}

int call(struct bdc *c, const char *method, struct json_object *params, struct json_object **ret) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        int r;

        r = bdc_call(c, method, params, ret, NULL, NULL, &err);
        if (r < 0)
                return print_error(&err, r);
        return 0;
}

int print_json(struct json_object *o) {
        const char *s = json_object_to_json_string_ext(
                o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return -ENOMEM;
        puts(s);
        return 0;
}

int add_member(struct json_object *o, const char *key, struct json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

int oom(void) {
        fputs("brokerctl: no_memory: out of memory\n", stderr);
        return -ENOMEM;
}

static enum kind kind_for_key(const char *key) {
        static const char *const bytes[] = {
                "size", "used", "free", "granule", "alignment", "bytes_owned", "max_message", "max_pending_bytes",
                "max_region",
        };
        size_t len = strlen(key);

        if (len > 5 && strcmp(key + len - 5, "_usec") == 0)
                return strncmp(key, "uptime", 6) == 0 ? KIND_DURATION : KIND_TIME;
        if (strcmp(key, "base") == 0)
                return KIND_ADDR;
        if (strcmp(key, "max_bytes") == 0)
                return KIND_LIMIT_BYTES;
        if (strcmp(key, "max_regions") == 0)
                return KIND_LIMIT_COUNT;
        if (strcmp(key, "peers") == 0)
                return KIND_PEERS;
        if (strcmp(key, "pairs") == 0)
                return KIND_PAIRS;
        for (size_t i = 0; i < ELEMENTSOF(bytes); i++)
                if (strcmp(key, bytes[i]) == 0)
                        return KIND_BYTES;
        return KIND_PLAIN;
}

/*
 * A mapping on its way out, as a suffix: "+unplugging" until the deadline and grace pass,
 * then "+overdue(<escalation>)", so a guest holding a revoked range stands out in lists.
 */
static char *format_unplug(struct json_object *u) {
        struct json_object *esc = NULL, *failed = NULL;

        if (!u || !json_object_is_type(u, json_type_object))
                return strdup("");
        json_object_object_get_ex(u, "failed", &failed);
        if (json_object_object_get_ex(u, "escalation", &esc) && json_object_is_type(esc, json_type_string)) {
                char *s;
                if (asprintf(&s, "+overdue(%s)", json_object_get_string(esc)) < 0)
                        return NULL;
                return s;
        }
        return strdup(failed && json_object_get_boolean(failed) ? "+unplug-refused" : "+unplugging");
}

/* "domain:access:state[+unplug]" for one peer of a region. */
static char *format_peer(struct json_object *p) {
        _cleanup_(xfreep) char *ds = NULL, *as = NULL, *ss = NULL, *us = NULL;
        struct json_object *d = NULL, *a = NULL, *st = NULL, *u = NULL;
        char *one;

        json_object_object_get_ex(p, "domain", &d);
        json_object_object_get_ex(p, "access", &a);
        json_object_object_get_ex(p, "state", &st);
        json_object_object_get_ex(p, "unplug", &u);
        ds = format_json_value(d);
        as = format_json_value(a);
        ss = format_json_value(st);
        us = format_unplug(u);
        if (!ds || !as || !ss || !us || asprintf(&one, "%s:%s:%s%s", ds, as, ss, us) < 0)
                return NULL;
        return one;
}

/* "from>to" for one live doorbell pair (docs/protocol.md "Doorbells"). */
static char *format_pair(struct json_object *p) {
        _cleanup_(xfreep) char *from = NULL, *to = NULL;
        struct json_object *f = NULL, *t = NULL;
        char *one;

        json_object_object_get_ex(p, "from", &f);
        json_object_object_get_ex(p, "to", &t);
        from = format_json_value(f);
        to = format_json_value(t);
        if (!from || !to || asprintf(&one, "%s>%s", from, to) < 0)
                return NULL;
        return one;
}

/* An array's elements joined with commas, objects by format_one, anything else as JSON text. */
static char *format_list(struct json_object *v, char *(*format_one)(struct json_object *)) {
        size_t n = json_object_array_length(v), len = 0;
        char *s = strdup("");

        for (size_t i = 0; s && i < n; i++) {
                struct json_object *p = json_object_array_get_idx(v, i);
                _cleanup_(xfreep) char *one = NULL;
                char *ns;

                one = json_object_is_type(p, json_type_object) ? format_one(p) : format_json_value(p);
                if (!one) {
                        free(s);
                        return NULL;
                }
                ns = realloc(s, len + strlen(one) + 2);
                if (!ns) {
                        free(s);
                        return NULL;
                }
                s = ns;
                len += (size_t) sprintf(s + len, "%s%s", i > 0 ? "," : "", one);
        }
        return s;
}

static char *format_cell(struct json_object *v, enum kind kind) {
        char buf[FORMAT_MAX];
        uint64_t u;

        if (!v)
                return strdup("-");

        switch (kind) {
        case KIND_BYTES:
                if (json_to_u64(v, &u) >= 0)
                        return strdup(format_bytes(u, buf));
                break;
        case KIND_LIMIT_BYTES:
        case KIND_LIMIT_COUNT:
                if (json_to_u64(v, &u) >= 0) {
                        if (u == UINT64_MAX)
                                return strdup("unlimited");
                        if (kind == KIND_LIMIT_BYTES)
                                return strdup(format_bytes(u, buf));
                        snprintf(buf, sizeof(buf), "%" PRIu64, u);
                        return strdup(buf);
                }
                break;
        case KIND_ADDR:
                if (json_object_is_type(v, json_type_int) && json_to_u64(v, &u) >= 0) {
                        snprintf(buf, sizeof(buf), "0x%" PRIx64, u);
                        return strdup(buf);
                }
                break;
        case KIND_TIME:
                if (json_to_u64(v, &u) >= 0)
                        return strdup(format_time_usec(u, buf));
                break;
        case KIND_DURATION:
                if (json_to_u64(v, &u) >= 0)
                        return strdup(format_duration_usec(u, buf));
                break;
        case KIND_PEERS:
        case KIND_PAIRS:
                if (json_object_is_type(v, json_type_array))
                        return format_list(v, kind == KIND_PEERS ? format_peer : format_pair);
                break;
        case KIND_PLAIN:
                break;
        }
        return format_json_value(v);
}

static int table_add_json(struct table *t, struct json_object *v, enum kind kind) {
        _cleanup_(xfreep) char *s = format_cell(v, kind);
        if (!s)
                return -ENOMEM;
        return table_add_cell(t, s);
}

/* One "label:" / value row per member; nested objects become "parent.key" rows. */
static int kv_add_member(struct table *t, const char *prefix, const char *key, struct json_object *v) {
        _cleanup_(xfreep) char *label = NULL;
        size_t len = strlen(key);
        int r;

        if (json_object_is_type(v, json_type_object)) {
                _cleanup_(xfreep) char *p = NULL;

                if (asprintf(&p, "%s%s.", prefix, key) < 0)
                        return -ENOMEM;
                json_object_object_foreach(v, k, sub) {
                        r = kv_add_member(t, p, k, sub);
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        if (len > 5 && strcmp(key + len - 5, "_usec") == 0)
                len -= 5;
        if (asprintf(&label, "%s%.*s:", prefix, (int) len, key) < 0)
                return -ENOMEM;
        r = table_add_cell(t, label);
        if (r < 0)
                return r;
        return table_add_json(t, v, kind_for_key(key));
}

/* The members named in order first, then the rest as they come. */
int kv_add_object(struct table *t, struct json_object *o, const char *const *order, size_t n_order) {
        int r;

        for (size_t i = 0; i < n_order; i++) {
                struct json_object *v;
                if (json_object_object_get_ex(o, order[i], &v)) {
                        r = kv_add_member(t, "", order[i], v);
                        if (r < 0)
                                return r;
                }
        }
        json_object_object_foreach(o, key, v) {
                size_t i;
                for (i = 0; i < n_order; i++)
                        if (strcmp(key, order[i]) == 0)
                                break;
                if (i < n_order)
                        continue;
                r = kv_add_member(t, "", key, v);
                if (r < 0)
                        return r;
        }
        return 0;
}

int kv_table_new(struct table **ret) {
        static const char *const headers[] = { "NAME", "VALUE" };
        return table_new(headers, ELEMENTSOF(headers), ret);
}

/* Key/value views (status, show, revoke, reload) have no legend: the names are the rows. */
int print_kv(struct json_object *o, const char *const *order, size_t n_order) {
        _cleanup_(table_freep) struct table *t = NULL;

        if (kv_table_new(&t) < 0 || kv_add_object(t, o, order, n_order) < 0)
                return oom();
        return table_print(t, false, stdout);
}

/* Pretty JSON text has no newline inside a string: each line is one line of the structure. */
int print_json_element(struct json_object *v, size_t n, unsigned depth) {
        const char *s = json_object_to_json_string_ext(
                v, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);

        if (!s)
                return oom();
        if (n > 0)
                fputs(",\n", stdout);
        while (*s) {
                size_t len = strcspn(s, "\n");

                printf("%*s%.*s", (int) (2 * depth), "", (int) len, s);
                s += len;
                if (*s) {
                        putchar('\n');
                        s++;
                }
        }
        return 0;
}

int print_array(struct json_object *result, const char *member, const struct column *cols, size_t n_cols,
                       bool legend) {
        struct json_object *a;

        if (!json_object_object_get_ex(result, member, &a) || !json_object_is_type(a, json_type_array)) {
                fprintf(stderr, "brokerctl: protocol_error: the reply has no \"%s\" array\n", member);
                return -EBADMSG;
        }
        return print_rows(a, cols, n_cols, legend, NULL);
}

int print_rows(struct json_object *a, const struct column *cols, size_t n_cols, bool legend, size_t *widths) {
        _cleanup_(table_freep) struct table *t = NULL;
        const char *headers[16];
        size_t n;

        for (size_t i = 0; i < n_cols && i < ELEMENTSOF(headers); i++)
                headers[i] = cols[i].header;
        if (table_new(headers, n_cols, &t) < 0)
                return oom();

        n = json_object_array_length(a);
        for (size_t i = 0; i < n; i++) {
                struct json_object *row = json_object_array_get_idx(a, i);
                for (size_t j = 0; j < n_cols; j++) {
                        struct json_object *v = NULL;
                        if (json_object_is_type(row, json_type_object))
                                json_object_object_get_ex(row, cols[j].key, &v);
                        if (table_add_json(t, v, cols[j].kind) < 0)
                                return oom();
                }
        }
        return widths ? table_print_widths(t, legend, widths, stdout) : table_print(t, legend, stdout);
}

int print_event(const struct bdc_event *ev, bool json) {
        _cleanup_(xfreep) char *line = NULL;

        if (json) {
                _cleanup_(json_putp) struct json_object *o = json_object_new_object();
                const char *s;

                if (!o || add_member(o, "method", json_object_new_string(ev->method)) < 0 ||
                    add_member(o, "params", json_object_get(ev->params)) < 0)
                        return oom();
                s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
                if (!s)
                        return oom();
                puts(s);
        } else {
                if (format_event_line(ev->method, ev->params, &line) < 0)
                        return oom();
                puts(line);
        }
        /* A reader on a pipe (a script, `grep --line-buffered`) wants each event as it happens. */
        fflush(stdout);
        return 0;
}

