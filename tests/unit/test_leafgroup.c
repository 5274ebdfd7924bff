/* test_leafgroup.c - whom a leaf follows to another term (leafnode/leafcore.c,
 * GROUPS.md "Leaves"), with a fake clock: only its leader and the members
 * that leader listed, only believable terms, and a claim that never
 * materialises expires. The test plays the shell and the super nodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "buf.h"
#include "leafcore.h"
#include "term.h"
#include "wire.h"

#define T0 1000000u
#define UNIX_BASE 1800000000ull
#define HOME "127.0.0.1:7401"
#define B_ADDR "127.0.0.1:7402"

static const uint8_t L_ID[32] = {0x10, 0x10, 0x10, 0x10};
static const uint8_t B_ID[32] = {0x20, 0x20, 0x20, 0x20};
static const uint8_t X_ID[32] = {0x01, 0x01, 0x01, 0x01}; /* not a member */
static const uint8_t F_ID[32] = {0x30, 0x30, 0x30, 0x30}; /* named, never leads */

static uint64_t now_ms;
/* The members' addresses the next GROUP_STATE lists (ids L_ID, B_ID). */
static const char *maddr[2] = {HOME, B_ADDR};

static uint64_t fake_unix(void)
{
  return UNIX_BASE + now_ms / 1000;
}

static void rng_fill(uint8_t *out, size_t n, void *ctx)
{
  memset(out, 0x80, n);
}

typedef struct {
  LeafCore *core;
  char last_dial[2][130]; /* per slot */
  unsigned dials[2];
  unsigned swaps;
  /* Sent, per slot: PINGs, WATCHes (and what the last one said), CLOSEs. */
  unsigned pings[2], watches[2], closes[2];
  bool last_watch_ok;
} Fix;

static void drain(Fix *f)
{
  LeafAction a;
  while (leaf_core_next_action(f->core, &a)) {
    if (a.kind == LEAF_ACT_DIAL) {
      g_strlcpy(f->last_dial[a.slot], a.addr, sizeof f->last_dial[0]);
      f->dials[a.slot]++;
    } else if (a.kind == LEAF_ACT_SWAP) {
      f->swaps++;
    } else if (a.kind == LEAF_ACT_CLOSE) {
      f->closes[a.slot]++;
    } else if (a.kind == LEAF_ACT_SEND) {
      WireMsg m;
      assert_int_equal(wire_decode(a.data, a.len, &m), WIRE_OK);
      if (m.type == MSG_PING)
        f->pings[a.slot]++;
      if (m.type == MSG_WATCH) {
        f->watches[a.slot]++;
        f->last_watch_ok = m.u.watch.leader_ok;
      }
      wire_msg_clear(&m);
    }
    leaf_action_clear(&a);
  }
}

static void feed(Fix *f, LeafSlot slot, const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  assert_true(wire_encode(m, &b));
  leaf_core_recv(f->core, slot, b.data, b.len, now_ms);
  buf_free(&b);
  drain(f);
}

/* A GROUP_STATE naming leader (at its address) and backup B, members L and B. */
static void state(Fix *f, LeafSlot slot, uint64_t term, const uint8_t leader[32],
                  const char *leader_addr)
{
  WireMsg m = {.type = MSG_GROUP_STATE};
  m.u.group.role = GROLE_LEADER;
  m.u.group.group = wire_str("g1", 2);
  m.u.group.term = term;
  m.u.group.hb_ms = 250;
  memcpy(m.u.group.leader, leader, 32);
  m.u.group.leader_addr = wire_str(leader_addr, strlen(leader_addr));
  memcpy(m.u.group.backup, B_ID, 32);
  m.u.group.backup_addr = wire_str(B_ADDR, strlen(B_ADDR));
  WirePeer members[2] = {{.addr = wire_str(maddr[0], strlen(maddr[0]))},
                         {.addr = wire_str(maddr[1], strlen(maddr[1]))}};
  memcpy(members[0].id, L_ID, 32);
  memcpy(members[1].id, B_ID, 32);
  m.u.group.n_members = 2;
  m.u.group.members = members;
  feed(f, slot, &m);
}

static LeafGroupStatus gstatus(Fix *f)
{
  LeafGroupStatus st;
  leaf_core_group_status(f->core, &st);
  return st;
}

#define TERM1 (1ull << 32 | 0x10101010)

