/* SPDX-License-Identifier: Apache-2.0 */
#include "hashmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct bucket {
        const void *key;
        void *value;
        uint64_t hash;
};

struct hashmap {
        const struct hashmap_ops *ops;
        uint64_t seed;
        struct bucket *buckets; /* key == NULL: empty */
        size_t n_buckets;       /* a power of two */
        size_t n;
};

static uint64_t mix64(uint64_t x) {
        x ^= x >> 33;
        x *= UINT64_C(0xff51afd7ed558ccd);
        x ^= x >> 33;
        x *= UINT64_C(0xc4ceb9fe1a85ec53);
        x ^= x >> 33;
        return x;
}

static uint64_t string_hash(const void *key, uint64_t seed) {
        const unsigned char *s = key;
        uint64_t h = mix64(seed);

        for (; *s; s++)
                h = mix64(h ^ *s) + UINT64_C(0x9e3779b97f4a7c15);
        return h;
}

static bool string_equal(const void *a, const void *b) {
        return strcmp(a, b) == 0;
}

static uint64_t u64_hash(const void *key, uint64_t seed) {
        return mix64(*(const uint64_t *) key ^ seed);
}

static bool u64_equal(const void *a, const void *b) {
        return *(const uint64_t *) a == *(const uint64_t *) b;
}

const struct hashmap_ops hashmap_string_ops = { .hash = string_hash, .equal = string_equal };
const struct hashmap_ops hashmap_u64_ops = { .hash = u64_hash, .equal = u64_equal };

int hashmap_new(const struct hashmap_ops *ops, struct hashmap **ret) {
        _cleanup_(xfreep) struct hashmap *h = calloc(1, sizeof(*h));

        if (!h)
                return -ENOMEM;
        h->ops = ops;
        if (getrandom(&h->seed, sizeof(h->seed), 0) != sizeof(h->seed))
                h->seed = (uint64_t) (uintptr_t) h ^ UINT64_C(0x243f6a8885a308d3);
        *ret = TAKE_PTR(h);
        return 0;
}

void hashmap_free(struct hashmap *h) {
        if (!h)
                return;
        free(h->buckets);
        free(h);
}

static size_t find_slot(const struct hashmap *h, const void *key, uint64_t hash) {
        size_t mask = h->n_buckets - 1;

        for (size_t i = hash & mask;; i = (i + 1) & mask) {
                const struct bucket *b = &h->buckets[i];
                if (!b->key || (b->hash == hash && h->ops->equal(b->key, key)))
                        return i;
        }
}

static int grow(struct hashmap *h) {
        size_t n_buckets = h->n_buckets ? h->n_buckets * 2 : 16;
        struct bucket *old = h->buckets, *buckets;
        size_t old_n = h->n_buckets;

        buckets = calloc(n_buckets, sizeof(*buckets));
        if (!buckets)
                return -ENOMEM;
        h->buckets = buckets;
        h->n_buckets = n_buckets;
        for (size_t i = 0; i < old_n; i++)
                if (old[i].key)
                        h->buckets[find_slot(h, old[i].key, old[i].hash)] = old[i];
        free(old);
        return 0;
}

int hashmap_put(struct hashmap *h, const void *key, void *value) {
        uint64_t hash = h->ops->hash(key, h->seed);
        size_t i;
        int r;

        /* Keep the load factor at or below 1/2 so probe runs stay short. */
        if ((h->n + 1) * 2 > h->n_buckets) {
                r = grow(h);
                if (r < 0)
                        return r;
        }
        i = find_slot(h, key, hash);
        if (h->buckets[i].key)
                return -EEXIST;
        h->buckets[i] = (struct bucket) { .key = key, .value = value, .hash = hash };
        h->n++;
        return 0;
}

void *hashmap_get(const struct hashmap *h, const void *key) {
        size_t i;

        if (!h || h->n == 0)
                return NULL;
        i = find_slot(h, key, h->ops->hash(key, h->seed));
        return h->buckets[i].key ? h->buckets[i].value : NULL;
}

void *hashmap_remove(struct hashmap *h, const void *key) {
        size_t mask, i, j;
        void *value;

        if (!h || h->n == 0)
                return NULL;
        mask = h->n_buckets - 1;
        i = find_slot(h, key, h->ops->hash(key, h->seed));
        if (!h->buckets[i].key)
                return NULL;
        value = h->buckets[i].value;

        /* Backward-shift: pull later entries of the probe run into the hole. */
        for (j = (i + 1) & mask; h->buckets[j].key; j = (j + 1) & mask) {
                size_t home = h->buckets[j].hash & mask;
                bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
                if (movable) {
                        h->buckets[i] = h->buckets[j];
                        i = j;
                }
        }
        h->buckets[i] = (struct bucket) {};
        h->n--;
        return value;
}

size_t hashmap_size(const struct hashmap *h) {
        return h ? h->n : 0;
}

bool hashmap_iterate(const struct hashmap *h, size_t *i, void **ret_value) {
        for (; h && *i < h->n_buckets; (*i)++)
                if (h->buckets[*i].key) {
                        *ret_value = h->buckets[(*i)++].value;
                        return true;
                }
        return false;
}
