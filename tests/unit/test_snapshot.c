/* test_snapshot.c - the snapshot a group's leader sends its backup goes out
 * in pieces under flow control (issue 11, finding 9).
 *
 * Two super-node cores in one group, with the fake clock, joined by a fake
 * link that carries at most RATE bytes per millisecond from the leader to
 * the backup (the other way is free). The leader holds a million entries
 * before the backup joins: the backup must end up with all of them, the
 * link's queue must stay far below a link's output cap (the old code
 * queued the whole snapshot at once: 60 MB here), and the leader's
 * replication lag must count what is still to send. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "memplan.h"
#include "sncore.h"
#include "sncore_int.h" /* the snapshot's progress and both rosters */
#include "wire.h"

#define CONN_LB 1   /* the leader's end of the link */
#define CONN_BL 2   /* the backup's end */
#define CONN_LEAF 3 /* conn ids of leaves on the leader: 3.. */

typedef struct {
  SnCore *core;
  uint8_t id[32];
} Node;

typedef struct {
  uint64_t now;
  Node l, b;
  GQueue lb, bl; /* GBytes in flight: leader -> backup, backup -> leader */
  size_t lb_bytes, lb_max;
  size_t rate;   /* bytes per ms, leader -> backup */
  size_t credit; /* bytes the link may carry now (a frame may need several ms) */
  unsigned closes;
} Net;

static void rng_fill(uint8_t *out, size_t n, void *ctx)
{
  static uint64_t x = 42;
  for (size_t i = 0; i < n; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    out[i] = (uint8_t)(x >> 56);
  }
}

static void drain(Net *net, Node *nd)
{
  SnAction a;
  while (nd->core && sn_core_next_action(nd->core, &a)) {
    if (a.kind == SN_ACT_SEND && a.conn == CONN_LB) {
      g_queue_push_tail(&net->lb, g_bytes_new(a.data, a.len));
      net->lb_bytes += a.len;
      net->lb_max = MAX(net->lb_max, net->lb_bytes);
    } else if (a.kind == SN_ACT_SEND && a.conn == CONN_BL) {
      g_queue_push_tail(&net->bl, g_bytes_new(a.data, a.len));
    } else if (a.kind == SN_ACT_CLOSE) {
      net->closes++;
    }
    sn_action_clear(&a);
  }
}

/* One millisecond: the link carries up to rate bytes leader -> backup and
 * everything backup -> leader; both cores tick. */
static void step(Net *net)
{
  net->now++;
  net->credit = g_queue_is_empty(&net->lb) ? net->rate : net->credit + net->rate;
  while (!g_queue_is_empty(&net->lb)) {
    GBytes *m = g_queue_peek_head(&net->lb);
    size_t len;
    const uint8_t *p = g_bytes_get_data(m, &len);
    if (len > net->credit)
      break;
    net->credit -= len;
    g_queue_pop_head(&net->lb);
    net->lb_bytes -= len;
    sn_core_recv(net->b.core, CONN_BL, p, len, net->now);
    g_bytes_unref(m);
  }
  drain(net, &net->b);
  GBytes *m;
  while ((m = g_queue_pop_head(&net->bl))) {
    size_t len;
    const uint8_t *p = g_bytes_get_data(m, &len);
    sn_core_recv(net->l.core, CONN_LB, p, len, net->now);
    g_bytes_unref(m);
  }
  sn_core_tick(net->l.core, net->now);
  if (net->b.core)
    sn_core_tick(net->b.core, net->now);
  drain(net, &net->l);
  drain(net, &net->b);
}

/* Members prove membership with the group key (finding 4). */
static const uint8_t group_key[32] = {7};

static SnConfig group_config(const char *addr)
{
  SnConfig cfg;
  sn_config_defaults(&cfg);
  cfg.discovery = false;
  cfg.group = "g";
  cfg.group_key = group_key;
  cfg.advertise = addr;
  cfg.max_entries_per_leaf = 300000;
  return cfg;
}

