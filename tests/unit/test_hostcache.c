/* test_hostcache.c - the leaf's super-node host cache with a fake clock and
 * a fixed RNG: ordering, back-off, caps, the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "hostcache.h"

#define T0 1000000u

static uint16_t rng_value = 0x8080; /* about the middle: jitter ~0 */

static void rng_fill(uint8_t *out, size_t n, void *ctx)
{
  (void)ctx;
  for (size_t i = 0; i < n; i++)
    out[i] = (uint8_t)(rng_value >> (8 * (i % 2)));
}

static const uint8_t SRC_A[32] = {0xa};
static const uint8_t SRC_B[32] = {0xb};

static uint8_t *id_of(unsigned n)
{
  static uint8_t id[32];
  memset(id, 0, sizeof id);
  id[0] = 0x77;
  id[1] = (uint8_t)n;
  id[2] = (uint8_t)(n >> 8);
  return id;
}

static HostCache *cache(void)
{
  rng_value = 0x8080;
  HostCache *h = hostcache_new(rng_fill, NULL);
  assert_non_null(h);
  return h;
}

static void test_addresses_checked(void **state)
{
  assert_true(hostcache_addr_ok("127.0.0.1:7400"));
  assert_true(hostcache_addr_ok("sn.example.org:1"));
  assert_true(hostcache_addr_ok("[2001:db8::1]:65535"));
  assert_false(hostcache_addr_ok(""));
  assert_false(hostcache_addr_ok("127.0.0.1"));
  assert_false(hostcache_addr_ok("127.0.0.1:0"));
  assert_false(hostcache_addr_ok("127.0.0.1:65536"));
  assert_false(hostcache_addr_ok("2001:db8::1:7400"));
  assert_false(hostcache_addr_ok("[2001:db8::1]7400"));
  assert_false(hostcache_addr_ok("[nonsense]:7400"));
  assert_false(hostcache_addr_ok("evil host:7400"));
  assert_false(hostcache_addr_ok("a\x1b]0;x:7400"));
  assert_false(hostcache_addr_ok(":7400"));
  char longer[200];
  memset(longer, 'a', sizeof longer);
  strcpy(longer + 150, ":7400");
  assert_false(hostcache_addr_ok(longer));
  HostCache *h = cache();
  assert_false(hostcache_learn(h, "bad", NULL, 10, SRC_A, false, 0, T0));
  assert_false(hostcache_add_configured(h, "also bad:1"));
  assert_int_equal(hostcache_size(h), 0);
  hostcache_free(h);
  hostcache_free(NULL);
  (void)state;
}

/* Configured first in their order, then the last that worked, then learned
 * ones by load (unknown as half full), then freshness. */
static void test_order(void **state)
{
  HostCache *h = cache();
  assert_true(hostcache_add_configured(h, "10.0.0.1:1"));
  assert_true(hostcache_add_configured(h, "10.0.0.2:1"));
  assert_true(hostcache_learn(h, "10.1.0.1:1", id_of(1), 80, SRC_A, false, 0, T0));
  assert_true(hostcache_learn(h, "10.2.0.1:1", id_of(2), 20, SRC_A, false, 0, T0));
  assert_true(hostcache_learn(h, "10.3.0.1:1", id_of(3), 255, SRC_A, false, 0, T0));
  assert_true(hostcache_learn(h, "10.4.0.1:1", id_of(4), 20, SRC_A, false, 0, T0 + 5));
  assert_true(hostcache_learn(h, "10.5.0.1:1", id_of(5), 90, SRC_A, false, 0, T0));
  hostcache_success(h, "10.5.0.1:1", id_of(5), T0);
  const char *want[] = {"10.0.0.1:1", "10.0.0.2:1", "10.5.0.1:1", "10.4.0.1:1",
                        "10.2.0.1:1", "10.3.0.1:1", "10.1.0.1:1"};
  for (size_t i = 0; i < G_N_ELEMENTS(want); i++)
    assert_string_equal(hostcache_get(h, i)->addr, want[i]);
  assert_null(hostcache_get(h, G_N_ELEMENTS(want)));
  assert_string_equal(hostcache_next(h, NULL, T0), "10.0.0.1:1");
  assert_string_equal(hostcache_next(h, "10.0.0.1:1", T0), "10.0.0.2:1");
  /* A second --supernode of one address keeps its first place. */
  assert_true(hostcache_add_configured(h, "10.0.0.1:1"));
  assert_string_equal(hostcache_get(h, 0)->addr, "10.0.0.1:1");
  hostcache_free(h);
  (void)state;
}

