/* daemon.h - the leaf daemon's state, shared by its shell files (main.c,
 * download.c). Not a public interface: the protocol logic lives in the
 * sans-I/O cores (leafcore.h, fetch.h); this is the glue around them. */
#ifndef CANOPY_DAEMON_H
#define CANOPY_DAEMON_H

#include <gio/gio.h>

#include "control.h"
#include "identity.h"
#include "leafcore.h"
#include "peers.h"
#include "serve.h"
#include "session.h"
#include "share.h"
#include "wire.h"

typedef struct {
  GMainContext *ctx;
  GMainLoop *loop;
  Identity id;
  char id_hex[IDENTITY_HEX_LEN];
  LeafCore *core;
  ShareSet *shares;
  char *sn_addr;         /* configured (--supernode), ", "-separated */
  const char *state_dir; /* borrowed from the settings; the host cache's file */
  GSocketClient *dialer;
  /* One session per LeafSlot: PRIMARY to the group's leader, WATCH to its
   * backup. dial_gen[slot] tells a stale dial's completion from the
   * current one. */
  Session *sess[2];
  char sess_addr[2][130];
  guint dial_gen[2];
  uint64_t next_sid;
  GSource *tick;
  GSource *rescan;
  uint64_t rescan_ms;
  ControlServer *ctl;
  GHashTable *pending; /* search id -> ControlClient* */
  char last_error[256];
  /* Every super node address dialed, in order of first try, with the last
   * error there ("" once a session there opened): what "no super node
   * reachable (tried ...)" lists. */
  GPtrArray *tried; /* Tried* (main.c) */
  char sn_hex[IDENTITY_HEX_LEN];
  Peers *peers;
  Server *server;
  char *download_dir;
  GHashTable *downloads;   /* download id -> Download*, ended ones too */
  GHashTable *dl_searches; /* search id -> Download* (source lookups) */
  uint64_t next_download;
  /* Transfer totals since start, for `status` and `downloads`. */
  uint64_t bytes_downloaded; /* verified bytes received from other leaves */
  uint64_t downloads_finished, downloads_failed;
  GHashTable *uploads;      /* PeerLink* set: inbound links open (serving) */
  gboolean running_actions; /* leaf_run_actions is on the stack */
} Leaf;

/* Runs the leaf core's queued actions (main.c). */
void leaf_run_actions(Leaf *lf);

/* download.c: `canopy-leaf get` and `canopy-leaf downloads` in the daemon. */
void download_start(Leaf *lf, ControlClient *cl, JsonObject *req);
/* {"downloads": [...], "transfers": {...}}, and finishes cl. */
void download_list(Leaf *lf, ControlClient *cl);
/* what is "pause", "resume" or "cancel"; req carries "id". Answers and
 * finishes cl. */
void download_command(Leaf *lf, ControlClient *cl, const char *what, JsonObject *req);
/* Transfer counters and totals (a new object). */
JsonObject *download_stats(Leaf *lf);
/* A hit or the end of a search started by a download; FALSE if the search
 * was not one of ours. */
gboolean download_on_hit(Leaf *lf, uint32_t search, const LeafAction *hit);
gboolean download_on_search_done(Leaf *lf, uint32_t search, const char *error);
void download_link_opened(Leaf *lf, PeerLink *l);
void download_link_message(Leaf *lf, PeerLink *l, const WireMsg *m);
void download_link_closed(Leaf *lf, PeerLink *l, const char *reason);
void download_free_all(Leaf *lf);

#endif
