/* serve.h - answering other leaves' requests for chunk hashes and chunks.
 *
 * Requests name a content id, never a path: the file is found in our own
 * manifest (shareset_find: a shared folder's root and the path our scan
 * found under it), opened one path component at a time from that root
 * without following any symlink, and checked against its size and hashes
 * before a byte is sent, so no request can reach anything outside the
 * shared folders or a file that changed under us.
 */
#ifndef CANOPY_SERVE_H
#define CANOPY_SERVE_H

#include <glib.h>

#include "share.h"
#include "wire.h"

typedef struct Server Server;

/* Sends one encoded message back to the requesting peer. */
typedef gboolean (*ServeSendFn)(const uint8_t *msg, size_t len, void *ud);

/* shares is borrowed and must outlive the server. */
Server *server_new(ShareSet *shares);
void server_free(Server *sv); /* NULL is a no-op */
/* Trees (chunk hashes) come from the scans' hash cache in state_dir
 * (hashcache_open_reader) when it holds the very version of the file being
 * asked for: the first request for a large file then reads a few KiB
 * instead of hashing the whole file on the main loop. Without it, or for a
 * file not in it, the file is hashed once per content id. NULL closes the
 * cache and goes back to hashing. */
void server_use_tree_cache(Server *sv, const char *state_dir);
/* Trees made by hashing the file rather than taken from the cache. */
uint64_t server_trees_hashed(const Server *sv);
/* Answers a decoded GET_TREE or GET_CHUNK; other types are ignored. */
void server_handle(Server *sv, const WireMsg *req, ServeSendFn send, void *ud);
uint64_t server_bytes_sent(const Server *sv);
/* Chunk requests answered with data, since start. */
uint64_t server_chunks_sent(const Server *sv);

#endif
