/* offergate.h - which inbound ICE offers a leaf takes (issue 11, finding 8).
 *
 * Each offer a leaf takes costs it an ICE agent, a gathering (a STUN and
 * perhaps a TURN exchange) and the connectivity checks to the addresses the
 * offer names, for up to its ICE deadline. Offers come from any leaf of the
 * network, through the super nodes, with the sender's node id stamped by its
 * super node. So inbound links have a budget: in total, per offering node
 * id at a time, and per node id over time (a token bucket), and an offer
 * over any of them is refused with a reason the offerer is told.
 *
 * Sans-I/O: time comes in as monotonic milliseconds, no glib, no clock.
 */
#ifndef CANOPY_OFFERGATE_H
#define CANOPY_OFFERGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Inbound links open at once, over all peers. */
#define OFFERGATE_TOTAL 32
/* Inbound links one node id may hold at once: a downloader opens one link
 * per source and file, so a few concurrent gets fit; one peer alone cannot
 * hold more than an eighth of the total. */
#define OFFERGATE_PER_PEER 4
/* Offers one node id may make that do not end in an open link: a burst of
 * OFFERGATE_BURST, then one every OFFERGATE_REFILL_MS (15 a minute). An
 * offer whose link opens (ICE found a path and the offerer proved its node
 * id in the channel handshake) gives its token back (offergate_opened): an
 * honest downloader running get after get is never slowed, while offers
 * that only make us send checks somewhere run out. */
#define OFFERGATE_BURST 4
#define OFFERGATE_REFILL_MS 4000
/* Node ids remembered; one that holds no link and whose bucket is full
 * again is forgotten when room is needed. Every link holder is remembered
 * (OFFERGATE_TOTAL of them at most), so this only bounds the memory of
 * recent offerers. */
#define OFFERGATE_PEERS 128

typedef struct OfferGate OfferGate;

typedef enum {
  OFFERGATE_OK,
  OFFERGATE_FULL,    /* every inbound slot is taken */
  OFFERGATE_SHARE,   /* this peer holds its share of slots */
  OFFERGATE_RATE,    /* this peer offered too often */
  OFFERGATE_CROWDED, /* too many peers remembered, none forgettable */
} OfferVerdict;

/* Budgets as the defines above when 0 is passed. NULL on no memory. */
OfferGate *offergate_new(unsigned total, unsigned per_peer, unsigned burst, unsigned refill_ms);
void offergate_free(OfferGate *g); /* NULL is a no-op */

/* Admits an offer from peer (borrowed) now: OFFERGATE_OK takes a slot,
 * to be given back with offergate_release; anything else takes nothing. */
OfferVerdict offergate_admit(OfferGate *g, const uint8_t peer[32], uint64_t now_ms);
/* Gives back a slot offergate_admit gave peer; a peer holding none is
 * ignored. */
void offergate_release(OfferGate *g, const uint8_t peer[32]);

/* The link of an offer from peer opened: its token comes back (up to the
 * burst). */
void offergate_opened(OfferGate *g, const uint8_t peer[32]);

/* Slots held in total and by peer. */
unsigned offergate_held(const OfferGate *g);
unsigned offergate_held_by(const OfferGate *g, const uint8_t peer[32]);

/* What to tell the offerer (static text; "" for OFFERGATE_OK). */
const char *offergate_reason(OfferVerdict v);

#endif