static void send_msg(Net *net, uint64_t conn, const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  assert_true(wire_encode(m, &b));
  sn_core_recv(net->l.core, conn, b.data, b.len, net->now);
  buf_free(&b);
  drain(net, &net->l);
}

/* Leaf `leaf` (session conn) publishes n entries of short names on the
 * leader, the first batch resetting when reset; salt makes other names. */
static void leaf_send(Net *net, uint64_t conn, int leaf, size_t n, bool reset, uint32_t salt)
{
  static char names[WIRE_MAX_ENTRIES][48];
  WireEntry e[WIRE_MAX_ENTRIES];
  for (size_t off = 0; off < n; off += WIRE_MAX_ENTRIES) {
    size_t k = MIN(n - off, (size_t)WIRE_MAX_ENTRIES);
    for (size_t i = 0; i < k; i++) {
      uint32_t v = (uint32_t)(leaf * 10000000 + salt * 100000 + off + i);
      int len = snprintf(names[i], sizeof names[i], "track %u of leaf %d.ogg", v, leaf);
      e[i].name = wire_str(names[i], (size_t)len);
      e[i].size = v;
      memset(e[i].cid, 0, 32);
      memcpy(e[i].cid, &v, sizeof v);
    }
    WireMsg m = {.type = MSG_PUBLISH};
    m.u.publish.reset = reset && off == 0;
    m.u.publish.count = (uint16_t)k;
    m.u.publish.entries = e;
    send_msg(net, conn, &m);
  }
}

static void leaf_id(uint8_t id[32], int leaf)
{
  memset(id, 0xE0 + leaf, 32);
}

static void leaf_open(Net *net, uint64_t conn, int leaf)
{
  uint8_t id[32];
  leaf_id(id, leaf);
  sn_core_open(net->l.core, conn, id, NULL, net->now);
  WireMsg h = {.type = MSG_HELLO};
  h.u.hello.role = ROLE_LEAF;
  h.u.hello.listen = wire_str("", 0);
  h.u.hello.agent = wire_str("t", 1);
  send_msg(net, conn, &h);
}

/* A leaf on the leader publishing n entries of short names. */
static void leaf_publish(Net *net, uint64_t conn, int leaf, size_t n)
{
  leaf_open(net, conn, leaf);
  leaf_send(net, conn, leaf, n, true, 0);
}

