/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "placement/rangetree.h"
#include "util/macro.h"

#define TOP UINT64_C(0xfffffffffffff000) /* highest 4KiB-aligned address */

/* ---- invariant checker ---- */

struct agg {
        uint64_t min_base, max_end, bytes, max_gap;
        size_t count;
};

static struct agg check_subtree(const struct range_node *n, const struct range_node *parent, bool has_lo,
                                uint64_t lo, bool has_hi, uint64_t hi) {
        struct agg a = {}, l, r;

        assert_non_null(n);
        assert_true(n->end > n->base);
        if (parent)
                assert_true(n->priority <= parent->priority);
        /* all of the subtree lies in [lo, hi) as set by the ancestors */
        if (has_lo)
                assert_true(n->base >= lo);
        if (has_hi)
                assert_true(n->end <= hi);

        a.min_base = n->base;
        a.max_end = n->end;
        a.bytes = n->end - n->base;
        a.count = 1;
        if (n->left) {
                l = check_subtree(n->left, n, has_lo, lo, true, n->base);
                a.min_base = l.min_base;
                a.bytes += l.bytes;
                a.count += l.count;
                a.max_gap = l.max_gap;
                if (n->base - l.max_end > a.max_gap)
                        a.max_gap = n->base - l.max_end;
        }
        if (n->right) {
                r = check_subtree(n->right, n, true, n->end, has_hi, hi);
                a.max_end = r.max_end;
                a.bytes += r.bytes;
                a.count += r.count;
                if (r.max_gap > a.max_gap)
                        a.max_gap = r.max_gap;
                if (r.min_base - n->end > a.max_gap)
                        a.max_gap = r.min_base - n->end;
        }

        assert_int_equal(n->min_base, a.min_base);
        assert_int_equal(n->max_end, a.max_end);
        assert_int_equal(n->bytes, a.bytes);
        assert_int_equal(n->max_gap, a.max_gap);
        return a;
}

static void check_tree(const struct range_tree *t) {
        if (!t->root) {
                assert_int_equal(t->n, 0);
                return;
        }
        assert_int_equal(check_subtree(t->root, NULL, false, 0, false, 0).count, t->n);
}

/* ---- brute-force model: a sorted array of ranges ---- */

struct model {
        struct { uint64_t base, end; } r[8192];
        size_t n, max_n;
};

static int model_insert(struct model *m, uint64_t base, uint64_t end) {
        size_t i;

        if (end <= base)
                return -EINVAL;
        for (i = 0; i < m->n; i++)
                if (m->r[i].base < end && base < m->r[i].end)
                        return -EEXIST;
        for (i = 0; i < m->n && m->r[i].base < base; i++)
                ;
        assert_true(m->n < ELEMENTSOF(m->r));
        memmove(&m->r[i + 1], &m->r[i], (m->n - i) * sizeof(m->r[0]));
        m->r[i].base = base;
        m->r[i].end = end;
        m->n++;
        if (m->n > m->max_n)
                m->max_n = m->n;
        return 0;
}

static bool model_remove(struct model *m, uint64_t base) {
        for (size_t i = 0; i < m->n; i++)
                if (m->r[i].base == base) {
                        memmove(&m->r[i], &m->r[i + 1], (m->n - i - 1) * sizeof(m->r[0]));
                        m->n--;
                        return true;
                }
        return false;
}

static bool model_overlaps(const struct model *m, uint64_t base, uint64_t end) {
        if (end <= base)
                return false;
        for (size_t i = 0; i < m->n; i++)
                if (m->r[i].base < end && base < m->r[i].end)
                        return true;
        return false;
}

static ssize_t model_find(const struct model *m, uint64_t addr) {
        for (size_t i = 0; i < m->n; i++)
                if (m->r[i].base <= addr && addr < m->r[i].end)
                        return (ssize_t) i;
        return -1;
}

static bool align_up(uint64_t x, uint64_t align, uint64_t *ret) {
        if (x > UINT64_MAX - (align - 1))
                return false;
        *ret = (x + align - 1) & ~(align - 1);
        return true;
}

