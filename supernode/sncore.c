/* sncore.c - super-node protocol core: sessions, index, mesh, flooding.
 *
 * Invariants:
 * - A session is NEW until its HELLO, then LEAF or SUPER for good; any other
 *   first message closes it.
 * - A closed session is forgotten at once (its index entries go with it); the
 *   shell's later sn_core_closed() for it is a no-op.
 * - At most one SUPER link per remote node id: when both sides dial each
 *   other, the link dialed by the smaller node id survives on both ends.
 * - Actions are queued, never called back, so the shell may run them after
 *   the core returns (no re-entrancy).
 */
#include "sncore.h"

#include <glib.h>
#include <string.h>

#include "degree.h"
#include "fairshare.h"
#include "flood.h"
#include "group.h"
#include "identity.h"
#include "index.h"
#include "keepalive.h"
#include "mesh.h"
#include "netcert.h"
#include "ratelimit.h"
#include "roster.h"
#include "sncore_int.h"
#include "wire.h"

void sn_config_defaults(SnConfig *c)
{
  memset(c, 0, sizeof *c);
  c->advertise = "";
  c->discovery = true;
  c->target_degree = 4;
  c->max_super_links = 16;
  c->max_leaves = 2000;
  c->keepalive_ms = 5000;
  c->max_hits_local = 100;
  c->max_hits_relayed = 500;
  c->max_entries_per_leaf = 100000;
  c->leaf_query_rate = 10;
  c->leaf_query_burst = 20;
  c->super_query_rate = 500;
  c->super_query_burst = 1000;
  c->query_rate = SN_QUERY_RATE;
  c->query_burst = SN_QUERY_RATE;
  c->signal_rate = SN_SIGNAL_RATE;
  c->publish_rate = 0; /* the shell sets the budgets from --memory-limit */
  c->leaf_signal_rate = 5;
  c->leaf_signal_burst = 20;
  c->group = NULL;
  c->group_hb_ms = 250;
  c->group_dead_ms = 1000;
  c->group_join_ms = 1000;
}

/* --- actions --------------------------------------------------------------- */

void sn_push(SnCore *c, SnAction a)
{
  g_queue_push_tail(&c->actions, g_memdup2(&a, sizeof a));
}

void sn_send(SnCore *c, uint64_t conn, const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  if (!wire_encode(m, &b)) {
    /* Only our own bug can get here: every field was checked on the way in. */
    g_warning("cannot encode %s for session %" G_GUINT64_FORMAT, wire_type_str(m->type), conn);
    buf_free(&b);
    return;
  }
  SnAction a = {.kind = SN_ACT_SEND, .conn = conn};
  a.data = buf_steal(&b, &a.len);
  sn_push(c, a);
}

static Peer *peer_get(SnCore *c, uint64_t conn)
{
  return g_hash_table_lookup(c->peers, &conn);
}

/* Gives back what p holds of its source's index shares. */
static void release_shares(SnCore *c, Peer *p)
{
  size_t klen = strlen(p->source);
  if (p->held_entries)
    budget_give(c->src_entries, p->source, klen, p->held_entries);
  if (p->held_bytes)
    budget_give(c->src_bytes, p->source, klen, p->held_bytes);
  p->held_entries = p->held_bytes = 0;
}

void sn_release_all_shares(SnCore *c)
{
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, c->peers);
  while (g_hash_table_iter_next(&it, NULL, &v))
    release_shares(c, v);
}

static void forget(SnCore *c, Peer *p, uint64_t now)
{
  release_shares(c, p);
  if (p->kind == PEER_LEAF) {
    Record *rec = roster_get(c->roster, p->id);
    if (rec && rec->conn == p->conn) {
      /* A leader forgets a leaf that left; a node that stopped leading
       * has no records left, or keeps a replica's. */
      if (group_leads(c)) {
        roster_remove(c->roster, rec);
        group_leaf_down(c, p->id, now);
      } else {
        rec->conn = 0;
        rec->unbound_since = now;
      }
    }
    if (g_hash_table_lookup(c->leaves_by_id, p->id) == p)
      g_hash_table_remove(c->leaves_by_id, p->id);
    if (c->cfg.publish_rate > 0) /* reconnecting must not refill it */
      pubrates_keep(c->pubrates, p->id, &p->publishes, now);
    c->stats.leaves--;
  } else if (p->kind == PEER_SUPER) {
    group_link_down(c, p, now);
    g_queue_unlink(&c->links, &p->link_link);
    c->stats.links--;
  } else if (p->kind == PEER_WATCH) {
    group_watch_down(c, p);
  }
  mesh_link_down(c->mesh, p->conn, now);
  sn_sched_forget(c, p->conn);
  keepalive_forget(c, p);
  g_hash_table_remove(c->peers, &p->conn);
  c->stats.index_entries = index_size(c->index);
  c->stats.index_bytes = index_bytes(c->index);
}

/* Closes a session on our own decision. The peer is forgotten now. */
void sn_close_peer(SnCore *c, Peer *p, const char *reason, uint64_t now)
{
  SnAction a = {.kind = SN_ACT_CLOSE, .conn = p->conn, .reason = reason};
  if (p->kind == PEER_NEW && p->addr[0])
    mesh_dial_failed(c->mesh, p->addr, now);
  sn_push(c, a);
  p->closed_by_us = true;
  forget(c, p, now);
}

