/* share.c - scan a shared folder and keep content ids of its files.
 *
 * A scan walks the folder first, taking every file it can from the previous
 * scan (in memory) or the hash cache, and queues the rest; only then does it
 * hash the queue, so the progress callback knows the totals up front.
 */
#include "share.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "content.h"
#include "wire.h"

#define READ_BUF_SIZE (1024u * 1024u)
/* A long hashing run commits to the hash cache this often (monotonic us). */
#define COMMIT_EVERY_US (10 * G_USEC_PER_SEC)

typedef struct {
  uint64_t dev, ino, size;
  int64_t mtime_ns, ctime_ns;
  gboolean racy;    /* hashed too close to a write: the next scan hashes it again */
  gboolean no_tree; /* its chunk hashes are not in the hash cache: hash it again */
  uint8_t cid[32];
} Cached;

struct Share {
  char *root;
  GHashTable *cache; /* relpath -> Cached*; rebuilt by every scan */
  GArray *entries;   /* LeafEntry */
  GArray *excluded;  /* dev_t/ino_t pairs of directories never walked */
  HashCache *hashcache;
  gboolean owns_cache;
  gint cancelled; /* atomic: share_cancel from another thread */
  /* The in-memory ids are not all in the hash cache (it was attached after
   * a scan): the next scan stores them rather than only marking them seen. */
  gboolean sync_cache;
  ShareWallClock now;
  void *now_ud;
  ShareProgressFn progress;
  void *progress_ud;
  ShareScanStats stats;
};

/* A file the walk found no content id for. */
typedef struct {
  char *rel, *full;
  GStatBuf st;
} Pending;

static void entry_clear(gpointer p)
{
  g_free(((LeafEntry *)p)->name);
}

static void pending_clear(gpointer p)
{
  g_free(((Pending *)p)->rel);
  g_free(((Pending *)p)->full);
}

static int64_t real_clock(void *ud)
{
  return g_get_real_time() * 1000;
}

Share *share_new(const char *root)
{
  Share *s = g_new0(Share, 1);
  s->root = g_strdup(root);
  s->cache = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  s->entries = g_array_new(FALSE, TRUE, sizeof(LeafEntry));
  g_array_set_clear_func(s->entries, entry_clear);
  s->excluded = g_array_new(FALSE, FALSE, sizeof(GStatBuf));
  s->now = real_clock;
  return s;
}

void share_set_cache(Share *s, HashCache *cache)
{
  if (s->hashcache != cache && s->owns_cache)
    hashcache_close(s->hashcache);
  s->hashcache = cache;
  s->owns_cache = TRUE;
  s->sync_cache = cache && g_hash_table_size(s->cache) > 0;
}

void share_use_cache(Share *s, HashCache *cache)
{
  share_set_cache(s, cache);
  s->owns_cache = FALSE;
}

void share_cancel(Share *s)
{
  g_atomic_int_set(&s->cancelled, 1);
}

static gboolean cancelled(Share *s)
{
  return g_atomic_int_get(&s->cancelled) != 0;
}

void share_set_clock(Share *s, ShareWallClock now, void *ud)
{
  s->now = now ? now : real_clock;
  s->now_ud = ud;
}

void share_set_progress(Share *s, ShareProgressFn fn, void *ud)
{
  s->progress = fn;
  s->progress_ud = ud;
}

void share_exclude(Share *s, const char *dir)
{
  GStatBuf st;
  if (g_stat(dir, &st) == 0)
    g_array_append_val(s->excluded, st);
}

static gboolean is_excluded(const Share *s, const GStatBuf *st)
{
  for (guint i = 0; i < s->excluded->len; i++) {
    const GStatBuf *x = &g_array_index(s->excluded, GStatBuf, i);
    if (x->st_dev == st->st_dev && x->st_ino == st->st_ino)
      return TRUE;
  }
  return FALSE;
}

void share_free(Share *s)
{
  if (!s)
    return;
  g_free(s->root);
  g_hash_table_destroy(s->cache);
  g_array_unref(s->entries);
  g_array_unref(s->excluded);
  if (s->owns_cache)
    hashcache_close(s->hashcache);
  g_free(s);
}

typedef struct {
  Share *s;
  GHashTable *next_cache;
  GArray *next_entries;
  GArray *pending; /* Pending, in walk order */
  ShareProgress progress;
  unsigned depth;
} Walk;

static int64_t ts_ns(const struct timespec *ts)
{
  return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec;
}

static HashCacheKey key_of_cached(const char *rel, const Cached *c)
{
  return (HashCacheKey){.relpath = rel,
                        .dev = c->dev,
                        .ino = c->ino,
                        .size = c->size,
                        .mtime_ns = c->mtime_ns,
                        .ctime_ns = c->ctime_ns};
}

static Cached *cached_new(const HashCacheKey *k, const uint8_t cid[32])
{
  Cached *c = g_new0(Cached, 1);
  c->dev = k->dev;
  c->ino = k->ino;
  c->size = k->size;
  c->mtime_ns = k->mtime_ns;
  c->ctime_ns = k->ctime_ns;
  memcpy(c->cid, cid, 32);
  return c;
}

static gboolean cached_matches(const Cached *c, const HashCacheKey *k)
{
  return !c->racy && c->dev == k->dev && c->ino == k->ino && c->size == k->size &&
         c->mtime_ns == k->mtime_ns && c->ctime_ns == k->ctime_ns;
}

/* Adds the file to the manifest; takes c. */
static void publish(Walk *w, const char *rel, Cached *c)
{
  LeafEntry e = {.name = g_strdup(rel), .size = c->size};
  memcpy(e.cid, c->cid, 32);
  g_array_append_val(w->next_entries, e);
  g_hash_table_insert(w->next_cache, g_strdup(rel), c);
}

