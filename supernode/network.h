/* network.h - a super node's side of network admission (shared/netcert.h):
 * its certificate file, and the operator's `canopy-supernode network-key`
 * command that creates a network key and certifies super nodes with it.
 */
#ifndef CANOPY_SN_NETWORK_H
#define CANOPY_SN_NETWORK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netcert.h"

/* The certificate file beside the node's key when --network-cert is not
 * given. */
#define NETWORK_CERT_FILE "network.cert"

/* Reads the certificate in path (hex, as network-key certify writes it)
 * and checks that it admits node self_id to network_pk now. False with a
 * one-line reason in err otherwise. */
bool network_load_cert(const char *path, const uint8_t network_pk[IDENTITY_PK_LEN],
                       const uint8_t self_id[IDENTITY_ID_LEN], uint8_t cert[NETCERT_LEN], char *err,
                       size_t errlen);

/* `canopy-supernode network-key new|show|certify ...` (argv[0] is
 * "network-key"): the exit status. */
int network_key_command(int argc, char **argv);

#endif
