/* shorthash.c - SipHash under a key drawn once per process. */
#include "shorthash.h"

#include <sodium.h>
#include <string.h>

#include "identity.h"

uint64_t shorthash(const void *p, size_t len)
{
  static unsigned char key[crypto_shorthash_KEYBYTES];
  static int keyed;
  if (!keyed) {
    /* Single-threaded daemons; a race would only mean two draws. */
    crypto_ready();
    randombytes_buf(key, sizeof key);
    keyed = 1;
  }
  unsigned char out[crypto_shorthash_BYTES];
  crypto_shorthash(out, p, len, key);
  uint64_t h;
  memcpy(&h, out, sizeof h);
  return h;
}
