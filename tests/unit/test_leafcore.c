/* test_leafcore.c - the leaf's protocol core with a fake clock and a fake RNG.
 *
 * The test plays the shell and the super node: it reports dials, connects
 * and disconnects, feeds encoded messages in, and decodes what the core asks
 * to send.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "identity.h"
#include "leafcore.h"
#include "netcert.h"
#include "wire.h"

#define T0 1000000u

/* The RNG: a fixed 16-bit value (jitter extremes) or, when random is set, a
 * splitmix64 stream. */
typedef struct {
  bool random;
  uint16_t value;
  uint64_t state;
  unsigned calls;
} Rng;

static void rng_fill(uint8_t *out, size_t n, void *ctx)
{
  Rng *r = ctx;
  r->calls++;
  for (size_t i = 0; i < n; i++) {
    if (r->random) {
      uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      out[i] = (uint8_t)(z ^ (z >> 31));
    } else {
      out[i] = (uint8_t)(r->value >> (8 * (i % 2))); /* both bytes equal in the tests */
    }
  }
}

/* All queued actions, in order. Release with actions_free. */
static GArray *actions(LeafCore *c)
{
  GArray *a = g_array_new(FALSE, TRUE, sizeof(LeafAction));
  LeafAction act;
  while (leaf_core_next_action(c, &act))
    g_array_append_val(a, act);
  return a;
}

static void actions_free(GArray *a)
{
  for (guint i = 0; i < a->len; i++)
    leaf_action_clear(&g_array_index(a, LeafAction, i));
  g_array_unref(a);
}

static LeafAction *act(GArray *a, guint i)
{
  assert_true(i < a->len);
  return &g_array_index(a, LeafAction, i);
}

/* Decodes a SEND action; *m borrows from it. */
static void sent(const LeafAction *a, WireMsg *m, uint8_t type)
{
  assert_int_equal(a->kind, LEAF_ACT_SEND);
  assert_int_equal(wire_decode(a->data, a->len, m), WIRE_OK);
  assert_int_equal(m->type, type);
}

static unsigned count_kind(GArray *a, LeafActionKind kind)
{
  unsigned n = 0;
  for (guint i = 0; i < a->len; i++)
    n += act(a, i)->kind == kind;
  return n;
}

/* Drains the queue and tells whether it held nothing. */
static bool quiet(LeafCore *c)
{
  GArray *a = actions(c);
  bool none = a->len == 0;
  actions_free(a);
  return none;
}

static void feed(LeafCore *c, const WireMsg *m, uint64_t now)
{
  Buf b;
  buf_init(&b);
  assert_true(wire_encode(m, &b));
  leaf_core_recv(c, LEAF_SLOT_PRIMARY, b.data, b.len, now);
  buf_free(&b);
}

static void cid_of(const char *name, uint8_t cid[32])
{
  memset(cid, 0x77, 32);
  for (size_t i = 0; name[i]; i++)
    cid[i % 32] = (uint8_t)(cid[i % 32] * 33 + (uint8_t)name[i]);
}

/* A manifest of n files named "file-NNNN.dat". */
static LeafEntry *make_manifest(size_t n)
{
  LeafEntry *e = g_new0(LeafEntry, n);
  for (size_t i = 0; i < n; i++) {
    e[i].name = g_strdup_printf("file-%04zu.dat", i);
    e[i].size = 100 + i;
    cid_of(e[i].name, e[i].cid);
  }
  return e;
}

static void free_manifest(LeafEntry *e, size_t n)
{
  for (size_t i = 0; i < n; i++)
    g_free(e[i].name);
  g_free(e);
}

typedef struct {
  LeafCore *core;
  Rng rng;
  LeafConfig cfg;
} Fixture;

static const uint8_t SN_ID[32] = {0x5e, 0x5e};

/* The primary session opens and the super node (ungrouped: it leads, term
 * 0) says ATTACHED holding nothing of ours, so the leaf publishes. */
static void attach(Fixture *f, uint64_t now)
{
  leaf_core_connected(f->core, LEAF_SLOT_PRIMARY, SN_ID, now);
  WireMsg m = {.type = MSG_ATTACHED};
  feed(f->core, &m, now);
}

static Fixture *fixture(void)
{
  Fixture *f = g_new0(Fixture, 1);
  f->rng.value = 0x8080;
  leaf_config_defaults(&f->cfg);
  f->core = leaf_core_new(&f->cfg, rng_fill, &f->rng);
  assert_non_null(f->core);
  return f;
}

static void fixture_free(Fixture *f)
{
  leaf_core_free(f->core);
  g_free(f);
}

/* start + connected, with the HELLO/PUBLISH output thrown away. */
static Fixture *connected_fixture(uint64_t now)
{
  Fixture *f = fixture();
  leaf_core_start(f->core, now);
  attach(f, now);
  actions_free(actions(f->core));
  assert_true(leaf_core_is_connected(f->core));
  return f;
}

