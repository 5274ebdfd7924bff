/* stun_server.h - the STUN binding responder of a super node, sans I/O.
 *
 * One function turns one received datagram into the datagram to send back
 * (or nothing). It reads no clock, owns no socket and keeps no state, so any
 * number of threads or tests may call it. The glib shell that feeds it is
 * stun_service.h.
 */
#ifndef CANOPY_STUN_SERVER_H
#define CANOPY_STUN_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Largest request answered: 576 (the IPv4 minimum reassembly size) minus the
 * IP and UDP headers, as RFC 5389 section 7.1 advises. Bigger datagrams are
 * dropped unread. */
#define STUN_SERVER_MAX_REQUEST 548

/* An out buffer this large holds every response stun_server_answer builds.
 * A success response is at most 52 bytes (IPv6 XOR-MAPPED-ADDRESS and a
 * FINGERPRINT); a 420 is never larger than the request that asked for it.
 *
 * Amplification: a success answer can exceed its request, because real
 * clients send bare ones: libnice's classic RFC 3489 request is a 20-byte
 * header, answered with 32 bytes (MAPPED-ADDRESS, IPv4); a bare RFC 5389
 * request gets 32 (IPv4) or 44 (IPv6). Refusing those would leave libnice
 * without a server-reflexive candidate, so the worst case is 44 bytes for
 * 20 (2.2x) and at most 32 bytes more than any request; a request carrying
 * a FINGERPRINT (28 bytes or more) gets at most 24 bytes more. Volume is
 * bounded per source by stun_limit.h. */
#define STUN_SERVER_MAX_RESPONSE 600

/* Answers one datagram `req` (len bytes) received from `from` (fromlen
 * bytes, AF_INET or AF_INET6; an IPv4-mapped IPv6 source is answered as
 * IPv4). Writes the response into out (outcap bytes) and returns its length,
 * or returns 0 when nothing must be sent.
 *
 * Answered: a binding request (class request, method Binding) that parses
 * completely, with no trailing bytes:
 *   - with the RFC 5389 magic cookie: a success response with
 *     XOR-MAPPED-ADDRESS, plus FINGERPRINT if the request carried a valid
 *     one (as libnice's RFC 5389 agents require);
 *   - without it (classic RFC 3489, as libnice 0.1.21 sends for
 *     server-reflexive discovery): a success response with MAPPED-ADDRESS;
 *   - with an unknown comprehension-required attribute: 420 Unknown Attribute
 *     listing it (RFC 5389 section 7.3.1, RFC 3489 section 8.2.2), if it is
 *     not larger than the request (otherwise nothing); an RFC
 *     5389 request whose CHANGE-REQUEST asks for another address or port
 *     gets the same 420, as RFC 5780 section 7.2 asks of a server with no
 *     alternate address. The RFC 3489 one is dropped: a classic client reads
 *     any reply as coming from the address it asked for.
 * Dropped (0): anything else - not STUN, truncated, over
 * STUN_SERVER_MAX_REQUEST bytes, indications, responses, other methods, a bad
 * FINGERPRINT, a source of another family or with port 0, or out too small.
 * Credentials (USERNAME, MESSAGE-INTEGRITY) are accepted and not checked:
 * the answer only tells the sender its own address.
 *
 * Borrows every argument for the duration of the call; never reads past
 * req + len or writes past out + outcap. */
size_t stun_server_answer(const uint8_t *req, size_t len, const struct sockaddr *from,
                          socklen_t fromlen, uint8_t *out, size_t outcap);

#endif
