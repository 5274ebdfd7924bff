/* test_fetch.c - the download scheduler with a fake clock and fake sources.
 *
 * A fake source is a handle plus the real bytes of a file. When the scheduler
 * sends it a message the test decodes it and answers as a leaf would (TREE
 * pages with the real leaf hashes, CHUNK pieces in order), or misbehaves in
 * one chosen way. Replies travel through a FIFO "network": every delivered
 * message advances the clock by one link step, and timers fire when the
 * clock reaches fetch_next_deadline. WRITE actions land in an output buffer,
 * which must end up equal to the file.
 */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "content.h"
#include "fetch.h"
#include "wire.h"

#define T0 5000000u
#define MAX_SRC 4
#define PIPELINE 4
#define SIZE_2_3MB 2300000u /* 9 chunks, the last one partial */
#define SIZE_3MB 3000000u   /* 12 chunks */

typedef enum {
  TREE_HONEST,
  TREE_BAD_HASH,   /* one leaf hash flipped: does not rebuild the content id */
  TREE_WRONG_SIZE, /* claims one byte more than the file has */
  TREE_NOT_FOUND,  /* XFER_ERROR not found */
} TreeMode;

typedef enum {
  CHUNK_HONEST,
  CHUNK_CORRUPT,      /* the bad_nth chunk asked of it has a flipped byte */
  CHUNK_SILENT,       /* never answers a chunk request */
  CHUNK_HOLD,         /* answers nothing until the test releases it */
  CHUNK_HOLD_AFTER,   /* answers its first bad_nth requests, then holds as CHUNK_HOLD */
  CHUNK_OUT_OF_ORDER, /* the bad_nth chunk's pieces come last first */
  CHUNK_DUP_PIECE,    /* the bad_nth chunk's first piece comes twice */
  CHUNK_TOO_LONG,     /* the bad_nth chunk's last piece runs past its end */
  CHUNK_EMPTY_PIECE,  /* the bad_nth chunk starts with a 0-byte piece */
  CHUNK_BUSY,         /* XFER_ERROR busy for the bad_nth chunk */
} ChunkMode;

typedef struct {
  uint64_t id;
  TreeMode tree;
  ChunkMode chunk;
  unsigned bad_nth;   /* which of its chunk requests misbehaves (0-based) */
  uint32_t bad_index; /* or: which chunk index misbehaves */
  bool alive;         /* for the test: not dropped, not lost */
  unsigned get_tree;
  GArray *asked;           /* uint32_t: chunk indices asked of it, in order */
  GArray *held;            /* uint32_t: CHUNK_HOLD requests not answered yet */
  unsigned pieces;         /* CHUNK messages of it fed to the scheduler */
  unsigned pieces_at_drop; /* how many it took to be dropped */
  const char *drop_reason;
  uint64_t drop_time;
  bool dropped_after_done;
} FakeSrc;

typedef struct {
  uint64_t src;
  uint8_t *data;
  size_t len;
} Packet;

typedef struct {
  uint8_t *file; /* NULL for a virtual file (tree only) */
  uint64_t size;
  uint32_t n;
  uint8_t (*leaves)[32];
  uint8_t cid[32];
  Fetch *f;
  uint64_t now;
  uint64_t step; /* ms per delivered message */
  bool auto_start;
  bool started;
  FakeSrc src[MAX_SRC];
  unsigned nsrc;
  GQueue net; /* Packet* */
  uint8_t *out;
  unsigned *written;  /* per chunk: WRITE actions */
  unsigned *requests; /* per chunk: GET_CHUNK messages */
  unsigned writes;
  unsigned need_check;
  unsigned done;
  unsigned drops;
} World;

/* --- files ----------------------------------------------------------------- */

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
  uint64_t s = seed;
  for (size_t i = 0; i < n; i++) {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    p[i] = (uint8_t)(z ^ (z >> 31));
  }
}

static uint64_t chunk_off(uint32_t i)
{
  return (uint64_t)i * CONTENT_CHUNK_SIZE;
}

static size_t chunk_len(uint64_t size, uint32_t i)
{
  uint64_t off = chunk_off(i);
  return off >= size ? 0 : (size_t)MIN((uint64_t)CONTENT_CHUNK_SIZE, size - off);
}

static World *world_new(uint64_t size, uint64_t seed)
{
  World *w = g_new0(World, 1);
  w->size = size;
  w->n = size == 0 ? 1 : (uint32_t)((size + CONTENT_CHUNK_SIZE - 1) / CONTENT_CHUNK_SIZE);
  w->file = g_malloc(MAX(size, 1));
  fill_random(w->file, size, seed);
  w->leaves = g_malloc0_n(w->n, 32);
  for (uint32_t i = 0; i < w->n; i++)
    content_leaf_hash(w->file + chunk_off(i), chunk_len(size, i), w->leaves[i]);

  /* The content id as a sharing leaf computes it: the streaming hasher, fed
   * in odd-sized slices. It must agree with the id rebuilt from the leaves. */
  ContentHasher *h = content_hasher_new();
  assert_non_null(h);
  for (uint64_t off = 0; off < size; off += 100003)
    content_hasher_update(h, w->file + off, (size_t)MIN((uint64_t)100003, size - off));
  content_hasher_final(h, w->cid);
  content_hasher_free(h);
  uint8_t again[32];
  content_id_from_leaves((const uint8_t(*)[32])w->leaves, w->n, size, again);
  assert_memory_equal(again, w->cid, 32);

  w->out = g_malloc0(MAX(size, 1));
  memset(w->out, 0xEE, MAX(size, 1)); /* so an unwritten byte shows */
  w->written = g_new0(unsigned, w->n);
  w->requests = g_new0(unsigned, w->n);
  w->now = T0;
  w->step = 1;
  w->auto_start = true;
  g_queue_init(&w->net);
  w->f = fetch_new(w->cid, size, PIPELINE);
  assert_non_null(w->f);
  assert_int_equal(fetch_chunk_count(w->f), w->n);
  return w;
}

