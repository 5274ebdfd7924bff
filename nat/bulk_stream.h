/* bulk_stream.h - the glib shell of nat/bulk.c: a pollable GIOStream whose
 * bytes travel as Bulk datagrams through a caller-supplied send function.
 *
 * nat/ice.c owns one per IcePeer: datagrams libnice receives on the
 * selected pair go in by bulk_stream_on_datagram, datagrams Bulk builds go
 * out through the BulkSendFunc (nice_agent_send). The caller of ice.h only
 * sees the GIOStream, and runs Canopy's secure channel over it.
 *
 * The input and output streams are GPollableInputStream and
 * GPollableOutputStream with level-triggered sources, like a TCP socket's:
 * the input's source fires while bytes are buffered (or at end of stream),
 * the output's while the send ring has room. Blocking reads and writes are
 * not offered (they would wait on the very main loop they block): they
 * report G_IO_ERROR_WOULD_BLOCK as the non-blocking calls do.
 *
 * Everything runs on the GMainContext given to bulk_stream_new: the pacing,
 * ACK and loss timers are one GSource there. Time is g_get_monotonic_time. */
#ifndef CANOPY_BULK_STREAM_H
#define CANOPY_BULK_STREAM_H

#include "bulk.h"

#include <gio/gio.h>

/* Sends one datagram (borrowed for the call). FALSE when it could not go
 * out now; Bulk then treats it as lost and repairs it like any other. */
typedef gboolean (*BulkSendFunc)(const guint8 *pkt, gsize len, gpointer ud);

/* Called after each burst of sends (a timer tick or an event drained):
 * for a sender that batches datagrams (udp_batch.h). */
typedef void (*BulkFlushFunc)(gpointer ud);

/* A new stream on ctx (borrowed, must outlive it). cfg as bulk_new (copied;
 * NULL for defaults). Datagrams are built but held back until
 * bulk_stream_set_sendable. Returns NULL when cfg is invalid. */
GIOStream *bulk_stream_new(GMainContext *ctx, const BulkConfig *cfg, BulkSendFunc send,
                           gpointer ud);
/* Bytes of the tag bulk_stream_set_keys adds to every datagram. */
#define BULK_STREAM_TAG_BYTES 8
#define BULK_STREAM_KEY_BYTES 16

/* From now on every datagram carries a UMAC-64 tag (RFC 4418, as OpenSSH's
 * umac-64-etm) under send_key, and a received one must carry one under
 * recv_key or it is dropped before Bulk parses it: whoever does not know the
 * keys (anyone off the signalling path) can neither inject stream bytes nor
 * forge ACKs that would wedge the sender, and one direction's datagrams
 * reflected back are dropped too. The nonce is Bulk's header (its packet
 * number is never reused), so a pair of keys must serve one stream only.
 * Before keys are set nothing is tagged or checked (tests run so). Bulk's
 * bytes are authenticated end to end by the secure channel above in any
 * case: the tag protects the transport's own state. Keys are copied. */
void bulk_stream_set_keys(GIOStream *s, const guint8 send_key[BULK_STREAM_KEY_BYTES],
                          const guint8 recv_key[BULK_STREAM_KEY_BYTES]);
/* Moves the tags to new keys (derived from the secure channel once it is
 * open, nat/ice.h ice_peer_rekey) at a point both sides agree on without a
 * message of their own: the first datagram that verifies under recv_key.
 * Until then a received datagram may carry a tag under either the old or
 * the new receive key; from then on only the new one is accepted, and the
 * old receive key is forgotten. send_now: datagrams are tagged with
 * send_key from now on (the side that knows the peer holds the new keys
 * already); otherwise from that first new-key datagram on (the peer
 * proved it has them). Without keys set before, this is
 * bulk_stream_set_keys. Keys are copied. */
void bulk_stream_rekey(GIOStream *s, const guint8 send_key[BULK_STREAM_KEY_BYTES],
                       const guint8 recv_key[BULK_STREAM_KEY_BYTES], gboolean send_now);
/* Whether the switch bulk_stream_rekey announced has happened. */
gboolean bulk_stream_rekeyed(GIOStream *s);
/* Datagrams dropped for a bad or missing tag (also counted in
 * BulkStats.dropped_datagrams). */
guint64 bulk_stream_unauthenticated(GIOStream *s);
/* The path may carry datagrams of up to max bytes, tag included: Bulk
 * probes for them (bulk_set_max_mtu) and the send function then gets
 * datagrams that large; a smaller max than before takes effect at once.
 * The size given to bulk_stream_new stays the floor. */
void bulk_stream_set_max_datagram(GIOStream *s, gsize max);
/* One datagram from the path (borrowed; hostile input, Bulk checks it). */
void bulk_stream_on_datagram(GIOStream *s, const guint8 *pkt, gsize len);
/* Datagrams read in one batch (nat/pair_socket.c): between begin and end
 * bulk_stream_on_datagram only takes them in, and end answers them all at
 * once (ACKs, sends) from the caller's dispatch, instead of waking the main
 * loop for the stream's timer (an eventfd write and read per batch). */
void bulk_stream_batch_begin(GIOStream *s);
void bulk_stream_batch_end(GIOStream *s);
/* Sets (or clears, NULL) the flush hook; it gets the send function's ud. */
void bulk_stream_set_flush(GIOStream *s, BulkFlushFunc flush);
/* The path can carry datagrams now (TRUE) or not yet / no more (FALSE). */
void bulk_stream_set_sendable(GIOStream *s, gboolean sendable);
/* Cuts the stream from its path for good: the send function is never
 * called again, the timer stops, reads see end of stream and writes fail
 * with G_IO_ERROR_BROKEN_PIPE. For the owner of the path, before it goes. */
void bulk_stream_detach(GIOStream *s);
/* Bulk's counters (zeros once detached); dropped_datagrams includes those
 * that failed the tag check. */
void bulk_stream_stats(GIOStream *s, BulkStats *out);

#endif
