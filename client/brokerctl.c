/* SPDX-License-Identifier: Apache-2.0 */
/*
 * brokerctl: brokerd's admin command line. Every verb but `check` and `platform probe` is one
 * or two calls on the admin socket through libbrokerd-client; `check` loads files offline
 * with the daemon's own loaders, so it reports exactly what the daemon would, and
 * `platform probe` describes the host it runs on (probe.h).
 * Exit status: 0 success, 1 failure (daemon error, connection, invalid file), 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "brokerctl-util.h"
#include "brokerd-client.h"
#include "platform/platform.h"
#include "policy/policy.h"
#include "probe.h"
#include "table.h"
#include "util/diag.h"
#include "util/macro.h"

#include "config.h"

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
};

static const struct {
        unsigned flag;
        const char *name;
} option_names[] = {
        { OPT_DOMAIN, "--domain" }, { OPT_STATE, "--state" }, { OPT_POOL, "--pool" },
        { OPT_DEVICE, "--device" }, { OPT_DEADLINE, "--deadline" }, { OPT_FORCE, "--force" },
        { OPT_SINCE, "--since" }, { OPT_AFTER, "--after" }, { OPT_LIMIT, "--limit" },
        { OPT_PLATFORM, "--platform" }, { OPT_OUTPUT, "--output" }, { OPT_SYSFS, "--sysfs" },
};

struct args {
        const char *socket;
        bool json;
        bool legend;
        unsigned seen;
        const char *domain, *state, *pool, *device, *platform, *output, *sysfs;
        uint64_t deadline_ms, since_usec, after, limit;
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

static void json_putp(struct json_object **o) {
        if (*o)
                json_object_put(*o);
}

static void bdc_closep(struct bdc **c) {
        if (*c)
                bdc_close(*c);
}

static void usage(FILE *f) {
        fputs("Usage: brokerctl [--socket PATH] [--json] [--no-legend] VERB [ARGS]\n"
              "\n"
              "Inspect and control brokerd through its admin socket.\n"
              "\n"
              "Verbs:\n"
              "  status                               daemon information and counters\n"
              "  list [--domain D] [--state S] [--pool P] [--device X]\n"
              "                                       the regions\n"
              "  show ID                              one region\n"
              "  revoke ID [--deadline TIME] [--force]\n"
              "                                       recall a region (TIME: 500ms, 5s, 2m; plain: seconds)\n"
              "  domains                              usage and quotas per domain\n"
              "  pools                                usage per pool and NUMA node\n"
              "  audit [--since TIME] [--after SEQ] [--limit N]\n"
              "                                       the audit trail (TIME: 10m, 1h ago, or unix seconds)\n"
              "  events [--domain D]                  print notifications until interrupted\n"
              "  reload                               reload the policy\n"
              "  reconcile                            compare the database with the backend now\n"
              "  check platform FILE                  validate a platform file (offline)\n"
              "  check policy FILE [--platform FILE]  validate a policy file (offline)\n"
              "  platform probe [--output FILE] [--sysfs ROOT]\n"
              "                                       describe this host as a platform file (offline)\n"
              "\n"
              "Options:\n"
              "  --socket PATH   the admin socket (default: $" ADMIN_SOCKET_ENV ", else " BDC_ADMIN_SOCKET ")\n"
              "  --json          print results as JSON\n"
              "  --no-legend     print tables without their header line\n"
              "  -h, --help      show this help\n"
              "  --version       show the version\n",
              f);
}

static int usage_error(const char *fmt, ...) _printf_(1, 2);
static int usage_error(const char *fmt, ...) {
        va_list ap;

        fputs("brokerctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputs("\n\n", stderr);
        usage(stderr);
        return -EINVAL;
}

static int print_error(const struct bdc_error *err, int r) {
        fprintf(stderr, "brokerctl: %s: %s\n", bdc_error_name(err), err->message[0] ? err->message : strerror(-r));
        return r;
}

static int call(struct bdc *c, const char *method, struct json_object *params, struct json_object **ret) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        int r;

        r = bdc_call(c, method, params, ret, NULL, NULL, &err);
        if (r < 0)
                return print_error(&err, r);
        return 0;
}

static int print_json(struct json_object *o) {
        const char *s = json_object_to_json_string_ext(
                o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!s)
                return -ENOMEM;
        puts(s);
        return 0;
}

static int add_member(struct json_object *o, const char *key, struct json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int oom(void) {
        fputs("brokerctl: no_memory: out of memory\n", stderr);
        return -ENOMEM;
}

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
};

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

static char *format_peers(struct json_object *v) {
        size_t n = json_object_array_length(v), len = 0;
        char *s = strdup("");

        for (size_t i = 0; s && i < n; i++) {
                struct json_object *p = json_object_array_get_idx(v, i), *d = NULL, *a = NULL, *st = NULL;
                _cleanup_(xfreep) char *one = NULL;
                char *ns;

                if (!json_object_is_type(p, json_type_object)) {
                        one = format_json_value(p);
                } else {
                        _cleanup_(xfreep) char *ds = NULL, *as = NULL, *ss = NULL, *us = NULL;
                        struct json_object *u = NULL;

                        json_object_object_get_ex(p, "domain", &d);
                        json_object_object_get_ex(p, "access", &a);
                        json_object_object_get_ex(p, "state", &st);
                        json_object_object_get_ex(p, "unplug", &u);
                        ds = format_json_value(d);
                        as = format_json_value(a);
                        ss = format_json_value(st);
                        us = format_unplug(u);
                        if (ds && as && ss && us && asprintf(&one, "%s:%s:%s%s", ds, as, ss, us) < 0)
                                one = NULL;
                }
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
                if (json_object_is_type(v, json_type_array))
                        return format_peers(v);
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
static int kv_add_object(struct table *t, struct json_object *o, const char *const *order, size_t n_order) {
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

static int kv_table_new(struct table **ret) {
        static const char *const headers[] = { "NAME", "VALUE" };
        return table_new(headers, ELEMENTSOF(headers), ret);
}

/* Key/value views (status, show, revoke, reload) have no legend: the names are the rows. */
static int print_kv(struct json_object *o, const char *const *order, size_t n_order) {
        _cleanup_(table_freep) struct table *t = NULL;

        if (kv_table_new(&t) < 0 || kv_add_object(t, o, order, n_order) < 0)
                return oom();
        return table_print(t, false, stdout);
}

