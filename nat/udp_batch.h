/* udp_batch.h - datagrams to one address, sent many per system call.
 *
 * Bulk sends a burst of equal-sized datagrams per timer tick. One sendmsg
 * per datagram is most of a sender's CPU at tens of MB/s (nat/TRANSPORT.md);
 * UDP generic segmentation offload (UDP_SEGMENT, Linux >= 4.18) hands the
 * kernel up to 64 of them in one buffer and one call. Where the kernel or
 * the device refuses it, the batch goes out one datagram at a time, and
 * the batch stays that way.
 *
 * The socket is borrowed (libnice's, for the selected candidate pair; the
 * caller keeps a reference). Sending is best effort, like any UDP: a full
 * socket buffer drops the datagrams and Bulk repairs them as losses. */
#ifndef CANOPY_UDP_BATCH_H
#define CANOPY_UDP_BATCH_H

#include <gio/gio.h>

typedef struct UdpBatch UdpBatch;

/* A batch for datagrams of at most max_len bytes from sock to dest. NULL
 * when dest's family does not match the socket's. */
UdpBatch *udp_batch_new(GSocket *sock, GSocketAddress *dest, gsize max_len);
void udp_batch_free(UdpBatch *b); /* sends nothing pending; NULL is a no-op */

/* Queues one datagram (copied); may send the batch first (a size change,
 * or full). */
void udp_batch_add(UdpBatch *b, const guint8 *pkt, gsize len);
/* Sends what is queued. */
void udp_batch_flush(UdpBatch *b);

/* System calls made and datagrams sent, for the figures. */
void udp_batch_counts(const UdpBatch *b, guint64 *calls, guint64 *datagrams);

#endif
