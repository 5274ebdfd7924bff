/* bulk_stream.c - a pollable GIOStream over nat/bulk.c.
 *
 * The state (the Bulk endpoint, its timer, the send function) lives in a
 * reference-counted Link shared by the GIOStream and its two halves, so a
 * caller holding only the input or output stream keeps nothing dangling.
 *
 * Every event - a datagram in, a write, a read that frees window - only
 * marks the timer source due now; its dispatch runs Bulk's timers, drains
 * the datagrams to send and re-arms it for bulk_next_timer. libnice hands
 * over every datagram waiting on its socket in one dispatch, so the ACKs
 * and data they call for leave in one batch after it, not one by one. */
#include "bulk_stream.h"

#include <nettle/umac.h>
#include <sodium.h>
#include <string.h>

typedef struct {
  GMainContext *ctx; /* borrowed */
  Bulk *bulk;        /* NULL once detached */
  BulkSendFunc send;
  BulkFlushFunc flush;
  gpointer ud;
  gboolean sendable;
  gboolean poked;                 /* timer set to fire at once, not yet dispatched */
  gboolean batching, batch_poked; /* see bulk_stream_batch_begin */
  GSource *timer;                 /* owned, attached to ctx while bulk lives */
  gint64 armed;                   /* the timer's ready time as last set (-1: off) */
  guint8 *pkt;                    /* one datagram, mtu + tag bytes */
  size_t mtu;
  gboolean keyed;
  struct umac64_ctx tx, rx; /* expanded keys, one per direction */
  /* Keys bulk_stream_rekey announced: next_rx is tried (before rx) until a
   * datagram verifies under it; then it replaces rx for good, and next_tx
   * replaces tx if it was waiting for that. */
  gboolean next_pending, next_tx_waits;
  struct umac64_ctx next_tx, next_rx;
  guint64 unauthenticated; /* datagrams dropped for a bad or missing tag */
  gboolean rekeyed;        /* bulk_stream_rekey's keys are the only ones now */
} Link;

G_STATIC_ASSERT(UMAC64_DIGEST_SIZE == BULK_STREAM_TAG_BYTES);
G_STATIC_ASSERT(UMAC_KEY_SIZE == BULK_STREAM_KEY_BYTES);
G_STATIC_ASSERT(BULK_HEADER_BYTES <= UMAC_MAX_NONCE_SIZE);

/* The tag of pkt[0..len) (len >= BULK_HEADER_BYTES) into tag. The nonce is
 * Bulk's header: the packet number makes it unique for every datagram sent
 * under one key, which UMAC needs (RFC 4418 section 6.4.1). */
static void link_tag(struct umac64_ctx *k, const guint8 *pkt, size_t len, guint8 *tag)
{
  umac64_set_nonce(k, BULK_HEADER_BYTES, pkt);
  umac64_update(k, len, pkt);
  umac64_digest(k, BULK_STREAM_TAG_BYTES, tag);
}

static void link_detach(Link *l)
{
  if (l->timer) {
    g_source_destroy(l->timer);
    g_source_unref(l->timer);
    l->timer = NULL;
  }
  bulk_free(l->bulk);
  l->bulk = NULL;
  l->send = NULL;
  l->flush = NULL;
  g_clear_pointer(&l->pkt, g_free);
  sodium_memzero(&l->tx, sizeof l->tx);
  sodium_memzero(&l->rx, sizeof l->rx);
}

static Link *link_ref(Link *l)
{
  return g_rc_box_acquire(l);
}

static void link_unref(Link *l)
{
  g_rc_box_release_full(l, (GDestroyNotify)link_detach);
}

/* Every g_source_set_ready_time also signals the context's wakeup fd (two
 * system calls): only call it for a change. */
static void timer_set(Link *l, gint64 t)
{
  if (l->armed != t) {
    l->armed = t;
    g_source_set_ready_time(l->timer, t);
  }
}

/* Sends what Bulk has for now and arms the timer for its next deadline. */
static void link_flush(Link *l)
{
  if (!l->bulk)
    return;
  if (!l->sendable) {
    timer_set(l, -1);
    return;
  }
  gint64 now = g_get_monotonic_time();
  size_t n;
  gboolean sent = FALSE;
  while (l->bulk && (n = bulk_poll_datagram(l->bulk, l->pkt, l->mtu, (uint64_t)now)) > 0) {
    if (l->keyed) {
      link_tag(&l->tx, l->pkt, n, l->pkt + n);
      n += BULK_STREAM_TAG_BYTES;
    }
    l->send(l->pkt, n, l->ud);
    sent = TRUE;
  }
  if (sent && l->flush)
    l->flush(l->ud);
  uint64_t next = bulk_next_timer(l->bulk);
  timer_set(l, next == UINT64_MAX ? -1 : (gint64)MIN(next, G_MAXINT64));
}

