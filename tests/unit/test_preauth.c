/* test_preauth.c - the pre-auth budget: caps per address, per prefix and in
 * total, fair shedding, silent and handshake deadlines, on a fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "preauth.h"

static const uint8_t *v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
  static uint8_t buf[8][4];
  static unsigned next;
  uint8_t *o = buf[next++ % 8];
  o[0] = a, o[1] = b, o[2] = c, o[3] = d;
  return o;
}

static Preauth *make(unsigned total, unsigned per_addr, unsigned per_prefix)
{
  PreauthLimits lim = {.max_total = total,
                       .max_per_addr = per_addr,
                       .max_per_prefix = per_prefix,
                       .silent_ms = 3000,
                       .timeout_ms = 10000};
  Preauth *p = preauth_new(&lim);
  assert_non_null(p);
  return p;
}

static bool admit(Preauth *p, uint64_t conn, const uint8_t *a, uint64_t now, uint64_t *shed)
{
  uint64_t dummy;
  return preauth_admit(p, conn, a, 4, now, shed ? shed : &dummy);
}

static void test_per_address_cap(void **state)
{
  (void)state;
  Preauth *p = make(100, 3, 50);
  for (uint64_t c = 1; c <= 3; c++)
    assert_true(admit(p, c, v4(10, 0, 0, 1), 0, NULL));
  assert_false(admit(p, 4, v4(10, 0, 0, 1), 0, NULL));
  assert_int_equal(preauth_stats(p)->refused_addr, 1);
  /* Another address of the same /24 is its own source. */
  assert_true(admit(p, 5, v4(10, 0, 0, 2), 0, NULL));
  assert_int_equal(preauth_count_addr(p, v4(10, 0, 0, 1), 4), 3);
  /* A connection that leaves frees its place. */
  assert_true(preauth_release(p, 2));
  assert_false(preauth_release(p, 2));
  assert_true(admit(p, 6, v4(10, 0, 0, 1), 0, NULL));
  assert_int_equal(preauth_count(p), 4);
  assert_int_equal(preauth_refused(p), 1);
  preauth_free(p);
}

static void test_per_prefix_cap(void **state)
{
  (void)state;
  Preauth *p = make(100, 2, 5);
  uint64_t c = 1;
  for (uint8_t host = 1; host <= 5; host++)
    assert_true(admit(p, c++, v4(192, 0, 2, host), 0, NULL));
  assert_false(admit(p, c++, v4(192, 0, 2, 200), 0, NULL));
  assert_int_equal(preauth_stats(p)->refused_prefix, 1);
  assert_int_equal(preauth_count_prefix(p, v4(192, 0, 2, 77), 4), 5);
  /* The next /24 is another prefix. */
  assert_true(admit(p, c++, v4(192, 0, 3, 1), 0, NULL));
  preauth_free(p);
}

static void test_ipv6_prefix_is_64(void **state)
{
  (void)state;
  Preauth *p = make(100, 1, 2);
  uint8_t a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1};
  uint64_t shed;
  assert_true(preauth_admit(p, 1, a, 16, 0, &shed));
  a[15] = 2; /* same /64, other address */
  assert_true(preauth_admit(p, 2, a, 16, 0, &shed));
  a[15] = 3;
  assert_false(preauth_admit(p, 3, a, 16, 0, &shed));
  a[7] = 2; /* the next /64 */
  assert_true(preauth_admit(p, 4, a, 16, 0, &shed));
  /* An IPv4-mapped address counts as the IPv4 address. */
  uint8_t m[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 7};
  assert_true(preauth_admit(p, 5, m, 16, 0, &shed));
  assert_int_equal(preauth_count_addr(p, v4(198, 51, 100, 7), 4), 1);
  assert_false(admit(p, 6, v4(198, 51, 100, 7), 0, NULL));
  preauth_free(p);
}

/* With the budget full, a newcomer from a quiet prefix takes the place of the
 * newest connection of the prefix holding most, and a newcomer of that
 * prefix is refused: a flood from one prefix cannot keep others out. */
