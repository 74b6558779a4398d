/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Logging with structured fields. The core logs through here without knowing where it
 * goes: stderr by default; the daemon installs a sink that writes to the journal (with
 * BROKERD_REGION=, BROKERD_DOMAIN=, BROKERD_ACTOR= fields) when it runs under systemd.
 */
#include <stdint.h>
#include <syslog.h>

#include "macro.h"

struct log_fields {
        uint64_t region;     /* 0: none */
        const char *domain;  /* may be NULL */
        const char *actor;   /* may be NULL */
};

typedef void (*log_sink_t)(int priority, const struct log_fields *fields, const char *message);

void log_set_sink(log_sink_t sink);
void log_set_max_level(int priority);
void log_fields(int priority, const struct log_fields *fields, const char *fmt, ...) _printf_(3, 4);

#define log_full(prio, ...) log_fields((prio), NULL, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_region(prio, region_, domain_, actor_, ...)                                                  \
        log_fields((prio), &(struct log_fields) { .region = (region_), .domain = (domain_), .actor = (actor_) }, \
                   __VA_ARGS__)