static void check_snapshot(size_t leaves, size_t per_leaf, size_t rate)
{
  Net net = {.now = 1000, .rate = rate};
  g_queue_init(&net.lb);
  g_queue_init(&net.bl);
  memset(net.l.id, 0x11, 32); /* the smaller id: leads */
  memset(net.b.id, 0x22, 32);
  SnConfig lc = group_config("l:1"), bc = group_config("b:1");
  net.l.core = sn_core_new(&lc, net.l.id, rng_fill, NULL, net.now);
  assert_non_null(net.l.core);
  for (int i = 0; i < 1500; i++) /* no one else: it leads after group_join_ms */
    step(&net);
  SnGroupStatus st;
  sn_core_group_status(net.l.core, &st);
  assert_int_equal(st.role, SN_ROLE_LEADER);
  for (size_t i = 0; i < leaves; i++)
    leaf_publish(&net, CONN_LEAF + i, (int)i, per_leaf);
  size_t total = leaves * per_leaf;
  assert_int_equal(sn_core_stats(net.l.core)->index_entries, total);

  /* The backup joins: the leader dialed it. */
  net.b.core = sn_core_new(&bc, net.b.id, rng_fill, NULL, net.now);
  sn_core_open(net.l.core, CONN_LB, net.b.id, "b:1", net.now);
  sn_core_open(net.b.core, CONN_BL, net.l.id, NULL, net.now);
  drain(&net, &net.l);
  drain(&net, &net.b);
  uint64_t first_lag = 0, last_lag = UINT64_MAX;
  bool lag_fell = true;
  for (int ms = 0; ms < 600000; ms++) {
    step(&net);
    sn_core_group_status(net.l.core, &st);
    if (st.has_backup && first_lag == 0)
      first_lag = st.repl_lag_ops;
    if (first_lag && ms % 100 == 0) {
      if (last_lag != UINT64_MAX) /* heartbeats aside, it only falls */
        lag_fell &= st.repl_lag_ops <= last_lag + 8;
      last_lag = st.repl_lag_ops;
    }
    if (st.has_backup && st.repl_lag_ops == 0 && sn_core_stats(net.b.core)->index_entries == total)
      break;
  }
  sn_core_group_status(net.l.core, &st);
  SnGroupStatus bs;
  sn_core_group_status(net.b.core, &bs);
  printf("    %zu entries at %zu KB/ms: done at %" PRIu64 " ms, lag first %" PRIu64
         ", link queue at most %zu KiB, %u closes\n",
         total, rate / 1000, net.now - 2500, first_lag, net.lb_max >> 10, net.closes);
  assert_int_equal(net.closes, 0); /* the link was never cut */
  assert_int_equal(bs.role, SN_ROLE_BACKUP);
  assert_int_equal(sn_core_stats(net.b.core)->index_entries, total);
  assert_int_equal(bs.records, leaves);
  assert_int_equal(st.repl_lag_ops, 0);
  /* The lag told the truth: at the start, at least one op per piece. */
  assert_true(first_lag >= total / WIRE_MAX_ENTRIES);
  assert_true(lag_fell);
  /* Far below a link's output cap, whatever the index's size. */
  assert_true(net.lb_max < SN_LINK_OUTPUT_MAX / 8);

  GBytes *m;
  while ((m = g_queue_pop_head(&net.lb)))
    g_bytes_unref(m);
  while ((m = g_queue_pop_head(&net.bl)))
    g_bytes_unref(m);
  sn_core_free(net.l.core);
  sn_core_free(net.b.core);
}

/* Changes outrun the backup: a leaf publishes 100,000 entries at once to a
 * leader whose backup takes 1 KB/ms. The link's queue must stay under its
 * cap (1 MiB here): the leader stops sending changes at half of it and
 * resends a paced snapshot, which the backup ends up holding whole. */
static void test_live_changes_outrun_backup(void **state)
{
  (void)state;
  Net net = {.now = 1000, .rate = 1000};
  g_queue_init(&net.lb);
  g_queue_init(&net.bl);
  memset(net.l.id, 0x11, 32);
  memset(net.b.id, 0x22, 32);
  SnConfig lc = group_config("l:1"), bc = group_config("b:1");
  lc.link_queue_max = bc.link_queue_max = 1 << 20;
  net.l.core = sn_core_new(&lc, net.l.id, rng_fill, NULL, net.now);
  for (int i = 0; i < 1500; i++)
    step(&net);
  net.b.core = sn_core_new(&bc, net.b.id, rng_fill, NULL, net.now);
  sn_core_open(net.l.core, CONN_LB, net.b.id, "b:1", net.now);
  sn_core_open(net.b.core, CONN_BL, net.l.id, NULL, net.now);
  drain(&net, &net.l);
  drain(&net, &net.b);
  SnGroupStatus st;
  for (int i = 0; i < 2000; i++)
    step(&net);
  sn_core_group_status(net.l.core, &st);
  assert_true(st.has_backup);

  leaf_publish(&net, CONN_LEAF, 0, 100000); /* all at once, while synced */
  for (int ms = 0; ms < 600000; ms++) {
    step(&net);
    sn_core_group_status(net.l.core, &st);
    if (st.repl_lag_ops == 0 && sn_core_stats(net.b.core)->index_entries == 100000)
      break;
  }
  printf("    100000 entries published live at 1 KB/ms: done at %" PRIu64
         " ms, link queue at most %zu KiB, %u closes\n",
         net.now - 4500, net.lb_max >> 10, net.closes);
  assert_int_equal(net.closes, 0);
  assert_true(net.lb_max < (1 << 20));
  assert_int_equal(sn_core_stats(net.b.core)->index_entries, 100000);
  GBytes *m;
  while ((m = g_queue_pop_head(&net.lb)))
    g_bytes_unref(m);
  while ((m = g_queue_pop_head(&net.bl)))
    g_bytes_unref(m);
  sn_core_free(net.l.core);
  sn_core_free(net.b.core);
}