static void test_full_sheds_newest_of_largest_prefix(void **state)
{
  (void)state;
  Preauth *p = make(10, 10, 10);
  uint64_t c = 1, shed = 0;
  for (int i = 0; i < 7; i++) /* the flood: 7 from 203.0.113.0/24 */
    assert_true(admit(p, c++, v4(203, 0, 113, (uint8_t)(i + 1)), (uint64_t)i, &shed));
  for (int i = 0; i < 3; i++) /* 3 from 198.51.100.0/24 */
    assert_true(admit(p, c++, v4(198, 51, 100, (uint8_t)(i + 1)), 10, &shed));
  assert_int_equal(preauth_count(p), 10);

  /* The flooding prefix cannot grow. */
  assert_false(admit(p, 100, v4(203, 0, 113, 50), 20, &shed));
  assert_int_equal(preauth_stats(p)->refused_full, 1);

  /* An honest newcomer gets in; the flood's newest (conn 7) goes. */
  assert_true(admit(p, 101, v4(127, 0, 0, 1), 30, &shed));
  assert_int_equal(shed, 7);
  assert_int_equal(preauth_stats(p)->shed, 1);
  assert_false(preauth_release(p, 7)); /* already gone from the books */
  assert_int_equal(preauth_count(p), 10);
  assert_int_equal(preauth_count_prefix(p, v4(203, 0, 113, 0), 4), 6);

  /* The second prefix is still smaller (3 vs 6): its newcomer also gets in. */
  assert_true(admit(p, 102, v4(198, 51, 100, 9), 31, &shed));
  assert_int_equal(shed, 6);
  /* A tie: the newcomer's prefix holds as many as the largest one. */
  Preauth *q = make(2, 10, 10);
  assert_true(admit(q, 1, v4(10, 0, 0, 1), 0, &shed));
  assert_true(admit(q, 2, v4(10, 0, 1, 1), 0, &shed));
  assert_false(admit(q, 3, v4(10, 0, 1, 2), 0, &shed));
  /* An empty prefix beats them: one of the two (1 each) gives way. */
  assert_true(admit(q, 4, v4(10, 0, 2, 1), 0, &shed));
  assert_true(shed == 1 || shed == 2);
  preauth_free(q);
  preauth_free(p);
}

static void test_silent_deadline(void **state)
{
  (void)state;
  Preauth *p = make(10, 10, 10);
  uint64_t conn, shed;
  PreauthDue why;
  assert_int_equal(preauth_next_deadline(p), UINT64_MAX);
  assert_true(admit(p, 1, v4(10, 0, 0, 1), 1000, &shed));
  assert_true(admit(p, 2, v4(10, 0, 0, 2), 1500, &shed));
  assert_int_equal(preauth_next_deadline(p), 4000);
  assert_false(preauth_due(p, 3999, &conn, &why));

  /* Conn 1 said something: its silent deadline is off, its handshake
   * deadline stays. Conn 2 said nothing and goes at 4500. */
  preauth_heard(p, 1);
  assert_int_equal(preauth_next_deadline(p), 4500);
  assert_false(preauth_due(p, 4499, &conn, &why));
  assert_true(preauth_due(p, 4500, &conn, &why));
  assert_int_equal(conn, 2);
  assert_int_equal(why, PREAUTH_DUE_SILENT);
  preauth_drop_silent(p, 2);
  assert_false(preauth_due(p, 4500, &conn, &why));
  assert_int_equal(preauth_stats(p)->silent, 1);
  assert_int_equal(preauth_count(p), 1);
  assert_int_equal(preauth_next_deadline(p), 11000);
  preauth_free(p);
}

/* The shell checks a SILENT one before closing: bytes may have come that it
 * had not reported. */
static void test_silent_but_heard_late(void **state)
{
  (void)state;
  Preauth *p = make(10, 10, 10);
  uint64_t conn, shed;
  PreauthDue why;
  assert_true(admit(p, 1, v4(10, 0, 0, 1), 0, &shed));
  assert_true(preauth_due(p, 3000, &conn, &why));
  assert_int_equal(why, PREAUTH_DUE_SILENT);
  preauth_heard(p, conn);
  assert_false(preauth_due(p, 3000, &conn, &why));
  assert_int_equal(preauth_stats(p)->silent, 0);
  assert_int_equal(preauth_count(p), 1);
  preauth_free(p);
}

