/* cli.c - leaf commands: ask the running daemon over its control socket.
 *
 * Every command takes --state-dir (default: the user unit's, ~/.config/
 * canopy-leaf), --json and --help, and exits with one of CLI_EXIT_*: 0 done,
 * 1 the daemon said the operation failed, 2 a bad command line, 3 no daemon
 * answers. Progress (hashing, downloads) is a bar on a terminal and a plain
 * line at most every 2 s otherwise; --json prints only the result.
 */
#include "cli.h"

#include <errno.h>
#include <json-glib/json-glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "control.h"
#include "safename.h"

#define PLAIN_EVERY_US (2 * G_USEC_PER_SEC)

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

static void human_rate(double bps, char *out, size_t len)
{
  if (bps < 1) {
    g_strlcpy(out, "-", len);
    return;
  }
  char s[32];
  human_size((uint64_t)bps, s, sizeof s);
  g_snprintf(out, len, "%s/s", s);
}

static double percent(gint64 done, gint64 total)
{
  return total > 0 ? 100.0 * (double)done / (double)total : 100.0;
}

/* A 30-column bar: "[#########.....]". */
static void bar(double pct, char *out, size_t len)
{
  int width = 30, fill = (int)(pct * width / 100.0);
  fill = CLAMP(fill, 0, width);
  g_snprintf(out, len, "[%.*s%*s]", fill, "##############################", width - fill, "");
}

static gint64 member_int(JsonObject *o, const char *key)
{
  return json_object_get_int_member_with_default(o, key, 0);
}

static const char *member_str(JsonObject *o, const char *key, const char *def)
{
  JsonNode *n = json_object_get_member(o, key);
  if (!n || JSON_NODE_TYPE(n) != JSON_NODE_VALUE || json_node_get_value_type(n) != G_TYPE_STRING)
    return def;
  return json_node_get_string(n);
}

/* --- what every command shares --------------------------------------------------- */

typedef struct {
  const char *prog; /* "canopy-leaf share add", for messages */
  gchar *state_dir;
  gboolean json;
  GOptionContext *oc;
} Cmd;

/* The user unit's state dir: what --state-dir defaults to. */
static gchar *default_state_dir(void)
{
  return g_build_filename(g_get_user_config_dir(), "canopy-leaf", NULL);
}

/* Sets up the command's options: --state-dir and --json, then extra. */
static void cmd_init(Cmd *c, const char *prog, const char *params, const char *summary,
                     const char *examples, const char *json_help, const GOptionEntry *extra)
{
  memset(c, 0, sizeof *c);
  c->prog = prog;
  GOptionEntry common[] = {
      {"state-dir", 0, 0, G_OPTION_ARG_FILENAME, &c->state_dir,
       "State directory of the leaf daemon (default: ~/.config/canopy-leaf, the user unit's)",
       "DIR"},
      {"json", 0, 0, G_OPTION_ARG_NONE, &c->json, json_help, NULL},
      {NULL, 0, 0, 0, NULL, NULL, NULL}};
  /* The usage line names the command, not argv[0] (its last word). */
  g_set_prgname(prog);
  c->oc = g_option_context_new(params);
  g_option_context_set_summary(c->oc, summary);
  gchar *desc = g_strdup_printf("Examples:\n%s\n\nExit status: 0 done, 1 the operation failed, 2 "
                                "bad usage, 3 the daemon is not running.\nSee canopy-leaf(1).",
                                examples);
  g_option_context_set_description(c->oc, desc);
  g_free(desc);
  g_option_context_add_main_entries(c->oc, common, NULL);
  if (extra)
    g_option_context_add_main_entries(c->oc, extra, NULL);
}

/* Parses argv; CLI_EXIT_OK or CLI_EXIT_USAGE (printed). */
static int cmd_parse(Cmd *c, int *argc, char ***argv)
{
  GError *err = NULL;
  if (!g_option_context_parse(c->oc, argc, argv, &err)) {
    char *m = name_escape_for_terminal(err->message, strlen(err->message));
    fprintf(stderr, "%s: %s (see --help)\n", c->prog, m ? m : "?");
    free(m);
    g_error_free(err);
    return CLI_EXIT_USAGE;
  }
  if (!c->state_dir)
    c->state_dir = default_state_dir();
  return CLI_EXIT_OK;
}

static void cmd_clear(Cmd *c)
{
  g_option_context_free(c->oc);
  g_free(c->state_dir);
}

