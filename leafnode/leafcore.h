/* leafcore.h - the leaf's protocol core, sans I/O.
 *
 * Keeps a session with its group's leader (slot PRIMARY) and an idle one with
 * the group's backup (slot WATCH), see supernode/GROUPS.md: dials (with
 * exponential backoff and jitter after failures), says HELLO, follows the
 * leader of the highest term it hears of, publishes the manifest when the
 * leader does not already hold it (ATTACHED), pings, tells the backup when
 * the leader is lost, and runs searches: a search collects hits until its
 * deadline, de-duplicated, and then completes. Outside a group (and when
 * the whole group has been unreachable for 2 minutes) the primary goes to
 * the super nodes of its host cache (hostcache.h): a lost one is redialed
 * once, then the next; a refusal's hosts are tried first. Time is passed
 * in.
 */
#ifndef CANOPY_LEAFCORE_H
#define CANOPY_LEAFCORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hostcache.h"

typedef struct LeafCore LeafCore;

typedef struct {
  const char *supernode; /* "host:port" dialed first (borrowed for leaf_core_new) */
  /* Or several (NULL-terminated, borrowed for leaf_core_new), tried in
   * order; then those the host cache learns (hostcache.h). */
  const char *const *supernodes;
  uint64_t keepalive_ms;   /* PING interval; 3 silent intervals end the session */
  uint64_t backoff_min_ms; /* first redial delay */
  uint64_t backoff_max_ms;
  unsigned max_hits; /* per search */
  /* The network's public key (32 bytes, borrowed for leaf_core_new), or
   * NULL: with it, a super node counts only once its HELLO carries a valid
   * certificate from that network (shared/netcert.h); unix_now gives the
   * wall-clock seconds certificates expire by. */
  const uint8_t *network_pk;
  uint64_t (*unix_now)(void);
} LeafConfig;

void leaf_config_defaults(LeafConfig *c);

typedef struct {
  char *name; /* relative path inside the share, UTF-8 */
  uint64_t size;
  uint8_t cid[32];
} LeafEntry;

/* The two sessions a leaf keeps. */
typedef enum { LEAF_SLOT_PRIMARY = 0, LEAF_SLOT_WATCH = 1 } LeafSlot;

typedef enum {
  LEAF_ACT_DIAL,        /* open a session to addr in slot (any old one there is gone) */
  LEAF_ACT_SEND,        /* data/len: one encoded message for slot's session */
  LEAF_ACT_CLOSE,       /* end slot's session (reason); no leaf_core_disconnected follows */
  LEAF_ACT_SWAP,        /* the WATCH session is the PRIMARY now; PRIMARY's (if any)
                           was closed by a CLOSE just before; WATCH is empty */
  LEAF_ACT_HIT,         /* search: one new hit */
  LEAF_ACT_SEARCH_DONE, /* search: finished; error set if it could not run */
  LEAF_ACT_NAT_INFO,    /* the super node's STUN port and TURN credentials */
  LEAF_ACT_SIGNAL,      /* ICE signalling from another leaf (sid, kind, peer = src, text) */
} LeafActionKind;

typedef struct {
  LeafActionKind kind;
  LeafSlot slot; /* DIAL, SEND, CLOSE */
  char *addr;    /* DIAL (owned) */
  uint8_t *data; /* SEND (owned) */
  size_t len;
  const char *reason; /* CLOSE, or SEARCH_DONE's error (static); NULL if none */
  uint32_t search;    /* HIT, SEARCH_DONE */
  char *name;         /* HIT (owned) */
  uint64_t size;
  uint8_t cid[32];
  uint8_t peer[32];
  uint8_t sid[16];                         /* SIGNAL */
  uint8_t signal_kind;                     /* SIGNAL: WireSignalKind */
  char *text;                              /* SIGNAL (owned) */
  uint16_t stun_port;                      /* NAT_INFO */
  char *turn_addr, *turn_user, *turn_pass; /* NAT_INFO (owned; may be "") */
} LeafAction;

typedef void (*LeafRandomFn)(uint8_t *out, size_t n, void *ctx);

LeafCore *leaf_core_new(const LeafConfig *cfg, LeafRandomFn rng, void *rng_ctx);
void leaf_core_free(LeafCore *c); /* NULL is a no-op */

