/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * brokerctl's parts. brokerctl.c parses the command line and runs one verb;
 * brokerctl-output.c prints (tables, key/value views, JSON, events, errors);
 * brokerctl-admin.c holds the verbs that talk to the daemon, brokerctl-offline.c those that do
 * not (check, platform probe). A verb returns 0 or -errno, having said on stderr what failed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "brokerd-client.h"
#include "table.h"
#include "util/macro.h"

struct json_object;

#define EXIT_USAGE 2
#define ADMIN_SOCKET_ENV "BROKERD_ADMIN_SOCKET"

/* Verb options, as a mask of what was given and of what a verb takes. */
enum {
        OPT_DOMAIN = 1 << 0,
        OPT_STATE = 1 << 1,
        OPT_POOL = 1 << 2,
        OPT_DEVICE = 1 << 3,
        OPT_DEADLINE = 1 << 4,
        OPT_FORCE = 1 << 5,
        OPT_SINCE = 1 << 6,
        OPT_AFTER = 1 << 7,
        OPT_LIMIT = 1 << 8,
        OPT_PLATFORM = 1 << 9,
        OPT_OUTPUT = 1 << 10,
        OPT_SYSFS = 1 << 11,
        OPT_LINES = 1 << 12,
        OPT_ALL = 1 << 13,
        OPT_PAGE_SIZE = 1 << 14,
};

struct args {
        const char *socket;
        bool json;
        bool legend;
        unsigned seen;
        const char *domain, *state, *pool, *device, *platform, *output, *sysfs;
        uint64_t deadline_ms, since_usec, after, limit, lines, page_size;
        uint64_t id;        /* show, revoke */
        char **pos; /* the verb's positional arguments */
        int n_pos;
};

struct verb {
        const char *name;
        int min_args, max_args;
        unsigned options;
        bool takes_id;
        bool offline;
        int (*run)(struct bdc *c, const struct args *a);
};

/* How a value is shown in a table cell. */
enum kind {
        KIND_PLAIN,
        KIND_BYTES,
        KIND_LIMIT_BYTES, /* UINT64_MAX is "unlimited" */
        KIND_LIMIT_COUNT,
        KIND_ADDR,
        KIND_TIME,
        KIND_DURATION,
        KIND_PEERS,
        KIND_PAIRS, /* doorbell pairs: "from>to,..." */
};

struct column {
        const char *header;
        const char *key;
        enum kind kind;
};

void json_putp(struct json_object **o);

/* brokerctl-output.c */
int print_error(const struct bdc_error *err, int r);
/* One call; a failure is printed. */
int call(struct bdc *c, const char *method, struct json_object *params, struct json_object **ret);
int print_json(struct json_object *o);
/* Adds an owned value (NULL after a failed allocation) to o: 0 or -ENOMEM. */
int add_member(struct json_object *o, const char *key, struct json_object *v);
/* Says so on stderr; -ENOMEM. */
int oom(void);
int kv_table_new(struct table **ret);
int kv_add_object(struct table *t, struct json_object *o, const char *const *order, size_t n_order);
int print_kv(struct json_object *o, const char *const *order, size_t n_order);
int print_array(struct json_object *result, const char *member, const struct column *cols, size_t n_cols,
                bool legend);
/* The rows of an array of objects as a table; widths (n_cols, may be NULL) as table_print_widths() takes them. */
int print_rows(struct json_object *a, const struct column *cols, size_t n_cols, bool legend, size_t *widths);
/* A JSON value as the n-th element of an array printed as print_json() would print it at depth. */
int print_json_element(struct json_object *v, size_t n, unsigned depth);
int print_event(const struct bdc_event *ev, bool json);

/* brokerctl-admin.c */
int verb_status(struct bdc *c, const struct args *a);
int verb_list(struct bdc *c, const struct args *a);
int verb_show(struct bdc *c, const struct args *a);
int verb_revoke(struct bdc *c, const struct args *a);
int verb_domains(struct bdc *c, const struct args *a);
int verb_pools(struct bdc *c, const struct args *a);
int verb_audit(struct bdc *c, const struct args *a);
int verb_events(struct bdc *c, const struct args *a);
int verb_reload(struct bdc *c, const struct args *a);
int verb_reconcile(struct bdc *c, const struct args *a);
int verb_domain_gone(struct bdc *c, const struct args *a);

/* brokerctl-offline.c */
int verb_check(struct bdc *c, const struct args *a);
int verb_platform(struct bdc *c, const struct args *a);
