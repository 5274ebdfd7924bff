/* wire.h - Canopy's application messages and their codec.
 *
 * Every message is: u8 version | u8 type | body. Bodies are big-endian,
 * strings are u16 length + UTF-8 bytes (no NUL), and every count and length a
 * peer declares is capped below. Decoding borrows string bytes from the frame
 * buffer: a decoded WireMsg is valid only while that buffer lives; arrays are
 * allocated and released with wire_msg_clear().
 *
 * These bytes travel inside the secure channel's AEAD frames (channel.h).
 */
#ifndef CANOPY_WIRE_H
#define CANOPY_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define WIRE_VERSION 1
#define WIRE_ID_LEN 32     /* node id: BLAKE2b-256 of the Ed25519 public key */
#define WIRE_CID_LEN 32    /* content id: root of the chunk hash tree */
#define WIRE_QID_LEN 16    /* flooded query id */
#define WIRE_MAX_NAME 255  /* bytes of a published file name */
#define WIRE_MAX_QUERY 256 /* bytes of a search string */
#define WIRE_MAX_ADDR 128  /* bytes of a "host:port" string */
#define WIRE_MAX_AGENT 64
#define WIRE_MAX_ENTRIES 128 /* published entries per PUBLISH frame */
#define WIRE_MAX_HITS 128    /* hits per hits frame */
#define WIRE_MAX_PEERS 32    /* addresses per PEERS frame */
#define WIRE_MAX_TTL 7       /* super-node hops a query may travel */
#define WIRE_MAX_SIGNAL 8192 /* bytes of an ICE offer or answer */
#define WIRE_MAX_TREE 1024   /* chunk hashes per TREE frame */
#define WIRE_PIECE 32768     /* bytes of chunk data per CHUNK frame */
#define WIRE_MAX_CERT 256    /* bytes of a super node's network certificate */

/* A PING whose nonce has this bit set is a keepalive that the far end may
 * leave unanswered, as long as it answered the sender's previous PING
 * (supernode/keepalive.h): the sender pings every interval and gives up
 * after 3 intervals of silence, so hearing every other interval leaves it
 * one interval of margin. A leaf's keepalives set it; a PING that asks a
 * question (the backup's probe, a super node's ping of a silent session)
 * does not. Older peers echo it like any nonce. */
#define WIRE_PING_SPARE (UINT64_C(1) << 63)

typedef enum {
  MSG_HELLO = 1, /* first message on every session */
  MSG_PING = 2,  /* answered by PONG (but see WIRE_PING_SPARE) */
  MSG_PONG = 3,
  MSG_PUBLISH = 4,     /* leaf -> super node: a batch of its manifest */
  MSG_SEARCH = 5,      /* leaf -> super node */
  MSG_SEARCH_HITS = 6, /* super node -> leaf */
  MSG_QUERY = 7,       /* super node -> super node, flooded */
  MSG_QUERY_HITS = 8,  /* super node -> super node, along the reverse path */
  MSG_PEERS_REQ = 9,
  MSG_PEERS = 10,
  MSG_NAT_INFO = 11, /* super node -> leaf: its STUN port, TURN credentials */
  MSG_SIGNAL = 12,   /* ICE offer/answer between leaves, relayed by super nodes */
  MSG_GET_TREE = 13, /* leaf -> leaf: chunk hashes of a content id */
  MSG_TREE = 14,
  MSG_GET_CHUNK = 15,  /* leaf -> leaf: one chunk */
  MSG_CHUNK = 16,      /* one piece (<= WIRE_PIECE bytes) of a chunk */
  MSG_XFER_ERROR = 17, /* leaf -> leaf: the request cannot be served */
  /* Groups (supernode/GROUPS.md). */
  MSG_GROUP_STATE = 18, /* a grouped node's view; the leader's is the heartbeat */
  MSG_REPL = 19,        /* leader -> backup: one replicated change */
  MSG_REPL_ACK = 20,    /* backup -> leader */
  MSG_WATCH = 21,       /* leaf -> backup: is my leader alive? */
  MSG_ATTACHED = 22,    /* leader -> leaf: you are attached; what I hold of yours */
  MSG_REFUSE = 23,      /* super node -> dialer: not taken; try these instead */
  MSG_HOSTS = 24,       /* super node -> leaf or super node: others and their load */
} WireType;

/* Hosts per HOSTS or REFUSE frame. */
#define WIRE_MAX_HOSTS 32
/* WireHost load: unknown. */
#define WIRE_LOAD_UNKNOWN 255

