/* test_hostsend.c - what a super node tells its leaves of the others, with
 * a fake clock: a full super node's REFUSE (reason, retry, hosts) and close,
 * HOSTS after a leaf attaches (its own load included), and refresh rounds
 * that are rate-limited and at most one a minute. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "hostsend.h"
#include "sncore.h"
#include "wire.h"

#define T0 1000000u
#define SELF_ADDR "127.0.0.1:7400"

static void rng_fill(uint8_t *out, size_t n, void *ctx)
{
  uint64_t *s = ctx;
  for (size_t i = 0; i < n; i++)
    out[i] = (uint8_t)((*s = *s * 6364136223846793005ull + 1442695040888963407ull) >> 56);
}

typedef struct {
  SnCore *core;
  uint64_t now, seed;
  uint64_t next_conn;
  /* per conn (< 4096): HOSTS received, REFUSE received, closed */
  unsigned hosts[4096], refuses[4096];
  bool closed[4096], is_leaf[4096];
  WireMsg last_refuse; /* decoded; its hosts point into refuse_buf */
  uint8_t *refuse_buf;
  WireMsg last_hosts;
  uint8_t *hosts_buf;
  unsigned dials;
  char dial_addr[8][130];
} Fix;

static const uint8_t SELF[32] = {0x50};

static void drain(Fix *f)
{
  SnAction a;
  while (sn_core_next_action(f->core, &a)) {
    if (a.kind == SN_ACT_SEND) {
      WireMsg m;
      assert_int_equal(wire_decode(a.data, a.len, &m), WIRE_OK);
      if (m.type == MSG_REFUSE) {
        f->refuses[a.conn]++;
        wire_msg_clear(&f->last_refuse);
        g_free(f->refuse_buf);
        f->refuse_buf = g_memdup2(a.data, a.len);
        assert_int_equal(wire_decode(f->refuse_buf, a.len, &f->last_refuse), WIRE_OK);
      } else if (m.type == MSG_HOSTS && f->is_leaf[a.conn]) { /* links get HOSTS too */
        f->hosts[a.conn]++;
        wire_msg_clear(&f->last_hosts);
        g_free(f->hosts_buf);
        f->hosts_buf = g_memdup2(a.data, a.len);
        assert_int_equal(wire_decode(f->hosts_buf, a.len, &f->last_hosts), WIRE_OK);
      }
      wire_msg_clear(&m);
    } else if (a.kind == SN_ACT_CLOSE) {
      f->closed[a.conn] = true;
    } else if (a.kind == SN_ACT_DIAL && f->dials < 8) {
      g_strlcpy(f->dial_addr[f->dials++], a.addr, 130);
    }
    sn_action_clear(&a);
  }
}

static void recv_msg(Fix *f, uint64_t conn, const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  assert_true(wire_encode(m, &b));
  sn_core_recv(f->core, conn, b.data, b.len, f->now);
  buf_free(&b);
  drain(f);
}

/* Runs the clock ms on, waking up at the core's deadlines as the shell
 * does. */
static void tick(Fix *f, uint64_t ms)
{
  uint64_t end = f->now + ms;
  do {
    uint64_t next = sn_core_next_deadline(f->core);
    f->now = next > f->now && next < end ? next : end;
    sn_core_tick(f->core, f->now);
    drain(f);
  } while (f->now < end);
}

static uint64_t leaf(Fix *f, unsigned n)
{
  uint64_t conn = f->next_conn++;
  f->is_leaf[conn] = true;
  uint8_t id[32] = {0x1e};
  id[1] = (uint8_t)n;
  id[2] = (uint8_t)(n >> 8);
  sn_core_open(f->core, conn, id, NULL, f->now);
  drain(f);
  WireMsg h = {.type = MSG_HELLO};
  h.u.hello.role = ROLE_LEAF;
  h.u.hello.listen = wire_str("", 0);
  h.u.hello.agent = wire_str("t", 1);
  recv_msg(f, conn, &h);
  return conn;
}

