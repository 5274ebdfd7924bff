/* ice_pair.c - canopy-icepair: one side of an ICE connection (nat/ice.h)
 * between two processes, for the NAT lab (tests/natlab/ice_nat.sh).
 *
 *   canopy-icepair offer|answer [--stun IP:PORT] [--turn IP:PORT --turn-user U
 *                  --turn-pass P] [--local IP...] --exchange-dir DIR [--bytes N]
 *                  [--timeout-ms MS] [--deadline-s S]
 *
 * The descriptions travel through files in DIR, as the super nodes would
 * carry them: offer writes DIR/offer and waits for DIR/answer; answer waits
 * for DIR/offer and writes DIR/answer (each written under a temporary name
 * and renamed, so the reader never sees half a file). Once connected the
 * offering side sends N pseudo-random bytes over the ICE stream, the answering
 * side checks every byte and sends one byte back as a receipt; the sender
 * then closes its side.
 *
 * On success each side prints one JSON line and exits 0:
 *   {"role":..,"local_type":..,"remote_type":..,"local_addr":..,"remote_addr":..,
 *    "relayed":..,"gather_ms":..,"setup_ms":..,"bytes":..,"seconds":..,
 *    "mbps":..,"MBps":..,"transport":{..},"cpu_s":..,"wakeups":..,"path_changes":..}
 * (the path as it was at the end; path_changes counts pairs libnice
 * selected after the first)
 * gather_ms runs from ice_peer_new to local_ready, setup_ms from
 * ice_peer_set_remote to the connected callback; mbps is
 * megabits per second and MBps megabytes (10^6) per second of the transfer,
 * as the side saw it (the sender until the receipt arrived, the receiver
 * from its first byte to its last). On failure it prints "FAILED: reason"
 * and exits 1; bad usage exits 2.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <gio/gio.h>

#include "bulk_stream.h"
#include "ice.h"

#define CHUNK 65536
#define POLL_MS 50
#define STALL_MS 30000 /* no progress this long ends the run */

typedef struct {
  gboolean offer;
  char *stun_host, *turn_host;
  guint16 stun_port, turn_port;
  char *turn_user, *turn_pass;
  GPtrArray *local; /* char*, NULL-terminated when used */
  char *dir;
  guint64 bytes;
  guint timeout_ms;
  guint deadline_s;
} Opts;

typedef struct {
  Opts o;
  GMainLoop *loop;
  IcePeer *peer;
  int rc; /* -1 while running */
  gint64 t_start, t_gathered, t_remote, t_connected, t_first, t_last;
  gboolean remote_set;
  GSource *poll_src, *deadline_src, *stall_src;
  /* transfer */
  GIOStream *io;
  GPollableInputStream *in;
  GPollableOutputStream *out;
  GSource *in_src, *out_src;
  IcePath path;
  unsigned path_changes;
  guint64 done; /* bytes sent (offer) or verified (answer) */
  gboolean receipt_sent, receipt_got;
  guint64 progress_at; /* done at the last stall check */
} Run;

static gint64 now_us(void)
{
  return g_get_monotonic_time();
}

static void finish(Run *r, int rc, const char *why)
{
  if (r->rc != -1)
    return;
  r->rc = rc;
  if (rc != 0)
    printf("FAILED: %s\n", why);
  fflush(stdout);
  g_main_loop_quit(r->loop);
}

/* ---- the byte pattern both sides derive from the offset ---- */

