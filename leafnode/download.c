/* download.c - `canopy-leaf get` inside the daemon: find sources by content
 * id, link to up to DL_MAX_SOURCES of them, run the fetch core (fetch.h) over
 * those links, write verified chunks into a part file, and rename it into
 * place when the last chunk is in.
 *
 * The part file is named after the content id and sits beside the final
 * file, so a later `get` of the same id to the same place resumes: once the chunk hashes are known
 * every chunk already on disk is checked and only the missing ones are asked for. The finished file
 * appears atomically (rename) in the download folder, under the hit's
 * base name; a peer-supplied name can never point elsewhere.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "content.h"
#include "daemon.h"
#include "fetch.h"
#include "wire.h"

#define DL_MAX_SOURCES 4
#define DL_PIPELINE 8
#define DL_PROGRESS_MS 500

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
  ControlClient *cl;
  uint8_t cid[32];
  char cid_hex[CONTENT_HEX_LEN];
  uint64_t size;
  char *name;
  char *final_path;
  char *part_path;
  gboolean force;
  int fd;
  uint32_t search;
  GPtrArray *candidates; /* uint8_t[32] node ids that have the file */
  guint tried;           /* candidates linked to so far */
  GPtrArray *links;      /* PeerLink*, live outbound links */
  GArray *sources;       /* SourceRec, links that opened */
  GString *failures;     /* why sources failed, for the error message */
  Fetch *fetch;
  GSource *timer;
  uint64_t started;
} Download;

static void dl_pump(Download *d);
static gboolean dl_begin(Download *d);
static void dl_link_more(Download *d);

static void dl_free(Download *d)
{
  timer_disarm(&d->timer);
  for (guint i = d->links->len; i-- > 0;)
    peer_link_close(g_ptr_array_index(d->links, i), "download over");
  if (d->fd >= 0)
    close(d->fd);
  fetch_free(d->fetch);
  g_ptr_array_unref(d->candidates);
  g_ptr_array_unref(d->links);
  g_array_unref(d->sources);
  g_string_free(d->failures, TRUE);
  g_free(d->name);
  g_free(d->final_path);
  g_free(d->part_path);
  g_free(d);
}

static void dl_end(Download *d)
{
  Leaf *lf = d->lf;
  if (d->search)
    g_hash_table_remove(lf->dl_searches, GUINT_TO_POINTER(d->search));
  g_hash_table_remove(lf->downloads, &d->id); /* frees d */
}

static void dl_fail(Download *d, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void dl_fail(Download *d, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  gchar *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_message("download %.16s… failed: %s", d->cid_hex, msg);
  if (d->cl)
    control_fail(d->cl, msg);
  d->cl = NULL;
  g_free(msg);
  dl_end(d);
}

static Download *dl_by_link(Leaf *lf, PeerLink *l)
{
  uint64_t id = peer_link_tag(l);
  return g_hash_table_lookup(lf->downloads, &id);
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
  control_send(d->cl, o);
}

static gboolean on_timer(gpointer ud)
{
  Download *d = ud;
  if (d->fetch)
    fetch_tick(d->fetch, clock_now_ms());
  send_progress(d);
  dl_pump(d);
  return G_SOURCE_REMOVE;
}

static void arm(Download *d)
{
  uint64_t t = clock_now_ms() + DL_PROGRESS_MS;
  if (d->fetch)
    t = MIN(t, fetch_next_deadline(d->fetch));
  timer_arm(&d->timer, d->lf->ctx, t, on_timer, d);
}

/* Chunks already in the part file (an interrupted earlier `get`). */
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
  if (fsync(d->fd) != 0 || close(d->fd) != 0) {
    d->fd = -1;
    dl_fail(d, "cannot write %s: %s", d->part_path, g_strerror(errno));
    return;
  }
  d->fd = -1;
  if (!d->force && g_file_test(d->final_path, G_FILE_TEST_EXISTS)) {
    dl_fail(d, "%s appeared meanwhile; not overwriting it (use --force)", d->final_path);
    return;
  }
  if (g_rename(d->part_path, d->final_path) != 0) {
    dl_fail(d, "cannot move the finished file to %s: %s", d->final_path, g_strerror(errno));
    return;
  }
  uint64_t ms = clock_now_ms() - d->started;
  g_message("downloaded %s (%" G_GUINT64_FORMAT " bytes) in %" G_GUINT64_FORMAT
            " ms from %u source(s)",
            d->final_path, d->size, ms, d->sources->len);
  if (d->cl) {
    JsonObject *o = json_object_new();
    json_object_set_string_member(o, "path", d->final_path);
    json_object_set_int_member(o, "bytes", (gint64)d->size);
    json_object_set_string_member(o, "content_id", d->cid_hex);
    json_object_set_int_member(o, "ms", (gint64)ms);
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
    control_send(d->cl, o);
    control_finish(d->cl);
    d->cl = NULL;
  }
  dl_end(d);
}

