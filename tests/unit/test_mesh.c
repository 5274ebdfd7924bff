/* test_mesh.c - the address book: verified-only gossip, probes of HELLO
 * claims, eviction, and the caps per prefix, per source and in total.
 * Time is a plain number passed in (the fake clock). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mesh.h"

static const uint8_t SELF[32] = {0x01};

static void id_of(int n, uint8_t id[32])
{
  memset(id, 0x55, 32);
  id[0] = (uint8_t)(n >> 8);
  id[1] = (uint8_t)n;
}

static bool never_linked(const uint8_t id[32], void *ctx)
{
  (void)id;
  (void)ctx;
  return false;
}

static bool all_linked(const uint8_t id[32], void *ctx)
{
  (void)id;
  (void)ctx;
  return true;
}

static size_t sample(Mesh *m, const MeshAddr **out)
{
  return mesh_sample(m, NULL, out, 64);
}

static MeshStats stats(const Mesh *m)
{
  MeshStats s;
  mesh_stats(m, &s);
  return s;
}

/* Gossip and claims are never passed on; a dial that completes is. */
static void test_only_verified_is_gossiped(void **state)
{
  (void)state;
  Mesh *m = mesh_new(SELF, 500, 30000);
  const MeshAddr *out[64];
  uint8_t a[32], b[32];
  id_of(1, a);
  id_of(2, b);
  assert_non_null(mesh_learn_from(m, "10.0.0.1:4000", a, 7));
  assert_non_null(mesh_claim(m, "10.0.0.2:4000", b, 9));
  assert_int_equal(sample(m, out), 0);

  /* A dial of the gossiped address answers as node b, not a: b is proven. */
  MeshAddr *d = mesh_next_dial(m, true, never_linked, NULL, 0);
  assert_non_null(d);
  char dialled[MESH_ADDR_MAX + 1];
  strcpy(dialled, d->addr);
  mesh_dial_succeeded(m, dialled, strcmp(dialled, "10.0.0.1:4000") == 0 ? b : a, 11);
  assert_int_equal(sample(m, out), 1);
  assert_string_equal(out[0]->addr, dialled);
  assert_true(out[0]->verified);

  /* A verified address that stops answering is no longer passed on. */
  mesh_link_down(m, 11, 100);
  assert_int_equal(sample(m, out), 1);
  mesh_dial_failed(m, dialled, 1000);
  assert_int_equal(sample(m, out), 0);
  mesh_free(m);
}

/* A neighbour's HELLO claim is probed even when no more links are wanted;
 * the probe's answer (the id the handshake proved) is what is recorded. */
static void test_hello_claim_is_probed(void **state)
{
  (void)state;
  Mesh *m = mesh_new(SELF, 500, 30000);
  const MeshAddr *out[64];
  uint8_t liar[32], honest[32];
  id_of(1, liar);
  id_of(2, honest);
  /* The liar (link 5) claims to listen where the honest node does. */
  mesh_claim(m, "10.0.0.9:4000", liar, 5);
  MeshAddr *p = mesh_next_dial(m, false, all_linked, NULL, 0);
  assert_non_null(p);
  assert_true(p->probing);
  assert_null(mesh_next_dial(m, false, all_linked, NULL, 0)); /* one at a time */
  assert_true(mesh_probe_done(m, "10.0.0.9:4000", honest, 0));
  assert_int_equal(sample(m, out), 1);
  assert_memory_equal(out[0]->id, honest, 32);
  assert_int_equal(stats(m).probes_ok, 1);

  /* Once proven, neither gossip nor another claim changes the id. */
  mesh_learn_from(m, "10.0.0.9:4000", liar, 6);
  mesh_claim(m, "10.0.0.9:4000", liar, 5);
  assert_int_equal(sample(m, out), 1);
  assert_memory_equal(out[0]->id, honest, 32);
  assert_null(mesh_next_dial(m, false, all_linked, NULL, 0));

  /* An ordinary dial is not a probe. */
  assert_false(mesh_probe_done(m, "10.0.0.9:4000", honest, 0));
  mesh_free(m);
}

/* A claim that never answers is probed with backoff, at most
 * MESH_PROBE_MAX_FAILURES times, and never passed on; its link going down
 * ends the claim. */
