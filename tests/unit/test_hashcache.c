/* test_hashcache.c - the hash cache as a restarting leaf sees it.
 *
 * Every "restart" is a fresh Share over the same folder with the cache
 * reopened from the state dir, so only the database carries hashes across.
 * The wall clock is faked far ahead so that the files the test has just
 * written are old enough to be trusted (except in the test about exactly
 * that). What the tests check is what a user would notice: how many files a
 * restart hashes again, and that the published content ids match the bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <sqlite3.h>

#include "content.h"
#include "hashcache.h"
#include "serve.h"
#include "share.h"
#include "wire.h"

#define NFILES 5
#define FAR_FUTURE_NS (G_GINT64_CONSTANT(4000000000) * 1000000000) /* year 2096 */

typedef struct {
  char *dir, *root, *state;
} Fixture;

static int64_t far_future(void *ud)
{
  return FAR_FUTURE_NS;
}

static void rm_rf(const char *path)
{
  GDir *d = g_dir_open(path, 0, NULL);
  if (d) {
    const char *name;
    while ((name = g_dir_read_name(d))) {
      gchar *p = g_build_filename(path, name, NULL);
      GStatBuf st;
      if (g_lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
        rm_rf(p);
      else
        g_unlink(p);
      g_free(p);
    }
    g_dir_close(d);
  }
  g_rmdir(path);
}

static gchar *in_root(const Fixture *fx, const char *rel)
{
  return g_build_filename(fx->root, rel, NULL);
}

static void write_file(const Fixture *fx, const char *rel, size_t size, uint8_t seed)
{
  gchar *path = in_root(fx, rel);
  gchar *dir = g_path_get_dirname(path);
  assert_int_equal(g_mkdir_with_parents(dir, 0700), 0);
  uint8_t *buf = g_malloc(size + 1);
  for (size_t i = 0; i < size; i++)
    buf[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 8));
  assert_true(g_file_set_contents(path, (const char *)buf, (gssize)size, NULL));
  g_free(buf);
  g_free(dir);
  g_free(path);
}

static struct stat stat_of(const Fixture *fx, const char *rel)
{
  gchar *path = in_root(fx, rel);
  struct stat st;
  assert_int_equal(lstat(path, &st), 0);
  g_free(path);
  return st;
}

static void set_mtime(const Fixture *fx, const char *rel, struct timespec mtime)
{
  gchar *path = in_root(fx, rel);
  struct timespec ts[2] = {mtime, mtime};
  assert_int_equal(utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), 0);
  g_free(path);
}

static int setup(void **state)
{
  Fixture *fx = g_new0(Fixture, 1);
  fx->dir = g_dir_make_tmp("test_hashcache-XXXXXX", NULL);
  assert_non_null(fx->dir);
  fx->root = g_build_filename(fx->dir, "share", NULL);
  fx->state = g_build_filename(fx->dir, "state", NULL);
  assert_int_equal(g_mkdir(fx->root, 0700), 0);
  assert_int_equal(g_mkdir(fx->state, 0700), 0);
  for (int i = 0; i < NFILES; i++) {
    gchar *rel = g_strdup_printf("%s/file%d.bin", i % 2 ? "sub" : "top", i);
    write_file(fx, rel, 1000 + (size_t)i * 3000, (uint8_t)i);
    g_free(rel);
  }
  *state = fx;
  return 0;
}

static int teardown(void **state)
{
  Fixture *fx = *state;
  rm_rf(fx->dir);
  g_free(fx->dir);
  g_free(fx->root);
  g_free(fx->state);
  g_free(fx);
  return 0;
}

static Share *share_open(const Fixture *fx)
{
  Share *s = share_new(fx->root);
  share_set_clock(s, far_future, NULL);
  share_set_cache(s, hashcache_open(fx->state));
  return s;
}

/* Every published content id is the id of the file's current bytes. */
static void assert_ids_match_files(const Fixture *fx, const Share *s)
{
  size_t n;
  const LeafEntry *e = share_entries(s, &n);
  for (size_t i = 0; i < n; i++) {
    gchar *path = in_root(fx, e[i].name);
    uint8_t cid[32];
    uint64_t size;
    char err[256];
    assert_true(content_hash_file(path, cid, &size, err, sizeof err));
    assert_int_equal(size, e[i].size);
    assert_memory_equal(cid, e[i].cid, 32);
    g_free(path);
  }
}

/* A leaf start: scans once with the cache from the state dir. */
static ShareScanStats restart(const Fixture *fx)
{
  Share *s = share_open(fx);
  GError *err = NULL;
  assert_true(share_scan(s, NULL, &err));
  ShareScanStats st;
  share_scan_stats(s, &st);
  assert_ids_match_files(fx, s);
  assert_int_equal(st.files, st.hashed + st.from_memory + st.from_cache);
  assert_int_equal(st.hashed, share_last_hashed(s));
  share_free(s);
  return st;
}

