/* test_sources.c - a download's candidate sources with a fake clock and a
 * seeded RNG: one candidate per leaf, random order, a slot given up by a link
 * that does not open while others wait, bad ones never tried again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sources.h"

#define T0 1000000u
#define WAIT 5000u

static void rng_xorshift(uint8_t *out, size_t n, void *ctx)
{
  uint64_t *x = ctx;
  for (size_t i = 0; i < n; i++) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    out[i] = (uint8_t)*x;
  }
}

static void peer(uint8_t p[32], uint8_t tag)
{
  memset(p, tag, 32);
}

static void test_one_candidate_per_peer(void **state)
{
  (void)state;
  uint64_t seed = 7;
  Sources *s = sources_new(8, WAIT, rng_xorshift, &seed);
  uint8_t p[32];
  peer(p, 1);
  assert_true(sources_add(s, p, 100));
  for (int i = 0; i < 15; i++)
    assert_false(sources_add(s, p, 100 + (uint64_t)i)); /* another name, another size */
  assert_int_equal(sources_count(s), 1);
  /* The cap counts candidates. */
  for (uint8_t t = 2; t <= 8; t++) {
    peer(p, t);
    assert_true(sources_add(s, p, 100));
  }
  peer(p, 9);
  assert_false(sources_add(s, p, 100));
  assert_int_equal(sources_count(s), 8);
  sources_free(s);
  sources_free(NULL);
  assert_null(sources_new(0, WAIT, rng_xorshift, &seed));
}

/* Every candidate gets picked once, and the first one picked is not always
 * the first one added. */
static void test_random_order(void **state)
{
  (void)state;
  unsigned first[4] = {0};
  for (uint64_t run = 1; run <= 200; run++) {
    uint64_t seed = run * 0x9E3779B97F4A7C15u;
    Sources *s = sources_new(8, WAIT, rng_xorshift, &seed);
    uint8_t p[32];
    for (uint8_t t = 0; t < 4; t++) {
      peer(p, t);
      sources_add(s, p, 100);
    }
    unsigned seen = 0;
    for (int i = 0; i < 4; i++) {
      assert_true(sources_next(s, 100, T0, p));
      assert_false(seen & (1u << p[0]));
      seen |= 1u << p[0];
      if (i == 0)
        first[p[0]]++;
    }
    assert_int_equal(seen, 0xF);
    assert_false(sources_next(s, 100, T0, p));
    sources_free(s);
  }
  for (int t = 0; t < 4; t++)
    assert_true(first[t] > 20); /* 50 expected each */
}

/* A candidate that does not open in time gives up its slot while another
 * waits; it gets a second chance after open_wait_ms, is bad the second time,
 * and stays bad after a restart (pause and resume). */
