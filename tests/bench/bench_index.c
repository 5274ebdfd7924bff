/* bench_index.c - how big and how fast one super node's index is.
 *
 *   bench_index [N] [synthetic|swarm] [index|roster]
 *
 * Publishes N entries (default 1,000,000) from 10,000 owners, each
 * publishing its whole manifest at once as a joining leaf does.
 * Names ("synthetic", the default) look like
 * "Kolara Venu - Tisame Rodu - 07 Lami Soreta (1999).mp3": artist, album
 * and title words are drawn from synthetic vocabularies with a Zipf
 * distribution, so a few keywords are in a large share of all names and
 * most are rare, and track numbers, years and extensions are very common.
 * "swarm" takes canopy-swarm's realistic names instead (tests/tools/
 * swarmnames.c: 20-120 bytes, music, films, photos, documents), the ones
 * leaves_at_size.sh publishes. "index" (the default) adds to the index
 * alone; "roster" publishes through the roster (supernode/roster.c, in
 * batches of WIRE_MAX_ENTRIES) as a super node does, so the memory figure
 * is all that a super node holds per entry.
 *
 * Reports, as "name: value unit" lines:
 *   memory per entry, from mallinfo2() (heap bytes in use, including mmapped
 *     blocks) before and after publishing, and the resident-set delta from
 *     /proc/self/statm for comparison;
 *   the insert rate;
 *   2-term search rate over 100,000 queries made of two keywords of one real
 *     entry, max 100 hits, median of 5 runs;
 *   content-id lookup rate, median of 5 runs;
 *   time to remove 1,000 owners.
 */
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "index.h"
#include "roster.h"
#include "swarmnames.h"
#include "tokenize.h"

#define OWNERS 10000
#define QUERIES 100000
#define QUERY_MAX_HITS 100
#define RUNS 5
#define REMOVE_OWNERS 1000
#define NAME_CAP 256

