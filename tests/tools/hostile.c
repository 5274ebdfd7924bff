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
 * And one that holds pre-auth slots (exit 0 after SECONDS; see below):
 *   slots       canopy-hostile slots HOST:PORT N SECONDS [PREFIXES [ADDRS]]
 *   quiet       a real handshake, then nothing (no HELLO): prints how many ms
 *               until the super node hung up (exit 0), or exit 1 after 30 s
 * And a handshake flood (exit 0 after SECONDS):
 *   m1flood     canopy-hostile m1flood HOST:PORT SECONDS [CONNS]: CONNS (64)
 *               connections at a time, each sending one M1 with a random
 *               ephemeral key and hanging up (RST) once answered; prints
 *               "attempts A challenges C m2 M cpu_ms T" (answers seen of
 *               each kind, and the CPU time this flood cost us)
 *   liarnames   canopy-hostile liarnames HOST:PORT NAME CID SIZE SECONDS COUNT:
 *               the same, under COUNT names (NAME, then "NAME 2" ... "NAME COUNT")
 * A crowd of Sybil leaves, each within its own limits (exit 0 after SECONDS):
 *   sybil       canopy-hostile sybil HOST:PORT SESSIONS RATE SECONDS: SESSIONS
 *               leaf sessions, each sending RATE searches a second, evenly
 *               paced, for SECONDS; prints "sent N hits M"
 * A super-node link whose query ids collide (exit 0 after SECONDS):
 *   qidflood    canopy-hostile qidflood HOST:PORT RATE SECONDS same|random:
 *               HELLO as a super node, then RATE QUERYs a second (ttl 0),
 *               ids sharing their first 4 bytes (same) or random
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
 * A super node that lies about addresses (finding 15; exit 0):
 *   gossip      canopy-hostile gossip HOST:PORT COUNT CLAIM: HELLO as a super
 *               node claiming to listen on CLAIM, then PEERS naming COUNT
 *               made-up addresses; then a second session asks for PEERS and
 *               prints the addresses it is given, one per line
 * A super node that tries to take a group over (group findings; exit 0
 * after SECONDS, 1 if the super node hung up first):
 *   hijack      canopy-hostile hijack HOST:PORT GROUP SECONDS [TERM]: links
 *               as a super node and says every 250 ms that it leads GROUP
 *               at TERM (default 0xffffffff00000001), without a proof
 *   hijack-member  the same with a made-up membership proof, or with
 *               canopy-hostile hijack-member HOST:PORT GROUP SECONDS TERM
 *               KEYFILE a real one (a member holding the group's secret)
 * Memory attacks (the memory findings; exit 0 after SECONDS):
 *   hold        canopy-hostile hold HOST:PORT SESSIONS RATE SECONDS WORD:
 *               SESSIONS leaves each searching WORD RATE times a second and
 *               never reading an answer; a session cut off is redialled.
 *               Prints the sessions opened in all.
 *   sybilpub    canopy-hostile sybilpub HOST:PORT COUNT SECONDS [KEYWORDS]: one
 *               leaf publishing COUNT entries of 255-byte names of KEYWORDS
 *               (default 32) keywords no other entry has, then answering
 *               pings. Prints the entries sent.
 * Input held in partial frames (issue 12; exit 0 after SECONDS):
 *   partial     canopy-hostile partial HOST:PORT SESSIONS SECONDS SRC: from
 *               the IPv4 address SRC, SESSIONS leaf sessions (handshake and
 *               HELLO) that each send most of a 60 KB frame and never the
 *               rest; prints "opened N cut C", C being those the super node
 *               hung up on by the end
 * A source that refuses every download with words of its own (exit 0 after
 * SECONDS):
 *   rejecter    canopy-hostile rejecter HOST:PORT NAME CID SIZE SECONDS TEXT:
 *               publishes NAME as CID with SIZE bytes and answers every ICE
 *               offer with a REJECT saying TEXT; prints the offers refused
 * A super node that fills its leaves' host caches (issue 12, hosts; exit 0
 * once it has hung up on the leaf, 1 if no leaf came within 20 s):
 *   hostsflood  canopy-hostile hostsflood LISTEN_HOST:PORT FRAMES: listens,
 *               takes one leaf (HELLO, ATTACHED), sends FRAMES HOSTS of 32
 *               made-up super nodes each claiming no load (the first frame
 *               all in 10.66.0.0/24, the others one per /24), answers pings
 *               for a second, hangs up and exits; prints "hosts sent N"
 * Blocking sockets and the real channel and codec: the point is to send
 * exactly the bytes a hostile peer would.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "channel.h"
#include "identity.h"
#include "wire.h"

