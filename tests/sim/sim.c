/* sim.c - canopy-sim: the super-node and leaf cores in one process, on a
 * virtual clock and a virtual network, under seeded crashes, hangs and
 * partitions (issue 4, supernode/GROUPS.md).
 *
 * Everything is decided by the seed: node ids, start times, latencies, the
 * fault schedule and the bytes each core's RNG returns. Events sit in one
 * min-heap ordered by (time, insertion order), so a seed replays exactly.
 *
 * The network behaves like TCP between the daemons' shells:
 * - a DIAL reaches its address after a latency (1-5 ms per message, seeded);
 *   a dead or unknown address refuses at once (after the round trip); a cut
 *   link retransmits the SYN at 1 s and 3 s and gives up at 5 s (the shells'
 *   connect timeout); a hung peer accepts but does not finish the handshake,
 *   which the dialer gives up on after 10 s (SESSION_HANDSHAKE_MS);
 * - bytes on a session arrive in order. On a cut link, or towards a hung
 *   node, they wait (TCP retransmits; nothing is lost on a live session) and
 *   arrive once the link heals or the node resumes; nothing closes by itself;
 * - a CLOSE, or the crash of a process, is a FIN behind the data already
 *   sent: the peer's core hears of it after the latency (later if cut).
 * The super-node shell tells its core sn_core_closed for a session the core
 * itself closed (session_close runs the closed callback); the leaf shell does
 * not (leafcore.h). The simulator does the same.
 *
 * Invariants (FAIL lines name them):
 *   1  at most one leader per group per term over the whole run;
 *   1b a node's term never goes down, a restart included (term_floor);
 *   2  at the end, after every fault healed and a quiet period: exactly one
 *      live leader, every other super node follows it with its term, every
 *      live leaf is attached to it with its term; it has a backup (when
 *      another member is up), and every leaf watches that backup;
 *   3  at the end: the leader holds every live leaf's manifest
 *      (sn_core_leaf_entries == manifest size), and so does the backup;
 *   4  a pure leader-backup cut on a converged group causes no takeover;
 *   5  no core acts on a session after it closed it or was told it closed;
 *   6  then a leaf of the other group (with --groups 1: of the same group)
 *      finds a file of every live leaf by content id.
 * A core whose next deadline stays in the past (its shell's timer would
 * spin) fails the run too, as does a g_critical from a core.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

/* --- one schedule ------------------------------------------------------------ */

static void world_init(World *w, const Params *prm, uint64_t seed, Totals *tot)
{
  memset(w, 0, sizeof *w);
  w->prm = prm;
  w->seed = seed;
  w->tot = tot;
  uint64_t s = seed ^ 0xC0FFEE5EEDull;
  w->rng_net = splitmix(&s);
  w->rng_fault = splitmix(&s);
  w->rng_ids = splitmix(&s);
  w->conns = g_ptr_array_new_with_free_func(world_conn_free);
  w->faults = g_array_new(FALSE, TRUE, sizeof(Fault));
  w->terms = g_array_new(FALSE, TRUE, sizeof(TermRec));
  w->searches = g_ptr_array_new_with_free_func(g_free);
  w->why = g_string_new(NULL);
  w->ngroups = prm->groups;
  w->max_faults = (unsigned)rnd(&w->rng_fault, 1, 3);
  /* Super nodes of g1, of g2, then leaves of g1, of g2. */
  unsigned first[MAX_GROUPS] = {0};
  for (unsigned g = 0; g < w->ngroups; g++) {
    first[g] = w->nsupers;
    for (unsigned k = 0; k < prm->supers[g]; k++) {
      Node *n = &w->node[w->nsupers++];
      n->kind = NODE_SUPER;
      n->group = (int)g;
      g_snprintf(n->name, sizeof n->name, "s%u", w->nsupers);
      g_snprintf(n->addr, sizeof n->addr, "s%u:7400", w->nsupers);
      n->by_local = g_hash_table_new(g_int64_hash, g_int64_equal);
      /* g2's super nodes also know one of g1's: the mesh spans both. */
      n->direction = g ? (int)rnd(&w->rng_ids, 0, prm->supers[0] - 1) : -1;
    }
  }
  w->nnodes = w->nsupers;
  for (unsigned g = 0; g < w->ngroups; g++) {
    for (unsigned k = 0; k < prm->leaves[g]; k++) {
      Node *n = &w->node[w->nnodes++];
      n->kind = NODE_LEAF;
      n->group = (int)g;
      g_snprintf(n->name, sizeof n->name, "l%u", w->nnodes - w->nsupers);
      g_snprintf(n->home, sizeof n->home, "s%u:7400",
                 first[g] + 1 + (unsigned)rnd(&w->rng_ids, 0, prm->supers[g] - 1));
      n->manifest = g_array_new(FALSE, TRUE, sizeof(LeafEntry));
      unsigned files = (unsigned)rnd(&w->rng_ids, 1, 6);
      for (unsigned f = 0; f < files; f++) {
        LeafEntry e = {0};
        e.name = g_strdup_printf("%s/file-%u.ogg", n->name, n->files_made++);
        e.size = rnd(&w->rng_ids, 1, 1u << 30);
        core_rng(e.cid, 32, &w->rng_ids);
        g_array_append_val(n->manifest, e);
      }
    }
  }
  w->nleaves = w->nnodes - w->nsupers;
  for (unsigned i = 0; i < w->nnodes; i++) {
    w->node[i].index = (int)i;
    w->node[i].tick_at = UINT64_MAX;
    core_rng(w->node[i].id, 32, &w->rng_ids);
  }
}

