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
 * exclusively.
 *
 * A dial to a numeric address (every super node a test names) is a
 * non-blocking connect() watched in the context's evloop: GSocketClient's
 * asynchronous connect costs a GTask, a GCancellable, its address
 * enumerator and a GSource per dial in flight, which GLib's poll then walks
 * on every pass (400 of them in an attach storm). A host name still goes
 * through GSocketClient. */
#ifndef CANOPY_SWARM_DIAL_H
#define CANOPY_SWARM_DIAL_H

#include <gio/gio.h>
#include <stdint.h>

#include "evloop.h"

/* Source addresses 127.0.0.1 .. 127.0.0.SWARM_MAX_SOURCES: one /24, so a
 * super node's per-prefix budgets see one prefix as before. */
#define SWARM_MAX_SOURCES 200

typedef struct SwarmDialers SwarmDialers;

/* n_sources 1: one dialer that binds nothing (the kernel's choice of source,
 * as before); 2..SWARM_MAX_SOURCES: that many, 127.0.0.1 up. Dials are
 * watched in ev (GSocketClient's run in the thread-default context). */
SwarmDialers *swarm_dialers_new(unsigned n_sources, EvLoop *ev);
/* A connect timeout, as GSocketClient's. */
#define SWARM_DIAL_TIMEOUT_MS 5000

typedef struct SwarmDial SwarmDial;
/* conn: the connected socket (owned by the callee), or NULL and why not. The
 * dial is freed after this returns. */
typedef void (*SwarmDialFn)(GSocketConnection *conn, const char *error, void *ud);

/* Dials addr ("HOST:PORT", "[V6]:PORT") for leaf number `leaf` (leaves are
 * spread round-robin over the sources); fn runs once, from the loop, never
 * from inside this call. */
SwarmDial *swarm_dial_start(SwarmDialers *d, uint64_t leaf, const char *addr, SwarmDialFn fn,
                            void *ud);
/* Stops a dial whose callback has not run: it never will. */
void swarm_dial_cancel(SwarmDial *dl);
/* Dials in flight (the tests check none is left behind). */
unsigned swarm_dials_pending(const SwarmDialers *d);
/* Connects bound to a source that failed (counted, not fatal: the dial then
 * goes on from the kernel's choice of source). */
uint64_t swarm_dialers_bind_failures(const SwarmDialers *d);
void swarm_dialers_free(SwarmDialers *d);

#endif