/* Why a super node refused a session (REFUSE). */
typedef enum {
  REFUSE_LINKS_FULL = 1,  /* super node: enough mesh links; dial the hosts given */
  REFUSE_LEAVES_FULL = 2, /* leaf: max-leaves reached; attach to a host given */
  REFUSE_BUSY = 3,        /* a budget is exhausted for now: come back after retry_ms */
  REFUSE_SHUTDOWN = 4,    /* the node is stopping */
} WireRefuseReason;

#define WIRE_MAX_GROUP 64   /* bytes of a group name */
#define WIRE_MAX_MEMBERS 32 /* members and mesh links per GROUP_STATE */

typedef enum {
  REPL_SNAPSHOT_BEGIN = 1, /* the backup drops everything it had */
  REPL_SNAPSHOT_END = 2,
  REPL_LEAF_UP = 3,
  REPL_LEAF_DOWN = 4,
  REPL_PUBLISH = 5, /* entries of one leaf; reset replaces what it had */
} WireReplOp;

typedef enum {
  GROLE_JOINING = 0,
  GROLE_LEADER = 1,
  GROLE_BACKUP = 2,
  GROLE_STANDBY = 3
} WireGroupRole;

typedef enum {
  SIGNAL_OFFER = 1,  /* flooded towards dst like a query */
  SIGNAL_ANSWER = 2, /* routed back along the offer's reverse path */
  SIGNAL_REJECT = 3, /* ditto: dst will not connect (text says why) */
} WireSignalKind;

typedef enum { XFER_NOT_FOUND = 1, XFER_BUSY = 2, XFER_BAD_REQUEST = 3 } WireXferError;

/* ROLE_WATCH: a leaf's idle session to its group's backup. */
typedef enum { ROLE_LEAF = 1, ROLE_SUPER = 2, ROLE_WATCH = 3 } WireRole;
typedef enum { QUERY_KEYWORDS = 0, QUERY_CONTENT_ID = 1 } WireQueryKind;

typedef struct {
  const char *p; /* borrowed, not NUL-terminated */
  uint16_t len;
} WireStr;

typedef struct {
  WireStr name;
  uint64_t size;
  uint8_t cid[WIRE_CID_LEN];
} WireEntry;

typedef struct {
  WireStr name;
  uint64_t size;
  uint8_t cid[WIRE_CID_LEN];
  uint8_t peer[WIRE_ID_LEN]; /* node id of the leaf that shares it */
} WireHit;

typedef struct {
  uint8_t id[WIRE_ID_LEN];
  WireStr addr;
} WirePeer;

/* A super node as HOSTS and REFUSE name it: its node id, the address it
 * listens on, and its load in percent as the sender last knew it (0-100, or
 * WIRE_LOAD_UNKNOWN): leaf_load = leaves / max-leaves, link_load = mesh
 * links / max links. A claim like any other: the receiver dials it to
 * learn the truth. */
typedef struct {
  uint8_t id[WIRE_ID_LEN];
  WireStr addr;
  uint8_t leaf_load;
  uint8_t link_load;
} WireHost;

