/* test_sncore.c - the super-node core, driven in a small in-memory network.
 *
 * The harness is a "network" of SnCore instances with a fake clock. Every
 * connection has two ends, each with its own connection id (ids are unique
 * across the whole network, so an id names one end). A SEND action on an end
 * is delivered (sn_core_recv) to the other end; a CLOSE action tells the
 * other end's core (sn_core_closed). Deliveries are FIFO, so every run is
 * deterministic. A fake leaf is just a connection id on its super node: the
 * test writes its messages with wire_encode, and what the super node sends it
 * lands in its inbox, decoded with wire_decode when a test looks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "degree.h"
#include "identity.h"
#include "mesh.h"
#include "netcert.h"
#include "sncore.h"
#include "wire.h"

#define MAX_NODES 6
#define MAX_ENDS 512
#define MAX_LEAVES 16

enum { S1, S2, S3, S4 };

typedef enum { END_NONE, END_SUPER, END_LEAF } EndKind;

typedef struct {
  EndKind kind;
  int node;      /* the core that owns this end */
  uint64_t peer; /* END_SUPER: the other end's conn */
  int leaf;      /* END_LEAF: index into Net.leaves */
  bool open;     /* neither closed by its core nor reported closed to it */
} End;

typedef struct {
  uint64_t conn;
  const char *reason;
} CloseRec;

typedef struct {
  SnCore *core;
  uint8_t id[32];
  char addr[32];
  uint64_t rng;
  unsigned sent[32]; /* SEND actions by message type */
  GArray *closes;    /* CloseRec: CLOSE actions */
  unsigned leaf_ups; /* LEAF_UP actions (the shell then sends NAT_INFO) */
  GPtrArray *dials;  /* char*: DIAL actions */
} Node;

typedef struct {
  int node;
  uint64_t conn;
  uint8_t id[32];
  bool closed;
  const char *reason;
  GPtrArray *inbox; /* GBytes: what the super node sent */
} Leaf;

typedef enum { EV_MSG, EV_CLOSED } EvKind;

typedef struct {
  EvKind kind;
  uint64_t conn; /* the receiving end */
  GBytes *data;
} Ev;

typedef struct {
  uint64_t now;
  int n;
  Node node[MAX_NODES];
  End ends[MAX_ENDS];
  uint64_t next_conn;
  Leaf leaves[MAX_LEAVES];
  int nleaves;
  GQueue events;
  bool auto_dial;          /* complete DIAL actions to the node with that address */
  const char *unreachable; /* with auto_dial: this address fails to connect */
  unsigned acts_on_closed; /* core bug: SEND/CLOSE on an end it no longer has */
} Net;

typedef struct {
  char name[WIRE_MAX_NAME + 1];
  uint64_t size;
  uint8_t cid[32];
  uint8_t peer[32];
} Hit;

/* splitmix64: a deterministic RNG (query ids) per node. */
static void rng_fill(uint8_t *out, size_t n, void *ctx)
{
  uint64_t *s = ctx;
  while (n) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    size_t k = n < 8 ? n : 8;
    memcpy(out, &z, k);
    out += k;
    n -= k;
  }
}

static void cid_of(const char *name, uint8_t cid[32])
{
  memset(cid, 0x3C, 32);
  for (size_t i = 0; name[i]; i++)
    cid[i % 32] = (uint8_t)(cid[i % 32] * 31 + (uint8_t)name[i]);
}

/* --- the network ------------------------------------------------------------ */

static Net *net_new(int n, const SnConfig *cfg, bool reverse_ids)
{
  Net *net = g_new0(Net, 1);
  net->now = 1000000;
  net->n = n;
  net->next_conn = 1;
  g_queue_init(&net->events);
  for (int i = 0; i < n; i++) {
    Node *nd = &net->node[i];
    memset(nd->id, 0x42, 32);
    nd->id[0] = reverse_ids ? (uint8_t)(0x80 - i) : (uint8_t)(0x10 + i);
    snprintf(nd->addr, sizeof nd->addr, "s%d:4000", i + 1);
    nd->rng = 0x1234 + (uint64_t)i * 7919;
    nd->closes = g_array_new(FALSE, TRUE, sizeof(CloseRec));
    nd->dials = g_ptr_array_new_with_free_func(g_free);
    SnConfig c = *cfg;
    c.advertise = nd->addr;
    nd->core = sn_core_new(&c, nd->id, rng_fill, &nd->rng, net->now);
    assert_non_null(nd->core);
  }
  return net;
}

static void net_free(Net *net)
{
  /* Every test also checks that no core acted on a connection it had
   * already closed or been told was closed. */
  assert_int_equal(net->acts_on_closed, 0);
  for (int i = 0; i < net->n; i++) {
    sn_core_free(net->node[i].core);
    g_array_unref(net->node[i].closes);
    g_ptr_array_unref(net->node[i].dials);
  }
  for (int i = 0; i < net->nleaves; i++)
    g_ptr_array_unref(net->leaves[i].inbox);
  Ev *ev;
  while ((ev = g_queue_pop_head(&net->events))) {
    if (ev->data)
      g_bytes_unref(ev->data);
    g_free(ev);
  }
  g_free(net);
}

static const SnStats *stats(Net *net, int node)
{
  return sn_core_stats(net->node[node].core);
}

static uint64_t new_end(Net *net, int node, EndKind kind)
{
  assert_true(net->next_conn < MAX_ENDS);
  uint64_t conn = net->next_conn++;
  End *e = &net->ends[conn];
  e->kind = kind;
  e->node = node;
  e->open = true;
  return conn;
}

static void enqueue(Net *net, EvKind kind, uint64_t conn, GBytes *data)
{
  Ev *ev = g_new0(Ev, 1);
  ev->kind = kind;
  ev->conn = conn;
  ev->data = data;
  g_queue_push_tail(&net->events, ev);
}

static int node_by_addr(Net *net, const char *addr)
{
  for (int i = 0; i < net->n; i++)
    if (strcmp(net->node[i].addr, addr) == 0)
      return i;
  return -1;
}

/* Node a dialed node b at `dialed` (b's address if NULL) and both finished the
 * handshake. Returns a's end. Nothing is delivered yet. */
static uint64_t net_connect(Net *net, int a, int b, const char *dialed)
{
  uint64_t ca = new_end(net, a, END_SUPER);
  uint64_t cb = new_end(net, b, END_SUPER);
  net->ends[ca].peer = cb;
  net->ends[cb].peer = ca;
  sn_core_open(net->node[a].core, ca, net->node[b].id, dialed ? dialed : net->node[b].addr,
               net->now);
  sn_core_open(net->node[b].core, cb, net->node[a].id, NULL, net->now);
  return ca;
}

static void handle_action(Net *net, int i, SnAction *a)
{
  Node *nd = &net->node[i];
  if (a->kind == SN_ACT_DIAL) {
    g_ptr_array_add(nd->dials, g_strdup(a->addr));
    if (net->auto_dial) {
      int t = node_by_addr(net, a->addr);
      if (t >= 0 && !(net->unreachable && strcmp(a->addr, net->unreachable) == 0))
        net_connect(net, i, t, a->addr);
      else
        sn_core_dial_failed(nd->core, a->addr, net->now);
    }
    return;
  }
  assert_true(a->conn > 0 && a->conn < net->next_conn);
  End *e = &net->ends[a->conn];
  assert_int_equal(e->node, i); /* a core acts only on its own connections */
  if (!e->open) {
    net->acts_on_closed++;
    return;
  }
  if (a->kind == SN_ACT_SEND) {
    assert_true(a->len >= 2);
    if (a->data[1] < 32)
      nd->sent[a->data[1]]++;
    GBytes *data = g_bytes_new(a->data, a->len);
    if (e->kind == END_SUPER)
      enqueue(net, EV_MSG, e->peer, data);
    else
      g_ptr_array_add(net->leaves[e->leaf].inbox, data);
    return;
  }
  if (a->kind == SN_ACT_LEAF_UP) {
    assert_int_equal(e->kind, END_LEAF);
    nd->leaf_ups++;
    return;
  }
  if (a->kind == SN_ACT_LINK_UP) {
    assert_int_equal(e->kind, END_SUPER);
    return;
  }
  /* SN_ACT_CLOSE */
  assert_non_null(a->reason);
  CloseRec r = {a->conn, a->reason};
  g_array_append_val(nd->closes, r);
  e->open = false;
  if (e->kind == END_SUPER) {
    enqueue(net, EV_CLOSED, e->peer, NULL);
  } else {
    net->leaves[e->leaf].closed = true;
    net->leaves[e->leaf].reason = a->reason;
  }
}

static void drain(Net *net)
{
  bool any;
  do {
    any = false;
    for (int i = 0; i < net->n; i++) {
      SnAction a;
      while (sn_core_next_action(net->node[i].core, &a)) {
        any = true;
        handle_action(net, i, &a);
        sn_action_clear(&a);
      }
    }
  } while (any);
}

/* Runs the network until nothing is in flight. */
static void pump(Net *net)
{
  for (;;) {
    drain(net);
    Ev *ev = g_queue_pop_head(&net->events);
    if (!ev)
      break;
    End *e = &net->ends[ev->conn];
    if (e->open) {
      SnCore *c = net->node[e->node].core;
      if (ev->kind == EV_MSG) {
        size_t len;
        const uint8_t *p = g_bytes_get_data(ev->data, &len);
        sn_core_recv(c, ev->conn, p, len, net->now);
      } else {
        e->open = false;
        sn_core_closed(c, ev->conn, net->now);
      }
    }
    if (ev->data)
      g_bytes_unref(ev->data);
    g_free(ev);
  }
}

static uint64_t net_link(Net *net, int a, int b)
{
  uint64_t ca = net_connect(net, a, b, NULL);
  pump(net);
  return ca;
}

