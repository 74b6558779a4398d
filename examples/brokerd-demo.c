/* SPDX-License-Identifier: Apache-2.0 */
/*
 * brokerd-demo: one real share, end to end, told in words.
 *
 * It drives the brokerd core in-process (the JSON-RPC daemon comes with its own issue):
 * the example platform and policy, a sqlite database in a temporary directory, and the
 * host-process backend, so the shared memory is real memory seen by two processes.
 * The "peer" is a separate process (forked) that only gets the fd the broker hands out.
 *
 *   brokerd-demo [--platform FILE] [--policy FILE] [--keep DIR]
 */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend-memfd.h"
#include "core/broker.h"
#include "util/num.h"

#ifndef EXAMPLES_DIR
#define EXAMPLES_DIR "docs/examples"
#endif

static const struct broker_caller NET_AGENT = { .uid = 0 }; /* the policy's agent for hw0, vm1, vm2 */
static const struct broker_caller ADMIN = { .uid = 0, .admin = true };

static unsigned step;

static void say(const char *fmt, ...) _printf_(1, 2);
static void say(const char *fmt, ...) {
        va_list ap;
        printf("\n[%u] ", ++step);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
}

static void on_event(void *userdata, const struct broker_event *ev) {
        (void) userdata;
        if (ev->type == BROKER_EVENT_ROUTE_CHANGED)
                return; /* shown through route lookups instead */
        printf("      event %-10s region %" PRIu64 "%s%s%s%s\n", broker_event_type_to_string(ev->type) ?: "?", ev->region,
               ev->domain ? " peer " : "", ev->domain ?: "", ev->reason ? ": " : "", ev->reason ?: "");
}

static int print_region(void *userdata, const struct broker_region_info *r) {
        char sz[NUM_FMT_MAX];
        (void) userdata;
        printf("      %-4" PRIu64 " %-9s owner %-4s %-5s pool %-6s base 0x%-10" PRIx64 " %-6s", r->id,
               region_state_to_string(r->state), r->owner, r->device, r->pool, r->base, num_format_size(r->size, sz));
        for (size_t i = 0; i < r->n_peers; i++)
                printf(" %s(%s,%s)", r->peers[i].domain, access_to_string(r->peers[i].access),
                       peer_state_to_string(r->peers[i].state));
        printf("\n");
        return 0;
}

static int print_audit(void *userdata, const struct store_audit *a) {
        (void) userdata;
        printf("      #%-3" PRId64 " %-10s %-13s region %-3" PRIu64 " %-4s %s%s%s  %s\n", a->seq, a->actor, a->action,
               a->region, a->domain ?: "", a->from_state ?: "", a->to_state ? "->" : "", a->to_state ?: "",
               a->reason ?: "");
        return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st, (void) flag, (void) ftw;
        return remove(path);
}

/* The peer: a separate process that maps the fd it was given and reads what the owner wrote. */
static int run_peer(int fd, uint64_t size, bool writable, const char *reply) {
        pid_t pid;
        int status;

        fflush(stdout); /* or the child would print the parent's pending output again */
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                char *p = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
                if (p == MAP_FAILED)
                        _exit(2);
                printf("      peer process %d reads: \"%s\"\n", (int) getpid(), p);
                fflush(stdout);
                void *w = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (w == MAP_FAILED) {
                        printf("      peer process %d tries to map it writable: refused by the kernel (%s)\n",
                               (int) getpid(), strerror(errno));
                        fflush(stdout);
                        _exit(writable ? 3 : 0);
                }
                if (!writable)
                        _exit(4);
                snprintf((char *) w + 4096, 64, "%s", reply);
                printf("      peer process %d writes its reply at offset 4096\n", (int) getpid());
                fflush(stdout);
                _exit(0);
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return -EIO;
        return 0;
}

static void print_route(struct broker *b, const char *device, const char *peer) {
        struct broker_route_info route = {};

        broker_route_lookup(b, &NET_AGENT, device, peer, &route, NULL);
        if (!route.found)
                printf("      route lookup (%s, %s): none\n", device, peer);
        else if (route.kind == ROUTE_REGION)
                printf("      route lookup (%s, %s): use region %" PRIu64 " at 0x%" PRIx64 "\n", device, peer,
                       route.region, route.base);
        else
                printf("      route lookup (%s, %s): bounce-buffer (%s)\n", device, peer, route.reason);
}

static int fail(const char *what, const struct broker_error *err) {
        fprintf(stderr, "brokerd-demo: %s failed: %s: %s\n", what, broker_code_name(err->code), err->message);
        return EXIT_FAILURE;
}

