/* share.h - the folders a leaf shares: scanning and content ids.
 *
 * A Share is one folder. Every regular file under its root is found under
 * its path relative to the root, but a download's part file
 * (".canopy-*.part", still being written). Symbolic links are not followed,
 * so nothing outside the folder is ever published. A scan re-hashes only
 * files whose size, mtime, ctime, device or inode changed: against the
 * previous scan in memory, and against the hash cache (hashcache.h) across
 * restarts when one is attached.
 *
 * A file whose ctime is within SHARE_RACY_NS before it is hashed may be
 * written again within the same timestamp tick, which no stat would show, so
 * its content id is published but not remembered: the next scan hashes it
 * again. Likewise a file that changed while it was being hashed.
 */
#ifndef CANOPY_SHARE_H
#define CANOPY_SHARE_H

#include <glib.h>
#include <stdbool.h>

#include "hashcache.h"
#include "leafcore.h"

/* Coarse timestamps tick every few ms; FAT stamps mtime in 2 s steps. */
#define SHARE_RACY_NS (3 * G_GINT64_CONSTANT(1000000000))

typedef struct Share Share;

Share *share_new(const char *root);
void share_free(Share *s); /* NULL is a no-op; closes the attached cache */

/* Attaches a hash cache, which the share then owns (any previous one is
 * closed). NULL detaches: scans then remember hashes in memory only. */
void share_set_cache(Share *s, HashCache *cache);
/* The same, but borrowed: the caller keeps cache open while s uses it and
 * closes it itself (several shares, one database). */
void share_use_cache(Share *s, HashCache *cache);

/* Wall clock in ns since the epoch, compared with file timestamps to spot
 * files written during the scan; g_get_real_time() unless a test sets one. */
typedef int64_t (*ShareWallClock)(void *ud);
void share_set_clock(Share *s, ShareWallClock now, void *ud);

/* Hashing progress of a scan, over the files that need hashing (cache misses
 * only). bytes_done counts each file at most at the size it had when the
 * walk found it, so it never passes bytes_total. */
typedef struct {
  size_t files_done, files_total;
  uint64_t bytes_done, bytes_total;
  const char *relpath; /* file being hashed, or NULL; borrowed for the call */
} ShareProgress;
/* Called from inside share_scan: once before the first file is hashed, then
 * every MiB read and after every file; not at all when nothing needs
 * hashing. It must not call into this Share. */
typedef void (*ShareProgressFn)(const ShareProgress *p, void *ud);
void share_set_progress(Share *s, ShareProgressFn fn, void *ud);

/* Never publish anything under dir (the leaf's own state dir, which holds
 * its secret key, may sit inside the share). Compared by device and inode. */
void share_exclude(Share *s, const char *dir);

/* Walks the folder. Files that cannot be read or named are skipped with a
 * warning; FALSE only when the root itself is unusable (or excluded), or
 * the scan was cancelled: then the previous manifest stays. *changed tells
 * whether the manifest differs from the previous scan. */
gboolean share_scan(Share *s, gboolean *changed, GError **error);
/* Makes a running share_scan (in another thread) stop soon and fail with
 * G_FILE_ERROR_INTR; so do the scans after it. Thread-safe. */
void share_cancel(Share *s);
/* The manifest of the last scan (borrowed until the next scan). */
const LeafEntry *share_entries(const Share *s, size_t *n);
/* The shared file with this content id: its path relative to the root
 * (borrowed until the next scan) and size. The path comes from our own scan,
 * never from a peer. */
gboolean share_find(const Share *s, const uint8_t cid[32], const char **relpath, uint64_t *size);
const char *share_root(const Share *s);

/* What the last scan did. files = hashed + from_memory + from_cache. */
typedef struct {
  size_t files;          /* regular files published */
  size_t hashed;         /* read and hashed */
  size_t from_memory;    /* content id kept from the previous scan */
  size_t from_cache;     /* content id taken from the hash cache */
  size_t skipped;        /* unreadable, unnameable, or gone while hashed */
  uint64_t bytes_hashed; /* bytes read by the hashing */
  size_t pruned;         /* hash cache rows deleted: files gone or replaced */
} ShareScanStats;
void share_scan_stats(const Share *s, ShareScanStats *out);

/* Files hashed by the last scan (cache misses). */
size_t share_last_hashed(const Share *s);

/* --- the leaf's shared folders ------------------------------------------------ */

