/* fuzz_stun.c - libFuzzer target for the super node's STUN responder
 * (nat/stun_server.h), the one parser any UDP sender reaches.
 *
 * The first input byte picks the source (IPv4, IPv6, IPv4-mapped IPv6, or a
 * bad one) and the size of the output buffer; the rest is the datagram. The
 * answer must fit the buffer exactly allotted (ASan sees a write past it),
 * stay within the documented bounds (never more than 56 bytes over the
 * request, never over STUN_SERVER_MAX_RESPONSE), echo the transaction id,
 * be a STUN response, and come out the same when asked again.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stun_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  uint8_t pick = data[0];
  const uint8_t *req = data + 1;
  size_t len = size - 1;

  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t sl;
  switch (pick & 3) {
  case 0: {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(40000);
    inet_pton(AF_INET, "198.51.100.7", &s4->sin_addr);
    sl = sizeof *s4;
    break;
  }
  case 1:
  case 2: {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(40001);
    inet_pton(AF_INET6, (pick & 3) == 1 ? "2001:db8::7" : "::ffff:203.0.113.9", &s6->sin6_addr);
    sl = sizeof *s6;
    break;
  }
  default: /* port 0, or a truncated address */
    ss.ss_family = AF_INET;
    sl = (pick & 4) ? sizeof(struct sockaddr_in) : 2;
    break;
  }

  /* An exactly sized heap buffer: too small for some answers on purpose. */
  size_t cap = (pick & 0x80) ? STUN_SERVER_MAX_RESPONSE : (size_t)(pick >> 3) * 4;
  uint8_t *out = malloc(cap ? cap : 1);
  size_t n = stun_server_answer(req, len, (struct sockaddr *)&ss, sl, out, cap);
  if (n > cap || n > STUN_SERVER_MAX_RESPONSE)
    abort();
  if (n > 0) {
    if (len < 20 || n < 20 || n > len + 56)
      abort();
    /* a response (class bits 0x0110 set to success or error) ... */
    uint16_t type = (uint16_t)(out[0] << 8 | out[1]);
    if ((type & 0x0110) != 0x0100 && (type & 0x0110) != 0x0110)
      abort();
    /* ... with the request's transaction id (and cookie, if any) */
    if (memcmp(out + 4, req + 4, 16) != 0)
      abort();
    /* ... whose length field covers exactly the attributes */
    if ((size_t)(out[2] << 8 | out[3]) + 20 != n)
      abort();
    uint8_t *again = malloc(cap);
    if (stun_server_answer(req, len, (struct sockaddr *)&ss, sl, again, cap) != n ||
        memcmp(again, out, n) != 0)
      abort(); /* stateless: the same question, the same answer */
    free(again);
  }
  free(out);
  return 0;
}
