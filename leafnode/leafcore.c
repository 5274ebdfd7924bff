/* leafcore.c - leaf session, publishing and searches. */
#include "leafcore.h"

#include <glib.h>
#include <string.h>

#include "hostcache.h"
#include "netcert.h"
#include "term.h"
#include "wire.h"

#define LEAF_AGENT "canopy-leaf/0.1"
/* A higher term the leaf followed but could not attach under for this long
 * (its leader never materialised) is forgotten: back to the term of the
 * last ATTACHED and to the configured super node. */
#define LEAF_CLAIM_MS 10000
/* Failed dials in a row, beyond one per member, after which a leaf whose
 * whole group is unreachable turns to its host cache. */
#define LEAF_GROUP_TRIES_EXTRA 2
/* The backup asked (WATCH from it): a leader that sends nothing within
 * this many of the group's heartbeats after our PING is lost to us. */
#define LEAF_PROBE_HBS 2
/* A leaf that lost its leader while its watch session to the backup is
 * open waits this many heartbeats (two dead intervals, 2 s) for the
 * group's verdict before it redials the leader: the backup takes over
 * within that when the leader is gone, and the leaf follows it on the
 * session it has. 10,000 leaves redialling a dead leader every 250 ms
 * and up (or opening sessions to a hung one, whose kernel still accepts)
 * slowed the takeover they were waiting for; with one dead interval a
 * loaded machine still saw them start. A leaf that alone lost a live
 * leader is back 2 s later. */
#define LEAF_VERDICT_HBS 8
/* The largest group heartbeat a leaf believes (GROUP_STATE's hb_ms). */
#define LEAF_MAX_HB_MS 10000
/* A leaf opens its watch session to a (new) backup only once attached,
 * after LEAF_WATCH_DELAY_MS plus a random share of LEAF_WATCH_SPREAD_MS:
 * after a takeover 10,000 leaves otherwise dialled the new backup at once,
 * and those handshakes (theirs and the backup's) delayed their move to
 * the new leader, which is what a user waits for. */
#define LEAF_WATCH_DELAY_MS 250
#define LEAF_WATCH_SPREAD_MS 2000
#define LEAF_GROUP_FALLBACK_MS 120000

typedef enum { LS_IDLE, LS_WAIT, LS_DIALING, LS_OPEN } LeafState;

typedef struct {
  uint32_t id;
  uint64_t deadline;
  unsigned hits;
  unsigned limit;
  GHashTable *seen; /* peer|cid (64 bytes), to drop duplicate hits */
} Search;

#define ADDR_MAX 129

typedef struct {
  LeafState state;
  char addr[ADDR_MAX + 1]; /* dialed */
  uint8_t peer[32];        /* once OPEN */
  uint64_t redial_at;      /* WAIT */
  unsigned failures;
  uint64_t last_rx, last_ping;
  bool admitted; /* OPEN and, in a network, its certificate checked */
} Slot;

struct LeafCore {
  LeafConfig cfg;
  bool networked;
  uint8_t network_pk[32];
  char home[ADDR_MAX + 1]; /* the first configured super node */
  /* Super nodes to attach to outside a group (hostcache.h). current: the
   * one we were last attached to; retry_same: it was lost while attached,
   * so it gets one redial before the next from the cache. */
  HostCache *hosts;
  char current[ADDR_MAX + 1];
  bool retry_same;
  uint64_t failing_since; /* the primary's first failure in a row */
  uint64_t refusals, hosts_heard;
  char last_refusal[LEAF_REFUSAL_TEXT];
  LeafRandomFn rng;
  void *rng_ctx;
  Slot slot[2];
  bool attached; /* the primary said ATTACHED */
  uint8_t attached_to[32];
  bool ever_attached;

  /* The group as heard from GROUP_STATE (GROUPS.md); term 0 and nothing
   * else for a super node without a group. */
  char group[WIRE_MAX_GROUP + 1];
  uint64_t term;
  uint32_t hb_ms;
  bool has_leader, has_backup;
  uint8_t leader[32], backup[32];
  char leader_addr[ADDR_MAX + 1], backup_addr[ADDR_MAX + 1];
  GPtrArray *members; /* addresses, owned: fallbacks when the leader is gone */
  /* Who may move us to another term (GROUPS.md, "Leaves"): once we have a
   * view, only our leader and the members it listed, by node id (which the
   * session handshake authenticates); before, the first super node. */
  bool has_view;
  uint8_t member_ids[WIRE_MAX_MEMBERS][32];
  unsigned n_member_ids;
  uint64_t attached_term;      /* the term of the last ATTACHED */
  GPtrArray *attached_members; /* members' addresses then (owned) */
  uint64_t term_since;         /* when term last rose */
  uint64_t claims_refused;
  unsigned next_member;
  bool told_ok; /* last leader_ok said to the backup */
  uint64_t last_watch;
  uint64_t probe_at;  /* the backup asked about our leader then (0: no question open) */
  uint64_t probes;    /* questions from the backup */
  uint64_t watch_due; /* when to dial the backup (0: not yet planned) */

  uint64_t publishes, leader_changes;
  GArray *manifest; /* LeafEntry, owned names */
  uint8_t digest[32];
  GHashTable *searches; /* id -> Search* */
  uint32_t next_search;
  GQueue actions;
};