static gchar *db_path(const Fixture *fx)
{
  return g_build_filename(fx->state, HASHCACHE_FILE, NULL);
}

static int64_t db_int(const Fixture *fx, const char *sql)
{
  gchar *path = db_path(fx);
  sqlite3 *db;
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  g_free(path);
  return v;
}

static void db_exec(const Fixture *fx, const char *sql)
{
  gchar *path = db_path(fx);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  g_free(path);
}

static void test_first_scan_hashes_all(void **state)
{
  Fixture *fx = *state;
  ShareScanStats st = restart(fx);
  assert_int_equal(st.files, NFILES);
  assert_int_equal(st.hashed, NFILES);
  assert_int_equal(st.from_cache, 0);
  assert_int_equal(db_int(fx, "SELECT count(*) FROM files"), NFILES);
  assert_int_equal(db_int(fx, "PRAGMA user_version"), HASHCACHE_SCHEMA);
  gchar *path = db_path(fx);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  g_free(path);
}

static void test_second_scan_hashes_none(void **state)
{
  Fixture *fx = *state;
  restart(fx);
  ShareScanStats st = restart(fx);
  assert_int_equal(st.files, NFILES);
  assert_int_equal(st.hashed, 0);
  assert_int_equal(st.from_cache, NFILES);
  assert_int_equal(st.bytes_hashed, 0);
}

static void test_touched_mtime_rehashes_one(void **state)
{
  Fixture *fx = *state;
  restart(fx);
  struct stat sb = stat_of(fx, "top/file2.bin");
  set_mtime(fx, "top/file2.bin", (struct timespec){sb.st_mtim.tv_sec - 100, 0});
  ShareScanStats st = restart(fx);
  assert_int_equal(st.hashed, 1);
  assert_int_equal(st.from_cache, NFILES - 1);
  assert_int_equal(restart(fx).hashed, 0);
}

static void test_size_change_rehashes_one(void **state)
{
  Fixture *fx = *state;
  restart(fx);
  write_file(fx, "sub/file3.bin", 777, 99); /* replaced: new inode, new size */
  ShareScanStats st = restart(fx);
  assert_int_equal(st.hashed, 1);
  assert_int_equal(st.bytes_hashed, 777);
  assert_int_equal(st.from_cache, NFILES - 1);
  assert_int_equal(st.pruned, 1); /* the row for the old inode */
  assert_int_equal(db_int(fx, "SELECT count(*) FROM files"), NFILES);
  assert_int_equal(restart(fx).hashed, 0);
}

/* Same size, mtime put back: only the ctime tells the bytes changed. */
static void rewrite_in_place_keep_mtime(const Fixture *fx, const char *rel)
{
  struct stat old = stat_of(fx, rel);
  gchar *path = in_root(fx, rel);
  for (int tries = 0;; tries++) {
    assert_true(tries < 200);
    g_usleep(5000); /* timestamps are coarse: wait for the next tick */
    int fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    uint8_t junk[16];
    memset(junk, 0xa0 + tries, sizeof junk);
    assert_int_equal(pwrite(fd, junk, sizeof junk, 10), sizeof junk);
    close(fd);
    set_mtime(fx, rel, old.st_mtim);
    struct stat now = stat_of(fx, rel);
    assert_int_equal(now.st_size, old.st_size);
    assert_int_equal(now.st_ino, old.st_ino);
    assert_true(now.st_mtim.tv_sec == old.st_mtim.tv_sec &&
                now.st_mtim.tv_nsec == old.st_mtim.tv_nsec);
    if (now.st_ctim.tv_sec != old.st_ctim.tv_sec || now.st_ctim.tv_nsec != old.st_ctim.tv_nsec)
      break;
  }
  g_free(path);
}

static void test_ctime_change_rehashes(void **state)
{
  Fixture *fx = *state;
  restart(fx);
  rewrite_in_place_keep_mtime(fx, "top/file4.bin");
  ShareScanStats st = restart(fx); /* checks the new id matches the new bytes */
  assert_int_equal(st.hashed, 1);
  assert_int_equal(st.from_cache, NFILES - 1);

  /* The same within one run: the in-memory rescan checks ctime too. */
  Share *s = share_open(fx);
  assert_true(share_scan(s, NULL, NULL));
  rewrite_in_place_keep_mtime(fx, "top/file0.bin");
  gboolean changed = FALSE;
  assert_true(share_scan(s, &changed, NULL));
  assert_true(changed);
  share_scan_stats(s, &st);
  assert_int_equal(st.hashed, 1);
  assert_int_equal(st.from_memory, NFILES - 1);
  assert_ids_match_files(fx, s);
  share_free(s);
}

