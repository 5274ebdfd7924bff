/* test_safename.c - names from the network for a terminal and for a disk
 * (issue 11 finding 11). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "safename.h"

static void check_esc(const char *in, size_t len, const char *want)
{
  char *got = name_escape_for_terminal(in, len);
  assert_non_null(got);
  assert_string_equal(got, want);
  free(got);
}

static void check_disk(const char *in, const char *want)
{
  char *got = name_clean_for_disk(in, strlen(in));
  if (!want) {
    assert_null(got);
    return;
  }
  assert_non_null(got);
  assert_string_equal(got, want);
  free(got);
}

/* No byte below 0x20, no DEL, no C1 and no bidi control left in s. */
static void assert_no_raw_controls(const char *s)
{
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    assert_true(*p >= 0x20 && *p != 0x7F);
    if (p[0] == 0xC2)
      assert_false(p[1] >= 0x80 && p[1] <= 0x9F); /* C1 */
    if (p[0] == 0xE2 && p[1] == 0x80)
      assert_false((p[2] >= 0xAA && p[2] <= 0xAE) || p[2] == 0x8E || p[2] == 0x8F || p[2] == 0xA8 ||
                   p[2] == 0xA9);
    if (p[0] == 0xE2 && p[1] == 0x81)
      assert_false(p[2] >= 0xA6 && p[2] <= 0xA9);
    if (p[0] == 0xD8)
      assert_false(p[1] == 0x9C);
  }
}

static void test_escape_terminal(void **state)
{
  (void)state;
  check_esc("plain name.mp3", 14, "plain name.mp3");
  check_esc("Björk – Jóga.flac", strlen("Björk – Jóga.flac"), "Björk – Jóga.flac");
  check_esc("a\x1b[2Jb", 6, "a\\x1B[2Jb");
  check_esc("line\rover", 9, "line\\x0Dover");
  check_esc("tab\there\n", 9, "tab\\x09here\\x0A");
  check_esc("del\x7f", 4, "del\\x7F");
  check_esc("c1\xc2\x9b", 4, "c1\\u{009B}"); /* CSI as a C1 control */
  check_esc("evil\xe2\x80\xaegnp.exe", 14, "evil\\u{202E}gnp.exe");
  check_esc("\xe2\x81\xa6x\xe2\x81\xa9", 7, "\\u{2066}x\\u{2069}");
  check_esc("\xe2\x80\x8e\xe2\x80\x8f\xd8\x9c", 8, "\\u{200E}\\u{200F}\\u{061C}");
  check_esc("\xe2\x80\xa8", 3, "\\u{2028}");
  /* A literal backslash cannot pose as an escape. */
  check_esc("a\\x1B", 5, "a\\\\x1B");
  /* Bytes that are not UTF-8: each one escaped. */
  check_esc("\xff\xc0\xaf", 3, "\\xFF\\xC0\\xAF");      /* invalid, overlong '/' */
  check_esc("\xed\xa0\x80", 3, "\\xED\\xA0\\x80");      /* a surrogate */
  check_esc("end\xe2\x80", 5, "end\\xE2\\x80");         /* cut short */
  check_esc("\xf0\x9f\x8e\xb5", 4, "\xf0\x9f\x8e\xb5"); /* an emoji stays */
  check_esc("", 0, "");
}

