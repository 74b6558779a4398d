/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The libvirt backend against libvirt's in-process test driver (test:///default): the size
 * and pool checks, the region files, the refusals of map/unmap, and lifecycle events reaching
 * the sd-event loop. Hot-plugging itself needs QEMU: tests/e2e covers it. Needs root (the
 * files are handed to the QEMU user) and a libvirt-qemu user; skips otherwise.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libvirt/libvirt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "backend/backend-libvirt.h"
#include "backend/libvirt-internal.h"
#include "util/macro.h"

#define URI "test:///default"
#define MIB (UINT64_C(1) << 20)


struct fixture {
        char pool_name[32];
        struct platform_pool pool;
        struct backend *b;
        uid_t qemu_uid;
};

static int fixture_setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        snprintf(f->pool_name, sizeof(f->pool_name), "ut%d", (int) getpid());
        f->pool = (struct platform_pool) {
                .name = f->pool_name, .base = 0x40000000, .end = 0x80000000, .granule = 4096,
                .backing = BACKING_SHM, .backing_path = (char *) "/dev/shm",
        };
        if (backend_libvirt_new(URI, NULL, &f->b) < 0) {
                free(f);
                return -1;
        }
        f->qemu_uid = getpwnam("libvirt-qemu")->pw_uid;
        *state = f;
        return 0;
}

static int fixture_teardown(void **state) {
        struct fixture *f = *state;

        backend_free(f->b);
        free(f);
        return 0;
}

static void region_path(const struct fixture *f, uint64_t id, char *buf, size_t n) {
        snprintf(buf, n, "/dev/shm/brokerd-%s-%" PRIu64, f->pool_name, id);
}

static int check(struct fixture *f, const struct platform_pool *pool, uint64_t size, char *why, size_t n) {
        return backend_check(f->b, &(struct backend_region) { .pool = pool, .size = size }, why, n);
}

static void test_check(void **state) {
        struct fixture *f = *state;
        struct platform_pool other = f->pool, memfd = f->pool;
        char why[256] = "";

        assert_int_equal(check(f, &f->pool, MIB, why, sizeof(why)), 0);
        assert_int_equal(check(f, &f->pool, 4096, why, sizeof(why)), 0);

        assert_int_equal(check(f, &f->pool, 3 * MIB, why, sizeof(why)), -EINVAL);
        assert_non_null(strstr(why, "QEMU's ivshmem needs a power-of-two size"));
        assert_int_equal(check(f, &f->pool, 2048, why, sizeof(why)), -EINVAL);

        /* libvirt only ever opens /dev/shm/<name>: any other directory would not be ours. */
        other.backing_path = (char *) "/dev/shm/brokerd";
        why[0] = 0;
        assert_int_equal(check(f, &other, MIB, why, sizeof(why)), -EINVAL);
        assert_non_null(strstr(why, "/dev/shm"));
        other.backing_path = (char *) "/dev/shm//";
        assert_int_equal(check(f, &other, MIB, why, sizeof(why)), 0);
        memfd.backing = BACKING_MEMFD;
        memfd.backing_path = NULL;
        assert_int_equal(check(f, &memfd, MIB, why, sizeof(why)), -EINVAL);
}

static void test_file_lifecycle(void **state) {
        struct fixture *f = *state;
        struct backend_region r = { .id = 7, .base = 0x40000000, .size = MIB, .pool = &f->pool };
        struct backend_region wrong = r;
        char path[128];
        struct stat st;
        char buf[16] = "";
        int fd;

        region_path(f, r.id, path, sizeof(path));
        (void) unlink(path);

        assert_int_equal(f->b->ops->create(f->b, &r), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(st.st_uid, f->qemu_uid);
        assert_int_equal(st.st_size, (off_t) MIB);
        assert_int_equal(f->b->ops->restore(f->b, &r), 0);

        /* Another size is another region: restore refuses it. */
        wrong.size = 2 * MIB;
        assert_int_equal(f->b->ops->restore(f->b, &wrong), -EINVAL);
        wrong.size = 3 * MIB;
        assert_int_equal(f->b->ops->create(f->b, &wrong), -EINVAL);

        /* scrub() zeroes what was written. */
        fd = open(path, O_RDWR | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "secret", 6, 4096), 6);
        assert_int_equal(f->b->ops->scrub(f->b, &r), 0);
        assert_int_equal(pread(fd, buf, 6, 4096), 6);
        assert_memory_equal(buf, "\0\0\0\0\0\0", 6);
        close(fd);

        /* A world-readable file is not one of ours. */
        assert_int_equal(chmod(path, 0644), 0);
        assert_int_equal(f->b->ops->restore(f->b, &r), -EBADFD);
        assert_int_equal(f->b->ops->scrub(f->b, &r), -EBADFD);

        /* create() never adopts a file that is there already: it makes a fresh one. */
        assert_int_equal(f->b->ops->create(f->b, &r), 0);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(f->b->ops->restore(f->b, &r), 0);

        assert_int_equal(f->b->ops->destroy(f->b, &r), 0);
        assert_int_equal(stat(path, &st), -1);
        assert_int_equal(errno, ENOENT);
        assert_int_equal(f->b->ops->destroy(f->b, &r), 0);
        assert_int_equal(f->b->ops->restore(f->b, &r), -ENOENT);

        /* Left half-made by a crash inside create() (still ours, not yet sized): restore refuses
         * it, but taking the region down does not stall on it. */
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(f->b->ops->restore(f->b, &r), -EBADFD);
        assert_int_equal(f->b->ops->scrub(f->b, &r), 0);
        assert_int_equal(f->b->ops->destroy(f->b, &r), 0);
        assert_int_equal(stat(path, &st), -1);
}

