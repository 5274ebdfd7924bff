/* check.c - invariants 2, 3 and 6 (sim.c lists them) and the recovery
 * figures. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"
#include "identity.h"
#include "wire.h"

/* --- the group as a whole ---------------------------------------------------- */

/* Group g's live leader with the highest term, or NULL. */
Node *check_leader(World *w, int g)
{
  Node *best = NULL;
  for (unsigned i = 0; i < w->nsupers; i++) {
    Node *n = &w->node[i];
    if (n->group == g && world_live(n) && n->role == SN_ROLE_LEADER &&
        (!best || n->term > best->term))
      best = n;
  }
  return best;
}

Node *check_backup_of(World *w, Node *leader)
{
  if (!leader)
    return NULL;
  SnGroupStatus st;
  sn_core_group_status(leader->sn, &st);
  if (!st.has_backup)
    return NULL;
  Node *b = world_node_by_id(w, st.backup);
  return b && b->kind == NODE_SUPER ? b : NULL;
}

/* Invariants 2 and 3 for group g: one live leader, everyone follows it,
 * it holds every live leaf's entries; and with `full`, it has a live
 * backup that every leaf watches and that holds the entries too. why gets
 * the first reason not. */
bool check_converged(World *w, int g, bool full, GString *why)
{
  Node *leader = NULL;
  unsigned leaders = 0;
  for (unsigned i = 0; i < w->nsupers; i++) {
    Node *n = &w->node[i];
    if (n->group == g && world_live(n) && n->role == SN_ROLE_LEADER) {
      leaders++;
      leader = n;
    }
  }
  if (leaders != 1) {
    if (why) {
      g_string_printf(why, "invariant 2 (one leader): g%d has %u live leaders:", g + 1, leaders);
      for (unsigned i = 0; i < w->nsupers; i++) {
        Node *n = &w->node[i];
        if (n->group == g && n->up)
          g_string_append_printf(why, " %s=%s/t%" PRIu64 "%s", n->name, sim_role_str(n->role),
                                 n->term, n->hung ? "(hung)" : "");
      }
    }
    return false;
  }
  for (unsigned i = 0; i < w->nsupers; i++) {
    Node *n = &w->node[i];
    if (n->group != g || !world_live(n) || n == leader)
      continue;
    if (!n->has_leader || memcmp(n->leader, leader->id, 32) != 0 || n->term != leader->term) {
      if (why)
        g_string_printf(why,
                        "invariant 2 (super nodes follow the leader): %s is %s, term %" PRIu64
                        ", leader %s; the leader is %s, term %" PRIu64,
                        n->name, sim_role_str(n->role), n->term,
                        n->has_leader ? world_id_name(w, n->leader) : "-", leader->name,
                        leader->term);
      return false;
    }
  }
  /* A new backup is elected whenever another member is up. */
  Node *backup = full ? check_backup_of(w, leader) : NULL;
  Node *other = NULL;
  for (unsigned i = 0; i < w->nsupers; i++)
    if (w->node[i].group == g && world_live(&w->node[i]) && &w->node[i] != leader)
      other = &w->node[i];
  if (full && other && (!backup || !world_live(backup) || backup->role != SN_ROLE_BACKUP)) {
    if (why)
      g_string_printf(why,
                      "invariant 2 (a backup is elected): leader %s (term %" PRIu64
                      ") names backup %s (%s), though %s is up",
                      leader->name, leader->term, backup ? backup->name : "-",
                      backup ? sim_role_str(backup->role) : "-", other->name);
    return false;
  }
  for (unsigned i = w->nsupers; i < w->nnodes; i++) {
    Node *n = &w->node[i];
    if (n->group != g || !world_live(n))
      continue;
    const LeafGroupStatus *st = &n->status;
    if (!st->attached || !st->supernode_leads || memcmp(st->supernode, leader->id, 32) != 0 ||
        st->term != leader->term) {
      if (why)
        g_string_printf(why,
                        "invariant 2 (leaves follow the leader): %s is %s %s (leads: %d), "
                        "term %" PRIu64 "; the leader is %s, term %" PRIu64,
                        n->name, st->attached ? "attached to" : "not attached, last",
                        st->attached ? world_id_name(w, st->supernode) : st->supernode_addr,
                        st->supernode_leads, st->term, leader->name, leader->term);
      return false;
    }
    if (backup && (!st->has_backup || memcmp(st->backup, backup->id, 32) != 0 || !st->watching)) {
      if (why)
        g_string_printf(why,
                        "invariant 2 (leaves watch the backup): %s knows backup %s and is %s; "
                        "the backup is %s",
                        n->name, st->has_backup ? world_id_name(w, st->backup) : "-",
                        st->watching ? "watching" : "not watching", backup->name);
      return false;
    }
    size_t want = leaf_core_manifest_size(n->leaf);
    size_t have = sn_core_leaf_entries(leader->sn, n->id);
    if (have != want) {
      if (why)
        g_string_printf(why,
                        "invariant 3 (index entries of a live leaf): leader %s holds %zu entries "
                        "for %s, whose manifest has %zu",
                        leader->name, have, n->name, want);
      return false;
    }
    if (backup && (have = sn_core_leaf_entries(backup->sn, n->id)) != want) {
      if (why)
        g_string_printf(why,
                        "invariant 3 (the backup's copy): backup %s holds %zu entries for %s, "
                        "whose manifest has %zu (leader %s holds them all)",
                        backup->name, have, n->name, want, leader->name);
      return false;
    }
  }
  return true;
}

