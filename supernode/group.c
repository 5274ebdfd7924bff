/* group.c - a group's leader, backup and standbys (supernode/GROUPS.md).
 *
 * Invariants:
 * - Terms only grow. A node adopts a leader only from a GROUP_STATE of a
 *   term at least its own, sent by that leader itself on a member's link,
 *   of a term believable by the wall clock (shared/term.h); at one term the
 *   smaller node id leads.
 * - Only the leader attaches leaves, replicates and sends heartbeats to
 *   them; the leader and the backup answer queries (the backup from its
 *   replica, so searches keep finding the group's files during a
 *   takeover). A node that stops leading clears its records (a backup's
 *   are rebuilt from the next snapshot).
 * - The backup takes over only with the leader lost to it AND a strict
 *   majority of the leaves in its replicated roster saying so (or an empty
 *   roster): losing only its own link to the leader is not enough.
 */
#include "group.h"

#include <sodium.h>
#include <string.h>

#include "term.h"

/* Records no leaf claims this many dead intervals after a takeover go. */
#define RECORD_GRACE_DEADS 10
/* Unacknowledged ops kept for the lag figure; older ones are forgotten
 * (the lag then reads at least this many). */
#define MAX_PENDING 100000
/* A backup whose link to the leader closed (a dead process resets it; a
 * hung one or a cut link only falls silent) takes over once this share
 * of its roster (1/N) reports the leader's session closed too, not only
 * a majority: the leaves' sessions of a killed leader close over the
 * hundreds of milliseconds the kernel takes to tear 10,000 of them down. */
#define CLOSED_QUORUM_DIV 4
/* ...but never fewer leaves than this (a small group needs its majority)
 * and never more than a majority. */
#define CLOSED_QUORUM_MIN 8
/* After a takeover the new leader names no backup for this many dead
 * intervals, or until every replicated record has its leaf again: the
 * leaves open watch sessions to a backup at once (10,000 handshakes,
 * each with a cookie puzzle under that load), and on a busy machine those
 * slowed the move of the leaves still on their way. */
#define SETTLE_DEADS 2
/* A joining node that hears of a leader only second hand (it is not linked
 * to it yet) waits up to this many join intervals for the link before it
 * leads on its own; hearsay cannot keep it joining for longer. */
#define JOIN_WAIT_MAX 4
/* A backup that lost the leader asks its watchers once, and again every
 * this many dead intervals while the loss lasts. */
#define PROBE_AGAIN 2
/* A snapshot's next piece goes out only while less than this (or a
 * quarter of the link's queue cap, if smaller) is sent to the backup and
 * not acknowledged: the link's queue stays far below its cap however large
 * the index, and a backup that applies slowly slows the snapshot instead
 * of being cut off. */
#define SNAPSHOT_WINDOW (512u * 1024)
#define LINK_QUEUE_DEFAULT (8u * 1024 * 1024)

static size_t link_queue_max(const SnCore *c)
{
  return c->cfg.link_queue_max ? c->cfg.link_queue_max : LINK_QUEUE_DEFAULT;
}

static size_t snapshot_window(const SnCore *c)
{
  return MIN((size_t)SNAPSHOT_WINDOW, link_queue_max(c) / 4);
}

static bool zero_id(const uint8_t id[32])
{
  static const uint8_t zero[32];
  return memcmp(id, zero, 32) == 0;
}

static uint64_t hb_ms(const SnCore *c)
{
  return c->cfg.group_hb_ms ? c->cfg.group_hb_ms : 250;
}

static uint64_t dead_ms(const SnCore *c)
{
  return c->cfg.group_dead_ms ? c->cfg.group_dead_ms : 4 * hb_ms(c);
}

static uint64_t join_ms(const SnCore *c)
{
  return c->cfg.group_join_ms ? c->cfg.group_join_ms : 1000;
}

/* Wall-clock seconds, for believing terms (shared/term.h); 0 without a
 * clock, which believes only small counters. */
static uint64_t unix_s(const SnCore *c)
{
  return c->cfg.unix_now ? c->cfg.unix_now() : 0;
}

static WireGroupRole wire_role(SnRole r)
{
  switch (r) {
  case SN_ROLE_LEADER:
    return GROLE_LEADER;
  case SN_ROLE_BACKUP:
    return GROLE_BACKUP;
  case SN_ROLE_STANDBY:
    return GROLE_STANDBY;
  default:
    return GROLE_JOINING;
  }
}

static const char *role_str(SnRole r)
{
  static const char *names[] = {"joining", "leader", "backup", "standby"};
  return names[r];
}

static void copy_str(char *dst, size_t cap, WireStr s)
{
  size_t n = MIN((size_t)s.len, cap - 1);
  memcpy(dst, s.p ? s.p : "", n);
  dst[n] = '\0';
}

static void short_id(const uint8_t id[32], char out[17])
{
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 8; i++) {
    out[2 * i] = hex[id[i] >> 4];
    out[2 * i + 1] = hex[id[i] & 15];
  }
  out[16] = '\0';
}

static bool leader_lost(SnCore *c, uint64_t now);

/* --- life cycle ---------------------------------------------------------------- */

void group_init(SnCore *c, uint64_t now)
{
  Group *g = &c->group;
  memset(g, 0, sizeof *g);
  g->leader_links = g_ptr_array_new_with_free_func(g_free);
  g->watchers = g_hash_table_new(node_id_hash, node_id_equal);
  g_queue_init(&g->pending);
  g->term = c->cfg.term_floor;
  g->now = now;
  if (!c->cfg.group || !*c->cfg.group) {
    /* A group of one: leads from the start, forever, at term 0. */
    g->role = SN_ROLE_LEADER;
    g->has_leader = true;
    memcpy(g->leader, c->self, 32);
    g_strlcpy(g->leader_addr, c->advertise, sizeof g->leader_addr);
    return;
  }
  g->on = true;
  g_strlcpy(g->name, c->cfg.group, sizeof g->name);
  if (c->cfg.group_key) {
    memcpy(g->key, c->cfg.group_key, sizeof g->key);
    g->keyed = true;
  }
  c->cfg.group_key = NULL; /* borrowed for sn_core_new only */
  /* Membership is proven by the group's key or, in a network, by the
   * operator's certificate on every link; without either nobody is a
   * member (the shell refuses to start so), and we lead alone. */
  g->proven = g->keyed || c->networked;
  if (!g->proven)
    g_warning("group %s: no way to prove membership (a group key or a network key): "
              "no super node will count as a member",
              g->name);
  if (!term_believable(g->term, unix_s(c))) {
    /* A term nobody would believe (an old version adopted and persisted a
     * hijacker's): start afresh rather than keep the poison. */
    g_warning("group %s: the saved term %" G_GUINT64_FORMAT " is beyond belief; starting from 0",
              g->name, g->term);
    g->term = 0;
  }
  g->role = SN_ROLE_JOINING;
  g->join_started = now;
  g->join_deadline = now + join_ms(c);
  g->next_hb = now;
}

