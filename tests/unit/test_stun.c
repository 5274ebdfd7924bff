/* test_stun.c - the STUN binding responder (nat/stun_server.c) and its
 * UDP shell (nat/stun_service.c).
 *
 * Requests come from three sources: libnice's own client API (RFC 5389 and
 * RFC 3489 agents, as a leaf's libnice sends them), hand-written bytes (the
 * RFC 5769 test vectors, the exact requests Debian's `stun` client sends),
 * and a deterministic generator of hostile inputs. Responses are checked by
 * hand-parsing the bytes, and where possible by libnice's client agent too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <gio/gio.h>
#include <netinet/in.h>
#include <stun/stunagent.h>
#include <stun/stunmessage.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "stun_limit.h"
#include "stun_server.h"
#include "stun_service.h"

/* RFC 5769 section 2.2/2.3: transaction id and mapped addresses. */
static const uint8_t rfc5769_txid[12] = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
                                         0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};

/* RFC 5769 section 2.1: a sample ICE connectivity check (SOFTWARE, PRIORITY,
 * ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY, FINGERPRINT). PRIORITY
 * (0x0024) is comprehension-required and unknown to a STUN server. */
static const uint8_t rfc5769_request[] = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf};

/* What Debian's stun-client 0.97 sends (captured): RFC 3489 binding
 * requests with CHANGE-REQUEST 0 (test I), 4 (change IP), 2 (change port). */
static const uint8_t vovida_test1[] = {0x00, 0x01, 0x00, 0x08, 0x01, 0x66, 0xfc, 0x42, 0xab, 0x81,
                                       0xf5, 0x2e, 0xd6, 0x1c, 0x2b, 0x01, 0x3b, 0x19, 0xd1, 0x33,
                                       0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00};
static const uint8_t vovida_change_ip[] = {
    0x00, 0x01, 0x00, 0x08, 0x02, 0xbe, 0x48, 0x66, 0xdc, 0x77, 0xb7, 0x1a, 0xb2, 0xee,
    0xc3, 0x1c, 0xfa, 0x7f, 0x63, 0x7e, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04};
static const uint8_t vovida_change_port[] = {
    0x00, 0x01, 0x00, 0x08, 0x03, 0xf0, 0xcc, 0x75, 0x5e, 0x75, 0x5b, 0x0d, 0x6a, 0xa8,
    0xaf, 0x5f, 0x2f, 0xc5, 0x5f, 0x69, 0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02};

static const uint16_t client_known[] = {
    STUN_ATTRIBUTE_MAPPED_ADDRESS, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, STUN_ATTRIBUTE_ERROR_CODE,
    STUN_ATTRIBUTE_UNKNOWN_ATTRIBUTES, 0};

/* --- helpers ------------------------------------------------------------------ */

typedef struct {
  struct sockaddr_storage ss;
  socklen_t len;
} Addr;

static Addr addr4(const char *ip, uint16_t port)
{
  Addr a;
  memset(&a, 0, sizeof a);
  struct sockaddr_in *in = (struct sockaddr_in *)&a.ss;
  in->sin_family = AF_INET;
  in->sin_port = htons(port);
  assert_int_equal(inet_pton(AF_INET, ip, &in->sin_addr), 1);
  a.len = sizeof *in;
  return a;
}

static Addr addr6(const char *ip, uint16_t port)
{
  Addr a;
  memset(&a, 0, sizeof a);
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a.ss;
  in6->sin6_family = AF_INET6;
  in6->sin6_port = htons(port);
  assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
  a.len = sizeof *in6;
  return a;
}

static uint16_t rd16(const uint8_t *p)
{
  return (uint16_t)(p[0] << 8 | p[1]);
}

/* Answers req from a, in an out buffer exactly outcap long on the heap (so
 * ASan sees any write past it), and copies the answer to resp. */
static size_t answer(const uint8_t *req, size_t len, const Addr *a, uint8_t *resp, size_t outcap)
{
  /* The request too lives in a buffer of exactly len bytes. */
  uint8_t *in = malloc(len ? len : 1);
  uint8_t *out = malloc(outcap ? outcap : 1);
  assert_non_null(in);
  assert_non_null(out);
  if (len)
    memcpy(in, req, len);
  size_t n = stun_server_answer(in, len, (const struct sockaddr *)&a->ss, a->len, out, outcap);
  assert_true(n <= outcap);
  if (n)
    memcpy(resp, out, n);
  free(in);
  free(out);
  return n;
}

/* Finds attribute `type` in a well-formed message; NULL if absent. */
static const uint8_t *find_attr(const uint8_t *msg, size_t len, uint16_t type, uint16_t *alen)
{
  assert_true(len >= 20);
  assert_int_equal(rd16(msg + 2) + 20u, len);
  size_t off = 20;
  while (off + 4 <= len) {
    uint16_t t = rd16(msg + off), l = rd16(msg + off + 2);
    assert_true(off + 4 + l <= len);
    if (t == type) {
      *alen = l;
      return msg + off + 4;
    }
    off += 4 + ((l + 3u) & ~3u);
  }
  assert_int_equal(off, len);
  return NULL;
}

/* Checks a success response's header against its request: type 0x0101,
 * exact length, the whole 16-byte id (cookie included) echoed. */
static void check_success_header(const uint8_t *req, const uint8_t *resp, size_t n)
{
  assert_true(n >= 20 && n % 4 == 0);
  assert_int_equal(rd16(resp), 0x0101);
  assert_int_equal(rd16(resp + 2) + 20u, n);
  assert_memory_equal(resp + 4, req + 4, 16);
}