struct column {
        const char *header;
        const char *key;
        enum kind kind;
};

static int print_array(struct json_object *result, const char *member, const struct column *cols, size_t n_cols,
                       bool legend) {
        _cleanup_(table_freep) struct table *t = NULL;
        const char *headers[16];
        struct json_object *a;
        size_t n;

        if (!json_object_object_get_ex(result, member, &a) || !json_object_is_type(a, json_type_array)) {
                fprintf(stderr, "brokerctl: protocol_error: the reply has no \"%s\" array\n", member);
                return -EBADMSG;
        }
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
        return table_print(t, legend, stdout);
}

static int verb_status(struct bdc *c, const struct args *a) {
        _cleanup_(json_putp) struct json_object *info = NULL, *stats = NULL, *both = NULL;
        _cleanup_(table_freep) struct table *t = NULL;
        int r;

        r = call(c, "broker.info", NULL, &info);
        if (r < 0)
                return r;
        r = call(c, "admin.stats", NULL, &stats);
        if (r < 0)
                return r;

        if (a->json) {
                both = json_object_new_object();
                if (!both || add_member(both, "info", json_object_get(info)) < 0 ||
                    add_member(both, "stats", json_object_get(stats)) < 0)
                        return oom();
                return print_json(both);
        }
        if (kv_table_new(&t) < 0 || kv_add_object(t, info, NULL, 0) < 0 || kv_add_object(t, stats, NULL, 0) < 0)
                return oom();
        return table_print(t, false, stdout);
}

static int verb_list(struct bdc *c, const struct args *a) {
        static const struct column cols[] = {
                { "ID", "region", KIND_PLAIN },    { "STATE", "state", KIND_PLAIN },
                { "OWNER", "owner", KIND_PLAIN },  { "DEVICE", "device", KIND_PLAIN },
                { "POOL", "pool", KIND_PLAIN },    { "BASE", "base", KIND_ADDR },
                { "SIZE", "size", KIND_BYTES },    { "PEERS", "peers", KIND_PEERS },
                { "LABEL", "label", KIND_PLAIN },
        };
        _cleanup_(json_putp) struct json_object *params = json_object_new_object(), *result = NULL;
        const struct {
                const char *key, *value;
        } filters[] = {
                { "domain", a->domain }, { "state", a->state }, { "pool", a->pool }, { "device", a->device },
        };
        int r;

        if (!params)
                return oom();
        for (size_t i = 0; i < ELEMENTSOF(filters); i++)
                if (filters[i].value && add_member(params, filters[i].key, json_object_new_string(filters[i].value)) < 0)
                        return oom();

        r = call(c, "region.list", params, &result);
        if (r < 0)
                return r;
        if (a->json)
                return print_json(result);
        return print_array(result, "regions", cols, ELEMENTSOF(cols), a->legend);
}