/* Attached to L (term TERM1), watching B. */
static Fix *attached(void)
{
  now_ms = T0;
  maddr[0] = HOME;
  maddr[1] = B_ADDR;
  Fix *f = g_new0(Fix, 1);
  LeafConfig cfg;
  leaf_config_defaults(&cfg);
  cfg.supernode = HOME;
  cfg.unix_now = fake_unix;
  f->core = leaf_core_new(&cfg, rng_fill, NULL);
  leaf_core_start(f->core, now_ms);
  drain(f);
  leaf_core_connected(f->core, LEAF_SLOT_PRIMARY, L_ID, now_ms);
  state(f, LEAF_SLOT_PRIMARY, TERM1, L_ID, HOME);
  WireMsg att = {.type = MSG_ATTACHED};
  att.u.attached.term = TERM1;
  feed(f, LEAF_SLOT_PRIMARY, &att);
  assert_true(leaf_core_is_connected(f->core));
  /* The watch session follows, 250 ms to 2.25 s later (spread: after a
   * takeover every leaf dials the new backup). */
  assert_int_equal(f->dials[LEAF_SLOT_WATCH], 0);
  uint64_t t = now_ms;
  while (f->dials[LEAF_SLOT_WATCH] == 0 && now_ms - t <= 2250) {
    now_ms = MAX(now_ms + 1, MIN(leaf_core_next_deadline(f->core), t + 2300));
    leaf_core_tick(f->core, now_ms);
    drain(f);
  }
  assert_true(now_ms - t >= 250 && now_ms - t <= 2250);
  assert_string_equal(f->last_dial[LEAF_SLOT_WATCH], B_ADDR);
  return f;
}

static void done(Fix *f)
{
  leaf_core_free(f->core);
  g_free(f);
}

/* A stranger holding the backup's address (the watch session reached node
 * X) says it leads a higher term: ignored. */
static void test_stranger_cannot_redirect(void **state_)
{
  Fix *f = attached();
  leaf_core_connected(f->core, LEAF_SLOT_WATCH, X_ID, now_ms);
  drain(f);
  unsigned dials = f->dials[LEAF_SLOT_PRIMARY];
  state(f, LEAF_SLOT_WATCH, TERM1 + (5ull << 32), X_ID, "10.6.6.6:7400");
  assert_true(gstatus(f).term == TERM1);
  assert_true(leaf_core_is_connected(f->core));
  assert_int_equal(f->dials[LEAF_SLOT_PRIMARY], dials);
  assert_int_equal(f->swaps, 0);
  assert_int_equal(gstatus(f).claims_refused, 1);
  done(f);
}

/* The backup (a member our leader listed) takes over: followed at once. */
static void test_member_takeover_followed(void **state_)
{
  Fix *f = attached();
  leaf_core_connected(f->core, LEAF_SLOT_WATCH, B_ID, now_ms);
  drain(f);
  state(f, LEAF_SLOT_WATCH, TERM1 + (1ull << 32), B_ID, B_ADDR);
  assert_true(gstatus(f).term == TERM1 + (1ull << 32));
  assert_int_equal(f->swaps, 1);
  done(f);
}

/* Even our own leader cannot move us to a term beyond belief. */
static void test_unbelievable_term_refused(void **state_)
{
  Fix *f = attached();
  uint64_t probes[] = {0xFFFFFFFF00000001ull, UINT64_MAX, 1ull << 63,
                       (fake_unix() + TERM_AHEAD_S + 1) << 32};
  for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
    state(f, LEAF_SLOT_PRIMARY, probes[i], B_ID, B_ADDR);
    assert_true(gstatus(f).term == TERM1);
    assert_true(leaf_core_is_connected(f->core));
  }
  done(f);
}

/* A member names a leader that never takes us: after LEAF_CLAIM_MS the
 * leaf forgets the term and goes back to its configured super node, whose
 * lower term it then follows again. */
