/* test_session_output.c - a session whose peer does not read is cut off
 * (issue 11, finding 2): at its queue cap, when its queue has not moved for
 * stall_ms, or when the shared output budget refuses it; a peer that reads
 * is never cut off, and every byte charged goes back to the budget.
 *
 * The session runs over one end of a socketpair on the default context;
 * the other end is a bare Channel that finishes the handshake and then
 * reads only when told to. The stall rule runs on the real monotonic clock
 * (session.c is the glib shell), with a 300 ms limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <gio/gio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "budget.h"
#include "channel.h"
#include "session.h"

typedef struct {
  Session *s;
  int peer_fd;
  Channel *peer;
  Identity id_s, id_p;
  bool opened, closed;
  char reason[160];
} Pair;

static void on_opened(Session *s, void *ud)
{
  ((Pair *)ud)->opened = true;
}

static void on_message(Session *s, const uint8_t *msg, size_t len, void *ud) {}

static void on_closed(Session *s, const char *reason, void *ud)
{
  Pair *p = ud;
  p->closed = true;
  g_strlcpy(p->reason, reason, sizeof p->reason);
}

static const SessionCallbacks cbs = {on_opened, on_message, on_closed};

/* The peer reads what there is and answers the handshake. */
static void peer_read(Pair *p)
{
  uint8_t buf[65536];
  ssize_t n;
  while ((n = recv(p->peer_fd, buf, sizeof buf, MSG_DONTWAIT)) > 0) {
    assert_true(channel_feed(p->peer, buf, (size_t)n));
    const uint8_t *msg;
    size_t len;
    while (channel_read(p->peer, &msg, &len) == 1)
      ;
  }
  size_t len;
  const uint8_t *out = channel_output(p->peer, &len);
  if (len > 0) {
    assert_int_equal(send(p->peer_fd, out, len, 0), (ssize_t)len);
    channel_output_consume(p->peer, len);
  }
}

static void iterate(unsigned ms, Pair *p, bool reading)
{
  gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;
  while (g_get_monotonic_time() < end && !p->closed) {
    g_main_context_iteration(NULL, FALSE);
    if (reading)
      peer_read(p);
    g_usleep(1000);
  }
}

static void pair_open(Pair *p)
{
  memset(p, 0, sizeof *p);
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  assert_true(identity_generate(&p->id_s) && identity_generate(&p->id_p));
  GSocket *gs = g_socket_new_from_fd(sv[0], NULL);
  assert_non_null(gs);
  GSocketConnection *conn = g_socket_connection_factory_create_connection(gs);
  p->s = session_new(G_IO_STREAM(conn), 1, &p->id_s, CHANNEL_RESPONDER, NULL, &cbs, p);
  g_object_unref(conn);
  g_object_unref(gs);
  p->peer_fd = sv[1];
  p->peer = channel_new(&p->id_p, CHANNEL_INITIATOR);
  for (int i = 0; i < 2000 && !p->opened; i++) {
    peer_read(p);
    g_main_context_iteration(NULL, FALSE);
    g_usleep(500);
  }
  assert_true(p->opened);
  peer_read(p); /* the last handshake bytes */
}

static void pair_close(Pair *p)
{
  session_close(p->s, "test over");
  session_unref(p->s);
  channel_free(p->peer);
  close(p->peer_fd);
  identity_clear(&p->id_s);
  identity_clear(&p->id_p);
}

/* Sends 60 KB messages until the session is cut or n went. */
static unsigned flood(Pair *p, unsigned n)
{
  static uint8_t msg[60000];
  unsigned sent = 0;
  for (; sent < n && !p->closed; sent++)
    session_send(p->s, msg, sizeof msg);
  return sent;
}

static void test_cut_at_queue_cap(void **state)
{
  (void)state;
  Pair p;
  pair_open(&p);
  SessionOutputLimits l = {.max_queue = 256 * 1024};
  session_set_output_limits(p.s, &l);
  unsigned sent = flood(&p, 1000); /* 60 MB if nothing stopped it */
  assert_true(p.closed);
  assert_true(session_output_overrun(p.s));
  assert_non_null(strstr(p.reason, "output queue full"));
  /* The socket took some (its buffer), the queue at most the cap more. */
  assert_true(sent < 100);
  pair_close(&p);
}

static void test_cut_when_stalled(void **state)
{
  (void)state;
  Pair p;
  pair_open(&p);
  SessionOutputLimits l = {.max_queue = 64 << 20, .stall_ms = 300};
  session_set_output_limits(p.s, &l);
  while (session_queued(p.s) == 0) /* fill the socket, then a queue */
    flood(&p, 1);
  iterate(150, &p, false);
  assert_false(p.closed); /* not yet */
  iterate(1000, &p, false);
  assert_true(p.closed);
  assert_true(session_output_overrun(p.s));
  assert_non_null(strstr(p.reason, "stalled"));
  pair_close(&p);
}

