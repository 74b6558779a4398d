/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The host-process backend: a region is real memory that host processes map from an fd.
 * memfd pools: one memfd per region, sealed against grow and shrink (and against further
 * sealing). A memfd lives as long as someone holds it: with an fd store (backend.h) create()
 * keeps each one there as "region-<id>-<pool>" (the pool's characters FDNAME lacks as '_')
 * and destroy() drops it, so restore() takes it back after a restart; it refuses (and drops)
 * one that is not this region's memfd (its name), not ours, not read-write, of another size
 * or sealed otherwise. Without a store, or with nothing handed back, restore() returns -ENOENT.
 * shm/hugetlbfs pools: one file per region, "<path>/brokerd-<pool>-<id>", mode 0600,
 * created exclusively; durable, so restore() reopens it (checking its size).
 * map() returns a new fd: read-write peers share the region's open file; read-only peers
 * get a fresh O_RDONLY open of it, which the kernel refuses to mmap writable, and the
 * memory's inode is mode 0600 so a peer cannot reopen it writable through /proc.
 * unmap() completes at once: host processes drop their own mappings. scrub() punches the
 * whole range out (later faults read zeros), which also cuts off a forcibly revoked peer
 * that still has the memory mapped.
 */
#include "backend/backend.h"

int backend_memfd_new(struct backend **ret);
/* The same, keeping memfds in store (NULL: nowhere); *store is copied. */
int backend_memfd_new_with_store(const struct backend_fd_store *store, struct backend **ret);
