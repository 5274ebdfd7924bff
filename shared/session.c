/* session.c - drive a Channel over a pollable GIOStream.
 *
 * The stream is a TCP GSocketConnection between leaves and super nodes, or
 * the reliable stream over an ICE path between two leaves (nat/); both have
 * pollable input and output streams, which is all this needs.
 *
 * A TCP session costs its context no GSource: its socket is one watch in
 * the context's epoll set and its handshake and stall deadlines are two
 * timers in that set's heap (evloop.h), so a super node's wakeup does not
 * grow with its 19,000 idle leaves (issue 12). An ICE stream has no fd of
 * its own and keeps GLib's pollable sources (a leaf holds a few). */
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "evloop.h"

#define READ_CHUNK 65536
/* The top of the fd limit kept for priority sessions' second descriptors
 * (session_set_priority): a super node has a few dozen links at most, and
 * leaves take the lowest free numbers, so they reach these slots only at
 * the limit itself. */
#define SESSION_LATE_FD_SLOTS 256
#define SESSION_LATE_FD_TOP 65536 /* ... below this, whatever the limit (512 KiB of fd table) */
/* A dialing TCP session's write after this much quiet leaves quick-ACK
 * mode (write_some): TCP's minimum RTO, the silence after which Linux
 * acknowledges the next segment received at once. */
#define SESSION_DELAY_ACK_AFTER_MS 200

struct Session {
  gint refs;
  uint64_t id;
  GIOStream *conn;
  GPollableInputStream *in;
  GPollableOutputStream *out;
  GMainContext *ctx;
  EvLoop *loop;
  Channel *ch;
  SessionCallbacks cb;
  void *ud;
  EvWatch *watch;      /* TCP: the socket in the loop's epoll set (edge-triggered) */
  int fd;              /* TCP: the socket, read and written directly; -1 for ICE */
  bool delay_acks;     /* TCP initiator: see write_some */
  uint64_t last_write; /* when write_some last sent bytes (delay_acks) */
  bool has_late;       /* late_fd holds a second descriptor of the socket */
  int late_fd;         /* priority sessions: see session_set_priority */
  GSource *in_src;     /* ICE: GLib's pollable sources */
  GSource *out_src;    /* ICE */
  EvTimer hs_timer;
  char remote[80];
  bool opened;
  bool closed;
  bool by_peer; /* the far end (or its kernel) ended it: EOF, reset, BYE */
  char reason[160];
  uint64_t bytes_in, bytes_out; /* on the socket: ciphertext and framing */
  /* Output bounds (session_set_output_limits). */
  size_t max_queue;
  uint64_t stall_ms;
  Budget *budget;
  char source[BUDGET_KEY_MAX + 1];
  size_t charged; /* bytes held in budget under source */
  Budget *in_budget;
  size_t in_charged;    /* bytes held in in_budget under source */
  size_t queued;        /* output left after the last flush */
  uint64_t progress_at; /* last write, or when the queue last filled from empty */
  EvTimer stall_timer;
  bool overrun;
};

static void arm_output(Session *s);

/* The responders' cookie jar (session_set_cookie_jar), or NULL. */
static CookieJar *responder_jar;

void session_set_cookie_jar(CookieJar *jar)
{
  responder_jar = jar;
}

/* Hands the jar and the peer's IP address (the cookie's binding) to a TCP
 * responder's channel. An ICE stream has no address of its own: leaf-to-leaf
 * sessions answer every M1 at once. */
static void use_cookie_jar(Session *s, GSocket *sock)
{
  GSocketAddress *ra = g_socket_get_remote_address(sock, NULL);
  if (G_IS_INET_SOCKET_ADDRESS(ra)) {
    GInetAddress *ip = g_inet_socket_address_get_address(G_INET_SOCKET_ADDRESS(ra));
    gsize n = g_inet_address_get_native_size(ip);
    channel_set_cookie_jar(s->ch, responder_jar, g_inet_address_to_bytes(ip),
                           n <= COOKIE_ADDR_MAX ? n : 0);
  } else {
    channel_set_cookie_jar(s->ch, responder_jar, NULL, 0);
  }
  g_clear_object(&ra);
}

