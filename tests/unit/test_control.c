/* test_control.c - the control socket (shared/control.c) under clients that
 * misbehave: an endless request line, a reply nobody reads, too many
 * clients at once, a client that never sends its request. Real Unix
 * sockets, one GMainContext iterated by the test; the clients are raw
 * non-blocking sockets so nothing here can block the loop but the server. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "control.h"

typedef struct {
  GMainContext *ctx;
  char *dir, *path;
  ControlServer *srv;
  ControlClient *held[8]; /* "hold": kept without finishing */
  int nheld;
  gboolean big_done; /* "big": the handler ran to its end */
  guint big_gone_at; /* "big": lines sent before the client was gone */
} Fx;

static Fx fx;

static void handler(ControlClient *cl, JsonObject *req, void *ud)
{
  (void)ud;
  const char *cmd = json_object_get_string_member_with_default(req, "cmd", "");
  if (strcmp(cmd, "ping") == 0) {
    JsonObject *o = json_object_new();
    json_object_set_boolean_member(o, "pong", TRUE);
    json_object_set_boolean_member(o, "done", TRUE);
    control_send(cl, o);
    control_finish(cl);
  } else if (strcmp(cmd, "big") == 0) {
    /* lines of 64 KiB, as a search with many hits would stream them */
    gint64 lines = json_object_get_int_member_with_default(req, "lines", 1);
    gchar *filler = g_strnfill(65536, 'x');
    fx.big_gone_at = 0;
    for (gint64 i = 0; i < lines; i++) {
      JsonObject *o = json_object_new();
      json_object_set_string_member(o, "data", filler);
      control_send(cl, o);
      if (!fx.big_gone_at && control_client_gone(cl))
        fx.big_gone_at = (guint)i + 1;
    }
    g_free(filler);
    fx.big_done = TRUE;
    control_finish(cl);
  } else if (strcmp(cmd, "hold") == 0) {
    if (fx.nheld < 8)
      fx.held[fx.nheld++] = cl;
  } else {
    control_fail(cl, "unknown command");
  }
}

static int setup(void **state)
{
  (void)state;
  memset(&fx, 0, sizeof fx);
  fx.ctx = g_main_context_new();
  g_main_context_push_thread_default(fx.ctx);
  fx.dir = g_dir_make_tmp("canopy-control-XXXXXX", NULL);
  fx.path = g_build_filename(fx.dir, CONTROL_SOCKET_NAME, NULL);
  fx.srv = control_server_new(fx.path, fx.ctx, handler, NULL, NULL);
  return fx.srv ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  control_server_free(fx.srv);
  while (g_main_context_iteration(fx.ctx, FALSE))
    ;
  g_main_context_pop_thread_default(fx.ctx);
  g_main_context_unref(fx.ctx);
  g_rmdir(fx.dir);
  g_free(fx.path);
  g_free(fx.dir);
  return 0;
}

static void spin(guint ms)
{
  gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;
  while (g_get_monotonic_time() < end) {
    while (g_main_context_iteration(fx.ctx, FALSE))
      ;
    g_usleep(1000);
  }
}

static int client_connect(void)
{
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  g_strlcpy(sa.sun_path, fx.path, sizeof sa.sun_path);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  spin(20); /* the server accepts */
  return fd;
}

static void client_write(int fd, const char *text)
{
  assert_int_equal(send(fd, text, strlen(text), MSG_NOSIGNAL), (ssize_t)strlen(text));
}

/* Reads what the server sends within ms (iterating the server meanwhile);
 * *eof tells whether it closed. */
static GString *client_read(int fd, guint ms, gboolean *eof)
{
  GString *got = g_string_new(NULL);
  gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;
  *eof = FALSE;
  while (g_get_monotonic_time() < end && !*eof) {
    while (g_main_context_iteration(fx.ctx, FALSE))
      ;
    char buf[65536];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0)
      g_string_append_len(got, buf, n);
    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
      *eof = TRUE;
    else
      g_usleep(1000);
  }
  return got;
}

