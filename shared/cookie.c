/* cookie.c - stateless handshake cookies and the client puzzle (see cookie.h).
 *
 * The shape follows WireGuard's cookie reply (a MAC under a rotating secret
 * over the sender's address) and QUIC's Retry token, with a hash-based client
 * puzzle on top (Juels and Brainard's client puzzles; the difficulty is a
 * count of leading zero bits, as in hashcash). */
#include "cookie.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_LEN crypto_generichash_KEYBYTES

/* One address prefix that abandoned handshakes lately (cookie.h). */
typedef struct {
  uint64_t key;        /* prefix_key(); 0: slot free */
  uint64_t win;        /* the second `count` belongs to */
  uint64_t hold_until; /* on the step alone until then (seconds) */
  unsigned count;
} PrefixSlot;

struct CookieJar {
  CookieConfig cfg;
  CookieClockFn clock;
  void *clock_ud;
  /* secret[0] belongs to epoch `epoch` (ts / COOKIE_ROTATE_S), secret[1] to
   * the one before. */
  uint8_t secret[2][SECRET_LEN];
  uint64_t epoch;
  bool have_prev;
  /* M1s in the 1-second window starting at win_start, and in the one
   * before it. */
  uint64_t win_start;
  unsigned win_count, prev_count;
  /* Handshakes abandoned in the 1-second window starting at ab_start. */
  uint64_t ab_start;
  unsigned ab_count;
  uint64_t hold_until;                  /* engaged until then (seconds), by abandonment */
  uint64_t replay[COOKIE_REPLAY_SLOTS]; /* MAC tags of spent cookies; 0 = empty */
  /* Prefixes that abandoned handshakes, placed by a keyed hash so that no
   * one can aim a prefix at another's slots. */
  PrefixSlot prefix[COOKIE_PREFIX_SLOTS];
  uint8_t prefix_hash_key[crypto_shorthash_KEYBYTES];
  CookieStats st;
};

static uint64_t now_s(const CookieJar *jar)
{
  return jar->clock(jar->clock_ud) / 1000;
}

static uint64_t load64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

/* Brings the secrets up to the current epoch: one step keeps the old secret
 * as the previous one, a longer gap discards both. */
static void rotate(CookieJar *jar, uint64_t now)
{
  uint64_t e = now / COOKIE_ROTATE_S;
  if (e == jar->epoch)
    return;
  if (e == jar->epoch + 1) {
    memcpy(jar->secret[1], jar->secret[0], SECRET_LEN);
    jar->have_prev = true;
  } else {
    jar->have_prev = false;
  }
  randombytes_buf(jar->secret[0], SECRET_LEN);
  jar->epoch = e;
}

CookieJar *cookie_jar_new(const CookieConfig *cfg, CookieClockFn clock, void *clock_ud)
{
  if (!cfg || !clock || sodium_init() < 0)
    return NULL;
  CookieJar *jar = calloc(1, sizeof *jar);
  if (!jar)
    return NULL;
  jar->cfg = *cfg;
  jar->clock = clock;
  jar->clock_ud = clock_ud;
  uint64_t now = now_s(jar);
  jar->epoch = now / COOKIE_ROTATE_S;
  randombytes_buf(jar->secret[0], SECRET_LEN);
  randombytes_buf(jar->prefix_hash_key, sizeof jar->prefix_hash_key);
  jar->win_start = now;
  return jar;
}

void cookie_jar_free(CookieJar *jar)
{
  if (!jar)
    return;
  sodium_memzero(jar, sizeof *jar);
  free(jar);
}

void cookie_jar_set_config(CookieJar *jar, const CookieConfig *cfg)
{
  jar->cfg = *cfg;
}

/* Moves the rate window to now. */
static void advance_window(CookieJar *jar, uint64_t now)
{
  if (now < jar->win_start + 1)
    return;
  jar->prev_count = now == jar->win_start + 1 ? jar->win_count : 0;
  jar->win_count = 0;
  jar->win_start = now;
}

/* M1s per second: the larger of the current and the last full window, as
 * they stand at now (read-only, so the stats can ask too). */
static unsigned rate_at(const CookieJar *jar, uint64_t now)
{
  if (now < jar->win_start + 1)
    return jar->win_count > jar->prev_count ? jar->win_count : jar->prev_count;
  return now == jar->win_start + 1 ? jar->win_count : 0;
}

/* The source a handshake is charged to: an IPv4 /24 (also when mapped into
 * IPv6) or an IPv6 /48, tagged with its family; 0 when there is no address. */
static uint64_t prefix_key(const uint8_t *addr, size_t addr_len)
{
  static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (addr_len == 16 && memcmp(addr, v4mapped, sizeof v4mapped) == 0) {
    addr += 12;
    addr_len = 4;
  }
  if (addr_len == 4)
    return 4ull << 56 | (uint64_t)addr[0] << 16 | (uint64_t)addr[1] << 8 | addr[2];
  if (addr_len == 16)
    return 6ull << 56 | load64(addr) >> 16;
  return 0;
}

