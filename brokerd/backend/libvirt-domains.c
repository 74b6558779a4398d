/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Domains by name, kept between calls: a map into a guest then costs libvirtd one call (the
 * attach), not three (lookup, live XML, attach). See docs/bench-mapping.md.
 *
 * A virDomainPtr names its domain by UUID: libvirtd refuses a call on it (VIR_ERR_NO_DOMAIN)
 * once that domain is gone, even if another one took its name. So a kept handle is dropped
 * when its domain stops or is undefined (the lifecycle event, libvirt-events.c), when the
 * connection goes, and by a caller that got VIR_ERR_NO_DOMAIN on it (then it looks it up
 * again). A domain can only be renamed while shut off, which drops the handle first.
 */
#include <errno.h>
#include <libvirt/virterror.h>
#include <stdlib.h>
#include <string.h>

#include "backend/libvirt-internal.h"
#include "util/hashmap.h"
#include "util/names.h"

/* More domains than this at once, and the cache starts over: it only saves lookups. */
#define LIBVIRT_MAX_KEPT_DOMAINS 1024

struct lv_domain {
        char name[NAME_MAX_LEN + 1]; /* the key */
        virDomainPtr d;
};

static void lv_domain_free(struct lv_domain *e) {
        if (!e)
                return;
        virDomainFree(e->d);
        free(e);
}

int libvirt_domain_lookup(struct backend_libvirt *l, const char *domain, virDomainPtr *ret) {
        virDomainPtr d;

        if (!l->conn)
                return -ENOTCONN;
        d = virDomainLookupByName(l->conn, domain);
        if (!d)
                return virGetLastErrorCode() == VIR_ERR_NO_DOMAIN ? -ESRCH : -EIO;
        *ret = d;
        return 0;
}

/* Keeps a reference to d under domain's name; a failure only means the next call looks it up. */
static void domain_keep(struct backend_libvirt *l, const char *domain, virDomainPtr d) {
        struct lv_domain *e;

        if (strlen(domain) > NAME_MAX_LEN)
                return;
        if (l->domains && hashmap_size(l->domains) >= LIBVIRT_MAX_KEPT_DOMAINS)
                libvirt_domains_forget_all(l);
        if (!l->domains && hashmap_new(&hashmap_string_ops, &l->domains) < 0)
                return;
        e = calloc(1, sizeof(*e));
        if (!e || virDomainRef(d) < 0) {
                free(e);
                return;
        }
        strcpy(e->name, domain);
        e->d = d;
        if (hashmap_put(l->domains, e->name, e) < 0)
                lv_domain_free(e);
}

int libvirt_domain_get(struct backend_libvirt *l, const char *domain, bool *ret_kept, virDomainPtr *ret) {
        struct lv_domain *e = l->domains ? hashmap_get(l->domains, domain) : NULL;
        virDomainPtr d;
        int k;

        if (!l->conn)
                return -ENOTCONN;
        if (e && virDomainRef(e->d) >= 0) {
                *ret_kept = true;
                *ret = e->d;
                return 0;
        }
        k = libvirt_domain_lookup(l, domain, &d);
        if (k < 0)
                return k;
        domain_keep(l, domain, d);
        *ret_kept = false;
        *ret = d;
        return 0;
}

void libvirt_domain_forget(struct backend_libvirt *l, const char *domain) {
        if (l->domains)
                lv_domain_free(hashmap_remove(l->domains, domain));
}

void libvirt_domains_forget_all(struct backend_libvirt *l) {
        size_t i = 0;
        void *v;

        if (!l->domains)
                return;
        while (hashmap_iterate(l->domains, &i, &v))
                lv_domain_free(v);
        hashmap_free(l->domains);
        l->domains = NULL;
}
