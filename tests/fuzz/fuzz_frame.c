/* fuzz_frame.c - libFuzzer target for what a peer controls first.
 *
 * (a) The message codec: anything wire_decode accepts must re-encode to the
 *     very same bytes and decode again (the encoding is canonical, since
 *     decoding rejects trailing bytes and unknown flag bits).
 * (b) The secure channel: the input, as raw bytes from the network, goes to
 *     a responder in a few slices, with every frame read after each feed as
 *     a caller would. It must fail cleanly and never crash. Inputs whose
 *     first byte has its top bit set meet a responder under load (every M1
 *     gets a cookie challenge, and an M1 carrying a cookie is checked).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "channel.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_roundtrip(const uint8_t *data, size_t size)
{
  WireMsg m, again;
  Buf b;
  if (wire_decode(data, size, &m) != WIRE_OK)
    return;
  buf_init(&b);
  if (!wire_encode(&m, &b))
    abort(); /* decoded fine but cannot be encoded */
  if (b.len != size || memcmp(b.data, data, size) != 0)
    abort(); /* encode(decode(x)) != x */
  if (wire_decode(b.data, b.len, &again) != WIRE_OK)
    abort();
  Buf b2;
  buf_init(&b2);
  if (!wire_encode(&again, &b2) || b2.len != b.len || memcmp(b2.data, b.data, b.len) != 0)
    abort();
  buf_free(&b2);
  wire_msg_clear(&again);
  wire_msg_clear(&m);
  buf_free(&b);
}

static uint64_t fixed_clock(void *ud)
{
  return 1000000;
}

static void feed_channel(const uint8_t *data, size_t size)
{
  static CookieJar *jar;
  if (!jar) {
    CookieConfig cfg = {.max_pending = 0, .max_rate = 0, .difficulty = 1};
    jar = cookie_jar_new(&cfg, fixed_clock, NULL);
    if (!jar)
      abort();
  }
  static Identity self;
  static bool have_self;
  if (!have_self) {
    if (!identity_generate(&self))
      abort();
    have_self = true;
  }
  Channel *ch = channel_new(&self, CHANNEL_RESPONDER);
  if (!ch)
    abort();
  static const uint8_t addr[4] = {203, 0, 113, 9};
  if (size && data[0] & 0x80 && !channel_set_cookie_jar(ch, jar, addr, sizeof addr))
    abort();
  /* The first byte picks a slice size, so partial frames get exercised. */
  size_t step = size ? (size_t)data[0] % 64 + 1 : 1;
  for (size_t off = 0; off < size; off += step) {
    size_t n = size - off < step ? size - off : step;
    if (!channel_feed(ch, data + off, n))
      break;
    const uint8_t *msg;
    size_t len;
    while (channel_read(ch, &msg, &len) > 0)
      ;
  }
  size_t out;
  channel_output(ch, &out);
  channel_output_consume(ch, out);
  channel_free(ch);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  check_roundtrip(data, size);
  feed_channel(data, size);
  return 0;
}
