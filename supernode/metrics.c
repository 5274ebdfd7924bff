/* metrics.c - Prometheus text exposition (format 0.0.4) over libsoup 3.
 *
 * The format, as Prometheus parses it (expfmt text parser):
 *   # HELP <name> <help, with \\ and \n escaped>
 *   # TYPE <name> counter|gauge
 *   <name>{<label>="<value, with \\ \" and \n escaped>",...} <float>
 * One HELP and one TYPE per family, both before its first sample, and a
 * family's samples in one contiguous group; a counter's samples carry the
 * family's name, which by convention ends in _total.
 */
#include "metrics.h"

#include <libsoup/soup.h>
#include <string.h>

/* --- the writer ------------------------------------------------------------- */

typedef enum { FAMILY_COUNTER = 1, FAMILY_GAUGE } FamilyType;

struct MetricsWriter {
  GString *out;
  GHashTable *families; /* full name (owned) -> FamilyType */
  char *current;        /* the family whose samples are being written */
  bool ok;
};

MetricsWriter *metrics_writer_new(void)
{
  MetricsWriter *w = g_new0(MetricsWriter, 1);
  w->out = g_string_sized_new(4096);
  w->families = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  w->ok = true;
  return w;
}

void metrics_writer_free(MetricsWriter *w)
{
  if (!w)
    return;
  g_string_free(w->out, TRUE);
  g_hash_table_destroy(w->families);
  g_free(w->current);
  g_free(w);
}

const char *metrics_writer_text(const MetricsWriter *w, size_t *len)
{
  if (len)
    *len = w->out->len;
  return w->out->str;
}

bool metrics_writer_ok(const MetricsWriter *w)
{
  return w->ok;
}

/* Metric names are [a-zA-Z_:][a-zA-Z0-9_:]*; ours all start with the
 * prefix, so the part a caller gives may start with a digit. */
static bool name_ok(const char *s)
{
  if (!s || !*s)
    return false;
  for (; *s; s++)
    if (!g_ascii_isalnum(*s) && *s != '_' && *s != ':')
      return false;
  return true;
}

/* Label names are [a-zA-Z_][a-zA-Z0-9_]*; "__" starts reserved ones. */
static bool label_name_ok(const char *s)
{
  if (!s || !*s || g_ascii_isdigit(*s) || g_str_has_prefix(s, "__"))
    return false;
  for (; *s; s++)
    if (!g_ascii_isalnum(*s) && *s != '_')
      return false;
  return true;
}

static bool labels_ok(const char *const *labels)
{
  for (size_t i = 0; labels && labels[i]; i += 2) {
    if (!label_name_ok(labels[i]) || !labels[i + 1] || !g_utf8_validate(labels[i + 1], -1, NULL))
      return false;
    for (size_t j = 0; j < i; j += 2)
      if (strcmp(labels[i], labels[j]) == 0)
        return false;
  }
  return true;
}

/* HELP text escapes backslash and newline; label values also the double
 * quote that ends them. */
static void append_escaped(GString *out, const char *s, bool quote)
{
  for (; *s; s++) {
    if (*s == '\\')
      g_string_append(out, "\\\\");
    else if (*s == '\n')
      g_string_append(out, "\\n");
    else if (*s == '"' && quote)
      g_string_append(out, "\\\"");
    else
      g_string_append_c(out, *s);
  }
}

/* Go's strconv.ParseFloat reads what we write: integers without a
 * fraction, otherwise the shortest of %.15g/%.17g that reads back equal,
 * and the spellings NaN, +Inf, -Inf. Always in the C locale. */
static void append_double(GString *out, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  if (v != v) {
    g_string_append(out, "NaN");
  } else if (v > G_MAXDOUBLE || v < -G_MAXDOUBLE) {
    g_string_append(out, v > 0 ? "+Inf" : "-Inf");
  } else if (v > -1e15 && v < 1e15 && v == (double)(int64_t)v) {
    g_string_append_printf(out, "%" G_GINT64_FORMAT, (int64_t)v); /* -0.0 prints as 0 */
  } else {
    g_ascii_formatd(buf, sizeof buf, "%.15g", v);
    if (g_ascii_strtod(buf, NULL) != v)
      g_ascii_formatd(buf, sizeof buf, "%.17g", v);
    g_string_append(out, buf);
  }
}

/* Checks the call, writes HELP and TYPE when the family starts, then the
 * sample's name and labels; the caller appends the value. False (and the
 * writer failed) if the call breaks the format. */
