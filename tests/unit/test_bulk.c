/* test_bulk.c - the bulk transport core (nat/bulk.c) over a simulated link.
 *
 * Two endpoints talk through a small deterministic event simulator: each
 * direction has a one-way delay, an optional bottleneck rate feeding a
 * drop-tail queue, random loss, duplication and reordering from a seeded
 * RNG. Time is virtual (ns inside the simulator, us at the Bulk API). The
 * applications write a known byte pattern and check every byte they read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bulk.h"
#include "../tools/simqueue.h"

#define MTU 1200
#define MAX_DGRAM 1472 /* the largest size a test lets Bulk probe for */

typedef SimEv Ev;

typedef struct {
  double rate;       /* bytes/s; 0 = unlimited */
  uint64_t delay_ns; /* one way */
  uint64_t queue;    /* drop-tail queue, bytes */
  uint32_t loss_ppm, dup_ppm, reorder_ppm;
  uint64_t reorder_ns; /* extra delay of a reordered datagram */
  uint64_t busy_ns;    /* when the bottleneck is free */
  size_t path_mtu;     /* larger datagrams vanish (no ICMP); 0 = none */
} Link;

typedef struct {
  uint64_t total, written, read;
  bool closed;
  uint64_t bad_bytes;
  double read_rate;    /* bytes/s, 0 = read everything at once */
  uint64_t max_unread; /* peak of written (by the peer) - read */
} App;

typedef struct {
  Bulk *ep[2];
  Link link[2]; /* link[i] carries ep[i]'s datagrams */
  App app[2];
  SimQueue q;
  uint64_t now_ns, seq, rng;
  uint32_t garbage_ppm; /* per delivered datagram: also inject garbage */
  size_t max_dgram;     /* largest datagram an endpoint may build */
  uint64_t garbage_sent;
} Sim;

static uint64_t rnd(Sim *s)
{
  return splitmix64(&s->rng);
}

static bool chance(Sim *s, uint32_t ppm)
{
  return ppm && rnd(s) % 1000000 < ppm;
}

static uint8_t pattern(int dir, uint64_t off)
{
  uint64_t x = (off + (uint64_t)dir * 0x5555) * 0x9e3779b97f4a7c15ull;
  return (uint8_t)(x >> 56);
}

static void heap_push(Sim *s, Ev e)
{
  simq_push(&s->q, e);
}

static Ev heap_pop(Sim *s)
{
  return simq_pop(&s->q);
}

static void deliver_at(Sim *s, int to, const uint8_t *pkt, size_t len, uint64_t t)
{
  Ev e = {t, s->seq++, to, len, malloc(len ? len : 1)};
  assert_non_null(e.data);
  memcpy(e.data, pkt, len);
  heap_push(s, e);
}

/* ep[from] sends a datagram into its link. */
static void link_send(Sim *s, int from, const uint8_t *pkt, size_t len)
{
  Link *l = &s->link[from];
  if (chance(s, l->loss_ppm) || (l->path_mtu && len > l->path_mtu))
    return;
  uint64_t depart = s->now_ns;
  if (l->rate > 0) {
    uint64_t backlog =
        l->busy_ns > s->now_ns ? (uint64_t)((double)(l->busy_ns - s->now_ns) * l->rate / 1e9) : 0;
    if (backlog + len > l->queue)
      return;
    uint64_t start = l->busy_ns > s->now_ns ? l->busy_ns : s->now_ns;
    l->busy_ns = start + (uint64_t)((double)len * 1e9 / l->rate);
    depart = l->busy_ns;
  }
  uint64_t t = depart + l->delay_ns;
  if (chance(s, l->reorder_ppm))
    t += l->reorder_ns;
  deliver_at(s, 1 - from, pkt, len, t);
  if (chance(s, l->dup_ppm))
    deliver_at(s, 1 - from, pkt, len, t + 1000);
}

static void sim_init(Sim *s, const BulkConfig *cfg, uint64_t seed)
{
  memset(s, 0, sizeof *s);
  s->rng = seed;
  s->now_ns = 1000000000ull; /* t0 = 1 s: nothing may assume time starts at 0 */
  for (int i = 0; i < 2; i++) {
    s->ep[i] = bulk_new(cfg, s->now_ns / 1000);
    assert_non_null(s->ep[i]);
    s->link[i].delay_ns = 10000000;
    s->link[i].queue = 1 << 20;
  }
  s->max_dgram = cfg && cfg->mtu ? cfg->mtu : MTU;
}

