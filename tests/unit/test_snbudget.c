/* test_snbudget.c - the super node's memory budgets (issue 11, finding 2),
 * through the core with the fake clock: the index's per-leaf and
 * per-address shares, the publish rate, and the plan that derives them
 * from --memory-limit. Reuses test_sncore.c's network of cores. */
int test_sncore_main(void);
#define main test_sncore_main
#include "test_sncore.c"
#undef main

#include "index.h"
#include "memplan.h"
#include "sncore_int.h"

/* One entry of owner (a node id made of the owner handle). */
static IndexResult ix_add(Index *ix, uint64_t owner, const char *name, uint32_t cidn)
{
  uint8_t peer[32], cid[32];
  memset(peer, 0xAA, 32);
  memcpy(peer, &owner, sizeof owner);
  memset(cid, 0xCC, 32);
  memcpy(cid, &cidn, sizeof cidn);
  return index_add(ix, owner, peer, name, strlen(name), 1000 + cidn, cid);
}

/* The memory caps: totals (entries, bytes) for everyone, bytes per owner;
 * removing an owner gives its bytes back, exactly, but for the ids of its
 * keywords' lists, which stay made; a keyword's list is counted once, while
 * it lives. */
static void test_index_memory_caps(void **state)
{
  (void)state;
  Index *ix = index_new(1000);
  /* Five-byte names of two keywords no other name has: one price each. */
  size_t one = index_entry_cost(ix, "ab cd", 5);
  assert_true(one > 5 * 3 && one < 4096);
  assert_int_equal(index_entry_cost(ix, "ef gh", 5), one);
  index_set_limits(ix, 5, 4 * one, 1000, 2 * one);
  assert_int_equal(ix_add(ix, 1, "ab cd", 1), INDEX_OK);
  assert_int_equal(index_bytes(ix), one);
  /* A name of keywords the index holds costs less: no new lists. */
  assert_true(index_entry_cost(ix, "cd ab", 5) < one);
  assert_int_equal(ix_add(ix, 1, "ef gh", 2), INDEX_OK);
  assert_int_equal(ix_add(ix, 1, "ij kl", 3), INDEX_OWNER_FULL); /* its bytes */
  assert_int_equal(index_owner_bytes(ix, 1), 2 * one);
  assert_int_equal(ix_add(ix, 2, "mn op", 4), INDEX_OK);
  assert_int_equal(ix_add(ix, 3, "qr st", 5), INDEX_OK);
  assert_int_equal(ix_add(ix, 4, "uv wx", 6), INDEX_FULL); /* the total bytes */
  assert_int_equal(index_bytes(ix), 4 * one);
  assert_int_equal(index_size(ix), 4);
  index_remove_owner(ix, 1);
  /* Its four lists' ids stay made (and charged) for later lists. */
  assert_int_equal(index_bytes(ix), 2 * one + 4 * INDEX_WORD_ID_COST);
  assert_int_equal(ix_add(ix, 4, "uv wx", 6), INDEX_OK);
  /* The entry cap binds for short names. */
  index_set_limits(ix, 3, 0, 0, 0);
  assert_int_equal(ix_add(ix, 5, "x", 7), INDEX_FULL);
  /* Shared keywords: counted while any entry holds them. */
  assert_int_equal(ix_add(ix, 2, "mn op qr", 8), INDEX_FULL); /* 3 live: the cap */
  index_set_limits(ix, 0, 0, 0, 0);
  assert_int_equal(ix_add(ix, 2, "mn op qr", 8), INDEX_OK);
  index_remove_owner(ix, 3); /* "qr" lives on in owner 2's entry */
  index_remove_owner(ix, 2);
  index_remove_owner(ix, 4);
  /* Eight ids were ever made ("uv wx" took two freed ones). */
  assert_int_equal(index_bytes(ix), 8 * INDEX_WORD_ID_COST);
  assert_int_equal(index_size(ix), 0);
  index_free(ix);
}

/* A leaf from address src, attached. */
static int leaf_from(Net *net, int node, const char *src)
{
  int li = leaf_open(net, node);
  sn_core_set_source(net->node[node].core, net->leaves[li].conn, src);
  leaf_hello(net, li);
  assert_false(net->leaves[li].closed);
  return li;
}

