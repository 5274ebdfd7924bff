/* safename.h - names from the network, made safe for a terminal or a disk.
 *
 * A name a peer publishes may hold any UTF-8 but NUL (wire.c): escape
 * sequences that drive a terminal, carriage returns that overwrite a line,
 * bidi controls that show "exe.txt" for "txt.exe", path separators and dots
 * that lead out of a folder. These two functions are the only way such a
 * name reaches a person's screen or a file system. Plain C, no allocation
 * beyond the result.
 */
#ifndef CANOPY_SAFENAME_H
#define CANOPY_SAFENAME_H

#include <stdbool.h>
#include <stddef.h>

/* Longest file name written to disk, in bytes (NAME_MAX on Linux). */
#define SAFENAME_MAX 255

/* True for the code points that never reach a terminal or a file name raw:
 * C0 controls, DEL, C1 controls, the bidi controls (U+061C, U+200E, U+200F,
 * U+202A..U+202E, U+2066..U+2069) and the line and paragraph separators
 * (U+2028, U+2029). */
bool safename_is_unsafe(unsigned cp);

/* s (len bytes, any bytes) for a terminal: every unsafe code point becomes
 * \xHH (below 0x80) or \u{HHHH}, a byte that is not valid UTF-8 becomes \xHH,
 * a backslash becomes \\ (so an escape cannot be faked); the rest is kept.
 * Returns a new NUL-terminated string (free()), or NULL out of memory. */
char *name_escape_for_terminal(const char *s, size_t len);

/* A file name to save s (len bytes, a peer's relative path) under: its last
 * component only, unsafe code points, backslashes and invalid bytes each
 * replaced by '_', leading dots, dashes and spaces removed, cut to at most
 * SAFENAME_MAX bytes on a character boundary. Returns a new string (free()),
 * or NULL if nothing usable is left (the caller picks another name) or out
 * of memory. */
char *name_clean_for_disk(const char *s, size_t len);

/* The length of s (len bytes, UTF-8) cut to at most max bytes without
 * splitting a character: a peer's text shortened this way stays valid
 * UTF-8 if it was (and may then go into JSON). */
size_t safename_utf8_cut(const char *s, size_t len, size_t max);

#endif
