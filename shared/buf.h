/* buf.h - bounded reader and growable writer for the wire codec.
 *
 * The reader never reads past its end; the first failure sticks, so a decoder
 * reads every field and checks rd_ok() once at the end (bgpd's ibuf style).
 * No glib here: the codec is shared with the fuzzer and must stay small.
 */
#ifndef CANOPY_BUF_H
#define CANOPY_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
  const uint8_t *p; /* borrowed; the caller keeps it alive while reading */
  size_t len;
  size_t off;
  bool failed;
} Reader;

void rd_init(Reader *r, const uint8_t *p, size_t len);
uint8_t rd_u8(Reader *r);
uint16_t rd_u16(Reader *r);
uint32_t rd_u32(Reader *r);
uint64_t rd_u64(Reader *r);
/* Returns a pointer to the next n bytes inside the buffer (borrowed), or
 * NULL and marks the reader failed if fewer remain. */
const uint8_t *rd_bytes(Reader *r, size_t n);
void rd_copy(Reader *r, void *dst, size_t n);
size_t rd_left(const Reader *r);
/* True when nothing failed. */
bool rd_ok(const Reader *r);
/* True when nothing failed and every byte was consumed (no trailing bytes). */
bool rd_done(const Reader *r);
void rd_fail(Reader *r);

typedef struct {
  uint8_t *data; /* owned; free with buf_free() */
  size_t len;
  size_t cap;
  bool failed; /* allocation failure sticks, like the reader's */
} Buf;

void buf_init(Buf *b);
void buf_free(Buf *b);
void buf_reset(Buf *b);
bool buf_reserve(Buf *b, size_t extra);
void wr_u8(Buf *b, uint8_t v);
void wr_u16(Buf *b, uint16_t v);
void wr_u32(Buf *b, uint32_t v);
void wr_u64(Buf *b, uint64_t v);
void wr_bytes(Buf *b, const void *p, size_t n);
/* Drops the first n bytes (consumed output). */
void buf_consume(Buf *b, size_t n);
/* Gives memory back after a peak: with nothing left, a buffer over keep
 * bytes is freed; otherwise its capacity halves while it stays at least
 * keep and at least twice the bytes held, so capacity stays under
 * max(keep, 4 x len) instead of the peak for the buffer's life. */
void buf_trim(Buf *b, size_t keep);
/* Hands the bytes to the caller (free() them) and leaves b empty. */
uint8_t *buf_steal(Buf *b, size_t *len);

#endif
