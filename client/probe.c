/* SPDX-License-Identifier: Apache-2.0 */
#include "probe.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "platform/platform.h"
#include "util/diag.h"
#include "util/macro.h"
#include "util/names.h"
#include "util/num.h"

/* A sysfs attribute is at most a page; this leaves room and still bounds a strange file. */
#define ATTR_MAX (64u * 1024)
/* /proc/iomem of a large machine is some hundred KiB. */
#define IOMEM_MAX (4u * 1024 * 1024)
/* More entries than any real directory here has (memory blocks of a 64 TiB host at 128MiB). */
#define DIR_MAX_ENTRIES (1u << 20)
#define NUMA_NODE_MAX 1023
#define DMA_BITS_MIN 12
#define DMA_BITS_MAX 64
#define TYPE_MAX 32

struct range {
        uint64_t base, end; /* [base, end) */
        uint32_t node;      /* banks only */
        char *name;         /* may be NULL */
};

struct range_list {
        struct range *items;
        size_t n, cap;
};

struct node {
        uint32_t id;
        bool memtotal_ok;
        uint64_t memtotal_kb;
        size_t blocks;
        uint64_t block_bytes;
};

struct block_node {
        uint64_t block;
        uint32_t node;
};

/* One line of an IOMMU group's reserved_regions: [base, last], inclusive as the kernel shows it. */
struct hole {
        uint64_t base, last;
        char type[TYPE_MAX];
};

struct iommu_group {
        char *id;
        bool known; /* reserved_regions was read */
        struct hole *holes;
        size_t n_holes, cap;
};

struct group_member {
        char *device;
        size_t group;
};

struct probe {
        char *root; /* prefixed to every path; "" for "/" */
        FILE *report;

        /* NUMA nodes: nodes_known when the node directory was listed, or is absent (numa = false). */
        bool nodes_known, numa;
        struct node *nodes;
        size_t n_nodes, nodes_cap;
        struct block_node *block_nodes; /* sorted by block once nodes are read */
        size_t n_block_nodes, block_nodes_cap;

        /* /proc/iomem: ram holds its System RAM ranges, sorted and merged, when iomem_ok. */
        bool iomem_ok;
        struct range_list ram;

        struct range_list banks, reserved;

        /* IOMMU groups: groups_known when listed (or absent: no IOMMU). members_complete when
         * every group's device list was read, so a device in none is in none. */
        bool groups_known, members_complete;
        struct iommu_group *groups;
        size_t n_groups, groups_cap;
        struct group_member *members;
        size_t n_members, members_cap;
};

_printf_(2, 3) static void note(const struct probe *p, const char *fmt, ...) {
        va_list ap;

        if (!p->report)
                return;
        fputs("probe: ", p->report);
        va_start(ap, fmt);
        vfprintf(p->report, fmt, ap);
        va_end(ap);
        fputc('\n', p->report);
}

/* Makes room for need items in *items (an array of size-byte items with capacity *cap). */
static int grow(void *items, size_t *cap, size_t need, size_t size) {
        void **p = items;
        size_t ncap;
        void *n;

        if (need <= *cap)
                return 0;
        ncap = *cap > 0 ? *cap * 2 : 16;
        if (ncap < need)
                ncap = need;
        n = reallocarray(*p, ncap, size);
        if (!n)
                return -ENOMEM;
        *p = n;
        *cap = ncap;
        return 0;
}

static void range_list_clear(struct range_list *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->items[i].name);
        free(l->items);
        *l = (struct range_list) {};
}

/* Takes name (may be NULL), also on failure. */
static int range_list_add(struct range_list *l, uint64_t base, uint64_t end, uint32_t node, char *name) {
        if (grow(&l->items, &l->cap, l->n + 1, sizeof(*l->items)) < 0) {
                free(name);
                return -ENOMEM;
        }
        l->items[l->n++] = (struct range) { .base = base, .end = end, .node = node, .name = name };
        return 0;
}

static int range_compare(const void *a, const void *b) {
        const struct range *x = a, *y = b;

        if (x->base != y->base)
                return x->base < y->base ? -1 : 1;
        return x->end < y->end ? -1 : x->end > y->end;
}

static void probe_done(struct probe *p) {
        free(p->root);
        free(p->nodes);
        free(p->block_nodes);
        range_list_clear(&p->ram);
        range_list_clear(&p->banks);
        range_list_clear(&p->reserved);
        for (size_t i = 0; i < p->n_groups; i++) {
                free(p->groups[i].id);
                free(p->groups[i].holes);
        }
        free(p->groups);
        for (size_t i = 0; i < p->n_members; i++)
                free(p->members[i].device);
        free(p->members);
}

_printf_(2, 3) static char *probe_path(const struct probe *p, const char *fmt, ...) {
        char *rel = NULL, *s = NULL;
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&rel, fmt, ap);
        va_end(ap);
        if (r < 0)
                return NULL;
        if (asprintf(&s, "%s%s", p->root, rel) < 0)
                s = NULL;
        free(rel);
        return s;
}