static void protocol_error(SnCore *c, Peer *p, const char *reason, uint64_t now)
{
  c->stats.malformed++;
  sn_close_peer(c, p, reason, now);
}

bool sn_core_next_action(SnCore *c, SnAction *out)
{
  SnAction *a = g_queue_pop_head(&c->actions);
  if (!a)
    return false;
  *out = *a;
  g_free(a);
  return true;
}

void sn_action_clear(SnAction *a)
{
  g_free(a->data);
  g_free(a->addr);
  memset(a, 0, sizeof *a);
}

/* --- life cycle ----------------------------------------------------------- */

SnCore *sn_core_new(const SnConfig *cfg, const uint8_t self_id[32], SnRandomFn rng, void *rng_ctx,
                    uint64_t now)
{
  SnCore *c = g_new0(SnCore, 1);
  c->cfg = *cfg;
  g_strlcpy(c->advertise, cfg->advertise ? cfg->advertise : "", sizeof c->advertise);
  c->cfg.advertise = c->advertise;
  if (c->cfg.keepalive_ms == 0)
    c->cfg.keepalive_ms = 5000;
  memcpy(c->self, self_id, 32);
  c->rng = rng;
  c->rng_ctx = rng_ctx;
  c->peers = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
  c->leaves_by_id = g_hash_table_new(node_id_hash, node_id_equal);
  c->index = index_new(cfg->max_entries_per_leaf);
  if (c->index)
    index_set_limits(c->index, cfg->max_index_entries, cfg->max_index_bytes,
                     cfg->max_entries_per_leaf, cfg->max_bytes_per_leaf);
  c->roster = c->index ? roster_new(c->index) : NULL;
  /* Shares per source; their totals are the index's (0: none). */
  c->src_entries = budget_new(cfg->max_index_entries ? cfg->max_index_entries : UINT64_MAX,
                              cfg->max_entries_per_source);
  c->src_bytes = budget_new(cfg->max_index_bytes ? cfg->max_index_bytes : UINT64_MAX,
                            cfg->max_bytes_per_source);
  c->pubrates = pubrates_new(SN_PUBRATE_KEEP_MAX);
  c->flood = flood_new(FLOOD_MAX_IDS, FLOOD_LIFETIME_MS);
  bool sched = sn_sched_init(c, now);
  c->mesh = mesh_new(self_id, 500, 30000);
  c->hostsend = hostsend_new(now);
  g_queue_init(&c->actions);
  c->next_housekeeping = now;
  c->next_peers_req = now + PEERS_REQ_INTERVAL_MS;
  c->next_hosts = c->next_gossip = now;
  if (cfg->network_pk) {
    c->networked = true;
    memcpy(c->network_pk, cfg->network_pk, 32);
  }
  c->cfg.network_pk = NULL; /* borrowed for sn_core_new only */
  group_init(c, now);
  /* A grouped node's --peer addresses are its fellow members, which the
   * group needs linked: those stay configured links (GROUPS.md). */
  mesh_set_direction(c->mesh, sn_peers_are_direction(c));
  if (!c->index || !c->roster || !c->src_entries || !c->src_bytes || !sched) {
    sn_core_free(c);
    return NULL;
  }
  return c;
}

void sn_core_free(SnCore *c)
{
  if (!c)
    return;
  SnAction *a;
  while ((a = g_queue_pop_head(&c->actions))) {
    sn_action_clear(a);
    g_free(a);
  }
  g_hash_table_destroy(c->leaves_by_id);
  g_hash_table_destroy(c->peers);
  group_free(c);
  roster_free(c->roster);
  index_free(c->index);
  flood_free(c->flood);
  sn_sched_free(c);
  mesh_free(c->mesh);
  budget_free(c->src_entries);
  budget_free(c->src_bytes);
  pubrates_free(c->pubrates);
  hostsend_free(c->hostsend);
  g_free(c);
}

const SnStats *sn_core_stats(const SnCore *c)
{
  /* Replication and takeovers change the index too. */
  ((SnCore *)c)->stats.index_bytes = index_bytes(c->index);
  return &c->stats;
}

void sn_core_mesh_stats(const SnCore *c, MeshStats *out)
{
  mesh_stats(c->mesh, out);
}

void sn_core_add_peer(SnCore *c, const char *addr, uint64_t now)
{
  if (!mesh_learn(c->mesh, addr, NULL, true))
    g_warning("ignoring peer address '%s': expected HOST:PORT", addr);
  sn_core_tick(c, now);
}

/* --- sessions ------------------------------------------------------------- */

static void send_hello(SnCore *c, Peer *p)
{
  WireMsg hello = {.type = MSG_HELLO};
  hello.u.hello.role = ROLE_SUPER;
  hello.u.hello.listen = wire_str(c->advertise, strlen(c->advertise));
  hello.u.hello.agent = wire_str(SN_AGENT, strlen(SN_AGENT));
  hello.u.hello.cert = c->cert;
  hello.u.hello.cert_len = c->cert_len;
  sn_send(c, p->conn, &hello);
}

