/* SPDX-License-Identifier: Apache-2.0 */
/* mapping-bench: the raw half, libvirt's own calls into B. */
#include "mapping-bench.h"

/* Is a device with this alias in the domain's live definition? 1, 0 or -EIO. */
int domain_has_alias(virDomainPtr d, const char *alias) {
        char needle[96];
        char *xml = virDomainGetXMLDesc(d, 0);
        bool found;

        if (!xml)
                return -EIO;
        snprintf(needle, sizeof(needle), "<alias name='%s'/>", alias);
        found = strstr(xml, needle) != NULL;
        free(xml);
        return found;
}

/* Checks (untimed) that alias is, or is not, plugged into d. */
int expect_alias(virDomainPtr d, const char *alias, bool present) {
        int k = domain_has_alias(d, alias);

        if (k < 0) {
                fprintf(stderr, "mapping-bench: reading %s's live XML: %s\n", virDomainGetName(d), lv_error());
                return k;
        }
        if ((k > 0) != present) {
                fprintf(stderr, "mapping-bench: %s is %s %s's live definition\n", alias, present ? "missing from" : "still in",
                        virDomainGetName(d));
                return -EBADMSG;
        }
        return 0;
}

/* The backing file as the backend makes it: fresh, 0600, the QEMU user's, of the right size. */
static int raw_file_create(struct bench *b, const char *path) {
        int fd = -1, r;

        for (unsigned attempt = 0; attempt < 2 && fd < 0; attempt++) {
                fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
                /* A leftover of an interrupted run with the same prefix: never reuse an inode. */
                if (fd < 0 && (errno != EEXIST || unlink(path) < 0))
                        break;
        }
        if (fd < 0) {
                r = -errno;
                fprintf(stderr, "mapping-bench: creating %s: %m\n", path);
                return r;
        }
        r = 0;
        if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t) b->size) < 0 || fchown(fd, b->qemu_uid, b->qemu_gid) < 0) {
                r = -errno;
                fprintf(stderr, "mapping-bench: preparing %s: %m\n", path);
                (void) unlink(path);
        }
        close(fd);
        return r;
}

/* The backend's XML for a region file, with our own alias; NULL when out of memory. */
static char *shmem_xml(const char *name, uint64_t size, const char *alias) {
        char *xml;

        if (asprintf(&xml, "<shmem name='%s'><model type='ivshmem-plain'/><size unit='B'>%" PRIu64
                           "</size><alias name='%s'/></shmem>", name, size, alias) < 0)
                return NULL;
        return xml;
}

/*
 * The raw half: t[M_RAW_*] (NULL: warm-up). The device gets the backend's XML with our own
 * alias, which brokerd's backend ignores in its DEVICE_REMOVED handler (not its prefix).
 */
int raw_once(struct bench *b, uint64_t *t) {
        char name[PATH_MAX], path[PATH_MAX + 16], alias[64], alias_a[64], *xml = NULL, *xml_a = NULL;
        uint64_t t0, t1, t2, t3, t4, t5, removed[MAX_EXPECT] = {}, removed_a[MAX_EXPECT] = {};
        bool attached = false, gone = false, in_a = false;
        virDomainPtr d;
        int k, r;

        snprintf(name, sizeof(name), "%s-%u", b->raw_prefix, b->seq);
        snprintf(path, sizeof(path), SHM_DIR "/%s", name);
        snprintf(alias, sizeof(alias), RAW_ALIAS_PREFIX "%u", b->seq);
        snprintf(alias_a, sizeof(alias_a), RAW_ALIAS_PREFIX "a%u", b->seq);
        b->seq++;
        r = raw_file_create(b, path);
        if (r < 0)
                return r;
        xml = shmem_xml(name, b->size, alias);
        if (!xml) {
                r = -ENOMEM;
                goto out;
        }

        /* --raw-shared: the file is in A already when B gets it, as after a region.share. */
        if (b->raw_shared) {
                xml_a = shmem_xml(name, b->size, alias_a);
                if (!xml_a) {
                        r = -ENOMEM;
                        goto out;
                }
                if (virDomainAttachDeviceFlags(b->dom_owner, xml_a, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                        fprintf(stderr, "mapping-bench: attaching %s to %s: %s\n", alias_a, b->owner, lv_error());
                        r = -EIO;
                        goto out;
                }
                in_a = true;
                r = expect_alias(b->dom_owner, alias_a, true);
                if (r < 0)
                        goto out;
                sleep_msec(b->settle_ms);
        }

        /* What lv_map() does before it attaches: find the domain, read its live XML. */
        t0 = bench_now_nsec();
        d = virDomainLookupByName(b->conn, b->peer);
        k = d ? domain_has_alias(d, alias) : -EIO;
        t1 = bench_now_nsec();
        if (d)
                virDomainFree(d);
        if (k != 0) {
                fprintf(stderr, "mapping-bench: looking up %s: %s\n", b->peer, k < 0 ? lv_error() : "alias already there");
                r = k < 0 ? k : -EEXIST;
                goto out;
        }

        t2 = bench_now_nsec();
        if (virDomainAttachDeviceFlags(b->dom_peer, xml, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                fprintf(stderr, "mapping-bench: attaching %s to %s: %s\n", alias, b->peer, lv_error());
                r = -EIO;
                goto out;
        }
        t3 = bench_now_nsec();
        attached = true;
        r = expect_alias(b->dom_peer, alias, true);
        if (r < 0)
                goto out;

        sleep_msec(b->settle_ms);

        r = watch_arm(b->peer, alias);
        if (r < 0)
                goto out;
        t4 = bench_now_nsec();
        if (virDomainDetachDeviceAlias(b->dom_peer, alias, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                fprintf(stderr, "mapping-bench: detaching %s from %s: %s\n", alias, b->peer, lv_error());
                watch_reset();
                r = -EIO;
                goto out;
        }
        t5 = bench_now_nsec();
        r = watch_wait(b->timeout_ms, removed);
        if (r < 0)
                goto out;
        gone = true;
        r = expect_alias(b->dom_peer, alias, false);
        if (r < 0)
                goto out;
        if (in_a) {
                r = watch_arm(b->owner, alias_a);
                if (r < 0)
                        goto out;
                if (virDomainDetachDeviceAlias(b->dom_owner, alias_a, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                        fprintf(stderr, "mapping-bench: detaching %s from %s: %s\n", alias_a, b->owner, lv_error());
                        watch_reset();
                        r = -EIO;
                        goto out;
                }
                r = watch_wait(b->timeout_ms, removed_a);
                if (r < 0)
                        goto out;
                in_a = false;
        }

        if (t) {
                t[M_RAW_LOOKUP] = t1 - t0;
                t[M_RAW_ATTACH] = t3 - t2;
                t[M_RAW_DETACH_CALL] = t5 - t4;
                t[M_RAW_DETACH] = removed[0] - t4;
        }
out:
        /* Best effort, so that a failed run does not leave the device behind in B. */
        if (attached && !gone)
                (void) virDomainDetachDeviceAlias(b->dom_peer, alias, VIR_DOMAIN_AFFECT_LIVE);
        if (in_a)
                (void) virDomainDetachDeviceAlias(b->dom_owner, alias_a, VIR_DOMAIN_AFFECT_LIVE);
        if (unlink(path) < 0 && errno != ENOENT)
                fprintf(stderr, "mapping-bench: removing %s: %m\n", path);
        free(xml);
        free(xml_a);
        return r;
}