/* Checks that a's PUBLISH frames starting at index first carry exactly the
 * manifest e[0..n), in order, with reset only on the first. Returns how many
 * frames there were. */
static unsigned check_publish(GArray *a, guint first, const LeafEntry *e, size_t n)
{
  size_t seen = 0;
  unsigned frames = 0;
  for (guint i = first; i < a->len; i++, frames++) {
    WireMsg m;
    sent(act(a, i), &m, MSG_PUBLISH);
    assert_int_equal(m.u.publish.reset, i == first);
    assert_true(m.u.publish.count <= WIRE_MAX_ENTRIES);
    for (uint16_t k = 0; k < m.u.publish.count; k++, seen++) {
      const WireEntry *w = &m.u.publish.entries[k];
      assert_true(seen < n);
      assert_int_equal(w->name.len, strlen(e[seen].name));
      assert_memory_equal(w->name.p, e[seen].name, w->name.len);
      assert_int_equal(w->size, e[seen].size);
      assert_memory_equal(w->cid, e[seen].cid, 32);
    }
    wire_msg_clear(&m);
  }
  assert_int_equal(seen, n);
  return frames;
}

/* --- session ------------------------------------------------------------------- */

static void test_start_dials(void **state)
{
  (void)state;
  Fixture *f = fixture();
  assert_true(quiet(f->core));
  assert_false(leaf_core_is_connected(f->core));
  leaf_core_start(f->core, T0);
  GArray *a = actions(f->core);
  assert_int_equal(a->len, 1);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_DIAL);
  actions_free(a);
  /* A second start while dialing does not dial twice. */
  leaf_core_start(f->core, T0);
  leaf_core_tick(f->core, T0 + 100);
  assert_true(quiet(f->core));
  assert_false(leaf_core_is_connected(f->core));
  fixture_free(f);
}

static void test_connect_says_hello_and_publishes(void **state)
{
  (void)state;
  Fixture *f = fixture();
  LeafEntry *e = make_manifest(3);
  leaf_core_set_manifest(f->core, e, 3, T0);
  assert_int_equal(leaf_core_manifest_size(f->core), 3);
  leaf_core_start(f->core, T0);
  assert_true(!quiet(f->core)); /* the DIAL; nothing is published before the session */

  attach(f, T0 + 10);
  assert_true(leaf_core_is_connected(f->core));
  GArray *a = actions(f->core);
  assert_int_equal(a->len, 2);
  WireMsg m;
  sent(act(a, 0), &m, MSG_HELLO);
  assert_int_equal(m.u.hello.role, ROLE_LEAF);
  assert_int_equal(m.u.hello.listen.len, 0);
  assert_true(m.u.hello.agent.len > 0);
  wire_msg_clear(&m);
  assert_int_equal(check_publish(a, 1, e, 3), 1);
  actions_free(a);
  free_manifest(e, 3);
  fixture_free(f);
}

static void test_publish_in_batches(void **state)
{
  (void)state;
  Fixture *f = fixture();
  LeafEntry *e = make_manifest(300);
  leaf_core_set_manifest(f->core, e, 300, T0);
  leaf_core_start(f->core, T0);
  attach(f, T0);
  GArray *a = actions(f->core);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_DIAL);
  WireMsg m;
  sent(act(a, 1), &m, MSG_HELLO);
  wire_msg_clear(&m);
  /* 300 = 128 + 128 + 44, the first one replacing what was published. */
  assert_int_equal(check_publish(a, 2, e, 300), 3);
  sent(act(a, 2), &m, MSG_PUBLISH);
  assert_int_equal(m.u.publish.count, WIRE_MAX_ENTRIES);
  wire_msg_clear(&m);
  sent(act(a, 4), &m, MSG_PUBLISH);
  assert_int_equal(m.u.publish.count, 300 - 2 * WIRE_MAX_ENTRIES);
  wire_msg_clear(&m);
  actions_free(a);

  /* A new manifest while connected is published at once, replacing. */
  leaf_core_set_manifest(f->core, e + 10, 5, T0 + 1);
  a = actions(f->core);
  assert_int_equal(check_publish(a, 0, e + 10, 5), 1);
  actions_free(a);

  /* Sharing nothing any more still tells the super node (an empty reset). */
  leaf_core_set_manifest(f->core, NULL, 0, T0 + 2);
  a = actions(f->core);
  assert_int_equal(a->len, 1);
  sent(act(a, 0), &m, MSG_PUBLISH);
  assert_true(m.u.publish.reset);
  assert_int_equal(m.u.publish.count, 0);
  wire_msg_clear(&m);
  actions_free(a);
  free_manifest(e, 300);
  fixture_free(f);
}