/* A request from libnice's client API; the agent remembers it. */
static size_t libnice_request(StunAgent *agent, StunCompatibility compat, StunAgentUsageFlags flags,
                              uint8_t *buf, size_t cap)
{
  StunMessage msg;
  stun_agent_init(agent, client_known, compat, flags);
  assert_true(stun_agent_init_request(agent, &msg, buf, cap, STUN_BINDING));
  size_t n = stun_agent_finish_message(agent, &msg, NULL, 0);
  assert_true(n >= 20);
  return n;
}

static void assert_same_addr(const struct sockaddr_storage *got, const Addr *want)
{
  assert_int_equal(got->ss_family, want->ss.ss_family);
  if (got->ss_family == AF_INET) {
    const struct sockaddr_in *g = (const struct sockaddr_in *)got,
                             *w = (const struct sockaddr_in *)&want->ss;
    assert_int_equal(g->sin_port, w->sin_port);
    assert_memory_equal(&g->sin_addr, &w->sin_addr, 4);
  } else {
    const struct sockaddr_in6 *g = (const struct sockaddr_in6 *)got,
                              *w = (const struct sockaddr_in6 *)&want->ss;
    assert_int_equal(g->sin6_port, w->sin6_port);
    assert_memory_equal(&g->sin6_addr, &w->sin6_addr, 16);
  }
}

/* --- RFC 5389: exact bytes from the RFC 5769 vectors ------------------------------ */

static void rfc5769_request_header(uint8_t req[20])
{
  static const uint8_t head[8] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
  memcpy(req, head, 8);
  memcpy(req + 8, rfc5769_txid, 12);
}

static void test_rfc5389_ipv4_exact(void **state)
{
  (void)state;
  uint8_t req[20], resp[STUN_SERVER_MAX_RESPONSE];
  rfc5769_request_header(req);
  Addr a = addr4("192.0.2.1", 32853);
  size_t n = answer(req, sizeof req, &a, resp, sizeof resp);
  /* RFC 5769 section 2.2: XOR-MAPPED-ADDRESS of 192.0.2.1 port 32853. */
  static const uint8_t xma[] = {0x00, 0x20, 0x00, 0x08, 0x00, 0x01,
                                0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43};
  assert_int_equal(n, 20 + sizeof xma);
  check_success_header(req, resp, n);
  assert_memory_equal(resp + 20, xma, sizeof xma);
}

static void test_rfc5389_ipv6_exact(void **state)
{
  (void)state;
  uint8_t req[20], resp[STUN_SERVER_MAX_RESPONSE];
  rfc5769_request_header(req);
  Addr a = addr6("2001:db8:1234:5678:11:2233:4455:6677", 32853);
  size_t n = answer(req, sizeof req, &a, resp, sizeof resp);
  /* RFC 5769 section 2.3. */
  static const uint8_t xma[] = {0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47,
                                0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79,
                                0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9};
  assert_int_equal(n, 20 + sizeof xma);
  check_success_header(req, resp, n);
  assert_memory_equal(resp + 20, xma, sizeof xma);
}

/* --- RFC 5389 and RFC 3489 requests from libnice's client agent --------------------- */

static void libnice_roundtrip(StunCompatibility compat, StunAgentUsageFlags flags, const Addr *from)
{
  StunAgent client;
  StunMessage resp_msg;
  uint8_t req[256], resp[STUN_SERVER_MAX_RESPONSE];
  size_t len = libnice_request(&client, compat, flags, req, sizeof req);
  size_t n = answer(req, len, from, resp, sizeof resp);
  check_success_header(req, resp, n);

  /* libnice's own client accepts it: matching transaction, FINGERPRINT
   * present and right when its agent asks for one. */
  assert_int_equal(stun_agent_validate(&client, &resp_msg, resp, n, NULL, NULL),
                   STUN_VALIDATION_SUCCESS);
  assert_int_equal(stun_message_get_class(&resp_msg), STUN_RESPONSE);
  assert_int_equal(stun_message_get_method(&resp_msg), STUN_BINDING);

  struct sockaddr_storage got;
  socklen_t gotlen = sizeof got;
  uint16_t alen;
  if (compat == STUN_COMPATIBILITY_RFC5389) {
    assert_int_equal(
        stun_message_find_xor_addr(&resp_msg, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, &got, &gotlen),
        STUN_MESSAGE_RETURN_SUCCESS);
    assert_same_addr(&got, from);
    assert_int_equal(find_attr(resp, n, STUN_ATTRIBUTE_FINGERPRINT, &alen) != NULL,
                     (flags & STUN_AGENT_USAGE_USE_FINGERPRINT) != 0);
  } else {
    /* RFC 3489: MAPPED-ADDRESS, in the clear; no RFC 5389-only attributes. */
    assert_int_equal(
        stun_message_find_addr(&resp_msg, STUN_ATTRIBUTE_MAPPED_ADDRESS, &got, &gotlen),
        STUN_MESSAGE_RETURN_SUCCESS);
    assert_same_addr(&got, from);
    assert_null(find_attr(resp, n, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, &alen));
    assert_null(find_attr(resp, n, STUN_ATTRIBUTE_FINGERPRINT, &alen));
  }
  /* Never much bigger than the request (reflection). */
  assert_true(n <= len + 40);
}

static void test_libnice_rfc5389(void **state)
{
  (void)state;
  Addr v4 = addr4("203.0.113.7", 61000), v6 = addr6("2001:db8::42", 3478);
  libnice_roundtrip(STUN_COMPATIBILITY_RFC5389, 0, &v4);
  libnice_roundtrip(STUN_COMPATIBILITY_RFC5389, 0, &v6);
  libnice_roundtrip(STUN_COMPATIBILITY_RFC5389, STUN_AGENT_USAGE_USE_FINGERPRINT, &v4);
  libnice_roundtrip(STUN_COMPATIBILITY_RFC5389, STUN_AGENT_USAGE_USE_FINGERPRINT, &v6);
  libnice_roundtrip(STUN_COMPATIBILITY_RFC5389,
                    STUN_AGENT_USAGE_USE_FINGERPRINT | STUN_AGENT_USAGE_ADD_SOFTWARE, &v4);
}