/* Something changed: service Bulk at the end of this main-loop iteration
 * (once, however many datagrams came in meanwhile). */
static void link_poke(Link *l)
{
  if (l->batching) {
    l->batch_poked = TRUE; /* bulk_stream_batch_end services it */
    return;
  }
  if (l->bulk && l->sendable && !l->poked) {
    l->poked = TRUE;
    timer_set(l, 0);
  }
}

typedef struct {
  GSource source;
  Link *link; /* borrowed: the Link destroys its timer before it goes */
} TimerSource;

/* Runs Bulk's due timers and sends what it has. link_flush re-arms the
 * timer for Bulk's next deadline, which replaces any pending poke. */
static void link_service(Link *l)
{
  l->poked = FALSE;
  if (!l->bulk)
    return;
  gint64 now = g_get_monotonic_time();
  if (bulk_next_timer(l->bulk) <= (uint64_t)now)
    bulk_on_timer(l->bulk, (uint64_t)now);
  link_flush(l);
}

static gboolean timer_dispatch(GSource *src, GSourceFunc cb, gpointer data)
{
  link_service(((TimerSource *)src)->link);
  return G_SOURCE_CONTINUE;
}

static GSourceFuncs timer_funcs = {NULL, NULL, timer_dispatch, NULL, NULL, NULL};

static gboolean link_readable(const Link *l)
{
  return !l->bulk || bulk_readable(l->bulk) > 0 || bulk_eof(l->bulk);
}

static gboolean link_writable(const Link *l)
{
  return !l->bulk || bulk_writable(l->bulk) > 0;
}

/* ---- level-triggered sources for both halves ---- */

typedef struct {
  GSource source;
  GObject *stream; /* owned: the half the source is for */
  Link *link;      /* owned */
  gboolean output;
} LevelSource;

static gboolean level_ready(GSource *src)
{
  LevelSource *ls = (LevelSource *)src;
  return ls->output ? link_writable(ls->link) : link_readable(ls->link);
}

static gboolean level_prepare(GSource *src, gint *timeout)
{
  *timeout = -1;
  return level_ready(src);
}

static gboolean level_dispatch(GSource *src, GSourceFunc cb, gpointer ud)
{
  GPollableSourceFunc fn = (GPollableSourceFunc)(void (*)(void))cb;
  return fn ? fn(((LevelSource *)src)->stream, ud) : G_SOURCE_REMOVE;
}

static void level_finalize(GSource *src)
{
  LevelSource *ls = (LevelSource *)src;
  g_object_unref(ls->stream);
  link_unref(ls->link);
}

static GSourceFuncs level_funcs = {level_prepare,  level_ready, level_dispatch,
                                   level_finalize, NULL,        NULL};

static GSource *level_source_new(GObject *stream, Link *l, gboolean output, GCancellable *c)
{
  GSource *src = g_source_new(&level_funcs, sizeof(LevelSource));
  g_source_set_name(src, output ? "CanopyBulkOutput" : "CanopyBulkInput");
  LevelSource *ls = (LevelSource *)src;
  ls->stream = g_object_ref(stream);
  ls->link = link_ref(l);
  ls->output = output;
  if (c) {
    GSource *cs = g_cancellable_source_new(c);
    g_source_set_dummy_callback(cs);
    g_source_add_child_source(src, cs);
    g_source_unref(cs);
  }
  return src;
}

static gssize would_block(GError **error)
{
  g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK, "no data yet");
  return -1;
}

/* ---- input ---- */

#define CANOPY_TYPE_BULK_INPUT (canopy_bulk_input_get_type())
G_DECLARE_FINAL_TYPE(CanopyBulkInput, canopy_bulk_input, CANOPY, BULK_INPUT, GInputStream)

struct _CanopyBulkInput {
  GInputStream parent_instance;
  Link *link; /* owned */
};

static void canopy_bulk_input_pollable_init(GPollableInputStreamInterface *iface);
G_DEFINE_FINAL_TYPE_WITH_CODE(CanopyBulkInput, canopy_bulk_input, G_TYPE_INPUT_STREAM,
                              G_IMPLEMENT_INTERFACE(G_TYPE_POLLABLE_INPUT_STREAM,
                                                    canopy_bulk_input_pollable_init))

