/* main.c - canopy-supernode: the glib shell around the super-node core.
 *
 * One GMainContext. Sessions (session.h) carry decrypted messages into the
 * core (sncore.h); the core's actions come back out as sends, closes and
 * dials. The shell owns sockets, timers, the control socket and signals;
 * every protocol decision is the core's.
 */
#include <glib-unix.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "fdlimit.h"
#include "control.h"
#include "cookie.h"
#include "evloop.h"
#include "ice.h"
#include "identity.h"
#include "session.h"
#include "memplan.h"
#include "degree.h"
#include "sncore.h"
#include "metrics.h"
#include "network.h"
#include "preauth.h"
#include "sdnotify.h"
#include "term.h"
#include "wire.h"

/* Default of --listen-backlog: GLib's own is 10, which a few SYNs fill. */
#define SN_LISTEN_BACKLOG 1024

/* TURN credentials handed to leaves live this long; refreshed at half. */
#define TURN_CRED_TTL_S (6 * 3600)
#include "stun_service.h"

typedef struct {
  GMainContext *ctx;
  GMainLoop *loop;
  Identity id;
  SnCore *core;
  GHashTable *sessions; /* conn id -> Session* (one ref) */
  uint64_t next_conn;
  /* The core's next deadline: a slot in the context's timer heap, moved
   * only when the deadline moves (run_actions runs after every message). */
  EvTimer tick;
  GSocketService *listener;
  GSocketClient *dialer;
  ControlServer *ctl;
  char listen[160];
  char id_hex[IDENTITY_HEX_LEN];
  guint max_sessions; /* leaves + links + handshakes in progress */
  uint64_t sessions_refused;

  Preauth *preauth;       /* inbound sessions not yet a leaf, watch or link */
  GSource *preauth_timer; /* its next deadline */
  uint64_t preauth_armed; /* when preauth_timer fires */

  StunService *stun; /* NULL if off, or the default port was taken */
  char *turn_addr;   /* coturn "ip:port", or NULL */
  char *turn_secret; /* its static-auth-secret (never logged) */
  uint64_t turn_issued;
  GSource *turn_refresh;
  char *term_path; /* state-dir/group-term: the highest term seen */
  uint64_t term_saved;
  Cfg *conf;                                  /* the settings (borrowed from main) */
  unsigned max_super_links;                   /* for max_sessions when max-leaves changes */
  Metrics *metrics;                           /* --metrics, or NULL */
  uint64_t bytes_in_closed, bytes_out_closed; /* sessions already gone */
  bool had_leader;
  uint8_t last_leader[32];
  uint64_t failovers; /* the group's leader became another node */
  char *cert_path;    /* with --network-key: our certificate's file */
  uint8_t network_pk[IDENTITY_PK_LEN];
  uint8_t cert[NETCERT_LEN];
  CookieJar *cookies; /* the handshake cookie step (cookie.h) */
  /* Memory (memplan.h): the plan from --memory-limit, the queued-output
   * budget all sessions share, and sessions cut for not reading. */
  SnMemPlan mem;
  Budget *output;      /* leaves and sessions not yet known */
  Budget *link_output; /* super-node links: a part kept for them */
  Budget *input;       /* input buffers of leaves and sessions not yet known */
  uint64_t output_stall_ms;
  uint64_t output_overruns;
  unsigned plan_leaves, plan_handshakes; /* what the plan was made for */
  /* What is in force: the file's values, kept under the plan on reload.
   * status prints these, not the file's. */
  unsigned max_leaves, max_handshakes;
  /* run_actions is draining the core's actions: a CLOSE among them calls
   * on_closed, which must not drain them again (one nested call per
   * closed session overflowed the stack when a leader of 10,000 leaves
   * closed 19,000 sessions on one keepalive tick). */
  bool in_actions;
} Sn;

typedef struct {
  Sn *sn;
  char *dialed; /* outbound: the address we dialed */
  gboolean opened;
  gboolean preauth; /* inbound, still in the pre-auth budget */
} SessCtx;

static void run_actions(Sn *sn);
static void preauth_arm(Sn *sn);

static void rng_fill(uint8_t *out, size_t n, void *ctx)
{
  randombytes_buf(out, n);
}

/* A failover, for the metrics: the group's leader became another node. */
static void note_leader(Sn *sn)
{
  SnGroupStatus g;
  sn_core_group_status(sn->core, &g);
  if (!g.has_leader)
    return;
  if (sn->had_leader && memcmp(sn->last_leader, g.leader, 32) != 0)
    sn->failovers++;
  memcpy(sn->last_leader, g.leader, 32);
  sn->had_leader = true;
}

static void on_tick(EvTimer *t, void *ud)
{
  Sn *sn = ud;
  (void)t;
  sn_core_tick(sn->core, clock_now_ms());
  run_actions(sn);
  note_leader(sn); /* per tick, not per message: it walks the peer table */
}

/* Follows the core's deadline. Per message the deadline rarely moves, and
 * then this is one comparison: a GLib timeout source re-made after every
 * PING was an allocation, a context lock and a list insertion each. */
static void tick_arm(Sn *sn)
{
  uint64_t due = sn_core_next_deadline(sn->core);
  if (due == UINT64_MAX)
    evtimer_disarm(&sn->tick);
  else if (!evtimer_armed(&sn->tick) || evtimer_due(&sn->tick) != due)
    evtimer_arm(&sn->tick, due);
}

/* The peer's address without the port: the key of its shares. */
static void source_of(Session *s, char *out, size_t cap)
{
  g_strlcpy(out, session_remote(s), cap);
  char *colon = strrchr(out, ':');
  if (colon)
    *colon = '\0';
}

static void on_opened(Session *s, void *ud)
{
  SessCtx *sc = ud;
  char hex[IDENTITY_HEX_LEN];
  sc->opened = TRUE;
  hex_encode(session_peer_id(s), IDENTITY_ID_LEN, hex);
  g_info("session %" G_GUINT64_FORMAT " open with %.16s… at %s (%s)", session_id(s), hex,
         session_remote(s), sc->dialed ? "outbound" : "inbound");
  sn_core_open(sc->sn->core, session_id(s), session_peer_id(s), sc->dialed, clock_now_ms());
  if (!sc->dialed) {
    char host[BUDGET_KEY_MAX + 1];
    source_of(s, host, sizeof host);
    sn_core_set_source(sc->sn->core, session_id(s), host);
  }
  run_actions(sc->sn);
}

static void on_message(Session *s, const uint8_t *msg, size_t len, void *ud)
{
  SessCtx *sc = ud;
  Sn *sn = sc->sn;
  sn_core_recv(sn->core, session_id(s), msg, len, clock_now_ms());
  /* Before run_actions, which may close s and free sc. */
  if (sc->preauth && sn_core_settled(sn->core, session_id(s))) {
    sc->preauth = FALSE;
    preauth_release(sn->preauth, session_id(s));
  }
  run_actions(sn);
}

static void on_closed(Session *s, const char *reason, void *ud)
{
  SessCtx *sc = ud;
  Sn *sn = sc->sn;
  uint64_t id = session_id(s);
  g_info("session %" G_GUINT64_FORMAT " (%s) closed: %s", id, session_remote(s), reason);
  if (sc->opened && session_closed_by_peer(s))
    sn_core_closed(sn->core, id, clock_now_ms());
  else if (sc->opened)
    sn_core_closed_here(sn->core, id, clock_now_ms());
  else if (sc->dialed)
    sn_core_dial_failed(sn->core, sc->dialed, clock_now_ms());
  sn->bytes_in_closed += session_bytes_in(s);
  sn->bytes_out_closed += session_bytes_out(s);
  if (sc->preauth)
    preauth_release(sn->preauth, id);
  if (session_output_overrun(s))
    sn->output_overruns++;
  g_hash_table_remove(sn->sessions, &id); /* drops our ref (and sc) */
  run_actions(sn);
}

static const SessionCallbacks session_cb = {on_opened, on_message, on_closed};

static void sessctx_free(SessCtx *sc)
{
  g_free(sc->dialed);
  g_free(sc);
}

/* The sessions table's value, which holds its own key: no key allocated
 * and freed per session, and a lookup's key comparison reads the memory
 * the caller reads next anyway (it was a separate g_malloc'd uint64_t, a
 * cache miss of its own on every message; issue 12). */
typedef struct {
  uint64_t id;
  Session *s;
  SessCtx *sc;
} Entry;

