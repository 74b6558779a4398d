/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
#pragma once
/*
 * The interface of ivshmem_doorbell.ko (ivshmem_doorbell.c), shared by the driver and guest tools.
 *
 * Each ivshmem-doorbell device (PCI 1af4:1110 with MSI-X) gets /dev/ivshmem-doorbell<N>:
 *   mmap          BAR2, the shared memory, mapped cacheable (offset 0 .. size)
 *   IVDB_INFO     the device's own peer id (IVPosition), its MSI-X vectors, BAR2's size
 *   IVDB_WAIT_FD  an fd with eventfd read semantics for one vector: readable once that vector's
 *                 interrupt fired since the fd was made or last read; an 8-byte read returns the
 *                 count of interrupts and resets it (EAGAIN when none: the fd is non-blocking)
 *   IVDB_RING_FD  an fd for (peer, vector): every write of 8 bytes writes (peer << 16) | vector to
 *                 the Doorbell register, i.e. raises that vector's interrupt in that peer
 * Interrupts coalesce: count events in shared memory, treat a wake-up as "look again".
 * After the device is removed every fd answers -ENODEV (wait fds poll as EPOLLERR | EPOLLHUP)
 * and BAR2 mappings are torn down (SIGBUS on access).
 */
#include <linux/ioctl.h>
#include <linux/types.h>

struct ivdb_info {
        __u32 ivposition; /* own peer id, as the ivshmem server assigned it */
        __u32 vectors;    /* MSI-X vectors of the device */
        __u64 shm_size;   /* bytes of BAR2 */
};

struct ivdb_ring {
        __u16 peer;
        __u16 vector;
        __u32 reserved; /* 0 */
};

#define IVDB_IOC_MAGIC 0xb7
#define IVDB_INFO _IOR(IVDB_IOC_MAGIC, 0x00, struct ivdb_info)
/* Returns a new fd (O_NONBLOCK | O_CLOEXEC) for the vector the argument points at. */
#define IVDB_WAIT_FD _IOW(IVDB_IOC_MAGIC, 0x01, __u32)
/* Returns a new fd (O_NONBLOCK | O_CLOEXEC). */
#define IVDB_RING_FD _IOW(IVDB_IOC_MAGIC, 0x02, struct ivdb_ring)