static gssize input_read_nonblocking(GPollableInputStream *s, void *buf, gsize count,
                                     GError **error)
{
  Link *l = CANOPY_BULK_INPUT(s)->link;
  if (!l->bulk)
    return 0;
  size_t n = bulk_read(l->bulk, buf, count);
  if (n > 0) {
    link_poke(l); /* the freed window may be worth an update */
    return (gssize)n;
  }
  return bulk_eof(l->bulk) || count == 0 ? 0 : would_block(error);
}

static gssize input_read(GInputStream *s, void *buf, gsize count, GCancellable *c, GError **error)
{
  return input_read_nonblocking(G_POLLABLE_INPUT_STREAM(s), buf, count, error);
}

static gboolean input_can_poll(GPollableInputStream *s)
{
  return TRUE;
}

static gboolean input_is_readable(GPollableInputStream *s)
{
  return link_readable(CANOPY_BULK_INPUT(s)->link);
}

static GSource *input_create_source(GPollableInputStream *s, GCancellable *c)
{
  return level_source_new(G_OBJECT(s), CANOPY_BULK_INPUT(s)->link, FALSE, c);
}

static void canopy_bulk_input_pollable_init(GPollableInputStreamInterface *iface)
{
  iface->can_poll = input_can_poll;
  iface->is_readable = input_is_readable;
  iface->create_source = input_create_source;
  iface->read_nonblocking = input_read_nonblocking;
}

static void input_finalize(GObject *o)
{
  link_unref(CANOPY_BULK_INPUT(o)->link);
  G_OBJECT_CLASS(canopy_bulk_input_parent_class)->finalize(o);
}

static void canopy_bulk_input_class_init(CanopyBulkInputClass *klass)
{
  G_OBJECT_CLASS(klass)->finalize = input_finalize;
  G_INPUT_STREAM_CLASS(klass)->read_fn = input_read;
}

static void canopy_bulk_input_init(CanopyBulkInput *self) {}

/* ---- output ---- */

#define CANOPY_TYPE_BULK_OUTPUT (canopy_bulk_output_get_type())
G_DECLARE_FINAL_TYPE(CanopyBulkOutput, canopy_bulk_output, CANOPY, BULK_OUTPUT, GOutputStream)

struct _CanopyBulkOutput {
  GOutputStream parent_instance;
  Link *link; /* owned */
};

static void canopy_bulk_output_pollable_init(GPollableOutputStreamInterface *iface);
G_DEFINE_FINAL_TYPE_WITH_CODE(CanopyBulkOutput, canopy_bulk_output, G_TYPE_OUTPUT_STREAM,
                              G_IMPLEMENT_INTERFACE(G_TYPE_POLLABLE_OUTPUT_STREAM,
                                                    canopy_bulk_output_pollable_init))

static gssize output_write_nonblocking(GPollableOutputStream *s, const void *buf, gsize count,
                                       GError **error)
{
  Link *l = CANOPY_BULK_OUTPUT(s)->link;
  if (!l->bulk) {
    g_set_error_literal(error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE, "path closed");
    return -1;
  }
  if (count == 0)
    return 0;
  size_t n = bulk_write(l->bulk, buf, count);
  if (n == 0)
    return would_block(error);
  link_poke(l);
  return (gssize)n;
}

static gssize output_write(GOutputStream *s, const void *buf, gsize count, GCancellable *c,
                           GError **error)
{
  return output_write_nonblocking(G_POLLABLE_OUTPUT_STREAM(s), buf, count, error);
}

static gboolean output_close(GOutputStream *s, GCancellable *c, GError **error)
{
  Link *l = CANOPY_BULK_OUTPUT(s)->link;
  if (l->bulk) {
    bulk_close(l->bulk); /* FIN after what was written */
    link_poke(l);
  }
  return TRUE;
}

static gboolean output_can_poll(GPollableOutputStream *s)
{
  return TRUE;
}

static gboolean output_is_writable(GPollableOutputStream *s)
{
  return link_writable(CANOPY_BULK_OUTPUT(s)->link);
}

static GSource *output_create_source(GPollableOutputStream *s, GCancellable *c)
{
  return level_source_new(G_OBJECT(s), CANOPY_BULK_OUTPUT(s)->link, TRUE, c);
}

static void canopy_bulk_output_pollable_init(GPollableOutputStreamInterface *iface)
{
  iface->can_poll = output_can_poll;
  iface->is_writable = output_is_writable;
  iface->create_source = output_create_source;
  iface->write_nonblocking = output_write_nonblocking;
}

