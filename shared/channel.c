/* channel.c - the secure channel's handshake and frame layer (see channel.h).
 *
 * Key agreement is an ephemeral crypto_kx (X25519 + BLAKE2b) exchange, so a
 * stolen static key does not expose past sessions. Each side proves its
 * static Ed25519 key by signing both ephemerals under a role-specific context
 * string; the initiator also signs the responder's static key, so its
 * signature says whom it meant to talk to (SIGMA-I).
 *
 * The identities and signatures travel as the first message of each
 * direction's secretstream, not in clear. That is what binds an identity to
 * the session keys: only the holder of the ephemeral secret that produced the
 * keys can have sent that ciphertext, so a man in the middle who runs its own
 * exchange with each side cannot forward the other side's signed identity as
 * its own (identity misbinding), and a passive observer learns no node ids.
 *
 * After the handshake every frame is the next message of the same stream, so
 * the stream's internal counter rejects replayed, reordered or dropped frames.
 */
#include "channel.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define SS_HEADER crypto_secretstream_xchacha20poly1305_HEADERBYTES
#define SS_ABYTES crypto_secretstream_xchacha20poly1305_ABYTES
#define SS_TAG_MESSAGE crypto_secretstream_xchacha20poly1305_TAG_MESSAGE
#define SS_TAG_FINAL crypto_secretstream_xchacha20poly1305_TAG_FINAL

#define HS_MAGIC "CNPY"
#define HS_MAGIC_LEN 4
/* 2: the cookie step (cookie.h). Version 1 peers are refused by version. */
#define HS_VERSION 2
#define EPH_LEN crypto_kx_PUBLICKEYBYTES
#define KEY_LEN crypto_kx_SESSIONKEYBYTES
#define FRAME_HDR 4

/* The identity message inside the stream: static pk | signature. */
#define HS_ID_PLAIN (IDENTITY_PK_LEN + IDENTITY_SIG_LEN)
#define HS_ID_CIPHER (HS_ID_PLAIN + SS_ABYTES)
#define M1_LEN (HS_MAGIC_LEN + 1 + EPH_LEN)
#define M1C_LEN (M1_LEN + COOKIE_RESPONSE_LEN) /* M1 with a solved challenge */
#define CHAL_LEN COOKIE_CHALLENGE_LEN
#define M2_LEN (EPH_LEN + SS_HEADER + HS_ID_CIPHER)
#define M3_LEN (SS_HEADER + HS_ID_CIPHER)

/* Distinct contexts per role, so neither signature can stand in for the
 * other (a reflected M2 is not a valid M3). Equal lengths keep the signed
 * transcripts unambiguous. */
static const char ctx_r[] = "canopy/hs/r/v1";
static const char ctx_i[] = "canopy/hs/i/v1";
#define CTX_LEN (sizeof ctx_r - 1)
_Static_assert(sizeof ctx_r == sizeof ctx_i, "contexts differ in length");

/* Callers read after every feed, so at most one partial frame is left over
 * and at most one frame's worth arrives on top of it. */
#define INPUT_MAX (2 * (FRAME_HDR + CHANNEL_MAX_WIRE_FRAME))

_Static_assert(SS_ABYTES == 17, "CHANNEL_MAX_WIRE_FRAME assumes 17 bytes of overhead");
_Static_assert(KEY_LEN == crypto_secretstream_xchacha20poly1305_KEYBYTES, "key sizes");
_Static_assert(IDENTITY_PK_LEN == crypto_sign_PUBLICKEYBYTES, "pk size");
_Static_assert(IDENTITY_SIG_LEN == crypto_sign_BYTES, "sig size");

typedef enum { HS_WAIT_M1, HS_WAIT_M2, HS_WAIT_M3, HS_DONE } HsStep;

struct Channel {
  ChannelRole role;
  ChannelState state;
  HsStep step;
  const char *error;
  bool peer_known; /* peer_pk/peer_id authenticated */
  bool sent_final;
  bool challenged; /* R sent a challenge / I answered one: never twice */
  bool pending;    /* R counted in the jar's handshakes in progress */
  unsigned pk_ops; /* public-key operations done (channel_pk_ops) */
  CookieJar *jar;  /* R: borrowed; NULL answers every M1 at once */
  uint8_t addr[COOKIE_ADDR_MAX];
  size_t addr_len;