void sn_core_open(SnCore *c, uint64_t conn, const uint8_t peer_id[32], const char *dialed,
                  uint64_t now)
{
  Peer *p = g_new0(Peer, 1);
  p->conn = conn;
  memcpy(p->id, peer_id, 32);
  p->outbound = dialed != NULL;
  if (dialed)
    g_strlcpy(p->addr, dialed, sizeof p->addr);
  keepalive_open(c, p, now);
  g_hash_table_insert(c->peers, &p->conn, p);
  c->stats.sessions_opened++;

  if (memcmp(peer_id, c->self, 32) == 0) {
    if (dialed)
      mesh_dial_succeeded(c->mesh, dialed, peer_id, 0); /* marks it as self */
    sn_close_peer(c, p, "connected to ourselves", now);
    return;
  }
  if (dialed) {
    /* A probe of a neighbour's HELLO claim: the handshake told us who
     * listens there, which is all it was for. */
    Peer *link = sn_find_link(c, peer_id, conn);
    if (mesh_probe_done(c->mesh, dialed, peer_id, link ? link->conn : 0)) {
      p->addr[0] = '\0'; /* not a failed dial */
      sn_close_peer(c, p, "address verified", now);
      return;
    }
  }
  /* Inbound, our HELLO waits for theirs: a super node we have no room for
   * gets a REFUSE instead, and nothing of theirs is left unread when we
   * close (unread input would make the close a reset that loses it). */
  if (dialed)
    send_hello(c, p);
}

void sn_core_set_source(SnCore *c, uint64_t conn, const char *source)
{
  Peer *p = peer_get(c, conn);
  if (p && p->held_entries == 0 && p->held_bytes == 0)
    g_strlcpy(p->source, source ? source : "", sizeof p->source);
}

void sn_core_set_cert(SnCore *c, const uint8_t *cert, size_t len)
{
  c->cert_len = (uint16_t)MIN(len, sizeof c->cert);
  memcpy(c->cert, cert, c->cert_len);
}

void sn_core_closed(SnCore *c, uint64_t conn, uint64_t now)
{
  Peer *p = peer_get(c, conn);
  if (!p)
    return;
  if (p->kind == PEER_NEW && p->outbound)
    mesh_dial_failed(c->mesh, p->addr, now);
  forget(c, p, now);
}

void sn_core_closed_here(SnCore *c, uint64_t conn, uint64_t now)
{
  Peer *p = peer_get(c, conn);
  if (p)
    p->closed_by_us = true;
  sn_core_closed(c, conn, now);
}

uint64_t sn_core_group_term(const SnCore *c)
{
  return c->group.term;
}

bool sn_core_settled(const SnCore *c, uint64_t conn)
{
  const Peer *p = g_hash_table_lookup(c->peers, &conn);
  return p && p->kind != PEER_NEW;
}

void sn_core_dial_failed(SnCore *c, const char *addr, uint64_t now)
{
  mesh_dial_failed(c->mesh, addr, now);
}

static const uint8_t *initiator_of(const SnCore *c, const Peer *p)
{
  return p->outbound ? c->self : p->id;
}

Peer *sn_find_link(SnCore *c, const uint8_t id[32], uint64_t skip)
{
  for (GList *l = c->links.head; l; l = l->next) {
    Peer *p = l->data;
    if (p->conn != skip && memcmp(p->id, id, 32) == 0)
      return p;
  }
  return NULL;
}

static bool linked_cb(const uint8_t id[32], void *ctx)
{
  return sn_find_link(ctx, id, 0) != NULL;
}