/* A file nobody holds the bytes of: random leaf hashes and the id they make.
 * Enough to test the tree; its chunks are never asked for. */
static World *world_virtual(uint64_t size, uint64_t seed)
{
  World *w = g_new0(World, 1);
  w->size = size;
  w->n = (uint32_t)((size + CONTENT_CHUNK_SIZE - 1) / CONTENT_CHUNK_SIZE);
  w->leaves = g_malloc0_n(w->n, 32);
  fill_random((uint8_t *)w->leaves, (size_t)w->n * 32, seed);
  content_id_from_leaves((const uint8_t(*)[32])w->leaves, w->n, size, w->cid);
  w->written = g_new0(unsigned, w->n);
  w->requests = g_new0(unsigned, w->n);
  w->now = T0;
  w->step = 1;
  g_queue_init(&w->net);
  w->f = fetch_new(w->cid, size, PIPELINE);
  assert_non_null(w->f);
  return w;
}

static void packet_free(gpointer p)
{
  Packet *pk = p;
  g_free(pk->data);
  g_free(pk);
}

static void world_free(World *w)
{
  fetch_free(w->f);
  for (unsigned i = 0; i < w->nsrc; i++) {
    g_array_unref(w->src[i].asked);
    g_array_unref(w->src[i].held);
  }
  g_queue_clear_full(&w->net, packet_free);
  g_free(w->file);
  g_free(w->leaves);
  g_free(w->out);
  g_free(w->written);
  g_free(w->requests);
  g_free(w);
}

static FakeSrc *src_new(World *w, uint64_t id, TreeMode tree, ChunkMode chunk)
{
  assert_true(w->nsrc < MAX_SRC);
  FakeSrc *s = &w->src[w->nsrc++];
  memset(s, 0, sizeof *s);
  s->id = id;
  s->tree = tree;
  s->chunk = chunk;
  s->bad_index = UINT32_MAX;
  s->asked = g_array_new(FALSE, FALSE, sizeof(uint32_t));
  s->held = g_array_new(FALSE, FALSE, sizeof(uint32_t));
  return s;
}

static FakeSrc *src_of(World *w, uint64_t id)
{
  for (unsigned i = 0; i < w->nsrc; i++)
    if (w->src[i].id == id)
      return &w->src[i];
  return NULL;
}

/* --- the network ------------------------------------------------------------- */

static void transmit(World *w, uint64_t src, const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  assert_true(wire_encode(m, &b));
  Packet *p = g_new0(Packet, 1);
  p->src = src;
  p->data = buf_steal(&b, &p->len);
  g_queue_push_tail(&w->net, p);
}

/* The session to src ended: what it still had on the way is gone. */
static void purge(World *w, uint64_t src)
{
  for (GList *l = w->net.head; l;) {
    GList *next = l->next;
    Packet *p = l->data;
    if (p->src == src) {
      packet_free(p);
      g_queue_delete_link(&w->net, l);
    }
    l = next;
  }
}

static void send_tree(World *w, FakeSrc *s, uint32_t first, uint16_t count)
{
  assert_true(first < w->n && count >= 1 && first + count <= w->n);
  if (s->tree == TREE_NOT_FOUND) {
    WireMsg e = {.type = MSG_XFER_ERROR};
    memcpy(e.u.xfer_error.cid, w->cid, 32);
    e.u.xfer_error.code = XFER_NOT_FOUND;
    transmit(w, s->id, &e);
    return;
  }
  uint8_t *page = g_memdup2(w->leaves[first], (size_t)count * 32);
  WireMsg m = {.type = MSG_TREE};
  memcpy(m.u.tree.cid, w->cid, 32);
  m.u.tree.size = w->size;
  m.u.tree.total = w->n;
  m.u.tree.first = first;
  m.u.tree.count = count;
  m.u.tree.hashes = page;
  if (s->tree == TREE_BAD_HASH)
    page[(size_t)count * 32 - 1] ^= 0x01;
  if (s->tree == TREE_WRONG_SIZE)
    m.u.tree.size = w->size + 1;
  transmit(w, s->id, &m);
  g_free(page);
}

static void send_piece(World *w, FakeSrc *s, uint32_t index, uint32_t off, const uint8_t *data,
                       size_t len)
{
  WireMsg m = {.type = MSG_CHUNK};
  memcpy(m.u.chunk.cid, w->cid, 32);
  m.u.chunk.index = index;
  m.u.chunk.offset = off;
  m.u.chunk.len = (uint16_t)len;
  m.u.chunk.data = data;
  transmit(w, s->id, &m);
}

/* Answers one chunk request; nth says which of this source's requests it is. */
static void send_chunk(World *w, FakeSrc *s, uint32_t index, unsigned nth)
{
  size_t len = chunk_len(w->size, index);
  bool bad = nth == s->bad_nth || index == s->bad_index;
  /* One piece of slack past the end, for CHUNK_TOO_LONG. */
  uint8_t *data = g_malloc0(len + WIRE_PIECE);
  memcpy(data, w->file + chunk_off(index), len);
  size_t npieces = len == 0 ? 1 : (len + WIRE_PIECE - 1) / WIRE_PIECE;

  if (bad && s->chunk == CHUNK_BUSY) {
    WireMsg e = {.type = MSG_XFER_ERROR};
    memcpy(e.u.xfer_error.cid, w->cid, 32);
    e.u.xfer_error.code = XFER_BUSY;
    transmit(w, s->id, &e);
  } else if (bad && s->chunk == CHUNK_OUT_OF_ORDER) {
    assert_true(npieces >= 2);
    for (size_t k = npieces; k-- > 0;) {
      size_t off = k * WIRE_PIECE;
      send_piece(w, s, index, (uint32_t)off, data + off, MIN((size_t)WIRE_PIECE, len - off));
    }
  } else {
    if (bad && s->chunk == CHUNK_CORRUPT)
      data[len / 2] ^= 0x40;
    if (bad && s->chunk == CHUNK_EMPTY_PIECE)
      send_piece(w, s, index, 0, data, 0);
    if (bad && s->chunk == CHUNK_DUP_PIECE)
      send_piece(w, s, index, 0, data, MIN((size_t)WIRE_PIECE, len));
    for (size_t k = 0; k < npieces; k++) {
      size_t off = k * WIRE_PIECE;
      size_t plen = MIN((size_t)WIRE_PIECE, len - off);
      if (bad && s->chunk == CHUNK_TOO_LONG && k == npieces - 1)
        plen = WIRE_PIECE; /* runs past the chunk's end */
      send_piece(w, s, index, (uint32_t)off, data + off, plen);
    }
  }
  g_free(data);
}