static int verb_show(struct bdc *c, const struct args *a) {
        static const char *const order[] = {
                "region", "state", "owner", "device", "pool", "label", "base", "size", "peers", "created_usec",
                "deadline_usec", "owner_mapped", "owner_unplug",
        };
        _cleanup_(json_putp) struct json_object *params = json_object_new_object(), *result = NULL;
        int r;

        if (!params || add_member(params, "region", json_object_new_uint64(a->id)) < 0)
                return oom();

        r = call(c, "region.get", params, &result);
        if (r < 0)
                return r;
        if (a->json)
                return print_json(result);
        return print_kv(result, order, ELEMENTSOF(order));
}

static int verb_revoke(struct bdc *c, const struct args *a) {
        _cleanup_(json_putp) struct json_object *params = json_object_new_object(), *result = NULL;
        int r;

        if (!params || add_member(params, "region", json_object_new_uint64(a->id)) < 0 ||
            ((a->seen & OPT_DEADLINE) && add_member(params, "deadline_ms", json_object_new_uint64(a->deadline_ms)) < 0) ||
            ((a->seen & OPT_FORCE) && add_member(params, "force", json_object_new_boolean(1)) < 0))
                return oom();

        r = call(c, "admin.revoke", params, &result);
        if (r < 0)
                return r;
        if (a->json)
                return print_json(result);
        return print_kv(result, NULL, 0);
}

static int verb_domains(struct bdc *c, const struct args *a) {
        static const struct column cols[] = {
                { "DOMAIN", "domain", KIND_PLAIN },
                { "REGIONS", "regions_owned", KIND_PLAIN },
                { "BYTES", "bytes_owned", KIND_BYTES },
                { "MAX-REGIONS", "max_regions", KIND_LIMIT_COUNT },
                { "MAX-BYTES", "max_bytes", KIND_LIMIT_BYTES },
                { "ATTACHED", "attached", KIND_PLAIN },
        };
        _cleanup_(json_putp) struct json_object *result = NULL;
        int r;

        r = call(c, "admin.domains", NULL, &result);
        if (r < 0)
                return r;
        if (a->json)
                return print_json(result);
        return print_array(result, "domains", cols, ELEMENTSOF(cols), a->legend);
}

static int verb_pools(struct bdc *c, const struct args *a) {
        static const struct column pools[] = {
                { "POOL", "pool", KIND_PLAIN },       { "NUMA", "numa_node", KIND_PLAIN },
                { "BASE", "base", KIND_ADDR },        { "SIZE", "size", KIND_BYTES },
                { "GRANULE", "granule", KIND_BYTES }, { "USED", "used", KIND_BYTES },
                { "FREE", "free", KIND_BYTES },       { "REGIONS", "regions", KIND_PLAIN },
        };
        static const struct column numa[] = {
                { "NUMA", "numa_node", KIND_PLAIN },
                { "SIZE", "size", KIND_BYTES },
                { "USED", "used", KIND_BYTES },
        };
        _cleanup_(json_putp) struct json_object *result = NULL;
        struct json_object *n;
        int r;

        r = call(c, "admin.pools", NULL, &result);
        if (r < 0)
                return r;
        if (a->json)
                return print_json(result);
        r = print_array(result, "pools", pools, ELEMENTSOF(pools), a->legend);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(result, "numa", &n) && json_object_is_type(n, json_type_array) &&
            json_object_array_length(n) > 0) {
                putchar('\n');
                r = print_array(result, "numa", numa, ELEMENTSOF(numa), a->legend);
        }
        return r;
}

