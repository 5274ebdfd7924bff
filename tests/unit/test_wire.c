/* test_wire.c - the application message codec: round trips, a truncation
 * sweep, and every cap and validity check a peer can run into. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wire.h"

#define S(lit) wire_str(lit, sizeof lit - 1)

static void fill(uint8_t *p, size_t n, uint8_t seed)
{
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)(seed + i * 13);
}

static void assert_str_eq(WireStr a, WireStr b)
{
  assert_int_equal(a.len, b.len);
  if (a.len)
    assert_memory_equal(a.p, b.p, a.len);
}

/* Compares every field of two messages of the same type. */
static void assert_msg_eq(const WireMsg *a, const WireMsg *b)
{
  assert_int_equal(a->type, b->type);
  switch (a->type) {
  case MSG_HELLO:
    assert_int_equal(a->u.hello.role, b->u.hello.role);
    assert_str_eq(a->u.hello.listen, b->u.hello.listen);
    assert_str_eq(a->u.hello.agent, b->u.hello.agent);
    assert_int_equal(a->u.hello.cert_len, b->u.hello.cert_len);
    if (a->u.hello.cert_len)
      assert_memory_equal(a->u.hello.cert, b->u.hello.cert, a->u.hello.cert_len);
    break;
  case MSG_PING:
  case MSG_PONG:
    assert_true(a->u.ping == b->u.ping);
    break;
  case MSG_PUBLISH:
    assert_int_equal(a->u.publish.reset, b->u.publish.reset);
    assert_int_equal(a->u.publish.count, b->u.publish.count);
    for (uint16_t i = 0; i < a->u.publish.count; i++) {
      const WireEntry *x = &a->u.publish.entries[i], *y = &b->u.publish.entries[i];
      assert_str_eq(x->name, y->name);
      assert_true(x->size == y->size);
      assert_memory_equal(x->cid, y->cid, WIRE_CID_LEN);
    }
    break;
  case MSG_SEARCH:
    assert_int_equal(a->u.search.req, b->u.search.req);
    assert_int_equal(a->u.search.ttl, b->u.search.ttl);
    assert_int_equal(a->u.search.kind, b->u.search.kind);
    assert_str_eq(a->u.search.text, b->u.search.text);
    break;
  case MSG_QUERY:
    assert_memory_equal(a->u.query.qid, b->u.query.qid, WIRE_QID_LEN);
    assert_int_equal(a->u.query.ttl, b->u.query.ttl);
    assert_int_equal(a->u.query.kind, b->u.query.kind);
    assert_str_eq(a->u.query.text, b->u.query.text);
    break;
  case MSG_SEARCH_HITS:
  case MSG_QUERY_HITS:
    if (a->type == MSG_SEARCH_HITS)
      assert_int_equal(a->u.hits.req, b->u.hits.req);
    else
      assert_memory_equal(a->u.hits.qid, b->u.hits.qid, WIRE_QID_LEN);
    assert_int_equal(a->u.hits.count, b->u.hits.count);
    for (uint16_t i = 0; i < a->u.hits.count; i++) {
      const WireHit *x = &a->u.hits.hits[i], *y = &b->u.hits.hits[i];
      assert_str_eq(x->name, y->name);
      assert_true(x->size == y->size);
      assert_memory_equal(x->cid, y->cid, WIRE_CID_LEN);
      assert_memory_equal(x->peer, y->peer, WIRE_ID_LEN);
    }
    break;
  case MSG_PEERS_REQ:
    break;
  case MSG_PEERS:
    assert_int_equal(a->u.peers.count, b->u.peers.count);
    for (uint16_t i = 0; i < a->u.peers.count; i++) {
      assert_memory_equal(a->u.peers.peers[i].id, b->u.peers.peers[i].id, WIRE_ID_LEN);
      assert_str_eq(a->u.peers.peers[i].addr, b->u.peers.peers[i].addr);
    }
    break;
  case MSG_NAT_INFO:
    assert_int_equal(a->u.nat.stun_port, b->u.nat.stun_port);
    assert_str_eq(a->u.nat.turn_addr, b->u.nat.turn_addr);
    assert_str_eq(a->u.nat.turn_user, b->u.nat.turn_user);
    assert_str_eq(a->u.nat.turn_pass, b->u.nat.turn_pass);
    assert_int_equal(a->u.nat.turn_expiry, b->u.nat.turn_expiry);
    break;
  case MSG_SIGNAL:
    assert_memory_equal(a->u.signal.sid, b->u.signal.sid, WIRE_QID_LEN);
    assert_int_equal(a->u.signal.ttl, b->u.signal.ttl);
    assert_int_equal(a->u.signal.kind, b->u.signal.kind);
    assert_memory_equal(a->u.signal.src, b->u.signal.src, WIRE_ID_LEN);
    assert_memory_equal(a->u.signal.dst, b->u.signal.dst, WIRE_ID_LEN);
    assert_str_eq(a->u.signal.text, b->u.signal.text);
    break;
  case MSG_GET_TREE:
    assert_memory_equal(a->u.get_tree.cid, b->u.get_tree.cid, WIRE_CID_LEN);
    assert_int_equal(a->u.get_tree.first, b->u.get_tree.first);
    assert_int_equal(a->u.get_tree.count, b->u.get_tree.count);
    break;
  case MSG_TREE:
    assert_memory_equal(a->u.tree.cid, b->u.tree.cid, WIRE_CID_LEN);
    assert_int_equal(a->u.tree.size, b->u.tree.size);
    assert_int_equal(a->u.tree.total, b->u.tree.total);
    assert_int_equal(a->u.tree.first, b->u.tree.first);
    assert_int_equal(a->u.tree.count, b->u.tree.count);
    if (a->u.tree.count)
      assert_memory_equal(a->u.tree.hashes, b->u.tree.hashes, (size_t)a->u.tree.count * 32);
    break;
  case MSG_GET_CHUNK:
    assert_memory_equal(a->u.get_chunk.cid, b->u.get_chunk.cid, WIRE_CID_LEN);
    assert_int_equal(a->u.get_chunk.index, b->u.get_chunk.index);
    break;
  case MSG_CHUNK:
    assert_memory_equal(a->u.chunk.cid, b->u.chunk.cid, WIRE_CID_LEN);
    assert_int_equal(a->u.chunk.index, b->u.chunk.index);
    assert_int_equal(a->u.chunk.offset, b->u.chunk.offset);
    assert_int_equal(a->u.chunk.len, b->u.chunk.len);
    if (a->u.chunk.len)
      assert_memory_equal(a->u.chunk.data, b->u.chunk.data, a->u.chunk.len);
    break;
  case MSG_XFER_ERROR:
    assert_memory_equal(a->u.xfer_error.cid, b->u.xfer_error.cid, WIRE_CID_LEN);
    assert_int_equal(a->u.xfer_error.code, b->u.xfer_error.code);
    break;
  case MSG_GROUP_STATE:
    assert_int_equal(a->u.group.role, b->u.group.role);
    assert_str_eq(a->u.group.group, b->u.group.group);
    assert_true(a->u.group.term == b->u.group.term);
    assert_int_equal(a->u.group.hb_ms, b->u.group.hb_ms);
    assert_memory_equal(a->u.group.leader, b->u.group.leader, WIRE_ID_LEN);
    assert_str_eq(a->u.group.leader_addr, b->u.group.leader_addr);
    assert_memory_equal(a->u.group.backup, b->u.group.backup, WIRE_ID_LEN);
    assert_str_eq(a->u.group.backup_addr, b->u.group.backup_addr);
    assert_memory_equal(a->u.group.proof, b->u.group.proof, 32);
    assert_int_equal(a->u.group.n_members, b->u.group.n_members);
    for (uint16_t i = 0; i < a->u.group.n_members; i++) {
      assert_memory_equal(a->u.group.members[i].id, b->u.group.members[i].id, WIRE_ID_LEN);
      assert_str_eq(a->u.group.members[i].addr, b->u.group.members[i].addr);
    }
    assert_int_equal(a->u.group.n_links, b->u.group.n_links);
    for (uint16_t i = 0; i < a->u.group.n_links; i++)
      assert_str_eq(a->u.group.links[i], b->u.group.links[i]);
    break;
  case MSG_REPL:
    assert_true(a->u.repl.term == b->u.repl.term && a->u.repl.seq == b->u.repl.seq);
    assert_int_equal(a->u.repl.op, b->u.repl.op);
    assert_memory_equal(a->u.repl.leaf, b->u.repl.leaf, WIRE_ID_LEN);
    assert_int_equal(a->u.repl.reset, b->u.repl.reset);
    assert_int_equal(a->u.repl.count, b->u.repl.count);
    for (uint16_t i = 0; i < a->u.repl.count; i++) {
      assert_str_eq(a->u.repl.entries[i].name, b->u.repl.entries[i].name);
      assert_true(a->u.repl.entries[i].size == b->u.repl.entries[i].size);
      assert_memory_equal(a->u.repl.entries[i].cid, b->u.repl.entries[i].cid, WIRE_CID_LEN);
    }
    break;
  case MSG_REPL_ACK:
    assert_true(a->u.repl_ack.term == b->u.repl_ack.term);
    assert_true(a->u.repl_ack.seq == b->u.repl_ack.seq);
    break;
  case MSG_WATCH:
    assert_true(a->u.watch.term == b->u.watch.term);
    assert_int_equal(a->u.watch.leader_ok, b->u.watch.leader_ok);
    break;
  case MSG_ATTACHED:
    assert_true(a->u.attached.term == b->u.attached.term);
    assert_int_equal(a->u.attached.count, b->u.attached.count);
    assert_memory_equal(a->u.attached.digest, b->u.attached.digest, 32);
    break;
  case MSG_REFUSE:
  case MSG_HOSTS: {
    const WireHost *ha = a->type == MSG_REFUSE ? a->u.refuse.hosts : a->u.hosts.hosts;
    const WireHost *hb = b->type == MSG_REFUSE ? b->u.refuse.hosts : b->u.hosts.hosts;
    uint16_t n = a->type == MSG_REFUSE ? a->u.refuse.count : a->u.hosts.count;
    if (a->type == MSG_REFUSE) {
      assert_int_equal(a->u.refuse.reason, b->u.refuse.reason);
      assert_int_equal(a->u.refuse.retry_ms, b->u.refuse.retry_ms);
      assert_int_equal(a->u.refuse.count, b->u.refuse.count);
    } else {
      assert_int_equal(a->u.hosts.count, b->u.hosts.count);
    }
    for (uint16_t i = 0; i < n; i++) {
      assert_memory_equal(ha[i].id, hb[i].id, WIRE_ID_LEN);
      assert_str_eq(ha[i].addr, hb[i].addr);
      assert_int_equal(ha[i].leaf_load, hb[i].leaf_load);
      assert_int_equal(ha[i].link_load, hb[i].link_load);
    }
    break;
  }
  default:
    fail_msg("unexpected type %d", a->type);
  }
}

