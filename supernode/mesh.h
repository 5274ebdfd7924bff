/* mesh.h - a super node's address book of other super nodes.
 *
 * Addresses come from --peer (configured: always kept connected), from the
 * HELLO of a neighbour (its advertised listen address) and from PEERS answers
 * (discovery). The book decides whom to dial next, with exponential backoff
 * per address; it never dials itself, and never an address whose node id is
 * already linked.
 *
 * Whatever a peer names is a claim. An address becomes *verified* only when
 * we dialled it and the handshake completed (the node id is then the one the
 * handshake proved, whatever was claimed). Only verified addresses are passed
 * on (mesh_sample), so nobody can make us spread an address that does not
 * answer, or one that answers as another node. A neighbour's HELLO claim is
 * verified by a *probe*: one dial whose session is closed as soon as the
 * handshake names the node.
 *
 * Bounded, and hard to fill from one place: at most MESH_MAX_ADDRS learned
 * addresses, MESH_MAX_PER_SOURCE from the gossip of one link, and per IP
 * prefix MESH_MAX_PER_NARROW (/24, /64) and MESH_MAX_PER_WIDE (/16, /32). A
 * newcomer may evict only an address that is neither configured, linked,
 * being dialled, claimed by a current neighbour, nor verified and healthy:
 * the one with the most failed dials, then the least recently learned.
 */
#ifndef CANOPY_MESH_H
#define CANOPY_MESH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define MESH_MAX_ADDRS 256
#define MESH_ADDR_MAX 128
/* Learned addresses per IP prefix: /24 (IPv4) or /64 (IPv6) ... */
#define MESH_MAX_PER_NARROW 16
/* ... and /16 or /32. Host names (not IP literals) have no prefix. */
#define MESH_MAX_PER_WIDE 64
/* Unverified addresses one link's PEERS may have in the book at a time. */
#define MESH_MAX_PER_SOURCE 64
/* A HELLO claim is probed at most this many times in a row without success. */
#define MESH_PROBE_MAX_FAILURES 3

/* Loads (percent) are compared in buckets this wide: the least loaded
 * first, in a random order within a bucket. */
#define MESH_LOAD_BUCKET 25

/* Longest wait between dials of a configured address. */
#define MESH_CONFIGURED_MAX_MS 4000
/* Failed dials in a row after which a pinned address is an ordinary
 * learned one again (mesh_pin). */
#define MESH_PIN_MAX_FAILURES 8

typedef struct Mesh Mesh;

typedef struct {
  char addr[MESH_ADDR_MAX + 1];
  uint8_t id[32];
  bool id_known; /* claimed, or proven when verified */
  bool verified; /* dialled, and the handshake proved id */
  bool configured;
  bool pinned;          /* mesh_pin: dialed like a configured one, for a while */
  bool self;            /* dialing it reached ourselves */
  bool dialing;         /* a dial is under way */
  bool probing;         /* ... only to verify a claim */
  uint64_t linked_conn; /* 0 when not linked */
  uint64_t claim_conn;  /* the link whose HELLO claimed it, while up */
  uint64_t src_conn;    /* the link whose PEERS taught it (0: other) */
  unsigned failures;
  uint64_t next_attempt;
  uint64_t seen; /* learn order, for eviction */
  /* IP prefix, for the caps: family 4 or 6, 0 for a host name. */
  uint8_t family;
  uint8_t prefix[8];
  /* Load in percent as HOSTS last said it (WIRE_LOAD_UNKNOWN: never):
   * leaves / max-leaves and links / soft max of links. Claims too. */
  uint8_t leaf_load, link_load;
  unsigned refusals; /* REFUSEs in a row (degree.h backoff) */
} MeshAddr;

typedef struct {
  unsigned size;       /* addresses in the book */
  unsigned verified;   /* ... of which verified */
  uint64_t evicted;    /* addresses dropped for a newcomer */
  uint64_t refused;    /* newcomers dropped: their prefix/source/book full */
  uint64_t probes_ok;  /* HELLO claims verified by a dial */
  uint64_t probes_bad; /* probes that failed */
} MeshStats;

/* is_linked(id) tells whether a super-node link to that node id is up. */
typedef bool (*MeshLinkedFn)(const uint8_t id[32], void *ctx);

Mesh *mesh_new(const uint8_t self_id[32], uint64_t backoff_min_ms, uint64_t backoff_max_ms);
void mesh_free(Mesh *m);

/* Adds or updates an address. id may be NULL when unknown; a claimed id
 * never replaces a verified one. Returns the record, or NULL if the address
 * is malformed or there is no room (see the caps above). */
MeshAddr *mesh_learn(Mesh *m, const char *addr, const uint8_t *id, bool configured);
/* The same for an address from the PEERS of link src_conn (its own cap). */
MeshAddr *mesh_learn_from(Mesh *m, const char *addr, const uint8_t *id, uint64_t src_conn);
/* The neighbour on link conn, node id, says in HELLO that it listens on
 * addr. Unless addr is already verified as id, it is probed soon. */
