/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The event-loop side of the broker's process watch (broker_config.watch_process): each holder's
 * pidfd becomes an io source; when it turns readable (the process exited) the broker is told
 * through broker_process_exited(). Give the broker process_watch_add/remove with a
 * struct process_watch as userdata; set .broker once the broker exists (nothing is watched before).
 */
#include <systemd/sd-event.h>

#include "core/broker.h"

struct process_watch {
        sd_event *event;
        struct broker *broker;
};

int process_watch_add(void *userdata, int pidfd, void **ret_handle);
void process_watch_remove(void *userdata, void *handle);
