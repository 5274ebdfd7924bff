/* peers.h - direct links to other leaves: ICE through the NATs (nat/ice.h),
 * then the same secure channel as every other session (session.h).
 *
 * Outbound links are made for downloads: an ICE offer goes to the other leaf
 * through the super nodes (signalling, addressed by node id), its answer
 * comes back, and once a path is ready the channel handshake runs over it;
 * the link counts as open only if the far end proves the node id we asked
 * for. Inbound links are the mirror image, for serving. Either way a relay
 * (TURN) sees only ciphertext.
 */
#ifndef CANOPY_PEERS_H
#define CANOPY_PEERS_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "identity.h"

#define PEERS_MAX_INBOUND 32

typedef struct Peers Peers;
typedef struct PeerLink PeerLink;

typedef struct {
  /* Send a SIGNAL through our super node. False if it could not go. */
  bool (*signal)(const uint8_t sid[16], uint8_t kind, const uint8_t dst[32], const char *text,
                 void *ud);
  void (*opened)(PeerLink *l, void *ud);
  void (*message)(PeerLink *l, const uint8_t *msg, size_t len, void *ud);
  /* Once per link, also for links that never opened; the link is freed
   * after the callback returns. */
  void (*closed)(PeerLink *l, const char *reason, void *ud);
} PeersCallbacks;

Peers *peers_new(GMainContext *ctx, const Identity *self, const PeersCallbacks *cb, void *ud);
void peers_free(Peers *p); /* closes every link */
/* Closes every link now (their sessions send their FIN once the caller's
 * context runs again; peers_free alone gives it no chance to). */
void peers_close_all(Peers *p, const char *reason);

/* Where STUN and TURN are (from the super node's NAT_INFO); NULLs allowed.
 * local_addrs: NULL-terminated host addresses to gather on, or NULL. */
void peers_set_nat(Peers *p, const char *stun_host, uint16_t stun_port, const char *turn_host,
                   uint16_t turn_port, const char *turn_user, const char *turn_pass);
void peers_set_local_addrs(Peers *p, char **addrs);

/* Starts an outbound link to the leaf with this node id; tag is the caller's. */
PeerLink *peers_connect(Peers *p, const uint8_t peer_id[32], uint64_t tag);
/* A SIGNAL from the super node (src is authenticated by it). */
void peers_on_signal(Peers *p, const uint8_t sid[16], uint8_t kind, const uint8_t src[32],
                     const char *text);

/* Inbound ICE offers refused so far (leafnode/offergate.h budgets). */
uint64_t peers_offers_refused(const Peers *p);

bool peer_link_send(PeerLink *l, const uint8_t *msg, size_t len);
void peer_link_close(PeerLink *l, const char *reason);
uint64_t peer_link_tag(const PeerLink *l);
bool peer_link_outbound(const PeerLink *l);
/* An outbound link the peer refused (its inbound budgets spent for now:
 * worth trying again later), as opposed to one that failed. */
bool peer_link_refused(const PeerLink *l);
const uint8_t *peer_link_peer(const PeerLink *l);
/* "direct" or "relayed", and a description of the selected pair ("srflx
 * 203.0.113.7:4242 -> srflx 198.51.100.3:5353"); "" before the path is up. */
const char *peer_link_path_type(const PeerLink *l);
const char *peer_link_path(const PeerLink *l);
/* Milliseconds from the first signalling message to the open session. */
uint64_t peer_link_setup_ms(const PeerLink *l);

#endif
