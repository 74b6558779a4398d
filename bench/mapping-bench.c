/* SPDX-License-Identifier: Apache-2.0 */
/*
 * mapping-bench: what mapping a region into a running libvirt/QEMU guest costs through
 * brokerd, next to the same hot-plug made directly with libvirt, in one run against the same
 * two running domains: A (the owner, the HW domain) and B (the peer).
 *
 * Each iteration has two halves, and which one goes first alternates, so that neither always
 * meets guests that have just been busy:
 *
 *   raw      lookup   virDomainLookupByName(B) + virDomainGetXMLDesc(B) and a search for the
 *                     alias: what brokerd's libvirt backend did before every attach until it
 *                     kept domain handles and read the XML only when an attach fails. Timed on
 *                     its own, not part of attach.
 *            attach   virDomainAttachDeviceFlags(B, xml, VIR_DOMAIN_AFFECT_LIVE) with the XML
 *                     the backend builds, on a backing file created beforehand as the backend
 *                     creates it (/dev/shm/NAME, 0600, owned by libvirt-qemu, truncated to size).
 *            detach   virDomainDetachDeviceAlias(B, alias) until libvirt reports
 *                     VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED (the call itself is timed as well).
 *   brokerd  noop     a broker.info round trip: the RPC floor.
 *            share    region.share by A: commit, file, hot-plug into A.
 *            attach   region.attach by B: commit, hot-plug into B.
 *            revoke   region.revoke by A (60s deadline), then what B's agent does: wait for
 *                     the recall, region.release (which asks B to unplug). Timed: each RPC, and
 *                     from the revoke until B's and A's DEVICE_REMOVED reach this program's own
 *                     libvirt connection and until the region.reclaimed notification arrives.
 *
 * After every plug, both halves wait --settle-ms (untimed): so that the guest has handled the
 * insertion (ACPI hotplug, PCI enumeration) before it is asked to eject, as a real guest would
 * have (an eject racing an insertion measures something else), and so that each timed call
 * meets idle guests, raw and brokerd alike.
 *
 * Every step checks its result, untimed: the aliases are in (and then gone from) the live
 * definitions, the share gives a region with a token for B, the backing file is gone after the
 * reclaim. So a broken setup cannot look fast. Prints figures; asserts nothing about time.
 */
#include "mapping-bench.h"

static const struct {
        const char *key;   /* JSON */
        const char *label; /* table */
} measures[_M_MAX] = {
        [M_RAW_LOOKUP] = { "raw_lookup", "raw: lookup + live XML of B" },
        [M_RAW_ATTACH] = { "raw_attach", "raw: attach into B" },
        [M_RAW_DETACH_CALL] = { "raw_detach_call", "raw: detach call" },
        [M_RAW_DETACH] = { "raw_detach", "raw: detach -> DEVICE_REMOVED" },
        [M_NOOP] = { "noop_rpc", "brokerd: no-op RPC (broker.info)" },
        [M_SHARE] = { "share", "brokerd: region.share (plugs A)" },
        [M_ATTACH] = { "attach", "brokerd: region.attach (plugs B)" },
        [M_REVOKE] = { "revoke_rpc", "brokerd: region.revoke RPC" },
        [M_RELEASE] = { "release_rpc", "brokerd: region.release RPC" },
        [M_REVOKE_REMOVED_PEER] = { "revoke_to_removed_peer", "brokerd: revoke -> removed from B" },
        [M_REVOKE_REMOVED_OWNER] = { "revoke_to_removed_owner", "brokerd: revoke -> removed from A" },
        [M_REVOKE_RECLAIMED] = { "revoke_to_reclaimed", "brokerd: revoke -> reclaimed" },
};

struct stats {
        double mean_ms, p50_ms, p90_ms, max_ms;
};

/* ---- output ---- */

