/* hostcache.c - the leaf's super-node host cache (see hostcache.h).
 *
 * Invariants: at most HOSTCACHE_MAX entries, no two with one address; at
 * most one entry has worked set; configured entries are never evicted. */
#include "hostcache.h"

#include <arpa/inet.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>

struct HostCache {
  GPtrArray *entries; /* HostEntry*, owned */
  HostRandomFn rng;
  void *rng_ctx;
  unsigned next_rank;
  uint64_t refused;
  bool dirty;
};

HostCache *hostcache_new(HostRandomFn rng, void *rng_ctx)
{
  HostCache *h = g_new0(HostCache, 1);
  h->entries = g_ptr_array_new_with_free_func(g_free);
  h->rng = rng;
  h->rng_ctx = rng_ctx;
  return h;
}

void hostcache_free(HostCache *h)
{
  if (!h)
    return;
  g_ptr_array_unref(h->entries);
  g_free(h);
}

/* --- addresses ------------------------------------------------------------- */

/* Splits addr into host (no brackets) and port; false if malformed. */
static bool split_addr(const char *addr, char *host, size_t hostlen, unsigned *port)
{
  size_t len = strlen(addr);
  if (len == 0 || len > HOSTCACHE_ADDR_MAX)
    return false;
  const char *colon;
  const char *h0 = addr;
  size_t hl;
  if (addr[0] == '[') {
    const char *close = strchr(addr, ']');
    if (!close || close[1] != ':')
      return false;
    h0 = addr + 1;
    hl = (size_t)(close - h0);
    colon = close + 1;
  } else {
    colon = strrchr(addr, ':');
    if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
      return false; /* a bare IPv6 literal needs brackets */
    hl = (size_t)(colon - addr);
  }
  if (hl == 0 || hl >= hostlen)
    return false;
  memcpy(host, h0, hl);
  host[hl] = '\0';
  const char *p = colon + 1;
  if (*p == '\0' || strlen(p) > 5)
    return false;
  unsigned v = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9')
      return false;
    v = v * 10 + (unsigned)(*p - '0');
  }
  if (v == 0 || v > 65535)
    return false;
  *port = v;
  if (addr[0] == '[') {
    struct in6_addr a6;
    return inet_pton(AF_INET6, host, &a6) == 1;
  }
  for (const char *q = host; *q; q++)
    if (!g_ascii_isalnum(*q) && *q != '.' && *q != '-')
      return false;
  return true;
}

bool hostcache_addr_ok(const char *addr)
{
  char host[HOSTCACHE_ADDR_MAX + 1];
  unsigned port;
  return split_addr(addr, host, sizeof host, &port);
}

/* The address's /24 or /64: family 4 or 6, or 0 for a host name. */
static int prefix_of(const char *addr, uint8_t out[8])
{
  char host[HOSTCACHE_ADDR_MAX + 1];
  unsigned port;
  memset(out, 0, 8);
  if (!split_addr(addr, host, sizeof host, &port))
    return 0;
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, host, &a4) == 1) {
    memcpy(out, &a4, 3);
    return 4;
  }
  if (inet_pton(AF_INET6, host, &a6) == 1) {
    memcpy(out, &a6, 8);
    return 6;
  }
  return 0;
}

/* --- order ----------------------------------------------------------------- */

static int tier(const HostEntry *e)
{
  if (e->redirect)
    return 0;
  if (e->source == HOST_CONFIGURED)
    return 1;
  if (e->worked)
    return 2;
  return 3;
}

/* Unknown loads count as half full: a host we know nothing of goes after
 * one that says it has room. */
static unsigned load_key(const HostEntry *e)
{
  return e->leaf_load == HOSTCACHE_LOAD_UNKNOWN ? 50 : e->leaf_load;
}

static gint cmp_entries(gconstpointer pa, gconstpointer pb)
{
  const HostEntry *a = *(HostEntry *const *)pa, *b = *(HostEntry *const *)pb;
  int ta = tier(a), tb = tier(b);
  if (ta != tb)
    return ta - tb;
  switch (ta) {
  case 0:
    return a->redirect_n < b->redirect_n ? -1 : a->redirect_n > b->redirect_n;
  case 1:
    return a->rank < b->rank ? -1 : a->rank > b->rank;
  default:
    break;
  }
  if (a->proven != b->proven)
    return a->proven ? -1 : 1;
  if (a->failures != b->failures)
    return a->failures < b->failures ? -1 : 1;
  if (load_key(a) != load_key(b))
    return load_key(a) < load_key(b) ? -1 : 1;
  if (a->learned != b->learned)
    return a->learned > b->learned ? -1 : 1;
  return strcmp(a->addr, b->addr);
}

static void sort(HostCache *h)
{
  g_ptr_array_sort(h->entries, cmp_entries);
}

