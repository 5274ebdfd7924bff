/* index.c - a super node's directory of what its leaves share.
 *
 * Layout, chosen so that a million entries stay small and a search touches
 * little memory:
 *   - Entries live in one slot array (64 bytes each) with a free list. Every
 *     add takes the next value of a global stamp counter; a reference is
 *     (slot, stamp) and is live only while the slot still holds that stamp,
 *     so a stale reference to a reused slot never resurrects the old entry.
 *   - Names live length-prefixed in 1 MiB arena blocks, not one malloc each;
 *     removals leave holes that are squeezed out once they outweigh the live
 *     bytes.
 *   - Each keyword has a posting list of references: an entry's stamp, 4
 *     bytes, most of an entry's cost being a reference per keyword. Lists are
 *     only ever appended to with a fresh stamp, so they stay sorted, and a
 *     multi-keyword search is a leapfrog intersection with galloping search:
 *     it reads the lists sequentially and touches entries only for hits. A
 *     stamp table (open addressing, stamp -> slot) finds a hit's slot; a
 *     stamp not in it is a removed entry. (A (slot, stamp) pair per
 *     reference cost 4 bytes more per keyword, 36 per realistic entry.)
 *     A list is one block with its keyword (see Posting): most keywords
 *     are rare, so what a keyword costs besides its refs counts.
 *   - Removal does not search a list: it only counts one more dead reference,
 *     and the list is compacted when dead > live. Each compaction's cost is
 *     paid for by the removals since the last one, so removing an owner is
 *     O(its entries x their keywords) even when they share one huge list.
 *   - Content ids go through an open-addressing table of chain heads; entries
 *     with the same content id form a doubly linked chain, so unlinking one
 *     is O(1) however many leaves share a popular file.
 *   - An owner's entries form a singly linked list: they only ever leave all
 *     together.
 *   - The stamp, content-id, keyword and owner tables are one kind of table
 *     (slots.h: u32 values, open addressing), keyed through callbacks.
 * supernode/MEMORY.md ("What an entry holds") has the bytes.
 */
#include "index.h"

#include "shorthash.h"
#include "slots.h"

#include <glib.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "tokenize.h"

#define NIL UINT32_MAX
#define INDEX_NAME_MAX 255 /* the arena's length prefix is one byte */
#define KEYWORD_BUF (INDEX_NAME_MAX + TOKENIZE_MAX_TOKENS)
#define QUERY_STACK_BUF 512
#define HIT_BATCH 32 /* candidates whose cache misses overlap */
#define ARENA_SHIFT 20
#define ARENA_BLOCK ((size_t)1 << ARENA_SHIFT)
#define ARENA_MAX_BLOCKS ((size_t)1 << (32 - ARENA_SHIFT)) /* offsets fit 32 bits */
/* Chain entries one content-id lookup looks at, at most; with at most
 * INDEX_NAMES_PER_CID entries per owner in a chain, that is at least 64
 * owners. */
#define INDEX_CID_SCAN 4096
#define INDEX_ENTRY_COST 128 /* see entry_cost */
#define INDEX_REF_COST 16
#define INDEX_WORD_COST 40 /* see word_cost; the id's part: INDEX_WORD_ID_COST */
/* Size classes of keyword lists (posting_bytes): the largest, 8 GiB,
 * holds 2^31 refs, so a capacity fits a u32. */
#define POSTING_CLASS_MAX 29

/* Stamps run from 1 (0 marks a free slot) to below this; reaching it makes
 * the index renumber the live entries 1..n, which keeps list order. Tests
 * lower it to exercise that path. */
#ifndef INDEX_STAMP_LIMIT
#define INDEX_STAMP_LIMIT UINT32_MAX
#endif

typedef struct {
  uint8_t cid[32];
  uint64_t size;
  uint32_t name_off;   /* arena offset of a u8 length and the name bytes */
  uint32_t owner;      /* owner id; NIL while the slot is free */
  uint32_t stamp;      /* of the add that filled the slot; 0 while free */
  uint32_t next_owned; /* the owner's next entry; free-list link when free */
  uint32_t cid_prev;   /* NIL at the chain head (the one the table points to) */
  uint32_t cid_next;
} Entry;
G_STATIC_ASSERT(sizeof(Entry) == 64); /* one cache line; the bulk of the index */

typedef uint32_t Ref; /* an entry's stamp */

/* A keyword's list: one allocation holding the header, the keyword and
 * the refs, so a rare keyword (most of them) costs one small malloc chunk
 * (32 bytes for a keyword of up to 10 bytes and its first ref) instead of
 * a header, a string and an array. Blocks come in size classes that fill
 * glibc's chunks exactly (posting_bytes); growing moves the block to the
 * next class, and the list's id (Index.words) stays. */
typedef struct {
  uint32_t len;  /* refs in use, live and dead */
  uint32_t dead; /* refs whose entry is gone; invariant: len - dead >= 1 */
  uint8_t wlen;  /* keyword bytes (a keyword is at most INDEX_NAME_MAX) */
  uint8_t cls;   /* size class: the block is posting_bytes(cls) */
  char word[];   /* wlen bytes, no NUL; the refs follow at posting_refs() */
} Posting;
/* A 10-byte header: 4 bytes fewer (a u32 capacity) would put half of the
 * rare realistic keywords (8 bytes: dates) in a 48-byte chunk. */
G_STATIC_ASSERT(offsetof(Posting, word) == 10);

/* Its id is its place in Index.owners (owner_id). */
typedef struct {
  uint64_t handle; /* the key of owner_tab */
  uint8_t peer[32];
  size_t bytes;   /* entry_cost of its entries, word_cost of the keywords it added */
  uint32_t head;  /* first entry slot */
  uint32_t count; /* >= 1 while the owner is registered; entries are slots */
} Owner;
G_STATIC_ASSERT(sizeof(Owner) == 56); /* 6 bytes an entry of a leaf with 10 */

struct Index {
  size_t max_per_owner;
  /* Caps (index_set_limits); SIZE_MAX: none. Bytes are index_entry_cost
   * summed over the live entries. */
  size_t max_entries, max_bytes, max_bytes_per_owner;
  size_t bytes;

