/* fetch.c - chunk scheduling and verification for one download. */
#include "fetch.h"

#include <glib.h>
#include <string.h>

#include "content.h"
#include "wire.h"

#define CHUNK_TIMEOUT_MS 30000
#define TREE_TIMEOUT_MS 15000

typedef enum { CH_MISSING, CH_INFLIGHT, CH_HAVE } ChunkState;

typedef struct {
  uint64_t id;
  bool alive;
  unsigned inflight;
  unsigned dups;  /* of inflight, second copies (FETCH_MAX_DUPS) */
  uint64_t bytes; /* verified bytes it sent */
} Source;

typedef struct {
  uint32_t index;
  uint64_t src;
  uint64_t deadline;
  uint8_t *buf;
  size_t got;
  bool dup; /* asked while another source had it in flight */
} Inflight;

struct Fetch {
  uint8_t cid[32];
  uint64_t size;
  uint32_t n;
  unsigned pipeline;
  uint8_t (*leaves)[32];
  uint8_t *leaf_got; /* per chunk: its hash arrived */
  uint32_t leaves_got;
  bool tree_ok;
  bool tree_pending; /* a source was asked and has not answered in full */
  uint64_t tree_src;
  uint64_t tree_deadline;
  bool started;
  bool done;
  uint8_t *state;        /* ChunkState per chunk */
  uint32_t missing_from; /* no chunk below this one is CH_MISSING */
  uint32_t have;
  uint64_t bytes_done;
  GHashTable *sources; /* id -> Source* (kept after loss, for the summary) */
  GPtrArray *inflight; /* Inflight* */
  const char *last_error;
  GQueue actions;
};

static void push(Fetch *f, FetchAction a)
{
  g_queue_push_tail(&f->actions, g_memdup2(&a, sizeof a));
}

static void send_to(Fetch *f, uint64_t src, const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  if (!wire_encode(m, &b)) {
    buf_free(&b);
    return;
  }
  FetchAction a = {.kind = FETCH_ACT_SEND, .src = src};
  a.data = buf_steal(&b, &a.len);
  push(f, a);
}

static void inflight_free(gpointer p)
{
  Inflight *in = p;
  g_free(in->buf);
  g_free(in);
}

Fetch *fetch_new(const uint8_t cid[32], uint64_t size, unsigned pipeline)
{
  uint64_t n = size == 0 ? 1 : (size + CONTENT_CHUNK_SIZE - 1) / CONTENT_CHUNK_SIZE;
  if (n > UINT32_MAX)
    return NULL;
  Fetch *f = g_new0(Fetch, 1);
  memcpy(f->cid, cid, 32);
  f->size = size;
  f->n = (uint32_t)n;
  f->pipeline = pipeline ? pipeline : 4;
  /* The size comes from a peer's word until the tree proves it: an
   * allocation it makes too large fails here instead of aborting. */
  f->leaves = g_try_malloc0_n(f->n, 32);
  f->leaf_got = g_try_malloc0(f->n);
  f->state = g_try_malloc0(f->n);
  f->sources = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
  f->inflight = g_ptr_array_new_with_free_func(inflight_free);
  g_queue_init(&f->actions);
  if (!f->leaves || !f->leaf_got || !f->state) {
    fetch_free(f);
    return NULL;
  }
  return f;
}

void fetch_free(Fetch *f)
{
  if (!f)
    return;
  FetchAction *a;
  while ((a = g_queue_pop_head(&f->actions))) {
    fetch_action_clear(a);
    g_free(a);
  }
  g_hash_table_destroy(f->sources);
  g_ptr_array_unref(f->inflight);
  g_free(f->leaves);
  g_free(f->leaf_got);
  g_free(f->state);
  g_free(f);
}

uint32_t fetch_chunk_count(const Fetch *f)
{
  return f->n;
}
uint64_t fetch_chunk_offset(const Fetch *f, uint32_t i)
{
  return (uint64_t)i * CONTENT_CHUNK_SIZE;
}

size_t fetch_chunk_len(const Fetch *f, uint32_t i)
{
  uint64_t off = fetch_chunk_offset(f, i);
  return off >= f->size ? 0 : (size_t)MIN((uint64_t)CONTENT_CHUNK_SIZE, f->size - off);
}

uint64_t fetch_bytes_done(const Fetch *f)
{
  return f->bytes_done;
}
bool fetch_tree_ok(const Fetch *f)
{
  return f->tree_ok;
}

