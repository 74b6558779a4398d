/* SPDX-License-Identifier: Apache-2.0 */
#include "placement/rangetree.h"

#include <errno.h>

#include "util/num.h"

/*
 * Ranges are disjoint and keyed by base, so in-order they are also sorted by end: the
 * subtree's min_base is its leftmost base and its max_end its rightmost end. max_gap only
 * counts gaps between two ranges of the subtree; the gaps at its edges depend on the
 * neighbours, which the searches carry down as parameters.
 */

static void node_update(struct range_node *n) {
        n->min_base = n->left ? n->left->min_base : n->base;
        n->max_end = n->right ? n->right->max_end : n->end;
        n->bytes = n->end - n->base;
        n->max_gap = 0;

        if (n->left) {
                n->bytes += n->left->bytes;
                n->max_gap = n->left->max_gap;
                if (n->base - n->left->max_end > n->max_gap)
                        n->max_gap = n->base - n->left->max_end;
        }
        if (n->right) {
                n->bytes += n->right->bytes;
                if (n->right->max_gap > n->max_gap)
                        n->max_gap = n->right->max_gap;
                if (n->right->min_base - n->end > n->max_gap)
                        n->max_gap = n->right->min_base - n->end;
        }
}

static struct range_node *rotate_right(struct range_node *n) {
        struct range_node *l = n->left;

        n->left = l->right;
        l->right = n;
        node_update(n);
        node_update(l);
        return l;
}

static struct range_node *rotate_left(struct range_node *n) {
        struct range_node *r = n->right;

        n->right = r->left;
        r->left = n;
        node_update(n);
        node_update(r);
        return r;
}

static uint32_t next_priority(struct range_tree *t) {
        /* xorshift64: cheap, and a fixed seed makes tree shapes reproducible in tests. */
        uint64_t x = t->rng;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t->rng = x;
        return (uint32_t) (x >> 32);
}

void range_tree_init(struct range_tree *t) {
        *t = (struct range_tree) {
                .rng = UINT64_C(0x9e3779b97f4a7c15),
        };
}

static struct range_node *insert_rec(struct range_node *n, struct range_node *x) {
        if (!n)
                return x;

        if (x->base < n->base) {
                n->left = insert_rec(n->left, x);
                if (n->left->priority > n->priority)
                        return rotate_right(n);
        } else {
                n->right = insert_rec(n->right, x);
                if (n->right->priority > n->priority)
                        return rotate_left(n);
        }
        node_update(n);
        return n;
}

int range_tree_insert(struct range_tree *t, struct range_node *node, uint64_t base, uint64_t end) {
        if (end <= base)
                return -EINVAL;
        if (range_tree_find_overlap(t, base, end))
                return -EEXIST;

        *node = (struct range_node) {
                .priority = next_priority(t),
                .base = base,
                .end = end,
        };
        node_update(node);
        t->root = insert_rec(t->root, node);
        t->n++;
        return 0;
}

/* Joins two treaps where every range of a lies below every range of b. */
static struct range_node *merge(struct range_node *a, struct range_node *b) {
        if (!a)
                return b;
        if (!b)
                return a;

        if (a->priority > b->priority) {
                a->right = merge(a->right, b);
                node_update(a);
                return a;
        }
        b->left = merge(a, b->left);
        node_update(b);
        return b;
}

static struct range_node *remove_rec(struct range_node *n, uint64_t base, struct range_node **removed) {
        if (!n)
                return NULL;

        if (base < n->base)
                n->left = remove_rec(n->left, base, removed);
        else if (base > n->base)
                n->right = remove_rec(n->right, base, removed);
        else {
                struct range_node *joined = merge(n->left, n->right);

                n->left = n->right = NULL;
                *removed = n;
                return joined;
        }
        node_update(n);
        return n;
}

struct range_node *range_tree_remove(struct range_tree *t, uint64_t base) {
        struct range_node *removed = NULL;

        t->root = remove_rec(t->root, base, &removed);
        if (removed)
                t->n--;
        return removed;
}

struct range_node *range_tree_find_overlap(const struct range_tree *t, uint64_t base, uint64_t end) {
        struct range_node *n = t->root, *pred = NULL;

        if (end <= base)
                return NULL;

        /* Of the ranges starting below end, the last one reaches furthest; only it can overlap. */
        while (n) {
                if (n->base < end) {
                        pred = n;
                        n = n->right;
                } else
                        n = n->left;
        }
        return pred && pred->end > base ? pred : NULL;
}

struct range_node *range_tree_find(const struct range_tree *t, uint64_t addr) {
        struct range_node *n = t->root;

        while (n) {
                if (addr < n->base)
                        n = n->left;
                else if (addr < n->end)
                        return n;
                else
                        n = n->right;
        }
        return NULL;
}

