/* main.c - canopy-leaf: the leaf daemon's glib shell, and the CLI entry.
 *
 * The daemon scans its share, keeps a session with its super node through
 * the leaf core (leafcore.h) and serves searches to `canopy-leaf search`
 * over the control socket in its state dir.
 */
#include <glib-unix.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "daemon.h"
#include "clock.h"
#include "config.h"
#include "control.h"
#include "identity.h"
#include "leafcore.h"
#include "session.h"
#include "share.h"
#include "wire.h"

/* The daemon's settings, for SIGHUP and `status` (set by run_daemon). */
static Cfg *daemon_conf;

static void rng_fill(uint8_t *out, size_t n, void *ctx)
{
  randombytes_buf(out, n);
}

static gboolean on_tick(gpointer ud)
{
  Leaf *lf = ud;
  leaf_core_tick(lf->core, clock_now_ms());
  leaf_run_actions(lf);
  return G_SOURCE_REMOVE;
}

static const char *slot_name(LeafSlot slot)
{
  return slot == LEAF_SLOT_PRIMARY ? "super node" : "backup super node";
}

/* Which slot session s is in; -1 for one the core has already let go. */
static int slot_of(Leaf *lf, Session *s)
{
  for (int i = 0; i < 2; i++)
    if (lf->sess[i] == s)
      return i;
  return -1;
}

static void drop_session(Leaf *lf, LeafSlot slot, const char *reason)
{
  Session *s = lf->sess[slot];
  if (!s)
    return;
  lf->sess[slot] = NULL;
  session_close(s, reason);
  session_unref(s);
}

static void on_opened(Session *s, void *ud)
{
  Leaf *lf = ud;
  int slot = slot_of(lf, s);
  if (slot < 0)
    return;
  char hex[IDENTITY_HEX_LEN];
  hex_encode(session_peer_id(s), IDENTITY_ID_LEN, hex);
  if (slot == LEAF_SLOT_PRIMARY) {
    memcpy(lf->sn_hex, hex, sizeof hex);
    lf->last_error[0] = '\0';
  }
  g_message("connected to %s %.16s… at %s", slot_name(slot), hex, lf->sess_addr[slot]);
  leaf_core_connected(lf->core, slot, session_peer_id(s), clock_now_ms());
  leaf_run_actions(lf);
}

static void on_message(Session *s, const uint8_t *msg, size_t len, void *ud)
{
  Leaf *lf = ud;
  int slot = slot_of(lf, s);
  if (slot < 0)
    return;
  leaf_core_recv(lf->core, slot, msg, len, clock_now_ms());
  leaf_run_actions(lf);
}

static void on_closed(Session *s, const char *reason, void *ud)
{
  Leaf *lf = ud;
  int slot = slot_of(lf, s);
  if (slot < 0)
    return;
  g_message("session with %s %s ended: %s", slot_name(slot), lf->sess_addr[slot], reason);
  if (slot == LEAF_SLOT_PRIMARY)
    g_snprintf(lf->last_error, sizeof lf->last_error, "%s: %s", lf->sess_addr[slot], reason);
  lf->sess[slot] = NULL;
  session_unref(s);
  leaf_core_disconnected(lf->core, slot, clock_now_ms());
  leaf_run_actions(lf);
}

static const SessionCallbacks session_cb = {on_opened, on_message, on_closed};

typedef struct {
  Leaf *lf;
  LeafSlot slot;
  guint gen;
} Dial;

static void on_dialed(GObject *src, GAsyncResult *res, gpointer ud)
{
  Dial *d = ud;
  Leaf *lf = d->lf;
  LeafSlot slot = d->slot;
  gboolean current = d->gen == lf->dial_gen[slot];
  g_free(d);
  GError *err = NULL;
  GSocketConnection *conn = g_socket_client_connect_to_host_finish(G_SOCKET_CLIENT(src), res, &err);
  if (!current) { /* the core moved on while we dialed */
    g_clear_error(&err);
    g_clear_object(&conn);
    return;
  }
  if (!conn) {
    if (slot == LEAF_SLOT_PRIMARY)
      g_snprintf(lf->last_error, sizeof lf->last_error, "%s: %s", lf->sess_addr[slot],
                 err->message);
    g_info("cannot reach %s %s: %s", slot_name(slot), lf->sess_addr[slot], err->message);
    g_error_free(err);
    leaf_core_disconnected(lf->core, slot, clock_now_ms());
  } else {
    lf->sess[slot] = session_new(G_IO_STREAM(conn), ++lf->next_sid, &lf->id, CHANNEL_INITIATOR,
                                 lf->ctx, &session_cb, lf);
    g_object_unref(conn);
  }
  leaf_run_actions(lf);
}

