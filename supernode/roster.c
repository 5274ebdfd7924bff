/* roster.c - leaf records by node id, each one index owner. */
#include "roster.h"

#include <glib.h>
#include <string.h>

#include "shorthash.h"

struct Roster {
  Index *ix;           /* borrowed */
  GHashTable *by_id;   /* id -> Record*, owned */
  uint64_t next_owner; /* owner handles are never reused */
};

guint node_id_hash(gconstpointer k)
{
  /* Node ids are hashes of keys, but a Sybil grinds keys until the bits a
   * plain table looks at collide: hash all 32 bytes under our secret key. */
  return (guint)shorthash(k, 32);
}

gboolean node_id_equal(gconstpointer a, gconstpointer b)
{
  return memcmp(a, b, 32) == 0;
}

static void record_free(gpointer p)
{
  g_free(p);
}

Roster *roster_new(Index *ix)
{
  Roster *r = g_new0(Roster, 1);
  r->ix = ix;
  r->by_id = g_hash_table_new_full(node_id_hash, node_id_equal, NULL, record_free);
  r->next_owner = 1;
  return r;
}

void roster_free(Roster *r)
{
  if (!r)
    return;
  g_hash_table_destroy(r->by_id);
  g_free(r);
}

Record *roster_get(Roster *r, const uint8_t id[32])
{
  return g_hash_table_lookup(r->by_id, id);
}

Record *roster_ensure(Roster *r, const uint8_t id[32])
{
  Record *rec = roster_get(r, id);
  if (rec)
    return rec;
  rec = g_new0(Record, 1);
  memcpy(rec->id, id, 32);
  rec->owner = r->next_owner++;
  g_hash_table_insert(r->by_id, rec->id, rec);
  return rec;
}

void roster_remove(Roster *r, Record *rec)
{
  index_remove_owner(r->ix, rec->owner);
  g_hash_table_remove(r->by_id, rec->id);
}

static gboolean remove_all_cb(gpointer k, gpointer v, gpointer ud)
{
  index_remove_owner(((Roster *)ud)->ix, ((Record *)v)->owner);
  return TRUE;
}

void roster_clear(Roster *r)
{
  g_hash_table_foreach_remove(r->by_id, remove_all_cb, r);
}

size_t roster_publish(Roster *r, Record *rec, bool reset, const WireEntry *e, size_t n)
{
  if (reset) {
    index_remove_owner(r->ix, rec->owner);
    rec->count = 0;
    memset(rec->digest, 0, sizeof rec->digest);
  }
  size_t refused = 0;
  for (size_t i = 0; i < n; i++) {
    IndexResult res =
        index_add(r->ix, rec->owner, rec->id, e[i].name.p, e[i].name.len, e[i].size, e[i].cid);
    if (res != INDEX_OK) {
      /* A duplicate is already counted; anything else was refused. */
      refused += res != INDEX_DUPLICATE;
      continue;
    }
    /* No copy here: the index holds the entry, and a snapshot reads it
     * back from there (about 140 bytes an entry saved, issue 12). */
    rec->count++;
    wire_digest_entry(rec->digest, e[i].cid, e[i].size, e[i].name.p, e[i].name.len);
  }
  return refused;
}

size_t roster_size(const Roster *r)
{
  return g_hash_table_size(r->by_id);
}

typedef struct {
  RosterFn fn;
  void *ctx;
} Iter;

static void iter_cb(gpointer k, gpointer v, gpointer ud)
{
  Iter *it = ud;
  it->fn(v, it->ctx);
}

void roster_foreach(Roster *r, RosterFn fn, void *ctx)
{
  Iter it = {fn, ctx};
  g_hash_table_foreach(r->by_id, iter_cb, &it);
}
