/* index.h - a super node's directory of what its leaves share.
 *
 * Napster-style: it holds who has what, never the files. An inverted index
 * (keyword -> entries) answers keyword searches; a content-id table answers
 * "who has this file". Entries belong to an owner (one leaf session); all of
 * an owner's entries go in one call when its session ends.
 * Not thread-safe; no I/O; no clock.
 */
#ifndef CANOPY_INDEX_H
#define CANOPY_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Index Index;

typedef struct {
  const char *name; /* borrowed: valid until the index next changes */
  size_t name_len;
  uint64_t size;
  uint8_t cid[32];
  uint8_t peer[32]; /* node id of the owner */
} IndexHit;

typedef enum {
  INDEX_OK,
  INDEX_DUPLICATE,
  INDEX_OWNER_FULL,
  INDEX_NOMEM,
  INDEX_BADNAME,
  INDEX_CID_FULL, /* the owner has INDEX_NAMES_PER_CID entries with this content id */
  INDEX_FULL      /* over the index's total entries or bytes */
} IndexResult;

/* Names one owner may give one content id: copies of a file in many
 * folders are honest (and every empty file has one id), a liar's hundreds
 * of names are not. */
#define INDEX_NAMES_PER_CID 64
/* What a keyword list's id costs once made, for good: its pointer in the
 * id array (8, and half as much again in its slack), a free-id record when
 * the list goes (4, twice in the array's slack) and its bucket in the
 * keyword table (4 at a load of 7/16 or more: 9.2). Neither the array nor
 * the table shrinks, so index_bytes() keeps these bytes after the lists
 * are gone; ids are reused first, so they are bounded by the most lists
 * the budget ever let live at once. */
#define INDEX_WORD_ID_COST 32

/* max_per_owner caps the entries one leaf may publish. NULL on failure. */
Index *index_new(size_t max_per_owner);
void index_free(Index *ix); /* NULL is a no-op */

/* Adds an entry of owner (a caller-chosen handle, e.g. a connection id) whose
 * node id is peer. The same (name, cid) twice for one owner is a duplicate. */
IndexResult index_add(Index *ix, uint64_t owner, const uint8_t peer[32], const char *name,
                      size_t name_len, uint64_t size, const uint8_t cid[32]);
/* Removes every entry of owner; returns how many. */
size_t index_remove_owner(Index *ix, uint64_t owner);

/* Entries whose name holds every keyword of query (tokenize.h rules), at most
 * max. Returns how many were written to out. A query with no keyword matches
 * nothing. */
size_t index_search(Index *ix, const char *query, size_t query_len, IndexHit *out, size_t max);
/* Entries with this content id, one per owner, at most max (a random
 * choice of owners, in random order, if more have it). */
size_t index_lookup_cid(Index *ix, const uint8_t cid[32], IndexHit *out, size_t max);

/* Caps on the whole index and on one owner, in entries and in bytes (the
 * sum of index_entry_cost); 0: no cap. An add over an owner's cap is
 * INDEX_OWNER_FULL, over a total INDEX_FULL. Lower caps keep what is held
 * and refuse new adds. */
void index_set_limits(Index *ix, size_t max_entries, size_t max_bytes, size_t max_per_owner,
                      size_t max_bytes_per_owner);

size_t index_size(const Index *ix);  /* live entries */
size_t index_bytes(const Index *ix); /* index_entry_cost of the live entries */
/* An upper bound on the memory one entry of this name would cost if added
 * now (its slot, name and table buckets, keyword lists; keyword tables for
 * keywords the index does not hold yet): what byte caps count. */
size_t index_entry_cost(const Index *ix, const char *name, size_t name_len);
size_t index_owner_count(const Index *ix); /* owners with >= 1 entry */
size_t index_owner_entries(const Index *ix, uint64_t owner);
size_t index_owner_bytes(const Index *ix, uint64_t owner); /* as capped */

/* A place in one owner's entries, for reading them in batches while the
 * index changes in between (a group's snapshot, supernode/group.c). Zero it
 * to start at the owner's newest entry; the caller owns it, the index
 * keeps nothing of it. */
typedef struct {
  uint32_t slot;  /* the next entry to read */
  uint32_t stamp; /* its stamp; 0: not started */
  uint32_t epoch; /* the index's stamp epoch when slot and stamp were read */
  bool done;      /* every entry was read */
} IndexCursor;

typedef enum {
  INDEX_WALK_OK,      /* out holds the next entries (none once cur->done) */
  INDEX_WALK_CHANGED, /* all of owner's entries left since cur was taken (a
                       * removal, a reset): nothing read, cur->done set */
} IndexWalk;

/* Reads up to max of owner's entries from cur, newest first, into out
 * (names borrowed until the index next changes), sets *n and moves cur on.
 * An owner's entries only ever leave all together, so a cursor whose entry
 * is still there sees every older entry exactly once; entries added since
 * it started are not read (a caller that wants them has had them as they
 * came). When the index renumbered its stamps in between, the walk starts
 * again from the newest entry (entries are read twice, never missed). */
IndexWalk index_owner_walk(const Index *ix, uint64_t owner, IndexCursor *cur, IndexHit *out,
                           size_t max, size_t *n);

#endif