Session *session_ref(Session *s)
{
  g_atomic_int_inc(&s->refs);
  return s;
}

static void late_fd_drop(Session *s)
{
  if (s->has_late) {
    close(s->late_fd);
    s->has_late = false;
  }
}

static void drop_sources(Session *s)
{
  if (s->in_src) {
    g_source_destroy(s->in_src);
    g_source_unref(s->in_src);
    s->in_src = NULL;
  }
  if (s->out_src) {
    g_source_destroy(s->out_src);
    g_source_unref(s->out_src);
    s->out_src = NULL;
  }
  evwatch_free(s->watch);
  s->watch = NULL;
  late_fd_drop(s);
  evtimer_disarm(&s->hs_timer);
  evtimer_disarm(&s->stall_timer);
}

/* Charges the budget with what is queued now; false when it is refused. */
static bool charge(Session *s, size_t len)
{
  if (!s->budget || len == s->charged)
    return true;
  if (len < s->charged) {
    budget_give(s->budget, s->source, strlen(s->source), s->charged - len);
  } else if (!budget_take(s->budget, s->source, strlen(s->source), len - s->charged)) {
    return false;
  }
  s->charged = len;
  return true;
}

/* The same for the input buffers and in_budget. */
static bool charge_input(Session *s, size_t len)
{
  if (!s->in_budget || len == s->in_charged)
    return true;
  if (len < s->in_charged) {
    budget_give(s->in_budget, s->source, strlen(s->source), s->in_charged - len);
  } else if (!budget_take(s->in_budget, s->source, strlen(s->source), len - s->in_charged)) {
    return false;
  }
  s->in_charged = len;
  return true;
}

void session_unref(Session *s)
{
  if (!s || !g_atomic_int_dec_and_test(&s->refs))
    return;
  drop_sources(s);
  charge(s, 0);
  charge_input(s, 0);
  channel_free(s->ch);
  if (s->conn) {
    g_io_stream_close(s->conn, NULL, NULL);
    g_object_unref(s->conn);
  }
  g_free(s);
}

uint64_t session_id(const Session *s)
{
  return s->id;
}
const uint8_t *session_peer_id(const Session *s)
{
  return channel_peer_id(s->ch);
}
bool session_export(const Session *s, const char *label, uint8_t *out, size_t len)
{
  return s->ch && channel_export(s->ch, label, out, len);
}
const char *session_remote(const Session *s)
{
  return s->remote;
}
bool session_is_open(const Session *s)
{
  return s->opened && !s->closed;
}

void session_close(Session *s, const char *reason)
{
  if (s->closed)
    return;
  s->closed = true;
  g_strlcpy(s->reason, reason ? reason : "closed", sizeof s->reason);
  drop_sources(s);
  charge(s, 0); /* the queue is never sent now */
  charge_input(s, 0);
  /* Closing now (not at the last unref) tells the peer at once. The fd
   * number may soon be another socket's: never write to it again. */
  g_io_stream_close(s->conn, NULL, NULL);
  s->fd = -1;
  session_ref(s);
  if (s->cb.closed)
    s->cb.closed(s, s->reason, s->ud);
  session_unref(s);
}

static void on_stall_check(EvTimer *t, void *ud);

static void overrun(Session *s, const char *reason)
{
  s->overrun = true;
  session_close(s, reason);
}

/* One write: bytes taken, -1 would block, -2 failed (s is closed). A TCP
 * session calls send() itself: GIO's layers (type checks, a GError per
 * EAGAIN, a condition check) cost more than the syscall's own work on the
 * per-message path of a super node with 19,000 leaves (issue 12). */
