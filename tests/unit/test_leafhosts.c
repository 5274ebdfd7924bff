/* test_leafhosts.c - the leaf core with several super nodes (its host
 * cache), with a fake clock: the next configured one when the first does
 * not answer, the learned ones when its super node is gone, a refusal's
 * hosts first, and a republish wherever it attaches. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "leafcore.h"
#include "wire.h"

#define T0 1000000u

static void rng_fill(uint8_t *out, size_t n, void *ctx)
{
  (void)ctx;
  memset(out, 0x80, n);
}

typedef struct {
  LeafCore *core;
  uint64_t now;
  unsigned dials;
  char last_dial[130];
  unsigned publishes; /* PUBLISH frames with reset */
  unsigned closes;
} Fix;

static const char *const CONFIGURED[] = {"127.0.0.1:7401", "127.0.0.1:7402", NULL};
static const uint8_t ID1[32] = {1}, ID2[32] = {2}, ID3[32] = {3}, ID4[32] = {4};

static void drain(Fix *f)
{
  LeafAction a;
  while (leaf_core_next_action(f->core, &a)) {
    if (a.kind == LEAF_ACT_DIAL && a.slot == LEAF_SLOT_PRIMARY) {
      f->dials++;
      g_strlcpy(f->last_dial, a.addr, sizeof f->last_dial);
    } else if (a.kind == LEAF_ACT_CLOSE && a.slot == LEAF_SLOT_PRIMARY) {
      f->closes++;
    } else if (a.kind == LEAF_ACT_SEND) {
      WireMsg m;
      assert_int_equal(wire_decode(a.data, a.len, &m), WIRE_OK);
      if (m.type == MSG_PUBLISH && m.u.publish.reset)
        f->publishes++;
      wire_msg_clear(&m);
    }
    leaf_action_clear(&a);
  }
}

static void feed(Fix *f, const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  assert_true(wire_encode(m, &b));
  leaf_core_recv(f->core, LEAF_SLOT_PRIMARY, b.data, b.len, f->now);
  buf_free(&b);
  drain(f);
}

/* Runs the clock in 10 ms steps until the next primary dial (at most
 * max_ms); returns how long it took. */
static uint64_t until_dial(Fix *f, uint64_t max_ms)
{
  unsigned before = f->dials;
  uint64_t start = f->now;
  while (f->dials == before) {
    assert_true(f->now - start <= max_ms);
    f->now += 10;
    leaf_core_tick(f->core, f->now);
    drain(f);
  }
  return f->now - start;
}

static void attach(Fix *f, const uint8_t id[32])
{
  leaf_core_connected(f->core, LEAF_SLOT_PRIMARY, id, f->now);
  drain(f);
  WireMsg m = {.type = MSG_ATTACHED};
  feed(f, &m);
  assert_true(leaf_core_is_connected(f->core));
}

static Fix *fix(void)
{
  Fix *f = g_new0(Fix, 1);
  f->now = T0;
  LeafConfig cfg;
  leaf_config_defaults(&cfg);
  cfg.supernodes = CONFIGURED;
  f->core = leaf_core_new(&cfg, rng_fill, NULL);
  LeafEntry e = {.name = "song.ogg", .size = 5};
  memset(e.cid, 9, 32);
  leaf_core_set_manifest(f->core, &e, 1, f->now);
  leaf_core_start(f->core, f->now);
  drain(f);
  return f;
}

static void fix_free(Fix *f)
{
  leaf_core_free(f->core);
  g_free(f);
}

/* The first --supernode does not answer: the second is dialed within the
 * shortest back-off (no 30 s wait), and the first stays backed off. */
static void test_unreachable_first_then_next(void **state)
{
  Fix *f = fix();
  assert_string_equal(f->last_dial, CONFIGURED[0]);
  leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, f->now);
  drain(f);
  assert_true(until_dial(f, 400) <= 320);
  assert_string_equal(f->last_dial, CONFIGURED[1]);
  attach(f, ID2);
  assert_int_equal(f->publishes, 1);
  const HostEntry *e = hostcache_get(leaf_core_hosts(f->core), 0);
  assert_string_equal(e->addr, CONFIGURED[0]);
  assert_int_equal(e->failures, 1);
  assert_true(hostcache_get(leaf_core_hosts(f->core), 1)->worked);
  fix_free(f);
  (void)state;
}