static void entry_free(gpointer p)
{
  Entry *e = p;
  session_unref(e->s);
  sessctx_free(e->sc);
  g_free(e);
}

/* Output bounds: a leaf (or a session not yet known) may queue little, a
 * super-node link more (snapshots go out in pieces below it); links
 * charge a budget of their own (memplan.h), so leaves, wherever from,
 * cannot crowd them out of the total. */
static void set_output_limits(Sn *sn, Session *s, bool link)
{
  char host[BUDGET_KEY_MAX + 1], key[BUDGET_KEY_MAX + 1];
  source_of(s, host, sizeof host);
  g_snprintf(key, sizeof key, "%s%s", link ? "link " : "", host);
  SessionOutputLimits l = {
      .max_queue = link ? sn->mem.link_output : sn->mem.leaf_output,
      .stall_ms = sn->output_stall_ms,
      .budget = link ? sn->link_output : sn->output,
      .source = key,
      .input_budget = link ? NULL : sn->input,
  };
  session_set_output_limits(s, &l);
}

/* id: a fresh ++next_conn. */
static void start_session(Sn *sn, GSocketConnection *conn, uint64_t id, const char *dialed)
{
  SessCtx *sc = g_new0(SessCtx, 1);
  sc->sn = sn;
  sc->dialed = g_strdup(dialed);
  sc->preauth = !dialed;
  Entry *e = g_new0(Entry, 1);
  e->sc = sc;
  e->id = id;
  /* Insert before session_new can call back, so on_closed finds it. */
  g_hash_table_replace(sn->sessions, &e->id, e);
  e->s = session_new(G_IO_STREAM(conn), id, &sn->id, dialed ? CHANNEL_INITIATOR : CHANNEL_RESPONDER,
                     sn->ctx, &session_cb, sc);
  if (!e->s) {
    preauth_release(sn->preauth, id); /* a no-op for a dialed one */
    g_hash_table_remove(sn->sessions, &id);
    if (dialed) /* else the address stays "dialing" and is never tried again */
      sn_core_dial_failed(sn->core, dialed, clock_now_ms());
    return;
  }
  /* Whoever it is, it gets a leaf's small bounds until it proves to be a
   * super node (SN_ACT_LINK_UP); what we dial is one already. */
  set_output_limits(sn, e->s, dialed != NULL);
  /* Priority (a link's close or heartbeat must not queue behind thousands
   * of leaves' input) waits for SN_ACT_LINK_UP: an address anyone can
   * gossip gets none before it proved to be a super node. */
}

/* The remote IP address of conn as bytes (4 or 16); 0 if it has none. */
static size_t remote_ip(GSocketConnection *conn, uint8_t out[16])
{
  size_t len = 0;
  GSocketAddress *ra = g_socket_connection_get_remote_address(conn, NULL);
  if (ra && G_IS_INET_SOCKET_ADDRESS(ra)) {
    GInetAddress *ip = g_inet_socket_address_get_address(G_INET_SOCKET_ADDRESS(ra));
    len = g_inet_address_get_native_size(ip);
    if (len == 4 || len == 16)
      memcpy(out, g_inet_address_to_bytes(ip), len);
    else
      len = 0;
  }
  g_clear_object(&ra);
  return len;
}

static void close_conn(Sn *sn, uint64_t id, const char *reason)
{
  Entry *e = g_hash_table_lookup(sn->sessions, &id);
  if (e && e->s) {
    g_debug("closing session %" G_GUINT64_FORMAT " (%s): %s", id, session_remote(e->s), reason);
    session_close(e->s, reason);
  }
}

/* The pre-auth deadlines (preauth.h): one timer for all of them. */
static gboolean on_preauth_timer(gpointer ud)
{
  Sn *sn = ud;
  uint64_t now = clock_now_ms(), id;
  PreauthDue why;
  while (preauth_due(sn->preauth, now, &id, &why)) {
    Entry *e = g_hash_table_lookup(sn->sessions, &id);
    if (why == PREAUTH_DUE_SILENT) {
      /* Silent for the shell, which is not told of every read: ask. */
      if (e && e->s && session_bytes_in(e->s) > 0) {
        preauth_heard(sn->preauth, id);
        continue;
      }
      preauth_drop_silent(sn->preauth, id);
    }
    if (e)
      e->sc->preauth = FALSE;
    close_conn(sn, id,
               why == PREAUTH_DUE_SILENT ? "silent after connecting"
                                         : "no handshake and HELLO in time");
  }
  preauth_arm(sn);
  return G_SOURCE_REMOVE;
}

static void preauth_arm(Sn *sn)
{
  uint64_t next = preauth_next_deadline(sn->preauth);
  /* Only ever earlier: a timer that fires early just re-arms. */
  if (next != UINT64_MAX && (!sn->preauth_timer || next < sn->preauth_armed)) {
    sn->preauth_armed = next;
    timer_arm(&sn->preauth_timer, sn->ctx, next, on_preauth_timer, sn);
  }
}

static gboolean on_incoming(GSocketService *svc, GSocketConnection *conn, GObject *src, gpointer ud)
{
  Sn *sn = ud;
  /* Every session costs buffers before it has proved anything: a flood of
   * half-open handshakes must not grow memory without bound. The pre-auth
   * budget below is the real gate; this cap only backs it up. */
  if (g_hash_table_size(sn->sessions) >= sn->max_sessions) {
    sn->sessions_refused++;
    g_debug("refusing a connection: %u sessions", g_hash_table_size(sn->sessions));
    g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
    return TRUE;
  }
  uint8_t ip[16];
  size_t iplen = remote_ip(conn, ip);
  uint64_t id = ++sn->next_conn, shed = 0;
  if (!preauth_admit(sn->preauth, id, ip, iplen, clock_now_ms(), &shed)) {
    g_debug("refusing a connection: over the pre-auth budget of its address or prefix");
    g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
    return TRUE;
  }
  if (shed) {
    Entry *v = g_hash_table_lookup(sn->sessions, &shed);
    if (v)
      v->sc->preauth = FALSE; /* preauth_admit took it off the books */
    close_conn(sn, shed, "pre-auth budget full: making room for another prefix");
  }
  start_session(sn, conn, id, NULL);
  preauth_arm(sn);
  return TRUE;
}

typedef struct {
  Sn *sn;
  char *addr;
} Dial;

static void on_dialed(GObject *src, GAsyncResult *res, gpointer ud)
{
  Dial *d = ud;
  GError *err = NULL;
  GSocketConnection *conn = g_socket_client_connect_to_host_finish(G_SOCKET_CLIENT(src), res, &err);
  if (!conn) {
    g_info("dial %s failed: %s", d->addr, err->message);
    g_error_free(err);
    sn_core_dial_failed(d->sn->core, d->addr, clock_now_ms());
  } else {
    start_session(d->sn, conn, ++d->sn->next_conn, d->addr);
    g_object_unref(conn);
  }
  run_actions(d->sn);
  g_free(d->addr);
  g_free(d);
}

static Session *find_session(Sn *sn, uint64_t id)
{
  Entry *e = g_hash_table_lookup(sn->sessions, &id);
  return e ? e->s : NULL;
}

/* Tells a leaf where to find STUN (our own UDP port) and, with a TURN
 * server configured, hands it time-limited REST-API credentials for it
 * (coturn's use-auth-secret scheme, named after the leaf's node id). */
static void send_nat_info(Sn *sn, uint64_t conn, const uint8_t leaf_id[32])
{
  Entry *e = g_hash_table_lookup(sn->sessions, &conn);
  if (!e)
    return;
  char name[IDENTITY_HEX_LEN];
  hex_encode(leaf_id, IDENTITY_ID_LEN, name);
  char *user = NULL, *pass = NULL;
  guint64 expiry = 0;
  WireMsg m = {.type = MSG_NAT_INFO};
  m.u.nat.stun_port = sn->stun ? stun_service_port(sn->stun) : 0;
  if (sn->turn_addr && sn->turn_secret) {
    expiry = clock_unix_s() + TURN_CRED_TTL_S;
    ice_turn_credentials(sn->turn_secret, name, expiry, &user, &pass);
    m.u.nat.turn_addr = wire_str(sn->turn_addr, strlen(sn->turn_addr));
    m.u.nat.turn_user = wire_str(user, strlen(user));
    m.u.nat.turn_pass = wire_str(pass, strlen(pass));
    m.u.nat.turn_expiry = expiry;
    sn->turn_issued++;
  }
  Buf b;
  buf_init(&b);
  if (wire_encode(&m, &b))
    session_send(e->s, b.data, b.len);
  buf_free(&b);
  if (pass)
    memset(pass, 0, strlen(pass));
  g_free(user);
  g_free(pass);
}

