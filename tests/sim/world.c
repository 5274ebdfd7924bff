/* world.c - the cores on a virtual network: the event queue, sessions that
 * behave like TCP (see sim.c), dials, and the shells' handling of each
 * core's actions. Calls into a core are always followed by world_after(). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"
#include "wire.h"

static void ring_add(World *w, char *line)
{
  g_free(w->ring[w->ring_next]);
  w->ring[w->ring_next] = line;
  w->ring_next = (w->ring_next + 1) % RING;
}

/* A notable event: faults, role and term changes, leaves moving. */
void sim_note(World *w, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  char *line = g_strdup_printf("%9.3f  %s", (double)w->now / 1000.0, msg);
  g_free(msg);
  if (w->prm->verbose)
    printf("%s\n", line);
  ring_add(w, line);
}

/* Every message, dial and close (--verbose --verbose). */
void sim_trace(World *w, const char *fmt, ...)
{
  if (w->prm->verbose < 2)
    return;
  va_list ap;
  va_start(ap, fmt);
  char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  printf("%9.3f  %s\n", (double)w->now / 1000.0, msg);
  g_free(msg);
}

void sim_fail(World *w, const char *fmt, ...)
{
  if (w->failed)
    return;
  w->failed = true;
  va_list ap;
  va_start(ap, fmt);
  g_string_vprintf(w->why, fmt, ap);
  va_end(ap);
  sim_note(w, "FAIL %s", w->why->str);
}

/* Something a shell would tolerate but that suggests a core bug. */
static void anomaly(World *w, Node *n, const char *what)
{
  if (!w->anomalies++)
    g_snprintf(w->anomaly_first, sizeof w->anomaly_first, "%s at %.3f s: %s", n->name,
               (double)w->now / 1000.0, what);
  sim_note(w, "%s: anomaly: %s", n->name, what);
}

const char *sim_role_str(SnRole r)
{
  switch (r) {
  case SN_ROLE_JOINING:
    return "joining";
  case SN_ROLE_LEADER:
    return "leader";
  case SN_ROLE_BACKUP:
    return "backup";
  case SN_ROLE_STANDBY:
    return "standby";
  }
  return "?";
}

/* The node with this id (its name for traces), or NULL. */
Node *world_node_by_id(World *w, const uint8_t id[32])
{
  for (unsigned i = 0; i < w->nnodes; i++)
    if (memcmp(w->node[i].id, id, 32) == 0)
      return &w->node[i];
  return NULL;
}

const char *world_id_name(World *w, const uint8_t id[32])
{
  Node *n = world_node_by_id(w, id);
  return n ? n->name : "?";
}

static Node *node_by_addr(World *w, const char *addr)
{
  for (unsigned i = 0; i < w->nsupers; i++)
    if (strcmp(w->node[i].addr, addr) == 0)
      return &w->node[i];
  return NULL;
}

bool world_live(const Node *n)
{
  return n->up && !n->hung;
}

bool world_is_cut(World *w, int a, int b)
{
  return w->cut[a][b] > 0;
}

/* --- the event queue -------------------------------------------------------- */

static bool ev_less(const Ev *a, const Ev *b)
{
  return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

void world_push(World *w, uint64_t t, EvKind kind, int a, uint64_t b, void *p)
{
  if (w->nheap == w->capheap) {
    w->capheap = w->capheap ? 2 * w->capheap : 1024;
    w->heap = g_renew(Ev, w->heap, w->capheap);
  }
  Ev e = {t < w->now ? w->now : t, w->seq++, kind, a, b, p};
  size_t i = w->nheap++;
  while (i && ev_less(&e, &w->heap[(i - 1) / 2])) {
    w->heap[i] = w->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  w->heap[i] = e;
}

Ev world_pop(World *w)
{
  Ev top = w->heap[0], last = w->heap[--w->nheap];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= w->nheap)
      break;
    if (c + 1 < w->nheap && ev_less(&w->heap[c + 1], &w->heap[c]))
      c++;
    if (!ev_less(&w->heap[c], &last))
      break;
    w->heap[i] = w->heap[c];
    i = c;
  }
  if (w->nheap)
    w->heap[i] = last;
  return top;
}