/* A download's part file (download.c names it .canopy-CID.part): it is
 * being written, and would be published as a broken file. */
static gboolean is_part_file(const char *rel)
{
  const char *base = strrchr(rel, '/');
  base = base ? base + 1 : rel;
  return g_str_has_prefix(base, ".canopy-") && g_str_has_suffix(base, ".part");
}

static void add_file(Walk *w, const char *rel, const char *full, const GStatBuf *st)
{
  Share *s = w->s;
  if (is_part_file(rel))
    return;
  size_t len = strlen(rel);
  if (len > WIRE_MAX_NAME || !wire_utf8_ok(rel, len)) {
    g_warning("not sharing %s: name is not UTF-8 or longer than %d bytes", full, WIRE_MAX_NAME);
    s->stats.skipped++;
    return;
  }
  HashCacheKey k = hashcache_key_of_stat(rel, st);
  Cached *old = g_hash_table_lookup(s->cache, rel);
  /* A file whose tree did not reach the cache is hashed again (off the
   * main loop) rather than by the first peer that asks for its tree. */
  if (old && cached_matches(old, &k) && !(old->no_tree && hashcache_ok(s->hashcache))) {
    Cached *c = g_memdup2(old, sizeof *old);
    if (s->sync_cache) {
      hashcache_store(s->hashcache, &k, old->cid, NULL, 0);
      c->no_tree = TRUE; /* the row may have lost its leaves with that scan */
    } else {
      hashcache_keep(s->hashcache, &k);
    }
    publish(w, rel, c);
    s->stats.from_memory++;
    return;
  }
  uint8_t cid[32];
  if (hashcache_lookup(s->hashcache, &k, cid)) {
    publish(w, rel, cached_new(&k, cid));
    s->stats.from_cache++;
    return;
  }
  Pending p = {g_strdup(rel), g_strdup(full), *st};
  g_array_append_val(w->pending, p);
  w->progress.files_total++;
  w->progress.bytes_total += (uint64_t)st->st_size;
}

static void walk_dir(Walk *w, const char *rel_dir)
{
  if (w->depth > 64)
    return; /* a bind-mount loop cannot recurse forever */
  gchar *dir = rel_dir[0] ? g_build_filename(w->s->root, rel_dir, NULL) : g_strdup(w->s->root);
  GError *err = NULL;
  GDir *d = g_dir_open(dir, 0, &err);
  if (!d) {
    g_warning("skipping %s: %s", dir, err->message);
    g_error_free(err);
    g_free(dir);
    return;
  }
  const char *name;
  while (!cancelled(w->s) && (name = g_dir_read_name(d))) {
    gchar *rel = rel_dir[0] ? g_build_filename(rel_dir, name, NULL) : g_strdup(name);
    gchar *full = g_build_filename(w->s->root, rel, NULL);
    GStatBuf st;
    if (g_lstat(full, &st) == 0) {
      if (S_ISDIR(st.st_mode) && is_excluded(w->s, &st)) {
        g_info("not sharing %s: it is the leaf's state dir", full);
      } else if (S_ISDIR(st.st_mode)) {
        w->depth++;
        walk_dir(w, rel);
        w->depth--;
      } else if (S_ISREG(st.st_mode)) {
        add_file(w, rel, full, &st);
      }
    }
    g_free(full);
    g_free(rel);
  }
  g_dir_close(d);
  g_free(dir);
}

static void report(Walk *w, const char *rel)
{
  if (!w->s->progress)
    return;
  w->progress.relpath = rel;
  w->s->progress(&w->progress, w->s->progress_ud);
}

/* Hashes one queued file into c, keyed by what fstat said before reading
 * (the walk's lstat may be stale by now), and its chunk hashes into
 * *leaves (g_free; NULL if memory ran out). FALSE with a reason in err. */
static gboolean hash_file(Walk *w, const Pending *p, Cached *c, uint8_t **leaves, size_t *nleaves,
                          uint8_t *buf, char *err, size_t errlen)
{
  *leaves = NULL;
  *nleaves = 0;
  gboolean ok = FALSE;
  ContentHasher *h = NULL;
  /* O_NONBLOCK: if a FIFO replaced the file since the walk, do not hang. */
  int fd = open(p->full, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open: %s", g_strerror(errno));
    return FALSE;
  }
  struct stat before, after;
  if (fstat(fd, &before) != 0 || !S_ISREG(before.st_mode)) {
    snprintf(err, errlen, "no longer a regular file");
    goto out;
  }
  int64_t now = w->s->now(w->s->now_ud);
  h = content_hasher_new();
  if (!h) {
    snprintf(err, errlen, "cannot hash: out of memory");
    goto out;
  }
  content_hasher_keep_leaves(h);
  uint64_t planned = (uint64_t)p->st.st_size, base = w->progress.bytes_done, got = 0;
  for (;;) {
    if (cancelled(w->s)) {
      snprintf(err, errlen, "scan cancelled");
      goto out;
    }
    ssize_t n = read(fd, buf, READ_BUF_SIZE);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      snprintf(err, errlen, "cannot read: %s", g_strerror(errno));
      goto out;
    }
    if (n == 0)
      break;
    content_hasher_update(h, buf, (size_t)n);
    got += (uint64_t)n;
    if (planned > READ_BUF_SIZE) {
      w->progress.bytes_done = base + MIN(got, planned);
      report(w, p->rel);
    }
  }
  content_hasher_final(h, c->cid);
  *leaves = content_hasher_take_leaves(h, nleaves);
  HashCacheKey k = hashcache_key_of_stat(p->rel, &before);
  c->dev = k.dev;
  c->ino = k.ino;
  c->mtime_ns = k.mtime_ns;
  c->ctime_ns = k.ctime_ns;
  c->size = got;
  /* Trusted next time only if no write can hide behind the timestamps:
   * none during the read, none within the last tick before it. */
  c->racy = got != k.size || fstat(fd, &after) != 0 || (uint64_t)after.st_size != k.size ||
            ts_ns(&after.st_mtim) != k.mtime_ns || ts_ns(&after.st_ctim) != k.ctime_ns ||
            k.ctime_ns > now - SHARE_RACY_NS;
  ok = TRUE;