static void test_unpublishable_names_skipped(void **state)
{
  (void)state;
  Fixture *f = connected_fixture(T0);
  char long_name[WIRE_MAX_NAME + 2];
  memset(long_name, 'x', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  LeafEntry e[4] = {
      {.name = (char *)"ok.txt", .size = 1},
      {.name = (char *)"", .size = 2},
      {.name = (char *)"bad\xff.txt", .size = 3},
      {.name = long_name, .size = 4},
  };
  leaf_core_set_manifest(f->core, e, 4, T0);
  assert_int_equal(leaf_core_manifest_size(f->core), 1);
  GArray *a = actions(f->core);
  assert_int_equal(check_publish(a, 0, e, 1), 1);
  actions_free(a);
  fixture_free(f);
}

/* --- redial with backoff ------------------------------------------------------- */

/* The delay before the redial after a disconnect at now: tick at the
 * deadline minus one (no DIAL), then at the deadline (DIAL). */
static uint64_t redial_delay(Fixture *f, uint64_t now)
{
  leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, now);
  assert_false(leaf_core_is_connected(f->core));
  uint64_t d = leaf_core_next_deadline(f->core);
  assert_true(d > now);
  leaf_core_tick(f->core, d - 1);
  assert_true(quiet(f->core));
  leaf_core_tick(f->core, d);
  GArray *a = actions(f->core);
  assert_int_equal(a->len, 1);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_DIAL);
  actions_free(a);
  return d - now;
}

static uint64_t base_delay(const LeafConfig *cfg, unsigned failures)
{
  uint64_t d = cfg->backoff_min_ms;
  for (unsigned i = 1; i < failures; i++)
    d = d * 2 > cfg->backoff_max_ms ? cfg->backoff_max_ms : d * 2;
  return d;
}

static void test_backoff_doubles_within_jitter(void **state)
{
  (void)state;
  /* Jitter extremes: the RNG at 0 gives 3/4 of the delay, at max 5/4. */
  uint16_t extremes[] = {0x0000, 0xFFFF};
  for (int x = 0; x < 2; x++) {
    Fixture *f = fixture();
    f->rng.value = extremes[x];
    uint64_t now = T0;
    leaf_core_start(f->core, now);
    actions_free(actions(f->core));
    uint64_t prev = 0;
    for (unsigned k = 1; k <= 12; k++) {
      uint64_t d = redial_delay(f, now);
      assert_int_equal(leaf_core_failures(f->core), k);
      uint64_t base = base_delay(&f->cfg, k);
      assert_int_equal(d, x == 0 ? base * 3 / 4 : base * 3 / 4 + base / 2);
      if (prev && base < f->cfg.backoff_max_ms) /* doubles per failure (to the ms) */
        assert_true(d + 1 >= 2 * prev && d <= 2 * prev + 1);
      prev = d;
      now += d;
    }
    /* Capped: twelve failures wait no longer than the cap (plus jitter). */
    assert_int_equal(prev, x == 0 ? f->cfg.backoff_max_ms * 3 / 4 : f->cfg.backoff_max_ms * 5 / 4);
    fixture_free(f);
  }

  /* Random jitter stays inside [3/4, 5/4] of the capped delay and varies. */
  Fixture *f = fixture();
  f->rng.random = true;
  f->rng.state = 42;
  uint64_t now = T0;
  leaf_core_start(f->core, now);
  actions_free(actions(f->core));
  uint64_t lo = UINT64_MAX, hi = 0;
  for (unsigned k = 1; k <= 40; k++) {
    uint64_t d = redial_delay(f, now);
    uint64_t base = base_delay(&f->cfg, k);
    assert_true(d >= base * 3 / 4 && d <= base * 5 / 4);
    if (base == f->cfg.backoff_max_ms) {
      lo = d < lo ? d : lo;
      hi = d > hi ? d : hi;
    }
    now += d;
  }
  assert_true(hi > lo); /* not every leaf redials in the same millisecond */
  fixture_free(f);
}

static void test_success_resets_backoff(void **state)
{
  (void)state;
  Fixture *f = fixture();
  f->rng.value = 0x0000;
  leaf_core_start(f->core, T0);
  actions_free(actions(f->core));
  uint64_t now = T0;
  for (int k = 0; k < 5; k++)
    now += redial_delay(f, now);
  assert_int_equal(leaf_core_failures(f->core), 5);
  attach(f, now);
  assert_int_equal(leaf_core_failures(f->core), 0);
  actions_free(actions(f->core));
  assert_int_equal(redial_delay(f, now + 100), f->cfg.backoff_min_ms * 3 / 4);
  fixture_free(f);
}

