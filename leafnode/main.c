/* main.c - canopy-leaf: the leaf daemon's glib shell, and the CLI entry.
 *
 * The daemon scans its shared folders (share.h), keeps a session with its
 * super node through the leaf core (leafcore.h), serves other leaves
 * (serve.h), downloads (download.c) and answers the commands (cli.c) over
 * the control socket in its state dir: one JSON request per connection,
 * {"cmd": ...} with cmd one of search, get, status, share-add,
 * share-remove, share-list, downloads, download-pause, download-resume,
 * download-cancel.
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
#include "hostfile.h"
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

/* --- what the leaf tried, for errors a person can act on -------------------------- */

#define TRIED_MAX 16

typedef struct {
  char addr[130];
  char error[200]; /* the last failure there; "" once a session opened */
} Tried;

static Tried *tried_get(Leaf *lf, const char *addr)
{
  for (guint i = 0; i < lf->tried->len; i++) {
    Tried *t = g_ptr_array_index(lf->tried, i);
    if (strcmp(t->addr, addr) == 0)
      return t;
  }
  if (lf->tried->len >= TRIED_MAX)
    g_ptr_array_remove_index(lf->tried, 0);
  Tried *t = g_new0(Tried, 1);
  g_strlcpy(t->addr, addr, sizeof t->addr);
  g_ptr_array_add(lf->tried, t);
  return t;
}

static void tried_failed(Leaf *lf, const char *addr, const char *why)
{
  if (addr[0])
    g_strlcpy(tried_get(lf, addr)->error, why, sizeof((Tried *)NULL)->error);
}

/* A dial error in a few words: "connection refused", "timed out". */
static const char *dial_error(const GError *e)
{
  if (e->domain == G_IO_ERROR) {
    switch (e->code) {
    case G_IO_ERROR_CONNECTION_REFUSED:
      return "connection refused";
    case G_IO_ERROR_TIMED_OUT:
      return "timed out";
    case G_IO_ERROR_HOST_UNREACHABLE:
      return "host unreachable";
    case G_IO_ERROR_NETWORK_UNREACHABLE:
      return "network unreachable";
    default:
      break;
    }
  }
  if (e->domain == G_RESOLVER_ERROR)
    return "unknown host";
  return e->message;
}

/* Why the leaf has no super node, as the commands print it: "no super node
 * reachable (tried 127.0.0.1:7400: connection refused; ...)". */
