/* netcert.h - admission of super nodes to a network by its operator's key.
 *
 * A network is an Ed25519 key pair its operator keeps offline. Each super
 * node the operator admits gets a certificate: the network key's signature
 * over the node's public key and an expiry. A super node or leaf configured
 * with the network's public key links only to super nodes whose HELLO
 * carries a valid certificate for the key they proved in the handshake, so
 * a stranger can neither join the mesh nor pose as a leaf's super node.
 * Leaves need no certificate.
 *
 *   cert = u8 version (1) | network_pk[32] | node_pk[32] | u64 not_after |
 *          sig[64]                                              (137 bytes)
 *   sig  = Ed25519 by the network key over NETCERT_CONTEXT followed by the
 *          73 bytes before it
 * not_after is unix seconds, big-endian: wall-clock time, the one place the
 * protocol needs it, so callers pass it in (cores never read a clock).
 */
#ifndef CANOPY_NETCERT_H
#define CANOPY_NETCERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"

#define NETCERT_LEN 137
#define NETCERT_CONTEXT "canopy network cert v1"

typedef enum {
  NETCERT_OK = 0,
  NETCERT_MISSING,       /* no certificate at all */
  NETCERT_MALFORMED,     /* wrong length or version */
  NETCERT_WRONG_NETWORK, /* issued by another network key */
  NETCERT_WRONG_NODE,    /* for another node's key */
  NETCERT_BAD_SIGNATURE,
  NETCERT_EXPIRED,
} NetcertResult;

/* Signs a certificate for node_pk, valid until not_after (unix s). */
void netcert_sign(const Identity *network, const uint8_t node_pk[IDENTITY_PK_LEN],
                  uint64_t not_after, uint8_t out[NETCERT_LEN]);

/* Checks len bytes of cert: issued by network_pk, for the node whose id is
 * node_id, not expired at now_unix. */
NetcertResult netcert_check(const uint8_t *cert, size_t len,
                            const uint8_t network_pk[IDENTITY_PK_LEN],
                            const uint8_t node_id[IDENTITY_ID_LEN], uint64_t now_unix);

/* The expiry written in a certificate of the right length (0 otherwise). */
uint64_t netcert_not_after(const uint8_t *cert, size_t len);

/* A static phrase for r, fit for a log line or a close reason ("not
 * admitted to the network (certificate expired)", ...). */
const char *netcert_result_str(NetcertResult r);

#endif
