/* SPDX-License-Identifier: Apache-2.0 */
/* brokerctl's verbs that talk to the daemon, each one or a few calls on the admin socket. */
#include "brokerctl.h"

#include <errno.h>
#include <json-c/json.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>

#include "brokerctl-util.h"

/* One call, its result printed as JSON or as a key/value view (members in order first). */
static int call_print_kv(struct bdc *c, const struct args *a, const char *method, struct json_object *params,
                         const char *const *order, size_t n_order) {
        _cleanup_(json_putp) struct json_object *result = NULL;
        int r;

        r = call(c, method, params, &result);
        if (r < 0)
                return r;
        if (a->json)
                return print_json(result);
        return print_kv(result, order, n_order);
}

int verb_status(struct bdc *c, const struct args *a) {
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

/*
 * region.list page by page (docs/protocol.md "Paging"), each printed as it arrives, so that only
 * one page is ever held: a table per page (the legend once; a column widens only when a later
 * page needs it), or one JSON document {"regions": [...]} whose elements are written as they
 * come. A failure after the first page leaves that document unfinished, so that nobody takes it
 * for the whole list.
 */
int verb_list(struct bdc *c, const struct args *a) {
        static const struct column cols[] = {
                { "ID", "region", KIND_PLAIN },    { "STATE", "state", KIND_PLAIN },
                { "OWNER", "owner", KIND_PLAIN },  { "DEVICE", "device", KIND_PLAIN },
                { "POOL", "pool", KIND_PLAIN },    { "BASE", "base", KIND_ADDR },
                { "SIZE", "size", KIND_BYTES },    { "PEERS", "peers", KIND_PEERS },
                { "LABEL", "label", KIND_PLAIN },
        };
        const struct bdc_list_query q = {
                .domain = a->domain, .state = a->state, .pool = a->pool, .device = a->device,
                .limit = (unsigned) a->page_size,
        };
        size_t widths[ELEMENTSOF(cols)] = {}, n = 0, pages = 0;
        uint64_t after = 0;
        int r;

        if (a->json)
                fputs("{\n  \"regions\": [\n", stdout);
        do {
                _cleanup_(bdc_error_clear) struct bdc_error err = BDC_ERROR_INIT;
                _cleanup_(json_putp) struct json_object *regions = NULL;
                bool first = pages++ == 0;

                r = bdc_list_page(c, &q, after, &regions, &after, &err);
                if (r < 0)
                        return print_error(&err, r);
                for (size_t i = 0; a->json && r >= 0 && i < json_object_array_length(regions); i++)
                        r = print_json_element(json_object_array_get_idx(regions, i), n++, 2);
                if (!a->json && (first || json_object_array_length(regions) > 0))
                        r = print_rows(regions, cols, ELEMENTSOF(cols), a->legend && first, widths);
                if (r < 0)
                        return r;
                /* A reader on a pipe sees each page as it comes. */
                fflush(stdout);
        } while (after != 0);
        if (a->json)
                fputs(n > 0 ? "\n  ]\n}\n" : "  ]\n}\n", stdout);
        return 0;
}

int verb_show(struct bdc *c, const struct args *a) {
        static const char *const order[] = {
                "region", "state", "owner", "device", "pool", "label", "base", "size", "peers", "created_usec",
                "deadline_usec", "owner_mapped", "owner_unplug", "doorbells",
        };
        _cleanup_(json_putp) struct json_object *params = json_object_new_object();

        if (!params || add_member(params, "region", json_object_new_uint64(a->id)) < 0)
                return oom();
        return call_print_kv(c, a, "region.get", params, order, ELEMENTSOF(order));
}

int verb_revoke(struct bdc *c, const struct args *a) {
        _cleanup_(json_putp) struct json_object *params = json_object_new_object();

        if (!params || add_member(params, "region", json_object_new_uint64(a->id)) < 0 ||
            ((a->seen & OPT_DEADLINE) && add_member(params, "deadline_ms", json_object_new_uint64(a->deadline_ms)) < 0) ||
            ((a->seen & OPT_FORCE) && add_member(params, "force", json_object_new_boolean(1)) < 0))
                return oom();
        return call_print_kv(c, a, "admin.revoke", params, NULL, 0);
}

int verb_domains(struct bdc *c, const struct args *a) {
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

int verb_pools(struct bdc *c, const struct args *a) {
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

/* The default view: the newest entries, like `journalctl -n`. */
#define AUDIT_NEWEST_DEFAULT 20
/* The most entries the daemon returns per call: --all pages in steps of it. */
#define AUDIT_PAGE 1000

static int audit_page(struct bdc *c, const struct args *a, uint64_t after, struct json_object **ret) {
        _cleanup_(json_putp) struct json_object *params = json_object_new_object();

        if (!params || add_member(params, "after_seq", json_object_new_uint64(after)) < 0 ||
            add_member(params, "limit", json_object_new_uint64(AUDIT_PAGE)) < 0 ||
            ((a->seen & OPT_SINCE) && add_member(params, "since_usec", json_object_new_uint64(a->since_usec)) < 0))
                return oom();
        return call(c, "admin.audit", params, ret);
}

/* Every entry (after --after, since --since), page by page, as one {entries} result. */
static int audit_all(struct bdc *c, const struct args *a, struct json_object **ret) {
        _cleanup_(json_putp) struct json_object *all = json_object_new_array(), *o = json_object_new_object();
        uint64_t after = a->after;

        if (!all || !o)
                return oom();
        for (;;) {
                _cleanup_(json_putp) struct json_object *page = NULL;
                struct json_object *entries;
                size_t n;
                int r;

                r = audit_page(c, a, after, &page);
                if (r < 0)
                        return r;
                if (!json_object_object_get_ex(page, "entries", &entries) ||
                    !json_object_is_type(entries, json_type_array)) {
                        fputs("brokerctl: protocol_error: the reply has no \"entries\" array\n", stderr);
                        return -EBADMSG;
                }
                n = json_object_array_length(entries);
                for (size_t i = 0; i < n; i++) {
                        struct json_object *e = json_object_array_get_idx(entries, i), *seq;

                        if (!json_object_object_get_ex(e, "seq", &seq) || json_to_u64(seq, &after) < 0) {
                                fputs("brokerctl: protocol_error: an audit entry without a seq\n", stderr);
                                return -EBADMSG;
                        }
                        if (json_object_array_add(all, json_object_get(e)) < 0) {
                                json_object_put(e);
                                return oom();
                        }
                }
                if (n < AUDIT_PAGE)
                        break;
        }
        if (add_member(o, "entries", TAKE_PTR(all)) < 0)
                return oom();
        *ret = TAKE_PTR(o);
        return 0;
}

/* One call: the newest -n entries (default 20), or what --after, --since and --limit select. */
static int audit_select(struct bdc *c, const struct args *a, struct json_object **ret) {
        _cleanup_(json_putp) struct json_object *params = json_object_new_object();
        bool filtered = a->seen & (OPT_AFTER | OPT_SINCE | OPT_LIMIT);

        if (!params)
                return oom();
        if (((a->seen & OPT_AFTER) && add_member(params, "after_seq", json_object_new_uint64(a->after)) < 0) ||
            ((a->seen & OPT_SINCE) && add_member(params, "since_usec", json_object_new_uint64(a->since_usec)) < 0) ||
            ((a->seen & OPT_LIMIT) && add_member(params, "limit", json_object_new_uint64(a->limit)) < 0) ||
            (!filtered && add_member(params, "newest", json_object_new_uint64(a->seen & OPT_LINES ? a->lines
                                                                                            : AUDIT_NEWEST_DEFAULT)) < 0))
                return oom();
        return call(c, "admin.audit", params, ret);
}

int verb_audit(struct bdc *c, const struct args *a) {
        static const struct column cols[] = {
                { "SEQ", "seq", KIND_PLAIN },       { "TIME", "time_usec", KIND_TIME },
                { "ACTOR", "actor", KIND_PLAIN },   { "ACTION", "action", KIND_PLAIN },
                { "REGION", "region", KIND_PLAIN }, { "DOMAIN", "domain", KIND_PLAIN },
                { "FROM", "from", KIND_PLAIN },     { "TO", "to", KIND_PLAIN },
                { "REASON", "reason", KIND_PLAIN },
        };
        _cleanup_(json_putp) struct json_object *result = NULL;
        int r;

        r = a->seen & OPT_ALL ? audit_all(c, a, &result) : audit_select(c, a, &result);
        if (r < 0)
                return r;
        if (a->json)
                return print_json(result);
        return print_array(result, "entries", cols, ELEMENTSOF(cols), a->legend);
}

int verb_events(struct bdc *c, const struct args *a) {
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

int verb_reload(struct bdc *c, const struct args *a) {
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

int verb_reconcile(struct bdc *c, const struct args *a) {
        static const char *const order[] = { "backend", "checked", "repaired", "revoked", "completed", "detached" };

        return call_print_kv(c, a, "admin.reconcile", NULL, order, ELEMENTSOF(order));
}

int verb_domain_gone(struct bdc *c, const struct args *a) {
        _cleanup_(json_putp) struct json_object *params = json_object_new_object();

        if (!params || add_member(params, "domain", json_object_new_string(a->pos[0])) < 0)
                return oom();
        return call_print_kv(c, a, "admin.domain_gone", params, NULL, 0);
}
