/* control.c - JSON-lines control socket, server and client. */
#include "control.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>
#include <sys/stat.h>

struct ControlServer {
  GSocketService *service;
  char *path;
  GMainContext *ctx;
  ControlHandler fn;
  void *ud;
  ControlLimits lim;
  GList *clients; /* ControlClient*, those still connected */
  guint nclients;
  guint npending; /* of them, those that have not sent a whole request yet */
  gsize queued;   /* reply bytes queued for all clients */
  guint64 refused, dropped;
};

/* Two owners: the connection (until closed) and the handler (from the
 * request line until control_finish). Freed when neither is left. */
struct ControlClient {
  ControlServer *srv;      /* NULL once the server is gone */
  GSocketConnection *conn; /* NULL once closed */
  GSocket *sock;
  GSource *in_src, *out_src, *timer;
  GByteArray *in;  /* the request line so far */
  GByteArray *out; /* queued reply bytes, from out_off */
  gsize out_off;
  gboolean held;    /* the handler holds its reference */
  gboolean pending; /* connected, no complete request yet */
};

/* The client's request is in (or it is going): it leaves the pending
 * slots (CONTROL_MAX_PENDING). */
static void client_unpend(ControlClient *cl)
{
  if (cl->pending && cl->srv)
    cl->srv->npending--;
  cl->pending = FALSE;
}

static void drop_source(GSource **slot)
{
  if (*slot) {
    g_source_destroy(*slot);
    g_source_unref(*slot);
    *slot = NULL;
  }
}

/* Closes the connection; reason non-NULL: dropped on our decision. */
static void client_close(ControlClient *cl, const char *reason)
{
  if (!cl->conn)
    return;
  drop_source(&cl->in_src);
  drop_source(&cl->out_src);
  drop_source(&cl->timer);
  if (cl->srv)
    cl->srv->queued -= cl->out->len - cl->out_off;
  g_byte_array_set_size(cl->out, 0);
  cl->out_off = 0;
  g_io_stream_close(G_IO_STREAM(cl->conn), NULL, NULL);
  g_clear_object(&cl->conn);
  cl->sock = NULL;
  client_unpend(cl);
  if (cl->srv) {
    cl->srv->clients = g_list_remove(cl->srv->clients, cl);
    cl->srv->nclients--;
    if (reason) {
      cl->srv->dropped++;
      g_debug("control client dropped: %s", reason);
    }
  }
}

static void client_release(ControlClient *cl)
{
  if (cl->held || cl->conn)
    return;
  g_byte_array_unref(cl->in);
  g_byte_array_unref(cl->out);
  g_free(cl);
}

static gboolean on_timer(gpointer ud)
{
  ControlClient *cl = ud;
  client_close(cl,
               cl->held || cl->out->len ? "it does not read its reply" : "no request line in time");
  client_release(cl);
  return G_SOURCE_REMOVE; /* client_close destroyed it already */
}

/* The one timer slot: the request deadline, then the stall deadline. */
static void arm_timer(ControlClient *cl, guint ms)
{
  drop_source(&cl->timer);
  cl->timer = g_timeout_source_new(ms);
  g_source_set_callback(cl->timer, on_timer, cl, NULL);
  g_source_attach(cl->timer, cl->srv ? cl->srv->ctx : NULL);
}

static gboolean on_writable(GSocket *s, GIOCondition cond, gpointer ud);

/* Writes what the socket takes now. May free cl when the handler is done
 * and the reply fully written. */