static void test_map_refusals(void **state) {
        struct fixture *f = *state;
        struct backend_region r = { .id = 8, .base = 0x40000000, .size = MIB, .pool = &f->pool };
        struct backend_mapping m = { .fd = -1 };

        /* ivshmem has no read-only mode. */
        assert_int_equal(f->b->ops->map(f->b, &r, "test", ACCESS_RO, &m), -EOPNOTSUPP);
        assert_int_equal(f->b->ops->map(f->b, &r, "no-such-domain", ACCESS_RW, &m), -ESRCH);
        /* The test driver cannot hot-plug: the failure is reported, not hidden. */
        assert_int_equal(f->b->ops->map(f->b, &r, "test", ACCESS_RW, &m), -EIO);
        assert_int_equal(m.fd, -1);
        /* No domain, no device: nothing to wait for. */
        assert_int_equal(f->b->ops->unmap(f->b, &r, &(struct backend_holder) { .domain = "no-such-domain", .pidfd = -1 }),
                         0);
        assert_int_equal(f->b->ops->unmap(f->b, &r, &(struct backend_holder) { .domain = "bad/name", .pidfd = -1 }),
                         -EINVAL);
}

static int gone_calls;
static char gone_domain[64];

static void on_gone(void *ud, const char *domain) {
        sd_event *e = ud;

        gone_calls++;
        snprintf(gone_domain, sizeof(gone_domain), "%s", domain);
        sd_event_exit(e, 0);
}

/* A domain that stops reaches the user on the loop, and the backend forgets its kept handle. */
static void test_domain_gone_on_loop(void **state) {
        struct fixture *f = *state;
        sd_event *e = NULL;
        virConnectPtr c;
        virDomainPtr d;
        bool kept = true;

        /* The domain's handle is kept between calls... */
        assert_int_equal(libvirt_domain_get(to_lv(f->b), "test", &kept, &d), 0);
        assert_false(kept);
        virDomainFree(d);
        assert_int_equal(libvirt_domain_get(to_lv(f->b), "test", &kept, &d), 0);
        assert_true(kept);
        virDomainFree(d);
        assert_int_equal(libvirt_domain_get(to_lv(f->b), "no-such-domain", &kept, &d), -ESRCH);

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(backend_attach_event(f->b, e), 0);
        assert_int_equal(backend_attach_event(f->b, e), -EBUSY);
        backend_set_callbacks(f->b, &(struct backend_callbacks) { .domain_gone = on_gone, .userdata = e });

        /* test:///default is one state per process: this connection sees the backend's domain. */
        c = virConnectOpen(URI);
        assert_non_null(c);
        d = virDomainLookupByName(c, "test");
        assert_non_null(d);
        assert_int_equal(virDomainDestroy(d), 0);

        /* The loop runs until the callback ends it; a lost event fails on the time limit. */
        assert_int_equal(sd_event_add_time_relative(e, NULL, CLOCK_MONOTONIC, 30 * 1000000, 0, NULL,
                                                    (void *) (intptr_t) -ETIMEDOUT), 0);
        assert_int_equal(sd_event_loop(e), 0);
        assert_int_equal(gone_calls, 1);
        assert_string_equal(gone_domain, "test");

        assert_int_equal(virDomainCreate(d), 0);
        virDomainFree(d);
        /* ... and forgotten with the domain's stop event. */
        assert_int_equal(libvirt_domain_get(to_lv(f->b), "test", &kept, &d), 0);
        assert_false(kept);
        virDomainFree(d);
        virConnectClose(c);
        /* The backend's event source goes with the backend, before the loop. */
        backend_free(f->b);
        f->b = NULL;
        sd_event_unref(e);
}