/* Lets both endpoints probe for datagrams up to max. */
static void sim_allow_mtu(Sim *s, size_t max)
{
  s->max_dgram = max;
  for (int i = 0; i < 2; i++)
    bulk_set_max_mtu(s->ep[i], max, s->now_ns / 1000);
}

static void sim_free(Sim *s)
{
  for (size_t i = 0; i < s->q.n; i++)
    free(s->q.v[i].data);
  free(s->q.v);
  bulk_free(s->ep[0]);
  bulk_free(s->ep[1]);
}

static void app_step(Sim *s, int i)
{
  App *a = &s->app[i];
  Bulk *b = s->ep[i];
  uint8_t buf[65536];
  while (a->written < a->total) {
    size_t n = a->total - a->written < sizeof buf ? (size_t)(a->total - a->written) : sizeof buf;
    for (size_t k = 0; k < n; k++)
      buf[k] = pattern(i, a->written + k);
    size_t w = bulk_write(b, buf, n);
    a->written += w;
    if (w < n)
      break;
  }
  if (a->written == a->total && !a->closed) {
    bulk_close(b);
    a->closed = true;
  }
  /* Read what the peer sent. A slow reader may read read_rate x elapsed. */
  App *peer = &s->app[1 - i];
  uint64_t allow = UINT64_MAX;
  if (a->read_rate > 0) {
    uint64_t budget = (uint64_t)(a->read_rate * (double)(s->now_ns - 1000000000ull) / 1e9);
    allow = budget > a->read ? budget - a->read : 0;
  }
  while (allow) {
    size_t want = allow < sizeof buf ? (size_t)allow : sizeof buf;
    size_t n = bulk_read(b, buf, want);
    if (!n)
      break;
    for (size_t k = 0; k < n; k++)
      if (buf[k] != pattern(1 - i, a->read + k))
        a->bad_bytes++;
    a->read += n;
    allow -= n;
  }
  if (peer->written - a->read > a->max_unread)
    a->max_unread = peer->written - a->read;
}

static bool sim_done(const Sim *s)
{
  for (int i = 0; i < 2; i++)
    if (!bulk_eof(s->ep[i]) || !bulk_done(s->ep[i]))
      return false;
  return true;
}

static void inject_garbage(Sim *s, int to)
{
  uint8_t g[MTU];
  size_t len = rnd(s) % sizeof g;
  for (size_t k = 0; k < len; k++)
    g[k] = (uint8_t)rnd(s);
  if (len && rnd(s) % 2)
    g[0] = BULK_MAGIC; /* get past the first check */
  if (len > 9 && rnd(s) % 2)
    g[9] = (uint8_t)(1 + rnd(s) % 3); /* and look like a frame */
  bulk_on_datagram(s->ep[to], g, len, s->now_ns / 1000);
  s->garbage_sent++;
}

static bool sim_idle(const Sim *s)
{
  return !s->q.n && bulk_next_timer(s->ep[0]) == UINT64_MAX &&
         bulk_next_timer(s->ep[1]) == UINT64_MAX;
}

/* Runs until both streams are done (or, with until_idle, until nothing is
 * in flight and no timer is armed) or limit_ns of virtual time passed;
 * returns the virtual time taken. */
static uint64_t sim_run_ex(Sim *s, uint64_t limit_ns, bool until_idle)
{
  uint64_t start = s->now_ns, same = 0, last = 0;
  uint8_t pkt[MAX_DGRAM];
  while (s->now_ns - start < limit_ns) {
    for (int i = 0; i < 2; i++) {
      app_step(s, i);
      size_t n;
      while ((n = bulk_poll_datagram(s->ep[i], pkt, sizeof pkt, s->now_ns / 1000)) > 0) {
        assert_true(n <= s->max_dgram);
        link_send(s, i, pkt, n);
      }
    }
    if (until_idle ? sim_idle(s) : sim_done(s))
      break;
    uint64_t next = s->q.n ? s->q.v[0].t_ns : UINT64_MAX;
    for (int i = 0; i < 2; i++) {
      uint64_t t = bulk_next_timer(s->ep[i]);
      if (t != UINT64_MAX && t * 1000 < next)
        next = t * 1000;
      if (s->app[i].read_rate > 0 && s->now_ns + 1000000 < next)
        next = s->now_ns + 1000000; /* the slow reader wakes every ms */
    }
    assert_true(next != UINT64_MAX); /* stalled: nothing will ever happen */
    if (next < s->now_ns)
      next = s->now_ns;
    same = next == last ? same + 1 : 0;
    assert_true(same < 100000); /* a timer that never gets serviced */
    last = next;
    s->now_ns = next;
    while (s->q.n && s->q.v[0].t_ns <= s->now_ns) {
      Ev e = heap_pop(s);
      bulk_on_datagram(s->ep[e.to], e.data, e.len, s->now_ns / 1000);
      if (chance(s, s->garbage_ppm))
        inject_garbage(s, e.to);
      free(e.data);
    }
    for (int i = 0; i < 2; i++)
      if (bulk_next_timer(s->ep[i]) * 1000 <= s->now_ns)
        bulk_on_timer(s->ep[i], s->now_ns / 1000);
  }
  return s->now_ns - start;
}

