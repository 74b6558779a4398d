/* SPDX-License-Identifier: Apache-2.0 */
/*
 * fuzz-rpc: the JSON-RPC request path end to end. The input is what clients write to the
 * daemon's sockets: real Unix sockets accepted by the real rpc_server (sd-event loop,
 * framing, limits, batches, SCM_RIGHTS), requests dispatched by the real methods to a real
 * broker (the example platform, the policy below, sqlite, the memfd backend), replies read
 * back by the client side and every fd they carry closed.
 *
 * Input: bytes sent on a connection, split by directive lines (a line that is exactly):
 *   "@0".."@9"  what follows goes to connection slot N, opened on first use (slot 0 at start)
 *   "@c"        the current slot's connection closes (its subscriptions go with it)
 *   "@t"        30 seconds pass and the broker acts on its deadlines, as the daemon's timer does
 * Every other byte is sent as it is, a line starting with '@' included.
 * Slots 0..4 are hw0's agent (uid 0), vm1's (uid 1000), vm2/vm3's (uid 1001), an agent the
 * policy does not know (uid 4242), and an admin; 5..9 are second connections of the same.
 * Every connection's SO_PEERCRED is the fuzzer's own uid; the handler substitutes the slot's
 * uid, which is what a connection from that uid would carry. Admins come through the admin
 * listener, as in the daemon.
 *
 * Every input starts from the same state, so that an input means the same thing each time
 * it runs: three regions hw0 shared (1: nic0 to vm1, attached; 2: gpu0 to vm1 and vm2, not
 * attached, tokens FIXTURE_TOKEN_VM1/VM2 below; 3: blk0 to vm1, attached, being revoked)
 * and a bounce route (gpu0, vm3). getrandom() is replaced by a counter, so the n-th token
 * handed out during an input is n as 16 little-endian bytes in hex ("0100..." first):
 * the fuzzer can redeem what it shared. An input that changed the broker (an audit row, or
 * any difference in its regions or routes) gets a fresh broker with the fixture afterwards,
 * and only an input that called one of changing_methods (or let time pass) may have changed
 * it, which is checked. At the end of every input all its connections are closed and reaped
 * and as many fds are open as before it: nothing grows from one input to the next.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "backend/backend-memfd.h"
#include "core/broker.h"
#include "daemon/methods.h"
#include "fuzz.h"
#include "rpc/server.h"
#include "util/log.h"
#include "util/random.h"

#define N_SLOTS 10
#define SEC INT64_C(1000000)
#define MiB (UINT64_C(1) << 20)
#define NOW_START (INT64_C(1700000000) * SEC)
#define TIME_STEP (30 * SEC)
/* Counter values for getrandom(): from 1 during an input; the fixture's come from far above,
 * so no token of an input can collide with one of the fixture. */
#define RANDOM_FIXTURE (UINT64_C(1) << 63)
#define FIXTURE_TOKEN_VM1 "01000000000000800000000000000000"
#define FIXTURE_TOKEN_VM2 "02000000000000800000000000000000"

/* The daemon's limits, but short enough that inputs of a few KiB reach them. */
/* The fuzzer's own look at the broker: it sees everything. */
static const struct broker_caller ADMIN = { .uid = 0, .admin = true };

static const struct rpc_server_limits limits = {
        .max_message = 8192,
        .max_depth = 16,
        .max_batch = 32,
        .max_connections_per_uid = 16,
        .max_pending_bytes = 256 * 1024,
};

