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

/* A leaf on the leader publishing n entries of short names. */
static void leaf_publish(Net *net, uint64_t conn, int leaf, size_t n)
{
  uint8_t id[32];
  memset(id, 0xE0 + leaf, 32);
  sn_core_open(net->l.core, conn, id, NULL, net->now);
  WireMsg h = {.type = MSG_HELLO};
  h.u.hello.role = ROLE_LEAF;
  h.u.hello.listen = wire_str("", 0);
  h.u.hello.agent = wire_str("t", 1);
  send_msg(net, conn, &h);
  static char names[WIRE_MAX_ENTRIES][48];
  WireEntry e[WIRE_MAX_ENTRIES];
  for (size_t off = 0; off < n; off += WIRE_MAX_ENTRIES) {
    size_t k = MIN(n - off, (size_t)WIRE_MAX_ENTRIES);
    for (size_t i = 0; i < k; i++) {
      uint32_t v = (uint32_t)(leaf * 10000000 + off + i);
      int len = snprintf(names[i], sizeof names[i], "track %u of leaf %d.ogg", v, leaf);
      e[i].name = wire_str(names[i], (size_t)len);
      e[i].size = v;
      memset(e[i].cid, 0, 32);
      memcpy(e[i].cid, &v, sizeof v);
    }
    WireMsg m = {.type = MSG_PUBLISH};
    m.u.publish.reset = off == 0;
    m.u.publish.count = (uint16_t)k;
    m.u.publish.entries = e;
    send_msg(net, conn, &m);
  }
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
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
