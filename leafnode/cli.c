/* cli.c - leaf commands: ask the running daemon over its control socket. */
#include "cli.h"

#include <json-glib/json-glib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <unistd.h>

#include "control.h"

static void human_size(uint64_t n, char *out, size_t len)
{
  const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  g_snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

typedef struct {
  gboolean json;
  unsigned hits;
} SearchOut;

static void on_search_line(JsonObject *o, void *ud)
{
  SearchOut *so = ud;
  if (json_object_get_boolean_member_with_default(o, "done", FALSE)) {
    if (!so->json)
      printf("%u hit%s\n", so->hits, so->hits == 1 ? "" : "s");
    return;
  }
  so->hits++;
  if (so->json) {
    control_print(o, TRUE);
    return;
  }
  char size[32];
  human_size((uint64_t)json_object_get_int_member(o, "size"), size, sizeof size);
  printf("%-40s %10s  %.16s  from %.16s\n", json_object_get_string_member(o, "name"), size,
         json_object_get_string_member(o, "content_id"), json_object_get_string_member(o, "peer"));
  fflush(stdout);
}

int cli_search(int argc, char **argv)
{
  gchar *state_dir = NULL;
  gint ttl = 4, wait_ms = 1500, limit = 0;
  gboolean json = FALSE, by_cid = FALSE;
  gchar **terms = NULL;
  GOptionEntry entries[] = {
      {"state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, "State directory of the leaf daemon",
       "DIR"},
      {"ttl", 0, 0, G_OPTION_ARG_INT, &ttl,
       "Super-node hops beyond the leaf's own super node (0..7, default 4)", "N"},
      {"wait", 0, 0, G_OPTION_ARG_INT, &wait_ms, "How long to collect hits (default 1500)", "MS"},
      {"limit", 0, 0, G_OPTION_ARG_INT, &limit, "Stop after N hits (default: wait the full time)",
       "N"},
      {"content-id", 0, 0, G_OPTION_ARG_NONE, &by_cid, "TERMS is one content id (hex)", NULL},
      {"json", 0, 0, G_OPTION_ARG_NONE, &json,
       "One JSON object per hit: name, size, content_id, peer", NULL},
      {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &terms, NULL, "TERMS..."},
      {NULL}};
  GOptionContext *oc = g_option_context_new("TERMS... - search the overlay");
  g_option_context_set_description(
      oc, "Example:\n  canopy-leaf search --state-dir ~/.canopy --ttl 3 abbey road\n");
  g_option_context_add_main_entries(oc, entries, NULL);
  GError *err = NULL;
  int rc = 2;
  if (!g_option_context_parse(oc, &argc, &argv, &err)) {
    fprintf(stderr, "canopy-leaf search: %s\n", err->message);
    goto out;
  }
  if (!state_dir || !terms || !terms[0]) {
    fprintf(stderr, "canopy-leaf search: --state-dir and at least one search term are required\n");
    goto out;
  }
  if (ttl < 0 || ttl > 7 || wait_ms < 0 || wait_ms > 60000 || limit < 0) {
    fprintf(stderr, "canopy-leaf search: --ttl 0..7, --wait 0..60000, --limit >= 0\n");
    goto out;
  }
  gchar *text = g_strjoinv(" ", terms);
  JsonObject *req = json_object_new();
  json_object_set_string_member(req, "cmd", "search");
  json_object_set_string_member(req, "text", text);
  json_object_set_string_member(req, "kind", by_cid ? "content_id" : "keywords");
  json_object_set_int_member(req, "ttl", ttl);
  json_object_set_int_member(req, "wait_ms", wait_ms);
  json_object_set_int_member(req, "limit", limit);
  g_free(text);
  SearchOut so = {json, 0};
  gboolean ok =
      control_call(state_dir, req, on_search_line, &so, (guint)(wait_ms / 1000 + 10), &err);
  json_object_unref(req);
  if (!ok) {
    fprintf(stderr, "canopy-leaf search: %s\n", err->message);
    rc = 1;
    goto out;
  }
  rc = 0;
out:
  g_clear_error(&err);
  g_option_context_free(oc);
  g_free(state_dir);
  g_strfreev(terms);
  return rc;
}

int cli_status(int argc, char **argv)
{
  return control_show("canopy-leaf status", "status", "- show the leaf daemon's state", argc, argv);
}

typedef struct {
  gboolean json;
  gboolean tty;
  gint64 last_line_us;
  JsonObject *result;
} GetOut;

static void on_get_line(JsonObject *o, void *ud)
{
  GetOut *g = ud;
  if (json_object_get_boolean_member_with_default(o, "done", FALSE)) {
    g->result = json_object_ref(o);
    return;
  }
  if (json_object_has_member(o, "source")) {
    if (!g->json)
      fprintf(g->tty ? stderr : stdout, "%ssource %.16s… linked %s (%s)\n",
              g->tty ? "\r\033[K" : "", json_object_get_string_member(o, "source"),
              json_object_get_string_member(o, "path_type"),
              json_object_get_string_member(o, "path"));
    return;
  }
  if (g->json || !json_object_has_member(o, "progress"))
    return;
  gint64 done = json_object_get_int_member(o, "progress");
  gint64 total = json_object_get_int_member(o, "total");
  double pct = total > 0 ? 100.0 * (double)done / (double)total : 100.0;
  char a[32], b[32];
  human_size((uint64_t)done, a, sizeof a);
  human_size((uint64_t)total, b, sizeof b);
  if (g->tty) {
    int width = 30, fill = (int)(pct * width / 100.0);
    fprintf(stderr, "\r\033[K[%.*s%*s] %5.1f%%  %s / %s  %" G_GINT64_FORMAT " source(s)", fill,
            "##############################", width - fill, "", pct, a, b,
            json_object_get_int_member(o, "sources"));
    fflush(stderr);
  } else {
    /* Plain lines for logs and pipes: at most one every 2 s. */
    gint64 now = g_get_monotonic_time();
    if (now - g->last_line_us < 2 * G_USEC_PER_SEC)
      return;
    g->last_line_us = now;
    printf("progress %.1f%% (%s of %s)\n", pct, a, b);
    fflush(stdout);
  }
}

int cli_get(int argc, char **argv)
{
  gchar *state_dir = NULL, *output = NULL;
  gboolean json = FALSE, force = FALSE;
  gchar **rest = NULL;
  GOptionEntry entries[] = {
      {"state-dir", 0, 0, G_OPTION_ARG_FILENAME, &state_dir, "State directory of the leaf daemon",
       "DIR"},
      {"output", 'o', 0, G_OPTION_ARG_FILENAME, &output,
       "Where to put the file (default: the download dir)", "PATH"},
      {"force", 0, 0, G_OPTION_ARG_NONE, &force, "Overwrite an existing file", NULL},
      {"json", 0, 0, G_OPTION_ARG_NONE, &json,
       "Last line: {path, bytes, content_id, sources: [{peer, bytes, path_type}]}", NULL},
      {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &rest, NULL, "CONTENT_ID"},
      {NULL}};
  GOptionContext *oc = g_option_context_new("CONTENT_ID - download a file found by search");
  g_option_context_set_description(
      oc, "Example:\n  canopy-leaf search --state-dir ~/.canopy --json abbey road\n"
          "  canopy-leaf get --state-dir ~/.canopy 5648cca708aec4ae... -o ~/Music/abbey.flac\n");
  g_option_context_add_main_entries(oc, entries, NULL);
  GError *err = NULL;
  int rc = 2;
  GetOut g = {json, isatty(STDERR_FILENO) && !json, 0, NULL};
  if (!g_option_context_parse(oc, &argc, &argv, &err)) {
    fprintf(stderr, "canopy-leaf get: %s\n", err->message);
    goto out;
  }
  if (!state_dir || !rest || !rest[0] || rest[1]) {
    fprintf(stderr, "canopy-leaf get: --state-dir and one content id are required\n");
    goto out;
  }
  JsonObject *req = json_object_new();
  json_object_set_string_member(req, "cmd", "get");
  json_object_set_string_member(req, "content_id", rest[0]);
  if (output) {
    gchar *cwd = g_get_current_dir();
    gchar *abs =
        g_path_is_absolute(output) ? g_strdup(output) : g_build_filename(cwd, output, NULL);
    json_object_set_string_member(req, "output", abs);
    g_free(abs);
    g_free(cwd);
  }
  json_object_set_boolean_member(req, "force", force);
  gboolean ok = control_call(state_dir, req, on_get_line, &g, 24 * 3600, &err);
  json_object_unref(req);
  if (g.tty)
    fprintf(stderr, "\r\033[K");
  if (!ok) {
    fprintf(stderr, "canopy-leaf get: %s\n", err->message);
    rc = 1;
    goto out;
  }
  if (json) {
    control_print(g.result, TRUE);
  } else {
    char size[32];
    human_size((uint64_t)json_object_get_int_member(g.result, "bytes"), size, sizeof size);
    printf("saved %s (%s, verified)\n", json_object_get_string_member(g.result, "path"), size);
    JsonArray *src = json_object_get_array_member(g.result, "sources");
    for (guint i = 0; src && i < json_array_get_length(src); i++) {
      JsonObject *s = json_array_get_object_element(src, i);
      char b[32];
      human_size((uint64_t)json_object_get_int_member(s, "bytes"), b, sizeof b);
      printf("  from %.16s…  %10s  %s (%s)\n", json_object_get_string_member(s, "peer"), b,
             json_object_get_string_member(s, "path_type"),
             json_object_get_string_member(s, "path"));
    }
  }
  rc = 0;
out:
  if (g.result)
    json_object_unref(g.result);
  g_clear_error(&err);
  g_option_context_free(oc);
  g_free(state_dir);
  g_free(output);
  g_strfreev(rest);
  return rc;
}