/* Sorts samples (nanoseconds) in place. */
static void stats_compute(uint64_t *samples, size_t n, struct stats *ret) {
        struct bench_summary s;

        bench_summarize(samples, n, &s);
        *ret = (struct stats) {
                .mean_ms = (double) (s.sum / n / 1e6L),
                .p50_ms = (double) s.p50 / 1e6,
                .p90_ms = (double) s.p90 / 1e6,
                .max_ms = (double) s.max / 1e6,
        };
}

struct run_info {
        unsigned n, warmup;
        char brokerd_version[64], backend[64];
        unsigned long libvirt_version, qemu_version;
};

static void version_string(unsigned long v, char *buf, size_t n) {
        snprintf(buf, n, "%lu.%lu.%lu", v / 1000000, v / 1000 % 1000, v % 1000);
}

static void print_table(const struct bench *b, const struct stats *st, const struct run_info *ri) {
        char lv[32], qemu[32];

        version_string(ri->libvirt_version, lv, sizeof(lv));
        version_string(ri->qemu_version, qemu, sizeof(qemu));
        printf("brokerd %s (%s backend), libvirt %s, QEMU %s; A=%s (owner) B=%s (peer), %" PRIu64
               " bytes;\n%u iterations after %u warm-up, settle %ums, halves alternating%s\n\n",
               ri->brokerd_version, ri->backend, lv, qemu, b->owner, b->peer, b->size, ri->n, ri->warmup,
               b->settle_ms, b->raw_shared ? "; the raw file is in A before B's attach (--raw-shared)" : "");
        printf("%-34s %10s %10s %10s %10s\n", "measurement", "p50 ms", "p90 ms", "max ms", "mean ms");
        for (int m = 0; m < _M_MAX; m++)
                printf("%-34s %10.3f %10.3f %10.3f %10.3f\n", measures[m].label, st[m].p50_ms, st[m].p90_ms,
                       st[m].max_ms, st[m].mean_ms);
        printf("\nbrokerd attach / raw attach (p50): %.2f  (%+.3f ms; a lookup + live XML, no longer made per attach: %.3f ms)\n",
               st[M_ATTACH].p50_ms / st[M_RAW_ATTACH].p50_ms, st[M_ATTACH].p50_ms - st[M_RAW_ATTACH].p50_ms,
               st[M_RAW_LOOKUP].p50_ms);
}

static int print_json(const struct bench *b, const struct stats *st, const struct run_info *ri) {
        struct json_object *o = json_object_new_object(), *res = json_object_new_object();
        char lv[32], qemu[32];
        int r = o && res ? 0 : -ENOMEM;

        version_string(ri->libvirt_version, lv, sizeof(lv));
        version_string(ri->qemu_version, qemu, sizeof(qemu));
        for (int m = 0; r >= 0 && m < _M_MAX; m++) {
                struct json_object *e = json_object_new_object();
                r = bench_json_add(res, measures[m].key, e);
                bench_json_put(e, "p50_ms", json_object_new_double(st[m].p50_ms), &r);
                bench_json_put(e, "p90_ms", json_object_new_double(st[m].p90_ms), &r);
                bench_json_put(e, "max_ms", json_object_new_double(st[m].max_ms), &r);
                bench_json_put(e, "mean_ms", json_object_new_double(st[m].mean_ms), &r);
        }
        bench_json_put(o, "iterations", json_object_new_int64(ri->n), &r);
        bench_json_put(o, "warmup", json_object_new_int64(ri->warmup), &r);
        bench_json_put(o, "settle_ms", json_object_new_int64(b->settle_ms), &r);
        bench_json_put(o, "raw_shared", json_object_new_boolean(b->raw_shared), &r);
        bench_json_put(o, "size", json_object_new_uint64(b->size), &r);
        bench_json_put(o, "owner", json_object_new_string(b->owner), &r);
        bench_json_put(o, "peer", json_object_new_string(b->peer), &r);
        bench_json_put(o, "brokerd_version", json_object_new_string(ri->brokerd_version), &r);
        bench_json_put(o, "backend", json_object_new_string(ri->backend), &r);
        bench_json_put(o, "libvirt_version", json_object_new_string(lv), &r);
        bench_json_put(o, "qemu_version", json_object_new_string(qemu), &r);
        bench_json_put(o, "attach_ratio_p50", json_object_new_double(st[M_ATTACH].p50_ms / st[M_RAW_ATTACH].p50_ms), &r);
        bench_json_put(o, "results", res, &r);
        return bench_json_emit(o, r);
}