/* Decodes every strict prefix of a valid encoding: each must fail, and
 * under ASan none may read out of bounds. The prefix is copied into an
 * exactly sized heap block so an overread is caught. The one exception is
 * bare_len, where an optional tail begins (a HELLO's certificate): that
 * prefix is the same message without it. SIZE_MAX: none. */
static void truncation_sweep(const uint8_t *p, size_t len, size_t bare_len)
{
  for (size_t n = 0; n < len; n++) {
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, p, n);
    WireMsg m;
    WireError e = wire_decode(copy, n, &m);
    if (n == bare_len) {
      assert_int_equal(e, WIRE_OK);
      assert_int_equal(m.u.hello.cert_len, 0);
      wire_msg_clear(&m);
    } else {
      assert_int_not_equal(e, WIRE_OK);
    }
    free(copy);
  }
}

/* Encodes m, decodes it back, compares, sweeps its prefixes and checks that
 * one trailing byte is refused. */
static void roundtrip(const WireMsg *m)
{
  Buf b;
  WireMsg out;
  buf_init(&b);
  assert_true(wire_encode(m, &b));
  assert_int_equal(wire_decode(b.data, b.len, &out), WIRE_OK);
  assert_msg_eq(m, &out);

  /* Re-encoding gives the same bytes: the encoding is canonical. */
  Buf again;
  buf_init(&again);
  assert_true(wire_encode(&out, &again));
  assert_int_equal(again.len, b.len);
  assert_memory_equal(again.data, b.data, b.len);
  buf_free(&again);
  wire_msg_clear(&out);

  size_t bare = m->type == MSG_HELLO && m->u.hello.cert_len
                    ? b.len - 2 - (size_t)m->u.hello.cert_len
                    : SIZE_MAX;
  truncation_sweep(b.data, b.len, bare);

  wr_u8(&b, 0);
  assert_int_equal(wire_decode(b.data, b.len, &out), WIRE_ETRUNC);
  buf_free(&b);
}