static void output_finalize(GObject *o)
{
  link_unref(CANOPY_BULK_OUTPUT(o)->link);
  G_OBJECT_CLASS(canopy_bulk_output_parent_class)->finalize(o);
}

static void canopy_bulk_output_class_init(CanopyBulkOutputClass *klass)
{
  G_OBJECT_CLASS(klass)->finalize = output_finalize;
  G_OUTPUT_STREAM_CLASS(klass)->write_fn = output_write;
  G_OUTPUT_STREAM_CLASS(klass)->close_fn = output_close;
}

static void canopy_bulk_output_init(CanopyBulkOutput *self) {}

/* ---- the pair ---- */

#define CANOPY_TYPE_BULK_STREAM (canopy_bulk_stream_get_type())
G_DECLARE_FINAL_TYPE(CanopyBulkStream, canopy_bulk_stream, CANOPY, BULK_STREAM, GIOStream)

struct _CanopyBulkStream {
  GIOStream parent_instance;
  Link *link;            /* owned */
  CanopyBulkInput *in;   /* owned */
  CanopyBulkOutput *out; /* owned */
};

G_DEFINE_FINAL_TYPE(CanopyBulkStream, canopy_bulk_stream, G_TYPE_IO_STREAM)

static GInputStream *stream_input(GIOStream *s)
{
  return G_INPUT_STREAM(CANOPY_BULK_STREAM(s)->in);
}

static GOutputStream *stream_output(GIOStream *s)
{
  return G_OUTPUT_STREAM(CANOPY_BULK_STREAM(s)->out);
}

static void stream_dispose(GObject *o)
{
  CanopyBulkStream *self = CANOPY_BULK_STREAM(o);
  G_OBJECT_CLASS(canopy_bulk_stream_parent_class)->dispose(o); /* closes both halves */
  g_clear_object(&self->in);
  g_clear_object(&self->out);
}

static void stream_finalize(GObject *o)
{
  link_unref(CANOPY_BULK_STREAM(o)->link);
  G_OBJECT_CLASS(canopy_bulk_stream_parent_class)->finalize(o);
}

static void canopy_bulk_stream_class_init(CanopyBulkStreamClass *klass)
{
  G_OBJECT_CLASS(klass)->dispose = stream_dispose;
  G_OBJECT_CLASS(klass)->finalize = stream_finalize;
  G_IO_STREAM_CLASS(klass)->get_input_stream = stream_input;
  G_IO_STREAM_CLASS(klass)->get_output_stream = stream_output;
}

static void canopy_bulk_stream_init(CanopyBulkStream *self) {}

GIOStream *bulk_stream_new(GMainContext *ctx, const BulkConfig *cfg, BulkSendFunc send, gpointer ud)
{
  g_return_val_if_fail(ctx != NULL && send != NULL, NULL);
  Bulk *b = bulk_new(cfg, (uint64_t)g_get_monotonic_time());
  if (!b)
    return NULL;
  Link *l = g_rc_box_new0(Link);
  l->ctx = ctx;
  l->bulk = b;
  l->send = send;
  l->ud = ud;
  l->mtu = cfg && cfg->mtu ? cfg->mtu : 1200;
  l->pkt = g_malloc(l->mtu + BULK_STREAM_TAG_BYTES);
  l->armed = -1;
  l->timer = g_source_new(&timer_funcs, sizeof(TimerSource));
  ((TimerSource *)l->timer)->link = l;
  g_source_set_name(l->timer, "CanopyBulkTimer");
  g_source_attach(l->timer, ctx);

  CanopyBulkStream *self = g_object_new(CANOPY_TYPE_BULK_STREAM, NULL);
  self->link = l;
  self->in = g_object_new(CANOPY_TYPE_BULK_INPUT, NULL);
  self->in->link = link_ref(l);
  self->out = g_object_new(CANOPY_TYPE_BULK_OUTPUT, NULL);
  self->out->link = link_ref(l);
  return G_IO_STREAM(self);
}

void bulk_stream_set_max_datagram(GIOStream *s, gsize max)
{
  Link *l = CANOPY_BULK_STREAM(s)->link;
  if (!l->bulk || max <= BULK_STREAM_TAG_BYTES)
    return;
  bulk_set_max_mtu(l->bulk, max - BULK_STREAM_TAG_BYTES, (uint64_t)g_get_monotonic_time());
  if (max - BULK_STREAM_TAG_BYTES > l->mtu) {
    l->mtu = max - BULK_STREAM_TAG_BYTES;
    l->pkt = g_realloc(l->pkt, l->mtu + BULK_STREAM_TAG_BYTES);
  }
  link_poke(l);
}

