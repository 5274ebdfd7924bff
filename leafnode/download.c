/* download.c - `canopy-leaf get` and `canopy-leaf downloads` inside the
 * daemon: find sources by content id, link to up to DL_MAX_SOURCES of them,
 * run the fetch core (fetch.h) over those links, write verified chunks into a
 * part file, and rename it into place when the last chunk is in.
 *
 * A hit's size is the sharer's word until a source's chunk hashes prove it
 * (the content id binds the size): the candidates are tried one claimed size
 * at a time, the next size when every source of this one failed unproven.
 *
 * The part file is named after the content id, this daemon and the target
 * (partfile.h), is locked while open, and sits beside the final file, so a
 * later `get` of the same id to the same place resumes: once the
 * chunk hashes are known every chunk already on disk is checked and only the
 * missing ones are asked for. The finished file appears atomically (rename)
 * in the download folder, under the hit's base name; a peer-supplied name can
 * never point elsewhere.
 *
 * Every download has an id and a state:
 *
 *   searching --first source--> running --last chunk--> finished
 *       ^  \                      |  \
 *       |   `------ pause ------.  |   `--> failed (no source left, disk full...)
 *    resume                      v v
 *       `-------------------- paused
 *
 * and cancel from any of the first three (the part file is deleted). Pausing
 * closes the links and keeps the part file; resuming is the resume above: a
 * new source search, then only the missing chunks. The ended ones stay
 * listed (DL_HISTORY of them) for `canopy-leaf downloads`; the list lives in
 * the daemon, so after a restart `get` is how a download resumes.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "clock.h"
#include "content.h"
#include "daemon.h"
#include "fetch.h"
#include "offergate.h"
#include "partfile.h"
#include "safename.h"
#include "sources.h"
#include "wire.h"

#define DL_MAX_SOURCES 4
/* Leaves a download keeps as candidates (one per leaf, the bad ones
 * included): a search brings at most max_hits (1000) anyway. */
#define DL_MAX_CANDIDATES 256
/* How long a link may take to open (ICE offer, answer, checks, handshake:
 * about 0.2 s on loopback, a few seconds through a relay) before its slot
 * goes to another candidate, if one waits. A source that never answers
 * otherwise holds its slot until peers.c gives up on it (10 s). */
#define DL_OPEN_WAIT_MS 5000
/* How long the source search collects hits. It is not cut short at the
 * first hits: whoever answers first (a liar, say) must not decide who the
 * candidates are; links start with the first hit all the same. */
#define DL_SEARCH_MS 1500
/* Chunks asked of one source at once: 8 MiB, the receive window of an ICE
 * path's stream (nat/ice.c). With 8 (2 MiB) a 50 ms path carried 23 MB/s
 * where the stream itself does 70 (tests/bench/nat_throughput.sh). The
 * source answers over that stream only (peers.c), whose 8 MiB send ring
 * takes the answers before its session's output queue grows toward
 * SESSION_MAX_OUTPUT (8 MiB, past which it would cut us off as not
 * reading): a transport with a small send buffer would need fewer. */
#define DL_PIPELINE 32
#define DL_PROGRESS_MS 500
/* A candidate we already hold the source's per-peer share of links to
 * (OFFERGATE_PER_PEER, for other downloads) is looked at again after this. */
#define DL_SHARE_RETRY_MS 2000
#define DL_HISTORY 32 /* ended downloads kept for the list */

typedef enum {
  DL_SEARCHING,
  DL_RUNNING,
  DL_PAUSED,
  DL_FINISHED,
  DL_FAILED,
  DL_CANCELLED,
} DlState;

static const char *const state_names[] = {"searching", "running", "paused",
                                          "finished",  "failed",  "cancelled"};

typedef struct {
  char peer[IDENTITY_HEX_LEN];
  char path_type[16];
  char path[200];
  uint64_t src;
  uint64_t setup_ms;
} SourceRec;

typedef struct {
  uint64_t id;
  Leaf *lf;
  ControlClient *cl; /* the `get` following it, or NULL */
  DlState state;
  uint8_t cid[32];
  char cid_hex[CONTENT_HEX_LEN];
  uint64_t size; /* the claimed size being tried (the last that fitted) */
  char *name;
  char *final_path;
  char *part_path;
  gboolean force;
  int fd;
  uint32_t search;
  Sources *srcs;     /* who said they have it (sources.h) */
  GPtrArray *links;  /* PeerLink*, live outbound links */
  GArray *sources;   /* SourceRec, links that opened */
  GString *failures; /* why sources failed, for the error message */
  Fetch *fetch;
  GSource *timer;
  uint64_t started, ended; /* monotonic ms */
  uint64_t bytes_done;     /* verified, as of the last look (kept while paused) */
  uint64_t received;       /* verified bytes that came over the network */
  uint64_t rate_at, rate_received;
  double rate; /* bytes/s, smoothed */
  char *error; /* failed: why */
} Download;

static void dl_pump(Download *d);

