/* test_metrics.c - the Prometheus endpoint (supernode/metrics.c).
 *
 * The writer's output is compared byte for byte with what the exposition
 * format 0.0.4 prescribes, escaping included, and calls that would break
 * the format must write nothing. Then a real server on loopback is scraped
 * with a real HTTP client (SoupSession): status, content type, and a body
 * that a strict checker of the format accepts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libsoup/soup.h>

#include "metrics.h"

#define FETCH_TIMEOUT_MS 5000

/* --- a strict reader of the exposition format ---------------------------------- */

/* A metric name at s; returns it (owned) and sets *end past it. */
static char *read_name(const char *s, const char **end, bool label)
{
  const char *p = s;
  if (!g_ascii_isalpha(*p) && *p != '_' && (label || *p != ':'))
    return NULL;
  while (g_ascii_isalnum(*p) || *p == '_' || (!label && *p == ':'))
    p++;
  *end = p;
  return g_strndup(s, (gsize)(p - s));
}

/* Skips an escaped string up to (not past) the terminator: '"' for label
 * values (quote true), the end of the line for HELP text. Only \\, \n and,
 * in label values, \" are valid escapes. */
static const char *skip_escaped(const char *p, bool quote)
{
  while (*p && !(quote && *p == '"')) {
    if (*p == '\\') {
      p++;
      if (*p != '\\' && *p != 'n' && !(quote && *p == '"'))
        return NULL;
    } else if (*p == '\n' || (quote && *p == '"')) {
      return NULL;
    }
    p++;
  }
  return p;
}

static bool value_ok(const char *v)
{
  if (strcmp(v, "NaN") == 0 || strcmp(v, "+Inf") == 0 || strcmp(v, "-Inf") == 0)
    return true;
  char *end = NULL;
  g_ascii_strtod(v, &end);
  return *v && end && *end == '\0' && !strchr(v, ' ');
}

/* Checks a whole page: only HELP, TYPE and sample lines; each family has
 * HELP then TYPE before its first sample and its samples in one group;
 * every name starts with canopy_; counter names end with _total; label
 * names and escapes are valid; values parse. Returns the sample count. */
static size_t check_exposition(const char *text)
{
  GHashTable *helped = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  GHashTable *typed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  GHashTable *done = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  char *current = NULL;
  size_t samples = 0;
  size_t len = strlen(text);
  assert_true(len == 0 || text[len - 1] == '\n');
  gchar **lines = g_strsplit(text, "\n", -1);
  for (gchar **l = lines; *l && l[1]; l++) {
    const char *line = *l, *p;
    assert_true(*line != '\0');
    if (g_str_has_prefix(line, "# HELP ")) {
      char *name = read_name(line + 7, &p, false);
      assert_non_null(name);
      assert_true(*p == ' ');
      p = skip_escaped(p + 1, false);
      assert_non_null(p);
      assert_true(*p == '\0');
      assert_false(g_hash_table_contains(helped, name));
      g_hash_table_add(helped, name);
    } else if (g_str_has_prefix(line, "# TYPE ")) {
      char *name = read_name(line + 7, &p, false);
      assert_non_null(name);
      assert_true(g_str_has_prefix(name, "canopy_"));
      assert_true(g_hash_table_contains(helped, name));
      assert_false(g_hash_table_contains(typed, name));
      assert_true(strcmp(p, " counter") == 0 || strcmp(p, " gauge") == 0);
      if (strcmp(p, " counter") == 0)
        assert_true(g_str_has_suffix(name, "_total"));
      g_hash_table_insert(typed, g_strdup(name), g_strdup(p + 1));
      if (current)
        g_hash_table_add(done, current);
      current = name;
    } else {
      assert_true(line[0] != '#');
      char *name = read_name(line, &p, false);
      assert_non_null(name);
      assert_true(g_hash_table_contains(typed, name));
      assert_false(g_hash_table_contains(done, name));
      assert_string_equal(name, current);
      g_free(name);
      if (*p == '{') {
        p++;
        GHashTable *seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        for (;;) {
          char *label = read_name(p, &p, true);
          assert_non_null(label);
          assert_false(g_str_has_prefix(label, "__"));
          assert_true(g_hash_table_add(seen, label));
          assert_true(p[0] == '=' && p[1] == '"');
          p = skip_escaped(p + 2, true);
          assert_non_null(p);
          assert_true(*p == '"');
          p++;
          if (*p == '}')
            break;
          assert_true(*p == ',');
          p++;
        }
        g_hash_table_destroy(seen);
        p++;
      }
      assert_true(*p == ' ');
      assert_true(value_ok(p + 1));
      samples++;
    }
  }
  g_strfreev(lines);
  g_free(current);
  g_hash_table_destroy(helped);
  g_hash_table_destroy(typed);
  g_hash_table_destroy(done);
  return samples;
}

