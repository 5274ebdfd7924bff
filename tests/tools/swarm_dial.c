/* swarm_dial.c - the swarm's dialers (swarm_dial.h says why). */
#include "swarm_dial.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
  SwarmDialers *owner;
  GSocketClient *client;
  uint32_t source; /* IPv4, host order; 0: bind nothing */
} Dialer;

struct SwarmDialers {
  Dialer *dialers;
  unsigned n;
  EvLoop *ev;
  uint64_t bind_failures;
  unsigned pending;
};

struct SwarmDial {
  SwarmDialers *owner;
  SwarmDialFn fn;
  void *ud;
  /* The direct path. */
  int fd;
  EvWatch *watch;
  EvTimer timer; /* the connect timeout, or "report now" */
  int error;     /* errno to report when the timer fires early */
  gboolean connected;
  /* The GSocketClient path (a host name). */
  GCancellable *cancel;
};

/* Binds fd to the dialer's source without taking a port: connect() picks
 * one for the whole 4-tuple. */
static void bind_source(Dialer *d, int fd)
{
  int one = 1;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(d->source);
  if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0 ||
      bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
    d->owner->bind_failures++;
}

/* GSocketClient emits CONNECTING with the socket made but not yet connected:
 * the one moment to bind it without taking over the whole connect. */
static void on_event(GSocketClient *client, GSocketClientEvent ev, GSocketConnectable *target,
                     GIOStream *conn, gpointer ud)
{
  Dialer *d = ud;
  if (ev != G_SOCKET_CLIENT_CONNECTING || d->source == 0 || !G_IS_SOCKET_CONNECTION(conn))
    return;
  GSocket *sock = g_socket_connection_get_socket(G_SOCKET_CONNECTION(conn));
  if (g_socket_get_family(sock) == G_SOCKET_FAMILY_IPV4) /* a loopback source fits IPv4 only */
    bind_source(d, g_socket_get_fd(sock));
}

SwarmDialers *swarm_dialers_new(unsigned n_sources, EvLoop *ev)
{
  if (n_sources < 1 || n_sources > SWARM_MAX_SOURCES || !ev)
    return NULL;
  SwarmDialers *s = g_new0(SwarmDialers, 1);
  s->n = n_sources;
  s->ev = ev;
  s->dialers = g_new0(Dialer, n_sources);
  for (unsigned i = 0; i < n_sources; i++) {
    Dialer *d = &s->dialers[i];
    d->owner = s;
    d->client = g_socket_client_new();
    g_socket_client_set_enable_proxy(d->client, FALSE);
    g_socket_client_set_timeout(d->client, SWARM_DIAL_TIMEOUT_MS / 1000);
    if (n_sources > 1) {
      d->source = (127u << 24) | (i + 1);
      g_signal_connect(d->client, "event", G_CALLBACK(on_event), d);
    }
  }
  return s;
}

static void dial_free(SwarmDial *dl)
{
  evtimer_disarm(&dl->timer);
  evwatch_free(dl->watch);
  if (dl->fd >= 0)
    close(dl->fd);
  g_clear_object(&dl->cancel);
  dl->owner->pending--;
  g_free(dl);
}

/* Hands the outcome to the caller and frees the dial. */
static void dial_finish(SwarmDial *dl, int error)
{
  GSocketConnection *conn = NULL;
  char why[128] = "";
  if (error == 0) {
    GError *err = NULL;
    GSocket *sock = g_socket_new_from_fd(dl->fd, &err);
    if (sock) {
      dl->fd = -1; /* the GSocket owns it now */
      conn = g_socket_connection_factory_create_connection(sock);
      g_object_unref(sock);
    } else {
      g_snprintf(why, sizeof why, "%s", err->message);
      g_error_free(err);
    }
  } else {
    g_snprintf(why, sizeof why, "connect: %s", g_strerror(error));
  }
  SwarmDialFn fn = dl->fn;
  void *ud = dl->ud;
  evwatch_free(dl->watch);
  dl->watch = NULL;
  dial_free(dl);
  fn(conn, conn ? NULL : why, ud);
}

