/* test_bulk_stream.c - the GIOStream shell of nat/bulk.c on a real main loop:
 * two streams wired back to back through a lossy in-memory "path" carry
 * bytes both ways intact, end of stream reaches the reader, nothing leaves
 * before the path is sendable, and a detached stream reads as closed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gio/gio.h>

#include "bulk_stream.h"

#define WAIT_US (20 * G_USEC_PER_SEC)

typedef struct End End;
struct End {
  GIOStream *io;
  End *other;
  GRand *rng;
  double loss; /* fraction of datagrams dropped on the way out */
  guint64 sent, dropped;
  gboolean garbage; /* also deliver a corrupted copy of each datagram */
  gboolean reflect; /* ... and each datagram back to its sender */
  GPtrArray *log;   /* GBytes of each datagram sent, when not NULL */

  /* what this end writes and reads, for the pumps below */
  guint8 *wbuf;
  gsize wlen, wdone;
  gboolean close_after;
  GChecksum *rsum;
  gsize rdone;
  gboolean eof;
  GError *rerr;
  GSource *wsrc, *rsrc; /* owned while planned */
};

static gboolean path_send(const guint8 *pkt, gsize len, gpointer ud)
{
  End *e = ud;
  e->sent++;
  if (e->log)
    g_ptr_array_add(e->log, g_bytes_new(pkt, len));
  if (g_rand_double(e->rng) < e->loss) {
    e->dropped++;
    return TRUE;
  }
  if (e->garbage) {
    guint8 bad[2048];
    memcpy(bad, pkt, MIN(len, sizeof bad));
    bad[g_rand_int_range(e->rng, 0, (gint32)MIN(len, sizeof bad))] ^= 0x5a;
    bulk_stream_on_datagram(e->other->io, bad, MIN(len, sizeof bad));
  }
  if (e->reflect)
    bulk_stream_on_datagram(e->io, pkt, len);
  bulk_stream_on_datagram(e->other->io, pkt, len);
  return TRUE;
}

static gboolean write_cb(GObject *stream, gpointer ud)
{
  End *e = ud;
  GPollableOutputStream *out = G_POLLABLE_OUTPUT_STREAM(stream);
  while (e->wdone < e->wlen) {
    GError *err = NULL;
    gssize n = g_pollable_output_stream_write_nonblocking(
        out, e->wbuf + e->wdone, MIN(e->wlen - e->wdone, 100000), NULL, &err);
    if (n < 0) {
      assert_true(g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK));
      g_error_free(err);
      return G_SOURCE_CONTINUE;
    }
    e->wdone += (gsize)n;
  }
  if (e->close_after)
    g_output_stream_close(G_OUTPUT_STREAM(stream), NULL, NULL);
  return G_SOURCE_REMOVE;
}

static gboolean read_cb(GObject *stream, gpointer ud)
{
  End *e = ud;
  guint8 buf[7000]; /* odd size: reads straddle datagrams */
  GError *err = NULL;
  /* One read per wakeup: the level-triggered source must come back for
   * whatever is left. */
  gssize n = g_pollable_input_stream_read_nonblocking(G_POLLABLE_INPUT_STREAM(stream), buf,
                                                      sizeof buf, NULL, &err);
  if (n > 0) {
    g_checksum_update(e->rsum, buf, (gssize)n);
    e->rdone += (gsize)n;
    return G_SOURCE_CONTINUE;
  }
  if (n == 0) {
    e->eof = TRUE;
    return G_SOURCE_REMOVE;
  }
  if (g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK)) {
    g_error_free(err);
    return G_SOURCE_CONTINUE;
  }
  e->rerr = err;
  return G_SOURCE_REMOVE;
}

static void end_init(End *e, End *other, guint32 seed, double loss)
{
  memset(e, 0, sizeof *e);
  e->other = other;
  e->rng = g_rand_new_with_seed(seed);
  e->loss = loss;
  e->io = bulk_stream_new(g_main_context_default(), NULL, path_send, e);
  assert_non_null(e->io);
  e->rsum = g_checksum_new(G_CHECKSUM_SHA256);
}

static void end_clear(End *e)
{
  for (GSource **src = &e->wsrc; src <= &e->rsrc; src++)
    if (*src) {
      g_source_destroy(*src);
      g_source_unref(*src);
    }
  bulk_stream_detach(e->io);
  g_object_unref(e->io);
  g_rand_free(e->rng);
  g_checksum_free(e->rsum);
  g_free(e->wbuf);
  g_clear_error(&e->rerr);
}

static void end_plan_write(End *e, gsize len, guint32 seed, gboolean close_after)
{
  GRand *r = g_rand_new_with_seed(seed);
  e->wbuf = g_malloc(len);
  for (gsize i = 0; i < len; i++)
    e->wbuf[i] = (guint8)g_rand_int(r);
  g_rand_free(r);
  e->wlen = len;
  e->close_after = close_after;
  GSource *src = g_pollable_output_stream_create_source(
      G_POLLABLE_OUTPUT_STREAM(g_io_stream_get_output_stream(e->io)), NULL);
  g_source_set_callback(src, G_SOURCE_FUNC(write_cb), e, NULL);
  g_source_attach(src, NULL);
  e->wsrc = src;
}

