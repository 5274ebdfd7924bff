/* test_slots.c - the index's open-addressing table (supernode/slots.c).
 *
 * Values stand for keys in a side array, as the index's slots and keyword
 * ids do; a hash the test chooses puts many keys in one bucket run, across
 * the end of the table, so that backward-shift deletion has to move values
 * past the wrap and must not move one before its home.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "slots.h"

#define KEYS 5000

typedef struct {
  uint32_t key[KEYS]; /* value v stands for key[v] */
  unsigned spread;    /* homes used: keys land in this many buckets' worth */
} Side;

/* Top bits pick the bucket: key % spread buckets from the last one, so
 * runs wrap past the table's end. */
static uint64_t hash_key(const Side *s, uint32_t key)
{
  uint64_t home = (uint64_t)(1023 - key % s->spread) & 1023;
  return home << 54;
}

static uint64_t hash_v(const void *ctx, uint32_t v)
{
  const Side *s = ctx;
  return hash_key(s, s->key[v]);
}

static bool eq_v(const void *ctx, uint32_t v, const void *key)
{
  const Side *s = ctx;
  return s->key[v] == *(const uint32_t *)key;
}

static size_t find(const Slots *t, const Side *s, uint32_t key)
{
  return slots_find(t, hash_key(s, key), eq_v, s, &key);
}

/* Every stored value is found from its key, and no bucket run has a hole
 * between a value and its home. */
static void check_all(const Slots *t, const Side *s, const bool *in, size_t n)
{
  size_t used = 0;
  for (uint32_t v = 0; v < n; v++) {
    size_t pos = find(t, s, s->key[v]);
    if (in[v]) {
      assert_int_not_equal(pos, SLOTS_NONE);
      assert_int_equal(t->tab[pos], v);
      used++;
    } else {
      assert_int_equal(pos, SLOTS_NONE);
    }
  }
  assert_int_equal(t->used, used);
  assert_true(t->used * 4 <= t->cap * 3);
}

static void test_collisions_and_wrap(void **state)
{
  (void)state;
  static Side s;
  static bool in[KEYS];
  s.spread = 3; /* 3 homes at the end of the table: one long wrapping run */
  Slots t;
  assert_true(slots_init(&t));
  assert_int_equal(t.cap, 1024);
  for (uint32_t v = 0; v < 200; v++) {
    s.key[v] = v * 7 + 1;
    assert_true(slots_reserve(&t, hash_v, &s));
    slots_insert(&t, v, hash_v(&s, v));
    in[v] = true;
  }
  check_all(&t, &s, in, 200);
  /* Delete from the front, the middle and the end of the run. */
  uint32_t order[] = {0, 199, 100, 1, 2, 150, 151, 3, 198, 50};
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
    uint32_t v = order[i];
    slots_delete(&t, find(&t, &s, s.key[v]), hash_v, &s);
    in[v] = false;
    check_all(&t, &s, in, 200);
  }
  slots_free(&t);
}

static void test_grow_and_churn(void **state)
{
  (void)state;
  static Side s;
  static bool in[KEYS];
  memset(in, 0, sizeof in);
  s.spread = 1024; /* spread out: growth rehashes */
  Slots t;
  assert_true(slots_init(&t));
  srand(7);
  for (uint32_t v = 0; v < KEYS; v++)
    s.key[v] = (uint32_t)rand();
  /* Keys must be distinct: they are values' identities here. */
  for (uint32_t v = 0; v < KEYS; v++)
    s.key[v] = s.key[v] * 2 + (v & 1) + v * 4096u;
  size_t live = 0;
  for (int round = 0; round < 20000; round++) {
    uint32_t v = (uint32_t)rand() % KEYS;
    if (in[v]) {
      slots_delete(&t, find(&t, &s, s.key[v]), hash_v, &s);
      in[v] = false;
      live--;
    } else {
      assert_true(slots_reserve(&t, hash_v, &s));
      slots_insert(&t, v, hash_v(&s, v));
      in[v] = true;
      live++;
    }
  }
  check_all(&t, &s, in, KEYS);
  assert_int_equal(t.used, live);
  assert_true(t.cap > 1024); /* it grew */
  slots_reset(&t);
  assert_int_equal(t.used, 0);
  memset(in, 0, sizeof in);
  check_all(&t, &s, in, KEYS);
  slots_free(&t);
  slots_free(&t); /* twice is harmless */
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_collisions_and_wrap),
      cmocka_unit_test(test_grow_and_churn),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
