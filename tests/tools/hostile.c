/* hostile.c - a misbehaving peer for integration tests.
 *
 *   canopy-hostile MODE HOST:PORT [COUNT]
 *
 * Modes that expect the super node to hang up on us (exit 0 if it does
 * within 5 s, 1 if it keeps the connection):
 *   garbage     random bytes instead of a handshake
 *   hugeframe   a frame header declaring 4 GiB
 *   tamper      a real handshake, then a frame with one flipped bit
 *   truncated   a real handshake and HELLO, then a PUBLISH cut short
 *   wrongplace  a real handshake and HELLO as a leaf, then a QUERY
 *   nohello     a real handshake, then a SEARCH before any HELLO
 * And one that measures throttling:
 *   flood       HELLO as a leaf, COUNT searches at once; prints how many
 *               SEARCH_HITS answers came back within 2 s
 * And a leaf that lies in what it publishes (exit 0 after SECONDS):
 *   liar        canopy-hostile liar HOST:PORT NAME CID SIZE SECONDS: HELLO as
 *               a leaf, publish NAME as content id CID (hex) with SIZE bytes,
 *               answer pings, and never answer a download's signalling
 * A super node that tries to take a group over (group findings; exit 0
 * after SECONDS, 1 if the super node hung up first):
 *   hijack      canopy-hostile hijack HOST:PORT GROUP SECONDS [TERM]: links
 *               as a super node and says every 250 ms that it leads GROUP
 *               at TERM (default 0xffffffff00000001), without a proof
 *   hijack-member  the same with a made-up membership proof, or with
 *               canopy-hostile hijack-member HOST:PORT GROUP SECONDS TERM
 *               KEYFILE a real one (a member holding the group's secret)
 * Blocking sockets and the real channel and codec: the point is to send
 * exactly the bytes a hostile peer would.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "channel.h"
#include "identity.h"
#include "wire.h"

static int dial(const char *hostport)
{
  char host[256];
  const char *colon = strrchr(hostport, ':');
  if (!colon || (size_t)(colon - hostport) >= sizeof host)
    return -1;
  memcpy(host, hostport, (size_t)(colon - hostport));
  host[colon - hostport] = '\0';
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
  if (getaddrinfo(host, colon + 1, &hints, &res) != 0)
    return -1;
  int fd = socket(res->ai_family, SOCK_STREAM, 0);
  if (fd >= 0 && connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  return fd;
}

static void send_all(int fd, const uint8_t *p, size_t n)
{
  while (n > 0) {
    ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k <= 0)
      return; /* the peer may already have hung up: that is what we test */
    p += k;
    n -= (size_t)k;
  }
}

static void flush_channel(int fd, Channel *ch)
{
  size_t n;
  const uint8_t *out = channel_output(ch, &n);
  send_all(fd, out, n);
  channel_output_consume(ch, n);
}

/* Reads into the channel until the deadline; returns 0 on EOF/reset (the
 * peer hung up), 1 on timeout with the connection still open. */
static int pump(int fd, Channel *ch, int ms, int *hits)
{
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
    if (el >= ms)
      return 1;
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, (int)(ms - el)) <= 0)
      continue;
    uint8_t buf[65536];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
      return 0;
    if (!ch)
      continue;
    if (!channel_feed(ch, buf, (size_t)n))
      return 0;
    flush_channel(fd, ch);
    const uint8_t *msg;
    size_t len;
    while (channel_read(ch, &msg, &len) == 1) {
      WireMsg m;
      if (hits && wire_decode(msg, len, &m) == WIRE_OK) {
        if (m.type == MSG_SEARCH_HITS)
          (*hits)++;
        wire_msg_clear(&m);
      }
    }
    if (ch && channel_state(ch) == CHANNEL_OPEN && !hits)
      return 1; /* handshake done: caller goes on */
  }
}

static void send_msg(int fd, Channel *ch, const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  wire_encode(m, &b);
  channel_write(ch, b.data, b.len);
  flush_channel(fd, ch);
  buf_free(&b);
}

/* Answers PINGs (and reads everything else) for ms milliseconds; false if
 * the peer hung up. */