static void net_tick(Net *net, uint64_t now)
{
  net->now = now;
  for (int i = 0; i < net->n; i++)
    sn_core_tick(net->node[i].core, now);
  pump(net);
}

static unsigned closes_on(Net *net, int node, uint64_t conn)
{
  unsigned n = 0;
  GArray *c = net->node[node].closes;
  for (guint i = 0; i < c->len; i++)
    n += g_array_index(c, CloseRec, i).conn == conn;
  return n;
}

static unsigned dials_to(Net *net, int node, const char *addr)
{
  unsigned n = 0;
  GPtrArray *d = net->node[node].dials;
  for (guint i = 0; i < d->len; i++)
    n += strcmp(g_ptr_array_index(d, i), addr) == 0;
  return n;
}

typedef struct {
  const uint8_t *id;
  unsigned count;
  uint64_t conn;
} LinkFind;

static void link_find_cb(const uint8_t id[32], const char *addr, uint64_t conn, void *ctx)
{
  LinkFind *f = ctx;
  if (!f->id || memcmp(id, f->id, 32) == 0) {
    f->count++;
    f->conn = conn;
  }
}

/* How many links node has to other (all links if other < 0); *conn gets one. */
static unsigned links_to(Net *net, int node, int other, uint64_t *conn)
{
  LinkFind f = {other >= 0 ? net->node[other].id : NULL, 0, 0};
  sn_core_foreach_link(net->node[node].core, link_find_cb, &f);
  if (conn)
    *conn = f.conn;
  return f.count;
}

/* --- fake leaves ------------------------------------------------------------- */

static void leaf_raw(Net *net, int li, const uint8_t *p, size_t len)
{
  Leaf *l = &net->leaves[li];
  sn_core_recv(net->node[l->node].core, l->conn, p, len, net->now);
  pump(net);
}

static void leaf_send(Net *net, int li, const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  assert_true(wire_encode(m, &b));
  leaf_raw(net, li, b.data, b.len);
  buf_free(&b);
}

/* A session from a leaf that has not said HELLO yet. */
static int leaf_open(Net *net, int node)
{
  assert_true(net->nleaves < MAX_LEAVES);
  int li = net->nleaves++;
  Leaf *l = &net->leaves[li];
  l->node = node;
  l->inbox = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
  memset(l->id, 0xEE, 32);
  l->id[0] = (uint8_t)(0xA0 + li);
  l->conn = new_end(net, node, END_LEAF);
  net->ends[l->conn].leaf = li;
  sn_core_open(net->node[node].core, l->conn, l->id, NULL, net->now);
  pump(net);
  return li;
}

static void leaf_hello(Net *net, int li)
{
  WireMsg h = {.type = MSG_HELLO};
  h.u.hello.role = ROLE_LEAF;
  h.u.hello.listen = wire_str("", 0);
  h.u.hello.agent = wire_str("test-leaf", 9);
  leaf_send(net, li, &h);
}

static int leaf_add(Net *net, int node)
{
  int li = leaf_open(net, node);
  leaf_hello(net, li);
  assert_false(net->leaves[li].closed);
  return li;
}

static void leaf_publish(Net *net, int li, const char *const *names, size_t n, bool reset)
{
  WireEntry e[WIRE_MAX_ENTRIES];
  assert_true(n <= WIRE_MAX_ENTRIES);
  for (size_t i = 0; i < n; i++) {
    e[i].name = wire_str(names[i], strlen(names[i]));
    e[i].size = 1000 + i;
    cid_of(names[i], e[i].cid);
  }
  WireMsg m = {.type = MSG_PUBLISH};
  m.u.publish.reset = reset;
  m.u.publish.count = (uint16_t)n;
  m.u.publish.entries = e;
  leaf_send(net, li, &m);
}

static void leaf_search_kind(Net *net, int li, uint32_t req, uint8_t ttl, uint8_t kind,
                             const char *text)
{
  WireMsg m = {.type = MSG_SEARCH};
  m.u.search.req = req;
  m.u.search.ttl = ttl;
  m.u.search.kind = kind;
  m.u.search.text = wire_str(text, strlen(text));
  leaf_send(net, li, &m);
}

static void leaf_search(Net *net, int li, uint32_t req, uint8_t ttl, const char *text)
{
  leaf_search_kind(net, li, req, ttl, QUERY_KEYWORDS, text);
}

static void leaf_ping(Net *net, int li, uint64_t nonce)
{
  WireMsg m = {.type = MSG_PING};
  m.u.ping = nonce;
  leaf_send(net, li, &m);
}

/* Decodes the leaf's inbox: the hits for req (all of them when req is 0),
 * copied into out up to max; returns how many there were. Every message a
 * super node sends a leaf must decode and be of a type a leaf expects. */
static size_t leaf_hits(Net *net, int li, uint32_t req, Hit *out, size_t max)
{
  size_t n = 0;
  GPtrArray *in = net->leaves[li].inbox;
  for (guint i = 0; i < in->len; i++) {
    size_t len;
    const uint8_t *p = g_bytes_get_data(g_ptr_array_index(in, i), &len);
    WireMsg m;
    assert_int_equal(wire_decode(p, len, &m), WIRE_OK);
    assert_true(m.type == MSG_HELLO || m.type == MSG_PING || m.type == MSG_PONG ||
                m.type == MSG_SEARCH_HITS || m.type == MSG_ATTACHED || m.type == MSG_HOSTS);
    if (m.type == MSG_SEARCH_HITS && (req == 0 || m.u.hits.req == req)) {
      for (uint16_t k = 0; k < m.u.hits.count; k++, n++) {
        if (n >= max)
          continue;
        const WireHit *h = &m.u.hits.hits[k];
        memcpy(out[n].name, h->name.p, h->name.len);
        out[n].name[h->name.len] = '\0';
        out[n].size = h->size;
        memcpy(out[n].cid, h->cid, 32);
        memcpy(out[n].peer, h->peer, 32);
      }
    }
    wire_msg_clear(&m);
  }
  return n;
}

static size_t hits_for(Net *net, int li, uint32_t req)
{
  return leaf_hits(net, li, req, NULL, 0);
}

/* Messages of a type in the inbox; with nonce != 0, only PING/PONG carrying it. */
static unsigned inbox_count(Net *net, int li, uint8_t type, uint64_t nonce)
{
  unsigned n = 0;
  GPtrArray *in = net->leaves[li].inbox;
  for (guint i = 0; i < in->len; i++) {
    size_t len;
    const uint8_t *p = g_bytes_get_data(g_ptr_array_index(in, i), &len);
    WireMsg m;
    assert_int_equal(wire_decode(p, len, &m), WIRE_OK);
    if (m.type == type && (nonce == 0 || m.u.ping == nonce))
      n++;
    wire_msg_clear(&m);
  }
  return n;
}

static SnConfig base_config(void)
{
  SnConfig cfg;
  sn_config_defaults(&cfg);
  cfg.discovery = false;
  return cfg;
}

/* --- (a) a search crosses TTL hops ------------------------------------------------ */

static void test_chain_search_respects_ttl(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(4, &cfg, false);
  net_link(net, S1, S2);
  net_link(net, S2, S3);
  net_link(net, S3, S4);
  assert_int_equal(stats(net, S1)->links, 1);
  assert_int_equal(stats(net, S2)->links, 2);
  assert_int_equal(stats(net, S3)->links, 2);
  assert_int_equal(stats(net, S4)->links, 1);

  int asker = leaf_add(net, S1);
  int owner = leaf_add(net, S4);
  const char *files[] = {"ubuntu-24.04-desktop-amd64.iso", "holiday photos 2023.zip"};
  leaf_publish(net, owner, files, 2, true);
  assert_int_equal(stats(net, S4)->index_entries, 2);

  /* Three hops: S1 -> S2 -> S3 -> S4. */
  leaf_search(net, asker, 7, 3, "Ubuntu AMD64");
  Hit h[4];
  assert_int_equal(leaf_hits(net, asker, 7, h, 4), 1);
  assert_string_equal(h[0].name, files[0]);
  assert_int_equal(h[0].size, 1000);
  uint8_t cid[32];
  cid_of(files[0], cid);
  assert_memory_equal(h[0].cid, cid, 32);
  assert_memory_equal(h[0].peer, net->leaves[owner].id, 32);
  assert_int_equal(stats(net, S4)->queries_handled, 1);

  /* The same file by content id. */
  char hex[2 * 32 + 1];
  uint8_t cid2[32];
  cid_of(files[1], cid2);
  hex_encode(cid2, 32, hex);
  leaf_search_kind(net, asker, 8, 3, QUERY_CONTENT_ID, hex);
  assert_int_equal(leaf_hits(net, asker, 8, h, 4), 1);
  assert_string_equal(h[0].name, files[1]);
  assert_memory_equal(h[0].peer, net->leaves[owner].id, 32);

  /* Two hops stop at S3: S4 never sees the query, the asker gets nothing. */
  uint64_t s4_before = stats(net, S4)->queries_received;
  uint64_t s3_before = stats(net, S3)->queries_received;
  leaf_search(net, asker, 9, 2, "ubuntu");
  assert_int_equal(hits_for(net, asker, 9), 0);
  assert_int_equal(stats(net, S3)->queries_received, s3_before + 1);
  assert_int_equal(stats(net, S4)->queries_received, s4_before);
  /* Nothing reached the owner's leaf session but its HELLO from S4. */
  assert_int_equal(hits_for(net, owner, 0), 0);
  net_free(net);
}

/* --- (b) each node handles a query id once ---------------------------------------- */

