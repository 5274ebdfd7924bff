/* sncore.h - the super node's protocol core, sans I/O.
 *
 * Events in (a session opened after its handshake, a decrypted message, a
 * session closed, a dial failed, time passed), actions out (send these bytes
 * on session N, close N with a reason, dial an address). The core never reads
 * a clock or touches a socket: the glib shell (main.c) and the unit tests
 * drive it with `now` in monotonic milliseconds.
 *
 * It owns the leaf sessions and their index entries, the super-node links and
 * address book (mesh.h), and flooding with duplicate suppression (flood.h).
 */
#ifndef CANOPY_SNCORE_H
#define CANOPY_SNCORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh.h"

typedef struct SnCore SnCore;

#define SN_QUERY_RATE 400  /* default query_rate, per second */
#define SN_SIGNAL_RATE 200 /* default signal_rate, per second */

typedef struct {
  const char *advertise;    /* our "host:port" for other super nodes */
  bool discovery;           /* learn addresses and keep target_degree */
  unsigned target_degree;   /* super-node links to aim for */
  unsigned max_super_links; /* hard cap, inbound included */
  unsigned max_leaves;
  uint64_t keepalive_ms;     /* PING interval; silence for 3x closes */
  unsigned max_hits_local;   /* hits one super node answers per query */
  unsigned max_hits_relayed; /* hits passed back per query id */
  size_t max_entries_per_leaf;
  /* Memory budgets (0: no cap; supernode/MEMORY.md has the arithmetic).
   * The index totals hold for every entry, replicated ones too; the per
   * leaf and per source (address, sn_core_set_source) shares for what
   * leaves publish to us. Bytes are index_entry_cost (index.h) summed. */
  size_t max_index_entries, max_index_bytes;
  size_t max_bytes_per_leaf;
  size_t max_entries_per_source, max_bytes_per_source;
  double publish_rate, publish_burst; /* entries per second per leaf; 0: no limit */
  /* Bytes a super-node link may have queued before the shell cuts it (0:
   * 8 MiB): replication to the backup keeps well under it (group.c). */
  size_t link_queue_max;
  double leaf_query_rate, leaf_query_burst;   /* per leaf session */
  double super_query_rate, super_query_burst; /* per super-node link */
  double leaf_signal_rate, leaf_signal_burst; /* ICE signalling per leaf (links: super_query_*) */
  /* Queries handled per second from all sources together (our leaves'
   * searches and links' queries), shared fairly: per link, and our leaves
   * as one more share split per leaf (fairshare.h). Keep it at or under
   * super_query_rate, so honest neighbours never throttle our forwards. */
  double query_rate, query_burst;
  /* ICE offers flooded to links per second, all sources together, shared
   * the same way (default SN_SIGNAL_RATE; keep it under super_query_rate,
   * which also caps a link's signals). */
  double signal_rate;
  /* Groups (supernode/GROUPS.md). group NULL or "": a group of one. */
  const char *group;
  uint64_t group_hb_ms;   /* heartbeat: GROUP_STATE to members and leaves */
  uint64_t group_dead_ms; /* silence after which a member is lost */
  uint64_t group_join_ms; /* bootstrap: lead if no leader heard by then */
  uint64_t term_floor;    /* highest term seen before a restart (persisted) */
  /* 32-byte group secret (borrowed for sn_core_new): only super nodes
   * proving it are members. NULL: the network's certificates prove it
   * (network_pk), or nobody is a member. unix_now also bounds the terms
   * believed (shared/term.h). */
  const uint8_t *group_key;
  /* Network admission (shared/netcert.h). network_pk (32 bytes, borrowed
   * for sn_core_new) NULL: an open network. Set: only super nodes whose
   * HELLO carries a valid certificate from it become links, and every HELLO
   * of ours carries cert (set with sn_core_set_cert). unix_now gives the
   * wall-clock seconds certificates expire by. */
  const uint8_t *network_pk;
  uint64_t (*unix_now)(void);
} SnConfig;

/* Defaults a caller then overrides. */
void sn_config_defaults(SnConfig *c);

