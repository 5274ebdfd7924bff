/* ratelimit.c - token bucket */
#include "ratelimit.h"

void ratelimit_init(RateLimit *rl, double rate, double burst, uint64_t now_ms)
{
  rl->rate = rate;
  rl->burst = burst;
  rl->tokens = burst;
  rl->last_ms = now_ms;
}

bool ratelimit_take(RateLimit *rl, uint64_t now_ms)
{
  if (now_ms > rl->last_ms) {
    rl->tokens += (double)(now_ms - rl->last_ms) * rl->rate / 1000.0;
    if (rl->tokens > rl->burst)
      rl->tokens = rl->burst;
    rl->last_ms = now_ms;
  }
  if (rl->tokens < 1.0)
    return false;
  rl->tokens -= 1.0;
  return true;
}

bool ratelimit_take_n(RateLimit *rl, double n, uint64_t now_ms)
{
  if (now_ms > rl->last_ms) {
    rl->tokens += (double)(now_ms - rl->last_ms) * rl->rate / 1000.0;
    if (rl->tokens > rl->burst)
      rl->tokens = rl->burst;
    rl->last_ms = now_ms;
  }
  if (rl->tokens < n)
    return false;
  rl->tokens -= n;
  return true;
}
