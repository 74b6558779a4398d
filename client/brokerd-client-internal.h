/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * libbrokerd-client's private parts, shared by its files: the connection, and the helpers
 * each file gives the others (hidden: the library exports only brokerd-client.h).
 * brokerd-client.c: errors and the connection; -transport.c: the wire (framing, descriptors,
 * one call); -events.c: notifications; -requests.c: the typed verbs and reading their replies;
 * -doorbells.c: the doorbells in attach and region.doorbells replies.
 */
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brokerd-client.h"
#include "util/macro.h"

/* The library is built with hidden visibility; only what the header declares is exported. */
#define _public_ __attribute__((visibility("default")))

/* How much one recvmsg() asks for. */
#define READ_CHUNK (64u * 1024)
/* Nesting the client accepts in a reply; the daemon's own limit is lower. */
#define JSON_MAX_DEPTH 64

struct bdc_queued_event {
        struct bdc_queued_event *next;
        char method[64];
        struct json_object *params;
};

struct bdc {
        int fd;
        int64_t next_id;
        /* Once the connection is unusable (closed, broken framing): the errno calls return. */
        int dead;

        /* Received bytes not yet consumed: [start, end) of buf; scan is where the search for
         * the next newline resumes. */
        char *buf;
        size_t start, end, scan, cap;

        /* Descriptors received since the current request was sent. */
        int fds[BDC_MAX_FDS];
        size_t n_fds;
        bool collecting_fds;

        struct bdc_queued_event *events_head, *events_tail;
        size_t n_events;
};

void json_object_putp(struct json_object **o);
void fds_close(int *fds, size_t n);
/* Add an owned value (NULL after a failed allocation) to o: 0 or -ENOMEM. */
int add_value(struct json_object *o, const char *key, struct json_object *v);
int add_string(struct json_object *o, const char *key, const char *value);
int add_u64(struct json_object *o, const char *key, uint64_t value);

/* Fills err for a failure on the client side and returns -errnum. */
int local_error(struct bdc_error *err, int errnum, const char *fmt, ...) _printf_(3, 4);
/* Fills err from a reply's error object; returns the errno it stands for. */
int error_from_reply(struct json_object *error, struct bdc_error *err);
/* Marks the connection unusable; every later call fails with -ECONNRESET. Returns r. */
int bdc_kill(struct bdc *c, int r);

/* -requests.c: reply accessors; a missing or mistyped member is -EBADMSG. */
int get_u64(struct json_object *o, const char *key, uint64_t *ret);
const char *get_string(struct json_object *o, const char *key);
/*
 * The descriptor o's member key names (an index into the reply's fds), taken out of fds (-1
 * there): an index that did not come, or one already taken, is -EBADMSG.
 */
int take_fd_index(struct json_object *o, const char *key, int *fds, size_t n_fds, int *ret);
/* Fills err for a reply that could not be read (r: -ENOMEM or -EBADMSG); returns r's errno. */
int reply_error(struct bdc_error *err, int r, const char *method);

/* -doorbells.c */
/* A reply's "vectors" (absent: 0, no doorbells); beyond BDC_MAX_DOORBELL_VECTORS is -EBADMSG. */
int parse_vectors(struct json_object *result, unsigned *ret);
/*
 * A reply's "vectors", "generation" and "doorbells" for region, the descriptors taken out of
 * fds. On failure *ret is untouched and what was taken is closed.
 */
int parse_doorbells(struct json_object *result, uint64_t region, int *fds, size_t n_fds, struct bdc_doorbells *ret);

/* -transport.c */
int bdc_read(struct bdc *c);
int process_lines(struct bdc *c, struct json_object **ret_response);
