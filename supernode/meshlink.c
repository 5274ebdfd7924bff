/* meshlink.c - the core's side of degree maintenance (degree.h): REFUSE to
 * a super node we have no room for, what a refusal teaches the refused,
 * HOSTS gossip between links, and shedding links over the soft max.
 *
 * A full node still helps a newcomer: its REFUSE names up to WIRE_MAX_HOSTS
 * verified others, least linked first (Gnutella's X-Try and pong cache). The
 * refused node learns them as claims (mesh.h caps them per source; they are
 * passed on only once a dial of them proves them) and backs off from the
 * refusing node (degree_retry_at). HOSTS between links carry the sender
 * first with its own loads, then what it knows of others, so that every node
 * knows who has room.
 */
#include <glib.h>
#include <string.h>

#include "degree.h"
#include "mesh.h"
#include "sncore_int.h"
#include "wire.h"

static uint32_t rnd32(SnCore *c)
{
  uint32_t r = 0;
  c->rng((uint8_t *)&r, sizeof r, c->rng_ctx);
  return r;
}

static uint8_t leaf_load(const SnCore *c)
{
  if (c->cfg.max_leaves == 0)
    return 100;
  unsigned n = c->stats.leaves;
  return (uint8_t)(n >= c->cfg.max_leaves ? 100 : (uint64_t)n * 100 / c->cfg.max_leaves);
}

/* A host string from the wire, as the book takes it; false if unusable. */
static bool host_addr(const WireHost *h, char out[MESH_ADDR_MAX + 1])
{
  if (h->addr.len == 0 || h->addr.len > MESH_ADDR_MAX)
    return false;
  memcpy(out, h->addr.p, h->addr.len);
  out[h->addr.len] = '\0';
  return true;
}

static bool linked_cb(const uint8_t id[32], void *ctx)
{
  return sn_find_link(ctx, id, 0) != NULL;
}

void sn_link_refuse(SnCore *c, Peer *p, const char *reason, uint64_t now)
{
  WireHost hosts[WIRE_MAX_HOSTS];
  WireMsg m = {.type = MSG_REFUSE};
  m.u.refuse.reason = REFUSE_LINKS_FULL;
  m.u.refuse.retry_ms = DEGREE_REFUSE_RETRY_MS;
  m.u.refuse.count = (uint16_t)mesh_hosts(c->mesh, p->id, hosts, WIRE_MAX_HOSTS, false);
  m.u.refuse.hosts = hosts;
  sn_send(c, p->conn, &m);
  c->stats.refusals_sent++;
  g_debug("session %" G_GUINT64_FORMAT ": REFUSE with %u hosts (%s)", p->conn,
          (unsigned)m.u.refuse.count, reason);
  sn_close_peer(c, p, reason, now);
}

void sn_on_refuse(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  /* Only a node we dialed, or a link shedding us, has anything to refuse. */
  if (!(p->outbound || p->kind == PEER_SUPER)) {
    c->stats.malformed++;
    sn_close_peer(c, p, "REFUSE on a session it did not dial", now);
    return;
  }
  c->stats.refusals_received++;
  if (c->cfg.discovery) {
    for (uint16_t i = 0; i < m->u.refuse.count; i++) {
      const WireHost *h = &m->u.refuse.hosts[i];
      char addr[MESH_ADDR_MAX + 1];
      if (!host_addr(h, addr) || memcmp(h->id, p->id, 32) == 0)
        continue;
      if (mesh_learn_from(c->mesh, addr, h->id, p->conn))
        mesh_set_load(c->mesh, addr, h->id, h->leaf_load, h->link_load);
    }
  }
  /* Only an address we dialed is known to be the refuser's: an inbound
   * link's address is its HELLO's claim, and believing it would let anyone
   * claim an honest node's address and make us back off from that node. */
  if (p->addr[0] && p->outbound) {
    if (p->kind == PEER_NEW) /* the handshake proved who answers there */
      mesh_dial_succeeded(c->mesh, p->addr, p->id, 0);
    mesh_dial_refused(c->mesh, p->addr, m->u.refuse.retry_ms, rnd32(c), now);
    mesh_set_load(c->mesh, p->addr, p->id, WIRE_LOAD_UNKNOWN, 100);
    p->addr[0] = '\0'; /* refused, not failed: no dial_failed on close */
  }
  sn_close_peer(c, p, "refused by the super node", now);
}

