/* ice.c - ICE (RFC 5245) between two leaves by libnice, TURN as the fallback.
 *
 * One reliable NiceAgent (PseudoTCP over the selected pair) with one stream
 * and one component per IcePeer. libnice emits its signals from inside its
 * own calls (nice_agent_gather_candidates, nice_agent_parse_remote_sdp) and
 * from its sources; the handlers here only record what happened and arm a
 * zero-delay dispatch source, which calls the user back from a clean stack.
 */
#include "ice.h"

#include <arpa/inet.h>
#include <nice/agent.h>
#include <string.h>

#define ICE_COMPONENT 1
/* libnice only accepts SDP media names it knows (it logs g_critical for any
 * other); "application" is the one that fits. */
#define ICE_STREAM_NAME "application"
/* Candidates accepted in one description; 8 KiB holds about 100 lines. */
#define ICE_MAX_CANDIDATES 100
/* RFC 5245 section 15.4: ufrag 4..256 and pwd 22..256 ice-chars;
 * section 15.1: foundation 1..32 ice-chars. */
#define ICE_UFRAG_MIN 4
#define ICE_UFRAG_MAX 256
#define ICE_PWD_MIN 22
#define ICE_PWD_MAX 256
#define ICE_FOUNDATION_MAX 32

/* ---- the stream handed to the caller ----
 *
 * libnice's NiceInputStream breaks one promise of GPollableInputStream: its
 * source wakes only when a socket is readable, never for bytes PseudoTCP
 * already holds. Data that arrives before the caller attaches its source
 * (the peer writes as soon as it is READY), or that a reader leaves behind
 * by taking one chunk per wakeup, would sit there until the next packet -
 * a STUN keepalive some 25 s later. CanopyIceInput wraps it with a
 * level-triggered source: ready while NiceInputStream says it is readable
 * (bytes in PseudoTCP or a readable socket) or while the pump has seen the
 * end of the stream, as a TCP socket's source is. Reads and the output
 * stream are libnice's own. */

#define CANOPY_TYPE_ICE_INPUT (canopy_ice_input_get_type())
G_DECLARE_FINAL_TYPE(CanopyIceInput, canopy_ice_input, CANOPY, ICE_INPUT, GInputStream)

struct _CanopyIceInput {
  GInputStream parent_instance;
  GPollableInputStream *inner; /* owned: libnice's NiceInputStream */
  gboolean kick;               /* end of stream or an error is waiting for a read */
};

static void canopy_ice_input_pollable_init(GPollableInputStreamInterface *iface);
G_DEFINE_FINAL_TYPE_WITH_CODE(CanopyIceInput, canopy_ice_input, G_TYPE_INPUT_STREAM,
                              G_IMPLEMENT_INTERFACE(G_TYPE_POLLABLE_INPUT_STREAM,
                                                    canopy_ice_input_pollable_init))

static gssize ice_input_read(GInputStream *s, void *buf, gsize count, GCancellable *c,
                             GError **error)
{
  CanopyIceInput *self = CANOPY_ICE_INPUT(s);
  self->kick = FALSE;
  return g_input_stream_read(G_INPUT_STREAM(self->inner), buf, count, c, error);
}

static gboolean ice_input_close(GInputStream *s, GCancellable *c, GError **error)
{
  CanopyIceInput *self = CANOPY_ICE_INPUT(s);
  return !self->inner || g_input_stream_close(G_INPUT_STREAM(self->inner), c, error);
}

static void ice_input_dispose(GObject *o)
{
  CanopyIceInput *self = CANOPY_ICE_INPUT(o);
  /* The parent's dispose closes the stream, which needs inner. */
  G_OBJECT_CLASS(canopy_ice_input_parent_class)->dispose(o);
  g_clear_object(&self->inner);
}

static gboolean ice_input_can_poll(GPollableInputStream *s)
{
  return TRUE;
}

static gboolean ice_input_is_readable(GPollableInputStream *s)
{
  CanopyIceInput *self = CANOPY_ICE_INPUT(s);
  return self->kick || g_pollable_input_stream_is_readable(self->inner);
}

static gssize ice_input_read_nonblocking(GPollableInputStream *s, void *buf, gsize count,
                                         GError **error)
{
  CanopyIceInput *self = CANOPY_ICE_INPUT(s);
  self->kick = FALSE;
  return g_pollable_input_stream_read_nonblocking(self->inner, buf, count, NULL, error);
}