static HostEntry *find(const HostCache *h, const char *addr)
{
  for (guint i = 0; i < h->entries->len; i++) {
    HostEntry *e = g_ptr_array_index(h->entries, i);
    if (strcmp(e->addr, addr) == 0)
      return e;
  }
  return NULL;
}

/* --- adding ---------------------------------------------------------------- */

bool hostcache_add_configured(HostCache *h, const char *addr)
{
  if (!hostcache_addr_ok(addr))
    return false;
  HostEntry *e = find(h, addr);
  if (!e) {
    if (h->entries->len >= HOSTCACHE_MAX) {
      /* Room for the configured one: the worst learned entry goes. */
      sort(h);
      for (guint i = h->entries->len; i-- > 0;) {
        HostEntry *x = g_ptr_array_index(h->entries, i);
        if (x->source != HOST_CONFIGURED && !x->worked) {
          g_ptr_array_remove_index(h->entries, i);
          break;
        }
      }
      if (h->entries->len >= HOSTCACHE_MAX)
        return false;
    }
    e = g_new0(HostEntry, 1);
    g_strlcpy(e->addr, addr, sizeof e->addr);
    e->leaf_load = HOSTCACHE_LOAD_UNKNOWN;
    g_ptr_array_add(h->entries, e);
  }
  if (e->source == HOST_CONFIGURED && e->rank < h->next_rank)
    return true; /* given twice: the first place counts */
  e->source = HOST_CONFIGURED;
  e->rank = h->next_rank++;
  h->dirty = true;
  return true;
}

/* The learned entry a newcomer may replace among those for which pick
 * says yes: the most failures, then the stalest; with only_failed, one
 * that failed at least once. */
typedef bool (*PickFn)(const HostEntry *e, const void *ctx);

static int victim(const HostCache *h, PickFn pick, const void *ctx, bool only_failed)
{
  int best = -1;
  for (guint i = 0; i < h->entries->len; i++) {
    const HostEntry *e = g_ptr_array_index(h->entries, i);
    if (e->source == HOST_CONFIGURED || e->worked || (pick && !pick(e, ctx)))
      continue;
    if (only_failed && e->failures == 0)
      continue;
    const HostEntry *b = best >= 0 ? g_ptr_array_index(h->entries, best) : NULL;
    /* Proven hosts (they took us once) go last: a super node refreshing
     * its own claims must not push them out. */
    bool worse =
        !b || (e->proven < b->proven) ||
        (e->proven == b->proven &&
         (e->failures > b->failures || (e->failures == b->failures && e->learned < b->learned)));
    if (worse)
      best = (int)i;
  }
  return best;
}

typedef struct {
  int family;
  uint8_t prefix[8];
} Prefix;

static bool same_prefix(const HostEntry *e, const void *ctx)
{
  const Prefix *p = ctx;
  uint8_t q[8];
  return prefix_of(e->addr, q) == p->family && memcmp(q, p->prefix, 8) == 0;
}

static bool same_source(const HostEntry *e, const void *ctx)
{
  return memcmp(e->src_id, ctx, 32) == 0;
}

static unsigned count_learned(const HostCache *h, PickFn pick, const void *ctx)
{
  unsigned n = 0;
  for (guint i = 0; i < h->entries->len; i++) {
    const HostEntry *e = g_ptr_array_index(h->entries, i);
    if (e->source != HOST_CONFIGURED && pick(e, ctx))
      n++;
  }
  return n;
}

bool hostcache_learn(HostCache *h, const char *addr, const uint8_t *id, uint8_t leaf_load,
                     const uint8_t src[32], bool redirect, unsigned order, uint64_t now)
{
  if (!hostcache_addr_ok(addr))
    return false;
  if (leaf_load > 100)
    leaf_load = HOSTCACHE_LOAD_UNKNOWN;
  if (redirect && order == 0) /* a new refusal: the last one's hints are void */
    for (guint i = 0; i < h->entries->len; i++)
      ((HostEntry *)g_ptr_array_index(h->entries, i))->redirect = false;
  HostEntry *e = find(h, addr);
  if (!e) {
    Prefix p;
    p.family = prefix_of(addr, p.prefix);
    int drop = -1;
    if (p.family && count_learned(h, same_prefix, &p) >= HOSTCACHE_PER_PREFIX) {
      drop = victim(h, same_prefix, &p, true);
      if (drop < 0)
        goto refuse;
    } else if (count_learned(h, same_source, src) >= HOSTCACHE_PER_SOURCE) {
      drop = victim(h, same_source, src, true);
      if (drop < 0)
        goto refuse;
    } else if (h->entries->len >= HOSTCACHE_MAX) {
      drop = victim(h, NULL, NULL, false);
      if (drop < 0)
        goto refuse;
    }
    if (drop >= 0)
      g_ptr_array_remove_index(h->entries, (guint)drop);
    e = g_new0(HostEntry, 1);
    g_strlcpy(e->addr, addr, sizeof e->addr);
    e->source = redirect ? HOST_REDIRECT : HOST_LEARNED;
    memcpy(e->src_id, src, 32);
    g_ptr_array_add(h->entries, e);
  }
  /* A claim never replaces the id a session proved (hostcache_success). */
  if (id && !e->id_known) {
    memcpy(e->id, id, 32);
    e->id_known = true;
  }
  /* Loads are volatile and are not worth a write (an fsync) each: only a
   * new entry is. */
  if (e->learned == 0)
    h->dirty = true;
  e->leaf_load = leaf_load;
  e->learned = now ? now : 1;
  if (redirect) {
    e->redirect = true;
    e->redirect_n = order;
  }
  return true;
refuse:
  h->refused++;
  return false;
}