/* Another super node, dialed (so its address is verified) and linked. */
static uint64_t neighbour(Fix *f, unsigned n)
{
  char addr[64];
  g_snprintf(addr, sizeof addr, "127.0.0.%u:7400", n + 1);
  uint8_t id[32] = {0x5e};
  id[1] = (uint8_t)n;
  sn_core_add_peer(f->core, addr, f->now);
  tick(f, 1);
  uint64_t conn = f->next_conn++;
  sn_core_open(f->core, conn, id, addr, f->now);
  drain(f);
  WireMsg h = {.type = MSG_HELLO};
  h.u.hello.role = ROLE_SUPER;
  h.u.hello.listen = wire_str(addr, strlen(addr));
  h.u.hello.agent = wire_str("t", 1);
  recv_msg(f, conn, &h);
  return conn;
}

static Fix *fix(unsigned max_leaves)
{
  Fix *f = g_new0(Fix, 1);
  f->now = T0;
  f->seed = 7;
  f->next_conn = 1;
  SnConfig cfg;
  sn_config_defaults(&cfg);
  cfg.advertise = SELF_ADDR;
  cfg.discovery = false;
  cfg.max_leaves = max_leaves;
  cfg.keepalive_ms = 100000000; /* the test's sessions never answer PINGs */
  f->core = sn_core_new(&cfg, SELF, rng_fill, &f->seed, f->now);
  assert_non_null(f->core);
  drain(f);
  return f;
}

static void fix_free(Fix *f)
{
  sn_core_free(f->core);
  wire_msg_clear(&f->last_refuse);
  wire_msg_clear(&f->last_hosts);
  g_free(f->refuse_buf);
  g_free(f->hosts_buf);
  g_free(f);
}

static bool names(const WireMsg *m, const char *addr)
{
  const WireHost *h = m->type == MSG_HOSTS ? m->u.hosts.hosts : m->u.refuse.hosts;
  uint16_t n = m->type == MSG_HOSTS ? m->u.hosts.count : m->u.refuse.count;
  for (uint16_t i = 0; i < n; i++)
    if (h[i].addr.len == strlen(addr) && memcmp(h[i].addr.p, addr, h[i].addr.len) == 0)
      return true;
  return false;
}

/* max-leaves reached: the next leaf's HELLO is answered with REFUSE (leaves
 * full, a retry time, the other super nodes, not ourselves) and closed. */
static void test_full_refuses_with_hosts(void **state)
{
  Fix *f = fix(1);
  neighbour(f, 1);
  neighbour(f, 2);
  uint64_t a = leaf(f, 1);
  assert_false(f->closed[a]);
  assert_int_equal(f->refuses[a], 0);
  uint64_t b = leaf(f, 2);
  assert_int_equal(f->refuses[b], 1);
  assert_true(f->closed[b]);
  assert_int_equal(f->last_refuse.u.refuse.reason, REFUSE_LEAVES_FULL);
  assert_int_equal(f->last_refuse.u.refuse.retry_ms, SN_HOSTS_REFUSE_RETRY_MS);
  assert_int_equal(f->last_refuse.u.refuse.count, 2);
  assert_true(names(&f->last_refuse, "127.0.0.2:7400"));
  assert_true(names(&f->last_refuse, "127.0.0.3:7400"));
  assert_false(names(&f->last_refuse, SELF_ADDR));
  assert_int_equal(sn_core_stats(f->core)->leaves, 1);
  HostSendStats st;
  sn_hosts_stats(f->core, &st);
  assert_int_equal(st.refused, 1);
  /* Room again: taken. */
  sn_core_closed(f->core, a, f->now);
  uint64_t c = leaf(f, 3);
  assert_false(f->closed[c]);
  assert_int_equal(f->refuses[c], 0);
  fix_free(f);
  (void)state;
}

/* After ATTACHED, HOSTS: ourselves first with our leaf load, then the
 * others. */
