/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * brokerd's own ivshmem server: one per doorbell region ("group"), serving QEMU's
 * ivshmem-doorbell protocol (docs/specs/ivshmem-spec.rst; docs/ivshmem-server.md) on a Unix
 * socket, on the caller's sd-event loop, without ever blocking it.
 *
 * Contract:
 * - Admission is decided from memory, in the accept handler: only a process registered
 *   beforehand with ivshmem_server_expect() (the QEMU brokerd is about to attach to) is
 *   admitted, checked by SO_PEERCRED and a pidfd (a recycled pid does not pass). Its whole
 *   setup is queued at once: version 0, its id, -1 + the memfd, its own eventfds, every
 *   other peer's eventfds; the other peers get its eventfds.
 * - Everyone else is refused by int64 -1 and the connection is HELD until the client closes it
 *   or the hold timeout passes (closing first wedges QEMU in realize); each refusal is reported.
 * - Ids are 16 bit, issued upwards from config.next_id, never twice in a server's life;
 *   ivshmem_server_next_id() is the high-water mark to persist and give back after a restart.
 * - A peer leaves by ivshmem_server_remove_peer() or by closing its connection: the others get
 *   peer-gone (its id without fd; not with config.quiet_departures) and the server closes its
 *   copies of the peer's eventfds;
 *   the connection of a removed peer is then held like a refused one (QEMU closes it on unplug).
 * - Restarts: every fd is exported by name for the fd store, and a server is restored from them
 *   and the persisted peer table, serving the same connections (QEMU never reconnects).
 * - Every call returns 0 or -errno; output parameters are untouched on failure. Callbacks run
 *   on the loop's thread and may call back into the server, but must not free it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/macro.h"

typedef struct sd_event sd_event;
struct ivshmem_server;

/* QEMU's Doorbell register carries the vector in 16 bits; brokerd allows far fewer. */
#define IVSHMEM_VECTORS_MAX 32u
/* Ids are 16 bit (the Doorbell register's high half): next_id == this means none left. */
#define IVSHMEM_ID_LIMIT 65536u
#define IVSHMEM_HOLD_TIMEOUT_USEC_DEFAULT (30ULL * 1000000ULL)
#define IVSHMEM_MAX_CONNECTIONS_DEFAULT 64u
#define IVSHMEM_MAX_QUEUE_DEFAULT 4096u
#define IVSHMEM_NAME_MAX 64

/* Why a connection was refused (reported, audited; never sent: the client only sees -1). */
enum ivshmem_refusal {
        IVSHMEM_REFUSED_UNEXPECTED,    /* no expectation for this process */
        IVSHMEM_REFUSED_NO_CREDENTIALS, /* SO_PEERCRED or its pidfd could not be had */
        IVSHMEM_REFUSED_IDS_EXHAUSTED,
        IVSHMEM_REFUSED_TOO_MANY_PEERS, /* the setup would not fit the queue limit */
        IVSHMEM_REFUSED_RESOURCES,     /* eventfds or memory */
        _IVSHMEM_REFUSAL_MAX,
};
const char *ivshmem_refusal_to_string(enum ivshmem_refusal r);

/* Why a peer left. */
enum ivshmem_departure {
        IVSHMEM_GONE_REMOVED,  /* ivshmem_server_remove_peer() */
        IVSHMEM_GONE_CLOSED,   /* the client closed its connection */
        IVSHMEM_GONE_OVERFLOW, /* its queue passed max_queue: it stopped reading */
        _IVSHMEM_DEPARTURE_MAX,
};
const char *ivshmem_departure_to_string(enum ivshmem_departure d);

struct ivshmem_server_callbacks {
        /* uid (uid_t)-1 and pid 0 when SO_PEERCRED failed. */
        void (*refused)(void *userdata, pid_t pid, uid_t uid, enum ivshmem_refusal reason);
        void (*joined)(void *userdata, uint16_t id, const char *domain);
        void (*gone)(void *userdata, uint16_t id, const char *domain, enum ivshmem_departure reason);
        void *userdata;
};

struct ivshmem_server_config {
        /* 1..IVSHMEM_NAME_MAX chars of [A-Za-z0-9_.-]: prefixes the fd names of ivshmem_server_export_fds(). */
        const char *name;
        const char *socket_path; /* the caller owns its directory */
        gid_t socket_gid;        /* the socket is root:socket_gid 0660 (chown skipped when not root) */
        int memfd;               /* duplicated; fstat size must be a power of two */
        unsigned vectors;        /* 1..IVSHMEM_VECTORS_MAX, as <msi vectors=…/> */
        uint32_t next_id;        /* 0..IVSHMEM_ID_LIMIT: the persisted high-water mark */
        uint64_t hold_timeout_usec;  /* 0: IVSHMEM_HOLD_TIMEOUT_USEC_DEFAULT */
        unsigned max_connections;    /* held ones included; 0: default */
        unsigned max_queue;          /* messages per connection; 0: default */
        /*
         * Departures are not announced: the others keep the departed peer's eventfds, which reach
         * nobody once the server's and the departed QEMU's copies are closed. For QEMUs whose
         * devices are unplugged later: QEMU 7.2 frees a peer's eventfd array on peer-gone and again
         * when the device is unplugged (docs/guest-doorbells.md, "Unplug under TCG").
         */
        bool quiet_departures;
        struct ivshmem_server_callbacks callbacks;
};

