/* mesh.c - address book with per-address backoff, verified gossip and caps.
 *
 * Invariant: an address is passed on (mesh_sample) only while it is verified
 * (a dial of it completed a handshake as its id) and not failing. Claims
 * (HELLO listen addresses, PEERS entries) are kept but never spread.
 */
#include "mesh.h"

#include "degree.h"

#include <gio/gio.h>
#include <string.h>

struct Mesh {
  uint8_t self_id[32];
  GPtrArray *addrs; /* MeshAddr*, owned */
  uint64_t backoff_min, backoff_max;
  uint64_t seq; /* learn order */
  uint64_t evicted, refused, probes_ok, probes_bad;
  uint64_t calls; /* mesh_hosts calls: its shuffle's salt */
  bool direction; /* mesh_set_direction */
};

Mesh *mesh_new(const uint8_t self_id[32], uint64_t backoff_min_ms, uint64_t backoff_max_ms)
{
  Mesh *m = g_new0(Mesh, 1);
  memcpy(m->self_id, self_id, 32);
  m->addrs = g_ptr_array_new_with_free_func(g_free);
  m->backoff_min = backoff_min_ms;
  m->backoff_max = backoff_max_ms;
  return m;
}

void mesh_free(Mesh *m)
{
  if (!m)
    return;
  g_ptr_array_unref(m->addrs);
  g_free(m);
}

MeshAddr *mesh_find(Mesh *m, const char *addr)
{
  for (guint i = 0; i < m->addrs->len; i++) {
    MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (strcmp(a->addr, addr) == 0)
      return a;
  }
  return NULL;
}

/* "host:port" with a non-empty host and a port in 1..65535; IPv6 hosts are
 * bracketed. Anything else from a peer is ignored. */
static bool addr_ok(const char *addr)
{
  size_t len = strlen(addr);
  if (len == 0 || len > MESH_ADDR_MAX)
    return false;
  const char *colon = strrchr(addr, ':');
  if (!colon || colon == addr || colon[1] == '\0')
    return false;
  char *end;
  guint64 port = g_ascii_strtoull(colon + 1, &end, 10);
  if (*end || port == 0 || port > 65535)
    return false;
  for (const char *p = addr; p < colon; p++)
    if (!g_ascii_isalnum(*p) && !strchr(".-[]:", *p))
      return false;
  return true;
}

/* The IP prefix of an address literal (family 0 for a host name). */
static void prefix_of(const char *addr, MeshAddr *a)
{
  const char *colon = strrchr(addr, ':');
  gchar *host = g_strndup(addr, (gsize)(colon - addr));
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
    memmove(host, host + 1, hl - 2);
    host[hl - 2] = '\0';
  }
  a->family = 0;
  memset(a->prefix, 0, sizeof a->prefix);
  GInetAddress *ia = g_inet_address_new_from_string(host);
  if (ia) {
    const guint8 *b = g_inet_address_to_bytes(ia);
    if (g_inet_address_get_family(ia) == G_SOCKET_FAMILY_IPV4) {
      a->family = 4;
      memcpy(a->prefix, b, 3);
    } else {
      a->family = 6;
      memcpy(a->prefix, b, 8);
    }
    g_object_unref(ia);
  }
  g_free(host);
}

static bool same_prefix(const MeshAddr *a, const MeshAddr *b, bool narrow)
{
  if (a->family == 0 || a->family != b->family)
    return false;
  size_t n = a->family == 4 ? (narrow ? 3 : 2) : (narrow ? 8 : 4);
  return memcmp(a->prefix, b->prefix, n) == 0;
}

/* May a newcomer push a out? Never the operator's, a live link, a dial in
 * progress, a current neighbour's claim, or a verified address that works. */
static bool evictable(const MeshAddr *a)
{
  return !a->configured && a->linked_conn == 0 && !a->dialing && a->claim_conn == 0 &&
         (!a->verified || a->failures > 0);
}

typedef enum { SCOPE_ALL, SCOPE_NARROW, SCOPE_WIDE, SCOPE_SOURCE } Scope;

/* FNV-1a over our id, salt and the address: an order of addresses that
 * differs per node (and per salt) and that nobody else can steer. */
