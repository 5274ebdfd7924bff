/* bench_evloop.c - what a wakeup costs with N idle sockets: GLib with one
 * GSource per socket (what session.c did before issue 12) against the
 * epoll GSource (shared/evloop.h).
 *
 *   bench_evloop [N ...]      (default: 1000 5000)
 *
 * For each N it opens N socketpairs, watches one end of each (GLib: a
 * GSocket source each, as g_pollable_input_stream_create_source made them;
 * evloop: one epoll watch each) and then measures, on one GMainContext:
 * - wakeup: one byte written to one socket, the context iterated until its
 *   callback has read it; microseconds per round (CPU and wall);
 * - idle: a 1 ms timer (GLib: g_timeout; evloop: a heap timer) ticking
 *   for 2 s while every socket stays idle; CPU % of one core;
 * - timers: N per-session timers re-armed 10 times each (GLib: destroy and
 *   re-create a g_timeout source; evloop: evtimer_arm); ns per re-arm.
 * Prints one line per (N, loop). A benchmark: not run by CI. */
#include <gio/gio.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "evloop.h"

typedef struct {
  int fd[2];
  GSocket *gs;
  GSource *src;
  EvWatch *w;
  EvTimer t;
  GSource *gt;
} Pair;

static int fired;

static double cpu_s(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
         ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static double wall_s(void)
{
  return (double)g_get_monotonic_time() / 1e6;
}

static void drain(int fd)
{
  char buf[64];
  if (read(fd, buf, sizeof buf) > 0)
    fired++;
}

static gboolean on_gsocket(GSocket *s, GIOCondition c, gpointer ud)
{
  drain(((Pair *)ud)->fd[0]);
  return G_SOURCE_CONTINUE;
}

static void on_watch(EvWatch *w, unsigned ev, void *ud)
{
  drain(((Pair *)ud)->fd[0]);
}

static int ticks;
static gboolean on_gtick(gpointer ud)
{
  ticks++;
  return G_SOURCE_CONTINUE;
}

static void on_evtick(EvTimer *t, void *ud)
{
  ticks++;
  evtimer_arm(t, evloop_now(t->loop) + 1);
}

static gboolean on_gtimer(gpointer ud)
{
  return G_SOURCE_REMOVE;
}

static void on_evtimer(EvTimer *t, void *ud) {}

static void run(int n, bool epoll)
{
  GMainContext *ctx = g_main_context_new();
  EvLoop *l = epoll ? evloop_new(ctx, NULL, NULL) : NULL;
  Pair *p = g_new0(Pair, n);
  for (int i = 0; i < n; i++) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, p[i].fd) != 0) {
      perror("socketpair (raise ulimit -n)");
      exit(1);
    }
    if (epoll) {
      p[i].w = evwatch_new(l, p[i].fd[0], EV_IN, on_watch, &p[i]);
      evtimer_init(&p[i].t, l, on_evtimer, &p[i]);
    } else {
      p[i].gs = g_socket_new_from_fd(p[i].fd[0], NULL);
      p[i].src = g_socket_create_source(p[i].gs, G_IO_IN, NULL);
      g_source_set_callback(p[i].src, G_SOURCE_FUNC(on_gsocket), &p[i], NULL);
      g_source_attach(p[i].src, ctx);
    }
  }
  /* wakeup: one socket of n becomes readable */
  int rounds = 2000;
  fired = 0;
  double c0 = cpu_s(), w0 = wall_s();
  for (int r = 0; r < rounds; r++) {
    int want = fired + 1;
    if (write(p[r % n].fd[1], "x", 1) != 1)
      abort();
    while (fired < want)
      g_main_context_iteration(ctx, TRUE);
  }
  double wake_cpu = (cpu_s() - c0) / rounds * 1e6, wake_wall = (wall_s() - w0) / rounds * 1e6;
  /* idle: a 1 ms tick for 2 s */
  ticks = 0;
  EvTimer tick;
  GSource *gtick = NULL;
  if (epoll) {
    evtimer_init(&tick, l, on_evtick, NULL);
    evtimer_arm(&tick, evloop_now(l) + 1);
  } else {
    gtick = g_timeout_source_new(1);
    g_source_set_callback(gtick, on_gtick, NULL, NULL);
    g_source_attach(gtick, ctx);
  }
  c0 = cpu_s();
  w0 = wall_s();
  while (wall_s() - w0 < 2.0)
    g_main_context_iteration(ctx, TRUE);
  double idle_pct = (cpu_s() - c0) / (wall_s() - w0) * 100, tick_rate = ticks / (wall_s() - w0);
  if (epoll) {
    evtimer_disarm(&tick);
  } else {
    g_source_destroy(gtick);
    g_source_unref(gtick);
  }
  /* timers: n per-session deadlines re-armed 10 times each */
  uint64_t now = clock_now_ms();
  c0 = cpu_s();
  for (int k = 0; k < 10; k++)
    for (int i = 0; i < n; i++) {
      uint64_t due = now + 5000 + (uint64_t)((i * 7919 + k * 104729) % 5000);
      if (epoll) {
        evtimer_arm(&p[i].t, due);
      } else {
        if (p[i].gt) {
          g_source_destroy(p[i].gt);
          g_source_unref(p[i].gt);
        }
        p[i].gt = g_timeout_source_new((guint)(due - now));
        g_source_set_callback(p[i].gt, on_gtimer, NULL, NULL);
        g_source_attach(p[i].gt, ctx);
      }
    }
  double rearm_ns = (cpu_s() - c0) / (10.0 * n) * 1e9;
  /* and what one iteration costs with those n timers armed (nothing due) */
  int iters = 200;
  c0 = cpu_s();
  for (int k = 0; k < iters; k++)
    g_main_context_iteration(ctx, FALSE);
  double iter_us = (cpu_s() - c0) / iters * 1e6;
  printf("bench_evloop: %5d idle sockets, %-6s: wakeup %7.1f us cpu %7.1f us wall, idle 1 ms "
         "tick %5.1f %% cpu (%4.0f ticks/s), timer re-arm %6.0f ns, iteration with %d timers "
         "%7.1f us\n",
         n, epoll ? "epoll" : "glib", wake_cpu, wake_wall, idle_pct, tick_rate, rearm_ns, n,
         iter_us);
  fflush(stdout);
  for (int i = 0; i < n; i++) {
    if (epoll) {
      evwatch_free(p[i].w);
      evtimer_disarm(&p[i].t);
    } else {
      g_source_destroy(p[i].src);
      g_source_unref(p[i].src);
      if (p[i].gt) {
        g_source_destroy(p[i].gt);
        g_source_unref(p[i].gt);
      }
      g_object_unref(p[i].gs);
    }
    close(p[i].fd[0]);
    close(p[i].fd[1]);
  }
  g_free(p);
  evloop_free(l);
  g_main_context_unref(ctx);
}

int main(int argc, char **argv)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  int def[] = {1000, 5000};
  int nn = argc > 1 ? argc - 1 : 2;
  for (int k = 0; k < nn; k++) {
    int n = argc > 1 ? atoi(argv[k + 1]) : def[k];
    if (n < 1)
      continue;
    run(n, false);
    run(n, true);
  }
  return 0;
}