static void flush(ControlClient *cl)
{
  gboolean progress = FALSE;
  while (cl->conn && cl->out_off < cl->out->len) {
    GError *err = NULL;
    gssize n = g_socket_send(cl->sock, (const gchar *)cl->out->data + cl->out_off,
                             cl->out->len - cl->out_off, NULL, &err);
    if (n < 0) {
      gboolean again = g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
      g_error_free(err);
      if (!again) {
        client_close(cl, NULL); /* the client hung up */
        break;
      }
      if (!cl->out_src) {
        cl->out_src = g_socket_create_source(cl->sock, G_IO_OUT, NULL);
        g_source_set_callback(cl->out_src, G_SOURCE_FUNC(on_writable), cl, NULL);
        g_source_attach(cl->out_src, cl->srv ? cl->srv->ctx : NULL);
      }
      if (progress || !cl->timer)
        arm_timer(cl, cl->srv ? cl->srv->lim.stall_ms : CONTROL_STALL_MS);
      return;
    }
    cl->out_off += (gsize)n;
    if (cl->srv)
      cl->srv->queued -= (gsize)n;
    progress = TRUE;
  }
  g_byte_array_set_size(cl->out, 0);
  cl->out_off = 0;
  drop_source(&cl->out_src);
  drop_source(&cl->timer);
  if (!cl->held) {
    client_close(cl, NULL);
    client_release(cl);
  }
}

static gboolean on_writable(GSocket *s, GIOCondition cond, gpointer ud)
{
  (void)s;
  (void)cond;
  ControlClient *cl = ud;
  /* flush() re-creates the source if it must wait again. */
  g_source_unref(cl->out_src);
  cl->out_src = NULL;
  flush(cl);
  return G_SOURCE_REMOVE;
}

void control_send(ControlClient *cl, JsonObject *obj)
{
  JsonNode *node = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(node, obj);
  if (!cl->conn) {
    json_node_unref(node);
    return;
  }
  gsize len;
  gchar *text = json_to_string(node, FALSE);
  json_node_unref(node);
  len = strlen(text);
  gsize max = cl->srv ? cl->srv->lim.max_output : CONTROL_MAX_OUTPUT;
  gsize total = cl->srv ? cl->srv->lim.max_output_total : CONTROL_MAX_OUTPUT_TOTAL;
  gsize queued = cl->srv ? cl->srv->queued : 0;
  if (cl->out->len - cl->out_off + len + 1 > max || queued + len + 1 > total) {
    /* A reader this far behind is not reading: it must not make the
     * daemon hold more for it (nor, all of them together, for all). */
    client_close(cl, "reply queue over its cap");
    g_free(text);
    return;
  }
  if (cl->srv)
    cl->srv->queued += len + 1;
  g_byte_array_append(cl->out, (const guint8 *)text, (guint)len);
  g_byte_array_append(cl->out, (const guint8 *)"\n", 1);
  g_free(text);
  flush(cl);
}

void control_fail(ControlClient *cl, const char *msg)
{
  JsonObject *o = json_object_new();
  json_object_set_string_member(o, "error", msg);
  control_send(cl, o);
  control_finish(cl);
}

void control_finish(ControlClient *cl)
{
  if (!cl->held)
    return;
  cl->held = FALSE;
  if (!cl->conn || cl->out_off >= cl->out->len) {
    client_close(cl, NULL);
    client_release(cl);
  }
  /* else: flush() closes it once the reply is out, or the stall timer. */
}

gboolean control_client_gone(ControlClient *cl)
{
  if (!cl->conn)
    return TRUE;
  return (g_socket_condition_check(cl->sock, G_IO_HUP | G_IO_ERR) & (G_IO_HUP | G_IO_ERR)) != 0;
}

/* A complete request line (or what came before EOF): hand it over. */
static void dispatch(ControlClient *cl, gsize len)
{
  client_unpend(cl);
  drop_source(&cl->in_src);
  drop_source(&cl->timer);
  cl->held = TRUE;
  const char *why;
  JsonObject *req = control_request_parse((const char *)cl->in->data, len, &why);
  if (!req) {
    control_fail(cl, why);
    return;
  }
  cl->srv->fn(cl, req, cl->srv->ud); /* may free cl */
  json_object_unref(req);
}