static uint64_t latency(World *w)
{
  return rnd(&w->rng_net, LAT_MIN_MS, LAT_MAX_MS);
}

/* --- connections ---------------------------------------------------------------- */

static void item_free(gpointer p)
{
  Item *it = p;
  g_free(it->data);
  g_free(it);
}

void world_conn_free(gpointer p)
{
  Conn *c = p;
  for (int e = 0; e < 2; e++)
    g_queue_clear_full(&c->q[e], item_free);
  g_free(c);
}

static Conn *conn_new(World *w, Node *a, Node *b)
{
  Conn *c = g_new0(Conn, 1);
  c->id = ++w->next_conn;
  Node *n[2] = {a, b};
  for (int e = 0; e < 2; e++) {
    c->node[e] = n[e]->index;
    c->inc[e] = n[e]->inc;
    c->open[e] = true;
    g_queue_init(&c->q[e]);
    if (n[e]->kind == NODE_SUPER) {
      c->local[e] = ++n[e]->next_local;
      g_hash_table_insert(n[e]->by_local, &c->local[e], c);
    }
  }
  g_ptr_array_add(w->conns, c);
  return c;
}

static int end_of(const Conn *c, const Node *n)
{
  return c->node[0] == n->index && c->inc[0] == n->inc ? 0 : 1;
}

/* Puts an item on the wire from end e. */
static void conn_put(World *w, Conn *c, int e, const uint8_t *data, size_t len, bool fin)
{
  if (c->fin_sent[e])
    return;
  Item *it = g_new0(Item, 1);
  uint64_t ready = w->now + latency(w);
  if (ready < c->last_ready[e])
    ready = c->last_ready[e];
  c->last_ready[e] = ready;
  it->ready = ready;
  it->fin = fin;
  if (data) {
    it->data = g_memdup2(data, len);
    it->len = len;
  }
  c->fin_sent[e] |= fin;
  bool was_empty = g_queue_is_empty(&c->q[e]);
  g_queue_push_tail(&c->q[e], it);
  if (was_empty)
    world_push(w, ready, EV_PUMP, e, 0, c);
}

/* The end's core let go of it (CLOSE, crash, redial): FIN to the peer. */
static void conn_drop_end(World *w, Conn *c, int e)
{
  if (!c->open[e])
    return;
  c->open[e] = false;
  Node *n = &w->node[c->node[e]];
  if (n->kind == NODE_SUPER && n->inc == c->inc[e])
    g_hash_table_remove(n->by_local, &c->local[e]);
  conn_put(w, c, e, NULL, 0, true);
}

/* An item arrives at end r: the core hears of it. */
static void deliver(World *w, Conn *c, int r, Item *it)
{
  Node *n = &w->node[c->node[r]];
  if (!c->open[r] || !n->up || n->inc != c->inc[r])
    return;
  Node *from = &w->node[c->node[!r]];
  if (n->kind == NODE_SUPER) {
    if (it->fin) {
      sim_trace(w, "%s: conn %" PRIu64 " (%s) closed by peer", n->name, c->local[r], from->name);
      c->open[r] = false;
      g_hash_table_remove(n->by_local, &c->local[r]);
      sn_core_closed(n->sn, c->local[r], w->now);
    } else {
      sim_trace(w, "%s <- %s: %s (%zu B)", n->name, from->name,
                it->len > 1 ? wire_type_str(it->data[1]) : "?", it->len);
      sn_core_recv(n->sn, c->local[r], it->data, it->len, w->now);
    }
  } else {
    int slot = n->slot[0] == c ? 0 : n->slot[1] == c ? 1 : -1;
    if (slot < 0) /* the shell let go of it (slot_of() < 0) */
      return;
    if (it->fin) {
      sim_trace(w, "%s: slot %d (%s) closed by peer", n->name, slot, from->name);
      c->open[r] = false;
      n->slot[slot] = NULL;
      leaf_core_disconnected(n->leaf, slot, w->now);
    } else {
      sim_trace(w, "%s <- %s [%d]: %s (%zu B)", n->name, from->name, slot,
                it->len > 1 ? wire_type_str(it->data[1]) : "?", it->len);
      leaf_core_recv(n->leaf, slot, it->data, it->len, w->now);
    }
  }
  world_after(w, n);
}

