/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Where the daemon's logs go: the journal, with structured fields, when stderr is the
 * journal's stream ($JOURNAL_STREAM) or when asked; stderr otherwise. And how the broker's
 * events read in it: one line each, with the region, domain and owner as fields.
 */
#include "core/broker.h"

enum log_target {
        LOG_TARGET_AUTO,
        LOG_TARGET_JOURNAL,
        LOG_TARGET_STDERR,
        _LOG_TARGET_MAX,
};

/* "auto", "journal" or "stderr"; -EINVAL otherwise, *ret untouched. */
int log_target_from_string(const char *s, enum log_target *ret);
void log_setup(enum log_target target);
/* "emerg" ... "debug" to LOG_EMERG ... LOG_DEBUG; -EINVAL for anything else, *ret untouched. */
int log_level_from_string(const char *s, int *ret);

/* "attached", "unplug overdue", ...; NULL for a type the table does not know. */
void log_broker_event(const struct broker_event *ev);