static int verb_audit(struct bdc *c, const struct args *a) {
        static const struct column cols[] = {
                { "SEQ", "seq", KIND_PLAIN },       { "TIME", "time_usec", KIND_TIME },
                { "ACTOR", "actor", KIND_PLAIN },   { "ACTION", "action", KIND_PLAIN },
                { "REGION", "region", KIND_PLAIN }, { "DOMAIN", "domain", KIND_PLAIN },
                { "FROM", "from", KIND_PLAIN },     { "TO", "to", KIND_PLAIN },
                { "REASON", "reason", KIND_PLAIN },
        };
        _cleanup_(json_putp) struct json_object *params = json_object_new_object(), *result = NULL;
        int r;

        if (!params)
                return oom();
        if (((a->seen & OPT_AFTER) && add_member(params, "after_seq", json_object_new_uint64(a->after)) < 0) ||
            ((a->seen & OPT_SINCE) && add_member(params, "since_usec", json_object_new_uint64(a->since_usec)) < 0) ||
            ((a->seen & OPT_LIMIT) && add_member(params, "limit", json_object_new_uint64(a->limit)) < 0))
                return oom();

        r = call(c, "admin.audit", params, &result);
        if (r < 0)
                return r;
        if (a->json)
                return print_json(result);
        return print_array(result, "entries", cols, ELEMENTSOF(cols), a->legend);
}