static bool idle(int fd, Channel *ch, int ms)
{
  struct timespec t0, t;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t);
    long el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
    if (el >= ms)
      return true;
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, (int)(ms - el)) <= 0)
      continue;
    uint8_t buf[65536];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0 || !channel_feed(ch, buf, (size_t)n))
      return false;
    const uint8_t *msg;
    size_t len;
    while (channel_read(ch, &msg, &len) == 1) {
      WireMsg m;
      if (wire_decode(msg, len, &m) != WIRE_OK)
        continue;
      if (m.type == MSG_PING) {
        WireMsg pong = {.type = MSG_PONG};
        pong.u.ping = m.u.ping;
        Buf b;
        buf_init(&b);
        wire_encode(&pong, &b);
        channel_write(ch, b.data, b.len);
        buf_free(&b);
      }
      wire_msg_clear(&m);
    }
    flush_channel(fd, ch);
  }
}

static void hello_leaf(int fd, Channel *ch)
{
  WireMsg h = {.type = MSG_HELLO};
  h.u.hello.role = ROLE_LEAF;
  h.u.hello.listen = wire_str("", 0);
  h.u.hello.agent = wire_str("hostile", 7);
  send_msg(fd, ch, &h);
}

/* --- group findings --------------------------------------------------------- */

/* The group key from a --group-key-file (as canopy-supernode derives it:
 * BLAKE2b of the text without surrounding white space); NULL: a guess. */
static bool group_key(const char *file, uint8_t key[32])
{
  char text[4096] = "guessed group secret";
  if (file) {
    FILE *f = fopen(file, "r");
    if (!f)
      return false;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
  }
  char *p = text, *end;
  while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
    p++;
  end = p + strlen(p);
  while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r'))
    *--end = '\0';
  crypto_generichash(key, 32, (const uint8_t *)p, strlen(p), NULL, 0);
  return true;
}

/* Links as a super node and claims the group's leadership at `term` every
 * 250 ms for `seconds`; prove: with a membership proof under key (a guessed
 * one: a non-member pretending; the real one: a member gone bad). */
static int hijack(int fd, Channel *ch, const Identity *id, const char *group, int seconds,
                  uint64_t term, bool prove, const uint8_t key[32])
{
  WireMsg h = {.type = MSG_HELLO};
  h.u.hello.role = ROLE_SUPER;
  h.u.hello.listen = wire_str("", 0);
  h.u.hello.agent = wire_str("hostile", 7);
  send_msg(fd, ch, &h);
  for (int i = 0; i < seconds * 4; i++) {
    WireMsg m = {.type = MSG_GROUP_STATE};
    m.u.group.role = GROLE_LEADER;
    m.u.group.group = wire_str(group, strlen(group));
    m.u.group.term = term;
    m.u.group.hb_ms = 250;
    memcpy(m.u.group.leader, id->id, 32);
    m.u.group.leader_addr = wire_str("127.0.0.1:9", 11);
    WirePeer me = {.addr = wire_str("127.0.0.1:9", 11)};
    memcpy(me.id, id->id, 32);
    m.u.group.n_members = 1;
    m.u.group.members = &me;
    if (prove) {
      crypto_generichash_state st;
      crypto_generichash_init(&st, key, 32, 32);
      crypto_generichash_update(&st, (const uint8_t *)"canopy group member", 19);
      crypto_generichash_update(&st, (const uint8_t *)group, strlen(group) + 1);
      crypto_generichash_update(&st, id->id, 32);
      crypto_generichash_update(&st, channel_peer_id(ch), 32);
      crypto_generichash_final(&st, m.u.group.proof, 32);
    }
    send_msg(fd, ch, &m);
    if (!idle(fd, ch, 250))
      return 1;
  }
  return 0;
}

