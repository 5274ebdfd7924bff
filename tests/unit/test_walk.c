/* test_walk.c - random walks over the mesh (supernode/walk.h) and the
 * WALK / WALK_REPLY codec: budgets with a fake clock, path checks, the
 * forward and the way back, the endpoint's memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "walk.h"
#include "wire.h"

static void id_of(uint8_t id[WIRE_ID_LEN], uint8_t n)
{
  memset(id, n, WIRE_ID_LEN);
}

static WireMsg walk_msg(uint8_t *path, size_t n, uint8_t hops)
{
  WireMsg m = {.type = MSG_WALK};
  for (size_t i = 0; i < n; i++)
    id_of(path + i * WIRE_ID_LEN, (uint8_t)(i + 1));
  m.u.walk.id = 0x0102030405060708ULL;
  m.u.walk.hops_left = hops;
  m.u.walk.path_len = (uint8_t)n;
  m.u.walk.path = path;
  return m;
}

/* encode -> decode -> same fields; every shorter prefix fails. */
static void roundtrip(const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  assert_true(wire_encode(m, &b));
  WireMsg d;
  assert_int_equal(wire_decode(b.data, b.len, &d), WIRE_OK);
  assert_int_equal(d.type, m->type);
  assert_true(d.u.walk.id == m->u.walk.id);
  assert_int_equal(d.u.walk.hops_left, m->u.walk.hops_left);
  assert_int_equal(d.u.walk.path_len, m->u.walk.path_len);
  assert_memory_equal(d.u.walk.path, m->u.walk.path, (size_t)m->u.walk.path_len * WIRE_ID_LEN);
  if (m->type == MSG_WALK_REPLY) {
    assert_memory_equal(d.u.walk.end.id, m->u.walk.end.id, WIRE_ID_LEN);
    assert_int_equal(d.u.walk.end.addr.len, m->u.walk.end.addr.len);
    assert_memory_equal(d.u.walk.end.addr.p, m->u.walk.end.addr.p, m->u.walk.end.addr.len);
    assert_int_equal(d.u.walk.end.link_load, m->u.walk.end.link_load);
  }
  wire_msg_clear(&d);
  for (size_t len = 0; len < b.len; len++) {
    WireMsg t;
    assert_int_not_equal(wire_decode(b.data, len, &t), WIRE_OK);
  }
  buf_free(&b);
}

static void test_codec(void **state)
{
  (void)state;
  uint8_t path[WIRE_MAX_WALK * WIRE_ID_LEN];
  WireMsg m = walk_msg(path, 1, WALK_HOPS - 1);
  roundtrip(&m);
  m = walk_msg(path, WIRE_MAX_WALK, 0);
  roundtrip(&m);
  WireMsg r = walk_msg(path, 3, 0);
  r.type = MSG_WALK_REPLY;
  id_of(r.u.walk.end.id, 9);
  r.u.walk.end.addr = wire_str("127.0.0.1:4000", 14);
  r.u.walk.end.leaf_load = WIRE_LOAD_UNKNOWN;
  r.u.walk.end.link_load = 50;
  roundtrip(&r);
  assert_string_equal(wire_type_str(MSG_WALK), "WALK");
  assert_string_equal(wire_type_str(MSG_WALK_REPLY), "WALK_REPLY");

  /* Caps: no empty path, path + hops within WIRE_MAX_WALK, a load in range,
   * an address present; the encoder refuses what the decoder would. */
  Buf b;
  buf_init(&b);
  m = walk_msg(path, 0, 1);
  assert_false(wire_encode(&m, &b));
  m = walk_msg(path, 3, WIRE_MAX_WALK - 2);
  assert_false(wire_encode(&m, &b));
  r.u.walk.end.link_load = 101;
  assert_false(wire_encode(&r, &b));
  r.u.walk.end.link_load = 0;
  r.u.walk.end.addr = wire_str("", 0);
  assert_false(wire_encode(&r, &b));
  assert_int_equal(b.len, 0);

  /* LINKS: up to WIRE_MAX_LINKS ids, none at all too. */
  uint8_t ids[(WIRE_MAX_LINKS + 1) * WIRE_ID_LEN];
  memset(ids, 7, sizeof ids);
  WireMsg l = {.type = MSG_LINKS};
  for (unsigned n = 0; n <= WIRE_MAX_LINKS; n += WIRE_MAX_LINKS / 4) {
    l.u.nbrs.count = (uint8_t)n;
    l.u.nbrs.ids = ids;
    Buf lb;
    buf_init(&lb);
    assert_true(wire_encode(&l, &lb));
    WireMsg d2;
    assert_int_equal(wire_decode(lb.data, lb.len, &d2), WIRE_OK);
    assert_int_equal(d2.u.nbrs.count, n);
    if (n)
      assert_memory_equal(d2.u.nbrs.ids, ids, n * WIRE_ID_LEN);
    wire_msg_clear(&d2);
    for (size_t len = 0; len < lb.len; len++)
      assert_int_not_equal(wire_decode(lb.data, len, &d2), WIRE_OK);
    buf_free(&lb);
  }
  l.u.nbrs.count = WIRE_MAX_LINKS + 1;
  assert_false(wire_encode(&l, &b));
  uint8_t over[3 + (WIRE_MAX_LINKS + 1) * WIRE_ID_LEN] = {WIRE_VERSION, MSG_LINKS,
                                                          WIRE_MAX_LINKS + 1};
  WireMsg d3;
  assert_int_equal(wire_decode(over, sizeof over, &d3), WIRE_ELIMIT);

  /* The same from hand-made bytes. */
  uint8_t raw[2 + 8 + 1 + 1 + 32] = {WIRE_VERSION, MSG_WALK};
  raw[10] = 3; /* hops_left */
  raw[11] = 1; /* path_len */
  WireMsg d;
  assert_int_equal(wire_decode(raw, sizeof raw, &d), WIRE_OK);
  wire_msg_clear(&d);
  raw[10] = WIRE_MAX_WALK; /* 1 + 8 > WIRE_MAX_WALK */
  assert_int_equal(wire_decode(raw, sizeof raw, &d), WIRE_ELIMIT);
  raw[10] = 0;
  raw[11] = 0;
  assert_int_equal(wire_decode(raw, sizeof raw, &d), WIRE_ELIMIT);
  raw[11] = 200; /* declares more ids than were sent */
  assert_int_not_equal(wire_decode(raw, sizeof raw, &d), WIRE_OK);
  raw[11] = 1;
  uint8_t longer[sizeof raw + 1];
  memcpy(longer, raw, sizeof raw);
  longer[sizeof raw] = 0; /* trailing byte */
  assert_int_equal(wire_decode(longer, sizeof longer, &d), WIRE_ETRUNC);
  buf_free(&b);
}

