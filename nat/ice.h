/* ice.h - a leaf-to-leaf path through NATs: ICE (RFC 5245) by libnice, with a
 * TURN relay as the fallback, ending in one reliable byte stream.
 *
 * An IcePeer is one side of one connection attempt. It gathers candidates at
 * once and hands the caller a description (credentials and candidates, one
 * string) to send to the other side through the signalling path (super
 * nodes); the caller hands the other side's description back with
 * ice_peer_set_remote. When a candidate pair is ready the peer offers a
 * reliable GIOStream to run the secure channel over: nat/bulk.c's
 * congestion-controlled stream over ICE datagrams (bulk_stream.h).
 *
 * Gathering: host candidates, then server-reflexive ones from the STUN
 * server, then (only then, see ice.c) relay ones from the TURN server; the
 * TURN Allocate also yields a server-reflexive candidate. On a LAN this
 * takes tens of milliseconds. A pair becomes READY once every check of a
 * higher-priority pair has ended: across two NATs the unreachable private
 * host pairs time out first, which takes about 2 s.
 *
 * Description format (what local_ready gives and ice_peer_set_remote takes):
 * libnice's SDP fragment for one stream and one component, '\n'-terminated
 * ASCII lines, at most ICE_DESCRIPTION_MAX bytes in all:
 *
 *   m=application <port> ICE/SDP              default candidate's port
 *   c=IN IP4 <ip>                             default candidate's address
 *   a=ice-ufrag:<4..256 ice-chars>            RFC 5245 section 15.4
 *   a=ice-pwd:<22..256 ice-chars>
 *   a=candidate:<foundation> 1 UDP <priority> <ip> <port> typ <type>
 *       [raddr <ip> rport <port>]              one line per candidate, 1..
 *
 * ice-chars are ALPHA / DIGIT / "+" / "/"; <type> is host, srflx, prflx or
 * relay; <ip> is numeric IPv4 or IPv6. ice_peer_set_remote accepts exactly
 * this and nothing else (no '\r', no empty or unknown lines, no TCP
 * candidates, no second stream or component), so a peer cannot steer
 * libnice's lenient parser. Of the candidates, libnice is given only those
 * nat/candidate.h allows (no unspecified, multicast, broadcast or reserved
 * address; loopback only when local_addrs has one), at most
 * CANDIDATE_MAX_REMOTE of them, and it keeps at most 30 pairs: one
 * description makes us send a bounded number of checks.
 *
 * Callbacks run from the peer's GMainContext, never from inside an ice_*
 * call and never while libnice iterates something; a callback may call
 * ice_peer_free. Each fires at most once, in the order local_ready,
 * connected, failed, except path_changed, which may fire any number of
 * times between connected and failed; nothing fires after failed or after
 * ice_peer_free.
 */
#ifndef CANOPY_ICE_H
#define CANOPY_ICE_H

#include <gio/gio.h>

/* Largest description produced or accepted, in bytes (terminating NUL not
 * counted). */
#define ICE_DESCRIPTION_MAX 8192
/* A pair must be ready this long after ice_peer_set_remote, unless
 * IceConfig.timeout_ms says otherwise. */
#define ICE_DEFAULT_TIMEOUT_MS 15000
/* STUN and TURN port when IceConfig leaves it 0 (RFC 5389 section 9). */
#define ICE_DEFAULT_STUN_PORT 3478

/* Everything is borrowed for the duration of ice_peer_new only. */
typedef struct {
  const char *stun_host; /* numeric IPv4/IPv6 address, NULL: no STUN */
  guint16 stun_port;     /* 0: ICE_DEFAULT_STUN_PORT */
  const char *turn_host; /* numeric address of a TURN (UDP) server, NULL: none */
  guint16 turn_port;     /* 0: ICE_DEFAULT_STUN_PORT */
  const char *turn_user; /* required with turn_host, see ice_turn_credentials */
  const char *turn_pass;
  /* NULL-terminated numeric addresses to gather host candidates on; NULL
   * or empty: every interface libnice finds (none in a namespace that only
   * has loopback, where the list is needed). */
  const char *const *local_addrs;
  guint timeout_ms; /* 0: ICE_DEFAULT_TIMEOUT_MS */
} IceConfig;

/* The selected candidate pair, as the connected callback sees it. */
typedef struct {
  const char *local_type;  /* "host", "srflx", "prflx" or "relay" (static) */
  const char *remote_type; /* same */
  char local_addr[64];     /* "ip:port", "[ip6]:port" */
  char remote_addr[64];
  gboolean relayed; /* either side is a relay candidate */
} IcePath;

typedef struct IcePeer IcePeer;