/* Monotonic milliseconds: every deadline in this tool. */
static long now_ms(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

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
  /* As the daemons' sessions do: a super node answers a HELLO only after
   * it arrived, so Nagle would hold our HELLO for the peer's delayed ACK. */
  int one = 1;
  if (fd >= 0)
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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
  long t0 = now_ms();
  for (;;) {
    long el = now_ms() - t0;
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

/* Reads for ms milliseconds, answering PINGs; every other message goes to
 * on_msg (if any), which returns true to stop. 1: stopped by on_msg, 0: the
 * time ran out, -1: the peer hung up. */
static int read_for(int fd, Channel *ch, int ms, bool (*on_msg)(const WireMsg *m, void *ctx),
                    void *ctx)
{
  long t0 = now_ms();
  for (;;) {
    long el = now_ms() - t0;
    if (el >= ms)
      return 0;
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, (int)(ms - el)) <= 0)
      continue;
    uint8_t buf[65536];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0 || !channel_feed(ch, buf, (size_t)n))
      return -1;
    const uint8_t *msg;
    size_t len;
    bool stop = false;
    while (!stop && channel_read(ch, &msg, &len) == 1) {
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
      } else if (on_msg) {
        stop = on_msg(&m, ctx);
      }
      wire_msg_clear(&m);
    }
    flush_channel(fd, ch);
    if (stop)
      return 1;
  }
}

/* Answers PINGs (and reads everything else) for ms milliseconds; false if
 * the peer hung up. */
static bool idle(int fd, Channel *ch, int ms)
{
  return read_for(fd, ch, ms, NULL, NULL) >= 0;
}

/* --- preauth findings (issue 11, finding 1) -------------------------------- */

/* slots: N silent TCP connections, each redialled SLOTS_REDIAL_MS after the
 * super node closes it, for SECONDS. Slot i connects from 127.1.P.A, P = i %
 * PREFIXES, A = 1 + i / PREFIXES % ADDRS (all of 127/8 is loopback on
 * Linux), so the flood comes from PREFIXES /24s; SLOTS_DIAL_RATE new
 * connections a second at most. Prints one line:
 *   connects=C refused=R held=H held_max_ms=M open=O
 * C connections made; R of them closed within SLOTS_REFUSED_MS (refused at
 * accept); H held longer, the longest M ms; O still open at the end. */
#define SLOTS_REDIAL_MS 200
#define SLOTS_REFUSED_MS 500
/* New connections per second, at most: a burst faster than the server
 * accepts overflows its accept queue, and with SYN cookies the overflow
 * becomes connections the server never heard of, which hold nothing. */
#define SLOTS_DIAL_RATE 500

typedef struct {
  int fd;
  bool up;     /* connected (else connecting, or waiting to redial) */
  long since;  /* up: connected at; connecting: started at */
  long redial; /* fd < 0: when to dial again */
  char src[32];
} Slot;

static int slot_dial(const char *src, const struct sockaddr_in *to)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in from = {.sin_family = AF_INET};
  inet_pton(AF_INET, src, &from.sin_addr);
  if (bind(fd, (struct sockaddr *)&from, sizeof from) != 0 ||
      (connect(fd, (const struct sockaddr *)to, sizeof *to) != 0 && errno != EINPROGRESS)) {
    close(fd);
    return -1;
  }
  return fd;
}

static int slots_mode(int argc, char **argv)
{
  if (argc < 5) {
    fprintf(stderr, "canopy-hostile slots HOST:PORT N SECONDS [PREFIXES [ADDRS]]\n");
    return 2;
  }
  int n = atoi(argv[3]), prefixes = argc > 5 ? atoi(argv[5]) : 1;
  int addrs = argc > 6 ? atoi(argv[6]) : 1;
  long end = now_ms() + atol(argv[4]) * 1000;
  char host[64];
  const char *colon = strrchr(argv[2], ':');
  struct sockaddr_in to = {.sin_family = AF_INET};
  if (n < 1 || n > 4000 || prefixes < 1 || prefixes > 250 || addrs < 1 || addrs > 250 || !colon ||
      (size_t)(colon - argv[2]) >= sizeof host) {
    fprintf(stderr, "canopy-hostile slots: bad arguments\n");
    return 2;
  }
  memcpy(host, argv[2], (size_t)(colon - argv[2]));
  host[colon - argv[2]] = '\0';
  to.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &to.sin_addr) != 1) {
    fprintf(stderr, "canopy-hostile slots: %s is not an IPv4 address\n", host);
    return 2;
  }
  Slot *sl = calloc((size_t)n, sizeof *sl);
  struct pollfd *pfd = calloc((size_t)n, sizeof *pfd);
  long connects = 0, refused = 0, held = 0, held_max = 0;
  for (int i = 0; i < n; i++) {
    snprintf(sl[i].src, sizeof sl[i].src, "127.1.%d.%d", i % prefixes, 1 + i / prefixes % addrs);
    sl[i].fd = -1;
  }
  long start = now_ms(), dials = 0;
  for (long t = start; t < end; t = now_ms()) {
    long allowed = (t - start) * SLOTS_DIAL_RATE / 1000 + 1 - dials;
    if (allowed > SLOTS_DIAL_RATE / 10) { /* no catching up in one burst */
      dials += allowed - SLOTS_DIAL_RATE / 10;
      allowed = SLOTS_DIAL_RATE / 10;
    }
    for (int i = 0; i < n; i++) {
      if (sl[i].fd < 0 && t >= sl[i].redial && allowed > 0) {
        allowed--;
        dials++;
        sl[i].fd = slot_dial(sl[i].src, &to);
        sl[i].up = false;
        sl[i].since = t;
        if (sl[i].fd < 0)
          sl[i].redial = t + SLOTS_REDIAL_MS;
      }
      pfd[i].fd = sl[i].fd;
      pfd[i].events = sl[i].fd < 0 ? 0 : sl[i].up ? POLLIN : POLLOUT;
      pfd[i].revents = 0;
    }
    poll(pfd, (nfds_t)n, 5);
    t = now_ms();
    for (int i = 0; i < n; i++) {
      Slot *s = &sl[i];
      if (s->fd < 0 || !pfd[i].revents)
        continue;
      int err = 0;
      socklen_t el = sizeof err;
      if (!s->up) {
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err == 0) {
          s->up = true;
          s->since = t;
          connects++;
          continue;
        }
      } else {
        char b[256];
        ssize_t k = recv(s->fd, b, sizeof b, 0);
        if (k > 0 || (k < 0 && errno == EAGAIN))
          continue; /* we never speak, so nothing should come: ignore it */
        long h = t - s->since;
        if (h < SLOTS_REFUSED_MS) {
          refused++;
        } else {
          held++;
          held_max = h > held_max ? h : held_max;
        }
      }
      close(s->fd);
      s->fd = -1;
      s->redial = t + SLOTS_REDIAL_MS;
    }
  }
  int open = 0;
  for (int i = 0; i < n; i++) {
    if (sl[i].fd >= 0 && sl[i].up) {
      open++;
      long h = now_ms() - sl[i].since;
      held_max = h > held_max ? h : held_max;
    }
    if (sl[i].fd >= 0)
      close(sl[i].fd);
  }
  printf("connects=%ld refused=%ld held=%ld held_max_ms=%ld open=%d\n", connects, refused, held,
         held_max, open);
  free(sl);
  free(pfd);
  return 0;
}

