/* test_index.c - the super node's directory, as a searching user sees it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "index.h"

static void mk_id(uint8_t out[32], uint32_t n, uint8_t tag)
{
  memset(out, tag, 32);
  memcpy(out, &n, sizeof n);
}

static IndexResult add(Index *ix, uint64_t owner, const char *name, uint32_t cidn)
{
  uint8_t peer[32], cid[32];
  mk_id(peer, (uint32_t)owner, 0xAA);
  mk_id(cid, cidn, 0xCC);
  return index_add(ix, owner, peer, name, strlen(name), 1000 + cidn, cid);
}

static size_t search(Index *ix, const char *q, IndexHit *out, size_t max)
{
  return index_search(ix, q, strlen(q), out, max);
}

static bool has_hit(const IndexHit *h, size_t n, const char *name)
{
  for (size_t i = 0; i < n; i++)
    if (h[i].name_len == strlen(name) && memcmp(h[i].name, name, h[i].name_len) == 0)
      return true;
  return false;
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_multi_term_search(void **state)
{
  (void)state;
  Index *ix = index_new(100);
  assert_non_null(ix);
  assert_int_equal(add(ix, 1, "The.Beatles-Abbey_Road (1969).mp3", 1), INDEX_OK);
  assert_int_equal(add(ix, 1, "Beatles - Let It Be.flac", 2), INDEX_OK);
  assert_int_equal(add(ix, 2, "Abbey Road live.mp3", 3), INDEX_OK);

  IndexHit h[10];
  size_t n = search(ix, "beatles ROAD", h, 10);
  assert_int_equal(n, 1);
  assert_true(has_hit(h, n, "The.Beatles-Abbey_Road (1969).mp3"));
  assert_int_equal(h[0].size, 1001);
  uint8_t want[32];
  mk_id(want, 1, 0xCC);
  assert_memory_equal(h[0].cid, want, 32);
  mk_id(want, 1, 0xAA);
  assert_memory_equal(h[0].peer, want, 32);

  n = search(ix, "abbey road", h, 10);
  assert_int_equal(n, 2);
  assert_true(has_hit(h, n, "Abbey Road live.mp3"));
  n = search(ix, "Beatles", h, 10);
  assert_int_equal(n, 2);
  /* Whole keywords only, and every one must match. */
  assert_int_equal(search(ix, "beat", h, 10), 0);
  assert_int_equal(search(ix, "beatles abbey live", h, 10), 0);
  assert_int_equal(search(ix, "beatles nosuchword", h, 10), 0);
  /* No keyword matches nothing. */
  assert_int_equal(search(ix, "", h, 10), 0);
  assert_int_equal(search(ix, " .-", h, 10), 0);
  /* Repeated words count once. */
  assert_int_equal(search(ix, "road road ROAD", h, 10), 2);
  index_free(ix);
}

static void test_remove_owner(void **state)
{
  (void)state;
  Index *ix = index_new(100);
  add(ix, 1, "alpha beta.mp3", 1);
  add(ix, 1, "alpha gamma.mp3", 2);
  add(ix, 2, "alpha delta.mp3", 3);
  assert_int_equal(index_size(ix), 3);
  assert_int_equal(index_owner_count(ix), 2);
  assert_int_equal(index_owner_entries(ix, 1), 2);

  assert_int_equal(index_remove_owner(ix, 1), 2);
  assert_int_equal(index_remove_owner(ix, 1), 0);
  assert_int_equal(index_remove_owner(ix, 99), 0);
  assert_int_equal(index_size(ix), 1);
  assert_int_equal(index_owner_count(ix), 1);
  assert_int_equal(index_owner_entries(ix, 1), 0);

  IndexHit h[10];
  assert_int_equal(search(ix, "beta", h, 10), 0);
  assert_int_equal(search(ix, "gamma", h, 10), 0);
  size_t n = search(ix, "alpha", h, 10);
  assert_int_equal(n, 1);
  assert_true(has_hit(h, n, "alpha delta.mp3"));
  uint8_t cid[32];
  mk_id(cid, 1, 0xCC);
  assert_int_equal(index_lookup_cid(ix, cid, h, 10), 0);

  /* The owner can come back afresh. */
  assert_int_equal(add(ix, 1, "alpha beta.mp3", 1), INDEX_OK);
  assert_int_equal(search(ix, "alpha beta", h, 10), 1);
  index_free(ix);
}