/* Delivers what is due on direction e of c; stalls on a cut link or a hung
 * receiver (heal and resume pump again). */
void world_pump(World *w, Conn *c, int e)
{
  int r = !e;
  while (!w->failed && !g_queue_is_empty(&c->q[e])) {
    Node *to = &w->node[c->node[r]];
    bool gone = !to->up || to->inc != c->inc[r];
    if (!gone && (to->hung || world_is_cut(w, c->node[0], c->node[1])))
      return;
    Item *it = g_queue_peek_head(&c->q[e]);
    if (it->ready > w->now) {
      world_push(w, it->ready, EV_PUMP, e, 0, c);
      return;
    }
    g_queue_pop_head(&c->q[e]);
    if (!gone)
      deliver(w, c, r, it);
    item_free(it);
  }
}

/* Node `to` resumed (to >= 0) or links healed (to < 0): what waited
 * arrives after a latency. A pump on a queue still stalled does nothing. */
void world_repump(World *w, int to)
{
  for (guint i = 0; i < w->conns->len; i++) {
    Conn *c = g_ptr_array_index(w->conns, i);
    for (int e = 0; e < 2; e++)
      if (!g_queue_is_empty(&c->q[e]) && (to < 0 || c->node[!e] == to))
        world_push(w, w->now + latency(w), EV_PUMP, e, 0, c);
  }
}

/* --- dials ------------------------------------------------------------------- */

static void dial_start(World *w, Node *n, const char *addr, int slot)
{
  Dial *d = g_new0(Dial, 1);
  d->from = n->index;
  d->inc = n->inc;
  d->slot = slot;
  if (slot >= 0)
    d->gen = ++n->dial_gen[slot];
  g_strlcpy(d->addr, addr, sizeof d->addr);
  Node *t = node_by_addr(w, addr);
  d->target = t ? t->index : -1;
  d->start = w->now;
  d->phase = DIAL_SYN;
  sim_trace(w, "%s: dial %s%s", n->name, addr, slot < 0 ? "" : slot ? " [watch]" : " [primary]");
  world_push(w, w->now + latency(w), EV_DIAL, 0, 0, d);
}

static bool dial_current(World *w, const Dial *d)
{
  const Node *n = &w->node[d->from];
  if (!n->up || n->inc != d->inc)
    return false;
  return d->slot < 0 || n->dial_gen[d->slot] == d->gen;
}

static void dial_fail_at(World *w, Dial *d, uint64_t t)
{
  d->phase = DIAL_FAIL;
  world_push(w, t, EV_DIAL, 0, 0, d);
}

static void dial_open(World *w, Dial *d)
{
  Node *a = &w->node[d->from], *b = &w->node[d->target];
  Conn *c = conn_new(w, a, b);
  sim_trace(w, "%s: connected to %s (conn %" PRIu64 "/%" PRIu64 ")", a->name, b->name, c->local[0],
            c->local[1]);
  if (a->kind == NODE_SUPER) {
    sn_core_open(a->sn, c->local[0], b->id, d->addr, w->now);
  } else {
    if (a->slot[d->slot]) { /* cannot happen: a DIAL empties the slot */
      anomaly(w, a, "dial completed into an occupied slot");
      conn_drop_end(w, a->slot[d->slot], end_of(a->slot[d->slot], a));
    }
    a->slot[d->slot] = c;
    leaf_core_connected(a->leaf, d->slot, b->id, w->now);
  }
  sn_core_open(b->sn, c->local[1], a->id, NULL, w->now);
  world_after(w, a);
  world_after(w, b);
}