typedef struct {
  GSource source;
  CanopyIceInput *stream; /* owned */
} LevelSource;

static gboolean level_prepare(GSource *src, gint *timeout)
{
  *timeout = -1;
  return ice_input_is_readable(G_POLLABLE_INPUT_STREAM(((LevelSource *)src)->stream));
}

static gboolean level_dispatch(GSource *src, GSourceFunc cb, gpointer ud)
{
  GPollableSourceFunc fn = (GPollableSourceFunc)(void (*)(void))cb;
  return fn ? fn(G_OBJECT(((LevelSource *)src)->stream), ud) : G_SOURCE_REMOVE;
}

static void level_finalize(GSource *src)
{
  g_object_unref(((LevelSource *)src)->stream);
}

static GSourceFuncs level_funcs = {level_prepare, NULL, level_dispatch, level_finalize, NULL, NULL};

static GSource *ice_input_create_source(GPollableInputStream *s, GCancellable *c)
{
  CanopyIceInput *self = CANOPY_ICE_INPUT(s);
  GSource *src = g_source_new(&level_funcs, sizeof(LevelSource));
  g_source_set_name(src, "CanopyIceInput");
  ((LevelSource *)src)->stream = g_object_ref(self);
  /* libnice's own source, for the wakeups when a socket turns readable. */
  GSource *sockets = g_pollable_input_stream_create_source(self->inner, NULL);
  g_source_set_dummy_callback(sockets);
  g_source_add_child_source(src, sockets);
  g_source_unref(sockets);
  if (c) {
    GSource *cs = g_cancellable_source_new(c);
    g_source_set_dummy_callback(cs);
    g_source_add_child_source(src, cs);
    g_source_unref(cs);
  }
  return src;
}

static void canopy_ice_input_pollable_init(GPollableInputStreamInterface *iface)
{
  iface->can_poll = ice_input_can_poll;
  iface->is_readable = ice_input_is_readable;
  iface->create_source = ice_input_create_source;
  iface->read_nonblocking = ice_input_read_nonblocking;
}

static void canopy_ice_input_class_init(CanopyIceInputClass *klass)
{
  G_OBJECT_CLASS(klass)->dispose = ice_input_dispose;
  G_INPUT_STREAM_CLASS(klass)->read_fn = ice_input_read;
  G_INPUT_STREAM_CLASS(klass)->close_fn = ice_input_close;
}

static void canopy_ice_input_init(CanopyIceInput *self) {}

#define CANOPY_TYPE_ICE_STREAM (canopy_ice_stream_get_type())
G_DECLARE_FINAL_TYPE(CanopyIceStream, canopy_ice_stream, CANOPY, ICE_STREAM, GIOStream)

struct _CanopyIceStream {
  GIOStream parent_instance;
  GIOStream *inner;   /* owned: libnice's NiceIOStream */
  CanopyIceInput *in; /* owned */
};

G_DEFINE_FINAL_TYPE(CanopyIceStream, canopy_ice_stream, G_TYPE_IO_STREAM)

static GInputStream *ice_stream_input(GIOStream *s)
{
  return G_INPUT_STREAM(CANOPY_ICE_STREAM(s)->in);
}

static GOutputStream *ice_stream_output(GIOStream *s)
{
  return g_io_stream_get_output_stream(CANOPY_ICE_STREAM(s)->inner);
}

static void ice_stream_dispose(GObject *o)
{
  CanopyIceStream *self = CANOPY_ICE_STREAM(o);
  G_OBJECT_CLASS(canopy_ice_stream_parent_class)->dispose(o); /* closes both sides */
  g_clear_object(&self->in);
  g_clear_object(&self->inner);
}

static void canopy_ice_stream_class_init(CanopyIceStreamClass *klass)
{
  G_OBJECT_CLASS(klass)->dispose = ice_stream_dispose;
  G_IO_STREAM_CLASS(klass)->get_input_stream = ice_stream_input;
  G_IO_STREAM_CLASS(klass)->get_output_stream = ice_stream_output;
}

static void canopy_ice_stream_init(CanopyIceStream *self) {}

/* Takes over the caller's reference on inner. */
static CanopyIceStream *ice_stream_new(GIOStream *inner)
{
  CanopyIceStream *self = g_object_new(CANOPY_TYPE_ICE_STREAM, NULL);
  self->inner = inner;
  self->in = g_object_new(CANOPY_TYPE_ICE_INPUT, NULL);
  self->in->inner = g_object_ref(G_POLLABLE_INPUT_STREAM(g_io_stream_get_input_stream(inner)));
  return self;
}

