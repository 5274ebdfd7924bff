/* mesh.h - a super node's address book of other super nodes.
 *
 * Addresses come from --peer (configured: always kept connected), from the
 * HELLO of a neighbour (its advertised listen address) and from PEERS answers
 * (discovery). The book decides whom to dial next, with exponential backoff
 * per address; it never dials itself, and never an address whose node id is
 * already linked. Bounded: learned addresses beyond MESH_MAX_ADDRS are dropped.
 */
#ifndef CANOPY_MESH_H
#define CANOPY_MESH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESH_MAX_ADDRS 256
#define MESH_ADDR_MAX 128

/* Longest wait between dials of a configured address. */
#define MESH_CONFIGURED_MAX_MS 4000
/* Failed dials in a row after which a pinned address is an ordinary
 * learned one again (mesh_pin). */
#define MESH_PIN_MAX_FAILURES 8

typedef struct Mesh Mesh;

typedef struct {
  char addr[MESH_ADDR_MAX + 1];
  uint8_t id[32];
  bool id_known;
  bool configured;
  bool pinned;          /* mesh_pin: dialed like a configured one, for a while */
  bool self;            /* dialing it reached ourselves */
  bool dialing;         /* a dial is under way */
  uint64_t linked_conn; /* 0 when not linked */
  unsigned failures;
  uint64_t next_attempt;
} MeshAddr;

/* is_linked(id) tells whether a super-node link to that node id is up. */
typedef bool (*MeshLinkedFn)(const uint8_t id[32], void *ctx);

Mesh *mesh_new(const uint8_t self_id[32], uint64_t backoff_min_ms, uint64_t backoff_max_ms);
void mesh_free(Mesh *m);

/* Adds or updates an address. id may be NULL when unknown. Returns the
 * record, or NULL if the book is full or the address is malformed. */
MeshAddr *mesh_learn(Mesh *m, const char *addr, const uint8_t *id, bool configured);
MeshAddr *mesh_find(Mesh *m, const char *addr);
/* An address the group needs linked (its leader, the old leader's mesh
 * links after a takeover) that a peer named: a learned address (subject to
 * MESH_MAX_ADDRS, its id not trusted), dialed like a configured one until
 * MESH_PIN_MAX_FAILURES dials in a row failed. NULL if refused. */
MeshAddr *mesh_pin(Mesh *m, const char *addr);

/* Outcome of a dial of addr. */
void mesh_dial_failed(Mesh *m, const char *addr, uint64_t now);
void mesh_dial_succeeded(Mesh *m, const char *addr, const uint8_t id[32], uint64_t conn);
/* A link closed: the address may be dialed again after backoff. */
void mesh_link_down(Mesh *m, uint64_t conn, uint64_t now);

/* Next address to dial now, or NULL. Configured addresses come first; learned
 * ones only when want_more (discovery on and below the target degree).
 * Marks the returned record as dialing. */
MeshAddr *mesh_next_dial(Mesh *m, bool want_more, MeshLinkedFn linked, void *ctx, uint64_t now);
/* Earliest time a backed-off address becomes dialable (UINT64_MAX if none). */
uint64_t mesh_next_attempt(const Mesh *m, bool want_more);

/* Fills out[] with up to max known addresses of other super nodes (ids
 * known, not self, not exclude_id); returns how many. Borrowed records. */
size_t mesh_sample(Mesh *m, const uint8_t *exclude_id, const MeshAddr **out, size_t max);

#endif
