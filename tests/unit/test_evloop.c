/* test_evloop.c - the epoll GSource and timer heap (shared/evloop.c), with a
 * fake clock driven through evloop_dispatch(), and once through GLib. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "evloop.h"

static uint64_t fake_now;
static uint64_t fake_clock(void *ud)
{
  (void)ud;
  return fake_now;
}

#define MAXLOG 4096
static int fired[MAXLOG];
static int nfired;

typedef struct {
  EvTimer t;
  int id;
  EvTimer *victim; /* disarmed by this timer's callback */
  uint64_t rearm;  /* re-armed to this (0: not) once */
} Tm;

static void on_timer(EvTimer *t, void *ud)
{
  Tm *m = ud;
  assert_ptr_equal(t, &m->t);
  assert_false(evtimer_armed(t)); /* disarmed before the callback */
  if (nfired < MAXLOG)
    fired[nfired++] = m->id;
  if (m->victim)
    evtimer_disarm(m->victim);
  if (m->rearm) {
    evtimer_arm(t, m->rearm);
    m->rearm = 0;
  }
}

static EvLoop *fresh(void)
{
  fake_now = 1000;
  nfired = 0;
  GMainContext *ctx = g_main_context_new();
  EvLoop *l = evloop_new(ctx, fake_clock, NULL);
  g_main_context_unref(ctx); /* the loop holds its own reference */
  assert_non_null(l);
  return l;
}

static void test_timer_order(void **st)
{
  (void)st;
  EvLoop *l = fresh();
  Tm m[5];
  uint64_t due[5] = {1500, 1100, 1300, 1100, 1200};
  for (int i = 0; i < 5; i++) {
    m[i] = (Tm){.id = i};
    evtimer_init(&m[i].t, l, on_timer, &m[i]);
    evtimer_arm(&m[i].t, due[i]);
  }
  assert_int_equal(evloop_timer_count(l), 5);
  assert_int_equal(evloop_next_deadline(l), 1100);
  fake_now = 1099;
  evloop_dispatch(l);
  assert_int_equal(nfired, 0);
  fake_now = 1250;
  evloop_dispatch(l);
  /* equal deadlines fire in arm order */
  assert_int_equal(nfired, 3);
  assert_int_equal(fired[0], 1);
  assert_int_equal(fired[1], 3);
  assert_int_equal(fired[2], 4);
  fake_now = 5000;
  evloop_dispatch(l);
  assert_int_equal(nfired, 5);
  assert_int_equal(fired[3], 2);
  assert_int_equal(fired[4], 0);
  assert_int_equal(evloop_timer_count(l), 0);
  assert_int_equal(evloop_next_deadline(l), UINT64_MAX);
  evloop_free(l);
}

static void test_rearm(void **st)
{
  (void)st;
  EvLoop *l = fresh();
  Tm a = {.id = 7};
  evtimer_init(&a.t, l, on_timer, &a);
  evtimer_arm(&a.t, 1100);
  evtimer_arm(&a.t, 1050); /* earlier */
  evtimer_arm(&a.t, 1300); /* later: only the last arm counts */
  assert_int_equal(evloop_timer_count(l), 1);
  fake_now = 1200;
  evloop_dispatch(l);
  assert_int_equal(nfired, 0);
  fake_now = 1300;
  evloop_dispatch(l);
  assert_int_equal(nfired, 1);
  /* re-armed by its own callback for a past time: next pass, not this one */
  a.rearm = 1;
  evtimer_arm(&a.t, 1300);
  evloop_dispatch(l);
  assert_int_equal(nfired, 2);
  assert_true(evtimer_armed(&a.t));
  evloop_dispatch(l);
  assert_int_equal(nfired, 3);
  assert_false(evtimer_armed(&a.t));
  evloop_free(l);
}

static void test_disarm_in_callback(void **st)
{
  (void)st;
  EvLoop *l = fresh();
  Tm a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
  evtimer_init(&a.t, l, on_timer, &a);
  evtimer_init(&b.t, l, on_timer, &b);
  evtimer_init(&c.t, l, on_timer, &c);
  a.victim = &b.t;
  evtimer_arm(&a.t, 1100);
  evtimer_arm(&b.t, 1100); /* same deadline, after a */
  evtimer_arm(&c.t, 1100);
  evtimer_disarm(&c.t);
  evtimer_disarm(&c.t); /* twice: a no-op */
  fake_now = 2000;
  evloop_dispatch(l);
  assert_int_equal(nfired, 1);
  assert_int_equal(fired[0], 1);
  assert_int_equal(evloop_timer_count(l), 0);
  evloop_free(l);
}