const char *fetch_last_error(const Fetch *f)
{
  return f->last_error;
}

uint64_t fetch_bytes_from(const Fetch *f, uint64_t src)
{
  Source *s = g_hash_table_lookup(f->sources, &src);
  return s ? s->bytes : 0;
}

static void count_alive(gpointer k, gpointer v, gpointer ud)
{
  if (((Source *)v)->alive)
    (*(unsigned *)ud)++;
}

unsigned fetch_sources(const Fetch *f)
{
  unsigned n = 0;
  g_hash_table_foreach(f->sources, count_alive, &n);
  return n;
}

static Source *alive_source(Fetch *f, uint64_t src)
{
  Source *s = g_hash_table_lookup(f->sources, &src);
  return s && s->alive ? s : NULL;
}

/* --- the tree -------------------------------------------------------------- */

static void find_alive(gpointer k, gpointer v, gpointer ud)
{
  Source **best = ud;
  Source *s = v;
  if (s->alive && (!*best || s->id < (*best)->id))
    *best = s;
}

static void ask_tree(Fetch *f, uint64_t now)
{
  if (f->tree_ok || f->tree_pending)
    return;
  Source *s = NULL;
  g_hash_table_foreach(f->sources, find_alive, &s);
  if (!s)
    return;
  f->tree_pending = true;
  f->tree_src = s->id;
  f->tree_deadline = now + TREE_TIMEOUT_MS;
  memset(f->leaf_got, 0, f->n);
  f->leaves_got = 0;
  for (uint32_t first = 0; first < f->n; first += WIRE_MAX_TREE) {
    WireMsg m = {.type = MSG_GET_TREE};
    memcpy(m.u.get_tree.cid, f->cid, 32);
    m.u.get_tree.first = first;
    m.u.get_tree.count = (uint16_t)MIN(f->n - first, (uint32_t)WIRE_MAX_TREE);
    send_to(f, s->id, &m);
  }
}

static void drop_source(Fetch *f, uint64_t src, const char *reason, uint64_t now)
{
  if (!alive_source(f, src))
    return;
  f->last_error = reason;
  FetchAction a = {.kind = FETCH_ACT_DROP_SOURCE, .src = src, .reason = reason};
  push(f, a);
  fetch_source_lost(f, src, now);
}

static void on_tree(Fetch *f, uint64_t src, const WireMsg *m, uint64_t now)
{
  if (!f->tree_pending || src != f->tree_src || memcmp(m->u.tree.cid, f->cid, 32) != 0)
    return;
  if (m->u.tree.size != f->size || m->u.tree.total != f->n) {
    drop_source(f, src, "its file has another size than the search said", now);
    return;
  }
  for (uint16_t i = 0; i < m->u.tree.count; i++) {
    uint32_t idx = m->u.tree.first + i; /* codec checked first + count <= total */
    memcpy(f->leaves[idx], m->u.tree.hashes + (size_t)i * 32, 32);
    if (!f->leaf_got[idx]) {
      f->leaf_got[idx] = 1;
      f->leaves_got++;
    }
  }
  if (f->leaves_got < f->n)
    return;
  uint8_t cid[32];
  content_id_from_leaves((const uint8_t(*)[32])f->leaves, f->n, f->size, cid);
  f->tree_pending = false;
  if (memcmp(cid, f->cid, 32) != 0) {
    drop_source(f, src, "its chunk hashes do not match the content id", now);
    return;
  }
  f->tree_ok = true;
  FetchAction a = {.kind = FETCH_ACT_NEED_CHECK};
  push(f, a);
}

/* --- chunks ---------------------------------------------------------------- */

bool fetch_have(Fetch *f, uint32_t index, const uint8_t *data, size_t len)
{
  if (!f->tree_ok || index >= f->n || f->state[index] == CH_HAVE ||
      len != fetch_chunk_len(f, index))
    return false;
  uint8_t h[32];
  content_leaf_hash(data, len, h);
  if (memcmp(h, f->leaves[index], 32) != 0)
    return false;
  f->state[index] = CH_HAVE;
  f->have++;
  f->bytes_done += len;
  return true;
}

static Inflight *find_inflight(Fetch *f, uint64_t src, uint32_t index, guint *pos)
{
  for (guint i = 0; i < f->inflight->len; i++) {
    Inflight *in = g_ptr_array_index(f->inflight, i);
    if (in->src == src && in->index == index) {
      if (pos)
        *pos = i;
      return in;
    }
  }
  return NULL;
}