static void test_hello(void **state)
{
  WireMsg m = {.type = MSG_HELLO};
  m.u.hello.role = ROLE_SUPER;
  m.u.hello.listen = S("198.51.100.7:4000");
  m.u.hello.agent = S("canopy/0.1");
  roundtrip(&m);

  uint8_t cert[137]; /* opaque to the codec (shared/netcert.h) */
  for (size_t i = 0; i < sizeof cert; i++)
    cert[i] = (uint8_t)(i * 7);
  m.u.hello.cert = cert;
  m.u.hello.cert_len = sizeof cert;
  roundtrip(&m);

  m.u.hello.role = ROLE_LEAF;
  m.u.hello.listen = wire_str(NULL, 0); /* leaves have no listen address */
  m.u.hello.cert = NULL;
  m.u.hello.cert_len = 0;
  roundtrip(&m);
}

static void test_ping_pong(void **state)
{
  WireMsg m = {.type = MSG_PING};
  m.u.ping = 0x0123456789abcdefULL;
  roundtrip(&m);
  m.type = MSG_PONG;
  m.u.ping = UINT64_MAX;
  roundtrip(&m);
}

static void test_publish(void **state)
{
  WireEntry e[3] = {
      {.name = S("song.ogg"), .size = 0},
      {.name = S("r\xc3\xa9sum\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80.pdf"), .size = UINT64_MAX},
      {.name = S("x"), .size = 4096},
  };
  for (int i = 0; i < 3; i++)
    fill(e[i].cid, WIRE_CID_LEN, (uint8_t)(i * 50));
  WireMsg m = {.type = MSG_PUBLISH};
  m.u.publish.reset = true;
  m.u.publish.count = 3;
  m.u.publish.entries = e;
  roundtrip(&m);

  m.u.publish.reset = false;
  m.u.publish.count = 0; /* an empty first batch clears the manifest */
  m.u.publish.entries = NULL;
  roundtrip(&m);
}

static void test_publish_at_caps(void **state)
{
  static char name[WIRE_MAX_NAME];
  WireEntry *e = calloc(WIRE_MAX_ENTRIES, sizeof *e);
  assert_non_null(e);
  memset(name, 'n', sizeof name);
  for (int i = 0; i < WIRE_MAX_ENTRIES; i++) {
    e[i].name = wire_str(name, WIRE_MAX_NAME);
    e[i].size = (uint64_t)i << 40;
    fill(e[i].cid, WIRE_CID_LEN, (uint8_t)i);
  }
  WireMsg m = {.type = MSG_PUBLISH};
  m.u.publish.count = WIRE_MAX_ENTRIES;
  m.u.publish.entries = e;
  Buf b;
  WireMsg out;
  buf_init(&b);
  assert_true(wire_encode(&m, &b));
  assert_int_equal(wire_decode(b.data, b.len, &out), WIRE_OK);
  assert_msg_eq(&m, &out);
  wire_msg_clear(&out);
  buf_free(&b);
  free(e);
}

static void test_search(void **state)
{
  WireMsg m = {.type = MSG_SEARCH};
  m.u.search.req = 0xdeadbeef;
  m.u.search.ttl = WIRE_MAX_TTL;
  m.u.search.kind = QUERY_KEYWORDS;
  m.u.search.text = S("free music \xe2\x99\xab");
  roundtrip(&m);
  m.u.search.ttl = 0;
  m.u.search.kind = QUERY_CONTENT_ID;
  roundtrip(&m);
}

