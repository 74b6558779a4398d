/* SPDX-License-Identifier: Apache-2.0 */
#include "backend/backend-libvirt.h"
#include "backend/libvirt-internal.h"
#include "backend/libvirt-xml.h"
#include "backend/region-file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/log.h"
#include "util/macro.h"
#include "util/names.h"
#include "util/num.h"

#define LIBVIRT_DEFAULT_URI "qemu:///system"
/* libvirt's ivshmem-plain files live here, whatever else the pool says. */
#define LIBVIRT_SHM_DIR "/dev/shm"
#define LIBVIRT_MIN_SIZE 4096
#define LIBVIRT_IVSHMEM_DIR_MAX 72

/* ---- files ---- */

static bool pool_dir_is_libvirts(const char *path) {
        size_t n;

        if (!path)
                return false;
        n = strlen(path);
        while (n > 1 && path[n - 1] == '/')
                n--;
        return n == strlen(LIBVIRT_SHM_DIR) && strncmp(path, LIBVIRT_SHM_DIR, n) == 0;
}

static int region_check(const struct backend_region *r) {
        if (!r || !r->pool || !name_is_valid(r->pool->name))
                return -EINVAL;
        if (r->pool->backing != BACKING_SHM || !pool_dir_is_libvirts(r->pool->backing_path))
                return -EINVAL;
        if (r->size < LIBVIRT_MIN_SIZE || r->size > (uint64_t) INT64_MAX || !num_is_pow2(r->size))
                return -EINVAL;
        return 0;
}

/* The <shmem name>, which libvirt turns into LIBVIRT_SHM_DIR/<name>. */
static void shm_name(const struct backend_region *r, char *buf, size_t n) {
        snprintf(buf, n, "brokerd-%s-%" PRIu64, r->pool->name, r->id);
}

/* The region's file in LIBVIRT_SHM_DIR, once the region is checked to be one this backend serves. */
static int shm_path(const struct backend_region *r, char *buf, size_t n) {
        int k;

        k = region_check(r);
        if (k < 0)
                return k;
        snprintf(buf, n, LIBVIRT_SHM_DIR "/brokerd-%s-%" PRIu64, r->pool->name, r->id);
        return 0;
}

/* One of ours: a regular file of the QEMU user that nobody else may open, of the right size. */
static int check_region_file(struct backend_libvirt *l, int fd, uint64_t size) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode) || st.st_uid != l->qemu_uid || (st.st_mode & 0077))
                return -EBADFD;
        if ((uint64_t) st.st_size != size)
                return -EINVAL;
        return 0;
}

static int lv_check(struct backend *b, const struct backend_region *r, char *why, size_t why_len) {
        const struct platform_pool *pool = r->pool;
        uint64_t size = r->size;

        if (!pool || pool->backing != BACKING_SHM || !pool_dir_is_libvirts(pool->backing_path)) {
                snprintf(why, why_len,
                         "the libvirt backend needs an shm pool backed by " LIBVIRT_SHM_DIR
                         " (where libvirt puts ivshmem memory)");
                return -EINVAL;
        }
        if (size < LIBVIRT_MIN_SIZE || !num_is_pow2(size)) {
                snprintf(why, why_len, "QEMU's ivshmem needs a power-of-two size of at least 4KiB, not %" PRIu64,
                         size);
                return -EINVAL;
        }
        if (r->doorbells > 0 && !libvirt_bells_room(to_lv(b))) {
                snprintf(why, why_len, "it serves at most %u doorbell regions at once", to_lv(b)->max_bells);
                return -E2BIG;
        }
        return 0;
}

static int lv_create(struct backend *b, const struct backend_region *r) {
        struct backend_libvirt *l = to_lv(b);
        _cleanup_(closep) int fd = -EBADF;
        char path[PATH_MAX];
        int k;

        k = shm_path(r, path, sizeof(path));
        if (k < 0)
                return k;

        for (unsigned attempt = 0; attempt < 3 && fd < 0; attempt++) {
                fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
                if (fd >= 0)
                        break;
                if (errno != EEXIST)
                        return negative_errno();
                /*
                 * Left by a crash of ours, or planted (and maybe held open) by anyone running as
                 * the QEMU user: nothing was mapped from a region still being created, so a
                 * fresh inode costs nothing and trusts nobody.
                 */
                if (unlink(path) < 0 && errno != ENOENT)
                        return negative_errno();
        }
        if (fd < 0)
                return -EEXIST;
        if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t) r->size) < 0 ||
            fchown(fd, l->qemu_uid, l->qemu_gid) < 0) {
                k = negative_errno();
                (void) unlink(path);
                return k;
        }
        if (r->doorbells > 0) {
                k = libvirt_bells_create(l, r);
                if (k < 0) {
                        (void) unlink(path);
                        return k;
                }
        }
        return 0;
}

