/* buf.c - bounded reader and growable writer; big-endian on the wire. */
#include "buf.h"

#include <stdlib.h>
#include <string.h>

void rd_init(Reader *r, const uint8_t *p, size_t len)
{
  r->p = p;
  r->len = len;
  r->off = 0;
  r->failed = false;
}

void rd_fail(Reader *r)
{
  r->failed = true;
}

const uint8_t *rd_bytes(Reader *r, size_t n)
{
  if (r->failed || n > r->len - r->off) {
    r->failed = true;
    return NULL;
  }
  const uint8_t *p = r->p + r->off;
  r->off += n;
  return p;
}

void rd_copy(Reader *r, void *dst, size_t n)
{
  const uint8_t *p = rd_bytes(r, n);
  if (p)
    memcpy(dst, p, n);
  else
    memset(dst, 0, n);
}

uint8_t rd_u8(Reader *r)
{
  const uint8_t *p = rd_bytes(r, 1);
  return p ? p[0] : 0;
}

uint16_t rd_u16(Reader *r)
{
  const uint8_t *p = rd_bytes(r, 2);
  return p ? (uint16_t)(p[0] << 8 | p[1]) : 0;
}

uint32_t rd_u32(Reader *r)
{
  const uint8_t *p = rd_bytes(r, 4);
  return p ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3] : 0;
}

uint64_t rd_u64(Reader *r)
{
  uint64_t hi = rd_u32(r);
  return hi << 32 | rd_u32(r);
}

size_t rd_left(const Reader *r)
{
  return r->failed ? 0 : r->len - r->off;
}
bool rd_ok(const Reader *r)
{
  return !r->failed;
}
bool rd_done(const Reader *r)
{
  return !r->failed && r->off == r->len;
}

void buf_init(Buf *b)
{
  memset(b, 0, sizeof *b);
}

void buf_free(Buf *b)
{
  free(b->data);
  buf_init(b);
}

void buf_reset(Buf *b)
{
  b->len = 0;
  b->failed = false;
}

bool buf_reserve(Buf *b, size_t extra)
{
  if (b->failed)
    return false;
  if (extra <= b->cap - b->len)
    return true;
  size_t cap = b->cap ? b->cap : 256;
  while (cap - b->len < extra) {
    if (cap > SIZE_MAX / 2) {
      b->failed = true;
      return false;
    }
    cap *= 2;
  }
  uint8_t *d = realloc(b->data, cap);
  if (!d) {
    b->failed = true;
    return false;
  }
  b->data = d;
  b->cap = cap;
  return true;
}

void wr_bytes(Buf *b, const void *p, size_t n)
{
  if (n == 0 || !buf_reserve(b, n))
    return;
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

void wr_u8(Buf *b, uint8_t v)
{
  wr_bytes(b, &v, 1);
}

void wr_u16(Buf *b, uint16_t v)
{
  uint8_t t[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  wr_bytes(b, t, 2);
}

void wr_u32(Buf *b, uint32_t v)
{
  uint8_t t[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  wr_bytes(b, t, 4);
}

void wr_u64(Buf *b, uint64_t v)
{
  wr_u32(b, (uint32_t)(v >> 32));
  wr_u32(b, (uint32_t)v);
}

void buf_consume(Buf *b, size_t n)
{
  if (n >= b->len) {
    b->len = 0;
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

void buf_trim(Buf *b, size_t keep)
{
  if (b->cap <= keep || b->failed)
    return;
  if (b->len == 0) {
    buf_free(b);
    return;
  }
  size_t cap = b->cap;
  while (cap / 2 >= keep && cap / 2 >= b->len)
    cap /= 2;
  if (cap == b->cap)
    return;
  uint8_t *d = realloc(b->data, cap);
  if (!d)
    return; /* the bigger block is still ours */
  b->data = d;
  b->cap = cap;
}

uint8_t *buf_steal(Buf *b, size_t *len)
{
  uint8_t *d = b->data;
  *len = b->len;
  buf_init(b);
  return d;
}