/* A failed host backs off, doubling per failure in a row within +-25 %,
 * capped; the others are tried meanwhile; success forgives. */
static void test_backoff(void **state)
{
  HostCache *h = cache();
  hostcache_add_configured(h, "10.0.0.1:1");
  hostcache_add_configured(h, "10.0.0.2:1");
  uint64_t now = T0;
  uint64_t expect = HOSTCACHE_BACKOFF_MIN_MS;
  for (unsigned f = 1; f <= 10; f++) {
    hostcache_failure(h, "10.0.0.1:1", now);
    const HostEntry *e = hostcache_get(h, 0);
    assert_string_equal(e->addr, "10.0.0.1:1");
    assert_int_equal(e->failures, f);
    uint64_t wait = e->retry_at - now;
    assert_true(wait >= expect * 3 / 4 && wait <= expect * 5 / 4);
    assert_string_equal(hostcache_next(h, NULL, now), "10.0.0.2:1");
    assert_string_equal(hostcache_next(h, NULL, e->retry_at), "10.0.0.1:1");
    assert_true(hostcache_next_ready(h) <= now); /* the other one is ready */
    now = e->retry_at;
    expect = MIN(expect * 2, (uint64_t)HOSTCACHE_BACKOFF_MAX_MS);
  }
  /* The jitter's extremes. */
  rng_value = 0;
  hostcache_failure(h, "10.0.0.2:1", now);
  assert_true(hostcache_get(h, 1)->retry_at - now == HOSTCACHE_BACKOFF_MIN_MS * 3 / 4);
  rng_value = 0xffff;
  hostcache_failure(h, "10.0.0.2:1", now);
  assert_true(hostcache_get(h, 1)->retry_at - now == HOSTCACHE_BACKOFF_MIN_MS * 2 * 5 / 4);
  /* Both backing off: nothing now, the first one's end next. */
  hostcache_failure(h, "10.0.0.1:1", now);
  assert_null(hostcache_next(h, NULL, now));
  assert_true(hostcache_next_ready(h) ==
              MIN(hostcache_get(h, 0)->retry_at, hostcache_get(h, 1)->retry_at));
  hostcache_success(h, "10.0.0.1:1", id_of(1), now);
  assert_int_equal(hostcache_get(h, 0)->failures, 0);
  assert_string_equal(hostcache_next(h, NULL, now), "10.0.0.1:1");
  hostcache_free(h);
  (void)state;
}

/* A refusal's hosts come first, in its order; the refusing host waits
 * retry_ms, bounded. */