int main(int argc, char **argv)
{
  if (argc < 3) {
    fprintf(
        stderr,
        "usage: canopy-hostile garbage|hugeframe|tamper|truncated|wrongplace|nohello|flood "
        "HOST:PORT [COUNT]\n"
        "       canopy-hostile liar HOST:PORT NAME CID SIZE SECONDS\n"
        "       canopy-hostile hijack|hijack-member HOST:PORT GROUP SECONDS [TERM [KEYFILE]]\n");
    return 2;
  }
  const char *mode = argv[1];
  int fd = dial(argv[2]);
  if (fd < 0) {
    fprintf(stderr, "canopy-hostile: cannot connect to %s\n", argv[2]);
    return 2;
  }
  if (strcmp(mode, "garbage") == 0) {
    uint8_t junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
      junk[i] = (uint8_t)rand();
    memcpy(junk, "\0\0\0\x26", 4); /* an M1-sized frame, wrong magic */
    send_all(fd, junk, sizeof junk);
    return pump(fd, NULL, 5000, NULL);
  }
  if (strcmp(mode, "hugeframe") == 0) {
    send_all(fd, (const uint8_t *)"\xff\xff\xff\xff", 4);
    return pump(fd, NULL, 5000, NULL);
  }

  Identity id;
  if (!crypto_ready() || !identity_generate(&id))
    return 2;
  Channel *ch = channel_new(&id, CHANNEL_INITIATOR);
  flush_channel(fd, ch);
  if (pump(fd, ch, 5000, NULL) == 0 || channel_state(ch) != CHANNEL_OPEN) {
    fprintf(stderr, "canopy-hostile: handshake failed\n");
    return 2;
  }
  int rc = 2;
  if (strcmp(mode, "tamper") == 0) {
    hello_leaf(fd, ch);
    WireMsg p = {.type = MSG_PING};
    Buf b;
    buf_init(&b);
    wire_encode(&p, &b);
    channel_write(ch, b.data, b.len);
    buf_free(&b);
    size_t n;
    uint8_t *out = (uint8_t *)channel_output(ch, &n);
    out[n - 1] ^= 0x01;
    flush_channel(fd, ch);
    rc = pump(fd, NULL, 5000, NULL);
  } else if (strcmp(mode, "truncated") == 0) {
    hello_leaf(fd, ch);
    WireEntry e = {.name = wire_str("x.txt", 5), .size = 1};
    WireMsg m = {.type = MSG_PUBLISH};
    m.u.publish.count = 1;
    m.u.publish.entries = &e;
    Buf b;
    buf_init(&b);
    wire_encode(&m, &b);
    channel_write(ch, b.data, b.len - 7);
    flush_channel(fd, ch);
    buf_free(&b);
    rc = pump(fd, NULL, 5000, NULL);
  } else if (strcmp(mode, "wrongplace") == 0 || strcmp(mode, "nohello") == 0) {
    if (strcmp(mode, "wrongplace") == 0) {
      hello_leaf(fd, ch);
      WireMsg q = {.type = MSG_QUERY};
      q.u.query.ttl = 3;
      q.u.query.text = wire_str("anything", 8);
      send_msg(fd, ch, &q);
    } else {
      WireMsg s = {.type = MSG_SEARCH};
      s.u.search.ttl = 1;
      s.u.search.text = wire_str("anything", 8);
      send_msg(fd, ch, &s);
    }
    rc = pump(fd, NULL, 5000, NULL);
  } else if (strcmp(mode, "flood") == 0) {
    int count = argc > 3 ? atoi(argv[3]) : 1000;
    hello_leaf(fd, ch);
    for (int i = 0; i < count; i++) {
      WireMsg s = {.type = MSG_SEARCH};
      s.u.search.req = (uint32_t)i + 1;
      s.u.search.ttl = 7;
      s.u.search.text = wire_str("flood", 5);
      send_msg(fd, ch, &s);
    }
    int hits = 0;
    pump(fd, ch, 2000, &hits);
    printf("%d\n", hits);
    rc = 0;
  } else if (strcmp(mode, "liar") == 0 && argc == 7) {
    hello_leaf(fd, ch);
    WireEntry e = {.name = wire_str(argv[3], strlen(argv[3])), .size = strtoull(argv[5], NULL, 10)};
    if (!hex_decode(argv[4], e.cid, sizeof e.cid)) {
      fprintf(stderr, "canopy-hostile: bad content id %s\n", argv[4]);
    } else {
      WireMsg m = {.type = MSG_PUBLISH};
      m.u.publish.reset = true;
      m.u.publish.count = 1;
      m.u.publish.entries = &e;
      send_msg(fd, ch, &m);
      rc = idle(fd, ch, atoi(argv[6]) * 1000) ? 0 : 1;
    }
  } else if ((strcmp(mode, "hijack") == 0 || strcmp(mode, "hijack-member") == 0) && argc >= 5) {
    uint64_t term = argc > 5 ? strtoull(argv[5], NULL, 0) : 0xffffffff00000001ull;
    uint8_t key[32];
    if (!group_key(argc > 6 ? argv[6] : NULL, key)) {
      fprintf(stderr, "canopy-hostile: cannot read %s\n", argv[6]);
    } else {
      rc = hijack(fd, ch, &id, argv[3], atoi(argv[4]), term, strcmp(mode, "hijack-member") == 0,
                  key);
    }
  } else {
    fprintf(stderr, "canopy-hostile: unknown mode %s\n", mode);
  }
  channel_free(ch);
  identity_clear(&id);
  close(fd);
  return rc;
}