static void test_libnice_rfc3489(void **state)
{
  (void)state;
  Addr v4 = addr4("198.51.100.9", 1), v6 = addr6("fe80::1:2:3:4", 65535);
  libnice_roundtrip(STUN_COMPATIBILITY_RFC3489, 0, &v4);
  libnice_roundtrip(STUN_COMPATIBILITY_RFC3489, 0, &v6);
}

/* A classic request by hand: the whole 16-byte transaction id comes back,
 * with MAPPED-ADDRESS (RFC 3489 section 11.2.1) and nothing else. */
static void test_rfc3489_exact(void **state)
{
  (void)state;
  uint8_t req[20] = {0x00, 0x01, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 1,  2,
                     3,    4,    5,    6,    7,    8,    9,    10,   11, 12};
  uint8_t resp[STUN_SERVER_MAX_RESPONSE];
  Addr a = addr4("10.20.30.40", 0x1234);
  size_t n = answer(req, sizeof req, &a, resp, sizeof resp);
  static const uint8_t ma[] = {0x00, 0x01, 0x00, 0x08, 0x00, 0x01, 0x12, 0x34, 10, 20, 30, 40};
  assert_int_equal(n, 20 + sizeof ma);
  check_success_header(req, resp, n);
  assert_memory_equal(resp + 20, ma, sizeof ma);
}

/* Debian's stun client: test I is answered; "answer from another IP/port"
 * gets silence, not a reply from this address that would look like one. */
static void test_vovida_client(void **state)
{
  (void)state;
  uint8_t resp[STUN_SERVER_MAX_RESPONSE];
  uint16_t alen;
  Addr a = addr4("127.0.0.1", 32562);
  size_t n = answer(vovida_test1, sizeof vovida_test1, &a, resp, sizeof resp);
  check_success_header(vovida_test1, resp, n);
  const uint8_t *ma = find_attr(resp, n, STUN_ATTRIBUTE_MAPPED_ADDRESS, &alen);
  assert_non_null(ma);
  assert_int_equal(alen, 8);
  static const uint8_t want[] = {0x00, 0x01, 0x7f, 0x32, 127, 0, 0, 1};
  assert_memory_equal(ma, want, sizeof want);
  assert_int_equal(answer(vovida_change_ip, sizeof vovida_change_ip, &a, resp, sizeof resp), 0);
  assert_int_equal(answer(vovida_change_port, sizeof vovida_change_port, &a, resp, sizeof resp), 0);
}

/* A dual-stack socket reports IPv4 senders as ::ffff:a.b.c.d: they learn
 * their IPv4 address. */
static void test_v4_mapped_source(void **state)
{
  (void)state;
  uint8_t req[20], resp[STUN_SERVER_MAX_RESPONSE];
  rfc5769_request_header(req);
  Addr mapped = addr6("::ffff:192.0.2.1", 32853);
  size_t n = answer(req, sizeof req, &mapped, resp, sizeof resp);
  static const uint8_t xma[] = {0x00, 0x20, 0x00, 0x08, 0x00, 0x01,
                                0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43};
  assert_int_equal(n, 20 + sizeof xma);
  assert_memory_equal(resp + 20, xma, sizeof xma);
}

/* --- errors: 420 Unknown Attribute ------------------------------------------------- */

/* Checks a 420 response and that it lists exactly `attr`. */
static void check_420(const uint8_t *req, size_t len, const uint8_t *resp, size_t n, uint16_t attr)
{
  uint16_t alen;
  assert_true(n >= 20 && n <= len + 40);
  assert_int_equal(rd16(resp), 0x0111); /* Binding error response */
  assert_int_equal(rd16(resp + 2) + 20u, n);
  assert_memory_equal(resp + 4, req + 4, 16);
  const uint8_t *ec = find_attr(resp, n, STUN_ATTRIBUTE_ERROR_CODE, &alen);
  assert_non_null(ec);
  assert_true(alen >= 4);
  assert_int_equal((ec[2] & 7) * 100 + ec[3], 420);
  const uint8_t *ua = find_attr(resp, n, STUN_ATTRIBUTE_UNKNOWN_ATTRIBUTES, &alen);
  assert_non_null(ua);
  assert_true(alen >= 2);
  assert_int_equal(rd16(ua), attr);
  assert_null(find_attr(resp, n, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, &alen));
  assert_null(find_attr(resp, n, STUN_ATTRIBUTE_MAPPED_ADDRESS, &alen));
}

/* req (len bytes, no FINGERPRINT) with a 48-byte comprehension-optional
 * SOFTWARE attribute appended, into out (at least len + 52 bytes); returns
 * the new length. Large enough for any 420 it earns. */
static size_t pad_request(const uint8_t *req, size_t len, uint8_t *out)
{
  memcpy(out, req, len);
  static const uint8_t hdr[4] = {0x80, 0x22, 0x00, 48};
  memcpy(out + len, hdr, 4);
  memset(out + len + 4, 'p', 48);
  size_t n = len + 52;
  out[2] = (uint8_t)((n - 20) >> 8);
  out[3] = (uint8_t)(n - 20);
  return n;
}

/* Every answer stun_server_answer gives: at most 32 bytes more than the
 * request for a success, never more than the request for an error. */
