/* SPDX-License-Identifier: Apache-2.0 */
/*
 * QEMU 7.2 under TCG leaves the fd handlers of an unplugged ivshmem-doorbell device's own
 * vectors registered on the closed fd numbers (docs/guest-doorbells.md, "Unplug under TCG"):
 * its main thread spins on POLLNVAL, and once another readable fd lands on such a number QEMU
 * runs the handler on freed memory. So before the unplug brokerd notes which fd numbers of the
 * domain's QEMU hold the departing device's own eventfds (kcmp against the server's copies),
 * and after DEVICE_REMOVED it fills exactly those numbers with eventfds nobody else holds,
 * passed with QMP getfd (QEMU takes the lowest free number for each), closing again the ones
 * that landed elsewhere. They are never signalled, so the stale handlers never run, and no
 * other fd can take their numbers. Where brokerd may not look into QEMU's fds (kcmp of another
 * user's process is CAP_SYS_PTRACE), it fills by count instead: as many placeholders as the
 * device held fds, all kept, which take the numbers the unplug freed (the device's fds took the
 * lowest free numbers when it was plugged). Until the fill, brokerd's servers send that QEMU
 * nothing (every region's connection of the domain paused: new peers' eventfds would take the
 * freed numbers, and be rung), and nothing is plugged into the domain (libvirt_stale_settle()).
 * Under KVM (irqfds, no fd handlers) nothing is done.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <libvirt/libvirt-qemu.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "backend/ivshmem-server.h"
#include "backend/libvirt-internal.h"
#include "backend/libvirt-xml.h"
#include "util/atomic-file.h"
#include "util/crashpoint.h"
#include "util/log.h"
#include "util/macro.h"
#include "util/names.h"
#include "util/pidfd.h"

#ifndef KCMP_FILE
#define KCMP_FILE 0
#endif
/* Unplugs waiting for DEVICE_REMOVED with numbers to fill; more are not noted (logged). */
#define LIBVIRT_MAX_STALE 1024
/*
 * getfd calls per fill: the noted numbers plus every free number below them (earlier unplugs
 * leave holes: a device's other fds), bounded by QEMU's usual fd limit.
 */
#define FILL_ATTEMPTS_MAX 1024

struct lv_stale {
        uint64_t region;
        char domain[NAME_MAX_LEN + 1];
        int pidfd;
        int numbers[IVSHMEM_VECTORS_MAX];
        unsigned n;
        size_t by_count; /* 0: fill numbers[]; else fill this many, blindly */
};

/*
 * A note is also a file, "<ivshmem dir>/stale-<region>-<domain>", so that a restart between the
 * unplug request and the fill still fills: "brokerd-stale 1", "pid <QEMU's pid>", then
 * "count <n>" or "numbers <n>...". Written by rename; read back at start for the QEMUs that
 * still run under the same pid (any other note is void and removed).
 */
#define NOTE_MAGIC "brokerd-stale 1"
/* A placeholder's name in QEMU's monitor: region, fill, index. */
#define PLACEHOLDER_NAME "brokerd-stale-%" PRIu64 "-%016" PRIx64 "-%u"

static int note_path(struct backend_libvirt *l, uint64_t region, const char *domain, char *buf, size_t n) {
        int k = snprintf(buf, n, "%s/stale-%" PRIu64 "-%s", l->ivshmem_dir, region, domain);
        return k < 0 || (size_t) k >= n ? -ENAMETOOLONG : 0;
}

struct note_text {
        const struct lv_stale *s;
        pid_t pid;
};

static int note_fill(FILE *f, const void *userdata) {
        const struct note_text *w = userdata;

        fprintf(f, NOTE_MAGIC "\npid %d\n", (int) w->pid);
        if (w->s->by_count)
                fprintf(f, "count %zu\n", w->s->by_count);
        else {
                fprintf(f, "numbers");
                for (unsigned i = 0; i < w->s->n; i++)
                        fprintf(f, " %d", w->s->numbers[i]);
                fprintf(f, "\n");
        }
        return 0;
}

static int note_save(struct backend_libvirt *l, const struct lv_stale *s, pid_t pid) {
        char path[PATH_MAX];
        int k;

        k = note_path(l, s->region, s->domain, path, sizeof(path));
        if (k < 0)
                return k;
        return atomic_file_write(path, 0600, note_fill, &(struct note_text) { .s = s, .pid = pid });
}

