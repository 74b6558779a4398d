/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * Inside the ivshmem server: connections and their output queues (ivshmem-wire.c), the peer
 * table and admission (ivshmem-server.c).
 */
#include <systemd/sd-event.h>

#include "backend/ivshmem-server.h"
#include "util/names.h"

/* One protocol message: a little-endian int64 and at most one fd (a dup the queue owns). */
struct ivshmem_msg {
        int64_t value;
        int fd;
};

struct ivshmem_conn {
        struct ivshmem_server *server;
        int fd;
        sd_event_source *io;
        sd_event_source *hold; /* held connections only: closes it when the hold times out */
        struct ivshmem_peer *peer; /* NULL: held (refused, or its peer was removed) */
        struct ivshmem_msg *queue; /* ring buffer */
        size_t head, n_queue, n_allocated;
        size_t fds_sent; /* fds the client received on this connection */
        bool paused;     /* queue, do not send (ivshmem_server_pause_domain()) */
};

struct ivshmem_peer {
        uint16_t id;
        char domain[NAME_MAX_LEN + 1];
        int pidfd;
        int *eventfds; /* vectors of them */
        struct ivshmem_conn *conn;
        bool overflowed; /* its queue passed max_queue: it leaves the group */
};

struct ivshmem_expect {
        char domain[NAME_MAX_LEN + 1];
        pid_t pid;
        int pidfd; /* -1: match by pid alone */
};

struct ivshmem_server {
        sd_event *event;
        char name[IVSHMEM_NAME_MAX + 1];
        char *socket_path;
        int listen_fd, memfd;
        sd_event_source *listen_io;
        unsigned vectors, max_connections, max_queue;
        uint64_t hold_timeout_usec;
        uint32_t next_id;
        bool quiet_departures;
        struct ivshmem_server_callbacks cb;
        struct ivshmem_conn **conns; /* every open connection, admitted and held */
        size_t n_conns;
        struct ivshmem_peer **peers; /* admitted, in id order */
        size_t n_peers;
        struct ivshmem_expect *expects;
        size_t n_expects;
};

/* ivshmem-server.c: a server without its socket yet; then its socket (listen_fd < 0: made anew). */
int ivshmem_server_alloc(sd_event *e, const struct ivshmem_server_config *c, struct ivshmem_server **ret);
int ivshmem_server_listen(struct ivshmem_server *s, int listen_fd, gid_t gid);

/* ivshmem-wire.c */
int ivshmem_conn_new(struct ivshmem_server *s, int fd, struct ivshmem_conn **ret);
/* Unregisters, closes and frees (its queue's fds too); detaches nothing else. */
void ivshmem_conn_free(struct ivshmem_conn *c);
/* Queues (value, dup of fd or none for fd < 0) and tries to send at once. -ENOBUFS past max_queue. */
int ivshmem_conn_send(struct ivshmem_conn *c, int64_t value, int fd);
/* Drops every queued message (closing their fds). */
void ivshmem_conn_clear(struct ivshmem_conn *c);
/* Sends what was queued while the connection was paused. */
int ivshmem_conn_resume(struct ivshmem_conn *c);
/* Keeps the connection open, as a non-peer, until the client closes it or the hold times out. */
int ivshmem_conn_hold(struct ivshmem_conn *c);

/* ivshmem-peers.c */
/* A peer of domain, outside the table; with its eventfds made, or all -EBADF to be filled in. */
int ivshmem_peer_new(struct ivshmem_server *s, const char *domain, bool make_eventfds, struct ivshmem_peer **ret);
struct ivshmem_peer *ivshmem_peer_find(struct ivshmem_server *s, uint16_t id);
struct ivshmem_peer *ivshmem_peer_find_domain(struct ivshmem_server *s, const char *domain);
void ivshmem_peer_free(struct ivshmem_server *s, struct ivshmem_peer *p);
/* Takes p out of the table: peer-gone to the others, its eventfds closed, its connection held. */
void ivshmem_peer_depart(struct ivshmem_server *s, struct ivshmem_peer *p, enum ivshmem_departure why);
void ivshmem_expect_drop(struct ivshmem_server *s, size_t i);
int ivshmem_server_on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata);
/* The connection c closed (EOF, error) or overflowed; frees c. */
void ivshmem_server_conn_lost(struct ivshmem_server *s, struct ivshmem_conn *c, enum ivshmem_departure why);
