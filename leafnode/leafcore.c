/* leafcore.c - leaf session, publishing and searches. */
#include "leafcore.h"

#include <glib.h>
#include <string.h>

#include "wire.h"

#define LEAF_AGENT "canopy-leaf/0.1"

typedef enum { LS_IDLE, LS_WAIT, LS_DIALING, LS_OPEN } LeafState;

typedef struct {
  uint32_t id;
  uint64_t deadline;
  unsigned hits;
  unsigned limit;
  GHashTable *seen; /* peer|cid|name hash keys, to drop duplicate hits */
} Search;

struct LeafCore {
  LeafConfig cfg;
  LeafRandomFn rng;
  void *rng_ctx;
  LeafState state;
  uint64_t redial_at;
  unsigned failures;
  uint64_t last_rx, last_ping;
  GArray *manifest;     /* LeafEntry, owned names */
  GHashTable *searches; /* id -> Search* */
  uint32_t next_search;
  GQueue actions;
};

void leaf_config_defaults(LeafConfig *c)
{
  c->keepalive_ms = 5000;
  c->backoff_min_ms = 250;
  c->backoff_max_ms = 30000;
  c->max_hits = 1000;
}

static void search_free(gpointer p)
{
  Search *s = p;
  g_hash_table_destroy(s->seen);
  g_free(s);
}

static void entry_clear(gpointer p)
{
  g_free(((LeafEntry *)p)->name);
}

LeafCore *leaf_core_new(const LeafConfig *cfg, LeafRandomFn rng, void *rng_ctx)
{
  LeafCore *c = g_new0(LeafCore, 1);
  c->cfg = *cfg;
  if (c->cfg.keepalive_ms == 0)
    c->cfg.keepalive_ms = 5000;
  c->rng = rng;
  c->rng_ctx = rng_ctx;
  c->manifest = g_array_new(FALSE, TRUE, sizeof(LeafEntry));
  g_array_set_clear_func(c->manifest, entry_clear);
  c->searches = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, search_free);
  c->next_search = 1;
  g_queue_init(&c->actions);
  return c;
}

void leaf_core_free(LeafCore *c)
{
  if (!c)
    return;
  LeafAction *a;
  while ((a = g_queue_pop_head(&c->actions))) {
    leaf_action_clear(a);
    g_free(a);
  }
  g_array_unref(c->manifest);
  g_hash_table_destroy(c->searches);
  g_free(c);
}

static void push(LeafCore *c, LeafAction a)
{
  g_queue_push_tail(&c->actions, g_memdup2(&a, sizeof a));
}

bool leaf_core_next_action(LeafCore *c, LeafAction *out)
{
  LeafAction *a = g_queue_pop_head(&c->actions);
  if (!a)
    return false;
  *out = *a;
  g_free(a);
  return true;
}

void leaf_action_clear(LeafAction *a)
{
  g_free(a->data);
  g_free(a->name);
  g_free(a->text);
  g_free(a->turn_addr);
  g_free(a->turn_user);
  if (a->turn_pass)
    memset(a->turn_pass, 0, strlen(a->turn_pass));
  g_free(a->turn_pass);
  memset(a, 0, sizeof *a);
}

static void send_msg(LeafCore *c, const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  if (!wire_encode(m, &b)) {
    g_warning("cannot encode %s", wire_type_str(m->type));
    buf_free(&b);
    return;
  }
  LeafAction a = {.kind = LEAF_ACT_SEND};
  a.data = buf_steal(&b, &a.len);
  push(c, a);
}

static void finish_search(LeafCore *c, uint32_t id, const char *error)
{
  LeafAction a = {.kind = LEAF_ACT_SEARCH_DONE, .search = id, .reason = error};
  push(c, a);
  g_hash_table_remove(c->searches, GUINT_TO_POINTER(id));
}

static void fail_all_searches(LeafCore *c, const char *error)
{
  GList *ids = g_hash_table_get_keys(c->searches);
  for (GList *l = ids; l; l = l->next)
    finish_search(c, GPOINTER_TO_UINT(l->data), error);
  g_list_free(ids);
}

static void dial(LeafCore *c)
{
  c->state = LS_DIALING;
  LeafAction a = {.kind = LEAF_ACT_DIAL};
  push(c, a);
}

void leaf_core_start(LeafCore *c, uint64_t now)
{
  if (c->state == LS_IDLE)
    dial(c);
}

bool leaf_core_is_connected(const LeafCore *c)
{
  return c->state == LS_OPEN;
}
unsigned leaf_core_failures(const LeafCore *c)
{
  return c->failures;
}
size_t leaf_core_manifest_size(const LeafCore *c)
{
  return c->manifest->len;
}

