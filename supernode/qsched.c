/* qsched.c - the fair queue in front of query handling.
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

FairShare *sn_query_sched_new(const SnConfig *cfg, uint64_t now)
{
  FairShareConfig fc = {
      .rate = cfg->query_rate,
      .burst = MAX(cfg->query_burst, 1.0),
      .max_per_origin = QSCHED_MAX_PER_ORIGIN,
      .max_per_group = QSCHED_MAX_PER_GROUP,
      .max_total = QSCHED_MAX_TOTAL,
      .max_wait_ms = QSCHED_MAX_WAIT_MS,
  };
  return fairshare_new(&fc, g_free, now);
}

/* Brings the scheduler's drops into queries_throttled. */
static void count_shed(SnCore *c)
{
  const FairShareStats *st = fairshare_stats(c->queries);
  uint64_t shed = st->refused + st->pushed_out + st->stale;
  c->stats.queries_throttled += shed - c->queries_shed_seen;
  c->queries_shed_seen = shed;
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
  uint64_t group = from->kind == PEER_LEAF ? QSCHED_LEAVES : from->conn;
  fairshare_push(c->queries, group, from->conn, q, now);
  sn_query_drain(c, now);
}

void sn_query_drain(SnCore *c, uint64_t now)
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
  count_shed(c);
}

void sn_query_forget(SnCore *c, uint64_t conn)
{
  if (c->queries)
    fairshare_forget(c->queries, conn);
}
