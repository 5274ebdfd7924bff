/* budget.c - a resource counter with a total cap and per-source shares.
 *
 * Sources live in an open-addressing table (linear probing, backward-shift
 * deletion, so no tombstones pile up under churn). A source is in the table
 * exactly while it holds something: the table's size is bounded by the
 * number of charges outstanding, never by the number of sources ever seen.
 */
#include "budget.h"

#include <stdlib.h>
#include <string.h>

#include "shorthash.h"

#define SLOTS_MIN 16

typedef struct {
  uint64_t used; /* 0: the slot is empty */
  uint8_t len;
  uint8_t key[BUDGET_KEY_MAX];
} Source;

struct Budget {
  uint64_t total, share;
  uint64_t used;
  uint64_t refused;
  Source *slots;
  size_t cap; /* power of two */
  size_t n;   /* slots in use */
};

static uint64_t clamp_share(uint64_t total, uint64_t share)
{
  return share == 0 || share > total ? total : share;
}

Budget *budget_new(uint64_t total, uint64_t share)
{
  Budget *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  b->slots = calloc(SLOTS_MIN, sizeof *b->slots);
  if (!b->slots) {
    free(b);
    return NULL;
  }
  b->cap = SLOTS_MIN;
  budget_set_limits(b, total, share);
  return b;
}

void budget_free(Budget *b)
{
  if (!b)
    return;
  free(b->slots);
  free(b);
}

void budget_set_limits(Budget *b, uint64_t total, uint64_t share)
{
  b->total = total;
  b->share = clamp_share(total, share);
}

static size_t key_len_of(size_t len)
{
  return len > BUDGET_KEY_MAX ? BUDGET_KEY_MAX : len;
}

/* The slot holding key, or the empty slot where it would go. */
static size_t find(const Budget *b, const void *key, size_t len)
{
  size_t mask = b->cap - 1;
  size_t i = (size_t)shorthash(key, len) & mask;
  while (b->slots[i].used != 0 &&
         (b->slots[i].len != len || memcmp(b->slots[i].key, key, len) != 0))
    i = (i + 1) & mask;
  return i;
}

static bool grow(Budget *b)
{
  size_t cap = b->cap * 2;
  Source *old = b->slots, *s = calloc(cap, sizeof *s);
  if (!s)
    return false;
  size_t old_cap = b->cap;
  b->slots = s;
  b->cap = cap;
  for (size_t i = 0; i < old_cap; i++)
    if (old[i].used != 0)
      b->slots[find(b, old[i].key, old[i].len)] = old[i];
  free(old);
  return true;
}

/* Empties slot i and shifts later members of its probe run back, so every
 * key stays reachable from its home slot without tombstones. */
static void remove_at(Budget *b, size_t i)
{
  size_t mask = b->cap - 1;
  b->slots[i].used = 0;
  b->n--;
  for (size_t j = (i + 1) & mask; b->slots[j].used != 0; j = (j + 1) & mask) {
    size_t home = (size_t)shorthash(b->slots[j].key, b->slots[j].len) & mask;
    /* j may move to i when its home is not in (i, j] (cyclically). */
    bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (stays)
      continue;
    b->slots[i] = b->slots[j];
    b->slots[j].used = 0;
    i = j;
  }
}

bool budget_fits(const Budget *b, const void *key, size_t key_len, uint64_t n)
{
  if (b->used > b->total || n > b->total - b->used)
    return false;
  uint64_t mine = budget_used_by(b, key, key_len);
  return mine <= b->share && n <= b->share - mine;
}

uint64_t budget_room(const Budget *b, const void *key, size_t key_len)
{
  uint64_t mine = budget_used_by(b, key, key_len);
  uint64_t left = b->used < b->total ? b->total - b->used : 0;
  uint64_t share = mine < b->share ? b->share - mine : 0;
  return left < share ? left : share;
}

static bool charge(Budget *b, const void *key, size_t key_len, uint64_t n)
{
  if (n == 0)
    return true;
  size_t len = key_len_of(key_len);
  size_t i = find(b, key, len);
  if (b->slots[i].used == 0) {
    if (2 * (b->n + 1) > b->cap) {
      if (!grow(b)) {
        b->refused++;
        return false;
      }
      i = find(b, key, len);
    }
    b->slots[i].len = (uint8_t)len;
    memcpy(b->slots[i].key, key, len);
    b->n++;
  }
  b->slots[i].used += n;
  b->used += n;
  return true;
}

bool budget_take(Budget *b, const void *key, size_t key_len, uint64_t n)
{
  if (!budget_fits(b, key, key_len, n)) {
    b->refused++;
    return false;
  }
  return charge(b, key, key_len, n);
}

bool budget_force(Budget *b, const void *key, size_t key_len, uint64_t n)
{
  return charge(b, key, key_len, n);
}

void budget_give(Budget *b, const void *key, size_t key_len, uint64_t n)
{
  size_t len = key_len_of(key_len);
  size_t i = find(b, key, len);
  Source *s = &b->slots[i];
  if (s->used == 0 || n == 0)
    return;
  if (n > s->used)
    n = s->used;
  s->used -= n;
  b->used -= n;
  if (s->used == 0)
    remove_at(b, i);
}

uint64_t budget_used(const Budget *b)
{
  return b->used;
}

uint64_t budget_used_by(const Budget *b, const void *key, size_t key_len)
{
  size_t len = key_len_of(key_len);
  return b->slots[find(b, key, len)].used;
}

uint64_t budget_total(const Budget *b)
{
  return b->total;
}

uint64_t budget_share(const Budget *b)
{
  return b->share;
}

uint64_t budget_refused(const Budget *b)
{
  return b->refused;
}

size_t budget_sources(const Budget *b)
{
  return b->n;
}
