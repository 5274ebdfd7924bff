/* degree.c - the degree rules of degree.h. */
#include "degree.h"

#include "wire.h"

unsigned degree_soft_max(unsigned target)
{
  return DEGREE_SOFT_MUL * (target ? target : 1);
}

unsigned degree_hard_max(unsigned target, unsigned max_links)
{
  unsigned hard = degree_soft_max(target) + DEGREE_HARD_SLACK;
  return hard > max_links ? hard : max_links;
}

bool degree_accept(unsigned target, unsigned max_links, unsigned links, bool configured)
{
  if (links >= degree_hard_max(target, max_links))
    return false;
  return configured || links < degree_soft_max(target);
}

bool degree_want_dial(unsigned target, unsigned links, unsigned dialing)
{
  return links + dialing < target;
}

bool degree_want_shortcut(unsigned target, unsigned links, unsigned shortcuts)
{
  return shortcuts < DEGREE_SHORTCUTS && links >= target && links < degree_soft_max(target);
}

bool degree_long_range_dial(unsigned target, uint8_t dialer_load)
{
  return dialer_load != WIRE_LOAD_UNKNOWN && dialer_load >= degree_link_load(target, target);
}

uint8_t degree_link_load(unsigned target, unsigned links)
{
  unsigned soft = degree_soft_max(target);
  return (uint8_t)(links >= soft ? 100 : links * 100 / soft);
}

uint64_t degree_retry_at(uint64_t now, unsigned refusals, uint32_t retry_ms, uint32_t rnd)
{
  uint64_t delay = DEGREE_BACKOFF_MIN_MS;
  for (unsigned i = 1; i < refusals && delay < DEGREE_BACKOFF_MAX_MS; i++)
    delay *= 2;
  /* Jitter, so that the dialers one full node refused together do not all
   * come back in the same millisecond. */
  delay += rnd % (delay / 2 + 1);
  if (delay > DEGREE_BACKOFF_MAX_MS)
    delay = DEGREE_BACKOFF_MAX_MS;
  uint64_t asked = retry_ms < DEGREE_RETRY_CAP_MS ? retry_ms : DEGREE_RETRY_CAP_MS;
  return now + (delay > asked ? delay : asked);
}

/* Orders shedding candidates: true if a should go before b. */
static bool sheds_first(const DegreeLink *a, const DegreeLink *b)
{
  unsigned la = a->peer_load == WIRE_LOAD_UNKNOWN ? 0 : a->peer_load;
  unsigned lb = b->peer_load == WIRE_LOAD_UNKNOWN ? 0 : b->peer_load;
  if (la != lb)
    return la > lb;
  if (a->inbound != b->inbound)
    return a->inbound;
  return a->up_since > b->up_since;
}

const DegreeLink *degree_pick_shed(unsigned target, const DegreeLink *links, size_t n)
{
  if (n <= degree_soft_max(target))
    return NULL;
  const DegreeLink *best = NULL;
  for (size_t i = 0; i < n; i++)
    if (!links[i].keep && !links[i].long_range && (!best || sheds_first(&links[i], best)))
      best = &links[i];
  return best;
}

/* The link, not kept (nor long-range unless long_range) and at least
 * DEGREE_EVICT_MIN_AGE_MS old, whose peer said a load over `over`: the
 * most loaded, then the youngest. */
static const DegreeLink *pick_loaded(const DegreeLink *links, size_t n, unsigned over, uint64_t now,
                                     bool long_range)
{
  const DegreeLink *best = NULL;
  for (size_t i = 0; i < n; i++) {
    const DegreeLink *l = &links[i];
    if (l->keep || (l->long_range && !long_range) || l->peer_load == WIRE_LOAD_UNKNOWN ||
        l->peer_load <= over || l->up_since + DEGREE_EVICT_MIN_AGE_MS > now)
      continue;
    if (!best || l->peer_load > best->peer_load ||
        (l->peer_load == best->peer_load && l->up_since > best->up_since))
      best = l;
  }
  return best;
}

const DegreeLink *degree_pick_evict(unsigned target, const DegreeLink *links, size_t n,
                                    uint64_t now)
{
  /* A peer's load says more than D links when it is over D's own load. A
   * near link first; a long-range one only if there is none: a node full
   * of them must still let a newcomer in (its dialer then looks for
   * another once: one step, not a cycle). */
  unsigned over = degree_link_load(target, target);
  const DegreeLink *l = pick_loaded(links, n, over, now, false);
  return l ? l : pick_loaded(links, n, over, now, true);
}

unsigned degree_trim(unsigned target)
{
  return target + (target + 1) / 2;
}

const DegreeLink *degree_pick_trim(unsigned target, const DegreeLink *links, size_t n, uint64_t now)
{
  unsigned trim = degree_trim(target);
  if (n <= trim)
    return NULL;
  return pick_loaded(links, n, degree_link_load(target, trim), now, false);
}
