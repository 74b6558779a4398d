/* SPDX-License-Identifier: Apache-2.0 */
/*
 * brokerctl: brokerd's admin command line. Every verb but `check` and `platform probe` is one
 * or two calls on the admin socket through libbrokerd-client; `check` loads files offline
 * with the daemon's own loaders, so it reports exactly what the daemon would, and
 * `platform probe` describes the host it runs on (probe.h).
 * Exit status: 0 success, 1 failure (daemon error, connection, invalid file), 2 usage.
 */
#include "brokerctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "brokerctl-util.h"

#include "config.h"
#include "util/num.h"

static const struct {
        unsigned flag;
        const char *name;
} option_names[] = {
        { OPT_DOMAIN, "--domain" }, { OPT_STATE, "--state" }, { OPT_POOL, "--pool" },
        { OPT_DEVICE, "--device" }, { OPT_DEADLINE, "--deadline" }, { OPT_FORCE, "--force" },
        { OPT_SINCE, "--since" }, { OPT_AFTER, "--after" }, { OPT_LIMIT, "--limit" },
        { OPT_PLATFORM, "--platform" }, { OPT_OUTPUT, "--output" }, { OPT_SYSFS, "--sysfs" },
        { OPT_LINES, "-n" }, { OPT_ALL, "--all" }, { OPT_PAGE_SIZE, "--page-size" },
};

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
              "  list [--domain D] [--state S] [--pool P] [--device X] [--page-size N]\n"
              "                                       the regions, fetched and printed N at a time\n"
              "                                       (default: the daemon's page size)\n"
              "  show ID                              one region\n"
              "  revoke ID [--deadline TIME] [--force]\n"
              "                                       recall a region (TIME: 500ms, 5s, 2m; plain: seconds)\n"
              "  domains                              usage and quotas per domain\n"
              "  pools                                usage per pool and NUMA node\n"
              "  audit [-n N | --all] [--since TIME] [--after SEQ] [--limit N]\n"
              "                                       the audit trail: the newest 20 entries, or N, or\n"
              "                                       all; or those after SEQ / since TIME (10m, 1h ago,\n"
              "                                       or unix seconds), at most N\n"
              "  events [--domain D]                  print notifications until interrupted\n"
              "  reload                               reload the policy\n"
              "  reconcile                            compare the database with the backend now\n"
              "  domain-gone DOMAIN                   a domain went away: revoke its attachments and\n"
              "                                       regions (as when libvirt reports it destroyed)\n"
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

static const struct verb verbs[] = {
        { "status", 0, 0, 0, false, false, verb_status },
        { "list", 0, 0, OPT_DOMAIN | OPT_STATE | OPT_POOL | OPT_DEVICE | OPT_PAGE_SIZE, false, false, verb_list },
        { "show", 1, 1, 0, true, false, verb_show },
        { "revoke", 1, 1, OPT_DEADLINE | OPT_FORCE, true, false, verb_revoke },
        { "domains", 0, 0, 0, false, false, verb_domains },
        { "pools", 0, 0, 0, false, false, verb_pools },
        { "audit", 0, 0, OPT_SINCE | OPT_AFTER | OPT_LIMIT | OPT_LINES | OPT_ALL, false, false, verb_audit },
        { "events", 0, 0, OPT_DOMAIN, false, false, verb_events },
        { "reload", 0, 0, 0, false, false, verb_reload },
        { "reconcile", 0, 0, 0, false, false, verb_reconcile },
        { "domain-gone", 1, 1, 0, false, false, verb_domain_gone },
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
        ARG_ALL,
        ARG_PAGE_SIZE,
};

static uint64_t now_realtime_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

/* The options whose argument needs checking. */
static int parse_valued_option(int c, const char *arg, const char *given, struct args *a) {
        switch (c) {
        case ARG_DEADLINE:
                if (parse_deadline_ms(arg, &a->deadline_ms) < 0)
                        return usage_error("invalid --deadline '%s' (like 500ms, 5s, 2m)", arg);
                a->seen |= OPT_DEADLINE;
                return 1;
        case ARG_SINCE:
                if (parse_since_usec(arg, now_realtime_usec(), &a->since_usec) < 0)
                        return usage_error("invalid --since '%s' (like 10m, 1h, or unix seconds)", arg);
                a->seen |= OPT_SINCE;
                return 1;
        case ARG_AFTER:
                if (num_parse_decimal(arg, &a->after) < 0)
                        return usage_error("invalid --after '%s'", arg);
                a->seen |= OPT_AFTER;
                return 1;
        case ARG_LIMIT:
                if (num_parse_decimal(arg, &a->limit) < 0)
                        return usage_error("invalid --limit '%s'", arg);
                a->seen |= OPT_LIMIT;
                return 1;
        case ARG_PAGE_SIZE:
                /* The daemon says what it takes (1..4096); here only what fits the call. */
                if (num_parse_decimal(arg, &a->page_size) < 0 || a->page_size == 0 || a->page_size > UINT32_MAX)
                        return usage_error("invalid --page-size '%s' (a count of regions, 1 or more)", arg);
                a->seen |= OPT_PAGE_SIZE;
                return 1;
        case 'n':
                if (num_parse_decimal(arg, &a->lines) < 0 || a->lines == 0)
                        return usage_error("invalid -n '%s' (a count of entries, 1 or more)", arg);
                a->seen |= OPT_LINES;
                return 1;
        case ARG_OUTPUT:
                if (!*arg)
                        return usage_error("--output needs a file name");
                a->output = arg;
                a->seen |= OPT_OUTPUT;
                return 1;
        case ARG_SYSFS:
                if (!*arg)
                        return usage_error("--sysfs needs a directory");
                a->sysfs = arg;
                a->seen |= OPT_SYSFS;
                return 1;
        }
        if (optopt)
                return usage_error("unknown option '-%c'", optopt);
        return usage_error("unknown option '%s'", given);
}

