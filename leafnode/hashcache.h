/* hashcache.h - content ids of shared files, kept across restarts.
 *
 * An SQLite database in the leaf's state dir (HASHCACHE_FILE, mode 0600)
 * with one row per shared file: the share root it was found under, its path
 * relative to that root, device and inode, size, mtime and ctime (ns) and
 * content id. A leaf shares several folders, so the root is part of the
 * key: two shares holding the same relative path never meet. A lookup hits
 * only when all of these match, so a restart re-hashes just the files that
 * changed. Which files are safe to store (not still being written) is the
 * scanner's call (share.c).
 *
 * The database is only a cache: a corrupt, unreadable or other-version file
 * is logged and replaced, and an SQLite error during a scan is logged and
 * makes the rest of that scan run without it. Nothing here is ever fatal.
 * One thread uses a HashCache at a time.
 */
#ifndef CANOPY_HASHCACHE_H
#define CANOPY_HASHCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#define HASHCACHE_FILE "hashcache.sqlite"
/* PRAGMA user_version of the layout this code writes; any other is rebuilt.
 * 2: the share root joined the key. 3: chunk hashes (the tree) per file. */
#define HASHCACHE_SCHEMA 3

typedef struct HashCache HashCache;

/* What identifies one version of one file under the root of the current
 * scan (hashcache_begin). relpath is borrowed. */
typedef struct {
  const char *relpath; /* relative to the share root */
  uint64_t dev, ino;
  uint64_t size;
  int64_t mtime_ns, ctime_ns;
} HashCacheKey;

/* The key of the file version st describes (relpath borrowed). */
HashCacheKey hashcache_key_of_stat(const char *relpath, const struct stat *st);

/* Opens state_dir/HASHCACHE_FILE, creating it if missing, and replaces a
 * database that cannot be used (logged). NULL, logged, only when no database
 * can be created there at all; the caller then scans without one. Free with
 * hashcache_close. */
HashCache *hashcache_open(const char *state_dir);
void hashcache_close(HashCache *c); /* NULL is a no-op */
/* A read-only connection to state_dir/HASHCACHE_FILE, for serving trees
 * on another thread than the scans' (WAL: it reads while a scan writes).
 * It never creates, rebuilds or replaces anything: NULL when the database
 * is missing or not of HASHCACHE_SCHEMA (yet). Only hashcache_tree and
 * hashcache_close apply to it. */
HashCache *hashcache_open_reader(const char *state_dir);
/* The chunk hashes stored for exactly this version of the file under root
 * (k as fstat says now: relpath, device, inode, size, mtime, ctime all as
 * when it was hashed) with content id cid: g_free, *nleaves of 32 bytes
 * each; NULL if there are none. Still only a claim: the caller checks that
 * they rebuild cid. */
uint8_t *hashcache_tree(HashCache *c, const char *root, const HashCacheKey *k,
                        const uint8_t cid[32], size_t *nleaves);
/* The database's path (owned by c). */
const char *hashcache_path(const HashCache *c);

/* A scan is one transaction (hashcache_commit may split a long one) over one
 * share root: begin, then for every file found either a lookup that hits, or
 * a store once it is hashed, then end. The rows of other roots are neither
 * read nor pruned. root is copied. NULL c makes every call a no-op (lookups
 * miss). */
void hashcache_begin(HashCache *c, const char *root);
/* Writes the cached content id when relpath, device, inode, size, mtime and
 * ctime all match a row that has its chunk hashes, and marks the row as
 * seen by this scan. */
bool hashcache_lookup(HashCache *c, const HashCacheKey *k, uint8_t cid[32]);
/* Records (or confirms: an unchanged row is not rewritten) a file's content
 * id and its nleaves chunk hashes (content_hasher_take_leaves; NULL keeps
 * those stored before for the same id) and marks it as seen by this scan.
 * True when the leaves given were stored with it. A row without leaves
 * never hits in hashcache_lookup, so a later scan hashes the file again. */
bool hashcache_store(HashCache *c, const HashCacheKey *k, const uint8_t cid[32],
                     const uint8_t *leaves, size_t nleaves);
/* Marks a file as seen by this scan without looking it up: for a caller
 * that knows the row is there (it stored or found it in an earlier scan of
 * this same database). */
void hashcache_keep(HashCache *c, const HashCacheKey *k);
/* Whether the current scan can still store (an open, working database). */
bool hashcache_ok(const HashCache *c);
/* Commits what the scan stored so far and goes on in a new transaction, so
 * a leaf stopped during a long first scan keeps the hashes it finished. */
void hashcache_commit(HashCache *c);
/* With prune, deletes the rows this scan did not see (files that are gone
 * or were replaced); then commits. False if the scan's changes were lost to
 * an SQLite error: they were rolled back, and a corrupt database was
 * replaced by an empty one. */
bool hashcache_end(HashCache *c, bool prune);
/* Rows the last successful prune deleted. */
size_t hashcache_last_pruned(const HashCache *c);
/* Deletes every row of root (a share that is no longer shared), in its own
 * transaction; not during a scan. Returns the rows deleted, 0 on an error
 * (logged). */
size_t hashcache_forget(HashCache *c, const char *root);

#endif