static void test_redirect_first(void **state)
{
  HostCache *h = cache();
  hostcache_add_configured(h, "10.0.0.1:1");
  hostcache_add_configured(h, "10.0.0.2:1");
  hostcache_learn(h, "10.9.0.1:1", id_of(1), 5, SRC_A, false, 0, T0);
  hostcache_learn(h, "10.7.0.1:1", id_of(7), 10, SRC_A, true, 0, T0);
  hostcache_learn(h, "10.8.0.1:1", id_of(8), 30, SRC_A, true, 1, T0);
  hostcache_refused(h, "10.0.0.1:1", 20000, T0);
  assert_string_equal(hostcache_next(h, NULL, T0), "10.7.0.1:1");
  hostcache_failure(h, "10.7.0.1:1", T0); /* tried: no longer first */
  assert_string_equal(hostcache_next(h, NULL, T0), "10.8.0.1:1");
  hostcache_success(h, "10.8.0.1:1", id_of(8), T0);
  assert_string_equal(hostcache_next(h, NULL, T0), "10.0.0.2:1");
  const HostEntry *e = NULL;
  for (size_t i = 0; (e = hostcache_get(h, i)); i++)
    if (strcmp(e->addr, "10.0.0.1:1") == 0)
      break;
  assert_non_null(e);
  assert_true(e->retry_at == T0 + 20000);
  /* retry_ms beyond the bounds is clamped. */
  hostcache_refused(h, "10.0.0.2:1", UINT32_MAX, T0);
  hostcache_refused(h, "10.9.0.1:1", 0, T0);
  for (size_t i = 0; (e = hostcache_get(h, i)); i++) {
    if (strcmp(e->addr, "10.0.0.2:1") == 0)
      assert_true(e->retry_at == T0 + HOSTCACHE_REFUSE_MAX_MS);
    if (strcmp(e->addr, "10.9.0.1:1") == 0)
      assert_true(e->retry_at >= T0 + HOSTCACHE_REFUSE_MIN_MS);
  }
  /* A new refusal's hints replace the last one's. */
  hostcache_learn(h, "10.6.0.1:1", NULL, 50, SRC_B, true, 0, T0);
  for (size_t i = 0; (e = hostcache_get(h, i)); i++)
    assert_true(e->redirect == (strcmp(e->addr, "10.6.0.1:1") == 0));
  hostcache_free(h);
  (void)state;
}

/* One super node cannot fill the cache with its friends: per /24 and per
 * source caps, a total, and configured entries and the last one that worked
 * are never evicted. */
static void test_caps(void **state)
{
  HostCache *h = cache();
  char addr[64];
  /* One /24. */
  for (unsigned i = 0; i < HOSTCACHE_PER_PREFIX + 5; i++) {
    g_snprintf(addr, sizeof addr, "192.0.2.%u:7400", i + 1);
    bool ok = hostcache_learn(h, addr, id_of(i), 10, SRC_A, false, 0, T0 + i);
    assert_true(ok == (i < HOSTCACHE_PER_PREFIX));
  }
  assert_int_equal(hostcache_size(h), HOSTCACHE_PER_PREFIX);
  assert_int_equal(hostcache_refused_count(h), 5);
  /* A failed one of that prefix may be replaced. */
  hostcache_failure(h, "192.0.2.3:7400", T0);
  assert_true(hostcache_learn(h, "192.0.2.200:7400", NULL, 10, SRC_A, false, 0, T0));
  assert_int_equal(hostcache_size(h), HOSTCACHE_PER_PREFIX);
  for (size_t i = 0; hostcache_get(h, i); i++)
    assert_string_not_equal(hostcache_get(h, i)->addr, "192.0.2.3:7400");
  /* Configured addresses do not count against the prefix. */
  assert_true(hostcache_add_configured(h, "192.0.2.250:7400"));
  hostcache_free(h);

  /* One source, many prefixes. */
  h = cache();
  for (unsigned i = 0; i < HOSTCACHE_PER_SOURCE + 3; i++) {
    g_snprintf(addr, sizeof addr, "10.%u.0.1:7400", i);
    assert_true(hostcache_learn(h, addr, NULL, 10, SRC_A, false, 0, T0) ==
                (i < HOSTCACHE_PER_SOURCE));
  }
  /* Other sources up to the total; a full cache evicts the stalest learned
   * entry, never a configured one nor the one that worked. */
  hostcache_success(h, "10.0.0.1:7400", id_of(1), T0);
  for (unsigned i = 0; i < 8; i++) {
    g_snprintf(addr, sizeof addr, "10.%u.0.2:1", i);
    hostcache_add_configured(h, addr);
  }
  for (unsigned i = 0; i < 100; i++) {
    uint8_t src[32] = {0};
    src[0] = (uint8_t)i;
    src[1] = 1;
    g_snprintf(addr, sizeof addr, "172.16.%u.1:7400", i);
    assert_true(hostcache_learn(h, addr, NULL, 10, src, false, 0, T0 + 1000 + i));
    assert_true(hostcache_size(h) <= HOSTCACHE_MAX);
  }
  assert_int_equal(hostcache_size(h), HOSTCACHE_MAX);
  unsigned configured = 0;
  bool worked = false, newest = false;
  const HostEntry *e;
  for (size_t i = 0; (e = hostcache_get(h, i)); i++) {
    configured += e->source == HOST_CONFIGURED;
    worked |= strcmp(e->addr, "10.0.0.1:7400") == 0 && e->worked;
    newest |= strcmp(e->addr, "172.16.99.1:7400") == 0;
  }
  assert_int_equal(configured, 8);
  assert_true(worked && newest);
  hostcache_free(h);
  (void)state;
}