typedef struct {
  uint64_t conn;
  uint8_t id[32];
} LeafRef;

static void collect_leaf(const uint8_t id[32], uint64_t conn, void *ud)
{
  LeafRef r = {.conn = conn};
  memcpy(r.id, id, 32);
  g_array_append_val((GArray *)ud, r);
}

static gboolean on_turn_refresh(gpointer ud)
{
  Sn *sn = ud;
  /* Collect first: a send may fail and close a session, which must not
   * happen while the core iterates its leaves. */
  GArray *leaves = g_array_new(FALSE, FALSE, sizeof(LeafRef));
  sn_core_foreach_leaf(sn->core, collect_leaf, leaves);
  for (guint i = 0; i < leaves->len; i++) {
    LeafRef *r = &g_array_index(leaves, LeafRef, i);
    send_nat_info(sn, r->conn, r->id);
  }
  g_array_unref(leaves);
  run_actions(sn);
  timer_arm(&sn->turn_refresh, sn->ctx, clock_now_ms() + TURN_CRED_TTL_S * 1000 / 2,
            on_turn_refresh, sn);
  return G_SOURCE_REMOVE;
}

/* A restarted node must never lead a term it has seen (GROUPS.md): the
 * highest term goes to disk as soon as it is known. */
static uint64_t load_term(const char *path)
{
  gchar *text = NULL;
  guint64 t = 0;
  if (g_file_get_contents(path, &text, NULL, NULL))
    g_ascii_string_to_unsigned(g_strstrip(text), 10, 0, G_MAXUINT64, &t, NULL);
  g_free(text);
  return t;
}

static void save_term(Sn *sn)
{
  /* After every batch of actions, so once per message: the term alone,
   * not a whole group status. */
  uint64_t term = sn_core_group_term(sn->core);
  if (!sn->term_path || term <= sn->term_saved)
    return;
  gchar text[32];
  g_snprintf(text, sizeof text, "%" G_GUINT64_FORMAT "\n", term);
  GError *err = NULL;
  if (!g_file_set_contents_full(sn->term_path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                &err)) {
    g_warning("cannot save the group term: %s", err->message);
    g_error_free(err);
    return;
  }
  sn->term_saved = term;
}

static void run_actions(Sn *sn)
{
  SnAction a;
  if (sn->in_actions)
    return; /* the outer call drains what this one would */
  sn->in_actions = true;
  while (sn_core_next_action(sn->core, &a)) {
    Session *s = a.kind == SN_ACT_DIAL ? NULL : find_session(sn, a.conn);
    switch (a.kind) {
    case SN_ACT_SEND:
      if (s)
        session_send(s, a.data, a.len);
      break;
    case SN_ACT_CLOSE:
      if (s) {
        g_info("closing session %" G_GUINT64_FORMAT " (%s): %s", a.conn, session_remote(s),
               a.reason);
        session_close(s, a.reason);
      }
      break;
    case SN_ACT_DIAL: {
      Dial *d = g_new0(Dial, 1);
      d->sn = sn;
      d->addr = g_strdup(a.addr);
      g_debug("dialing %s", a.addr);
      g_socket_client_connect_to_host_async(sn->dialer, a.addr, 0, NULL, on_dialed, d);
      break;
    }
    case SN_ACT_LEAF_UP:
      send_nat_info(sn, a.conn, a.peer);
      break;
    case SN_ACT_LINK_UP:
      if (s) {
        set_output_limits(sn, s, true);
        session_set_priority(s, true);
      }
      break;
    }
    sn_action_clear(&a);
  }
  sn->in_actions = false;
  save_term(sn);
  tick_arm(sn);
}

/* --- control socket -------------------------------------------------------- */

static void add_link(const uint8_t id[32], const char *addr, uint64_t conn, void *ud)
{
  JsonArray *arr = ud;
  JsonObject *o = json_object_new();
  char hex[IDENTITY_HEX_LEN];
  hex_encode(id, 32, hex);
  json_object_set_string_member(o, "id", hex);
  json_object_set_string_member(o, "address", addr);
  json_array_add_object_element(arr, o);
}

/* {"id", "address"} of a node, or null. */
static JsonNode *node_json(bool has, const uint8_t id[32], const char *addr)
{
  JsonNode *n = json_node_new(JSON_NODE_NULL);
  if (!has)
    return n;
  char hex[IDENTITY_HEX_LEN];
  hex_encode(id, 32, hex);
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", hex);
  json_object_set_string_member(o, "address", addr);
  json_node_init_object(n, o);
  json_object_unref(o);
  return n;
}

static void add_bytes(gpointer key, gpointer value, gpointer ud)
{
  const Entry *e = value;
  uint64_t *b = ud;
  if (e->s) {
    b[0] += session_bytes_in(e->s);
    b[1] += session_bytes_out(e->s);
  }
}

static uint64_t cookie_clock(void *ud)
{
  return clock_now_ms();
}

/* The cookie step's thresholds, from the settings. */
static CookieConfig cookie_config(Cfg *conf)
{
  return (CookieConfig){
      .max_pending = (unsigned)cfg_get_int(conf, "handshake-cookie-pending"),
      .max_rate = (unsigned)cfg_get_int(conf, "handshake-cookie-rate"),
      .max_abandoned = (unsigned)cfg_get_int(conf, "handshake-cookie-abandoned"),
      .difficulty = (unsigned)cfg_get_int(conf, "handshake-puzzle-bits"),
  };
}

/* One scrape of /metrics: the core's counters and the shell's own. */
static void fill_metrics(MetricsWriter *w, void *ud)
{
  Sn *sn = ud;
  CookieStats cs;
  cookie_jar_stats(sn->cookies, &cs);
  note_leader(sn);
  SnGroupStatus g;
  sn_core_group_status(sn->core, &g);
  uint64_t bytes[2] = {sn->bytes_in_closed, sn->bytes_out_closed};
  g_hash_table_foreach(sn->sessions, add_bytes, bytes);
  MetricsExtra x = {
      .sessions = g_hash_table_size(sn->sessions),
      .sessions_refused = sn->sessions_refused,
      .stun_requests = sn->stun ? stun_service_requests(sn->stun) : 0,
      .stun_dropped = sn->stun ? stun_service_dropped(sn->stun) : 0,
      .turn_credentials_issued = sn->turn_issued,
      .bytes_in = bytes[0],
      .bytes_out = bytes[1],
      .failovers = sn->failovers,
      .handshake_cookies_sent = cs.challenges_sent,
      .handshake_cookies_accepted = cs.cookies_accepted,
      .handshake_cookies_refused = cs.cookies_refused,
      .handshakes_pending = cs.pending,
      .handshake_cookie_step = cs.loaded,
      .handshake_cookie_prefixes = cs.prefixes_held,
      .output_queued = budget_used(sn->output) + budget_used(sn->link_output),
      .output_refused = budget_refused(sn->output) + budget_refused(sn->link_output),
      .output_overruns = sn->output_overruns,
      .memory_limit = sn->mem.limit,
  };
  metrics_fill_supernode(w, sn_core_stats(sn->core), &g, &x);
  const PreauthStats *pa = preauth_stats(sn->preauth);
  metrics_gauge(w, "handshakes", "Inbound connections not yet a leaf, a watch or a link.",
                preauth_count(sn->preauth));
  static const char *const why[][3] = {
      {"reason", "address", NULL}, {"reason", "prefix", NULL}, {"reason", "full", NULL}};
  const uint64_t refused[] = {pa->refused_addr, pa->refused_prefix, pa->refused_full};
  for (size_t i = 0; i < G_N_ELEMENTS(refused); i++)
    metrics_counter_labels(w, "preauth_refused",
                           "Inbound connections refused by the pre-auth budget, by cap.", why[i],
                           refused[i]);
  metrics_counter(w, "preauth_shed", "Pre-auth connections closed to make room for another prefix.",
                  pa->shed);
  metrics_counter(w, "preauth_silent", "Inbound connections closed for sending nothing in time.",
                  pa->silent);
  metrics_counter(w, "preauth_timeouts",
                  "Inbound connections closed without handshake and HELLO in time.", pa->timed_out);
}