  Entry *slots;
  uint32_t nslots; /* slots ever used; those below are live or on the free list */
  uint32_t slots_cap;
  uint32_t free_head;
  uint32_t next_stamp;
  uint32_t stamp_epoch; /* one more at each renumbering (IndexCursor) */
  size_t live;

  uint8_t **blocks; /* name arena; a name never straddles two blocks */
  size_t nblocks;
  size_t blocks_cap;
  size_t arena_len;  /* next write offset; <= nblocks * ARENA_BLOCK */
  size_t arena_dead; /* bytes below arena_len holding no live name */

  Slots st;  /* live slots by stamp */
  Slots cid; /* chain-head slots by content id */

  Slots w_tab;     /* keyword ids by the keyword's hash */
  Posting **words; /* id -> list; NULL when the id is free */
  uint32_t nwords; /* ids ever used (each INDEX_WORD_ID_COST in index_bytes, for good) */
  uint32_t words_cap;
  GArray *free_word_ids; /* uint32_t */
  /* Owners in one array (an Owner is 56 bytes; a GHashTable and an
   * allocation each cost 130 a leaf, 13 per entry of a leaf with 10). The
   * array never shrinks: at most 84 bytes per leaf a node ever held at
   * once, its own (max-leaves) or its leader's as a backup, and the memory
   * plan's per-session share (576 KiB, memplan.c) covers it. */
  Slots owner_tab;  /* owner ids by handle */
  Owner *owners;    /* id -> Owner; ids not in owner_tab are free */
  uint32_t nowners; /* ids ever used */
  uint32_t owners_cap;
  GArray *free_owner_ids; /* uint32_t */
};

/* ---- names ------------------------------------------------------------ */

static const uint8_t *arena_at(const Index *ix, uint32_t off)
{
  return ix->blocks[off >> ARENA_SHIFT] + (off & (ARENA_BLOCK - 1));
}

static const char *entry_name(const Index *ix, const Entry *e, size_t *len)
{
  const uint8_t *p = arena_at(ix, e->name_off);
  *len = p[0];
  return (const char *)p + 1;
}

/* Appends a block to a block list, growing it; false on no memory. */
static bool blocks_push(uint8_t ***blocks, size_t *n, size_t *cap)
{
  if (*n == ARENA_MAX_BLOCKS)
    return false;
  if (*n == *cap) {
    size_t c = *cap ? *cap * 2 : 16;
    uint8_t **b = realloc(*blocks, c * sizeof *b);
    if (!b)
      return false;
    *blocks = b;
    *cap = c;
  }
  uint8_t *blk = malloc(ARENA_BLOCK);
  if (!blk)
    return false;
  (*blocks)[(*n)++] = blk;
  return true;
}

/* Makes arena_len a place where need bytes fit in one block. */
static bool arena_reserve(Index *ix, size_t need)
{
  size_t used = ix->arena_len & (ARENA_BLOCK - 1);
  if ((ix->arena_len >> ARENA_SHIFT) < ix->nblocks && ARENA_BLOCK - used >= need)
    return true;
  if (!blocks_push(&ix->blocks, &ix->nblocks, &ix->blocks_cap))
    return false;
  /* The unused tail of the previous block counts as dead space. */
  size_t start = (ix->nblocks - 1) << ARENA_SHIFT;
  ix->arena_dead += start - ix->arena_len;
  ix->arena_len = start;
  return true;
}

static void blocks_free(uint8_t **blocks, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free(blocks[i]);
  free(blocks);
}

/* Copies live names into fresh blocks, dropping removed ones. Called only
 * when dead bytes outweigh live ones, so its cost is covered by the removals
 * that made them dead. Failing to allocate just leaves the holes. */
static void arena_compact(Index *ix)
{
  size_t live = ix->arena_len - ix->arena_dead;
  /* Each block loses at most one name's worth to its tail. */
  size_t want = live / (ARENA_BLOCK - 1 - INDEX_NAME_MAX) + 1;
  if (want > ARENA_MAX_BLOCKS)
    return;
  uint8_t **nb = NULL;
  size_t n = 0, cap = 0;
  while (n < want) {
    if (!blocks_push(&nb, &n, &cap)) {
      blocks_free(nb, n);
      return;
    }
  }
  size_t off = 0;
  for (uint32_t s = 0; s < ix->nslots; s++) {
    Entry *e = &ix->slots[s];
    if (e->stamp == 0)
      continue;
    const uint8_t *p = arena_at(ix, e->name_off);
    size_t len = 1 + (size_t)p[0];
    if (ARENA_BLOCK - (off & (ARENA_BLOCK - 1)) < len)
      off = ((off >> ARENA_SHIFT) + 1) << ARENA_SHIFT;
    memcpy(nb[off >> ARENA_SHIFT] + (off & (ARENA_BLOCK - 1)), p, len);
    e->name_off = (uint32_t)off;
    off += len;
  }
  size_t keep = (off + ARENA_BLOCK - 1) >> ARENA_SHIFT;
  for (size_t i = keep; i < n; i++)
    free(nb[i]);
  blocks_free(ix->blocks, ix->nblocks);
  ix->blocks = nb;
  ix->nblocks = keep;
  ix->blocks_cap = cap;
  ix->arena_len = off;
  ix->arena_dead = off - live; /* block tails skipped above */
}

/* ---- content-id table ------------------------------------------------- */

/* SipHash of all 32 bytes under the process's secret key (shorthash.h),
 * top bits: a peer that picks content ids cannot aim them at one bucket run.
 * (A seeded multiply-xor mix is not a PRF; its collisions can be found
 * without the seed. Chains and results never depend on buckets.) */
static uint64_t cid_hash(const void *ctx, uint32_t slot)
{
  const Index *ix = ctx;
  return shorthash(ix->slots[slot].cid, 32);
}

static bool cid_eq(const void *ctx, uint32_t slot, const void *cid)
{
  const Index *ix = ctx;
  return memcmp(ix->slots[slot].cid, cid, 32) == 0;
}

/* Bucket holding the chain for cid, or SIZE_MAX. */
static size_t cid_find(const Index *ix, const uint8_t cid[32])
{
  return slots_find(&ix->cid, shorthash(cid, 32), cid_eq, ix, cid);
}

