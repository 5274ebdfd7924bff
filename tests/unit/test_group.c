/* test_group.c - group membership, terms and the takeover vote
 * (supernode/group.c, GROUPS.md), under attack, with a fake clock.
 *
 * A few SnCore instances joined by in-memory links (FIFO delivery, so each
 * run is deterministic), and "raw" ends the test speaks for: leaves, and a
 * hostile super node that writes GROUP_STATE messages of its choosing.
 * The wall clock (unix_now) moves with the fake monotonic one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>
#include <sodium.h>

#include "buf.h"
#include "identity.h"
#include "mesh.h"
#include "netcert.h"
#include "sncore.h"
#include "sncore_int.h"
#include "term.h"
#include "wire.h"

#define MAX_NODES 3
#define MAX_ENDS 128
#define UNIX_BASE 1800000000ull
#define GROUP "g1"
#define STEP_MS 50

enum { A, B, C };

typedef struct {
  int node;      /* the core owning this end */
  uint64_t peer; /* the other end's conn; 0: a raw end the test speaks for */
  bool open;
  const char *closed_why; /* the core closed it, with this reason */
  unsigned got_state;     /* raw end: GROUP_STATEs the core sent it */
  unsigned got_watch;     /* raw end: WATCHes (a backup's question) */
} End;

typedef struct {
  uint64_t conn;
  GBytes *data; /* NULL: the other side closed */
} Ev;

static struct {
  uint64_t now;
  SnCore *core[MAX_NODES];
  uint8_t id[MAX_NODES][32];
  char addr[MAX_NODES][32];
  uint64_t rng[MAX_NODES];
  End ends[MAX_ENDS];
  uint64_t next_conn;
  GQueue evs;
  GPtrArray *dials[MAX_NODES];
  uint8_t key[32];
  bool hung[MAX_NODES]; /* hang(): no ticks, nothing sent or received */
} net;

static uint64_t fake_unix(void)
{
  return UNIX_BASE + net.now / 1000;
}

static void rng_fill(uint8_t *out, size_t n, void *ctx)
{
  uint64_t *s = ctx;
  while (n--) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    *out++ = (uint8_t)(*s >> 56);
  }
}

static void node_id(uint8_t tag, uint8_t id[32])
{
  memset(id, tag, 32);
}

/* A core; keyed: with the group's secret (else no way to prove membership,
 * unless netkey: in that network, with a certificate for id). */
static void start_in(int n, bool keyed, uint64_t term_floor, unsigned max_leaves,
                     const Identity *id, const Identity *netkey)
{
  if (id)
    memcpy(net.id[n], id->id, 32);
  else
    node_id((uint8_t)(0x10 * (n + 1)), net.id[n]);
  g_snprintf(net.addr[n], sizeof net.addr[n], "127.0.0.1:%d", 7401 + n);
  SnConfig cfg;
  sn_config_defaults(&cfg);
  cfg.advertise = net.addr[n];
  cfg.discovery = false;
  cfg.group = GROUP;
  cfg.group_key = keyed ? net.key : NULL;
  cfg.term_floor = term_floor;
  cfg.unix_now = fake_unix;
  if (max_leaves)
    cfg.max_leaves = max_leaves;
  if (netkey)
    cfg.network_pk = netkey->pk;
  net.rng[n] = (uint64_t)n + 1;
  net.core[n] = sn_core_new(&cfg, net.id[n], rng_fill, &net.rng[n], net.now);
  assert_non_null(net.core[n]);
  if (netkey) {
    uint8_t cert[NETCERT_LEN];
    netcert_sign(netkey, id->pk, fake_unix() + 86400, cert);
    sn_core_set_cert(net.core[n], cert, sizeof cert);
  }
  net.dials[n] = g_ptr_array_new_with_free_func(g_free);
}

static void start(int n, bool keyed, uint64_t term_floor, unsigned max_leaves)
{
  start_in(n, keyed, term_floor, max_leaves, NULL, NULL);
}

static End *end_of(uint64_t conn)
{
  assert_true(conn > 0 && conn < MAX_ENDS);
  return &net.ends[conn];
}