/* --- the writer ------------------------------------------------------------- */

static void test_counter_gauge_golden(void **state)
{
  MetricsWriter *w = metrics_writer_new();
  metrics_counter(w, "queries_received", "Queries received.", 42);
  metrics_gauge(w, "leaves", "Leaf sessions.", 7);
  metrics_counter(w, "big", "Near the top.", UINT64_MAX);
  size_t len;
  const char *t = metrics_writer_text(w, &len);
  assert_string_equal(t, "# HELP canopy_queries_received_total Queries received.\n"
                         "# TYPE canopy_queries_received_total counter\n"
                         "canopy_queries_received_total 42\n"
                         "# HELP canopy_leaves Leaf sessions.\n"
                         "# TYPE canopy_leaves gauge\n"
                         "canopy_leaves 7\n"
                         "# HELP canopy_big_total Near the top.\n"
                         "# TYPE canopy_big_total counter\n"
                         "canopy_big_total 18446744073709551615\n");
  assert_int_equal(len, strlen(t));
  assert_true(metrics_writer_ok(w));
  assert_int_equal(check_exposition(t), 3);
  metrics_writer_free(w);
  metrics_writer_free(NULL);
}

static void test_labels_golden(void **state)
{
  MetricsWriter *w = metrics_writer_new();
  static const char *const roles[] = {"joining", "leader", "backup", "standby"};
  for (int i = 0; i < 4; i++)
    metrics_gauge_labels(w, "group_role", "Role (one-hot).",
                         (const char *const[]){"role", roles[i], NULL}, i == 1);
  metrics_counter_labels(w, "session_bytes", "Bytes.",
                         (const char *const[]){"direction", "in", "kind", "leaf", NULL}, 10);
  metrics_counter_labels(w, "session_bytes", "Bytes.",
                         (const char *const[]){"direction", "out", "kind", "leaf", NULL}, 20);
  /* An empty list: a plain sample. */
  metrics_gauge_labels(w, "plain", "No labels.", (const char *const[]){NULL}, 3);
  assert_true(metrics_writer_ok(w));
  const char *t = metrics_writer_text(w, NULL);
  assert_string_equal(t, "# HELP canopy_group_role Role (one-hot).\n"
                         "# TYPE canopy_group_role gauge\n"
                         "canopy_group_role{role=\"joining\"} 0\n"
                         "canopy_group_role{role=\"leader\"} 1\n"
                         "canopy_group_role{role=\"backup\"} 0\n"
                         "canopy_group_role{role=\"standby\"} 0\n"
                         "# HELP canopy_session_bytes_total Bytes.\n"
                         "# TYPE canopy_session_bytes_total counter\n"
                         "canopy_session_bytes_total{direction=\"in\",kind=\"leaf\"} 10\n"
                         "canopy_session_bytes_total{direction=\"out\",kind=\"leaf\"} 20\n"
                         "# HELP canopy_plain No labels.\n"
                         "# TYPE canopy_plain gauge\n"
                         "canopy_plain 3\n");
  assert_int_equal(check_exposition(t), 7);
  metrics_writer_free(w);
}

