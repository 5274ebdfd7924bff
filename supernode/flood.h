/* flood.h - duplicate suppression and reverse-path routes for flooded queries.
 *
 * Gnutella's rule: a super node handles each query id once. The first copy of
 * a query id records where it came from (a leaf's search or a neighbour);
 * later copies are duplicates. Hits for that id travel back to that origin.
 * One exception (sncore.c): a later copy with more hops left than any
 * before came by a shorter path, and is forwarded again (never answered
 * again), so that the copy that happened to arrive first over a long path
 * does not cut the flood short; ttl only grows, so that is at most
 * WIRE_MAX_TTL times per id.
 * Entries expire after a fixed lifetime and the table is capped (oldest
 * forgotten first), so memory stays bounded whatever peers send.
 */
#ifndef CANOPY_FLOOD_H
#define CANOPY_FLOOD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FLOOD_QID_LEN 16

typedef struct Flood Flood;

typedef struct {
  uint64_t conn;  /* connection the query came from */
  bool from_leaf; /* origin is a leaf's SEARCH (then req is its request id) */
  uint32_t req;
  uint32_t hits_sent; /* hits already passed back, to cap amplification */
  uint8_t ttl;        /* the most hops left any copy of it brought */
} FloodRoute;

Flood *flood_new(size_t max_entries, uint64_t lifetime_ms);
void flood_free(Flood *f); /* NULL is a no-op */

/* Records qid with its origin. Returns false (and records nothing) if qid was
 * already seen and has not expired: the caller drops the duplicate. */
bool flood_first_seen(Flood *f, const uint8_t qid[FLOOD_QID_LEN], const FloodRoute *origin,
                      uint64_t now);
/* The route of a live qid (mutable, to count hits), or NULL. */
FloodRoute *flood_route(Flood *f, const uint8_t qid[FLOOD_QID_LEN], uint64_t now);
/* Forgets expired ids. */
void flood_expire(Flood *f, uint64_t now);
/* When the oldest entry expires (UINT64_MAX if empty). */
uint64_t flood_next_expiry(const Flood *f);
size_t flood_size(const Flood *f);
/* The table's hash of a query id: keyed (shorthash.h) over all its bytes.
 * Exported for the tests. */
unsigned flood_qid_hash(const void *qid);

#endif