/* Runs the fetch core's actions. Returns after d may have been freed only
 * through finish/dl_fail, which end the loop. */
static void dl_pump(Download *d)
{
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
      g_string_append_printf(d->failures, "%s%s", d->failures->len ? "; " : "", a.reason);
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
      break;
    }
    case FETCH_ACT_DONE:
      fetch_action_clear(&a);
      finish(d);
      return;
    }
    fetch_action_clear(&a);
  }
  if (fetch_sources(d->fetch) == 0 && d->links->len == 0 && d->search == 0) {
    dl_fail(d, "no source could deliver %.16s…: %s", d->cid_hex,
            d->failures->len ? d->failures->str : "no source reachable");
    return;
  }
  arm(d);
}

/* --- sources ------------------------------------------------------------------ */

gboolean download_on_hit(Leaf *lf, uint32_t search, const LeafAction *hit)
{
  Download *d = g_hash_table_lookup(lf->dl_searches, GUINT_TO_POINTER(search));
  if (!d)
    return FALSE;
  if (memcmp(hit->cid, d->cid, 32) != 0 || memcmp(hit->peer, lf->id.id, 32) == 0)
    return TRUE;
  for (guint i = 0; i < d->candidates->len; i++)
    if (memcmp(g_ptr_array_index(d->candidates, i), hit->peer, 32) == 0)
      return TRUE;
  if (!d->name) {
    d->size = hit->size;
    gchar *base = g_path_get_basename(hit->name);
    /* The name comes from a peer: keep only a plain base name. */
    if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || strcmp(base, "/") == 0 || !*base) {
      g_free(base);
      base = g_strdup(d->cid_hex);
    }
    d->name = base;
  }
  if (hit->size != d->size)
    return TRUE;
  g_ptr_array_add(d->candidates, g_memdup2(hit->peer, 32));
  /* Link at once: waiting for the search to end would add its whole
   * collection window to every download. */
  if (!d->fetch && !dl_begin(d))
    return TRUE;
  dl_link_more(d);
  return TRUE;
}

/* The first hit: fix the file's name and size, open the part file and
 * start the fetch core. FALSE if the download ended (failed) here. */
