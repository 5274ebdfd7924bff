/* partfile.h - a download's part file: whose it is, and how it becomes the
 * finished file.
 *
 * A part file belongs to one download of one daemon: its name holds the
 * content id and a tag derived from the daemon's node id and the final path,
 * so two daemons (or two targets) never share one, while the same daemon
 * getting the same file to the same place again finds its own and resumes.
 * It is held under an OFD write lock while open, so even a copy of the same
 * daemon cannot write into it at the same time. Finishing goes by the open
 * descriptor, not by trust in the name: if another process removed or
 * replaced the part file meanwhile, the verified bytes are written out again
 * from the descriptor before the rename, and the renamed file is checked to
 * be ours.
 */
#ifndef CANOPY_PARTFILE_H
#define CANOPY_PARTFILE_H

#include <glib.h>
#include <stdbool.h>

/* Times finishing starts over when another process moved the part file
 * away or swapped it for another file in the meantime. */
#define PARTFILE_FINISH_TRIES 3

/* The part file's path for a download of cid_hex to final_path by the
 * daemon with node id daemon_hex: beside final_path (the rename stays in one
 * file system), ".canopy-CID-TAG.part". g_free() it. */
gchar *partfile_path(const char *final_path, const char *daemon_hex, const char *cid_hex);

/* Opens (creating) the part file at path and takes its lock. Returns the
 * descriptor, or -1 with errno set; EWOULDBLOCK (or EAGAIN) means another
 * process holds it. */
int partfile_open(const char *path);

/* Moves the part file open as *fd (its bytes complete and synced) to
 * final_path; unless replace, never over an existing file (EEXIST). If the
 * file at *path is not *fd's any more, the bytes are first copied from *fd
 * into a new part file (then *fd and *path change to it). Returns 0, or -1
 * with errno set. *fd stays open either way (the caller closes it). */
int partfile_finish(int *fd, gchar **path, const char *final_path, gboolean replace);

#endif