void world_dial_step(World *w, Dial *d)
{
  if (!dial_current(w, d)) {
    g_free(d);
    return;
  }
  Node *n = &w->node[d->from];
  Node *t = d->target >= 0 ? &w->node[d->target] : NULL;
  switch (d->phase) {
  case DIAL_SYN:
    if (!t || !t->up) { /* RST: connection refused */
      dial_fail_at(w, d, w->now + latency(w));
    } else if (world_is_cut(w, d->from, d->target)) {
      uint64_t since = w->now - d->start;
      uint64_t next = since < 1000 ? 1000 : since < 3000 ? 3000 : CONNECT_TIMEOUT_MS;
      if (next >= CONNECT_TIMEOUT_MS)
        dial_fail_at(w, d, d->start + CONNECT_TIMEOUT_MS);
      else
        world_push(w, d->start + next, EV_DIAL, 0, 0, d);
    } else {
      d->phase = DIAL_HS;
      d->target_inc = t->inc;
      d->hs_start = w->now;
      world_push(w, w->now + 2 * latency(w), EV_DIAL, 0, 0, d);
    }
    return;
  case DIAL_HS:
    if (!t->up || t->inc != d->target_inc) { /* the acceptor died: RST */
      dial_fail_at(w, d, w->now + latency(w));
    } else if (n->hung || t->hung || world_is_cut(w, d->from, d->target)) {
      if (w->now - d->hs_start >= HANDSHAKE_MS)
        dial_fail_at(w, d, w->now);
      else
        world_push(w, w->now + POLL_MS, EV_DIAL, 0, 0, d);
    } else {
      dial_open(w, d);
      g_free(d);
    }
    return;
  case DIAL_FAIL:
    if (n->hung) {
      world_push(w, w->now + POLL_MS, EV_DIAL, 0, 0, d);
      return;
    }
    sim_trace(w, "%s: dial %s failed", n->name, d->addr);
    if (n->kind == NODE_SUPER) {
      sn_core_dial_failed(n->sn, d->addr, w->now);
    } else {
      leaf_core_disconnected(n->leaf, d->slot, w->now);
    }
    world_after(w, n);
    g_free(d);
    return;
  }
}

/* --- observing the cores ----------------------------------------------------- */

/* Invariants 1 and 1b, and the trace of role changes. */
static void observe_super(World *w, Node *n, const SnGroupStatus *st)
{
  if (st->term < n->term)
    sim_fail(w, "invariant 1b (term went down): %s went from term %" PRIu64 " to %" PRIu64, n->name,
             n->term, st->term);
  if (st->role != n->role || st->term != n->term || st->has_leader != n->has_leader ||
      (st->has_leader && memcmp(st->leader, n->leader, 32) != 0)) {
    sim_note(
        w, "%s: %s, term %" PRIu64 ", leader %s, backup %s (%u members, %u leaves, %u records)",
        n->name, sim_role_str(st->role), st->term,
        st->has_leader ? world_id_name(w, st->leader) : "-",
        st->has_backup ? world_id_name(w, st->backup) : "-", st->members, st->leaves, st->records);
  }
  n->role = st->role;
  n->term = st->term;
  n->has_leader = st->has_leader;
  memcpy(n->leader, st->leader, 32);
  if (st->role != SN_ROLE_LEADER || n->recorded_term == st->term + 1)
    return;
  n->recorded_term = st->term + 1;
  for (guint i = 0; i < w->terms->len; i++) {
    TermRec *r = &g_array_index(w->terms, TermRec, i);
    if (r->group != n->group || r->term != st->term)
      continue;
    if (memcmp(r->id, n->id, 32) != 0)
      sim_fail(w,
               "invariant 1 (two leaders in one term): g%d term %" PRIu64
               " led by %s (since %.3f s) and by %s (%.3f s)",
               n->group + 1, st->term, r->name, (double)r->t / 1000.0, n->name,
               (double)w->now / 1000.0);
    return;
  }
  TermRec r = {.group = n->group, .term = st->term, .t = w->now};
  memcpy(r.id, n->id, 32);
  g_strlcpy(r.name, n->name, sizeof r.name);
  g_array_append_val(w->terms, r);
}

