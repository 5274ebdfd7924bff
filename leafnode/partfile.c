/* partfile.c - a download's part file (partfile.h). */
#define _GNU_SOURCE /* renameat2, F_OFD_SETLK, copy_file_range */
#include "partfile.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

gchar *partfile_path(const char *final_path, const char *daemon_hex, const char *cid_hex)
{
  /* The tag only needs to tell daemons and targets apart; it need not be
   * secret (the lock is what keeps others out). */
  GChecksum *ck = g_checksum_new(G_CHECKSUM_SHA256);
  g_checksum_update(ck, (const guchar *)daemon_hex, (gssize)strlen(daemon_hex) + 1);
  g_checksum_update(ck, (const guchar *)final_path, (gssize)strlen(final_path));
  gchar *name = g_strdup_printf(".canopy-%s-%.16s.part", cid_hex, g_checksum_get_string(ck));
  g_checksum_free(ck);
  gchar *dir = g_path_get_dirname(final_path);
  gchar *path = g_build_filename(dir, name, NULL);
  g_free(dir);
  g_free(name);
  return path;
}

/* An OFD lock belongs to the open file description: it is not lost when
 * some other descriptor of the file in this process is closed (as a classic
 * POSIX lock would be), and it conflicts with every other open of the file,
 * ours included. */
static int lock_fd(int fd)
{
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
  return fcntl(fd, F_OFD_SETLK, &fl);
}

int partfile_open(const char *path)
{
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return -1;
  if (lock_fd(fd) != 0) {
    int e = errno == EACCES ? EWOULDBLOCK : errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* True if path names the file open as fd. */
static gboolean is_ours(const char *path, int fd)
{
  struct stat a, b;
  return lstat(path, &a) == 0 && fstat(fd, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* Renames from to to; unless replace, fails with EEXIST if to exists, with
 * no window between the check and the rename. */
static int move_into_place(const char *from, const char *to, gboolean replace)
{
  if (replace)
    return rename(from, to);
  if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
    return 0;
  if (errno != EINVAL && errno != ENOSYS)
    return -1;
  /* A file system without RENAME_NOREPLACE: link() will not replace either. */
  if (link(from, to) == 0) {
    if (unlink(from) != 0 && errno != ENOENT)
      g_warning("cannot remove %s (the file is in place at %s): %s", from, to, g_strerror(errno));
    return 0;
  }
  if (errno != EPERM && errno != EOPNOTSUPP && errno != ENOSYS)
    return -1;
  /* Nor hard links (FUSE, SMB): check, then rename, as well as it goes. */
  if (g_file_test(to, G_FILE_TEST_EXISTS)) {
    errno = EEXIST;
    return -1;
  }
  return rename(from, to);
}

/* Writes the bytes of *fd into a new locked part file beside *path and
 * makes it the one: the old name is gone or is somebody else's. */
static int rewrite(int *fd, gchar **path)
{
  gchar *dir = g_path_get_dirname(*path);
  gchar *base = g_path_get_basename(*path);
  /* ".canopy-CID-TAG.part" -> ".canopy-CID-TAG-XXXXXX.part": still a part
   * file to the share scanner. */
  size_t stem = strlen(base) - strlen(".part");
  gchar *tmpl = g_strdup_printf("%s/%.*s-XXXXXX.part", dir, (int)stem, base);
  g_free(dir);
  g_free(base);
  int nfd = g_mkstemp_full(tmpl, O_RDWR | O_CLOEXEC, 0600);
  if (nfd < 0)
    goto fail;
  if (lock_fd(nfd) != 0)
    goto fail;
  struct stat st;
  if (fstat(*fd, &st) != 0)
    goto fail;
  off_t in = 0, out = 0;
  while (in < st.st_size) {
    ssize_t n = copy_file_range(*fd, &in, nfd, &out, (size_t)(st.st_size - in), 0);
    if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
      char buf[65536];
      n = pread(*fd, buf, MIN((off_t)sizeof buf, st.st_size - in), in);
      if (n > 0 && pwrite(nfd, buf, (size_t)n, out) != n)
        n = -1;
      if (n > 0)
        in += n, out += n;
    }
    if (n <= 0) {
      if (n == 0)
        errno = EIO; /* the file shrank under us */
      goto fail;
    }
  }
  if (fsync(nfd) != 0)
    goto fail;
  g_message("%s was moved or replaced by another process; wrote the download out again to %s",
            *path, tmpl);
  close(*fd);
  *fd = nfd;
  g_free(*path);
  *path = tmpl;
  return 0;
fail:;
  int e = errno;
  if (nfd >= 0) {
    g_unlink(tmpl);
    close(nfd);
  }
  g_free(tmpl);
  errno = e;
  return -1;
}

int partfile_finish(int *fd, gchar **path, const char *final_path, gboolean replace)
{
  gboolean ours_at_final = FALSE; /* what sits at final_path, we put there */
  for (int i = 0; i < PARTFILE_FINISH_TRIES; i++) {
    if (!is_ours(*path, *fd) && rewrite(fd, path) != 0)
      return -1;
    if (move_into_place(*path, final_path, replace || ours_at_final) != 0) {
      if (errno == ENOENT)
        continue; /* gone between the check and the rename */
      return -1;
    }
    if (is_ours(final_path, *fd))
      return 0;
    /* Swapped between the check and the rename: the file we just put at
     * final_path is not the verified one. Ours goes over it. */
    ours_at_final = TRUE;
  }
  errno = EBUSY;
  return -1;
}