static void test_every_control_escaped(void **state)
{
  (void)state;
  /* Every code point up to U+2FFF, encoded, then escaped: nothing unsafe
   * survives and the safe ones come through unchanged. */
  for (unsigned cp = 1; cp < 0x3000; cp++) {
    if (cp >= 0xD800)
      break;
    char in[4];
    size_t n;
    if (cp < 0x80) {
      in[0] = (char)cp;
      n = 1;
    } else if (cp < 0x800) {
      in[0] = (char)(0xC0 | cp >> 6);
      in[1] = (char)(0x80 | (cp & 0x3F));
      n = 2;
    } else {
      in[0] = (char)(0xE0 | cp >> 12);
      in[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
      in[2] = (char)(0x80 | (cp & 0x3F));
      n = 3;
    }
    char *got = name_escape_for_terminal(in, n);
    assert_non_null(got);
    assert_no_raw_controls(got);
    if (!safename_is_unsafe(cp) && cp != '\\')
      assert_true(strlen(got) == n && memcmp(got, in, n) == 0);
    free(got);
    got = name_clean_for_disk(in, n);
    if (got) {
      assert_no_raw_controls(got);
      assert_null(strchr(got, '/'));
      free(got);
    }
  }
}

static void test_clean_for_disk(void **state)
{
  (void)state;
  check_disk("song.mp3", "song.mp3");
  check_disk("music/album/song.mp3", "song.mp3");
  check_disk("../../../etc/passwd", "passwd");
  check_disk("dir/", "dir");
  check_disk("..", NULL);
  check_disk(".", NULL);
  check_disk("/", NULL);
  check_disk("a/..", NULL);
  check_disk("", NULL);
  check_disk(".bashrc", "bashrc");
  check_disk("-rf", "rf");
  check_disk("--help.txt", "help.txt");
  check_disk(" .-. x", "x");
  check_disk("a\\b", "a_b");
  check_disk("evil\xe2\x80\xaegnp.exe", "evil_gnp.exe");
  check_disk("\x1b[31mred\x1b[0m.txt", "_[31mred_[0m.txt");
  check_disk("two\r\nlines", "two__lines");
  check_disk("bad\xffutf8", "bad_utf8");
  check_disk("ok – Jóga.flac", "ok – Jóga.flac");
  check_disk("\xe2\x80\xae", "_"); /* only a control: a visible name, not an empty one */
}

static void test_clean_length(void **state)
{
  (void)state;
  char in[600];
  /* 300 ASCII bytes: cut to 255. */
  memset(in, 'a', 300);
  in[300] = '\0';
  char *got = name_clean_for_disk(in, 300);
  assert_int_equal(strlen(got), SAFENAME_MAX);
  free(got);
  /* 2-byte characters from byte 0: 255 is odd, so 254 bytes, never half a
   * character. */
  for (int i = 0; i < 300; i += 2)
    memcpy(in + i, "\xc3\xa9", 2);
  got = name_clean_for_disk(in, 300);
  assert_int_equal(strlen(got), 254);
  assert_true((unsigned char)got[253] == 0xA9);
  free(got);
  /* 4-byte characters after one ASCII byte: 1 + 63 * 4 = 253. */
  in[0] = 'x';
  for (int i = 1; i < 297; i += 4)
    memcpy(in + i, "\xf0\x9f\x8e\xb5", 4);
  got = name_clean_for_disk(in, 297);
  assert_int_equal(strlen(got), 253);
  free(got);
}

/* A peer's text cut short stays whole characters: never half of one. */
static void test_utf8_cut(void **state)
{
  (void)state;
  const char *ascii = "busy: you already hold your share";
  assert_int_equal(safename_utf8_cut(ascii, strlen(ascii), 100), strlen(ascii));
  assert_int_equal(safename_utf8_cut(ascii, strlen(ascii), 4), 4);
  /* "a" then e-acute (2 bytes), euro (3), U+1F600 (4). */
  const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
  size_t len = strlen(s);
  size_t want[] = {0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10};
  for (size_t max = 0; max <= len; max++)
    assert_int_equal(safename_utf8_cut(s, len, max), want[max]);
  /* 11 bytes of prefix, then 60 e-acutes: 100 falls inside one. */
  char t[200] = "\x1b]0;pwned\x07\r";
  for (int i = 0; i < 60; i++)
    strcat(t, "\xc3\xa9");
  size_t cut = safename_utf8_cut(t, strlen(t), 100);
  assert_int_equal(cut, 99);
  assert_true(((unsigned char)t[cut] & 0xC0) != 0x80);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_escape_terminal), cmocka_unit_test(test_every_control_escaped),
      cmocka_unit_test(test_clean_for_disk),  cmocka_unit_test(test_clean_length),
      cmocka_unit_test(test_utf8_cut),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
