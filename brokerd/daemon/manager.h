/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The daemon around the broker: one sd-event loop serving the agent and admin sockets
 * (socket-activated when systemd passes fds named "agent" and "admin", bound by itself
 * otherwise; every other fd passed is the fd store's, daemon/fdstore.h, where the memfd
 * backend finds its memory again), signals (SIGHUP reloads the policy, SIGTERM/SIGINT stop
 * cleanly), the watchdog, sd_notify READY/STATUS/RELOADING, and a CLOCK_REALTIME timer re-armed after
 * every loop iteration at the broker's next revoke deadline. The backend is attached to the
 * loop before the broker exists, so that its events are wired before the first map.
 */
#include <stdint.h>
#include <sys/types.h>

#include "backend/registry.h"
#include "rpc/server.h"
#include "store/store.h"
#include "util/model.h"
#include "util/macro.h"

struct manager_config {
        const char *platform_path;
        const char *policy_path;
        const char *db_path;
        const char *agent_socket;
        const char *admin_socket;
        const char *agent_group; /* NULL: keep the creating process's group */
        uint64_t revoke_timeout_usec;
        struct rpc_server_limits limits;
        const char *backend; /* a driver of backend/registry.h; NULL: BACKEND_DRIVER_DEFAULT */
        struct backend_options backend_options;
        enum unplug_escalation escalation;
        uint64_t unplug_grace_usec;
        struct store_retention retention; /* what the database keeps of reclaimed regions and audit rows */
};

struct manager;

int manager_new(const struct manager_config *cfg, struct manager **ret);
void manager_free(struct manager *m);
DEFINE_CLEANUP(struct manager, manager_free);

/* Serves until SIGTERM/SIGINT; returns 0 on a clean stop. */
int manager_run(struct manager *m);