/* ---- setup ---- */

/* broker.info's version and backend; anything but the libvirt backend makes the figures moot. */
static int daemon_info(struct bench *b, struct run_info *ri) {
        int r;

        r = bench_daemon_info(b->c_owner, ri->brokerd_version, sizeof(ri->brokerd_version), ri->backend,
                              sizeof(ri->backend), NULL);
        if (r < 0)
                return r;
        if (strcmp(ri->backend, "libvirt") != 0) {
                fprintf(stderr, "mapping-bench: brokerd runs the %s backend, not libvirt (--backend libvirt)\n",
                        ri->backend);
                return -EINVAL;
        }
        return 0;
}
static int lookup_running(struct bench *b, const char *name, virDomainPtr *ret) {
        virDomainPtr d = virDomainLookupByName(b->conn, name);

        if (!d) {
                fprintf(stderr, "mapping-bench: no domain %s: %s\n", name, lv_error());
                return -ESRCH;
        }
        if (virDomainIsActive(d) != 1) {
                fprintf(stderr, "mapping-bench: domain %s is not running\n", name);
                virDomainFree(d);
                return -ESRCH;
        }
        *ret = d;
        return 0;
}

static int libvirt_setup(struct bench *b, struct run_info *ri, pthread_t *thread) {
        struct passwd *pw;
        int r;

        pw = getpwnam(QEMU_USER);
        if (!pw) {
                fprintf(stderr, "mapping-bench: no user %s (the user QEMU runs as)\n", QEMU_USER);
                return -ESRCH;
        }
        b->qemu_uid = pw->pw_uid;
        b->qemu_gid = pw->pw_gid;

        virSetErrorFunc(NULL, quiet_error);
        /* Before the connection opens: events need the loop that is registered at that point. */
        if (virEventRegisterDefaultImpl() < 0) {
                fprintf(stderr, "mapping-bench: virEventRegisterDefaultImpl: %s\n", lv_error());
                return -EIO;
        }
        b->conn = virConnectOpen(b->uri);
        if (!b->conn) {
                fprintf(stderr, "mapping-bench: cannot connect to %s: %s\n", b->uri, lv_error());
                return -ECONNREFUSED;
        }
        if (virGetVersion(&ri->libvirt_version, NULL, NULL) < 0 || virConnectGetVersion(b->conn, &ri->qemu_version) < 0) {
                fprintf(stderr, "mapping-bench: versions: %s\n", lv_error());
                return -EIO;
        }
        watch.owner = b->owner;
        watch.peer = b->peer;
        r = lookup_running(b, b->owner, &b->dom_owner);
        if (r >= 0)
                r = lookup_running(b, b->peer, &b->dom_peer);
        if (r < 0)
                return r;
        b->cb_removed = virConnectDomainEventRegisterAny(b->conn, NULL, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
                                                         VIR_DOMAIN_EVENT_CALLBACK(on_device_removed), NULL, NULL);
        b->cb_failed = virConnectDomainEventRegisterAny(b->conn, NULL, VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED,
                                                        VIR_DOMAIN_EVENT_CALLBACK(on_removal_failed), NULL, NULL);
        if (b->cb_removed < 0 || b->cb_failed < 0) {
                fprintf(stderr, "mapping-bench: cannot register for device events: %s\n", lv_error());
                return -EIO;
        }
        r = -pthread_create(thread, NULL, event_thread, NULL);
        if (r < 0)
                fprintf(stderr, "mapping-bench: pthread_create: %s\n", strerror(-r));
        return r;
}