static uint32_t addr_hash(const Mesh *m, const char *addr, uint64_t salt)
{
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < 8; i++)
    h = (h ^ m->self_id[i]) * 16777619u;
  for (size_t i = 0; i < 8; i++)
    h = (h ^ (uint8_t)(salt >> (8 * i))) * 16777619u;
  for (const char *p = addr; *p; p++)
    h = (h ^ (uint8_t)*p) * 16777619u;
  return h;
}

static bool passable(const MeshAddr *a, const uint8_t *exclude_id);

static bool in_scope(const MeshAddr *a, const MeshAddr *like, Scope s)
{
  if (a->configured)
    return false; /* the operator's addresses count against no cap */
  switch (s) {
  case SCOPE_ALL:
    return true;
  case SCOPE_NARROW:
    return same_prefix(a, like, true);
  case SCOPE_WIDE:
    return same_prefix(a, like, false);
  case SCOPE_SOURCE:
    return a->src_conn == like->src_conn && !a->verified;
  }
  return false;
}

/* Ensures the scope holds fewer than cap addresses, evicting one if it must
 * (most failures first, then least recently learned). False: no room. */
static bool make_room(Mesh *m, const MeshAddr *like, Scope s, unsigned cap)
{
  unsigned n = 0;
  guint victim = G_MAXUINT;
  for (guint i = 0; i < m->addrs->len; i++) {
    const MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (!in_scope(a, like, s))
      continue;
    n++;
    if (!evictable(a))
      continue;
    const MeshAddr *v = victim == G_MAXUINT ? NULL : g_ptr_array_index(m->addrs, victim);
    if (!v || a->failures > v->failures || (a->failures == v->failures && a->seen < v->seen))
      victim = i;
  }
  if (n < cap)
    return true;
  if (victim == G_MAXUINT)
    return false;
  g_ptr_array_remove_index_fast(m->addrs, victim);
  m->evicted++;
  return true;
}

static MeshAddr *learn(Mesh *m, const char *addr, const uint8_t *id, bool configured,
                       uint64_t src_conn)
{
  if (!addr_ok(addr))
    return NULL;
  if (id && memcmp(id, m->self_id, 32) == 0) {
    MeshAddr *self = mesh_find(m, addr);
    if (self)
      self->self = true;
    return self;
  }
  MeshAddr *a = mesh_find(m, addr);
  if (!a) {
    MeshAddr probe = {.src_conn = src_conn};
    prefix_of(addr, &probe);
    if (!configured) {
      /* Narrowest first: a newcomer evicts from its own prefix or source
       * before it may touch anybody else's addresses. */
      bool room = (src_conn == 0 || make_room(m, &probe, SCOPE_SOURCE, MESH_MAX_PER_SOURCE)) &&
                  (probe.family == 0 || (make_room(m, &probe, SCOPE_NARROW, MESH_MAX_PER_NARROW) &&
                                         make_room(m, &probe, SCOPE_WIDE, MESH_MAX_PER_WIDE))) &&
                  make_room(m, &probe, SCOPE_ALL, MESH_MAX_ADDRS);
      if (!room) {
        m->refused++;
        return NULL;
      }
    }
    a = g_new0(MeshAddr, 1);
    *a = probe;
    a->leaf_load = a->link_load = WIRE_LOAD_UNKNOWN;
    g_strlcpy(a->addr, addr, sizeof a->addr);
    g_ptr_array_add(m->addrs, a);
  }
  a->seen = ++m->seq;
  if (id && !a->verified) {
    /* Only a claim: the latest one stands until a dial proves an id. */
    memcpy(a->id, id, 32);
    a->id_known = true;
  }
  a->configured |= configured;
  return a;
}

MeshAddr *mesh_learn(Mesh *m, const char *addr, const uint8_t *id, bool configured)
{
  return learn(m, addr, id, configured, 0);
}

MeshAddr *mesh_learn_from(Mesh *m, const char *addr, const uint8_t *id, uint64_t src_conn)
{
  return learn(m, addr, id, false, src_conn);
}

MeshAddr *mesh_claim(Mesh *m, const char *addr, const uint8_t id[32], uint64_t conn)
{
  MeshAddr *a = learn(m, addr, id, false, 0);
  if (!a || a->self)
    return a;
  if (a->verified) {
    /* Proven before: it is this link, or the claim is a lie we ignore (a
     * dial, not a claim, will tell if the address changed hands). */
    if (memcmp(a->id, id, 32) == 0)
      a->linked_conn = conn;
    return a;
  }
  a->claim_conn = conn;
  if (a->failures >= MESH_PROBE_MAX_FAILURES)
    a->failures = 0; /* a new link, a new chance */
  return a;
}