static const char policy_text[] =
        "{\"agents\": [{\"user\": \"root\", \"domains\": [\"hw0\"]},"
        "             {\"uid\": 1000, \"domains\": [\"vm1\"]},"
        "             {\"uid\": 1001, \"domains\": [\"vm2\", \"vm3\"]}],"
        " \"shares\": [{\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm1\"], \"access\": \"rw\","
        "              \"max_region\": \"64MiB\"},"
        "             {\"sharer\": \"hw0\", \"device\": \"nic0\", \"peers\": [\"vm2\"], \"access\": \"ro\"},"
        "             {\"sharer\": \"hw0\", \"device\": \"blk0\", \"peers\": [\"vm1\"], \"access\": \"rw\"},"
        "             {\"sharer\": \"hw0\", \"device\": \"gpu0\", \"peers\": [\"vm1\", \"vm2\"], \"access\": \"ro\","
        "              \"multi_peer\": true},"
        "             {\"sharer\": \"hw0\", \"device\": \"gpu0\", \"peers\": [\"vm3\"], \"access\": \"rw\","
        "              \"max_region\": \"8GiB\"}],"
        " \"quotas\": [{\"domain\": \"hw0\", \"max_bytes\": \"2GiB\", \"max_regions\": 12},"
        "             {\"domain\": \"*\", \"max_bytes\": \"256MiB\", \"max_regions\": 16}]}";

static const struct {
        uid_t uid;
        bool admin;
} slot_identity[5] = { { 0, false }, { 1000, false }, { 1001, false }, { 4242, false }, { 0, true } };

/* Methods that may change the broker; every other method must not (checked). */
static const char *const changing_methods[] = {
        "region.share", "region.attach",     "region.release",  "region.revoke",
        "admin.revoke", "admin.domain_gone", "admin.reconcile", "admin.reload",
};

struct slot {
        int fd;              /* our end, -1 when not connected */
        uint64_t connection; /* the server's id for it, learned at its first request; 0 unknown */
};

static struct {
        sd_event *event;
        struct rpc_server *server;
        struct methods *methods;
        struct broker *broker;
        struct fuzz_file policy;
        struct sockaddr_un agent_addr, admin_addr;
        socklen_t addr_len;
        struct slot slots[N_SLOTS];
        size_t current;
        int64_t now;
        bool called_changing; /* a method that may change the broker ran, or time passed */
        uint64_t n_inputs, n_resets;
        /* What an input that changed nothing leaves behind, to check that it did. */
        int64_t audit_seq;
        uint64_t fingerprint;
        int proc_fd; /* /proc/self/fd, kept open to count fds cheaply */
        unsigned n_fds; /* open at the start of this input: as many must be open at its end */
        bool trace;  /* $BROKERD_FUZZ_TRACE: print what the server answers, for writing seeds */
} F = { .proc_fd = -1 };

static uint64_t random_counter;

/* Deterministic: see the top. Linked into the executable, it takes the place of libc's for
 * everything in the process that calls it: the broker, the hash maps, json-c, libsystemd. */
ssize_t getrandom(void *buf, size_t len, unsigned flags) {
        uint8_t *p = buf;

        (void) flags;
        memset(buf, 0, len);
        /* A counter value every 16 bytes: the broker draws its tokens' 16 bytes from a reserve
         * (util/random.c), so token n is counter n whether drawn alone or in a batch. */
        for (size_t chunk = 0; chunk < len; chunk += 16) {
                uint64_t v = ++random_counter;
                for (size_t i = 0; chunk + i < len && i < sizeof(v); i++)
                        p[chunk + i] = (uint8_t) (v >> (8 * i));
        }
        return (ssize_t) len;
}

/* The counter starts again at value: the broker's reserve of earlier draws is dropped. */
static void random_restart(uint64_t value) {
        random_counter = value;
        random_reset();
}

static int64_t fuzz_clock(void *userdata) {
        (void) userdata;
        return F.now;
}

/* The core logs refusals and recoveries; formatting them is exercised, printing is noise. */
static void quiet_sink(int priority, const struct log_fields *fields, const char *message) {
        (void) priority, (void) fields, (void) message;
}

static struct slot *slot_of(uint64_t connection) {
        for (size_t i = 0; i < N_SLOTS; i++)
                if (F.slots[i].fd >= 0 && F.slots[i].connection == connection)
                        return &F.slots[i];
        /* Its first request: the connection being written to is the only one with input. */
        if (F.slots[F.current].connection == 0)
                F.slots[F.current].connection = connection;
        return &F.slots[F.current];
}

