/* pair_socket.c - recvmmsg + UDP GRO on a socket connected to the remote candidate. */
#define _GNU_SOURCE /* recvmmsg */
#include "pair_socket.h"

#include <errno.h>
#include <glib-unix.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef UDP_GRO
#define UDP_GRO 104 /* Linux >= 5.0; older kernels refuse it and we read singly */
#endif

/* Messages per recvmmsg. Without GRO (the NAT lab) each is one datagram
 * and 8 a call was a third of the receiver's system calls; with GRO one
 * message holds up to 64 KiB of coalesced datagrams. So 4 MiB of buffers
 * per PairSocket (one per connection's direct pair), allocated once: the
 * kernel backs only the pages a read touches, a few hundred KiB unless
 * GRO fills whole slots. */
#define N_MSGS 64
#define MSG_BYTES 65536
/* Datagrams per dispatch, so that one busy pair cannot starve the main
 * loop (timers, the other connections). */
#define DISPATCH_BUDGET 1024
#define SOCKET_BUFFER (4 << 20)

struct PairSocket {
  int fd;
  GSocket *sock; /* wraps fd, for udp_batch */
  GSource *src;
  PairSocketFunc fn;
  PairSocketDoneFunc done;
  gpointer data;
  guint8 *bufs; /* N_MSGS * MSG_BYTES */
  guint64 calls, datagrams;
};

static void deliver(PairSocket *ps, const guint8 *buf, gsize len, gsize seg)
{
  /* A GRO run: every segment seg bytes but the last, which may be shorter. */
  if (seg == 0 || seg > len)
    seg = len;
  for (gsize off = 0; off < len; off += seg) {
    ps->datagrams++;
    ps->fn(buf + off, MIN(seg, len - off), ps->data);
  }
}

static gboolean on_readable(gint fd, GIOCondition cond, gpointer data)
{
  PairSocket *ps = data;
  struct mmsghdr msgs[N_MSGS];
  struct iovec iov[N_MSGS];
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } ctl[N_MSGS];
  guint64 start = ps->datagrams;
  while (ps->datagrams - start < DISPATCH_BUDGET) {
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < N_MSGS; i++) {
      iov[i] = (struct iovec){ps->bufs + (gsize)i * MSG_BYTES, MSG_BYTES};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_hdr.msg_control = ctl[i].buf;
      msgs[i].msg_hdr.msg_controllen = sizeof ctl[i].buf;
    }
    ps->calls++;
    int n = recvmmsg(fd, msgs, N_MSGS, MSG_DONTWAIT, NULL);
    if (n <= 0) {
      /* EAGAIN: drained. ECONNREFUSED and friends: an ICMP error for this
       * connected socket, reported once; the path's fate is ICE's and
       * Bulk's business, not the reader's. */
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        g_debug("pair socket: %s", g_strerror(errno));
      break;
    }
    for (int i = 0; i < n; i++) {
      struct msghdr *h = &msgs[i].msg_hdr;
      if (h->msg_flags & MSG_TRUNC)
        continue; /* larger than any Bulk datagram or GRO run: not ours */
      gsize seg = 0;
      for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm; cm = CMSG_NXTHDR(h, cm))
        if (cm->cmsg_level == SOL_UDP && cm->cmsg_type == UDP_GRO) {
          int v;
          memcpy(&v, CMSG_DATA(cm), sizeof v);
          seg = v > 0 ? (gsize)v : 0;
        }
      deliver(ps, iov[i].iov_base, msgs[i].msg_len, seg);
    }
    if (n < N_MSGS)
      break; /* the queue is empty: save the call that would say EAGAIN */
  }
  if (ps->datagrams != start && ps->done)
    ps->done(ps->data);
  return G_SOURCE_CONTINUE;
}