out:
  content_hasher_free(h);
  close(fd);
  return ok;
}

static void hash_pending(Walk *w)
{
  Share *s = w->s;
  if (w->pending->len == 0)
    return;
  uint8_t *buf = g_malloc(READ_BUF_SIZE);
  report(w, NULL);
  uint64_t bytes_done = 0;
  int64_t committed = g_get_monotonic_time();
  for (guint i = 0; i < w->pending->len && !cancelled(s); i++) {
    const Pending *p = &g_array_index(w->pending, Pending, i);
    Cached *c = g_new0(Cached, 1);
    char err[256];
    uint8_t *leaves;
    size_t nleaves;
    if (hash_file(w, p, c, &leaves, &nleaves, buf, err, sizeof err)) {
      s->stats.hashed++;
      s->stats.bytes_hashed += c->size;
      if (!c->racy) {
        HashCacheKey k = key_of_cached(p->rel, c);
        c->no_tree = !hashcache_store(s->hashcache, &k, c->cid, leaves, nleaves);
      }
      free(leaves);
      publish(w, p->rel, c);
    } else {
      if (!cancelled(s))
        g_warning("not sharing %s: %s", p->full, err);
      s->stats.skipped++;
      g_free(c);
    }
    bytes_done += (uint64_t)p->st.st_size;
    w->progress.files_done++;
    w->progress.bytes_done = bytes_done;
    report(w, p->rel);
    if (g_get_monotonic_time() - committed >= COMMIT_EVERY_US) {
      hashcache_commit(s->hashcache);
      committed = g_get_monotonic_time();
    }
  }
  g_free(buf);
}

/* After the hash cache lost a scan's writes (an SQLite error rolled them
 * back, and a corrupt file was replaced), writes this scan's ids again so
 * a restart does not hash everything. Once: after a second failure the next
 * scan stores every file. */
static void resync_cache(Share *s, GHashTable *files)
{
  GHashTableIter it;
  gpointer rel, val;
  hashcache_begin(s->hashcache, s->root);
  g_hash_table_iter_init(&it, files);
  while (g_hash_table_iter_next(&it, &rel, &val)) {
    const Cached *c = val;
    if (c->racy)
      continue;
    HashCacheKey k = key_of_cached(rel, c);
    hashcache_store(s->hashcache, &k, c->cid, NULL, 0);
  }
  s->sync_cache = !hashcache_end(s->hashcache, TRUE);
}

static gint entry_cmp(gconstpointer a, gconstpointer b)
{
  return strcmp(((const LeafEntry *)a)->name, ((const LeafEntry *)b)->name);
}

static gboolean same_entries(GArray *a, GArray *b)
{
  if (a->len != b->len)
    return FALSE;
  for (guint i = 0; i < a->len; i++) {
    LeafEntry *x = &g_array_index(a, LeafEntry, i), *y = &g_array_index(b, LeafEntry, i);
    if (strcmp(x->name, y->name) != 0 || x->size != y->size || memcmp(x->cid, y->cid, 32) != 0)
      return FALSE;
  }
  return TRUE;
}

gboolean share_scan(Share *s, gboolean *changed, GError **error)
{
  GStatBuf root_st;
  if (g_stat(s->root, &root_st) != 0 || !S_ISDIR(root_st.st_mode)) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOTDIR, "share %s is not a directory", s->root);
    return FALSE;
  }
  if (is_excluded(s, &root_st)) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_PERM,
                "share %s is the leaf's state dir, which holds its secret key", s->root);
    return FALSE;
  }
  if (cancelled(s)) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INTR, "scan of %s cancelled", s->root);
    return FALSE;
  }
  Walk w = {.s = s, .next_cache = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free)};
  w.next_entries = g_array_new(FALSE, TRUE, sizeof(LeafEntry));
  g_array_set_clear_func(w.next_entries, entry_clear);
  w.pending = g_array_new(FALSE, FALSE, sizeof(Pending));
  g_array_set_clear_func(w.pending, pending_clear);
  memset(&s->stats, 0, sizeof s->stats);

  hashcache_begin(s->hashcache, s->root);
  walk_dir(&w, "");
  hash_pending(&w);
  if (cancelled(s)) {
    /* What was hashed is stored; nothing is pruned or published. */
    hashcache_end(s->hashcache, FALSE);
    g_array_unref(w.pending);
    g_array_unref(w.next_entries);
    g_hash_table_destroy(w.next_cache);
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INTR, "scan of %s cancelled", s->root);
    return FALSE;
  }
  if (hashcache_end(s->hashcache, TRUE)) {
    s->stats.pruned = hashcache_last_pruned(s->hashcache);
    s->sync_cache = FALSE;
  } else if (s->hashcache) {
    resync_cache(s, w.next_cache);
  }

  g_array_unref(w.pending);
  s->stats.files = w.next_entries->len;
  g_array_sort(w.next_entries, entry_cmp);
  if (changed)
    *changed = !same_entries(s->entries, w.next_entries);
  g_hash_table_destroy(s->cache);
  s->cache = w.next_cache;
  g_array_unref(s->entries);
  s->entries = w.next_entries;
  return TRUE;
}

