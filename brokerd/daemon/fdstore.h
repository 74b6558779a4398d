/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * systemd's file descriptor store, for the memory of memfd regions and the pidfds of the
 * processes that hold mappings (both through struct backend_fd_store): an fd sent to the service
 * manager with FDSTORE=1 under a name (FileDescriptorStoreMax= in the unit) comes back at
 * every later start in $LISTEN_FDS/$LISTEN_FDNAMES, until FDSTOREREMOVE=1 removes it.
 * The manager hands every passed fd that is not a socket of its own to fdstore_add_passed()
 * before the backend exists; the backend and the core take their fds back while the core
 * resumes, through fdstore_backend(); fdstore_flush_unclaimed() then closes what nobody took and removes it
 * from the store. Without $NOTIFY_SOCKET there is no store: fdstore_backend() is NULL and
 * every passed fd is closed unclaimed. $FDSTORE (systemd >= 254: FileDescriptorStoreMax=)
 * bounds what is kept; beyond it a region's memory is only as durable as without a store.
 * So do the names: systemd passes them all in one environment string, $LISTEN_FDNAMES, which
 * the kernel caps at 128 KiB (MAX_ARG_STRLEN): past FDSTORE_NAMES_MAX bytes of names the store
 * refuses more (-EXFULL, logged), since a store whose names do not fit would make the next
 * start's exec fail (E2BIG) and lose every fd in it.
 */
#include <stdbool.h>

#include "backend/backend.h"
#include "util/macro.h"

/* The bytes of kept names (each with its ':' separator) the store holds at most: 128 KiB less
 * 4 KiB for "LISTEN_FDNAMES=" and the unit's socket names. */
#define FDSTORE_NAMES_MAX (128 * 1024 - 4096)

struct fdstore;

int fdstore_new(struct fdstore **ret);
/* Closes the passed fds nobody took, but leaves the store as it is (a failed start loses nothing). */
void fdstore_free(struct fdstore *s);
DEFINE_CLEANUP(struct fdstore, fdstore_free);

/* Takes fd (closed on failure too). A name passed twice is refused to every taker: -EBADFD. */
int fdstore_add_passed(struct fdstore *s, const char *name, int fd);
/* The store as backends see it; NULL without a service manager. Valid while s lives. */
const struct backend_fd_store *fdstore_backend(struct fdstore *s);
/* After the core resumed: closes the passed fds nobody took and removes them from the store. */
void fdstore_flush_unclaimed(struct fdstore *s);
/* Names now kept in the store (taken back, or kept since the start). */
size_t fdstore_size(const struct fdstore *s);
