/* candidate.h - which remote ICE candidates a leaf is willing to check.
 *
 * A remote description comes from another leaf through the super nodes: a
 * stranger names the addresses our agent will send connectivity checks to.
 * Checked here, before libnice sees them (issue 11, finding 8):
 *   - the address: never unspecified, multicast, broadcast, reserved or
 *     IPv4-mapped (no honest agent gathers those, and checks to them are
 *     traffic aimed at a third party or the whole segment); loopback only
 *     when we gather on loopback ourselves (tests, one-machine setups);
 *     link-local only as a host candidate (a server-reflexive or relayed
 *     address on a link-local network is a lie);
 *   - how many: at most CANDIDATE_MAX_REMOTE per description, so one offer
 *     costs at most that many candidates' checks.
 * Plain C, no glib: unit-tested directly (tests/unit/test_ice.c).
 */
#ifndef CANOPY_CANDIDATE_H
#define CANOPY_CANDIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Remote candidates kept from one description. libnice gathers, per
 * component, one host candidate per local address (a home host: one IPv4,
 * one or two IPv6), one server-reflexive per IPv4 host base, and with TURN
 * one relay plus the Allocate's server-reflexive: 4 to 7 for a normal host.
 * 10 leaves room for a multi-homed one. */
#define CANDIDATE_MAX_REMOTE 10

typedef enum {
  CANDIDATE_HOST,
  CANDIDATE_SRFLX,
  CANDIDATE_PRFLX,
  CANDIDATE_RELAY,
  CANDIDATE_TYPES
} CandidateType;

/* "host", "srflx", "prflx", "relay" -> the type; false for anything else. */
bool candidate_type_parse(const char *s, CandidateType *out);

/* Whether a candidate of this type at this numeric address (IPv4 or IPv6
 * text) may be checked; false for text that is not a numeric address.
 * allow_loopback: we gather on a loopback address ourselves. On refusal
 * *why (if not NULL) says why (static text). */
bool candidate_address_ok(const char *ip, CandidateType type, bool allow_loopback,
                          const char **why);

/* 127.0.0.0/8 or ::1 (numeric text); false for anything else. */
bool candidate_address_is_loopback(const char *ip);

/* One candidate a description offers, for candidate_pick. */
typedef struct {
  CandidateType type;
  uint32_t priority;
} CandidateInfo;

/* Chooses at most cap of the n candidates: first the highest-priority one
 * of each type (so a peer with many host addresses keeps its relay, the
 * fallback when nothing direct works), then the others by priority, higher
 * first (ties: the earlier one). Sets keep[i] for the chosen ones and
 * returns how many. */
size_t candidate_pick(const CandidateInfo *c, size_t n, size_t cap, bool *keep);

#endif