static gssize write_some(Session *s, const uint8_t *out, size_t len, uint64_t now)
{
  char reason[160];
  if (s->fd >= 0) {
    ssize_t n;
    do
      n = send(s->fd, out, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n > 0 && s->delay_acks && now - s->last_write >= SESSION_DELAY_ACK_AFTER_MS) {
      /* The dialing side (a leaf) writes after seconds of silence (its
       * keepalive), and the reply (a PONG) then arrives in TCP's quick-ACK
       * mode: acknowledged at once, in the sender's context on loopback,
       * which doubled what each PONG cost the super node (issue 12). A
       * reply we send is acknowledged by our next message or by the
       * delayed-ACK timer instead. Linux only, and the mode lasts until
       * that timer fires (tcp(7)); only after a quiet spell, so a busy
       * dialer (a super-node link) pays no syscall per write. */
      static const int off = 0;
      setsockopt(s->fd, IPPROTO_TCP, TCP_QUICKACK, &off, sizeof off);
    }
    if (n > 0)
      s->last_write = now;
    if (n >= 0)
      return (gssize)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return -1;
    g_snprintf(reason, sizeof reason, "send failed: %s", g_strerror(errno));
  } else {
    GError *err = NULL;
    gssize n = g_pollable_output_stream_write_nonblocking(s->out, out, len, NULL, &err);
    if (n >= 0)
      return n;
    bool again = g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
    g_snprintf(reason, sizeof reason, "send failed: %s", err->message);
    g_error_free(err);
    if (again)
      return -1;
  }
  s->by_peer = true; /* a reset or a closed pipe: the far end is gone */
  session_close(s, reason);
  return -2;
}

/* Writes as much queued output as the socket takes. */
static bool flush(Session *s)
{
  size_t len;
  const uint8_t *out = channel_output(s->ch, &len);
  /* One clock read per flush: the stall clock starts now if the queue was
   * empty, and a write is progress. */
  uint64_t now = evloop_now(s->loop);
  if (s->queued == 0)
    s->progress_at = now;
  while (len > 0) {
    gssize n = write_some(s, out, len, now);
    if (n == -2)
      return false; /* closed */
    if (n < 0)
      break; /* would block */
    channel_output_consume(s->ch, (size_t)n);
    s->bytes_out += (uint64_t)n;
    if (n > 0)
      s->progress_at = now;
    out = channel_output(s->ch, &len);
  }
  s->queued = len;
  if (len == 0)
    channel_release_output(s->ch); /* an idle session holds no buffer */
  if (len > s->max_queue) {
    overrun(s, "peer is not reading (output queue full)");
    return false;
  }
  /* The memory the queue holds, not only its bytes: the buffer grows by
   * doubling and keeps up to CHANNEL_OUTPUT_KEEP while not empty. */
  if (!charge(s, len ? channel_output_capacity(s->ch) : 0)) {
    overrun(s, "peer is not reading (output budget exhausted)");
    return false;
  }
  if (len > 0) {
    arm_output(s);
    if (s->stall_ms && !evtimer_armed(&s->stall_timer))
      evtimer_arm(&s->stall_timer, s->progress_at + s->stall_ms);
  } else {
    evtimer_disarm(&s->stall_timer);
  }
  return true;
}

/* Output queued, and nothing written since stall_ms: the peer is gone or
 * holding us; either way its queue must not sit in memory. */
static void on_stall_check(EvTimer *t, void *ud)
{
  Session *s = ud;
  if (s->closed || s->queued == 0 || !s->stall_ms)
    return;
  uint64_t due = s->progress_at + s->stall_ms;
  if (evloop_now(s->loop) >= due)
    overrun(s, "peer is not reading (output stalled)");
  else
    evtimer_arm(t, due);
}

static gboolean on_writable(GObject *stream, gpointer ud)
{
  Session *s = ud;
  g_source_unref(s->out_src);
  s->out_src = NULL;
  flush(s);
  return G_SOURCE_REMOVE;
}