static void pump(void)
{
  bool busy = true;
  while (busy) {
    busy = false;
    for (int n = 0; n < MAX_NODES; n++) {
      SnAction a;
      while (net.core[n] && !net.hung[n] && sn_core_next_action(net.core[n], &a)) {
        busy = true;
        End *e = a.kind == SN_ACT_SEND || a.kind == SN_ACT_CLOSE ? end_of(a.conn) : NULL;
        if (a.kind == SN_ACT_SEND && e->open) {
          if (e->peer) {
            Ev *ev = g_new(Ev, 1);
            ev->conn = e->peer;
            ev->data = g_bytes_new(a.data, a.len);
            g_queue_push_tail(&net.evs, ev);
          } else {
            WireMsg m;
            if (wire_decode(a.data, a.len, &m) == WIRE_OK) {
              if (m.type == MSG_GROUP_STATE)
                e->got_state++;
              if (m.type == MSG_WATCH)
                e->got_watch++;
              wire_msg_clear(&m);
            }
          }
        } else if (a.kind == SN_ACT_CLOSE && e->open) {
          e->open = false;
          e->closed_why = a.reason;
          if (e->peer && end_of(e->peer)->open) {
            Ev *ev = g_new0(Ev, 1);
            ev->conn = e->peer;
            g_queue_push_tail(&net.evs, ev);
          }
        } else if (a.kind == SN_ACT_DIAL) {
          g_ptr_array_add(net.dials[n], g_strdup(a.addr));
        }
        sn_action_clear(&a);
      }
    }
    Ev *ev;
    while ((ev = g_queue_pop_head(&net.evs))) {
      busy = true;
      End *e = end_of(ev->conn);
      if (e->open && !net.hung[e->node]) {
        if (ev->data) {
          gsize len;
          const uint8_t *p = g_bytes_get_data(ev->data, &len);
          sn_core_recv(net.core[e->node], ev->conn, p, len, net.now);
        } else {
          e->open = false;
          sn_core_closed(net.core[e->node], ev->conn, net.now);
        }
      }
      if (ev->data)
        g_bytes_unref(ev->data);
      g_free(ev);
    }
  }
}

static void advance(uint64_t ms)
{
  for (uint64_t t = 0; t < ms; t += STEP_MS) {
    net.now += STEP_MS;
    for (int n = 0; n < MAX_NODES; n++)
      if (net.core[n] && !net.hung[n])
        sn_core_tick(net.core[n], net.now);
    pump();
  }
}

/* A link from a (dialing) to b. */
static void link_nodes(int a, int b)
{
  uint64_t ca = ++net.next_conn, cb = ++net.next_conn;
  net.ends[ca] = (End){.node = a, .peer = cb, .open = true};
  net.ends[cb] = (End){.node = b, .peer = ca, .open = true};
  sn_core_open(net.core[a], ca, net.id[b], net.addr[b], net.now);
  sn_core_open(net.core[b], cb, net.id[a], NULL, net.now);
  pump();
}

/* Cuts every link between a and b (both see it close). */
/* Closes every session between a and b. `b_here`: b's shell closed its
 * end on its own (stalled output, a channel error), not the far end. */
static void cut_how(int a, int b, bool b_here)
{
  for (uint64_t c = 1; c <= net.next_conn; c++) {
    End *e = &net.ends[c];
    if (e->open && e->peer && e->node == a && end_of(e->peer)->node == b) {
      End *f = end_of(e->peer);
      e->open = f->open = false;
      sn_core_closed(net.core[a], c, net.now);
      if (b_here)
        sn_core_closed_here(net.core[b], e->peer, net.now);
      else
        sn_core_closed(net.core[b], e->peer, net.now);
    }
  }
  pump();
}

static void cut(int a, int b)
{
  cut_how(a, b, false);
}

/* A raw session to node n from a peer with id `id`. */
static uint64_t raw_open(int n, const uint8_t id[32])
{
  uint64_t c = ++net.next_conn;
  net.ends[c] = (End){.node = n, .open = true};
  sn_core_open(net.core[n], c, id, NULL, net.now);
  pump();
  return c;
}

static void raw_send(uint64_t conn, const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  assert_true(wire_encode(m, &b));
  End *e = end_of(conn);
  if (e->open)
    sn_core_recv(net.core[e->node], conn, b.data, b.len, net.now);
  buf_free(&b);
  pump();
}

static void raw_close(uint64_t conn)
{
  End *e = end_of(conn);
  if (e->open) {
    e->open = false;
    sn_core_closed(net.core[e->node], conn, net.now);
  }
  pump();
}

static void raw_hello(uint64_t conn, uint8_t role, const char *listen)
{
  WireMsg m = {.type = MSG_HELLO};
  m.u.hello.role = role;
  m.u.hello.listen = wire_str(listen, strlen(listen));
  m.u.hello.agent = wire_str("test", 4);
  raw_send(conn, &m);
}

/* The protocol's membership proof (GROUPS.md, "Membership"). */
static void proof(const uint8_t key[32], const uint8_t from[32], const uint8_t to[32],
                  uint8_t out[32])
{
  crypto_generichash_state st;
  crypto_generichash_init(&st, key, 32, 32);
  crypto_generichash_update(&st, (const uint8_t *)"canopy group member", 19);
  crypto_generichash_update(&st, (const uint8_t *)GROUP, strlen(GROUP) + 1);
  crypto_generichash_update(&st, from, 32);
  crypto_generichash_update(&st, to, 32);
  crypto_generichash_final(&st, out, 32);
}

/* A hostile super node on node n says: "I lead term `term`" (or names
 * `leader` at addr); with_key: with a valid proof (a member holding the
 * key), forged: random bytes for a proof. */