/* Forgets what the backup has not acknowledged, and any snapshot under
 * way: the backup changed, or we stopped leading. */
static void pending_clear(Group *g)
{
  Pending *pd;
  while ((pd = g_queue_pop_head(&g->pending)))
    g_free(pd);
  if (g->snap.ids)
    g_array_unref(g->snap.ids);
  g->snap.ids = NULL;
  g->snap.unacked = 0;
}

void group_free(SnCore *c)
{
  sodium_memzero(c->group.key, sizeof c->group.key);
  pending_clear(&c->group);
  g_ptr_array_unref(c->group.leader_links);
  g_hash_table_destroy(c->group.watchers);
}

bool group_leads(const SnCore *c)
{
  return c->group.role == SN_ROLE_LEADER;
}

bool group_answers(const SnCore *c)
{
  return c->group.role == SN_ROLE_LEADER || c->group.role == SN_ROLE_BACKUP;
}

/* --- peers --------------------------------------------------------------------- */

static bool alive(const SnCore *c, const Peer *p, uint64_t now)
{
  return p && now - p->last_rx < dead_ms(c);
}

static Peer *member_link(SnCore *c, const uint8_t id[32])
{
  Peer *p = sn_find_link(c, id, 0);
  return p && p->member ? p : NULL;
}

typedef void (*PeerFn)(SnCore *c, Peer *p, void *ctx);

/* Calls fn for every peer of one of the kinds; fn may send but not close.
 * Members only: O(links), not O(sessions). */
static void each_peer(SnCore *c, bool members, bool leaves, PeerFn fn, void *ctx)
{
  if (!leaves) {
    for (GList *l = c->links.head; l; l = l->next) {
      Peer *p = l->data;
      if (members && p->member)
        fn(c, p, ctx);
    }
    return;
  }
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, c->peers);
  while (g_hash_table_iter_next(&it, NULL, &v)) {
    Peer *p = v;
    if ((members && p->kind == PEER_SUPER && p->member) ||
        (leaves && (p->kind == PEER_LEAF || p->kind == PEER_WATCH)))
      fn(c, p, ctx);
  }
}

/* --- membership ---------------------------------------------------------------- */

/* With a group secret (--group-key-file), a link is a member's only if the
 * far end proves the secret for this very pair of node ids (both
 * authenticated by the session's handshake), so the proof cannot be
 * replayed on another link. Without one, in a network, the certificate the
 * link showed in HELLO is the proof; with neither, nobody is a member. */
static void member_proof(const SnCore *c, const uint8_t from[32], const uint8_t to[32],
                         uint8_t out[32])
{
  const Group *g = &c->group;
  crypto_generichash_state st;
  crypto_generichash_init(&st, g->key, sizeof g->key, 32);
  crypto_generichash_update(&st, (const uint8_t *)"canopy group member", 19);
  crypto_generichash_update(&st, (const uint8_t *)g->name, strlen(g->name) + 1);
  crypto_generichash_update(&st, from, 32);
  crypto_generichash_update(&st, to, 32);
  crypto_generichash_final(&st, out, 32);
}

/* --- GROUP_STATE ----------------------------------------------------------------- */

typedef struct {
  WirePeer members[WIRE_MAX_MEMBERS];
  WireStr links[WIRE_MAX_MEMBERS];
  uint16_t n_members, n_links;
} StateLists;

static void lists_cb(SnCore *c, Peer *p, void *ctx)
{
  StateLists *l = ctx;
  if (p->kind != PEER_SUPER || !p->addr[0])
    return;
  if (p->member) {
    if (l->n_members < WIRE_MAX_MEMBERS) {
      memcpy(l->members[l->n_members].id, p->id, 32);
      l->members[l->n_members++].addr = wire_str(p->addr, strlen(p->addr));
    }
  } else if (l->n_links < WIRE_MAX_MEMBERS) {
    l->links[l->n_links++] = wire_str(p->addr, strlen(p->addr));
  }
}

static void send_state(SnCore *c, Peer *to)
{
  Group *g = &c->group;
  StateLists l = {0};
  memcpy(l.members[0].id, c->self, 32);
  l.members[0].addr = wire_str(c->advertise, strlen(c->advertise));
  l.n_members = 1;
  /* The links only: sent to every leaf on a change of view, a walk over
   * every session here was O(leaves) per message, O(leaves^2) a change. */
  for (GList *k = c->links.head; k; k = k->next)
    lists_cb(c, k->data, &l);
  WireMsg m = {.type = MSG_GROUP_STATE};
  m.u.group.role = wire_role(g->role);
  m.u.group.group = wire_str(g->name, strlen(g->name));
  m.u.group.term = g->term;
  m.u.group.hb_ms = (uint32_t)hb_ms(c);
  if (g->has_leader) {
    memcpy(m.u.group.leader, g->leader, 32);
    m.u.group.leader_addr = wire_str(g->leader_addr, strlen(g->leader_addr));
  }
  if (g->has_backup) {
    memcpy(m.u.group.backup, g->backup, 32);
    m.u.group.backup_addr = wire_str(g->backup_addr, strlen(g->backup_addr));
  }
  m.u.group.n_members = l.n_members;
  m.u.group.members = l.members;
  /* Only the leader's neighbours matter: a backup takes its place. */
  if (g->role == SN_ROLE_LEADER) {
    m.u.group.n_links = l.n_links;
    m.u.group.links = l.links;
  }
  if (g->keyed)
    member_proof(c, c->self, to->id, m.u.group.proof);
  sn_send(c, to->conn, &m);
}

static void state_cb(SnCore *c, Peer *p, void *ctx)
{
  send_state(c, p);
}

/* What a leaf takes from GROUP_STATE that can change: term, leader,
 * backup and the members (ids and addresses). FNV-1a: it only tells a
 * change from none. */
static uint64_t leaf_view_hash(const SnCore *c)
{
  const Group *g = &c->group;
  uint64_t h = 1469598103934665603ULL;
#define MIX(p, n)                                                                                  \
  for (size_t i_ = 0; i_ < (n); i_++)                                                              \
    h = (h ^ ((const uint8_t *)(p))[i_]) * 1099511628211ULL;
  MIX(&g->term, sizeof g->term);
  MIX(&g->role, sizeof g->role);
  MIX(g->leader, 32);
  MIX(g->backup, 32);
  MIX(g->backup_addr, strlen(g->backup_addr));
  for (GList *k = c->links.head; k; k = k->next) {
    const Peer *p = k->data;
    if (p->member && p->addr[0]) {
      MIX(p->id, 32);
      MIX(p->addr, strlen(p->addr));
    }
  }
#undef MIX
  return h;
}

