/* hashcache.c - the hash cache: an SQLite table of content ids by file.
 *
 * Layout (HASHCACHE_SCHEMA 3):
 *   files(root, path, dev, ino, size, mtime_ns, ctime_ns, cid, leaves)
 *   key (root, path, dev, ino)
 * leaves is the file's chunk hashes (32 bytes a chunk) or NULL: what a leaf
 * serves as the file's tree without reading the file again.
 * Unsigned stat fields are stored as the int64 with the same bits. A scan
 * covers one root (hashcache_begin): every statement binds it as ?1.
 *
 * Pruning needs to know which rows a scan saw. Rewriting a "seen" column in
 * every row would rewrite the whole database on every rescan, so the keys
 * seen go into a temp table held in memory instead, and the prune deletes the
 * rows missing from it. Stores are upserts that leave an unchanged row alone,
 * so a rescan where nothing changed writes nothing to disk.
 *
 * The database is WAL with synchronous=NORMAL: a power cut can lose the last
 * scan's commit, never corrupt the file, and a lost commit only costs a
 * re-hash.
 */
#include "hashcache.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Another process holding the write lock (a second leaf on the same state
 * dir) is waited for this long, then the scan goes on without the cache. */
#define BUSY_TIMEOUT_MS 2000
/* A reader runs on the main loop: never wait long (WAL readers rarely do). */
#define READER_BUSY_TIMEOUT_MS 50

struct HashCache {
  char *path;
  sqlite3 *db; /* NULL once the database proved unusable and could not be replaced */
  sqlite3_stmt *lookup, *store, *seen, *prune, *unsee;
  sqlite3_stmt *tree; /* reader only (hashcache_open_reader) */
  char *root;         /* of the current scan */
  int failed;         /* first SQLite error of the current scan, 0 if none */
  size_t pruned;
};

static const char schema_sql[] = "CREATE TABLE files ("
                                 " root TEXT NOT NULL,"
                                 " path TEXT NOT NULL,"
                                 " dev INTEGER NOT NULL,"
                                 " ino INTEGER NOT NULL,"
                                 " size INTEGER NOT NULL,"
                                 " mtime_ns INTEGER NOT NULL,"
                                 " ctime_ns INTEGER NOT NULL,"
                                 " cid BLOB NOT NULL CHECK (length(cid) = 32),"
                                 " leaves BLOB CHECK (length(leaves) % 32 = 0),"
                                 " PRIMARY KEY (root, path, dev, ino)"
                                 ") WITHOUT ROWID;"
                                 "PRAGMA user_version = 3;";

/* A row without leaves is a miss: the scan hashes the file again, in its
 * thread, instead of the first peer asking for the tree making the server
 * do it on the main loop. */
static const char lookup_sql[] = "SELECT cid FROM files WHERE root = ?1 AND path = ?2 AND dev = ?3"
                                 " AND ino = ?4 AND size = ?5 AND mtime_ns = ?6 AND ctime_ns = ?7"
                                 " AND leaves IS NOT NULL";

/* Leaves given replace the row's; none given keep them while the id stays
 * the same (a store from memory, hashcache_store's NULL). */
static const char store_sql[] =
    "INSERT INTO files (root, path, dev, ino, size, mtime_ns, ctime_ns, cid, leaves)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    " ON CONFLICT (root, path, dev, ino) DO UPDATE SET size = excluded.size,"
    " mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, cid = excluded.cid,"
    " leaves = CASE WHEN excluded.leaves IS NOT NULL THEN excluded.leaves"
    " WHEN cid = excluded.cid THEN leaves END"
    " WHERE size != excluded.size OR mtime_ns != excluded.mtime_ns"
    " OR ctime_ns != excluded.ctime_ns OR cid != excluded.cid"
    " OR (leaves IS NULL AND excluded.leaves IS NOT NULL)";

