/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * What the benchmark clients (control-plane, load, mapping, data-plane) share: the clock, option
 * numbers, whole writes to a socket, broker.info's labels, failed-call reports and the JSON they print. Every message starts with
 * bench_program, which each main() sets before anything else. Functions return 0 or -errno and
 * leave their output parameters untouched on failure.
 */
#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

#include "brokerd-client.h"

extern const char *bench_program;

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t bench_now_nsec(void);

/* send() of all len bytes (MSG_NOSIGNAL), resumed after EINTR and short writes. */
int bench_send_all(int fd, const void *data, size_t len);

/* An option's number in min..max; anything else is reported (as option what) and -EINVAL. */
int bench_parse_u64(const char *s, const char *what, uint64_t min, uint64_t max, uint64_t *ret);

/* The same for an unsigned option (max must fit). */
int bench_parse_unsigned(const char *s, const char *what, unsigned min, unsigned max, unsigned *ret);

/* Reports a failed call what (its errno and the daemon's error, if any); returns r. */
int bench_fail_rpc(const char *what, int r, const struct bdc_error *err);

/*
 * method (params as bdc_call() takes them, NULL for none) on c, with no descriptors wanted; a
 * failure is reported. The result goes to *ret_result (the caller puts it) if that is not NULL.
 */
int bench_call(struct bdc *c, const char *method, struct json_object *params, struct json_object **ret_result);

/* o's member key if it is a string, else NULL (o may be NULL). */
const char *bench_json_string(struct json_object *o, const char *key);

/* Adds v (owned, may be NULL after a failed allocation) to o as key: -ENOMEM if it cannot. */
int bench_json_add(struct json_object *o, const char *key, struct json_object *v);

/*
 * bench_json_add() unless *r already holds an error (then v is put), the error landing in *r:
 * an object is built in a straight line and *r checked once at the end.
 */
void bench_json_put(struct json_object *o, const char *key, struct json_object *v, int *r);

/* Prints o (owned) pretty and spaced, on a line of its own, unless r (returned) is an error. */
int bench_json_emit(struct json_object *o, int r);

/*
 * broker.info on c: the daemon's version and backend ("?" where it names none), to label the
 * figures; the whole result too if ret_result is not NULL (the caller puts it).
 */
int bench_daemon_info(struct bdc *c, char *version, size_t n_version, char *backend, size_t n_backend,
                      struct json_object **ret_result);
