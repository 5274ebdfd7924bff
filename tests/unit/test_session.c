/* test_session.c - the glib session shell over a socketpair.
 *
 * The fault that matters (issue 11, finding 6): the initiator's first write
 * fails. session_new must return before any callback runs, because its
 * caller (both daemons' shells) only knows the session once it returns: a
 * `closed` fired from inside session_new freed the caller's entry, which the
 * caller then wrote the session into (an ASan heap-use-after-free). The
 * failing write is real: the socketpair's other end is closed first, so
 * send() fails with EPIPE (GSocket sends with MSG_NOSIGNAL; SIGPIPE is
 * ignored here anyway).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <gio/gio.h>

#include "clock.h"
#include "identity.h"
#include "session.h"

typedef struct {
  int opened, closed;
  bool returned; /* session_new has returned */
  bool closed_early;
  char reason[160];
} Seen;

static void on_opened(Session *s, void *ud)
{
  ((Seen *)ud)->opened++;
}

static void on_message(Session *s, const uint8_t *msg, size_t len, void *ud) {}

static void on_closed(Session *s, const char *reason, void *ud)
{
  Seen *seen = ud;
  seen->closed++;
  seen->closed_early |= !seen->returned;
  g_strlcpy(seen->reason, reason, sizeof seen->reason);
}

static const SessionCallbacks cb = {on_opened, on_message, on_closed};

/* A GSocketConnection over fd (taken). */
static GIOStream *conn_of(int fd)
{
  GSocket *sock = g_socket_new_from_fd(fd, NULL);
  assert_non_null(sock);
  GSocketConnection *c = g_socket_connection_factory_create_connection(sock);
  g_object_unref(sock);
  return G_IO_STREAM(c);
}

static void step(GMainContext *ctx)
{
  if (!g_main_context_iteration(ctx, FALSE))
    g_usleep(1000);
}

/* Runs ctx until *count is at least want, or 2 s pass. */
static void run_until(GMainContext *ctx, const int *count, int want)
{
  uint64_t end = clock_now_ms() + 2000;
  while (*count < want && clock_now_ms() < end)
    step(ctx);
}

/* A socket every write to fails (EPIPE), while reading it just waits: the
 * other end stops reading but stays open (*other, for the caller to close). */
static int dead_end(int *other)
{
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  assert_int_equal(shutdown(sv[1], SHUT_RD), 0);
  *other = sv[1];
  return sv[0];
}

static void test_first_write_fails_closed_later_once(void **state)
{
  (void)state;
  Identity id;
  assert_true(identity_generate(&id));
  GMainContext *ctx = g_main_context_new();
  int other;
  GIOStream *conn = conn_of(dead_end(&other));
  Seen seen = {0};
  Session *s = session_new(conn, 1, &id, CHANNEL_INITIATOR, ctx, &cb, &seen);
  seen.returned = true;
  g_object_unref(conn);
  assert_non_null(s);
  assert_int_equal(seen.closed, 0); /* not from inside session_new */
  run_until(ctx, &seen.closed, 1);
  run_until(ctx, &seen.closed, 2); /* 2 s more: it must not fire again */
  assert_false(seen.closed_early);
  assert_int_equal(seen.closed, 1);
  assert_int_equal(seen.opened, 0);
  assert_non_null(strstr(seen.reason, "send failed"));
  assert_false(session_is_open(s));
  session_unref(s);
  close(other);
  g_main_context_unref(ctx);
  identity_clear(&id);
}

/* The daemons' pattern: an entry in a table holds the session; `closed`
 * removes (frees) the entry. Under ASan the old session_new made the
 * assignment below a heap-use-after-free WRITE. */
typedef struct {
  Session *s;
  Seen seen;
} Entry;

static GHashTable *table;

static void entry_free(gpointer p)
{
  Entry *e = p;
  session_unref(e->s);
  g_free(e);
}

static void shell_closed(Session *s, const char *reason, void *ud)
{
  uint64_t key = session_id(s);
  Entry *e = g_hash_table_lookup(table, &key);
  assert_non_null(e);
  e->seen.closed++;
  g_hash_table_remove(table, &key); /* frees e, drops the session */
}

static void test_first_write_fails_shell_entry(void **state)
{
  (void)state;
  static const SessionCallbacks shell_cb = {on_opened, on_message, shell_closed};
  Identity id;
  assert_true(identity_generate(&id));
  GMainContext *ctx = g_main_context_new();
  table = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, entry_free);
  int others[8];
  for (uint64_t i = 1; i <= 8; i++) {
    Entry *e = g_new0(Entry, 1);
    uint64_t *key = g_new(uint64_t, 1);
    *key = i;
    g_hash_table_insert(table, key, e);
    GIOStream *conn = conn_of(dead_end(&others[i - 1]));
    e->s = session_new(conn, i, &id, CHANNEL_INITIATOR, ctx, &shell_cb, NULL);
    g_object_unref(conn);
    assert_non_null(e->s);
  }
  assert_int_equal(g_hash_table_size(table), 8);
  uint64_t end = clock_now_ms() + 2000;
  while (g_hash_table_size(table) > 0 && clock_now_ms() < end)
    step(ctx);
  assert_int_equal(g_hash_table_size(table), 0); /* every one closed, once */
  g_hash_table_destroy(table);
  for (int i = 0; i < 8; i++)
    close(others[i]);
  g_main_context_unref(ctx);
  identity_clear(&id);
}

