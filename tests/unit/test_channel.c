/* test_channel.c - the secure channel's handshake and frames, and the key file. */
#define _GNU_SOURCE /* nftw */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "channel.h"
#include "identity.h"

#define M1_LEN (4 + 4 + 1 + 32)
#define M2_LEN (4 + 32 + 24 + 32 + 64 + 17)
#define M3_LEN (4 + 24 + 32 + 64 + 17)

/* Messages one side received, copied out of the channel. */
typedef struct {
  int count;
  size_t len[16];
  uint8_t *data[16];
} Inbox;

static void inbox_clear(Inbox *in)
{
  for (int i = 0; i < in->count; i++)
    free(in->data[i]);
  memset(in, 0, sizeof *in);
}

/* Reads every complete frame, as a caller must after each feed. */
static void drain(Channel *ch, Inbox *in)
{
  const uint8_t *msg;
  size_t len;
  while (channel_read(ch, &msg, &len) == 1) {
    assert_true(in->count < 16);
    in->data[in->count] = malloc(len ? len : 1);
    assert_non_null(in->data[in->count]);
    memcpy(in->data[in->count], msg, len);
    in->len[in->count++] = len;
  }
}

/* Moves from's pending output into to, step bytes per feed (0: all at once).
 * Returns how many bytes moved. */
static size_t transfer(Channel *from, Channel *to, size_t step, Inbox *in)
{
  size_t n;
  const uint8_t *p = channel_output(from, &n);
  if (n == 0)
    return 0;
  uint8_t *copy = malloc(n);
  assert_non_null(copy);
  memcpy(copy, p, n);
  channel_output_consume(from, n);
  if (step == 0)
    step = n;
  for (size_t off = 0; off < n; off += step) {
    size_t k = n - off < step ? n - off : step;
    channel_feed(to, copy + off, k);
    drain(to, in);
  }
  free(copy);
  return n;
}

/* Pumps both ways until neither side has anything to send. */
static void pump(Channel *a, Channel *b, size_t step, Inbox *in_a, Inbox *in_b)
{
  while (transfer(a, b, step, in_b) + transfer(b, a, step, in_a) > 0)
    ;
}

/* Takes every pending output byte of ch into a fresh buffer. */
static uint8_t *take_output(Channel *ch, size_t *n)
{
  const uint8_t *p = channel_output(ch, n);
  uint8_t *copy = malloc(*n ? *n : 1);
  assert_non_null(copy);
  memcpy(copy, p, *n);
  channel_output_consume(ch, *n);
  return copy;
}

typedef struct {
  Identity id_i, id_r;
  Channel *i, *r;
  Inbox in_i, in_r;
} Pair;

static int pair_setup(void **state)
{
  Pair *p = calloc(1, sizeof *p);
  if (!p || !identity_generate(&p->id_i) || !identity_generate(&p->id_r))
    return -1;
  p->i = channel_new(&p->id_i, CHANNEL_INITIATOR);
  p->r = channel_new(&p->id_r, CHANNEL_RESPONDER);
  if (!p->i || !p->r)
    return -1;
  *state = p;
  return 0;
}

static int pair_teardown(void **state)
{
  Pair *p = *state;
  channel_free(p->i);
  channel_free(p->r);
  inbox_clear(&p->in_i);
  inbox_clear(&p->in_r);
  identity_clear(&p->id_i);
  identity_clear(&p->id_r);
  free(p);
  return 0;
}

static void assert_open_pair(Pair *p)
{
  assert_int_equal(channel_state(p->i), CHANNEL_OPEN);
  assert_int_equal(channel_state(p->r), CHANNEL_OPEN);
  assert_memory_equal(channel_peer_id(p->i), p->id_r.id, IDENTITY_ID_LEN);
  assert_memory_equal(channel_peer_id(p->r), p->id_i.id, IDENTITY_ID_LEN);
  assert_memory_equal(channel_peer_pk(p->i), p->id_r.pk, IDENTITY_PK_LEN);
  assert_memory_equal(channel_peer_pk(p->r), p->id_i.pk, IDENTITY_PK_LEN);
}

static void open_pair(Pair *p)
{
  pump(p->i, p->r, 0, &p->in_i, &p->in_r);
  assert_open_pair(p);
}

static void send_text(Channel *ch, const char *s)
{
  assert_true(channel_write(ch, (const uint8_t *)s, strlen(s)));
}

static void assert_msg(const Inbox *in, int k, const char *s)
{
  assert_true(in->count > k);
  assert_int_equal(in->len[k], strlen(s));
  assert_memory_equal(in->data[k], s, strlen(s));
}

/* Feeds a captured frame to ch and reads; expects the channel to fail. */
static void assert_rejects(Channel *ch, const uint8_t *bytes, size_t n)
{
  const uint8_t *msg;
  size_t len;
  channel_feed(ch, bytes, n);
  assert_int_equal(channel_read(ch, &msg, &len), -1);
  assert_int_equal(channel_state(ch), CHANNEL_FAILED);
}

/* -- handshake ----------------------------------------------------------- */

/* channel_export: the same key on both ends once open, one per label and
 * per session, and none before. */
static void test_export(void **state)
{
  Pair *p = *state;
  uint8_t ki[32], kr[32], other[32];
  assert_false(channel_export(p->i, "x", ki, sizeof ki));
  open_pair(p);
  assert_true(channel_export(p->i, "canopy/test", ki, sizeof ki));
  assert_true(channel_export(p->r, "canopy/test", kr, sizeof kr));
  assert_memory_equal(ki, kr, sizeof ki);
  assert_true(channel_export(p->r, "canopy/other", other, sizeof other));
  assert_memory_not_equal(ki, other, sizeof ki);
  assert_false(channel_export(p->i, "canopy/test", ki, 8));  /* too short */
  assert_false(channel_export(p->i, "canopy/test", ki, 33)); /* too long */
  /* Another session between the same two identities: another key. */
  Channel *i2 = channel_new(&p->id_i, CHANNEL_INITIATOR),
          *r2 = channel_new(&p->id_r, CHANNEL_RESPONDER);
  Inbox a = {0}, b = {0};
  pump(i2, r2, 0, &a, &b);
  assert_true(channel_export(i2, "canopy/test", other, sizeof other));
  assert_memory_not_equal(ki, other, sizeof ki);
  channel_free(i2);
  channel_free(r2);
  inbox_clear(&a);
  inbox_clear(&b);
}

static void test_handshake_bytewise(void **state)
{
  Pair *p = *state;
  assert_null(channel_peer_id(p->i));
  assert_false(channel_write(p->i, (const uint8_t *)"x", 1)); /* not open yet */
  pump(p->i, p->r, 1, &p->in_i, &p->in_r);
  assert_open_pair(p);

  send_text(p->i, "hello responder");
  send_text(p->r, "hello initiator");
  send_text(p->r, "second");
  pump(p->i, p->r, 1, &p->in_i, &p->in_r);
  assert_int_equal(p->in_r.count, 1);
  assert_msg(&p->in_r, 0, "hello responder");
  assert_int_equal(p->in_i.count, 2);
  assert_msg(&p->in_i, 0, "hello initiator");
  assert_msg(&p->in_i, 1, "second");
}