static void test_claim_that_never_materialises_expires(void **state_)
{
  Fix *f = attached();
  leaf_core_connected(f->core, LEAF_SLOT_WATCH, B_ID, now_ms);
  drain(f);
  uint64_t fake = TERM1 + (3ull << 32);
  maddr[0] = "10.7.7.8:7400"; /* the claim lists members of its own */
  maddr[1] = "10.7.7.9:7400";
  state(f, LEAF_SLOT_WATCH, fake, F_ID, "10.7.7.7:7400");
  assert_true(gstatus(f).term == fake);
  assert_string_equal(f->last_dial[LEAF_SLOT_PRIMARY], "10.7.7.7:7400");
  /* Every dial fails (home's too: say it is down for now). */
  uint64_t claimed = now_ms;
  for (int i = 0; i < 300 && gstatus(f).term != TERM1; i++) {
    now_ms += 100;
    leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, now_ms);
    leaf_core_tick(f->core, now_ms);
    drain(f);
  }
  assert_true(gstatus(f).term == TERM1);
  assert_true(now_ms - claimed >= 10000 && now_ms - claimed <= 10100);
  /* The next dial goes home, or to a member of the leader that last took
   * us: never to the claim's. */
  for (int k = 0; k < 4; k++) { /* and the next few, failing */
    f->dials[LEAF_SLOT_PRIMARY] = 0;
    for (int i = 0; i < 600 && f->dials[LEAF_SLOT_PRIMARY] == 0; i++) {
      now_ms += 100;
      leaf_core_tick(f->core, now_ms);
      drain(f);
    }
    assert_true(strcmp(f->last_dial[LEAF_SLOT_PRIMARY], HOME) == 0 ||
                strcmp(f->last_dial[LEAF_SLOT_PRIMARY], B_ADDR) == 0);
    if (k < 3)
      leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, now_ms);
  }
  maddr[0] = HOME;
  maddr[1] = B_ADDR;
  /* Home is the real leader, still at TERM1: the leaf attaches again. */
  leaf_core_connected(f->core, LEAF_SLOT_PRIMARY, L_ID, now_ms);
  state(f, LEAF_SLOT_PRIMARY, TERM1, L_ID, HOME);
  WireMsg att = {.type = MSG_ATTACHED};
  att.u.attached.term = TERM1;
  feed(f, LEAF_SLOT_PRIMARY, &att);
  assert_true(leaf_core_is_connected(f->core));
  done(f);
}

/* Runs the leaf's clock forward to `until`, tick by tick as the shell
 * would (at its deadline, or every 10 ms at most). */
static void run_until(Fix *f, uint64_t until)
{
  while (now_ms < until) {
    uint64_t t = leaf_core_next_deadline(f->core);
    now_ms = MIN(until, MAX(now_ms + 1, MIN(t, now_ms + 10)));
    leaf_core_tick(f->core, now_ms);
    drain(f);
  }
}

/* A PONG from the leader: anything it sends is life. */
static void pong(Fix *f)
{
  WireMsg m = {.type = MSG_PONG};
  feed(f, LEAF_SLOT_PRIMARY, &m);
}

static void probe(Fix *f)
{
  WireMsg m = {.type = MSG_WATCH};
  m.u.watch.term = TERM1;
  feed(f, LEAF_SLOT_WATCH, &m);
}

/* At size (GROUPS.md): in a group the leaf pings its leader at its
 * keepalive (5 s), not at the group's 250 ms heartbeat, and says nothing
 * to the backup while nothing changes: 10,000 leaves at heartbeat rate
 * were 80,000 messages a second. */
static void test_keepalive_not_heartbeat(void **state_)
{
  Fix *f = attached();
  leaf_core_connected(f->core, LEAF_SLOT_WATCH, B_ID, now_ms);
  drain(f);
  assert_int_equal(f->watches[LEAF_SLOT_WATCH], 1); /* leader_ok, once admitted */
  assert_true(f->last_watch_ok);
  uint64_t t0 = now_ms;
  for (int s = 1; s <= 10; s++) { /* the leader answers every PING */
    run_until(f, t0 + s * 1000);
    pong(f);
  }
  /* 10 s: two keepalive PINGs (5 s, 10 s), not 40 heartbeat PINGs. */
  assert_in_range(f->pings[LEAF_SLOT_PRIMARY], 1, 2);
  assert_int_equal(f->watches[LEAF_SLOT_WATCH], 1);
  assert_true(leaf_core_is_connected(f->core));
  done(f);
}

/* The backup lost the leader and asks: the leaf pings its leader at once;
 * a leader that answers keeps it (nothing said to the backup), one that
 * stays silent for 2 heartbeats (500 ms) is lost: the primary closes and
 * the backup hears leader_ok = false at once. */
static void test_backup_question(void **state_)
{
  Fix *f = attached();
  leaf_core_connected(f->core, LEAF_SLOT_WATCH, B_ID, now_ms);
  drain(f);
  run_until(f, now_ms + 1000);
  pong(f);
  unsigned pings = f->pings[LEAF_SLOT_PRIMARY], watches = f->watches[LEAF_SLOT_WATCH];
  probe(f);
  assert_int_equal(f->pings[LEAF_SLOT_PRIMARY], pings + 1); /* asked at once */
  run_until(f, now_ms + 100);
  pong(f); /* alive */
  run_until(f, now_ms + 2000);
  assert_true(leaf_core_is_connected(f->core));
  assert_int_equal(f->closes[LEAF_SLOT_PRIMARY], 0);
  assert_int_equal(f->watches[LEAF_SLOT_WATCH], watches);
  /* Asked again; this time the leader is hung. */
  probe(f);
  uint64_t asked = now_ms;
  run_until(f, asked + 499);
  assert_true(leaf_core_is_connected(f->core));
  run_until(f, asked + 510);
  assert_false(leaf_core_is_connected(f->core));
  assert_int_equal(f->closes[LEAF_SLOT_PRIMARY], 1);
  assert_int_equal(f->watches[LEAF_SLOT_WATCH], watches + 1);
  assert_false(f->last_watch_ok);
  /* Asked once more while without a leader: the backup has our word
   * already, nothing more is said. */
  probe(f);
  assert_int_equal(f->watches[LEAF_SLOT_WATCH], watches + 1);
  done(f);
}