/* Per-link and total budgets: a window of 1,000 ms on the fake clock. */
static void test_budget(void **state)
{
  (void)state;
  WalkBudget b = {0};
  uint64_t now = 5000;
  for (unsigned i = 0; i < WALK_LINK_BURST; i++)
    assert_true(walk_budget_take(&b, WALK_LINK_BURST, now + i));
  assert_false(walk_budget_take(&b, WALK_LINK_BURST, now + 10));
  assert_false(walk_budget_take(&b, WALK_LINK_BURST, now + 999));
  assert_true(walk_budget_take(&b, WALK_LINK_BURST, now + 1000));
  /* A clock that went back (never, monotonic; but no lock-out if it did). */
  assert_true(walk_budget_take(&b, WALK_LINK_BURST, 10));
}

static void test_step(void **state)
{
  (void)state;
  uint8_t path[WIRE_MAX_WALK * WIRE_ID_LEN], self[32], sender[32], other[32];
  id_of(self, 0x55);
  id_of(other, 0x66);
  WireMsg m = walk_msg(path, 2, 3);
  id_of(sender, 2); /* the path's last id */
  assert_int_equal(walk_step(&m, self, sender), WALK_FORWARD);
  /* A path that does not end with its sender is made up. */
  assert_int_equal(walk_step(&m, self, other), WALK_BAD);
  /* Our own walk back at us: nothing to link to. */
  uint8_t origin[32];
  id_of(origin, 1);
  assert_int_equal(walk_step(&m, origin, sender), WALK_BAD);
  m.u.walk.hops_left = 0;
  assert_int_equal(walk_step(&m, self, sender), WALK_END);

  /* Forwarded: self appended, one hop less, same id. */
  m.u.walk.hops_left = 3;
  uint8_t buf[WIRE_MAX_WALK * WIRE_ID_LEN];
  WireMsg out;
  walk_extend(&m, self, buf, &out);
  assert_int_equal(out.type, MSG_WALK);
  assert_int_equal(out.u.walk.path_len, 3);
  assert_int_equal(out.u.walk.hops_left, 2);
  assert_true(out.u.walk.id == m.u.walk.id);
  assert_memory_equal(out.u.walk.path + 2 * WIRE_ID_LEN, self, WIRE_ID_LEN);
  assert_memory_equal(out.u.walk.path, path, 2 * WIRE_ID_LEN);
  /* The next node sees a well-formed walk from us. */
  assert_int_equal(walk_step(&out, other, self), WALK_FORWARD);
}