static void test_handshake_all_at_once(void **state)
{
  Pair *p = *state;
  size_t n;

  /* M1 -> R; R answers inside channel_feed, without a read. */
  uint8_t *m1 = take_output(p->i, &n);
  assert_int_equal(n, M1_LEN);
  assert_true(channel_feed(p->r, m1, n));
  free(m1);
  uint8_t *m2 = take_output(p->r, &n);
  assert_int_equal(n, M2_LEN);
  assert_true(channel_feed(p->i, m2, n));
  free(m2);
  assert_int_equal(channel_state(p->i), CHANNEL_OPEN);

  /* The initiator may talk at once: M3 and two frames reach R in one feed,
   * and the frames wait for channel_read. */
  send_text(p->i, "early one");
  send_text(p->i, "early two");
  uint8_t *out = take_output(p->i, &n);
  assert_true(channel_feed(p->r, out, n));
  free(out);
  assert_open_pair(p);
  drain(p->r, &p->in_r);
  assert_int_equal(p->in_r.count, 2);
  assert_msg(&p->in_r, 0, "early one");
  assert_msg(&p->in_r, 1, "early two");

  send_text(p->r, "reply");
  pump(p->i, p->r, 0, &p->in_i, &p->in_r);
  assert_int_equal(p->in_i.count, 1);
  assert_msg(&p->in_i, 0, "reply");
}

static void test_many_messages(void **state)
{
  Pair *p = *state;
  open_pair(p);
  for (int round = 0; round < 100; round++) {
    char text[32];
    snprintf(text, sizeof text, "message %d", round);
    send_text(round % 2 ? p->i : p->r, text);
    pump(p->i, p->r, 7, &p->in_i, &p->in_r);
    Inbox *in = round % 2 ? &p->in_r : &p->in_i;
    assert_int_equal(in->count, 1);
    assert_msg(in, 0, text);
    inbox_clear(in);
  }
}

static void test_max_message(void **state)
{
  Pair *p = *state;
  open_pair(p);
  uint8_t *big = malloc(CHANNEL_MAX_PLAIN + 1);
  assert_non_null(big);
  for (size_t k = 0; k < CHANNEL_MAX_PLAIN + 1; k++)
    big[k] = (uint8_t)(k * 31 + 7);
  assert_false(channel_write(p->i, big, CHANNEL_MAX_PLAIN + 1));
  assert_int_equal(channel_state(p->i), CHANNEL_OPEN);
  assert_true(channel_write(p->i, big, CHANNEL_MAX_PLAIN));
  assert_true(channel_write(p->r, big, CHANNEL_MAX_PLAIN));
  assert_true(channel_write(p->r, NULL, 0)); /* empty messages are messages */
  pump(p->i, p->r, 0, &p->in_i, &p->in_r);
  assert_int_equal(p->in_r.count, 1);
  assert_int_equal(p->in_r.len[0], CHANNEL_MAX_PLAIN);
  assert_memory_equal(p->in_r.data[0], big, CHANNEL_MAX_PLAIN);
  assert_int_equal(p->in_i.count, 2);
  assert_int_equal(p->in_i.len[0], CHANNEL_MAX_PLAIN);
  assert_memory_equal(p->in_i.data[0], big, CHANNEL_MAX_PLAIN);
  assert_int_equal(p->in_i.len[1], 0);
  free(big);
}

/* -- tampering ----------------------------------------------------------- */

static void test_flipped_bit(void **state)
{
  Pair *p = *state;
  open_pair(p);
  send_text(p->i, "integrity");
  size_t n;
  uint8_t *frame = take_output(p->i, &n);
  frame[n / 2] ^= 0x04;
  assert_rejects(p->r, frame, n);
  assert_string_equal(channel_error(p->r), "decryption failed");
  free(frame);
}

static void test_flipped_bit_in_handshake(void **state)
{
  Pair *p = *state;
  size_t n;
  uint8_t *m1 = take_output(p->i, &n);
  assert_true(channel_feed(p->r, m1, n));
  free(m1);
  uint8_t *m2 = take_output(p->r, &n);
  m2[n - 1] ^= 0x80; /* inside R's sealed identity */
  assert_false(channel_feed(p->i, m2, n));
  assert_int_equal(channel_state(p->i), CHANNEL_FAILED);
  assert_string_equal(channel_error(p->i), "decryption failed");
  free(m2);
}

static void test_replayed_frame(void **state)
{
  Pair *p = *state;
  const uint8_t *msg;
  size_t len, n;
  open_pair(p);
  send_text(p->i, "pay 10");
  uint8_t *frame = take_output(p->i, &n);
  assert_true(channel_feed(p->r, frame, n));
  assert_int_equal(channel_read(p->r, &msg, &len), 1);
  assert_int_equal(len, 6);
  assert_memory_equal(msg, "pay 10", 6);
  assert_rejects(p->r, frame, n);
  free(frame);
}

static void test_reordered_frames(void **state)
{
  Pair *p = *state;
  size_t na, nb;
  open_pair(p);
  send_text(p->i, "first");
  uint8_t *a = take_output(p->i, &na);
  send_text(p->i, "second");
  uint8_t *b = take_output(p->i, &nb);
  uint8_t *swapped = malloc(na + nb);
  assert_non_null(swapped);
  memcpy(swapped, b, nb);
  memcpy(swapped + nb, a, na);
  assert_rejects(p->r, swapped, na + nb);
  free(swapped);
  free(a);
  free(b);
}

static void test_dropped_frame(void **state)
{
  Pair *p = *state;
  size_t na, nb;
  open_pair(p);
  send_text(p->i, "first");
  uint8_t *a = take_output(p->i, &na);
  send_text(p->i, "second");
  uint8_t *b = take_output(p->i, &nb);
  assert_rejects(p->r, b, nb); /* "first" never arrived */
  free(a);
  free(b);
}

static void test_truncated_frame(void **state)
{
  Pair *p = *state;
  const uint8_t *msg;
  size_t len, n;
  open_pair(p);
  send_text(p->i, "truncate me");
  uint8_t *frame = take_output(p->i, &n);

  /* A short body under the original length is just an incomplete frame. */
  assert_true(channel_feed(p->r, frame, n - 1));
  assert_int_equal(channel_read(p->r, &msg, &len), 0);

  /* With the length prefix shortened to match, the frame is complete but
   * its tag no longer verifies. */
  void *vq;
  assert_int_equal(pair_setup(&vq), 0);
  Pair *q = vq;
  open_pair(q);
  send_text(q->i, "truncate me");
  free(frame);
  frame = take_output(q->i, &n);
  uint32_t body = (uint32_t)(n - 4 - 1);
  frame[0] = (uint8_t)(body >> 24);
  frame[1] = (uint8_t)(body >> 16);
  frame[2] = (uint8_t)(body >> 8);
  frame[3] = (uint8_t)body;
  assert_rejects(q->r, frame, n - 1);
  assert_string_equal(channel_error(q->r), "decryption failed");
  pair_teardown(&vq);
  free(frame);
}

static void test_absurd_length(void **state)
{
  Pair *p = *state;
  static const uint8_t huge[] = {0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3};
  open_pair(p);
  assert_false(channel_feed(p->r, huge, sizeof huge));
  assert_int_equal(channel_state(p->r), CHANNEL_FAILED);
  assert_string_equal(channel_error(p->r), "frame too large");

  /* Also during the handshake, and for a zero length. */
  static const uint8_t zero[] = {0, 0, 0, 0};
  Identity id;
  assert_true(identity_generate(&id));
  Channel *r = channel_new(&id, CHANNEL_RESPONDER);
  assert_false(channel_feed(r, huge, 4));
  assert_int_equal(channel_state(r), CHANNEL_FAILED);
  channel_free(r);
  r = channel_new(&id, CHANNEL_RESPONDER);
  assert_false(channel_feed(r, zero, sizeof zero));
  assert_int_equal(channel_state(r), CHANNEL_FAILED);
  channel_free(r);
  identity_clear(&id);
}

