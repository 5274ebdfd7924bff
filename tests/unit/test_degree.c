/* test_degree.c - the degree rules (degree.h) on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "degree.h"
#include "wire.h"

static void test_bounds(void **state)
{
  (void)state;
  assert_int_equal(degree_soft_max(4), 8);
  assert_int_equal(degree_hard_max(4, 16), 16);
  assert_int_equal(degree_hard_max(8, 16), 24); /* never under the soft max */
  /* Inbound newcomers under the soft max only; our own --peer addresses up
   * to the hard max; nobody beyond it. */
  assert_true(degree_accept(4, 16, 7, false));
  assert_false(degree_accept(4, 16, 8, false));
  assert_true(degree_accept(4, 16, 15, true));
  assert_false(degree_accept(4, 16, 16, true));
  /* Dials in flight count towards D. */
  assert_true(degree_want_dial(4, 2, 1));
  assert_false(degree_want_dial(4, 2, 2));
  assert_false(degree_want_dial(4, 4, 0));
  assert_int_equal(degree_link_load(4, 0), 0);
  assert_int_equal(degree_link_load(4, 4), 50);
  assert_int_equal(degree_link_load(4, 8), 100);
  assert_int_equal(degree_link_load(4, 12), 100);
}

static void test_retry_backoff(void **state)
{
  (void)state;
  uint64_t now = 1000000;
  /* Exponential from DEGREE_BACKOFF_MIN_MS, jitter up to half again. */
  for (uint32_t rnd = 0; rnd < 5000; rnd += 97) {
    uint64_t d1 = degree_retry_at(now, 1, 0, rnd) - now;
    uint64_t d3 = degree_retry_at(now, 3, 0, rnd) - now;
    assert_true(d1 >= DEGREE_BACKOFF_MIN_MS && d1 <= DEGREE_BACKOFF_MIN_MS * 3 / 2);
    assert_true(d3 >= 4 * DEGREE_BACKOFF_MIN_MS && d3 <= 6 * DEGREE_BACKOFF_MIN_MS);
    /* Capped, however many refusals in a row. */
    uint64_t d40 = degree_retry_at(now, 40, 0, rnd) - now;
    assert_true(d40 <= DEGREE_BACKOFF_MAX_MS);
    assert_true(d40 >= DEGREE_BACKOFF_MAX_MS / 2);
  }
  /* The jitter spreads dialers one node refused at once. */
  assert_true(degree_retry_at(now, 2, 0, 0) != degree_retry_at(now, 2, 0, 1777));
  /* retry_ms is honoured ... */
  assert_true(degree_retry_at(now, 1, 15000, 3) >= now + 15000);
  /* ... but not beyond belief. */
  assert_int_equal(degree_retry_at(now, 1, UINT32_MAX, 3), now + DEGREE_RETRY_CAP_MS);
}

static void test_shed(void **state)
{
  (void)state;
  DegreeLink l[9];
  for (int i = 0; i < 9; i++)
    l[i] = (DegreeLink){.conn = (uint64_t)i + 1, .peer_load = 50, .up_since = 1000 + (uint64_t)i};
  /* At the soft max (8 for D 4) nothing goes. */
  assert_null(degree_pick_shed(4, l, 8));
  /* One over: the peer with the most other links; then inbound; then the
   * youngest. */
  l[3].peer_load = 90;
  assert_ptr_equal(degree_pick_shed(4, l, 9), &l[3]);
  l[3].keep = true; /* a --peer of ours or a group member: never */
  assert_ptr_equal(degree_pick_shed(4, l, 9), &l[8]);
  l[2].inbound = true;
  assert_ptr_equal(degree_pick_shed(4, l, 9), &l[2]);
  for (int i = 0; i < 9; i++)
    l[i].keep = true;
  assert_null(degree_pick_shed(4, l, 9));
}