/* Our view to the members every heartbeat (their failure detector), and
 * (leader) to every leaf session only when it changed: at 10,000 leaves a
 * heartbeat to each was 40,000 messages a second (GROUPS.md, "At size").
 * A leaf detects a dead leader by its closed session and a hung one when
 * the backup asks (group_probe). */
static void broadcast_state(SnCore *c)
{
  Group *g = &c->group;
  bool leaves = false;
  if (g->role == SN_ROLE_LEADER) {
    uint64_t h = leaf_view_hash(c);
    leaves = h != g->leaf_view;
    g->leaf_view = h;
  }
  each_peer(c, true, leaves, state_cb, NULL);
  g->members_told = g->now;
}

/* The heartbeat between super nodes goes out from the busy paths too (a
 * WATCH, a REPL or its ack, a leaf's or a watcher's HELLO): a node that
 * handles 10,000 of them in a burst (a takeover, a snapshot, the watch
 * handshakes after one) can go for over a dead interval without a timer
 * running, and its members took it for dead (the leader dropped its new
 * backup, a standby took over from a new leader). O(links), and only
 * when a heartbeat is due. */
static void beat_if_due(SnCore *c, uint64_t now)
{
  Group *g = &c->group;
  if (!g->on || now - g->members_told < hb_ms(c))
    return;
  g->members_told = now;
  each_peer(c, true, false, state_cb, NULL);
}

/* --- replication (leader side) --------------------------------------------------- */

/* What an op costs on the wire, about: the window's measure. */
static size_t repl_bytes(const WireEntry *e, size_t n)
{
  size_t b = 64;
  for (size_t i = 0; i < n; i++)
    b += 48 + e[i].name.len;
  return b;
}

static void repl_send(SnCore *c, Peer *to, uint8_t op, const uint8_t leaf[32], bool reset,
                      const WireEntry *e, size_t n)
{
  Group *g = &c->group;
  WireMsg m = {.type = MSG_REPL};
  m.u.repl.term = g->term;
  m.u.repl.seq = ++g->repl_seq;
  m.u.repl.op = op;
  if (leaf)
    memcpy(m.u.repl.leaf, leaf, 32);
  m.u.repl.reset = reset;
  m.u.repl.count = (uint16_t)n;
  m.u.repl.entries = (WireEntry *)e;
  sn_send(c, to->conn, &m);
  if (g_queue_get_length(&g->pending) >= MAX_PENDING) {
    Pending *old = g_queue_pop_head(&g->pending);
    g->snap.unacked -= MIN(g->snap.unacked, old->bytes);
    g_free(old);
  }
  Pending *pd = g_new(Pending, 1);
  pd->seq = m.u.repl.seq;
  pd->sent_at = g->now;
  pd->bytes = repl_bytes(e, n);
  g_queue_push_tail(&g->pending, pd);
  g->snap.unacked += pd->bytes;
  g->snap.max_unacked = MAX(g->snap.max_unacked, g->snap.unacked);
}

/* One leaf's entries, as PUBLISH ops of at most WIRE_MAX_ENTRIES. */
static void repl_entries(SnCore *c, Peer *to, const uint8_t id[32], bool reset, const WireEntry *e,
                         size_t n)
{
  size_t off = 0;
  do {
    size_t k = MIN(n - off, (size_t)WIRE_MAX_ENTRIES);
    repl_send(c, to, REPL_PUBLISH, id, reset && off == 0, e + off, k);
    off += k;
  } while (off < n);
}

static const uint8_t *snap_id(const Snapshot *sp, guint i)
{
  return (const uint8_t *)sp->ids->data + (gsize)i * 32;
}

/* Moves the snapshot on to its next record. */
static void snapshot_next_record(Snapshot *sp)
{
  sp->next++;
  sp->started = false;
  memset(&sp->cur, 0, sizeof sp->cur);
}

/* Sends the snapshot's next pieces while the window has room; SNAPSHOT_END
 * once every record that existed at SNAPSHOT_BEGIN went. Each record is
 * read from the index as it is now, not as it was when the snapshot began
 * (the roster keeps no copy of the entries): changes made meanwhile flow to
 * the backup as they happen (backup_synced), so a record not reached yet is
 * sent whole with reset when its turn comes; one that gains entries halfway
 * has had them live, and its cursor goes on through the older ones; one
 * reset or removed and added again halfway has had all of its new state
 * live, so the rest of its old one is not sent (index_owner_walk says
 * INDEX_WALK_CHANGED). A snapshot stopped because the backup fell behind
 * (synced_backup) starts again from the beginning. */
static void snapshot_pump(SnCore *c, Peer *to)
{
  Snapshot *sp = &c->group.snap;
  while (sp->ids && sp->unacked < snapshot_window(c)) {
    if (sp->next == sp->ids->len) {
      repl_send(c, to, REPL_SNAPSHOT_END, NULL, false, NULL, 0);
      sp->pieces++;
      sp->sent++;
      g_array_unref(sp->ids);
      sp->ids = NULL;
      break;
    }
    Record *rec = roster_get(c->roster, snap_id(sp, sp->next));
    if (!rec) {
      snapshot_next_record(sp); /* gone: its LEAF_DOWN went live */
      continue;
    }
    bool first = !sp->started;
    IndexHit h[WIRE_MAX_ENTRIES];
    size_t k;
    if (index_owner_walk(c->index, rec->owner, &sp->cur, h, WIRE_MAX_ENTRIES, &k) ==
            INDEX_WALK_CHANGED ||
        (k == 0 && !first)) {
      snapshot_next_record(sp); /* changed (went live), or done */
      continue;
    }
    if (first) {
      repl_send(c, to, REPL_LEAF_UP, rec->id, false, NULL, 0);
      sp->pieces++;
      sp->sent++;
      sp->started = true;
    }
    WireEntry e[WIRE_MAX_ENTRIES];
    for (size_t i = 0; i < k; i++) {
      e[i].name = wire_str(h[i].name, h[i].name_len);
      e[i].size = h[i].size;
      memcpy(e[i].cid, h[i].cid, 32);
    }
    /* The first batch resets (one, empty, for a record with no entries). */
    repl_send(c, to, REPL_PUBLISH, rec->id, first, e, k);
    sp->pieces++;
    sp->sent++;
    if (sp->cur.done)
      snapshot_next_record(sp);
  }
}

static void collect_id_cb(Record *rec, void *ctx)
{
  Snapshot *sp = ctx;
  g_array_append_vals(sp->ids, rec->id, 1); /* elements are 32-byte ids */
  /* LEAF_UP and the PUBLISH batches (one at least). */
  sp->planned += 1 + MAX((rec->count + WIRE_MAX_ENTRIES - 1) / WIRE_MAX_ENTRIES, (size_t)1);
}