static void end_plan_read(End *e)
{
  GSource *src = g_pollable_input_stream_create_source(
      G_POLLABLE_INPUT_STREAM(g_io_stream_get_input_stream(e->io)), NULL);
  g_source_set_callback(src, G_SOURCE_FUNC(read_cb), e, NULL);
  g_source_attach(src, NULL);
  e->rsrc = src;
}

static gchar *sum_of(const guint8 *buf, gsize len)
{
  return g_compute_checksum_for_data(G_CHECKSUM_SHA256, buf, len);
}

/* Runs the default context until done(ud) or the deadline. */
static gboolean tick_cb(gpointer ud)
{
  return G_SOURCE_CONTINUE;
}

static gboolean run_until(gboolean (*done)(gpointer), gpointer ud)
{
  gint64 end = g_get_monotonic_time() + WAIT_US;
  /* Bounds each blocking iteration: an idle pair has no source to wake. */
  guint tick = g_timeout_add(50, tick_cb, NULL);
  while (!done(ud) && g_get_monotonic_time() < end)
    g_main_context_iteration(NULL, TRUE);
  g_source_remove(tick);
  return done(ud);
}

typedef struct {
  End *a, *b;
} Pair;

static gboolean both_done(gpointer ud)
{
  Pair *p = ud;
  return p->b->eof && p->a->eof;
}

/* 6 MB one way, 1 MB the other, 2 % loss each way, garbage alongside and
 * a's datagrams reflected back to a: every byte arrives in order and both
 * readers see the end of stream. */
static void test_both_ways_lossy(void **state)
{
  End a, b;
  end_init(&a, &b, 1, 0.02);
  end_init(&b, &a, 2, 0.02);
  b.garbage = TRUE;
  a.reflect = TRUE; /* one key per direction: a rejects its own datagrams */
  const guint8 ab[BULK_STREAM_KEY_BYTES] = "0123456789abcdef";
  const guint8 ba[BULK_STREAM_KEY_BYTES] = "fedcba9876543210";
  bulk_stream_set_keys(a.io, ab, ba);
  bulk_stream_set_keys(b.io, ba, ab);
  end_plan_write(&a, 6u << 20, 11, TRUE);
  end_plan_write(&b, 1u << 20, 12, TRUE);
  end_plan_read(&a);
  end_plan_read(&b);
  bulk_stream_set_sendable(a.io, TRUE);
  bulk_stream_set_sendable(b.io, TRUE);

  Pair p = {&a, &b};
  assert_true(run_until(both_done, &p));
  assert_null(a.rerr);
  assert_null(b.rerr);
  assert_int_equal(b.rdone, a.wlen);
  assert_int_equal(a.rdone, b.wlen);
  gchar *want_b = sum_of(a.wbuf, a.wlen), *want_a = sum_of(b.wbuf, b.wlen);
  assert_string_equal(g_checksum_get_string(b.rsum), want_b);
  assert_string_equal(g_checksum_get_string(a.rsum), want_a);
  g_free(want_a);
  g_free(want_b);
  assert_true(a.dropped > 0 && b.dropped > 0);

  BulkStats st;
  bulk_stream_stats(a.io, &st);
  assert_true(st.retransmits > 0);
  /* every corrupted copy and every reflected one */
  assert_true(st.dropped_datagrams >= (b.sent - b.dropped) + (a.sent - a.dropped));
  end_clear(&a);
  end_clear(&b);
}

static gboolean b_read_all(gpointer ud)
{
  Pair *p = ud;
  return p->b->rdone == p->a->wlen;
}

static gboolean both_read_all(gpointer ud)
{
  Pair *p = ud;
  return p->b->rdone == p->a->wlen && p->a->rdone == p->b->wlen;
}

static gboolean both_rekeyed(gpointer ud)
{
  Pair *p = ud;
  return bulk_stream_rekeyed(p->a->io) && bulk_stream_rekeyed(p->b->io);
}

static void replay(GPtrArray *log, GIOStream *to)
{
  for (guint i = 0; i < log->len; i++) {
    gsize n;
    const guint8 *d = g_bytes_get_data(log->pdata[i], &n);
    bulk_stream_on_datagram(to, d, n);
  }
}

/* Issue 11, finding 16: the tags move from the ICE-password keys (which
 * the signalling super nodes read) to keys from the secure channel; after
 * the switch a datagram tagged under the old key is refused. */
