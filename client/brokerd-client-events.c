/* SPDX-License-Identifier: Apache-2.0 */
/* libbrokerd-client's notifications: subscribing, and handing out what arrived. */
#include "brokerd-client-internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_public_ int bdc_subscribe(struct bdc *c, const char *const *domains, size_t n, struct bdc_error *err) {
        _cleanup_(json_object_putp) struct json_object *params = json_object_new_object(), *result = NULL;

        if (!params)
                return local_error(err, ENOMEM, "out of memory");
        if (domains && n > 0) {
                struct json_object *a = json_object_new_array_ext((int) n);
                if (!a || json_object_object_add(params, "domains", a) < 0) {
                        json_object_put(a);
                        return local_error(err, ENOMEM, "out of memory");
                }
                for (size_t i = 0; i < n; i++) {
                        if (!domains[i])
                                return local_error(err, EINVAL, "domain %zu is NULL", i);
                        struct json_object *d = json_object_new_string(domains[i]);
                        if (!d || json_object_array_add(a, d) < 0) {
                                json_object_put(d);
                                return local_error(err, ENOMEM, "out of memory");
                        }
                }
        }
        return bdc_call(c, "events.subscribe", params, &result, NULL, NULL, err);
}

_public_ void bdc_event_clear(struct bdc_event *ev) {
        if (!ev)
                return;
        if (ev->params)
                json_object_put(ev->params);
        *ev = (struct bdc_event) {};
}

static uint64_t now_msec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

_public_ int bdc_next_event(struct bdc *c, int timeout_ms, struct bdc_event *ret) {
        uint64_t until = 0;

        if (!c || !ret)
                return -EINVAL;
        if (timeout_ms > 0)
                until = now_msec() + (uint64_t) timeout_ms;

        for (;;) {
                struct json_object *response = NULL;
                struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
                int r, wait;

                if (c->events_head) {
                        struct bdc_queued_event *e = c->events_head;

                        c->events_head = e->next;
                        if (!c->events_head)
                                c->events_tail = NULL;
                        c->n_events--;
                        memcpy(ret->method, e->method, sizeof(ret->method));
                        ret->params = TAKE_PTR(e->params);
                        free(e);
                        return 0;
                }
                if (c->dead)
                        return -c->dead;

                r = process_lines(c, &response);
                if (r > 0) {
                        struct json_object *id = NULL;
                        bool closing;

                        /* An error with id null is the daemon saying why it closes the
                         * connection (a limit); any other response has no request. */
                        json_object_object_get_ex(response, "id", &id);
                        closing = !id && json_object_object_get_ex(response, "error", NULL);
                        json_object_put(response);
                        return bdc_kill(c, closing ? -ECONNRESET : -EBADMSG);
                }
                if (r < 0)
                        return r == -ENOMEM ? r : bdc_kill(c, r);
                if (c->events_head)
                        continue;

                if (timeout_ms < 0)
                        wait = -1;
                else if (timeout_ms == 0)
                        wait = 0;
                else {
                        uint64_t now = now_msec();
                        wait = now >= until ? 0 : (int) (until - now);
                }
                r = poll(&pfd, 1, wait);
                if (r < 0)
                        return negative_errno();
                if (r == 0)
                        return -ETIMEDOUT;

                r = bdc_read(c);
                if (r == -EAGAIN)
                        continue;
                if (r == -ECONNRESET || r == -EPIPE) {
                        bdc_kill(c, 0);
                        continue; /* hand out what was queued first */
                }
                if (r < 0)
                        return r == -ENOMEM ? r : bdc_kill(c, r);
        }
}

