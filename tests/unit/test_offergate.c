/* test_offergate.c - inbound ICE offer budgets (leafnode/offergate.h), with
 * a fake clock: time is whatever the test passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "offergate.h"

static void id(uint8_t out[32], int n)
{
  memset(out, 0, 32);
  out[0] = (uint8_t)n;
  out[31] = (uint8_t)(n >> 8);
}

static void test_per_peer_share(void **state)
{
  (void)state;
  OfferGate *g = offergate_new(32, 4, 100, 1);
  uint8_t a[32], b[32];
  id(a, 1);
  id(b, 2);
  for (int i = 0; i < 4; i++)
    assert_int_equal(offergate_admit(g, a, 0), OFFERGATE_OK);
  /* A fifth link from the same peer is refused with a reason... */
  assert_int_equal(offergate_admit(g, a, 0), OFFERGATE_SHARE);
  assert_string_equal(offergate_reason(OFFERGATE_SHARE),
                      "busy: you already hold your share of inbound links");
  assert_int_equal(offergate_held_by(g, a), 4);
  /* ...while another peer is served, */
  assert_int_equal(offergate_admit(g, b, 0), OFFERGATE_OK);
  /* and a slot given back can be taken again. */
  offergate_release(g, a);
  assert_int_equal(offergate_admit(g, a, 0), OFFERGATE_OK);
  assert_int_equal(offergate_held(g), 5);
  /* Releasing what a peer does not hold changes nothing. */
  uint8_t c[32];
  id(c, 3);
  offergate_release(g, c);
  assert_int_equal(offergate_held(g), 5);
  offergate_free(g);
}

static void test_total(void **state)
{
  (void)state;
  OfferGate *g = offergate_new(8, 2, 100, 1);
  uint8_t p[32];
  for (int i = 0; i < 4; i++) {
    id(p, i);
    assert_int_equal(offergate_admit(g, p, 0), OFFERGATE_OK);
    assert_int_equal(offergate_admit(g, p, 0), OFFERGATE_OK);
  }
  id(p, 99);
  assert_int_equal(offergate_admit(g, p, 0), OFFERGATE_FULL);
  id(p, 0);
  offergate_release(g, p);
  id(p, 99);
  assert_int_equal(offergate_admit(g, p, 0), OFFERGATE_OK);
  offergate_free(g);
}

static void test_rate(void **state)
{
  (void)state;
  /* Defaults: a burst of OFFERGATE_BURST, then one per OFFERGATE_REFILL_MS. */
  OfferGate *g = offergate_new(0, 0, 0, 0);
  uint8_t a[32], b[32];
  id(a, 1);
  id(b, 2);
  uint64_t t = 1000;
  for (int i = 0; i < OFFERGATE_BURST; i++) {
    assert_int_equal(offergate_admit(g, a, t), OFFERGATE_OK);
    offergate_release(g, a); /* each link ends at once: only the rate bites */
  }
  assert_int_equal(offergate_admit(g, a, t), OFFERGATE_RATE);
  assert_int_equal(offergate_admit(g, a, t + OFFERGATE_REFILL_MS - 1), OFFERGATE_RATE);
  assert_int_equal(offergate_admit(g, b, t), OFFERGATE_OK); /* others unaffected */
  assert_int_equal(offergate_admit(g, a, t + OFFERGATE_REFILL_MS), OFFERGATE_OK);
  assert_int_equal(offergate_admit(g, a, t + OFFERGATE_REFILL_MS), OFFERGATE_RATE);
  /* A refused offer takes nothing. */
  assert_int_equal(offergate_held_by(g, a), 1);
  offergate_free(g);
}

static void test_opened_links_refund(void **state)
{
  (void)state;
  OfferGate *g = offergate_new(0, 0, 0, 0);
  uint8_t a[32];
  id(a, 1);
  /* An honest downloader: get after get, each link opens and ends. */
  for (int i = 0; i < 50; i++) {
    assert_int_equal(offergate_admit(g, a, 1000), OFFERGATE_OK);
    offergate_opened(g, a);
    offergate_release(g, a);
  }
  /* Links that never open use the budget up. */
  for (int i = 0; i < OFFERGATE_BURST; i++) {
    assert_int_equal(offergate_admit(g, a, 1000), OFFERGATE_OK);
    offergate_release(g, a);
  }
  assert_int_equal(offergate_admit(g, a, 1000), OFFERGATE_RATE);
  /* The refund never lifts the bucket above its burst. */
  for (int i = 0; i < 10; i++)
    offergate_opened(g, a);
  for (int i = 0; i < OFFERGATE_BURST; i++) {
    assert_int_equal(offergate_admit(g, a, 1000), OFFERGATE_OK);
    offergate_release(g, a);
  }
  assert_int_equal(offergate_admit(g, a, 1000), OFFERGATE_RATE);
  offergate_free(g);
}

static void test_memory_bounded(void **state)
{
  (void)state;
  OfferGate *g = offergate_new(OFFERGATE_PEERS + 10, 1, 1, 1000);
  uint8_t p[32];
  /* Every remembered peer holds a slot: a new one cannot be remembered. */
  for (int i = 0; i < OFFERGATE_PEERS; i++) {
    id(p, i);
    assert_int_equal(offergate_admit(g, p, 0), OFFERGATE_OK);
  }
  id(p, 1000);
  assert_int_equal(offergate_admit(g, p, 0), OFFERGATE_CROWDED);
  /* One that holds nothing, with a bucket still empty, is not forgotten
   * (it would come back with a full bucket)... */
  id(p, 5);
  offergate_release(g, p);
  id(p, 1000);
  assert_int_equal(offergate_admit(g, p, 500), OFFERGATE_CROWDED);
  /* ...but once refilled it is, and the newcomer gets its place. */
  assert_int_equal(offergate_admit(g, p, 1000), OFFERGATE_OK);
  id(p, 5);
  assert_int_equal(offergate_held_by(g, p), 0);
  offergate_free(g);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_per_peer_share), cmocka_unit_test(test_total),
      cmocka_unit_test(test_rate),           cmocka_unit_test(test_opened_links_refund),
      cmocka_unit_test(test_memory_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