/* ---- the peer ---- */

struct IcePeer {
  GMainContext *ctx; /* borrowed */
  NiceAgent *agent;
  guint stream_id;
  IceCallbacks cb;
  gpointer ud;
  guint timeout_ms;

  gboolean turn_configured;
  gboolean turn_missing; /* TURN configured, gathering ended without a relay */
  /* TURN server held back until STUN discovery is over (see
   * on_gathering_done); NULL once handed to libnice. */
  char *turn_host, *turn_user, *turn_pass;
  guint16 turn_port;
  gboolean remote_set;
  char *local_desc;    /* owned, once gathering is done */
  CanopyIceStream *io; /* owned; handed out once READY */
  IcePath path;
  char *fail_reason; /* owned, once failed */

  /* Events waiting for the dispatch source, and what was already said. */
  gboolean due_local_ready, due_connected, due_failed;
  gboolean said_local_ready, said_connected, said_failed;

  GSource *dispatch_src; /* slots: see slot_arm */
  GSource *timeout_src;
  GSource *pump_src; /* see pump_cb */
  gboolean dispatching;
  gboolean dead; /* ice_peer_free was called during a callback */
};

/* ---- the one timer helper: *slot owns the armed source ---- */

static void slot_disarm(GSource **slot)
{
  if (*slot) {
    g_source_destroy(*slot);
    g_source_unref(*slot);
    *slot = NULL;
  }
}

/* fn must return G_SOURCE_REMOVE and call slot_fired(slot) first, so that
 * it may re-arm the same slot. */
static void slot_arm(GSource **slot, GMainContext *ctx, guint delay_ms, GSourceFunc fn,
                     gpointer data)
{
  slot_disarm(slot);
  GSource *src = g_timeout_source_new(delay_ms);
  g_source_set_callback(src, fn, data, NULL);
  g_source_attach(src, ctx);
  *slot = src;
}

static void slot_fired(GSource **slot)
{
  /* The source is being dispatched and goes away when fn returns
   * G_SOURCE_REMOVE; only the slot's reference is left to drop. */
  if (*slot) {
    g_source_unref(*slot);
    *slot = NULL;
  }
}

/* ---- events ---- */

static gboolean dispatch_cb(gpointer data);

static void schedule(IcePeer *p)
{
  if (!p->dispatch_src)
    slot_arm(&p->dispatch_src, p->ctx, 0, dispatch_cb, p);
}

static void fail(IcePeer *p, const char *reason)
{
  if (p->said_failed || p->due_failed)
    return;
  if (p->turn_missing)
    p->fail_reason = g_strdup_printf(
        "%s (TURN server gave no relay candidate (bad or expired credentials?))", reason);
  else
    p->fail_reason = g_strdup(reason);
  p->due_failed = TRUE;
  slot_disarm(&p->timeout_src);
  schedule(p);
}

static const char *cand_type(NiceCandidateType t)
{
  switch (t) {
  case NICE_CANDIDATE_TYPE_HOST:
    return "host";
  case NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE:
    return "srflx";
  case NICE_CANDIDATE_TYPE_PEER_REFLEXIVE:
    return "prflx";
  case NICE_CANDIDATE_TYPE_RELAYED:
    return "relay";
  }
  return "unknown";
}

static void format_addr(const NiceAddress *a, char *out, size_t cap)
{
  char ip[INET6_ADDRSTRLEN];
  nice_address_to_string(a, ip);
  if (nice_address_ip_version(a) == 6)
    g_snprintf(out, cap, "[%s]:%u", ip, nice_address_get_port(a));
  else
    g_snprintf(out, cap, "%s:%u", ip, nice_address_get_port(a));
}

static gboolean turn_add(IcePeer *p)
{
  return nice_agent_set_relay_info(p->agent, p->stream_id, ICE_COMPONENT, p->turn_host,
                                   p->turn_port, p->turn_user, p->turn_pass,
                                   NICE_RELAY_TYPE_TURN_UDP);
}

/* Host candidates TURN discovery will start from: UDP, same IP version as
 * the server (what nice_agent_set_relay_info looks for). */