static void world_free(World *w)
{
  while (w->nheap) {
    Ev e = world_pop(w);
    if (e.kind == EV_DIAL)
      g_free(e.p);
  }
  g_free(w->heap);
  for (unsigned i = 0; i < w->nnodes; i++) {
    Node *n = &w->node[i];
    sn_core_free(n->sn);
    leaf_core_free(n->leaf);
    if (n->by_local)
      g_hash_table_destroy(n->by_local);
    if (n->manifest) {
      for (guint k = 0; k < n->manifest->len; k++)
        g_free(g_array_index(n->manifest, LeafEntry, k).name);
      g_array_unref(n->manifest);
    }
  }
  g_ptr_array_unref(w->conns);
  for (guint i = 0; i < w->faults->len; i++)
    g_array_unref(g_array_index(w->faults, Fault, i).pairs);
  g_array_unref(w->faults);
  g_array_unref(w->terms);
  g_ptr_array_unref(w->searches);
  g_string_free(w->why, TRUE);
  for (unsigned i = 0; i < RING; i++)
    g_free(w->ring[i]);
}

static void dump_ring(World *w)
{
  printf("  last events:\n");
  for (unsigned i = 0; i < RING; i++) {
    const char *l = w->ring[(w->ring_next + i) % RING];
    if (l)
      printf("  %s\n", l);
  }
}

/* Runs events up to time `until`. */
void sim_run_until(World *w, uint64_t until)
{
  const Params *prm = w->prm;
  while (w->nheap && !w->failed && w->heap[0].t <= until) {
    Ev e = world_pop(w);
    w->now = e.t;
    w->events++;
    switch (e.kind) {
    case EV_START:
      world_start(w, &w->node[e.a]);
      break;
    case EV_TICK:
      world_tick(w, &w->node[e.a], e.b);
      break;
    case EV_PUMP:
      world_pump(w, e.p, e.a);
      break;
    case EV_DIAL:
      world_dial_step(w, e.p);
      break;
    case EV_FAULT_NEXT:
      if (w->healed)
        break;
      if (w->active_faults < w->max_faults)
        fault_inject(w);
      world_push(w, w->now + rnd(&w->rng_fault, 200, 6000), EV_FAULT_NEXT, 0, 0, NULL);
      break;
    case EV_HEAL:
      fault_heal(w, e.a);
      break;
    case EV_HEAL_ALL:
      fault_heal_all(w);
      break;
    case EV_CHURN:
      if (w->healed)
        break;
      fault_churn(w);
      world_push(w, w->now + rnd(&w->rng_fault, 2000, 20000), EV_CHURN, 0, 0, NULL);
      break;
    case EV_CHECK:
      check_tick(w);
      world_push(w, w->now + CHECK_MS, EV_CHECK, 0, 0, NULL);
      break;
    case EV_GUARD_END:
      fault_guard_end(w, e.a);
      break;
    case EV_SEARCH:
      check_search_start(w, e.p);
      break;
    }
  }
  if (!w->failed && w->now < until)
    w->now = until;
  (void)prm;
}

