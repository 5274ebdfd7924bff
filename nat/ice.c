/* ice.c - ICE (RFC 5245) between two leaves by libnice, TURN as the fallback.
 *
 * One non-reliable NiceAgent with one stream and one component per IcePeer;
 * the byte stream over the selected pair is nat/bulk.c's (bulk_stream.h),
 * not libnice's PseudoTCP, whose fixed 60 KB window and Reno loss response
 * cost 20-50x against TCP through lossy NATs (nat/TRANSPORT.md). libnice emits its signals from
 * inside its own calls (nice_agent_gather_candidates, nice_agent_parse_remote_sdp) and from its
 * sources; the handlers here only record what happened and arm a zero-delay dispatch source, which
 * calls the user back from a clean stack.
 */
#include "ice.h"

#include "bulk_stream.h"
#include "candidate.h"
#include "pair_socket.h"
#include "udp_batch.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <nice/agent.h>
#include <sodium.h>
#include <string.h>

#define ICE_COMPONENT 1
/* libnice only accepts SDP media names it knows (it logs g_critical for any
 * other); "application" is the one that fits. */
#define ICE_STREAM_NAME "application"
/* Candidate lines a description may have (8 KiB holds about 100); of those
 * at most CANDIDATE_MAX_REMOTE are handed to libnice (candidate.h). */
#define ICE_MAX_CANDIDATES 100
/* RFC 5245 section 15.4: ufrag 4..256 and pwd 22..256 ice-chars;
 * section 15.1: foundation 1..32 ice-chars. */
#define ICE_UFRAG_MIN 4
#define ICE_UFRAG_MAX 256
#define ICE_PWD_MIN 22
#define ICE_PWD_MAX 256
#define ICE_FOUNDATION_MAX 32
/* Candidate pairs libnice keeps on its check list (its
 * "max-connectivity-checks"; RFC 8445 section 6.1.2.5 suggests 100); it
 * prunes the lowest-priority pairs beyond. With CANDIDATE_MAX_REMOTE remote
 * candidates and a few local ones this is every pair an honest pair of
 * hosts forms, and it bounds what one offer makes us send: each pair's
 * check is sent at most three times (libnice's retransmissions), so one
 * offer costs at most 3 * ICE_MAX_CHECK_PAIRS Binding requests plus the
 * keepalives of the pair that wins. */
#define ICE_MAX_CHECK_PAIRS 30u
/* Ta, the pacing of libnice's gathering and connectivity checks (one STUN
 * transaction per tick; libnice's default 20 ms). Gathering here is a STUN
 * then a TURN exchange, and the working pair is often a few checks down
 * the list, so each side spent ~60 ms in gathering ticks and the checks as
 * much again at 0 ms RTT. 5 ms is RFC 8445's floor (section 14.2): a few
 * hundred ~100-byte packets a second during set-up. */
#define ICE_TA_MS 5u

/* Datagram size, tag included, that Bulk assumes every path carries. */
#define ICE_DATAGRAM 1350
/* What it probes for on a direct pair: a 1500-byte IP packet, the
 * Ethernet MTU most of the internet carries, less IPv4 (20) or IPv6 (40)
 * and UDP (8) headers. */
#define ICE_DATAGRAM_MAX_V4 1472
#define ICE_DATAGRAM_MAX_V6 1452

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
  gboolean allow_loopback; /* we gather on loopback: loopback candidates are checked */
  char *local_desc;        /* owned, once gathering is done */
  GIOStream *io;           /* owned: bulk_stream over the agent, handed out once connected */
  /* A direct pair's datagrams bypass libnice's one-call-per-datagram send
   * (see batch_select); NULL for a relayed pair or before one is chosen. */
  UdpBatch *batch;
  GSocket *batch_sock; /* owned ref: keeps the batch's fd open */
  /* ... and its incoming datagrams bypass libnice's read loop once both
   * sides are past their checks (see pair_arm). */
  GSocketAddress *pair_remote; /* owned, with batch */
  PairSocket *pair_sock;
  UdpBatch *big_batch;    /* on pair_sock: datagrams over ICE_DATAGRAM */
  GSource *pair_src;      /* slot: opens pair_sock */
  GSource *pair_drop_src; /* slot: closes it (a STUN check came to it) */
  guint pair_backoff_ms;  /* wait before opening it again */
  gboolean peer_heard;    /* Bulk accepted a datagram from the peer */
  gboolean in_batch;      /* pair_sock is passing a read batch to Bulk */
  gboolean probe_path;    /* larger datagrams may be tried (no TURN server in between) */
  IcePath path;
  char *fail_reason; /* owned, once failed */

  /* Events waiting for the dispatch source, and what was already said. */
  gboolean due_local_ready, due_connected, due_failed, due_path_changed;
  gboolean said_local_ready, said_connected, said_failed;

  GSource *dispatch_src; /* slots: see slot_arm */
  GSource *timeout_src;
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