static bool wants_probe(const MeshAddr *a)
{
  return a->claim_conn != 0 && !a->verified && a->failures < MESH_PROBE_MAX_FAILURES;
}

MeshAddr *mesh_pin(Mesh *m, const char *addr)
{
  MeshAddr *a = mesh_learn(m, addr, NULL, false);
  if (a && !a->configured)
    a->pinned = true; /* failures are not reset: re-naming it is no new chance */
  return a;
}

static bool pinned(const MeshAddr *a)
{
  return a->pinned && a->failures < MESH_PIN_MAX_FAILURES;
}

void mesh_dial_failed(Mesh *m, const char *addr, uint64_t now)
{
  MeshAddr *a = mesh_find(m, addr);
  if (!a)
    return;
  if (a->probing)
    m->probes_bad++;
  a->dialing = false;
  a->probing = false;
  a->failures++;
  /* The operator's own --peer addresses (a group's members among them) are
   * worth a retry every few seconds: a healed partition or a restarted
   * member is then linked again soon, which is how a stale leader hears
   * of the newer term. */
  uint64_t max =
      a->configured || pinned(a) ? MIN(m->backoff_max, MESH_CONFIGURED_MAX_MS) : m->backoff_max;
  uint64_t delay = m->backoff_min;
  for (unsigned i = 1; i < a->failures && delay < max; i++)
    delay *= 2;
  a->next_attempt = now + MIN(delay, max);
}

/* The handshake of a dial of a proved who answers there. */
static void proven(Mesh *m, MeshAddr *a, const uint8_t id[32], uint64_t conn)
{
  a->dialing = false;
  a->probing = false;
  a->failures = 0;
  a->claim_conn = 0;
  if (memcmp(id, m->self_id, 32) == 0) {
    a->self = true;
    return;
  }
  memcpy(a->id, id, 32);
  a->id_known = true;
  a->verified = true;
  a->linked_conn = conn;
}

void mesh_dial_succeeded(Mesh *m, const char *addr, const uint8_t id[32], uint64_t conn)
{
  MeshAddr *a = mesh_find(m, addr);
  if (!a) /* dialled from outside the book: what we proved is worth keeping */
    a = learn(m, addr, NULL, false, 0);
  if (a)
    proven(m, a, id, conn);
}

bool mesh_probe_done(Mesh *m, const char *addr, const uint8_t id[32], uint64_t link_conn)
{
  MeshAddr *a = mesh_find(m, addr);
  if (!a || !a->probing)
    return false;
  m->probes_ok++;
  proven(m, a, id, link_conn);
  return true;
}

void mesh_link_down(Mesh *m, uint64_t conn, uint64_t now)
{
  for (guint i = 0; i < m->addrs->len; i++) {
    MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (a->linked_conn == conn) {
      a->linked_conn = 0;
      /* A refusal that closed it asked for longer. */
      a->next_attempt = MAX(a->next_attempt, now + m->backoff_min);
    }
    if (a->claim_conn == conn)
      a->claim_conn = 0;
    if (a->src_conn == conn)
      a->src_conn = 0; /* its cap no longer applies; it ages out */
  }
}

void mesh_dial_refused(Mesh *m, const char *addr, uint32_t retry_ms, uint32_t rnd, uint64_t now)
{
  MeshAddr *a = mesh_find(m, addr);
  if (!a)
    return;
  a->dialing = false;
  a->probing = false;
  a->refusals++;
  a->next_attempt = degree_retry_at(now, a->refusals, retry_ms, rnd);
}

void mesh_link_accepted(Mesh *m, uint64_t conn)
{
  for (guint i = 0; i < m->addrs->len; i++) {
    MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (a->linked_conn == conn)
      a->refusals = 0;
  }
}

unsigned mesh_dialing(const Mesh *m)
{
  unsigned n = 0;
  for (guint i = 0; i < m->addrs->len; i++) {
    const MeshAddr *a = g_ptr_array_index(m->addrs, i);
    n += a->dialing && !a->probing && !a->configured && !a->pinned;
  }
  return n;
}

