/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <systemd/sd-journal.h>

#include "util/log.h"
#include "util/macro.h"

static void journal_sink(int priority, const struct log_fields *f, const char *message) {
        char region[48] = "", domain[160] = "", actor[160] = "";

        if (f && f->region)
                snprintf(region, sizeof(region), "BROKERD_REGION=%" PRIu64, f->region);
        if (f && f->domain)
                snprintf(domain, sizeof(domain), "BROKERD_DOMAIN=%s", f->domain);
        if (f && f->actor)
                snprintf(actor, sizeof(actor), "BROKERD_ACTOR=%s", f->actor);
        /* sd_journal_send stops at the first NULL; empty fields are skipped by pointing past them. */
        const char *fields[3];
        size_t n = 0;
        if (region[0])
                fields[n++] = region;
        if (domain[0])
                fields[n++] = domain;
        if (actor[0])
                fields[n++] = actor;
        sd_journal_send("MESSAGE=%s", message, "PRIORITY=%i", priority, "SYSLOG_IDENTIFIER=brokerd",
                        n > 0 ? "%s" : NULL, n > 0 ? fields[0] : NULL,
                        n > 1 ? "%s" : NULL, n > 1 ? fields[1] : NULL,
                        n > 2 ? "%s" : NULL, n > 2 ? fields[2] : NULL, NULL);
}

/* stderr is the journal when $JOURNAL_STREAM names its device and inode. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == dev && st.st_ino == ino;
}

static const char *const log_target_names[] = {
        [LOG_TARGET_AUTO] = "auto",
        [LOG_TARGET_JOURNAL] = "journal",
        [LOG_TARGET_STDERR] = "stderr",
};
_Static_assert(ELEMENTSOF(log_target_names) == _LOG_TARGET_MAX, "a name for every log target");

int log_target_from_string(const char *s, enum log_target *ret) {
        for (size_t i = 0; i < ELEMENTSOF(log_target_names); i++)
                if (strcmp(s, log_target_names[i]) == 0) {
                        *ret = (enum log_target) i;
                        return 0;
                }
        return -EINVAL;
}

/* syslog's names, as journalctl -p and systemd's LogLevel= spell them. */
static const char *const log_level_names[] = {
        [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit", [LOG_ERR] = "err",
        [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

int log_level_from_string(const char *s, int *ret) {
        for (size_t i = 0; i < ELEMENTSOF(log_level_names); i++)
                if (strcmp(s, log_level_names[i]) == 0) {
                        *ret = (int) i;
                        return 0;
                }
        return -EINVAL;
}

void log_setup(enum log_target target) {
        if (target == LOG_TARGET_JOURNAL || (target == LOG_TARGET_AUTO && stderr_is_journal()))
                log_set_sink(journal_sink);
        else
                log_set_sink(NULL);
}

void log_broker_event(const struct broker_event *ev) {
        const char *name = broker_event_type_to_string(ev->type);
        bool overdue = ev->type == BROKER_EVENT_UNPLUG_OVERDUE;
        /*
         * A holder's doorbells follow its hold: joined and left restate the attach, release or
         * revoke logged beside them, so they are details (one journal line for an attach, not two).
         * So does a route: it changes only with a share, a take-down or a reconcile, logged
         * beside it with the same reason.
         */
        bool detail = ev->type == BROKER_EVENT_JOINED || ev->type == BROKER_EVENT_LEFT ||
                      ev->type == BROKER_EVENT_ROUTE_CHANGED;
        int priority = overdue                              ? LOG_WARNING
                       : ev->type == BROKER_EVENT_REVOKED ? LOG_NOTICE
                       : detail                           ? LOG_DEBUG
                                                          : LOG_INFO;

        log_region(priority, ev->region, ev->domain, ev->owner, "%s%s%s%s%s%s%s", name ?: "unknown event",
                   ev->device ? " on " : "", ev->device ?: "", ev->reason ? ": " : "", ev->reason ?: "",
                   overdue ? "; escalation: " : "", overdue ? escalation_to_string(ev->escalation) : "");
}