PairSocket *pair_socket_new(GSocket *base, GSocketAddress *remote, GMainContext *ctx,
                            PairSocketFunc fn, PairSocketDoneFunc done, gpointer data, GError **err)
{
  struct sockaddr_storage local_ss, remote_ss;
  GSocketAddress *local = g_socket_get_local_address(base, err);
  if (!local)
    return NULL;
  gboolean ok = g_socket_address_to_native(local, &local_ss, sizeof local_ss, err) &&
                g_socket_address_to_native(remote, &remote_ss, sizeof remote_ss, err);
  socklen_t local_len = (socklen_t)g_socket_address_get_native_size(local);
  socklen_t remote_len = (socklen_t)g_socket_address_get_native_size(remote);
  g_object_unref(local);
  if (!ok)
    return NULL;
  if (local_ss.ss_family != remote_ss.ss_family) {
    g_set_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "address families differ");
    return NULL;
  }

  int one = 1, zero = 0, buf = SOCKET_BUFFER;
  /* SO_REUSEADDR is checked when the second socket binds, on both: set it
   * on libnice's socket for the moment of our bind, then clear it, so that
   * no third socket (another local process) can bind the port after us. */
  int fd = -1, base_fd = g_socket_get_fd(base);
  if (setsockopt(base_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
    goto fail;
  fd = socket(local_ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
    goto fail;
  /* Best effort: the kernel caps the buffer at rmem_max without privileges,
   * and a kernel without UDP GRO hands datagrams over one by one. */
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
  (void)setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one);
  /* Datagrams sent here are never fragmented, not even after an ICMP
   * "fragmentation needed": a size the path cannot carry must get lost,
   * so that Bulk's probes find out (RFC 8899 section 3). */
  int probe = local_ss.ss_family == AF_INET6 ? IPV6_PMTUDISC_PROBE : IP_PMTUDISC_PROBE;
  if (local_ss.ss_family == AF_INET6)
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &probe, sizeof probe);
  else
    (void)setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &probe, sizeof probe);
  int bound = bind(fd, (struct sockaddr *)&local_ss, local_len);
  int e = errno;
  (void)setsockopt(base_fd, SOL_SOCKET, SO_REUSEADDR, &zero, sizeof zero);
  errno = e;
  if (bound < 0 || connect(fd, (struct sockaddr *)&remote_ss, remote_len) < 0)
    goto fail;

  GSocket *sock = g_socket_new_from_fd(fd, err);
  if (!sock)
    return NULL; /* the failed GSocket closed fd on its way out */
  PairSocket *ps = g_new0(PairSocket, 1);
  ps->fd = fd;
  ps->sock = sock;
  ps->fn = fn;
  ps->done = done;
  ps->data = data;
  ps->bufs = g_malloc((gsize)N_MSGS * MSG_BYTES);
  ps->src = g_unix_fd_source_new(fd, G_IO_IN);
  g_source_set_callback(ps->src, G_SOURCE_FUNC(on_readable), ps, NULL);
  g_source_attach(ps->src, ctx);
  return ps;

fail:;
  int why = errno;
  if (fd >= 0)
    close(fd);
  g_set_error(err, G_IO_ERROR, g_io_error_from_errno(why), "pair socket: %s", g_strerror(why));
  return NULL;
}

void pair_socket_free(PairSocket *ps)
{
  if (!ps)
    return;
  g_source_destroy(ps->src);
  g_source_unref(ps->src);
  g_object_unref(ps->sock); /* closes fd */
  g_free(ps->bufs);
  g_free(ps);
}

GSocket *pair_socket_get_socket(PairSocket *ps)
{
  return ps->sock;
}

gsize pair_socket_path_mtu(PairSocket *ps)
{
  int mtu = 0;
  socklen_t len = sizeof mtu;
  gboolean v6 = g_socket_get_family(ps->sock) == G_SOCKET_FAMILY_IPV6;
  if (getsockopt(ps->fd, v6 ? IPPROTO_IPV6 : IPPROTO_IP, v6 ? IPV6_MTU : IP_MTU, &mtu, &len) < 0 ||
      mtu <= 0)
    return 0;
  return (gsize)mtu - (v6 ? 48 : 28);
}

void pair_socket_counts(const PairSocket *ps, guint64 *calls, guint64 *datagrams)
{
  *calls = ps->calls;
  *datagrams = ps->datagrams;
}