static void claim(uint64_t conn, const uint8_t self[32], const uint8_t leader[32],
                  const char *leader_addr, uint8_t role, uint64_t term, bool with_key, bool forged)
{
  WireMsg m = {.type = MSG_GROUP_STATE};
  m.u.group.role = role;
  m.u.group.group = wire_str(GROUP, strlen(GROUP));
  m.u.group.term = term;
  m.u.group.hb_ms = 250;
  memcpy(m.u.group.leader, leader, 32);
  m.u.group.leader_addr = wire_str(leader_addr, strlen(leader_addr));
  WirePeer me = {.addr = wire_str("127.0.0.1:7999", 14)};
  memcpy(me.id, self, 32);
  m.u.group.n_members = 1;
  m.u.group.members = &me;
  if (with_key)
    proof(net.key, self, net.id[end_of(conn)->node], m.u.group.proof);
  else if (forged)
    randombytes_buf(m.u.group.proof, 32);
  raw_send(conn, &m);
}

static SnGroupStatus status(int n)
{
  SnGroupStatus st;
  sn_core_group_status(net.core[n], &st);
  return st;
}

static int leaders(void)
{
  int k = 0;
  for (int n = 0; n < MAX_NODES; n++)
    if (net.core[n] && status(n).role == SN_ROLE_LEADER)
      k++;
  return k;
}

static int setup(void **state)
{
  memset(&net, 0, sizeof net);
  g_queue_init(&net.evs);
  memset(net.key, 0x5A, sizeof net.key);
  net.now = 1000;
  return 0;
}

static int teardown(void **state)
{
  pump();
  for (int n = 0; n < MAX_NODES; n++) {
    sn_core_free(net.core[n]);
    if (net.dials[n])
      g_ptr_array_unref(net.dials[n]);
  }
  Ev *ev;
  while ((ev = g_queue_pop_head(&net.evs))) {
    if (ev->data)
      g_bytes_unref(ev->data);
    g_free(ev);
  }
  return 0;
}

/* A leads (started first), B joins and becomes its backup. */
static void group_of_two(unsigned max_leaves_b)
{
  start(A, true, 0, 0);
  advance(1200);
  assert_int_equal(status(A).role, SN_ROLE_LEADER);
  start(B, true, 0, max_leaves_b);
  link_nodes(B, A);
  advance(600);
  assert_int_equal(status(A).role, SN_ROLE_LEADER);
  assert_int_equal(status(B).role, SN_ROLE_BACKUP);
}

/* A leaf attached to A (so B's replicated roster holds it). */
static uint64_t attach_leaf(uint8_t tag)
{
  uint8_t id[32];
  node_id(tag, id);
  uint64_t c = raw_open(A, id);
  raw_hello(c, ROLE_LEAF, "");
  return c;
}

static uint64_t watch(uint8_t tag, bool leader_ok)
{
  uint8_t id[32];
  node_id(tag, id);
  uint64_t c = raw_open(B, id);
  raw_hello(c, ROLE_WATCH, "");
  WireMsg m = {.type = MSG_WATCH};
  m.u.watch.term = status(B).term;
  m.u.watch.leader_ok = leader_ok;
  raw_send(c, &m);
  return c;
}

/* --- finding 4: hijack --------------------------------------------------------- */

static const uint8_t ATTACKER[32] = {0x01, 0x01, 0x01, 0x01};
#define HUGE_TERM 0xFFFFFFFF00000001ull

static void assert_group_intact(uint64_t term)
{
  assert_int_equal(status(A).role, SN_ROLE_LEADER);
  assert_int_equal(status(B).role, SN_ROLE_BACKUP);
  assert_true(status(A).term == term);
  assert_true(status(B).term == term);
  assert_int_equal(status(A).stepdowns, 0);
  assert_int_equal(status(B).records, status(A).records);
}

/* The attack of issue 11: one GROUP_STATE of a huge term from a super node
 * that only says the group's name (no key; then a forged proof). */
static void test_non_member_cannot_move_the_group(void **state)
{
  group_of_two(0);
  attach_leaf(0x41);
  advance(300);
  uint64_t term = status(A).term;
  for (int forged = 0; forged < 2; forged++) {
    uint64_t c = raw_open(A, ATTACKER);
    raw_hello(c, ROLE_SUPER, "127.0.0.1:7999");
    claim(c, ATTACKER, ATTACKER, "127.0.0.1:7999", GROLE_LEADER, HUGE_TERM, false, forged);
    /* And a believable term, in case the ceiling were all there is. */
    claim(c, ATTACKER, ATTACKER, "127.0.0.1:7999", GROLE_LEADER, term + (1ull << 32), false,
          forged);
    advance(500);
    assert_group_intact(term);
    assert_true(status(A).claims_refused >= 2u * (unsigned)(forged + 1));
    assert_int_equal(status(A).records, 1);
    raw_close(c);
  }
  advance(3000);
  assert_group_intact(term);
}

/* A member holding the key: a term beyond belief is refused outright. */
static void test_member_with_huge_term_refused(void **state)
{
  group_of_two(0);
  uint64_t term = status(A).term;
  uint64_t probes[] = {HUGE_TERM, UINT64_MAX, 1ull << 63, 0};
  uint64_t c = raw_open(A, ATTACKER);
  raw_hello(c, ROLE_SUPER, "127.0.0.1:7999");
  for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
    if (!probes[i]) /* one counter above the ceiling, now */
      probes[i] = (fake_unix() + TERM_AHEAD_S + 1) << 32;
    claim(c, ATTACKER, ATTACKER, "127.0.0.1:7999", GROLE_LEADER, probes[i], true, false);
    advance(100);
    assert_group_intact(term);
  }
  assert_int_equal(status(A).claims_refused, 4);
}

