/* group.h - group membership, election, takeover and replication inside the
 * super-node core (supernode/GROUPS.md has the rules). Sans I/O: called by
 * sncore.c with the time; acts through sn_send / sn_push. */
#ifndef CANOPY_GROUP_H
#define CANOPY_GROUP_H

#include "sncore_int.h"

void group_init(SnCore *c, uint64_t now);
void group_free(SnCore *c);

/* Whether this node leads its group (leaves attach to it). */
bool group_leads(const SnCore *c);
/* Whether it answers queries from its index: the leader, and the backup
 * from its replica, so a search finds the group's files while a takeover
 * is under way (the searching leaf drops the duplicate hits). */
bool group_answers(const SnCore *c);

/* A SUPER link came up / went away. */
void group_link_up(SnCore *c, Peer *p, uint64_t now);
void group_link_down(SnCore *c, Peer *p, uint64_t now);

/* A leaf's HELLO (role LEAF) on p, a NEW or WATCH session. True when we
 * lead and attached it; false when it was told where the leader is and
 * closed. */
bool group_leaf_hello(SnCore *c, Peer *p, uint64_t now);
/* A WATCH session's HELLO; false when it was refused (closed). */
bool group_watch_hello(SnCore *c, Peer *p, uint64_t now);
/* A WATCH session ends (or becomes the leaf's primary). */
void group_watch_down(SnCore *c, Peer *p);

/* Changes of an attached leaf, replicated to the backup. */
void group_leaf_up(SnCore *c, const Record *rec, uint64_t now);
void group_leaf_down(SnCore *c, const uint8_t id[32], uint64_t now);
void group_leaf_publish(SnCore *c, const Record *rec, bool reset, const WireEntry *e, size_t n,
                        uint64_t now);

/* Group messages from p. */
void group_on_state(SnCore *c, Peer *p, const WireMsg *m, uint64_t now);
void group_on_repl(SnCore *c, Peer *p, const WireMsg *m, uint64_t now);
void group_on_repl_ack(SnCore *c, Peer *p, const WireMsg *m, uint64_t now);
void group_on_watch(SnCore *c, Peer *p, const WireMsg *m, uint64_t now);

void group_tick(SnCore *c, uint64_t now);
uint64_t group_deadline(const SnCore *c);

#endif
