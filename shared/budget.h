/* budget.h - a resource counter with a total cap and a cap per source.
 *
 * One Budget counts one resource (bytes of queued output, index entries,
 * index bytes) that strangers can make us spend. Each charge names its
 * source (a key of up to BUDGET_KEY_MAX bytes: an address, a node id); a
 * charge is refused when it would take the total over `total` or its
 * source's part over `share`, so no single source can take the whole
 * budget and the sum stays under the cap whatever the sources do.
 *
 * Sans I/O, no clock, no glib. Keys are hashed with the keyed shorthash, so
 * peers cannot choose colliding keys. Not thread-safe.
 */
#ifndef CANOPY_BUDGET_H
#define CANOPY_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BUDGET_KEY_MAX 48 /* longer keys are cut (an IPv6 text address fits) */

typedef struct Budget Budget;

/* total: cap on the sum of all charges; share: cap per source (0 or more
 * than total: total). NULL on no memory. */
Budget *budget_new(uint64_t total, uint64_t share);
void budget_free(Budget *b); /* NULL is a no-op */

/* New caps; what is held stays held (a lower cap refuses the next
 * charges until enough is given back). */
void budget_set_limits(Budget *b, uint64_t total, uint64_t share);

/* Whether n more for key would fit. */
bool budget_fits(const Budget *b, const void *key, size_t key_len, uint64_t n);
/* How much more key may take now (the smaller of what is left in total
 * and in its share). */
uint64_t budget_room(const Budget *b, const void *key, size_t key_len);
/* Charges n to key when it fits (all or nothing); a refusal is counted. */
bool budget_take(Budget *b, const void *key, size_t key_len, uint64_t n);
/* Charges n to key even over the caps: for what is already spent and must
 * be counted (the source then gets no room until it gives back). False
 * only when the table cannot grow (no memory). */
bool budget_force(Budget *b, const void *key, size_t key_len, uint64_t n);
/* Gives back n of what key holds (at most what it holds). */
void budget_give(Budget *b, const void *key, size_t key_len, uint64_t n);

uint64_t budget_used(const Budget *b);
uint64_t budget_used_by(const Budget *b, const void *key, size_t key_len);
uint64_t budget_total(const Budget *b);
uint64_t budget_share(const Budget *b);
uint64_t budget_refused(const Budget *b); /* charges refused so far */
size_t budget_sources(const Budget *b);   /* keys holding something */

#endif
