/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * libbrokerd-client: talk to brokerd over its Unix sockets (docs/protocol.md).
 *
 * One struct bdc is one connection. Requests are strictly one at a time: bdc_call() sends
 * a request line and blocks until its reply arrives. Notifications that arrive meanwhile
 * are queued and handed out by bdc_next_event(). A connection is not thread-safe.
 *
 * Every function returns 0 (or a documented non-negative value) on success and a negative
 * errno on failure; output parameters are left untouched on failure. Functions that take
 * a struct bdc_error fill it on failure:
 *   - a daemon error reply: code is the JSON-RPC error code, name is error.data.name (the
 *     stable symbolic name to match on, "no_such_region") or "" for the standard -32xxx
 *     codes, message is error.message, data is error.data (owned, or NULL);
 *   - a failure on the client side (no reply was received): code is 0 and name is one of
 *     "disconnected", "protocol_error", "io_error", "no_memory", "invalid_argument".
 * A struct bdc_error must start zeroed (BDC_ERROR_INIT); a failure replaces what it held
 * (releasing the old data), and bdc_error_clear() releases it for good. err may be NULL.
 *
 * Descriptors received from the daemon are O_CLOEXEC and owned by the caller.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct json_object;
struct bdc;

#define BDC_AGENT_SOCKET "/run/brokerd/agent.sock"
#define BDC_ADMIN_SOCKET "/run/brokerd/admin.sock"
/* Names the socket bdc_connect(NULL, ...) uses instead of BDC_AGENT_SOCKET. */
#define BDC_SOCKET_ENV "BROKERD_SOCKET"

/* Longest line (message) the client accepts from the daemon. */
#define BDC_MAX_LINE (16u * 1024 * 1024)
/* Most descriptors one reply may carry (the kernel's SCM_MAX_FD). */
#define BDC_MAX_FDS 253
/* Most doorbell vectors a region may have per ordered pair of parties. */
#define BDC_MAX_DOORBELL_VECTORS 4
/* Most notifications queued while waiting for a reply; beyond it the call fails. */
#define BDC_MAX_QUEUED_EVENTS 65536

/* JSON-RPC 2.0 standard error codes; brokerd's own codes are BDC_CODE_BASE + n. */
#define BDC_CODE_PARSE_ERROR -32700
#define BDC_CODE_INVALID_REQUEST -32600
#define BDC_CODE_METHOD_NOT_FOUND -32601
#define BDC_CODE_INVALID_PARAMS -32602
#define BDC_CODE_INTERNAL_ERROR -32603
#define BDC_CODE_BASE 1000

struct bdc_error {
        int code;
        char name[64];
        char message[512];
        struct json_object *data;
};

#define BDC_ERROR_INIT {}

void bdc_error_clear(struct bdc_error *err);
/* The name to show: err->name, else a fixed name for a standard code ("method_not_found"). */
const char *bdc_error_name(const struct bdc_error *err);

/*
 * Connects to path; NULL means $BROKERD_SOCKET, else BDC_AGENT_SOCKET.
 * Returns -ENAMETOOLONG for a path that does not fit a socket address, or connect()'s errno.
 */
int bdc_connect(const char *path, struct bdc **ret);
/* Wraps an already connected stream socket; takes ownership of fd, even on failure. */
int bdc_connect_fd(int fd, struct bdc **ret);
/* Closes the socket, every descriptor received but not handed out, and queued events. */
void bdc_close(struct bdc *c);

/*
 * The socket, for poll(): POLLIN means bdc_next_event() has something to read. A call may
 * already have queued events, so drain bdc_next_event(c, 0, ...) until -ETIMEDOUT before
 * waiting on the descriptor. Do not read from it or change its flags.
 */
int bdc_fd(struct bdc *c);

/*
 * Sends {"jsonrpc":"2.0","id":N,"method":method,"params":params} (params NULL sends {}) and
 * waits for the reply with id N. On success *ret_result (may be NULL) is the result (owned)
 * and, when ret_fds is given, up to *n_fds descriptors that came with the reply are stored
 * in ret_fds and *n_fds is set to how many; descriptors beyond the capacity are closed.
 * A daemon error reply returns the errno for its code (brokerd's codes map as in
 * brokerd/util/error.h, e.g. no_such_region -> -ENOENT). The connection closing returns
 * -ECONNRESET, a reply that breaks the protocol -EBADMSG; after either the connection is
 * dead and later calls return -ECONNRESET.
 */
int bdc_call(struct bdc *c, const char *method, struct json_object *params, struct json_object **ret_result,
             int *ret_fds, size_t *n_fds, struct bdc_error *err);

/* Notifications. */
struct bdc_event {
        char method[64];            /* "region.recall" */
        struct json_object *params; /* owned; never NULL on success */
};

/*
 * The oldest queued notification, else waits up to timeout_ms (< 0: forever, 0: do not
 * wait) for one. Returns 0, -ETIMEDOUT, -EINTR when a signal interrupted the wait,
 * -ECONNRESET when the daemon closed the connection (after every queued event was handed
 * out), or -EBADMSG on a protocol violation.
 */
int bdc_next_event(struct bdc *c, int timeout_ms, struct bdc_event *ret);
void bdc_event_clear(struct bdc_event *ev);

/* events.subscribe; domains NULL or n 0 means every domain the caller acts for. */
int bdc_subscribe(struct bdc *c, const char *const *domains, size_t n, struct bdc_error *err);

enum bdc_access {
        BDC_ACCESS_RO = 1,
        BDC_ACCESS_RW = 2,
};