/* A datagram stream loses what its socket cannot hold while the process is
 * busy elsewhere: the kernel's default receive buffer (208 KiB) is 1.5 ms at
 * 150 MB/s, and a receiver descheduled for longer drops packets TCP would
 * have kept. Ask for more on the selected pair's socket; the kernel caps it
 * at net.core.rmem_max / wmem_max without privileges. */
#define ICE_SOCKET_BUFFER (4 << 20)
static void socket_buffers(IcePeer *p)
{
  GSocket *sock = nice_agent_get_selected_socket(p->agent, p->stream_id, ICE_COMPONENT);
  if (!sock)
    return;
  GError *err = NULL;
  if (!g_socket_set_option(sock, SOL_SOCKET, SO_RCVBUF, ICE_SOCKET_BUFFER, &err) ||
      !g_socket_set_option(sock, SOL_SOCKET, SO_SNDBUF, ICE_SOCKET_BUFFER, &err)) {
    g_debug("ICE: socket buffers: %s", err->message);
    g_clear_error(&err);
  }
  g_object_unref(sock);
}

static void pair_arm(IcePeer *p);

/* Bulk's datagrams, both ways. libnice calls recv_cb for every datagram
 * its sockets take in on the component that is not ICE's own STUN (until a
 * pair socket takes the selected pair's); Bulk drops what is not its wire
 * format. */
static void recv_cb(NiceAgent *agent, guint stream_id, guint component_id, guint len, gchar *buf,
                    gpointer data)
{
  IcePeer *p = data;
  if (!p->io)
    return;
  if (p->peer_heard) {
    bulk_stream_on_datagram(p->io, (const guint8 *)buf, len);
    return;
  }
  BulkStats before, after;
  bulk_stream_stats(p->io, &before);
  bulk_stream_on_datagram(p->io, (const guint8 *)buf, len);
  bulk_stream_stats(p->io, &after);
  if (after.packets_received > before.packets_received) {
    p->peer_heard = TRUE; /* the peer sends Bulk: it has a selected pair */
    pair_arm(p);
  }
}

/* A STUN request or response (RFC 5389 section 6: the top two bits zero,
 * the magic cookie); not a Binding Indication, which is a keepalive that
 * needs no answer. */
static gboolean stun_transaction(const guint8 *pkt, gsize len)
{
  static const guint8 cookie[4] = {0x21, 0x12, 0xA4, 0x42};
  if (len < 20 || (pkt[0] & 0xC0) != 0 || memcmp(pkt + 4, cookie, 4) != 0)
    return FALSE;
  guint cls = ((pkt[0] & 0x01u) << 1) | ((pkt[1] & 0x10u) >> 4); /* 0 request, 1 indication */
  return cls != 1;
}

static gboolean pair_drop(gpointer data);

static void pair_datagram(const guint8 *pkt, gsize len, gpointer data)
{
  IcePeer *p = data;
  if (stun_transaction(pkt, len)) {
    /* The peer still runs a check on this pair (after a pair change, say:
     * its Bulk came by the old one). Give the address back to libnice; the
     * peer retransmits what was taken here. Closed from a turn of its own:
     * this is the pair socket's own callback. */
    g_debug("ICE: STUN message type 0x%02x%02x on the pair socket", pkt[0], pkt[1]);
    if (!p->pair_drop_src)
      slot_arm(&p->pair_drop_src, p->ctx, 0, pair_drop, p);
    return;
  }
  if (!p->io)
    return;
  if (!p->in_batch) {
    bulk_stream_batch_begin(p->io);
    p->in_batch = TRUE;
  }
  bulk_stream_on_datagram(p->io, pkt, len);
}

