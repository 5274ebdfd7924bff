/* hostsend.c - HOSTS to leaves and REFUSE for a full super node (see
 * hostsend.h). */
#include "hostsend.h"

#include <glib.h>
#include <string.h>

#include "mesh.h"
#include "ratelimit.h"
#include "sncore_int.h"

struct HostSend {
  GQueue queue;     /* conn ids (as pointers to uint64_t) waiting for HOSTS */
  GHashTable *in_q; /* conn -> queued (so a leaf is in the queue once) */
  RateLimit rate;
  uint64_t next_check;
  uint64_t last_round; /* 0: none yet */
  uint64_t fingerprint;
  HostSendStats stats;
};

HostSend *hostsend_new(uint64_t now)
{
  HostSend *h = g_new0(HostSend, 1);
  g_queue_init(&h->queue);
  h->in_q = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
  ratelimit_init(&h->rate, SN_HOSTS_SEND_RATE, SN_HOSTS_SEND_BURST, now);
  h->next_check = now + SN_HOSTS_CHECK_MS;
  return h;
}

void hostsend_free(HostSend *h)
{
  if (!h)
    return;
  g_queue_clear(&h->queue); /* the keys are in_q's */
  g_hash_table_destroy(h->in_q);
  g_free(h);
}

/* The one place that asks the address book for hosts: the verified
 * addresses it passes on, least leaf-loaded first (unknown loads last). */
static size_t hosts_from_book(SnCore *c, const uint8_t *exclude_id, WireHost *out, size_t max)
{
  return mesh_hosts(c->mesh, exclude_id, out, MIN(max, (size_t)WIRE_MAX_HOSTS), true);
}

size_t sn_hosts_fill(SnCore *c, const uint8_t *exclude_id, WireHost *out, size_t max)
{
  return hosts_from_book(c, exclude_id, out, max);
}

static uint8_t percent(unsigned have, unsigned max)
{
  if (max == 0)
    return WIRE_LOAD_UNKNOWN;
  return (uint8_t)MIN(100u, (unsigned)((uint64_t)have * 100 / max));
}

/* HOSTS for one leaf: ourselves first (our load: what a leaf compares the
 * others with), then the others. */
static void send_hosts(SnCore *c, Peer *p)
{
  WireHost h[WIRE_MAX_HOSTS];
  size_t n = 0;
  if (c->advertise[0]) {
    memcpy(h[0].id, c->self, 32);
    h[0].addr = wire_str(c->advertise, strlen(c->advertise));
    h[0].leaf_load = percent(c->stats.leaves, c->cfg.max_leaves);
    h[0].link_load = percent(c->stats.links, c->cfg.max_super_links);
    n = 1;
  }
  n += sn_hosts_fill(c, p->id, h + n, WIRE_MAX_HOSTS - n);
  WireMsg m = {.type = MSG_HOSTS};
  m.u.hosts.count = (uint16_t)n;
  m.u.hosts.hosts = h;
  sn_send(c, p->conn, &m);
  c->hostsend->stats.hosts_sent++;
}

static void enqueue(HostSend *h, uint64_t conn)
{
  if (g_hash_table_contains(h->in_q, &conn))
    return;
  uint64_t *k = g_memdup2(&conn, sizeof conn);
  g_hash_table_add(h->in_q, k);
  g_queue_push_tail(&h->queue, k);
}

void sn_hosts_leaf_attached(SnCore *c, Peer *p, uint64_t now)
{
  enqueue(c->hostsend, p->conn);
  sn_hosts_tick(c, now);
}

void sn_hosts_refuse_leaf(SnCore *c, Peer *p, uint64_t now)
{
  WireHost h[WIRE_MAX_HOSTS];
  WireMsg m = {.type = MSG_REFUSE};
  m.u.refuse.reason = REFUSE_LEAVES_FULL;
  m.u.refuse.retry_ms = SN_HOSTS_REFUSE_RETRY_MS;
  m.u.refuse.count = (uint16_t)sn_hosts_fill(c, p->id, h, WIRE_MAX_HOSTS);
  m.u.refuse.hosts = h;
  sn_send(c, p->conn, &m);
  c->hostsend->stats.refused++;
  g_debug("leaf refused (max-leaves %u): %u other super nodes named", c->cfg.max_leaves,
          m.u.refuse.count);
  sn_close_peer(c, p, "too many leaves", now);
}

/* Order-free, over the whole set mesh_hosts draws from: a digest of the
 * (shuffled, capped) list itself would change at every look once more than
 * WIRE_MAX_HOSTS are known, and every leaf would be told again each round. */
static uint64_t set_fingerprint(SnCore *c)
{
  return mesh_passable_fingerprint(c->mesh);
}

static void start_round(SnCore *c, uint64_t now)
{
  HostSend *h = c->hostsend;
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, c->leaves_by_id);
  while (g_hash_table_iter_next(&it, NULL, &v))
    enqueue(h, ((Peer *)v)->conn);
  h->last_round = now;
  h->stats.rounds++;
}

void sn_hosts_tick(SnCore *c, uint64_t now)
{
  HostSend *h = c->hostsend;
  if (now >= h->next_check) {
    h->next_check = now + SN_HOSTS_CHECK_MS;
    uint64_t fp = set_fingerprint(c);
    if (fp != h->fingerprint && (h->last_round == 0 || now - h->last_round >= SN_HOSTS_ROUND_MS)) {
      h->fingerprint = fp;
      start_round(c, now);
    }
  }
  while (!g_queue_is_empty(&h->queue)) {
    /* Leaves gone since they were queued cost no token. */
    uint64_t *k = g_queue_peek_head(&h->queue);
    Peer *p = g_hash_table_lookup(c->peers, k);
    bool live = p && p->kind == PEER_LEAF;
    if (live && !ratelimit_take(&h->rate, now))
      break;
    g_queue_pop_head(&h->queue);
    if (live)
      send_hosts(c, p);
    g_hash_table_remove(h->in_q, k);
  }
}

uint64_t sn_hosts_deadline(const SnCore *c)
{
  const HostSend *h = c->hostsend;
  if (h->queue.length > 0)
    return h->rate.last_ms + SN_HOSTS_DRAIN_MS; /* a few at a time, not a wakeup each */
  return h->next_check;
}

void sn_hosts_stats(const SnCore *c, HostSendStats *out)
{
  *out = c->hostsend->stats;
  out->queued = g_queue_get_length(&c->hostsend->queue);
}