/* The last SIGNAL in a leaf's inbox (decoded; text copied into buf). */
static bool last_signal(Net *net, int li, WireMsg *out, char *buf, size_t cap)
{
  GPtrArray *in = net->leaves[li].inbox;
  bool found = false;
  for (guint i = 0; i < in->len; i++) {
    size_t len;
    const uint8_t *p = g_bytes_get_data(g_ptr_array_index(in, i), &len);
    WireMsg m;
    assert_int_equal(wire_decode(p, len, &m), WIRE_OK);
    if (m.type == MSG_SIGNAL) {
      *out = m;
      size_t n = m.u.signal.text.len < cap - 1 ? m.u.signal.text.len : cap - 1;
      memcpy(buf, m.u.signal.text.p, n);
      buf[n] = '\0';
      out->u.signal.text = wire_str(buf, n);
      found = true;
    }
    wire_msg_clear(&m);
  }
  return found;
}

/* ICE signalling: an offer floods to the leaf it names (S1 -> S4 over the
 * chain), stamped with the sender's authenticated id; the answer follows the
 * reverse path; answers with no route are dropped; every leaf gets LEAF_UP. */
static void test_signalling(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(4, &cfg, false);
  net_link(net, S1, S2);
  net_link(net, S2, S3);
  net_link(net, S3, S4);
  int a = leaf_add(net, S1);
  int b = leaf_add(net, S4);
  int bystander = leaf_add(net, S2);
  assert_int_equal(net->node[S1].leaf_ups, 1);
  assert_int_equal(net->node[S4].leaf_ups, 1);

  WireMsg offer = {.type = MSG_SIGNAL};
  memset(offer.u.signal.sid, 0x5a, WIRE_QID_LEN);
  offer.u.signal.ttl = 3;
  offer.u.signal.kind = SIGNAL_OFFER;
  memset(offer.u.signal.src, 0xee, 32); /* a lie the super node must overwrite */
  memcpy(offer.u.signal.dst, net->leaves[b].id, 32);
  offer.u.signal.text = wire_str("offer-text", 10);
  leaf_send(net, a, &offer);

  WireMsg got;
  char text[64];
  assert_true(last_signal(net, b, &got, text, sizeof text));
  assert_int_equal(got.u.signal.kind, SIGNAL_OFFER);
  assert_memory_equal(got.u.signal.src, net->leaves[a].id, 32);
  assert_string_equal(text, "offer-text");
  assert_false(last_signal(net, bystander, &got, text, sizeof text));
  assert_int_equal(stats(net, S4)->signals_delivered, 1);

  WireMsg answer = offer;
  answer.u.signal.kind = SIGNAL_ANSWER;
  memcpy(answer.u.signal.dst, net->leaves[a].id, 32);
  answer.u.signal.text = wire_str("answer-text", 11);
  leaf_send(net, b, &answer);
  assert_true(last_signal(net, a, &got, text, sizeof text));
  assert_int_equal(got.u.signal.kind, SIGNAL_ANSWER);
  assert_memory_equal(got.u.signal.src, net->leaves[b].id, 32);
  assert_string_equal(text, "answer-text");

  /* An answer for an id nobody offered goes nowhere. */
  uint64_t dropped = stats(net, S4)->signals_dropped;
  memset(answer.u.signal.sid, 0x11, WIRE_QID_LEN);
  leaf_send(net, b, &answer);
  assert_int_equal(stats(net, S4)->signals_dropped, dropped + 1);

  /* Too few hops: an offer with ttl 2 from S1 never reaches S4. */
  uint64_t delivered = stats(net, S4)->signals_delivered;
  memset(offer.u.signal.sid, 0x77, WIRE_QID_LEN);
  offer.u.signal.ttl = 2;
  leaf_send(net, a, &offer);
  assert_int_equal(stats(net, S4)->signals_delivered, delivered);
  net_free(net);
}

static void assert_flood_accounting(Net *net, uint64_t searches)
{
  uint64_t received = 0, forwarded = 0;
  for (int i = 0; i < net->n; i++) {
    const SnStats *s = stats(net, i);
    assert_int_equal(s->queries_throttled, 0);
    assert_int_equal(s->queries_received, s->queries_handled + s->queries_duplicate);
    received += s->queries_received;
    forwarded += s->queries_forwarded;
  }
  /* Every forwarded copy was received by a neighbour; the rest were SEARCHes. */
  assert_int_equal(received, forwarded + searches);
}

static void test_triangle_duplicate_suppression(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(3, &cfg, false);
  net_link(net, S1, S2);
  net_link(net, S2, S3);
  net_link(net, S3, S1);
  int asker = leaf_add(net, S1);
  int owner = leaf_add(net, S3);
  const char *files[] = {"annual report 2024.pdf"};
  leaf_publish(net, owner, files, 1, true);

  leaf_search(net, asker, 1, 3, "report");
  /* S2 and S3 each get the query from S1 and again from each other. */
  for (int i = S1; i <= S3; i++)
    assert_int_equal(stats(net, i)->queries_handled, 1);
  assert_int_equal(stats(net, S1)->queries_duplicate, 0);
  assert_int_equal(stats(net, S2)->queries_duplicate, 1);
  assert_int_equal(stats(net, S3)->queries_duplicate, 1);
  assert_flood_accounting(net, 1);
  /* The file is reported once, not once per path. */
  assert_int_equal(hits_for(net, asker, 1), 1);

  /* Suppression is per query id, not per text: the same search again runs. */
  leaf_search(net, asker, 2, 3, "report");
  for (int i = S1; i <= S3; i++)
    assert_int_equal(stats(net, i)->queries_handled, 2);
  assert_int_equal(hits_for(net, asker, 2), 1);
  assert_flood_accounting(net, 2);
  net_free(net);
}

static void test_ring_duplicate_suppression(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(4, &cfg, false);
  net_link(net, S1, S2);
  net_link(net, S2, S3);
  net_link(net, S3, S4);
  net_link(net, S4, S1);
  int asker = leaf_add(net, S1);
  int owner = leaf_add(net, S3);
  const char *files[] = {"far side of the ring.ogg"};
  leaf_publish(net, owner, files, 1, true);

  leaf_search(net, asker, 1, WIRE_MAX_TTL, "ring");
  uint64_t dup = 0;
  for (int i = S1; i <= S4; i++) {
    assert_int_equal(stats(net, i)->queries_handled, 1);
    dup += stats(net, i)->queries_duplicate;
  }
  /* S3 hears it via S2 and via S4; the copy it forwards on is the other extra. */
  assert_int_equal(stats(net, S3)->queries_duplicate, 1);
  assert_int_equal(dup, 2);
  assert_flood_accounting(net, 1);
  assert_int_equal(hits_for(net, asker, 1), 1);
  net_free(net);
}

/* --- (c) hits go back along the reverse path, capped ----------------------------- */

static const char *const songs[] = {"song 01.mp3", "song 02.mp3", "song 03.mp3", "song 04.mp3",
                                    "song 05.mp3", "song 06.mp3", "song 07.mp3", "song 08.mp3",
                                    "song 09.mp3", "song 10.mp3"};

static void test_hits_follow_reverse_path(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(4, &cfg, false);
  /* S4 hangs off S2: a side branch the hits must not wander into. */
  net_link(net, S1, S2);
  net_link(net, S2, S3);
  net_link(net, S2, S4);
  int asker = leaf_add(net, S1);
  int bystander = leaf_add(net, S2);
  int owner = leaf_add(net, S3);
  int other = leaf_add(net, S4);
  leaf_publish(net, owner, songs, 10, true);

  leaf_search(net, asker, 42, 3, "song");
  Hit h[16];
  assert_int_equal(leaf_hits(net, asker, 42, h, 16), 10);
  for (int i = 0; i < 10; i++)
    assert_memory_equal(h[i].peer, net->leaves[owner].id, 32);
  /* Nobody else hears the answer. */
  assert_int_equal(hits_for(net, bystander, 0), 0);
  assert_int_equal(hits_for(net, owner, 0), 0);
  assert_int_equal(hits_for(net, other, 0), 0);
  assert_int_equal(stats(net, S3)->hits_sent, 10);
  assert_int_equal(stats(net, S2)->hits_relayed, 10);
  assert_int_equal(stats(net, S1)->hits_relayed, 10);
  assert_int_equal(stats(net, S4)->hits_relayed, 0);
  assert_int_equal(net->node[S2].sent[MSG_QUERY_HITS], 1); /* one batch, to S1 only */

  /* The bystander's own search is routed back to it, not to the first asker. */
  leaf_search(net, bystander, 5, 3, "song");
  assert_int_equal(hits_for(net, bystander, 5), 10);
  assert_int_equal(hits_for(net, asker, 5), 0);
  net_free(net);
}

static void test_relay_cap(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  cfg.max_hits_relayed = 3;
  Net *net = net_new(4, &cfg, false);
  /* Two owners behind S2, answering in separate batches. */
  net_link(net, S1, S2);
  net_link(net, S2, S3);
  net_link(net, S2, S4);
  int asker = leaf_add(net, S1);
  int owner3 = leaf_add(net, S3);
  int owner4 = leaf_add(net, S4);
  leaf_publish(net, owner3, songs, 10, true);
  leaf_publish(net, owner4, songs, 10, true);

  leaf_search(net, asker, 1, 2, "song");
  Hit h[32];
  /* 20 hits exist two hops away; the asker gets 3 in all, not 3 per batch. */
  assert_int_equal(leaf_hits(net, asker, 1, h, 32), 3);
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < i; k++)
      assert_false(strcmp(h[i].name, h[k].name) == 0 && memcmp(h[i].peer, h[k].peer, 32) == 0);
  /* Each owner's node answered in full (capped only by max_hits_local). */
  assert_int_equal(stats(net, S3)->hits_sent, 10);
  assert_int_equal(stats(net, S4)->hits_sent, 10);
  assert_int_equal(stats(net, S2)->hits_relayed, 3);
  assert_int_equal(stats(net, S2)->hits_dropped, 17);

  /* The cap is per query id: the next search gets its own 3. */
  leaf_search(net, asker, 2, 2, "song");
  assert_int_equal(hits_for(net, asker, 2), 3);

  /* The asker's own super node answers from its index beyond the relay cap. */
  int local = leaf_add(net, S1);
  leaf_publish(net, local, songs, 5, true);
  leaf_search(net, asker, 3, 2, "song");
  assert_int_equal(hits_for(net, asker, 3), 5 + 3);
  net_free(net);
}