static gboolean on_readable(GSocket *s, GIOCondition cond, gpointer ud)
{
  (void)cond;
  ControlClient *cl = ud;
  /* Room for the longest line and its "\r\n": one byte more means too long. */
  guint8 buf[4096];
  gsize room = CONTROL_MAX_LINE + 3 - cl->in->len;
  GError *err = NULL;
  gssize n = g_socket_receive(s, (gchar *)buf, MIN(sizeof buf, room), NULL, &err);
  if (n < 0) {
    gboolean again = g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
    g_error_free(err);
    if (again)
      return G_SOURCE_CONTINUE;
    client_close(cl, NULL);
    client_release(cl);
    return G_SOURCE_REMOVE;
  }
  if (n == 0) {
    /* EOF: a last line without its newline still counts. */
    if (cl->in->len > 0 && cl->srv)
      dispatch(cl, cl->in->len);
    else {
      client_close(cl, NULL);
      client_release(cl);
    }
    return G_SOURCE_REMOVE;
  }
  gsize old = cl->in->len;
  g_byte_array_append(cl->in, buf, (guint)n);
  const guint8 *nl = memchr(cl->in->data + old, '\n', (gsize)n);
  if (nl) {
    dispatch(cl, (gsize)(nl - cl->in->data));
    return G_SOURCE_REMOVE;
  }
  if (cl->in->len > CONTROL_MAX_LINE + 1) {
    client_unpend(cl);
    drop_source(&cl->in_src);
    cl->held = TRUE;
    cl->srv->dropped++;
    control_fail(cl, "bad request: line longer than " G_STRINGIFY(CONTROL_MAX_LINE) " bytes");
    return G_SOURCE_REMOVE;
  }
  return G_SOURCE_CONTINUE;
}

static gboolean on_incoming(GSocketService *svc, GSocketConnection *conn, GObject *src, gpointer ud)
{
  (void)svc;
  (void)src;
  ControlServer *srv = ud;
  GSocket *sock = g_socket_connection_get_socket(conn);
  g_socket_set_blocking(sock, FALSE);
  guint max_pending = srv->lim.max_pending ? srv->lim.max_pending : srv->lim.max_clients;
  if (srv->nclients >= srv->lim.max_clients || srv->npending >= max_pending) {
    static const char busy[] = "{\"error\":\"too many control clients\"}\n";
    srv->refused++;
    g_debug("control client refused: %u at once, %u without a request", srv->nclients,
            srv->npending);
    g_socket_send(sock, busy, sizeof busy - 1, NULL, NULL); /* best effort */
    g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
    return TRUE;
  }
  ControlClient *cl = g_new0(ControlClient, 1);
  cl->conn = g_object_ref(conn);
  cl->sock = sock;
  cl->srv = srv;
  cl->in = g_byte_array_new();
  cl->out = g_byte_array_new();
  srv->clients = g_list_prepend(srv->clients, cl);
  srv->nclients++;
  cl->pending = TRUE;
  srv->npending++;
  cl->in_src = g_socket_create_source(sock, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
  g_source_set_callback(cl->in_src, G_SOURCE_FUNC(on_readable), cl, NULL);
  g_source_attach(cl->in_src, srv->ctx);
  arm_timer(cl, srv->lim.request_ms);
  return TRUE;
}

void control_server_set_limits(ControlServer *srv, const ControlLimits *lim)
{
  srv->lim = *lim;
}

guint64 control_server_refused(const ControlServer *srv)
{
  return srv->refused;
}

guint64 control_server_dropped(const ControlServer *srv)
{
  return srv->dropped;
}

ControlServer *control_server_new(const char *path, GMainContext *ctx, ControlHandler fn, void *ud,
                                  GError **error)
{
  /* A socket file left by a killed daemon would make bind fail: if nobody
   * answers on it, it is stale. */
  if (g_file_test(path, G_FILE_TEST_EXISTS)) {
    GSocketClient *probe = g_socket_client_new();
    g_socket_client_set_enable_proxy(probe, FALSE);
    GSocketAddress *a = g_unix_socket_address_new(path);
    GSocketConnection *c = g_socket_client_connect(probe, G_SOCKET_CONNECTABLE(a), NULL, NULL);
    g_object_unref(a);
    g_object_unref(probe);
    if (c) {
      g_object_unref(c);
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE,
                  "another daemon is already running on this state dir (%s answers)", path);
      return NULL;
    }
    g_unlink(path);
  }
  ControlServer *srv = g_new0(ControlServer, 1);
  srv->path = g_strdup(path);
  srv->ctx = ctx;
  srv->fn = fn;
  srv->ud = ud;
  srv->lim = (ControlLimits){.max_clients = CONTROL_MAX_CLIENTS,
                             .max_pending = CONTROL_MAX_PENDING,
                             .max_output = CONTROL_MAX_OUTPUT,
                             .max_output_total = CONTROL_MAX_OUTPUT_TOTAL,
                             .request_ms = CONTROL_REQUEST_MS,
                             .stall_ms = CONTROL_STALL_MS};
  srv->service = g_socket_service_new();
  GSocketAddress *addr = g_unix_socket_address_new(path);
  mode_t old = umask(077); /* the socket file is created 0600 */
  gboolean ok =
      g_socket_listener_add_address(G_SOCKET_LISTENER(srv->service), addr, G_SOCKET_TYPE_STREAM,
                                    G_SOCKET_PROTOCOL_DEFAULT, NULL, NULL, error);
  umask(old);
  if (ok)
    g_chmod(path, 0600);
  g_object_unref(addr);
  if (!ok) {
    g_object_unref(srv->service);
    g_free(srv->path);
    g_free(srv);
    return NULL;
  }
  g_signal_connect(srv->service, "incoming", G_CALLBACK(on_incoming), srv);
  g_socket_service_start(srv->service);
  return srv;
}

