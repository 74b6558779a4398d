/* SPDX-License-Identifier: Apache-2.0 */
#include "brokerctl-util.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "brokerd-client.h"
#include "util/macro.h"
#include "util/num.h"

#define USEC_PER_MSEC UINT64_C(1000)
#define USEC_PER_SEC UINT64_C(1000000)

int parse_deadline_ms(const char *s, uint64_t *ret) {
        uint64_t usec;
        int r;

        r = num_parse_duration_usec(s, &usec, NULL);
        if (r < 0)
                return r;
        *ret = usec / USEC_PER_MSEC;
        return 0;
}

int parse_since_usec(const char *s, uint64_t now_usec, uint64_t *ret) {
        uint64_t usec;
        bool unit;
        int r;

        r = num_parse_duration_usec(s, &usec, &unit);
        if (r < 0)
                return r;
        if (!unit) {
                *ret = usec; /* seconds since the epoch, already scaled */
                return 0;
        }
        if (usec > now_usec)
                return -ERANGE;
        *ret = now_usec - usec;
        return 0;
}

const char *format_bytes(uint64_t v, char buf[static FORMAT_MAX]) {
        static const char *const units[] = { "EiB", "PiB", "TiB", "GiB", "MiB", "KiB" };

        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                unsigned shift = 10 * (unsigned) (ELEMENTSOF(units) - i);
                if (v != 0 && (v & ((UINT64_C(1) << shift) - 1)) == 0) {
                        snprintf(buf, FORMAT_MAX, "%" PRIu64 "%s", v >> shift, units[i]);
                        return buf;
                }
        }
        snprintf(buf, FORMAT_MAX, "%" PRIu64, v);
        return buf;
}

const char *format_time_usec(uint64_t usec, char buf[static FORMAT_MAX]) {
        time_t sec = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        char day[32];

        if (usec == 0 || !gmtime_r(&sec, &tm) || strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
                snprintf(buf, FORMAT_MAX, usec == 0 ? "-" : "%" PRIu64, usec);
                return buf;
        }
        snprintf(buf, FORMAT_MAX, "%s.%03uZ", day, (unsigned) (usec % USEC_PER_SEC / USEC_PER_MSEC));
        return buf;
}

const char *format_duration_usec(uint64_t usec, char buf[static FORMAT_MAX]) {
        static const struct {
                const char *unit;
                uint64_t usec;
        } units[] = {
                { "d", 86400 * USEC_PER_SEC }, { "h", 3600 * USEC_PER_SEC }, { "min", 60 * USEC_PER_SEC },
                { "s", USEC_PER_SEC },
        };
        size_t n = 0;

        if (usec < USEC_PER_SEC) {
                snprintf(buf, FORMAT_MAX, usec == 0 ? "0" : "%" PRIu64 "ms", usec / USEC_PER_MSEC);
                return buf;
        }
        buf[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                uint64_t k = usec / units[i].usec;
                if (k == 0)
                        continue;
                usec %= units[i].usec;
                n += (size_t) snprintf(buf + n, FORMAT_MAX - n, "%s%" PRIu64 "%s", n ? " " : "", k, units[i].unit);
                if (n >= FORMAT_MAX)
                        break;
        }
        return buf;
}

int json_to_u64(struct json_object *v, uint64_t *ret) {
        if (json_object_is_type(v, json_type_int)) {
                if (json_object_get_int64(v) < 0)
                        return -ERANGE;
                *ret = json_object_get_uint64(v);
                return 0;
        }
        if (json_object_is_type(v, json_type_string))
                return bdc_parse_u64(json_object_get_string(v), ret);
        return -EINVAL;
}