void share_scan_stats(const Share *s, ShareScanStats *out)
{
  *out = s->stats;
}

const LeafEntry *share_entries(const Share *s, size_t *n)
{
  *n = s->entries->len;
  return (const LeafEntry *)(void *)s->entries->data;
}

size_t share_last_hashed(const Share *s)
{
  return s->stats.hashed;
}

const char *share_root(const Share *s)
{
  return s->root;
}

gboolean share_find(const Share *s, const uint8_t cid[32], const char **relpath, uint64_t *size)
{
  /* Linear: shares hold thousands of files and downloads ask once per link. */
  for (guint i = 0; i < s->entries->len; i++) {
    const LeafEntry *e = &g_array_index(s->entries, LeafEntry, i);
    if (memcmp(e->cid, cid, 32) == 0) {
      *relpath = e->name;
      *size = e->size;
      return TRUE;
    }
  }
  return FALSE;
}

/* --- the leaf's shared folders ------------------------------------------------ */

/* One shared folder. The main thread owns everything here but share, which
 * the worker uses while a job for this folder runs (and the main thread then
 * leaves alone). A job holds a reference, so a folder removed mid-scan lives
 * until its scan stops. */
typedef struct {
  gint refs;
  char *name; /* "" for the fixed folder */
  char *root;
  size_t prefix_len; /* bytes of "name/" at the start of each published name */
  gboolean fixed, removed, queued, scanned;
  Share *share;
  GArray *published; /* LeafEntry, names owned (as published) */
  uint64_t bytes;
  char *error;
  ShareScanStats last;
} Folder;

/* A scan of one folder, or the removal of a root's hash cache rows, run in
 * the worker thread. */
typedef struct {
  ShareSet *set;
  Folder *f;         /* scan; NULL for a forget */
  char *forget_root; /* forget */
  ShareSetProgressFn progress;
  ShareSetDoneFn done;
  void *ud;
  GThread *thread;
  GSource *finished; /* attached by the worker when it is done */
  /* Written by the worker, read by the main thread under lock. */
  GMutex lock;
  ShareProgress latest;
  char file[256];
  gboolean fresh;
  /* Written by the worker before it attaches finished. */
  gboolean ok, changed;
  GError *error;
} Job;

struct ShareSet {
  char *state_dir;
  char *list_path;
  GMainContext *ctx;
  ShareSetChangedFn changed;
  void *ud;
  HashCache *cache;
  GPtrArray *folders;  /* Folder*, the fixed one first, then in order of addition */
  GPtrArray *excluded; /* char* */
  GArray *entries;     /* LeafEntry, names borrowed from the folders' published */
  GArray *where;       /* Where, parallel to entries */
  GHashTable *by_cid;  /* cid (in entries) -> index + 1 */
  GQueue queue;        /* Job* waiting */
  Job *running;
  GSource *tick;      /* progress of the running job */
  ShareWallClock now; /* for the folders' scans; NULL: the real clock */
  void *now_ud;
};

typedef struct {
  Folder *f;
  guint index; /* in f->published */
} Where;

static void folder_unref(Folder *f)
{
  if (!f || --f->refs > 0)
    return;
  share_free(f->share);
  g_array_unref(f->published);
  g_free(f->name);
  g_free(f->root);
  g_free(f->error);
  g_free(f);
}

static Folder *folder_new(ShareSet *set, const char *name, const char *root, gboolean fixed)
{
  Folder *f = g_new0(Folder, 1);
  f->refs = 1;
  f->name = g_strdup(name);
  f->root = g_strdup(root);
  f->prefix_len = name[0] ? strlen(name) + 1 : 0;
  f->fixed = fixed;
  f->share = share_new(root);
  share_use_cache(f->share, set->cache);
  share_set_clock(f->share, set->now, set->now_ud);
  for (guint i = 0; i < set->excluded->len; i++)
    share_exclude(f->share, g_ptr_array_index(set->excluded, i));
  f->published = g_array_new(FALSE, TRUE, sizeof(LeafEntry));
  g_array_set_clear_func(f->published, entry_clear);
  return f;
}

/* The set's one timer (progress of the running job), through one slot that
 * destroys the previous source first. share.c cannot use clock.h's helper:
 * it is in the glib shell library, which the hash cache tests do not link. */
static void timer_off(GSource **slot)
{
  if (*slot) {
    g_source_destroy(*slot);
    g_source_unref(*slot);
    *slot = NULL;
  }
}

static void timer_every(GSource **slot, GMainContext *ctx, guint ms, GSourceFunc fn, void *ud)
{
  timer_off(slot);
  *slot = g_timeout_source_new(ms);
  g_source_set_callback(*slot, fn, ud, NULL);
  g_source_attach(*slot, ctx);
}

static guint cid_hash(gconstpointer k)
{
  guint h;
  memcpy(&h, k, sizeof h);
  return h;
}

static gboolean cid_equal(gconstpointer a, gconstpointer b)
{
  return memcmp(a, b, 32) == 0;
}

void shareset_set_clock(ShareSet *set, ShareWallClock now, void *ud)
{
  set->now = now;
  set->now_ud = ud;
  for (guint i = 0; i < set->folders->len; i++)
    share_set_clock(((Folder *)g_ptr_array_index(set->folders, i))->share, now, ud);
}