static void on_send(World *w, uint64_t id, const uint8_t *data, size_t len)
{
  FakeSrc *s = src_of(w, id);
  assert_non_null(s);
  assert_true(s->alive); /* nothing goes to a source that was dropped or lost */
  WireMsg m;
  assert_int_equal(wire_decode(data, len, &m), WIRE_OK);
  switch (m.type) {
  case MSG_GET_TREE:
    assert_memory_equal(m.u.get_tree.cid, w->cid, 32);
    s->get_tree++;
    send_tree(w, s, m.u.get_tree.first, m.u.get_tree.count);
    break;
  case MSG_GET_CHUNK: {
    assert_memory_equal(m.u.get_chunk.cid, w->cid, 32);
    uint32_t index = m.u.get_chunk.index;
    assert_true(index < w->n);
    assert_true(w->started); /* not before the caller said so */
    unsigned nth = s->asked->len;
    g_array_append_val(s->asked, index);
    w->requests[index]++;
    if (s->chunk == CHUNK_SILENT)
      break;
    if (s->chunk == CHUNK_HOLD || (s->chunk == CHUNK_HOLD_AFTER && nth >= s->bad_nth)) {
      g_array_append_val(s->held, index);
      break;
    }
    send_chunk(w, s, index, nth);
    break;
  }
  default:
    fail_msg("the scheduler sent a %s", wire_type_str(m.type));
  }
  wire_msg_clear(&m);
}

static void drain(World *w)
{
  FetchAction a;
  while (fetch_next_action(w->f, &a)) {
    switch (a.kind) {
    case FETCH_ACT_SEND:
      on_send(w, a.src, a.data, a.len);
      break;
    case FETCH_ACT_DROP_SOURCE: {
      FakeSrc *s = src_of(w, a.src);
      assert_non_null(s);
      assert_true(s->alive);
      assert_non_null(a.reason);
      assert_true(a.reason[0] != '\0');
      s->alive = false;
      s->drop_reason = a.reason;
      s->drop_time = w->now;
      s->pieces_at_drop = s->pieces;
      s->dropped_after_done = w->done > 0;
      w->drops++;
      purge(w, a.src); /* the caller closes the session */
      break;
    }
    case FETCH_ACT_NEED_CHECK:
      w->need_check++;
      if (w->auto_start) {
        w->started = true;
        fetch_start_chunks(w->f, w->now);
      }
      break;
    case FETCH_ACT_WRITE: {
      assert_int_equal(w->done, 0);
      assert_non_null(src_of(w, a.src));
      assert_true(a.offset % CONTENT_CHUNK_SIZE == 0);
      uint32_t index = (uint32_t)(a.offset / CONTENT_CHUNK_SIZE);
      assert_true(index < w->n);
      assert_int_equal(a.len, chunk_len(w->size, index));
      assert_true(a.offset + a.len <= w->size);
      if (a.len)
        memcpy(w->out + a.offset, a.data, a.len);
      w->written[index]++;
      w->writes++;
      break;
    }
    case FETCH_ACT_DONE:
      assert_int_equal(w->done, 0);
      w->done++;
      break;
    }
    fetch_action_clear(&a);
  }
}

static void add_source(World *w, FakeSrc *s)
{
  s->alive = true;
  fetch_add_source(w->f, s->id, w->now);
  drain(w);
}

static void tick_if_due(World *w)
{
  if (fetch_next_deadline(w->f) <= w->now) {
    fetch_tick(w->f, w->now);
    drain(w);
  }
}

/* Delivers one message from the network; false if none was waiting. */
static bool deliver_one(World *w)
{
  Packet *p = g_queue_pop_head(&w->net);
  if (!p)
    return false;
  w->now += w->step;
  tick_if_due(w);
  FakeSrc *s = src_of(w, p->src);
  if (s->alive) { /* a timer may just have dropped it */
    WireMsg m;
    assert_int_equal(wire_decode(p->data, p->len, &m), WIRE_OK);
    s->pieces += m.type == MSG_CHUNK;
    fetch_recv(w->f, p->src, &m, w->now);
    wire_msg_clear(&m);
    drain(w);
  }
  packet_free(p);
  return true;
}

/* Delivers until the network is empty. */
static void pump(World *w)
{
  for (unsigned guard = 0; deliver_one(w); guard++)
    assert_true(guard < 1000000);
}

/* Delivers, and when the network is quiet lets the clock run to the next
 * deadline, until the download is done or nothing is left to wait for. */
static void run(World *w)
{
  for (unsigned guard = 0;; guard++) {
    assert_true(guard < 10000);
    pump(w);
    if (w->done)
      return;
    uint64_t d = fetch_next_deadline(w->f);
    if (d == UINT64_MAX)
      return;
    w->now = MAX(w->now, d);
    fetch_tick(w->f, w->now);
    drain(w);
  }
}

static void assert_complete(World *w)
{
  assert_int_equal(w->done, 1);
  assert_memory_equal(w->out, w->file, w->size ? w->size : 1);
  assert_int_equal(fetch_bytes_done(w->f), w->size);
  for (uint32_t i = 0; i < w->n; i++)
    assert_true(w->written[i] <= 1);
}

static bool asked_for(const FakeSrc *s, uint32_t index)
{
  for (guint i = 0; i < s->asked->len; i++)
    if (g_array_index(s->asked, uint32_t, i) == index)
      return true;
  return false;
}

