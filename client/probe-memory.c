/* SPDX-License-Identifier: Apache-2.0 */
/* RAM as the host shows it: NUMA nodes, memory blocks, /proc/iomem, huge pages. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform/platform.h"
#include "probe-internal.h"
#include "util/json-load.h"
#include "util/num.h"

static int block_node_compare(const void *a, const void *b) {
        const struct block_node *x = a, *y = b;

        if (x->block != y->block)
                return x->block < y->block ? -1 : 1;
        return x->node < y->node ? -1 : x->node > y->node;
}

static int node_memtotal(const struct probe *p, const char *node_dir, struct node *n) {
        _cleanup_(xfreep) char *path = NULL, *text = NULL;
        const char *s;
        int r;

        path = probe_path(p, "%s/meminfo", node_dir);
        if (!path)
                return -ENOMEM;
        r = probe_read_file(path, ATTR_MAX, &text);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                probe_note(p, "%s: %s", path, strerror(-r));
                return 0;
        }
        /* "Node 0 MemTotal:       16318256 kB" */
        s = strstr(text, "MemTotal:");
        if (s) {
                size_t len;

                s += strlen("MemTotal:");
                s += strspn(s, " \t");
                len = strspn(s, "0123456789");
                n->memtotal_ok = probe_parse_dec(s, len, &n->memtotal_kb) >= 0;
        }
        if (!n->memtotal_ok)
                probe_note(p, "%s: no MemTotal line", path);
        return 0;
}

/* The NUMA nodes, their MemTotal and which memory blocks each holds. */
int probe_nodes(struct probe *p) {
        static const char dir[] = "/sys/devices/system/node";
        _cleanup_(xfreep) char *path = probe_path(p, "%s", dir);
        _cleanup_(probe_entries_clear) struct entries nodes = {};
        int r;

        if (!path)
                return -ENOMEM;
        r = probe_list_dir(path, "node", "", &nodes);
        if (r == -ENOMEM)
                return r;
        if (r == -ENOENT) {
                /* A kernel built without NUMA has no node directory: all memory is node 0. */
                probe_note(p, "%s: absent: a kernel without NUMA, all memory is on node 0", path);
                if (probe_grow(&p->nodes, &p->nodes_cap, 1, sizeof(*p->nodes)) < 0)
                        return -ENOMEM;
                p->nodes[p->n_nodes++] = (struct node) { .id = 0 };
                p->nodes_known = true;
                return 0;
        }
        if (r < 0) {
                probe_note(p, "%s: %s: the NUMA node of the memory is unknown", path, strerror(-r));
                return 0;
        }
        p->nodes_known = p->numa = true;

        for (size_t i = 0; i < nodes.n; i++) {
                _cleanup_(xfreep) char *node_dir = NULL, *node_path = NULL;
                _cleanup_(probe_entries_clear) struct entries blocks = {};
                uint64_t id;
                struct node *n;

                if (!probe_match_number(nodes.names[i], "node", "", &id) || id > NUMA_NODE_MAX) {
                        probe_note(p, "%s/%s: not a NUMA node number Linux uses (0..%d): left out", path,
                                   nodes.names[i], NUMA_NODE_MAX);
                        continue;
                }
                if (probe_grow(&p->nodes, &p->nodes_cap, p->n_nodes + 1, sizeof(*p->nodes)) < 0)
                        return -ENOMEM;
                n = &p->nodes[p->n_nodes++];
                *n = (struct node) { .id = (uint32_t) id };

                if (asprintf(&node_dir, "%s/%s", dir, nodes.names[i]) < 0) {
                        node_dir = NULL;
                        return -ENOMEM;
                }
                r = node_memtotal(p, node_dir, n);
                if (r < 0)
                        return r;

                node_path = probe_path(p, "%s", node_dir);
                if (!node_path)
                        return -ENOMEM;
                r = probe_list_dir(node_path, "memory", "", &blocks);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        /* Its blocks will be in no node, and left out as such. */
                        probe_note(p, "%s: %s: the memory blocks of node %" PRIu64 " are unknown", node_path,
                                   strerror(-r), id);
                        continue;
                }
                for (size_t k = 0; k < blocks.n; k++) {
                        uint64_t block;

                        probe_match_number(blocks.names[k], "memory", "", &block);
                        if (probe_grow(&p->block_nodes, &p->block_nodes_cap, p->n_block_nodes + 1,
                                 sizeof(*p->block_nodes)) < 0)
                                return -ENOMEM;
                        p->block_nodes[p->n_block_nodes++] = (struct block_node) { block, (uint32_t) id };
                }
        }
        if (p->n_block_nodes > 1)
                qsort(p->block_nodes, p->n_block_nodes, sizeof(*p->block_nodes), block_node_compare);
        return 0;
}