static ControlClient *take_pending(Leaf *lf, uint32_t id)
{
  ControlClient *cl = g_hash_table_lookup(lf->pending, GUINT_TO_POINTER(id));
  g_hash_table_remove(lf->pending, GUINT_TO_POINTER(id));
  return cl;
}

/* The super node's NAT_INFO: STUN on the super node's own host (the address
 * we reach it at), TURN wherever it says. */
static void apply_nat_info(Leaf *lf, const LeafAction *a)
{
  gchar *stun_host = NULL, *turn_host = NULL;
  guint16 turn_port = 0;
  GSocketConnectable *sn = g_network_address_parse(lf->sess_addr[LEAF_SLOT_PRIMARY], 0, NULL);
  if (sn && a->stun_port)
    stun_host = g_strdup(g_network_address_get_hostname(G_NETWORK_ADDRESS(sn)));
  g_clear_object(&sn);
  if (a->turn_addr && *a->turn_addr) {
    GSocketConnectable *t = g_network_address_parse(a->turn_addr, 3478, NULL);
    if (t) {
      turn_host = g_strdup(g_network_address_get_hostname(G_NETWORK_ADDRESS(t)));
      turn_port = g_network_address_get_port(G_NETWORK_ADDRESS(t));
      g_object_unref(t);
    }
  }
  g_info("NAT info: STUN %s:%u, TURN %s", stun_host ? stun_host : "-", a->stun_port,
         turn_host ? a->turn_addr : "none");
  peers_set_nat(lf->peers, stun_host, a->stun_port, turn_host, turn_port, a->turn_user,
                a->turn_pass);
  g_free(stun_host);
  g_free(turn_host);
}

void leaf_run_actions(Leaf *lf)
{
  /* Callbacks below may queue more actions and call back in here; the
   * outermost loop drains them all. */
  if (lf->running_actions)
    return;
  lf->running_actions = TRUE;
  LeafAction a;
  while (leaf_core_next_action(lf->core, &a)) {
    switch (a.kind) {
    case LEAF_ACT_DIAL: {
      drop_session(lf, a.slot, "redialing");
      g_strlcpy(lf->sess_addr[a.slot], a.addr, sizeof lf->sess_addr[a.slot]);
      Dial *d = g_new(Dial, 1);
      *d = (Dial){lf, a.slot, ++lf->dial_gen[a.slot]};
      g_socket_client_connect_to_host_async(lf->dialer, a.addr, 0, NULL, on_dialed, d);
      break;
    }
    case LEAF_ACT_SEND:
      if (lf->sess[a.slot])
        session_send(lf->sess[a.slot], a.data, a.len);
      break;
    case LEAF_ACT_CLOSE:
      lf->dial_gen[a.slot]++; /* a dial in flight is void too */
      if (lf->sess[a.slot] && a.slot == LEAF_SLOT_PRIMARY)
        g_snprintf(lf->last_error, sizeof lf->last_error, "%s: %s", lf->sess_addr[a.slot],
                   a.reason);
      drop_session(lf, a.slot, a.reason);
      break;
    case LEAF_ACT_SWAP:
      lf->sess[LEAF_SLOT_PRIMARY] = lf->sess[LEAF_SLOT_WATCH];
      lf->sess[LEAF_SLOT_WATCH] = NULL;
      memcpy(lf->sess_addr[LEAF_SLOT_PRIMARY], lf->sess_addr[LEAF_SLOT_WATCH],
             sizeof lf->sess_addr[0]);
      lf->sess_addr[LEAF_SLOT_WATCH][0] = '\0';
      lf->dial_gen[LEAF_SLOT_WATCH]++;
      if (lf->sess[LEAF_SLOT_PRIMARY])
        hex_encode(session_peer_id(lf->sess[LEAF_SLOT_PRIMARY]), IDENTITY_ID_LEN, lf->sn_hex);
      g_message("following the new leader at %s", lf->sess_addr[LEAF_SLOT_PRIMARY]);
      break;
    case LEAF_ACT_NAT_INFO:
      apply_nat_info(lf, &a);
      break;
    case LEAF_ACT_SIGNAL:
      peers_on_signal(lf->peers, a.sid, a.signal_kind, a.peer, a.text);
      break;
    case LEAF_ACT_HIT: {
      if (lf->dl_searches && download_on_hit(lf, a.search, &a))
        break;
      ControlClient *cl = g_hash_table_lookup(lf->pending, GUINT_TO_POINTER(a.search));
      if (!cl)
        break;
      char cid[IDENTITY_HEX_LEN], peer[IDENTITY_HEX_LEN];
      hex_encode(a.cid, 32, cid);
      hex_encode(a.peer, 32, peer);
      JsonObject *o = json_object_new();
      json_object_set_string_member(o, "name", a.name);
      json_object_set_int_member(o, "size", (gint64)a.size);
      json_object_set_string_member(o, "content_id", cid);
      json_object_set_string_member(o, "peer", peer);
      control_send(cl, o);
      break;
    }
    case LEAF_ACT_SEARCH_DONE: {
      if (lf->dl_searches && download_on_search_done(lf, a.search, a.reason))
        break;
      ControlClient *cl = take_pending(lf, a.search);
      if (!cl)
        break;
      if (a.reason) {
        char msg[400];
        g_snprintf(msg, sizeof msg, "%s%s%s", a.reason, lf->last_error[0] ? " (last error: " : "",
                   lf->last_error[0] ? lf->last_error : "");
        if (lf->last_error[0])
          g_strlcat(msg, ")", sizeof msg);
        control_fail(cl, msg);
      } else {
        JsonObject *o = json_object_new();
        json_object_set_boolean_member(o, "done", TRUE);
        control_send(cl, o);
        control_finish(cl);
      }
      break;
    }
    }
    leaf_action_clear(&a);
  }
  lf->running_actions = FALSE;
  timer_arm(&lf->tick, lf->ctx, leaf_core_next_deadline(lf->core), on_tick, lf);
}

