/* wire.c - encode and decode Canopy's application messages.
 *
 * Decoding reads through a Reader whose failure sticks, checks the caps before
 * allocating anything, and rejects trailing bytes. An array is allocated only
 * after the reader proved that count * minimum-entry-size bytes are present,
 * so a peer cannot make us allocate more than it sent.
 */
#include "wire.h"

#include <sodium.h>

#include <stdlib.h>
#include <string.h>

bool wire_utf8_ok(const char *s, size_t len)
{
  const uint8_t *p = (const uint8_t *)s;
  size_t i = 0;
  while (i < len) {
    uint8_t c = p[i];
    if (c == 0)
      return false;
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t n;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (len - i <= n)
      return false;
    for (size_t k = 1; k <= n; k++) {
      if ((p[i + k] & 0xC0) != 0x80)
        return false;
      cp = cp << 6 | (p[i + k] & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

/* Reads a u16-length string capped at max bytes; sets *err on a cap or
 * encoding violation (the reader only knows about truncation). */
static WireStr rd_str(Reader *r, uint16_t max, bool allow_empty, WireError *err)
{
  WireStr s = {NULL, 0};
  uint16_t n = rd_u16(r);
  if (!rd_ok(r))
    return s;
  if (n > max) {
    *err = WIRE_ELIMIT;
    rd_fail(r);
    return s;
  }
  const uint8_t *p = rd_bytes(r, n);
  if (!p)
    return s;
  if ((!allow_empty && n == 0) || !wire_utf8_ok((const char *)p, n)) {
    *err = WIRE_EINVALID;
    rd_fail(r);
    return s;
  }
  s.p = (const char *)p;
  s.len = n;
  return s;
}

static bool wr_str(Buf *b, WireStr s, uint16_t max)
{
  if (s.len > max || (s.len && !s.p))
    return false;
  wr_u16(b, s.len);
  wr_bytes(b, s.p, s.len);
  return true;
}

/* Checks a declared count against its cap and against the bytes left, then
 * allocates. min_size is the smallest encoding of one element. */
static void *rd_array(Reader *r, uint16_t count, uint16_t cap, size_t min_size, size_t elem,
                      WireError *err)
{
  if (!rd_ok(r) || count == 0)
    return NULL;
  if (count > cap) {
    *err = WIRE_ELIMIT;
    rd_fail(r);
    return NULL;
  }
  if ((size_t)count * min_size > rd_left(r)) {
    rd_fail(r);
    return NULL;
  }
  void *a = calloc(count, elem);
  if (!a) {
    *err = WIRE_ENOMEM;
    rd_fail(r);
  }
  return a;
}

/* A flags byte (bit 0: reset) and a counted array of published entries,
 * as PUBLISH and REPL carry them. */
static WireEntry *rd_entries(Reader *r, bool *reset, uint16_t *count, WireError *err)
{
  uint8_t flags = rd_u8(r);
  *reset = flags & 1;
  if (flags & ~1u)
    *err = WIRE_EINVALID;
  *count = rd_u16(r);
  WireEntry *e =
      rd_array(r, *count, WIRE_MAX_ENTRIES, 2 + 1 + 8 + WIRE_CID_LEN, sizeof(WireEntry), err);
  for (uint16_t i = 0; e && i < *count; i++) {
    e[i].name = rd_str(r, WIRE_MAX_NAME, false, err);
    e[i].size = rd_u64(r);
    rd_copy(r, e[i].cid, WIRE_CID_LEN);
  }
  return e;
}

static void rd_hits(Reader *r, WireMsg *m, WireError *err)
{
  m->u.hits.count = rd_u16(r);
  m->u.hits.hits = rd_array(r, m->u.hits.count, WIRE_MAX_HITS,
                            2 + 1 + 8 + WIRE_CID_LEN + WIRE_ID_LEN, sizeof(WireHit), err);
  for (uint16_t i = 0; m->u.hits.hits && i < m->u.hits.count; i++) {
    WireHit *h = &m->u.hits.hits[i];
    h->name = rd_str(r, WIRE_MAX_NAME, false, err);
    h->size = rd_u64(r);
    rd_copy(r, h->cid, WIRE_CID_LEN);
    rd_copy(r, h->peer, WIRE_ID_LEN);
  }
}

static WireHost *rd_hosts(Reader *r, uint16_t *count, WireError *err)
{
  *count = rd_u16(r);
  WireHost *h = rd_array(r, *count, WIRE_MAX_HOSTS, WIRE_ID_LEN + 2 + 1 + 2, sizeof(WireHost), err);
  for (uint16_t i = 0; h && i < *count; i++) {
    rd_copy(r, h[i].id, WIRE_ID_LEN);
    h[i].addr = rd_str(r, WIRE_MAX_ADDR, false, err);
    h[i].leaf_load = rd_u8(r);
    h[i].link_load = rd_u8(r);
    if (rd_ok(r) && ((h[i].leaf_load > 100 && h[i].leaf_load != WIRE_LOAD_UNKNOWN) ||
                     (h[i].link_load > 100 && h[i].link_load != WIRE_LOAD_UNKNOWN)))
      *err = WIRE_EINVALID;
  }
  return h;
}

WireError wire_decode(const uint8_t *p, size_t len, WireMsg *m)
{
  WireError err = WIRE_OK;
  Reader r;
  memset(m, 0, sizeof *m);
  rd_init(&r, p, len);

  uint8_t version = rd_u8(&r);
  m->type = rd_u8(&r);
  if (!rd_ok(&r))
    return WIRE_ETRUNC;
  if (version != WIRE_VERSION)
    return WIRE_EVERSION;

  switch (m->type) {
  case MSG_HELLO:
    m->u.hello.role = rd_u8(&r);
    m->u.hello.listen = rd_str(&r, WIRE_MAX_ADDR, true, &err);
    m->u.hello.agent = rd_str(&r, WIRE_MAX_AGENT, true, &err);
    /* The certificate came later: a HELLO without one ends at the agent,
     * as it always did, so nodes outside a network speak to older ones. */
    if (rd_left(&r) > 0) {
      m->u.hello.cert_len = rd_u16(&r);
      if (m->u.hello.cert_len > WIRE_MAX_CERT)
        err = WIRE_ELIMIT;
      else if (m->u.hello.cert_len == 0 && rd_ok(&r))
        err = WIRE_EINVALID; /* absent is written as nothing: one encoding */
      else
        m->u.hello.cert = rd_bytes(&r, m->u.hello.cert_len);
    }
    if (rd_ok(&r) && m->u.hello.role != ROLE_LEAF && m->u.hello.role != ROLE_SUPER &&
        m->u.hello.role != ROLE_WATCH)
      err = WIRE_EINVALID;
    break;
  case MSG_PING:
  case MSG_PONG:
    m->u.ping = rd_u64(&r);
    break;
  case MSG_PUBLISH:
    m->u.publish.entries = rd_entries(&r, &m->u.publish.reset, &m->u.publish.count, &err);
    break;
  case MSG_SEARCH:
    m->u.search.req = rd_u32(&r);
    m->u.search.ttl = rd_u8(&r);
    m->u.search.kind = rd_u8(&r);
    m->u.search.text = rd_str(&r, WIRE_MAX_QUERY, false, &err);
    if (rd_ok(&r) && (m->u.search.ttl > WIRE_MAX_TTL || m->u.search.kind > QUERY_CONTENT_ID))
      err = WIRE_EINVALID;
    break;
  case MSG_QUERY:
    rd_copy(&r, m->u.query.qid, WIRE_QID_LEN);
    m->u.query.ttl = rd_u8(&r);
    m->u.query.kind = rd_u8(&r);
    m->u.query.text = rd_str(&r, WIRE_MAX_QUERY, false, &err);
    if (rd_ok(&r) && (m->u.query.ttl > WIRE_MAX_TTL || m->u.query.kind > QUERY_CONTENT_ID))
      err = WIRE_EINVALID;
    break;
  case MSG_SEARCH_HITS:
    m->u.hits.req = rd_u32(&r);
    rd_hits(&r, m, &err);
    break;
  case MSG_QUERY_HITS:
    rd_copy(&r, m->u.hits.qid, WIRE_QID_LEN);
    rd_hits(&r, m, &err);
    break;
  case MSG_PEERS_REQ:
    break;
  case MSG_PEERS:
    m->u.peers.count = rd_u16(&r);
    m->u.peers.peers =
        rd_array(&r, m->u.peers.count, WIRE_MAX_PEERS, WIRE_ID_LEN + 2 + 1, sizeof(WirePeer), &err);
    for (uint16_t i = 0; m->u.peers.peers && i < m->u.peers.count; i++) {
      rd_copy(&r, m->u.peers.peers[i].id, WIRE_ID_LEN);
      m->u.peers.peers[i].addr = rd_str(&r, WIRE_MAX_ADDR, false, &err);
    }
    break;
  case MSG_NAT_INFO:
    m->u.nat.stun_port = rd_u16(&r);
    m->u.nat.turn_addr = rd_str(&r, WIRE_MAX_ADDR, true, &err);
    m->u.nat.turn_user = rd_str(&r, WIRE_MAX_ADDR, true, &err);
    m->u.nat.turn_pass = rd_str(&r, WIRE_MAX_ADDR, true, &err);
    m->u.nat.turn_expiry = rd_u64(&r);
    break;
  case MSG_SIGNAL:
    rd_copy(&r, m->u.signal.sid, WIRE_QID_LEN);
    m->u.signal.ttl = rd_u8(&r);
    m->u.signal.kind = rd_u8(&r);
    rd_copy(&r, m->u.signal.src, WIRE_ID_LEN);
    rd_copy(&r, m->u.signal.dst, WIRE_ID_LEN);
    m->u.signal.text = rd_str(&r, WIRE_MAX_SIGNAL, true, &err);
    if (rd_ok(&r) && (m->u.signal.ttl > WIRE_MAX_TTL || m->u.signal.kind < SIGNAL_OFFER ||
                      m->u.signal.kind > SIGNAL_REJECT))
      err = WIRE_EINVALID;
    break;
  case MSG_GET_TREE:
    rd_copy(&r, m->u.get_tree.cid, WIRE_CID_LEN);
    m->u.get_tree.first = rd_u32(&r);
    m->u.get_tree.count = rd_u16(&r);
    if (rd_ok(&r) && (m->u.get_tree.count == 0 || m->u.get_tree.count > WIRE_MAX_TREE))
      err = WIRE_ELIMIT;
    break;
  case MSG_TREE:
    rd_copy(&r, m->u.tree.cid, WIRE_CID_LEN);
    m->u.tree.size = rd_u64(&r);
    m->u.tree.total = rd_u32(&r);
    m->u.tree.first = rd_u32(&r);
    m->u.tree.count = rd_u16(&r);
    if (rd_ok(&r) && m->u.tree.count > WIRE_MAX_TREE) {
      err = WIRE_ELIMIT;
      break;
    }
    m->u.tree.hashes = rd_bytes(&r, (size_t)m->u.tree.count * 32);
    if (rd_ok(&r) && ((uint64_t)m->u.tree.first + m->u.tree.count > m->u.tree.total))
      err = WIRE_EINVALID;
    break;
  case MSG_GET_CHUNK:
    rd_copy(&r, m->u.get_chunk.cid, WIRE_CID_LEN);
    m->u.get_chunk.index = rd_u32(&r);
    break;
  case MSG_CHUNK:
    rd_copy(&r, m->u.chunk.cid, WIRE_CID_LEN);
    m->u.chunk.index = rd_u32(&r);
    m->u.chunk.offset = rd_u32(&r);
    m->u.chunk.len = rd_u16(&r);
    if (rd_ok(&r) && (m->u.chunk.len > WIRE_PIECE)) {
      err = WIRE_ELIMIT;
      break;
    }
    m->u.chunk.data = rd_bytes(&r, m->u.chunk.len);
    break;
  case MSG_XFER_ERROR:
    rd_copy(&r, m->u.xfer_error.cid, WIRE_CID_LEN);
    m->u.xfer_error.code = rd_u8(&r);
    break;
  case MSG_GROUP_STATE:
    m->u.group.role = rd_u8(&r);
    m->u.group.group = rd_str(&r, WIRE_MAX_GROUP, false, &err);
    m->u.group.term = rd_u64(&r);
    m->u.group.hb_ms = rd_u32(&r);
    rd_copy(&r, m->u.group.leader, WIRE_ID_LEN);
    m->u.group.leader_addr = rd_str(&r, WIRE_MAX_ADDR, true, &err);
    rd_copy(&r, m->u.group.backup, WIRE_ID_LEN);
    m->u.group.backup_addr = rd_str(&r, WIRE_MAX_ADDR, true, &err);
    rd_copy(&r, m->u.group.proof, 32);
    m->u.group.n_members = rd_u16(&r);
    m->u.group.members = rd_array(&r, m->u.group.n_members, WIRE_MAX_MEMBERS, WIRE_ID_LEN + 2,
                                  sizeof(WirePeer), &err);
    for (uint16_t i = 0; m->u.group.members && i < m->u.group.n_members; i++) {
      rd_copy(&r, m->u.group.members[i].id, WIRE_ID_LEN);
      m->u.group.members[i].addr = rd_str(&r, WIRE_MAX_ADDR, true, &err);
    }
    m->u.group.n_links = rd_u16(&r);
    m->u.group.links =
        rd_array(&r, m->u.group.n_links, WIRE_MAX_MEMBERS, 2 + 1, sizeof(WireStr), &err);
    for (uint16_t i = 0; m->u.group.links && i < m->u.group.n_links; i++)
      m->u.group.links[i] = rd_str(&r, WIRE_MAX_ADDR, false, &err);
    if (rd_ok(&r) && (m->u.group.role > GROLE_STANDBY || m->u.group.hb_ms == 0))
      err = WIRE_EINVALID;
    break;
  case MSG_REPL:
    m->u.repl.term = rd_u64(&r);
    m->u.repl.seq = rd_u64(&r);
    m->u.repl.op = rd_u8(&r);
    rd_copy(&r, m->u.repl.leaf, WIRE_ID_LEN);
    m->u.repl.entries = rd_entries(&r, &m->u.repl.reset, &m->u.repl.count, &err);
    if (rd_ok(&r) && (m->u.repl.op < REPL_SNAPSHOT_BEGIN || m->u.repl.op > REPL_PUBLISH ||
                      (m->u.repl.op != REPL_PUBLISH && m->u.repl.count)))
      err = WIRE_EINVALID;
    break;
  case MSG_REPL_ACK:
    m->u.repl_ack.term = rd_u64(&r);
    m->u.repl_ack.seq = rd_u64(&r);
    break;
  case MSG_WATCH: {
    m->u.watch.term = rd_u64(&r);
    uint8_t ok = rd_u8(&r);
    m->u.watch.leader_ok = ok == 1;
    if (rd_ok(&r) && ok > 1)
      err = WIRE_EINVALID;
    break;
  }
  case MSG_ATTACHED:
    m->u.attached.term = rd_u64(&r);
    m->u.attached.count = rd_u32(&r);
    rd_copy(&r, m->u.attached.digest, 32);
    break;
  case MSG_REFUSE:
    m->u.refuse.reason = rd_u8(&r);
    m->u.refuse.retry_ms = rd_u32(&r);
    if (rd_ok(&r) &&
        (m->u.refuse.reason < REFUSE_LINKS_FULL || m->u.refuse.reason > REFUSE_SHUTDOWN))
      err = WIRE_EINVALID;
    m->u.refuse.hosts = rd_hosts(&r, &m->u.refuse.count, &err);
    break;
  case MSG_HOSTS:
    m->u.hosts.hosts = rd_hosts(&r, &m->u.hosts.count, &err);
    break;
  default:
    return WIRE_EUNKNOWN;
  }

  if (err == WIRE_OK && !rd_done(&r))
    err = WIRE_ETRUNC;
  if (err != WIRE_OK)
    wire_msg_clear(m);
  return err;
}

void wire_msg_clear(WireMsg *m)
{
  switch (m->type) {
  case MSG_PUBLISH:
    free(m->u.publish.entries);
    break;
  case MSG_SEARCH_HITS:
  case MSG_QUERY_HITS:
    free(m->u.hits.hits);
    break;
  case MSG_PEERS:
    free(m->u.peers.peers);
    break;
  case MSG_GROUP_STATE:
    free(m->u.group.members);
    free(m->u.group.links);
    break;
  case MSG_REPL:
    free(m->u.repl.entries);
    break;
  case MSG_REFUSE:
    free(m->u.refuse.hosts);
    break;
  case MSG_HOSTS:
    free(m->u.hosts.hosts);
    break;
  default:
    break;
  }
  uint8_t type = m->type;
  memset(m, 0, sizeof *m);
  m->type = type;
}

static bool wr_entries(Buf *b, bool reset, uint16_t count, const WireEntry *e)
{
  wr_u8(b, reset ? 1 : 0);
  if (count > WIRE_MAX_ENTRIES)
    return false;
  wr_u16(b, count);
  for (uint16_t i = 0; i < count; i++) {
    if (e[i].name.len == 0 || !wr_str(b, e[i].name, WIRE_MAX_NAME))
      return false;
    wr_u64(b, e[i].size);
    wr_bytes(b, e[i].cid, WIRE_CID_LEN);
  }
  return true;
}

static bool wr_hosts(Buf *b, uint16_t count, const WireHost *h)
{
  if (count > WIRE_MAX_HOSTS)
    return false;
  wr_u16(b, count);
  for (uint16_t i = 0; i < count; i++) {
    wr_bytes(b, h[i].id, WIRE_ID_LEN);
    if (h[i].addr.len == 0 || !wr_str(b, h[i].addr, WIRE_MAX_ADDR))
      return false;
    bool ok_leaf = h[i].leaf_load <= 100 || h[i].leaf_load == WIRE_LOAD_UNKNOWN;
    bool ok_link = h[i].link_load <= 100 || h[i].link_load == WIRE_LOAD_UNKNOWN;
    if (!ok_leaf || !ok_link)
      return false;
    wr_u8(b, h[i].leaf_load);
    wr_u8(b, h[i].link_load);
  }
  return true;
}

static bool wr_hits(Buf *b, const WireMsg *m)
{
  if (m->u.hits.count > WIRE_MAX_HITS)
    return false;
  wr_u16(b, m->u.hits.count);
  for (uint16_t i = 0; i < m->u.hits.count; i++) {
    const WireHit *h = &m->u.hits.hits[i];
    if (h->name.len == 0 || !wr_str(b, h->name, WIRE_MAX_NAME))
      return false;
    wr_u64(b, h->size);
    wr_bytes(b, h->cid, WIRE_CID_LEN);
    wr_bytes(b, h->peer, WIRE_ID_LEN);
  }
  return true;
}

bool wire_encode(const WireMsg *m, Buf *b)
{
  size_t start = b->len;
  bool ok = true;
  wr_u8(b, WIRE_VERSION);
  wr_u8(b, m->type);
  switch (m->type) {
  case MSG_HELLO:
    wr_u8(b, m->u.hello.role);
    ok = wr_str(b, m->u.hello.listen, WIRE_MAX_ADDR) &&
         wr_str(b, m->u.hello.agent, WIRE_MAX_AGENT) && m->u.hello.cert_len <= WIRE_MAX_CERT;
    if (m->u.hello.cert_len) {
      wr_u16(b, m->u.hello.cert_len);
      wr_bytes(b, m->u.hello.cert, m->u.hello.cert_len);
    }
    break;
  case MSG_PING:
  case MSG_PONG:
    wr_u64(b, m->u.ping);
    break;
  case MSG_PUBLISH:
    ok = wr_entries(b, m->u.publish.reset, m->u.publish.count, m->u.publish.entries);
    break;
  case MSG_SEARCH:
    wr_u32(b, m->u.search.req);
    wr_u8(b, m->u.search.ttl);
    wr_u8(b, m->u.search.kind);
    ok = m->u.search.text.len > 0 && wr_str(b, m->u.search.text, WIRE_MAX_QUERY);
    break;
  case MSG_QUERY:
    wr_bytes(b, m->u.query.qid, WIRE_QID_LEN);
    wr_u8(b, m->u.query.ttl);
    wr_u8(b, m->u.query.kind);
    ok = m->u.query.text.len > 0 && wr_str(b, m->u.query.text, WIRE_MAX_QUERY);
    break;
  case MSG_SEARCH_HITS:
    wr_u32(b, m->u.hits.req);
    ok = wr_hits(b, m);
    break;
  case MSG_QUERY_HITS:
    wr_bytes(b, m->u.hits.qid, WIRE_QID_LEN);
    ok = wr_hits(b, m);
    break;
  case MSG_PEERS_REQ:
    break;
  case MSG_PEERS:
    ok = m->u.peers.count <= WIRE_MAX_PEERS;
    wr_u16(b, m->u.peers.count);
    for (uint16_t i = 0; ok && i < m->u.peers.count; i++) {
      wr_bytes(b, m->u.peers.peers[i].id, WIRE_ID_LEN);
      ok = m->u.peers.peers[i].addr.len > 0 && wr_str(b, m->u.peers.peers[i].addr, WIRE_MAX_ADDR);
    }
    break;
  case MSG_NAT_INFO:
    wr_u16(b, m->u.nat.stun_port);
    ok = wr_str(b, m->u.nat.turn_addr, WIRE_MAX_ADDR) &&
         wr_str(b, m->u.nat.turn_user, WIRE_MAX_ADDR) &&
         wr_str(b, m->u.nat.turn_pass, WIRE_MAX_ADDR);
    wr_u64(b, m->u.nat.turn_expiry);
    break;
  case MSG_SIGNAL:
    wr_bytes(b, m->u.signal.sid, WIRE_QID_LEN);
    wr_u8(b, m->u.signal.ttl);
    wr_u8(b, m->u.signal.kind);
    wr_bytes(b, m->u.signal.src, WIRE_ID_LEN);
    wr_bytes(b, m->u.signal.dst, WIRE_ID_LEN);
    ok = wr_str(b, m->u.signal.text, WIRE_MAX_SIGNAL);
    break;
  case MSG_GET_TREE:
    wr_bytes(b, m->u.get_tree.cid, WIRE_CID_LEN);
    wr_u32(b, m->u.get_tree.first);
    wr_u16(b, m->u.get_tree.count);
    ok = m->u.get_tree.count > 0 && m->u.get_tree.count <= WIRE_MAX_TREE;
    break;
  case MSG_TREE:
    wr_bytes(b, m->u.tree.cid, WIRE_CID_LEN);
    wr_u64(b, m->u.tree.size);
    wr_u32(b, m->u.tree.total);
    wr_u32(b, m->u.tree.first);
    wr_u16(b, m->u.tree.count);
    ok = m->u.tree.count <= WIRE_MAX_TREE;
    if (ok)
      wr_bytes(b, m->u.tree.hashes, (size_t)m->u.tree.count * 32);
    break;
  case MSG_GET_CHUNK:
    wr_bytes(b, m->u.get_chunk.cid, WIRE_CID_LEN);
    wr_u32(b, m->u.get_chunk.index);
    break;
  case MSG_CHUNK:
    wr_bytes(b, m->u.chunk.cid, WIRE_CID_LEN);
    wr_u32(b, m->u.chunk.index);
    wr_u32(b, m->u.chunk.offset);
    wr_u16(b, m->u.chunk.len);
    ok = m->u.chunk.len <= WIRE_PIECE;
    if (ok)
      wr_bytes(b, m->u.chunk.data, m->u.chunk.len);
    break;
  case MSG_XFER_ERROR:
    wr_bytes(b, m->u.xfer_error.cid, WIRE_CID_LEN);
    wr_u8(b, m->u.xfer_error.code);
    break;
  case MSG_GROUP_STATE:
    wr_u8(b, m->u.group.role);
    ok = m->u.group.group.len > 0 && wr_str(b, m->u.group.group, WIRE_MAX_GROUP) &&
         m->u.group.hb_ms > 0 && m->u.group.n_members <= WIRE_MAX_MEMBERS &&
         m->u.group.n_links <= WIRE_MAX_MEMBERS;
    wr_u64(b, m->u.group.term);
    wr_u32(b, m->u.group.hb_ms);
    wr_bytes(b, m->u.group.leader, WIRE_ID_LEN);
    ok = ok && wr_str(b, m->u.group.leader_addr, WIRE_MAX_ADDR);
    wr_bytes(b, m->u.group.backup, WIRE_ID_LEN);
    ok = ok && wr_str(b, m->u.group.backup_addr, WIRE_MAX_ADDR);
    wr_bytes(b, m->u.group.proof, 32);
    wr_u16(b, m->u.group.n_members);
    for (uint16_t i = 0; ok && i < m->u.group.n_members; i++) {
      wr_bytes(b, m->u.group.members[i].id, WIRE_ID_LEN);
      ok = wr_str(b, m->u.group.members[i].addr, WIRE_MAX_ADDR);
    }
    wr_u16(b, m->u.group.n_links);
    for (uint16_t i = 0; ok && i < m->u.group.n_links; i++)
      ok = m->u.group.links[i].len > 0 && wr_str(b, m->u.group.links[i], WIRE_MAX_ADDR);
    break;
  case MSG_REPL:
    wr_u64(b, m->u.repl.term);
    wr_u64(b, m->u.repl.seq);
    wr_u8(b, m->u.repl.op);
    wr_bytes(b, m->u.repl.leaf, WIRE_ID_LEN);
    ok = wr_entries(b, m->u.repl.reset, m->u.repl.count, m->u.repl.entries);
    break;
  case MSG_REPL_ACK:
    wr_u64(b, m->u.repl_ack.term);
    wr_u64(b, m->u.repl_ack.seq);
    break;
  case MSG_WATCH:
    wr_u64(b, m->u.watch.term);
    wr_u8(b, m->u.watch.leader_ok ? 1 : 0);
    break;
  case MSG_ATTACHED:
    wr_u64(b, m->u.attached.term);
    wr_u32(b, m->u.attached.count);
    wr_bytes(b, m->u.attached.digest, 32);
    break;
  case MSG_REFUSE:
    ok = m->u.refuse.reason >= REFUSE_LINKS_FULL && m->u.refuse.reason <= REFUSE_SHUTDOWN;
    wr_u8(b, m->u.refuse.reason);
    wr_u32(b, m->u.refuse.retry_ms);
    ok = ok && wr_hosts(b, m->u.refuse.count, m->u.refuse.hosts);
    break;
  case MSG_HOSTS:
    ok = wr_hosts(b, m->u.hosts.count, m->u.hosts.hosts);
    break;
  default:
    ok = false;
  }
  if (!ok || b->failed) {
    b->len = start;
    return false;
  }
  return true;
}

const char *wire_error_str(WireError e)
{
  switch (e) {
  case WIRE_OK:
    return "ok";
  case WIRE_ETRUNC:
    return "truncated or trailing bytes";
  case WIRE_EVERSION:
    return "unsupported protocol version";
  case WIRE_EUNKNOWN:
    return "unknown message type";
  case WIRE_ELIMIT:
    return "declared length or count over its cap";
  case WIRE_EINVALID:
    return "invalid field";
  case WIRE_ENOMEM:
    return "out of memory";
  }
  return "?";
}

void wire_digest_entry(uint8_t acc[32], const uint8_t cid[WIRE_CID_LEN], uint64_t size,
                       const char *name, size_t name_len)
{
  uint8_t sz[8], h[32];
  for (int i = 0; i < 8; i++)
    sz[i] = (uint8_t)(size >> (56 - 8 * i));
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, sizeof h);
  crypto_generichash_update(&st, cid, WIRE_CID_LEN);
  crypto_generichash_update(&st, sz, sizeof sz);
  crypto_generichash_update(&st, (const uint8_t *)name, name_len);
  crypto_generichash_final(&st, h, sizeof h);
  for (int i = 0; i < 32; i++)
    acc[i] ^= h[i];
}

const char *wire_type_str(uint8_t type)
{
  static const char *names[] = {
      "?",     "HELLO",      "PING",      "PONG",       "PUBLISH",     "SEARCH", "SEARCH_HITS",
      "QUERY", "QUERY_HITS", "PEERS_REQ", "PEERS",      "NAT_INFO",    "SIGNAL", "GET_TREE",
      "TREE",  "GET_CHUNK",  "CHUNK",     "XFER_ERROR", "GROUP_STATE", "REPL",   "REPL_ACK",
      "WATCH", "ATTACHED",   "REFUSE",    "HOSTS"};
  return type < sizeof names / sizeof names[0] ? names[type] : "?";
}