/* n entries named "<tag> NNN" published by li, in frames. */
static void publish_many(Net *net, int li, const char *tag, int n)
{
  char names[WIRE_MAX_ENTRIES][32];
  const char *p[WIRE_MAX_ENTRIES];
  for (int off = 0; off < n; off += WIRE_MAX_ENTRIES) {
    int k = MIN(n - off, WIRE_MAX_ENTRIES);
    for (int i = 0; i < k; i++) {
      snprintf(names[i], sizeof names[i], "%s %04d", tag, off + i);
      p[i] = names[i];
    }
    leaf_publish(net, li, p, (size_t)k, off == 0);
  }
}

/* Room for 100 entries in total, 40 per leaf, 60 per address (bytes
 * unbounded here: test_index_memory_caps has them, and fit_source treats
 * both alike). */
static SnConfig budget_config(void)
{
  SnConfig cfg = base_config();
  cfg.max_index_entries = 100;
  cfg.max_entries_per_leaf = 40;
  cfg.max_entries_per_source = 60;
  return cfg;
}

/* One leaf cannot take more than its share; leaves of one address not
 * more than the address's; other addresses still get in; a leaf leaving
 * gives its address's share back. */
static void test_index_shares(void **state)
{
  (void)state;
  SnConfig cfg = budget_config();
  Net *net = net_new(1, &cfg, false);
  int a1 = leaf_from(net, S1, "10.0.0.1");
  int a2 = leaf_from(net, S1, "10.0.0.1");
  int b1 = leaf_from(net, S1, "10.0.0.2");
  int c1 = leaf_from(net, S1, "10.0.0.3");
  publish_many(net, a1, "aa", 100);
  assert_int_equal(sn_core_leaf_entries(net->node[S1].core, net->leaves[a1].id), 40);
  /* Counted once each, whichever cap saw it first. */
  assert_int_equal(stats(net, S1)->entries_rejected + stats(net, S1)->entries_over_share, 60);
  publish_many(net, a2, "ab", 100);
  /* The address's share (60) leaves a2 20. */
  assert_int_equal(sn_core_leaf_entries(net->node[S1].core, net->leaves[a2].id), 20);
  assert_int_equal(stats(net, S1)->entries_rejected + stats(net, S1)->entries_over_share, 140);
  publish_many(net, b1, "ba", 30);
  assert_int_equal(stats(net, S1)->index_entries, 90);
  /* The total (100) leaves c1 10. */
  publish_many(net, c1, "ca", 30);
  assert_int_equal(stats(net, S1)->index_entries, 100);
  assert_int_equal(sn_core_leaf_entries(net->node[S1].core, net->leaves[c1].id), 10);

  /* a1 goes: a2 may take its address's share up to its own. */
  net->ends[net->leaves[a1].conn].open = false;
  sn_core_closed(net->node[S1].core, net->leaves[a1].conn, net->now);
  pump(net);
  publish_many(net, a2, "ac", 100); /* a reset: its 20 go first */
  assert_int_equal(sn_core_leaf_entries(net->node[S1].core, net->leaves[a2].id), 40);
  leaf_search(net, b1, 1, 0, "ba");
  assert_int_equal(hits_for(net, b1, 1), 30);
  net_free(net);
}

static uint64_t src_used(Net *net, int node, const char *src, bool bytes)
{
  SnCore *c = net->node[node].core;
  return budget_used_by(bytes ? c->src_bytes : c->src_entries, src, strlen(src));
}

/* A reset re-publish is priced against the index still holding the old
 * entries (their keywords cost nothing), so it may end up over the
 * address's byte share: what is held is charged anyway, and the address
 * gets no more (the charge failed and counted nothing before). */
