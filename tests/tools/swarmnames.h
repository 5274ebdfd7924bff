/* swarmnames.h - file names that look like a real share, for canopy-swarm.
 *
 * A benchmark of the index with names like "swarm-12-3" measures short
 * names with three keywords; real shares hold music, films, photos and
 * documents with several words, numbers and an extension, 20 to 120 bytes
 * long. These names are a pure function of (leaf, entry), so any process can
 * tell which names another one published and search for them.
 */
#ifndef CANOPY_SWARMNAMES_H
#define CANOPY_SWARMNAMES_H

#include <stddef.h>
#include <stdint.h>

#define SWARMNAME_MIN 20  /* bytes, at least */
#define SWARMNAME_MAX 120 /* bytes, at most (the wire allows 255) */

/* Writes entry k of leaf i (NUL-terminated, SWARMNAME_MIN..SWARMNAME_MAX
 * bytes, printable ASCII) into name (cap > SWARMNAME_MAX) and, if query is
 * not NULL, two of its keywords separated by a space into query (cap >=
 * 64): a search that finds this entry among others. Returns the name's
 * length. */
size_t swarmname_make(uint64_t leaf, uint64_t k, char *name, size_t cap, char *query, size_t qcap);

#endif
