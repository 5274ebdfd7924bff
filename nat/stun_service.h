/* stun_service.h - a UDP socket answering STUN binding requests.
 *
 * The thin glib shell around stun_server_answer (stun_server.h): one
 * non-blocking UDP socket, one GSource on the caller's GMainContext. Answers
 * are budgeted per source address, per source prefix and in total
 * (stun_limit.h), so a flood of requests with forged sources cannot turn a
 * super node into a full-speed reflector, nor one flooding source starve
 * everyone else.
 */
#ifndef CANOPY_STUN_SERVICE_H
#define CANOPY_STUN_SERVICE_H

#include <glib.h>
#include <stdint.h>

typedef struct StunService StunService;

/* Binds UDP host_port ("IP:PORT" or "[IPv6]:PORT", numeric; port 0 picks a
 * free one, see stun_service_port) and starts answering on ctx (borrowed; it
 * must outlive the service). Returns NULL and sets *error on failure. */
StunService *stun_service_new(const char *host_port, GMainContext *ctx, GError **error);

/* Stops answering and closes the socket. NULL is a no-op. */
void stun_service_free(StunService *s);

/* The bound UDP port. */
uint16_t stun_service_port(const StunService *s);

/* Requests answered (a response was sent). */
uint64_t stun_service_requests(const StunService *s);

/* Datagrams received and not answered: not a binding request, malformed,
 * over a budget, or the send failed. */
uint64_t stun_service_dropped(const StunService *s);

#endif