/* Begins: the first DIAL comes out now. */
void leaf_core_start(LeafCore *c, uint64_t now);
/* Replaces the manifest (entries copied); republished at once if connected. */
void leaf_core_set_manifest(LeafCore *c, const LeafEntry *e, size_t n, uint64_t now);
size_t leaf_core_manifest_size(const LeafCore *c);

/* slot's session finished its handshake with super node peer (its
 * authenticated node id). */
void leaf_core_connected(LeafCore *c, LeafSlot slot, const uint8_t peer[32], uint64_t now);
/* slot's dial failed or its session ended (not after our own CLOSE). The
 * primary is redialed after backoff and pending searches finish with an
 * error; a lost primary is reported to the backup. */
void leaf_core_disconnected(LeafCore *c, LeafSlot slot, uint64_t now);
void leaf_core_recv(LeafCore *c, LeafSlot slot, const uint8_t *msg, size_t len, uint64_t now);
void leaf_core_tick(LeafCore *c, uint64_t now);
uint64_t leaf_core_next_deadline(const LeafCore *c);

/* Starts a search; returns its id. kind is WireQueryKind. If not connected
 * the SEARCH_DONE (with error) is queued at once. */
uint32_t leaf_core_search(LeafCore *c, uint8_t kind, const char *text, uint8_t ttl,
                          uint64_t wait_ms, uint64_t now);

/* Sends an ICE signalling message to leaf dst through the super node.
 * False if not connected or the text breaks the codec's caps. */
bool leaf_core_signal(LeafCore *c, const uint8_t sid[16], uint8_t kind, const uint8_t dst[32],
                      const char *text);

/* Ends search id as soon as it has `limit` hits (1..max_hits), instead of
 * at its deadline: for "find me one source" lookups. */
void leaf_core_search_limit(LeafCore *c, uint32_t id, unsigned limit);

bool leaf_core_next_action(LeafCore *c, LeafAction *out);
void leaf_action_clear(LeafAction *a);

/* Attached: the primary session is open and its super node said ATTACHED
 * (it leads). Searches and signalling need this. */
bool leaf_core_is_connected(const LeafCore *c);
unsigned leaf_core_failures(const LeafCore *c); /* primary dials failed in a row */

/* What `canopy-leaf status` shows about the group. */
#define LEAF_MAX_MEMBERS 32 /* WIRE_MAX_MEMBERS */
typedef struct {
  bool attached;
  uint8_t supernode[32]; /* primary's node id (if attached) */
  char supernode_addr[130];
  bool supernode_leads; /* it said ATTACHED */
  uint64_t term;        /* highest term heard */
  char group[256];
  bool has_backup;
  uint8_t backup[32];
  char backup_addr[130];
  bool watching;           /* WATCH session open */
  uint64_t publishes;      /* manifest uploads (ATTACHED did not match it), the first included */
  uint64_t leader_changes; /* primary moved to another super node */
  /* The group's members as last heard (GROUP_STATE), by address: where the
   * leaf goes when its leader and backup are both gone. */
  size_t n_members;
  char members[LEAF_MAX_MEMBERS][130];
  /* Group views refused: from a super node the leader did not list, or of
   * a term beyond belief (GROUPS.md, "Leaves"). */
  uint64_t claims_refused;
} LeafGroupStatus;

void leaf_core_group_status(const LeafCore *c, LeafGroupStatus *out);

/* SIGHUP: a new keepalive interval (0: 5000), used from the next tick. */
void leaf_core_set_keepalive(LeafCore *c, uint64_t ms);

/* The super nodes the leaf knows (borrowed): the shell loads it from the
 * state dir before leaf_core_start and saves it when hostcache_dirty. */
HostCache *leaf_core_hosts(LeafCore *c);

#define LEAF_REFUSAL_TEXT 300
typedef struct {
  uint64_t refusals;    /* REFUSE messages from super nodes */
  uint64_t hosts_heard; /* HOSTS messages */
  /* "ADDR (leaves full) named N: ADDR ADDR", or "" */
  char last_refusal[LEAF_REFUSAL_TEXT];
} LeafHostStatus;
void leaf_core_host_status(const LeafCore *c, LeafHostStatus *out);

#endif
