/* bench_bulk.c - goodput of the bulk transport (nat/bulk.c) against a
 * simulated TCP Reno with SACK, over the same simulated path.
 *
 * The path: a 150 MB/s (1.2 Gbit/s) bottleneck each way with a drop-tail
 * queue of max(BDP, 1000 packets) - Linux's default txqueuelen - a one-way
 * delay of RTT/2 and 0.1 % random loss each way. Time is virtual, so a
 * 200 MB transfer runs in seconds of CPU. Goodput is stream bytes delivered
 * in order to the reading application per second of virtual time, as a
 * fraction of the bottleneck rate (headers count against us: 21 of 1200
 * bytes per datagram for Bulk, 20 for the Reno model).
 *
 * The Reno model: per-packet sequence numbers, the receiver ACKs every
 * packet with its cumulative ACK and the packet's own number (perfect SACK
 * information); a packet is lost when 3 packets above it were SACKed (RFC
 * 6675's DupThresh); one halving of cwnd per window of losses; slow start to
 * ssthresh, then +1 packet per RTT; RTO = srtt + 4 rttvar (min 200 ms) goes
 * back to a window of 1. No window limit but a 64 Ki-packet scoreboard.
 *
 * Goodput is printed for the whole transfer (startup included: from a
 * 10-packet initial window a sender needs log2(BDP / 12 KB) round trips to
 * fill the pipe, ~0.5 s at 50 ms) and for the second half of its duration
 * (steady state).
 *
 * Usage: bench_bulk [MB]   (default 200; BENCH_NO_RENO=1 skips the model)
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bulk.h"
#include "../tools/simqueue.h"

#define MTU 1200
#define LINK_RATE 150e6
#define LOSS_PPM 1000

/* ---- the Reno-SACK model ---- */

#define RENO_HDR 20
#define RENO_PAYLOAD (MTU - RENO_HDR)
#define RENO_ACK_LEN 40
#define RENO_RING 65536u
#define RENO_MAX_WIN 60000u

typedef struct {
  bool receiver;
  /* sender */
  uint64_t total_pkts, next_seq, cum, highest_sacked, loss_scan, recover;
  double cwnd, ssthresh;
  bool in_recovery, have_rtt;
  uint64_t srtt, rttvar, rto_deadline, rto_backoff;
  uint64_t sent_us[RENO_RING];
  uint8_t flags[RENO_RING]; /* 1 sacked, 2 lost, 4 retransmitted */
  uint64_t sacked_cnt, lost_unretx;
  uint64_t *retxq;
  size_t rq_head, rq_n;
  /* receiver */
  uint64_t rcum;
  uint8_t got[RENO_RING];
  uint64_t ack_q[64];
  size_t ack_n;
} Reno;

enum { RF_SACKED = 1, RF_LOST = 2, RF_RETX = 4 };