/* The whole file as a string; -EFBIG beyond max bytes, -EBADMSG if it holds a NUL byte. */
static int read_file(const char *path, size_t max, char **ret) {
        _cleanup_(closep) int fd = -EBADF;
        _cleanup_(xfreep) char *buf = NULL;
        size_t len = 0, cap = 4096;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n;

                if (len == cap) {
                        size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
                        char *nbuf;

                        if (ncap <= cap)
                                return -EFBIG;
                        nbuf = realloc(buf, ncap + 1);
                        if (!nbuf)
                                return -ENOMEM;
                        buf = nbuf;
                        cap = ncap;
                }
                n = read(fd, buf + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        if (len > max)
                return -EFBIG;
        if (memchr(buf, 0, len))
                return -EBADMSG;
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        return 0;
}

/* A one-value attribute, without its trailing newline. */
static int read_attr(const char *path, char **ret) {
        char *s = NULL;
        size_t n;
        int r;

        r = read_file(path, ATTR_MAX, &s);
        if (r < 0)
                return r;
        n = strlen(s);
        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t'))
                s[--n] = '\0';
        *ret = s;
        return 0;
}

static int parse_hex(const char *s, size_t len, uint64_t *ret) {
        uint64_t v = 0;

        if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
                s += 2;
                len -= 2;
        }
        if (len == 0)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];
                unsigned d;

                if (c >= '0' && c <= '9')
                        d = (unsigned) (c - '0');
                else if (c >= 'a' && c <= 'f')
                        d = (unsigned) (c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        d = (unsigned) (c - 'A' + 10);
                else
                        return -EINVAL;
                if (v >> 60)
                        return -ERANGE;
                v = v << 4 | d;
        }
        *ret = v;
        return 0;
}

static int parse_dec(const char *s, size_t len, uint64_t *ret) {
        uint64_t v = 0;

        if (len == 0)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t) (s[i] - '0'), &v))
                        return -ERANGE;
        }
        *ret = v;
        return 0;
}

/*
 * A number attribute; on failure the reason is noted and a negative errno returned, except
 * for a missing file when quiet_missing (the caller says it better).
 */
static int read_number(const struct probe *p, const char *path, bool hex, bool quiet_missing, uint64_t *ret) {
        _cleanup_(xfreep) char *s = NULL;
        int r;

        r = read_attr(path, &s);
        if (r == -ENOMEM)
                return r;
        if (r >= 0) {
                r = hex ? parse_hex(s, strlen(s), ret) : parse_dec(s, strlen(s), ret);
                if (r < 0) {
                        note(p, "%s: not a %s number", path, hex ? "hexadecimal" : "decimal");
                        return r;
                }
                return 0;
        }
        if (!(quiet_missing && r == -ENOENT))
                note(p, "%s: %s", path, strerror(-r));
        return r;
}

/* name is prefix, decimal digits, suffix; the number goes to *ret. */
static bool match_number(const char *name, const char *prefix, const char *suffix, uint64_t *ret) {
        size_t lp = strlen(prefix), ls = strlen(suffix), n = strlen(name);

        if (n <= lp + ls || strncmp(name, prefix, lp) != 0 || strcmp(name + n - ls, suffix) != 0)
                return false;
        return parse_dec(name + lp, n - lp - ls, ret) >= 0;
}

struct entries {
        char **names;
        size_t n, cap;
};

static void entries_clear(struct entries *e) {
        for (size_t i = 0; i < e->n; i++)
                free(e->names[i]);
        free(e->names);
        *e = (struct entries) {};
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

static int name_compare(const void *a, const void *b) {
        return strverscmp(*(char *const *) a, *(char *const *) b);
}

/*
 * The entries of a directory in natural order ("memory2" before "memory10"): with a prefix,
 * those named prefix<number>suffix; without, all but the dot files.
 */
static int list_dir(const char *path, const char *prefix, const char *suffix, struct entries *ret) {
        _cleanup_(entries_clear) struct entries e = {};
        _cleanup_(closedirp) DIR *d = NULL;

        d = opendir(path);
        if (!d)
                return negative_errno();
        for (;;) {
                struct dirent *de;
                uint64_t number;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return negative_errno();
                        break;
                }
                if (prefix ? !match_number(de->d_name, prefix, suffix, &number) : de->d_name[0] == '.')
                        continue;
                if (e.n >= DIR_MAX_ENTRIES)
                        return -E2BIG;
                if (grow(&e.names, &e.cap, e.n + 1, sizeof(*e.names)) < 0)
                        return -ENOMEM;
                e.names[e.n] = strdup(de->d_name);
                if (!e.names[e.n])
                        return -ENOMEM;
                e.n++;
        }
        if (e.n > 1)
                qsort(e.names, e.n, sizeof(*e.names), name_compare);
        *ret = e;
        e = (struct entries) {};
        return 0;
}

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
        r = read_file(path, ATTR_MAX, &text);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                note(p, "%s: %s", path, strerror(-r));
                return 0;
        }
        /* "Node 0 MemTotal:       16318256 kB" */
        s = strstr(text, "MemTotal:");
        if (s) {
                size_t len;

                s += strlen("MemTotal:");
                s += strspn(s, " \t");
                len = strspn(s, "0123456789");
                n->memtotal_ok = parse_dec(s, len, &n->memtotal_kb) >= 0;
        }
        if (!n->memtotal_ok)
                note(p, "%s: no MemTotal line", path);
        return 0;
}