int libvirt_region_file_open(struct backend_libvirt *l, const struct backend_region *r, int *ret) {
        _cleanup_(closep) int fd = -EBADF;
        char path[PATH_MAX];
        int k;

        k = shm_path(r, path, sizeof(path));
        if (k < 0)
                return k;
        k = region_file_open(path, &fd);
        if (k < 0)
                return k;
        k = check_region_file(l, fd, r->size);
        if (k < 0)
                return k;
        *ret = TAKE_FD(fd);
        return 0;
}

static int lv_restore(struct backend *b, const struct backend_region *r) {
        _cleanup_(closep) int fd = -EBADF;
        int k;

        k = libvirt_region_file_open(to_lv(b), r, &fd);
        if (k >= 0 && r->doorbells > 0)
                k = libvirt_bells_restore(to_lv(b), r);
        return k;
}

/*
 * A crash inside create() can leave the file still ours (not yet handed to QEMU's user) and not
 * yet sized: nobody ever mapped it, so taking it down must not stall on it. Anything else that
 * is not exactly ours is refused as by restore().
 */
static bool file_is_half_made(struct backend_libvirt *l, int fd, uint64_t size) {
        struct stat st;

        return fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() && st.st_uid != l->qemu_uid &&
               !(st.st_mode & 0077) && (uint64_t) st.st_size <= size;
}

static int lv_scrub(struct backend *b, const struct backend_region *r) {
        struct backend_libvirt *l = to_lv(b);
        _cleanup_(closep) int fd = -EBADF;
        char path[PATH_MAX];
        int k;

        k = libvirt_region_file_open(l, r, &fd);
        if (k == -EBADFD || k == -EINVAL) {
                if (shm_path(r, path, sizeof(path)) < 0 || region_file_open(path, &fd) < 0 ||
                    !file_is_half_made(l, fd, r->size))
                        return k;
                log_info("libvirt: region %" PRIu64 ": its file was left half-made by a crash; scrubbing it anyway",
                         r->id);
                k = 0;
        }
        if (k < 0)
                return k;
        return region_file_punch_out(fd, r->size);
}

static int lv_destroy(struct backend *b, const struct backend_region *r) {
        char path[PATH_MAX];
        int k;

        k = shm_path(r, path, sizeof(path));
        if (k < 0)
                return k;
        libvirt_bells_close(to_lv(b), r->id);
        if (unlink(path) < 0 && errno != ENOENT)
                return negative_errno();
        return 0;
}

/* ---- devices ---- */

/* A call on a domain failed: -ESTALE when the domain is gone (a kept handle: look it up again). */
static int call_failed(void) {
        return virGetLastErrorCode() == VIR_ERR_NO_DOMAIN ? -ESTALE : -EIO;
}

/*
 * Whether d runs under TCG (<domain type='qemu'>) and holds region id's device: QEMU 7.2 keeps
 * stale fd handlers after that device's unplug (libvirt-stale.c).
 */
static bool tcg_device_present(virDomainPtr d, uint64_t id) {
        char *xml = virDomainGetXMLDesc(d, 0);
        bool present = libvirt_xml_is_tcg(xml) && libvirt_xml_has_region(xml, id);

        free(xml);
        return present;
}

struct region_match {
        uint64_t id;
        const char *name;
};

static int region_is(void *userdata, uint64_t region, const char *name) {
        const struct region_match *m = userdata;

        return region == m->id && strcmp(name, m->name) == 0;
}

/* Is brokerd's device for this region (same id, same file) in the domain's live definition? */
static int domain_has_region(virDomainPtr d, const struct backend_region *r) {
        char name[NAME_MAX_LEN + 64], *xml = virDomainGetXMLDesc(d, 0);
        int found;

        if (!xml)
                return call_failed();
        shm_name(r, name, sizeof(name));
        found = libvirt_xml_foreach_region(xml, region_is, &(struct region_match) { .id = r->id, .name = name });
        free(xml);
        return found;
}

