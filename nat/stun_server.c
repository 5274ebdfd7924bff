/* stun_server.c - STUN binding responder (RFC 5389, RFC 3489), sans I/O.
 *
 * libnice's stun/ library parses and builds the messages; this file decides
 * what deserves an answer. Every datagram first passes our own bounded walk
 * (header, exact length, every attribute inside the message, FINGERPRINT
 * last), so the only messages libnice ever parses are well-formed binding
 * requests whose every length we have checked ourselves.
 *
 * No state survives a call: the StunAgent lives on the stack, its saved
 * transaction ids are never used (a server only sends responses).
 */
#include "stun_server.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <stun/stunagent.h>
#include <stun/stunmessage.h>

#define STUN_HEADER_LEN 20
/* Message type of a binding request: class request, method Binding
 * (RFC 5389 section 6). Its two top bits are zero, as in every STUN
 * message. */
#define STUN_TYPE_BINDING_REQUEST 0x0001
/* CHANGE-REQUEST flags (RFC 5780 section 7.2, RFC 3489 section 11.2.4). */
#define STUN_CHANGE_IP 0x04
#define STUN_CHANGE_PORT 0x02

/* Comprehension-required attributes a binding request may carry here; any
 * other one earns a 420. USERNAME and MESSAGE-INTEGRITY are understood and
 * ignored: this usage authenticates nobody. RESPONSE-ADDRESS (RFC 3489),
 * RESPONSE-PORT and PADDING (RFC 5780) stay unknown on purpose: honouring
 * them would send answers elsewhere or make them bigger. */
static const uint16_t known_attrs[] = {STUN_ATTRIBUTE_USERNAME, STUN_ATTRIBUTE_MESSAGE_INTEGRITY,
                                       STUN_ATTRIBUTE_CHANGE_REQUEST, 0};
/* The same without CHANGE-REQUEST, for requests whose CHANGE-REQUEST asks
 * for what this server cannot do: libnice then lists it in the 420. */
static const uint16_t known_attrs_no_change[] = {STUN_ATTRIBUTE_USERNAME,
                                                 STUN_ATTRIBUTE_MESSAGE_INTEGRITY, 0};

/* What the walk learnt about a request. */
typedef struct {
  bool cookie;      /* RFC 5389 magic cookie present */
  bool fingerprint; /* a FINGERPRINT attribute (4 bytes, last) */
  bool change;      /* a CHANGE-REQUEST asks for another IP or port */
} Request;

static uint16_t get16(const uint8_t *p)
{
  return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Accepts exactly one binding request filling the datagram: header, length
 * field equal to what arrived, attributes padded to 4 bytes (RFC 5389
 * section 15), none running past the end, FINGERPRINT only last. */
static bool walk_request(const uint8_t *req, size_t len, Request *r)
{
  if (len < STUN_HEADER_LEN || len > STUN_SERVER_MAX_REQUEST || len % 4 != 0)
    return false;
  if (get16(req) != STUN_TYPE_BINDING_REQUEST)
    return false; /* not STUN, or an indication, a response, another method */
  if ((size_t)get16(req + 2) + STUN_HEADER_LEN != len)
    return false; /* truncated, or trailing bytes */
  r->cookie = get32(req + 4) == STUN_MAGIC_COOKIE;

  size_t off = STUN_HEADER_LEN;
  while (off < len) {
    if (len - off < 4 || r->fingerprint)
      return false; /* a torn attribute header, or something after FINGERPRINT */
    uint16_t type = get16(req + off);
    size_t alen = get16(req + off + 2);
    size_t padded = (alen + 3u) & ~(size_t)3u;
    off += 4;
    if (padded > len - off)
      return false;
    if (type == STUN_ATTRIBUTE_FINGERPRINT && r->cookie) {
      if (alen != 4)
        return false;
      r->fingerprint = true;
    } else if (type == STUN_ATTRIBUTE_CHANGE_REQUEST) {
      if (alen != 4)
        return false;
      if (get32(req + off) & (STUN_CHANGE_IP | STUN_CHANGE_PORT))
        r->change = true;
    }
    off += padded;
  }
  return true;
}

/* Copies the sender's address into *ss, unmapping ::ffff:a.b.c.d to IPv4
 * (a dual-stack socket reports IPv4 senders that way; their reflexive
 * address is the IPv4 one). Refuses other families and port 0. */
static bool source_address(const struct sockaddr *from, socklen_t fromlen,
                           struct sockaddr_storage *ss, socklen_t *sslen)
{
  sa_family_t family;
  if (!from || (size_t)fromlen < sizeof(struct sockaddr))
    return false;
  memcpy(&family, (const uint8_t *)from + offsetof(struct sockaddr, sa_family), sizeof family);
  memset(ss, 0, sizeof *ss);

  if (family == AF_INET && (size_t)fromlen >= sizeof(struct sockaddr_in)) {
    struct sockaddr_in in;
    memcpy(&in, from, sizeof in);
    if (in.sin_port == 0)
      return false;
    memcpy(ss, &in, sizeof in);
    *sslen = sizeof in;
    return true;
  }
  if (family == AF_INET6 && (size_t)fromlen >= sizeof(struct sockaddr_in6)) {
    struct sockaddr_in6 in6;
    memcpy(&in6, from, sizeof in6);
    if (in6.sin6_port == 0)
      return false;
    if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
      struct sockaddr_in in = {0};
      in.sin_family = AF_INET;
      in.sin_port = in6.sin6_port;
      memcpy(&in.sin_addr, &in6.sin6_addr.s6_addr[12], 4);
      memcpy(ss, &in, sizeof in);
      *sslen = sizeof in;
      return true;
    }
    memcpy(ss, &in6, sizeof in6);
    *sslen = sizeof in6;
    return true;
  }
  return false;
}