ShareSet *shareset_new(const char *state_dir, GMainContext *ctx, ShareSetChangedFn changed,
                       void *ud)
{
  ShareSet *set = g_new0(ShareSet, 1);
  set->state_dir = g_strdup(state_dir);
  set->list_path = g_build_filename(state_dir, SHARESET_FILE, NULL);
  set->ctx = g_main_context_ref(ctx);
  set->changed = changed;
  set->ud = ud;
  set->cache = hashcache_open(state_dir);
  set->folders = g_ptr_array_new_with_free_func((GDestroyNotify)folder_unref);
  set->excluded = g_ptr_array_new_with_free_func(g_free);
  set->entries = g_array_new(FALSE, TRUE, sizeof(LeafEntry));
  set->where = g_array_new(FALSE, TRUE, sizeof(Where));
  set->by_cid = g_hash_table_new(cid_hash, cid_equal);
  g_queue_init(&set->queue);
  return set;
}

static void job_free(Job *j)
{
  if (j->finished)
    g_source_unref(j->finished);
  folder_unref(j->f);
  g_free(j->forget_root);
  g_clear_error(&j->error);
  g_mutex_clear(&j->lock);
  g_free(j);
}

void shareset_free(ShareSet *set)
{
  if (!set)
    return;
  Job *j = set->running;
  if (j) {
    if (j->f)
      share_cancel(j->f->share);
    g_thread_join(j->thread);
    /* Its completion was posted to ctx: it must not run any more. */
    if (j->finished)
      g_source_destroy(j->finished);
    set->running = NULL;
    g_queue_push_head(&set->queue, j);
  }
  timer_off(&set->tick);
  while ((j = g_queue_pop_head(&set->queue))) {
    if (j->done)
      j->done(NULL, "the leaf is stopping", j->ud);
    job_free(j);
  }
  g_ptr_array_unref(set->folders);
  g_ptr_array_unref(set->excluded);
  g_array_unref(set->entries);
  g_array_unref(set->where);
  g_hash_table_destroy(set->by_cid);
  hashcache_close(set->cache);
  g_main_context_unref(set->ctx);
  g_free(set->state_dir);
  g_free(set->list_path);
  g_free(set);
}

void shareset_exclude(ShareSet *set, const char *dir)
{
  g_ptr_array_add(set->excluded, g_strdup(dir));
}

/* --- the merged manifest ------------------------------------------------------- */

/* Rebuilds the merged manifest from every folder's published files: the
 * fixed folder first, then in order of addition; a repeated name keeps the
 * first. */
static void merge(ShareSet *set)
{
  g_array_set_size(set->entries, 0);
  g_array_set_size(set->where, 0);
  g_hash_table_remove_all(set->by_cid);
  GHashTable *names = g_hash_table_new(g_str_hash, g_str_equal);
  for (guint i = 0; i < set->folders->len; i++) {
    Folder *f = g_ptr_array_index(set->folders, i);
    for (guint k = 0; k < f->published->len; k++) {
      LeafEntry *e = &g_array_index(f->published, LeafEntry, k);
      if (!g_hash_table_add(names, e->name)) {
        g_warning("not publishing %s/%s as %s: another shared folder publishes that name", f->root,
                  e->name + f->prefix_len, e->name);
        continue;
      }
      g_array_append_val(set->entries, *e);
      Where w = {f, k};
      g_array_append_val(set->where, w);
    }
  }
  g_hash_table_destroy(names);
  /* Keys point into entries, which no longer moves until the next merge. */
  for (guint i = 0; i < set->entries->len; i++)
    g_hash_table_insert(set->by_cid, g_array_index(set->entries, LeafEntry, i).cid,
                        GUINT_TO_POINTER(i + 1));
}

/* Copies the folder's scan into its published files, names prefixed. */
static void publish_folder(Folder *f)
{
  g_array_set_size(f->published, 0);
  f->bytes = 0;
  size_t n;
  const LeafEntry *e = share_entries(f->share, &n);
  for (size_t i = 0; i < n; i++) {
    LeafEntry p = e[i];
    p.name = f->prefix_len ? g_strconcat(f->name, "/", e[i].name, NULL) : g_strdup(e[i].name);
    if (strlen(p.name) > WIRE_MAX_NAME) {
      g_warning("not sharing %s/%s: its published name %s is longer than %d bytes", f->root,
                e[i].name, p.name, WIRE_MAX_NAME);
      g_free(p.name);
      continue;
    }
    g_array_append_val(f->published, p);
    f->bytes += p.size;
  }
}

static void unpublish_folder(Folder *f)
{
  g_array_set_size(f->published, 0);
  f->bytes = 0;
}

const LeafEntry *shareset_entries(const ShareSet *set, size_t *n)
{
  *n = set->entries->len;
  return (const LeafEntry *)(void *)set->entries->data;
}

gboolean shareset_find(const ShareSet *set, const uint8_t cid[32], const char **root,
                       const char **relpath, uint64_t *size)
{
  guint i = GPOINTER_TO_UINT(g_hash_table_lookup(set->by_cid, cid));
  if (i == 0)
    return FALSE;
  const Where *w = &g_array_index(set->where, Where, i - 1);
  const LeafEntry *e = &g_array_index(w->f->published, LeafEntry, w->index);
  *root = w->f->root;
  *relpath = e->name + w->f->prefix_len;
  *size = e->size;
  return TRUE;
}

static void emit_changed(ShareSet *set)
{
  merge(set);
  if (set->changed)
    set->changed(set->ud);
}

/* --- the list of folders ---------------------------------------------------------- */

guint shareset_count(const ShareSet *set)
{
  return set->folders->len;
}

