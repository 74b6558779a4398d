/* SPDX-License-Identifier: Apache-2.0 */
/* libbrokerd-client's region.list, one page at a time (docs/protocol.md "Paging"). */
#include "brokerd-client-internal.h"

#include <errno.h>

static int list_params(const struct bdc_list_query *q, uint64_t after, struct json_object **ret) {
        _cleanup_(json_object_putp) struct json_object *p = json_object_new_object();
        const struct {
                const char *key, *value;
        } filters[] = {
                { "domain", q ? q->domain : NULL }, { "state", q ? q->state : NULL },
                { "device", q ? q->device : NULL }, { "pool", q ? q->pool : NULL },
        };

        if (!p)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(filters); i++)
                if (filters[i].value && add_string(p, filters[i].key, filters[i].value) < 0)
                        return -ENOMEM;
        if (after > 0 && add_u64(p, "after", after) < 0)
                return -ENOMEM;
        if (q && q->limit > 0 && add_u64(p, "limit", q->limit) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(p);
        return 0;
}

_public_ int bdc_list_page(struct bdc *c, const struct bdc_list_query *q, uint64_t after,
                           struct json_object **ret_regions, uint64_t *ret_next, struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *params = NULL, *result = NULL;
        struct json_object *regions;
        uint64_t next = 0;
        int r;

        if (!c || !ret_regions || !ret_next)
                return local_error(err, EINVAL, "invalid arguments");
        if (list_params(q, after, &params) < 0)
                return local_error(err, ENOMEM, "out of memory");
        r = bdc_call(c, "region.list", params, &result, NULL, NULL, err);
        if (r < 0)
                return r;
        /* A cursor that does not move on would page forever. */
        if (!json_object_object_get_ex(result, "regions", &regions) || !json_object_is_type(regions, json_type_array) ||
            (json_object_object_get_ex(result, "next", NULL) && (get_u64(result, "next", &next) < 0 || next <= after)))
                return reply_error(err, -EBADMSG, "region.list");
        *ret_regions = json_object_get(regions);
        *ret_next = next;
        return 0;
}