  Identity self; /* sk wiped once our signature is made */
  uint8_t eph_pk[EPH_LEN];
  uint8_t eph_sk[crypto_kx_SECRETKEYBYTES]; /* wiped once keys are derived */
  uint8_t peer_eph[EPH_LEN];
  uint8_t rx_key[KEY_LEN];                /* wiped once the pull stream is set up */
  uint8_t export_key[CHANNEL_EXPORT_MAX]; /* for channel_export, from both session keys */
  uint8_t peer_pk[IDENTITY_PK_LEN];
  uint8_t peer_id[IDENTITY_ID_LEN];
  crypto_secretstream_xchacha20poly1305_state tx;
  crypto_secretstream_xchacha20poly1305_state rx;

  Buf in;    /* received, not yet consumed */
  Buf out;   /* sealed frames waiting to be sent */
  Buf plain; /* the last decrypted message; channel_read lends it out */
};

/* R: this handshake no longer counts as in progress; finished or not
 * (the jar counts abandoned ones as a sign of a flood). */
static void pending_done(Channel *ch, bool finished)
{
  if (ch->pending) {
    if (finished)
      cookie_pending_done(ch->jar);
    else
      cookie_pending_abandoned(ch->jar, ch->addr, ch->addr_len);
  }
  ch->pending = false;
}

/* Ends the channel for good: keys and buffered data go at once, so nothing
 * can be decrypted or sent after a protocol violation. */
static void channel_fail(Channel *ch, const char *why)
{
  if (ch->state == CHANNEL_FAILED)
    return;
  pending_done(ch, false);
  ch->state = CHANNEL_FAILED;
  ch->error = why;
  sodium_memzero(ch->self.sk, sizeof ch->self.sk);
  sodium_memzero(ch->eph_sk, sizeof ch->eph_sk);
  sodium_memzero(ch->rx_key, sizeof ch->rx_key);
  sodium_memzero(ch->export_key, sizeof ch->export_key);
  sodium_memzero(&ch->tx, sizeof ch->tx);
  sodium_memzero(&ch->rx, sizeof ch->rx);
  if (ch->plain.data)
    sodium_memzero(ch->plain.data, ch->plain.cap);
  buf_reset(&ch->in);
  buf_reset(&ch->out);
  buf_reset(&ch->plain);
}

/* Finds the next complete frame in the input. Returns 1 with its body, 0 if
 * it has not fully arrived, -1 (channel failed) on a bad length. want and
 * want2, if nonzero, are the only lengths acceptable (handshake messages). */
static int next_frame(Channel *ch, size_t want, size_t want2, const uint8_t **body, size_t *blen)
{
  Reader r;
  rd_init(&r, ch->in.data, ch->in.len);
  uint32_t n = rd_u32(&r);
  if (!rd_ok(&r))
    return 0;
  if (n == 0) {
    channel_fail(ch, "empty frame");
    return -1;
  }
  if (n > CHANNEL_MAX_WIRE_FRAME) {
    channel_fail(ch, "frame too large");
    return -1;
  }
  if (want && n != want && n != want2) {
    channel_fail(ch, "bad handshake message size");
    return -1;
  }
  const uint8_t *p = rd_bytes(&r, n);
  if (!p)
    return 0;
  *body = p;
  *blen = n;
  return 1;
}

/* Queues one sealed frame: u32 length, then the secretstream message. */
static bool seal_frame(Channel *ch, const uint8_t *prefix, size_t plen, const uint8_t *msg,
                       size_t len, uint8_t tag)
{
  static const uint8_t empty[1];
  size_t clen = len + SS_ABYTES;
  unsigned long long got;
  if (!buf_reserve(&ch->out, FRAME_HDR + plen + clen)) {
    channel_fail(ch, "out of memory");
    return false;
  }
  wr_u32(&ch->out, (uint32_t)(plen + clen));
  wr_bytes(&ch->out, prefix, plen);
  crypto_secretstream_xchacha20poly1305_push(&ch->tx, ch->out.data + ch->out.len, &got,
                                             len ? msg : empty, len, NULL, 0, tag);
  ch->out.len += (size_t)got;
  return true;
}