/* A member holding the key claims the highest believable term, leads for a
 * moment and vanishes: the group elects above it by itself. */
static void test_member_at_the_ceiling_then_gone_recovers(void **state)
{
  group_of_two(0);
  uint64_t c = raw_open(A, ATTACKER);
  raw_hello(c, ROLE_SUPER, "127.0.0.1:7999");
  uint64_t poison = term_ceiling(fake_unix());
  claim(c, ATTACKER, ATTACKER, "127.0.0.1:7999", GROLE_LEADER, poison, true, false);
  assert_int_equal(status(A).role, SN_ROLE_STANDBY); /* it does lead, with proof */
  uint64_t c2 = raw_open(B, ATTACKER);
  raw_hello(c2, ROLE_SUPER, "127.0.0.1:7999");
  claim(c2, ATTACKER, ATTACKER, "127.0.0.1:7999", GROLE_LEADER, poison, true, false);
  raw_close(c);
  raw_close(c2);
  uint64_t gone = net.now;
  while (leaders() != 1 && net.now - gone < 20000)
    advance(STEP_MS);
  advance(3000); /* and it stays so */
  assert_int_equal(leaders(), 1);
  assert_true(status(A).term > poison);
  assert_true(status(A).term == status(B).term);
  assert_true(net.now - gone < 10000);
}

/* A member names a made-up leader of a higher term: nobody follows a
 * claim the claimer does not make itself; its address is dialed as a
 * learned one, and given up after MESH_PIN_MAX_FAILURES failures. */
static void test_hearsay_is_not_followed_nor_dialed_forever(void **state)
{
  group_of_two(0);
  uint64_t term = status(A).term;
  uint8_t ghost[32];
  node_id(0x02, ghost);
  uint64_t c = raw_open(A, ATTACKER);
  raw_hello(c, ROLE_SUPER, "127.0.0.1:7999");
  g_ptr_array_set_size(net.dials[A], 0);
  /* Five minutes of it (the same claim every 500 ms), every dial failing. */
  unsigned dials = 0;
  for (int i = 0; i < 600; i++) {
    claim(c, ATTACKER, ghost, "10.9.9.9:7400", GROLE_STANDBY, term + (1ull << 32), true, false);
    advance(500);
    dials += net.dials[A]->len;
    for (guint k = 0; k < net.dials[A]->len; k++)
      sn_core_dial_failed(net.core[A], g_ptr_array_index(net.dials[A], k), net.now);
    g_ptr_array_set_size(net.dials[A], 0);
  }
  assert_int_equal(dials, MESH_PIN_MAX_FAILURES);
  assert_group_intact(term);
}

/* A group-term file poisoned by an old version is not kept. */
static void test_saved_poison_discarded(void **state)
{
  start(A, true, HUGE_TERM, 0);
  advance(1200);
  assert_int_equal(status(A).role, SN_ROLE_LEADER);
  assert_true(status(A).term == term_next(0, term_tag(net.id[A])));
}

/* Without a key or a network, nobody is a member: the node leads alone
 * and no claim moves it. */
static void test_without_proof_nobody_is_a_member(void **state)
{
  start(A, false, 0, 0);
  advance(1200);
  uint64_t term = status(A).term;
  uint64_t c = raw_open(A, ATTACKER);
  raw_hello(c, ROLE_SUPER, "127.0.0.1:7999");
  claim(c, ATTACKER, ATTACKER, "127.0.0.1:7999", GROLE_LEADER, term + (1ull << 32), true, false);
  advance(500);
  assert_int_equal(status(A).role, SN_ROLE_LEADER);
  assert_true(status(A).term == term);
  assert_int_equal(status(A).members, 0);
}

/* In a network without a group key, the operator's certificates prove
 * membership: certified nodes form the group, a stranger cannot even link,
 * and a certified node's huge term is still refused. */