static void test_deleted_file_pruned(void **state)
{
  Fixture *fx = *state;
  restart(fx);
  gchar *path = in_root(fx, "sub/file1.bin");
  assert_int_equal(g_unlink(path), 0);
  g_free(path);
  ShareScanStats st = restart(fx);
  assert_int_equal(st.files, NFILES - 1);
  assert_int_equal(st.hashed, 0);
  assert_int_equal(st.pruned, 1);
  assert_int_equal(db_int(fx, "SELECT count(*) FROM files"), NFILES - 1);
  assert_int_equal(db_int(fx, "SELECT count(*) FROM files WHERE path = 'sub/file1.bin'"), 0);
}

static void test_garbage_database_replaced(void **state)
{
  Fixture *fx = *state;
  gchar *path = db_path(fx);
  static const char garbage[] = "this is not an SQLite database, only some text in its place\n";
  GString *big = g_string_new(NULL);
  for (int i = 0; i < 200; i++)
    g_string_append(big, garbage);
  assert_true(g_file_set_contents(path, big->str, (gssize)big->len, NULL));
  g_string_free(big, TRUE);
  ShareScanStats st = restart(fx);
  assert_int_equal(st.hashed, NFILES);
  struct stat sb;
  assert_int_equal(stat(path, &sb), 0);
  assert_int_equal(sb.st_mode & 0777, 0600);
  assert_int_equal(restart(fx).hashed, 0);
  g_free(path);
}

/* A page of the table overwritten under a valid header: found only when a
 * lookup reads it, in the middle of a scan. */
static void test_corrupt_page_replaced(void **state)
{
  Fixture *fx = *state;
  restart(fx);
  gchar *path = db_path(fx);
  int64_t page = db_int(fx, "PRAGMA page_size");
  int64_t pages = db_int(fx, "PRAGMA page_count");
  assert_true(pages >= 2);
  int fd = open(path, O_WRONLY);
  assert_true(fd >= 0);
  uint8_t *junk = g_malloc((size_t)page);
  memset(junk, 0xee, (size_t)page);
  for (int64_t p = 1; p < pages; p++)
    assert_int_equal(pwrite(fd, junk, (size_t)page, (off_t)(p * page)), page);
  close(fd);
  g_free(junk);
  ShareScanStats st = restart(fx);
  assert_int_equal(st.files, NFILES);
  assert_int_equal(st.hashed, NFILES);
  /* The ids were written again into the new database, but not the chunk
   * hashes (they are not kept in memory): one more start hashes the files
   * to have their trees, and then none. */
  assert_int_equal(restart(fx).hashed, NFILES);
  assert_int_equal(restart(fx).hashed, 0);
  g_free(path);
}

static void test_schema_mismatch_rebuilds(void **state)
{
  Fixture *fx = *state;
  restart(fx);
  db_exec(fx, "PRAGMA user_version = 99");
  assert_int_equal(restart(fx).hashed, NFILES);
  assert_int_equal(db_int(fx, "PRAGMA user_version"), HASHCACHE_SCHEMA);
  assert_int_equal(restart(fx).hashed, 0);

  /* An older layout, from before versions were kept. */
  db_exec(fx, "DROP TABLE files; CREATE TABLE files (path TEXT PRIMARY KEY, cid BLOB);"
              "INSERT INTO files VALUES ('top/file0.bin', x'00'); PRAGMA user_version = 0");
  assert_int_equal(restart(fx).hashed, NFILES);
  assert_int_equal(db_int(fx, "PRAGMA user_version"), HASHCACHE_SCHEMA);
  assert_int_equal(restart(fx).hashed, 0);
}

/* With the real clock, files written just now may still be in the tick of
 * their last write: published, but hashed again by the next scan. */
static void test_fresh_files_not_trusted(void **state)
{
  Fixture *fx = *state;
  Share *s = share_new(fx->root);
  share_set_cache(s, hashcache_open(fx->state));
  assert_true(share_scan(s, NULL, NULL));
  ShareScanStats st;
  share_scan_stats(s, &st);
  assert_int_equal(st.files, NFILES);
  assert_int_equal(st.hashed, NFILES);
  assert_true(share_scan(s, NULL, NULL));
  share_scan_stats(s, &st);
  assert_int_equal(st.hashed, NFILES);
  share_free(s);
  assert_int_equal(db_int(fx, "SELECT count(*) FROM files"), 0);
}

typedef struct {
  unsigned calls;
  ShareProgress last;
  gboolean monotonic;
} Progress;

