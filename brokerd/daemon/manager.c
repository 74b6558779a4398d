/* SPDX-License-Identifier: Apache-2.0 */
#include "daemon/manager.h"

#include <errno.h>
#include <grp.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "core/broker.h"
#include "daemon/fdstore.h"
#include "daemon/log.h"
#include "daemon/methods.h"
#include "daemon/process-watch.h"
#include "util/crashpoint.h"
#include "util/log.h"

/* Held output waits at most this many commits, or connections' inputs handled, for the loop to
 * run dry: a pipelining client, or one flooding reads, cannot hold everyone's replies back. */
#define MANAGER_SYNC_MAX_COMMITS 256
#define MANAGER_SYNC_MAX_INPUTS 64

struct manager {
        struct manager_config cfg;
        sd_event *event;
        sd_event_source *sigterm, *sigint, *sighup, *deadline, *post, *sync;
        struct methods *methods;
        struct broker *broker;
        struct rpc_server *server;
        struct fdstore *fdstore;
        int agent_fd, admin_fd;                /* passed by socket activation, until served; -1: none */
        const char *agent_where, *admin_where; /* the paths, or "the activated socket" */
        struct process_watch watch;
        unsigned inputs_held; /* connections' inputs handled since the first unflushed commit */
        bool running;         /* in sd_event_loop(): a flush left for later will come */
};

static void on_broker_event(void *userdata, const struct broker_event *ev) {
        struct manager *m = userdata;

        log_broker_event(ev);
        methods_on_event(m->methods, ev);
}

/*
 * Group sync: the commits of everything the loop handled since the last flush become durable
 * with one flush of the WAL, and only then is anybody told of them. A flush that fails leaves
 * unknown what reached the disk: like sqlite and PostgreSQL, brokerd stops without a word,
 * and its next start believes only the disk (nothing it held back was acknowledged).
 */
static void sync_or_die(struct manager *m) {
        if (broker_sync(m->broker) >= 0)
                return;
        log_error("cannot make the database durable: stopping; nothing held back was acknowledged");
        _exit(EXIT_FAILURE);
}

/* Whether the loop has something ready (its epoll fd is readable): a flush now could be shared. */
static bool loop_has_ready(struct manager *m) {
        struct pollfd p = { .fd = sd_event_get_fd(m->event), .events = POLLIN };

        return poll(&p, 1, 0) != 0;
}

/*
 * Flushes now and delivers everything held: no idle-priority flush is due after it. Then the
 * take-downs that waited for it (their partners have now heard region.left) scrub and record
 * their reclaims. Those are flushed at once if nothing else is ready; otherwise with what the
 * loop handles next (the idle-priority flush), so that under load a turn costs one flush however
 * many releases it had. Either way they are done before the loop reads another request.
 */
static void publish(struct manager *m) {
        for (;;) {
                sync_or_die(m);
                m->inputs_held = 0;
                (void) sd_event_source_set_enabled(m->sync, SD_EVENT_OFF);
                rpc_server_flush(m->server);
                if (broker_finish_queued(m->broker) == 0)
                        return;
                if (broker_unsynced(m->broker) > 0 && m->running && loop_has_ready(m)) {
                        (void) sd_event_source_set_enabled(m->sync, SD_EVENT_ONESHOT);
                        return;
                }
        }
}

/* At idle priority: after every request and event the loop has ready, so they share a flush. */
static int on_sync(sd_event_source *s, void *userdata) {
        (void) s;
        crashpoint("sync-pending");
        publish(userdata);
        return 0;
}

/* The broker queued a take-down until the next flush: make sure one comes. */
static void request_flush(void *userdata) {
        struct manager *m = userdata;

        (void) sd_event_source_set_enabled(m->sync, SD_EVENT_ONESHOT);
}

/*
 * The requests of n connections ready together were handled. If nothing else is ready in the
 * loop (its epoll fd is not readable), nobody could share the flush: flush now instead of a loop
 * turn later (a single agent's step then costs one poll() instead of two more turns of the
 * loop). Otherwise the idle-priority flush waits for what is ready.
 */
static void input_done(void *userdata, unsigned n) {
        struct manager *m = userdata;

        if (broker_unsynced(m->broker) == 0) {
                m->inputs_held = 0;
                return;
        }
        m->inputs_held += n;
        if (m->inputs_held < MANAGER_SYNC_MAX_INPUTS && loop_has_ready(m))
                return;
        publish(m);
}

static bool output_gate(void *userdata) {
        struct manager *m = userdata;
        uint64_t n = broker_unsynced(m->broker);

        if (n == 0)
                return true;
        (void) sd_event_source_set_enabled(m->sync, SD_EVENT_ONESHOT);
        if (n < MANAGER_SYNC_MAX_COMMITS)
                return false;
        sync_or_die(m);
        return true;
}

