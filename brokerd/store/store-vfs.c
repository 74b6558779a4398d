/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A thin VFS over sqlite's default one that writes each commit's WAL frames with one system
 * call. sqlite writes a WAL frame as two writes (its 24-byte header, then the page), so a
 * commit of five pages costs ten pwrite calls; on a paravirtualized VM, where a system call
 * costs microseconds, that was the largest share of a grant step's time
 * (docs/bench-control-plane.md, "Where a grant step's time goes").
 *
 * Frames appended to the WAL are kept in memory and written together when the commit frame's
 * page arrives: when that xWrite returns, every frame of the commit is in the kernel, as
 * before, so a commit's durability and its failure (the write's error is the commit's) are
 * sqlite's own. Anything else done to the WAL (a read, a sync, a size, a truncation, a write
 * that is not an append, closing it) writes what is kept first, so sqlite never sees the file
 * differ from what it wrote. The main database and every other file go straight to the
 * default VFS.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "store/store-internal.h"

/*
 * Frames kept before they are written anyway (a big transaction, a migration, spills): below
 * 128 KiB, because the default VFS writes at most 0x1ffff bytes with one call.
 */
#define WAL_KEEP_MAX (96 * 1024)
#define WAL_FRAME_HEADER 24

struct wal_file {
        sqlite3_file base;
        sqlite3_file *real;
        unsigned char *kept;
        size_t kept_len, kept_size;
        sqlite3_int64 kept_offset;
        /* The last write kept was a commit frame's header: its page ends the commit. */
        bool commit_header;
};

static sqlite3_vfs store_vfs;
static sqlite3_vfs *default_vfs;
static int register_rc = SQLITE_ERROR;
static pthread_once_t register_once = PTHREAD_ONCE_INIT;

static int wal_write_kept(struct wal_file *f) {
        int rc;

        if (f->kept_len == 0)
                return SQLITE_OK;
        rc = f->real->pMethods->xWrite(f->real, f->kept, (int) f->kept_len, f->kept_offset);
        /* Written or not, it is sqlite's now: after an error it rewrites from its last commit. */
        f->kept_len = 0;
        f->commit_header = false;
        return rc;
}

static bool frame_header_commits(const void *buf, int amt) {
        const unsigned char *h = buf;

        /* The header's second word is the database size after a commit frame, 0 otherwise. */
        return amt == WAL_FRAME_HEADER && (h[4] | h[5] | h[6] | h[7]) != 0;
}

static int wal_keep(struct wal_file *f, const void *buf, int amt, sqlite3_int64 offset) {
        size_t need = f->kept_len + (size_t) amt;

        if (need > f->kept_size) {
                size_t size = f->kept_size ? f->kept_size : 16384;
                unsigned char *p;

                while (size < need)
                        size *= 2;
                p = realloc(f->kept, size);
                if (!p)
                        return SQLITE_IOERR_NOMEM;
                f->kept = p;
                f->kept_size = size;
        }
        if (f->kept_len == 0)
                f->kept_offset = offset;
        memcpy(f->kept + f->kept_len, buf, (size_t) amt);
        f->kept_len = need;
        return SQLITE_OK;
}

static int wal_xwrite(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 offset) {
        struct wal_file *f = (struct wal_file *) file;
        bool appends = f->kept_len == 0 || offset == f->kept_offset + (sqlite3_int64) f->kept_len;
        bool ends_commit = f->commit_header;
        int rc;

        if (!appends || amt <= 0 || f->kept_len + (size_t) amt > WAL_KEEP_MAX) {
                rc = wal_write_kept(f);
                if (rc != SQLITE_OK)
                        return rc;
                return f->real->pMethods->xWrite(f->real, buf, amt, offset);
        }
        rc = wal_keep(f, buf, amt, offset);
        if (rc != SQLITE_OK) {
                (void) wal_write_kept(f);
                return rc;
        }
        f->commit_header = frame_header_commits(buf, amt);
        return ends_commit ? wal_write_kept(f) : SQLITE_OK;
}

static int wal_xread(sqlite3_file *file, void *buf, int amt, sqlite3_int64 offset) {
        struct wal_file *f = (struct wal_file *) file;
        int rc = wal_write_kept(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, buf, amt, offset);
}

