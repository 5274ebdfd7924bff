/* test_fairshare.c - the fair scheduler: shares between groups and origins,
 * the total rate, bounded queues, staleness; fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fairshare.h"

/* Items are heap-allocated origin numbers, so a leak or double free shows
 * under ASan, and a freed count tells what was dropped. */
static int freed;

static void item_free(void *p)
{
  freed++;
  free(p);
}

static void *item(uint64_t origin)
{
  uint64_t *p = malloc(sizeof *p);
  *p = origin;
  return p;
}

static FairShareConfig cfg(double rate, double burst)
{
  FairShareConfig c = {.rate = rate,
                       .burst = burst,
                       .max_per_origin = 16,
                       .max_per_group = 256,
                       .max_total = 1024,
                       .max_wait_ms = 0};
  return c;
}

/* Releases one item and returns its origin; fails if none is ready. */
static uint64_t next(FairShare *fs, uint64_t now)
{
  uint64_t origin = 0;
  uint64_t *p = fairshare_next(fs, now, &origin);
  assert_non_null(p);
  assert_int_equal(*p, origin);
  free(p);
  return origin;
}

static void test_rejects_bad_config(void **state)
{
  (void)state;
  FairShareConfig c = cfg(0, 10);
  assert_null(fairshare_new(&c, item_free, 0));
  c = cfg(10, 0.5);
  assert_null(fairshare_new(&c, item_free, 0));
  c = cfg(10, 10);
  c.max_total = 0;
  assert_null(fairshare_new(&c, item_free, 0));
  fairshare_free(NULL);
}

static void test_rate_and_burst(void **state)
{
  (void)state;
  FairShareConfig c = cfg(100, 5);
  FairShare *fs = fairshare_new(&c, item_free, 1000);
  assert_int_equal(fairshare_deadline(fs), UINT64_MAX);
  for (int i = 0; i < 10; i++)
    assert_true(fairshare_push(fs, 1, 1, item(1), 1000));
  /* A full bucket releases the burst at once, then nothing. */
  for (int i = 0; i < 5; i++)
    next(fs, 1000);
  assert_null(fairshare_next(fs, 1000, NULL));
  /* One token every 10 ms at 100/s: the deadline says when. */
  assert_int_equal(fairshare_deadline(fs), 1010);
  assert_null(fairshare_next(fs, 1009, NULL));
  next(fs, 1010);
  assert_null(fairshare_next(fs, 1010, NULL));
  /* A second later: the bucket is capped at the burst. */
  for (int i = 0; i < 4; i++)
    next(fs, 2010);
  assert_int_equal(fairshare_queued(fs), 0);
  assert_int_equal(fairshare_deadline(fs), UINT64_MAX);
  assert_int_equal(fairshare_stats(fs)->released, 10);
  fairshare_free(fs);
}

/* 100 Sybil origins with full queues and one honest origin in the same
 * group: the honest item goes out within one round, not after the flood. */
static void test_round_robin_between_origins(void **state)
{
  (void)state;
  FairShareConfig c = cfg(100, 1);
  c.max_per_origin = 4;
  c.max_per_group = 1024;
  FairShare *fs = fairshare_new(&c, item_free, 0);
  uint64_t now = 0;
  for (uint64_t o = 1; o <= 100; o++)
    for (int k = 0; k < 4; k++)
      assert_true(fairshare_push(fs, 7, o, item(o), now));
  /* The fifth from one origin is over its cap. */
  freed = 0;
  assert_false(fairshare_push(fs, 7, 1, item(1), now));
  assert_int_equal(freed, 1);
  assert_int_equal(fairshare_stats(fs)->refused, 1);
  /* Every origin has been served once (none is fresh any more) and some
   * twice when the honest one queues. */
  for (int i = 0; i < 130; i++, now += 10)
    next(fs, now);
  /* A newly active origin is served first (fresh list) ... */
  for (int k = 0; k < 3; k++)
    assert_true(fairshare_push(fs, 7, 999, item(999), now));
  now += 10;
  assert_int_equal(next(fs, now), 999);
  /* ... but once: its second and third items wait for their turn in the
   * ring, one per round of the 100. */
  int waited = 0;
  while (now += 10, next(fs, now) != 999)
    waited++;
  assert_int_equal(waited, 100);
  waited = 0;
  while (now += 10, next(fs, now) != 999)
    waited++;
  assert_int_equal(waited, 100);
  /* And every Sybil origin got its turn in order: counts stay level. */
  size_t lo = SIZE_MAX, hi = 0;
  for (uint64_t o = 1; o <= 100; o++) {
    size_t n = fairshare_origin_queued(fs, o);
    lo = n < lo ? n : lo;
    hi = n > hi ? n : hi;
  }
  assert_true(hi - lo <= 1);
  fairshare_free(fs);
}