static int usage(const Cmd *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static int usage(const Cmd *c, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  gchar *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s: %s (see --help)\n", c->prog, msg);
  g_free(msg);
  return CLI_EXIT_USAGE;
}

/* Sends req and feeds the answer lines to fn; prints a failure. Returns
 * CLI_EXIT_OK, CLI_EXIT_FAILED or CLI_EXIT_NO_DAEMON. */
static int cmd_call(const Cmd *c, JsonObject *req, ControlLineFn fn, void *ud, guint timeout_s)
{
  GError *err = NULL;
  if (control_call(c->state_dir, req, fn, ud, timeout_s, &err))
    return CLI_EXIT_OK;
  int rc = CLI_EXIT_FAILED;
  /* The daemon's error may hold a peer's words (a refusal's text, a
   * name): escaped like every name from the network (safename.h). */
  char *m = name_escape_for_terminal(err->message, strlen(err->message));
  if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NOT_CONNECTED)) {
    rc = CLI_EXIT_NO_DAEMON;
    fprintf(stderr,
            "%s: %s\n  start it (systemctl --user start canopy-leaf, or canopy-leaf --config "
            "FILE), or name its state dir with --state-dir\n",
            c->prog, m ? m : "?");
  } else {
    fprintf(stderr, "%s: %s\n", c->prog, m ? m : "?");
  }
  free(m);
  g_error_free(err);
  return rc;
}

/* Keeps the answer's last line (the one with "done"). */
static void keep_last(JsonObject *o, void *ud)
{
  JsonObject **last = ud;
  if (*last)
    json_object_unref(*last);
  *last = json_object_ref(o);
}

/* A request with no streamed lines: the answer object, or NULL (rc says). */
static JsonObject *ask(const Cmd *c, JsonObject *req, int *rc)
{
  JsonObject *last = NULL;
  *rc = cmd_call(c, req, keep_last, &last, 10);
  json_object_unref(req);
  if (*rc != CLI_EXIT_OK && last) {
    json_object_unref(last);
    last = NULL;
  }
  return last;
}

static JsonObject *request(const char *cmd)
{
  JsonObject *req = json_object_new();
  json_object_set_string_member(req, "cmd", cmd);
  return req;
}

/* --- search ---------------------------------------------------------------------- */

/* Names, paths and messages that may hold a peer's words, for a terminal:
 * escaped (safename.h). The result lives until the next call's fourth
 * successor, so up to four can go into one printf. */
static const char *term(const char *s)
{
  static char *ring[4];
  static unsigned next;
  unsigned i = next++ % G_N_ELEMENTS(ring);
  free(ring[i]);
  ring[i] = name_escape_for_terminal(s, strlen(s));
  return ring[i] ? ring[i] : "?";
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
  human_size((uint64_t)member_int(o, "size"), size, sizeof size);
  printf("%-40s %10s  %.16s  from %.16s\n", term(member_str(o, "name", "?")), size,
         member_str(o, "content_id", "?"), member_str(o, "peer", "?"));
  fflush(stdout);
}

static int cli_search(int argc, char **argv)
{
  gint ttl = 4, wait_ms = 1500, limit = 0;
  gboolean by_cid = FALSE;
  gchar **terms = NULL;
  GOptionEntry entries[] = {
      {"ttl", 0, 0, G_OPTION_ARG_INT, &ttl,
       "Super-node hops beyond the leaf's own super node (0..7, default 4)", "N"},
      {"wait", 0, 0, G_OPTION_ARG_INT, &wait_ms, "How long to collect hits (default 1500)", "MS"},
      {"limit", 0, 0, G_OPTION_ARG_INT, &limit, "Stop after N hits (default: wait the full time)",
       "N"},
      {"content-id", 0, 0, G_OPTION_ARG_NONE, &by_cid, "TERMS is one content id (hex)", NULL},
      {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &terms, NULL, "TERMS..."},
      {NULL, 0, 0, 0, NULL, NULL, NULL}};
  Cmd c;
  cmd_init(&c, "canopy-leaf search", "TERMS...",
           "Search the overlay for files whose names hold every term, and print one line per\n"
           "hit: name, size, content id and sharing leaf (both shortened), then the count.",
           "  canopy-leaf search abbey road\n"
           "  canopy-leaf search --state-dir ~/.canopy --ttl 3 --limit 10 abbey road\n"
           "  canopy-leaf search --json abbey road | jq -r .content_id\n"
           "  canopy-leaf search --content-id 5648cca708aec4ae...   (who has this file)",
           "One JSON object per hit: name, size, content_id, peer", entries);
  int rc = cmd_parse(&c, &argc, &argv);
  if (rc != CLI_EXIT_OK)
    goto out;
  if (!terms || !terms[0]) {
    rc = usage(&c, "at least one search term is required");
    goto out;
  }
  if (ttl < 0 || ttl > 7 || wait_ms < 0 || wait_ms > 60000 || limit < 0) {
    rc = usage(&c, "--ttl 0..7, --wait 0..60000, --limit >= 0");
    goto out;
  }
  gchar *text = g_strjoinv(" ", terms);
  JsonObject *req = request("search");
  json_object_set_string_member(req, "text", text);
  json_object_set_string_member(req, "kind", by_cid ? "content_id" : "keywords");
  json_object_set_int_member(req, "ttl", ttl);
  json_object_set_int_member(req, "wait_ms", wait_ms);
  json_object_set_int_member(req, "limit", limit);
  g_free(text);
  SearchOut so = {c.json, 0};
  rc = cmd_call(&c, req, on_search_line, &so, (guint)(wait_ms / 1000 + 10));
  json_object_unref(req);
out:
  cmd_clear(&c);
  g_strfreev(terms);
  return rc;
}