/* Deferring the first write loses nothing: two sessions over a live
 * socketpair finish the handshake. */
static void test_handshake_over_socketpair(void **state)
{
  (void)state;
  Identity a, b;
  assert_true(identity_generate(&a) && identity_generate(&b));
  GMainContext *ctx = g_main_context_new();
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  GIOStream *ca = conn_of(sv[0]), *cb2 = conn_of(sv[1]);
  Seen sa = {.returned = true}, sb = {.returned = true};
  Session *ia = session_new(ca, 1, &a, CHANNEL_INITIATOR, ctx, &cb, &sa);
  Session *rb = session_new(cb2, 2, &b, CHANNEL_RESPONDER, ctx, &cb, &sb);
  assert_int_equal(session_bytes_out(ia), 0); /* the first message waits for the loop */
  run_until(ctx, &sa.opened, 1);
  run_until(ctx, &sb.opened, 1);
  assert_int_equal(sa.opened, 1);
  assert_int_equal(sb.opened, 1);
  assert_memory_equal(session_peer_id(ia), b.id, IDENTITY_ID_LEN);
  assert_memory_equal(session_peer_id(rb), a.id, IDENTITY_ID_LEN);
  assert_true(session_send(ia, (const uint8_t *)"x", 1));
  session_close(ia, "done");
  session_close(rb, "done");
  assert_int_equal(sa.closed + sb.closed, 2);
  session_unref(ia);
  session_unref(rb);
  g_object_unref(ca);
  g_object_unref(cb2);
  g_main_context_unref(ctx);
  identity_clear(&a);
  identity_clear(&b);
}

typedef struct {
  int opened, msgs, closed;
  size_t bytes;
  bool by_peer;
} Count;

static void count_opened(Session *s, void *ud)
{
  ((Count *)ud)->opened++;
}

static void count_message(Session *s, const uint8_t *msg, size_t len, void *ud)
{
  Count *c = ud;
  c->msgs++;
  c->bytes += len;
}

static void count_closed(Session *s, const char *reason, void *ud)
{
  Count *c = ud;
  c->closed++;
  c->by_peer = session_closed_by_peer(s);
}

static const SessionCallbacks count_cb = {count_opened, count_message, count_closed};

/* Two sessions over a connected pair of sockets, opened on one context. */
typedef struct {
  Identity a, b;
  GMainContext *ctx;
  GIOStream *ca, *cb;
  Count sa, sb;
  Session *ia, *rb;
} Pair;

static void pair_open(Pair *p, int fa, int fb)
{
  memset(p, 0, sizeof *p);
  assert_true(identity_generate(&p->a) && identity_generate(&p->b));
  p->ctx = g_main_context_new();
  p->ca = conn_of(fa);
  p->cb = conn_of(fb);
  p->ia = session_new(p->ca, 1, &p->a, CHANNEL_INITIATOR, p->ctx, &count_cb, &p->sa);
  p->rb = session_new(p->cb, 2, &p->b, CHANNEL_RESPONDER, p->ctx, &count_cb, &p->sb);
  run_until(p->ctx, &p->sa.opened, 1);
  run_until(p->ctx, &p->sb.opened, 1);
  assert_int_equal(p->sa.opened + p->sb.opened, 2);
}

static void pair_close(Pair *p)
{
  session_close(p->ia, "done");
  session_close(p->rb, "done");
  session_unref(p->ia);
  session_unref(p->rb);
  g_object_unref(p->ca);
  g_object_unref(p->cb);
  g_main_context_unref(p->ctx);
  identity_clear(&p->a);
  identity_clear(&p->b);
}

/* The socket is edge-triggered and read once per pass (session.c): two
 * large messages already in the socket make the first read fill its
 * buffer and leave the rest with no new arrival to raise another edge.
 * The session must read it anyway (it kicks its watch). */
static void test_full_read_continues(void **state)
{
  (void)state;
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  int big = 1 << 20;
  setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  Pair p;
  pair_open(&p, sv[0], sv[1]);
  static uint8_t msg[60000];
  memset(msg, 7, sizeof msg);
  assert_true(session_send(p.ia, msg, sizeof msg));
  assert_true(session_send(p.ia, msg, sizeof msg));
  assert_int_equal(session_queued(p.ia), 0); /* both in the socket already */
  run_until(p.ctx, &p.sb.msgs, 2);
  assert_int_equal(p.sb.msgs, 2);
  assert_int_equal(p.sb.bytes, 2 * sizeof msg);
  pair_close(&p);
}

/* A connected TCP pair on 127.0.0.1. */
static void tcp_pair(int *dialer, int *acceptor)
{
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(l, 1), 0);
  assert_int_equal(getsockname(l, (struct sockaddr *)&a, &alen), 0);
  *dialer = socket(AF_INET, SOCK_STREAM, 0);
  assert_int_equal(connect(*dialer, (struct sockaddr *)&a, sizeof a), 0);
  *acceptor = accept(l, NULL, NULL);
  assert_true(*acceptor >= 0);
  close(l);
}