static void test_failed_probes_give_up(void **state)
{
  (void)state;
  Mesh *m = mesh_new(SELF, 500, 30000);
  const MeshAddr *out[64];
  uint8_t id[32];
  id_of(3, id);
  mesh_claim(m, "10.0.0.3:4000", id, 4);
  uint64_t now = 0;
  for (int i = 0; i < MESH_PROBE_MAX_FAILURES; i++) {
    MeshAddr *p = mesh_next_dial(m, false, all_linked, NULL, now);
    assert_non_null(p);
    assert_true(p->probing);
    mesh_dial_failed(m, p->addr, now);
    if (i == MESH_PROBE_MAX_FAILURES - 1)
      break;
    /* Backed off for backoff_min * 2^i, on the fake clock. */
    uint64_t due = now + (500u << i);
    assert_int_equal(mesh_next_attempt(m, false), due);
    assert_null(mesh_next_dial(m, false, all_linked, NULL, due - 1));
    now = due;
  }
  assert_int_equal(mesh_next_attempt(m, false), UINT64_MAX);
  assert_null(mesh_next_dial(m, false, all_linked, NULL, 10000000));
  assert_int_equal(sample(m, out), 0);
  assert_int_equal(stats(m).probes_bad, MESH_PROBE_MAX_FAILURES);
  mesh_free(m);
}

/* Full of unverified addresses, a newcomer evicts the one with the most
 * failed dials, then the least recently learned; verified working
 * addresses are never evicted, and when only they are left the newcomer is
 * refused. */
static void test_eviction_order(void **state)
{
  (void)state;
  Mesh *m = mesh_new(SELF, 500, 30000);
  char addr[64];
  for (int k = 0; k < MESH_MAX_ADDRS; k++) {
    snprintf(addr, sizeof addr, "%d.%d.0.1:4000", 11 + k / 200, k % 200);
    assert_non_null(mesh_learn(m, addr, NULL, false));
  }
  assert_int_equal(stats(m).size, MESH_MAX_ADDRS);
  /* 11.5.0.1 failed once: it goes first, before the oldest (11.0.0.1). */
  MeshAddr *f = mesh_find(m, "11.5.0.1:4000");
  f->dialing = true;
  mesh_dial_failed(m, "11.5.0.1:4000", 0);
  /* 11.1.0.1 is verified. */
  uint8_t id[32];
  id_of(9, id);
  mesh_dial_succeeded(m, "11.1.0.1:4000", id, 0);

  assert_non_null(mesh_learn(m, "50.0.0.1:4000", NULL, false));
  assert_null(mesh_find(m, "11.5.0.1:4000"));
  assert_non_null(mesh_find(m, "11.0.0.1:4000"));
  assert_non_null(mesh_learn(m, "50.0.0.2:4000", NULL, false));
  assert_null(mesh_find(m, "11.0.0.1:4000"));
  assert_int_equal(stats(m).evicted, 2);

  /* A flood of newcomers churns only the unverified ones. */
  for (int k = 0; k < 2000; k++) {
    snprintf(addr, sizeof addr, "%d.%d.%d.1:4000", 60 + k / 250, k % 250, k % 7);
    mesh_learn(m, addr, NULL, false);
  }
  assert_int_equal(stats(m).size, MESH_MAX_ADDRS);
  assert_non_null(mesh_find(m, "11.1.0.1:4000"));
  assert_true(mesh_find(m, "11.1.0.1:4000")->verified);

  /* Configured addresses always fit and are never evicted. */
  assert_non_null(mesh_learn(m, "seed.example:4000", NULL, true));
  for (int k = 0; k < 300; k++) {
    snprintf(addr, sizeof addr, "%d.%d.0.2:4000", 100 + k / 200, k % 200);
    mesh_learn(m, addr, NULL, false);
  }
  assert_non_null(mesh_find(m, "seed.example:4000"));
  mesh_free(m);
}

static void test_full_of_verified_refuses(void **state)
{
  (void)state;
  Mesh *m = mesh_new(SELF, 500, 30000);
  char addr[64];
  uint8_t id[32];
  for (int k = 0; k < MESH_MAX_ADDRS; k++) {
    snprintf(addr, sizeof addr, "%d.%d.0.1:4000", 11 + k / 200, k % 200);
    id_of(k + 10, id);
    mesh_dial_succeeded(m, addr, id, 0);
  }
  assert_int_equal(stats(m).verified, MESH_MAX_ADDRS);
  assert_null(mesh_learn(m, "50.0.0.1:4000", NULL, false));
  assert_int_equal(stats(m).refused, 1);
  assert_int_equal(stats(m).size, MESH_MAX_ADDRS);
  mesh_free(m);
}

static unsigned count_prefix(Mesh *m, const char *start)
{
  /* Every address the tests use is IPv4 dotted or bracketed IPv6. */
  char addr[64];
  unsigned n = 0;
  for (int a = 0; a < 256; a++)
    for (int b = 0; b < 256; b++) {
      snprintf(addr, sizeof addr, "%s%d.%d:4000", start, a, b);
      n += mesh_find(m, addr) != NULL;
    }
  return n;
}