static void test_query(void **state)
{
  WireMsg m = {.type = MSG_QUERY};
  fill(m.u.query.qid, WIRE_QID_LEN, 9);
  m.u.query.ttl = 3;
  m.u.query.kind = QUERY_CONTENT_ID;
  m.u.query.text = S("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
  roundtrip(&m);
}

static void hits_fixture(WireHit h[2])
{
  memset(h, 0, 2 * sizeof *h);
  h[0].name = S("a.txt");
  h[0].size = 12;
  h[1].name = S("\xe6\x97\xa5\xe6\x9c\xac.mkv");
  h[1].size = 1ULL << 33;
  for (int i = 0; i < 2; i++) {
    fill(h[i].cid, WIRE_CID_LEN, (uint8_t)(i + 1));
    fill(h[i].peer, WIRE_ID_LEN, (uint8_t)(i + 100));
  }
}

static void test_search_hits(void **state)
{
  WireHit h[2];
  hits_fixture(h);
  WireMsg m = {.type = MSG_SEARCH_HITS};
  m.u.hits.req = 77;
  m.u.hits.count = 2;
  m.u.hits.hits = h;
  roundtrip(&m);
  m.u.hits.count = 0;
  m.u.hits.hits = NULL;
  roundtrip(&m);
}

static void test_query_hits(void **state)
{
  WireHit h[2];
  hits_fixture(h);
  WireMsg m = {.type = MSG_QUERY_HITS};
  fill(m.u.hits.qid, WIRE_QID_LEN, 200);
  m.u.hits.count = 2;
  m.u.hits.hits = h;
  roundtrip(&m);
}

static void test_peers(void **state)
{
  WireMsg m = {.type = MSG_PEERS_REQ};
  roundtrip(&m);

  WirePeer p[2] = {{.addr = S("203.0.113.5:4000")}, {.addr = S("[2001:db8::1]:4000")}};
  fill(p[0].id, WIRE_ID_LEN, 1);
  fill(p[1].id, WIRE_ID_LEN, 2);
  m.type = MSG_PEERS;
  m.u.peers.count = 2;
  m.u.peers.peers = p;
  roundtrip(&m);
}

/* -- hand-made bad input ------------------------------------------------- */

static WireError decode_bytes(const uint8_t *p, size_t len)
{
  WireMsg m;
  WireError e = wire_decode(p, len, &m);
  if (e == WIRE_OK)
    wire_msg_clear(&m);
  return e;
}

static Buf header(uint8_t type)
{
  Buf b;
  buf_init(&b);
  wr_u8(&b, WIRE_VERSION);
  wr_u8(&b, type);
  return b;
}

static WireError decode_buf(Buf *b)
{
  WireError e = decode_bytes(b->data, b->len);
  buf_free(b);
  return e;
}

/* A PUBLISH with one entry whose name is the given bytes. */
static WireError publish_with_name(const void *name, size_t len)
{
  Buf b = header(MSG_PUBLISH);
  uint8_t cid[WIRE_CID_LEN] = {0};
  wr_u8(&b, 0);
  wr_u16(&b, 1);
  wr_u16(&b, (uint16_t)len);
  wr_bytes(&b, name, len);
  wr_u64(&b, 1);
  wr_bytes(&b, cid, sizeof cid);
  return decode_buf(&b);
}

static WireError search_with(uint8_t ttl, uint8_t kind)
{
  Buf b = header(MSG_SEARCH);
  wr_u32(&b, 1);
  wr_u8(&b, ttl);
  wr_u8(&b, kind);
  wr_u16(&b, 3);
  wr_bytes(&b, "abc", 3);
  return decode_buf(&b);
}

static WireError query_with(uint8_t ttl, uint8_t kind)
{
  Buf b = header(MSG_QUERY);
  uint8_t qid[WIRE_QID_LEN] = {0};
  wr_bytes(&b, qid, sizeof qid);
  wr_u8(&b, ttl);
  wr_u8(&b, kind);
  wr_u16(&b, 3);
  wr_bytes(&b, "abc", 3);
  return decode_buf(&b);
}

static void test_nat_info(void **state)
{
  WireMsg m = {.type = MSG_NAT_INFO};
  m.u.nat.stun_port = 3478;
  m.u.nat.turn_addr = S("203.0.113.9:3478");
  m.u.nat.turn_user = S("1800000000:abcdef");
  m.u.nat.turn_pass = S("c2VjcmV0");
  m.u.nat.turn_expiry = 1800000000;
  roundtrip(&m);
  m.u.nat.turn_addr = wire_str(NULL, 0); /* no TURN configured */
  m.u.nat.turn_user = wire_str(NULL, 0);
  m.u.nat.turn_pass = wire_str(NULL, 0);
  roundtrip(&m);
}

static void test_signal(void **state)
{
  WireMsg m = {.type = MSG_SIGNAL};
  fill(m.u.signal.sid, WIRE_QID_LEN, 3);
  fill(m.u.signal.src, WIRE_ID_LEN, 4);
  fill(m.u.signal.dst, WIRE_ID_LEN, 5);
  m.u.signal.ttl = 7;
  m.u.signal.kind = SIGNAL_OFFER;
  m.u.signal.text = S("v=0\r\na=ice-ufrag:abcd\r\n");
  roundtrip(&m);
  m.u.signal.kind = SIGNAL_REJECT;
  m.u.signal.text = wire_str(NULL, 0);
  roundtrip(&m);

  /* A kind outside 1..3 and a ttl over the cap are refused. */
  Buf b;
  buf_init(&b);
  m.u.signal.kind = SIGNAL_ANSWER;
  assert_true(wire_encode(&m, &b));
  b.data[2 + WIRE_QID_LEN + 1] = 9;
  WireMsg out;
  assert_int_equal(wire_decode(b.data, b.len, &out), WIRE_EINVALID);
  b.data[2 + WIRE_QID_LEN + 1] = SIGNAL_ANSWER;
  b.data[2 + WIRE_QID_LEN] = WIRE_MAX_TTL + 1;
  assert_int_equal(wire_decode(b.data, b.len, &out), WIRE_EINVALID);
  buf_free(&b);
}

static void test_transfer(void **state)
{
  WireMsg m = {.type = MSG_GET_TREE};
  fill(m.u.get_tree.cid, WIRE_CID_LEN, 6);
  m.u.get_tree.first = 1024;
  m.u.get_tree.count = WIRE_MAX_TREE;
  roundtrip(&m);

  static uint8_t hashes[WIRE_MAX_TREE * 32];
  fill(hashes, sizeof hashes, 7);
  m.type = MSG_TREE;
  fill(m.u.tree.cid, WIRE_CID_LEN, 6);
  m.u.tree.size = 5000000000ULL;
  m.u.tree.total = 19074;
  m.u.tree.first = 2048;
  m.u.tree.count = WIRE_MAX_TREE;
  m.u.tree.hashes = hashes;
  roundtrip(&m);

  m.type = MSG_GET_CHUNK;
  fill(m.u.get_chunk.cid, WIRE_CID_LEN, 8);
  m.u.get_chunk.index = 19073;
  roundtrip(&m);

  static uint8_t piece[WIRE_PIECE];
  fill(piece, sizeof piece, 9);
  m.type = MSG_CHUNK;
  fill(m.u.chunk.cid, WIRE_CID_LEN, 8);
  m.u.chunk.index = 3;
  m.u.chunk.offset = 7 * WIRE_PIECE;
  m.u.chunk.len = WIRE_PIECE;
  m.u.chunk.data = piece;
  roundtrip(&m);

  m.type = MSG_XFER_ERROR;
  fill(m.u.xfer_error.cid, WIRE_CID_LEN, 8);
  m.u.xfer_error.code = XFER_NOT_FOUND;
  roundtrip(&m);

  /* Over the caps: a piece longer than WIRE_PIECE, a tree page over
   * WIRE_MAX_TREE or running past the declared total. */
  Buf b = header(MSG_CHUNK);
  uint8_t cid[WIRE_CID_LEN] = {0};
  wr_bytes(&b, cid, sizeof cid);
  wr_u32(&b, 0);
  wr_u32(&b, 0);
  wr_u16(&b, WIRE_PIECE + 1);
  assert_int_equal(decode_buf(&b), WIRE_ELIMIT);
  b = header(MSG_GET_TREE);
  wr_bytes(&b, cid, sizeof cid);
  wr_u32(&b, 0);
  wr_u16(&b, WIRE_MAX_TREE + 1);
  assert_int_equal(decode_buf(&b), WIRE_ELIMIT);
  b = header(MSG_TREE);
  wr_bytes(&b, cid, sizeof cid);
  wr_u64(&b, 1);
  wr_u32(&b, 1);
  wr_u32(&b, 1);
  wr_u16(&b, 1);
  wr_bytes(&b, cid, 32);
  assert_int_equal(decode_buf(&b), WIRE_EINVALID);
}

/* The group messages (supernode/GROUPS.md): every field survives, every
 * prefix is refused, and the values a peer may not send are. */
static void test_group_messages(void **state)
{
  WirePeer members[2];
  fill(members[0].id, WIRE_ID_LEN, 1);
  fill(members[1].id, WIRE_ID_LEN, 2);
  members[0].addr = wire_str("10.0.0.1:7400", 13);
  members[1].addr = wire_str("", 0); /* a member that advertises nothing */
  WireStr links[1] = {wire_str("192.0.2.9:7400", 14)};
  WireMsg g = {.type = MSG_GROUP_STATE};
  g.u.group.role = GROLE_LEADER;
  g.u.group.group = wire_str("g1", 2);
  g.u.group.term = 0x0102030405060708ull;
  g.u.group.hb_ms = 250;
  fill(g.u.group.leader, WIRE_ID_LEN, 1);
  g.u.group.leader_addr = wire_str("10.0.0.1:7400", 13);
  g.u.group.backup_addr = wire_str("", 0);
  fill(g.u.group.proof, 32, 9);
  g.u.group.n_members = 2;
  g.u.group.members = members;
  g.u.group.n_links = 1;
  g.u.group.links = links;
  roundtrip(&g);

  WireEntry e[2];
  e[0].name = wire_str("a.txt", 5);
  e[0].size = 5;
  fill(e[0].cid, WIRE_CID_LEN, 3);
  e[1].name = wire_str("b.txt", 5);
  e[1].size = 1ull << 40;
  fill(e[1].cid, WIRE_CID_LEN, 4);
  WireMsg r = {.type = MSG_REPL};
  r.u.repl.term = 7;
  r.u.repl.seq = 99;
  r.u.repl.op = REPL_PUBLISH;
  fill(r.u.repl.leaf, WIRE_ID_LEN, 5);
  r.u.repl.reset = true;
  r.u.repl.count = 2;
  r.u.repl.entries = e;
  roundtrip(&r);
  WireMsg up = {.type = MSG_REPL};
  up.u.repl.op = REPL_LEAF_UP;
  roundtrip(&up);

  WireMsg ack = {.type = MSG_REPL_ACK};
  ack.u.repl_ack.term = 7;
  ack.u.repl_ack.seq = 99;
  roundtrip(&ack);
  WireMsg w = {.type = MSG_WATCH};
  w.u.watch.term = 7;
  w.u.watch.leader_ok = true;
  roundtrip(&w);
  WireMsg at = {.type = MSG_ATTACHED};
  at.u.attached.term = 7;
  at.u.attached.count = 12;
  fill(at.u.attached.digest, 32, 6);
  roundtrip(&at);

  /* Refused: an op out of range, entries on an op that has none, a
   * heartbeat of 0 ms, an unknown role, leader_ok other than 0/1, an empty
   * group name; and the encoder will not write them either. */
  Buf b;
  buf_init(&b);
  WireMsg bad = r;
  bad.u.repl.op = REPL_PUBLISH + 1;
  assert_true(wire_encode(&bad, &b));
  assert_int_equal(decode_buf(&b), WIRE_EINVALID);
  bad = r;
  bad.u.repl.op = REPL_LEAF_DOWN;
  assert_true(wire_encode(&bad, &b));
  assert_int_equal(decode_buf(&b), WIRE_EINVALID);
  WireMsg badg = g;
  badg.u.group.hb_ms = 0;
  assert_false(wire_encode(&badg, &b));
  badg = g;
  badg.u.group.group = wire_str("", 0);
  assert_false(wire_encode(&badg, &b));
  badg = g;
  badg.u.group.n_members = WIRE_MAX_MEMBERS + 1;
  assert_false(wire_encode(&badg, &b));
  badg = g;
  badg.u.group.role = GROLE_STANDBY + 1;
  assert_true(wire_encode(&badg, &b));
  assert_int_equal(decode_buf(&b), WIRE_EINVALID);
  static const uint8_t watch2[] = {WIRE_VERSION, MSG_WATCH, 0, 0, 0, 0, 0, 0, 0, 1, 2};
  assert_int_equal(decode_bytes(watch2, sizeof watch2), WIRE_EINVALID);
  buf_free(&b);

  /* The digest does not depend on order and tells different sets apart. */
  uint8_t d1[32] = {0}, d2[32] = {0}, d3[32] = {0};
  wire_digest_entry(d1, e[0].cid, e[0].size, "a.txt", 5);
  wire_digest_entry(d1, e[1].cid, e[1].size, "b.txt", 5);
  wire_digest_entry(d2, e[1].cid, e[1].size, "b.txt", 5);
  wire_digest_entry(d2, e[0].cid, e[0].size, "a.txt", 5);
  assert_memory_equal(d1, d2, 32);
  wire_digest_entry(d3, e[0].cid, e[0].size, "a.txt", 5);
  wire_digest_entry(d3, e[1].cid, e[1].size + 1, "b.txt", 5);
  assert_memory_not_equal(d1, d3, 32);
}

/* REFUSE and HOSTS (issue 12): every field survives, every prefix is
 * refused, and a reason, a load or a count out of range is refused. */
static void test_refuse_hosts(void **state)
{
  WireHost h[2];
  fill(h[0].id, WIRE_ID_LEN, 1);
  h[0].addr = wire_str("10.0.0.1:7400", 13);
  h[0].leaf_load = 0;
  h[0].link_load = 100;
  fill(h[1].id, WIRE_ID_LEN, 2);
  h[1].addr = wire_str("[2001:db8::1]:7400", 18);
  h[1].leaf_load = WIRE_LOAD_UNKNOWN;
  h[1].link_load = 37;
  WireMsg r = {.type = MSG_REFUSE};
  r.u.refuse.reason = REFUSE_LINKS_FULL;
  r.u.refuse.retry_ms = 30000;
  r.u.refuse.count = 2;
  r.u.refuse.hosts = h;
  roundtrip(&r);
  WireMsg none = {.type = MSG_REFUSE};
  none.u.refuse.reason = REFUSE_SHUTDOWN;
  roundtrip(&none);
  WireMsg hs = {.type = MSG_HOSTS};
  hs.u.hosts.count = 2;
  hs.u.hosts.hosts = h;
  roundtrip(&hs);

  Buf b;
  buf_init(&b);
  WireMsg bad = r;
  bad.u.refuse.reason = 0;
  assert_false(wire_encode(&bad, &b));
  bad.u.refuse.reason = REFUSE_SHUTDOWN + 1;
  assert_false(wire_encode(&bad, &b));
  WireHost hbad = h[0];
  hbad.leaf_load = 101;
  bad = hs;
  bad.u.hosts.count = 1;
  bad.u.hosts.hosts = &hbad;
  assert_false(wire_encode(&bad, &b));
  hbad = h[0];
  hbad.addr = wire_str("", 0);
  assert_false(wire_encode(&bad, &b));
  bad = hs;
  bad.u.hosts.count = WIRE_MAX_HOSTS + 1;
  assert_false(wire_encode(&bad, &b));
  buf_free(&b);

  b = header(MSG_REFUSE);
  wr_u8(&b, 9);
  wr_u32(&b, 0);
  wr_u16(&b, 0);
  assert_int_equal(decode_buf(&b), WIRE_EINVALID);
  b = header(MSG_HOSTS);
  wr_u16(&b, WIRE_MAX_HOSTS + 1);
  assert_int_equal(decode_buf(&b), WIRE_ELIMIT);
  b = header(MSG_HOSTS);
  wr_u16(&b, 1);
  uint8_t id[WIRE_ID_LEN] = {0};
  wr_bytes(&b, id, sizeof id);
  wr_u16(&b, 3);
  wr_bytes(&b, (const uint8_t *)"a:1", 3);
  wr_u8(&b, 200);
  wr_u8(&b, 0);
  assert_int_equal(decode_buf(&b), WIRE_EINVALID);
}

static void test_version(void **state)
{
  static const uint8_t v2[] = {2, MSG_PING, 0, 0, 0, 0, 0, 0, 0, 1};
  static const uint8_t v0[] = {0, MSG_PEERS_REQ};
  assert_int_equal(decode_bytes(v2, sizeof v2), WIRE_EVERSION);
  assert_int_equal(decode_bytes(v0, sizeof v0), WIRE_EVERSION);
}

static void test_unknown_type(void **state)
{
  static const uint8_t types[] = {0, MSG_HOSTS + 1, 0x7f, 0xff};
  for (size_t i = 0; i < sizeof types; i++) {
    uint8_t msg[] = {WIRE_VERSION, types[i], 1, 2, 3};
    assert_int_equal(decode_bytes(msg, sizeof msg), WIRE_EUNKNOWN);
  }
  assert_string_equal(wire_type_str(0xff), "?");
  assert_string_equal(wire_type_str(MSG_QUERY_HITS), "QUERY_HITS");
}

static void test_count_over_cap(void **state)
{
  Buf b = header(MSG_PUBLISH);
  wr_u8(&b, 0);
  wr_u16(&b, WIRE_MAX_ENTRIES + 1);
  assert_int_equal(decode_buf(&b), WIRE_ELIMIT);

  b = header(MSG_SEARCH_HITS);
  wr_u32(&b, 1);
  wr_u16(&b, WIRE_MAX_HITS + 1);
  assert_int_equal(decode_buf(&b), WIRE_ELIMIT);

  b = header(MSG_QUERY_HITS);
  uint8_t qid[WIRE_QID_LEN] = {0};
  wr_bytes(&b, qid, sizeof qid);
  wr_u16(&b, 0xffff);
  assert_int_equal(decode_buf(&b), WIRE_ELIMIT);

  b = header(MSG_PEERS);
  wr_u16(&b, WIRE_MAX_PEERS + 1);
  assert_int_equal(decode_buf(&b), WIRE_ELIMIT);
}

static void test_length_over_cap(void **state)
{
  char big[WIRE_MAX_QUERY + 1];
  memset(big, 'a', sizeof big);
  assert_int_equal(publish_with_name(big, WIRE_MAX_NAME), WIRE_OK);
  assert_int_equal(publish_with_name(big, WIRE_MAX_NAME + 1), WIRE_ELIMIT);

  Buf b = header(MSG_SEARCH);
  wr_u32(&b, 1);
  wr_u8(&b, 1);
  wr_u8(&b, 0);
  wr_u16(&b, WIRE_MAX_QUERY + 1);
  wr_bytes(&b, big, WIRE_MAX_QUERY + 1);
  assert_int_equal(decode_buf(&b), WIRE_ELIMIT);

  b = header(MSG_HELLO);
  wr_u8(&b, ROLE_LEAF);
  wr_u16(&b, 0);
  wr_u16(&b, WIRE_MAX_AGENT + 1);
  wr_bytes(&b, big, WIRE_MAX_AGENT + 1);
  assert_int_equal(decode_buf(&b), WIRE_ELIMIT);

  /* The cap is checked before the bytes are looked for. */
  b = header(MSG_HELLO);
  wr_u8(&b, ROLE_SUPER);
  wr_u16(&b, WIRE_MAX_ADDR + 1);
  assert_int_equal(decode_buf(&b), WIRE_ELIMIT);

  b = header(MSG_HELLO); /* a certificate over its cap */
  wr_u8(&b, ROLE_SUPER);
  wr_u16(&b, 0);
  wr_u16(&b, 0);
  wr_u16(&b, WIRE_MAX_CERT + 1);
  wr_bytes(&b, big, WIRE_MAX_CERT + 1);
  assert_int_equal(decode_buf(&b), WIRE_ELIMIT);
}

static void test_invalid_text(void **state)
{
  assert_int_equal(publish_with_name("ok", 2), WIRE_OK);
  assert_int_equal(publish_with_name("a\0b", 3), WIRE_EINVALID);     /* embedded NUL */
  assert_int_equal(publish_with_name("\xc0\x80", 2), WIRE_EINVALID); /* overlong NUL */
  assert_int_equal(publish_with_name("\xe0\x80\xaf", 3), WIRE_EINVALID);
  assert_int_equal(publish_with_name("\xed\xa0\x80", 3), WIRE_EINVALID);     /* surrogate */
  assert_int_equal(publish_with_name("\xf4\x90\x80\x80", 4), WIRE_EINVALID); /* > U+10FFFF */
  assert_int_equal(publish_with_name("\xf5\x80\x80\x80", 4), WIRE_EINVALID);
  assert_int_equal(publish_with_name("\x80", 1), WIRE_EINVALID);   /* lone continuation */
  assert_int_equal(publish_with_name("ab\xc3", 3), WIRE_EINVALID); /* cut sequence */
  assert_int_equal(publish_with_name("\xe2\x82", 2), WIRE_EINVALID);
  assert_int_equal(publish_with_name("\xff", 1), WIRE_EINVALID);
  /* Names are not empty; the entry is then also a byte short of the
   * smallest valid one, which the count check sees first. */
  assert_int_not_equal(publish_with_name("", 0), WIRE_OK);

  assert_true(wire_utf8_ok("\xf4\x8f\xbf\xbf", 4)); /* U+10FFFF */
  assert_true(wire_utf8_ok("\xef\xbf\xbd", 3));
  assert_true(wire_utf8_ok("", 0));
  assert_false(wire_utf8_ok("\xf0\x8f\xbf\xbf", 4)); /* overlong */
}

static void test_invalid_fields(void **state)
{
  assert_int_equal(search_with(WIRE_MAX_TTL, QUERY_KEYWORDS), WIRE_OK);
  assert_int_equal(search_with(WIRE_MAX_TTL + 1, QUERY_KEYWORDS), WIRE_EINVALID);
  assert_int_equal(search_with(1, QUERY_CONTENT_ID + 1), WIRE_EINVALID);
  assert_int_equal(query_with(WIRE_MAX_TTL, QUERY_CONTENT_ID), WIRE_OK);
  assert_int_equal(query_with(WIRE_MAX_TTL + 1, QUERY_KEYWORDS), WIRE_EINVALID);
  assert_int_equal(query_with(0, 7), WIRE_EINVALID);

  static const uint8_t role0[] = {WIRE_VERSION, MSG_HELLO, 0, 0, 0, 0, 0};
  static const uint8_t role3[] = {WIRE_VERSION, MSG_HELLO, ROLE_WATCH + 1, 0, 0, 0, 0};
  static const uint8_t leaf[] = {WIRE_VERSION, MSG_HELLO, ROLE_LEAF, 0, 0, 0, 0};
  /* A HELLO without a certificate is the one older nodes send; an empty
   * certificate field is not how "none" is written (one encoding per
   * message); one byte of a length is truncation. */
  static const uint8_t leaf_empty_cert[] = {WIRE_VERSION, MSG_HELLO, ROLE_LEAF, 0, 0, 0, 0, 0, 0};
  static const uint8_t leaf_half_len[] = {WIRE_VERSION, MSG_HELLO, ROLE_LEAF, 0, 0, 0, 0, 0};
  assert_int_equal(decode_bytes(role0, sizeof role0), WIRE_EINVALID);
  assert_int_equal(decode_bytes(role3, sizeof role3), WIRE_EINVALID);
  assert_int_equal(decode_bytes(leaf, sizeof leaf), WIRE_OK);
  assert_int_equal(decode_bytes(leaf_empty_cert, sizeof leaf_empty_cert), WIRE_EINVALID);
  assert_int_equal(decode_bytes(leaf_half_len, sizeof leaf_half_len), WIRE_ETRUNC);

  static const uint8_t flags[] = {WIRE_VERSION, MSG_PUBLISH, 2, 0, 0};
  static const uint8_t reset[] = {WIRE_VERSION, MSG_PUBLISH, 1, 0, 0};
  assert_int_equal(decode_bytes(flags, sizeof flags), WIRE_EINVALID);
  assert_int_equal(decode_bytes(reset, sizeof reset), WIRE_OK);

  /* Peer addresses may not be empty. */
  Buf b = header(MSG_PEERS);
  uint8_t id[WIRE_ID_LEN] = {0};
  wr_u16(&b, 1);
  wr_bytes(&b, id, sizeof id);
  wr_u16(&b, 0);
  wr_u8(&b, 0); /* pad so the count check passes and the string is reached */
  assert_int_equal(decode_buf(&b), WIRE_EINVALID);
}

static void test_trailing_byte(void **state)
{
  static const uint8_t req[] = {WIRE_VERSION, MSG_PEERS_REQ, 0};
  static const uint8_t ping[] = {WIRE_VERSION, MSG_PING, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  assert_int_equal(decode_bytes(req, sizeof req), WIRE_ETRUNC);
  assert_int_equal(decode_bytes(ping, sizeof ping), WIRE_ETRUNC);
  assert_int_equal(decode_bytes(ping, sizeof ping - 1), WIRE_OK);
  assert_int_equal(decode_bytes(NULL, 0), WIRE_ETRUNC);
}

/* A peer declaring more entries than it sent gets an error, not an array
 * sized from its claim. */
static void test_count_beyond_bytes(void **state)
{
  Buf b = header(MSG_PUBLISH);
  uint8_t cid[WIRE_CID_LEN] = {0};
  wr_u8(&b, 0);
  wr_u16(&b, WIRE_MAX_ENTRIES);
  wr_u16(&b, 1);
  wr_bytes(&b, "a", 1);
  wr_u64(&b, 1);
  wr_bytes(&b, cid, sizeof cid);
  WireMsg m;
  assert_int_equal(wire_decode(b.data, b.len, &m), WIRE_ETRUNC);
  assert_null(m.u.publish.entries);
  assert_int_equal(m.u.publish.count, 0);
  buf_free(&b);

  b = header(MSG_PEERS);
  wr_u16(&b, WIRE_MAX_PEERS);
  assert_int_equal(decode_buf(&b), WIRE_ETRUNC);
}

static void test_encode_refuses(void **state)
{
  Buf b;
  buf_init(&b);
  wr_u8(&b, 0xaa); /* a failed encode leaves earlier bytes alone */

  WireEntry *e = calloc(WIRE_MAX_ENTRIES + 1, sizeof *e);
  assert_non_null(e);
  for (int i = 0; i <= WIRE_MAX_ENTRIES; i++)
    e[i].name = S("f");
  WireMsg m = {.type = MSG_PUBLISH};
  m.u.publish.count = WIRE_MAX_ENTRIES + 1;
  m.u.publish.entries = e;
  assert_false(wire_encode(&m, &b));
  assert_int_equal(b.len, 1);

  WireHit *h = calloc(WIRE_MAX_HITS + 1, sizeof *h);
  assert_non_null(h);
  for (int i = 0; i <= WIRE_MAX_HITS; i++)
    h[i].name = S("f");
  m = (WireMsg){.type = MSG_SEARCH_HITS};
  m.u.hits.count = WIRE_MAX_HITS + 1;
  m.u.hits.hits = h;
  assert_false(wire_encode(&m, &b));
  m.type = MSG_QUERY_HITS;
  assert_false(wire_encode(&m, &b));
  m.u.hits.count = WIRE_MAX_HITS;
  assert_true(wire_encode(&m, &b));
  b.len = 1;

  WirePeer p[WIRE_MAX_PEERS + 1];
  memset(p, 0, sizeof p);
  for (int i = 0; i <= WIRE_MAX_PEERS; i++)
    p[i].addr = S("h:1");
  m = (WireMsg){.type = MSG_PEERS};
  m.u.peers.count = WIRE_MAX_PEERS + 1;
  m.u.peers.peers = p;
  assert_false(wire_encode(&m, &b));

  /* Over-long and empty strings, and unknown types. */
  static char name[WIRE_MAX_NAME + 1];
  memset(name, 'x', sizeof name);
  e[0].name = wire_str(name, sizeof name);
  m = (WireMsg){.type = MSG_PUBLISH};
  m.u.publish.count = 1;
  m.u.publish.entries = e;
  assert_false(wire_encode(&m, &b));
  e[0].name = wire_str(NULL, 0);
  assert_false(wire_encode(&m, &b));
  m = (WireMsg){.type = MSG_SEARCH};
  assert_false(wire_encode(&m, &b)); /* empty search text */
  m = (WireMsg){.type = 0};
  assert_false(wire_encode(&m, &b));
  m = (WireMsg){.type = 42};
  assert_false(wire_encode(&m, &b));
  assert_int_equal(b.len, 1);
  assert_int_equal(b.data[0], 0xaa);

  free(e);
  free(h);
  buf_free(&b);
}

/* buf_trim: a drained peak is freed, a partly drained one halves down to
 * at most twice what it holds, never below keep. */
static void test_buf_trim(void **state)
{
  (void)state;
  Buf b;
  buf_init(&b);
  static uint8_t big[512 * 1024];
  wr_bytes(&b, big, sizeof big);
  assert_int_equal(b.cap, 512 * 1024);
  buf_consume(&b, sizeof big - 10000);
  buf_trim(&b, 64 * 1024);
  assert_int_equal(b.len, 10000);
  assert_int_equal(b.cap, 64 * 1024); /* keep, not 16 KiB */
  wr_bytes(&b, big, 200000);
  assert_int_equal(b.cap, 256 * 1024);
  buf_consume(&b, 70000);
  buf_trim(&b, 64 * 1024);
  assert_int_equal(b.cap, 256 * 1024); /* 140000 held: half would not fit */
  buf_consume(&b, 40000);
  buf_trim(&b, 64 * 1024);
  assert_int_equal(b.cap, 128 * 1024);
  assert_int_equal(b.len, 100000);
  buf_consume(&b, b.len);
  buf_trim(&b, 64 * 1024);
  assert_int_equal(b.cap, 0);
  assert_null(b.data);
  wr_bytes(&b, big, 1000); /* usable again */
  buf_consume(&b, 1000);
  buf_trim(&b, 64 * 1024);
  assert_int_equal(b.cap, 1024); /* small: kept */
  buf_free(&b);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hello),          cmocka_unit_test(test_ping_pong),
      cmocka_unit_test(test_publish),        cmocka_unit_test(test_publish_at_caps),
      cmocka_unit_test(test_search),         cmocka_unit_test(test_query),
      cmocka_unit_test(test_search_hits),    cmocka_unit_test(test_query_hits),
      cmocka_unit_test(test_peers),          cmocka_unit_test(test_nat_info),
      cmocka_unit_test(test_signal),         cmocka_unit_test(test_transfer),
      cmocka_unit_test(test_version),        cmocka_unit_test(test_unknown_type),
      cmocka_unit_test(test_count_over_cap), cmocka_unit_test(test_length_over_cap),
      cmocka_unit_test(test_invalid_text),   cmocka_unit_test(test_invalid_fields),
      cmocka_unit_test(test_trailing_byte),  cmocka_unit_test(test_count_beyond_bytes),
      cmocka_unit_test(test_encode_refuses), cmocka_unit_test(test_group_messages),
      cmocka_unit_test(test_refuse_hosts),   cmocka_unit_test(test_buf_trim),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
