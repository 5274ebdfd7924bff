/* tokenize.h - split names and queries into search keywords.
 *
 * A keyword is a maximal run of ASCII letters and digits, or of bytes >= 0x80
 * (so UTF-8 words stay whole); ASCII is lower-cased, everything else is a
 * separator. Search matches whole keywords.
 */
#ifndef CANOPY_TOKENIZE_H
#define CANOPY_TOKENIZE_H

#include <stddef.h>

#define TOKENIZE_MAX_TOKENS 32

/* Writes the lower-cased keywords of s[0..len) into out (NUL-terminated, one
 * after another; outcap >= len + TOKENIZE_MAX_TOKENS suffices) and pointers to
 * them into tokens. Returns how many (at most max_tokens; duplicates kept
 * once). */
size_t tokenize(const char *s, size_t len, char *out, size_t outcap, const char **tokens,
                size_t max_tokens);

#endif
