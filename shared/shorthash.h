/* shorthash.h - a keyed hash for tables indexed by peer-chosen strings.
 *
 * SipHash-2-4 under a random per-process key (libsodium's crypto_shorthash),
 * so a peer cannot choose keywords that collide in our hash tables and turn
 * lookups into linear scans.
 */
#ifndef CANOPY_SHORTHASH_H
#define CANOPY_SHORTHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t shorthash(const void *p, size_t len);

#endif