/* --- outcomes -------------------------------------------------------------- */

static uint64_t backoff_ms(HostCache *h, unsigned failures)
{
  uint64_t d = HOSTCACHE_BACKOFF_MIN_MS;
  for (unsigned i = 1; i < failures && d < HOSTCACHE_BACKOFF_MAX_MS; i++)
    d *= 2;
  d = MIN(d, (uint64_t)HOSTCACHE_BACKOFF_MAX_MS);
  uint16_t r = 0;
  if (h->rng)
    h->rng((uint8_t *)&r, sizeof r, h->rng_ctx);
  return d * 3 / 4 + (d / 2) * r / 65535;
}

void hostcache_success(HostCache *h, const char *addr, const uint8_t id[32], uint64_t now)
{
  HostEntry *e = find(h, addr);
  if (!e)
    return;
  for (guint i = 0; i < h->entries->len; i++)
    ((HostEntry *)g_ptr_array_index(h->entries, i))->worked = false;
  if (!e->id_known || memcmp(e->id, id, 32) != 0)
    h->dirty = true;
  memcpy(e->id, id, 32);
  e->id_known = true;
  e->worked = true;
  e->proven = true;
  e->redirect = false;
  e->failures = 0;
  e->retry_at = 0;
  e->last_ok = now ? now : 1;
  h->dirty = true;
}

void hostcache_failure(HostCache *h, const char *addr, uint64_t now)
{
  HostEntry *e = find(h, addr);
  if (!e)
    return;
  e->failures++;
  e->redirect = false;
  e->last_fail = now ? now : 1;
  e->retry_at = now + backoff_ms(h, e->failures);
}

void hostcache_refused(HostCache *h, const char *addr, uint32_t retry_ms, uint64_t now)
{
  HostEntry *e = find(h, addr);
  if (!e)
    return;
  hostcache_failure(h, addr, now);
  uint64_t r = CLAMP((uint64_t)retry_ms, HOSTCACHE_REFUSE_MIN_MS, HOSTCACHE_REFUSE_MAX_MS);
  e->retry_at = MAX(e->retry_at, now + r);
}

const char *hostcache_next(HostCache *h, const char *avoid, uint64_t now)
{
  sort(h);
  const HostEntry *fallback = NULL;
  for (guint i = 0; i < h->entries->len; i++) {
    const HostEntry *e = g_ptr_array_index(h->entries, i);
    if (e->retry_at > now)
      continue;
    if (avoid && strcmp(e->addr, avoid) == 0) {
      fallback = e;
      continue;
    }
    return e->addr;
  }
  return fallback ? fallback->addr : NULL;
}

uint64_t hostcache_next_ready(const HostCache *h)
{
  uint64_t t = UINT64_MAX;
  for (guint i = 0; i < h->entries->len; i++)
    t = MIN(t, ((const HostEntry *)g_ptr_array_index(h->entries, i))->retry_at);
  return t;
}

size_t hostcache_size(const HostCache *h)
{
  return h->entries->len;
}

const HostEntry *hostcache_get(HostCache *h, size_t i)
{
  if (i == 0)
    sort(h);
  return i < h->entries->len ? g_ptr_array_index(h->entries, (guint)i) : NULL;
}

uint64_t hostcache_refused_count(const HostCache *h)
{
  return h->refused;
}

bool hostcache_dirty(const HostCache *h)
{
  return h->dirty;
}

/* --- the file ---------------------------------------------------------------- */

#define FILE_MAGIC "# canopy-leaf super nodes 1"

static const char source_char[] = {'c', 'l', 'r'};