struct fit_query {
        uint64_t lo, hi, size, align;
};

/* Tries the free gap [start, end) clipped to [lo, hi). */
static bool gap_fit(const struct fit_query *q, uint64_t start, uint64_t end, uint64_t *ret) {
        uint64_t x;

        if (start < q->lo)
                start = q->lo;
        if (end > q->hi)
                end = q->hi;
        if (start > end)
                return false;
        if (num_align_up(start, q->align, &x) < 0 || x > end || end - x < q->size)
                return false;
        *ret = x;
        return true;
}

/*
 * Lowest fit among the gaps of the subtree n, counting the gap [prev_end, n->min_base)
 * before it (prev_end being the end of the range preceding the subtree, or 0).
 */
static bool fit_rec(const struct range_node *n, uint64_t prev_end, const struct fit_query *q, uint64_t *ret) {
        uint64_t start;

        /* Every gap of this subtree ends by max_end: all of them left of lo. */
        if (n->max_end <= q->lo)
                return false;
        /* Every gap starts at prev_end or later: all of them right of hi. */
        if (prev_end >= q->hi)
                return false;
        if (n->max_gap < q->size && n->min_base - prev_end < q->size)
                return false;
        /* Only the gap before this subtree can intersect [lo, hi). */
        if (n->min_base >= q->hi)
                return gap_fit(q, prev_end, n->min_base, ret);

        start = prev_end;
        if (n->left) {
                if (fit_rec(n->left, prev_end, q, ret))
                        return true;
                start = n->left->max_end;
        }
        if (gap_fit(q, start, n->base, ret))
                return true;
        if (n->right)
                return fit_rec(n->right, n->end, q, ret);
        return false;
}

int range_tree_first_fit(const struct range_tree *t, uint64_t lo, uint64_t hi, uint64_t size, uint64_t align,
                         uint64_t *ret) {
        struct fit_query q = { .lo = lo, .hi = hi, .size = size, .align = align };
        uint64_t x;

        /* An empty range fits everywhere, even inside a range; nobody asks for one. */
        if (size == 0 || !num_is_pow2(align))
                return -EINVAL;
        if (lo > hi || hi - lo < size)
                return -ENOSPC;

        if (t->root) {
                if (fit_rec(t->root, 0, &q, &x)) {
                        *ret = x;
                        return 0;
                }
                /* The gap after the last range runs to 2^64; hi <= UINT64_MAX clips it anyway. */
                if (!gap_fit(&q, t->root->max_end, UINT64_MAX, &x))
                        return -ENOSPC;
        } else if (!gap_fit(&q, 0, UINT64_MAX, &x))
                return -ENOSPC;

        *ret = x;
        return 0;
}

/* Bytes of [0, x) covered. */
static uint64_t used_below(const struct range_node *n, uint64_t x) {
        uint64_t sum = 0;

        while (n) {
                if (x <= n->base)
                        n = n->left;
                else {
                        if (n->left)
                                sum += n->left->bytes;
                        if (x <= n->end)
                                return sum + (x - n->base);
                        sum += n->end - n->base;
                        n = n->right;
                }
        }
        return sum;
}

uint64_t range_tree_used(const struct range_tree *t, uint64_t lo, uint64_t hi) {
        if (lo >= hi)
                return 0;
        return used_below(t->root, hi) - used_below(t->root, lo);
}

static int foreach_rec(struct range_node *n, int (*fn)(struct range_node *n, void *userdata), void *userdata) {
        /* Recurse left, loop right: the stack grows with left depth only. */
        while (n) {
                int r;

                r = foreach_rec(n->left, fn, userdata);
                if (r != 0)
                        return r;
                r = fn(n, userdata);
                if (r != 0)
                        return r;
                n = n->right;
        }
        return 0;
}

int range_tree_foreach(const struct range_tree *t, int (*fn)(struct range_node *n, void *userdata), void *userdata) {
        return foreach_rec(t->root, fn, userdata);
}

/* Below lo nothing of n's left subtree counts either: only its right side is looked at. */
static int foreach_from_rec(struct range_node *n, uint64_t lo, int (*fn)(struct range_node *n, void *userdata),
                            void *userdata) {
        int r;

        while (n && n->base < lo)
                n = n->right;
        if (!n)
                return 0;
        r = foreach_from_rec(n->left, lo, fn, userdata);
        if (r == 0)
                r = fn(n, userdata);
        if (r == 0)
                r = foreach_rec(n->right, fn, userdata);
        return r;
}

int range_tree_foreach_from(const struct range_tree *t, uint64_t lo, int (*fn)(struct range_node *n, void *userdata),
                            void *userdata) {
        return foreach_from_rec(t->root, lo, fn, userdata);
}