/* The slot of a prefix among its probes; with claim, a free or spent slot
 * is taken for it when it has none. NULL: untracked (every probe busy
 * with another prefix still counting or held): it counts for everyone. */
static PrefixSlot *prefix_slot(CookieJar *jar, uint64_t key, uint64_t now, bool claim)
{
  if (!key)
    return NULL;
  uint8_t kb[8], h[crypto_shorthash_BYTES];
  for (int i = 0; i < 8; i++)
    kb[i] = (uint8_t)(key >> (8 * i));
  crypto_shorthash(h, kb, sizeof kb, jar->prefix_hash_key);
  size_t at = (size_t)load64(h) % COOKIE_PREFIX_SLOTS;
  PrefixSlot *spare = NULL;
  for (size_t i = 0; i < COOKIE_PREFIX_PROBES; i++) {
    PrefixSlot *p = &jar->prefix[(at + i) % COOKIE_PREFIX_SLOTS];
    if (p->key == key)
      return p;
    if (!spare && (p->key == 0 || (p->hold_until <= now && p->win < now)))
      spare = p;
  }
  if (!claim || !spare)
    return NULL;
  *spare = (PrefixSlot){.key = key, .win = now};
  return spare;
}

static bool prefix_held(CookieJar *jar, const uint8_t *addr, size_t addr_len, uint64_t now)
{
  PrefixSlot *p = prefix_slot(jar, prefix_key(addr, addr_len), now, false);
  return p && now < p->hold_until;
}

static bool loaded_at(const CookieJar *jar, uint64_t now)
{
  return jar->st.pending >= jar->cfg.max_pending || rate_at(jar, now) >= jar->cfg.max_rate ||
         now < jar->hold_until;
}

void cookie_jar_stats(const CookieJar *jar, CookieStats *out)
{
  uint64_t now = now_s(jar);
  *out = jar->st;
  out->loaded = loaded_at(jar, now);
  out->prefixes_held = 0;
  for (size_t i = 0; i < COOKIE_PREFIX_SLOTS; i++)
    if (jar->prefix[i].key && now < jar->prefix[i].hold_until)
      out->prefixes_held++;
}

static void make_mac(const uint8_t secret[SECRET_LEN], const uint8_t *addr, size_t addr_len,
                     uint8_t difficulty, uint32_t ts, const uint8_t eph[32],
                     uint8_t mac[COOKIE_MAC_LEN])
{
  /* Fixed-width fields: the address is padded and its length included, so
   * no two inputs share an encoding. */
  uint8_t in[1 + COOKIE_ADDR_MAX + 1 + 4 + 32] = {0};
  size_t n = 0;
  in[n++] = (uint8_t)addr_len;
  memcpy(in + n, addr, addr_len);
  n += COOKIE_ADDR_MAX;
  in[n++] = difficulty;
  in[n++] = (uint8_t)(ts >> 24);
  in[n++] = (uint8_t)(ts >> 16);
  in[n++] = (uint8_t)(ts >> 8);
  in[n++] = (uint8_t)ts;
  memcpy(in + n, eph, 32);
  n += 32;
  crypto_generichash(mac, COOKIE_MAC_LEN, in, n, secret, SECRET_LEN);
}

bool cookie_on_m1(CookieJar *jar, const uint8_t *addr, size_t addr_len, const uint8_t eph[32],
                  uint8_t out[COOKIE_CHALLENGE_LEN])
{
  uint64_t now = now_s(jar);
  advance_window(jar, now);
  bool busy = loaded_at(jar, now) || prefix_held(jar, addr, addr_len, now);
  jar->win_count++;
  jar->st.m1_seen++;
  if (!busy)
    return false;
  if (addr_len > COOKIE_ADDR_MAX)
    addr_len = COOKIE_ADDR_MAX;
  rotate(jar, now);
  uint8_t d = (uint8_t)(jar->cfg.difficulty > COOKIE_MAX_DIFFICULTY ? COOKIE_MAX_DIFFICULTY
                                                                    : jar->cfg.difficulty);
  uint32_t ts = (uint32_t)now;
  out[0] = d;
  out[1] = (uint8_t)(ts >> 24);
  out[2] = (uint8_t)(ts >> 16);
  out[3] = (uint8_t)(ts >> 8);
  out[4] = (uint8_t)ts;
  make_mac(jar->secret[0], addr, addr_len, d, ts, eph, out + 5);
  jar->st.challenges_sent++;
  return true;
}

unsigned cookie_work_bits(const uint8_t mac[COOKIE_MAC_LEN], const uint8_t nonce[8])
{
  uint8_t in[COOKIE_MAC_LEN + 8], h[32];
  memcpy(in, mac, COOKIE_MAC_LEN);
  memcpy(in + COOKIE_MAC_LEN, nonce, 8);
  crypto_generichash(h, sizeof h, in, sizeof in, NULL, 0);
  unsigned bits = 0;
  for (size_t i = 0; i < sizeof h; i++) {
    if (h[i] == 0) {
      bits += 8;
      continue;
    }
    for (uint8_t m = 0x80; !(h[i] & m); m >>= 1)
      bits++;
    break;
  }
  return bits;
}

