/* udp_batch.c - UDP GSO batches with a per-datagram fallback. */
#include "udp_batch.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>

/* The kernel's limits on one GSO send: segments (UDP_MAX_SEGMENTS) and
 * bytes (the whole buffer is one UDP datagram to the socket layer: 64 KiB
 * with the headers). */
#define MAX_SEGMENTS 64
#define MAX_BYTES 65000

struct UdpBatch {
  int fd;
  struct sockaddr_storage dest;
  socklen_t dest_len;
  gsize max_len;
  guint8 *buf; /* MAX_SEGMENTS * max_len */
  gsize used;
  gsize seg;       /* size of every queued datagram but possibly the last */
  unsigned n;      /* datagrams queued */
  gboolean closed; /* the last one is shorter: nothing more may join */
  gboolean no_gso; /* the kernel refused UDP_SEGMENT once */
  guint64 calls, datagrams;
};

UdpBatch *udp_batch_new(GSocket *sock, GSocketAddress *dest, gsize max_len)
{
  if (g_socket_get_family(sock) != g_socket_address_get_family(dest))
    return NULL;
  UdpBatch *b = g_new0(UdpBatch, 1);
  b->fd = g_socket_get_fd(sock);
  b->dest_len = (socklen_t)g_socket_address_get_native_size(dest);
  if (!g_socket_address_to_native(dest, &b->dest, sizeof b->dest, NULL)) {
    g_free(b);
    return NULL;
  }
  b->max_len = max_len;
  b->buf = g_malloc(MAX_SEGMENTS * max_len);
  return b;
}

void udp_batch_free(UdpBatch *b)
{
  if (!b)
    return;
  g_free(b->buf);
  g_free(b);
}

static void send_one(UdpBatch *b, const guint8 *p, gsize len)
{
  b->calls++;
  if (sendto(b->fd, p, len, MSG_DONTWAIT, (struct sockaddr *)&b->dest, b->dest_len) >= 0)
    b->datagrams++;
}

void udp_batch_flush(UdpBatch *b)
{
  if (b->n == 0)
    return;
  if (b->n > 1 && !b->no_gso) {
    struct iovec iov = {b->buf, b->used};
    union {
      char buf[CMSG_SPACE(sizeof(uint16_t))];
      struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr msg = {.msg_name = &b->dest,
                         .msg_namelen = b->dest_len,
                         .msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.buf,
                         .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_UDP;
    cm->cmsg_type = UDP_SEGMENT;
    cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t seg = (uint16_t)b->seg;
    memcpy(CMSG_DATA(cm), &seg, sizeof seg);
    b->calls++;
    if (sendmsg(b->fd, &msg, MSG_DONTWAIT) >= 0) {
      b->datagrams += b->n;
      goto done;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
      goto done; /* a full buffer: lost, like any UDP */
    if (errno == EMSGSIZE)
      goto done; /* larger than the route takes unfragmented: a failed probe */
    if (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH)
      goto done; /* an earlier ICMP error reported on a connected socket */
    /* EINVAL, EIO, ENOPROTOOPT...: no GSO here. */
    g_debug("UDP GSO refused (%s): one datagram per call from now on", g_strerror(errno));
    b->no_gso = TRUE;
  }
  for (gsize off = 0; off < b->used; off += b->seg)
    send_one(b, b->buf + off, MIN(b->seg, b->used - off));
done:
  b->used = 0;
  b->n = 0;
  b->closed = FALSE;
}

void udp_batch_add(UdpBatch *b, const guint8 *pkt, gsize len)
{
  if (len == 0 || len > b->max_len)
    return;
  if (b->n > 0 && (b->closed || len > b->seg || b->n == MAX_SEGMENTS || b->used + len > MAX_BYTES))
    udp_batch_flush(b);
  if (b->n == 0)
    b->seg = len;
  memcpy(b->buf + b->used, pkt, len);
  b->used += len;
  b->n++;
  if (len < b->seg)
    b->closed = TRUE; /* GSO: only the last segment may be shorter */
}

void udp_batch_counts(const UdpBatch *b, guint64 *calls, guint64 *datagrams)
{
  *calls = b->calls;
  *datagrams = b->datagrams;
}