char *format_json_value(struct json_object *v) {
        switch (json_object_get_type(v)) {
        case json_type_null:
                return strdup("-");
        case json_type_boolean:
                return strdup(json_object_get_boolean(v) ? "yes" : "no");
        case json_type_int: {
                char *s;
                int64_t i = json_object_get_int64(v);

                int r = i < 0 ? asprintf(&s, "%" PRId64, i) : asprintf(&s, "%" PRIu64, json_object_get_uint64(v));

                if (r < 0)
                        return NULL;
                return s;
        }
        case json_type_string:
                return strdup(json_object_get_string(v));
        case json_type_array: {
                size_t n = json_object_array_length(v), len = 0;
                char *s = strdup("");

                for (size_t i = 0; s && i < n; i++) {
                        _cleanup_(xfreep) char *e = format_json_value(json_object_array_get_idx(v, i));
                        size_t elen;
                        char *p;

                        if (!e) {
                                free(s);
                                return NULL;
                        }
                        elen = strlen(e);
                        p = realloc(s, len + elen + 2);
                        if (!p) {
                                free(s);
                                return NULL;
                        }
                        s = p;
                        if (i > 0)
                                s[len++] = ',';
                        memcpy(s + len, e, elen + 1);
                        len += elen;
                }
                return s;
        }
        default: {
                const char *j = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
                return j ? strdup(j) : NULL;
        }
        }
}

/* Shown first, in this order; "deadline_usec" is shown as "deadline". */
static const char *const event_first[] = { "region", "domain", "deadline_usec", "owner", "device", "reason" };

static void json_putp(struct json_object **o) {
        if (*o)
                json_object_put(*o);
}

static bool needs_quoting(const char *s) {
        if (!*s)
                return true;
        for (; *s; s++)
                if ((unsigned char) *s <= ' ' || *s == '"' || *s == '=' || *s == '\\' || *s == 0x7f)
                        return true;
        return false;
}

/* Appends " key=value" to *buf (malloc'ed, *len bytes). */
static int append_pair(char **buf, size_t *len, const char *key, const char *value) {
        _cleanup_(json_putp) struct json_object *q = NULL;
        const char *v = value;
        size_t klen, vlen;
        char *p;

        if (needs_quoting(value)) {
                /* JSON string escapes cover quotes, backslashes and control characters. */
                q = json_object_new_string(value);
                if (!q)
                        return -ENOMEM;
                v = json_object_to_json_string_ext(q, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
                if (!v)
                        return -ENOMEM;
        }
        klen = strlen(key);
        vlen = strlen(v);
        p = realloc(*buf, *len + klen + vlen + 3);
        if (!p)
                return -ENOMEM;
        *buf = p;
        p += *len;
        *p++ = ' ';
        memcpy(p, key, klen);
        p += klen;
        *p++ = '=';
        memcpy(p, v, vlen + 1);
        *len += klen + vlen + 2;
        return 0;
}

static bool is_first(const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(event_first); i++)
                if (strcmp(key, event_first[i]) == 0)
                        return true;
        return false;
}

int format_event_line(const char *method, struct json_object *params, char **ret) {
        _cleanup_(xfreep) char *buf = NULL;
        size_t len;
        int r;

        buf = strdup(method ?: "-");
        if (!buf)
                return -ENOMEM;
        len = strlen(buf);

        for (size_t i = 0; i < ELEMENTSOF(event_first); i++) {
                _cleanup_(xfreep) char *text = NULL;
                bool deadline = strcmp(event_first[i], "deadline_usec") == 0;
                struct json_object *val;
                char tbuf[FORMAT_MAX];
                uint64_t usec;

                if (!json_object_object_get_ex(params, event_first[i], &val) || !val)
                        continue;
                if (deadline && json_to_u64(val, &usec) >= 0)
                        text = strdup(format_time_usec(usec, tbuf));
                else
                        text = format_json_value(val);
                if (!text)
                        return -ENOMEM;
                r = append_pair(&buf, &len, deadline ? "deadline" : event_first[i], text);
                if (r < 0)
                        return r;
        }

        if (json_object_is_type(params, json_type_object)) {
                json_object_object_foreach(params, key, val) {
                        _cleanup_(xfreep) char *text = NULL;

                        if (!val || is_first(key))
                                continue;
                        text = format_json_value(val);
                        if (!text)
                                return -ENOMEM;
                        r = append_pair(&buf, &len, key, text);
                        if (r < 0)
                                return r;
                }
        }

        *ret = TAKE_PTR(buf);
        return 0;
}
