/* SPDX-License-Identifier: Apache-2.0 */
/* brokerd: argv and configuration; everything else is the manager's (like systemd's src/oom/). */
#include <assert.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/registry.h"
#include "config.h"
#include "core/broker.h"
#include "daemon/log.h"
#include "daemon/manager.h"
#include "util/log.h"
#include "util/num.h"

/* What the database keeps of the past by default: a month, and bounded counts of rows. */
#define RETAIN_AGE_DEFAULT_USEC (30 * 24 * 3600 * INT64_C(1000000))
#define RETAIN_REGIONS_DEFAULT UINT64_C(100000)
#define RETAIN_AUDIT_DEFAULT UINT64_C(1000000)

enum {
        ARG_PLATFORM = 0x100, ARG_POLICY, ARG_DB, ARG_AGENT_SOCKET, ARG_ADMIN_SOCKET, ARG_AGENT_GROUP,
        ARG_REVOKE_TIMEOUT, ARG_MAX_MESSAGE, ARG_MAX_DEPTH, ARG_MAX_BATCH, ARG_MAX_CONN_PER_UID, ARG_MAX_CONN,
        ARG_MAX_CONN_UNKNOWN_UID, ARG_MAX_PENDING, ARG_RETAIN_AGE, ARG_RETAIN_REGIONS, ARG_RETAIN_AUDIT,
        ARG_LOG_TARGET, ARG_LOG_LEVEL, ARG_BACKEND, ARG_LIBVIRT_URI, ARG_QEMU_USER, ARG_IVSHMEM_DIR, ARG_UNPLUG_ESCALATION, ARG_UNPLUG_GRACE,
        ARG_VERSION,
};

static const struct option options[] = {
        { "platform", required_argument, NULL, ARG_PLATFORM },
        { "policy", required_argument, NULL, ARG_POLICY },
        { "db", required_argument, NULL, ARG_DB },
        { "agent-socket", required_argument, NULL, ARG_AGENT_SOCKET },
        { "admin-socket", required_argument, NULL, ARG_ADMIN_SOCKET },
        { "agent-group", required_argument, NULL, ARG_AGENT_GROUP },
        { "revoke-timeout", required_argument, NULL, ARG_REVOKE_TIMEOUT },
        { "max-message", required_argument, NULL, ARG_MAX_MESSAGE },
        { "max-depth", required_argument, NULL, ARG_MAX_DEPTH },
        { "max-batch", required_argument, NULL, ARG_MAX_BATCH },
        { "max-connections-per-uid", required_argument, NULL, ARG_MAX_CONN_PER_UID },
        { "max-connections", required_argument, NULL, ARG_MAX_CONN },
        { "max-connections-unknown-uid", required_argument, NULL, ARG_MAX_CONN_UNKNOWN_UID },
        { "max-pending", required_argument, NULL, ARG_MAX_PENDING },
        { "retain-age", required_argument, NULL, ARG_RETAIN_AGE },
        { "retain-regions", required_argument, NULL, ARG_RETAIN_REGIONS },
        { "retain-audit", required_argument, NULL, ARG_RETAIN_AUDIT },
        { "log-target", required_argument, NULL, ARG_LOG_TARGET },
        { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
        { "backend", required_argument, NULL, ARG_BACKEND },
        { "libvirt-uri", required_argument, NULL, ARG_LIBVIRT_URI },
        { "qemu-user", required_argument, NULL, ARG_QEMU_USER },
        { "ivshmem-dir", required_argument, NULL, ARG_IVSHMEM_DIR },
        { "unplug-escalation", required_argument, NULL, ARG_UNPLUG_ESCALATION },
        { "unplug-grace", required_argument, NULL, ARG_UNPLUG_GRACE },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, ARG_VERSION },
        {},
};

/* A numeric flag: its range, and the manager_config field (of 4 or 8 bytes) it sets. */
struct number_option {
        int id;
        const char *name;
        uint64_t min, max;
        size_t offset, size;
};