/* Decrypts one stream message into ch->plain; the tag is checked by the
 * caller. */
static bool open_frame(Channel *ch, const uint8_t *c, size_t clen, uint8_t *tag)
{
  unsigned long long mlen;
  if (clen < SS_ABYTES) {
    channel_fail(ch, "decryption failed");
    return false;
  }
  buf_reset(&ch->plain);
  if (!buf_reserve(&ch->plain, clen - SS_ABYTES + 1)) {
    channel_fail(ch, "out of memory");
    return false;
  }
  if (crypto_secretstream_xchacha20poly1305_pull(&ch->rx, ch->plain.data, &mlen, tag, c, clen, NULL,
                                                 0) != 0) {
    channel_fail(ch, "decryption failed");
    return false;
  }
  ch->plain.len = (size_t)mlen;
  return true;
}

/* The signed transcript: ctx | I_eph | R_eph [| R_static]. */
static size_t transcript(uint8_t *t, const char *ctx, const uint8_t *i_eph, const uint8_t *r_eph,
                         const uint8_t *r_static)
{
  size_t n = 0;
  memcpy(t + n, ctx, CTX_LEN);
  n += CTX_LEN;
  memcpy(t + n, i_eph, EPH_LEN);
  n += EPH_LEN;
  memcpy(t + n, r_eph, EPH_LEN);
  n += EPH_LEN;
  if (r_static) {
    memcpy(t + n, r_static, IDENTITY_PK_LEN);
    n += IDENTITY_PK_LEN;
  }
  return n;
}

#define TRANSCRIPT_MAX (CTX_LEN + 2 * EPH_LEN + IDENTITY_PK_LEN)

/* Signs the transcript and seals static pk | signature as the first message
 * of our stream. Our secret key is not needed after this. */
static bool send_identity(Channel *ch, const uint8_t *header, const char *ctx, const uint8_t *i_eph,
                          const uint8_t *r_eph, const uint8_t *r_static)
{
  uint8_t t[TRANSCRIPT_MAX];
  uint8_t id_msg[HS_ID_PLAIN];
  size_t tlen = transcript(t, ctx, i_eph, r_eph, r_static);
  memcpy(id_msg, ch->self.pk, IDENTITY_PK_LEN);
  crypto_sign_detached(id_msg + IDENTITY_PK_LEN, NULL, t, tlen, ch->self.sk);
  ch->pk_ops++;
  sodium_memzero(ch->self.sk, sizeof ch->self.sk);
  return seal_frame(ch, header, ch->role == CHANNEL_RESPONDER ? EPH_LEN + SS_HEADER : SS_HEADER,
                    id_msg, sizeof id_msg, SS_TAG_MESSAGE);
}

/* Opens the peer's identity message and checks its signature. */
static bool recv_identity(Channel *ch, const uint8_t *c, const char *ctx, const uint8_t *i_eph,
                          const uint8_t *r_eph, const uint8_t *r_static)
{
  uint8_t t[TRANSCRIPT_MAX];
  uint8_t tag;
  if (!open_frame(ch, c, HS_ID_CIPHER, &tag))
    return false;
  if (tag != SS_TAG_MESSAGE || ch->plain.len != HS_ID_PLAIN) {
    channel_fail(ch, "bad handshake message");
    return false;
  }
  const uint8_t *pk = ch->plain.data;
  const uint8_t *sig = ch->plain.data + IDENTITY_PK_LEN;
  size_t tlen = transcript(t, ctx, i_eph, r_eph, r_static);
  ch->pk_ops++;
  if (crypto_sign_verify_detached(sig, t, tlen, pk) != 0) {
    channel_fail(ch, "bad signature");
    return false;
  }
  memcpy(ch->peer_pk, pk, IDENTITY_PK_LEN);
  identity_id_of(ch->peer_pk, ch->peer_id);
  ch->peer_known = true;
  buf_reset(&ch->plain);
  return true;
}

