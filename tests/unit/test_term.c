/* test_term.c - term arithmetic at its limits (shared/term.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "term.h"

#define TAG 0xA1B2C3D4u
#define NOW 1800000000ull /* 2027: a plausible wall clock */

static void test_tag_is_the_first_four_bytes(void **state)
{
  uint8_t id[32] = {0xA1, 0xB2, 0xC3, 0xD4, 0xFF};
  assert_int_equal(term_tag(id), TAG);
}

static void test_next_at_the_limits(void **state)
{
  /* 0: the first election. */
  assert_true(term_next(0, TAG) == (1ull << 32 | TAG));
  /* 2^32-1: counter 0 with the largest tag; the next counter is 1. */
  assert_true(term_next(UINT32_MAX, TAG) == (1ull << 32 | TAG));
  assert_true(term_next(UINT32_MAX, TAG) > UINT32_MAX);
  /* 2^63 */
  assert_true(term_next(1ull << 63, TAG) == (((1ull << 31) + 1) << 32 | TAG));
  /* The largest counter saturates: no wrap into the tag, nor to zero. */
  assert_true(term_next(UINT64_MAX, TAG) == (0xFFFFFFFFull << 32 | TAG));
  assert_true(term_next(0xFFFFFFFF00000001ull, TAG) == (0xFFFFFFFFull << 32 | TAG));
  assert_int_equal(term_counter(term_next(UINT64_MAX, 0)), TERM_COUNTER_MAX);
  /* One below the largest counter still grows. */
  assert_true(term_next(0xFFFFFFFEull << 32, TAG) == (0xFFFFFFFFull << 32 | TAG));
}

static void test_next_only_grows_below_saturation(void **state)
{
  uint64_t probes[] = {
      0, 1, UINT32_MAX, 1ull << 32, (1ull << 32) | UINT32_MAX, 1ull << 63, 0xFFFFFFFEFFFFFFFFull};
  for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
    assert_true(term_next(probes[i], 0) > probes[i]);
}

static void test_believable_follows_the_clock(void **state)
{
  /* The honest terms of a long-lived group: small counters. */
  assert_true(term_believable(0, NOW));
  assert_true(term_believable(UINT32_MAX, NOW));
  assert_true(term_believable(12345ull << 32 | TAG, NOW));
  /* Up to TERM_AHEAD_S seconds ahead of the clock, not one more. */
  assert_true(term_believable((NOW + TERM_AHEAD_S) << 32 | UINT32_MAX, NOW));
  assert_false(term_believable((NOW + TERM_AHEAD_S + 1) << 32, NOW));
  /* The hijack of issue 11: one GROUP_STATE of a huge term. */
  assert_false(term_believable(0xFFFFFFFF00000001ull, NOW));
  assert_false(term_believable(1ull << 63, NOW));
  assert_false(term_believable(UINT64_MAX, NOW));
  /* No clock (0): only counters up to TERM_AHEAD_S. */
  assert_true(term_believable((uint64_t)TERM_AHEAD_S << 32, 0));
  assert_false(term_believable((uint64_t)(TERM_AHEAD_S + 1) << 32, 0));
}

static void test_ceiling_saturates(void **state)
{
  assert_true(term_ceiling(UINT64_MAX) == UINT64_MAX);
  assert_true(term_ceiling(TERM_COUNTER_MAX) == UINT64_MAX);
  assert_true(term_ceiling(TERM_COUNTER_MAX - TERM_AHEAD_S) == UINT64_MAX);
  assert_true(term_ceiling(TERM_COUNTER_MAX - TERM_AHEAD_S - 1) ==
              (0xFFFFFFFEull << 32 | UINT32_MAX));
  /* After the clock passes 2^32 s nothing wraps: every term is believable
   * and the counter stays saturated. */
  assert_true(term_believable(UINT64_MAX, 1ull << 40));
}

/* Even a node believed at the ceiling cannot wedge the group: the next
 * election is above it, and believable a second later. */
static void test_election_after_a_poisoned_term(void **state)
{
  uint64_t poison = term_ceiling(NOW);
  uint64_t next = term_next(poison, TAG);
  assert_true(next > poison);
  assert_false(term_believable(next, NOW));
  assert_true(term_believable(next, NOW + 1));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tag_is_the_first_four_bytes),
      cmocka_unit_test(test_next_at_the_limits),
      cmocka_unit_test(test_next_only_grows_below_saturation),
      cmocka_unit_test(test_believable_follows_the_clock),
      cmocka_unit_test(test_ceiling_saturates),
      cmocka_unit_test(test_election_after_a_poisoned_term),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