/* One option into a; 1 to go on, 0 when done (--help, --version), or -EINVAL (usage). */
static int parse_option(int c, const char *arg, const char *given, struct args *a) {
        switch (c) {
        case 'h':
                usage(stdout);
                return 0;
        case ARG_VERSION:
                puts("brokerctl " BROKERD_VERSION);
                return 0;
        case ARG_SOCKET:
                a->socket = arg;
                return 1;
        case ARG_JSON:
                a->json = true;
                return 1;
        case ARG_NO_LEGEND:
                a->legend = false;
                return 1;
        case ARG_DOMAIN:
                a->domain = arg;
                a->seen |= OPT_DOMAIN;
                return 1;
        case ARG_STATE:
                a->state = arg;
                a->seen |= OPT_STATE;
                return 1;
        case ARG_POOL:
                a->pool = arg;
                a->seen |= OPT_POOL;
                return 1;
        case ARG_DEVICE:
                a->device = arg;
                a->seen |= OPT_DEVICE;
                return 1;
        case ARG_FORCE:
                a->seen |= OPT_FORCE;
                return 1;
        case ARG_ALL:
                a->seen |= OPT_ALL;
                return 1;
        case ARG_PLATFORM:
                a->platform = arg;
                a->seen |= OPT_PLATFORM;
                return 1;
        case ':':
                return usage_error("option '%s' needs an argument", given);
        }
        return parse_valued_option(c, arg, given, a);
}

/* The verb's arguments and options, against what it takes. */
static int check_verb_args(const struct verb *verb, struct args *a) {
        if (a->n_pos < verb->min_args)
                return usage_error("'%s' needs %d argument%s", verb->name, verb->min_args,
                                   verb->min_args == 1 ? "" : "s");
        if (a->n_pos > verb->max_args)
                return usage_error("too many arguments for '%s'", verb->name);
        for (size_t i = 0; i < ELEMENTSOF(option_names); i++)
                if ((a->seen & option_names[i].flag) && !(verb->options & option_names[i].flag))
                        return usage_error("%s does not apply to '%s'", option_names[i].name, verb->name);

        if (verb->takes_id && num_parse_decimal(a->pos[0], &a->id) < 0)
                return usage_error("invalid region id '%s'", a->pos[0]);
        if ((a->seen & OPT_ALL) && (a->seen & (OPT_LINES | OPT_LIMIT)))
                return usage_error("--all takes no -n or --limit");
        if ((a->seen & OPT_LINES) && (a->seen & (OPT_AFTER | OPT_SINCE | OPT_LIMIT)))
                return usage_error("-n shows the newest entries: it takes no --after, --since or --limit");
        if (verb->run == verb_check) {
                if (strcmp(a->pos[0], "platform") != 0 && strcmp(a->pos[0], "policy") != 0)
                        return usage_error("check takes 'platform' or 'policy', not '%s'", a->pos[0]);
                if ((a->seen & OPT_PLATFORM) && strcmp(a->pos[0], "policy") != 0)
                        return usage_error("--platform applies to 'check policy' only");
        }
        if (verb->run == verb_platform && strcmp(a->pos[0], "probe") != 0)
                return usage_error("platform takes 'probe', not '%s'", a->pos[0]);
        return 0;
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
                { "lines", required_argument, NULL, 'n' },
                { "all", no_argument, NULL, ARG_ALL },
                { "page-size", required_argument, NULL, ARG_PAGE_SIZE },
                { "platform", required_argument, NULL, ARG_PLATFORM },
                { "output", required_argument, NULL, ARG_OUTPUT },
                { "sysfs", required_argument, NULL, ARG_SYSFS },
                {}
        };
        const struct verb *verb = NULL;
        int c, r;

        /* One pass over everything, options before or after the verb. */
        opterr = 0; /* its messages would name argv[0], a path */
        while ((c = getopt_long(argc, argv, ":hn:", options, NULL)) >= 0) {
                r = parse_option(c, optarg, argv[optind - 1], a);
                if (r <= 0)
                        return r;
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
        r = check_verb_args(verb, a);
        if (r < 0)
                return r;
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
