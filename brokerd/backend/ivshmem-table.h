/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The peer table of an ivshmem server, as a small text file beside its socket: which domain's
 * QEMU holds which id, and the next id to issue. brokerd gives it back to the server it
 * restores after a restart (ivshmem_server_restore()), so that ids are never issued twice while
 * a QEMU may hold them. Format (docs/ivshmem-server.md):
 *   brokerd-ivshmem-peers 1
 *   next <next id, 0..65536>
 *   peer <id> <domain>          one per peer, ids ascending and below next
 * save writes a new file and renames it over the old one (readers see one or the other, never
 * half); load refuses a file that breaks any rule (-EBADMSG) and takes a missing one for an
 * empty table. Both return 0 or -errno, ret untouched on failure; the caller frees ret->peers.
 */
#include <stddef.h>
#include <stdint.h>

#include "util/names.h"

/* Peers per table: the server's connections are bounded by the same number. */
#define IVSHMEM_TABLE_MAX_PEERS 64u

struct ivshmem_table_peer {
        uint16_t id;
        char domain[NAME_MAX_LEN + 1];
};

struct ivshmem_table {
        uint32_t next_id;
        struct ivshmem_table_peer *peers;
        size_t n;
};

int ivshmem_table_save(const char *path, const struct ivshmem_table *t);
int ivshmem_table_load(const char *path, struct ivshmem_table *ret);