/* The exporter secret: BLAKE2b keyed with both session keys, the
 * initiator-to-responder one first (the same order on both sides), over a
 * label of its own, so it reveals nothing about the stream keys. */
static void derive_export(Channel *ch, const uint8_t i_to_r[KEY_LEN], const uint8_t r_to_i[KEY_LEN])
{
  static const char label[] = "canopy/export/v1";
  uint8_t both[2 * KEY_LEN];
  memcpy(both, i_to_r, KEY_LEN);
  memcpy(both + KEY_LEN, r_to_i, KEY_LEN);
  crypto_generichash(ch->export_key, sizeof ch->export_key, (const uint8_t *)label,
                     sizeof label - 1, both, sizeof both);
  sodium_memzero(both, sizeof both);
}

static const char *const cookie_errors[] = {
    [COOKIE_FORGED] = "bad cookie",
    [COOKIE_EXPIRED] = "expired cookie",
    [COOKIE_UNSOLVED] = "puzzle not solved",
    [COOKIE_REPLAYED] = "replayed cookie",
};

/* R: M1 arrives. Under load (the jar says so) a plain M1 gets a challenge
 * and nothing else: no key pair, no agreement, no signature until the
 * initiator returns it solved. Then derive keys and answer with M2. */
static bool on_m1(Channel *ch, const uint8_t *p, size_t len)
{
  uint8_t tx_key[KEY_LEN];
  uint8_t m2_prefix[EPH_LEN + SS_HEADER];
  bool ok = false;
  Reader r;
  rd_init(&r, p, len);
  const uint8_t *magic = rd_bytes(&r, HS_MAGIC_LEN);
  uint8_t version = rd_u8(&r);
  rd_copy(&r, ch->peer_eph, EPH_LEN);
  const uint8_t *resp = len == M1C_LEN ? rd_bytes(&r, COOKIE_RESPONSE_LEN) : NULL;
  if (!rd_done(&r)) {
    channel_fail(ch, "bad handshake message");
    goto out;
  }
  if (memcmp(magic, HS_MAGIC, HS_MAGIC_LEN) != 0) {
    channel_fail(ch, "bad magic");
    goto out;
  }
  if (version != HS_VERSION) {
    channel_fail(ch, "unsupported version");
    goto out;
  }
  if (resp) {
    /* Only ever sent in answer to our challenge, so never to a responder
     * without a jar. */
    if (!ch->jar) {
      channel_fail(ch, "unexpected cookie");
      goto out;
    }
    CookieVerdict v = cookie_check(ch->jar, ch->addr, ch->addr_len, ch->peer_eph, resp);
    if (v != COOKIE_OK) {
      channel_fail(ch, cookie_errors[v]);
      goto out;
    }
  } else if (ch->jar) {
    uint8_t chal[CHAL_LEN];
    if (ch->challenged) {
      channel_fail(ch, "second M1 without the cookie");
      goto out;
    }
    if (cookie_on_m1(ch->jar, ch->addr, ch->addr_len, ch->peer_eph, chal)) {
      ch->challenged = true;
      wr_u32(&ch->out, CHAL_LEN);
      wr_bytes(&ch->out, chal, CHAL_LEN);
      if (ch->out.failed)
        channel_fail(ch, "out of memory");
      ok = !ch->out.failed;
      goto out;
    }
  }
  if (ch->jar) {
    cookie_pending_add(ch->jar);
    ch->pending = true;
  }
  /* Only now: a key pair per accepted connection would be work for free. */
  crypto_kx_keypair(ch->eph_pk, ch->eph_sk);
  ch->pk_ops += 2;
  /* Fails when the peer's ephemeral is a low-order point. */
  if (crypto_kx_server_session_keys(ch->rx_key, tx_key, ch->eph_pk, ch->eph_sk, ch->peer_eph) !=
      0) {
    channel_fail(ch, "key exchange failed");
    goto out;
  }
  derive_export(ch, ch->rx_key, tx_key);
  sodium_memzero(ch->eph_sk, sizeof ch->eph_sk);
  memcpy(m2_prefix, ch->eph_pk, EPH_LEN);
  crypto_secretstream_xchacha20poly1305_init_push(&ch->tx, m2_prefix + EPH_LEN, tx_key);
  if (!send_identity(ch, m2_prefix, ctx_r, ch->peer_eph, ch->eph_pk, NULL))
    goto out;
  ch->step = HS_WAIT_M3;
  ok = true;
out:
  sodium_memzero(tx_key, sizeof tx_key);
  return ok;
}

