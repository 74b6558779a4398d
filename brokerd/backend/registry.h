/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The backends, by name: the one place that names them and knows which this brokerd was
 * built with. The daemon looks a driver up by its --backend name and creates it with the
 * options it was given; each driver reads only the options that are its own. A driver this
 * build lacks is still found, with new NULL, so that asking for it gets a clear "not built".
 */
#include <stddef.h>

#include "backend/backend.h"

#define BACKEND_DRIVER_DEFAULT "memfd"

struct backend_options {
        const char *libvirt_uri; /* libvirt: the connection; NULL for qemu:///system */
        const char *qemu_user;   /* libvirt: the user QEMU runs as, owner of region files; NULL for libvirt-qemu */
        const char *ivshmem_dir; /* libvirt: doorbell regions' sockets; NULL for /run/brokerd/ivshmem */
        /*
         * memfd: where memfd regions' fds outlive the daemon; libvirt: doorbell regions' connections
         * (backend.h); NULL: they die with it.
         */
        const struct backend_fd_store *fd_store;
};

struct backend_driver {
        const char *name;
        const char *summary; /* one line for --help */
        /* NULL: this brokerd was built without the driver. Same contract as backend_memfd_new(). */
        int (*new)(const struct backend_options *o, struct backend **ret);
};

/* NULL for a name no build knows. */
const struct backend_driver *backend_driver_find(const char *name);
/* Every known driver, in the order --help lists them: i from 0 until NULL. */
const struct backend_driver *backend_driver_at(size_t i);
/*
 * find + new, o NULL meaning every option at its default: -ENOENT for an unknown name,
 * -EOPNOTSUPP for a driver this build lacks, or the driver's error.
 */
int backend_driver_new(const char *name, const struct backend_options *o, struct backend **ret);