void leaf_config_defaults(LeafConfig *c)
{
  memset(c, 0, sizeof *c);
  c->supernode = "";
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
  c->cfg.supernode = NULL;
  if (cfg->network_pk) {
    c->networked = true;
    memcpy(c->network_pk, cfg->network_pk, 32);
  }
  c->cfg.network_pk = NULL;
  g_strlcpy(c->home, cfg->supernode ? cfg->supernode : "", sizeof c->home);
  c->hosts = hostcache_new(rng, rng_ctx);
  for (const char *const *a = cfg->supernodes; a && *a; a++) {
    if (!hostcache_add_configured(c->hosts, *a))
      g_warning("super node address '%s' not taken: malformed, or too many", *a);
    if (!c->home[0])
      g_strlcpy(c->home, *a, sizeof c->home);
  }
  if (!cfg->supernodes && c->home[0])
    hostcache_add_configured(c->hosts, c->home);
  c->cfg.supernodes = NULL;
  if (c->cfg.keepalive_ms == 0)
    c->cfg.keepalive_ms = 5000;
  c->rng = rng;
  c->rng_ctx = rng_ctx;
  c->manifest = g_array_new(FALSE, TRUE, sizeof(LeafEntry));
  g_array_set_clear_func(c->manifest, entry_clear);
  c->members = g_ptr_array_new_with_free_func(g_free);
  c->attached_members = g_ptr_array_new_with_free_func(g_free);
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
  g_ptr_array_unref(c->members);
  g_ptr_array_unref(c->attached_members);
  g_hash_table_destroy(c->searches);
  hostcache_free(c->hosts);
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
  g_free(a->addr);
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

static void send_msg(LeafCore *c, LeafSlot slot, const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  if (!wire_encode(m, &b)) {
    g_warning("cannot encode %s", wire_type_str(m->type));
    buf_free(&b);
    return;
  }
  LeafAction a = {.kind = LEAF_ACT_SEND, .slot = slot};
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

/* --- slots ------------------------------------------------------------------ */

static bool slot_live(const Slot *s)
{
  return s->state == LS_DIALING || s->state == LS_OPEN;
}

static void slot_dial(LeafCore *c, LeafSlot slot, const char *addr)
{
  Slot *s = &c->slot[slot];
  s->state = LS_DIALING;
  g_strlcpy(s->addr, addr, sizeof s->addr);
  LeafAction a = {.kind = LEAF_ACT_DIAL, .slot = slot};
  a.addr = g_strdup(addr);
  push(c, a);
}

/* Ends the slot's session on our own decision (no disconnected event
 * follows); the slot is empty afterwards. */
static void slot_close(LeafCore *c, LeafSlot slot, const char *reason)
{
  Slot *s = &c->slot[slot];
  if (slot_live(s)) {
    LeafAction a = {.kind = LEAF_ACT_CLOSE, .slot = slot, .reason = reason};
    push(c, a);
  }
  s->state = LS_IDLE;
  if (slot == LEAF_SLOT_PRIMARY)
    c->attached = false;
}

/* Exponential backoff with +-25% jitter so a super node restart is not met
 * by all its leaves in the same millisecond. */
static void slot_backoff(LeafCore *c, Slot *s, uint64_t now)
{
  if (s->failures == 0 && s == &c->slot[LEAF_SLOT_PRIMARY])
    c->failing_since = now;
  s->failures++;
  uint64_t delay = c->cfg.backoff_min_ms;
  for (unsigned i = 1; i < s->failures && delay < c->cfg.backoff_max_ms; i++)
    delay *= 2;
  delay = MIN(delay, c->cfg.backoff_max_ms);
  uint16_t r;
  c->rng((uint8_t *)&r, sizeof r, c->rng_ctx);
  delay = delay * 3 / 4 + (delay / 2) * r / 65535;
  s->state = LS_WAIT;
  s->redial_at = now + delay;
}

/* The next super node from the host cache: the one just lost once more
 * (retry_same), else the best ready entry, else the configured one. */
static const char *host_target(LeafCore *c, uint64_t now)
{
  if (c->retry_same && c->current[0]) {
    c->retry_same = false;
    return c->current;
  }
  const char *a = hostcache_next(c->hosts, NULL, now);
  return a ? a : c->home;
}

static bool in_group(const LeafCore *c)
{
  return (c->has_leader && c->leader_addr[0]) || c->members->len > 0;
}

static bool claim_pending(const LeafCore *c);

/* The group is unreachable: its leader and then every member failed in a
 * row (LEAF_GROUP_TRIES_EXTRA more), for LEAF_GROUP_FALLBACK_MS at least
 * (a takeover takes a second or two), and no claim of a new term is
 * waiting to expire (LEAF_CLAIM_MS). */
static bool group_exhausted(const LeafCore *c, uint64_t now)
{
  return c->slot[LEAF_SLOT_PRIMARY].failures >= LEAF_GROUP_TRIES_EXTRA + c->members->len &&
         now - c->failing_since >= LEAF_GROUP_FALLBACK_MS && !claim_pending(c);
}

static void forget_group(LeafCore *c);

/* Where the primary goes next: the leader when one is known; after two
 * failures in a row the group's other members in turn (one of them leads
 * by now, or redirects to who does); when the whole group failed, or
 * without a group, the host cache. */
static const char *primary_target(LeafCore *c, uint64_t now)
{
  unsigned f = c->slot[LEAF_SLOT_PRIMARY].failures;
  if (in_group(c) && !group_exhausted(c, now)) {
    if (c->has_leader && c->leader_addr[0] && (f < 2 || c->members->len == 0))
      return c->leader_addr;
    if (f >= 2 && c->members->len > 0)
      return g_ptr_array_index(c->members, c->next_member++ % c->members->len);
  }
  if (in_group(c)) {
    g_message("no member of group '%s' answers: trying the super nodes of the host cache",
              c->group);
    forget_group(c);
  }
  return host_target(c, now);
}

/* In a group too the leaf keeps the ordinary keepalive to its leader, not
 * the group's heartbeat: 10,000 leaves pinging every 250 ms were 40,000
 * PINGs a second. A dead leader closes the session; a hung one is found
 * when the backup asks (on_probe). */
static uint64_t primary_ping_ms(const LeafCore *c)
{
  return c->cfg.keepalive_ms;
}

static uint64_t primary_dead_ms(const LeafCore *c)
{
  return 3 * c->cfg.keepalive_ms;
}

static uint64_t probe_ms(const LeafCore *c)
{
  return LEAF_PROBE_HBS * (uint64_t)(c->hb_ms ? c->hb_ms : 250);
}

static bool leader_ok(const LeafCore *c)
{
  return c->attached && c->slot[LEAF_SLOT_PRIMARY].state == LS_OPEN;
}

/* Tells the backup whether our leader is alive (GROUPS.md). */
static void tell_backup(LeafCore *c, uint64_t now)
{
  const Slot *w = &c->slot[LEAF_SLOT_WATCH];
  if (w->state != LS_OPEN || !w->admitted)
    return;
  WireMsg m = {.type = MSG_WATCH};
  m.u.watch.term = c->term;
  m.u.watch.leader_ok = leader_ok(c);
  send_msg(c, LEAF_SLOT_WATCH, &m);
  c->told_ok = m.u.watch.leader_ok;
  c->last_watch = now;
}

static void hello(LeafCore *c, LeafSlot slot)
{
  WireMsg m = {.type = MSG_HELLO};
  m.u.hello.role = slot == LEAF_SLOT_PRIMARY ? ROLE_LEAF : ROLE_WATCH;
  m.u.hello.listen = wire_str("", 0);
  m.u.hello.agent = wire_str(LEAF_AGENT, strlen(LEAF_AGENT));
  send_msg(c, slot, &m);
}

/* The sessions the group view calls for: the primary on the leader, the
 * watch session on the backup. */
static void reconcile(LeafCore *c, uint64_t now)
{
  Slot *p = &c->slot[LEAF_SLOT_PRIMARY], *w = &c->slot[LEAF_SLOT_WATCH];
  if (c->has_leader) {
    bool primary_on_leader = p->state == LS_OPEN      ? memcmp(p->peer, c->leader, 32) == 0
                             : p->state == LS_DIALING ? strcmp(p->addr, c->leader_addr) == 0
                                                      : false;
    /* A primary that only dials the leader, or reached it and was not
     * taken (it dialled a member before the takeover and is being turned
     * away), loses to a watch session already open on the new leader:
     * waiting for it cost seconds of back-off at 5,000 leaves. */
    bool watch_on_leader = w->state == LS_OPEN && memcmp(w->peer, c->leader, 32) == 0;
    if (watch_on_leader && !(p->state == LS_OPEN && c->attached))
      primary_on_leader = false;
    if (!primary_on_leader) {
      if (watch_on_leader) {
        /* The backup took over: its session becomes the primary, bound on
         * its side to what it replicated. */
        slot_close(c, LEAF_SLOT_PRIMARY, "following the new leader");
        *p = *w;
        p->failures = 0;
        memset(w, 0, sizeof *w);
        LeafAction a = {.kind = LEAF_ACT_SWAP};
        push(c, a);
        hello(c, LEAF_SLOT_PRIMARY);
      } else if (c->leader_addr[0] && (p->state != LS_WAIT || p->failures == 0)) {
        slot_close(c, LEAF_SLOT_PRIMARY, "following the leader");
        slot_dial(c, LEAF_SLOT_PRIMARY, c->leader_addr);
      }
    }
  }
  bool want_watch = c->has_backup && c->backup_addr[0] &&
                    !(c->has_leader && memcmp(c->backup, c->leader, 32) == 0);
  bool watch_on_backup = want_watch && (w->state == LS_OPEN ? memcmp(w->peer, c->backup, 32) == 0
                                                            : strcmp(w->addr, c->backup_addr) == 0);
  if (slot_live(w) && !watch_on_backup)
    slot_close(c, LEAF_SLOT_WATCH, "the backup changed");
  if (!want_watch || w->state != LS_IDLE || !c->attached) {
    c->watch_due = 0; /* planned again once attached and wanted */
  } else if (!c->watch_due) {
    uint16_t r;
    c->rng((uint8_t *)&r, sizeof r, c->rng_ctx);
    c->watch_due = now + LEAF_WATCH_DELAY_MS + (uint64_t)LEAF_WATCH_SPREAD_MS * r / 65536;
  } else if (now >= c->watch_due) {
    c->watch_due = 0;
    slot_dial(c, LEAF_SLOT_WATCH, c->backup_addr);
  }
}

void leaf_core_start(LeafCore *c, uint64_t now)
{
  if (c->slot[LEAF_SLOT_PRIMARY].state == LS_IDLE)
    slot_dial(c, LEAF_SLOT_PRIMARY, host_target(c, now));
}

bool leaf_core_is_connected(const LeafCore *c)
{
  return leader_ok(c);
}

unsigned leaf_core_failures(const LeafCore *c)
{
  return c->slot[LEAF_SLOT_PRIMARY].failures;
}

size_t leaf_core_manifest_size(const LeafCore *c)
{
  return c->manifest->len;
}

void leaf_core_group_status(const LeafCore *c, LeafGroupStatus *out)
{
  memset(out, 0, sizeof *out);
  const Slot *p = &c->slot[LEAF_SLOT_PRIMARY];
  out->attached = leader_ok(c);
  if (p->state == LS_OPEN) {
    memcpy(out->supernode, p->peer, 32);
    g_strlcpy(out->supernode_addr, p->addr, sizeof out->supernode_addr);
  }
  out->supernode_leads = c->attached;
  out->term = c->term;
  g_strlcpy(out->group, c->group, sizeof out->group);
  out->has_backup = c->has_backup;
  memcpy(out->backup, c->backup, 32);
  g_strlcpy(out->backup_addr, c->backup_addr, sizeof out->backup_addr);
  out->watching = c->slot[LEAF_SLOT_WATCH].state == LS_OPEN;
  out->publishes = c->publishes;
  out->leader_changes = c->leader_changes;
  out->claims_refused = c->claims_refused;
  for (guint i = 0; i < c->members->len && out->n_members < LEAF_MAX_MEMBERS; i++)
    g_strlcpy(out->members[out->n_members++], g_ptr_array_index(c->members, i),
              sizeof out->members[0]);
}

/* --- publishing --------------------------------------------------------------- */

/* Sends the whole manifest; the first batch says "replace". */
static void publish(LeafCore *c)
{
  size_t n = c->manifest->len;
  size_t off = 0;
  c->publishes++;
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
    send_msg(c, LEAF_SLOT_PRIMARY, &m);
    off += k;
  } while (off < n);
}

void leaf_core_set_manifest(LeafCore *c, const LeafEntry *e, size_t n, uint64_t now)
{
  g_array_set_size(c->manifest, 0);
  memset(c->digest, 0, sizeof c->digest);
  for (size_t i = 0; i < n; i++) {
    /* The codec's caps hold for what we publish, too. */
    size_t len = strlen(e[i].name);
    if (len == 0 || len > WIRE_MAX_NAME || !wire_utf8_ok(e[i].name, len))
      continue;
    LeafEntry copy = e[i];
    copy.name = g_strdup(e[i].name);
    g_array_append_val(c->manifest, copy);
    wire_digest_entry(c->digest, copy.cid, copy.size, copy.name, len);
  }
  if (c->attached)
    publish(c);
}

/* --- sessions ----------------------------------------------------------------- */

void leaf_core_connected(LeafCore *c, LeafSlot slot, const uint8_t peer[32], uint64_t now)
{
  Slot *s = &c->slot[slot];
  if (s->state != LS_DIALING)
    return;
  s->state = LS_OPEN;
  s->admitted = !c->networked;
  memcpy(s->peer, peer, 32);
  s->last_rx = s->last_ping = now;
  hello(c, slot);
  if (slot == LEAF_SLOT_WATCH) {
    s->failures = 0;
    tell_backup(c, now);
  }
}

/* Outside a group, the primary's wait follows the host cache: another
 * super node ready to try is dialed after the shortest back-off, whatever
 * the slot's failures in a row; with none ready, the wait lasts until the
 * first is. A lost session's own redial keeps the slot's back-off. */
static void host_wait(LeafCore *c, uint64_t now)
{
  Slot *p = &c->slot[LEAF_SLOT_PRIMARY];
  if ((in_group(c) && !group_exhausted(c, now)) || c->retry_same)
    return;
  if (hostcache_next(c->hosts, NULL, now)) {
    uint16_t r;
    c->rng((uint8_t *)&r, sizeof r, c->rng_ctx);
    uint64_t d = c->cfg.backoff_min_ms;
    p->redial_at = MIN(p->redial_at, now + d * 3 / 4 + (d / 2) * r / 65535);
  } else {
    uint64_t ready = hostcache_next_ready(c->hosts);
    if (ready != UINT64_MAX)
      p->redial_at = MAX(p->redial_at, ready);
  }
}

/* slot's dial failed or its session ended; count_host: the host cache
 * counts it as a failure of that address (a refusal was counted already). */
static void slot_down(LeafCore *c, LeafSlot slot, uint64_t now, bool count_host)
{
  Slot *s = &c->slot[slot];
  if (!slot_live(s))
    return;
  if (slot == LEAF_SLOT_PRIMARY) {
    /* A session that took us and then ended gets one redial (a restart, a
     * blip); a dial that failed, or a session that ended before ATTACHED,
     * is a failure of that super node. */
    if (s->state == LS_OPEN && c->attached)
      c->retry_same = true;
    else if (count_host)
      hostcache_failure(c->hosts, s->addr, now);
  }
  slot_backoff(c, s, now);
  if (slot == LEAF_SLOT_PRIMARY) {
    host_wait(c, now);
    const Slot *w = &c->slot[LEAF_SLOT_WATCH];
    if (in_group(c) && w->state == LS_OPEN && w->admitted && c->attached)
      s->redial_at =
          MAX(s->redial_at, now + LEAF_VERDICT_HBS * (uint64_t)(c->hb_ms ? c->hb_ms : 250));
    c->attached = false;
    fail_all_searches(c, "lost the super node during the search");
    tell_backup(c, now);
  }
}

void leaf_core_disconnected(LeafCore *c, LeafSlot slot, uint64_t now)
{
  slot_down(c, slot, now, true);
}

/* Keys of Search.seen: a peer id and a content id, both chosen by peers,
 * so the hash mixes every byte (glib's table hashes are not keyed: the
 * table stays small, max_hits). */
static guint hit_key_hash(gconstpointer k)
{
  const uint8_t *p = k;
  guint h = 2166136261u;
  for (int i = 0; i < 64; i++)
    h = (h ^ p[i]) * 16777619u;
  return h;
}

static gboolean hit_key_equal(gconstpointer a, gconstpointer b)
{
  return memcmp(a, b, 64) == 0;
}

static void on_hits(LeafCore *c, const WireMsg *m)
{
  Search *s = g_hash_table_lookup(c->searches, GUINT_TO_POINTER(m->u.hits.req));
  if (!s)
    return; /* late hits of a finished search */
  for (uint16_t i = 0; i < m->u.hits.count && s->hits < s->limit; i++) {
    const WireHit *h = &m->u.hits.hits[i];
    /* One hit per leaf and file: the names are the leaf's to choose, so a
     * leaf naming one content id many ways must not fill the search. */
    gchar *key = g_malloc(64);
    memcpy(key, h->peer, 32);
    memcpy(key + 32, h->cid, 32);
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
  if (!leader_ok(c) || len > WIRE_MAX_SIGNAL || !wire_utf8_ok(text, len))
    return false;
  WireMsg m = {.type = MSG_SIGNAL};
  memcpy(m.u.signal.sid, sid, 16);
  m.u.signal.ttl = WIRE_MAX_TTL;
  m.u.signal.kind = kind;
  memcpy(m.u.signal.dst, dst, 32);
  m.u.signal.text = wire_str(text, len);
  send_msg(c, LEAF_SLOT_PRIMARY, &m);
  return true;
}

void leaf_core_search_limit(LeafCore *c, uint32_t id, unsigned limit)
{
  Search *s = g_hash_table_lookup(c->searches, GUINT_TO_POINTER(id));
  if (s && limit > 0)
    s->limit = MIN(limit, c->cfg.max_hits);
}

static void copy_addr(char *dst, WireStr s)
{
  size_t n = MIN((size_t)s.len, (size_t)ADDR_MAX);
  memcpy(dst, s.p ? s.p : "", n);
  dst[n] = '\0';
}

static bool zero_id(const uint8_t id[32])
{
  static const uint8_t zero[32];
  return memcmp(id, zero, 32) == 0;
}

static bool vouched(const LeafCore *c, const uint8_t id[32])
{
  if (!c->has_view)
    return true; /* the configured super node, or where it sent us */
  if (c->has_leader && memcmp(id, c->leader, 32) == 0)
    return true;
  for (unsigned i = 0; i < c->n_member_ids; i++)
    if (memcmp(id, c->member_ids[i], 32) == 0)
      return true;
  return false;
}

/* GROUP_STATE from either session: the highest term wins; at one term the
 * leader's own word (or a newer view of it) replaces ours. Only from a
 * super node our leader vouched for, and only a believable term
 * (shared/term.h): a stranger cannot send us elsewhere. */
static void on_group(LeafCore *c, LeafSlot slot, const WireMsg *m, uint64_t now)
{
  if (m->u.group.term < c->term)
    return; /* stale: from a leader that has been replaced */
  /* At our term a view that names no leader (a member still joining, a
   * restarted one) does not replace ours that names one: it would leave
   * our leader unvouched for, and the leaf deaf to it for good (the
   * simulator, --claims seed 57, once leaves dialled the backup later). */
  if (m->u.group.term == c->term && c->has_leader && zero_id(m->u.group.leader))
    return;
  if (!vouched(c, c->slot[slot].peer) ||
      (c->cfg.unix_now && !term_believable(m->u.group.term, c->cfg.unix_now()))) {
    c->claims_refused++;
    g_debug("a group view of term %" G_GUINT64_FORMAT " from a super node not vouched for, or "
            "beyond belief: ignored",
            m->u.group.term);
    return;
  }
  if (m->u.group.term > c->term)
    c->term_since = now;
  c->term = m->u.group.term;
  size_t gl = MIN((size_t)m->u.group.group.len, sizeof c->group - 1);
  memcpy(c->group, m->u.group.group.p, gl);
  c->group[gl] = '\0';
  /* From the wire: bounded, so a member cannot stretch our waits. */
  c->hb_ms = MIN(m->u.group.hb_ms, LEAF_MAX_HB_MS);
  c->has_leader = !zero_id(m->u.group.leader);
  memcpy(c->leader, m->u.group.leader, 32);
  copy_addr(c->leader_addr, m->u.group.leader_addr);
  c->has_backup = !zero_id(m->u.group.backup);
  memcpy(c->backup, m->u.group.backup, 32);
  copy_addr(c->backup_addr, m->u.group.backup_addr);
  g_ptr_array_set_size(c->members, 0);
  for (uint16_t i = 0; i < m->u.group.n_members; i++)
    if (m->u.group.members[i].addr.len)
      g_ptr_array_add(c->members, g_strndup(m->u.group.members[i].addr.p,
                                            MIN(m->u.group.members[i].addr.len, ADDR_MAX)));
  c->n_member_ids = 0;
  for (uint16_t i = 0; i < m->u.group.n_members && i < WIRE_MAX_MEMBERS; i++)
    memcpy(c->member_ids[c->n_member_ids++], m->u.group.members[i].id, 32);
  c->has_view = true;
  reconcile(c, now);
  (void)slot;
}

/* The backup lost the leader and asks whether we still reach it: a PING
 * now, and the leader is lost to us unless something comes back within
 * probe_ms (leaf_core_tick). No primary: we have said so already, say it
 * again. */
static void on_probe(LeafCore *c, uint64_t now)
{
  Slot *p = &c->slot[LEAF_SLOT_PRIMARY];
  c->probes++;
  if (!leader_ok(c)) {
    if (c->told_ok)
      tell_backup(c, now); /* else it has our word already */
    return;
  }
  if (c->probe_at)
    return; /* one question open is enough */
  c->probe_at = now;
  WireMsg ping = {.type = MSG_PING};
  ping.u.ping = now;
  send_msg(c, LEAF_SLOT_PRIMARY, &ping);
  p->last_ping = now;
}

/* The whole group is unreachable and the leaf goes to a super node of its
 * host cache, which may lead no group (term 0) or another one: the old
 * view, its term included, would refuse what that one says. */
static void forget_group(LeafCore *c)
{
  c->term = c->attached_term = 0;
  c->group[0] = '\0';
  c->hb_ms = 0;
  c->has_leader = c->has_backup = c->has_view = false;
  c->leader_addr[0] = c->backup_addr[0] = '\0';
  g_ptr_array_set_size(c->members, 0);
  g_ptr_array_set_size(c->attached_members, 0);
  c->n_member_ids = 0;
  slot_close(c, LEAF_SLOT_WATCH, "the group is unreachable");
}

/* A full super node (or a busy one) refused us and named others: those are
 * tried first, least loaded first; the refusing one waits retry_ms. */
static void on_refuse(LeafCore *c, const WireMsg *m, uint64_t now)
{
  Slot *p = &c->slot[LEAF_SLOT_PRIMARY];
  static const char *why[] = {"?", "links full", "leaves full", "busy", "shutting down"};
  uint8_t r = m->u.refuse.reason;
  const char *reason = r < G_N_ELEMENTS(why) ? why[r] : "?";
  c->refusals++;
  GString *named = g_string_new(NULL);
  unsigned taken = 0;
  for (uint16_t i = 0; i < m->u.refuse.count; i++) {
    const WireHost *h = &m->u.refuse.hosts[i];
    char addr[ADDR_MAX + 1];
    copy_addr(addr, h->addr);
    if (strcmp(addr, p->addr) == 0 || memcmp(h->id, p->peer, 32) == 0)
      continue; /* itself */
    /* Only well-formed addresses reach the log and status: the text is
     * the super node's to choose. */
    if (!hostcache_addr_ok(addr))
      continue;
    if (hostcache_learn(c->hosts, addr, h->id, h->leaf_load, p->peer, true, taken, now))
      taken++;
    if (named->len < 200)
      g_string_append_printf(named, "%s%s", named->len ? " " : "", addr);
  }
  g_snprintf(c->last_refusal, sizeof c->last_refusal, "%s (%s) named %u: %s", p->addr, reason,
             (unsigned)m->u.refuse.count, named->len ? named->str : "-");
  g_message("refused by %s (%s, retry in %u ms); it named %u other super node%s: %s", p->addr,
            reason, m->u.refuse.retry_ms, (unsigned)m->u.refuse.count,
            m->u.refuse.count == 1 ? "" : "s", named->len ? named->str : "none");
  g_string_free(named, TRUE);
  hostcache_refused(c->hosts, p->addr, m->u.refuse.retry_ms, now);
  LeafAction a = {.kind = LEAF_ACT_CLOSE, .slot = LEAF_SLOT_PRIMARY, .reason = "refused"};
  push(c, a);
  c->attached = false; /* not a lost session: no redial of the same */
  slot_down(c, LEAF_SLOT_PRIMARY, now, false);
}

/* HOSTS from our super node: others to go to when it is gone. */
static void on_hosts(LeafCore *c, const WireMsg *m, uint64_t now)
{
  Slot *p = &c->slot[LEAF_SLOT_PRIMARY];
  c->hosts_heard++;
  for (uint16_t i = 0; i < m->u.hosts.count; i++) {
    const WireHost *h = &m->u.hosts.hosts[i];
    char addr[ADDR_MAX + 1];
    copy_addr(addr, h->addr);
    hostcache_learn(c->hosts, addr, h->id, h->leaf_load, p->peer, false, 0, now);
  }
}

static void on_attached(LeafCore *c, const WireMsg *m, uint64_t now)
{
  Slot *p = &c->slot[LEAF_SLOT_PRIMARY];
  if (m->u.attached.term < c->term)
    return;
  hostcache_success(c->hosts, p->addr, p->peer, now);
  g_strlcpy(c->current, p->addr, sizeof c->current);
  c->retry_same = false;
  if (c->ever_attached && memcmp(c->attached_to, p->peer, 32) != 0)
    c->leader_changes++;
  c->term = m->u.attached.term;
  c->attached_term = c->term;
  g_ptr_array_set_size(c->attached_members, 0);
  for (guint i = 0; i < c->members->len; i++)
    g_ptr_array_add(c->attached_members, g_strdup(g_ptr_array_index(c->members, i)));
  c->attached = true;
  c->ever_attached = true;
  memcpy(c->attached_to, p->peer, 32);
  p->failures = 0;
  if (m->u.attached.count != c->manifest->len || memcmp(m->u.attached.digest, c->digest, 32) != 0)
    publish(c);
  tell_backup(c, now);
  reconcile(c, now); /* plans the watch session */
}

void leaf_core_recv(LeafCore *c, LeafSlot slot, const uint8_t *data, size_t len, uint64_t now)
{
  Slot *s = &c->slot[slot];
  if (s->state != LS_OPEN)
    return;
  s->last_rx = now;
  WireMsg m;
  WireError err = wire_decode(data, len, &m);
  if (err == WIRE_EUNKNOWN)
    return;
  if (err != WIRE_OK) {
    LeafAction a = {
        .kind = LEAF_ACT_CLOSE, .slot = slot, .reason = "malformed message from the super node"};
    push(c, a);
    leaf_core_disconnected(c, slot, now);
    return;
  }
  if (!s->admitted) {
    /* In a network, the super node's HELLO (its first message) must prove
     * it was admitted before anything it says is taken. */
    const char *why = "the super node spoke before proving its network membership";
    if (m.type == MSG_HELLO && m.u.hello.role == ROLE_SUPER) {
      NetcertResult r = netcert_check(m.u.hello.cert, m.u.hello.cert_len, c->network_pk, s->peer,
                                      c->cfg.unix_now ? c->cfg.unix_now() : 0);
      why = r == NETCERT_OK ? NULL : netcert_result_str(r);
    }
    wire_msg_clear(&m);
    if (!why) {
      s->admitted = true;
      if (slot == LEAF_SLOT_WATCH)
        tell_backup(c, now); /* held back until now */
      return;
    }
    LeafAction a = {.kind = LEAF_ACT_CLOSE, .slot = slot, .reason = why};
    push(c, a);
    leaf_core_disconnected(c, slot, now);
    return;
  }
  switch (m.type) {
  case MSG_PING: {
    WireMsg pong = {.type = MSG_PONG};
    pong.u.ping = m.u.ping;
    send_msg(c, slot, &pong);
    break;
  }
  case MSG_GROUP_STATE:
    on_group(c, slot, &m, now);
    break;
  case MSG_WATCH:
    if (slot == LEAF_SLOT_WATCH)
      on_probe(c, now);
    break;
  case MSG_ATTACHED:
    if (slot == LEAF_SLOT_PRIMARY)
      on_attached(c, &m, now);
    break;
  case MSG_SEARCH_HITS:
    if (slot == LEAF_SLOT_PRIMARY)
      on_hits(c, &m);
    break;
  case MSG_REFUSE:
    if (slot == LEAF_SLOT_PRIMARY && !c->attached) {
      on_refuse(c, &m, now);
    } else {
      LeafAction a = {.kind = LEAF_ACT_CLOSE, .slot = slot, .reason = "refused"};
      push(c, a);
      slot_down(c, slot, now, true);
    }
    break;
  case MSG_HOSTS:
    if (slot == LEAF_SLOT_PRIMARY)
      on_hosts(c, &m, now);
    break;
  case MSG_NAT_INFO: {
    if (slot != LEAF_SLOT_PRIMARY)
      break;
    LeafAction a = {.kind = LEAF_ACT_NAT_INFO, .stun_port = m.u.nat.stun_port};
    a.turn_addr = g_strndup(m.u.nat.turn_addr.p ? m.u.nat.turn_addr.p : "", m.u.nat.turn_addr.len);
    a.turn_user = g_strndup(m.u.nat.turn_user.p ? m.u.nat.turn_user.p : "", m.u.nat.turn_user.len);
    a.turn_pass = g_strndup(m.u.nat.turn_pass.p ? m.u.nat.turn_pass.p : "", m.u.nat.turn_pass.len);
    push(c, a);
    break;
  }
  case MSG_SIGNAL: {
    if (slot != LEAF_SLOT_PRIMARY)
      break;
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

/* --- time --------------------------------------------------------------------- */

/* A higher term whose leader never took us (LEAF_CLAIM_MS) was a claim,
 * not a leader: forget it and ask the configured super node again. */
static bool claim_pending(const LeafCore *c)
{
  return !c->attached && c->term > c->attached_term;
}

static void expire_claim(LeafCore *c, uint64_t now)
{
  if (!claim_pending(c) || now - c->term_since < LEAF_CLAIM_MS)
    return;
  g_debug("term %" G_GUINT64_FORMAT " never materialised: back to %" G_GUINT64_FORMAT, c->term,
          c->attached_term);
  c->term = c->attached_term;
  c->has_view = false;
  c->has_leader = c->has_backup = false;
  /* The fallbacks are the members of the leader that last took us, not
   * those of the claim. */
  g_ptr_array_set_size(c->members, 0);
  for (guint i = 0; i < c->attached_members->len; i++)
    g_ptr_array_add(c->members, g_strdup(g_ptr_array_index(c->attached_members, i)));
  c->n_member_ids = 0;
  reconcile(c, now); /* the watch session goes too */
  Slot *p = &c->slot[LEAF_SLOT_PRIMARY];
  if (p->state == LS_OPEN || p->state == LS_DIALING) {
    slot_close(c, LEAF_SLOT_PRIMARY, "its leader never took us");
    slot_dial(c, LEAF_SLOT_PRIMARY, host_target(c, now));
  }
}

void leaf_core_tick(LeafCore *c, uint64_t now)
{
  Slot *p = &c->slot[LEAF_SLOT_PRIMARY], *w = &c->slot[LEAF_SLOT_WATCH];
  expire_claim(c, now);
  if (p->state == LS_WAIT && now >= p->redial_at)
    slot_dial(c, LEAF_SLOT_PRIMARY, primary_target(c, now));
  if (c->probe_at && p->state == LS_OPEN && p->last_rx >= c->probe_at)
    c->probe_at = 0; /* the leader answered the backup's question */
  if (c->probe_at && now - c->probe_at >= probe_ms(c)) {
    c->probe_at = 0;
    if (p->state == LS_OPEN) {
      LeafAction a = {.kind = LEAF_ACT_CLOSE,
                      .slot = LEAF_SLOT_PRIMARY,
                      .reason = "the leader did not answer when the backup asked"};
      push(c, a);
      leaf_core_disconnected(c, LEAF_SLOT_PRIMARY, now); /* tells the backup */
    }
  }
  if (p->state == LS_OPEN) {
    if (now - p->last_rx >= primary_dead_ms(c)) {
      LeafAction a = {.kind = LEAF_ACT_CLOSE,
                      .slot = LEAF_SLOT_PRIMARY,
                      .reason = "super node silent too long"};
      push(c, a);
      leaf_core_disconnected(c, LEAF_SLOT_PRIMARY, now);
    } else if (now - p->last_ping >= primary_ping_ms(c)) {
      /* Spare: the super node may answer every other one (wire.h), which
       * our 3-interval silence bound allows with an interval to spare. */
      WireMsg ping = {.type = MSG_PING};
      ping.u.ping = now | WIRE_PING_SPARE;
      send_msg(c, LEAF_SLOT_PRIMARY, &ping);
      p->last_ping = now;
    }
  }
  if (w->state == LS_WAIT && now >= w->redial_at) {
    w->state = LS_IDLE;
    reconcile(c, now);
  }
  if (c->watch_due && now >= c->watch_due)
    reconcile(c, now);
  if (w->state == LS_OPEN) {
    if (now - w->last_rx >= 3 * c->cfg.keepalive_ms) {
      LeafAction a = {.kind = LEAF_ACT_CLOSE,
                      .slot = LEAF_SLOT_WATCH,
                      .reason = "backup silent for 3 keepalive intervals"};
      push(c, a);
      leaf_core_disconnected(c, LEAF_SLOT_WATCH, now);
    } else {
      if (now - w->last_ping >= c->cfg.keepalive_ms) {
        WireMsg ping = {.type = MSG_PING};
        ping.u.ping = now | WIRE_PING_SPARE; /* as the primary's */
        send_msg(c, LEAF_SLOT_WATCH, &ping);
        w->last_ping = now;
      }
      if (w->admitted && c->told_ok != leader_ok(c))
        tell_backup(c, now);
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
  const Slot *p = &c->slot[LEAF_SLOT_PRIMARY], *w = &c->slot[LEAF_SLOT_WATCH];
  if (p->state == LS_WAIT)
    t = MIN(t, p->redial_at);
  if (p->state == LS_OPEN)
    t = MIN(t, MIN(p->last_ping + primary_ping_ms(c), p->last_rx + primary_dead_ms(c)));
  if (w->state == LS_WAIT)
    t = MIN(t, w->redial_at);
  if (w->state == LS_OPEN) {
    t = MIN(t, MIN(w->last_ping + c->cfg.keepalive_ms, w->last_rx + 3 * c->cfg.keepalive_ms));
    if (w->admitted && c->told_ok != leader_ok(c))
      t = 0; /* tell the backup now */
  }
  if (c->probe_at)
    t = MIN(t, c->probe_at + probe_ms(c));
  if (c->watch_due)
    t = MIN(t, c->watch_due);
  if (claim_pending(c))
    t = MIN(t, c->term_since + LEAF_CLAIM_MS);
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
  s->seen = g_hash_table_new_full(hit_key_hash, hit_key_equal, g_free, NULL);
  g_hash_table_insert(c->searches, GUINT_TO_POINTER(id), s);
  size_t len = strlen(text);
  if (!leader_ok(c)) {
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
  send_msg(c, LEAF_SLOT_PRIMARY, &m);
  return id;
}

void leaf_core_set_keepalive(LeafCore *c, uint64_t ms)
{
  c->cfg.keepalive_ms = ms ? ms : 5000;
}

HostCache *leaf_core_hosts(LeafCore *c)
{
  return c->hosts;
}

void leaf_core_host_status(const LeafCore *c, LeafHostStatus *out)
{
  memset(out, 0, sizeof *out);
  out->refusals = c->refusals;
  out->hosts_heard = c->hosts_heard;
  g_strlcpy(out->last_refusal, c->last_refusal, sizeof out->last_refusal);
}