/* I: R is busy and wants proof of work first: solve its challenge and send
 * M1 again with the solution. One challenge per handshake, so a responder
 * (or a man in the middle) cannot keep us hashing. */
static bool on_challenge(Channel *ch, const uint8_t *p)
{
  uint8_t resp[COOKIE_RESPONSE_LEN];
  if (ch->challenged) {
    channel_fail(ch, "second challenge");
    return false;
  }
  ch->challenged = true;
  if (!cookie_solve(p, resp)) {
    channel_fail(ch, "challenge too hard");
    return false;
  }
  wr_u32(&ch->out, M1C_LEN);
  wr_bytes(&ch->out, HS_MAGIC, HS_MAGIC_LEN);
  wr_u8(&ch->out, HS_VERSION);
  wr_bytes(&ch->out, ch->eph_pk, EPH_LEN);
  wr_bytes(&ch->out, resp, sizeof resp);
  if (ch->out.failed) {
    channel_fail(ch, "out of memory");
    return false;
  }
  return true;
}

/* I: M2 arrives; derive keys, authenticate R, answer with M3. */
static bool on_m2(Channel *ch, const uint8_t *p, size_t len)
{
  uint8_t tx_key[KEY_LEN];
  uint8_t header[SS_HEADER];
  bool ok = false;
  if (len == CHAL_LEN)
    return on_challenge(ch, p);
  Reader r;
  rd_init(&r, p, len);
  rd_copy(&r, ch->peer_eph, EPH_LEN);
  const uint8_t *r_header = rd_bytes(&r, SS_HEADER);
  const uint8_t *c = rd_bytes(&r, HS_ID_CIPHER);
  if (!rd_done(&r)) {
    channel_fail(ch, "bad handshake message");
    goto out;
  }
  ch->pk_ops++;
  if (crypto_kx_client_session_keys(ch->rx_key, tx_key, ch->eph_pk, ch->eph_sk, ch->peer_eph) !=
      0) {
    channel_fail(ch, "key exchange failed");
    goto out;
  }
  derive_export(ch, tx_key, ch->rx_key);
  sodium_memzero(ch->eph_sk, sizeof ch->eph_sk);
  if (crypto_secretstream_xchacha20poly1305_init_pull(&ch->rx, r_header, ch->rx_key) != 0) {
    channel_fail(ch, "decryption failed");
    goto out;
  }
  sodium_memzero(ch->rx_key, sizeof ch->rx_key);
  if (!recv_identity(ch, c, ctx_r, ch->eph_pk, ch->peer_eph, NULL))
    goto out;
  crypto_secretstream_xchacha20poly1305_init_push(&ch->tx, header, tx_key);
  if (!send_identity(ch, header, ctx_i, ch->eph_pk, ch->peer_eph, ch->peer_pk))
    goto out;
  ch->step = HS_DONE;
  ch->state = CHANNEL_OPEN;
  ok = true;
out:
  sodium_memzero(tx_key, sizeof tx_key);
  return ok;
}

/* R: M3 arrives; authenticate I. */
static bool on_m3(Channel *ch, const uint8_t *p, size_t len)
{
  Reader r;
  rd_init(&r, p, len);
  const uint8_t *i_header = rd_bytes(&r, SS_HEADER);
  const uint8_t *c = rd_bytes(&r, HS_ID_CIPHER);
  if (!rd_done(&r)) {
    channel_fail(ch, "bad handshake message");
    return false;
  }
  int rc = crypto_secretstream_xchacha20poly1305_init_pull(&ch->rx, i_header, ch->rx_key);
  sodium_memzero(ch->rx_key, sizeof ch->rx_key);
  if (rc != 0) {
    channel_fail(ch, "decryption failed");
    return false;
  }
  if (!recv_identity(ch, c, ctx_i, ch->peer_eph, ch->eph_pk, ch->self.pk))
    return false;
  pending_done(ch, true);
  ch->step = HS_DONE;
  ch->state = CHANNEL_OPEN;
  return true;
}