/* -EINVAL for a bad config (size not a power of two, vectors out of range...). */
int ivshmem_server_new(sd_event *e, const struct ivshmem_server_config *c, struct ivshmem_server **ret);
/* Closes everything (connections included) and unlinks the socket file. */
void ivshmem_server_free(struct ivshmem_server *s);
DEFINE_CLEANUP(struct ivshmem_server, ivshmem_server_free);

/*
 * The next connection of this process is admitted as domain. pidfd >= 0: that process (the
 * pidfd is duplicated; pid is ignored); else pid. Each expectation admits one connection.
 * -EEXIST when domain is expected or admitted already.
 */
int ivshmem_server_expect(struct ivshmem_server *s, const char *domain, pid_t pid, int pidfd);
/* Forgets an expectation that was not used (the attach failed); -ENOENT when none. */
int ivshmem_server_unexpect(struct ivshmem_server *s, const char *domain);

/* -ENOENT when id is not an admitted peer. */
int ivshmem_server_remove_peer(struct ivshmem_server *s, uint16_t id, enum ivshmem_departure reason);
/* Rings vector of peer id from the host (writes its eventfd). */
int ivshmem_server_ring(struct ivshmem_server *s, uint16_t id, unsigned vector);
int ivshmem_server_peer_id(struct ivshmem_server *s, const char *domain, uint16_t *ret);
/*
 * Messages for domain's peer are queued, not sent, while paused (its QEMU must not open new fds
 * then: libvirt-stale.c); resuming sends them. -ENOENT when domain is no peer.
 */
int ivshmem_server_pause_domain(struct ivshmem_server *s, const char *domain, bool pause);
/*
 * The fds peer id's client has received on its connection (the memory, eventfds); a restored
 * connection counts from the restore on.
 */
int ivshmem_server_peer_fds_sent(struct ivshmem_server *s, uint16_t id, size_t *ret);
/* Dups of peer id's own eventfds (n must be the server's vectors), the caller's to close. */
int ivshmem_server_peer_eventfds(struct ivshmem_server *s, uint16_t id, int *ret_fds, unsigned n);
/* Messages queued for peer id and not yet taken by the socket. */
int ivshmem_server_peer_queued(struct ivshmem_server *s, uint16_t id, size_t *ret);
uint32_t ivshmem_server_next_id(const struct ivshmem_server *s);
size_t ivshmem_server_n_peers(const struct ivshmem_server *s);

/*
 * Every fd the server holds, with a name for the fd store (backend_fd_store.keep):
 * "<name>-listen", "<name>-mem", "<name>-p<id>-conn", "<name>-p<id>-pid", "<name>-p<id>-v<k>".
 * The peer table to persist alongside is (id, domain) from ivshmem_server_peer_at(), plus
 * ivshmem_server_next_id(). fn's error stops the walk and is returned. Held (refused, removed)
 * connections are not listed: a restart closes them (QEMU has failed or unplugged by then).
 * The memfd is the region's own open file: a store that keeps one fd per open file description
 * (systemd's does) keeps it under the region's name, so restore takes it from config.memfd.
 */
typedef int (*ivshmem_fd_fn)(void *userdata, const char *name, int fd);
int ivshmem_server_export_fds(struct ivshmem_server *s, ivshmem_fd_fn fn, void *userdata);
/* The i-th admitted peer (0..n_peers-1), in id order; -ENOENT past the end. */
int ivshmem_server_peer_at(struct ivshmem_server *s, size_t i, uint16_t *ret_id, const char **ret_domain);

/*
 * For a restart: frees the server and closes its fds, but leaves the socket file, so that a
 * server restored from the fds kept elsewhere (the old listening socket among them) goes on.
 */
void ivshmem_server_abandon(struct ivshmem_server *s);

/*
 * A server rebuilt after a restart from the persisted peer table (ids ascending, all below
 * config.next_id) and the fds exported before, fetched by name through take (-ENOENT: not
 * kept). The connections are served on, with empty queues: messages queued but not sent when
 * the old server died are lost, so the caller exports (and persists) only when no peer's
 * queue holds anything, or accepts that. "<name>-listen" is reused when it comes back, else a
 * new socket is made. A peer whose connection or eventfds did not come back is dropped: the
 * others are sent peer-gone and it is reported through gone. Expectations are not
 * restored (an attach that was under way is redone by the caller).
 */
struct ivshmem_peer_record {
        uint16_t id;
        const char *domain;
};
typedef int (*ivshmem_take_fn)(void *userdata, const char *name, int *ret_fd);
int ivshmem_server_restore(sd_event *e, const struct ivshmem_server_config *c,
                           const struct ivshmem_peer_record *peers, size_t n_peers, ivshmem_take_fn take,
                           void *userdata, struct ivshmem_server **ret);