static void on_progress(const ShareProgress *p, void *ud)
{
  Progress *pr = ud;
  if (pr->calls > 0 &&
      (p->files_done < pr->last.files_done || p->bytes_done < pr->last.bytes_done ||
       p->files_total != pr->last.files_total || p->bytes_total != pr->last.bytes_total))
    pr->monotonic = FALSE;
  if (p->bytes_done > p->bytes_total || p->files_done > p->files_total)
    pr->monotonic = FALSE;
  pr->calls++;
  pr->last = *p;
}

static void test_progress(void **state)
{
  Fixture *fx = *state;
  write_file(fx, "big.bin", 3 * 1024 * 1024 + 5, 7); /* several reads */
  restart(fx);
  write_file(fx, "top/file0.bin", 2000, 42);
  write_file(fx, "big.bin", 3 * 1024 * 1024 + 9, 8);
  Share *s = share_open(fx);
  Progress pr = {.monotonic = TRUE};
  share_set_progress(s, on_progress, &pr);
  assert_true(share_scan(s, NULL, NULL));
  assert_true(pr.monotonic);
  assert_int_equal(pr.last.files_total, 2);
  assert_int_equal(pr.last.files_done, 2);
  assert_int_equal(pr.last.bytes_total, 2000 + 3 * 1024 * 1024 + 9);
  assert_int_equal(pr.last.bytes_done, pr.last.bytes_total);
  assert_true(pr.calls >= 1 + 3 + 2); /* start, the big file's reads, each file */
  /* Nothing to hash: no calls. */
  pr.calls = 0;
  assert_true(share_scan(s, NULL, NULL));
  assert_int_equal(pr.calls, 0);
  share_free(s);
}

static void test_no_usable_state_dir(void **state)
{
  Fixture *fx = *state;
  gchar *missing = g_build_filename(fx->dir, "no", "such", "dir", NULL);
  HashCache *c = hashcache_open(missing);
  assert_null(c);
  g_free(missing);
  Share *s = share_new(fx->root);
  share_set_clock(s, far_future, NULL);
  share_set_cache(s, NULL);
  assert_true(share_scan(s, NULL, NULL));
  ShareScanStats st;
  share_scan_stats(s, &st);
  assert_int_equal(st.hashed, NFILES);
  assert_true(share_scan(s, NULL, NULL));
  share_scan_stats(s, &st);
  assert_int_equal(st.from_memory, NFILES);
  share_free(s);
  hashcache_close(NULL);
}

/* A cache attached to a share that has scanned already gets every file the
 * share knows: the next scan hashes them again, in the scan, for the chunk
 * hashes the first one did not keep anywhere; a restart then hashes none. */
static void test_cache_attached_later(void **state)
{
  Fixture *fx = *state;
  Share *s = share_new(fx->root);
  share_set_clock(s, far_future, NULL);
  assert_true(share_scan(s, NULL, NULL));
  share_set_cache(s, hashcache_open(fx->state));
  assert_true(share_scan(s, NULL, NULL));
  ShareScanStats st;
  share_scan_stats(s, &st);
  assert_int_equal(st.hashed, NFILES);
  assert_true(share_scan(s, NULL, NULL));
  share_scan_stats(s, &st);
  assert_int_equal(st.from_memory, NFILES);
  share_free(s);
  assert_int_equal(restart(fx).hashed, 0);
}

/* A leaf stopped in the middle of a long first scan keeps what was
 * committed before the stop, and only that. */
static void test_commit_survives_stop(void **state)
{
  Fixture *fx = *state;
  HashCacheKey a = {.relpath = "a", .dev = 1, .ino = 2, .size = 3, .mtime_ns = 4, .ctime_ns = 5};
  HashCacheKey b = a;
  b.relpath = "b";
  uint8_t cid[32], got[32], leaf[32] = {1};
  memset(cid, 0x5a, sizeof cid);
  HashCache *c = hashcache_open(fx->state);
  assert_non_null(c);
  hashcache_begin(c, "/r");
  assert_true(hashcache_store(c, &a, cid, leaf, 1));
  hashcache_commit(c);
  assert_true(hashcache_store(c, &b, cid, leaf, 1));
  hashcache_close(c); /* no hashcache_end: the open transaction is lost */
  c = hashcache_open(fx->state);
  hashcache_begin(c, "/elsewhere"); /* another root: the rows are not its own */
  assert_false(hashcache_lookup(c, &a, got));
  assert_true(hashcache_end(c, true));
  assert_int_equal(hashcache_last_pruned(c), 0);
  hashcache_begin(c, "/r");
  assert_true(hashcache_lookup(c, &a, got));
  assert_memory_equal(got, cid, 32);
  assert_false(hashcache_lookup(c, &b, got));
  HashCacheKey moved = a;
  moved.ino = 99; /* same path, another inode */
  assert_false(hashcache_lookup(c, &moved, got));
  assert_true(hashcache_end(c, true));
  assert_int_equal(hashcache_last_pruned(c), 0);
  hashcache_begin(c, "/r"); /* a scan that sees nothing prunes everything */
  assert_true(hashcache_end(c, true));
  assert_int_equal(hashcache_last_pruned(c), 1);
  hashcache_close(c);
}