/* The NUMA nodes, their MemTotal and which memory blocks each holds. */
static int probe_nodes(struct probe *p) {
        static const char dir[] = "/sys/devices/system/node";
        _cleanup_(xfreep) char *path = probe_path(p, "%s", dir);
        _cleanup_(entries_clear) struct entries nodes = {};
        int r;

        if (!path)
                return -ENOMEM;
        r = list_dir(path, "node", "", &nodes);
        if (r == -ENOMEM)
                return r;
        if (r == -ENOENT) {
                /* A kernel built without NUMA has no node directory: all memory is node 0. */
                note(p, "%s: absent: a kernel without NUMA, all memory is on node 0", path);
                if (grow(&p->nodes, &p->nodes_cap, 1, sizeof(*p->nodes)) < 0)
                        return -ENOMEM;
                p->nodes[p->n_nodes++] = (struct node) { .id = 0 };
                p->nodes_known = true;
                return 0;
        }
        if (r < 0) {
                note(p, "%s: %s: the NUMA node of the memory is unknown", path, strerror(-r));
                return 0;
        }
        p->nodes_known = p->numa = true;

        for (size_t i = 0; i < nodes.n; i++) {
                _cleanup_(xfreep) char *node_dir = NULL, *node_path = NULL;
                _cleanup_(entries_clear) struct entries blocks = {};
                uint64_t id;
                struct node *n;

                if (!match_number(nodes.names[i], "node", "", &id) || id > NUMA_NODE_MAX) {
                        note(p, "%s/%s: not a NUMA node number Linux uses (0..%d): left out", path, nodes.names[i],
                             NUMA_NODE_MAX);
                        continue;
                }
                if (grow(&p->nodes, &p->nodes_cap, p->n_nodes + 1, sizeof(*p->nodes)) < 0)
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
                r = list_dir(node_path, "memory", "", &blocks);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        /* Its blocks will be in no node, and left out as such. */
                        note(p, "%s: %s: the memory blocks of node %" PRIu64 " are unknown", node_path, strerror(-r),
                             id);
                        continue;
                }
                for (size_t k = 0; k < blocks.n; k++) {
                        uint64_t block;

                        match_number(blocks.names[k], "memory", "", &block);
                        if (grow(&p->block_nodes, &p->block_nodes_cap, p->n_block_nodes + 1,
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

/* RAM banks from the memory blocks, each node's contiguous blocks merged. None if unreadable. */
static int probe_blocks(struct probe *p) {
        static const char dir[] = "/sys/devices/system/memory";
        _cleanup_(xfreep) char *path = probe_path(p, "%s", dir), *bs_path = NULL;
        _cleanup_(entries_clear) struct entries names = {};
        _cleanup_(xfreep) struct block *blocks = NULL;
        size_t n = 0, offline = 0;
        uint64_t bs;
        int r;

        if (!path)
                return -ENOMEM;
        bs_path = probe_path(p, "%s/block_size_bytes", dir);
        if (!bs_path)
                return -ENOMEM;
        r = read_number(p, bs_path, true, false, &bs);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return 0;
        if (!num_is_pow2(bs) || bs < PLATFORM_MIN_GRANULE) {
                note(p, "%s: block size 0x%" PRIx64 " is not a power of two of at least 4KiB", bs_path, bs);
                return 0;
        }
        if (!p->nodes_known) {
                note(p, "%s: the NUMA node of each block is unknown", path);
                return 0;
        }

        r = list_dir(path, "memory", "", &names);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                note(p, "%s: %s", path, strerror(-r));
                return 0;
        }
        if (names.n == 0) {
                note(p, "%s: no memory blocks", path);
                return 0;
        }
        blocks = calloc(names.n, sizeof(*blocks));
        if (!blocks)
                return -ENOMEM;

        for (size_t i = 0; i < names.n; i++) {
                _cleanup_(xfreep) char *index_path = NULL, *state_path = NULL, *state = NULL;
                uint64_t id, index, end;
                uint32_t node;

                match_number(names.names[i], "memory", "", &id);
                index_path = probe_path(p, "%s/%s/phys_index", dir, names.names[i]);
                state_path = probe_path(p, "%s/%s/state", dir, names.names[i]);
                if (!index_path || !state_path)
                        return -ENOMEM;
                r = read_number(p, index_path, true, false, &index);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        note(p, "%s/%s: left out", path, names.names[i]);
                        continue;
                }
                if (__builtin_mul_overflow(index, bs, &end) || __builtin_add_overflow(end, bs, &end)) {
                        note(p, "%s: block 0x%" PRIx64 " of 0x%" PRIx64 " bytes lies beyond 2^64: left out", index_path,
                             index, bs);
                        continue;
                }
                r = block_node(p, id, &node);
                if (r == -ENOENT) {
                        note(p, "%s/%s: listed under no NUMA node: left out", path, names.names[i]);
                        continue;
                }
                if (r < 0) {
                        note(p, "%s/%s: listed under more than one NUMA node: left out", path, names.names[i]);
                        continue;
                }
                /* Offline memory is still RAM the hypervisor owns; the kernel just does not use it. */
                r = read_attr(state_path, &state);
                if (r == -ENOMEM)
                        return r;
                if (r >= 0 && strcmp(state, "offline") == 0)
                        offline++;
                blocks[n++] = (struct block) { .index = index, .node = node };
        }
        if (n > 1)
                qsort(blocks, n, sizeof(*blocks), block_compare);

        for (size_t i = 0; i < n;) {
                size_t j = i + 1;
                struct node *nd;

                while (j < n && blocks[j].node == blocks[i].node && blocks[j].index == blocks[j - 1].index + 1)
                        j++;
                if (range_list_add(&p->banks, blocks[i].index * bs, (blocks[j - 1].index + 1) * bs, blocks[i].node,
                                   NULL) < 0)
                        return -ENOMEM;
                nd = find_node(p, blocks[i].node);
                if (nd) {
                        nd->blocks += j - i;
                        nd->block_bytes += (j - i) * bs;
                }
                i = j;
        }
        if (offline > 0)
                note(p, "%zu memory block%s offline: listed in memory, but the kernel does not use %s", offline,
                     offline == 1 ? " is" : "s are", offline == 1 ? "it" : "them");
        return 0;
}

/* The System RAM ranges of /proc/iomem, when it shows real addresses. */
static int probe_iomem(struct probe *p) {
        _cleanup_(xfreep) char *path = probe_path(p, "/proc/iomem"), *text = NULL;
        size_t lines = 0, malformed = 0, m = 0;
        bool any_address = false;
        char *line, *next;
        int r;

        if (!path)
                return -ENOMEM;
        r = read_file(path, IOMEM_MAX, &text);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                note(p, "%s: %s", path, strerror(-r));
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
                if (!dash || !colon || dash > colon || parse_hex(line, (size_t) (dash - line), &base) < 0 ||
                    parse_hex(dash + 1, (size_t) (colon - dash - 1), &last) < 0 || last < base) {
                        malformed++;
                        continue;
                }
                any_address = any_address || last != 0;
                if (strncmp(colon + 3, "System RAM", strlen("System RAM")) != 0)
                        continue;
                len = last == UINT64_MAX ? UINT64_MAX - base : last - base + 1;
                if (len == 0)
                        continue;
                if (range_list_add(&p->ram, base, base + len, 0, NULL) < 0)
                        return -ENOMEM;
        }
        if (malformed > 0)
                note(p, "%s: %zu malformed line%s ignored", path, malformed, malformed == 1 ? "" : "s");
        if (lines == 0 || !any_address) {
                note(p, "%s: %s", path,
                     lines == 0 ? "empty" : "addresses hidden (shown as zero to users without CAP_SYS_ADMIN)");
                range_list_clear(&p->ram);
                return 0;
        }

        if (p->ram.n > 1)
                qsort(p->ram.items, p->ram.n, sizeof(*p->ram.items), range_compare);
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
static int banks_from_iomem(struct probe *p) {
        uint64_t total = 0;
        char buf[NUM_FMT_MAX];

        if (!p->iomem_ok)
                return 0;
        if (p->ram.n == 0) {
                note(p, "/proc/iomem: no System RAM ranges");
                return 0;
        }
        if (!p->nodes_known || p->n_nodes != 1) {
                note(p, "/proc/iomem does not say which NUMA node a System RAM range is on, and this host has %s: "
                        "its System RAM is left out",
                     p->nodes_known ? "several nodes" : "unknown nodes");
                return 0;
        }
        for (size_t i = 0; i < p->ram.n; i++) {
                if (range_list_add(&p->banks, p->ram.items[i].base, p->ram.items[i].end, p->nodes[0].id, NULL) < 0)
                        return -ENOMEM;
                total += p->ram.items[i].end - p->ram.items[i].base;
        }
        note(p, "memory from the System RAM of /proc/iomem instead: %s in %zu range%s on node %" PRIu32,
             num_format_size(total, buf), p->ram.n, p->ram.n == 1 ? "" : "s", p->nodes[0].id);
        return 0;
}

/* The parts of the banks that iomem does not call System RAM: firmware, ROM, holes. */
static int reserve_non_ram(struct probe *p) {
        if (!p->iomem_ok || p->ram.n == 0) {
                note(p, "the memory blocks may hold firmware and ROM ranges, and /proc/iomem cannot tell where: "
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
                                    range_list_add(&p->reserved, cur, ram->base, 0, name) < 0)
                                        return -ENOMEM;
                        }
                        cur = ram->end;
                }
                if (cur < end) {
                        char *name = NULL;
                        if (asprintf(&name, "not-ram-0x%" PRIx64, cur) < 0 ||
                            range_list_add(&p->reserved, cur, end, 0, name) < 0)
                                return -ENOMEM;
                }
        }
        return 0;
}

