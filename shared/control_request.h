/* control_request.h - parsing one control request line (no I/O).
 *
 * Kept apart from the socket code so a fuzzer (tests/fuzz/fuzz_control.c)
 * and unit tests can feed it any bytes.
 */
#ifndef CANOPY_CONTROL_REQUEST_H
#define CANOPY_CONTROL_REQUEST_H

#include <json-glib/json-glib.h>

/* Longest request line, without its newline. */
#define CONTROL_MAX_LINE 65536

/* Parses one request line (without the newline; a trailing '\r' is
 * allowed): at most CONTROL_MAX_LINE bytes of UTF-8 without NUL, holding one
 * JSON object. Returns a new reference the caller unrefs, or NULL with
 * *why (static text a person can read) set. */
JsonObject *control_request_parse(const char *line, size_t len, const char **why);

#endif