/* Makes room for one more chain. */
static bool cid_reserve(Index *ix)
{
  return slots_reserve(&ix->cid, cid_hash, ix);
}

static void cid_link(Index *ix, uint32_t slot)
{
  Entry *e = &ix->slots[slot];
  size_t pos = cid_find(ix, e->cid);
  e->cid_prev = NIL;
  if (pos == SIZE_MAX) {
    e->cid_next = NIL;
    slots_insert(&ix->cid, slot, cid_hash(ix, slot));
    return;
  }
  /* New entries go first: the table holds the head, so retarget it. */
  e->cid_next = ix->cid.tab[pos];
  ix->slots[e->cid_next].cid_prev = slot;
  ix->cid.tab[pos] = slot;
}

static void cid_unlink(Index *ix, uint32_t slot)
{
  Entry *e = &ix->slots[slot];
  if (e->cid_next != NIL)
    ix->slots[e->cid_next].cid_prev = e->cid_prev;
  if (e->cid_prev != NIL) {
    ix->slots[e->cid_prev].cid_next = e->cid_next;
    return;
  }
  size_t pos = cid_find(ix, e->cid);
  g_assert(pos != SIZE_MAX && ix->cid.tab[pos] == slot);
  if (e->cid_next != NIL)
    ix->cid.tab[pos] = e->cid_next;
  else
    slots_delete(&ix->cid, pos, cid_hash, ix);
}

/* ---- stamp table ------------------------------------------------------ */

/* Stamps are ours, handed out in sequence, so a multiplicative (Fibonacci)
 * hash spreads them evenly and no peer can aim them at one bucket run. */
static uint64_t st_hash_stamp(uint32_t stamp)
{
  return (uint64_t)(uint32_t)(stamp * UINT32_C(0x9E3779B1)) << 32;
}

static uint64_t st_hash(const void *ctx, uint32_t slot)
{
  const Index *ix = ctx;
  return st_hash_stamp(ix->slots[slot].stamp);
}

static bool st_eq(const void *ctx, uint32_t slot, const void *stamp)
{
  const Index *ix = ctx;
  return ix->slots[slot].stamp == *(const uint32_t *)stamp;
}

/* The bucket holding stamp's slot, or SIZE_MAX when no live entry has it. */
static size_t st_find(const Index *ix, uint32_t stamp)
{
  return slots_find(&ix->st, st_hash_stamp(stamp), st_eq, ix, &stamp);
}

/* The slot of the live entry with this stamp, or NIL. */
static uint32_t st_slot(const Index *ix, uint32_t stamp)
{
  size_t pos = st_find(ix, stamp);
  return pos == SIZE_MAX ? NIL : ix->st.tab[pos];
}

/* Refills the table from the slots' stamps (after a renumbering). */
static void st_rebuild(Index *ix)
{
  slots_reset(&ix->st);
  for (uint32_t s = 0; s < ix->nslots; s++)
    if (ix->slots[s].stamp != 0)
      slots_insert(&ix->st, s, st_hash(ix, s));
}

/* Room for one more (short probe runs for the stamps of removed entries,
 * which a search and a compaction look up). */
static bool st_reserve(Index *ix)
{
  return slots_reserve(&ix->st, st_hash, ix);
}

/* ---- keyword table ---------------------------------------------------- */

/* Most keywords of a real share are rare (dates, numbers: 31,157 distinct
 * ones in 100,000 realistic names), so what a keyword costs besides its
 * refs matters: a bucket here is a u32 id (the list's pointer is in
 * Index.words), against three arrays of a GHashTable (key, value, hash: 20
 * bytes a bucket). */

/* Keywords come from peers: a keyed hash keeps them from choosing
 * colliding ones. Not stored: growing the table and deleting from it hash
 * the keywords again, which costs less than 4 bytes a keyword would. */
static uint64_t word_hash(const char *w, size_t len)
{
  return shorthash(w, len);
}

static uint64_t w_hash(const void *ctx, uint32_t id)
{
  const Index *ix = ctx;
  return word_hash(ix->words[id]->word, ix->words[id]->wlen);
}

typedef struct {
  const char *word;
  size_t len;
} WordKey;

static bool w_eq(const void *ctx, uint32_t id, const void *key)
{
  const Index *ix = ctx;
  const WordKey *k = key;
  const Posting *p = ix->words[id];
  return p->wlen == k->len && memcmp(p->word, k->word, k->len) == 0;
}

/* The id of word's list, or NIL. */
static uint32_t w_id(const Index *ix, const char *word)
{
  WordKey k = {word, strlen(word)};
  if (k.len > INDEX_NAME_MAX)
    return NIL; /* a query's: no name has it */
  size_t pos = slots_find(&ix->w_tab, word_hash(k.word, k.len), w_eq, ix, &k);
  return pos == SIZE_MAX ? NIL : ix->w_tab.tab[pos];
}

static Posting *w_get(const Index *ix, const char *word)
{
  uint32_t id = w_id(ix, word);
  return id == NIL ? NULL : ix->words[id];
}

/* Room for one more list: a bucket and an id. */
static bool w_reserve(Index *ix)
{
  if (ix->free_word_ids->len == 0 && ix->nwords == ix->words_cap) {
    if (ix->words_cap >= NIL / 2)
      return false;
    uint32_t cap = ix->words_cap ? ix->words_cap + ix->words_cap / 2 : 1024;
    Posting **w = realloc(ix->words, (size_t)cap * sizeof *w);
    if (!w)
      return false;
    ix->words = w;
    ix->words_cap = cap;
  }
  return slots_reserve(&ix->w_tab, w_hash, ix);
}

/* Adds p (after w_reserve); its word must not be there yet. Returns its id. */
static uint32_t w_add(Index *ix, Posting *p)
{
  uint32_t id;
  if (ix->free_word_ids->len > 0) {
    id = g_array_index(ix->free_word_ids, uint32_t, ix->free_word_ids->len - 1);
    g_array_set_size(ix->free_word_ids, ix->free_word_ids->len - 1);
  } else {
    id = ix->nwords++;
  }
  ix->words[id] = p;
  slots_insert(&ix->w_tab, id, word_hash(p->word, p->wlen));
  return id;
}

