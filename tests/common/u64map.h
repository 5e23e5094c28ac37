/* SPDX-License-Identifier: MIT */
/*
 * A map from nonzero 64-bit keys (pool handles) to 64-bit values, for the
 * tests' reference models.  Open addressing with linear probing and
 * backward-shift deletion, so no tombstones build up over a million
 * operations; grows at half full.  Not thread-safe.
 */
#ifndef UZRAM_U64MAP_H
#define UZRAM_U64MAP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

struct u64map {
    uint64_t *keys; /* 0 = empty */
    uint64_t *vals;
    size_t mask;    /* capacity - 1, capacity a power of two */
    size_t count;
};

static inline size_t u64map_slot(const struct u64map *m, uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (size_t)key & m->mask;
}

static inline void u64map_init(struct u64map *m, size_t capacity)
{
    size_t cap = 16;
    while (cap < capacity * 2)
        cap <<= 1;
    m->keys = calloc(cap, sizeof(*m->keys));
    m->vals = calloc(cap, sizeof(*m->vals));
    if (!m->keys || !m->vals)
        abort();
    m->mask = cap - 1;
    m->count = 0;
}

static inline void u64map_free(struct u64map *m)
{
    free(m->keys);
    free(m->vals);
    m->keys = m->vals = NULL;
    m->count = 0;
}

static inline uint64_t *u64map_find(const struct u64map *m, uint64_t key)
{
    for (size_t i = u64map_slot(m, key);; i = (i + 1) & m->mask) {
        if (m->keys[i] == key)
            return &m->vals[i];
        if (m->keys[i] == 0)
            return NULL;
    }
}

static inline bool u64map_get(const struct u64map *m, uint64_t key, uint64_t *ret)
{
    uint64_t *v = u64map_find(m, key);
    if (v && ret)
        *ret = *v;
    return v != NULL;
}

static inline void u64map_put(struct u64map *m, uint64_t key, uint64_t val);

static inline void u64map_grow(struct u64map *m)
{
    struct u64map old = *m;
    u64map_init(m, (old.mask + 1));
    for (size_t i = 0; i <= old.mask; i++)
        if (old.keys[i])
            u64map_put(m, old.keys[i], old.vals[i]);
    u64map_free(&old);
}

/* Insert or replace.  key must not be 0. */
static inline void u64map_put(struct u64map *m, uint64_t key, uint64_t val)
{
    if (key == 0)
        abort();
    if ((m->count + 1) * 2 > m->mask + 1)
        u64map_grow(m);
    size_t i = u64map_slot(m, key);
    while (m->keys[i] && m->keys[i] != key)
        i = (i + 1) & m->mask;
    if (!m->keys[i])
        m->count++;
    m->keys[i] = key;
    m->vals[i] = val;
}

/* Remove key; returns whether it was there. */
static inline bool u64map_del(struct u64map *m, uint64_t key)
{
    size_t i = u64map_slot(m, key);
    while (m->keys[i] != key) {
        if (m->keys[i] == 0)
            return false;
        i = (i + 1) & m->mask;
    }
    /* Shift later members of the probe run back over the hole. */
    for (size_t j = (i + 1) & m->mask; m->keys[j]; j = (j + 1) & m->mask) {
        size_t home = u64map_slot(m, m->keys[j]);
        /* Move j to i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            m->keys[i] = m->keys[j];
            m->vals[i] = m->vals[j];
            i = j;
        }
    }
    m->keys[i] = 0;
    m->vals[i] = 0;
    m->count--;
    return true;
}

#endif