/* The order sources are tried in: it needs to be unpredictable, not secret. */
static void dl_rng(uint8_t *out, size_t n, void *ctx)
{
  (void)ctx;
  for (size_t i = 0; i < n; i++)
    out[i] = (uint8_t)g_random_int();
}

static gboolean dl_pick_size(Download *d);
static void dl_link_more(Download *d);

/* Lets go of everything a download holds but its record: the source
 * search, the links (their close callbacks find no fetch and do nothing),
 * the fetch core, the part file's descriptor, the timer. */
static void dl_release(Download *d)
{
  Leaf *lf = d->lf;
  timer_disarm(&d->timer);
  if (d->search && lf->dl_searches)
    g_hash_table_remove(lf->dl_searches, GUINT_TO_POINTER(d->search));
  d->search = 0;
  if (d->fetch)
    d->bytes_done = fetch_bytes_done(d->fetch);
  fetch_free(d->fetch);
  d->fetch = NULL;
  GPtrArray *links = d->links;
  d->links = g_ptr_array_new();
  for (guint i = links->len; i-- > 0;)
    peer_link_close(g_ptr_array_index(links, i), "download over");
  g_ptr_array_unref(links);
  if (d->fd >= 0)
    close(d->fd);
  d->fd = -1;
  d->rate = 0;
}

static void dl_free(Download *d)
{
  dl_release(d);
  sources_free(d->srcs);
  g_ptr_array_unref(d->links);
  g_array_unref(d->sources);
  g_string_free(d->failures, TRUE);
  g_free(d->name);
  g_free(d->final_path);
  g_free(d->part_path);
  g_free(d->error);
  g_free(d);
}

static gboolean ended(const Download *d)
{
  return d->state >= DL_FINISHED;
}

static gint by_end(gconstpointer a, gconstpointer b)
{
  const Download *x = *(Download *const *)a, *y = *(Download *const *)b;
  if (x->ended != y->ended)
    return x->ended < y->ended ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* Keeps at most DL_HISTORY ended downloads: those that ended first go,
 * never keep (which just ended: its caller still uses it). */
static void prune_history(Leaf *lf, Download *keep)
{
  GPtrArray *old = g_ptr_array_new();
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, lf->downloads);
  while (g_hash_table_iter_next(&it, NULL, &v))
    if (ended(v) && v != keep)
      g_ptr_array_add(old, v);
  g_ptr_array_sort(old, by_end);
  for (guint i = 0; i + DL_HISTORY < old->len + 1; i++) {
    Download *d = g_ptr_array_index(old, i);
    g_hash_table_remove(lf->downloads, &d->id); /* frees it */
  }
  g_ptr_array_unref(old);
}

/* The download has ended in state st: it lets go of its resources and stays
 * listed. */
static void dl_end(Download *d, DlState st)
{
  dl_release(d);
  d->state = st;
  d->ended = clock_now_ms();
  if (st == DL_FINISHED)
    d->lf->downloads_finished++;
  else if (st == DL_FAILED)
    d->lf->downloads_failed++;
  prune_history(d->lf, d);
}

