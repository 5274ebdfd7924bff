/* control.h - the local control socket: one JSON object per line.
 *
 * A daemon listens on a Unix socket in its state dir (mode 0600: only its
 * user may drive it). A client sends one request line {"cmd": ..., ...}; the
 * daemon answers with zero or more lines and then closes. The last line of a
 * successful answer carries "done": true; an error answer is a single line
 * {"error": "..."}.
 */
#ifndef CANOPY_CONTROL_H
#define CANOPY_CONTROL_H

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#define CONTROL_SOCKET_NAME "control.sock"
#define CONTROL_MAX_LINE 65536

typedef struct ControlServer ControlServer;
typedef struct ControlClient ControlClient;

/* Called once per request. The handler owns one reference to cl and must
 * eventually call control_finish(cl) (now or later, e.g. when a search ends). */
typedef void (*ControlHandler)(ControlClient *cl, JsonObject *req, void *ud);

ControlServer *control_server_new(const char *path, GMainContext *ctx, ControlHandler fn, void *ud,
                                  GError **error);
void control_server_free(ControlServer *srv); /* removes the socket file */

/* Writes one line (takes ownership of obj). Errors (client gone) are ignored:
 * the request then just finishes. */
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