static void on_writable(EvWatch *w, unsigned events, void *ud)
{
  SwarmDial *dl = ud;
  int error = 0;
  socklen_t len = sizeof error;
  if (getsockopt(dl->fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0)
    error = errno;
  dial_finish(dl, error);
}

static void on_timer(EvTimer *t, void *ud)
{
  SwarmDial *dl = ud;
  dial_finish(dl, dl->connected ? 0 : dl->error ? dl->error : ETIMEDOUT);
}

static void on_client_done(GObject *src, GAsyncResult *res, gpointer ud)
{
  SwarmDial *dl = ud;
  GError *err = NULL;
  GSocketConnection *conn = g_socket_client_connect_to_host_finish(G_SOCKET_CLIENT(src), res, &err);
  if (g_cancellable_is_cancelled(dl->cancel)) {
    /* swarm_dial_cancel() left the dial to us. */
    g_clear_object(&conn);
    g_clear_error(&err);
    dial_free(dl);
    return;
  }
  SwarmDialFn fn = dl->fn;
  void *cb_ud = dl->ud;
  char why[128] = "";
  if (!conn)
    g_snprintf(why, sizeof why, "%s", err->message);
  g_clear_error(&err);
  dial_free(dl);
  fn(conn, conn ? NULL : why, cb_ud);
}

/* "1.2.3.4:P" or "[v6]:P" with a numeric host, into sa; false otherwise. */
static gboolean parse_numeric(const char *addr, struct sockaddr_storage *sa, socklen_t *len)
{
  char host[INET6_ADDRSTRLEN + 2];
  const char *colon = strrchr(addr, ':');
  if (!colon || (size_t)(colon - addr) >= sizeof host)
    return FALSE;
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = '\0';
  char *end;
  unsigned long port = strtoul(colon + 1, &end, 10);
  if (*end || end == colon + 1 || port == 0 || port > 65535)
    return FALSE;
  memset(sa, 0, sizeof *sa);
  struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
  size_t hl = strlen(host);
  if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
    host[hl - 1] = '\0';
    if (inet_pton(AF_INET6, host + 1, &v6->sin6_addr) != 1)
      return FALSE;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    *len = sizeof *v6;
    return TRUE;
  }
  if (inet_pton(AF_INET, host, &v4->sin_addr) != 1)
    return FALSE;
  v4->sin_family = AF_INET;
  v4->sin_port = htons((uint16_t)port);
  *len = sizeof *v4;
  return TRUE;
}

SwarmDial *swarm_dial_start(SwarmDialers *d, uint64_t leaf, const char *addr, SwarmDialFn fn,
                            void *ud)
{
  Dialer *dr = &d->dialers[leaf % d->n];
  SwarmDial *dl = g_new0(SwarmDial, 1);
  dl->owner = d;
  dl->fn = fn;
  dl->ud = ud;
  dl->fd = -1;
  d->pending++;
  evtimer_init(&dl->timer, d->ev, on_timer, dl);
  struct sockaddr_storage sa;
  socklen_t len;
  if (!parse_numeric(addr, &sa, &len)) {
    dl->cancel = g_cancellable_new();
    g_socket_client_connect_to_host_async(dr->client, addr, 0, dl->cancel, on_client_done, dl);
    return dl;
  }
  dl->fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (dl->fd < 0) {
    dl->error = errno;
  } else {
    if (dr->source && sa.ss_family == AF_INET)
      bind_source(dr, dl->fd);
    if (connect(dl->fd, (struct sockaddr *)&sa, len) == 0)
      dl->connected = TRUE;
    else if (errno != EINPROGRESS)
      dl->error = errno;
    else
      dl->watch = evwatch_new(d->ev, dl->fd, EV_OUT, on_writable, dl);
  }
  if (dl->watch) {
    evtimer_arm(&dl->timer, evloop_now(d->ev) + SWARM_DIAL_TIMEOUT_MS);
  } else {
    /* Done already (or failed): reported from the loop, as promised. */
    if (!dl->connected && !dl->error)
      dl->error = ENOMEM; /* epoll refused the fd */
    evtimer_arm(&dl->timer, evloop_now(d->ev));
  }
  return dl;
}

void swarm_dial_cancel(SwarmDial *dl)
{
  if (!dl)
    return;
  if (dl->cancel) {
    /* GSocketClient still calls back, once; on_client_done frees it. */
    g_cancellable_cancel(dl->cancel);
    return;
  }
  dial_free(dl);
}

unsigned swarm_dials_pending(const SwarmDialers *d)
{
  return d->pending;
}

uint64_t swarm_dialers_bind_failures(const SwarmDialers *d)
{
  return d->bind_failures;
}

void swarm_dialers_free(SwarmDialers *d)
{
  if (!d)
    return;
  for (unsigned i = 0; i < d->n; i++)
    g_object_unref(d->dialers[i].client);
  g_free(d->dialers);
  g_free(d);
}
