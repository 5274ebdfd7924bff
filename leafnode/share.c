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
#include <stdio.h>
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
  gboolean racy; /* hashed too close to a write: the next scan hashes it again */
  uint8_t cid[32];
} Cached;

struct Share {
  char *root;
  GHashTable *cache; /* relpath -> Cached*; rebuilt by every scan */
  GArray *entries;   /* LeafEntry */
  GArray *excluded;  /* dev_t/ino_t pairs of directories never walked */
  HashCache *hashcache;
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
  if (s->hashcache != cache)
    hashcache_close(s->hashcache);
  s->hashcache = cache;
  s->sync_cache = cache && g_hash_table_size(s->cache) > 0;
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

static HashCacheKey key_of_stat(const char *rel, const GStatBuf *st)
{
  return (HashCacheKey){.relpath = rel,
                        .dev = (uint64_t)st->st_dev,
                        .ino = (uint64_t)st->st_ino,
                        .size = (uint64_t)st->st_size,
                        .mtime_ns = ts_ns(&st->st_mtim),
                        .ctime_ns = ts_ns(&st->st_ctim)};
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

static void add_file(Walk *w, const char *rel, const char *full, const GStatBuf *st)
{
  Share *s = w->s;
  size_t len = strlen(rel);
  if (len > WIRE_MAX_NAME || !wire_utf8_ok(rel, len)) {
    g_warning("not sharing %s: name is not UTF-8 or longer than %d bytes", full, WIRE_MAX_NAME);
    s->stats.skipped++;
    return;
  }
  HashCacheKey k = key_of_stat(rel, st);
  Cached *old = g_hash_table_lookup(s->cache, rel);
  if (old && cached_matches(old, &k)) {
    if (s->sync_cache)
      hashcache_store(s->hashcache, &k, old->cid);
    else
      hashcache_keep(s->hashcache, &k);
    publish(w, rel, g_memdup2(old, sizeof *old));
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
  while ((name = g_dir_read_name(d))) {
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
 * (the walk's lstat may be stale by now). FALSE with a reason in err. */
static gboolean hash_file(Walk *w, const Pending *p, Cached *c, uint8_t *buf, char *err,
                          size_t errlen)
{
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
  uint64_t planned = (uint64_t)p->st.st_size, base = w->progress.bytes_done, got = 0;
  for (;;) {
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
  HashCacheKey k = key_of_stat(p->rel, &before);
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
  for (guint i = 0; i < w->pending->len; i++) {
    const Pending *p = &g_array_index(w->pending, Pending, i);
    Cached *c = g_new0(Cached, 1);
    char err[256];
    if (hash_file(w, p, c, buf, err, sizeof err)) {
      s->stats.hashed++;
      s->stats.bytes_hashed += c->size;
      if (!c->racy) {
        HashCacheKey k = key_of_cached(p->rel, c);
        hashcache_store(s->hashcache, &k, c->cid);
      }
      publish(w, p->rel, c);
    } else {
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
  hashcache_begin(s->hashcache);
  g_hash_table_iter_init(&it, files);
  while (g_hash_table_iter_next(&it, &rel, &val)) {
    const Cached *c = val;
    if (c->racy)
      continue;
    HashCacheKey k = key_of_cached(rel, c);
    hashcache_store(s->hashcache, &k, c->cid);
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
  if (!g_file_test(s->root, G_FILE_TEST_IS_DIR)) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOTDIR, "share %s is not a directory", s->root);
    return FALSE;
  }
  Walk w = {.s = s, .next_cache = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free)};
  w.next_entries = g_array_new(FALSE, TRUE, sizeof(LeafEntry));
  g_array_set_clear_func(w.next_entries, entry_clear);
  w.pending = g_array_new(FALSE, FALSE, sizeof(Pending));
  g_array_set_clear_func(w.pending, pending_clear);
  memset(&s->stats, 0, sizeof s->stats);

  hashcache_begin(s->hashcache);
  walk_dir(&w, "");
  hash_pending(&w);
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