/* The address book (supernode/mesh.h): how full, how much of it proven. */
static void add_address_book(JsonObject *o, const SnCore *core)
{
  MeshStats ms;
  sn_core_mesh_stats(core, &ms);
  JsonObject *b = json_object_new();
  json_object_set_int_member(b, "size", ms.size);
  json_object_set_int_member(b, "verified", ms.verified);
  json_object_set_int_member(b, "evicted", (gint64)ms.evicted);
  json_object_set_int_member(b, "refused", (gint64)ms.refused);
  json_object_set_int_member(b, "probes_ok", (gint64)ms.probes_ok);
  json_object_set_int_member(b, "probes_failed", (gint64)ms.probes_bad);
  json_object_set_object_member(o, "address_book", b);
}
static void on_control(ControlClient *cl, JsonObject *req, void *ud)
{
  Sn *sn = ud;
  const char *cmd = json_object_get_string_member_with_default(req, "cmd", "");
  if (strcmp(cmd, "stats") != 0 && strcmp(cmd, "status") != 0) {
    control_fail(cl, "unknown command");
    return;
  }
  const SnStats *st = sn_core_stats(sn->core);
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "id", sn->id_hex);
  char pk_hex[IDENTITY_PK_LEN * 2 + 1];
  hex_encode(sn->id.pk, IDENTITY_PK_LEN, pk_hex);
  json_object_set_string_member(o, "public_key", pk_hex);
  if (sn->cert_path) {
    char net_hex[IDENTITY_PK_LEN * 2 + 1];
    hex_encode(sn->network_pk, IDENTITY_PK_LEN, net_hex);
    json_object_set_string_member(o, "network", net_hex);
    json_object_set_int_member(o, "network_cert_expires",
                               (gint64)netcert_not_after(sn->cert, sizeof sn->cert));
  }
  json_object_set_string_member(o, "listen", sn->listen);
  json_object_set_int_member(o, "queries_received", (gint64)st->queries_received);
  json_object_set_int_member(o, "queries_handled", (gint64)st->queries_handled);
  json_object_set_int_member(o, "queries_forwarded", (gint64)st->queries_forwarded);
  json_object_set_int_member(o, "queries_duplicate", (gint64)st->queries_duplicate);
  json_object_set_int_member(o, "queries_throttled", (gint64)st->queries_throttled);
  json_object_set_int_member(o, "hits_sent", (gint64)st->hits_sent);
  json_object_set_int_member(o, "hits_relayed", (gint64)st->hits_relayed);
  json_object_set_int_member(o, "hits_dropped", (gint64)st->hits_dropped);
  json_object_set_int_member(o, "malformed", (gint64)st->malformed);
  json_object_set_int_member(o, "sessions_opened", (gint64)st->sessions_opened);
  json_object_set_int_member(o, "entries_rejected", (gint64)st->entries_rejected);
  json_object_set_int_member(o, "leaves", st->leaves);
  json_object_set_int_member(o, "links", st->links);
  json_object_set_int_member(o, "index_entries", (gint64)st->index_entries);
  json_object_set_int_member(o, "index_bytes", (gint64)st->index_bytes);
  json_object_set_int_member(o, "index_bytes_max", (gint64)sn->mem.index_bytes);
  json_object_set_int_member(o, "entries_over_share", (gint64)st->entries_over_share);
  json_object_set_int_member(o, "publish_throttled", (gint64)st->publish_throttled);
  /* Leaves' and links' budgets together (memplan.h). */
  json_object_set_int_member(o, "output_queued",
                             (gint64)(budget_used(sn->output) + budget_used(sn->link_output)));
  json_object_set_int_member(o, "output_queued_max",
                             (gint64)(budget_total(sn->output) + budget_total(sn->link_output)));
  json_object_set_int_member(
      o, "output_refused", (gint64)(budget_refused(sn->output) + budget_refused(sn->link_output)));
  json_object_set_int_member(o, "output_overruns", (gint64)sn->output_overruns);
  json_object_set_int_member(o, "memory_limit", (gint64)sn->mem.limit);
  json_object_set_int_member(o, "sessions", g_hash_table_size(sn->sessions));
  json_object_set_int_member(o, "sessions_refused", (gint64)sn->sessions_refused);
  const PreauthStats *pa = preauth_stats(sn->preauth);
  json_object_set_int_member(o, "handshakes", preauth_count(sn->preauth));
  json_object_set_int_member(o, "preauth_refused", (gint64)preauth_refused(sn->preauth));
  json_object_set_int_member(o, "preauth_shed", (gint64)pa->shed);
  json_object_set_int_member(o, "preauth_silent", (gint64)pa->silent);
  json_object_set_int_member(o, "preauth_timeouts", (gint64)pa->timed_out);
  CookieStats cs;
  cookie_jar_stats(sn->cookies, &cs);
  json_object_set_int_member(o, "handshake_cookies_sent", (gint64)cs.challenges_sent);
  json_object_set_int_member(o, "handshake_cookies_accepted", (gint64)cs.cookies_accepted);
  json_object_set_int_member(o, "handshake_cookies_refused", (gint64)cs.cookies_refused);
  json_object_set_int_member(o, "handshakes_pending", cs.pending);
  json_object_set_int_member(o, "handshakes_abandoned", (gint64)cs.abandoned);
  json_object_set_boolean_member(o, "handshake_cookie_step", cs.loaded);
  json_object_set_int_member(o, "handshake_cookie_prefixes", cs.prefixes_held);
  json_object_set_int_member(o, "handshake_cookie_prefix_holds", (gint64)cs.prefix_holds);
  json_object_set_int_member(o, "signals_relayed", (gint64)st->signals_relayed);
  json_object_set_int_member(o, "signals_delivered", (gint64)st->signals_delivered);
  json_object_set_int_member(o, "signals_dropped", (gint64)st->signals_dropped);
  json_object_set_int_member(o, "links_refused", (gint64)st->links_refused);
  json_object_set_int_member(o, "link_refusals_sent", (gint64)st->refusals_sent);
  json_object_set_int_member(o, "link_refusals_received", (gint64)st->refusals_received);
  json_object_set_int_member(o, "links_shed", (gint64)st->links_shed);
  json_object_set_int_member(o, "links_trimmed", (gint64)st->links_trimmed);
  json_object_set_int_member(o, "links_evicted", (gint64)st->links_evicted);
  json_object_set_int_member(o, "links_made", (gint64)st->links_made);
  json_object_set_int_member(o, "queries_reforwarded", (gint64)st->queries_reforwarded);
  json_object_set_int_member(o, "stun_requests",
                             sn->stun ? (gint64)stun_service_requests(sn->stun) : 0);
  json_object_set_int_member(o, "stun_dropped",
                             sn->stun ? (gint64)stun_service_dropped(sn->stun) : 0);
  json_object_set_int_member(o, "turn_credentials_issued", (gint64)sn->turn_issued);
  JsonArray *links = json_array_new();
  sn_core_foreach_link(sn->core, add_link, links);
  json_object_set_array_member(o, "neighbours", links);
  add_address_book(o, sn->core);
  SnGroupStatus g;
  sn_core_group_status(sn->core, &g);
  static const char *roles[] = {"joining", "leader", "backup", "standby"};
  json_object_set_string_member(o, "group", g.group);
  json_object_set_string_member(o, "role", roles[g.role]);
  json_object_set_int_member(o, "term", (gint64)g.term);
  /* Terms are node-unique (GROUPS.md): elections << 32 | the electing
   * node's id tag. The count alone reads better. */
  json_object_set_int_member(o, "election", (gint64)(g.term >> 32));
  json_object_set_member(o, "leader", node_json(g.has_leader, g.leader, g.leader_addr));
  json_object_set_member(o, "backup", node_json(g.has_backup, g.backup, g.backup_addr));
  json_object_set_int_member(o, "members", g.members);
  json_object_set_int_member(o, "watchers", g.watchers);
  json_object_set_int_member(o, "records", g.records);
  json_object_set_int_member(o, "replication_lag_ops", (gint64)g.repl_lag_ops);
  json_object_set_int_member(o, "replication_lag_ms", (gint64)g.repl_lag_ms);
  json_object_set_int_member(o, "replication_applied", (gint64)g.repl_applied);
  json_object_set_int_member(o, "takeovers", (gint64)g.takeovers);
  json_object_set_int_member(o, "stepdowns", (gint64)g.stepdowns);
  json_object_set_int_member(o, "group_claims_refused", (gint64)g.claims_refused);
  json_object_set_int_member(o, "watchers_refused", (gint64)g.watchers_refused);
  json_object_set_int_member(o, "watcher_probes", (gint64)g.probes);
  /* The reloadable settings in force, so that a reload can be seen. */
  JsonObject *conf = cfg_to_json(sn->conf, TRUE);
  /* A reload cannot raise these past the memory plan: the values in force
   * may be lower than the file's. */
  json_object_set_int_member(conf, "max-leaves", sn->max_leaves);
  json_object_set_int_member(conf, "max-handshakes", sn->max_handshakes);
  json_object_set_object_member(o, "config", conf);
  json_object_set_boolean_member(o, "done", TRUE);
  control_send(cl, o);
  control_finish(cl);
}

