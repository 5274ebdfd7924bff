/* evloop.c - one epoll set and one timer heap behind one GSource.
 *
 * The GSource has exactly one fd, the epoll fd, and a ready time, the
 * earliest timer; GLib polls that one fd whatever the number of sockets, and
 * the kernel keeps the ready list (epoll(7)). Design notes and measurements:
 * EVENTLOOP.md. */
#include "evloop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "clock.h"

/* Heap array growth floor: small loops do not realloc at every arm. */
#define HEAP_MIN_CAP 64

struct EvWatch {
  EvLoop *loop;
  int fd;
  unsigned events;
  EvWatchFn fn;
  void *ud;
  bool prio;     /* in the priority set (prio_epfd), not epfd */
  bool edge;     /* EV_EDGE: EPOLLET */
  bool dead;     /* freed inside a pass: waits on the loop's graveyard */
  EvWatch *next; /* graveyard link */
};

typedef struct {
  GSource base;
  EvLoop *loop;
} EvSource;

struct EvLoop {
  int epfd;
  GMainContext *ctx;
  EvSource *src;
  gpointer tag; /* the epoll fd's tag in src */
  EvClockFn clock;
  void *clock_ud;
  size_t watches;
  EvTimer **heap; /* binary min-heap on (due, seq) */
  size_t n, cap;
  uint64_t seq;
  int depth;          /* > 0 while a pass runs: frees are deferred */
  EvWatch *graveyard; /* watches freed during the pass */
  uint64_t ready_due; /* the heap top's deadline the ready time was set for */
  bool nested;        /* a nested dispatch left the fd out of GLib's poll */
  /* Priority watches: an epoll set of their own, itself a member of epfd
   * (so a ready priority fd wakes the loop), made on first use. */
  bool prio_open;
  int prio_epfd; /* valid when prio_open */
  size_t prio_watches;
};

/* epfd's data for the nested priority set: not a watch. */
static char prio_mark;

static uint64_t real_clock(void *ud)
{
  (void)ud;
  return clock_now_ms();
}

uint64_t evloop_now(const EvLoop *l)
{
  return l->clock(l->clock_ud);
}

/* ---- timer heap ---- */

static bool before(const EvTimer *a, const EvTimer *b)
{
  return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_place(EvLoop *l, size_t i, EvTimer *t)
{
  l->heap[i] = t;
  t->slot = i + 1;
}

static void sift_up(EvLoop *l, size_t i)
{
  EvTimer *t = l->heap[i];
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (!before(t, l->heap[p]))
      break;
    heap_place(l, i, l->heap[p]);
    i = p;
  }
  heap_place(l, i, t);
}

static void sift_down(EvLoop *l, size_t i)
{
  EvTimer *t = l->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= l->n)
      break;
    if (c + 1 < l->n && before(l->heap[c + 1], l->heap[c]))
      c++;
    if (!before(l->heap[c], t))
      break;
    heap_place(l, i, l->heap[c]);
    i = c;
  }
  heap_place(l, i, t);
}

static void heap_remove(EvLoop *l, EvTimer *t)
{
  size_t i = t->slot - 1;
  t->slot = 0;
  l->n--;
  if (i == l->n)
    return;
  l->heap[i] = l->heap[l->n];
  l->heap[i]->slot = i + 1;
  /* The moved timer may belong above or below i. */
  if (i > 0 && before(l->heap[i], l->heap[(i - 1) / 2]))
    sift_up(l, i);
  else
    sift_down(l, i);
}

static void update_ready_time(EvLoop *l)
{
  if (!l->src)
    return;
  /* Only when the deadline moved: setting a ready time signals the
   * context's wakeup fd (a write, then a poll and a read to take it back),
   * and the conversion below gives another value each time. */
  uint64_t due = l->n ? l->heap[0]->due : UINT64_MAX;
  if (due == l->ready_due)
    return;
  l->ready_due = due;
  if (l->n == 0) {
    g_source_set_ready_time(&l->src->base, -1);
    return;
  }
  /* The ready time is on GLib's monotonic clock; the loop's clock may be
   * another (tests), so convert through "how long from now". */
  uint64_t now = evloop_now(l);
  gint64 in_us = due > now ? (gint64)MIN(due - now, (uint64_t)G_MAXINT64 / 1000) * 1000 : 0;
  gint64 at = g_get_monotonic_time() + in_us;
  if (g_source_get_ready_time(&l->src->base) != at)
    g_source_set_ready_time(&l->src->base, at);
}

void evtimer_init(EvTimer *t, EvLoop *l, EvTimerFn fn, void *ud)
{
  *t = (EvTimer){.loop = l, .fn = fn, .ud = ud};
}