static int notify_status(struct manager *m, const char *extra) {
        return sd_notifyf(false, "%sSTATUS=serving %s (agents) and %s (admin)", extra ?: "", m->agent_where,
                          m->admin_where);
}

static int on_stop(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        struct manager *m = userdata;
        (void) s;
        log_info("received %s, stopping", strsignal((int) si->ssi_signo));
        sd_notify(false, "STOPPING=1\nSTATUS=stopping");
        return sd_event_exit(m->event, 0);
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        struct manager *m = userdata;
        struct diag_list diags = DIAG_LIST_INIT;
        struct timespec ts;
        int r;

        (void) s, (void) si;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000);
        r = methods_reload(m->methods, &diags);
        if (r < 0) {
                for (size_t i = 0; i < diags.n; i++)
                        if (diags.items[i].severity == DIAG_ERROR)
                                log_error("%s: %s%s%s", m->cfg.policy_path, diags.items[i].path,
                                          diags.items[i].path[0] ? ": " : "", diags.items[i].message);
                log_error("policy reload failed (%s); the previous policy stays in force", strerror(-r));
        } else
                log_info("policy reloaded from %s", m->cfg.policy_path);
        diag_list_clear(&diags);
        notify_status(m, "READY=1\n");
        return 0;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        struct manager *m = userdata;
        (void) s, (void) usec;
        int r = broker_process_deadlines(m->broker);
        if (r < 0)
                log_error("acting on revoke deadlines: %s", strerror(-r));
        return 0;
}

/* After every loop iteration: the next revoke deadline may have moved. */
static int on_post(sd_event_source *s, void *userdata) {
        struct manager *m = userdata;
        int64_t next = broker_next_deadline(m->broker);
        (void) s;

        if (next == INT64_MAX)
                return sd_event_source_set_enabled(m->deadline, SD_EVENT_OFF);
        if (next < 0)
                next = 0;
        sd_event_source_set_time(m->deadline, (uint64_t) next);
        return sd_event_source_set_enabled(m->deadline, SD_EVENT_ONESHOT);
}

/* The platform description and the policy, with their diagnostics printed; both NULL on failure. */
static int load_files(struct manager *m, struct platform **ret_platform, struct policy **ret_policy) {
        struct diag_list diags = DIAG_LIST_INIT;
        int r;

        r = platform_load_file(m->cfg.platform_path, ret_platform, &diags);
        diag_list_print(&diags, m->cfg.platform_path, stderr);
        diag_list_clear(&diags);
        if (r < 0) {
                log_error("cannot load the platform description %s", m->cfg.platform_path);
                return r;
        }
        r = policy_load_file(m->cfg.policy_path, ret_policy, &diags);
        diag_list_print(&diags, m->cfg.policy_path, stderr);
        diag_list_clear(&diags);
        if (r < 0) {
                log_error("cannot load the policy %s", m->cfg.policy_path);
                platform_free(TAKE_PTR(*ret_platform));
        }
        return r;
}

/* The backend, already on the loop: its events are wired before the broker maps anything. */
static int new_backend(struct manager *m, struct backend **ret) {
        const char *name = m->cfg.backend ?: BACKEND_DRIVER_DEFAULT;
        _cleanup_(backend_freep) struct backend *b = NULL;
        int r;

        r = backend_driver_new(name, &m->cfg.backend_options, &b);
        if (r < 0)
                return log_error("cannot set up the %s backend: %s", name, strerror(-r)), r;
        r = backend_attach_event(b, m->event);
        if (r < 0)
                return log_error("cannot watch the %s backend's events: %s", name, strerror(-r)), r;
        *ret = TAKE_PTR(b);
        return 0;
}

static int load_broker(struct manager *m) {
        struct broker_config bc = {
                .db_path = m->cfg.db_path, .revoke_timeout_usec = m->cfg.revoke_timeout_usec,
                .on_event = on_broker_event, .event_userdata = m, .escalation = m->cfg.escalation,
                .unplug_grace_usec = m->cfg.unplug_grace_usec, .retention = m->cfg.retention,
                .watch_process = process_watch_add, .unwatch_process = process_watch_remove,
                .watch_userdata = &m->watch, .fd_store = fdstore_backend(m->fdstore),
                .request_flush = request_flush, .flush_userdata = m,
        };
        struct broker_error err = {};
        int r;

        /* The backend takes its memory back from the store while the broker resumes. */
        m->cfg.backend_options.fd_store = fdstore_backend(m->fdstore);
        r = load_files(m, &bc.platform, &bc.policy);
        if (r < 0)
                return r;
        r = new_backend(m, &bc.backend);
        if (r >= 0) {
                /* Takes the platform, policy and backend over (NULLs them) on success. */
                r = broker_new(&bc, &m->broker, &err);
                if (r < 0)
                        log_error("cannot start the broker: %s", err.message);
        }
        if (r >= 0) {
                fdstore_flush_unclaimed(m->fdstore);
                if (fdstore_backend(m->fdstore))
                        log_info("%zu fds in the fd store (regions' memory, holders' processes)", fdstore_size(m->fdstore));
        }
        platform_free(bc.platform);
        policy_free(bc.policy);
        backend_free(bc.backend);
        return r;
}

