/* sources.c - the candidate sources of one download (sources.h). */
#include "sources.h"

#include <glib.h>
#include <string.h>

/* A refused link ("busy": the source's inbound budgets are spent for now)
 * is tried again after SOURCES_RETRY_MS, doubling with each refusal in a
 * row (4, 8, 16 s); at the SOURCES_MAX_REFUSALS-th the candidate is given
 * up for this run of the download (done, not bad: a resume asks it again),
 * about half a minute after the first. 4 s is the source's offer refill
 * time (OFFERGATE_REFILL_MS). */
#define SOURCES_RETRY_MS 4000
#define SOURCES_MAX_REFUSALS 4
/* Links that did not open in time (and gave their slot to another) before
 * the candidate is bad: a liar costs one slot twice open_wait_ms, a slow
 * honest source is not lost to one unlucky first try. */
#define SOURCES_MAX_SLOW 2

typedef enum {
  CAND_NEW,     /* not linked yet, or refused and waiting for retry_at */
  CAND_LINKING, /* link asked for at since, not open */
  CAND_OPEN,    /* link open: a source */
  CAND_DONE,    /* its link ended after opening, or its size was given up */
  CAND_BAD,     /* its link failed, or was slow SOURCES_MAX_SLOW times: never
                   again in this download */
} CandState;

typedef struct {
  uint8_t peer[32];
  uint64_t size;
  uint64_t since;    /* LINKING */
  uint64_t retry_at; /* NEW: not to be linked before (0: at once) */
  unsigned refusals; /* in a row, since it last opened */
  unsigned slow;     /* links that gave their slot up for not opening */
  CandState state;
} Cand;

struct Sources {
  unsigned max;
  uint64_t open_wait_ms;
  SourcesRandomFn rng;
  void *rng_ctx;
  GArray *cands; /* Cand, in the order of the hits */
};

Sources *sources_new(unsigned max, uint64_t open_wait_ms, SourcesRandomFn rng, void *rng_ctx)
{
  if (max == 0 || !rng)
    return NULL;
  Sources *s = g_new0(Sources, 1);
  s->max = max;
  s->open_wait_ms = open_wait_ms;
  s->rng = rng;
  s->rng_ctx = rng_ctx;
  s->cands = g_array_new(FALSE, TRUE, sizeof(Cand));
  return s;
}

void sources_free(Sources *s)
{
  if (!s)
    return;
  g_array_unref(s->cands);
  g_free(s);
}

static Cand *find(const Sources *s, const uint8_t peer[32])
{
  for (guint i = 0; i < s->cands->len; i++) {
    Cand *c = &g_array_index(s->cands, Cand, i);
    if (memcmp(c->peer, peer, 32) == 0)
      return c;
  }
  return NULL;
}

bool sources_add(Sources *s, const uint8_t peer[32], uint64_t size)
{
  if (find(s, peer) || s->cands->len >= s->max)
    return false;
  Cand c = {.size = size, .state = CAND_NEW};
  memcpy(c.peer, peer, 32);
  g_array_append_val(s->cands, c);
  return true;
}

void sources_restart(Sources *s)
{
  for (guint i = s->cands->len; i-- > 0;)
    if (g_array_index(s->cands, Cand, i).state != CAND_BAD)
      g_array_remove_index(s->cands, i);
}

size_t sources_count(const Sources *s)
{
  return s->cands->len - sources_bad(s);
}

size_t sources_bad(const Sources *s)
{
  size_t n = 0;
  for (guint i = 0; i < s->cands->len; i++)
    n += g_array_index(s->cands, Cand, i).state == CAND_BAD;
  return n;
}

/* A uniform choice among n (> 0); the modulo bias is below 2^-32 * n. */
static size_t pick(Sources *s, size_t n)
{
  uint8_t b[8];
  s->rng(b, sizeof b, s->rng_ctx);
  uint64_t r = 0;
  for (int i = 0; i < 8; i++)
    r = r << 8 | b[i];
  return (size_t)(r % n);
}

/* An untried candidate that may be linked at now. */
static bool due(const Cand *c, uint64_t now)
{
  return c->state == CAND_NEW && c->retry_at <= now;
}

/* The k-th (0-based) untried candidate of size (any size if !by_size). */
static Cand *nth_new(const Sources *s, bool by_size, uint64_t size, size_t k)
{
  for (guint i = 0; i < s->cands->len; i++) {
    Cand *c = &g_array_index(s->cands, Cand, i);
    if (c->state == CAND_NEW && (!by_size || c->size == size) && k-- == 0)
      return c;
  }
  return NULL;
}

/* The k-th (0-based) candidate of size that may be linked at now. */
static Cand *nth_due(const Sources *s, uint64_t size, uint64_t now, size_t k)
{
  for (guint i = 0; i < s->cands->len; i++) {
    Cand *c = &g_array_index(s->cands, Cand, i);
    if (due(c, now) && c->size == size && k-- == 0)
      return c;
  }
  return NULL;
}