static void dl_fail(Download *d, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void dl_fail(Download *d, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  gchar *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_message("download %" G_GUINT64_FORMAT " (%.16s…) failed: %s", d->id, d->cid_hex, msg);
  g_free(d->error);
  d->error = msg;
  ControlClient *cl = d->cl;
  d->cl = NULL;
  dl_end(d, DL_FAILED);
  if (cl)
    control_fail(cl, msg);
}

/* Adds why a source (or a size) failed, for the error message. */
static void note_failure(Download *d, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void note_failure(Download *d, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  if (d->failures->len)
    g_string_append(d->failures, "; ");
  g_string_append_vprintf(d->failures, fmt, ap);
  va_end(ap);
}

static Download *dl_by_link(Leaf *lf, PeerLink *l)
{
  uint64_t id = peer_link_tag(l);
  return lf->downloads ? g_hash_table_lookup(lf->downloads, &id) : NULL;
}

static uint64_t src_of(PeerLink *l)
{
  return (uint64_t)(uintptr_t)l;
}

static PeerLink *link_of(Download *d, uint64_t src)
{
  for (guint i = 0; i < d->links->len; i++)
    if (src_of(g_ptr_array_index(d->links, i)) == src)
      return g_ptr_array_index(d->links, i);
  return NULL;
}

static void send_progress(Download *d)
{
  if (!d->cl || !d->fetch)
    return;
  JsonObject *o = json_object_new();
  json_object_set_int_member(o, "progress", (gint64)fetch_bytes_done(d->fetch));
  json_object_set_int_member(o, "total", (gint64)d->size);
  json_object_set_int_member(o, "sources", fetch_sources(d->fetch));
  json_object_set_int_member(o, "rate", (gint64)d->rate);
  control_send(d->cl, o);
}

/* The transfer rate over the last progress interval, smoothed. */
static void update_rate(Download *d, uint64_t now)
{
  if (d->rate_at == 0 || now <= d->rate_at) {
    d->rate_at = now;
    d->rate_received = d->received;
    return;
  }
  if (now - d->rate_at < DL_PROGRESS_MS / 2)
    return;
  double inst = (double)(d->received - d->rate_received) * 1000.0 / (double)(now - d->rate_at);
  d->rate = d->rate > 0 ? 0.5 * d->rate + 0.5 * inst : inst;
  d->rate_at = now;
  d->rate_received = d->received;
}

/* Links that did not open in time while other candidates wait give their
 * slot up (the closed callback links the next). */
static void drop_overdue(Download *d, uint64_t now)
{
  uint8_t peer[32];
  while (!ended(d) && d->fetch && sources_overdue(d->srcs, d->size, now, peer)) {
    for (guint i = 0; i < d->links->len; i++) {
      PeerLink *l = g_ptr_array_index(d->links, i);
      if (memcmp(peer_link_peer(l), peer, 32) == 0) {
        peer_link_close(
            l, "no link within " G_STRINGIFY(DL_OPEN_WAIT_MS) " ms; trying another source");
        break;
      }
    }
  }
}

static gboolean on_timer(gpointer ud)
{
  Download *d = ud;
  uint64_t now = clock_now_ms();
  drop_overdue(d, now);
  if (ended(d))
    return G_SOURCE_REMOVE;
  if (!d->fetch && d->name && !dl_pick_size(d) && ended(d))
    return G_SOURCE_REMOVE;
  dl_link_more(d);
  if (d->fetch) {
    fetch_tick(d->fetch, now);
    d->bytes_done = fetch_bytes_done(d->fetch);
  }
  update_rate(d, now);
  send_progress(d);
  dl_pump(d);
  return G_SOURCE_REMOVE;
}

static void arm(Download *d)
{
  uint64_t t = clock_now_ms() + DL_PROGRESS_MS;
  if (d->fetch)
    t = MIN(t, fetch_next_deadline(d->fetch));
  t = MIN(t, sources_next_deadline(d->srcs, d->size, clock_now_ms()));
  timer_arm(&d->timer, d->lf->ctx, t, on_timer, d);
}

/* Chunks already in the part file (an interrupted earlier `get`, or a
 * pause). */
static void check_part(Download *d)
{
  uint32_t n = fetch_chunk_count(d->fetch), kept = 0;
  uint8_t *buf = g_malloc(CONTENT_CHUNK_SIZE);
  for (uint32_t i = 0; i < n; i++) {
    size_t len = fetch_chunk_len(d->fetch, i);
    ssize_t got = pread(d->fd, buf, len, (off_t)fetch_chunk_offset(d->fetch, i));
    if (got == (ssize_t)len && fetch_have(d->fetch, i, buf, len))
      kept++;
  }
  g_free(buf);
  if (kept)
    g_message("download %.16s…: resuming, %u of %u chunks already here", d->cid_hex, kept, n);
}

static void finish(Download *d)
{
  /* An earlier run may have left bytes past the end (a size some source
   * claimed and no tree proved). */
  if (ftruncate(d->fd, (off_t)d->size) != 0 || fsync(d->fd) != 0) {
    dl_fail(d, "cannot write %s: %s", d->part_path, g_strerror(errno));
    return;
  }
  /* By the descriptor: the part file's name may have been taken away. */
  int rc = partfile_finish(&d->fd, &d->part_path, d->final_path, d->force);
  int e = errno;
  if (close(d->fd) != 0 && rc == 0) {
    rc = -1;
    e = errno;
  }
  d->fd = -1;
  if (rc != 0) {
    if (e == EEXIST)
      dl_fail(d, "%s appeared meanwhile; not overwriting it (use --force)", d->final_path);
    else
      dl_fail(d, "cannot move the finished file to %s: %s", d->final_path, g_strerror(e));
    return;
  }
  uint64_t ms = clock_now_ms() - d->started;
  g_message("downloaded %s (%" G_GUINT64_FORMAT " bytes) in %" G_GUINT64_FORMAT
            " ms from %u source(s)",
            d->final_path, d->size, ms, d->sources->len);
  ControlClient *cl = d->cl;
  d->cl = NULL;
  JsonObject *o = NULL;
  if (cl) {
    o = json_object_new();
    json_object_set_string_member(o, "path", d->final_path);
    json_object_set_int_member(o, "bytes", (gint64)d->size);
    json_object_set_string_member(o, "content_id", d->cid_hex);
    json_object_set_int_member(o, "ms", (gint64)ms);
    json_object_set_int_member(o, "id", (gint64)d->id);
    JsonArray *arr = json_array_new();
    for (guint i = 0; i < d->sources->len; i++) {
      SourceRec *r = &g_array_index(d->sources, SourceRec, i);
      JsonObject *so = json_object_new();
      json_object_set_string_member(so, "peer", r->peer);
      json_object_set_int_member(so, "bytes", (gint64)fetch_bytes_from(d->fetch, r->src));
      json_object_set_string_member(so, "path_type", r->path_type);
      json_object_set_string_member(so, "path", r->path);
      json_object_set_int_member(so, "setup_ms", (gint64)r->setup_ms);
      json_array_add_object_element(arr, so);
    }
    json_object_set_array_member(o, "sources", arr);
    json_object_set_boolean_member(o, "done", TRUE);
  }
  d->bytes_done = d->size;
  dl_end(d, DL_FINISHED);
  if (cl) {
    control_send(cl, o);
    control_finish(cl);
  }
}

/* Runs the fetch core's actions. d stays listed; it may have ended (through
 * finish or dl_fail, which end the loop). */
static void dl_pump(Download *d)
{
  if (ended(d) || d->state == DL_PAUSED)
    return;
  if (!d->fetch) {
    arm(d);
    return;
  }
  FetchAction a;
  uint64_t now = clock_now_ms();
  while (fetch_next_action(d->fetch, &a)) {
    switch (a.kind) {
    case FETCH_ACT_SEND: {
      PeerLink *l = link_of(d, a.src);
      if (l && !peer_link_send(l, a.data, a.len))
        peer_link_close(l, "cannot send");
      break;
    }
    case FETCH_ACT_DROP_SOURCE: {
      PeerLink *l = link_of(d, a.src);
      note_failure(d, "%s", a.reason);
      if (l)
        peer_link_close(l, a.reason);
      break;
    }
    case FETCH_ACT_NEED_CHECK:
      check_part(d);
      fetch_start_chunks(d->fetch, now);
      break;
    case FETCH_ACT_WRITE: {
      ssize_t n = pwrite(d->fd, a.data, a.len, (off_t)a.offset);
      if (n != (ssize_t)a.len) {
        int e = n < 0 ? errno : ENOSPC;
        fetch_action_clear(&a);
        dl_fail(d, "cannot write %s: %s%s", d->part_path, g_strerror(e),
                e == ENOSPC ? " (disk full; run get again to resume)" : "");
        return;
      }
      d->received += a.len;
      d->lf->bytes_downloaded += a.len;
      break;
    }
    case FETCH_ACT_DONE:
      fetch_action_clear(&a);
      finish(d);
      return;
    }
    fetch_action_clear(&a);
    if (!d->fetch) /* a closed link ended the download */
      return;
  }
  d->bytes_done = fetch_bytes_done(d->fetch);
  /* (A candidate of this size that refused for now, sources_waiting, is
   * linked by the timer when its back-off ends: nothing has failed yet.) */
  if (fetch_sources(d->fetch) == 0 && d->links->len == 0 && !sources_waiting(d->srcs, d->size)) {
    /* Every source of this size failed before one proved it: the size may
     * have been a lie; the sources that gave another one come next. */
    if (!fetch_tree_ok(d->fetch) && dl_pick_size(d)) {
      dl_link_more(d);
      arm(d);
      return;
    }
    if (ended(d))
      return;
    if (d->search == 0) {
      dl_fail(d, "no source could deliver %.16s…: %s", d->cid_hex,
              d->failures->len ? d->failures->str : "no source reachable");
      return;
    }
  }
  arm(d);
}

/* --- sources ------------------------------------------------------------------ */

gboolean download_on_hit(Leaf *lf, uint32_t search, const LeafAction *hit)
{
  Download *d = lf->dl_searches ? g_hash_table_lookup(lf->dl_searches, GUINT_TO_POINTER(search))
                                : NULL; /* (none while shutting down) */
  if (!d)
    return FALSE;
  if (memcmp(hit->cid, d->cid, 32) != 0 || memcmp(hit->peer, lf->id.id, 32) == 0)
    return TRUE;
  /* One candidate per leaf, whatever names it gives: slots go to leaves. */
  if (!sources_add(d->srcs, hit->peer, hit->size))
    return TRUE;
  if (!d->part_path) {
    /* The name comes from a peer: a clean base name (safename.h), or the
     * content id if nothing of it is usable. Of the names known when the
     * part file opens, the first in byte order: the same file gets the
     * same name whichever source answered first. */
    char *clean = name_clean_for_disk(hit->name, strlen(hit->name));
    const char *name = clean ? clean : d->cid_hex;
    if (!d->name || strcmp(name, d->name) < 0) {
      g_free(d->name);
      d->name = g_strdup(name);
    }
    free(clean);
  }
  /* Start soon: waiting for the search to end would add its whole
   * collection window to every download. Not at once, though: the rest of
   * this batch of hits first, so the slots go to a random choice of them,
   * not to whichever the super node listed first. */
  timer_arm(&d->timer, lf->ctx, clock_now_ms(), on_timer, d);
  return TRUE;
}

/* Settles where the file goes (the first hit named it) and opens the part
 * file. FALSE if the download ended (failed) here. */
static gboolean dl_open_part(Download *d)
{
  Leaf *lf = d->lf;
  if (d->fd >= 0)
    return TRUE;
  if (!d->final_path)
    d->final_path = g_build_filename(lf->download_dir, d->name, NULL);
  if (!d->force && g_file_test(d->final_path, G_FILE_TEST_EXISTS)) {
    dl_fail(d, "%s already exists (use --force to overwrite)", d->final_path);
    return FALSE;
  }
  /* The part file sits beside the final name, so the last step is a rename
   * within one file system (atomic), wherever -o points; its name is this
   * daemon's and this target's (partfile.h). */
  if (!d->part_path)
    d->part_path = partfile_path(d->final_path, lf->id_hex, d->cid_hex);
  d->fd = partfile_open(d->part_path);
  if (d->fd < 0 && (errno == EWOULDBLOCK || errno == EAGAIN)) {
    dl_fail(d, "%s is in use by another process (another canopy-leaf with this identity?)",
            d->part_path);
    return FALSE;
  }
  if (d->fd < 0) {
    dl_fail(d, "cannot create %s: %s", d->part_path, g_strerror(errno));
    return FALSE;
  }
  return TRUE;
}

/* Starts the fetch core for one claimed size. FALSE, with the reason noted,
 * if a file that large cannot be taken here: checking the free space first
 * also bounds what a peer's claim makes us allocate. */
static gboolean dl_use_size(Download *d, uint64_t size)
{
  fetch_free(d->fetch);
  d->fetch = NULL;
  struct stat st;
  struct statvfs vfs;
  uint64_t have = fstat(d->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
  if (fstatvfs(d->fd, &vfs) == 0) {
    uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    if (size > have && size - have > avail) {
      note_failure(d,
                   "a source gives its size as %" G_GUINT64_FORMAT
                   " bytes, more than the %" G_GUINT64_FORMAT " bytes free beside %s",
                   size, avail, d->final_path);
      return FALSE;
    }
  }
  d->fetch = fetch_new(d->cid, size, DL_PIPELINE);
  if (!d->fetch) {
    note_failure(d, "a source gives its size as %" G_GUINT64_FORMAT " bytes, too large", size);
    return FALSE;
  }
  d->size = size;
  d->state = DL_RUNNING;
  return TRUE;
}

/* Gives up the size being tried (if any) and starts on the size of an
 * untried candidate (chosen at random) that fits. FALSE if none does (for
 * now) or the download ended. */
static gboolean dl_pick_size(Download *d)
{
  if (!dl_open_part(d))
    return FALSE;
  if (d->fetch)
    sources_drop_size(d->srcs, d->size);
  fetch_free(d->fetch);
  d->fetch = NULL;
  uint64_t size;
  while (sources_pick_size(d->srcs, &size)) {
    if (d->size != size && d->state == DL_RUNNING)
      g_message("download %.16s…: no source proved %" G_GUINT64_FORMAT
                " bytes; trying those that say %" G_GUINT64_FORMAT,
                d->cid_hex, d->size, size);
    if (dl_use_size(d, size))
      return TRUE;
    sources_drop_size(d->srcs, size);
  }
  return FALSE;
}

/* Outbound links to peer over all downloads. */
static guint links_to(Leaf *lf, const uint8_t peer[32])
{
  guint n = 0;
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, lf->downloads);
  while (g_hash_table_iter_next(&it, NULL, &v)) {
    const Download *o = v;
    for (guint i = 0; i < o->links->len; i++)
      n += memcmp(peer_link_peer(g_ptr_array_index(o->links, i)), peer, 32) == 0;
  }
  return n;
}

/* Links to candidates of the size being tried, chosen at random, up to
 * DL_MAX_SOURCES at a time. A peer we already hold OFFERGATE_PER_PEER
 * links to (for other downloads) would refuse another: it waits
 * DL_SHARE_RETRY_MS instead. */
static void dl_link_more(Download *d)
{
  uint8_t peer[32];
  uint64_t now = clock_now_ms();
  while (d->fetch && d->links->len < DL_MAX_SOURCES && sources_next(d->srcs, d->size, now, peer)) {
    if (links_to(d->lf, peer) >= OFFERGATE_PER_PEER) {
      g_debug("download %.16s…: %d links to %02x%02x%02x%02x… already (its share); later",
              d->cid_hex, OFFERGATE_PER_PEER, peer[0], peer[1], peer[2], peer[3]);
      sources_defer(d->srcs, peer, now + DL_SHARE_RETRY_MS);
      continue;
    }
    PeerLink *l = peers_connect(d->lf->peers, peer, d->id);
    if (l)
      g_ptr_array_add(d->links, l);
    else
      sources_closed(d->srcs, peer);
  }
}

gboolean download_on_search_done(Leaf *lf, uint32_t search, const char *error)
{
  Download *d =
      lf->dl_searches ? g_hash_table_lookup(lf->dl_searches, GUINT_TO_POINTER(search)) : NULL;
  if (!d)
    return FALSE;
  g_hash_table_remove(lf->dl_searches, GUINT_TO_POINTER(search));
  d->search = 0;
  /* Hits of this last batch may not have been acted on yet. */
  if (!d->fetch && d->name) {
    if (!dl_pick_size(d) && ended(d))
      return TRUE;
    dl_link_more(d);
  }
  if (d->fetch) {
    g_message("download %.16s…: %zu source(s) found", d->cid_hex, sources_count(d->srcs));
    dl_pump(d); /* fails it if every link already failed */
    return TRUE;
  }
  if (error)
    dl_fail(d, "%s", error);
  else if (d->failures->len)
    dl_fail(d, "no source could deliver %.16s…: %s", d->cid_hex, d->failures->str);
  else if (sources_bad(d->srcs))
    dl_fail(d,
            "no source left for %.16s…: the %zu leaf(s) known to have it failed earlier in this "
            "download (no answer, no path or a wrong node id) and are not tried again by it",
            d->cid_hex, sources_bad(d->srcs));
  else
    dl_fail(d, "no leaf shares this content id (searched %d super-node hops)", WIRE_MAX_TTL);
  return TRUE;
}

void download_link_opened(Leaf *lf, PeerLink *l)
{
  Download *d = dl_by_link(lf, l);
  if (!d || !d->fetch)
    return;
  SourceRec r = {.src = src_of(l), .setup_ms = peer_link_setup_ms(l)};
  hex_encode(peer_link_peer(l), 32, r.peer);
  g_strlcpy(r.path_type, peer_link_path_type(l), sizeof r.path_type);
  g_strlcpy(r.path, peer_link_path(l), sizeof r.path);
  g_array_append_val(d->sources, r);
  sources_opened(d->srcs, peer_link_peer(l));
  g_message("download %.16s…: source %.16s… linked %s (%s) in %" G_GUINT64_FORMAT " ms", d->cid_hex,
            r.peer, r.path_type, r.path, r.setup_ms);
  if (d->cl) {
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "source", r.peer);
    json_object_set_string_member(o, "path_type", r.path_type);
    json_object_set_string_member(o, "path", r.path);
    control_send(d->cl, o);
  }
  fetch_add_source(d->fetch, r.src, clock_now_ms());
  dl_pump(d);
}

void download_link_message(Leaf *lf, PeerLink *l, const WireMsg *m)
{
  Download *d = dl_by_link(lf, l);
  if (!d || !d->fetch)
    return;
  fetch_recv(d->fetch, src_of(l), m, clock_now_ms());
  dl_pump(d);
}

void download_link_closed(Leaf *lf, PeerLink *l, const char *reason)
{
  Download *d = dl_by_link(lf, l);
  if (!d)
    return;
  gboolean ours = g_ptr_array_remove(d->links, l);
  if (!d->fetch)
    return;
  /* A refusal (the source is busy for now) is worth another try later; a
   * link that failed (no answer, no path, another node id) is not. */
  if (ours && peer_link_refused(l))
    sources_refused(d->srcs, peer_link_peer(l), clock_now_ms());
  else if (ours)
    sources_closed(d->srcs, peer_link_peer(l));
  note_failure(d, "%s", reason);
  fetch_source_lost(d->fetch, src_of(l), clock_now_ms());
  dl_link_more(d);
  dl_pump(d);
}

/* --- running, pausing, resuming, cancelling -------------------------------------- */

/* (Re)starts the download: a search for sources by content id. */
static void dl_run(Download *d)
{
  Leaf *lf = d->lf;
  d->state = DL_SEARCHING;
  sources_restart(d->srcs);        /* the bad ones stay bad */
  g_array_set_size(d->sources, 0); /* the summary tells of the last run's links */
  g_string_truncate(d->failures, 0);
  d->rate_at = 0;
  d->search = leaf_core_search(lf->core, QUERY_CONTENT_ID, d->cid_hex, WIRE_MAX_TTL, DL_SEARCH_MS,
                               clock_now_ms());
  g_hash_table_insert(lf->dl_searches, GUINT_TO_POINTER(d->search), d);
  leaf_run_actions(lf);
}

static void tell(Download *d, const char *what)
{
  if (!d->cl)
    return;
  JsonObject *o = json_object_new();
  json_object_set_int_member(o, "download", (gint64)d->id);
  json_object_set_string_member(o, "state", what);
  control_send(d->cl, o);
}

static void dl_pause(Download *d)
{
  dl_release(d);
  d->state = DL_PAUSED;
  g_message("download %" G_GUINT64_FORMAT " (%.16s…) paused at %" G_GUINT64_FORMAT
            " of %" G_GUINT64_FORMAT " bytes",
            d->id, d->cid_hex, d->bytes_done, d->size);
  tell(d, "paused");
}

static void dl_resume(Download *d)
{
  g_message("download %" G_GUINT64_FORMAT " (%.16s…) resumed", d->id, d->cid_hex);
  tell(d, "searching");
  dl_run(d); /* may end it at once (not connected) */
}

static void dl_cancel(Download *d)
{
  dl_release(d);
  if (d->part_path && g_unlink(d->part_path) != 0 && errno != ENOENT)
    g_warning("download %" G_GUINT64_FORMAT ": cannot delete %s: %s", d->id, d->part_path,
              g_strerror(errno));
  g_message("download %" G_GUINT64_FORMAT " (%.16s…) cancelled", d->id, d->cid_hex);
  ControlClient *cl = d->cl;
  d->cl = NULL;
  g_free(d->error);
  d->error = g_strdup_printf("download %" G_GUINT64_FORMAT " was cancelled", d->id);
  dl_end(d, DL_CANCELLED);
  if (cl)
    control_fail(cl, d->error);
}

/* --- the requests ---------------------------------------------------------------- */

static void dl_destroy(gpointer p)
{
  dl_free(p);
}

static void ensure_tables(Leaf *lf)
{
  if (!lf->downloads) {
    lf->downloads = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, dl_destroy);
    lf->dl_searches = g_hash_table_new(g_direct_hash, g_direct_equal);
  }
}

