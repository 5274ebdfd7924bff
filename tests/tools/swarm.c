/* swarm.c - canopy-swarm: many leaves in one process, the load generator.
 *
 *   canopy-swarm --supernode HOST:PORT --leaves N --state-dir DIR [--files-per-leaf K]
 *                [--entries-per-leaf K] [--first-index I] [--keepalive-ms MS]
 *                [--stagger-ms MS | --start-rate R] [--max-pending P]
 *                [--search-rate R] [--search-wait-ms MS] [--source-addresses K]
 *                [--log-level LEVEL]
 *   canopy-swarm status --state-dir DIR [--json]
 *   canopy-swarm wait-moved --state-dir DIR --from NODE_ID --timeout-ms MS
 *   canopy-swarm search-rate --state-dir DIR --rate R
 *
 * The daemon runs N (up to SWARM_MAX_LEAVES) leaf cores (leafnode/leafcore.h),
 * each with its own in-memory Ed25519 identity and its own real TCP sessions
 * (shared/session.h: handshakes, encryption, keepalives), driven the way
 * leafnode/main.c drives its core: a PRIMARY and a WATCH slot, SWAP moving
 * the watch session into the primary slot. Leaf i (numbered from
 * --first-index, so that several processes can share one numbering) publishes
 * --files-per-leaf entries named "swarm-<i>-<k>" and --entries-per-leaf
 * entries with realistic names (tests/tools/swarmnames.h), all with random
 * content ids; it serves nothing. A process holds at most its fd limit's
 * worth of sessions (two per leaf in a group): tests/tools/swarm_procs.sh
 * splits a larger swarm over several processes.
 *
 * Leaves start at --start-rate per second (or one per --stagger-ms), with at
 * most --max-pending started but not yet attached. With --search-rate R the
 * swarm sends R searches a second, each from the next attached leaf without
 * a search in flight, for two keywords of another of its leaves' entries (so
 * every search should hit), and records the time from sending to the first
 * hit.
 *
 * With --source-addresses K the leaves dial from K loopback addresses,
 * 127.0.0.1 up, leaf i from the (i mod K)-th (tests/tools/swarm_dial.h: past
 * about 14,000 connections from one address to one super node, the kernel's
 * search for a source port costs more than the handshake).
 *
 * Its control socket (DIR/control.sock, shared/control.h) answers
 *   {"cmd":"status"}  {"leaves":N,"attached":n,"by_supernode":{"<id>":count,...},
 *                      "max_term":t,"publishes":total,"leader_changes":total,
 *                      "watching":n,"started":n,"attach_all_ms":ms or -1,
 *                      "attach_rate":sessions/s,"pings_sent":n,
 *                      "source_bind_failures":n (binds to a source that
 *                      failed; such a leaf dials from the kernel's choice),
 *                      "dials_pending":n (connects under way),
 *                      "searches_sent":n,"searches_hit":n,"searches_missed":n,
 *                      "search_p50_ms":x,"search_p99_ms":y}
 *                     attach_all_ms is the time from the first start until
 *                     every leaf was attached (the first time);
 *                     attach_rate is N over it (or attached over the time
 *                     so far); p50/p99 are nearest-rank over the last
 *                     SWARM_MAX_SAMPLES hits, in milliseconds.
 *   {"cmd":"search_rate","rate":R}
 *                     searches at R a second from now on (0: none), with the
 *                     search counters and latencies reset; {"search_rate":R}
 *   {"cmd":"wait_moved","from":"<node id hex>","timeout_ms":T}
 *                     first {"waiting":N}, as soon as the request is armed (so a
 *                     caller can start the failure after reading it), then
 *                     {"elapsed_ms":E} once every leaf is attached to a super
 *                     node other than `from` with a term higher than the one
 *                     it had when the request arrived; E is monotonic time from
 *                     the request's arrival ("half_ms": the median leaf's);
 *                     "done_at_ms"/"half_at_ms" are those two moments on the
 *                     monotonic clock (CLOCK_MONOTONIC, ms), for a caller
 *                     that stamps its own event on it. {"error":...} after T ms.
 */
#include <glib-unix.h>
#include <gio/gio.h>
#include <json-glib/json-glib.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "clock.h"
#include "config.h"
#include "control.h"
#include "evloop.h"
#include "identity.h"
#include "leafcore.h"
#include "session.h"
#include "swarm_dial.h"
#include "swarmnames.h"
#include "wire.h"

/* A super node holds 19,000 leaves within the 20,000 fd limit here; one
 * process of the swarm holds as many (one session each, outside a group). */
#define SWARM_MAX_LEAVES 19000
#define SWARM_MAX_FILES 10000
#define SWARM_MAX_SAMPLES 100000 /* search latencies kept for p50/p99 */
#define SWARM_TICK_MS 10         /* the starter's and the searcher's period */
#define SWARM_MAX_RATE 100000    /* searches or starts a second */

typedef struct Swarm Swarm;

typedef struct SwarmLeaf_ {
  Swarm *sw;
  unsigned idx;
  Identity id;
  LeafCore *core;
  Session *session[2];   /* by LeafSlot; owned reference */
  SwarmDial *dialing[2]; /* by LeafSlot; a dial under way */
  struct DialSlot {
    struct SwarmLeaf_ *lf;
    LeafSlot slot;
  } dial_ud[2]; /* what a dial's callback is handed, by LeafSlot */
  EvTimer tick; /* the core's next deadline, in the swarm's one timer heap */
  gboolean running_actions;
  gboolean attached; /* as last counted in Swarm.attached */
  uint32_t search;   /* the search in flight (0: none) */
  gboolean search_hit;
  int64_t search_t0; /* monotonic microseconds at sending */
} SwarmLeaf;

