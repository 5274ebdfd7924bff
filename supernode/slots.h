/* slots.h - an open-addressing table of 32-bit values, for the index.
 *
 * A table of u32 values (an entry's slot, a keyword's id) whose keys live
 * elsewhere: the caller hashes a key to 64 bits and tells the table how to
 * compare a value with a key and how to hash a stored value again (for
 * growing and for deletion). Linear probing, a load of at most
 * SLOTS_LOAD_NUM / SLOTS_LOAD_DEN (7/8), and
 * backward-shift deletion (no tombstones), so a lookup of an absent key ends
 * at the first empty bucket however many removals came before.
 *
 * Buckets are the top bits of the 64-bit hash. The caller owns the Slots
 * struct (embed it); the table owns its bucket array. No I/O; not
 * thread-safe.
 */
#ifndef CANOPY_SLOTS_H
#define CANOPY_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SLOTS_EMPTY UINT32_MAX /* never a value */
#define SLOTS_NONE SIZE_MAX    /* "no bucket" from slots_find */
#define SLOTS_MIN_BITS 10      /* 1024 buckets (4 KiB) at least */
/* The most a table is filled before it doubles. 7/8, not the usual 3/4:
 * the stamp and content-id tables are 2 x 4 bytes / load of every entry,
 * and at 3/4 an index of 100,000 entries had just doubled to 21 bytes an
 * entry of buckets; at 7/8 it still fits the table before (10.5). Every
 * key here is hashed well (stamps by a Fibonacci multiply of a sequence,
 * content ids are hashes, keywords and handles by a keyed hash), so the
 * runs stay short: a miss probes 0.5 (1 + 1 / (1 - a)^2) buckets, 32 only
 * in the last eighth before a doubling and 2.5-8.5 after it (test_slots
 * measures the runs; bench_index the searches). */
#define SLOTS_LOAD_NUM 7
#define SLOTS_LOAD_DEN 8

typedef struct {
  uint32_t *tab; /* SLOTS_EMPTY = empty bucket */
  size_t cap;    /* power of two */
  unsigned bits; /* cap == 1 << bits */
  size_t used;
} Slots;

/* The 64-bit hash of the key that value v stands for. */
typedef uint64_t (*SlotsHashFn)(const void *ctx, uint32_t v);
/* Whether value v stands for key. */
typedef bool (*SlotsEqFn)(const void *ctx, uint32_t v, const void *key);

/* An empty table of 1 << SLOTS_MIN_BITS buckets; false on no memory. */
bool slots_init(Slots *t);
void slots_free(Slots *t); /* frees the buckets; the struct is the caller's */

static inline size_t slots_home(const Slots *t, uint64_t hash)
{
  return (size_t)(hash >> (64 - t->bits));
}

/* The bucket whose value stands for key (hashing to hash), or SLOTS_NONE.
 * Inline so that the compiler sees eq and the probe loop stays tight. */
static inline size_t slots_find(const Slots *t, uint64_t hash, SlotsEqFn eq, const void *ctx,
                                const void *key)
{
  size_t mask = t->cap - 1;
  for (size_t i = slots_home(t, hash);; i = (i + 1) & mask) {
    uint32_t v = t->tab[i];
    if (v == SLOTS_EMPTY)
      return SLOTS_NONE;
    if (eq(ctx, v, key))
      return i;
  }
}

/* Room for one more value at a load of at most 7/8, doubling (and
 * rehashing every value with hash) when needed; false on no memory, the
 * table unchanged. */
bool slots_reserve(Slots *t, SlotsHashFn hash, const void *ctx);
/* Stores v, whose key hashes to hash and is not in the table yet; after
 * slots_reserve (or into a table slots_reset emptied, within its used). */
void slots_insert(Slots *t, uint32_t v, uint64_t hash);
/* Empties bucket pos (from slots_find): every later member of its probe
 * run that may legally sit earlier moves up. */
void slots_delete(Slots *t, size_t pos, SlotsHashFn hash, const void *ctx);
/* Empties every bucket, keeping the size (to refill after the keys of the
 * values changed). */
void slots_reset(Slots *t);

#endif