static void test_amplification(void **state)
{
  (void)state;
  uint8_t resp[STUN_SERVER_MAX_RESPONSE];
  Addr a4 = addr4("192.0.2.1", 32853), a6 = addr6("2001:db8::1", 32853);
  uint8_t bare[20];
  rfc5769_request_header(bare);
  size_t n = answer(bare, sizeof bare, &a6, resp, sizeof resp);
  assert_int_equal(n, 44); /* the worst case: 2.2x, and what honest clients send */
  bare[4] = 0x99;          /* no magic cookie: classic RFC 3489, as libnice's */
  n = answer(bare, sizeof bare, &a4, resp, sizeof resp);
  assert_int_equal(n, 32);
  /* Unknown comprehension-required attributes, from 1 to 40 of them, each
   * 4 bytes: no 420 larger than what asked for it. */
  for (int k = 1; k <= 40; k++) {
    uint8_t req[20 + 4 * 40];
    rfc5769_request_header(req);
    size_t len = 20 + 4 * (size_t)k;
    req[2] = (uint8_t)((len - 20) >> 8);
    req[3] = (uint8_t)(len - 20);
    for (int i = 0; i < k; i++) {
      uint8_t *at = req + 20 + 4 * i;
      at[0] = 0x00;
      at[1] = (uint8_t)(0x30 + i); /* unknown, comprehension-required */
      at[2] = at[3] = 0;
    }
    n = answer(req, len, &a4, resp, sizeof resp);
    assert_true(n <= len);
  }
}

static void test_unknown_attribute(void **state)
{
  (void)state;
  uint8_t resp[STUN_SERVER_MAX_RESPONSE];
  Addr a = addr4("192.0.2.1", 32853);
  /* RFC 5769's connectivity check: PRIORITY is not ours; the FINGERPRINT is
   * valid, so the 420 carries one too. */
  size_t n = answer(rfc5769_request, sizeof rfc5769_request, &a, resp, sizeof resp);
  check_420(rfc5769_request, sizeof rfc5769_request, resp, n, 0x0024);
  uint16_t alen;
  assert_non_null(find_attr(resp, n, STUN_ATTRIBUTE_FINGERPRINT, &alen));

  /* RESPONSE-ADDRESS in a classic request is not honoured (it would aim the
   * answer at a third party): 420, to the sender. */
  uint8_t r3489[32] = {0x00, 0x01, 0x00, 0x0c, 9,    9,    9,   9, 8, 8,    8,
                       8,    7,    7,    7,    7,    6,    6,   6, 6, 0x00, 0x02,
                       0x00, 0x08, 0x00, 0x01, 0x00, 0x35, 192, 0, 2, 99};
  n = answer(r3489, sizeof r3489, &a, resp, sizeof resp);
  assert_int_equal(n, 0); /* the 420 would be larger than these 32 bytes */
  uint8_t big[128];
  n = pad_request(r3489, sizeof r3489, big);
  size_t m = answer(big, n, &a, resp, sizeof resp);
  check_420(big, n, resp, m, 0x0002);
  assert_true(m <= n);

  /* RFC 5389 request whose CHANGE-REQUEST asks for another address: 420
   * (RFC 5780 section 7.2); with no flag set it is a plain request. */
  uint8_t change[28] = {0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 1,  2,
                        3,    4,    5,    6,    7,    8,    9,    10,   11, 12,
                        0x00, 0x03, 0x00, 0x04, 0x00, 0x00, 0x00, 0x06};
  n = answer(change, sizeof change, &a, resp, sizeof resp);
  assert_int_equal(n, 0);
  n = pad_request(change, sizeof change, big);
  m = answer(big, n, &a, resp, sizeof resp);
  check_420(big, n, resp, m, 0x0003);
  assert_true(m <= n);
  change[27] = 0;
  n = answer(change, sizeof change, &a, resp, sizeof resp);
  check_success_header(change, resp, n);

  /* Comprehension-optional attributes (>= 0x8000) are simply ignored. */
  uint8_t optional[28] = {0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 1,  2,
                          3,    4,    5,    6,    7,    8,    9,    10,   11, 12,
                          0x80, 0x22, 0x00, 0x03, 'a',  'b',  'c',  0};
  n = answer(optional, sizeof optional, &a, resp, sizeof resp);
  check_success_header(optional, resp, n);
}

/* Credentials are not checked: the answer tells the sender only its own
 * address. */
static void test_credentials_ignored(void **state)
{
  (void)state;
  StunAgent client;
  StunMessage msg;
  uint8_t req[256], resp[STUN_SERVER_MAX_RESPONSE];
  uint8_t pwd[] = "secret";
  stun_agent_init(&client, client_known, STUN_COMPATIBILITY_RFC5389,
                  STUN_AGENT_USAGE_SHORT_TERM_CREDENTIALS | STUN_AGENT_USAGE_USE_FINGERPRINT);
  assert_true(stun_agent_init_request(&client, &msg, req, sizeof req, STUN_BINDING));
  assert_int_equal(stun_message_append_string(&msg, STUN_ATTRIBUTE_USERNAME, "alice:bob"),
                   STUN_MESSAGE_RETURN_SUCCESS);
  size_t len = stun_agent_finish_message(&client, &msg, pwd, 6);
  assert_true(len > 20);
  Addr a = addr4("192.0.2.77", 4000);
  size_t n = answer(req, len, &a, resp, sizeof resp);
  check_success_header(req, resp, n);
  uint16_t alen;
  assert_non_null(find_attr(resp, n, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, &alen));
  assert_null(find_attr(resp, n, STUN_ATTRIBUTE_MESSAGE_INTEGRITY, &alen));
}

/* --- drops ---------------------------------------------------------------------------- */

