/* ratelimit.h - a token bucket, time passed in (milliseconds, monotonic). */
#ifndef CANOPY_RATELIMIT_H
#define CANOPY_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
  double tokens;
  double rate;  /* tokens per second */
  double burst; /* bucket size */
  uint64_t last_ms;
} RateLimit;

void ratelimit_init(RateLimit *rl, double rate, double burst, uint64_t now_ms);
/* Takes one token if there is one. */
bool ratelimit_take(RateLimit *rl, uint64_t now_ms);
/* Takes n tokens if there are n (all or nothing). */
bool ratelimit_take_n(RateLimit *rl, double n, uint64_t now_ms);

#endif