static guint turn_bases(IcePeer *p)
{
  NiceAddress server;
  nice_address_init(&server);
  nice_address_set_from_string(&server, p->turn_host);
  guint n = 0;
  GSList *cands = nice_agent_get_local_candidates(p->agent, p->stream_id, ICE_COMPONENT);
  for (GSList *l = cands; l; l = l->next) {
    NiceCandidate *c = l->data;
    if (c->type == NICE_CANDIDATE_TYPE_HOST && c->transport == NICE_CANDIDATE_TRANSPORT_UDP &&
        nice_address_ip_version(&c->addr) == nice_address_ip_version(&server))
      n++;
  }
  g_slist_free_full(cands, (GDestroyNotify)nice_candidate_free);
  return n;
}

static void turn_forget(IcePeer *p)
{
  g_clear_pointer(&p->turn_host, g_free);
  g_clear_pointer(&p->turn_user, g_free);
  if (p->turn_pass) {
    explicit_bzero(p->turn_pass, strlen(p->turn_pass));
    g_clear_pointer(&p->turn_pass, g_free);
  }
}

static void on_gathering_done(NiceAgent *agent, guint stream_id, gpointer data)
{
  IcePeer *p = data;
  if (stream_id != p->stream_id || p->local_desc)
    return;
  /* libnice 0.1.21 checks an incoming STUN reply against the first
   * discovery on its socket only. Server-reflexive discovery sends classic
   * RFC 3489 requests (no magic cookie), and its resolver always queues the
   * STUN discovery behind a TURN one, whose RFC 5389 agent rejects the
   * cookie-less reply: with both servers set the srflx reply is dropped,
   * gathering stalls about 2 s for the timeout, and a refused TURN
   * allocation leaves no srflx candidate at all. So STUN runs first, alone;
   * TURN is added once it is over (libnice starts discovery for a relay
   * added while gathering has started) and a second gathering-done
   * follows. */
  if (p->turn_host) {
    gboolean started = turn_bases(p) > 0 && turn_add(p);
    turn_forget(p);
    if (started)
      return;
    g_warning("ICE: could not start TURN discovery");
  }

  gboolean have_relay = FALSE;
  GSList *cands = nice_agent_get_local_candidates(agent, stream_id, ICE_COMPONENT);
  for (GSList *l = cands; l; l = l->next)
    if (((NiceCandidate *)l->data)->type == NICE_CANDIDATE_TYPE_RELAYED)
      have_relay = TRUE;
  g_slist_free_full(cands, (GDestroyNotify)nice_candidate_free);
  if (p->turn_configured && !have_relay) {
    /* libnice says nothing when the allocation is refused (a 401 for a
     * wrong or expired REST credential): this is the only sign. */
    p->turn_missing = TRUE;
    g_warning("TURN server gave no relay candidate (bad or expired credentials?)");
  }

  char *sdp = nice_agent_generate_local_sdp(agent);
  if (!sdp || strlen(sdp) > ICE_DESCRIPTION_MAX) {
    g_free(sdp);
    fail(p, "local description exceeds " G_STRINGIFY(ICE_DESCRIPTION_MAX) " bytes");
    return;
  }
  p->local_desc = sdp;
  p->due_local_ready = TRUE;
  schedule(p);
}

static void on_state_changed(NiceAgent *agent, guint stream_id, guint component_id, guint state,
                             gpointer data)
{
  IcePeer *p = data;
  if (stream_id != p->stream_id || component_id != ICE_COMPONENT)
    return;
  g_debug("ICE component %s", nice_component_state_to_string(state));

  if (state == NICE_COMPONENT_STATE_FAILED) {
    fail(p, p->said_connected || p->due_connected ? "ICE path lost (no reply to keepalives)"
                                                  : "ICE failed: no candidate pair worked");
    return;
  }
  /* CONNECTED already has a working, selected pair: the stream is usable
   * and libnice moves PseudoTCP along if a better pair is nominated later.
   * Waiting for READY would add the time the unreachable private-address
   * pairs take to fail (about 2 s across NATs) to every connection. */
  if ((state != NICE_COMPONENT_STATE_READY && state != NICE_COMPONENT_STATE_CONNECTED) ||
      p->due_connected || p->said_connected || p->due_failed || p->said_failed)
    return;

  NiceCandidate *local = NULL, *remote = NULL;
  if (!nice_agent_get_selected_pair(agent, stream_id, component_id, &local, &remote)) {
    fail(p, "ICE ready without a selected pair");
    return;
  }
  p->path.local_type = cand_type(local->type);
  p->path.remote_type = cand_type(remote->type);
  format_addr(&local->addr, p->path.local_addr, sizeof p->path.local_addr);
  format_addr(&remote->addr, p->path.remote_addr, sizeof p->path.remote_addr);
  p->path.relayed =
      local->type == NICE_CANDIDATE_TYPE_RELAYED || remote->type == NICE_CANDIDATE_TYPE_RELAYED;

  /* The session runs a non-blocking protocol over these; libnice documents
   * both as pollable, and the rest of Canopy relies on it. */
  GIOStream *io = G_IO_STREAM(p->io);
  g_assert(G_IS_POLLABLE_INPUT_STREAM(g_io_stream_get_input_stream(io)));
  g_assert(G_IS_POLLABLE_OUTPUT_STREAM(g_io_stream_get_output_stream(io)));
  g_assert(
      g_pollable_input_stream_can_poll(G_POLLABLE_INPUT_STREAM(g_io_stream_get_input_stream(io))));
  g_assert(g_pollable_output_stream_can_poll(
      G_POLLABLE_OUTPUT_STREAM(g_io_stream_get_output_stream(io))));

  slot_disarm(&p->timeout_src);
  p->due_connected = TRUE;
  schedule(p);
}