/* A full cache learned from many super nodes (60 entries, 30 from each of
 * two) comes back whole from its file: the per-source cap, which each
 * entry passed when learned, does not cut it to HOSTCACHE_PER_SOURCE. */
static void test_file_keeps_many_sources(void **state)
{
  HostCache *h = cache();
  char addr[32];
  for (unsigned i = 0; i < 60; i++) {
    g_snprintf(addr, sizeof addr, "10.%u.0.1:7400", i);
    assert_true(hostcache_learn(h, addr, id_of(i), 10, i < 30 ? SRC_A : SRC_B, false, 0, T0 + i));
  }
  char *text = hostcache_format(h);
  HostCache *g = cache();
  char err[200];
  assert_true(hostcache_parse(g, text, strlen(text), T0 + 100, err, sizeof err));
  assert_int_equal(hostcache_size(g), 60);
  g_free(text);
  hostcache_free(g);
  hostcache_free(h);
  (void)state;
}

/* The file: a round trip keeps the order, the ids, the loads and which one
 * worked; a corrupt file changes nothing. */
static void test_file_round_trip(void **state)
{
  HostCache *h = cache();
  hostcache_add_configured(h, "10.0.0.1:1");
  hostcache_learn(h, "10.1.0.1:1", id_of(1), 70, SRC_A, false, 0, T0);
  hostcache_learn(h, "10.2.0.1:1", id_of(2), 10, SRC_A, false, 0, T0);
  hostcache_learn(h, "[2001:db8::7]:7400", NULL, 255, SRC_A, false, 0, T0);
  hostcache_success(h, "10.1.0.1:1", id_of(1), T0);
  assert_true(hostcache_dirty(h));
  char *text = hostcache_format(h);
  assert_false(hostcache_dirty(h));
  hostcache_free(h);

  /* A restart: another --supernode this time. */
  h = cache();
  hostcache_add_configured(h, "10.0.0.9:1");
  char err[200];
  assert_true(hostcache_parse(h, text, strlen(text), T0 + 5, err, sizeof err));
  const char *want[] = {"10.0.0.9:1", "10.1.0.1:1", "10.2.0.1:1", "10.0.0.1:1",
                        "[2001:db8::7]:7400"};
  assert_int_equal(hostcache_size(h), G_N_ELEMENTS(want));
  for (size_t i = 0; i < G_N_ELEMENTS(want); i++)
    assert_string_equal(hostcache_get(h, i)->addr, want[i]);
  const HostEntry *e = hostcache_get(h, 1);
  assert_true(e->worked && e->id_known && e->leaf_load == 70);
  assert_memory_equal(e->id, id_of(1), 32);
  assert_int_equal(hostcache_get(h, 3)->source, HOST_LEARNED); /* no longer configured */
  assert_false(hostcache_get(h, 4)->id_known);

  /* Corruptions: each is refused whole. */
  const char *bad[] = {
      "",
      "not a list\n",
      "# canopy-leaf super nodes 1\n10.0.0.5:1 - 10 l\n",
      "# canopy-leaf super nodes 1\n10.0.0.5:1 - 101 l 0\n",
      "# canopy-leaf super nodes 1\n10.0.0.5:1 - 10 x 0\n",
      "# canopy-leaf super nodes 1\n10.0.0.5 - 10 l 0\n",
      "# canopy-leaf super nodes 1\n10.0.0.5:1 abcd 10 l 0\n",
      "# canopy-leaf super nodes 1\n10.0.0.5:1 - 1x l 0\n",
      "# canopy-leaf super nodes 1\n10.0.0.6:1 - 10 l 0\n10.0.0.5:1 - 10 l 3\n",
  };
  for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
    err[0] = '\0';
    assert_false(hostcache_parse(h, bad[i], strlen(bad[i]), T0, err, sizeof err));
    assert_true(err[0] != '\0');
    assert_int_equal(hostcache_size(h), G_N_ELEMENTS(want));
  }
  /* Too many lines. */
  GString *many = g_string_new("# canopy-leaf super nodes 1\n");
  for (int i = 0; i <= HOSTCACHE_MAX; i++)
    g_string_append_printf(many, "10.%d.1.1:1 - 10 l 0\n", i);
  assert_false(hostcache_parse(h, many->str, many->len, T0, err, sizeof err));
  g_string_free(many, TRUE);
  /* Every prefix of a valid file either parses or changes nothing. */
  HostCache *g = cache();
  for (size_t n = 0; n < strlen(text); n++) {
    HostCache *x = cache();
    hostcache_parse(x, text, n, T0, err, sizeof err);
    assert_true(hostcache_size(x) <= G_N_ELEMENTS(want));
    hostcache_free(x);
  }
  hostcache_free(g);
  g_free(text);
  hostcache_free(h);
  (void)state;
}