/* Steps until the snapshot is halfway through the record of a leaf in
 * [0, nleaves) that `used` does not mark: its LEAF_UP and some entries went,
 * more are to come. Returns that leaf, or -1 if the snapshot ended first. */
static int step_to_halfway(Net *net, int nleaves, const bool *used)
{
  bool ran = false; /* it starts once the backup is elected */
  for (int ms = 0; ms < 600000; ms++) {
    const Snapshot *sp = &net->l.core->group.snap;
    if (!sp->ids && ran)
      return -1;
    ran |= sp->ids != NULL;
    if (sp->ids && sp->next < sp->ids->len && sp->started && !sp->cur.done) {
      const uint8_t *id = (const uint8_t *)sp->ids->data + (gsize)sp->next * 32;
      for (int l = 0; l < nleaves; l++) {
        uint8_t want[32];
        leaf_id(want, l);
        if (!used[l] && memcmp(id, want, 32) == 0)
          return l;
      }
    }
    step(net);
  }
  return -1;
}

typedef struct {
  Roster *other;
  size_t checked, mismatched;
} Compare;

static void compare_cb(Record *rec, void *ctx)
{
  Compare *cmp = ctx;
  Record *o = roster_get(cmp->other, rec->id);
  cmp->checked++;
  if (!o || o->count != rec->count || memcmp(o->digest, rec->digest, 32) != 0)
    cmp->mismatched++;
}

/* The snapshot reads entries back from the index in batches (the roster
 * keeps no copy, issue 12), and leaves change between two batches: a leaf
 * re-publishes (reset) halfway through its record, one leaves and comes
 * back with other files halfway through its record, one publishes more
 * halfway through its record, one not reached yet leaves, a new one comes.
 * When the snapshot is done the backup's replica is exact: every record
 * has the leader's entry count and digest (the one ATTACHED carries, so a
 * takeover asks no leaf to re-publish), and the indexes hold as many. */