typedef struct {
  /* Gathering finished. description (borrowed, valid until ice_peer_free)
   * is what the other side must pass to ice_peer_set_remote. */
  void (*local_ready)(IcePeer *p, const char *description, gpointer ud);
  /* A pair is READY. stream is borrowed: it stays valid until
   * ice_peer_free; take a reference to keep it longer (once the peer is
   * freed it reads as closed). Its input and output streams are
   * GPollableInputStream / GPollableOutputStream, for a non-blocking
   * protocol:
   *   - the input's source is level-triggered, like a TCP socket's: it
   *     fires while data is buffered, so a reader may take any amount per
   *     wakeup, and data that came before the source was attached is seen;
   *   - the output's source fires while the send ring (8 MiB) has room;
   *     writes report G_IO_ERROR_WOULD_BLOCK when it is full, also after
   *     the path broke: that is reported by `failed`, not by the stream;
   *   - an unread input stalls the sender (flow control), never ICE's own
   *     keepalives, which libnice answers by itself.
   * path is borrowed for the call only. */
  void (*connected)(IcePeer *p, GIOStream *stream, const IcePath *path, gpointer ud);
  /* The attempt is over: every pair failed, no pair became ready in time,
   * or an established path was lost. reason is borrowed for the call. */
  void (*failed)(IcePeer *p, const char *reason, gpointer ud);
  /* After connected: libnice selected another pair (typically a direct
   * one after a relay pair won the first race); the stream carries on over
   * it. path is borrowed for the call only. May fire more than once. */
  void (*path_changed)(IcePeer *p, const IcePath *path, gpointer ud);
} IceCallbacks;

/* Starts gathering on ctx (borrowed; must outlive the peer). controlling:
 * TRUE on the offering side (RFC 5245 section 5.2). cfg may be NULL for no
 * STUN, no TURN, all interfaces. cb is copied; any callback may be NULL.
 * Returns NULL (and logs why) on a bad config or if gathering cannot start.
 * A TURN server that yields no relay candidate (libnice reports nothing for
 * a bad credential) is logged with g_warning; the peer goes on with its
 * other candidates. */
IcePeer *ice_peer_new(GMainContext *ctx, gboolean controlling, const IceConfig *cfg,
                      const IceCallbacks *cb, gpointer ud);

/* Hands over the other side's description (borrowed) and starts the
 * connectivity checks and the ready timeout. Returns FALSE and sets *error:
 * G_IO_ERROR_INVALID_DATA when the text is not exactly the format above (or
 * is this peer's own description); the peer is untouched and may be given
 * another. G_IO_ERROR_FAILED when a description was already set, the peer
 * has failed, or libnice took none of the candidates; the peer is then
 * spent, free it. */
gboolean ice_peer_set_remote(IcePeer *p, const char *description, GError **error);

/* Bytes of the secret ice_peer_rekey takes. */
#define ICE_CHANNEL_SECRET_BYTES 32

/* Bulk's datagram tags are first keyed from both ICE passwords, which the
 * signalling super nodes read (and so could forge datagrams with). Once the
 * secure channel over the stream is open, the caller hands over a secret
 * exported from it (channel_export: only the two ends know it) and the tags
 * move to keys derived from it, one per direction. The point both sides
 * agree on: the responder tags with the new keys at once (its channel
 * opened on the initiator's last handshake message, so the initiator has
 * them); the initiator does so once a datagram under them arrives. Each
 * side accepts the old receive key only until the first datagram that
 * verifies under the new one (bulk_stream_rekey), and never again: after
 * that, nobody but the two ends can make a datagram either accepts.
 * initiator: our side of the channel. Secret borrowed. */
void ice_peer_rekey(IcePeer *p, const guint8 secret[ICE_CHANNEL_SECRET_BYTES], gboolean initiator);
/* Whether this side has switched to the keys ice_peer_rekey gave. */
gboolean ice_peer_rekeyed(IcePeer *p);
/* Datagrams of the peer's the stream accepted so far (data and ACKs alike;
 * each one authenticated by its tag): whether the peer is still there. */
guint64 ice_peer_datagrams_received(IcePeer *p);

/* Stops everything; no callback fires afterwards. A TURN allocation is
 * released in the background on the peer's context. NULL is a no-op. */
void ice_peer_free(IcePeer *p);

/* coturn's REST-API credentials (turnserver --use-auth-secret) for name,
 * valid until expiry_unix (wall-clock seconds, the one place wall time is
 * right: coturn compares it with its own clock):
 *   user = "<expiry_unix>:<name>", pass = base64(HMAC-SHA1(secret, user)).
 * The caller frees *user and *pass with g_free. */
void ice_turn_credentials(const char *secret, const char *name, guint64 expiry_unix, char **user,
                          char **pass);

/* The check ice_peer_set_remote applies to a remote description (the
 * format above), without an agent: TRUE with the credentials in *ufrag and
 * *pwd and the text libnice would be given (the candidates the filter keeps)
 * in *kept (g_free all three), or FALSE with G_IO_ERROR_INVALID_DATA saying
 * why. For tests/fuzz/fuzz_ice.c. */
gboolean ice_description_parse(const char *text, gboolean allow_loopback, char **ufrag, char **pwd,
                               char **kept, GError **error);

#endif