static int fuzz_handle(void *userdata, const struct rpc_caller *caller, const char *method,
                       struct json_object *params, struct rpc_reply_fds *fds, struct json_object **ret_result,
                       struct rpc_error *err) {
        struct slot *s = slot_of(caller->connection);
        struct rpc_caller c = *caller;

        (void) userdata;
        if (!c.admin)
                c.uid = slot_identity[(size_t) (s - F.slots) % ELEMENTSOF(slot_identity)].uid;
        for (size_t i = 0; i < ELEMENTSOF(changing_methods); i++)
                if (strcmp(method, changing_methods[i]) == 0)
                        F.called_changing = true;
        return methods_handle(F.methods, &c, method, params, fds, ret_result, err);
}

/* ---- the broker and its fixture ---- */

static void fixture_share(const char *device, uint64_t size, const struct broker_share_peer *peers, size_t n_peers,
                          uint64_t random, uint64_t *ret_region, char tokens[][STORE_TOKEN_LEN + 1]) {
        const struct broker_caller hw0 = { .uid = 0 };
        struct broker_share_request req = { .owner = "hw0", .device = device, .size = size, .peers = peers,
                                            .n_peers = n_peers };
        struct broker_share_result res;
        struct broker_error err = {};

        random_restart(random);
        if (broker_share(F.broker, &hw0, &req, &res, &err) < 0) {
                fprintf(stderr, "fixture share on %s: %s\n", device, err.message);
                fuzz_fail(__FILE__, __LINE__, "fixture share");
        }
        fuzz_assert(!res.bounce);
        if (res.owner_fd >= 0)
                close(res.owner_fd);
        *ret_region = res.region;
        for (size_t i = 0; i < res.n_tokens; i++)
                memcpy(tokens[i], res.tokens[i].token, sizeof(tokens[i]));
}

static void fixture_attach(const char *domain, const char *token) {
        const struct broker_caller admin = { .uid = 0, .admin = true };
        struct broker_attach_result res;
        struct broker_error err = {};

        if (broker_attach(F.broker, &admin, domain, token, &res, &err) < 0) {
                fprintf(stderr, "fixture attach: %s\n", err.message);
                fuzz_fail(__FILE__, __LINE__, "fixture attach");
        }
        if (res.fd >= 0)
                close(res.fd);
        broker_doorbells_close(&res.doorbells);
}

static int audit_last(void *userdata, const struct store_audit *a) {
        *(int64_t *) userdata = a->seq;
        return 0;
}

/* The last audit row after after_seq, or after_seq when there is none. */
static int64_t audit_seq(int64_t after_seq) {
        int64_t seq = after_seq;

        fuzz_assert(broker_audit_foreach(F.broker, &ADMIN, after_seq, 0, 0, false, audit_last, &seq, NULL) >= 0);
        return seq;
}

static int fingerprint_one(void *userdata, const struct broker_region_info *r) {
        uint64_t *h = userdata;

        /* Order-independent: the walk follows the hash map. */
        uint64_t x = r->id * 0x9e3779b97f4a7c15u ^ (uint64_t) r->state << 8 ^ (uint64_t) r->deadline ^ r->owner_mapped;
        for (size_t i = 0; i < r->n_peers; i++)
                x = x * 31 + ((uint64_t) r->peers[i].state << 4 | (uint64_t) r->peers[i].mapped);
        *h += x * 0xff51afd7ed558ccdu;
        return 0;
}

/* The regions, and the routes to every peer the policy knows (no other domain can have one). */
static uint64_t fingerprint(void) {
        static const char *const devices[] = { "nic0", "gpu0", "blk0" };
        static const char *const peers[] = { "vm1", "vm2", "vm3" };
        uint64_t h = 0;

        fuzz_assert(broker_region_foreach(F.broker, &ADMIN, fingerprint_one, &h) >= 0);
        for (size_t i = 0; i < ELEMENTSOF(devices); i++)
                for (size_t j = 0; j < ELEMENTSOF(peers); j++) {
                        struct broker_route_info rt = {};

                        (void) broker_route_lookup(F.broker, &ADMIN, devices[i], peers[j], &rt, NULL);
                        h = h * 1099511628211u + (rt.found ? 1 + (uint64_t) rt.kind * 7 + rt.region * 131 : 0);
                }
        return h;
}

