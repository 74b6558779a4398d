/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Where the daemon's logs go: the journal, with structured fields, when stderr is the
 * journal's stream ($JOURNAL_STREAM) or when asked; stderr otherwise.
 */
enum log_target {
        LOG_TARGET_AUTO,
        LOG_TARGET_JOURNAL,
        LOG_TARGET_STDERR,
};

int log_target_from_string(const char *s, enum log_target *ret);
void log_setup(enum log_target target);
