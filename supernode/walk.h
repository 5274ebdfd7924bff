/* walk.h - random walks over the super-node mesh, to pick long-range links.
 *
 * Why (issue 12, "links keep changing"): long-range targets drawn from the
 * addresses a node verified are mostly near it (it learned them from its
 * neighbours), so a node needed three of them for a short diameter, and
 * three a node left the degree rules no room: every trim freed a slot that
 * a long-range dial filled. A random walk of WALK_HOPS hops ends on a node
 * drawn near-uniformly from the whole mesh once the walk is longer than the
 * mixing time (log N hops for a random-ish graph of degree >= 3; Gkantsidis,
 * Mihail and Saberi, "Random walks in peer-to-peer networks"; GIA), so one
 * long-range link a node (DEGREE_SHORTCUTS) is enough.
 *
 * A WALK carries the ids of the nodes it went through (origin first, the
 * sender last) and the hops left. Each node appends itself and passes it to
 * a random link, preferring one not on the path; the last answers WALK_REPLY
 * with its own address, which goes back along the path (each node pops
 * itself and sends to the id before it: no state is kept per walk). The
 * origin takes only a reply to the walk it has under way and dials the node
 * named; the handshake proves who answers there.
 *
 * What a stranger can make us spend: a link may send WALK_LINK_BURST WALK
 * and WALK_REPLY frames a second (more are dropped and counted), and all
 * links together WALK_TOTAL_BURST; each frame admitted makes us send at most
 * one (a forward, a reply, or nothing): never an amplifier. A path is at
 * most WIRE_MAX_WALK ids (the codec's cap); a reply is forwarded only to a
 * node we hold a link to. Sans I/O: the caller passes the time and the
 * random numbers.
 */
#ifndef CANOPY_WALK_H
#define CANOPY_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

/* Hops of a walk: about the mixing time of a mesh of a few hundred nodes
 * at degree 4-8 (log_4 of 1,000 is 5). */
#define WALK_HOPS 6
/* WALK + WALK_REPLY frames one link may send per second ... */
#define WALK_LINK_BURST 8
/* ... and all links together. */
#define WALK_TOTAL_BURST 64
/* A walk under way is given up after this long (its reply is then dropped). */
#define WALK_TIMEOUT_MS 3000
/* The end of a walk remembers its origin this long: a link the origin dials
 * in that time is its long-range link (kept at both ends, degree.h). */
#define WALK_END_MEMORY_MS 10000
/* Origins remembered so at once (the oldest is forgotten first). */
#define WALK_ENDS 8

/* A rate window: at most `burst` frames per 1,000 ms window. */
typedef struct {
  uint64_t window; /* start of the current window */
  unsigned count;
} WalkBudget;

/* Admits one frame at now under burst a second; false: over, drop it. */
bool walk_budget_take(WalkBudget *b, unsigned burst, uint64_t now);

typedef enum {
  WALK_BAD,     /* the path does not end with the sender, or we are its origin */
  WALK_FORWARD, /* pass it on (walk_extend) */
  WALK_END,     /* it ends here: answer with our address */
} WalkStep;

/* What to do with a WALK (m) from the link to node `from`. */
WalkStep walk_step(const WireMsg *m, const uint8_t self[WIRE_ID_LEN],
                   const uint8_t from[WIRE_ID_LEN]);

/* Fills out (and path_buf, which out borrows; WIRE_MAX_WALK * 32 bytes)
 * with m forwarded by self: self appended, one hop less. Only for
 * WALK_FORWARD. */
void walk_extend(const WireMsg *m, const uint8_t self[WIRE_ID_LEN], uint8_t *path_buf,
                 WireMsg *out);

/* Which of n candidate links (their node ids) takes the walk next: at
 * random (rnd) among those not on its path, else among all but `from` and
 * the origin. Returns n if none (then the walk ends here). */
size_t walk_pick(const WireMsg *m, const uint8_t (*ids)[WIRE_ID_LEN], size_t n,
                 const uint8_t from[WIRE_ID_LEN], uint32_t rnd);

/* The reply of self at the end of walk m, with our host entry: path is the
 * walk's path (the way back; its last id is the sender). */
void walk_reply(const WireMsg *m, const WireHost *self_host, WireMsg *out);

typedef enum {
  WALK_REPLY_BAD,    /* the path does not end with us */
  WALK_REPLY_ORIGIN, /* we started it: m->u.walk.end is our answer */
  WALK_REPLY_BACK,   /* pass it to the node *next (walk_reply_pop done) */
} WalkReplyStep;

/* What to do with a WALK_REPLY that reached self: on WALK_REPLY_BACK, out
 * is the reply to send (borrows m's path, one id shorter) and *next the
 * node id to send it to. */
WalkReplyStep walk_on_reply(const WireMsg *m, const uint8_t self[WIRE_ID_LEN], WireMsg *out,
                            const uint8_t **next);

/* The endpoint's memory of recent origins (walk ends). */
typedef struct {
  uint8_t id[WIRE_ID_LEN];
  uint64_t until;
} WalkEnd;

typedef struct {
  WalkEnd ends[WALK_ENDS];
  size_t next; /* ring position */
} WalkEnds;

/* Remembers that a walk of origin ended here at now. */
void walk_ends_add(WalkEnds *e, const uint8_t origin[WIRE_ID_LEN], uint64_t now);
/* Did a walk of id end here within WALK_END_MEMORY_MS? Forgets it (one
 * link per walk). */
bool walk_ends_take(WalkEnds *e, const uint8_t id[WIRE_ID_LEN], uint64_t now);

#endif