/* Sends the whole manifest; the first batch says "replace". */
static void publish(LeafCore *c)
{
  size_t n = c->manifest->len;
  size_t off = 0;
  do {
    WireEntry batch[WIRE_MAX_ENTRIES];
    size_t k = MIN(n - off, (size_t)WIRE_MAX_ENTRIES);
    for (size_t i = 0; i < k; i++) {
      const LeafEntry *e = &g_array_index(c->manifest, LeafEntry, off + i);
      batch[i].name = wire_str(e->name, strlen(e->name));
      batch[i].size = e->size;
      memcpy(batch[i].cid, e->cid, 32);
    }
    WireMsg m = {.type = MSG_PUBLISH};
    m.u.publish.reset = off == 0;
    m.u.publish.count = (uint16_t)k;
    m.u.publish.entries = batch;
    send_msg(c, &m);
    off += k;
  } while (off < n);
}

void leaf_core_set_manifest(LeafCore *c, const LeafEntry *e, size_t n, uint64_t now)
{
  g_array_set_size(c->manifest, 0);
  for (size_t i = 0; i < n; i++) {
    /* The codec's caps hold for what we publish, too. */
    size_t len = strlen(e[i].name);
    if (len == 0 || len > WIRE_MAX_NAME || !wire_utf8_ok(e[i].name, len))
      continue;
    LeafEntry copy = e[i];
    copy.name = g_strdup(e[i].name);
    g_array_append_val(c->manifest, copy);
  }
  if (c->state == LS_OPEN)
    publish(c);
}

void leaf_core_connected(LeafCore *c, uint64_t now)
{
  c->state = LS_OPEN;
  c->failures = 0;
  c->last_rx = c->last_ping = now;
  WireMsg hello = {.type = MSG_HELLO};
  hello.u.hello.role = ROLE_LEAF;
  hello.u.hello.listen = wire_str("", 0);
  hello.u.hello.agent = wire_str(LEAF_AGENT, strlen(LEAF_AGENT));
  send_msg(c, &hello);
  publish(c);
}

void leaf_core_disconnected(LeafCore *c, uint64_t now)
{
  if (c->state == LS_IDLE || c->state == LS_WAIT)
    return;
  c->failures++;
  fail_all_searches(c, "lost the super node during the search");
  /* Exponential backoff with +-25% jitter so a super node restart is not
   * met by all its leaves in the same millisecond. */
  uint64_t delay = c->cfg.backoff_min_ms;
  for (unsigned i = 1; i < c->failures && delay < c->cfg.backoff_max_ms; i++)
    delay *= 2;
  delay = MIN(delay, c->cfg.backoff_max_ms);
  uint16_t r;
  c->rng((uint8_t *)&r, sizeof r, c->rng_ctx);
  delay = delay * 3 / 4 + (delay / 2) * r / 65535;
  c->state = LS_WAIT;
  c->redial_at = now + delay;
}

static void on_hits(LeafCore *c, const WireMsg *m)
{
  Search *s = g_hash_table_lookup(c->searches, GUINT_TO_POINTER(m->u.hits.req));
  if (!s)
    return; /* late hits of a finished search */
  for (uint16_t i = 0; i < m->u.hits.count && s->hits < s->limit; i++) {
    const WireHit *h = &m->u.hits.hits[i];
    GChecksum *ck = g_checksum_new(G_CHECKSUM_SHA256);
    g_checksum_update(ck, h->peer, 32);
    g_checksum_update(ck, h->cid, 32);
    g_checksum_update(ck, (const guchar *)h->name.p, h->name.len);
    gchar *key = g_strdup(g_checksum_get_string(ck));
    g_checksum_free(ck);
    if (!g_hash_table_add(s->seen, key))
      continue;
    s->hits++;
    LeafAction a = {.kind = LEAF_ACT_HIT, .search = s->id, .size = h->size};
    a.name = g_strndup(h->name.p, h->name.len);
    memcpy(a.cid, h->cid, 32);
    memcpy(a.peer, h->peer, 32);
    push(c, a);
  }
  if (s->hits >= s->limit && s->limit < c->cfg.max_hits)
    finish_search(c, s->id, NULL);
}

bool leaf_core_signal(LeafCore *c, const uint8_t sid[16], uint8_t kind, const uint8_t dst[32],
                      const char *text)
{
  size_t len = strlen(text);
  if (c->state != LS_OPEN || len > WIRE_MAX_SIGNAL || !wire_utf8_ok(text, len))
    return false;
  WireMsg m = {.type = MSG_SIGNAL};
  memcpy(m.u.signal.sid, sid, 16);
  m.u.signal.ttl = WIRE_MAX_TTL;
  m.u.signal.kind = kind;
  memcpy(m.u.signal.dst, dst, 32);
  m.u.signal.text = wire_str(text, len);
  send_msg(c, &m);
  return true;
}

void leaf_core_search_limit(LeafCore *c, uint32_t id, unsigned limit)
{
  Search *s = g_hash_table_lookup(c->searches, GUINT_TO_POINTER(id));
  if (s && limit > 0)
    s->limit = MIN(limit, c->cfg.max_hits);
}