static void test_reconnect_republishes(void **state)
{
  (void)state;
  Fixture *f = fixture();
  LeafEntry *e = make_manifest(130);
  leaf_core_set_manifest(f->core, e, 130, T0);
  leaf_core_start(f->core, T0);
  attach(f, T0);
  actions_free(actions(f->core));

  uint64_t now = T0 + 5000;
  now += redial_delay(f, now); /* the session dropped; the DIAL comes after backoff */
  attach(f, now);
  GArray *a = actions(f->core);
  WireMsg m;
  sent(act(a, 0), &m, MSG_HELLO);
  wire_msg_clear(&m);
  assert_int_equal(check_publish(a, 1, e, 130), 2); /* everything, again, from a reset */
  actions_free(a);
  free_manifest(e, 130);
  fixture_free(f);
}

/* --- searches --------------------------------------------------------------------- */

static void test_search_while_disconnected_fails_at_once(void **state)
{
  (void)state;
  Fixture *f = fixture();
  uint32_t id = leaf_core_search(f->core, QUERY_KEYWORDS, "abba", 3, 2000, T0);
  GArray *a = actions(f->core);
  assert_int_equal(a->len, 1); /* nothing is sent */
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_SEARCH_DONE);
  assert_int_equal(act(a, 0)->search, id);
  assert_non_null(act(a, 0)->reason);
  actions_free(a);

  /* Dialing is not connected either. */
  leaf_core_start(f->core, T0);
  actions_free(actions(f->core));
  uint32_t id2 = leaf_core_search(f->core, QUERY_KEYWORDS, "abba", 3, 2000, T0);
  assert_int_not_equal(id2, id);
  a = actions(f->core);
  assert_int_equal(a->len, 1);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_SEARCH_DONE);
  assert_non_null(act(a, 0)->reason);
  actions_free(a);
  /* Nothing is left pending for the deadline. */
  assert_true(leaf_core_next_deadline(f->core) == UINT64_MAX);
  fixture_free(f);
}

static void hits_msg(WireMsg *m, WireHit *h, uint32_t req, const char *const *names, size_t n,
                     uint8_t peer_tag)
{
  memset(m, 0, sizeof *m);
  m->type = MSG_SEARCH_HITS;
  m->u.hits.req = req;
  m->u.hits.count = (uint16_t)n;
  m->u.hits.hits = h;
  for (size_t i = 0; i < n; i++) {
    h[i].name = wire_str(names[i], strlen(names[i]));
    h[i].size = 5000 + i;
    cid_of(names[i], h[i].cid);
    memset(h[i].peer, peer_tag, 32);
  }
}

static void test_search_collects_hits_until_deadline(void **state)
{
  (void)state;
  Fixture *f = connected_fixture(T0);
  uint64_t now = T0 + 100;
  uint32_t id = leaf_core_search(f->core, QUERY_KEYWORDS, "Dancing Queen", 3, 2000, now);
  GArray *a = actions(f->core);
  assert_int_equal(a->len, 1);
  WireMsg m;
  sent(act(a, 0), &m, MSG_SEARCH);
  assert_int_equal(m.u.search.req, id);
  assert_int_equal(m.u.search.ttl, 3);
  assert_int_equal(m.u.search.kind, QUERY_KEYWORDS);
  assert_int_equal(m.u.search.text.len, 13);
  assert_memory_equal(m.u.search.text.p, "Dancing Queen", 13);
  wire_msg_clear(&m);
  actions_free(a);
  assert_true(leaf_core_next_deadline(f->core) <= now + 2000);

  const char *names[] = {"ABBA - Dancing Queen.mp3", "dancing queen (live).flac"};
  WireHit h[3];
  hits_msg(&m, h, id, names, 2, 0xB1);
  feed(f->core, &m, now + 10);
  a = actions(f->core);
  assert_int_equal(a->len, 2);
  for (int i = 0; i < 2; i++) {
    LeafAction *x = act(a, (guint)i);
    assert_int_equal(x->kind, LEAF_ACT_HIT);
    assert_int_equal(x->search, id);
    assert_string_equal(x->name, names[i]);
    assert_int_equal(x->size, 5000 + (uint64_t)i);
    uint8_t cid[32], peer[32];
    cid_of(names[i], cid);
    memset(peer, 0xB1, 32);
    assert_memory_equal(x->cid, cid, 32);
    assert_memory_equal(x->peer, peer, 32);
  }
  actions_free(a);

  /* The same hits again (another path through the mesh): dropped. */
  feed(f->core, &m, now + 20);
  assert_true(quiet(f->core));
  /* The same file from another leaf is another source: kept. */
  hits_msg(&m, h, id, names, 1, 0xB2);
  feed(f->core, &m, now + 30);
  a = actions(f->core);
  assert_int_equal(a->len, 1);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_HIT);
  assert_int_equal(act(a, 0)->peer[0], 0xB2);
  actions_free(a);

  /* Hits for a search id nobody asked for: ignored, session kept. */
  hits_msg(&m, h, id + 100, names, 2, 0xB3);
  feed(f->core, &m, now + 40);
  assert_true(quiet(f->core));
  assert_true(leaf_core_is_connected(f->core));

  /* Done exactly at the deadline, without an error. */
  leaf_core_tick(f->core, now + 1999);
  assert_int_equal(count_kind(a = actions(f->core), LEAF_ACT_SEARCH_DONE), 0);
  actions_free(a);
  leaf_core_tick(f->core, now + 2000);
  a = actions(f->core);
  assert_int_equal(count_kind(a, LEAF_ACT_SEARCH_DONE), 1);
  for (guint i = 0; i < a->len; i++)
    if (act(a, i)->kind == LEAF_ACT_SEARCH_DONE) {
      assert_int_equal(act(a, i)->search, id);
      assert_null(act(a, i)->reason);
    }
  actions_free(a);

  /* Late hits of the finished search are ignored. */
  hits_msg(&m, h, id, names, 2, 0xB4);
  feed(f->core, &m, now + 2100);
  assert_true(quiet(f->core));
  fixture_free(f);
}