/* --- links to other leaves ------------------------------------------------------ */

static bool on_peer_signal(const uint8_t sid[16], uint8_t kind, const uint8_t dst[32],
                           const char *text, void *ud)
{
  Leaf *lf = ud;
  bool ok = leaf_core_signal(lf->core, sid, kind, dst, text);
  leaf_run_actions(lf);
  return ok;
}

static void on_peer_opened(PeerLink *l, void *ud)
{
  if (peer_link_outbound(l))
    download_link_opened(ud, l);
}

static gboolean serve_send(const uint8_t *msg, size_t len, void *ud)
{
  return peer_link_send(ud, msg, len);
}

static void on_peer_message(PeerLink *l, const uint8_t *msg, size_t len, void *ud)
{
  Leaf *lf = ud;
  WireMsg m;
  WireError err = wire_decode(msg, len, &m);
  if (err == WIRE_EUNKNOWN)
    return;
  if (err != WIRE_OK) {
    peer_link_close(l, wire_error_str(err));
    return;
  }
  if (peer_link_outbound(l))
    download_link_message(lf, l, &m);
  else if (m.type == MSG_GET_TREE || m.type == MSG_GET_CHUNK)
    server_handle(lf->server, &m, serve_send, l);
  else
    peer_link_close(l, "unexpected message from a downloading peer");
  wire_msg_clear(&m);
}

static void on_peer_closed(PeerLink *l, const char *reason, void *ud)
{
  Leaf *lf = ud;
  char hex[IDENTITY_HEX_LEN];
  hex_encode(peer_link_peer(l), 32, hex);
  g_info("link with %.16s… (%s) ended: %s", hex, peer_link_outbound(l) ? "download" : "upload",
         reason);
  if (peer_link_outbound(l))
    download_link_closed(lf, l, reason);
}

static const PeersCallbacks peers_cb = {on_peer_signal, on_peer_opened, on_peer_message,
                                        on_peer_closed};

static void rescan(Leaf *lf)
{
  GError *err = NULL;
  gboolean changed = FALSE;
  if (!share_scan(lf->share, &changed, &err)) {
    g_warning("%s", err->message);
    g_error_free(err);
    return;
  }
  if (changed) {
    size_t n;
    const LeafEntry *e = share_entries(lf->share, &n);
    g_message("sharing %zu file%s (%zu hashed)", n, n == 1 ? "" : "s",
              share_last_hashed(lf->share));
    leaf_core_set_manifest(lf->core, e, n, clock_now_ms());
  }
}

