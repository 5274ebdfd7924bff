/* test_ice.c - two IcePeers on loopback reach each other and carry bytes;
 * malformed descriptions are refused; REST credentials match coturn's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <gio/gio.h>

#include "candidate.h"
#include "ice.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 20000
#define BULK (1024u * 1024u)

static const char *const loopback[] = {"127.0.0.1", NULL};

/* ---- one side of a connection attempt ---- */

typedef struct {
  const char *name;
  IcePeer *peer;
  char *desc;
  GIOStream *io; /* borrowed from the peer */
  IcePath path;
  char *failure;
  int n_ready, n_connected, n_failed;
  gboolean free_in_ready; /* frees the peer from local_ready */
} Side;

static void on_ready(IcePeer *p, const char *desc, gpointer ud)
{
  Side *s = ud;
  assert_ptr_equal(p, s->peer);
  s->n_ready++;
  s->desc = g_strdup(desc);
  if (s->free_in_ready) {
    ice_peer_free(p);
    s->peer = NULL;
  }
}

static void on_connected(IcePeer *p, GIOStream *io, const IcePath *path, gpointer ud)
{
  Side *s = ud;
  s->n_connected++;
  s->io = io;
  s->path = *path;
}

static void on_failed(IcePeer *p, const char *reason, gpointer ud)
{
  Side *s = ud;
  s->n_failed++;
  s->failure = g_strdup(reason);
}

static const IceCallbacks side_cb = {on_ready, on_connected, on_failed, NULL};

static void side_clear(Side *s)
{
  ice_peer_free(s->peer);
  g_free(s->desc);
  g_free(s->failure);
  memset(s, 0, sizeof *s);
}

static gboolean tick_cb(gpointer data)
{
  return G_SOURCE_CONTINUE;
}

/* Iterates ctx until done(data) or WAIT_MS pass. */
static gboolean run_until(GMainContext *ctx, gboolean (*done)(gpointer), gpointer data)
{
  gint64 end = g_get_monotonic_time() + (gint64)WAIT_MS * 1000;
  GSource *tick = g_timeout_source_new(50); /* bounds each blocking iteration */
  g_source_set_callback(tick, tick_cb, NULL, NULL);
  g_source_attach(tick, ctx);
  while (!done(data) && g_get_monotonic_time() < end)
    g_main_context_iteration(ctx, TRUE);
  g_source_destroy(tick);
  g_source_unref(tick);
  return done(data);
}

/* Lets close_async and stray sources finish before the context goes. */
static void drain(GMainContext *ctx, guint ms)
{
  gint64 end = g_get_monotonic_time() + (gint64)ms * 1000;
  while (g_get_monotonic_time() < end)
    if (!g_main_context_iteration(ctx, FALSE))
      g_usleep(1000);
}

typedef struct {
  Side a, b;
} Pair;

static gboolean both_ready(gpointer d)
{
  Pair *p = d;
  return p->a.desc && p->b.desc;
}

static gboolean both_connected_or_failed(gpointer d)
{
  Pair *p = d;
  return (p->a.n_connected || p->a.n_failed) && (p->b.n_connected || p->b.n_failed);
}

static IcePeer *peer_on_loopback(GMainContext *ctx, gboolean controlling, Side *s, guint timeout)
{
  IceConfig cfg = {.local_addrs = loopback, .timeout_ms = timeout};
  return ice_peer_new(ctx, controlling, &cfg, &side_cb, s);
}

/* ---- non-blocking bulk transfer over the pollable streams ---- */

typedef struct {
  GPollableOutputStream *out;
  GPollableInputStream *in;
  const guint8 *data;
  guint8 *got;
  gsize len, sent, received;
  gsize per_wakeup; /* most bytes read per readable callback; 0: until it would block */
  gboolean error;
  GSource *wsrc, *rsrc;
} Transfer;