static void test_network_certificates_prove_membership(void **state)
{
  Identity netkey, ida, idb, idx;
  assert_true(identity_generate(&netkey));
  assert_true(identity_generate(&ida));
  assert_true(identity_generate(&idb));
  assert_true(identity_generate(&idx));
  start_in(A, false, 0, 0, &ida, &netkey);
  advance(1200);
  start_in(B, false, 0, 0, &idb, &netkey);
  link_nodes(B, A);
  advance(600);
  assert_int_equal(status(A).role, SN_ROLE_LEADER);
  assert_int_equal(status(B).role, SN_ROLE_BACKUP);
  assert_int_equal(status(A).members, 1);
  uint64_t term = status(A).term;
  /* A stranger without a certificate: closed before it can say anything. */
  uint64_t c = raw_open(A, idx.id);
  raw_hello(c, ROLE_SUPER, "");
  assert_false(end_of(c)->open);
  /* A certified node (a member, then) with a term beyond belief: refused. */
  Identity idc;
  assert_true(identity_generate(&idc));
  uint8_t cert[NETCERT_LEN];
  netcert_sign(&netkey, idc.pk, fake_unix() + 86400, cert);
  c = raw_open(A, idc.id);
  WireMsg h = {.type = MSG_HELLO};
  h.u.hello.role = ROLE_SUPER;
  h.u.hello.listen = wire_str("", 0);
  h.u.hello.agent = wire_str("test", 4);
  h.u.hello.cert = cert;
  h.u.hello.cert_len = sizeof cert;
  raw_send(c, &h);
  assert_true(end_of(c)->open);
  claim(c, idc.id, idc.id, "127.0.0.1:7999", GROLE_LEADER, HUGE_TERM, false, false);
  advance(300);
  assert_int_equal(status(A).role, SN_ROLE_LEADER);
  assert_true(status(A).term == term);
  assert_int_equal(status(A).claims_refused, 1);
  assert_int_equal(status(A).members, 1);
  identity_clear(&netkey);
}

/* --- finding 13: the takeover vote ---------------------------------------------- */

/* One leaf opening many watch sessions votes once. */
static void test_vote_counts_distinct_leaves(void **state)
{
  group_of_two(0);
  attach_leaf(0x41);
  attach_leaf(0x42);
  attach_leaf(0x43);
  advance(300);
  assert_int_equal(status(B).records, 3);
  uint64_t w1[3];
  for (int i = 0; i < 3; i++)
    w1[i] = watch(0x41, false); /* the same leaf, three times: "leader lost" */
  watch(0x42, true);
  watch(0x43, true);
  assert_false(end_of(w1[2])->closed_why);
  assert_non_null(end_of(w1[0])->closed_why); /* replaced */
  assert_non_null(end_of(w1[1])->closed_why);
  assert_int_equal(status(B).watchers, 3);
  cut(A, B); /* B loses its own link to A; the leaves still see A */
  advance(3000);
  assert_int_equal(status(B).role, SN_ROLE_BACKUP);
  assert_int_equal(status(B).takeovers, 0);
  /* A second leaf says the leader is lost: a strict majority of 3. */
  watch(0x42, false);
  advance(500);
  assert_int_equal(status(B).role, SN_ROLE_LEADER);
  assert_int_equal(status(B).takeovers, 1);
}

/* Watch sessions are capped (max_leaves), distinct leaves or not. */
static void test_watch_sessions_capped(void **state)
{
  group_of_two(2);
  uint64_t w1 = watch(0x41, true), w2 = watch(0x42, true), w3 = watch(0x43, true);
  assert_null(end_of(w1)->closed_why);
  assert_null(end_of(w2)->closed_why);
  assert_string_equal(end_of(w3)->closed_why, "too many watch sessions");
  assert_int_equal(status(B).watchers, 2);
  assert_int_equal(status(B).watchers_refused, 1);
  /* One goes: room for another. */
  raw_close(w1);
  uint64_t w4 = watch(0x44, true);
  assert_null(end_of(w4)->closed_why);
}

/* --- issue 12: at size ---------------------------------------------------------- */

/* The leader tells its leaves the group's view when it changes, not every
 * heartbeat (at 10,000 leaves that was 40,000 GROUP_STATEs a second). */
static void test_state_to_leaves_on_change_only(void **state)
{
  group_of_two(0);
  uint64_t l = attach_leaf(0x41);
  advance(500);
  unsigned got = end_of(l)->got_state;
  assert_true(got >= 1);
  advance(5000); /* 20 heartbeats, nothing changes */
  assert_int_equal(end_of(l)->got_state, got);
  cut(A, B); /* the backup is gone: the leaf must hear it */
  advance(500);
  assert_true(end_of(l)->got_state > got);
  assert_false(status(A).has_backup);
  got = end_of(l)->got_state;
  advance(5000);
  assert_int_equal(end_of(l)->got_state, got);
}

/* A backup that loses the leader asks its watchers whether they still see
 * it (leaves no longer ping at heartbeat rate): once the leader has been
 * silent a dead interval (a crash makes the leaves report unasked), again
 * only every PROBE_AGAIN dead intervals; never while the leader is heard. */
static void test_backup_asks_watchers(void **state)
{
  group_of_two(0);
  attach_leaf(0x41);
  attach_leaf(0x42);
  attach_leaf(0x43);
  advance(300);
  uint64_t w[3] = {watch(0x41, true), watch(0x42, true), watch(0x43, true)};
  advance(5000);
  for (int i = 0; i < 3; i++)
    assert_int_equal(end_of(w[i])->got_watch, 0);
  cut(A, B);
  advance(STEP_MS); /* a crash closes the leaves' sessions too: no question yet */
  assert_int_equal(end_of(w[0])->got_watch, 0);
  advance(1000); /* the leader silent for a dead interval (1 s): asked */
  for (int i = 0; i < 3; i++)
    assert_int_equal(end_of(w[i])->got_watch, 1);
  advance(1500); /* under two dead intervals (2 s): not again */
  assert_int_equal(end_of(w[0])->got_watch, 1);
  advance(600);
  assert_int_equal(end_of(w[0])->got_watch, 2);
  assert_int_equal(status(B).role, SN_ROLE_BACKUP); /* nobody said it is lost */
  assert_int_equal(status(B).probes, 2);
  /* Two of three answer "lost": a strict majority, the backup takes over. */
  WireMsg m = {.type = MSG_WATCH};
  m.u.watch.term = status(B).term;
  m.u.watch.leader_ok = false;
  raw_send(w[0], &m);
  advance(STEP_MS);
  assert_int_equal(status(B).role, SN_ROLE_BACKUP);
  raw_send(w[1], &m);
  advance(STEP_MS);
  assert_int_equal(status(B).role, SN_ROLE_LEADER);
}