/* Whether the broker differs from the fixture: every change commits an audit row, and the
 * fingerprint catches one that would not. */
static bool broker_changed(void) {
        return audit_seq(F.audit_seq) != F.audit_seq || fingerprint() != F.fingerprint;
}

static void broker_reset(void) {
        const struct broker_caller hw0 = { .uid = 0 };
        const struct broker_share_peer to_vm1 = { "vm1", ACCESS_RW };
        const struct broker_share_peer to_both[] = { { "vm1", ACCESS_RO }, { "vm2", ACCESS_RO } };
        const struct broker_share_peer to_vm3 = { "vm3", ACCESS_RW };
        struct diag_list diags = DIAG_LIST_INIT;
        struct broker_config cfg = {};
        /* No pool on NUMA node 5: a bounce, which records the route (gpu0, vm3). */
        struct broker_share_request bounce = { .owner = "hw0", .device = "gpu0", .size = MiB, .peers = &to_vm3,
                                               .n_peers = 1, .has_numa_node = true, .numa_node = 5 };
        struct broker_share_result res;
        struct broker_error err = {};
        char tokens[BROKER_MAX_PEERS][STORE_TOKEN_LEN + 1];
        uint64_t r1, r2, r3;

        methods_set_broker(F.methods, NULL);
        broker_free(F.broker);
        F.broker = NULL;
        F.now = NOW_START;
        random_restart(RANDOM_FIXTURE - 1000);

        fuzz_assert(backend_memfd_new(&cfg.backend) == 0);
        if (platform_load_string(fuzz_example_platform, &cfg.platform, &diags) < 0 ||
            policy_load_string(policy_text, &cfg.policy, &diags) < 0)
                diag_list_print(&diags, "fixture", stderr);
        diag_list_clear(&diags);
        fuzz_assert(cfg.platform && cfg.policy);
        cfg.db_path = ":memory:";
        cfg.clock = fuzz_clock;
        cfg.on_event = methods_on_event;
        cfg.event_userdata = F.methods;
        if (broker_new(&cfg, &F.broker, &err) < 0) {
                fprintf(stderr, "broker_new: %s\n", err.message);
                fuzz_fail(__FILE__, __LINE__, "broker_new");
        }
        methods_set_broker(F.methods, F.broker);

        fixture_share("nic0", 4 * MiB, &to_vm1, 1, RANDOM_FIXTURE + 0x10, &r1, tokens);
        fixture_attach("vm1", tokens[0]);
        fixture_share("gpu0", 2 * MiB, to_both, 2, RANDOM_FIXTURE, &r2, tokens);
        fuzz_assert(strcmp(tokens[0], FIXTURE_TOKEN_VM1) == 0 && strcmp(tokens[1], FIXTURE_TOKEN_VM2) == 0);
        fixture_share("blk0", MiB, &to_vm1, 1, RANDOM_FIXTURE + 0x20, &r3, tokens);
        fixture_attach("vm1", tokens[0]);
        fuzz_assert(broker_revoke(F.broker, &hw0, "hw0", r3, 10 * SEC, false, NULL, &err) == 0);
        fuzz_assert(broker_share(F.broker, &hw0, &bounce, &res, &err) == 0 && res.bounce);
        fuzz_assert(r1 == 1 && r2 == 2 && r3 == 3);

        F.audit_seq = audit_seq(0);
        F.fingerprint = fingerprint();
}

/* ---- the client side ---- */

static unsigned count_fds(void) {
        char buf[4096];
        unsigned n = 0;
        ssize_t k;

        fuzz_assert(lseek(F.proc_fd, 0, SEEK_SET) == 0);
        while ((k = getdents64(F.proc_fd, buf, sizeof(buf))) > 0)
                for (ssize_t off = 0; off < k;) {
                        const struct dirent64 *d = (const struct dirent64 *) (buf + off);

                        n += d->d_name[0] != '.';
                        off += d->d_reclen;
                }
        fuzz_assert(k == 0);
        return n;
}