bool mesh_configured(Mesh *m, const char *addr)
{
  const MeshAddr *a = mesh_find(m, addr);
  return a && (a->configured || pinned(a));
}

uint8_t mesh_link_load(Mesh *m, const char *addr)
{
  const MeshAddr *a = mesh_find(m, addr);
  return a ? a->link_load : WIRE_LOAD_UNKNOWN;
}

static bool dialable(const Mesh *m, const MeshAddr *a, bool want_more)
{
  bool configured = a->configured && (!m->direction || want_more);
  return !a->self && !a->dialing && a->linked_conn == 0 &&
         (configured || pinned(a) || want_more || wants_probe(a));
}

void mesh_set_direction(Mesh *m, bool on)
{
  m->direction = on;
}

MeshAddr *mesh_next_dial(Mesh *m, bool want_more, MeshLinkedFn linked, void *ctx, uint64_t now)
{
  MeshAddr *best = NULL;
  bool best_probe = false;
  for (guint i = 0; i < m->addrs->len; i++) {
    MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (!dialable(m, a, want_more) || a->next_attempt > now)
      continue;
    bool probe = wants_probe(a);
    if (!probe && a->id_known && linked(a->id, ctx)) {
      /* Linked under another address (dialed as one name, advertised as
       * another). Look again later: left due, mesh_next_attempt would report
       * it forever and the caller's timer would spin. */
      a->next_attempt = now + m->backoff_min;
      continue;
    }
    bool first = a->configured || probe;
    bool best_first = best && (best->configured || best_probe);
    /* Among learned ones: fewest failures, then one not known to be full,
     * then at random (per node). Not the least linked: newcomers have the
     * fewest links, and newcomers linking to newcomers stretch the mesh
     * into a long band whose diameter outgrows a search's TTL. */
    bool full = a->link_load == 100, best_full = best && best->link_load == 100;
    bool better =
        !best || (first && !best_first) ||
        (first == best_first &&
         (a->failures < best->failures ||
          (a->failures == best->failures &&
           (best_full > full ||
            (best_full == full && addr_hash(m, a->addr, 0) < addr_hash(m, best->addr, 0))))));
    if (better) {
      best = a;
      best_probe = probe;
    }
  }
  if (best) {
    best->dialing = true;
    best->probing = best_probe;
  }
  return best;
}

MeshAddr *mesh_next_explore(Mesh *m, MeshLinkedFn linked, void *ctx, uint64_t now)
{
  MeshAddr *best = NULL;
  for (guint i = 0; i < m->addrs->len; i++) {
    MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (a->self || a->verified || a->dialing || a->linked_conn != 0 || a->next_attempt > now ||
        a->failures >= MESH_PROBE_MAX_FAILURES || (a->id_known && linked(a->id, ctx)))
      continue;
    if (!best || a->failures < best->failures ||
        (a->failures == best->failures &&
         addr_hash(m, a->addr, m->calls) < addr_hash(m, best->addr, m->calls)))
      best = a;
  }
  m->calls++;
  if (best)
    best->dialing = best->probing = true;
  return best;
}

MeshAddr *mesh_next_shortcut(Mesh *m, MeshLinkedFn linked, void *ctx, uint64_t now)
{
  MeshAddr *best = NULL;
  for (guint i = 0; i < m->addrs->len; i++) {
    MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (!passable(a, NULL) || a->dialing || a->linked_conn != 0 || a->next_attempt > now ||
        a->link_load == 100 || linked(a->id, ctx))
      continue;
    if (!best || addr_hash(m, a->addr, m->calls) < addr_hash(m, best->addr, m->calls))
      best = a;
  }
  m->calls++;
  if (best)
    best->dialing = true;
  return best;
}

uint64_t mesh_next_attempt(const Mesh *m, bool want_more)
{
  uint64_t t = UINT64_MAX;
  for (guint i = 0; i < m->addrs->len; i++) {
    const MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (dialable(m, a, want_more) && a->next_attempt < t)
      t = a->next_attempt;
  }
  return t;
}

/* Whether mesh_sample would pass a on. */
static bool passable(const MeshAddr *a, const uint8_t *exclude_id)
{
  if (a->self || !a->verified || (exclude_id && memcmp(a->id, exclude_id, 32) == 0))
    return false;
  return a->linked_conn != 0 || a->failures == 0;
}