static void hello_super(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  if (c->networked) {
    /* Before anything else it says counts: a stranger learns no address,
     * no query and no group state from us. */
    NetcertResult r = netcert_check(m->u.hello.cert, m->u.hello.cert_len, c->network_pk, p->id,
                                    c->cfg.unix_now ? c->cfg.unix_now() : 0);
    if (r != NETCERT_OK) {
      c->stats.links_refused++;
      if (!p->outbound)
        send_hello(c, p); /* ours, so that it refuses us in turn and says why */
      sn_close_peer(c, p, netcert_result_str(r), now);
      return;
    }
  }
  Peer *old = sn_find_link(c, p->id, p->conn);
  if (old) {
    /* Both ends apply the same rule, so they keep the same TCP connection. */
    int cmp = memcmp(initiator_of(c, p), initiator_of(c, old), 32);
    Peer *loser = cmp > 0 ? p : old; /* same initiator: the newer one wins */
    if (loser == p && p->outbound) {
      /* The dial worked; the node is simply linked through the other
       * connection. Not a failure to back off from. */
      mesh_dial_succeeded(c->mesh, p->addr, p->id, old->conn);
      p->addr[0] = '\0';
    }
    sn_close_peer(c, loser, "duplicate link", now);
    if (loser == p)
      return;
  }
  char listen[MESH_ADDR_MAX + 1] = "";
  memcpy(listen, m->u.hello.listen.p ? m->u.hello.listen.p : "", m->u.hello.listen.len);
  /* Room (degree.h): a dial of ours up to the hard max; an inbound link
   * under the soft max (the hard max for our own --peer addresses), or
   * with --no-discovery up to the hard max. The refused learn others. */
  unsigned hard = degree_hard_max(c->cfg.target_degree, c->cfg.max_super_links);
  bool room = p->outbound || !c->cfg.discovery
                  ? c->stats.links < hard
                  : degree_accept(c->cfg.target_degree, c->cfg.max_super_links, c->stats.links,
                                  listen[0] && mesh_configured(c->mesh, listen));
  /* A learned address we dialed (a long-range link, most often) that
   * completes when inbound newcomers have filled us to the soft max is not
   * taken: it would put us over the bound every node keeps (D..2D). The
   * node stays verified, and is dialed again when we want links. */
  if (p->outbound && c->cfg.discovery && !mesh_configured(c->mesh, p->addr) &&
      c->stats.links >= degree_soft_max(c->cfg.target_degree)) {
    mesh_dial_succeeded(c->mesh, p->addr, p->id, 0);
    p->addr[0] = '\0';
    sn_close_peer(c, p, "enough super-node links", now);
    return;
  }
  /* Room is made only for a node that needs links: one its gossip said
   * has D or more (a long-range dial, degree.h) just gets the REFUSE, or
   * long-range links would evict each other without end. */
  uint8_t load = listen[0] ? mesh_link_load(c->mesh, listen) : WIRE_LOAD_UNKNOWN;
  bool needy = listen[0] && (load == WIRE_LOAD_UNKNOWN ||
                             load < degree_link_load(c->cfg.target_degree, c->cfg.target_degree));
  if (!room && needy && !p->outbound && c->cfg.discovery && c->stats.links < hard &&
      sn_link_make_room(c, now))
    room = true;
  if (!room) {
    sn_link_refuse(c, p, "too many super-node links", now);
    return;
  }
  if (!p->outbound)
    send_hello(c, p);
  p->kind = PEER_SUPER;
  p->link_link = (GList){.data = p};
  g_queue_push_tail_link(&c->links, &p->link_link);
  c->stats.links++;
  sn_push(c, (SnAction){.kind = SN_ACT_LINK_UP, .conn = p->conn});
  ratelimit_init(&p->queries, c->cfg.super_query_rate, c->cfg.super_query_burst, now);
  ratelimit_init(&p->signals, c->cfg.super_query_rate, c->cfg.super_query_burst, now);
  if (p->outbound) {
    mesh_dial_succeeded(c->mesh, p->addr, p->id, p->conn);
  } else if (listen[0]) {
    g_strlcpy(p->addr, listen, sizeof p->addr);
  }
  if (listen[0]) {
    /* Only a claim: it is passed on once a dial of it proves this node id
     * (with discovery off nothing is learned from it). */
    if (c->cfg.discovery)
      mesh_claim(c->mesh, listen, p->id, p->conn);
    else
      mesh_learn(c->mesh, listen, p->id, false);
  }
  if (c->cfg.discovery) {
    WireMsg req = {.type = MSG_PEERS_REQ};
    sn_send(c, p->conn, &req);
  }
  sn_link_welcome(c, p, now);
  group_link_up(c, p, now);
}

static void sync_shares(SnCore *c, Peer *p, const Record *rec);

void sn_attach_leaf(SnCore *c, Peer *p, uint64_t now)
{
  /* A leaf that reconnects before its old session timed out: the new
   * session is the one that can reach it. */
  Peer *old = g_hash_table_lookup(c->leaves_by_id, p->id);
  if (old && old != p) {
    /* Its record (and entries) go to the new session first, so closing
     * the old one does not drop them: after a takeover a leaf that had
     * dialled the new leader and then promoted its watch session there
     * too lost its replicated entries and re-published them all. Outside
     * a group a replaced session's entries go with it, as before. */
    Record *prev = c->group.on ? roster_get(c->roster, p->id) : NULL;
    if (prev && prev->conn == old->conn)
      prev->conn = p->conn;
    sn_close_peer(c, old, "replaced by a newer session of the same leaf", now);
  }
  p->kind = PEER_LEAF;
  c->stats.leaves++;
  g_hash_table_insert(c->leaves_by_id, p->id, p);
  ratelimit_init(&p->queries, c->cfg.leaf_query_rate, c->cfg.leaf_query_burst, now);
  ratelimit_init(&p->signals, c->cfg.leaf_signal_rate, c->cfg.leaf_signal_burst, now);
  ratelimit_init(&p->offers_in, SN_OFFERS_PER_LEAF_RATE, SN_OFFERS_PER_LEAF_BURST, now);
  /* The bucket its last session left, if that was lately. */
  pubrates_restore(c->pubrates, p->id, &p->publishes, c->cfg.publish_rate, c->cfg.publish_burst,
                   now);
  Record *rec = roster_ensure(c->roster, p->id);
  rec->conn = p->conn;
  sync_shares(c, p, rec); /* a replica's entries are its address's too */
  group_leaf_up(c, rec, now);
  /* What we hold of its entries (a replica, after a takeover): the leaf
   * publishes only if that is not its manifest. */
  WireMsg att = {.type = MSG_ATTACHED};
  att.u.attached.term = c->group.term;
  att.u.attached.count = (uint32_t)MIN(rec->count, (size_t)UINT32_MAX);
  memcpy(att.u.attached.digest, rec->digest, 32);
  sn_send(c, p->conn, &att);
  SnAction up = {.kind = SN_ACT_LEAF_UP, .conn = p->conn};
  memcpy(up.peer, p->id, 32);
  sn_push(c, up);
  sn_hosts_leaf_attached(c, p, now);
}