static void slot_close(struct slot *s) {
        if (s->fd >= 0)
                close(s->fd);
        s->fd = -1;
        s->connection = 0;
}

/* Reads whatever the server sent to s, closing the fds that came with it. Returns true
 * when something arrived (or the server hung up). */
static bool slot_drain(struct slot *s) {
        bool progress = false;

        while (s->fd >= 0) {
                static char data[65536];
                union {
                        struct cmsghdr align;
                        char buf[CMSG_SPACE(sizeof(int) * RPC_MAX_FDS_PER_LINE * 2)];
                } control;
                struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) };
                struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                                     .msg_controllen = sizeof(control) };
                ssize_t n = recvmsg(s->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN)
                                slot_close(s);
                        break;
                }
                progress = true;
                if (F.trace && n > 0)
                        fprintf(stderr, "<%zu %.*s", (size_t) (s - F.slots), (int) n, data);
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        size_t n_fds;

                        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                                continue;
                        n_fds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        fuzz_assert(n_fds <= RPC_MAX_FDS_PER_LINE);
                        for (size_t i = 0; i < n_fds; i++) {
                                int fd;

                                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                close(fd);
                        }
                }
                if (n == 0)
                        slot_close(s); /* the server closed it */
        }
        return progress;
}

/* Runs the loop and reads every connection until neither side has anything left to do. One
 * thread drives both, so idle is exact: every complete line sent has been answered. */
static void pump(void) {
        for (;;) {
                bool progress = false;
                int r = sd_event_run(F.event, 0);

                fuzz_assert(r >= 0);
                progress = r > 0;
                for (size_t i = 0; i < N_SLOTS; i++)
                        progress |= slot_drain(&F.slots[i]);
                if (!progress)
                        return;
        }
}

static void slot_connect(struct slot *s, bool admin) {
        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        fuzz_assert(s->fd >= 0);
        s->connection = 0;
        fuzz_assert(connect(s->fd, (const struct sockaddr *) (admin ? &F.admin_addr : &F.agent_addr), F.addr_len) == 0);
        pump(); /* accepted */
}

static void send_segment(const uint8_t *p, size_t n) {
        struct slot *s = &F.slots[F.current];
        bool stalled = false;

        if (n == 0)
                return;
        if (s->fd < 0)
                slot_connect(s, slot_identity[F.current % ELEMENTSOF(slot_identity)].admin);
        while (n > 0 && s->fd >= 0) {
                ssize_t k = send(s->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno != EAGAIN) {
                                slot_close(s); /* the server hung up: the rest goes nowhere */
                                break;
                        }
                        /* Full: the server reads on its turn. If it read nothing even so, it
                         * stopped reading (a broken limit), and the rest would never be read. */
                        if (stalled)
                                break;
                        stalled = true;
                        pump();
                        continue;
                }
                stalled = false;
                p += k;
                n -= (size_t) k;
        }
        pump();
}

/* ---- entry points ---- */

static void cleanup(void) {
        if (F.n_inputs > 0)
                fprintf(stderr, "fuzz-rpc: %" PRIu64 " inputs, %" PRIu64 " changed the broker (%.1f%%)\n", F.n_inputs,
                        F.n_resets, 100.0 * (double) F.n_resets / (double) F.n_inputs);
        for (size_t i = 0; i < N_SLOTS; i++)
                slot_close(&F.slots[i]);
        if (F.event)
                pump();
        rpc_server_free(F.server);
        F.server = NULL;
        methods_set_broker(F.methods, NULL);
        broker_free(F.broker);
        F.broker = NULL;
        methods_free(F.methods);
        F.methods = NULL;
        F.event = sd_event_unref(F.event);
        if (F.proc_fd >= 0)
                close(F.proc_fd);
        F.proc_fd = -1;
        if (F.policy.fd >= 0)
                close(F.policy.fd);
        F.policy.fd = -1;
}