/* --- command line ------------------------------------------------------------ */

/* Logs how long our certificate has left when that is under two weeks:
 * past it, no super node of the network links to us. */
static void warn_expiry(const Sn *sn)
{
  uint64_t end = netcert_not_after(sn->cert, sizeof sn->cert), now = clock_unix_s();
  if (end < now + 14 * 86400)
    g_warning("the network certificate %s expires in %" G_GUINT64_FORMAT
              " days: renew it (canopy-supernode network-key certify), then reload",
              sn->cert_path, end > now ? (end - now) / 86400 : 0);
}

/* SIGHUP: a renewed certificate (the file, or another --network-cert) is
 * taken if it admits us; otherwise the one in use stays. */
static void reload_cert(Sn *sn)
{
  if (!sn->cert_path)
    return;
  const char *named = cfg_get_str(sn->conf, "network-cert");
  const char *path = named ? named : sn->cert_path;
  uint8_t cert[NETCERT_LEN];
  char msg[256];
  if (!network_load_cert(path, sn->network_pk, sn->id.id, cert, msg, sizeof msg)) {
    g_warning("network certificate not reloaded (%s still in use): %s", sn->cert_path, msg);
    return;
  }
  if (strcmp(path, sn->cert_path) != 0) {
    gchar *p = g_strdup(path);
    g_free(sn->cert_path);
    sn->cert_path = p;
  }
  if (memcmp(cert, sn->cert, sizeof cert) != 0) {
    memcpy(sn->cert, cert, sizeof cert);
    sn_core_set_cert(sn->core, sn->cert, sizeof sn->cert);
    g_message("network certificate reloaded from %s (valid until unix time %" G_GUINT64_FORMAT ")",
              sn->cert_path, netcert_not_after(cert, sizeof cert));
  }
  warn_expiry(sn);
}

/* The pre-auth budget from the settings, and the cap on all sessions that
 * backs it up: leaves, a watch session per leaf, links, and the pre-auth
 * ones. A full pre-auth budget never keeps a leaf out: leaves are under
 * --max-leaves, counted apart. */
/* The pre-auth budget and the backstop on all sessions: leaves and watch
 * sessions (one per leaf, finding 13) up to max_leaves each, links, and
 * max_handshakes not yet any of these. The memory plan counts the same. */
static void set_budgets(Sn *sn, unsigned max_leaves, unsigned max_handshakes)
{
  PreauthLimits lim = {
      .max_total = max_handshakes,
      .max_per_addr = (unsigned)cfg_get_int(sn->conf, "max-handshakes-per-address"),
      .max_per_prefix = (unsigned)cfg_get_int(sn->conf, "max-handshakes-per-prefix"),
      .silent_ms = (uint64_t)cfg_get_int(sn->conf, "silent-timeout-ms"),
      .timeout_ms = (uint64_t)cfg_get_int(sn->conf, "handshake-timeout-ms"),
  };
  preauth_set_limits(sn->preauth, &lim);
  guint64 cap = 2 * (guint64)max_leaves + sn->max_super_links + lim.max_total;
  sn->max_sessions = (guint)MIN(cap, G_MAXUINT);
  if (sn->preauth_timer) { /* the deadlines may have moved either way */
    sn->preauth_armed = clock_now_ms();
    timer_arm(&sn->preauth_timer, sn->ctx, sn->preauth_armed, on_preauth_timer, sn);
  }
}

/* SIGHUP (systemctl reload): re-reads the --config file and applies the
 * reloadable settings; cfg_reload logs what changed and refuses a bad file.
 * Fewer links or leaves than in place close nothing: the new limits apply
 * to the links dialed and the leaves accepted from now on. */
static gboolean on_hup(gpointer ud)
{
  Sn *sn = ud;
  gboolean changed = FALSE;
  gboolean reloaded = cfg_reload(sn->conf, &changed);
  /* The certificate file is read again whatever became of the config file
   * (there may be none): renewing it in place and reloading is the
   * operator's whole job. */
  reload_cert(sn);
  if (!reloaded || !changed)
    return G_SOURCE_CONTINUE;
  log_setup(cfg_get_str(sn->conf, "log-level"), NULL);
  unsigned max_leaves = (unsigned)cfg_get_int(sn->conf, "max-leaves");
  unsigned max_handshakes = (unsigned)cfg_get_int(sn->conf, "max-handshakes");
  /* The memory plan (and every budget in it) was made at start for so
   * many sessions (leaves, watches, links and handshakes): more would
   * break its arithmetic. */
  if (max_leaves > sn->plan_leaves) {
    g_warning("max-leaves %u needs a restart (the memory plan was made for %u); keeping %u",
              max_leaves, sn->plan_leaves, sn->plan_leaves);
    max_leaves = sn->plan_leaves;
  }
  if (max_handshakes > sn->plan_handshakes) {
    g_warning("max-handshakes %u needs a restart (the memory plan was made for %u); keeping %u",
              max_handshakes, sn->plan_handshakes, sn->plan_handshakes);
    max_handshakes = sn->plan_handshakes;
  }
  sn_core_set_limits(sn->core, (unsigned)cfg_get_int(sn->conf, "degree"), max_leaves,
                     (uint64_t)cfg_get_int(sn->conf, "keepalive-ms"));
  set_budgets(sn, max_leaves, max_handshakes);
  sn->max_leaves = max_leaves;
  sn->max_handshakes = max_handshakes;
  CookieConfig cc = cookie_config(sn->conf);
  cookie_jar_set_config(sn->cookies, &cc);
  sn_core_set_query_rate(sn->core, (double)cfg_get_int(sn->conf, "query-rate"), clock_now_ms());
  run_actions(sn); /* the tick's deadline may have moved */
  return G_SOURCE_CONTINUE;
}

static gboolean on_signal(gpointer ud)
{
  g_main_loop_quit(ud);
  return G_SOURCE_CONTINUE;
}

static gboolean listen_on(Sn *sn, const char *hostport, GError **error)
{
  gchar *host = NULL;
  guint16 port = 0;
  gboolean ok = FALSE;
  GSocketConnectable *na = g_network_address_parse(hostport, 0, error);
  if (!na)
    return FALSE;
  host = g_strdup(g_network_address_get_hostname(G_NETWORK_ADDRESS(na)));
  port = g_network_address_get_port(G_NETWORK_ADDRESS(na));
  g_object_unref(na);
  GSocketAddress *sa = g_inet_socket_address_new_from_string(host, port);
  if (!sa || port == 0) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "--listen %s: expected a numeric IP address and a port", hostport);
    goto out;
  }
  sn->listener = g_socket_service_new();
  g_socket_listener_set_backlog(G_SOCKET_LISTENER(sn->listener),
                                (int)cfg_get_int(sn->conf, "listen-backlog"));
  ok = g_socket_listener_add_address(G_SOCKET_LISTENER(sn->listener), sa, G_SOCKET_TYPE_STREAM,
                                     G_SOCKET_PROTOCOL_TCP, NULL, NULL, error);
  if (ok) {
    g_signal_connect(sn->listener, "incoming", G_CALLBACK(on_incoming), sn);
    g_socket_service_start(sn->listener);
  }
out:
  g_clear_object(&sa);
  g_free(host);
  return ok;
}

/* Every setting: --KEY on the command line, KEY in the [supernode] section
 * of --config. canopy-supernode(8) and deploy/config/supernode.conf
 * describe them too. */