static void send_hosts(SnCore *c, Peer *p)
{
  WireHost hosts[WIRE_MAX_HOSTS];
  size_t n = 0;
  if (c->advertise[0]) {
    memcpy(hosts[0].id, c->self, 32);
    hosts[0].addr = wire_str(c->advertise, strlen(c->advertise));
    hosts[0].leaf_load = leaf_load(c);
    hosts[0].link_load = degree_link_load(c->cfg.target_degree, c->stats.links);
    n = 1;
  }
  n += mesh_hosts(c->mesh, p->id, hosts + n, WIRE_MAX_HOSTS - n, false);
  WireMsg m = {.type = MSG_HOSTS};
  m.u.hosts.count = (uint16_t)n;
  m.u.hosts.hosts = hosts;
  sn_send(c, p->conn, &m);
}

void sn_link_welcome(SnCore *c, Peer *p, uint64_t now)
{
  p->up_since = now;
  c->stats.links_made++;
  if (p->outbound && c->shortcut_dial[0] && strcmp(p->addr, c->shortcut_dial) == 0) {
    p->shortcut = true;
    c->shortcut_dial[0] = '\0';
  }
  /* Someone else's long-range link: kept at our end too (degree.h), or
   * trimming it would send its dialer looking for another, without end. */
  /* At most DEGREE_SHORTCUTS of them: the load is what gossip said of the
   * address it claims, and a node that lies about it must not pin our
   * slots with links we never trim (review). */
  if (!p->outbound && p->addr[0] && c->cfg.discovery &&
      degree_long_range_dial(c->cfg.target_degree, mesh_link_load(c->mesh, p->addr))) {
    unsigned theirs = 0;
    for (GList *l = c->links.head; l; l = l->next)
      theirs += ((Peer *)l->data)->their_shortcut;
    p->their_shortcut = theirs < DEGREE_SHORTCUTS;
  }
  send_hosts(c, p);
}

void sn_on_hosts(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  if (p->kind != PEER_SUPER) {
    c->stats.malformed++;
    sn_close_peer(c, p, "HOSTS from a leaf", now);
    return;
  }
  /* A link gossips every DEGREE_HOSTS_INTERVAL_MS; one that sends faster
   * would make us walk the book at its pace. */
  if (p->hosts_at && now - p->hosts_at < DEGREE_HOSTS_MIN_GAP_MS) {
    c->stats.hosts_ignored++;
    return;
  }
  p->hosts_at = now;
  mesh_link_accepted(c->mesh, p->conn);
  for (uint16_t i = 0; i < m->u.hosts.count; i++) {
    const WireHost *h = &m->u.hosts.hosts[i];
    char addr[MESH_ADDR_MAX + 1];
    if (!host_addr(h, addr) || memcmp(h->id, c->self, 32) == 0)
      continue;
    /* The sender itself (its HELLO claimed the address), or another it
     * names: a claim the per-source cap holds. */
    if (memcmp(h->id, p->id, 32) != 0 && c->cfg.discovery &&
        !mesh_learn_from(c->mesh, addr, h->id, p->conn))
      continue;
    mesh_set_load(c->mesh, addr, h->id, h->leaf_load, h->link_load);
  }
}

typedef struct {
  SnCore *c;
  GArray *links; /* DegreeLink */
  GPtrArray *peers;
} Collect;

static void collect_one(Collect *s, Peer *p)
{
  DegreeLink l = {
      .conn = p->conn,
      .keep = p->member || (!sn_peers_are_direction(s->c) && p->outbound &&
                            mesh_configured(s->c->mesh, p->addr)),
      .long_range = p->shortcut || p->their_shortcut,
      .inbound = !p->outbound,
      .peer_load = p->addr[0] ? mesh_link_load(s->c->mesh, p->addr) : WIRE_LOAD_UNKNOWN,
      .up_since = p->up_since,
  };
  g_array_append_val(s->links, l);
  g_ptr_array_add(s->peers, p);
}

