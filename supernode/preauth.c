/* preauth.c - budget, fairness and deadlines of pre-auth connections.
 *
 * Every entry sits in up to three admission-ordered queues: all entries (the
 * handshake deadline), the ones not heard from yet (the silent deadline) and
 * its prefix's (the newest to shed). Deadlines are admission time plus one
 * constant, so each queue's head is its next deadline: no timer per entry and
 * no scan. Only a full budget scans, over the prefixes in use (at most
 * max_total of them), to find the most represented one.
 */
#include "preauth.h"

#include <glib.h>
#include <string.h>

#include "shorthash.h"

/* A source address or prefix: family tag, then 16 bytes (IPv4 in the first
 * 4, the rest zero). Compared as bytes. */
typedef struct {
  uint8_t b[17];
} SrcKey;

typedef struct {
  SrcKey key;
  unsigned count;
  GQueue entries; /* Entry*, oldest first */
} Prefix;

typedef struct {
  uint64_t conn;
  uint64_t at; /* admitted */
  SrcKey addr;
  Prefix *prefix;
  GList all_link, silent_link, prefix_link; /* embedded: no allocation per queue */
  bool heard;
} Entry;

struct Preauth {
  PreauthLimits lim;
  GHashTable *by_conn;  /* &Entry.conn -> Entry* (owns) */
  GHashTable *by_addr;  /* SrcKey* -> count (GUINT_TO_POINTER), key owned */
  GHashTable *prefixes; /* &Prefix.key -> Prefix* (owns) */
  GQueue all, silent;
  PreauthStats st;
};

/* Peers pick their addresses (a /64 holds 2^64 of them): keyed hash. */
static guint key_hash(gconstpointer k)
{
  return (guint)shorthash(k, sizeof(SrcKey));
}

static gboolean key_equal(gconstpointer a, gconstpointer b)
{
  return memcmp(a, b, sizeof(SrcKey)) == 0;
}

static guint conn_hash(gconstpointer k)
{
  return g_int64_hash(k);
}

/* addr's key and its prefix's key; false if addr is neither 4 nor 16 bytes. */
static bool make_keys(const uint8_t *addr, size_t len, SrcKey *a, SrcKey *pfx)
{
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  memset(a, 0, sizeof *a);
  if (len == 16 && memcmp(addr, mapped, sizeof mapped) == 0) {
    addr += 12; /* ::ffff:a.b.c.d is IPv4 a.b.c.d (a dual-stack listener) */
    len = 4;
  }
  if (len == 4) {
    a->b[0] = 4;
    memcpy(a->b + 1, addr, 4);
    *pfx = *a;
    memset(pfx->b + 1 + PREAUTH_PREFIX_V4 / 8, 0, 16 - PREAUTH_PREFIX_V4 / 8);
  } else if (len == 16) {
    a->b[0] = 6;
    memcpy(a->b + 1, addr, 16);
    *pfx = *a;
    memset(pfx->b + 1 + PREAUTH_PREFIX_V6 / 8, 0, 16 - PREAUTH_PREFIX_V6 / 8);
  } else {
    return false;
  }
  return true;
}

static void apply_limits(Preauth *p, const PreauthLimits *lim)
{
  p->lim = *lim;
  if (!p->lim.max_total)
    p->lim.max_total = PREAUTH_MAX_TOTAL;
  if (!p->lim.max_per_addr)
    p->lim.max_per_addr = PREAUTH_MAX_PER_ADDR;
  if (!p->lim.max_per_prefix)
    p->lim.max_per_prefix = PREAUTH_MAX_PER_PREFIX;
  if (!p->lim.silent_ms)
    p->lim.silent_ms = PREAUTH_SILENT_MS;
  if (!p->lim.timeout_ms)
    p->lim.timeout_ms = PREAUTH_TIMEOUT_MS;
}

Preauth *preauth_new(const PreauthLimits *lim)
{
  Preauth *p = g_new0(Preauth, 1);
  static const PreauthLimits defaults = {0};
  apply_limits(p, lim ? lim : &defaults);
  p->by_conn = g_hash_table_new_full(conn_hash, g_int64_equal, NULL, g_free);
  p->by_addr = g_hash_table_new_full(key_hash, key_equal, g_free, NULL);
  p->prefixes = g_hash_table_new_full(key_hash, key_equal, NULL, g_free);
  g_queue_init(&p->all);
  g_queue_init(&p->silent);
  return p;
}

void preauth_free(Preauth *p)
{
  if (!p)
    return;
  g_hash_table_destroy(p->by_conn);
  g_hash_table_destroy(p->by_addr);
  g_hash_table_destroy(p->prefixes);
  g_free(p);
}

void preauth_set_limits(Preauth *p, const PreauthLimits *lim)
{
  apply_limits(p, lim);
}

static unsigned addr_count(const Preauth *p, const SrcKey *a)
{
  return GPOINTER_TO_UINT(g_hash_table_lookup(p->by_addr, a));
}

static void addr_add(Preauth *p, const SrcKey *a, int delta)
{
  unsigned n = addr_count(p, a) + (unsigned)delta;
  if (n == 0)
    g_hash_table_remove(p->by_addr, a);
  else
    g_hash_table_replace(p->by_addr, g_memdup2(a, sizeof *a), GUINT_TO_POINTER(n));
}