static const CfgDef sn_settings[] = {
    {.key = "listen",
     .type = CFG_ADDR,
     .arg = "HOST:PORT",
     .help = "Address for leaves and super nodes (required)"},
    {.key = "advertise",
     .type = CFG_HOSTPORT,
     .arg = "HOST:PORT",
     .help = "Address other super nodes should dial (default: --listen)"},
    {.key = "peer",
     .type = CFG_HOSTPORT,
     .flags = CFG_LIST,
     .arg = "HOST:PORT",
     .help = "Known super node to join through"},
    {.key = "no-discovery",
     .type = CFG_BOOL,
     .def = "false",
     .help = "Keep exactly the --peer links; learn no addresses"},
    {.key = "degree",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 1,
     .max = 64,
     .def = "4",
     .arg = "N",
     .help = "Super-node links to aim for"},
    {.key = "keepalive-ms",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 100,
     .max = 600000,
     .def = "5000",
     .arg = "MS",
     .help = "Keepalive interval; silent peers go after 3"},
    {.key = "max-leaves",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 1,
     .max = G_MAXINT,
     .def = "19000",
     .arg = "N",
     .help = "Leaf sessions accepted (each needs a file descriptor)"},
    /* The pre-auth budget (preauth.h): connections that are not yet a
     * leaf, a watch or a link. */
    {.key = "max-handshakes",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 1,
     .max = 1000000,
     .def = G_STRINGIFY(PREAUTH_MAX_TOTAL),
     .arg = "N",
     .help = "Inbound connections before their HELLO, in all"},
    {.key = "max-handshakes-per-address",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 1,
     .max = 1000000,
     .def = G_STRINGIFY(PREAUTH_MAX_PER_ADDR),
     .arg = "N",
     .help = "Inbound connections before their HELLO, per source address"},
    {.key = "max-handshakes-per-prefix",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 1,
     .max = 1000000,
     .def = G_STRINGIFY(PREAUTH_MAX_PER_PREFIX),
     .arg = "N",
     .help = "Inbound connections before their HELLO, per /24 (IPv4) or /64 (IPv6)"},
    {.key = "silent-timeout-ms",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 100,
     .max = 600000,
     .def = G_STRINGIFY(PREAUTH_SILENT_MS),
     .arg = "MS",
     .help = "Close an inbound connection that sends nothing for this long"},
    {.key = "handshake-timeout-ms",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 100,
     .max = 600000,
     .def = G_STRINGIFY(PREAUTH_TIMEOUT_MS),
     .arg = "MS",
     .help = "Close an inbound connection without handshake and HELLO after this long"},
    {.key = "listen-backlog",
     .type = CFG_INT,
     .min = 1,
     .max = 65535,
     .def = G_STRINGIFY(SN_LISTEN_BACKLOG),
     .arg = "N",
     .help = "Connections the kernel queues for accept (capped by net.core.somaxconn)"},
    {.key = "query-rate",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 1,
     .max = 1000000,
     .def = G_STRINGIFY(SN_QUERY_RATE),
     .arg = "N",
     .help = "Queries handled per second, all leaves and links together, shared fairly "
             "between them"},
    {.key = "memory-limit",
     .type = CFG_INT,
     .min = 64,
     .max = 1 << 22,
     .def = "4096",
     .arg = "MIB",
     .help = "Memory ceiling in MiB; every queue and index budget is derived from it"},
    {.key = "leaf-output-kib",
     .type = CFG_INT,
     .min = 16,
     .max = 8192,
     .def = "256",
     .arg = "KIB",
     .help = "Output a leaf that does not read may have queued before it is cut off"},
    {.key = "output-stall-ms",
     .type = CFG_INT,
     .min = 1000,
     .max = 600000,
     .def = "10000",
     .arg = "MS",
     .help = "A session whose queued output does not move for this long is cut off"},
    {.key = "publish-rate",
     .type = CFG_INT,
     .min = 1,
     .max = 1000000,
     .def = "1000",
     .arg = "N",
     .help = "Entries per second a leaf may publish (after a burst of its whole share)"},
    {.key = "state-dir",
     .type = CFG_PATH,
     .arg = "DIR",
     .help = "Keys and state, created 0700 (required)"},
    {.key = "stun",
     .type = CFG_ADDR,
     .flags = CFG_OFF | CFG_PORT_OPT,
     .arg = "HOST:PORT",
     .help = "UDP address answering STUN (default: the listen host, port 3478; 'off' disables)"},
    {.key = "turn",
     .type = CFG_HOSTPORT,
     .flags = CFG_PORT_OPT,
     .arg = "HOST:PORT",
     .help = "coturn server whose credentials leaves get (a name is resolved at start)"},
    {.key = "network-key",
     .type = CFG_STRING,
     .min = 64,
     .max = 64,
     .arg = "HEX",
     .help = "Public key of the network: link only to super nodes it certified"},
    {.key = "network-cert",
     .type = CFG_PATH,
     .flags = CFG_RELOAD,
     .arg = "FILE",
     .help = "This node's certificate from the network key (default: STATE_DIR/network.cert)"},
    {.key = "turn-secret-file",
     .type = CFG_PATH,
     .arg = "FILE",
     .help = "File holding coturn's static-auth-secret"},
    {.key = "group",
     .type = CFG_STRING,
     .max = WIRE_MAX_GROUP,
     .arg = "NAME",
     .help = "Group to lead or back up, with the super nodes given the same name"},
    {.key = "group-key-file",
     .type = CFG_PATH,
     .arg = "FILE",
     .help = "Secret shared by the group's super nodes; only those proving it are members "
             "(--group needs it, or --network-key)"},
    {.key = "metrics",
     .type = CFG_ADDR,
     .arg = "HOST:PORT",
     .help = "Serve Prometheus metrics at http://HOST:PORT/metrics"},
    {.key = "handshake-cookie-pending",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 0,
     .max = 1000000,
     .def = G_STRINGIFY(COOKIE_DEFAULT_PENDING),
     .arg = "N",
     .help = "Handshakes in progress from which new ones must solve a cookie first (0: always)"},
    {.key = "handshake-cookie-rate",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 0,
     .max = 1000000,
     .def = G_STRINGIFY(COOKIE_DEFAULT_RATE),
     .arg = "N",
     .help = "Handshakes per second from which new ones must solve a cookie first (0: always)"},
    {.key = "handshake-cookie-abandoned",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 0,
     .max = 1000000,
     .def = G_STRINGIFY(COOKIE_DEFAULT_ABANDONED),
     .arg = "N",
     .help = "Unfinished handshakes in a second after which new ones must solve a cookie "
             "first, for 10 s (0: off)"},
    {.key = "handshake-puzzle-bits",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 0,
     .max = COOKIE_MAX_DIFFICULTY,
     .def = G_STRINGIFY(COOKIE_DEFAULT_DIFFICULTY),
     .arg = "BITS",
     .help = "Difficulty of the cookie's puzzle: leading zero bits of a hash"},
    {.key = "log-level",
     .type = CFG_ENUM,
     .flags = CFG_RELOAD,
     .def = "info",
     .choices = "error|warning|info|debug",
     .arg = "LEVEL",
     .help = "Log level"},
    {.key = NULL}};

/* coturn's address as leaves will be told it: libnice wants an IP address,
 * so a host name is resolved here, once, at start (IPv4 first: that is what
 * home leaves can reach). NULL, with err set, if it does not resolve. */
