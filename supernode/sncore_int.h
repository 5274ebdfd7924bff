/* sncore_int.h - what the super-node core's own files share (sncore.c,
 * group.c): the session table and the core's state. Not for the shell. */
#ifndef CANOPY_SNCORE_INT_H
#define CANOPY_SNCORE_INT_H

#include <glib.h>

#include "budget.h"
#include "fairshare.h"
#include "flood.h"
#include "hostsend.h"
#include "index.h"
#include "mesh.h"
#include "ratelimit.h"
#include "pubrate.h"
#include "roster.h"
#include "sncore.h"
#include "wire.h"

#define SN_AGENT "canopy-supernode/0.1"
#define FLOOD_LIFETIME_MS 60000
#define FLOOD_MAX_IDS 65536
#define PEERS_REQ_INTERVAL_MS 10000
#define MAX_DIALS_PER_TICK 8
/* ICE offers handed to one of our leaves, whoever sends them (a leaf has
 * 32 inbound slots, each held up to 15 s: ~2 offers/s keep it busy). */
#define SN_OFFERS_PER_LEAF_RATE 4
#define SN_OFFERS_PER_LEAF_BURST 16

/* NEW until HELLO; LEAF: a leaf attached to us; WATCH: a leaf's idle
 * session to us as its group's backup; SUPER: a super-node link. */
typedef enum { PEER_NEW, PEER_LEAF, PEER_WATCH, PEER_SUPER } PeerKind;

typedef struct {
  uint64_t conn;
  uint8_t id[32];
  PeerKind kind;
  bool outbound;
  char addr[MESH_ADDR_MAX + 1]; /* dialed, or advertised in HELLO; may be "" */
  uint64_t last_rx;
  uint64_t last_ping;
  bool ponged; /* its last PING was answered (keepalive_answer_ping) */
  RateLimit queries;
  RateLimit signals;
  RateLimit offers_in; /* LEAF: offers delivered to it, from all sources */
  /* SUPER links of our group (they sent a GROUP_STATE with our name) */
  bool member;
  bool closed_by_us;   /* sn_close_peer closed it (group_link_down: not the far end) */
  uint8_t member_role; /* WireGroupRole it last said */
  uint64_t member_term;
  /* WATCH sessions: what the leaf last said of its leader */
  bool watch_leader_ok;
  uint64_t watch_term;
  bool member_refused; /* said our group's name without the secret (logged once) */
  /* Memory budgets: the address it came from, the publish rate, and what
   * it holds of its source's index shares (given back when it goes). */
  char source[BUDGET_KEY_MAX + 1];
  RateLimit publishes;
  size_t held_entries, held_bytes;
  /* keepalive.c: links in SnCore.by_rx and SnCore.by_ping (data: this). */
  GList rx_link, ping_link;
  GList link_link;     /* SUPER: in SnCore.links (data: this) */
  uint64_t up_since;   /* SUPER: when it became a link (degree.h shedding) */
  bool shortcut;       /* SUPER: our long-range link (degree.h) */
  bool their_shortcut; /* SUPER: the dialer's long-range link (degree.h) */
  uint64_t hosts_at;   /* SUPER: when its last HOSTS was taken (meshlink.c) */
} Peer;

/* Replication, leader side: ops sent to the backup, not yet acknowledged. */
typedef struct {
  uint64_t seq;
  uint64_t sent_at;
  size_t bytes; /* its size on the wire, about */
} Pending;

/* A snapshot to the backup, sent in pieces under flow control (group.c):
 * the records to send when it began, and how far it got. */
typedef struct {
  GArray *ids;        /* 32-byte record ids (element size 32); NULL when none runs */
  guint next;         /* the record being sent */
  bool started;       /* its LEAF_UP went */
  IndexCursor cur;    /* its next entries in the index */
  size_t unacked;     /* REPL bytes sent to the backup, not acknowledged */
  uint64_t pieces;    /* REPL ops the snapshots sent (tests, status) */
  size_t max_unacked; /* the most unacknowledged at once */
  uint64_t resyncs;   /* snapshots resent because changes outran the backup */
  uint64_t planned;   /* ops this snapshot was to send when it began, about */
  uint64_t sent;      /* ops it sent */
} Snapshot;

