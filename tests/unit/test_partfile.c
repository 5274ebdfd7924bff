/* test_partfile.c - a download's part file (issue 11 finding 12): one name
 * per daemon and target, a lock no second open gets, and a finish that
 * survives another process removing or swapping the part file. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>
#include <glib/gstdio.h>

#include "partfile.h"

#define CID "5648cca708aec4ae5648cca708aec4ae5648cca708aec4ae5648cca708aec4ae"
#define ID_A "aaaa"
#define ID_B "bbbb"

static gchar *dir;

static int setup(void **state)
{
  (void)state;
  dir = g_dir_make_tmp("canopy-partfile-XXXXXX", NULL);
  return dir ? 0 : -1;
}

static int teardown(void **state)
{
  (void)state;
  GDir *d = g_dir_open(dir, 0, NULL);
  const char *n;
  while (d && (n = g_dir_read_name(d))) {
    gchar *p = g_build_filename(dir, n, NULL);
    g_unlink(p);
    g_free(p);
  }
  if (d)
    g_dir_close(d);
  g_rmdir(dir);
  g_free(dir);
  return 0;
}

static gchar *in_dir(const char *name)
{
  return g_build_filename(dir, name, NULL);
}

static void write_all(int fd, const char *s)
{
  assert_int_equal(pwrite(fd, s, strlen(s), 0), (ssize_t)strlen(s));
  assert_int_equal(fsync(fd), 0);
}

static void assert_file(const char *path, const char *want)
{
  gchar *got = NULL;
  gsize len = 0;
  assert_true(g_file_get_contents(path, &got, &len, NULL));
  assert_int_equal(len, strlen(want));
  assert_memory_equal(got, want, len);
  g_free(got);
}

static void test_names(void **state)
{
  (void)state;
  gchar *a = in_dir("a.bin"), *b = in_dir("b.bin");
  gchar *pa = partfile_path(a, ID_A, CID), *pb = partfile_path(b, ID_B, CID);
  gchar *pa2 = partfile_path(a, ID_A, CID), *pab = partfile_path(a, ID_B, CID);
  gchar *pba = partfile_path(b, ID_A, CID);
  assert_string_not_equal(pa, pb);  /* two daemons, two targets */
  assert_string_not_equal(pa, pab); /* one target, two daemons */
  assert_string_not_equal(pa, pba); /* one daemon, two targets */
  assert_string_equal(pa, pa2);     /* the same again: resumable */
  gchar *base = g_path_get_basename(pa), *pdir = g_path_get_dirname(pa);
  assert_string_equal(pdir, dir);
  assert_true(g_str_has_prefix(base, ".canopy-" CID "-"));
  assert_true(g_str_has_suffix(base, ".part"));
  g_free(base);
  g_free(pdir);
  g_free(a), g_free(b), g_free(pa), g_free(pb), g_free(pa2), g_free(pab), g_free(pba);
}

static void test_lock(void **state)
{
  (void)state;
  gchar *p = in_dir(".canopy-x.part");
  int fd = partfile_open(p);
  assert_true(fd >= 0);
  /* A second open (another daemon would be one) is refused while the first
   * holds it, and gets it once the first lets go. */
  errno = 0;
  assert_int_equal(partfile_open(p), -1);
  assert_true(errno == EWOULDBLOCK || errno == EAGAIN);
  close(fd);
  fd = partfile_open(p);
  assert_true(fd >= 0);
  close(fd);
  g_unlink(p);
  g_free(p);
}

static void test_finish(void **state)
{
  (void)state;
  gchar *final = in_dir("done.bin"), *p = partfile_path(final, ID_A, CID);
  int fd = partfile_open(p);
  write_all(fd, "verified bytes");
  assert_int_equal(partfile_finish(&fd, &p, final, FALSE), 0);
  close(fd);
  assert_file(final, "verified bytes");
  assert_false(g_file_test(p, G_FILE_TEST_EXISTS));
  /* Not over an existing file without replace. */
  fd = partfile_open(p);
  write_all(fd, "second");
  assert_int_equal(partfile_finish(&fd, &p, final, FALSE), -1);
  assert_int_equal(errno, EEXIST);
  assert_int_equal(partfile_finish(&fd, &p, final, TRUE), 0);
  close(fd);
  assert_file(final, "second");
  g_unlink(final);
  g_free(final);
  g_free(p);
}

/* Another process deletes the part file before the end: the bytes are
 * written out again from the descriptor. */
static void test_finish_after_delete(void **state)
{
  (void)state;
  gchar *final = in_dir("deleted.bin"), *p = partfile_path(final, ID_A, CID);
  int fd = partfile_open(p);
  write_all(fd, "still here");
  assert_int_equal(g_unlink(p), 0);
  assert_int_equal(partfile_finish(&fd, &p, final, FALSE), 0);
  close(fd);
  assert_file(final, "still here");
  assert_false(g_file_test(p, G_FILE_TEST_EXISTS));
  g_unlink(final);
  g_free(final);
  g_free(p);
}

/* ... or puts another file in its place (the old bug: a second daemon's
 * rename took it): the other file is not what ends up at the final name. */
static void test_finish_after_swap(void **state)
{
  (void)state;
  gchar *final = in_dir("swapped.bin"), *p = partfile_path(final, ID_A, CID);
  gchar *mine = g_strdup(p);
  int fd = partfile_open(p);
  write_all(fd, "the right bytes");
  assert_int_equal(g_unlink(p), 0);
  assert_true(g_file_set_contents(p, "somebody else's", -1, NULL));
  assert_int_equal(partfile_finish(&fd, &p, final, FALSE), 0);
  close(fd);
  assert_file(final, "the right bytes");
  assert_file(mine, "somebody else's"); /* left alone */
  g_unlink(mine);
  g_unlink(final);
  g_free(final);
  g_free(mine);
  g_free(p);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_lock),
      cmocka_unit_test(test_finish),
      cmocka_unit_test(test_finish_after_delete),
      cmocka_unit_test(test_finish_after_swap),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