static void test_search_hit_cap_and_bad_query(void **state)
{
  (void)state;
  Fixture *f = fixture();
  f->cfg.max_hits = 3;
  leaf_core_free(f->core);
  f->core = leaf_core_new(&f->cfg, rng_fill, &f->rng);
  leaf_core_start(f->core, T0);
  attach(f, T0);
  actions_free(actions(f->core));

  uint32_t id = leaf_core_search(f->core, QUERY_KEYWORDS, "song", 2, 1000, T0);
  actions_free(actions(f->core));
  const char *names[] = {"song 1", "song 2", "song 3", "song 4", "song 5"};
  WireHit h[5];
  WireMsg m;
  hits_msg(&m, h, id, names, 5, 0xC1);
  feed(f->core, &m, T0 + 1);
  GArray *a = actions(f->core);
  assert_int_equal(count_kind(a, LEAF_ACT_HIT), 3);
  actions_free(a);

  /* A search the wire cannot carry completes at once with an error. */
  uint32_t bad = leaf_core_search(f->core, QUERY_KEYWORDS, "", 2, 1000, T0);
  a = actions(f->core);
  assert_int_equal(a->len, 1);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_SEARCH_DONE);
  assert_int_equal(act(a, 0)->search, bad);
  assert_non_null(act(a, 0)->reason);
  actions_free(a);
  bad = leaf_core_search(f->core, QUERY_KEYWORDS, "song", WIRE_MAX_TTL + 1, 1000, T0);
  a = actions(f->core);
  assert_int_equal(a->len, 1);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_SEARCH_DONE);
  assert_non_null(act(a, 0)->reason);
  actions_free(a);
  fixture_free(f);
}

/* Issue 11 finding 3: a leaf naming one content id 16 ways gives one hit,
 * so it cannot fill a search (or its limit) before another leaf's hit. */
static void test_search_dedups_by_peer_and_cid(void **state)
{
  (void)state;
  Fixture *f = connected_fixture(T0);
  uint32_t id = leaf_core_search(f->core, QUERY_CONTENT_ID, "aa", 3, 2000, T0);
  leaf_core_search_limit(f->core, id, 16);
  actions_free(actions(f->core));
  char names[16][16];
  const char *np[16];
  WireHit h[16];
  WireMsg m;
  for (int i = 0; i < 16; i++) {
    snprintf(names[i], sizeof names[i], "lie %d.bin", i);
    np[i] = names[i];
  }
  hits_msg(&m, h, id, np, 16, 0xE1);
  for (int i = 0; i < 16; i++)
    cid_of("the file", h[i].cid);
  feed(f->core, &m, T0 + 1);
  GArray *a = actions(f->core);
  assert_int_equal(a->len, 1);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_HIT);
  assert_int_equal(act(a, 0)->peer[0], 0xE1);
  actions_free(a);
  /* The honest leaf's hit still comes through, and the search goes on. */
  hits_msg(&m, h, id, np, 1, 0xE2);
  cid_of("the file", h[0].cid);
  feed(f->core, &m, T0 + 2);
  a = actions(f->core);
  assert_int_equal(a->len, 1);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_HIT);
  assert_int_equal(act(a, 0)->peer[0], 0xE2);
  actions_free(a);
  fixture_free(f);
}

