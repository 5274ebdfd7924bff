/* bulk.c - a reliable byte stream over datagrams: SACK-style ACKs, RACK loss
 * detection and a BBR-like sender. The design and its reasons are in bulk.h;
 * comments here state invariants and cite the RFCs and drafts followed. */
#include "bulk.h"

#include <stdlib.h>
#include <string.h>

#define HDR_LEN BULK_HEADER_BYTES
#define STREAM_HDR_LEN 12 /* type, offset, length, fin */
#define ACK_BASE_LEN 14   /* type, delay, max offset, count */
#define ACK_RANGE_LEN 16
#define FRAME_STREAM 0x01
#define FRAME_ACK 0x02
#define FRAME_PING 0x03
#define FRAME_PAD 0x04

#define INITIAL_WINDOW 65536u /* peer's window before its first ACK */
#define MIN_BUF 65536u
#define MAX_BUF (1u << 30)
#define MAX_OFFSET (1ull << 62)
#define RCV_PN_RANGES 64    /* packet-number ranges kept for ACKs */
#define RCV_OOO_RANGES 1024 /* holes in the receive ring */
#define SND_RANGES 4096     /* acked / lost ranges of the send ring */
#define PIGGYBACK_RANGES 4
#define GRANULARITY_US 1000    /* RFC 9002 kGranularity */
#define MAX_ACK_DELAY_US 25000 /* cap on a peer-claimed ack delay */
#define MAX_PKT_THRESH 1000
#define RECENT_LOST 64 /* losses remembered to spot spurious ones */
#define BW_ROUNDS 10   /* btlbw max filter length, rounds */
#define MIN_RTT_HALF_WINDOW_US 5000000ull
#define STARTUP_GAIN 2.77     /* BBRv3: 4 ln 2; pacing gain in startup */
#define STARTUP_CWND_GAIN 2.0 /* BBRv3: 2.89 overfills a BDP-sized queue */
#define NOMINAL_RTT_US 1000
/* Path MTU search (DPLPMTUD, RFC 8899). */
#define PROBE_TRIES 3              /* MAX_PROBES: a size fails after 3 lost probes */
#define PROBE_DONE_GAP 16          /* stop when the bounds are this close */
#define PROBE_MIN_TIMEOUT_US 10000 /* a probe unacked this long (or 3 RTT) is lost */
#define PMTU_RAISE_US 600000000ull /* PMTU_RAISE_TIMER: search again after 10 min */
/* Large packets lost in a row, none acked, while smaller ones (PTO probes
 * and resends are base-sized) get through: a black hole for our size. Not
 * PTOs alone: on a sub-millisecond path a receiver descheduled for a few
 * ms fires two of them with nothing lost. */
#define BIG_LOST_RUN 10

enum { SENT_PENDING, SENT_ACKED, SENT_LOST };
enum { SF_FIN = 1, SF_APPLIMITED = 2 };
enum { MODE_STARTUP, MODE_DRAIN, MODE_PROBE_BW };

static bool has_data(const struct Bulk *b);

static const double probe_gains[8] = {1.25, 0.75, 1, 1, 1, 1, 1, 1};

typedef struct {
  uint64_t lo, hi; /* [lo, hi) */
} BRange;

/* Sorted, disjoint, non-adjacent ranges; never more than max of them. */
typedef struct {
  BRange *r;
  size_t n, max;
} RangeSet;

/* One ack-eliciting packet in flight or awaiting its fate. */
typedef struct {
  uint64_t pn, sent_us, off;
  uint64_t delivered, delivered_us, first_sent_us; /* rate-sample state */
  uint32_t size;
  uint16_t len;
  uint8_t state, flags;
} Sent;

struct Bulk {
  BulkConfig cfg;
  size_t mss; /* largest STREAM payload of an mtu-sized packet */

  /* Datagram size. cfg.mtu is the base every path is assumed to carry; mtu
   * is the size in use, raised by probes up to max_mtu: a probe is a PING
   * padded to probe_size outside congestion control and the sent record,
   * so its loss costs neither data nor rate. The search keeps lo (carried)
   * < size < hi (failed, or max_mtu + 1). */
  size_t mtu, max_mtu, probe_lo, probe_hi, probe_size;
  uint64_t probe_pn, probe_sent_us, probe_due_us;
  unsigned probe_tries;
  unsigned big_lost_run; /* packets over the base size lost since one was acked */

  /* Send side. Ring positions are offset % scap; [snd_una, wr_off) held. */
  uint8_t *sbuf;
  size_t scap;
  uint64_t snd_una, snd_nxt, wr_off, peer_max;
  bool closed, fin_sent, fin_acked, fin_pending;
  RangeSet acked, lost; /* both within [snd_una, snd_nxt) */

  Sent *sent; /* deque of ack-eliciting packets, ascending pn */
  size_t sent_cap, sent_head, sent_n;
  uint64_t next_pn, largest_acked, inflight, last_eliciting_us, loss_time;
  bool any_acked;
  unsigned pto_count, probes;
  uint64_t pkt_thresh;               /* reorder tolerance, packets; grows on spurious loss */
  unsigned reo_eighths;              /* time threshold is (1 + reo_eighths/8) x RTT */
  uint64_t recent_lost[RECENT_LOST]; /* pn + 1 of recent losses, 0 = free */
  unsigned recent_next;

  bool have_rtt;
  uint64_t srtt, rttvar, latest_rtt, min_rtt_all;

  /* BBR model. */
  int mode;
  uint64_t delivered, delivered_us, first_sent_us, app_limited_until;
  uint64_t round_count, next_round_delivered;
  uint64_t bw_slot[BW_ROUNDS], btlbw;
  uint64_t min_rtt, min_rtt_cur, min_rtt_prev, min_rtt_stamp;
  uint64_t full_bw;
  unsigned full_bw_cnt;
  bool filled_pipe;
  unsigned cycle_idx;
  uint64_t cycle_stamp;
  double pacing_gain, cwnd_gain;
  uint64_t cwnd, pacing_rate, loss_cap;
  uint64_t round_lost_pkts, round_acked_pkts;
  uint64_t next_send_ns;

  /* Receive side. [rcv_read, rcv_contig) readable; ooo above rcv_contig. */
  uint8_t *rbuf;
  size_t rcap;
  uint64_t rcv_read, rcv_contig, final_size, adv_limit;
  bool fin_rcvd, have_rcvd, ack_now, win_update;
  RangeSet ooo, pns;
  uint64_t largest_rcvd, largest_rcvd_us, ack_deadline;
  unsigned ack_pending;

  BulkStats st;
};

/* ---- range sets ---- */

