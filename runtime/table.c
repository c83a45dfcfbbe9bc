/*
 * table.c: the resolved call shapes of a context, an open-addressing table whose slots are
 * published with release stores and read with acquire loads: a shape seen before costs a hash, a
 * compare and no lock. A new shape takes the context's mutex once, is resolved (resolve.c) and
 * published. The table grows by copying into one twice the size; old tables stay allocated until
 * fat_close, so a reader that still holds one is never left with freed memory.
 */
#include "context.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <stdlib.h>
#include <string.h>

#define FIRST_SLOTS 1024       /* the table starts here and doubles at half full */

table *table_new(void) {
    table *t = calloc(1, sizeof *t + FIRST_SLOTS * sizeof t->slot[0]);
    if (!t) return NULL;
    t->mask = FIRST_SLOTS - 1;
    for (size_t i = 0; i < FIRST_SLOTS; i++) atomic_init(&t->slot[i], NULL);
    return t;
}

static uint64_t key_hash(const fat_problem *p) {
    return XXH3_64bits(p, sizeof *p);
}

static int key_eq(const fat_problem *a, const fat_problem *b) {
    return memcmp(a, b, sizeof *a) == 0;
}

static entry *find(const table *t, const fat_problem *p, uint64_t h) {
    for (size_t i = 0; i <= t->mask; i++) {
        entry *e = atomic_load_explicit(&t->slot[(h + i) & t->mask], memory_order_acquire);
        if (!e) return NULL;
        if (key_eq(&e->key, p)) return e;
    }
    return NULL;
}

static void place(table *t, entry *e) {
    uint64_t h = key_hash(&e->key);
    for (size_t i = 0;; i++) {
        size_t s = (h + i) & t->mask;
        if (!atomic_load_explicit(&t->slot[s], memory_order_relaxed)) {
            atomic_store_explicit(&t->slot[s], e, memory_order_release);
            return;
        }
    }
}

/* Publishes e (under the lock), doubling the table first when it would be over half full. */
static fat_status publish(fat_ctx *c, entry *e) {
    if (c->nentries == c->cap_entries) {
        size_t cap = c->cap_entries ? 2 * c->cap_entries : 256;
        entry **n = realloc(c->entries, cap * sizeof *n);
        if (!n) { fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
        c->entries = n;
        c->cap_entries = cap;
    }
    table *t = atomic_load_explicit(&c->tab, memory_order_relaxed);
    if (2 * (c->nentries + 1) > t->mask + 1) {
        size_t slots = 2 * (t->mask + 1);
        table *bigger = calloc(1, sizeof *bigger + slots * sizeof bigger->slot[0]);
        table **old = realloc(c->old, (size_t)(c->nold + 1) * sizeof *old);
        if (!bigger || !old) { free(bigger); if (old) c->old = old; fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
        c->old = old;
        bigger->mask = slots - 1;
        for (size_t i = 0; i < slots; i++) atomic_init(&bigger->slot[i], NULL);
        for (size_t i = 0; i < c->nentries; i++) place(bigger, c->entries[i]);
        c->old[c->nold++] = t;
        atomic_store_explicit(&c->tab, bigger, memory_order_release);
        t = bigger;
    }
    c->entries[c->nentries++] = e;
    place(t, e);
    c->stats.shapes = (int)c->nentries;
    return FAT_OK;
}

/* An entry, zeroed and aligned for its tensor maps. */
static entry *entry_new(void) {
    size_t n = (sizeof(entry) + 127) & ~(size_t)127;
    entry *e = aligned_alloc(128, n);
    if (e) memset(e, 0, n);
    return e;
}

static void entry_free(entry *e) {
    if (!e) return;
    free(e->fail_msg);
    free(e);
}

/* The entry for problem p. See context.h. */
fat_status table_lookup(fat_ctx *c, const fat_problem *p, entry **out) {
    uint64_t h = key_hash(p);
    entry *e = find(atomic_load_explicit(&c->tab, memory_order_acquire), p, h);
    fat_status st = FAT_OK;
    if (!e) {
        pthread_mutex_lock(&c->lock);
        /* Another thread may have published it meanwhile; look again, now as the only writer. */
        e = find(atomic_load_explicit(&c->tab, memory_order_acquire), p, h);
        if (!e) {
            CUcontext prev = NULL;
            if (!(e = entry_new())) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto unlock; }
            e->key = *p;
            if (!c->offline) {
                cu.CtxGetCurrent(&prev);
                if (prev != c->cuctx) CU_CHECK(CtxSetCurrent(c->cuctx));
            }
            st = resolve(c, p, e);
            if (!c->offline && prev != c->cuctx) cu.CtxSetCurrent(prev);
        out:
            if (st != FAT_OK && !resolve_lasting(st)) { entry_free(e); e = NULL; goto unlock; }
            if (st != FAT_OK) { e->fail = st; e->fail_msg = strdup(fat_last_error()); }
            if (publish(c, e) != FAT_OK) {
                entry_free(e);
                e = NULL;
                if (st == FAT_OK) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; }
            }
        }
    unlock:
        pthread_mutex_unlock(&c->lock);
        if (!e) return st;
    }
    if (e->fail) {
        fat_set_error("%s", e->fail_msg ? e->fail_msg : fat_strerror(e->fail));
        return e->fail;
    }
    *out = e;
    return FAT_OK;
}

void table_free(fat_ctx *c) {
    for (size_t i = 0; i < c->nentries; i++) entry_free(c->entries[i]);
    free(c->entries);
    c->entries = NULL;
    c->nentries = 0;
    free(atomic_load(&c->tab));
    atomic_store(&c->tab, NULL);
    for (int i = 0; i < c->nold; i++) free(c->old[i]);
    free(c->old);
    c->old = NULL;
    c->nold = 0;
}