/* Starts a snapshot to `to`, the new backup: the pieces follow as its
 * acknowledgements make room (group_on_repl_ack). */
static void send_snapshot(SnCore *c, Peer *to)
{
  Group *g = &c->group;
  /* What is still unacknowledged (a resync's) keeps counting against the
   * window: those bytes are still in the link's queue. */
  if (g->snap.ids)
    g_array_unref(g->snap.ids);
  repl_send(c, to, REPL_SNAPSHOT_BEGIN, NULL, false, NULL, 0);
  g->snap.ids = g_array_new(FALSE, FALSE, 32);
  g->snap.planned = 1; /* SNAPSHOT_END */
  g->snap.sent = 0;
  roster_foreach(c->roster, collect_id_cb, &g->snap);
  g->snap.next = 0;
  g->snap.started = false;
  memset(&g->snap.cur, 0, sizeof g->snap.cur);
  g->backup_synced = true;
  snapshot_pump(c, to);
}

/* Ops the running snapshot has still to send (for the lag figure): those
 * planned when it began less those sent. About: a record that changed
 * meanwhile sends more or fewer. O(1): the shell reads the status after
 * every tick, and a walk over the snapshot's records (a hash lookup each)
 * was most of a new leader's time at 5,000 leaves (issue 12). */
static uint64_t snapshot_left(const SnCore *c)
{
  const Snapshot *sp = &c->group.snap;
  if (!sp->ids)
    return 0;
  return sp->planned > sp->sent ? sp->planned - sp->sent : 1; /* 1: SNAPSHOT_END */
}

static Peer *synced_backup(SnCore *c)
{
  Group *g = &c->group;
  if (!g->on || g->role != SN_ROLE_LEADER || !g->has_backup || !g->backup_synced)
    return NULL;
  if (g->snap.unacked > link_queue_max(c) / 2) {
    /* Changes come faster than the backup takes them: rather than let its
     * link's queue reach the cap and be cut, stop sending changes and send
     * it a fresh snapshot, paced, from the next heartbeat on (the bytes in
     * flight keep counting against its window until acknowledged). */
    if (g->snap.ids)
      g_array_unref(g->snap.ids);
    g->snap.ids = NULL;
    g->backup_synced = false;
    g->snap.resyncs++;
    g_message("group %s: the backup falls behind (%zu bytes unacknowledged): resending a "
              "snapshot",
              g->name, g->snap.unacked);
    return NULL;
  }
  return member_link(c, g->backup);
}

void group_leaf_up(SnCore *c, const Record *rec, uint64_t now)
{
  Peer *b = synced_backup(c);
  if (b)
    repl_send(c, b, REPL_LEAF_UP, rec->id, false, NULL, 0);
}

void group_leaf_down(SnCore *c, const uint8_t id[32], uint64_t now)
{
  Peer *b = synced_backup(c);
  if (b)
    repl_send(c, b, REPL_LEAF_DOWN, id, false, NULL, 0);
}

void group_leaf_publish(SnCore *c, const Record *rec, bool reset, const WireEntry *e, size_t n,
                        uint64_t now)
{
  Peer *b = synced_backup(c);
  if (b)
    repl_entries(c, b, rec->id, reset, e, n);
}

/* The leader keeps a live backup: the current one while it answers, else
 * the linked member with the smallest node id. */
static void elect_backup(SnCore *c, uint64_t now)
{
  Group *g = &c->group;
  if (!g->on || g->role != SN_ROLE_LEADER)
    return;
  /* Just took over: the leaves move first (SETTLE_DEADS). */
  if (!g->has_backup && now < g->settle_until && c->stats.leaves < roster_size(c->roster))
    return;
  Peer *cur = g->has_backup ? member_link(c, g->backup) : NULL;
  if (cur && alive(c, cur, now)) {
    if (!g->backup_synced)
      send_snapshot(c, cur);
    return;
  }
  Peer *best = NULL;
  for (GList *k = c->links.head; k; k = k->next) { /* O(links), not O(leaves) */
    Peer *p = k->data;
    if (p->kind != PEER_SUPER || !p->member || !alive(c, p, now) || !p->addr[0] ||
        p->member_role == GROLE_LEADER)
      continue;
    if (!best || memcmp(p->id, best->id, 32) < 0)
      best = p;
  }
  bool had = g->has_backup;
  pending_clear(g);
  g->backup_synced = false;
  g->has_backup = best != NULL;
  if (best) {
    memcpy(g->backup, best->id, 32);
    g_strlcpy(g->backup_addr, best->addr, sizeof g->backup_addr);
    char id[17];
    short_id(best->id, id);
    g_message("group %s, term %" G_GUINT64_FORMAT ": backup is %s… at %s", g->name, g->term, id,
              best->addr);
    /* The backup learns its role before the snapshot arrives. */
    send_state(c, best);
    send_snapshot(c, best);
  } else {
    memset(g->backup, 0, 32);
    g->backup_addr[0] = '\0';
  }
  if (best || had)
    broadcast_state(c);
}

/* --- roles --------------------------------------------------------------------------- */

static void unbound_since_cb(Record *rec, void *ctx)
{
  if (rec->conn == 0)
    rec->unbound_since = *(uint64_t *)ctx;
}

/* The next term that only we can hold (shared/term.h): above ours and
 * above any believable one we heard of second hand, so the group follows
 * us; saturating, never wrapping. */
static uint64_t next_term(const SnCore *c)
{
  const Group *g = &c->group;
  return term_next(MAX(g->term, g->heard_term), term_tag(c->self));
}

static void become_leader(SnCore *c, uint64_t now, bool takeover)
{
  Group *g = &c->group;
  g->term = next_term(c);
  g->role = SN_ROLE_LEADER;
  g->has_leader = true;
  memcpy(g->leader, c->self, 32);
  g_strlcpy(g->leader_addr, c->advertise, sizeof g->leader_addr);
  g->has_backup = false;
  memset(g->backup, 0, 32);
  g->backup_addr[0] = '\0';
  g->backup_synced = false;
  pending_clear(g);
  if (takeover) {
    g->takeovers++;
    /* Take the old leader's place in the mesh. */
    for (guint i = 0; i < g->leader_links->len; i++)
      mesh_pin(c->mesh, g_ptr_array_index(g->leader_links, i));
    /* Replicated records wait a grace period for their leaves. */
    roster_foreach(c->roster, unbound_since_cb, &now);
    g->settle_until = now + SETTLE_DEADS * dead_ms(c);
  } else {
    g->settle_until = 0;
  }
  g_message("group %s: leading, term %" G_GUINT64_FORMAT "%s", g->name, g->term,
            takeover ? " (took over)" : "");
  elect_backup(c, now);
  broadcast_state(c);
}

