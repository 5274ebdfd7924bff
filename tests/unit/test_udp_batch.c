/* test_udp_batch.c - GSO batches arrive as the datagrams they were, in
 * fewer system calls; sizes that cannot share a batch split it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sys/socket.h>
#include <gio/gio.h>

#include "udp_batch.h"
#include "loopback_udp.h"

/* Receives every waiting datagram; returns how many, lengths in lens and
 * each datagram's first byte in firsts. */
static unsigned drain(GSocket *s, gsize *lens, guint8 *firsts, unsigned max)
{
  unsigned n = 0;
  guint8 buf[2048];
  g_socket_set_blocking(s, FALSE);
  for (int idle = 0; idle < 50 && n < max;) {
    gssize r = g_socket_receive(s, (gchar *)buf, sizeof buf, NULL, NULL);
    if (r < 0) {
      idle++;
      g_usleep(1000);
      continue;
    }
    lens[n] = (gsize)r;
    firsts[n] = buf[0];
    n++;
  }
  return n;
}

static void test_batches_arrive_whole(void **state)
{
  GInetSocketAddress *dest;
  GSocket *rx = loopback_udp_socket(&dest);
  GSocket *tx = loopback_udp_socket(NULL);
  UdpBatch *b = udp_batch_new(tx, G_SOCKET_ADDRESS(dest), 1350);
  assert_non_null(b);

  /* 150 full datagrams (over several GSO batches), a short one that
   * closes a batch, then a small one and a full one again. */
  guint8 pkt[1350];
  unsigned sent = 0;
  gsize want[160];
  for (unsigned i = 0; i < 150; i++, sent++) {
    memset(pkt, (int)sent, sizeof pkt);
    want[sent] = sizeof pkt;
    udp_batch_add(b, pkt, sizeof pkt);
  }
  memset(pkt, (int)sent, 100);
  want[sent++] = 100;
  udp_batch_add(b, pkt, 100);
  memset(pkt, (int)sent, 40);
  want[sent++] = 40;
  udp_batch_add(b, pkt, 40);
  memset(pkt, (int)sent, sizeof pkt);
  want[sent++] = sizeof pkt;
  udp_batch_add(b, pkt, sizeof pkt);
  udp_batch_flush(b);

  gsize lens[200];
  guint8 firsts[200];
  unsigned got = drain(rx, lens, firsts, 200);
  assert_int_equal(got, sent);
  for (unsigned i = 0; i < got; i++) {
    assert_int_equal(lens[i], want[i]);
    assert_int_equal(firsts[i], (guint8)i);
  }
  guint64 calls, datagrams;
  udp_batch_counts(b, &calls, &datagrams);
  assert_int_equal(datagrams, sent);
  /* With GSO: 150 full ones in batches of 48 (a batch is one 64 KiB UDP
   * send), the short one closing the last, then 40 and 1350 alone: 6
   * calls; without (an old kernel), one per datagram. */
  print_message("%u datagrams in %llu system calls\n", sent, (unsigned long long)calls);
  assert_true(calls == 6 || calls == sent);

  /* Nothing queued: a flush sends nothing. */
  udp_batch_flush(b);
  udp_batch_counts(b, &calls, &datagrams);
  assert_int_equal(datagrams, sent);

  udp_batch_free(b);
  g_object_unref(dest);
  g_object_unref(tx);
  g_object_unref(rx);
}

static void test_family_mismatch(void **state)
{
  GSocket *tx = loopback_udp_socket(NULL);
  GInetAddress *v6 = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV6);
  GSocketAddress *dest = g_inet_socket_address_new(v6, 9);
  assert_null(udp_batch_new(tx, dest, 1350));
  g_object_unref(dest);
  g_object_unref(v6);
  g_object_unref(tx);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_batches_arrive_whole),
      cmocka_unit_test(test_family_mismatch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
