/* peers.c - ICE links between leaves, with the secure channel on top. */
#include "peers.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "ice.h"
#include "offergate.h"
#include "safename.h"
#include "session.h"
#include "wire.h"

/* How long a sent offer waits for the peer's answer (its gathering and two
 * trips through the super nodes). ICE's own deadline starts only with the
 * answer, so without this a source that never answers (gone silent, or
 * hostile) would hold a download's slot for good. */
#define PEERS_ANSWER_S 10
/* How long an inbound link (an offer we took) may take to find a path,
 * from the offer's arrival: our gathering (a STUN and a TURN exchange),
 * our answer's trip back, and the checks, which an honest offerer starts as
 * soon as the answer arrives; through cone NATs all that takes a fraction
 * of a second, relayed pairs about one more round trip. A hostile offerer
 * that never checks frees its slot after this, not after ICE's default
 * 15 s (issue 11, finding 8). */
#define PEERS_INBOUND_ICE_MS 6000
/* How long an open inbound (serving) link may go without a message or any
 * datagram from the downloader before we end it. A downloader asks for a
 * chunk each time one arrives, and its stream acknowledges what we send
 * while we send it, so an honest one is silent this long only if it has
 * nothing more to ask and nothing on its way (or its path is dead). A
 * downloader that is gone (killed, its laptop asleep, a
 * shutdown whose FIN never left) says nothing, and nothing else ends its
 * link: Bulk retransmits to a silent peer for good, the session's stall
 * check runs only while output is queued, and libnice runs without
 * keepalive checks (nat/TRANSPORT.md). Without this each such link would
 * keep one of that downloader's OFFERGATE_PER_PEER slots, so after a few it
 * could no longer download from us at all. The environment variable
 * CANOPY_UPLOAD_IDLE_MS (PEERS_IDLE_ENV) overrides it, for tests only. */
#define PEERS_UPLOAD_IDLE_MS 60000
#define PEERS_IDLE_ENV "CANOPY_UPLOAD_IDLE_MS"
/* Bytes of a peer's refusal text kept in our reason for the link's end. */
#define PEERS_REJECT_TEXT_MAX 100
/* channel_export label of the secret Bulk's datagram tags are keyed from
 * once the channel is open. */
#define PEERS_TAG_LABEL "canopy/ice/bulk-tag/v1"

struct PeerLink {
  Peers *owner;
  uint64_t tag;
  bool outbound;
  uint8_t peer[32];
  uint8_t sid[16];
  IcePeer *ice;
  Session *session;
  bool opened;
  bool closing;
  bool admitted;         /* inbound: holds a slot of the owner's OfferGate */
  bool refused;          /* outbound: the peer refused our offer (busy) */
  GSource *answer_timer; /* outbound, until the answer arrives */
  GSource *idle_timer;   /* inbound, once open: ends it when the peer is silent */
  uint64_t heard;        /* inbound: when it was last heard from (monotonic ms) */
  uint64_t datagrams;    /* inbound: ice_peer_datagrams_received then */
  uint64_t started;
  uint64_t setup_ms;
  char path_type[16];
  char path[200];
};

struct Peers {
  GMainContext *ctx;
  Identity self;
  PeersCallbacks cb;
  void *ud;
  GPtrArray *links; /* PeerLink*, owned */
  OfferGate *gate;  /* inbound offers' budgets */
  uint64_t next_session;
  uint64_t offers_refused;
  uint64_t idle_ms; /* PEERS_UPLOAD_IDLE_MS, or the test override */
  char *stun_host, *turn_host, *turn_user, *turn_pass;
  uint16_t stun_port, turn_port;
  char **local_addrs;
};

static void link_free(PeerLink *l)
{
  timer_disarm(&l->answer_timer);
  timer_disarm(&l->idle_timer);
  if (l->session) {
    Session *s = l->session;
    l->session = NULL;
    session_unref(s);
  }
  ice_peer_free(l->ice);
  g_free(l);
}

/* Ends a link once: tells the owner, then frees it from an idle callback,
 * since we may be inside one of its own callbacks right now. */
static gboolean link_reap(gpointer ud)
{
  link_free(ud);
  return G_SOURCE_REMOVE;
}

