/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bench-common.h"

int bench_parse_u64(const char *s, const char *what, uint64_t min, uint64_t max, uint64_t *ret) {
        uint64_t v;

        if (bdc_parse_u64(s, &v) < 0 || v < min || v > max) {
                fprintf(stderr, "%s: %s must be a number in %" PRIu64 "..%" PRIu64 ", not '%s'\n", bench_program,
                        what, min, max, s);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

int bench_parse_unsigned(const char *s, const char *what, unsigned min, unsigned max, unsigned *ret) {
        uint64_t v;
        int r;

        r = bench_parse_u64(s, what, min, max, &v);
        if (r < 0)
                return r;
        *ret = (unsigned) v;
        return 0;
}

int bench_fail_rpc(const char *what, int r, const struct bdc_error *err) {
        fprintf(stderr, "%s: %s failed: %s", bench_program, what, strerror(-r));
        if (err->code != 0 || err->name[0])
                fprintf(stderr, " (%s: %s)", bdc_error_name(err), err->message);
        fputc('\n', stderr);
        return r;
}

int bench_call(struct bdc *c, const char *method, struct json_object *params, struct json_object **ret_result) {
        struct bdc_error err = BDC_ERROR_INIT;
        struct json_object *result = NULL;
        int r;

        r = bdc_call(c, method, params, &result, NULL, NULL, &err);
        if (r < 0) {
                bench_fail_rpc(method, r, &err);
                bdc_error_clear(&err);
                return r;
        }
        if (ret_result)
                *ret_result = result;
        else
                json_object_put(result);
        return 0;
}

const char *bench_json_string(struct json_object *o, const char *key) {
        struct json_object *v;

        if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

int bench_json_add(struct json_object *o, const char *key, struct json_object *v) {
        /* json_object_put(NULL) does nothing: a failed allocation lands here too. */
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

void bench_json_put(struct json_object *o, const char *key, struct json_object *v, int *r) {
        if (*r < 0) {
                json_object_put(v);
                return;
        }
        *r = bench_json_add(o, key, v);
}

int bench_json_emit(struct json_object *o, int r) {
        if (r >= 0)
                printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED));
        json_object_put(o);
        return r;
}

int bench_daemon_info(struct bdc *c, char *version, size_t n_version, char *backend, size_t n_backend,
                      struct json_object **ret_result) {
        struct json_object *result = NULL;
        const char *s;
        int r;

        r = bench_call(c, "broker.info", NULL, &result);
        if (r < 0)
                return r;
        snprintf(version, n_version, "%s", (s = bench_json_string(result, "version")) ? s : "?");
        snprintf(backend, n_backend, "%s", (s = bench_json_string(result, "backend")) ? s : "?");
        if (ret_result)
                *ret_result = result;
        else
                json_object_put(result);
        return 0;
}