static gboolean on_rescan(gpointer ud)
{
  Leaf *lf = ud;
  rescan(lf);
  leaf_run_actions(lf);
  timer_arm(&lf->rescan, lf->ctx, clock_now_ms() + lf->rescan_ms, on_rescan, lf);
  return G_SOURCE_REMOVE;
}

static void on_control(ControlClient *cl, JsonObject *req, void *ud)
{
  Leaf *lf = ud;
  const char *cmd = json_object_get_string_member_with_default(req, "cmd", "");
  if (strcmp(cmd, "search") == 0) {
    const char *text = json_object_get_string_member_with_default(req, "text", "");
    const char *kind = json_object_get_string_member_with_default(req, "kind", "keywords");
    gint64 ttl = json_object_get_int_member_with_default(req, "ttl", 4);
    gint64 wait = json_object_get_int_member_with_default(req, "wait_ms", 1500);
    gint64 limit = json_object_get_int_member_with_default(req, "limit", 0);
    if (ttl < 0 || ttl > WIRE_MAX_TTL || wait < 0 || wait > 60000 || limit < 0) {
      control_fail(cl, "bad search: ttl 0..7, wait_ms 0..60000, limit >= 0");
      return;
    }
    uint32_t id = leaf_core_search(lf->core, strcmp(kind, "content_id") == 0, text, (uint8_t)ttl,
                                   (uint64_t)wait, clock_now_ms());
    /* Insert first: a search that cannot run finishes in run_actions. */
    g_hash_table_insert(lf->pending, GUINT_TO_POINTER(id), cl);
    if (limit > 0)
      leaf_core_search_limit(lf->core, id, (unsigned)MIN(limit, G_MAXUINT));
    leaf_run_actions(lf);
  } else if (strcmp(cmd, "get") == 0) {
    download_start(lf, cl, req);
  } else if (strcmp(cmd, "status") == 0) {
    size_t n;
    share_entries(lf->share, &n);
    LeafGroupStatus g;
    leaf_core_group_status(lf->core, &g);
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "id", lf->id_hex);
    json_object_set_boolean_member(o, "connected", g.attached);
    if (g.attached) {
      char hex[IDENTITY_HEX_LEN];
      hex_encode(g.supernode, 32, hex);
      json_object_set_string_member(o, "supernode", g.supernode_addr);
      json_object_set_string_member(o, "supernode_id", hex);
      json_object_set_string_member(o, "supernode_role", "leader");
    } else {
      json_object_set_string_member(o, "supernode", lf->sn_addr);
    }
    json_object_set_int_member(o, "term", (gint64)g.term);
    json_object_set_string_member(o, "group", g.group);
    if (g.has_backup) {
      char hex[IDENTITY_HEX_LEN];
      hex_encode(g.backup, 32, hex);
      JsonObject *b = json_object_new();
      json_object_set_string_member(b, "id", hex);
      json_object_set_string_member(b, "address", g.backup_addr);
      json_object_set_object_member(o, "backup", b);
    } else {
      json_object_set_null_member(o, "backup");
    }
    json_object_set_boolean_member(o, "watching", g.watching);
    json_object_set_int_member(o, "publishes", (gint64)g.publishes);
    json_object_set_int_member(o, "leader_changes", (gint64)g.leader_changes);
    json_object_set_int_member(o, "shared_files", (gint64)n);
    if (lf->last_error[0])
      json_object_set_string_member(o, "last_error", lf->last_error);
    /* The reloadable settings in force, so that a reload can be seen. */
    if (daemon_conf)
      json_object_set_object_member(o, "config", cfg_to_json(daemon_conf, TRUE));
    json_object_set_boolean_member(o, "done", TRUE);
    control_send(cl, o);
    control_finish(cl);
  } else {
    control_fail(cl, "unknown command");
  }
}

static gboolean on_signal(gpointer ud)
{
  g_main_loop_quit(ud);
  return G_SOURCE_CONTINUE;
}

/* SIGHUP: re-reads the --config file and applies the reloadable settings;
 * cfg_reload logs what changed and refuses a bad file. */