typedef struct {
  bool on;
  char name[WIRE_MAX_GROUP + 1];
  bool keyed;
  uint8_t key[32]; /* the group's secret, when keyed */
  SnRole role;
  uint64_t term;
  bool has_leader, has_backup;
  uint8_t leader[32], backup[32];
  char leader_addr[MESH_ADDR_MAX + 1], backup_addr[MESH_ADDR_MAX + 1];
  uint64_t leader_seen; /* a member: last time the leader was heard */
  uint64_t join_deadline;
  uint64_t join_started;
  bool proven;               /* membership can be proven: keyed, or a network */
  uint64_t heard_term;       /* highest believable term a member named second hand */
  GHashTable *watchers;      /* leaf id -> its one WATCH Peer* (borrowed) */
  uint64_t claims_refused;   /* GROUP_STATEs without proof or beyond belief */
  uint64_t watchers_refused; /* WATCH sessions over the cap */
  size_t watch_lost;         /* watchers whose last WATCH said the leader is lost */
  uint64_t probed_at;        /* backup: when it last asked its watchers (0: not since
                                the leader was last heard) */
  uint64_t probes;           /* watcher probes sent (status, tests) */
  uint64_t leaf_view;        /* hash of the view the leaves last heard */
  uint64_t next_hb;
  uint64_t members_told;   /* when our view last went to every member (a heartbeat) */
  uint64_t last_tick;      /* the previous group_tick: a late one means we were stalled */
  GPtrArray *leader_links; /* the leader's other mesh neighbours (owned strings) */
  /* leader */
  uint64_t repl_seq;
  GQueue pending;     /* Pending*, oldest first */
  bool backup_synced; /* snapshot begun to the current backup: changes flow to it */
  Snapshot snap;
  /* backup */
  uint64_t repl_applied;
  uint64_t repl_last_seq;
  bool replica_whole;        /* backup: SNAPSHOT_END applied from this leader and term */
  bool leader_closed;        /* backup: the leader's link closed (not just fell silent) since we
                                last heard it */
  uint64_t leader_closed_at; /* when (vote_needed: a smaller quorum only soon after) */
  uint64_t settle_until;     /* leader after a takeover: no backup before this unless every
                                replicated record has its leaf again (GROUPS.md) */
  uint64_t takeovers, stepdowns;
  uint64_t now; /* the latest time an event brought (for status) */
} Group;

struct SnCore {
  SnConfig cfg;
  char advertise[MESH_ADDR_MAX + 1];
  uint8_t self[32];
  SnRandomFn rng;
  void *rng_ctx;
  GHashTable *peers;        /* conn (uint64 key) -> Peer*, owned */
  GHashTable *leaves_by_id; /* node id (Peer.id) -> Peer*, leaves only */
  Index *index;
  Roster *roster; /* one record per leaf whose entries we hold */
  Flood *flood;
  FairShare *queries; /* searches and queries waiting for their turn (qsched.c) */
  FairShare *signals; /* ICE offers waiting to be flooded (qsched.c) */
  uint64_t queries_shed_seen, signals_shed_seen; /* schedulers' drops already in stats */
  Mesh *mesh;
  GQueue actions; /* SnAction*, owned */
  SnStats stats;
  uint64_t next_housekeeping;
  uint64_t next_peers_req;
  Group group;
  bool networked; /* cfg.network_pk was set: links need a certificate */
  uint8_t network_pk[32];
  uint8_t cert[WIRE_MAX_CERT];
  uint16_t cert_len;
  Budget *src_entries, *src_bytes; /* index shares per source address */
  PubRates *pubrates;              /* departed leaves' publish buckets */
  GQueue by_rx, by_ping;           /* every Peer, by silence (keepalive.c) */
  /* The SUPER peers, so that forwarding a query or finding a link costs
   * O(links), not O(leaves) (issue 12). */
  GQueue links;
  uint64_t next_hosts, next_gossip;      /* meshlink.c: shedding round, HOSTS to links */
  HostSend *hostsend;                    /* HOSTS to leaves, REFUSE when full */
  uint64_t next_evict;                   /* meshlink.c: no link evicted for a newcomer before */
  uint64_t next_shortcut;                /* ... when to look for a long-range link */
  char shortcut_dial[MESH_ADDR_MAX + 1]; /* ... its dial under way, or "" */
};