static void test_snapshot_changes_between_batches(void **state)
{
  (void)state;
  enum { LEAVES = 6, PER_LEAF = 2000 };
  Net net = {.now = 1000, .rate = 2000};
  g_queue_init(&net.lb);
  g_queue_init(&net.bl);
  memset(net.l.id, 0x11, 32);
  memset(net.b.id, 0x22, 32);
  SnConfig lc = group_config("l:1"), bc = group_config("b:1");
  /* A 64 KiB window: a record takes several round trips. The changes
   * below stay small, so that they never put the backup 128 KiB behind
   * (which would resend the snapshot from the start). */
  lc.link_queue_max = bc.link_queue_max = 256 * 1024;
  net.l.core = sn_core_new(&lc, net.l.id, rng_fill, NULL, net.now);
  for (int i = 0; i < 1500; i++)
    step(&net);
  for (int l = 0; l < LEAVES; l++)
    leaf_publish(&net, CONN_LEAF + l, l, PER_LEAF);
  net.b.core = sn_core_new(&bc, net.b.id, rng_fill, NULL, net.now);
  sn_core_open(net.l.core, CONN_LB, net.b.id, "b:1", net.now);
  sn_core_open(net.b.core, CONN_BL, net.l.id, NULL, net.now);
  drain(&net, &net.l);
  drain(&net, &net.b);

  bool used[LEAVES] = {false};
  /* Re-published (reset) with other, fewer names halfway. */
  int reset = step_to_halfway(&net, LEAVES, used);
  assert_true(reset >= 0);
  used[reset] = true;
  leaf_send(&net, CONN_LEAF + reset, reset, 150, true, 1);
  /* Gone and back, with other files, halfway: a new record. */
  int back = step_to_halfway(&net, LEAVES, used);
  assert_true(back >= 0);
  used[back] = true;
  sn_core_closed(net.l.core, CONN_LEAF + back, net.now);
  drain(&net, &net.l);
  leaf_open(&net, CONN_LEAF + 100 + back, back);
  leaf_send(&net, CONN_LEAF + 100 + back, back, 200, true, 2);
  /* More entries halfway, no reset. */
  int more = step_to_halfway(&net, LEAVES, used);
  assert_true(more >= 0);
  used[more] = true;
  leaf_send(&net, CONN_LEAF + more, more, 100, false, 3);
  /* One not reached yet leaves for good, and a new leaf comes. */
  const Snapshot *sp = &net.l.core->group.snap;
  int gone = -1;
  for (guint i = sp->next + 1; i < sp->ids->len && gone < 0; i++)
    for (int l = 0; l < LEAVES; l++) {
      uint8_t want[32];
      leaf_id(want, l);
      if (!used[l] && memcmp((const uint8_t *)sp->ids->data + (gsize)i * 32, want, 32) == 0)
        gone = l;
    }
  if (gone >= 0) {
    used[gone] = true;
    sn_core_closed(net.l.core, CONN_LEAF + gone, net.now);
    drain(&net, &net.l);
  }
  leaf_publish(&net, CONN_LEAF + 50, LEAVES, 100);

  SnGroupStatus st;
  for (int ms = 0; ms < 600000; ms++) {
    step(&net);
    sn_core_group_status(net.l.core, &st);
    if (!net.l.core->group.snap.ids && st.repl_lag_ops == 0)
      break;
  }
  for (int i = 0; i < 200; i++) /* the last acks */
    step(&net);
  printf("    reset leaf %d, back leaf %d, more leaf %d, gone leaf %d: done at %" PRIu64
         " ms, %zu entries\n",
         reset, back, more, gone, net.now - 2500, sn_core_stats(net.l.core)->index_entries);
  assert_int_equal(net.closes, 0);
  /* One snapshot did it all: a resend would hide what this tests. */
  assert_int_equal(net.l.core->group.snap.resyncs, 0);
  assert_int_equal(st.repl_lag_ops, 0);
  size_t want = (size_t)(LEAVES - 3 - (gone >= 0)) * PER_LEAF + 150 + 200 + PER_LEAF + 100 + 100;
  assert_int_equal(sn_core_stats(net.l.core)->index_entries, want);
  assert_int_equal(sn_core_stats(net.b.core)->index_entries, want);
  Compare cmp = {net.b.core->roster, 0, 0};
  roster_foreach(net.l.core->roster, compare_cb, &cmp);
  assert_int_equal(cmp.checked, roster_size(net.b.core->roster));
  assert_int_equal(cmp.checked, LEAVES + 1 - (gone >= 0));
  assert_int_equal(cmp.mismatched, 0);

  GBytes *m;
  while ((m = g_queue_pop_head(&net.lb)))
    g_bytes_unref(m);
  while ((m = g_queue_pop_head(&net.bl)))
    g_bytes_unref(m);
  sn_core_free(net.l.core);
  sn_core_free(net.b.core);
}

static void test_snapshot_small_slow_link(void **state)
{
  (void)state;
  check_snapshot(3, 1000, 2000); /* 2 MB/s */
}

/* An honest million-entry index replicates whole over a 20 MB/s link. */
static void test_snapshot_million(void **state)
{
  (void)state;
  check_snapshot(4, 250000, 20000);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_snapshot_small_slow_link),
      cmocka_unit_test(test_snapshot_million),
      cmocka_unit_test(test_live_changes_outrun_backup),
      cmocka_unit_test(test_snapshot_changes_between_batches),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
