/* cookie.h - the responder's handshake cookie: proof of work before public-key work.
 *
 * A handshake costs the responder an X25519 key pair, an X25519 agreement and
 * an Ed25519 signature (about 100 µs) for a 41-byte M1 that costs an attacker
 * nothing to send. Under load (too many handshakes in progress, or too many
 * M1s per second) the responder answers M1 with a stateless challenge
 * instead:
 *
 *   challenge = difficulty | ts | MAC_k(addr | difficulty | ts | I_eph)
 *
 * where k is a secret that rotates every COOKIE_ROTATE_S, ts the responder's
 * coarse monotonic time in seconds, addr the initiator's IP address and I_eph
 * the M1's ephemeral key. The initiator returns it with a nonce such that
 * BLAKE2b(mac | nonce) starts with `difficulty` zero bits (a client puzzle:
 * 2^difficulty hashes on average to find, one to check). Checking a returned
 * cookie is one MAC and one hash, and the responder keeps nothing per
 * challenge: everything it needs comes back in the message.
 *
 * Over TCP the 3-way handshake already proves the source address; the
 * address in the MAC only stops a solution found once from being spent from
 * other addresses. What bounds the responder's cost is the puzzle, and the
 * replay filter: a solved cookie opens one handshake, not one per replay
 * within its lifetime. The filter is a fixed table (COOKIE_REPLAY_SLOTS)
 * indexed by the MAC, which an attacker cannot aim, so evicting one entry
 * costs about COOKIE_REPLAY_SLOTS solved puzzles.
 *
 * Sans-I/O: time comes from the clock callback given to cookie_jar_new; the
 * shell owns the jar and reads its counters. The channel (channel.c) is the
 * only caller of the cookie_* handshake functions.
 */
#ifndef CANOPY_COOKIE_H
#define CANOPY_COOKIE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COOKIE_MAC_LEN 16
#define COOKIE_ADDR_MAX 16       /* an IPv6 address */
#define COOKIE_LIFETIME_S 10     /* a challenge is good this long (the handshake deadline) */
#define COOKIE_ROTATE_S 120      /* the MAC secret changes this often */
#define COOKIE_REPLAY_SLOTS 4096 /* replay filter entries (8 bytes each) */
#define COOKIE_MAX_DIFFICULTY 20 /* an initiator refuses to work harder (~0.2 s of CPU) */
#define COOKIE_CHALLENGE_LEN (1 + 4 + COOKIE_MAC_LEN)
#define COOKIE_RESPONSE_LEN (COOKIE_CHALLENGE_LEN + 8) /* challenge | nonce */

/* Defaults of the super node's settings (README, canopy-supernode(8)).
 *
 * The difficulty, from tests/bench/bench_handshake (one x86-64 core): an M1
 * that returns a solved cookie costs the responder about 67 µs (key pair,
 * agreement, signature); one puzzle hash costs about 0.2 µs, so the attacker
 * pays as much as we do at 8 bits (ratio 1.3) and 16 times more at 12 bits
 * (0.9 ms, ratio 0.08). 12 leaves that margin for attackers who hash faster
 * than one core (several cores, SIMD), while an honest leaf's 0.9 ms (on a
 * slow ARM board perhaps 10 ms), paid only while we are under load, stays
 * below one network round trip. Hardware far faster at BLAKE2b (GPUs) is
 * not bounded by the puzzle but by the per-address budgets: the cookie is
 * bound to the address that solved it.
 *
 * The thresholds (issue 12) are set by what the handshakes cost us, not by
 * how many an honest super node usually sees: answering an M1 (what a
 * stranger can make us do without finishing anything) costs the responder
 * about COOKIE_HANDSHAKE_US (tests/bench/bench_handshake.c, (b): 72 us on
 * these machines), and up to COOKIE_CPU_PCT of one core may go to that
 * before anyone is asked to work for one. A finished honest handshake
 * costs more (114 us: the M3's signature check), so 3,500 honest ones a
 * second take 40 % of one core of two: the price of taking back 19,000
 * leaves in about 6 s after a restart.
 * So 19,000 leaves reconnecting after a restart (2,000-3,500 a second)
 * come in at once, where the old threshold (200 a second) made each of
 * them solve a puzzle; and a flood is still cut off, because what marks a
 * flood is not its rate but handshakes that never finish:
 * - rate: COOKIE_CPU_PCT of a core / COOKIE_HANDSHAKE_US = 3,571, rounded
 *   down to 3,500 M1s a second;
 * - pending: a burst of honest leaves keeps as many handshakes in flight as
 *   the round trip and our own queue hold (hundreds while we are busy), so
 *   the threshold is the pre-auth budget's default (PREAUTH_MAX_TOTAL,
 *   512): it engages only when that budget is full of half-done handshakes.
 *   Handshakes held open cost CPU once each (the rate rule) and memory
 *   (the pre-auth budget); when they time out they count as abandoned;
 * - abandoned: a handshake that ended before its M3 (the peer hung up, or
 *   it timed out) was public-key work for nothing. COOKIE_DEFAULT_ABANDONED
 *   of them in a second (0.7 % of a core) is not a crowd of flaky honest
 *   leaves but an M1 flood (tests/integration/handshake_flood.sh): the step
 *   engages and stays engaged for COOKIE_HOLD_S after the last such second,
 *   since once it is engaged the flood's M1s get challenges and stop
 *   abandoning anything;
 * - abandoned, per source: one address prefix (an IPv4 /24, an IPv6 /48)
 *   that abandons COOKIE_PREFIX_ABANDONED handshakes in a second is put on
 *   the step alone, for COOKIE_HOLD_S, and what it abandons while held does
 *   not count toward the rule for everyone. Without this, 100 hung-up M1s
 *   every 10 s from one address (10 a second, nothing solved) kept every
 *   honest leaf solving puzzles; now it takes floods from at least
 *   max_abandoned / COOKIE_PREFIX_ABANDONED prefixes at once. An honest
 *   /24 (a campus behind one NAT) does not hang up 20 handshakes in one
 *   second; if it does, it pays ~1 ms a handshake for 10 s, no more. */