#define NUMBER_OPTION(id_, name_, min_, max_, field)                                                     \
        { .id = (id_), .name = (name_), .min = (min_), .max = (max_),                                   \
          .offset = offsetof(struct manager_config, field),                                              \
          .size = sizeof(((struct manager_config *) NULL)->field) }

static const struct number_option number_options[] = {
        NUMBER_OPTION(ARG_MAX_MESSAGE, "max-message", 256, 16 << 20, limits.max_message),
        NUMBER_OPTION(ARG_MAX_DEPTH, "max-depth", 2, 64, limits.max_depth),
        NUMBER_OPTION(ARG_MAX_BATCH, "max-batch", 1, 1024, limits.max_batch),
        NUMBER_OPTION(ARG_MAX_CONN_PER_UID, "max-connections-per-uid", 1, 4096, limits.max_connections_per_uid),
        NUMBER_OPTION(ARG_MAX_CONN, "max-connections", 1, 65536, limits.max_connections),
        NUMBER_OPTION(ARG_MAX_CONN_UNKNOWN_UID, "max-connections-unknown-uid", 1, 4096,
                      limits.max_connections_unknown_uid),
        NUMBER_OPTION(ARG_MAX_PENDING, "max-pending", 4096, 1u << 30, limits.max_pending_bytes),
        /* 0: no limit by count; INT64_MAX because sqlite counts in signed 64 bits. */
        NUMBER_OPTION(ARG_RETAIN_REGIONS, "retain-regions", 0, INT64_MAX, retention.max_regions),
        NUMBER_OPTION(ARG_RETAIN_AUDIT, "retain-audit", 0, INT64_MAX, retention.max_audit),
};

static void help(void) {
        printf("brokerd " BROKERD_VERSION ": the hypervisor-side shared-memory broker\n\n"
               "  --platform FILE              platform description (/etc/brokerd/platform.json)\n"
               "  --policy FILE                policy (/etc/brokerd/policy.json)\n"
               "  --db PATH                    sqlite database (/var/lib/brokerd/brokerd.db)\n"
               "  --agent-socket PATH          agents' socket (/run/brokerd/agent.sock, mode 0660)\n"
               "  --admin-socket PATH          admin socket (/run/brokerd/admin.sock, mode 0600)\n"
               "  --agent-group GROUP          group owning the agent socket\n"
               "  --backend NAME               how regions are mapped (" BACKEND_DRIVER_DEFAULT "; see below)\n"
               "  --libvirt-uri URI            libvirt connection of the libvirt backend (qemu:///system)\n"
               "  --qemu-user USER             user QEMU runs as, owner of region files (libvirt-qemu)\n"
               "  --ivshmem-dir DIR            libvirt backend: doorbell regions' ivshmem sockets (/run/brokerd/ivshmem)\n"
               "  --revoke-timeout DURATION    deadline of revokes brokerd starts itself (10s)\n"
               "  --unplug-escalation report|pause|stop|destroy|kill\n"
               "                               against a domain or process keeping a revoked mapping\n"
               "                               (report; stop = pause, kill = destroy)\n"
               "  --unplug-grace DURATION      time a holder gets to let go before that (10s)\n"
               "  --max-message BYTES          largest request line (64KiB)\n"
               "  --max-depth N                JSON nesting limit (16)\n"
               "  --max-batch N                batch length limit (32)\n"
               "  --max-connections N          connections in all (1024)\n"
               "  --max-connections-per-uid N  (16)\n"
               "  --max-connections-unknown-uid N\n"
               "                               per uid the policy does not know (2)\n"
               "  --max-pending BYTES          queued output per connection before it is dropped (1MiB)\n"
               "  --retain-age DURATION        keep reclaimed regions and audit rows this long (30d; 0: no limit)\n"
               "  --retain-regions N           reclaimed regions kept (100000; 0: no limit)\n"
               "  --retain-audit N             audit rows kept (1000000; 0: no limit)\n"
               "  --log-target auto|journal|stderr\n"
               "  --log-level LEVEL            the least urgent priority logged (info; debug adds details)\n"
               "  --help, --version\n\n"
               "Backends:\n");
        for (size_t i = 0; backend_driver_at(i); i++) {
                const struct backend_driver *d = backend_driver_at(i);
                printf("  %-28s %s%s\n", d->name, d->summary, d->new ? "" : " (not in this build)");
        }
        printf("\nSIGHUP reloads the policy; SIGTERM stops. See brokerd(8).\n");
}