/* Takes list id out of the table and frees it. */
static void w_remove(Index *ix, uint32_t id)
{
  const Posting *p = ix->words[id];
  WordKey k = {p->word, p->wlen};
  size_t pos = slots_find(&ix->w_tab, word_hash(k.word, k.len), w_eq, ix, &k);
  g_assert(pos != SIZE_MAX && ix->w_tab.tab[pos] == id);
  slots_delete(&ix->w_tab, pos, w_hash, ix);
  free(ix->words[id]);
  ix->words[id] = NULL;
  g_array_append_val(ix->free_word_ids, id);
}

/* ---- postings --------------------------------------------------------- */

/* Where the refs start in a list of a wlen-byte keyword: 4-byte aligned. */
static size_t refs_off(size_t wlen)
{
  return (offsetof(Posting, word) + wlen + 3) & ~(size_t)3;
}

static Ref *posting_refs(const Posting *p)
{
  return (Ref *)((char *)p + refs_off(p->wlen));
}

/* Bytes of a block of class cls: 24, 40, 72, 136, ... (16 << cls) + 8. A
 * request of that size fills a glibc chunk of (16 << cls) + 16 exactly
 * (8 bytes of it the chunk's header; chunks go in steps of 16), so no room
 * is lost to rounding, and each class is about twice the one before. */
static size_t posting_bytes(unsigned cls)
{
  return ((size_t)16 << cls) + 8;
}

static uint32_t posting_cap(const Posting *p)
{
  return (uint32_t)((posting_bytes(p->cls) - refs_off(p->wlen)) / sizeof(Ref));
}

/* The smallest class whose block holds min refs after a wlen-byte
 * keyword, or POSTING_CLASS_MAX + 1 past the largest. */
static unsigned posting_class(size_t wlen, size_t min)
{
  unsigned cls = 0;
  while (cls <= POSTING_CLASS_MAX && posting_bytes(cls) < refs_off(wlen) + min * sizeof(Ref))
    cls++;
  return cls;
}

static Posting *posting_new(const char *word)
{
  size_t n = strlen(word);
  unsigned cls = posting_class(n, 1);
  Posting *p = malloc(posting_bytes(cls));
  if (!p)
    return NULL;
  p->len = p->dead = 0;
  p->cls = (uint8_t)cls;
  p->wlen = (uint8_t)n;
  memcpy(p->word, word, n);
  return p;
}

/* Room for one more ref in list id; may move it (Index.words follows). */
static bool posting_reserve(Index *ix, uint32_t id)
{
  Posting *p = ix->words[id];
  if (p->len < posting_cap(p))
    return true;
  if (p->cls >= POSTING_CLASS_MAX)
    return false;
  /* Doubling. Slower growth (by 1/8 past 1,024 refs) held less on the
   * heap but more in RSS: every move leaves a freed block behind, and
   * thousands of lists growing in turn leave the heap full of holes
   * (realistic names: 20 bytes of free heap per entry at 1/8, 2 at
   * doubling; bench_index, 206 against 188 bytes of RSS per entry at a
   * million). A list past malloc's mmap threshold moves
   * by mremap, and its unwritten tail takes no RAM at all. */
  Posting *q = realloc(p, posting_bytes(p->cls + 1u));
  if (!q)
    return false;
  q->cls++;
  ix->words[id] = q;
  return true;
}

static void posting_compact(Index *ix, uint32_t id)
{
  Posting *p = ix->words[id];
  Ref *refs = posting_refs(p);
  uint32_t n = 0;
  for (uint32_t i = 0; i < p->len; i++) {
    Ref r = refs[i];
    if (st_find(ix, r) != SIZE_MAX)
      refs[n++] = r;
  }
  p->len = n;
  p->dead = 0;
  /* Give memory back whenever more than twice the live refs fit: until the
   * next compaction (dead refs outnumber live ones) live refs stay at
   * least half of n, so the block holds at most 4 slots per live ref, the
   * 16 bytes INDEX_REF_COST charges. (Shrinking only below a quarter let
   * a list hold 8 per live ref after two compactions.) A shrink follows n/2
   * removals at least: amortised O(1). Keep the old block on failure. */
  unsigned cls = posting_class(p->wlen, n + 1);
  if (posting_cap(p) > 2 * n && cls < p->cls) {
    Posting *q = realloc(p, posting_bytes(cls));
    if (q) {
      q->cls = (uint8_t)cls;
      ix->words[id] = q;
    }
  }
}

/* The entry a Ref named has gone: count it, and compact or drop the list. */
static size_t word_cost(size_t word_len);

static void posting_note_dead(Index *ix, uint32_t id)
{
  Posting *p = ix->words[id];
  p->dead++;
  uint32_t live = p->len - p->dead;
  if (live == 0) {
    ix->bytes -= word_cost(p->wlen);
    w_remove(ix, id);
  } else if (p->dead > live) {
    posting_compact(ix, id);
  }
}

/* ---- owners ----------------------------------------------------------- */

/* Handles are the caller's (connection ids), but a keyed hash costs
 * little here and takes no trust. */
static uint64_t owner_hash_handle(uint64_t handle)
{
  return shorthash(&handle, sizeof handle);
}

static uint64_t owner_hash(const void *ctx, uint32_t id)
{
  const Index *ix = ctx;
  return owner_hash_handle(ix->owners[id].handle);
}

static bool owner_eq(const void *ctx, uint32_t id, const void *handle)
{
  const Index *ix = ctx;
  return ix->owners[id].handle == *(const uint64_t *)handle;
}

static uint32_t owner_id(const Index *ix, const Owner *o)
{
  return (uint32_t)(o - ix->owners);
}

/* The owner with this handle, or NULL; valid until an owner registers. */
static Owner *owner_lookup(const Index *ix, uint64_t handle)
{
  size_t pos = slots_find(&ix->owner_tab, owner_hash_handle(handle), owner_eq, ix, &handle);
  return pos == SIZE_MAX ? NULL : &ix->owners[ix->owner_tab.tab[pos]];
}