static unsigned total_requests(const World *w)
{
  unsigned n = 0;
  for (uint32_t i = 0; i < w->n; i++)
    n += w->requests[i];
  return n;
}

/* --- tests ------------------------------------------------------------------- */

static void one_honest_source(uint64_t size, uint64_t seed)
{
  World *w = world_new(size, seed);
  FakeSrc *s = src_new(w, 7, TREE_HONEST, CHUNK_HONEST);
  add_source(w, s);
  run(w);
  assert_complete(w);
  assert_int_equal(w->need_check, 1);
  assert_int_equal(s->get_tree, 1);
  assert_int_equal(w->drops, 0);
  assert_int_equal(w->writes, w->n);
  assert_int_equal(total_requests(w), w->n); /* no chunk asked twice */
  assert_int_equal(fetch_bytes_from(w->f, 7), size);
  assert_int_equal(fetch_bytes_from(w->f, 8), 0); /* never a source */
  assert_int_equal(fetch_sources(w->f), 1);
  assert_null(fetch_last_error(w->f));
  world_free(w);
}

static void test_one_source_partial_last_chunk(void **state)
{
  (void)state;
  one_honest_source(SIZE_2_3MB, 1);
}

static void test_one_source_exactly_one_chunk(void **state)
{
  (void)state;
  one_honest_source(CONTENT_CHUNK_SIZE, 2);
}

static void test_one_source_exactly_two_chunks(void **state)
{
  (void)state;
  one_honest_source(2 * CONTENT_CHUNK_SIZE, 3);
}

static void test_one_source_tiny_file(void **state)
{
  (void)state;
  one_honest_source(1, 4);
}

/* (12) An empty file is one empty chunk: it is asked for, verified and done. */
static void test_empty_file(void **state)
{
  (void)state;
  World *w = world_new(0, 5);
  assert_int_equal(fetch_chunk_count(w->f), 1);
  assert_int_equal(fetch_chunk_len(w->f, 0), 0);
  FakeSrc *s = src_new(w, 3, TREE_HONEST, CHUNK_HONEST);
  add_source(w, s);
  run(w);
  assert_int_equal(w->done, 1);
  assert_int_equal(w->drops, 0);
  assert_int_equal(fetch_bytes_done(w->f), 0);
  assert_int_equal(fetch_bytes_from(w->f, 3), 0);
  assert_true(w->written[0] <= 1);
  world_free(w);
}

/* An empty file whose empty chunk is claimed to hold a byte is not done. */
static void test_empty_file_rejects_wrong_size_tree(void **state)
{
  (void)state;
  World *w = world_new(0, 6);
  FakeSrc *s = src_new(w, 3, TREE_WRONG_SIZE, CHUNK_HONEST);
  add_source(w, s);
  run(w);
  assert_int_equal(w->done, 0);
  assert_false(s->alive);
  assert_int_equal(fetch_sources(w->f), 0);
  world_free(w);
}

/* (2) Three sources share the work. */
static void test_three_sources_share(void **state)
{
  (void)state;
  World *w = world_new(SIZE_3MB, 10);
  assert_true(w->n >= 10);
  FakeSrc *s[3];
  for (unsigned i = 0; i < 3; i++) {
    s[i] = src_new(w, 100 + i, TREE_HONEST, CHUNK_HONEST);
    add_source(w, s[i]);
  }
  run(w);
  assert_complete(w);
  assert_int_equal(w->drops, 0);
  uint64_t sum = 0;
  for (unsigned i = 0; i < 3; i++) {
    assert_true(fetch_bytes_from(w->f, s[i]->id) > 0);
    sum += fetch_bytes_from(w->f, s[i]->id);
  }
  assert_int_equal(sum, w->size);
  /* The tree is asked of one of them only. */
  assert_int_equal(s[0]->get_tree + s[1]->get_tree + s[2]->get_tree, 1);
  assert_int_equal(fetch_sources(w->f), 3);
  world_free(w);
}

/* (3) A source that sends one bad chunk is dropped; the chunk comes from
 * another source and nothing bad is written. */
static void test_lying_source_dropped(void **state)
{
  (void)state;
  World *w = world_new(SIZE_2_3MB, 11);
  FakeSrc *liar = src_new(w, 1, TREE_HONEST, CHUNK_CORRUPT);
  liar->bad_nth = 1; /* its first chunk is good, its second is not */
  FakeSrc *good = src_new(w, 2, TREE_HONEST, CHUNK_HONEST);
  add_source(w, liar);
  add_source(w, good);
  run(w);
  assert_complete(w);
  assert_false(liar->alive);
  assert_non_null(liar->drop_reason);
  assert_false(liar->dropped_after_done);
  assert_true(good->alive);
  assert_true(liar->asked->len >= 2);
  uint32_t bad = g_array_index(liar->asked, uint32_t, 1);
  assert_true(asked_for(good, bad));
  assert_int_equal(w->written[bad], 1);
  uint32_t good_one = g_array_index(liar->asked, uint32_t, 0);
  assert_int_equal(fetch_bytes_from(w->f, liar->id), chunk_len(w->size, good_one));
  assert_int_equal(fetch_bytes_from(w->f, liar->id) + fetch_bytes_from(w->f, good->id), w->size);
  assert_string_equal(fetch_last_error(w->f), liar->drop_reason);
  assert_int_equal(fetch_sources(w->f), 1);
  world_free(w);
}

/* (4) Chunk hashes that do not rebuild the content id: that source is
 * dropped and the tree is asked of another. */
static void test_bad_tree_dropped(void **state)
{
  (void)state;
  World *w = world_new(SIZE_2_3MB, 12);
  FakeSrc *bad = src_new(w, 1, TREE_BAD_HASH, CHUNK_HONEST);
  FakeSrc *good = src_new(w, 2, TREE_HONEST, CHUNK_HONEST);
  add_source(w, bad);
  add_source(w, good);
  run(w);
  assert_complete(w);
  assert_int_equal(bad->get_tree + good->get_tree, 2);
  assert_int_equal(bad->get_tree, 1);
  assert_int_equal(good->get_tree, 1);
  assert_false(bad->alive);
  assert_non_null(bad->drop_reason);
  assert_int_equal(bad->asked->len, 0); /* no chunk asked of it */
  assert_int_equal(fetch_bytes_from(w->f, good->id), w->size);
  assert_int_equal(w->need_check, 1);
  world_free(w);
}

