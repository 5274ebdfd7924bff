/* degree.h - how many super-node links to keep, and whom to refuse or shed.
 *
 * Sans I/O and stateless: the core (sncore.c) asks with what it holds and
 * the time, and does what the answer says. The address book (mesh.h) keeps
 * the per-address times these rules compute.
 *
 * With a target degree D (--degree):
 * - a node dials learned addresses while links + dials under way < D;
 * - it takes an inbound link while links < the soft max 2D (DEGREE_SOFT_MUL),
 *   and from an address of its own --peer list (or a group's pinned one) up
 *   to the hard max; when full, it makes room by dropping a link whose peer
 *   has more than D links (that peer keeps D or more: edge splitting, which
 *   also pulls the mean degree towards D); else the newcomer gets REFUSE
 *   (REFUSE_LINKS_FULL) with the addresses of others, least linked first,
 *   and a retry_ms;
 * - above the soft max it sheds links, one at a time, preferring the link
 *   whose peer has the most other links (so nobody falls below D because of
 *   it), never a link it dialed as --peer nor a group member's;
 * - above D + ceil(D/2) links it trims a link whose peer is above that too
 *   (degree_pick_trim), so that nodes do not all fill to 2D;
 * - it keeps DEGREE_SHORTCUTS long-range links to random verified
 *   addresses (degree_want_shortcut); neither end trims or sheds one, and
 *   evicts one only when no near link can make room for a newcomer (the
 *   dialed end knows one by degree_long_range_dial, and keeps at most
 *   DEGREE_SHORTCUTS of them: the load it goes by is gossip about the
 *   address the dialer claims, so a liar must not pin our slots);
 * - a refused dialer waits max(retry_ms, an exponential backoff with random
 *   jitter), capped, before that address again, and dials the hosts given.
 * So every node of a mesh bigger than D ends with D..2D links (documented in
 * canopy-supernode(8)), and the node everybody joined through holds no more
 * than anybody else: newcomers it refuses link to the least linked.
 */
#ifndef CANOPY_DEGREE_H
#define CANOPY_DEGREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Soft max = DEGREE_SOFT_MUL * D: room for inbound newcomers. */
#define DEGREE_SOFT_MUL 2
/* Links over the soft max that --peer dialers and group members may add. */
#define DEGREE_HARD_SLACK 8
/* What a full node asks a refused dialer to wait (REFUSE retry_ms). */
#define DEGREE_REFUSE_RETRY_MS 15000
/* Backoff after a refusal: DEGREE_BACKOFF_MIN_MS doubled per refusal in a
 * row, plus up to half of it again at random, capped at
 * DEGREE_BACKOFF_MAX_MS; never before retry_ms, but a retry_ms over
 * DEGREE_RETRY_CAP_MS is believed only up to it. */
#define DEGREE_BACKOFF_MIN_MS 2000
#define DEGREE_BACKOFF_MAX_MS 120000
#define DEGREE_RETRY_CAP_MS 600000
/* A link this young is never evicted for a newcomer (degree_pick_evict). */
#define DEGREE_EVICT_MIN_AGE_MS 10000
/* One unverified address learned from others is probed this often, so
 * that what a node passes on (verified addresses only) reaches beyond its
 * neighbours: newcomers then link across the mesh, not into one corner. */
#define DEGREE_EXPLORE_MS 500
/* Besides its D links, a node keeps DEGREE_SHORTCUTS long-range links to
 * addresses drawn at random from what it verified (Kleinberg's small
 * world): links made through a direction node stay near it, and a mesh of
 * only those grows long and narrow, with bridges; a random link or two per
 * node makes its diameter logarithmic. One is looked for every
 * DEGREE_SHORTCUT_MS while fewer are up (and links < the soft max). */