/* A backup whose group got another leader (here a member that leads a
 * higher term, with the key: say the old leader hung and a third member
 * took over) tells its watchers at once: their leaves no longer hear a
 * leader every heartbeat, and nobody else would tell them. */
static void test_backup_tells_watchers_of_new_leader(void **state)
{
  group_of_two(0);
  attach_leaf(0x41);
  advance(300);
  uint64_t w = watch(0x41, true);
  advance(1000);
  unsigned got = end_of(w)->got_state;
  uint8_t m3[32];
  node_id(0x33, m3);
  uint64_t c = raw_open(B, m3);
  raw_hello(c, ROLE_SUPER, "127.0.0.1:7999");
  claim(c, m3, m3, "127.0.0.1:7999", GROLE_LEADER, status(B).term + (1ull << 32), true, false);
  assert_true(memcmp(status(B).leader, m3, 32) == 0);
  assert_true(end_of(w)->got_state > got);
}

/* A leaf's second session at its leader (it dialled the new leader and
 * also promoted its watch session there) replaces the first but keeps the
 * leaf's record and entries: ATTACHED then matches its manifest and it
 * does not re-publish. */
static void test_second_session_keeps_entries(void **state)
{
  group_of_two(0);
  uint8_t id[32];
  node_id(0x41, id);
  uint64_t c1 = raw_open(A, id);
  raw_hello(c1, ROLE_LEAF, "");
  WireEntry e = {.name = wire_str("alpha one", 9), .size = 1};
  memset(e.cid, 0x30, sizeof e.cid);
  WireMsg pub = {.type = MSG_PUBLISH};
  pub.u.publish.reset = true;
  pub.u.publish.count = 1;
  pub.u.publish.entries = &e;
  raw_send(c1, &pub);
  assert_int_equal(sn_core_leaf_entries(net.core[A], id), 1);
  uint64_t c2 = raw_open(A, id);
  raw_hello(c2, ROLE_LEAF, "");
  assert_false(end_of(c1)->open); /* replaced */
  assert_true(end_of(c2)->open);
  assert_int_equal(sn_core_leaf_entries(net.core[A], id), 1);
  assert_int_equal(status(A).records, 1);
}

/* --- snfix: shares after a step-down ------------------------------------------ */

/* A leader that steps down empties its index; its leaves' per-address
 * charges must go with it, not stay until each leaf's session closes. */
static void test_stepdown_releases_leaf_shares(void **state)
{
  group_of_two(0);
  uint8_t id[32];
  node_id(0x41, id);
  uint64_t c = raw_open(A, id);
  sn_core_set_source(net.core[A], c, "10.9.9.9");
  raw_hello(c, ROLE_LEAF, "");
  WireEntry e[3];
  const char *names[] = {"alpha one", "beta two", "gamma three"};
  for (int i = 0; i < 3; i++) {
    e[i] = (WireEntry){.name = wire_str(names[i], strlen(names[i])), .size = 1};
    memset(e[i].cid, 0x30 + i, sizeof e[i].cid);
  }
  WireMsg pub = {.type = MSG_PUBLISH};
  pub.u.publish.reset = true;
  pub.u.publish.count = 3;
  pub.u.publish.entries = e;
  raw_send(c, &pub);
  SnCore *core = net.core[A];
  assert_int_equal(budget_used_by(core->src_entries, "10.9.9.9", 8), 3);
  assert_true(budget_used_by(core->src_bytes, "10.9.9.9", 8) > 0);
  /* A member with the key and a newer term: A steps down. */
  uint64_t m = raw_open(A, ATTACKER);
  raw_hello(m, ROLE_SUPER, "127.0.0.1:7999");
  claim(m, ATTACKER, ATTACKER, "127.0.0.1:7999", GROLE_LEADER, status(A).term + (1ull << 32), true,
        false);
  assert_int_equal(status(A).role, SN_ROLE_STANDBY);
  assert_int_equal(status(A).records, 0);
  assert_true(end_of(c)->open); /* the leaf is told to go, not yet gone */
  assert_int_equal(budget_used(core->src_entries), 0);
  assert_int_equal(budget_used(core->src_bytes), 0);
  raw_close(c); /* and nothing is given back twice */
  assert_int_equal(budget_used(core->src_entries), 0);
  raw_close(m);
}

