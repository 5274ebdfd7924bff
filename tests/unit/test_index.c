/* test_index.c - the super node's directory, as a searching user sees it.
 *
 * This file compiles index.c itself with a small stamp limit, so that the
 * renumbering a long-lived index does once per ~4 billion adds also happens
 * here, in test_churn and test_against_model. The limit must stay above the
 * most entries any test keeps live at once (test_remove_large_owner_fast).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define INDEX_STAMP_LIMIT 65536u
#include "../../supernode/index.c"

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

  /* With everyone gone, no keyword list or content id is left behind. */
  index_remove_owner(ix, 1);
  index_remove_owner(ix, 2);
  assert_int_equal(index_size(ix), 0);
  assert_int_equal(index_owner_count(ix), 0);
  assert_int_equal(ix->w_tab.used, 0);
  assert_int_equal(ix->st.used, 0);
  assert_int_equal(ix->cid.used, 0);
  assert_int_equal(ix->arena_len - ix->arena_dead, 0); /* no live name bytes */
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
  /* Owner 3 has the id under two names: one hit for it. */
  add(ix, 3, "song once more.mp3", 7);
  assert_int_equal(index_lookup_cid(ix, cid, h, 10), 3);
  index_remove_owner(ix, 3);
  add(ix, 3, "other.mp3", 8);
  add(ix, 3, "song again.mp3", 7);

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

/* Finding 3 of issue 11: one leaf publishing a content id under many names
 * (after the honest one, so at the chain's head) must not crowd the honest
 * owner out of a lookup, however small max is, nor past the lookup's scan
 * (it may give one id INDEX_NAMES_PER_CID names). */
static void test_lookup_cid_liar_many_names(void **state)
{
  (void)state;
  Index *ix = index_new(10000);
  add(ix, 1, "honest.bin", 5);
  char name[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(name, sizeof name, "lie %d.bin", i);
    assert_int_equal(add(ix, 2, name, 5), i < INDEX_NAMES_PER_CID ? INDEX_OK : INDEX_CID_FULL);
  }
  /* A duplicate is still a duplicate at the cap; other ids still go in. */
  assert_int_equal(add(ix, 2, "lie 0.bin", 5), INDEX_DUPLICATE);
  assert_int_equal(add(ix, 2, "lie 0.bin", 6), INDEX_OK);
  assert_int_equal(index_owner_entries(ix, 2), INDEX_NAMES_PER_CID + 1);
  uint8_t cid[32], honest[32];
  mk_id(cid, 5, 0xCC);
  mk_id(honest, 1, 0xAA);
  IndexHit h[16];
  size_t n = index_lookup_cid(ix, cid, h, 16);
  assert_int_equal(n, 2);
  assert_memory_not_equal(h[0].peer, h[1].peer, 32);
  assert_true(memcmp(h[0].peer, honest, 32) == 0 || memcmp(h[1].peer, honest, 32) == 0);
  index_free(ix);
}

/* With more owners than max, which ones answer is a uniform choice: over
 * many lookups with max 1 the oldest and the newest owner both come up. */