static int mkdir_parents(const char *path, mode_t mode) {
        _cleanup_(xfreep) char *copy = strdup(path);
        char *slash;

        if (!copy)
                return -ENOMEM;
        for (slash = strchr(copy + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
                *slash = 0;
                if (mkdir(copy, mode) < 0 && errno != EEXIST)
                        return -errno;
                *slash = '/';
        }
        return 0;
}

/*
 * What the service manager passed: the sockets of activation ("agent", "admin") are served
 * later; everything else is what the fd store kept (fdstore.h). Before the backend exists.
 */
static int collect_passed_fds(struct manager *m) {
        char **names = NULL;
        int n, r = 0;

        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                return log_error("socket activation: %s", strerror(-n)), n;
        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;
                const char *name = names ? names[i] : "unknown";
                int *socket_fd = strcmp(name, "agent") == 0 ? &m->agent_fd
                                 : strcmp(name, "admin") == 0 ? &m->admin_fd : NULL;

                if (socket_fd && *socket_fd < 0)
                        *socket_fd = fd;
                else if (socket_fd) {
                        log_warning("ignoring a second passed fd named %s", name);
                        close(fd);
                } else if (r >= 0) {
                        r = fdstore_add_passed(m->fdstore, name, fd);
                        if (r == -EBADFD) {
                                log_warning("fd %s was passed more than once", name);
                                r = 0;
                        }
                } else
                        close(fd);
                free(names ? names[i] : NULL);
        }
        free(names);
        return r;
}

static int setup_sockets(struct manager *m) {
        bool have_agent = false, have_admin = false;
        gid_t group = (gid_t) -1;
        int r = 0;

        for (int k = 0; k < 2 && r >= 0; k++) {
                int *fd = k == 0 ? &m->agent_fd : &m->admin_fd;

                if (*fd < 0)
                        continue;
                r = rpc_server_add_listener_fd(m->server, *fd, k == 1);
                if (r >= 0)
                        *fd = -1;
                have_agent = have_agent || (k == 0 && r >= 0);
                have_admin = have_admin || (k == 1 && r >= 0);
        }
        if (r < 0)
                return r;
        m->agent_where = have_agent ? "the activated agent socket" : m->cfg.agent_socket;
        m->admin_where = have_admin ? "the activated admin socket" : m->cfg.admin_socket;

        if (m->cfg.agent_group) {
                struct group *g = getgrnam(m->cfg.agent_group);
                if (!g) {
                        log_error("no group %s for the agent socket", m->cfg.agent_group);
                        return -ESRCH;
                }
                group = g->gr_gid;
        }
        if (!have_agent) {
                (void) mkdir_parents(m->cfg.agent_socket, 0755);
                r = rpc_server_listen(m->server, m->cfg.agent_socket, 0660, group, false);
                if (r < 0)
                        return log_error("cannot listen on %s: %s", m->cfg.agent_socket, strerror(-r)), r;
        }
        if (!have_admin) {
                (void) mkdir_parents(m->cfg.admin_socket, 0755);
                r = rpc_server_listen(m->server, m->cfg.admin_socket, 0600, (gid_t) -1, true);
                if (r < 0)
                        return log_error("cannot listen on %s: %s", m->cfg.admin_socket, strerror(-r)), r;
        }
        return 0;
}

/*
 * The memfd backend holds an fd per live region and one per holder's process, so the fd limit
 * bounds the live regions: the soft limit goes up to the hard one (the unit's LimitNOFILE=), as
 * systemd's own daemons do. Safe here: sd-event and the RPC server use epoll, never select(),
 * and brokerd starts no programs that would inherit the raised limit.
 */