/* --- several roots in one cache ------------------------------------------------ */

static gchar *make_tree(const Fixture *fx, const char *rel_dir, uint8_t seed)
{
  gchar *root = g_build_filename(fx->dir, rel_dir, NULL);
  for (int i = 0; i < NFILES; i++) {
    gchar *rel = g_strdup_printf("%s/file%d.bin", i % 2 ? "sub" : "top", i);
    gchar *path = g_build_filename(root, rel, NULL);
    gchar *dir = g_path_get_dirname(path);
    assert_int_equal(g_mkdir_with_parents(dir, 0700), 0);
    gchar *text = g_strdup_printf("seed %u file %d", seed, i);
    assert_true(g_file_set_contents(path, text, -1, NULL));
    g_free(text);
    g_free(dir);
    g_free(path);
    g_free(rel);
  }
  return root;
}

static ShareScanStats scan_with(const char *root, HashCache *c)
{
  Share *s = share_new(root);
  share_set_clock(s, far_future, NULL);
  share_use_cache(s, c);
  assert_true(share_scan(s, NULL, NULL));
  ShareScanStats st;
  share_scan_stats(s, &st);
  share_free(s); /* borrowed: the cache stays open */
  return st;
}

/* Two shared folders holding the same relative paths keep their own rows:
 * scanning (and pruning) one leaves the other's alone. */
static void test_two_roots_do_not_collide(void **state)
{
  Fixture *fx = *state;
  gchar *other = make_tree(fx, "other", 9);
  HashCache *c = hashcache_open(fx->state);
  assert_non_null(c);
  assert_int_equal(scan_with(fx->root, c).hashed, NFILES);
  assert_int_equal(scan_with(other, c).hashed, NFILES);
  assert_int_equal(db_int(fx, "SELECT count(*) FROM files"), 2 * NFILES);
  assert_int_equal(scan_with(fx->root, c).from_cache, NFILES);
  assert_int_equal(scan_with(other, c).from_cache, NFILES);

  gchar *gone = g_build_filename(other, "top", "file0.bin", NULL);
  assert_int_equal(g_unlink(gone), 0);
  g_free(gone);
  ShareScanStats st = scan_with(other, c);
  assert_int_equal(st.pruned, 1);
  assert_int_equal(st.from_cache, NFILES - 1);
  assert_int_equal(scan_with(fx->root, c).from_cache, NFILES);

  assert_int_equal(hashcache_forget(c, other), NFILES - 1);
  assert_int_equal(db_int(fx, "SELECT count(*) FROM files"), NFILES);
  assert_int_equal(scan_with(fx->root, c).from_cache, NFILES);
  hashcache_close(c);
  g_free(other);
}

/* --- trees: chunk hashes kept for serving ------------------------------------------ */

/* A store with leaves keeps them for exactly that version of the file; a
 * store without (from memory) keeps them while the id is the same; a new id
 * drops them. The reader sees commits while the writer is open. */
static void test_tree_rows(void **state)
{
  Fixture *fx = *state;
  HashCacheKey a = {
      .relpath = "a", .dev = 1, .ino = 2, .size = 600000, .mtime_ns = 4, .ctime_ns = 5};
  uint8_t cid[32], cid2[32], leaves[3 * 32];
  memset(cid, 0x5a, sizeof cid);
  memset(cid2, 0xa5, sizeof cid2);
  for (size_t i = 0; i < sizeof leaves; i++)
    leaves[i] = (uint8_t)i;
  assert_null(hashcache_open_reader(fx->state)); /* no database yet */
  HashCache *c = hashcache_open(fx->state);
  assert_non_null(c);
  HashCache *r = hashcache_open_reader(fx->state);
  assert_non_null(r);
  size_t n = 99;
  assert_null(hashcache_tree(r, "/r", &a, cid, &n));
  assert_int_equal(n, 0);

  hashcache_begin(c, "/r");
  hashcache_store(c, &a, cid, leaves, 3);
  assert_true(hashcache_end(c, false));
  uint8_t *got = hashcache_tree(r, "/r", &a, cid, &n);
  assert_non_null(got);
  assert_int_equal(n, 3);
  assert_memory_equal(got, leaves, sizeof leaves);
  g_free(got);
  HashCacheKey touched = a;
  touched.mtime_ns++;
  assert_null(hashcache_tree(r, "/r", &touched, cid, &n)); /* another version */
  assert_null(hashcache_tree(r, "/elsewhere", &a, cid, &n));
  assert_null(hashcache_tree(r, "/r", &a, cid2, &n));

  hashcache_begin(c, "/r");
  hashcache_store(c, &a, cid, NULL, 0); /* from memory: same id, leaves stay */
  assert_true(hashcache_end(c, false));
  got = hashcache_tree(r, "/r", &a, cid, &n);
  assert_non_null(got);
  g_free(got);
  hashcache_begin(c, "/r");
  hashcache_store(c, &a, cid2, NULL, 0); /* another id: the old leaves go */
  assert_true(hashcache_end(c, false));
  assert_null(hashcache_tree(r, "/r", &a, cid2, &n));
  assert_null(hashcache_tree(r, "/r", &a, cid, &n));
  hashcache_close(r);
  hashcache_close(c);
}