typedef struct {
  uint64_t queries_received;    /* SEARCH from leaves + QUERY from links */
  uint64_t queries_handled;     /* distinct query ids answered */
  uint64_t queries_forwarded;   /* QUERY messages sent to links */
  uint64_t queries_duplicate;   /* dropped: id already handled */
  uint64_t queries_reforwarded; /* handled ids forwarded again: more hops left (flood.h) */
  uint64_t queries_throttled;   /* dropped: over the per-session rate or their fair share */
  uint64_t hits_sent;           /* hits from our own index */
  uint64_t hits_relayed;        /* hits passed back along the reverse path */
  uint64_t hits_dropped;        /* no route, or over the relay cap */
  uint64_t malformed;           /* messages that failed to decode or were out of place */
  uint64_t sessions_opened;
  uint64_t entries_rejected;  /* over the per-leaf cap */
  uint64_t signals_relayed;   /* ICE offers/answers passed on */
  uint64_t signals_delivered; /* ... to one of our own leaves */
  uint64_t signals_dropped;   /* no route, duplicate, or over the rate */
  uint64_t links_refused;     /* super nodes not admitted to our network */
  unsigned leaves;            /* current leaf sessions */
  unsigned links;             /* current super-node links */
  size_t index_entries;
  size_t index_bytes;          /* index memory held, as capped (index_entry_cost) */
  uint64_t entries_over_share; /* refused: over the publishing address's share */
  uint64_t publish_throttled;  /* entries dropped: over the per-leaf publish rate */
  uint64_t refusals_sent;      /* super nodes sent REFUSE: no room for their link */
  uint64_t refusals_received;  /* REFUSEs from super nodes we dialed or linked */
  uint64_t hosts_ignored;      /* HOSTS from a link sooner than DEGREE_HOSTS_MIN_GAP_MS */
  uint64_t links_shed;         /* links we closed: shed, trimmed or evicted (degree.h) */
  uint64_t links_trimmed;      /* ... of which trimmed: above D + D/2 (degree_pick_trim) */
  uint64_t links_evicted;      /* ... of which evicted for a newcomer (degree_pick_evict) */
  uint64_t links_made;         /* super-node links that came up */
} SnStats;

typedef enum { SN_ROLE_JOINING, SN_ROLE_LEADER, SN_ROLE_BACKUP, SN_ROLE_STANDBY } SnRole;

/* The group as this node sees it (status, the simulator's invariants). */
typedef struct {
  SnRole role;
  uint64_t term;
  char group[256]; /* "" when not grouped */
  bool has_leader;
  uint8_t leader[32];
  char leader_addr[130];
  bool has_backup;
  uint8_t backup[32];
  char backup_addr[130];
  unsigned members;      /* grouped super nodes linked to us */
  unsigned leaves;       /* leaf sessions (leader) */
  unsigned watchers;     /* watch sessions (backup) */
  unsigned records;      /* leaf records: attached or replicated */
  uint64_t repl_lag_ops; /* leader: ops the backup has not acknowledged */
  uint64_t repl_lag_ms;  /* leader: age of the oldest of them */
  uint64_t repl_applied; /* backup: ops applied */
  uint64_t takeovers;    /* times this node became leader by takeover */
  uint64_t stepdowns;    /* times it stopped leading on a higher term */
  /* Refused: GROUP_STATEs without proof or of a term beyond belief; WATCH
   * sessions over the cap (max_leaves). */
  uint64_t claims_refused;
  uint64_t watchers_refused;
  uint64_t probes; /* backup: times it asked its watchers whether the leader lives */
} SnGroupStatus;

typedef enum {
  SN_ACT_SEND,
  SN_ACT_CLOSE,
  SN_ACT_DIAL,
  SN_ACT_LEAF_UP, /* conn became a leaf session (the shell sends it NAT_INFO) */
  SN_ACT_LINK_UP, /* conn became a super-node link (the shell gives it link bounds) */
} SnActionKind;

typedef struct {
  SnActionKind kind;
  uint64_t conn; /* SEND, CLOSE */
  uint8_t *data; /* SEND: one encoded message (owned; sn_action_clear) */
  size_t len;
  char *addr;         /* DIAL (owned) */
  uint8_t peer[32];   /* LEAF_UP: the leaf's node id */
  const char *reason; /* CLOSE: static string for the log */
} SnAction;