bool evtimer_armed(const EvTimer *t)
{
  return t->slot != 0;
}

uint64_t evtimer_due(const EvTimer *t)
{
  return t->due;
}

void evtimer_arm(EvTimer *t, uint64_t due_ms)
{
  EvLoop *l = t->loop;
  bool was_top = t->slot == 1;
  t->due = due_ms;
  t->seq = ++l->seq;
  if (t->slot) {
    size_t i = t->slot - 1;
    if (i > 0 && before(t, l->heap[(i - 1) / 2]))
      sift_up(l, i);
    else
      sift_down(l, i);
  } else {
    if (l->n == l->cap) {
      l->cap = l->cap ? l->cap * 2 : HEAP_MIN_CAP;
      l->heap = g_renew(EvTimer *, l->heap, l->cap);
    }
    l->heap[l->n++] = t;
    sift_up(l, l->n - 1);
  }
  if ((was_top || t->slot == 1) && l->depth == 0)
    update_ready_time(l);
}

void evtimer_disarm(EvTimer *t)
{
  if (!t->slot)
    return;
  EvLoop *l = t->loop;
  bool was_top = t->slot == 1;
  heap_remove(l, t);
  /* Shrink a heap that emptied after a peak, so 19,000 gone sessions do
   * not keep their slots. */
  if (l->cap > HEAP_MIN_CAP && l->n < l->cap / 4) {
    l->cap /= 2;
    l->heap = g_renew(EvTimer *, l->heap, l->cap);
  }
  if (was_top && l->depth == 0)
    update_ready_time(l);
}

uint64_t evloop_next_deadline(const EvLoop *l)
{
  return l->n ? l->heap[0]->due : UINT64_MAX;
}

size_t evloop_timer_count(const EvLoop *l)
{
  return l->n;
}

/* ---- watches ---- */

static uint32_t to_epoll(const EvWatch *w, unsigned events)
{
  /* An edge watch also asks for EPOLLRDHUP: a peer's FIN queued behind its
   * last data is consumed by the read that returns the data, and its EOF
   * shows only on a further read, which no new edge would prompt. */
  return ((events & EV_IN) ? (uint32_t)EPOLLIN : 0u) |
         ((events & EV_OUT) ? (uint32_t)EPOLLOUT : 0u) |
         (w->edge ? (uint32_t)(EPOLLET | EPOLLRDHUP) : 0u);
}

/* The epoll set w belongs to. */
static int set_of(const EvWatch *w)
{
  return w->prio ? w->loop->prio_epfd : w->loop->epfd;
}

EvWatch *evwatch_new(EvLoop *l, int fd, unsigned events, EvWatchFn fn, void *ud)
{
  EvWatch *w = g_new0(EvWatch, 1);
  *w = (EvWatch){.loop = l,
                 .fd = fd,
                 .events = events & (EV_IN | EV_OUT),
                 .edge = (events & EV_EDGE) != 0,
                 .fn = fn,
                 .ud = ud};
  struct epoll_event ev = {.events = to_epoll(w, w->events), .data.ptr = w};
  if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    g_debug("evloop: epoll_ctl ADD fd %d: %s", fd, g_strerror(errno));
    g_free(w);
    return NULL;
  }
  l->watches++;
  return w;
}

void evwatch_set(EvWatch *w, unsigned events)
{
  events &= EV_IN | EV_OUT;
  if (w->dead || events == w->events)
    return;
  struct epoll_event ev = {.events = to_epoll(w, events), .data.ptr = w};
  if (epoll_ctl(set_of(w), EPOLL_CTL_MOD, w->fd, &ev) != 0) {
    g_debug("evloop: epoll_ctl MOD fd %d: %s", w->fd, g_strerror(errno));
    return;
  }
  w->events = events;
}

void evwatch_kick(EvWatch *w)
{
  if (w->dead || !w->edge)
    return;
  /* A MOD looks at the fd's readiness again and queues it if ready. */
  struct epoll_event ev = {.events = to_epoll(w, w->events), .data.ptr = w};
  if (epoll_ctl(set_of(w), EPOLL_CTL_MOD, w->fd, &ev) != 0)
    g_debug("evloop: epoll_ctl MOD (kick) fd %d: %s", w->fd, g_strerror(errno));
}

unsigned evwatch_events(const EvWatch *w)
{
  return w->events;
}