static struct node *find_node(struct probe *p, uint32_t id) {
        for (size_t i = 0; i < p->n_nodes; i++)
                if (p->nodes[i].id == id)
                        return &p->nodes[i];
        return NULL;
}

/* The node of a memory block: 0 found, -ENOENT in no node, -ENOTUNIQ in two. */
static int block_node(const struct probe *p, uint64_t block, uint32_t *ret) {
        size_t lo = 0, hi = p->n_block_nodes;

        if (!p->numa) {
                *ret = 0;
                return 0;
        }
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (p->block_nodes[mid].block < block)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (lo >= p->n_block_nodes || p->block_nodes[lo].block != block)
                return -ENOENT;
        if (lo + 1 < p->n_block_nodes && p->block_nodes[lo + 1].block == block)
                return -ENOTUNIQ;
        *ret = p->block_nodes[lo].node;
        return 0;
}

struct block {
        uint64_t index;
        uint32_t node;
};

static int block_compare(const void *a, const void *b) {
        const struct block *x = a, *y = b;

        if (x->index != y->index)
                return x->index < y->index ? -1 : 1;
        return x->node < y->node ? -1 : x->node > y->node;
}

/* The memory block size: 1 with *ret set, 0 when unusable (noted), -ENOMEM. */
static int block_size(struct probe *p, const char *dir, uint64_t *ret) {
        _cleanup_(xfreep) char *bs_path = probe_path(p, "%s/block_size_bytes", dir);
        uint64_t bs;
        int r;

        if (!bs_path)
                return -ENOMEM;
        r = probe_read_number(p, bs_path, true, false, &bs);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return 0;
        if (!num_is_pow2(bs) || bs < PLATFORM_MIN_GRANULE) {
                probe_note(p, "%s: block size 0x%" PRIx64 " is not a power of two of at least 4KiB", bs_path, bs);
                return 0;
        }
        *ret = bs;
        return 1;
}

/*
 * One memory block directory into *ret: 1 when read, 0 when left out (noted), -ENOMEM.
 * *offline counts the blocks the kernel does not use.
 */
static int read_block(struct probe *p, const char *dir, const char *name, uint64_t bs, struct block *ret,
                      size_t *offline) {
        _cleanup_(xfreep) char *index_path = NULL, *state_path = NULL, *state = NULL;
        uint64_t id, index, end;
        uint32_t node;
        int r;

        probe_match_number(name, "memory", "", &id);
        index_path = probe_path(p, "%s/%s/phys_index", dir, name);
        state_path = probe_path(p, "%s/%s/state", dir, name);
        if (!index_path || !state_path)
                return -ENOMEM;
        r = probe_read_number(p, index_path, true, false, &index);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                probe_note(p, "%s%s/%s: left out", p->root, dir, name);
                return 0;
        }
        if (__builtin_mul_overflow(index, bs, &end) || __builtin_add_overflow(end, bs, &end)) {
                probe_note(p, "%s: block 0x%" PRIx64 " of 0x%" PRIx64 " bytes lies beyond 2^64: left out", index_path,
                           index, bs);
                return 0;
        }
        r = block_node(p, id, &node);
        if (r < 0) {
                probe_note(p, "%s%s/%s: listed under %s NUMA node: left out", p->root, dir, name,
                           r == -ENOENT ? "no" : "more than one");
                return 0;
        }
        /* Offline memory is still RAM the hypervisor owns; the kernel just does not use it. */
        r = probe_read_attr(state_path, &state);
        if (r == -ENOMEM)
                return r;
        if (r >= 0 && strcmp(state, "offline") == 0)
                (*offline)++;
        *ret = (struct block) { .index = index, .node = node };
        return 1;
}