static void report_nodes(const struct probe *p, bool from_blocks) {
        for (size_t i = 0; i < p->n_nodes; i++) {
                const struct node *n = &p->nodes[i];
                char total[32] = "unknown", buf[NUM_FMT_MAX];

                if (n->memtotal_ok)
                        snprintf(total, sizeof(total), "%" PRIu64 " kB", n->memtotal_kb);
                if (!p->numa)
                        continue;
                if (from_blocks)
                        note(p, "node%" PRIu32 ": MemTotal %s; %s in %zu memory block%s", n->id, total,
                             num_format_size(n->block_bytes, buf), n->blocks, n->blocks == 1 ? "" : "s");
                else
                        note(p, "node%" PRIu32 ": MemTotal %s", n->id, total);
        }
}

/* Huge page sizes have no place in the platform format, but decide what hugetlbfs pools can use. */
static int probe_hugepages(const struct probe *p) {
        static const char dir[] = "/sys/kernel/mm/hugepages";
        _cleanup_(xfreep) char *path = probe_path(p, "%s", dir), *line = NULL;
        _cleanup_(entries_clear) struct entries sizes = {};
        _cleanup_(fclosep) FILE *f = NULL;
        size_t line_len = 0;
        int r;

        if (!path)
                return -ENOMEM;
        r = list_dir(path, "hugepages-", "kB", &sizes);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                note(p, "%s: %s: huge page sizes unknown", path, strerror(-r));
                return 0;
        }
        if (sizes.n == 0) {
                note(p, "%s: no huge page sizes", path);
                return 0;
        }

        f = open_memstream(&line, &line_len);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < sizes.n; i++) {
                _cleanup_(xfreep) char *nr_path = NULL, *free_path = NULL;
                uint64_t kb, nr, fr;
                char buf[NUM_FMT_MAX];

                match_number(sizes.names[i], "hugepages-", "kB", &kb);
                nr_path = probe_path(p, "%s/%s/nr_hugepages", dir, sizes.names[i]);
                free_path = probe_path(p, "%s/%s/free_hugepages", dir, sizes.names[i]);
                if (!nr_path || !free_path)
                        return -ENOMEM;
                fprintf(f, "%s%s", i > 0 ? ", " : "",
                        kb <= UINT64_MAX / 1024 ? num_format_size(kb * 1024, buf) : sizes.names[i]);
                r = read_number(p, nr_path, false, false, &nr);
                if (r == -ENOMEM)
                        return r;
                if (r >= 0) {
                        fprintf(f, " (%" PRIu64 " pages", nr);
                        r = read_number(p, free_path, false, false, &fr);
                        if (r == -ENOMEM)
                                return r;
                        if (r >= 0)
                                fprintf(f, ", %" PRIu64 " free", fr);
                        fputc(')', f);
                }
        }
        if (fflush(f) != 0)
                return -ENOMEM;
        note(p, "huge page sizes: %s (not part of the platform format: a hugetlbfs pool's granule is at least 2MiB "
                "and its directory a hugetlbfs mount of one of these sizes)",
             line);
        return 0;
}

