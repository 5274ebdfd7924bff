/* bench_search.c - time searches through a running leaf daemon.
 *
 *   bench_search STATE_DIR COUNT TTL TERMS...
 *
 * Sends COUNT searches (limit 1) over the leaf's control socket, one after
 * another, and prints the median and p99 time from sending the request to
 * receiving the first hit. Paced under the super node's per-leaf query rate
 * (10/s). Used by tests/bench/search_latency.sh.
 */
#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>

#include "clock.h"
#include "control.h"

typedef struct {
  gint64 t0, first;
} Probe;

static void on_line(JsonObject *o, void *ud)
{
  Probe *p = ud;
  if (p->first == 0 && json_object_has_member(o, "content_id"))
    p->first = g_get_monotonic_time();
}

static int cmp(const void *a, const void *b)
{
  gint64 x = *(const gint64 *)a, y = *(const gint64 *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
  if (argc < 5) {
    fprintf(stderr, "usage: bench_search STATE_DIR COUNT TTL TERMS...\n");
    return 2;
  }
  int n = atoi(argv[2]);
  gchar *text = g_strjoinv(" ", argv + 4);
  gint64 *lat = g_new0(gint64, n);
  int got = 0, miss = 0;
  for (int i = 0; i < n; i++) {
    JsonObject *req = json_object_new();
    json_object_set_string_member(req, "cmd", "search");
    json_object_set_string_member(req, "text", text);
    json_object_set_int_member(req, "ttl", atoi(argv[3]));
    json_object_set_int_member(req, "wait_ms", 5000);
    json_object_set_int_member(req, "limit", 1);
    Probe p = {g_get_monotonic_time(), 0};
    GError *err = NULL;
    if (!control_call(argv[1], req, on_line, &p, 10, &err)) {
      fprintf(stderr, "bench_search: %s\n", err->message);
      return 1;
    }
    json_object_unref(req);
    if (p.first)
      lat[got++] = p.first - p.t0;
    else
      miss++;
    g_usleep(110000);
  }
  qsort(lat, (size_t)got, sizeof *lat, cmp);
  if (got == 0) {
    printf("no search got a hit (%d tried)\n", n);
    return 1;
  }
  gint64 med = lat[(got - 1) / 2];
  gint64 p99 = lat[MIN(got - 1, (int)(got * 0.99 + 0.999) - 1)];
  printf("median %.2f ms, p99 %.2f ms over %d searches (%d without a hit)\n", med / 1000.0,
         p99 / 1000.0, n, miss);
  g_free(lat);
  g_free(text);
  return 0;
}