/* A super node names addresses that may never answer, each costing a
 * dial timeout, and claims them empty: one that took us once goes first
 * (after the one that worked last), however fresh and empty the others say
 * they are; the file keeps that. */
static void test_proven_before_claims(void **state)
{
  HostCache *h = cache();
  hostcache_add_configured(h, "10.0.0.1:1");
  hostcache_learn(h, "10.1.0.1:1", id_of(1), 90, SRC_A, false, 0, T0);
  hostcache_success(h, "10.1.0.1:1", id_of(1), T0);
  hostcache_learn(h, "10.2.0.1:1", id_of(2), 50, SRC_A, false, 0, T0);
  hostcache_success(h, "10.2.0.1:1", id_of(2), T0 + 1); /* the last: 10.1 only proven */
  char addr[32];
  for (unsigned i = 0; i < 20; i++) {
    g_snprintf(addr, sizeof addr, "10.66.%u.1:7400", i);
    assert_true(hostcache_learn(h, addr, NULL, 0, SRC_B, false, 0, T0 + 100 + i));
  }
  hostcache_failure(h, "10.0.0.1:1", T0 + 200);
  hostcache_failure(h, "10.2.0.1:1", T0 + 200);
  assert_string_equal(hostcache_next(h, NULL, T0 + 200), "10.1.0.1:1");
  char *text = hostcache_format(h);
  assert_non_null(strstr(text, "10.1.0.1:1 "));
  HostCache *g = cache();
  char err[200];
  assert_true(hostcache_parse(g, text, strlen(text), T0, err, sizeof err));
  const HostEntry *e;
  for (size_t i = 0; (e = hostcache_get(g, i)); i++)
    if (strcmp(e->addr, "10.1.0.1:1") == 0)
      assert_true(e->proven && !e->worked);
  assert_string_equal(hostcache_get(g, 0)->addr, "10.2.0.1:1"); /* the last that worked */
  assert_string_equal(hostcache_get(g, 1)->addr, "10.1.0.1:1"); /* before the claims */
  g_free(text);
  hostcache_free(g);
  hostcache_free(h);
  (void)state;
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_addresses_checked),
      cmocka_unit_test(test_order),
      cmocka_unit_test(test_backoff),
      cmocka_unit_test(test_redirect_first),
      cmocka_unit_test(test_caps),
      cmocka_unit_test(test_file_round_trip),
      cmocka_unit_test(test_proven_before_claims),
      cmocka_unit_test(test_file_keeps_many_sources),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