static unsigned copies_in_flight(Fetch *f, uint32_t index)
{
  unsigned n = 0;
  for (guint i = 0; i < f->inflight->len; i++)
    n += ((Inflight *)g_ptr_array_index(f->inflight, i))->index == index;
  return n;
}

static void request(Fetch *f, Source *s, uint32_t index, uint64_t now)
{
  Inflight *in = g_new0(Inflight, 1);
  in->index = index;
  in->src = s->id;
  in->deadline = now + CHUNK_TIMEOUT_MS;
  in->dup = f->state[index] == CH_INFLIGHT;
  g_ptr_array_add(f->inflight, in);
  f->state[index] = CH_INFLIGHT;
  s->inflight++;
  s->dups += in->dup;
  WireMsg m = {.type = MSG_GET_CHUNK};
  memcpy(m.u.get_chunk.cid, f->cid, 32);
  m.u.get_chunk.index = index;
  send_to(f, s->id, &m);
}

/* Picks work for one source: the lowest missing chunk, or near the end
 * (nothing missing) a second copy of a chunk another source still owes, so
 * one slow source cannot hold up the last percent. */
static bool next_chunk(Fetch *f, Source *s, uint32_t *out)
{
  /* From a cursor, not from 0: a download of n chunks makes n requests. */
  while (f->missing_from < f->n && f->state[f->missing_from] != CH_MISSING)
    f->missing_from++;
  if (f->missing_from < f->n) {
    *out = f->missing_from;
    return true;
  }
  if (s->dups >= FETCH_MAX_DUPS)
    return false;
  for (uint32_t i = 0; i < f->n; i++)
    if (f->state[i] == CH_INFLIGHT && !find_inflight(f, s->id, i, NULL) &&
        copies_in_flight(f, i) < 2) {
      *out = i;
      return true;
    }
  return false;
}

static void schedule(Fetch *f, uint64_t now)
{
  if (!f->started || f->done)
    return;
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, f->sources);
  while (g_hash_table_iter_next(&it, NULL, &v)) {
    Source *s = v;
    uint32_t idx;
    while (s->alive && s->inflight < f->pipeline && next_chunk(f, s, &idx))
      request(f, s, idx, now);
  }
}

static void check_done(Fetch *f)
{
  if (!f->done && f->have == f->n) {
    f->done = true;
    FetchAction a = {.kind = FETCH_ACT_DONE};
    push(f, a);
  }
}

void fetch_start_chunks(Fetch *f, uint64_t now)
{
  if (!f->tree_ok)
    return;
  f->started = true;
  check_done(f);
  schedule(f, now);
}

static void finish_inflight(Fetch *f, guint pos)
{
  Inflight *in = g_ptr_array_index(f->inflight, pos);
  Source *s = g_hash_table_lookup(f->sources, &in->src);
  if (s && s->inflight)
    s->inflight--;
  if (s && in->dup && s->dups)
    s->dups--;
  g_ptr_array_remove_index_fast(f->inflight, pos);
}

static void on_chunk(Fetch *f, uint64_t src, const WireMsg *m, uint64_t now)
{
  guint pos;
  Inflight *in = find_inflight(f, src, m->u.chunk.index, &pos);
  if (!in || memcmp(m->u.chunk.cid, f->cid, 32) != 0)
    return; /* a piece of a chunk we gave up on */
  size_t len = fetch_chunk_len(f, in->index);
  if (m->u.chunk.offset != in->got || m->u.chunk.len > len - in->got ||
      (m->u.chunk.len == 0 && len > 0)) {
    drop_source(f, src, "it sent a piece out of place", now);
    return;
  }
  /* Allocated at the first piece: a source sends its chunks one after
   * another, so of a deep pipeline only the chunk in progress holds memory. */
  if (!in->buf)
    in->buf = g_malloc(MAX(len, 1));
  if (m->u.chunk.len)
    memcpy(in->buf + in->got, m->u.chunk.data, m->u.chunk.len);
  in->got += m->u.chunk.len;
  /* Slow but moving is not stalled: nor are the chunks queued behind this
   * one at the same source (it sends them in order, one after another). */
  for (guint i = 0; i < f->inflight->len; i++) {
    Inflight *o = g_ptr_array_index(f->inflight, i);
    if (o->src == src)
      o->deadline = now + CHUNK_TIMEOUT_MS;
  }
  if (in->got < len)
    return;
  uint32_t index = in->index;
  if (f->state[index] == CH_HAVE) { /* the other copy won the race */
    finish_inflight(f, pos);
    schedule(f, now);
    return;
  }
  uint8_t h[32];
  content_leaf_hash(in->buf, len, h);
  if (memcmp(h, f->leaves[index], 32) != 0) {
    drop_source(f, src, "it sent a chunk that failed verification", now);
    schedule(f, now);
    return;
  }
  FetchAction a = {.kind = FETCH_ACT_WRITE, .src = src, .offset = fetch_chunk_offset(f, index)};
  a.data = in->buf;
  a.len = len;
  in->buf = NULL;
  push(f, a);
  f->state[index] = CH_HAVE;
  f->have++;
  f->bytes_done += len;
  Source *s = g_hash_table_lookup(f->sources, &src);
  s->bytes += len;
  finish_inflight(f, pos);
  check_done(f);
  schedule(f, now);
}