static void test_republish_charged_whatever_it_costs(void **state)
{
  (void)state;
  Index *probe = index_new(1000);
  size_t one = index_entry_cost(probe, "zz 0000", 7); /* every keyword new */
  index_free(probe);
  SnConfig cfg = base_config();
  cfg.max_bytes_per_source = 40 * one;
  Net *net = net_new(1, &cfg, false);
  SnCore *c = net->node[S1].core;
  int a1 = leaf_from(net, S1, "10.0.0.1");
  int a2 = leaf_from(net, S1, "10.0.0.1");
  publish_many(net, a1, "zz", 30);
  assert_int_equal(sn_core_leaf_entries(c, net->leaves[a1].id), 30);
  Record *rec = roster_get(c->roster, net->leaves[a1].id);
  assert_int_equal(src_used(net, S1, "10.0.0.1", true), index_owner_bytes(c->index, rec->owner));
  publish_many(net, a1, "zz", 60); /* a reset: 30 priced cheap, then new ones */
  size_t held = sn_core_leaf_entries(c, net->leaves[a1].id);
  assert_true(held > 30);
  uint64_t bytes = index_owner_bytes(c->index, rec->owner);
  assert_true(bytes > 40 * one); /* over the share: the estimate was low */
  assert_int_equal(src_used(net, S1, "10.0.0.1", true), bytes);
  /* The address is full: its other leaf gets nothing in. */
  publish_many(net, a2, "yy", 10);
  assert_int_equal(sn_core_leaf_entries(c, net->leaves[a2].id), 0);
  /* A leaf of another address still does. */
  int b1 = leaf_from(net, S1, "10.0.0.2");
  publish_many(net, b1, "xx", 10);
  assert_int_equal(sn_core_leaf_entries(c, net->leaves[b1].id), 10);
  net_free(net);
}

/* After a takeover the new leader holds the leaf's replicated record: the
 * leaf's address is charged with it when the leaf attaches, not never
 * (and then refused whole at the leaf's next add). */
static void test_replica_charged_at_attach(void **state)
{
  (void)state;
  SnConfig cfg = budget_config(); /* 60 entries per address, 40 per leaf */
  Net *net = net_new(1, &cfg, false);
  SnCore *c = net->node[S1].core;
  int a1 = leaf_open(net, S1);
  sn_core_set_source(c, net->leaves[a1].conn, "10.0.0.1");
  /* What replication left us of a1 (group.c's roster_ensure + publish). */
  Record *rec = roster_ensure(c->roster, net->leaves[a1].id);
  char names[30][16];
  WireEntry e[30];
  for (int i = 0; i < 30; i++) {
    snprintf(names[i], sizeof names[i], "rr %04d", i);
    e[i].name = wire_str(names[i], strlen(names[i]));
    e[i].size = 1;
    cid_of(names[i], e[i].cid);
  }
  assert_int_equal(roster_publish(c->roster, rec, true, e, 30), 0);
  leaf_hello(net, a1);
  assert_false(net->leaves[a1].closed);
  assert_int_equal(src_used(net, S1, "10.0.0.1", false), 30);
  /* a1 adds one: charged 31, not refused whole. */
  const char *one[] = {"rr late"};
  leaf_publish(net, a1, one, 1, false);
  assert_int_equal(sn_core_leaf_entries(c, net->leaves[a1].id), 31);
  assert_int_equal(src_used(net, S1, "10.0.0.1", false), 31);
  /* The address's other leaf gets what is left of 60: 29, not 40. */
  int a2 = leaf_from(net, S1, "10.0.0.1");
  publish_many(net, a2, "ab", 100);
  assert_int_equal(sn_core_leaf_entries(c, net->leaves[a2].id), 29);
  net_free(net);
}

/* Entries per second per leaf: a burst, then the rate; throttled frames
 * are dropped whole and counted; another leaf is not affected. */
static void test_publish_rate(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  cfg.publish_rate = 100;
  cfg.publish_burst = 200;
  Net *net = net_new(1, &cfg, false);
  int l = leaf_add(net, S1);
  int other = leaf_add(net, S1);
  publish_many(net, l, "aa", 200); /* the burst */
  assert_int_equal(stats(net, S1)->index_entries, 200);
  const char *one[] = {"late 1"};
  leaf_publish(net, l, one, 1, false);
  assert_int_equal(stats(net, S1)->publish_throttled, 1);
  assert_int_equal(stats(net, S1)->index_entries, 200);
  publish_many(net, other, "bb", 50);
  assert_int_equal(stats(net, S1)->index_entries, 250);
  net->now += 500; /* 50 tokens */
  leaf_publish(net, l, one, 1, false);
  assert_int_equal(stats(net, S1)->index_entries, 251);
  assert_false(net->leaves[l].closed); /* throttled, not cut off */
  net_free(net);
}