/* Leaves attached to us while we no longer lead: tell them where to go;
 * they close their sessions themselves. */
static void stop_leading(SnCore *c)
{
  Group *g = &c->group;
  if (g->role == SN_ROLE_LEADER)
    g->stepdowns++;
  roster_clear(c->roster);
  sn_release_all_shares(c); /* what they paid for is gone with the roster */
  c->stats.index_entries = index_size(c->index);
  pending_clear(g);
  g->backup_synced = false;
}

/* Takes the leader (and backup, members' links) named in m, a GROUP_STATE
 * of a term at least ours. */
static void adopt(SnCore *c, const WireMsg *m, uint64_t now)
{
  Group *g = &c->group;
  /* A member that still names us leader (we restarted, or stepped down)
   * knows no newer leader: we are not it; the join timer or a takeover
   * moves the group on. */
  if (memcmp(m->u.group.leader, c->self, 32) == 0 && g->role != SN_ROLE_LEADER)
    return;
  SnRole before = g->role;
  bool new_leader = !g->has_leader || memcmp(g->leader, m->u.group.leader, 32) != 0;
  bool new_term = m->u.group.term != g->term;
  g->term = m->u.group.term;
  g->has_leader = true;
  memcpy(g->leader, m->u.group.leader, 32);
  copy_str(g->leader_addr, sizeof g->leader_addr, m->u.group.leader_addr);
  g->has_backup = !zero_id(m->u.group.backup);
  memcpy(g->backup, m->u.group.backup, 32);
  copy_str(g->backup_addr, sizeof g->backup_addr, m->u.group.backup_addr);
  g_ptr_array_set_size(g->leader_links, 0);
  for (uint16_t i = 0; i < m->u.group.n_links; i++)
    if (m->u.group.links[i].len)
      g_ptr_array_add(g->leader_links,
                      g_strndup(m->u.group.links[i].p,
                                MIN((size_t)m->u.group.links[i].len, (size_t)MESH_ADDR_MAX)));
  SnRole after =
      g->has_backup && memcmp(g->backup, c->self, 32) == 0 ? SN_ROLE_BACKUP : SN_ROLE_STANDBY;
  if (before == SN_ROLE_LEADER || (before == SN_ROLE_BACKUP && after != SN_ROLE_BACKUP) ||
      (after == SN_ROLE_BACKUP && (new_leader || new_term))) {
    stop_leading(c); /* our records are stale: a backup's come again by snapshot */
    g->replica_whole = false;
  }
  if (after != SN_ROLE_BACKUP || before != SN_ROLE_BACKUP) {
    g->repl_last_seq = 0;
    g->replica_whole = false;
  }
  g->role = after;
  g->leader_seen = now;
  g->probed_at = 0;
  g->leader_closed = false;
  if (before != after || new_leader || new_term) {
    char id[17];
    short_id(g->leader, id);
    g_message("group %s: %s, term %" G_GUINT64_FORMAT ", leader %s… at %s", g->name,
              role_str(after), g->term, id, g->leader_addr);
  }
  /* Our leaves: go there. Our watchers too: leaves no longer hear their
   * leader every heartbeat, and one watching us while its hung leader was
   * replaced by another member (not us) would hear of it from nobody. */
  if (before == SN_ROLE_LEADER || ((new_leader || new_term) && g_hash_table_size(g->watchers) > 0))
    each_peer(c, false, true, state_cb, NULL);
  /* Members keep a link to the leader (its heartbeats): a learned address
   * (mesh_pin), not a configured one. */
  if (g->leader_addr[0] && !member_link(c, g->leader))
    mesh_pin(c->mesh, g->leader_addr);
}

/* A member names a leader of a term at least ours that has not told us
 * itself. We do not follow a claim: a node that never leads (a member
 * naming a made-up leader, a leader that died meanwhile) would leave the
 * group without one. We dial the named leader (a learned address, so the
 * cap applies and failed dials end it), hear it first hand once linked,
 * and elect above its term if we ever must lead. */
static void hearsay(SnCore *c, const WireMsg *m, uint64_t now)
{
  Group *g = &c->group;
  if (memcmp(m->u.group.leader, c->self, 32) == 0 || member_link(c, m->u.group.leader))
    return;
  g->heard_term = MAX(g->heard_term, m->u.group.term);
  char addr[MESH_ADDR_MAX + 1];
  copy_str(addr, sizeof addr, m->u.group.leader_addr);
  if (addr[0])
    mesh_pin(c->mesh, addr);
  if (g->role == SN_ROLE_JOINING) {
    /* Wait for the link rather than lead over a live leader, but only so
     * long: hearsay alone cannot keep us joining. */
    uint64_t limit = g->join_started + JOIN_WAIT_MAX * join_ms(c);
    g->join_deadline = MAX(g->join_deadline, MIN(now + join_ms(c), limit));
  }
}