static bool rs_init(RangeSet *s, size_t max)
{
  s->r = malloc(max * sizeof *s->r);
  s->n = 0;
  s->max = max;
  return s->r != NULL;
}

/* Index of the first range with hi >= x (the first that x may touch). */
static size_t rs_lower(const RangeSet *s, uint64_t x)
{
  size_t lo = 0, hi = s->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->r[mid].hi < x)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Adds [lo, hi). When full and it touches nothing: with widen, the nearest
 * neighbour grows to cover it (a superset, for sets where that is safe);
 * otherwise returns false and leaves s unchanged. */
static bool rs_add(RangeSet *s, uint64_t lo, uint64_t hi, bool widen)
{
  if (lo >= hi)
    return true;
  size_t i = rs_lower(s, lo), j = i;
  while (j < s->n && s->r[j].lo <= hi)
    j++;
  if (i == j) { /* touches nothing: insert at i */
    if (s->n == s->max) {
      if (!widen || s->n == 0)
        return false;
      size_t k = i < s->n ? i : i - 1;
      if (lo < s->r[k].lo)
        s->r[k].lo = lo;
      if (hi > s->r[k].hi)
        s->r[k].hi = hi;
      return true;
    }
    memmove(&s->r[i + 1], &s->r[i], (s->n - i) * sizeof *s->r);
    s->r[i] = (BRange){lo, hi};
    s->n++;
    return true;
  }
  BRange m = {lo < s->r[i].lo ? lo : s->r[i].lo, hi > s->r[j - 1].hi ? hi : s->r[j - 1].hi};
  s->r[i] = m;
  memmove(&s->r[i + 1], &s->r[j], (s->n - j) * sizeof *s->r);
  s->n -= j - i - 1;
  return true;
}

static void rs_pop_front(RangeSet *s)
{
  memmove(&s->r[0], &s->r[1], (s->n - 1) * sizeof *s->r);
  s->n--;
}

/* Range containing x, or NULL. */
static const BRange *rs_find(const RangeSet *s, uint64_t x)
{
  size_t i = rs_lower(s, x + 1);
  return i < s->n && s->r[i].lo <= x ? &s->r[i] : NULL;
}

/* ---- bounded reader (sticky failure) ---- */

typedef struct {
  const uint8_t *p;
  size_t n, pos;
  bool fail;
} Rd;

static const uint8_t *rd_bytes(Rd *r, size_t n)
{
  if (r->fail || r->n - r->pos < n) {
    r->fail = true;
    return NULL;
  }
  const uint8_t *p = r->p + r->pos;
  r->pos += n;
  return p;
}

static uint64_t rd_uint(Rd *r, size_t n)
{
  const uint8_t *p = rd_bytes(r, n);
  uint64_t v = 0;
  for (size_t i = 0; p && i < n; i++)
    v = v << 8 | p[i];
  return v;
}

static uint8_t *wr_uint(uint8_t *p, uint64_t v, size_t n)
{
  for (size_t i = 0; i < n; i++)
    p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
  return p + n;
}

/* ---- rings ---- */

static void ring_put(uint8_t *ring, size_t cap, uint64_t off, const uint8_t *d, size_t len)
{
  size_t pos = (size_t)(off % cap), first = cap - pos < len ? cap - pos : len;
  memcpy(ring + pos, d, first);
  memcpy(ring, d + first, len - first);
}

static void ring_get(const uint8_t *ring, size_t cap, uint64_t off, uint8_t *d, size_t len)
{
  size_t pos = (size_t)(off % cap), first = cap - pos < len ? cap - pos : len;
  memcpy(d, ring + pos, first);
  memcpy(d + first, ring, len - first);
}

/* ---- sent-packet deque ---- */

static Sent *sent_at(const Bulk *b, size_t i)
{
  return &b->sent[(b->sent_head + i) % b->sent_cap];
}