static void link_end(PeerLink *l, const char *reason)
{
  if (l->closing)
    return;
  l->closing = true;
  timer_disarm(&l->answer_timer);
  timer_disarm(&l->idle_timer);
  Peers *p = l->owner;
  g_ptr_array_remove(p->links, l); /* the array does not free: see peers_new */
  if (l->admitted)
    offergate_release(p->gate, l->peer);
  l->admitted = false;
  if (l->session)
    session_close(l->session, reason);
  if (p->cb.closed)
    p->cb.closed(l, reason, p->ud);
  GSource *idle = g_idle_source_new();
  g_source_set_callback(idle, link_reap, l, NULL);
  g_source_attach(idle, p->ctx);
  g_source_unref(idle);
}

Peers *peers_new(GMainContext *ctx, const Identity *self, const PeersCallbacks *cb, void *ud)
{
  Peers *p = g_new0(Peers, 1);
  p->ctx = ctx;
  p->self = *self;
  p->cb = *cb;
  p->ud = ud;
  p->links = g_ptr_array_new();
  p->idle_ms = PEERS_UPLOAD_IDLE_MS;
  const char *idle = getenv(PEERS_IDLE_ENV);
  if (idle && g_ascii_strtoull(idle, NULL, 10) > 0)
    p->idle_ms = g_ascii_strtoull(idle, NULL, 10);
  p->gate = offergate_new(PEERS_MAX_INBOUND, 0, 0, 0);
  if (!p->gate)
    g_error("out of memory"); /* as g_new0 would */
  return p;
}

/* Forgets STUN/TURN settings, wiping the TURN password. */
static void nat_clear(Peers *p)
{
  g_clear_pointer(&p->stun_host, g_free);
  g_clear_pointer(&p->turn_host, g_free);
  g_clear_pointer(&p->turn_user, g_free);
  if (p->turn_pass)
    sodium_memzero(p->turn_pass, strlen(p->turn_pass));
  g_clear_pointer(&p->turn_pass, g_free);
}

void peers_close_all(Peers *p, const char *reason)
{
  while (p->links->len)
    link_end(g_ptr_array_index(p->links, 0), reason);
}

void peers_free(Peers *p)
{
  if (!p)
    return;
  peers_close_all(p, "shutting down");
  g_ptr_array_unref(p->links);
  offergate_free(p->gate);
  identity_clear(&p->self);
  nat_clear(p);
  g_strfreev(p->local_addrs);
  g_free(p);
}

void peers_set_nat(Peers *p, const char *stun_host, uint16_t stun_port, const char *turn_host,
                   uint16_t turn_port, const char *turn_user, const char *turn_pass)
{
  nat_clear(p);
  p->stun_host = g_strdup(stun_host);
  p->stun_port = stun_port;
  p->turn_host = g_strdup(turn_host);
  p->turn_port = turn_port;
  p->turn_user = g_strdup(turn_user);
  p->turn_pass = g_strdup(turn_pass);
}

void peers_set_local_addrs(Peers *p, char **addrs)
{
  g_strfreev(p->local_addrs);
  p->local_addrs = g_strdupv(addrs);
}

uint64_t peers_offers_refused(const Peers *p)
{
  return p->offers_refused;
}

uint64_t peer_link_tag(const PeerLink *l)
{
  return l->tag;
}
bool peer_link_refused(const PeerLink *l)
{
  return l->refused;
}
bool peer_link_outbound(const PeerLink *l)
{
  return l->outbound;
}
const uint8_t *peer_link_peer(const PeerLink *l)
{
  return l->peer;
}
const char *peer_link_path_type(const PeerLink *l)
{
  return l->path_type;
}
const char *peer_link_path(const PeerLink *l)
{
  return l->path;
}
uint64_t peer_link_setup_ms(const PeerLink *l)
{
  return l->setup_ms;
}

bool peer_link_send(PeerLink *l, const uint8_t *msg, size_t len)
{
  return l->session && !l->closing && session_send(l->session, msg, len);
}

void peer_link_close(PeerLink *l, const char *reason)
{
  link_end(l, reason);
}

/* --- the secure session over the ICE stream --------------------------------- */

static gboolean idle_check(gpointer ud);

/* The datagram count is looked at every idle_ms / PEERS_IDLE_POLLS, so a
 * silent link ends at most that much after idle_ms. */
#define PEERS_IDLE_POLLS 4

static void idle_arm(PeerLink *l)
{
  uint64_t idle = l->owner->idle_ms;
  timer_arm(&l->idle_timer, l->owner->ctx,
            MIN(l->heard + idle, clock_now_ms() + MAX(idle / PEERS_IDLE_POLLS, 1)), idle_check, l);
}

