/* session.h - a secure session: the Channel (channel.h) driven over a socket.
 *
 * The thin glib shell around the sans-I/O channel, shared by both daemons: it
 * reads whatever the socket has, feeds the channel, hands each decrypted
 * message up, and writes the channel's output without blocking. Bounds: the
 * handshake must finish within SESSION_HANDSHAKE_MS, and a peer that stops
 * reading while we have more than SESSION_MAX_OUTPUT bytes queued is cut off.
 *
 * Callbacks run from the main context, never while the session iterates
 * something of its own, and never from inside session_new(); a callback may
 * call session_close(). After `closed` the owner drops its reference with
 * session_unref().
 */
#ifndef CANOPY_SESSION_H
#define CANOPY_SESSION_H

#include <gio/gio.h>
#include <stdbool.h>
#include <stdint.h>

#include "channel.h"
#include "identity.h"

#define SESSION_HANDSHAKE_MS 10000
#define SESSION_MAX_OUTPUT (8u * 1024 * 1024)

typedef struct Session Session;

typedef struct {
  void (*opened)(Session *s, void *ud);
  void (*message)(Session *s, const uint8_t *msg, size_t len, void *ud);
  /* Once per session; reason is a static or session-owned string. */
  void (*closed)(Session *s, const char *reason, void *ud);
} SessionCallbacks;

/* Takes a reference on conn, whose streams must be pollable (a TCP
 * GSocketConnection, or the reliable stream of an ICE path). id is the
 * owner's handle for logs and lookups. */
Session *session_new(GIOStream *conn, uint64_t id, const Identity *self, ChannelRole role,
                     GMainContext *ctx, const SessionCallbacks *cb, void *ud);
/* Every TCP responder session created after this call lets jar (borrowed;
 * it must outlive them, NULL: none) decide whether its handshake starts with
 * a cookie (cookie.h), bound to the peer's IP address. */
void session_set_cookie_jar(CookieJar *jar);
Session *session_ref(Session *s);
void session_unref(Session *s);

uint64_t session_id(const Session *s);
/* Peer's node id once opened (borrowed). */
const uint8_t *session_peer_id(const Session *s);
/* "host:port" of the remote socket address (borrowed). */
const char *session_remote(const Session *s);
bool session_is_open(const Session *s);
/* channel_export on the session's channel (false unless open). */
bool session_export(const Session *s, const char *label, uint8_t *out, size_t len);

/* Encrypts and queues one message. False if the session is not open. */
bool session_send(Session *s, const uint8_t *msg, size_t len);
/* Ends the session now; `closed` fires (once) with reason. */
void session_close(Session *s, const char *reason);

/* Bytes read from and written to the socket so far (ciphertext and
 * framing): the metrics' traffic per direction. */
uint64_t session_bytes_in(const Session *s);
uint64_t session_bytes_out(const Session *s);

#endif
