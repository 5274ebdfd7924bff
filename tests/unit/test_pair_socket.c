/* test_pair_socket.c - real sockets on loopback: once a PairSocket sits
 * beside a base socket, the remote's datagrams (GSO batches included) reach
 * it one by one and in order, everything else still reaches the base; after
 * it is freed the base gets the remote's datagrams again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <gio/gio.h>
#include <sys/socket.h>

#include "pair_socket.h"
#include "loopback_udp.h"
#include "udp_batch.h"

typedef struct {
  gsize lens[400];
  guint8 firsts[400];
  unsigned n;
  gboolean intact;           /* every byte of each datagram is its first byte */
  unsigned batches, done_at; /* on_done calls; datagrams passed at the last */
} Got;

static void on_datagram(const guint8 *pkt, gsize len, gpointer data)
{
  Got *g = data;
  assert_true(g->n < G_N_ELEMENTS(g->lens));
  g->lens[g->n] = len;
  g->firsts[g->n] = pkt[0];
  for (gsize i = 0; i < len; i++)
    if (pkt[i] != pkt[0])
      g->intact = FALSE;
  g->n++;
}

/* A batch ended: every datagram so far was passed. */
static void on_done(gpointer data)
{
  Got *g = data;
  g->batches++;
  g->done_at = g->n;
}

/* Runs the default context until want datagrams arrived or a second passed. */
static void pump(Got *g, unsigned want)
{
  gint64 end = g_get_monotonic_time() + G_USEC_PER_SEC;
  while (g->n < want && g_get_monotonic_time() < end)
    g_main_context_iteration(NULL, FALSE);
}

static unsigned base_count(GSocket *base)
{
  unsigned n = 0;
  guint8 buf[2048];
  while (g_socket_receive(base, (gchar *)buf, sizeof buf, NULL, NULL) >= 0)
    n++;
  return n;
}

static void test_remote_datagrams_come_here(void **state)
{
  GInetSocketAddress *base_addr, *remote_addr;
  GSocket *base = loopback_udp_socket(&base_addr);
  GSocket *remote = loopback_udp_socket(&remote_addr);
  GSocket *stranger = loopback_udp_socket(NULL);
  Got got = {.intact = TRUE};
  GError *err = NULL;
  PairSocket *ps =
      pair_socket_new(base, G_SOCKET_ADDRESS(remote_addr), NULL, on_datagram, on_done, &got, &err);
  assert_non_null(ps);
  assert_null(err);

  /* 150 full datagrams in GSO batches (a kernel with GRO hands them over
   * coalesced), a short one, then single small and full ones. */
  UdpBatch *b = udp_batch_new(remote, G_SOCKET_ADDRESS(base_addr), 1350);
  assert_non_null(b);
  guint8 pkt[1350];
  gsize want[200];
  unsigned sent = 0;
  for (; sent < 150; sent++) {
    memset(pkt, (int)sent, sizeof pkt);
    want[sent] = sizeof pkt;
    udp_batch_add(b, pkt, sizeof pkt);
  }
  memset(pkt, (int)sent, 700);
  want[sent++] = 700;
  udp_batch_add(b, pkt, 700);
  udp_batch_flush(b);
  for (gsize len = 40; len <= 1350; len += 1310) {
    memset(pkt, (int)sent, len);
    want[sent++] = len;
    g_socket_send_to(remote, G_SOCKET_ADDRESS(base_addr), (gchar *)pkt, len, NULL, NULL);
  }
  /* Someone else's datagram (a STUN server's, say) still goes to the base. */
  g_socket_send_to(stranger, G_SOCKET_ADDRESS(base_addr), "stun", 4, NULL, NULL);

  pump(&got, sent);
  assert_int_equal(got.n, sent);
  assert_true(got.intact);
  for (unsigned i = 0; i < sent; i++) {
    assert_int_equal(got.lens[i], want[i]);
    assert_int_equal(got.firsts[i], (guint8)i);
  }
  guint64 calls, datagrams;
  pair_socket_counts(ps, &calls, &datagrams);
  assert_int_equal(datagrams, sent);
  print_message("%u datagrams in %llu receive calls\n", sent, (unsigned long long)calls);
  assert_true(calls < sent);
  /* Each read batch ended with a done call, the last after everything. */
  assert_true(got.batches >= 1 && got.batches <= calls);
  assert_int_equal(got.done_at, sent);
  assert_int_equal(base_count(base), 1);

  /* Freed: the remote's datagrams reach the base again. */
  pair_socket_free(ps);
  g_socket_send_to(remote, G_SOCKET_ADDRESS(base_addr), "back", 4, NULL, NULL);
  g_usleep(10000);
  assert_int_equal(base_count(base), 1);

  udp_batch_free(b);
  g_object_unref(base_addr);
  g_object_unref(remote_addr);
  g_object_unref(stranger);
  g_object_unref(remote);
  g_object_unref(base);
}

static void test_family_mismatch(void **state)
{
  GSocket *base = loopback_udp_socket(NULL);
  GInetAddress *v6 = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV6);
  GSocketAddress *remote = g_inet_socket_address_new(v6, 9);
  GError *err = NULL;
  assert_null(pair_socket_new(base, remote, NULL, on_datagram, NULL, NULL, &err));
  assert_non_null(err);
  g_error_free(err);
  pair_socket_free(NULL);
  g_object_unref(remote);
  g_object_unref(v6);
  g_object_unref(base);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_remote_datagrams_come_here),
      cmocka_unit_test(test_family_mismatch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
