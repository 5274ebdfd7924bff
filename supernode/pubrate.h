/* pubrate.h - a leaf's publish bucket outlives its session.
 *
 * The publish rate (entries per second per leaf) is a token bucket; were
 * it the session's, a leaf that reconnects would get a fresh burst each
 * time. So a departing leaf's bucket is kept, by node id, until it would
 * have refilled anyway (a fresh bucket is then the same thing), and the
 * leaf's next session starts from it.
 *
 * At most `max` departed leaves are remembered: when full, buckets already
 * refilled go first, then an arbitrary one (that leaf gets its burst back:
 * the bound is what a leaf gains, while the per-address index shares bound
 * what it can hold). Ids are hashed with the keyed shorthash. Sans I/O.
 */
#ifndef CANOPY_PUBRATE_H
#define CANOPY_PUBRATE_H

#include <stddef.h>
#include <stdint.h>

#include "ratelimit.h"

/* Departed leaves remembered (about 100 bytes each). */
#define SN_PUBRATE_KEEP_MAX 4096

typedef struct PubRates PubRates;

PubRates *pubrates_new(size_t max);
void pubrates_free(PubRates *t); /* NULL is a no-op */

/* The bucket for leaf id's new session: the one it left with (refilled
 * for the time since, at the current rate and burst), or a full one. */
void pubrates_restore(PubRates *t, const uint8_t id[32], RateLimit *rl, double rate, double burst,
                      uint64_t now_ms);
/* Leaf id's session ended with bucket rl: kept unless already full. */
void pubrates_keep(PubRates *t, const uint8_t id[32], const RateLimit *rl, uint64_t now_ms);
size_t pubrates_size(const PubRates *t);

#endif
