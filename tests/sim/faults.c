/* faults.c - crashes, hangs and partitions chosen from the seed, their
 * heals, invariant 4, and leaves changing their shares. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "buf.h"
#include "sim.h"
#include "term.h"
#include "wire.h"

const char *const fault_names[F_KINDS] = {
    "crash", "hang",       "isolate",     "cut-leader-backup", "cut-pair", "cut-leader-leaves",
    "split", "crash-leaf", "member-claim"};

/* --- faults ----------------------------------------------------------------- */

static void cut_pair(World *w, Fault *f, int a, int b)
{
  if (a == b)
    return;
  int p[2] = {a, b};
  g_array_append_val(f->pairs, p);
  w->cut[a][b]++;
  w->cut[b][a]++;
}

static Node *pick_super(World *w, int g, Node *prefer, unsigned percent)
{
  if (prefer && world_live(prefer) && chance(&w->rng_fault, percent))
    return prefer;
  Node *c[MAX_SUPERS];
  unsigned k = 0;
  for (unsigned i = 0; i < w->nsupers; i++)
    if (w->node[i].group == g && world_live(&w->node[i]))
      c[k++] = &w->node[i];
  return k ? c[rnd(&w->rng_fault, 0, k - 1)] : NULL;
}

static void describe_pairs(World *w, Fault *f, GString *s)
{
  for (guint i = 0; i < f->pairs->len && i < 12; i++) {
    int *p = &g_array_index(f->pairs, int, 2 * i);
    g_string_append_printf(s, "%s%s-%s", i ? "," : "", w->node[p[0]].name, w->node[p[1]].name);
  }
  if (f->pairs->len > 12)
    g_string_append_printf(s, ",... (%u links)", f->pairs->len);
}

/* A member gone bad (it holds the key: every simulated group shares one)
 * tells t, on their link, that it leads: at a term beyond belief (refused),
 * or at a believable one ahead of the group, which t follows until it finds
 * nobody leads it (GROUPS.md, "Terms"): the group must recover by itself. */
static bool member_claim(World *w, Node *t, const Node *leader)
{
  Conn *cn = NULL;
  int e = 0;
  for (guint i = 0; i < w->conns->len && !cn; i++) {
    Conn *k = g_ptr_array_index(w->conns, i);
    for (int s = 0; s < 2 && !cn; s++) {
      const Node *o = &w->node[k->node[!s]];
      if (k->node[s] == t->index && k->open[s] && k->inc[s] == t->inc && o->kind == NODE_SUPER &&
          o->group == t->group) {
        cn = k;
        e = s;
      }
    }
  }
  if (!cn)
    return false;
  const Node *y = &w->node[cn->node[!e]];
  uint64_t base = leader ? leader->term : t->term;
  uint64_t term =
      chance(&w->rng_fault, 50)
          ? 0xFFFFFFFF00000001ull
          : ((uint64_t)term_counter(base) + rnd(&w->rng_fault, 1, 50)) << 32 | term_tag(y->id);
  const char *group = t->group ? "g2" : "g1";
  sim_note(w, "CLAIM %s tells %s it leads %s at term %" PRIu64, y->name, t->name, group, term);
  WireMsg m = {.type = MSG_GROUP_STATE};
  m.u.group.role = GROLE_LEADER;
  m.u.group.group = wire_str(group, 2);
  m.u.group.term = term;
  m.u.group.hb_ms = 250;
  memcpy(m.u.group.leader, y->id, 32);
  m.u.group.leader_addr = wire_str(y->addr, strlen(y->addr));
  WirePeer me = {.addr = wire_str(y->addr, strlen(y->addr))};
  memcpy(me.id, y->id, 32);
  m.u.group.n_members = 1;
  m.u.group.members = &me;
  crypto_generichash_state st; /* the membership proof, GROUPS.md */
  crypto_generichash_init(&st, sim_group_key, 32, 32);
  crypto_generichash_update(&st, (const uint8_t *)"canopy group member", 19);
  crypto_generichash_update(&st, (const uint8_t *)group, 3);
  crypto_generichash_update(&st, y->id, 32);
  crypto_generichash_update(&st, t->id, 32);
  crypto_generichash_final(&st, m.u.group.proof, 32);
  Buf b;
  buf_init(&b);
  if (wire_encode(&m, &b))
    sn_core_recv(t->sn, cn->local[e], b.data, b.len, w->now);
  buf_free(&b);
  world_after(w, t);
  return true;
}