/* --- issue 12: failover at size --------------------------------------------------- */

#define MANY 40 /* leaves: a quarter (10) is above CLOSED_QUORUM_MIN, a majority is 21 */

static uint64_t many_watchers[MANY];

/* MANY leaves on A, each watching B. */
static void group_with_many(void)
{
  group_of_two(0);
  for (int i = 0; i < MANY; i++)
    attach_leaf((uint8_t)(0x80 + i));
  advance(300);
  assert_int_equal(status(B).records, MANY);
  for (int i = 0; i < MANY; i++)
    many_watchers[i] = watch((uint8_t)(0x80 + i), true);
  assert_int_equal(status(B).watchers, MANY);
}

static void report_lost(int from, int to)
{
  WireMsg m = {.type = MSG_WATCH};
  m.u.watch.term = status(B).term;
  m.u.watch.leader_ok = false;
  for (int i = from; i < to; i++)
    raw_send(many_watchers[i], &m);
}

/* The leader's link to the backup closes while the leader was heard (a
 * killed process resets it): a quarter of the roster reporting their own
 * sessions closed is enough; a few are not. */
static void test_closed_link_quorum(void **state)
{
  group_with_many();
  cut(A, B);
  report_lost(0, MANY / 4 - 1);
  advance(500);
  assert_int_equal(status(B).role, SN_ROLE_BACKUP);
  assert_int_equal(status(B).takeovers, 0);
  report_lost(MANY / 4 - 1, MANY / 4);
  advance(STEP_MS);
  assert_int_equal(status(B).role, SN_ROLE_LEADER);
  assert_int_equal(status(B).takeovers, 1);
}

/* The backup's own shell closed the link (the leader's output stalled, or
 * its bytes failed the channel): no evidence that the leader's process is
 * gone, so the quarter is not enough; a majority still is. */
static void test_closed_here_needs_majority(void **state)
{
  group_with_many();
  cut_how(A, B, true);
  report_lost(0, MANY / 2);
  advance(STEP_MS);
  assert_int_equal(status(B).role, SN_ROLE_BACKUP);
  assert_int_equal(status(B).takeovers, 0);
  report_lost(MANY / 2, MANY / 2 + 1);
  advance(STEP_MS);
  assert_int_equal(status(B).role, SN_ROLE_LEADER);
}

/* The smaller quorum holds only for a dead interval after the close (a
 * killed leader's leaves report at once): later reports, or reports that
 * stood from before (a Sybil's, a leaf that missed one probe), need the
 * strict majority, as silence does. */
static void test_closed_link_quorum_expires(void **state)
{
  group_with_many();
  cut(A, B);
  advance(1200);
  report_lost(0, MANY / 4);
  advance(STEP_MS);
  assert_int_equal(status(B).role, SN_ROLE_BACKUP);
  report_lost(MANY / 4, MANY / 2);
  advance(1000);
  assert_int_equal(status(B).role, SN_ROLE_BACKUP);
  assert_int_equal(status(B).takeovers, 0);
  report_lost(MANY / 2, MANY / 2 + 1);
  advance(STEP_MS);
  assert_int_equal(status(B).role, SN_ROLE_LEADER);
}

/* A hung leader only falls silent; the backup closes the link itself
 * after the dead interval, which is no evidence of a dead process: the
 * vote needs a strict majority, as before. */
static void test_silent_leader_needs_majority(void **state)
{
  group_with_many();
  net.hung[A] = true;
  advance(1500); /* the backup dropped the silent link and asked its watchers */
  assert_true(end_of(many_watchers[0])->got_watch >= 1);
  report_lost(0, MANY / 2);
  advance(3000);
  assert_int_equal(status(B).role, SN_ROLE_BACKUP);
  report_lost(MANY / 2, MANY / 2 + 1);
  advance(STEP_MS);
  assert_int_equal(status(B).role, SN_ROLE_LEADER);
}

/* A, B, C: A leads, B is its backup, C stands by; two leaves. */
static void group_of_three(uint64_t w[2])
{
  group_of_two(0);
  start(C, true, 0, 0);
  link_nodes(C, A);
  link_nodes(C, B);
  advance(600);
  assert_int_equal(status(C).role, SN_ROLE_STANDBY);
  attach_leaf(0x41);
  attach_leaf(0x42);
  advance(300);
  w[0] = watch(0x41, true);
  w[1] = watch(0x42, true);
  cut(A, B); /* A is killed: every link closes */
  cut(A, C);
  WireMsg m = {.type = MSG_WATCH};
  m.u.watch.term = status(B).term;
  m.u.watch.leader_ok = false;
  raw_send(w[0], &m);
  raw_send(w[1], &m);
  assert_int_equal(status(B).role, SN_ROLE_LEADER);
}

/* After a takeover the new leader names a backup only once its leaves
 * are back (their watch sessions promoted), so their watch handshakes do
 * not slow the move. */
