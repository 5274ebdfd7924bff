/* hostsend.h - what a super node tells its leaves of the other super nodes:
 * HOSTS after a leaf attaches and when the set changes, and the REFUSE a
 * full super node answers a leaf's HELLO with (reason, when to come back,
 * others to try, least leaf-loaded first). Part of the super-node core
 * (sans I/O, the SnCore's time); the leaf's side is leafnode/hostcache.h.
 *
 * Not a burst to every leaf at once: HOSTS go out through one queue drained
 * at SN_HOSTS_SEND_RATE a second; a leaf is queued once when it attaches
 * and once per refresh round. A round starts when the set of super nodes
 * (by node id) differs from the last round's, looked at every
 * SN_HOSTS_CHECK_MS, at most once every SN_HOSTS_ROUND_MS: a leaf gets at
 * most one refresh a minute (plus the one when it attached). */
#ifndef CANOPY_HOSTSEND_H
#define CANOPY_HOSTSEND_H

#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define SN_HOSTS_ROUND_MS 60000
#define SN_HOSTS_CHECK_MS 5000
#define SN_HOSTS_SEND_RATE 500 /* HOSTS messages per second, all leaves together */
#define SN_HOSTS_SEND_BURST 50
#define SN_HOSTS_DRAIN_MS 20 /* while leaves wait: a wakeup every 20 ms, ~10 sends each */
/* What a refusal asks of the leaf: do not dial us again before this. */
#define SN_HOSTS_REFUSE_RETRY_MS 30000

typedef struct HostSend HostSend;
struct SnCore;

HostSend *hostsend_new(uint64_t now);
void hostsend_free(HostSend *h); /* NULL is a no-op */

/* Other super nodes for a leaf, best first, into out[0..max) (their
 * addresses borrowed from the address book until its next change); returns
 * how many. */
size_t sn_hosts_fill(struct SnCore *c, const uint8_t *exclude_id, WireHost *out, size_t max);

/* Counts since start, for stats and tests. */
typedef struct {
  uint64_t refused;    /* leaves refused with REFUSE (max-leaves) */
  uint64_t hosts_sent; /* HOSTS messages sent */
  uint64_t rounds;     /* refresh rounds started */
  size_t queued;       /* leaves waiting for their HOSTS */
} HostSendStats;
void sn_hosts_stats(const struct SnCore *c, HostSendStats *out);

#endif