static uint64_t sim_run(Sim *s, uint64_t limit_ns)
{
  return sim_run_ex(s, limit_ns, false);
}

static void check_intact(const Sim *s)
{
  for (int i = 0; i < 2; i++) {
    assert_int_equal(s->app[i].bad_bytes, 0);
    assert_int_equal(s->app[i].read, s->app[1 - i].total);
    assert_true(bulk_eof(s->ep[i]));
    assert_true(bulk_done(s->ep[i]));
  }
}

static void run_one_way(uint32_t loss_ppm, uint32_t reorder_ppm, uint64_t seed)
{
  Sim s;
  BulkConfig cfg = {.send_buf = 4 << 20, .recv_buf = 4 << 20};
  sim_init(&s, &cfg, seed);
  for (int i = 0; i < 2; i++) {
    s.link[i].rate = 50e6;
    s.link[i].loss_ppm = loss_ppm;
    s.link[i].reorder_ppm = reorder_ppm;
    s.link[i].reorder_ns = 3000000;
  }
  s.app[0].total = 10u << 20;
  uint64_t t = sim_run(&s, 60ull * 1000000000);
  check_intact(&s);
  BulkStats st;
  bulk_stats(s.ep[0], &st);
  /* A lossy link must not read as congestion: 10 MB at 20 ms RTT is mostly
   * startup (9 round trips from a 10-packet window to the 1 MB BDP), so ask
   * for 40 % of the 50 MB/s link; a Reno sender at 1 % loss gets ~1 MB/s. */
  double mbps = (double)(10u << 20) / ((double)t / 1e9) / 1e6;
  print_message("loss %u ppm reorder %u ppm: %.1f MB/s, %llu retransmits, %llu lost (%llu "
                "spurious), srtt %llu us, "
                "btlbw %.1f MB/s, cwnd %llu\n",
                loss_ppm, reorder_ppm, mbps, (unsigned long long)st.retransmits,
                (unsigned long long)st.packets_lost, (unsigned long long)st.spurious_losses,
                (unsigned long long)st.srtt_us, (double)st.delivery_rate / 1e6,
                (unsigned long long)st.cwnd);
  assert_true(mbps > 20);
  if (!loss_ppm && !reorder_ppm)
    assert_int_equal(st.retransmits, 0);
  sim_free(&s);
}

static void test_10mb_clean(void **state)
{
  run_one_way(0, 0, 1);
}

static void test_10mb_loss_1pct(void **state)
{
  for (uint64_t seed = 100; seed < 106; seed++)
    run_one_way(10000, 0, seed);
}

static void test_10mb_loss_and_reorder(void **state)
{
  for (uint64_t seed = 200; seed < 203; seed++)
    run_one_way(10000, 20000, seed);
}

/* Both directions at once, with loss, duplicates and garbage datagrams. */
static void test_duplicates_and_garbage(void **state)
{
  Sim s;
  BulkConfig cfg = {.send_buf = 1 << 20, .recv_buf = 1 << 20};
  sim_init(&s, &cfg, 5);
  for (int i = 0; i < 2; i++) {
    s.link[i].rate = 20e6;
    s.link[i].loss_ppm = 5000;
    s.link[i].dup_ppm = 50000;
    s.link[i].reorder_ppm = 10000;
    s.link[i].reorder_ns = 2000000;
    s.app[i].total = 3u << 20;
  }
  s.garbage_ppm = 20000;
  sim_run(&s, 60ull * 1000000000);
  check_intact(&s);
  BulkStats a, b;
  bulk_stats(s.ep[0], &a);
  bulk_stats(s.ep[1], &b);
  assert_true(s.garbage_sent > 100);
  assert_true(a.dropped_datagrams + b.dropped_datagrams >= s.garbage_sent / 2);
  sim_free(&s);
}