/* An inbound link whose downloader sent nothing for idle_ms (no request,
 * no datagram: not even an ACK of what we send) is over: it frees its
 * offer-gate slot (link_end). */
static gboolean idle_check(gpointer ud)
{
  PeerLink *l = ud;
  uint64_t now = clock_now_ms();
  uint64_t got = ice_peer_datagrams_received(l->ice);
  if (got != l->datagrams) {
    l->datagrams = got;
    l->heard = MAX(l->heard, now);
  }
  if (now - l->heard < l->owner->idle_ms) {
    idle_arm(l);
    return G_SOURCE_REMOVE;
  }
  char why[96];
  g_snprintf(why, sizeof why, "the downloader sent nothing for %" G_GUINT64_FORMAT " ms",
             l->owner->idle_ms);
  link_end(l, why);
  return G_SOURCE_REMOVE;
}

static void on_session_opened(Session *s, void *ud)
{
  PeerLink *l = ud;
  if (memcmp(session_peer_id(s), l->peer, 32) != 0) {
    /* The path reached someone, but not the leaf the signalling named. */
    link_end(l, "the peer proved a different node id");
    return;
  }
  /* From here on Bulk's datagram tags are keyed from this channel, not
   * from the ICE passwords the super nodes relayed (nat/ice.h). */
  uint8_t secret[ICE_CHANNEL_SECRET_BYTES];
  if (!session_export(s, PEERS_TAG_LABEL, secret, sizeof secret)) {
    link_end(l, "cannot derive the datagram keys");
    return;
  }
  ice_peer_rekey(l->ice, secret, l->outbound);
  sodium_memzero(secret, sizeof secret);
  l->opened = true;
  l->setup_ms = clock_now_ms() - l->started;
  if (l->admitted)
    offergate_opened(l->owner->gate, l->peer);
  if (!l->outbound) {
    l->heard = clock_now_ms();
    l->datagrams = ice_peer_datagrams_received(l->ice);
    idle_arm(l);
  }
  if (l->owner->cb.opened)
    l->owner->cb.opened(l, l->owner->ud);
}

static void on_session_message(Session *s, const uint8_t *msg, size_t len, void *ud)
{
  PeerLink *l = ud;
  if (!l->outbound)
    l->heard = clock_now_ms(); /* the idle timer looks at it when it fires */
  if (l->owner->cb.message)
    l->owner->cb.message(l, msg, len, l->owner->ud);
}

static void on_session_closed(Session *s, const char *reason, void *ud)
{
  link_end(ud, reason);
}

static const SessionCallbacks link_session_cb = {on_session_opened, on_session_message,
                                                 on_session_closed};

/* --- ICE --------------------------------------------------------------------- */

static gboolean answer_overdue(gpointer ud)
{
  link_end(ud, "the peer did not answer the ICE offer within " G_STRINGIFY(PEERS_ANSWER_S) " s");
  return G_SOURCE_REMOVE;
}

static void on_local_ready(IcePeer *ice, const char *description, gpointer ud)
{
  PeerLink *l = ud;
  Peers *p = l->owner;
  uint8_t kind = l->outbound ? SIGNAL_OFFER : SIGNAL_ANSWER;
  if (!p->cb.signal(l->sid, kind, l->peer, description, p->ud)) {
    link_end(l, "cannot reach our super node for signalling");
    return;
  }
  if (l->outbound)
    timer_arm(&l->answer_timer, p->ctx, clock_now_ms() + PEERS_ANSWER_S * 1000, answer_overdue, l);
}

static void path_describe(PeerLink *l, const IcePath *path)
{
  g_strlcpy(l->path_type, path->relayed ? "relayed" : "direct", sizeof l->path_type);
  g_snprintf(l->path, sizeof l->path, "%s %s -> %s %s", path->local_type, path->local_addr,
             path->remote_type, path->remote_addr);
}

static void on_connected(IcePeer *ice, GIOStream *stream, const IcePath *path, gpointer ud)
{
  PeerLink *l = ud;
  Peers *p = l->owner;
  path_describe(l, path);
  g_info("ICE path to %02x%02x%02x%02x…: %s (%s)", l->peer[0], l->peer[1], l->peer[2], l->peer[3],
         l->path, l->path_type);
  l->session =
      session_new(stream, ++p->next_session, &p->self,
                  l->outbound ? CHANNEL_INITIATOR : CHANNEL_RESPONDER, p->ctx, &link_session_cb, l);
  if (!l->session)
    link_end(l, "cannot start the secure session");
}

