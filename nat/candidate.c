/* candidate.c - the remote candidate filter (candidate.h). */
#include "candidate.h"

#include <arpa/inet.h>
#include <string.h>

bool candidate_type_parse(const char *s, CandidateType *out)
{
  static const char *const names[CANDIDATE_TYPES] = {"host", "srflx", "prflx", "relay"};
  for (int t = 0; t < CANDIDATE_TYPES; t++)
    if (strcmp(s, names[t]) == 0) {
      *out = (CandidateType)t;
      return true;
    }
  return false;
}

static bool refuse(const char **why, const char *reason)
{
  if (why)
    *why = reason;
  return false;
}

/* RFC 6890 special-purpose IPv4 blocks that no ICE agent should check. */
static bool v4_ok(const uint8_t a[4], CandidateType type, bool allow_loopback, const char **why)
{
  if (a[0] == 0)
    return refuse(why, "unspecified address"); /* 0.0.0.0/8, "this network" */
  if (a[0] == 127 && !allow_loopback)
    return refuse(why, "loopback address");
  if (a[0] >= 224 && a[0] <= 239)
    return refuse(why, "multicast address");
  if (a[0] >= 240)
    return refuse(why, "reserved or broadcast address"); /* 240/4, 255.255.255.255 */
  if (a[0] == 169 && a[1] == 254 && type != CANDIDATE_HOST)
    return refuse(why, "link-local address on a non-host candidate");
  return true;
}

static bool v6_ok(const uint8_t a[16], CandidateType type, bool allow_loopback, const char **why)
{
  static const uint8_t zero[16] = {0};
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (memcmp(a, zero, 16) == 0)
    return refuse(why, "unspecified address");
  if (memcmp(a, zero, 15) == 0 && a[15] == 1 && !allow_loopback)
    return refuse(why, "loopback address");
  if (a[0] == 0xff)
    return refuse(why, "multicast address");
  /* An IPv4 address in IPv6 clothing would dodge the IPv4 rules. */
  if (memcmp(a, mapped, 12) == 0)
    return refuse(why, "IPv4-mapped address");
  if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80 && type != CANDIDATE_HOST)
    return refuse(why, "link-local address on a non-host candidate");
  return true;
}

bool candidate_address_ok(const char *ip, CandidateType type, bool allow_loopback, const char **why)
{
  uint8_t a[16];
  if (inet_pton(AF_INET, ip, a) == 1)
    return v4_ok(a, type, allow_loopback, why);
  if (inet_pton(AF_INET6, ip, a) == 1)
    return v6_ok(a, type, allow_loopback, why);
  return refuse(why, "not a numeric address");
}

bool candidate_address_is_loopback(const char *ip)
{
  static const uint8_t v6_loopback[16] = {[15] = 1};
  uint8_t a[16];
  if (inet_pton(AF_INET, ip, a) == 1)
    return a[0] == 127;
  return inet_pton(AF_INET6, ip, a) == 1 && memcmp(a, v6_loopback, 16) == 0;
}

/* Index of the best candidate not yet kept, of type t (or of any type when
 * t is CANDIDATE_TYPES); n when there is none. */
static size_t best(const CandidateInfo *c, size_t n, const bool *keep, int t)
{
  size_t b = n;
  for (size_t i = 0; i < n; i++)
    if (!keep[i] && (t == CANDIDATE_TYPES || c[i].type == (CandidateType)t) &&
        (b == n || c[i].priority > c[b].priority))
      b = i;
  return b;
}

size_t candidate_pick(const CandidateInfo *c, size_t n, size_t cap, bool *keep)
{
  size_t kept = 0;
  for (size_t i = 0; i < n; i++)
    keep[i] = false;
  for (int t = 0; t < CANDIDATE_TYPES && kept < cap; t++) {
    size_t b = best(c, n, keep, t);
    if (b < n) {
      keep[b] = true;
      kept++;
    }
  }
  /* n is at most a description's line cap: quadratic is a few thousand
   * comparisons. */
  while (kept < cap) {
    size_t b = best(c, n, keep, CANDIDATE_TYPES);
    if (b == n)
      break;
    keep[b] = true;
    kept++;
  }
  return kept;
}