static void test_overdue_rotates_and_stays_bad(void **state)
{
  (void)state;
  uint64_t seed = 3;
  Sources *s = sources_new(8, WAIT, rng_xorshift, &seed);
  uint8_t liar[32], honest[32], other[32], p[32];
  peer(liar, 0xBA);
  peer(honest, 0x60);
  peer(other, 0x70);
  sources_add(s, liar, 100);
  /* Alone: the link's own deadline rules, nothing is overdue. */
  assert_true(sources_next(s, 100, T0, p));
  assert_memory_equal(p, liar, 32);
  assert_true(sources_next_deadline(s, 100, T0) == UINT64_MAX);
  assert_false(sources_overdue(s, 100, T0 + 60000, p));
  /* Another candidate arrives: the liar's slot is due WAIT after its start. */
  sources_add(s, honest, 100);
  assert_true(sources_next_deadline(s, 100, T0) == T0 + WAIT);
  assert_false(sources_overdue(s, 100, T0 + WAIT - 1, p));
  assert_true(sources_overdue(s, 100, T0 + WAIT, p));
  assert_memory_equal(p, liar, 32);
  assert_int_equal(sources_bad(s), 0);                 /* slow once: a second chance later */
  assert_false(sources_overdue(s, 100, T0 + WAIT, p)); /* once */
  sources_closed(s, liar);                             /* the caller closed its link */
  assert_true(sources_next(s, 100, T0 + WAIT, p));
  assert_memory_equal(p, honest, 32);
  assert_false(sources_next(s, 100, T0 + WAIT, p)); /* the liar waits its turn */
  assert_true(sources_next_deadline(s, 100, T0 + WAIT) == T0 + 2 * WAIT);
  sources_opened(s, honest);
  assert_false(sources_overdue(s, 100, T0 + 10 * WAIT, p)); /* open: off the clock */

  /* Its second chance, with another candidate waiting: slow again, bad. */
  assert_true(sources_next(s, 100, T0 + 2 * WAIT, p));
  assert_memory_equal(p, liar, 32);
  sources_add(s, other, 100);
  assert_false(sources_overdue(s, 100, T0 + 3 * WAIT - 1, p));
  assert_true(sources_overdue(s, 100, T0 + 3 * WAIT, p));
  assert_memory_equal(p, liar, 32);
  assert_int_equal(sources_bad(s), 1);
  sources_closed(s, liar);

  /* A restart forgets the others (they will be found again) but not the liar. */
  sources_restart(s);
  assert_int_equal(sources_count(s), 0);
  assert_int_equal(sources_bad(s), 1);
  assert_false(sources_add(s, liar, 100));
  assert_true(sources_add(s, honest, 100));
  assert_true(sources_next(s, 100, T0, p));
  assert_memory_equal(p, honest, 32);
  /* An open source whose link ends later is done, not bad. */
  sources_opened(s, honest);
  sources_closed(s, honest);
  assert_int_equal(sources_bad(s), 1);
  sources_restart(s);
  assert_true(sources_add(s, honest, 100));
  sources_free(s);
}

/* A link that ends before it opened (no answer, ICE failed) is bad. */
static void test_closed_before_open_is_bad(void **state)
{
  (void)state;
  uint64_t seed = 11;
  Sources *s = sources_new(8, WAIT, rng_xorshift, &seed);
  uint8_t a[32], p[32];
  peer(a, 1);
  sources_add(s, a, 100);
  assert_true(sources_next(s, 100, T0, p));
  sources_closed(s, a);
  assert_int_equal(sources_bad(s), 1);
  assert_int_equal(sources_count(s), 0);
  assert_false(sources_next(s, 100, T0, p));
  sources_free(s);
}

/* Sizes: one at a time; dropping a size skips its untried candidates. */
static void test_sizes(void **state)
{
  (void)state;
  uint64_t seed = 5;
  Sources *s = sources_new(8, WAIT, rng_xorshift, &seed);
  uint8_t p[32];
  peer(p, 1);
  sources_add(s, p, 100);
  peer(p, 2);
  sources_add(s, p, 999);
  peer(p, 3);
  sources_add(s, p, 100);
  uint64_t size;
  assert_true(sources_pick_size(s, &size));
  assert_true(size == 100 || size == 999);
  uint64_t other = size == 100 ? 999 : 100;
  assert_true(sources_waiting(s, size));
  sources_drop_size(s, size);
  assert_false(sources_waiting(s, size));
  assert_false(sources_next(s, size, T0, p));
  assert_true(sources_pick_size(s, &size));
  assert_int_equal(size, other);
  sources_drop_size(s, size);
  assert_false(sources_pick_size(s, &size));
  sources_free(s);
}

/* A slow candidate of the size being tried is not dropped as overdue for an
 * untried one of another size (which the caller would not link anyway). */
static void test_overdue_counts_the_size_tried(void **state)
{
  (void)state;
  uint64_t seed = 9;
  Sources *s = sources_new(8, WAIT, rng_xorshift, &seed);
  uint8_t honest[32], liar[32], p[32];
  peer(honest, 1);
  peer(liar, 2);
  sources_add(s, honest, 100);
  sources_add(s, liar, 999);
  assert_true(sources_next(s, 100, T0, p));
  assert_memory_equal(p, honest, 32);
  assert_true(sources_next_deadline(s, 100, T0) == UINT64_MAX);
  assert_false(sources_overdue(s, 100, T0 + 10 * WAIT, p));
  assert_int_equal(sources_bad(s), 0);
  /* One of the same size arriving puts the slow one on the clock. */
  peer(p, 3);
  sources_add(s, p, 100);
  assert_true(sources_next_deadline(s, 100, T0) == T0 + WAIT);
  assert_true(sources_overdue(s, 100, T0 + 10 * WAIT, p));
  assert_memory_equal(p, honest, 32);
  sources_free(s);
}