/* Runs one seeded schedule; false if an invariant broke. */
static bool run_one(const Params *prm, uint64_t seed, Totals *tot)
{
  World w;
  world_init(&w, prm, seed, tot);
  /* Super nodes start within 1.5 s of each other, leaves within 3 s. */
  for (unsigned i = 0; i < w.nnodes; i++)
    world_push(&w, rnd(&w.rng_fault, 0, i < w.nsupers ? 1500 : 3000), EV_START, (int)i, 0, NULL);
  world_push(&w, prm->fault_from, EV_FAULT_NEXT, 0, 0, NULL);
  world_push(&w, prm->fault_until, EV_HEAL_ALL, 0, 0, NULL);
  world_push(&w, rnd(&w.rng_fault, 5000, 15000), EV_CHURN, 0, 0, NULL);
  world_push(&w, CHECK_MS, EV_CHECK, 0, 0, NULL);
  sim_run_until(&w, prm->fault_until + prm->quiet_ms);
  GString *why = g_string_new(NULL);
  for (unsigned g = 0; g < w.ngroups && !w.failed; g++)
    if (!check_converged(&w, (int)g, true, why))
      sim_fail(&w, "%s (%.1f s after the heal)", why->str, (double)prm->quiet_ms / 1000.0);
  g_string_free(why, TRUE);
  if (!w.failed) {
    uint64_t conv = w.converged_at ? w.converged_at - w.healed_at : prm->quiet_ms;
    if (conv > tot->converge_max) {
      tot->converge_max = conv;
      tot->converge_seed = seed;
    }
    tot->converge_sum += conv;
    check_searches(&w);
  }
  tot->schedules++;
  tot->events += w.events;
  tot->anomalies += w.anomalies;
  for (unsigned i = 0; i < w.nsupers; i++) {
    Node *n = &w.node[i];
    tot->takeovers += n->takeovers_past;
    tot->stepdowns += n->stepdowns_past;
    if (n->sn) {
      SnGroupStatus st;
      sn_core_group_status(n->sn, &st);
      tot->takeovers += st.takeovers;
      tot->stepdowns += st.stepdowns;
    }
  }
  for (unsigned i = w.nsupers; i < w.nnodes; i++) {
    if (w.node[i].leaf) {
      LeafGroupStatus st;
      leaf_core_group_status(w.node[i].leaf, &st);
      tot->publishes += st.publishes;
      tot->leaves_total++;
    }
  }
  bool ok = !w.failed;
  if (!ok) {
    printf("FAIL seed=%" PRIu64 ": %s\n", seed, w.why->str);
    if (!prm->verbose)
      dump_ring(&w);
    printf("  replay: canopy-sim --seed %" PRIu64 " --verbose\n", seed);
  } else if (w.anomalies && prm->verbose) {
    printf("seed %" PRIu64 ": %" PRIu64 " anomalies, first: %s\n", seed, w.anomalies,
           w.anomaly_first);
  }
  world_free(&w);
  return ok;
}

/* --- main -------------------------------------------------------------------- */

static int verbosity;