/*
 * Another domain took the name before the backend heard that the first one went (no loop runs
 * here): the kept handle names the old one (by UUID), and the map looks the name up again
 * rather than take the domain for gone. A doorbell region's map reads the live XML first,
 * which the test driver refuses for a gone domain (the attach it cannot do at all); the map
 * then fails on the region having no doorbell server (-ENOENT), past the domain. Without the
 * second lookup it would say -ESRCH.
 */
static void test_kept_domain_replaced(void **state) {
        struct fixture *f = *state;
        struct backend_libvirt *l = to_lv(f->b);
        struct backend_region r = { .id = 9, .base = 0x40000000, .size = MIB, .pool = &f->pool, .doorbells = 1 };
        struct backend_mapping m = { .fd = -1 };
        virConnectPtr c = virConnectOpen(URI);
        virDomainPtr d, old, fresh;
        bool kept = false;
        char *xml, *uuid, *end;

        assert_non_null(c);
        assert_int_equal(libvirt_domain_get(l, "test", &kept, &d), 0);
        virDomainFree(d);
        old = virDomainLookupByName(c, "test");
        assert_non_null(old);
        xml = virDomainGetXMLDesc(old, VIR_DOMAIN_XML_INACTIVE);
        assert_non_null(xml);
        /* The same definition under a new UUID. */
        uuid = strstr(xml, "<uuid>");
        assert_non_null(uuid);
        end = strstr(uuid, "</uuid>");
        assert_non_null(end);
        memmove(uuid, end + strlen("</uuid>"), strlen(end + strlen("</uuid>")) + 1);
        assert_int_equal(virDomainDestroy(old), 0);
        assert_int_equal(virDomainUndefine(old), 0);
        fresh = virDomainDefineXML(c, xml);
        assert_non_null(fresh);
        assert_int_equal(virDomainCreate(fresh), 0);

        assert_int_equal(libvirt_domain_get(l, "test", &kept, &d), 0);
        assert_true(kept); /* still the old one's */
        virDomainFree(d);
        assert_int_equal(f->b->ops->map(f->b, &r, "test", ACCESS_RW, &m), -ENOENT);
        /* ... and the handle kept now is the new domain's. */
        assert_int_equal(libvirt_domain_get(l, "test", &kept, &d), 0);
        assert_true(kept);
        assert_int_equal(virDomainIsActive(d), 1);
        virDomainFree(d);

        free(xml);
        virDomainFree(fresh);
        virDomainFree(old);
        virConnectClose(c);
}

static int unmap_results, unmap_result, unmap_failed;
static uint64_t unmap_region;

static void on_unmap_done(void *ud, uint64_t id, const char *domain, int result) {
        (void) domain;
        unmap_results++;
        unmap_region = id;
        unmap_result = result;
        unmap_failed += result == -EIO;
        (void) ud;
}

/* Runs the loop until `wanted` removals came back; a lost one fails on the time limit. */
static void run_until_unmapped(sd_event *e, int wanted) {
        while (unmap_results < wanted) {
                assert_true(sd_event_run(e, UINT64_MAX) >= 0);
                assert_int_not_equal(sd_event_get_state(e), SD_EVENT_FINISHED);
        }
}

/*
 * The detach call runs on a thread; the unmap returns in progress at once. The test driver
 * cannot detach: the failure comes back on the loop as the removal's end (-EIO), and the
 * removal is no longer pending (a map is not refused as "still on its way out").
 */
static void test_unmap_detach_fails_on_loop(void **state) {
        struct fixture *f = *state;
        struct backend_region r = { .id = 11, .base = 0x40000000, .size = MIB, .pool = &f->pool };
        struct backend_mapping m = { .fd = -1 };
        sd_event *e = NULL;

        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(backend_attach_event(f->b, e), 0);
        backend_set_callbacks(f->b, &(struct backend_callbacks) { .unmap_done = on_unmap_done, .userdata = e });
        unmap_results = unmap_failed = 0;
        assert_int_equal(f->b->ops->unmap(f->b, &r, &(struct backend_holder) { .domain = "test", .pidfd = -1 }),
                         -EINPROGRESS);
        /* Pending: asked again, it is awaited, not asked twice; a map waits for it. */
        assert_int_equal(f->b->ops->unmap(f->b, &r, &(struct backend_holder) { .domain = "test", .pidfd = -1 }),
                         -EINPROGRESS);
        assert_int_equal(f->b->ops->map(f->b, &r, "test", ACCESS_RW, &m), -EBUSY);

        assert_int_equal(sd_event_add_time_relative(e, NULL, CLOCK_MONOTONIC, 30 * 1000000, 0, NULL,
                                                    (void *) (intptr_t) -ETIMEDOUT), 0);
        run_until_unmapped(e, 1);
        assert_int_equal(unmap_results, 1);
        assert_int_equal(unmap_region, 11);
        assert_int_equal(unmap_result, -EIO);
        /* Over: the map is tried (and fails on the test driver's missing hot-plug). */
        assert_int_equal(f->b->ops->map(f->b, &r, "test", ACCESS_RW, &m), -EIO);

        /* Many at once (a domain with many regions that went away): more than the threads that
         * make the calls, so most wait in the queue; every one of them comes back. */
        for (uint64_t id = 100; id < 140; id++) {
                struct backend_region many = r;

                many.id = id;
                assert_int_equal(f->b->ops->unmap(f->b, &many, &(struct backend_holder) { .domain = "test", .pidfd = -1 }),
                                 -EINPROGRESS);
        }
        unmap_results = unmap_failed = 0;
        run_until_unmapped(e, 40);
        assert_int_equal(unmap_results, 40);
        assert_int_equal(unmap_failed, 40);

        backend_free(f->b);
        f->b = NULL;
        sd_event_unref(e);
}