/* Another client still gets its answer, promptly. */
static void assert_ping_answers(void)
{
  int fd = client_connect();
  client_write(fd, "{\"cmd\":\"ping\"}\n");
  gboolean eof;
  GString *got = client_read(fd, 2000, &eof);
  assert_non_null(strstr(got->str, "\"pong\":true"));
  assert_true(eof);
  g_string_free(got, TRUE);
  close(fd);
}

static void test_request_parse(void **state)
{
  (void)state;
  const char *why;
  JsonObject *o = control_request_parse("{\"cmd\":\"x\"}\r", 12, &why);
  assert_non_null(o);
  assert_string_equal(json_object_get_string_member(o, "cmd"), "x");
  json_object_unref(o);
  assert_null(control_request_parse("[1,2]", 5, &why));
  assert_non_null(strstr(why, "JSON object"));
  assert_null(control_request_parse("{\"a\":1}\0{", 9, &why));
  assert_non_null(strstr(why, "UTF-8"));
  assert_null(control_request_parse("{\"a\":\"\xff\"}", 9, &why));
  assert_null(control_request_parse("", 0, &why));
  /* The cap is exact: 65536 bytes parse, 65537 do not. */
  GString *line = g_string_new("{\"a\":\"");
  while (line->len < CONTROL_MAX_LINE - 2)
    g_string_append_c(line, 'y');
  g_string_append(line, "\"}");
  assert_int_equal(line->len, CONTROL_MAX_LINE);
  o = control_request_parse(line->str, line->len, &why);
  assert_non_null(o);
  json_object_unref(o);
  g_string_insert_c(line, 6, 'y');
  assert_null(control_request_parse(line->str, line->len, &why));
  assert_non_null(strstr(why, "too long"));
  g_string_free(line, TRUE);
}

/* A request line that never ends: the client gets an error and is
 * dropped; meanwhile, and after, others are answered. */
static void test_endless_line_dropped(void **state)
{
  (void)state;
  int fd = client_connect();
  char chunk[4096];
  memset(chunk, 'a', sizeof chunk);
  client_write(fd, "{\"cmd\":\"");
  gboolean eof = FALSE;
  size_t sent = 0;
  for (int i = 0; i < 2000 && !eof; i++) {
    ssize_t n = send(fd, chunk, sizeof chunk, MSG_NOSIGNAL);
    if (n > 0)
      sent += (size_t)n;
    else if (errno == EPIPE || errno == ECONNRESET)
      eof = TRUE;
    spin(1);
    if (i == 5)
      assert_ping_answers(); /* while the line is still coming */
  }
  assert_true(eof); /* it hung up on us well before 8 MB */
  assert_true(sent < 4 * (size_t)CONTROL_MAX_LINE);
  assert_int_equal(control_server_dropped(fx.srv), 1);
  assert_ping_answers();
  close(fd);
}

/* The error line reaches a client that stops after an over-long line. */
static void test_long_line_error_text(void **state)
{
  (void)state;
  int fd = client_connect();
  gchar *line = g_strnfill(CONTROL_MAX_LINE + 10, 'b');
  size_t off = 0, len = strlen(line);
  while (off < len) {
    ssize_t n = send(fd, line + off, len - off, MSG_NOSIGNAL);
    if (n > 0)
      off += (size_t)n;
    spin(1);
  }
  g_free(line);
  gboolean eof;
  GString *got = client_read(fd, 2000, &eof);
  assert_non_null(strstr(got->str, "line longer than 65536 bytes"));
  assert_true(eof);
  g_string_free(got, TRUE);
  close(fd);
}

/* A reply larger than the queue cap to a client that never reads: the
 * server neither blocks nor buffers it; the client is dropped. */
static void test_unread_big_reply_dropped(void **state)
{
  (void)state;
  int fd = client_connect();
  client_write(fd, "{\"cmd\":\"big\",\"lines\":200}\n"); /* 12.5 MiB */
  gint64 t0 = g_get_monotonic_time();
  spin(50);
  assert_true(fx.big_done);
  assert_true(g_get_monotonic_time() - t0 < G_USEC_PER_SEC);
  /* dropped once the queue passed 4 MiB (plus what the socket took) */
  assert_true(fx.big_gone_at > 0 && fx.big_gone_at < 200);
  assert_int_equal(control_server_dropped(fx.srv), 1);
  assert_ping_answers();
  close(fd);
}