/* Each node's contiguous blocks (sorted) merged into one bank. */
static int banks_from_blocks(struct probe *p, const struct block *blocks, size_t n, uint64_t bs) {
        for (size_t i = 0; i < n;) {
                size_t j = i + 1;
                struct node *nd;

                while (j < n && blocks[j].node == blocks[i].node && blocks[j].index == blocks[j - 1].index + 1)
                        j++;
                if (probe_range_list_add(&p->banks, blocks[i].index * bs, (blocks[j - 1].index + 1) * bs,
                                         blocks[i].node, NULL) < 0)
                        return -ENOMEM;
                nd = find_node(p, blocks[i].node);
                if (nd) {
                        nd->blocks += j - i;
                        nd->block_bytes += (j - i) * bs;
                }
                i = j;
        }
        return 0;
}

/* RAM banks from the memory blocks, each node's contiguous blocks merged. None if unreadable. */
int probe_blocks(struct probe *p) {
        static const char dir[] = "/sys/devices/system/memory";
        _cleanup_(xfreep) char *path = probe_path(p, "%s", dir);
        _cleanup_(probe_entries_clear) struct entries names = {};
        _cleanup_(xfreep) struct block *blocks = NULL;
        size_t n = 0, offline = 0;
        uint64_t bs;
        int r;

        if (!path)
                return -ENOMEM;
        r = block_size(p, dir, &bs);
        if (r <= 0)
                return r;
        if (!p->nodes_known) {
                probe_note(p, "%s: the NUMA node of each block is unknown", path);
                return 0;
        }

        r = probe_list_dir(path, "memory", "", &names);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                probe_note(p, "%s: %s", path, strerror(-r));
                return 0;
        }
        if (names.n == 0) {
                probe_note(p, "%s: no memory blocks", path);
                return 0;
        }
        blocks = calloc(names.n, sizeof(*blocks));
        if (!blocks)
                return -ENOMEM;
        for (size_t i = 0; i < names.n; i++) {
                r = read_block(p, dir, names.names[i], bs, &blocks[n], &offline);
                if (r < 0)
                        return r;
                n += r;
        }
        if (n > 1)
                qsort(blocks, n, sizeof(*blocks), block_compare);
        if (banks_from_blocks(p, blocks, n, bs) < 0)
                return -ENOMEM;
        if (offline > 0)
                probe_note(p, "%zu memory block%s offline: listed in memory, but the kernel does not use %s", offline,
                           offline == 1 ? " is" : "s are", offline == 1 ? "it" : "them");
        return 0;
}