static void test_rekey_refuses_old_keys(void **state)
{
  End a, b; /* a: the channel's initiator, b: its responder */
  end_init(&a, &b, 3, 0);
  end_init(&b, &a, 4, 0);
  a.log = g_ptr_array_new_with_free_func((GDestroyNotify)g_bytes_unref);
  const guint8 ab[BULK_STREAM_KEY_BYTES] = "0123456789abcdef";
  const guint8 ba[BULK_STREAM_KEY_BYTES] = "fedcba9876543210";
  bulk_stream_set_keys(a.io, ab, ba);
  bulk_stream_set_keys(b.io, ba, ab);
  end_plan_write(&a, 300000, 21, FALSE);
  end_plan_read(&b);
  end_plan_read(&a);
  bulk_stream_set_sendable(a.io, TRUE);
  bulk_stream_set_sendable(b.io, TRUE);
  Pair p = {&a, &b};
  assert_true(run_until(b_read_all, &p));
  /* What a sent under the ICE-password key passes b's tag check now (b
   * drops the copies as duplicates, nothing more). */
  GPtrArray *old = a.log;
  a.log = NULL;
  assert_true(old->len > 10);
  replay(old, b.io);
  assert_int_equal(bulk_stream_unauthenticated(b.io), 0);

  /* Both channels open: the responder switches at once, the initiator on
   * its first datagram under the new key. */
  const guint8 ab2[BULK_STREAM_KEY_BYTES] = "channel-i->r-key";
  const guint8 ba2[BULK_STREAM_KEY_BYTES] = "channel-r->i-key";
  bulk_stream_rekey(a.io, ab2, ba2, FALSE);
  assert_false(bulk_stream_rekeyed(a.io));
  bulk_stream_rekey(b.io, ba2, ab2, TRUE);
  /* More bytes both ways, over the switch. */
  g_source_destroy(a.wsrc);
  g_source_unref(a.wsrc);
  a.wsrc = NULL;
  g_free(a.wbuf);
  a.rdone = b.rdone = 0;
  a.wdone = 0;
  end_plan_write(&a, 300000, 22, FALSE);
  end_plan_write(&b, 300000, 23, FALSE);
  gboolean ok = run_until(both_read_all, &p);
  if (!ok)
    print_message("a read %zu, b read %zu, a rekeyed %d, b %d, unauth a %lu b %lu\n", a.rdone,
                  b.rdone, bulk_stream_rekeyed(a.io), bulk_stream_rekeyed(b.io),
                  (unsigned long)bulk_stream_unauthenticated(a.io),
                  (unsigned long)bulk_stream_unauthenticated(b.io));
  assert_true(ok);
  assert_true(run_until(both_rekeyed, &p));
  assert_int_equal(bulk_stream_unauthenticated(a.io), 0);
  assert_int_equal(bulk_stream_unauthenticated(b.io), 0);

  /* The super node's forgeries: every datagram under the old key. */
  replay(old, b.io);
  assert_int_equal(bulk_stream_unauthenticated(b.io), old->len);
  g_ptr_array_unref(old);
  end_clear(&a);
  end_clear(&b);
}

static gboolean a_sent_any(gpointer ud)
{
  return ((End *)ud)->sent > 0;
}

static gboolean b_has(gpointer ud)
{
  return ((Pair *)ud)->b->rdone == ((Pair *)ud)->a->wlen;
}

/* Nothing leaves before the path is usable; once it is, the data flows. */
static void test_held_until_sendable(void **state)
{
  End a, b;
  end_init(&a, &b, 3, 0);
  end_init(&b, &a, 4, 0);
  end_plan_write(&a, 100000, 13, FALSE);
  end_plan_read(&b);
  bulk_stream_set_sendable(b.io, TRUE);
  gint64 until = g_get_monotonic_time() + 200 * 1000;
  while (g_get_monotonic_time() < until)
    g_main_context_iteration(NULL, FALSE);
  assert_int_equal(a.sent, 0);
  assert_int_equal(a.wdone, a.wlen); /* the ring took it all meanwhile */

  bulk_stream_set_sendable(a.io, TRUE);
  assert_true(run_until(a_sent_any, &a));
  Pair p = {&a, &b};
  assert_true(run_until(b_has, &p));
  assert_false(b.eof); /* no close yet */
  end_clear(&a);
  end_clear(&b);
}

static gboolean a_eof_or_err(gpointer ud)
{
  End *e = ud;
  return e->eof || e->rerr;
}

/* A detached stream (its ICE path is gone) reads as closed at once, wakes
 * a waiting reader, and refuses writes. */
static void test_detached_reads_closed(void **state)
{
  End a, b;
  end_init(&a, &b, 5, 0);
  end_init(&b, &a, 6, 0);
  end_plan_read(&a);
  bulk_stream_set_sendable(a.io, TRUE);
  bulk_stream_detach(a.io);
  assert_true(run_until(a_eof_or_err, &a));
  assert_true(a.eof);

  GError *err = NULL;
  GOutputStream *out = g_io_stream_get_output_stream(a.io);
  assert_true(g_pollable_output_stream_write_nonblocking(G_POLLABLE_OUTPUT_STREAM(out), "x", 1,
                                                         NULL, &err) < 0);
  assert_true(g_error_matches(err, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE));
  g_error_free(err);
  BulkStats st;
  bulk_stream_stats(a.io, &st);
  assert_int_equal(st.bytes_written, 0);
  end_clear(&a);
  end_clear(&b);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_both_ways_lossy),
      cmocka_unit_test(test_rekey_refuses_old_keys),
      cmocka_unit_test(test_held_until_sendable),
      cmocka_unit_test(test_detached_reads_closed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
