/* swarm_dial.c - the swarm's dialers (swarm_dial.h says why). */
#include "swarm_dial.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef struct {
  SwarmDialers *owner;
  GSocketClient *client;
  uint32_t source; /* IPv4, host order; 0: bind nothing */
} Dialer;

struct SwarmDialers {
  Dialer *dialers;
  unsigned n;
  uint64_t bind_failures;
};

/* GSocketClient emits CONNECTING with the socket made but not yet connected:
 * the one moment to bind it without taking over the whole connect. */
static void on_event(GSocketClient *client, GSocketClientEvent ev, GSocketConnectable *target,
                     GIOStream *conn, gpointer ud)
{
  Dialer *d = ud;
  if (ev != G_SOCKET_CLIENT_CONNECTING || d->source == 0 || !G_IS_SOCKET_CONNECTION(conn))
    return;
  GSocket *sock = g_socket_connection_get_socket(G_SOCKET_CONNECTION(conn));
  if (g_socket_get_family(sock) != G_SOCKET_FAMILY_IPV4)
    return; /* a loopback source fits an IPv4 loopback target only */
  int fd = g_socket_get_fd(sock), one = 1;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(d->source);
  if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0 ||
      bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
    d->owner->bind_failures++;
}

SwarmDialers *swarm_dialers_new(unsigned n_sources, guint timeout_s)
{
  if (n_sources < 1 || n_sources > SWARM_MAX_SOURCES)
    return NULL;
  SwarmDialers *s = g_new0(SwarmDialers, 1);
  s->n = n_sources;
  s->dialers = g_new0(Dialer, n_sources);
  for (unsigned i = 0; i < n_sources; i++) {
    Dialer *d = &s->dialers[i];
    d->owner = s;
    d->client = g_socket_client_new();
    g_socket_client_set_enable_proxy(d->client, FALSE);
    g_socket_client_set_timeout(d->client, timeout_s);
    if (n_sources > 1) {
      d->source = (127u << 24) | (i + 1);
      g_signal_connect(d->client, "event", G_CALLBACK(on_event), d);
    }
  }
  return s;
}

GSocketClient *swarm_dialers_for(SwarmDialers *d, uint64_t leaf)
{
  return d->dialers[leaf % d->n].client;
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