#define DEGREE_SHORTCUTS 3
#define DEGREE_SHORTCUT_MS 2000
/* Why long-range links are kept at both ends (issue 12, "links keep
 * changing"): kept only by the dialer, a long-range link was what the
 * dialed node trimmed first once over D + D/2, the dialer looked for
 * another DEGREE_SHORTCUT_MS later, pushed that node over the line in turn,
 * and so on. Kept at both ends, trims take near links only. That is not
 * enough (measured, 100 nodes: 2.2 links shed per node per minute once
 * whole, against 2.5 before): the dialed end often does not know its
 * dialer's load when the link comes up (then it counts as near), and
 * every trim frees a slot that a long-range dial fills, over the line
 * again. Tried and dropped: long-range links looked for only below the
 * trim line (40 nodes settled in 3 components of near links); no trim at
 * all (no churn, but nodes full of near links had no room for long-range
 * ones: TTL-4 recall 96 % at 100 nodes, and 2 components in one run);
 * trimming at one end only, one each 5 s (30 nodes: 36 of 106 links gone
 * in 20 s); one long-range link a node (DEGREE_SHORTCUTS 1: 0.24 sheds per
 * node per minute, but 8 hops across 100 nodes, TTL-4 recall 36 %, and two
 * components after the direction node's death). The last says what to fix
 * next: a long-range target is drawn from what the node verified, which is
 * mostly near it, so the links are not random over the mesh; a random walk
 * to pick it (as Gnutella's and Kleinberg's constructions assume) would let
 * fewer of them do, and fewer leave the degree rules room. */
/* HOSTS (addresses and loads) to each link: on link-up and this often. */
#define DEGREE_HOSTS_INTERVAL_MS 5000
/* HOSTS from one link closer together than this are ignored. */
#define DEGREE_HOSTS_MIN_GAP_MS 1000

/* Should a node with links links, shortcuts of them its own long-range
 * ones, look for one more? Only once it has D, and below the soft max. */
bool degree_want_shortcut(unsigned target, unsigned links, unsigned shortcuts);
/* Is an inbound link a long-range one (kept, degree.h)? Its dialer's link
 * load as gossiped when it came (WIRE_LOAD_UNKNOWN: no) said it had D
 * links already: a node dials near links only below D. */
bool degree_long_range_dial(unsigned target, uint8_t dialer_load);

/* The soft and hard maxima for target degree D (hard never under
 * max_links, the configured cap). */
unsigned degree_soft_max(unsigned target);
unsigned degree_hard_max(unsigned target, unsigned max_links);

/* May an inbound super node become a link? configured: its advertised
 * address is one of our --peer (or pinned) addresses. */
bool degree_accept(unsigned target, unsigned max_links, unsigned links, bool configured);

/* Should one more learned address be dialed? dialing: dials under way. */
bool degree_want_dial(unsigned target, unsigned links, unsigned dialing);

/* Our link load for HOSTS, in percent of the soft max (0..100). */
uint8_t degree_link_load(unsigned target, unsigned links);

/* When a dialer refused refusals times in a row (1 the first time) may
 * dial that node again; retry_ms is what it asked (0: no advice); rnd is a
 * random number for the jitter. */
uint64_t degree_retry_at(uint64_t now, unsigned refusals, uint32_t retry_ms, uint32_t rnd);

typedef struct {
  uint64_t conn;
  bool keep;         /* dialed as --peer, or a group member: never shed */
  bool long_range;   /* ours or the dialer's long-range link: never shed nor
                      * trimmed, evicted only if no near link can be */
  bool inbound;      /* they dialed us */
  uint8_t peer_load; /* its link_load as it last said (WIRE_LOAD_UNKNOWN: never) */
  uint64_t up_since; /* when it became a link */
} DegreeLink;

/* The link to shed now, or NULL: only while links > the soft max, never a
 * kept one; the one whose peer is the most loaded (unknown loads count as
 * least), then inbound before outbound, then the youngest. */
const DegreeLink *degree_pick_shed(unsigned target, const DegreeLink *links, size_t n);

/* Above DEGREE_TRIM links (D + D/2), one link a round whose peer is above
 * it too, and at least DEGREE_EVICT_MIN_AGE_MS old, is dropped: both ends
 * keep more than D. Dialing until D and taking inbound up to 2D would
 * otherwise fill every node to 2D, leaving no room for newcomers and
 * long-range links. NULL if none qualifies (kept and long-range links
 * never). */
const DegreeLink *degree_pick_trim(unsigned target, const DegreeLink *links, size_t n,
                                   uint64_t now);
unsigned degree_trim(unsigned target);

/* A full node makes room for an inbound newcomer by dropping a link whose
 * peer has more than D links (its load, as it last said, tells): the peer
 * keeps at least D, the newcomer gets a link, and our count stays. NULL if
 * no link qualifies: not kept, known load over D's, at least
 * DEGREE_EVICT_MIN_AGE_MS old; a near link before a long-range one, then
 * the most loaded peer first, then the youngest link. */
const DegreeLink *degree_pick_evict(unsigned target, const DegreeLink *links, size_t n,
                                    uint64_t now);

#endif
