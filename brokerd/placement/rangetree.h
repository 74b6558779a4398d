/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * A set of non-overlapping ranges: the address ranges in use (live or not yet reclaimed
 * regions), and the broker's live region ids as unit ranges [id, id + 1). An intrusive,
 * randomized balanced search tree (treap) keyed by base, augmented per subtree with the
 * lowest base, highest end, total bytes, and the largest gap between neighbouring ranges.
 * Ranges never overlap. Insert, remove, overlap query and first fit are O(log n)
 * expected (first fit with an alignment above the ranges' own granule can visit gaps that
 * are long enough but misaligned; see docs/architecture.md).
 * The caller owns the nodes (embed struct range_node in its own record).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct range_node {
        struct range_node *left, *right;
        uint32_t priority;
        uint64_t base, end; /* [base, end), end > base */
        /* subtree aggregates */
        uint64_t min_base, max_end, bytes, max_gap;
};

struct range_tree {
        struct range_node *root;
        size_t n;
        uint64_t rng; /* xorshift state for priorities */
};

void range_tree_init(struct range_tree *t);
/* Sets node->base/end; -EEXIST if [base, end) overlaps a range already in the tree, -EINVAL if empty. */
int range_tree_insert(struct range_tree *t, struct range_node *node, uint64_t base, uint64_t end);
/* Removes the node whose base is base; returns it, or NULL if there is none. */
struct range_node *range_tree_remove(struct range_tree *t, uint64_t base);
/* Some range overlapping [base, end), or NULL. */
struct range_node *range_tree_find_overlap(const struct range_tree *t, uint64_t base, uint64_t end);
/* The range containing addr, or NULL. */
struct range_node *range_tree_find(const struct range_tree *t, uint64_t addr);
/*
 * Lowest x with x % align == 0, lo <= x, x + size <= hi and [x, x + size) free.
 * align must be a power of two. 0 and *ret set, or -ENOSPC.
 */
int range_tree_first_fit(const struct range_tree *t, uint64_t lo, uint64_t hi, uint64_t size, uint64_t align,
                         uint64_t *ret);
/* Bytes of [lo, hi) covered by ranges. */
uint64_t range_tree_used(const struct range_tree *t, uint64_t lo, uint64_t hi);
/* In-order walk; stops and returns the callback's value when it is non-zero. */
int range_tree_foreach(const struct range_tree *t, int (*fn)(struct range_node *n, void *userdata), void *userdata);
/* The same from the first range whose base is lo or above: O(log n) expected to reach it, then one step a range. */
int range_tree_foreach_from(const struct range_tree *t, uint64_t lo, int (*fn)(struct range_node *n, void *userdata),
                            void *userdata);