/* The test driver's one domain, "test", is running and has no shmem device. */
static void test_survey(void **state) {
        struct fixture *f = *state;
        struct backend_survey s = {};

        assert_int_equal(f->b->ops->survey(f->b, &s), 0);
        assert_true(survey_is_running(&s, "test"));
        assert_false(survey_is_running(&s, "nope"));
        assert_int_equal(s.n_mappings, 0);
        survey_done(&s);
}

static int domain_state(virDomainPtr d) {
        int st = -1, reason;
        assert_int_equal(virDomainGetState(d, &st, &reason, 0), 0);
        return st;
}

static int lv_escalate_domain(struct backend *b, const char *domain, enum unplug_escalation action) {
        return b->ops->escalate(b, NULL, &(struct backend_holder) { .domain = domain, .pidfd = -1 }, action);
}

static void test_escalate(void **state) {
        struct fixture *f = *state;
        struct backend_survey s = {};
        virConnectPtr c = virConnectOpen(URI);
        virDomainPtr d;

        assert_non_null(c);
        d = virDomainLookupByName(c, "test");
        assert_non_null(d);

        assert_int_equal(lv_escalate_domain(f->b, "test", ESCALATION_REPORT), 0);
        assert_int_equal(domain_state(d), VIR_DOMAIN_RUNNING);
        assert_int_equal(lv_escalate_domain(f->b, "test", ESCALATION_PAUSE), 0);
        assert_int_equal(domain_state(d), VIR_DOMAIN_PAUSED);
        /* Again: already paused is done, not an error. */
        assert_int_equal(lv_escalate_domain(f->b, "test", ESCALATION_PAUSE), 0);
        /* A paused domain is still active: its devices still hold memory. */
        assert_int_equal(f->b->ops->survey(f->b, &s), 0);
        assert_true(survey_is_running(&s, "test"));
        survey_done(&s);

        assert_int_equal(lv_escalate_domain(f->b, "test", ESCALATION_DESTROY), 0);
        assert_int_equal(virDomainIsActive(d), 0);
        assert_int_equal(f->b->ops->survey(f->b, &s), 0);
        assert_false(survey_is_running(&s, "test"));
        survey_done(&s);
        /* Destroying what is not running, or does not exist, leaves nothing to do. */
        assert_int_equal(lv_escalate_domain(f->b, "test", ESCALATION_DESTROY), 0);
        assert_int_equal(lv_escalate_domain(f->b, "no-such-domain", ESCALATION_PAUSE), 0);
        assert_int_equal(lv_escalate_domain(f->b, "bad/name", ESCALATION_PAUSE), -EINVAL);

        assert_int_equal(virDomainCreate(d), 0);
        virDomainFree(d);
        virConnectClose(c);
}

static void test_qemu_user(void **state) {
        struct backend *b = NULL;

        (void) state;
        assert_int_equal(backend_libvirt_new(URI, "no-such-user-brokerd", &b), -ESRCH);
        assert_null(b);
        assert_int_equal(backend_libvirt_new(URI, "root", &b), 0);
        assert_true(backend_libvirt_connected(b));
        backend_free(b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_check, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_file_lifecycle, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_map_refusals, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_domain_gone_on_loop, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_kept_domain_replaced, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_unmap_detach_fails_on_loop, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_survey, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_escalate, fixture_setup, fixture_teardown),
                cmocka_unit_test(test_qemu_user),
        };

        if (geteuid() != 0 || !getpwnam("libvirt-qemu")) {
                printf("skipped: needs root and a libvirt-qemu user\n");
                return 77;
        }
        return cmocka_run_group_tests(tests, NULL, NULL);
}
