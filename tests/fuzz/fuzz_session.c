/* fuzz_session.c - libFuzzer target for a whole session of a stranger with
 * a super node: every message after the handshake, in any order, fed into
 * a super-node core (supernode/sncore.h) as one inbound session.
 *
 * Input: records of u8 dt | u16 len (big-endian) | len bytes of message
 * (version, type, body); the core's clock moves dt * 10 ms before each
 * record, and it is ticked after each. The core must not crash, leak or
 * misbehave in what it sends: every SEND it asks for must decode.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sncore.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t SELF[32] = {0x10, 0x42};
static const uint8_t STRANGER[32] = {0x20, 0x42};

static void rng(uint8_t *out, size_t n, void *ctx)
{
  uint64_t *s = ctx;
  for (size_t i = 0; i < n; i++) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    out[i] = (uint8_t)(*s >> 56);
  }
}

static void drain(SnCore *c)
{
  SnAction a;
  while (sn_core_next_action(c, &a)) {
    if (a.kind == SN_ACT_SEND) {
      WireMsg m;
      if (a.len < 2 || wire_decode(a.data, a.len, &m) != WIRE_OK)
        abort(); /* we would send what nobody can read */
      wire_msg_clear(&m);
    }
    sn_action_clear(&a);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size > 65536)
    return 0;
  SnConfig cfg;
  sn_config_defaults(&cfg);
  cfg.max_entries_per_leaf = 64;
  cfg.advertise = "127.0.0.1:7400";
  uint64_t seed = 1, now = 1000;
  SnCore *c = sn_core_new(&cfg, SELF, rng, &seed, now);
  if (!c)
    abort();
  sn_core_open(c, 7, STRANGER, NULL, now);
  drain(c);
  size_t off = 0;
  for (int frames = 0; frames < 64 && size - off >= 3; frames++) {
    now += (uint64_t)data[off] * 10;
    size_t len = (size_t)data[off + 1] << 8 | data[off + 2];
    off += 3;
    if (len > size - off)
      len = size - off;
    sn_core_recv(c, 7, data + off, len, now);
    off += len;
    drain(c);
    sn_core_tick(c, now);
    drain(c);
  }
  sn_core_closed(c, 7, now + 1);
  drain(c);
  sn_core_free(c);
  return 0;
}
