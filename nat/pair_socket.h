/* pair_socket.h - the selected pair's datagrams, many per system call.
 *
 * libnice reads one datagram per recvmsg and wraps each in a GSocketAddress
 * and a lock round trip: at 100k datagrams a second that is most of a
 * receiving leaf's CPU (nat/TRANSPORT.md). Once a direct pair carries Bulk
 * both ways, a PairSocket takes that pair's datagrams off libnice's path: a
 * second UDP socket bound to the same local address and port as the pair's
 * base socket (SO_REUSEADDR on both for the moment of the bind) and
 * connected to the remote candidate. The kernel hands a datagram to the socket whose binding
 * matches it best, so everything from that one remote address and port comes here, while STUN and
 * TURN servers and every other candidate still reach libnice. It reads with recvmmsg and UDP GRO
 * (one buffer per coalesced run of equal-sized datagrams, split here by the segment size the kernel
 * reports).
 *
 * What libnice no longer sees from that address: the peer's keepalives
 * (Binding Indications, which need no answer) and any late check on the
 * selected pair. nat/ice.c therefore opens a PairSocket only once libnice
 * has selected the pair (it selects only a nominated, valid pair: our
 * checks on it are over) and an authenticated Bulk datagram has come from
 * the peer (it sends Bulk only once it has selected a pair too); it closes
 * it when libnice selects another pair. Consent freshness (RFC 7675), which
 * would need libnice to see the peer's requests, is off on both ends, and
 * without it libnice 0.1.21 never fails a selected pair for silence.
 *
 * The same socket sends the datagrams larger than Bulk's base size, with
 * IP_PMTUDISC_PROBE: never fragmented, so that a size the path cannot
 * carry gets lost and Bulk's path MTU search sees it (RFC 8899).
 */
#ifndef CANOPY_PAIR_SOCKET_H
#define CANOPY_PAIR_SOCKET_H

#include <gio/gio.h>

typedef struct PairSocket PairSocket;

/* One datagram (borrowed for the call). */
typedef void (*PairSocketFunc)(const guint8 *pkt, gsize len, gpointer data);
/* The end of one read batch: every datagram the socket held was passed. */
typedef void (*PairSocketDoneFunc)(gpointer data);

/* A socket beside base (libnice's, borrowed: only its fd and local address
 * are used, now) for datagrams from remote, read in ctx and passed to fn,
 * then done (may be NULL) once per read batch.
 * NULL with *err set when the system refuses (the caller stays on
 * libnice's path). */
PairSocket *pair_socket_new(GSocket *base, GSocketAddress *remote, GMainContext *ctx,
                            PairSocketFunc fn, PairSocketDoneFunc done, gpointer data,
                            GError **err);
/* Closes the socket; datagrams from the remote reach libnice again.
 * NULL is a no-op. */
void pair_socket_free(PairSocket *ps);

/* The socket (owned by ps), to send on: same addresses as the base, and
 * never fragmented locally (IP_PMTUDISC_PROBE), which is what datagrams
 * larger than the base size need while Bulk probes for them. */
GSocket *pair_socket_get_socket(PairSocket *ps);
/* The largest UDP payload the route to the remote takes as the kernel
 * knows it (the interface's MTU, or less once an ICMP said so); 0 when
 * unknown. A ceiling for probing, not a promise. */
gsize pair_socket_path_mtu(PairSocket *ps);

/* System calls made and datagrams read, for the figures. */
void pair_socket_counts(const PairSocket *ps, guint64 *calls, guint64 *datagrams);

#endif
