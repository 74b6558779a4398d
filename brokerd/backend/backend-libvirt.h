/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The libvirt backend: a region is a file "/dev/shm/brokerd-<pool>-<id>" that QEMU maps as
 * an ivshmem-plain PCI device, hot-plugged into a running libvirt domain (by name) with the
 * alias "ua-brokerd-<id>".
 *
 * libvirt names an ivshmem-plain <shmem name='X'> file /dev/shm/X and has no XML to put it
 * elsewhere, so check() accepts only shm pools whose backing path is /dev/shm, and only
 * power-of-two sizes of at least 4KiB: QEMU's ivshmem aborts (killing the guest) on any
 * other size, and libvirt does not check it.
 *
 * create() makes the file exclusively, mode 0600, and hands it to the user QEMU runs as
 * (libvirt-qemu by default, "user" in qemu.conf): if the file were missing at attach time QEMU would create it itself,
 * world-readable. A file already there is never trusted (anyone running as the QEMU user
 * could have planted it and kept it open): it is unlinked and made afresh. restore() reopens
 * the file and checks owner, mode and size. scrub() punches the range out; destroy() unlinks.
 *
 * map() hot-plugs the device (it returns no fd: ret->fd is -1) with one libvirt call: the
 * domain's handle is kept from earlier calls, and a plain region's live XML is read only when
 * the attach fails (a device already there, after a crash, is the same mapping). ivshmem has
 * no read-only mode, so map() refuses ACCESS_RO with -EOPNOTSUPP: policies must give libvirt
 * peers rw. unmap() asks for the device's removal (through the kept handle too) and returns
 * -EINPROGRESS (0 when the domain does not exist); the detach call runs on a thread of its
 * own, so that several removals start together. The removal is complete only when libvirt reports
 * VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED for the alias (the detach call returns before the guest
 * has let go), or when the detach call finds no device or no running domain; a detach call
 * that fails otherwise reports -EIO through backend_unmap_done(). A domain that stops
 * completes its outstanding removals (then backend_domain_gone() reports it); a guest that
 * refuses one (VIR_DOMAIN_EVENT_ID_DEVICE_REMOVAL_FAILED) reports -EBUSY through
 * backend_unmap_done(), leaving the device in place.
 *
 * survey() lists the active (running or paused) domains and brokerd's <shmem> devices in
 * each one's live XML. escalate() pauses or destroys a domain that ignored an unplug.
 *
 * When libvirtd goes away the backend notices (close callback, keepalive), drops the
 * connection and retries with backoff from the event loop; map/unmap fail with -ENOTCONN
 * meanwhile (ranges being unmapped stay quarantined). Once connected again it calls
 * backend_reconnected(): the user reconciles, since events were lost meanwhile.
 *
 * libvirt's events are run on a thread of the backend's own; they reach the user only once
 * backend_attach_event() gave the backend an sd-event loop, on that loop's thread, which is
 * the only thread that calls the callbacks (backend.h). Without a loop, events queue up and
 * a lost connection is never retried.
 *
 * Isolation between guests rests on libvirt's per-domain security labels (sVirt/AppArmor):
 * every QEMU runs as the same user, which owns every region file.
 */
#include <stdbool.h>

#include "backend/backend.h"

#define BACKEND_LIBVIRT_DEFAULT_QEMU_USER "libvirt-qemu"
#define BACKEND_LIBVIRT_DEFAULT_IVSHMEM_DIR "/run/brokerd/ivshmem"
#define BACKEND_LIBVIRT_MAX_DOORBELL_REGIONS 4096

/*
 * uri NULL: "qemu:///system"; qemu_user NULL: BACKEND_LIBVIRT_DEFAULT_QEMU_USER, the owner of
 * region files. Connects at once; fails if libvirtd cannot be reached.
 */
int backend_libvirt_new(const char *uri, const char *qemu_user, struct backend **ret);

struct backend_libvirt_options {
        const char *uri;         /* NULL: qemu:///system */
        const char *qemu_user;   /* NULL: BACKEND_LIBVIRT_DEFAULT_QEMU_USER */
        const char *ivshmem_dir; /* doorbell regions' sockets and peer tables; NULL: the default */
        /* Where doorbell regions' connections outlive brokerd (backend.h); NULL: they die with it. */
        const struct backend_fd_store *fd_store;
        /* Doorbell regions served at once (a server, a socket and their fds each); 0: the default. */
        unsigned max_doorbell_regions;
};
int backend_libvirt_new_with(const struct backend_libvirt_options *o, struct backend **ret);

bool backend_libvirt_connected(struct backend *b);
