/* content.h - content ids: the root of a BLAKE2b hash tree over fixed chunks.
 *
 * The tree has the shape of RFC 6962's Merkle tree (split at the largest
 * power of two below n), with domain-separated hashes:
 *   leaf(i)  = BLAKE2b-256(0x00 | chunk_i)                 chunk = 256 KiB
 *   node     = BLAKE2b-256(0x01 | left | right)
 *   cid      = BLAKE2b-256(0x02 | u64be file_size | root)
 * An empty file has one empty chunk. Binding the size into the id lets a
 * downloader know the chunk count before the first byte, and the per-chunk
 * leaves let every chunk be verified on arrival (issue 3's transfers).
 */
#ifndef CANOPY_CONTENT_H
#define CANOPY_CONTENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONTENT_CHUNK_SIZE (256u * 1024u)
#define CONTENT_ID_LEN 32
#define CONTENT_HEX_LEN (CONTENT_ID_LEN * 2 + 1)

typedef struct ContentHasher ContentHasher;

ContentHasher *content_hasher_new(void);
void content_hasher_free(ContentHasher *h); /* NULL is a no-op */
/* Feeds file bytes in order, any split. */
void content_hasher_update(ContentHasher *h, const uint8_t *p, size_t len);
/* Finishes and writes the content id; the hasher is then spent. */
void content_hasher_final(ContentHasher *h, uint8_t cid[CONTENT_ID_LEN]);
/* Before the first update: also keep every leaf hash, so a source can hand
 * out the tree later without reading the file again (32 bytes a chunk). */
void content_hasher_keep_leaves(ContentHasher *h);
/* After final: the kept leaf hashes, *n of them (n x 32 bytes; the caller
 * frees them with free()); NULL and *n = 0 if they were not asked for,
 * memory ran out, or they were taken already. */
uint8_t *content_hasher_take_leaves(ContentHasher *h, size_t *n);

/* leaf(i) of one chunk's bytes */
void content_leaf_hash(const uint8_t *chunk, size_t len, uint8_t out[32]);
/* Content id from all leaf hashes (n >= 1) and the file size. */
void content_id_from_leaves(const uint8_t (*leaves)[32], size_t n, uint64_t size,
                            uint8_t cid[CONTENT_ID_LEN]);
/* Hashes a whole file. False with a one-line reason in err on I/O errors. */
bool content_hash_file(const char *path, uint8_t cid[CONTENT_ID_LEN], uint64_t *size, char *err,
                       size_t errlen);

#endif