static void test_handshake_deadline(void **state)
{
  (void)state;
  Preauth *p = make(10, 10, 10);
  uint64_t conn, shed;
  PreauthDue why;
  assert_true(admit(p, 1, v4(10, 0, 0, 1), 0, &shed));
  assert_true(admit(p, 2, v4(10, 0, 0, 2), 100, &shed));
  assert_true(admit(p, 3, v4(10, 0, 0, 3), 200, &shed));
  preauth_heard(p, 1);
  preauth_heard(p, 2);
  preauth_heard(p, 3);
  assert_true(preauth_release(p, 2)); /* authenticated in time */
  assert_int_equal(preauth_next_deadline(p), 10000);
  assert_false(preauth_due(p, 9999, &conn, &why));
  assert_true(preauth_due(p, 10000, &conn, &why));
  assert_int_equal(conn, 1);
  assert_int_equal(why, PREAUTH_DUE_TIMEOUT);
  assert_false(preauth_release(p, 1)); /* released by preauth_due */
  assert_false(preauth_due(p, 10199, &conn, &why));
  assert_true(preauth_due(p, 10200, &conn, &why));
  assert_int_equal(conn, 3);
  assert_int_equal(preauth_stats(p)->timed_out, 2);
  assert_int_equal(preauth_count(p), 0);
  assert_int_equal(preauth_next_deadline(p), UINT64_MAX);
  preauth_free(p);
}

/* A silent connection past both deadlines is due once, as a timeout. */
static void test_timeout_before_silent(void **state)
{
  (void)state;
  PreauthLimits lim = {.silent_ms = 5000, .timeout_ms = 2000};
  Preauth *p = preauth_new(&lim);
  uint64_t conn, shed;
  PreauthDue why;
  assert_true(admit(p, 1, v4(10, 0, 0, 1), 0, &shed));
  assert_int_equal(preauth_next_deadline(p), 2000);
  assert_true(preauth_due(p, 6000, &conn, &why));
  assert_int_equal(why, PREAUTH_DUE_TIMEOUT);
  assert_false(preauth_due(p, 6000, &conn, &why));
  preauth_free(p);
}

/* Lower limits on reload close nothing; the deadlines follow at once. */
static void test_set_limits(void **state)
{
  (void)state;
  Preauth *p = make(10, 10, 10);
  uint64_t shed, conn;
  PreauthDue why;
  for (uint64_t c = 1; c <= 4; c++)
    assert_true(admit(p, c, v4(10, 0, 0, (uint8_t)c), 0, &shed));
  PreauthLimits lim = {.max_total = 2, .max_per_addr = 1, .max_per_prefix = 3, .silent_ms = 1000};
  preauth_set_limits(p, &lim);
  assert_int_equal(preauth_count(p), 4);
  assert_false(admit(p, 5, v4(10, 0, 0, 9), 0, &shed)); /* prefix holds 4 > 3 */
  assert_int_equal(preauth_next_deadline(p), 1000);
  assert_true(preauth_due(p, 1000, &conn, &why));
  assert_int_equal(why, PREAUTH_DUE_SILENT);
  /* Defaults fill what is left 0. */
  preauth_free(p);
  p = preauth_new(NULL);
  assert_true(admit(p, 1, v4(10, 0, 0, 1), 0, &shed));
  assert_int_equal(preauth_next_deadline(p), PREAUTH_SILENT_MS);
  preauth_free(p);
}

/* Many connections in and out: the books balance and nothing leaks (ASan). */
static void test_churn_balances(void **state)
{
  (void)state;
  Preauth *p = make(64, 4, 16);
  uint64_t shed, conn;
  PreauthDue why;
  uint64_t admitted = 0, refused = 0, c = 1;
  for (uint64_t now = 0; now < 20000; now += 10) {
    const uint8_t *a = v4(10, (uint8_t)(c % 7), (uint8_t)(c % 5), (uint8_t)(c % 3));
    if (admit(p, c, a, now, &shed))
      admitted++;
    else
      refused++;
    if (c % 3 == 0)
      preauth_heard(p, c);
    if (c % 4 == 0)
      preauth_release(p, c - 2);
    c++;
    while (preauth_due(p, now, &conn, &why))
      if (why == PREAUTH_DUE_SILENT)
        preauth_drop_silent(p, conn);
    assert_true(preauth_count(p) <= 64);
  }
  const PreauthStats *st = preauth_stats(p);
  assert_int_equal(admitted, st->admitted);
  assert_int_equal(refused, preauth_refused(p));
  assert_true(st->silent > 0);
  preauth_free(p);
  preauth_free(NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_per_address_cap),
      cmocka_unit_test(test_per_prefix_cap),
      cmocka_unit_test(test_ipv6_prefix_is_64),
      cmocka_unit_test(test_full_sheds_newest_of_largest_prefix),
      cmocka_unit_test(test_silent_deadline),
      cmocka_unit_test(test_silent_but_heard_late),
      cmocka_unit_test(test_handshake_deadline),
      cmocka_unit_test(test_timeout_before_silent),
      cmocka_unit_test(test_set_limits),
      cmocka_unit_test(test_churn_balances),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