static void test_evict(void **state)
{
  (void)state;
  uint64_t now = 100000;
  DegreeLink l[3] = {
      {.conn = 1, .peer_load = 50, .up_since = 0},                /* exactly D links */
      {.conn = 2, .peer_load = WIRE_LOAD_UNKNOWN, .up_since = 0}, /* never told */
      {.conn = 3, .peer_load = 75, .up_since = now - 1000},       /* too young */
  };
  assert_null(degree_pick_evict(4, l, 3, now));
  /* Old enough now: its peer keeps D or more without us. */
  now += DEGREE_EVICT_MIN_AGE_MS;
  assert_ptr_equal(degree_pick_evict(4, l, 3, now), &l[2]);
  l[2].keep = true;
  assert_null(degree_pick_evict(4, l, 3, now));
  l[0].peer_load = 100;
  assert_ptr_equal(degree_pick_evict(4, l, 3, now), &l[0]);
}

static void test_trim(void **state)
{
  (void)state;
  uint64_t now = 100000;
  DegreeLink l[7];
  for (int i = 0; i < 7; i++)
    l[i] = (DegreeLink){.conn = (uint64_t)i + 1, .peer_load = 50, .up_since = 0};
  /* D 4: trimmed above 6 links only, and only a link whose peer has more
   * than 6 too (both keep more than D). */
  assert_int_equal(degree_trim(4), 6);
  assert_null(degree_pick_trim(4, l, 6, now));
  assert_null(degree_pick_trim(4, l, 7, now));
  l[5].peer_load = degree_link_load(4, 7);
  assert_ptr_equal(degree_pick_trim(4, l, 7, now), &l[5]);
  /* Never a young link, nor a kept one (a --peer, a member, a long-range). */
  l[5].up_since = now - 1;
  assert_null(degree_pick_trim(4, l, 7, now));
  l[5].up_since = 0;
  l[5].keep = true;
  assert_null(degree_pick_trim(4, l, 7, now));
}

/* Long-range links: looked for once D links are up and below the soft
 * max; a dialed node knows one by its dialer's load (D or more), and keeps
 * it like the dialer does: trims and evictions take near links only, or
 * links never settle (degree.h). */
static void test_long_range(void **state)
{
  (void)state;
  assert_false(degree_want_shortcut(4, 3, 0)); /* near links first */
  assert_true(degree_want_shortcut(4, 4, 0));
  assert_true(degree_want_shortcut(4, 7, DEGREE_SHORTCUTS - 1));
  assert_false(degree_want_shortcut(4, 8, 0)); /* at the soft max */
  assert_false(degree_want_shortcut(4, 5, DEGREE_SHORTCUTS));
  assert_false(degree_long_range_dial(4, WIRE_LOAD_UNKNOWN));
  assert_false(degree_long_range_dial(4, degree_link_load(4, 3))); /* a near dial */
  assert_true(degree_long_range_dial(4, degree_link_load(4, 4)));
  assert_true(degree_long_range_dial(4, degree_link_load(4, 6)));

  /* Never trimmed nor shed; evicted for a newcomer only when no near link
   * can be. */
  uint64_t now = 100000;
  DegreeLink l[9];
  for (int i = 0; i < 9; i++)
    l[i] = (DegreeLink){
        .conn = (uint64_t)i + 1, .peer_load = degree_link_load(4, 8), .long_range = true};
  assert_null(degree_pick_trim(4, l, 7, now));
  assert_null(degree_pick_shed(4, l, 9));
  assert_non_null(degree_pick_evict(4, l, 8, now));
  l[3].long_range = false;
  l[3].peer_load = degree_link_load(4, 5);                /* less loaded, but near */
  assert_ptr_equal(degree_pick_trim(4, l, 7, now), NULL); /* at 5: not over the line */
  assert_ptr_equal(degree_pick_evict(4, l, 8, now), &l[3]);
  assert_ptr_equal(degree_pick_shed(4, l, 9), &l[3]);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bounds), cmocka_unit_test(test_retry_backoff),
      cmocka_unit_test(test_shed),   cmocka_unit_test(test_evict),
      cmocka_unit_test(test_trim),   cmocka_unit_test(test_long_range),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