static void describe_unreachable(Leaf *lf, char *out, size_t len)
{
  GString *s = g_string_new(NULL);
  for (guint i = 0; i < lf->tried->len; i++) {
    const Tried *t = g_ptr_array_index(lf->tried, i);
    if (t->error[0])
      g_string_append_printf(s, "%s%s: %s", s->len ? "; " : "", t->addr, t->error);
  }
  if (s->len)
    g_snprintf(out, len, "no super node reachable (tried %s)", s->str);
  else if (lf->sess_addr[LEAF_SLOT_PRIMARY][0])
    g_snprintf(out, len, "still connecting to %s", lf->sess_addr[LEAF_SLOT_PRIMARY]);
  else
    g_snprintf(out, len, "still connecting to %s", lf->sn_addr);
  g_string_free(s, TRUE);
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
  tried_get(lf, lf->sess_addr[slot])->error[0] = '\0';
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
  tried_failed(lf, lf->sess_addr[slot], reason);
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
    tried_failed(lf, lf->sess_addr[slot], dial_error(err));
    g_error_free(err);
    leaf_core_disconnected(lf->core, slot, clock_now_ms());
  } else {
    lf->sess[slot] = session_new(G_IO_STREAM(conn), ++lf->next_sid, &lf->id, CHANNEL_INITIATOR,
                                 lf->ctx, &session_cb, lf);
    g_object_unref(conn);
    if (!lf->sess[slot]) /* out of memory: a failed dial, so the core redials later */
      leaf_core_disconnected(lf->core, slot, clock_now_ms());
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
      char msg[1024] = "";
      if (a.reason && !leaf_core_is_connected(lf->core)) {
        char why[900];
        describe_unreachable(lf, why, sizeof why);
        g_snprintf(msg, sizeof msg, "%s: %s", a.reason, why);
      } else if (a.reason) {
        g_snprintf(msg, sizeof msg, "%s%s%s", a.reason, lf->last_error[0] ? " (last error: " : "",
                   lf->last_error[0] ? lf->last_error : "");
        if (lf->last_error[0])
          g_strlcat(msg, ")", sizeof msg);
      }
      if (lf->dl_searches && download_on_search_done(lf, a.search, a.reason ? msg : NULL))
        break;
      ControlClient *cl = take_pending(lf, a.search);
      if (!cl)
        break;
      if (a.reason) {
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
  if (lf->state_dir)
    hostfile_save(leaf_core_hosts(lf->core), lf->state_dir);
  timer_arm(&lf->tick, lf->ctx, leaf_core_next_deadline(lf->core), on_tick, lf);
}

/* --- links to other leaves ------------------------------------------------------ */

/* How long the loop runs at shutdown for the links' FINs to go out. */
#define LEAF_SHUTDOWN_FLUSH_MS 200

static gboolean flush_over(gpointer ud)
{
  *(gboolean *)ud = TRUE;
  return G_SOURCE_REMOVE;
}

/* Best effort: ends every link to another leaf and runs the loop briefly,
 * so their FINs go out and the peers end their side at once (a source
 * would otherwise keep our upload links until its idle timeout, peers.c).
 * No new command, rescan or download can start meanwhile: the control
 * socket and the downloads are gone first. */
static void shutdown_links(Leaf *lf)
{
  control_server_free(lf->ctl);
  lf->ctl = NULL;
  timer_disarm(&lf->rescan);
  download_free_all(lf);
  peers_close_all(lf->peers, "shutting down");
  gboolean over = FALSE;
  GSource *t = g_timeout_source_new(LEAF_SHUTDOWN_FLUSH_MS);
  g_source_set_callback(t, flush_over, &over, NULL);
  g_source_attach(t, lf->ctx);
  while (!over)
    g_main_context_iteration(lf->ctx, TRUE);
  g_source_destroy(t);
  g_source_unref(t);
}

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
  Leaf *lf = ud;
  if (peer_link_outbound(l))
    download_link_opened(lf, l);
  else
    g_hash_table_add(lf->uploads, l);
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
  else
    g_hash_table_remove(lf->uploads, l);
}

static const PeersCallbacks peers_cb = {on_peer_signal, on_peer_opened, on_peer_message,
                                        on_peer_closed};

/* The shared folders' manifest changed (a rescan, a folder added or
 * removed): publish it. */
static void on_shares_changed(void *ud)
{
  Leaf *lf = ud;
  size_t n;
  const LeafEntry *e = shareset_entries(lf->shares, &n);
  guint folders = shareset_count(lf->shares);
  g_message("sharing %zu file%s from %u folder%s", n, n == 1 ? "" : "s", folders,
            folders == 1 ? "" : "s");
  leaf_core_set_manifest(lf->core, e, n, clock_now_ms());
  leaf_run_actions(lf);
}

/* Rescans run in the share set's worker thread; their results come back
 * through on_shares_changed. */
static gboolean on_rescan(gpointer ud)
{
  Leaf *lf = ud;
  shareset_rescan(lf->shares);
  timer_arm(&lf->rescan, lf->ctx, clock_now_ms() + lf->rescan_ms, on_rescan, lf);
  return G_SOURCE_REMOVE;
}

/* --- the commands' requests ------------------------------------------------------ */