CookieVerdict cookie_check(CookieJar *jar, const uint8_t *addr, size_t addr_len,
                           const uint8_t eph[32], const uint8_t resp[COOKIE_RESPONSE_LEN])
{
  CookieVerdict v = COOKIE_OK;
  uint64_t now = now_s(jar);
  advance_window(jar, now);
  jar->win_count++;
  jar->st.m1_seen++;
  rotate(jar, now);
  if (addr_len > COOKIE_ADDR_MAX)
    addr_len = COOKIE_ADDR_MAX;
  uint8_t d = resp[0];
  uint32_t ts =
      (uint32_t)resp[1] << 24 | (uint32_t)resp[2] << 16 | (uint32_t)resp[3] << 8 | resp[4];
  const uint8_t *mac = resp + 5;
  const uint8_t *nonce = resp + COOKIE_CHALLENGE_LEN;
  /* The clock is the jar's own, so a timestamp ahead of it is forged. The
   * secret follows from the timestamp: one MAC, not one per secret. */
  uint64_t e = (uint64_t)ts / COOKIE_ROTATE_S;
  const uint8_t *secret = e == jar->epoch                         ? jar->secret[0]
                          : e + 1 == jar->epoch && jar->have_prev ? jar->secret[1]
                                                                  : NULL;
  if (ts > now || now - ts > COOKIE_LIFETIME_S || !secret) {
    v = COOKIE_EXPIRED;
    goto out;
  }
  uint8_t want[COOKIE_MAC_LEN];
  make_mac(secret, addr, addr_len, d, ts, eph, want);
  if (sodium_memcmp(want, mac, COOKIE_MAC_LEN) != 0) {
    v = COOKIE_FORGED;
    goto out;
  }
  if (cookie_work_bits(mac, nonce) < d) {
    v = COOKIE_UNSOLVED;
    goto out;
  }
  /* The MAC is the cookie's name: unforgeable, so the slot cannot be aimed. */
  uint64_t tag = load64(mac + 8) | 1;
  uint64_t *slot = &jar->replay[load64(mac) % COOKIE_REPLAY_SLOTS];
  if (*slot == tag) {
    v = COOKIE_REPLAYED;
    goto out;
  }
  *slot = tag;
out:
  if (v == COOKIE_OK)
    jar->st.cookies_accepted++;
  else
    jar->st.cookies_refused++;
  return v;
}

void cookie_pending_add(CookieJar *jar)
{
  jar->st.pending++;
}

void cookie_pending_done(CookieJar *jar)
{
  if (jar->st.pending > 0)
    jar->st.pending--;
}

void cookie_pending_abandoned(CookieJar *jar, const uint8_t *addr, size_t addr_len)
{
  cookie_pending_done(jar);
  jar->st.abandoned++;
  if (!jar->cfg.max_abandoned)
    return;
  uint64_t now = now_s(jar);
  PrefixSlot *p = prefix_slot(jar, prefix_key(addr, addr_len), now, true);
  if (p) {
    if (p->win != now) {
      p->win = now;
      p->count = 0;
    }
    unsigned limit = jar->cfg.max_abandoned < COOKIE_PREFIX_ABANDONED ? jar->cfg.max_abandoned
                                                                      : COOKIE_PREFIX_ABANDONED;
    if (++p->count >= limit) {
      if (p->hold_until <= now)
        jar->st.prefix_holds++;
      p->hold_until = now + COOKIE_HOLD_S;
    }
    /* Charged to its own prefix, which alone pays for it now. */
    if (now < p->hold_until)
      return;
  }
  if (now != jar->ab_start) {
    jar->ab_start = now;
    jar->ab_count = 0;
  }
  if (++jar->ab_count >= jar->cfg.max_abandoned)
    jar->hold_until = now + COOKIE_HOLD_S;
}

bool cookie_solve(const uint8_t challenge[COOKIE_CHALLENGE_LEN], uint8_t resp[COOKIE_RESPONSE_LEN])
{
  unsigned d = challenge[0];
  if (d > COOKIE_MAX_DIFFICULTY)
    return false;
  memcpy(resp, challenge, COOKIE_CHALLENGE_LEN);
  uint8_t *nonce = resp + COOKIE_CHALLENGE_LEN;
  /* A random start, so two initiators given one challenge (never, but
   * cheap) do not race over the same nonces. */
  randombytes_buf(nonce, 8);
  for (;;) {
    if (cookie_work_bits(challenge + 5, nonce) >= d)
      return true;
    for (int i = 7; i >= 0 && ++nonce[i] == 0; i--)
      ;
  }
}
