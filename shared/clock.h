/* clock.h - monotonic milliseconds and the one timer helper of the shells. */
#ifndef CANOPY_CLOCK_H
#define CANOPY_CLOCK_H

#include <glib.h>
#include <stdint.h>

/* Monotonic time in milliseconds (never wall-clock). */
uint64_t clock_now_ms(void);

/* Wall-clock unix seconds: only for what the world dates that way (TURN
 * credentials, network certificates), never for timing. */
uint64_t clock_unix_s(void);

/* Arms *slot to call fn(data) at the absolute monotonic time deadline_ms on
 * ctx, destroying whatever *slot held first; fn must return G_SOURCE_REMOVE
 * and the slot is cleared before fn runs. deadline UINT64_MAX just disarms. */
void timer_arm(GSource **slot, GMainContext *ctx, uint64_t deadline_ms, GSourceFunc fn,
               gpointer data);
void timer_disarm(GSource **slot);

#endif
