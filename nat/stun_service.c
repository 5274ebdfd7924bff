/* stun_service.c - the glib shell that answers STUN on a UDP socket.
 *
 * Reads datagrams straight from the socket's fd (recvfrom into a stack
 * buffer: no allocation per datagram, so a garbage flood costs no memory),
 * hands each to stun_server_answer and sends what it returns. A bounded
 * number of datagrams is handled per wakeup so that a flood cannot starve
 * the other sources of the main context.
 */
#include "stun_service.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>
#include <sys/socket.h>

#include "stun_limit.h"
#include "stun_server.h"

/* Default port when host_port names none (RFC 5389 section 9). */
#define STUN_DEFAULT_PORT 3478
/* Datagrams read per wakeup before yielding to other sources. */
#define STUN_SERVICE_BATCH 64
/* Log "rate limited" at most this often. */
#define STUN_LIMIT_LOG_MS 10000

struct StunService {
  GSocket *socket;
  GSource *source;
  StunLimit *limit;
  uint16_t port;
  uint64_t requests;
  uint64_t dropped;
  uint64_t limited;         /* answers refused by a budget (stun_limit.h) */
  uint64_t limit_logged_ms; /* when "rate limited" was last logged (0: never) */
};

static uint64_t now_ms(void)
{
  return (uint64_t)(g_get_monotonic_time() / 1000);
}

static void note_limited(StunService *s, StunLimitVerdict v, uint64_t now)
{
  static const char *const what[] = {
      [STUN_LIMIT_ADDR] = "one source address's budget",
      [STUN_LIMIT_PREFIX] = "one source prefix's budget",
      [STUN_LIMIT_GLOBAL] = "the global budget",
      [STUN_LIMIT_BAD] = "no budget (unknown address family)",
  };
  s->limited++;
  if (s->limit_logged_ms == 0 || now - s->limit_logged_ms >= STUN_LIMIT_LOG_MS) {
    s->limit_logged_ms = now;
    g_info("STUN answers over %s: dropping (%" G_GUINT64_FORMAT " so far)", what[v], s->limited);
  }
}

static gboolean on_readable(GSocket *socket, GIOCondition cond, gpointer ud)
{
  StunService *s = ud;
  int fd = g_socket_get_fd(socket);
  /* One byte more than any request answered: MSG_TRUNC reports the real
   * length of a longer datagram, which is then dropped unread. */
  uint8_t buf[STUN_SERVER_MAX_REQUEST + 1];
  uint8_t out[STUN_SERVER_MAX_RESPONSE];

  for (int i = 0; i < STUN_SERVICE_BATCH; i++) {
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    ssize_t n =
        recvfrom(fd, buf, sizeof buf, MSG_TRUNC | MSG_DONTWAIT, (struct sockaddr *)&from, &fromlen);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      break; /* EAGAIN: drained; anything else: the next wakeup retries */
    }
    if ((size_t)n > STUN_SERVER_MAX_REQUEST || fromlen > sizeof from) {
      s->dropped++;
      continue;
    }
    size_t len =
        stun_server_answer(buf, (size_t)n, (struct sockaddr *)&from, fromlen, out, sizeof out);
    if (len == 0) {
      s->dropped++;
      continue;
    }
    uint64_t now = now_ms();
    StunLimitVerdict v = stun_limit_take(s->limit, (struct sockaddr *)&from, fromlen, now);
    if (v != STUN_LIMIT_OK) {
      s->dropped++;
      note_limited(s, v, now);
      continue;
    }
    /* A full send buffer drops the answer; the client retransmits. */
    if (sendto(fd, out, len, MSG_DONTWAIT, (struct sockaddr *)&from, fromlen) != (ssize_t)len) {
      s->dropped++;
      continue;
    }
    s->requests++;
  }
  return G_SOURCE_CONTINUE;
}

StunService *stun_service_new(const char *host_port, GMainContext *ctx, GError **error)
{
  StunService *s = NULL;
  GSocketConnectable *na = NULL;
  GSocketAddress *sa = NULL, *bound = NULL;
  GSocket *sock = NULL;

  if (!host_port) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "no STUN address");
    goto out;
  }
  na = g_network_address_parse(host_port, STUN_DEFAULT_PORT, error);
  if (!na)
    goto out;
  sa = g_inet_socket_address_new_from_string(g_network_address_get_hostname(G_NETWORK_ADDRESS(na)),
                                             g_network_address_get_port(G_NETWORK_ADDRESS(na)));
  if (!sa) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "STUN address %s: expected a numeric IP address and a port", host_port);
    goto out;
  }
  sock = g_socket_new(g_socket_address_get_family(sa), G_SOCKET_TYPE_DATAGRAM,
                      G_SOCKET_PROTOCOL_UDP, error);
  if (!sock)
    goto out;
  g_socket_set_blocking(sock, FALSE);
  /* No address reuse: a second process on the same UDP port would silently
   * take part of the requests. */
  if (!g_socket_bind(sock, sa, FALSE, error))
    goto out;
  bound = g_socket_get_local_address(sock, error);
  if (!bound)
    goto out;

  s = g_new0(StunService, 1);
  s->limit = stun_limit_new(NULL, now_ms());
  if (!s->limit) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "STUN: out of memory");
    g_clear_pointer(&s, g_free);
    goto out;
  }
  s->socket = g_steal_pointer(&sock);
  s->port = g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound));
  s->source = g_socket_create_source(s->socket, G_IO_IN, NULL);
  g_source_set_callback(s->source, G_SOURCE_FUNC(on_readable), s, NULL);
  g_source_attach(s->source, ctx);
  g_info("answering STUN on %s (UDP port %u)", host_port, s->port);

out:
  g_clear_object(&sock);
  g_clear_object(&bound);
  g_clear_object(&sa);
  g_clear_object(&na);
  return s;
}

void stun_service_free(StunService *s)
{
  if (!s)
    return;
  if (s->source) {
    g_source_destroy(s->source);
    g_source_unref(s->source);
  }
  g_socket_close(s->socket, NULL);
  g_object_unref(s->socket);
  stun_limit_free(s->limit);
  g_free(s);
}

uint16_t stun_service_port(const StunService *s)
{
  return s->port;
}

uint64_t stun_service_requests(const StunService *s)
{
  return s->requests;
}

uint64_t stun_service_dropped(const StunService *s)
{
  return s->dropped;
}
