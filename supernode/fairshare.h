/* fairshare.h - a fair scheduler for work that strangers send us, sans I/O.
 *
 * Items (queries, here) are queued per origin, origins are grouped, and one
 * token bucket releases items for all of them together. Release order is
 * round robin over the groups that have something queued, and inside a group
 * round robin over its origins (deficit round robin with a quantum of one
 * item, two levels deep). So a group gets its share of the rate however many
 * origins it holds, and an origin its share of its group's: 100 Sybil leaves
 * in the "our leaves" group cannot take more than that group's share from a
 * neighbour, nor more than their 100 shares from an honest leaf. An origin
 * or group that had nothing queued goes first, once (fq_codel's sparse-flow
 * rule), so a rare honest query does not wait a whole round of the crowd.
 *
 * Memory is bounded: at most max_per_origin items per origin, max_per_group
 * per group and max_total in all. When a cap is hit, the new item pushes out
 * the oldest item of the longest queue under that cap, unless its own origin
 * is (one of) the longest: then the new item is refused. An origin that keeps
 * within its share therefore never loses an item to one that does not.
 * Items that waited longer than max_wait_ms are dropped instead of released
 * (their sender has given up on them), without spending a token.
 *
 * Origin and group keys are the caller's own numbers (session ids), never
 * something a peer chose, so plain integer hashing is safe.
 */
#ifndef CANOPY_FAIRSHARE_H
#define CANOPY_FAIRSHARE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct FairShare FairShare;

typedef struct {
  double rate;           /* items released per second, all origins together (> 0) */
  double burst;          /* items that may go at once after a quiet spell (>= 1) */
  size_t max_per_origin; /* queued items of one origin (>= 1) */
  size_t max_per_group;  /* queued items of one group (>= 1) */
  size_t max_total;      /* queued items in all (>= 1) */
  uint64_t max_wait_ms;  /* older items are dropped, not released */
} FairShareConfig;

typedef struct {
  uint64_t queued;     /* items accepted */
  uint64_t released;   /* items handed out by fairshare_next */
  uint64_t refused;    /* new items refused: their origin was over its share */
  uint64_t pushed_out; /* queued items dropped to make room for another origin's */
  uint64_t stale;      /* items dropped after max_wait_ms */
  uint64_t forgotten;  /* items dropped with their origin */
} FairShareStats;

/* Frees one item the scheduler drops (may be NULL if items need no freeing). */
typedef void (*FairShareFreeFn)(void *item);

/* NULL if cfg is out of range. The bucket starts full. */
FairShare *fairshare_new(const FairShareConfig *cfg, FairShareFreeFn free_item, uint64_t now);
/* Frees the queued items too. NULL is a no-op. */
void fairshare_free(FairShare *fs);

/* Queues item (ownership passes to the scheduler, whatever the result) from
 * origin, which belongs to group (an origin stays in the group it was first
 * queued with while it has items). Returns false if the item was refused
 * (and freed). */
bool fairshare_push(FairShare *fs, uint64_t group, uint64_t origin, void *item, uint64_t now);

/* The next item to handle, if the bucket holds a token (one is spent), else
 * NULL. The caller owns the item; *origin (if not NULL) says whose it was. */
void *fairshare_next(FairShare *fs, uint64_t now, uint64_t *origin);

/* When fairshare_next will next have an item: UINT64_MAX if nothing is
 * queued, else the time the bucket holds a token (maybe <= now). */
uint64_t fairshare_deadline(const FairShare *fs);

/* Drops everything queued from origin (its session closed). */
void fairshare_forget(FairShare *fs, uint64_t origin);

/* New rate and burst (configuration reload); tokens held are capped. */
void fairshare_set_rate(FairShare *fs, double rate, double burst, uint64_t now);

size_t fairshare_queued(const FairShare *fs);
size_t fairshare_origin_queued(const FairShare *fs, uint64_t origin);
/* Origins and groups with something queued (bounded by max_total). */
size_t fairshare_origins(const FairShare *fs);
size_t fairshare_groups(const FairShare *fs);
const FairShareStats *fairshare_stats(const FairShare *fs);

#endif