static void on_hello(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  /* A watch session becomes the leaf's primary (its leader is us now) by a
   * second HELLO; any other second HELLO is an error. */
  bool promote = p->kind == PEER_WATCH && m->u.hello.role == ROLE_LEAF;
  if (p->kind != PEER_NEW && !promote) {
    protocol_error(c, p, "second HELLO", now);
    return;
  }
  if (m->u.hello.role == ROLE_SUPER) {
    hello_super(c, p, m, now);
    return;
  }
  if (p->kind == PEER_NEW && !p->outbound)
    send_hello(c, p); /* held back until their HELLO (sn_core_open) */
  if (p->outbound) {
    protocol_error(c, p, "dialed a super node but a leaf answered", now);
    return;
  }
  if (m->u.hello.role == ROLE_WATCH) {
    group_watch_hello(c, p, now);
    return;
  }
  if (c->stats.leaves >= c->cfg.max_leaves) {
    sn_hosts_refuse_leaf(c, p, now); /* names others, then closes */
    return;
  }
  group_leaf_hello(c, p, now);
}

/* How many of the n entries fit p's source's shares (in order; a reset
 * frees what p holds first). Leaves with no source have no share. */
static size_t fit_source(SnCore *c, const Peer *p, bool reset, const WireEntry *e, size_t n)
{
  if (!p->source[0])
    return n;
  size_t klen = strlen(p->source);
  uint64_t room_e = budget_room(c->src_entries, p->source, klen);
  uint64_t room_b = budget_room(c->src_bytes, p->source, klen);
  if (reset) {
    room_e += p->held_entries;
    room_b += p->held_bytes;
  }
  size_t k = 0;
  uint64_t bytes = 0;
  for (; k < n && k < room_e; k++) {
    bytes += index_entry_cost(c->index, e[k].name.p, e[k].name.len); /* the index's measure */
    if (bytes > room_b)
      break;
  }
  return k;
}

/* Charges p's source with what its record holds now. fit_source's room
 * is an estimate (a reset re-publish is priced against the index still
 * holding the old entries, whose keywords then cost nothing; a replica
 * found at attach was never charged here), so the charge is forced: what
 * is held is counted even over the share, and the address gets no more
 * room until it gives some back. */
static void sync_shares(SnCore *c, Peer *p, const Record *rec)
{
  if (!p->source[0])
    return;
  size_t klen = strlen(p->source);
  release_shares(c, p);
  size_t ne = rec->count, nb = index_owner_bytes(c->index, rec->owner);
  if (budget_force(c->src_entries, p->source, klen, ne))
    p->held_entries = ne;
  if (budget_force(c->src_bytes, p->source, klen, nb))
    p->held_bytes = nb;
}

static void on_publish(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  if (p->kind != PEER_LEAF) {
    protocol_error(c, p, "PUBLISH from a super node", now);
    return;
  }
  Record *rec = roster_get(c->roster, p->id);
  if (!rec || rec->conn != p->conn)
    return; /* we stopped leading: the leaf is on its way elsewhere */
  const WireEntry *e = m->u.publish.entries;
  size_t n = m->u.publish.count;
  bool reset = m->u.publish.reset;
  /* A leaf re-publishing without end costs index churn and replication:
   * its entries per second are capped (the burst takes a whole manifest
   * up to its share at once). */
  if (c->cfg.publish_rate > 0 && !ratelimit_take_n(&p->publishes, (double)n, now)) {
    c->stats.publish_throttled += n;
    g_debug("session %" G_GUINT64_FORMAT ": PUBLISH of %zu entries over the rate", p->conn, n);
    return;
  }
  size_t k = fit_source(c, p, reset, e, n);
  c->stats.entries_over_share += n - k;
  c->stats.entries_rejected += roster_publish(c->roster, rec, reset, e, k);
  sync_shares(c, p, rec);
  group_leaf_publish(c, rec, reset, e, k, now);
  c->stats.index_entries = index_size(c->index);
  c->stats.index_bytes = index_bytes(c->index);
}

/* Answers a query from our own index; hits go to `to` as SEARCH_HITS (a
 * leaf's request) or QUERY_HITS (a neighbour's flood). */