void download_start(Leaf *lf, ControlClient *cl, JsonObject *req)
{
  ensure_tables(lf);
  const char *hex = json_object_get_string_member_with_default(req, "content_id", "");
  const char *out = json_object_get_string_member_with_default(req, "output", NULL);
  uint8_t cid[32];
  if (strlen(hex) != 64 || !hex_decode(hex, cid, sizeof cid)) {
    control_fail(cl, "bad content id: expected 64 hex digits");
    return;
  }
  if (out && !g_path_is_absolute(out)) {
    control_fail(cl, "output path must be absolute");
    return;
  }
  /* A `get` whose command was interrupted goes on in the daemon; asking
   * again for the same file follows that download instead of starting a
   * second one on the same part file (and resumes it if it was paused). */
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, lf->downloads);
  while (g_hash_table_iter_next(&it, NULL, &v)) {
    Download *old = v;
    if (ended(old) || memcmp(old->cid, cid, 32) != 0)
      continue;
    if (old->cl && !control_client_gone(old->cl)) {
      control_fail(cl, "this file is already being downloaded by another `get`");
      return;
    }
    /* Where the new `get` wants it (NULL: the download folder, under the
     * hit's name) against where the running one puts it. */
    gchar *dflt = old->name ? g_build_filename(lf->download_dir, old->name, NULL) : NULL;
    gboolean elsewhere = out ? !old->final_path || strcmp(out, old->final_path) != 0
                             : old->final_path && (!dflt || strcmp(dflt, old->final_path) != 0);
    g_free(dflt);
    if (elsewhere) {
      gchar *msg = g_strdup_printf(
          "this file is already being downloaded to %s (download %" G_GUINT64_FORMAT
          "; `canopy-leaf downloads cancel %" G_GUINT64_FORMAT "` first)",
          old->final_path ? old->final_path : "the download folder", old->id, old->id);
      control_fail(cl, msg);
      g_free(msg);
      return;
    }
    if (old->cl)
      control_finish(old->cl);
    old->cl = cl;
    g_message("download %.16s…: a new `get` follows the running download", old->cid_hex);
    tell(old, state_names[old->state]);
    if (old->state == DL_PAUSED)
      dl_resume(old);
    return;
  }
  Download *d = g_new0(Download, 1);
  d->id = ++lf->next_download;
  d->lf = lf;
  d->cl = cl;
  d->fd = -1;
  d->started = clock_now_ms();
  memcpy(d->cid, cid, 32);
  hex_encode(cid, 32, d->cid_hex);
  d->final_path = g_strdup(out);
  d->force = json_object_get_boolean_member_with_default(req, "force", FALSE);
  d->srcs = sources_new(DL_MAX_CANDIDATES, DL_OPEN_WAIT_MS, dl_rng, NULL);
  d->links = g_ptr_array_new();
  d->sources = g_array_new(FALSE, TRUE, sizeof(SourceRec));
  d->failures = g_string_new(NULL);
  g_hash_table_insert(lf->downloads, &d->id, d);
  if (g_mkdir_with_parents(lf->download_dir, 0700) != 0) {
    dl_fail(d, "cannot create %s: %s", lf->download_dir, g_strerror(errno));
    return;
  }
  tell(d, "searching");
  dl_run(d);
}