static void test_takeover_backup_after_leaves(void **state)
{
  uint64_t w[2];
  group_of_three(w);
  advance(300);
  assert_false(status(B).has_backup);
  raw_hello(w[0], ROLE_LEAF, ""); /* the first leaf follows */
  advance(500);
  assert_false(status(B).has_backup);
  raw_hello(w[1], ROLE_LEAF, ""); /* and the second: every record has its leaf */
  advance(300);
  assert_true(status(B).has_backup);
  assert_memory_equal(status(B).backup, net.id[C], 32);
}

/* A leaf that never comes back holds the backup off only SETTLE_DEADS
 * dead intervals (2 s). */
static void test_takeover_backup_after_settle(void **state)
{
  uint64_t w[2];
  group_of_three(w);
  raw_hello(w[0], ROLE_LEAF, "");
  advance(1500);
  assert_false(status(B).has_backup);
  advance(800);
  assert_true(status(B).has_backup);
  assert_memory_equal(status(B).backup, net.id[C], 32);
}

/* Time passes for all but `busy`, whose timers do not run (a node handling
 * a burst of messages in one loop iteration). */
static void advance_except(int busy, uint64_t ms)
{
  for (uint64_t t = 0; t < ms; t += STEP_MS) {
    net.now += STEP_MS;
    for (int n = 0; n < MAX_NODES; n++)
      if (net.core[n] && !net.hung[n] && n != busy)
        sn_core_tick(net.core[n], net.now);
    pump();
  }
}

/* A backup busy with its watchers (no timer runs for 2 s, but it handles
 * a WATCH every 50 ms) still sends its heartbeat: the leader keeps it. */
static void test_busy_node_keeps_beating(void **state)
{
  group_of_two(0);
  attach_leaf(0x41);
  advance(300);
  uint64_t w = watch(0x41, true);
  WireMsg m = {.type = MSG_WATCH};
  m.u.watch.term = status(B).term;
  m.u.watch.leader_ok = true;
  for (int i = 0; i < 40; i++) {
    advance_except(B, STEP_MS);
    raw_send(w, &m);
  }
  assert_int_equal(status(A).members, 1);
  assert_true(status(A).has_backup);
  assert_memory_equal(status(A).backup, net.id[B], 32);
}

/* A node whose own tick comes late (it was stalled) does not judge its
 * members' silence on that tick: what they sent may wait unread in its
 * sockets. Silence seen on time is still judged. */
static void test_stalled_node_does_not_judge(void **state)
{
  start(A, true, 0, 0);
  advance(1200);
  assert_int_equal(status(A).role, SN_ROLE_LEADER);
  uint8_t mid[32];
  node_id(0x66, mid);
  uint64_t c = raw_open(A, mid);
  raw_hello(c, ROLE_SUPER, "127.0.0.1:7999");
  for (int i = 0; i < 4; i++) {
    claim(c, mid, net.id[A], net.addr[A], GROLE_STANDBY, status(A).term, true, false);
    advance(200);
  }
  assert_int_equal(status(A).members, 1);
  net.now += 1200; /* A stalled: no tick, nothing read */
  sn_core_tick(net.core[A], net.now);
  pump();
  assert_null(end_of(c)->closed_why);
  assert_int_equal(status(A).members, 1);
  claim(c, mid, net.id[A], net.addr[A], GROLE_STANDBY, status(A).term, true, false);
  advance(500);
  assert_null(end_of(c)->closed_why);
  advance(1500); /* the member falls silent while A runs on time */
  assert_string_equal(end_of(c)->closed_why, "group member silent");
}

int main(void)
{
  if (sodium_init() < 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_non_member_cannot_move_the_group, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stepdown_releases_leaf_shares, setup, teardown),
      cmocka_unit_test_setup_teardown(test_member_with_huge_term_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_member_at_the_ceiling_then_gone_recovers, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_hearsay_is_not_followed_nor_dialed_forever, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_saved_poison_discarded, setup, teardown),
      cmocka_unit_test_setup_teardown(test_without_proof_nobody_is_a_member, setup, teardown),
      cmocka_unit_test_setup_teardown(test_network_certificates_prove_membership, setup, teardown),
      cmocka_unit_test_setup_teardown(test_vote_counts_distinct_leaves, setup, teardown),
      cmocka_unit_test_setup_teardown(test_watch_sessions_capped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_state_to_leaves_on_change_only, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backup_asks_watchers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backup_tells_watchers_of_new_leader, setup, teardown),
      cmocka_unit_test_setup_teardown(test_second_session_keeps_entries, setup, teardown),
      cmocka_unit_test_setup_teardown(test_closed_link_quorum, setup, teardown),
      cmocka_unit_test_setup_teardown(test_closed_here_needs_majority, setup, teardown),
      cmocka_unit_test_setup_teardown(test_closed_link_quorum_expires, setup, teardown),
      cmocka_unit_test_setup_teardown(test_silent_leader_needs_majority, setup, teardown),
      cmocka_unit_test_setup_teardown(test_takeover_backup_after_leaves, setup, teardown),
      cmocka_unit_test_setup_teardown(test_takeover_backup_after_settle, setup, teardown),
      cmocka_unit_test_setup_teardown(test_busy_node_keeps_beating, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stalled_node_does_not_judge, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
