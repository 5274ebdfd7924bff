/* term.c - leadership terms that cannot wrap or run away (term.h). */
#include "term.h"

uint32_t term_tag(const uint8_t id[32])
{
  return (uint32_t)id[0] << 24 | (uint32_t)id[1] << 16 | (uint32_t)id[2] << 8 | id[3];
}

uint32_t term_counter(uint64_t t)
{
  return (uint32_t)(t >> 32);
}

uint64_t term_next(uint64_t t, uint32_t tag)
{
  uint64_t counter = term_counter(t);
  if (counter < TERM_COUNTER_MAX)
    counter++;
  return counter << 32 | tag;
}

uint64_t term_ceiling(uint64_t now_s)
{
  uint64_t counter =
      now_s > TERM_COUNTER_MAX - TERM_AHEAD_S ? TERM_COUNTER_MAX : now_s + TERM_AHEAD_S;
  return counter << 32 | UINT32_MAX;
}

bool term_believable(uint64_t t, uint64_t now_s)
{
  return t <= term_ceiling(now_s);
}