/* Logical index of the first record with pn >= x. */
static size_t sent_lower(const Bulk *b, uint64_t x)
{
  size_t lo = 0, hi = b->sent_n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (sent_at(b, mid)->pn < x)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static void sent_trim(Bulk *b)
{
  while (b->sent_n && sent_at(b, 0)->state != SENT_PENDING) {
    b->sent_head = (b->sent_head + 1) % b->sent_cap;
    b->sent_n--;
  }
}

/* ---- public: lifetime ---- */

Bulk *bulk_new(const BulkConfig *cfg, uint64_t now_us)
{
  BulkConfig c = cfg ? *cfg : (BulkConfig){0};
  if (!c.mtu)
    c.mtu = 1200;
  if (!c.send_buf)
    c.send_buf = 16u << 20;
  if (!c.recv_buf)
    c.recv_buf = 16u << 20;
  if (!c.ack_delay_us)
    c.ack_delay_us = 1000;
  if (!c.initial_rtt_us)
    c.initial_rtt_us = 100000;
  if (!c.pacing_slack_us)
    c.pacing_slack_us = 1000;
  if (c.mtu < BULK_MIN_MTU || c.mtu > BULK_MAX_MTU || c.send_buf < MIN_BUF ||
      c.send_buf > MAX_BUF || c.recv_buf < MIN_BUF || c.recv_buf > MAX_BUF ||
      c.ack_delay_us > MAX_ACK_DELAY_US)
    return NULL;
  Bulk *b = calloc(1, sizeof *b);
  if (!b)
    return NULL;
  b->cfg = c;
  b->mtu = b->max_mtu = b->probe_lo = c.mtu;
  b->st.mtu = c.mtu;
  b->probe_hi = c.mtu + 1;
  b->mss = c.mtu - HDR_LEN - STREAM_HDR_LEN;
  b->scap = c.send_buf;
  b->rcap = c.recv_buf;
  /* Every in-flight packet carries >= mss/2 bytes except FIN/PING probes;
   * twice the ring's packet count plus slack bounds the deque. */
  b->sent_cap = 2 * (c.send_buf / b->mss) + 256;
  b->sbuf = malloc(b->scap);
  b->rbuf = malloc(b->rcap);
  b->sent = malloc(b->sent_cap * sizeof *b->sent);
  if (!b->sbuf || !b->rbuf || !b->sent || !rs_init(&b->acked, SND_RANGES) ||
      !rs_init(&b->lost, SND_RANGES) || !rs_init(&b->ooo, RCV_OOO_RANGES) ||
      !rs_init(&b->pns, RCV_PN_RANGES)) {
    bulk_free(b);
    return NULL;
  }
  b->pkt_thresh = 3;
  b->reo_eighths = 1;
  b->peer_max = INITIAL_WINDOW;
  b->adv_limit = INITIAL_WINDOW;
  b->mode = MODE_STARTUP;
  b->pacing_gain = STARTUP_GAIN;
  b->cwnd_gain = STARTUP_CWND_GAIN;
  b->cwnd = 10 * (uint64_t)c.mtu;
  b->pacing_rate = (uint64_t)(STARTUP_GAIN * (double)b->cwnd * 1e6 / NOMINAL_RTT_US);
  b->next_send_ns = now_us * 1000;
  b->delivered_us = b->first_sent_us = now_us;
  b->min_rtt_stamp = now_us;
  b->min_rtt = b->min_rtt_cur = b->min_rtt_prev = b->min_rtt_all = UINT64_MAX;
  return b;
}

void bulk_free(Bulk *b)
{
  if (!b)
    return;
  free(b->sbuf);
  free(b->rbuf);
  free(b->sent);
  free(b->acked.r);
  free(b->lost.r);
  free(b->ooo.r);
  free(b->pns.r);
  free(b);
}

/* ---- public: application side ---- */

size_t bulk_write(Bulk *b, const uint8_t *data, size_t len)
{
  if (b->closed)
    return 0;
  size_t room = b->scap - (size_t)(b->wr_off - b->snd_una);
  if (len > room)
    len = room;
  if (b->wr_off + len > MAX_OFFSET)
    return 0;
  ring_put(b->sbuf, b->scap, b->wr_off, data, len);
  b->wr_off += len;
  b->st.bytes_written += len;
  return len;
}

void bulk_close(Bulk *b)
{
  b->closed = true;
}

size_t bulk_read(Bulk *b, uint8_t *buf, size_t cap)
{
  uint64_t avail = b->rcv_contig - b->rcv_read;
  size_t n = avail < cap ? (size_t)avail : cap;
  ring_get(b->rbuf, b->rcap, b->rcv_read, buf, n);
  b->rcv_read += n;
  b->st.bytes_read += n;
  /* Tell a sender that may be blocked once a quarter of the ring is free
   * again; smaller updates would cost an ACK per read. */
  if (b->have_rcvd && b->rcv_read + b->rcap - b->adv_limit >= b->rcap / 4)
    b->win_update = true;
  return n;
}

size_t bulk_readable(const Bulk *b)
{
  return (size_t)(b->rcv_contig - b->rcv_read);
}

size_t bulk_writable(const Bulk *b)
{
  if (b->closed || b->wr_off >= MAX_OFFSET)
    return 0;
  return b->scap - (size_t)(b->wr_off - b->snd_una);
}

bool bulk_eof(const Bulk *b)
{
  return b->fin_rcvd && b->rcv_read == b->final_size;
}

bool bulk_done(const Bulk *b)
{
  return b->closed && b->fin_acked && b->snd_una == b->wr_off;
}

/* ---- congestion control (BBR draft, sections 4.1-4.3) ---- */

static uint64_t bbr_min_rtt(const Bulk *b)
{
  return b->min_rtt != UINT64_MAX ? b->min_rtt : b->cfg.initial_rtt_us;
}

static uint64_t bbr_bdp(const Bulk *b)
{
  return b->btlbw * bbr_min_rtt(b) / 1000000;
}

/* The window has to cover the time between bursts of ACKs, not only the
 * RTT: the receiver holds ACKs up to ack_delay_us, and a sender woken by
 * millisecond timers sends up to pacing_slack_us late. On a
 * sub-millisecond path those dwarf the RTT itself (a LAN: 0.1 ms RTT, 1 ms
 * ACK delay) and a cwnd of 2 x BDP, a few packets, stalls between ACKs.
 * This is BBR's allowance for ACK aggregation (extra_acked), as a bound
 * rather than an estimate; on longer paths the RTT covers it. */
static uint64_t bbr_cwnd_bdp(const Bulk *b)
{
  uint64_t host = (uint64_t)b->cfg.ack_delay_us + b->cfg.pacing_slack_us;
  uint64_t t = bbr_min_rtt(b) > host ? bbr_min_rtt(b) : host;
  return b->btlbw * t / 1000000;
}

/* min RTT over 5-10 s: the min of this half-window and the previous one, so
 * a stale minimum (route change) ages out without a ProbeRTT phase; the
 * 0.75 gain phase drains the queue often enough to see the floor. */
static void bbr_rtt_sample(Bulk *b, uint64_t rtt, uint64_t now)
{
  if (now - b->min_rtt_stamp > MIN_RTT_HALF_WINDOW_US) {
    b->min_rtt_prev = b->min_rtt_cur;
    b->min_rtt_cur = UINT64_MAX;
    b->min_rtt_stamp = now;
  }
  if (rtt < b->min_rtt_cur)
    b->min_rtt_cur = rtt;
  b->min_rtt = b->min_rtt_cur < b->min_rtt_prev ? b->min_rtt_cur : b->min_rtt_prev;
}

static void bbr_set_mode(Bulk *b, int mode, uint64_t now)
{
  b->mode = mode;
  if (mode == MODE_DRAIN) {
    b->pacing_gain = 1 / STARTUP_GAIN;
    b->cwnd_gain = STARTUP_CWND_GAIN;
  } else if (mode == MODE_PROBE_BW) {
    b->cycle_idx = 2; /* start cruising, not probing, right after a drain */
    b->cycle_stamp = now;
    b->pacing_gain = probe_gains[b->cycle_idx];
    b->cwnd_gain = 2;
  }
}

/* End of a round trip: the loss response and the startup exit test. */
static void bbr_round_end(Bulk *b, bool app_limited)
{
  uint64_t total = b->round_lost_pkts + b->round_acked_pkts;
  uint64_t floor = 4 * (uint64_t)b->mtu;
  if (b->round_lost_pkts >= 8 && b->round_lost_pkts * 20 > total) {
    /* Sustained loss: congestion, not noise (BBRv2's inflight_hi, beta 0.7). */
    uint64_t cap = b->cwnd * 7 / 10;
    if (b->loss_cap && b->loss_cap * 7 / 10 < cap)
      cap = b->loss_cap * 7 / 10;
    b->loss_cap = cap > floor ? cap : floor;
    b->filled_pipe = true;
  } else if (b->loss_cap) {
    uint64_t step = b->loss_cap / 8 > b->mtu ? b->loss_cap / 8 : b->mtu;
    b->loss_cap += step;
    if (b->loss_cap > 4 * (b->cwnd_gain * (double)bbr_cwnd_bdp(b)) + 16.0 * (double)b->mtu)
      b->loss_cap = 0;
  }
  b->round_lost_pkts = b->round_acked_pkts = 0;
  if (!b->filled_pipe && !app_limited) {
    if (b->btlbw >= b->full_bw + b->full_bw / 4) {
      b->full_bw = b->btlbw;
      b->full_bw_cnt = 0;
    } else if (++b->full_bw_cnt >= 3) {
      b->filled_pipe = true;
    }
  }
}

static void bbr_update(Bulk *b, uint64_t acked, uint64_t now)
{
  if (b->mode == MODE_STARTUP && b->filled_pipe)
    bbr_set_mode(b, MODE_DRAIN, now);
  if (b->mode == MODE_DRAIN && b->inflight <= bbr_bdp(b))
    bbr_set_mode(b, MODE_PROBE_BW, now);
  if (b->mode == MODE_PROBE_BW && now - b->cycle_stamp > bbr_min_rtt(b)) {
    b->cycle_idx = (b->cycle_idx + 1) % 8;
    b->cycle_stamp = now;
    b->pacing_gain = probe_gains[b->cycle_idx];
  }
  if (b->btlbw) {
    uint64_t rate = (uint64_t)(b->pacing_gain * (double)b->btlbw);
    if (b->mode != MODE_STARTUP || rate > b->pacing_rate)
      b->pacing_rate = rate;
  }
  uint64_t floor = 4 * (uint64_t)b->mtu;
  uint64_t target = (uint64_t)(b->cwnd_gain * (double)bbr_cwnd_bdp(b)) + 3 * (uint64_t)b->mtu;
  if (b->filled_pipe)
    b->cwnd = b->cwnd + acked < target ? b->cwnd + acked : target;
  else if (b->cwnd < target || !b->btlbw)
    b->cwnd += acked;
  if (b->cwnd < floor)
    b->cwnd = floor;
  if (b->loss_cap && b->cwnd > b->loss_cap)
    b->cwnd = b->loss_cap;
}

/* ---- path MTU (RFC 8899) ---- */

static void set_mtu(Bulk *b, size_t mtu)
{
  b->mtu = mtu;
  b->mss = mtu - HDR_LEN - STREAM_HDR_LEN;
  b->st.mtu = mtu;
}

/* The next size to try: the ceiling first (most paths carry a full
 * Ethernet frame), then halfway between what worked and what did not. */
static size_t probe_next_size(const Bulk *b)
{
  if (b->probe_hi > b->max_mtu)
    return b->max_mtu;
  return b->probe_lo + (b->probe_hi - b->probe_lo) / 2;
}

static bool probe_searching(const Bulk *b)
{
  return b->probe_hi > b->probe_lo + PROBE_DONE_GAP && b->max_mtu > b->probe_lo;
}

/* After a step: when the bounds have met, the search starts over from the
 * ceiling PMTU_RAISE_US later (a route may have grown). */
static void probe_done(Bulk *b, uint64_t now)
{
  if (probe_searching(b))
    return;
  b->probe_lo = b->mtu;
  b->probe_hi = b->max_mtu + 1;
  b->probe_due_us = now + PMTU_RAISE_US;
}

/* The path stopped carrying our size (RFC 8899 section 4.3): back to the
 * base at once; packets in flight at the larger size are resent in base-
 * sized ones as they are declared lost. Search again after a while. */
static void black_hole(Bulk *b, uint64_t now)
{
  b->probe_hi = b->mtu;
  set_mtu(b, b->cfg.mtu);
  b->probe_lo = b->mtu;
  b->probe_size = 0;
  b->probe_tries = 0;
  b->big_lost_run = 0;
  b->probe_due_us = now + PMTU_RAISE_US / 10;
  b->st.mtu_black_holes++;
}

void bulk_set_max_mtu(Bulk *b, size_t max_mtu, uint64_t now_us)
{
  if (max_mtu < b->cfg.mtu)
    max_mtu = b->cfg.mtu;
  if (max_mtu > BULK_MAX_MTU)
    max_mtu = BULK_MAX_MTU;
  b->max_mtu = max_mtu;
  b->probe_size = 0;
  b->probe_tries = 0;
  if (b->mtu > max_mtu)
    set_mtu(b, max_mtu);
  b->probe_lo = b->mtu;
  b->probe_hi = max_mtu + 1;
  b->probe_due_us = now_us;
}

static uint64_t probe_timeout(const Bulk *b)
{
  uint64_t t = 3 * b->srtt + b->cfg.ack_delay_us;
  return t > PROBE_MIN_TIMEOUT_US ? t : PROBE_MIN_TIMEOUT_US;
}

static void probe_lost(Bulk *b, uint64_t now)
{
  b->probe_size = 0;
  if (++b->probe_tries >= PROBE_TRIES) {
    b->probe_hi = probe_next_size(b);
    b->probe_tries = 0;
  }
  b->probe_due_us = now;
  probe_done(b, now);
}

/* A probe is due while the stream has something to send: an idle
 * connection is not woken up to measure its path. */
static bool probe_wanted(const Bulk *b, uint64_t now)
{
  return !b->probe_size && b->have_rtt && probe_searching(b) && now >= b->probe_due_us &&
         (b->inflight || has_data(b));
}

/* ---- loss detection (RFC 9002 section 6.1, RFC 8985) ---- */

static void black_hole(Bulk *b, uint64_t now);

static void lose(Bulk *b, Sent *p, uint64_t now)
{
  p->state = SENT_LOST;
  /* Only large packets lost while small ones get through (ACK-only and
   * short packets, base-sized resends): a black hole for our size that
   * PTOs never see. Random loss does not take BIG_LOST_RUN in a row. */
  if (p->size > b->cfg.mtu && b->mtu > b->cfg.mtu && ++b->big_lost_run >= BIG_LOST_RUN)
    black_hole(b, now);
  b->inflight -= p->size;
  b->st.packets_lost++;
  b->round_lost_pkts++;
  b->recent_lost[b->recent_next++ % RECENT_LOST] = p->pn + 1;
  if (p->len)
    rs_add(&b->lost, p->off, p->off + p->len,
           true); /* widening is safe: resends skip acked bytes */
  if ((p->flags & SF_FIN) && !b->fin_acked)
    b->fin_pending = true;
}

static uint64_t loss_delay(const Bulk *b)
{
  uint64_t rtt = b->srtt > b->latest_rtt ? b->srtt : b->latest_rtt;
  uint64_t d = rtt + rtt * b->reo_eighths / 8;
  return d > GRANULARITY_US ? d : GRANULARITY_US;
}

static void detect_lost(Bulk *b, uint64_t now)
{
  b->loss_time = 0;
  if (!b->any_acked)
    return;
  uint64_t delay = loss_delay(b);
  for (size_t i = 0; i < b->sent_n; i++) {
    Sent *p = sent_at(b, i);
    if (p->pn >= b->largest_acked)
      break;
    if (p->state != SENT_PENDING)
      continue;
    if (b->largest_acked - p->pn >= b->pkt_thresh || p->sent_us + delay <= now) {
      lose(b, p, now);
    } else {
      /* Later packets were sent later and are closer to largest_acked. */
      b->loss_time = p->sent_us + delay;
      break;
    }
  }
  sent_trim(b);
}

static bool pto_armed(const Bulk *b)
{
  if (b->inflight)
    return true;
  /* Blocked by the peer's window with nothing in flight: a lost window
   * update would stall us forever, so probe. */
  return b->snd_nxt < b->wr_off && b->snd_nxt >= b->peer_max && !b->lost.n;
}

static uint64_t pto_deadline(const Bulk *b)
{
  uint64_t base;
  if (b->have_rtt) {
    uint64_t v = 4 * b->rttvar > GRANULARITY_US ? 4 * b->rttvar : GRANULARITY_US;
    /* The peer's max ACK delay is not on the wire: both ends are Canopy
     * with the same setting, and a longer one costs only two probes. */
    base = b->srtt + v + b->cfg.ack_delay_us;
  } else {
    base = 2 * (uint64_t)b->cfg.initial_rtt_us;
  }
  unsigned shift = b->pto_count < 10 ? b->pto_count : 10;
  uint64_t d = base << shift;
  if (d > 60000000)
    d = 60000000;
  return b->last_eliciting_us + d;
}

/* ---- ACK processing ---- */

static void ack_stream(Bulk *b, const Sent *p)
{
  if ((p->flags & SF_FIN))
    b->fin_acked = true;
  if (!p->len)
    return;
  uint64_t lo = p->off > b->snd_una ? p->off : b->snd_una, hi = p->off + p->len;
  if (lo >= hi)
    return;
  if (!rs_add(&b->acked, lo, hi, false)) {
    /* No room to remember it: resend it later rather than forget it. */
    rs_add(&b->lost, lo, hi, true);
    return;
  }
  while (b->acked.n && b->acked.r[0].lo <= b->snd_una) {
    if (b->acked.r[0].hi > b->snd_una)
      b->snd_una = b->acked.r[0].hi;
    rs_pop_front(&b->acked);
  }
  b->st.bytes_acked = b->snd_una;
}

static void on_ack(Bulk *b, const BRange *rg, unsigned nr, uint64_t ack_delay, uint64_t max_off,
                   uint64_t now)
{
  if (max_off > b->peer_max)
    b->peer_max = max_off > MAX_OFFSET ? MAX_OFFSET : max_off;
  if (b->probe_size)
    for (unsigned k = 0; k < nr; k++)
      if (rg[k].lo <= b->probe_pn && b->probe_pn < rg[k].hi) {
        /* The path carried probe_size bytes: use it. */
        set_mtu(b, b->probe_size);
        b->probe_lo = b->probe_size;
        b->probe_size = 0;
        b->probe_tries = 0;
        b->probe_due_us = now;
        b->big_lost_run = 0;
        probe_done(b, now);
        break;
      }
  uint64_t largest = rg[0].hi - 1, acked_bytes = 0;
  const Sent *rate_pkt = NULL;
  Sent rp = {0};
  bool largest_new = false;
  uint64_t largest_sent_us = 0;
  for (unsigned k = 0; k < nr; k++) {
    for (size_t i = sent_lower(b, rg[k].lo); i < b->sent_n; i++) {
      Sent *p = sent_at(b, i);
      if (p->pn >= rg[k].hi)
        break;
      if (p->state == SENT_ACKED)
        continue;
      ack_stream(b, p); /* a packet declared lost may still arrive */
      if (p->size > b->cfg.mtu)
        b->big_lost_run = 0;
      if (p->state == SENT_LOST) {
        p->state = SENT_ACKED;
        continue;
      }
      p->state = SENT_ACKED;
      b->inflight -= p->size;
      b->delivered += p->size;
      b->delivered_us = now;
      acked_bytes += p->size;
      b->round_acked_pkts++;
      if (!rate_pkt || p->delivered > rp.delivered ||
          (p->delivered == rp.delivered && p->sent_us > rp.sent_us)) {
        rp = *p;
        rate_pkt = &rp;
      }
      if (p->pn == largest) {
        largest_new = true;
        largest_sent_us = p->sent_us;
      }
    }
  }
  if (!b->any_acked || largest > b->largest_acked)
    b->largest_acked = largest;
  /* Later packets acknowledged and the probe not: lost, as RACK's packet
   * threshold says of data (a search step takes an RTT, not a timeout). */
  if (b->probe_size && b->largest_acked >= b->probe_pn + b->pkt_thresh)
    probe_lost(b, now);
  /* A packet declared lost that the peer got anyway was reordered, not
   * lost: tolerate that much reordering from now on (RFC 9002 section
   * 6.1.1 allows adapting the threshold; the time threshold still finds
   * real losses within 9/8 RTT). Lost records leave the deque at once, so
   * the last RECENT_LOST losses are remembered here. */
  for (unsigned i = 0; i < RECENT_LOST; i++) {
    uint64_t lp = b->recent_lost[i];
    if (!lp--)
      continue;
    unsigned lo = 0, hi = nr; /* rg descending: find the first with lo <= lp */
    while (lo < hi) {
      unsigned mid = (lo + hi) / 2;
      if (rg[mid].lo > lp)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo < nr && lp < rg[lo].hi) {
      uint64_t gap = 2 * (b->largest_acked - lp + 1);
      if (gap > b->pkt_thresh)
        b->pkt_thresh = gap < MAX_PKT_THRESH ? gap : MAX_PKT_THRESH;
      if (b->reo_eighths < 8) /* RACK (RFC 8985 6.2) widens its window too */
        b->reo_eighths += 2;
      b->st.spurious_losses++;
      b->recent_lost[i] = 0;
    }
  }
  b->any_acked = true;
  if (!acked_bytes) {
    detect_lost(b, now);
    return;
  }
  b->pto_count = 0;
  if (largest_new) { /* RFC 9002 section 5 */
    uint64_t rtt = now > largest_sent_us ? now - largest_sent_us : 1;
    if (rtt < b->min_rtt_all)
      b->min_rtt_all = rtt;
    if (ack_delay > MAX_ACK_DELAY_US)
      ack_delay = MAX_ACK_DELAY_US;
    uint64_t adj = rtt >= b->min_rtt_all + ack_delay ? rtt - ack_delay : rtt;
    b->latest_rtt = adj;
    if (!b->have_rtt) {
      b->have_rtt = true;
      b->srtt = adj;
      b->rttvar = adj / 2;
    } else {
      uint64_t dev = b->srtt > adj ? b->srtt - adj : adj - b->srtt;
      b->rttvar = (3 * b->rttvar + dev) / 4;
      b->srtt = (7 * b->srtt + adj) / 8;
    }
    bbr_rtt_sample(b, rtt, now);
  }
  /* Delivery-rate sample (draft-cheng-iccrg-delivery-rate-estimation). */
  bool app_limited = rate_pkt->flags & SF_APPLIMITED;
  uint64_t send_el = rate_pkt->sent_us - rate_pkt->first_sent_us;
  uint64_t ack_el = b->delivered_us - rate_pkt->delivered_us;
  uint64_t interval = send_el > ack_el ? send_el : ack_el;
  uint64_t rate = 0;
  b->first_sent_us = rate_pkt->sent_us;
  /* Shorter than min RTT means ACK compression: the sample overestimates. */
  if (interval && interval >= bbr_min_rtt(b))
    rate = (b->delivered - rate_pkt->delivered) * 1000000 / interval;
  bool round_start = false;
  if (rate_pkt->delivered >= b->next_round_delivered) {
    b->next_round_delivered = b->delivered;
    b->round_count++;
    b->bw_slot[b->round_count % BW_ROUNDS] = 0;
    round_start = true;
  }
  uint64_t *slot = &b->bw_slot[b->round_count % BW_ROUNDS];
  if (rate && (!app_limited || rate >= b->btlbw) && rate > *slot)
    *slot = rate;
  b->btlbw = 0;
  for (unsigned i = 0; i < BW_ROUNDS; i++)
    if (b->bw_slot[i] > b->btlbw)
      b->btlbw = b->bw_slot[i];
  if (b->app_limited_until && b->delivered > b->app_limited_until)
    b->app_limited_until = 0;
  detect_lost(b, now);
  /* Startup overshoot: leave at the first sign, not a round later, or a
   * whole round of doubled sending lands in a full queue. */
  if (!b->filled_pipe && b->round_lost_pkts >= 8 &&
      b->round_lost_pkts * 20 > b->round_lost_pkts + b->round_acked_pkts)
    b->filled_pipe = true;
  if (round_start)
    bbr_round_end(b, app_limited);
  bbr_update(b, acked_bytes, now);
}

/* ---- receiving ---- */

/* Stores a STREAM frame; false when it cannot be kept (the packet must then
 * not be acknowledged). */
static bool on_stream(Bulk *b, uint64_t off, size_t len, bool fin, const uint8_t *data)
{
  uint64_t end = off + len;
  if (end > b->rcv_read + b->rcap)
    return false;
  if (fin) {
    uint64_t top = b->ooo.n ? b->ooo.r[b->ooo.n - 1].hi : b->rcv_contig;
    if ((b->fin_rcvd && end != b->final_size) || end < top)
      return false;
  } else if (b->fin_rcvd && end > b->final_size) {
    return false;
  }
  uint64_t lo = off > b->rcv_contig ? off : b->rcv_contig;
  if (lo < end) {
    if (!rs_add(&b->ooo, lo, end, false))
      return false;
    ring_put(b->rbuf, b->rcap, lo, data + (lo - off), (size_t)(end - lo));
    while (b->ooo.n && b->ooo.r[0].lo <= b->rcv_contig) {
      if (b->ooo.r[0].hi > b->rcv_contig)
        b->rcv_contig = b->ooo.r[0].hi;
      rs_pop_front(&b->ooo);
    }
    b->st.bytes_received = b->rcv_contig;
  }
  if (fin) {
    b->fin_rcvd = true;
    b->final_size = end;
  }
  return true;
}

void bulk_on_datagram(Bulk *b, const uint8_t *pkt, size_t len, uint64_t now_us)
{
  Rd r = {pkt, len, 0, false};
  BRange rg[BULK_MAX_ACK_RANGES];
  unsigned nr = 0;
  bool has_stream = false, has_ack = false, has_ping = false, s_fin = false;
  uint64_t s_off = 0, ack_delay = 0, ack_max = 0;
  size_t s_len = 0;
  const uint8_t *s_data = NULL;

  if (rd_uint(&r, 1) != BULK_MAGIC)
    goto drop;
  uint64_t pn = rd_uint(&r, 8);
  if (r.fail || r.pos == len)
    goto drop;
  while (!r.fail && r.pos < len) {
    switch (rd_uint(&r, 1)) {
    case FRAME_STREAM: {
      if (has_stream)
        goto drop;
      has_stream = true;
      s_off = rd_uint(&r, 8);
      s_len = (size_t)rd_uint(&r, 2);
      uint64_t f = rd_uint(&r, 1);
      s_data = rd_bytes(&r, s_len);
      if (f > 1 || s_off > MAX_OFFSET)
        goto drop;
      s_fin = f;
      break;
    }
    case FRAME_ACK: {
      if (has_ack)
        goto drop;
      has_ack = true;
      ack_delay = rd_uint(&r, 4);
      ack_max = rd_uint(&r, 8);
      nr = (unsigned)rd_uint(&r, 1);
      if (nr == 0 || nr > BULK_MAX_ACK_RANGES)
        goto drop;
      for (unsigned k = 0; k < nr && !r.fail; k++) {
        uint64_t largest = rd_uint(&r, 8), count = rd_uint(&r, 8);
        if (count == 0 || count > largest + 1 || largest >= b->next_pn)
          goto drop;
        if (k && largest + 1 >= rg[k - 1].lo) /* descending, non-adjacent */
          goto drop;
        rg[k] = (BRange){largest + 1 - count, largest + 1};
      }
      break;
    }
    case FRAME_PING:
      if (has_ping)
        goto drop;
      has_ping = true;
      break;
    case FRAME_PAD: /* zeros to the end: a path MTU probe's filler */
      while (r.pos < len)
        if (pkt[r.pos++] != 0)
          goto drop;
      break;
    default:
      goto drop;
    }
  }
  if (r.fail)
    goto drop;
  if (rs_find(&b->pns, pn))
    goto dup;
  if (has_stream && !on_stream(b, s_off, s_len, s_fin, s_data))
    goto drop;

  /* Remember pn for our ACKs; forget the oldest range when full. */
  if (!rs_add(&b->pns, pn, pn + 1, false) && pn > b->pns.r[0].lo) {
    rs_pop_front(&b->pns);
    rs_add(&b->pns, pn, pn + 1, false);
  }
  if (!b->have_rcvd || pn > b->largest_rcvd) {
    if (b->have_rcvd && pn != b->largest_rcvd + 1)
      b->ack_now = true; /* a gap: tell the sender at once (RFC 9000 13.2.1) */
    b->largest_rcvd = pn;
    b->largest_rcvd_us = now_us;
  } else {
    b->ack_now = true; /* reordered */
  }
  b->have_rcvd = true;
  if (has_stream || has_ping) {
    if (b->ack_pending++ == 0)
      b->ack_deadline = now_us + b->cfg.ack_delay_us;
    if (b->ack_pending >= 2 || has_ping)
      b->ack_now = true;
  }
  b->st.packets_received++;
  if (has_ack)
    on_ack(b, rg, nr, ack_delay, ack_max, now_us);
  return;
dup:
  /* A resent packet we already have: our ACK for it may have been lost. */
  if (has_stream || has_ping) {
    b->ack_now = true;
    if (!b->ack_pending++)
      b->ack_deadline = now_us;
  }
drop:
  b->st.dropped_datagrams++;
}

/* ---- sending ---- */

static size_t build_ack(Bulk *b, uint8_t *p, size_t room, unsigned max_ranges, uint64_t now)
{
  if (!b->pns.n || room < ACK_BASE_LEN + ACK_RANGE_LEN)
    return 0;
  unsigned n = (unsigned)((room - ACK_BASE_LEN) / ACK_RANGE_LEN);
  if (n > max_ranges)
    n = max_ranges;
  if (n > b->pns.n)
    n = (unsigned)b->pns.n;
  uint64_t delay = now > b->largest_rcvd_us ? now - b->largest_rcvd_us : 0;
  if (delay > UINT32_MAX)
    delay = UINT32_MAX;
  b->adv_limit = b->rcv_read + b->rcap;
  uint8_t *q = p;
  *q++ = FRAME_ACK;
  q = wr_uint(q, delay, 4);
  q = wr_uint(q, b->adv_limit, 8);
  *q++ = (uint8_t)n;
  for (unsigned k = 0; k < n; k++) {
    const BRange *x = &b->pns.r[b->pns.n - 1 - k];
    q = wr_uint(q, x->hi - 1, 8);
    q = wr_uint(q, x->hi - x->lo, 8);
  }
  b->ack_pending = 0;
  b->ack_now = false;
  b->win_update = false;
  return (size_t)(q - p);
}

/* Picks the stream bytes of the next packet: lost bytes first, then new
 * bytes within the peer's window, then a bare FIN. */
static bool pick_data(Bulk *b, size_t maxlen, uint64_t *off, size_t *len, bool *retx)
{
  /* Resends go in base-sized packets: if our size is what got lost (a
   * path MTU drop), the data still gets through. */
  size_t base = b->cfg.mtu - HDR_LEN - STREAM_HDR_LEN;
  size_t resend_max = maxlen < base ? maxlen : base;
  while (b->lost.n) {
    BRange *x = &b->lost.r[0];
    uint64_t lo = x->lo > b->snd_una ? x->lo : b->snd_una;
    const BRange *a;
    while (lo < x->hi && (a = rs_find(&b->acked, lo)) != NULL)
      lo = a->hi;
    if (lo >= x->hi) {
      rs_pop_front(&b->lost);
      continue;
    }
    uint64_t hi = x->hi;
    size_t ai = rs_lower(&b->acked, lo + 1); /* first acked range above lo */
    if (ai < b->acked.n && b->acked.r[ai].lo < hi)
      hi = b->acked.r[ai].lo;
    if (hi - lo > resend_max)
      hi = lo + resend_max;
    x->lo = hi;
    if (x->lo >= x->hi)
      rs_pop_front(&b->lost);
    *off = lo;
    *len = (size_t)(hi - lo);
    *retx = true;
    return true;
  }
  *retx = false;
  uint64_t lim = b->wr_off < b->peer_max ? b->wr_off : b->peer_max;
  if (b->snd_nxt < lim) {
    uint64_t n = lim - b->snd_nxt;
    *off = b->snd_nxt;
    *len = n < maxlen ? (size_t)n : maxlen;
    return true;
  }
  if (b->closed && b->snd_nxt == b->wr_off && (!b->fin_sent || b->fin_pending)) {
    *off = b->wr_off;
    *len = 0;
    return true;
  }
  return false;
}

static bool has_data(const Bulk *b)
{
  if (b->lost.n)
    return true;
  uint64_t lim = b->wr_off < b->peer_max ? b->wr_off : b->peer_max;
  return b->snd_nxt < lim ||
         (b->closed && b->snd_nxt == b->wr_off && (!b->fin_sent || b->fin_pending));
}

static bool ack_due(const Bulk *b, uint64_t now)
{
  if (!b->pns.n)
    return false;
  return b->win_update || (b->ack_pending && (b->ack_now || now >= b->ack_deadline));
}

size_t bulk_poll_datagram(Bulk *b, uint8_t *out, size_t cap, uint64_t now_us)
{
  if (probe_wanted(b, now_us)) {
    size_t size = probe_next_size(b);
    if (size > cap) {
      /* The caller's buffer is the ceiling now. */
      b->probe_hi = cap + 1 > b->probe_lo ? cap + 1 : b->probe_lo;
      probe_done(b, now_us);
    } else {
      uint8_t *p = wr_uint(out, BULK_MAGIC, 1);
      p = wr_uint(p, b->next_pn, 8);
      *p++ = FRAME_PING;
      *p++ = FRAME_PAD;
      memset(p, 0, size - (size_t)(p - out));
      b->probe_size = size;
      b->probe_pn = b->next_pn++;
      b->probe_sent_us = now_us;
      b->st.packets_sent++;
      b->st.mtu_probes++;
      return size;
    }
  }
  if (cap > b->mtu)
    cap = b->mtu;
  if (cap < HDR_LEN + ACK_BASE_LEN + ACK_RANGE_LEN)
    return 0;
  bool probe = b->probes > 0;
  bool slot = b->sent_n < b->sent_cap;
  bool cc_ok = probe || (b->inflight + b->mtu <= b->cwnd && now_us * 1000 >= b->next_send_ns);
  uint8_t *p = wr_uint(out, BULK_MAGIC, 1);
  p = wr_uint(p, b->next_pn, 8);
  size_t ack_len = 0;
  uint64_t off = 0;
  size_t len = 0;
  bool retx = false, send_data = false, ping = false;

  if (slot && cc_ok) {
    size_t room = cap - HDR_LEN, reserve = 0;
    bool piggy =
        (b->ack_pending || b->win_update) && b->pns.n && room > STREAM_HDR_LEN + 256 + ACK_BASE_LEN;
    if (piggy) {
      reserve = ACK_BASE_LEN +
                ACK_RANGE_LEN * (b->pns.n < PIGGYBACK_RANGES ? b->pns.n : PIGGYBACK_RANGES);
      room -= reserve;
    }
    size_t maxlen = room - STREAM_HDR_LEN;
    if (maxlen > b->mss)
      maxlen = b->mss;
    /* A PTO probe is base-sized: if the path stopped carrying our size,
     * the probe still gets through, its ACK shows the large packets lost,
     * and that run of losses reads as a black hole. */
    if (probe && maxlen > b->cfg.mtu - HDR_LEN - STREAM_HDR_LEN)
      maxlen = b->cfg.mtu - HDR_LEN - STREAM_HDR_LEN;
    send_data = pick_data(b, maxlen, &off, &len, &retx);
    if (!send_data && probe) {
      /* PTO with nothing new: resend the oldest packet in flight. */
      for (size_t i = 0; i < b->sent_n && !send_data; i++) {
        Sent *s = sent_at(b, i);
        if (s->state != SENT_PENDING || !s->len || s->off + s->len <= b->snd_una)
          continue;
        off = s->off > b->snd_una ? s->off : b->snd_una;
        len = (size_t)(s->off + s->len - off);
        if (len > b->cfg.mtu - HDR_LEN - STREAM_HDR_LEN)
          len = b->cfg.mtu - HDR_LEN - STREAM_HDR_LEN; /* base-sized, as resends */
        if (len > maxlen)
          len = maxlen;
        retx = send_data = true;
      }
      ping = !send_data;
    }
    if ((send_data || ping) && piggy)
      ack_len = build_ack(b, p, reserve, PIGGYBACK_RANGES, now_us);
    if (!send_data && !ping) {
      if (b->inflight + b->mtu <= b->cwnd)
        b->app_limited_until = b->delivered + b->inflight ? b->delivered + b->inflight : 1;
    }
  }
  if (!send_data && !ping) {
    if (!ack_len) {
      if (!ack_due(b, now_us))
        return 0;
      ack_len = build_ack(b, p, cap - HDR_LEN, BULK_MAX_ACK_RANGES, now_us);
      if (!ack_len)
        return 0;
    }
    b->next_pn++;
    b->st.packets_sent++;
    return HDR_LEN + ack_len;
  }
  p += ack_len;
  bool fin = false;
  if (send_data) {
    fin = b->closed && off + len == b->wr_off;
    *p++ = FRAME_STREAM;
    p = wr_uint(p, off, 8);
    p = wr_uint(p, len, 2);
    *p++ = fin;
    ring_get(b->sbuf, b->scap, off, p, len);
    p += len;
    if (off + len > b->snd_nxt)
      b->snd_nxt = off + len;
    if (fin) {
      b->fin_sent = true;
      b->fin_pending = false;
    }
    b->st.bytes_sent += len;
    if (retx)
      b->st.retransmits++;
  } else {
    *p++ = FRAME_PING;
  }
  size_t total = (size_t)(p - out);
  if (probe)
    b->probes--;
  if (!b->inflight)
    b->first_sent_us = b->delivered_us = now_us; /* rate sampling restarts */
  Sent *s = &b->sent[(b->sent_head + b->sent_n) % b->sent_cap];
  b->sent_n++;
  *s = (Sent){.pn = b->next_pn,
              .sent_us = now_us,
              .off = off,
              .delivered = b->delivered,
              .delivered_us = b->delivered_us,
              .first_sent_us = b->first_sent_us,
              .size = (uint32_t)total,
              .len = (uint16_t)len,
              .state = SENT_PENDING,
              .flags = (uint8_t)((fin ? SF_FIN : 0) | (b->app_limited_until ? SF_APPLIMITED : 0))};
  b->inflight += total;
  b->last_eliciting_us = now_us;
  b->next_pn++;
  b->st.packets_sent++;
  /* Pacing (BBR draft 4.2.1): the caller may be late by up to the slack. */
  uint64_t now_ns = now_us * 1000, slack = (uint64_t)b->cfg.pacing_slack_us * 1000;
  uint64_t base = b->next_send_ns + slack < now_ns ? now_ns - slack : b->next_send_ns;
  uint64_t rate = b->pacing_rate ? b->pacing_rate : 1;
  b->next_send_ns = base + (uint64_t)total * 1000000000 / rate;
  return total;
}

/* ---- timers ---- */

uint64_t bulk_next_timer(const Bulk *b)
{
  uint64_t t = UINT64_MAX;
  if (b->pns.n && (b->ack_pending || b->win_update))
    t = b->win_update || b->ack_now ? 0 : b->ack_deadline;
  if (b->loss_time && b->loss_time < t)
    t = b->loss_time;
  if (pto_armed(b)) {
    uint64_t d = pto_deadline(b);
    if (d < t)
      t = d;
  }
  if (b->probe_size && b->probe_sent_us + probe_timeout(b) < t)
    t = b->probe_sent_us + probe_timeout(b);
  else if (probe_wanted(b, b->probe_due_us) && b->probe_due_us < t)
    t = b->probe_due_us;
  if (b->sent_n < b->sent_cap) {
    if (b->probes)
      t = 0;
    else if (has_data(b) && b->inflight + b->mtu <= b->cwnd) {
      uint64_t ps = (b->next_send_ns + 999) / 1000;
      if (ps < t)
        t = ps;
    }
  }
  return t;
}

void bulk_on_timer(Bulk *b, uint64_t now_us)
{
  if (b->ack_pending && now_us >= b->ack_deadline)
    b->ack_now = true;
  if (b->probe_size && now_us >= b->probe_sent_us + probe_timeout(b))
    probe_lost(b, now_us);
  if (b->loss_time && now_us >= b->loss_time) {
    detect_lost(b, now_us);
    return;
  }
  if (pto_armed(b) && now_us >= pto_deadline(b)) {
    b->pto_count++;
    b->probes = 2;
    b->last_eliciting_us = now_us; /* the next PTO counts from the probes */
  }
}

void bulk_stats(const Bulk *b, BulkStats *out)
{
  *out = b->st;
  out->srtt_us = b->srtt;
  out->min_rtt_us = b->min_rtt == UINT64_MAX ? 0 : b->min_rtt;
  out->delivery_rate = b->btlbw;
  out->pacing_rate = b->pacing_rate;
  out->cwnd = b->cwnd;
  out->inflight = b->inflight;
  out->bytes_held = 0;
  for (size_t i = 0; i < b->ooo.n; i++)
    out->bytes_held += b->ooo.r[i].hi - b->ooo.r[i].lo;
}