static char *turn_numeric(const char *hostport, GError **err)
{
  GSocketConnectable *na = g_network_address_parse(hostport, 3478, err);
  if (!na)
    return NULL;
  const char *host = g_network_address_get_hostname(G_NETWORK_ADDRESS(na));
  guint16 port = g_network_address_get_port(G_NETWORK_ADDRESS(na));
  char *out = NULL;
  if (g_hostname_is_ip_address(host)) {
    out = g_strdup(hostport);
  } else {
    GResolver *r = g_resolver_get_default();
    GList *addrs = g_resolver_lookup_by_name(r, host, NULL, err);
    GInetAddress *pick = NULL;
    for (GList *l = addrs; l; l = l->next)
      if (!pick || (g_inet_address_get_family(l->data) == G_SOCKET_FAMILY_IPV4 &&
                    g_inet_address_get_family(pick) != G_SOCKET_FAMILY_IPV4))
        pick = l->data;
    if (pick) {
      gchar *ip = g_inet_address_to_string(pick);
      out = strchr(ip, ':') ? g_strdup_printf("[%s]:%u", ip, port)
                            : g_strdup_printf("%s:%u", ip, port);
      g_free(ip);
      g_info("TURN server %s is %s", hostport, out);
    }
    g_resolver_free_addresses(addrs);
    g_object_unref(r);
    if (!out && err && !*err)
      g_set_error(err, G_RESOLVER_ERROR, G_RESOLVER_ERROR_NOT_FOUND, "%s has no address", host);
  }
  g_object_unref(na);
  return out;
}

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "network-key") == 0)
    return network_key_command(argc - 1, argv + 1);
  if (argc > 1 && (strcmp(argv[1], "stats") == 0 || strcmp(argv[1], "status") == 0))
    return control_show("canopy-supernode stats", "stats",
                        "- show a running super node's counters and neighbours", argc - 1,
                        argv + 1);

  Cfg *conf = cfg_new("supernode", sn_settings);
  GOptionContext *oc =
      g_option_context_new("- run a Canopy super node (or: stats --state-dir DIR)");
  g_option_context_set_main_group(oc, cfg_option_group(conf));
  GError *err = NULL;
  int rc = 1;
  Sn sn = {0};
  char **args = argv;
  int nargs = argc;

  int parsed = cfg_parse_args(conf, oc, "canopy-supernode", &nargs, &args);
  if (parsed >= 0) { /* --check-config, --print-config, or an error */
    rc = parsed;
    goto out;
  }
  sn.conf = conf;
  const char *listen = cfg_get_str(conf, "listen"), *advertise = cfg_get_str(conf, "advertise");
  const char *state_dir = cfg_get_str(conf, "state-dir"), *stun = cfg_get_str(conf, "stun");
  const char *turn = cfg_get_str(conf, "turn");
  const char *turn_secret_file = cfg_get_str(conf, "turn-secret-file");
  const char *group = cfg_get_str(conf, "group");
  const char *group_key_file = cfg_get_str(conf, "group-key-file");
  uint8_t group_key[32];
  const char *const *peers = cfg_get_list(conf, "peer");
  gboolean no_discovery = cfg_get_bool(conf, "no-discovery");
  if (!listen || !state_dir) {
    fprintf(stderr, "canopy-supernode: --listen and --state-dir are required (see --help)\n");
    goto out;
  }
  if (nargs > 1) {
    fprintf(stderr, "canopy-supernode: unexpected argument '%s'\n", args[1]);
    goto out;
  }
  if (!log_setup(cfg_get_str(conf, "log-level"), &err) || !statedir_prepare(state_dir, &err)) {
    fprintf(stderr, "canopy-supernode: %s\n", err->message);
    goto out;
  }
  char msg[256];
  if (!crypto_ready() || !identity_load_or_create(state_dir, &sn.id, msg, sizeof msg)) {
    fprintf(stderr, "canopy-supernode: %s\n",
            crypto_ready() ? msg : "libsodium failed to initialise");
    goto out;
  }
  hex_encode(sn.id.id, IDENTITY_ID_LEN, sn.id_hex);
  g_strlcpy(sn.listen, listen, sizeof sn.listen);
  CookieConfig cc = cookie_config(conf);
  sn.cookies = cookie_jar_new(&cc, cookie_clock, NULL);
  if (!sn.cookies) {
    fprintf(stderr, "canopy-supernode: out of memory\n");
    goto out;
  }
  session_set_cookie_jar(sn.cookies);

  sn.ctx = g_main_context_ref_thread_default();
  sn.loop = g_main_loop_new(sn.ctx, FALSE);
  EvLoop *ev = evloop_for_context(sn.ctx);
  if (!ev) {
    fprintf(stderr, "canopy-supernode: no event loop (epoll)\n");
    goto out;
  }
  evtimer_init(&sn.tick, ev, on_tick, &sn);
  sn.sessions = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, entry_free);
  sn.dialer = g_socket_client_new();
  /* Peers are dialed directly: no proxy (and no desktop settings lookup). */
  g_socket_client_set_enable_proxy(sn.dialer, FALSE);
  g_socket_client_set_timeout(sn.dialer, 5);
  /* Dial from the address we listen on when it is a specific one: a
   * multi-homed server's links then all use one address (and a firewall
   * rule on it covers them all). */
  GSocketConnectable *lna = g_network_address_parse(listen, 0, NULL);
  GInetAddress *lip =
      lna ? g_inet_address_new_from_string(g_network_address_get_hostname(G_NETWORK_ADDRESS(lna)))
          : NULL;
  if (lip && !g_inet_address_get_is_any(lip)) {
    GSocketAddress *local = g_inet_socket_address_new(lip, 0);
    g_socket_client_set_local_address(sn.dialer, local);
    g_object_unref(local);
  }
  g_clear_object(&lip);
  g_clear_object(&lna);
  if (!listen_on(&sn, listen, &err)) {
    fprintf(stderr, "canopy-supernode: cannot listen on %s: %s\n", listen, err->message);
    goto out;
  }
  if (stun && strcmp(stun, "off") == 0) {
    g_info("not answering STUN (--stun off)");
  } else if (stun) {
    sn.stun = stun_service_new(stun, sn.ctx, &err);
    if (!sn.stun) {
      fprintf(stderr, "canopy-supernode: cannot answer STUN on %s: %s\n", stun, err->message);
      goto out;
    }
  } else {
    /* The default (listen host, port 3478) is best effort: another super
     * node on this host may hold it already. */
    GSocketConnectable *na = g_network_address_parse(listen, 0, NULL);
    if (na)
      sn.stun =
          stun_service_new(g_network_address_get_hostname(G_NETWORK_ADDRESS(na)), sn.ctx, &err);
    if (!sn.stun)
      g_warning("not answering STUN: %s", err ? err->message : "no listen host");
    g_clear_error(&err);
    g_clear_object(&na);
  }
  if (!turn != !turn_secret_file) {
    fprintf(stderr, "canopy-supernode: --turn and --turn-secret-file go together\n");
    goto out;
  }
  if (turn_secret_file) {
    gchar *secret = NULL;
    if (!g_file_get_contents(turn_secret_file, &secret, NULL, &err)) {
      fprintf(stderr, "canopy-supernode: --turn-secret-file: %s\n", err->message);
      goto out;
    }
    g_strstrip(secret);
    if (!*secret) {
      fprintf(stderr, "canopy-supernode: %s holds no secret\n", turn_secret_file);
      g_free(secret);
      goto out;
    }
    sn.turn_secret = secret;
    sn.turn_addr = turn_numeric(turn, &err);
    if (!sn.turn_addr) {
      fprintf(stderr, "canopy-supernode: --turn %s: %s\n", turn, err->message);
      goto out;
    }
  }
  if (sn.turn_secret)
    timer_arm(&sn.turn_refresh, sn.ctx, clock_now_ms() + TURN_CRED_TTL_S * 1000 / 2,
              on_turn_refresh, &sn);

  gchar *ctl_path = g_build_filename(state_dir, CONTROL_SOCKET_NAME, NULL);
  sn.ctl = control_server_new(ctl_path, sn.ctx, on_control, &sn, &err);
  g_free(ctl_path);
  if (!sn.ctl) {
    fprintf(stderr, "canopy-supernode: control socket: %s\n", err->message);
    goto out;
  }

  SnConfig cfg;
  sn_config_defaults(&cfg);
  cfg.advertise = advertise ? advertise : listen;
  cfg.discovery = !no_discovery;
  cfg.target_degree = (unsigned)cfg_get_int(conf, "degree");
  /* Session and memory bounds plan for the most links degree.h allows
   * (what a SIGHUP raises --degree to is planned for at the next start). */
  cfg.max_super_links = degree_hard_max(cfg.target_degree, cfg.max_super_links);
  cfg.keepalive_ms = (uint64_t)cfg_get_int(conf, "keepalive-ms");
  cfg.max_leaves = (unsigned)cfg_get_int(conf, "max-leaves");
  cfg.query_rate = cfg.query_burst = (double)cfg_get_int(conf, "query-rate");
  cfg.group = group;
  if (group && *group) {
    if (strlen(group) > WIRE_MAX_GROUP || !wire_utf8_ok(group, strlen(group))) {
      fprintf(stderr, "canopy-supernode: --group: 1..%d bytes of UTF-8\n", WIRE_MAX_GROUP);
      goto out;
    }
    if (group_key_file) {
      /* Any text: its hash is the key (like --turn-secret-file, never on
       * the command line, never logged). */
      gchar *secret = NULL;
      gsize len = 0;
      if (!g_file_get_contents(group_key_file, &secret, &len, &err)) {
        fprintf(stderr, "canopy-supernode: --group-key-file: %s\n", err->message);
        goto out;
      }
      g_strstrip(secret);
      len = strlen(secret);
      if (len < 16) {
        fprintf(stderr, "canopy-supernode: %s: the group secret needs at least 16 characters\n",
                group_key_file);
        sodium_memzero(secret, len);
        g_free(secret);
        goto out;
      }
      crypto_generichash(group_key, sizeof group_key, (const uint8_t *)secret, len, NULL, 0);
      sodium_memzero(secret, len);
      g_free(secret);
      cfg.group_key = group_key;
    } else if (!cfg_get_str(conf, "network-key")) {
      /* Without a proof any super node saying the name would be a member,
       * and one of them could take the group over (issue 11). */
      fprintf(stderr,
              "canopy-supernode: --group %s: members must prove membership: give "
              "--group-key-file FILE (a secret shared by the group's super nodes) or "
              "--network-key\n",
              group);
      goto out;
    }
    sn.term_path = g_build_filename(state_dir, "group-term", NULL);
    cfg.term_floor = sn.term_saved = load_term(sn.term_path);
    if (!term_believable(sn.term_saved, clock_unix_s()))
      sn.term_saved = 0; /* poison (the core drops it): the next save overwrites it */
  }
  const char *network_key = cfg_get_str(conf, "network-key");
  if (network_key) {
    if (!hex_decode(network_key, sn.network_pk, sizeof sn.network_pk)) {
      fprintf(stderr, "canopy-supernode: --network-key: '%s' is not 64 hex digits\n", network_key);
      goto out;
    }
    sn.cert_path = cfg_get_str(conf, "network-cert")
                       ? g_strdup(cfg_get_str(conf, "network-cert"))
                       : g_build_filename(state_dir, NETWORK_CERT_FILE, NULL);
    if (!network_load_cert(sn.cert_path, sn.network_pk, sn.id.id, sn.cert, msg, sizeof msg)) {
      fprintf(stderr, "canopy-supernode: --network-cert: %s\n", msg);
      goto out;
    }
    warn_expiry(&sn);
    cfg.network_pk = sn.network_pk;
  }
  cfg.unix_now = clock_unix_s; /* certificates, and believable group terms */
  sn.max_super_links = cfg.max_super_links;
  sn.preauth = preauth_new(NULL);
  sn.plan_leaves = cfg.max_leaves;
  sn.plan_handshakes = (unsigned)cfg_get_int(conf, "max-handshakes");
  set_budgets(&sn, sn.plan_leaves, sn.plan_handshakes);
  sn.max_leaves = sn.plan_leaves;
  sn.max_handshakes = sn.plan_handshakes;
  if (!sn_mem_plan((uint64_t)cfg_get_int(conf, "memory-limit"), sn.max_sessions, sn.max_super_links,
                   (uint64_t)cfg_get_int(conf, "leaf-output-kib") << 10, cfg.max_entries_per_leaf,
                   &sn.mem, msg, sizeof msg)) {
    fprintf(stderr, "canopy-supernode: %s\n", msg);
    goto out;
  }
  sn.output = budget_new(sn.mem.leaves_output, sn.mem.output_share);
  sn.link_output = budget_new(sn.mem.links_output, sn.mem.link_output);
  sn.input = budget_new(sn.mem.input_total, sn.mem.input_share);
  /* A descriptor per session, and a few for ourselves: the leaves, links
   * and handshakes at least (a group's backup adds watch sessions). */
  uint64_t fds = fdlimit_raise(), need = (uint64_t)sn.max_leaves + 16 + sn.max_handshakes + 64;
  if (fds < need)
    g_warning("%" G_GUINT64_FORMAT " file descriptors, %" G_GUINT64_FORMAT
              " needed for max-leaves: raise LimitNOFILE (ulimit -Hn) or lower max-leaves",
              fds, need);
  sn.output_stall_ms = (uint64_t)cfg_get_int(conf, "output-stall-ms");
  cfg.max_index_entries = sn.mem.index_entries;
  cfg.max_index_bytes = sn.mem.index_bytes;
  cfg.max_entries_per_leaf = sn.mem.leaf_entries;
  cfg.max_bytes_per_leaf = sn.mem.leaf_bytes;
  cfg.max_entries_per_source = sn.mem.source_entries;
  cfg.max_bytes_per_source = sn.mem.source_bytes;
  cfg.publish_rate = (double)cfg_get_int(conf, "publish-rate");
  cfg.publish_burst = MAX((double)sn.mem.leaf_entries, cfg.publish_rate);
  /* A link is cut at its own cap (also its address's share of the links'
   * budget). */
  cfg.link_queue_max = sn.mem.link_output;
  g_info("memory: limit %" G_GUINT64_FORMAT " MiB = program %" G_GUINT64_FORMAT
         " + sessions %" G_GUINT64_FORMAT " + output %" G_GUINT64_FORMAT
         " (links %" G_GUINT64_FORMAT ", leaves %" G_GUINT64_FORMAT ") + input %" G_GUINT64_FORMAT
         " + index %" G_GUINT64_FORMAT " (%" G_GUINT64_FORMAT " entries) + slack (MiB)",
         sn.mem.limit >> 20, sn.mem.fixed >> 20, sn.mem.sessions >> 20, sn.mem.output_total >> 20,
         sn.mem.links_output >> 20, sn.mem.leaves_output >> 20, sn.mem.input_total >> 20,
         sn.mem.index_bytes >> 20, sn.mem.index_entries);
  sn.core = sn_core_new(&cfg, sn.id.id, rng_fill, NULL, clock_now_ms());
  if (network_key)
    sn_core_set_cert(sn.core, sn.cert, sizeof sn.cert);
  sodium_memzero(group_key, sizeof group_key);
  for (const char *const *p = peers; p && *p; p++)
    sn_core_add_peer(sn.core, *p, clock_now_ms());
  run_actions(&sn);
  const char *metrics = cfg_get_str(conf, "metrics");
  if (metrics) {
    sn.metrics = metrics_new(metrics, sn.ctx, fill_metrics, &sn, &err);
    if (!sn.metrics) {
      fprintf(stderr, "canopy-supernode: --metrics %s: %s\n", metrics, err->message);
      goto out;
    }
  }

  g_unix_signal_add(SIGINT, on_signal, sn.loop);
  g_unix_signal_add(SIGTERM, on_signal, sn.loop);
  g_unix_signal_add(SIGHUP, on_hup, &sn);
  g_message("super node %.16s… listening on %s (discovery %s%s%s)", sn.id_hex, listen,
            no_discovery ? "off" : "on", group && *group ? ", group " : "",
            group && *group ? group : "");
  sdnotify_watchdog_start(sn.ctx);
  sdnotify_status("listening on %s", listen);
  sdnotify_ready(NULL);
  g_main_loop_run(sn.loop);
  sdnotify_stopping();
  g_message("shutting down");
  rc = 0;

