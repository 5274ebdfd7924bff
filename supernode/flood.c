/* flood.c - query-id table: a hash for lookups and a FIFO for expiry.
 *
 * Every entry has the same lifetime, so insertion order is expiry order and a
 * queue gives the oldest in O(1).
 */
#include "flood.h"

#include <glib.h>
#include <string.h>

#include "shorthash.h"

typedef struct {
  uint8_t qid[FLOOD_QID_LEN];
  uint64_t expires;
  FloodRoute route;
} Seen;

struct Flood {
  GHashTable *by_qid; /* qid bytes (inside Seen) -> Seen*, owns nothing */
  GQueue fifo;        /* Seen*, oldest first; owns them */
  size_t max_entries;
  uint64_t lifetime_ms;
};

guint flood_qid_hash(const void *k)
{
  /* Query ids are chosen by peers (a neighbour's QUERY, a leaf's signal
   * id): hash all of it under our secret key, or ids sharing the bytes we
   * look at would all land in one probe chain (issue 11, finding 7). */
  return (guint)shorthash(k, FLOOD_QID_LEN);
}

static gboolean qid_equal(gconstpointer a, gconstpointer b)
{
  return memcmp(a, b, FLOOD_QID_LEN) == 0;
}

Flood *flood_new(size_t max_entries, uint64_t lifetime_ms)
{
  Flood *f = g_new0(Flood, 1);
  f->by_qid = g_hash_table_new(flood_qid_hash, qid_equal);
  g_queue_init(&f->fifo);
  f->max_entries = max_entries ? max_entries : 1;
  f->lifetime_ms = lifetime_ms;
  return f;
}

void flood_free(Flood *f)
{
  if (!f)
    return;
  g_hash_table_destroy(f->by_qid);
  g_queue_clear_full(&f->fifo, g_free);
  g_free(f);
}

static void drop_oldest(Flood *f)
{
  Seen *s = g_queue_pop_head(&f->fifo);
  if (s) {
    g_hash_table_remove(f->by_qid, s->qid);
    g_free(s);
  }
}

void flood_expire(Flood *f, uint64_t now)
{
  Seen *s;
  while ((s = g_queue_peek_head(&f->fifo)) && s->expires <= now)
    drop_oldest(f);
}

bool flood_first_seen(Flood *f, const uint8_t qid[FLOOD_QID_LEN], const FloodRoute *origin,
                      uint64_t now)
{
  flood_expire(f, now);
  if (g_hash_table_contains(f->by_qid, qid))
    return false;
  while (g_queue_get_length(&f->fifo) >= f->max_entries)
    drop_oldest(f);
  Seen *s = g_new0(Seen, 1);
  memcpy(s->qid, qid, FLOOD_QID_LEN);
  s->expires = now + f->lifetime_ms;
  s->route = *origin;
  s->route.hits_sent = 0;
  g_queue_push_tail(&f->fifo, s);
  g_hash_table_insert(f->by_qid, s->qid, s);
  return true;
}

FloodRoute *flood_route(Flood *f, const uint8_t qid[FLOOD_QID_LEN], uint64_t now)
{
  Seen *s = g_hash_table_lookup(f->by_qid, qid);
  return s && s->expires > now ? &s->route : NULL;
}

uint64_t flood_next_expiry(const Flood *f)
{
  const Seen *s = g_queue_peek_head((GQueue *)&f->fifo);
  return s ? s->expires : UINT64_MAX;
}

size_t flood_size(const Flood *f)
{
  return g_queue_get_length((GQueue *)&f->fifo);
}