static void libvirt_teardown(struct bench *b, pthread_t *thread, bool thread_started) {
        if (b->conn) {
                if (b->cb_removed >= 0)
                        virConnectDomainEventDeregisterAny(b->conn, b->cb_removed);
                if (b->cb_failed >= 0)
                        virConnectDomainEventDeregisterAny(b->conn, b->cb_failed);
        }
        if (b->dom_owner)
                virDomainFree(b->dom_owner);
        if (b->dom_peer)
                virDomainFree(b->dom_peer);
        if (b->conn)
                virConnectClose(b->conn);
        if (thread_started) {
                atomic_store(&events_stop, true);
                /* A due timer wakes virEventRunDefaultImpl() so that the thread sees the flag. */
                if (virEventAddTimeout(0, on_wakeup, NULL, NULL) >= 0)
                        pthread_join(*thread, NULL);
                else
                        pthread_detach(*thread);
        }
}

static int brokerd_setup(struct bench *b, struct run_info *ri) {
        struct bdc_error err = BDC_ERROR_INIT;
        int r;

        r = bdc_connect(b->socket_path, &b->c_owner);
        if (r >= 0)
                r = bdc_connect(b->socket_path, &b->c_peer);
        if (r < 0) {
                fprintf(stderr, "mapping-bench: cannot connect to %s: %s\n", b->socket_path, strerror(-r));
                return r;
        }
        r = daemon_info(b, ri);
        if (r < 0)
                return r;
        /* The owner hears region.reclaimed, the peer its region.recall. */
        r = bdc_subscribe(b->c_owner, &b->owner, 1, &err);
        if (r >= 0)
                r = bdc_subscribe(b->c_peer, &b->peer, 1, &err);
        if (r < 0)
                bench_fail_rpc("events.subscribe", r, &err);
        bdc_error_clear(&err);
        return r;
}


static void help(void) {
        printf("Usage: mapping-bench --socket PATH --owner DOMAIN --peer DOMAIN [OPTIONS]\n"
               "\n"
               "Times hot-plugging an ivshmem-plain region into running libvirt domains directly\n"
               "(raw libvirt calls into the peer) and through brokerd (region.share by the owner,\n"
               "region.attach by the peer, revoke -> release -> reclaimed), alternating, in one run.\n"
               "brokerd must run with --backend libvirt, a platform giving DEVICE to the owner in a\n"
               "/dev/shm pool, and a policy that lets the caller act for both domains.\n"
               "\n"
               "  --socket PATH       brokerd's agent socket\n"
               "  --owner DOMAIN      domain A, the sharer (owns DEVICE)\n"
               "  --peer DOMAIN       domain B, the peer; the raw half plugs into it too\n"
               "  --device NAME       A's device in brokerd's platform (default " DEFAULT_DEVICE ")\n"
               "  --uri URI           libvirt connection (default " DEFAULT_URI ")\n"
               "  --size BYTES        region size, a power of two (default 1MiB)\n"
               "  --raw-prefix NAME   the raw half's files are /dev/shm/NAME-<n> (default\n"
               "                      mapping-bench-<pid>)\n"
               "  --iterations N      timed iterations (default %u)\n"
               "  --warmup N          untimed iterations first (default %u)\n"
               "  --settle-ms MS      wait after plugging, before unplugging (default %u)\n"
               "  --raw-shared        the raw half plugs its file into the owner first (untimed),\n"
               "                      as brokerd's share does before the peer's attach\n"
               "  --timeout-ms MS     longest wait for an event or notification (default %u)\n"
               "  --json              print a JSON object instead of the table\n"
               "  -h, --help          this text\n",
               DEFAULT_ITERATIONS, DEFAULT_WARMUP, DEFAULT_SETTLE_MS, DEFAULT_TIMEOUT_MS);
}