/* Runs every complete handshake frame in the input. Application frames that
 * follow M3 stay buffered for channel_read. */
static void handshake_pump(Channel *ch)
{
  while (ch->state == CHANNEL_HANDSHAKE) {
    /* Each step takes messages of fixed sizes; M1 may carry a cookie, and
     * M2's place may hold a challenge instead. */
    static const size_t want[] = {
        [HS_WAIT_M1] = M1_LEN, [HS_WAIT_M2] = M2_LEN, [HS_WAIT_M3] = M3_LEN};
    static const size_t want2[] = {
        [HS_WAIT_M1] = M1C_LEN, [HS_WAIT_M2] = CHAL_LEN, [HS_WAIT_M3] = 0};
    const uint8_t *body;
    size_t blen;
    if (next_frame(ch, want[ch->step], want2[ch->step], &body, &blen) <= 0)
      return;
    bool ok = ch->step == HS_WAIT_M1   ? on_m1(ch, body, blen)
              : ch->step == HS_WAIT_M2 ? on_m2(ch, body, blen)
                                       : on_m3(ch, body, blen);
    if (!ok)
      return;
    buf_consume(&ch->in, FRAME_HDR + blen);
  }
}

Channel *channel_new(const Identity *self, ChannelRole role)
{
  if (!self || (role != CHANNEL_INITIATOR && role != CHANNEL_RESPONDER) || !crypto_ready())
    return NULL;
  Channel *ch = calloc(1, sizeof *ch);
  if (!ch)
    return NULL;
  ch->role = role;
  ch->state = CHANNEL_HANDSHAKE;
  ch->self = *self;
  buf_init(&ch->in);
  buf_init(&ch->out);
  buf_init(&ch->plain);
  if (role == CHANNEL_RESPONDER) {
    ch->step = HS_WAIT_M1; /* the key pair waits for an acceptable M1 */
    return ch;
  }
  crypto_kx_keypair(ch->eph_pk, ch->eph_sk);
  ch->pk_ops++;
  ch->step = HS_WAIT_M2;
  wr_u32(&ch->out, M1_LEN);
  wr_bytes(&ch->out, HS_MAGIC, HS_MAGIC_LEN);
  wr_u8(&ch->out, HS_VERSION);
  wr_bytes(&ch->out, ch->eph_pk, EPH_LEN);
  if (ch->out.failed) {
    channel_free(ch);
    return NULL;
  }
  return ch;
}

bool channel_set_cookie_jar(Channel *ch, CookieJar *jar, const uint8_t *addr, size_t addr_len)
{
  if (ch->role != CHANNEL_RESPONDER || ch->step != HS_WAIT_M1 || ch->in.len != 0 ||
      ch->challenged || addr_len > COOKIE_ADDR_MAX || (addr_len && !addr))
    return false;
  ch->jar = jar;
  if (addr_len)
    memcpy(ch->addr, addr, addr_len);
  ch->addr_len = addr_len;
  return true;
}

unsigned channel_pk_ops(const Channel *ch)
{
  return ch->pk_ops;
}

void channel_free(Channel *ch)
{
  if (!ch)
    return;
  pending_done(ch, false);
  if (ch->plain.data)
    sodium_memzero(ch->plain.data, ch->plain.cap);
  buf_free(&ch->in);
  buf_free(&ch->out);
  buf_free(&ch->plain);
  sodium_memzero(ch, sizeof *ch);
  free(ch);
}

ChannelState channel_state(const Channel *ch)
{
  return ch->state;
}

const char *channel_error(const Channel *ch)
{
  return ch->state == CHANNEL_FAILED ? ch->error : "no error";
}

const uint8_t *channel_peer_id(const Channel *ch)
{
  return ch->peer_known ? ch->peer_id : NULL;
}

const uint8_t *channel_peer_pk(const Channel *ch)
{
  return ch->peer_known ? ch->peer_pk : NULL;
}