/* 1: the same open file; 0: not; -EPERM: not ours to look at (another user's, without CAP_SYS_PTRACE). */
static int same_file(pid_t pid, int their_fd, int our_fd) {
        long k = syscall(SYS_kcmp, getpid(), pid, KCMP_FILE, (unsigned long) our_fd, (unsigned long) their_fd);

        if (k < 0)
                return errno == EPERM || errno == EACCES ? -EPERM : 0;
        return k == 0;
}

/* The fd number in pid that is our_fd's open file, or -ENOENT. */
static int find_in_process(pid_t pid, int our_fd) {
        char path[64];
        struct dirent *de;
        DIR *d;
        int found = -ENOENT, k;

        snprintf(path, sizeof(path), "/proc/%d/fd", (int) pid);
        d = opendir(path);
        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                char *end;
                long n = strtol(de->d_name, &end, 10);

                if (*end || end == de->d_name || n < 0 || n > INT32_MAX)
                        continue;
                k = same_file(pid, (int) n, our_fd);
                if (k != 0) {
                        found = k > 0 ? (int) n : k;
                        break;
                }
        }
        closedir(d);
        return found;
}

int libvirt_stale_note(struct backend_libvirt *l, uint64_t region, const char *domain, const int *eventfds,
                       unsigned n, size_t device_fds) {
        _cleanup_(closep) int pidfd = -EBADF;
        struct lv_stale *s, *grown;
        pid_t pid;
        int k;

        if (n > IVSHMEM_VECTORS_MAX || (n == 0 && device_fds == 0))
                return -EINVAL;
        /*
         * Noted already: an unplug asked again (a restart's reconciliation after a kill). The
         * note of the first request holds the numbers; a second one would fill them twice.
         */
        for (size_t i = 0; i < l->n_stale; i++)
                if (l->stale[i].region == region && strcmp(l->stale[i].domain, domain) == 0)
                        return 0;
        if (l->n_stale >= LIBVIRT_MAX_STALE)
                return -E2BIG;
        k = libvirt_qemu_pidfd(domain, &pidfd);
        if (k >= 0)
                k = pidfd_pid(pidfd, &pid);
        if (k < 0)
                return k;
        grown = reallocarray(l->stale, l->n_stale + 1, sizeof(*grown));
        if (!grown)
                return -ENOMEM;
        l->stale = grown;
        s = &l->stale[l->n_stale];
        *s = (struct lv_stale) { .region = region, .pidfd = -EBADF };
        snprintf(s->domain, sizeof(s->domain), "%s", domain);
        /* No eventfds to look for: by count from the start. */
        if (n == 0)
                s->by_count = device_fds < FILL_ATTEMPTS_MAX ? device_fds : FILL_ATTEMPTS_MAX;
        for (unsigned v = 0; v < n && !s->by_count; v++) {
                k = find_in_process(pid, eventfds[v]);
                /* Not ours to look at (kcmp and /proc of QEMU's user are CAP_SYS_PTRACE): by count. */
                if (k == -EPERM || k == -EACCES)
                        s->by_count = device_fds < FILL_ATTEMPTS_MAX ? device_fds : FILL_ATTEMPTS_MAX;
                else if (k >= 0)
                        s->numbers[s->n++] = k;
        }
        if (s->n == 0 && !s->by_count)
                return 0; /* QEMU holds none of them (never got them, or they are gone already) */
        k = note_save(l, s, pid);
        if (k < 0)
                log_warning("libvirt: cannot record %s's stale doorbell fds of region %" PRIu64
                            " (%s): a restart before its unplug completes forgets them",
                            domain, region, strerror(-k));
        s->pidfd = TAKE_FD(pidfd);
        l->n_stale++;
        libvirt_bells_pause_domain(l, domain, true);
        return 0;
}

static bool domain_has_notes(struct backend_libvirt *l, const char *domain) {
        for (size_t i = 0; i < l->n_stale; i++)
                if (strcmp(l->stale[i].domain, domain) == 0)
                        return true;
        return false;
}

static void stale_drop(struct backend_libvirt *l, size_t i) {
        char path[PATH_MAX], domain[NAME_MAX_LEN + 1];

        if (note_path(l, l->stale[i].region, l->stale[i].domain, path, sizeof(path)) >= 0)
                (void) unlink(path);
        if (l->stale[i].pidfd >= 0)
                close(l->stale[i].pidfd);
        memcpy(domain, l->stale[i].domain, sizeof(domain));
        l->stale[i] = l->stale[--l->n_stale];
        if (!domain_has_notes(l, domain))
                libvirt_bells_pause_domain(l, domain, false);
}

