/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The host-process backend: a region is real memory that host processes map from an fd.
 * memfd pools: one memfd per region, sealed against grow and shrink (and against further
 * sealing); not durable across a restart of the daemon, so restore() returns -ENOENT.
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
