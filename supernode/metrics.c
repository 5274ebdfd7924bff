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
  metrics_counter(w, "handshake_cookies_sent", "Handshakes answered with a cookie challenge.",
                  x->handshake_cookies_sent);
  metrics_counter(w, "handshake_cookies_accepted", "Solved cookies that opened a handshake.",
                  x->handshake_cookies_accepted);
  metrics_counter(w, "handshake_cookies_refused",
                  "Cookies refused: forged, expired, unsolved or replayed.",
                  x->handshake_cookies_refused);
  metrics_gauge(w, "handshakes_pending", "Handshakes past their first message, not finished.",
                (double)x->handshakes_pending);
  metrics_gauge(w, "handshake_cookie_step", "1 while handshakes must solve a cookie first.",
                x->handshake_cookie_step ? 1 : 0);
  metrics_gauge(w, "handshake_cookie_prefixes",
                "Address prefixes that must solve a cookie first (they abandoned handshakes).",
                (double)x->handshake_cookie_prefixes);
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
  metrics_counter(w, "queries_throttled", "Queries dropped over a session's rate or their share.",
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

/* We accept the connections ourselves and hand them to libsoup, which has
 * no cap on them: each costs a socket and libsoup's state, and a stranger
 * who can reach the port could open thousands and keep them idle. */
typedef struct {
  GSocketConnection *conn;
  gint64 last; /* monotonic µs of the last request, or of the accept */
} MetricsConn;

struct Metrics {
  SoupServer *server;
  GSocketService *service;
  GMainContext *ctx;
  GSource *sweep;
  GPtrArray *conns; /* MetricsConn*, owned */
  guint max_conns, idle_ms;
  MetricsFillFn fill;
  void *ud;
  uint16_t port;
  uint64_t scrapes, refused, idle_closed;
};

static void conn_free(gpointer p)
{
  MetricsConn *c = p;
  g_object_unref(c->conn);
  g_free(c);
}

static bool conn_over(const MetricsConn *c)
{
  GSocket *s = g_socket_connection_get_socket(c->conn);
  return g_socket_is_closed(s) || (g_socket_condition_check(s, G_IO_HUP | G_IO_ERR) != 0);
}

/* Forgets connections libsoup or the client closed; closes idle ones. */
static void sweep(Metrics *m)
{
  gint64 now = g_get_monotonic_time();
  for (guint i = m->conns->len; i-- > 0;) {
    MetricsConn *c = g_ptr_array_index(m->conns, i);
    if (conn_over(c)) {
      g_ptr_array_remove_index_fast(m->conns, i);
    } else if (now - c->last >= (gint64)m->idle_ms * 1000) {
      /* libsoup sees the end of the stream and cleans up its side. */
      g_socket_shutdown(g_socket_connection_get_socket(c->conn), TRUE, TRUE, NULL);
      m->idle_closed++;
      g_debug("metrics connection idle for %u ms: closed", m->idle_ms);
      g_ptr_array_remove_index_fast(m->conns, i);
    }
  }
}

static gboolean on_sweep(gpointer ud)
{
  sweep(ud);
  return G_SOURCE_CONTINUE;
}

static void arm_sweep(Metrics *m)
{
  if (m->sweep) {
    g_source_destroy(m->sweep);
    g_source_unref(m->sweep);
  }
  /* A quarter of the idle time: a connection lives at most 1.25 times it. */
  m->sweep = g_timeout_source_new(MAX(m->idle_ms / 4, 10));
  g_source_set_callback(m->sweep, on_sweep, m, NULL);
  g_source_attach(m->sweep, m->ctx);
}

static void on_request_seen(SoupServer *server, SoupServerMessage *msg, gpointer ud)
{
  (void)server;
  Metrics *m = ud;
  GSocket *s = soup_server_message_get_socket(msg);
  for (guint i = 0; i < m->conns->len; i++) {
    MetricsConn *c = g_ptr_array_index(m->conns, i);
    if (g_socket_connection_get_socket(c->conn) == s)
      c->last = g_get_monotonic_time();
  }
}

static gboolean on_incoming(GSocketService *svc, GSocketConnection *conn, GObject *src, gpointer ud)
{
  (void)svc;
  (void)src;
  Metrics *m = ud;
  sweep(m);
  if (m->conns->len >= m->max_conns) {
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                               "Connection: close\r\n\r\n";
    GSocket *s = g_socket_connection_get_socket(conn);
    m->refused++;
    g_debug("metrics connection refused: %u open", m->conns->len);
    g_socket_set_blocking(s, FALSE);
    g_socket_send(s, busy, sizeof busy - 1, NULL, NULL); /* best effort, never waits */
    g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
    return TRUE;
  }
  GSocketAddress *local = g_socket_connection_get_local_address(conn, NULL);
  GSocketAddress *remote = g_socket_connection_get_remote_address(conn, NULL);
  GError *err = NULL;
  g_main_context_push_thread_default(m->ctx);
  gboolean ok = soup_server_accept_iostream(m->server, G_IO_STREAM(conn), local, remote, &err);
  g_main_context_pop_thread_default(m->ctx);
  if (ok) {
    MetricsConn *c = g_new0(MetricsConn, 1);
    c->conn = g_object_ref(conn);
    c->last = g_get_monotonic_time();
    g_ptr_array_add(m->conns, c);
  } else {
    g_debug("metrics connection not accepted: %s", err->message);
    g_error_free(err);
    g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
  }
  g_clear_object(&local);
  g_clear_object(&remote);
  return TRUE;
}

/* Binds one address; *port (0: any) is set to the bound port. */
static bool listen_on(Metrics *m, const char *host, guint16 *port, GError **error)
{
  GSocketAddress *sa = g_inet_socket_address_new_from_string(host, *port);
  if (!sa) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "bad address %s", host);
    return false;
  }
  GSocketAddress *bound = NULL;
  bool ok = g_socket_listener_add_address(G_SOCKET_LISTENER(m->service), sa, G_SOCKET_TYPE_STREAM,
                                          G_SOCKET_PROTOCOL_TCP, NULL, &bound, error);
  if (ok)
    *port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
  g_clear_object(&bound);
  g_object_unref(sa);
  return ok;
}

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
  bool ok = false;
  if (!parse_host_port(host_port, &host, &port, error))
    return NULL;

  Metrics *m = g_new0(Metrics, 1);
  m->fill = fill;
  m->ud = ud;
  m->ctx = ctx;
  m->max_conns = METRICS_MAX_CONNS;
  m->idle_ms = METRICS_IDLE_MS;
  m->conns = g_ptr_array_new_with_free_func(conn_free);
  m->server = soup_server_new("server-header", "canopy-supernode", NULL);
  soup_server_add_handler(m->server, NULL, on_request, m, NULL);
  g_signal_connect(m->server, "request-started", G_CALLBACK(on_request_seen), m);
  g_signal_connect(m->server, "request-finished", G_CALLBACK(on_request_seen), m);
  /* The service attaches its accept source to the thread-default context. */
  g_main_context_push_thread_default(ctx);
  m->service = g_socket_service_new();
  g_signal_connect(m->service, "incoming", G_CALLBACK(on_incoming), m);
  if (strcmp(host, "localhost") == 0) {
    /* Both loopbacks on one port; a host without IPv6 keeps the IPv4 one. */
    ok = listen_on(m, "127.0.0.1", &port, error);
    if (ok && !listen_on(m, "::1", &port, NULL))
      g_debug("metrics: no IPv6 loopback");
  } else {
    ok = listen_on(m, host, &port, error);
  }
  if (ok)
    g_socket_service_start(m->service);
  g_main_context_pop_thread_default(ctx);
  if (!ok)
    goto out;
  m->port = port;
  arm_sweep(m);
  g_info("metrics at http://%s/metrics (port %u)", host_port, m->port);
out:
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
  if (m->sweep) {
    g_source_destroy(m->sweep);
    g_source_unref(m->sweep);
  }
  if (m->service) {
    g_socket_service_stop(m->service);
    g_socket_listener_close(G_SOCKET_LISTENER(m->service));
    g_object_unref(m->service);
  }
  if (m->server) {
    soup_server_disconnect(m->server);
    g_object_unref(m->server);
  }
  g_ptr_array_unref(m->conns);
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

void metrics_set_limits(Metrics *m, guint max_conns, guint idle_ms)
{
  m->max_conns = max_conns;
  m->idle_ms = idle_ms;
  arm_sweep(m);
}

guint metrics_connections(const Metrics *m)
{
  return m->conns->len;
}

uint64_t metrics_refused(const Metrics *m)
{
  return m->refused;
}

uint64_t metrics_idle_closed(const Metrics *m)
{
  return m->idle_closed;
}