static int print_event(const struct bdc_event *ev, bool json) {
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

static int verb_events(struct bdc *c, const struct args *a) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        _cleanup_(closep) int sfd = -EBADF;
        sigset_t mask;
        int r;

        /* Interruption is the normal end: take SIGINT/SIGTERM through a descriptor so the
         * wait can see them without racing the event stream. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return negative_errno();
        sfd = signalfd(-1, &mask, SFD_CLOEXEC);
        if (sfd < 0) {
                r = negative_errno();
                fprintf(stderr, "brokerctl: io_error: signalfd: %s\n", strerror(-r));
                return r;
        }

        r = bdc_subscribe(c, a->domain ? &a->domain : NULL, a->domain ? 1 : 0, &err);
        if (r < 0)
                return print_error(&err, r);

        for (;;) {
                struct pollfd pfds[2] = {
                        { .fd = bdc_fd(c), .events = POLLIN },
                        { .fd = sfd, .events = POLLIN },
                };
                struct bdc_event ev = {};

                while ((r = bdc_next_event(c, 0, &ev)) == 0) {
                        r = print_event(&ev, a->json);
                        bdc_event_clear(&ev);
                        if (r < 0)
                                return r;
                }
                if (r == -ECONNRESET) {
                        fputs("brokerctl: disconnected: brokerd closed the connection\n", stderr);
                        return 0;
                }
                if (r != -ETIMEDOUT && r != -EINTR) {
                        fprintf(stderr, "brokerctl: %s: %s\n", r == -EBADMSG ? "protocol_error" : "io_error",
                                strerror(-r));
                        return r;
                }

                if (poll(pfds, ELEMENTSOF(pfds), -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = negative_errno();
                        fprintf(stderr, "brokerctl: io_error: poll: %s\n", strerror(-r));
                        return r;
                }
                if (pfds[1].revents)
                        return 0;
        }
}

static int verb_reload(struct bdc *c, const struct args *a) {
        _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
        _cleanup_(json_putp) struct json_object *result = NULL;
        int r;

        r = bdc_call(c, "admin.reload", NULL, &result, NULL, NULL, &err);
        if (r < 0) {
                struct json_object *diags;

                print_error(&err, r);
                if (err.data && json_object_object_get_ex(err.data, "diagnostics", &diags) &&
                    json_object_is_type(diags, json_type_array))
                        for (size_t i = 0; i < json_object_array_length(diags); i++) {
                                _cleanup_(xfreep) char *s = format_json_value(json_object_array_get_idx(diags, i));
                                fprintf(stderr, "  %s\n", s ?: "?");
                        }
                return r;
        }
        if (a->json)
                return print_json(result);
        return print_kv(result, NULL, 0);
}

static int verb_reconcile(struct bdc *c, const struct args *a) {
        static const char *const order[] = { "backend", "checked", "repaired", "revoked", "completed", "detached" };
        _cleanup_(json_putp) struct json_object *result = NULL;
        int r;

        r = call(c, "admin.reconcile", NULL, &result);
        if (r < 0)
                return r;
        if (a->json)
                return print_json(result);
        return print_kv(result, order, ELEMENTSOF(order));
}

static int diags_to_json(struct json_object *array, const struct diag_list *l, const char *file) {
        for (size_t i = 0; i < l->n; i++) {
                struct json_object *d = json_object_new_object();

                if (!d || json_object_array_add(array, d) < 0) {
                        json_object_put(d);
                        return -ENOMEM;
                }
                if (add_member(d, "file", json_object_new_string(file)) < 0 ||
                    add_member(d, "severity",
                               json_object_new_string(l->items[i].severity == DIAG_ERROR ? "error" : "warning")) < 0 ||
                    add_member(d, "path", json_object_new_string(l->items[i].path)) < 0 ||
                    add_member(d, "message", json_object_new_string(l->items[i].message)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* A load that failed without saying why (the file could not be opened) still gets a line. */
static int diags_note_failure(struct diag_list *l, int r) {
        if (r < 0 && diag_count(l, DIAG_ERROR) == 0)
                return diag_add(l, DIAG_ERROR, "", "%s", strerror(-r));
        return 0;
}

static int verb_check(struct bdc *c, const struct args *a) {
        _cleanup_(platform_freep) struct platform *platform = NULL;
        _cleanup_(policy_freep) struct policy *policy = NULL;
        struct diag_list file_diags = DIAG_LIST_INIT, platform_diags = DIAG_LIST_INIT;
        const char *kind = a->pos[0], *file = a->pos[1];
        size_t errors;
        int r;

        (void) c;
        if (strcmp(kind, "platform") == 0) {
                r = platform_load_file(file, &platform, &file_diags);
                if (diags_note_failure(&file_diags, r) < 0)
                        goto oom;
        } else {
                r = policy_load_file(file, &policy, &file_diags);
                if (diags_note_failure(&file_diags, r) < 0)
                        goto oom;
                if (a->platform) {
                        int k = platform_load_file(a->platform, &platform, &platform_diags);

                        if (diags_note_failure(&platform_diags, k) < 0)
                                goto oom;
                        if (policy && platform && policy_check_platform(policy, platform, &file_diags) == -ENOMEM)
                                goto oom;
                }
        }

        errors = diag_count(&file_diags, DIAG_ERROR) + diag_count(&platform_diags, DIAG_ERROR);
        if (a->json) {
                _cleanup_(json_putp) struct json_object *o = json_object_new_object();
                struct json_object *list = json_object_new_array();

                if (!o || add_member(o, "diagnostics", list) < 0 ||
                    add_member(o, "file", json_object_new_string(file)) < 0 ||
                    add_member(o, "ok", json_object_new_boolean(errors == 0)) < 0 ||
                    add_member(o, "errors", json_object_new_uint64(errors)) < 0 ||
                    add_member(o, "warnings", json_object_new_uint64(diag_count(&file_diags, DIAG_WARNING) +
                                                                      diag_count(&platform_diags, DIAG_WARNING))) < 0 ||
                    diags_to_json(list, &platform_diags, a->platform ?: "") < 0 ||
                    diags_to_json(list, &file_diags, file) < 0)
                        goto oom;
                print_json(o);
        } else {
                diag_list_print(&platform_diags, a->platform, stdout);
                diag_list_print(&file_diags, file, stdout);
        }
        diag_list_clear(&file_diags);
        diag_list_clear(&platform_diags);
        return errors > 0 ? -EINVAL : 0;

oom:
        diag_list_clear(&file_diags);
        diag_list_clear(&platform_diags);
        return oom();
}

/* Replaces path only once the whole text is on disk, so a failed write leaves the old file. */
static int write_file_atomic(const char *path, const char *text) {
        _cleanup_(xfreep) char *tmp = NULL;
        _cleanup_(closep) int fd = -EBADF;
        size_t len = strlen(text), done = 0;
        int r;

        if (asprintf(&tmp, "%s.XXXXXX", path) < 0) {
                tmp = NULL;
                return oom();
        }
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = negative_errno();
                fprintf(stderr, "brokerctl: io_error: %s: %s\n", path, strerror(-r));
                return r;
        }
        if (fchmod(fd, 0644) < 0)
                goto fail;
        while (done < len) {
                ssize_t n = write(fd, text + done, len - done);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        goto fail;
                }
                done += (size_t) n;
        }
        if (write(fd, "\n", 1) != 1 || fsync(fd) < 0 || close(TAKE_FD(fd)) < 0 || rename(tmp, path) < 0)
                goto fail;
        return 0;

fail:
        r = negative_errno();
        fprintf(stderr, "brokerctl: io_error: %s: %s\n", path, strerror(-r));
        unlink(tmp);
        return r;
}