void fault_inject(World *w)
{
  int g = w->ngroups > 1 && chance(&w->rng_fault, 25) ? 1 : 0;
  Node *leader = check_leader(w, g);
  Node *backup = check_backup_of(w, leader);
  bool was_converged = w->converged[g] && w->active_faults == 0;
  bool was_whole = was_converged && check_converged(w, g, true, NULL);
  unsigned weight[F_KINDS] = {6, 4, 3, 3, 2, 2, 2, 2, 0};
  if (w->prm->claims)
    weight[F_CLAIM] = 3;
  unsigned total = 0;
  for (int k = 0; k < F_KINDS; k++)
    total += weight[k];
  unsigned r = (unsigned)rnd(&w->rng_fault, 0, total - 1);
  FaultKind kind = 0;
  while (r >= weight[kind])
    r -= weight[kind++];

  Fault f = {.kind = kind, .group = g, .target = -1, .start = w->now, .active = true};
  f.pairs = g_array_new(FALSE, FALSE, 2 * sizeof(int));
  uint64_t dur = 0;
  Node *t = NULL;
  switch (kind) {
  case F_CRASH:
  case F_HANG:
  case F_ISOLATE: {
    unsigned pick = (unsigned)rnd(&w->rng_fault, 0, 99);
    t = pick < 60   ? pick_super(w, g, leader, 100)
        : pick < 80 ? pick_super(w, g, backup, 100)
                    : pick_super(w, g, NULL, 0);
    if (!t)
      break;
    f.target = t->index;
    f.on_leader = t == leader;
    if (kind == F_CRASH) {
      world_crash(w, t);
      dur = rnd(&w->rng_fault, 500, 12000);
    } else if (kind == F_HANG) {
      t->hung = true;
      sim_note(w, "%s: HANG", t->name);
      dur = rnd(&w->rng_fault, 300, 6000);
    } else {
      for (unsigned i = 0; i < w->nnodes; i++)
        cut_pair(w, &f, t->index, (int)i);
      dur = rnd(&w->rng_fault, 500, 10000);
    }
    break;
  }
  case F_CUT_LB:
    if (!leader || !backup || !world_live(backup))
      break;
    cut_pair(w, &f, leader->index, backup->index);
    f.target = leader->index;
    dur = rnd(&w->rng_fault, 1000, 10000);
    break;
  case F_CUT_PAIR: {
    Node *a = pick_super(w, g, NULL, 0), *b = pick_super(w, g, NULL, 0);
    if (!a || !b || a == b)
      break;
    cut_pair(w, &f, a->index, b->index);
    dur = rnd(&w->rng_fault, 500, 10000);
    break;
  }
  case F_CUT_LEAVES: {
    if (!leader)
      break;
    unsigned percent = (unsigned)rnd(&w->rng_fault, 20, 90);
    for (unsigned i = w->nsupers; i < w->nnodes; i++)
      if (w->node[i].group == g && chance(&w->rng_fault, percent))
        cut_pair(w, &f, leader->index, (int)i);
    if (chance(&w->rng_fault, 50) && backup && world_live(backup)) /* and the backup too */
      cut_pair(w, &f, leader->index, backup->index);
    f.target = leader->index;
    dur = rnd(&w->rng_fault, 500, 10000);
    break;
  }
  case F_SPLIT: {
    bool side[MAX_NODES];
    for (unsigned i = 0; i < w->nnodes; i++)
      side[i] = chance(&w->rng_fault, 50);
    for (unsigned i = 0; i < w->nnodes; i++)
      for (unsigned j = i + 1; j < w->nnodes; j++)
        if (side[i] != side[j])
          cut_pair(w, &f, (int)i, (int)j);
    dur = rnd(&w->rng_fault, 500, 10000);
    break;
  }
  case F_CRASH_LEAF: {
    Node *c[MAX_LEAVES];
    unsigned k = 0;
    for (unsigned i = w->nsupers; i < w->nnodes; i++)
      if (world_live(&w->node[i]))
        c[k++] = &w->node[i];
    if (!k)
      break;
    t = c[rnd(&w->rng_fault, 0, k - 1)];
    f.target = t->index;
    world_crash(w, t);
    dur = rnd(&w->rng_fault, 500, 8000);
    break;
  }
  case F_CLAIM:
    t = pick_super(w, g, NULL, 0);
    if (t && member_claim(w, t, leader))
      dur = 100; /* nothing to heal: it is said and done */
    break;
  case F_KINDS:
    break;
  }
  if (!dur) { /* nothing to do it to */
    g_array_unref(f.pairs);
    return;
  }
  if (f.pairs->len) {
    GString *s = g_string_new(NULL);
    describe_pairs(w, &f, s);
    sim_note(w, "CUT g%d %s: %s", g + 1, fault_names[kind], s->str);
    g_string_free(s, TRUE);
  }
  /* Anything injected spoils the measurements of the faults in progress. */
  for (guint i = 0; i < w->faults->len; i++)
    g_array_index(w->faults, Fault, i).clean = false;
  /* A crash or hang is timed only when it strikes a whole group (every
   * leaf watching a backup that holds its copy), as the bench's drills
   * are: leaves open their watch sessions 250 ms + up to 2 s after they
   * attach (GROUPS.md), and a fault before that times the leaves' wait
   * for a session they never had, not the failover. */
  f.clean = was_whole;
  f.base_term = leader ? leader->term : 0;
  /* A recovery between two checks must still count as one. */
  w->converged[g] = check_converged(w, g, false, NULL);
  w->tot->faults++;
  w->tot->by_kind[kind]++;
  w->active_faults++;
  g_array_append_val(w->faults, f);
  int idx = (int)w->faults->len - 1;
  world_push(w, w->now + dur, EV_HEAL, idx, 0, NULL);
  if (kind == F_CUT_LB && f.clean) /* invariant 4: judged dead_ms after the heal */
    world_push(w, w->now + dur + 3000, EV_GUARD_END, idx, 0, NULL);
}