/* A reader at 1 MB/s on a 50 MB/s link: the sender must follow it, and the
 * bytes written but not yet read stay within the two buffers. */
static void test_slow_reader(void **state)
{
  Sim s;
  BulkConfig cfg = {.send_buf = 256 << 10, .recv_buf = 256 << 10};
  sim_init(&s, &cfg, 6);
  for (int i = 0; i < 2; i++) {
    s.link[i].rate = 50e6;
    s.link[i].loss_ppm = 1000;
  }
  s.app[0].total = 3u << 20;
  s.app[1].read_rate = 1e6;
  uint64_t t = sim_run(&s, 60ull * 1000000000);
  check_intact(&s);
  assert_true(t > 3000000000ull);                   /* 3 MiB at 1 MB/s: > 3 s */
  assert_true(t < 4000000000ull);                   /* and not stalled by the window */
  assert_true(s.app[1].max_unread <= (512u << 10)); /* bounded buffers */
  BulkStats st;
  bulk_stats(s.ep[0], &st);
  assert_true(st.bytes_sent < (3u << 20) + (256u << 10)); /* no blind resending */
  sim_free(&s);
}

/* FIN: a short stream ends cleanly both ways, writes after close are
 * refused, and idle endpoints ask for no timer at all. */
static void test_fin(void **state)
{
  Sim s;
  sim_init(&s, NULL, 7);
  s.app[0].total = 1000;
  s.app[1].total = 0;
  sim_run(&s, 10ull * 1000000000);
  check_intact(&s);
  assert_int_equal(bulk_write(s.ep[0], (const uint8_t *)"x", 1), 0);
  uint8_t buf[16];
  assert_int_equal(bulk_read(s.ep[1], buf, sizeof buf), 0);
  /* Drain the last ACKs: then nothing is in flight and no timer is armed
   * (an idle transport costs no wakeups). */
  sim_run_ex(&s, 10ull * 1000000000, true);
  assert_true(sim_idle(&s));
  uint8_t pkt[MTU];
  for (int i = 0; i < 2; i++)
    assert_int_equal(bulk_poll_datagram(s.ep[i], pkt, sizeof pkt, s.now_ns / 1000), 0);
  sim_free(&s);
}

/* FIN whose packets are lost repeatedly still completes (PTO path). */
static void test_fin_lossy(void **state)
{
  for (uint64_t seed = 10; seed < 20; seed++) {
    Sim s;
    sim_init(&s, NULL, seed);
    for (int i = 0; i < 2; i++)
      s.link[i].loss_ppm = 300000;
    s.app[0].total = 5000;
    s.app[1].total = 3000;
    sim_run(&s, 600ull * 1000000000);
    check_intact(&s);
    sim_free(&s);
  }
}

/* A small queue (30 KB) at 10 MB/s: the sender must settle without a
 * collapse - most bytes go through, few are resent. */
static void test_small_queue(void **state)
{
  Sim s;
  sim_init(&s, NULL, 8);
  for (int i = 0; i < 2; i++) {
    s.link[i].rate = 10e6;
    s.link[i].queue = 30000;
  }
  s.app[0].total = 10u << 20;
  uint64_t t = sim_run(&s, 60ull * 1000000000);
  check_intact(&s);
  BulkStats st;
  bulk_stats(s.ep[0], &st);
  double mbps = (double)(10u << 20) / ((double)t / 1e9) / 1e6;
  print_message("small queue: %.2f MB/s, %llu of %llu packets resent\n", mbps,
                (unsigned long long)st.retransmits, (unsigned long long)st.packets_sent);
  assert_true(mbps > 7);
  assert_true(st.retransmits * 10 < st.packets_sent);
  sim_free(&s);
}

/* Captures valid datagrams of each kind (STREAM, ACK with several ranges,
 * STREAM with a piggybacked ACK, PING) and feeds every proper prefix of
 * each, then random mutations, to endpoints: nothing may crash, every
 * proper prefix is dropped, and the real stream still completes. */