static void test_hosts_after_attach(void **state)
{
  Fix *f = fix(4);
  neighbour(f, 1);
  uint64_t a = leaf(f, 1);
  tick(f, 10);
  assert_int_equal(f->hosts[a], 1);
  const WireMsg *m = &f->last_hosts;
  assert_int_equal(m->u.hosts.count, 2);
  assert_int_equal(m->u.hosts.hosts[0].addr.len, strlen(SELF_ADDR));
  assert_memory_equal(m->u.hosts.hosts[0].addr.p, SELF_ADDR, strlen(SELF_ADDR));
  assert_memory_equal(m->u.hosts.hosts[0].id, SELF, 32);
  assert_int_equal(m->u.hosts.hosts[0].leaf_load, 25); /* 1 of 4 */
  assert_true(names(m, "127.0.0.2:7400"));
  /* The first look at the set (SN_HOSTS_CHECK_MS) may start a round;
   * then, nothing changing, no more HOSTS however long. */
  tick(f, SN_HOSTS_CHECK_MS + 100);
  unsigned had = f->hosts[a];
  assert_true(had <= 2);
  for (int i = 0; i < 30; i++)
    tick(f, 10000);
  assert_int_equal(f->hosts[a], had);
  fix_free(f);
  (void)state;
}

/* The set changes: every leaf gets one more HOSTS, at SN_HOSTS_SEND_RATE a
 * second at most (not all at once); another change within the minute waits
 * for the next round. */
static void test_refresh_rounds_rate_limited(void **state)
{
  Fix *f = fix(3000);
  enum { N = 1500 };
  uint64_t first = f->next_conn;
  for (unsigned i = 0; i < N; i++)
    leaf(f, i);
  for (int i = 0; i < 100; i++)
    tick(f, 100); /* the attach HOSTS drain: 10 s */
  for (uint64_t c = first; c < first + N; c++)
    assert_int_equal(f->hosts[c], 1);
  HostSendStats st;
  sn_hosts_stats(f->core, &st);
  uint64_t rounds = st.rounds;
  tick(f, SN_HOSTS_ROUND_MS); /* a round may start again from now */
  neighbour(f, 1);
  uint64_t sent0 = 0, sent1;
  sn_hosts_stats(f->core, &st);
  sent0 = st.hosts_sent;
  tick(f, SN_HOSTS_CHECK_MS); /* the change is seen */
  sn_hosts_stats(f->core, &st);
  assert_int_equal(st.rounds, rounds + 1);
  uint64_t t = f->now;
  tick(f, 1000);
  sn_hosts_stats(f->core, &st);
  sent1 = st.hosts_sent - sent0;
  assert_true(sent1 <=
              SN_HOSTS_SEND_RATE * (f->now - t + SN_HOSTS_CHECK_MS) / 1000 + SN_HOSTS_SEND_BURST);
  assert_true(sent1 < N);
  /* Another change now: no new round within the minute. */
  neighbour(f, 2);
  for (int i = 0; i < 50; i++)
    tick(f, 1000);
  sn_hosts_stats(f->core, &st);
  assert_int_equal(st.rounds, rounds + 1);
  for (uint64_t c = first; c < first + N; c++)
    assert_int_equal(f->hosts[c], 2);
  assert_true(names(&f->last_hosts, "127.0.0.2:7400"));
  /* A minute after the last round, the next one. */
  for (int i = 0; i < 20; i++)
    tick(f, 1000);
  sn_hosts_stats(f->core, &st);
  assert_int_equal(st.rounds, rounds + 2);
  for (int i = 0; i < 10; i++)
    tick(f, 1000);
  for (uint64_t c = first; c < first + N; c++)
    assert_int_equal(f->hosts[c], 3);
  for (int i = 0; i < f->last_hosts.u.hosts.count; i++)
    assert_true(names(&f->last_hosts, "127.0.0.3:7400"));
  fix_free(f);
  (void)state;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_refuses_with_hosts),
      cmocka_unit_test(test_hosts_after_attach),
      cmocka_unit_test(test_refresh_rounds_rate_limited),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