/* Groups share first: one group of 100 origins and one of a single origin
 * get the rate half and half while both have work. */
static void test_groups_share_equally(void **state)
{
  (void)state;
  FairShareConfig c = cfg(1000, 1);
  c.max_per_origin = 100;
  c.max_per_group = 10000;
  c.max_total = 20000;
  FairShare *fs = fairshare_new(&c, item_free, 0);
  for (uint64_t o = 1; o <= 100; o++)
    for (int k = 0; k < 20; k++)
      fairshare_push(fs, 1, o, item(o), 0);
  for (int k = 0; k < 100; k++)
    fairshare_push(fs, 2, 500, item(500), 0);
  int from_big = 0, from_small = 0;
  for (uint64_t now = 1; now <= 200; now++) {
    if (next(fs, now) == 500)
      from_small++;
    else
      from_big++;
  }
  assert_int_equal(from_small, 100);
  assert_int_equal(from_big, 100);
  fairshare_free(fs);
}

/* A group at its cap: a newcomer pushes out an item of the longest origin;
 * the longest origin itself is refused. Memory never passes the caps. */
static void test_push_out_longest(void **state)
{
  (void)state;
  FairShareConfig c = cfg(1, 1);
  c.max_per_origin = 100;
  c.max_per_group = 10;
  FairShare *fs = fairshare_new(&c, item_free, 0);
  for (int k = 0; k < 10; k++)
    assert_true(fairshare_push(fs, 1, 1, item(1), 0));
  freed = 0;
  assert_false(fairshare_push(fs, 1, 1, item(1), 0));
  assert_int_equal(freed, 1);
  for (uint64_t o = 2; o <= 6; o++)
    assert_true(fairshare_push(fs, 1, o, item(o), 0));
  assert_int_equal(fairshare_queued(fs), 10);
  assert_int_equal(fairshare_origin_queued(fs, 1), 5);
  assert_int_equal(fairshare_stats(fs)->pushed_out, 5);
  /* Every origin at one item but origin 1: origin 7 still gets in. */
  assert_true(fairshare_push(fs, 1, 7, item(7), 0));
  assert_int_equal(fairshare_origin_queued(fs, 1), 4);
  /* Origin 2 grows at origin 1's expense until it is the longest itself;
   * then it is refused rather than pushing out anyone. */
  for (int k = 0; k < 2; k++)
    assert_true(fairshare_push(fs, 1, 2, item(2), 0));
  assert_int_equal(fairshare_origin_queued(fs, 1), 2);
  assert_int_equal(fairshare_origin_queued(fs, 2), 3);
  assert_false(fairshare_push(fs, 1, 2, item(2), 0));
  assert_int_equal(fairshare_origin_queued(fs, 2), 3);
  /* Origin 3 (one item) takes from the longest, now origin 2. */
  assert_true(fairshare_push(fs, 1, 3, item(3), 0));
  assert_int_equal(fairshare_origin_queued(fs, 2), 2);
  assert_int_equal(fairshare_origin_queued(fs, 3), 2);
  assert_int_equal(fairshare_queued(fs), 10);
  fairshare_free(fs);
}