static size_t answer4(const uint8_t *req, size_t len)
{
  uint8_t resp[STUN_SERVER_MAX_RESPONSE];
  Addr a = addr4("192.0.2.1", 32853);
  return answer(req, len, &a, resp, sizeof resp);
}

static void set16(uint8_t *p, uint16_t v)
{
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void test_drops_other_messages(void **state)
{
  (void)state;
  uint8_t m[20];
  rfc5769_request_header(m);
  assert_int_not_equal(answer4(m, sizeof m), 0);
  /* Indications, responses, errors, other methods, non-STUN top bits. */
  static const uint16_t types[] = {0x0011, 0x0101, 0x0111, 0x0002, 0x0003, 0x0004, 0x0008,
                                   0x0009, 0x0016, 0x0017, 0x0115, 0x0201, 0x0021, 0x4001,
                                   0x8001, 0xc001, 0x0000, 0xffff, 0x3eef, 0x0081};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    set16(m, types[i]);
    assert_int_equal(answer4(m, sizeof m), 0);
    m[4] = 0; /* and in RFC 3489 form */
    assert_int_equal(answer4(m, sizeof m), 0);
    m[4] = 0x21;
  }
}

static void test_drops_malformed(void **state)
{
  (void)state;
  uint8_t m[600];
  memset(m, 0, sizeof m);
  rfc5769_request_header(m);

  /* Length field not matching the datagram, either way. */
  set16(m + 2, 4);
  assert_int_equal(answer4(m, 20), 0);
  set16(m + 2, 0);
  assert_int_equal(answer4(m, 24), 0); /* trailing bytes */
  /* Not a multiple of 4. */
  set16(m + 2, 3);
  m[20] = 0x80, m[21] = 0x22;
  assert_int_equal(answer4(m, 23), 0);
  /* Attribute running past the end, and a torn attribute header. */
  set16(m + 2, 8);
  set16(m + 20, 0x8022);
  set16(m + 22, 5);
  assert_int_equal(answer4(m, 28), 0);
  set16(m + 22, 0xffff);
  assert_int_equal(answer4(m, 28), 0);
  set16(m + 22, 4);
  assert_int_not_equal(answer4(m, 28), 0);

  /* Size limit: 548 bytes answered, 552 dropped. */
  set16(m + 2, 528);
  set16(m + 22, 524);
  assert_int_not_equal(answer4(m, 548), 0);
  set16(m + 2, 532);
  set16(m + 22, 528);
  assert_int_equal(answer4(m, 552), 0);

  /* FINGERPRINT: wrong CRC, wrong size, or not last. */
  StunAgent client;
  uint8_t req[128];
  size_t len = libnice_request(&client, STUN_COMPATIBILITY_RFC5389,
                               STUN_AGENT_USAGE_USE_FINGERPRINT, req, sizeof req);
  assert_int_not_equal(answer4(req, len), 0);
  req[len - 1] ^= 1;
  assert_int_equal(answer4(req, len), 0);
  req[len - 1] ^= 1;
  req[12] ^= 1; /* transaction id covered by the CRC */
  assert_int_equal(answer4(req, len), 0);
  req[12] ^= 1;
  /* A SOFTWARE attribute after FINGERPRINT. */
  memcpy(m, req, len);
  set16(m + len, 0x8022);
  set16(m + len + 2, 4);
  memcpy(m + len + 4, "abcd", 4);
  set16(m + 2, (uint16_t)(len + 8 - 20));
  assert_int_equal(answer4(m, len + 8), 0);
  /* FINGERPRINT of 8 bytes. */
  memcpy(m, req, len);
  set16(m + len - 6, 8);
  set16(m + 2, (uint16_t)(len + 4 - 20));
  assert_int_equal(answer4(m, len + 4), 0);
  /* Bad CHANGE-REQUEST size. */
  uint8_t change[24] = {0x00, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42, 1,    2,    3,    4,
                        5,    6,    7,    8,    9,    10,   11,   12,   0x00, 0x03, 0x00, 0x00};
  assert_int_equal(answer4(change, sizeof change), 0);

  /* Nothing, and NULLs. */
  uint8_t resp[64];
  Addr a = addr4("192.0.2.1", 1);
  assert_int_equal(stun_server_answer(NULL, 20, (struct sockaddr *)&a.ss, a.len, resp, sizeof resp),
                   0);
  assert_int_equal(stun_server_answer(m, 0, (struct sockaddr *)&a.ss, a.len, resp, sizeof resp), 0);
  rfc5769_request_header(m);
  assert_int_equal(stun_server_answer(m, 20, (struct sockaddr *)&a.ss, a.len, NULL, 64), 0);
}

/* Every prefix of every valid request is dropped (and read only within its
 * bounds: answer() copies it to a heap buffer of exactly that size). */
static void test_every_prefix(void **state)
{
  (void)state;
  StunAgent client;
  uint8_t reqs[6][600];
  size_t lens[6];
  lens[0] = libnice_request(&client, STUN_COMPATIBILITY_RFC5389, STUN_AGENT_USAGE_USE_FINGERPRINT,
                            reqs[0], 600);
  lens[1] = libnice_request(&client, STUN_COMPATIBILITY_RFC3489, 0, reqs[1], 600);
  memcpy(reqs[2], rfc5769_request, lens[2] = sizeof rfc5769_request);
  memcpy(reqs[3], vovida_test1, lens[3] = sizeof vovida_test1);
  rfc5769_request_header(reqs[4]);
  lens[4] = 20;
  memset(reqs[5], 0, 548);
  rfc5769_request_header(reqs[5]);
  set16(reqs[5] + 2, 528);
  set16(reqs[5] + 20, 0x8022);
  set16(reqs[5] + 22, 524);
  lens[5] = 548;
  for (size_t i = 0; i < 6; i++) {
    assert_int_not_equal(answer4(reqs[i], lens[i]), 0);
    for (size_t p = 0; p < lens[i]; p++)
      assert_int_equal(answer4(reqs[i], p), 0);
  }
}

