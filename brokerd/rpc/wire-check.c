/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The wire's own rules on top of strict JSON (util/json-strict.h): a line is checked before
 * json-c sees it, so that what the handler gets is exactly what the client sent, or the line
 * is refused; and a reply's id is the request's id exactly, or the request is invalid.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>

#include "rpc/server-internal.h"
#include "util/json-strict.h"

int rpc_wire_check(const char *line, size_t len, char *msg, size_t msg_size) {
        const char *why;
        size_t at;

        if (json_strict_check(line, len, &at, &why) == 0)
                return 0;
        snprintf(msg, msg_size, "Parse error: %s at byte %zu", why, at);
        return -EBADMSG;
}

/*
 * json_strict_check() has already refused what json-c would read as something else (NaN,
 * Infinity, integers beyond 64 bits, -0); a number with a fraction or an exponent keeps its
 * text in json-c and goes back as it came.
 */
bool rpc_wire_id_valid(struct json_object *id) {
        if (!id || json_object_is_type(id, json_type_string) || json_object_is_type(id, json_type_int))
                return true;
        return json_object_is_type(id, json_type_double) && isfinite(json_object_get_double(id));
}