/* The System RAM ranges of /proc/iomem, when it shows real addresses. */
int probe_iomem(struct probe *p) {
        _cleanup_(xfreep) char *path = probe_path(p, "/proc/iomem"), *text = NULL;
        size_t lines = 0, malformed = 0, m = 0;
        bool any_address = false;
        char *line, *next;
        int r;

        if (!path)
                return -ENOMEM;
        r = probe_read_file(path, IOMEM_MAX, &text);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                probe_note(p, "%s: %s", path, strerror(-r));
                return 0;
        }

        /* "  00100000-bfffffff : System RAM": nesting by indentation, the last address inclusive. */
        for (line = text; line && *line; line = next) {
                uint64_t base, last;
                size_t len;
                char *dash, *colon;

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                line += strspn(line, " ");
                if (!*line)
                        continue;
                lines++;
                dash = strchr(line, '-');
                colon = strstr(line, " : ");
                if (!dash || !colon || dash > colon || probe_parse_hex(line, (size_t) (dash - line), &base) < 0 ||
                    probe_parse_hex(dash + 1, (size_t) (colon - dash - 1), &last) < 0 || last < base) {
                        malformed++;
                        continue;
                }
                any_address = any_address || last != 0;
                if (strncmp(colon + 3, "System RAM", strlen("System RAM")) != 0)
                        continue;
                len = last == UINT64_MAX ? UINT64_MAX - base : last - base + 1;
                if (len == 0)
                        continue;
                if (probe_range_list_add(&p->ram, base, base + len, 0, NULL) < 0)
                        return -ENOMEM;
        }
        if (malformed > 0)
                probe_note(p, "%s: %zu malformed line%s ignored", path, malformed, malformed == 1 ? "" : "s");
        if (lines == 0 || !any_address) {
                probe_note(p, "%s: %s", path,
                           lines == 0 ? "empty" : "addresses hidden (shown as zero to users without CAP_SYS_ADMIN)");
                probe_range_list_clear(&p->ram);
                return 0;
        }

        if (p->ram.n > 1)
                qsort(p->ram.items, p->ram.n, sizeof(*p->ram.items), probe_range_compare);
        for (size_t i = 0; i < p->ram.n; i++) {
                if (m > 0 && p->ram.items[i].base <= p->ram.items[m - 1].end) {
                        if (p->ram.items[i].end > p->ram.items[m - 1].end)
                                p->ram.items[m - 1].end = p->ram.items[i].end;
                } else
                        p->ram.items[m++] = p->ram.items[i];
        }
        p->ram.n = m;
        p->iomem_ok = true;
        return 0;
}

/* Without memory blocks: iomem's System RAM, when one node is all it can be on. */
int banks_from_iomem(struct probe *p) {
        uint64_t total = 0;
        char buf[NUM_FMT_MAX];

        if (!p->iomem_ok)
                return 0;
        if (p->ram.n == 0) {
                probe_note(p, "/proc/iomem: no System RAM ranges");
                return 0;
        }
        if (!p->nodes_known || p->n_nodes != 1) {
                probe_note(p,
                           "/proc/iomem does not say which NUMA node a System RAM range is on, and this host has %s: "
                           "its System RAM is left out",
                           p->nodes_known ? "several nodes" : "unknown nodes");
                return 0;
        }
        for (size_t i = 0; i < p->ram.n; i++) {
                if (probe_range_list_add(&p->banks, p->ram.items[i].base, p->ram.items[i].end, p->nodes[0].id, NULL) <
                    0)
                        return -ENOMEM;
                total += p->ram.items[i].end - p->ram.items[i].base;
        }
        probe_note(p, "memory from the System RAM of /proc/iomem instead: %s in %zu range%s on node %" PRIu32,
                   num_format_size(total, buf), p->ram.n, p->ram.n == 1 ? "" : "s", p->nodes[0].id);
        return 0;
}