/* Deterministic xorshift: the same hostile inputs on every run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* An answered input must look like an answer to it. */
static void check_any_answer(const uint8_t *req, size_t len, const uint8_t *resp, size_t n)
{
  assert_true(n >= 20 && n <= len + 40 && n % 4 == 0);
  assert_true(rd16(resp) == 0x0101 || rd16(resp) == 0x0111);
  assert_int_equal(rd16(resp + 2) + 20u, n);
  assert_memory_equal(resp + 4, req + 4, 16);
  assert_int_equal(rd16(req), 0x0001);
}

static void test_hostile_inputs(void **state)
{
  (void)state;
  uint8_t m[STUN_SERVER_MAX_REQUEST + 64], resp[STUN_SERVER_MAX_RESPONSE];
  Addr a4 = addr4("192.0.2.1", 32853), a6 = addr6("2001:db8::1", 9);
  size_t answered = 0;
  for (int iter = 0; iter < 200000; iter++) {
    size_t len = (size_t)(rnd() % sizeof m);
    for (size_t i = 0; i < len; i++)
      m[i] = (uint8_t)rnd();
    /* Most inputs get a plausible header so the walk goes deeper. */
    uint64_t shape = rnd();
    if ((shape & 3) != 0 && len >= 20) {
      len &= ~(size_t)3;
      set16(m, (shape & 4) ? 0x0001 : (uint16_t)(rnd() & 0x3fff));
      set16(m + 2, (uint16_t)(len - 20));
      if (shape & 8)
        memcpy(m + 4, "\x21\x12\xa4\x42", 4);
      /* Attributes with plausible lengths. */
      for (size_t off = 20; (shape & 16) && off + 4 <= len;) {
        static const uint16_t types[] = {0x0001, 0x0003, 0x0006, 0x0008,
                                         0x0024, 0x8022, 0x8028, 0x0020};
        size_t room = len - off - 4;
        size_t alen = (rnd() % 4 == 0) ? rnd() % 0x10000 : (room ? rnd() % (room + 1) : 0);
        set16(m + off, types[rnd() % 8]);
        set16(m + off + 2, (uint16_t)alen);
        off += 4 + ((alen + 3) & ~(size_t)3);
      }
    }
    const Addr *a = (shape & 32) ? &a6 : &a4;
    size_t n = answer(m, len, a, resp, sizeof resp);
    if (n) {
      answered++;
      check_any_answer(m, len, resp, n);
    }
  }
  assert_true(answered > 0);

  /* Bit flips of valid requests. */
  StunAgent client;
  uint8_t req[128];
  size_t len = libnice_request(&client, STUN_COMPATIBILITY_RFC5389,
                               STUN_AGENT_USAGE_USE_FINGERPRINT, req, sizeof req);
  for (size_t bit = 0; bit < len * 8; bit++) {
    memcpy(m, req, len);
    m[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    size_t n = answer(m, len, &a4, resp, sizeof resp);
    if (n)
      check_any_answer(m, len, resp, n);
  }
}

static void test_bad_sources(void **state)
{
  (void)state;
  uint8_t req[20], out[64];
  rfc5769_request_header(req);
  Addr a = addr4("192.0.2.1", 0); /* port 0 */
  assert_int_equal(stun_server_answer(req, 20, (struct sockaddr *)&a.ss, a.len, out, sizeof out),
                   0);
  a = addr6("2001:db8::1", 0);
  assert_int_equal(stun_server_answer(req, 20, (struct sockaddr *)&a.ss, a.len, out, sizeof out),
                   0);
  a = addr4("192.0.2.1", 5);
  assert_int_not_equal(
      stun_server_answer(req, 20, (struct sockaddr *)&a.ss, a.len, out, sizeof out), 0);
  assert_int_equal(
      stun_server_answer(req, 20, (struct sockaddr *)&a.ss, a.len - 1, out, sizeof out), 0);
  assert_int_equal(stun_server_answer(req, 20, (struct sockaddr *)&a.ss, 0, out, sizeof out), 0);
  assert_int_equal(stun_server_answer(req, 20, NULL, a.len, out, sizeof out), 0);
  a = addr6("2001:db8::1", 5);
  assert_int_equal(stun_server_answer(req, 20, (struct sockaddr *)&a.ss, sizeof(struct sockaddr_in),
                                      out, sizeof out),
                   0);
  struct sockaddr_un un = {0};
  un.sun_family = AF_UNIX;
  assert_int_equal(stun_server_answer(req, 20, (struct sockaddr *)&un, sizeof un, out, sizeof out),
                   0);
}

/* An out buffer too small for the answer yields 0, and nothing is written
 * past it (answer() allocates exactly outcap bytes). */
static void test_small_out_buffer(void **state)
{
  (void)state;
  uint8_t req[20], resp[STUN_SERVER_MAX_RESPONSE];
  rfc5769_request_header(req);
  Addr a = addr6("2001:db8::1", 9);
  size_t full = answer(req, 20, &a, resp, sizeof resp);
  assert_int_equal(full, 44);
  for (size_t cap = 0; cap < full; cap++)
    assert_int_equal(answer(req, 20, &a, resp, cap), 0);
  assert_int_equal(answer(req, 20, &a, resp, full), full);
  for (size_t cap = 0; cap < sizeof rfc5769_request + 40; cap++) {
    size_t n = answer(rfc5769_request, sizeof rfc5769_request, &a, resp, cap);
    assert_true(n == 0 || n <= cap);
  }
}

/* --- the UDP shell --------------------------------------------------------------------- */

static void pump(GMainContext *ctx, int ms)
{
  gint64 end = g_get_monotonic_time() + ms * 1000;
  while (g_get_monotonic_time() < end)
    if (!g_main_context_iteration(ctx, FALSE))
      g_usleep(1000);
}

static void test_service(void **state)
{
  (void)state;
  GMainContext *ctx = g_main_context_new();
  GError *err = NULL;
  assert_null(stun_service_new("not an address", ctx, &err));
  assert_non_null(err);
  g_clear_error(&err);
  assert_null(stun_service_new("localhost:3478", ctx, &err)); /* numeric only */
  g_clear_error(&err);
  stun_service_free(NULL);

  StunService *s = stun_service_new("127.0.0.1:0", ctx, &err);
  assert_non_null(s);
  assert_int_not_equal(stun_service_port(s), 0);
  /* The port is taken: a second service cannot share it. */
  char hp[64];
  snprintf(hp, sizeof hp, "127.0.0.1:%u", stun_service_port(s));
  assert_null(stun_service_new(hp, ctx, &err));
  g_clear_error(&err);

  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  assert_true(fd >= 0);
  Addr srv = addr4("127.0.0.1", stun_service_port(s));
  assert_int_equal(connect(fd, (struct sockaddr *)&srv.ss, srv.len), 0);
  struct sockaddr_in me;
  socklen_t melen = sizeof me;
  assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &melen), 0);

  /* Garbage, then a request: only the request is answered. */
  assert_int_equal(send(fd, "hello", 5, 0), 5);
  uint8_t big[1400] = {0};
  assert_int_equal(send(fd, big, sizeof big, 0), (ssize_t)sizeof big);
  uint8_t req[20], resp[STUN_SERVER_MAX_RESPONSE];
  rfc5769_request_header(req);
  assert_int_equal(send(fd, req, sizeof req, 0), 20);
  pump(ctx, 50);
  ssize_t n = recv(fd, resp, sizeof resp, MSG_DONTWAIT);
  assert_int_equal(n, 32);
  check_success_header(req, resp, (size_t)n);
  uint16_t alen;
  const uint8_t *xma = find_attr(resp, (size_t)n, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, &alen);
  assert_non_null(xma);
  assert_int_equal(rd16(xma + 2) ^ 0x2112, ntohs(me.sin_port));
  assert_int_equal(stun_service_requests(s), 1);
  assert_int_equal(stun_service_dropped(s), 2);

  /* A burst far over the limit: the answers stop near the bucket size. */
  int sent = 0;
  for (int i = 0; i < 3000; i++) {
    if (send(fd, req, sizeof req, 0) == 20)
      sent++;
    if (i % 100 == 99)
      pump(ctx, 1); /* keep the socket buffers from overflowing */
  }
  pump(ctx, 50);
  uint64_t answered = stun_service_requests(s) - 1;
  assert_true(answered >= STUN_LIMIT_ADDR_BURST - 1);
  assert_true(answered < (uint64_t)sent);
  assert_true(stun_service_dropped(s) > 2);
  close(fd);
  stun_service_free(s);

  /* IPv6 (if this host has it). */
  s = stun_service_new("[::1]:0", ctx, &err);
  if (!s) {
    g_clear_error(&err);
  } else {
    fd = socket(AF_INET6, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    Addr srv6 = addr6("::1", stun_service_port(s));
    assert_int_equal(connect(fd, (struct sockaddr *)&srv6.ss, srv6.len), 0);
    assert_int_equal(send(fd, req, sizeof req, 0), 20);
    pump(ctx, 50);
    n = recv(fd, resp, sizeof resp, MSG_DONTWAIT);
    assert_int_equal(n, 44);
    check_success_header(req, resp, (size_t)n);
    close(fd);
    stun_service_free(s);
  }
  g_main_context_unref(ctx);
}