/* Every CHECK_MS: how long a group takes to have all its leaves on one
 * leader again after a fault, and after the final heal to be whole (a
 * backup watched by every leaf included). */
void check_tick(World *w)
{
  bool all = true;
  for (unsigned g = 0; g < w->ngroups; g++) {
    bool now_ok = check_converged(w, (int)g, false, NULL);
    all &= now_ok;
    if (now_ok && !w->converged[g]) {
      for (guint i = 0; i < w->faults->len; i++) {
        Fault *f = &g_array_index(w->faults, Fault, i);
        if (f->group == (int)g && f->clean && f->on_leader &&
            (f->kind == F_CRASH || f->kind == F_HANG)) {
          uint64_t ms = w->now - f->start;
          g_array_append_val(w->tot->recover[f->kind == F_HANG], ms);
          sim_note(w, "g%u converged %" PRIu64 " ms after the leader's %s", g + 1, ms,
                   fault_names[f->kind]);
          f->clean = false;
        }
      }
    }
    w->converged[g] = now_ok;
  }
  if (!w->healed)
    return;
  for (unsigned g = 0; g < w->ngroups && all; g++)
    all = check_converged(w, (int)g, true, NULL);
  if (!all)
    w->converged_at = 0;
  else if (!w->converged_at)
    w->converged_at = w->now;
}

void check_search_start(World *w, SearchRec *r)
{
  Node *n = &w->node[r->searcher];
  char hex[2 * WIRE_CID_LEN + 1];
  hex_encode(r->want.cid, WIRE_CID_LEN, hex);
  r->id = leaf_core_search(n->leaf, QUERY_CONTENT_ID, hex, WIRE_MAX_TTL, SEARCH_WAIT_MS, w->now);
  r->started = true;
  w->tot->searches++;
  sim_trace(w, "%s: search %u for %s of %s", n->name, r->id, r->want.name, w->node[r->target].name);
  world_after(w, n);
}

/* Invariant 6: once converged, a leaf of the other group (or of the same
 * group with one group) finds a file of every live leaf by content id. */
void check_searches(World *w)
{
  uint64_t t = w->now;
  for (unsigned g = 0; g < w->ngroups; g++) {
    int other = w->ngroups > 1 ? (int)!g : (int)g;
    for (unsigned i = w->nsupers; i < w->nnodes; i++) {
      Node *target = &w->node[i];
      if (target->group != (int)g || !world_live(target) || !target->manifest->len)
        continue;
      int searcher = -1;
      for (unsigned k = w->nsupers; k < w->nnodes && searcher < 0; k++)
        if (w->node[k].group == other && world_live(&w->node[k]) && k != i)
          searcher = (int)k;
      if (searcher < 0)
        continue;
      SearchRec *r = g_new0(SearchRec, 1);
      r->searcher = searcher;
      r->target = target->index;
      r->want = g_array_index(target->manifest, LeafEntry,
                              rnd(&w->rng_fault, 0, target->manifest->len - 1));
      g_ptr_array_add(w->searches, r);
      t += SEARCH_GAP_MS;
      world_push(w, t, EV_SEARCH, 0, 0, r);
    }
  }
  sim_run_until(w, t + SEARCH_WAIT_MS + 500);
  for (guint i = 0; i < w->searches->len && !w->failed; i++) {
    SearchRec *r = g_ptr_array_index(w->searches, i);
    if (!r->found) {
      Node *n = &w->node[r->searcher];
      LeafGroupStatus st;
      leaf_core_group_status(n->leaf, &st);
      sim_fail(w,
               "invariant 6 (search): %s (g%d, attached to %s) searched for %s of %s (g%d) by "
               "content id: no hit%s%s",
               n->name, n->group + 1, st.attached ? world_id_name(w, st.supernode) : "nothing",
               r->want.name, w->node[r->target].name, w->node[r->target].group + 1,
               r->error ? ", error: " : "", r->error ? r->error : "");
    }
  }
}