/* --- status ------------------------------------------------------------------------ */

static void print_shares(JsonArray *shares, const char *indent)
{
  for (guint i = 0; shares && i < json_array_get_length(shares); i++) {
    JsonObject *s = json_array_get_object_element(shares, i);
    const char *name = member_str(s, "name", "");
    const char *state = member_str(s, "state", "ok");
    char size[32];
    human_size((uint64_t)member_int(s, "bytes"), size, sizeof size);
    GString *note = g_string_new(NULL);
    if (strcmp(state, "error") == 0)
      g_string_printf(note, "  error: %s", member_str(s, "error", "?"));
    else if (strcmp(state, "scanning") == 0 && json_object_has_member(s, "progress")) {
      JsonObject *p = json_object_get_object_member(s, "progress");
      g_string_printf(note, "  scanning, %.0f%% hashed",
                      percent(member_int(p, "bytes_done"), member_int(p, "bytes_total")));
    } else if (strcmp(state, "scanning") == 0) {
      g_string_assign(note, "  scanning");
    }
    gint64 files = member_int(s, "files");
    printf("%s%-16s %7" G_GINT64_FORMAT " file%s %11s  %s%s\n", indent,
           name[0] ? name : "(--share)", files, files == 1 ? " " : "s", size,
           member_str(s, "path", "?"), note->str);
    g_string_free(note, TRUE);
  }
}

static void print_transfers(JsonObject *t, const char *label)
{
  if (!t)
    return;
  GString *s = g_string_new(NULL);
  gint64 running = member_int(t, "downloads_running"),
         searching = member_int(t, "downloads_searching");
  gint64 paused = member_int(t, "downloads_paused"), up = member_int(t, "uploads_active");
  char rate[32], down_b[32], up_b[32];
  human_rate((double)member_int(t, "download_rate"), rate, sizeof rate);
  human_size((uint64_t)member_int(t, "bytes_downloaded"), down_b, sizeof down_b);
  human_size((uint64_t)member_int(t, "bytes_uploaded"), up_b, sizeof up_b);
  g_string_append_printf(s, "%" G_GINT64_FORMAT " download%s running", running,
                         running == 1 ? "" : "s");
  if (running)
    g_string_append_printf(s, " (%s)", rate);
  if (searching)
    g_string_append_printf(s, ", %" G_GINT64_FORMAT " looking for sources", searching);
  if (paused)
    g_string_append_printf(s, ", %" G_GINT64_FORMAT " paused", paused);
  g_string_append_printf(s, "; %" G_GINT64_FORMAT " upload%s; %s down, %s up", up,
                         up == 1 ? "" : "s", down_b, up_b);
  gint64 fin = member_int(t, "downloads_finished"), failed = member_int(t, "downloads_failed");
  if (fin || failed)
    g_string_append_printf(s, "; %" G_GINT64_FORMAT " finished, %" G_GINT64_FORMAT " failed", fin,
                           failed);
  printf("%-13s %s\n", label, s->str);
  g_string_free(s, TRUE);
}

