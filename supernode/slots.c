/* slots.c - an open-addressing table of 32-bit values (slots.h). */
#include "slots.h"

#include <stdlib.h>
#include <string.h>

static uint32_t *buckets_new(size_t cap)
{
  uint32_t *tab = malloc(cap * sizeof *tab);
  if (tab)
    memset(tab, 0xff, cap * sizeof *tab); /* all SLOTS_EMPTY */
  return tab;
}

bool slots_init(Slots *t)
{
  t->cap = (size_t)1 << SLOTS_MIN_BITS;
  t->bits = SLOTS_MIN_BITS;
  t->used = 0;
  t->tab = buckets_new(t->cap);
  return t->tab != NULL;
}

void slots_free(Slots *t)
{
  free(t->tab);
  t->tab = NULL;
  t->cap = t->used = 0;
}

/* Places v in the first empty bucket of its probe run. */
static void place(Slots *t, uint32_t v, uint64_t hash)
{
  size_t mask = t->cap - 1;
  size_t i = slots_home(t, hash);
  while (t->tab[i] != SLOTS_EMPTY)
    i = (i + 1) & mask;
  t->tab[i] = v;
}

bool slots_reserve(Slots *t, SlotsHashFn hash, const void *ctx)
{
  /* A miss is common here (a removed entry's stamp, a new keyword), and
   * its expected probe run is 0.5 (1 + 1 / (1 - load)^2) buckets (Knuth):
   * 32.5 at 7/8, just before the doubling that brings it to 2.5 (slots.h). */
  if ((t->used + 1) * SLOTS_LOAD_DEN <= t->cap * SLOTS_LOAD_NUM)
    return true;
  uint32_t *old = t->tab;
  size_t old_cap = t->cap;
  uint32_t *tab = buckets_new(old_cap * 2);
  if (!tab)
    return false;
  t->tab = tab;
  t->cap = old_cap * 2;
  t->bits++;
  for (size_t i = 0; i < old_cap; i++)
    if (old[i] != SLOTS_EMPTY)
      place(t, old[i], hash(ctx, old[i]));
  free(old);
  return true;
}

void slots_insert(Slots *t, uint32_t v, uint64_t hash)
{
  place(t, v, hash);
  t->used++;
}

void slots_delete(Slots *t, size_t pos, SlotsHashFn hash, const void *ctx)
{
  size_t mask = t->cap - 1;
  size_t hole = pos;
  for (size_t j = (pos + 1) & mask; t->tab[j] != SLOTS_EMPTY; j = (j + 1) & mask) {
    size_t home = slots_home(t, hash(ctx, t->tab[j]));
    /* It may fill the hole if the hole is no further from home than j. */
    if (((j - home) & mask) >= ((j - hole) & mask)) {
      t->tab[hole] = t->tab[j];
      hole = j;
    }
  }
  t->tab[hole] = SLOTS_EMPTY;
  t->used--;
}

void slots_reset(Slots *t)
{
  memset(t->tab, 0xff, t->cap * sizeof *t->tab);
  t->used = 0;
}