/* In a reliable agent nothing reads the component's sockets unless a read
 * is in progress: libnice's socket callback (component_io_cb) returns at
 * once when there is neither an I/O callback nor a reader's buffer, and the
 * sockets sit on a private context of libnice's that only reads iterate.
 * So connectivity checks, keepalives and PseudoTCP ACKs go unanswered while
 * the application is not reading (nice_agent_attach_recv is no way out: with
 * a NULL callback the socket sources spin without reading, with a callback
 * it would take the data away from the GIOStream, and a read then iterates
 * the caller's context from inside itself).
 *
 * The pump is a read with room for zero bytes, run whenever a socket of the
 * component is readable: it takes in every STUN packet and feeds PseudoTCP
 * segments to PseudoTCP, and stops at the first byte of application data,
 * which stays in PseudoTCP's buffer for the GIOStream's reader. */
static gboolean pump_cb(GObject *stream, gpointer data)
{
  IcePeer *p = data;
  GInputVector none = {NULL, 0};
  NiceInputMessage msg = {&none, 0, NULL, 0};
  GError *err = NULL;
  /* -1 and WOULD_BLOCK: sockets drained. 1: application data is waiting in
   * PseudoTCP (the reader's source sees it). 0: the peer closed PseudoTCP,
   * or another error: only a read reports it, so wake the reader. */
  int n = nice_agent_recv_messages_nonblocking(p->agent, p->stream_id, ICE_COMPONENT, &msg, 1, NULL,
                                               &err);
  if (n == 0 || (n < 0 && !g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)))
    p->io->in->kick = TRUE;
  g_clear_error(&err);
  return G_SOURCE_CONTINUE;
}

static void pump_start(IcePeer *p)
{
  GPollableInputStream *in = p->io->in->inner;
  p->pump_src = g_pollable_input_stream_create_source(in, NULL);
  g_source_set_callback(p->pump_src, G_SOURCE_FUNC(pump_cb), p, NULL);
  g_source_attach(p->pump_src, p->ctx);
}

static gboolean timeout_cb(gpointer data)
{
  IcePeer *p = data;
  slot_fired(&p->timeout_src);
  char reason[80];
  g_snprintf(reason, sizeof reason, "no ICE pair became ready within %u ms", p->timeout_ms);
  fail(p, reason);
  return G_SOURCE_REMOVE;
}

static void peer_destroy(IcePeer *p);

static gboolean dispatch_cb(gpointer data)
{
  IcePeer *p = data;
  slot_fired(&p->dispatch_src);
  p->dispatching = TRUE;

  /* Once failed, nothing else is said: a path that was never announced is
   * not announced on its way out. */
  if (p->due_failed) {
    p->due_local_ready = p->due_connected = FALSE;
  }
  if (p->due_local_ready) {
    p->due_local_ready = FALSE;
    p->said_local_ready = TRUE;
    if (p->cb.local_ready)
      p->cb.local_ready(p, p->local_desc, p->ud);
  }
  /* A pair could in theory be ready before our own gathering ends (checks
   * run on the host candidates meanwhile); the description goes out first
   * all the same. */
  if (!p->dead && p->due_connected && p->said_local_ready && !p->due_failed) {
    p->due_connected = FALSE;
    p->said_connected = TRUE;
    if (p->cb.connected)
      p->cb.connected(p, G_IO_STREAM(p->io), &p->path, p->ud);
  }
  if (!p->dead && p->due_failed) {
    p->due_failed = FALSE;
    p->said_failed = TRUE;
    if (p->cb.failed)
      p->cb.failed(p, p->fail_reason, p->ud);
  }

  p->dispatching = FALSE;
  if (p->dead)
    peer_destroy(p);
  return G_SOURCE_REMOVE;
}

