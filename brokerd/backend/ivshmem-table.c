/* SPDX-License-Identifier: Apache-2.0 */
#include "backend/ivshmem-table.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/ivshmem-server.h"
#include "util/atomic-file.h"
#include "util/macro.h"
#include "util/num.h"

#define TABLE_MAGIC "brokerd-ivshmem-peers 1"
/* The longest line: "peer 65535 " and a domain name, with room to see that a line is too long. */
#define TABLE_LINE_MAX (NAME_MAX_LEN + 32)

_Static_assert(IVSHMEM_TABLE_MAX_PEERS <= IVSHMEM_MAX_CONNECTIONS_DEFAULT, "a table holds what a server admits");

static bool table_is_valid(const struct ivshmem_table *t) {
        if (t->next_id > IVSHMEM_ID_LIMIT || t->n > IVSHMEM_TABLE_MAX_PEERS || (t->n > 0 && !t->peers))
                return false;
        for (size_t i = 0; i < t->n; i++)
                if (t->peers[i].id >= t->next_id || !name_is_valid(t->peers[i].domain) ||
                    (i > 0 && t->peers[i].id <= t->peers[i - 1].id))
                        return false;
        return true;
}

static int table_fill(FILE *f, const void *userdata) {
        const struct ivshmem_table *t = userdata;

        fprintf(f, TABLE_MAGIC "\nnext %" PRIu32 "\n", t->next_id);
        for (size_t i = 0; i < t->n; i++)
                fprintf(f, "peer %u %s\n", t->peers[i].id, t->peers[i].domain);
        return 0;
}

int ivshmem_table_save(const char *path, const struct ivshmem_table *t) {
        if (!path || !t || !table_is_valid(t))
                return -EINVAL;
        return atomic_file_write(path, 0600, table_fill, t);
}

/* One line without its newline; -EBADMSG when it is too long or unterminated. */
static int read_line(FILE *f, char *buf, size_t n) {
        size_t len;

        if (!fgets(buf, (int) n, f))
                return ferror(f) ? -EIO : 0;
        len = strlen(buf);
        if (len == 0 || buf[len - 1] != '\n')
                return -EBADMSG;
        buf[len - 1] = 0;
        return 1;
}

static int parse_peer(const char *line, struct ivshmem_table_peer *ret) {
        const char *space;
        char num[8];
        uint64_t id;

        if (strncmp(line, "peer ", 5) != 0)
                return -EBADMSG;
        line += 5;
        space = strchr(line, ' ');
        if (!space || space == line || (size_t) (space - line) >= sizeof(num))
                return -EBADMSG;
        memcpy(num, line, (size_t) (space - line));
        num[space - line] = 0;
        if (num_parse_u64(num, &id) < 0 || id >= IVSHMEM_ID_LIMIT || !name_is_valid(space + 1))
                return -EBADMSG;
        ret->id = (uint16_t) id;
        snprintf(ret->domain, sizeof(ret->domain), "%s", space + 1);
        return 0;
}

int ivshmem_table_load(const char *path, struct ivshmem_table *ret) {
        _cleanup_(xfreep) struct ivshmem_table_peer *peers = NULL;
        _cleanup_(fclosep) FILE *f = NULL;
        struct ivshmem_table t = {};
        char line[TABLE_LINE_MAX];
        uint64_t next;
        int k;

        if (!path || !ret)
                return -EINVAL;
        f = fopen(path, "re");
        if (!f) {
                if (errno != ENOENT)
                        return negative_errno();
                *ret = (struct ivshmem_table) {};
                return 0;
        }
        if (read_line(f, line, sizeof(line)) <= 0 || strcmp(line, TABLE_MAGIC) != 0)
                return -EBADMSG;
        if (read_line(f, line, sizeof(line)) <= 0 || strncmp(line, "next ", 5) != 0 ||
            num_parse_u64(line + 5, &next) < 0 || next > IVSHMEM_ID_LIMIT)
                return -EBADMSG;
        t.next_id = (uint32_t) next;
        peers = calloc(IVSHMEM_TABLE_MAX_PEERS, sizeof(*peers));
        if (!peers)
                return -ENOMEM;
        while ((k = read_line(f, line, sizeof(line))) > 0) {
                if (t.n == IVSHMEM_TABLE_MAX_PEERS || parse_peer(line, &peers[t.n]) < 0)
                        return -EBADMSG;
                t.n++;
        }
        if (k < 0)
                return k;
        t.peers = peers;
        if (!table_is_valid(&t))
                return -EBADMSG;
        t.peers = TAKE_PTR(peers);
        *ret = t;
        return 0;
}
