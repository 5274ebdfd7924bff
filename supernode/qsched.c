/* qsched.c - the fair queues in front of query handling and of flooding
 * ICE offers.
 *
 * Every query a super node handles costs an index lookup here and, flooded,
 * about 2E-(N-1) messages across the mesh, so the budget is one rate for all
 * of them (SnConfig.query_rate) shared out by fairshare.h: each link is a
 * group of its own, and our leaves together are one more group split per
 * leaf. A hundred Sybil leaves thus share one leaf group's part instead of
 * taking a hundred links' worth, and each of them gets no more than an
 * honest leaf. What exceeds a share waits briefly (bounded queues), then is
 * shed; per-session buckets (leaf_query_rate, super_query_rate) still cap
 * each sender before it reaches the queue.
 *
 * Whom to trust as the origin of a flooded query: the neighbour it arrived
 * from, an authenticated session. An origin id carried in the query could be
 * set to anything by every super node on the path, so a liar could spread
 * its flood over invented origins and take many shares; keyed by link, a
 * liar gets one share at each neighbour, and because every node schedules
 * its own input the same way, what it forwards of someone's flood is
 * already cut to that origin's share at its own first hop.
 *
 * ICE offers for a leaf that is not ours flood the mesh like queries, so
 * they get the same treatment in a queue of their own (signal_rate):
 * a crowd of leaves each within its 5 offers/s cannot make a neighbour
 * drop an honest leaf's offer. Answers and rejects follow one reverse path
 * and are not queued.
 */
#include <glib.h>
#include <string.h>

#include "fairshare.h"
#include "sncore_int.h"

#define QSCHED_MAX_PER_ORIGIN 16 /* queued queries of one leaf or link */
#define QSCHED_MAX_PER_GROUP 256 /* ... of one link, or of all our leaves */
#define QSCHED_MAX_TOTAL 1024    /* ... in all: at most ~300 KiB */
/* A leaf's search waits 1.5 s for hits by default: later is useless. */
#define QSCHED_MAX_WAIT_MS 1000
/* Offers are up to 8 KiB (WIRE_MAX_SIGNAL): 256 of them at most 2 MiB. */
#define SSCHED_MAX_PER_ORIGIN 8
#define SSCHED_MAX_PER_GROUP 64
#define SSCHED_MAX_TOTAL 256
/* A leaf gives an offer's answer seconds: a short wait still helps. */
#define SSCHED_MAX_WAIT_MS 2000
#define QSCHED_LEAVES UINT64_MAX /* our leaves' group (session ids count from 1) */

typedef struct {
  uint64_t conn;
  uint32_t req;
  bool has_qid; /* a link's QUERY; a leaf's SEARCH gets its id when handled */
  uint8_t qid[WIRE_QID_LEN];
  uint8_t ttl, kind;
  size_t len;
  char text[]; /* len bytes, at most WIRE_MAX_QUERY (the decoder's cap) */
} Queued;

typedef struct {
  uint64_t conn;
  uint8_t sid[WIRE_QID_LEN];
  uint8_t ttl, kind;
  uint8_t src[WIRE_ID_LEN], dst[WIRE_ID_LEN];
  size_t len;
  char text[]; /* len bytes, at most WIRE_MAX_SIGNAL */
} QueuedOffer;

bool sn_sched_init(SnCore *c, uint64_t now)
{
  FairShareConfig q = {
      .rate = c->cfg.query_rate,
      .burst = MAX(c->cfg.query_burst, 1.0),
      .max_per_origin = QSCHED_MAX_PER_ORIGIN,
      .max_per_group = QSCHED_MAX_PER_GROUP,
      .max_total = QSCHED_MAX_TOTAL,
      .max_wait_ms = QSCHED_MAX_WAIT_MS,
  };
  FairShareConfig s = {
      .rate = c->cfg.signal_rate,
      .burst = MAX(c->cfg.signal_rate, 1.0),
      .max_per_origin = SSCHED_MAX_PER_ORIGIN,
      .max_per_group = SSCHED_MAX_PER_GROUP,
      .max_total = SSCHED_MAX_TOTAL,
      .max_wait_ms = SSCHED_MAX_WAIT_MS,
  };
  c->queries = fairshare_new(&q, g_free, now);
  c->signals = fairshare_new(&s, g_free, now);
  return c->queries && c->signals;
}