static JsonObject *dl_json(const Download *d)
{
  JsonObject *o = json_object_new();
  json_object_set_int_member(o, "id", (gint64)d->id);
  json_object_set_string_member(o, "state", state_names[d->state]);
  if (d->name)
    json_object_set_string_member(o, "name", d->name);
  else
    json_object_set_null_member(o, "name");
  json_object_set_string_member(o, "content_id", d->cid_hex);
  if (d->final_path)
    json_object_set_string_member(o, "path", d->final_path);
  else
    json_object_set_null_member(o, "path");
  uint64_t done = d->fetch ? fetch_bytes_done(d->fetch) : d->bytes_done;
  json_object_set_int_member(o, "bytes_done", (gint64)done);
  json_object_set_int_member(o, "bytes_total", (gint64)d->size);
  uint64_t end = ended(d) ? d->ended : clock_now_ms();
  uint64_t ms = end - d->started;
  double rate = d->rate;
  if (d->state == DL_FINISHED && ms > 0)
    rate = (double)d->received * 1000.0 / (double)ms; /* the average */
  json_object_set_int_member(o, "rate", (gint64)rate);
  json_object_set_int_member(o, "sources", d->fetch ? fetch_sources(d->fetch) : 0);
  json_object_set_int_member(o, "sources_known", (gint64)sources_count(d->srcs));
  json_object_set_int_member(o, "elapsed_ms", (gint64)ms);
  json_object_set_boolean_member(o, "followed", d->cl != NULL);
  if (d->error)
    json_object_set_string_member(o, "error", d->error);
  return o;
}

