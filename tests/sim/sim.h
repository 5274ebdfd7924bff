/* sim.h - canopy-sim's world: the nodes, the virtual network and clock,
 * the faults, and the functions the simulator's files share (sim.c drives
 * the schedules, world.c runs the cores on the network, faults.c breaks
 * things, check.c judges the invariants). */
#ifndef CANOPY_SIM_H
#define CANOPY_SIM_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "leafcore.h"
#include "sncore.h"

#define MAX_SUPERS 8
#define MAX_LEAVES 48
#define MAX_NODES (MAX_SUPERS + MAX_LEAVES)
#define MAX_GROUPS 2
#define LAT_MIN_MS 1
#define LAT_MAX_MS 5
#define CONNECT_TIMEOUT_MS 5000 /* g_socket_client_set_timeout(5) in both shells */
#define HANDSHAKE_MS 10000      /* SESSION_HANDSHAKE_MS */
#define POLL_MS 50              /* a stalled handshake looks again this often */
#define CHECK_MS 25             /* convergence is measured this often */
#define SPIN_LIMIT 10000        /* ticks at one instant before we call it a busy loop */
#define RING 48                 /* notable trace lines kept for a FAIL report */
#define SEARCH_GAP_MS 150       /* between the final check's searches (rate limits) */
#define SEARCH_WAIT_MS 2000     /* each search's deadline */

/* --- random numbers: splitmix64, never rand() -------------------------------- */

