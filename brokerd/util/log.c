/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

static log_sink_t current_sink;
static int max_level = LOG_INFO;

void log_set_sink(log_sink_t sink) {
        current_sink = sink;
}

void log_set_max_level(int priority) {
        max_level = priority;
}

static void stderr_sink(int priority, const struct log_fields *f, const char *message) {
        (void) priority;
        if (f && f->region)
                fprintf(stderr, "brokerd: region %" PRIu64 "%s%s: %s\n", f->region, f->domain ? " " : "",
                        f->domain ?: "", message);
        else
                fprintf(stderr, "brokerd: %s\n", message);
}

void log_fields(int priority, const struct log_fields *fields, const char *fmt, ...) {
        char message[512];
        va_list ap;

        if (priority > max_level)
                return;
        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        (current_sink ?: stderr_sink)(priority, fields, message);
}
