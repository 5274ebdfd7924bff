/* term.h - a group's leadership terms (supernode/GROUPS.md, "Terms").
 *
 * A term is a u64: the high 32 bits count elections, the low 32 are a tag
 * from the electing node's id, so two nodes never lead one term. Terms are
 * compared as plain integers. Two rules keep them from being a weapon:
 *
 * - Arithmetic saturates: the next term after the largest counter keeps
 *   the largest counter, it never wraps into the tag or back to zero.
 * - A term is believed only while its counter is at most TERM_AHEAD_S
 *   above the wall clock in seconds. Honest groups count one per election
 *   (a few a day), far below the clock; a node that claims more (one
 *   GROUP_STATE of term 0xffffffff00000001) is refused, and even a member
 *   holding the group's key can push the counter no faster than the clock
 *   runs, so the counter cannot reach 2^32 before the year 2106 and the
 *   group can always elect a higher term than any it believed.
 *
 * Pure functions: the caller passes the wall clock (unix seconds). */
#ifndef CANOPY_TERM_H
#define CANOPY_TERM_H

#include <stdbool.h>
#include <stdint.h>

/* How far (seconds) a term's counter may run ahead of the wall clock: room
 * for clock skew between super nodes and for bursts of honest elections. */
#define TERM_AHEAD_S 600u
#define TERM_COUNTER_MAX UINT32_MAX

/* The tag of node id: its first four bytes. */
uint32_t term_tag(const uint8_t id[32]);
/* The election counter of t. */
uint32_t term_counter(uint64_t t);
/* The term a node with tag elects after t: counter + 1 (saturating at
 * TERM_COUNTER_MAX), our tag. */
uint64_t term_next(uint64_t t, uint32_t tag);
/* The highest term believable at unix time now_s (saturating). */
uint64_t term_ceiling(uint64_t now_s);
/* Whether t is believable at unix time now_s. */
bool term_believable(uint64_t t, uint64_t now_s);

#endif
