/* delay.c - canopy-delay: a userspace delay and loss stage on NFQUEUE, since
 * this machine's kernel has no netem (see shared/handbook/LAB.md).
 *
 *   canopy-delay --queue N --delay-ms D [--loss P] [--seed S] [--gso]
 *                [--max-held K] [--stats]
 *
 * Every packet the kernel queues to NFQUEUE N is held for D milliseconds
 * (fractions allowed: 0.5) and then accepted; a fraction P of them (0.001 =
 * 0.1 %) is dropped on arrival instead, chosen by a PRNG seeded with S, so a
 * run is repeatable for a given packet sequence. Typical use, in a NAT
 * router namespace, to delay what leaves by the WAN side:
 *
 *   iptables -t mangle -A FORWARD -o wan -j NFQUEUE --queue-num 0 --queue-bypass
 *   canopy-delay --queue 0 --delay-ms 25 --loss 0.001 &
 *
 * (--queue-bypass: while no canopy-delay is bound, packets pass undelayed.)
 *
 * How: the delay is the same for every packet, so release order is arrival
 * order and a FIFO of (packet id, release time) is the sorted timer queue.
 * One poll loop reads as many queued packets as the socket holds, then
 * releases every due one with a single batch verdict (NF_ACCEPT for all ids
 * up to the newest due id); drops get their own NF_DROP verdict at once. No
 * threads, no per-packet timers, no copy of the payload (COPY_META).
 *
 * --gso asks the kernel to queue GSO super-packets whole instead of cutting
 * them into wire-sized packets first: much cheaper at high rates, but a
 * drop then loses the whole super-packet (a burst). Without --gso, loss is
 * per wire packet.
 *
 * SIGTERM / SIGINT: every held packet is accepted (no loss on shutdown),
 * the queue is unbound, exit 0. --stats prints counts to stderr at exit.
 */
#define _GNU_SOURCE    /* ppoll */
#include <arpa/inet.h> /* before libnetfilter_queue.h: see LAB.md */

#include <errno.h>
#include <inttypes.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <libnetfilter_queue/libnetfilter_queue.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

#define READ_BURST 1024 /* messages read before releasing what is due */
#define BATCH 64        /* messages per recvmmsg */
#define MSG_BUF 8192    /* one COPY_META message fits easily */
#define RCVBUF (64 << 20)

typedef struct {
  uint32_t id;
  int64_t due_ns;
} Held;

typedef struct {
  struct nfq_q_handle *qh;
  int64_t delay_ns;
  double loss;
  uint64_t rng;
  /* FIFO ring of held packets, grown by doubling */
  Held *ring;
  size_t cap, head, count;
  /* counters */
  uint64_t seen, dropped, accepted, verdict_msgs, enobufs;
  int error;
} Stage;

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
  g_stop = sig;
}

static int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* splitmix64: small, seedable, good enough for Bernoulli drops. */
static uint64_t rng_next(uint64_t *s)
{
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double rng_unit(uint64_t *s)
{
  return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static int ring_push(Stage *st, uint32_t id, int64_t due)
{
  if (st->count == st->cap) {
    size_t ncap = st->cap ? st->cap * 2 : 4096;
    Held *n = malloc(ncap * sizeof *n);
    if (!n)
      return -1;
    for (size_t i = 0; i < st->count; i++)
      n[i] = st->ring[(st->head + i) % st->cap];
    free(st->ring);
    st->ring = n;
    st->cap = ncap;
    st->head = 0;
  }
  st->ring[(st->head + st->count) % st->cap] = (Held){id, due};
  st->count++;
  return 0;
}

/* Accept every held packet due by `now` (all of them if now < 0) with one
 * batch verdict. */
static void release_due(Stage *st, int64_t now)
{
  size_t n = 0;
  uint32_t last = 0;
  while (st->count > 0) {
    Held *h = &st->ring[st->head];
    if (now >= 0 && h->due_ns > now)
      break;
    last = h->id;
    st->head = (st->head + 1) % st->cap;
    st->count--;
    n++;
  }
  if (n == 0)
    return;
  if (nfq_set_verdict_batch(st->qh, last, NF_ACCEPT) < 0) {
    fprintf(stderr, "canopy-delay: batch verdict: %s\n", strerror(errno));
    st->error = 1;
  }
  st->accepted += n;
  st->verdict_msgs++;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa,
                     void *data)
{
  Stage *st = data;
  struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
  if (!ph)
    return 0;
  uint32_t id = ntohl(ph->packet_id);
  st->seen++;
  if (st->loss > 0 && rng_unit(&st->rng) < st->loss) {
    st->dropped++;
    if (nfq_set_verdict(qh, id, NF_DROP, 0, NULL) < 0) {
      fprintf(stderr, "canopy-delay: drop verdict: %s\n", strerror(errno));
      st->error = 1;
    }
    return 0;
  }
  if (ring_push(st, id, now_ns() + st->delay_ns) < 0) {
    /* Out of memory: let this one (and, by the batch, all before it) go. */
    release_due(st, -1);
    nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
    st->accepted++;
  }
  return 0;
}

static int usage(void)
{
  fprintf(stderr, "usage: canopy-delay --queue N --delay-ms D [--loss P] [--seed S] [--gso] "
                  "[--max-held K] [--stats]\n"
                  "  holds each packet of NFQUEUE N for D ms (fractions allowed) and drops a\n"
                  "  fraction P (0..1) of them; SIGTERM accepts what is held and exits.\n");
  return 2;
}

static int parse_double(const char *s, double lo, double hi, double *out)
{
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi))
    return -1;
  *out = v;
  return 0;
}