/* ---- life cycle ---- */

static gboolean numeric_address(const char *s)
{
  NiceAddress a;
  nice_address_init(&a);
  return s && *s && nice_address_set_from_string(&a, s);
}

IcePeer *ice_peer_new(GMainContext *ctx, gboolean controlling, const IceConfig *cfg,
                      const IceCallbacks *cb, gpointer ud)
{
  static const IceConfig none = {0};
  g_return_val_if_fail(ctx != NULL, NULL);
  if (!cfg)
    cfg = &none;

  if (cfg->stun_host && !numeric_address(cfg->stun_host)) {
    g_warning("ICE: STUN server '%s' is not a numeric address", cfg->stun_host);
    return NULL;
  }
  if (cfg->turn_host && (!numeric_address(cfg->turn_host) || !cfg->turn_user || !cfg->turn_pass)) {
    g_warning("ICE: TURN server needs a numeric address, a user and a password");
    return NULL;
  }
  for (const char *const *a = cfg->local_addrs; a && *a; a++)
    if (!numeric_address(*a)) {
      g_warning("ICE: local address '%s' is not a numeric address", *a);
      return NULL;
    }

  IcePeer *p = g_new0(IcePeer, 1);
  p->ctx = ctx;
  if (cb)
    p->cb = *cb;
  p->ud = ud;
  p->timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : ICE_DEFAULT_TIMEOUT_MS;
  p->turn_configured = cfg->turn_host != NULL;

  p->agent = nice_agent_new_reliable(ctx, NICE_COMPATIBILITY_RFC5245);
  if (!p->agent)
    goto fail;
  /* UPnP is on by default and would ask the LAN's router for mappings;
   * ICE-TCP candidates do not combine with reliable mode. */
  g_object_set(p->agent, "controlling-mode", controlling, "upnp", FALSE, "ice-tcp", FALSE,
               "ice-udp", TRUE, NULL);
  if (cfg->stun_host)
    g_object_set(p->agent, "stun-server", cfg->stun_host, "stun-server-port",
                 (guint)(cfg->stun_port ? cfg->stun_port : ICE_DEFAULT_STUN_PORT), NULL);
  for (const char *const *a = cfg->local_addrs; a && *a; a++) {
    NiceAddress addr;
    nice_address_init(&addr);
    nice_address_set_from_string(&addr, *a);
    nice_agent_add_local_address(p->agent, &addr);
  }

  p->stream_id = nice_agent_add_stream(p->agent, 1);
  if (p->stream_id == 0 || !nice_agent_set_stream_name(p->agent, p->stream_id, ICE_STREAM_NAME))
    goto fail;
  GIOStream *nice_io = nice_agent_get_io_stream(p->agent, p->stream_id, ICE_COMPONENT);
  if (!nice_io)
    goto fail;
  p->io = ice_stream_new(nice_io);
  pump_start(p);
  if (cfg->turn_host) {
    p->turn_host = g_strdup(cfg->turn_host);
    p->turn_port = cfg->turn_port ? cfg->turn_port : ICE_DEFAULT_STUN_PORT;
    p->turn_user = g_strdup(cfg->turn_user);
    p->turn_pass = g_strdup(cfg->turn_pass);
    /* Without STUN there is nothing to wait for (on_gathering_done). */
    if (!cfg->stun_host) {
      gboolean ok = turn_add(p);
      turn_forget(p);
      if (!ok)
        goto fail;
    }
  }

  g_signal_connect(p->agent, "candidate-gathering-done", G_CALLBACK(on_gathering_done), p);
  g_signal_connect(p->agent, "component-state-changed", G_CALLBACK(on_state_changed), p);
  /* FALSE when there is no local address at all (a namespace with only
   * loopback and no IceConfig.local_addrs). */
  if (!nice_agent_gather_candidates(p->agent, p->stream_id)) {
    g_warning("ICE: cannot gather candidates (no usable local address?)");
    goto fail;
  }
  return p;

fail:
  peer_destroy(p);
  return NULL;
}