static void test_bad_magic_and_version(void **state)
{
  Pair *p = *state;
  size_t n;
  uint8_t *m1 = take_output(p->i, &n);
  assert_int_equal(n, M1_LEN);
  m1[4] = 'X';
  assert_false(channel_feed(p->r, m1, n));
  assert_int_equal(channel_state(p->r), CHANNEL_FAILED);
  assert_string_equal(channel_error(p->r), "bad magic");

  Channel *r = channel_new(&p->id_r, CHANNEL_RESPONDER);
  m1[4] = 'C';
  m1[8] = 1; /* version 1, before the cookie step */
  assert_false(channel_feed(r, m1, n));
  assert_string_equal(channel_error(r), "unsupported version");
  channel_free(r);

  /* An M1 one byte long is the wrong size even before its body arrives. */
  r = channel_new(&p->id_r, CHANNEL_RESPONDER);
  m1[3] += 1;
  assert_false(channel_feed(r, m1, 4));
  assert_int_equal(channel_state(r), CHANNEL_FAILED);
  channel_free(r);
  free(m1);
}

static void test_low_order_ephemeral(void **state)
{
  Pair *p = *state;
  size_t n;
  uint8_t *m1 = take_output(p->i, &n);
  memset(m1 + 9, 0, 32); /* the identity point: shared secret would be zero */
  assert_false(channel_feed(p->r, m1, n));
  assert_string_equal(channel_error(p->r), "key exchange failed");
  free(m1);
}

static void test_tampered_static_key(void **state)
{
  Pair *p = *state;
  size_t n;
  uint8_t *m1 = take_output(p->i, &n);
  assert_true(channel_feed(p->r, m1, n));
  free(m1);
  uint8_t *m2 = take_output(p->r, &n);
  assert_true(channel_feed(p->i, m2, n));
  free(m2);
  uint8_t *m3 = take_output(p->i, &n);
  assert_int_equal(n, M3_LEN);
  /* Replace the bytes where I's static key sits (after the length and the
   * stream header) with another key: it is sealed, so this cannot work. */
  Identity other;
  assert_true(identity_generate(&other));
  memcpy(m3 + 4 + 24, other.pk, 32);
  assert_false(channel_feed(p->r, m3, n));
  assert_int_equal(channel_state(p->r), CHANNEL_FAILED);
  assert_null(channel_peer_id(p->r));
  identity_clear(&other);
  free(m3);
}

/* Mallory runs her own handshake with each side and splices their messages.
 * Each side can only ever authenticate Mallory herself; the responder never
 * accepts the initiator's identity over Mallory's keys. */
static void test_man_in_the_middle(void **state)
{
  Pair *p = *state;
  Identity mallory;
  size_t n;
  assert_true(identity_generate(&mallory));
  Channel *m_r = channel_new(&mallory, CHANNEL_RESPONDER); /* faces I */
  Channel *m_i = channel_new(&mallory, CHANNEL_INITIATOR); /* faces R */

  /* I -> Mallory: M1; Mallory's own M1 -> R. */
  uint8_t *m1 = take_output(p->i, &n);
  assert_true(channel_feed(m_r, m1, n));
  free(m1);
  m1 = take_output(m_i, &n);
  assert_true(channel_feed(p->r, m1, n));
  free(m1);

  /* Forwarding R's M2 to I fails: it was sealed under R-Mallory keys. */
  uint8_t *m2_r = take_output(p->r, &n);
  Channel *i2 = channel_new(&p->id_i, CHANNEL_INITIATOR);
  size_t n1;
  free(take_output(i2, &n1));
  assert_false(channel_feed(i2, m2_r, n));
  channel_free(i2);
  assert_true(channel_feed(m_i, m2_r, n));
  free(m2_r);

  /* Mallory's own M2 goes to I: I authenticates Mallory, not R. */
  uint8_t *m2 = take_output(m_r, &n);
  assert_true(channel_feed(p->i, m2, n));
  free(m2);
  assert_int_equal(channel_state(p->i), CHANNEL_OPEN);
  assert_memory_equal(channel_peer_id(p->i), mallory.id, IDENTITY_ID_LEN);
  assert_memory_not_equal(channel_peer_id(p->i), p->id_r.id, IDENTITY_ID_LEN);

  /* I's M3 (I's identity, signed over R = Mallory) spliced into R fails. */
  uint8_t *m3_i = take_output(p->i, &n);
  assert_false(channel_feed(p->r, m3_i, n));
  assert_int_equal(channel_state(p->r), CHANNEL_FAILED);
  assert_null(channel_peer_id(p->r));
  free(m3_i);

  channel_free(m_r);
  channel_free(m_i);
  identity_clear(&mallory);
}

/* -- the wire format, built by hand from channel.h ------------------------ */

typedef enum { SIGN_OK, SIGN_OTHER_KEY, SIGN_WRONG_CTX, SIGN_NO_R_STATIC } SignMode;