void group_on_state(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  Group *g = &c->group;
  g->now = now;
  if (!g->on || m->u.group.group.len != strlen(g->name) ||
      memcmp(m->u.group.group.p, g->name, m->u.group.group.len) != 0) {
    p->member = false;
    return;
  }
  if (!g->proven) {
    p->member = false; /* nobody can prove membership: trust nobody */
    return;
  }
  if (g->keyed) {
    uint8_t want[32];
    member_proof(c, p->id, c->self, want);
    if (sodium_memcmp(want, m->u.group.proof, 32) != 0) {
      if (!p->member_refused)
        g_warning("group %s: %s claims membership without the group's secret; ignored", g->name,
                  p->addr[0] ? p->addr : "a super node");
      p->member_refused = true;
      p->member = false;
      g->claims_refused++;
      return;
    }
  }
  if (!term_believable(m->u.group.term, unix_s(c))) {
    /* A member with a term far ahead of the clock (term.h): a hijack, or a
     * broken node. Nothing it says moves us. */
    g_debug("group %s: %s claims term %" G_GUINT64_FORMAT ", beyond belief; ignored", g->name,
            p->addr[0] ? p->addr : "a super node", m->u.group.term);
    g->claims_refused++;
    return;
  }
  bool was_member = p->member;
  p->member = true;
  p->member_role = m->u.group.role;
  p->member_term = m->u.group.term;
  bool names_leader = !zero_id(m->u.group.leader);
  bool from_leader =
      m->u.group.role == GROLE_LEADER && names_leader && memcmp(m->u.group.leader, p->id, 32) == 0;
  if (names_leader && m->u.group.term > g->term) {
    /* Only a leader's own word moves us to its term. */
    if (from_leader)
      adopt(c, m, now);
    else
      hearsay(c, m, now);
  } else if (names_leader && m->u.group.term == g->term) {
    if (g->role == SN_ROLE_LEADER && from_leader) {
      /* Two leaders of one term (a simultaneous start): the smaller id. */
      if (memcmp(p->id, c->self, 32) < 0)
        adopt(c, m, now);
      else
        send_state(c, p);
    } else if (g->role != SN_ROLE_LEADER &&
               (from_leader || !g->has_leader || memcmp(g->leader, m->u.group.leader, 32) == 0)) {
      /* The leader's own word: refresh (backup changes). */
      if (from_leader)
        adopt(c, m, now);
      else if (!g->has_leader)
        hearsay(c, m, now);
    }
    /* A backup cut off from the leader while the leader chose another
     * (which says so, still hearing it) is a backup no more. */
    if (g->role == SN_ROLE_BACKUP && m->u.group.role == GROLE_BACKUP &&
        memcmp(m->u.group.backup, p->id, 32) == 0 && g->has_leader &&
        memcmp(g->leader, m->u.group.leader, 32) == 0 && leader_lost(c, now)) {
      g_message("group %s: %s… is the backup now; standing by", g->name, p->addr);
      g->role = SN_ROLE_STANDBY;
      memcpy(g->backup, p->id, 32);
      g_strlcpy(g->backup_addr, p->addr, sizeof g->backup_addr);
      stop_leading(c);
    }
  } else if (m->u.group.term < g->term && (m->u.group.role == GROLE_LEADER || names_leader)) {
    send_state(c, p); /* it is behind: our term makes a stale leader step down */
  }
  /* Our leader's heartbeat, at our term: one at a lower term (we followed
   * a claim made in its name) does not keep it ours, so a standby takes
   * over above the claim rather than wait forever. */
  if (g->has_leader && memcmp(g->leader, p->id, 32) == 0 && from_leader &&
      m->u.group.term == g->term) {
    g->leader_seen = now;
    g->probed_at = 0; /* the next loss asks the watchers again */
  }
  if (g->role == SN_ROLE_LEADER && !was_member)
    elect_backup(c, now);
}

/* --- replication (backup side) ----------------------------------------------------- */

void group_on_repl(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  Group *g = &c->group;
  g->now = now;
  beat_if_due(c, now);
  if (g->role != SN_ROLE_BACKUP || !g->has_leader || memcmp(p->id, g->leader, 32) != 0 ||
      m->u.repl.term != g->term)
    return; /* from a former leader, or before we knew our role */
  Record *rec;
  switch (m->u.repl.op) {
  case REPL_SNAPSHOT_BEGIN:
    roster_clear(c->roster);
    g->replica_whole = false;
    break;
  case REPL_SNAPSHOT_END:
    g->replica_whole = true;
    break;
  case REPL_LEAF_UP:
    roster_ensure(c->roster, m->u.repl.leaf);
    break;
  case REPL_LEAF_DOWN:
    rec = roster_get(c->roster, m->u.repl.leaf);
    if (rec)
      roster_remove(c->roster, rec);
    break;
  case REPL_PUBLISH:
    rec = roster_ensure(c->roster, m->u.repl.leaf);
    roster_publish(c->roster, rec, m->u.repl.reset, m->u.repl.entries, m->u.repl.count);
    break;
  default:
    break;
  }
  c->stats.index_entries = index_size(c->index);
  g->repl_applied++;
  g->repl_last_seq = m->u.repl.seq;
  WireMsg ack = {.type = MSG_REPL_ACK};
  ack.u.repl_ack.term = g->term;
  ack.u.repl_ack.seq = m->u.repl.seq;
  sn_send(c, p->conn, &ack);
}

void group_on_repl_ack(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  Group *g = &c->group;
  g->now = now;
  beat_if_due(c, now);
  if (g->role != SN_ROLE_LEADER || !g->has_backup || memcmp(p->id, g->backup, 32) != 0 ||
      m->u.repl_ack.term != g->term)
    return;
  Pending *pd;
  while ((pd = g_queue_peek_head(&g->pending)) && pd->seq <= m->u.repl_ack.seq) {
    g->snap.unacked -= MIN(g->snap.unacked, pd->bytes);
    g_free(g_queue_pop_head(&g->pending));
  }
  snapshot_pump(c, p);
}

/* --- failure detection and takeover ------------------------------------------------ */

static bool leader_lost(SnCore *c, uint64_t now)
{
  Group *g = &c->group;
  Peer *l = g->has_leader ? member_link(c, g->leader) : NULL;
  return !l || now - g->leader_seen >= dead_ms(c);
}

/* A watcher's vote changed (or it came or went): g->watch_lost counts the
 * watch sessions that report the leader lost, so a WATCH costs O(1) and
 * not a walk over every watcher (10,000 WATCHes after a leader dies were
 * 10^8 steps). */
static void watch_vote(Group *g, Peer *p, bool leader_ok)
{
  if (p->watch_leader_ok && !leader_ok)
    g->watch_lost++;
  else if (!p->watch_leader_ok && leader_ok && g->watch_lost > 0)
    g->watch_lost--;
  p->watch_leader_ok = leader_ok;
}

static void probe_cb(SnCore *c, Peer *p, void *ctx)
{
  if (p->kind != PEER_WATCH)
    return;
  WireMsg m = {.type = MSG_WATCH};
  m.u.watch.term = c->group.term;
  m.u.watch.leader_ok = false;
  sn_send(c, p->conn, &m);
}

/* The backup lost the leader: it asks every watcher (WATCH, leader_ok
 * false) to check its own session to the leader now. Leaves do not ping
 * their leader at heartbeat rate (GROUPS.md, "At size"), so without the
 * question a hung leader would reach their vote only after their
 * keepalive timeout. Once per loss, again every PROBE_AGAIN dead
 * intervals while it lasts (leaves that came meanwhile). */
static void group_probe(SnCore *c, uint64_t now)
{
  Group *g = &c->group;
  if (g->probed_at && now - g->probed_at < PROBE_AGAIN * dead_ms(c))
    return;
  g->probed_at = now;
  g->probes++;
  each_peer(c, false, true, probe_cb, NULL);
}

typedef struct {
  size_t lost, reporting;
} Reports;

/* The vote: one per distinct leaf of the replicated roster (watchers holds
 * one session per leaf id, group_watch_hello sees to it). O(watchers):
 * check_takeover calls it only when g->watch_lost could be a majority. */
static void count_reports(SnCore *c, Reports *r)
{
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, c->group.watchers);
  while (g_hash_table_iter_next(&it, NULL, &v)) {
    const Peer *p = v;
    if (!roster_get(c->roster, p->id))
      continue;
    r->reporting++;
    if (!p->watch_leader_ok)
      r->lost++;
  }
}