static gint by_id(gconstpointer a, gconstpointer b)
{
  uint64_t x = (*(Download *const *)a)->id, y = (*(Download *const *)b)->id;
  return x < y ? -1 : x > y;
}

/* Every listed download, by id. */
static GPtrArray *sorted(Leaf *lf)
{
  GPtrArray *all = g_ptr_array_new();
  if (lf->downloads) {
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, lf->downloads);
    while (g_hash_table_iter_next(&it, NULL, &v))
      g_ptr_array_add(all, v);
  }
  g_ptr_array_sort(all, by_id);
  return all;
}

void download_list(Leaf *lf, ControlClient *cl)
{
  GPtrArray *all = sorted(lf);
  JsonArray *arr = json_array_new();
  for (guint i = 0; i < all->len; i++)
    json_array_add_object_element(arr, dl_json(g_ptr_array_index(all, i)));
  g_ptr_array_unref(all);
  JsonObject *o = json_object_new();
  json_object_set_array_member(o, "downloads", arr);
  json_object_set_object_member(o, "transfers", download_stats(lf));
  json_object_set_boolean_member(o, "done", TRUE);
  control_send(cl, o);
  control_finish(cl);
}

void download_command(Leaf *lf, ControlClient *cl, const char *what, JsonObject *req)
{
  ensure_tables(lf);
  gint64 id = json_object_get_int_member_with_default(req, "id", 0);
  Download *d = id > 0 ? g_hash_table_lookup(lf->downloads, &(uint64_t){(uint64_t)id}) : NULL;
  if (!d) {
    gchar *msg =
        g_strdup_printf("no download %" G_GINT64_FORMAT " (see canopy-leaf downloads list)", id);
    control_fail(cl, msg);
    g_free(msg);
    return;
  }
  if (ended(d)) {
    gchar *msg = g_strdup_printf("download %" G_GINT64_FORMAT " has %s", id,
                                 d->state == DL_FINISHED ? "finished"
                                 : d->state == DL_FAILED ? "failed"
                                                         : "been cancelled");
    control_fail(cl, msg);
    g_free(msg);
    return;
  }
  if (strcmp(what, "pause") == 0) {
    if (d->state != DL_PAUSED)
      dl_pause(d);
  } else if (strcmp(what, "resume") == 0) {
    if (d->state == DL_PAUSED)
      dl_resume(d);
  } else if (strcmp(what, "cancel") == 0) {
    dl_cancel(d);
  } else {
    control_fail(cl, "unknown downloads command");
    return;
  }
  JsonObject *o = dl_json(d);
  json_object_remove_member(o, "error"); /* a top-level "error" is a failure */
  json_object_set_boolean_member(o, "done", TRUE);
  control_send(cl, o);
  control_finish(cl);
}