#define ARTIST_VOCAB 20000
#define WORD_VOCAB 50000

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng_next(void)
{
  /* splitmix64: fast, and good enough to pick words */
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

static double rng_unit(void)
{
  return (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

static double now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- synthetic vocabulary ---------------------------------------------- */

static const char *const syllables[] = {
    "ka", "lo", "mi", "ra", "ve", "nu",  "ti",  "sa",  "me",  "do",  "ru",  "be",  "zo", "fi",
    "ga", "hu", "ne", "po", "ta", "li",  "mo",  "se",  "ki",  "da",  "vo",  "pa",  "ri", "no",
    "ce", "ja", "wu", "xe", "yo", "qui", "bra", "tre", "plo", "gni", "sto", "mar",
};
#define NSYL (sizeof syllables / sizeof syllables[0])

/* Word k is the base-NSYL digits of k spelled as syllables (at least two),
 * so every k gives a distinct all-letter word. */
static void word_of(uint32_t k, char *out, size_t cap)
{
  size_t n = 0;
  int digits = 0;
  do {
    const char *s = syllables[k % NSYL];
    size_t l = strlen(s);
    if (n + l + 1 > cap)
      break;
    memcpy(out + n, s, l);
    n += l;
    k /= NSYL;
    digits++;
  } while (k > 0 || digits < 2);
  out[n] = '\0';
  if (n > 0)
    out[0] = (char)(out[0] - 'a' + 'A'); /* names are capitalised; search folds case */
}

typedef struct {
  double *cdf;
  uint32_t n;
} Zipf;

/* Exponent 1: the k-th most common word has weight 1/k. */
static void zipf_init(Zipf *z, uint32_t n)
{
  z->n = n;
  z->cdf = malloc(n * sizeof *z->cdf);
  double sum = 0;
  for (uint32_t k = 0; k < n; k++) {
    sum += 1.0 / (k + 1.0);
    z->cdf[k] = sum;
  }
  for (uint32_t k = 0; k < n; k++)
    z->cdf[k] /= sum;
}

static uint32_t zipf_draw(const Zipf *z)
{
  double u = rng_unit();
  uint32_t lo = 0, hi = z->n - 1;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (z->cdf[mid] < u)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static Zipf artists_z, words_z;

static size_t append_words(char *out, size_t n, size_t cap, const Zipf *z, int count)
{
  for (int i = 0; i < count; i++) {
    char w[32];
    word_of(zipf_draw(z), w, sizeof w);
    n += (size_t)snprintf(out + n, cap - n, "%s%s", i ? " " : "", w);
  }
  return n;
}

static size_t make_name(char *out, size_t cap)
{
  static const char *const ext[] = {"mp3", "mp3",  "mp3",  "mp3", "mp3",
                                    "mp3", "flac", "flac", "ogg", "m4a"};
  size_t n = 0;
  n = append_words(out, n, cap, &artists_z, 1 + (int)(rng_next() % 2));
  n += (size_t)snprintf(out + n, cap - n, " - ");
  n = append_words(out, n, cap, &words_z, 1 + (int)(rng_next() % 3));
  n += (size_t)snprintf(out + n, cap - n, " - %02u ", (unsigned)(1 + rng_next() % 20));
  n = append_words(out, n, cap, &words_z, 1 + (int)(rng_next() % 4));
  n += (size_t)snprintf(out + n, cap - n, " (%u).%s", (unsigned)(1950 + rng_next() % 75),
                        ext[rng_next() % 10]);
  return n;
}

/* ---- measurement ------------------------------------------------------- */

static size_t heap_in_use(void)
{
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

static size_t rss_bytes(void)
{
  unsigned long size = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f)
    return 0;
  if (fscanf(f, "%lu %lu", &size, &resident) != 2)
    resident = 0;
  fclose(f);
  return resident * (size_t)sysconf(_SC_PAGESIZE);
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
  qsort(v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
  size_t n_entries = 1000000;
  bool swarm = false, via_roster = false;
  if (argc > 1)
    n_entries = strtoull(argv[1], NULL, 10);
  if (argc > 2)
    swarm = strcmp(argv[2], "swarm") == 0;
  if (argc > 3)
    via_roster = strcmp(argv[3], "roster") == 0;
  if (n_entries < OWNERS) {
    fprintf(stderr, "need at least %d entries\n", OWNERS);
    return 1;
  }
  zipf_init(&artists_z, ARTIST_VOCAB);
  zipf_init(&words_z, WORD_VOCAB);

  /* Names and content ids first, outside the measured heap and time. */
  size_t *name_off = malloc((n_entries + 1) * sizeof *name_off);
  uint8_t(*cids)[32] = malloc(n_entries * 32);
  size_t names_cap = n_entries * 64, names_len = 0;
  char *names = malloc(names_cap);
  for (size_t i = 0; i < n_entries; i++) {
    if (names_len + NAME_CAP > names_cap) {
      names_cap *= 2;
      names = realloc(names, names_cap);
    }
    name_off[i] = names_len;
    if (swarm) {
      size_t per = n_entries / OWNERS;
      uint64_t leaf = i / per < OWNERS ? i / per : OWNERS - 1;
      names_len += swarmname_make(leaf, i - leaf * per, names + names_len, NAME_CAP, NULL, 0);
    } else {
      names_len += make_name(names + names_len, NAME_CAP);
    }
    for (int b = 0; b < 32; b += 8) {
      uint64_t r = rng_next();
      memcpy(cids[i] + b, &r, 8);
    }
  }
  name_off[n_entries] = names_len;

  /* The queries too: two distinct keywords of a randomly chosen entry. */
  char(*queries)[2 * NAME_CAP] = malloc((size_t)QUERIES * sizeof *queries);
  size_t *cid_pick = malloc(QUERIES * sizeof *cid_pick);
  for (size_t q = 0; q < QUERIES; q++) {
    char buf[NAME_CAP + TOKENIZE_MAX_TOKENS];
    const char *tok[TOKENIZE_MAX_TOKENS];
    size_t e = rng_next() % n_entries;
    size_t nt = tokenize(names + name_off[e], name_off[e + 1] - name_off[e], buf, sizeof buf, tok,
                         TOKENIZE_MAX_TOKENS);
    size_t a = rng_next() % nt, b = rng_next() % (nt - 1);
    if (b >= a)
      b++;
    snprintf(queries[q], sizeof queries[q], "%s %s", tok[a], tok[b]);
    cid_pick[q] = rng_next() % n_entries;
  }
  IndexHit *hits = malloc(QUERY_MAX_HITS * sizeof *hits);

  size_t heap0 = heap_in_use(), rss0 = rss_bytes();
  Index *ix = index_new(n_entries);
  if (!ix)
    return 1;
  Roster *roster = via_roster ? roster_new(ix) : NULL;
  double t0 = now_s();
  size_t per_owner = n_entries / OWNERS, failed = 0;
  if (roster) {
    /* Leaf by leaf, in PUBLISH-sized batches, the first one resetting. */
    for (size_t i = 0; i < n_entries;) {
      uint64_t owner = i / per_owner < OWNERS ? i / per_owner : OWNERS - 1;
      size_t end = owner == OWNERS - 1 ? n_entries : (owner + 1) * per_owner;
      uint8_t peer[32];
      memset(peer, 0, sizeof peer);
      memcpy(peer, &owner, sizeof owner);
      Record *rec = roster_ensure(roster, peer);
      for (bool first = true; i < end; first = false) {
        WireEntry e[WIRE_MAX_ENTRIES];
        size_t k = 0;
        for (; k < WIRE_MAX_ENTRIES && i < end; k++, i++) {
          e[k].name = wire_str(names + name_off[i], name_off[i + 1] - name_off[i]);
          e[k].size = i;
          memcpy(e[k].cid, cids[i], 32);
        }
        failed += roster_publish(roster, rec, first, e, k);
      }
    }
  }
  for (size_t i = 0; !roster && i < n_entries; i++) {
    /* Owner by owner, as leaves publish whole manifests on joining. */
    uint64_t owner = i / per_owner < OWNERS ? i / per_owner : OWNERS - 1;
    uint8_t peer[32];
    memset(peer, 0, sizeof peer);
    memcpy(peer, &owner, sizeof owner);
    if (index_add(ix, owner, peer, names + name_off[i], name_off[i + 1] - name_off[i], i,
                  cids[i]) != INDEX_OK)
      failed++;
  }
  double t_insert = now_s() - t0;
  size_t heap1 = heap_in_use(), rss1 = rss_bytes();
  size_t live = index_size(ix);

  printf("names: %s, %s\n", swarm ? "swarm (realistic)" : "synthetic",
         roster ? "published through the roster" : "index alone");
  printf("entries: %zu entries\n", live);
  printf("owners: %zu owners\n", index_owner_count(ix));
  printf("add_failures: %zu entries\n", failed);
  printf("mean_name_length: %.1f bytes\n", (double)names_len / (double)n_entries);
  printf("heap_per_entry: %.1f bytes (mallinfo2 uordblks+hblkhd delta)\n",
         (double)(heap1 - heap0) / (double)live);
  printf("rss_per_entry: %.1f bytes (/proc/self/statm resident delta)\n",
         (double)(rss1 - rss0) / (double)live);
  printf("insert_rate: %.0f entries/s\n", (double)n_entries / t_insert);

  double rates[RUNS];
  size_t total_hits = 0;
  for (int r = 0; r < RUNS; r++) {
    total_hits = 0;
    t0 = now_s();
    for (size_t q = 0; q < QUERIES; q++)
      total_hits += index_search(ix, queries[q], strlen(queries[q]), hits, QUERY_MAX_HITS);
    rates[r] = QUERIES / (now_s() - t0);
  }
  printf("search_2term_rate: %.0f lookups/s (median of %d x %d, max %d hits)\n",
         median(rates, RUNS), RUNS, QUERIES, QUERY_MAX_HITS);
  printf("search_2term_mean_hits: %.1f hits\n", (double)total_hits / QUERIES);

  /* One more pass timing each query, for the latency spread. */
  double *lat = malloc(QUERIES * sizeof *lat);
  for (size_t q = 0; q < QUERIES; q++) {
    t0 = now_s();
    index_search(ix, queries[q], strlen(queries[q]), hits, QUERY_MAX_HITS);
    lat[q] = now_s() - t0;
  }
  qsort(lat, QUERIES, sizeof *lat, cmp_double);
  printf("search_2term_latency_p50: %.1f us\n", lat[QUERIES / 2] * 1e6);
  printf("search_2term_latency_p90: %.1f us\n", lat[QUERIES * 9 / 10] * 1e6);
  printf("search_2term_latency_p99: %.1f us\n", lat[QUERIES * 99 / 100] * 1e6);
  printf("search_2term_latency_max: %.1f us\n", lat[QUERIES - 1] * 1e6);
  free(lat);

  for (int r = 0; r < RUNS; r++) {
    total_hits = 0;
    t0 = now_s();
    for (size_t q = 0; q < QUERIES; q++)
      total_hits += index_lookup_cid(ix, cids[cid_pick[q]], hits, QUERY_MAX_HITS);
    rates[r] = QUERIES / (now_s() - t0);
  }
  printf("cid_lookup_rate: %.0f lookups/s (median of %d x %d)\n", median(rates, RUNS), RUNS,
         QUERIES);
  if (total_hits != QUERIES)
    printf("cid_lookup_misses: %zu lookups\n", QUERIES - total_hits);

  /* Every 10th owner, so removals hit lists shared with owners that stay. */
  double *per = malloc(REMOVE_OWNERS * sizeof *per);
  size_t removed = 0;
  double t_remove = 0;
  for (size_t k = 0; k < REMOVE_OWNERS; k++) {
    t0 = now_s();
    uint64_t owner = k * (OWNERS / REMOVE_OWNERS);
    if (roster) {
      uint8_t peer[32];
      memset(peer, 0, sizeof peer);
      memcpy(peer, &owner, sizeof owner);
      Record *rec = roster_get(roster, peer);
      removed += rec ? index_owner_entries(ix, rec->owner) : 0;
      if (rec)
        roster_remove(roster, rec);
    } else {
      removed += index_remove_owner(ix, owner);
    }
    per[k] = now_s() - t0;
    t_remove += per[k];
  }
  printf("remove_1000_owners: %.1f ms (%zu entries)\n", t_remove * 1e3, removed);
  printf("remove_owner_median: %.1f us\n", median(per, REMOVE_OWNERS) * 1e6);
  printf("entries_after_remove: %zu entries\n", index_size(ix));

  roster_free(roster);
  index_free(ix);
  free(per);
  free(hits);
  free(cid_pick);
  free(queries);
  free(names);
  free(cids);
  free(name_off);
  free(artists_z.cdf);
  free(words_z.cdf);
  return 0;
}
