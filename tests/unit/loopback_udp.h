/* loopback_udp.h - a UDP socket on 127.0.0.1 for the datagram tests
 * (test_udp_batch, test_pair_socket). Include after cmocka.h. */
#ifndef CANOPY_TEST_LOOPBACK_UDP_H
#define CANOPY_TEST_LOOPBACK_UDP_H

#include <gio/gio.h>
#include <sys/socket.h>

/* Bound to an ephemeral port, non-blocking, with room for every datagram
 * of a test at once; its address in *bound when bound is not NULL. */
static GSocket *loopback_udp_socket(GInetSocketAddress **bound)
{
  GSocket *s =
      g_socket_new(G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM, G_SOCKET_PROTOCOL_UDP, NULL);
  assert_non_null(s);
  GInetAddress *lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
  GSocketAddress *any = g_inet_socket_address_new(lo, 0);
  assert_true(g_socket_bind(s, any, FALSE, NULL));
  g_object_unref(any);
  g_object_unref(lo);
  g_socket_set_option(s, SOL_SOCKET, SO_RCVBUF, 4 << 20, NULL);
  g_socket_set_blocking(s, FALSE);
  if (bound)
    *bound = G_INET_SOCKET_ADDRESS(g_socket_get_local_address(s, NULL));
  return s;
}

#endif