static void test_truncation_and_fuzz(void **state)
{
  Sim s;
  sim_init(&s, NULL, 9);
  for (int i = 0; i < 2; i++)
    s.link[i].loss_ppm = 50000; /* holes, so ACKs carry several ranges */
  s.app[0].total = 200000;
  s.app[1].total = 100000;
  uint8_t pkt[MTU];
  enum { NCAP = 64 };
  uint8_t cap[NCAP][MTU];
  size_t caplen[NCAP], ncap = 0;
  for (int round = 0; round < 400 && ncap < NCAP; round++) {
    for (int i = 0; i < 2; i++) {
      app_step(&s, i);
      size_t n;
      while ((n = bulk_poll_datagram(s.ep[i], pkt, sizeof pkt, s.now_ns / 1000)) > 0) {
        if (ncap < NCAP && (s.seq % 3 == 0 || n < 200)) {
          memcpy(cap[ncap], pkt, n);
          caplen[ncap++] = n;
        }
        link_send(&s, i, pkt, n);
      }
    }
    uint64_t next = s.q.n ? s.q.v[0].t_ns : s.now_ns + 1000000;
    for (int i = 0; i < 2; i++) {
      uint64_t t = bulk_next_timer(s.ep[i]);
      if (t != UINT64_MAX && t * 1000 < next)
        next = t * 1000;
    }
    s.now_ns = next > s.now_ns ? next : s.now_ns;
    while (s.q.n && s.q.v[0].t_ns <= s.now_ns) {
      Ev e = heap_pop(&s);
      bulk_on_datagram(s.ep[e.to], e.data, e.len, s.now_ns / 1000);
      free(e.data);
    }
    for (int i = 0; i < 2; i++)
      if (bulk_next_timer(s.ep[i]) * 1000 <= s.now_ns)
        bulk_on_timer(s.ep[i], s.now_ns / 1000);
  }
  assert_true(ncap > 10);
  /* A bystander that has sent packets of its own, so mutated ACKs can name
   * real packet numbers. */
  Bulk *fresh = bulk_new(NULL, s.now_ns / 1000);
  assert_non_null(fresh);
  uint8_t junk[50000] = {0};
  assert_int_equal(bulk_write(fresh, junk, sizeof junk), sizeof junk);
  while (bulk_poll_datagram(fresh, pkt, sizeof pkt, s.now_ns / 1000) > 0)
    ;
  for (size_t c = 0; c < ncap; c++) {
    for (size_t len = 0; len < caplen[c]; len++) {
      BulkStats before, after;
      uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees overreads */
      assert_non_null(copy);
      memcpy(copy, cap[c], len);
      for (int i = 0; i < 2; i++) {
        bulk_stats(s.ep[i], &before);
        bulk_on_datagram(s.ep[i], copy, len, s.now_ns / 1000);
        bulk_stats(s.ep[i], &after);
        assert_int_equal(after.dropped_datagrams, before.dropped_datagrams + 1);
      }
      bulk_on_datagram(fresh, copy, len, s.now_ns / 1000);
      free(copy);
    }
  }
  for (int k = 0; k < 20000; k++) {
    size_t c = rnd(&s) % ncap, len = caplen[c];
    uint8_t m[MTU];
    memcpy(m, cap[c], len);
    int flips = 1 + (int)(rnd(&s) % 4);
    for (int f = 0; f < flips; f++)
      m[rnd(&s) % len] = (uint8_t)rnd(&s);
    if (rnd(&s) % 4 == 0)
      len = rnd(&s) % (len + 1);
    bulk_on_datagram(fresh, m, len, s.now_ns / 1000);
  }
  size_t n;
  while ((n = bulk_poll_datagram(fresh, pkt, sizeof pkt, s.now_ns / 1000)) > 0)
    assert_true(n <= MTU);
  bulk_free(fresh);
  /* The live pair only saw dropped prefixes: its streams end intact. */
  sim_run(&s, 120ull * 1000000000);
  check_intact(&s);
  sim_free(&s);
}

/* A path that carries 1400 bytes but not 1472 (a tunnel, say, dropping
 * larger datagrams silently): the search settles just under 1400, the
 * stream stays intact, lost probes cost no data. */