/* The asker hangs up while its query is out: the hits coming back find no
 * route and are dropped, nobody else receives them. */
static void test_hits_for_departed_leaf_dropped(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(2, &cfg, false);
  net_link(net, S1, S2);
  int asker = leaf_add(net, S1);
  int stayer = leaf_add(net, S1);
  int owner = leaf_add(net, S2);
  leaf_publish(net, owner, songs, 4, true);

  WireMsg m = {.type = MSG_SEARCH};
  m.u.search.req = 1;
  m.u.search.ttl = 1;
  m.u.search.text = wire_str("song", 4);
  Buf b;
  buf_init(&b);
  assert_true(wire_encode(&m, &b));
  Leaf *l = &net->leaves[asker];
  sn_core_recv(net->node[S1].core, l->conn, b.data, b.len, net->now); /* QUERY queued */
  buf_free(&b);
  drain(net);
  net->ends[l->conn].open = false;
  sn_core_closed(net->node[S1].core, l->conn, net->now);
  pump(net);

  assert_int_equal(stats(net, S2)->hits_sent, 4);
  assert_int_equal(stats(net, S1)->hits_dropped, 4);
  assert_int_equal(stats(net, S1)->hits_relayed, 0);
  assert_int_equal(hits_for(net, stayer, 0), 0);
  assert_int_equal(hits_for(net, owner, 0), 0);
  net_free(net);
}

/* --- (d) a leaf's entries vanish when it leaves ----------------------------------- */

static void test_closed_leaf_entries_vanish(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(1, &cfg, false);
  int asker = leaf_add(net, S1);
  int owner = leaf_add(net, S1);
  const char *files[] = {"linux-6.9.tar.xz", "linux firmware.zip"};
  leaf_publish(net, owner, files, 2, true);
  leaf_search(net, asker, 1, 0, "linux");
  assert_int_equal(hits_for(net, asker, 1), 2);
  assert_int_equal(stats(net, S1)->leaves, 2);

  /* The owner's connection dropped. */
  net->ends[net->leaves[owner].conn].open = false;
  sn_core_closed(net->node[S1].core, net->leaves[owner].conn, net->now);
  pump(net);
  leaf_search(net, asker, 2, 0, "linux");
  assert_int_equal(hits_for(net, asker, 2), 0);
  assert_int_equal(stats(net, S1)->leaves, 1);
  assert_int_equal(stats(net, S1)->index_entries, 0);
  /* A second report of the same close is harmless. */
  sn_core_closed(net->node[S1].core, net->leaves[owner].conn, net->now);
  assert_int_equal(stats(net, S1)->leaves, 1);
  net_free(net);
}

/* Two leaves on S1: one publishes and falls silent, the other publishes and
 * pings every half keepalive. Returns the silent one; *pinger the other. */
static int two_leaves(Net *net, int *pinger)
{
  *pinger = leaf_add(net, S1);
  int silent = leaf_add(net, S1);
  const char *files[] = {"silent movie 1927.mkv"};
  leaf_publish(net, silent, files, 1, true);
  const char *mine[] = {"talkie movie 1929.mkv"};
  leaf_publish(net, *pinger, mine, 1, true);
  return silent;
}

static void assert_only_talkie_left(Net *net, int silent, int pinger)
{
  assert_true(net->leaves[silent].closed);
  assert_non_null(net->leaves[silent].reason);
  assert_int_equal(closes_on(net, S1, net->leaves[silent].conn), 1);
  assert_false(net->leaves[pinger].closed);
  assert_int_equal(stats(net, S1)->leaves, 1);
  assert_int_equal(stats(net, S1)->index_entries, 1);
  leaf_search(net, pinger, 1, 0, "movie");
  Hit h[4];
  assert_int_equal(leaf_hits(net, pinger, 1, h, 4), 1);
  assert_string_equal(h[0].name, "talkie movie 1929.mkv");
}

static void test_silent_leaf_times_out(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(1, &cfg, false);
  uint64_t ka = cfg.keepalive_ms;
  int pinger, silent = two_leaves(net, &pinger);
  uint64_t t0 = net->now;

  for (uint64_t t = t0 + ka / 2; t <= t0 + 3 * ka; t += ka / 2) {
    net->now = t;
    leaf_ping(net, pinger, t);
  }
  net_tick(net, t0 + 3 * ka + 1);
  assert_only_talkie_left(net, silent, pinger);
  /* Every ping was answered with its own nonce. */
  assert_int_equal(inbox_count(net, pinger, MSG_PONG, t0 + ka / 2), 1);
  assert_int_equal(inbox_count(net, pinger, MSG_PONG, t0 + 3 * ka), 1);
  net_free(net);
}

/* The same, with time moving as the shell moves it (to each deadline): the
 * silent leaf is dropped within 3 keepalive intervals of its last message
 * (but not before 3 intervals less one sweep); the talking one stays. */
static void test_silent_leaf_timeout_on_deadlines(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(1, &cfg, false);
  uint64_t ka = cfg.keepalive_ms;
  int pinger, silent = two_leaves(net, &pinger);
  uint64_t t0 = net->now, last_ping = t0, closed_at = 0;

  for (int i = 0; i < 10000 && net->now < t0 + 20 * ka; i++) {
    uint64_t d = sn_core_next_deadline(net->node[S1].core);
    uint64_t next = last_ping + ka / 2 < d ? last_ping + ka / 2 : d;
    assert_true(next >= net->now);
    net->now = next;
    if (next == last_ping + ka / 2) {
      leaf_ping(net, pinger, next);
      last_ping = next;
    }
    net_tick(net, next);
    if (!closed_at && net->leaves[silent].closed)
      closed_at = next;
  }
  /* Gone within 3 keepalive intervals of its last message, and not before
   * 3 intervals less one sweep period (ka/4, at most 1 s). */
  uint64_t sweep = ka / 4 < 1000 ? ka / 4 : 1000;
  assert_true(closed_at >= t0 + 3 * ka - sweep);
  assert_true(closed_at <= t0 + 3 * ka);
  /* The super node tried: it pinged the silent leaf. */
  assert_true(inbox_count(net, silent, MSG_PING, 0) > 0);
  assert_only_talkie_left(net, silent, pinger);
  net_free(net);
}

/* keepalive.c: a leaf the super node hears from is never pinged (it pings
 * us), a silent one once per keepalive interval, not once per sweep. */
static void test_keepalive_pings_only_the_silent(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(1, &cfg, false);
  uint64_t ka = cfg.keepalive_ms;
  int pinger, silent = two_leaves(net, &pinger);
  uint64_t t0 = net->now;
  for (uint64_t t = t0 + 100; t <= t0 + 5 * ka / 2; t += 100) {
    if ((t - t0) % (ka / 2) == 0) {
      net->now = t;
      leaf_ping(net, pinger, t);
    }
    net_tick(net, t);
  }
  assert_int_equal(inbox_count(net, pinger, MSG_PING, 0), 0);
  assert_int_equal(inbox_count(net, silent, MSG_PING, 0), 2);
  assert_false(net->leaves[silent].closed);
  net_free(net);
}

/* keepalive_answer_ping: a leaf's spare keepalives (WIRE_PING_SPARE) are
 * answered every other one, never two in a row unanswered; a PING without
 * the bit (a question) is always answered, and resets the alternation. */
static void test_spare_pings_answered_every_other(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(1, &cfg, false);
  uint64_t ka = cfg.keepalive_ms;
  int pinger, silent = two_leaves(net, &pinger);
  (void)silent;
  uint64_t t0 = net->now;
  bool answered[8];
  for (int k = 0; k < 8; k++) {
    uint64_t t = t0 + (uint64_t)(k + 1) * ka, nonce = t | WIRE_PING_SPARE;
    net->now = t;
    leaf_ping(net, pinger, nonce);
    net_tick(net, t);
    answered[k] = inbox_count(net, pinger, MSG_PONG, nonce) == 1;
  }
  for (int k = 0; k < 8; k++)
    assert_true(answered[k] == (k % 2 == 0));
  /* Questions: each answered, twice in a row too. */
  uint64_t t = t0 + 9 * ka;
  net->now = t;
  leaf_ping(net, pinger, t);
  leaf_ping(net, pinger, t + 1);
  net_tick(net, t);
  assert_int_equal(inbox_count(net, pinger, MSG_PONG, t), 1);
  assert_int_equal(inbox_count(net, pinger, MSG_PONG, t + 1), 1);
  /* Right after an answered question, a spare ping may go unanswered. */
  leaf_ping(net, pinger, (t + 2) | WIRE_PING_SPARE);
  leaf_ping(net, pinger, (t + 3) | WIRE_PING_SPARE);
  assert_int_equal(inbox_count(net, pinger, MSG_PONG, (t + 2) | WIRE_PING_SPARE), 0);
  assert_int_equal(inbox_count(net, pinger, MSG_PONG, (t + 3) | WIRE_PING_SPARE), 1);
  /* The leaf pinging every interval stays, however few PONGs it gets. */
  assert_false(net->leaves[pinger].closed);
  net_free(net);
}