/* A reply under the cap that the client does not read is dropped after
 * the stall time; a client that reads gets all of it. */
static void test_stalled_reader_dropped(void **state)
{
  (void)state;
  ControlLimits lim = {.max_clients = CONTROL_MAX_CLIENTS,
                       .max_output = CONTROL_MAX_OUTPUT,
                       .max_output_total = CONTROL_MAX_OUTPUT_TOTAL,
                       .request_ms = CONTROL_REQUEST_MS,
                       .stall_ms = 300};
  control_server_set_limits(fx.srv, &lim);
  int fd = client_connect();
  client_write(fd, "{\"cmd\":\"big\",\"lines\":40}\n"); /* 2.5 MiB */
  spin(100);
  assert_true(fx.big_done);
  assert_int_equal(control_server_dropped(fx.srv), 0);
  assert_ping_answers();
  spin(500);
  assert_int_equal(control_server_dropped(fx.srv), 1);
  close(fd);

  fx.big_done = FALSE;
  fd = client_connect();
  client_write(fd, "{\"cmd\":\"big\",\"lines\":40}\n");
  gboolean eof;
  GString *got = client_read(fd, 5000, &eof);
  assert_true(eof);
  assert_int_equal(got->len, 40 * (65536 + strlen("{\"data\":\"\"}\n")));
  g_string_free(got, TRUE);
  assert_int_equal(control_server_dropped(fx.srv), 1);
  close(fd);
}

/* Replies queued for all clients together have a cap too: a second
 * reader that does not read is dropped once the total would pass it, and
 * the total comes back down when a client goes. */
static void test_total_output_cap(void **state)
{
  (void)state;
  ControlLimits lim = {.max_clients = CONTROL_MAX_CLIENTS,
                       .max_output = CONTROL_MAX_OUTPUT,
                       .max_output_total = 4u << 20,
                       .request_ms = CONTROL_REQUEST_MS,
                       .stall_ms = CONTROL_STALL_MS};
  control_server_set_limits(fx.srv, &lim);
  int a = client_connect();
  client_write(a, "{\"cmd\":\"big\",\"lines\":40}\n"); /* 2.5 MiB, fits alone */
  spin(50);
  assert_int_equal(fx.big_gone_at, 0);
  assert_int_equal(control_server_dropped(fx.srv), 0);
  int b = client_connect();
  client_write(b, "{\"cmd\":\"big\",\"lines\":40}\n"); /* not both */
  spin(50);
  assert_true(fx.big_gone_at > 0);
  assert_int_equal(control_server_dropped(fx.srv), 1);
  close(b);
  close(a);
  spin(50); /* a's reply is dropped with it when its socket errors */
  /* With both gone, a reader gets a whole 2.5 MiB reply again. */
  int c = client_connect();
  client_write(c, "{\"cmd\":\"big\",\"lines\":40}\n");
  gboolean eof;
  GString *got = client_read(c, 5000, &eof);
  assert_true(eof);
  assert_int_equal(got->len, 40 * (65536 + strlen("{\"data\":\"\"}\n")));
  g_string_free(got, TRUE);
  close(c);
}

/* Past the cap a client is told so; a slot frees when a client leaves or
 * when an idle one runs out of time. */