static int member_compare(const void *a, const void *b) {
        const struct group_member *x = a, *y = b;

        return strcmp(x->device, y->device);
}

static const struct iommu_group *device_group(const struct probe *p, const char *device) {
        struct group_member key = { .device = (char *) device }, *m;

        if (p->n_members == 0)
                return NULL;
        m = bsearch(&key, p->members, p->n_members, sizeof(*p->members), member_compare);
        return m ? &p->groups[m->group] : NULL;
}

static bool type_is_direct(const char *type) {
        return strcmp(type, "direct") == 0 || strcmp(type, "direct-relaxable") == 0;
}

/* "0x00000000fee00000 0x00000000feefffff msi" per line: base, last address, type. */
static int parse_reserved_regions(const struct probe *p, const char *path, char *text, struct iommu_group *g) {
        char *line, *next;

        for (line = text; line && *line; line = next) {
                char *tok[4] = {}, *save = NULL;
                size_t n = 0;
                struct hole h = {};

                next = strchr(line, '\n');
                if (next)
                        *next++ = '\0';
                for (char *t = strtok_r(line, " \t", &save); t && n < ELEMENTSOF(tok); t = strtok_r(NULL, " \t", &save))
                        tok[n++] = t;
                if (n == 0)
                        continue;
                if (n != 3 || parse_hex(tok[0], strlen(tok[0]), &h.base) < 0 ||
                    parse_hex(tok[1], strlen(tok[1]), &h.last) < 0 || h.last < h.base || strlen(tok[2]) >= TYPE_MAX ||
                    strspn(tok[2], "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(tok[2])) {
                        note(p, "%s: malformed line: the devices of group %s are left out", path, g->id);
                        return -EINVAL;
                }
                strcpy(h.type, tok[2]);
                if (grow(&g->holes, &g->cap, g->n_holes + 1, sizeof(*g->holes)) < 0)
                        return -ENOMEM;
                g->holes[g->n_holes++] = h;
        }
        return 0;
}

/* Direct regions are memory the device DMAs to (for the firmware): no pool may hold it. */
static int reserve_direct(struct probe *p, const struct hole *h) {
        uint64_t end = h->last == UINT64_MAX ? UINT64_MAX : h->last + 1;
        char *name = NULL;

        if (end <= h->base)
                return 0;
        for (size_t i = 0; i < p->reserved.n; i++) {
                struct range *r = &p->reserved.items[i];

                /* Groups sharing an RMRR list it each; one entry is enough. */
                if (r->base == h->base && r->name && strncmp(r->name, "iommu-", 6) == 0) {
                        if (end > r->end)
                                r->end = end;
                        return 0;
                }
        }
        if (asprintf(&name, "iommu-direct-0x%" PRIx64, h->base) < 0)
                return -ENOMEM;
        return range_list_add(&p->reserved, h->base, end, 0, name);
}

static int probe_iommu(struct probe *p) {
        static const char dir[] = "/sys/kernel/iommu_groups";
        _cleanup_(xfreep) char *path = probe_path(p, "%s", dir);
        _cleanup_(entries_clear) struct entries ids = {};
        int r;

        if (!path)
                return -ENOMEM;
        r = list_dir(path, "", "", &ids);
        if (r == -ENOMEM)
                return r;
        if (r == -ENOENT || (r >= 0 && ids.n == 0)) {
                note(p, "%s: %s: no IOMMU translates DMA, so no device has reserved windows", path,
                     r < 0 ? "absent" : "no groups");
                p->groups_known = p->members_complete = true;
                return 0;
        }
        if (r < 0) {
                note(p, "%s: %s: IOMMU groups unknown", path, strerror(-r));
                return 0;
        }
        p->groups_known = p->members_complete = true;

        for (size_t i = 0; i < ids.n; i++) {
                _cleanup_(xfreep) char *regions_path = NULL, *devices_path = NULL, *text = NULL;
                _cleanup_(entries_clear) struct entries devices = {};
                struct iommu_group *g;

                if (grow(&p->groups, &p->groups_cap, p->n_groups + 1, sizeof(*p->groups)) < 0)
                        return -ENOMEM;
                g = &p->groups[p->n_groups];
                *g = (struct iommu_group) { .id = strdup(ids.names[i]) };
                if (!g->id)
                        return -ENOMEM;
                p->n_groups++;

                regions_path = probe_path(p, "%s/%s/reserved_regions", dir, ids.names[i]);
                devices_path = probe_path(p, "%s/%s/devices", dir, ids.names[i]);
                if (!regions_path || !devices_path)
                        return -ENOMEM;

                r = read_file(regions_path, ATTR_MAX, &text);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        note(p, "%s: %s: the devices of group %s are left out", regions_path, strerror(-r), g->id);
                else {
                        r = parse_reserved_regions(p, regions_path, text, g);
                        if (r == -ENOMEM)
                                return r;
                        g->known = r >= 0;
                        for (size_t k = 0; g->known && k < g->n_holes; k++)
                                if (type_is_direct(g->holes[k].type) && reserve_direct(p, &g->holes[k]) < 0)
                                        return -ENOMEM;
                }

                r = list_dir(devices_path, NULL, NULL, &devices);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        note(p, "%s: %s", devices_path, strerror(-r));
                        p->members_complete = false;
                        continue;
                }
                for (size_t k = 0; k < devices.n; k++) {
                        if (grow(&p->members, &p->members_cap, p->n_members + 1, sizeof(*p->members)) < 0)
                                return -ENOMEM;
                        p->members[p->n_members++] = (struct group_member) {
                                .device = TAKE_PTR(devices.names[k]),
                                .group = p->n_groups - 1,
                        };
                }
        }
        if (p->n_members > 1)
                qsort(p->members, p->n_members, sizeof(*p->members), member_compare);
        if (!p->members_complete)
                note(p, "%s: the device list of some group is unreadable: devices in no known group are left out",
                     path);
        return 0;
}

