/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The host-process backend: a region is real memory that host processes map from an fd.
 * memfd pools: one memfd per region, sealed against grow and shrink (and against further
 * sealing), except that a revocable pool's is not sealed against shrink. A memfd lives as long
 * as someone holds it: with an fd store (backend.h) create() keeps each one there as
 * "region-<id>-<pool>" (the pool's characters FDNAME lacks as '_') and destroy() drops it, so
 * restore() takes it back after a restart; it refuses (and drops) one that is not this region's
 * memfd (its name), not ours, not read-write, of another size or sealed otherwise. Without a
 * store, with nothing handed back, or with a revocable memfd a forced revoke truncated (dropped
 * too: its memory is gone), restore() returns -ENOENT.
 * shm/hugetlbfs pools: one file per region, "<path>/brokerd-<pool>-<id>", mode 0600,
 * created exclusively; durable, so restore() reopens it (checking its size).
 * map() returns a new fd: read-write peers share the region's open file; read-only peers
 * get a fresh O_RDONLY open of it, which the kernel refuses to mmap writable, and the
 * memory's inode is mode 0600 so a peer cannot reopen it writable through /proc.
 * unmap() of a holder that gave its mapping up completes at once. A forced one (the holder was
 * revoked) completes only once the holder cannot reach the memory: a revocable region is
 * truncated to zero (every holder gets SIGBUS); otherwise the holder's process (its pidfd) must
 * be gone, stopped, or hold neither an fd nor a mapping of it, and until then unmap returns
 * -EINPROGRESS (the core asks again; nothing reports completion by itself). An unknown process
 * (pidfd -1) is not waited for. escalate() sends SIGSTOP (pause) or SIGKILL (destroy) through the
 * pidfd and waits briefly for it to take effect (1: cut off). scrub() punches the whole range
 * out; it does not cut anyone off: a later write by someone still mapping it populates it again.
 */
#include "backend/backend.h"

int backend_memfd_new(struct backend **ret);
/* The same, keeping memfds in store (NULL: nowhere); *store is copied. */
int backend_memfd_new_with_store(const struct backend_fd_store *store, struct backend **ret);
