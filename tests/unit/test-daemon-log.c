/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemon's log: every broker event type has a name and reads as one line with its fields
 * (the manager logs each event the core emits through log_broker_event()), and the
 * --log-target names.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "daemon/log.h"
#include "util/log.h"

static int seen_priority;
static char seen_message[512], seen_domain[64], seen_actor[64];
static uint64_t seen_region;

static void capture(int priority, const struct log_fields *f, const char *message) {
        seen_priority = priority;
        snprintf(seen_message, sizeof(seen_message), "%s", message);
        seen_region = f ? f->region : 0;
        snprintf(seen_domain, sizeof(seen_domain), "%s", f && f->domain ? f->domain : "");
        snprintf(seen_actor, sizeof(seen_actor), "%s", f && f->actor ? f->actor : "");
}

static void test_every_event_type_has_a_name(void **state) {
        (void) state;
        for (int t = BROKER_EVENT_ATTACHED; t < _BROKER_EVENT_TYPE_MAX; t++) {
                const char *name = broker_event_type_to_string((enum broker_event_type) t);

                assert_non_null(name);
                for (int u = BROKER_EVENT_ATTACHED; u < t; u++)
                        assert_string_not_equal(name, broker_event_type_to_string((enum broker_event_type) u));
        }
        assert_string_equal(broker_event_type_to_string(BROKER_EVENT_UNPLUG_OVERDUE), "unplug overdue");
        assert_null(broker_event_type_to_string(_BROKER_EVENT_TYPE_MAX));
        assert_null(broker_event_type_to_string((enum broker_event_type) -1));
}

/* The event the e2e suite reaches: a domain kept a revoked mapping past its grace. */
static void test_unplug_overdue_is_logged(void **state) {
        (void) state;
        log_set_sink(capture);
        log_broker_event(&(struct broker_event) {
                .type = BROKER_EVENT_UNPLUG_OVERDUE, .region = 42, .owner = "hw0", .device = "nic0",
                .domain = "vm1", .reason = "the guest ignored the unplug", .escalation = ESCALATION_PAUSE,
        });
        log_set_sink(NULL);
        assert_int_equal(seen_priority, LOG_WARNING);
        assert_string_equal(seen_message, "unplug overdue on nic0: the guest ignored the unplug; escalation: pause");
        assert_int_equal(seen_region, 42);
        assert_string_equal(seen_domain, "vm1");
        assert_string_equal(seen_actor, "hw0");
}

static void test_other_events_read_as_before(void **state) {
        (void) state;
        log_set_sink(capture);
        log_broker_event(&(struct broker_event) { .type = BROKER_EVENT_REVOKED, .region = 7, .domain = "vm2",
                                                  .reason = "deadline passed" });
        assert_int_equal(seen_priority, LOG_NOTICE);
        assert_string_equal(seen_message, "revoked: deadline passed");
        log_broker_event(&(struct broker_event) { .type = BROKER_EVENT_RECLAIMED, .region = 7, .device = "nic0" });
        assert_int_equal(seen_priority, LOG_INFO);
        assert_string_equal(seen_message, "reclaimed on nic0");
        log_set_sink(NULL);
}

/* A route changes with a share, take-down or reconcile logged beside it: a detail too. */
static void test_route_change_is_a_detail(void **state) {
        (void) state;
        log_set_sink(capture);
        seen_priority = -1;
        log_broker_event(&(struct broker_event) { .type = BROKER_EVENT_ROUTE_CHANGED, .device = "nic0",
                                                  .domain = "vm1", .reason = "region shared" });
        assert_int_equal(seen_priority, -1);
        log_set_max_level(LOG_DEBUG);
        log_broker_event(&(struct broker_event) { .type = BROKER_EVENT_ROUTE_CHANGED, .device = "nic0",
                                                  .domain = "vm1", .reason = "revoked by owner" });
        assert_int_equal(seen_priority, LOG_DEBUG);
        assert_string_equal(seen_message, "route changed on nic0: revoked by owner");
        log_set_max_level(LOG_INFO);
        log_set_sink(NULL);
}

/* Doorbell membership restates the attach or release logged beside it: a detail, not a line. */
static void test_doorbell_membership_is_a_detail(void **state) {
        (void) state;
        log_set_sink(capture);
        seen_priority = -1;
        log_broker_event(&(struct broker_event) { .type = BROKER_EVENT_JOINED, .region = 7, .domain = "vm2",
                                                  .device = "nic0" });
        assert_int_equal(seen_priority, -1); /* not at the default level */
        log_set_max_level(LOG_DEBUG);
        log_broker_event(&(struct broker_event) { .type = BROKER_EVENT_LEFT, .region = 7, .domain = "vm2",
                                                  .device = "nic0", .reason = "released" });
        assert_int_equal(seen_priority, LOG_DEBUG);
        assert_string_equal(seen_message, "left on nic0: released");
        log_broker_event(&(struct broker_event) { .type = BROKER_EVENT_ATTACHED, .region = 7, .domain = "vm2",
                                                  .device = "nic0" });
        assert_int_equal(seen_priority, LOG_INFO);
        log_set_max_level(LOG_INFO);
        log_set_sink(NULL);
}

static void test_log_level_names(void **state) {
        int level = -1;

        (void) state;
        assert_int_equal(log_level_from_string("debug", &level), 0);
        assert_int_equal(level, LOG_DEBUG);
        assert_int_equal(log_level_from_string("err", &level), 0);
        assert_int_equal(level, LOG_ERR);
        assert_int_equal(log_level_from_string("emerg", &level), 0);
        assert_int_equal(level, LOG_EMERG);
        assert_int_equal(log_level_from_string("verbose", &level), -EINVAL);
        assert_int_equal(log_level_from_string("7", &level), -EINVAL);
        assert_int_equal(level, LOG_EMERG);
}

static void test_log_target_names(void **state) {
        enum log_target t = LOG_TARGET_STDERR;

        (void) state;
        assert_int_equal(log_target_from_string("auto", &t), 0);
        assert_int_equal(t, LOG_TARGET_AUTO);
        assert_int_equal(log_target_from_string("journal", &t), 0);
        assert_int_equal(t, LOG_TARGET_JOURNAL);
        assert_int_equal(log_target_from_string("stderr", &t), 0);
        assert_int_equal(t, LOG_TARGET_STDERR);
        assert_int_equal(log_target_from_string("syslog", &t), -EINVAL);
        assert_int_equal(t, LOG_TARGET_STDERR);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_event_type_has_a_name),
                cmocka_unit_test(test_unplug_overdue_is_logged),
                cmocka_unit_test(test_doorbell_membership_is_a_detail),
                cmocka_unit_test(test_route_change_is_a_detail),
                cmocka_unit_test(test_log_level_names),
                cmocka_unit_test(test_other_events_read_as_before),
                cmocka_unit_test(test_log_target_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
