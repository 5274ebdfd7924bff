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

#include "budget.h"
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

/* Bounds on what this session may keep queued for a peer that does not
 * read (the default is SESSION_MAX_OUTPUT, no stall limit, no budget):
 * - max_queue: queued bytes above which the session is cut off;
 * - stall_ms: output queued with not one byte written for this long cuts
 *   it off too (0: no limit);
 * - budget (borrowed, may be NULL): a Budget shared by sessions, charged
 *   under the key `source` (copied: the peer's address) with the memory
 *   its output queue holds (the buffer's capacity while anything is
 *   queued: at most max(CHANNEL_OUTPUT_KEEP, twice the queue); nothing
 *   once drained, when the buffer is freed), so that many slow readers
 *   together stay under its total and one address under its share; a
 *   refused charge cuts the session off;
 * - input_budget (borrowed, may be NULL): the same for what the session
 *   holds of its peer's input between reads (a partial frame, the last
 *   plaintext; nothing when idle), charged after each read, so that peers
 *   sending frames piece by piece cannot hold more than its total
 *   together, or one address more than its share; a refused charge ends
 *   the session ("input budget exhausted").
 * Applies from the next send (input: the next read) on. */
typedef struct {
  size_t max_queue;
  uint64_t stall_ms;
  Budget *budget;
  const char *source;
  Budget *input_budget;
} SessionOutputLimits;
void session_set_output_limits(Session *s, const SessionOutputLimits *l);
/* Bytes of output queued in user space (not yet taken by the socket). */
size_t session_queued(const Session *s);
/* Bytes allocated for that queue: at most max(CHANNEL_OUTPUT_KEEP, twice
 * the queue), so a drained peak does not stay allocated. */
size_t session_output_capacity(const Session *s);
/* Whether the session was cut off for not reading its output (cap, stall
 * or budget) or by its input budget: the owner counts those. */
/* Whether the far end ended the session (end of stream, a reset, its BYE)
 * rather than we (a stall, an overrun, a protocol error, a timeout, our own
 * close): a group's closed-link evidence is only the former. */
bool session_closed_by_peer(const Session *s);
bool session_output_overrun(const Session *s);

/* Gives s's socket priority in the event loop (evwatch_set_priority): its
 * input runs before ordinary sessions' in the same pass. For the few links
 * that decide a group's fate (super-node links), never for leaves. A no-op
 * for a session without a socket watch (ICE). With priority the socket also
 * gets a second descriptor near the top of the fd limit (closed with the
 * session), so if this process is killed the kernel resets it before the
 * leaves' sockets, not after them (session.c, late_fd_take). */
void session_set_priority(Session *s, bool prio);

/* Bytes read from and written to the socket so far (ciphertext and
 * framing): the metrics' traffic per direction. */
uint64_t session_bytes_in(const Session *s);
uint64_t session_bytes_out(const Session *s);

#endif