/* quiet: the handshake is done (an attacker can afford that), no HELLO. */
static int quiet_mode(int fd)
{
  long t0 = now_ms();
  int open = pump(fd, NULL, 30000, NULL);
  printf("%ld\n", now_ms() - t0);
  return open;
}

static void hello_leaf(int fd, Channel *ch)
{
  WireMsg h = {.type = MSG_HELLO};
  h.u.hello.role = ROLE_LEAF;
  h.u.hello.listen = wire_str("", 0);
  h.u.hello.agent = wire_str("hostile", 7);
  send_msg(fd, ch, &h);
}

/* Handshake as a fresh identity; NULL if the super node would not talk. */
static Channel *open_channel(int fd, Identity *id)
{
  if (!identity_generate(id))
    return NULL;
  Channel *ch = channel_new(id, CHANNEL_INITIATOR);
  flush_channel(fd, ch);
  if (pump(fd, ch, 5000, NULL) == 0 || channel_state(ch) != CHANNEL_OPEN) {
    channel_free(ch);
    return NULL;
  }
  return ch;
}

static void hello_super(int fd, Channel *ch, const char *listen)
{
  WireMsg h = {.type = MSG_HELLO};
  h.u.hello.role = ROLE_SUPER;
  h.u.hello.listen = wire_str(listen, strlen(listen));
  h.u.hello.agent = wire_str("hostile", 7);
  send_msg(fd, ch, &h);
}

/* --- cookie findings (issue 11, finding 10) ---------------------------------- */

/* One M1 frame: length, "CNPY", version 2, 32 random bytes as the
 * ephemeral key: all it costs us is the random bytes. */
static void random_m1(uint8_t m1[41])
{
  memcpy(m1,
         "\0\0\0\x25"
         "CNPY\x02",
         9);
  randombytes_buf(m1 + 9, 32);
}

/* Hangs up with a reset: no TIME_WAIT on our side, so the flood does not
 * run out of ports. */
static void hang_up(int fd)
{
  struct linger lg = {1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close(fd);
}

/* Starts a non-blocking connect, so one dropped SYN (a full listen queue)
 * does not stall the other connections. */
static int dial_nb(const struct addrinfo *ai)
{
  int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
    close(fd);
    fd = -1;
  }
  return fd;
}