static const char tree_sql[] = "SELECT leaves FROM files WHERE root = ?1 AND path = ?2 AND dev = ?3"
                               " AND ino = ?4 AND size = ?5 AND mtime_ns = ?6 AND ctime_ns = ?7"
                               " AND cid = ?8 AND leaves IS NOT NULL";

/* temp.seen holds the current root's keys only (emptied by every begin), so
 * it leaves the root out; ?1 is bound and unused to keep the numbering. */
static const char seen_sql[] =
    "INSERT OR IGNORE INTO temp.seen (path, dev, ino) VALUES (?2, ?3, ?4)";

static const char prune_sql[] = "DELETE FROM main.files WHERE root = ?1 AND NOT EXISTS"
                                " (SELECT 1 FROM temp.seen s WHERE s.path = files.path"
                                " AND s.dev = files.dev AND s.ino = files.ino)";

static const char forget_sql[] = "DELETE FROM main.files WHERE root = ?1";

static const char unsee_sql[] = "DELETE FROM temp.seen";

/* Binds ?1-?4, a row's key: root, path, dev, ino. */
static void bind_key(sqlite3_stmt *st, const char *root, const HashCacheKey *k)
{
  /* SQLITE_STATIC: the statement is reset before k goes away, and root (the
   * caller's, or c->root until the next begin) outlives it too. */
  sqlite3_bind_text(st, 1, root ? root : "", -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, k->relpath, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)k->dev);
  sqlite3_bind_int64(st, 4, (sqlite3_int64)k->ino);
}

/* Binds ?1-?7: the key and the version (size, mtime, ctime). */
static void bind_version(sqlite3_stmt *st, const char *root, const HashCacheKey *k)
{
  bind_key(st, root, k);
  sqlite3_bind_int64(st, 5, (sqlite3_int64)k->size);
  sqlite3_bind_int64(st, 6, k->mtime_ns);
  sqlite3_bind_int64(st, 7, k->ctime_ns);
}

HashCacheKey hashcache_key_of_stat(const char *relpath, const struct stat *st)
{
  return (HashCacheKey){.relpath = relpath,
                        .dev = (uint64_t)st->st_dev,
                        .ino = (uint64_t)st->st_ino,
                        .size = (uint64_t)st->st_size,
                        .mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
                        .ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec};
}

typedef enum {
  OPEN_OK,
  OPEN_REBUILD, /* another schema version: delete and recreate */
  OPEN_REPLACE, /* corrupt or unreadable: delete and recreate */
  OPEN_GIVE_UP, /* no such dir, busy or out of memory: leave the file alone */
} OpenResult;

static void disconnect(HashCache *c)
{
  sqlite3_finalize(c->lookup);
  sqlite3_finalize(c->store);
  sqlite3_finalize(c->seen);
  sqlite3_finalize(c->prune);
  sqlite3_finalize(c->unsee);
  sqlite3_finalize(c->tree);
  c->lookup = c->store = c->seen = c->prune = c->unsee = c->tree = NULL;
  if (c->db)
    sqlite3_close(c->db); /* all statements are finalized: never SQLITE_BUSY */
  c->db = NULL;
}

static OpenResult classify(int rc)
{
  switch (rc & 0xff) {
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
  case SQLITE_NOMEM:
    return OPEN_GIVE_UP;
  default:
    return OPEN_REPLACE;
  }
}

/* Creates the file 0600 before SQLite sees it: SQLite would create it 0644
 * (less the umask), and gives its -wal and -shm files the database's mode. */
static OpenResult precreate(const char *path, char **why)
{
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
  if (fd < 0) {
    int e = errno;
    *why = g_strdup_printf("cannot open: %s", g_strerror(e));
    return e == ENOENT || e == ENOTDIR ? OPEN_GIVE_UP : OPEN_REPLACE; /* no state dir */
  }
  struct stat st;
  OpenResult r = OPEN_OK;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *why = g_strdup("not a regular file");
    r = OPEN_REPLACE;
  } else if ((st.st_mode & 0077) && fchmod(fd, 0600) != 0) {
    *why = g_strdup_printf("cannot make it private: %s", g_strerror(errno));
    r = OPEN_REPLACE;
  }
  close(fd);
  return r;
}

