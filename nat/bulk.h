/* bulk.h - a reliable, ordered byte stream over unreliable datagrams, sans I/O.
 *
 * Why: libnice's PseudoTCP reaches 0.02-0.05 of Linux TCP through NATs with
 * 0.1 % random loss (nat/TRANSPORT.md): a fixed 60 KB window and a Reno loss
 * response. Bulk carries one byte stream in each direction over ICE's
 * datagram path (payload MTU ~1200 bytes) and aims at >= 0.9 of the link.
 * It does not encrypt: Canopy's secure channel runs on top of the stream.
 *
 * Sans I/O: no sockets, no clock reads, no main loop. The caller feeds
 * received datagrams (bulk_on_datagram), drains datagrams to send
 * (bulk_poll_datagram until it returns 0), and calls bulk_on_timer at
 * bulk_next_timer. Time is monotonic microseconds, passed in.
 *
 * Design, and why:
 *  - Packet numbers are never reused (as QUIC, RFC 9000 section 12.3):
 *    retransmitted bytes travel in a packet with a new number, so every ACK
 *    names exactly one transmission and RTT samples and delivery-rate
 *    samples are never ambiguous (no Karn's rule). Stream offsets, not packet
 *    numbers, drive reassembly.
 *  - The receiver ACKs packet-number ranges (up to BULK_MAX_ACK_RANGES, like
 *    SACK blocks) after every 2nd ack-eliciting packet, at once when a packet
 *    arrives out of order, and at the latest after ack_delay_us (1 ms). Every
 *    ACK also carries the receive window as an absolute stream offset.
 *  - Loss detection is time and reorder based (RACK, RFC 8985; QUIC, RFC 9002
 *    section 6.1): a packet is lost once a packet sent 3 later is ACKed, or
 *    9/8 RTT after it was sent once a later one is ACKed. A packet declared
 *    lost and ACKed later raises the packet threshold to twice the
 *    reordering seen and the time threshold by 1/4 RTT (up to 2 RTT), as
 *    RACK's adaptive window, so a reordering path stops costing resends.
 *    A probe timeout (PTO, RFC 9002 section 6.2) sends up to two probes
 *    when the tail of the flight is lost; it never collapses the window.
 *  - Congestion control is BBR-like (draft-cardwell-iccrg-bbr-congestion-
 *    control): each ACK yields a delivery-rate sample; the bottleneck
 *    bandwidth is the max over the last 10 rounds, min RTT the min over
 *    5-10 s. Pacing rate = gain x btlbw, cwnd = 2 x BDP (+3 packets, floor
 *    4). Startup paces at 2.77 x btlbw with cwnd 2 x BDP (BBRv3's gains:
 *    BBRv1's 2.89 cwnd gain overfills a BDP-sized drop-tail queue) and grows
 *    cwnd by the bytes ACKed (doubling per round) until btlbw grows < 25 %
 *    in 3 rounds, or a round's loss passes the threshold below; then it
 *    drains and cycles pacing gains 1.25/0.75/1 x 6, one min RTT each.
 *    Isolated random loss does not lower the rate: that is the point (Reno
 *    divides its rate by ~sqrt(loss)).
 *    Sustained high loss - more than 5 % of a round's packets, at least 8 of
 *    them - is read as congestion: cwnd is capped at 0.7 x its value (as
 *    BBRv2's inflight_hi) and the cap grows back 1/8 per clean round, so a
 *    congested drop-tail link is not driven into collapse.
 *  - Flow control: the receive buffer is a fixed ring of recv_buf bytes; the
 *    sender never sends past the advertised offset, so a slow reader stalls
 *    the sender instead of growing memory. A blocked sender probes with PING.
 *  - Datagram size (DPLPMTUD, RFC 8899): cfg.mtu is the base size every
 *    path is assumed to carry. When the caller allows more
 *    (bulk_set_max_mtu), Bulk probes: a PING padded to the size tried,
 *    outside congestion control and never carrying data, so a lost probe
 *    costs nothing; an acknowledged one raises the size in use. The
 *    ceiling is tried first, then a binary search (3 lost probes fail a
 *    size); after 10 minutes it searches again. 10 large packets lost in
 *    a row while none is acked (PTO probes and resends, base-sized, do get
 *    through) read as a black hole: back to the base at once. Resent bytes always
 *    travel in base-sized packets, so a path whose MTU shrinks still
 *    delivers them. Larger
 *    datagrams mean fewer of them, and per-datagram host cost is what
 *    limits a fast path (nat/TRANSPORT.md).
 *  - Bounded memory everywhere: send ring, receive ring, the sent-packet
 *    record (max_packets entries), and every range set have fixed caps.
 *    When a cap is hit Bulk sends less or drops a datagram unacknowledged;
 *    it never loses acknowledged bytes.
 *
 * Wire format (big-endian; no varints, so a parse is a few fixed reads):
 *   packet  = u8 BULK_MAGIC, u64 packet_number, frame*     (>= 1 frame)
 *   STREAM  = u8 0x01, u64 offset, u16 length, u8 fin(0|1), length bytes
 *   ACK     = u8 0x02, u32 ack_delay_us, u64 max_stream_offset,
 *             u8 n (1..32), n x (u64 largest, u64 count >= 1), ranges
 *             descending and non-adjacent
 *   PING    = u8 0x03                      (asks for an ACK)
 *   PAD     = u8 0x04, zero bytes to the end of the datagram (probes)
 * At most one frame of each type per packet; anything else (unknown frame,
 * trailing bytes, a range that ACKs an unsent packet, a FIN that moves)
 * drops the whole datagram and counts it in BulkStats.dropped_datagrams.
 */