static void answer_local(SnCore *c, uint8_t kind, WireStr text, bool to_leaf, uint64_t to,
                         uint32_t req, const uint8_t qid[WIRE_QID_LEN])
{
  unsigned max = c->cfg.max_hits_local ? c->cfg.max_hits_local : 1;
  IndexHit *found = g_new(IndexHit, max);
  size_t n = 0;
  if (kind == QUERY_CONTENT_ID) {
    char hex[2 * WIRE_CID_LEN + 1];
    uint8_t cid[WIRE_CID_LEN];
    if (text.len == 2 * WIRE_CID_LEN) {
      memcpy(hex, text.p, text.len);
      hex[text.len] = '\0';
      if (hex_decode(hex, cid, sizeof cid))
        n = index_lookup_cid(c->index, cid, found, max);
    }
  } else {
    n = index_search(c->index, text.p, text.len, found, max);
  }
  for (size_t off = 0; off < n; off += WIRE_MAX_HITS) {
    size_t batch = MIN(n - off, (size_t)WIRE_MAX_HITS);
    WireHit hits[WIRE_MAX_HITS];
    for (size_t i = 0; i < batch; i++) {
      const IndexHit *h = &found[off + i];
      hits[i].name = wire_str(h->name, h->name_len);
      hits[i].size = h->size;
      memcpy(hits[i].cid, h->cid, WIRE_CID_LEN);
      memcpy(hits[i].peer, h->peer, WIRE_ID_LEN);
    }
    WireMsg out = {.type = to_leaf ? MSG_SEARCH_HITS : MSG_QUERY_HITS};
    out.u.hits.req = req;
    if (qid)
      memcpy(out.u.hits.qid, qid, WIRE_QID_LEN);
    out.u.hits.count = (uint16_t)batch;
    out.u.hits.hits = hits;
    sn_send(c, to, &out);
  }
  c->stats.hits_sent += n;
  g_free(found);
}

void sn_forward(SnCore *c, uint64_t except, const WireMsg *m)
{
  for (GList *l = c->links.head; l; l = l->next) {
    Peer *p = l->data;
    if (p->conn == except)
      continue;
    sn_send(c, p->conn, m);
    if (m->type == MSG_QUERY)
      c->stats.queries_forwarded++;
  }
}

/* Handles a query id for the first time: route, answer, forward. */
void sn_handle_query(SnCore *c, Peer *from, const uint8_t qid[WIRE_QID_LEN], uint8_t ttl,
                     uint8_t kind, WireStr text, uint32_t req, uint64_t now)
{
  FloodRoute route = {
      .conn = from->conn, .from_leaf = from->kind == PEER_LEAF, .req = req, .ttl = ttl};
  if (!flood_first_seen(c->flood, qid, &route, now)) {
    FloodRoute *r = flood_route(c->flood, qid, now);
    if (!r || ttl <= r->ttl) {
      c->stats.queries_duplicate++;
      return;
    }
    /* A shorter path brought more hops left (flood.h): forward again. */
    r->ttl = ttl;
    c->stats.queries_reforwarded++;
  } else {
    c->stats.queries_handled++;
    if (group_answers(c))
      answer_local(c, kind, text, route.from_leaf, from->conn, req, qid);
  }
  if (ttl == 0)
    return;
  WireMsg fwd = {.type = MSG_QUERY};
  memcpy(fwd.u.query.qid, qid, WIRE_QID_LEN);
  fwd.u.query.ttl = ttl - 1;
  fwd.u.query.kind = kind;
  fwd.u.query.text = text;
  sn_forward(c, from->conn, &fwd);
}

static void on_search(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  if (p->kind != PEER_LEAF) {
    protocol_error(c, p, "SEARCH from a super node", now);
    return;
  }
  c->stats.queries_received++;
  if (!ratelimit_take(&p->queries, now)) {
    c->stats.queries_throttled++;
    return;
  }
  /* The query id is drawn when the search leaves the queue (qsched.c). */
  sn_query_push(c, p, NULL, m->u.search.ttl, m->u.search.kind, m->u.search.text, m->u.search.req,
                now);
}

static void on_query(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  if (p->kind != PEER_SUPER) {
    protocol_error(c, p, "QUERY from a leaf", now);
    return;
  }
  c->stats.queries_received++;
  if (!ratelimit_take(&p->queries, now)) {
    c->stats.queries_throttled++;
    return;
  }
  FloodRoute *seen = flood_route(c->flood, m->u.query.qid, now);
  if (seen && m->u.query.ttl <= seen->ttl) {
    c->stats.queries_duplicate++; /* not worth a place in the queue */
    return;
  }
  sn_query_push(c, p, m->u.query.qid, m->u.query.ttl, m->u.query.kind, m->u.query.text, 0, now);
}

static void on_query_hits(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  if (p->kind != PEER_SUPER) {
    protocol_error(c, p, "QUERY_HITS from a leaf", now);
    return;
  }
  FloodRoute *r = flood_route(c->flood, m->u.hits.qid, now);
  Peer *back = r ? peer_get(c, r->conn) : NULL;
  if (!back || back == p) {
    c->stats.hits_dropped += m->u.hits.count;
    return;
  }
  uint16_t room = r->hits_sent >= c->cfg.max_hits_relayed
                      ? 0
                      : (uint16_t)MIN(m->u.hits.count, c->cfg.max_hits_relayed - r->hits_sent);
  c->stats.hits_dropped += m->u.hits.count - room;
  if (room == 0)
    return;
  r->hits_sent += room;
  WireMsg out = *m;
  out.type = r->from_leaf ? MSG_SEARCH_HITS : MSG_QUERY_HITS;
  out.u.hits.req = r->req;
  out.u.hits.count = room;
  sn_send(c, back->conn, &out);
  c->stats.hits_relayed += room;
}