/* The total cap takes from the longest group, so a new group gets room. */
static void test_total_cap_between_groups(void **state)
{
  (void)state;
  FairShareConfig c = cfg(1, 1);
  c.max_per_origin = 1000;
  c.max_per_group = 1000;
  c.max_total = 50;
  FairShare *fs = fairshare_new(&c, item_free, 0);
  for (int k = 0; k < 50; k++)
    assert_true(fairshare_push(fs, 1, 1, item(1), 0));
  assert_false(fairshare_push(fs, 1, 1, item(1), 0));
  for (int k = 0; k < 20; k++)
    assert_true(fairshare_push(fs, 2, 2, item(2), 0));
  assert_int_equal(fairshare_queued(fs), 50);
  assert_int_equal(fairshare_origin_queued(fs, 2), 20);
  assert_int_equal(fairshare_origin_queued(fs, 1), 30);
  assert_int_equal(fairshare_groups(fs), 2);
  fairshare_free(fs);
}

/* Many origins coming and going leave nothing behind. */
static void test_bounded_memory(void **state)
{
  (void)state;
  FairShareConfig c = cfg(1000, 10);
  c.max_per_origin = 4;
  c.max_per_group = 64;
  c.max_total = 128;
  FairShare *fs = fairshare_new(&c, item_free, 0);
  uint64_t now = 0;
  for (uint64_t o = 1; o <= 100000; o++) {
    fairshare_push(fs, o % 10, o, item(o), now);
    fairshare_push(fs, o % 10, o, item(o), now);
    assert_true(fairshare_queued(fs) <= 128);
    assert_true(fairshare_origins(fs) <= 128);
    assert_true(fairshare_groups(fs) <= 10);
    if (o % 3 == 0)
      fairshare_forget(fs, o);
    now++;
    uint64_t *p;
    while ((p = fairshare_next(fs, now, NULL)))
      free(p);
  }
  for (int i = 0; i < 100; i++) {
    now += 1000;
    uint64_t *p;
    while ((p = fairshare_next(fs, now, NULL)))
      free(p);
  }
  assert_int_equal(fairshare_queued(fs), 0);
  assert_int_equal(fairshare_origins(fs), 0);
  assert_int_equal(fairshare_groups(fs), 0);
  fairshare_free(fs);
}

static void test_stale_items_dropped(void **state)
{
  (void)state;
  FairShareConfig c = cfg(10, 1);
  c.max_wait_ms = 500;
  FairShare *fs = fairshare_new(&c, item_free, 0);
  for (int k = 0; k < 10; k++)
    fairshare_push(fs, 1, 1, item(1), 0);
  next(fs, 0);
  freed = 0;
  /* At 1000 ms every queued item is older than 500 ms. */
  assert_null(fairshare_next(fs, 1000, NULL));
  assert_int_equal(freed, 9);
  assert_int_equal(fairshare_stats(fs)->stale, 9);
  /* Dropping stale items spent no token. */
  fairshare_push(fs, 1, 1, item(1), 1000);
  next(fs, 1000);
  fairshare_free(fs);
}

static void test_forget_origin(void **state)
{
  (void)state;
  FairShareConfig c = cfg(1, 1);
  FairShare *fs = fairshare_new(&c, item_free, 0);
  for (int k = 0; k < 3; k++) {
    fairshare_push(fs, 1, 1, item(1), 0);
    fairshare_push(fs, 1, 2, item(2), 0);
  }
  freed = 0;
  fairshare_forget(fs, 1);
  assert_int_equal(freed, 3);
  assert_int_equal(fairshare_origin_queued(fs, 1), 0);
  assert_int_equal(fairshare_queued(fs), 3);
  fairshare_forget(fs, 42); /* unknown: nothing happens */
  while (fairshare_queued(fs) > 0)
    assert_int_equal(next(fs, 10000 * (4 - fairshare_queued(fs))), 2);
  fairshare_free(fs);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rejects_bad_config),
      cmocka_unit_test(test_rate_and_burst),
      cmocka_unit_test(test_round_robin_between_origins),
      cmocka_unit_test(test_groups_share_equally),
      cmocka_unit_test(test_push_out_longest),
      cmocka_unit_test(test_total_cap_between_groups),
      cmocka_unit_test(test_bounded_memory),
      cmocka_unit_test(test_stale_items_dropped),
      cmocka_unit_test(test_forget_origin),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