static int exec(HashCache *c, const char *sql)
{
  return sqlite3_exec(c->db, sql, NULL, NULL, NULL);
}

/* One integer from a one-row query; -1 on error (*rc says which). */
static int64_t query_int(HashCache *c, const char *sql, int *rc)
{
  sqlite3_stmt *st = NULL;
  int64_t v = -1;
  *rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL);
  if (*rc == SQLITE_OK) {
    *rc = sqlite3_step(st);
    if (*rc == SQLITE_ROW) {
      v = sqlite3_column_int64(st, 0);
      *rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(st);
  return v;
}

static OpenResult connect_db(HashCache *c, char **why)
{
  OpenResult r = precreate(c->path, why);
  if (r != OPEN_OK)
    return r;
  int rc = sqlite3_open_v2(
      c->path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK)
    goto fail;
  sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
  /* The first read of the header: a file that is not a database fails here
   * with SQLITE_NOTADB. A filesystem without shared memory stays in rollback
   * mode, which works too. */
  if ((rc = exec(c, "PRAGMA journal_mode = WAL")) != SQLITE_OK ||
      (rc = exec(c, "PRAGMA synchronous = NORMAL")) != SQLITE_OK ||
      (rc = exec(c, "PRAGMA temp_store = MEMORY")) != SQLITE_OK)
    goto fail;
  int64_t version = query_int(c, "PRAGMA user_version", &rc);
  if (rc != SQLITE_OK)
    goto fail;
  if (version != HASHCACHE_SCHEMA) {
    int64_t tables = query_int(c, "SELECT count(*) FROM sqlite_schema", &rc);
    if (rc != SQLITE_OK)
      goto fail;
    if (version != 0 || tables != 0) {
      *why = g_strdup_printf("schema version %" G_GINT64_FORMAT ", this leaf uses %d", version,
                             HASHCACHE_SCHEMA);
      return OPEN_REBUILD;
    }
    if ((rc = exec(c, schema_sql)) != SQLITE_OK)
      goto fail;
  }
  if ((rc = exec(c, "CREATE TEMP TABLE seen (path TEXT NOT NULL, dev INTEGER NOT NULL,"
                    " ino INTEGER NOT NULL, PRIMARY KEY (path, dev, ino)) WITHOUT ROWID")) !=
          SQLITE_OK ||
      (rc = sqlite3_prepare_v2(c->db, lookup_sql, -1, &c->lookup, NULL)) != SQLITE_OK ||
      (rc = sqlite3_prepare_v2(c->db, store_sql, -1, &c->store, NULL)) != SQLITE_OK ||
      (rc = sqlite3_prepare_v2(c->db, seen_sql, -1, &c->seen, NULL)) != SQLITE_OK ||
      (rc = sqlite3_prepare_v2(c->db, prune_sql, -1, &c->prune, NULL)) != SQLITE_OK ||
      (rc = sqlite3_prepare_v2(c->db, unsee_sql, -1, &c->unsee, NULL)) != SQLITE_OK)
    goto fail;
  return OPEN_OK;
fail:
  *why = g_strdup(c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
  return classify(rc);
}

static void remove_files(const char *path)
{
  static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
  for (size_t i = 0; i < G_N_ELEMENTS(suffixes); i++) {
    gchar *p = g_strconcat(path, suffixes[i], NULL);
    if (g_remove(p) != 0 && errno != ENOENT)
      g_warning("hash cache: cannot remove %s: %s", p, g_strerror(errno));
    g_free(p);
  }
}

/* Connects, replacing the database once if it is unusable. */
static bool connect_or_replace(HashCache *c)
{
  char *why = NULL;
  OpenResult r = connect_db(c, &why);
  if (r == OPEN_REBUILD)
    g_message("hash cache %s: %s; rebuilding it (shared files will be hashed again)", c->path, why);
  else if (r == OPEN_REPLACE)
    g_warning("hash cache %s: %s; starting a new one (shared files will be hashed again)", c->path,
              why);
  if (r == OPEN_REBUILD || r == OPEN_REPLACE) {
    g_clear_pointer(&why, g_free);
    disconnect(c);
    remove_files(c->path);
    r = connect_db(c, &why);
  }
  if (r != OPEN_OK) {
    g_warning("hash cache %s: %s; going on without it", c->path, why);
    disconnect(c);
  }
  g_free(why);
  return r == OPEN_OK;
}

HashCache *hashcache_open(const char *state_dir)
{
  HashCache *c = g_new0(HashCache, 1);
  c->path = g_build_filename(state_dir, HASHCACHE_FILE, NULL);
  if (!connect_or_replace(c)) {
    hashcache_close(c);
    return NULL;
  }
  return c;
}

HashCache *hashcache_open_reader(const char *state_dir)
{
  HashCache *c = g_new0(HashCache, 1);
  c->path = g_build_filename(state_dir, HASHCACHE_FILE, NULL);
  int rc = sqlite3_open_v2(c->path, &c->db,
                           SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(c->db, READER_BUSY_TIMEOUT_MS);
    int64_t version = query_int(c, "PRAGMA user_version", &rc);
    if (rc == SQLITE_OK && version != HASHCACHE_SCHEMA)
      rc = SQLITE_SCHEMA; /* the scans rebuild it; until then, no trees */
  }
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(c->db, tree_sql, -1, &c->tree, NULL);
  if (rc != SQLITE_OK) {
    g_debug("hash cache %s: no trees from it: %s", c->path,
            c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    hashcache_close(c);
    return NULL;
  }
  return c;
}

uint8_t *hashcache_tree(HashCache *c, const char *root, const HashCacheKey *k,
                        const uint8_t cid[32], size_t *nleaves)
{
  *nleaves = 0;
  if (!c || !c->db || !c->tree)
    return NULL;
  sqlite3_stmt *st = c->tree;
  bind_version(st, root, k);
  sqlite3_bind_blob(st, 8, cid, 32, SQLITE_STATIC);
  uint8_t *out = NULL;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    int len = sqlite3_column_bytes(st, 0);
    if (len > 0 && len % 32 == 0) {
      out = g_memdup2(sqlite3_column_blob(st, 0), (gsize)len);
      *nleaves = (size_t)len / 32;
    }
  } else if (rc != SQLITE_DONE) {
    g_debug("hash cache %s: tree lookup: %s", c->path, sqlite3_errmsg(c->db));
  }
  sqlite3_reset(st);
  return out;
}

void hashcache_close(HashCache *c)
{
  if (!c)
    return;
  disconnect(c); /* the last connection checkpoints and removes the WAL */
  g_free(c->path);
  g_free(c->root);
  g_free(c);
}

const char *hashcache_path(const HashCache *c)
{
  return c->path;
}

static bool usable(const HashCache *c)
{
  return c && c->db && !c->failed;
}

/* Records the scan's first error; the rest of the scan skips the cache. */
static void fail(HashCache *c, int rc)
{
  if (c->failed)
    return;
  c->failed = rc;
  g_warning("hash cache %s: %s; this scan goes on without it", c->path, sqlite3_errmsg(c->db));
}

/* Runs a statement that returns no rows, then resets it. */
static void run(HashCache *c, sqlite3_stmt *st)
{
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  if (rc != SQLITE_DONE)
    fail(c, rc);
}

static void mark_seen(HashCache *c, const HashCacheKey *k)
{
  bind_key(c->seen, c->root, k);
  run(c, c->seen);
}

void hashcache_begin(HashCache *c, const char *root)
{
  if (!c)
    return;
  g_free(c->root);
  c->root = g_strdup(root ? root : "");
  if (!c->db)
    return;
  c->failed = 0;
  int rc = exec(c, "BEGIN IMMEDIATE");
  if (rc != SQLITE_OK) {
    fail(c, rc);
    return;
  }
  run(c, c->unsee);
}

bool hashcache_lookup(HashCache *c, const HashCacheKey *k, uint8_t cid[32])
{
  if (!usable(c))
    return false;
  sqlite3_stmt *st = c->lookup;
  bind_version(st, c->root, k);
  bool hit = false;
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 32) {
    memcpy(cid, sqlite3_column_blob(st, 0), 32);
    hit = true;
  } else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    fail(c, rc);
  }
  sqlite3_reset(st);
  if (hit)
    mark_seen(c, k);
  return hit && !c->failed;
}