typedef struct {
  WireMsg m;
  uint8_t *raw;
  size_t len;
} Reply;

static gboolean catch_reply(const uint8_t *msg, size_t len, void *ud)
{
  Reply *r = ud;
  g_free(r->raw);
  r->raw = g_memdup2(msg, len);
  r->len = len;
  return TRUE;
}

/* Asks sv for the whole tree of cid: the hashes (g_free), or NULL when it
 * answered otherwise. */
static uint8_t *ask_tree(Server *sv, const uint8_t cid[32], uint32_t *count)
{
  WireMsg req = {.type = MSG_GET_TREE};
  memcpy(req.u.get_tree.cid, cid, 32);
  req.u.get_tree.first = 0;
  req.u.get_tree.count = 100;
  Reply r = {0};
  server_handle(sv, &req, catch_reply, &r);
  assert_non_null(r.raw);
  WireMsg m;
  assert_int_equal(wire_decode(r.raw, r.len, &m), WIRE_OK);
  uint8_t *out = NULL;
  if (m.type == MSG_TREE) {
    *count = m.u.tree.count;
    out = g_memdup2(m.u.tree.hashes, (gsize)m.u.tree.count * 32);
  }
  wire_msg_clear(&m);
  g_free(r.raw);
  return out;
}

/* The leaf hashes of a file, read and hashed here. */
static uint8_t *leaves_of(const Fixture *fx, const char *rel, uint32_t *count)
{
  gchar *path = in_root(fx, rel), *data;
  gsize len;
  assert_true(g_file_get_contents(path, &data, &len, NULL));
  uint32_t n = len == 0 ? 1 : (uint32_t)((len + CONTENT_CHUNK_SIZE - 1) / CONTENT_CHUNK_SIZE);
  uint8_t *out = g_malloc((gsize)n * 32);
  for (uint32_t i = 0; i < n; i++) {
    size_t off = (size_t)i * CONTENT_CHUNK_SIZE;
    content_leaf_hash((const uint8_t *)data + off, MIN((size_t)CONTENT_CHUNK_SIZE, len - off),
                      out + (size_t)i * 32);
  }
  *count = n;
  g_free(data);
  g_free(path);
  return out;
}

static const LeafEntry *entry_named(ShareSet *set, const char *name)
{
  size_t n;
  const LeafEntry *e = shareset_entries(set, &n);
  for (size_t i = 0; i < n; i++)
    if (strcmp(e[i].name, name) == 0)
      return &e[i];
  fail_msg("%s is not shared", name);
  return NULL;
}

/* A source serves a file's tree from what the scan stored, without reading
 * the file again; a tree the cache cannot vouch for (the file touched since,
 * the stored hashes wrong) is hashed from the file as before, and a file
 * whose bytes changed since the scan is not described at all. */
