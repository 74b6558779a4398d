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

int log_target_from_string(const char *s, enum log_target *ret) {
        if (strcmp(s, "auto") == 0)
                *ret = LOG_TARGET_AUTO;
        else if (strcmp(s, "journal") == 0)
                *ret = LOG_TARGET_JOURNAL;
        else if (strcmp(s, "stderr") == 0)
                *ret = LOG_TARGET_STDERR;
        else
                return -EINVAL;
        return 0;
}

void log_setup(enum log_target target) {
        if (target == LOG_TARGET_JOURNAL || (target == LOG_TARGET_AUTO && stderr_is_journal()))
                log_set_sink(journal_sink);
        else
                log_set_sink(NULL);
}