static struct manager_config config_default(void) {
        return (struct manager_config) {
                .platform_path = "/etc/brokerd/platform.json",
                .policy_path = "/etc/brokerd/policy.json",
                .db_path = "/var/lib/brokerd/brokerd.db",
                .agent_socket = "/run/brokerd/agent.sock",
                .admin_socket = "/run/brokerd/admin.sock",
                .revoke_timeout_usec = BROKER_DEFAULT_REVOKE_TIMEOUT_USEC,
                .unplug_grace_usec = BROKER_DEFAULT_UNPLUG_GRACE_USEC,
                .limits = RPC_SERVER_LIMITS_DEFAULT,
                .retention = {
                        .max_age_usec = RETAIN_AGE_DEFAULT_USEC,
                        .max_regions = RETAIN_REGIONS_DEFAULT,
                        .max_audit = RETAIN_AUDIT_DEFAULT,
                },
        };
}

/* A duration ("500ms", "5s", "2m", "30d"; plain = seconds) of at least min and at most max. */
static int parse_duration(const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        uint64_t v;
        int r = num_parse_duration_usec(s, &v, NULL);

        if (r < 0)
                return r;
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

static int parse_number(const struct number_option *o, const char *s, struct manager_config *cfg) {
        void *field = (char *) cfg + o->offset;
        uint64_t v;

        if (num_parse_u64(s, &v) < 0 || v < o->min || v > o->max) {
                fprintf(stderr, "brokerd: --%s takes a number from %llu to %llu\n", o->name,
                        (unsigned long long) o->min, (unsigned long long) o->max);
                return -EINVAL;
        }
        if (o->size == sizeof(uint64_t))
                memcpy(field, &v, sizeof(v));
        else {
                uint32_t v32 = (uint32_t) v;

                assert(o->size == sizeof(v32) && o->max <= UINT32_MAX);
                memcpy(field, &v32, sizeof(v32));
        }
        return 0;
}

/* The manager_config field a flag taking a path or a name sets as given; NULL for other flags. */
static const char **string_option(int id, struct manager_config *cfg) {
        switch (id) {
        case ARG_PLATFORM:
                return &cfg->platform_path;
        case ARG_POLICY:
                return &cfg->policy_path;
        case ARG_DB:
                return &cfg->db_path;
        case ARG_AGENT_SOCKET:
                return &cfg->agent_socket;
        case ARG_ADMIN_SOCKET:
                return &cfg->admin_socket;
        case ARG_AGENT_GROUP:
                return &cfg->agent_group;
        case ARG_LIBVIRT_URI:
                return &cfg->backend_options.libvirt_uri;
        case ARG_QEMU_USER:
                return &cfg->backend_options.qemu_user;
        case ARG_IVSHMEM_DIR:
                return &cfg->backend_options.ivshmem_dir;
        default:
                return NULL;
        }
}

static int parse_backend(const char *s, struct manager_config *cfg) {
        const struct backend_driver *d = backend_driver_find(s);

        if (!d) {
                fprintf(stderr, "brokerd: --backend takes");
                for (size_t i = 0; backend_driver_at(i); i++)
                        fprintf(stderr, "%s%s", i == 0 ? " " : backend_driver_at(i + 1) ? ", " : " or ",
                                backend_driver_at(i)->name);
                fprintf(stderr, "\n");
                return -EINVAL;
        }
        if (!d->new) {
                fprintf(stderr, "brokerd: built without %s: --backend %s is not available\n", d->name, d->name);
                return -EOPNOTSUPP;
        }
        cfg->backend = d->name;
        return 0;
}

/* The flags that take a duration or a name from a fixed set. */
static int parse_special(int id, const char *s, struct manager_config *cfg) {
        uint64_t v;

        switch (id) {
        case ARG_REVOKE_TIMEOUT:
                if (parse_duration(s, 0, BROKER_MAX_REVOKE_TIMEOUT_USEC, &cfg->revoke_timeout_usec) < 0)
                        return fprintf(stderr, "brokerd: --revoke-timeout takes a duration up to 24h (\"5s\", \"500ms\")\n"), -EINVAL;
                return 0;
        case ARG_UNPLUG_GRACE:
                /* Same range as a revoke deadline; 0 would make every unplug overdue at once. */
                if (parse_duration(s, 1, BROKER_MAX_REVOKE_TIMEOUT_USEC, &cfg->unplug_grace_usec) < 0)
                        return fprintf(stderr, "brokerd: --unplug-grace takes a duration from 1ms to 24h\n"), -EINVAL;
                return 0;
        case ARG_RETAIN_AGE:
                if (parse_duration(s, 0, INT64_MAX, &v) < 0)
                        return fprintf(stderr, "brokerd: --retain-age takes a duration (\"30d\", \"12h\"; 0: no limit)\n"), -EINVAL;
                cfg->retention.max_age_usec = (int64_t) v;
                return 0;
        case ARG_UNPLUG_ESCALATION:
                if (escalation_from_string(s, &cfg->escalation) < 0)
                        return fprintf(stderr, "brokerd: --unplug-escalation takes report, pause (stop) or destroy (kill)\n"), -EINVAL;
                return 0;
        case ARG_BACKEND:
                return parse_backend(s, cfg);
        default:
                return -EINVAL; /* getopt_long() said why */
        }
}

static int parse_option(int id, const char *s, struct manager_config *cfg) {
        const char **field = string_option(id, cfg);

        if (field) {
                if (id == ARG_QEMU_USER && !*s)
                        return fprintf(stderr, "brokerd: --qemu-user takes a user name\n"), -EINVAL;
                if (id == ARG_IVSHMEM_DIR && s[0] != '/')
                        return fprintf(stderr, "brokerd: --ivshmem-dir takes an absolute path\n"), -EINVAL;
                *field = s;
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(number_options); i++)
                if (number_options[i].id == id)
                        return parse_number(&number_options[i], s, cfg);
        return parse_special(id, s, cfg);
}

/* > 0: run with *cfg; 0: done (--help, --version); < 0: bad arguments, said on stderr. */
static int parse_argv(int argc, char **argv, struct manager_config *cfg, enum log_target *target) {
        int c, r, level;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("brokerd " BROKERD_VERSION "\n");
                        return 0;
                case ARG_LOG_TARGET:
                        if (log_target_from_string(optarg, target) < 0)
                                return fprintf(stderr, "brokerd: --log-target takes auto, journal or stderr\n"), -EINVAL;
                        break;
                case ARG_LOG_LEVEL:
                        if (log_level_from_string(optarg, &level) < 0)
                                return fprintf(stderr, "brokerd: --log-level takes emerg, alert, crit, err, warning, "
                                                       "notice, info or debug\n"),
                                       -EINVAL;
                        log_set_max_level(level);
                        break;
                default:
                        r = parse_option(c, optarg, cfg);
                        if (r < 0)
                                return r;
                }
        if (optind < argc) {
                fprintf(stderr, "brokerd: unexpected argument %s\n", argv[optind]);
                return -EINVAL;
        }
        return 1;
}

static int run(const struct manager_config *cfg) {
        _cleanup_(manager_freep) struct manager *m = NULL;
        int r;

        r = manager_new(cfg, &m);
        if (r < 0)
                return log_error("cannot start: %s", strerror(-r)), r;
        return manager_run(m);
}

int main(int argc, char **argv) {
        struct manager_config cfg = config_default();
        enum log_target target = LOG_TARGET_AUTO;
        int r;

        r = parse_argv(argc, argv, &cfg, &target);
        if (r <= 0)
                return r < 0 ? 2 : 0;
        log_setup(target);
        return run(&cfg) < 0 ? 1 : 0;
}