int main(int argc, char **argv)
{
  double queue = -1, delay_ms = -1, loss = 0, seed = 1, max_held = 1 << 20;
  int gso = 0, stats = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--gso") == 0) {
      gso = 1;
      continue;
    }
    if (strcmp(a, "--stats") == 0) {
      stats = 1;
      continue;
    }
    if (i + 1 >= argc)
      return usage();
    const char *v = argv[++i];
    int bad;
    if (strcmp(a, "--queue") == 0)
      bad = parse_double(v, 0, 65535, &queue) || queue != (double)(uint16_t)queue;
    else if (strcmp(a, "--delay-ms") == 0)
      bad = parse_double(v, 0, 600000, &delay_ms);
    else if (strcmp(a, "--loss") == 0)
      bad = parse_double(v, 0, 1, &loss);
    else if (strcmp(a, "--seed") == 0)
      bad = parse_double(v, 0, 18446744073709551615.0, &seed);
    else if (strcmp(a, "--max-held") == 0)
      bad = parse_double(v, 1, 4294967295.0, &max_held);
    else
      bad = 1;
    if (bad) {
      fprintf(stderr, "canopy-delay: bad %s '%s'\n", a, v);
      return usage();
    }
  }
  if (queue < 0 || delay_ms < 0)
    return usage();

  Stage st = {
      .delay_ns = (int64_t)(delay_ms * 1e6 + 0.5),
      .loss = loss,
      .rng = (uint64_t)seed,
  };

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal; /* no SA_RESTART: poll returns EINTR */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);

  struct nfq_handle *h = nfq_open();
  if (!h) {
    fprintf(stderr, "canopy-delay: nfq_open: %s (root? nfnetlink_queue?)\n", strerror(errno));
    return 1;
  }
  st.qh = nfq_create_queue(h, (uint16_t)queue, on_packet, &st);
  if (!st.qh) {
    fprintf(stderr, "canopy-delay: cannot bind queue %g: %s (another program bound to it?)\n",
            queue, strerror(errno));
    nfq_close(h);
    return 1;
  }
  if (nfq_set_mode(st.qh, NFQNL_COPY_META, 0) < 0) {
    fprintf(stderr, "canopy-delay: set mode: %s\n", strerror(errno));
    nfq_destroy_queue(st.qh);
    nfq_close(h);
    return 1;
  }
  if (nfq_set_queue_maxlen(st.qh, (uint32_t)max_held) < 0)
    fprintf(stderr, "canopy-delay: warning: set queue maxlen: %s\n", strerror(errno));
  if (gso && nfq_set_queue_flags(st.qh, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO) < 0)
    fprintf(stderr, "canopy-delay: warning: GSO flag refused: %s\n", strerror(errno));

  int fd = nfq_fd(h);
  int rcv = RCVBUF, one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  /* A lost notification is harmless: the next batch verdict covers its id. */
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);

  fprintf(stderr, "canopy-delay: queue %g, delay %g ms, loss %g, seed %g%s\n", queue, delay_ms,
          loss, seed, gso ? ", gso" : "");

  /* COPY_META messages are small: many per recvmmsg call. */
  static char bufs[BATCH][MSG_BUF] __attribute__((aligned(8)));
  static struct mmsghdr msgs[BATCH];
  static struct iovec iovs[BATCH];
  for (int i = 0; i < BATCH; i++) {
    iovs[i] = (struct iovec){bufs[i], MSG_BUF};
    msgs[i].msg_hdr = (struct msghdr){.msg_iov = &iovs[i], .msg_iovlen = 1};
  }
  int rc = 0;
  while (!g_stop && !st.error) {
    int64_t now = now_ns();
    release_due(&st, now);
    struct timespec ts, *tp = NULL;
    if (st.count > 0) {
      int64_t wait = st.ring[st.head].due_ns - now;
      if (wait < 0)
        wait = 0;
      ts.tv_sec = (time_t)(wait / 1000000000);
      ts.tv_nsec = (long)(wait % 1000000000);
      tp = &ts;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int pr = ppoll(&pfd, 1, tp, NULL);
    if (pr < 0) {
      if (errno == EINTR)
        continue;
      fprintf(stderr, "canopy-delay: poll: %s\n", strerror(errno));
      rc = 1;
      break;
    }
    if (pr == 0)
      continue;
    /* Read what is there (READ_BURST messages at most), then release what
     * is due - at zero delay, everything just read, in one verdict. */
    for (int total = 0; total < READ_BURST && !st.error;) {
      int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
          break;
        if (errno == ENOBUFS) { /* notifications lost; see above */
          st.enobufs++;
          continue;
        }
        fprintf(stderr, "canopy-delay: recv: %s\n", strerror(errno));
        rc = 1;
        st.error = 1;
        break;
      }
      for (int i = 0; i < n; i++)
        nfq_handle_packet(h, bufs[i], (int)msgs[i].msg_len);
      total += n;
      if (n < BATCH)
        break;
    }
  }
  if (st.error)
    rc = 1;
  /* Let everything held go on, then unbind (unbinding drops what is queued). */
  release_due(&st, -1);
  nfq_destroy_queue(st.qh);
  nfq_close(h);
  free(st.ring);
  if (stats) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr,
            "canopy-delay: seen %" PRIu64 ", dropped %" PRIu64 ", accepted %" PRIu64
            ", verdict batches %" PRIu64 ", enobufs %" PRIu64 ", cpu user %.2f s sys %.2f s\n",
            st.seen, st.dropped, st.accepted, st.verdict_msgs, st.enobufs,
            (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
            (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
  }
  return rc;
}