/* One pending wait_moved request. */
typedef struct {
  ControlClient *cl;
  uint8_t from[IDENTITY_ID_LEN];
  uint64_t t0, deadline;
  uint64_t *term0; /* per leaf: its term when the request arrived */
  gboolean *moved; /* per leaf: the condition holds now */
  unsigned moved_count;
  int64_t half_ms; /* when half the leaves had moved (-1: not yet): the median leaf */
} Waiter;

struct Swarm {
  GMainContext *ctx;
  GMainLoop *loop;
  SwarmDialers *dialers; /* leaf i dials from source (first + i) mod K */
  SwarmLeaf *leaves;
  unsigned n;
  ControlServer *ctl;
  GPtrArray *waiters; /* Waiter*, owned */
  EvLoop *ev;         /* the context's epoll set and timer heap (shared/evloop.h) */
  EvTimer wait_timer;
  uint64_t next_sid;
  uint64_t first;   /* --first-index */
  unsigned files;   /* --files-per-leaf */
  unsigned entries; /* --entries-per-leaf */
  /* Starting. */
  EvTimer start_timer;
  double start_rate; /* leaves a second; 0: all at once */
  unsigned max_pending;
  unsigned started, attached;
  int64_t t_start;       /* monotonic us of the first start */
  int64_t attach_all_us; /* -1 until every leaf was attached once */
  /* Searching. */
  EvTimer search_timer;
  double search_rate;
  unsigned search_wait_ms;
  unsigned search_cursor;
  int64_t search_t0;
  uint64_t searches_sent, searches_hit, searches_missed, searches_skipped;
  uint32_t *samples; /* microseconds, a ring of SWARM_MAX_SAMPLES */
  uint64_t n_samples;
  uint64_t pings_sent;
};

static void swarm_run_actions(SwarmLeaf *lf);
static void waiters_update(Swarm *sw, SwarmLeaf *lf, uint64_t now);
static void attached_update(Swarm *sw, SwarmLeaf *lf);
static void sample_add(Swarm *sw, int64_t us);
static void on_search_timer(EvTimer *t, void *ud);

/* Content ids and the cores' randomness: libsodium's generator fills a
 * buffer at once, where g_random_int_range() took GLib's global lock per
 * byte (3,200 times per leaf with 100 entries). */
static void rng_fill(uint8_t *out, size_t n, void *ctx)
{
  randombytes_buf(out, n);
}

/* --- sessions ------------------------------------------------------------------ */

/* The slot holding s, or -1: a session we closed ourselves (CLOSE, DIAL over
 * it) is in no slot, and its callbacks must not reach the core. */
static int slot_of(const SwarmLeaf *lf, const Session *s)
{
  if (lf->session[LEAF_SLOT_PRIMARY] == s)
    return LEAF_SLOT_PRIMARY;
  if (lf->session[LEAF_SLOT_WATCH] == s)
    return LEAF_SLOT_WATCH;
  return -1;
}

static void on_opened(Session *s, void *ud)
{
  SwarmLeaf *lf = ud;
  int slot = slot_of(lf, s);
  if (slot < 0)
    return;
  leaf_core_connected(lf->core, (LeafSlot)slot, session_peer_id(s), clock_now_ms());
  swarm_run_actions(lf);
}

static void on_message(Session *s, const uint8_t *msg, size_t len, void *ud)
{
  SwarmLeaf *lf = ud;
  int slot = slot_of(lf, s);
  if (slot < 0)
    return;
  leaf_core_recv(lf->core, (LeafSlot)slot, msg, len, clock_now_ms());
  swarm_run_actions(lf);
}

static void on_closed(Session *s, const char *reason, void *ud)
{
  SwarmLeaf *lf = ud;
  int slot = slot_of(lf, s);
  if (slot < 0)
    return;
  g_debug("leaf %u: %s session ended: %s", lf->idx, slot == LEAF_SLOT_PRIMARY ? "primary" : "watch",
          reason);
  lf->session[slot] = NULL;
  session_unref(s);
  leaf_core_disconnected(lf->core, (LeafSlot)slot, clock_now_ms());
  swarm_run_actions(lf);
}

static const SessionCallbacks session_cb = {on_opened, on_message, on_closed};

/* Ends whatever slot holds (a session or a dial) without telling the core. */
static void slot_drop(SwarmLeaf *lf, LeafSlot slot, const char *reason)
{
  swarm_dial_cancel(lf->dialing[slot]);
  lf->dialing[slot] = NULL;
  Session *s = lf->session[slot];
  if (s) {
    lf->session[slot] = NULL;
    session_close(s, reason);
    session_unref(s);
  }
}

/* A dial ended (a cancelled one never calls back: swarm_dial.h). */
static void on_dialed(GSocketConnection *conn, const char *error, void *ud)
{
  struct DialSlot *ds = ud;
  SwarmLeaf *lf = ds->lf;
  lf->dialing[ds->slot] = NULL;
  Session *s = NULL;
  if (conn) {
    s = session_new(G_IO_STREAM(conn), ++lf->sw->next_sid, &lf->id, CHANNEL_INITIATOR, lf->sw->ctx,
                    &session_cb, lf);
    g_object_unref(conn);
  } else {
    g_debug("leaf %u: dial failed: %s", lf->idx, error);
  }
  if (s)
    lf->session[ds->slot] = s;
  else
    leaf_core_disconnected(lf->core, ds->slot, clock_now_ms());
  swarm_run_actions(lf);
}

static void slot_dial(SwarmLeaf *lf, LeafSlot slot, const char *addr)
{
  slot_drop(lf, slot, "redialing");
  lf->dial_ud[slot].lf = lf;
  lf->dial_ud[slot].slot = slot;
  lf->dialing[slot] = swarm_dial_start(lf->sw->dialers, lf->sw->first + lf->idx, addr, on_dialed,
                                       &lf->dial_ud[slot]);
}