/* Makes the priority set and nests it in epfd; false if epoll refused. */
static bool prio_set_open(EvLoop *l)
{
  if (l->prio_open)
    return true;
  int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) {
    g_debug("evloop: epoll_create1 (priority set): %s", g_strerror(errno));
    return false;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &prio_mark};
  if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    g_debug("evloop: epoll_ctl ADD priority set: %s", g_strerror(errno));
    close(fd);
    return false;
  }
  l->prio_epfd = fd;
  l->prio_open = true;
  return true;
}

bool evwatch_set_priority(EvWatch *w, bool prio)
{
  if (w->dead || w->prio == prio)
    return !w->dead;
  EvLoop *l = w->loop;
  if (prio && !prio_set_open(l))
    return false;
  int from = set_of(w), to = prio ? l->prio_epfd : l->epfd;
  struct epoll_event ev = {.events = to_epoll(w, w->events), .data.ptr = w};
  /* Into the new set first: a watch is never in neither. */
  if (epoll_ctl(to, EPOLL_CTL_ADD, w->fd, &ev) != 0) {
    g_debug("evloop: epoll_ctl ADD fd %d (priority %d): %s", w->fd, prio, g_strerror(errno));
    return false;
  }
  epoll_ctl(from, EPOLL_CTL_DEL, w->fd, NULL);
  w->prio = prio;
  if (prio)
    l->prio_watches++;
  else
    l->prio_watches--;
  return true;
}

bool evwatch_priority(const EvWatch *w)
{
  return w->prio;
}

void evwatch_free(EvWatch *w)
{
  if (!w || w->dead)
    return;
  EvLoop *l = w->loop;
  /* Out of the set now: the owner may close the fd and the number may come
   * back for another socket before this pass ends. */
  epoll_ctl(set_of(w), EPOLL_CTL_DEL, w->fd, NULL);
  w->dead = true;
  l->watches--;
  if (w->prio)
    l->prio_watches--;
  if (l->depth > 0) {
    w->next = l->graveyard;
    l->graveyard = w;
  } else {
    g_free(w);
  }
}

size_t evloop_watch_count(const EvLoop *l)
{
  return l->watches;
}

/* ---- one pass ---- */

/* Hands each collected event to its watch; skips the nested priority set's
 * mark and watches freed by an earlier callback of this pass. With `every`
 * > 0, looks at the priority set after each `every` callbacks. */
static void run_events(EvLoop *l, const struct epoll_event *evs, int n, int every);

/* The priority watches ready now: all of them, before anything else. */
static void run_prio(EvLoop *l)
{
  if (l->prio_watches == 0)
    return;
  struct epoll_event evs[EVLOOP_MAX_EVENTS];
  int n;
  do
    n = epoll_wait(l->prio_epfd, evs, EVLOOP_MAX_EVENTS, 0);
  while (n < 0 && errno == EINTR);
  run_events(l, evs, n, 0);
}

static void run_events(EvLoop *l, const struct epoll_event *evs, int n, int every)
{
  int since = 0;
  for (int i = 0; i < n; i++) {
    EvWatch *w = evs[i].data.ptr;
    if ((void *)w == &prio_mark || w->dead)
      continue;
    /* Level-triggered, so a priority fd that became ready while ordinary
     * callbacks ran is found by this epoll_wait: it waits for at most
     * `every` of them, whatever the burst. */
    if (every > 0 && ++since > every) {
      since = 1;
      run_prio(l);
      if (w->dead)
        continue;
    }
    uint32_t e = evs[i].events;
    unsigned got = ((e & EPOLLIN) ? EV_IN : 0u) | ((e & EPOLLOUT) ? EV_OUT : 0u) |
                   ((e & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) ? EV_ERR : 0u);
    /* A hang-up reads as EOF: report it as readable too if asked for. */
    if ((e & (EPOLLHUP | EPOLLRDHUP)) && (w->events & EV_IN))
      got |= EV_IN;
    w->fn(w, got, w->ud);
  }
}

static void run_watches(EvLoop *l)
{
  /* Priority first: the main set's snapshot below may hold thousands of
   * leaf messages that became ready before a link's close. */
  run_prio(l);
  struct epoll_event evs[EVLOOP_MAX_EVENTS];
  int n;
  do
    n = epoll_wait(l->epfd, evs, EVLOOP_MAX_EVENTS, 0);
  while (n < 0 && errno == EINTR);
  run_events(l, evs, n, EVLOOP_PRIO_EVERY);
}

static void run_timers(EvLoop *l)
{
  uint64_t now = evloop_now(l);
  /* Only timers armed before this pass: one re-armed for "now" by its own
   * callback waits for the next pass instead of spinning here. */
  uint64_t last_seq = l->seq;
  while (l->n > 0) {
    EvTimer *t = l->heap[0];
    if (t->due > now || t->seq > last_seq)
      break;
    heap_remove(l, t);
    t->fn(t, t->ud);
  }
}