bool channel_export(const Channel *ch, const char *label, uint8_t *out, size_t len)
{
  if (ch->state != CHANNEL_OPEN || !label || len < 16 || len > CHANNEL_EXPORT_MAX)
    return false;
  crypto_generichash(out, len, (const uint8_t *)label, strlen(label), ch->export_key,
                     sizeof ch->export_key);
  return true;
}

bool channel_feed(Channel *ch, const uint8_t *data, size_t len)
{
  if (ch->state == CHANNEL_FAILED)
    return false;
  if (len == 0)
    return true;
  if (ch->state == CHANNEL_CLOSED) {
    channel_fail(ch, "data after final frame");
    return false;
  }
  if (len > INPUT_MAX - ch->in.len) {
    channel_fail(ch, "input overflow");
    return false;
  }
  wr_bytes(&ch->in, data, len);
  if (ch->in.failed) {
    channel_fail(ch, "out of memory");
    return false;
  }
  handshake_pump(ch);
  /* Check the next frame's length now, so an absurd prefix ends the channel
   * at once instead of waiting for bytes that will never be accepted. */
  if (ch->state == CHANNEL_OPEN) {
    const uint8_t *body;
    size_t blen;
    next_frame(ch, 0, 0, &body, &blen);
  }
  return ch->state != CHANNEL_FAILED;
}

int channel_read(Channel *ch, const uint8_t **msg, size_t *len)
{
  const uint8_t *body;
  size_t blen;
  uint8_t tag;

  if (ch->state == CHANNEL_FAILED)
    return -1;
  if (ch->state == CHANNEL_CLOSED) {
    if (ch->in.len == 0)
      return 0;
    channel_fail(ch, "data after final frame");
    return -1;
  }
  if (ch->state != CHANNEL_OPEN)
    return 0;
  int rc = next_frame(ch, 0, 0, &body, &blen);
  if (rc <= 0)
    return rc;
  if (!open_frame(ch, body, blen, &tag))
    return -1;
  buf_consume(&ch->in, FRAME_HDR + blen);
  if (tag == SS_TAG_FINAL && ch->plain.len == 0) {
    ch->state = CHANNEL_CLOSED;
    if (ch->in.len != 0) {
      channel_fail(ch, "data after final frame");
      return -1;
    }
    return 0;
  }
  if (tag != SS_TAG_MESSAGE) {
    channel_fail(ch, "unexpected frame tag");
    return -1;
  }
  *msg = ch->plain.data;
  *len = ch->plain.len;
  return 1;
}

bool channel_write(Channel *ch, const uint8_t *msg, size_t len)
{
  if (ch->state != CHANNEL_OPEN || ch->sent_final || len > CHANNEL_MAX_PLAIN || (len && !msg))
    return false;
  return seal_frame(ch, NULL, 0, msg, len, SS_TAG_MESSAGE);
}

bool channel_write_final(Channel *ch)
{
  /* Also once the peer has closed, so both ends can say goodbye. */
  if ((ch->state != CHANNEL_OPEN && ch->state != CHANNEL_CLOSED) || ch->sent_final)
    return false;
  if (!seal_frame(ch, NULL, 0, NULL, 0, SS_TAG_FINAL))
    return false;
  ch->sent_final = true;
  return true;
}

const uint8_t *channel_output(const Channel *ch, size_t *len)
{
  *len = ch->out.len;
  return ch->out.len ? ch->out.data : NULL;
}

void channel_output_consume(Channel *ch, size_t n)
{
  buf_consume(&ch->out, n);
  buf_trim(&ch->out, CHANNEL_OUTPUT_KEEP);
}

void channel_release_input(Channel *ch)
{
  if (ch->in.len == 0)
    buf_free(&ch->in);
  if (ch->plain.data)
    sodium_memzero(ch->plain.data, ch->plain.cap);
  buf_free(&ch->plain);
}

size_t channel_input_capacity(const Channel *ch)
{
  return ch->in.cap + ch->plain.cap;
}

void channel_release_output(Channel *ch)
{
  if (ch->out.len == 0)
    buf_free(&ch->out);
}

size_t channel_output_capacity(const Channel *ch)
{
  return ch->out.cap;
}