int main(int argc, char *argv[]) {
        enum {
                ARG_SOCKET = 0x100, ARG_OWNER, ARG_PEER, ARG_DEVICE, ARG_URI, ARG_SIZE, ARG_RAW_PREFIX,
                ARG_ITERATIONS, ARG_WARMUP, ARG_SETTLE, ARG_TIMEOUT, ARG_JSON, ARG_RAW_SHARED,
        };
        static const struct option options[] = {
                { "socket", required_argument, NULL, ARG_SOCKET },
                { "owner", required_argument, NULL, ARG_OWNER },
                { "peer", required_argument, NULL, ARG_PEER },
                { "device", required_argument, NULL, ARG_DEVICE },
                { "uri", required_argument, NULL, ARG_URI },
                { "size", required_argument, NULL, ARG_SIZE },
                { "raw-prefix", required_argument, NULL, ARG_RAW_PREFIX },
                { "iterations", required_argument, NULL, ARG_ITERATIONS },
                { "warmup", required_argument, NULL, ARG_WARMUP },
                { "settle-ms", required_argument, NULL, ARG_SETTLE },
                { "timeout-ms", required_argument, NULL, ARG_TIMEOUT },
                { "json", no_argument, NULL, ARG_JSON },
                { "raw-shared", no_argument, NULL, ARG_RAW_SHARED },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        struct bench b = {
                .uri = DEFAULT_URI,
                .device = DEFAULT_DEVICE,
                .size = DEFAULT_SIZE,
                .settle_ms = DEFAULT_SETTLE_MS,
                .timeout_ms = DEFAULT_TIMEOUT_MS,
                .cb_removed = -1,
                .cb_failed = -1,
        };
        struct run_info ri = { .n = DEFAULT_ITERATIONS, .warmup = DEFAULT_WARMUP };
        char default_prefix[64];
        uint64_t *samples[_M_MAX] = {};
        struct stats st[_M_MAX];
        pthread_condattr_t ca;
        pthread_t thread;
        bool json = false, thread_started = false, progress = isatty(STDERR_FILENO);
        int c, r;

        bench_program = "mapping-bench";

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                switch (c) {
                case ARG_SOCKET:
                        b.socket_path = optarg;
                        break;
                case ARG_OWNER:
                        b.owner = optarg;
                        break;
                case ARG_PEER:
                        b.peer = optarg;
                        break;
                case ARG_DEVICE:
                        b.device = optarg;
                        break;
                case ARG_URI:
                        b.uri = optarg;
                        break;
                case ARG_SIZE:
                        /* QEMU's ivshmem aborts on anything but a power of two. */
                        if (bench_parse_u64(optarg, "--size", 4096, UINT64_C(1) << 40, &b.size) < 0 ||
                            (b.size & (b.size - 1)) != 0) {
                                fprintf(stderr, "mapping-bench: --size must be a power of two of at least 4KiB\n");
                                return 2;
                        }
                        break;
                case ARG_RAW_PREFIX:
                        b.raw_prefix = optarg;
                        break;
                case ARG_ITERATIONS:
                        if (bench_parse_unsigned(optarg, "--iterations", 1, MAX_ITERATIONS, &ri.n) < 0)
                                return 2;
                        break;
                case ARG_WARMUP:
                        if (bench_parse_unsigned(optarg, "--warmup", 0, MAX_ITERATIONS, &ri.warmup) < 0)
                                return 2;
                        break;
                case ARG_SETTLE:
                        if (bench_parse_unsigned(optarg, "--settle-ms", 0, MAX_SETTLE_MS, &b.settle_ms) < 0)
                                return 2;
                        break;
                case ARG_TIMEOUT:
                        if (bench_parse_unsigned(optarg, "--timeout-ms", 1, 3600000, &b.timeout_ms) < 0)
                                return 2;
                        break;
                case ARG_JSON:
                        json = true;
                        break;
                case ARG_RAW_SHARED:
                        b.raw_shared = true;
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        return 2;
                }
        }
        if (optind < argc || !b.socket_path || !b.owner || !b.peer) {
                fprintf(stderr, "mapping-bench: --socket, --owner and --peer are required, and nothing else (--help)\n");
                return 2;
        }
        if (strlen(b.owner) > DOMAIN_NAME_MAX || strlen(b.peer) > DOMAIN_NAME_MAX || strcmp(b.owner, b.peer) == 0) {
                fprintf(stderr, "mapping-bench: --owner and --peer must be two different domain names\n");
                return 2;
        }
        if (!b.raw_prefix) {
                snprintf(default_prefix, sizeof(default_prefix), "mapping-bench-%d", (int) getpid());
                b.raw_prefix = default_prefix;
        }
        if (strchr(b.raw_prefix, '/') || strchr(b.raw_prefix, '\'') || strlen(b.raw_prefix) > 200) {
                fprintf(stderr, "mapping-bench: --raw-prefix must be a short file name\n");
                return 2;
        }

        /* Deadlines are CLOCK_MONOTONIC, like every other time here. */
        if (pthread_condattr_init(&ca) != 0 || pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
            pthread_cond_init(&watch.cond, &ca) != 0) {
                fprintf(stderr, "mapping-bench: cannot set up a condition variable\n");
                return 1;
        }
        pthread_condattr_destroy(&ca);

        for (int m = 0; m < _M_MAX; m++) {
                samples[m] = calloc(ri.n, sizeof(uint64_t));
                if (!samples[m]) {
                        fprintf(stderr, "mapping-bench: out of memory\n");
                        r = -ENOMEM;
                        goto out;
                }
        }

        r = libvirt_setup(&b, &ri, &thread);
        if (r < 0)
                goto out;
        thread_started = true;
        r = brokerd_setup(&b, &ri);
        if (r < 0)
                goto out;

        for (unsigned i = 0; i < ri.warmup + ri.n; i++) {
                uint64_t t[_M_MAX] = {}, *tp = i >= ri.warmup ? t : NULL;

                if (progress)
                        fprintf(stderr, "\rmapping-bench: %s %u/%u ", i < ri.warmup ? "warm-up" : "iteration",
                                i < ri.warmup ? i + 1 : i - ri.warmup + 1, i < ri.warmup ? ri.warmup : ri.n);
                /* Alternating which half goes first, so that neither always follows the other. */
                if (i % 2 == 0) {
                        r = raw_once(&b, tp);
                        if (r >= 0)
                                r = brokerd_once(&b, tp);
                } else {
                        r = brokerd_once(&b, tp);
                        if (r >= 0)
                                r = raw_once(&b, tp);
                }
                if (r < 0)
                        goto out;
                if (tp)
                        for (int m = 0; m < _M_MAX; m++)
                                samples[m][i - ri.warmup] = t[m];
        }
        if (progress)
                fprintf(stderr, "\n");

        for (int m = 0; m < _M_MAX; m++)
                stats_compute(samples[m], ri.n, &st[m]);
        if (json)
                r = print_json(&b, st, &ri);
        else
                print_table(&b, st, &ri);
        if (r >= 0 && fflush(stdout) != 0)
                r = -errno;
        pthread_mutex_lock(&watch.lock);
        if (r >= 0 && watch.stray > 0) {
                fprintf(stderr, "mapping-bench: %u device(s) left the domains without being asked to: something "
                                "else acts on them; these figures are not valid\n", watch.stray);
                r = -EBADMSG;
        }
        pthread_mutex_unlock(&watch.lock);

out:
        if (b.c_owner)
                bdc_close(b.c_owner);
        if (b.c_peer)
                bdc_close(b.c_peer);
        libvirt_teardown(&b, &thread, thread_started);
        for (int m = 0; m < _M_MAX; m++)
                free(samples[m]);
        return r < 0 ? 1 : 0;
}
