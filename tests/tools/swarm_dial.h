/* swarm_dial.h - the swarm's dialers: leaves spread over loopback sources.
 *
 * Linux picks a connect()'s source port by walking the ephemeral range from a
 * per-destination offset, even ports first. Once every even port already
 * carries a connection from the same source address to the same super node
 * (14,116 of them with the default 32768-60999 range), each further connect
 * walks all of them before it finds an odd one: a 19,000-leaf swarm on one
 * source address spent 43 % of its CPU in __inet_hash_connect and
 * __inet_check_established. Real leaves come from many addresses; the swarm
 * gives each of K dialers its own 127.0.0.x source (the whole of 127/8 is
 * local on Linux) and binds with IP_BIND_ADDRESS_NO_PORT, so the port is
 * still chosen at connect() for the full 4-tuple and no port is held
 * exclusively. */
#ifndef CANOPY_SWARM_DIAL_H
#define CANOPY_SWARM_DIAL_H

#include <gio/gio.h>
#include <stdint.h>

/* Source addresses 127.0.0.1 .. 127.0.0.SWARM_MAX_SOURCES: one /24, so a
 * super node's per-prefix budgets see one prefix as before. */
#define SWARM_MAX_SOURCES 200

typedef struct SwarmDialers SwarmDialers;

/* n_sources 1: one dialer that binds nothing (the kernel's choice of source,
 * as before); 2..SWARM_MAX_SOURCES: that many, 127.0.0.1 up. timeout_s is
 * each dialer's connect timeout. */
SwarmDialers *swarm_dialers_new(unsigned n_sources, guint timeout_s);
/* The dialer of leaf number `leaf` (leaves are spread round-robin). */
GSocketClient *swarm_dialers_for(SwarmDialers *d, uint64_t leaf);
/* Connects bound to a source that failed (counted, not fatal: the dial then
 * goes on from the kernel's choice of source). */
uint64_t swarm_dialers_bind_failures(const SwarmDialers *d);
void swarm_dialers_free(SwarmDialers *d);

#endif
