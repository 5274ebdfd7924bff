/* channel.h - the secure channel: authenticated key exchange, then AEAD frames.
 *
 * Sans-I/O: the caller feeds received bytes in and drains bytes to send out;
 * the channel never touches a socket or a clock. Every unit on the wire is a
 * frame: u32 big-endian length, then that many bytes (at most
 * CHANNEL_MAX_WIRE_FRAME).
 *
 * Handshake (initiator I, responder R; SIGMA-I shape, identities encrypted):
 *   M1 I->R: "CNPY" | u8 version=2 | I_eph_pk[32]               (crypto_kx keys)
 *   Under load only (cookie.h), R answers M1 with a challenge instead of M2,
 *   and I sends M1 again with the challenge solved before R does any
 *   public-key work; R keeps no state for it:
 *   C  R->I: u8 difficulty | u32 ts | mac[16]
 *   M1 I->R: "CNPY" | u8 version=2 | I_eph_pk[32] | C | u64 nonce
 *   (Sizes tell the messages apart: C is 21 bytes, M2 169; M1 37 or 66.)
 *   M2 R->I: R_eph_pk[32] | ss_header_R[24] |
 *            secretstream(R_static_pk[32] | sig_R(ctx_R | I_eph | R_eph))
 *   M3 I->R: ss_header_I[24] |
 *            secretstream(I_static_pk[32] | sig_I(ctx_I | I_eph | R_eph | R_static))
 * Session keys come from crypto_kx over the ephemerals; each direction is one
 * crypto_secretstream_xchacha20poly1305 stream, so a flipped bit, a replayed,
 * reordered or truncated frame fails to decrypt and the channel fails for good.
 * Because each static key and signature travels inside the stream only the
 * two ends can read, a man in the middle cannot re-sign the transcript under
 * its own key (identity misbinding).
 */
#ifndef CANOPY_CHANNEL_H
#define CANOPY_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "cookie.h"
#include "identity.h"

#define CHANNEL_MAX_PLAIN 65536 /* largest application message */
#define CHANNEL_MAX_WIRE_FRAME (CHANNEL_MAX_PLAIN + 17 /* ABYTES */)

typedef struct Channel Channel;

typedef enum { CHANNEL_INITIATOR, CHANNEL_RESPONDER } ChannelRole;

typedef enum {
  CHANNEL_HANDSHAKE, /* keys not yet agreed */
  CHANNEL_OPEN,      /* peer authenticated; frames flow */
  CHANNEL_CLOSED,    /* the peer sent its final frame */
  CHANNEL_FAILED,    /* see channel_error(); the session must end */
} ChannelState;

/* self is copied. An initiator queues M1 at once (and makes its ephemeral key
 * pair for it); a responder makes its key pair only for an acceptable M1.
 * NULL on allocation failure. */
Channel *channel_new(const Identity *self, ChannelRole role);
/* Responder only, before the first feed: jar (borrowed; it must outlive ch)
 * decides whether M1 gets a challenge first and counts this handshake while
 * it is in progress; addr (the peer's IP address, at most COOKIE_ADDR_MAX
 * bytes, copied) is what the cookie is bound to. Without a jar every M1 is
 * answered at once (leaf-to-leaf sessions). False if called out of place. */
bool channel_set_cookie_jar(Channel *ch, CookieJar *jar, const uint8_t *addr, size_t addr_len);
/* Public-key operations this channel has done (key pairs, agreements,
 * signatures, verifications): what a handshake attempt cost, for tests and
 * the benchmark. */
unsigned channel_pk_ops(const Channel *ch);
void channel_free(Channel *ch); /* NULL is a no-op; wipes keys */

ChannelState channel_state(const Channel *ch);
/* Static reason for CHANNEL_FAILED ("bad signature", "decryption failed", ...). */
const char *channel_error(const Channel *ch);
/* Peer's node id and public key; valid once CHANNEL_OPEN. Borrowed. */
const uint8_t *channel_peer_id(const Channel *ch);
const uint8_t *channel_peer_pk(const Channel *ch);

/* Largest key channel_export gives, in bytes. */
#define CHANNEL_EXPORT_MAX 32
/* A key of len bytes (16..CHANNEL_EXPORT_MAX) for another use of this
 * session, named by label: the same on both ends, known to no one else,
 * independent of the stream keys and of other labels (BLAKE2b keyed with a
 * secret derived from both session keys). Only while CHANNEL_OPEN; false
 * otherwise. (An exporter, as TLS has: RFC 5705.) */
bool channel_export(const Channel *ch, const char *label, uint8_t *out, size_t len);

/* Buffers received bytes and advances the handshake as far as they allow.
 * Returns false once the channel has failed. Input is bounded: at most one
 * frame plus its header is ever buffered. */
bool channel_feed(Channel *ch, const uint8_t *data, size_t len);
/* Decrypts the next complete application frame from the buffered input.
 * Returns 1 and sets *msg and *len (borrowed until the next call into ch),
 * 0 if no complete frame is buffered, -1 on failure. */
int channel_read(Channel *ch, const uint8_t **msg, size_t *len);
/* Encrypts one application message (len <= CHANNEL_MAX_PLAIN) and queues it.
 * Only when CHANNEL_OPEN. */
bool channel_write(Channel *ch, const uint8_t *msg, size_t len);
/* Queues the final frame; the peer will see CHANNEL_CLOSED. */
bool channel_write_final(Channel *ch);

/* What an emptied output buffer may keep allocated: a peak queue (a slow
 * reader let hundreds of KiB pile up, then read them) must not stay in
 * memory, uncharged, for the session's life. */
#define CHANNEL_OUTPUT_KEEP (128u * 1024) /* one full frame: no churn per message */

/* Bytes waiting to go out, and marking n of them sent; the buffer then
 * holds at most max(CHANNEL_OUTPUT_KEEP, 2 x what is left). */
const uint8_t *channel_output(const Channel *ch, size_t *len);
void channel_output_consume(Channel *ch, size_t n);
/* Bytes allocated for output (tests and memory accounting). */
size_t channel_output_capacity(const Channel *ch);
/* Free what an idle channel need not hold, so that an idle session holds
 * no buffer at all (issue 12: 19,000 idle leaves on one super node; an
 * allocation is cheap next to the AEAD of the message that needs the buffer
 * again). channel_release_input frees the input buffer when it holds no
 * partial frame and the last plaintext (wiped first): call it only once
 * every message is handled, since a message channel_read lent out is gone
 * after it. channel_release_output frees the output buffer when empty. */
void channel_release_input(Channel *ch);
/* Bytes allocated for input: the partial-frame buffer and the last
 * plaintext (what an input budget charges). */
size_t channel_input_capacity(const Channel *ch);
void channel_release_output(Channel *ch);

#endif
