/* control.c - JSON-lines control socket, server and client. */
#include "control.h"

#include <errno.h>
#include <stdio.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>
#include <sys/stat.h>

struct ControlServer {
  GSocketService *service;
  char *path;
  GMainContext *ctx;
  ControlHandler fn;
  void *ud;
};

struct ControlClient {
  GSocketConnection *conn;
  GDataInputStream *in;
  ControlServer *srv;
  gboolean finished;
};

static void client_free(ControlClient *cl)
{
  g_io_stream_close(G_IO_STREAM(cl->conn), NULL, NULL);
  g_object_unref(cl->in);
  g_object_unref(cl->conn);
  g_free(cl);
}

void control_send(ControlClient *cl, JsonObject *obj)
{
  JsonNode *node = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(node, obj);
  gchar *text = json_to_string(node, FALSE);
  json_node_unref(node);
  GOutputStream *out = g_io_stream_get_output_stream(G_IO_STREAM(cl->conn));
  /* Small lines to a local reader: a blocking write is bounded by the
   * socket buffer and the reader is the CLI waiting for exactly this. */
  if (g_output_stream_write_all(out, text, strlen(text), NULL, NULL, NULL))
    g_output_stream_write_all(out, "\n", 1, NULL, NULL, NULL);
  g_free(text);
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
  if (cl->finished)
    return;
  cl->finished = TRUE;
  client_free(cl);
}

gboolean control_client_gone(ControlClient *cl)
{
  GSocket *s = g_socket_connection_get_socket(cl->conn);
  return (g_socket_condition_check(s, G_IO_HUP | G_IO_ERR) & (G_IO_HUP | G_IO_ERR)) != 0;
}

static void on_line(GObject *src, GAsyncResult *res, gpointer ud)
{
  ControlClient *cl = ud;
  gsize len = 0;
  GError *err = NULL;
  gchar *line = g_data_input_stream_read_line_finish_utf8(cl->in, res, &len, &err);
  if (!line) {
    g_clear_error(&err);
    client_free(cl);
    return;
  }
  JsonParser *parser = json_parser_new();
  if (len > CONTROL_MAX_LINE || !json_parser_load_from_data(parser, line, (gssize)len, &err) ||
      !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
    control_fail(cl, "bad request: expected one JSON object");
  } else {
    JsonObject *req = json_node_get_object(json_parser_get_root(parser));
    cl->srv->fn(cl, req, cl->srv->ud);
  }
  g_clear_error(&err);
  g_object_unref(parser);
  g_free(line);
}

static gboolean on_incoming(GSocketService *svc, GSocketConnection *conn, GObject *src, gpointer ud)
{
  ControlServer *srv = ud;
  ControlClient *cl = g_new0(ControlClient, 1);
  cl->conn = g_object_ref(conn);
  cl->srv = srv;
  cl->in = g_data_input_stream_new(g_io_stream_get_input_stream(G_IO_STREAM(conn)));
  g_data_input_stream_read_line_async(cl->in, G_PRIORITY_DEFAULT, NULL, on_line, cl);
  return TRUE;
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
  if (!ok) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "cannot talk to the daemon: %s",
                err->message);
    goto out;
  }
  in = g_data_input_stream_new(g_io_stream_get_input_stream(G_IO_STREAM(conn)));
  gchar *line;
  gboolean done = FALSE;
  while ((line = g_data_input_stream_read_line_utf8(in, NULL, NULL, &err))) {
    JsonParser *p = json_parser_new();
    if (json_parser_load_from_data(p, line, -1, NULL) &&
        JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) {
      JsonObject *o = json_node_get_object(json_parser_get_root(p));
      if (json_object_has_member(o, "error")) {
        g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s",
                    json_object_get_string_member(o, "error"));
        ok = FALSE;
        done = TRUE;
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
  if (!done) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED,
                "daemon closed the control connection early%s%s", err ? ": " : "",
                err ? err->message : "");
    ok = FALSE;
  }
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