/* One /24 holds at most MESH_MAX_PER_NARROW addresses and one /16
 * MESH_MAX_PER_WIDE; a newcomer evicts inside its own prefix, so other
 * prefixes' addresses survive a flood from one. */
static void test_prefix_caps(void **state)
{
  (void)state;
  Mesh *m = mesh_new(SELF, 500, 30000);
  char addr[64];
  uint8_t id[32];
  id_of(77, id);
  assert_non_null(mesh_learn(m, "203.0.113.7:4000", NULL, false));
  mesh_dial_succeeded(m, "192.0.2.200:4000", id, 0); /* verified, in the flooded /24 */
  for (int k = 0; k < 200; k++) {
    snprintf(addr, sizeof addr, "192.0.2.%d:%d", k, 4000 + k);
    mesh_learn(m, addr, NULL, false);
  }
  unsigned n = 0;
  for (int k = 0; k < 256; k++) {
    snprintf(addr, sizeof addr, "192.0.2.%d:%d", k, 4000 + k);
    n += mesh_find(m, addr) != NULL;
  }
  assert_int_equal(n + (mesh_find(m, "192.0.2.200:4000") != NULL), MESH_MAX_PER_NARROW);
  assert_non_null(mesh_find(m, "192.0.2.200:4000"));
  assert_non_null(mesh_find(m, "203.0.113.7:4000"));

  /* /16: many /24s of one /16. */
  for (int k = 0; k < 1000; k++) {
    snprintf(addr, sizeof addr, "198.51.%d.%d:4000", k / 4, k % 4);
    mesh_learn(m, addr, NULL, false);
  }
  assert_int_equal(count_prefix(m, "198.51."), MESH_MAX_PER_WIDE);
  assert_non_null(mesh_find(m, "203.0.113.7:4000"));

  /* IPv6: one /64. */
  for (int k = 0; k < 100; k++) {
    snprintf(addr, sizeof addr, "[2001:db8::%x]:4000", k + 1);
    mesh_learn(m, addr, NULL, false);
  }
  n = 0;
  for (int k = 0; k < 100; k++) {
    snprintf(addr, sizeof addr, "[2001:db8::%x]:4000", k + 1);
    n += mesh_find(m, addr) != NULL;
  }
  assert_int_equal(n, MESH_MAX_PER_NARROW);
  assert_true(stats(m).evicted > 0);
  mesh_free(m);
}

/* One link's gossip holds at most MESH_MAX_PER_SOURCE unverified addresses:
 * its flood evicts its own, not another link's. */
static void test_source_cap(void **state)
{
  (void)state;
  Mesh *m = mesh_new(SELF, 500, 30000);
  char addr[64];
  for (int k = 0; k < 10; k++) {
    snprintf(addr, sizeof addr, "20.%d.0.1:4000", k);
    assert_non_null(mesh_learn_from(m, addr, NULL, 8));
  }
  for (int k = 0; k < 1000; k++) {
    snprintf(addr, sizeof addr, "%d.%d.1.1:4000", 30 + k / 100, k % 100);
    mesh_learn_from(m, addr, NULL, 7);
  }
  unsigned from7 = 0;
  for (int k = 0; k < 1000; k++) {
    snprintf(addr, sizeof addr, "%d.%d.1.1:4000", 30 + k / 100, k % 100);
    from7 += mesh_find(m, addr) != NULL;
  }
  assert_int_equal(from7, MESH_MAX_PER_SOURCE);
  for (int k = 0; k < 10; k++) {
    snprintf(addr, sizeof addr, "20.%d.0.1:4000", k);
    assert_non_null(mesh_find(m, addr));
  }
  mesh_free(m);
}

/* Makes addr verified as node n: learned, dialled, and proven. */
static void verified(Mesh *m, const char *addr, int n)
{
  uint8_t id[32];
  id_of(n, id);
  assert_non_null(mesh_learn_from(m, addr, id, 3));
  mesh_dial_succeeded(m, addr, id, 0);
}

/* HOSTS and REFUSE name verified addresses only, least loaded first (in
 * MESH_LOAD_BUCKET steps), then unknown loads, then full ones; by leaf or
 * link load as asked; exclude_id left out. */