static guint64 splitmix(guint64 x)
{
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/* Byte at offset pos is byte (pos % PATTERN_PERIOD) of a pseudo-random
 * table both sides build at start; the table runs CHUNK bytes past one
 * period, so any read or write of up to CHUNK bytes is one contiguous slice
 * of it. The sender writes from the table and the receiver compares against
 * it: the pattern costs a memcmp, like the TCP baseline's file of zeros
 * costs nothing (generated per byte it was a tenth of these two cores). The
 * period is odd, so no power-of-two misplacement by the transport can line
 * up with it. */
#define PATTERN_PERIOD ((1u << 20) + 7)
static guint8 *pattern_table;

static void pattern_init(void)
{
  pattern_table = g_malloc(PATTERN_PERIOD + CHUNK + 8);
  for (gsize i = 0; i < PATTERN_PERIOD; i += 8) {
    guint64 w = GUINT64_TO_LE(splitmix(i >> 3));
    memcpy(pattern_table + i, &w, 8);
  }
  memcpy(pattern_table + PATTERN_PERIOD, pattern_table, CHUNK);
}

/* The pattern from stream offset off on, valid for CHUNK bytes. */
static const guint8 *pattern(guint64 off)
{
  return pattern_table + off % PATTERN_PERIOD;
}

/* ---- signalling through files ---- */

static gboolean write_file_atomic(const char *path, const char *text)
{
  char *tmp = g_strconcat(path, ".tmp", NULL);
  GError *e = NULL;
  gboolean ok = g_file_set_contents(tmp, text, -1, &e) && rename(tmp, path) == 0;
  if (!ok)
    fprintf(stderr, "icepair: writing %s: %s\n", path, e ? e->message : g_strerror(errno));
  g_clear_error(&e);
  g_free(tmp);
  return ok;
}

static gboolean poll_remote(gpointer data)
{
  Run *r = data;
  char *path = g_build_filename(r->o.dir, r->o.offer ? "answer" : "offer", NULL);
  char *text = NULL;
  gsize len = 0;
  gboolean have = g_file_get_contents(path, &text, &len, NULL);
  g_free(path);
  if (!have)
    return G_SOURCE_CONTINUE;
  GError *e = NULL;
  r->t_remote = now_us();
  r->remote_set = TRUE;
  if (!ice_peer_set_remote(r->peer, text, &e)) {
    char why[512];
    g_snprintf(why, sizeof why, "remote description refused: %s", e->message);
    g_error_free(e);
    g_free(text);
    finish(r, 1, why);
  } else {
    g_free(text);
  }
  g_source_unref(r->poll_src);
  r->poll_src = NULL;
  return G_SOURCE_REMOVE;
}

static void start_polling(Run *r)
{
  r->poll_src = g_timeout_source_new(POLL_MS);
  g_source_set_callback(r->poll_src, poll_remote, r, NULL);
  g_source_attach(r->poll_src, NULL);
}

/* ---- transfer ---- */

static void report(Run *r)
{
  gint64 t0 = r->o.offer ? r->t_connected : r->t_first;
  gint64 t1 = r->t_last;
  double secs = t1 > t0 ? (double)(t1 - t0) / 1e6 : 0.0;
  double MBps = secs > 0 ? (double)r->o.bytes / 1e6 / secs : 0.0;
  /* The transport's view, for reading a figure: losses, resends, RTT and
   * the rate it settled on. */
  BulkStats st = {0};
  /* What the whole process spent, set-up included: CPU per byte is the
   * figure that decides the rate on a small machine. */
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu_s = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                 (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  if (r->io)
    bulk_stream_stats(r->io, &st);
  printf("{\"role\":\"%s\",\"local_type\":\"%s\",\"remote_type\":\"%s\",\"local_addr\":\"%s\","
         "\"remote_addr\":\"%s\",\"relayed\":%s,\"gather_ms\":%" G_GINT64_FORMAT
         ",\"setup_ms\":%" G_GINT64_FORMAT ",\"bytes\":%" G_GUINT64_FORMAT
         ",\"seconds\":%.3f,\"mbps\":%.2f,\"MBps\":%.2f,\"transport\":{\"packets_sent\":"
         "%" G_GUINT64_FORMAT ",\"packets_received\":%" G_GUINT64_FORMAT
         ",\"packets_lost\":%" G_GUINT64_FORMAT ",\"spurious_losses\":%" G_GUINT64_FORMAT
         ",\"dropped\":%" G_GUINT64_FORMAT ",\"srtt_us\":%" G_GUINT64_FORMAT
         ",\"min_rtt_us\":%" G_GUINT64_FORMAT ",\"delivery_rate\":%" G_GUINT64_FORMAT
         ",\"cwnd\":%" G_GUINT64_FORMAT ",\"mtu\":%" G_GUINT64_FORMAT
         ",\"mtu_probes\":%" G_GUINT64_FORMAT ",\"mtu_black_holes\":%" G_GUINT64_FORMAT
         "},\"cpu_s\":%.3f,\"wakeups\":%ld,\"path_changes\":%u}\n",
         r->o.offer ? "offer" : "answer", r->path.local_type, r->path.remote_type,
         r->path.local_addr, r->path.remote_addr, r->path.relayed ? "true" : "false",
         (r->t_gathered - r->t_start) / 1000, (r->t_connected - r->t_remote) / 1000, r->o.bytes,
         secs, MBps * 8, MBps, st.packets_sent, st.packets_received, st.packets_lost,
         st.spurious_losses, st.dropped_datagrams, st.srtt_us, st.min_rtt_us, st.delivery_rate,
         st.cwnd, st.mtu, st.mtu_probes, st.mtu_black_holes, cpu_s, (long)ru.ru_nvcsw,
         r->path_changes);
}

static gboolean on_writable(GObject *o, gpointer data);

static void arm_output(Run *r)
{
  if (r->out_src)
    return;
  r->out_src = g_pollable_output_stream_create_source(r->out, NULL);
  g_source_set_callback(r->out_src, G_SOURCE_FUNC(on_writable), r, NULL);
  g_source_attach(r->out_src, NULL);
}

/* Sender: as much as the stream takes. Receiver: the one-byte receipt. */
static gboolean on_writable(GObject *o, gpointer data)
{
  Run *r = data;
  static const guint8 receipt[1] = {'K'};
  for (;;) {
    gsize want;
    const guint8 *buf;
    if (r->o.offer) {
      if (r->done == r->o.bytes)
        break;
      want = (gsize)MIN((guint64)CHUNK, r->o.bytes - r->done);
      buf = pattern(r->done);
    } else {
      if (r->receipt_sent)
        break;
      buf = receipt;
      want = 1;
    }
    GError *e = NULL;
    gssize n = g_pollable_output_stream_write_nonblocking(r->out, buf, want, NULL, &e);
    if (n < 0) {
      gboolean block = g_error_matches(e, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
      char why[256];
      g_snprintf(why, sizeof why, "write: %s", e->message);
      g_error_free(e);
      if (block)
        return G_SOURCE_CONTINUE; /* keep waiting */
      finish(r, 1, why);
      break;
    }
    if (r->o.offer)
      r->done += (guint64)n;
    else
      r->receipt_sent = TRUE;
  }
  if (r->out_src) {
    g_source_unref(r->out_src);
    r->out_src = NULL;
  }
  return G_SOURCE_REMOVE;
}

static gboolean on_readable(GObject *o, gpointer data)
{
  Run *r = data;
  guint8 buf[CHUNK];
  /* Read until the stream would block: fewer wakeups per byte. */
  while (r->rc == -1) {
    GError *e = NULL;
    gssize n = g_pollable_input_stream_read_nonblocking(r->in, buf, sizeof buf, NULL, &e);
    if (n < 0) {
      gboolean block = g_error_matches(e, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
      char why[256];
      g_snprintf(why, sizeof why, "read: %s", e->message);
      g_error_free(e);
      if (block)
        return G_SOURCE_CONTINUE;
      finish(r, 1, why);
      break;
    }
    if (n == 0) { /* EOF */
      if (!r->o.offer && r->done == r->o.bytes) {
        report(r);
        finish(r, 0, NULL);
      } else {
        finish(r, 1, "stream closed early");
      }
      break;
    }
    if (r->o.offer) { /* the receipt */
      r->t_last = now_us();
      r->receipt_got = TRUE;
      report(r);
      /* Half-close so the receiver sees EOF, then linger briefly. */
      g_output_stream_close(G_OUTPUT_STREAM(r->out), NULL, NULL);
      finish(r, 0, NULL);
      break;
    }
    if (r->done == 0)
      r->t_first = now_us();
    if ((guint64)n > r->o.bytes - r->done) {
      finish(r, 1, "more bytes than announced");
      break;
    }
    if (memcmp(buf, pattern(r->done), (gsize)n) != 0) {
      char why[96];
      g_snprintf(why, sizeof why, "byte mismatch in [%" G_GUINT64_FORMAT ", +%zd)", r->done, n);
      finish(r, 1, why);
      break;
    }
    r->done += (guint64)n;
    if (r->done == r->o.bytes && !r->receipt_sent) {
      r->t_last = now_us();
      arm_output(r);
      on_writable(NULL, r);
    }
  }
  return G_SOURCE_REMOVE;
}

static gboolean on_stall_check(gpointer data)
{
  Run *r = data;
  if (r->done == r->progress_at && !(r->o.offer && r->done == r->o.bytes) &&
      !(!r->o.offer && r->receipt_sent)) {
    char why[128];
    g_snprintf(why, sizeof why,
               "transfer stalled at %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " bytes", r->done,
               r->o.bytes);
    finish(r, 1, why);
    return G_SOURCE_REMOVE;
  }
  r->progress_at = r->done;
  return G_SOURCE_CONTINUE;
}

/* ---- IcePeer callbacks ---- */

static void on_local_ready(IcePeer *p, const char *desc, gpointer ud)
{
  Run *r = ud;
  r->t_gathered = now_us();
  fprintf(stderr, "icepair %s: gathered in %" G_GINT64_FORMAT " ms (%zu bytes)\n",
          r->o.offer ? "offer" : "answer", (r->t_gathered - r->t_start) / 1000, strlen(desc));
  char *path = g_build_filename(r->o.dir, r->o.offer ? "offer" : "answer", NULL);
  if (!write_file_atomic(path, desc))
    finish(r, 1, "cannot write the description");
  g_free(path);
}

static void on_connected(IcePeer *p, GIOStream *io, const IcePath *path, gpointer ud)
{
  Run *r = ud;
  r->t_connected = now_us();
  r->path = *path;
  fprintf(stderr, "icepair %s: connected %s %s -> %s %s%s in %" G_GINT64_FORMAT " ms\n",
          r->o.offer ? "offer" : "answer", path->local_type, path->local_addr, path->remote_type,
          path->remote_addr, path->relayed ? " (relayed)" : "",
          (r->t_connected - r->t_remote) / 1000);
  r->io = io;
  r->in = G_POLLABLE_INPUT_STREAM(g_io_stream_get_input_stream(io));
  r->out = G_POLLABLE_OUTPUT_STREAM(g_io_stream_get_output_stream(io));
  r->in_src = g_pollable_input_stream_create_source(r->in, NULL);
  g_source_set_callback(r->in_src, G_SOURCE_FUNC(on_readable), r, NULL);
  g_source_attach(r->in_src, NULL);
  r->stall_src = g_timeout_source_new(STALL_MS);
  g_source_set_callback(r->stall_src, on_stall_check, r, NULL);
  g_source_attach(r->stall_src, NULL);
  if (r->o.offer) {
    arm_output(r);
    on_writable(NULL, r);
  } else if (r->o.bytes == 0) {
    r->t_first = r->t_last = now_us();
    arm_output(r);
    on_writable(NULL, r);
  }
}

/* The report gives the path at the end (and how often it changed). */
static void on_path_changed(IcePeer *p, const IcePath *path, gpointer ud)
{
  Run *r = ud;
  r->path = *path;
  r->path_changes++;
}

static void on_failed(IcePeer *p, const char *reason, gpointer ud)
{
  finish(ud, 1, reason);
}

static gboolean on_deadline(gpointer data)
{
  Run *r = data;
  char why[96];
  g_snprintf(why, sizeof why, "no result within %u s", r->o.deadline_s);
  finish(r, 1, why);
  return G_SOURCE_REMOVE;
}

/* ---- command line ---- */

static int usage(void)
{
  fprintf(stderr,
          "usage: canopy-icepair offer|answer [--stun IP:PORT] [--turn IP:PORT --turn-user U "
          "--turn-pass P]\n"
          "       [--local IP...] --exchange-dir DIR [--bytes N] [--timeout-ms MS] "
          "[--deadline-s S]\n");
  return 2;
}

/* "IP:PORT" or "[IPv6]:PORT". */
static gboolean host_port(const char *s, char **host, guint16 *port)
{
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s)
    return FALSE;
  char *end = NULL;
  unsigned long p = strtoul(colon + 1, &end, 10);
  if (*end || p == 0 || p > 65535)
    return FALSE;
  if (s[0] == '[' && colon[-1] == ']')
    *host = g_strndup(s + 1, (gsize)(colon - s - 2));
  else
    *host = g_strndup(s, (gsize)(colon - s));
  *port = (guint16)p;
  return TRUE;
}

static gboolean parse(int argc, char **argv, Opts *o)
{
  if (argc < 2)
    return FALSE;
  if (strcmp(argv[1], "offer") == 0)
    o->offer = TRUE;
  else if (strcmp(argv[1], "answer") != 0)
    return FALSE;
  o->local = g_ptr_array_new();
  o->timeout_ms = ICE_DEFAULT_TIMEOUT_MS;
  o->deadline_s = 300;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--local") == 0) {
      if (!v || g_str_has_prefix(v, "--"))
        return FALSE;
      while (i + 1 < argc && !g_str_has_prefix(argv[i + 1], "--"))
        g_ptr_array_add(o->local, argv[++i]);
      continue;
    }
    if (!v)
      return FALSE;
    i++;
    if (strcmp(a, "--stun") == 0) {
      if (!host_port(v, &o->stun_host, &o->stun_port))
        return FALSE;
    } else if (strcmp(a, "--turn") == 0) {
      if (!host_port(v, &o->turn_host, &o->turn_port))
        return FALSE;
    } else if (strcmp(a, "--turn-user") == 0) {
      o->turn_user = (char *)v;
    } else if (strcmp(a, "--turn-pass") == 0) {
      o->turn_pass = (char *)v;
    } else if (strcmp(a, "--exchange-dir") == 0) {
      o->dir = (char *)v;
    } else if (strcmp(a, "--bytes") == 0) {
      char *end = NULL;
      o->bytes = g_ascii_strtoull(v, &end, 10);
      if (*end)
        return FALSE;
    } else if (strcmp(a, "--timeout-ms") == 0) {
      o->timeout_ms = (guint)strtoul(v, NULL, 10);
    } else if (strcmp(a, "--deadline-s") == 0) {
      o->deadline_s = (guint)strtoul(v, NULL, 10);
    } else {
      return FALSE;
    }
  }
  if (!o->dir || (o->turn_host && (!o->turn_user || !o->turn_pass)))
    return FALSE;
  return TRUE;
}

int main(int argc, char **argv)
{
  Run r = {.rc = -1};
  if (!parse(argc, argv, &r.o))
    return usage();
  pattern_init();
  g_ptr_array_add(r.o.local, NULL);

  r.loop = g_main_loop_new(NULL, FALSE);
  IceConfig cfg = {
      .stun_host = r.o.stun_host,
      .stun_port = r.o.stun_port,
      .turn_host = r.o.turn_host,
      .turn_port = r.o.turn_port,
      .turn_user = r.o.turn_user,
      .turn_pass = r.o.turn_pass,
      .local_addrs = (const char *const *)r.o.local->pdata,
      .timeout_ms = r.o.timeout_ms,
  };
  static const IceCallbacks cb = {on_local_ready, on_connected, on_failed, on_path_changed};
  r.t_start = now_us();
  r.peer = ice_peer_new(g_main_context_default(), r.o.offer, &cfg, &cb, &r);
  if (!r.peer) {
    printf("FAILED: cannot start ICE (see the log above)\n");
    return 1;
  }
  start_polling(&r);
  r.deadline_src = g_timeout_source_new_seconds(r.o.deadline_s);
  g_source_set_callback(r.deadline_src, on_deadline, &r, NULL);
  g_source_attach(r.deadline_src, NULL);

  g_main_loop_run(r.loop);

  /* The sender lingers a moment so its FIN and the last ACKs get out; the
   * receiver waited for that FIN already. */
  if (r.o.offer && r.rc == 0) {
    gint64 end = now_us() + 300 * 1000;
    while (now_us() < end)
      if (!g_main_context_iteration(NULL, FALSE))
        g_usleep(2000);
  }
  GSource *srcs[] = {r.poll_src, r.deadline_src, r.stall_src, r.in_src, r.out_src};
  for (size_t i = 0; i < G_N_ELEMENTS(srcs); i++)
    if (srcs[i]) {
      g_source_destroy(srcs[i]);
      g_source_unref(srcs[i]);
    }
  ice_peer_free(r.peer);
  g_main_loop_unref(r.loop);
  g_ptr_array_free(r.o.local, TRUE);
  g_free(r.o.stun_host);
  g_free(r.o.turn_host);
  return r.rc;
}
