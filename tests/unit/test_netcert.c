/* test_netcert.c - network certificates: what admits a super node and what
 * does not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "identity.h"
#include "netcert.h"

#define NOW 1800000000u /* some unix time in 2027 */

typedef struct {
  Identity net, other_net, node, other_node;
  uint8_t cert[NETCERT_LEN];
} Fixture;

static int setup(void **state)
{
  static Fixture f;
  assert_true(identity_generate(&f.net));
  assert_true(identity_generate(&f.other_net));
  assert_true(identity_generate(&f.node));
  assert_true(identity_generate(&f.other_node));
  netcert_sign(&f.net, f.node.pk, NOW + 3600, f.cert);
  *state = &f;
  return 0;
}

static NetcertResult check(const Fixture *f, const uint8_t *cert, size_t len, uint64_t now)
{
  return netcert_check(cert, len, f->net.pk, f->node.id, now);
}

static void test_valid_until_expiry(void **state)
{
  Fixture *f = *state;
  assert_int_equal(check(f, f->cert, NETCERT_LEN, NOW), NETCERT_OK);
  assert_int_equal(check(f, f->cert, NETCERT_LEN, NOW + 3600), NETCERT_OK); /* the last second */
  assert_int_equal(check(f, f->cert, NETCERT_LEN, NOW + 3601), NETCERT_EXPIRED);
  assert_true(netcert_not_after(f->cert, NETCERT_LEN) == NOW + 3600);
}

static void test_missing_and_malformed(void **state)
{
  Fixture *f = *state;
  assert_int_equal(check(f, NULL, 0, NOW), NETCERT_MISSING);
  assert_int_equal(check(f, f->cert, 0, NOW), NETCERT_MISSING);
  /* Every shorter prefix and a longer copy are malformed, never valid. */
  for (size_t n = 1; n < NETCERT_LEN; n++)
    assert_int_equal(check(f, f->cert, n, NOW), NETCERT_MALFORMED);
  uint8_t longer[NETCERT_LEN + 1];
  memcpy(longer, f->cert, NETCERT_LEN);
  longer[NETCERT_LEN] = 0;
  assert_int_equal(check(f, longer, sizeof longer, NOW), NETCERT_MALFORMED);
  uint8_t v2[NETCERT_LEN];
  memcpy(v2, f->cert, NETCERT_LEN);
  v2[0] = 2;
  assert_int_equal(check(f, v2, NETCERT_LEN, NOW), NETCERT_MALFORMED);
}

static void test_wrong_network_or_node(void **state)
{
  Fixture *f = *state;
  /* Another network's key, whoever it certifies. */
  uint8_t theirs[NETCERT_LEN];
  netcert_sign(&f->other_net, f->node.pk, NOW + 3600, theirs);
  assert_int_equal(check(f, theirs, NETCERT_LEN, NOW), NETCERT_WRONG_NETWORK);
  /* Our network's certificate, shown by a node it was not issued to. */
  assert_int_equal(netcert_check(f->cert, NETCERT_LEN, f->net.pk, f->other_node.id, NOW),
                   NETCERT_WRONG_NODE);
}

static void test_every_bit_matters(void **state)
{
  Fixture *f = *state;
  /* A flipped bit anywhere is caught: the header fields by their checks,
   * the expiry and the signature by the signature. None passes. */
  for (size_t i = 0; i < NETCERT_LEN; i++) {
    for (int bit = 0; bit < 8; bit++) {
      uint8_t t[NETCERT_LEN];
      memcpy(t, f->cert, NETCERT_LEN);
      t[i] ^= (uint8_t)(1u << bit);
      assert_int_not_equal(check(f, t, NETCERT_LEN, NOW), NETCERT_OK);
    }
  }
  /* A later expiry needs the network's signature: rewriting it fails. */
  uint8_t later[NETCERT_LEN];
  memcpy(later, f->cert, NETCERT_LEN);
  later[1 + 32 + 32] = 0x7f;
  assert_int_equal(check(f, later, NETCERT_LEN, NOW), NETCERT_BAD_SIGNATURE);
}

static void test_forged_by_the_node(void **state)
{
  Fixture *f = *state;
  /* A node signing its own certificate with its own key, naming the
   * network's key as issuer: the signature does not verify. */
  uint8_t forged[NETCERT_LEN];
  netcert_sign(&f->node, f->node.pk, NOW + 3600, forged);
  memcpy(forged + 1, f->net.pk, 32);
  assert_int_equal(check(f, forged, NETCERT_LEN, NOW), NETCERT_BAD_SIGNATURE);
}

static void test_phrases(void **state)
{
  for (int r = NETCERT_OK; r <= NETCERT_EXPIRED; r++) {
    const char *s = netcert_result_str((NetcertResult)r);
    assert_non_null(s);
    assert_true(strlen(s) > 5);
  }
  assert_non_null(strstr(netcert_result_str(NETCERT_EXPIRED), "expired"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid_until_expiry),    cmocka_unit_test(test_missing_and_malformed),
      cmocka_unit_test(test_wrong_network_or_node), cmocka_unit_test(test_every_bit_matters),
      cmocka_unit_test(test_forged_by_the_node),    cmocka_unit_test(test_phrases),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