static int m1flood(const char *hostport, int seconds, int conns)
{
  enum { MAXC = 1024 };
  struct pollfd pfd[MAXC];
  double since[MAXC];
  long attempts = 0, challenges = 0, m2s = 0;
  char host[256];
  const char *colon = strrchr(hostport, ':');
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
  if (!colon || (size_t)(colon - hostport) >= sizeof host)
    return 2;
  memcpy(host, hostport, (size_t)(colon - hostport));
  host[colon - hostport] = '\0';
  if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
    return 2;
  if (conns < 1 || conns > MAXC)
    conns = 64;
  for (int k = 0; k < conns; k++)
    pfd[k].fd = -1;
  long end = now_ms() + seconds * 1000L;
  while (now_ms() < end) {
    double now = (double)now_ms() / 1000.0;
    for (int k = 0; k < conns; k++) {
      if (pfd[k].fd >= 0 && now - since[k] > 2.0) { /* no answer: try anew */
        hang_up(pfd[k].fd);
        pfd[k].fd = -1;
      }
      if (pfd[k].fd >= 0)
        continue;
      int fd = dial_nb(ai);
      if (fd < 0)
        continue;
      pfd[k] = (struct pollfd){fd, POLLOUT, 0};
      since[k] = now;
    }
    if (poll(pfd, (nfds_t)conns, 100) <= 0)
      continue;
    for (int k = 0; k < conns; k++) {
      if (pfd[k].fd < 0 || !pfd[k].revents)
        continue;
      if (pfd[k].events == POLLOUT) { /* connected (or failed): send the M1 */
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(pfd[k].fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err == 0) {
          uint8_t m1[41];
          random_m1(m1);
          send_all(pfd[k].fd, m1, sizeof m1);
          pfd[k].events = POLLIN;
          attempts++;
          continue;
        }
      } else {
        uint8_t buf[512];
        ssize_t n = recv(pfd[k].fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EAGAIN)
          continue;
        if (n >= 4) {
          uint32_t len = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | buf[2] << 8 | buf[3];
          challenges += len == 21;
          m2s += len == 169;
        }
      }
      hang_up(pfd[k].fd);
      pfd[k].fd = -1;
    }
  }
  for (int k = 0; k < conns; k++)
    if (pfd[k].fd >= 0)
      hang_up(pfd[k].fd);
  freeaddrinfo(ai);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  long cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
                (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
  printf("attempts %ld challenges %ld m2 %ld cpu_ms %ld\n", attempts, challenges, m2s, cpu_ms);
  return 0;
}

/* --- download findings --- */

/* liarnames: one leaf publishing one content id under count names (issue 11
 * finding 3), then idle: it never answers an ICE offer. */
static int liar_names(int fd, Channel *ch, char **argv)
{
  int count = atoi(argv[7]);
  if (count < 1 || count > WIRE_MAX_ENTRIES) /* one PUBLISH frame */
    return 2;
  WireEntry *e = calloc((size_t)count, sizeof *e);
  char **names = calloc((size_t)count, sizeof *names);
  int rc = 2;
  if (!e || !names)
    goto out;
  for (int i = 0; i < count; i++) {
    size_t len = strlen(argv[3]) + 16;
    names[i] = malloc(len);
    if (!names[i])
      goto out;
    if (i == 0)
      snprintf(names[i], len, "%s", argv[3]);
    else
      snprintf(names[i], len, "%s %d", argv[3], i + 1);
    e[i].name = wire_str(names[i], strlen(names[i]));
    e[i].size = strtoull(argv[5], NULL, 10);
    if (!hex_decode(argv[4], e[i].cid, sizeof e[i].cid)) {
      fprintf(stderr, "canopy-hostile: bad content id %s\n", argv[4]);
      goto out;
    }
  }
  hello_leaf(fd, ch);
  WireMsg m = {.type = MSG_PUBLISH};
  m.u.publish.reset = true;
  m.u.publish.count = (uint16_t)count;
  m.u.publish.entries = e;
  send_msg(fd, ch, &m);
  rc = idle(fd, ch, atoi(argv[6]) * 1000) ? 0 : 1;
out:
  for (int i = 0; names && i < count; i++)
    free(names[i]);
  free(names);
  free(e);
  return rc;
}

/* --- fair findings: Sybil crowds ----------------------------------------- */

typedef struct {
  int fd;
  Identity id;
  Channel *ch;
  long next_ms; /* when this session sends its next search */
  uint32_t req;
} Sybil;

/* Reads what arrived on one session: answers PINGs, counts SEARCH_HITS.
 * False if the super node hung up. */
static bool sybil_read(Sybil *s, long *hits)
{
  uint8_t buf[65536];
  ssize_t n = recv(s->fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
    return false;
  if (n < 0)
    return true;
  if (!channel_feed(s->ch, buf, (size_t)n))
    return false;
  const uint8_t *msg;
  size_t len;
  while (channel_read(s->ch, &msg, &len) == 1) {
    WireMsg m;
    if (wire_decode(msg, len, &m) != WIRE_OK)
      continue;
    if (m.type == MSG_PING) {
      WireMsg pong = {.type = MSG_PONG};
      pong.u.ping = m.u.ping;
      send_msg(s->fd, s->ch, &pong);
    } else if (m.type == MSG_SEARCH_HITS) {
      *hits += m.u.hits.count;
    }
    wire_msg_clear(&m);
  }
  flush_channel(s->fd, s->ch);
  return true;
}

/* A neighbour sending RATE queries a second whose ids agree in their first
 * 4 bytes: a table hashing a prefix puts them in one chain. */
static int qidflood_main(int argc, char **argv)
{
  if (argc != 6) {
    fprintf(stderr, "usage: canopy-hostile qidflood HOST:PORT RATE SECONDS same|random\n");
    return 2;
  }
  double rate = atof(argv[3]);
  long seconds = atol(argv[4]);
  bool same = strcmp(argv[5], "same") == 0;
  if (!(rate > 0) || rate > 100000 || seconds < 1 || !crypto_ready())
    return 2;
  Sybil s = {.fd = dial(argv[2])};
  if (s.fd < 0 || !(s.ch = open_channel(s.fd, &s.id)))
    return 2;
  hello_super(s.fd, s.ch, "");
  long start = now_ms(), sent = 0, hits = 0;
  bool up = true;
  srand((unsigned)start);
  for (long now = start; up && now < start + seconds * 1000; now = now_ms()) {
    long due = (long)((double)(now - start) * rate / 1000.0);
    for (; sent < due; sent++) {
      WireMsg q = {.type = MSG_QUERY};
      /* same: 4 fixed bytes, 8 that name this process (several run at
       * once), then a counter. */
      memset(q.u.query.qid, 0xC5, WIRE_QID_LEN);
      memcpy(q.u.query.qid + 4, s.id.pk, 8);
      uint32_t n = (uint32_t)sent;
      if (!same)
        for (int k = 0; k < WIRE_QID_LEN; k++)
          q.u.query.qid[k] = (uint8_t)rand();
      memcpy(q.u.query.qid + WIRE_QID_LEN - sizeof n, &n, sizeof n);
      q.u.query.ttl = 0;
      q.u.query.text = wire_str("x", 1);
      send_msg(s.fd, s.ch, &q);
    }
    struct pollfd pfd = {s.fd, POLLIN, 0};
    if (poll(&pfd, 1, 5) > 0)
      up = sybil_read(&s, &hits);
  }
  printf("sent %ld link %s\n", sent, up ? "up" : "closed");
  channel_free(s.ch);
  identity_clear(&s.id);
  close(s.fd);
  return up ? 0 : 1;
}

/* SESSIONS leaves that each search at RATE per second, paced so that no
 * single session ever exceeds its own limit: the attack per-session rate
 * limits cannot see. */
static int sybil_main(int argc, char **argv)
{
  if (argc != 6) {
    fprintf(stderr, "usage: canopy-hostile sybil HOST:PORT SESSIONS RATE SECONDS\n");
    return 2;
  }
  int count = atoi(argv[3]);
  double rate = atof(argv[4]);
  long seconds = atol(argv[5]);
  if (count < 1 || count > 4096 || !(rate > 0) || rate > 1000 || seconds < 1)
    return 2;
  if (!crypto_ready())
    return 2;
  Sybil *ss = calloc((size_t)count, sizeof *ss);
  for (int i = 0; i < count; i++)
    ss[i].fd = -1;
  long period = (long)(1000.0 / rate);
  if (period < 1)
    period = 1;
  int up = 0;
  for (int i = 0; i < count; i++) {
    Sybil *s = &ss[i];
    s->fd = dial(argv[2]);
    if (s->fd < 0 || !(s->ch = open_channel(s->fd, &s->id)))
      break;
    hello_leaf(s->fd, s->ch);
    up++;
  }
  if (up < count)
    fprintf(stderr, "canopy-hostile: only %d of %d sessions came up\n", up, count);
  long start = now_ms(), end = start + seconds * 1000;
  for (int i = 0; i < up; i++)
    ss[i].next_ms = start + period * i / up; /* spread the sessions' phases */
  long sent = 0, hits = 0;
  int alive = up;
  struct pollfd *pfd = calloc((size_t)count, sizeof *pfd);
  for (long now = start; now < end && alive > 0; now = now_ms()) {
    long wake = end;
    for (int i = 0; i < up; i++) {
      Sybil *s = &ss[i];
      if (s->fd < 0)
        continue;
      if (now >= s->next_ms) {
        char text[64];
        int len = snprintf(text, sizeof text, "sybil%d chaff%u", i, s->req);
        WireMsg q = {.type = MSG_SEARCH};
        q.u.search.req = ++s->req;
        q.u.search.ttl = 7;
        q.u.search.text = wire_str(text, (size_t)len);
        send_msg(s->fd, s->ch, &q);
        sent++;
        /* Paced from the schedule, not from now: late sends do not add up
         * to more than RATE per second over any second. */
        s->next_ms += period;
        if (s->next_ms <= now)
          s->next_ms = now + 1;
      }
      if (s->next_ms < wake)
        wake = s->next_ms;
    }
    int n = 0;
    for (int i = 0; i < up; i++)
      if (ss[i].fd >= 0)
        pfd[n++] = (struct pollfd){ss[i].fd, POLLIN, 0};
    long wait = wake - now_ms();
    if (poll(pfd, (nfds_t)n, wait > 0 ? (int)wait : 0) <= 0)
      continue;
    for (int i = 0; i < up; i++) {
      if (ss[i].fd < 0)
        continue;
      if (!sybil_read(&ss[i], &hits)) {
        close(ss[i].fd);
        ss[i].fd = -1;
        alive--;
      }
    }
  }
  printf("sent %ld hits %ld sessions %d alive %d\n", sent, hits, up, alive);
  for (int i = 0; i < count; i++) {
    if (ss[i].ch)
      channel_free(ss[i].ch);
    identity_clear(&ss[i].id);
    if (ss[i].fd >= 0)
      close(ss[i].fd);
  }
  free(pfd);
  free(ss);
  return up == count && alive == up ? 0 : 1;
}

/* --- nat findings (issue 11: 8) --- */

#define OFFER_SOCKETS 100

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
  long t0 = now_ms();
  for (long el; (el = now_ms() - t0) < seconds * 1000L;) {
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
  long t0 = now_ms();
  for (long el; (el = now_ms() - t0) < seconds * 1000L;) {
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

/* --- misc findings: the address book (finding 15) ------------------------- */

static bool print_peers_msg(const WireMsg *m, void *ctx)
{
  if (m->type != MSG_PEERS)
    return false;
  for (uint16_t i = 0; i < m->u.peers.count; i++)
    printf("%.*s\n", (int)m->u.peers.peers[i].addr.len, m->u.peers.peers[i].addr.p);
  return true;
}

/* Reads until a PEERS arrives (answering PINGs); prints its addresses. */
static bool print_peers(int fd, Channel *ch, int ms)
{
  return read_for(fd, ch, ms, print_peers_msg, NULL) == 1;
}

static int mode_gossip(const char *target, int count, const char *claim)
{
  Identity liar, asker;
  int fd = dial(target), fd2 = -1;
  Channel *ch = fd >= 0 ? open_channel(fd, &liar) : NULL, *ch2 = NULL;
  int rc = 2;
  if (!ch)
    goto out;
  hello_super(fd, ch, claim);
  /* Made-up addresses on loopback (a dial is refused at once), most in
   * other /16s, a quarter in one /24, each with a made-up node id. */
  for (int sent = 0; sent < count;) {
    WirePeer peers[WIRE_MAX_PEERS];
    char addrs[WIRE_MAX_PEERS][48];
    int n = 0;
    for (; n < WIRE_MAX_PEERS && sent < count; n++, sent++) {
      if (sent % 4 == 0)
        snprintf(addrs[n], sizeof addrs[n], "127.0.0.%d:%d", 100 + sent % 150, 1024 + sent);
      else
        snprintf(addrs[n], sizeof addrs[n], "127.%d.%d.%d:%d", 1 + sent / 4 % 250, sent % 250,
                 1 + sent % 200, 1024 + sent);
      for (size_t k = 0; k < sizeof peers[n].id; k++)
        peers[n].id[k] = (uint8_t)rand();
      peers[n].addr = wire_str(addrs[n], strlen(addrs[n]));
    }
    WireMsg m = {.type = MSG_PEERS};
    m.u.peers.count = (uint16_t)n;
    m.u.peers.peers = peers;
    send_msg(fd, ch, &m);
  }
  if (!idle(fd, ch, 1000))
    goto out;
  /* A second node asks what the super node passes on. */
  fd2 = dial(target);
  ch2 = fd2 >= 0 ? open_channel(fd2, &asker) : NULL;
  if (!ch2)
    goto out;
  hello_super(fd2, ch2, "");
  WireMsg req = {.type = MSG_PEERS_REQ};
  send_msg(fd2, ch2, &req);
  rc = print_peers(fd2, ch2, 5000) ? 0 : 1;
out:
  if (rc == 2)
    fprintf(stderr, "canopy-hostile: gossip: the super node would not talk\n");
  channel_free(ch);
  channel_free(ch2);
  if (fd >= 0)
    close(fd);
  if (fd2 >= 0)
    close(fd2);
  return rc;
}

/* --- end of misc findings ------------------------------------------------- */

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

/* --- partial ----------------------------------------------------------------- */

/* A blocking TCP connection to hostport from the IPv4 address src. */
static int dial_from(const char *hostport, const char *src)
{
  char host[64];
  const char *colon = strrchr(hostport, ':');
  if (!colon || (size_t)(colon - hostport) >= sizeof host)
    return -1;
  memcpy(host, hostport, (size_t)(colon - hostport));
  host[colon - hostport] = '\0';
  struct sockaddr_in from = {.sin_family = AF_INET}, to = {.sin_family = AF_INET};
  to.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, src, &from.sin_addr) != 1 || inet_pton(AF_INET, host, &to.sin_addr) != 1)
    return -1;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd >= 0 && (bind(fd, (struct sockaddr *)&from, sizeof from) != 0 ||
                  connect(fd, (struct sockaddr *)&to, sizeof to) != 0)) {
    close(fd);
    fd = -1;
  }
  return fd;
}

/* Whether the far end has hung up: EOF or an error once what it sent
 * (pings) is read away. */
static bool hung_up(int fd)
{
  uint8_t buf[4096];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0)
      continue;
    return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
  }
}