static void peer_destroy(IcePeer *p)
{
  slot_disarm(&p->dispatch_src);
  slot_disarm(&p->timeout_src);
  slot_disarm(&p->pump_src);
  g_clear_object(&p->io);
  if (p->agent) {
    g_signal_handlers_disconnect_by_data(p->agent, p);
    /* Removing the stream closes any NiceIOStream a caller still holds;
     * close_async then releases TURN allocations (a refresh with lifetime
     * 0) and holds the agent until that is done. Its completion is
     * delivered on the thread-default context, so make that ours. */
    if (p->stream_id)
      nice_agent_remove_stream(p->agent, p->stream_id);
    g_main_context_push_thread_default(p->ctx);
    nice_agent_close_async(p->agent, NULL, NULL);
    g_main_context_pop_thread_default(p->ctx);
    g_object_unref(p->agent);
  }
  turn_forget(p);
  g_free(p->local_desc);
  g_free(p->fail_reason);
  g_free(p);
}

void ice_peer_free(IcePeer *p)
{
  if (!p)
    return;
  if (p->dispatching) {
    /* Called from one of our callbacks: dispatch_cb finishes the job. */
    p->dead = TRUE;
    return;
  }
  peer_destroy(p);
}

/* ---- the remote description ---- */

static gboolean ice_chars(const char *s, size_t min, size_t max)
{
  size_t n = strlen(s);
  if (n < min || n > max)
    return FALSE;
  for (size_t i = 0; i < n; i++)
    if (!g_ascii_isalnum(s[i]) && s[i] != '+' && s[i] != '/')
      return FALSE;
  return TRUE;
}

/* Decimal digits only (no sign, no space), value in [min, max]. */
static gboolean dec(const char *s, guint64 min, guint64 max)
{
  size_t n = strlen(s);
  if (n == 0 || n > 10)
    return FALSE;
  guint64 v = 0;
  for (size_t i = 0; i < n; i++) {
    if (!g_ascii_isdigit(s[i]))
      return FALSE;
    v = v * 10 + (guint64)(s[i] - '0');
  }
  return v >= min && v <= max;
}

/* Numeric IPv4 or IPv6, no scope id, no brackets. */
static gboolean ip_literal(const char *s)
{
  unsigned char buf[16];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* "<foundation> 1 UDP <priority> <ip> <port> typ <type> [raddr <ip> rport
 * <port>]", the text after "a=candidate:". */
static gboolean candidate_ok(const char *s)
{
  gboolean ok = FALSE;
  char **t = g_strsplit(s, " ", 0);
  guint n = g_strv_length(t);
  if (n != 8 && n != 12)
    goto out;
  if (!ice_chars(t[0], 1, ICE_FOUNDATION_MAX) || strcmp(t[1], "1") != 0 ||
      g_ascii_strcasecmp(t[2], "UDP") != 0 || !dec(t[3], 1, G_MAXUINT32) || !ip_literal(t[4]) ||
      !dec(t[5], 1, 65535) || strcmp(t[6], "typ") != 0)
    goto out;
  if (strcmp(t[7], "host") != 0 && strcmp(t[7], "srflx") != 0 && strcmp(t[7], "prflx") != 0 &&
      strcmp(t[7], "relay") != 0)
    goto out;
  if (n == 12 && (strcmp(t[8], "raddr") != 0 || !ip_literal(t[9]) || strcmp(t[10], "rport") != 0 ||
                  !dec(t[11], 0, 65535)))
    goto out;
  ok = TRUE;
out:
  g_strfreev(t);
  return ok;
}

/* Checks text against the format in ice.h; on success *ufrag (owned) is the
 * remote ufrag. */