static void test_pick(void **state)
{
  (void)state;
  uint8_t path[WIRE_MAX_WALK * WIRE_ID_LEN];
  WireMsg m = walk_msg(path, 2, 3); /* path: ids 1, 2 */
  uint8_t ids[4][WIRE_ID_LEN];
  id_of(ids[0], 2); /* the sender */
  id_of(ids[1], 1); /* on the path */
  id_of(ids[2], 7);
  id_of(ids[3], 8);
  uint8_t from[32];
  id_of(from, 2);
  /* Off the path only, and every such link taken for some rnd. */
  unsigned seen[4] = {0};
  for (uint32_t r = 0; r < 64; r++)
    seen[walk_pick(&m, (const uint8_t(*)[WIRE_ID_LEN])ids, 4, from, r)]++;
  assert_int_equal(seen[0], 0);
  assert_int_equal(seen[1], 0);
  assert_true(seen[2] > 0 && seen[3] > 0);
  /* Only the sender and the origin left: none (the walk ends here). */
  assert_int_equal(walk_pick(&m, (const uint8_t(*)[WIRE_ID_LEN])ids, 2, from, 0), 2);
  /* Only path nodes left: anything but the sender and the origin. */
  uint8_t path3[3 * WIRE_ID_LEN];
  WireMsg m3 = walk_msg(path3, 3, 2); /* path: ids 1, 2, 3 */
  uint8_t from3[32];
  id_of(from3, 3);
  uint8_t ids3[3][WIRE_ID_LEN];
  id_of(ids3[0], 3);
  id_of(ids3[1], 1);
  id_of(ids3[2], 2);
  for (uint32_t r = 0; r < 8; r++)
    assert_int_equal(walk_pick(&m3, (const uint8_t(*)[WIRE_ID_LEN])ids3, 3, from3, r), 2);
  /* Only the sender: none (the walk ends here). */
  assert_int_equal(walk_pick(&m, (const uint8_t(*)[WIRE_ID_LEN])ids, 1, from, 0), 1);
}

/* The way back: each node pops itself and sends to the id before it; the
 * origin knows the reply as its own; a reply for someone else is dropped. */
static void test_reply_route(void **state)
{
  (void)state;
  uint8_t path[WIRE_MAX_WALK * WIRE_ID_LEN];
  WireMsg w = walk_msg(path, 3, 0); /* origin 1, via 2, sender 3 */
  WireHost end = {.leaf_load = 0, .link_load = 50};
  id_of(end.id, 9);
  end.addr = wire_str("127.0.0.1:9", 11);
  WireMsg r;
  walk_reply(&w, &end, &r);
  assert_int_equal(r.type, MSG_WALK_REPLY);
  assert_int_equal(r.u.walk.path_len, 3);

  uint8_t n1[32], n2[32], n3[32], x[32];
  id_of(n1, 1);
  id_of(n2, 2);
  id_of(n3, 3);
  id_of(x, 0x77);
  WireMsg out;
  const uint8_t *next = NULL;
  assert_int_equal(walk_on_reply(&r, x, &out, &next), WALK_REPLY_BAD);
  assert_int_equal(walk_on_reply(&r, n2, &out, &next), WALK_REPLY_BAD);
  assert_int_equal(walk_on_reply(&r, n3, &out, &next), WALK_REPLY_BACK);
  assert_memory_equal(next, n2, 32);
  assert_int_equal(out.u.walk.path_len, 2);
  WireMsg out2;
  assert_int_equal(walk_on_reply(&out, n2, &out2, &next), WALK_REPLY_BACK);
  assert_memory_equal(next, n1, 32);
  assert_int_equal(walk_on_reply(&out2, n1, &out, &next), WALK_REPLY_ORIGIN);
  assert_memory_equal(out2.u.walk.end.id, end.id, 32);
}

/* The endpoint remembers an origin for WALK_END_MEMORY_MS, once, and at
 * most WALK_ENDS of them. */
static void test_ends(void **state)
{
  (void)state;
  WalkEnds e = {0};
  uint8_t a[32], b[32];
  id_of(a, 1);
  id_of(b, 2);
  uint64_t now = 1000;
  walk_ends_add(&e, a, now);
  assert_false(walk_ends_take(&e, b, now));
  assert_true(walk_ends_take(&e, a, now + WALK_END_MEMORY_MS - 1));
  assert_false(walk_ends_take(&e, a, now + 1)); /* once */
  walk_ends_add(&e, a, now);
  assert_false(walk_ends_take(&e, a, now + WALK_END_MEMORY_MS));
  /* The ring: the oldest goes first. */
  walk_ends_add(&e, a, now);
  for (uint8_t i = 0; i < WALK_ENDS; i++) {
    uint8_t o[32];
    id_of(o, (uint8_t)(10 + i));
    walk_ends_add(&e, o, now);
  }
  assert_false(walk_ends_take(&e, a, now));
  uint8_t last[32];
  id_of(last, (uint8_t)(10 + WALK_ENDS - 1));
  assert_true(walk_ends_take(&e, last, now));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_codec), cmocka_unit_test(test_budget),      cmocka_unit_test(test_step),
      cmocka_unit_test(test_pick),  cmocka_unit_test(test_reply_route), cmocka_unit_test(test_ends),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