void libvirt_stale_pause_all(struct backend_libvirt *l) {
        for (size_t i = 0; i < l->n_stale; i++)
                libvirt_bells_pause_domain(l, l->stale[i].domain, true);
}

static int qmp(virDomainPtr d, const char *cmd, int fd) {
        char *reply = NULL;
        int k;

        k = virDomainQemuMonitorCommandWithFiles(d, cmd, fd >= 0 ? 1 : 0, fd >= 0 ? &fd : NULL, NULL, NULL, &reply, 0);
        if (k >= 0 && reply && strstr(reply, "\"error\""))
                k = -1;
        free(reply);
        return k < 0 ? -EIO : 0;
}

/*
 * A new eventfd handed to d's QEMU under a name no other fill uses: QEMU's getfd replaces (and
 * closes) an fd of the same name, and the names of a fill cut short by a kill live on in
 * libvirt's monitor. Ours (to close) in *ret.
 */
static int give_placeholder(virDomainPtr d, uint64_t region, uint64_t fill, unsigned index, int *ret) {
        _cleanup_(closep) int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        char cmd[192];
        int k;

        if (efd < 0)
                return negative_errno();
        snprintf(cmd, sizeof(cmd),
                 "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"" PLACEHOLDER_NAME "\"}}", region,
                 fill, index);
        k = qmp(d, cmd, efd);
        if (k < 0)
                return k;
        crashpoint("stale-filling");
        *ret = TAKE_FD(efd);
        return 0;
}

static uint64_t fill_nonce(void) {
        uint64_t v = 0;

        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
                v = (uint64_t) time(NULL) << 20 ^ (uint64_t) getpid();
        return v;
}

/* Hands d's QEMU n placeholders, all kept: the lowest free numbers, those the unplug freed. */
static int stale_fill_by_count(virDomainPtr d, const struct lv_stale *s, size_t n) {
        uint64_t fill = fill_nonce();

        for (unsigned t = 0; t < n; t++) {
                int efd, k = give_placeholder(d, s->region, fill, t, &efd);

                if (k < 0)
                        return k;
                close(efd); /* nobody else holds it: never signalled */
        }
        return 0;
}

/* What QEMU's fd number n is ("anon_inode:[eventfd]", "socket:[...]"), or -ENOENT when free. */
static int fd_holder(pid_t pid, int n, char *buf, size_t size) {
        char path[64];
        ssize_t len;

        snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int) pid, n);
        len = readlink(path, buf, size - 1);
        if (len < 0)
                return negative_errno();
        buf[len] = 0;
        return 0;
}

/*
 * The noted numbers still free, to fill; the others are held already. An eventfd there is a
 * placeholder of a fill that a kill cut short (or, rarely, an eventfd QEMU opened since, which
 * nobody signals through the stale handler's device); anything else is logged: its handler may run.
 */
static unsigned free_numbers(const struct lv_stale *s, pid_t pid, bool *filled) {
        unsigned left = 0;

        for (unsigned i = 0; i < s->n; i++) {
                char holder[128];
                int k = fd_holder(pid, s->numbers[i], holder, sizeof(holder));

                if (k == -ENOENT) {
                        left++;
                        continue;
                }
                filled[i] = true;
                if (k >= 0 && strcmp(holder, "anon_inode:[eventfd]") != 0)
                        log_error("libvirt: fd %d of %s's QEMU, a stale doorbell fd number of region %" PRIu64
                                  ", holds %s already: its stale handler may run on it: restart the domain",
                                  s->numbers[i], s->domain, s->region, holder);
        }
        return left;
}

