/* SPDX-License-Identifier: Apache-2.0 */
/* brokerd: argv and configuration; everything else is the manager's. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/broker.h"
#include "daemon/log.h"
#include "daemon/manager.h"
#include "util/log.h"
#include "util/num.h"

#ifndef BROKERD_VERSION
#define BROKERD_VERSION "0.1.0"
#endif

static void help(void) {
        printf("brokerd " BROKERD_VERSION ": the hypervisor-side shared-memory broker\n\n"
               "  --platform FILE              platform description (/etc/brokerd/platform.json)\n"
               "  --policy FILE                policy (/etc/brokerd/policy.json)\n"
               "  --db PATH                    sqlite database (/var/lib/brokerd/brokerd.db)\n"
               "  --agent-socket PATH          agents' socket (/run/brokerd/agent.sock, mode 0660)\n"
               "  --admin-socket PATH          admin socket (/run/brokerd/admin.sock, mode 0600)\n"
               "  --agent-group GROUP          group owning the agent socket\n"
               "  --backend memfd|libvirt      how regions are mapped (memfd)\n"
               "  --libvirt-uri URI            libvirt connection of the libvirt backend (qemu:///system)\n"
               "  --qemu-user USER             user QEMU runs as, owner of region files (libvirt-qemu)\n"
               "  --revoke-timeout DURATION    deadline of revokes brokerd starts itself (10s)\n"
               "  --unplug-escalation report|pause|destroy\n"
               "                               against a domain keeping a revoked mapping (report)\n"
               "  --unplug-grace DURATION      time a domain gets to let go before that (10s)\n"
               "  --max-message BYTES          largest request line (64KiB)\n"
               "  --max-depth N                JSON nesting limit (16)\n"
               "  --max-batch N                batch length limit (32)\n"
               "  --max-connections-per-uid N  (16)\n"
               "  --max-pending BYTES          queued output per connection before it is dropped (1MiB)\n"
               "  --log-target auto|journal|stderr\n"
               "  --help, --version\n\n"
               "SIGHUP reloads the policy; SIGTERM stops. See brokerd(8).\n");
}

/* A revoke timeout: a duration ("500ms", "5s", "2m"; plain = seconds) of at most 24h. */
static int parse_revoke_timeout(const char *s, uint64_t *ret) {
        uint64_t v;
        int r = num_parse_duration_usec(s, &v, NULL);

        if (r < 0)
                return r;
        if (v > BROKER_MAX_REVOKE_TIMEOUT_USEC)
                return -ERANGE;
        *ret = v;
        return 0;
}