static JsonObject *share_json(const ShareInfo *in)
{
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "name", in->name);
  json_object_set_string_member(o, "path", in->root);
  json_object_set_boolean_member(o, "fixed", in->fixed);
  json_object_set_string_member(o, "state", in->scanning ? "scanning" : in->error ? "error" : "ok");
  json_object_set_int_member(o, "files", (gint64)in->files);
  json_object_set_int_member(o, "bytes", (gint64)in->bytes);
  if (in->error)
    json_object_set_string_member(o, "error", in->error);
  if (in->scanning && in->progress.files_total) {
    JsonObject *p = json_object_new();
    json_object_set_int_member(p, "files_done", (gint64)in->progress.files_done);
    json_object_set_int_member(p, "files_total", (gint64)in->progress.files_total);
    json_object_set_int_member(p, "bytes_done", (gint64)in->progress.bytes_done);
    json_object_set_int_member(p, "bytes_total", (gint64)in->progress.bytes_total);
    json_object_set_object_member(o, "progress", p);
  }
  return o;
}

static JsonArray *shares_json(Leaf *lf)
{
  JsonArray *arr = json_array_new();
  for (guint i = 0; i < shareset_count(lf->shares); i++) {
    ShareInfo in;
    shareset_info(lf->shares, i, &in);
    json_array_add_object_element(arr, share_json(&in));
  }
  return arr;
}

static void on_share_progress(const ShareProgress *p, void *ud)
{
  JsonObject *o = json_object_new();
  json_object_set_int_member(o, "files_done", (gint64)p->files_done);
  json_object_set_int_member(o, "files_total", (gint64)p->files_total);
  json_object_set_int_member(o, "bytes_done", (gint64)p->bytes_done);
  json_object_set_int_member(o, "bytes_total", (gint64)p->bytes_total);
  if (p->relpath)
    json_object_set_string_member(o, "file", p->relpath);
  control_send(ud, o);
}

static void on_share_added(const ShareInfo *info, const char *error, void *ud)
{
  ControlClient *cl = ud;
  if (!info) {
    control_fail(cl, error);
    return;
  }
  JsonObject *o = share_json(info);
  json_object_remove_member(o, "error");
  json_object_set_int_member(o, "hashed", (gint64)info->last.hashed);
  json_object_set_int_member(o, "from_cache", (gint64)info->last.from_cache);
  json_object_set_int_member(o, "skipped", (gint64)info->last.skipped);
  json_object_set_boolean_member(o, "done", TRUE);
  control_send(cl, o);
  control_finish(cl);
}

static void control_share(Leaf *lf, ControlClient *cl, const char *cmd, JsonObject *req)
{
  const char *path = json_object_get_string_member_with_default(req, "path", "");
  GError *err = NULL;
  if (strcmp(cmd, "share-list") == 0) {
    JsonObject *o = json_object_new();
    json_object_set_array_member(o, "shares", shares_json(lf));
    json_object_set_boolean_member(o, "done", TRUE);
    control_send(cl, o);
    control_finish(cl);
  } else if (strcmp(cmd, "share-add") == 0) {
    if (!g_path_is_absolute(path)) {
      control_fail(cl, "share-add: path must be absolute");
      return;
    }
    if (!shareset_add(lf->shares, path, on_share_progress, on_share_added, cl, &err)) {
      control_fail(cl, err->message);
      g_error_free(err);
    }
  } else if (strcmp(cmd, "share-remove") == 0) {
    const char *arg = json_object_get_string_member_with_default(req, "arg", "");
    /* A bare word that names a share means that share (as `share list`
     * shows it), even if a folder of that name is in the current
     * directory: ./NAME means the folder. */
    int i = arg[0] && !strchr(arg, '/') ? shareset_lookup_name(lf->shares, arg) : -1;
    if (i < 0)
      i = shareset_lookup(lf->shares, path);
    if (i < 0 && arg[0])
      i = shareset_lookup(lf->shares, arg);
    if (i < 0) {
      gchar *msg =
          g_strdup_printf("%s is not shared (see canopy-leaf share list)", arg[0] ? arg : path);
      control_fail(cl, msg);
      g_free(msg);
      return;
    }
    ShareInfo in;
    shareset_info(lf->shares, (guint)i, &in);
    JsonObject *o = share_json(&in);
    json_object_remove_member(o, "error");
    json_object_set_string_member(o, "state", "removed");
    if (!shareset_remove(lf->shares, (guint)i, &err)) {
      json_object_unref(o);
      control_fail(cl, err->message);
      g_error_free(err);
      return;
    }
    json_object_set_boolean_member(o, "done", TRUE);
    control_send(cl, o);
    control_finish(cl);
  } else {
    control_fail(cl, "unknown command");
  }
}