/* A WATCH on the primary session (the leader has no business asking) is
 * ignored. */
static void test_question_only_from_backup(void **state_)
{
  Fix *f = attached();
  leaf_core_connected(f->core, LEAF_SLOT_WATCH, B_ID, now_ms);
  drain(f);
  unsigned pings = f->pings[LEAF_SLOT_PRIMARY];
  WireMsg m = {.type = MSG_WATCH};
  feed(f, LEAF_SLOT_PRIMARY, &m);
  run_until(f, now_ms + 1000);
  assert_true(leaf_core_is_connected(f->core));
  assert_int_equal(f->pings[LEAF_SLOT_PRIMARY], pings);
  done(f);
}

/* A member at our term that names no leader (it restarted and is still
 * joining: the leaf reached it on the watch session) does not make the
 * leaf forget its leader; the leader is still heard. */
static void test_leaderless_view_ignored(void **state_)
{
  Fix *f = attached();
  leaf_core_connected(f->core, LEAF_SLOT_WATCH, B_ID, now_ms);
  drain(f);
  WireMsg m = {.type = MSG_GROUP_STATE};
  m.u.group.role = GROLE_JOINING;
  m.u.group.group = wire_str("g1", 2);
  m.u.group.term = TERM1;
  m.u.group.hb_ms = 250;
  WirePeer self = {.addr = wire_str(B_ADDR, strlen(B_ADDR))};
  memcpy(self.id, B_ID, 32);
  m.u.group.n_members = 1;
  m.u.group.members = &self;
  feed(f, LEAF_SLOT_WATCH, &m);
  assert_int_equal(gstatus(f).n_members, 2); /* the view stands */
  /* Our leader, at a higher term, is still followed. */
  unsigned refused = gstatus(f).claims_refused;
  state(f, LEAF_SLOT_PRIMARY, TERM1 + (1ull << 32), L_ID, HOME);
  assert_true(gstatus(f).term == TERM1 + (1ull << 32));
  assert_int_equal(gstatus(f).claims_refused, refused);
  done(f);
}

/* A leaf that loses its leader while it watches the backup waits two
 * dead intervals (8 heartbeats, 2 s) for the group's verdict before
 * redialling the leader; the backup's takeover comes on the session it
 * has. */
static void test_lost_leader_waits_for_verdict(void **state_)
{
  Fix *f = attached();
  leaf_core_connected(f->core, LEAF_SLOT_WATCH, B_ID, now_ms);
  drain(f);
  unsigned dials = f->dials[LEAF_SLOT_PRIMARY];
  uint64_t lost = now_ms;
  leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, now_ms); /* the leader was killed */
  drain(f);
  assert_false(f->last_watch_ok); /* the backup heard it at once */
  run_until(f, lost + 1990);
  assert_int_equal(f->dials[LEAF_SLOT_PRIMARY], dials);
  run_until(f, lost + 2400);
  assert_int_equal(f->dials[LEAF_SLOT_PRIMARY], dials + 1);
  assert_string_equal(f->last_dial[LEAF_SLOT_PRIMARY], HOME);
  done(f);
}

/* Without a watch session there is nobody to wait for: the ordinary
 * back-off (250 ms, +-25%). */
static void test_lost_leader_unwatched_redials(void **state_)
{
  Fix *f = attached();
  unsigned dials = f->dials[LEAF_SLOT_PRIMARY];
  uint64_t lost = now_ms;
  leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, now_ms);
  drain(f);
  run_until(f, lost + 400);
  assert_int_equal(f->dials[LEAF_SLOT_PRIMARY], dials + 1);
  done(f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stranger_cannot_redirect),
      cmocka_unit_test(test_member_takeover_followed),
      cmocka_unit_test(test_unbelievable_term_refused),
      cmocka_unit_test(test_claim_that_never_materialises_expires),
      cmocka_unit_test(test_keepalive_not_heartbeat),
      cmocka_unit_test(test_backup_question),
      cmocka_unit_test(test_question_only_from_backup),
      cmocka_unit_test(test_leaderless_view_ignored),
      cmocka_unit_test(test_lost_leader_waits_for_verdict),
      cmocka_unit_test(test_lost_leader_unwatched_redials),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