static void pair_batch_done(gpointer data)
{
  IcePeer *p = data;
  if (p->in_batch && p->io) {
    p->in_batch = FALSE;
    bulk_stream_batch_end(p->io);
  }
}

static gboolean pair_open(gpointer data)
{
  IcePeer *p = data;
  slot_fired(&p->pair_src);
  if (!p->batch || p->pair_sock)
    return G_SOURCE_REMOVE;
  GError *err = NULL;
  p->pair_sock = pair_socket_new(p->batch_sock, p->pair_remote, p->ctx, pair_datagram,
                                 pair_batch_done, p, &err);
  if (!p->pair_sock) {
    g_debug("ICE: datagrams stay on libnice's path: %s", err->message);
    g_error_free(err);
    return G_SOURCE_REMOVE;
  }
  /* Larger datagrams, fewer of them: Bulk probes up to a full Ethernet
   * frame, or the local route's MTU if that is smaller. */
  gsize max = g_socket_address_get_family(p->pair_remote) == G_SOCKET_FAMILY_IPV6
                  ? ICE_DATAGRAM_MAX_V6
                  : ICE_DATAGRAM_MAX_V4;
  gsize route = pair_socket_path_mtu(p->pair_sock);
  if (route && route < max)
    max = route;
  if (max > ICE_DATAGRAM && p->probe_path)
    p->big_batch = udp_batch_new(pair_socket_get_socket(p->pair_sock), p->pair_remote, max);
  if (p->big_batch && p->io)
    bulk_stream_set_max_datagram(p->io, max);
  g_debug("ICE: the selected pair's datagrams are read in batches now; probing up to %zu bytes",
          p->big_batch ? max : (gsize)ICE_DATAGRAM);
  return G_SOURCE_REMOVE;
}

/* Opens the PairSocket (nat/pair_socket.h) once it takes nothing libnice
 * still needs from the pair's remote address: libnice selects a pair only
 * once it is nominated and valid (our checks on it are over), and the peer
 * sends Bulk only once it has selected one too (its checks are over). Other
 * pairs' checks use other addresses and stay with libnice. From a main
 * loop turn of its own, not from inside libnice's callbacks. */
static void pair_arm(IcePeer *p)
{
  if (p->peer_heard && p->batch && p->pair_remote && !p->pair_sock && !p->pair_src)
    slot_arm(&p->pair_src, p->ctx, p->pair_backoff_ms, pair_open, p);
}

static gboolean send_cb(const guint8 *pkt, gsize len, gpointer data)
{
  IcePeer *p = data;
  /* Two sockets, one order: a batch is flushed before the other takes a
   * datagram, or a probe would reach the wire behind packets built after it
   * (and read as lost by the packet threshold). */
  if (len > ICE_DATAGRAM) {
    /* Probes and what they proved: never fragmented (pair_socket.h). */
    if (!p->big_batch)
      return FALSE;
    if (p->batch)
      udp_batch_flush(p->batch);
    udp_batch_add(p->big_batch, pkt, len);
    return TRUE;
  }
  if (p->batch) {
    if (p->big_batch)
      udp_batch_flush(p->big_batch);
    udp_batch_add(p->batch, pkt, len);
    return TRUE;
  }
  return nice_agent_send(p->agent, p->stream_id, ICE_COMPONENT, (guint)len, (const gchar *)pkt) ==
         (gint)len;
}

static void flush_cb(gpointer data)
{
  IcePeer *p = data;
  if (p->batch)
    udp_batch_flush(p->batch);
  if (p->big_batch)
    udp_batch_flush(p->big_batch);
}

/* Back to libnice's reads (and the base datagram size) for this pair. */
static void pair_close(IcePeer *p)
{
  slot_disarm(&p->pair_src);
  slot_disarm(&p->pair_drop_src);
  if (p->pair_sock) {
    guint64 calls, n;
    pair_socket_counts(p->pair_sock, &calls, &n);
    g_debug("ICE: pair socket read %" G_GUINT64_FORMAT " datagrams in %" G_GUINT64_FORMAT " calls",
            n, calls);
  }
  if (p->big_batch && p->io)
    bulk_stream_set_max_datagram(p->io, ICE_DATAGRAM); /* back to the base size at once */
  g_clear_pointer(&p->big_batch, udp_batch_free);
  g_clear_pointer(&p->pair_sock, pair_socket_free);
}