static void observe_leaf(World *w, Node *n)
{
  LeafGroupStatus st;
  leaf_core_group_status(n->leaf, &st);
  const LeafGroupStatus *was = &n->status;
  bool att = st.attached && st.supernode_leads;
  bool was_att = was->attached && was->supernode_leads;
  if (att != was_att || (att && memcmp(st.supernode, was->supernode, 32) != 0) ||
      st.term != was->term) {
    if (att)
      sim_note(w, "%s: attached to %s, term %" PRIu64 ", backup %s (publishes %" PRIu64 ")",
               n->name, world_id_name(w, st.supernode), st.term,
               st.has_backup ? world_id_name(w, st.backup) : "-", st.publishes);
    else
      sim_note(w, "%s: detached, term %" PRIu64, n->name, st.term);
  }
  n->status = st;
}

static void schedule_tick(World *w, Node *n, uint64_t deadline)
{
  if (deadline == n->tick_at)
    return;
  n->tick_at = deadline;
  n->tick_gen++;
  if (deadline != UINT64_MAX)
    world_push(w, deadline, EV_TICK, n->index, n->tick_gen, NULL);
}

/* --- running a super node's actions ------------------------------------------ */

static Conn *sn_conn(World *w, Node *n, uint64_t local, const char *what)
{
  Conn *c = g_hash_table_lookup(n->by_local, &local);
  if (!c) {
    /* Invariant 5: conn ids are never reused, so the core acted on a session
     * it had closed or been told was closed. */
    sim_fail(w, "invariant 5 (action on a closed session): %s: %s on conn %" PRIu64, n->name, what,
             local);
  }
  return c;
}

static void sn_run_actions(World *w, Node *n)
{
  SnAction a;
  while (n->sn && sn_core_next_action(n->sn, &a)) {
    Conn *c;
    switch (a.kind) {
    case SN_ACT_SEND:
      if ((c = sn_conn(w, n, a.conn, "SEND"))) {
        int e = end_of(c, n);
        sim_trace(w, "%s -> %s: %s (%zu B)", n->name, w->node[c->node[!e]].name,
                  a.len > 1 ? wire_type_str(a.data[1]) : "?", a.len);
        conn_put(w, c, e, a.data, a.len, false);
      }
      break;
    case SN_ACT_CLOSE:
      if ((c = sn_conn(w, n, a.conn, "CLOSE"))) {
        int e = end_of(c, n);
        sim_trace(w, "%s: close conn %" PRIu64 " (%s): %s", n->name, a.conn,
                  w->node[c->node[!e]].name, a.reason ? a.reason : "?");
        conn_drop_end(w, c, e);
        /* As the shell: session_close() runs on_closed(), which tells the
         * core the session ended. */
        sn_core_closed(n->sn, a.conn, w->now);
      }
      break;
    case SN_ACT_DIAL:
      dial_start(w, n, a.addr, -1);
      break;
    case SN_ACT_LEAF_UP:
    case SN_ACT_LINK_UP:
      break;
    }
    sn_action_clear(&a);
  }
}

/* --- running a leaf's actions ------------------------------------------------ */

/* The shell's drop_session(): the slot's session goes (FIN to the peer),
 * the core hears nothing of it. */
static void leaf_drop_slot(World *w, Node *n, int slot)
{
  Conn *c = n->slot[slot];
  if (!c)
    return;
  n->slot[slot] = NULL;
  conn_drop_end(w, c, end_of(c, n));
}

