/* stun_limit.h - who gets a STUN answer, and how many: budgets per source
 * address, per source prefix and in total (issue 11, finding 14).
 *
 * A STUN request's source address is whatever the sender wrote: a flood
 * with a forged source turns a responder into a reflector aimed at the
 * forged address, and with one budget for everyone a single flooding sender
 * used all of it. So each answer takes a token from three buckets: its
 * source address's, its prefix's (/24 IPv4, /64 IPv6: one home, one
 * customer of a provider) and the global one; it is sent only if all three
 * have one, and a refused answer takes none, so a flooding source spends
 * only its own budget.
 *
 * Memory is fixed: buckets live in STUN_LIMIT_SLOTS slots per kind, chosen by
 * a keyed hash (a random key per process) of the address or prefix, so a
 * sender cannot aim at another's slot; two sources that share a slot by
 * chance share a budget.
 *
 * Sans-I/O: time is passed in (monotonic milliseconds).
 */
#ifndef CANOPY_STUN_LIMIT_H
#define CANOPY_STUN_LIMIT_H

#include <stdint.h>
#include <sys/socket.h>

/* Answers per second to one source address, and the burst above it. An
 * ICE agent asks once per host candidate and retransmits a few times; a
 * carrier-grade NAT puts many agents behind one address, hence the room. */
#define STUN_LIMIT_ADDR_RATE 20
#define STUN_LIMIT_ADDR_BURST 40
/* Per /24 (IPv4) or /64 (IPv6). */
#define STUN_LIMIT_PREFIX_RATE 100
#define STUN_LIMIT_PREFIX_BURST 200
/* Over all sources. */
#define STUN_LIMIT_RATE 2000
#define STUN_LIMIT_BURST 400
/* Bucket slots per kind (address, prefix): 2 x 4096 x 16 bytes. */
#define STUN_LIMIT_SLOTS 4096

typedef struct StunLimit StunLimit;

typedef enum {
  STUN_LIMIT_OK,     /* answer; a token was taken from each bucket */
  STUN_LIMIT_ADDR,   /* this source address is over its budget */
  STUN_LIMIT_PREFIX, /* its prefix is */
  STUN_LIMIT_GLOBAL, /* everyone together is */
  STUN_LIMIT_BAD,    /* not an IPv4 or IPv6 address */
} StunLimitVerdict;

/* key: 16 bytes for the slot hash, or NULL for a random one. NULL on no
 * memory. */
StunLimit *stun_limit_new(const uint8_t *key, uint64_t now_ms);
void stun_limit_free(StunLimit *l); /* NULL is a no-op */

/* Whether an answer may go to from (fromlen bytes; an IPv4-mapped IPv6
 * address counts as the IPv4 one) now. */
StunLimitVerdict stun_limit_take(StunLimit *l, const struct sockaddr *from, socklen_t fromlen,
                                 uint64_t now_ms);

#endif
