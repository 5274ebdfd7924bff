/* fairshare.c - two-level round robin under one token bucket.
 *
 * Invariants:
 * - An Origin exists exactly while it has queued items; it is then in its
 *   group's fresh list or its ring, once. A Group exists exactly while one
 *   of its origins does; it is then in the scheduler's fresh list or ring,
 *   once. So memory follows what is queued, and what is queued is capped.
 * - Fresh lists (fq_codel's "new flows"): an origin or group that had
 *   nothing queued is served before the backlogged ones, once, then joins
 *   the ring's tail. A sender that asks rarely (an honest leaf's search)
 *   thus waits for no round of the backlogged crowd, while a backlogged
 *   sender cannot stay fresh; the total rate caps the fresh ones too.
 * - Inside an origin items are oldest first, so staleness is checked at the
 *   head only.
 */
#include "fairshare.h"

#include <glib.h>
#include <math.h>

typedef struct FsGroup FsGroup;

typedef struct {
  void *item;
  uint64_t at; /* when it was queued */
} FsItem;

typedef struct {
  uint64_t key;
  FsGroup *group;
  GQueue items; /* FsItem*, oldest first */
  bool fresh;   /* in group->fresh, not yet served */
} FsOrigin;

struct FsGroup {
  uint64_t key;
  GQueue fresh; /* FsOrigin* newly active, served first */
  GQueue ring;  /* FsOrigin* backlogged, the next one to serve first */
  size_t queued;
  bool is_fresh; /* in FairShare.fresh */
};

struct FairShare {
  FairShareConfig cfg;
  FairShareFreeFn free_item;
  double tokens;
  uint64_t last_ms;
  GHashTable *origins; /* &FsOrigin.key -> FsOrigin*, owned */
  GHashTable *groups;  /* &FsGroup.key -> FsGroup*, owned */
  GQueue fresh;        /* FsGroup* newly active, served first */
  GQueue ring;         /* FsGroup* backlogged, the next one to serve first */
  size_t queued;
  FairShareStats stats;
};

static bool cfg_ok(const FairShareConfig *c)
{
  return c->rate > 0 && isfinite(c->rate) && c->burst >= 1 && isfinite(c->burst) &&
         c->max_per_origin >= 1 && c->max_per_group >= 1 && c->max_total >= 1;
}

FairShare *fairshare_new(const FairShareConfig *cfg, FairShareFreeFn free_item, uint64_t now)
{
  if (!cfg || !cfg_ok(cfg))
    return NULL;
  FairShare *fs = g_new0(FairShare, 1);
  fs->cfg = *cfg;
  fs->free_item = free_item;
  fs->tokens = cfg->burst;
  fs->last_ms = now;
  fs->origins = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
  fs->groups = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
  g_queue_init(&fs->fresh);
  g_queue_init(&fs->ring);
  return fs;
}

static void drop_item(FairShare *fs, FsItem *it)
{
  if (fs->free_item)
    fs->free_item(it->item);
  g_free(it);
}

/* Takes the oldest item of o out of the queues; removes o (and its group)
 * when that was the last. The caller owns the FsItem. */
static FsItem *take_head(FairShare *fs, FsOrigin *o)
{
  FsItem *it = g_queue_pop_head(&o->items);
  FsGroup *g = o->group;
  g->queued--;
  fs->queued--;
  if (g_queue_is_empty(&o->items)) {
    g_queue_remove(o->fresh ? &g->fresh : &g->ring, o);
    g_hash_table_remove(fs->origins, &o->key);
    if (g_queue_is_empty(&g->fresh) && g_queue_is_empty(&g->ring)) {
      g_queue_remove(g->is_fresh ? &fs->fresh : &fs->ring, g);
      g_hash_table_remove(fs->groups, &g->key);
    }
  }
  return it;
}

void fairshare_free(FairShare *fs)
{
  if (!fs)
    return;
  GHashTableIter iter;
  gpointer v;
  g_hash_table_iter_init(&iter, fs->origins);
  while (g_hash_table_iter_next(&iter, NULL, &v)) {
    FsOrigin *o = v;
    FsItem *it;
    while ((it = g_queue_pop_head(&o->items)))
      drop_item(fs, it);
  }
  g_hash_table_iter_init(&iter, fs->groups);
  while (g_hash_table_iter_next(&iter, NULL, &v)) {
    g_queue_clear(&((FsGroup *)v)->fresh);
    g_queue_clear(&((FsGroup *)v)->ring);
  }
  g_queue_clear(&fs->fresh);
  g_queue_clear(&fs->ring);
  g_hash_table_destroy(fs->origins);
  g_hash_table_destroy(fs->groups);
  g_free(fs);
}

static void refill(FairShare *fs, uint64_t now)
{
  if (now <= fs->last_ms)
    return;
  fs->tokens += (double)(now - fs->last_ms) * fs->cfg.rate / 1000.0;
  if (fs->tokens > fs->cfg.burst)
    fs->tokens = fs->cfg.burst;
  fs->last_ms = now;
}

/* The origin with the most items in g (first found on a tie). */
static FsOrigin *longest_in(FsGroup *g)
{
  FsOrigin *best = NULL;
  GList *lists[2] = {g->ring.head, g->fresh.head};
  for (int k = 0; k < 2; k++)
    for (GList *l = lists[k]; l; l = l->next) {
      FsOrigin *o = l->data;
      if (!best || o->items.length > best->items.length)
        best = o;
    }
  return best;
}

static FsGroup *longest_group(FairShare *fs)
{
  FsGroup *best = NULL;
  GList *lists[2] = {fs->ring.head, fs->fresh.head};
  for (int k = 0; k < 2; k++)
    for (GList *l = lists[k]; l; l = l->next) {
      FsGroup *g = l->data;
      if (!best || g->queued > best->queued)
        best = g;
    }
  return best;
}