/* Room for one more owner (an id and a bucket). */
static bool owner_reserve(Index *ix)
{
  if (ix->free_owner_ids->len == 0 && ix->nowners == ix->owners_cap) {
    if (ix->owners_cap >= NIL / 2)
      return false;
    uint32_t cap = ix->owners_cap ? ix->owners_cap + ix->owners_cap / 2 : 64;
    Owner *o = realloc(ix->owners, (size_t)cap * sizeof *o);
    if (!o)
      return false;
    ix->owners = o;
    ix->owners_cap = cap;
  }
  return slots_reserve(&ix->owner_tab, owner_hash, ix);
}

/* After owner_reserve. Moves the owners: earlier Owner pointers are stale. */
static Owner *owner_register(Index *ix, uint64_t handle, const uint8_t peer[32])
{
  uint32_t id;
  if (ix->free_owner_ids->len > 0) {
    id = g_array_index(ix->free_owner_ids, uint32_t, ix->free_owner_ids->len - 1);
    g_array_set_size(ix->free_owner_ids, ix->free_owner_ids->len - 1);
  } else {
    id = ix->nowners++;
  }
  Owner *o = &ix->owners[id];
  memset(o, 0, sizeof *o);
  o->handle = handle;
  memcpy(o->peer, peer, 32);
  o->head = NIL;
  slots_insert(&ix->owner_tab, id, owner_hash_handle(handle));
  return o;
}

static void owner_unregister(Index *ix, Owner *o)
{
  size_t pos = slots_find(&ix->owner_tab, owner_hash_handle(o->handle), owner_eq, ix, &o->handle);
  g_assert(pos != SIZE_MAX && ix->owner_tab.tab[pos] == owner_id(ix, o));
  slots_delete(&ix->owner_tab, pos, owner_hash, ix);
  uint32_t id = owner_id(ix, o);
  g_array_append_val(ix->free_owner_ids, id);
}

/* ---- entries ---------------------------------------------------------- */

static bool slot_reserve(Index *ix)
{
  if (ix->free_head != NIL || ix->nslots < ix->slots_cap)
    return true;
  /* NIL is never a slot number */
  if (ix->slots_cap >= NIL / 2)
    return false;
  uint32_t cap = ix->slots_cap ? ix->slots_cap + ix->slots_cap / 2 : 1024;
  Entry *s = realloc(ix->slots, (size_t)cap * sizeof *s);
  if (!s)
    return false;
  ix->slots = s;
  ix->slots_cap = cap;
  return true;
}

static uint32_t slot_take(Index *ix)
{
  if (ix->free_head != NIL) {
    uint32_t s = ix->free_head;
    ix->free_head = ix->slots[s].next_owned;
    return s;
  }
  return ix->nslots++;
}

/* What an entry costs in memory at most, over everything that holds it
 * (supernode/MEMORY.md): its slot (64 bytes, up to half as much again in
 * the array's slack) and its buckets in the stamp and content-id tables (4
 * bytes each at a load of 7/16 or more, slots.h): INDEX_ENTRY_COST; its name in the
 * arena, which may hold as much again in holes before compacting (2 x the
 * name); and per keyword a 4-byte ref in the keyword's list, with the
 * list's growth (lists double: as much again) and its dead refs before
 * compaction (as many as live ones): INDEX_REF_COST. The roster keeps no copy (issue
 * 12). An upper bound, so that budgets in these bytes bound memory. */
static size_t entry_cost(size_t name_len, size_t ntokens)
{
  return INDEX_ENTRY_COST + 2 * name_len + ntokens * INDEX_REF_COST;
}

/* What a keyword's list costs while it lives besides its refs: its block
 * is a size class of twice the one before (posting_bytes), chosen when the
 * smaller one was full, so it holds at most twice the header (10 bytes),
 * the keyword and the refs' alignment (3), the refs' half of that being in
 * INDEX_REF_COST; with malloc's 8-byte chunk header, 34 + 2 x the keyword:
 * INDEX_WORD_COST with a margin. (A list of one ref and a keyword of up to
 * 10 bytes takes one 32-byte chunk.) Counted in the index's total from the
 * list's creation to its end, and in the share of the owner whose entry
 * created it. Its id costs INDEX_WORD_ID_COST more, in the total for good
 * (index.h), and in that owner's share when the list took a new id. */
static size_t word_cost(size_t word_len)
{
  return INDEX_WORD_COST + 2 * word_len;
}

/* entry_cost plus word_cost of the keywords the index does not hold yet,
 * and INDEX_WORD_ID_COST for each new id among them once the free ids are
 * used up (it stays in ix->bytes after the list goes: index.h). */
static size_t add_cost(const Index *ix, size_t name_len, const char *const *tok, size_t nt)
{
  size_t cost = entry_cost(name_len, nt), fresh = 0, reuse = ix->free_word_ids->len;
  for (size_t k = 0; k < nt; k++) {
    if (!w_get(ix, tok[k])) {
      cost += word_cost(strlen(tok[k]));
      if (reuse > 0)
        reuse--;
      else
        fresh++;
    }
  }
  return cost + fresh * INDEX_WORD_ID_COST;
}

size_t index_entry_cost(const Index *ix, const char *name, size_t name_len)
{
  char buf[KEYWORD_BUF];
  const char *tok[TOKENIZE_MAX_TOKENS];
  if (name_len > INDEX_NAME_MAX)
    name_len = INDEX_NAME_MAX;
  size_t nt = tokenize(name, name_len, buf, sizeof buf, tok, TOKENIZE_MAX_TOKENS);
  return add_cost(ix, name_len, tok, nt);
}