static int parse_limit(const char *name, const char *s, uint64_t min, uint64_t max, uint64_t *ret) {
        uint64_t v;
        if (num_parse_u64(s, &v) < 0 || v < min || v > max) {
                fprintf(stderr, "brokerd: --%s takes a number from %llu to %llu\n", name, (unsigned long long) min,
                        (unsigned long long) max);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

int main(int argc, char **argv) {
        enum {
                ARG_PLATFORM = 0x100, ARG_POLICY, ARG_DB, ARG_AGENT_SOCKET, ARG_ADMIN_SOCKET, ARG_AGENT_GROUP,
                ARG_REVOKE_TIMEOUT, ARG_MAX_MESSAGE, ARG_MAX_DEPTH, ARG_MAX_BATCH, ARG_MAX_CONN, ARG_MAX_PENDING,
                ARG_LOG_TARGET, ARG_BACKEND, ARG_LIBVIRT_URI, ARG_QEMU_USER, ARG_UNPLUG_ESCALATION, ARG_UNPLUG_GRACE,
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
                { "max-connections-per-uid", required_argument, NULL, ARG_MAX_CONN },
                { "max-pending", required_argument, NULL, ARG_MAX_PENDING },
                { "log-target", required_argument, NULL, ARG_LOG_TARGET },
                { "backend", required_argument, NULL, ARG_BACKEND },
                { "libvirt-uri", required_argument, NULL, ARG_LIBVIRT_URI },
                { "qemu-user", required_argument, NULL, ARG_QEMU_USER },
                { "unplug-escalation", required_argument, NULL, ARG_UNPLUG_ESCALATION },
                { "unplug-grace", required_argument, NULL, ARG_UNPLUG_GRACE },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        struct manager_config cfg = {
                .platform_path = "/etc/brokerd/platform.json",
                .policy_path = "/etc/brokerd/policy.json",
                .db_path = "/var/lib/brokerd/brokerd.db",
                .agent_socket = "/run/brokerd/agent.sock",
                .admin_socket = "/run/brokerd/admin.sock",
                .revoke_timeout_usec = BROKER_DEFAULT_REVOKE_TIMEOUT_USEC,
                .unplug_grace_usec = BROKER_DEFAULT_UNPLUG_GRACE_USEC,
                .limits = RPC_SERVER_LIMITS_DEFAULT,
        };
        _cleanup_(manager_freep) struct manager *m = NULL;
        enum log_target target = LOG_TARGET_AUTO;
        uint64_t v;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case ARG_PLATFORM:
                        cfg.platform_path = optarg;
                        break;
                case ARG_POLICY:
                        cfg.policy_path = optarg;
                        break;
                case ARG_DB:
                        cfg.db_path = optarg;
                        break;
                case ARG_AGENT_SOCKET:
                        cfg.agent_socket = optarg;
                        break;
                case ARG_ADMIN_SOCKET:
                        cfg.admin_socket = optarg;
                        break;
                case ARG_AGENT_GROUP:
                        cfg.agent_group = optarg;
                        break;
                case ARG_REVOKE_TIMEOUT:
                        if (parse_revoke_timeout(optarg, &cfg.revoke_timeout_usec) < 0) {
                                fprintf(stderr, "brokerd: --revoke-timeout takes a duration up to 24h (\"5s\", \"500ms\")\n");
                                return 2;
                        }
                        break;
                case ARG_MAX_MESSAGE:
                        if (parse_limit("max-message", optarg, 256, 16 << 20, &v) < 0)
                                return 2;
                        cfg.limits.max_message = v;
                        break;
                case ARG_MAX_DEPTH:
                        if (parse_limit("max-depth", optarg, 2, 64, &v) < 0)
                                return 2;
                        cfg.limits.max_depth = (unsigned) v;
                        break;
                case ARG_MAX_BATCH:
                        if (parse_limit("max-batch", optarg, 1, 1024, &v) < 0)
                                return 2;
                        cfg.limits.max_batch = (unsigned) v;
                        break;
                case ARG_MAX_CONN:
                        if (parse_limit("max-connections-per-uid", optarg, 1, 4096, &v) < 0)
                                return 2;
                        cfg.limits.max_connections_per_uid = (unsigned) v;
                        break;
                case ARG_MAX_PENDING:
                        if (parse_limit("max-pending", optarg, 4096, 1u << 30, &v) < 0)
                                return 2;
                        cfg.limits.max_pending_bytes = v;
                        break;
                case ARG_LOG_TARGET:
                        if (log_target_from_string(optarg, &target) < 0) {
                                fprintf(stderr, "brokerd: --log-target takes auto, journal or stderr\n");
                                return 2;
                        }
                        break;
                case ARG_BACKEND:
                        if (strcmp(optarg, "memfd") != 0 && strcmp(optarg, "libvirt") != 0) {
                                fprintf(stderr, "brokerd: --backend takes memfd or libvirt\n");
                                return 2;
                        }
#ifndef HAVE_LIBVIRT
                        if (strcmp(optarg, "libvirt") == 0) {
                                fprintf(stderr, "brokerd: built without libvirt: --backend libvirt is not available\n");
                                return 2;
                        }
#endif
                        cfg.backend = optarg;
                        break;
                case ARG_LIBVIRT_URI:
                        cfg.libvirt_uri = optarg;
                        break;
                case ARG_QEMU_USER:
                        if (!*optarg) {
                                fprintf(stderr, "brokerd: --qemu-user takes a user name\n");
                                return 2;
                        }
                        cfg.qemu_user = optarg;
                        break;
                case ARG_UNPLUG_ESCALATION:
                        if (escalation_from_string(optarg, &cfg.escalation) < 0) {
                                fprintf(stderr, "brokerd: --unplug-escalation takes report, pause or destroy\n");
                                return 2;
                        }
                        break;
                case ARG_UNPLUG_GRACE:
                        /* Same range as a revoke deadline; 0 would make every unplug overdue at once. */
                        if (parse_revoke_timeout(optarg, &cfg.unplug_grace_usec) < 0 || cfg.unplug_grace_usec == 0) {
                                fprintf(stderr, "brokerd: --unplug-grace takes a duration from 1ms to 24h\n");
                                return 2;
                        }
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("brokerd " BROKERD_VERSION "\n");
                        return 0;
                default:
                        return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "brokerd: unexpected argument %s\n", argv[optind]);
                return 2;
        }

        log_setup(target);
        r = manager_new(&cfg, &m);
        if (r < 0) {
                log_error("cannot start: %s", strerror(-r));
                return 1;
        }
        r = manager_run(m);
        return r < 0 ? 1 : 0;
}
