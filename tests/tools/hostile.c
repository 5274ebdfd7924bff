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
 * Memory attacks (the memory findings; exit 0 after SECONDS):
 *   hold        canopy-hostile hold HOST:PORT SESSIONS RATE SECONDS WORD:
 *               SESSIONS leaves each searching WORD RATE times a second and
 *               never reading an answer; a session cut off is redialled.
 *               Prints the sessions opened in all.
 *   sybil       canopy-hostile sybil HOST:PORT COUNT SECONDS [KEYWORDS]: one
 *               leaf publishing COUNT entries of 255-byte names of KEYWORDS
 *               (default 32) keywords no other entry has, then answering
 *               pings. Prints the entries sent.
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

/* --- memory findings -------------------------------------------------------- */

typedef struct {
  int fd;
  Channel *ch;
  Identity id;
} HoldSession;

/* A real handshake and HELLO as a leaf; false if the super node refused. */
static bool hold_open(HoldSession *h, const char *addr)
{
  h->fd = dial(addr);
  if (h->fd < 0 || !identity_generate(&h->id))
    return false;
  h->ch = channel_new(&h->id, CHANNEL_INITIATOR);
  flush_channel(h->fd, h->ch);
  if (pump(h->fd, h->ch, 5000, NULL) == 0 || channel_state(h->ch) != CHANNEL_OPEN)
    return false;
  hello_leaf(h->fd, h->ch);
  return true;
}

static void hold_close(HoldSession *h)
{
  if (h->fd >= 0)
    close(h->fd);
  channel_free(h->ch);
  identity_clear(&h->id);
  h->fd = -1;
  h->ch = NULL;
}

/* Sends one message; false when the super node has hung up on us. */
static bool hold_send(HoldSession *h, const WireMsg *m)
{
  Buf b;
  buf_init(&b);
  wire_encode(m, &b);
  channel_write(h->ch, b.data, b.len);
  buf_free(&b);
  size_t n;
  const uint8_t *out = channel_output(h->ch, &n);
  while (n > 0) {
    ssize_t k = send(h->fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break; /* our own send buffer is full: keep the rest for later */
    if (k <= 0)
      return false;
    channel_output_consume(h->ch, (size_t)k);
    out = channel_output(h->ch, &n);
  }
  /* A hang-up shows as an error on the next send (we never read to see
   * the end of stream): a cut session is noticed one search later. */
  return true;
}

static long now_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int hold_mode(const char *addr, int sessions, double rate, int seconds, const char *word)
{
  HoldSession *hs = calloc((size_t)sessions, sizeof *hs);
  long opened = 0;
  for (int i = 0; i < sessions; i++) {
    hs[i].fd = -1;
    if (hold_open(&hs[i], addr))
      opened++;
    else
      hold_close(&hs[i]);
  }
  long end = now_ms() + seconds * 1000L, period = (long)(1000.0 / rate);
  uint32_t req = 0;
  while (now_ms() < end) {
    long next = now_ms() + period;
    for (int i = 0; i < sessions; i++) {
      WireMsg s = {.type = MSG_SEARCH};
      s.u.search.req = ++req;
      s.u.search.ttl = 1;
      s.u.search.text = wire_str(word, strlen(word));
      if (hs[i].fd >= 0 && hold_send(&hs[i], &s))
        continue;
      hold_close(&hs[i]);
      if (hold_open(&hs[i], addr))
        opened++;
      else
        hold_close(&hs[i]);
    }
    long wait = next - now_ms();
    if (wait > 0)
      usleep((useconds_t)wait * 1000);
  }
  for (int i = 0; i < sessions; i++)
    hold_close(&hs[i]);
  free(hs);
  printf("%ld\n", opened);
  return 0;
}

/* Entry i's name: kw - 1 keywords of 7 bytes no other entry has, then a
 * last one filling the name to 255 bytes (kw 32: the most an entry can
 * cost). */
static void sybil_name(uint32_t i, uint32_t kw, char out[256])
{
  static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  size_t off = 0;
  for (uint32_t j = 0; j < kw; j++) {
    uint64_t v = (uint64_t)i * 32 + j;
    out[off++] = 'q';
    for (int d = 0; d < 6; d++, v /= 36)
      out[off++] = digits[v % 36];
    out[off++] = j + 1 < kw ? ' ' : 'z';
  }
  while (off < 255)
    out[off++] = 'z';
  out[255] = '\0';
}

static int sybil_mode(int fd, Channel *ch, int count, int seconds, int keywords)
{
  uint32_t kw = keywords < 1 ? 1 : keywords > 32 ? 32 : (uint32_t)keywords;
  hello_leaf(fd, ch);
  static WireEntry e[WIRE_MAX_ENTRIES];
  static char names[WIRE_MAX_ENTRIES][256];
  int sent = 0;
  while (sent < count) {
    int k = count - sent < WIRE_MAX_ENTRIES ? count - sent : WIRE_MAX_ENTRIES;
    for (int i = 0; i < k; i++) {
      uint32_t n = (uint32_t)(sent + i);
      sybil_name(n, kw, names[i]);
      e[i].name = wire_str(names[i], 255);
      e[i].size = 1000 + n;
      memset(e[i].cid, 0x5a, sizeof e[i].cid);
      memcpy(e[i].cid, &n, sizeof n);
    }
    WireMsg m = {.type = MSG_PUBLISH};
    m.u.publish.reset = sent == 0;
    m.u.publish.count = (uint16_t)k;
    m.u.publish.entries = e;
    send_msg(fd, ch, &m);
    sent += k;
    if (sent % (WIRE_MAX_ENTRIES * 64) == 0 && !idle(fd, ch, 1))
      break; /* answer pings on the way, and notice a hang-up */
  }
  printf("%d\n", sent);
  fflush(stdout);
  return idle(fd, ch, seconds * 1000) ? 0 : 1;
}

int main(int argc, char **argv)
{
  if (argc < 3) {
    fprintf(stderr,
            "usage: canopy-hostile garbage|hugeframe|tamper|truncated|wrongplace|nohello|flood "
            "HOST:PORT [COUNT]\n"
            "       canopy-hostile liar HOST:PORT NAME CID SIZE SECONDS\n"
            "       canopy-hostile hold HOST:PORT SESSIONS RATE SECONDS WORD\n"
            "       canopy-hostile sybil HOST:PORT COUNT SECONDS [KEYWORDS]\n");
    return 2;
  }
  const char *mode = argv[1];
  if (strcmp(mode, "hold") == 0 && argc == 7)
    return crypto_ready() ? hold_mode(argv[2], atoi(argv[3]), atof(argv[4]), atoi(argv[5]), argv[6])
                          : 2;
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
  } else if (strcmp(mode, "sybil") == 0 && (argc == 5 || argc == 6)) {
    rc = sybil_mode(fd, ch, atoi(argv[3]), atoi(argv[4]), argc == 6 ? atoi(argv[5]) : 32);
  } else {
    fprintf(stderr, "canopy-hostile: unknown mode %s\n", mode);
  }
  channel_free(ch);
  identity_clear(&id);
  close(fd);
  return rc;
}