void leaf_core_recv(LeafCore *c, const uint8_t *data, size_t len, uint64_t now)
{
  if (c->state != LS_OPEN)
    return;
  c->last_rx = now;
  WireMsg m;
  WireError err = wire_decode(data, len, &m);
  if (err == WIRE_EUNKNOWN)
    return;
  if (err != WIRE_OK) {
    LeafAction a = {.kind = LEAF_ACT_CLOSE, .reason = "malformed message from the super node"};
    push(c, a);
    leaf_core_disconnected(c, now);
    return;
  }
  switch (m.type) {
  case MSG_PING: {
    WireMsg pong = {.type = MSG_PONG};
    pong.u.ping = m.u.ping;
    send_msg(c, &pong);
    break;
  }
  case MSG_SEARCH_HITS:
    on_hits(c, &m);
    break;
  case MSG_NAT_INFO: {
    LeafAction a = {.kind = LEAF_ACT_NAT_INFO, .stun_port = m.u.nat.stun_port};
    a.turn_addr = g_strndup(m.u.nat.turn_addr.p ? m.u.nat.turn_addr.p : "", m.u.nat.turn_addr.len);
    a.turn_user = g_strndup(m.u.nat.turn_user.p ? m.u.nat.turn_user.p : "", m.u.nat.turn_user.len);
    a.turn_pass = g_strndup(m.u.nat.turn_pass.p ? m.u.nat.turn_pass.p : "", m.u.nat.turn_pass.len);
    push(c, a);
    break;
  }
  case MSG_SIGNAL: {
    LeafAction a = {.kind = LEAF_ACT_SIGNAL};
    memcpy(a.sid, m.u.signal.sid, 16);
    a.signal_kind = m.u.signal.kind;
    memcpy(a.peer, m.u.signal.src, 32);
    a.text = g_strndup(m.u.signal.text.p ? m.u.signal.text.p : "", m.u.signal.text.len);
    push(c, a);
    break;
  }
  default: /* HELLO, PONG; anything else a super node has no reason to send */
    break;
  }
  wire_msg_clear(&m);
}

void leaf_core_tick(LeafCore *c, uint64_t now)
{
  if (c->state == LS_WAIT && now >= c->redial_at)
    dial(c);
  if (c->state == LS_OPEN) {
    if (now - c->last_rx >= 3 * c->cfg.keepalive_ms) {
      LeafAction a = {.kind = LEAF_ACT_CLOSE,
                      .reason = "super node silent for 3 keepalive intervals"};
      push(c, a);
      leaf_core_disconnected(c, now);
    } else if (now - c->last_ping >= c->cfg.keepalive_ms) {
      WireMsg ping = {.type = MSG_PING};
      ping.u.ping = now;
      send_msg(c, &ping);
      c->last_ping = now;
    }
  }
  GList *ids = g_hash_table_get_keys(c->searches);
  for (GList *l = ids; l; l = l->next) {
    Search *s = g_hash_table_lookup(c->searches, l->data);
    if (now >= s->deadline)
      finish_search(c, s->id, NULL);
  }
  g_list_free(ids);
}

static void min_deadline(gpointer k, gpointer v, gpointer ud)
{
  uint64_t *t = ud;
  *t = MIN(*t, ((Search *)v)->deadline);
}

uint64_t leaf_core_next_deadline(const LeafCore *c)
{
  uint64_t t = UINT64_MAX;
  if (c->state == LS_WAIT)
    t = c->redial_at;
  if (c->state == LS_OPEN)
    t = MIN(c->last_ping + c->cfg.keepalive_ms, c->last_rx + 3 * c->cfg.keepalive_ms);
  g_hash_table_foreach(c->searches, min_deadline, &t);
  return t;
}

uint32_t leaf_core_search(LeafCore *c, uint8_t kind, const char *text, uint8_t ttl,
                          uint64_t wait_ms, uint64_t now)
{
  uint32_t id = c->next_search++;
  if (c->next_search == 0)
    c->next_search = 1;
  Search *s = g_new0(Search, 1);
  s->id = id;
  s->deadline = now + wait_ms;
  s->limit = c->cfg.max_hits;
  s->seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  g_hash_table_insert(c->searches, GUINT_TO_POINTER(id), s);
  size_t len = strlen(text);
  if (c->state != LS_OPEN) {
    finish_search(c, id, "not connected to a super node");
    return id;
  }
  if (len == 0 || len > WIRE_MAX_QUERY || !wire_utf8_ok(text, len) || ttl > WIRE_MAX_TTL ||
      kind > QUERY_CONTENT_ID) {
    finish_search(c, id, "bad search: 1..256 bytes of UTF-8, ttl 0..7");
    return id;
  }
  WireMsg m = {.type = MSG_SEARCH};
  m.u.search.req = id;
  m.u.search.ttl = ttl;
  m.u.search.kind = kind;
  m.u.search.text = wire_str(text, len);
  send_msg(c, &m);
  return id;
}