/* Core logs: shown with --verbose --verbose; criticals are bugs. */
static void log_handler(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer ud)
{
  bool *critical = ud;
  if (level & (G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR)) {
    *critical = true;
    fprintf(stderr, "%s: CRITICAL: %s\n", domain ? domain : "?", msg);
  } else if (verbosity >= 2 || (level & G_LOG_LEVEL_WARNING)) {
    printf("           [%s] %s\n", domain ? domain : "?", msg);
  }
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void print_recovery(const char *what, GArray *a)
{
  if (!a->len) {
    printf("  %s: no clean drill\n", what);
    return;
  }
  qsort(a->data, a->len, sizeof(uint64_t), cmp_u64);
  uint64_t *v = (uint64_t *)(void *)a->data;
  printf("  %s -> all leaves on the new leader: %u clean drills, median %" PRIu64
         " ms, p99 %" PRIu64 " ms, max %" PRIu64 " ms\n",
         what, a->len, v[a->len / 2], v[(a->len * 99) / 100], v[a->len - 1]);
}

static void usage(void)
{
  fprintf(stderr, "usage: canopy-sim [--seeds N] [--first S] [--seed S] [--keep-going]\n"
                  "                  [--supers N] [--leaves N] [--groups 1|2] [--minutes M]\n"
                  "                  [--quiet SECONDS] [--claims] [--verbose [--verbose]]\n"
                  "Runs N seeded schedules of crashes, hangs and partitions against the\n"
                  "super-node and leaf cores; exits 1 at the first seed that breaks an\n"
                  "invariant (all of them with --keep-going). --claims adds members that\n"
                  "claim to lead (huge or believable terms) to the faults.\n");
}

static bool parse_u64(const char *s, uint64_t *out)
{
  char *end;
  guint64 v = g_ascii_strtoull(s, &end, 10);
  if (!*s || *end)
    return false;
  *out = v;
  return true;
}

int main(int argc, char **argv)
{
  Params prm = {
      .groups = 2, .supers = {4, 2}, .leaves = {10, 3}, .fault_from = 4000, .quiet_ms = 45000};
  uint64_t first = 1, count = 100, v = 0;
  double minutes = 1.5;
  bool keep_going = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *arg = i + 1 < argc ? argv[i + 1] : "";
    bool num = parse_u64(arg, &v);
    if (strcmp(a, "--seeds") == 0 && num && v > 0) {
      count = v;
    } else if (strcmp(a, "--first") == 0 && num) {
      first = v;
    } else if (strcmp(a, "--seed") == 0 && num) {
      first = v;
      count = 1;
    } else if (strcmp(a, "--supers") == 0 && num && v >= 2 && v <= MAX_SUPERS - 2) {
      prm.supers[0] = (unsigned)v;
    } else if (strcmp(a, "--leaves") == 0 && num && v <= MAX_LEAVES - 8) {
      prm.leaves[0] = (unsigned)v;
    } else if (strcmp(a, "--groups") == 0 && num && v >= 1 && v <= MAX_GROUPS) {
      prm.groups = (unsigned)v;
    } else if (strcmp(a, "--minutes") == 0 && *arg) {
      minutes = g_ascii_strtod(arg, NULL);
      if (minutes <= 0 || minutes > 60) {
        usage();
        return 2;
      }
    } else if (strcmp(a, "--quiet") == 0 && num && v >= 1) {
      prm.quiet_ms = v * 1000;
    } else if (strcmp(a, "--claims") == 0) {
      prm.claims = true;
      continue;
    } else if (strcmp(a, "--keep-going") == 0) {
      keep_going = true;
      continue;
    } else if (strcmp(a, "--verbose") == 0 || strcmp(a, "-v") == 0) {
      prm.verbose++;
      continue;
    } else {
      usage();
      return 2;
    }
    i++;
  }
  prm.fault_until = prm.fault_from + (uint64_t)(minutes * 60000);
  verbosity = prm.verbose;
  bool critical = false;
  g_log_set_default_handler(log_handler, &critical);

  Totals tot = {0};
  tot.recover[0] = g_array_new(FALSE, FALSE, sizeof(uint64_t));
  tot.recover[1] = g_array_new(FALSE, FALSE, sizeof(uint64_t));
  GArray *failed = g_array_new(FALSE, FALSE, sizeof(uint64_t));
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (uint64_t s = first; s < first + count; s++) {
    critical = false;
    bool ok = run_one(&prm, s, &tot);
    if (ok && critical) {
      printf("FAIL seed=%" PRIu64 ": a core logged a critical (above)\n", s);
      printf("  replay: canopy-sim --seed %" PRIu64 " --verbose\n", s);
      ok = false;
    }
    if (!ok) {
      g_array_append_val(failed, s);
      if (!keep_going)
        break;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

  printf("canopy-sim: %" PRIu64 " schedules (seeds %" PRIu64 "..%" PRIu64 ") in %.1f s, %" PRIu64
         " events\n",
         tot.schedules, first, first + tot.schedules - 1, wall, tot.events);
  printf("  each: g1 = %u super nodes + %u leaves", prm.supers[0], prm.leaves[0]);
  if (prm.groups > 1)
    printf(", g2 = %u + %u", prm.supers[1], prm.leaves[1]);
  printf("; %.1f min of faults, %.0f s quiet, then a search for a file of every leaf\n", minutes,
         (double)prm.quiet_ms / 1000.0);
  printf("  faults injected: %" PRIu64, tot.faults);
  for (int k = 0; k < F_KINDS; k++)
    if (k != F_CLAIM || prm.claims)
      printf("%s%s %" PRIu64, k ? ", " : " (", fault_names[k], tot.by_kind[k]);
  printf(")\n");
  printf("  takeovers seen: %" PRIu64 ", step-downs: %" PRIu64 ", searches: %" PRIu64
         ", manifest uploads: %" PRIu64 " by %" PRIu64 " leaves\n",
         tot.takeovers, tot.stepdowns, tot.searches, tot.publishes, tot.leaves_total);
  uint64_t ok_runs = tot.schedules - failed->len;
  if (ok_runs)
    printf("  re-converged after the final heal: max %" PRIu64 " ms (seed %" PRIu64
           "), mean %" PRIu64 " ms\n",
           tot.converge_max, tot.converge_seed, tot.converge_sum / ok_runs);
  print_recovery("leader crash", tot.recover[0]);
  print_recovery("leader hang", tot.recover[1]);
  if (tot.anomalies)
    printf("  anomalies a shell tolerates: %" PRIu64 " (--verbose names the first per seed)\n",
           tot.anomalies);
  int rc = 0;
  if (failed->len) {
    printf("FAILED seeds:");
    for (guint i = 0; i < failed->len; i++)
      printf(" %" PRIu64, g_array_index(failed, uint64_t, i));
    printf("\n");
    rc = 1;
  }
  g_array_unref(failed);
  g_array_unref(tot.recover[0]);
  g_array_unref(tot.recover[1]);
  return rc;
}
