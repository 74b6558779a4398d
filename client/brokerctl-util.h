/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * brokerctl's argument parsing and value formatting, apart from the verbs so they can be
 * unit-tested. Parsers return 0 or -EINVAL (malformed) / -ERANGE (does not fit), leaving
 * *ret untouched on failure. Formatters never fail: they write into the caller's buffer.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct json_object;

#define FORMAT_MAX 64

/* A number with a unit: "500ms", "5s", "2m" (or "2min"), "1h", "1d"; a plain number is seconds. */
int parse_deadline_ms(const char *s, uint64_t *ret);
/*
 * A point in time, in CLOCK_REALTIME microseconds: a duration with a unit ("10m", "1h",
 * "30s", "500ms", "2d") is that long before now_usec; a plain number is an absolute unix
 * time in seconds. -ERANGE for a duration reaching before 1970.
 */
int parse_since_usec(const char *s, uint64_t now_usec, uint64_t *ret);

/* "2MiB" when v is a non-zero multiple of a binary unit, else decimal bytes ("4097"). */
const char *format_bytes(uint64_t v, char buf[static FORMAT_MAX]);
/* "2024-05-01T12:00:00.123Z" (UTC); 0 is "-". */
const char *format_time_usec(uint64_t usec, char buf[static FORMAT_MAX]);
/* "3d 4h 5min 6s", "250ms", "0". */
const char *format_duration_usec(uint64_t usec, char buf[static FORMAT_MAX]);

/* A JSON value as the number it stands for: a non-negative integer or a string
 * bdc_parse_u64() takes. */
int json_to_u64(struct json_object *v, uint64_t *ret);
/*
 * A JSON value as table text (malloc'ed, NULL on ENOMEM): strings as they are, integers in
 * decimal, booleans yes/no, null "-", arrays comma-separated, objects as compact JSON.
 */
char *format_json_value(struct json_object *v);
/*
 * One notification as a line (malloc'ed, no newline): the method, then region= and domain=,
 * deadline= (from deadline_usec), owner=, device=, reason= and any other member, skipping
 * null ones: "region.recall region=3 domain=vm1 deadline=2024-05-01T12:00:05.000Z
 * owner=hw0 device=nic0 reason=admin". Values with blanks, quotes, '=' or control
 * characters are written as JSON strings. Returns 0 or -ENOMEM.
 */
int format_event_line(const char *method, struct json_object *params, char **ret);