static int add(json_object *o, const char *key, json_object *v) {
        if (!v || json_object_object_add(o, key, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static int append(json_object *a, json_object *v) {
        if (!v || json_object_array_add(a, v) < 0) {
                json_object_put(v);
                return -ENOMEM;
        }
        return 0;
}

static json_object *range_json(const char *name, uint64_t base, uint64_t end) {
        json_object *o = json_object_new_object();
        char buf[NUM_FMT_MAX];

        if (!o)
                return NULL;
        if ((name && add(o, "name", json_object_new_string(name)) < 0) ||
            add(o, "base", json_object_new_string(num_format_addr(base, buf))) < 0 ||
            add(o, "size", json_object_new_string(num_format_size(end - base, buf))) < 0) {
                json_object_put(o);
                return NULL;
        }
        return o;
}

/* "msi", or "msi+reserved" for overlapping regions of two types. */
static void types_add(char *types, size_t size, const char *type) {
        size_t len = strlen(type);

        for (const char *s = types; *s;) {
                size_t n = strcspn(s, "+");
                if (n == len && strncmp(s, type, len) == 0)
                        return;
                s += n;
                s += *s == '+';
        }
        if (strlen(types) + (types[0] ? 1 : 0) + len < size) {
                if (types[0])
                        strcat(types, "+");
                strcat(types, type);
        }
}

/*
 * The group's holes the device can reach, merged where they overlap, as reserved windows:
 * inside the default window [0, 2^bits) as the loader requires. Returns 0, -E2BIG (more
 * than a device may have), -ENOMEM.
 */
static int device_reserved_windows(const struct iommu_group *g, unsigned bits, json_object **ret) {
        _cleanup_(xfreep) struct hole *h = NULL;
        uint64_t limit = bits == 64 ? UINT64_MAX : UINT64_C(1) << bits;
        json_object *a;
        size_t n = 0;

        *ret = NULL;
        if (!g || g->n_holes == 0)
                return 0;
        h = calloc(g->n_holes, sizeof(*h));
        if (!h)
                return -ENOMEM;
        for (size_t i = 0; i < g->n_holes; i++) {
                if (g->holes[i].base >= limit)
                        continue;
                h[n] = g->holes[i];
                /* last becomes the exclusive end here. */
                h[n].last = g->holes[i].last >= limit - 1 ? limit : g->holes[i].last + 1;
                n++;
        }
        if (n == 0)
                return 0;
        for (size_t i = 1; i < n; i++)
                for (size_t k = i; k > 0 && h[k].base < h[k - 1].base; k--) {
                        struct hole t = h[k];
                        h[k] = h[k - 1];
                        h[k - 1] = t;
                }

        a = json_object_new_array();
        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < n;) {
                char types[96] = "", name[NAME_MAX_LEN + 1];
                uint64_t end = h[i].last;
                size_t j = i;
                json_object *w;

                for (; j < n && (j == i || h[j].base < end); j++) {
                        types_add(types, sizeof(types), h[j].type);
                        if (h[j].last > end)
                                end = h[j].last;
                }
                snprintf(name, sizeof(name), "%s-0x%" PRIx64, types, h[i].base);
                w = range_json(name_is_valid(name) ? name : NULL, h[i].base, end);
                if (append(a, w) < 0) {
                        json_object_put(a);
                        return -ENOMEM;
                }
                i = j;
        }
        if (json_object_array_length(a) > PLATFORM_MAX_WINDOWS) {
                json_object_put(a);
                return -E2BIG;
        }
        *ret = a;
        return 0;
}

static bool driver_sets_no_mask(const char *driver) {
        static const char *const stubs[] = { "vfio-pci", "pci-stub", "uio_pci_generic" };

        if (!driver)
                return true;
        for (size_t i = 0; i < ELEMENTSOF(stubs); i++)
                if (strcmp(driver, stubs[i]) == 0)
                        return true;
        return false;
}

/* The bound driver's name, NULL for none; -errno when the link cannot be read. */
static int device_driver(const char *path, char **ret) {
        char target[4096];
        ssize_t n;
        const char *base;

        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0) {
                if (errno == ENOENT) {
                        *ret = NULL;
                        return 0;
                }
                return negative_errno();
        }
        target[n] = '\0';
        base = strrchr(target, '/');
        *ret = strdup(base ? base + 1 : target);
        return *ret ? 0 : -ENOMEM;
}

/* One PCI function: added to devices, or left out with the reason noted. */
static int probe_device(struct probe *p, const char *dir, const char *name, json_object *devices) {
        _cleanup_(xfreep) char *class_path = NULL, *driver_path = NULL, *mask_path = NULL, *coherent_path = NULL,
                                *driver = NULL;
        json_object *windows = NULL, *d;
        const struct iommu_group *g = NULL;
        uint64_t class, bits, coherent;
        bool driver_known;
        int r;

        class_path = probe_path(p, "%s/%s/class", dir, name);
        driver_path = probe_path(p, "%s/%s/driver", dir, name);
        mask_path = probe_path(p, "%s/%s/dma_mask_bits", dir, name);
        coherent_path = probe_path(p, "%s/%s/consistent_dma_mask_bits", dir, name);
        if (!class_path || !driver_path || !mask_path || !coherent_path)
                return -ENOMEM;

        /* Bridges forward DMA, they do not do it into shared regions. Without a class the
         * device stays: one entry too many is the admin's to delete, one too few a surprise. */
        r = read_number(p, class_path, true, false, &class);
        if (r == -ENOMEM)
                return r;
        if (r >= 0 && (class >> 16) == 0x06)
                return 0;

        r = device_driver(driver_path, &driver);
        if (r == -ENOMEM)
                return r;
        driver_known = r >= 0;
        if (!driver_known)
                note(p, "%s: %s", driver_path, strerror(-r));

        r = read_number(p, mask_path, false, true, &bits);
        if (r == -ENOMEM)
                return r;
        if (r == -ENOENT) {
                note(p, "%s: not exposed by this kernel: device %s left out (its DMA mask is unknown)", mask_path,
                     name);
                return 0;
        }
        if (r < 0) {
                note(p, "device %s left out: its DMA mask is unknown", name);
                return 0;
        }
        if (bits < DMA_BITS_MIN || bits > DMA_BITS_MAX) {
                note(p, "%s: %" PRIu64 " bits, outside %d..%d: device %s left out", mask_path, bits, DMA_BITS_MIN,
                     DMA_BITS_MAX, name);
                return 0;
        }
        /* Until a driver sets it, the mask is the PCI core's 32-bit default, or what an earlier
         * driver left behind, neither of which says what the device reaches. */
        if (driver_known && driver_sets_no_mask(driver))
                note(p, "device %s: %s%s: its %" PRIu64 "-bit DMA mask is the kernel's default or an earlier "
                        "driver's, not necessarily what the device can reach: check it",
                     name, driver ? "bound to " : "no driver bound", driver ?: "", bits);
        r = read_number(p, coherent_path, false, true, &coherent);
        if (r == -ENOMEM)
                return r;
        if (r >= 0 && coherent < bits)
                note(p, "device %s: coherent DMA mask %" PRIu64 " bits, below the %" PRIu64
                        "-bit mask used: coherent buffers must stay lower",
                     name, coherent, bits);

        if (!p->groups_known) {
                note(p, "device %s left out: its IOMMU reserved regions are unknown", name);
                return 0;
        }
        g = device_group(p, name);
        if (!g && !p->members_complete) {
                note(p, "device %s left out: it may be in an IOMMU group whose devices are unknown", name);
                return 0;
        }
        if (g && !g->known) {
                note(p, "device %s left out: the reserved regions of its IOMMU group %s are unknown", name, g->id);
                return 0;
        }
        r = device_reserved_windows(g, (unsigned) bits, &windows);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                note(p, "device %s left out: IOMMU group %s has more than %d reserved regions", name, g->id,
                     PLATFORM_MAX_WINDOWS);
                return 0;
        }

        d = json_object_new_object();
        if (!d) {
                json_object_put(windows);
                return -ENOMEM;
        }
        if (append(devices, d) < 0) {
                json_object_put(windows);
                return -ENOMEM;
        }
        if (add(d, "name", json_object_new_string(name)) < 0 || add(d, "owner", json_object_new_string("host")) < 0 ||
            add(d, "dma_mask_bits", json_object_new_int((int) bits)) < 0) {
                json_object_put(windows);
                return -ENOMEM;
        }
        if (windows && add(d, "reserved_windows", windows) < 0)
                return -ENOMEM;
        return 0;
}