static int partial_mode(const char *addr, int sessions, int seconds, const char *src)
{
  if (sessions < 1 || sessions > 4000)
    return 2;
  int *fds = calloc((size_t)sessions, sizeof *fds);
  static uint8_t junk[60000];
  int opened = 0;
  for (int i = 0; i < sessions; i++) {
    Identity id;
    fds[i] = dial_from(addr, src);
    Channel *ch = fds[i] >= 0 ? open_channel(fds[i], &id) : NULL;
    if (!ch) {
      if (fds[i] >= 0)
        close(fds[i]);
      fds[i] = -1;
      continue;
    }
    hello_leaf(fds[i], ch);
    channel_write(ch, junk, sizeof junk);
    size_t n;
    const uint8_t *out = channel_output(ch, &n);
    send_all(fds[i], out, n - 10000); /* never the last 10 KB */
    channel_free(ch);
    identity_clear(&id);
    opened++;
  }
  long end = now_ms() + (long)seconds * 1000;
  while (now_ms() < end)
    usleep(100000);
  int cut = 0;
  for (int i = 0; i < sessions; i++)
    if (fds[i] >= 0) {
      cut += hung_up(fds[i]);
      close(fds[i]);
    }
  printf("opened %d cut %d\n", opened, cut);
  free(fds);
  return 0;
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
  if (h->fd < 0 || !(h->ch = open_channel(h->fd, &h->id)))
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

/* --- leaffix findings: a refusal's text (issue 11 review, finding 3) ------- */

typedef struct {
  int fd;
  Channel *ch;
  const char *text;
  long refused;
} Rejecter;

static bool reject_offer(const WireMsg *m, void *ctx)
{
  Rejecter *rj = ctx;
  if (m->type == MSG_SIGNAL && m->u.signal.kind == SIGNAL_OFFER) {
    WireMsg r = {.type = MSG_SIGNAL};
    memcpy(r.u.signal.sid, m->u.signal.sid, sizeof r.u.signal.sid);
    r.u.signal.ttl = 3;
    r.u.signal.kind = SIGNAL_REJECT;
    memcpy(r.u.signal.dst, m->u.signal.src, 32);
    r.u.signal.text = wire_str(rj->text, strlen(rj->text));
    send_msg(rj->fd, rj->ch, &r);
    rj->refused++;
  }
  return false;
}

/* rejecter: publishes one entry, then answers every ICE offer with a REJECT
 * carrying text (escape sequences, a character a 100-byte cut would split),
 * as a source could; answers pings; for seconds. */
static int rejecter(int fd, Channel *ch, char **argv)
{
  WireEntry e = {.name = wire_str(argv[3], strlen(argv[3])), .size = strtoull(argv[5], NULL, 10)};
  if (!hex_decode(argv[4], e.cid, sizeof e.cid)) {
    fprintf(stderr, "canopy-hostile: bad content id %s\n", argv[4]);
    return 2;
  }
  hello_leaf(fd, ch);
  WireMsg pub = {.type = MSG_PUBLISH};
  pub.u.publish.reset = true;
  pub.u.publish.count = 1;
  pub.u.publish.entries = &e;
  send_msg(fd, ch, &pub);
  Rejecter rj = {.fd = fd, .ch = ch, .text = argv[7]};
  if (read_for(fd, ch, atoi(argv[6]) * 1000, reject_offer, &rj) < 0)
    return 1;
  printf("refused %ld\n", rj.refused);
  return 0;
}

/* --- end of leaffix findings ------------------------------------------------ */

/* --- hosts findings: a super node filling a leaf's host cache (issue 12) --- */

static int hostsflood(const char *listen_addr, int frames)
{
  char host[64];
  const char *colon = strrchr(listen_addr, ':');
  if (!colon || (size_t)(colon - listen_addr) >= sizeof host)
    return 2;
  memcpy(host, listen_addr, (size_t)(colon - listen_addr));
  host[colon - listen_addr] = '\0';
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
  int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 || bind(ls, (void *)&sa, sizeof sa) != 0 ||
      listen(ls, 4) != 0) {
    fprintf(stderr, "canopy-hostile: cannot listen on %s\n", listen_addr);
    return 2;
  }
  struct pollfd pfd = {ls, POLLIN, 0};
  int fd = poll(&pfd, 1, 20000) == 1 ? accept(ls, NULL, NULL) : -1;
  close(ls); /* one leaf; afterwards nobody answers here */
  if (fd < 0)
    return 1;
  Identity id;
  memset(&id, 0, sizeof id);
  Channel *ch = identity_generate(&id) ? channel_new(&id, CHANNEL_RESPONDER) : NULL;
  int rc = 1;
  /* The leaf's HELLO may come with the handshake's last message (pump
   * reads it): ours follows without waiting for it. */
  if (!ch || pump(fd, ch, 5000, NULL) == 0 || channel_state(ch) != CHANNEL_OPEN)
    goto out;
  hello_super(fd, ch, listen_addr);
  WireMsg att = {.type = MSG_ATTACHED};
  send_msg(fd, ch, &att);
  int sent = 0;
  for (int k = 0; k < frames; k++) {
    WireHost h[WIRE_MAX_HOSTS];
    char addrs[WIRE_MAX_HOSTS][32];
    for (int j = 0; j < WIRE_MAX_HOSTS; j++) {
      if (k == 0)
        snprintf(addrs[j], sizeof addrs[j], "10.66.0.%d:7400", j + 1);
      else
        snprintf(addrs[j], sizeof addrs[j], "10.%d.%d.1:7400", 66 + k % 100, j + 32 * (k / 100));
      memset(h[j].id, 0, 32);
      randombytes_buf(h[j].id, 32);
      h[j].addr = wire_str(addrs[j], strlen(addrs[j]));
      h[j].leaf_load = 0;
      h[j].link_load = 0;
    }
    WireMsg m = {.type = MSG_HOSTS};
    m.u.hosts.count = WIRE_MAX_HOSTS;
    m.u.hosts.hosts = h;
    send_msg(fd, ch, &m);
    sent += WIRE_MAX_HOSTS;
  }
  idle(fd, ch, 1000);
  printf("hosts sent %d\n", sent);
  rc = 0;
out:
  channel_free(ch);
  identity_clear(&id);
  close(fd);
  return rc;
}