static void on_peers_req(SnCore *c, Peer *p, uint64_t now)
{
  if (p->kind != PEER_SUPER) {
    protocol_error(c, p, "PEERS_REQ from a leaf", now);
    return;
  }
  const MeshAddr *sample[WIRE_MAX_PEERS];
  size_t n = mesh_sample(c->mesh, p->id, sample, WIRE_MAX_PEERS);
  WirePeer peers[WIRE_MAX_PEERS];
  for (size_t i = 0; i < n; i++) {
    memcpy(peers[i].id, sample[i]->id, 32);
    peers[i].addr = wire_str(sample[i]->addr, strlen(sample[i]->addr));
  }
  WireMsg out = {.type = MSG_PEERS};
  out.u.peers.count = (uint16_t)n;
  out.u.peers.peers = peers;
  sn_send(c, p->conn, &out);
}

static void on_peers(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  if (p->kind != PEER_SUPER) {
    protocol_error(c, p, "PEERS from a leaf", now);
    return;
  }
  if (!c->cfg.discovery)
    return;
  for (uint16_t i = 0; i < m->u.peers.count; i++) {
    char addr[MESH_ADDR_MAX + 1];
    const WirePeer *wp = &m->u.peers.peers[i];
    memcpy(addr, wp->addr.p, wp->addr.len);
    addr[wp->addr.len] = '\0';
    mesh_learn_from(c->mesh, addr, wp->id, p->conn);
  }
}

/* ICE signalling between two leaves. An OFFER floods towards the leaf whose
 * node id it names, like a query (once per id, TTL); the ANSWER or REJECT
 * for it goes back along the reverse path the offer left. The sender's
 * node id is stamped by its own super node from the authenticated session,
 * so a leaf cannot speak for another. */
static void on_signal(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  WireMsg fwd = *m;
  /* Links have a signal bucket of their own: offers do not eat queries. */
  if (!ratelimit_take(&p->signals, now)) {
    c->stats.signals_dropped++;
    return;
  }
  if (p->kind == PEER_LEAF)
    memcpy(fwd.u.signal.src, p->id, 32);
  if (m->u.signal.kind != SIGNAL_OFFER) {
    FloodRoute *r = flood_route(c->flood, m->u.signal.sid, now);
    Peer *back = r ? peer_get(c, r->conn) : NULL;
    if (!back || back == p) {
      c->stats.signals_dropped++;
      return;
    }
    sn_send(c, back->conn, &fwd);
    c->stats.signals_relayed++;
    return;
  }
  FloodRoute route = {.conn = p->conn, .from_leaf = p->kind == PEER_LEAF};
  if (!flood_first_seen(c->flood, m->u.signal.sid, &route, now)) {
    c->stats.signals_dropped++;
    return;
  }
  Peer *dst = g_hash_table_lookup(c->leaves_by_id, m->u.signal.dst);
  if (dst && dst != p) {
    /* Capped per destination: however many sources offer, one leaf is not
     * handed more than it can answer. */
    if (!ratelimit_take(&dst->offers_in, now)) {
      c->stats.signals_dropped++;
      return;
    }
    sn_send(c, dst->conn, &fwd);
    c->stats.signals_delivered++;
    return;
  }
  if (fwd.u.signal.ttl == 0)
    return;
  fwd.u.signal.ttl--;
  sn_signal_push(c, p, &fwd, now); /* flooded in fair turns (qsched.c) */
}

void sn_core_recv(SnCore *c, uint64_t conn, const uint8_t *data, size_t len, uint64_t now)
{
  Peer *p = peer_get(c, conn);
  if (!p)
    return;
  keepalive_heard(c, p, now);
  WireMsg m;
  WireError err = wire_decode(data, len, &m);
  if (err == WIRE_EUNKNOWN && p->kind != PEER_NEW)
    return; /* newer peers may speak types we do not know: ignore them */
  if (err != WIRE_OK) {
    g_debug("session %" G_GUINT64_FORMAT ": %s", conn, wire_error_str(err));
    protocol_error(c, p, wire_error_str(err), now);
    return;
  }
  /* A node we dialed may refuse us instead of its HELLO. */
  if (p->kind == PEER_NEW && m.type != MSG_HELLO && !(m.type == MSG_REFUSE && p->outbound)) {
    protocol_error(c, p, "expected HELLO", now);
    wire_msg_clear(&m);
    return;
  }
  if (p->kind == PEER_WATCH && m.type != MSG_HELLO && m.type != MSG_PING && m.type != MSG_PONG &&
      m.type != MSG_WATCH) {
    protocol_error(c, p, "message not allowed on a watch session", now);
    wire_msg_clear(&m);
    return;
  }
  bool super_only = m.type == MSG_GROUP_STATE || m.type == MSG_REPL || m.type == MSG_REPL_ACK;
  if ((super_only && p->kind != PEER_SUPER) || (m.type == MSG_WATCH && p->kind != PEER_WATCH)) {
    protocol_error(c, p, "group message not allowed here", now);
    wire_msg_clear(&m);
    return;
  }
  switch (m.type) {
  case MSG_HELLO:
    on_hello(c, p, &m, now);
    break;
  case MSG_PING: {
    if (!keepalive_answer_ping(p, m.u.ping))
      break;
    WireMsg pong = {.type = MSG_PONG};
    pong.u.ping = m.u.ping;
    sn_send(c, conn, &pong);
    break;
  }
  case MSG_PONG:
    break;
  case MSG_PUBLISH:
    on_publish(c, p, &m, now);
    break;
  case MSG_SEARCH:
    on_search(c, p, &m, now);
    break;
  case MSG_QUERY:
    on_query(c, p, &m, now);
    break;
  case MSG_QUERY_HITS:
    on_query_hits(c, p, &m, now);
    break;
  case MSG_PEERS_REQ:
    on_peers_req(c, p, now);
    break;
  case MSG_PEERS:
    on_peers(c, p, &m, now);
    break;
  case MSG_SIGNAL:
    on_signal(c, p, &m, now);
    break;
  case MSG_GROUP_STATE:
    group_on_state(c, p, &m, now);
    break;
  case MSG_REPL:
    group_on_repl(c, p, &m, now);
    break;
  case MSG_REPL_ACK:
    group_on_repl_ack(c, p, &m, now);
    break;
  case MSG_WATCH:
    group_on_watch(c, p, &m, now);
    break;
  case MSG_REFUSE:
    sn_on_refuse(c, p, &m, now);
    break;
  case MSG_HOSTS:
    sn_on_hosts(c, p, &m, now);
    break;
  default: /* SEARCH_HITS: only super nodes send it */
    protocol_error(c, p, "message type not allowed here", now);
    break;
  }
  wire_msg_clear(&m);
}