static void print_status(JsonObject *o)
{
  printf("%-13s %s\n", "leaf", member_str(o, "id", "?"));
  const char *group = member_str(o, "group", "");
  if (json_object_get_boolean_member_with_default(o, "connected", FALSE)) {
    GString *role = g_string_new(NULL);
    if (group[0])
      g_string_printf(role, "%s of group %s, term %" G_GINT64_FORMAT,
                      member_str(o, "supernode_role", "leader"), group, member_int(o, "term"));
    else
      g_string_assign(role, "(not in a group)");
    printf("%-13s %s  id %.16s…  %s\n", "super node", member_str(o, "supernode", "?"),
           member_str(o, "supernode_id", "?"), role->str);
    g_string_free(role, TRUE);
  } else {
    printf("%-13s not connected: %s\n", "super node",
           member_str(o, "unreachable", "no super node reachable"));
  }
  JsonNode *b = json_object_get_member(o, "backup");
  if (b && JSON_NODE_HOLDS_OBJECT(b)) {
    JsonObject *bo = json_node_get_object(b);
    printf("%-13s %s  id %.16s…%s\n", "backup", member_str(bo, "address", "?"),
           member_str(bo, "id", "?"),
           json_object_get_boolean_member_with_default(o, "watching", FALSE)
               ? "  (watching it)"
               : "  (not reachable yet)");
  } else {
    printf("%-13s none known\n", "backup");
  }
  JsonArray *members =
      json_object_has_member(o, "members") ? json_object_get_array_member(o, "members") : NULL;
  if (members && json_array_get_length(members) > 0) {
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < json_array_get_length(members); i++) {
      JsonObject *m = json_array_get_object_element(members, i);
      const char *role = member_str(m, "role", "member");
      g_string_append_printf(s, "%s%s", i ? ", " : "", member_str(m, "address", "?"));
      if (strcmp(role, "member") != 0)
        g_string_append_printf(s, " (%s)", role);
    }
    printf("%-13s %s\n", "members", s->str);
    g_string_free(s, TRUE);
  }
  JsonArray *hosts =
      json_object_has_member(o, "hosts") ? json_object_get_array_member(o, "hosts") : NULL;
  if (hosts) {
    /* Addresses the daemon took only in host:port form (hostcache.h). */
    GString *s = g_string_new(NULL);
    guint n = json_array_get_length(hosts);
    for (guint i = 0; i < n && i < 3; i++)
      g_string_append_printf(s, "%s%s", i ? ", " : "",
                             member_str(json_array_get_object_element(hosts, i), "address", "?"));
    printf("%-13s %u super node%s known%s%s%s%s\n", "host cache", n, n == 1 ? "" : "s",
           n ? " (first " : "", s->str, n > 3 ? ", ..." : "", n ? ")" : "");
    g_string_free(s, TRUE);
  }
  if (json_object_has_member(o, "last_refusal"))
    printf("%-13s %s\n", "refused by", member_str(o, "last_refusal", ""));
  JsonArray *shares =
      json_object_has_member(o, "shares") ? json_object_get_array_member(o, "shares") : NULL;
  guint folders = shares ? json_array_get_length(shares) : 0;
  printf("%-13s %" G_GINT64_FORMAT " file%s from %u folder%s\n", "shared",
         member_int(o, "shared_files"), member_int(o, "shared_files") == 1 ? "" : "s", folders,
         folders == 1 ? "" : "s");
  print_shares(shares, "  ");
  print_transfers(
      json_object_has_member(o, "transfers") ? json_object_get_object_member(o, "transfers") : NULL,
      "transfers");
  if (json_object_has_member(o, "config")) {
    JsonObject *cfg = json_object_get_object_member(o, "config");
    GString *s = g_string_new(NULL);
    GList *keys = json_object_get_members(cfg);
    for (GList *k = keys; k; k = k->next) {
      JsonNode *v = json_object_get_member(cfg, k->data);
      gchar *text = json_node_get_value_type(v) == G_TYPE_STRING ? g_strdup(json_node_get_string(v))
                                                                 : json_to_string(v, FALSE);
      g_string_append_printf(s, "%s%s %s", s->len ? ", " : "", (const char *)k->data, text);
      g_free(text);
    }
    g_list_free(keys);
    printf("%-13s %s\n", "settings", s->str);
    g_string_free(s, TRUE);
  }
}

static int cli_status(int argc, char **argv)
{
  Cmd c;
  cmd_init(&c, "canopy-leaf status", "",
           "Show the super node the leaf follows (address, id, role and term), the backup and\n"
           "the group's other members it knows, the shared folders and the transfers.\n"
           "When no super node is reachable, says which addresses were tried and why they\n"
           "failed. Exits 0 whenever the daemon answered, connected or not.",
           "  canopy-leaf status\n"
           "  canopy-leaf status --state-dir ~/.canopy\n"
           "  canopy-leaf status --json | jq .connected",
           "Print one JSON object (see canopy-leaf(1) for its members)", NULL);
  int rc = cmd_parse(&c, &argc, &argv);
  if (rc == CLI_EXIT_OK && argc > 1)
    rc = usage(&c, "unexpected argument '%s'", argv[1]);
  if (rc == CLI_EXIT_OK) {
    JsonObject *o = ask(&c, request("status"), &rc);
    if (o) {
      if (c.json)
        control_print(o, TRUE);
      else
        print_status(o);
      json_object_unref(o);
    }
  }
  cmd_clear(&c);
  return rc;
}

/* --- share ------------------------------------------------------------------------- */

typedef struct {
  gboolean json, tty;
  gint64 last_line_us;
  JsonObject *result;
} ShareOut;

static void on_share_line(JsonObject *o, void *ud)
{
  ShareOut *so = ud;
  if (json_object_get_boolean_member_with_default(o, "done", FALSE)) {
    so->result = json_object_ref(o);
    return;
  }
  if (so->json || !json_object_has_member(o, "files_total"))
    return;
  gint64 fd = member_int(o, "files_done"), ft = member_int(o, "files_total");
  gint64 bd = member_int(o, "bytes_done"), bt = member_int(o, "bytes_total");
  double pct = percent(bd, bt);
  char a[32], b[32];
  human_size((uint64_t)bd, a, sizeof a);
  human_size((uint64_t)bt, b, sizeof b);
  if (so->tty) {
    char br[40];
    bar(pct, br, sizeof br);
    fprintf(stderr, "\r\033[K%s %5.1f%%  %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT " files  %s / %s",
            br, pct, fd, ft, a, b);
    fflush(stderr);
    return;
  }
  gint64 now = g_get_monotonic_time();
  if (now - so->last_line_us < PLAIN_EVERY_US && fd < ft)
    return;
  so->last_line_us = now;
  printf("hashing %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT " files, %s of %s (%.0f%%)\n", fd, ft, a,
         b, pct);
  fflush(stdout);
}