#define PAIR_BACKOFF_MIN_MS 2000
#define PAIR_BACKOFF_MAX_MS 60000

static gboolean pair_drop(gpointer data)
{
  IcePeer *p = data;
  slot_fired(&p->pair_drop_src);
  pair_close(p);
  p->pair_backoff_ms =
      p->pair_backoff_ms ? MIN(2 * p->pair_backoff_ms, PAIR_BACKOFF_MAX_MS) : PAIR_BACKOFF_MIN_MS;
  g_debug("ICE: the peer still checks the selected pair: libnice reads it for %u ms",
          p->pair_backoff_ms);
  /* Fresh evidence first: the peer's Bulk after the back-off. */
  p->peer_heard = FALSE;
  return G_SOURCE_REMOVE;
}

static void batch_clear(IcePeer *p)
{
  pair_close(p);
  g_clear_object(&p->pair_remote);
  /* A new pair waits for the peer's data. libnice does not say which pair
   * a datagram came by, so a late one on the old pair can open the new
   * pair's socket early; the peer has its pair selected all the same (it
   * was sending Bulk), and the pair closes again on the next change. */
  p->peer_heard = FALSE;
  g_clear_pointer(&p->batch, udp_batch_free);
  g_clear_object(&p->batch_sock);
}

/* libnice sends each datagram with its own system call, which caps a
 * leaf's rate well below the link's (nat/TRANSPORT.md). When our side of
 * the selected pair is not a TURN relay, a datagram is nothing but UDP from
 * the pair's base socket to the remote candidate, so Bulk's bursts can go
 * out in GSO batches on that socket. libnice still owns the socket: it
 * reads it (STUN and our datagrams alike) and keeps the pair alive. */
static void batch_select(IcePeer *p, NiceCandidate *local, NiceCandidate *remote)
{
  batch_clear(p);
  if (local->type == NICE_CANDIDATE_TYPE_RELAYED ||
      local->transport != NICE_CANDIDATE_TRANSPORT_UDP)
    return;
  GSocket *sock = nice_agent_get_selected_socket(p->agent, p->stream_id, ICE_COMPONENT);
  if (!sock)
    return;
  /* The peer's TURN server wraps what we send it (4 to 36 bytes): a full
   * frame from us would leave it fragmented or not at all. */
  p->probe_path = remote->type != NICE_CANDIDATE_TYPE_RELAYED;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  nice_address_copy_to_sockaddr(&remote->addr, (struct sockaddr *)&ss);
  GSocketAddress *dest = g_socket_address_new_from_native(&ss, sizeof ss);
  p->batch = dest ? udp_batch_new(sock, dest, ICE_DATAGRAM) : NULL;
  if (p->batch) {
    p->batch_sock = sock;
    p->pair_remote = dest;
    pair_arm(p);
  } else {
    g_clear_object(&dest);
    g_object_unref(sock);
  }
}

static void path_fill(IcePeer *p, NiceCandidate *local, NiceCandidate *remote)
{
  p->path.local_type = cand_type(local->type);
  p->path.remote_type = cand_type(remote->type);
  format_addr(&local->addr, p->path.local_addr, sizeof p->path.local_addr);
  format_addr(&remote->addr, p->path.remote_addr, sizeof p->path.remote_addr);
  p->path.relayed =
      local->type == NICE_CANDIDATE_TYPE_RELAYED || remote->type == NICE_CANDIDATE_TYPE_RELAYED;
}

/* A better pair nominated after the stream was handed out (a relay pair
 * can win the first race while a direct pair's checks wait for the other
 * NAT's hole): Bulk's datagrams follow it, batched when it is direct, and
 * the caller hears of the new path. */