/* --- budgets (stun_limit.h), with a fake clock ---------------------------------- */

static int take_n(StunLimit *l, const Addr *a, int n, uint64_t now)
{
  int ok = 0;
  for (int i = 0; i < n; i++)
    ok += stun_limit_take(l, (const struct sockaddr *)&a->ss, a->len, now) == STUN_LIMIT_OK;
  return ok;
}

static void test_limit_per_source(void **state)
{
  (void)state;
  static const uint8_t key[16] = {1, 2, 3};
  StunLimit *l = stun_limit_new(key, 1000);
  Addr flooder = addr4("198.51.100.7", 4000), neighbour = addr4("198.51.100.8", 4000),
       other = addr4("203.0.113.9", 4000);
  /* One source gets its burst, then nothing until time passes... */
  assert_int_equal(take_n(l, &flooder, 1000, 1000), STUN_LIMIT_ADDR_BURST);
  assert_int_equal(stun_limit_take(l, (struct sockaddr *)&flooder.ss, flooder.len, 1000),
                   STUN_LIMIT_ADDR);
  /* ...while its neighbour and a stranger are answered as if nothing. */
  assert_int_equal(take_n(l, &neighbour, 5, 1000), 5);
  assert_int_equal(take_n(l, &other, 5, 1000), 5);
  /* Its rate: STUN_LIMIT_ADDR_RATE a second. */
  assert_int_equal(take_n(l, &flooder, 1000, 2000), STUN_LIMIT_ADDR_RATE);
  /* The source port is no way around it. */
  Addr again = addr4("198.51.100.7", 4001);
  assert_int_equal(take_n(l, &again, 10, 2000), 0);
  /* An IPv4-mapped IPv6 source is the same IPv4 source. */
  Addr mapped = addr6("::ffff:198.51.100.7", 4000);
  assert_int_equal(take_n(l, &mapped, 10, 2000), 0);

  /* A /24 shares STUN_LIMIT_PREFIX_BURST: many addresses of one prefix
   * cannot add up to more. */
  int got = 0;
  for (int i = 0; i < 200; i++) {
    char ip[32];
    snprintf(ip, sizeof ip, "192.0.2.%d", i);
    Addr x = addr4(ip, 4000);
    got += take_n(l, &x, 10, 3000);
  }
  assert_int_equal(got, STUN_LIMIT_PREFIX_BURST);
  /* Same for a /64. */
  got = 0;
  for (int i = 0; i < 200; i++) {
    char ip[64];
    snprintf(ip, sizeof ip, "2001:db8:0:1::%x", i + 1);
    Addr x = addr6(ip, 4000);
    got += take_n(l, &x, 10, 4000); /* a second on: the global bucket refilled */
  }
  assert_int_equal(got, STUN_LIMIT_PREFIX_BURST);
  Addr v6other = addr6("2001:db8:0:2::1", 4000);
  assert_int_equal(take_n(l, &v6other, 5, 4000), 5);
  stun_limit_free(l);
}

