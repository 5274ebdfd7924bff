/* mesh.c - address book with per-address backoff. */
#include "mesh.h"

#include <glib.h>
#include <string.h>

struct Mesh {
  uint8_t self_id[32];
  GPtrArray *addrs; /* MeshAddr*, owned */
  uint64_t backoff_min, backoff_max;
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

MeshAddr *mesh_learn(Mesh *m, const char *addr, const uint8_t *id, bool configured)
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
    if (m->addrs->len >= MESH_MAX_ADDRS && !configured)
      return NULL;
    a = g_new0(MeshAddr, 1);
    g_strlcpy(a->addr, addr, sizeof a->addr);
    g_ptr_array_add(m->addrs, a);
  }
  if (id) {
    /* A home address may move to another node: trust the latest claim. */
    memcpy(a->id, id, 32);
    a->id_known = true;
  }
  a->configured |= configured;
  return a;
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
  a->dialing = false;
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

void mesh_dial_succeeded(Mesh *m, const char *addr, const uint8_t id[32], uint64_t conn)
{
  MeshAddr *a = mesh_find(m, addr);
  if (!a)
    return;
  a->dialing = false;
  a->failures = 0;
  if (memcmp(id, m->self_id, 32) == 0) {
    a->self = true;
    return;
  }
  memcpy(a->id, id, 32);
  a->id_known = true;
  a->linked_conn = conn;
}

void mesh_link_down(Mesh *m, uint64_t conn, uint64_t now)
{
  for (guint i = 0; i < m->addrs->len; i++) {
    MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (a->linked_conn == conn) {
      a->linked_conn = 0;
      a->next_attempt = now + m->backoff_min;
    }
  }
}

static bool dialable(const MeshAddr *a, bool want_more)
{
  return !a->self && !a->dialing && a->linked_conn == 0 &&
         (a->configured || pinned(a) || want_more);
}

MeshAddr *mesh_next_dial(Mesh *m, bool want_more, MeshLinkedFn linked, void *ctx, uint64_t now)
{
  MeshAddr *best = NULL;
  for (guint i = 0; i < m->addrs->len; i++) {
    MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (!dialable(a, want_more) || a->next_attempt > now)
      continue;
    if (a->id_known && linked(a->id, ctx)) {
      /* Linked under another address (dialed as one name, advertised as
       * another). Look again later: left due, mesh_next_attempt would report
       * it forever and the caller's timer would spin. */
      a->next_attempt = now + m->backoff_min;
      continue;
    }
    if (!best || (a->configured && !best->configured) || a->failures < best->failures)
      best = a;
  }
  if (best)
    best->dialing = true;
  return best;
}

uint64_t mesh_next_attempt(const Mesh *m, bool want_more)
{
  uint64_t t = UINT64_MAX;
  for (guint i = 0; i < m->addrs->len; i++) {
    const MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (dialable(a, want_more) && a->next_attempt < t)
      t = a->next_attempt;
  }
  return t;
}

size_t mesh_sample(Mesh *m, const uint8_t *exclude_id, const MeshAddr **out, size_t max)
{
  size_t n = 0;
  for (guint i = 0; i < m->addrs->len && n < max; i++) {
    const MeshAddr *a = g_ptr_array_index(m->addrs, i);
    if (a->self || !a->id_known || (exclude_id && memcmp(a->id, exclude_id, 32) == 0))
      continue;
    /* Share only addresses proven to work (linked now or dialed with no
     * failure since), so a bad address does not spread through the mesh. */
    if (a->linked_conn == 0 && a->failures > 0)
      continue;
    out[n++] = a;
  }
  return n;
}