out:
  metrics_free(sn.metrics);
  evtimer_disarm(&sn.tick);
  timer_disarm(&sn.preauth_timer);
  timer_disarm(&sn.turn_refresh);
  stun_service_free(sn.stun);
  control_server_free(sn.ctl);
  if (sn.listener) {
    g_socket_service_stop(sn.listener);
    g_socket_listener_close(G_SOCKET_LISTENER(sn.listener));
    g_object_unref(sn.listener);
  }
  if (sn.sessions)
    g_hash_table_destroy(sn.sessions); /* before the budget the sessions charge */
  session_set_cookie_jar(NULL);
  cookie_jar_free(sn.cookies);
  budget_free(sn.output);
  budget_free(sn.link_output);
  budget_free(sn.input);
  sn_core_free(sn.core);
  preauth_free(sn.preauth);
  g_clear_object(&sn.dialer);
  if (sn.loop)
    g_main_loop_unref(sn.loop);
  if (sn.ctx)
    g_main_context_unref(sn.ctx);
  identity_clear(&sn.id);
  if (sn.turn_secret) {
    memset(sn.turn_secret, 0, strlen(sn.turn_secret));
    g_free(sn.turn_secret);
  }
  g_free(sn.turn_addr);
  g_free(sn.term_path);
  g_free(sn.cert_path);
  g_clear_error(&err);
  g_option_context_free(oc);
  cfg_free(conf);
  return rc;
}