void fault_heal(World *w, int idx)
{
  Fault *f = &g_array_index(w->faults, Fault, idx);
  if (!f->active)
    return;
  f->active = false;
  w->active_faults--;
  Node *t = f->target >= 0 ? &w->node[f->target] : NULL;
  for (guint i = 0; i < f->pairs->len; i++) {
    int *p = &g_array_index(f->pairs, int, 2 * i);
    w->cut[p[0]][p[1]]--;
    w->cut[p[1]][p[0]]--;
  }
  if (f->pairs->len) {
    sim_note(w, "HEAL %s", fault_names[f->kind]);
    world_repump(w, -1);
  }
  if ((f->kind == F_CRASH || f->kind == F_CRASH_LEAF) && t && !t->up)
    world_start(w, t);
  if (f->kind == F_HANG && t)
    world_resume(w, t);
}

/* The end of the fault phase: everything heals, crashed nodes restart. */
void fault_heal_all(World *w)
{
  for (guint i = 0; i < w->faults->len; i++)
    fault_heal(w, (int)i);
  for (unsigned i = 0; i < w->nnodes; i++) {
    if (!w->node[i].up)
      world_start(w, &w->node[i]);
    else if (w->node[i].hung)
      world_resume(w, &w->node[i]);
  }
  w->healed = true;
  w->healed_at = w->now;
  sim_note(w, "all faults healed; quiet for %.1f s", (double)w->prm->quiet_ms / 1000.0);
}

/* Invariant 4: the leader-backup cut ended with no other fault; no takeover. */
void fault_guard_end(World *w, int idx)
{
  Fault *f = &g_array_index(w->faults, Fault, idx);
  if (!f->clean)
    return;
  for (guint i = 0; i < w->terms->len; i++) {
    TermRec *r = &g_array_index(w->terms, TermRec, i);
    if (r->group == f->group && r->term > f->base_term && r->t >= f->start)
      sim_fail(w,
               "invariant 4 (split brain guard): only the leader-backup link was cut (at %.3f s, "
               "term %" PRIu64 "), yet %s took over with term %" PRIu64 " at %.3f s",
               (double)f->start / 1000.0, f->base_term, r->name, r->term, (double)r->t / 1000.0);
  }
}

/* A leaf changes its share: adds a file or drops one. */
void fault_churn(World *w)
{
  Node *c[MAX_LEAVES];
  unsigned k = 0;
  for (unsigned i = w->nsupers; i < w->nnodes; i++)
    if (w->node[i].up)
      c[k++] = &w->node[i];
  if (!k)
    return;
  Node *n = c[rnd(&w->rng_fault, 0, k - 1)];
  if (n->manifest->len > 1 && chance(&w->rng_fault, 40)) {
    guint i = (guint)rnd(&w->rng_fault, 0, n->manifest->len - 1);
    g_free(g_array_index(n->manifest, LeafEntry, i).name);
    g_array_remove_index(n->manifest, i);
  } else {
    LeafEntry e = {0};
    e.name = g_strdup_printf("%s/file-%u.ogg", n->name, n->files_made++);
    e.size = rnd(&w->rng_fault, 1, 1u << 30);
    core_rng(e.cid, 32, &w->rng_ids);
    g_array_append_val(n->manifest, e);
  }
  sim_trace(w, "%s: share now has %u files", n->name, n->manifest->len);
  leaf_core_set_manifest(n->leaf, (const LeafEntry *)(void *)n->manifest->data, n->manifest->len,
                         w->now);
  world_after(w, n);
}