#define COOKIE_HANDSHAKE_US 70
#define COOKIE_CPU_PCT 25
#define COOKIE_DEFAULT_PENDING 512
#define COOKIE_DEFAULT_RATE 3500
#define COOKIE_DEFAULT_ABANDONED 100
#define COOKIE_DEFAULT_DIFFICULTY 12
#define COOKIE_HOLD_S 10
#define COOKIE_PREFIX_ABANDONED 20 /* per prefix and second (at most max_abandoned) */
#define COOKIE_PREFIX_SLOTS 256    /* prefixes tracked at once (24 bytes each) */
#define COOKIE_PREFIX_PROBES 8     /* slots looked at per prefix */

typedef struct {
  /* The cookie step engages while at least this many handshakes are past
   * M1 and not finished (0: always) ... */
  unsigned max_pending;
  /* ... or while this many M1s arrived in the current or the last second
   * (0: always). */
  unsigned max_rate;
  /* Puzzle bits asked for under load (0: an address round trip, no puzzle). */
  unsigned difficulty;
  /* ... or for COOKIE_HOLD_S after a second in which this many handshakes
   * ended unfinished (0: this rule is off). */
  unsigned max_abandoned;
} CookieConfig;

typedef struct {
  uint64_t m1_seen;          /* M1s received, with or without a cookie */
  uint64_t challenges_sent;  /* M1s answered with a challenge */
  uint64_t cookies_accepted; /* cookies that opened a handshake */
  uint64_t cookies_refused;  /* forged, expired, unsolved or replayed cookies */
  uint64_t abandoned;        /* handshakes past M1 that ended unfinished */
  uint64_t prefix_holds;     /* times one prefix was put on the step alone */
  unsigned pending;          /* handshakes past M1, not finished */
  unsigned prefixes_held;    /* prefixes on the step alone now */
  bool loaded;               /* the cookie step is engaged now, for everyone */
} CookieStats;

typedef struct CookieJar CookieJar;

typedef uint64_t (*CookieClockFn)(void *ud); /* monotonic milliseconds */

/* cfg is copied; clock is called with clock_ud. NULL on failure (libsodium
 * not initialised, or no memory). */
CookieJar *cookie_jar_new(const CookieConfig *cfg, CookieClockFn clock, void *clock_ud);
void cookie_jar_free(CookieJar *jar); /* NULL is a no-op; wipes the secrets */
/* New thresholds (a config reload); counters and secrets stay. */
void cookie_jar_set_config(CookieJar *jar, const CookieConfig *cfg);
void cookie_jar_stats(const CookieJar *jar, CookieStats *out);

/* --- for the channel ------------------------------------------------------- */

typedef enum {
  COOKIE_OK,
  COOKIE_FORGED,   /* the MAC does not verify (or another address) */
  COOKIE_EXPIRED,  /* older than COOKIE_LIFETIME_S, or from the future */
  COOKIE_UNSOLVED, /* the nonce does not meet the difficulty */
  COOKIE_REPLAYED, /* this cookie already opened a handshake */
} CookieVerdict;

/* A plain M1 arrived: true (and the challenge in out) if the initiator must
 * prove itself first, false to go on with the handshake. */
bool cookie_on_m1(CookieJar *jar, const uint8_t *addr, size_t addr_len, const uint8_t eph[32],
                  uint8_t out[COOKIE_CHALLENGE_LEN]);
/* An M1 with a response (challenge | nonce) arrived. */
CookieVerdict cookie_check(CookieJar *jar, const uint8_t *addr, size_t addr_len,
                           const uint8_t eph[32], const uint8_t resp[COOKIE_RESPONSE_LEN]);
/* A handshake went past M1 (public-key work begins) / finished (M3 checked)
 * / ended unfinished (failed, or dropped before M3); addr is the peer's IP
 * address as for cookie_on_m1 (addr_len 0: none known). */
void cookie_pending_add(CookieJar *jar);
void cookie_pending_done(CookieJar *jar);
void cookie_pending_abandoned(CookieJar *jar, const uint8_t *addr, size_t addr_len);

/* Initiator: finds the nonce for a challenge; false if its difficulty is
 * above COOKIE_MAX_DIFFICULTY. */
bool cookie_solve(const uint8_t challenge[COOKIE_CHALLENGE_LEN], uint8_t resp[COOKIE_RESPONSE_LEN]);
/* Leading zero bits of BLAKE2b-256(mac | nonce): the puzzle's one hash. */
unsigned cookie_work_bits(const uint8_t mac[COOKIE_MAC_LEN], const uint8_t nonce[8]);

#endif