/* Leaves falling silent one after another are closed one after another, each
 * within 3 keepalive intervals of its own last message (and not before 3
 * less one sweep period): the order of the list is the order of silence,
 * also after a leaf that talked moved from the head to the tail. */
static void test_keepalive_closes_in_order_of_silence(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(1, &cfg, false);
  uint64_t ka = cfg.keepalive_ms, sweep = ka / 4 < 1000 ? ka / 4 : 1000;
  enum { N = 8 };
  int li[N];
  uint64_t last[N], closed_at[N] = {0};
  for (int i = 0; i < N; i++)
    li[i] = leaf_add(net, S1);
  uint64_t t0 = net->now;
  /* Leaf i talks every ka/2 until t0 + i * ka/2, then falls silent; the
   * first to open is the last to talk. */
  for (int i = 0; i < N; i++)
    last[i] = t0;
  for (uint64_t t = t0 + 100; t <= t0 + 12 * ka; t += 100) {
    net->now = t;
    for (int i = 0; i < N; i++) {
      int k = N - 1 - i; /* reverse: opened first, silent last */
      if ((t - t0) % (ka / 2) == 0 && t <= t0 + (uint64_t)(i + 1) * (ka / 2) &&
          !net->leaves[li[k]].closed) {
        leaf_ping(net, li[k], t);
        last[k] = t;
      }
    }
    net_tick(net, t);
    for (int i = 0; i < N; i++)
      if (!closed_at[i] && net->leaves[li[i]].closed)
        closed_at[i] = t;
  }
  for (int i = 0; i < N; i++) {
    assert_true(closed_at[i] != 0);
    assert_true(closed_at[i] >= last[i] + 3 * ka - sweep);
    assert_true(closed_at[i] <= last[i] + 3 * ka);
    assert_string_equal(net->leaves[li[i]].reason, "keepalive timeout");
    if (i > 0)
      assert_true(closed_at[i] <= closed_at[i - 1]);
  }
  assert_int_equal(stats(net, S1)->leaves, 0);
  net_free(net);
}

/* --- (e) protocol errors close only the offender --------------------------------- */

static void test_protocol_errors(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(1, &cfg, false);
  int good = leaf_add(net, S1);
  const char *files[] = {"good file.txt"};
  leaf_publish(net, good, files, 1, true);

  /* A message before HELLO. */
  int b1 = leaf_open(net, S1);
  leaf_ping(net, b1, 1);
  assert_true(net->leaves[b1].closed);
  assert_int_equal(stats(net, S1)->malformed, 1);

  /* A leaf may not flood QUERY. */
  int b2 = leaf_add(net, S1);
  WireMsg q = {.type = MSG_QUERY};
  memset(q.u.query.qid, 9, WIRE_QID_LEN);
  q.u.query.ttl = 3;
  q.u.query.text = wire_str("good", 4);
  leaf_send(net, b2, &q);
  assert_true(net->leaves[b2].closed);
  assert_int_equal(stats(net, S1)->malformed, 2);

  /* A PUBLISH cut short by a byte. */
  int b3 = leaf_add(net, S1);
  WireEntry e = {.name = wire_str("good evil.bin", 13), .size = 1};
  WireMsg pub = {.type = MSG_PUBLISH};
  pub.u.publish.reset = true;
  pub.u.publish.count = 1;
  pub.u.publish.entries = &e;
  Buf b;
  buf_init(&b);
  assert_true(wire_encode(&pub, &b));
  leaf_raw(net, b3, b.data, b.len - 1);
  buf_free(&b);
  assert_true(net->leaves[b3].closed);
  assert_int_equal(stats(net, S1)->malformed, 3);

  /* An unknown type after HELLO is a newer peer's business: ignored. */
  int b4 = leaf_add(net, S1);
  const uint8_t unknown[] = {WIRE_VERSION, 0xEE, 1, 2, 3};
  leaf_raw(net, b4, unknown, sizeof unknown);
  assert_false(net->leaves[b4].closed);
  assert_int_equal(stats(net, S1)->malformed, 3);
  leaf_search(net, b4, 1, 0, "good");
  assert_int_equal(hits_for(net, b4, 1), 1);

  /* Exactly the three offenders were closed, each with a reason. */
  assert_int_equal(net->node[S1].closes->len, 3);
  assert_int_equal(closes_on(net, S1, net->leaves[b1].conn), 1);
  assert_int_equal(closes_on(net, S1, net->leaves[b2].conn), 1);
  assert_int_equal(closes_on(net, S1, net->leaves[b3].conn), 1);
  /* A closed session is forgotten: later bytes on it change nothing. */
  leaf_hello(net, b1);
  assert_int_equal(stats(net, S1)->malformed, 3);
  assert_int_equal(net->node[S1].closes->len, 3);

  /* The good leaf is untouched: its file is still the only one found. */
  assert_false(net->leaves[good].closed);
  assert_int_equal(stats(net, S1)->leaves, 2);
  assert_int_equal(stats(net, S1)->index_entries, 1);
  leaf_search(net, good, 2, 0, "good");
  Hit h[4];
  assert_int_equal(leaf_hits(net, good, 2, h, 4), 1);
  assert_string_equal(h[0].name, files[0]);
  net_free(net);
}

static void test_unknown_type_before_hello_closes(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(1, &cfg, false);
  int b = leaf_open(net, S1);
  const uint8_t unknown[] = {WIRE_VERSION, 0xEE};
  leaf_raw(net, b, unknown, sizeof unknown);
  assert_true(net->leaves[b].closed);
  assert_int_equal(stats(net, S1)->malformed, 1);
  net_free(net);
}

/* The shell keeps a session in its pre-auth budget until the core settles
 * it (preauth.h): a HELLO it accepts, and nothing less. */
static void test_settled_after_hello(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  cfg.max_leaves = 1;
  Net *net = net_new(2, &cfg, false);
  SnCore *c = net->node[S1].core;
  int a = leaf_open(net, S1);
  assert_false(sn_core_settled(c, net->leaves[a].conn));
  leaf_hello(net, a);
  assert_true(sn_core_settled(c, net->leaves[a].conn));
  int b = leaf_open(net, S1); /* over --max-leaves: refused, never settled */
  leaf_hello(net, b);
  assert_true(net->leaves[b].closed);
  assert_false(sn_core_settled(c, net->leaves[b].conn));
  uint64_t link = net_link(net, S2, S1);
  assert_int_equal(links_to(net, S1, S2, NULL), 1);
  assert_true(sn_core_settled(net->node[S2].core, link));
  assert_false(sn_core_settled(c, 999999));
  net_free(net);
}

/* --- (f) per-leaf query rate ------------------------------------------------------ */

static void test_leaf_query_rate_limit(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(1, &cfg, false);
  int owner = leaf_add(net, S1);
  int flooder = leaf_add(net, S1);
  int neighbour = leaf_add(net, S1);
  const char *files[] = {"needle.txt"};
  leaf_publish(net, owner, files, 1, true);

  for (uint32_t req = 1; req <= 100; req++)
    leaf_search(net, flooder, req, 0, "needle");
  const SnStats *s = stats(net, S1);
  unsigned answered = 0;
  for (uint32_t req = 1; req <= 100; req++)
    answered += hits_for(net, flooder, req) == 1;
  assert_true(s->queries_throttled > 0);
  assert_true(s->queries_handled <= (uint64_t)cfg.leaf_query_burst);
  assert_int_equal(s->queries_handled, (uint64_t)cfg.leaf_query_burst);
  assert_int_equal(s->queries_throttled, 100 - s->queries_handled);
  assert_int_equal(answered, s->queries_handled);
  assert_false(net->leaves[flooder].closed); /* throttled, not disconnected */

  /* The bucket is per session: another leaf searches at the same instant. */
  leaf_search(net, neighbour, 1, 0, "needle");
  assert_int_equal(hits_for(net, neighbour, 1), 1);

  /* One second later the flooder gets leaf_query_rate searches again. */
  net->now += 1000;
  for (uint32_t req = 201; req <= 205; req++)
    leaf_search(net, flooder, req, 0, "needle");
  for (uint32_t req = 201; req <= 205; req++)
    assert_int_equal(hits_for(net, flooder, req), 1);
  net_free(net);
}

/* --- (f2) fair shares under a Sybil flood (supernode/qsched.c) ------------------- */

#define SYBILS 14

/* Sybil leaves on S1, each searching at exactly its own limit (10/s), and
 * one honest leaf searching once a second for a file on S2's leaf. S1
 * handles query_rate queries a second in all, shared per leaf, so its
 * forwards stay under S2's per-link bucket and the honest search is never
 * lost; the Sybils' excess is shed at S1, where it came in. */
static void test_sybil_leaves_share_fairly(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  cfg.query_rate = cfg.query_burst = 40;
  cfg.super_query_rate = cfg.super_query_burst = 60;
  Net *net = net_new(2, &cfg, false);
  net_link(net, S1, S2);
  int owner = leaf_add(net, S2);
  const char *files[] = {"needle.txt"};
  leaf_publish(net, owner, files, 1, true);
  int honest = leaf_add(net, S1);
  int sybil[SYBILS];
  for (int i = 0; i < SYBILS; i++)
    sybil[i] = leaf_add(net, S1);

  uint64_t t0 = net->now;
  unsigned asked = 0;
  for (uint32_t step = 0; step < 80; step++) {
    for (int i = 0; i < SYBILS; i++)
      leaf_search(net, sybil[i], step + 1, 1, "chaff");
    if (step % 10 == 5) {
      leaf_search(net, honest, 1000 + step, 1, "needle");
      asked++;
    }
    net_tick(net, t0 + (step + 1) * 100);
  }
  net_tick(net, t0 + 10000);
  unsigned found = 0;
  for (uint32_t step = 0; step < 80; step++)
    if (step % 10 == 5)
      found += hits_for(net, honest, 1000 + step) == 1;
  assert_int_equal(asked, 8);
  assert_int_equal(found, asked);
  /* S1 shed the excess; S2 never had to throttle its neighbour. */
  assert_true(stats(net, S1)->queries_throttled > 0);
  assert_int_equal(stats(net, S2)->queries_throttled, 0);
  /* ~40/s over 8 s went out, not the 140/s asked. */
  assert_true(stats(net, S1)->queries_forwarded <= 40 + 8 * 40 + 8);
  net_free(net);
}