const char *bdc_access_to_string(enum bdc_access a);
int bdc_access_from_string(const char *s, enum bdc_access *ret);

/* region.share */
struct bdc_peer {
        const char *domain;
        enum bdc_access access;
};

struct bdc_share_request {
        const char *owner;
        const char *device;
        uint64_t size;
        const struct bdc_peer *peers;
        size_t n_peers;
        const char *label;  /* NULL: none */
        uint64_t alignment; /* 0: the device's */
        bool has_numa_node; /* else any node */
        uint32_t numa_node;
        bool place;         /* place mode: the region must sit at base */
        uint64_t base;
        bool has_doorbells; /* else the daemon's default */
        unsigned doorbells; /* vectors per ordered pair of parties, 0..BDC_MAX_DOORBELL_VECTORS */
};

enum bdc_placement {
        BDC_PLACEMENT_REGION,
        BDC_PLACEMENT_BOUNCE,
};

struct bdc_token {
        char *domain;
        char *token;
};

struct bdc_share_result {
        enum bdc_placement placement;
        char *reason; /* bounce: why nothing fit; NULL otherwise */
        uint64_t region, base, size, alignment;
        char *pool;
        struct bdc_token *tokens;
        size_t n_tokens;
        int fd;       /* the owner's mapping, or -1 (bounce, or a backend that passes no fd: libvirt) */
        unsigned vectors; /* doorbell vectors per ordered pair of parties (0: none) */
};

/* A bounce answer is a success (placement BDC_PLACEMENT_BOUNCE), not an error. */
int bdc_share(struct bdc *c, const struct bdc_share_request *req, struct bdc_share_result *ret,
              struct bdc_error *err);
/* Frees the strings and closes fd. */
void bdc_share_result_clear(struct bdc_share_result *r);

/*
 * Doorbells (docs/protocol.md "Doorbells"): one eventfd per ordered pair of parties and vector.
 * Writing an 8-byte 1 to send_fd wakes peer on vector; recv_fd becomes readable when peer rings
 * this party on vector. Only parties that hold the region have them; when the broker says a
 * party left (notification region.left), stop listening to it: bdc_doorbells_drop_peer().
 */
struct bdc_doorbell {
        char *peer;      /* the other party's domain */
        unsigned vector; /* 0 .. vectors-1 */
        int send_fd;
        int recv_fd;
};

struct bdc_doorbells {
        uint64_t region;
        unsigned vectors;
        struct bdc_doorbell *bells; /* n entries, one per (peer, vector) */
        size_t n;
        /* Changes when brokerd made new pairs (a restart without an fd store): refetch then. */
        uint64_t generation;
};

/* region.doorbells: every doorbell domain has in region now (after region.joined, or a restart). */
int bdc_doorbells(struct bdc *c, const char *domain, uint64_t region, struct bdc_doorbells *ret,
                  struct bdc_error *err);
/* The doorbell for (peer, vector), or NULL. */
const struct bdc_doorbell *bdc_doorbells_find(const struct bdc_doorbells *d, const char *peer, unsigned vector);
/* Closes and forgets every doorbell with peer; returns how many were dropped. */
size_t bdc_doorbells_drop_peer(struct bdc_doorbells *d, const char *peer);
/* Closes every fd and frees the entries; d may then be reused. */
void bdc_doorbells_clear(struct bdc_doorbells *d);

/* region.attach */
struct bdc_attach_result {
        uint64_t region, base, size;
        enum bdc_access access;
        int fd; /* the peer's mapping, or -1 for a backend that passes no fd (libvirt) */
        /* The peer's doorbells with every party that holds the region now (owner first). */
        struct bdc_doorbells doorbells;
};

int bdc_attach(struct bdc *c, const char *domain, const char *token, struct bdc_attach_result *ret,
               struct bdc_error *err);
void bdc_attach_result_clear(struct bdc_attach_result *r);

/* mmap(MAP_SHARED) of size bytes of fd, PROT_READ plus PROT_WRITE when writable. */
int bdc_map(int fd, uint64_t size, bool writable, void **ret_addr);

/* region.release */
int bdc_release(struct bdc *c, const char *domain, uint64_t region, struct bdc_error *err);
/*
 * region.revoke as owner, or admin.revoke when owner is NULL (admin socket only).
 * deadline_ms < 0 leaves the deadline to the daemon.
 */
int bdc_revoke(struct bdc *c, const char *owner, uint64_t region, int64_t deadline_ms, bool force,
               struct bdc_error *err);

/* region.list in pages (docs/protocol.md "Paging"). */
struct bdc_list_query {
        const char *domain, *state, *device, *pool; /* filters; NULL: any */
        unsigned limit;                             /* most regions a page; 0: the daemon's default (256) */
};

/*
 * One page: the matching regions with an id above after (0: from the first), by increasing id.
 * *ret_regions is the page's array of region objects (owned); *ret_next is the after of the next
 * page, or 0 when this page is the last (ids start at 1). Paging from 0 until *ret_next is 0 lists
 * every region once, holding one page at a time. q may be NULL (no filter, the default limit).
 */
int bdc_list_page(struct bdc *c, const struct bdc_list_query *q, uint64_t after, struct json_object **ret_regions,
                  uint64_t *ret_next, struct bdc_error *err);

/*
 * A 64-bit quantity as the protocol spells it: decimal, "0x" hex, or a number with a binary
 * suffix ("4KiB", "2MiB", "1GiB", "1TiB", "1PiB", "1EiB"). -EINVAL or -ERANGE otherwise.
 */
int bdc_parse_u64(const char *s, uint64_t *ret);

#ifdef __cplusplus
}
#endif