static void arm_output(Session *s)
{
  if (s->closed)
    return;
  if (s->watch) {
    evwatch_set(s->watch, EV_IN | EV_OUT);
    return;
  }
  if (s->out_src)
    return;
  s->out_src = g_pollable_output_stream_create_source(s->out, NULL);
  g_source_set_callback(s->out_src, (GSourceFunc)(void (*)(void))on_writable, s, NULL);
  g_source_attach(s->out_src, s->ctx);
}

/* Hands every complete message up; stops as soon as the session closes. */
static void deliver(Session *s)
{
  if (!s->opened && channel_state(s->ch) == CHANNEL_OPEN) {
    s->opened = true;
    evtimer_disarm(&s->hs_timer);
    if (s->cb.opened)
      s->cb.opened(s, s->ud);
  }
  while (!s->closed) {
    const uint8_t *msg;
    size_t len;
    int r = channel_read(s->ch, &msg, &len);
    if (r == 0)
      break;
    if (r < 0) {
      char reason[160];
      g_snprintf(reason, sizeof reason, "secure channel: %s", channel_error(s->ch));
      session_close(s, reason);
      break;
    }
    if (s->cb.message)
      s->cb.message(s, msg, len, s->ud);
  }
  if (!s->closed && channel_state(s->ch) == CHANNEL_CLOSED) {
    s->by_peer = true;
    session_close(s, "peer ended the session");
  }
}

/* One read: bytes read (0 at EOF), -1 nothing there, -2 failed (reason
 * filled). TCP: recv() directly, as write_some sends. */