/* What a download reports per source is the path at its end. */
static void on_path_changed(IcePeer *ice, const IcePath *path, gpointer ud)
{
  PeerLink *l = ud;
  path_describe(l, path);
  g_info("ICE path to %02x%02x%02x%02x… is now %s (%s)", l->peer[0], l->peer[1], l->peer[2],
         l->peer[3], l->path, l->path_type);
}

static void on_failed(IcePeer *ice, const char *reason, gpointer ud)
{
  PeerLink *l = ud;
  char why[256];
  g_snprintf(why, sizeof why, "no path through the NATs: %s%s", reason,
             l->owner->turn_host ? "" : " (and no TURN relay is configured)");
  link_end(l, why);
}

static const IceCallbacks ice_cb = {on_local_ready, on_connected, on_failed, on_path_changed};

static PeerLink *link_new(Peers *p, const uint8_t peer[32], bool outbound, uint64_t tag)
{
  PeerLink *l = g_new0(PeerLink, 1);
  l->owner = p;
  l->tag = tag;
  l->outbound = outbound;
  l->started = clock_now_ms();
  memcpy(l->peer, peer, 32);
  IceConfig cfg = {0};
  cfg.stun_host = p->stun_host;
  cfg.stun_port = p->stun_port;
  if (p->turn_host && p->turn_user && *p->turn_user) {
    cfg.turn_host = p->turn_host;
    cfg.turn_port = p->turn_port;
    cfg.turn_user = p->turn_user;
    cfg.turn_pass = p->turn_pass;
  }
  cfg.local_addrs = (const char *const *)p->local_addrs;
  if (!outbound)
    cfg.timeout_ms = PEERS_INBOUND_ICE_MS;
  g_ptr_array_add(p->links, l);
  l->ice = ice_peer_new(p->ctx, outbound, &cfg, &ice_cb, l);
  if (!l->ice) {
    link_end(l, "cannot start ICE");
    return NULL;
  }
  return l;
}

PeerLink *peers_connect(Peers *p, const uint8_t peer_id[32], uint64_t tag)
{
  PeerLink *l = link_new(p, peer_id, true, tag);
  if (l)
    randombytes_buf(l->sid, sizeof l->sid);
  return l;
}

static PeerLink *find_sid(Peers *p, const uint8_t sid[16])
{
  for (guint i = 0; i < p->links->len; i++) {
    PeerLink *l = g_ptr_array_index(p->links, i);
    if (memcmp(l->sid, sid, 16) == 0)
      return l;
  }
  return NULL;
}

void peers_on_signal(Peers *p, const uint8_t sid[16], uint8_t kind, const uint8_t src[32],
                     const char *text)
{
  PeerLink *l = find_sid(p, sid);
  GError *err = NULL;
  if (kind == SIGNAL_OFFER) {
    if (l)
      return; /* a copy of an offer we already took */
    OfferVerdict v = offergate_admit(p->gate, src, clock_now_ms());
    if (v != OFFERGATE_OK) {
      g_debug("ICE offer from %02x%02x%02x%02x… refused: %s", src[0], src[1], src[2], src[3],
              offergate_reason(v));
      p->offers_refused++;
      p->cb.signal(sid, SIGNAL_REJECT, src, offergate_reason(v), p->ud);
      return;
    }
    l = link_new(p, src, false, 0);
    if (!l) {
      offergate_release(p->gate, src);
      return;
    }
    l->admitted = true;
    memcpy(l->sid, sid, 16);
  } else if (!l || !l->outbound || memcmp(l->peer, src, 32) != 0) {
    return; /* not for a link of ours, or from someone else */
  } else if (kind == SIGNAL_REJECT) {
    /* The peer's words, cut on a character boundary: they go into the
     * download's error, which goes out as JSON. */
    char why[160];
    g_snprintf(why, sizeof why, "the peer refused: %.*s",
               (int)safename_utf8_cut(text, strlen(text), PEERS_REJECT_TEXT_MAX), text);
    l->refused = true;
    link_end(l, why);
    return;
  }
  timer_disarm(&l->answer_timer);
  if (!ice_peer_set_remote(l->ice, text, &err)) {
    char why[200];
    g_snprintf(why, sizeof why, "bad ICE description from the peer: %s", err->message);
    g_error_free(err);
    link_end(l, why);
  }
}