void shareset_info(const ShareSet *set, guint i, ShareInfo *out)
{
  const Folder *f = g_ptr_array_index(set->folders, i);
  memset(out, 0, sizeof *out);
  out->name = f->name;
  out->root = f->root;
  out->fixed = f->fixed;
  out->scanning = f->queued;
  out->scanned = f->scanned;
  out->error = f->error;
  out->files = f->published->len;
  out->bytes = f->bytes;
  out->last = f->last;
  Job *j = set->running;
  if (j && j->f == f) {
    g_mutex_lock(&j->lock);
    out->progress = j->latest;
    out->progress.relpath = NULL; /* the worker's buffer moves on */
    g_mutex_unlock(&j->lock);
  }
}

/* root with symlinks resolved, or NULL (errno set). */
static char *canonical(const char *path)
{
  char *r = realpath(path, NULL);
  if (!r)
    return NULL;
  char *g = g_strdup(r);
  free(r);
  return g;
}

/* a is b or lies under it. */
static gboolean path_within(const char *a, const char *b)
{
  size_t n = strlen(b);
  if (strncmp(a, b, n) != 0)
    return FALSE;
  return a[n] == '\0' || a[n] == '/' || (n > 0 && b[n - 1] == '/');
}

int shareset_lookup_name(const ShareSet *set, const char *name)
{
  for (guint i = 0; i < set->folders->len; i++) {
    const Folder *f = g_ptr_array_index(set->folders, i);
    if (f->name[0] && strcmp(f->name, name) == 0)
      return (int)i;
  }
  return -1;
}

int shareset_lookup(const ShareSet *set, const char *what)
{
  char *canon = canonical(what);
  int found = -1;
  for (guint i = 0; i < set->folders->len && found < 0; i++) {
    const Folder *f = g_ptr_array_index(set->folders, i);
    if (strcmp(f->root, what) == 0 || (canon && strcmp(f->root, canon) == 0))
      found = (int)i;
  }
  g_free(canon);
  return found >= 0 ? found : shareset_lookup_name(set, what);
}

static gboolean folder_named(const ShareSet *set, const char *name)
{
  for (guint i = 0; i < set->folders->len; i++)
    if (strcmp(((const Folder *)g_ptr_array_index(set->folders, i))->name, name) == 0)
      return TRUE;
  return FALSE;
}

/* A name is taken by another folder, or by a top-level file or folder of the
 * fixed folder (whose files are published without a prefix). */
static gboolean name_taken(const ShareSet *set, const char *name)
{
  if (folder_named(set, name))
    return TRUE;
  for (guint i = 0; i < set->folders->len; i++) {
    const Folder *f = g_ptr_array_index(set->folders, i);
    if (f->fixed) {
      gchar *p = g_build_filename(f->root, name, NULL);
      gboolean there = g_file_test(p, G_FILE_TEST_EXISTS);
      g_free(p);
      if (there)
        return TRUE;
    }
  }
  return FALSE;
}

/* The folder's base name, valid UTF-8, at most SHARESET_NAME_MAX bytes, and
 * made unique with "-2", "-3"... */
static char *pick_name(const ShareSet *set, const char *root)
{
  gchar *base = g_path_get_basename(root);
  gchar *valid = g_utf8_make_valid(base, -1);
  g_free(base);
  if (!valid[0] || strcmp(valid, "/") == 0 || strcmp(valid, ".") == 0) {
    g_free(valid);
    valid = g_strdup("share");
  }
  if (strlen(valid) > SHARESET_NAME_MAX - 4) {
    char *end = g_utf8_find_prev_char(valid, valid + SHARESET_NAME_MAX - 4 + 1);
    *end = '\0';
  }
  char *name = g_strdup(valid);
  for (unsigned n = 2; name_taken(set, name); n++) {
    g_free(name);
    name = g_strdup_printf("%s-%u", valid, n);
  }
  g_free(valid);
  return name;
}

/* Writes the added folders to STATE_DIR/SHARESET_FILE (0600, atomically). */
static gboolean save_list(ShareSet *set, GError **error)
{
  GKeyFile *kf = g_key_file_new();
  g_key_file_set_comment(kf, NULL, NULL,
                         " Folders added with `canopy-leaf share add`, kept by the leaf daemon.\n"
                         " The --share folder is not listed here.",
                         NULL);
  unsigned n = 0;
  for (guint i = 0; i < set->folders->len; i++) {
    const Folder *f = g_ptr_array_index(set->folders, i);
    if (f->fixed)
      continue;
    gchar *group = g_strdup_printf("share %u", n++);
    g_key_file_set_string(kf, group, "name", f->name);
    g_key_file_set_string(kf, group, "path", f->root);
    g_free(group);
  }
  gsize len;
  gchar *text = g_key_file_to_data(kf, &len, NULL);
  gboolean ok = g_file_set_contents_full(set->list_path, text, (gssize)len,
                                         G_FILE_SET_CONTENTS_CONSISTENT, 0600, error);
  g_free(text);
  g_key_file_free(kf);
  return ok;
}

/* Why root cannot be shared next to the folders already there, or NULL. */
static char *refuse(const ShareSet *set, const char *root)
{
  char *state = canonical(set->state_dir);
  char *why = NULL;
  if (state && strcmp(root, state) == 0)
    why = g_strdup("it is the leaf's state directory, which holds its secret key");
  g_free(state);
  for (guint i = 0; i < set->folders->len && !why; i++) {
    const Folder *f = g_ptr_array_index(set->folders, i);
    const char *as = f->fixed ? "the --share folder" : f->name;
    if (strcmp(root, f->root) == 0)
      why = g_strdup_printf("it is shared already (%s)", as);
    else if (path_within(root, f->root))
      why = g_strdup_printf("it is inside %s, which is shared already (%s)", f->root, as);
    else if (path_within(f->root, root))
      why = g_strdup_printf("it holds %s, which is shared already (%s); remove that first", f->root,
                            as);
  }
  if (!why && set->folders->len >= SHARESET_MAX)
    why = g_strdup_printf("a leaf shares at most %d folders", SHARESET_MAX);
  return why;
}