/* Whether a live member will elect in our place: it shares our view (our
 * term, not leading). One that follows another leader, at a lower term,
 * never will: a member's claim we followed and that never materialised
 * (it named itself leader, then never led) must not leave us waiting for
 * it forever (the simulator's --claims found this). */
static bool will_elect(SnCore *c, const Peer *p, uint64_t now)
{
  return p && alive(c, p, now) && p->member_term >= c->group.term && p->member_role != GROLE_LEADER;
}

/* Leader and backup both gone: the live standby with the smallest id
 * leads (it has no copy: the leaves re-publish). It waits two dead
 * intervals, so a live backup always goes first. */
static void check_standby_takeover(SnCore *c, uint64_t now)
{
  Group *g = &c->group;
  if (!leader_lost(c, now) || now - g->leader_seen < 2 * dead_ms(c))
    return;
  Peer *b = g->has_backup ? member_link(c, g->backup) : NULL;
  if (will_elect(c, b, now))
    return;
  for (GList *k = c->links.head; k; k = k->next) {
    Peer *p = k->data;
    if (p->kind == PEER_SUPER && p->member && will_elect(c, p, now) &&
        !(g->has_leader && memcmp(p->id, g->leader, 32) == 0) && memcmp(p->id, c->self, 32) < 0)
      return;
  }
  become_leader(c, now, false);
}

/* The votes (leaves that lost the leader) a backup needs of a roster:
 * a strict majority; or, once the leader's link closed under us (a dead
 * process), a quorum of CLOSED_QUORUM_DIV, at least CLOSED_QUORUM_MIN. */
static size_t vote_needed(const SnCore *c, size_t roster)
{
  size_t majority = roster / 2 + 1;
  /* Only within a dead interval of the close: a killed leader's leaves
   * report on their own by then. Later the close says no more than
   * silence, and standing reports (a Sybil's, a leaf that missed one
   * probe of a loaded leader) must not move a live group on a quarter. */
  const Group *g = &c->group;
  if (!g->leader_closed || g->now - g->leader_closed_at >= dead_ms(c))
    return majority;
  size_t q = MAX((roster + CLOSED_QUORUM_DIV - 1) / CLOSED_QUORUM_DIV, (size_t)CLOSED_QUORUM_MIN);
  return MIN(q, majority);
}

static void check_takeover(SnCore *c, uint64_t now)
{
  Group *g = &c->group;
  if (g->role == SN_ROLE_STANDBY) {
    check_standby_takeover(c, now);
    return;
  }
  if (g->role != SN_ROLE_BACKUP || !leader_lost(c, now))
    return;
  size_t roster = roster_size(c->roster);
  /* Ask only once the leader has been silent a whole dead interval: a
   * crashed one closed the leaves' sessions too, and they report without
   * being asked (10,000 questions and answers for nothing); a hung one or
   * a cut link is silent that long before anyone may act on it anyway. */
  if (now - g->leader_seen >= dead_ms(c))
    group_probe(c, now);
  /* Watchers outside the roster may count in watch_lost, never in the
   * vote: a count below what the vote needs is final, one above is checked. */
  size_t need = vote_needed(c, roster);
  if (g->replica_whole && roster > 0 && g->watch_lost < need)
    return;
  Reports r = {0};
  count_reports(c, &r);
  if (!g->replica_whole) {
    /* No whole copy yet: an empty roster proves nothing. Wait as long as
     * a standby would, then lead without one (the leaves re-publish). */
    if (now - g->leader_seen >= 2 * dead_ms(c) && r.lost >= r.reporting - r.lost)
      become_leader(c, now, false);
    return;
  }
  /* A majority of the leaves lost the leader; or its link to us closed
   * (a dead process, CLOSED_QUORUM_DIV) and a quorum saw theirs close. */
  if (roster > 0 && r.lost < need)
    return; /* the leaves still see the leader: only our link to it is gone */
  g_message("group %s: %zu of %zu leaves lost the leader too, %" G_GUINT64_FORMAT
            " ms after we last heard it: taking over",
            g->name, r.lost, roster, now - g->leader_seen);
  become_leader(c, now, true);
}

void group_on_watch(SnCore *c, Peer *p, const WireMsg *m, uint64_t now)
{
  c->group.now = now;
  beat_if_due(c, now);
  watch_vote(&c->group, p, m->u.watch.leader_ok);
  p->watch_term = m->u.watch.term;
  check_takeover(c, now);
}

/* --- sessions ------------------------------------------------------------------------- */

void group_link_up(SnCore *c, Peer *p, uint64_t now)
{
  c->group.now = now;
  if (c->group.on)
    send_state(c, p);
}

void group_link_down(SnCore *c, Peer *p, uint64_t now)
{
  Group *g = &c->group;
  g->now = now;
  if (!g->on || !p->member)
    return;
  p->member = false; /* member_link() must not find it any more */
  if (g->role == SN_ROLE_LEADER && g->has_backup && memcmp(p->id, g->backup, 32) == 0)
    elect_backup(c, now);
  else if (g->role == SN_ROLE_BACKUP && g->has_leader && memcmp(p->id, g->leader, 32) == 0) {
    /* Closed while the leader was still heard within the dead interval:
     * the far end closed it (a killed process), not our silence rule
     * (group_tick), which closes only a link silent that long, nor any
     * other close of ours (sn_close_peer: a duplicate link, a protocol
     * error). A close by our shell (output stalled or overrun) still
     * counts; the window of vote_needed bounds it. */
    g->leader_closed = !p->closed_by_us && now - g->leader_seen < dead_ms(c);
    g->leader_closed_at = now;
    g_message("group %s: the link to the leader closed%s", g->name,
              g->leader_closed ? "" : " (silent)");
    check_takeover(c, now);
  }
}

bool group_leaf_hello(SnCore *c, Peer *p, uint64_t now)
{
  Group *g = &c->group;
  g->now = now;
  beat_if_due(c, now);
  if (!g->on) {
    sn_attach_leaf(c, p, now);
    return true;
  }
  if (g->role == SN_ROLE_LEADER) {
    /* The leaf learns the group before ATTACHED; a watch session promoted
     * to the primary has it already (every change of view went to the
     * watchers too): 10,000 fewer messages in a takeover. */
    if (p->kind != PEER_WATCH)
      send_state(c, p);
    group_watch_down(c, p);
    sn_attach_leaf(c, p, now);
    return true;
  }
  send_state(c, p); /* names the leader to go to, if we know it */
  sn_close_peer(c, p, "not the group's leader", now);
  return false;
}