static bool begin_sample(MetricsWriter *w, const char *name, const char *help, FamilyType type,
                         const char *const *labels)
{
  if (!name_ok(name) || (type == FAMILY_COUNTER && g_str_has_suffix(name, "_total")) || !help ||
      !g_utf8_validate(help, -1, NULL) || !labels_ok(labels)) {
    w->ok = false;
    return false;
  }
  char *full = g_strconcat(METRICS_PREFIX, name, type == FAMILY_COUNTER ? "_total" : "", NULL);
  if (!w->current || strcmp(w->current, full) != 0) {
    if (g_hash_table_contains(w->families, full)) {
      /* Declared before: a second TYPE, or a split family, is invalid. */
      g_free(full);
      w->ok = false;
      return false;
    }
    g_string_append_printf(w->out, "# HELP %s ", full);
    append_escaped(w->out, help, false);
    g_string_append_printf(w->out, "\n# TYPE %s %s\n", full,
                           type == FAMILY_COUNTER ? "counter" : "gauge");
    g_hash_table_insert(w->families, g_strdup(full), GINT_TO_POINTER(type));
    g_free(w->current);
    w->current = g_strdup(full);
  } else if (GPOINTER_TO_INT(g_hash_table_lookup(w->families, full)) != (int)type) {
    g_free(full); /* a gauge "x_total" right after the counter "x" */
    w->ok = false;
    return false;
  }
  g_string_append(w->out, full);
  g_free(full);
  if (labels && labels[0]) {
    g_string_append_c(w->out, '{');
    for (size_t i = 0; labels[i]; i += 2) {
      g_string_append_printf(w->out, "%s%s=\"", i ? "," : "", labels[i]);
      append_escaped(w->out, labels[i + 1], true);
      g_string_append_c(w->out, '"');
    }
    g_string_append_c(w->out, '}');
  }
  g_string_append_c(w->out, ' ');
  return true;
}

void metrics_counter_labels(MetricsWriter *w, const char *name, const char *help,
                            const char *const *labels, uint64_t value)
{
  if (begin_sample(w, name, help, FAMILY_COUNTER, labels))
    g_string_append_printf(w->out, "%" G_GUINT64_FORMAT "\n", value);
}

void metrics_gauge_labels(MetricsWriter *w, const char *name, const char *help,
                          const char *const *labels, double value)
{
  if (begin_sample(w, name, help, FAMILY_GAUGE, labels)) {
    append_double(w->out, value);
    g_string_append_c(w->out, '\n');
  }
}

void metrics_counter(MetricsWriter *w, const char *name, const char *help, uint64_t value)
{
  metrics_counter_labels(w, name, help, NULL, value);
}

void metrics_gauge(MetricsWriter *w, const char *name, const char *help, double value)
{
  metrics_gauge_labels(w, name, help, NULL, value);
}

/* --- the super node's families ---------------------------------------------- */

