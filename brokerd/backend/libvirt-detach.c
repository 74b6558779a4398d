/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The detach calls, on threads of their own. virDomainDetachDeviceAlias() returns once
 * QEMU has taken the device_del (5-10 ms under TCG), long before the guest lets go; made on
 * the loop's thread, the removals of a region's holders would start one call after another,
 * and every request waiting on the loop with them. So the call goes to a thread and the unmap
 * returns at once (in progress, as before): the removal is registered pending before, its
 * completion is still the DEVICE_REMOVED event, and only a call that fails reports back, through
 * the event queue (libvirt_detach_failed()). libvirt's connection takes calls from any thread;
 * the calls for different domains run side by side in libvirtd. A few threads at most, which end
 * when nothing is left to detach.
 */
#include <errno.h>
#include <inttypes.h>
#include <libvirt/virterror.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/libvirt-internal.h"
#include "backend/libvirt-xml.h"
#include "util/log.h"
#include "util/names.h"

/* Detach calls running at once, at most; more wait their turn (a domain with thousands of
 * regions that stops must not start thousands of threads). */
#define LIBVIRT_MAX_DETACH_THREADS 8

struct detach_call {
        struct detach_call *next;
        virDomainPtr d;
        uint64_t id;
        char domain[NAME_MAX_LEN + 1];
};

static void detach_one(struct backend_libvirt *l, struct detach_call *c) {
        char alias[LIBVIRT_ALIAS_MAX];

        libvirt_alias_format(c->id, alias);
        if (virDomainDetachDeviceAlias(c->d, alias, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                int code = virGetLastErrorCode();

                /* Not there (never attached, or removed already), or the domain is not running: no error. */
                if (code != VIR_ERR_DEVICE_MISSING && code != VIR_ERR_OPERATION_INVALID && code != VIR_ERR_NO_DOMAIN)
                        log_error("libvirt: detaching %s from %s: %s", alias, c->domain, libvirt_last_error());
                libvirt_detach_failed(l, c->id, c->domain, code);
        }
        virDomainFree(c->d);
        free(c);
}

/* A worker: takes calls off the queue until it is empty, then ends. */
static void *detach_thread(void *p) {
        struct backend_libvirt *l = p;

        pthread_mutex_lock(&l->lock);
        for (;;) {
                struct detach_call *c = l->detach_head;

                if (!c)
                        break;
                l->detach_head = c->next;
                if (!l->detach_head)
                        l->detach_tail = NULL;
                pthread_mutex_unlock(&l->lock);
                detach_one(l, c);
                pthread_mutex_lock(&l->lock);
                l->n_detaching--;
        }
        l->n_detach_threads--;
        pthread_cond_broadcast(&l->detached);
        pthread_mutex_unlock(&l->lock);
        return NULL;
}

static int detach_thread_start(struct backend_libvirt *l) {
        pthread_attr_t attr;
        pthread_t t;
        int k = -pthread_attr_init(&attr);

        if (k < 0)
                return k;
        (void) pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        k = -pthread_create(&t, &attr, detach_thread, l);
        pthread_attr_destroy(&attr);
        return k;
}

int libvirt_detach_start(struct backend_libvirt *l, virDomainPtr d, uint64_t id, const char *domain) {
        struct detach_call *c;
        bool spawn;
        int k = 0;

        if (strlen(domain) > NAME_MAX_LEN)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        if (virDomainRef(d) < 0) {
                free(c);
                return -EIO;
        }
        *c = (struct detach_call) { .d = d, .id = id };
        strcpy(c->domain, domain);

        pthread_mutex_lock(&l->lock);
        spawn = l->n_detach_threads < LIBVIRT_MAX_DETACH_THREADS && l->n_detach_threads < l->n_detaching + 1;
        if (spawn) {
                k = detach_thread_start(l);
                if (k >= 0)
                        l->n_detach_threads++;
        }
        /* Without a thread of its own, a running one takes it; with none running, it fails. */
        if (k >= 0 || l->n_detach_threads > 0) {
                if (l->detach_tail)
                        l->detach_tail->next = c;
                else
                        l->detach_head = c;
                l->detach_tail = c;
                l->n_detaching++;
                c = NULL;
                k = 0;
        }
        pthread_mutex_unlock(&l->lock);
        if (c) {
                virDomainFree(c->d);
                free(c);
        }
        return k;
}

void libvirt_detach_wait(struct backend_libvirt *l) {
        pthread_mutex_lock(&l->lock);
        while (l->n_detach_threads > 0)
                pthread_cond_wait(&l->detached, &l->lock);
        pthread_mutex_unlock(&l->lock);
}