static void test_cut_by_budget_and_given_back(void **state)
{
  (void)state;
  Budget *b = budget_new(1 << 20, 512 * 1024);
  Pair p;
  pair_open(&p);
  SessionOutputLimits l = {.max_queue = 64 << 20, .budget = b, .source = "10.1.1.1"};
  session_set_output_limits(p.s, &l);
  flood(&p, 1000);
  assert_true(p.closed);
  assert_non_null(strstr(p.reason, "budget"));
  assert_int_equal(budget_refused(b), 1);
  assert_int_equal(budget_used(b), 0); /* the cut session's queue went back */
  pair_close(&p);
  budget_free(b);
}

/* A peer that reads is never cut off, its queue comes and goes, and the
 * budget is whole again at the end. */
static void test_reader_never_cut(void **state)
{
  (void)state;
  Budget *b = budget_new(1 << 20, 512 * 1024);
  Pair p;
  pair_open(&p);
  SessionOutputLimits l = {.max_queue = 256 * 1024, .stall_ms = 300, .budget = b, .source = "x"};
  session_set_output_limits(p.s, &l);
  for (int round = 0; round < 40; round++) {
    flood(&p, 4); /* 240 KB: under the cap whatever the socket holds */
    iterate(20, &p, true);
  }
  iterate(500, &p, true);
  assert_false(p.closed);
  assert_int_equal(session_queued(p.s), 0);
  assert_int_equal(budget_used(b), 0);
  pair_close(&p);
  assert_int_equal(budget_used(b), 0);
  budget_free(b);
}

/* A leaf lets hundreds of KiB queue, then reads them all: the charge goes
 * back to 0, and so must the memory (it stayed at the peak, uncharged, for
 * the session's life). */
static void test_drained_queue_gives_memory_back(void **state)
{
  (void)state;
  Budget *b = budget_new(8 << 20, 8 << 20);
  Pair p;
  pair_open(&p);
  SessionOutputLimits l = {.max_queue = 4 << 20, .budget = b, .source = "x"};
  session_set_output_limits(p.s, &l);
  while (session_queued(p.s) < 256 * 1024) /* the socket is full, then 256 KiB */
    flood(&p, 1);
  assert_false(p.closed);
  assert_true(session_output_capacity(p.s) >= 256 * 1024);
  iterate(500, &p, true);
  assert_false(p.closed);
  assert_int_equal(session_queued(p.s), 0);
  assert_int_equal(budget_used(b), 0);
  assert_true(session_output_capacity(p.s) <= CHANNEL_OUTPUT_KEEP);
  pair_close(&p);
  budget_free(b);
}

/* Issue 12: an idle session holds no buffer. After messages both ways it
 * charges nothing to either budget and its output buffer is freed; a peer
 * that sends half of a large frame and stops holds it only up to the input
 * budget's share, then is cut off. */
static void test_idle_holds_nothing(void **state)
{
  (void)state;
  Pair p;
  pair_open(&p);
  Budget *out = budget_new(1 << 20, 1 << 20), *in = budget_new(1 << 20, 1 << 20);
  SessionOutputLimits l = {.budget = out, .input_budget = in, .source = "peer"};
  session_set_output_limits(p.s, &l);
  static uint8_t msg[20000];
  for (int i = 0; i < 5; i++) {
    assert_true(session_send(p.s, msg, sizeof msg));
    assert_true(channel_write(p.peer, msg, sizeof msg));
    iterate(30, &p, true);
  }
  assert_false(p.closed);
  assert_int_equal(session_queued(p.s), 0);
  assert_int_equal(session_output_capacity(p.s), 0);
  assert_int_equal(budget_used(out), 0);
  assert_int_equal(budget_used(in), 0);
  pair_close(&p);
  budget_free(out);
  budget_free(in);
}

static void test_cut_by_input_budget(void **state)
{
  (void)state;
  Pair p;
  pair_open(&p);
  Budget *in = budget_new(1 << 20, 16 * 1024); /* one address: 16 KiB */
  SessionOutputLimits l = {.input_budget = in, .source = "peer"};
  session_set_output_limits(p.s, &l);
  static uint8_t msg[60000];
  assert_true(channel_write(p.peer, msg, sizeof msg));
  size_t len;
  const uint8_t *wire = channel_output(p.peer, &len);
  /* Most of the frame, never the end of it. */
  assert_int_equal(send(p.peer_fd, wire, 50000, 0), 50000);
  iterate(300, &p, false);
  assert_true(p.closed);
  assert_true(session_output_overrun(p.s));
  assert_non_null(strstr(p.reason, "input budget"));
  assert_int_equal(budget_used(in), 0); /* given back with the session */
  assert_true(budget_refused(in) >= 1);
  pair_close(&p);
  budget_free(in);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cut_at_queue_cap),
      cmocka_unit_test(test_cut_when_stalled),
      cmocka_unit_test(test_cut_by_budget_and_given_back),
      cmocka_unit_test(test_idle_holds_nothing),
      cmocka_unit_test(test_cut_by_input_budget),
      cmocka_unit_test(test_reader_never_cut),
      cmocka_unit_test(test_drained_queue_gives_memory_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