static void test_lookup_cid_all_owners(void **state)
{
  (void)state;
  Index *ix = index_new(100);
  add(ix, 1, "song.mp3", 7);
  add(ix, 2, "Song (copy).mp3", 7);
  add(ix, 3, "other.mp3", 8);
  add(ix, 3, "song again.mp3", 7);

  uint8_t cid[32];
  mk_id(cid, 7, 0xCC);
  IndexHit h[10];
  size_t n = index_lookup_cid(ix, cid, h, 10);
  assert_int_equal(n, 3);
  assert_true(has_hit(h, n, "song.mp3"));
  assert_true(has_hit(h, n, "Song (copy).mp3"));
  assert_true(has_hit(h, n, "song again.mp3"));
  for (size_t i = 0; i < n; i++)
    assert_memory_equal(h[i].cid, cid, 32);
  assert_int_equal(index_lookup_cid(ix, cid, h, 2), 2);

  /* Unlinking from the middle and the head of the chain keeps the rest. */
  index_remove_owner(ix, 2);
  n = index_lookup_cid(ix, cid, h, 10);
  assert_int_equal(n, 2);
  assert_false(has_hit(h, n, "Song (copy).mp3"));
  index_remove_owner(ix, 3);
  n = index_lookup_cid(ix, cid, h, 10);
  assert_int_equal(n, 1);
  assert_true(has_hit(h, n, "song.mp3"));
  mk_id(cid, 8, 0xCC);
  assert_int_equal(index_lookup_cid(ix, cid, h, 10), 0);
  index_free(ix);
}

static void test_owner_cap(void **state)
{
  (void)state;
  Index *ix = index_new(3);
  assert_int_equal(add(ix, 1, "a1", 1), INDEX_OK);
  assert_int_equal(add(ix, 1, "a2", 2), INDEX_OK);
  assert_int_equal(add(ix, 1, "a3", 3), INDEX_OK);
  assert_int_equal(add(ix, 1, "a4", 4), INDEX_OWNER_FULL);
  assert_int_equal(add(ix, 2, "b1", 5), INDEX_OK);
  assert_int_equal(index_owner_entries(ix, 1), 3);
  assert_int_equal(index_size(ix), 4);
  IndexHit h[4];
  assert_int_equal(search(ix, "a4", h, 4), 0);
  index_free(ix);
}

static void test_duplicate_and_badname(void **state)
{
  (void)state;
  Index *ix = index_new(100);
  assert_int_equal(add(ix, 1, "x.mp3", 1), INDEX_OK);
  assert_int_equal(add(ix, 1, "x.mp3", 1), INDEX_DUPLICATE);
  /* Another name, another cid or another owner is not a duplicate. */
  assert_int_equal(add(ix, 1, "y.mp3", 1), INDEX_OK);
  assert_int_equal(add(ix, 1, "x.mp3", 2), INDEX_OK);
  assert_int_equal(add(ix, 2, "x.mp3", 1), INDEX_OK);
  assert_int_equal(index_size(ix), 4);

  assert_int_equal(add(ix, 3, "", 9), INDEX_BADNAME);
  assert_int_equal(index_owner_count(ix), 2); /* a refused add registers nobody */
  /* A name without keywords is still findable by content id. */
  assert_int_equal(add(ix, 3, "-- ..", 9), INDEX_OK);
  uint8_t cid[32];
  mk_id(cid, 9, 0xCC);
  IndexHit h[4];
  assert_int_equal(index_lookup_cid(ix, cid, h, 4), 1);
  assert_int_equal(index_size(ix), 5);
  index_free(ix);
}

static void test_max_results(void **state)
{
  (void)state;
  Index *ix = index_new(1000);
  char name[64];
  for (uint32_t i = 0; i < 200; i++) {
    snprintf(name, sizeof name, "common track %u.ogg", i);
    assert_int_equal(add(ix, 1 + i % 7, name, i), INDEX_OK);
  }
  IndexHit h[200];
  assert_int_equal(search(ix, "common", h, 50), 50);
  assert_int_equal(search(ix, "common ogg", h, 7), 7);
  assert_int_equal(search(ix, "common", h, 0), 0);
  assert_int_equal(search(ix, "track common", h, 200), 200);
  assert_int_equal(search(ix, "common 17", h, 200), 1);
  index_free(ix);
}