/* A leaf's session to node, with the node id of leaf `as` (a reconnect). */
static int leaf_reopen(Net *net, int node, int as)
{
  assert_true(net->nleaves < MAX_LEAVES);
  int li = net->nleaves++;
  Leaf *l = &net->leaves[li];
  l->node = node;
  l->inbox = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
  memcpy(l->id, net->leaves[as].id, 32);
  l->conn = new_end(net, node, END_LEAF);
  net->ends[l->conn].leaf = li;
  sn_core_open(net->node[node].core, l->conn, l->id, NULL, net->now);
  pump(net);
  leaf_hello(net, li);
  assert_false(l->closed);
  return li;
}

static void leaf_leave(Net *net, int li)
{
  net->ends[net->leaves[li].conn].open = false;
  sn_core_closed(net->node[net->leaves[li].node].core, net->leaves[li].conn, net->now);
  pump(net);
}

/* The publish bucket is the leaf's, not its session's: reconnecting does
 * not refill it (it did: a fresh burst per session); time does. */
static void test_publish_rate_survives_reconnect(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  cfg.publish_rate = 100;
  cfg.publish_burst = 200;
  Net *net = net_new(1, &cfg, false);
  SnCore *c = net->node[S1].core;
  int l = leaf_add(net, S1);
  publish_many(net, l, "aa", 200); /* the burst */
  assert_int_equal(stats(net, S1)->index_entries, 200);
  leaf_leave(net, l);
  assert_int_equal(pubrates_size(c->pubrates), 1);
  net->now += 100; /* 10 tokens back */
  int again = leaf_reopen(net, S1, l);
  assert_int_equal(pubrates_size(c->pubrates), 0);
  publish_many(net, again, "ab", 20); /* more than it has: dropped */
  assert_int_equal(stats(net, S1)->publish_throttled, 20);
  assert_int_equal(stats(net, S1)->index_entries, 0);
  publish_many(net, again, "ac", 10);
  assert_int_equal(stats(net, S1)->index_entries, 10);
  /* Replaced without leaving (a new session while the old one lingers). */
  int third = leaf_reopen(net, S1, l);
  assert_true(net->leaves[again].closed);
  publish_many(net, third, "ad", 1);
  assert_int_equal(stats(net, S1)->publish_throttled, 21);
  /* Another leaf has its own burst. */
  int other = leaf_add(net, S1);
  publish_many(net, other, "bb", 200); /* (again's 10 went with it) */
  assert_int_equal(stats(net, S1)->index_entries, 200);
  /* Once refilled, nothing is kept: the table holds only the drained. */
  leaf_leave(net, third);
  net->now += 2000;
  leaf_leave(net, other);
  assert_int_equal(pubrates_size(c->pubrates), 1); /* other, still drained */
  int fourth = leaf_reopen(net, S1, l);
  publish_many(net, fourth, "ae", 200);
  assert_int_equal(stats(net, S1)->publish_throttled, 21);
  net_free(net);
}

/* The table is bounded: refilled buckets go first, then any. */
static void test_pubrates_bounded(void **state)
{
  (void)state;
  PubRates *t = pubrates_new(2);
  uint8_t id[4][32];
  RateLimit rl;
  for (int i = 0; i < 4; i++) {
    memset(id[i], i + 1, 32);
    uint64_t at = 1000 + (uint64_t)i * 600;
    ratelimit_init(&rl, 10, 10, at);
    assert_true(ratelimit_take_n(&rl, 10, at)); /* drained: 1 s to refill */
    pubrates_keep(t, id[i], &rl, at);
  }
  assert_int_equal(pubrates_size(t), 2);
  /* Each new one found the oldest refilled: 2 and 3 are kept. */
  pubrates_restore(t, id[3], &rl, 10, 10, 2800);
  assert_true(rl.tokens < 10);
  assert_int_equal(pubrates_size(t), 1);
  pubrates_restore(t, id[0], &rl, 10, 10, 2800);
  assert_true(rl.tokens == 10); /* forgotten: a full bucket */
  pubrates_free(t);
}