/* Makes room for one item of `mine` (which has `have` items queued) by
 * pushing out the oldest item of victim, if victim holds more than `have`.
 * Returns false if the new item must be refused instead. */
static bool push_out(FairShare *fs, FsOrigin *victim, size_t have)
{
  if (!victim || victim->items.length <= have)
    return false;
  drop_item(fs, take_head(fs, victim));
  fs->stats.pushed_out++;
  return true;
}

bool fairshare_push(FairShare *fs, uint64_t group, uint64_t origin, void *item, uint64_t now)
{
  FsOrigin *o = g_hash_table_lookup(fs->origins, &origin);
  FsGroup *g = o ? o->group : g_hash_table_lookup(fs->groups, &group);
  size_t have = o ? o->items.length : 0;
  bool ok = have < fs->cfg.max_per_origin;
  /* Over the group's cap: the longest origin of the group pays. */
  if (ok && g && g->queued >= fs->cfg.max_per_group)
    ok = push_out(fs, longest_in(g), have);
  /* Over the total: the longest origin of the longest group pays, unless
   * that group is ours and we are its longest. A group only pays while it
   * holds more than ours, so groups keep equal room too. */
  if (ok && fs->queued >= fs->cfg.max_total) {
    FsGroup *lg = longest_group(fs);
    size_t ours = g ? g->queued : 0;
    if (lg == g || !lg || lg->queued <= ours)
      ok = g ? push_out(fs, longest_in(g), have) : false;
    else
      ok = push_out(fs, longest_in(lg), 0);
  }
  if (!ok) {
    fs->stats.refused++;
    if (fs->free_item)
      fs->free_item(item);
    return false;
  }
  /* push_out may have removed our own origin or group (never ours while it
   * holds items we keep, but look them up again rather than assume). */
  o = g_hash_table_lookup(fs->origins, &origin);
  if (!o) {
    g = g_hash_table_lookup(fs->groups, &group);
    if (!g) {
      g = g_new0(FsGroup, 1);
      g->key = group;
      g_queue_init(&g->fresh);
      g_queue_init(&g->ring);
      g->is_fresh = true;
      g_hash_table_insert(fs->groups, &g->key, g);
      g_queue_push_tail(&fs->fresh, g);
    }
    o = g_new0(FsOrigin, 1);
    o->key = origin;
    o->group = g;
    g_queue_init(&o->items);
    o->fresh = true;
    g_hash_table_insert(fs->origins, &o->key, o);
    g_queue_push_tail(&g->fresh, o);
  }
  FsItem *it = g_new(FsItem, 1);
  it->item = item;
  it->at = now;
  g_queue_push_tail(&o->items, it);
  o->group->queued++;
  fs->queued++;
  fs->stats.queued++;
  return true;
}

void *fairshare_next(FairShare *fs, uint64_t now, uint64_t *origin)
{
  refill(fs, now);
  while (fs->queued > 0) {
    if (fs->tokens < 1.0)
      return NULL;
    /* Serve the first fresh group, else the group at the head of the
     * ring, and in it likewise an origin; both go to the ring's tail (if
     * they still have items after this one). */
    FsGroup *g = g_queue_pop_head(&fs->fresh);
    if (!g)
      g = g_queue_pop_head(&fs->ring);
    g->is_fresh = false;
    g_queue_push_tail(&fs->ring, g);
    FsOrigin *o = g_queue_pop_head(&g->fresh);
    if (!o)
      o = g_queue_pop_head(&g->ring);
    o->fresh = false;
    g_queue_push_tail(&g->ring, o);
    uint64_t key = o->key;
    FsItem *it = take_head(fs, o);
    if (fs->cfg.max_wait_ms && now - it->at > fs->cfg.max_wait_ms) {
      fs->stats.stale++;
      drop_item(fs, it);
      continue;
    }
    fs->tokens -= 1.0;
    fs->stats.released++;
    if (origin)
      *origin = key;
    void *item = it->item;
    g_free(it);
    return item;
  }
  return NULL;
}

uint64_t fairshare_deadline(const FairShare *fs)
{
  if (fs->queued == 0)
    return UINT64_MAX;
  if (fs->tokens >= 1.0)
    return fs->last_ms;
  double wait = ceil((1.0 - fs->tokens) * 1000.0 / fs->cfg.rate);
  return fs->last_ms + (uint64_t)MAX(wait, 1.0);
}

void fairshare_forget(FairShare *fs, uint64_t origin)
{
  FsOrigin *o;
  while ((o = g_hash_table_lookup(fs->origins, &origin))) {
    fs->stats.forgotten++;
    drop_item(fs, take_head(fs, o));
  }
}

void fairshare_set_rate(FairShare *fs, double rate, double burst, uint64_t now)
{
  if (!(rate > 0) || !isfinite(rate) || !(burst >= 1) || !isfinite(burst))
    return;
  refill(fs, now);
  fs->cfg.rate = rate;
  fs->cfg.burst = burst;
  if (fs->tokens > burst)
    fs->tokens = burst;
}

size_t fairshare_queued(const FairShare *fs)
{
  return fs->queued;
}

size_t fairshare_origin_queued(const FairShare *fs, uint64_t origin)
{
  const FsOrigin *o = g_hash_table_lookup(fs->origins, &origin);
  return o ? o->items.length : 0;
}

size_t fairshare_origins(const FairShare *fs)
{
  return g_hash_table_size(fs->origins);
}

size_t fairshare_groups(const FairShare *fs)
{
  return g_hash_table_size(fs->groups);
}

const FairShareStats *fairshare_stats(const FairShare *fs)
{
  return &fs->stats;
}