/* Walks SnCore.links: O(links), never every leaf session (issue 12). */
static void collect_links(Collect *s)
{
  for (GList *l = s->c->links.head; l; l = l->next)
    collect_one(s, l->data);
}

bool sn_link_make_room(SnCore *c, uint64_t now)
{
  /* One eviction per DEGREE_EVICT_MIN_AGE_MS: what a newcomer says of its
   * need is a claim, and a stream of them must not replace every link. */
  if (now < c->next_evict)
    return false;
  Collect s = {c, g_array_new(FALSE, FALSE, sizeof(DegreeLink)), g_ptr_array_new()};
  collect_links(&s);
  const DegreeLink *l =
      degree_pick_evict(c->cfg.target_degree, (const DegreeLink *)s.links->data, s.links->len, now);
  if (l) {
    Peer *p = g_ptr_array_index(s.peers, (guint)(l - (const DegreeLink *)s.links->data));
    c->stats.links_shed++;
    c->stats.links_evicted++;
    c->next_evict = now + DEGREE_EVICT_MIN_AGE_MS;
    sn_link_refuse(c, p, "evicted: room for a newcomer (the peer has other links)", now);
  }
  g_array_unref(s.links);
  g_ptr_array_unref(s.peers);
  return l != NULL;
}

void sn_links_tick(SnCore *c, uint64_t now)
{
  if (now < c->next_hosts)
    return;
  c->next_hosts = now + DEGREE_EXPLORE_MS;
  MeshAddr *probe = c->cfg.discovery ? mesh_next_explore(c->mesh, linked_cb, c, now) : NULL;
  if (probe)
    sn_push(c, (SnAction){.kind = SN_ACT_DIAL, .addr = g_strdup(probe->addr)});
  bool gossip = now >= c->next_gossip;
  if (gossip)
    c->next_gossip = now + DEGREE_HOSTS_INTERVAL_MS;
  Collect s = {c, g_array_new(FALSE, FALSE, sizeof(DegreeLink)), g_ptr_array_new()};
  collect_links(&s);
  unsigned shortcuts = 0;
  for (guint i = 0; i < s.peers->len; i++) {
    Peer *p = g_ptr_array_index(s.peers, i);
    shortcuts += p->shortcut;
    if (gossip)
      send_hosts(c, p);
  }
  /* Long-range links once the D near ones are up (degree.h); a dial of
   * it that came to nothing is forgotten when the next look is due. */
  if (c->cfg.discovery && now >= c->next_shortcut &&
      degree_want_shortcut(c->cfg.target_degree, c->stats.links, shortcuts)) {
    c->next_shortcut = now + DEGREE_SHORTCUT_MS;
    MeshAddr *a = mesh_next_shortcut(c->mesh, linked_cb, c, now);
    g_strlcpy(c->shortcut_dial, a ? a->addr : "", sizeof c->shortcut_dial);
    if (a)
      sn_push(c, (SnAction){.kind = SN_ACT_DIAL, .addr = g_strdup(a->addr)});
  }
  /* One link a round over the soft max: the peer's gossip then tells the
   * next round who has room. Only with discovery: --no-discovery keeps
   * exactly what the operator set up. */
  const DegreeLink *shed =
      c->cfg.discovery
          ? degree_pick_shed(c->cfg.target_degree, (const DegreeLink *)s.links->data, s.links->len)
          : NULL;
  const char *why = "shed: over the soft max of links";
  bool trim = false;
  if (!shed && c->cfg.discovery) {
    shed = degree_pick_trim(c->cfg.target_degree, (const DegreeLink *)s.links->data, s.links->len,
                            now);
    why = "trimmed: both ends have links to spare";
    trim = true;
  }
  if (shed) {
    Peer *p = g_ptr_array_index(s.peers, (guint)(shed - (const DegreeLink *)s.links->data));
    c->stats.links_shed++;
    c->stats.links_trimmed += trim;
    sn_link_refuse(c, p, why, now);
  }
  g_array_unref(s.links);
  g_ptr_array_unref(s.peers);
}

uint64_t sn_links_deadline(const SnCore *c)
{
  return c->next_hosts;
}
