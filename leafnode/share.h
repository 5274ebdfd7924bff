/* share.h - the folder a leaf shares: scanning and content ids.
 *
 * Every regular file under the root is published under its path relative to
 * the root. Symbolic links are not followed, so nothing outside the folder is
 * ever published. A scan re-hashes only files whose size, mtime, ctime,
 * device or inode changed: against the previous scan in memory, and against
 * the hash cache (hashcache.h) across restarts when one is attached.
 *
 * A file whose ctime is within SHARE_RACY_NS before it is hashed may be
 * written again within the same timestamp tick, which no stat would show, so
 * its content id is published but not remembered: the next scan hashes it
 * again. Likewise a file that changed while it was being hashed.
 */
#ifndef CANOPY_SHARE_H
#define CANOPY_SHARE_H

#include <glib.h>

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
 * warning; FALSE only when the root itself is unusable. *changed tells
 * whether the manifest differs from the previous scan. */
gboolean share_scan(Share *s, gboolean *changed, GError **error);
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

#endif
