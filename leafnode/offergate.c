/* offergate.c - budgets for inbound ICE offers (offergate.h). */
#include "offergate.h"

#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"

typedef struct {
  bool used;
  uint8_t id[32];
  unsigned held;
  RateLimit offers;
} Offerer;

struct OfferGate {
  unsigned total, per_peer, burst;
  double rate; /* offers per second */
  unsigned held;
  Offerer peers[OFFERGATE_PEERS];
};

OfferGate *offergate_new(unsigned total, unsigned per_peer, unsigned burst, unsigned refill_ms)
{
  OfferGate *g = calloc(1, sizeof *g);
  if (!g)
    return NULL;
  g->total = total ? total : OFFERGATE_TOTAL;
  g->per_peer = per_peer ? per_peer : OFFERGATE_PER_PEER;
  g->burst = burst ? burst : OFFERGATE_BURST;
  g->rate = 1000.0 / (refill_ms ? refill_ms : OFFERGATE_REFILL_MS);
  return g;
}

void offergate_free(OfferGate *g)
{
  free(g);
}

static Offerer *find(const OfferGate *g, const uint8_t peer[32])
{
  for (size_t i = 0; i < OFFERGATE_PEERS; i++)
    if (g->peers[i].used && memcmp(g->peers[i].id, peer, 32) == 0)
      return (Offerer *)&g->peers[i];
  return NULL;
}

/* Forgetting a peer that holds nothing and whose bucket has refilled loses
 * nothing: it would start afresh with a full bucket anyway. */
static bool forgettable(const OfferGate *g, const Offerer *o, uint64_t now_ms)
{
  double tokens = o->offers.tokens;
  if (now_ms > o->offers.last_ms)
    tokens += (double)(now_ms - o->offers.last_ms) * g->rate / 1000.0;
  return o->held == 0 && tokens >= (double)g->burst;
}

static Offerer *remember(OfferGate *g, const uint8_t peer[32], uint64_t now_ms)
{
  Offerer *slot = NULL;
  for (size_t i = 0; i < OFFERGATE_PEERS && !slot; i++)
    if (!g->peers[i].used || forgettable(g, &g->peers[i], now_ms))
      slot = &g->peers[i];
  if (!slot)
    return NULL;
  memset(slot, 0, sizeof *slot);
  slot->used = true;
  memcpy(slot->id, peer, 32);
  ratelimit_init(&slot->offers, g->rate, g->burst, now_ms);
  return slot;
}

OfferVerdict offergate_admit(OfferGate *g, const uint8_t peer[32], uint64_t now_ms)
{
  if (g->held >= g->total)
    return OFFERGATE_FULL;
  Offerer *o = find(g, peer);
  if (!o && !(o = remember(g, peer, now_ms)))
    return OFFERGATE_CROWDED;
  if (o->held >= g->per_peer)
    return OFFERGATE_SHARE;
  if (!ratelimit_take(&o->offers, now_ms))
    return OFFERGATE_RATE;
  o->held++;
  g->held++;
  return OFFERGATE_OK;
}

void offergate_release(OfferGate *g, const uint8_t peer[32])
{
  Offerer *o = find(g, peer);
  if (!o || o->held == 0)
    return;
  o->held--;
  g->held--;
}

void offergate_opened(OfferGate *g, const uint8_t peer[32])
{
  Offerer *o = find(g, peer);
  if (!o)
    return;
  o->offers.tokens += 1.0;
  if (o->offers.tokens > o->offers.burst)
    o->offers.tokens = o->offers.burst;
}

unsigned offergate_held(const OfferGate *g)
{
  return g->held;
}

unsigned offergate_held_by(const OfferGate *g, const uint8_t peer[32])
{
  const Offerer *o = find(g, peer);
  return o ? o->held : 0;
}

const char *offergate_reason(OfferVerdict v)
{
  switch (v) {
  case OFFERGATE_OK:
    return "";
  case OFFERGATE_FULL:
    return "busy: every inbound link is taken";
  case OFFERGATE_SHARE:
    return "busy: you already hold your share of inbound links";
  case OFFERGATE_RATE:
    return "too many offers from you: try again in a few seconds";
  case OFFERGATE_CROWDED:
    return "busy: too many peers are offering";
  }
  return "busy";
}