static void test_escaping(void **state)
{
  MetricsWriter *w = metrics_writer_new();
  /* HELP escapes backslash and newline, not the double quote; label values
   * escape all three. UTF-8 passes through. */
  metrics_gauge_labels(w, "group_info", "A \"quoted\" C:\\path\nand a second line.",
                       (const char *const[]){"group", "a\\b \"c\"\nd — é", NULL}, 1);
  assert_true(metrics_writer_ok(w));
  const char *t = metrics_writer_text(w, NULL);
  assert_string_equal(t, "# HELP canopy_group_info A \"quoted\" C:\\\\path\\nand a second line.\n"
                         "# TYPE canopy_group_info gauge\n"
                         "canopy_group_info{group=\"a\\\\b \\\"c\\\"\\nd — é\"} 1\n");
  assert_int_equal(check_exposition(t), 1);
  metrics_writer_free(w);
}

static void test_gauge_values(void **state)
{
  static const struct {
    double v;
    const char *text;
  } cases[] = {
      {0, "0"},
      {-0.0, "0"},
      {1, "1"},
      {-3, "-3"},
      {0.5, "0.5"},
      {0.1, "0.1"},
      {1.25e-7, "1.25e-07"},
      {1e20, "1e+20"},
      {1.0 / 3, "0.33333333333333331"},
      {4294967296.0, "4294967296"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    MetricsWriter *w = metrics_writer_new();
    metrics_gauge(w, "x", "X.", cases[i].v);
    char *want =
        g_strdup_printf("# HELP canopy_x X.\n# TYPE canopy_x gauge\ncanopy_x %s\n", cases[i].text);
    assert_string_equal(metrics_writer_text(w, NULL), want);
    /* What we print reads back as the same double. */
    const char *v = strrchr(metrics_writer_text(w, NULL), ' ') + 1;
    assert_true(g_ascii_strtod(v, NULL) == cases[i].v);
    g_free(want);
    metrics_writer_free(w);
  }
  MetricsWriter *w = metrics_writer_new();
  metrics_gauge_labels(w, "y", "Y.", (const char *const[]){"k", "nan", NULL}, NAN);
  metrics_gauge_labels(w, "y", "Y.", (const char *const[]){"k", "pinf", NULL}, INFINITY);
  metrics_gauge_labels(w, "y", "Y.", (const char *const[]){"k", "ninf", NULL}, -INFINITY);
  assert_string_equal(metrics_writer_text(w, NULL), "# HELP canopy_y Y.\n# TYPE canopy_y gauge\n"
                                                    "canopy_y{k=\"nan\"} NaN\n"
                                                    "canopy_y{k=\"pinf\"} +Inf\n"
                                                    "canopy_y{k=\"ninf\"} -Inf\n");
  assert_int_equal(check_exposition(metrics_writer_text(w, NULL)), 3);
  metrics_writer_free(w);
}

/* Each of these breaks the format: nothing is written, the writer fails. */
static void test_rejects(void **state)
{
  const char *good = "# HELP canopy_a_total A.\n# TYPE canopy_a_total counter\n"
                     "canopy_a_total 1\n"
                     "# HELP canopy_b B.\n# TYPE canopy_b gauge\ncanopy_b 2\n";
  for (int i = 0; i < 16; i++) {
    MetricsWriter *w = metrics_writer_new();
    metrics_counter(w, "a", "A.", 1);
    metrics_gauge(w, "b", "B.", 2);
    assert_true(metrics_writer_ok(w));
    switch (i) {
    case 0: /* the family a again, after b: a split family */
      metrics_counter(w, "a", "A.", 3);
      break;
    case 1: /* a gauge with the counter's name: a second TYPE */
      metrics_gauge(w, "a_total", "A.", 3);
      break;
    case 15: /* ... even right after the counter's samples */
      metrics_counter(w, "c", "C.", 3);
      metrics_gauge(w, "c_total", "C.", 4);
      assert_false(metrics_writer_ok(w));
      assert_string_equal(metrics_writer_text(w, NULL),
                          "# HELP canopy_a_total A.\n# TYPE canopy_a_total counter\n"
                          "canopy_a_total 1\n# HELP canopy_b B.\n# TYPE canopy_b gauge\n"
                          "canopy_b 2\n# HELP canopy_c_total C.\n# TYPE canopy_c_total "
                          "counter\ncanopy_c_total 3\n");
      metrics_writer_free(w);
      continue;
    case 2: /* _total is the writer's to add */
      metrics_counter(w, "c_total", "C.", 3);
      break;
    case 3:
      metrics_gauge(w, "bad-name", "C.", 3);
      break;
    case 4:
      metrics_gauge(w, "", "C.", 3);
      break;
    case 5:
      metrics_gauge(w, NULL, "C.", 3);
      break;
    case 6:
      metrics_gauge(w, "c", NULL, 3);
      break;
    case 7:
      metrics_gauge(w, "c", "bad \xff utf-8", 3);
      break;
    case 8: /* reserved label name */
      metrics_gauge_labels(w, "c", "C.", (const char *const[]){"__name__", "x", NULL}, 3);
      break;
    case 9:
      metrics_gauge_labels(w, "c", "C.", (const char *const[]){"1x", "x", NULL}, 3);
      break;
    case 10:
      metrics_gauge_labels(w, "c", "C.", (const char *const[]){"a:b", "x", NULL}, 3);
      break;
    case 11: /* a name without its value */
      metrics_gauge_labels(w, "c", "C.", (const char *const[]){"k", NULL}, 3);
      break;
    case 12: /* the same label twice */
      metrics_gauge_labels(w, "c", "C.", (const char *const[]){"k", "1", "k", "2", NULL}, 3);
      break;
    case 13:
      metrics_gauge_labels(w, "c", "C.", (const char *const[]){"k", "\xc3", NULL}, 3);
      break;
    case 14: /* a split labelled family */
      metrics_gauge_labels(w, "b", "B.", (const char *const[]){"k", "v", NULL}, 3);
      metrics_gauge(w, "c", "C.", 3);
      assert_true(metrics_writer_ok(w));
      metrics_gauge_labels(w, "b", "B.", (const char *const[]){"k", "w", NULL}, 3);
      assert_false(metrics_writer_ok(w));
      metrics_writer_free(w);
      continue;
    }
    assert_false(metrics_writer_ok(w));
    assert_string_equal(metrics_writer_text(w, NULL), good);
    metrics_writer_free(w);
  }
}

/* --- the super node's page ---------------------------------------------------- */

static void sample_stats(SnStats *st, SnGroupStatus *g, MetricsExtra *x)
{
  memset(st, 0, sizeof *st);
  memset(g, 0, sizeof *g);
  memset(x, 0, sizeof *x);
  st->queries_received = 101;
  st->queries_handled = 102;
  st->queries_forwarded = 103;
  st->queries_duplicate = 104;
  st->queries_throttled = 105;
  st->hits_sent = 106;
  st->hits_relayed = 107;
  st->hits_dropped = 108;
  st->malformed = 109;
  st->sessions_opened = 110;
  st->entries_rejected = 111;
  st->signals_relayed = 112;
  st->signals_delivered = 113;
  st->signals_dropped = 114;
  st->leaves = 115;
  st->links = 116;
  st->links_refused = 127;
  st->index_entries = 117;
  g->role = SN_ROLE_LEADER;
  g->term = 7;
  g_strlcpy(g->group, "eu \"west\"", sizeof g->group);
  g->members = 2;
  g->watchers = 1;
  g->records = 115;
  g->repl_lag_ops = 3;
  g->repl_lag_ms = 1500;
  g->repl_applied = 9;
  g->takeovers = 1;
  g->stepdowns = 2;
  x->sessions = 120;
  x->sessions_refused = 121;
  x->stun_requests = 122;
  x->stun_dropped = 123;
  x->turn_credentials_issued = 124;
  x->bytes_in = 1ull << 40;
  x->bytes_out = 126;
  x->failovers = 4;
  x->handshake_cookies_sent = 130;
  x->handshake_cookies_accepted = 131;
  x->handshake_cookies_refused = 132;
  x->handshakes_pending = 133;
  x->handshake_cookie_step = true;
}

static void test_fill_supernode(void **state)
{
  SnStats st;
  SnGroupStatus g;
  MetricsExtra x;
  sample_stats(&st, &g, &x);
  MetricsWriter *w = metrics_writer_new();
  metrics_fill_supernode(w, &st, &g, &x);
  assert_true(metrics_writer_ok(w));
  const char *t = metrics_writer_text(w, NULL);
  assert_true(check_exposition(t) >= 35);
  static const char *const want[] = {
      "canopy_sessions 120",
      "canopy_sessions_opened_total 110",
      "canopy_sessions_refused_total 121",
      "canopy_handshake_cookies_sent_total 130",
      "canopy_handshake_cookies_accepted_total 131",
      "canopy_handshake_cookies_refused_total 132",
      "canopy_handshakes_pending 133",
      "canopy_handshake_cookie_step 1",
      "canopy_leaves 115",
      "canopy_links 116",
      "canopy_links_refused_total 127",
      "canopy_index_entries 117",
      "canopy_index_entries_rejected_total 111",
      "canopy_malformed_messages_total 109",
      "canopy_session_bytes_total{direction=\"in\"} 1099511627776",
      "canopy_session_bytes_total{direction=\"out\"} 126",
      "canopy_queries_received_total 101",
      "canopy_queries_handled_total 102",
      "canopy_queries_forwarded_total 103",
      "canopy_queries_duplicate_total 104",
      "canopy_queries_throttled_total 105",
      "canopy_hits_sent_total 106",
      "canopy_hits_relayed_total 107",
      "canopy_hits_dropped_total 108",
      "canopy_signals_relayed_total 112",
      "canopy_signals_delivered_total 113",
      "canopy_signals_dropped_total 114",
      "canopy_stun_requests_total 122",
      "canopy_stun_dropped_total 123",
      "canopy_turn_credentials_issued_total 124",
      "canopy_group_role{role=\"joining\"} 0",
      "canopy_group_role{role=\"leader\"} 1",
      "canopy_group_role{role=\"backup\"} 0",
      "canopy_group_role{role=\"standby\"} 0",
      "canopy_group_info{group=\"eu \\\"west\\\"\"} 1",
      "canopy_group_term 7",
      "canopy_group_members 2",
      "canopy_group_watchers 1",
      "canopy_group_records 115",
      "canopy_replication_lag_ops 3",
      "canopy_replication_lag_seconds 1.5",
      "canopy_replication_applied_ops_total 9",
      "canopy_group_takeovers_total 1",
      "canopy_group_stepdowns_total 2",
      "canopy_group_failovers_total 4",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    char *line = g_strdup_printf("\n%s\n", want[i]);
    if (!strstr(t, line))
      fail_msg("missing sample: %s", want[i]);
    g_free(line);
  }
  /* Exactly one role is hot in every role. */
  for (int r = SN_ROLE_JOINING; r <= SN_ROLE_STANDBY; r++) {
    g.role = (SnRole)r;
    MetricsWriter *w2 = metrics_writer_new();
    metrics_fill_supernode(w2, &st, &g, NULL); /* no extras: zeros */
    const char *t2 = metrics_writer_text(w2, NULL);
    int hot = 0;
    for (const char *p = t2; (p = strstr(p, "canopy_group_role{")); p++)
      hot += strncmp(strchr(p, '}'), "} 1\n", 4) == 0;
    assert_int_equal(hot, 1);
    assert_non_null(strstr(t2, "\ncanopy_stun_requests_total 0\n"));
    check_exposition(t2);
    metrics_writer_free(w2);
  }
  metrics_writer_free(w);
}

/* --- the server, scraped over HTTP ------------------------------------------- */

typedef struct {
  GMainContext *ctx;
  SoupSession *http;
  uint64_t fills;
  bool broken; /* the fill writes a bad family */
} Live;

static void fill_live(MetricsWriter *w, void *ud)
{
  Live *lv = ud;
  SnStats st;
  SnGroupStatus g;
  MetricsExtra x;
  sample_stats(&st, &g, &x);
  lv->fills++;
  metrics_fill_supernode(w, &st, &g, &x);
  metrics_counter(w, "test_scrapes", "Fills so far.", lv->fills);
  if (lv->broken)
    metrics_gauge(w, "leaves", "Again.", 1);
}

typedef struct {
  GBytes *body;
  GError *err;
  bool done;
} Fetch;

static void on_fetched(GObject *src, GAsyncResult *res, gpointer ud)
{
  Fetch *f = ud;
  f->body = soup_session_send_and_read_finish(SOUP_SESSION(src), res, &f->err);
  f->done = true;
}

static gboolean on_timeout(gpointer ud)
{
  *(bool *)ud = true;
  return G_SOURCE_REMOVE;
}

/* Requests url while iterating the context; returns the message (owned)
 * with the body in *body (owned, "" for none). Fails after
 * FETCH_TIMEOUT_MS. */
static SoupMessage *fetch(Live *lv, const char *method, const char *url, char **body)
{
  SoupMessage *msg = soup_message_new(method, url);
  assert_non_null(msg);
  Fetch f = {0};
  bool timed_out = false;
  GSource *t = g_timeout_source_new(FETCH_TIMEOUT_MS);
  g_source_set_callback(t, on_timeout, &timed_out, NULL);
  g_source_attach(t, lv->ctx);
  soup_session_send_and_read_async(lv->http, msg, G_PRIORITY_DEFAULT, NULL, on_fetched, &f);
  while (!f.done && !timed_out)
    g_main_context_iteration(lv->ctx, TRUE);
  g_source_destroy(t);
  g_source_unref(t);
  if (!f.done)
    fail_msg("%s %s: no answer within %d ms", method, url, FETCH_TIMEOUT_MS);
  if (f.err)
    fail_msg("%s %s: %s", method, url, f.err->message);
  gsize n;
  const char *data = g_bytes_get_data(f.body, &n);
  *body = g_strndup(data ? data : "", n);
  assert_int_equal(strlen(*body), n); /* no NUL inside */
  g_bytes_unref(f.body);
  return msg;
}

static const char *header(SoupMessage *msg, const char *name)
{
  return soup_message_headers_get_one(soup_message_get_response_headers(msg), name);
}

static void live_setup(Live *lv)
{
  memset(lv, 0, sizeof *lv);
  lv->ctx = g_main_context_new();
  g_main_context_push_thread_default(lv->ctx);
  /* A direct connection whatever the environment's proxy settings say. */
  lv->http = soup_session_new_with_options("proxy-resolver", NULL, "timeout", 5, NULL);
}

static void live_teardown(Live *lv)
{
  g_object_unref(lv->http);
  /* Let closed connections' sources run down before the context goes. */
  while (g_main_context_iteration(lv->ctx, FALSE))
    ;
  g_main_context_pop_thread_default(lv->ctx);
  g_main_context_unref(lv->ctx);
}

static void test_live(void **state)
{
  Live lv;
  live_setup(&lv);
  GError *err = NULL;
  Metrics *m = metrics_new("127.0.0.1:0", lv.ctx, fill_live, &lv, &err);
  assert_non_null(m);
  assert_null(err);
  assert_true(metrics_port(m) > 0);
  char *base = g_strdup_printf("http://127.0.0.1:%u", metrics_port(m));
  char *url = g_strconcat(base, "/metrics", NULL);
  char *body;

  SoupMessage *msg = fetch(&lv, "GET", url, &body);
  assert_int_equal(soup_message_get_status(msg), 200);
  assert_string_equal(header(msg, "Content-Type"), METRICS_CONTENT_TYPE);
  assert_true(check_exposition(body) >= 36);
  assert_non_null(strstr(body, "\ncanopy_test_scrapes_total 1\n"));
  assert_non_null(strstr(body, "\ncanopy_group_role{role=\"leader\"} 1\n"));
  assert_int_equal(metrics_scrapes(m), 1);
  g_free(body);
  g_object_unref(msg);

  /* Each scrape fills afresh: the counter moved. */
  msg = fetch(&lv, "GET", url, &body);
  assert_int_equal(soup_message_get_status(msg), 200);
  assert_non_null(strstr(body, "\ncanopy_test_scrapes_total 2\n"));
  check_exposition(body);
  g_free(body);
  g_object_unref(msg);

  /* A query string is not part of the path. */
  char *qurl = g_strconcat(url, "?name[]=x", NULL);
  msg = fetch(&lv, "GET", qurl, &body);
  assert_int_equal(soup_message_get_status(msg), 200);
  g_free(qurl);
  g_free(body);
  g_object_unref(msg);

  msg = fetch(&lv, "HEAD", url, &body);
  assert_int_equal(soup_message_get_status(msg), 200);
  assert_string_equal(header(msg, "Content-Type"), METRICS_CONTENT_TYPE);
  assert_string_equal(body, "");
  g_free(body);
  g_object_unref(msg);

  static const char *const elsewhere[] = {"/", "/metrics/", "/metricsx", "/other"};
  for (size_t i = 0; i < 4; i++) {
    char *u = g_strconcat(base, elsewhere[i], NULL);
    msg = fetch(&lv, "GET", u, &body);
    assert_int_equal(soup_message_get_status(msg), 404);
    g_free(u);
    g_free(body);
    g_object_unref(msg);
  }

  static const char *const methods[] = {"POST", "PUT", "DELETE"};
  for (size_t i = 0; i < 3; i++) {
    msg = fetch(&lv, methods[i], url, &body);
    assert_int_equal(soup_message_get_status(msg), 405);
    assert_string_equal(header(msg, "Allow"), "GET, HEAD");
    g_free(body);
    g_object_unref(msg);
  }

  /* A fill that breaks the format gets a 500, not a page Prometheus
   * rejects. */
  lv.broken = true;
  msg = fetch(&lv, "GET", url, &body);
  assert_int_equal(soup_message_get_status(msg), 500);
  g_free(body);
  g_object_unref(msg);
  uint64_t fills = lv.fills;

  /* The port is taken while it runs. */
  char *same = g_strdup_printf("127.0.0.1:%u", metrics_port(m));
  Metrics *m2 = metrics_new(same, lv.ctx, fill_live, &lv, &err);
  assert_null(m2);
  assert_non_null(err);
  g_clear_error(&err);
  g_free(same);

  metrics_free(m);
  metrics_free(NULL);
  /* And it is closed once freed. */
  SoupMessage *gone = soup_message_new("GET", url);
  Fetch f = {0};
  soup_session_send_and_read_async(lv.http, gone, G_PRIORITY_DEFAULT, NULL, on_fetched, &f);
  while (!f.done)
    g_main_context_iteration(lv.ctx, TRUE);
  assert_non_null(f.err);
  assert_null(f.body);
  assert_int_equal(lv.fills, fills);
  g_clear_error(&f.err);
  g_object_unref(gone);

  g_free(url);
  g_free(base);
  live_teardown(&lv);
}

/* localhost (both loopbacks, one port) and an IPv6 literal. */
static void test_live_addresses(void **state)
{
  Live lv;
  live_setup(&lv);
  GError *err = NULL;
  Metrics *m = metrics_new("localhost:0", lv.ctx, fill_live, &lv, &err);
  assert_non_null(m);
  char *url = g_strdup_printf("http://127.0.0.1:%u/metrics", metrics_port(m));
  char *body;
  SoupMessage *msg = fetch(&lv, "GET", url, &body);
  assert_int_equal(soup_message_get_status(msg), 200);
  check_exposition(body);
  g_free(body);
  g_free(url);
  g_object_unref(msg);
  metrics_free(m);

  m = metrics_new("[::1]:0", lv.ctx, fill_live, &lv, &err);
  if (!m) {
    /* A host without IPv6 loopback. */
    print_message("skipping [::1]: %s\n", err->message);
    g_clear_error(&err);
  } else {
    url = g_strdup_printf("http://[::1]:%u/metrics", metrics_port(m));
    msg = fetch(&lv, "GET", url, &body);
    assert_int_equal(soup_message_get_status(msg), 200);
    assert_string_equal(header(msg, "Content-Type"), METRICS_CONTENT_TYPE);
    check_exposition(body);
    g_free(body);
    g_free(url);
    g_object_unref(msg);
    metrics_free(m);
  }
  live_teardown(&lv);
}

static void test_bad_addresses(void **state)
{
  static const char *const bad[] = {
      "",         "127.0.0.1", "127.0.0.1:", "127.0.0.1:x",      "127.0.0.1:65536",
      "::1:9100", "[::1]",     "[::1]9100",  "example.org:9100", "127.0.0.1:-1",
      ":9100",    "[]:9100",   "1.2.3:9100", "localhost",        "127.0.0.1:9100 ",
  };
  GMainContext *ctx = g_main_context_new();
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    GError *err = NULL;
    Metrics *m = metrics_new(bad[i], ctx, fill_live, NULL, &err);
    if (m)
      fail_msg("accepted '%s'", bad[i]);
    assert_true(g_error_matches(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT));
    g_error_free(err);
  }
  g_main_context_unref(ctx);
}

