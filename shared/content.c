/* content.c - content ids: BLAKE2b-256 hash tree over 256 KiB chunks.
 *
 * The streaming hasher never holds the file. It keeps one running leaf hash
 * for the chunk being filled and a stack of roots of complete subtrees whose
 * sizes are distinct powers of two, largest at the bottom (a binary counter:
 * pushing leaf n merges as many times as n has trailing zero bits). At the end
 * the stack is folded right to left, node(s[0], node(s[1], ... s[k])), which
 * is exactly the RFC 6962 section 2.1 shape: the left subtree of every node
 * holds the largest power of two of leaves below its leaf count.
 */
#include "content.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PREFIX_LEAF 0x00
#define PREFIX_NODE 0x01
#define PREFIX_ID 0x02
#define READ_BUF_SIZE (1024u * 1024u)

/* One subtree per bit of a 64-bit leaf count is more than enough. */
#define STACK_MAX 64

typedef struct {
  uint8_t hash[STACK_MAX][32];
  uint8_t height[STACK_MAX]; /* subtree holds 2^height leaves */
  size_t depth;
} SubtreeStack;

struct ContentHasher {
  /* First, since libsodium declares the state 64-byte aligned and the
   * struct is allocated with that alignment. */
  crypto_generichash_state leaf;
  SubtreeStack stack;
  uint64_t size;    /* bytes fed so far */
  size_t fill;      /* bytes of the current chunk fed into leaf */
  uint64_t nleaves; /* complete leaves pushed */
  uint8_t *kept;    /* content_hasher_keep_leaves: nleaves x 32 bytes, or NULL */
  size_t kept_cap;  /* leaves room in kept */
};

static void node_hash(const uint8_t left[32], const uint8_t right[32], uint8_t out[32])
{
  uint8_t in[1 + 64];
  in[0] = PREFIX_NODE;
  memcpy(in + 1, left, 32);
  memcpy(in + 33, right, 32);
  crypto_generichash(out, 32, in, sizeof in, NULL, 0);
}

/* Pushes a leaf as a height-0 subtree, then merges equal-height neighbours.
 * Heights on the stack strictly decrease upwards, so only the top two can
 * ever be equal. */
static void stack_push_leaf(SubtreeStack *s, const uint8_t leaf[32])
{
  memcpy(s->hash[s->depth], leaf, 32);
  s->height[s->depth] = 0;
  s->depth++;
  while (s->depth >= 2 && s->height[s->depth - 1] == s->height[s->depth - 2]) {
    size_t l = s->depth - 2;
    node_hash(s->hash[l], s->hash[l + 1], s->hash[l]);
    s->height[l]++;
    s->depth--;
  }
}

/* Folds the stack right to left into the tree root; depth must be >= 1. */
static void stack_root(const SubtreeStack *s, uint8_t root[32])
{
  uint8_t acc[32];
  memcpy(acc, s->hash[s->depth - 1], 32);
  for (size_t i = s->depth - 1; i > 0; i--)
    node_hash(s->hash[i - 1], acc, acc);
  memcpy(root, acc, 32);
}

static void id_from_root(const uint8_t root[32], uint64_t size, uint8_t cid[CONTENT_ID_LEN])
{
  uint8_t in[1 + 8 + 32];
  in[0] = PREFIX_ID;
  for (int i = 0; i < 8; i++)
    in[1 + i] = (uint8_t)(size >> (56 - 8 * i));
  memcpy(in + 9, root, 32);
  crypto_generichash(cid, CONTENT_ID_LEN, in, sizeof in, NULL, 0);
}

static void leaf_begin(crypto_generichash_state *st)
{
  static const uint8_t prefix = PREFIX_LEAF;
  crypto_generichash_init(st, NULL, 0, 32);
  crypto_generichash_update(st, &prefix, 1);
}

void content_leaf_hash(const uint8_t *chunk, size_t len, uint8_t out[32])
{
  crypto_generichash_state st;
  leaf_begin(&st);
  crypto_generichash_update(&st, chunk, len);
  crypto_generichash_final(&st, out, 32);
}