/* A refusal ("busy") is not a failure: the candidate is untried again after
 * a back-off (4, 8, 16 s), not bad, and comes back after a restart (pause
 * and resume); four in a row give it up for this run only. */
static void test_refused_backs_off(void **state)
{
  (void)state;
  uint64_t seed = 13;
  Sources *s = sources_new(8, WAIT, rng_xorshift, &seed);
  uint8_t a[32], p[32];
  peer(a, 1);
  sources_add(s, a, 100);
  uint64_t now = T0;
  uint64_t waits[] = {4000, 8000, 16000};
  for (size_t i = 0; i < 3; i++) {
    assert_true(sources_next(s, 100, now, p));
    assert_memory_equal(p, a, 32);
    uint64_t retry = sources_refused(s, a, now);
    assert_true(retry == now + waits[i]);
    assert_int_equal(sources_bad(s), 0);
    assert_int_equal(sources_count(s), 1);
    assert_true(sources_waiting(s, 100)); /* the download waits for it */
    assert_false(sources_next(s, 100, retry - 1, p));
    assert_true(sources_next_deadline(s, 100, now) == retry);
    assert_true(sources_next_deadline(s, 100, retry) == UINT64_MAX); /* due: no timer spin */
    now = retry;
  }
  assert_true(sources_next(s, 100, now, p));
  assert_true(sources_refused(s, a, now) == UINT64_MAX); /* the fourth */
  assert_false(sources_waiting(s, 100));
  assert_false(sources_next(s, 100, now + 600000, p));
  assert_int_equal(sources_bad(s), 0);
  /* Resume: a new search finds it, and it is tried at once. */
  sources_restart(s);
  assert_true(sources_add(s, a, 100));
  assert_true(sources_next(s, 100, now, p));
  /* Opening resets the count; a failed link (no answer) is still bad. */
  sources_opened(s, a);
  sources_closed(s, a);
  sources_restart(s);
  assert_true(sources_add(s, a, 100));
  assert_true(sources_next(s, 100, now, p));
  assert_true(sources_refused(s, a, now) == now + 4000);
  assert_true(sources_next(s, 100, now + 4000, p));
  sources_closed(s, a);
  assert_int_equal(sources_bad(s), 1);
  sources_restart(s);
  assert_false(sources_add(s, a, 100));
  /* Only a linking candidate can be refused. */
  assert_true(sources_refused(s, a, now) == UINT64_MAX);
  sources_free(s);
}

/* A candidate the caller chose not to link (it holds the peer's share of
 * links already) waits until the given time, and is not bad. */
static void test_defer(void **state)
{
  (void)state;
  uint64_t seed = 17;
  Sources *s = sources_new(8, WAIT, rng_xorshift, &seed);
  uint8_t a[32], p[32];
  peer(a, 1);
  sources_add(s, a, 100);
  assert_true(sources_next(s, 100, T0, p));
  sources_defer(s, a, T0 + 2000);
  assert_false(sources_next(s, 100, T0 + 1999, p));
  assert_true(sources_next_deadline(s, 100, T0) == T0 + 2000);
  assert_true(sources_next(s, 100, T0 + 2000, p));
  assert_int_equal(sources_bad(s), 0);
  sources_free(s);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_candidate_per_peer),
      cmocka_unit_test(test_random_order),
      cmocka_unit_test(test_overdue_rotates_and_stays_bad),
      cmocka_unit_test(test_closed_before_open_is_bad),
      cmocka_unit_test(test_sizes),
      cmocka_unit_test(test_overdue_counts_the_size_tried),
      cmocka_unit_test(test_refused_backs_off),
      cmocka_unit_test(test_defer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
