/* metrics.h - the super node's Prometheus endpoint.
 *
 * Two layers. MetricsWriter builds the text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/) in memory
 * and does no I/O, so tests compare its output byte for byte. Metrics is the
 * libsoup 3 shell: an HTTP server on one configured address whose
 * `GET /metrics` asks the caller to fill a fresh writer and returns the text.
 *
 * Every name given to the writer is prefixed with `canopy_`; a counter's
 * samples (and its HELP and TYPE lines) also get `_total`. A family's HELP
 * and TYPE lines are written once, before its first sample; the samples of a
 * family must be written together. A call that would break the format (a bad
 * name, a family split or redeclared with another type) is a caller bug: it
 * writes nothing and marks the writer failed (metrics_writer_ok), and the
 * server answers such a scrape with 500 rather than serve a broken page.
 */
#ifndef CANOPY_METRICS_H
#define CANOPY_METRICS_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sncore.h"

#define METRICS_PREFIX "canopy_"
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* --- the writer (no I/O) ------------------------------------------------------ */

typedef struct MetricsWriter MetricsWriter;

MetricsWriter *metrics_writer_new(void);
void metrics_writer_free(MetricsWriter *w); /* NULL is a no-op */

/* The text so far (borrowed: valid until the next write or free); *len if
 * len is not NULL. */
const char *metrics_writer_text(const MetricsWriter *w, size_t *len);

/* False once any call was rejected (see above). */
bool metrics_writer_ok(const MetricsWriter *w);

/* name: [a-zA-Z0-9_:]+ without the prefix (and, for counters, without
 * `_total`). help: any UTF-8; backslashes and newlines are escaped. */
void metrics_counter(MetricsWriter *w, const char *name, const char *help, uint64_t value);
void metrics_gauge(MetricsWriter *w, const char *name, const char *help, double value);

/* labels: pairs of label name and value, then NULL, e.g.
 *   metrics_gauge_labels(w, "group_role", "...", (const char *[]){"role", "leader", NULL}, 1);
 * Label names are [a-zA-Z_][a-zA-Z0-9_]* not starting with "__", each once;
 * values are any UTF-8 (backslash, double quote and newline are escaped).
 * NULL or an empty list writes a sample without braces. */
void metrics_counter_labels(MetricsWriter *w, const char *name, const char *help,
                            const char *const *labels, uint64_t value);
void metrics_gauge_labels(MetricsWriter *w, const char *name, const char *help,
                          const char *const *labels, double value);

/* --- what the super node exposes ------------------------------------------------ */

/* What the shell (main.c) knows beyond the core. */
typedef struct {
  uint64_t sessions;                /* open TCP sessions, handshakes included */
  uint64_t sessions_refused;        /* inbound connections refused (over the cap) */
  uint64_t stun_requests;           /* STUN binding requests answered */
  uint64_t stun_dropped;            /* STUN datagrams not answered */
  uint64_t turn_credentials_issued; /* TURN credentials handed to leaves */
  uint64_t bytes_in;                /* session bytes read from sockets, all sessions ever */
  uint64_t bytes_out;               /* session bytes written to sockets, all sessions ever */
  uint64_t failovers;               /* times the group's leader became another node */
  /* The handshake cookie step (cookie.h). */
  uint64_t handshake_cookies_sent;     /* M1s answered with a challenge */
  uint64_t handshake_cookies_accepted; /* solved cookies that opened a handshake */
  uint64_t handshake_cookies_refused;  /* forged, expired, unsolved or replayed */
  uint64_t handshakes_pending;         /* handshakes past M1, not finished */
  bool handshake_cookie_step;          /* engaged now (under load), for everyone */
  uint64_t handshake_cookie_prefixes;  /* address prefixes on the step alone now */
  uint64_t output_queued;              /* bytes queued for sessions, all of them, now */
  uint64_t output_refused;             /* charges refused by the queued-output budget */
  uint64_t output_overruns;            /* sessions cut off for not reading their output */
  uint64_t memory_limit;               /* the configured ceiling, bytes */
} MetricsExtra;

/* Writes the super node's families: core counters (st), the group (g) and
 * the shell's (x; NULL reads as all zero). */
void metrics_fill_supernode(MetricsWriter *w, const SnStats *st, const SnGroupStatus *g,
                            const MetricsExtra *x);

/* --- the HTTP endpoint ---------------------------------------------------------- */

typedef struct Metrics Metrics;

/* Connections at once (a scraper or two need one each); the next one is
 * closed at once. */
#define METRICS_MAX_CONNS 16
/* A connection with no request for this long is closed. */
#define METRICS_IDLE_MS 10000

/* Called on each scrape, from ctx, to write the current values into w
 * (borrowed for the call). */
typedef void (*MetricsFillFn)(MetricsWriter *w, void *ud);

/* Serves http://host_port/metrics. host_port is "IPv4:PORT", "[IPv6]:PORT" or
 * "localhost:PORT" (both loopbacks); port 0 picks a free one (metrics_port).
 * ctx (borrowed; it must outlive the server) must be the thread-default
 * context of the thread that iterates it, as libsoup attaches its
 * per-connection sources to the thread-default context. ud is borrowed.
 * Returns NULL and sets *error on failure. */
Metrics *metrics_new(const char *host_port, GMainContext *ctx, MetricsFillFn fill, void *ud,
                     GError **error);

/* Closes the listeners and any open connections. NULL is a no-op. */
void metrics_free(Metrics *m);

/* The bound TCP port. */
uint16_t metrics_port(const Metrics *m);

/* Scrapes answered with 200. */
uint64_t metrics_scrapes(const Metrics *m);

/* Replaces METRICS_MAX_CONNS and METRICS_IDLE_MS (tests use small ones). */
void metrics_set_limits(Metrics *m, guint max_conns, guint idle_ms);
/* Connections open now; refused over the cap; closed for idling. */
guint metrics_connections(const Metrics *m);
uint64_t metrics_refused(const Metrics *m);
uint64_t metrics_idle_closed(const Metrics *m);

#endif
