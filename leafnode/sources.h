/* sources.h - the candidate sources of one download, sans I/O.
 *
 * A candidate is a leaf that said it has the file, and the size it said:
 * one per leaf, whatever names it used (a leaf publishing the content id
 * under many names must not take many of the download's slots). Candidates
 * are linked to in random order, never in the order their hits came (which
 * whoever publishes them shapes). A candidate whose link does not open within
 * open_wait_ms gives up its slot while another candidate waits, and a
 * candidate that never opened is remembered as bad: not tried again by this
 * download, also after a pause and resume. A candidate that refused (its
 * inbound budgets spent for now: "busy") is not bad: it is tried again
 * after a back-off (sources_refused).
 *
 * Sizes are only claims (the content id binds the size, a tree proves it):
 * the caller tries one claimed size at a time (sources_pick_size) and moves
 * to another once every candidate of this one failed unproven.
 *
 * Time is passed in; randomness comes from the rng given to sources_new.
 */
#ifndef CANOPY_SOURCES_H
#define CANOPY_SOURCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Sources Sources;

typedef void (*SourcesRandomFn)(uint8_t *out, size_t n, void *ctx);

/* max: candidates kept (the bad ones included); a hit past it is dropped.
 * NULL on failure. */
Sources *sources_new(unsigned max, uint64_t open_wait_ms, SourcesRandomFn rng, void *rng_ctx);
void sources_free(Sources *s); /* NULL is a no-op */

/* A hit from peer claiming size. False if peer is a candidate already (or
 * is bad), or the set is full. */
bool sources_add(Sources *s, const uint8_t peer[32], uint64_t size);
/* A new search for the same download: forgets every candidate but the bad. */
void sources_restart(Sources *s);
size_t sources_count(const Sources *s); /* candidates, the bad ones excluded */
size_t sources_bad(const Sources *s);

/* A claimed size some untried candidate gives, the candidate chosen at
 * random; false if no candidate is left untried. */
bool sources_pick_size(Sources *s, uint64_t *size);
/* Gives up a size: its untried candidates will not be linked. */
void sources_drop_size(Sources *s, uint64_t size);
/* True if an untried candidate of size is waiting (also one waiting for a
 * retry). */
bool sources_waiting(const Sources *s, uint64_t size);

/* Picks an untried candidate of size at random (one not waiting for a
 * retry after now) and counts it linking from now; false if none is left. */
bool sources_next(Sources *s, uint64_t size, uint64_t now, uint8_t peer[32]);
/* peer's link opened: it is a source now, no longer on the clock. */
void sources_opened(Sources *s, const uint8_t peer[32]);
/* peer's link ended. One that never opened is bad from now on. */
void sources_closed(Sources *s, const uint8_t peer[32]);
/* peer's link was refused (the source is busy), at now: untried again,
 * not to be linked before the returned time (4 s, doubling with each
 * refusal in a row). At the 4th refusal in a row it is given up for this
 * run, not marked bad, and UINT64_MAX is returned (also for a peer not
 * linking). */
uint64_t sources_refused(Sources *s, const uint8_t peer[32], uint64_t now);
/* The caller did not link peer after all (sources_next picked it): untried
 * again, not to be linked before until. */
void sources_defer(Sources *s, const uint8_t peer[32], uint64_t until);

/* A candidate linking for open_wait_ms or longer while another candidate
 * of size (the size being tried: only those can take its slot) may be
 * linked now: it is returned, and the caller closes its link. The first
 * time it waits open_wait_ms to be tried again (a slow but honest source,
 * or our own gathering slowed by a busy machine, gets a second chance
 * after the others had theirs); the SOURCES_MAX_SLOW-th time it is bad.
 * False if there is none. */
bool sources_overdue(Sources *s, uint64_t size, uint64_t now, uint8_t peer[32]);
/* When sources_overdue(size) may next return one, or a candidate of size
 * waiting for a retry after now may be linked (UINT64_MAX: never as things
 * stand). */
uint64_t sources_next_deadline(const Sources *s, uint64_t size, uint64_t now);

#endif
