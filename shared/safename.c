/* safename.c - names from the network, made safe (safename.h). */
#include "safename.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool safename_is_unsafe(unsigned cp)
{
  return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x061C || cp == 0x200E || cp == 0x200F ||
         (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 ||
         cp == 0x2029;
}

/* Decodes one UTF-8 sequence at p (n bytes left, n >= 1): its length, and
 * the code point in *cp; 0 if the bytes there are not valid UTF-8
 * (truncated, overlong, a surrogate, past U+10FFFF). */
static size_t utf8_next(const uint8_t *p, size_t n, unsigned *cp)
{
  uint8_t c = p[0];
  size_t len;
  unsigned v, min;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if ((c & 0xE0) == 0xC0) {
    len = 2, v = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, v = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, v = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (len > n)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xC0) != 0x80)
      return 0;
    v = v << 6 | (p[i] & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
    return 0;
  *cp = v;
  return len;
}

char *name_escape_for_terminal(const char *s, size_t len)
{
  /* The longest escape, \u{HHHHHH}, is 10 bytes for at least 1 byte in. */
  if (len > (SIZE_MAX - 1) / 10)
    return NULL;
  char *out = malloc(len * 10 + 1), *o = out;
  if (!out)
    return NULL;
  const uint8_t *p = (const uint8_t *)s;
  size_t i = 0;
  while (i < len) {
    unsigned cp;
    size_t n = utf8_next(p + i, len - i, &cp);
    if (n == 0) {
      o += sprintf(o, "\\x%02X", p[i]);
      i++;
      continue;
    }
    if (cp == '\\') {
      *o++ = '\\';
      *o++ = '\\';
    } else if (safename_is_unsafe(cp)) {
      o += cp < 0x80 ? sprintf(o, "\\x%02X", cp) : sprintf(o, "\\u{%04X}", cp);
    } else {
      memcpy(o, p + i, n);
      o += n;
    }
    i += n;
  }
  *o = '\0';
  return out;
}

char *name_clean_for_disk(const char *s, size_t len)
{
  /* The last component: a name is a path inside the sharer's folder. */
  while (len > 0 && s[len - 1] == '/')
    len--;
  for (size_t i = len; i-- > 0;)
    if (s[i] == '/') {
      s += i + 1;
      len -= i + 1;
      break;
    }
  char *out = malloc(len + 1);
  if (!out)
    return NULL;
  const uint8_t *p = (const uint8_t *)s;
  size_t i = 0, o = 0;
  while (i < len) {
    unsigned cp;
    size_t n = utf8_next(p + i, len - i, &cp);
    size_t take = n ? n : 1;
    bool bad = n == 0 || cp == '\\' || safename_is_unsafe(cp);
    /* Leading dots (hidden files, "..") and dashes (read as options) go;
     * so do leading spaces, which would hide them. */
    if (o == 0 && !bad && (cp == '.' || cp == '-' || cp == ' ')) {
      i += take;
      continue;
    }
    size_t add = bad ? 1 : n;
    if (o + add > SAFENAME_MAX)
      break; /* whole characters only */
    if (bad)
      out[o] = '_';
    else
      memcpy(out + o, p + i, n);
    o += add;
    i += take;
  }
  out[o] = '\0';
  if (o == 0) {
    free(out);
    return NULL;
  }
  return out;
}

size_t safename_utf8_cut(const char *s, size_t len, size_t max)
{
  if (len <= max)
    return len;
  /* Back off over continuation bytes (10xxxxxx) to the start of the
   * character that would be split; at most 3 of them in UTF-8. */
  size_t cut = max;
  for (int i = 0; i < 3 && cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80; i++)
    cut--;
  return cut;
}
