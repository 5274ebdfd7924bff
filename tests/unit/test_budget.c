/* test_budget.c - the budget counter: total cap, per-source shares, give
 * back, and a table that holds only sources with something charged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "budget.h"

static bool take(Budget *b, const char *key, uint64_t n)
{
  return budget_take(b, key, strlen(key), n);
}

static void give(Budget *b, const char *key, uint64_t n)
{
  budget_give(b, key, strlen(key), n);
}

static uint64_t used_by(Budget *b, const char *key)
{
  return budget_used_by(b, key, strlen(key));
}

static void test_share_caps_one_source(void **state)
{
  (void)state;
  Budget *b = budget_new(1000, 300);
  assert_true(take(b, "10.0.0.1", 200));
  assert_true(take(b, "10.0.0.1", 100));
  assert_false(take(b, "10.0.0.1", 1)); /* its share is full */
  assert_int_equal(used_by(b, "10.0.0.1"), 300);
  assert_true(take(b, "10.0.0.2", 300)); /* others are not affected */
  assert_int_equal(budget_used(b), 600);
  assert_int_equal(budget_refused(b), 1);
  budget_free(b);
}

static void test_total_caps_all_sources(void **state)
{
  (void)state;
  Budget *b = budget_new(1000, 300);
  char key[32];
  int taken = 0;
  for (int i = 0; i < 10; i++) {
    snprintf(key, sizeof key, "src%d", i);
    taken += take(b, key, 300);
  }
  assert_int_equal(taken, 3); /* 900; a fourth would be 1200 */
  assert_true(take(b, "src9", 100));
  assert_false(take(b, "src9", 1));
  assert_int_equal(budget_used(b), 1000);
  budget_free(b);
}

static void test_all_or_nothing(void **state)
{
  (void)state;
  Budget *b = budget_new(100, 0); /* share 0: the whole total */
  assert_int_equal(budget_share(b), 100);
  assert_true(take(b, "a", 60));
  assert_false(take(b, "b", 41));
  assert_int_equal(used_by(b, "b"), 0);
  assert_int_equal(budget_sources(b), 1);
  assert_true(take(b, "b", 40));
  budget_free(b);
}

static void test_give_back(void **state)
{
  (void)state;
  Budget *b = budget_new(100, 50);
  assert_true(take(b, "a", 50));
  give(b, "a", 20);
  assert_int_equal(used_by(b, "a"), 30);
  assert_true(take(b, "a", 20));
  give(b, "a", 1000); /* more than it holds: all of it, not an underflow */
  assert_int_equal(used_by(b, "a"), 0);
  assert_int_equal(budget_used(b), 0);
  assert_int_equal(budget_sources(b), 0);
  give(b, "nobody", 5); /* nothing held: a no-op */
  assert_int_equal(budget_used(b), 0);
  budget_free(b);
}

static void test_lower_limits_keep_holdings(void **state)
{
  (void)state;
  Budget *b = budget_new(100, 100);
  assert_true(take(b, "a", 80));
  budget_set_limits(b, 50, 50);
  assert_false(take(b, "b", 1)); /* over the new total until given back */
  give(b, "a", 40);
  assert_true(take(b, "b", 10));
  budget_free(b);
}

/* Many sources coming and going: every key stays findable after the
 * backward shifts, and the table empties when everything is given back. */
static void test_churn(void **state)
{
  (void)state;
  Budget *b = budget_new(UINT64_MAX / 2, 1000);
  char key[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof key, "k%d", i);
    assert_true(take(b, key, (uint64_t)(i % 7) + 1));
  }
  for (int i = 0; i < 5000; i += 2) {
    snprintf(key, sizeof key, "k%d", i);
    give(b, key, 1000);
  }
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof key, "k%d", i);
    assert_int_equal(used_by(b, key), i % 2 ? (uint64_t)(i % 7) + 1 : 0);
  }
  assert_int_equal(budget_sources(b), 2500);
  for (int i = 1; i < 5000; i += 2) {
    snprintf(key, sizeof key, "k%d", i);
    give(b, key, 1000);
  }
  assert_int_equal(budget_sources(b), 0);
  assert_int_equal(budget_used(b), 0);
  budget_free(b);
}

static void test_long_keys_are_cut(void **state)
{
  (void)state;
  Budget *b = budget_new(100, 10);
  char k1[100], k2[100];
  memset(k1, 'x', sizeof k1);
  memcpy(k2, k1, sizeof k2);
  k2[99] = 'y'; /* differs only past BUDGET_KEY_MAX: the same source */
  assert_true(budget_take(b, k1, sizeof k1, 10));
  assert_false(budget_take(b, k2, sizeof k2, 1));
  budget_free(b);
}

/* A forced charge is counted over the caps: the source then has no room
 * (nor the others, over the total) until enough is given back. */
static void test_force_over_the_caps(void **state)
{
  (void)state;
  Budget *b = budget_new(100, 40);
  assert_true(budget_take(b, "a", 1, 30));
  assert_false(budget_take(b, "a", 1, 20));
  assert_true(budget_force(b, "a", 1, 20));
  assert_int_equal(budget_used_by(b, "a", 1), 50);
  assert_int_equal(budget_room(b, "a", 1), 0);
  assert_false(budget_take(b, "a", 1, 1));
  assert_true(budget_force(b, "b", 1, 60)); /* the total too */
  assert_int_equal(budget_used(b), 110);
  assert_int_equal(budget_room(b, "c", 1), 0);
  assert_false(budget_take(b, "c", 1, 1));
  budget_give(b, "a", 1, 50);
  assert_int_equal(budget_room(b, "c", 1), 40);
  assert_int_equal(budget_room(b, "a", 1), 40);
  budget_free(b);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_share_caps_one_source),
      cmocka_unit_test(test_total_caps_all_sources),
      cmocka_unit_test(test_all_or_nothing),
      cmocka_unit_test(test_give_back),
      cmocka_unit_test(test_lower_limits_keep_holdings),
      cmocka_unit_test(test_churn),
      cmocka_unit_test(test_long_keys_are_cut),
      cmocka_unit_test(test_force_over_the_caps),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