void metrics_fill_supernode(MetricsWriter *w, const SnStats *st, const SnGroupStatus *g,
                            const MetricsExtra *x)
{
  static const MetricsExtra none = {0};
  static const char *const roles[] = {
      [SN_ROLE_JOINING] = "joining",
      [SN_ROLE_LEADER] = "leader",
      [SN_ROLE_BACKUP] = "backup",
      [SN_ROLE_STANDBY] = "standby",
  };
  if (!x)
    x = &none;

  /* Sessions and the overlay. */
  metrics_gauge(w, "sessions", "Open sessions, leaves and links, handshakes included.",
                (double)x->sessions);
  metrics_counter(w, "sessions_opened", "Sessions that completed their handshake.",
                  st->sessions_opened);
  metrics_counter(w, "sessions_refused", "Inbound connections refused over the session cap.",
                  x->sessions_refused);
  metrics_gauge(w, "leaves", "Leaf sessions.", st->leaves);
  metrics_gauge(w, "links", "Links to other super nodes.", st->links);
  metrics_counter(w, "links_refused", "Super nodes refused: not admitted to our network.",
                  st->links_refused);
  metrics_gauge(w, "index_entries", "Entries in the search index.", (double)st->index_entries);
  metrics_counter(w, "index_entries_rejected",
                  "Entries refused over the per-leaf or total index caps.", st->entries_rejected);
  metrics_counter(w, "malformed_messages", "Messages that failed to decode or came out of place.",
                  st->malformed);
  metrics_counter_labels(w, "session_bytes", "Session bytes on the wire, by direction.",
                         (const char *const[]){"direction", "in", NULL}, x->bytes_in);
  metrics_counter_labels(w, "session_bytes", "Session bytes on the wire, by direction.",
                         (const char *const[]){"direction", "out", NULL}, x->bytes_out);

  /* Search. */
  metrics_counter(w, "queries_received", "Queries received: SEARCH from leaves, QUERY from links.",
                  st->queries_received);
  metrics_counter(w, "queries_handled", "Distinct query ids answered.", st->queries_handled);
  metrics_counter(w, "queries_forwarded", "QUERY messages sent to links.", st->queries_forwarded);
  metrics_counter(w, "queries_duplicate", "Queries dropped as already handled.",
                  st->queries_duplicate);
  metrics_counter(w, "queries_throttled", "Queries dropped over a session's rate.",
                  st->queries_throttled);
  metrics_counter(w, "hits_sent", "Hits sent from this node's index.", st->hits_sent);
  metrics_counter(w, "hits_relayed", "Hits passed back along a query's reverse path.",
                  st->hits_relayed);
  metrics_counter(w, "hits_dropped", "Hits dropped: no route back, or over the relay cap.",
                  st->hits_dropped);

  /* Connectivity: ICE signalling, STUN, TURN. */
  metrics_counter(w, "signals_relayed", "ICE offers and answers passed on.", st->signals_relayed);
  metrics_counter(w, "signals_delivered", "ICE offers and answers delivered to own leaves.",
                  st->signals_delivered);
  metrics_counter(w, "signals_dropped", "ICE signalling dropped: no route, duplicate, or rate.",
                  st->signals_dropped);
  metrics_counter(w, "stun_requests", "STUN binding requests answered.", x->stun_requests);
  metrics_counter(w, "stun_dropped", "STUN datagrams not answered (malformed, other, or rate).",
                  x->stun_dropped);
  metrics_counter(w, "turn_credentials_issued", "TURN credentials handed to leaves.",
                  x->turn_credentials_issued);

  /* The group (supernode/GROUPS.md). */
  for (size_t i = 0; i < G_N_ELEMENTS(roles); i++)
    metrics_gauge_labels(w, "group_role", "This node's role in its group (one-hot).",
                         (const char *const[]){"role", roles[i], NULL},
                         (size_t)g->role == i ? 1 : 0);
  metrics_gauge_labels(w, "group_info", "The group this node serves (\"\" for a group of one).",
                       (const char *const[]){"group", g->group, NULL}, 1);
  metrics_gauge(w, "group_term", "The group's term as this node knows it.", (double)g->term);
  metrics_gauge(w, "group_members", "Super nodes of the group linked to this one.", g->members);
  metrics_gauge(w, "group_watchers", "Watch sessions (backup).", g->watchers);
  metrics_gauge(w, "group_records", "Leaf records held, attached or replicated.", g->records);
  metrics_gauge(w, "replication_lag_ops",
                "Leader: replication ops the backup has not acknowledged.",
                (double)g->repl_lag_ops);
  metrics_gauge(w, "replication_lag_seconds",
                "Leader: age of the oldest op the backup has not acknowledged.",
                (double)g->repl_lag_ms / 1000.0);
  metrics_counter(w, "replication_applied_ops", "Backup: replication ops applied.",
                  g->repl_applied);
  metrics_counter(w, "group_takeovers", "Times this node became leader by taking over.",
                  g->takeovers);
  metrics_counter(w, "group_stepdowns", "Times this node stopped leading on a higher term.",
                  g->stepdowns);
  metrics_counter(w, "group_failovers", "Times the group's leader became another node.",
                  x->failovers);

  /* Memory budgets (supernode/MEMORY.md). */
  metrics_gauge(w, "memory_limit_bytes", "The configured memory ceiling.", (double)x->memory_limit);
  metrics_gauge(w, "output_queued_bytes", "Output queued for all sessions.",
                (double)x->output_queued);
  metrics_counter(w, "output_refused", "Output refused over the queued-output budget.",
                  x->output_refused);
  metrics_counter(w, "output_overruns", "Sessions cut off for not reading their output.",
                  x->output_overruns);
  metrics_gauge(w, "index_bytes", "Index memory held, as the index budget counts it.",
                (double)st->index_bytes);
  metrics_counter(w, "index_entries_over_share",
                  "Entries refused over the publishing address's share of the index.",
                  st->entries_over_share);
  metrics_counter(w, "publish_throttled", "Entries dropped over a leaf's publish rate.",
                  st->publish_throttled);
}

/* --- the HTTP endpoint ------------------------------------------------------ */

struct Metrics {
  SoupServer *server;
  MetricsFillFn fill;
  void *ud;
  uint16_t port;
  uint64_t scrapes;
};

static void respond_text(SoupServerMessage *msg, guint status, const char *text)
{
  soup_server_message_set_status(msg, status, NULL);
  soup_server_message_set_response(msg, "text/plain; charset=utf-8", SOUP_MEMORY_STATIC, text,
                                   strlen(text));
}