static void test_limit_global(void **state)
{
  (void)state;
  StunLimit *l = stun_limit_new(NULL, 0);
  /* Sources spread over many prefixes (a forger can write any): the
   * global budget holds, and a refused answer takes no one's tokens. */
  int got = 0;
  for (int i = 0; i < 5000; i++) {
    char ip[32];
    snprintf(ip, sizeof ip, "10.%d.%d.1", i / 256, i % 256);
    Addr x = addr4(ip, 4000);
    got += take_n(l, &x, 1, 0);
  }
  assert_int_equal(got, STUN_LIMIT_BURST);
  Addr x = addr4("10.200.0.1", 4000);
  assert_int_equal(stun_limit_take(l, (struct sockaddr *)&x.ss, x.len, 0), STUN_LIMIT_GLOBAL);
  /* A second later: STUN_LIMIT_RATE more. */
  got = 0;
  for (int i = 0; i < 5000; i++) {
    char ip[32];
    snprintf(ip, sizeof ip, "172.%d.%d.1", 16 + i / 256, i % 256);
    Addr y = addr4(ip, 4000);
    got += take_n(l, &y, 1, 1000);
  }
  assert_int_equal(got, STUN_LIMIT_BURST); /* refilled to the burst, no more */
  /* Not an address: refused. */
  struct sockaddr bad = {.sa_family = AF_UNIX};
  assert_int_equal(stun_limit_take(l, &bad, sizeof bad, 5000), STUN_LIMIT_BAD);
  stun_limit_free(NULL);
  stun_limit_free(l);
}

/* The real service: one source floods from 127.0.1.1, another asks now
 * and then from 127.0.0.1; the second is answered every time. */
static void test_service_fair(void **state)
{
  (void)state;
  GMainContext *ctx = g_main_context_new();
  GError *err = NULL;
  StunService *s = stun_service_new("127.0.0.1:0", ctx, &err);
  assert_non_null(s);
  Addr srv = addr4("127.0.0.1", stun_service_port(s));
  Addr from_flood = addr4("127.0.1.1", 0);
  int flood = socket(AF_INET, SOCK_DGRAM, 0), honest = socket(AF_INET, SOCK_DGRAM, 0);
  assert_int_equal(bind(flood, (struct sockaddr *)&from_flood.ss, from_flood.len), 0);
  assert_int_equal(connect(flood, (struct sockaddr *)&srv.ss, srv.len), 0);
  assert_int_equal(connect(honest, (struct sockaddr *)&srv.ss, srv.len), 0);
  uint8_t req[20], resp[STUN_SERVER_MAX_RESPONSE];
  rfc5769_request_header(req);
  int asked = 0, answered = 0, flood_answered = 0;
  for (int round = 0; round < 20; round++) {
    for (int i = 0; i < 200; i++) {
      if (send(flood, req, sizeof req, 0) != 20)
        break;
      if (i % 50 == 49)
        pump(ctx, 1);
    }
    assert_int_equal(send(honest, req, sizeof req, 0), 20);
    asked++;
    pump(ctx, 20);
    while (recv(honest, resp, sizeof resp, MSG_DONTWAIT) > 0)
      answered++;
    while (recv(flood, resp, sizeof resp, MSG_DONTWAIT) > 0)
      flood_answered++;
  }
  print_message("4000 flooded requests: %d answered; honest: %d of %d\n", flood_answered, answered,
                asked);
  assert_int_equal(answered, asked);
  assert_true(flood_answered < 4000 / 10);
  close(flood);
  close(honest);
  stun_service_free(s);
  g_main_context_unref(ctx);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc5389_ipv4_exact),  cmocka_unit_test(test_rfc5389_ipv6_exact),
      cmocka_unit_test(test_libnice_rfc5389),     cmocka_unit_test(test_libnice_rfc3489),
      cmocka_unit_test(test_rfc3489_exact),       cmocka_unit_test(test_vovida_client),
      cmocka_unit_test(test_v4_mapped_source),    cmocka_unit_test(test_unknown_attribute),
      cmocka_unit_test(test_credentials_ignored), cmocka_unit_test(test_drops_other_messages),
      cmocka_unit_test(test_drops_malformed),     cmocka_unit_test(test_every_prefix),
      cmocka_unit_test(test_hostile_inputs),      cmocka_unit_test(test_bad_sources),
      cmocka_unit_test(test_small_out_buffer),    cmocka_unit_test(test_service),
      cmocka_unit_test(test_amplification),       cmocka_unit_test(test_limit_per_source),
      cmocka_unit_test(test_limit_global),        cmocka_unit_test(test_service_fair),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