uint64_t mesh_passable_fingerprint(const Mesh *m)
{
  uint64_t sum = 0;
  for (guint i = 0; i < m->addrs->len; i++) {
    const MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (!passable(a, NULL))
      continue;
    uint64_t x = 1469598103934665603ull; /* FNV-1a of the id */
    for (int k = 0; k < 32; k++)
      x = (x ^ a->id[k]) * 1099511628211ull;
    sum += x + 1;
  }
  return sum;
}

size_t mesh_sample(Mesh *m, const uint8_t *exclude_id, const MeshAddr **out, size_t max)
{
  size_t n = 0;
  for (guint i = 0; i < m->addrs->len && n < max; i++) {
    const MeshAddr *a = g_ptr_array_index(m->addrs, i);
    /* Verified once is not enough: a dial that failed since means the
     * address no longer answers (unless we are linked to it right now). */
    if (passable(a, exclude_id))
      out[n++] = a;
  }
  return n;
}

/* Known loads with room by MESH_LOAD_BUCKET, then unknown ones (an address
 * learned second hand may well have room), then the full. */
static unsigned load_bucket(unsigned load)
{
  if (load == WIRE_LOAD_UNKNOWN)
    return 100 / MESH_LOAD_BUCKET;
  return load >= 100 ? 100 / MESH_LOAD_BUCKET + 1 : load / MESH_LOAD_BUCKET;
}

typedef struct {
  const MeshAddr *a;
  unsigned bucket; /* load_bucket() */
  uint32_t shuffle;
} HostKey;

static int host_cmp(const void *x, const void *y)
{
  const HostKey *p = x, *q = y;
  if (p->bucket != q->bucket)
    return p->bucket < q->bucket ? -1 : 1;
  if (p->a->failures != q->a->failures)
    return p->a->failures < q->a->failures ? -1 : 1;
  return p->shuffle < q->shuffle ? -1 : p->shuffle > q->shuffle;
}

size_t mesh_hosts(Mesh *m, const uint8_t *exclude_id, WireHost *out, size_t max, bool by_leaf_load)
{
  HostKey *keys = g_new(HostKey, m->addrs->len ? m->addrs->len : 1);
  size_t n = 0;
  for (guint i = 0; i < m->addrs->len; i++) {
    const MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (!passable(a, exclude_id))
      continue;
    unsigned load = by_leaf_load ? a->leaf_load : a->link_load;
    /* Within a bucket a new order every call: the hosts one node names are
     * a fresh sample of the least loaded each time, not always the same
     * few (which would pile newcomers onto them and cluster the mesh). */
    keys[n++] = (HostKey){a, load_bucket(load), addr_hash(m, a->addr, m->calls)};
  }
  m->calls++;
  qsort(keys, n, sizeof *keys, host_cmp);
  n = MIN(n, max);
  for (size_t i = 0; i < n; i++) {
    const MeshAddr *a = keys[i].a;
    memcpy(out[i].id, a->id, 32);
    out[i].addr = wire_str(a->addr, strlen(a->addr));
    out[i].leaf_load = a->leaf_load;
    out[i].link_load = a->link_load;
  }
  g_free(keys);
  return n;
}

void mesh_set_load(Mesh *m, const char *addr, const uint8_t id[32], uint8_t leaf_load,
                   uint8_t link_load)
{
  MeshAddr *a = mesh_find(m, addr);
  if (!a || !a->id_known || memcmp(a->id, id, 32) != 0)
    return;
  a->leaf_load = leaf_load <= 100 ? leaf_load : WIRE_LOAD_UNKNOWN;
  a->link_load = link_load <= 100 ? link_load : WIRE_LOAD_UNKNOWN;
}

void mesh_stats(const Mesh *m, MeshStats *out)
{
  memset(out, 0, sizeof *out);
  out->size = m->addrs->len;
  for (guint i = 0; i < m->addrs->len; i++)
    out->verified += ((const MeshAddr *)g_ptr_array_index(m->addrs, i))->verified;
  out->evicted = m->evicted;
  out->refused = m->refused;
  out->probes_ok = m->probes_ok;
  out->probes_bad = m->probes_bad;
}