static void pass(EvLoop *l, bool fds)
{
  l->depth++;
  if (fds)
    run_watches(l);
  run_timers(l);
  l->depth--;
  if (l->depth == 0) {
    while (l->graveyard) {
      EvWatch *w = l->graveyard;
      l->graveyard = w->next;
      g_free(w);
    }
  }
  update_ready_time(l);
}

void evloop_dispatch(EvLoop *l)
{
  pass(l, true);
}

/* ---- the GSource ---- */

static gboolean src_dispatch(GSource *base, GSourceFunc cb, gpointer ud)
{
  (void)cb;
  (void)ud;
  EvSource *s = (EvSource *)base;
  EvLoop *l = s->loop;
  /* A callback of ours iterating the context (a nested loop): not again
   * until it returns. The fd leaves GLib's poll meanwhile, or the nested
   * loop would spin on it (evloop.h: the source does not recurse). */
  if (l->depth > 0) {
    l->nested = true;
    g_source_modify_unix_fd(base, l->tag, 0);
    g_source_set_ready_time(base, -1);
    l->ready_due = UINT64_MAX;
    return G_SOURCE_CONTINUE;
  }
  /* GLib dispatches a source whose ready time has passed until the time is
   * set again: then the pass must set it, even to the same deadline. */
  gint64 rt = g_source_get_ready_time(base);
  if (rt >= 0 && rt <= g_source_get_time(base))
    l->ready_due = 0;
  /* Woken only by the ready time: skip the epoll_wait. */
  pass(l, (g_source_query_unix_fd(base, l->tag) & G_IO_IN) != 0);
  if (l->nested) {
    l->nested = false;
    g_source_modify_unix_fd(base, l->tag, G_IO_IN);
  }
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs src_funcs = {
    .dispatch = src_dispatch,
};

EvLoop *evloop_new(GMainContext *ctx, EvClockFn clock, void *clock_ud)
{
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) {
    g_warning("evloop: epoll_create1: %s", g_strerror(errno));
    return NULL;
  }
  EvLoop *l = g_new0(EvLoop, 1);
  l->epfd = epfd;
  l->clock = clock ? clock : real_clock;
  l->clock_ud = clock_ud;
  l->ctx = ctx ? g_main_context_ref(ctx) : g_main_context_ref(g_main_context_default());
  l->src = (EvSource *)g_source_new(&src_funcs, sizeof(EvSource));
  l->src->loop = l;
  g_source_set_name(&l->src->base, "canopy-evloop");
  /* GLib takes a source that may not recurse out of its poll set while it
   * dispatches and puts it back after, and each of the two signals the
   * context's wakeup fd: two write()s per pass, and an extra iteration
   * (a poll and a read) to take the wakeup back, for every message (issue
   * 12). src_dispatch guards against recursion itself. */
  g_source_set_can_recurse(&l->src->base, TRUE);
  l->tag = g_source_add_unix_fd(&l->src->base, epfd, G_IO_IN);
  g_source_set_ready_time(&l->src->base, -1);
  l->ready_due = UINT64_MAX;
  g_source_attach(&l->src->base, l->ctx);
  return l;
}

void evloop_free(EvLoop *l)
{
  if (!l)
    return;
  if (l->watches || l->n)
    g_warning("evloop: freed with %zu watches and %zu timers left", l->watches, l->n);
  for (size_t i = 0; i < l->n; i++)
    l->heap[i]->slot = 0;
  g_source_destroy(&l->src->base);
  g_source_unref(&l->src->base);
  while (l->graveyard) {
    EvWatch *w = l->graveyard;
    l->graveyard = w->next;
    g_free(w);
  }
  g_free(l->heap);
  if (l->prio_open)
    close(l->prio_epfd);
  close(l->epfd);
  g_main_context_unref(l->ctx);
  g_free(l);
}

/* ctx -> EvLoop; a loop made here lives as long as the process. */
static GHashTable *by_context;
G_LOCK_DEFINE_STATIC(by_context);

EvLoop *evloop_for_context(GMainContext *ctx)
{
  if (!ctx)
    ctx = g_main_context_default();
  G_LOCK(by_context);
  if (!by_context)
    by_context = g_hash_table_new(g_direct_hash, g_direct_equal);
  EvLoop *l = g_hash_table_lookup(by_context, ctx);
  if (!l) {
    l = evloop_new(ctx, NULL, NULL);
    if (l)
      g_hash_table_insert(by_context, ctx, l);
  }
  G_UNLOCK(by_context);
  return l;
}