/* Many timers armed, moved and disarmed at random fire exactly once each,
 * in deadline order: the heap invariant holds through every operation. */
static void test_heap_random(void **st)
{
  (void)st;
  EvLoop *l = fresh();
  enum { N = 3000 };
  Tm *m = g_new0(Tm, N);
  uint64_t *due = g_new0(uint64_t, N);
  GRand *r = g_rand_new_with_seed(12);
  for (int i = 0; i < N; i++) {
    m[i].id = i;
    evtimer_init(&m[i].t, l, on_timer, &m[i]);
    due[i] = 2000 + (uint64_t)g_rand_int_range(r, 0, 100000);
    evtimer_arm(&m[i].t, due[i]);
  }
  int live = N;
  for (int k = 0; k < N; k++) {
    int i = g_rand_int_range(r, 0, N);
    if (g_rand_boolean(r)) {
      due[i] = 2000 + (uint64_t)g_rand_int_range(r, 0, 100000);
      if (!evtimer_armed(&m[i].t))
        live++;
      evtimer_arm(&m[i].t, due[i]);
    } else if (evtimer_armed(&m[i].t)) {
      evtimer_disarm(&m[i].t);
      due[i] = 0;
      live--;
    }
  }
  assert_int_equal(evloop_timer_count(l), live);
  uint64_t last = 0;
  int total = 0;
  nfired = 0;
  for (fake_now = 2000; fake_now <= 102000; fake_now += 997) {
    int before = nfired;
    evloop_dispatch(l);
    for (int j = before; j < nfired; j++) {
      uint64_t d = due[fired[j] % N];
      assert_true(d <= fake_now);
      assert_true(d >= last);
      last = d;
    }
    total += nfired - before;
    nfired = 0;
  }
  fake_now = 200000;
  evloop_dispatch(l);
  total += nfired;
  assert_int_equal(total, live);
  assert_int_equal(evloop_timer_count(l), 0);
  g_rand_free(r);
  g_free(m);
  g_free(due);
  evloop_free(l);
}

typedef struct {
  EvWatch *w;
  int fd;
  int calls;
  unsigned last;
  bool free_self;
  EvWatch **victim; /* freed (and cleared) by this callback */
} Wt;

static void on_watch(EvWatch *w, unsigned ev, void *ud)
{
  Wt *t = ud;
  assert_ptr_equal(w, t->w);
  t->calls++;
  t->last = ev;
  if (ev & EV_IN) {
    char buf[64];
    (void)!read(t->fd, buf, sizeof buf);
  }
  if (t->victim && *t->victim) {
    evwatch_free(*t->victim);
    *t->victim = NULL;
  }
  if (t->free_self) {
    evwatch_free(w);
    t->w = NULL;
  }
}

/* Reads at most one byte per call: leaves input behind, as a session that
 * stops after a full buffer does. */
static void on_edge(EvWatch *w, unsigned ev, void *ud)
{
  Wt *t = ud;
  t->calls++;
  t->last = ev;
  char c;
  if (ev & EV_IN)
    (void)!read(t->fd, &c, 1);
  if (t->free_self)
    evwatch_kick(w);
}

/* An edge watch is reported once per new arrival, not at every pass while
 * input is left; a kick reports it again while it is still ready. */
static void test_edge(void **st)
{
  (void)st;
  EvLoop *l = fresh();
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  Wt t = {.fd = sv[0]};
  t.w = evwatch_new(l, sv[0], EV_IN | EV_EDGE, on_edge, &t);
  assert_non_null(t.w);
  assert_int_equal(evwatch_events(t.w), EV_IN);
  evloop_dispatch(l);
  assert_int_equal(t.calls, 0);
  assert_int_equal(write(sv[1], "abc", 3), 3);
  evloop_dispatch(l);
  assert_int_equal(t.calls, 1);
  /* Two bytes left, no new arrival: quiet (level-triggered would call). */
  evloop_dispatch(l);
  assert_int_equal(t.calls, 1);
  /* A new arrival is a new edge. */
  assert_int_equal(write(sv[1], "d", 1), 1);
  evloop_dispatch(l);
  assert_int_equal(t.calls, 2);
  /* Kicked after each read: called at each pass while bytes are left
   * (c and d: two more reads), then quiet once drained. */
  t.free_self = true;
  evwatch_kick(t.w);
  for (int i = 0; i < 6; i++)
    evloop_dispatch(l);
  assert_int_equal(t.calls, 4);
  char c;
  assert_int_equal(recv(sv[0], &c, 1, MSG_DONTWAIT), -1);
  evwatch_free(t.w);
  close(sv[1]);
  close(sv[0]);
  evloop_free(l);
}