static void send_hosts(Fix *f)
{
  WireHost h[3] = {
      {.addr = wire_str("127.0.0.1:7401", 14), .leaf_load = 10, .link_load = 1},
      {.addr = wire_str("127.0.0.1:7403", 14), .leaf_load = 60, .link_load = 1},
      {.addr = wire_str("127.0.0.1:7404", 14), .leaf_load = 5, .link_load = 1},
  };
  memcpy(h[0].id, ID1, 32);
  memcpy(h[1].id, ID3, 32);
  memcpy(h[2].id, ID4, 32);
  WireMsg m = {.type = MSG_HOSTS};
  m.u.hosts.count = 3;
  m.u.hosts.hosts = h;
  feed(f, &m);
}

/* Attached to the first, it hears of others (HOSTS); the first dies: one
 * redial of it, then the second configured one, then the learned ones,
 * least loaded first, each after the shortest back-off; where it attaches
 * it publishes again. */
static void test_gone_then_learned_hosts(void **state)
{
  Fix *f = fix();
  attach(f, ID1);
  assert_int_equal(f->publishes, 1);
  send_hosts(f);
  HostCache *h = leaf_core_hosts(f->core);
  assert_int_equal(hostcache_size(h), 4);
  leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, f->now); /* it died */
  drain(f);
  assert_true(until_dial(f, 400) <= 320);
  assert_string_equal(f->last_dial, CONFIGURED[0]);           /* once more */
  leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, f->now); /* refused */
  drain(f);
  assert_true(until_dial(f, 400) <= 320);
  assert_string_equal(f->last_dial, CONFIGURED[1]);
  leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, f->now);
  drain(f);
  assert_true(until_dial(f, 400) <= 320);
  assert_string_equal(f->last_dial, "127.0.0.1:7404"); /* 5 % before 60 % */
  attach(f, ID4);
  assert_int_equal(f->publishes, 2);
  LeafGroupStatus g;
  leaf_core_group_status(f->core, &g);
  assert_int_equal(g.leader_changes, 1);
  LeafHostStatus hs;
  leaf_core_host_status(f->core, &hs);
  assert_int_equal(hs.hosts_heard, 1);
  fix_free(f);
  (void)state;
}

/* A full super node refuses with hosts: the session is closed, the first
 * named host is dialed next (before the configured second one), and the
 * refusing one is not dialed before retry_ms. */
static void test_refusal_redirects(void **state)
{
  Fix *f = fix();
  leaf_core_connected(f->core, LEAF_SLOT_PRIMARY, ID1, f->now);
  drain(f);
  WireHost h[3] = {
      {.addr = wire_str("127.0.0.1:7404", 14), .leaf_load = 20, .link_load = 1},
      {.addr = wire_str("127.0.0.1:7403", 14), .leaf_load = 40, .link_load = 1},
      {.addr = wire_str("\x1b]0;owned\a:1", 12), .leaf_load = 0, .link_load = 0},
  };
  memcpy(h[0].id, ID4, 32);
  memcpy(h[1].id, ID3, 32);
  WireMsg m = {.type = MSG_REFUSE};
  m.u.refuse.reason = REFUSE_LEAVES_FULL;
  m.u.refuse.retry_ms = 60000;
  m.u.refuse.count = 3;
  m.u.refuse.hosts = h;
  feed(f, &m);
  assert_int_equal(f->closes, 1);
  assert_false(leaf_core_is_connected(f->core));
  LeafHostStatus hs;
  leaf_core_host_status(f->core, &hs);
  assert_int_equal(hs.refusals, 1);
  assert_non_null(strstr(hs.last_refusal, "leaves full"));
  assert_non_null(strstr(hs.last_refusal, "127.0.0.1:7404 127.0.0.1:7403"));
  assert_null(strchr(hs.last_refusal, '\x1b')); /* a malformed name is neither taken nor shown */
  assert_int_equal(hostcache_size(leaf_core_hosts(f->core)), 4);
  assert_true(until_dial(f, 400) <= 320);
  assert_string_equal(f->last_dial, "127.0.0.1:7404");
  leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, f->now);
  drain(f);
  until_dial(f, 400);
  assert_string_equal(f->last_dial, "127.0.0.1:7403");
  leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, f->now);
  drain(f);
  until_dial(f, 400);
  assert_string_equal(f->last_dial, CONFIGURED[1]);
  /* Everything fails from now on: the refusing one only after 60 s. */
  uint64_t refused_at = T0;
  for (int i = 0; i < 200; i++) {
    leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, f->now);
    drain(f);
    until_dial(f, 40000);
    if (strcmp(f->last_dial, CONFIGURED[0]) == 0)
      break;
  }
  assert_string_equal(f->last_dial, CONFIGURED[0]);
  assert_true(f->now - refused_at >= 60000);
  fix_free(f);
  (void)state;
}