static void on_new_pair(NiceAgent *agent, guint stream_id, guint component_id, NiceCandidate *local,
                        NiceCandidate *remote, gpointer data)
{
  IcePeer *p = data;
  if (stream_id != p->stream_id || component_id != ICE_COMPONENT ||
      !(p->due_connected || p->said_connected))
    return;
  path_fill(p, local, remote);
  socket_buffers(p);
  batch_select(p, local, remote);
  if (p->said_connected) {
    p->due_path_changed = TRUE;
    schedule(p);
  }
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
   * and Bulk's datagrams follow if a better pair is nominated later.
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
  path_fill(p, local, remote);
  socket_buffers(p);
  batch_select(p, local, remote);
  bulk_stream_set_flush(p->io, flush_cb);
  bulk_stream_set_sendable(p->io, TRUE);
  slot_disarm(&p->timeout_src);
  p->due_connected = TRUE;
  schedule(p);
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
      p->cb.connected(p, p->io, &p->path, p->ud);
  }
  if (!p->dead && p->due_path_changed && p->said_connected && !p->due_failed && !p->said_failed) {
    p->due_path_changed = FALSE;
    if (p->cb.path_changed)
      p->cb.path_changed(p, &p->path, p->ud);
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
  /* 8 MiB each way holds twice the bandwidth-delay product of 80 MB/s at
   * 50 ms; a leaf has a few such streams at a time (peers.c caps them).
   * Datagrams of 1350 bytes with the tag, as Chrome's QUIC: with IPv6 and a
   * TURN Send indication around them they still fit a 1500-byte path, and
   * each costs the receiver a system call, so larger is cheaper. */
  const BulkConfig bulk_cfg = {
      .mtu = ICE_DATAGRAM - BULK_STREAM_TAG_BYTES, .send_buf = 8u << 20, .recv_buf = 8u << 20};

  p->agent = nice_agent_new(ctx, NICE_COMPATIBILITY_RFC5245);
  if (!p->agent)
    goto fail;
  /* UPnP is on by default and would ask the LAN's router for mappings;
   * Bulk wants datagrams, so no ICE-TCP candidates. */
  g_object_set(p->agent, "controlling-mode", controlling, "upnp", FALSE, "ice-tcp", FALSE,
               "ice-udp", TRUE, "stun-pacing-timer", ICE_TA_MS, "max-connectivity-checks",
               ICE_MAX_CHECK_PAIRS, NULL);
  if (cfg->stun_host)
    g_object_set(p->agent, "stun-server", cfg->stun_host, "stun-server-port",
                 (guint)(cfg->stun_port ? cfg->stun_port : ICE_DEFAULT_STUN_PORT), NULL);
  for (const char *const *a = cfg->local_addrs; a && *a; a++) {
    NiceAddress addr;
    nice_address_init(&addr);
    nice_address_set_from_string(&addr, *a);
    nice_agent_add_local_address(p->agent, &addr);
    p->allow_loopback |= candidate_address_is_loopback(*a);
  }

  p->stream_id = nice_agent_add_stream(p->agent, 1);
  if (p->stream_id == 0 || !nice_agent_set_stream_name(p->agent, p->stream_id, ICE_STREAM_NAME))
    goto fail;
  /* Datagrams may arrive before this side sees the pair connected (the
   * other side's checks finished first): Bulk takes them in at once and
   * holds its own until then. */
  p->io = bulk_stream_new(ctx, &bulk_cfg, send_cb, p);
  if (!p->io || !nice_agent_attach_recv(p->agent, p->stream_id, ICE_COMPONENT, ctx, recv_cb, p))
    goto fail;
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
  g_signal_connect(p->agent, "new-selected-pair-full", G_CALLBACK(on_new_pair), p);
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
  if (p->io) {
    /* A caller may hold the stream longer: it then reads as closed. */
    bulk_stream_detach(p->io);
    g_clear_object(&p->io);
  }
  batch_clear(p);
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
 * <port>]", the text after "a=candidate:". On success *info holds its type
 * and priority and ip (ipcap bytes) its address. */
static gboolean candidate_ok(const char *s, CandidateInfo *info, char *ip, size_t ipcap)
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
  if (!candidate_type_parse(t[7], &info->type))
    goto out;
  if (n == 12 && (strcmp(t[8], "raddr") != 0 || !ip_literal(t[9]) || strcmp(t[10], "rport") != 0 ||
                  !dec(t[11], 0, 65535)))
    goto out;
  info->priority = (guint32)g_ascii_strtoull(t[3], NULL, 10);
  g_strlcpy(ip, t[4], ipcap);
  ok = TRUE;