static void entry_remove(Index *ix, uint32_t slot)
{
  Entry *e = &ix->slots[slot];
  char buf[KEYWORD_BUF];
  const char *tok[TOKENIZE_MAX_TOKENS];
  size_t nlen;
  const char *name = entry_name(ix, e, &nlen);
  /* Same name, same tokenizer: exactly the keywords it was posted under. */
  size_t nt = tokenize(name, nlen, buf, sizeof buf, tok, TOKENIZE_MAX_TOKENS);

  uint32_t owner_id = e->owner;
  slots_delete(&ix->st, st_find(ix, e->stamp), st_hash, ix);
  e->stamp = 0; /* from here on, its Refs are dead */
  e->owner = NIL;
  for (size_t k = 0; k < nt; k++) {
    uint32_t id = w_id(ix, tok[k]);
    g_assert(id != NIL);
    posting_note_dead(ix, id);
  }
  cid_unlink(ix, slot);
  ix->arena_dead += 1 + nlen;
  size_t cost = entry_cost(nlen, nt);
  ix->bytes -= cost;
  ix->owners[owner_id].bytes -= cost;
  e->next_owned = ix->free_head;
  ix->free_head = slot;
  ix->live--;
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static bool name_equal(const Index *ix, const Entry *e, const char *name, size_t len)
{
  size_t elen;
  const char *en = entry_name(ix, e, &elen);
  return elen == len && memcmp(en, name, len) == 0;
}

/* Reassigns the live entries stamps 1..n in their current order, so the
 * counter can go on; every list stays sorted because the mapping is
 * monotonic. Runs once per ~4 billion adds. */
static bool stamps_renumber(Index *ix)
{
  uint64_t *order = malloc((ix->live + 1) * sizeof *order);
  if (!order)
    return false;
  /* Drop dead refs while the old stamps still tell them apart. */
  for (uint32_t w = 0; w < ix->nwords; w++)
    if (ix->words[w])
      posting_compact(ix, w);
  size_t n = 0;
  for (uint32_t s = 0; s < ix->nslots; s++)
    if (ix->slots[s].stamp != 0)
      order[n++] = (uint64_t)ix->slots[s].stamp << 32 | s;
  qsort(order, n, sizeof *order, cmp_u64);
  /* Every ref is live now: turn each into its slot while the table still
   * knows the old stamps, renumber, then back into (new) stamps. */
  for (uint32_t w = 0; w < ix->nwords; w++) {
    Posting *p = ix->words[w];
    Ref *refs = p ? posting_refs(p) : NULL;
    for (uint32_t i = 0; p && i < p->len; i++)
      refs[i] = st_slot(ix, refs[i]);
  }
  for (size_t i = 0; i < n; i++)
    ix->slots[(uint32_t)order[i]].stamp = (uint32_t)(i + 1);
  for (uint32_t w = 0; w < ix->nwords; w++) {
    Posting *p = ix->words[w];
    Ref *refs = p ? posting_refs(p) : NULL;
    for (uint32_t i = 0; p && i < p->len; i++)
      refs[i] = ix->slots[refs[i]].stamp;
  }
  st_rebuild(ix);
  ix->next_stamp = (uint32_t)(n + 1);
  ix->stamp_epoch++;
  free(order);
  return true;
}

/* ---- API -------------------------------------------------------------- */

Index *index_new(size_t max_per_owner)
{
  Index *ix = calloc(1, sizeof *ix);
  if (!ix)
    return NULL;
  ix->max_per_owner = max_per_owner;
  ix->max_entries = ix->max_bytes = ix->max_bytes_per_owner = SIZE_MAX;
  ix->free_head = NIL;
  ix->next_stamp = 1;
  if (!slots_init(&ix->cid) || !slots_init(&ix->st) || !slots_init(&ix->w_tab) ||
      !slots_init(&ix->owner_tab)) {
    slots_free(&ix->cid);
    slots_free(&ix->st);
    slots_free(&ix->w_tab);
    slots_free(&ix->owner_tab);
    free(ix);
    return NULL;
  }
  ix->free_word_ids = g_array_new(FALSE, FALSE, sizeof(uint32_t));
  ix->free_owner_ids = g_array_new(FALSE, FALSE, sizeof(uint32_t));
  return ix;
}

void index_free(Index *ix)
{
  if (!ix)
    return;
  for (uint32_t w = 0; w < ix->nwords; w++)
    free(ix->words[w]);
  free(ix->words);
  g_array_free(ix->free_word_ids, TRUE);
  slots_free(&ix->w_tab);
  slots_free(&ix->owner_tab);
  free(ix->owners);
  g_array_free(ix->free_owner_ids, TRUE);
  slots_free(&ix->cid);
  slots_free(&ix->st);
  blocks_free(ix->blocks, ix->nblocks);
  free(ix->slots);
  free(ix);
}

IndexResult index_add(Index *ix, uint64_t owner, const uint8_t peer[32], const char *name,
                      size_t name_len, uint64_t size, const uint8_t cid[32])
{
  if (name_len == 0 || name_len > INDEX_NAME_MAX)
    return INDEX_BADNAME;
  Owner *o = owner_lookup(ix, owner);
  size_t pos = cid_find(ix, cid);
  /* Duplicate before full: re-publishing what is already there is
   * harmless, and the leaf should hear so even at its cap. */
  size_t names = 0; /* o's entries with this content id */
  if (o && pos != SIZE_MAX) {
    for (uint32_t s = ix->cid.tab[pos]; s != NIL; s = ix->slots[s].cid_next) {
      if (ix->slots[s].owner != owner_id(ix, o))
        continue;
      if (name_equal(ix, &ix->slots[s], name, name_len))
        return INDEX_DUPLICATE;
      names++;
    }
  }
  /* One leaf's many names for one file would push other leaves' entries
   * past what a content-id lookup scans (INDEX_CID_SCAN). */
  if (names >= INDEX_NAMES_PER_CID)
    return INDEX_CID_FULL;
  char buf[KEYWORD_BUF];
  const char *tok[TOKENIZE_MAX_TOKENS];
  uint32_t post[TOKENIZE_MAX_TOKENS]; /* list ids */
  size_t nt = tokenize(name, name_len, buf, sizeof buf, tok, TOKENIZE_MAX_TOKENS);
  size_t cost = add_cost(ix, name_len, tok, nt);
  if ((o ? o->count : 0) >= ix->max_per_owner ||
      (o ? o->bytes : 0) + cost > ix->max_bytes_per_owner)
    return INDEX_OWNER_FULL;
  if (ix->live >= ix->max_entries || ix->bytes + cost > ix->max_bytes)
    return INDEX_FULL;

  if (ix->next_stamp >= INDEX_STAMP_LIMIT &&
      (!stamps_renumber(ix) || ix->next_stamp >= INDEX_STAMP_LIMIT))
    return INDEX_NOMEM;

  /* Reserve everything that can fail before changing anything, so a failed
   * add leaves the index as it was. */
  size_t np = 0;
  if (!slot_reserve(ix) || !arena_reserve(ix, 1 + name_len) || !st_reserve(ix) ||
      (!o && !owner_reserve(ix)) || (pos == SIZE_MAX && !cid_reserve(ix)))
    return INDEX_NOMEM;
  for (; np < nt; np++) {
    uint32_t id = w_id(ix, tok[np]);
    if (id == NIL) {
      Posting *p = w_reserve(ix) ? posting_new(tok[np]) : NULL;
      if (!p)
        goto nomem;
      id = w_add(ix, p);
    }
    post[np] = id;
    if (!posting_reserve(ix, id)) {
      np++;
      goto nomem;
    }
  }

  if (!o)
    o = owner_register(ix, owner, peer);
  uint32_t slot = slot_take(ix);
  Entry *e = &ix->slots[slot];
  memcpy(e->cid, cid, 32);
  e->size = size;
  e->name_off = (uint32_t)ix->arena_len;
  uint8_t *dst = ix->blocks[ix->arena_len >> ARENA_SHIFT] + (ix->arena_len & (ARENA_BLOCK - 1));
  dst[0] = (uint8_t)name_len;
  memcpy(dst + 1, name, name_len);
  ix->arena_len += 1 + name_len;
  e->stamp = ix->next_stamp++;
  slots_insert(&ix->st, slot, st_hash(ix, slot));
  e->owner = owner_id(ix, o);
  e->next_owned = o->head;
  o->head = slot;
  o->count++;
  o->bytes += cost;
  ix->bytes += cost;
  cid_link(ix, slot);
  for (size_t k = 0; k < nt; k++) {
    Posting *p = ix->words[post[k]];
    posting_refs(p)[p->len++] = e->stamp;
  }
  ix->live++;
  return INDEX_OK;

nomem:
  /* Only lists created above can be empty; drop them again. */
  for (size_t k = 0; k < np; k++) {
    if (ix->words[post[k]]->len == 0)
      w_remove(ix, post[k]);
  }
  return INDEX_NOMEM;
}

size_t index_remove_owner(Index *ix, uint64_t owner)
{
  Owner *o = owner_lookup(ix, owner);
  if (!o)
    return 0;
  size_t n = 0;
  for (uint32_t s = o->head, next; s != NIL; s = next) {
    next = ix->slots[s].next_owned;
    entry_remove(ix, s);
    n++;
  }
  owner_unregister(ix, o);
  /* Half a block at least, so small indexes do not copy over and over. */
  if (ix->arena_dead >= ARENA_BLOCK / 2 && ix->arena_dead > ix->arena_len - ix->arena_dead)
    arena_compact(ix);
  return n;
}

static void fill_hit(const Index *ix, const Entry *e, IndexHit *h)
{
  const Owner *o = &ix->owners[e->owner];
  h->name = entry_name(ix, e, &h->name_len);
  h->size = e->size;
  memcpy(h->cid, e->cid, 32);
  memcpy(h->peer, o->peer, 32);
}

/* Turns candidate refs into hits, skipping stale ones; returns how many.
 * Table buckets, entries, names and owners lie scattered in memory:
 * touching a batch in passes lets their cache misses overlap instead of
 * queueing. */
static size_t fill_hits(const Index *ix, const Ref *cand, size_t nc, IndexHit *out)
{
  uint32_t slot[HIT_BATCH];
  size_t n = 0;
  for (size_t i = 0; i < nc; i++)
    __builtin_prefetch(&ix->st.tab[slots_home(&ix->st, st_hash_stamp(cand[i]))]);
  for (size_t i = 0; i < nc; i++) {
    slot[i] = st_slot(ix, cand[i]);
    if (slot[i] != NIL)
      __builtin_prefetch(&ix->slots[slot[i]]);
  }
  for (size_t i = 0; i < nc; i++) {
    if (slot[i] == NIL)
      continue;
    const Entry *e = &ix->slots[slot[i]];
    __builtin_prefetch(arena_at(ix, e->name_off));
    __builtin_prefetch(&ix->owners[e->owner]);
  }
  for (size_t i = 0; i < nc; i++)
    if (slot[i] != NIL)
      fill_hit(ix, &ix->slots[slot[i]], &out[n++]);
  return n;
}

/* First position >= from whose stamp is >= target, or p->len: doubling
 * steps, then binary search, so skipping k refs costs O(log k). */
static uint32_t posting_seek(const Posting *p, uint32_t from, uint32_t target)
{
  const Ref *refs = posting_refs(p);
  size_t len = p->len;
  if (from >= len || refs[from] >= target)
    return from;
  size_t below = from, step = 1; /* refs[below] < target */
  size_t hi = from + 1;
  while (hi < len && refs[hi] < target) {
    below = hi;
    step *= 2;
    hi = below + step;
  }
  if (hi > len)
    hi = len;
  size_t lo = below + 1;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (refs[mid] < target)
      lo = mid + 1;
    else
      hi = mid;
  }
  return (uint32_t)lo;
}

