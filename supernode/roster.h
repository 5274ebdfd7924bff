/* roster.h - the leaves whose entries a super node holds, by node id.
 *
 * A record outlives the session it came in on: a backup holds records for
 * leaves attached to its leader (replicated), and a new leader keeps them
 * until the leaves come over. Each record is one index owner; its entries
 * live in the index alone (a snapshot to a new backup reads them there,
 * index_owner_walk), the record keeps their count and the digest ATTACHED
 * reports (wire_digest_entry). Sans I/O.
 */
#ifndef CANOPY_ROSTER_H
#define CANOPY_ROSTER_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "index.h"
#include "wire.h"

typedef struct Roster Roster;

/* GHashTable functions for keys that are 32-byte node ids (here and in
 * sncore's leaves_by_id). */
guint node_id_hash(gconstpointer id);
gboolean node_id_equal(gconstpointer a, gconstpointer b);

typedef struct {
  uint8_t id[32];
  uint64_t owner;         /* index owner handle */
  uint64_t conn;          /* the leaf's session, 0 when none */
  uint64_t unbound_since; /* when conn became 0 */
  uint8_t digest[32];     /* of the entries the index took, in any order */
  size_t count;           /* entries the index took */
} Record;

Roster *roster_new(Index *ix); /* ix borrowed */
void roster_free(Roster *r);   /* NULL is a no-op; does not touch the index */

Record *roster_get(Roster *r, const uint8_t id[32]);
/* The record for id, created (empty, unbound) when missing. */
Record *roster_ensure(Roster *r, const uint8_t id[32]);
/* Drops a record and its index entries. */
void roster_remove(Roster *r, Record *rec);
/* Drops every record and its index entries. */
void roster_clear(Roster *r);
/* Adds entries to rec (after removing all of its entries when reset).
 * Returns how many the index refused (over the per-leaf cap, bad name). */
size_t roster_publish(Roster *r, Record *rec, bool reset, const WireEntry *e, size_t n);
size_t roster_size(const Roster *r);

typedef void (*RosterFn)(Record *rec, void *ctx);
/* Calls fn for every record; fn may not add or remove records. */
void roster_foreach(Roster *r, RosterFn fn, void *ctx);

#endif