JsonObject *download_stats(Leaf *lf)
{
  unsigned active = 0, paused = 0, searching = 0;
  double rate = 0;
  GPtrArray *all = sorted(lf);
  for (guint i = 0; i < all->len; i++) {
    Download *d = g_ptr_array_index(all, i);
    if (d->state == DL_RUNNING) {
      active++;
      rate += d->rate;
    } else if (d->state == DL_SEARCHING) {
      searching++;
    } else if (d->state == DL_PAUSED) {
      paused++;
    }
  }
  g_ptr_array_unref(all);
  JsonObject *o = json_object_new();
  json_object_set_int_member(o, "downloads_running", active);
  json_object_set_int_member(o, "downloads_searching", searching);
  json_object_set_int_member(o, "downloads_paused", paused);
  json_object_set_int_member(o, "downloads_finished", (gint64)lf->downloads_finished);
  json_object_set_int_member(o, "downloads_failed", (gint64)lf->downloads_failed);
  json_object_set_int_member(o, "download_rate", (gint64)rate);
  json_object_set_int_member(o, "bytes_downloaded", (gint64)lf->bytes_downloaded);
  json_object_set_int_member(o, "uploads_active", g_hash_table_size(lf->uploads));
  json_object_set_int_member(o, "bytes_uploaded", (gint64)server_bytes_sent(lf->server));
  json_object_set_int_member(o, "chunks_uploaded", (gint64)server_chunks_sent(lf->server));
  return o;
}

void download_free_all(Leaf *lf)
{
  /* Out of the table first: the links closing below look their download up. */
  GHashTable *t = lf->downloads;
  lf->downloads = NULL;
  if (t)
    g_hash_table_destroy(t);
  if (lf->dl_searches)
    g_hash_table_destroy(lf->dl_searches);
  lf->dl_searches = NULL;
}