void sn_sched_free(SnCore *c)
{
  fairshare_free(c->queries);
  fairshare_free(c->signals);
  c->queries = c->signals = NULL;
}

static uint64_t group_of(const Peer *from)
{
  return from->kind == PEER_LEAF ? QSCHED_LEAVES : from->conn;
}

/* A scheduler's drops since last time. */
static uint64_t shed_since(FairShare *fs, uint64_t *seen)
{
  const FairShareStats *st = fairshare_stats(fs);
  uint64_t shed = st->refused + st->pushed_out + st->stale;
  uint64_t d = shed - *seen;
  *seen = shed;
  return d;
}

void sn_query_push(SnCore *c, Peer *from, const uint8_t *qid, uint8_t ttl, uint8_t kind,
                   WireStr text, uint32_t req, uint64_t now)
{
  size_t len = MIN(text.len, (size_t)WIRE_MAX_QUERY);
  Queued *q = g_malloc(sizeof *q + len);
  q->conn = from->conn;
  q->req = req;
  q->has_qid = qid != NULL;
  if (qid)
    memcpy(q->qid, qid, WIRE_QID_LEN);
  q->ttl = ttl;
  q->kind = kind;
  q->len = len;
  memcpy(q->text, text.p, len);
  fairshare_push(c->queries, group_of(from), from->conn, q, now);
  sn_sched_drain(c, now);
}

void sn_signal_push(SnCore *c, Peer *from, const WireMsg *offer, uint64_t now)
{
  size_t len = MIN(offer->u.signal.text.len, (size_t)WIRE_MAX_SIGNAL);
  QueuedOffer *o = g_malloc(sizeof *o + len);
  o->conn = from->conn;
  memcpy(o->sid, offer->u.signal.sid, WIRE_QID_LEN);
  o->ttl = offer->u.signal.ttl;
  o->kind = offer->u.signal.kind;
  memcpy(o->src, offer->u.signal.src, WIRE_ID_LEN);
  memcpy(o->dst, offer->u.signal.dst, WIRE_ID_LEN);
  o->len = len;
  memcpy(o->text, offer->u.signal.text.p, len);
  fairshare_push(c->signals, group_of(from), from->conn, o, now);
  sn_sched_drain(c, now);
}

void sn_sched_drain(SnCore *c, uint64_t now)
{
  Queued *q;
  while ((q = fairshare_next(c->queries, now, NULL))) {
    Peer *p = g_hash_table_lookup(c->peers, &q->conn);
    if (p && (p->kind == PEER_LEAF || p->kind == PEER_SUPER)) {
      if (!q->has_qid)
        c->rng(q->qid, sizeof q->qid, c->rng_ctx);
      sn_handle_query(c, p, q->qid, q->ttl, q->kind, wire_str(q->text, q->len), q->req, now);
    }
    g_free(q);
  }
  c->stats.queries_throttled += shed_since(c->queries, &c->queries_shed_seen);

  QueuedOffer *o;
  while ((o = fairshare_next(c->signals, now, NULL))) {
    /* The reverse path was recorded when the offer came in; if its sender
     * is gone, an answer could not go back: do not flood it. */
    if (g_hash_table_contains(c->peers, &o->conn)) {
      WireMsg m = {.type = MSG_SIGNAL};
      memcpy(m.u.signal.sid, o->sid, WIRE_QID_LEN);
      m.u.signal.ttl = o->ttl;
      m.u.signal.kind = o->kind;
      memcpy(m.u.signal.src, o->src, WIRE_ID_LEN);
      memcpy(m.u.signal.dst, o->dst, WIRE_ID_LEN);
      m.u.signal.text = wire_str(o->text, o->len);
      sn_forward(c, o->conn, &m);
      c->stats.signals_relayed++;
    }
    g_free(o);
  }
  c->stats.signals_dropped += shed_since(c->signals, &c->signals_shed_seen);
}

uint64_t sn_sched_deadline(const SnCore *c)
{
  return MIN(fairshare_deadline(c->queries), fairshare_deadline(c->signals));
}

void sn_core_set_query_rate(SnCore *c, double rate, uint64_t now)
{
  c->cfg.query_rate = c->cfg.query_burst = rate;
  fairshare_set_rate(c->queries, rate, MAX(rate, 1.0), now);
}

void sn_sched_forget(SnCore *c, uint64_t conn)
{
  if (c->queries)
    fairshare_forget(c->queries, conn);
  if (c->signals)
    fairshare_forget(c->signals, conn);
}
