/* netcert.c - network certificates for super nodes (netcert.h). */
#include "netcert.h"

#include <sodium.h>
#include <string.h>

#define NETCERT_VERSION 1
#define BODY_LEN (1 + IDENTITY_PK_LEN + IDENTITY_PK_LEN + 8) /* what is signed */

_Static_assert(BODY_LEN + IDENTITY_SIG_LEN == NETCERT_LEN, "cert layout");

/* The signed message: the context, then the certificate's body, so a
 * signature made by the network key for anything else never passes. */
static void signed_message(const uint8_t body[BODY_LEN],
                           uint8_t out[sizeof NETCERT_CONTEXT - 1 + BODY_LEN])
{
  memcpy(out, NETCERT_CONTEXT, sizeof NETCERT_CONTEXT - 1);
  memcpy(out + sizeof NETCERT_CONTEXT - 1, body, BODY_LEN);
}

void netcert_sign(const Identity *network, const uint8_t node_pk[IDENTITY_PK_LEN],
                  uint64_t not_after, uint8_t out[NETCERT_LEN])
{
  out[0] = NETCERT_VERSION;
  memcpy(out + 1, network->pk, IDENTITY_PK_LEN);
  memcpy(out + 1 + IDENTITY_PK_LEN, node_pk, IDENTITY_PK_LEN);
  for (int i = 0; i < 8; i++)
    out[1 + 2 * IDENTITY_PK_LEN + i] = (uint8_t)(not_after >> (56 - 8 * i));
  uint8_t msg[sizeof NETCERT_CONTEXT - 1 + BODY_LEN];
  signed_message(out, msg);
  crypto_sign_detached(out + BODY_LEN, NULL, msg, sizeof msg, network->sk);
}

uint64_t netcert_not_after(const uint8_t *cert, size_t len)
{
  if (!cert || len != NETCERT_LEN)
    return 0;
  uint64_t t = 0;
  for (int i = 0; i < 8; i++)
    t = t << 8 | cert[1 + 2 * IDENTITY_PK_LEN + i];
  return t;
}

NetcertResult netcert_check(const uint8_t *cert, size_t len,
                            const uint8_t network_pk[IDENTITY_PK_LEN],
                            const uint8_t node_id[IDENTITY_ID_LEN], uint64_t now_unix)
{
  if (!cert || len == 0)
    return NETCERT_MISSING;
  if (len != NETCERT_LEN || cert[0] != NETCERT_VERSION)
    return NETCERT_MALFORMED;
  if (sodium_memcmp(cert + 1, network_pk, IDENTITY_PK_LEN) != 0)
    return NETCERT_WRONG_NETWORK;
  uint8_t id[IDENTITY_ID_LEN];
  identity_id_of(cert + 1 + IDENTITY_PK_LEN, id);
  if (sodium_memcmp(id, node_id, IDENTITY_ID_LEN) != 0)
    return NETCERT_WRONG_NODE;
  uint8_t msg[sizeof NETCERT_CONTEXT - 1 + BODY_LEN];
  signed_message(cert, msg);
  if (crypto_sign_verify_detached(cert + BODY_LEN, msg, sizeof msg, network_pk) != 0)
    return NETCERT_BAD_SIGNATURE;
  if (now_unix > netcert_not_after(cert, len))
    return NETCERT_EXPIRED;
  return NETCERT_OK;
}

const char *netcert_result_str(NetcertResult r)
{
  switch (r) {
  case NETCERT_OK:
    return "admitted to the network";
  case NETCERT_MISSING:
    return "not admitted to the network (no certificate)";
  case NETCERT_MALFORMED:
    return "not admitted to the network (malformed certificate)";
  case NETCERT_WRONG_NETWORK:
    return "not admitted to the network (certificate of another network)";
  case NETCERT_WRONG_NODE:
    return "not admitted to the network (certificate of another node)";
  case NETCERT_BAD_SIGNATURE:
    return "not admitted to the network (forged certificate)";
  case NETCERT_EXPIRED:
    return "not admitted to the network (certificate expired)";
  }
  return "?";
}