static void test_lookup_cid_no_order_bias(void **state)
{
  (void)state;
  Index *ix = index_new(100);
  for (uint64_t o = 1; o <= 4; o++)
    add(ix, o, "same.bin", 6);
  uint8_t cid[32];
  mk_id(cid, 6, 0xCC);
  unsigned seen[5] = {0};
  for (int i = 0; i < 400; i++) {
    IndexHit h[1];
    assert_int_equal(index_lookup_cid(ix, cid, h, 1), 1);
    seen[h[0].peer[0]]++; /* mk_id puts the owner number first */
  }
  for (int o = 1; o <= 4; o++)
    assert_true(seen[o] > 40); /* expected 100 each */
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
  assert_int_equal(add(ix, 1, "a3", 3), INDEX_DUPLICATE); /* even when full */
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

/* A rare keyword (most are) costs one malloc chunk of 32 bytes: header,
 * keyword and its first ref in one block. Lists that grow move, and stay
 * found; a list of the longest keyword works the same. */
static void test_keyword_lists_inline(void **state)
{
  (void)state;
  Index *ix = index_new(100000);
  IndexHit h[8];
  assert_int_equal(add(ix, 1, "common rare1.mp3", 1), INDEX_OK);
  Posting *p = w_get(ix, "rare1");
  assert_non_null(p);
  assert_int_equal(p->len, 1);
  assert_int_equal(p->cls, 0);
  assert_int_equal(posting_bytes(p->cls), 24); /* malloc's smallest chunk */
  assert_true(posting_cap(p) >= 1);
  /* Half of the rare realistic keywords have 8 bytes (dates). */
  assert_int_equal(add(ix, 1, "common 20190712.jpg", 2), INDEX_OK);
  assert_int_equal(w_get(ix, "20190712")->cls, 0);
  /* Growth: "common" moves many times; every ref stays in order. */
  char name[64];
  for (uint32_t i = 3; i <= 3001; i++) {
    snprintf(name, sizeof name, "common rare%u.mp3", i);
    assert_int_equal(add(ix, 1 + i % 7, name, i), INDEX_OK);
  }
  p = w_get(ix, "common");
  assert_int_equal(p->len, 3001);
  assert_true(posting_cap(p) >= p->len && posting_cap(p) <= 2 * p->len + 8);
  const Ref *r = posting_refs(p);
  for (uint32_t i = 1; i < p->len; i++)
    assert_true(r[i - 1] < r[i]);
  assert_int_equal(search(ix, "common rare2999", h, 8), 1);
  assert_int_equal(search(ix, "rare1 common", h, 8), 1);
  /* Removals compact and shrink the moved list; the rest is still found. */
  for (uint64_t o = 1; o <= 6; o++)
    index_remove_owner(ix, o);
  p = w_get(ix, "common");
  assert_non_null(p);
  assert_true(posting_cap(p) < 3000);                    /* shrunk */
  assert_int_equal(search(ix, "common rare6", h, 8), 1); /* owner 7's */
  assert_int_equal(search(ix, "common rare8", h, 8), 0);
  /* A keyword of 255 bytes (the most a name holds). */
  char longname[INDEX_NAME_MAX + 1];
  memset(longname, 'k', INDEX_NAME_MAX);
  longname[INDEX_NAME_MAX] = '\0';
  assert_int_equal(add(ix, 9, longname, 9999), INDEX_OK);
  assert_int_equal(search(ix, longname, h, 8), 1);
  p = w_get(ix, longname);
  assert_int_equal(p->wlen, INDEX_NAME_MAX);
  /* A query keyword longer than any name's matches nothing. */
  char longq[INDEX_NAME_MAX + 2];
  memset(longq, 'k', INDEX_NAME_MAX + 1);
  longq[INDEX_NAME_MAX + 1] = '\0';
  assert_int_equal(search(ix, longq, h, 8), 0);
  index_free(ix);
}

#define CHURN_NAME "round%d owner%u file%u shared %0150u.bin"

/* A keyword's list never holds more than the 4 slots (16 bytes) per live
 * ref that INDEX_REF_COST charges, however adds and removals interleave:
 * a compaction shrinks whatever fits more than twice the live refs. (The
 * old rule, shrink below a quarter, left 8 per live ref after a second
 * compaction.) One owner per entry, so entries go one at a time. */
static void test_list_within_charge(void **state)
{
  (void)state;
  Index *ix = index_new(100000);
  char name[64];
  uint32_t next = 1, first = 1;
  for (; next <= 8000; next++) {
    snprintf(name, sizeof name, "kw u%u", next);
    assert_int_equal(add(ix, next, name, next), INDEX_OK);
  }
  srand(7);
  for (int step = 0; step < 30000 && first < next; step++) {
    if (rand() % 4 == 0) {
      snprintf(name, sizeof name, "kw u%u", next);
      assert_int_equal(add(ix, next, name, next), INDEX_OK);
      next++;
    } else {
      index_remove_owner(ix, first++);
    }
    Posting *p = w_get(ix, "kw");
    if (!p)
      break;
    uint32_t live = p->len - p->dead;
    assert_true(posting_cap(p) <= 4 * (size_t)live + 8);
  }
  index_free(ix);
}

/* Adds and removals in bulk, checked against what a user could see, so
 * that list compaction, name-arena compaction (names are long, so the live
 * ones span several arena blocks) and table growth are exercised. */
static void test_churn(void **state)
{
  (void)state;
  Index *ix = index_new(100000);
  char name[256];
  for (int round = 0; round < 4; round++) {
    for (uint32_t o = 0; o < 40; o++)
      for (uint32_t i = 0; i < 500; i++) {
        snprintf(name, sizeof name, CHURN_NAME, round, o, i, i);
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
  /* Every surviving name is intact after the arena moved them. */
  for (uint32_t o = 0; o < 40; o++)
    for (uint32_t i = 0; i < 500; i += 7) {
      char q[64];
      snprintf(q, sizeof q, "owner%u file%u round3", o, i);
      snprintf(name, sizeof name, CHURN_NAME, 3, o, i, i);
      size_t n = search(ix, q, h, 1000);
      assert_int_equal(n, 1);
      assert_true(has_hit(h, n, name));
    }
  assert_true(ix->nblocks >= 3);
  assert_int_equal(search(ix, "file499", h, 1000), 40);
  uint8_t cid[32];
  mk_id(cid, 7 * 1000 + 499, 0xCC);
  /* Every round used the same content ids; only round 3's remain. */
  assert_int_equal(index_lookup_cid(ix, cid, h, 10), 1);
  /* The keyword and stamp tables hold exactly the live lists and entries,
   * each where a lookup finds it, after all the removals' shifting. */
  size_t lists = 0;
  for (size_t w = 0; w < ix->w_tab.cap; w++) {
    uint32_t id = ix->w_tab.tab[w];
    if (id == SLOTS_EMPTY)
      continue;
    Posting *p = ix->words[id];
    char word[INDEX_NAME_MAX + 1];
    memcpy(word, p->word, p->wlen);
    word[p->wlen] = '\0';
    lists++;
    assert_int_equal(w_id(ix, word), id);
    assert_true(p->len <= posting_cap(p));
    assert_true(p->len > p->dead);
  }
  assert_int_equal(lists, ix->w_tab.used);
  size_t stamped = 0;
  for (size_t b = 0; b < ix->st.cap; b++) {
    uint32_t sl = ix->st.tab[b];
    if (sl == NIL)
      continue;
    stamped++;
    assert_int_equal(st_slot(ix, ix->slots[sl].stamp), sl);
  }
  assert_int_equal(stamped, index_size(ix));
  assert_int_equal(ix->st.used, index_size(ix));
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

/* ---- random operations checked against a plain model ------------------- */

#define M_WORDS 24
#define M_OWNERS 40
#define M_CAP 60
#define M_MAX (M_OWNERS * M_CAP)
#define M_CIDS 5050 /* 50 popular, the rest rare: chains grow and empty */

static const char *const m_vocab[M_WORDS] = {
    "red",  "green", "blue", "cyan", "mauve", "ochre", "teal", "navy",
    "rose", "sand",  "jade", "plum", "ruby",  "gold",  "iron", "zinc",
    "lead", "tin",   "oak",  "pine", "elm",   "ash",   "fir",  "yew",
};

typedef struct {
  bool live;
  uint64_t owner;
  char name[64];
  uint32_t cid;
  unsigned words; /* bit i: m_vocab[i] is in the name */
} MEntry;

static MEntry model[M_MAX * 4];
static size_t model_n;

static uint64_t m_rng = 0x1234567887654321u;

static uint32_t m_rand(uint32_t n)
{
  m_rng ^= m_rng << 13;
  m_rng ^= m_rng >> 7;
  m_rng ^= m_rng << 17;
  return (uint32_t)(m_rng % n);
}

static size_t m_owner_entries(uint64_t owner)
{
  size_t c = 0;
  for (size_t i = 0; i < model_n; i++)
    c += model[i].live && model[i].owner == owner;
  return c;
}

static void m_compact(void)
{
  size_t n = 0;
  for (size_t i = 0; i < model_n; i++)
    if (model[i].live)
      model[n++] = model[i];
  model_n = n;
}

static void m_check_queries(Index *ix)
{
  static IndexHit h[M_MAX];
  size_t live = 0, owners = 0;
  for (size_t i = 0; i < model_n; i++)
    live += model[i].live;
  for (uint64_t o = 0; o < M_OWNERS; o++)
    owners += m_owner_entries(o) > 0;
  assert_int_equal(index_size(ix), live);
  assert_int_equal(index_owner_count(ix), owners);

  /* A content-id lookup answers once per owner. */
  static size_t per_cid[M_CIDS];
  static uint64_t owners_of[M_CIDS]; /* bit o: owner o has the cid */
  memset(per_cid, 0, sizeof per_cid);
  memset(owners_of, 0, sizeof owners_of);
  for (size_t i = 0; i < model_n; i++)
    if (model[i].live && !(owners_of[model[i].cid] & (1ull << model[i].owner))) {
      owners_of[model[i].cid] |= 1ull << model[i].owner;
      per_cid[model[i].cid]++;
    }
  for (uint32_t c = 0; c < M_CIDS; c++) {
    uint8_t cid[32];
    mk_id(cid, c, 0xCC);
    size_t n = index_lookup_cid(ix, cid, h, M_MAX);
    assert_int_equal(n, per_cid[c]);
    for (size_t i = 0; i < n; i++)
      assert_memory_equal(h[i].cid, cid, 32);
  }

  for (int q = 0; q < 60; q++) {
    unsigned want = 0;
    char query[128] = "";
    int nw = 1 + (int)m_rand(3);
    for (int w = 0; w < nw; w++) {
      uint32_t k = m_rand(M_WORDS);
      want |= 1u << k;
      strcat(query, w % 2 ? " " : " .");
      strcat(query, m_vocab[k]);
    }
    size_t expect = 0;
    for (size_t i = 0; i < model_n; i++)
      expect += model[i].live && (model[i].words & want) == want;
    size_t n = search(ix, query, h, M_MAX);
    assert_int_equal(n, expect);
    /* Every hit matches and is a distinct live entry: with equal counts,
     * the hit set is the expected set. */
    for (size_t i = 0; i < n; i++) {
      size_t found = SIZE_MAX;
      for (size_t j = 0; j < model_n && found == SIZE_MAX; j++) {
        const MEntry *m = &model[j];
        uint8_t peer[32], cid[32];
        mk_id(peer, (uint32_t)m->owner, 0xAA);
        mk_id(cid, m->cid, 0xCC);
        if (m->live && h[i].name_len == strlen(m->name) &&
            memcmp(h[i].name, m->name, h[i].name_len) == 0 && memcmp(h[i].peer, peer, 32) == 0 &&
            memcmp(h[i].cid, cid, 32) == 0)
          found = j;
      }
      assert_true(found != SIZE_MAX);
      assert_true((model[found].words & want) == want);
      for (size_t j = 0; j < i; j++)
        assert_false(h[j].name == h[i].name);
    }
  }
}

static void test_against_model(void **state)
{
  (void)state;
  Index *ix = index_new(M_CAP);
  size_t adds = 0;
  model_n = 0;
  for (int step = 0; step < 200000; step++) {
    uint64_t owner = m_rand(M_OWNERS);
    if (m_rand(30) == 0) {
      size_t expect = m_owner_entries(owner);
      assert_int_equal(index_remove_owner(ix, owner), expect);
      for (size_t i = 0; i < model_n; i++)
        if (model[i].owner == owner)
          model[i].live = false;
      m_compact();
    } else {
      uint32_t cid = m_rand(2) ? m_rand(50) : 50 + m_rand(M_CIDS - 50);
      MEntry m = {.live = true, .owner = owner, .cid = cid};
      int nw = 1 + (int)m_rand(4);
      for (int w = 0; w < nw; w++) {
        uint32_t k = m_rand(M_WORDS);
        strcat(m.name, w ? "_" : "");
        if (m_rand(4) == 0) {
          strcat(m.name, "Z"); /* "z" is no query word */
        } else {
          strcat(m.name, m_vocab[k]);
          m.words |= 1u << k;
        }
      }
      IndexResult want = INDEX_OK;
      for (size_t i = 0; i < model_n; i++)
        if (model[i].live && model[i].owner == owner && model[i].cid == m.cid &&
            strcmp(model[i].name, m.name) == 0)
          want = INDEX_DUPLICATE;
      if (want == INDEX_OK && m_owner_entries(owner) >= M_CAP)
        want = INDEX_OWNER_FULL;
      assert_int_equal(add(ix, owner, m.name, m.cid), want);
      if (want == INDEX_OK) {
        model[model_n++] = m;
        adds++;
      }
    }
    if (step % 10000 == 9999)
      m_check_queries(ix);
  }
  /* The stamp counter went round at least once. */
  assert_true(adds > 2 * INDEX_STAMP_LIMIT);
  index_free(ix);
}

/* Reads owner's entries with a cursor in batches of batch; marks each name
 * read in seen (names "<prefix><i>"), counts every read in *reads. */
static IndexWalk walk_batch(Index *ix, uint64_t owner, IndexCursor *cur, size_t batch,
                            const char *prefix, int *seen, size_t nseen, size_t *reads)
{
  IndexHit h[16];
  size_t n;
  IndexWalk w = index_owner_walk(ix, owner, cur, h, batch, &n);
  for (size_t i = 0; i < n; i++) {
    size_t pl = strlen(prefix);
    assert_true(h[i].name_len > pl && memcmp(h[i].name, prefix, pl) == 0);
    char num[16];
    memcpy(num, h[i].name + pl, h[i].name_len - pl);
    num[h[i].name_len - pl] = '\0';
    size_t k = strtoul(num, NULL, 10);
    assert_true(k < nseen);
    seen[k]++;
    (*reads)++;
  }
  return w;
}

/* The snapshot cursor (issue 12): a group's leader reads an owner's
 * entries back from the index in batches, and other owners, or this one,
 * change in between. */
static void test_owner_walk(void **state)
{
  (void)state;
  Index *ix = index_new(1000);
  char name[32];
  for (int i = 0; i < 10; i++) {
    snprintf(name, sizeof name, "a%d", i);
    assert_int_equal(add(ix, 1, name, (uint32_t)i), INDEX_OK);
  }
  for (int i = 0; i < 5; i++) {
    snprintf(name, sizeof name, "b%d", i);
    assert_int_equal(add(ix, 2, name, (uint32_t)(100 + i)), INDEX_OK);
  }

  /* Other owners come and go and this one gains an entry between batches:
   * every entry it had when the walk began is read exactly once. */
  IndexCursor cur = {0};
  int seen[16] = {0};
  size_t reads = 0;
  assert_int_equal(walk_batch(ix, 1, &cur, 3, "a", seen, 16, &reads), INDEX_WALK_OK);
  assert_int_equal(reads, 3);
  assert_false(cur.done);
  assert_int_equal(index_remove_owner(ix, 2), 5); /* frees slots ... */
  for (int i = 0; i < 5; i++) {                   /* ... that others take */
    snprintf(name, sizeof name, "c%d", i);
    assert_int_equal(add(ix, 3, name, (uint32_t)(200 + i)), INDEX_OK);
  }
  assert_int_equal(add(ix, 1, "a10", 10), INDEX_OK); /* newer than the walk */
  while (!cur.done)
    assert_int_equal(walk_batch(ix, 1, &cur, 3, "a", seen, 16, &reads), INDEX_WALK_OK);
  assert_int_equal(reads, 10);
  for (int i = 0; i < 10; i++)
    assert_int_equal(seen[i], 1);
  assert_int_equal(seen[10], 0);
  /* Done stays done. */
  assert_int_equal(walk_batch(ix, 1, &cur, 3, "a", seen, 16, &reads), INDEX_WALK_OK);
  assert_int_equal(reads, 10);

  /* The owner is removed and publishes again (a reset) between batches:
   * the rest of the old state is gone, and the walk says so. */
  memset(&cur, 0, sizeof cur);
  memset(seen, 0, sizeof seen);
  reads = 0;
  assert_int_equal(walk_batch(ix, 3, &cur, 2, "c", seen, 16, &reads), INDEX_WALK_OK);
  assert_int_equal(reads, 2);
  index_remove_owner(ix, 3);
  for (int i = 0; i < 5; i++) {
    snprintf(name, sizeof name, "c%d", i); /* the same names, other slots */
    assert_int_equal(add(ix, 3, name, (uint32_t)(300 + i)), INDEX_OK);
  }
  assert_int_equal(walk_batch(ix, 3, &cur, 2, "c", seen, 16, &reads), INDEX_WALK_CHANGED);
  assert_true(cur.done);
  assert_int_equal(reads, 2);
  /* Removed for good between batches: the same. */
  memset(&cur, 0, sizeof cur);
  assert_int_equal(walk_batch(ix, 3, &cur, 2, "c", seen, 16, &reads), INDEX_WALK_OK);
  index_remove_owner(ix, 3);
  assert_int_equal(walk_batch(ix, 3, &cur, 2, "c", seen, 16, &reads), INDEX_WALK_CHANGED);

  /* The index renumbers its stamps between batches: the walk starts over,
   * so entries may be read twice but none is missed. */
  memset(&cur, 0, sizeof cur);
  memset(seen, 0, sizeof seen);
  reads = 0;
  assert_int_equal(walk_batch(ix, 1, &cur, 4, "a", seen, 16, &reads), INDEX_WALK_OK);
  assert_true(stamps_renumber(ix));
  while (!cur.done)
    assert_int_equal(walk_batch(ix, 1, &cur, 4, "a", seen, 16, &reads), INDEX_WALK_OK);
  for (int i = 0; i <= 10; i++)
    assert_true(seen[i] >= 1);
  assert_int_equal(reads, 4 + 11);

  /* An owner with no entries: nothing, and done. */
  memset(&cur, 0, sizeof cur);
  assert_int_equal(walk_batch(ix, 99, &cur, 4, "a", seen, 16, &reads), INDEX_WALK_OK);
  assert_true(cur.done);
  index_free(ix);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_multi_term_search),
      cmocka_unit_test(test_remove_owner),
      cmocka_unit_test(test_lookup_cid_all_owners),
      cmocka_unit_test(test_lookup_cid_liar_many_names),
      cmocka_unit_test(test_lookup_cid_no_order_bias),
      cmocka_unit_test(test_owner_cap),
      cmocka_unit_test(test_duplicate_and_badname),
      cmocka_unit_test(test_max_results),
      cmocka_unit_test(test_slot_reuse_no_resurrection),
      cmocka_unit_test(test_keyword_lists_inline),
      cmocka_unit_test(test_list_within_charge),
      cmocka_unit_test(test_churn),
      cmocka_unit_test(test_remove_large_owner_fast),
      cmocka_unit_test(test_against_model),
      cmocka_unit_test(test_owner_walk),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