static void test_hosts_order(void **state)
{
  (void)state;
  Mesh *m = mesh_new(SELF, 500, 30000);
  uint8_t id[32];
  verified(m, "10.0.1.1:4000", 1); /* link 100 (full), leaf 0 */
  verified(m, "10.0.1.2:4000", 2); /* link 10, leaf 90 */
  verified(m, "10.0.1.3:4000", 3); /* unknown */
  verified(m, "10.0.1.4:4000", 4); /* link 60, leaf 50 */
  id_of(5, id);
  assert_non_null(mesh_learn_from(m, "10.0.1.5:4000", id, 3)); /* a claim: never named */
  id_of(1, id);
  mesh_set_load(m, "10.0.1.1:4000", id, 0, 100);
  id_of(2, id);
  mesh_set_load(m, "10.0.1.2:4000", id, 90, 10);
  id_of(4, id);
  mesh_set_load(m, "10.0.1.4:4000", id, 50, 60);
  id_of(5, id);
  mesh_set_load(m, "10.0.1.5:4000", id, 0, 0);
  /* A load for an address under another id is not taken. */
  id_of(9, id);
  mesh_set_load(m, "10.0.1.3:4000", id, 0, 0);

  WireHost h[8];
  size_t n = mesh_hosts(m, NULL, h, 8, false);
  assert_int_equal(n, 4);
  const char *by_link[] = {"10.0.1.2:4000", "10.0.1.4:4000", "10.0.1.3:4000", "10.0.1.1:4000"};
  for (size_t i = 0; i < n; i++)
    assert_memory_equal(h[i].addr.p, by_link[i], h[i].addr.len);
  assert_int_equal(h[0].link_load, 10);
  assert_int_equal(h[2].link_load, WIRE_LOAD_UNKNOWN);
  n = mesh_hosts(m, NULL, h, 8, true);
  const char *by_leaf[] = {"10.0.1.1:4000", "10.0.1.4:4000", "10.0.1.2:4000", "10.0.1.3:4000"};
  for (size_t i = 0; i < n; i++)
    assert_memory_equal(h[i].addr.p, by_leaf[i], h[i].addr.len);
  id_of(2, id);
  assert_int_equal(mesh_hosts(m, id, h, 8, false), 3);
  assert_memory_equal(h[0].addr.p, "10.0.1.4:4000", h[0].addr.len);
  assert_int_equal(mesh_hosts(m, NULL, h, 2, false), 2);
  mesh_free(m);
}

/* A refusal holds the address back for retry_ms at least, and for longer
 * with every refusal in a row; a link taken (HOSTS heard) ends the row. */
static void test_refusal_backoff(void **state)
{
  (void)state;
  Mesh *m = mesh_new(SELF, 500, 30000);
  uint8_t id[32];
  id_of(1, id);
  uint64_t now = 100000;
  assert_non_null(mesh_learn(m, "10.0.2.1:4000", NULL, true));
  MeshAddr *a = mesh_next_dial(m, false, never_linked, NULL, now);
  assert_non_null(a);
  mesh_dial_succeeded(m, "10.0.2.1:4000", id, 0);
  mesh_dial_refused(m, "10.0.2.1:4000", 15000, 7, now);
  assert_null(mesh_next_dial(m, false, never_linked, NULL, now + 14999));
  uint64_t first = mesh_next_attempt(m, false);
  assert_true(first >= now + 15000);
  assert_non_null(mesh_next_dial(m, false, never_linked, NULL, first));
  /* Refused again and again: the waits grow past retry_ms, up to the cap. */
  uint64_t t = first, last_wait = 0;
  for (int i = 0; i < 8; i++) {
    mesh_dial_refused(m, "10.0.2.1:4000", 0, 0, t);
    uint64_t wait = mesh_next_attempt(m, false) - t;
    assert_true(wait >= last_wait);
    last_wait = wait;
    t += wait;
    assert_non_null(mesh_next_dial(m, false, never_linked, NULL, t));
  }
  assert_int_equal(last_wait, 120000); /* DEGREE_BACKOFF_MAX_MS */
  /* Linked, and the peer gossiped: the next refusal starts the row anew. */
  mesh_dial_succeeded(m, "10.0.2.1:4000", id, 42);
  mesh_link_accepted(m, 42);
  mesh_link_down(m, 42, t);
  mesh_dial_refused(m, "10.0.2.1:4000", 0, 0, t);
  assert_true(mesh_next_attempt(m, false) - t <= 3000);
  mesh_free(m);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_only_verified_is_gossiped),
      cmocka_unit_test(test_hello_claim_is_probed),
      cmocka_unit_test(test_failed_probes_give_up),
      cmocka_unit_test(test_eviction_order),
      cmocka_unit_test(test_full_of_verified_refuses),
      cmocka_unit_test(test_prefix_caps),
      cmocka_unit_test(test_source_cap),
      cmocka_unit_test(test_hosts_order),
      cmocka_unit_test(test_refusal_backoff),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
