/* preauth.h - the budget of inbound connections that have not proved anything.
 *
 * From accept until the core takes a session as a leaf, a watch or a link
 * (its handshake done and its HELLO accepted), a connection is "pre-auth":
 * anyone can open one for the price of a SYN, so they get a budget of their
 * own, apart from leaves and links (which have their own caps in the core):
 *
 *   - at most max_per_addr from one source address, and max_per_prefix from
 *     one prefix (/24 for IPv4, /64 for IPv6: what one home line or one
 *     hosting customer usually holds), else the newcomer is refused;
 *   - at most max_total in all; when full, the newest connection of the most
 *     represented prefix gives way (the newcomer itself if its prefix is that
 *     one), so one prefix flooding cannot push out the others;
 *   - a connection that sends nothing for silent_ms is closed, and one that
 *     is still pre-auth timeout_ms after accept is closed.
 *
 * Sans I/O: the shell reports accepts, first bytes and ends with the time,
 * and asks which connection to close and when to ask again. Connection ids
 * are the shell's (never 0). Time is monotonic milliseconds.
 */
#ifndef CANOPY_PREAUTH_H
#define CANOPY_PREAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Defaults of the supernode settings max-handshakes, ...-per-address,
 * ...-per-prefix, silent-timeout-ms and handshake-timeout-ms. */
#define PREAUTH_MAX_TOTAL 512
#define PREAUTH_MAX_PER_ADDR 8
#define PREAUTH_MAX_PER_PREFIX 32
#define PREAUTH_SILENT_MS 3000
#define PREAUTH_TIMEOUT_MS 5000
/* Prefix lengths that count as one source. */
#define PREAUTH_PREFIX_V4 24
#define PREAUTH_PREFIX_V6 64

typedef struct {
  unsigned max_total;      /* 0: PREAUTH_MAX_TOTAL, and so on */
  unsigned max_per_addr;   /* per source address */
  unsigned max_per_prefix; /* per /24 or /64 */
  uint64_t silent_ms;      /* no byte in this long after accept: closed */
  uint64_t timeout_ms;     /* still pre-auth this long after accept: closed */
} PreauthLimits;

typedef struct {
  uint64_t admitted;
  uint64_t refused_addr;   /* newcomers over the per-address cap */
  uint64_t refused_prefix; /* newcomers over the per-prefix cap */
  uint64_t refused_full;   /* newcomers refused with the budget full (their prefix had most) */
  uint64_t shed;           /* connections closed to make room for another prefix */
  uint64_t silent;         /* closed: no byte within silent_ms */
  uint64_t timed_out;      /* closed: not through handshake and HELLO within timeout_ms */
} PreauthStats;

typedef enum {
  PREAUTH_DUE_SILENT,  /* silent_ms passed: close it unless bytes came (preauth_heard) */
  PREAUTH_DUE_TIMEOUT, /* timeout_ms passed: close it */
} PreauthDue;

typedef struct Preauth Preauth;

Preauth *preauth_new(const PreauthLimits *lim); /* NULL on failure */
void preauth_free(Preauth *p);                  /* NULL is a no-op */

/* New limits (SIGHUP). Nothing is closed for them; deadlines move with them. */
void preauth_set_limits(Preauth *p, const PreauthLimits *lim);

/* A connection from addr (4 bytes IPv4 or 16 bytes IPv6; an IPv4-mapped
 * IPv6 address counts as IPv4) was accepted at now. True if it is admitted;
 * then *shed is a connection to close to make room (its accounting is gone
 * already), or 0. False: close the newcomer (counted). */
bool preauth_admit(Preauth *p, uint64_t conn, const uint8_t *addr, size_t len, uint64_t now,
                   uint64_t *shed);

/* conn has sent bytes: the silent deadline no longer applies. */
void preauth_heard(Preauth *p, uint64_t conn);

/* conn left the budget: authenticated, or closed. False if it was not in
 * (never admitted, shed, or already released). */
bool preauth_release(Preauth *p, uint64_t conn);

/* The next connection whose deadline passed at now, and which one; false
 * if none. A TIMEOUT one is released and counted here; a SILENT one is
 * released and counted only by preauth_drop_silent (the shell first checks
 * whether bytes came, and calls preauth_heard if so). */
bool preauth_due(Preauth *p, uint64_t now, uint64_t *conn, PreauthDue *why);
void preauth_drop_silent(Preauth *p, uint64_t conn);

/* When preauth_due next has something (absolute ms), UINT64_MAX if never. */
uint64_t preauth_next_deadline(const Preauth *p);

/* Connections pre-auth now: in all, from addr, from addr's prefix. */
unsigned preauth_count(const Preauth *p);
unsigned preauth_count_addr(const Preauth *p, const uint8_t *addr, size_t len);
unsigned preauth_count_prefix(const Preauth *p, const uint8_t *addr, size_t len);

const PreauthStats *preauth_stats(const Preauth *p);
/* Newcomers refused, for whatever reason. */
uint64_t preauth_refused(const Preauth *p);

#endif