static void test_client_cap(void **state)
{
  (void)state;
  ControlLimits lim = {.max_clients = 4,
                       .max_output = CONTROL_MAX_OUTPUT,
                       .max_output_total = CONTROL_MAX_OUTPUT_TOTAL,
                       .request_ms = 400,
                       .stall_ms = CONTROL_STALL_MS};
  control_server_set_limits(fx.srv, &lim);
  int idle[4];
  for (int i = 0; i < 4; i++)
    idle[i] = client_connect();
  int extra = client_connect();
  gboolean eof;
  GString *got = client_read(extra, 1000, &eof);
  assert_non_null(strstr(got->str, "too many control clients"));
  assert_true(eof);
  g_string_free(got, TRUE);
  close(extra);
  assert_int_equal(control_server_refused(fx.srv), 1);

  close(idle[0]);
  spin(50);
  assert_ping_answers();

  /* The other three never send a request: dropped after 400 ms. */
  spin(500);
  assert_int_equal(control_server_dropped(fx.srv), 3);
  for (int i = 1; i < 4; i++) {
    got = client_read(idle[i], 100, &eof);
    assert_true(eof);
    g_string_free(got, TRUE);
    close(idle[i]);
  }
  int fds[4];
  for (int i = 0; i < 4; i++) {
    fds[i] = client_connect();
    client_write(fds[i], "{\"cmd\":\"hold\"}\n");
  }
  spin(50);
  assert_int_equal(control_server_refused(fx.srv), 1);
  assert_int_equal(fx.nheld, 4);
  /* held clients that hung up are seen as gone, the others not */
  close(fds[1]);
  close(fds[3]);
  spin(20);
  int gone = 0;
  for (int i = 0; i < 4; i++)
    gone += control_client_gone(fx.held[i]);
  assert_int_equal(gone, 2);
  for (int i = 0; i < 4; i++)
    control_finish(fx.held[i]);
  close(fds[0]);
  close(fds[2]);
}

/* Clients being answered (a `get` following its download) do not count
 * against the pending cap: with more of them than pending slots, `status`
 * still gets in. Silent clients are capped by the pending slots, and all
 * clients together by max_clients. */
static void test_followers_do_not_lock_out(void **state)
{
  (void)state;
  ControlLimits lim = {.max_clients = 8,
                       .max_pending = 2,
                       .max_output = CONTROL_MAX_OUTPUT,
                       .max_output_total = CONTROL_MAX_OUTPUT_TOTAL,
                       .request_ms = CONTROL_REQUEST_MS,
                       .stall_ms = CONTROL_STALL_MS};
  control_server_set_limits(fx.srv, &lim);
  int fds[8];
  for (int i = 0; i < 4; i++) {
    fds[i] = client_connect();
    client_write(fds[i], "{\"cmd\":\"hold\"}\n");
  }
  spin(50);
  assert_int_equal(fx.nheld, 4);
  assert_ping_answers(); /* 4 followers, more than the 2 pending slots */
  assert_int_equal(control_server_refused(fx.srv), 0);
  /* Two silent clients fill the pending slots; a third is refused. */
  fds[4] = client_connect();
  fds[5] = client_connect();
  int extra = client_connect();
  gboolean eof;
  GString *got = client_read(extra, 1000, &eof);
  assert_non_null(strstr(got->str, "too many control clients"));
  g_string_free(got, TRUE);
  close(extra);
  assert_int_equal(control_server_refused(fx.srv), 1);
  /* Once they send their request they are followers too: 8 in all, the cap. */
  client_write(fds[4], "{\"cmd\":\"hold\"}\n");
  client_write(fds[5], "{\"cmd\":\"hold\"}\n");
  for (int i = 6; i < 8; i++) {
    fds[i] = client_connect();
    client_write(fds[i], "{\"cmd\":\"hold\"}\n");
  }
  spin(50);
  assert_int_equal(fx.nheld, 8);
  extra = client_connect();
  got = client_read(extra, 1000, &eof);
  assert_non_null(strstr(got->str, "too many control clients"));
  g_string_free(got, TRUE);
  close(extra);
  assert_int_equal(control_server_refused(fx.srv), 2);
  for (int i = 0; i < 8; i++)
    control_finish(fx.held[i]);
  for (int i = 0; i < 8; i++)
    close(fds[i]);
  spin(20);
  assert_ping_answers();
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_parse),
      cmocka_unit_test_setup_teardown(test_endless_line_dropped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_long_line_error_text, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unread_big_reply_dropped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_stalled_reader_dropped, setup, teardown),
      cmocka_unit_test_setup_teardown(test_total_output_cap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_client_cap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_followers_do_not_lock_out, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