out:
  g_strfreev(t);
  return ok;
}

/* Checks text against the format in ice.h; on success *ufrag and *pwd
 * (owned) are the remote credentials and *kept (owned) the text for
 * libnice: the same lines less the candidates candidate.h refuses (an
 * address no agent should check; loopback unless allow_loopback) and those
 * over CANDIDATE_MAX_REMOTE. A description left with no candidate is an
 * error. */
static gboolean description_check(const char *text, gboolean allow_loopback, char **ufrag,
                                  char **pwd, char **kept, GError **error)
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
  guint bad = 0, cands = 0, usable = 0;
  char *uf = NULL, *pw = NULL;
  CandidateInfo info[ICE_MAX_CANDIDATES];
  guint line_of[ICE_MAX_CANDIDATES]; /* usable candidate -> its line */
  bool keep[ICE_MAX_CANDIDATES];
  GArray *drop = g_array_new(FALSE, TRUE, sizeof(gboolean)); /* per line */
  g_array_set_size(drop, n);

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
      if (pw)
        why = "second a=ice-pwd line";
      else if (!ice_chars(l + 10, ICE_PWD_MIN, ICE_PWD_MAX))
        why = "bad a=ice-pwd";
      else
        pw = g_strdup(l + 10);
    } else if (g_str_has_prefix(l, "a=candidate:")) {
      char ip[INET6_ADDRSTRLEN + 1];
      const char *refused = NULL;
      if (++cands > ICE_MAX_CANDIDATES)
        why = "too many candidates";
      else if (!candidate_ok(l + 12, &info[usable], ip, sizeof ip))
        why = "bad a=candidate line";
      else if (!candidate_address_ok(ip, info[usable].type, allow_loopback, &refused)) {
        /* Well-formed, but not an address we send checks to: the rest of
         * the description may still hold a path. */
        g_debug("ICE: remote candidate %s ignored: %s", ip, refused);
        g_array_index(drop, gboolean, i) = TRUE;
      } else {
        line_of[usable++] = i;
      }
    } else {
      why = l[0] ? "unexpected line" : "empty line";
    }
  }

  if (!why) {
    bad = 0;
    if (n == 0)
      why = "empty description";
    else if (!uf || !pw)
      why = "no a=ice-ufrag or a=ice-pwd";
    else if (cands == 0)
      why = "no candidate";
    else if (usable == 0)
      why = "no candidate with an address we check";
  }
  if (!why) {
    size_t picked = candidate_pick(info, usable, CANDIDATE_MAX_REMOTE, keep);
    if (picked < usable)
      g_debug("ICE: %u remote candidates, %zu kept", usable, picked);
    for (guint k = 0; k < usable; k++)
      if (!keep[k])
        g_array_index(drop, gboolean, line_of[k]) = TRUE;
    GString *out = g_string_sized_new(len);
    for (guint i = 0; i < n; i++)
      if (!g_array_index(drop, gboolean, i))
        g_string_append_printf(out, "%s\n", lines[i]);
    *kept = g_string_free(out, FALSE);
  }
  g_array_unref(drop);
  g_strfreev(lines);
  if (why) {
    g_free(uf);
    g_free(pw);
    if (bad)
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "description line %u: %s", bad, why);
    else
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "description: %s", why);
    return FALSE;
  }
  *ufrag = uf;
  *pwd = pw;
  return TRUE;
}

/* The first key of Bulk's datagram tags from one side to the other
 * (bulk_stream_set_keys): both ICE passwords, which only the two leaves and
 * the signalling path between them know, the sender's first. The super
 * nodes on that path read them, so these keys serve only until the secure
 * channel is open (ice_peer_rekey). One key per
 * direction: both sides number their packets from 0, and a UMAC nonce must
 * never repeat under one key. */
