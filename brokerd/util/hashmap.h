/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * An open-addressing hash map (linear probing, backward-shift deletion) from borrowed keys
 * to values. Keys are not copied: a key must stay valid and unchanged while its entry is
 * in the map (store it inside the value). Hashes are seeded per map from getrandom() so
 * client-chosen keys cannot be crafted to collide.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

struct hashmap_ops {
        uint64_t (*hash)(const void *key, uint64_t seed);
        bool (*equal)(const void *a, const void *b);
};

/* Keys are NUL-terminated strings. */
extern const struct hashmap_ops hashmap_string_ops;
/* Keys point at a uint64_t. */
extern const struct hashmap_ops hashmap_u64_ops;

struct hashmap;

int hashmap_new(const struct hashmap_ops *ops, struct hashmap **ret);
void hashmap_free(struct hashmap *h);
DEFINE_CLEANUP(struct hashmap, hashmap_free);

/* -EEXIST if the key is present, -ENOMEM. */
int hashmap_put(struct hashmap *h, const void *key, void *value);
void *hashmap_get(const struct hashmap *h, const void *key);
/* Removes and returns the value, or NULL. */
void *hashmap_remove(struct hashmap *h, const void *key);
size_t hashmap_size(const struct hashmap *h);

/*
 * Iteration: size_t i = 0; void *v; while (hashmap_iterate(h, &i, &v)) ...
 * The map must not be changed during the walk.
 */
bool hashmap_iterate(const struct hashmap *h, size_t *i, void **ret_value);