#ifndef CANOPY_BULK_H
#define CANOPY_BULK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BULK_MAGIC 0xCB
/* Every datagram starts with magic and packet number; as no packet number
 * is sent twice, these bytes are unique among one endpoint's datagrams (a
 * MAC's nonce, nat/bulk_stream.c). */
#define BULK_HEADER_BYTES 9
#define BULK_MAX_ACK_RANGES 32
/* Smallest datagram size Bulk accepts in BulkConfig.mtu. */
#define BULK_MIN_MTU 600
#define BULK_MAX_MTU 65000

typedef struct Bulk Bulk;

typedef struct {
  size_t mtu;               /* largest datagram Bulk builds; 0 = 1200 */
  size_t send_buf;          /* send ring, bytes; 0 = 16 MiB */
  size_t recv_buf;          /* receive ring = receive window, bytes; 0 = 16 MiB */
  uint32_t ack_delay_us;    /* max delay of an ACK; 0 = 1000 */
  uint32_t initial_rtt_us;  /* RTT assumed before a sample; 0 = 100000 */
  uint32_t pacing_slack_us; /* burst allowed after the caller was late;
                               0 = 1000 (glib timers fire in ms) */
} BulkConfig;

typedef struct {
  uint64_t bytes_written;     /* accepted by bulk_write */
  uint64_t bytes_sent;        /* stream bytes put in datagrams, incl. resends */
  uint64_t bytes_acked;       /* stream bytes the peer has (contiguous) */
  uint64_t bytes_received;    /* in-order stream bytes received */
  uint64_t bytes_read;        /* returned by bulk_read */
  uint64_t bytes_held;        /* received past a hole, awaiting it */
  uint64_t packets_sent;      /* all datagrams, ACK-only included */
  uint64_t packets_received;  /* accepted datagrams */
  uint64_t packets_lost;      /* declared lost */
  uint64_t retransmits;       /* datagrams carrying resent bytes */
  uint64_t spurious_losses;   /* declared lost, then ACKed (reordering) */
  uint64_t dropped_datagrams; /* malformed, duplicate or over a cap */
  uint64_t srtt_us;
  uint64_t min_rtt_us;
  uint64_t delivery_rate;   /* bytes/s, bottleneck estimate (btlbw) */
  uint64_t pacing_rate;     /* bytes/s */
  uint64_t cwnd;            /* bytes */
  uint64_t inflight;        /* bytes */
  uint64_t mtu;             /* datagram size in use */
  uint64_t mtu_probes;      /* path MTU probes sent */
  uint64_t mtu_black_holes; /* falls back to the base size */
} BulkStats;

/* Returns a new endpoint, or NULL when cfg is invalid (mtu outside
 * [BULK_MIN_MTU, BULK_MAX_MTU], buffers under 64 KiB or over 1 GiB) or memory
 * runs out. cfg may be NULL (all defaults); it is copied. Both ends of a
 * conversation are peers: either may write, read and close. */
Bulk *bulk_new(const BulkConfig *cfg, uint64_t now_us);
/* Frees b and its buffers. bulk_free(NULL) is a no-op. */
void bulk_free(Bulk *b);

/* Queues up to len bytes of data (borrowed) for the stream; returns the
 * number accepted (0 when the send ring is full or after bulk_close). */
size_t bulk_write(Bulk *b, const uint8_t *data, size_t len);
/* Ends the outgoing stream after the bytes written so far (sends FIN). */
void bulk_close(Bulk *b);
/* Copies up to cap in-order bytes into buf; returns the count, 0 if none
 * yet (or at end of stream: see bulk_eof). Reading frees window. */
size_t bulk_read(Bulk *b, uint8_t *buf, size_t cap);
/* In-order bytes bulk_read would return now. */
size_t bulk_readable(const Bulk *b);
/* Bytes bulk_write would accept now (0 after bulk_close). */
size_t bulk_writable(const Bulk *b);
/* True once the peer's FIN arrived and every byte before it was read. */
bool bulk_eof(const Bulk *b);
/* True once bulk_close was called and the peer acknowledged every byte and
 * the FIN: the outgoing stream is done and b may be freed after a last
 * bulk_poll_datagram drain (the peer may still want ACKs for its data). */
bool bulk_done(const Bulk *b);

/* Feeds one received datagram (borrowed; hostile input). */
void bulk_on_datagram(Bulk *b, const uint8_t *pkt, size_t len, uint64_t now_us);
/* Lets Bulk search for datagrams of up to max_mtu bytes (clamped to
 * [cfg.mtu, BULK_MAX_MTU]); a size in use above it drops to it. The caller
 * must then take datagrams that large: poll with cap >= max_mtu. Default:
 * cfg.mtu, no probing. */
void bulk_set_max_mtu(Bulk *b, size_t max_mtu, uint64_t now_us);

/* Writes the next datagram to send now into out (cap >= the largest size
 * allowed, cfg.mtu or bulk_set_max_mtu's; else only what fits is built) and returns its length, or
 * 0 when nothing is to be sent now. Call until it returns 0 after every event. */
size_t bulk_poll_datagram(Bulk *b, uint8_t *out, size_t cap, uint64_t now_us);
/* Absolute time (us) at which bulk_on_timer and a poll drain are due:
 * pacing, ACK delay, loss time or PTO; a time <= now means at once;
 * UINT64_MAX when nothing is armed (an idle endpoint needs no wakeups). */
uint64_t bulk_next_timer(const Bulk *b);
/* Runs whatever is due at now_us; then drain bulk_poll_datagram. */
void bulk_on_timer(Bulk *b, uint64_t now_us);

void bulk_stats(const Bulk *b, BulkStats *out);

#endif