static void test_search_limit_ends_early(void **state)
{
  (void)state;
  Fixture *f = connected_fixture(T0);
  uint32_t id = leaf_core_search(f->core, QUERY_KEYWORDS, "iso", 3, 5000, T0);
  leaf_core_search_limit(f->core, id, 2);
  leaf_core_search_limit(f->core, id + 50, 2); /* unknown id: nothing happens */
  actions_free(actions(f->core));

  const char *names[] = {"a.iso", "b.iso", "c.iso", "d.iso"};
  WireHit h[4];
  WireMsg m;
  /* A duplicate does not count towards the limit. */
  hits_msg(&m, h, id, names, 1, 0xD1);
  feed(f->core, &m, T0 + 1);
  feed(f->core, &m, T0 + 2);
  GArray *a = actions(f->core);
  assert_int_equal(a->len, 1);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_HIT);
  actions_free(a);

  /* The second distinct hit ends the search at once, without an error. */
  hits_msg(&m, h, id, names + 1, 3, 0xD1);
  feed(f->core, &m, T0 + 3);
  a = actions(f->core);
  assert_int_equal(a->len, 2);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_HIT);
  assert_string_equal(act(a, 0)->name, "b.iso");
  assert_int_equal(act(a, 1)->kind, LEAF_ACT_SEARCH_DONE);
  assert_int_equal(act(a, 1)->search, id);
  assert_null(act(a, 1)->reason);
  actions_free(a);
  feed(f->core, &m, T0 + 4);
  leaf_core_tick(f->core, T0 + 5000);
  a = actions(f->core);
  assert_int_equal(count_kind(a, LEAF_ACT_HIT) + count_kind(a, LEAF_ACT_SEARCH_DONE), 0);
  actions_free(a);

  /* A limit of 0 is no limit: the search runs to its deadline. */
  uint32_t id2 = leaf_core_search(f->core, QUERY_KEYWORDS, "iso", 3, 1000, T0 + 5000);
  leaf_core_search_limit(f->core, id2, 0);
  actions_free(actions(f->core));
  hits_msg(&m, h, id2, names, 4, 0xD2);
  feed(f->core, &m, T0 + 5001);
  a = actions(f->core);
  assert_int_equal(count_kind(a, LEAF_ACT_HIT), 4);
  assert_int_equal(count_kind(a, LEAF_ACT_SEARCH_DONE), 0);
  actions_free(a);
  fixture_free(f);
}

static void test_disconnect_fails_pending_search(void **state)
{
  (void)state;
  Fixture *f = connected_fixture(T0);
  uint32_t id = leaf_core_search(f->core, QUERY_KEYWORDS, "abba", 3, 5000, T0);
  actions_free(actions(f->core));
  leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, T0 + 10);
  GArray *a = actions(f->core);
  assert_int_equal(count_kind(a, LEAF_ACT_SEARCH_DONE), 1);
  assert_int_equal(act(a, 0)->search, id);
  assert_non_null(act(a, 0)->reason);
  actions_free(a);
  fixture_free(f);
}

/* --- keepalive and bad input ------------------------------------------------------ */

static void test_silent_super_node_closed_and_redialed(void **state)
{
  (void)state;
  Fixture *f = connected_fixture(T0);
  uint64_t ka = f->cfg.keepalive_ms;

  /* One keepalive in: a PING. */
  assert_true(leaf_core_next_deadline(f->core) <= T0 + ka);
  leaf_core_tick(f->core, T0 + ka);
  GArray *a = actions(f->core);
  assert_int_equal(a->len, 1);
  WireMsg m;
  sent(act(a, 0), &m, MSG_PING);
  wire_msg_clear(&m);
  actions_free(a);

  leaf_core_tick(f->core, T0 + 3 * ka - 1);
  a = actions(f->core);
  assert_int_equal(count_kind(a, LEAF_ACT_CLOSE), 0);
  actions_free(a);
  assert_true(leaf_core_is_connected(f->core));

  /* Three keepalives of silence: close, then redial after the backoff. */
  leaf_core_tick(f->core, T0 + 3 * ka);
  a = actions(f->core);
  assert_int_equal(a->len, 1);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_CLOSE);
  assert_non_null(act(a, 0)->reason);
  actions_free(a);
  assert_false(leaf_core_is_connected(f->core));
  uint64_t d = leaf_core_next_deadline(f->core);
  assert_true(d > T0 + 3 * ka && d <= T0 + 3 * ka + f->cfg.backoff_min_ms * 5 / 4);
  leaf_core_tick(f->core, d);
  a = actions(f->core);
  assert_int_equal(a->len, 1);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_DIAL);
  actions_free(a);
  fixture_free(f);
}