static int verb_platform(struct bdc *c, const struct args *a) {
        _cleanup_(json_putp) struct json_object *desc = NULL;
        const char *text;
        int r;

        (void) c;
        r = probe_platform(a->sysfs ?: "/", &desc, stderr);
        if (r == -ENOMEM)
                return oom();
        if (r < 0) {
                fprintf(stderr, "brokerctl: probe_failed: %s; no description written\n",
                        r == -ENODATA ? "no RAM could be read" : "the description would not load");
                return r;
        }
        text = json_object_to_json_string_ext(
                desc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return oom();
        if (!a->output || strcmp(a->output, "-") == 0) {
                puts(text);
                return 0;
        }
        return write_file_atomic(a->output, text);
}

static const struct verb verbs[] = {
        { "status", 0, 0, 0, false, false, verb_status },
        { "list", 0, 0, OPT_DOMAIN | OPT_STATE | OPT_POOL | OPT_DEVICE, false, false, verb_list },
        { "show", 1, 1, 0, true, false, verb_show },
        { "revoke", 1, 1, OPT_DEADLINE | OPT_FORCE, true, false, verb_revoke },
        { "domains", 0, 0, 0, false, false, verb_domains },
        { "pools", 0, 0, 0, false, false, verb_pools },
        { "audit", 0, 0, OPT_SINCE | OPT_AFTER | OPT_LIMIT, false, false, verb_audit },
        { "events", 0, 0, OPT_DOMAIN, false, false, verb_events },
        { "reload", 0, 0, 0, false, false, verb_reload },
        { "reconcile", 0, 0, 0, false, false, verb_reconcile },
        { "check", 2, 2, OPT_PLATFORM, false, true, verb_check },
        { "platform", 1, 1, OPT_OUTPUT | OPT_SYSFS, false, true, verb_platform },
};

enum {
        ARG_VERSION = 0x100,
        ARG_SOCKET,
        ARG_JSON,
        ARG_NO_LEGEND,
        ARG_DOMAIN,
        ARG_STATE,
        ARG_POOL,
        ARG_DEVICE,
        ARG_DEADLINE,
        ARG_FORCE,
        ARG_SINCE,
        ARG_AFTER,
        ARG_LIMIT,
        ARG_PLATFORM,
        ARG_OUTPUT,
        ARG_SYSFS,
};

static uint64_t now_realtime_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* Returns 1 to go on with *ret_verb, 0 when done (--help, --version), or -EINVAL (usage). */
static int parse_args(int argc, char **argv, struct args *a, const struct verb **ret_verb) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "json", no_argument, NULL, ARG_JSON },
                { "no-legend", no_argument, NULL, ARG_NO_LEGEND },
                { "domain", required_argument, NULL, ARG_DOMAIN },
                { "state", required_argument, NULL, ARG_STATE },
                { "pool", required_argument, NULL, ARG_POOL },
                { "device", required_argument, NULL, ARG_DEVICE },
                { "deadline", required_argument, NULL, ARG_DEADLINE },
                { "force", no_argument, NULL, ARG_FORCE },
                { "since", required_argument, NULL, ARG_SINCE },
                { "after", required_argument, NULL, ARG_AFTER },
                { "limit", required_argument, NULL, ARG_LIMIT },
                { "platform", required_argument, NULL, ARG_PLATFORM },
                { "output", required_argument, NULL, ARG_OUTPUT },
                { "sysfs", required_argument, NULL, ARG_SYSFS },
                {}
        };
        const struct verb *verb = NULL;
        int c;

        /* One pass over everything, options before or after the verb. */
        opterr = 0; /* its messages would name argv[0], a path */
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        usage(stdout);
                        return 0;
                case ARG_VERSION:
                        puts("brokerctl " BROKERD_VERSION);
                        return 0;
                case ARG_SOCKET:
                        a->socket = optarg;
                        break;
                case ARG_JSON:
                        a->json = true;
                        break;
                case ARG_NO_LEGEND:
                        a->legend = false;
                        break;
                case ARG_DOMAIN:
                        a->domain = optarg;
                        a->seen |= OPT_DOMAIN;
                        break;
                case ARG_STATE:
                        a->state = optarg;
                        a->seen |= OPT_STATE;
                        break;
                case ARG_POOL:
                        a->pool = optarg;
                        a->seen |= OPT_POOL;
                        break;
                case ARG_DEVICE:
                        a->device = optarg;
                        a->seen |= OPT_DEVICE;
                        break;
                case ARG_DEADLINE:
                        if (parse_deadline_ms(optarg, &a->deadline_ms) < 0)
                                return usage_error("invalid --deadline '%s' (like 500ms, 5s, 2m)", optarg);
                        a->seen |= OPT_DEADLINE;
                        break;
                case ARG_FORCE:
                        a->seen |= OPT_FORCE;
                        break;
                case ARG_SINCE:
                        if (parse_since_usec(optarg, now_realtime_usec(), &a->since_usec) < 0)
                                return usage_error("invalid --since '%s' (like 10m, 1h, or unix seconds)", optarg);
                        a->seen |= OPT_SINCE;
                        break;
                case ARG_AFTER:
                        if (parse_uint(optarg, &a->after) < 0)
                                return usage_error("invalid --after '%s'", optarg);
                        a->seen |= OPT_AFTER;
                        break;
                case ARG_LIMIT:
                        if (parse_uint(optarg, &a->limit) < 0)
                                return usage_error("invalid --limit '%s'", optarg);
                        a->seen |= OPT_LIMIT;
                        break;
                case ARG_PLATFORM:
                        a->platform = optarg;
                        a->seen |= OPT_PLATFORM;
                        break;
                case ARG_OUTPUT:
                        if (!*optarg)
                                return usage_error("--output needs a file name");
                        a->output = optarg;
                        a->seen |= OPT_OUTPUT;
                        break;
                case ARG_SYSFS:
                        if (!*optarg)
                                return usage_error("--sysfs needs a directory");
                        a->sysfs = optarg;
                        a->seen |= OPT_SYSFS;
                        break;
                case ':':
                        return usage_error("option '%s' needs an argument", argv[optind - 1]);
                default:
                        if (optopt)
                                return usage_error("unknown option '-%c'", optopt);
                        return usage_error("unknown option '%s'", argv[optind - 1]);
                }
        }

        if (optind >= argc)
                return usage_error("missing verb");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (strcmp(argv[optind], verbs[i].name) == 0)
                        verb = &verbs[i];
        if (!verb)
                return usage_error("unknown verb '%s'", argv[optind]);

        a->pos = argv + optind + 1;
        a->n_pos = argc - optind - 1;
        if (a->n_pos < verb->min_args)
                return usage_error("'%s' needs %d argument%s", verb->name, verb->min_args,
                                   verb->min_args == 1 ? "" : "s");
        if (a->n_pos > verb->max_args)
                return usage_error("too many arguments for '%s'", verb->name);
        for (size_t i = 0; i < ELEMENTSOF(option_names); i++)
                if ((a->seen & option_names[i].flag) && !(verb->options & option_names[i].flag))
                        return usage_error("%s does not apply to '%s'", option_names[i].name, verb->name);

        if (verb->takes_id && parse_uint(a->pos[0], &a->id) < 0)
                return usage_error("invalid region id '%s'", a->pos[0]);
        if (verb->run == verb_check) {
                if (strcmp(a->pos[0], "platform") != 0 && strcmp(a->pos[0], "policy") != 0)
                        return usage_error("check takes 'platform' or 'policy', not '%s'", a->pos[0]);
                if ((a->seen & OPT_PLATFORM) && strcmp(a->pos[0], "policy") != 0)
                        return usage_error("--platform applies to 'check policy' only");
        }
        if (verb->run == verb_platform && strcmp(a->pos[0], "probe") != 0)
                return usage_error("platform takes 'probe', not '%s'", a->pos[0]);

        *ret_verb = verb;
        return 1;
}

int main(int argc, char **argv) {
        _cleanup_(bdc_closep) struct bdc *c = NULL;
        struct args a = { .legend = true };
        const struct verb *verb = NULL;
        int r;

        r = parse_args(argc, argv, &a, &verb);
        if (r <= 0)
                return r < 0 ? EXIT_USAGE : EXIT_SUCCESS;

        if (!verb->offline) {
                const char *path = a.socket;

                if (!path || !*path)
                        path = getenv(ADMIN_SOCKET_ENV);
                if (!path || !*path)
                        path = BDC_ADMIN_SOCKET;
                r = bdc_connect(path, &c);
                if (r < 0) {
                        fprintf(stderr, "brokerctl: connection_failed: %s: %s\n", path, strerror(-r));
                        return EXIT_FAILURE;
                }
        }

        r = verb->run(c, &a);
        if (fflush(stdout) != 0 && r >= 0)
                r = -EIO;
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