/* Fills s's free noted numbers in d's QEMU; 0 when every one holds a placeholder or was held. */
static int stale_fill(virDomainPtr d, const struct lv_stale *s, pid_t pid) {
        bool filled[IVSHMEM_VECTORS_MAX] = {};
        _cleanup_(xfreep) bool *keep = calloc(FILL_ATTEMPTS_MAX, sizeof(*keep));
        uint64_t fill = fill_nonce();
        unsigned left, tries = 0;
        char cmd[192];
        int k = 0;

        if (!keep)
                return -ENOMEM;
        left = free_numbers(s, pid, filled);
        for (; left > 0 && tries < FILL_ATTEMPTS_MAX && k >= 0; tries++) {
                int efd = -EBADF, at, highest = -1;

                k = give_placeholder(d, s->region, fill, tries, &efd);
                at = k >= 0 ? find_in_process(pid, efd) : -ENOENT;
                if (efd >= 0)
                        close(efd);
                for (unsigned i = 0; i < s->n && at >= 0; i++) {
                        if (s->numbers[i] == at && !filled[i]) {
                                filled[i] = keep[tries] = true;
                                left--;
                        }
                        if (!filled[i] && s->numbers[i] > highest)
                                highest = s->numbers[i];
                }
                /* QEMU takes the lowest free number: above them all, they were taken meanwhile. */
                if (at > highest && left > 0) {
                        tries++;
                        break;
                }
        }
        /* The placeholders that landed below the noted numbers go again. */
        for (unsigned t = 0; t < tries; t++)
                if (!keep[t]) {
                        snprintf(cmd, sizeof(cmd),
                                 "{\"execute\":\"closefd\",\"arguments\":{\"fdname\":\"" PLACEHOLDER_NAME "\"}}",
                                 s->region, fill, t);
                        (void) qmp(d, cmd, -1);
                }
        return left == 0 ? 0 : k < 0 ? k : -EAGAIN;
}

/*
 * A QMP command that failed while the guest was being destroyed: its monitor's socket closes
 * (EIO) as QEMU exits, a moment before its pidfd turns readable. Waits that moment out (only
 * on this error path) so that a QEMU that is going is not reported as one that keeps a stale
 * handler.
 */
static bool qemu_exiting(int pidfd) {
        struct pollfd p = { .fd = pidfd, .events = POLLIN };

        return poll(&p, 1, 200) > 0;
}

void libvirt_stale_fill(struct backend_libvirt *l, uint64_t region, const char *domain) {
        for (size_t i = 0; i < l->n_stale; i++) {
                struct lv_stale *s = &l->stale[i];
                virDomainPtr d;
                pid_t pid;
                int k;

                if (s->region != region || strcmp(s->domain, domain) != 0)
                        continue;
                k = pidfd_pid(s->pidfd, &pid);
                d = k >= 0 && l->conn ? virDomainLookupByName(l->conn, domain) : NULL;
                k = !d ? -ESRCH : s->by_count ? stale_fill_by_count(d, s, s->by_count) : stale_fill(d, s, pid);
                if (d)
                        virDomainFree(d);
                if (k < 0 && k != -ESRCH && qemu_exiting(s->pidfd))
                        k = -ESRCH;
                if (k == -ESRCH)
                        ; /* its QEMU is gone: nothing left to protect */
                else if (k < 0)
                        log_error("libvirt: %s's QEMU keeps a stale doorbell handler of region %" PRIu64
                                  " (fd numbers taken by something else, or QMP failed: %s); it may spin or "
                                  "crash: restart the domain",
                                  domain, region, strerror(-k));
                else if (s->by_count)
                        log_info("libvirt: %s: %zu placeholder fds given for region %" PRIu64 "'s stale doorbell "
                                 "fd numbers (by count)", domain, s->by_count, region);
                else
                        log_info("libvirt: %s: %u stale doorbell fd number(s) of region %" PRIu64 " filled",
                                 domain, s->n, region);
                stale_drop(l, i);
                return;
        }
}

void libvirt_stale_forget_domain(struct backend_libvirt *l, const char *domain) {
        for (size_t i = 0; i < l->n_stale;)
                if (strcmp(l->stale[i].domain, domain) == 0)
                        stale_drop(l, i);
                else
                        i++;
}

/* brokerd goes away: the notes stay on disk for the next start. */
void libvirt_stale_free(struct backend_libvirt *l) {
        for (size_t i = 0; i < l->n_stale; i++)
                if (l->stale[i].pidfd >= 0)
                        close(l->stale[i].pidfd);
        free(l->stale);
        l->stale = NULL;
        l->n_stale = 0;
}

int libvirt_stale_settle(struct backend_libvirt *l, virDomainPtr d, const char *domain) {
        uint64_t due[LIBVIRT_MAX_STALE];
        size_t n_due = 0;
        bool busy = false;
        char *xml = NULL;

        for (size_t i = 0; i < l->n_stale; i++) {
                if (strcmp(l->stale[i].domain, domain) != 0)
                        continue;
                if (!xml) {
                        xml = virDomainGetXMLDesc(d, 0);
                        if (!xml)
                                return -EIO;
                }
                if (libvirt_xml_has_region(xml, l->stale[i].region))
                        busy = true; /* its unplug is still on its way: its fds are not freed yet */
                else
                        due[n_due++] = l->stale[i].region;
        }
        free(xml);
        /* Gone already (the event is late, or came while brokerd was down): fill now. */
        for (size_t i = 0; i < n_due; i++)
                libvirt_stale_fill(l, due[i], domain);
        return busy ? -EBUSY : 0;
}

