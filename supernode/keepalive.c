/* keepalive.c - silent sessions found at the heads of two ordered lists.
 * See keepalive.h for the rules and why. */
#include "keepalive.h"

static void to_tail(GQueue *q, GList *link)
{
  if (q->tail == link)
    return;
  g_queue_unlink(q, link);
  g_queue_push_tail_link(q, link);
}

void keepalive_open(SnCore *c, Peer *p, uint64_t now)
{
  p->last_rx = now;
  p->last_ping = now;
  p->ponged = false;
  p->rx_link = (GList){.data = p};
  p->ping_link = (GList){.data = p};
  g_queue_push_tail_link(&c->by_rx, &p->rx_link);
  g_queue_push_tail_link(&c->by_ping, &p->ping_link);
}

void keepalive_heard(SnCore *c, Peer *p, uint64_t now)
{
  /* The lists are sorted only if time does not run backwards. */
  if (now > p->last_rx)
    p->last_rx = now;
  to_tail(&c->by_rx, &p->rx_link);
  to_tail(&c->by_ping, &p->ping_link);
}

bool keepalive_answer_ping(Peer *p, uint64_t nonce)
{
  /* Never two spare PINGs in a row unanswered: the sender's silence bound
   * is 3 of its intervals (wire.h). */
  p->ponged = !(nonce & WIRE_PING_SPARE) || !p->ponged;
  return p->ponged;
}

void keepalive_forget(SnCore *c, Peer *p)
{
  g_queue_unlink(&c->by_rx, &p->rx_link);
  g_queue_unlink(&c->by_ping, &p->ping_link);
}

static uint64_t silence_limit(const SnCore *c, uint64_t period)
{
  /* Less one sweep period, so that with the sweep's own delay the peer is
   * gone within 3 intervals of its last message. */
  return 3 * c->cfg.keepalive_ms - period;
}

static uint64_t ping_key(const Peer *p)
{
  return MAX(p->last_rx, p->last_ping);
}

void keepalive_sweep(SnCore *c, uint64_t now, uint64_t period)
{
  uint64_t limit = silence_limit(c, period), ka = c->cfg.keepalive_ms;
  /* Closing forgets the peer, which unlinks it: the head moves on. */
  GList *l;
  while ((l = c->by_rx.head) && ((Peer *)l->data)->last_rx + limit <= now)
    sn_close_peer(c, l->data, "keepalive timeout", now);
  while ((l = c->by_ping.head) && ping_key(l->data) + ka <= now) {
    Peer *p = l->data;
    if (p->kind != PEER_NEW) {
      WireMsg ping = {.type = MSG_PING};
      ping.u.ping = now;
      sn_send(c, p->conn, &ping);
    }
    p->last_ping = now;
    to_tail(&c->by_ping, l);
  }
}

uint64_t keepalive_deadline(const SnCore *c, uint64_t period)
{
  uint64_t t = UINT64_MAX;
  if (c->by_rx.head)
    t = ((const Peer *)c->by_rx.head->data)->last_rx + silence_limit(c, period);
  if (c->by_ping.head)
    t = MIN(t, ping_key(c->by_ping.head->data) + c->cfg.keepalive_ms);
  return t;
}