static void test_serve_trees_from_cache(void **state)
{
  Fixture *fx = *state;
  write_file(fx, "big.bin", 3 * CONTENT_CHUNK_SIZE + 1000, 42); /* 4 chunks */
  ShareSet *set = shareset_new(fx->state, g_main_context_default(), NULL, NULL);
  shareset_set_clock(set, far_future, NULL); /* the files are old enough to trust */
  assert_true(shareset_add_fixed(set, fx->root, NULL));
  assert_true(shareset_scan_now(set, NULL));
  Server *sv = server_new(set);
  server_use_tree_cache(sv, fx->state);

  const char *names[] = {"big.bin", "top/file0.bin", "sub/file1.bin"};
  for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
    uint32_t want_n, got_n;
    uint8_t *want = leaves_of(fx, names[i], &want_n);
    uint8_t *got = ask_tree(sv, entry_named(set, names[i])->cid, &got_n);
    assert_non_null(got);
    assert_int_equal(got_n, want_n);
    assert_memory_equal(got, want, (size_t)want_n * 32);
    g_free(want);
    g_free(got);
  }
  assert_int_equal(server_trees_hashed(sv), 0);

  /* Stored hashes that do not rebuild the id are not believed. */
  server_free(sv);
  db_exec(fx, "UPDATE files SET leaves = zeroblob(4 * 32) WHERE path = 'big.bin'");
  sv = server_new(set);
  server_use_tree_cache(sv, fx->state);
  uint32_t want_n, got_n;
  uint8_t *want = leaves_of(fx, "big.bin", &want_n);
  uint8_t *got = ask_tree(sv, entry_named(set, "big.bin")->cid, &got_n);
  assert_non_null(got);
  assert_memory_equal(got, want, (size_t)want_n * 32);
  assert_int_equal(server_trees_hashed(sv), 1);
  g_free(want);
  g_free(got);

  /* Rewritten in place (same size) since the scan: not this version, so
   * hashed; and as the bytes no longer make the id, not served. */
  uint8_t cid[32];
  memcpy(cid, entry_named(set, "top/file0.bin")->cid, 32);
  write_file(fx, "top/file0.bin", 1000, 77);
  assert_null(ask_tree(sv, cid, &got_n));
  assert_int_equal(server_trees_hashed(sv), 2);
  assert_null(ask_tree(sv, cid, &got_n)); /* asked again: refused without a read */
  assert_int_equal(server_trees_hashed(sv), 2);

  server_free(sv);
  shareset_free(set);
}

/* --- the set of shared folders ---------------------------------------------------- */

typedef struct {
  gboolean done;
  char *error;
  size_t files;
  unsigned progress_calls;
  unsigned changes;
} SetWatch;

static void on_set_changed(void *ud)
{
  ((SetWatch *)ud)->changes++;
}

static void on_set_progress(const ShareProgress *p, void *ud)
{
  ((SetWatch *)ud)->progress_calls++;
  assert_true(p->bytes_done <= p->bytes_total);
}

static void on_set_done(const ShareInfo *info, const char *error, void *ud)
{
  SetWatch *w = ud;
  w->done = TRUE;
  g_free(w->error);
  w->error = g_strdup(error);
  w->files = info ? info->files : 0;
}

static ShareSet *set_open(const Fixture *fx, SetWatch *w)
{
  ShareSet *set = shareset_new(fx->state, g_main_context_default(), on_set_changed, w);
  shareset_exclude(set, fx->state);
  assert_true(shareset_add_fixed(set, fx->root, NULL));
  shareset_load(set);
  assert_true(shareset_scan_now(set, NULL));
  return set;
}

static void add_and_wait(ShareSet *set, SetWatch *w, const char *dir)
{
  w->done = FALSE;
  GError *err = NULL;
  gboolean ok = shareset_add(set, dir, on_set_progress, on_set_done, w, &err);
  if (!ok)
    fail_msg("%s", err->message);
  while (!w->done)
    g_main_context_iteration(g_main_context_default(), TRUE);
  assert_null(w->error);
}

static gboolean published(const ShareSet *set, const char *name)
{
  size_t n;
  const LeafEntry *e = shareset_entries(set, &n);
  for (size_t i = 0; i < n; i++)
    if (strcmp(e[i].name, name) == 0)
      return TRUE;
  return FALSE;
}