static void test_fd_ready(void **st)
{
  (void)st;
  EvLoop *l = fresh();
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  Wt t = {.fd = sv[0]};
  t.w = evwatch_new(l, sv[0], EV_IN, on_watch, &t);
  assert_non_null(t.w);
  assert_int_equal(evloop_watch_count(l), 1);
  evloop_dispatch(l);
  assert_int_equal(t.calls, 0); /* nothing to read yet */
  assert_int_equal(write(sv[1], "x", 1), 1);
  evloop_dispatch(l);
  assert_int_equal(t.calls, 1);
  assert_true(t.last & EV_IN);
  evloop_dispatch(l);
  assert_int_equal(t.calls, 1); /* drained: level-triggered, quiet again */
  evwatch_set(t.w, EV_OUT);
  assert_int_equal(evwatch_events(t.w), EV_OUT);
  evloop_dispatch(l);
  assert_int_equal(t.calls, 2);
  assert_true(t.last & EV_OUT);
  evwatch_set(t.w, 0);
  evloop_dispatch(l);
  assert_int_equal(t.calls, 2);
  /* peer gone: reported as readable (EOF) with EV_ERR */
  evwatch_set(t.w, EV_IN);
  close(sv[1]);
  evloop_dispatch(l);
  assert_int_equal(t.calls, 3);
  assert_true(t.last & EV_IN);
  evwatch_free(t.w);
  assert_int_equal(evloop_watch_count(l), 0);
  close(sv[0]);
  evloop_free(l);
}

static void test_watch_freed_in_callback(void **st)
{
  (void)st;
  EvLoop *l = fresh();
  int a[2], b[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, a), 0);
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, b), 0);
  Wt ta = {.fd = a[0], .free_self = true};
  Wt tb = {.fd = b[0], .free_self = true};
  ta.w = evwatch_new(l, a[0], EV_IN, on_watch, &ta);
  tb.w = evwatch_new(l, b[0], EV_IN, on_watch, &tb);
  /* whichever runs first frees the other too: the other's event, already
   * collected in this pass, must not reach it */
  ta.victim = &tb.w;
  tb.victim = &ta.w;
  assert_int_equal(write(a[1], "x", 1), 1);
  assert_int_equal(write(b[1], "x", 1), 1);
  evloop_dispatch(l);
  assert_int_equal(ta.calls + tb.calls, 1);
  assert_int_equal(evloop_watch_count(l), 0);
  /* the numbers may come back for new sockets at once */
  close(a[0]);
  close(b[0]);
  int c[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, c), 0);
  Wt tc = {.fd = c[0]};
  tc.w = evwatch_new(l, c[0], EV_IN, on_watch, &tc);
  assert_int_equal(write(c[1], "y", 1), 1);
  evloop_dispatch(l);
  assert_int_equal(tc.calls, 1);
  evwatch_free(tc.w);
  evwatch_free(NULL);
  close(a[1]);
  close(b[1]);
  close(c[0]);
  close(c[1]);
  evloop_free(l);
}

/* --- priority watches --- */

#define HERD 100

typedef struct {
  EvWatch *w;
  int fd;   /* ours, read to drain */
  int id;   /* logged in fired[] */
  int poke; /* >= 0: write to this fd when called (a link closing mid-burst) */
} Pw;

static void on_pw(EvWatch *w, unsigned events, void *ud)
{
  (void)w;
  (void)events;
  Pw *p = ud;
  char buf[64];
  while (read(p->fd, buf, sizeof buf) == (ssize_t)sizeof buf) {
  }
  if (nfired < MAXLOG)
    fired[nfired++] = p->id;
  if (p->poke >= 0) {
    assert_int_equal(write(p->poke, "!", 1), 1);
    p->poke = -1;
  }
}