static inline uint64_t splitmix(uint64_t *s)
{
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static inline uint64_t rnd(uint64_t *s, uint64_t lo, uint64_t hi)
{
  return lo + splitmix(s) % (hi - lo + 1);
}

static inline bool chance(uint64_t *s, unsigned percent)
{
  return splitmix(s) % 100 < percent;
}

/* The cores' SnRandomFn / LeafRandomFn: one splitmix stream per node. */
static inline void core_rng(uint8_t *out, size_t n, void *ctx)
{
  uint64_t *s = ctx;
  while (n) {
    uint64_t z = splitmix(s);
    size_t k = n < 8 ? n : 8;
    memcpy(out, &z, k);
    out += k;
    n -= k;
  }
}

/* --- the world ---------------------------------------------------------------- */

typedef enum { NODE_SUPER, NODE_LEAF } NodeKind;

typedef struct {
  uint64_t ready; /* earliest delivery */
  bool fin;       /* the sender's end is closed: nothing follows */
  uint8_t *data;
  size_t len;
} Item;

/* One TCP connection with a session on it. End 0 dialed, end 1 (always a
 * super node) accepted. */
typedef struct {
  uint64_t id;
  int node[2];
  unsigned inc[2];   /* each node's incarnation when it opened */
  uint64_t local[2]; /* super-node ends: the core's conn id */
  bool open[2];      /* the end's core neither closed it nor heard it closed */
  bool fin_sent[2];  /* end e's FIN is queued */
  GQueue q[2];       /* q[e]: Items from end e to end !e, in order */
  uint64_t last_ready[2];
} Conn;

typedef struct {
  NodeKind kind;
  int index;
  int group; /* 0: g1, 1: g2 */
  char name[8];
  char addr[32]; /* super nodes: "sN:7400" */
  uint8_t id[32];
  bool up;   /* a core runs (not crashed) */
  bool hung; /* SIGSTOP: no ticks, nothing delivered */
  unsigned inc;
  uint64_t rng;
  uint64_t tick_at, tick_gen;
  uint64_t spin_now;
  unsigned spins;

  /* super node */
  SnCore *sn;
  uint64_t disk_term; /* what the shell persisted */
  uint64_t next_local;
  GHashTable *by_local; /* conn id -> Conn*, this incarnation */
  SnRole role;
  uint64_t term;
  bool has_leader;
  uint8_t leader[32];
  uint64_t recorded_term; /* last term recorded as ours in the term map, +1 */
  int direction;          /* g2: the g1 super node it is also --peer'ed with */
  uint64_t takeovers_past, stepdowns_past;

  /* leaf */
  LeafCore *leaf;
  char home[32]; /* cfg.supernode */
  Conn *slot[2];
  uint64_t dial_gen[2];
  GArray *manifest; /* LeafEntry, names owned */
  unsigned files_made;
  LeafGroupStatus status; /* as of its core's last event */
} Node;

typedef enum { DIAL_SYN, DIAL_HS, DIAL_FAIL } DialPhase;

typedef struct {
  int from;
  unsigned inc;
  int slot; /* leaf slot; -1 for a super node */
  uint64_t gen;
  char addr[32];
  int target; /* -1: nobody has that address */
  unsigned target_inc;
  uint64_t start, hs_start;
  DialPhase phase;
} Dial;

typedef enum {
  EV_START,
  EV_TICK,
  EV_PUMP,
  EV_DIAL,
  EV_FAULT_NEXT,
  EV_HEAL,
  EV_HEAL_ALL,
  EV_CHURN,
  EV_CHECK,
  EV_GUARD_END,
  EV_SEARCH,
} EvKind;

typedef struct {
  uint64_t t, seq;
  EvKind kind;
  int a;      /* node, fault, direction */
  uint64_t b; /* tick generation */
  void *p;    /* Conn* (PUMP), Dial* (DIAL, owned by the event) */
} Ev;

typedef enum {
  F_CRASH,
  F_HANG,
  F_ISOLATE,
  F_CUT_LB,
  F_CUT_PAIR,
  F_CUT_LEAVES,
  F_SPLIT,
  F_CRASH_LEAF,
  F_CLAIM, /* --claims: a member (it holds the key) claims to lead, on one link */
  F_KINDS
} FaultKind;

typedef struct {
  FaultKind kind;
  int group;
  int target;
  GArray *pairs; /* int[2]: cut links */
  uint64_t start;
  bool active;
  bool on_leader; /* crash/hang of the leader: its recovery is measured */
  bool clean;     /* injected alone on a converged group, and still alone */
  uint64_t base_term;
} Fault;

typedef struct {
  int group;
  uint64_t term;
  uint8_t id[32];
  char name[8];
  uint64_t t;
} TermRec;

/* One search of the final check (invariant 6). */
typedef struct {
  int searcher, target;
  uint32_t id;
  LeafEntry want; /* name borrowed from the target's manifest */
  bool started, found, done;
  const char *error;
} SearchRec;

typedef struct {
  unsigned groups;
  unsigned supers[MAX_GROUPS], leaves[MAX_GROUPS];
  uint64_t fault_from, fault_until; /* the fault phase, ms */
  uint64_t quiet_ms;                /* after the heal, before the final check */
  bool claims;                      /* inject F_CLAIM faults too */
  int verbose;
} Params;

typedef struct {
  uint64_t schedules, faults, by_kind[F_KINDS], takeovers, stepdowns, publishes, leaves_total;
  uint64_t events;
  uint64_t converge_max, converge_sum, converge_seed;
  GArray *recover[2]; /* uint64 ms: leader crash, leader hang -> converged */
  uint64_t anomalies;
  uint64_t searches;
} Totals;

typedef struct {
  const Params *prm;
  uint64_t seed;
  uint64_t now, seq;
  Ev *heap;
  size_t nheap, capheap;
  uint64_t rng_net, rng_fault, rng_ids;
  unsigned ngroups, nsupers, nleaves, nnodes;
  Node node[MAX_NODES];
  unsigned char cut[MAX_NODES][MAX_NODES]; /* how many faults cut this link */
  GPtrArray *conns;                        /* Conn*, owned */
  uint64_t next_conn;
  GArray *faults; /* Fault */
  unsigned active_faults;
  unsigned max_faults;
  bool healed;
  GArray *terms; /* TermRec */
  bool failed;
  GString *why;
  char *ring[RING];
  unsigned ring_next;
  uint64_t events;
  GPtrArray *searches; /* SearchRec*, owned */
  /* convergence */
  bool converged[MAX_GROUPS];
  uint64_t healed_at, converged_at;
  Totals *tot;
  uint64_t anomalies;
  char anomaly_first[200];
} World;

extern const char *const fault_names[F_KINDS];
/* The key every simulated group shares (members prove membership). */
extern const uint8_t sim_group_key[32];

/* --- world.c: the cores on the virtual network ------------------------------ */

void sim_note(World *w, const char *fmt, ...) G_GNUC_PRINTF(2, 3);  /* role changes, faults */
void sim_trace(World *w, const char *fmt, ...) G_GNUC_PRINTF(2, 3); /* every message */
void sim_fail(World *w, const char *fmt, ...) G_GNUC_PRINTF(2, 3);  /* the first one counts */
const char *sim_role_str(SnRole r);
Node *world_node_by_id(World *w, const uint8_t id[32]);
const char *world_id_name(World *w, const uint8_t id[32]); /* "s3", "l7" or "?" */
bool world_live(const Node *n);                            /* up and not hung */
bool world_is_cut(World *w, int a, int b);
void world_push(World *w, uint64_t t, EvKind kind, int a, uint64_t b, void *p);
Ev world_pop(World *w);
void world_conn_free(gpointer conn);
void world_pump(World *w, Conn *c, int e);
void world_repump(World *w, int to);
void world_dial_step(World *w, Dial *d);
/* After any call into n's core: run its actions, persist its term, check
 * invariants 1, 1b and 5, re-arm its tick. */
void world_after(World *w, Node *n);
void world_tick(World *w, Node *n, uint64_t gen);
void world_start(World *w, Node *n);
void world_crash(World *w, Node *n);
void world_resume(World *w, Node *n);

/* --- faults.c ------------------------------------------------------------------ */

void fault_inject(World *w);
void fault_heal(World *w, int idx);
void fault_heal_all(World *w);
void fault_guard_end(World *w, int idx); /* invariant 4 */
void fault_churn(World *w);

/* --- check.c: invariants 2, 3 and 6, and the figures ------------------------- */

Node *check_leader(World *w, int g);
Node *check_backup_of(World *w, Node *leader);
bool check_converged(World *w, int g, bool full, GString *why);
void check_tick(World *w);
void check_search_start(World *w, SearchRec *r);
void check_searches(World *w);

/* --- sim.c -------------------------------------------------------------------- */

void sim_run_until(World *w, uint64_t until);

#endif