static void test_answering_super_node_kept(void **state)
{
  (void)state;
  Fixture *f = connected_fixture(T0);
  uint64_t ka = f->cfg.keepalive_ms;
  unsigned pings = 0;
  /* The super node answers every PING; time moves to the core's deadlines. */
  for (uint64_t now = T0; now < T0 + 20 * ka;) {
    now = leaf_core_next_deadline(f->core);
    leaf_core_tick(f->core, now);
    GArray *a = actions(f->core);
    assert_int_equal(count_kind(a, LEAF_ACT_CLOSE), 0);
    for (guint i = 0; i < a->len; i++) {
      WireMsg m;
      sent(act(a, i), &m, MSG_PING);
      WireMsg pong = {.type = MSG_PONG};
      pong.u.ping = m.u.ping;
      wire_msg_clear(&m);
      feed(f->core, &pong, now + 20);
      pings++;
    }
    actions_free(a);
  }
  assert_true(pings >= 19);
  assert_true(leaf_core_is_connected(f->core));
  fixture_free(f);
}

/* A super node answers only every other keepalive (WIRE_PING_SPARE, which
 * the leaf's keepalives carry): the leaf, silent-bound at 3 intervals,
 * keeps it, with an interval to spare. One that answers every fourth is
 * silent for 4 intervals and is given up. */
static void run_sparse_answers(unsigned every, bool kept)
{
  Fixture *f = connected_fixture(T0);
  uint64_t ka = f->cfg.keepalive_ms;
  unsigned pings = 0, closes = 0;
  for (uint64_t now = T0; now < T0 + 20 * ka && !closes;) {
    now = leaf_core_next_deadline(f->core);
    leaf_core_tick(f->core, now);
    GArray *a = actions(f->core);
    closes += count_kind(a, LEAF_ACT_CLOSE);
    for (guint i = 0; i < a->len && !closes; i++) {
      WireMsg m;
      sent(act(a, i), &m, MSG_PING);
      assert_true(m.u.ping & WIRE_PING_SPARE);
      if (pings++ % every == 0) {
        WireMsg pong = {.type = MSG_PONG};
        pong.u.ping = m.u.ping;
        feed(f->core, &pong, now + 20);
      }
      wire_msg_clear(&m);
    }
    actions_free(a);
  }
  assert_int_equal(closes, kept ? 0 : 1);
  assert_true(leaf_core_is_connected(f->core) == kept);
  if (kept)
    assert_true(pings >= 19);
  fixture_free(f);
}

static void test_every_other_pong_kept(void **state)
{
  (void)state;
  run_sparse_answers(2, true);
  run_sparse_answers(4, false);
}

static void test_ping_answered_with_same_nonce(void **state)
{
  (void)state;
  Fixture *f = connected_fixture(T0);
  WireMsg ping = {.type = MSG_PING};
  ping.u.ping = 0xDEADBEEFCAFEF00Dull;
  feed(f->core, &ping, T0 + 5);
  GArray *a = actions(f->core);
  assert_int_equal(a->len, 1);
  WireMsg m;
  sent(act(a, 0), &m, MSG_PONG);
  assert_true(m.u.ping == 0xDEADBEEFCAFEF00Dull);
  wire_msg_clear(&m);
  actions_free(a);
  fixture_free(f);
}

static void test_malformed_message_closes(void **state)
{
  (void)state;
  Fixture *f = connected_fixture(T0);
  /* Unknown types are a newer super node's business: ignored. */
  const uint8_t unknown[] = {WIRE_VERSION, 0xEE, 1, 2};
  leaf_core_recv(f->core, LEAF_SLOT_PRIMARY, unknown, sizeof unknown, T0 + 1);
  assert_true(quiet(f->core));
  assert_true(leaf_core_is_connected(f->core));

  uint32_t id = leaf_core_search(f->core, QUERY_KEYWORDS, "abba", 3, 5000, T0 + 2);
  actions_free(actions(f->core));
  /* A PING cut short. */
  const uint8_t bad[] = {WIRE_VERSION, MSG_PING, 0, 0, 0};
  leaf_core_recv(f->core, LEAF_SLOT_PRIMARY, bad, sizeof bad, T0 + 3);
  GArray *a = actions(f->core);
  assert_int_equal(count_kind(a, LEAF_ACT_CLOSE), 1);
  assert_non_null(act(a, 0)->reason);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_CLOSE);
  /* The pending search ends with an error. */
  assert_int_equal(count_kind(a, LEAF_ACT_SEARCH_DONE), 1);
  for (guint i = 0; i < a->len; i++)
    if (act(a, i)->kind == LEAF_ACT_SEARCH_DONE) {
      assert_int_equal(act(a, i)->search, id);
      assert_non_null(act(a, i)->reason);
    }
  actions_free(a);
  assert_false(leaf_core_is_connected(f->core));
  /* The shell then reports the session closed: no second backoff step. */
  leaf_core_disconnected(f->core, LEAF_SLOT_PRIMARY, T0 + 4);
  assert_int_equal(leaf_core_failures(f->core), 1);
  /* And it comes back. */
  leaf_core_tick(f->core, leaf_core_next_deadline(f->core));
  a = actions(f->core);
  assert_int_equal(a->len, 1);
  assert_int_equal(act(a, 0)->kind, LEAF_ACT_DIAL);
  actions_free(a);
  fixture_free(f);
}