static int wal_xtruncate(sqlite3_file *file, sqlite3_int64 size) {
        struct wal_file *f = (struct wal_file *) file;
        int rc = wal_write_kept(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int wal_xsync(sqlite3_file *file, int flags) {
        struct wal_file *f = (struct wal_file *) file;
        int rc = wal_write_kept(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int wal_xfilesize(sqlite3_file *file, sqlite3_int64 *size) {
        struct wal_file *f = (struct wal_file *) file;
        int rc = wal_write_kept(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int wal_xclose(sqlite3_file *file) {
        struct wal_file *f = (struct wal_file *) file;
        int rc = wal_write_kept(f), rc_close;

        rc_close = f->real->pMethods->xClose(f->real);
        free(f->kept);
        f->kept = NULL;
        f->kept_size = 0;
        return rc != SQLITE_OK ? rc : rc_close;
}

static int wal_xlock(sqlite3_file *file, int lock) {
        struct wal_file *f = (struct wal_file *) file;

        return f->real->pMethods->xLock(f->real, lock);
}

static int wal_xunlock(sqlite3_file *file, int lock) {
        struct wal_file *f = (struct wal_file *) file;

        return f->real->pMethods->xUnlock(f->real, lock);
}

static int wal_xcheck_reserved_lock(sqlite3_file *file, int *out) {
        struct wal_file *f = (struct wal_file *) file;

        return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int wal_xfile_control(sqlite3_file *file, int op, void *arg) {
        struct wal_file *f = (struct wal_file *) file;
        int rc = wal_write_kept(f);

        return rc != SQLITE_OK ? rc : f->real->pMethods->xFileControl(f->real, op, arg);
}

static int wal_xsector_size(sqlite3_file *file) {
        struct wal_file *f = (struct wal_file *) file;

        return f->real->pMethods->xSectorSize(f->real);
}

static int wal_xdevice_characteristics(sqlite3_file *file) {
        struct wal_file *f = (struct wal_file *) file;

        return f->real->pMethods->xDeviceCharacteristics(f->real);
}

/* Version 1: the WAL file is never memory-mapped nor given shared memory. */
static const sqlite3_io_methods wal_methods = {
        .iVersion = 1,
        .xClose = wal_xclose,
        .xRead = wal_xread,
        .xWrite = wal_xwrite,
        .xTruncate = wal_xtruncate,
        .xSync = wal_xsync,
        .xFileSize = wal_xfilesize,
        .xLock = wal_xlock,
        .xUnlock = wal_xunlock,
        .xCheckReservedLock = wal_xcheck_reserved_lock,
        .xFileControl = wal_xfile_control,
        .xSectorSize = wal_xsector_size,
        .xDeviceCharacteristics = wal_xdevice_characteristics,
};

static int store_vfs_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
                          int *out_flags) {
        struct wal_file *f = (struct wal_file *) file;
        int rc;

        (void) vfs;
        /* Everything but a WAL is the default VFS's file, in the room sqlite gave us. */
        if (!(flags & SQLITE_OPEN_WAL))
                return default_vfs->xOpen(default_vfs, name, file, flags, out_flags);

        *f = (struct wal_file) { .real = (sqlite3_file *) (f + 1) };
        rc = default_vfs->xOpen(default_vfs, name, f->real, flags, out_flags);
        if (rc != SQLITE_OK) {
                /* sqlite calls xClose only when pMethods is set: the default VFS's own cleanup. */
                if (f->real->pMethods)
                        f->real->pMethods->xClose(f->real);
                f->base.pMethods = NULL;
                return rc;
        }
        f->base.pMethods = &wal_methods;
        return SQLITE_OK;
}

#define FORWARD(method, ...) default_vfs->method(default_vfs, __VA_ARGS__)
static int vfs_delete(sqlite3_vfs *v, const char *n, int s) { (void) v; return FORWARD(xDelete, n, s); }
static int vfs_access(sqlite3_vfs *v, const char *n, int f, int *o) { (void) v; return FORWARD(xAccess, n, f, o); }
static int vfs_full_pathname(sqlite3_vfs *v, const char *n, int l, char *o) {
        (void) v;
        return FORWARD(xFullPathname, n, l, o);
}
static void *vfs_dlopen(sqlite3_vfs *v, const char *n) { (void) v; return FORWARD(xDlOpen, n); }
static void vfs_dlerror(sqlite3_vfs *v, int l, char *o) { (void) v; FORWARD(xDlError, l, o); }
static void (*vfs_dlsym(sqlite3_vfs *v, void *h, const char *s))(void) { (void) v; return FORWARD(xDlSym, h, s); }
static void vfs_dlclose(sqlite3_vfs *v, void *h) { (void) v; FORWARD(xDlClose, h); }
static int vfs_randomness(sqlite3_vfs *v, int l, char *o) { (void) v; return FORWARD(xRandomness, l, o); }
static int vfs_sleep(sqlite3_vfs *v, int us) { (void) v; return FORWARD(xSleep, us); }
static int vfs_current_time(sqlite3_vfs *v, double *o) { (void) v; return FORWARD(xCurrentTime, o); }
static int vfs_last_error(sqlite3_vfs *v, int l, char *o) { (void) v; return FORWARD(xGetLastError, l, o); }
static int vfs_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *o) {
        (void) v;
        return FORWARD(xCurrentTimeInt64, o);
}
#undef FORWARD

static void store_vfs_register(void) {
        default_vfs = sqlite3_vfs_find(NULL);
        /* Version 2 is enough: the default VFS's system call table is not ours to move. */
        if (!default_vfs || default_vfs->iVersion < 2)
                return;
        store_vfs = (sqlite3_vfs) {
                .iVersion = 2,
                .szOsFile = (int) sizeof(struct wal_file) + default_vfs->szOsFile,
                .mxPathname = default_vfs->mxPathname,
                .zName = STORE_VFS_NAME,
                .xOpen = store_vfs_open,
                .xDelete = vfs_delete,
                .xAccess = vfs_access,
                .xFullPathname = vfs_full_pathname,
                .xDlOpen = vfs_dlopen,
                .xDlError = vfs_dlerror,
                .xDlSym = vfs_dlsym,
                .xDlClose = vfs_dlclose,
                .xRandomness = vfs_randomness,
                .xSleep = vfs_sleep,
                .xCurrentTime = vfs_current_time,
                .xGetLastError = vfs_last_error,
                .xCurrentTimeInt64 = vfs_current_time_int64,
        };
        register_rc = sqlite3_vfs_register(&store_vfs, 0);
}

int store_vfs_init(void) {
        if (pthread_once(&register_once, store_vfs_register) != 0)
                return -EINVAL;
        return register_rc == SQLITE_OK ? 0 : -ENOSYS;
}
