/* fuzz_hello.c - libFuzzer target for the first message a stranger sends.
 *
 * The input is a HELLO body (after the version and type bytes). It must
 * (a) round-trip through the codec when it decodes: decode, encode, decode
 *     again, the same bytes and the same fields;
 * (b) go into two super-node cores as the first message of an inbound
 *     session, one open and one admitting only certified super nodes
 *     (netcert_check on the certificate it carries), with the listen
 *     address it claims going through the address book's checks. Whatever
 *     it holds, the cores must not crash, and their actions must be
 *     well-formed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sncore.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t SELF[32] = {0x10, 0x42};
static const uint8_t STRANGER[32] = {0x20, 0x42};
static const uint8_t NETWORK_PK[32] = {0x30, 0x42};

static void rng(uint8_t *out, size_t n, void *ctx)
{
  (void)ctx;
  memset(out, 0x5a, n);
}

static uint64_t unix_now(void)
{
  return 1700000000;
}

static bool str_equal(WireStr a, WireStr b)
{
  return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static void check_roundtrip(const uint8_t *frame, size_t len)
{
  WireMsg m, again;
  if (wire_decode(frame, len, &m) != WIRE_OK)
    return;
  if (m.type != MSG_HELLO)
    abort();
  Buf b;
  buf_init(&b);
  if (!wire_encode(&m, &b) || b.len != len || memcmp(b.data, frame, len) != 0)
    abort(); /* one encoding per HELLO */
  if (wire_decode(b.data, b.len, &again) != WIRE_OK)
    abort();
  if (again.u.hello.role != m.u.hello.role || !str_equal(again.u.hello.listen, m.u.hello.listen) ||
      !str_equal(again.u.hello.agent, m.u.hello.agent) ||
      again.u.hello.cert_len != m.u.hello.cert_len ||
      (m.u.hello.cert_len && memcmp(again.u.hello.cert, m.u.hello.cert, m.u.hello.cert_len)))
    abort();
  if (m.u.hello.listen.len > WIRE_MAX_ADDR || m.u.hello.agent.len > WIRE_MAX_AGENT ||
      m.u.hello.cert_len > WIRE_MAX_CERT)
    abort();
  wire_msg_clear(&again);
  wire_msg_clear(&m);
  buf_free(&b);
}

static void feed_core(const uint8_t *frame, size_t len, bool networked)
{
  SnConfig cfg;
  sn_config_defaults(&cfg);
  cfg.max_entries_per_leaf = 16;
  if (networked) {
    cfg.network_pk = NETWORK_PK;
    cfg.unix_now = unix_now;
  }
  SnCore *c = sn_core_new(&cfg, SELF, rng, NULL, 1000);
  if (!c)
    abort();
  sn_core_open(c, 7, STRANGER, NULL, 1000);
  sn_core_recv(c, 7, frame, len, 1001);
  sn_core_tick(c, 2000);
  SnAction a;
  while (sn_core_next_action(c, &a)) {
    if (a.kind == SN_ACT_SEND && (a.len < 2 || !a.data))
      abort();
    if (a.kind == SN_ACT_SEND) {
      /* Whatever we answer must decode. */
      WireMsg m;
      if (wire_decode(a.data, a.len, &m) != WIRE_OK)
        abort();
      wire_msg_clear(&m);
    }
    sn_action_clear(&a);
  }
  sn_core_closed(c, 7, 3000);
  sn_core_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size > 4096)
    return 0;
  uint8_t *frame = malloc(size + 2);
  frame[0] = WIRE_VERSION;
  frame[1] = MSG_HELLO;
  if (size)
    memcpy(frame + 2, data, size);
  check_roundtrip(frame, size + 2);
  feed_core(frame, size + 2, false);
  feed_core(frame, size + 2, true);
  free(frame);
  return 0;
}