/* A super node that took us cannot refuse afterwards (a REFUSE when
 * attached ends the session like any close, no hints taken). */
static void test_refusal_after_attach_is_a_close(void **state)
{
  Fix *f = fix();
  attach(f, ID1);
  WireHost h = {.addr = wire_str("10.9.9.9:1", 10), .leaf_load = 0, .link_load = 0};
  WireMsg m = {.type = MSG_REFUSE};
  m.u.refuse.reason = REFUSE_LEAVES_FULL;
  m.u.refuse.count = 1;
  m.u.refuse.hosts = &h;
  feed(f, &m);
  assert_false(leaf_core_is_connected(f->core));
  assert_int_equal(hostcache_size(leaf_core_hosts(f->core)), 2);
  fix_free(f);
  (void)state;
}

/* In a group the group comes first: its leader, then its members; the
 * host cache only once the whole group has failed for 2 minutes, and then
 * the leaf forgets the group (its term too: a super node outside it says
 * term 0). */
static void test_group_first_then_cache(void **state)
{
  Fix *f = fix();
  leaf_core_connected(f->core, LEAF_SLOT_PRIMARY, ID1, f->now);
  drain(f);
  WirePeer members[1] = {{.addr = wire_str("127.0.0.1:7401", 14)}};
  memcpy(members[0].id, ID1, 32);
  WireMsg g = {.type = MSG_GROUP_STATE};
  g.u.group.role = GROLE_LEADER;
  g.u.group.group = wire_str("g", 1);
  g.u.group.term = 5ull << 32;
  g.u.group.hb_ms = 250;
  memcpy(g.u.group.leader, ID1, 32);
  g.u.group.leader_addr = wire_str("127.0.0.1:7401", 14);
  g.u.group.backup_addr = wire_str("", 0);
  g.u.group.n_members = 1;
  g.u.group.members = members;
  feed(f, &g);
  WireMsg att = {.type = MSG_ATTACHED};
  att.u.attached.term = 5ull << 32;
  feed(f, &att);
  assert_true(leaf_core_is_connected(f->core));
  LeafGroupStatus gs;
  leaf_core_group_status(f->core, &gs);
  assert_true(gs.term == 5ull << 32);
  leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, f->now); /* the group's only member dies */
  drain(f);
  uint64_t lost = f->now;
  unsigned away = 0;
  while (f->now - lost < 125000) {
    until_dial(f, 40000);
    if (strcmp(f->last_dial, "127.0.0.1:7401") != 0) {
      away++;
      break;
    }
    leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, f->now);
    drain(f);
  }
  assert_int_equal(away, 1);
  assert_true(f->now - lost >= 120000); /* not before LEAF_GROUP_FALLBACK_MS */
  assert_string_equal(f->last_dial, CONFIGURED[1]);
  leaf_core_group_status(f->core, &gs);
  assert_true(gs.term == 0 && gs.group[0] == '\0');
  attach(f, ID2); /* term 0: taken */
  fix_free(f);
  (void)state;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unreachable_first_then_next),
      cmocka_unit_test(test_gone_then_learned_hosts),
      cmocka_unit_test(test_refusal_redirects),
      cmocka_unit_test(test_refusal_after_attach_is_a_close),
      cmocka_unit_test(test_group_first_then_cache),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
