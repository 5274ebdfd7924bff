/* fetch.h - one download, sans I/O: which chunk to ask which source for,
 * verification of every chunk against the content id's hash tree, and
 * recovery when a source dies or lies.
 *
 * Sources are the caller's handles (one secure session with a leaf that has
 * the file). The first source asked sends the chunk hashes (TREE pages); they
 * are accepted only if they rebuild the content id. Each chunk then travels as
 * WIRE_PIECE-sized CHUNK pieces and is checked against its leaf hash when
 * complete: a source that sends a bad chunk is dropped and the chunk is asked
 * of another. Chunks already on disk (a resumed download) are offered back
 * with fetch_have() once the tree is known, and only the rest move.
 */
#ifndef CANOPY_FETCH_H
#define CANOPY_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Fetch Fetch;

/* Near the end, second copies of chunks another source still owes that one
 * source may have in flight: enough that a slow source cannot hold up the
 * last percent, few enough that the losing copies (never cancelled) waste
 * at most 1 MiB per source. */
#define FETCH_MAX_DUPS 4

typedef enum {
  FETCH_ACT_SEND,        /* data/len: a message for source src */
  FETCH_ACT_DROP_SOURCE, /* stop using src (reason) */
  FETCH_ACT_NEED_CHECK,  /* the tree is known: the caller may offer chunks it has (fetch_have) */
  FETCH_ACT_WRITE,       /* a verified chunk: data/len at byte offset */
  FETCH_ACT_DONE,        /* every chunk is written */
} FetchActionKind;

typedef struct {
  FetchActionKind kind;
  uint64_t src;
  uint8_t *data; /* owned; fetch_action_clear */
  size_t len;
  uint64_t offset;
  const char *reason;
} FetchAction;

/* size is the file size the search reported (part of the content id: a
 * wrong one simply fails verification). pipeline: chunks in flight per source.
 * NULL if that many chunks cannot be tracked (over 2^32, or out of memory). */
Fetch *fetch_new(const uint8_t cid[32], uint64_t size, unsigned pipeline);
void fetch_free(Fetch *f); /* NULL is a no-op */

void fetch_add_source(Fetch *f, uint64_t src, uint64_t now);
/* The session to src ended; its chunks in flight go back to the queue. */
void fetch_source_lost(Fetch *f, uint64_t src, uint64_t now);
/* A decoded TREE, CHUNK or XFER_ERROR from src. Others are ignored. */
void fetch_recv(Fetch *f, uint64_t src, const void *wire_msg, uint64_t now);
/* Timeouts: a chunk a source sits on too long is asked of another. */
void fetch_tick(Fetch *f, uint64_t now);
uint64_t fetch_next_deadline(const Fetch *f);

/* After NEED_CHECK: the caller read chunk index from disk; if it matches the
 * tree it counts as done. Returns whether it matched. */
bool fetch_have(Fetch *f, uint32_t index, const uint8_t *data, size_t len);
/* Starts asking sources for chunks (after the caller's fetch_have calls). */
void fetch_start_chunks(Fetch *f, uint64_t now);

uint32_t fetch_chunk_count(const Fetch *f);
uint64_t fetch_chunk_offset(const Fetch *f, uint32_t index);
size_t fetch_chunk_len(const Fetch *f, uint32_t index);
uint64_t fetch_bytes_done(const Fetch *f);
/* Verified bytes that came from src (for the summary). */
uint64_t fetch_bytes_from(const Fetch *f, uint64_t src);
unsigned fetch_sources(const Fetch *f); /* sources still in use */
/* Whether a source's chunk hashes rebuilt the content id: then the size
 * given to fetch_new is proven (the id binds it). */
bool fetch_tree_ok(const Fetch *f);
/* Why the last source was dropped (static string), or NULL. The caller
 * decides the download failed when no source is left and none is coming. */
const char *fetch_last_error(const Fetch *f);

bool fetch_next_action(Fetch *f, FetchAction *out);
void fetch_action_clear(FetchAction *a);

#endif