/* The plan adds up: what it hands out never exceeds the limit. */
static void test_memory_plan(void **state)
{
  (void)state;
  SnMemPlan p;
  char err[256];
  assert_true(sn_mem_plan(2048, 2144, 16, 256 << 10, 100000, &p, err, sizeof err));
  assert_int_equal(p.limit, 2048ull << 20);
  assert_int_equal(p.sessions, 2144ull * SN_MEM_PER_SESSION);
  assert_true(p.fixed + p.sessions + p.output_total + p.input_total + p.index_bytes <= p.limit);
  assert_true(p.input_share * 4 <= p.input_total && p.input_share >= 1 << 20);
  assert_int_equal(p.leaf_output, 256 << 10);
  assert_true(p.leaf_bytes * 8 <= p.index_bytes && p.source_bytes * 4 <= p.index_bytes);
  assert_true(p.leaf_entries <= 100000);
  /* Too small for the sessions: refused, and the message says why. */
  assert_false(sn_mem_plan(64, 20000, 16, 256 << 10, 100000, &p, err, sizeof err));
  assert_non_null(strstr(err, "max-leaves"));
  /* A small limit shrinks a leaf's queue below its setting. */
  assert_true(sn_mem_plan(200, 244, 16, 8 << 20, 100000, &p, err, sizeof err));
  assert_true(p.leaf_output <= p.output_share);
  /* Issue 12: the defaults (memory-limit 4096, max-leaves 19,000, each with
   * a backup's watch session, 16 links, 512 handshakes) leave most of the
   * memory to queues and the index: idle sessions cost 4 KiB each. */
  assert_true(sn_mem_plan(4096, 2 * 19000 + 16 + 512, 16, 256 << 10, 100000, &p, err, sizeof err));
  assert_true(p.sessions <= 160ull << 20);
  assert_true(p.index_bytes >= 1900ull << 20);
}

/* Leaves that do not read, from as many addresses as it takes, fill the
 * leaves' part of the output total; a link still gets its whole cap from
 * the part kept for links (it was refused, and cut, once the shared total
 * was full). The budgets as main.c makes them from the plan. */
static void test_links_keep_their_output(void **state)
{
  (void)state;
  SnMemPlan p;
  char err[256];
  const unsigned links = 16;
  for (unsigned limit = 200; limit <= 8192; limit *= 2) {
    assert_true(sn_mem_plan(limit, 244 + links, links, 256 << 10, 100000, &p, err, sizeof err));
    assert_int_equal(p.links_output + p.leaves_output, p.output_total);
    assert_true(p.links_output <= p.output_total / 2);
    assert_true(p.leaf_output <= p.output_share && p.output_share * 4 <= p.leaves_output);
    assert_true(p.link_output >= 1 << 20); /* replication needs room */
    Budget *leaves = budget_new(p.leaves_output, p.output_share);
    Budget *lk = budget_new(p.links_output, p.link_output);
    char key[32];
    for (unsigned a = 0; budget_room(leaves, "", 0) > 0; a++) {
      snprintf(key, sizeof key, "10.0.%u.%u", a / 250, a % 250);
      budget_take(leaves, key, strlen(key), budget_room(leaves, key, strlen(key)));
      assert_true(a < 1000);
    }
    assert_int_equal(budget_used(leaves), p.leaves_output);
    assert_true(budget_take(lk, "link 10.9.9.9", 13, p.link_output));
    /* When the plan has room for every link at its cap, none is ever
     * refused for the total: only its own cap cuts it. */
    if (p.links_output >= links * p.link_output)
      for (unsigned i = 1; i < links; i++) {
        snprintf(key, sizeof key, "link 10.8.0.%u", i);
        assert_true(budget_take(lk, key, strlen(key), p.link_output));
      }
    budget_free(leaves);
    budget_free(lk);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_index_memory_caps),
      cmocka_unit_test(test_index_shares),
      cmocka_unit_test(test_publish_rate),
      cmocka_unit_test(test_publish_rate_survives_reconnect),
      cmocka_unit_test(test_pubrates_bounded),
      cmocka_unit_test(test_republish_charged_whatever_it_costs),
      cmocka_unit_test(test_replica_charged_at_attach),
      cmocka_unit_test(test_memory_plan),
      cmocka_unit_test(test_links_keep_their_output),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