/* One note file back into memory, for a QEMU that still runs under the pid it names. */
static int note_load(struct backend_libvirt *l, const char *file) {
        _cleanup_(closep) int pidfd = -EBADF;
        _cleanup_(fclosep) FILE *f = NULL;
        struct lv_stale s = { .pidfd = -EBADF };
        char path[PATH_MAX], line[256], *end;
        const char *p;
        int pid = 0, k;
        pid_t now;

        s.region = strtoull(file + strlen("stale-"), &end, 10);
        if (*end != '-' || !name_is_valid(end + 1) || strlen(end + 1) > NAME_MAX_LEN)
                return -EBADMSG;
        snprintf(s.domain, sizeof(s.domain), "%s", end + 1);
        snprintf(path, sizeof(path), "%s/%s", l->ivshmem_dir, file);
        f = fopen(path, "re");
        if (!f)
                return negative_errno();
        if (!fgets(line, sizeof(line), f) || strcmp(line, NOTE_MAGIC "\n") != 0 || !fgets(line, sizeof(line), f) ||
            sscanf(line, "pid %d", &pid) != 1 || !fgets(line, sizeof(line), f))
                return -EBADMSG;
        if (sscanf(line, "count %zu", &s.by_count) == 1) {
                if (s.by_count == 0 || s.by_count > FILL_ATTEMPTS_MAX)
                        return -EBADMSG;
        } else if (strncmp(line, "numbers", 7) == 0) {
                for (p = line + 7; s.n < IVSHMEM_VECTORS_MAX; s.n++) {
                        long v = strtol(p, &end, 10);
                        if (end == p)
                                break;
                        if (v < 0 || v > INT32_MAX)
                                return -EBADMSG;
                        s.numbers[s.n] = (int) v;
                        p = end;
                }
                if (s.n == 0)
                        return -EBADMSG;
        } else
                return -EBADMSG;
        /* The domain's QEMU of then, or nothing to protect (a new QEMU has none of those handlers). */
        k = libvirt_qemu_pidfd(s.domain, &pidfd);
        if (k < 0 || pidfd_pid(pidfd, &now) < 0 || now != pid)
                return -ESRCH;
        if (l->n_stale >= LIBVIRT_MAX_STALE)
                return -E2BIG;
        struct lv_stale *grown = reallocarray(l->stale, l->n_stale + 1, sizeof(*grown));
        if (!grown)
                return -ENOMEM;
        l->stale = grown;
        s.pidfd = TAKE_FD(pidfd);
        l->stale[l->n_stale++] = s;
        return 0;
}

void libvirt_stale_load(struct backend_libvirt *l) {
        char domains[LIBVIRT_MAX_STALE][NAME_MAX_LEN + 1];
        size_t n_domains = 0;
        struct dirent *de;
        DIR *dir = opendir(l->ivshmem_dir);

        if (!dir)
                return;
        while ((de = readdir(dir))) {
                char path[PATH_MAX];
                int k;

                if (strncmp(de->d_name, "stale-", 6) != 0 || strstr(de->d_name, ".tmp"))
                        continue;
                k = note_load(l, de->d_name);
                if (k >= 0) {
                        if (n_domains < LIBVIRT_MAX_STALE)
                                snprintf(domains[n_domains++], sizeof(domains[0]), "%s", l->stale[l->n_stale - 1].domain);
                        continue;
                }
                if (k != -ESRCH)
                        log_warning("libvirt: ignoring %s/%s: %s", l->ivshmem_dir, de->d_name, strerror(-k));
                snprintf(path, sizeof(path), "%s/%s", l->ivshmem_dir, de->d_name);
                (void) unlink(path);
        }
        closedir(dir);
        /* Unplugs that completed while brokerd was down are filled now; the others on their event. */
        for (size_t i = 0; i < n_domains && l->conn; i++) {
                virDomainPtr d = virDomainLookupByName(l->conn, domains[i]);

                if (d) {
                        (void) libvirt_stale_settle(l, d, domains[i]);
                        virDomainFree(d);
                }
        }
}
