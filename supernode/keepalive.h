/* keepalive.h - who is silent, in O(1) per event (issue 12).
 *
 * The super node used to walk every session each second to find the silent
 * ones and ping them: 19,000 idle leaves cost 19,000 visits a second.
 * Instead every session sits in two intrusive lists of the core (SnCore):
 * by_rx, ordered by the time it was last heard from, and by_ping, ordered by
 * the time it was last heard from or pinged. A receive moves the session to
 * the tail of both (its time is the newest), a ping to the tail of by_ping,
 * so both stay sorted and a sweep looks only at their heads: O(1) per
 * session that is due, nothing for the others.
 *
 * PONGs: a leaf pings every one of its keepalive intervals and gives us up
 * after 3 silent ones; its keepalives are marked spare (WIRE_PING_SPARE),
 * and we answer every other one. Whatever the leaf's interval, it hears us
 * at least every 2 of its intervals (plus a round trip), a full interval
 * inside its bound, while we hear it every interval as before. The price
 * is margin, not detection: a leaf used to give up a super node stalled
 * for more than 2 intervals, now for more than 1 (5 s by default; our loop
 * stalls for milliseconds). Keeping 2 would mean a 4-interval bound, and
 * a hung super node outside a group found 5 s later.
 *
 * Rules (unchanged from the per-session sweep, except that a session we
 * hear from is not pinged: leaves ping us every keepalive, and a PING or
 * PONG from the far end proves it alive as well as our own would):
 * - silent for 3 keepalive intervals less one sweep period: closed;
 * - silent (neither heard from nor pinged) for a keepalive interval: pinged
 *   (sessions past HELLO only). */
#ifndef CANOPY_KEEPALIVE_H
#define CANOPY_KEEPALIVE_H

#include "sncore_int.h"

/* A new session, heard from now. */
void keepalive_open(SnCore *c, Peer *p, uint64_t now);
/* p sent us something now. */
void keepalive_heard(SnCore *c, Peer *p, uint64_t now);
/* p sent a PING with this nonce: whether to answer it with a PONG. A spare
 * keepalive (WIRE_PING_SPARE) goes unanswered when the one before it was
 * answered, so an idle leaf costs us one PONG every other interval instead
 * of every interval (half the sends: on loopback most of an idle super
 * node's CPU); every other PING is answered. */
bool keepalive_answer_ping(Peer *p, uint64_t nonce);
/* p is being forgotten. */
void keepalive_forget(SnCore *c, Peer *p);
/* Closes the sessions silent too long and pings those silent a keepalive
 * interval; period is the sweep's own period (the closing rule's slack). */
void keepalive_sweep(SnCore *c, uint64_t now, uint64_t period);
/* When keepalive_sweep next has work (UINT64_MAX: no sessions). */
uint64_t keepalive_deadline(const SnCore *c, uint64_t period);

#endif