bool group_watch_hello(SnCore *c, Peer *p, uint64_t now)
{
  Group *g = &c->group;
  g->now = now;
  beat_if_due(c, now);
  if (!g->on) {
    sn_close_peer(c, p, "not in a group", now);
    return false;
  }
  /* One watch session per leaf id, so a leaf votes once however many it
   * opens; and no more of them than leaves a leader may hold. */
  Peer *old = g_hash_table_lookup(g->watchers, p->id);
  if (old && old != p)
    sn_close_peer(c, old, "replaced by a newer watch session of the same leaf", now);
  if (g_hash_table_size(g->watchers) >= c->cfg.max_leaves) {
    g->watchers_refused++;
    sn_close_peer(c, p, "too many watch sessions", now);
    return false;
  }
  p->kind = PEER_WATCH;
  p->watch_leader_ok = true;
  g_hash_table_replace(g->watchers, p->id, p);
  send_state(c, p);
  /* One that comes while we ask (the leader lost) is asked too. */
  if (g->role == SN_ROLE_BACKUP && g->probed_at)
    probe_cb(c, p, NULL);
  return true;
}

void group_watch_down(SnCore *c, Peer *p)
{
  if (p->kind == PEER_WATCH && g_hash_table_lookup(c->group.watchers, p->id) == p) {
    watch_vote(&c->group, p, true); /* its vote goes with it */
    g_hash_table_remove(c->group.watchers, p->id);
  }
}

/* --- time ------------------------------------------------------------------------------- */

typedef struct {
  uint64_t now;
  uint64_t grace;
  GPtrArray *expired;
} Expire;

static void expire_cb(Record *rec, void *ctx)
{
  Expire *e = ctx;
  if (rec->conn == 0 && e->now - rec->unbound_since >= e->grace)
    g_ptr_array_add(e->expired, rec);
}

void group_tick(SnCore *c, uint64_t now)
{
  Group *g = &c->group;
  g->now = now;
  if (!g->on)
    return;
  if (g->role == SN_ROLE_JOINING && now >= g->join_deadline)
    become_leader(c, now, false); /* nobody leads: the first to start does */
  bool beat = now >= g->next_hb;
  /* A tick over two heartbeats late: we were stalled (a burst of work,
   * a loaded machine), and what our members sent meanwhile may still
   * wait unread in our sockets. We do not judge their silence this beat. */
  bool stalled = g->last_tick && now - g->last_tick > 2 * hb_ms(c);
  g->last_tick = now;
  if (beat) {
    g->next_hb = now + hb_ms(c);
    /* A member silent for a dead interval is hung or cut off: drop the
     * link (the mesh redials it), so its role moves on. */
    GPtrArray *silent = g_ptr_array_new();
    for (GList *l = c->links.head; l && !stalled; l = l->next) {
      Peer *p = l->data;
      if (p->member && !alive(c, p, now))
        g_ptr_array_add(silent, p);
    }
    for (guint i = 0; i < silent->len; i++)
      sn_close_peer(c, g_ptr_array_index(silent, i), "group member silent", now);
    g_ptr_array_unref(silent);
    broadcast_state(c);
    /* Not on a stalled tick either: the backup's silence may be ours. */
    if (!stalled)
      elect_backup(c, now);
  }
  /* Nor a standby's takeover, which goes on silence alone; a backup's
   * rests on the leaves' reports, and a node that is always late must
   * still ask them. */
  if (!stalled || g->role != SN_ROLE_STANDBY)
    check_takeover(c, now);
  /* The walk over the roster once a heartbeat, not on every tick (a busy
   * node ticks for each batch of queued queries): the grace is several
   * dead intervals, a heartbeat late is nothing to it. */
  if (g->role == SN_ROLE_LEADER && beat) {
    Expire e = {now, RECORD_GRACE_DEADS * dead_ms(c), g_ptr_array_new()};
    roster_foreach(c->roster, expire_cb, &e);
    for (guint i = 0; i < e.expired->len; i++) {
      Record *rec = g_ptr_array_index(e.expired, i);
      uint8_t id[32];
      memcpy(id, rec->id, 32);
      roster_remove(c->roster, rec);
      group_leaf_down(c, id, now);
    }
    if (e.expired->len)
      c->stats.index_entries = index_size(c->index);
    g_ptr_array_unref(e.expired);
  }
}

uint64_t group_deadline(const SnCore *c)
{
  const Group *g = &c->group;
  if (!g->on)
    return UINT64_MAX;
  uint64_t t = g->next_hb;
  if (g->role == SN_ROLE_JOINING)
    t = MIN(t, g->join_deadline);
  /* Once the leader is lost, check_takeover runs on every heartbeat tick
   * and every WATCH: a deadline in the past would only spin the timer. */
  if (g->role == SN_ROLE_BACKUP && g->leader_seen + dead_ms(c) > g->now)
    t = MIN(t, g->leader_seen + dead_ms(c));
  return t;
}

/* --- status ------------------------------------------------------------------------------ */

static void count_cb(SnCore *c, Peer *p, void *ctx)
{
  SnGroupStatus *st = ctx;
  st->members++;
}

void sn_core_group_status(const SnCore *cc, SnGroupStatus *st)
{
  SnCore *c = (SnCore *)cc; /* iteration only */
  const Group *g = &c->group;
  memset(st, 0, sizeof *st);
  st->role = g->role;
  st->term = g->term;
  g_strlcpy(st->group, g->name, sizeof st->group);
  st->has_leader = g->has_leader;
  memcpy(st->leader, g->leader, 32);
  g_strlcpy(st->leader_addr, g->leader_addr, sizeof st->leader_addr);
  st->has_backup = g->has_backup;
  memcpy(st->backup, g->backup, 32);
  g_strlcpy(st->backup_addr, g->backup_addr, sizeof st->backup_addr);
  /* The shell asks after every tick: O(links), not a walk over every
   * leaf or watcher (issue 12). */
  each_peer(c, true, false, count_cb, st);
  /* watchers holds PEER_WATCH sessions only (group_watch_down takes each
   * out before it changes kind or closes): its size, not a walk. */
  st->watchers = g_hash_table_size(g->watchers);
  st->probes = g->probes;
  st->leaves = c->stats.leaves;
  st->records = (unsigned)roster_size(c->roster);
  /* Sent and not acknowledged, and what the snapshot has yet to send: a
   * backup still catching up is behind by all of it. */
  st->repl_lag_ops = g_queue_get_length((GQueue *)&g->pending) + snapshot_left(c);
  const Pending *oldest = g_queue_peek_head((GQueue *)&g->pending);
  st->repl_lag_ms = oldest && g->now > oldest->sent_at ? g->now - oldest->sent_at : 0;
  st->repl_applied = g->repl_applied;
  st->takeovers = g->takeovers;
  st->stepdowns = g->stepdowns;
  st->claims_refused = g->claims_refused;
  st->watchers_refused = g->watchers_refused;
}
