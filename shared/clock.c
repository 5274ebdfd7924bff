/* clock.c - monotonic time and timers. */
#include "clock.h"

uint64_t clock_now_ms(void)
{
  return (uint64_t)(g_get_monotonic_time() / 1000);
}

typedef struct {
  GSource **slot;
  GSourceFunc fn;
  gpointer data;
} TimerCall;

static gboolean timer_fire(gpointer ud)
{
  TimerCall *t = ud;
  /* Clear the slot first so fn may re-arm it. The source is destroyed by
   * returning G_SOURCE_REMOVE; drop our reference now. */
  GSource *src = *t->slot;
  *t->slot = NULL;
  t->fn(t->data);
  if (src)
    g_source_unref(src);
  return G_SOURCE_REMOVE;
}

void timer_disarm(GSource **slot)
{
  if (*slot) {
    g_source_destroy(*slot);
    g_source_unref(*slot);
    *slot = NULL;
  }
}

uint64_t clock_unix_s(void)
{
  return (uint64_t)(g_get_real_time() / G_USEC_PER_SEC);
}

void timer_arm(GSource **slot, GMainContext *ctx, uint64_t deadline_ms, GSourceFunc fn,
               gpointer data)
{
  timer_disarm(slot);
  if (deadline_ms == UINT64_MAX)
    return;
  uint64_t now = clock_now_ms();
  guint delay = deadline_ms > now ? (guint)MIN(deadline_ms - now, G_MAXUINT) : 0;
  TimerCall *t = g_new(TimerCall, 1);
  *t = (TimerCall){slot, fn, data};
  GSource *src = g_timeout_source_new(delay);
  g_source_set_callback(src, timer_fire, t, g_free);
  g_source_attach(src, ctx);
  *slot = src;
}