/* Across the mesh: S2 splits its budget per link, so S3's honest queries
 * get through while S1 sends as much as S2 can handle. */
static void test_links_share_fairly(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  cfg.query_rate = cfg.query_burst = 20;
  Net *net = net_new(3, &cfg, false);
  net_link(net, S1, S2);
  net_link(net, S2, S3);
  int owner = leaf_add(net, S2);
  const char *files[] = {"needle.txt"};
  leaf_publish(net, owner, files, 1, true);
  int honest = leaf_add(net, S3);
  int sybil[SYBILS];
  for (int i = 0; i < SYBILS; i++)
    sybil[i] = leaf_add(net, S1);

  uint64_t t0 = net->now;
  for (uint32_t step = 0; step < 80; step++) {
    for (int i = 0; i < SYBILS; i++)
      leaf_search(net, sybil[i], step + 1, 2, "chaff");
    if (step % 10 == 5)
      leaf_search(net, honest, 1000 + step, 1, "needle");
    net_tick(net, t0 + (step + 1) * 100);
  }
  net_tick(net, t0 + 10000);
  unsigned found = 0;
  for (uint32_t step = 5; step < 80; step += 10)
    found += hits_for(net, honest, 1000 + step) == 1;
  assert_int_equal(found, 8);
  /* S2 was saturated: it shed some of S1's queries, none of S3's share. */
  assert_true(stats(net, S2)->queries_throttled > 0);
  net_free(net);
}

/* What is over the budget waits, and the core asks to be woken when the
 * next token is due; a reload (SIGHUP) changes the rate in place. */
static void test_query_queue_deadline_and_reload(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  cfg.query_rate = cfg.query_burst = 10;
  Net *net = net_new(1, &cfg, false);
  int owner = leaf_add(net, S1);
  const char *files[] = {"needle.txt"};
  leaf_publish(net, owner, files, 1, true);
  int a = leaf_add(net, S1), b = leaf_add(net, S1);
  net_tick(net, net->now); /* housekeeping done: its deadline is 1 s away */
  for (uint32_t req = 1; req <= 8; req++) {
    leaf_search(net, a, req, 0, "needle");
    leaf_search(net, b, req, 0, "needle");
  }
  SnCore *core = net->node[S1].core;
  assert_int_equal(stats(net, S1)->queries_handled, 10);
  assert_int_equal(stats(net, S1)->queries_throttled, 0); /* queued, not dropped */
  unsigned answered = 0;
  for (uint32_t req = 1; req <= 8; req++)
    answered += (hits_for(net, a, req) == 1) + (hits_for(net, b, req) == 1);
  assert_int_equal(answered, 10);
  /* One token every 100 ms: the core says so. */
  uint64_t due = sn_core_next_deadline(core);
  assert_true(due > net->now && due <= net->now + 100);
  net_tick(net, due);
  assert_int_equal(stats(net, S1)->queries_handled, 11);
  /* A higher rate takes effect at once: the rest go within 10 ms. */
  sn_core_set_query_rate(core, 1000, net->now);
  net_tick(net, net->now + 10);
  assert_int_equal(stats(net, S1)->queries_handled, 16);
  assert_int_equal(stats(net, S1)->queries_throttled, 0);
  for (uint32_t req = 1; req <= 8; req++) {
    assert_int_equal(hits_for(net, a, req), 1);
    assert_int_equal(hits_for(net, b, req), 1);
  }
  net_free(net);
}

/* Offers flood the mesh in fair turns too: Sybil leaves on S1 each within
 * their own offer rate (10/s here, to leaves nobody has) cannot make S2
 * drop an honest leaf's offer to S2's leaf. */
static void test_offers_share_fairly(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  cfg.signal_rate = 40;
  cfg.leaf_signal_rate = 10;
  cfg.super_query_rate = cfg.super_query_burst = 60;
  Net *net = net_new(2, &cfg, false);
  net_link(net, S1, S2);
  int target = leaf_add(net, S2);
  int honest = leaf_add(net, S1);
  int sybil[SYBILS];
  for (int i = 0; i < SYBILS; i++)
    sybil[i] = leaf_add(net, S1);
  WireMsg offer = {.type = MSG_SIGNAL};
  offer.u.signal.ttl = 3;
  offer.u.signal.kind = SIGNAL_OFFER;
  offer.u.signal.text = wire_str("offer", 5);
  uint64_t t0 = net->now;
  unsigned sent = 0;
  for (uint32_t step = 0; step < 80; step++) {
    for (int i = 0; i < SYBILS; i++) {
      memset(offer.u.signal.dst, 0x99, 32); /* nobody */
      memset(offer.u.signal.sid, 0x20 + i, WIRE_QID_LEN);
      memcpy(offer.u.signal.sid, &step, sizeof step);
      leaf_send(net, sybil[i], &offer);
    }
    if (step % 10 == 5) {
      memcpy(offer.u.signal.dst, net->leaves[target].id, 32);
      memset(offer.u.signal.sid, 0x01, WIRE_QID_LEN);
      memcpy(offer.u.signal.sid, &step, sizeof step);
      leaf_send(net, honest, &offer);
      sent++;
    }
    net_tick(net, t0 + (step + 1) * 100);
  }
  net_tick(net, t0 + 10000);
  assert_int_equal(sent, 8);
  assert_int_equal(stats(net, S2)->signals_dropped, 0); /* not shed at S2 ... */
  assert_true(stats(net, S1)->signals_dropped > 0);     /* ... but at S1 */
  assert_int_equal(stats(net, S2)->signals_delivered, sent);
  net_free(net);
}

/* ICE offers handed to one leaf are capped, whoever sends them. */
static void test_offers_capped_per_destination(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(1, &cfg, false);
  int victim = leaf_add(net, S1);
  int senders[10];
  for (int i = 0; i < 10; i++)
    senders[i] = leaf_add(net, S1);
  uint64_t before = stats(net, S1)->signals_delivered;
  WireMsg offer = {.type = MSG_SIGNAL};
  offer.u.signal.ttl = 3;
  offer.u.signal.kind = SIGNAL_OFFER;
  memcpy(offer.u.signal.dst, net->leaves[victim].id, 32);
  offer.u.signal.text = wire_str("offer", 5);
  /* Each sender stays within its own 5/s (burst 20): 3 offers each. */
  for (int i = 0; i < 10; i++)
    for (int k = 0; k < 3; k++) {
      memset(offer.u.signal.sid, 0x10 * i + k + 1, WIRE_QID_LEN);
      leaf_send(net, senders[i], &offer);
    }
  uint64_t delivered = stats(net, S1)->signals_delivered - before;
  assert_int_equal(delivered, 16); /* SN_OFFERS_PER_LEAF_BURST */
  /* A second later, 4 more (SN_OFFERS_PER_LEAF_RATE). */
  net_tick(net, net->now + 1000);
  for (int k = 0; k < 10; k++) {
    memset(offer.u.signal.sid, 0xA0 + k, WIRE_QID_LEN);
    leaf_send(net, senders[k], &offer);
  }
  assert_int_equal(stats(net, S1)->signals_delivered - before, 20);
  net_free(net);
}

/* --- (g) two nodes dialing each other keep one link ------------------------------ */

static void check_duplicate_dial(bool reverse_ids, bool s1_first)
{
  SnConfig cfg = base_config();
  Net *net = net_new(2, &cfg, reverse_ids);
  uint64_t from1, from2;
  if (s1_first) {
    from1 = net_connect(net, S1, S2, NULL);
    from2 = net_connect(net, S2, S1, NULL);
  } else {
    from2 = net_connect(net, S2, S1, NULL);
    from1 = net_connect(net, S1, S2, NULL);
  }
  pump(net);

  uint64_t c1, c2;
  assert_int_equal(links_to(net, S1, -1, &c1), 1);
  assert_int_equal(links_to(net, S2, -1, &c2), 1);
  assert_int_equal(links_to(net, S1, S2, NULL), 1);
  assert_int_equal(stats(net, S1)->links, 1);
  assert_int_equal(stats(net, S2)->links, 1);
  /* Both ends kept the same connection... */
  assert_int_equal(net->ends[c1].peer, c2);
  assert_true(net->ends[c1].open && net->ends[c2].open);
  /* ...the one dialed by the smaller node id... */
  uint64_t keep =
      memcmp(net->node[S1].id, net->node[S2].id, 32) < 0 ? from1 : net->ends[from2].peer;
  assert_int_equal(c1, keep);
  /* ...and the other is closed on both ends. */
  uint64_t lose1 = keep == from1 ? net->ends[from2].peer : from1;
  assert_false(net->ends[lose1].open);
  assert_false(net->ends[net->ends[lose1].peer].open);
  assert_int_equal(closes_on(net, S1, c1) + closes_on(net, S2, c2), 0);

  /* The link carries searches, answered once. */
  int asker = leaf_add(net, S1);
  int owner = leaf_add(net, S2);
  const char *files[] = {"one link only.txt"};
  leaf_publish(net, owner, files, 1, true);
  leaf_search(net, asker, 1, 2, "link");
  assert_int_equal(hits_for(net, asker, 1), 1);
  net_free(net);
}