void control_server_free(ControlServer *srv)
{
  if (!srv)
    return;
  g_socket_service_stop(srv->service);
  g_socket_listener_close(G_SOCKET_LISTENER(srv->service));
  while (srv->clients) {
    ControlClient *cl = srv->clients->data;
    client_close(cl, NULL); /* unlinks it */
    cl->srv = NULL;
    client_release(cl); /* a handler still holding it frees it at the end */
  }
  g_object_unref(srv->service);
  g_unlink(srv->path);
  g_free(srv->path);
  g_free(srv);
}

gboolean control_call(const char *state_dir, JsonObject *req, ControlLineFn fn, void *ud,
                      guint timeout_s, GError **error)
{
  gchar *path = g_build_filename(state_dir, CONTROL_SOCKET_NAME, NULL);
  GSocketClient *client = g_socket_client_new();
  g_socket_client_set_enable_proxy(client, FALSE);
  g_socket_client_set_timeout(client, timeout_s);
  GSocketAddress *addr = g_unix_socket_address_new(path);
  GError *err = NULL;
  gboolean ok = FALSE;
  GDataInputStream *in = NULL;
  GSocketConnection *conn = g_socket_client_connect(client, G_SOCKET_CONNECTABLE(addr), NULL, &err);
  if (!conn) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED,
                "daemon not running for state dir %s (cannot connect to %s: %s)", state_dir, path,
                err->message);
    goto out;
  }
  JsonNode *node = json_node_new(JSON_NODE_OBJECT);
  json_node_set_object(node, req);
  gchar *text = json_to_string(node, FALSE);
  json_node_unref(node);
  GOutputStream *os = g_io_stream_get_output_stream(G_IO_STREAM(conn));
  ok = g_output_stream_write_all(os, text, strlen(text), NULL, NULL, &err) &&
       g_output_stream_write_all(os, "\n", 1, NULL, NULL, &err);
  g_free(text);
  GError *write_err = NULL;
  if (!ok) {
    /* A daemon that refused us (too many clients) said why before it
     * closed: read that rather than report the broken pipe. */
    write_err = err;
    err = NULL;
  }
  in = g_data_input_stream_new(g_io_stream_get_input_stream(G_IO_STREAM(conn)));
  gchar *line;
  gboolean done = FALSE, refused = FALSE;
  while ((line = g_data_input_stream_read_line_utf8(in, NULL, NULL, &err))) {
    JsonParser *p = json_parser_new();
    if (json_parser_load_from_data(p, line, -1, NULL) &&
        JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
      JsonObject *o = json_node_get_object(json_parser_get_root(p));
      if (json_object_has_member(o, "error")) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s",
                    json_object_get_string_member(o, "error"));
        ok = FALSE;
        done = refused = TRUE;
      } else {
        if (json_object_get_boolean_member_with_default(o, "done", FALSE))
          done = TRUE;
        fn(o, ud);
      }
    }
    g_object_unref(p);
    g_free(line);
    if (done)
      break;
  }
  if (!done && write_err) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot talk to the daemon: %s",
                write_err->message);
    ok = FALSE;
  } else if (done && !refused) {
    ok = TRUE;
  } else if (!done) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                "daemon closed the control connection early%s%s", err ? ": " : "",
                err ? err->message : "");
    ok = FALSE;
  }
  g_clear_error(&write_err);