/* --- time ------------------------------------------------------------------ */

static uint64_t sweep_period(const SnCore *c)
{
  return MAX(MIN(c->cfg.keepalive_ms / 4, 1000), 1);
}

void sn_core_tick(SnCore *c, uint64_t now)
{
  if (now >= c->next_housekeeping) {
    /* O(sessions due), not O(sessions): keepalive.h. */
    keepalive_sweep(c, now, sweep_period(c));
    if (c->cfg.discovery && now >= c->next_peers_req) {
      /* Every 10 s, and only while short of links. */
      if (c->stats.links < c->cfg.target_degree) {
        WireMsg req = {.type = MSG_PEERS_REQ};
        sn_forward(c, 0, &req);
      }
      c->next_peers_req = now + PEERS_REQ_INTERVAL_MS;
    }
    flood_expire(c->flood, now);
    c->next_housekeeping = now + sweep_period(c);
  }
  sn_sched_drain(c, now);
  sn_hosts_tick(c, now);
  group_tick(c, now);
  sn_links_tick(c, now);
  for (int i = 0; i < MAX_DIALS_PER_TICK; i++) {
    /* Dials under way count: a node with no link dials D, not 8, at once. */
    bool want_more = c->cfg.discovery &&
                     degree_want_dial(c->cfg.target_degree, c->stats.links, mesh_dialing(c->mesh));
    MeshAddr *a = mesh_next_dial(c->mesh, want_more, linked_cb, c, now);
    if (!a)
      break;
    SnAction act = {.kind = SN_ACT_DIAL, .addr = g_strdup(a->addr)};
    sn_push(c, act);
  }
}

uint64_t sn_core_next_deadline(const SnCore *c)
{
  bool want_more = c->cfg.discovery &&
                   degree_want_dial(c->cfg.target_degree, c->stats.links, mesh_dialing(c->mesh));
  uint64_t t = MIN(c->next_housekeeping, mesh_next_attempt(c->mesh, want_more));
  t = MIN(t, sn_links_deadline(c));
  t = MIN(t, sn_sched_deadline(c));
  t = MIN(t, sn_hosts_deadline(c));
  return MIN(t, group_deadline(c));
}

size_t sn_core_leaf_entries(const SnCore *c, const uint8_t leaf[32])
{
  const Record *rec = roster_get(c->roster, leaf);
  return rec ? rec->count : 0;
}

typedef struct {
  SnLinkFn fn;
  void *ctx;
} LinkIter;

static void link_iter_cb(gpointer k, gpointer v, gpointer ud)
{
  LinkIter *it = ud;
  Peer *p = v;
  if (p->kind == PEER_SUPER)
    it->fn(p->id, p->addr, p->conn, it->ctx);
}

typedef struct {
  SnLeafFn fn;
  void *ctx;
} LeafIter;

static void leaf_iter_cb(gpointer k, gpointer v, gpointer ud)
{
  LeafIter *it = ud;
  Peer *p = v;
  it->fn(p->id, p->conn, it->ctx);
}

void sn_core_foreach_leaf(const SnCore *c, SnLeafFn fn, void *ctx)
{
  LeafIter it = {fn, ctx};
  g_hash_table_foreach(c->leaves_by_id, leaf_iter_cb, &it);
}

void sn_core_foreach_link(const SnCore *c, SnLinkFn fn, void *ctx)
{
  LinkIter it = {fn, ctx};
  for (GList *l = c->links.head; l; l = l->next)
    link_iter_cb(NULL, l->data, &it);
}

void sn_core_set_limits(SnCore *c, unsigned target_degree, unsigned max_leaves,
                        uint64_t keepalive_ms)
{
  c->cfg.target_degree = target_degree;
  c->cfg.max_leaves = max_leaves;
  /* The sweep period follows the keepalive: the housekeeping already
   * scheduled (at most a second away) picks the new one up. */
  c->cfg.keepalive_ms = keepalive_ms ? keepalive_ms : 5000;
}