static void test_shareset_names_and_persistence(void **state)
{
  Fixture *fx = *state;
  SetWatch w = {0};
  gchar *a = make_tree(fx, "a/Music", 1), *b = make_tree(fx, "b/Music", 2);
  gchar *top = make_tree(fx, "c/top", 3);
  ShareSet *set = set_open(fx, &w);
  add_and_wait(set, &w, a);
  assert_int_equal(w.files, NFILES);
  add_and_wait(set, &w, b);
  add_and_wait(set, &w, top);
  assert_true(w.changes >= 3);
  /* The fixed folder's files keep their names; the others are prefixed with
   * a unique name, also unlike the fixed folder's own top-level "top". */
  assert_true(published(set, "top/file0.bin"));
  assert_true(published(set, "Music/top/file0.bin"));
  assert_true(published(set, "Music-2/top/file0.bin"));
  assert_true(published(set, "top-2/sub/file1.bin"));
  size_t n;
  const LeafEntry *e = shareset_entries(set, &n);
  assert_int_equal(n, 4 * NFILES);
  /* Found by content id under its own root, by a path inside that root. */
  for (size_t i = 0; i < n; i++) {
    const char *root, *rel;
    uint64_t size;
    assert_true(shareset_find(set, e[i].cid, &root, &rel, &size));
    gchar *path = g_build_filename(root, rel, NULL);
    uint8_t cid[32];
    char why[128];
    assert_true(content_hash_file(path, cid, &size, why, sizeof why));
    assert_memory_equal(cid, e[i].cid, 32);
    g_free(path);
  }

  /* Refused: overlaps, the state dir, what is not a folder. */
  gchar *inside = g_build_filename(a, "top", NULL);
  GError *err = NULL;
  assert_false(shareset_add(set, inside, NULL, NULL, NULL, &err));
  assert_non_null(strstr(err->message, "inside"));
  g_clear_error(&err);
  assert_false(shareset_add(set, fx->dir, NULL, NULL, NULL, &err));
  assert_non_null(strstr(err->message, "holds"));
  g_clear_error(&err);
  assert_false(shareset_add(set, fx->state, NULL, NULL, NULL, &err));
  assert_non_null(strstr(err->message, "secret key"));
  g_clear_error(&err);
  assert_false(shareset_add(set, a, NULL, NULL, NULL, &err));
  assert_non_null(strstr(err->message, "shared already"));
  g_clear_error(&err);
  gchar *file = g_build_filename(a, "top", "file0.bin", NULL);
  assert_false(shareset_add(set, file, NULL, NULL, NULL, &err));
  g_clear_error(&err);
  assert_false(shareset_remove(set, 0, &err)); /* the --share folder */
  g_clear_error(&err);
  g_free(file);
  g_free(inside);

  /* A restart lists the same folders under the same names. */
  shareset_free(set);
  set = set_open(fx, &w);
  assert_int_equal(shareset_count(set), 4);
  assert_true(published(set, "Music-2/sub/file1.bin"));
  assert_int_equal(shareset_lookup(set, "Music-2"), 2);
  assert_int_equal(shareset_lookup(set, b), 2);

  /* Removed: its files leave the manifest, the list and the cache. */
  assert_true(shareset_remove(set, (guint)shareset_lookup(set, "Music"), NULL));
  assert_false(published(set, "Music/top/file0.bin"));
  assert_true(published(set, "Music-2/top/file0.bin"));
  shareset_free(set);
  set = set_open(fx, &w);
  assert_int_equal(shareset_count(set), 3);
  assert_int_equal(shareset_lookup(set, a), -1);
  shareset_free(set);
  g_free(w.error);
  g_free(a);
  g_free(b);
  g_free(top);
}

/* A folder that disappears stays listed with its error, publishes nothing,
 * and comes back with the rescan after it reappears. */
static void test_shareset_folder_comes_and_goes(void **state)
{
  Fixture *fx = *state;
  SetWatch w = {0};
  gchar *a = make_tree(fx, "disk/Photos", 4);
  gchar *moved = g_build_filename(fx->dir, "disk", "elsewhere", NULL);
  ShareSet *set = set_open(fx, &w);
  add_and_wait(set, &w, a);
  assert_true(published(set, "Photos/top/file0.bin"));
  shareset_free(set);
  assert_int_equal(g_rename(a, moved), 0);
  set = set_open(fx, &w);
  assert_int_equal(shareset_count(set), 2);
  ShareInfo info;
  shareset_info(set, 1, &info);
  assert_non_null(info.error);
  assert_false(published(set, "Photos/top/file0.bin"));
  assert_int_equal(g_rename(moved, a), 0);
  unsigned before = w.changes;
  shareset_rescan(set);
  while (w.changes == before)
    g_main_context_iteration(g_main_context_default(), TRUE);
  assert_true(published(set, "Photos/top/file0.bin"));
  shareset_info(set, 1, &info);
  assert_null(info.error);
  shareset_free(set);
  g_free(moved);
  g_free(a);
}

int main(void)
{
  g_log_set_always_fatal(G_LOG_FATAL_MASK); /* the cache's warnings are expected */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_first_scan_hashes_all, setup, teardown),
      cmocka_unit_test_setup_teardown(test_second_scan_hashes_none, setup, teardown),
      cmocka_unit_test_setup_teardown(test_touched_mtime_rehashes_one, setup, teardown),
      cmocka_unit_test_setup_teardown(test_size_change_rehashes_one, setup, teardown),
      cmocka_unit_test_setup_teardown(test_ctime_change_rehashes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_deleted_file_pruned, setup, teardown),
      cmocka_unit_test_setup_teardown(test_garbage_database_replaced, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_page_replaced, setup, teardown),
      cmocka_unit_test_setup_teardown(test_schema_mismatch_rebuilds, setup, teardown),
      cmocka_unit_test_setup_teardown(test_fresh_files_not_trusted, setup, teardown),
      cmocka_unit_test_setup_teardown(test_progress, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_usable_state_dir, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cache_attached_later, setup, teardown),
      cmocka_unit_test_setup_teardown(test_commit_survives_stop, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_roots_do_not_collide, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tree_rows, setup, teardown),
      cmocka_unit_test_setup_teardown(test_serve_trees_from_cache, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shareset_names_and_persistence, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shareset_folder_comes_and_goes, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