static void leaf_run_actions(World *w, Node *n)
{
  LeafAction a;
  while (n->leaf && leaf_core_next_action(n->leaf, &a)) {
    switch (a.kind) {
    case LEAF_ACT_DIAL:
      leaf_drop_slot(w, n, a.slot);
      dial_start(w, n, a.addr, a.slot);
      break;
    case LEAF_ACT_SEND:
      if (n->slot[a.slot]) {
        Conn *c = n->slot[a.slot];
        int e = end_of(c, n);
        sim_trace(w, "%s [%d] -> %s: %s (%zu B)", n->name, a.slot, w->node[c->node[!e]].name,
                  a.len > 1 ? wire_type_str(a.data[1]) : "?", a.len);
        conn_put(w, c, e, a.data, a.len, false);
      } else {
        anomaly(w, n, a.slot ? "SEND on the empty watch slot" : "SEND on the empty primary slot");
      }
      break;
    case LEAF_ACT_CLOSE:
      sim_trace(w, "%s: close slot %d: %s", n->name, a.slot, a.reason ? a.reason : "?");
      n->dial_gen[a.slot]++;
      leaf_drop_slot(w, n, a.slot);
      break;
    case LEAF_ACT_SWAP:
      sim_trace(w, "%s: swap (watch session is the primary now)", n->name);
      if (n->slot[LEAF_SLOT_PRIMARY]) {
        anomaly(w, n, "SWAP with the primary slot still open");
        leaf_drop_slot(w, n, LEAF_SLOT_PRIMARY);
      }
      if (!n->slot[LEAF_SLOT_WATCH])
        anomaly(w, n, "SWAP with an empty watch slot");
      n->slot[LEAF_SLOT_PRIMARY] = n->slot[LEAF_SLOT_WATCH];
      n->slot[LEAF_SLOT_WATCH] = NULL;
      n->dial_gen[LEAF_SLOT_WATCH]++;
      break;
    case LEAF_ACT_HIT:
    case LEAF_ACT_SEARCH_DONE:
      for (guint i = 0; i < w->searches->len; i++) {
        SearchRec *r = g_ptr_array_index(w->searches, i);
        if (r->searcher != n->index || !r->started || r->id != a.search)
          continue;
        if (a.kind == LEAF_ACT_SEARCH_DONE) {
          r->done = true;
          r->error = a.reason;
        } else if (memcmp(a.peer, w->node[r->target].id, 32) == 0 &&
                   memcmp(a.cid, r->want.cid, 32) == 0) {
          r->found = true;
        }
      }
      break;
    case LEAF_ACT_NAT_INFO:
    case LEAF_ACT_SIGNAL:
      break;
    }
    leaf_action_clear(&a);
  }
}

/* After any call into a core: run its actions, persist its term (as the
 * shell does after every batch), check invariants, re-arm its tick. */
void world_after(World *w, Node *n)
{
  if (!n->up)
    return;
  if (n->kind == NODE_SUPER) {
    sn_run_actions(w, n);
    SnGroupStatus st;
    sn_core_group_status(n->sn, &st);
    if (st.term > n->disk_term)
      n->disk_term = st.term;
    observe_super(w, n, &st);
    schedule_tick(w, n, sn_core_next_deadline(n->sn));
  } else {
    leaf_run_actions(w, n);
    observe_leaf(w, n);
    schedule_tick(w, n, leaf_core_next_deadline(n->leaf));
  }
}

void world_tick(World *w, Node *n, uint64_t gen)
{
  if (gen != n->tick_gen || !n->up || n->hung)
    return;
  if (w->now == n->spin_now) {
    if (++n->spins > SPIN_LIMIT) {
      sim_fail(w, "%s: busy loop: next_deadline stays at %" PRIu64 " after %u ticks at that time",
               n->name, n->tick_at, SPIN_LIMIT);
      return;
    }
  } else {
    n->spin_now = w->now;
    n->spins = 0;
  }
  n->tick_at = UINT64_MAX; /* re-armed by world_after() */
  if (n->kind == NODE_SUPER)
    sn_core_tick(n->sn, w->now);
  else
    leaf_core_tick(n->leaf, w->now);
  world_after(w, n);
}

/* --- starting, crashing, resuming -------------------------------------------- */

const uint8_t sim_group_key[32] = {0x5e, 0xc2, 0xe7};

/* The wall clock the cores believe terms by (shared/term.h): a fixed date
 * plus the virtual time. One world runs at a time. */
#define SIM_UNIX_BASE 1800000000ull
static const World *clock_world;
static uint64_t sim_unix_now(void)
{
  return SIM_UNIX_BASE + (clock_world ? clock_world->now / 1000 : 0);
}

