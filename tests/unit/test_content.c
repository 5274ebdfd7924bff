/* test_content.c - content ids match a by-hand reading of content.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "content.h"

#define CHUNK ((size_t)CONTENT_CHUNK_SIZE)

/* Deterministic bytes, so a failure reproduces. */
static uint64_t rng_state = 0x243F6A8885A308D3u;

static uint64_t rng_next(void)
{
  uint64_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return rng_state = x;
}

static uint8_t *make_data(size_t n)
{
  uint8_t *p = malloc(n ? n : 1);
  assert_non_null(p);
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)rng_next();
  return p;
}

/* ---- reference: the header comment, read literally --------------------- */

static void ref_hash(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen, const uint8_t *c,
                     size_t clen, uint8_t out[32])
{
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, 32);
  crypto_generichash_update(&st, a, alen);
  crypto_generichash_update(&st, b, blen);
  crypto_generichash_update(&st, c, clen);
  crypto_generichash_final(&st, out, 32);
}

static void ref_leaf(const uint8_t *chunk, size_t len, uint8_t out[32])
{
  static const uint8_t z = 0x00;
  ref_hash(&z, 1, chunk, len, NULL, 0, out);
}

/* RFC 6962 2.1: MTH(D[n]) = node(MTH(D[0:k]), MTH(D[k:n])), k the largest
 * power of two smaller than n. */
static void ref_root(const uint8_t (*leaves)[32], size_t n, uint8_t out[32])
{
  static const uint8_t one = 0x01;
  if (n == 1) {
    memcpy(out, leaves[0], 32);
    return;
  }
  size_t k = 1;
  while (k * 2 < n)
    k *= 2;
  uint8_t l[32], r[32];
  ref_root(leaves, k, l);
  ref_root(leaves + k, n - k, r);
  ref_hash(&one, 1, l, 32, r, 32, out);
}

static void ref_cid(const uint8_t root[32], uint64_t size, uint8_t out[32])
{
  static const uint8_t two = 0x02;
  uint8_t be[8];
  for (int i = 0; i < 8; i++)
    be[i] = (uint8_t)(size >> (56 - 8 * i));
  ref_hash(&two, 1, be, 8, root, 32, out);
}

/* Leaves of data by hand; an empty input has one empty chunk. */
static size_t ref_leaves(const uint8_t *data, size_t n, uint8_t (**out)[32])
{
  size_t count = n == 0 ? 1 : (n + CHUNK - 1) / CHUNK;
  uint8_t(*lv)[32] = calloc(count, 32);
  assert_non_null(lv);
  for (size_t i = 0; i < count; i++) {
    size_t off = i * CHUNK;
    size_t len = n - off < CHUNK ? n - off : CHUNK;
    ref_leaf(data + off, len, lv[i]);
  }
  *out = lv;
  return count;
}

static void stream_cid(const uint8_t *data, size_t n, uint8_t cid[32])
{
  ContentHasher *h = content_hasher_new();
  assert_non_null(h);
  content_hasher_update(h, data, n);
  content_hasher_final(h, cid);
  content_hasher_free(h);
}

/* ---- tests ------------------------------------------------------------- */

static void test_known_structure(void **state)
{
  (void)state;
  const size_t sizes[] = {0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5};
  for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
    size_t n = sizes[t];
    uint8_t *data = make_data(n);
    uint8_t(*lv)[32];
    size_t count = ref_leaves(data, n, &lv);
    uint8_t root[32], want[32], got[32];
    ref_root((const uint8_t(*)[32])lv, count, root);
    ref_cid(root, n, want);

    content_id_from_leaves((const uint8_t(*)[32])lv, count, n, got);
    assert_memory_equal(got, want, 32);
    stream_cid(data, n, got);
    assert_memory_equal(got, want, 32);
    for (size_t i = 0; i < count; i++) {
      size_t off = i * CHUNK;
      content_leaf_hash(data + off, n - off < CHUNK ? n - off : CHUNK, got);
      assert_memory_equal(got, lv[i], 32);
    }
    free(lv);
    free(data);
  }
}

/* Every leaf count up to 40 covers many unbalanced shapes cheaply. */
static void test_tree_shape(void **state)
{
  (void)state;
  uint8_t lv[40][32];
  for (size_t i = 0; i < 40; i++)
    for (size_t b = 0; b < 32; b++)
      lv[i][b] = (uint8_t)rng_next();
  for (size_t n = 1; n <= 40; n++) {
    uint8_t root[32], want[32], got[32];
    ref_root((const uint8_t(*)[32])lv, n, root);
    ref_cid(root, (uint64_t)n * CHUNK, want);
    content_id_from_leaves((const uint8_t(*)[32])lv, n, (uint64_t)n * CHUNK, got);
    assert_memory_equal(got, want, 32);
  }
}

static void test_stream_random_splits(void **state)
{
  (void)state;
  size_t n = 3 * CHUNK + 5;
  uint8_t *data = make_data(n);
  uint8_t want[32], got[32];
  stream_cid(data, n, want);
  for (int round = 0; round < 20; round++) {
    ContentHasher *h = content_hasher_new();
    assert_non_null(h);
    size_t off = 0;
    while (off < n) {
      /* Mostly small pieces, sometimes more than a chunk, sometimes empty. */
      size_t step = rng_next() % 4 == 0 ? rng_next() % (2 * CHUNK) : rng_next() % 5000;
      if (step > n - off)
        step = n - off;
      content_hasher_update(h, data + off, step);
      off += step;
    }
    content_hasher_final(h, got);
    content_hasher_free(h);
    assert_memory_equal(got, want, 32);
  }
  free(data);
}

static void test_size_is_bound(void **state)
{
  (void)state;
  uint8_t lv[3][32];
  memset(lv, 0x5a, sizeof lv);
  uint8_t a[32], b[32];
  content_id_from_leaves((const uint8_t(*)[32])lv, 3, 2 * CHUNK + 10, a);
  content_id_from_leaves((const uint8_t(*)[32])lv, 3, 2 * CHUNK + 11, b);
  assert_memory_not_equal(a, b, 32);
}

static void test_hash_file(void **state)
{
  (void)state;
  const size_t sizes[] = {0, 2 * CHUNK + 77, 5 * CHUNK};
  for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
    size_t n = sizes[t];
    char path[] = "/tmp/canopy-test-content-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    uint8_t *data = make_data(n);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);

    uint8_t want[32], got[32];
    uint64_t size = 12345;
    char err[256] = "";
    stream_cid(data, n, want);
    assert_true(content_hash_file(path, got, &size, err, sizeof err));
    assert_memory_equal(got, want, 32);
    assert_int_equal(size, n);
    unlink(path);
    free(data);
  }
}

static void test_hash_missing_file(void **state)
{
  (void)state;
  uint8_t cid[32];
  uint64_t size;
  char err[256] = "";
  assert_false(content_hash_file("/nonexistent/canopy-x", cid, &size, err, sizeof err));
  assert_string_equal(err, "cannot open /nonexistent/canopy-x: No such file or directory");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_structure),
      cmocka_unit_test(test_tree_shape),
      cmocka_unit_test(test_stream_random_splits),
      cmocka_unit_test(test_size_is_bound),
      cmocka_unit_test(test_hash_file),
      cmocka_unit_test(test_hash_missing_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