static gboolean on_writable(GObject *o, gpointer ud)
{
  Transfer *t = ud;
  while (t->sent < t->len) {
    GError *e = NULL;
    gssize n = g_pollable_output_stream_write_nonblocking(t->out, t->data + t->sent,
                                                          MIN(t->len - t->sent, 16384), NULL, &e);
    if (n < 0) {
      gboolean block = g_error_matches(e, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
      g_error_free(e);
      if (block)
        return G_SOURCE_CONTINUE;
      t->error = TRUE;
      break;
    }
    t->sent += (gsize)n;
  }
  g_clear_pointer(&t->wsrc, g_source_unref);
  return G_SOURCE_REMOVE;
}

static gboolean on_readable(GObject *o, gpointer ud)
{
  Transfer *t = ud;
  while (t->received < t->len) {
    GError *e = NULL;
    gsize want = t->len - t->received;
    if (t->per_wakeup)
      want = MIN(want, t->per_wakeup);
    gssize n =
        g_pollable_input_stream_read_nonblocking(t->in, t->got + t->received, want, NULL, &e);
    if (n < 0) {
      gboolean block = g_error_matches(e, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
      g_error_free(e);
      if (block)
        return G_SOURCE_CONTINUE;
      t->error = TRUE;
      break;
    }
    if (n == 0) { /* EOF before everything arrived */
      t->error = TRUE;
      break;
    }
    t->received += (gsize)n;
    /* Like session.c: one chunk, then back to the main loop. The source
     * must fire again for what is still buffered. */
    if (t->per_wakeup && t->received < t->len)
      return G_SOURCE_CONTINUE;
  }
  g_clear_pointer(&t->rsrc, g_source_unref);
  return G_SOURCE_REMOVE;
}

static gboolean transfer_done(gpointer d)
{
  Transfer *t = d;
  return t->error || (t->sent == t->len && t->received == t->len);
}

/* Sends len pseudo-random bytes from one stream to the other; asserts they
 * arrive unchanged. The reader takes at most per_wakeup bytes per callback
 * (0: all it can) and attaches its source only late_ms after the first
 * write. */
static void transfer(GMainContext *ctx, GIOStream *from, GIOStream *to, gsize len, gsize per_wakeup,
                     guint late_ms)
{
  Transfer t = {.per_wakeup = per_wakeup};
  guint8 *data = g_malloc(len);
  for (gsize i = 0; i < len; i++)
    data[i] = (guint8)((i * 2654435761u) >> 13);
  t.data = data;
  t.got = g_malloc0(len);
  t.len = len;
  t.out = G_POLLABLE_OUTPUT_STREAM(g_io_stream_get_output_stream(from));
  t.in = G_POLLABLE_INPUT_STREAM(g_io_stream_get_input_stream(to));

  t.wsrc = g_pollable_output_stream_create_source(t.out, NULL);
  g_source_set_callback(t.wsrc, G_SOURCE_FUNC(on_writable), &t, NULL);
  g_source_attach(t.wsrc, ctx);
  /* A first write without waiting: the stream may be writable already. */
  on_writable(NULL, &t);
  if (late_ms)
    drain(ctx, late_ms); /* the data lands while nobody watches */
  gint64 t0 = g_get_monotonic_time();
  t.rsrc = g_pollable_input_stream_create_source(t.in, NULL);
  g_source_set_callback(t.rsrc, G_SOURCE_FUNC(on_readable), &t, NULL);
  g_source_attach(t.rsrc, ctx);

  assert_true(run_until(ctx, transfer_done, &t));
  /* Buffered data is announced at once, not at the next keepalive (~25 s). */
  if (late_ms)
    assert_true(g_get_monotonic_time() - t0 < 3 * G_USEC_PER_SEC);
  assert_false(t.error);
  assert_int_equal(t.received, len);
  assert_memory_equal(t.got, data, len);

  if (t.wsrc)
    g_source_destroy(t.wsrc);
  g_clear_pointer(&t.wsrc, g_source_unref);
  if (t.rsrc)
    g_source_destroy(t.rsrc);
  g_clear_pointer(&t.rsrc, g_source_unref);
  g_free(data);
  g_free(t.got);
}

/* ---- tests ---- */

static void test_loopback_connects_and_carries_bytes(void **state)
{
  GMainContext *ctx = g_main_context_new();
  g_main_context_push_thread_default(ctx);
  Pair pr = {{.name = "a"}, {.name = "b"}};
  pr.a.peer = peer_on_loopback(ctx, TRUE, &pr.a, 0);
  pr.b.peer = peer_on_loopback(ctx, FALSE, &pr.b, 0);
  assert_non_null(pr.a.peer);
  assert_non_null(pr.b.peer);
  /* No callback from inside ice_peer_new, even though gathering with host
   * candidates only ends within it. */
  assert_int_equal(pr.a.n_ready, 0);

  assert_true(run_until(ctx, both_ready, &pr));
  assert_true(strlen(pr.a.desc) <= ICE_DESCRIPTION_MAX);
  assert_non_null(strstr(pr.a.desc, "a=ice-ufrag:"));
  assert_non_null(strstr(pr.a.desc, " 127.0.0.1 "));

  GError *e = NULL;
  assert_true(ice_peer_set_remote(pr.b.peer, pr.a.desc, &e));
  assert_null(e);
  assert_true(ice_peer_set_remote(pr.a.peer, pr.b.desc, &e));
  /* Once only. */
  assert_false(ice_peer_set_remote(pr.a.peer, pr.b.desc, &e));
  assert_true(g_error_matches(e, G_IO_ERROR, G_IO_ERROR_FAILED));
  g_clear_error(&e);

  assert_true(run_until(ctx, both_connected_or_failed, &pr));
  if (pr.a.n_failed || pr.b.n_failed)
    fail_msg("failed: a=%s b=%s", pr.a.failure ? pr.a.failure : "-",
             pr.b.failure ? pr.b.failure : "-");
  assert_int_equal(pr.a.n_connected, 1);
  assert_int_equal(pr.b.n_connected, 1);
  assert_string_equal(pr.a.path.local_type, "host");
  assert_string_equal(pr.a.path.remote_type, "host");
  assert_string_equal(pr.b.path.local_type, "host");
  assert_false(pr.a.path.relayed);
  assert_false(pr.b.path.relayed);
  assert_true(g_str_has_prefix(pr.a.path.local_addr, "127.0.0.1:"));
  /* Each side's remote is the other's local. */
  assert_string_equal(pr.a.path.remote_addr, pr.b.path.local_addr);
  assert_string_equal(pr.b.path.remote_addr, pr.a.path.local_addr);

  assert_true(G_IS_POLLABLE_INPUT_STREAM(g_io_stream_get_input_stream(pr.a.io)));
  assert_true(G_IS_POLLABLE_OUTPUT_STREAM(g_io_stream_get_output_stream(pr.a.io)));
  transfer(ctx, pr.a.io, pr.b.io, BULK, 0, 0);
  transfer(ctx, pr.b.io, pr.a.io, 65536, 0, 0);     /* and back: the stream is duplex */
  transfer(ctx, pr.a.io, pr.b.io, 200000, 1000, 0); /* a reader taking one chunk per wakeup */
  transfer(ctx, pr.b.io, pr.a.io, 30000, 0, 500);   /* a reader that attaches late */
  transfer(ctx, pr.a.io, pr.b.io, 30000, 7, 300);   /* both */

  /* A stream the caller keeps past ice_peer_free reports CLOSED. */
  GIOStream *kept = g_object_ref(pr.b.io);
  side_clear(&pr.a);
  side_clear(&pr.b);
  guint8 buf[16];
  assert_true(g_pollable_input_stream_read_nonblocking(
                  G_POLLABLE_INPUT_STREAM(g_io_stream_get_input_stream(kept)), buf, sizeof buf,
                  NULL, &e) <= 0);
  g_clear_error(&e);
  g_object_unref(kept);
  drain(ctx, 300);
  g_main_context_pop_thread_default(ctx);
  g_main_context_unref(ctx);
}

static gboolean side_has_desc(gpointer d)
{
  return ((Side *)d)->desc != NULL;
}

/* A valid description to mangle, gathered once. */
static char *valid_description(GMainContext *ctx)
{
  Pair pr = {{.name = "v"}, {.name = "w"}};
  pr.a.peer = peer_on_loopback(ctx, TRUE, &pr.a, 0);
  pr.b.peer = peer_on_loopback(ctx, FALSE, &pr.b, 0);
  assert_true(run_until(ctx, both_ready, &pr));
  char *d = g_strdup(pr.a.desc);
  side_clear(&pr.a);
  side_clear(&pr.b);
  return d;
}

static void refused(IcePeer *p, const char *text)
{
  GError *e = NULL;
  if (ice_peer_set_remote(p, text, &e))
    fail_msg("accepted: <<%s>>", text);
  assert_true(g_error_matches(e, G_IO_ERROR, G_IO_ERROR_INVALID_DATA));
  g_error_free(e);
}

static void test_malformed_descriptions_are_errors(void **state)
{
  GMainContext *ctx = g_main_context_new();
  g_main_context_push_thread_default(ctx);
  char *good = valid_description(ctx);

  Side s = {.name = "m"};
  s.peer = peer_on_loopback(ctx, TRUE, &s, 0);
  assert_non_null(s.peer);

  const char *pwd = "a=ice-pwd:abcdefghijklmnopqrstuvwx\n";
  const char *head = "m=application 5000 ICE/SDP\nc=IN IP4 127.0.0.1\na=ice-ufrag:abcd\n";
  const char *cand = "a=candidate:1 1 UDP 2013266431 127.0.0.1 5000 typ host\n";
  const char *bad_cands[] = {
      "a=candidate:1 2 UDP 2013266431 127.0.0.1 5000 typ host\n",  /* component 2 */
      "a=candidate:1 1 TCP 2013266431 127.0.0.1 5000 typ host\n",  /* TCP */
      "a=candidate:1 1 UDP 2013266431 127.0.0.1 5000 typ cloud\n", /* type */
      "a=candidate:1 1 UDP 2013266431 127.0.0.1 0 typ host\n",     /* port 0 */
      "a=candidate:1 1 UDP 2013266431 127.0.0.1 70000 typ host\n", /* port */
      "a=candidate:1 1 UDP -1 127.0.0.1 5000 typ host\n",          /* priority */
      "a=candidate:1 1 UDP 99999999999 127.0.0.1 5000 typ host\n", /* priority */
      "a=candidate:1 1 UDP 2013266431 localhost 5000 typ host\n",  /* not numeric */
      "a=candidate:1 1 UDP 2013266431 127.0.0.1 5000 typ\n",       /* no type */
      "a=candidate:1 1 UDP 2013266431 127.0.0.1 5000\n",           /* short */
      "a=candidate:1 1 UDP\n",                                     /* shorter */
      "a=candidate:\n",
      "a=candidate:1  1 UDP 2013266431 127.0.0.1 5000 typ host\n", /* double space */
      "a=candidate:1 1 UDP 2013266431 127.0.0.1 5000 typ srflx raddr 10.0.0.1\n",
      "a=candidate:1 1 UDP 2013266431 127.0.0.1 5000 typ host tcptype active\n",
      "a=candidate:1 1 UDP 2013266431 127.0.0.1 5000 typ host generation 0\n",
      "a=candidate:f*o 1 UDP 2013266431 127.0.0.1 5000 typ host\n", /* foundation */
  };
  for (size_t i = 0; i < G_N_ELEMENTS(bad_cands); i++) {
    char *t = g_strconcat(head, pwd, bad_cands[i], NULL);
    refused(s.peer, t);
    g_free(t);
  }

  char *big = g_malloc(ICE_DESCRIPTION_MAX + 64);
  memset(big, 'x', ICE_DESCRIPTION_MAX + 63);
  big[ICE_DESCRIPTION_MAX + 63] = '\0';
  const char *whole[] = {
      "",
      "\n",
      "hello",
      big,
      "m=application 5000 ICE/SDP\n", /* nothing else */
      "m=audio 5000 ICE/SDP\na=ice-ufrag:abcd\na=ice-pwd:abcdefghijklmnopqrstuvwx\n",
  };
  for (size_t i = 0; i < G_N_ELEMENTS(whole); i++)
    refused(s.peer, whole[i]);
  g_free(big);

  /* Whole-text shapes built around one good candidate. */
  const char *shapes[][4] = {
      {head, cand, "", ""},                                                 /* no pwd */
      {"m=application 5000 ICE/SDP\n", pwd, cand, ""},                      /* no ufrag */
      {head, pwd, "", ""},                                                  /* no candidate */
      {head, pwd, pwd, cand},                                               /* pwd twice */
      {head, "a=ice-ufrag:abcd\n", pwd, cand},                              /* ufrag twice */
      {head, "a=ice-pwd:short\n", cand, ""},                                /* pwd too short */
      {head, pwd, "\n", cand},                                              /* empty line */
      {head, pwd, "a=rtcp:5001\n", cand},                                   /* unknown line */
      {head, pwd, cand, "m=application 5002 ICE/SDP\n"},                    /* second stream */
      {cand, head, pwd, ""},                                                /* m= not first */
      {"m=application 5000 ICE/SDP\r\n", pwd, cand, ""},                    /* CRLF */
      {head, pwd, "a=candidate:1 1 UDP 1 127.0.0.1 5000 typ host\t\n", ""}, /* tab */
      {head, pwd, "a=candidate:1 1 UDP 1 127.0.0.1 5000 typ host \n", ""},  /* trailing sp */
      {"m=application 5000 ICE/SDP\nc=IN IP4 nowhere\n", "a=ice-ufrag:abcd\n", pwd, cand},
      {"m=application x ICE/SDP\na=ice-ufrag:abcd\n", pwd, cand, ""},
      {"m=application 5000 RTP/AVP\na=ice-ufrag:abcd\n", pwd, cand, ""},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(shapes); i++) {
    char *t = g_strconcat(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], NULL);
    refused(s.peer, t);
    g_free(t);
  }
  /* Non-ASCII byte. */
  {
    char *t =
        g_strconcat(head, pwd, "a=candidate:1 1 UDP 1 127.0.0.1 5000 typ host\xc3\xa9\n", NULL);
    refused(s.peer, t);
    g_free(t);
  }

  /* Truncation sweep: every prefix that ends before the first candidate's
   * type is complete lacks a candidate (or has a broken one). */
  const char *first = strstr(good, "a=candidate:");
  assert_non_null(first);
  const char *typ = strstr(first, " typ ");
  assert_non_null(typ);
  size_t must_fail = (size_t)(typ - good) + strlen(" typ ");
  for (size_t n = 0; n <= must_fail; n++) {
    char *t = g_strndup(good, n);
    refused(s.peer, t);
    g_free(t);
  }
  /* Its own description handed back is refused too. */
  assert_true(run_until(ctx, side_has_desc, &s));
  refused(s.peer, s.desc);

  /* None of that spent the peer: the good one is still taken. */
  GError *e = NULL;
  assert_true(ice_peer_set_remote(s.peer, good, &e));
  assert_null(e);
  assert_int_equal(s.n_failed, 0);

  side_clear(&s);
  g_free(good);
  drain(ctx, 100);
  g_main_context_pop_thread_default(ctx);
  g_main_context_unref(ctx);
}

static gboolean side_failed(gpointer d)
{
  return ((Side *)d)->n_failed > 0;
}

/* --- issue 11, finding 8: what a stranger's description may make us check --- */

static void test_candidate_addresses(void **state)
{
  static const struct {
    const char *ip;
    CandidateType type;
    bool loopback_ok, ok;
  } cases[] = {
      {"192.168.1.20", CANDIDATE_HOST, false, true},
      {"10.0.0.1", CANDIDATE_HOST, false, true},
      {"203.0.113.7", CANDIDATE_SRFLX, false, true},
      {"198.51.100.3", CANDIDATE_RELAY, false, true},
      {"2001:db8::1", CANDIDATE_HOST, false, true},
      {"0.0.0.0", CANDIDATE_HOST, true, false},
      {"0.1.2.3", CANDIDATE_HOST, true, false},
      {"127.0.0.1", CANDIDATE_HOST, false, false},
      {"127.0.0.1", CANDIDATE_HOST, true, true},
      {"127.9.9.9", CANDIDATE_SRFLX, true, true},
      {"224.0.0.1", CANDIDATE_HOST, true, false},
      {"239.255.255.250", CANDIDATE_HOST, true, false},
      {"240.0.0.1", CANDIDATE_HOST, true, false},
      {"255.255.255.255", CANDIDATE_HOST, true, false},
      {"169.254.10.1", CANDIDATE_HOST, false, true},
      {"169.254.10.1", CANDIDATE_SRFLX, false, false},
      {"::", CANDIDATE_HOST, true, false},
      {"::1", CANDIDATE_HOST, false, false},
      {"::1", CANDIDATE_HOST, true, true},
      {"ff02::1", CANDIDATE_HOST, true, false},
      {"::ffff:127.0.0.1", CANDIDATE_HOST, false, false},
      {"::ffff:192.168.1.1", CANDIDATE_HOST, true, false},
      {"fe80::1", CANDIDATE_HOST, false, true},
      {"fe80::1", CANDIDATE_RELAY, false, false},
      {"localhost", CANDIDATE_HOST, true, false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *why = NULL;
    bool ok = candidate_address_ok(cases[i].ip, cases[i].type, cases[i].loopback_ok, &why);
    if (ok != cases[i].ok)
      fail_msg("%s (type %d, loopback %d): %s", cases[i].ip, cases[i].type, cases[i].loopback_ok,
               ok ? "accepted" : why);
    assert_true(ok || why != NULL);
  }
  assert_true(candidate_address_is_loopback("127.0.0.1"));
  assert_true(candidate_address_is_loopback("::1"));
  assert_false(candidate_address_is_loopback("10.0.0.1"));
}

static void test_candidate_pick(void **state)
{
  /* 12 host addresses (a host with many interfaces), a srflx and a relay. */
  CandidateInfo c[14];
  bool keep[14];
  for (int i = 0; i < 12; i++)
    c[i] = (CandidateInfo){CANDIDATE_HOST, 2000000000u + (uint32_t)i};
  c[12] = (CandidateInfo){CANDIDATE_SRFLX, 1600000000u};
  c[13] = (CandidateInfo){CANDIDATE_RELAY, 100u};
  assert_int_equal(candidate_pick(c, 14, CANDIDATE_MAX_REMOTE, keep), CANDIDATE_MAX_REMOTE);
  /* The fallbacks stay, with the 8 best hosts; the 4 lowest hosts go. */
  assert_true(keep[12] && keep[13]);
  for (int i = 0; i < 12; i++)
    assert_int_equal(keep[i], i >= 4);
  /* Under the cap everything stays. */
  assert_int_equal(candidate_pick(c, 3, CANDIDATE_MAX_REMOTE, keep), 3);
  assert_true(keep[0] && keep[1] && keep[2]);
}

static void test_refused_addresses_only(void **state)
{
  GMainContext *ctx = g_main_context_new();
  g_main_context_push_thread_default(ctx);
  Side s = {.name = "r"};
  s.peer = peer_on_loopback(ctx, TRUE, &s, 0);
  const char *bad =
      "m=application 9 ICE/SDP\nc=IN IP4 0.0.0.0\na=ice-ufrag:abcd\n"
      "a=ice-pwd:abcdefghijklmnopqrstuvwx\n"
      "a=candidate:1 1 UDP 2013266431 0.0.0.0 9 typ host\n"
      "a=candidate:2 1 UDP 2013266430 224.0.0.251 5353 typ host\n"
      "a=candidate:3 1 UDP 2013266429 255.255.255.255 9 typ host\n"
      "a=candidate:4 1 UDP 1694498815 169.254.1.1 9 typ srflx raddr 0.0.0.0 rport 0\n";
  GError *e = NULL;
  assert_false(ice_peer_set_remote(s.peer, bad, &e));
  assert_true(g_error_matches(e, G_IO_ERROR, G_IO_ERROR_INVALID_DATA));
  assert_non_null(strstr(e->message, "no candidate with an address we check"));
  g_clear_error(&e);
  side_clear(&s);
  drain(ctx, 100);
  g_main_context_pop_thread_default(ctx);
  g_main_context_unref(ctx);
}

/* An offer of 100 candidates on 100 sockets of ours: the peer checks at
 * most CANDIDATE_MAX_REMOTE of them, each check sent at most 3 times. */
#define CHECKED_SOCKETS 100
static void test_checks_bounded_per_description(void **state)
{
  GMainContext *ctx = g_main_context_new();
  g_main_context_push_thread_default(ctx);
  int fds[CHECKED_SOCKETS];
  GString *d = g_string_new("m=application 9 ICE/SDP\nc=IN IP4 127.0.0.1\na=ice-ufrag:abcd\n"
                            "a=ice-pwd:abcdefghijklmnopqrstuvwx\n");
  for (int i = 0; i < CHECKED_SOCKETS; i++) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fds[i] >= 0);
    assert_int_equal(bind(fds[i], (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fds[i], (struct sockaddr *)&a, &al), 0);
    g_string_append_printf(d, "a=candidate:%d 1 UDP %u 127.0.0.1 %u typ host\n", i + 1,
                           2013266431u - (unsigned)i, ntohs(a.sin_port));
  }
  Side s = {.name = "c"};
  s.peer = peer_on_loopback(ctx, TRUE, &s, 2500);
  GError *e = NULL;
  assert_true(ice_peer_set_remote(s.peer, d->str, &e));
  assert_true(run_until(ctx, side_failed, &s));
  drain(ctx, 300);
  int checks = 0, reached = 0;
  for (int i = 0; i < CHECKED_SOCKETS; i++) {
    uint8_t buf[1500];
    int here = 0;
    while (recv(fds[i], buf, sizeof buf, MSG_DONTWAIT) > 0)
      here++;
    checks += here;
    reached += here > 0;
    close(fds[i]);
  }
  print_message("100 candidates offered: %d checked, %d checks\n", reached, checks);
  assert_true(reached > 0);
  assert_true(reached <= CANDIDATE_MAX_REMOTE);
  assert_true(checks <= 3 * CANDIDATE_MAX_REMOTE);
  side_clear(&s);
  g_string_free(d, TRUE);
  drain(ctx, 100);
  g_main_context_pop_thread_default(ctx);
  g_main_context_unref(ctx);
}

static void test_no_answer_times_out(void **state)
{
  GMainContext *ctx = g_main_context_new();
  g_main_context_push_thread_default(ctx);
  /* A candidate on a port nobody answers. */
  const char *dead = "m=application 9 ICE/SDP\nc=IN IP4 127.0.0.1\na=ice-ufrag:abcd\n"
                     "a=ice-pwd:abcdefghijklmnopqrstuvwx\n"
                     "a=candidate:1 1 UDP 2013266431 127.0.0.1 9 typ host\n";
  Side s = {.name = "t"};
  s.peer = peer_on_loopback(ctx, TRUE, &s, 800);
  GError *e = NULL;
  assert_true(ice_peer_set_remote(s.peer, dead, &e));
  gint64 t0 = g_get_monotonic_time();
  assert_true(run_until(ctx, side_failed, &s));
  gint64 took_ms = (g_get_monotonic_time() - t0) / 1000;
  assert_int_equal(s.n_failed, 1);
  assert_int_equal(s.n_connected, 0);
  assert_non_null(s.failure);
  /* Either the checks ran out or the timer did; not much later than it. */
  assert_true(took_ms < 5000);
  drain(ctx, 200);
  assert_int_equal(s.n_failed, 1); /* once */
  side_clear(&s);
  g_main_context_pop_thread_default(ctx);
  g_main_context_unref(ctx);
}

static void test_free_from_callback(void **state)
{
  GMainContext *ctx = g_main_context_new();
  g_main_context_push_thread_default(ctx);
  Side s = {.name = "f", .free_in_ready = TRUE};
  s.peer = peer_on_loopback(ctx, TRUE, &s, 0);
  assert_true(run_until(ctx, side_has_desc, &s));
  assert_null(s.peer);
  drain(ctx, 200);
  assert_int_equal(s.n_ready, 1);
  assert_int_equal(s.n_failed, 0);
  side_clear(&s);

  /* Freed before anything was dispatched: nothing fires. */
  Side q = {.name = "g"};
  q.peer = peer_on_loopback(ctx, FALSE, &q, 0);
  ice_peer_free(q.peer);
  q.peer = NULL;
  drain(ctx, 200);
  assert_int_equal(q.n_ready + q.n_connected + q.n_failed, 0);
  ice_peer_free(NULL);
  g_main_context_pop_thread_default(ctx);
  g_main_context_unref(ctx);
}

static void test_bad_config_is_refused(void **state)
{
  GMainContext *ctx = g_main_context_new();
  IceConfig cfg = {.stun_host = "stun.example.org", .local_addrs = loopback};
  assert_null(ice_peer_new(ctx, TRUE, &cfg, &side_cb, NULL));
  IceConfig cfg2 = {.turn_host = "127.0.0.1", .local_addrs = loopback}; /* no credentials */
  assert_null(ice_peer_new(ctx, TRUE, &cfg2, &side_cb, NULL));
  const char *const bad_local[] = {"127.0.0.1", "eth0", NULL};
  IceConfig cfg3 = {.local_addrs = bad_local};
  assert_null(ice_peer_new(ctx, TRUE, &cfg3, &side_cb, NULL));
  g_main_context_unref(ctx);
}

static void test_turn_credentials_match_coturn(void **state)
{
  /* Derived once on this machine:
   *   printf '%s' '1700000000:leaf-a' | openssl dgst -sha1 \
   *     -hmac 'canopy-test-secret' -binary | base64 */
  char *user = NULL, *pass = NULL;
  ice_turn_credentials("canopy-test-secret", "leaf-a", 1700000000u, &user, &pass);
  assert_string_equal(user, "1700000000:leaf-a");
  assert_string_equal(pass, "51JTB9MfMLzixYH+tZLM31pKnhs=");
  g_free(user);
  g_free(pass);

  ice_turn_credentials("north", "8f3a", 4102444800u, &user, &pass);
  assert_string_equal(user, "4102444800:8f3a");
  assert_string_equal(pass, "ePRqSja0y340VJgmchXKxdy9A5E=");
  g_free(user);
  g_free(pass);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_turn_credentials_match_coturn),
      cmocka_unit_test(test_bad_config_is_refused),
      cmocka_unit_test(test_free_from_callback),
      cmocka_unit_test(test_malformed_descriptions_are_errors),
      cmocka_unit_test(test_no_answer_times_out),
      cmocka_unit_test(test_candidate_addresses),
      cmocka_unit_test(test_candidate_pick),
      cmocka_unit_test(test_refused_addresses_only),
      cmocka_unit_test(test_checks_bounded_per_description),
      cmocka_unit_test(test_loopback_connects_and_carries_bytes),
  };
  /* The bad-config cases log a warning each; that is their point. */
  g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