/* --- the core's actions ---------------------------------------------------------- */

/* Arms t for deadline; UINT64_MAX (nothing due) disarms it. */
static void ev_arm(EvTimer *t, uint64_t deadline)
{
  if (deadline == UINT64_MAX)
    evtimer_disarm(t);
  else
    evtimer_arm(t, deadline);
}

static void on_tick(EvTimer *t, void *ud)
{
  SwarmLeaf *lf = ud;
  leaf_core_tick(lf->core, clock_now_ms());
  swarm_run_actions(lf);
}

static void swarm_run_actions(SwarmLeaf *lf)
{
  /* Session callbacks below may call the core and come back here; the
   * outermost loop drains everything (as leafnode/main.c does). */
  if (lf->running_actions)
    return;
  lf->running_actions = TRUE;
  LeafAction a;
  while (leaf_core_next_action(lf->core, &a)) {
    switch (a.kind) {
    case LEAF_ACT_DIAL:
      slot_dial(lf, a.slot, a.addr);
      break;
    case LEAF_ACT_SEND:
      if (lf->session[a.slot]) {
        /* u8 version | u8 type: the super node's keepalive load. */
        if (a.len >= 2 && a.data[1] == MSG_PING)
          lf->sw->pings_sent++;
        session_send(lf->session[a.slot], a.data, a.len);
      }
      break;
    case LEAF_ACT_CLOSE:
      slot_drop(lf, a.slot, a.reason ? a.reason : "closed");
      break;
    case LEAF_ACT_SWAP:
      /* The core closed the primary just before; whatever is left there
       * (a dial still under way) is superseded by the watch session. */
      slot_drop(lf, LEAF_SLOT_PRIMARY, "replaced by the watch session");
      swarm_dial_cancel(lf->dialing[LEAF_SLOT_WATCH]);
      lf->dialing[LEAF_SLOT_WATCH] = NULL;
      lf->session[LEAF_SLOT_PRIMARY] = lf->session[LEAF_SLOT_WATCH];
      lf->session[LEAF_SLOT_WATCH] = NULL;
      break;
    case LEAF_ACT_HIT:
      if (a.search == lf->search && lf->search && !lf->search_hit) {
        lf->search_hit = TRUE;
        sample_add(lf->sw, g_get_monotonic_time() - lf->search_t0);
      }
      break;
    case LEAF_ACT_SEARCH_DONE:
      if (a.search == lf->search && lf->search) {
        if (lf->search_hit)
          lf->sw->searches_hit++;
        else
          lf->sw->searches_missed++;
        lf->search = 0;
      }
      break;
    case LEAF_ACT_NAT_INFO:
    case LEAF_ACT_SIGNAL:
      break; /* the swarm links to no leaf */
    }
    leaf_action_clear(&a);
  }
  lf->running_actions = FALSE;
  ev_arm(&lf->tick, leaf_core_next_deadline(lf->core));
  attached_update(lf->sw, lf);
  waiters_update(lf->sw, lf, clock_now_ms());
}

/* --- starting ------------------------------------------------------------------ */

static void attached_update(Swarm *sw, SwarmLeaf *lf)
{
  gboolean now_attached = leaf_core_is_connected(lf->core);
  if (now_attached == lf->attached)
    return;
  lf->attached = now_attached;
  if (now_attached)
    sw->attached++;
  else
    sw->attached--;
  if (sw->attached == sw->n && sw->attach_all_us < 0) {
    sw->attach_all_us = g_get_monotonic_time() - sw->t_start;
    g_message("all %u leaves attached in %.0f ms (%.0f sessions/s)", sw->n,
              (double)sw->attach_all_us / 1000, sw->n * 1e6 / (double)MAX(sw->attach_all_us, 1));
    /* Searches run on a settled swarm, so their latency is the index's and
     * the loop's, not the attach storm's. */
    if (sw->search_rate > 0)
      evtimer_arm(&sw->search_timer, clock_now_ms());
  }
}

/* Starts leaves at start_rate a second, keeping at most max_pending
 * started but not attached: an attach rate measured this way is what the
 * super node sustains, not how many handshakes it can be made to shed. */
static void on_start_timer(EvTimer *t, void *ud)
{
  Swarm *sw = ud;
  int64_t now = g_get_monotonic_time();
  if (sw->started == 0)
    sw->t_start = now;
  uint64_t allowed = sw->n;
  if (sw->start_rate > 0)
    allowed = MIN(allowed, (uint64_t)((double)(now - sw->t_start) * sw->start_rate / 1e6) + 1);
  while (sw->started < allowed && sw->started - MIN(sw->attached, sw->started) < sw->max_pending) {
    SwarmLeaf *lf = &sw->leaves[sw->started++];
    leaf_core_start(lf->core, clock_now_ms());
    swarm_run_actions(lf);
  }
  if (sw->started < sw->n)
    evtimer_arm(&sw->start_timer, clock_now_ms() + SWARM_TICK_MS);
}

/* --- searching ------------------------------------------------------------------ */

static void sample_add(Swarm *sw, int64_t us)
{
  sw->samples[sw->n_samples++ % SWARM_MAX_SAMPLES] = (uint32_t)CLAMP(us, 0, G_MAXUINT32);
}

