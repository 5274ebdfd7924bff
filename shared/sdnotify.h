/* sdnotify.h - readiness, status and watchdog notifications to systemd.
 *
 * A thin shell over libsystemd's sd_notify(3) for a daemon started with
 * Type=notify. Outside systemd (no $NOTIFY_SOCKET) every call is a no-op, so
 * the daemons call these unconditionally. Failures to notify are logged at
 * debug and otherwise ignored: a daemon never stops over its supervisor.
 *
 * Not thread-safe: call from the thread that runs the main context.
 */
#ifndef CANOPY_SDNOTIFY_H
#define CANOPY_SDNOTIFY_H

#include <glib.h>

/* READY=1: start-up is complete (sockets bound, state loaded). status, if
 * not NULL, is shown by `systemctl status` (STATUS=); it is borrowed. */
void sdnotify_ready(const char *status);

/* STATUS=: a one-line, human-readable state ("42 leaves, 3 links"). Newlines
 * in the formatted text become spaces. Nothing is formatted outside systemd. */
void sdnotify_status(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* STOPPING=1: shutdown has begun. Also stops the watchdog timer, which
 * systemd no longer expects once the service is stopping. */
void sdnotify_stopping(void);

/* When systemd supervises this process with WatchdogSec= (sd_watchdog_enabled
 * says so), sends WATCHDOG=1 now and then every half interval from a
 * monotonic timer on ctx. The timer runs in ctx's loop, so a loop that hangs
 * stops the keep-alives and systemd restarts the service: that is the point.
 * Calling it again re-arms on the new ctx; sdnotify_stopping() disarms. ctx
 * is borrowed and must outlive the timer. */
void sdnotify_watchdog_start(GMainContext *ctx);

#endif