static void test_slot_reuse_no_resurrection(void **state)
{
  (void)state;
  Index *ix = index_new(100);
  assert_int_equal(add(ix, 1, "zebra yellow.mp3", 1), INDEX_OK);
  /* These keep A's keyword lists alive, holding stale references. */
  assert_int_equal(add(ix, 9, "keep zebra.mp3", 5), INDEX_OK);
  assert_int_equal(add(ix, 9, "keep yellow.mp3", 6), INDEX_OK);
  assert_int_equal(index_remove_owner(ix, 1), 1);
  /* Likely reuses the freed slot; old postings must not point at it. */
  assert_int_equal(add(ix, 2, "quartz violet.mp3", 2), INDEX_OK);
  IndexHit h[10];
  assert_int_equal(search(ix, "zebra yellow", h, 10), 0);
  assert_int_equal(search(ix, "yellow", h, 10), 1);
  size_t n = search(ix, "zebra", h, 10);
  assert_int_equal(n, 1);
  assert_true(has_hit(h, n, "keep zebra.mp3"));
  assert_int_equal(search(ix, "mp3", h, 10), 3); /* B once, not twice */
  assert_int_equal(search(ix, "quartz", h, 10), 1);
  uint8_t cid[32];
  mk_id(cid, 1, 0xCC);
  assert_int_equal(index_lookup_cid(ix, cid, h, 10), 0);
  index_free(ix);
}

/* Adds and removals in bulk, checked against counts a user could see, so
 * that list compaction, arena compaction and table growth are exercised. */
static void test_churn(void **state)
{
  (void)state;
  Index *ix = index_new(100000);
  char name[64];
  for (int round = 0; round < 4; round++) {
    for (uint32_t o = 0; o < 40; o++)
      for (uint32_t i = 0; i < 500; i++) {
        snprintf(name, sizeof name, "round%d owner%u file%u shared.bin", round, o, i);
        assert_int_equal(add(ix, o + 100 * (uint32_t)round, name, o * 1000 + i), INDEX_OK);
      }
    /* Drop the previous round, keep this one. */
    if (round > 0)
      for (uint32_t o = 0; o < 40; o++)
        assert_int_equal(index_remove_owner(ix, o + 100 * (uint32_t)(round - 1)), 500);
    assert_int_equal(index_size(ix), 20000);
    assert_int_equal(index_owner_count(ix), 40);
  }
  static IndexHit h[1000];
  assert_int_equal(search(ix, "shared", h, 1000), 1000);
  assert_int_equal(search(ix, "round2", h, 1000), 0);
  size_t n = search(ix, "round3 owner7 file499", h, 1000);
  assert_int_equal(n, 1);
  assert_true(has_hit(h, n, "round3 owner7 file499 shared.bin"));
  assert_int_equal(search(ix, "file499", h, 1000), 40);
  uint8_t cid[32];
  mk_id(cid, 7 * 1000 + 499, 0xCC);
  /* Every round used the same content ids; only round 3's remain. */
  assert_int_equal(index_lookup_cid(ix, cid, h, 10), 1);
  index_free(ix);
}

static void test_remove_large_owner_fast(void **state)
{
  (void)state;
  Index *ix = index_new(100000);
  char name[64];
  for (uint32_t i = 0; i < 50000; i++) {
    snprintf(name, sizeof name, "common word%u.mp3", i);
    assert_int_equal(add(ix, 1, name, i), INDEX_OK);
  }
  for (uint32_t i = 0; i < 10; i++) {
    snprintf(name, sizeof name, "common other%u.mp3", i);
    assert_int_equal(add(ix, 2, name, 100000 + i), INDEX_OK);
  }
  double t0 = now_s();
  assert_int_equal(index_remove_owner(ix, 1), 50000);
  double dt = now_s() - t0;
  assert_true(dt < 1.0);
  assert_int_equal(index_size(ix), 10);
  assert_int_equal(index_owner_count(ix), 1);
  IndexHit h[100];
  assert_int_equal(search(ix, "common", h, 100), 10);
  assert_int_equal(search(ix, "common mp3", h, 100), 10);
  index_free(ix);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_multi_term_search),
      cmocka_unit_test(test_remove_owner),
      cmocka_unit_test(test_lookup_cid_all_owners),
      cmocka_unit_test(test_owner_cap),
      cmocka_unit_test(test_duplicate_and_badname),
      cmocka_unit_test(test_max_results),
      cmocka_unit_test(test_slot_reuse_no_resurrection),
      cmocka_unit_test(test_churn),
      cmocka_unit_test(test_remove_large_owner_fast),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