/* Candidate by candidate: jump past whatever range blocks the current one. */
static int model_first_fit(const struct model *m, uint64_t lo, uint64_t hi, uint64_t size, uint64_t align,
                           uint64_t *ret) {
        uint64_t x;

        if (!align_up(lo, align, &x))
                return -ENOSPC;
        for (;;) {
                bool blocked = false;

                if (x > hi || hi - x < size)
                        return -ENOSPC;
                for (size_t i = 0; i < m->n; i++)
                        if (m->r[i].base < x + size && x < m->r[i].end) {
                                if (!align_up(m->r[i].end, align, &x))
                                        return -ENOSPC;
                                blocked = true;
                                break;
                        }
                if (!blocked) {
                        *ret = x;
                        return 0;
                }
        }
}

static uint64_t model_used(const struct model *m, uint64_t lo, uint64_t hi) {
        uint64_t sum = 0;

        for (size_t i = 0; i < m->n; i++) {
                uint64_t b = m->r[i].base > lo ? m->r[i].base : lo;
                uint64_t e = m->r[i].end < hi ? m->r[i].end : hi;
                if (b < e)
                        sum += e - b;
        }
        return sum;
}

/* ---- randomized differential test ---- */

static uint64_t rnd_state;

static uint64_t rnd(void) {
        rnd_state ^= rnd_state << 13;
        rnd_state ^= rnd_state >> 7;
        rnd_state ^= rnd_state << 17;
        return rnd_state;
}

