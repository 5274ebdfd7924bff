/* share.h - the folder a leaf shares: scanning and content ids.
 *
 * Every regular file under the root is published under its path relative to
 * the root. Symbolic links are not followed, so nothing outside the folder is
 * ever published. Rescans re-hash only files whose size or mtime changed.
 */
#ifndef CANOPY_SHARE_H
#define CANOPY_SHARE_H

#include <glib.h>

#include "leafcore.h"

typedef struct Share Share;

Share *share_new(const char *root);
void share_free(Share *s); /* NULL is a no-op */

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

/* Files hashed by the last scan (cache misses). */
size_t share_last_hashed(const Share *s);

#endif