void fetch_recv(Fetch *f, uint64_t src, const void *wire_msg, uint64_t now)
{
  const WireMsg *m = wire_msg;
  if (!alive_source(f, src))
    return;
  switch (m->type) {
  case MSG_TREE:
    on_tree(f, src, m, now);
    if (f->tree_pending || f->tree_ok)
      break;
    ask_tree(f, now); /* that source failed us: ask the next */
    break;
  case MSG_CHUNK:
    on_chunk(f, src, m, now);
    break;
  case MSG_XFER_ERROR:
    if (memcmp(m->u.xfer_error.cid, f->cid, 32) == 0) {
      drop_source(f, src,
                  m->u.xfer_error.code == XFER_BUSY ? "the source is busy"
                                                    : "the source does not have the file",
                  now);
      ask_tree(f, now);
      schedule(f, now);
    }
    break;
  default:
    break;
  }
}

/* --- sources and time -------------------------------------------------------- */

void fetch_add_source(Fetch *f, uint64_t src, uint64_t now)
{
  Source *s = g_hash_table_lookup(f->sources, &src);
  if (!s) {
    s = g_new0(Source, 1);
    s->id = src;
    g_hash_table_insert(f->sources, &s->id, s);
  }
  s->alive = true;
  ask_tree(f, now);
  schedule(f, now);
}

void fetch_source_lost(Fetch *f, uint64_t src, uint64_t now)
{
  Source *s = g_hash_table_lookup(f->sources, &src);
  if (!s || !s->alive)
    return;
  s->alive = false;
  for (guint i = f->inflight->len; i-- > 0;) {
    Inflight *in = g_ptr_array_index(f->inflight, i);
    if (in->src != src)
      continue;
    uint32_t index = in->index;
    finish_inflight(f, i);
    if (f->state[index] == CH_INFLIGHT && copies_in_flight(f, index) == 0) {
      f->state[index] = CH_MISSING;
      f->missing_from = MIN(f->missing_from, index);
    }
  }
  if (f->tree_pending && f->tree_src == src) {
    f->tree_pending = false;
    ask_tree(f, now);
  }
  schedule(f, now);
}

void fetch_tick(Fetch *f, uint64_t now)
{
  if (f->tree_pending && now >= f->tree_deadline)
    drop_source(f, f->tree_src, "it did not send the chunk hashes in time", now);
  for (guint i = 0; i < f->inflight->len; i++) {
    Inflight *in = g_ptr_array_index(f->inflight, i);
    if (now >= in->deadline) {
      drop_source(f, in->src, "it stalled on a chunk", now);
      i = (guint)-1; /* the array changed: start over */
    }
  }
  ask_tree(f, now);
  schedule(f, now);
}

uint64_t fetch_next_deadline(const Fetch *f)
{
  uint64_t t = f->tree_pending ? f->tree_deadline : UINT64_MAX;
  for (guint i = 0; i < f->inflight->len; i++)
    t = MIN(t, ((Inflight *)g_ptr_array_index(f->inflight, i))->deadline);
  return t;
}

bool fetch_next_action(Fetch *f, FetchAction *out)
{
  FetchAction *a = g_queue_pop_head(&f->actions);
  if (!a)
    return false;
  *out = *a;
  g_free(a);
  return true;
}

void fetch_action_clear(FetchAction *a)
{
  g_free(a->data);
  memset(a, 0, sizeof *a);
}