static uint64_t clamp_add(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

#define DOMAIN (UINT64_C(1) << 16)
#define N_NODES 8192

static void differential(uint64_t off, uint64_t seed, unsigned ops) {
        struct range_tree t;
        struct model *m;
        struct range_node *nodes;
        bool *in_use;
        unsigned n_insert_ok = 0, n_fit_ok = 0, n_fit_fail = 0, n_overlap_hit = 0;

        m = calloc(1, sizeof(*m));
        nodes = calloc(N_NODES, sizeof(*nodes));
        in_use = calloc(N_NODES, sizeof(*in_use));
        assert_non_null(m);
        assert_non_null(nodes);
        assert_non_null(in_use);

        rnd_state = seed;
        range_tree_init(&t);

        for (unsigned op = 0; op < ops; op++) {
                /* alternate phases that grow the tree to thousands of ranges and shrink it */
                bool grow = (op / 3000) % 2 == 0;
                unsigned kind = (unsigned) (rnd() % 100);
                unsigned k_ins = grow ? 45 : 10, k_rem = k_ins + (grow ? 5 : 40);

                if (kind < k_ins) {
                        /* insert: short ranges so the domain gets crowded and collisions happen */
                        uint64_t base = off + rnd() % DOMAIN;
                        uint64_t end = clamp_add(base, 1 + rnd() % 40);
                        size_t slot;
                        int r, rm;

                        if (rnd() % 50 == 0)
                                end = base > off && rnd() % 2 ? base - 1 : base; /* inverted or empty */
                        for (slot = 0; slot < N_NODES && in_use[slot]; slot++)
                                ;
                        assert_true(slot < N_NODES);

                        rm = model_insert(m, base, end);
                        r = range_tree_insert(&t, &nodes[slot], base, end);
                        assert_int_equal(r, rm);
                        if (r == 0) {
                                in_use[slot] = true;
                                n_insert_ok++;
                                assert_int_equal(nodes[slot].base, base);
                                assert_int_equal(nodes[slot].end, end);
                        }
                } else if (kind < k_rem) {
                        /* remove: mostly an existing base, sometimes one that is not there */
                        uint64_t base;
                        struct range_node *got;
                        bool had;

                        if (m->n > 0 && rnd() % 4 != 0)
                                base = m->r[rnd() % m->n].base;
                        else
                                base = off + rnd() % DOMAIN;
                        had = model_remove(m, base);
                        got = range_tree_remove(&t, base);
                        if (had) {
                                assert_non_null(got);
                                assert_int_equal(got->base, base);
                                in_use[got - nodes] = false;
                        } else
                                assert_null(got);
                } else if (kind < k_rem + 10) {
                        uint64_t base = off + rnd() % DOMAIN;
                        uint64_t end = clamp_add(base, rnd() % 200);
                        struct range_node *got = range_tree_find_overlap(&t, base, end);

                        if (model_overlaps(m, base, end)) {
                                assert_non_null(got);
                                assert_true(got->base < end && base < got->end);
                                n_overlap_hit++;
                        } else
                                assert_null(got);
                } else if (kind < k_rem + 15) {
                        uint64_t addr = off + rnd() % DOMAIN;
                        struct range_node *got = range_tree_find(&t, addr);
                        ssize_t i = model_find(m, addr);

                        if (i < 0)
                                assert_null(got);
                        else {
                                assert_non_null(got);
                                assert_int_equal(got->base, m->r[i].base);
                        }
                } else if (kind < k_rem + 40) {
                        uint64_t lo = off + rnd() % DOMAIN;
                        uint64_t hi = rnd() % 8 == 0 ? UINT64_MAX : clamp_add(lo, rnd() % DOMAIN);
                        uint64_t size = 1 + rnd() % (rnd() % 2 ? 48 : 600);
                        uint64_t align = UINT64_C(1) << (rnd() % 11);
                        uint64_t x = 0xdead, xm = 0xbeef;
                        int r, rm;

                        if (rnd() % 16 == 0)
                                align = UINT64_C(1) << (50 + rnd() % 14); /* forces overflow paths */
                        rm = model_first_fit(m, lo, hi, size, align, &xm);
                        r = range_tree_first_fit(&t, lo, hi, size, align, &x);
                        assert_int_equal(r, rm);
                        if (r == 0) {
                                assert_int_equal(x, xm);
                                n_fit_ok++;
                        } else {
                                assert_int_equal(x, 0xdead); /* untouched on failure */
                                n_fit_fail++;
                        }
                } else {
                        uint64_t lo = off + rnd() % DOMAIN;
                        uint64_t hi = rnd() % 8 == 0 ? UINT64_MAX : clamp_add(lo, rnd() % DOMAIN);

                        if (rnd() % 8 == 0)
                                lo = rnd() % 2 ? 0 : hi + 1; /* whole space, or lo > hi */
                        assert_int_equal(range_tree_used(&t, lo, hi), model_used(m, lo, hi));
                }

                assert_int_equal(t.n, m->n);
                check_tree(&t);
        }

        /* the run must have exercised both outcomes of every query */
        assert_true(n_insert_ok > ops / 10);
        assert_true(m->max_n > 500);
        assert_true(n_fit_ok > 0);
        assert_true(n_fit_fail > 0);
        assert_true(n_overlap_hit > 0);

        free(in_use);
        free(nodes);
        free(m);
}

static void test_random_low(void **state) {
        (void) state;
        differential(0, UINT64_C(0x1234567887654321), 12000);
}

static void test_random_mid(void **state) {
        (void) state;
        differential(UINT64_C(0x7ffffffffffff123), UINT64_C(0xfeedface12345678), 12000);
}

static void test_random_top(void **state) {
        (void) state;
        /* ranges end at UINT64_MAX and alignment rounding overflows */
        differential(UINT64_MAX - DOMAIN + 1, UINT64_C(0x0badc0ffee0ddf00), 12000);
}

/* ---- targeted cases ---- */

static void test_insert_adjacent(void **state) {
        struct range_tree t;
        struct range_node a, b, c;

        (void) state;
        range_tree_init(&t);

        assert_int_equal(range_tree_insert(&t, &a, 0x1000, 0x2000), 0);
        /* touching at 0x2000 is not overlapping */
        assert_int_equal(range_tree_insert(&t, &b, 0x2000, 0x3000), 0);
        assert_int_equal(range_tree_insert(&t, &c, 0x0, 0x1000), 0);
        /* one byte into either neighbour is */
        assert_int_equal(range_tree_insert(&t, &c, 0x1fff, 0x2001), -EEXIST);
        assert_int_equal(range_tree_insert(&t, &c, 0x2fff, 0x4000), -EEXIST);
        assert_int_equal(t.n, 3);
        check_tree(&t);

        assert_null(range_tree_find_overlap(&t, 0x3000, 0x4000));
        assert_ptr_equal(range_tree_find_overlap(&t, 0x2fff, 0x3000), &b);
        assert_ptr_equal(range_tree_find_overlap(&t, 0x1800, 0x2800), &b);
        assert_null(range_tree_find_overlap(&t, 0x1800, 0x1800)); /* empty query */

        assert_ptr_equal(range_tree_find(&t, 0x2000), &b);
        assert_ptr_equal(range_tree_find(&t, 0x1fff), &a);
        assert_null(range_tree_find(&t, 0x3000));
}

static void test_insert_empty_range(void **state) {
        struct range_tree t;
        struct range_node a;

        (void) state;
        range_tree_init(&t);
        assert_int_equal(range_tree_insert(&t, &a, 0x1000, 0x1000), -EINVAL);
        assert_int_equal(range_tree_insert(&t, &a, 0x1000, 0xfff), -EINVAL);
        assert_int_equal(t.n, 0);
        assert_int_equal(range_tree_insert(&t, &a, 0x1000, 0x1001), 0);
        assert_int_equal(t.n, 1);
}

static void test_remove(void **state) {
        struct range_tree t;
        struct range_node a, b;

        (void) state;
        range_tree_init(&t);
        assert_int_equal(range_tree_insert(&t, &a, 0x1000, 0x2000), 0);
        assert_int_equal(range_tree_insert(&t, &b, 0x3000, 0x4000), 0);

        /* only an exact base removes */
        assert_null(range_tree_remove(&t, 0x1800));
        assert_int_equal(t.n, 2);
        assert_ptr_equal(range_tree_remove(&t, 0x1000), &a);
        assert_int_equal(t.n, 1);
        assert_null(range_tree_remove(&t, 0x1000));
        check_tree(&t);

        /* the space is free again */
        assert_int_equal(range_tree_insert(&t, &a, 0x1000, 0x3000), 0);
        check_tree(&t);
}

static void test_empty_tree(void **state) {
        struct range_tree t;
        uint64_t x = 0;

        (void) state;
        range_tree_init(&t);

        assert_int_equal(range_tree_first_fit(&t, 0, 0x1000, 0x1000, 1, &x), 0);
        assert_int_equal(x, 0);
        assert_int_equal(range_tree_first_fit(&t, 0, UINT64_MAX, UINT64_MAX, 1, &x), 0);
        assert_int_equal(x, 0);
        x = 7;
        assert_int_equal(range_tree_first_fit(&t, 0x10, 0x1000, 0x1000, 1, &x), -ENOSPC);
        assert_int_equal(x, 7);
        assert_int_equal(range_tree_used(&t, 0, UINT64_MAX), 0);
        assert_null(range_tree_find(&t, 0));
        assert_null(range_tree_find_overlap(&t, 0, UINT64_MAX));
        assert_null(range_tree_remove(&t, 0));
}

static void test_first_fit_align_bigger_than_gap(void **state) {
        struct range_tree t;
        struct range_node a, b;
        uint64_t x = 0;

        (void) state;
        range_tree_init(&t);
        assert_int_equal(range_tree_insert(&t, &a, 0x0000, 0x1000), 0);
        assert_int_equal(range_tree_insert(&t, &b, 0x3000, 0x4000), 0);

        /* gap [0x1000, 0x3000): 0x2000 is aligned to 8KiB */
        assert_int_equal(range_tree_first_fit(&t, 0, 0x3000, 0x1000, 0x2000, &x), 0);
        assert_int_equal(x, 0x2000);
        /* 16KiB alignment: only 0 inside [0, 0x3000), which is taken */
        assert_int_equal(range_tree_first_fit(&t, 0, 0x3000, 0x1000, 0x4000, &x), -ENOSPC);
        /* without the bound it lands after the last range */
        assert_int_equal(range_tree_first_fit(&t, 0, UINT64_MAX, 0x1000, 0x4000, &x), 0);
        assert_int_equal(x, 0x4000);
        /* the gap is long enough but not at an 8KiB boundary once lo cuts it */
        assert_int_equal(range_tree_first_fit(&t, 0x1000, 0x3000, 0x2000, 0x2000, &x), -ENOSPC);
        assert_int_equal(range_tree_first_fit(&t, 0x1000, 0x3000, 0x2000, 0x1000, &x), 0);
        assert_int_equal(x, 0x1000);
}

static void test_first_fit_lowest_and_skips_small_gaps(void **state) {
        struct range_tree t;
        struct range_node nodes[64];
        uint64_t x = 0;

        (void) state;
        range_tree_init(&t);
        /* 4KiB ranges with 4KiB holes, one 12KiB hole after range 40 */
        for (unsigned i = 0; i < 64; i++) {
                uint64_t base = (uint64_t) i * 0x2000 + (i > 40 ? 0x2000 : 0);
                assert_int_equal(range_tree_insert(&t, &nodes[i], base, base + 0x1000), 0);
        }
        check_tree(&t);

        assert_int_equal(range_tree_first_fit(&t, 0, UINT64_MAX, 0x1000, 0x1000, &x), 0);
        assert_int_equal(x, 0x1000);
        assert_int_equal(range_tree_first_fit(&t, 0, UINT64_MAX, 0x3000, 0x1000, &x), 0);
        assert_int_equal(x, 40 * 0x2000 + 0x1000);
        /* too big for the hole: after the last range */
        assert_int_equal(range_tree_first_fit(&t, 0, UINT64_MAX, 0x4000, 0x1000, &x), 0);
        assert_int_equal(x, 63 * 0x2000 + 0x2000 + 0x1000);
        /* bounded below the last range: nothing */
        assert_int_equal(range_tree_first_fit(&t, 0, 63 * 0x2000, 0x4000, 0x1000, &x), -ENOSPC);
        /* lo inside a range starts at its end */
        assert_int_equal(range_tree_first_fit(&t, 0x2800, UINT64_MAX, 0x1000, 0x1000, &x), 0);
        assert_int_equal(x, 0x3000);
}

static void test_first_fit_near_top(void **state) {
        struct range_tree t;
        struct range_node a, b;
        uint64_t x = 0;

        (void) state;
        range_tree_init(&t);
        assert_int_equal(range_tree_insert(&t, &a, TOP - 0x3000, TOP - 0x1000), 0);

        assert_int_equal(range_tree_first_fit(&t, TOP - 0x4000, UINT64_MAX, 0x1000, 0x1000, &x), 0);
        assert_int_equal(x, TOP - 0x4000);
        /* after the range, [TOP - 0x1000, UINT64_MAX) holds 0x1fff bytes */
        assert_int_equal(range_tree_first_fit(&t, TOP - 0x3000, UINT64_MAX, 0x1000, 0x1000, &x), 0);
        assert_int_equal(x, TOP - 0x1000);
        assert_int_equal(range_tree_first_fit(&t, TOP - 0x3000, UINT64_MAX, 0x1fff, 1, &x), 0);
        assert_int_equal(x, TOP - 0x1000);
        assert_int_equal(range_tree_first_fit(&t, TOP - 0x3000, UINT64_MAX, 0x2000, 1, &x), -ENOSPC);
        /* rounding lo up to 2^63 alignment overflows */
        assert_int_equal(range_tree_first_fit(&t, TOP - 0x3000, UINT64_MAX, 1, UINT64_C(1) << 63, &x), -ENOSPC);
        assert_int_equal(range_tree_first_fit(&t, 1, UINT64_MAX, 1, UINT64_C(1) << 63, &x), 0);
        assert_int_equal(x, UINT64_C(1) << 63);

        /* a range may end at UINT64_MAX */
        assert_int_equal(range_tree_insert(&t, &b, TOP, UINT64_MAX), 0);
        assert_int_equal(range_tree_used(&t, 0, UINT64_MAX), 0x2000 + 0xfff);
        assert_int_equal(range_tree_first_fit(&t, TOP - 0x3000, UINT64_MAX, 0x1000, 0x1000, &x), 0);
        assert_int_equal(x, TOP - 0x1000);
        assert_int_equal(range_tree_first_fit(&t, TOP - 0x800, UINT64_MAX, 1, 1, &x), 0);
        assert_int_equal(x, TOP - 0x800);
        assert_int_equal(range_tree_first_fit(&t, TOP + 0x10, UINT64_MAX, 1, 1, &x), -ENOSPC);
        check_tree(&t);
}

static void test_first_fit_size_vs_window(void **state) {
        struct range_tree t;
        uint64_t x = 0;

        (void) state;
        range_tree_init(&t);
        assert_int_equal(range_tree_first_fit(&t, 0x1000, 0x3000, 0x2000, 0x1000, &x), 0);
        assert_int_equal(x, 0x1000);
        assert_int_equal(range_tree_first_fit(&t, 0x1000, 0x3000, 0x2001, 1, &x), -ENOSPC);
        assert_int_equal(range_tree_first_fit(&t, 0x3000, 0x1000, 1, 1, &x), -ENOSPC); /* lo > hi */
        /* bad arguments */
        assert_int_equal(range_tree_first_fit(&t, 0, 0x1000, 0, 1, &x), -EINVAL);
        assert_int_equal(range_tree_first_fit(&t, 0, 0x1000, 1, 3, &x), -EINVAL);
        assert_int_equal(range_tree_first_fit(&t, 0, 0x1000, 1, 0, &x), -EINVAL);
}

static void test_used_clips(void **state) {
        struct range_tree t;
        struct range_node a, b;

        (void) state;
        range_tree_init(&t);
        assert_int_equal(range_tree_insert(&t, &a, 0x1000, 0x3000), 0);
        assert_int_equal(range_tree_insert(&t, &b, 0x5000, 0x6000), 0);

        assert_int_equal(range_tree_used(&t, 0x2000, 0x5800), 0x1000 + 0x800);
        assert_int_equal(range_tree_used(&t, 0x3000, 0x5000), 0);
        assert_int_equal(range_tree_used(&t, 0, UINT64_MAX), 0x3000);
        assert_int_equal(range_tree_used(&t, 0x1800, 0x1900), 0x100);
        assert_int_equal(range_tree_used(&t, 0x5800, 0x1000), 0); /* lo > hi */
}

static int collect(struct range_node *n, void *userdata) {
        uint64_t *v = userdata;

        v[++v[0]] = n->base;
        return n->base == 0x3000 ? 42 : 0;
}

static void test_foreach(void **state) {
        struct range_tree t;
        struct range_node nodes[4];
        uint64_t seen[8] = {};
        const uint64_t bases[] = { 0x3000, 0x1000, 0x4000, 0x2000 };

        (void) state;
        range_tree_init(&t);
        for (unsigned i = 0; i < 4; i++)
                assert_int_equal(range_tree_insert(&t, &nodes[i], bases[i], bases[i] + 0x800), 0);

        /* in order, stopping at the callback's non-zero return */
        assert_int_equal(range_tree_foreach(&t, collect, seen), 42);
        assert_int_equal(seen[0], 3);
        assert_int_equal(seen[1], 0x1000);
        assert_int_equal(seen[2], 0x2000);
        assert_int_equal(seen[3], 0x3000);

        assert_ptr_equal(range_tree_remove(&t, 0x3000), &nodes[0]);
        memset(seen, 0, sizeof(seen));
        assert_int_equal(range_tree_foreach(&t, collect, seen), 0);
        assert_int_equal(seen[0], 3);
        assert_int_equal(seen[3], 0x4000);
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* v[0]: bases recorded (from v[2] on); the walk stops (7) once v[0] reaches v[1]. */
static int collect_from(struct range_node *n, void *userdata) {
        uint64_t *v = userdata;

        v[2 + v[0]++] = n->base;
        return v[0] == v[1] ? 7 : 0;
}

/*
 * As region.list pages the broker's ids: unit ranges [id, id + 1) of random ids, walked from
 * every lo (below, at, between, above them) with and without an early stop, against a sorted copy.
 */
static void test_foreach_from(void **state) {
        enum { N = 500 };
        static struct range_node nodes[N];
        static uint64_t ids[N], seen[2 + N];
        struct range_tree t;
        uint64_t x = 0x9e3779b97f4a7c15;
        size_t n = 0;

        (void) state;
        range_tree_init(&t);
        assert_int_equal(range_tree_foreach_from(&t, 0, collect_from, seen), 0);
        while (n < N) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                uint64_t id = 1 + x % 4000;
                if (range_tree_insert(&t, &nodes[n], id, id + 1) == 0)
                        ids[n++] = id;
        }
        qsort(ids, N, sizeof(ids[0]), cmp_u64);
        for (uint64_t lo = 0; lo <= 4002; lo += 3)
                for (uint64_t budget = 1; budget <= N + 1; budget += N / 2) {
                        size_t first = 0, want;

                        while (first < N && ids[first] < lo)
                                first++;
                        want = N - first < budget ? N - first : budget;
                        memset(seen, 0, sizeof(seen));
                        seen[1] = budget;
                        assert_int_equal(range_tree_foreach_from(&t, lo, collect_from, seen),
                                         want == budget ? 7 : 0);
                        assert_int_equal(seen[0], want);
                        assert_memory_equal(seen + 2, ids + first, want * sizeof(ids[0]));
                }
        check_tree(&t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_insert_adjacent),
                cmocka_unit_test(test_insert_empty_range),
                cmocka_unit_test(test_remove),
                cmocka_unit_test(test_empty_tree),
                cmocka_unit_test(test_first_fit_align_bigger_than_gap),
                cmocka_unit_test(test_first_fit_lowest_and_skips_small_gaps),
                cmocka_unit_test(test_first_fit_near_top),
                cmocka_unit_test(test_first_fit_size_vs_window),
                cmocka_unit_test(test_used_clips),
                cmocka_unit_test(test_foreach),
                cmocka_unit_test(test_foreach_from),
                cmocka_unit_test(test_random_low),
                cmocka_unit_test(test_random_mid),
                cmocka_unit_test(test_random_top),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