typedef struct {
  uint8_t type; /* WireType */
  union {
    struct {
      uint8_t role;
      WireStr listen; /* super nodes: the address others may dial; else empty */
      WireStr agent;
      /* super nodes of an admitted network: their certificate (netcert.h),
       * opaque here; cert_len 0 when none, and then not on the wire at all
       * (u16 length + bytes after the agent only when there is one) */
      const uint8_t *cert; /* borrowed */
      uint16_t cert_len;
    } hello;
    uint64_t ping; /* PING and PONG nonce (WIRE_PING_SPARE) */
    struct {
      bool reset; /* first batch of a manifest: replace what was published */
      uint16_t count;
      WireEntry *entries;
    } publish;
    struct {
      uint32_t req;
      uint8_t ttl;
      uint8_t kind;
      WireStr text;
    } search;
    struct {
      uint8_t qid[WIRE_QID_LEN];
      uint8_t ttl; /* hops still allowed after the receiver */
      uint8_t kind;
      WireStr text;
    } query;
    struct {
      uint32_t req;              /* SEARCH_HITS */
      uint8_t qid[WIRE_QID_LEN]; /* QUERY_HITS */
      uint16_t count;
      WireHit *hits;
    } hits;
    struct {
      uint16_t count;
      WirePeer *peers;
    } peers;
    struct {
      uint16_t stun_port; /* on the super node's address; 0: none */
      WireStr turn_addr;  /* "ip:port" or empty */
      WireStr turn_user;
      WireStr turn_pass;
      uint64_t turn_expiry; /* unix seconds */
    } nat;
    struct {
      uint8_t sid[WIRE_QID_LEN];
      uint8_t ttl;
      uint8_t kind;             /* WireSignalKind */
      uint8_t src[WIRE_ID_LEN]; /* set by the sender's super node */
      uint8_t dst[WIRE_ID_LEN];
      WireStr text;
    } signal;
    struct {
      uint8_t cid[WIRE_CID_LEN];
      uint32_t first;
      uint16_t count;
    } get_tree;
    struct {
      uint8_t cid[WIRE_CID_LEN];
      uint64_t size;
      uint32_t total; /* chunks in the file */
      uint32_t first;
      uint16_t count;
      const uint8_t *hashes; /* count * 32 bytes, borrowed */
    } tree;
    struct {
      uint8_t cid[WIRE_CID_LEN];
      uint32_t index;
    } get_chunk;
    struct {
      uint8_t cid[WIRE_CID_LEN];
      uint32_t index;
      uint32_t offset; /* within the chunk */
      uint16_t len;
      const uint8_t *data; /* borrowed */
    } chunk;
    struct {
      uint8_t cid[WIRE_CID_LEN];
      uint8_t code; /* WireXferError */
    } xfer_error;
    struct {
      uint8_t role; /* WireGroupRole of the sender */
      WireStr group;
      uint64_t term;
      uint32_t hb_ms;
      uint8_t leader[WIRE_ID_LEN]; /* all zero: no leader known */
      WireStr leader_addr;
      uint8_t backup[WIRE_ID_LEN]; /* all zero: no backup */
      WireStr backup_addr;
      /* keyed BLAKE2b over (group, sender id, receiver id) under the
       * group's secret: proves membership on this link; zero when the
       * group has no secret (supernode/GROUPS.md) */
      uint8_t proof[32];
      uint16_t n_members;
      WirePeer *members; /* the group's super nodes, sender included */
      uint16_t n_links;
      WireStr *links; /* the leader's other mesh neighbours */
    } group;
    struct {
      uint64_t term;
      uint64_t seq;
      uint8_t op; /* WireReplOp */
      uint8_t leaf[WIRE_ID_LEN];
      bool reset;
      uint16_t count;
      WireEntry *entries;
    } repl;
    struct {
      uint64_t term;
      uint64_t seq;
    } repl_ack;
    struct {
      uint64_t term;
      bool leader_ok;
    } watch;
    struct {
      uint64_t term;
      uint32_t count;
      uint8_t digest[32];
    } attached;
    struct {
      uint8_t reason;    /* WireRefuseReason */
      uint32_t retry_ms; /* do not dial this node again before (0: no advice) */
      uint16_t count;
      WireHost *hosts; /* others to try instead, best first */
    } refuse;
    struct {
      uint16_t count;
      WireHost *hosts;
    } hosts;
  } u;
} WireMsg;

typedef enum {
  WIRE_OK = 0,
  WIRE_ETRUNC,   /* fewer bytes than the message needs, or trailing bytes */
  WIRE_EVERSION, /* a version this build does not speak */
  WIRE_EUNKNOWN, /* unknown type: the caller may ignore it */
  WIRE_ELIMIT,   /* a declared length or count over its cap */
  WIRE_EINVALID, /* a field out of range (bad UTF-8, bad role, ...) */
  WIRE_ENOMEM,
} WireError;

/* Decodes one message. On WIRE_OK, *m borrows from p and must be released
 * with wire_msg_clear(). On error *m is cleared and needs no release. */
WireError wire_decode(const uint8_t *p, size_t len, WireMsg *m);
void wire_msg_clear(WireMsg *m);
const char *wire_error_str(WireError e);
const char *wire_type_str(uint8_t type);

/* Appends the encoding of m to out. Returns false if a field breaks a cap
 * (the caller built a bad message) or memory ran out. */
bool wire_encode(const WireMsg *m, Buf *out);

static inline WireStr wire_str(const char *s, size_t len)
{
  WireStr w = {s, (uint16_t)len};
  return w;
}

/* Strict UTF-8 check (no overlongs, no surrogates, no NUL). */
bool wire_utf8_ok(const char *p, size_t len);

/* Folds one published entry into an order-independent digest of a leaf's
 * entries (XOR of BLAKE2b-256(cid | size | name)): ATTACHED compares what a
 * leader holds for a leaf with the leaf's manifest. acc starts all zero. */
void wire_digest_entry(uint8_t acc[32], const uint8_t cid[WIRE_CID_LEN], uint64_t size,
                       const char *name, size_t name_len);

#endif
