/* identity.h - a node's Ed25519 key pair and its node id.
 *
 * The node id is BLAKE2b-256 of the Ed25519 public key: peers are keys, not
 * addresses. The secret key lives in DIR/identity.key (mode 0600), created on
 * first start.
 */
#ifndef CANOPY_IDENTITY_H
#define CANOPY_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDENTITY_PK_LEN 32
#define IDENTITY_SK_LEN 64
#define IDENTITY_SIG_LEN 64
#define IDENTITY_ID_LEN 32
#define IDENTITY_HEX_LEN (IDENTITY_ID_LEN * 2 + 1)

typedef struct {
  uint8_t pk[IDENTITY_PK_LEN];
  uint8_t sk[IDENTITY_SK_LEN];
  uint8_t id[IDENTITY_ID_LEN];
} Identity;

/* Initialises libsodium once; false if it cannot. Every entry point that
 * uses crypto calls it. */
bool crypto_ready(void);

/* Fresh random identity (tests, tools). */
bool identity_generate(Identity *out);
/* Loads DIR/identity.key, or creates it (0600) if missing. On failure returns
 * false and writes a one-line reason into err. */
bool identity_load_or_create(const char *dir, Identity *out, char *err, size_t errlen);
/* node id of a public key */
void identity_id_of(const uint8_t pk[IDENTITY_PK_LEN], uint8_t id[IDENTITY_ID_LEN]);
/* Wipes the secret key. */
void identity_clear(Identity *id);

/* Lower-case hex of n bytes into out (2n+1 bytes). */
void hex_encode(const uint8_t *p, size_t n, char *out);
/* Parses exactly 2n hex digits; false on anything else. */
bool hex_decode(const char *s, uint8_t *out, size_t n);

#endif