out:
  g_clear_error(&err);
  g_clear_object(&in);
  g_clear_object(&conn);
  g_object_unref(addr);
  g_object_unref(client);
  g_free(path);
  return ok;
}

void control_print(JsonObject *o, gboolean json)
{
  json_object_remove_member(o, "done");
  if (json) {
    JsonNode *n = json_node_new(JSON_NODE_OBJECT);
    json_node_set_object(n, o);
    gchar *text = json_to_string(n, FALSE);
    printf("%s\n", text);
    fflush(stdout);
    g_free(text);
    json_node_unref(n);
    return;
  }
  GList *members = json_object_get_members(o);
  for (GList *m = members; m; m = m->next) {
    JsonNode *v = json_object_get_member(o, m->data);
    if (JSON_NODE_HOLDS_ARRAY(v)) {
      JsonArray *arr = json_node_get_array(v);
      for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonNode *e = json_array_get_element(arr, i);
        gchar *text = json_to_string(e, FALSE);
        printf("%-20s %s\n", (const char *)m->data, text);
        g_free(text);
      }
      continue;
    }
    gchar *text = JSON_NODE_HOLDS_VALUE(v) && json_node_get_value_type(v) == G_TYPE_STRING
                      ? g_strdup(json_node_get_string(v))
                      : json_to_string(v, FALSE);
    printf("%-20s %s\n", (const char *)m->data, text);
    g_free(text);
  }
  g_list_free(members);
}

static void show_line(JsonObject *o, void *ud)
{
  control_print(o, *(gboolean *)ud);
}

int control_show(const char *prog, const char *cmd, const char *summary, int argc, char **argv)
{
  gchar *state_dir = NULL;
  gboolean json = FALSE;
  GOptionEntry entries[] = {{"state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir,
                             "State directory of the daemon", "DIR"},
                            {"json", 0, 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL},
                            {NULL, 0, 0, 0, NULL, NULL, NULL}};
  GOptionContext *oc = g_option_context_new(summary);
  g_option_context_add_main_entries(oc, entries, NULL);
  GError *err = NULL;
  int rc = 2;
  if (!g_option_context_parse(oc, &argc, &argv, &err) || !state_dir) {
    fprintf(stderr, "%s: %s\n", prog, err ? err->message : "--state-dir is required");
    goto out;
  }
  JsonObject *req = json_object_new();
  json_object_set_string_member(req, "cmd", cmd);
  gboolean ok = control_call(state_dir, req, show_line, &json, 5, &err);
  json_object_unref(req);
  rc = ok ? 0 : 1;
  if (!ok)
    fprintf(stderr, "%s: %s\n", prog, err->message);
out:
  g_clear_error(&err);
  g_option_context_free(oc);
  g_free(state_dir);
  return rc;
}