static gboolean on_hup(gpointer ud)
{
  Leaf *lf = ud;
  gboolean changed = FALSE;
  if (!cfg_reload(daemon_conf, &changed) || !changed)
    return G_SOURCE_CONTINUE;
  log_setup(cfg_get_str(daemon_conf, "log-level"), NULL);
  leaf_core_set_keepalive(lf->core, (uint64_t)cfg_get_int(daemon_conf, "keepalive-ms"));
  uint64_t rescan_ms = (uint64_t)cfg_get_int(daemon_conf, "rescan-s") * 1000;
  if (rescan_ms != lf->rescan_ms) {
    lf->rescan_ms = rescan_ms;
    if (rescan_ms)
      timer_arm(&lf->rescan, lf->ctx, clock_now_ms() + rescan_ms, on_rescan, lf);
    else
      timer_disarm(&lf->rescan);
  }
  leaf_run_actions(lf); /* the tick's deadline may have moved */
  return G_SOURCE_CONTINUE;
}

/* Every setting: --KEY on the command line, KEY in the [leaf] section of
 * --config. canopy-leaf(1) and deploy/config/leaf.conf describe them too. */
static const CfgDef leaf_settings[] = {
    {.key = "supernode",
     .type = CFG_HOSTPORT,
     .arg = "HOST:PORT",
     .help = "Super node to attach to (required)"},
    {.key = "share",
     .type = CFG_PATH,
     .arg = "DIR",
     .help = "Folder whose files are published (required)"},
    {.key = "state-dir",
     .type = CFG_PATH,
     .arg = "DIR",
     .help = "Keys and state, created 0700 (required)"},
    {.key = "keepalive-ms",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 100,
     .max = 600000,
     .def = "5000",
     .arg = "MS",
     .help = "Keepalive interval"},
    {.key = "rescan-s",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 0,
     .max = G_MAXINT,
     .def = "60",
     .arg = "S",
     .help = "Rescan the share every S seconds, 0 never"},
    {.key = "download-dir",
     .type = CFG_PATH,
     .arg = "DIR",
     .help = "Where `get` puts files (default: STATE_DIR/downloads)"},
    {.key = "ice-local",
     .type = CFG_IP,
     .flags = CFG_LIST,
     .arg = "IP",
     .help = "Local address for ICE host candidates (default: all interfaces)"},
    {.key = "log-level",
     .type = CFG_ENUM,
     .flags = CFG_RELOAD,
     .def = "info",
     .choices = "error|warning|info|debug",
     .arg = "LEVEL",
     .help = "Log level"},
    {.key = NULL}};