/* A peer's last message and its FIN arrive together, before our pass: the
 * read that returns the message consumes the FIN, and its EOF shows only on
 * another read, which no new edge prompts (evloop.h, EV_EDGE). The session
 * must still see the close at once, not at the keepalive timeout. */
static void test_close_behind_data(void **state)
{
  (void)state;
  int fa, fb;
  tcp_pair(&fa, &fb);
  Pair p;
  pair_open(&p, fa, fb);
  assert_true(session_send(p.ia, (const uint8_t *)"last words", 10));
  assert_int_equal(session_queued(p.ia), 0);
  /* The FIN without the channel's own BYE (a process that died). */
  assert_int_equal(shutdown(fa, SHUT_WR), 0);
  g_usleep(50 * 1000); /* both in rb's socket before it is polled */
  run_until(p.ctx, &p.sb.closed, 1);
  assert_int_equal(p.sb.msgs, 1);
  assert_int_equal(p.sb.closed, 1);
  assert_true(p.sb.by_peer);
  pair_close(&p); /* rb is closed already: a no-op for it */
}

/* A dialing session's write after a quiet spell leaves TCP's quick-ACK
 * mode, so the reply it asks for (a PONG) is not acknowledged at once in
 * the replier's context (session.c, write_some). */
static void test_dialer_delays_acks(void **state)
{
  (void)state;
  int fa, fb;
  tcp_pair(&fa, &fb);
  Pair p;
  pair_open(&p, fa, fb);
  int on = 1, v = -1;
  socklen_t vlen = sizeof v;
  for (int i = 0; i < 2; i++) {
    /* Quick-ACK on, then a write after the quiet spell: off again. */
    assert_int_equal(setsockopt(fa, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof on), 0);
    g_usleep(300 * 1000);
    assert_true(session_send(p.ia, (const uint8_t *)"ping", 4));
    assert_int_equal(getsockopt(fa, IPPROTO_TCP, TCP_QUICKACK, &v, &vlen), 0);
    assert_int_equal(v, 0);
    run_until(p.ctx, &p.sb.msgs, i + 1);
    assert_int_equal(p.sb.msgs, i + 1);
  }
  /* A write soon after another leaves the socket alone. */
  assert_int_equal(setsockopt(fa, IPPROTO_TCP, TCP_QUICKACK, &on, sizeof on), 0);
  assert_true(session_send(p.ia, (const uint8_t *)"ping", 4));
  assert_int_equal(getsockopt(fa, IPPROTO_TCP, TCP_QUICKACK, &v, &vlen), 0);
  assert_int_equal(v, 1);
  pair_close(&p);
}

/* Descriptors open in the top 256 of the fd limit (session.c's slots). */
static int top_fds(void)
{
  struct rlimit rl;
  assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
  int lim = rl.rlim_cur > 1u << 20 ? 1 << 20 : (int)rl.rlim_cur, n = 0;
  for (int fd = lim - 256; fd < lim; fd++)
    n += fcntl(fd, F_GETFD) >= 0;
  return n;
}

/* A priority session holds a second descriptor up there (a killed process
 * resets it first); closing the session closes both, so the peer sees EOF
 * at once, and a priority dropped gives it back. */
static void test_priority_late_fd(void **state)
{
  (void)state;
  Identity a;
  assert_true(identity_generate(&a));
  GMainContext *ctx = g_main_context_new();
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  GIOStream *ca = conn_of(sv[0]);
  Seen sa = {.returned = true};
  Session *s = session_new(ca, 1, &a, CHANNEL_INITIATOR, ctx, &cb, &sa);
  assert_non_null(s);
  int before = top_fds();
  session_set_priority(s, true);
  assert_int_equal(top_fds(), before + 1);
  session_set_priority(s, false);
  assert_int_equal(top_fds(), before);
  session_set_priority(s, true);
  assert_int_equal(top_fds(), before + 1);
  session_close(s, "done");
  assert_int_equal(top_fds(), before);
  /* The peer sees the end (after the handshake bytes, if any went out). */
  char buf[4096];
  ssize_t n;
  struct timeval tv = {.tv_sec = 2};
  setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while ((n = read(sv[1], buf, sizeof buf)) > 0) {
  }
  assert_int_equal(n, 0);
  session_unref(s);
  close(sv[1]);
  g_object_unref(ca);
  g_main_context_unref(ctx);
  identity_clear(&a);
}

int main(void)
{
  signal(SIGPIPE, SIG_IGN);
  if (!crypto_ready())
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_first_write_fails_closed_later_once),
      cmocka_unit_test(test_first_write_fails_shell_entry),
      cmocka_unit_test(test_handshake_over_socketpair),
      cmocka_unit_test(test_full_read_continues),
      cmocka_unit_test(test_dialer_delays_acks),
      cmocka_unit_test(test_close_behind_data),
      cmocka_unit_test(test_priority_late_fd),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