static int listener(struct sockaddr_un *addr, const char *what) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        fuzz_assert(fd >= 0);
        /* Abstract addresses: nothing on disk to clean up, however the fuzzer exits. */
        *addr = (struct sockaddr_un) { .sun_family = AF_UNIX };
        snprintf(addr->sun_path + 1, sizeof(addr->sun_path) - 1, "brokerd-fuzz-%d-%s", (int) getpid(), what);
        F.addr_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + 1 + strlen(addr->sun_path + 1));
        fuzz_assert(bind(fd, (const struct sockaddr *) addr, F.addr_len) == 0);
        fuzz_assert(listen(fd, SOMAXCONN) == 0);
        return fd;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        int fd;

        (void) argc, (void) argv;
        for (size_t i = 0; i < N_SLOTS; i++)
                F.slots[i].fd = -1;
        F.trace = getenv("BROKERD_FUZZ_TRACE");
        log_set_sink(quiet_sink);
        log_set_max_level(LOG_DEBUG);

        fuzz_assert(fuzz_file_open(&F.policy, "fuzz-rpc-policy") == 0);
        fuzz_assert(fuzz_file_set(&F.policy, policy_text, strlen(policy_text)) == 0);
        fuzz_assert(sd_event_new(&F.event) >= 0);

        fuzz_assert(methods_new(F.policy.path, &F.methods) == 0);
        fuzz_assert(rpc_server_new(F.event, &limits, fuzz_handle, methods_disconnect, F.methods, &F.server) == 0);
        methods_set_server(F.methods, F.server);
        fd = listener(&F.agent_addr, "agent");
        fuzz_assert(rpc_server_add_listener_fd(F.server, fd, false) == 0);
        fd = listener(&F.admin_addr, "admin");
        fuzz_assert(rpc_server_add_listener_fd(F.server, fd, true) == 0);
        broker_reset();

        F.proc_fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        fuzz_assert(F.proc_fd >= 0);
        atexit(cleanup);
        return 0;
}

static bool is_directive(const uint8_t *line, size_t len) {
        return len == 2 && line[0] == '@' && ((line[1] >= '0' && line[1] <= '9') || line[1] == 'c' || line[1] == 't');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct rpc_server_stats st;
        size_t seg = 0, i = 0;

        /* Counted afresh each time: libFuzzer opens files of its own between inputs. */
        F.n_fds = count_fds();
        random_restart(0);
        F.now = NOW_START;
        F.current = 0;
        F.called_changing = false;
        F.n_inputs++;

        while (i < size) {
                const uint8_t *nl = memchr(data + i, '\n', size - i);
                size_t end = nl ? (size_t) (nl - data) : size, next = nl ? end + 1 : size;

                if (is_directive(data + i, end - i)) {
                        send_segment(data + seg, i - seg);
                        switch (data[i + 1]) {
                        case 'c':
                                slot_close(&F.slots[F.current]);
                                pump();
                                break;
                        case 't':
                                F.now += TIME_STEP;
                                F.called_changing = true;
                                fuzz_assert(broker_process_deadlines(F.broker) >= 0);
                                pump();
                                break;
                        default:
                                F.current = (size_t) (data[i + 1] - '0');
                        }
                        seg = next;
                }
                i = next;
        }
        send_segment(data + seg, size - seg);

        /* Hang up everywhere: the server must close and forget every connection. */
        for (size_t k = 0; k < N_SLOTS; k++)
                slot_close(&F.slots[k]);
        pump();
        rpc_server_get_stats(F.server, &st);
        fuzz_assert(st.connections == 0);

        /* Only what changed the broker costs a new one (a millisecond, mostly sqlite's schema);
         * most inputs are refused and leave it as it was. */
        if (broker_changed()) {
                /* Reading methods must not change the broker: only those listed, and time, may. */
                fuzz_assert(F.called_changing);
                broker_reset();
                F.n_resets++;
        }
        fuzz_assert(count_fds() == F.n_fds);
        return 0;
}