bool hashcache_store(HashCache *c, const HashCacheKey *k, const uint8_t cid[32],
                     const uint8_t *leaves, size_t nleaves)
{
  if (!usable(c) || !c->store)
    return false;
  sqlite3_stmt *st = c->store;
  bind_version(st, c->root, k);
  sqlite3_bind_blob(st, 8, cid, 32, SQLITE_STATIC);
  /* Too large a blob (SQLITE_TOOBIG, past ~30 million chunks) is stored
   * without: the file is served by hashing it. */
  bool tree = leaves && nleaves > 0 && nleaves <= INT_MAX / 32 &&
              sqlite3_bind_blob(st, 9, leaves, (int)(nleaves * 32), SQLITE_STATIC) == SQLITE_OK;
  if (!tree)
    sqlite3_bind_null(st, 9);
  run(c, st);
  if (!c->failed)
    mark_seen(c, k);
  return tree && !c->failed;
}

bool hashcache_ok(const HashCache *c)
{
  return usable(c);
}

void hashcache_commit(HashCache *c)
{
  if (!usable(c))
    return;
  int rc = exec(c, "COMMIT");
  if (rc == SQLITE_OK)
    rc = exec(c, "BEGIN IMMEDIATE");
  if (rc != SQLITE_OK)
    fail(c, rc);
}

