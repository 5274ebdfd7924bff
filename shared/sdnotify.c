/* sdnotify.c - sd_notify(3) readiness, status and watchdog for Type=notify.
 *
 * sd_notify() itself returns 0 without a $NOTIFY_SOCKET; the explicit check
 * below only spares formatting a status nobody reads.
 */
#include "sdnotify.h"

#include <stdarg.h>
#include <stdint.h>
#include <systemd/sd-daemon.h>

#include "clock.h"

/* The process's one watchdog timer, its context and its period: half of
 * WatchdogSec=, as sd_watchdog_enabled(3) advises, so one late tick still
 * lands inside the interval. */
static GSource *watchdog_timer;
static GMainContext *watchdog_ctx;
static uint64_t watchdog_period_ms;

static gboolean under_systemd(void)
{
  const char *sock = g_getenv("NOTIFY_SOCKET");
  return sock && *sock;
}

/* Sends one or more newline-separated assignments. The environment is kept
 * (unset_environment = 0): a later call must still find the socket. */
static void notify(const char *state)
{
  int r = sd_notify(0, state);
  if (r < 0)
    g_debug("sd_notify: %s", g_strerror(-r));
}

/* STATUS= is one line: a newline would start a new assignment. */
static void notify_with_status(const char *head, const char *status)
{
  gchar *line = g_strdup(status);
  g_strdelimit(line, "\r\n", ' ');
  gchar *msg = g_strdup_printf("%sSTATUS=%s", head, line);
  notify(msg);
  g_free(msg);
  g_free(line);
}

void sdnotify_ready(const char *status)
{
  if (!under_systemd())
    return;
  if (status)
    notify_with_status("READY=1\n", status);
  else
    notify("READY=1");
}

void sdnotify_status(const char *fmt, ...)
{
  if (!under_systemd())
    return;
  va_list ap;
  va_start(ap, fmt);
  gchar *text = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  notify_with_status("", text);
  g_free(text);
}

void sdnotify_stopping(void)
{
  timer_disarm(&watchdog_timer);
  if (under_systemd())
    notify("STOPPING=1");
}

static gboolean on_watchdog(gpointer ud)
{
  notify("WATCHDOG=1");
  /* Counted from now, not from the missed deadline: a loop that was late
   * once must not fire a burst of catch-up keep-alives. */
  timer_arm(&watchdog_timer, watchdog_ctx, clock_now_ms() + watchdog_period_ms, on_watchdog, NULL);
  return G_SOURCE_REMOVE;
}

void sdnotify_watchdog_start(GMainContext *ctx)
{
  uint64_t usec = 0;
  int r = sd_watchdog_enabled(0, &usec);
  if (r < 0)
    g_debug("sd_watchdog_enabled: %s", g_strerror(-r));
  if (r <= 0)
    return;
  watchdog_ctx = ctx;
  watchdog_period_ms = MAX(usec / 2000, 1);
  g_info("systemd watchdog every %" G_GUINT64_FORMAT " ms; keep-alive every %" G_GUINT64_FORMAT
         " ms",
         usec / 1000, watchdog_period_ms);
  on_watchdog(NULL);
}