static void bulk_key(const char *from_pwd, const char *to_pwd, guint8 key[BULK_STREAM_KEY_BYTES])
{
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, BULK_STREAM_KEY_BYTES);
  crypto_generichash_update(&st, (const guint8 *)"canopy bulk tag", 16);
  crypto_generichash_update(&st, (const guint8 *)from_pwd, strlen(from_pwd) + 1);
  crypto_generichash_update(&st, (const guint8 *)to_pwd, strlen(to_pwd) + 1);
  crypto_generichash_final(&st, key, BULK_STREAM_KEY_BYTES);
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

  char *ufrag = NULL, *pwd = NULL, *kept = NULL;
  if (!description_check(description, p->allow_loopback, &ufrag, &pwd, &kept, error))
    return FALSE;

  /* Our own description handed back (a signalling loop) would have the
   * agent check pairs against itself. */
  char *own_ufrag = NULL, *own_pwd = NULL;
  gboolean have = nice_agent_get_local_credentials(p->agent, p->stream_id, &own_ufrag, &own_pwd);
  gboolean own = have && g_strcmp0(own_ufrag, ufrag) == 0;
  if (have && !own) {
    guint8 tx[BULK_STREAM_KEY_BYTES], rx[BULK_STREAM_KEY_BYTES];
    bulk_key(own_pwd, pwd, tx);
    bulk_key(pwd, own_pwd, rx);
    bulk_stream_set_keys(p->io, tx, rx);
    sodium_memzero(tx, sizeof tx);
    sodium_memzero(rx, sizeof rx);
  }
  g_free(own_ufrag);
  g_free(own_pwd);
  g_free(ufrag);
  g_free(pwd);
  if (!have || own) {
    g_free(kept);
    g_set_error(error, G_IO_ERROR, have ? G_IO_ERROR_INVALID_DATA : G_IO_ERROR_FAILED,
                have ? "description is our own" : "no local ICE credentials");
    return FALSE;
  }

  p->remote_set = TRUE;
  /* The text is exactly what libnice's parser handles well, so the only
   * failure left is candidates it declines (no local candidate of that
   * address family, say). */
  int added = nice_agent_parse_remote_sdp(p->agent, kept);
  g_free(kept);
  if (added <= 0) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                "libnice took no candidate from the remote description (%d)", added);
    return FALSE;
  }
  if (!p->due_connected && !p->said_connected && !p->due_failed)
    slot_arm(&p->timeout_src, p->ctx, p->timeout_ms, timeout_cb, p);
  return TRUE;
}

/* The tag keys from the secure channel (ice.h): one per direction from the
 * channel's exported secret, labelled by direction. */
static void bulk_key_from_channel(const guint8 secret[ICE_CHANNEL_SECRET_BYTES], const char *dir,
                                  guint8 key[BULK_STREAM_KEY_BYTES])
{
  crypto_generichash(key, BULK_STREAM_KEY_BYTES, (const guint8 *)dir, strlen(dir), secret,
                     ICE_CHANNEL_SECRET_BYTES);
}

void ice_peer_rekey(IcePeer *p, const guint8 secret[ICE_CHANNEL_SECRET_BYTES], gboolean initiator)
{
  g_return_if_fail(p != NULL && secret != NULL);
  if (!p->io)
    return;
  guint8 i2r[BULK_STREAM_KEY_BYTES], r2i[BULK_STREAM_KEY_BYTES];
  bulk_key_from_channel(secret, "canopy bulk tag i->r", i2r);
  bulk_key_from_channel(secret, "canopy bulk tag r->i", r2i);
  /* The responder's channel opens on the initiator's last handshake
   * message, which the initiator sent with its channel already open: the
   * responder knows the initiator holds the new keys and uses them at
   * once; the initiator waits for the responder's first datagram under
   * them. */
  if (initiator)
    bulk_stream_rekey(p->io, i2r, r2i, FALSE);
  else
    bulk_stream_rekey(p->io, r2i, i2r, TRUE);
  sodium_memzero(i2r, sizeof i2r);
  sodium_memzero(r2i, sizeof r2i);
}

gboolean ice_peer_rekeyed(IcePeer *p)
{
  return p->io && bulk_stream_rekeyed(p->io);
}

guint64 ice_peer_datagrams_received(IcePeer *p)
{
  if (!p->io)
    return 0;
  BulkStats st;
  bulk_stream_stats(p->io, &st);
  return st.packets_received;
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

/* ---- for the fuzzer and tests ---- */

gboolean ice_description_parse(const char *text, gboolean allow_loopback, char **ufrag, char **pwd,
                               char **kept, GError **error)
{
  return description_check(text, allow_loopback, ufrag, pwd, kept, error);
}