static void test_duplicate_link_rule(void **state)
{
  (void)state;
  check_duplicate_dial(false, true);
  check_duplicate_dial(false, false);
  check_duplicate_dial(true, true);
  check_duplicate_dial(true, false);
}

/* --- (h) a node that reaches itself -------------------------------------------- */

static void test_self_connection(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(1, &cfg, false);
  net->auto_dial = true;
  /* A configured peer list that names this node too. */
  sn_core_add_peer(net->node[S1].core, net->node[S1].addr, net->now);
  pump(net);
  assert_int_equal(dials_to(net, S1, net->node[S1].addr), 1);
  /* Both ends of the loop (outbound and inbound) were closed. */
  assert_int_equal(net->node[S1].closes->len, 2);
  assert_int_equal(stats(net, S1)->links, 0);

  /* It never dials itself again. */
  uint64_t t0 = net->now;
  for (uint64_t t = t0 + 1000; t < t0 + 300000; t += 1000)
    net_tick(net, t);
  assert_int_equal(dials_to(net, S1, net->node[S1].addr), 1);
  assert_true(sn_core_next_deadline(net->node[S1].core) > net->now);

  /* An inbound session claiming our own id is closed too. */
  uint64_t c = new_end(net, S1, END_SUPER);
  sn_core_open(net->node[S1].core, c, net->node[S1].id, NULL, net->now);
  pump(net);
  assert_int_equal(closes_on(net, S1, c), 1);
  assert_int_equal(stats(net, S1)->links, 0);
  net_free(net);
}

/* --- (i) discovery --------------------------------------------------------------- */

/* S2 and S3 are linked only to S1. With s3_blind, S3 cannot reach S2's
 * address (a one-way firewall), so S2 must learn S3's address itself, from
 * its periodic PEERS_REQ to S1, and dial. */
static void check_discovery(bool s3_blind)
{
  SnConfig cfg = base_config();
  cfg.discovery = true;
  cfg.target_degree = 2;
  Net *net = net_new(3, &cfg, false);
  net->auto_dial = true;
  if (s3_blind)
    net->unreachable = net->node[S2].addr;
  net_link(net, S2, S1);
  net_link(net, S3, S1);
  assert_int_equal(links_to(net, S2, S3, NULL), 0);

  uint64_t t0 = net->now;
  for (uint64_t t = t0 + 250; t <= t0 + 30000; t += 250)
    net_tick(net, t);

  /* One learned the other's address from S1's PEERS and dialed it. */
  if (s3_blind)
    assert_true(dials_to(net, S2, net->node[S3].addr) >= 1);
  else
    assert_true(dials_to(net, S2, net->node[S3].addr) + dials_to(net, S3, net->node[S2].addr) >= 1);
  assert_int_equal(links_to(net, S2, S3, NULL), 1);
  assert_int_equal(links_to(net, S3, S2, NULL), 1);
  for (int i = S1; i <= S3; i++) {
    assert_int_equal(stats(net, i)->links, 2);
    /* Nobody dialed itself or a node it was already linked to. */
    assert_int_equal(dials_to(net, i, net->node[i].addr), 0);
    assert_int_equal(dials_to(net, i, net->node[S1].addr), 0);
    assert_true(sn_core_next_deadline(net->node[i].core) > net->now);
  }
  /* At its target degree a node stops dialing. */
  unsigned before = net->node[S2].dials->len + net->node[S3].dials->len;
  for (uint64_t t = net->now + 1000; t <= t0 + 120000; t += 1000)
    net_tick(net, t);
  assert_int_equal(net->node[S2].dials->len + net->node[S3].dials->len, before);
  /* And the new link carries searches: S3's leaf finds S2's file in one hop. */
  int asker = leaf_add(net, S3);
  int owner = leaf_add(net, S2);
  const char *files[] = {"found by discovery.txt"};
  leaf_publish(net, owner, files, 1, true);
  leaf_search(net, asker, 1, 1, "discovery");
  assert_int_equal(hits_for(net, asker, 1), 1);
  assert_int_equal(stats(net, S1)->queries_handled, 1); /* S1 saw it too, but only once */
  net_free(net);
}

static void test_discovery_links_neighbours(void **state)
{
  (void)state;
  check_discovery(false);
}

static void test_discovery_one_way_reachable(void **state)
{
  (void)state;
  check_discovery(true);
}

/* A configured neighbour whose link drops is redialed, first after
 * backoff_min, then less and less often while it stays away, and linked
 * again when it is back. */
static void test_configured_peer_redialed_with_backoff(void **state)
{
  (void)state;
  SnConfig cfg = base_config(); /* discovery off: configured peers are kept anyway */
  Net *net = net_new(2, &cfg, false);
  net->auto_dial = true;
  const char *s2 = net->node[S2].addr;
  sn_core_add_peer(net->node[S1].core, s2, net->now);
  pump(net);
  assert_int_equal(dials_to(net, S1, s2), 1);
  assert_int_equal(links_to(net, S1, S2, NULL), 1);
  assert_int_equal(links_to(net, S2, S1, NULL), 1);

  /* S2 goes away: the connection drops on both ends. */
  uint64_t c1, c2;
  links_to(net, S1, S2, &c1);
  c2 = net->ends[c1].peer;
  net->ends[c1].open = net->ends[c2].open = false;
  sn_core_closed(net->node[S1].core, c1, net->now);
  sn_core_closed(net->node[S2].core, c2, net->now);
  pump(net);
  assert_int_equal(stats(net, S1)->links, 0);
  net->unreachable = s2;

  uint64_t t0 = net->now, when[32] = {0};
  unsigned n = 0;
  for (uint64_t t = t0 + 100; t <= t0 + 20000; t += 100) {
    unsigned before = dials_to(net, S1, s2);
    net_tick(net, t);
    if (dials_to(net, S1, s2) > before && n < 32)
      when[n++] = t;
  }
  assert_true(n >= 3);
  assert_true(n <= 9);             /* not hammering an absent neighbour */
  for (unsigned i = 1; i < n; i++) /* but a configured one is retried every few seconds */
    assert_true(when[i] - when[i - 1] <= MESH_CONFIGURED_MAX_MS + 100);
  assert_true(when[0] >= t0 + 500 && when[0] <= t0 + 600);
  for (unsigned i = 2; i < n; i++)
    assert_true(when[i] - when[i - 1] >= when[i - 1] - when[i - 2]);
  assert_true(when[n - 1] - when[n - 2] >= 4 * (when[1] - when[0]));

  /* Back again: within the longest backoff the link is up. */
  net->unreachable = NULL;
  for (uint64_t t = net->now + 100; t <= t0 + 20000 + 31000; t += 100)
    net_tick(net, t);
  assert_int_equal(links_to(net, S1, S2, NULL), 1);
  assert_int_equal(links_to(net, S2, S1, NULL), 1);
  net_free(net);
}

/* --- (k) degree maintenance (degree.h) ---------------------------------------------- */

static SnConfig degree_config(unsigned target)
{
  SnConfig cfg;
  sn_config_defaults(&cfg);
  cfg.discovery = true;
  cfg.target_degree = target;
  return cfg;
}

static void net_run(Net *net, uint64_t until)
{
  for (uint64_t t = net->now + 100; t <= until; t += 100)
    net_tick(net, t);
}

/* S1 (--degree 1: soft max 2) is full with S2 and S3; S4 joins through it.
 * S1 answers with REFUSE naming S2 and S3 instead of a bare close; S4 links
 * to one of them, and does not dial S1 again before the retry_ms it was
 * given; nor after it, while it has its D links: with discovery on a
 * --peer is a direction node, not a link kept at any cost. */
static void test_full_node_refuses_with_hosts(void **state)
{
  (void)state;
  SnConfig cfg = degree_config(1);
  Net *net = net_new(4, &cfg, false);
  net->auto_dial = true;
  const char *s1 = net->node[S1].addr;
  sn_core_add_peer(net->node[S2].core, s1, net->now);
  sn_core_add_peer(net->node[S3].core, s1, net->now);
  pump(net);
  net_run(net, net->now + 2000); /* S1 verifies their addresses by probes */
  assert_int_equal(stats(net, S1)->links, 2);
  MeshStats ms;
  sn_core_mesh_stats(net->node[S1].core, &ms);
  assert_true(ms.verified >= 2);

  uint64_t t0 = net->now;
  sn_core_add_peer(net->node[S4].core, s1, net->now);
  pump(net);
  assert_int_equal(stats(net, S1)->refusals_sent, 1);
  assert_int_equal(stats(net, S4)->refusals_received, 1);
  assert_int_equal(net->node[S1].sent[MSG_REFUSE], 1);
  assert_int_equal(links_to(net, S4, S1, NULL), 0);
  assert_int_equal(stats(net, S1)->links, 2); /* young links: nobody evicted */

  /* The hosts it named: S4 links to S2 or S3 at once. */
  net_run(net, t0 + 1000);
  assert_int_equal(links_to(net, S4, S2, NULL) + links_to(net, S4, S3, NULL) >= 1, 1);
  /* Not S1 again before retry_ms (DEGREE_REFUSE_RETRY_MS) ... */
  net_run(net, t0 + DEGREE_REFUSE_RETRY_MS - 100);
  assert_int_equal(dials_to(net, S4, s1), 1);
  /* ... nor after it: S4 has the link it wants. */
  net_run(net, t0 + DEGREE_REFUSE_RETRY_MS + DEGREE_BACKOFF_MIN_MS);
  assert_true(links_to(net, S4, S2, NULL) + links_to(net, S4, S3, NULL) >= 1);
  assert_int_equal(dials_to(net, S4, s1), 1);
  net_free(net);
}

/* A full node with an old link to a peer that has other links drops that
 * link for a newcomer (the peer keeps its others), instead of refusing. */