/* Appends static pk | signature, sealed, as a secretstream's first message. */
static size_t seal_identity(crypto_secretstream_xchacha20poly1305_state *st, uint8_t *c,
                            const Identity *self, const Identity *signer, const char *ctx,
                            const uint8_t *i_eph, const uint8_t *r_eph, const uint8_t *r_static)
{
  uint8_t t[14 + 96], plain[96];
  size_t tlen = 0;
  memcpy(t, ctx, 14);
  tlen += 14;
  memcpy(t + tlen, i_eph, 32);
  tlen += 32;
  memcpy(t + tlen, r_eph, 32);
  tlen += 32;
  if (r_static) {
    memcpy(t + tlen, r_static, 32);
    tlen += 32;
  }
  memcpy(plain, self->pk, 32);
  crypto_sign_detached(plain + 32, NULL, t, tlen, signer->sk);
  unsigned long long clen;
  crypto_secretstream_xchacha20poly1305_push(st, c, &clen, plain, sizeof plain, NULL, 0,
                                             crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
  return (size_t)clen;
}

static void put_u32(uint8_t *p, uint32_t v)
{
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

/* A responder written from the header comment alone answers a Channel. */
static void run_manual_responder(SignMode mode)
{
  Identity id_i, id_r, other;
  uint8_t r_pk[32], r_sk[32], rx[32], tx[32], m2[M2_LEN];
  size_t n;
  crypto_secretstream_xchacha20poly1305_state st;
  assert_true(identity_generate(&id_i) && identity_generate(&id_r) && identity_generate(&other));
  Channel *i = channel_new(&id_i, CHANNEL_INITIATOR);
  uint8_t *m1 = take_output(i, &n);
  assert_int_equal(n, M1_LEN);
  assert_memory_equal(m1,
                      "\0\0\0\x25"
                      "CNPY\x02",
                      9);

  crypto_kx_keypair(r_pk, r_sk);
  assert_int_equal(crypto_kx_server_session_keys(rx, tx, r_pk, r_sk, m1 + 9), 0);
  put_u32(m2, M2_LEN - 4);
  memcpy(m2 + 4, r_pk, 32);
  crypto_secretstream_xchacha20poly1305_init_push(&st, m2 + 36, tx);
  seal_identity(&st, m2 + 60, &id_r, mode == SIGN_OTHER_KEY ? &other : &id_r,
                mode == SIGN_WRONG_CTX ? "canopy/hs/i/v1" : "canopy/hs/r/v1", m1 + 9, r_pk, NULL);
  bool fed = channel_feed(i, m2, sizeof m2);
  if (mode == SIGN_OK) {
    assert_true(fed);
    assert_int_equal(channel_state(i), CHANNEL_OPEN);
    assert_memory_equal(channel_peer_id(i), id_r.id, IDENTITY_ID_LEN);
  } else {
    assert_false(fed);
    assert_string_equal(channel_error(i), "bad signature");
  }
  free(m1);
  channel_free(i);
  identity_clear(&id_i);
  identity_clear(&id_r);
  identity_clear(&other);
}

static void test_spec_responder(void **state)
{
  run_manual_responder(SIGN_OK);
  run_manual_responder(SIGN_OTHER_KEY);
  run_manual_responder(SIGN_WRONG_CTX);
}

/* A hand-built initiator: R must insist that sig_I covers R's static key. */
static void run_manual_initiator(SignMode mode)
{
  Identity id_i, id_r;
  uint8_t i_pk[32], i_sk[32], rx[32], tx[32], m1[M1_LEN], m3[M3_LEN];
  size_t n;
  unsigned long long mlen;
  uint8_t plain[96], tag;
  crypto_secretstream_xchacha20poly1305_state st_in, st_out;
  assert_true(identity_generate(&id_i) && identity_generate(&id_r));
  Channel *r = channel_new(&id_r, CHANNEL_RESPONDER);

  crypto_kx_keypair(i_pk, i_sk);
  memcpy(m1,
         "\0\0\0\x25"
         "CNPY\x02",
         9);
  memcpy(m1 + 9, i_pk, 32);
  assert_true(channel_feed(r, m1, sizeof m1));
  uint8_t *m2 = take_output(r, &n);
  assert_int_equal(n, M2_LEN);
  const uint8_t *r_eph = m2 + 4;
  assert_int_equal(crypto_kx_client_session_keys(rx, tx, i_pk, i_sk, r_eph), 0);
  assert_int_equal(crypto_secretstream_xchacha20poly1305_init_pull(&st_in, m2 + 36, rx), 0);
  assert_int_equal(crypto_secretstream_xchacha20poly1305_pull(&st_in, plain, &mlen, &tag, m2 + 60,
                                                              n - 60, NULL, 0),
                   0);
  assert_int_equal(mlen, 96);
  assert_memory_equal(plain, id_r.pk, 32);

  put_u32(m3, M3_LEN - 4);
  crypto_secretstream_xchacha20poly1305_init_push(&st_out, m3 + 4, tx);
  seal_identity(&st_out, m3 + 28, &id_i, &id_i, "canopy/hs/i/v1", i_pk, r_eph,
                mode == SIGN_NO_R_STATIC ? NULL : id_r.pk);
  bool fed = channel_feed(r, m3, sizeof m3);
  if (mode == SIGN_OK) {
    assert_true(fed);
    assert_memory_equal(channel_peer_id(r), id_i.id, IDENTITY_ID_LEN);
  } else {
    assert_false(fed);
    assert_string_equal(channel_error(r), "bad signature");
  }
  free(m2);
  channel_free(r);
  identity_clear(&id_i);
  identity_clear(&id_r);
}

static void test_spec_initiator(void **state)
{
  run_manual_initiator(SIGN_OK);
  run_manual_initiator(SIGN_NO_R_STATIC);
}

/* -- the cookie step (cookie.h) ------------------------------------------ */

#define CHAL_FRAME (4 + 21)
#define M1C_LEN (M1_LEN + 29)

static uint64_t fake_ms; /* the jar's clock */

static uint64_t fake_clock(void *ud)
{
  return fake_ms;
}

static const uint8_t addr_a[4] = {192, 0, 2, 1};
static const uint8_t addr_b[4] = {192, 0, 2, 2};

/* A jar under load from the start (every M1 gets a challenge). */
static CookieJar *busy_jar(unsigned difficulty)
{
  CookieConfig cfg = {.max_pending = 0, .max_rate = 0, .difficulty = difficulty};
  CookieJar *jar = cookie_jar_new(&cfg, fake_clock, NULL);
  assert_non_null(jar);
  return jar;
}

static Channel *gated_responder(const Identity *id, CookieJar *jar, const uint8_t *addr)
{
  Channel *r = channel_new(id, CHANNEL_RESPONDER);
  assert_non_null(r);
  assert_true(channel_set_cookie_jar(r, jar, addr, 4));
  return r;
}

/* Runs M1 -> challenge -> solved M1 between i and r and returns the solved
 * M1 frame (not yet fed to r). */
static uint8_t *solved_m1(Channel *i, Channel *r, size_t *n)
{
  uint8_t *m1 = take_output(i, n);
  assert_int_equal(*n, M1_LEN);
  assert_true(channel_feed(r, m1, *n));
  free(m1);
  uint8_t *chal = take_output(r, n);
  assert_int_equal(*n, CHAL_FRAME);
  assert_true(channel_feed(i, chal, *n));
  free(chal);
  uint8_t *m1c = take_output(i, n);
  assert_int_equal(*n, M1C_LEN);
  return m1c;
}

static void test_cookie_round_trip(void **state)
{
  Pair *p = *state;
  CookieJar *jar = busy_jar(8);
  fake_ms = 1000000;
  channel_free(p->r);
  p->r = gated_responder(&p->id_r, jar, addr_a);
  pump(p->i, p->r, 0, &p->in_i, &p->in_r);
  assert_open_pair(p);
  CookieStats st;
  cookie_jar_stats(jar, &st);
  assert_int_equal(st.challenges_sent, 1);
  assert_int_equal(st.cookies_accepted, 1);
  assert_int_equal(st.cookies_refused, 0);
  assert_int_equal(st.pending, 0); /* open: no longer in progress */
  send_text(p->i, "after the cookie");
  pump(p->i, p->r, 3, &p->in_i, &p->in_r);
  assert_msg(&p->in_r, 0, "after the cookie");

  /* Byte by byte too. */
  Channel *i = channel_new(&p->id_i, CHANNEL_INITIATOR);
  Channel *r = gated_responder(&p->id_r, jar, addr_a);
  Inbox a = {0}, b = {0};
  pump(i, r, 1, &a, &b);
  assert_int_equal(channel_state(i), CHANNEL_OPEN);
  assert_int_equal(channel_state(r), CHANNEL_OPEN);
  channel_free(i);
  channel_free(r);
  cookie_jar_free(jar);
}

/* Under load, nothing an initiator sends before a valid cookie costs the
 * responder a public-key operation. */
static void test_cookie_no_pk_work_first(void **state)
{
  Pair *p = *state;
  CookieJar *jar = busy_jar(8);
  fake_ms = 5000000;
  Channel *r = gated_responder(&p->id_r, jar, addr_a);
  assert_int_equal(channel_pk_ops(r), 0); /* not even a key pair on accept */
  size_t n;
  uint8_t *m1 = take_output(p->i, &n);
  assert_true(channel_feed(r, m1, n));
  assert_int_equal(channel_pk_ops(r), 0);
  uint8_t *chal = take_output(r, &n);
  assert_int_equal(n, CHAL_FRAME);

  /* A made-up cookie: refused after one MAC. */
  uint8_t forged[M1C_LEN];
  memcpy(forged, m1, M1_LEN);
  put_u32(forged, M1C_LEN - 4);
  randombytes_buf(forged + M1_LEN, sizeof forged - M1_LEN);
  memcpy(forged + M1_LEN, chal + 4, 5); /* even with a fresh timestamp */
  assert_false(channel_feed(r, forged, sizeof forged));
  assert_string_equal(channel_error(r), "bad cookie");
  assert_int_equal(channel_pk_ops(r), 0);
  channel_free(r);

  /* A second plain M1 instead of the cookie: refused, still no work. */
  r = gated_responder(&p->id_r, jar, addr_a);
  assert_true(channel_feed(r, m1, M1_LEN));
  free(take_output(r, &n));
  assert_false(channel_feed(r, m1, M1_LEN));
  assert_string_equal(channel_error(r), "second M1 without the cookie");
  assert_int_equal(channel_pk_ops(r), 0);
  channel_free(r);

  /* The real solution opens the handshake, and only then the work. */
  r = gated_responder(&p->id_r, jar, addr_a);
  assert_true(channel_feed(r, m1, M1_LEN));
  free(take_output(r, &n));
  assert_true(channel_feed(p->i, chal, CHAL_FRAME));
  uint8_t *m1c = take_output(p->i, &n);
  assert_true(channel_feed(r, m1c, n));
  assert_true(channel_pk_ops(r) >= 3); /* key pair, agreement, signature */
  CookieStats st;
  cookie_jar_stats(jar, &st);
  assert_int_equal(st.pending, 1);
  channel_free(r); /* a handshake that ends unfinished stops counting */
  cookie_jar_stats(jar, &st);
  assert_int_equal(st.pending, 0);
  assert_int_equal(st.cookies_refused, 1);
  free(m1c);
  free(m1);
  free(chal);
  cookie_jar_free(jar);
}

static void test_cookie_expired(void **state)
{
  Pair *p = *state;
  CookieJar *jar = busy_jar(4);
  size_t n;

  /* Inside the lifetime, across a secret rotation: accepted. */
  fake_ms = (uint64_t)COOKIE_ROTATE_S * 1000 * 10 - 2000;
  Channel *r = gated_responder(&p->id_r, jar, addr_a);
  uint8_t *m1c = solved_m1(p->i, r, &n);
  fake_ms += (COOKIE_LIFETIME_S - 1) * 1000;
  assert_true(channel_feed(r, m1c, n));
  assert_int_equal(channel_state(r), CHANNEL_HANDSHAKE);
  free(m1c);
  channel_free(r);

  /* One second past the lifetime: refused. */
  Channel *i = channel_new(&p->id_i, CHANNEL_INITIATOR);
  r = gated_responder(&p->id_r, jar, addr_a);
  m1c = solved_m1(i, r, &n);
  fake_ms += (COOKIE_LIFETIME_S + 1) * 1000;
  assert_false(channel_feed(r, m1c, n));
  assert_string_equal(channel_error(r), "expired cookie");
  assert_int_equal(channel_pk_ops(r), 0);
  free(m1c);
  channel_free(r);
  channel_free(i);

  /* Two rotations later the secret itself is gone. */
  i = channel_new(&p->id_i, CHANNEL_INITIATOR);
  r = gated_responder(&p->id_r, jar, addr_a);
  m1c = solved_m1(i, r, &n);
  fake_ms += 2 * COOKIE_ROTATE_S * 1000;
  assert_false(channel_feed(r, m1c, n));
  assert_string_equal(channel_error(r), "expired cookie");
  free(m1c);
  channel_free(r);
  channel_free(i);
  cookie_jar_free(jar);
}

static void test_cookie_other_address(void **state)
{
  Pair *p = *state;
  CookieJar *jar = busy_jar(4);
  size_t n;
  fake_ms = 7000000;
  Channel *r = gated_responder(&p->id_r, jar, addr_a);
  uint8_t *m1c = solved_m1(p->i, r, &n);
  channel_free(r);
  /* Solved for A, spent from B. */
  r = gated_responder(&p->id_r, jar, addr_b);
  assert_false(channel_feed(r, m1c, n));
  assert_string_equal(channel_error(r), "bad cookie");
  assert_int_equal(channel_pk_ops(r), 0);
  channel_free(r);
  /* And from A it still works (the refusal spent nothing). */
  r = gated_responder(&p->id_r, jar, addr_a);
  assert_true(channel_feed(r, m1c, n));
  channel_free(r);
  free(m1c);
  cookie_jar_free(jar);
}

static void test_cookie_wrong_solution(void **state)
{
  Pair *p = *state;
  CookieJar *jar = busy_jar(16);
  size_t n;
  fake_ms = 9000000;
  Channel *r = gated_responder(&p->id_r, jar, addr_a);
  uint8_t *m1c = solved_m1(p->i, r, &n);
  uint8_t *mac = m1c + M1_LEN + 5, *nonce = m1c + M1_LEN + 21;
  assert_true(cookie_work_bits(mac, nonce) >= 16);
  /* Another nonce that does not meet 16 bits. */
  do
    nonce[7]++;
  while (cookie_work_bits(mac, nonce) >= 16);
  assert_false(channel_feed(r, m1c, n));
  assert_string_equal(channel_error(r), "puzzle not solved");
  assert_int_equal(channel_pk_ops(r), 0);
  channel_free(r);

  /* Lowering the difficulty byte breaks the MAC instead. */
  Channel *i = channel_new(&p->id_i, CHANNEL_INITIATOR);
  r = gated_responder(&p->id_r, jar, addr_a);
  free(m1c);
  m1c = solved_m1(i, r, &n);
  m1c[M1_LEN] = 0;
  assert_false(channel_feed(r, m1c, n));
  assert_string_equal(channel_error(r), "bad cookie");
  channel_free(r);
  channel_free(i);
  free(m1c);
  cookie_jar_free(jar);
}

static void test_cookie_replayed(void **state)
{
  Pair *p = *state;
  CookieJar *jar = busy_jar(4);
  size_t n;
  fake_ms = 11000000;
  Channel *r = gated_responder(&p->id_r, jar, addr_a);
  uint8_t *m1c = solved_m1(p->i, r, &n);
  assert_true(channel_feed(r, m1c, n));
  channel_free(r);
  /* The same solved M1 on a new connection from the same address. */
  r = gated_responder(&p->id_r, jar, addr_a);
  assert_false(channel_feed(r, m1c, n));
  assert_string_equal(channel_error(r), "replayed cookie");
  assert_int_equal(channel_pk_ops(r), 0);
  channel_free(r);
  free(m1c);
  cookie_jar_free(jar);
}

/* The load rule with the fake clock: in progress and per-second rate. */
static void test_cookie_load(void **state)
{
  Pair *p = *state;
  CookieConfig cfg = {.max_pending = 2, .max_rate = 1000, .difficulty = 4};
  fake_ms = 20000000;
  CookieJar *jar = cookie_jar_new(&cfg, fake_clock, NULL);
  Channel *i[4], *r[4];
  size_t n;
  for (int k = 0; k < 3; k++) {
    i[k] = channel_new(&p->id_i, CHANNEL_INITIATOR);
    r[k] = gated_responder(&p->id_r, jar, addr_a);
    uint8_t *m1 = take_output(i[k], &n);
    assert_true(channel_feed(r[k], m1, n));
    free(m1);
    uint8_t *out = take_output(r[k], &n);
    /* Two handshakes in progress: the third gets a challenge. */
    assert_int_equal(n, k < 2 ? M2_LEN : CHAL_FRAME);
    free(out);
  }
  CookieStats st;
  cookie_jar_stats(jar, &st);
  assert_int_equal(st.pending, 2);
  assert_true(st.loaded);
  channel_free(r[0]); /* one ends: below the threshold again */
  cookie_jar_stats(jar, &st);
  assert_false(st.loaded);
  for (int k = 0; k < 3; k++)
    channel_free(i[k]);
  channel_free(r[1]);
  channel_free(r[2]);

  /* Rate: 3 M1s per second at most. */
  cfg = (CookieConfig){.max_pending = 1000, .max_rate = 3, .difficulty = 4};
  cookie_jar_set_config(jar, &cfg);
  fake_ms += 2000; /* the M1s above are no longer in the window */
  int challenged = 0;
  for (int k = 0; k < 4; k++) {
    i[k] = channel_new(&p->id_i, CHANNEL_INITIATOR);
    r[k] = gated_responder(&p->id_r, jar, addr_a);
    uint8_t *m1 = take_output(i[k], &n);
    assert_true(channel_feed(r[k], m1, n));
    free(m1);
    free(take_output(r[k], &n));
    challenged += n == CHAL_FRAME;
    assert_int_equal(n, k < 3 ? M2_LEN : CHAL_FRAME);
  }
  assert_int_equal(challenged, 1);
  for (int k = 0; k < 4; k++) {
    channel_free(i[k]);
    channel_free(r[k]);
  }
  /* The next second still remembers the last one; two seconds on, calm. */
  fake_ms += 1000;
  cookie_jar_stats(jar, &st);
  assert_true(st.loaded);
  fake_ms += 1000;
  cookie_jar_stats(jar, &st);
  assert_false(st.loaded);
  Channel *i2 = channel_new(&p->id_i, CHANNEL_INITIATOR);
  Channel *r2 = gated_responder(&p->id_r, jar, addr_a);
  Inbox a = {0}, b = {0};
  pump(i2, r2, 0, &a, &b);
  assert_int_equal(channel_state(r2), CHANNEL_OPEN);
  cookie_jar_stats(jar, &st);
  assert_int_equal(st.challenges_sent, 2);
  channel_free(i2);
  channel_free(r2);
  cookie_jar_free(jar);
}

/* Plain M1 from addr (4 or 16 bytes) to a fresh responder of jar: true if
 * it was challenged. */
static bool m1_challenged_from(Pair *p, CookieJar *jar, const uint8_t *addr, size_t addr_len,
                               Channel **i, Channel **r)
{
  size_t n;
  *i = channel_new(&p->id_i, CHANNEL_INITIATOR);
  *r = channel_new(&p->id_r, CHANNEL_RESPONDER);
  assert_true(channel_set_cookie_jar(*r, jar, addr, addr_len));
  uint8_t *m1 = take_output(*i, &n);
  assert_true(channel_feed(*r, m1, n));
  free(m1);
  free(take_output(*r, &n));
  return n == CHAL_FRAME;
}

/* A plain M1 from addr whose handshake is then dropped before M3: true if
 * it was challenged (then it held no public-key work). */
static bool m1_dropped_from(Pair *p, CookieJar *jar, const uint8_t *addr, size_t addr_len)
{
  Channel *i, *r;
  bool c = m1_challenged_from(p, jar, addr, addr_len, &i, &r);
  channel_free(r);
  channel_free(i);
  return c;
}

/* The same from addr_a, or from the /24 number k (192.0.k.1). */
static bool m1_dropped(Pair *p, CookieJar *jar)
{
  return m1_dropped_from(p, jar, addr_a, sizeof addr_a);
}

static bool m1_dropped_net(Pair *p, CookieJar *jar, int k)
{
  const uint8_t a[4] = {192, 0, (uint8_t)k, 1};
  return m1_dropped_from(p, jar, a, sizeof a);
}

/* The abandonment rule with the fake clock: handshakes that end before M3
 * (an M1 flood hangs up once answered) engage the step for COOKIE_HOLD_S
 * after the second they reached max_abandoned in; finished ones never
 * count, and neither do challenged M1s. */
static void test_cookie_abandoned(void **state)
{
  Pair *p = *state;
  CookieConfig cfg = {.max_pending = 1000, .max_rate = 1000, .difficulty = 4, .max_abandoned = 3};
  fake_ms = 30000000;
  CookieJar *jar = cookie_jar_new(&cfg, fake_clock, NULL);
  CookieStats st;
  /* Ten honest handshakes that finish: no load. */
  for (int k = 0; k < 10; k++) {
    Channel *hi = channel_new(&p->id_i, CHANNEL_INITIATOR);
    Channel *hr = gated_responder(&p->id_r, jar, addr_a);
    Inbox a = {0}, b = {0};
    pump(hi, hr, 0, &a, &b);
    assert_int_equal(channel_state(hr), CHANNEL_OPEN);
    channel_free(hi);
    channel_free(hr);
  }
  cookie_jar_stats(jar, &st);
  assert_false(st.loaded);
  assert_int_equal(st.abandoned, 0);
  /* Two abandoned in one second (from two prefixes: one prefix alone is
   * put on the step alone, test_cookie_abandoned_prefix): under the
   * threshold. */
  assert_false(m1_dropped_net(p, jar, 10));
  assert_false(m1_dropped_net(p, jar, 11));
  cookie_jar_stats(jar, &st);
  assert_false(st.loaded);
  /* A second later the count starts over: two more do not engage it. */
  fake_ms += 1000;
  assert_false(m1_dropped_net(p, jar, 12));
  assert_false(m1_dropped_net(p, jar, 13));
  cookie_jar_stats(jar, &st);
  assert_false(st.loaded);
  /* The third in that second does. */
  assert_false(m1_dropped_net(p, jar, 14));
  cookie_jar_stats(jar, &st);
  assert_true(st.loaded);
  assert_int_equal(st.prefixes_held, 0);
  assert_int_equal(st.abandoned, 5);
  assert_int_equal(st.pending, 0);
  /* Held: challenged M1s dropped unanswered abandon nothing, and the step
   * stays on to the end of the hold. */
  for (int s = 0; s < COOKIE_HOLD_S; s++) {
    assert_true(m1_dropped(p, jar));
    fake_ms += 1000;
    cookie_jar_stats(jar, &st);
    assert_true(st.loaded == (s + 1 < COOKIE_HOLD_S));
  }
  assert_int_equal(st.abandoned, 5);
  assert_false(m1_dropped(p, jar));
  /* Off (0): any number abandoned engages nothing. */
  cfg.max_abandoned = 0;
  cookie_jar_set_config(jar, &cfg);
  fake_ms += 1000;
  for (int k = 0; k < 10; k++)
    assert_false(m1_dropped(p, jar));
  cookie_jar_stats(jar, &st);
  assert_false(st.loaded);
  assert_int_equal(st.prefixes_held, 0);
  assert_int_equal(st.abandoned, 16);
  cookie_jar_free(jar);
}

/* One source that abandons handshakes is put on the step alone: its M1s
 * are challenged, everyone else's are not, and what it abandons does not
 * engage the step for everyone (the review's attack: 100 hung-up M1s every
 * 10 s from one address kept every honest leaf solving puzzles). */
static void test_cookie_abandoned_prefix(void **state)
{
  Pair *p = *state;
  CookieConfig cfg = {.max_pending = 1000, .max_rate = 1000, .difficulty = 4, .max_abandoned = 100};
  fake_ms = 40000000;
  CookieJar *jar = cookie_jar_new(&cfg, fake_clock, NULL);
  CookieStats st;
  const uint8_t same24[4] = {192, 0, 2, 77}, other[4] = {198, 51, 100, 1};
  /* Bursts of 100 a second from one /24, one burst every hold period. */
  for (int burst = 0; burst < 3; burst++) {
    int answered = 0;
    for (int k = 0; k < 100; k++)
      answered += !m1_dropped(p, jar);
    /* Only the first COOKIE_PREFIX_ABANDONED cost public-key work. */
    assert_int_equal(answered, COOKIE_PREFIX_ABANDONED);
    cookie_jar_stats(jar, &st);
    assert_false(st.loaded);
    assert_int_equal(st.prefixes_held, 1);
    assert_int_equal(st.prefix_holds, (uint64_t)burst + 1);
    /* Its neighbours in the /24 are challenged, another source is not. */
    assert_true(m1_dropped_from(p, jar, same24, sizeof same24));
    assert_false(m1_dropped_from(p, jar, other, sizeof other));
    fake_ms += 1000 * COOKIE_HOLD_S;
    cookie_jar_stats(jar, &st);
    assert_int_equal(st.prefixes_held, 0);
  }
  /* IPv6: a /48 is one source, and an IPv4-mapped address is its /24. */
  uint8_t v6a[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  uint8_t v6b[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 1, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 9};
  uint8_t v6c[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 5};
  const uint8_t mapped4[4] = {203, 0, 113, 200};
  for (int k = 0; k < COOKIE_PREFIX_ABANDONED; k++) {
    assert_false(m1_dropped_from(p, jar, v6a, sizeof v6a));
    assert_false(m1_dropped_from(p, jar, mapped, sizeof mapped));
  }
  assert_true(m1_dropped_from(p, jar, v6b, sizeof v6b));
  assert_false(m1_dropped_from(p, jar, v6c, sizeof v6c));
  assert_true(m1_dropped_from(p, jar, mapped4, sizeof mapped4));
  cookie_jar_stats(jar, &st);
  assert_int_equal(st.prefixes_held, 2);
  assert_false(st.loaded);
  /* Many sources at once still engage the step for everyone. */
  fake_ms += 1000 * COOKIE_HOLD_S;
  for (int k = 0; k < 100; k++)
    assert_false(m1_dropped_net(p, jar, k));
  cookie_jar_stats(jar, &st);
  assert_true(st.loaded);
  assert_true(m1_dropped_from(p, jar, other, sizeof other));
  cookie_jar_free(jar);
}

/* Every prefix of the challenge and of the solved M1 waits for more; every
 * other declared length is refused at once. */
static void test_cookie_truncation_sweep(void **state)
{
  Pair *p = *state;
  CookieJar *jar = busy_jar(4);
  size_t n;
  fake_ms = 30000000;
  uint8_t *m1 = take_output(p->i, &n);
  Channel *r = gated_responder(&p->id_r, jar, addr_a);
  assert_true(channel_feed(r, m1, n));
  uint8_t *chal = take_output(r, &n);
  channel_free(r);
  for (size_t k = 0; k < CHAL_FRAME; k++) {
    Channel *i = channel_new(&p->id_i, CHANNEL_INITIATOR);
    free(take_output(i, &n));
    assert_true(channel_feed(i, chal, k));
    assert_int_equal(channel_state(i), CHANNEL_HANDSHAKE);
    channel_output(i, &n);
    assert_int_equal(n, 0);
    channel_free(i);
  }
  for (uint32_t len = 1; len < 200; len++) {
    if (len == CHAL_FRAME - 4 || len == M2_LEN - 4)
      continue;
    uint8_t hdr[4];
    put_u32(hdr, len);
    Channel *i = channel_new(&p->id_i, CHANNEL_INITIATOR);
    assert_false(channel_feed(i, hdr, 4));
    assert_string_equal(channel_error(i), "bad handshake message size");
    channel_free(i);
  }

  /* The solved M1, prefix by prefix, to fresh responders. */
  assert_true(channel_feed(p->i, chal, CHAL_FRAME));
  uint8_t *m1c = take_output(p->i, &n);
  assert_int_equal(n, M1C_LEN);
  for (size_t k = 0; k < M1C_LEN; k++) {
    r = gated_responder(&p->id_r, jar, addr_a);
    assert_true(channel_feed(r, m1c, k));
    assert_int_equal(channel_state(r), CHANNEL_HANDSHAKE);
    channel_output(r, &n);
    assert_int_equal(n, 0);
    assert_int_equal(channel_pk_ops(r), 0);
    channel_free(r);
  }
  for (uint32_t len = 1; len < 200; len++) {
    if (len == M1_LEN - 4 || len == M1C_LEN - 4)
      continue;
    uint8_t hdr[4];
    put_u32(hdr, len);
    r = gated_responder(&p->id_r, jar, addr_a);
    assert_false(channel_feed(r, hdr, 4));
    channel_free(r);
  }
  r = gated_responder(&p->id_r, jar, addr_a);
  assert_true(channel_feed(r, m1c, M1C_LEN));
  assert_int_equal(channel_state(r), CHANNEL_HANDSHAKE);
  channel_output(r, &n);
  assert_int_equal(n, M2_LEN);
  channel_free(r);
  free(m1c);
  free(chal);
  free(m1);
  cookie_jar_free(jar);
}

/* The initiator's side: no endless work for a responder or a man in the
 * middle, and a cookie to a responder that never asks for one is an error. */
static void test_cookie_initiator_limits(void **state)
{
  Pair *p = *state;
  uint8_t chal[CHAL_FRAME] = {0};
  put_u32(chal, CHAL_FRAME - 4);
  chal[4] = COOKIE_MAX_DIFFICULTY + 1;
  size_t n;
  uint8_t *m1 = take_output(p->i, &n);
  assert_false(channel_feed(p->i, chal, sizeof chal));
  assert_string_equal(channel_error(p->i), "challenge too hard");

  Channel *i = channel_new(&p->id_i, CHANNEL_INITIATOR);
  free(take_output(i, &n));
  chal[4] = 2;
  assert_true(channel_feed(i, chal, sizeof chal));
  uint8_t *m1c = take_output(i, &n);
  assert_int_equal(n, M1C_LEN);
  assert_false(channel_feed(i, chal, sizeof chal));
  assert_string_equal(channel_error(i), "second challenge");
  channel_free(i);

  /* A responder without a jar (leaf to leaf) never sent a challenge. */
  assert_false(channel_feed(p->r, m1c, M1C_LEN));
  assert_string_equal(channel_error(p->r), "unexpected cookie");
  /* Nor can a jar be set once M1 is in, or on an initiator. */
  CookieJar *jar = busy_jar(1);
  Channel *r = channel_new(&p->id_r, CHANNEL_RESPONDER);
  assert_true(channel_feed(r, m1, 10));
  assert_false(channel_set_cookie_jar(r, jar, addr_a, 4));
  assert_false(channel_set_cookie_jar(p->i, jar, addr_a, 4));
  channel_free(r);
  cookie_jar_free(jar);
  free(m1c);
  free(m1);
}

/* -- lifecycle ----------------------------------------------------------- */

static void test_final_closes(void **state)
{
  Pair *p = *state;
  const uint8_t *msg;
  size_t len;
  open_pair(p);
  send_text(p->i, "last words");
  assert_true(channel_write_final(p->i));
  assert_false(channel_write(p->i, (const uint8_t *)"more", 4));
  assert_false(channel_write_final(p->i));
  pump(p->i, p->r, 0, &p->in_i, &p->in_r);
  assert_int_equal(p->in_r.count, 1);
  assert_msg(&p->in_r, 0, "last words");
  assert_int_equal(channel_state(p->r), CHANNEL_CLOSED);
  assert_int_equal(channel_read(p->r, &msg, &len), 0);

  /* R answers with its own final frame. */
  assert_true(channel_write_final(p->r));
  pump(p->i, p->r, 0, &p->in_i, &p->in_r);
  assert_int_equal(channel_state(p->i), CHANNEL_CLOSED);

  /* Anything after the final frame is an attack. */
  static const uint8_t junk[] = {0, 0, 0, 20};
  assert_false(channel_feed(p->r, junk, sizeof junk));
  assert_int_equal(channel_state(p->r), CHANNEL_FAILED);
}

static void test_failure_sticks(void **state)
{
  Pair *p = *state;
  const uint8_t *msg;
  size_t len, n;
  open_pair(p);
  send_text(p->i, "queued");
  static const uint8_t zero[] = {0, 0, 0, 0};
  assert_false(channel_feed(p->i, zero, sizeof zero));
  assert_int_equal(channel_state(p->i), CHANNEL_FAILED);
  assert_false(channel_feed(p->i, zero, 1));
  assert_int_equal(channel_read(p->i, &msg, &len), -1);
  assert_false(channel_write(p->i, (const uint8_t *)"x", 1));
  assert_false(channel_write_final(p->i));
  channel_output(p->i, &n);
  assert_int_equal(n, 0); /* nothing goes out from a failed channel */
}

static void test_input_overflow(void **state)
{
  Pair *p = *state;
  open_pair(p);
  size_t n = 2 * (4 + CHANNEL_MAX_WIRE_FRAME) + 1;
  uint8_t *lots = calloc(1, n);
  assert_non_null(lots);
  assert_false(channel_feed(p->r, lots, n));
  assert_string_equal(channel_error(p->r), "input overflow");
  free(lots);
}

/* -- identity ------------------------------------------------------------ */

static char tmp_root[64];

static int tmp_setup(void **state)
{
  snprintf(tmp_root, sizeof tmp_root, "/tmp/canopy-test-XXXXXX");
  return mkdtemp(tmp_root) ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  return remove(path);
}

static int tmp_teardown(void **state)
{
  return nftw(tmp_root, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  assert_int_equal(chmod(path, mode), 0);
}

static void test_identity_create_and_reload(void **state)
{
  char dir[128], path[160], err[256] = "";
  struct stat st;
  Identity a, b;
  snprintf(dir, sizeof dir, "%s/state/node", tmp_root);
  assert_true(identity_load_or_create(dir, &a, err, sizeof err));
  snprintf(path, sizeof path, "%s/identity.key", dir);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  assert_int_equal(st.st_size, 129);
  assert_int_equal(stat(dir, &st), 0);
  assert_int_equal(st.st_mode & 0077, 0);

  assert_true(identity_load_or_create(dir, &b, err, sizeof err));
  assert_memory_equal(a.id, b.id, IDENTITY_ID_LEN);
  assert_memory_equal(a.pk, b.pk, IDENTITY_PK_LEN);
  assert_memory_equal(a.sk, b.sk, IDENTITY_SK_LEN);
  uint8_t id[IDENTITY_ID_LEN];
  identity_id_of(a.pk, id);
  assert_memory_equal(id, a.id, IDENTITY_ID_LEN);

  /* The loaded key works in a handshake. */
  Identity other;
  assert_true(identity_generate(&other));
  Pair p = {.id_i = b, .id_r = other};
  p.i = channel_new(&b, CHANNEL_INITIATOR);
  p.r = channel_new(&other, CHANNEL_RESPONDER);
  open_pair(&p);
  channel_free(p.i);
  channel_free(p.r);
  identity_clear(&a);
  identity_clear(&b);
  identity_clear(&other);
}

static void test_identity_refuses_open_mode(void **state)
{
  char dir[128], path[160], err[256] = "";
  Identity a;
  snprintf(dir, sizeof dir, "%s/open", tmp_root);
  assert_true(identity_load_or_create(dir, &a, err, sizeof err));
  snprintf(path, sizeof path, "%s/identity.key", dir);
  assert_int_equal(chmod(path, 0644), 0);
  assert_false(identity_load_or_create(dir, &a, err, sizeof err));
  assert_non_null(strstr(err, "identity.key"));
  assert_non_null(strstr(err, dir));
  for (size_t k = 0; k < IDENTITY_SK_LEN; k++)
    assert_int_equal(a.sk[k], 0);
}

static void test_identity_refuses_garbage(void **state)
{
  char dir[128], path[160], err[256] = "";
  char text[200];
  Identity a;
  snprintf(dir, sizeof dir, "%s/garbage", tmp_root);
  assert_int_equal(mkdir(dir, 0700), 0);
  snprintf(path, sizeof path, "%s/identity.key", dir);

  write_file(path, "not a key\n", 0600);
  assert_false(identity_load_or_create(dir, &a, err, sizeof err));
  assert_non_null(strstr(err, "bad format"));

  /* Right length, one non-hex digit. */
  memset(text, 'a', 128);
  text[77] = 'g';
  text[128] = '\n';
  text[129] = '\0';
  write_file(path, text, 0600);
  assert_false(identity_load_or_create(dir, &a, err, sizeof err));
  assert_non_null(strstr(err, "bad format"));

  /* Missing newline, and one byte too many. */
  text[77] = 'a';
  text[128] = '\0';
  write_file(path, text, 0600);
  assert_false(identity_load_or_create(dir, &a, err, sizeof err));
  text[128] = '\n';
  text[129] = '\n';
  text[130] = '\0';
  write_file(path, text, 0600);
  assert_false(identity_load_or_create(dir, &a, err, sizeof err));

  /* Well-formed hex whose public half does not belong to its seed. */
  text[129] = '\0';
  write_file(path, text, 0600);
  assert_false(identity_load_or_create(dir, &a, err, sizeof err));
  assert_non_null(strstr(err, "does not match"));

  /* Empty file. */
  write_file(path, "", 0600);
  assert_false(identity_load_or_create(dir, &a, err, sizeof err));
}

static void test_hex(void **state)
{
  uint8_t in[4] = {0x00, 0x9f, 0xA0, 0xff}, out[4];
  char s[9];
  hex_encode(in, 4, s);
  assert_string_equal(s, "009fa0ff");
  assert_true(hex_decode("009FA0ff", out, 4));
  assert_memory_equal(in, out, 4);
  assert_false(hex_decode("009fa0f", out, 4));   /* short */
  assert_false(hex_decode("009fa0ff0", out, 4)); /* long */
  assert_false(hex_decode("009fa0fg", out, 4));
  assert_false(hex_decode("009f a0f", out, 4));
  assert_false(hex_decode("", out, 4));
  assert_true(hex_decode("", out, 0));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_handshake_bytewise, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_export, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_handshake_all_at_once, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_many_messages, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_max_message, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_flipped_bit, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_flipped_bit_in_handshake, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_replayed_frame, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_reordered_frames, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_dropped_frame, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_truncated_frame, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_absurd_length, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_bad_magic_and_version, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_low_order_ephemeral, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_tampered_static_key, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_man_in_the_middle, pair_setup, pair_teardown),
      cmocka_unit_test(test_spec_responder),
      cmocka_unit_test(test_spec_initiator),
      cmocka_unit_test_setup_teardown(test_cookie_round_trip, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_cookie_no_pk_work_first, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_cookie_expired, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_cookie_other_address, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_cookie_wrong_solution, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_cookie_replayed, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_cookie_load, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_cookie_abandoned, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_cookie_abandoned_prefix, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_cookie_truncation_sweep, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_cookie_initiator_limits, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_final_closes, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_failure_sticks, pair_setup, pair_teardown),
      cmocka_unit_test_setup_teardown(test_input_overflow, pair_setup, pair_teardown),
      cmocka_unit_test(test_identity_create_and_reload),
      cmocka_unit_test(test_identity_refuses_open_mode),
      cmocka_unit_test(test_identity_refuses_garbage),
      cmocka_unit_test(test_hex),
  };
  assert_true(crypto_ready());
  return cmocka_run_group_tests(tests, tmp_setup, tmp_teardown);
}