static void on_request(SoupServer *server, SoupServerMessage *msg, const char *path,
                       GHashTable *query, gpointer ud)
{
  Metrics *m = ud;
  const char *method = soup_server_message_get_method(msg);
  if (strcmp(path, "/metrics") != 0) {
    respond_text(msg, SOUP_STATUS_NOT_FOUND, "not found: the metrics are at /metrics\n");
    return;
  }
  if (strcmp(method, SOUP_METHOD_GET) != 0 && strcmp(method, SOUP_METHOD_HEAD) != 0) {
    /* RFC 9110 section 15.5.6: a 405 names the allowed methods. */
    soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Allow",
                                 "GET, HEAD");
    respond_text(msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "method not allowed: use GET\n");
    return;
  }
  MetricsWriter *w = metrics_writer_new();
  m->fill(w, m->ud);
  if (!w->ok) {
    g_warning("a family was rejected by the writer (a bug); answering 500");
    respond_text(msg, SOUP_STATUS_INTERNAL_SERVER_ERROR, "metrics are broken; see the log\n");
    metrics_writer_free(w);
    return;
  }
  size_t len = w->out->len;
  char *body = g_string_free(w->out, FALSE);
  w->out = g_string_new(NULL);
  metrics_writer_free(w);
  soup_server_message_set_status(msg, SOUP_STATUS_OK, NULL);
  soup_message_headers_replace(soup_server_message_get_response_headers(msg), "Cache-Control",
                               "no-store");
  soup_server_message_set_response(msg, METRICS_CONTENT_TYPE, SOUP_MEMORY_TAKE, body, len);
  m->scrapes++;
}

/* "IPv4:PORT", "[IPv6]:PORT" or "localhost:PORT"; the port is required. */
static bool parse_host_port(const char *hp, char **host, guint16 *port, GError **error)
{
  const char *colon;
  if (hp[0] == '[') {
    const char *close = strchr(hp, ']');
    if (!close || close[1] != ':')
      goto bad;
    *host = g_strndup(hp + 1, (gsize)(close - hp - 1));
    colon = close + 1;
  } else {
    colon = strrchr(hp, ':');
    if (!colon || memchr(hp, ':', (size_t)(colon - hp)))
      goto bad; /* none, or an unbracketed IPv6 address */
    *host = g_strndup(hp, (gsize)(colon - hp));
  }
  guint64 p;
  if (!g_ascii_string_to_unsigned(colon + 1, 10, 0, 65535, &p, NULL) ||
      (strcmp(*host, "localhost") != 0 && !g_hostname_is_ip_address(*host))) {
    g_clear_pointer(host, g_free);
    goto bad;
  }
  *port = (guint16)p;
  return true;
bad:
  g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
              "'%s': expected IPv4:PORT, [IPv6]:PORT or localhost:PORT", hp);
  return false;
}

Metrics *metrics_new(const char *host_port, GMainContext *ctx, MetricsFillFn fill, void *ud,
                     GError **error)
{
  char *host = NULL;
  guint16 port = 0;
  GSocketAddress *sa = NULL;
  bool ok = false;
  if (!parse_host_port(host_port, &host, &port, error))
    return NULL;

  Metrics *m = g_new0(Metrics, 1);
  m->fill = fill;
  m->ud = ud;
  /* SoupServer attaches its listening sources to the thread-default
   * context at listen time. */
  g_main_context_push_thread_default(ctx);
  m->server = soup_server_new("server-header", "canopy-supernode", NULL);
  soup_server_add_handler(m->server, NULL, on_request, m, NULL);
  if (strcmp(host, "localhost") == 0) {
    /* Both loopbacks; with port 0 the IPv6 one reuses IPv4's port. */
    ok = soup_server_listen_local(m->server, port, 0, error);
  } else {
    sa = g_inet_socket_address_new_from_string(host, port);
    ok = sa && soup_server_listen(m->server, sa, 0, error);
  }
  g_main_context_pop_thread_default(ctx);
  if (!ok)
    goto out;
  GSList *ls = soup_server_get_listeners(m->server);
  GSocketAddress *local = ls ? g_socket_get_local_address(ls->data, NULL) : NULL;
  if (local)
    m->port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(local));
  g_clear_object(&local);
  g_slist_free(ls);
  g_info("metrics at http://%s/metrics (port %u)", host_port, m->port);
out:
  g_clear_object(&sa);
  g_free(host);
  if (!ok) {
    metrics_free(m);
    return NULL;
  }
  return m;
}

void metrics_free(Metrics *m)
{
  if (!m)
    return;
  if (m->server) {
    soup_server_disconnect(m->server);
    g_object_unref(m->server);
  }
  g_free(m);
}

uint16_t metrics_port(const Metrics *m)
{
  return m->port;
}

uint64_t metrics_scrapes(const Metrics *m)
{
  return m->scrapes;
}