static gssize read_some(Session *s, uint8_t *buf, size_t cap, char *reason, size_t rcap)
{
  if (s->fd >= 0) {
    ssize_t n;
    do
      n = recv(s->fd, buf, cap, 0);
    while (n < 0 && errno == EINTR);
    if (n >= 0)
      return (gssize)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
      return -1;
    g_snprintf(reason, rcap, "receive failed: %s", g_strerror(errno));
    return -2;
  }
  GError *err = NULL;
  gssize n = g_pollable_input_stream_read_nonblocking(s->in, buf, cap, NULL, &err);
  if (n >= 0)
    return n;
  bool again = g_error_matches(err, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_snprintf(reason, rcap, "receive failed: %s", err->message);
  g_error_free(err);
  return again ? -1 : -2;
}

/* Reads once: a TCP watch is edge-triggered, and a read shorter than the
 * buffer drained the socket (TCP hands all it holds; a segment arriving
 * after it raises a new edge). A full buffer may have left more: the
 * watch is kicked so the next pass reads again, as a level-triggered one
 * would, rather than this session reading on while others wait. The
 * caller holds a reference. */
static gssize read_once(Session *s)
{
  uint8_t buf[READ_CHUNK];
  char reason[160];
  gssize n = read_some(s, buf, sizeof buf, reason, sizeof reason);
  if (n > 0)
    s->bytes_in += (uint64_t)n;
  if (n == -2) {
    s->by_peer = true;
    session_close(s, reason);
  } else if (n == -1) {
    /* spurious: nothing there */
  } else if (n == 0) {
    s->by_peer = true;
    session_close(s, "connection closed by peer");
  } else if (!channel_feed(s->ch, buf, (size_t)n)) {
    g_snprintf(reason, sizeof reason, "secure channel: %s", channel_error(s->ch));
    session_close(s, reason);
  } else {
    deliver(s);
    size_t pending;
    channel_output(s->ch, &pending);
    if (!s->closed && (pending > 0 || s->queued > 0))
      flush(s); /* handshake replies (messages' replies were flushed as sent) */
    /* Every message is handled: no plaintext is lent out any more. */
    if (!s->closed) {
      channel_release_input(s->ch);
      if (!charge_input(s, channel_input_capacity(s->ch)))
        overrun(s, "peer's partial frames exceed the input budget");
    }
    if (!s->closed && s->watch && (size_t)n == sizeof buf)
      evwatch_kick(s->watch);
  }
  return n;
}

static gboolean on_readable(GObject *stream, gpointer ud)
{
  Session *s = ud;
  session_ref(s);
  read_once(s);
  gboolean keep = !s->closed;
  session_unref(s);
  return keep;
}

/* The TCP socket's watch: EV_ERR reads too, so the error closes us. */
static void on_fd(EvWatch *w, unsigned events, void *ud)
{
  Session *s = ud;
  session_ref(s);
  if (events & EV_ERR) {
    /* A reset or the peer's FIN: its EOF or error may sit behind the data
     * one read returns, and an edge watch is not told again (evloop.h). */
    while (!s->closed && read_once(s) > 0)
      ;
  } else if (events & EV_IN) {
    read_once(s);
  }
  if (!s->closed && (events & EV_OUT)) {
    evwatch_set(w, EV_IN);
    flush(s); /* re-asks for EV_OUT while output remains */
  }
  session_unref(s);
}

static void tcp_setup(Session *s, GSocket *sock)
{
  g_socket_set_blocking(sock, FALSE);
  /* GSocketClient's connect timeout stays on the socket and would end an
   * idle session after that long; liveness is the keepalive's job. */
  g_socket_set_timeout(sock, 0);
  g_socket_set_keepalive(sock, TRUE);
  /* Queries and hits are small frames answered at once: Nagle plus delayed
   * ACKs would add 40 ms stalls to a search crossing several hops. */
  if (g_socket_get_family(sock) != G_SOCKET_FAMILY_UNIX)
    g_socket_set_option(sock, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  GSocketAddress *ra = g_socket_get_remote_address(sock, NULL);
  if (G_IS_INET_SOCKET_ADDRESS(ra)) {
    gchar *host =
        g_inet_address_to_string(g_inet_socket_address_get_address(G_INET_SOCKET_ADDRESS(ra)));
    g_snprintf(s->remote, sizeof s->remote, "%s:%u", host,
               g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(ra)));
    g_free(host);
  } else {
    g_strlcpy(s->remote, "local", sizeof s->remote);
  }
  g_clear_object(&ra);
}

static void on_handshake_timeout(EvTimer *t, void *ud)
{
  session_close(ud, "handshake timed out");
}

Session *session_new(GIOStream *conn, uint64_t id, const Identity *self, ChannelRole role,
                     GMainContext *ctx, const SessionCallbacks *cb, void *ud)
{
  Session *s = g_new0(Session, 1);
  s->refs = 1;
  s->id = id;
  s->conn = g_object_ref(conn);
  s->in = G_POLLABLE_INPUT_STREAM(g_io_stream_get_input_stream(conn));
  s->out = G_POLLABLE_OUTPUT_STREAM(g_io_stream_get_output_stream(conn));
  s->ctx = ctx;
  s->loop = evloop_for_context(ctx);
  s->cb = *cb;
  s->ud = ud;
  s->max_queue = SESSION_MAX_OUTPUT;
  s->fd = -1;
  s->ch = channel_new(self, role);
  if (!s->loop || !s->ch) {
    session_unref(s);
    return NULL;
  }
  evtimer_init(&s->hs_timer, s->loop, on_handshake_timeout, s);
  evtimer_init(&s->stall_timer, s->loop, on_stall_check, s);
  if (G_IS_SOCKET_CONNECTION(conn)) {
    GSocket *sock = g_socket_connection_get_socket(G_SOCKET_CONNECTION(conn));
    tcp_setup(s, sock);
    if (role == CHANNEL_RESPONDER && responder_jar)
      use_cookie_jar(s, sock);
    s->watch = evwatch_new(s->loop, g_socket_get_fd(sock), EV_IN | EV_EDGE, on_fd, s);
    if (!s->watch) {
      session_unref(s);
      return NULL;
    }
    s->fd = g_socket_get_fd(sock);
    s->delay_acks = role == CHANNEL_INITIATOR && g_socket_get_family(sock) != G_SOCKET_FAMILY_UNIX;
  } else {
    g_strlcpy(s->remote, "ice", sizeof s->remote);
    s->in_src = g_pollable_input_stream_create_source(s->in, NULL);
    g_source_set_callback(s->in_src, (GSourceFunc)(void (*)(void))on_readable, s, NULL);
    g_source_attach(s->in_src, ctx);
  }
  evtimer_arm(&s->hs_timer, evloop_now(s->loop) + SESSION_HANDSHAKE_MS);
  /* The initiator's first handshake message goes out from the loop, not
   * from here: a write failing now would run `closed` before our caller
   * holds the session, and the caller's state for it may be freed under it
   * (issue 11, finding 6). */
  size_t first;
  channel_output(s->ch, &first);
  if (first > 0)
    arm_output(s);
  return s;
}

bool session_send(Session *s, const uint8_t *msg, size_t len)
{
  if (!session_is_open(s) || !channel_write(s->ch, msg, len))
    return false;
  return flush(s);
}

/* A killed process's sockets are released last fd first (Linux runs the
 * deferred releases of exit_files() in reverse), so a link accepted before
 * 10,000 leaves was reset after all of theirs: the backup read the link's
 * close 160-320 ms after a kill -9, once the leaves' reports had come in
 * (issue 12). A second descriptor near the top of the fd limit holds the
 * socket until the end of the walk, so it is released first. Costs one fd
 * per priority session; none if no slot is free up there. */
static void late_fd_take(Session *s, int fd)
{
  struct rlimit rl;
  if (s->has_late || getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur <= SESSION_LATE_FD_SLOTS)
    return;
  /* Not the limit itself when it is huge (containers set ~10^9): the
   * kernel would grow our fd table to it, 8 bytes a slot. */
  rlim_t top = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > SESSION_LATE_FD_TOP
                   ? SESSION_LATE_FD_TOP
                   : rl.rlim_cur;
  int floor = (int)top - SESSION_LATE_FD_SLOTS;
  if (fd >= floor)
    return;
  int late = fcntl(fd, F_DUPFD_CLOEXEC, floor);
  if (late < 0)
    return; /* the slots are taken: the priority still holds */
  s->late_fd = late;
  s->has_late = true;
}

void session_set_priority(Session *s, bool prio)
{
  if (!s->watch || s->closed)
    return;
  if (!evwatch_set_priority(s->watch, prio))
    g_debug("session %" G_GUINT64_FORMAT ": priority not set", s->id);
  if (!prio)
    late_fd_drop(s);
  else if (G_IS_SOCKET_CONNECTION(s->conn))
    late_fd_take(s, g_socket_get_fd(g_socket_connection_get_socket(G_SOCKET_CONNECTION(s->conn))));
}

uint64_t session_bytes_in(const Session *s)
{
  return s->bytes_in;
}

uint64_t session_bytes_out(const Session *s)
{
  return s->bytes_out;
}

void session_set_output_limits(Session *s, const SessionOutputLimits *l)
{
  charge(s, 0); /* what the old budgets held goes back to them */
  charge_input(s, 0);
  s->max_queue = l->max_queue ? l->max_queue : SESSION_MAX_OUTPUT;
  s->stall_ms = l->stall_ms;
  s->budget = l->budget;
  s->in_budget = l->input_budget;
  g_strlcpy(s->source, l->source ? l->source : "", sizeof s->source);
  if (s->closed) {
    s->budget = NULL;
    s->in_budget = NULL;
  } else if (!charge_input(s, channel_input_capacity(s->ch))) {
    overrun(s, "peer's partial frames exceed the input budget");
  } else if (s->queued > 0) {
    flush(s); /* applies the new bounds to what is queued */
  }
}

size_t session_queued(const Session *s)
{
  return s->queued;
}

size_t session_output_capacity(const Session *s)
{
  return channel_output_capacity(s->ch);
}

bool session_closed_by_peer(const Session *s)
{
  return s->by_peer;
}

bool session_output_overrun(const Session *s)
{
  return s->overrun;
}
