/* evloop.h - one epoll set and one timer heap, wrapped as ONE GSource.
 *
 * GLib's main context polls every attached source's fds on every wakeup, so
 * a super node with one GSource per socket pays O(all sockets) per
 * iteration even when only one socket is ready (issue 12). An EvLoop puts
 * every socket it watches into one epoll set and every timer into one
 * binary heap, and attaches a single GSource to the GMainContext: the epoll
 * fd is that source's only fd and the earliest timer is its ready time. So
 * GLib, GIO (GSocketService, the control socket), libsoup and libnice keep
 * running on the same context, and a wakeup costs O(ready fds + due timers
 * x log n), not O(sessions). Why epoll-as-a-GSource and not libuv/libev:
 * shared/EVENTLOOP.md.
 *
 * Single-threaded: every call is made from the thread that iterates the
 * context. Watches are level-triggered, like GLib's. The source does not
 * recurse: a callback that iterates the context itself (a nested loop)
 * runs other GSources but no watch or timer of this loop until it
 * returns.
 *
 * Callbacks never run while the loop iterates a collection it would
 * corrupt: a watch or timer callback may free any watch (freeing is
 * deferred until the pass ends), arm or disarm any timer, and create
 * watches. */
#ifndef CANOPY_EVLOOP_H
#define CANOPY_EVLOOP_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ready events handed to a watch at most per dispatch pass: the rest stay
 * ready (level-triggered) and run on the next pass, so one pass is bounded. */
#define EVLOOP_MAX_EVENTS 512

/* Ordinary (non-priority) ready events a pass handles between two looks at
 * the priority watches (evwatch_set_priority): a herd of leaf messages
 * holds a super-node link's close or heartbeat back by at most this many
 * callbacks, not by a whole pass or several. */
#define EVLOOP_PRIO_EVERY 32

typedef struct EvLoop EvLoop;
typedef struct EvWatch EvWatch;
typedef struct EvTimer EvTimer;

/* The loop's clock: monotonic milliseconds. */
typedef uint64_t (*EvClockFn)(void *ud);

/* Creates a loop attached to ctx (NULL: the global default context), whose
 * timers read clock (NULL: clock_now_ms). A fake clock is for unit tests
 * that drive the loop with evloop_dispatch(). NULL on failure (no epoll). */
EvLoop *evloop_new(GMainContext *ctx, EvClockFn clock, void *clock_ud);
/* Detaches and frees the loop; its watches and timers must be gone first
 * (freed watches, disarmed timers). NULL is a no-op. */
void evloop_free(EvLoop *l);
/* The one loop of ctx (NULL: the default context), created on first use
 * with the real clock and kept for the life of the process; NULL only if
 * epoll is unavailable. Lets code that is handed a GMainContext (session.c)
 * share one epoll set per context. */
EvLoop *evloop_for_context(GMainContext *ctx);
/* The loop's current time (its clock). */
uint64_t evloop_now(const EvLoop *l);

/* Runs one pass without GLib: the watches ready now (no waiting) and the
 * timers due at evloop_now(). The GSource calls this; unit tests with a fake
 * clock call it directly. */
void evloop_dispatch(EvLoop *l);
/* The earliest armed timer's deadline, or UINT64_MAX. */
uint64_t evloop_next_deadline(const EvLoop *l);
/* How many watches and armed timers the loop holds (metrics, tests). */
size_t evloop_watch_count(const EvLoop *l);
size_t evloop_timer_count(const EvLoop *l);

/* ---- fd watches ---- */

#define EV_IN 0x1u  /* readable (or peer hung up: read sees EOF) */
#define EV_OUT 0x2u /* writable */
#define EV_ERR 0x4u /* error or hang-up; always reported, never asked for */
/* For evwatch_new only: edge-triggered (EPOLLET). The watch is reported
 * once per new readiness, not again at every pass while it stays ready:
 * its owner reads until the fd is drained (a short read of a stream
 * socket is enough while EV_ERR is not set) or calls evwatch_kick() when
 * it stops early. With EV_ERR (an error, a reset, or the peer's FIN: an
 * edge watch also gets EPOLLRDHUP) it reads until EOF, an error or
 * EAGAIN: the close may sit behind the data a short read returned, and
 * no new edge comes for it. Urgent data (MSG_OOB) also stops a read
 * short; none of our protocols send it. Saves the kernel a second
 * readiness check of every fd a pass handled. */
#define EV_EDGE 0x8u

/* events: what is ready (EV_IN | EV_OUT | EV_ERR). */
typedef void (*EvWatchFn)(EvWatch *w, unsigned events, void *ud);

/* Watches fd (borrowed: the caller closes it, after evwatch_free) for events
 * (EV_IN and/or EV_OUT; 0 keeps it registered but quiet). NULL on failure
 * (epoll_ctl refused the fd). One watch per fd. */
EvWatch *evwatch_new(EvLoop *l, int fd, unsigned events, EvWatchFn fn, void *ud);
/* Changes what the watch asks for; a no-op when unchanged. An edge watch
 * stays one (EV_EDGE here is ignored). */
void evwatch_set(EvWatch *w, unsigned events);
/* An edge watch whose owner left input unread: report it again on the
 * next pass if it is still ready (one epoll_ctl). A no-op otherwise. */
void evwatch_kick(EvWatch *w);
unsigned evwatch_events(const EvWatch *w);
/* A priority watch runs before every ordinary one ready in the same pass,
 * and again after each EVLOOP_PRIO_EVERY ordinary callbacks if it became
 * ready meanwhile (the links that decide a group's fate, not its leaves).
 * Priority watches sit in a second epoll set nested in the loop's; the
 * first call makes it. A watch moved while a pass runs may run twice in
 * that pass (level-triggered: the second finds nothing to do). Returns
 * false (and the watch stays as it was) if epoll refused. */
bool evwatch_set_priority(EvWatch *w, bool prio);
bool evwatch_priority(const EvWatch *w);
/* Stops watching at once (no callback after this returns, even for events
 * already collected in this pass); the memory goes when the pass ends, so
 * a callback may free its own watch. NULL is a no-op. */
void evwatch_free(EvWatch *w);

/* ---- timers ----
 * An EvTimer lives inside its owner's struct (no allocation per arm); the
 * heap holds pointers to it, so the owner must disarm it before freeing or
 * moving that memory. Arm, re-arm and disarm are O(log n). */

typedef void (*EvTimerFn)(EvTimer *t, void *ud);

struct EvTimer {
  /* Private to evloop.c; here so owners can embed the timer. */
  EvLoop *loop;
  EvTimerFn fn;
  void *ud;
  uint64_t due;
  uint64_t seq; /* arm order: equal deadlines fire in arm order */
  size_t slot;  /* 1 + index in the heap; 0: not armed */
};

/* Binds t to loop and callback; t starts disarmed. */
void evtimer_init(EvTimer *t, EvLoop *l, EvTimerFn fn, void *ud);
/* Arms (or moves) t to fire once at due_ms (the loop's clock). The slot is
 * disarmed before fn runs, so fn may re-arm it. A timer armed from a
 * callback for a time already past fires on the next pass, not this one. */
void evtimer_arm(EvTimer *t, uint64_t due_ms);
/* Disarms t; a no-op when it is not armed. */
void evtimer_disarm(EvTimer *t);
bool evtimer_armed(const EvTimer *t);
/* When an armed t fires (the loop's clock); meaningless when disarmed. */
uint64_t evtimer_due(const EvTimer *t);

#endif
