/* control.h - the local control socket: one JSON object per line.
 *
 * A daemon listens on a Unix socket in its state dir (mode 0600: only its
 * user may drive it). A client sends one request line {"cmd": ..., ...}; the
 * daemon answers with zero or more lines and then closes. The last line of a
 * successful answer carries "done": true; an error answer is a single line
 * {"error": "..."}.
 *
 * The server never blocks on a client: replies are queued (at most
 * CONTROL_MAX_OUTPUT bytes per client, CONTROL_MAX_OUTPUT_TOTAL for all)
 * and written as the client reads; a
 * client whose queue overflows, or that reads nothing of a pending reply
 * for CONTROL_STALL_MS, is dropped. A request line longer than
 * CONTROL_MAX_LINE gets an error; a client that sends no complete line
 * within CONTROL_REQUEST_MS is dropped. Past CONTROL_MAX_PENDING clients
 * that have not yet sent a complete request, or CONTROL_MAX_CLIENTS in all
 * (those being answered included: a `canopy-leaf get` follows its download
 * for as long as it runs), a new client is told "too many control clients"
 * and closed. So long-lived followers do not lock `status` out, and silent
 * connections still cannot take more than the pending slots.
 */
#ifndef CANOPY_CONTROL_H
#define CANOPY_CONTROL_H

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "control_request.h"

#define CONTROL_SOCKET_NAME "control.sock"
#define CONTROL_MAX_PENDING 32               /* connections without a request yet */
#define CONTROL_MAX_CLIENTS 256              /* control connections at once, in all */
#define CONTROL_MAX_OUTPUT (4u << 20)        /* queued reply bytes per client */
#define CONTROL_MAX_OUTPUT_TOTAL (16u << 20) /* ... and for all clients */
#define CONTROL_REQUEST_MS 10000             /* to send the request line */
#define CONTROL_STALL_MS 10000               /* a pending reply read not at all */

typedef struct {
  guint max_clients;
  guint max_pending; /* 0: max_clients */
  gsize max_output;
  gsize max_output_total;
  guint request_ms;
  guint stall_ms;
} ControlLimits;

typedef struct ControlServer ControlServer;
typedef struct ControlClient ControlClient;

/* Called once per request. The handler owns one reference to cl and must
 * eventually call control_finish(cl) (now or later, e.g. when a search ends). */
typedef void (*ControlHandler)(ControlClient *cl, JsonObject *req, void *ud);

ControlServer *control_server_new(const char *path, GMainContext *ctx, ControlHandler fn, void *ud,
                                  GError **error);
void control_server_free(ControlServer *srv); /* removes the socket file */
/* Replaces the CONTROL_* defaults (tests use small ones). */
void control_server_set_limits(ControlServer *srv, const ControlLimits *lim);
/* Clients refused over the cap; clients dropped (overflow, stall, silence,
 * over-long line). */
guint64 control_server_refused(const ControlServer *srv);
guint64 control_server_dropped(const ControlServer *srv);

/* Queues one line (takes ownership of obj) and writes what the socket takes
 * now, without blocking. Errors (client gone or dropped) are ignored: the
 * request then just finishes. */
void control_send(ControlClient *cl, JsonObject *obj);
/* Sends {"error": msg} and finishes. */
void control_fail(ControlClient *cl, const char *msg);
/* Closes the client and drops the handler's reference. */
void control_finish(ControlClient *cl);
/* True if the client hung up (a long request may stop early). */
gboolean control_client_gone(ControlClient *cl);

/* Client side: sends req (not consumed) to the daemon whose state dir is
 * state_dir, and calls fn for every answer line until the daemon closes.
 * Returns FALSE with a message a person can act on when the daemon is not
 * running or answers with an error. */
typedef void (*ControlLineFn)(JsonObject *line, void *ud);
gboolean control_call(const char *state_dir, JsonObject *req, ControlLineFn fn, void *ud,
                      guint timeout_s, GError **error);

/* Prints one answer object: as one JSON line, or as "key value" lines for
 * people (arrays of objects one element per line). */
void control_print(JsonObject *o, gboolean json);

/* The whole of a "show me your state" command (`canopy-leaf status`,
 * `canopy-supernode stats`): parses --state-dir and --json from argv, sends
 * {"cmd": cmd}, prints the answer. Returns the exit code (0, 1 daemon
 * unreachable or error, 2 usage). */
int control_show(const char *prog, const char *cmd, const char *summary, int argc, char **argv);

#endif