static gboolean dl_begin(Download *d)
{
  Leaf *lf = d->lf;
  if (!d->final_path)
    d->final_path = g_build_filename(lf->download_dir, d->name, NULL);
  if (!d->force && g_file_test(d->final_path, G_FILE_TEST_EXISTS)) {
    dl_fail(d, "%s already exists (use --force to overwrite)", d->final_path);
    return FALSE;
  }
  /* The part file sits beside the final name, so the last step is a rename
   * within one file system (atomic), wherever -o points. */
  gchar *part_name = g_strdup_printf(".canopy-%s.part", d->cid_hex);
  gchar *dir = g_path_get_dirname(d->final_path);
  d->part_path = g_build_filename(dir, part_name, NULL);
  g_free(dir);
  g_free(part_name);
  d->fd = open(d->part_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (d->fd < 0) {
    dl_fail(d, "cannot create %s: %s", d->part_path, g_strerror(errno));
    return FALSE;
  }
  d->fetch = fetch_new(d->cid, d->size, DL_PIPELINE);
  return TRUE;
}

/* Links to candidates not yet tried, up to DL_MAX_SOURCES at a time. */
static void dl_link_more(Download *d)
{
  while (d->tried < d->candidates->len && d->links->len < DL_MAX_SOURCES) {
    PeerLink *l = peers_connect(d->lf->peers, g_ptr_array_index(d->candidates, d->tried), d->id);
    d->tried++;
    if (l)
      g_ptr_array_add(d->links, l);
  }
}

gboolean download_on_search_done(Leaf *lf, uint32_t search, const char *error)
{
  Download *d = g_hash_table_lookup(lf->dl_searches, GUINT_TO_POINTER(search));
  if (!d)
    return FALSE;
  g_hash_table_remove(lf->dl_searches, GUINT_TO_POINTER(search));
  d->search = 0;
  if (d->fetch) {
    g_message("download %.16s…: %u source(s) found", d->cid_hex, d->candidates->len);
    dl_pump(d); /* fails it if every link already failed */
    return TRUE;
  }
  dl_fail(d, "%s", error ? error : "no leaf shares this content id (searched 7 super-node hops)");
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
  g_ptr_array_remove(d->links, l);
  if (!d->fetch)
    return;
  g_string_append_printf(d->failures, "%s%s", d->failures->len ? "; " : "", reason);
  fetch_source_lost(d->fetch, src_of(l), clock_now_ms());
  dl_link_more(d);
  dl_pump(d);
}

/* --- the request --------------------------------------------------------------- */

static void dl_destroy(gpointer p)
{
  dl_free(p);
}

void download_start(Leaf *lf, ControlClient *cl, JsonObject *req)
{
  if (!lf->downloads) {
    lf->downloads = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, dl_destroy);
    lf->dl_searches = g_hash_table_new(g_direct_hash, g_direct_equal);
  }
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
   * second one on the same part file. */
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init(&it, lf->downloads);
  while (g_hash_table_iter_next(&it, NULL, &v)) {
    Download *old = v;
    if (memcmp(old->cid, cid, 32) != 0)
      continue;
    if (old->cl && !control_client_gone(old->cl)) {
      control_fail(cl, "this file is already being downloaded by another `get`");
      return;
    }
    if (old->cl)
      control_finish(old->cl);
    old->cl = cl;
    g_message("download %.16s…: a new `get` follows the running download", old->cid_hex);
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
  d->candidates = g_ptr_array_new_with_free_func(g_free);
  d->links = g_ptr_array_new();
  d->sources = g_array_new(FALSE, TRUE, sizeof(SourceRec));
  d->failures = g_string_new(NULL);
  g_hash_table_insert(lf->downloads, &d->id, d);
  if (g_mkdir_with_parents(lf->download_dir, 0700) != 0) {
    dl_fail(d, "cannot create %s: %s", lf->download_dir, g_strerror(errno));
    return;
  }
  d->search =
      leaf_core_search(lf->core, QUERY_CONTENT_ID, d->cid_hex, WIRE_MAX_TTL, 1500, clock_now_ms());
  leaf_core_search_limit(lf->core, d->search, 16);
  g_hash_table_insert(lf->dl_searches, GUINT_TO_POINTER(d->search), d);
  leaf_run_actions(lf);
}

void download_free_all(Leaf *lf)
{
  if (lf->downloads)
    g_hash_table_destroy(lf->downloads);
  if (lf->dl_searches)
    g_hash_table_destroy(lf->dl_searches);
  lf->downloads = lf->dl_searches = NULL;
}