static void test_full_node_makes_room(void **state)
{
  (void)state;
  SnConfig cfg = degree_config(1);
  Net *net = net_new(4, &cfg, false);
  net->auto_dial = true;
  const char *s1 = net->node[S1].addr;
  sn_core_add_peer(net->node[S2].core, s1, net->now);
  sn_core_add_peer(net->node[S3].core, s1, net->now);
  pump(net);
  net_link(net, S2, S3); /* S2 and S3: two links each, over D */
  /* Old enough, and their HOSTS told S1 their loads. */
  net_run(net, net->now + DEGREE_EVICT_MIN_AGE_MS + DEGREE_HOSTS_INTERVAL_MS + 100);
  assert_int_equal(stats(net, S1)->links, 2);
  assert_int_equal(stats(net, S2)->links, 2);

  sn_core_add_peer(net->node[S4].core, s1, net->now);
  pump(net);
  assert_int_equal(links_to(net, S4, S1, NULL), 1);
  assert_int_equal(stats(net, S1)->links, 2);
  assert_int_equal(stats(net, S1)->links_shed, 1);
  assert_int_equal(stats(net, S1)->refusals_sent, 1); /* to the evicted */
  /* The evicted one still has its other link. */
  assert_true(stats(net, S2)->links >= 1 && stats(net, S3)->links >= 1);
  net_free(net);
}

/* --- (j) deadlines ---------------------------------------------------------------- */

static void test_next_deadline_drives_keepalive(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  Net *net = net_new(2, &cfg, false);
  net_link(net, S1, S2);
  uint64_t ka = cfg.keepalive_ms;
  uint64_t t0 = net->now, first_ping = 0;

  /* Time moves only to the cores' own deadlines, as the shell does it. */
  for (int i = 0; i < 1000 && net->now < t0 + 10 * ka; i++) {
    uint64_t d1 = sn_core_next_deadline(net->node[S1].core);
    uint64_t d2 = sn_core_next_deadline(net->node[S2].core);
    uint64_t d = d1 < d2 ? d1 : d2;
    assert_true(d != UINT64_MAX);
    assert_true(d >= net->now);
    assert_true(d <= net->now + ka);
    unsigned pings = net->node[S1].sent[MSG_PING];
    net_tick(net, d);
    if (!first_ping && net->node[S1].sent[MSG_PING] > pings)
      first_ping = d;
    /* Ticking at the deadline did its work: the next one is later. */
    assert_true(sn_core_next_deadline(net->node[S1].core) > d);
  }
  assert_true(net->now >= t0 + 10 * ka);
  assert_true(first_ping >= t0 + ka && first_ping <= t0 + ka + 1000);
  assert_true(net->node[S1].sent[MSG_PING] >= 9);
  assert_true(net->node[S2].sent[MSG_PONG] >= 9);
  /* Idle but pinging, the link survived ten keepalive intervals. */
  assert_int_equal(stats(net, S1)->links, 1);
  assert_int_equal(stats(net, S2)->links, 1);
  net_free(net);
}

/* A node known under two addresses (dialed by one, advertising another) is
 * linked under one of them; the other must not keep the deadline in the past,
 * or the shell's timer fires in a busy loop. */
static void test_next_deadline_with_aliased_address(void **state)
{
  (void)state;
  SnConfig cfg = base_config();
  cfg.discovery = true;
  cfg.target_degree = 4; /* stay below it: learned addresses are dialable */
  Net *net = net_new(3, &cfg, false);
  /* S1 is configured to reach S2 as alias-s2:4000; S2 advertises s2:4000. */
  sn_core_add_peer(net->node[S1].core, "alias-s2:4000", net->now);
  pump(net);
  assert_int_equal(dials_to(net, S1, "alias-s2:4000"), 1);
  net_connect(net, S1, S2, "alias-s2:4000");
  pump(net);
  net_link(net, S3, S2);
  net_link(net, S3, S1); /* S1's PEERS tell S3 both of S2's addresses */
  net_tick(net, net->now);

  for (int i = 0; i < 20; i++) {
    uint64_t d = sn_core_next_deadline(net->node[S3].core);
    assert_true(d > net->now);
    net_tick(net, d);
  }
  /* And S3 never dialed S2 a second time under its other name. */
  assert_int_equal(dials_to(net, S3, "alias-s2:4000"), 0);
  assert_int_equal(links_to(net, S3, S2, NULL), 1);
  net_free(net);
}

/* --- network admission (shared/netcert.h) ------------------------------------ */

static uint64_t fake_unix;
static uint64_t fake_unix_now(void)
{
  return fake_unix;
}

static bool closed_with(Net *net, int node, const char *reason)
{
  GArray *c = net->node[node].closes;
  for (guint i = 0; i < c->len; i++) {
    const char *r = g_array_index(c, CloseRec, i).reason;
    if (r && strstr(r, reason))
      return true;
  }
  return false;
}

static void test_network_admits_certified_only(void **state)
{
  (void)state;
  Identity netkey, other_net, ids[4];
  assert_true(identity_generate(&netkey));
  assert_true(identity_generate(&other_net));
  fake_unix = 1800000000;
  SnConfig cfg = base_config();
  cfg.network_pk = netkey.pk;
  cfg.unix_now = fake_unix_now;
  Net *net = net_new(4, &cfg, false);
  /* Real keys: the certificate binds the public key behind the node id. */
  for (int i = 0; i < 4; i++) {
    Node *nd = &net->node[i];
    assert_true(identity_generate(&ids[i]));
    sn_core_free(nd->core);
    memcpy(nd->id, ids[i].id, 32);
    SnConfig c = cfg;
    c.advertise = nd->addr;
    nd->core = sn_core_new(&c, nd->id, rng_fill, &nd->rng, net->now);
  }
  uint8_t cert[NETCERT_LEN];
  netcert_sign(&netkey, ids[0].pk, fake_unix + 3600, cert);
  sn_core_set_cert(net->node[0].core, cert, sizeof cert);
  netcert_sign(&netkey, ids[1].pk, fake_unix + 3600, cert);
  sn_core_set_cert(net->node[1].core, cert, sizeof cert);
  /* node 2: no certificate; node 3: one from another network. */
  netcert_sign(&other_net, ids[3].pk, fake_unix + 3600, cert);
  sn_core_set_cert(net->node[3].core, cert, sizeof cert);

  net_link(net, 1, 0);
  assert_int_equal(links_to(net, 0, 1, NULL), 1);
  net_link(net, 2, 0);
  net_link(net, 3, 0);
  assert_int_equal(links_to(net, 0, -1, NULL), 1);
  assert_int_equal(links_to(net, 2, -1, NULL), 0);
  assert_int_equal(links_to(net, 3, -1, NULL), 0);
  assert_int_equal(stats(net, 0)->links_refused, 2);
  assert_true(closed_with(net, 0, "no certificate"));
  assert_true(closed_with(net, 0, "another network"));

  /* A search from a leaf of node 0 reaches node 1 and no stranger. */
  int l0 = leaf_add(net, 0), l1 = leaf_add(net, 1), l2 = leaf_add(net, 2);
  static const char *const doc[] = {"admitted report.pdf"};
  leaf_publish(net, l1, doc, 1, true);
  leaf_publish(net, l2, doc, 1, true);
  leaf_search(net, l0, 1, 3, "report");
  net_tick(net, net->now + 1);
  assert_int_equal(hits_for(net, l0, 1), 1);

  /* Past its expiry node 1's certificate no longer admits it: a new link
   * (after a restart of node 0, say) is refused. */
  fake_unix += 3601;
  net_link(net, 1, 0);
  assert_true(closed_with(net, 0, "expired"));
  identity_clear(&netkey);
  identity_clear(&other_net);
  net_free(net);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_chain_search_respects_ttl),
      cmocka_unit_test(test_signalling),
      cmocka_unit_test(test_triangle_duplicate_suppression),
      cmocka_unit_test(test_ring_duplicate_suppression),
      cmocka_unit_test(test_hits_follow_reverse_path),
      cmocka_unit_test(test_relay_cap),
      cmocka_unit_test(test_hits_for_departed_leaf_dropped),
      cmocka_unit_test(test_closed_leaf_entries_vanish),
      cmocka_unit_test(test_silent_leaf_times_out),
      cmocka_unit_test(test_silent_leaf_timeout_on_deadlines),
      cmocka_unit_test(test_keepalive_pings_only_the_silent),
      cmocka_unit_test(test_spare_pings_answered_every_other),
      cmocka_unit_test(test_keepalive_closes_in_order_of_silence),
      cmocka_unit_test(test_protocol_errors),
      cmocka_unit_test(test_unknown_type_before_hello_closes),
      cmocka_unit_test(test_settled_after_hello),
      cmocka_unit_test(test_leaf_query_rate_limit),
      cmocka_unit_test(test_sybil_leaves_share_fairly),
      cmocka_unit_test(test_links_share_fairly),
      cmocka_unit_test(test_offers_capped_per_destination),
      cmocka_unit_test(test_offers_share_fairly),
      cmocka_unit_test(test_query_queue_deadline_and_reload),
      cmocka_unit_test(test_duplicate_link_rule),
      cmocka_unit_test(test_self_connection),
      cmocka_unit_test(test_discovery_links_neighbours),
      cmocka_unit_test(test_discovery_one_way_reachable),
      cmocka_unit_test(test_configured_peer_redialed_with_backoff),
      cmocka_unit_test(test_full_node_refuses_with_hosts),
      cmocka_unit_test(test_full_node_makes_room),
      cmocka_unit_test(test_next_deadline_drives_keepalive),
      cmocka_unit_test(test_next_deadline_with_aliased_address),
      cmocka_unit_test(test_network_admits_certified_only),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