static void put64(uint8_t *p, uint64_t v)
{
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

static uint64_t reno_rto(const Reno *r)
{
  uint64_t rto = r->have_rtt ? r->srtt + 4 * r->rttvar : 1000000;
  if (rto < 200000)
    rto = 200000;
  return rto << r->rto_backoff;
}

static void reno_mark_lost(Reno *r, uint64_t s)
{
  uint8_t *f = &r->flags[s % RENO_RING];
  if (*f & (RF_SACKED | RF_LOST))
    return;
  *f |= RF_LOST;
  *f &= (uint8_t)~RF_RETX;
  r->lost_unretx++;
  r->retxq[(r->rq_head + r->rq_n++) % RENO_RING] = s;
}

static void reno_enter_recovery(Reno *r)
{
  if (r->in_recovery)
    return;
  r->in_recovery = true;
  r->recover = r->next_seq;
  r->ssthresh = r->cwnd / 2 > 2 ? r->cwnd / 2 : 2;
  r->cwnd = r->ssthresh;
}

static void reno_on_datagram(Reno *r, const uint8_t *p, size_t len, uint64_t now)
{
  if (r->receiver) {
    uint64_t s = get64(p);
    if (s >= r->rcum && s < r->rcum + RENO_RING && !r->got[s % RENO_RING]) {
      r->got[s % RENO_RING] = 1;
      while (r->got[r->rcum % RENO_RING]) {
        r->got[r->rcum % RENO_RING] = 0;
        r->rcum++;
      }
    }
    if (r->ack_n < 64)
      r->ack_q[r->ack_n++] = s;
    return;
  }
  uint64_t cum = get64(p), s = get64(p + 8);
  uint64_t newly = 0;
  if (s >= r->cum && s < r->next_seq) {
    uint8_t *f = &r->flags[s % RENO_RING];
    if (!(*f & RF_SACKED)) {
      if (!(*f & RF_RETX) || !(*f & RF_LOST)) {
        /* RTT from packets sent once (Karn) */
        if (!(*f & (RF_RETX | RF_LOST))) {
          uint64_t rtt = now - r->sent_us[s % RENO_RING];
          if (!r->have_rtt) {
            r->srtt = rtt;
            r->rttvar = rtt / 2;
            r->have_rtt = true;
          } else {
            uint64_t d = r->srtt > rtt ? r->srtt - rtt : rtt - r->srtt;
            r->rttvar = (3 * r->rttvar + d) / 4;
            r->srtt = (7 * r->srtt + rtt) / 8;
          }
        }
      }
      if ((*f & RF_LOST) && !(*f & RF_RETX))
        r->lost_unretx--;
      *f |= RF_SACKED;
      r->sacked_cnt++;
      newly++;
      if (s > r->highest_sacked)
        r->highest_sacked = s;
    }
  }
  while (r->cum < cum) {
    uint8_t *f = &r->flags[r->cum % RENO_RING];
    if (*f & RF_SACKED)
      r->sacked_cnt--;
    else {
      newly++;
      if ((*f & RF_LOST) && !(*f & RF_RETX))
        r->lost_unretx--;
    }
    *f = 0;
    r->cum++;
  }
  if (newly) {
    r->rto_backoff = 0;
    r->rto_deadline = now + reno_rto(r);
  }
  if (r->in_recovery && r->cum >= r->recover)
    r->in_recovery = false;
  /* DupThresh: anything 3 below the highest SACK is lost. */
  if (r->loss_scan < r->cum)
    r->loss_scan = r->cum;
  while (r->highest_sacked >= 3 && r->loss_scan + 3 <= r->highest_sacked) {
    if (!(r->flags[r->loss_scan % RENO_RING] & RF_SACKED)) {
      reno_mark_lost(r, r->loss_scan);
      reno_enter_recovery(r);
    }
    r->loss_scan++;
  }
  if (!r->in_recovery) {
    for (uint64_t k = 0; k < newly; k++)
      r->cwnd += r->cwnd < r->ssthresh ? 1 : 1 / r->cwnd;
  }
  if (r->cwnd > RENO_MAX_WIN)
    r->cwnd = RENO_MAX_WIN;
}

static size_t reno_poll(Reno *r, uint8_t *out, size_t cap, uint64_t now)
{
  if (r->receiver) {
    if (!r->ack_n)
      return 0;
    put64(out, r->rcum);
    put64(out + 8, r->ack_q[--r->ack_n]);
    memset(out + 16, 0, RENO_ACK_LEN - 16);
    return RENO_ACK_LEN;
  }
  uint64_t pipe = r->next_seq - r->cum - r->sacked_cnt - r->lost_unretx;
  if ((double)pipe >= r->cwnd)
    return 0;
  uint64_t s = UINT64_MAX;
  while (r->rq_n) {
    uint64_t q = r->retxq[r->rq_head];
    r->rq_head = (r->rq_head + 1) % RENO_RING;
    r->rq_n--;
    uint8_t f = r->flags[q % RENO_RING];
    if (q >= r->cum && (f & RF_LOST) && !(f & (RF_SACKED | RF_RETX))) {
      s = q;
      r->flags[q % RENO_RING] |= RF_RETX;
      r->lost_unretx--;
      break;
    }
  }
  if (s == UINT64_MAX) {
    if (r->next_seq >= r->total_pkts || r->next_seq - r->cum >= RENO_MAX_WIN)
      return 0;
    s = r->next_seq++;
    r->flags[s % RENO_RING] = 0;
  }
  r->sent_us[s % RENO_RING] = now;
  if (r->rto_deadline == 0 || r->cum + 1 == r->next_seq)
    r->rto_deadline = now + reno_rto(r);
  put64(out, s);
  memset(out + 8, 0, MTU - 8);
  return MTU;
}

static uint64_t reno_next_timer(const Reno *r)
{
  if (r->receiver)
    return UINT64_MAX;
  return r->cum < r->next_seq ? r->rto_deadline : UINT64_MAX;
}

static void reno_on_timer(Reno *r, uint64_t now)
{
  if (r->receiver || r->cum >= r->next_seq || now < r->rto_deadline)
    return;
  /* RTO: everything outstanding and unSACKed is lost; window of one. */
  r->ssthresh = r->cwnd / 2 > 2 ? r->cwnd / 2 : 2;
  r->cwnd = 1;
  r->in_recovery = true;
  r->recover = r->next_seq;
  r->rq_n = 0;
  for (uint64_t s = r->cum; s < r->next_seq; s++) {
    uint8_t *f = &r->flags[s % RENO_RING];
    if ((*f & RF_LOST) && !(*f & RF_RETX))
      r->lost_unretx--;
    *f &= (uint8_t) ~(RF_LOST | RF_RETX);
    reno_mark_lost(r, s);
  }
  r->rto_backoff++;
  r->rto_deadline = now + reno_rto(r);
}

/* ---- the simulator (as in tests/unit/test_bulk.c) ---- */

typedef SimEv Ev;

typedef struct {
  uint64_t delay_ns, queue, busy_ns;
} Link;

typedef struct {
  bool reno;
  Bulk *ep[2];
  Reno *rn[2];
  Link link[2];
  SimQueue q;
  uint64_t now_ns, seq, rng;
  uint64_t total, written, read, bad;
  bool closed;
} Sim;

static uint64_t rnd(Sim *s)
{
  return splitmix64(&s->rng);
}

static void heap_push(Sim *s, Ev e)
{
  simq_push(&s->q, e);
}

static Ev heap_pop(Sim *s)
{
  return simq_pop(&s->q);
}

static void link_send(Sim *s, int from, const uint8_t *pkt, size_t len)
{
  Link *l = &s->link[from];
  if (rnd(s) % 1000000 < LOSS_PPM)
    return;
  uint64_t backlog =
      l->busy_ns > s->now_ns ? (uint64_t)((double)(l->busy_ns - s->now_ns) * LINK_RATE / 1e9) : 0;
  if (backlog + len > l->queue)
    return;
  uint64_t start = l->busy_ns > s->now_ns ? l->busy_ns : s->now_ns;
  l->busy_ns = start + (uint64_t)((double)len * 1e9 / LINK_RATE);
  Ev e = {l->busy_ns + l->delay_ns, s->seq++, 1 - from, (uint16_t)len, malloc(len)};
  if (!e.data)
    abort();
  memcpy(e.data, pkt, len);
  heap_push(s, e);
}

static uint8_t pattern(uint64_t off)
{
  return (uint8_t)((off * 0x9e3779b97f4a7c15ull) >> 56);
}

static void app_step(Sim *s)
{
  static uint8_t buf[1 << 16];
  if (s->reno) {
    s->read = s->rn[1]->rcum * RENO_PAYLOAD;
    if (s->read > s->total)
      s->read = s->total;
    return;
  }
  while (s->written < s->total) {
    size_t n = s->total - s->written < sizeof buf ? (size_t)(s->total - s->written) : sizeof buf;
    for (size_t k = 0; k < n; k++)
      buf[k] = pattern(s->written + k);
    size_t w = bulk_write(s->ep[0], buf, n);
    s->written += w;
    if (w < n)
      break;
  }
  if (s->written == s->total && !s->closed) {
    bulk_close(s->ep[0]);
    s->closed = true;
  }
  size_t n;
  while ((n = bulk_read(s->ep[1], buf, sizeof buf)) > 0) {
    for (size_t k = 0; k < n; k++)
      s->bad += buf[k] != pattern(s->read + k);
    s->read += n;
  }
}

static size_t ep_poll(Sim *s, int i, uint8_t *out, size_t cap)
{
  uint64_t us = s->now_ns / 1000;
  return s->reno ? reno_poll(s->rn[i], out, cap, us) : bulk_poll_datagram(s->ep[i], out, cap, us);
}

static uint64_t ep_timer(Sim *s, int i)
{
  return s->reno ? reno_next_timer(s->rn[i]) : bulk_next_timer(s->ep[i]);
}

/* Returns goodput in bytes/s of virtual time over the whole transfer, and
 * in *steady over the second half of its duration (past startup); fills st
 * for Bulk. */
static double run(bool reno, double rtt_ms, uint64_t total, BulkStats *st, double *steady)
{
  Sim s;
  memset(&s, 0, sizeof s);
  s.reno = reno;
  s.rng = 42;
  s.total = total;
  s.now_ns = 1000000000ull;
  uint64_t bdp = (uint64_t)(LINK_RATE * rtt_ms / 1000);
  for (int i = 0; i < 2; i++) {
    s.link[i].delay_ns = (uint64_t)(rtt_ms * 1e6 / 2);
    s.link[i].queue = bdp > 1000 * MTU ? bdp : 1000 * MTU;
  }
  /* Buffers: 4 x BDP (cwnd is 2 x BDP; losses hold a hole open ~1 RTT),
   * at least 4 MiB. */
  size_t buf = (size_t)(4 * bdp) > (4u << 20) ? (size_t)(4 * bdp) : (4u << 20);
  BulkConfig cfg = {.send_buf = buf, .recv_buf = buf};
  for (int i = 0; i < 2; i++) {
    if (reno) {
      s.rn[i] = calloc(1, sizeof(Reno));
      if (!s.rn[i])
        abort();
      s.rn[i]->receiver = i == 1;
      s.rn[i]->cwnd = 10;
      s.rn[i]->ssthresh = 1e12;
      s.rn[i]->total_pkts = (total + RENO_PAYLOAD - 1) / RENO_PAYLOAD;
      s.rn[i]->retxq = malloc(RENO_RING * sizeof(uint64_t));
      if (!s.rn[i]->retxq)
        abort();
    } else {
      s.ep[i] = bulk_new(&cfg, s.now_ns / 1000);
      if (!s.ep[i])
        abort();
    }
  }
  uint64_t start = s.now_ns;
  uint8_t pkt[MTU];
  /* read at every 10 ms of virtual time, for the steady-state figure */
  enum { SAMPLE_NS = 10000000, NSAMPLES = 60001 };
  uint64_t *at = calloc(NSAMPLES, sizeof *at);
  size_t nat = 0;
  if (!at)
    abort();
  while (s.read < total && s.now_ns - start < 600ull * 1000000000) {
    app_step(&s);
    uint64_t got = s.read;
    if (!reno) {
      BulkStats x;
      bulk_stats(s.ep[1], &x);
      got += x.bytes_held;
    }
    while (nat < NSAMPLES && start + nat * SAMPLE_NS <= s.now_ns)
      at[nat++] = got;
    for (int i = 0; i < 2; i++) {
      size_t n;
      while ((n = ep_poll(&s, i, pkt, sizeof pkt)) > 0)
        link_send(&s, i, pkt, n);
    }
    uint64_t next = s.q.n ? s.q.v[0].t_ns : UINT64_MAX;
    for (int i = 0; i < 2; i++) {
      uint64_t t = ep_timer(&s, i);
      if (t != UINT64_MAX && t * 1000 < next)
        next = t * 1000;
    }
    if (next == UINT64_MAX)
      break;
    if (next > s.now_ns)
      s.now_ns = next;
    while (s.q.n && s.q.v[0].t_ns <= s.now_ns) {
      Ev e = heap_pop(&s);
      if (reno)
        reno_on_datagram(s.rn[e.to], e.data, e.len, s.now_ns / 1000);
      else
        bulk_on_datagram(s.ep[e.to], e.data, e.len, s.now_ns / 1000);
      free(e.data);
    }
    for (int i = 0; i < 2; i++) {
      if (ep_timer(&s, i) * 1000 <= s.now_ns) {
        if (reno)
          reno_on_timer(s.rn[i], s.now_ns / 1000);
        else
          bulk_on_timer(s.ep[i], s.now_ns / 1000);
      }
    }
  }
  app_step(&s);
  double secs = (double)(s.now_ns - start) / 1e9;
  /* Over the second half of the elapsed time, counting bytes received past
   * a hole too: in-order delivery is bursty (a hole holds back a round trip
   * of bytes), so in-order bytes alone would land a midpoint on a burst. */
  size_t mid = nat / 2;
  *steady = mid && s.now_ns > start + mid * SAMPLE_NS
                ? (double)(s.read - at[mid]) / ((double)(s.now_ns - start - mid * SAMPLE_NS) / 1e9)
                : 0;
  free(at);
  if (st && !reno)
    bulk_stats(s.ep[0], st);
  if (s.bad || s.read < total)
    fprintf(stderr, "%s rtt %.1f: %llu of %llu bytes, %llu bad\n", reno ? "reno" : "bulk", rtt_ms,
            (unsigned long long)s.read, (unsigned long long)total, (unsigned long long)s.bad);
  for (size_t k = 0; k < s.q.n; k++)
    free(s.q.v[k].data);
  free(s.q.v);
  for (int i = 0; i < 2; i++) {
    bulk_free(s.ep[i]);
    if (s.rn[i]) {
      free(s.rn[i]->retxq);
      free(s.rn[i]);
    }
  }
  if (s.read < total || s.bad)
    *steady = 0;
  return s.read < total || s.bad ? 0 : (double)total / secs;
}

int main(int argc, char **argv)
{
  uint64_t mb = argc > 1 ? strtoull(argv[1], NULL, 10) : 200;
  if (!mb)
    mb = 200;
  const double rtts[] = {0.2, 20, 50};
  const char *names[] = {"0.2", "20", "50"};
  printf("bottleneck %.0f MB/s, %.1f %% loss each way, %llu MB transfer, goodput in virtual time\n",
         LINK_RATE / 1e6, LOSS_PPM / 1e4, (unsigned long long)mb);
  for (int k = 0; k < 3; k++) {
    BulkStats st;
    double gs, rs = 0;
    double g = run(false, rtts[k], mb * 1000000, &st, &gs);
    double r = getenv("BENCH_NO_RENO") ? 0 : run(true, rtts[k], mb * 1000000, NULL, &rs);
    printf("bulk_rtt%s_loss0.1: goodput %.1f MB/s (%.2f of link), reno-sack %.1f MB/s;"
           " second half of the time: bulk %.1f MB/s (%.2f), reno-sack %.1f MB/s"
           "  [bulk: %llu resent, %llu lost, srtt %.2f ms, btlbw %.1f MB/s, cwnd %.0f KB]\n",
           names[k], g / 1e6, g / LINK_RATE, r / 1e6, gs / 1e6, gs / LINK_RATE, rs / 1e6,
           (unsigned long long)st.retransmits, (unsigned long long)st.packets_lost,
           (double)st.srtt_us / 1000, (double)st.delivery_rate / 1e6, (double)st.cwnd / 1e3);
    fflush(stdout);
  }
  return 0;
}