void content_id_from_leaves(const uint8_t (*leaves)[32], size_t n, uint64_t size,
                            uint8_t cid[CONTENT_ID_LEN])
{
  SubtreeStack s;
  uint8_t root[32];
  s.depth = 0;
  for (size_t i = 0; i < n; i++)
    stack_push_leaf(&s, leaves[i]);
  if (n == 0) { /* not allowed by the header; read it as the empty file */
    uint8_t empty[32];
    content_leaf_hash(NULL, 0, empty);
    stack_push_leaf(&s, empty);
  }
  stack_root(&s, root);
  id_from_root(root, size, cid);
}

ContentHasher *content_hasher_new(void)
{
  size_t align = 64;
  size_t sz = (sizeof(ContentHasher) + align - 1) / align * align;
  /* Lets libsodium pick its fastest BLAKE2b for this CPU; idempotent. */
  if (sodium_init() < 0)
    return NULL;
  ContentHasher *h = aligned_alloc(align, sz);
  if (!h)
    return NULL;
  memset(h, 0, sizeof *h);
  leaf_begin(&h->leaf);
  return h;
}

void content_hasher_free(ContentHasher *h)
{
  if (!h)
    return;
  free(h->kept);
  sodium_memzero(h, sizeof *h); /* file contents may be private */
  free(h);
}

/* Closes the current chunk's leaf and starts the next one. */
static void hasher_end_leaf(ContentHasher *h)
{
  uint8_t leaf[32];
  crypto_generichash_final(&h->leaf, leaf, 32);
  stack_push_leaf(&h->stack, leaf);
  if (h->kept) {
    if (h->nleaves == h->kept_cap) {
      size_t cap = h->kept_cap ? h->kept_cap * 2 : 64;
      uint8_t *grown = cap <= SIZE_MAX / 32 ? realloc(h->kept, cap * 32) : NULL;
      if (!grown) { /* the id still comes out; only the copy is given up */
        free(h->kept);
        h->kept = NULL;
      } else {
        h->kept = grown;
        h->kept_cap = cap;
      }
    }
    if (h->kept)
      memcpy(h->kept + h->nleaves * 32, leaf, 32);
  }
  h->nleaves++;
  h->fill = 0;
  leaf_begin(&h->leaf);
}

void content_hasher_update(ContentHasher *h, const uint8_t *p, size_t len)
{
  while (len > 0) {
    size_t take = CONTENT_CHUNK_SIZE - h->fill;
    if (take > len)
      take = len;
    crypto_generichash_update(&h->leaf, p, take);
    h->fill += take;
    h->size += take;
    p += take;
    len -= take;
    /* Closing a full chunk eagerly is safe: final() adds a leaf only for a
     * partial chunk, or the one empty chunk of an empty file. */
    if (h->fill == CONTENT_CHUNK_SIZE)
      hasher_end_leaf(h);
  }
}

void content_hasher_keep_leaves(ContentHasher *h)
{
  if (h->nleaves > 0 || h->kept)
    return; /* too late: the first leaves are gone */
  h->kept = malloc(64 * 32);
  h->kept_cap = h->kept ? 64 : 0;
}

uint8_t *content_hasher_take_leaves(ContentHasher *h, size_t *n)
{
  uint8_t *kept = h->kept;
  *n = kept ? (size_t)h->nleaves : 0;
  h->kept = NULL;
  h->kept_cap = 0;
  return kept;
}

void content_hasher_final(ContentHasher *h, uint8_t cid[CONTENT_ID_LEN])
{
  uint8_t root[32];
  if (h->fill > 0 || h->nleaves == 0)
    hasher_end_leaf(h);
  stack_root(&h->stack, root);
  id_from_root(root, h->size, cid);
}

bool content_hash_file(const char *path, uint8_t cid[CONTENT_ID_LEN], uint64_t *size, char *err,
                       size_t errlen)
{
  bool ok = false;
  uint8_t *buf = NULL;
  ContentHasher *h = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
    goto out;
  }
  buf = malloc(READ_BUF_SIZE);
  h = content_hasher_new();
  if (!buf || !h) {
    snprintf(err, errlen, "cannot hash %s: out of memory", path);
    goto out;
  }
  for (;;) {
    ssize_t n = read(fd, buf, READ_BUF_SIZE);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
      goto out;
    }
    if (n == 0)
      break;
    content_hasher_update(h, buf, (size_t)n);
  }
  if (size)
    *size = h->size;
  content_hasher_final(h, cid);
  ok = true;
out:
  content_hasher_free(h);
  free(buf);
  if (fd >= 0)
    close(fd);
  return ok;
}