size_t stun_server_answer(const uint8_t *req, size_t len, const struct sockaddr *from,
                          socklen_t fromlen, uint8_t *out, size_t outcap)
{
  Request r = {0};
  struct sockaddr_storage src;
  socklen_t srclen = 0;
  StunAgent agent;
  StunMessage request, response;

  if (!req || !out || !walk_request(req, len, &r) || !source_address(from, fromlen, &src, &srclen))
    return 0;
  /* A classic client asking for a reply from another address or port reads
   * any reply as if it came from there (and so would call its NAT open):
   * silence is the truthful answer for a server with one address. */
  if (r.change && !r.cookie)
    return 0;
  /* libnice 0.1.21's stun_message_append checks that an attribute fits but
   * then writes its padding unchecked, up to 3 bytes past a buffer whose
   * size is not a multiple of 4. Messages are 4-aligned, so with a
   * 4-aligned capacity the padding always fits. */
  outcap &= ~(size_t)3;

  StunAgentUsageFlags flags = STUN_AGENT_USAGE_IGNORE_CREDENTIALS;
  if (r.fingerprint)
    flags |= STUN_AGENT_USAGE_USE_FINGERPRINT; /* checks the request's, signs the response */
  stun_agent_init(&agent, r.change ? known_attrs_no_change : known_attrs,
                  r.cookie ? STUN_COMPATIBILITY_RFC5389 : STUN_COMPATIBILITY_RFC3489, flags);

  switch (stun_agent_validate(&agent, &request, req, len, NULL, NULL)) {
  case STUN_VALIDATION_SUCCESS:
    break;
  case STUN_VALIDATION_UNKNOWN_REQUEST_ATTRIBUTE: {
    /* 420 listing each unknown attribute. Its ERROR-CODE reason phrase
     * makes it bigger than a short request: a forged source would get more
     * bytes than the forger sent. An error answer helps no honest client
     * find its address, so it goes only when it is not larger than the
     * request (issue 11, finding 14). */
    size_t n = stun_agent_build_unknown_attributes_error(&agent, &response, out, outcap, &request);
    return n <= len ? n : 0;
  }
  default:
    return 0; /* a bad FINGERPRINT, or anything else libnice rejects */
  }

  if (!stun_agent_init_response(&agent, &response, out, outcap, &request))
    return 0;
  StunMessageReturn ret;
  if (r.cookie)
    ret = stun_message_append_xor_addr(&response, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, &src, srclen);
  else
    ret = stun_message_append_addr(&response, STUN_ATTRIBUTE_MAPPED_ADDRESS,
                                   (const struct sockaddr *)&src, srclen);
  if (ret != STUN_MESSAGE_RETURN_SUCCESS)
    return 0;
  return stun_agent_finish_message(&agent, &response, NULL, 0);
}
