/* stun_limit.c - per-source, per-prefix and global STUN answer budgets. */
#include "stun_limit.h"

#include <netinet/in.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  float tokens;
  uint64_t last_ms;
} Bucket;

struct StunLimit {
  uint8_t key[crypto_shorthash_KEYBYTES];
  Bucket global;
  Bucket addr[STUN_LIMIT_SLOTS];
  Bucket prefix[STUN_LIMIT_SLOTS];
  bool addr_seen[STUN_LIMIT_SLOTS], prefix_seen[STUN_LIMIT_SLOTS];
};

/* Tokens in b as of now (refilled, capped at burst), without taking one. */
static float level(const Bucket *b, double rate, double burst, uint64_t now_ms)
{
  double t = b->tokens;
  if (now_ms > b->last_ms)
    t += (double)(now_ms - b->last_ms) * rate / 1000.0;
  return (float)(t > burst ? burst : t);
}

static void take(Bucket *b, float tokens, uint64_t now_ms)
{
  b->tokens = tokens - 1.0f;
  if (now_ms > b->last_ms)
    b->last_ms = now_ms;
}

StunLimit *stun_limit_new(const uint8_t *key, uint64_t now_ms)
{
  if (sodium_init() < 0)
    return NULL;
  StunLimit *l = calloc(1, sizeof *l);
  if (!l)
    return NULL;
  if (key)
    memcpy(l->key, key, sizeof l->key);
  else
    randombytes_buf(l->key, sizeof l->key);
  l->global = (Bucket){STUN_LIMIT_BURST, now_ms};
  return l;
}

void stun_limit_free(StunLimit *l)
{
  if (!l)
    return;
  sodium_memzero(l->key, sizeof l->key);
  free(l);
}

/* The address's bytes (4 or 16), an IPv4-mapped IPv6 one as IPv4; 0 for
 * anything else. */
static size_t address_bytes(const struct sockaddr *from, socklen_t fromlen, uint8_t out[16])
{
  sa_family_t family;
  if (!from || (size_t)fromlen < sizeof(struct sockaddr))
    return 0;
  memcpy(&family, (const uint8_t *)from + offsetof(struct sockaddr, sa_family), sizeof family);
  if (family == AF_INET && (size_t)fromlen >= sizeof(struct sockaddr_in)) {
    struct sockaddr_in in;
    memcpy(&in, from, sizeof in);
    memcpy(out, &in.sin_addr, 4);
    return 4;
  }
  if (family == AF_INET6 && (size_t)fromlen >= sizeof(struct sockaddr_in6)) {
    struct sockaddr_in6 in6;
    memcpy(&in6, from, sizeof in6);
    if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
      memcpy(out, &in6.sin6_addr.s6_addr[12], 4);
      return 4;
    }
    memcpy(out, &in6.sin6_addr, 16);
    return 16;
  }
  return 0;
}

/* Slot of the first n bytes of a; the kind byte keeps an address and a
 * prefix of the same bytes apart. */
static size_t slot(const StunLimit *l, uint8_t kind, const uint8_t *a, size_t n)
{
  uint8_t in[17];
  uint8_t h[crypto_shorthash_BYTES];
  in[0] = kind;
  memcpy(in + 1, a, n);
  crypto_shorthash(h, in, n + 1, l->key);
  uint64_t v;
  memcpy(&v, h, sizeof v);
  return (size_t)(v % STUN_LIMIT_SLOTS);
}

StunLimitVerdict stun_limit_take(StunLimit *l, const struct sockaddr *from, socklen_t fromlen,
                                 uint64_t now_ms)
{
  uint8_t a[16];
  size_t n = address_bytes(from, fromlen, a);
  if (n == 0)
    return STUN_LIMIT_BAD;
  /* /24 of IPv4 (the kind byte tells 4-byte from 16-byte keys apart), /64
   * of IPv6. */
  size_t pn = n == 4 ? 3 : 8;
  size_t ai = slot(l, (uint8_t)n, a, n), pi = slot(l, (uint8_t)(0x80 | n), a, pn);

  /* A slot never used starts full, as of now. */
  if (!l->addr_seen[ai]) {
    l->addr[ai] = (Bucket){STUN_LIMIT_ADDR_BURST, now_ms};
    l->addr_seen[ai] = true;
  }
  if (!l->prefix_seen[pi]) {
    l->prefix[pi] = (Bucket){STUN_LIMIT_PREFIX_BURST, now_ms};
    l->prefix_seen[pi] = true;
  }
  float ta = level(&l->addr[ai], STUN_LIMIT_ADDR_RATE, STUN_LIMIT_ADDR_BURST, now_ms);
  if (ta < 1.0f)
    return STUN_LIMIT_ADDR;
  float tp = level(&l->prefix[pi], STUN_LIMIT_PREFIX_RATE, STUN_LIMIT_PREFIX_BURST, now_ms);
  if (tp < 1.0f)
    return STUN_LIMIT_PREFIX;
  float tg = level(&l->global, STUN_LIMIT_RATE, STUN_LIMIT_BURST, now_ms);
  if (tg < 1.0f)
    return STUN_LIMIT_GLOBAL;
  take(&l->addr[ai], ta, now_ms);
  take(&l->prefix[pi], tp, now_ms);
  take(&l->global, tg, now_ms);
  return STUN_LIMIT_OK;
}