/* rng fills n random bytes (query ids, jitter). */
typedef void (*SnRandomFn)(uint8_t *out, size_t n, void *ctx);

SnCore *sn_core_new(const SnConfig *cfg, const uint8_t self_id[32], SnRandomFn rng, void *rng_ctx,
                    uint64_t now);
void sn_core_free(SnCore *c); /* NULL is a no-op */

/* A configured neighbour (--peer): dialed now and kept linked. */
void sn_core_add_peer(SnCore *c, const char *addr, uint64_t now);

/* A session finished its handshake. peer_id is the authenticated node id;
 * dialed is the address we dialed (outbound) or NULL (inbound). */
void sn_core_open(SnCore *c, uint64_t conn, const uint8_t peer_id[32], const char *dialed,
                  uint64_t now);
/* Where an inbound session comes from (its address without the port, at
 * most BUDGET_KEY_MAX bytes): the key of its per-source shares. Sessions
 * without one have no per-source share (tests, the simulator). */
void sn_core_set_source(SnCore *c, uint64_t conn, const char *source);
/* A session ended, for any reason. */
void sn_core_closed(SnCore *c, uint64_t conn, uint64_t now);
/* The same when the shell ended it on its own (stalled output, an overrun,
 * a secure-channel error, a timeout), not the far end: a group does not
 * count such a close as its leader's link closing. */
void sn_core_closed_here(SnCore *c, uint64_t conn, uint64_t now);
/* True once conn's HELLO made it a leaf, a watch or a link: it has a place
 * under those caps and leaves the shell's pre-auth budget (preauth.h). */
bool sn_core_settled(const SnCore *c, uint64_t conn);
/* A DIAL action failed before a session opened. */
void sn_core_dial_failed(SnCore *c, const char *addr, uint64_t now);
/* One decrypted application message from conn. */
void sn_core_recv(SnCore *c, uint64_t conn, const uint8_t *msg, size_t len, uint64_t now);
/* Time passed: keepalives, timeouts, dialing, expiry. */
void sn_core_tick(SnCore *c, uint64_t now);
/* When sn_core_tick next has work (absolute ms). */
uint64_t sn_core_next_deadline(const SnCore *c);

/* Pops the next action; false when none. Release with sn_action_clear. */
bool sn_core_next_action(SnCore *c, SnAction *out);
void sn_action_clear(SnAction *a);

const SnStats *sn_core_stats(const SnCore *c);
/* The address book's size, verified share and eviction counters. */
void sn_core_mesh_stats(const SnCore *c, MeshStats *out);

void sn_core_group_status(const SnCore *c, SnGroupStatus *out);
/* The highest group term seen (status.term): what the shell persists after
 * every batch of actions, without filling a whole SnGroupStatus. */
uint64_t sn_core_group_term(const SnCore *c);
/* Entries held for leaf id (attached or replicated); 0 if none. */
size_t sn_core_leaf_entries(const SnCore *c, const uint8_t leaf[32]);

/* Iterates over leaf sessions: id, conn (e.g. to refresh TURN credentials). */
typedef void (*SnLeafFn)(const uint8_t id[32], uint64_t conn, void *ctx);
void sn_core_foreach_leaf(const SnCore *c, SnLeafFn fn, void *ctx);

/* Iterates over super-node links (for status): id, address, conn. */
typedef void (*SnLinkFn)(const uint8_t id[32], const char *addr, uint64_t conn, void *ctx);
void sn_core_foreach_link(const SnCore *c, SnLinkFn fn, void *ctx);

/* SIGHUP: new link target, leaf limit and keepalive interval (0: 5000).
 * Nothing in place is closed; the next tick works to the new values. */
void sn_core_set_limits(SnCore *c, unsigned target_degree, unsigned max_leaves,
                        uint64_t keepalive_ms);

/* SIGHUP: a new query_rate (and burst, the same); what is queued stays. */
void sn_core_set_query_rate(SnCore *c, double rate, uint64_t now);

/* Our network certificate (netcert.h; len bytes, copied), sent in every
 * HELLO from now on: at start, and when the operator renews it (SIGHUP).
 * Links already up keep going. */
void sn_core_set_cert(SnCore *c, const uint8_t *cert, size_t len);

#endif
