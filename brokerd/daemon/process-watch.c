/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/process-watch.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>

#include "util/log.h"

static int on_process_exit(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct process_watch *w = userdata;
        int q;

        (void) revents;
        /* Once is enough: the broker drops (unrefs) this source while it handles the exit. */
        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        if (!w->broker)
                return 0;
        q = broker_process_exited(w->broker, fd);
        if (q < 0)
                log_warning("handling the exit of a holder's process: %s", strerror(-q));
        return 0;
}

int process_watch_add(void *userdata, int pidfd, void **ret_handle) {
        struct process_watch *w = userdata;
        sd_event_source *s = NULL;
        int r;

        r = sd_event_add_io(w->event, &s, pidfd, EPOLLIN, on_process_exit, w);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(s, "holder-process");
        *ret_handle = s;
        return 0;
}

void process_watch_remove(void *userdata, void *handle) {
        (void) userdata;
        sd_event_source_disable_unref(handle);
}