static size_t count_due(const Sources *s, uint64_t size, uint64_t now)
{
  size_t n = 0;
  for (guint i = 0; i < s->cands->len; i++) {
    const Cand *c = &g_array_index(s->cands, Cand, i);
    n += due(c, now) && c->size == size;
  }
  return n;
}

static size_t count_new(const Sources *s, bool by_size, uint64_t size)
{
  size_t n = 0;
  for (guint i = 0; i < s->cands->len; i++) {
    const Cand *c = &g_array_index(s->cands, Cand, i);
    n += c->state == CAND_NEW && (!by_size || c->size == size);
  }
  return n;
}

bool sources_pick_size(Sources *s, uint64_t *size)
{
  size_t n = count_new(s, false, 0);
  if (n == 0)
    return false;
  *size = nth_new(s, false, 0, pick(s, n))->size;
  return true;
}

void sources_drop_size(Sources *s, uint64_t size)
{
  for (guint i = 0; i < s->cands->len; i++) {
    Cand *c = &g_array_index(s->cands, Cand, i);
    if (c->state == CAND_NEW && c->size == size)
      c->state = CAND_DONE;
  }
}

bool sources_waiting(const Sources *s, uint64_t size)
{
  return count_new(s, true, size) > 0;
}

bool sources_next(Sources *s, uint64_t size, uint64_t now, uint8_t peer[32])
{
  size_t n = count_due(s, size, now);
  if (n == 0)
    return false;
  Cand *c = nth_due(s, size, now, pick(s, n));
  c->state = CAND_LINKING;
  c->since = now;
  memcpy(peer, c->peer, 32);
  return true;
}

void sources_opened(Sources *s, const uint8_t peer[32])
{
  Cand *c = find(s, peer);
  if (c && c->state == CAND_LINKING) {
    c->state = CAND_OPEN;
    c->refusals = 0;
  }
}

uint64_t sources_refused(Sources *s, const uint8_t peer[32], uint64_t now)
{
  Cand *c = find(s, peer);
  if (!c || c->state != CAND_LINKING)
    return UINT64_MAX;
  if (++c->refusals >= SOURCES_MAX_REFUSALS) {
    c->state = CAND_DONE;
    return UINT64_MAX;
  }
  c->state = CAND_NEW;
  c->retry_at = now + ((uint64_t)SOURCES_RETRY_MS << (c->refusals - 1));
  return c->retry_at;
}

void sources_defer(Sources *s, const uint8_t peer[32], uint64_t until)
{
  Cand *c = find(s, peer);
  if (!c || c->state != CAND_LINKING)
    return;
  c->state = CAND_NEW;
  c->retry_at = until;
}

void sources_closed(Sources *s, const uint8_t peer[32])
{
  Cand *c = find(s, peer);
  if (!c)
    return;
  if (c->state == CAND_LINKING)
    c->state = CAND_BAD;
  else if (c->state == CAND_OPEN)
    c->state = CAND_DONE;
}

bool sources_overdue(Sources *s, uint64_t size, uint64_t now, uint8_t peer[32])
{
  /* Only a candidate of the size being tried can take the slot (the caller
   * links no other): an untried one of another size, perhaps a liar's, must
   * not push out a slow honest source. */
  if (count_due(s, size, now) == 0)
    return false; /* nobody to give the slot to: the link's own deadline rules */
  for (guint i = 0; i < s->cands->len; i++) {
    Cand *c = &g_array_index(s->cands, Cand, i);
    if (c->state == CAND_LINKING && now - c->since >= s->open_wait_ms) {
      if (++c->slow >= SOURCES_MAX_SLOW) {
        c->state = CAND_BAD;
      } else {
        c->state = CAND_NEW;
        c->retry_at = now + s->open_wait_ms;
      }
      memcpy(peer, c->peer, 32);
      return true;
    }
  }
  return false;
}

uint64_t sources_next_deadline(const Sources *s, uint64_t size, uint64_t now)
{
  /* A slot is given up only to a candidate that may be linked by then. */
  uint64_t first_due = UINT64_MAX;
  for (guint i = 0; i < s->cands->len; i++) {
    const Cand *c = &g_array_index(s->cands, Cand, i);
    if (c->state == CAND_NEW && c->size == size)
      first_due = MIN(first_due, MAX(c->retry_at, now));
  }
  if (first_due == UINT64_MAX)
    return UINT64_MAX;
  uint64_t t = UINT64_MAX;
  for (guint i = 0; i < s->cands->len; i++) {
    const Cand *c = &g_array_index(s->cands, Cand, i);
    if (c->state == CAND_LINKING)
      t = MIN(t, MAX(c->since + s->open_wait_ms, first_due));
    /* A retry already due waits for a free slot (a link ending links the
     * next), not for a timer that would fire at once again and again. */
    else if (c->state == CAND_NEW && c->size == size && c->retry_at > now)
      t = MIN(t, c->retry_at);
  }
  return t;
}
