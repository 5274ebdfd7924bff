/* test_flood.c - duplicate suppression and reverse-path routes, fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "flood.h"

#define LIFETIME 60000

static void qid(uint8_t out[FLOOD_QID_LEN], uint32_t n)
{
  memset(out, 0x5A, FLOOD_QID_LEN);
  memcpy(out, &n, sizeof n);
}

static FloodRoute from_conn(uint64_t conn)
{
  FloodRoute r = {.conn = conn};
  return r;
}

static void test_first_seen_then_duplicate(void **state)
{
  (void)state;
  uint64_t now = 1000;
  Flood *f = flood_new(100, LIFETIME);
  uint8_t q[FLOOD_QID_LEN];
  qid(q, 1);
  FloodRoute r = from_conn(7);

  assert_true(flood_first_seen(f, q, &r, now));
  now += 10;
  FloodRoute other = from_conn(9);
  assert_false(flood_first_seen(f, q, &other, now));
  assert_false(flood_first_seen(f, q, &other, now + LIFETIME - 11));
  assert_int_equal(flood_size(f), 1);
  /* The duplicate did not overwrite where the query came from. */
  FloodRoute *got = flood_route(f, q, now);
  assert_non_null(got);
  assert_int_equal(got->conn, 7);
  flood_free(f);
}

static void test_ids_independent(void **state)
{
  (void)state;
  uint64_t now = 0;
  Flood *f = flood_new(100, LIFETIME);
  uint8_t a[FLOOD_QID_LEN], b[FLOOD_QID_LEN], c[FLOOD_QID_LEN];
  qid(a, 1);
  qid(b, 2);
  /* Differs from a only in the last byte: the whole id counts, not a prefix. */
  qid(c, 1);
  c[FLOOD_QID_LEN - 1] ^= 1;
  FloodRoute r1 = from_conn(1), r2 = from_conn(2), r3 = from_conn(3);

  assert_true(flood_first_seen(f, a, &r1, now));
  assert_true(flood_first_seen(f, b, &r2, now));
  assert_true(flood_first_seen(f, c, &r3, now));
  assert_false(flood_first_seen(f, a, &r2, now));
  assert_false(flood_first_seen(f, b, &r1, now));
  assert_false(flood_first_seen(f, c, &r1, now));
  assert_int_equal(flood_size(f), 3);
  assert_int_equal(flood_route(f, a, now)->conn, 1);
  assert_int_equal(flood_route(f, b, now)->conn, 2);
  assert_int_equal(flood_route(f, c, now)->conn, 3);
  flood_free(f);
}

static void test_expiry_makes_id_new(void **state)
{
  (void)state;
  uint64_t now = 5000;
  Flood *f = flood_new(100, LIFETIME);
  uint8_t q[FLOOD_QID_LEN];
  qid(q, 42);
  FloodRoute r = from_conn(1);
  assert_true(flood_first_seen(f, q, &r, now));

  /* Alive one millisecond before its lifetime ends... */
  assert_non_null(flood_route(f, q, now + LIFETIME - 1));
  assert_false(flood_first_seen(f, q, &r, now + LIFETIME - 1));
  /* ...and gone at it: no route, and the id counts as new again. */
  assert_null(flood_route(f, q, now + LIFETIME));
  FloodRoute r2 = from_conn(2);
  assert_true(flood_first_seen(f, q, &r2, now + LIFETIME));
  assert_int_equal(flood_route(f, q, now + LIFETIME)->conn, 2);
  assert_int_equal(flood_size(f), 1);

  /* flood_expire forgets expired ids on its own. */
  flood_expire(f, now + 2 * LIFETIME);
  assert_int_equal(flood_size(f), 0);
  flood_free(f);
}

static void test_route_is_mutable(void **state)
{
  (void)state;
  uint64_t now = 0;
  Flood *f = flood_new(100, LIFETIME);
  uint8_t q[FLOOD_QID_LEN], unknown[FLOOD_QID_LEN];
  qid(q, 3);
  qid(unknown, 4);
  FloodRoute r = {.conn = 11, .from_leaf = true, .req = 77, .hits_sent = 999};
  assert_true(flood_first_seen(f, q, &r, now));

  FloodRoute *got = flood_route(f, q, now + 1);
  assert_non_null(got);
  assert_int_equal(got->conn, 11);
  assert_true(got->from_leaf);
  assert_int_equal(got->req, 77);
  assert_int_equal(got->hits_sent, 0); /* a new route starts with no hits passed back */

  got->hits_sent += 5;
  assert_int_equal(flood_route(f, q, now + 2)->hits_sent, 5);
  flood_route(f, q, now + 3)->hits_sent += 2;
  assert_int_equal(flood_route(f, q, now + 4)->hits_sent, 7);

  assert_null(flood_route(f, unknown, now));
  flood_free(f);
}

static void test_cap_forgets_oldest(void **state)
{
  (void)state;
  uint64_t now = 0;
  Flood *f = flood_new(3, LIFETIME);
  uint8_t q[5][FLOOD_QID_LEN];
  for (uint32_t i = 0; i < 5; i++)
    qid(q[i], 100 + i);
  FloodRoute r = from_conn(1);

  for (int i = 0; i < 4; i++)
    assert_true(flood_first_seen(f, q[i], &r, now + (uint64_t)i));
  assert_int_equal(flood_size(f), 3);
  /* The oldest was forgotten: no route, and a copy of it counts as new. */
  assert_null(flood_route(f, q[0], now + 4));
  assert_non_null(flood_route(f, q[1], now + 4));
  assert_non_null(flood_route(f, q[2], now + 4));
  assert_non_null(flood_route(f, q[3], now + 4));
  assert_false(flood_first_seen(f, q[3], &r, now + 4));
  assert_true(flood_first_seen(f, q[0], &r, now + 5)); /* evicts q[1] */
  assert_null(flood_route(f, q[1], now + 5));
  assert_false(flood_first_seen(f, q[2], &r, now + 5));
  assert_int_equal(flood_size(f), 3);
  flood_free(f);
}

static void test_next_expiry(void **state)
{
  (void)state;
  Flood *f = flood_new(10, LIFETIME);
  assert_int_equal(flood_next_expiry(f), UINT64_MAX);

  uint8_t a[FLOOD_QID_LEN], b[FLOOD_QID_LEN];
  qid(a, 1);
  qid(b, 2);
  FloodRoute r = from_conn(1);
  assert_true(flood_first_seen(f, a, &r, 1000));
  assert_int_equal(flood_next_expiry(f), 1000 + LIFETIME);
  assert_true(flood_first_seen(f, b, &r, 3000));
  assert_int_equal(flood_next_expiry(f), 1000 + LIFETIME); /* still the oldest */

  flood_expire(f, 1000 + LIFETIME - 1);
  assert_int_equal(flood_size(f), 2);
  flood_expire(f, 1000 + LIFETIME);
  assert_int_equal(flood_size(f), 1);
  assert_int_equal(flood_next_expiry(f), 3000 + LIFETIME);
  flood_expire(f, 3000 + LIFETIME);
  assert_int_equal(flood_size(f), 0);
  assert_int_equal(flood_next_expiry(f), UINT64_MAX);
  flood_free(f);
}

static void test_free_null(void **state)
{
  (void)state;
  flood_free(NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_first_seen_then_duplicate),
      cmocka_unit_test(test_ids_independent),
      cmocka_unit_test(test_expiry_makes_id_new),
      cmocka_unit_test(test_route_is_mutable),
      cmocka_unit_test(test_cap_forgets_oldest),
      cmocka_unit_test(test_next_expiry),
      cmocka_unit_test(test_free_null),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