void hashcache_keep(HashCache *c, const HashCacheKey *k)
{
  if (usable(c))
    mark_seen(c, k);
}

bool hashcache_end(HashCache *c, bool prune)
{
  if (!c || !c->db)
    return false;
  if (!c->failed && prune) {
    sqlite3_bind_text(c->prune, 1, c->root ? c->root : "", -1, SQLITE_STATIC);
    run(c, c->prune);
    if (!c->failed)
      c->pruned = (size_t)sqlite3_changes(c->db);
  }
  if (!c->failed) {
    int rc = exec(c, "COMMIT");
    if (rc != SQLITE_OK)
      fail(c, rc);
  }
  if (!c->failed)
    return true;
  if (!sqlite3_get_autocommit(c->db))
    exec(c, "ROLLBACK");
  int code = c->failed & 0xff;
  if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) {
    disconnect(c);
    remove_files(c->path);
    if (connect_or_replace(c))
      g_message("hash cache %s: replaced by an empty one", c->path);
  }
  return false;
}

size_t hashcache_last_pruned(const HashCache *c)
{
  return c ? c->pruned : 0;
}

size_t hashcache_forget(HashCache *c, const char *root)
{
  if (!c || !c->db)
    return 0;
  sqlite3_stmt *st = NULL;
  size_t n = 0;
  int rc = sqlite3_prepare_v2(c->db, forget_sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, root, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
      n = (size_t)sqlite3_changes(c->db);
      rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_OK)
    g_warning("hash cache %s: cannot forget %s: %s", c->path, root, sqlite3_errmsg(c->db));
  return n;
}
