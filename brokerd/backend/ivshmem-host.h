/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * A thread with an sd-event loop of its own, for the ivshmem servers of the libvirt backend.
 *
 * QEMU reads a doorbell device's setup from its server synchronously, inside the device_add that
 * libvirt's attach call is waiting for; brokerd's loop thread makes that call, so a server on the
 * loop thread could not answer and the attach would hang. The servers live here instead, on a
 * loop that never blocks, and the loop thread reaches them only through these calls:
 * - ivshmem_host_call() runs fn on the host thread, with the host's loop, and returns what fn
 *   returned. Its caller waits meanwhile (the servers never block, so that is short); while it
 *   waits nothing else runs on the host thread, so fn may use whatever the caller owns.
 * - ivshmem_host_post() (host thread only, e.g. from a server's callbacks) queues fn and a copy of
 *   msg for the loop thread given to ivshmem_host_new(), which runs them in order.
 * Every call returns 0 or -errno.
 */
#include <stddef.h>

#include "util/macro.h"

typedef struct sd_event sd_event;
struct ivshmem_host;

/* Reports queued for the loop thread and not yet run; more are dropped (logged). */
#define IVSHMEM_HOST_MAX_POSTS 65536u
#define IVSHMEM_HOST_MAX_MSG 512u

int ivshmem_host_new(sd_event *caller_loop, struct ivshmem_host **ret);
/* Stops and joins the thread; posts not yet run are dropped. Free the servers first (by a call). */
void ivshmem_host_free(struct ivshmem_host *h);
DEFINE_CLEANUP(struct ivshmem_host, ivshmem_host_free);

typedef int (*ivshmem_host_fn)(sd_event *e, void *userdata);
int ivshmem_host_call(struct ivshmem_host *h, ivshmem_host_fn fn, void *userdata);

typedef void (*ivshmem_host_report_fn)(void *userdata, const void *msg);
/* -E2BIG for size > IVSHMEM_HOST_MAX_MSG; -ENOBUFS past IVSHMEM_HOST_MAX_POSTS. */
int ivshmem_host_post(struct ivshmem_host *h, ivshmem_host_report_fn fn, void *userdata, const void *msg,
                      size_t size);