/* DIR made absolute against the current directory (the daemon's differs). */
static gchar *absolute(const char *dir)
{
  if (g_path_is_absolute(dir))
    return g_canonicalize_filename(dir, NULL);
  gchar *cwd = g_get_current_dir();
  gchar *abs = g_canonicalize_filename(dir, cwd);
  g_free(cwd);
  return abs;
}

static const char share_summary[] =
    "The folders the leaf shares: the one named by --share (its files keep their plain\n"
    "names) and those added here, which the daemon remembers across restarts and\n"
    "publishes under the folder's name: adding ~/Pictures publishes Pictures/trip/1.jpg\n"
    "(Pictures-2/... if that name is taken), so two folders never collide.\n"
    "  share add DIR      share DIR: hash its files (with progress), then publish them\n"
    "  share remove DIR   stop sharing DIR (or the share's NAME): its files are unpublished\n"
    "  share list         the shared folders (also: share with no sub-command)";

static const char share_examples[] = "  canopy-leaf share add ~/Pictures\n"
                                     "  canopy-leaf share list\n"
                                     "  canopy-leaf share remove ~/Pictures\n"
                                     "  canopy-leaf share remove Pictures\n"
                                     "  canopy-leaf share list --json | jq -r '.shares[].path'";

static int share_add(Cmd *c, const char *dir)
{
  gchar *abs = absolute(dir);
  JsonObject *req = request("share-add");
  json_object_set_string_member(req, "path", abs);
  ShareOut so = {c->json, isatty(STDERR_FILENO) && !c->json, 0, NULL};
  int rc = cmd_call(c, req, on_share_line, &so, 24 * 3600);
  json_object_unref(req);
  if (so.tty)
    fprintf(stderr, "\r\033[K");
  if (rc == CLI_EXIT_OK && so.result) {
    if (c->json) {
      control_print(so.result, TRUE);
    } else {
      char size[32];
      human_size((uint64_t)member_int(so.result, "bytes"), size, sizeof size);
      printf("sharing %s as %s: %" G_GINT64_FORMAT " files, %s (%" G_GINT64_FORMAT
             " hashed, %" G_GINT64_FORMAT " from the hash cache)\n",
             member_str(so.result, "path", abs), member_str(so.result, "name", "?"),
             member_int(so.result, "files"), size, member_int(so.result, "hashed"),
             member_int(so.result, "from_cache"));
      printf("its files are published as %s/...\n", member_str(so.result, "name", "?"));
    }
  }
  if (so.result)
    json_object_unref(so.result);
  g_free(abs);
  return rc;
}

static int share_remove(Cmd *c, const char *what)
{
  gchar *abs = absolute(what);
  JsonObject *req = request("share-remove");
  json_object_set_string_member(req, "path", abs);
  json_object_set_string_member(req, "arg", what);
  int rc;
  JsonObject *o = ask(c, req, &rc);
  if (o) {
    if (c->json)
      control_print(o, TRUE);
    else
      printf("no longer sharing %s (%s): %" G_GINT64_FORMAT " files unpublished\n",
             member_str(o, "path", abs), member_str(o, "name", "?"), member_int(o, "files"));
    json_object_unref(o);
  }
  g_free(abs);
  return rc;
}

static int share_list(Cmd *c)
{
  int rc;
  JsonObject *o = ask(c, request("share-list"), &rc);
  if (!o)
    return rc;
  if (c->json) {
    control_print(o, TRUE);
  } else {
    JsonArray *shares = json_object_get_array_member(o, "shares");
    if (!shares || json_array_get_length(shares) == 0)
      printf("no shared folders (add one with canopy-leaf share add DIR)\n");
    else {
      printf("%-16s %13s %11s  %s\n", "NAME", "FILES", "SIZE", "FOLDER");
      print_shares(shares, "");
    }
  }
  json_object_unref(o);
  return rc;
}