/* A bad tree from the only source: nothing is asked, nothing is done. */
static void test_bad_tree_only_source(void **state)
{
  (void)state;
  World *w = world_new(SIZE_2_3MB, 13);
  FakeSrc *bad = src_new(w, 1, TREE_BAD_HASH, CHUNK_HONEST);
  add_source(w, bad);
  run(w);
  assert_int_equal(w->done, 0);
  assert_int_equal(w->need_check, 0);
  assert_false(bad->alive);
  assert_int_equal(fetch_sources(w->f), 0);
  assert_non_null(fetch_last_error(w->f));
  /* A good source arriving later still finishes the download. */
  FakeSrc *good = src_new(w, 2, TREE_HONEST, CHUNK_HONEST);
  add_source(w, good);
  run(w);
  assert_complete(w);
  world_free(w);
}

/* (5) A session that ends mid-transfer: its chunks go to another source. */
static void test_source_lost_mid_transfer(void **state)
{
  (void)state;
  World *w = world_new(SIZE_3MB, 14);
  FakeSrc *a = src_new(w, 1, TREE_HONEST, CHUNK_HONEST);
  FakeSrc *b = src_new(w, 2, TREE_HONEST, CHUNK_HONEST);
  add_source(w, a);
  add_source(w, b);
  /* Until b has delivered one chunk and is in the middle of others. */
  while (fetch_bytes_from(w->f, b->id) == 0)
    assert_true(deliver_one(w));
  deliver_one(w);
  unsigned b_written = 0;
  GArray *owed = g_array_new(FALSE, FALSE, sizeof(uint32_t));
  for (guint i = 0; i < b->asked->len; i++) {
    uint32_t idx = g_array_index(b->asked, uint32_t, i);
    if (w->written[idx])
      b_written++;
    else
      g_array_append_val(owed, idx);
  }
  assert_true(b_written >= 1);
  assert_true(owed->len >= 1);

  b->alive = false;
  purge(w, b->id);
  fetch_source_lost(w->f, b->id, w->now);
  drain(w);
  assert_int_equal(fetch_sources(w->f), 1);
  run(w);
  assert_complete(w);
  assert_int_equal(w->drops, 0); /* the caller said it, no DROP needed */
  for (guint i = 0; i < owed->len; i++)
    assert_true(asked_for(a, g_array_index(owed, uint32_t, i)));
  assert_int_equal(fetch_bytes_from(w->f, a->id) + fetch_bytes_from(w->f, b->id), w->size);
  assert_true(fetch_bytes_from(w->f, b->id) > 0); /* kept for the summary */
  g_array_unref(owed);
  world_free(w);
}

/* Losing the tree source before it answered: the tree is asked of another. */
static void test_tree_source_lost(void **state)
{
  (void)state;
  World *w = world_new(SIZE_2_3MB, 15);
  FakeSrc *a = src_new(w, 1, TREE_HONEST, CHUNK_HONEST);
  FakeSrc *b = src_new(w, 2, TREE_HONEST, CHUNK_HONEST);
  add_source(w, a);
  add_source(w, b);
  assert_int_equal(a->get_tree, 1);
  a->alive = false;
  purge(w, a->id);
  fetch_source_lost(w->f, a->id, w->now);
  drain(w);
  assert_int_equal(b->get_tree, 1);
  run(w);
  assert_complete(w);
  assert_int_equal(fetch_bytes_from(w->f, b->id), w->size);
  world_free(w);
}

/* (6) A source that takes chunk requests and never answers is dropped once
 * its chunks time out; the other source finishes. The file is big enough,
 * and the link slow enough, that the timeout comes long before the end. */
static void test_stalled_source_dropped(void **state)
{
  (void)state;
  World *w = world_new(40u * CONTENT_CHUNK_SIZE - 12345, 16);
  w->step = 200; /* 32 KiB per 200 ms */
  FakeSrc *mute = src_new(w, 1, TREE_HONEST, CHUNK_SILENT);
  FakeSrc *good = src_new(w, 2, TREE_HONEST, CHUNK_HONEST);
  add_source(w, mute);
  add_source(w, good);
  run(w);
  assert_complete(w);
  assert_false(mute->alive);
  assert_non_null(mute->drop_reason);
  assert_false(mute->dropped_after_done);
  assert_true(mute->asked->len >= 1);
  /* Dropped by the timer, not at once: well after its requests went out,
   * and long before the download could have ended otherwise. */
  assert_true(mute->drop_time >= T0 + 10000);
  assert_true(mute->drop_time < w->now);
  for (guint i = 0; i < mute->asked->len; i++)
    assert_true(asked_for(good, g_array_index(mute->asked, uint32_t, i)));
  assert_true(good->alive);
  assert_int_equal(fetch_bytes_from(w->f, good->id), w->size);
  assert_int_equal(fetch_bytes_from(w->f, mute->id), 0);
  world_free(w);
}

/* The stall timer fires at fetch_next_deadline, and not before it. */
static void test_stall_fires_at_deadline(void **state)
{
  (void)state;
  World *w = world_new(SIZE_2_3MB, 17);
  FakeSrc *mute = src_new(w, 1, TREE_HONEST, CHUNK_SILENT);
  add_source(w, mute);
  pump(w);
  assert_int_equal(mute->asked->len, PIPELINE);
  uint64_t d = fetch_next_deadline(w->f);
  assert_true(d != UINT64_MAX && d > w->now);
  fetch_tick(w->f, d - 1);
  drain(w);
  assert_true(mute->alive);
  w->now = d;
  fetch_tick(w->f, d);
  drain(w);
  assert_false(mute->alive);
  assert_non_null(fetch_last_error(w->f));
  assert_int_equal(fetch_sources(w->f), 0);
  /* A source that comes later gets the chunks. */
  FakeSrc *good = src_new(w, 2, TREE_HONEST, CHUNK_HONEST);
  add_source(w, good);
  run(w);
  assert_complete(w);
  assert_int_equal(fetch_bytes_from(w->f, good->id), w->size);
  world_free(w);
}

