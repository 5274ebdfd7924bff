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
 * And a leaf that sends ICE offers aimed elsewhere (exit 0 after SECONDS):
 *   offers      canopy-hostile offers HOST:PORT VICTIM_ID COUNT SECONDS: HELLO
 *               as a leaf, COUNT OFFERs (4 a second) to the leaf VICTIM_ID
 *               (hex), each with 100 candidates on 100 UDP sockets of ours;
 *               prints "offers N answered A refused R checks C", C being the
 *               STUN requests the victim sent to those sockets
 * And a STUN flood (UDP; exit 0 after SECONDS):
 *   stunflood   canopy-hostile stunflood HOST:PORT SRC_IP SECONDS: 4,000
 *               binding requests a second from SRC_IP, and one every 100 ms
 *               from another socket (an honest client); prints "flood F
 *               answered A honest H answered B"
 * Blocking sockets and the real channel and codec: the point is to send
 * exactly the bytes a hostile peer would.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
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

/* --- nat findings (issue 11: 8) --- */

#define OFFER_SOCKETS 100

static long ms_since(const struct timespec *t0)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* One OFFER with a candidate on each of our sockets: the addresses a victim
 * would check are all ours to count. */
static void send_offer(int fd, Channel *ch, const uint8_t victim[32], int n, const int *ports)
{
  char text[WIRE_MAX_SIGNAL];
  size_t off = (size_t)snprintf(text, sizeof text,
                                "m=application %d ICE/SDP\nc=IN IP4 127.0.0.1\n"
                                "a=ice-ufrag:hx%04d\na=ice-pwd:hostilehostilehostile%04d\n",
                                ports[0], n, n);
  for (int i = 0; i < OFFER_SOCKETS && off < sizeof text; i++)
    off += (size_t)snprintf(text + off, sizeof text - off,
                            "a=candidate:%d 1 UDP %u 127.0.0.1 %d typ host\n", i + 1,
                            2130706431u - (unsigned)i, ports[i]);
  WireMsg m = {.type = MSG_SIGNAL};
  randombytes_buf(m.u.signal.sid, sizeof m.u.signal.sid);
  m.u.signal.ttl = 3;
  m.u.signal.kind = SIGNAL_OFFER;
  memcpy(m.u.signal.dst, victim, 32);
  m.u.signal.text = wire_str(text, strlen(text));
  send_msg(fd, ch, &m);
}

static int offers_attack(int fd, Channel *ch, const char *victim_hex, int count, int seconds)
{
  uint8_t victim[32];
  if (!hex_decode(victim_hex, victim, sizeof victim)) {
    fprintf(stderr, "canopy-hostile: bad victim id %s\n", victim_hex);
    return 2;
  }
  struct pollfd pfd[1 + OFFER_SOCKETS];
  int ports[OFFER_SOCKETS];
  pfd[0] = (struct pollfd){fd, POLLIN, 0};
  for (int i = 0; i < OFFER_SOCKETS; i++) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    if (u < 0 || bind(u, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(u, (struct sockaddr *)&a, &al) != 0)
      return 2;
    ports[i] = ntohs(a.sin_port);
    pfd[1 + i] = (struct pollfd){u, POLLIN, 0};
  }
  hello_leaf(fd, ch);
  long answered = 0, refused = 0, checks = 0;
  int sent = 0;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long el; (el = ms_since(&t0)) < seconds * 1000L;) {
    /* 4 a second: under the super node's per-session signal limit. */
    if (sent < count && el >= sent * 250L)
      send_offer(fd, ch, victim, sent++, ports);
    if (poll(pfd, 1 + OFFER_SOCKETS, 50) <= 0)
      continue;
    for (int i = 1; i <= OFFER_SOCKETS; i++) {
      uint8_t d[2048];
      ssize_t n;
      while (pfd[i].revents & POLLIN && (n = recv(pfd[i].fd, d, sizeof d, MSG_DONTWAIT)) > 0)
        checks += n >= 20 && d[0] == 0x00 && d[1] == 0x01; /* a Binding request */
    }
    if (!(pfd[0].revents & POLLIN))
      continue;
    uint8_t buf[65536];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0 || !channel_feed(ch, buf, (size_t)n))
      break;
    const uint8_t *msg;
    size_t len;
    while (channel_read(ch, &msg, &len) == 1) {
      WireMsg m;
      if (wire_decode(msg, len, &m) != WIRE_OK)
        continue;
      if (m.type == MSG_PING) {
        WireMsg pong = {.type = MSG_PONG};
        pong.u.ping = m.u.ping;
        send_msg(fd, ch, &pong);
      } else if (m.type == MSG_SIGNAL) {
        answered += m.u.signal.kind == SIGNAL_ANSWER;
        refused += m.u.signal.kind == SIGNAL_REJECT;
      }
      wire_msg_clear(&m);
    }
    flush_channel(fd, ch);
  }
  printf("offers %d answered %ld refused %ld checks %ld\n", sent, answered, refused, checks);
  for (int i = 1; i <= OFFER_SOCKETS; i++)
    close(pfd[i].fd);
  return 0;
}