/* HERD ordinary watches plus one priority watch (id -1) on socketpairs. */
static void herd_open(EvLoop *l, Pw *pw, int (*sv)[2], Pw *pri, int psv[2])
{
  for (int i = 0; i < HERD; i++) {
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv[i]), 0);
    pw[i] = (Pw){.fd = sv[i][0], .id = i, .poke = -1};
    pw[i].w = evwatch_new(l, sv[i][0], EV_IN, on_pw, &pw[i]);
    assert_non_null(pw[i].w);
  }
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, psv), 0);
  *pri = (Pw){.fd = psv[0], .id = -1, .poke = -1};
  pri->w = evwatch_new(l, psv[0], EV_IN, on_pw, pri);
  assert_non_null(pri->w);
  assert_false(evwatch_priority(pri->w));
  assert_true(evwatch_set_priority(pri->w, true));
  assert_true(evwatch_priority(pri->w));
}

static void herd_close(EvLoop *l, Pw *pw, int (*sv)[2], Pw *pri, int psv[2])
{
  for (int i = 0; i < HERD; i++) {
    evwatch_free(pw[i].w);
    close(sv[i][0]);
    close(sv[i][1]);
  }
  evwatch_free(pri->w);
  close(psv[0]);
  close(psv[1]);
  assert_int_equal(evloop_watch_count(l), 0);
  evloop_free(l);
}

static int position_of(int id)
{
  for (int i = 0; i < nfired; i++)
    if (fired[i] == id)
      return i;
  return -1;
}

/* A priority fd that became ready after a herd of ordinary ones runs first
 * in the pass; moved back, it takes its turn in readiness order again. */
static void test_priority_first(void **st)
{
  (void)st;
  EvLoop *l = fresh();
  static Pw pw[HERD];
  static int sv[HERD][2];
  Pw pri;
  int psv[2];
  herd_open(l, pw, sv, &pri, psv);
  for (int i = 0; i < HERD; i++)
    assert_int_equal(write(sv[i][1], "x", 1), 1);
  assert_int_equal(write(psv[1], "p", 1), 1); /* ready last */
  evloop_dispatch(l);
  assert_int_equal(nfired, HERD + 1);
  assert_int_equal(fired[0], -1);
  /* Ordinary again: the same burst runs it in readiness order, last. */
  assert_true(evwatch_set_priority(pri.w, false));
  assert_false(evwatch_priority(pri.w));
  nfired = 0;
  for (int i = 0; i < HERD; i++)
    assert_int_equal(write(sv[i][1], "x", 1), 1);
  assert_int_equal(write(psv[1], "p", 1), 1);
  evloop_dispatch(l);
  assert_int_equal(nfired, HERD + 1);
  assert_int_equal(position_of(-1), HERD);
  /* A closed peer (the link's FIN) is a priority event too. */
  assert_true(evwatch_set_priority(pri.w, true));
  nfired = 0;
  for (int i = 0; i < HERD; i++)
    assert_int_equal(write(sv[i][1], "x", 1), 1);
  close(psv[1]);
  psv[1] = socket(AF_UNIX, SOCK_STREAM, 0); /* for herd_close */
  evloop_dispatch(l);
  assert_int_equal(fired[0], -1);
  evwatch_set(pri.w, 0); /* quiet, or EOF stays ready */
  herd_close(l, pw, sv, &pri, psv);
}

/* A priority fd that becomes ready while the herd's callbacks run waits for
 * at most EVLOOP_PRIO_EVERY of them, not for the rest of the pass. */
static void test_priority_cap(void **st)
{
  (void)st;
  EvLoop *l = fresh();
  static Pw pw[HERD];
  static int sv[HERD][2];
  Pw pri;
  int psv[2];
  herd_open(l, pw, sv, &pri, psv);
  assert_true(HERD > 2 * EVLOOP_PRIO_EVERY + 10);
  for (int i = 0; i < HERD; i++)
    assert_int_equal(write(sv[i][1], "x", 1), 1);
  evloop_dispatch(l);
  assert_int_equal(nfired, HERD);
  /* Now the burst again, and whichever ordinary callback runs 5th makes the
   * priority fd ready (every watch pokes; only the first poke counts). */
  nfired = 0;
  for (int i = 0; i < HERD; i++) {
    pw[i].poke = -1;
    assert_int_equal(write(sv[i][1], "x", 1), 1);
  }
  evloop_dispatch(l);
  int fifth = fired[4];
  nfired = 0;
  pw[fifth].poke = psv[1];
  for (int i = 0; i < HERD; i++)
    assert_int_equal(write(sv[i][1], "x", 1), 1);
  evloop_dispatch(l);
  assert_int_equal(nfired, HERD + 1);
  int at = position_of(fifth), p = position_of(-1);
  assert_true(at >= 0 && p > at);
  /* At most EVLOOP_PRIO_EVERY ordinary callbacks between the poke and it. */
  assert_true(p - at - 1 <= EVLOOP_PRIO_EVERY);
  assert_true(p < HERD); /* not at the end of the pass */
  herd_close(l, pw, sv, &pri, psv);
}