static void test_mtu_search(void **state)
{
  Sim s;
  BulkConfig cfg = {.send_buf = 4 << 20, .recv_buf = 4 << 20};
  sim_init(&s, &cfg, 11);
  sim_allow_mtu(&s, MAX_DGRAM);
  for (int i = 0; i < 2; i++) {
    s.link[i].rate = 50e6;
    s.link[i].path_mtu = 1400;
  }
  s.app[0].total = 10u << 20;
  sim_run(&s, 60ull * 1000000000);
  check_intact(&s);
  BulkStats st;
  bulk_stats(s.ep[0], &st);
  print_message("mtu %llu after %llu probes, %llu retransmits\n", (unsigned long long)st.mtu,
                (unsigned long long)st.mtu_probes, (unsigned long long)st.retransmits);
  assert_true(st.mtu <= 1400 && st.mtu > 1400 - 16);
  assert_true(st.mtu_probes >= 3 && st.mtu_probes < 30);
  assert_int_equal(st.retransmits, 0);
  assert_int_equal(st.mtu_black_holes, 0);
  sim_free(&s);
}

/* The path carries full frames, then (a route change) only 1300 bytes: the
 * sender notices the black hole, falls back to the base and finishes. With
 * both directions busy, small packets keep getting through and acked (no
 * PTO ever fires): the run of large losses must tell it. */
static void run_black_hole(bool both_ways)
{
  Sim s;
  BulkConfig cfg = {.send_buf = 4 << 20, .recv_buf = 4 << 20};
  sim_init(&s, &cfg, 12);
  sim_allow_mtu(&s, MAX_DGRAM);
  for (int i = 0; i < 2; i++)
    s.link[i].rate = 20e6;
  s.app[0].total = 20u << 20;
  if (both_ways)
    s.app[1].total = 20u << 20;
  sim_run(&s, 300000000ull);
  BulkStats st;
  bulk_stats(s.ep[0], &st);
  assert_int_equal(st.mtu, MAX_DGRAM);
  for (int i = 0; i < 2; i++)
    s.link[i].path_mtu = 1300;
  sim_run(&s, 60ull * 1000000000);
  check_intact(&s);
  bulk_stats(s.ep[0], &st);
  print_message("after the drop: mtu %llu, %llu black holes\n", (unsigned long long)st.mtu,
                (unsigned long long)st.mtu_black_holes);
  assert_int_equal(st.mtu_black_holes, 1);
  assert_int_equal(st.mtu, MTU);
  sim_free(&s);
}

static void test_mtu_black_hole(void **state)
{
  run_black_hole(false);
  run_black_hole(true);
}

/* A probe's padding is zeros to the end; anything else in it is garbage. */
static void test_pad_frame(void **state)
{
  Bulk *b = bulk_new(NULL, 0);
  assert_non_null(b);
  uint8_t d[64] = {BULK_MAGIC, 0, 0, 0, 0, 0, 0, 0, 0, 0x03, 0x04};
  BulkStats st;
  bulk_on_datagram(b, d, sizeof d, 0);
  bulk_stats(b, &st);
  assert_int_equal(st.packets_received, 1);
  d[8] = 1; /* next packet number */
  d[40] = 7;
  bulk_on_datagram(b, d, sizeof d, 0);
  bulk_stats(b, &st);
  assert_int_equal(st.packets_received, 1);
  assert_int_equal(st.dropped_datagrams, 1);
  bulk_free(b);
}

static void test_config(void **state)
{
  BulkConfig bad = {.mtu = 100};
  assert_null(bulk_new(&bad, 0));
  bad = (BulkConfig){.recv_buf = 1000};
  assert_null(bulk_new(&bad, 0));
  bulk_free(NULL);
  Bulk *b = bulk_new(NULL, 0);
  assert_non_null(b);
  uint8_t out[MTU];
  assert_int_equal(bulk_poll_datagram(b, out, sizeof out, 0), 0);
  assert_true(bulk_next_timer(b) == UINT64_MAX);
  assert_int_equal(bulk_poll_datagram(b, out, 10, 0), 0); /* tiny buffer */
  bulk_free(b);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config),
      cmocka_unit_test(test_10mb_clean),
      cmocka_unit_test(test_10mb_loss_1pct),
      cmocka_unit_test(test_10mb_loss_and_reorder),
      cmocka_unit_test(test_duplicates_and_garbage),
      cmocka_unit_test(test_slow_reader),
      cmocka_unit_test(test_fin),
      cmocka_unit_test(test_fin_lossy),
      cmocka_unit_test(test_small_queue),
      cmocka_unit_test(test_truncation_and_fuzz),
      cmocka_unit_test(test_mtu_search),
      cmocka_unit_test(test_mtu_black_hole),
      cmocka_unit_test(test_pad_frame),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