/* A source that sends steadily, but slowly, is not stalled: with several
 * chunks asked of it at once, the later ones wait behind the first while
 * bytes keep coming. 16 KiB/s; every piece arrives 2 s after the last. */
static void test_slow_but_moving_source_kept(void **state)
{
  (void)state;
  World *w = world_new(SIZE_2_3MB, 18);
  w->step = 2000;
  FakeSrc *s = src_new(w, 1, TREE_HONEST, CHUNK_HONEST);
  add_source(w, s);
  run(w);
  assert_null(s->drop_reason);
  assert_complete(w);
  assert_int_equal(total_requests(w), w->n);
  world_free(w);
}

/* The same with a pipeline of 8 and 32 KiB/s: seven chunks wait behind the
 * first, 56 s of steady sending. */
static void test_slow_but_moving_deep_pipeline(void **state)
{
  (void)state;
  World *w = world_new(SIZE_3MB, 19);
  fetch_free(w->f);
  w->f = fetch_new(w->cid, w->size, 8);
  w->step = 1000;
  FakeSrc *s = src_new(w, 1, TREE_HONEST, CHUNK_HONEST);
  add_source(w, s);
  run(w);
  assert_null(s->drop_reason);
  assert_complete(w);
  assert_int_equal(total_requests(w), w->n);
  world_free(w);
}

/* A tree source that never answers is dropped after the tree timeout and
 * the tree is asked of the next one. */
static void test_tree_timeout(void **state)
{
  (void)state;
  World *w = world_new(SIZE_2_3MB, 19);
  FakeSrc *mute = src_new(w, 1, TREE_HONEST, CHUNK_HONEST);
  FakeSrc *good = src_new(w, 2, TREE_HONEST, CHUNK_HONEST);
  add_source(w, mute);
  assert_int_equal(mute->get_tree, 1);
  purge(w, mute->id); /* its TREE never arrives */
  add_source(w, good);
  assert_int_equal(good->get_tree, 0);
  pump(w);
  assert_int_equal(w->need_check, 0);
  uint64_t d = fetch_next_deadline(w->f);
  assert_true(d != UINT64_MAX);
  run(w);
  assert_complete(w);
  assert_false(mute->alive);
  assert_true(mute->drop_time >= d);
  assert_int_equal(good->get_tree, 1);
  world_free(w);
}

/* (7) A resumed download: chunks already on disk are offered back and never
 * asked for; a wrong one is refused. */
static void test_resume(void **state)
{
  (void)state;
  World *w = world_new(SIZE_3MB, 20);
  w->auto_start = false;
  FakeSrc *s = src_new(w, 1, TREE_HONEST, CHUNK_HONEST);
  add_source(w, s);
  assert_false(fetch_have(w->f, 0, w->file, chunk_len(w->size, 0))); /* no tree yet */
  pump(w);
  assert_int_equal(w->need_check, 1);
  assert_int_equal(total_requests(w), 0); /* waits for the caller */

  uint64_t had = 0;
  for (uint32_t i = 0; i < w->n; i += 2) {
    size_t len = chunk_len(w->size, i);
    assert_true(fetch_have(w->f, i, w->file + chunk_off(i), len));
    memcpy(w->out + chunk_off(i), w->file + chunk_off(i), len);
    had += len;
  }
  assert_int_equal(fetch_bytes_done(w->f), had);
  /* Wrong bytes, the wrong length, a chunk past the end, a chunk twice. */
  uint8_t *wrong = g_memdup2(w->file + chunk_off(1), chunk_len(w->size, 1));
  wrong[17] ^= 1;
  assert_false(fetch_have(w->f, 1, wrong, chunk_len(w->size, 1)));
  assert_false(fetch_have(w->f, 1, w->file + chunk_off(3), chunk_len(w->size, 1))); /* chunk 3 */
  assert_false(fetch_have(w->f, 1, w->file + chunk_off(1), chunk_len(w->size, 1) - 1));
  assert_false(fetch_have(w->f, w->n, w->file, 1));
  assert_false(fetch_have(w->f, 0, w->file, chunk_len(w->size, 0)));
  uint32_t last = w->n - 1;
  if (last % 2) { /* the partial last chunk, if not offered above */
    assert_false(fetch_have(w->f, last, w->file + chunk_off(last), CONTENT_CHUNK_SIZE / 2));
  }
  g_free(wrong);
  assert_int_equal(fetch_bytes_done(w->f), had);

  w->started = true;
  fetch_start_chunks(w->f, w->now);
  drain(w);
  run(w);
  assert_complete(w);
  for (uint32_t i = 0; i < w->n; i++) {
    assert_int_equal(w->requests[i], i % 2 ? 1 : 0);
    assert_int_equal(w->written[i], i % 2 ? 1 : 0);
  }
  assert_int_equal(total_requests(w), w->n / 2);
  assert_int_equal(fetch_bytes_from(w->f, s->id), w->size - had);
  world_free(w);
}

/* Every chunk already on disk: done without a single chunk request. */
static void test_resume_complete(void **state)
{
  (void)state;
  World *w = world_new(SIZE_2_3MB, 21);
  w->auto_start = false;
  FakeSrc *s = src_new(w, 1, TREE_HONEST, CHUNK_HONEST);
  add_source(w, s);
  pump(w);
  for (uint32_t i = 0; i < w->n; i++)
    assert_true(fetch_have(w->f, i, w->file + chunk_off(i), chunk_len(w->size, i)));
  memcpy(w->out, w->file, w->size);
  w->started = true;
  fetch_start_chunks(w->f, w->now);
  drain(w);
  assert_complete(w);
  assert_int_equal(total_requests(w), 0);
  assert_int_equal(w->writes, 0);
  world_free(w);
}