/* Through GLib with the real clock: the one GSource wakes the context for a
 * ready fd and for a timer's deadline. */
static void test_glib(void **st)
{
  (void)st;
  nfired = 0;
  GMainContext *ctx = g_main_context_new();
  EvLoop *l = evloop_for_context(ctx);
  assert_non_null(l);
  assert_ptr_equal(evloop_for_context(ctx), l);
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  Wt t = {.fd = sv[0]};
  t.w = evwatch_new(l, sv[0], EV_IN, on_watch, &t);
  assert_int_equal(write(sv[1], "x", 1), 1);
  uint64_t end = clock_now_ms() + 2000;
  while (t.calls == 0 && clock_now_ms() < end)
    g_main_context_iteration(ctx, TRUE);
  assert_int_equal(t.calls, 1);
  Tm a = {.id = 1};
  evtimer_init(&a.t, l, on_timer, &a);
  uint64_t start = clock_now_ms();
  evtimer_arm(&a.t, start + 50);
  while (nfired == 0 && clock_now_ms() < end)
    g_main_context_iteration(ctx, TRUE);
  assert_int_equal(nfired, 1);
  assert_true(clock_now_ms() >= start + 50);
  evwatch_free(t.w);
  close(sv[0]);
  close(sv[1]);
  g_main_context_unref(ctx); /* the loop keeps it for the process */
}

/* Polls that found something ready (the context's poll function). */
static int polls_ready;
static gint count_poll(GPollFD *fds, guint n, gint timeout)
{
  gint r = g_poll(fds, n, timeout);
  if (r > 0)
    polls_ready++;
  return r;
}

/* A pass leaves nothing behind for GLib: no signal on the context's wakeup
 * fd (GLib's block/unblock of a non-recursive source, or a ready time set
 * again to the same deadline, each wrote one, and the next poll woke for
 * it: an extra iteration per message, issue 12). After the watch ran, with
 * a timer armed far away, a poll finds nothing ready. */
static void test_no_wakeup_per_pass(void **st)
{
  (void)st;
  nfired = 0;
  GMainContext *ctx = g_main_context_new();
  g_main_context_set_poll_func(ctx, count_poll);
  EvLoop *l = evloop_new(ctx, NULL, NULL);
  assert_non_null(l);
  Tm a = {.id = 1};
  evtimer_init(&a.t, l, on_timer, &a);
  evtimer_arm(&a.t, clock_now_ms() + 60000);
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  Wt t = {.fd = sv[0]};
  t.w = evwatch_new(l, sv[0], EV_IN, on_watch, &t);
  while (g_main_context_iteration(ctx, FALSE))
    ;
  for (int k = 1; k <= 3; k++) {
    assert_int_equal(write(sv[1], "x", 1), 1);
    gint64 end = g_get_monotonic_time() + 2000000;
    while (t.calls < k && g_get_monotonic_time() < end)
      g_main_context_iteration(ctx, TRUE);
    assert_int_equal(t.calls, k);
    polls_ready = 0;
    g_main_context_iteration(ctx, FALSE);
    assert_int_equal(polls_ready, 0);
  }
  assert_int_equal(nfired, 0);
  evtimer_disarm(&a.t);
  evwatch_free(t.w);
  close(sv[0]);
  close(sv[1]);
  evloop_free(l);
  g_main_context_unref(ctx);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_timer_order),
      cmocka_unit_test(test_rearm),
      cmocka_unit_test(test_disarm_in_callback),
      cmocka_unit_test(test_heap_random),
      cmocka_unit_test(test_fd_ready),
      cmocka_unit_test(test_edge),
      cmocka_unit_test(test_watch_freed_in_callback),
      cmocka_unit_test(test_glib),
      cmocka_unit_test(test_no_wakeup_per_pass),
      cmocka_unit_test(test_priority_first),
      cmocka_unit_test(test_priority_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