static int posting_cmp_len(const void *a, const void *b)
{
  const Posting *x = *(Posting *const *)a, *y = *(Posting *const *)b;
  return (x->len > y->len) - (x->len < y->len);
}

size_t index_search(Index *ix, const char *query, size_t query_len, IndexHit *out, size_t max)
{
  char stack_buf[QUERY_STACK_BUF + TOKENIZE_MAX_TOKENS];
  char *buf = stack_buf;
  size_t bufcap = sizeof stack_buf;
  const char *tok[TOKENIZE_MAX_TOKENS];
  Posting *pl[TOKENIZE_MAX_TOKENS];
  uint32_t at[TOKENIZE_MAX_TOKENS];
  size_t n = 0;
  if (max == 0)
    return 0;
  if (query_len > QUERY_STACK_BUF) {
    bufcap = query_len + TOKENIZE_MAX_TOKENS;
    buf = malloc(bufcap);
    if (!buf)
      return 0;
  }
  /* tokenize() drops repeated keywords, so "a a" is one list, not two. */
  size_t nt = tokenize(query, query_len, buf, bufcap, tok, TOKENIZE_MAX_TOKENS);
  if (nt == 0)
    goto out;
  for (size_t k = 0; k < nt; k++) {
    pl[k] = w_get(ix, tok[k]);
    if (!pl[k])
      goto out; /* some keyword is in no name at all */
    at[k] = 0;
  }
  /* The shortest list leads; the others are sought into. */
  qsort(pl, nt, sizeof pl[0], posting_cmp_len);

  /* Leapfrog intersection on stamps: a stamp in every list is one add
   * that had all the keywords; it is a hit if its slot still holds it. */
  Ref cand[HIT_BATCH];
  size_t nc = 0;
  bool done = false;
  while (!done && at[0] < pl[0]->len) {
    uint32_t target = posting_refs(pl[0])[at[0]];
    bool all = true;
    for (size_t k = 1; k < nt && all; k++) {
      at[k] = posting_seek(pl[k], at[k], target);
      if (at[k] == pl[k]->len) {
        done = true; /* list k has nothing at or after target */
        all = false;
      } else if (posting_refs(pl[k])[at[k]] != target) {
        at[0] = posting_seek(pl[0], at[0] + 1, posting_refs(pl[k])[at[k]]);
        all = false;
      }
    }
    if (!all)
      continue;
    cand[nc++] = posting_refs(pl[0])[at[0]++];
    if (nc == HIT_BATCH || nc == max - n) {
      n += fill_hits(ix, cand, nc, out + n);
      nc = 0;
      done = n == max;
    }
  }
  n += fill_hits(ix, cand, nc, out + n);
out:
  if (buf != stack_buf)
    free(buf);
  return n;
}