/* Whether --peer addresses are direction nodes (mesh_set_direction):
 * discovery on and no group. */
static inline bool sn_peers_are_direction(const SnCore *c)
{
  return c->cfg.discovery && !c->group.on;
}

/* sncore.c */
void sn_push(SnCore *c, SnAction a);
void sn_send(SnCore *c, uint64_t conn, const WireMsg *m);
void sn_close_peer(SnCore *c, Peer *p, const char *reason, uint64_t now);
Peer *sn_find_link(SnCore *c, const uint8_t id[32], uint64_t skip);
/* Handles a query id for the first time (from is the session it came from):
 * route, answer, forward. */
void sn_handle_query(SnCore *c, Peer *from, const uint8_t qid[WIRE_QID_LEN], uint8_t ttl,
                     uint8_t kind, WireStr text, uint32_t req, uint64_t now);

/* Sends m to every super-node link but except. */
void sn_forward(SnCore *c, uint64_t except, const WireMsg *m);

/* qsched.c: the fair queues in front of sn_handle_query and of flooding
 * ICE offers. */
bool sn_sched_init(SnCore *c, uint64_t now);
void sn_sched_free(SnCore *c);
/* Queues a leaf's SEARCH (qid NULL: drawn when it is handled) or a link's
 * QUERY, then handles what the budget allows. */
void sn_query_push(SnCore *c, Peer *from, const uint8_t *qid, uint8_t ttl, uint8_t kind,
                   WireStr text, uint32_t req, uint64_t now);
/* Queues an OFFER (ttl already decremented, src stamped) to flood to every
 * link but from's, then floods what the budget allows. */
void sn_signal_push(SnCore *c, Peer *from, const WireMsg *offer, uint64_t now);
/* Handles queued queries and offers while the budgets allow. */
void sn_sched_drain(SnCore *c, uint64_t now);
/* When sn_sched_drain next has work (UINT64_MAX: nothing queued). */
uint64_t sn_sched_deadline(const SnCore *c);
/* A session closed: its queued queries and offers go. */
void sn_sched_forget(SnCore *c, uint64_t conn);

/* Binds leaf session p (kind NEW or WATCH) as an attached leaf: record,
 * leaves_by_id, ATTACHED. */
void sn_attach_leaf(SnCore *c, Peer *p, uint64_t now);
/* hostsend.c: a full super node's REFUSE (then closes p), the HOSTS queued
 * for a leaf that attached, and the queue's drain and refresh rounds. */
void sn_hosts_refuse_leaf(SnCore *c, Peer *p, uint64_t now);
void sn_hosts_leaf_attached(SnCore *c, Peer *p, uint64_t now);
void sn_hosts_tick(SnCore *c, uint64_t now);
uint64_t sn_hosts_deadline(const SnCore *c);

/* Gives back every leaf's index shares: the records they paid for are
 * gone (we stopped leading and cleared the roster). */
void sn_release_all_shares(SnCore *c);

/* meshlink.c: degree maintenance (degree.h) between super nodes. */
/* REFUSE (REFUSE_LINKS_FULL, others to try) to p, then closes it. */
void sn_link_refuse(SnCore *c, Peer *p, const char *reason, uint64_t now);
/* A REFUSE from p: learn its hosts, back off from it, close. */
void sn_on_refuse(SnCore *c, Peer *p, const WireMsg *m, uint64_t now);
/* HOSTS from link p: addresses and loads. */
void sn_on_hosts(SnCore *c, Peer *p, const WireMsg *m, uint64_t now);
/* Full: drops one link whose peer has others (degree_pick_evict), with a
 * REFUSE to it. False if none qualifies. */
bool sn_link_make_room(SnCore *c, uint64_t now);
/* p just became a link: HOSTS to it. */
void sn_link_welcome(SnCore *c, Peer *p, uint64_t now);
/* HOSTS gossip and shedding, when due; and when that is. */
void sn_links_tick(SnCore *c, uint64_t now);
uint64_t sn_links_deadline(const SnCore *c);

#endif