static int cli_share(int argc, char **argv)
{
  const char *sub = argc > 1 && argv[1][0] != '-' ? argv[1] : NULL;
  const char *what = "";
  Cmd c;
  if (sub && strcmp(sub, "add") == 0) {
    cmd_init(&c, "canopy-leaf share add", "DIR",
             "Share DIR too: the daemon hashes its files (a progress bar on a terminal, plain\n"
             "lines otherwise), publishes them as NAME/PATH (NAME: DIR's base name, made\n"
             "unique) and lists DIR in its state dir, so it stays shared after a restart.\n"
             "Refused: a folder inside or around one already shared, the state dir.",
             share_examples, "Print one JSON object at the end: name, path, files, bytes, hashed",
             NULL);
    what = "add";
  } else if (sub && strcmp(sub, "remove") == 0) {
    cmd_init(&c, "canopy-leaf share remove", "DIR|NAME",
             "Stop sharing a folder added with share add: its files leave the published\n"
             "manifest at once, and it is no longer listed in the state dir. The --share\n"
             "folder is changed in the configuration instead.",
             share_examples, "Print one JSON object: name, path, files", NULL);
    what = "remove";
  } else if (!sub || strcmp(sub, "list") == 0) {
    cmd_init(&c, sub ? "canopy-leaf share list" : "canopy-leaf share",
             sub ? "" : "[add|remove|list]", share_summary, share_examples,
             "Print one JSON object: {shares: [{name, path, fixed, state, files, bytes, error}]}",
             NULL);
    what = "list";
  } else {
    fprintf(stderr, "canopy-leaf share: unknown sub-command '%s' (add, remove, list)\n", sub);
    return CLI_EXIT_USAGE;
  }
  if (sub) { /* the sub-command's name is not an argument */
    argc--;
    argv++;
  }
  int rc = cmd_parse(&c, &argc, &argv);
  if (rc != CLI_EXIT_OK)
    goto out;
  if (strcmp(what, "list") == 0) {
    rc = argc > 1 ? usage(&c, "unexpected argument '%s'", argv[1]) : share_list(&c);
  } else if (argc != 2) {
    rc = usage(&c, "one folder is required");
  } else if (strcmp(what, "add") == 0) {
    rc = share_add(&c, argv[1]);
  } else {
    rc = share_remove(&c, argv[1]);
  }
out:
  cmd_clear(&c);
  return rc;
}

/* --- downloads ------------------------------------------------------------------------ */

static void print_download(JsonObject *d)
{
  gint64 done = member_int(d, "bytes_done"), total = member_int(d, "bytes_total");
  const char *state = member_str(d, "state", "?");
  char a[32], b[32], rate[32], progress[80];
  human_size((uint64_t)done, a, sizeof a);
  human_size((uint64_t)total, b, sizeof b);
  if (total > 0)
    g_snprintf(progress, sizeof progress, "%s / %s  %3.0f%%", a, b, percent(done, total));
  else
    g_strlcpy(progress, "-", sizeof progress);
  human_rate((double)member_int(d, "rate"), rate, sizeof rate);
  gboolean live = strcmp(state, "running") == 0 || strcmp(state, "finished") == 0;
  printf("%3" G_GINT64_FORMAT "  %-9s  %-28s  %12s  %3" G_GINT64_FORMAT "  %.16s  %s\n",
         member_int(d, "id"), state, progress, live ? rate : "-", member_int(d, "sources"),
         member_str(d, "content_id", "?"), term(member_str(d, "name", "(name not known yet)")));
  if (json_object_has_member(d, "error"))
    printf("     %s\n", term(member_str(d, "error", "")));
}

static int downloads_list(Cmd *c)
{
  int rc;
  JsonObject *o = ask(c, request("downloads"), &rc);
  if (!o)
    return rc;
  if (c->json) {
    control_print(o, TRUE);
    json_object_unref(o);
    return rc;
  }
  JsonArray *arr = json_object_get_array_member(o, "downloads");
  if (!arr || json_array_get_length(arr) == 0) {
    printf("no downloads (start one with canopy-leaf get CONTENT_ID)\n");
  } else {
    printf("%3s  %-9s  %-28s  %12s  %3s  %-16s  %s\n", "ID", "STATE", "PROGRESS", "RATE", "SRC",
           "CONTENT ID", "NAME");
    for (guint i = 0; i < json_array_get_length(arr); i++)
      print_download(json_array_get_object_element(arr, i));
  }
  print_transfers(json_object_get_object_member(o, "transfers"), "totals");
  json_object_unref(o);
  return rc;
}

static int downloads_act(Cmd *c, const char *what, const char *id_text)
{
  char *end = NULL;
  errno = 0;
  unsigned long long id = strtoull(id_text, &end, 10);
  if (!*id_text || *end || errno || id == 0 || id > G_MAXINT64)
    return usage(c, "'%s' is not a download id", id_text);
  gchar *cmd = g_strdup_printf("download-%s", what);
  JsonObject *req = request(cmd);
  g_free(cmd);
  json_object_set_int_member(req, "id", (gint64)id);
  int rc;
  JsonObject *o = ask(c, req, &rc);
  if (!o)
    return rc;
  if (c->json) {
    control_print(o, TRUE);
  } else {
    char a[32], b[32];
    human_size((uint64_t)member_int(o, "bytes_done"), a, sizeof a);
    human_size((uint64_t)member_int(o, "bytes_total"), b, sizeof b);
    const char *state = member_str(o, "state", "?");
    const char *name = term(member_str(o, "name", member_str(o, "content_id", "?")));
    if (strcmp(state, "paused") == 0)
      printf("download %llu (%s) paused at %s of %s; the part file is kept\n", id, name, a, b);
    else if (strcmp(state, "cancelled") == 0)
      printf("download %llu (%s) cancelled; its part file is deleted\n", id, name);
    else
      printf("download %llu (%s) %s, %s of %s\n", id, name, state, a, b);
  }
  json_object_unref(o);
  return rc;
}