static void raise_fd_limit(void) {
        struct rlimit rl;
        rlim_t was;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
                log_warning("cannot read the fd limit (RLIMIT_NOFILE): %s", strerror(errno));
                return;
        }
        was = rl.rlim_cur;
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
                        log_warning("cannot raise the fd limit from %llu to %llu: %s", (unsigned long long) was,
                                    (unsigned long long) rl.rlim_max, strerror(errno));
                        rl.rlim_cur = was;
                }
        }
        if (rl.rlim_cur == was)
                log_info("fd limit (RLIMIT_NOFILE): %llu, the hard limit; a live memfd region takes one, "
                         "and a connection that received a region's fd one more", (unsigned long long) was);
        else
                log_info("fd limit (RLIMIT_NOFILE): raised from %llu to the hard limit, %llu; a live memfd "
                         "region takes one, and a connection that received a region's fd one more",
                         (unsigned long long) was, (unsigned long long) rl.rlim_cur);
}

int manager_new(const struct manager_config *cfg, struct manager **ret) {
        _cleanup_(manager_freep) struct manager *m = calloc(1, sizeof(*m));
        sigset_t mask;
        int r;

        if (!m)
                return -ENOMEM;
        m->cfg = *cfg;
        m->agent_fd = m->admin_fd = -1;
        raise_fd_limit();

        r = sd_event_default(&m->event);
        if (r < 0)
                return r;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        if ((r = sd_event_add_signal(m->event, &m->sigterm, SIGTERM, on_stop, m)) < 0 ||
            (r = sd_event_add_signal(m->event, &m->sigint, SIGINT, on_stop, m)) < 0 ||
            (r = sd_event_add_signal(m->event, &m->sighup, SIGHUP, on_sighup, m)) < 0)
                return r;
        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                return r;

        r = fdstore_new(&m->fdstore);
        if (r >= 0)
                r = collect_passed_fds(m);
        if (r < 0)
                return r;
        r = methods_new(cfg->policy_path, &m->methods);
        if (r < 0)
                return r;
        (void) mkdir_parents(cfg->db_path, 0700);
        m->watch.event = m->event;
        r = load_broker(m);
        if (r < 0)
                return r;
        m->watch.broker = m->broker;
        methods_set_broker(m->methods, m->broker);

        r = rpc_server_new(m->event, &cfg->limits, methods_handle, methods_disconnect, m->methods, &m->server);
        if (r < 0)
                return r;
        methods_set_server(m->methods, m->server);
        rpc_server_set_undelivered(m->server, methods_undelivered);
        rpc_server_set_uid_known(m->server, methods_uid_known);
        r = sd_event_add_defer(m->event, &m->sync, on_sync, m);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(m->sync, "group-sync");
        r = sd_event_source_set_priority(m->sync, SD_EVENT_PRIORITY_IDLE);
        if (r < 0)
                return r;
        sd_event_source_set_enabled(m->sync, SD_EVENT_OFF);
        /* From here on, what the start committed included, nobody hears of a commit before it is durable. */
        r = broker_set_group_sync(m->broker, true);
        if (r < 0)
                return r;
        rpc_server_set_output_gate(m->server, output_gate, m);
        rpc_server_set_input_done(m->server, input_done, m);
        r = setup_sockets(m);
        if (r < 0)
                return r;

        r = sd_event_add_time(m->event, &m->deadline, CLOCK_REALTIME, UINT64_MAX, 1000, on_deadline, m);
        if (r < 0)
                return r;
        sd_event_source_set_enabled(m->deadline, SD_EVENT_OFF);
        r = sd_event_add_post(m->event, &m->post, on_post, m);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(m);
        return 0;
}

int manager_run(struct manager *m) {
        int r;

        /* Work a restart left (a deadline that passed while we were down) is picked up first. */
        on_post(NULL, m);
        log_info("serving %s (agents) and %s (admin)", m->agent_where, m->admin_where);
        notify_status(m, "READY=1\n");
        m->running = true;
        r = sd_event_loop(m->event);
        m->running = false;
        if (r < 0)
                log_error("event loop failed: %s", strerror(-r));
        /* Replies held for the last flush go before the sockets close, as far as they take them. */
        publish(m);
        return r;
}

void manager_free(struct manager *m) {
        if (!m)
                return;
        sd_event_source_unref(m->sync);
        sd_event_source_unref(m->post);
        sd_event_source_unref(m->deadline);
        sd_event_source_unref(m->sigterm);
        sd_event_source_unref(m->sigint);
        sd_event_source_unref(m->sighup);
        /* The server goes first: its disconnect callbacks reach into the methods. */
        rpc_server_free(m->server);
        methods_free(m->methods);
        /* Every transition was committed when it happened: closing leaves the DB consistent. */
        broker_free(m->broker);
        fdstore_free(m->fdstore);
        if (m->agent_fd >= 0)
                close(m->agent_fd);
        if (m->admin_fd >= 0)
                close(m->admin_fd);
        sd_event_unref(m->event);
        free(m);
}