static int probe_devices(struct probe *p, json_object *devices) {
        static const char dir[] = "/sys/bus/pci/devices";
        _cleanup_(xfreep) char *path = probe_path(p, "%s", dir);
        _cleanup_(entries_clear) struct entries names = {};
        int r;

        if (!path)
                return -ENOMEM;
        r = list_dir(path, NULL, NULL, &names);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                note(p, "%s: %s: no devices", path, r == -ENOENT ? "absent" : strerror(-r));
                return 0;
        }
        for (size_t i = 0; i < names.n; i++) {
                if (json_object_array_length(devices) >= PLATFORM_MAX_ENTRIES) {
                        note(p, "more than %d devices: %s and the rest are left out", PLATFORM_MAX_ENTRIES,
                             names.names[i]);
                        break;
                }
                if (!name_is_valid(names.names[i])) {
                        note(p, "%s/%s: not usable as a device name: left out", path, names.names[i]);
                        continue;
                }
                r = probe_device(p, dir, names.names[i], devices);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int build_memory(const struct probe *p, json_object *root) {
        json_object *a = json_object_new_array();

        if (add(root, "memory", a) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < p->banks.n; i++) {
                const struct range *b = &p->banks.items[i];
                char name[32];
                json_object *o;

                snprintf(name, sizeof(name), "bank%zu", i);
                o = range_json(name, b->base, b->end);
                if (append(a, o) < 0 || add(o, "numa_node", json_object_new_int((int) b->node)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

static int build_reserved(const struct probe *p, json_object *root) {
        json_object *a;

        if (p->reserved.n == 0)
                return 0;
        a = json_object_new_array();
        if (add(root, "reserved", a) < 0)
                return -ENOMEM;
        for (size_t i = 0; i < p->reserved.n; i++) {
                const struct range *r = &p->reserved.items[i];
                if (append(a, range_json(r->name, r->base, r->end)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* "devices[3]", and nothing below it. */
static bool is_device_path(const char *path) {
        static const char prefix[] = "devices[";
        size_t digits;

        if (strncmp(path, prefix, strlen(prefix)) != 0)
                return false;
        path += strlen(prefix);
        digits = strspn(path, "0123456789");
        return digits > 0 && strcmp(path + digits, "]") == 0;
}

/* Loads what was built the way the daemon would read it back; errors make it unusable. */
static int self_check(const struct probe *p, json_object *root) {
        _cleanup_(platform_freep) struct platform *platform = NULL;
        struct diag_list diags = DIAG_LIST_INIT;
        size_t unreachable = 0;
        const char *text;
        int r;

        text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        if (!text)
                return -ENOMEM;
        r = platform_load_string(text, &platform, &diags);
        for (size_t i = 0; i < diags.n; i++) {
                const struct diag *d = &diags.items[i];

                /* With no pools, every device warns that it reaches none, at the device's own path;
                 * say that once. */
                if (d->severity == DIAG_WARNING && is_device_path(d->path)) {
                        unreachable++;
                        continue;
                }
                note(p, "%s: %s%s%s", d->severity == DIAG_ERROR ? "error" : "warning", d->path, d->path[0] ? ": " : "",
                     d->message);
        }
        diag_list_clear(&diags);
        if (r < 0) {
                if (r != -ENOMEM)
                        note(p, "the description does not load: not written");
                return r;
        }
        if (unreachable > 0)
                note(p, "%zu device%s can reach no pool until pools are added", unreachable,
                     unreachable == 1 ? "" : "s");
        return 0;
}

int probe_platform(const char *sysfs_root, json_object **ret, FILE *report) {
        _cleanup_(probe_done) struct probe p = { .report = report };
        json_object *root = NULL, *devices;
        bool from_blocks;
        size_t len;
        int r;

        if (!sysfs_root || !*sysfs_root || !ret)
                return -EINVAL;
        len = strlen(sysfs_root);
        while (len > 0 && sysfs_root[len - 1] == '/')
                len--;
        p.root = strndup(sysfs_root, len);
        if (!p.root)
                return -ENOMEM;

        r = probe_nodes(&p);
        if (r >= 0)
                r = probe_iomem(&p);
        if (r >= 0)
                r = probe_blocks(&p);
        if (r < 0)
                return r;
        from_blocks = p.banks.n > 0;
        if (!from_blocks) {
                r = banks_from_iomem(&p);
                if (r < 0)
                        return r;
        }
        if (p.banks.n == 0) {
                note(&p, "no RAM could be read: no description");
                return -ENODATA;
        }
        if (from_blocks && reserve_non_ram(&p) < 0)
                return -ENOMEM;
        report_nodes(&p, from_blocks);
        r = probe_hugepages(&p);
        if (r >= 0)
                r = probe_iommu(&p);
        if (r < 0)
                return r;
        if (p.reserved.n > 1)
                qsort(p.reserved.items, p.reserved.n, sizeof(*p.reserved.items), range_compare);

        root = json_object_new_object();
        if (!root)
                return -ENOMEM;
        devices = json_object_new_array();
        if (build_memory(&p, root) < 0 || build_reserved(&p, root) < 0 ||
            add(root, "pools", json_object_new_array()) < 0 || add(root, "devices", devices) < 0) {
                json_object_put(root);
                return -ENOMEM;
        }
        r = probe_devices(&p, devices);
        if (r >= 0)
                r = self_check(&p, root);
        if (r < 0) {
                json_object_put(root);
                return r;
        }

        note(&p, "%zu memory bank%s, %zu reserved range%s, %zu device%s", p.banks.n, p.banks.n == 1 ? "" : "s",
             p.reserved.n, p.reserved.n == 1 ? "" : "s", json_object_array_length(devices),
             json_object_array_length(devices) == 1 ? "" : "s");
        note(&p, "pools: none, since which memory brokerd may hand out is yours to decide: add pools inside the "
                 "memory banks, clear of the reserved ranges");
        if (json_object_array_length(devices) > 0)
                note(&p, "devices: every owner is \"host\": set each to the hardware domain that drives the device");
        *ret = root;
        return 0;
}
