/* share.c - scan a shared folder and keep content ids of its files. */
#include "share.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

#include "content.h"
#include "wire.h"

typedef struct {
  uint64_t size;
  int64_t mtime_ns;
  uint8_t cid[32];
} Cached;

struct Share {
  char *root;
  GHashTable *cache; /* relpath -> Cached*; rebuilt by every scan */
  GArray *entries;   /* LeafEntry */
  GArray *excluded;  /* dev_t/ino_t pairs of directories never walked */
  size_t last_hashed;
};

static void entry_clear(gpointer p)
{
  g_free(((LeafEntry *)p)->name);
}

Share *share_new(const char *root)
{
  Share *s = g_new0(Share, 1);
  s->root = g_strdup(root);
  s->cache = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  s->entries = g_array_new(FALSE, TRUE, sizeof(LeafEntry));
  g_array_set_clear_func(s->entries, entry_clear);
  s->excluded = g_array_new(FALSE, FALSE, sizeof(GStatBuf));
  return s;
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
  g_free(s);
}

typedef struct {
  Share *s;
  GHashTable *next_cache;
  GArray *next_entries;
  unsigned depth;
} Walk;

static void add_file(Walk *w, const char *rel, const char *full, const GStatBuf *st)
{
  size_t len = strlen(rel);
  if (len > WIRE_MAX_NAME || !wire_utf8_ok(rel, len)) {
    g_warning("not sharing %s: name is not UTF-8 or longer than %d bytes", full, WIRE_MAX_NAME);
    return;
  }
  int64_t mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
  Cached *old = g_hash_table_lookup(w->s->cache, rel);
  Cached *c = g_new0(Cached, 1);
  if (old && old->size == (uint64_t)st->st_size && old->mtime_ns == mtime_ns) {
    *c = *old;
  } else {
    char err[256];
    uint64_t size;
    if (!content_hash_file(full, c->cid, &size, err, sizeof err)) {
      g_warning("not sharing %s: %s", full, err);
      g_free(c);
      return;
    }
    c->size = size;
    c->mtime_ns = mtime_ns;
    w->s->last_hashed++;
  }
  LeafEntry e = {.name = g_strdup(rel), .size = c->size};
  memcpy(e.cid, c->cid, 32);
  g_array_append_val(w->next_entries, e);
  g_hash_table_insert(w->next_cache, g_strdup(rel), c);
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
  Walk w = {s, g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free), NULL, 0};
  w.next_entries = g_array_new(FALSE, TRUE, sizeof(LeafEntry));
  g_array_set_clear_func(w.next_entries, entry_clear);
  s->last_hashed = 0;
  walk_dir(&w, "");
  g_array_sort(w.next_entries, entry_cmp);
  if (changed)
    *changed = !same_entries(s->entries, w.next_entries);
  g_hash_table_destroy(s->cache);
  s->cache = w.next_cache;
  g_array_unref(s->entries);
  s->entries = w.next_entries;
  return TRUE;
}

const LeafEntry *share_entries(const Share *s, size_t *n)
{
  *n = s->entries->len;
  return (const LeafEntry *)(void *)s->entries->data;
}

size_t share_last_hashed(const Share *s)
{
  return s->last_hashed;
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