static gboolean description_check(const char *text, char **ufrag, GError **error)
{
  size_t len = strnlen(text, ICE_DESCRIPTION_MAX + 1);
  if (len > ICE_DESCRIPTION_MAX) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "description longer than %d bytes",
                ICE_DESCRIPTION_MAX);
    return FALSE;
  }
  for (size_t i = 0; i < len; i++)
    if (text[i] != '\n' && (text[i] < 0x20 || text[i] > 0x7e)) {
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                  "description has a control or non-ASCII byte at offset %zu", i);
      return FALSE;
    }

  char **lines = g_strsplit(text, "\n", 0);
  guint n = g_strv_length(lines);
  /* A final '\n' leaves one empty string behind; it is the only empty line
   * allowed. */
  if (n > 0 && lines[n - 1][0] == '\0')
    n--;
  const char *why = NULL;
  guint bad = 0, cands = 0;
  gboolean have_pwd = FALSE;
  char *uf = NULL;

  for (guint i = 0; i < n && !why; i++) {
    const char *l = lines[i];
    bad = i + 1;
    if (i == 0) {
      char **t = g_strsplit(l, " ", 0);
      if (g_strv_length(t) != 3 || strcmp(t[0], "m=" ICE_STREAM_NAME) != 0 ||
          !dec(t[1], 0, 65535) || strcmp(t[2], "ICE/SDP") != 0)
        why = "first line is not 'm=" ICE_STREAM_NAME " <port> ICE/SDP'";
      g_strfreev(t);
    } else if (i == 1 && g_str_has_prefix(l, "c=IN IP4 ")) {
      if (!ip_literal(l + strlen("c=IN IP4 ")))
        why = "bad address on the c= line";
    } else if (g_str_has_prefix(l, "a=ice-ufrag:")) {
      if (uf)
        why = "second a=ice-ufrag line";
      else if (!ice_chars(l + 12, ICE_UFRAG_MIN, ICE_UFRAG_MAX))
        why = "bad a=ice-ufrag";
      else
        uf = g_strdup(l + 12);
    } else if (g_str_has_prefix(l, "a=ice-pwd:")) {
      if (have_pwd)
        why = "second a=ice-pwd line";
      else if (!ice_chars(l + 10, ICE_PWD_MIN, ICE_PWD_MAX))
        why = "bad a=ice-pwd";
      have_pwd = TRUE;
    } else if (g_str_has_prefix(l, "a=candidate:")) {
      if (++cands > ICE_MAX_CANDIDATES)
        why = "too many candidates";
      else if (!candidate_ok(l + 12))
        why = "bad a=candidate line";
    } else {
      why = l[0] ? "unexpected line" : "empty line";
    }
  }
  g_strfreev(lines);

  if (!why) {
    bad = 0;
    if (n == 0)
      why = "empty description";
    else if (!uf || !have_pwd)
      why = "no a=ice-ufrag or a=ice-pwd";
    else if (cands == 0)
      why = "no candidate";
  }
  if (why) {
    g_free(uf);
    if (bad)
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "description line %u: %s", bad, why);
    else
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "description: %s", why);
    return FALSE;
  }
  *ufrag = uf;
  return TRUE;
}

gboolean ice_peer_set_remote(IcePeer *p, const char *description, GError **error)
{
  g_return_val_if_fail(p != NULL && description != NULL, FALSE);
  if (p->remote_set) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "remote description already set");
    return FALSE;
  }
  if (p->said_failed || p->due_failed) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "ICE attempt already failed");
    return FALSE;
  }

  char *ufrag = NULL;
  if (!description_check(description, &ufrag, error))
    return FALSE;

  /* Our own description handed back (a signalling loop) would have the
   * agent check pairs against itself. */
  char *own_ufrag = NULL, *own_pwd = NULL;
  gboolean own = nice_agent_get_local_credentials(p->agent, p->stream_id, &own_ufrag, &own_pwd) &&
                 g_strcmp0(own_ufrag, ufrag) == 0;
  g_free(own_ufrag);
  g_free(own_pwd);
  g_free(ufrag);
  if (own) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "description is our own");
    return FALSE;
  }

  p->remote_set = TRUE;
  /* The text is exactly what libnice's parser handles well, so the only
   * failure left is candidates it declines (no local candidate of that
   * address family, say). */
  int added = nice_agent_parse_remote_sdp(p->agent, description);
  if (added <= 0) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                "libnice took no candidate from the remote description (%d)", added);
    return FALSE;
  }
  if (!p->due_connected && !p->said_connected && !p->due_failed)
    slot_arm(&p->timeout_src, p->ctx, p->timeout_ms, timeout_cb, p);
  return TRUE;
}

/* ---- TURN credentials ---- */

void ice_turn_credentials(const char *secret, const char *name, guint64 expiry_unix, char **user,
                          char **pass)
{
  g_return_if_fail(secret && name && user && pass);
  *user = g_strdup_printf("%" G_GUINT64_FORMAT ":%s", expiry_unix, name);
  GHmac *h = g_hmac_new(G_CHECKSUM_SHA1, (const guchar *)secret, strlen(secret));
  g_hmac_update(h, (const guchar *)*user, -1);
  guint8 digest[20];
  gsize dlen = sizeof digest;
  g_hmac_get_digest(h, digest, &dlen);
  g_hmac_unref(h);
  *pass = g_base64_encode(digest, dlen);
}
