/* hostfile.h - the host cache's file in the state dir (the shell's part of
 * hostcache.h): read at start, written atomically when it changed. */
#ifndef CANOPY_HOSTFILE_H
#define CANOPY_HOSTFILE_H

#include <stdint.h>

#include "hostcache.h"

/* Merges STATE_DIR/supernodes into h. A missing file is no error; a corrupt
 * or unreadable one is reported (g_warning) and ignored. */
void hostfile_load(HostCache *h, const char *state_dir, uint64_t now);
/* Writes h to STATE_DIR/supernodes if it changed (hostcache_dirty), 0600,
 * through a temporary file renamed over the old one. False on an error,
 * which is logged; the next change tries again. */
bool hostfile_save(HostCache *h, const char *state_dir);

#endif
