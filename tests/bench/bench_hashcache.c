/* bench_hashcache.c - what the hash cache saves a restarting leaf.
 *
 * Creates a share of N files (default 10,000; argv[1] overrides) of 1 to 64
 * KiB of random bytes in 100 folders under a temp dir, waits until they are
 * old enough to be trusted (SHARE_RACY_NS), then times a leaf start as
 * main.c does it: open the cache in the state dir, scan, close.
 *   cold: no database yet, every file hashed and stored;
 *   warm: the database from before, nothing hashed (median of 3 runs).
 * A scan without any cache is timed too, to show what storing costs. The
 * files sit in the page cache throughout (they were just written), so "cold"
 * is the cost of hashing, not of a cold disk, which would only widen the gap.
 *
 * Prints:
 *   hashcache_N_files: cold X ms, warm Y ms, ratio Z
 *   hashcache_N_files_per_s: cold A, warm B
 * and a few detail lines.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <glib.h>
#include <glib/gstdio.h>

#include "hashcache.h"
#include "share.h"

#define DIRS 100
#define WARM_RUNS 3
#define MIN_SIZE 1024
#define MAX_SIZE (64 * 1024)

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng_next(void)
{
  /* splitmix64 */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

static void rm_rf(const char *path)
{
  GDir *d = g_dir_open(path, 0, NULL);
  if (d) {
    const char *name;
    while ((name = g_dir_read_name(d))) {
      gchar *p = g_build_filename(path, name, NULL);
      GStatBuf st;
      if (g_lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
        rm_rf(p);
      else
        g_unlink(p);
      g_free(p);
    }
    g_dir_close(d);
  }
  g_rmdir(path);
}

static uint64_t make_share(const char *root, unsigned n)
{
  uint8_t *buf = g_malloc(MAX_SIZE);
  uint64_t total = 0;
  for (unsigned d = 0; d < DIRS; d++) {
    gchar *dir = g_strdup_printf("%s/dir%03u", root, d);
    if (g_mkdir_with_parents(dir, 0700) != 0) {
      perror(dir);
      exit(1);
    }
    g_free(dir);
  }
  for (unsigned i = 0; i < n; i++) {
    size_t size = MIN_SIZE + (size_t)(rng_next() % (MAX_SIZE - MIN_SIZE + 1));
    for (size_t j = 0; j < size; j += 8) {
      uint64_t r = rng_next();
      memcpy(buf + j, &r, MIN(8, size - j));
    }
    gchar *path = g_strdup_printf("%s/dir%03u/file%05u.bin", root, i % DIRS, i);
    GError *err = NULL;
    if (!g_file_set_contents(path, (const char *)buf, (gssize)size, &err)) {
      fprintf(stderr, "%s\n", err->message);
      exit(1);
    }
    g_free(path);
    total += size;
  }
  g_free(buf);
  return total;
}

/* One leaf start; returns ms and fills st. state_dir NULL: no cache. */
static double leaf_start(const char *root, const char *state_dir, ShareScanStats *st)
{
  int64_t t0 = g_get_monotonic_time();
  Share *s = share_new(root);
  if (state_dir)
    share_set_cache(s, hashcache_open(state_dir));
  GError *err = NULL;
  if (!share_scan(s, NULL, &err)) {
    fprintf(stderr, "scan failed: %s\n", err->message);
    exit(1);
  }
  share_scan_stats(s, st);
  share_free(s); /* closes the cache: its WAL checkpoint counts too */
  return (double)(g_get_monotonic_time() - t0) / 1000.0;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
  unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 10000;
  if (n == 0) {
    fprintf(stderr, "usage: bench_hashcache [files]\n");
    return 2;
  }
  gchar *tmp = g_dir_make_tmp("bench_hashcache-XXXXXX", NULL);
  gchar *root = g_build_filename(tmp, "share", NULL);
  gchar *state = g_build_filename(tmp, "state", NULL);
  g_mkdir(state, 0700);
  uint64_t bytes = make_share(root, n);
  /* Files younger than this are hashed again on purpose (share.h). */
  g_usleep((gulong)(SHARE_RACY_NS / 1000) + 200000);

  ShareScanStats st;
  double nocache = leaf_start(root, NULL, &st);
  double cold = leaf_start(root, state, &st);
  if (st.files != n || st.hashed != n) {
    fprintf(stderr, "cold scan: %zu files, %zu hashed, expected %u\n", st.files, st.hashed, n);
    return 1;
  }
  double warm[WARM_RUNS];
  for (int i = 0; i < WARM_RUNS; i++) {
    warm[i] = leaf_start(root, state, &st);
    if (st.files != n || st.hashed != 0 || st.from_cache != n) {
      fprintf(stderr, "warm scan: %zu files, %zu hashed, %zu from cache, expected %u from cache\n",
              st.files, st.hashed, st.from_cache, n);
      return 1;
    }
  }
  qsort(warm, WARM_RUNS, sizeof warm[0], cmp_double);
  double med = warm[WARM_RUNS / 2];

  gchar *db = g_build_filename(state, HASHCACHE_FILE, NULL);
  GStatBuf sb;
  double db_kib = g_stat(db, &sb) == 0 ? (double)sb.st_size / 1024.0 : -1;

  printf("hashcache_%u_files: cold %.0f ms, warm %.0f ms, ratio %.1f\n", n, cold, med, cold / med);
  printf("hashcache_%u_files_per_s: cold %.0f, warm %.0f\n", n, n / (cold / 1000.0),
         n / (med / 1000.0));
  printf("hashcache_share_bytes: %.1f MiB\n", (double)bytes / (1024.0 * 1024.0));
  printf("hashcache_no_cache_scan: %.0f ms\n", nocache);
  printf("hashcache_warm_runs_ms: %.0f %.0f %.0f\n", warm[0], warm[1], warm[2]);
  printf("hashcache_db_size: %.0f KiB\n", db_kib);

  g_free(db);
  rm_rf(tmp);
  g_free(state);
  g_free(root);
  g_free(tmp);
  return 0;
}