char *hostcache_format(HostCache *h)
{
  sort(h);
  GString *s = g_string_new(FILE_MAGIC "\n# address id leaf_load source attached (0 never, 1 "
                                       "once, 2 last)\n");
  for (guint i = 0; i < h->entries->len; i++) {
    const HostEntry *e = g_ptr_array_index(h->entries, i);
    char id[65] = "-";
    if (e->id_known)
      for (int k = 0; k < 32; k++)
        snprintf(id + 2 * k, 3, "%02x", e->id[k]);
    g_string_append_printf(s, "%s %s %u %c %d\n", e->addr, id, e->leaf_load, source_char[e->source],
                           e->worked   ? 2
                           : e->proven ? 1
                                       : 0);
  }
  h->dirty = false;
  return g_string_free(s, FALSE);
}

static bool parse_hex32(const char *s, uint8_t out[32])
{
  if (strlen(s) != 64)
    return false;
  for (int i = 0; i < 32; i++) {
    int hi = g_ascii_xdigit_value(s[2 * i]), lo = g_ascii_xdigit_value(s[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return true;
}

bool hostcache_parse(HostCache *h, const char *text, size_t len, uint64_t now, char *err,
                     size_t errlen)
{
  bool ok = false;
  if (len > HOSTCACHE_FILE_MAX || memchr(text, '\0', len)) {
    g_snprintf(err, errlen, "larger than %d bytes or not text", HOSTCACHE_FILE_MAX);
    return false;
  }
  gchar *copy = g_strndup(text, len);
  gchar **lines = g_strsplit(copy, "\n", -1);
  GPtrArray *got = g_ptr_array_new_with_free_func(g_free);
  unsigned lineno = 0;
  bool magic = false;
  for (gchar **l = lines; *l; l++) {
    lineno++;
    if (lineno == 1) {
      magic = strcmp(*l, FILE_MAGIC) == 0;
      if (!magic) {
        g_snprintf(err, errlen, "line 1: not a super-node list");
        goto out;
      }
      continue;
    }
    if (**l == '\0' || **l == '#')
      continue;
    gchar **f = g_strsplit(*l, " ", -1);
    HostEntry e = {0};
    bool good = g_strv_length(f) == 5 && hostcache_addr_ok(f[0]) &&
                (strcmp(f[1], "-") == 0 || parse_hex32(f[1], e.id)) && strlen(f[3]) == 1 &&
                strchr("clr", f[3][0]) && strlen(f[4]) == 1 && strchr("012", f[4][0]);
    unsigned load = 0;
    if (good) {
      char *end;
      load = (unsigned)strtoul(f[2], &end, 10);
      good = *f[2] && *end == '\0' && strlen(f[2]) <= 3 &&
             (load <= 100 || load == HOSTCACHE_LOAD_UNKNOWN);
    }
    if (good) {
      g_strlcpy(e.addr, f[0], sizeof e.addr);
      e.id_known = strcmp(f[1], "-") != 0;
      e.leaf_load = (uint8_t)load;
      e.worked = f[4][0] == '2';
      e.proven = f[4][0] != '0';
    }
    g_strfreev(f);
    if (!good) {
      g_snprintf(err, errlen, "line %u: expected \"address id leaf_load source attached\"", lineno);
      goto out;
    }
    if (got->len >= HOSTCACHE_MAX) {
      g_snprintf(err, errlen, "line %u: more than %d entries", lineno, HOSTCACHE_MAX);
      goto out;
    }
    g_ptr_array_add(got, g_memdup2(&e, sizeof e));
  }
  if (!magic) {
    g_snprintf(err, errlen, "empty");
    goto out;
  }
  /* Whole and well formed: merge. The file is in order, best first, so
   * freshness follows it. */
  for (guint i = 0; i < got->len; i++) {
    const HostEntry *e = g_ptr_array_index(got, i);
    /* Each entry passed the per-source cap when it was learned; the file
     * does not say from whom, so each is its own source here (one shared
     * "nobody" would keep only HOSTCACHE_PER_SOURCE of them). */
    uint8_t src[32] = {0xff};
    memcpy(src + 1, &i, sizeof i);
    uint64_t t = now > got->len ? now - i : 1;
    if (!find(h, e->addr) &&
        !hostcache_learn(h, e->addr, e->id_known ? e->id : NULL, e->leaf_load, src, false, 0, t))
      continue;
    HostEntry *x = find(h, e->addr);
    if (e->worked) {
      for (guint k = 0; k < h->entries->len; k++)
        ((HostEntry *)g_ptr_array_index(h->entries, k))->worked = false;
      x->worked = true;
    }
    x->proven |= e->proven;
    if (e->id_known && !x->id_known) {
      memcpy(x->id, e->id, 32);
      x->id_known = true;
    }
  }
  h->dirty = false;
  ok = true;
out:
  g_ptr_array_unref(got);
  g_strfreev(lines);
  g_free(copy);
  return ok;
}