/* "brokerd-<pool>-<id>" -> pool, when id matches: the pool part of a device of ours. */
static int shm_name_pool(const char *name, uint64_t id, char *pool, size_t n) {
        char suffix[32];
        size_t len = strlen(name), plen = strlen("brokerd-"), slen;

        slen = (size_t) snprintf(suffix, sizeof(suffix), "-%" PRIu64, id);
        if (strncmp(name, "brokerd-", plen) != 0 || len <= plen + slen || strcmp(name + len - slen, suffix) != 0)
                return -EINVAL;
        if (len - plen - slen >= n)
                return -EINVAL;
        memcpy(pool, name + plen, len - plen - slen);
        pool[len - plen - slen] = 0;
        return name_is_valid(pool) ? 0 : -EINVAL;
}

/* ivshmem-plain maps the file by name; ivshmem-doorbell gets it (as an fd) from brokerd's server. */
static int device_xml(struct backend_libvirt *l, const struct backend_region *r, const char *alias, char **ret) {
        char name[NAME_MAX_LEN + 64], sock[PATH_MAX];
        int k;

        shm_name(r, name, sizeof(name));
        if (r->doorbells == 0)
                k = asprintf(ret,
                             "<shmem name='%s'><model type='ivshmem-plain'/><size unit='B'>%" PRIu64
                             "</size><alias name='%s'/></shmem>",
                             name, r->size, alias);
        else {
                k = libvirt_bells_socket(l, r->id, sock, sizeof(sock));
                if (k < 0)
                        return k;
                /* No <size>: QEMU takes it from the memory fd the server sends. */
                k = asprintf(ret,
                             "<shmem name='%s'><model type='ivshmem-doorbell'/><server path='%s'/>"
                             "<msi vectors='%u' ioeventfd='on'/><alias name='%s'/></shmem>",
                             name, sock, r->doorbells, alias);
        }
        return k < 0 ? -ENOMEM : 0;
}

/*
 * QEMU 7.2's TCG emits a guest's memory barriers only when the machine may have more than one
 * vCPU: a doorbell's need-wakeup handshake then loses wake-ups (docs/guest-doorbells.md, "Memory
 * barriers under TCG"). Told at every doorbell plug, for the admin who can raise the maximum.
 */
static void warn_tcg_one_vcpu(virDomainPtr d, const char *domain) {
        char *xml;

        if (virDomainGetMaxVcpus(d) != 1)
                return;
        xml = virDomainGetXMLDesc(d, 0);
        if (libvirt_xml_is_tcg(xml))
                log_warning("libvirt: %s is a TCG guest with at most one vCPU: QEMU omits its memory barriers and "
                            "its doorbell wake-ups can be lost; define it with <vcpu current='1'>2</vcpu>",
                            domain);
        free(xml);
}

/*
 * The attach call failed. A plain region's device may be there already (a map repeated after a
 * crash): libvirt refuses a second device with the same alias, and the live XML tells.
 */
static int attach_failed(virDomainPtr d, const struct backend_region *r, const char *alias, const char *domain) {
        int code = virGetLastErrorCode();
        _cleanup_(xfreep) char *msg = strdup(libvirt_last_error());

        if (code == VIR_ERR_NO_DOMAIN)
                return -ESTALE;
        if (r->doorbells == 0 && domain_has_region(d, r) > 0)
                return 0;
        log_error("libvirt: attaching %s to %s: %s", alias, domain, msg ?: "out of memory");
        return -EIO;
}

/*
 * r's device into d: 0 once libvirt has it in the live definition. A doorbell region is looked
 * for in the live XML first (a map repeated after a crash finds its doorbells as the restore
 * left them); a plain one is attached at once, the XML read only when that fails. Nothing is
 * plugged while one of d's doorbell devices is on its way out (libvirt_stale_settle()).
 * -ESTALE: d is gone.
 */