gboolean shareset_add_fixed(ShareSet *set, const char *dir, GError **error)
{
  char *root = canonical(dir);
  if (!root || !g_file_test(root, G_FILE_TEST_IS_DIR)) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOTDIR, "share %s is not a directory%s%s", dir,
                root ? "" : ": ", root ? "" : g_strerror(errno));
    g_free(root);
    return FALSE;
  }
  char *why = refuse(set, root);
  if (why) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "share %s: %s", root, why);
    g_free(why);
    g_free(root);
    return FALSE;
  }
  g_ptr_array_insert(set->folders, 0, folder_new(set, "", root, TRUE));
  g_free(root);
  return TRUE;
}

void shareset_load(ShareSet *set)
{
  GKeyFile *kf = g_key_file_new();
  GError *err = NULL;
  if (!g_key_file_load_from_file(kf, set->list_path, G_KEY_FILE_NONE, &err)) {
    if (!g_error_matches(err, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      g_warning("%s: %s; sharing only the --share folder", set->list_path, err->message);
    g_error_free(err);
    g_key_file_free(kf);
    return;
  }
  gchar **groups = g_key_file_get_groups(kf, NULL);
  for (gchar **g = groups; *g; g++) {
    gchar *name = g_key_file_get_string(kf, *g, "name", NULL);
    gchar *path = g_key_file_get_string(kf, *g, "path", NULL);
    /* Resolved again: a link may have moved. A folder that is gone keeps
     * its listed path and waits for it to come back. */
    char *root = path ? canonical(path) : NULL;
    if (!root && path)
      root = g_strdup(path);
    char *why = NULL;
    if (!name || !root || !name[0] || strchr(name, '/') || !g_utf8_validate(name, -1, NULL) ||
        strlen(name) > SHARESET_NAME_MAX || !g_path_is_absolute(root))
      why = g_strdup("needs a name (no '/') and an absolute path");
    else if (folder_named(set, name))
      why = g_strdup_printf("another shared folder is named %s", name);
    else
      why = refuse(set, root);
    if (why) {
      g_warning("%s: [%s]: not sharing %s: %s", set->list_path, *g, root ? root : "?", why);
    } else {
      g_ptr_array_add(set->folders, folder_new(set, name, root, FALSE));
    }
    g_free(why);
    g_free(root);
    g_free(name);
    g_free(path);
  }
  g_strfreev(groups);
  g_key_file_free(kf);
}

/* --- scans in the worker thread ------------------------------------------------------ */

static void pump(ShareSet *set);

/* In the worker: the latest progress, for the main thread to pick up. */
static void job_progress(const ShareProgress *p, void *ud)
{
  Job *j = ud;
  g_mutex_lock(&j->lock);
  j->latest = *p;
  g_strlcpy(j->file, p->relpath ? p->relpath : "", sizeof j->file);
  j->latest.relpath = NULL;
  j->fresh = TRUE;
  g_mutex_unlock(&j->lock);
}

static gboolean on_progress_tick(gpointer ud)
{
  ShareSet *set = ud;
  Job *j = set->running;
  if (!j || !j->progress)
    return G_SOURCE_CONTINUE;
  ShareProgress p;
  char file[sizeof j->file];
  g_mutex_lock(&j->lock);
  gboolean fresh = j->fresh;
  j->fresh = FALSE;
  p = j->latest;
  memcpy(file, j->file, sizeof file);
  g_mutex_unlock(&j->lock);
  if (fresh) {
    p.relpath = file[0] ? file : NULL;
    j->progress(&p, j->ud);
  }
  return G_SOURCE_CONTINUE;
}

static gboolean on_job_finished(gpointer ud);

static gpointer job_thread(gpointer ud)
{
  Job *j = ud;
  if (j->forget_root) {
    size_t n = hashcache_forget(j->set->cache, j->forget_root);
    g_debug("hash cache: forgot %zu file(s) of %s", n, j->forget_root);
    j->ok = TRUE;
  } else {
    share_set_progress(j->f->share, job_progress, j);
    j->ok = share_scan(j->f->share, &j->changed, &j->error);
    share_set_progress(j->f->share, NULL, NULL);
  }
  /* The main thread takes it from here. The source is kept (ref) so that
   * shareset_free can destroy it after joining this thread. */
  GSource *src = g_idle_source_new();
  g_source_set_callback(src, on_job_finished, j, NULL);
  j->finished = src;
  g_source_attach(src, j->set->ctx);
  return NULL;
}

static void job_done(Job *j, const ShareInfo *info, const char *error)
{
  ShareSetDoneFn done = j->done;
  j->done = NULL;
  if (done)
    done(info, error, j->ud);
}

static gboolean on_job_finished(gpointer ud)
{
  Job *j = ud;
  ShareSet *set = j->set;
  g_thread_join(j->thread);
  set->running = NULL;
  timer_off(&set->tick);
  Folder *f = j->f;
  gboolean changed = FALSE;
  if (f) {
    f->queued = FALSE;
    if (f->removed) {
      job_done(j, NULL, "the folder was removed from the shares");
    } else {
      /* After a failed scan nothing of the folder is published. */
      gboolean had_error = f->error != NULL;
      char *old_error = f->error;
      f->error = NULL;
      if (j->ok) {
        share_scan_stats(f->share, &f->last);
        if (j->changed || !f->scanned || had_error) {
          publish_folder(f);
          changed = TRUE;
        }
        f->scanned = TRUE;
        if (f->last.hashed || j->changed)
          g_message("%s%s%s: %u file%s shared (%zu hashed, %zu from the hash cache)", f->root,
                    f->fixed ? "" : " as ", f->name, f->published->len,
                    f->published->len == 1 ? "" : "s", f->last.hashed, f->last.from_cache);
      } else if (!g_error_matches(j->error, G_FILE_ERROR, G_FILE_ERROR_INTR)) {
        f->error = g_strdup(j->error->message);
        /* Once per new error, not at every rescan of a missing folder. */
        if (!old_error || strcmp(old_error, f->error) != 0)
          g_warning("%s", j->error->message);
        /* A folder that went away (unplugged disk) can serve nothing. */
        if (f->published->len) {
          unpublish_folder(f);
          changed = TRUE;
        }
      }
      g_free(old_error);
      if (changed)
        merge(set);
      if (j->done) {
        ShareInfo info;
        guint i;
        g_ptr_array_find(set->folders, f, &i);
        shareset_info(set, i, &info);
        job_done(j, j->ok ? &info : NULL, j->ok ? NULL : j->error->message);
      }
    }
  }
  job_free(j);
  if (changed && set->changed)
    set->changed(set->ud);
  pump(set);
  return G_SOURCE_REMOVE;
}

/* Starts the next waiting job, if none is running. */
static void pump(ShareSet *set)
{
  while (!set->running && !g_queue_is_empty(&set->queue)) {
    Job *j = g_queue_pop_head(&set->queue);
    if (j->f && j->f->removed) {
      j->f->queued = FALSE;
      job_done(j, NULL, "the folder was removed from the shares");
      job_free(j);
      continue;
    }
    set->running = j;
    if (j->progress)
      timer_every(&set->tick, set->ctx, SHARESET_PROGRESS_MS, on_progress_tick, set);
    j->thread = g_thread_new("canopy-scan", job_thread, j);
  }
}

static Job *job_new(ShareSet *set, Folder *f)
{
  Job *j = g_new0(Job, 1);
  j->set = set;
  g_mutex_init(&j->lock);
  if (f) {
    f->refs++;
    f->queued = TRUE;
    j->f = f;
  }
  return j;
}

void shareset_rescan(ShareSet *set)
{
  for (guint i = 0; i < set->folders->len; i++) {
    Folder *f = g_ptr_array_index(set->folders, i);
    if (!f->queued)
      g_queue_push_tail(&set->queue, job_new(set, f));
  }
  pump(set);
}

gboolean shareset_scan_now(ShareSet *set, GError **error)
{
  g_return_val_if_fail(!set->running, FALSE);
  gboolean ok = TRUE;
  for (guint i = 0; i < set->folders->len; i++) {
    Folder *f = g_ptr_array_index(set->folders, i);
    GError *err = NULL;
    g_clear_pointer(&f->error, g_free);
    if (share_scan(f->share, NULL, &err)) {
      share_scan_stats(f->share, &f->last);
      publish_folder(f);
      f->scanned = TRUE;
    } else if (f->fixed) {
      g_propagate_error(error, err);
      ok = FALSE;
      break;
    } else {
      g_warning("%s", err->message);
      f->error = g_strdup(err->message);
      g_error_free(err);
    }
  }
  merge(set);
  return ok;
}

gboolean shareset_add(ShareSet *set, const char *dir, ShareSetProgressFn progress,
                      ShareSetDoneFn done, void *ud, GError **error)
{
  char *root = canonical(dir);
  if (!root) {
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno), "cannot share %s: %s", dir,
                g_strerror(errno));
    return FALSE;
  }
  if (!g_file_test(root, G_FILE_TEST_IS_DIR)) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOTDIR, "cannot share %s: not a directory", dir);
    g_free(root);
    return FALSE;
  }
  char *why = refuse(set, root);
  if (why) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_EXIST, "cannot share %s: %s", root, why);
    g_free(why);
    g_free(root);
    return FALSE;
  }
  char *name = pick_name(set, root);
  Folder *f = folder_new(set, name, root, FALSE);
  g_ptr_array_add(set->folders, f);
  GError *err = NULL;
  if (!save_list(set, &err)) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_FAILED, "cannot share %s: %s", dir, err->message);
    g_error_free(err);
    g_ptr_array_remove(set->folders, f); /* frees it */
    g_free(name);
    g_free(root);
    return FALSE;
  }
  g_message("sharing %s as %s", root, name);
  Job *j = job_new(set, f);
  j->progress = progress;
  j->done = done;
  j->ud = ud;
  g_queue_push_tail(&set->queue, j);
  g_free(name);
  g_free(root);
  pump(set);
  return TRUE;
}

gboolean shareset_remove(ShareSet *set, guint i, GError **error)
{
  Folder *f = g_ptr_array_index(set->folders, i);
  if (f->fixed) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_PERM,
                "%s is the --share folder (command line or config file): change that and "
                "restart the leaf instead",
                f->root);
    return FALSE;
  }
  f->removed = TRUE;
  if (f->queued)
    share_cancel(f->share); /* the job lets go of it when it stops */
  g_ptr_array_steal_index(set->folders, i);
  GError *err = NULL;
  if (!save_list(set, &err)) {
    /* Not listed any more in this run all the same: the files are gone
     * from the manifest; the next start shares it again. */
    g_warning("%s: %s", set->list_path, err->message);
    g_error_free(err);
  }
  g_message("no longer sharing %s (%s, %u files)", f->root, f->name, f->published->len);
  Job *j = job_new(set, NULL);
  j->forget_root = g_strdup(f->root);
  g_queue_push_tail(&set->queue, j);
  emit_changed(set); /* the merged manifest lets go of f's names */
  folder_unref(f);
  pump(set);
  return TRUE;
}