static void test_free_null(void **state)
{
  (void)state;
  leaf_core_free(NULL);
}

/* --- network admission (shared/netcert.h) ------------------------------------ */

static uint64_t fake_unix_now(void)
{
  return 1800000000;
}

static unsigned closes_saying(LeafCore *c, const char *what)
{
  GArray *a = actions(c);
  unsigned n = 0;
  for (guint i = 0; i < a->len; i++)
    n += act(a, i)->kind == LEAF_ACT_CLOSE && act(a, i)->reason && strstr(act(a, i)->reason, what);
  actions_free(a);
  return n;
}

/* At t (past the backoff) the leaf redials, and the session opens with
 * super node id. Returns t. */
static uint64_t redial(Fixture *f, const uint8_t id[32], uint64_t t)
{
  leaf_core_tick(f->core, t);
  actions_free(actions(f->core));
  leaf_core_connected(f->core, LEAF_SLOT_PRIMARY, id, t);
  return t;
}

static void test_network_super_node_must_prove_membership(void **state)
{
  (void)state;
  Identity netkey, sn;
  assert_true(identity_generate(&netkey));
  assert_true(identity_generate(&sn));
  Fixture *f = g_new0(Fixture, 1);
  f->rng.value = 0x8080;
  leaf_config_defaults(&f->cfg);
  f->cfg.network_pk = netkey.pk;
  f->cfg.unix_now = fake_unix_now;
  f->core = leaf_core_new(&f->cfg, rng_fill, &f->rng);
  leaf_core_start(f->core, 0);
  actions_free(actions(f->core));

  /* ATTACHED before any HELLO: not taken, the session is closed. */
  leaf_core_connected(f->core, LEAF_SLOT_PRIMARY, sn.id, 0);
  WireMsg att = {.type = MSG_ATTACHED};
  feed(f->core, &att, 0);
  assert_int_equal(closes_saying(f->core, "before proving"), 1);
  assert_false(leaf_core_is_connected(f->core));

  /* A HELLO with no certificate, then one for another node: refused. */
  uint64_t t = redial(f, sn.id, 60000);
  WireMsg hello = {.type = MSG_HELLO};
  hello.u.hello.role = ROLE_SUPER;
  hello.u.hello.listen = wire_str("", 0);
  hello.u.hello.agent = wire_str("canopy", 6);
  feed(f->core, &hello, t);
  assert_int_equal(closes_saying(f->core, "no certificate"), 1);

  t = redial(f, sn.id, t + 60000);
  uint8_t cert[NETCERT_LEN];
  netcert_sign(&netkey, netkey.pk, 1800000000 + 60, cert); /* the network's own key, not sn's */
  hello.u.hello.cert = cert;
  hello.u.hello.cert_len = sizeof cert;
  feed(f->core, &hello, t);
  assert_int_equal(closes_saying(f->core, "another node"), 1);

  /* The right certificate: the session counts, and the leaf publishes on
   * ATTACHED as usual. */
  t = redial(f, sn.id, t + 60000);
  netcert_sign(&netkey, sn.pk, 1800000000 + 60, cert);
  feed(f->core, &hello, t);
  feed(f->core, &att, t);
  assert_int_equal(closes_saying(f->core, ""), 0);
  assert_true(leaf_core_is_connected(f->core));
  identity_clear(&netkey);
  identity_clear(&sn);
  fixture_free(f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_start_dials),
      cmocka_unit_test(test_connect_says_hello_and_publishes),
      cmocka_unit_test(test_publish_in_batches),
      cmocka_unit_test(test_unpublishable_names_skipped),
      cmocka_unit_test(test_backoff_doubles_within_jitter),
      cmocka_unit_test(test_success_resets_backoff),
      cmocka_unit_test(test_reconnect_republishes),
      cmocka_unit_test(test_search_while_disconnected_fails_at_once),
      cmocka_unit_test(test_search_collects_hits_until_deadline),
      cmocka_unit_test(test_search_hit_cap_and_bad_query),
      cmocka_unit_test(test_search_dedups_by_peer_and_cid),
      cmocka_unit_test(test_search_limit_ends_early),
      cmocka_unit_test(test_disconnect_fails_pending_search),
      cmocka_unit_test(test_silent_super_node_closed_and_redialed),
      cmocka_unit_test(test_answering_super_node_kept),
      cmocka_unit_test(test_every_other_pong_kept),
      cmocka_unit_test(test_ping_answered_with_same_nonce),
      cmocka_unit_test(test_malformed_message_closes),
      cmocka_unit_test(test_free_null),
      cmocka_unit_test(test_network_super_node_must_prove_membership),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