/* The parts of the banks that iomem does not call System RAM: firmware, ROM, holes. */
int reserve_non_ram(struct probe *p) {
        if (!p->iomem_ok || p->ram.n == 0) {
                probe_note(p, "the memory blocks may hold firmware and ROM ranges, and /proc/iomem cannot tell where: "
                        "none are listed in reserved; add them before defining pools");
                return 0;
        }
        for (size_t i = 0; i < p->banks.n; i++) {
                uint64_t cur = p->banks.items[i].base, end = p->banks.items[i].end;

                for (size_t k = 0; k < p->ram.n && cur < end; k++) {
                        const struct range *ram = &p->ram.items[k];

                        if (ram->end <= cur)
                                continue;
                        if (ram->base >= end)
                                break;
                        if (ram->base > cur) {
                                char *name = NULL;
                                if (asprintf(&name, "not-ram-0x%" PRIx64, cur) < 0 ||
                                    probe_range_list_add(&p->reserved, cur, ram->base, 0, name) < 0)
                                        return -ENOMEM;
                        }
                        cur = ram->end;
                }
                if (cur < end) {
                        char *name = NULL;
                        if (asprintf(&name, "not-ram-0x%" PRIx64, cur) < 0 ||
                            probe_range_list_add(&p->reserved, cur, end, 0, name) < 0)
                                return -ENOMEM;
                }
        }
        return 0;
}

void report_nodes(const struct probe *p, bool from_blocks) {
        for (size_t i = 0; i < p->n_nodes; i++) {
                const struct node *n = &p->nodes[i];
                char total[32] = "unknown", buf[NUM_FMT_MAX];

                if (n->memtotal_ok)
                        snprintf(total, sizeof(total), "%" PRIu64 " kB", n->memtotal_kb);
                if (!p->numa)
                        continue;
                if (from_blocks)
                        probe_note(p, "node%" PRIu32 ": MemTotal %s; %s in %zu memory block%s", n->id, total,
                                   num_format_size(n->block_bytes, buf), n->blocks, n->blocks == 1 ? "" : "s");
                else
                        probe_note(p, "node%" PRIu32 ": MemTotal %s", n->id, total);
        }
}

/* Huge page sizes have no place in the platform format, but decide what hugetlbfs pools can use. */
int probe_hugepages(const struct probe *p) {
        static const char dir[] = "/sys/kernel/mm/hugepages";
        _cleanup_(xfreep) char *path = probe_path(p, "%s", dir), *line = NULL;
        _cleanup_(probe_entries_clear) struct entries sizes = {};
        _cleanup_(fclosep) FILE *f = NULL;
        size_t line_len = 0;
        int r;

        if (!path)
                return -ENOMEM;
        r = probe_list_dir(path, "hugepages-", "kB", &sizes);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                probe_note(p, "%s: %s: huge page sizes unknown", path, strerror(-r));
                return 0;
        }
        if (sizes.n == 0) {
                probe_note(p, "%s: no huge page sizes", path);
                return 0;
        }

        f = open_memstream(&line, &line_len);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < sizes.n; i++) {
                _cleanup_(xfreep) char *nr_path = NULL, *free_path = NULL;
                uint64_t kb, nr, fr;
                char buf[NUM_FMT_MAX];

                probe_match_number(sizes.names[i], "hugepages-", "kB", &kb);
                nr_path = probe_path(p, "%s/%s/nr_hugepages", dir, sizes.names[i]);
                free_path = probe_path(p, "%s/%s/free_hugepages", dir, sizes.names[i]);
                if (!nr_path || !free_path)
                        return -ENOMEM;
                fprintf(f, "%s%s", i > 0 ? ", " : "",
                        kb <= UINT64_MAX / 1024 ? num_format_size(kb * 1024, buf) : sizes.names[i]);
                r = probe_read_number(p, nr_path, false, false, &nr);
                if (r == -ENOMEM)
                        return r;
                if (r >= 0) {
                        fprintf(f, " (%" PRIu64 " pages", nr);
                        r = probe_read_number(p, free_path, false, false, &fr);
                        if (r == -ENOMEM)
                                return r;
                        if (r >= 0)
                                fprintf(f, ", %" PRIu64 " free", fr);
                        fputc(')', f);
                }
        }
        if (fflush(f) != 0)
                return -ENOMEM;
        probe_note(p,
                   "huge page sizes: %s (not part of the platform format: a hugetlbfs pool's granule is at least 2MiB "
                   "and its directory a hugetlbfs mount of one of these sizes)",
                   line);
        return 0;
}