static void start_super(World *w, Node *n)
{
  SnConfig cfg;
  sn_config_defaults(&cfg);
  cfg.advertise = n->addr;
  cfg.discovery = true;
  cfg.group = n->group ? "g2" : "g1";
  /* Members prove membership (GROUPS.md): every simulated group shares a key. */
  cfg.group_key = sim_group_key;
  clock_world = w;
  cfg.unix_now = sim_unix_now;
  cfg.term_floor = n->disk_term;
  n->inc++;
  n->rng = w->seed * 0x100000001B3ull + (uint64_t)n->index * 7919 + n->inc * 104729;
  n->sn = sn_core_new(&cfg, n->id, core_rng, &n->rng, w->now);
  if (!n->sn) {
    sim_fail(w, "%s: sn_core_new failed", n->name);
    return;
  }
  n->up = true;
  n->hung = false;
  n->role = SN_ROLE_JOINING;
  n->recorded_term = 0;
  n->tick_at = UINT64_MAX;
  sim_note(w, "%s: start (term floor %" PRIu64 ")", n->name, cfg.term_floor);
  for (unsigned i = 0; i < w->nsupers; i++)
    if (&w->node[i] != n && w->node[i].group == n->group)
      sn_core_add_peer(n->sn, w->node[i].addr, w->now);
  if (n->direction >= 0)
    sn_core_add_peer(n->sn, w->node[n->direction].addr, w->now);
  world_after(w, n);
}

static void start_leaf(World *w, Node *n)
{
  LeafConfig cfg;
  leaf_config_defaults(&cfg);
  cfg.supernode = n->home;
  n->inc++;
  n->rng = w->seed * 0x100000001B3ull + (uint64_t)n->index * 7919 + n->inc * 104729;
  n->leaf = leaf_core_new(&cfg, core_rng, &n->rng);
  if (!n->leaf) {
    sim_fail(w, "%s: leaf_core_new failed", n->name);
    return;
  }
  n->up = true;
  n->hung = false;
  n->tick_at = UINT64_MAX;
  memset(&n->status, 0, sizeof n->status);
  leaf_core_set_manifest(n->leaf, (const LeafEntry *)(void *)n->manifest->data, n->manifest->len,
                         w->now);
  sim_note(w, "%s: start (%u files, home %s)", n->name, n->manifest->len, n->home);
  leaf_core_start(n->leaf, w->now);
  world_after(w, n);
}

void world_start(World *w, Node *n)
{
  if (n->kind == NODE_SUPER)
    start_super(w, n);
  else
    start_leaf(w, n);
}

/* kill -9: the core is gone; the kernel closes every socket (FIN/RST). */
void world_crash(World *w, Node *n)
{
  if (!n->up)
    return;
  for (guint i = 0; i < w->conns->len; i++) {
    Conn *c = g_ptr_array_index(w->conns, i);
    for (int e = 0; e < 2; e++)
      if (c->node[e] == n->index && c->inc[e] == n->inc)
        conn_drop_end(w, c, e);
  }
  if (n->kind == NODE_SUPER) {
    SnGroupStatus st;
    sn_core_group_status(n->sn, &st);
    n->takeovers_past += st.takeovers;
    n->stepdowns_past += st.stepdowns;
    sn_core_free(n->sn);
    n->sn = NULL;
    g_hash_table_remove_all(n->by_local);
  } else {
    leaf_core_free(n->leaf);
    n->leaf = NULL;
    n->slot[0] = n->slot[1] = NULL;
  }
  n->up = false;
  n->hung = false;
  n->tick_at = UINT64_MAX;
  n->tick_gen++;
  if (n->kind == NODE_SUPER)
    sim_note(w, "%s: CRASH (disk term %" PRIu64 ")", n->name, n->disk_term);
  else
    sim_note(w, "%s: CRASH", n->name);
}

void world_resume(World *w, Node *n)
{
  if (!n->up || !n->hung)
    return;
  n->hung = false;
  sim_note(w, "%s: RESUME", n->name);
  world_repump(w, n->index);
  n->tick_at = UINT64_MAX;
  n->tick_gen++;
  world_tick(w, n, n->tick_gen); /* time jumped: let it look at once */
}
