/* walklink.c - the core's side of random walks (walk.h): a node that wants
 * a long-range link (degree_want_shortcut) starts a walk; nodes pass walks
 * on and answer them; the origin dials the node its walk ended on.
 */
#include <glib.h>
#include <string.h>

#include "degree.h"
#include "mesh.h"
#include "sncore_int.h"
#include "walk.h"
#include "wire.h"

static uint32_t rnd32(SnCore *c)
{
  uint32_t r = 0;
  c->rng((uint8_t *)&r, sizeof r, c->rng_ctx);
  return r;
}

/* Sends m to a random link (walk_pick); false if there is none. */
static bool send_on(SnCore *c, const WireMsg *m, const uint8_t from[WIRE_ID_LEN])
{
  guint n = c->links.length;
  if (n == 0)
    return false;
  uint8_t(*ids)[WIRE_ID_LEN] = g_malloc((gsize)n * WIRE_ID_LEN);
  Peer **peers = g_new(Peer *, n);
  guint k = 0;
  for (GList *l = c->links.head; l && k < n; l = l->next) {
    peers[k] = l->data;
    memcpy(ids[k], peers[k]->id, WIRE_ID_LEN);
    k++;
  }
  size_t i = walk_pick(m, (const uint8_t(*)[WIRE_ID_LEN])ids, k, from, rnd32(c));
  if (i < k)
    sn_send(c, peers[i]->conn, m);
  g_free(ids);
  g_free(peers);
  return i < k;
}

bool sn_walk_start(SnCore *c, uint64_t now)
{
  WireMsg m = {.type = MSG_WALK};
  uint64_t id = 0;
  c->rng((uint8_t *)&id, sizeof id, c->rng_ctx);
  m.u.walk.id = id;
  m.u.walk.hops_left = WALK_HOPS - 1; /* the first hop is the send */
  m.u.walk.path_len = 1;
  m.u.walk.path = c->self;
  /* from = self: every link may take the first hop. */
  if (!send_on(c, &m, c->self))
    return false;
  c->walk_id = id;
  c->walk_until = now + WALK_TIMEOUT_MS;
  c->stats.walks_started++;
  return true;
}

/* A walk frame from p: a link's, and within the link's and the total
 * budget. Otherwise dropped (and a leaf's closes its session). */
static bool admit(SnCore *c, Peer *p, uint64_t now)
{
  if (p->kind != PEER_SUPER) {
    c->stats.malformed++;
    sn_close_peer(c, p, "walk frame from a session that is no mesh link", now);
    return false;
  }
  if (!walk_budget_take(&p->walks, WALK_LINK_BURST, now) ||
      !walk_budget_take(&c->walks, WALK_TOTAL_BURST, now)) {
    c->stats.walks_dropped++;
    g_debug("session %" G_GUINT64_FORMAT ": walk frame over budget, dropped", p->conn);
    return false;
  }
  return true;
}

static uint8_t leaf_load(const SnCore *c)
{
  if (c->cfg.max_leaves == 0)
    return 100;
  unsigned n = c->stats.leaves;
  return (uint8_t)(n >= c->cfg.max_leaves ? 100 : (uint64_t)n * 100 / c->cfg.max_leaves);
}

void sn_on_walk(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  if (!admit(c, p, now))
    return;
  WalkStep step = walk_step(m, c->self, p->id);
  if (step == WALK_BAD) {
    c->stats.walks_dropped++;
    g_debug("session %" G_GUINT64_FORMAT ": WALK with a bad path, dropped", p->conn);
    return;
  }
  if (step == WALK_FORWARD) {
    uint8_t path[WIRE_MAX_WALK * WIRE_ID_LEN];
    WireMsg out;
    walk_extend(m, c->self, path, &out);
    if (send_on(c, &out, p->id))
      return;
  }
  /* It ends here (or we have no other link): our address, if we have one
   * to give and take links at all. */
  if (!c->advertise[0] || !c->cfg.discovery) {
    c->stats.walks_dropped++;
    return;
  }
  WireHost self = {
      .addr = wire_str(c->advertise, strlen(c->advertise)),
      .leaf_load = leaf_load(c),
      .link_load = degree_link_load(c->cfg.target_degree, c->stats.links),
  };
  memcpy(self.id, c->self, WIRE_ID_LEN);
  WireMsg reply;
  walk_reply(m, &self, &reply);
  sn_send(c, p->conn, &reply);
  walk_ends_add(&c->walk_ends, m->u.walk.path, now);
  c->stats.walks_ended++;
}

/* Our walk ended on e: dial it for our long-range link, unless it is us,
 * linked already, full, or backed off. */
static void walk_done(SnCore *c, Peer *p, const WireHost *e, uint64_t now)
{
  char addr[MESH_ADDR_MAX + 1];
  if (e->addr.len > MESH_ADDR_MAX || memcmp(e->id, c->self, WIRE_ID_LEN) == 0 ||
      e->link_load == 100 || sn_find_link(c, e->id, 0))
    return;
  memcpy(addr, e->addr.p, e->addr.len);
  addr[e->addr.len] = '\0';
  MeshAddr *a = mesh_walk_target(c->mesh, addr, e->id, p->conn, now);
  if (!a)
    return;
  g_strlcpy(c->shortcut_dial, a->addr, sizeof c->shortcut_dial);
  sn_push(c, (SnAction){.kind = SN_ACT_DIAL, .addr = g_strdup(a->addr)});
}

void sn_on_walk_reply(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  if (!admit(c, p, now))
    return;
  WireMsg out;
  const uint8_t *next = NULL;
  switch (walk_on_reply(m, c->self, &out, &next)) {
  case WALK_REPLY_BACK: {
    Peer *to = sn_find_link(c, next, 0);
    if (to) {
      sn_send(c, to->conn, &out);
      return;
    }
    break; /* that link is gone: the origin's walk times out */
  }
  case WALK_REPLY_ORIGIN:
    /* Only the reply to the walk under way: an old one, or one a link
     * made up, must not pick our long-range peer. */
    if (m->u.walk.id == c->walk_id && now < c->walk_until) {
      c->walk_until = 0;
      walk_done(c, p, &m->u.walk.end, now);
      return;
    }
    break;
  case WALK_REPLY_BAD:
    break;
  }
  c->stats.walks_dropped++;
  g_debug("session %" G_GUINT64_FORMAT ": WALK_REPLY not ours nor routable, dropped", p->conn);
}
