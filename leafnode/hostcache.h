/* hostcache.h - the super nodes a leaf knows, and which one it tries next.
 *
 * Sans I/O: time and randomness are passed in; the file in the state dir is
 * read and written by the shell (main.c) through hostcache_format and
 * hostcache_parse.
 *
 * Where the entries come from: --supernode (configured, in the given
 * order), the HOSTS a super node sends its leaves, and the hosts a full super
 * node names in its REFUSE. What a super node names is a claim: it is only
 * dialled, never passed on.
 *
 * The order of the next attempt (hostcache_next): hosts a refusal just named
 * (in its order, least loaded first); then the configured ones in their
 * order; then the last one that worked; then learned ones: those that took
 * us at some time (proven) before those only named, then fewest failures,
 * least leaf load (unknown as half full), freshest. A super node can name
 * addresses that do not answer, each costing a dial timeout, and claim them
 * empty: the ones that answered us once go first. A host whose dial failed is
 * skipped until its back-off ends: HOSTCACHE_BACKOFF_MIN_MS doubled per
 * failure in a row up to HOSTCACHE_BACKOFF_MAX_MS, with +-25 % jitter so
 * that a super node's leaves do not come back in the same millisecond.
 *
 * Bounded: HOSTCACHE_MAX entries, at most HOSTCACHE_PER_PREFIX learned ones
 * per /24 (IPv4) or /64 (IPv6) and HOSTCACHE_PER_SOURCE per naming super
 * node, so that one super node cannot fill the cache with its friends. A
 * newcomer over a cap may only replace a learned entry of that prefix or
 * source that failed; in a full cache it replaces the learned entry with
 * the most failures, then the stalest one; configured entries and the last
 * one that worked are never evicted.
 */
#ifndef CANOPY_HOSTCACHE_H
#define CANOPY_HOSTCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOSTCACHE_MAX 64
#define HOSTCACHE_PER_PREFIX 8
#define HOSTCACHE_PER_SOURCE 32 /* WIRE_MAX_HOSTS: one HOSTS frame's worth */
#define HOSTCACHE_ADDR_MAX 128  /* WIRE_MAX_ADDR */
#define HOSTCACHE_BACKOFF_MIN_MS 1000
#define HOSTCACHE_BACKOFF_MAX_MS 30000
/* A refusal's retry_ms is honoured within these bounds (a super node
 * cannot park us for a day, nor have us back at once). */
#define HOSTCACHE_REFUSE_MIN_MS 1000
#define HOSTCACHE_REFUSE_MAX_MS 600000
/* The file in the state dir, and its size cap when read. */
#define HOSTCACHE_FILE "supernodes"
#define HOSTCACHE_FILE_MAX 65536
#define HOSTCACHE_LOAD_UNKNOWN 255 /* WIRE_LOAD_UNKNOWN */

typedef struct HostCache HostCache;

typedef enum {
  HOST_CONFIGURED = 0, /* --supernode */
  HOST_LEARNED = 1,    /* from a super node's HOSTS */
  HOST_REDIRECT = 2,   /* named by a super node's REFUSE */
} HostSource;

typedef struct {
  char addr[HOSTCACHE_ADDR_MAX + 1];
  bool id_known;
  uint8_t id[32];
  uint8_t leaf_load; /* percent, or HOSTCACHE_LOAD_UNKNOWN */
  HostSource source;
  unsigned rank;       /* configured: position in --supernode */
  uint64_t learned;    /* last named (ms), freshness */
  uint64_t last_ok;    /* last attached (ms), 0 never */
  uint64_t last_fail;  /* last failed (ms), 0 never */
  unsigned failures;   /* in a row */
  uint64_t retry_at;   /* not tried before (ms) */
  bool redirect;       /* named by the last refusal, not tried since */
  unsigned redirect_n; /* its place in that refusal */
  bool worked;         /* the last one that worked (one entry at most) */
  bool proven;         /* it took us at some time (persisted) */
  uint8_t src_id[32];  /* learned: the super node that named it */
} HostEntry;

typedef void (*HostRandomFn)(uint8_t *out, size_t n, void *ctx);

HostCache *hostcache_new(HostRandomFn rng, void *rng_ctx);
void hostcache_free(HostCache *h); /* NULL is a no-op */

/* A --supernode address; configured ones keep their order. False if the
 * address is not "host:port" or the cache is full of configured ones. */
bool hostcache_add_configured(HostCache *h, const char *addr);

/* A super node named by src (its node id): from HOSTS (redirect false) or
 * from a REFUSE (redirect true, order: its place in the refusal). id may be
 * NULL. Updates the load and freshness of a known entry. False if the
 * address is malformed or refused by the caps. */
bool hostcache_learn(HostCache *h, const char *addr, const uint8_t *id, uint8_t leaf_load,
                     const uint8_t src[32], bool redirect, unsigned order, uint64_t now);

/* Attached to addr (node id id): its failures are forgiven and it is the
 * last one that worked. */
void hostcache_success(HostCache *h, const char *addr, const uint8_t id[32], uint64_t now);
/* A dial of addr failed, or its session ended before it took us: it backs
 * off. */
void hostcache_failure(HostCache *h, const char *addr, uint64_t now);
/* addr refused us: not before retry_ms (bounded) or its back-off. */
void hostcache_refused(HostCache *h, const char *addr, uint32_t retry_ms, uint64_t now);

/* The address to try now (borrowed until the next change), or NULL if every
 * entry is backing off. avoid (may be NULL) is passed over unless it is the
 * only one ready. */
const char *hostcache_next(HostCache *h, const char *avoid, uint64_t now);
/* When the next entry comes out of its back-off (UINT64_MAX: empty). */
uint64_t hostcache_next_ready(const HostCache *h);

size_t hostcache_size(const HostCache *h);
/* Entry i, in the order hostcache_next would take them (ignoring
 * back-off); for status and tests. NULL past the end. */
const HostEntry *hostcache_get(HostCache *h, size_t i);
/* Learned entries refused by a cap since start. */
uint64_t hostcache_refused_count(const HostCache *h);

/* The persisted part changed since the last hostcache_format. */
bool hostcache_dirty(const HostCache *h);

/* The file's text: one line per entry, best first. g_free it. Clears the
 * dirty flag. */
char *hostcache_format(HostCache *h);
/* Reads text written by hostcache_format. A malformed text changes nothing
 * and returns false with the line and what is wrong in err. Entries
 * already configured keep their rank; the others are learned. */
bool hostcache_parse(HostCache *h, const char *text, size_t len, uint64_t now, char *err,
                     size_t errlen);

/* Splits "host:port" ("[v6]:port"): true if well formed (host 1..n bytes
 * of [A-Za-z0-9.-] or an IP literal, port 1..65535). */
bool hostcache_addr_ok(const char *addr);

#endif