/* One hit per owner: the names are the owner's to choose, so a leaf that
 * publishes the id under many names must not fill the answer. Past max
 * owners, a uniform sample of them (reservoir sampling), so neither the
 * newest publisher (the chain's head) nor the oldest is favoured. At most
 * INDEX_CID_SCAN entries of the chain are looked at per lookup: CPU per
 * query stays bounded whatever a leaf publishes. */
size_t index_lookup_cid(Index *ix, const uint8_t cid[32], IndexHit *out, size_t max)
{
  size_t pos = cid_find(ix, cid);
  if (pos == SIZE_MAX || max == 0)
    return 0;
  /* Owners seen: a few in a list, more in a set (the list's scan would
   * grow with the square of them). */
  uint32_t few[32];
  GHashTable *many = NULL;
  size_t owners = 0, n = 0, scanned = 0;
  for (uint32_t s = ix->cid.tab[pos]; s != NIL && scanned < INDEX_CID_SCAN;
       s = ix->slots[s].cid_next, scanned++) {
    uint32_t owner = ix->slots[s].owner;
    bool dup = false;
    for (size_t i = 0; i < MIN(owners, G_N_ELEMENTS(few)) && !dup; i++)
      dup = few[i] == owner;
    if (!dup && many)
      dup = !g_hash_table_add(many, GUINT_TO_POINTER(owner + 1));
    if (dup)
      continue;
    if (owners < G_N_ELEMENTS(few))
      few[owners] = owner;
    else if (!many) {
      many = g_hash_table_new(g_direct_hash, g_direct_equal);
      g_hash_table_add(many, GUINT_TO_POINTER(owner + 1));
    }
    owners++;
    if (n < max) {
      fill_hit(ix, &ix->slots[s], &out[n++]);
    } else {
      size_t j = (size_t)g_random_int_range(0, (gint32)owners);
      if (j < max)
        fill_hit(ix, &ix->slots[s], &out[j]);
    }
  }
  if (many)
    g_hash_table_destroy(many);
  /* The first max owners came in chain order: shuffle them too. */
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)g_random_int_range(0, (gint32)i);
    IndexHit t = out[i - 1];
    out[i - 1] = out[j];
    out[j] = t;
  }
  return n;
}

size_t index_size(const Index *ix)
{
  return ix->live;
}

size_t index_bytes(const Index *ix)
{
  return ix->bytes;
}

void index_set_limits(Index *ix, size_t max_entries, size_t max_bytes, size_t max_per_owner,
                      size_t max_bytes_per_owner)
{
  ix->max_entries = max_entries ? max_entries : SIZE_MAX;
  ix->max_bytes = max_bytes ? max_bytes : SIZE_MAX;
  ix->max_per_owner = max_per_owner ? max_per_owner : SIZE_MAX;
  ix->max_bytes_per_owner = max_bytes_per_owner ? max_bytes_per_owner : SIZE_MAX;
}

size_t index_owner_count(const Index *ix)
{
  return ix->owner_tab.used;
}

size_t index_owner_bytes(const Index *ix, uint64_t owner)
{
  const Owner *o = owner_lookup(ix, owner);
  return o ? o->bytes : 0;
}

size_t index_owner_entries(const Index *ix, uint64_t owner)
{
  const Owner *o = owner_lookup(ix, owner);
  return o ? o->count : 0;
}

IndexWalk index_owner_walk(const Index *ix, uint64_t owner, IndexCursor *cur, IndexHit *out,
                           size_t max, size_t *n)
{
  *n = 0;
  if (cur->done)
    return INDEX_WALK_OK;
  const Owner *o = owner_lookup(ix, owner);
  uint32_t s;
  if (cur->stamp == 0 || cur->epoch != ix->stamp_epoch) {
    /* Not started, or renumbered: stamps no longer name entries. */
    s = o ? o->head : NIL;
  } else if (cur->slot < ix->nslots && ix->slots[cur->slot].stamp == cur->stamp) {
    /* Stamps are never reused, so the entry is the one the cursor took,
     * and with it every older entry of its owner. */
    s = cur->slot;
  } else {
    cur->done = true;
    return INDEX_WALK_CHANGED;
  }
  for (; s != NIL && *n < max; s = ix->slots[s].next_owned)
    fill_hit(ix, &ix->slots[s], &out[(*n)++]);
  if (s == NIL) {
    cur->done = true;
  } else {
    cur->slot = s;
    cur->stamp = ix->slots[s].stamp;
    cur->epoch = ix->stamp_epoch;
  }
  return INDEX_WALK_OK;
}