/* The host cache, best first: where the leaf goes when its super node is
 * gone. */
static JsonArray *hosts_json(Leaf *lf)
{
  static const char *sources[] = {"configured", "learned", "redirect"};
  JsonArray *arr = json_array_new();
  HostCache *h = leaf_core_hosts(lf->core);
  const HostEntry *e;
  for (size_t i = 0; (e = hostcache_get(h, i)); i++) {
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "address", e->addr);
    if (e->id_known) {
      char hex[IDENTITY_HEX_LEN];
      hex_encode(e->id, 32, hex);
      json_object_set_string_member(o, "id", hex);
    }
    if (e->leaf_load <= 100)
      json_object_set_int_member(o, "leaf_load", e->leaf_load);
    json_object_set_string_member(o, "source", sources[e->source]);
    json_object_set_int_member(o, "failures", e->failures);
    json_object_set_boolean_member(o, "worked", e->worked);
    json_array_add_object_element(arr, o);
  }
  return arr;
}

static void control_status(Leaf *lf, ControlClient *cl)
{
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
    char why[900];
    describe_unreachable(lf, why, sizeof why);
    json_object_set_string_member(o, "supernode", lf->sn_addr);
    json_object_set_string_member(o, "unreachable", why);
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
  json_object_set_int_member(o, "offers_refused", (gint64)peers_offers_refused(lf->peers));
  JsonArray *members = json_array_new();
  for (size_t i = 0; i < g.n_members; i++) {
    JsonObject *m = json_object_new();
    const char *addr = g.members[i];
    json_object_set_string_member(m, "address", addr);
    json_object_set_string_member(m, "role",
                                  g.attached && strcmp(addr, g.supernode_addr) == 0  ? "leader"
                                  : g.has_backup && strcmp(addr, g.backup_addr) == 0 ? "backup"
                                                                                     : "member");
    json_array_add_object_element(members, m);
  }
  json_object_set_array_member(o, "members", members);
  JsonArray *tried = json_array_new();
  for (guint i = 0; i < lf->tried->len; i++) {
    const Tried *t = g_ptr_array_index(lf->tried, i);
    if (!t->error[0])
      continue;
    JsonObject *m = json_object_new();
    json_object_set_string_member(m, "address", t->addr);
    json_object_set_string_member(m, "error", t->error);
    json_array_add_object_element(tried, m);
  }
  json_object_set_array_member(o, "tried", tried);
  json_object_set_array_member(o, "hosts", hosts_json(lf));
  LeafHostStatus hs;
  leaf_core_host_status(lf->core, &hs);
  json_object_set_int_member(o, "refusals", (gint64)hs.refusals);
  if (hs.last_refusal[0])
    json_object_set_string_member(o, "last_refusal", hs.last_refusal);
  json_object_set_int_member(o, "publishes", (gint64)g.publishes);
  json_object_set_int_member(o, "leader_changes", (gint64)g.leader_changes);
  json_object_set_int_member(o, "group_claims_refused", (gint64)g.claims_refused);
  size_t n;
  shareset_entries(lf->shares, &n);
  json_object_set_int_member(o, "shared_files", (gint64)n);
  json_object_set_array_member(o, "shares", shares_json(lf));
  json_object_set_object_member(o, "transfers", download_stats(lf));
  if (lf->last_error[0])
    json_object_set_string_member(o, "last_error", lf->last_error);
  /* The reloadable settings in force, so that a reload can be seen. */
  if (daemon_conf)
    json_object_set_object_member(o, "config", cfg_to_json(daemon_conf, TRUE));
  json_object_set_boolean_member(o, "done", TRUE);
  control_send(cl, o);
  control_finish(cl);
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
    control_status(lf, cl);
  } else if (g_str_has_prefix(cmd, "share-")) {
    control_share(lf, cl, cmd, req);
  } else if (strcmp(cmd, "downloads") == 0) {
    download_list(lf, cl);
  } else if (g_str_has_prefix(cmd, "download-")) {
    download_command(lf, cl, cmd + strlen("download-"), req);
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
     .flags = CFG_LIST,
     .arg = "HOST:PORT",
     .help = "Super node to attach to (required; repeat for more, tried in order)"},
    {.key = "share",
     .type = CFG_PATH,
     .arg = "DIR",
     .help = "Folder whose files are published; more with `canopy-leaf share add`"},
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
    {.key = "network-key",
     .type = CFG_STRING,
     .min = 64,
     .max = 64,
     .arg = "HEX",
     .help = "Public key of the network: trust only super nodes it certified"},
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
  GOptionContext *oc = g_option_context_new("- run a Canopy leaf daemon");
  g_option_context_set_summary(oc, CLI_COMMANDS_HELP "\n\nWithout a command, canopy-leaf runs "
                                                     "the daemon with the options below.");
  g_option_context_set_description(oc, "Examples:\n  canopy-leaf --supernode 203.0.113.5:7400 "
                                       "--share ~/Music --state-dir ~/.canopy\n"
                                       "  canopy-leaf status --state-dir ~/.canopy\n"
                                       "  canopy-leaf search --state-dir ~/.canopy abbey road\n"
                                       "\nSee canopy-leaf(1).\n");
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
  const char *const *sn_list = cfg_get_list(conf, "supernode");
  const char *share = cfg_get_str(conf, "share");
  const char *state_dir = cfg_get_str(conf, "state-dir");
  const char *download_dir = cfg_get_str(conf, "download-dir");
  const char *const *ice_local = cfg_get_list(conf, "ice-local");
  if (nargs > 1) {
    fprintf(stderr, "canopy-leaf: unknown command '%s' (commands: %s)\n", args[1], CLI_COMMANDS);
    rc = CLI_EXIT_USAGE;
    goto out;
  }
  if (!sn_list || !sn_list[0] || !state_dir) {
    fprintf(stderr, "canopy-leaf: --supernode and --state-dir are required (see --help)\n");
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
  lf.sn_addr = g_strjoinv(", ", (gchar **)sn_list);
  lf.ctx = g_main_context_ref_thread_default();
  lf.loop = g_main_loop_new(lf.ctx, FALSE);
  lf.dialer = g_socket_client_new();
  /* Peers are dialed directly: no proxy (and no desktop settings lookup). */
  g_socket_client_set_enable_proxy(lf.dialer, FALSE);
  g_socket_client_set_timeout(lf.dialer, 5);
  lf.pending = g_hash_table_new(g_direct_hash, g_direct_equal);
  lf.tried = g_ptr_array_new_with_free_func(g_free);
  lf.uploads = g_hash_table_new(g_direct_hash, g_direct_equal);
  lf.rescan_ms = (uint64_t)cfg_get_int(conf, "rescan-s") * 1000;

  gchar *ctl_path = g_build_filename(state_dir, CONTROL_SOCKET_NAME, NULL);
  lf.ctl = control_server_new(ctl_path, lf.ctx, on_control, &lf, &err);
  g_free(ctl_path);
  if (!lf.ctl) {
    fprintf(stderr, "canopy-leaf: control socket: %s\n", err->message);
    goto out;
  }
  lf.shares = shareset_new(state_dir, lf.ctx, on_shares_changed, &lf);
  shareset_exclude(lf.shares, state_dir);
  if (share && !shareset_add_fixed(lf.shares, share, &err)) {
    fprintf(stderr, "canopy-leaf: %s\n", err->message);
    goto out;
  }
  shareset_load(lf.shares);
  lf.download_dir =
      download_dir ? g_strdup(download_dir) : g_build_filename(state_dir, "downloads", NULL);
  if (g_path_is_absolute(lf.download_dir) == FALSE) {
    gchar *cwd = g_get_current_dir();
    gchar *abs = g_build_filename(cwd, lf.download_dir, NULL);
    g_free(cwd);
    g_free(lf.download_dir);
    lf.download_dir = abs;
  }
  const char *network_key = cfg_get_str(conf, "network-key");
  uint8_t network_pk[IDENTITY_PK_LEN];
  if (network_key && !hex_decode(network_key, network_pk, sizeof network_pk)) {
    fprintf(stderr, "canopy-leaf: --network-key: '%s' is not 64 hex digits\n", network_key);
    goto out;
  }
  lf.server = server_new(lf.shares);
  server_use_tree_cache(lf.server, state_dir);
  lf.peers = peers_new(lf.ctx, &lf.id, &peers_cb, &lf);
  if (ice_local)
    peers_set_local_addrs(lf.peers, (char **)ice_local);
  /* The first scan runs before the sessions, so the first publish is the
   * whole manifest; later ones run in the background. */
  if (!shareset_scan_now(lf.shares, &err)) {
    fprintf(stderr, "canopy-leaf: %s\n", err->message);
    goto out;
  }
  LeafConfig cfg;
  leaf_config_defaults(&cfg);
  cfg.keepalive_ms = (uint64_t)cfg_get_int(conf, "keepalive-ms");
  cfg.supernodes = sn_list;
  if (network_key)
    cfg.network_pk = network_pk;
  cfg.unix_now = clock_unix_s; /* certificates, and believable group terms */
  lf.core = leaf_core_new(&cfg, rng_fill, NULL);
  hostfile_load(leaf_core_hosts(lf.core), state_dir, clock_now_ms());
  lf.state_dir = state_dir;
  size_t n;
  const LeafEntry *e = shareset_entries(lf.shares, &n);
  leaf_core_set_manifest(lf.core, e, n, clock_now_ms());
  for (guint i = 0; i < shareset_count(lf.shares); i++) {
    ShareInfo in;
    shareset_info(lf.shares, i, &in);
    if (in.error)
      continue;
    g_message("sharing %zu file%s from %s%s%s (%zu hashed, %zu from the hash cache)", in.files,
              in.files == 1 ? "" : "s", in.root, in.fixed ? "" : " as ", in.name, in.last.hashed,
              in.last.from_cache);
  }
  g_message("leaf %.16s… sharing %zu file%s from %u folder%s", lf.id_hex, n, n == 1 ? "" : "s",
            shareset_count(lf.shares), shareset_count(lf.shares) == 1 ? "" : "s");
  leaf_core_start(lf.core, clock_now_ms());
  leaf_run_actions(&lf);
  if (lf.rescan_ms)
    timer_arm(&lf.rescan, lf.ctx, clock_now_ms() + lf.rescan_ms, on_rescan, &lf);

  g_unix_signal_add(SIGINT, on_signal, lf.loop);
  g_unix_signal_add(SIGTERM, on_signal, lf.loop);
  daemon_conf = conf;
  g_unix_signal_add(SIGHUP, on_hup, &lf);
  g_main_loop_run(lf.loop);
  shutdown_links(&lf);
  rc = 0;
out:
  /* The tree reader first: the scans' connection, closing last, then
   * checkpoints the WAL away (it cannot while a reader holds it). */
  if (lf.server)
    server_use_tree_cache(lf.server, NULL);
  shareset_free(lf.shares); /* stops a scan in progress first */
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
  if (lf.tried)
    g_ptr_array_unref(lf.tried);
  if (lf.uploads)
    g_hash_table_destroy(lf.uploads);
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
  int rc = argc > 1 ? cli_main(argc, argv) : -1;
  return rc >= 0 ? rc : run_daemon(argc, argv);
}