MeshAddr *mesh_claim(Mesh *m, const char *addr, const uint8_t id[32], uint64_t conn);
MeshAddr *mesh_find(Mesh *m, const char *addr);
/* An address the group needs linked (its leader, the old leader's mesh
 * links after a takeover) that a peer named: a learned address (subject to
 * MESH_MAX_ADDRS, its id not trusted), dialed like a configured one until
 * MESH_PIN_MAX_FAILURES dials in a row failed. NULL if refused. */
MeshAddr *mesh_pin(Mesh *m, const char *addr);

/* With discovery on, configured addresses are direction nodes (issue 12):
 * where a newcomer learns the mesh, dialed first, but only while it wants
 * more links; kept linked at any cost, every newcomer's direction node
 * would carry a link to each of them, and refuse and be redialed forever
 * once full. Off (the default): configured addresses are always dialed. */
void mesh_set_direction(Mesh *m, bool on);

/* Outcome of a dial of addr. */
void mesh_dial_failed(Mesh *m, const char *addr, uint64_t now);
void mesh_dial_succeeded(Mesh *m, const char *addr, const uint8_t id[32], uint64_t conn);
/* If the dial of addr was a probe: records that it answered as id (linked
 * through link_conn, 0 if not) and returns true; the caller then closes that
 * session. False if it was an ordinary dial. */
bool mesh_probe_done(Mesh *m, const char *addr, const uint8_t id[32], uint64_t link_conn);
/* The node at addr refused us (REFUSE, or shed our link): no dial of it
 * before degree_retry_at() for its refusals in a row, its retry_ms and the
 * random rnd; a pending dial is over. */
void mesh_dial_refused(Mesh *m, const char *addr, uint32_t retry_ms, uint32_t rnd, uint64_t now);
/* The link conn was taken by the other side (it sent HOSTS): its address's
 * refusals in a row are over. */
void mesh_link_accepted(Mesh *m, uint64_t conn);
/* Dials of learned addresses under way (not configured, pinned or probes):
 * they count towards the target degree before they complete. */
unsigned mesh_dialing(const Mesh *m);
/* Whether addr is one of the operator's --peer addresses or pinned. */
bool mesh_configured(Mesh *m, const char *addr);
/* The link load HOSTS last told for addr (WIRE_LOAD_UNKNOWN if none). */
uint8_t mesh_link_load(Mesh *m, const char *addr);
/* A link closed: the address may be dialed again after backoff. */
void mesh_link_down(Mesh *m, uint64_t conn, uint64_t now);

/* Next address to dial now, or NULL. Configured addresses and probes come
 * first; learned ones only when want_more (discovery on and below the target
 * degree). Marks the returned record as dialing (and probing for a probe). */
MeshAddr *mesh_next_dial(Mesh *m, bool want_more, MeshLinkedFn linked, void *ctx, uint64_t now);
/* An unverified address to probe (one dial, closed once the handshake
 * names the node) so that it may be passed on: fewest failures first, then
 * at random; not one MESH_PROBE_MAX_FAILURES probes failed. Marks it as
 * dialing and probing; NULL if none is due. The caller paces the calls. */
MeshAddr *mesh_next_explore(Mesh *m, MeshLinkedFn linked, void *ctx, uint64_t now);
/* A verified address picked at random (not linked, not known to be full,
 * not backed off) for a long-range link (degree.h); marks it as dialing.
 * NULL if none. */
MeshAddr *mesh_next_shortcut(Mesh *m, MeshLinkedFn linked, void *ctx, uint64_t now);
/* Earliest time a backed-off address becomes dialable (UINT64_MAX if none). */
uint64_t mesh_next_attempt(const Mesh *m, bool want_more);

/* Fills out[] with up to max verified addresses of other super nodes (not
 * self, not exclude_id, not failing); returns how many. Borrowed records. */
size_t mesh_sample(Mesh *m, const uint8_t *exclude_id, const MeshAddr **out, size_t max);

/* Fills out[] for HOSTS and REFUSE: up to max addresses mesh_sample would
 * pass on (verified, not self, not exclude_id, not failing), least loaded
 * first: by leaf_load (by_leaf_load) or by link_load in MESH_LOAD_BUCKET
 * steps, then unknown loads, then full ones (100); then fewer failures,
 * then a new random order each call. out[i].addr borrows the book's
 * string: valid until the next call that changes the book. Returns how
 * many. */
size_t mesh_hosts(Mesh *m, const uint8_t *exclude_id, WireHost *out, size_t max, bool by_leaf_load);
/* Records the loads a HOSTS entry (or our own link to it) tells for the
 * node id at addr; only for an address already in the book whose id is
 * that id (loads never teach an address). */
void mesh_set_load(Mesh *m, const char *addr, const uint8_t id[32], uint8_t leaf_load,
                   uint8_t link_load);

/* An order-free digest of every address mesh_sample may pass on (all of
 * them, not a sample): it changes only when that set does. */
uint64_t mesh_passable_fingerprint(const Mesh *m);

void mesh_stats(const Mesh *m, MeshStats *out);

#endif