/* Takes e out of every queue and table, and frees it. */
static void remove_entry(Preauth *p, Entry *e)
{
  g_queue_unlink(&p->all, &e->all_link);
  if (!e->heard)
    g_queue_unlink(&p->silent, &e->silent_link);
  Prefix *px = e->prefix;
  g_queue_unlink(&px->entries, &e->prefix_link);
  if (--px->count == 0)
    g_hash_table_remove(p->prefixes, &px->key);
  addr_add(p, &e->addr, -1);
  g_hash_table_remove(p->by_conn, &e->conn); /* frees e */
}

typedef struct {
  Prefix *most;
} Most;

static void most_cb(gpointer k, gpointer v, gpointer ud)
{
  Most *m = ud;
  Prefix *px = v;
  if (!m->most || px->count > m->most->count)
    m->most = px;
}

bool preauth_admit(Preauth *p, uint64_t conn, const uint8_t *addr, size_t len, uint64_t now,
                   uint64_t *shed)
{
  *shed = 0;
  SrcKey a, pk;
  /* An address we cannot account (or a shell bug) gets no budget. */
  if (conn == 0 || !make_keys(addr, len, &a, &pk) || g_hash_table_contains(p->by_conn, &conn))
    return false;
  if (addr_count(p, &a) >= p->lim.max_per_addr) {
    p->st.refused_addr++;
    return false;
  }
  Prefix *px = g_hash_table_lookup(p->prefixes, &pk);
  unsigned in_prefix = px ? px->count : 0;
  if (in_prefix >= p->lim.max_per_prefix) {
    p->st.refused_prefix++;
    return false;
  }
  if (g_hash_table_size(p->by_conn) >= p->lim.max_total) {
    Most m = {NULL};
    g_hash_table_foreach(p->prefixes, most_cb, &m);
    /* The newcomer's own prefix is the most represented (ties included):
     * it is the newest of that prefix, so it is the one that gives way. */
    if (!m.most || in_prefix >= m.most->count) {
      p->st.refused_full++;
      return false;
    }
    Entry *victim = g_queue_peek_tail(&m.most->entries);
    *shed = victim->conn;
    p->st.shed++;
    remove_entry(p, victim);
  }
  if (!px) {
    px = g_new0(Prefix, 1);
    px->key = pk;
    g_queue_init(&px->entries);
    g_hash_table_insert(p->prefixes, &px->key, px);
  }
  Entry *e = g_new0(Entry, 1);
  e->conn = conn;
  e->at = now;
  e->addr = a;
  e->prefix = px;
  e->all_link.data = e->silent_link.data = e->prefix_link.data = e;
  g_queue_push_tail_link(&p->all, &e->all_link);
  g_queue_push_tail_link(&p->silent, &e->silent_link);
  g_queue_push_tail_link(&px->entries, &e->prefix_link);
  px->count++;
  addr_add(p, &a, +1);
  g_hash_table_insert(p->by_conn, &e->conn, e);
  p->st.admitted++;
  return true;
}

void preauth_heard(Preauth *p, uint64_t conn)
{
  Entry *e = g_hash_table_lookup(p->by_conn, &conn);
  if (!e || e->heard)
    return;
  e->heard = true;
  g_queue_unlink(&p->silent, &e->silent_link);
}

bool preauth_release(Preauth *p, uint64_t conn)
{
  Entry *e = g_hash_table_lookup(p->by_conn, &conn);
  if (!e)
    return false;
  remove_entry(p, e);
  return true;
}

bool preauth_due(Preauth *p, uint64_t now, uint64_t *conn, PreauthDue *why)
{
  Entry *e = g_queue_peek_head(&p->all);
  if (e && now >= e->at + p->lim.timeout_ms) {
    *conn = e->conn;
    *why = PREAUTH_DUE_TIMEOUT;
    p->st.timed_out++;
    remove_entry(p, e);
    return true;
  }
  e = g_queue_peek_head(&p->silent);
  if (e && now >= e->at + p->lim.silent_ms) {
    *conn = e->conn;
    *why = PREAUTH_DUE_SILENT;
    return true;
  }
  return false;
}

void preauth_drop_silent(Preauth *p, uint64_t conn)
{
  Entry *e = g_hash_table_lookup(p->by_conn, &conn);
  if (!e)
    return;
  p->st.silent++;
  remove_entry(p, e);
}

uint64_t preauth_next_deadline(const Preauth *p)
{
  uint64_t next = UINT64_MAX;
  const Entry *e = g_queue_peek_head((GQueue *)&p->all);
  if (e)
    next = e->at + p->lim.timeout_ms;
  e = g_queue_peek_head((GQueue *)&p->silent);
  if (e && e->at + p->lim.silent_ms < next)
    next = e->at + p->lim.silent_ms;
  return next;
}

unsigned preauth_count(const Preauth *p)
{
  return g_hash_table_size(p->by_conn);
}

unsigned preauth_count_addr(const Preauth *p, const uint8_t *addr, size_t len)
{
  SrcKey a, pk;
  return make_keys(addr, len, &a, &pk) ? addr_count(p, &a) : 0;
}

unsigned preauth_count_prefix(const Preauth *p, const uint8_t *addr, size_t len)
{
  SrcKey a, pk;
  if (!make_keys(addr, len, &a, &pk))
    return 0;
  const Prefix *px = g_hash_table_lookup(p->prefixes, &pk);
  return px ? px->count : 0;
}

const PreauthStats *preauth_stats(const Preauth *p)
{
  return &p->st;
}

uint64_t preauth_refused(const Preauth *p)
{
  return p->st.refused_addr + p->st.refused_prefix + p->st.refused_full;
}