/* --- end of hosts findings ---------------------------------------------------- */

int main(int argc, char **argv)
{
  if (argc < 3) {
    fprintf(stderr,
            "usage: canopy-hostile garbage|hugeframe|tamper|truncated|wrongplace|nohello|flood "
            "HOST:PORT [COUNT]\n"
            "       canopy-hostile liar HOST:PORT NAME CID SIZE SECONDS\n"
            "       canopy-hostile slots HOST:PORT N SECONDS [PREFIXES [ADDRS]]\n"
            "       canopy-hostile m1flood HOST:PORT SECONDS [CONNS]\n"
            "       canopy-hostile liarnames HOST:PORT NAME CID SIZE SECONDS COUNT\n"
            "       canopy-hostile sybil HOST:PORT SESSIONS RATE SECONDS\n"
            "       canopy-hostile qidflood HOST:PORT RATE SECONDS same|random\n"
            "       canopy-hostile offers HOST:PORT VICTIM_ID COUNT SECONDS\n"
            "       canopy-hostile stunflood HOST:PORT SRC_IP SECONDS\n"
            "       canopy-hostile gossip HOST:PORT COUNT CLAIM\n"
            "       canopy-hostile hijack|hijack-member HOST:PORT GROUP SECONDS [TERM [KEYFILE]]\n"
            "       canopy-hostile hold HOST:PORT SESSIONS RATE SECONDS WORD\n"
            "       canopy-hostile partial HOST:PORT SESSIONS SECONDS SRC\n"
            "       canopy-hostile sybilpub HOST:PORT COUNT SECONDS [KEYWORDS]\n"
            "       canopy-hostile rejecter HOST:PORT NAME CID SIZE SECONDS TEXT\n"
            "       canopy-hostile hostsflood LISTEN_HOST:PORT FRAMES\n");
    return 2;
  }
  if (strcmp(argv[1], "m1flood") == 0 && argc >= 4)
    return crypto_ready() ? m1flood(argv[2], atoi(argv[3]), argc > 4 ? atoi(argv[4]) : 64) : 2;
  if (strcmp(argv[1], "stunflood") == 0 && argc == 5)
    return stun_flood(argv[2], argv[3], atoi(argv[4]));
  const char *mode = argv[1];
  if (strcmp(mode, "hold") == 0 && argc == 7)
    return crypto_ready() ? hold_mode(argv[2], atoi(argv[3]), atof(argv[4]), atoi(argv[5]), argv[6])
                          : 2;
  if (strcmp(mode, "partial") == 0 && argc == 6)
    return crypto_ready() ? partial_mode(argv[2], atoi(argv[3]), atoi(argv[4]), argv[5]) : 2;
  if (strcmp(mode, "gossip") == 0 && argc == 5)
    return crypto_ready() ? mode_gossip(argv[2], atoi(argv[3]), argv[4]) : 2;
  if (strcmp(mode, "slots") == 0)
    return slots_mode(argc, argv);
  if (strcmp(mode, "hostsflood") == 0 && argc == 4)
    return crypto_ready() ? hostsflood(argv[2], atoi(argv[3])) : 2;
  if (strcmp(mode, "sybil") == 0)
    return sybil_main(argc, argv);
  if (strcmp(mode, "qidflood") == 0)
    return qidflood_main(argc, argv);
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
  } else if (strcmp(mode, "quiet") == 0) {
    rc = quiet_mode(fd);
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
  } else if (strcmp(mode, "liarnames") == 0 && argc == 8) {
    rc = liar_names(fd, ch, argv);
  } else if (strcmp(mode, "offers") == 0 && argc == 6) {
    rc = offers_attack(fd, ch, argv[3], atoi(argv[4]), atoi(argv[5]));
  } else if ((strcmp(mode, "hijack") == 0 || strcmp(mode, "hijack-member") == 0) && argc >= 5) {
    uint64_t term = argc > 5 ? strtoull(argv[5], NULL, 0) : 0xffffffff00000001ull;
    uint8_t key[32];
    if (!group_key(argc > 6 ? argv[6] : NULL, key)) {
      fprintf(stderr, "canopy-hostile: cannot read %s\n", argv[6]);
    } else {
      rc = hijack(fd, ch, &id, argv[3], atoi(argv[4]), term, strcmp(mode, "hijack-member") == 0,
                  key);
    }
  } else if (strcmp(mode, "rejecter") == 0 && argc == 8) {
    rc = rejecter(fd, ch, argv);
  } else if (strcmp(mode, "sybilpub") == 0 && (argc == 5 || argc == 6)) {
    rc = sybil_mode(fd, ch, atoi(argv[3]), atoi(argv[4]), argc == 6 ? atoi(argv[5]) : 32);
  } else {
    fprintf(stderr, "canopy-hostile: unknown mode %s\n", mode);
  }
  channel_free(ch);
  identity_clear(&id);
  close(fd);
  return rc;
}