/* --- the connection cap (issue 11, finding 17) --------------------------- */

static void spin_ctx(GMainContext *ctx, guint ms)
{
  gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;
  while (g_get_monotonic_time() < end) {
    while (g_main_context_iteration(ctx, FALSE))
      ;
    g_usleep(1000);
  }
}

/* An idle TCP connection to the endpoint (sends nothing). */
static int idle_conn(GMainContext *ctx, uint16_t port)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  assert_true(rc == 0 || errno == EINPROGRESS);
  spin_ctx(ctx, 30); /* the server accepts */
  return fd;
}

/* Did the server close fd (within ms, iterating it)? */
static bool closed_by_server(GMainContext *ctx, int fd, guint ms)
{
  gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;
  do {
    while (g_main_context_iteration(ctx, FALSE))
      ;
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
      return true;
    g_usleep(1000);
  } while (g_get_monotonic_time() < end);
  return false;
}

static void test_connection_cap(void **state)
{
  (void)state;
  Live lv;
  live_setup(&lv);
  Metrics *m = metrics_new("127.0.0.1:0", lv.ctx, fill_live, &lv, NULL);
  assert_non_null(m);
  metrics_set_limits(m, 3, 600);
  char *url = g_strdup_printf("http://127.0.0.1:%u/metrics", metrics_port(m));
  int fds[3];
  for (int i = 0; i < 3; i++)
    fds[i] = idle_conn(lv.ctx, metrics_port(m));
  assert_int_equal(metrics_connections(m), 3);
  /* The (cap+1)-th is closed at once; the others stay. */
  int extra = idle_conn(lv.ctx, metrics_port(m));
  assert_true(closed_by_server(lv.ctx, extra, 300));
  close(extra);
  assert_int_equal(metrics_refused(m), 1);
  assert_false(closed_by_server(lv.ctx, fds[0], 50));

  /* One leaves: a scrape gets its slot. */
  close(fds[0]);
  spin_ctx(lv.ctx, 30);
  char *body;
  SoupMessage *msg = fetch(&lv, "GET", url, &body);
  assert_int_equal(soup_message_get_status(msg), 200);
  g_free(body);
  g_object_unref(msg);
  /* The scraper's keep-alive connection holds the third slot now. */
  assert_int_equal(metrics_connections(m), 3);

  /* The idle ones are closed after 600 ms (plus a sweep), and then a
   * fresh scrape works again. */
  assert_true(closed_by_server(lv.ctx, fds[1], 1500));
  assert_true(closed_by_server(lv.ctx, fds[2], 300));
  assert_true(metrics_idle_closed(m) >= 2);
  g_object_unref(lv.http); /* forget its keep-alive connection */
  lv.http = soup_session_new_with_options("proxy-resolver", NULL, "timeout", 5, NULL);
  msg = fetch(&lv, "GET", url, &body);
  assert_int_equal(soup_message_get_status(msg), 200);
  g_free(body);
  g_object_unref(msg);
  close(fds[1]);
  close(fds[2]);
  g_free(url);
  metrics_free(m);
  live_teardown(&lv);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_counter_gauge_golden),
      cmocka_unit_test(test_labels_golden),
      cmocka_unit_test(test_escaping),
      cmocka_unit_test(test_gauge_values),
      cmocka_unit_test(test_rejects),
      cmocka_unit_test(test_fill_supernode),
      cmocka_unit_test(test_live),
      cmocka_unit_test(test_live_addresses),
      cmocka_unit_test(test_bad_addresses),
      cmocka_unit_test(test_connection_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