/* (8) The only source does not have the file. */
static void test_not_found_only_source(void **state)
{
  (void)state;
  World *w = world_new(SIZE_2_3MB, 22);
  FakeSrc *s = src_new(w, 1, TREE_NOT_FOUND, CHUNK_HONEST);
  add_source(w, s);
  run(w);
  assert_int_equal(w->done, 0);
  assert_int_equal(w->need_check, 0);
  assert_false(s->alive);
  assert_non_null(s->drop_reason);
  assert_int_equal(fetch_sources(w->f), 0);
  assert_non_null(fetch_last_error(w->f));
  assert_int_equal(fetch_next_deadline(w->f), UINT64_MAX); /* nothing to wait for */
  fetch_tick(w->f, w->now + 1000000);
  drain(w);
  assert_int_equal(w->done, 0);
  world_free(w);
}

/* A source too busy to serve a chunk is dropped; another serves it. */
static void test_busy_source_dropped(void **state)
{
  (void)state;
  World *w = world_new(SIZE_2_3MB, 23);
  FakeSrc *busy = src_new(w, 1, TREE_HONEST, CHUNK_BUSY);
  busy->bad_nth = 0;
  FakeSrc *good = src_new(w, 2, TREE_HONEST, CHUNK_HONEST);
  add_source(w, busy);
  add_source(w, good);
  run(w);
  assert_complete(w);
  assert_false(busy->alive);
  assert_non_null(busy->drop_reason);
  assert_true(asked_for(good, g_array_index(busy->asked, uint32_t, 0)));
  world_free(w);
}

/* (9) A misplaced piece gets its source dropped on the spot (its first
 * chunk is the bad one: at most `within` pieces reach the scheduler); the
 * chunk comes from the other source. */
static void misplaced_piece(ChunkMode mode, uint64_t size, uint64_t seed, unsigned within)
{
  World *w = world_new(size, seed);
  FakeSrc *bad = src_new(w, 1, TREE_HONEST, mode);
  bad->bad_nth = 0;
  FakeSrc *good = src_new(w, 2, TREE_HONEST, CHUNK_HONEST);
  add_source(w, bad);
  add_source(w, good);
  run(w);
  assert_complete(w);
  assert_false(bad->alive);
  assert_non_null(bad->drop_reason);
  assert_false(bad->dropped_after_done);
  assert_int_equal(fetch_bytes_from(w->f, bad->id), 0);
  assert_true(bad->pieces_at_drop >= 1 && bad->pieces_at_drop <= within);
  assert_true(asked_for(good, g_array_index(bad->asked, uint32_t, 0)));
  world_free(w);
}

static void test_pieces_out_of_order(void **state)
{
  (void)state;
  misplaced_piece(CHUNK_OUT_OF_ORDER, SIZE_2_3MB, 30, 1);
}

static void test_piece_repeated(void **state)
{
  (void)state;
  misplaced_piece(CHUNK_DUP_PIECE, SIZE_2_3MB, 31, 2);
}

static void test_empty_piece(void **state)
{
  (void)state;
  misplaced_piece(CHUNK_EMPTY_PIECE, SIZE_2_3MB, 32, 1);
}

/* A one-chunk file of 100000 bytes: its last piece (1696 bytes) comes as a
 * full WIRE_PIECE. */
static void test_piece_too_long(void **state)
{
  (void)state;
  misplaced_piece(CHUNK_TOO_LONG, 100000, 33, 4);
}

/* The same past the end of the partial last chunk of a bigger file: the
 * source serves every full chunk well, then overruns the last one. */
static void test_piece_too_long_last_chunk(void **state)
{
  (void)state;
  World *w = world_new(SIZE_2_3MB, 34);
  uint32_t last = w->n - 1;
  FakeSrc *bad = src_new(w, 1, TREE_HONEST, CHUNK_TOO_LONG);
  bad->bad_nth = UINT_MAX;
  bad->bad_index = last;
  add_source(w, bad);
  run(w);
  assert_int_equal(w->done, 0);
  assert_false(bad->alive);
  assert_non_null(bad->drop_reason);
  assert_int_equal(w->written[last], 0);
  assert_int_equal(fetch_bytes_from(w->f, bad->id), w->size - chunk_len(w->size, last));
  FakeSrc *good = src_new(w, 2, TREE_HONEST, CHUNK_HONEST);
  add_source(w, good);
  run(w);
  assert_complete(w);
  assert_int_equal(good->asked->len, 1);
  assert_int_equal(g_array_index(good->asked, uint32_t, 0), last);
  assert_int_equal(fetch_bytes_from(w->f, good->id), chunk_len(w->size, last));
  world_free(w);
}

/* (10) A TREE with another size than the search reported. */
static void test_tree_wrong_size_dropped(void **state)
{
  (void)state;
  World *w = world_new(SIZE_2_3MB, 40);
  FakeSrc *bad = src_new(w, 1, TREE_WRONG_SIZE, CHUNK_HONEST);
  FakeSrc *good = src_new(w, 2, TREE_HONEST, CHUNK_HONEST);
  add_source(w, bad);
  add_source(w, good);
  run(w);
  assert_complete(w);
  assert_false(bad->alive);
  assert_non_null(bad->drop_reason);
  assert_int_equal(bad->asked->len, 0);
  assert_int_equal(good->get_tree, 1);
  assert_int_equal(fetch_bytes_from(w->f, good->id), w->size);
  world_free(w);
}

/* (11) Endgame: one source sits on its chunks. Once nothing else is missing
 * the fast source is asked for them too, and the download ends long before
 * the slow one would time out. Its late answers change nothing. */