static int run_daemon(int argc, char **argv)
{
  Cfg *conf = cfg_new("leaf", leaf_settings);
  GOptionContext *oc = g_option_context_new("- run a Canopy leaf (commands: search, status)");
  g_option_context_set_description(oc, "Examples:\n  canopy-leaf --supernode 203.0.113.5:7400 "
                                       "--share ~/Music --state-dir ~/.canopy\n"
                                       "  canopy-leaf search --state-dir ~/.canopy abbey road\n");
  g_option_context_set_main_group(oc, cfg_option_group(conf));
  GError *err = NULL;
  int rc = 1;
  Leaf lf = {0};
  char **args = argv;
  int nargs = argc;
  int parsed = cfg_parse_args(conf, oc, "canopy-leaf", &nargs, &args);
  if (parsed >= 0) { /* --check-config, --print-config, or an error */
    rc = parsed;
    goto out;
  }
  const char *sn_addr = cfg_get_str(conf, "supernode"), *share = cfg_get_str(conf, "share");
  const char *state_dir = cfg_get_str(conf, "state-dir");
  const char *download_dir = cfg_get_str(conf, "download-dir");
  const char *const *ice_local = cfg_get_list(conf, "ice-local");
  if (!sn_addr || !share || !state_dir) {
    fprintf(stderr,
            "canopy-leaf: --supernode, --share and --state-dir are required (see --help)\n");
    goto out;
  }
  if (nargs > 1) {
    fprintf(stderr, "canopy-leaf: unknown command '%s' (commands: search, status)\n", args[1]);
    goto out;
  }
  if (!log_setup(cfg_get_str(conf, "log-level"), &err) || !statedir_prepare(state_dir, &err)) {
    fprintf(stderr, "canopy-leaf: %s\n", err->message);
    goto out;
  }
  char msg[256];
  if (!crypto_ready() || !identity_load_or_create(state_dir, &lf.id, msg, sizeof msg)) {
    fprintf(stderr, "canopy-leaf: %s\n", crypto_ready() ? msg : "libsodium failed to initialise");
    goto out;
  }
  hex_encode(lf.id.id, IDENTITY_ID_LEN, lf.id_hex);
  lf.sn_addr = g_strdup(sn_addr);
  lf.ctx = g_main_context_ref_thread_default();
  lf.loop = g_main_loop_new(lf.ctx, FALSE);
  lf.dialer = g_socket_client_new();
  /* Peers are dialed directly: no proxy (and no desktop settings lookup). */
  g_socket_client_set_enable_proxy(lf.dialer, FALSE);
  g_socket_client_set_timeout(lf.dialer, 5);
  lf.pending = g_hash_table_new(g_direct_hash, g_direct_equal);
  lf.rescan_ms = (uint64_t)cfg_get_int(conf, "rescan-s") * 1000;

  gchar *ctl_path = g_build_filename(state_dir, CONTROL_SOCKET_NAME, NULL);
  lf.ctl = control_server_new(ctl_path, lf.ctx, on_control, &lf, &err);
  g_free(ctl_path);
  if (!lf.ctl) {
    fprintf(stderr, "canopy-leaf: control socket: %s\n", err->message);
    goto out;
  }
  lf.share = share_new(share);
  share_exclude(lf.share, state_dir);
  share_set_cache(lf.share, hashcache_open(state_dir));
  lf.download_dir =
      download_dir ? g_strdup(download_dir) : g_build_filename(state_dir, "downloads", NULL);
  if (g_path_is_absolute(lf.download_dir) == FALSE) {
    gchar *cwd = g_get_current_dir();
    gchar *abs = g_build_filename(cwd, lf.download_dir, NULL);
    g_free(cwd);
    g_free(lf.download_dir);
    lf.download_dir = abs;
  }
  lf.server = server_new(lf.share);
  lf.peers = peers_new(lf.ctx, &lf.id, &peers_cb, &lf);
  if (ice_local)
    peers_set_local_addrs(lf.peers, (char **)ice_local);
  if (!share_scan(lf.share, NULL, &err)) {
    fprintf(stderr, "canopy-leaf: %s\n", err->message);
    goto out;
  }
  LeafConfig cfg;
  leaf_config_defaults(&cfg);
  cfg.keepalive_ms = (uint64_t)cfg_get_int(conf, "keepalive-ms");
  cfg.supernode = lf.sn_addr;
  lf.core = leaf_core_new(&cfg, rng_fill, NULL);
  size_t n;
  const LeafEntry *e = share_entries(lf.share, &n);
  leaf_core_set_manifest(lf.core, e, n, clock_now_ms());
  ShareScanStats ss;
  share_scan_stats(lf.share, &ss);
  g_message("leaf %.16s… sharing %zu file%s from %s (%zu hashed, %zu from the hash cache)",
            lf.id_hex, n, n == 1 ? "" : "s", share, ss.hashed, ss.from_cache);
  leaf_core_start(lf.core, clock_now_ms());
  leaf_run_actions(&lf);
  if (lf.rescan_ms)
    timer_arm(&lf.rescan, lf.ctx, clock_now_ms() + lf.rescan_ms, on_rescan, &lf);

  g_unix_signal_add(SIGINT, on_signal, lf.loop);
  g_unix_signal_add(SIGTERM, on_signal, lf.loop);
  daemon_conf = conf;
  g_unix_signal_add(SIGHUP, on_hup, &lf);
  g_main_loop_run(lf.loop);
  rc = 0;
out:
  download_free_all(&lf);
  peers_free(lf.peers);
  server_free(lf.server);
  g_free(lf.download_dir);
  timer_disarm(&lf.tick);
  timer_disarm(&lf.rescan);
  drop_session(&lf, LEAF_SLOT_PRIMARY, "shutting down");
  drop_session(&lf, LEAF_SLOT_WATCH, "shutting down");
  control_server_free(lf.ctl);
  if (lf.pending)
    g_hash_table_destroy(lf.pending);
  leaf_core_free(lf.core);
  share_free(lf.share);
  g_clear_object(&lf.dialer);
  if (lf.loop)
    g_main_loop_unref(lf.loop);
  if (lf.ctx)
    g_main_context_unref(lf.ctx);
  identity_clear(&lf.id);
  g_free(lf.sn_addr);
  g_clear_error(&err);
  g_option_context_free(oc);
  daemon_conf = NULL;
  cfg_free(conf);
  return rc;
}

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "search") == 0)
    return cli_search(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "status") == 0)
    return cli_status(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "get") == 0)
    return cli_get(argc - 1, argv + 1);
  return run_daemon(argc, argv);
}
