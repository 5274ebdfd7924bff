/* tokenize.c - split names and queries into search keywords.
 *
 * Publishers and searchers must agree byte for byte on what a keyword is, so
 * this is the only place that decides. Bytes >= 0x80 count as word bytes
 * without decoding: every byte of a UTF-8 multi-byte sequence is >= 0x80, so
 * a non-ASCII word is never split, and no locale is involved.
 */
#include "tokenize.h"

#include <stdbool.h>
#include <string.h>

static bool is_word_byte(unsigned char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c >= 0x80;
}

static char fold(unsigned char c)
{
  return (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
}

/* At most TOKENIZE_MAX_TOKENS whatever max_tokens says: that bound is what
 * makes outcap >= len + TOKENIZE_MAX_TOKENS enough (each keyword's bytes come
 * from the input, plus one NUL per keyword). A keyword that does not fit in
 * out ends the scan, so what is returned is always a prefix of the keywords. */
size_t tokenize(const char *s, size_t len, char *out, size_t outcap, const char **tokens,
                size_t max_tokens)
{
  const unsigned char *p = (const unsigned char *)s;
  size_t used = 0, n = 0, i = 0;
  if (max_tokens > TOKENIZE_MAX_TOKENS)
    max_tokens = TOKENIZE_MAX_TOKENS;
  while (n < max_tokens) {
    while (i < len && !is_word_byte(p[i]))
      i++;
    if (i == len)
      break;
    size_t start = i;
    while (i < len && is_word_byte(p[i]))
      i++;
    size_t wlen = i - start;
    if (outcap - used < wlen + 1)
      break;
    char *w = out + used;
    for (size_t k = 0; k < wlen; k++)
      w[k] = fold(p[start + k]);
    w[wlen] = '\0';
    bool dup = false;
    for (size_t k = 0; k < n && !dup; k++)
      dup = strcmp(tokens[k], w) == 0;
    if (dup)
      continue; /* its bytes in out are overwritten by the next keyword */
    tokens[n++] = w;
    used += wlen + 1;
  }
  return n;
}