static void test_endgame(void **state)
{
  (void)state;
  World *w = world_new(SIZE_2_3MB, 50);
  w->step = 10;
  FakeSrc *slow = src_new(w, 1, TREE_HONEST, CHUNK_HOLD);
  FakeSrc *fast = src_new(w, 2, TREE_HONEST, CHUNK_HONEST);
  add_source(w, slow);
  add_source(w, fast);
  uint64_t start = w->now;
  pump(w); /* no timer is let run: only what the network brings */
  assert_int_equal(w->done, 1);
  assert_int_equal(w->drops, 0);
  assert_true(slow->alive);
  assert_true(w->now - start < 30000);
  assert_true(fetch_next_deadline(w->f) > w->now);
  assert_true(slow->asked->len >= 1);
  for (guint i = 0; i < slow->asked->len; i++) {
    uint32_t idx = g_array_index(slow->asked, uint32_t, i);
    assert_true(asked_for(fast, idx));
    assert_int_equal(w->requests[idx], 2);
  }
  assert_int_equal(fetch_bytes_from(w->f, fast->id), w->size);
  assert_int_equal(fetch_bytes_from(w->f, slow->id), 0);
  assert_complete(w);

  /* The slow one's chunks arrive at last: no second write, no harm. */
  unsigned writes = w->writes;
  for (guint i = 0; i < slow->held->len; i++)
    send_chunk(w, slow, g_array_index(slow->held, uint32_t, i), i + 1000);
  g_array_set_size(slow->held, 0);
  pump(w);
  assert_int_equal(w->writes, writes);
  assert_int_equal(w->done, 1);
  assert_complete(w);
  world_free(w);
}

/* Endgame with a deep pipeline: a slow source sits on 16 chunks, a fast one
 * delivers the other 16 and is then asked for second copies of the slow
 * one's, but only FETCH_MAX_DUPS at a time, not a whole pipeline's worth
 * (8 MiB at the daemon's 32): the fast one holding those, no more come. */
static void test_endgame_second_copies_capped(void **state)
{
  (void)state;
  World *w = world_new(32ull * CONTENT_CHUNK_SIZE, 51);
  fetch_free(w->f);
  w->f = fetch_new(w->cid, w->size, 16);
  FakeSrc *a = src_new(w, 1, TREE_HONEST, CHUNK_HOLD);
  FakeSrc *b = src_new(w, 2, TREE_HONEST, CHUNK_HOLD_AFTER);
  b->bad_nth = 16;
  add_source(w, a);
  pump(w);
  assert_int_equal(a->asked->len, 16);
  add_source(w, b);
  pump(w);
  assert_int_equal(w->done, 0);
  assert_int_equal(a->asked->len, 16);
  assert_int_equal(b->asked->len, 16 + FETCH_MAX_DUPS);
  for (uint32_t i = 0; i < w->n; i++)
    assert_true(w->requests[i] <= 2);

  /* Once they answer, everything completes. */
  FakeSrc *both[] = {a, b};
  for (unsigned round = 0; w->done == 0 && round < 100; round++) {
    for (unsigned k = 0; k < 2; k++) {
      FakeSrc *s = both[k];
      for (guint i = 0; i < s->held->len; i++)
        send_chunk(w, s, g_array_index(s->held, uint32_t, i), i + 1000);
      g_array_set_size(s->held, 0);
    }
    pump(w);
  }
  assert_int_equal(w->done, 1);
  assert_complete(w);
  world_free(w);
}

/* A tree of more than one TREE page (2500 chunks: three pages). */
static void test_tree_in_pages(void **state)
{
  (void)state;
  World *w = world_virtual(2500ull * CONTENT_CHUNK_SIZE - 5, 60);
  assert_int_equal(fetch_chunk_count(w->f), 2500);
  FakeSrc *s = src_new(w, 1, TREE_HONEST, CHUNK_SILENT);
  add_source(w, s);
  assert_int_equal(s->get_tree, 3);
  pump(w);
  assert_int_equal(w->need_check, 1); /* the tree is accepted */
  assert_int_equal(w->drops, 0);
  assert_int_equal(total_requests(w), 0); /* auto_start is off */
  world_free(w);

  w = world_virtual(2500ull * CONTENT_CHUNK_SIZE - 5, 60);
  s = src_new(w, 1, TREE_BAD_HASH, CHUNK_SILENT);
  add_source(w, s);
  pump(w);
  assert_int_equal(w->need_check, 0);
  assert_false(s->alive);
  world_free(w);
}

static void test_free_null(void **state)
{
  (void)state;
  fetch_free(NULL);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_source_partial_last_chunk),
      cmocka_unit_test(test_one_source_exactly_one_chunk),
      cmocka_unit_test(test_one_source_exactly_two_chunks),
      cmocka_unit_test(test_one_source_tiny_file),
      cmocka_unit_test(test_empty_file),
      cmocka_unit_test(test_empty_file_rejects_wrong_size_tree),
      cmocka_unit_test(test_three_sources_share),
      cmocka_unit_test(test_lying_source_dropped),
      cmocka_unit_test(test_bad_tree_dropped),
      cmocka_unit_test(test_bad_tree_only_source),
      cmocka_unit_test(test_source_lost_mid_transfer),
      cmocka_unit_test(test_tree_source_lost),
      cmocka_unit_test(test_stalled_source_dropped),
      cmocka_unit_test(test_stall_fires_at_deadline),
      cmocka_unit_test(test_slow_but_moving_source_kept),
      cmocka_unit_test(test_slow_but_moving_deep_pipeline),
      cmocka_unit_test(test_tree_timeout),
      cmocka_unit_test(test_resume),
      cmocka_unit_test(test_resume_complete),
      cmocka_unit_test(test_not_found_only_source),
      cmocka_unit_test(test_busy_source_dropped),
      cmocka_unit_test(test_pieces_out_of_order),
      cmocka_unit_test(test_piece_repeated),
      cmocka_unit_test(test_empty_piece),
      cmocka_unit_test(test_piece_too_long),
      cmocka_unit_test(test_piece_too_long_last_chunk),
      cmocka_unit_test(test_tree_wrong_size_dropped),
      cmocka_unit_test(test_endgame),
      cmocka_unit_test(test_endgame_second_copies_capped),
      cmocka_unit_test(test_tree_in_pages),
      cmocka_unit_test(test_free_null),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
