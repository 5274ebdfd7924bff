/* test_metrics_memory.c - the memory budgets' families on the super node's
 * metrics page (issue 11, finding 2): what is held and what was refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

static void test_memory_families(void **state)
{
  (void)state;
  SnStats st;
  SnGroupStatus g;
  MetricsExtra x;
  memset(&st, 0, sizeof st);
  memset(&g, 0, sizeof g);
  memset(&x, 0, sizeof x);
  st.index_bytes = 5000;
  st.entries_rejected = 11;
  st.entries_over_share = 12;
  st.publish_throttled = 13;
  x.memory_limit = 2048ull << 20;
  x.output_queued = 777;
  x.output_refused = 14;
  x.output_overruns = 15;
  MetricsWriter *w = metrics_writer_new();
  metrics_fill_supernode(w, &st, &g, &x);
  assert_true(metrics_writer_ok(w));
  const char *t = metrics_writer_text(w, NULL);
  static const char *const want[] = {
      "canopy_memory_limit_bytes 2147483648\n",
      "canopy_output_queued_bytes 777\n",
      "canopy_output_refused_total 14\n",
      "canopy_output_overruns_total 15\n",
      "canopy_index_bytes 5000\n",
      "canopy_index_entries_rejected_total 11\n",
      "canopy_index_entries_over_share_total 12\n",
      "canopy_publish_throttled_total 13\n",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    if (!strstr(t, want[i]))
      fail_msg("missing: %s", want[i]);
  }
  metrics_writer_free(w);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_memory_families),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