void bulk_stream_set_keys(GIOStream *s, const guint8 send_key[BULK_STREAM_KEY_BYTES],
                          const guint8 recv_key[BULK_STREAM_KEY_BYTES])
{
  Link *l = CANOPY_BULK_STREAM(s)->link;
  umac64_set_key(&l->tx, send_key);
  umac64_set_key(&l->rx, recv_key);
  l->keyed = TRUE;
}

void bulk_stream_rekey(GIOStream *s, const guint8 send_key[BULK_STREAM_KEY_BYTES],
                       const guint8 recv_key[BULK_STREAM_KEY_BYTES], gboolean send_now)
{
  Link *l = CANOPY_BULK_STREAM(s)->link;
  if (!l->keyed) {
    bulk_stream_set_keys(s, send_key, recv_key);
    return;
  }
  umac64_set_key(&l->next_rx, recv_key);
  umac64_set_key(&l->next_tx, send_key);
  if (send_now)
    memcpy(&l->tx, &l->next_tx, sizeof l->tx);
  l->next_tx_waits = !send_now;
  l->next_pending = TRUE;
}

/* The peer used the new keys: the old ones are refused from now on. */
static void link_switch(Link *l)
{
  memcpy(&l->rx, &l->next_rx, sizeof l->rx);
  if (l->next_tx_waits)
    memcpy(&l->tx, &l->next_tx, sizeof l->tx);
  l->next_pending = l->next_tx_waits = FALSE;
  sodium_memzero(&l->next_rx, sizeof l->next_rx);
  sodium_memzero(&l->next_tx, sizeof l->next_tx);
  l->rekeyed = TRUE;
  g_debug("bulk: datagram tags keyed from the secure channel now; the old keys are refused");
}

void bulk_stream_on_datagram(GIOStream *s, const guint8 *pkt, gsize len)
{
  Link *l = CANOPY_BULK_STREAM(s)->link;
  if (!l->bulk)
    return;
  if (l->keyed) {
    guint8 tag[BULK_STREAM_TAG_BYTES];
    if (len < BULK_HEADER_BYTES + sizeof tag) {
      l->unauthenticated++;
      return;
    }
    len -= sizeof tag;
    gboolean ok = FALSE;
    if (l->next_pending) {
      link_tag(&l->next_rx, pkt, len, tag);
      if (sodium_memcmp(tag, pkt + len, sizeof tag) == 0) {
        link_switch(l);
        ok = TRUE;
      }
    }
    if (!ok) {
      link_tag(&l->rx, pkt, len, tag);
      ok = sodium_memcmp(tag, pkt + len, sizeof tag) == 0;
    }
    if (!ok) {
      l->unauthenticated++;
      return;
    }
  }
  bulk_on_datagram(l->bulk, pkt, len, (uint64_t)g_get_monotonic_time());
  link_poke(l);
}

void bulk_stream_batch_begin(GIOStream *s)
{
  CANOPY_BULK_STREAM(s)->link->batching = TRUE;
}

void bulk_stream_batch_end(GIOStream *s)
{
  Link *l = CANOPY_BULK_STREAM(s)->link;
  l->batching = FALSE;
  if (l->batch_poked) {
    l->batch_poked = FALSE;
    if (l->bulk && l->sendable)
      link_service(l);
  }
}

void bulk_stream_set_flush(GIOStream *s, BulkFlushFunc flush)
{
  CANOPY_BULK_STREAM(s)->link->flush = flush;
}

void bulk_stream_set_sendable(GIOStream *s, gboolean sendable)
{
  Link *l = CANOPY_BULK_STREAM(s)->link;
  l->sendable = sendable;
  if (l->bulk) {
    if (sendable)
      link_poke(l);
    else
      timer_set(l, -1);
  }
}

void bulk_stream_detach(GIOStream *s)
{
  link_detach(CANOPY_BULK_STREAM(s)->link);
}

void bulk_stream_stats(GIOStream *s, BulkStats *out)
{
  Link *l = CANOPY_BULK_STREAM(s)->link;
  if (l->bulk)
    bulk_stats(l->bulk, out);
  else
    memset(out, 0, sizeof *out);
  out->dropped_datagrams += l->unauthenticated;
}

gboolean bulk_stream_rekeyed(GIOStream *s)
{
  return CANOPY_BULK_STREAM(s)->link->rekeyed;
}

guint64 bulk_stream_unauthenticated(GIOStream *s)
{
  return CANOPY_BULK_STREAM(s)->link->unauthenticated;
}