static int cmp_u32(const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* p50 and p99 (nearest rank) of the kept samples, in ms; -1 if none. */
static void sample_percentiles(const Swarm *sw, double *p50, double *p99)
{
  size_t n = (size_t)MIN(sw->n_samples, SWARM_MAX_SAMPLES);
  *p50 = *p99 = -1;
  if (n == 0)
    return;
  uint32_t *v = g_memdup2(sw->samples, n * sizeof *v);
  qsort(v, n, sizeof *v, cmp_u32);
  size_t r50 = (n * 50 + 99) / 100, r99 = (n * 99 + 99) / 100;
  *p50 = v[MAX(r50, 1) - 1] / 1000.0;
  *p99 = v[MAX(r99, 1) - 1] / 1000.0;
  g_free(v);
}

/* One search from lf for an entry of another leaf of this process. */
static void search_one(Swarm *sw, SwarmLeaf *lf)
{
  unsigned j = sw->n > 1 ? (lf->idx + 1 + (unsigned)g_random_int_range(0, (gint)sw->n - 1)) % sw->n
                         : lf->idx;
  char name[SWARMNAME_MAX + 1], query[128];
  if (sw->entries > 0) {
    unsigned k = (unsigned)g_random_int_range(0, (gint)sw->entries);
    swarmname_make(sw->first + j, k, name, sizeof name, query, sizeof query);
  } else {
    unsigned k = (unsigned)g_random_int_range(0, (gint)sw->files);
    g_snprintf(query, sizeof query, "swarm %" G_GUINT64_FORMAT " %u", sw->first + j, k);
  }
  lf->search_hit = FALSE;
  lf->search_t0 = g_get_monotonic_time();
  lf->search =
      leaf_core_search(lf->core, QUERY_KEYWORDS, query, 1, sw->search_wait_ms, clock_now_ms());
  leaf_core_search_limit(lf->core, lf->search, 1);
  sw->searches_sent++;
  swarm_run_actions(lf);
}

/* Sends the searches owed at search_rate since the first one, each from the
 * next attached leaf with none in flight; owed searches that find no such
 * leaf are skipped (counted), not queued. */
static void on_search_timer(EvTimer *t, void *ud)
{
  Swarm *sw = ud;
  int64_t now = g_get_monotonic_time();
  if (sw->search_t0 == 0)
    sw->search_t0 = now;
  uint64_t owed = (uint64_t)((double)(now - sw->search_t0) * sw->search_rate / 1e6);
  while (sw->searches_sent + sw->searches_skipped < owed) {
    SwarmLeaf *lf = NULL;
    for (unsigned tries = 0; tries < sw->n && !lf; tries++) {
      SwarmLeaf *c = &sw->leaves[sw->search_cursor++ % sw->n];
      if (c->attached && c->search == 0)
        lf = c;
    }
    if (!lf) {
      sw->searches_skipped++;
      continue;
    }
    search_one(sw, lf);
  }
  evtimer_arm(&sw->search_timer, clock_now_ms() + SWARM_TICK_MS);
}

/* --- wait_moved ------------------------------------------------------------------ */

static gboolean leaf_moved(const SwarmLeaf *lf, const Waiter *w)
{
  if (!leaf_core_is_connected(lf->core))
    return FALSE;
  LeafGroupStatus gs;
  leaf_core_group_status(lf->core, &gs);
  return memcmp(gs.supernode, w->from, IDENTITY_ID_LEN) != 0 && gs.term > w->term0[lf->idx];
}

static void waiter_free(Waiter *w)
{
  g_free(w->term0);
  g_free(w->moved);
  g_free(w);
}

static void on_wait_timer(EvTimer *t, void *ud);

static void wait_timer_arm(Swarm *sw)
{
  uint64_t next = UINT64_MAX;
  for (guint i = 0; i < sw->waiters->len; i++) {
    Waiter *w = g_ptr_array_index(sw->waiters, i);
    next = MIN(next, w->deadline);
  }
  /* Also wake every second to notice callers that gave up. */
  if (next != UINT64_MAX)
    next = MIN(next, clock_now_ms() + 1000);
  ev_arm(&sw->wait_timer, next);
}

/* Answers and removes waiter i (the caller iterates backwards). */
static void waiter_finish(Swarm *sw, guint i, uint64_t now, const char *error)
{
  Waiter *w = g_ptr_array_index(sw->waiters, i);
  g_ptr_array_remove_index_fast(sw->waiters, i);
  if (error) {
    control_fail(w->cl, error);
  } else {
    JsonObject *o = json_object_new();
    json_object_set_int_member(o, "elapsed_ms", (gint64)(now - w->t0));
    json_object_set_int_member(o, "half_ms", w->half_ms);
    /* The same moments on the monotonic clock itself, so a caller that
     * stamped its signal on that clock times from the failure, not from
     * the arming (which comes up to a poll earlier). */
    json_object_set_int_member(o, "done_at_ms", (gint64)now);
    json_object_set_int_member(o, "half_at_ms", w->half_ms < 0 ? -1 : (gint64)w->t0 + w->half_ms);
    json_object_set_int_member(o, "leaves", sw->n);
    json_object_set_boolean_member(o, "done", TRUE);
    control_send(w->cl, o);
    control_finish(w->cl);
  }
  waiter_free(w);
}

/* lf's core ran: its part of every waiter's condition may have changed. */
static void waiters_update(Swarm *sw, SwarmLeaf *lf, uint64_t now)
{
  gboolean finished = FALSE;
  for (guint i = sw->waiters->len; i-- > 0;) {
    Waiter *w = g_ptr_array_index(sw->waiters, i);
    gboolean m = leaf_moved(lf, w);
    if (m != w->moved[lf->idx]) {
      w->moved[lf->idx] = m;
      w->moved_count = m ? w->moved_count + 1 : w->moved_count - 1;
      if (w->half_ms < 0 && 2 * w->moved_count >= sw->n)
        w->half_ms = (int64_t)(now - w->t0);
    }
    if (w->moved_count == sw->n) {
      waiter_finish(sw, i, now, NULL);
      finished = TRUE;
    }
  }
  if (finished)
    wait_timer_arm(sw);
}

static void on_wait_timer(EvTimer *t, void *ud)
{
  Swarm *sw = ud;
  uint64_t now = clock_now_ms();
  for (guint i = sw->waiters->len; i-- > 0;) {
    Waiter *w = g_ptr_array_index(sw->waiters, i);
    if (now >= w->deadline) {
      char msg[160];
      g_snprintf(msg, sizeof msg, "timed out: %u of %u leaves moved after %" G_GUINT64_FORMAT " ms",
                 w->moved_count, sw->n, now - w->t0);
      waiter_finish(sw, i, now, msg);
    } else if (control_client_gone(w->cl)) {
      g_ptr_array_remove_index_fast(sw->waiters, i);
      control_finish(w->cl);
      waiter_free(w);
    }
  }
  wait_timer_arm(sw);
}

static void wait_moved_start(Swarm *sw, ControlClient *cl, JsonObject *req)
{
  uint64_t now = clock_now_ms();
  const char *from = json_object_get_string_member_with_default(req, "from", "");
  gint64 timeout = json_object_get_int_member_with_default(req, "timeout_ms", 10000);
  Waiter *w = g_new0(Waiter, 1);
  if (!hex_decode(from, w->from, IDENTITY_ID_LEN) || timeout < 1 || timeout > 3600000) {
    g_free(w);
    control_fail(cl, "bad wait_moved: from is a node id (64 hex digits), timeout_ms 1..3600000");
    return;
  }
  w->cl = cl;
  w->t0 = now;
  w->half_ms = -1;
  w->deadline = now + (uint64_t)timeout;
  w->term0 = g_new0(uint64_t, sw->n);
  w->moved = g_new0(gboolean, sw->n);
  for (unsigned i = 0; i < sw->n; i++) {
    LeafGroupStatus gs;
    leaf_core_group_status(sw->leaves[i].core, &gs);
    w->term0[i] = gs.term;
  }
  /* Nobody has moved yet: every term must rise first. */
  g_ptr_array_add(sw->waiters, w);
  JsonObject *o = json_object_new();
  json_object_set_int_member(o, "waiting", sw->n);
  control_send(cl, o);
  wait_timer_arm(sw);
}

/* --- control socket -------------------------------------------------------------- */

static double attach_rate(const Swarm *sw)
{
  if (sw->started == 0)
    return 0;
  int64_t us = sw->attach_all_us >= 0 ? sw->attach_all_us : g_get_monotonic_time() - sw->t_start;
  unsigned n = sw->attach_all_us >= 0 ? sw->n : sw->attached;
  return n * 1e6 / (double)MAX(us, 1);
}

/* The load figures, for status and for the summary at exit. */
static void swarm_figures(const Swarm *sw, JsonObject *o)
{
  double p50, p99;
  sample_percentiles(sw, &p50, &p99);
  json_object_set_int_member(o, "started", sw->started);
  json_object_set_int_member(o, "attach_all_ms",
                             sw->attach_all_us >= 0 ? sw->attach_all_us / 1000 : -1);
  json_object_set_double_member(o, "attach_rate", attach_rate(sw));
  json_object_set_int_member(o, "pings_sent", (gint64)sw->pings_sent);
  json_object_set_int_member(o, "source_bind_failures",
                             (gint64)swarm_dialers_bind_failures(sw->dialers));
  json_object_set_int_member(o, "dials_pending", swarm_dials_pending(sw->dialers));
  json_object_set_int_member(o, "searches_sent", (gint64)sw->searches_sent);
  json_object_set_int_member(o, "searches_hit", (gint64)sw->searches_hit);
  json_object_set_int_member(o, "searches_missed", (gint64)sw->searches_missed);
  json_object_set_int_member(o, "searches_skipped", (gint64)sw->searches_skipped);
  json_object_set_double_member(o, "search_p50_ms", p50);
  json_object_set_double_member(o, "search_p99_ms", p99);
}

static void send_status(Swarm *sw, ControlClient *cl)
{
  JsonObject *by = json_object_new();
  unsigned attached = 0, watching = 0;
  uint64_t max_term = 0, publishes = 0, changes = 0;
  for (unsigned i = 0; i < sw->n; i++) {
    LeafGroupStatus gs;
    leaf_core_group_status(sw->leaves[i].core, &gs);
    max_term = MAX(max_term, gs.term);
    publishes += gs.publishes;
    changes += gs.leader_changes;
    watching += gs.watching ? 1 : 0;
    if (!leaf_core_is_connected(sw->leaves[i].core))
      continue;
    attached++;
    char hex[IDENTITY_HEX_LEN];
    hex_encode(gs.supernode, IDENTITY_ID_LEN, hex);
    json_object_set_int_member(by, hex, json_object_get_int_member_with_default(by, hex, 0) + 1);
  }
  JsonObject *o = json_object_new();
  json_object_set_int_member(o, "leaves", sw->n);
  json_object_set_int_member(o, "attached", attached);
  json_object_set_object_member(o, "by_supernode", by);
  json_object_set_int_member(o, "max_term", (gint64)max_term);
  json_object_set_int_member(o, "publishes", (gint64)publishes);
  json_object_set_int_member(o, "leader_changes", (gint64)changes);
  json_object_set_int_member(o, "watching", watching);
  swarm_figures(sw, o);
  json_object_set_boolean_member(o, "done", TRUE);
  control_send(cl, o);
  control_finish(cl);
}

/* A new search rate from now on (0 stops); the counters and latencies start
 * afresh, so status shows this phase alone. Searches already in flight
 * finish uncounted. */
static void search_rate_set(Swarm *sw, ControlClient *cl, JsonObject *req)
{
  gdouble rate = json_object_get_double_member_with_default(req, "rate", -1);
  if (rate < 0 || rate > SWARM_MAX_RATE || (rate > 0 && sw->files + sw->entries == 0)) {
    control_fail(cl, "bad search_rate: rate 0..100000, and the leaves publish entries");
    return;
  }
  for (unsigned i = 0; i < sw->n; i++)
    sw->leaves[i].search = 0;
  sw->search_rate = rate;
  sw->search_t0 = 0;
  sw->searches_sent = sw->searches_hit = sw->searches_missed = sw->searches_skipped = 0;
  sw->n_samples = 0;
  evtimer_disarm(&sw->search_timer);
  if (rate > 0 && sw->attach_all_us >= 0)
    evtimer_arm(&sw->search_timer, clock_now_ms());
  JsonObject *o = json_object_new();
  json_object_set_double_member(o, "search_rate", rate);
  json_object_set_boolean_member(o, "done", TRUE);
  control_send(cl, o);
  control_finish(cl);
}

static void on_control(ControlClient *cl, JsonObject *req, void *ud)
{
  Swarm *sw = ud;
  const char *cmd = json_object_get_string_member_with_default(req, "cmd", "");
  if (strcmp(cmd, "status") == 0)
    send_status(sw, cl);
  else if (strcmp(cmd, "wait_moved") == 0)
    wait_moved_start(sw, cl, req);
  else if (strcmp(cmd, "search_rate") == 0)
    search_rate_set(sw, cl, req);
  else
    control_fail(cl, "unknown command (status, wait_moved, search_rate)");
}

/* --- the daemon ------------------------------------------------------------------- */

static gboolean on_signal(gpointer ud)
{
  g_main_loop_quit(ud);
  return G_SOURCE_CONTINUE;
}

/* Two sessions per leaf plus dials in flight: more than the usual 1024. */
static void raise_fd_limit(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* "swarm-<i>-<k>" (failover.sh searches for those), then realistic names. */
static void leaf_manifest(SwarmLeaf *lf, uint64_t now)
{
  const Swarm *sw = lf->sw;
  unsigned n = sw->files + sw->entries;
  uint64_t i = sw->first + lf->idx;
  LeafEntry *e = g_new0(LeafEntry, n ? n : 1);
  /* One draw for every content id and size of the leaf: libsodium's
   * generator makes a getrandom() call per draw. */
  uint8_t *rnd = g_malloc((n ? n : 1) * (sizeof e->cid + 4));
  rng_fill(rnd, n * (sizeof e->cid + 4), NULL);
  for (unsigned k = 0; k < n; k++) {
    if (k < sw->files) {
      e[k].name = g_strdup_printf("swarm-%" G_GUINT64_FORMAT "-%u", i, k);
    } else {
      char name[SWARMNAME_MAX + 1];
      swarmname_make(i, k - sw->files, name, sizeof name, NULL, 0);
      e[k].name = g_strdup(name);
    }
    const uint8_t *r = rnd + k * (sizeof e->cid + 4);
    memcpy(e[k].cid, r, sizeof e[k].cid);
    uint32_t v;
    memcpy(&v, r + sizeof e[k].cid, sizeof v);
    e[k].size = 1000 + v % 1000000;
  }
  g_free(rnd);
  leaf_core_set_manifest(lf->core, e, n, now);
  for (unsigned k = 0; k < n; k++)
    g_free(e[k].name);
  g_free(e);
}

/* The figures on stdout at exit, one "key: value" a line, for scripts. */
static void print_summary(const Swarm *sw)
{
  double p50, p99;
  sample_percentiles(sw, &p50, &p99);
  printf("swarm_leaves: %u\n", sw->n);
  printf("swarm_attached: %u\n", sw->attached);
  printf("swarm_attach_all_ms: %" G_GINT64_FORMAT "\n",
         sw->attach_all_us >= 0 ? sw->attach_all_us / 1000 : -1);
  printf("swarm_attach_rate: %.0f sessions/s\n", attach_rate(sw));
  printf("swarm_pings_sent: %" G_GUINT64_FORMAT "\n", sw->pings_sent);
  printf("swarm_searches: %" G_GUINT64_FORMAT " sent, %" G_GUINT64_FORMAT " hit, %" G_GUINT64_FORMAT
         " missed, %" G_GUINT64_FORMAT " skipped\n",
         sw->searches_sent, sw->searches_hit, sw->searches_missed, sw->searches_skipped);
  printf("swarm_search_latency: p50 %.2f ms, p99 %.2f ms\n", p50, p99);
  fflush(stdout);
}

static int run_swarm(int argc, char **argv)
{
  gchar *sn_addr = NULL, *state_dir = NULL, *log_level = NULL;
  gint leaves = 0, files = 10, n_entries = 0, keepalive_ms = 5000, stagger_ms = 5;
  gint max_pending = 1000, search_wait_ms = 2000, sources = 1;
  gint64 first = 0;
  gdouble start_rate = -1, search_rate = 0;
  GOptionEntry entries[] = {
      {"supernode", 0, 0, G_OPTION_ARG_STRING, &sn_addr, "Super node every leaf dials first",
       "HOST:PORT"},
      {"leaves", 0, 0, G_OPTION_ARG_INT, &leaves, "How many leaves", "N"},
      {"state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, "Where control.sock goes", "DIR"},
      {"files-per-leaf", 0, 0, G_OPTION_ARG_INT, &files, "Entries each leaf publishes (default 10)",
       "K"},
      {"keepalive-ms", 0, 0, G_OPTION_ARG_INT, &keepalive_ms, "Keepalive interval (default 5000)",
       "MS"},
      {"entries-per-leaf", 0, 0, G_OPTION_ARG_INT, &n_entries,
       "Entries with realistic names each leaf publishes as well (default 0)", "K"},
      {"first-index", 0, 0, G_OPTION_ARG_INT64, &first,
       "Number of the first leaf, in names (default 0)", "I"},
      {"stagger-ms", 0, 0, G_OPTION_ARG_INT, &stagger_ms,
       "Delay between two leaves' first dials (default 5; 0: all at once)", "MS"},
      {"start-rate", 0, 0, G_OPTION_ARG_DOUBLE, &start_rate,
       "Leaves started a second, 0: all at once (instead of --stagger-ms)", "R"},
      {"max-pending", 0, 0, G_OPTION_ARG_INT, &max_pending,
       "Leaves started but not attached, at most (default 1000)", "P"},
      {"source-addresses", 0, 0, G_OPTION_ARG_INT, &sources,
       "Spread the leaves over K loopback sources 127.0.0.1.. (default 1: the kernel's choice)",
       "K"},
      {"search-rate", 0, 0, G_OPTION_ARG_DOUBLE, &search_rate,
       "Searches a second once every leaf attached (default 0)", "R"},
      {"search-wait-ms", 0, 0, G_OPTION_ARG_INT, &search_wait_ms,
       "A search without a hit by then is missed (default 2000)", "MS"},
      {"log-level", 0, 0, G_OPTION_ARG_STRING, &log_level, "error, warning, info (default), debug",
       "LEVEL"},
      {NULL, 0, 0, 0, NULL, NULL, NULL}};
  GOptionContext *oc = g_option_context_new("- many leaves in one process");
  g_option_context_add_main_entries(oc, entries, NULL);
  GError *err = NULL;
  int rc = 1;
  Swarm sw = {0};
  if (!g_option_context_parse(oc, &argc, &argv, &err)) {
    fprintf(stderr, "canopy-swarm: %s\n", err->message);
    goto out;
  }
  if (!sn_addr || !state_dir || leaves < 1 || leaves > SWARM_MAX_LEAVES || files < 0 ||
      n_entries < 0 || files + n_entries > SWARM_MAX_FILES || first < 0 || keepalive_ms < 100 ||
      stagger_ms < 0 || start_rate > SWARM_MAX_RATE || max_pending < 1 || search_rate < 0 ||
      search_rate > SWARM_MAX_RATE || search_wait_ms < 1 || sources < 1 ||
      sources > SWARM_MAX_SOURCES || (search_rate > 0 && files + n_entries == 0)) {
    fprintf(stderr,
            "canopy-swarm: --supernode, --state-dir and --leaves 1..%d are required; "
            "--files-per-leaf + --entries-per-leaf 0..%d (1 or more to search), "
            "--first-index >= 0, --keepalive-ms >= 100, --stagger-ms >= 0, "
            "--start-rate and --search-rate 0..%d, --max-pending >= 1, --search-wait-ms >= 1, "
            "--source-addresses 1..%d\n",
            SWARM_MAX_LEAVES, SWARM_MAX_FILES, SWARM_MAX_RATE, SWARM_MAX_SOURCES);
    goto out;
  }
  if (!log_setup(log_level, &err) || !statedir_prepare(state_dir, &err)) {
    fprintf(stderr, "canopy-swarm: %s\n", err->message);
    goto out;
  }
  if (!crypto_ready()) {
    fprintf(stderr, "canopy-swarm: libsodium failed to initialise\n");
    goto out;
  }
  raise_fd_limit();
  sw.ctx = g_main_context_ref_thread_default();
  sw.loop = g_main_loop_new(sw.ctx, FALSE);
  sw.waiters = g_ptr_array_new();
  sw.n = (unsigned)leaves;
  sw.leaves = g_new0(SwarmLeaf, sw.n);
  sw.first = (uint64_t)first;
  sw.files = (unsigned)files;
  sw.entries = (unsigned)n_entries;
  sw.start_rate = start_rate >= 0 ? start_rate : stagger_ms > 0 ? 1000.0 / stagger_ms : 0;
  sw.max_pending = (unsigned)max_pending;
  sw.attach_all_us = -1;
  sw.search_rate = search_rate;
  sw.search_wait_ms = (unsigned)search_wait_ms;
  sw.samples = g_new0(uint32_t, SWARM_MAX_SAMPLES);
  /* The sessions (shared/session.c) watch their sockets in this context's
   * evloop; the leaves' timers share its heap, so an idle swarm costs
   * O(log n) per keepalive, not O(leaves) per wakeup. */
  sw.ev = evloop_for_context(sw.ctx);
  if (!sw.ev) {
    fprintf(stderr, "canopy-swarm: no epoll\n");
    goto out;
  }
  sw.dialers = swarm_dialers_new((unsigned)sources, sw.ev);
  evtimer_init(&sw.wait_timer, sw.ev, on_wait_timer, &sw);
  evtimer_init(&sw.start_timer, sw.ev, on_start_timer, &sw);
  evtimer_init(&sw.search_timer, sw.ev, on_search_timer, &sw);

  gchar *ctl_path = g_build_filename(state_dir, CONTROL_SOCKET_NAME, NULL);
  sw.ctl = control_server_new(ctl_path, sw.ctx, on_control, &sw, &err);
  g_free(ctl_path);
  if (!sw.ctl) {
    fprintf(stderr, "canopy-swarm: control socket: %s\n", err->message);
    goto out;
  }
  uint64_t now = clock_now_ms();
  for (unsigned i = 0; i < sw.n; i++) {
    SwarmLeaf *lf = &sw.leaves[i];
    lf->sw = &sw;
    lf->idx = i;
    evtimer_init(&lf->tick, sw.ev, on_tick, lf);
    if (!identity_generate(&lf->id)) {
      fprintf(stderr, "canopy-swarm: cannot make an identity\n");
      goto out;
    }
    LeafConfig cfg;
    leaf_config_defaults(&cfg);
    cfg.supernode = sn_addr;
    cfg.keepalive_ms = (uint64_t)keepalive_ms;
    lf->core = leaf_core_new(&cfg, rng_fill, NULL);
    if (!lf->core) {
      fprintf(stderr, "canopy-swarm: cannot make a leaf core\n");
      goto out;
    }
    leaf_manifest(lf, now);
  }
  evtimer_arm(&sw.start_timer, now);
  g_message("swarm of %u leaves (%d + %d entries each) dialing %s", sw.n, files, n_entries,
            sn_addr);

  g_unix_signal_add(SIGINT, on_signal, sw.loop);
  g_unix_signal_add(SIGTERM, on_signal, sw.loop);
  g_main_loop_run(sw.loop);
  print_summary(&sw);
  rc = 0;
out:
  if (sw.waiters) {
    for (guint i = sw.waiters->len; i-- > 0;)
      waiter_finish(&sw, i, clock_now_ms(), "shutting down");
    g_ptr_array_free(sw.waiters, TRUE);
  }
  evtimer_disarm(&sw.wait_timer);
  evtimer_disarm(&sw.start_timer);
  evtimer_disarm(&sw.search_timer);
  for (unsigned i = 0; sw.leaves && i < sw.n; i++) {
    SwarmLeaf *lf = &sw.leaves[i];
    evtimer_disarm(&lf->tick);
    slot_drop(lf, LEAF_SLOT_PRIMARY, "shutting down");
    slot_drop(lf, LEAF_SLOT_WATCH, "shutting down");
    leaf_core_free(lf->core);
    identity_clear(&lf->id);
  }
  /* Cancelled dials still hold their Dial: let them finish. */
  while (sw.ctx && g_main_context_iteration(sw.ctx, FALSE))
    ;
  g_free(sw.leaves);
  g_free(sw.samples);
  control_server_free(sw.ctl);
  swarm_dialers_free(sw.dialers);
  if (sw.loop)
    g_main_loop_unref(sw.loop);
  if (sw.ctx)
    g_main_context_unref(sw.ctx);
  g_clear_error(&err);
  g_option_context_free(oc);
  g_free(sn_addr);
  g_free(state_dir);
  g_free(log_level);
  return rc;
}

/* --- client commands ---------------------------------------------------------------- */

static void print_line(JsonObject *o, void *ud)
{
  control_print(o, TRUE);
}

static int cli_wait_moved(int argc, char **argv)
{
  gchar *state_dir = NULL, *from = NULL;
  gint timeout_ms = 10000;
  GOptionEntry entries[] = {
      {"state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, "State directory of the swarm", "DIR"},
      {"from", 0, 0, G_OPTION_ARG_STRING, &from, "Node id (hex) the leaves must leave", "ID"},
      {"timeout-ms", 0, 0, G_OPTION_ARG_INT, &timeout_ms, "Give up after MS (default 10000)", "MS"},
      {NULL, 0, 0, 0, NULL, NULL, NULL}};
  GOptionContext *oc = g_option_context_new("- wait until every leaf moved away from a node");
  g_option_context_add_main_entries(oc, entries, NULL);
  GError *err = NULL;
  int rc = 2;
  if (!g_option_context_parse(oc, &argc, &argv, &err) || !state_dir || !from || timeout_ms < 1) {
    fprintf(stderr, "canopy-swarm wait-moved: %s\n",
            err ? err->message : "--state-dir, --from and --timeout-ms >= 1 are required");
    goto out;
  }
  JsonObject *req = json_object_new();
  json_object_set_string_member(req, "cmd", "wait_moved");
  json_object_set_string_member(req, "from", from);
  json_object_set_int_member(req, "timeout_ms", timeout_ms);
  /* The socket timeout must outlast the wait itself. */
  gboolean ok =
      control_call(state_dir, req, print_line, NULL, (guint)(timeout_ms / 1000 + 5), &err);
  json_object_unref(req);
  rc = ok ? 0 : 1;
  if (!ok)
    fprintf(stderr, "canopy-swarm wait-moved: %s\n", err->message);
out:
  g_clear_error(&err);
  g_option_context_free(oc);
  g_free(state_dir);
  g_free(from);
  return rc;
}

static int cli_search_rate(int argc, char **argv)
{
  gchar *state_dir = NULL;
  gdouble rate = -1;
  GOptionEntry entries[] = {
      {"state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, "State directory of the swarm", "DIR"},
      {"rate", 0, 0, G_OPTION_ARG_DOUBLE, &rate, "Searches a second (0: stop)", "R"},
      {NULL, 0, 0, 0, NULL, NULL, NULL}};
  GOptionContext *oc = g_option_context_new("- search at a new rate, with fresh counters");
  g_option_context_add_main_entries(oc, entries, NULL);
  GError *err = NULL;
  int rc = 2;
  if (!g_option_context_parse(oc, &argc, &argv, &err) || !state_dir || rate < 0) {
    fprintf(stderr, "canopy-swarm search-rate: %s\n",
            err ? err->message : "--state-dir and --rate >= 0 are required");
    goto out;
  }
  JsonObject *req = json_object_new();
  json_object_set_string_member(req, "cmd", "search_rate");
  json_object_set_double_member(req, "rate", rate);
  gboolean ok = control_call(state_dir, req, print_line, NULL, 10, &err);
  json_object_unref(req);
  rc = ok ? 0 : 1;
  if (!ok)
    fprintf(stderr, "canopy-swarm search-rate: %s\n", err->message);
out:
  g_clear_error(&err);
  g_option_context_free(oc);
  g_free(state_dir);
  return rc;
}

int main(int argc, char **argv)
{
  if (argc > 1 && strcmp(argv[1], "search-rate") == 0)
    return cli_search_rate(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "status") == 0)
    return control_show("canopy-swarm", "status", "- show the swarm's leaves", argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "wait-moved") == 0)
    return cli_wait_moved(argc - 1, argv + 1);
  return run_swarm(argc, argv);
}