/* A ShareSet is every folder a leaf shares: the one named by --share (the
 * "fixed" folder, from the command line or config) and those added at run
 * time (`canopy-leaf share add`), which are listed in STATE_DIR/SHARESET_FILE
 * and so survive restarts.
 *
 * Published names: a fixed folder's files keep their plain relative path
 * ("Albums/abbey road.flac"); an added folder's files are published under
 * the folder's name, its base name made unique among the shares
 * ("Music/Albums/abbey road.flac", "Music-2/..."), so two folders holding the
 * same relative path never collide. Should a name still repeat (a folder
 * named like an added share appears later at the top of the fixed folder),
 * the first one wins and the other file is left out with a warning.
 *
 * Folders overlapping one another and the state dir itself (it holds the
 * secret key; a folder that contains it leaves it out) are refused. All the
 * folders share one hash cache (rows keyed by root).
 *
 * Scans after the first (rescans, a folder just added) run one at a time in
 * a worker thread, so a long hashing run never stalls the daemon's sessions;
 * their results and every callback arrive on ctx's thread. Everything here
 * but the worker is called from that thread only. */
#define SHARESET_FILE "shares"
#define SHARESET_MAX 64      /* folders shared at most */
#define SHARESET_NAME_MAX 48 /* bytes of an added folder's name */

typedef struct ShareSet ShareSet;

/* One folder, as `share list` shows it. Strings are borrowed until the set
 * changes (the next add, remove or finished scan). */
typedef struct {
  const char *name;  /* prefix of its published names; "" for the fixed folder */
  const char *root;  /* absolute, symlinks resolved */
  bool fixed;        /* named by --share: not removable at run time */
  bool scanning;     /* a scan is running or waiting */
  bool scanned;      /* a scan has finished since start */
  const char *error; /* why the last scan failed, or NULL */
  size_t files;      /* published */
  uint64_t bytes;
  ShareScanStats last;    /* of the last finished scan */
  ShareProgress progress; /* of the running scan; files_total 0: no hashing (yet) */
} ShareInfo;

/* The merged manifest changed (a scan found changes, a folder came or went). */
typedef void (*ShareSetChangedFn)(void *ud);
/* Hashing progress of one requested scan, at most every SHARESET_PROGRESS_MS. */
#define SHARESET_PROGRESS_MS 250
typedef void (*ShareSetProgressFn)(const ShareProgress *p, void *ud);
/* A requested scan finished: info describes the folder, or is NULL and error
 * says why not (the folder was removed meanwhile, the leaf is stopping). */
typedef void (*ShareSetDoneFn)(const ShareInfo *info, const char *error, void *ud);

/* The hash cache is opened in state_dir (none if it cannot be). */
ShareSet *shareset_new(const char *state_dir, GMainContext *ctx, ShareSetChangedFn changed,
                       void *ud);
/* Cancels and waits for a running scan; callers of pending ones get their
 * done callback with an error. NULL is a no-op. */
void shareset_free(ShareSet *set);
/* The wall clock of every folder's scans (share_set_clock; for tests). */
void shareset_set_clock(ShareSet *set, ShareWallClock now, void *ud);

/* Never publish anything under dir (see share_exclude); applies to the
 * folders added after the call. */
void shareset_exclude(ShareSet *set, const char *dir);
/* The --share folder; FALSE if it is not a usable directory. */
gboolean shareset_add_fixed(ShareSet *set, const char *dir, GError **error);
/* Adds the folders listed in STATE_DIR/SHARESET_FILE (a missing file lists
 * none). Bad entries are logged and skipped; a listed folder that is gone
 * stays listed, with its error, and is retried by every rescan. */
void shareset_load(ShareSet *set);
/* Scans every folder now, in this thread (start-up, before the sessions).
 * FALSE only if the fixed folder cannot be scanned. */
gboolean shareset_scan_now(ShareSet *set, GError **error);
/* Queues a rescan of every folder not already waiting for one. */
void shareset_rescan(ShareSet *set);

/* Starts sharing dir (absolute): checks it, gives it a name, lists it in
 * SHARESET_FILE and queues its first scan; progress and done (either may be
 * NULL) then report on it. FALSE, with a message a person can act on, if dir
 * cannot be shared. */
gboolean shareset_add(ShareSet *set, const char *dir, ShareSetProgressFn progress,
                      ShareSetDoneFn done, void *ud, GError **error);
/* The folder whose root is what (after resolving symlinks) or whose name is
 * what; -1 if none. */
int shareset_lookup(const ShareSet *set, const char *what);
/* The added folder named name; -1 if none. */
int shareset_lookup_name(const ShareSet *set, const char *name);
/* Stops sharing folder i (its files leave the manifest at once) and drops it
 * from SHARESET_FILE and the hash cache. FALSE for the fixed folder. */
gboolean shareset_remove(ShareSet *set, guint i, GError **error);

guint shareset_count(const ShareSet *set);
void shareset_info(const ShareSet *set, guint i, ShareInfo *out);

/* The merged manifest (names as published; borrowed until the set changes). */
const LeafEntry *shareset_entries(const ShareSet *set, size_t *n);
/* The shared file with this content id: the root of its folder and its path
 * relative to that root (both borrowed until the set changes), and size.
 * Both come from our own scans, never from a peer. */
gboolean shareset_find(const ShareSet *set, const uint8_t cid[32], const char **root,
                       const char **relpath, uint64_t *size);

#endif