static int device_plug(struct backend_libvirt *l, virDomainPtr d, const struct backend_region *r, const char *domain) {
        _cleanup_(xfreep) char *xml = NULL;
        char alias[LIBVIRT_ALIAS_MAX];
        int k;

        libvirt_alias_format(r->id, alias);
        if (r->doorbells > 0) {
                k = domain_has_region(d, r);
                if (k == -EIO)
                        log_error("libvirt: reading %s's definition: %s", domain, libvirt_last_error());
                if (k != 0)
                        return k < 0 ? k : 0;
        }
        k = libvirt_stale_settle(l, d, domain);
        if (k == -EBUSY && r->doorbells == 0 && domain_has_region(d, r) > 0)
                return 0;
        if (k == -EBUSY)
                log_warning("libvirt: not attaching %s to %s yet: a doorbell device of %s is still being unplugged",
                            alias, domain, domain);
        else if (k < 0)
                log_error("libvirt: reading %s's definition: %s", domain, libvirt_last_error());
        if (k < 0)
                return k;
        k = device_xml(l, r, alias, &xml);
        /* Its QEMU is let in before the call: QEMU reads the setup while realizing the device. */
        if (k >= 0 && r->doorbells > 0)
                k = libvirt_bells_expect(l, r->id, domain);
        if (k < 0)
                return k;
        if (virDomainAttachDeviceFlags(d, xml, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                k = attach_failed(d, r, alias, domain);
                if (r->doorbells > 0)
                        (void) libvirt_bells_attached(l, r->id, domain, false);
                return k;
        }
        if (r->doorbells == 0)
                return 0;
        k = libvirt_bells_attached(l, r->id, domain, true);
        warn_tcg_one_vcpu(d, domain);
        return k;
}

/* device_plug() into domain, through its kept handle (*ret_kept) or one looked up now. */
static int plug_by_name(struct backend_libvirt *l, const struct backend_region *r, const char *domain,
                        bool *ret_kept) {
        virDomainPtr d;
        int k = libvirt_domain_get(l, domain, ret_kept, &d);

        if (k < 0)
                return k;
        k = device_plug(l, d, r, domain);
        virDomainFree(d);
        return k;
}

static int lv_map(struct backend *b, const struct backend_region *r, const char *domain, enum access_mode access,
                  struct backend_mapping *ret) {
        struct backend_libvirt *l = to_lv(b);
        bool kept = false;
        int k;

        if (!ret || !name_is_valid(domain) || (access != ACCESS_RO && access != ACCESS_RW))
                return -EINVAL;
        k = region_check(r);
        if (k < 0)
                return k;
        /* ivshmem gives the guest a writable BAR: there is no read-only sharing to offer. */
        if (access != ACCESS_RW)
                return -EOPNOTSUPP;
        if (libvirt_pending_find(l, r->id, domain) >= 0)
                return -EBUSY; /* the previous mapping is still on its way out */

        k = plug_by_name(l, r, domain, &kept);
        if (k == -ESTALE && kept) {
                /* The handle kept outlived its domain (its stop event is still on its way): once more. */
                libvirt_domain_forget(l, domain);
                k = plug_by_name(l, r, domain, &kept);
        }
        if (k == -ESTALE)
                k = -ESRCH; /* gone between the lookup and the call */
        if (k == -ENOTCONN || k == -ESRCH)
                log_error("libvirt: %s: %s", domain, k == -ENOTCONN ? "libvirtd is not connected" : "no such domain");
        if (k < 0)
                return k;
        ret->fd = -1;
        ret->size = r->size;
        return 0;
}

static int lv_unmap(struct backend *b, const struct backend_region *r, const struct backend_holder *h) {
        struct backend_libvirt *l = to_lv(b);
        const char *domain = h ? h->domain : NULL;
        virDomainPtr d = NULL;
        bool kept;
        char alias[LIBVIRT_ALIAS_MAX];
        int k;

        if (!r || !name_is_valid(domain))
                return -EINVAL;
        if (libvirt_pending_find(l, r->id, domain) >= 0)
                return -EINPROGRESS;

        /* A kept handle whose domain is gone needs no second look: that domain's devices went
         * with it (VIR_ERR_NO_DOMAIN completes the removal), and a device of ours in a domain
         * that took its name was plugged through a handle looked up again (lv_map()). */
        k = libvirt_domain_get(l, domain, &kept, &d);
        /* Out of the doorbell group before the unplug: brokerd's copies of its eventfds closed. */
        /* Only a doorbell region's unplug costs the extra look at the live XML. */
        if (k != -ENOTCONN && k != -EIO && libvirt_bells_has(l, r->id)) {
                int q = libvirt_bells_remove(l, r->id, domain, k >= 0 && tcg_device_present(d, r->id));
                if (q < 0)
                        log_error("libvirt: taking %s out of region %" PRIu64 "'s doorbells: %s", domain, r->id,
                                  strerror(-q));
        }
        if (k == -ESRCH)
                return 0; /* no domain, no device */
        if (k < 0) {
                log_error("libvirt: %s: %s", domain, k == -ENOTCONN ? "libvirtd is not connected" : libvirt_last_error());
                return k;
        }
        libvirt_alias_format(r->id, alias);
        /* Registered before the call, so that a removal event cannot overtake it. */
        k = libvirt_pending_add(l, r->id, domain);
        if (k >= 0) {
                /* On a thread: the holders' removals start together (libvirt-detach.c). Its
                 * completion is the DEVICE_REMOVED event, or the call's failure, both on the loop. */
                k = libvirt_detach_start(l, d, r->id, domain);
                if (k < 0)
                        libvirt_pending_remove(l, (size_t) libvirt_pending_find(l, r->id, domain));
        }
        virDomainFree(d);
        if (k < 0) {
                log_error("libvirt: cannot ask for the removal of %s from %s: %s", alias, domain, strerror(-k));
                return k;
        }
        log_info("libvirt: removal of %s from %s requested", alias, domain);
        return -EINPROGRESS;
}

struct survey_walk {
        struct backend_survey *survey;
        const char *domain;
};

static int survey_found(void *userdata, uint64_t region, const char *name) {
        struct survey_walk *w = userdata;
        char pool[NAME_MAX_LEN + 1];

        /* Our alias on a file brokerd did not name: not a device of ours to account for. */
        if (shm_name_pool(name, region, pool, sizeof(pool)) < 0)
                return 0;
        return survey_add_mapping(w->survey, region, pool, w->domain);
}

/* Every running (or paused) domain, and brokerd's devices in each one's live XML. */
static int lv_survey(struct backend *b, struct backend_survey *ret) {
        struct backend_libvirt *l = to_lv(b);
        struct backend_survey s = {};
        virDomainPtr *doms = NULL;
        int n, k = 0;

        if (!l->conn)
                return -ENOTCONN;
        n = virConnectListAllDomains(l->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0) {
                log_error("libvirt: listing domains: %s", libvirt_last_error());
                return -EIO;
        }
        for (int i = 0; i < n; i++) {
                const char *name = virDomainGetName(doms[i]);
                char *xml;

                if (k >= 0 && name && name_is_valid(name)) {
                        k = survey_add_running(&s, name);
                        xml = k >= 0 ? virDomainGetXMLDesc(doms[i], 0) : NULL;
                        if (k >= 0 && xml)
                                k = libvirt_xml_foreach_region(xml, survey_found,
                                                               &(struct survey_walk) { .survey = &s, .domain = name });
                        else if (k >= 0 && virDomainIsActive(doms[i]) == 1) {
                                /* An active domain whose devices we cannot see: do not guess. */
                                log_error("libvirt: reading %s's definition: %s", name, libvirt_last_error());
                                k = -EIO;
                        }
                        free(xml);
                }
                virDomainFree(doms[i]);
        }
        free(doms);
        if (k < 0) {
                survey_done(&s);
                return k;
        }
        *ret = s;
        return 0;
}

/* The guest's removal completes through its events (a destroyed domain's stop event), never at once. */
static int lv_escalate(struct backend *b, const struct backend_region *r, const struct backend_holder *h,
                       enum unplug_escalation action) {
        struct backend_libvirt *l = to_lv(b);
        const char *domain = h ? h->domain : NULL;
        virDomainPtr d = NULL;
        int k, state = 0, reason = 0;

        (void) r;
        if (action == ESCALATION_REPORT)
                return 0;
        if (!name_is_valid(domain) || (action != ESCALATION_PAUSE && action != ESCALATION_DESTROY))
                return -EINVAL;
        k = libvirt_domain_lookup(l, domain, &d);
        if (k == -ESRCH)
                return 0; /* gone already: its stop event completes the removal */
        if (k < 0)
                return k;
        if (action == ESCALATION_PAUSE) {
                if (virDomainGetState(d, &state, &reason, 0) == 0 && state == VIR_DOMAIN_PAUSED)
                        k = 0;
                else if (virDomainSuspend(d) < 0)
                        k = -EIO;
        } else if (virDomainDestroy(d) < 0)
                k = virGetLastErrorCode() == VIR_ERR_OPERATION_INVALID ? 0 : -EIO; /* not running: fine */
        if (k < 0)
                log_error("libvirt: %s %s: %s", action == ESCALATION_PAUSE ? "pausing" : "destroying", domain,
                          libvirt_last_error());
        else
                log_warning("libvirt: %s %s: it ignored the removal of a revoked region",
                            action == ESCALATION_PAUSE ? "paused" : "destroyed", domain);
        virDomainFree(d);
        return k;
}

static int lv_doorbell_id(struct backend *b, const struct backend_region *r, const char *domain, uint32_t *ret) {
        if (!r || !name_is_valid(domain) || !ret)
                return -EINVAL;
        return libvirt_bells_id(to_lv(b), r->id, domain, ret);
}

static void lv_free(struct backend *b) {
        struct backend_libvirt *l = to_lv(b);

        /* Before the events: the servers report through the loop the events hold. */
        libvirt_bells_stop(l);
        libvirt_stale_free(l);
        libvirt_events_stop(l);
        free(l->uri);
        free(l);
}

static const struct backend_ops libvirt_ops = {
        .name = "libvirt",
        .guest_doorbells = true,
        .slow_maps = true,
        .attach_event = libvirt_events_attach,
        .check = lv_check,
        .create = lv_create,
        .restore = lv_restore,
        .map = lv_map,
        .unmap = lv_unmap,
        .survey = lv_survey,
        .escalate = lv_escalate,
        .doorbell_id = lv_doorbell_id,
        .scrub = lv_scrub,
        .destroy = lv_destroy,
        .free = lv_free,
};

int backend_libvirt_new(const char *uri, const char *qemu_user, struct backend **ret) {
        return backend_libvirt_new_with(&(const struct backend_libvirt_options) { .uri = uri, .qemu_user = qemu_user },
                                        ret);
}

int backend_libvirt_new_with(const struct backend_libvirt_options *o, struct backend **ret) {
        const char *uri = o->uri, *qemu_user = o->qemu_user;
        struct backend_libvirt *l;
        struct passwd *pw;
        int k;

        k = libvirt_events_init();
        if (k < 0)
                return k;

        /* A socket's path must fit sockaddr_un: "<dir>/region-<id>.sock", id up to 20 digits. */
        if (o->ivshmem_dir && (o->ivshmem_dir[0] != '/' || strlen(o->ivshmem_dir) > LIBVIRT_IVSHMEM_DIR_MAX)) {
                log_error("libvirt: the ivshmem directory must be an absolute path of at most %d characters",
                          LIBVIRT_IVSHMEM_DIR_MAX);
                return -ENAMETOOLONG;
        }
        qemu_user = qemu_user ?: BACKEND_LIBVIRT_DEFAULT_QEMU_USER;
        pw = getpwnam(qemu_user);
        if (!pw) {
                log_error("libvirt: no user %s (the user QEMU runs as: see \"user\" in /etc/libvirt/qemu.conf)",
                          qemu_user);
                return -ESRCH;
        }

        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->backend.ops = &libvirt_ops;
        l->qemu_uid = pw->pw_uid;
        l->qemu_gid = pw->pw_gid;
        l->uri = strdup(uri ?: LIBVIRT_DEFAULT_URI);
        l->ivshmem_dir = strdup(o->ivshmem_dir ?: BACKEND_LIBVIRT_DEFAULT_IVSHMEM_DIR);
        if (o->fd_store)
                l->fd_store = *o->fd_store;
        l->max_bells = o->max_doorbell_regions ?: BACKEND_LIBVIRT_MAX_DOORBELL_REGIONS;
        if (!l->uri || !l->ivshmem_dir) {
                free(l->ivshmem_dir);
                free(l->uri);
                free(l);
                return -ENOMEM;
        }
        k = libvirt_events_start(l);
        if (k < 0) {
                lv_free(&l->backend);
                return k;
        }
        libvirt_stale_load(l);
        *ret = &l->backend;
        return 0;
}
