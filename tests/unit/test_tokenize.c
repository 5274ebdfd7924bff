/* test_tokenize.c - what counts as a keyword. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "tokenize.h"

typedef struct {
  char buf[1024];
  const char *tok[TOKENIZE_MAX_TOKENS];
  size_t n;
} Toks;

static void run(Toks *t, const char *s, size_t max)
{
  size_t len = strlen(s);
  assert_true(len + TOKENIZE_MAX_TOKENS <= sizeof t->buf);
  t->n = tokenize(s, len, t->buf, len + TOKENIZE_MAX_TOKENS, t->tok, max);
}

static void expect(const char *s, const char *const *want, size_t nwant)
{
  Toks t;
  run(&t, s, TOKENIZE_MAX_TOKENS);
  assert_int_equal(t.n, nwant);
  for (size_t i = 0; i < nwant; i++)
    assert_string_equal(t.tok[i], want[i]);
}

static void test_file_name(void **state)
{
  (void)state;
  const char *want[] = {"the", "beatles", "abbey", "road", "1969", "mp3"};
  expect("The.Beatles-Abbey_Road (1969).mp3", want, 6);
}

static void test_case_folding(void **state)
{
  (void)state;
  const char *want[] = {"abbey", "road"};
  expect("ABBEY rOaD", want, 2);
}

static void test_duplicates_once(void **state)
{
  (void)state;
  const char *want[] = {"road", "abbey"};
  expect("Road abbey ROAD road.ABBEY", want, 2);
}

static void test_utf8_word_whole(void **state)
{
  (void)state;
  /* "Motörhead - Ace_of_Spades", "日本語" : non-ASCII bytes never split a word,
   * and they are not case-folded. */
  const char *want[] = {"mot\xc3\xb6rhead", "ace", "of", "spades",
                        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"};
  expect("Mot\xc3\xb6rhead - Ace_of_Spades \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", want, 5);
  const char *upper[] = {"\xc3\x96l"};
  expect("\xc3\x96L", upper, 1);
}

static void test_max_tokens(void **state)
{
  (void)state;
  Toks t;
  run(&t, "a b c d e f", 3);
  assert_int_equal(t.n, 3);
  assert_string_equal(t.tok[0], "a");
  assert_string_equal(t.tok[2], "c");

  /* Never more than TOKENIZE_MAX_TOKENS, even if the caller allows more. */
  char many[400] = "";
  for (int i = 0; i < 50; i++) {
    char w[8];
    snprintf(w, sizeof w, "w%d ", i);
    strcat(many, w);
  }
  const char *tok[64];
  char buf[sizeof many + TOKENIZE_MAX_TOKENS];
  size_t n = tokenize(many, strlen(many), buf, sizeof buf, tok, 64);
  assert_int_equal(n, TOKENIZE_MAX_TOKENS);
  assert_string_equal(tok[TOKENIZE_MAX_TOKENS - 1], "w31");
}

static void test_small_output_buffer(void **state)
{
  (void)state;
  /* A keyword that does not fit ends the scan; nothing is overrun. */
  char buf[8];
  memset(buf, 'X', sizeof buf);
  const char *tok[4];
  size_t n = tokenize("abc defgh ij", 12, buf, 6, tok, 4);
  assert_int_equal(n, 1);
  assert_string_equal(tok[0], "abc");
  assert_int_equal(buf[6], 'X');
}

static void test_empty_input(void **state)
{
  (void)state;
  expect("", NULL, 0);
  expect(" .-_()[] !", NULL, 0);
  Toks t;
  t.n = tokenize(NULL, 0, t.buf, sizeof t.buf, t.tok, TOKENIZE_MAX_TOKENS);
  assert_int_equal(t.n, 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_file_name),       cmocka_unit_test(test_case_folding),
      cmocka_unit_test(test_duplicates_once), cmocka_unit_test(test_utf8_word_whole),
      cmocka_unit_test(test_max_tokens),      cmocka_unit_test(test_small_output_buffer),
      cmocka_unit_test(test_empty_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