static const char downloads_examples[] = "  canopy-leaf downloads\n"
                                         "  canopy-leaf downloads pause 3\n"
                                         "  canopy-leaf downloads resume 3\n"
                                         "  canopy-leaf downloads cancel 3\n"
                                         "  canopy-leaf downloads --json | jq '.downloads[] | "
                                         "select(.state == \"running\") | .id'";

static int cli_downloads(int argc, char **argv)
{
  const char *sub = argc > 1 && argv[1][0] != '-' ? argv[1] : NULL;
  Cmd c;
  const char *what;
  if (!sub || strcmp(sub, "list") == 0) {
    what = "list";
    cmd_init(&c, sub ? "canopy-leaf downloads list" : "canopy-leaf downloads",
             sub ? "" : "[list|pause ID|resume ID|cancel ID]",
             "The daemon's downloads, running, paused and ended (the last 32): id, state,\n"
             "bytes done of the total, rate, sources in use, content id and name, then totals.\n"
             "  downloads pause ID    stop asking for chunks; the part file is kept\n"
             "  downloads resume ID   look for sources again and fetch the missing chunks\n"
             "  downloads cancel ID   stop and delete the part file",
             downloads_examples,
             "Print one JSON object: {downloads: [{id, state, name, content_id, path, "
             "bytes_done, bytes_total, rate, sources, error}], transfers: {...}}",
             NULL);
  } else if (strcmp(sub, "pause") == 0 || strcmp(sub, "resume") == 0 ||
             strcmp(sub, "cancel") == 0) {
    what = sub;
    gchar *prog = g_strdup_printf("canopy-leaf downloads %s", sub);
    const char *summary = strcmp(sub, "pause") == 0
                              ? "Pause download ID: its links close, the part file stays; "
                                "`resume` goes on from there."
                          : strcmp(sub, "resume") == 0
                              ? "Resume paused download ID: sources are looked up again and only "
                                "the missing\nchunks are fetched."
                              : "Cancel download ID: it stops and its part file is deleted.";
    cmd_init(&c, g_intern_string(prog), "ID", summary, downloads_examples,
             "Print the download as one JSON object", NULL);
    g_free(prog);
  } else {
    fprintf(stderr,
            "canopy-leaf downloads: unknown sub-command '%s' (list, pause, resume, cancel)\n", sub);
    return CLI_EXIT_USAGE;
  }
  if (sub) {
    argc--;
    argv++;
  }
  int rc = cmd_parse(&c, &argc, &argv);
  if (rc != CLI_EXIT_OK)
    goto out;
  if (strcmp(what, "list") == 0)
    rc = argc > 1 ? usage(&c, "unexpected argument '%s'", argv[1]) : downloads_list(&c);
  else if (argc != 2)
    rc = usage(&c, "one download id is required");
  else
    rc = downloads_act(&c, what, argv[1]);
out:
  cmd_clear(&c);
  return rc;
}

/* --- get ------------------------------------------------------------------------------ */

typedef struct {
  gboolean json;
  gboolean tty;
  gint64 last_line_us;
  gint64 id;
  JsonObject *result;
} GetOut;

static void on_get_line(JsonObject *o, void *ud)
{
  GetOut *g = ud;
  FILE *out = g->tty ? stderr : stdout;
  const char *clear = g->tty ? "\r\033[K" : "";
  if (json_object_get_boolean_member_with_default(o, "done", FALSE)) {
    g->result = json_object_ref(o);
    return;
  }
  if (json_object_has_member(o, "download")) {
    g->id = member_int(o, "download");
    const char *state = member_str(o, "state", "");
    if (!g->json && strcmp(state, "paused") == 0)
      fprintf(out,
              "%sdownload %" G_GINT64_FORMAT
              " paused (canopy-leaf downloads resume %" G_GINT64_FORMAT "); waiting\n",
              clear, g->id, g->id);
    else if (!g->json && !g->tty)
      printf("download %" G_GINT64_FORMAT ": %s\n", g->id,
             strcmp(state, "searching") == 0 ? "looking for sources" : state);
    fflush(out);
    return;
  }
  if (json_object_has_member(o, "source")) {
    if (!g->json)
      fprintf(out, "%ssource %.16s… linked %s (%s)\n", clear, member_str(o, "source", "?"),
              member_str(o, "path_type", "?"), member_str(o, "path", "?"));
    return;
  }
  if (g->json || !json_object_has_member(o, "progress"))
    return;
  gint64 done = member_int(o, "progress");
  gint64 total = member_int(o, "total");
  double pct = percent(done, total);
  char a[32], b[32], rate[32];
  human_size((uint64_t)done, a, sizeof a);
  human_size((uint64_t)total, b, sizeof b);
  human_rate((double)member_int(o, "rate"), rate, sizeof rate);
  if (g->tty) {
    char br[40];
    bar(pct, br, sizeof br);
    fprintf(stderr, "\r\033[K%s %5.1f%%  %s / %s  %s  %" G_GINT64_FORMAT " source(s)", br, pct, a,
            b, rate, member_int(o, "sources"));
    fflush(stderr);
  } else {
    /* Plain lines for logs and pipes: at most one every 2 s. */
    gint64 now = g_get_monotonic_time();
    if (now - g->last_line_us < PLAIN_EVERY_US)
      return;
    g->last_line_us = now;
    printf("progress %.1f%% (%s of %s, %s)\n", pct, a, b, rate);
    fflush(stdout);
  }
}