static int udp_to(const char *hostport, const char *src)
{
  char host[256];
  const char *colon = strrchr(hostport, ':');
  if (!colon || (size_t)(colon - hostport) >= sizeof host)
    return -1;
  memcpy(host, hostport, (size_t)(colon - hostport));
  host[colon - hostport] = '\0';
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || inet_pton(AF_INET, host, &a.sin_addr) != 1)
    return -1;
  if (src) {
    struct sockaddr_in b = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, src, &b.sin_addr) != 1 || bind(fd, (struct sockaddr *)&b, sizeof b))
      return -1;
  }
  return connect(fd, (struct sockaddr *)&a, sizeof a) == 0 ? fd : -1;
}

static long drain_udp(int fd)
{
  uint8_t d[2048];
  long n = 0;
  while (recv(fd, d, sizeof d, MSG_DONTWAIT) > 0)
    n++;
  return n;
}

static int stun_flood(const char *hostport, const char *src, int seconds)
{
  int flood = udp_to(hostport, src), honest = udp_to(hostport, NULL);
  if (flood < 0 || honest < 0) {
    fprintf(stderr, "canopy-hostile: cannot open UDP sockets to %s from %s\n", hostport, src);
    return 2;
  }
  uint8_t req[20] = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42};
  long flood_sent = 0, flood_got = 0, honest_sent = 0, honest_got = 0;
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (long el; (el = ms_since(&t0)) < seconds * 1000L;) {
    while (flood_sent < el * 4) { /* 4 per millisecond */
      randombytes_buf(req + 8, 12);
      flood_sent += send(flood, req, sizeof req, 0) == (ssize_t)sizeof req;
    }
    if (el >= honest_sent * 100 && el < seconds * 1000L - 500) {
      randombytes_buf(req + 8, 12);
      honest_sent += send(honest, req, sizeof req, 0) == (ssize_t)sizeof req;
    }
    flood_got += drain_udp(flood);
    honest_got += drain_udp(honest);
    struct timespec pause = {0, 1000000};
    nanosleep(&pause, NULL);
  }
  flood_got += drain_udp(flood);
  honest_got += drain_udp(honest);
  printf("flood %ld answered %ld honest %ld answered %ld\n", flood_sent, flood_got, honest_sent,
         honest_got);
  close(flood);
  close(honest);
  return 0;
}

int main(int argc, char **argv)
{
  if (argc < 3) {
    fprintf(stderr,
            "usage: canopy-hostile garbage|hugeframe|tamper|truncated|wrongplace|nohello|flood "
            "HOST:PORT [COUNT]\n"
            "       canopy-hostile liar HOST:PORT NAME CID SIZE SECONDS\n"
            "       canopy-hostile offers HOST:PORT VICTIM_ID COUNT SECONDS\n"
            "       canopy-hostile stunflood HOST:PORT SRC_IP SECONDS\n");
    return 2;
  }
  if (strcmp(argv[1], "stunflood") == 0 && argc == 5)
    return stun_flood(argv[2], argv[3], atoi(argv[4]));
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
  } else if (strcmp(mode, "offers") == 0 && argc == 6) {
    rc = offers_attack(fd, ch, argv[3], atoi(argv[4]), atoi(argv[5]));
  } else {
    fprintf(stderr, "canopy-hostile: unknown mode %s\n", mode);
  }
  channel_free(ch);
  identity_clear(&id);
  close(fd);
  return rc;
}
