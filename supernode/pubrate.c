/* pubrate.c - departed leaves' publish buckets, by node id (pubrate.h). */
#include "pubrate.h"

#include <glib.h>
#include <string.h>

#include "shorthash.h"

typedef struct {
  uint8_t id[32];
  RateLimit rl;
} Kept;

struct PubRates {
  GHashTable *by_id; /* Kept.id -> Kept*, owned */
  size_t max;
};

static guint id_hash(gconstpointer k)
{
  return (guint)shorthash(k, 32);
}

static gboolean id_equal(gconstpointer a, gconstpointer b)
{
  return memcmp(a, b, 32) == 0;
}

PubRates *pubrates_new(size_t max)
{
  PubRates *t = g_new0(PubRates, 1);
  t->by_id = g_hash_table_new_full(id_hash, id_equal, NULL, g_free);
  t->max = max ? max : 1;
  return t;
}

void pubrates_free(PubRates *t)
{
  if (!t)
    return;
  g_hash_table_destroy(t->by_id);
  g_free(t);
}

/* Whether rl would be full by now: then it is no different from a new one. */
static bool refilled(const RateLimit *rl, uint64_t now_ms)
{
  double elapsed = now_ms > rl->last_ms ? (double)(now_ms - rl->last_ms) / 1000.0 : 0;
  return rl->tokens + elapsed * rl->rate >= rl->burst;
}

void pubrates_restore(PubRates *t, const uint8_t id[32], RateLimit *rl, double rate, double burst,
                      uint64_t now_ms)
{
  ratelimit_init(rl, rate, burst, now_ms);
  Kept *k = g_hash_table_lookup(t->by_id, id);
  if (!k)
    return;
  /* Refill at the old rate up to now, then go on at the current one. */
  double elapsed = now_ms > k->rl.last_ms ? (double)(now_ms - k->rl.last_ms) / 1000.0 : 0;
  double tokens = k->rl.tokens + elapsed * k->rl.rate;
  rl->tokens = tokens < burst ? tokens : burst;
  g_hash_table_remove(t->by_id, id);
}

void pubrates_keep(PubRates *t, const uint8_t id[32], const RateLimit *rl, uint64_t now_ms)
{
  if (refilled(rl, now_ms)) {
    g_hash_table_remove(t->by_id, id);
    return;
  }
  if (!g_hash_table_contains(t->by_id, id) && g_hash_table_size(t->by_id) >= t->max) {
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, t->by_id);
    while (g_hash_table_iter_next(&it, NULL, &v))
      if (refilled(&((Kept *)v)->rl, now_ms))
        g_hash_table_iter_remove(&it);
    if (g_hash_table_size(t->by_id) >= t->max) {
      g_hash_table_iter_init(&it, t->by_id);
      if (g_hash_table_iter_next(&it, NULL, NULL))
        g_hash_table_iter_remove(&it);
    }
  }
  Kept *k = g_new(Kept, 1);
  memcpy(k->id, id, 32);
  k->rl = *rl;
  g_hash_table_replace(t->by_id, k->id, k);
}

size_t pubrates_size(const PubRates *t)
{
  return g_hash_table_size(t->by_id);
}