static int cli_get(int argc, char **argv)
{
  gchar *output = NULL;
  gboolean force = FALSE;
  gchar **rest = NULL;
  GOptionEntry entries[] = {
      {"output", 'o', 0, G_OPTION_ARG_FILENAME, &output,
       "Where to put the file (default: the download dir)", "PATH"},
      {"force", 0, 0, G_OPTION_ARG_NONE, &force, "Overwrite an existing file", NULL},
      {G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &rest, NULL, "CONTENT_ID"},
      {NULL, 0, 0, 0, NULL, NULL, NULL}};
  Cmd c;
  cmd_init(&c, "canopy-leaf get", "CONTENT_ID",
           "Download the file with this content id (from search) from every leaf that has it,\n"
           "each chunk verified; a progress bar on a terminal. The daemon goes on with it if\n"
           "this command is interrupted: run it again to follow it (or resume it), and see\n"
           "canopy-leaf downloads to pause, resume or cancel it.",
           "  canopy-leaf search --json abbey road | jq -r .content_id\n"
           "  canopy-leaf get 5648cca708aec4ae...            (into the download dir)\n"
           "  canopy-leaf get -o ~/Music/abbey.flac 5648cca708aec4ae...",
           "Last line: {path, bytes, content_id, id, sources: [{peer, bytes, path_type}]}",
           entries);
  GetOut g = {0};
  int rc = cmd_parse(&c, &argc, &argv);
  if (rc != CLI_EXIT_OK)
    goto out;
  g.json = c.json;
  g.tty = isatty(STDERR_FILENO) && !c.json;
  if (!rest || !rest[0] || rest[1]) {
    rc = usage(&c, "one content id is required");
    goto out;
  }
  JsonObject *req = request("get");
  json_object_set_string_member(req, "content_id", rest[0]);
  if (output) {
    gchar *abs = absolute(output);
    json_object_set_string_member(req, "output", abs);
    g_free(abs);
  }
  json_object_set_boolean_member(req, "force", force);
  rc = cmd_call(&c, req, on_get_line, &g, 24 * 3600);
  json_object_unref(req);
  if (g.tty)
    fprintf(stderr, "\r\033[K");
  if (rc != CLI_EXIT_OK || !g.result)
    goto out;
  if (c.json) {
    control_print(g.result, TRUE);
  } else {
    char size[32];
    human_size((uint64_t)member_int(g.result, "bytes"), size, sizeof size);
    printf("saved %s (%s, verified)\n", term(member_str(g.result, "path", "?")), size);
    JsonArray *src = json_object_has_member(g.result, "sources")
                         ? json_object_get_array_member(g.result, "sources")
                         : NULL;
    for (guint i = 0; src && i < json_array_get_length(src); i++) {
      JsonObject *s = json_array_get_object_element(src, i);
      char b[32];
      human_size((uint64_t)member_int(s, "bytes"), b, sizeof b);
      printf("  from %.16s…  %10s  %s (%s)\n", member_str(s, "peer", "?"), b,
             member_str(s, "path_type", "?"), member_str(s, "path", "?"));
    }
  }
out:
  if (g.result)
    json_object_unref(g.result);
  cmd_clear(&c);
  g_free(output);
  g_strfreev(rest);
  return rc;
}

/* --- dispatch ------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
} Command;

static const Command commands[] = {
    {"status", cli_status}, {"share", cli_share}, {"downloads", cli_downloads},
    {"search", cli_search}, {"get", cli_get},     {NULL, NULL},
};

int cli_main(int argc, char **argv)
{
  const char *name = argv[1];
  if (strcmp(name, "help") == 0) {
    if (argc > 2) {
      for (const Command *c = commands; c->name; c++)
        if (strcmp(c->name, argv[2]) == 0) {
          char *args[] = {argv[2], (char *)"--help", NULL};
          return c->run(2, args);
        }
      fprintf(stderr, "canopy-leaf help: no command '%s' (commands: %s)\n", argv[2], CLI_COMMANDS);
      return CLI_EXIT_USAGE;
    }
    printf("Usage:\n  canopy-leaf COMMAND [OPTION...]   talk to the running daemon\n"
           "  canopy-leaf [OPTION...]           run the daemon (canopy-leaf --help)\n\n%s\n\n"
           "Exit status: 0 done, 1 the operation failed, 2 bad usage, 3 the daemon is not "
           "running.\n",
           CLI_COMMANDS_HELP);
    return CLI_EXIT_OK;
  }
  for (const Command *c = commands; c->name; c++)
    if (strcmp(c->name, name) == 0)
      return c->run(argc - 1, argv + 1);
  return -1;
}
