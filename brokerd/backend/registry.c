/* SPDX-License-Identifier: Apache-2.0 */
#include "backend/registry.h"

#include <errno.h>
#include <string.h>

#include "backend/backend-memfd.h"
#ifdef HAVE_LIBVIRT
#include "backend/backend-libvirt.h"
#endif
#include "util/macro.h"

static int memfd_new(const struct backend_options *o, struct backend **ret) {
        return backend_memfd_new_with_store(o->fd_store, ret);
}

#ifdef HAVE_LIBVIRT
static int libvirt_new(const struct backend_options *o, struct backend **ret) {
        return backend_libvirt_new_with(&(const struct backend_libvirt_options) {
                .uri = o->libvirt_uri, .qemu_user = o->qemu_user, .ivshmem_dir = o->ivshmem_dir,
                .fd_store = o->fd_store,
        }, ret);
}
#else
#define libvirt_new NULL
#endif

static const struct backend_driver drivers[] = {
        { "memfd", "regions are fds that host processes map", memfd_new },
        { "libvirt", "regions are ivshmem devices hot-plugged into libvirt domains", libvirt_new },
};

const struct backend_driver *backend_driver_find(const char *name) {
        for (size_t i = 0; name && i < ELEMENTSOF(drivers); i++)
                if (strcmp(drivers[i].name, name) == 0)
                        return &drivers[i];
        return NULL;
}

const struct backend_driver *backend_driver_at(size_t i) {
        return i < ELEMENTSOF(drivers) ? &drivers[i] : NULL;
}

int backend_driver_new(const char *name, const struct backend_options *o, struct backend **ret) {
        const struct backend_driver *d = backend_driver_find(name);

        o = o ?: &(const struct backend_options) {};
        if (!d)
                return -ENOENT;
        if (!d->new)
                return -EOPNOTSUPP;
        return d->new(o, ret);
}
