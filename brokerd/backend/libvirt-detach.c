/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The detach calls, each on a thread of its own. virDomainDetachDeviceAlias() returns once
 * QEMU has taken the device_del (5-10 ms under TCG), long before the guest lets go; made on
 * the loop's thread, the removals of a region's holders would start one call after another,
 * and every request waiting on the loop with them. So the call goes to a thread and the unmap
 * returns at once (in progress, as before): the removal is registered pending before, its
 * completion is still the DEVICE_REMOVED event, and only a call that fails reports back, through
 * the event queue (libvirt_detach_failed()). libvirt's connection takes calls from any thread;
 * the calls for different domains run side by side in libvirtd.
 */
#include <errno.h>
#include <inttypes.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/libvirt-internal.h"
#include "backend/libvirt-xml.h"
#include "util/log.h"
#include "util/names.h"

struct detach_call {
        struct backend_libvirt *l;
        virDomainPtr d;
        uint64_t id;
        char domain[NAME_MAX_LEN + 1];
};

static void *detach_thread(void *p) {
        struct detach_call *c = p;
        struct backend_libvirt *l = c->l;
        char alias[64];

        snprintf(alias, sizeof(alias), LIBVIRT_ALIAS_PREFIX "%" PRIu64, c->id);
        if (virDomainDetachDeviceAlias(c->d, alias, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                int code = virGetLastErrorCode();

                /* Not there (never attached, or removed already), or the domain is not running: no error. */
                if (code != VIR_ERR_DEVICE_MISSING && code != VIR_ERR_OPERATION_INVALID && code != VIR_ERR_NO_DOMAIN)
                        log_error("libvirt: detaching %s from %s: %s", alias, c->domain, libvirt_last_error());
                libvirt_detach_failed(l, c->id, c->domain, code);
        }
        virDomainFree(c->d);
        free(c);

        pthread_mutex_lock(&l->lock);
        if (--l->n_detaching == 0)
                pthread_cond_broadcast(&l->detached);
        pthread_mutex_unlock(&l->lock);
        return NULL;
}

int libvirt_detach_start(struct backend_libvirt *l, virDomainPtr d, uint64_t id, const char *domain) {
        struct detach_call *c;
        pthread_attr_t attr;
        pthread_t t;
        int k;

        if (strlen(domain) > NAME_MAX_LEN)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (virDomainRef(d) < 0) {
                free(c);
                return -EIO;
        }
        *c = (struct detach_call) { .l = l, .d = d, .id = id };
        strcpy(c->domain, domain);

        pthread_mutex_lock(&l->lock);
        l->n_detaching++;
        pthread_mutex_unlock(&l->lock);
        k = -pthread_attr_init(&attr);
        if (k >= 0) {
                (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                k = -pthread_create(&t, &attr, detach_thread, c);
                pthread_attr_destroy(&attr);
        }
        if (k < 0) {
                pthread_mutex_lock(&l->lock);
                l->n_detaching--;
                pthread_mutex_unlock(&l->lock);
                virDomainFree(d);
                free(c);
        }
        return k;
}

void libvirt_detach_wait(struct backend_libvirt *l) {
        pthread_mutex_lock(&l->lock);
        while (l->n_detaching > 0)
                pthread_cond_wait(&l->detached, &l->lock);
        pthread_mutex_unlock(&l->lock);
}
