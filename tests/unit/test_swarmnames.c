/* test_swarmnames.c - canopy-swarm's realistic names: bounded, varied,
 * reproducible, and findable by the query that comes with them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "swarmnames.h"
#include "tokenize.h"

/* Every keyword of query is a keyword of name: the index matches it. */
static int query_matches(const char *name, const char *query)
{
  char nb[512], qb[256];
  const char *nt[TOKENIZE_MAX_TOKENS], *qt[TOKENIZE_MAX_TOKENS];
  size_t nn = tokenize(name, strlen(name), nb, sizeof nb, nt, TOKENIZE_MAX_TOKENS);
  size_t nq = tokenize(query, strlen(query), qb, sizeof qb, qt, TOKENIZE_MAX_TOKENS);
  if (nq < 1) /* two keywords, or one twice ("Garden Garden") */
    return 0;
  for (size_t i = 0; i < nq; i++) {
    int found = 0;
    for (size_t j = 0; j < nn && !found; j++)
      found = strcmp(qt[i], nt[j]) == 0;
    if (!found)
      return 0;
  }
  return 1;
}

static void test_bounds_and_queries(void **state)
{
  (void)state;
  char name[SWARMNAME_MAX + 1], query[128];
  size_t sum = 0, n = 0;
  for (uint64_t leaf = 0; leaf < 2000; leaf += 7) {
    for (uint64_t k = 0; k < 100; k++) {
      size_t len = swarmname_make(leaf, k, name, sizeof name, query, sizeof query);
      assert_int_equal(len, strlen(name));
      assert_in_range(len, SWARMNAME_MIN, SWARMNAME_MAX);
      for (size_t i = 0; i < len; i++)
        assert_in_range((unsigned char)name[i], 0x20, 0x7e);
      assert_true(query_matches(name, query));
      sum += len;
      n++;
    }
  }
  /* Real shares' names run to several words: not the 10-byte "swarm-i-k". */
  assert_in_range(sum / n, 35, 90);
}

static void test_reproducible_and_varied(void **state)
{
  (void)state;
  char a[SWARMNAME_MAX + 1], b[SWARMNAME_MAX + 1];
  swarmname_make(12345, 7, a, sizeof a, NULL, 0);
  swarmname_make(12345, 7, b, sizeof b, NULL, 0);
  assert_string_equal(a, b);
  GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  for (uint64_t leaf = 0; leaf < 1000; leaf++)
    for (uint64_t k = 0; k < 10; k++) {
      swarmname_make(leaf, k, a, sizeof a, NULL, 0);
      g_hash_table_add(seen, g_strdup(a));
    }
  /* 10,000 names, nearly all distinct (a few equal ones are realistic). */
  assert_true(g_hash_table_size(seen) > 9900);
  g_hash_table_unref(seen);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bounds_and_queries),
      cmocka_unit_test(test_reproducible_and_varied),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
