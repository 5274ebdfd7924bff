/* test_shorthash.c - tables keyed by what peers choose hash all of the key
 * under a secret key (issue 11, finding 7). Timing-free: ids that agree in
 * the bytes the old hashes looked at must still spread over many values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "flood.h"
#include "roster.h"
#include "shorthash.h"

#define N 4096

static int cmp_u32(const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

static size_t distinct(uint32_t *h, size_t n)
{
  qsort(h, n, sizeof *h, cmp_u32);
  size_t d = n ? 1 : 0;
  for (size_t i = 1; i < n; i++)
    d += h[i] != h[i - 1];
  return d;
}

/* An id of len bytes: the first 4 fixed (what the old hashes read), the
 * rest carrying i. */
static void colliding_id(uint8_t *out, size_t len, uint32_t i)
{
  memset(out, 0xAB, len);
  memcpy(out + len - sizeof i, &i, sizeof i);
}

static void test_flood_hash_uses_whole_id(void **state)
{
  (void)state;
  static uint32_t h[N];
  uint8_t q[FLOOD_QID_LEN];
  for (uint32_t i = 0; i < N; i++) {
    colliding_id(q, sizeof q, i);
    h[i] = flood_qid_hash(q);
  }
  /* 4096 random 32-bit values collide about 0.002 times on average. */
  assert_true(distinct(h, N) >= N - 2);
  /* ... and the table still tells them apart (equal, not just hash). */
  Flood *f = flood_new(N, 60000);
  FloodRoute r = {.conn = 1};
  for (uint32_t i = 0; i < N; i++) {
    colliding_id(q, sizeof q, i);
    assert_true(flood_first_seen(f, q, &r, 0));
  }
  for (uint32_t i = 0; i < N; i++) {
    colliding_id(q, sizeof q, i);
    assert_false(flood_first_seen(f, q, &r, 1));
  }
  assert_int_equal(flood_size(f), N);
  flood_free(f);
}

static void test_node_id_hash_uses_whole_id(void **state)
{
  (void)state;
  static uint32_t h[N];
  uint8_t id[32];
  for (uint32_t i = 0; i < N; i++) {
    colliding_id(id, sizeof id, i);
    h[i] = node_id_hash(id);
  }
  assert_true(distinct(h, N) >= N - 2);
}

/* Stable within the process (a table can find its keys again), and every
 * byte counts. */
static void test_shorthash_stable(void **state)
{
  (void)state;
  uint8_t a[16] = {1, 2, 3}, b[16] = {1, 2, 3};
  assert_true(shorthash(a, sizeof a) == shorthash(b, sizeof b));
  b[15] = 1;
  assert_true(shorthash(a, sizeof a) != shorthash(b, sizeof b));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_flood_hash_uses_whole_id),
      cmocka_unit_test(test_node_id_hash_uses_whole_id),
      cmocka_unit_test(test_shorthash_stable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