int main(int argc, char **argv) {
        const char *platform_path = EXAMPLES_DIR "/platform.json", *policy_path = EXAMPLES_DIR "/policy.json";
        _cleanup_(broker_freep) struct broker *b = NULL;
        struct diag_list diags = DIAG_LIST_INIT;
        struct broker_config cfg = { .on_event = on_event };
        struct broker_share_result s = {}, ro = {}, big = {};
        struct broker_attach_result a = {}, aro = {};
        struct broker_error err = {};
        char dir[] = "/tmp/brokerd-demo-XXXXXX", db[64], sz[NUM_FMT_MAX];
        const char *keep = NULL;
        char *owner = NULL, *lingering = NULL;
        int c, q;

        static const struct option options[] = {
                { "platform", required_argument, NULL, 'p' },
                { "policy", required_argument, NULL, 'P' },
                { "keep", no_argument, NULL, 'k' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'p':
                        platform_path = optarg;
                        break;
                case 'P':
                        policy_path = optarg;
                        break;
                case 'k':
                        keep = "yes";
                        break;
                case 'h':
                        printf("usage: %s [--platform FILE] [--policy FILE] [--keep]\n", argv[0]);
                        return EXIT_SUCCESS;
                default:
                        return 2;
                }

        printf("brokerd demo: a HW domain (hw0, which drives the NIC nic0) shares memory with a peer VM (vm1).\n");

        say("Loading the platform description %s", platform_path);
        q = platform_load_file(platform_path, &cfg.platform, &diags);
        diag_list_print(&diags, platform_path, stdout);
        diag_list_clear(&diags);
        if (q < 0)
                return EXIT_FAILURE;
        for (size_t i = 0; i < cfg.platform->n_pools; i++) {
                const struct platform_pool *p = &cfg.platform->pools[i];
                printf("      pool %-7s 0x%010" PRIx64 "..0x%010" PRIx64 " NUMA node %u, granule %s, %s\n", p->name,
                       p->base, p->end, p->numa_node, num_format_size(p->granule, sz), backing_kind_to_string(p->backing));
        }
        for (size_t i = 0; i < cfg.platform->n_devices; i++) {
                const struct platform_device *d = &cfg.platform->devices[i];
                printf("      device %-6s driven by %s, %u-bit DMA mask, %zu DMA window(s)\n", d->name, d->owner,
                       d->dma_mask_bits, d->n_windows);
        }

        say("Loading the policy %s (default deny: only what it lists is allowed)", policy_path);
        q = policy_load_file(policy_path, &cfg.policy, &diags);
        diag_list_print(&diags, policy_path, stdout);
        diag_list_clear(&diags);
        if (q < 0)
                return EXIT_FAILURE;

        if (!mkdtemp(dir))
                return EXIT_FAILURE;
        snprintf(db, sizeof(db), "%s/brokerd.db", dir);
        say("Starting the broker: database %s, host-process (memfd) backend", db);
        if (backend_memfd_new(&cfg.backend) < 0)
                return EXIT_FAILURE;
        cfg.db_path = db;
        cfg.revoke_timeout_usec = 1000000;
        q = broker_new(&cfg, &b, &err);
        platform_free(cfg.platform);
        policy_free(cfg.policy);
        backend_free(cfg.backend);
        if (q < 0)
                return fail("starting the broker", &err);

        say("hw0 asks to share 4MiB from nic0 with vm1, read-write");
        q = broker_share(b, &NET_AGENT, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = 4 << 20, .label = "rx ring",
                .peers = (struct broker_share_peer[]) { { "vm1", ACCESS_RW } }, .n_peers = 1,
        }, &s, &err);
        if (q < 0)
                return fail("share", &err);
        printf("      granted: region %" PRIu64 " at bus address 0x%" PRIx64 " in pool %s (%s, aligned to %s)\n",
               s.region, s.base, s.pool, num_format_size(s.size, sz), num_format_size(s.alignment, (char[NUM_FMT_MAX]) {}));
        printf("      vm1's one-time token: %s (hw0 passes it to vm1's agent)\n", s.tokens[0].token);

        owner = mmap(NULL, s.size, PROT_READ | PROT_WRITE, MAP_SHARED, s.owner_fd, 0);
        if (owner == MAP_FAILED)
                return EXIT_FAILURE;
        snprintf(owner, 64, "hello from hw0's NIC, packet #1");
        printf("      hw0 writes \"%s\" into the region\n", owner);

        say("vm1's agent redeems the token and gets the memory as an fd");
        q = broker_attach(b, &NET_AGENT, "vm1", s.tokens[0].token, &a, &err);
        if (q < 0)
                return fail("attach", &err);
        if (run_peer(a.fd, a.size, true, "ack from vm1") < 0)
                return EXIT_FAILURE;
        printf("      hw0 reads vm1's reply through the same memory: \"%s\"\n", owner + 4096);

        say("The same token a second time is refused (redeemable once)");
        q = broker_attach(b, &NET_AGENT, "vm1", s.tokens[0].token, &(struct broker_attach_result) {}, &err);
        printf("      %s: %s\n", broker_code_name(err.code), err.message);
        if (q >= 0)
                return EXIT_FAILURE;

        say("hw0 shares a second region with vm2, read-only; vm2 attaches");
        q = broker_share(b, &NET_AGENT, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = 64 << 10,
                .peers = (struct broker_share_peer[]) { { "vm2", ACCESS_RO } }, .n_peers = 1,
        }, &ro, &err);
        if (q < 0)
                return fail("share", &err);
        char *stats = mmap(NULL, ro.size, PROT_READ | PROT_WRITE, MAP_SHARED, ro.owner_fd, 0);
        if (stats == MAP_FAILED)
                return EXIT_FAILURE;
        snprintf(stats, 64, "stats page v1");
        q = broker_attach(b, &NET_AGENT, "vm2", ro.tokens[0].token, &aro, &err);
        if (q < 0)
                return fail("attach", &err);
        if (run_peer(aro.fd, aro.size, false, NULL) < 0)
                return EXIT_FAILURE;
        lingering = mmap(NULL, aro.size, PROT_READ, MAP_SHARED, aro.fd, 0);

        say("hw0 asks for 252MiB more for vm2: it does not fit. That is not an error, the answer is \"bounce\"");
        q = broker_share(b, &NET_AGENT, &(struct broker_share_request) {
                .owner = "hw0", .device = "nic0", .size = UINT64_C(252) << 20,
                .peers = (struct broker_share_peer[]) { { "vm2", ACCESS_RO } }, .n_peers = 1,
        }, &big, &err);
        if (q < 0)
                return fail("share", &err);
        printf("      placement: %s, reason: %s\n", big.bounce ? "bounce" : "region", big.bounce ? big.reason : "-");
        if (!big.bounce)
                return EXIT_FAILURE;
        print_route(b, "nic0", "vm2");

        say("What an admin sees now (brokerctl list)");
        broker_region_foreach(b, &ADMIN, print_region, NULL);

        say("The admin revokes region %" PRIu64 " with a 1s deadline; vm1 is recalled", s.region);
        if (broker_revoke(b, &ADMIN, NULL, s.region, 1000000, false, NULL, &err) < 0)
                return fail("revoke", &err);
        say("vm1 releases it; the broker scrubs and reclaims the range");
        if (broker_release(b, &NET_AGENT, "vm1", s.region, NULL, &err) < 0)
                return fail("release", &err);

        say("hw0 revokes region %" PRIu64 "; vm2 ignores the recall", ro.region);
        if (broker_revoke(b, &NET_AGENT, "hw0", ro.region, 1000000, false, NULL, &err) < 0)
                return fail("revoke", &err);
        printf("      vm2 still maps it and reads \"%s\"; waiting for the deadline...\n", lingering);
        usleep(1100000);
        broker_process_deadlines(b);
        printf("      after the forced revoke vm2's stale mapping reads %s\n",
               lingering[0] == 0 ? "zeros: the old data was scrubbed" : "old data (leak!)");
        if (lingering[0] != 0)
                return EXIT_FAILURE;
        /* Scrubbed is not severed: what the owner writes next would reach a mapping still held. */
        printf("      (this demo hands fds to no process, so brokerd cannot tell whether vm2 still maps\n"
               "      it; the daemon records the process that received each fd and keeps a revoked range\n"
               "      quarantined while that process can reach it, stopping or killing it as\n"
               "      --unplug-escalation says; a revocable pool is truncated instead: SIGBUS)\n");

        say("With its region gone, vm2's agent asks the route again");
        print_route(b, "nic0", "vm2");
        print_route(b, "nic0", "vm1");

        say("The audit trail in the database");
        broker_audit_foreach(b, &ADMIN, 0, 0, 0, false, print_audit, NULL, NULL);

        say("Done. Live regions left: none");
        broker_region_foreach(b, &ADMIN, print_region, NULL);
        close(s.owner_fd);
        close(ro.owner_fd);
        close(a.fd);
        close(aro.fd);
        broker_free(TAKE_PTR(b));
        if (keep)
                printf("\nThe database is kept in %s (sqlite3 %s 'select * from audit')\n", dir, db);
        else
                nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        return EXIT_SUCCESS;
}
