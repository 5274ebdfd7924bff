/* identity.c - a node's Ed25519 key pair, its node id and its key file.
 *
 * The key file holds the 64-byte libsodium secret key (seed | public key) as
 * 128 lower-case hex digits and a newline. It is created with O_EXCL and mode
 * 0600 and refused when group or others may access it, as ssh does with its
 * private keys: a key others can read is no longer this node's identity.
 */
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_FILE "identity.key"
#define KEY_HEX_LEN (IDENTITY_SK_LEN * 2)
#define KEY_FILE_LEN (KEY_HEX_LEN + 1) /* hex digits and '\n' */

_Static_assert(IDENTITY_PK_LEN == crypto_sign_PUBLICKEYBYTES, "pk size");
_Static_assert(IDENTITY_SK_LEN == crypto_sign_SECRETKEYBYTES, "sk size");
_Static_assert(IDENTITY_SIG_LEN == crypto_sign_BYTES, "sig size");

bool crypto_ready(void)
{
  /* sodium_init() is idempotent and thread-safe: 0 the first time, 1 after,
   * -1 if the library cannot work here. Calling it every time avoids a racy
   * cached flag. */
  return sodium_init() >= 0;
}

void identity_id_of(const uint8_t pk[IDENTITY_PK_LEN], uint8_t id[IDENTITY_ID_LEN])
{
  crypto_generichash(id, IDENTITY_ID_LEN, pk, IDENTITY_PK_LEN, NULL, 0);
}

bool identity_generate(Identity *out)
{
  memset(out, 0, sizeof *out);
  if (!crypto_ready() || crypto_sign_keypair(out->pk, out->sk) != 0) {
    identity_clear(out);
    return false;
  }
  identity_id_of(out->pk, out->id);
  return true;
}

void identity_clear(Identity *id)
{
  sodium_memzero(id->sk, sizeof id->sk);
}

void hex_encode(const uint8_t *p, size_t n, char *out)
{
  /* libsodium's encoder runs in constant time; it also hexes secret keys. */
  sodium_bin2hex(out, 2 * n + 1, p, n);
}

static int hex_digit(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

bool hex_decode(const char *s, uint8_t *out, size_t n)
{
  /* Stops at the first non-digit, so a short string never reads past its
   * NUL; the partial output may be a secret, hence the wipe. */
  for (size_t i = 0; i < n; i++) {
    int hi = hex_digit(s[2 * i]);
    int lo = hi < 0 ? -1 : hex_digit(s[2 * i + 1]);
    if (lo < 0) {
      sodium_memzero(out, n);
      return false;
    }
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  if (s[2 * n] != '\0') {
    sodium_memzero(out, n);
    return false;
  }
  return true;
}

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
  if (!err || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* mkdir -p with mode 0700 for every directory it creates; existing ones are
 * left as they are. */
static bool make_dirs(const char *dir, char *err, size_t errlen)
{
  char path[PATH_MAX];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof path) {
    set_err(err, errlen, "state directory name is empty or too long");
    return false;
  }
  memcpy(path, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != '\0')
      continue;
    char saved = path[i];
    path[i] = '\0';
    if (mkdir(path, 0700) != 0 && errno != EEXIST) {
      set_err(err, errlen, "cannot create %s: %s", path, strerror(errno));
      return false;
    }
    path[i] = saved;
  }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    set_err(err, errlen, "%s is not a directory", dir);
    return false;
  }
  return true;
}

/* Reads and checks an existing key file; fd is closed by the caller. */
static bool load_key(int fd, const char *dir, Identity *out, char *err, size_t errlen)
{
  char text[KEY_FILE_LEN + 1]; /* one spare byte tells a long file apart */
  uint8_t check_pk[IDENTITY_PK_LEN];
  uint8_t check_sk[IDENTITY_SK_LEN];
  bool ok = false;
  struct stat st;
  size_t got = 0;

  if (fstat(fd, &st) != 0) {
    set_err(err, errlen, "%s in %s: %s", KEY_FILE, dir, strerror(errno));
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    set_err(err, errlen, "%s in %s: not a regular file", KEY_FILE, dir);
    goto out;
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    set_err(err, errlen, "%s in %s: mode %04o lets others access it (chmod 600)", KEY_FILE, dir,
            (unsigned)(st.st_mode & 07777));
    goto out;
  }
  while (got < sizeof text) {
    ssize_t r = read(fd, text + got, sizeof text - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0) {
      set_err(err, errlen, "%s in %s: %s", KEY_FILE, dir, strerror(errno));
      goto out;
    }
    if (r == 0)
      break;
    got += (size_t)r;
  }
  if (got != KEY_FILE_LEN || text[KEY_HEX_LEN] != '\n') {
    set_err(err, errlen, "%s in %s: bad format", KEY_FILE, dir);
    goto out;
  }
  text[KEY_HEX_LEN] = '\0';
  if (!hex_decode(text, out->sk, IDENTITY_SK_LEN)) {
    set_err(err, errlen, "%s in %s: bad format", KEY_FILE, dir);
    goto out;
  }
  crypto_sign_ed25519_sk_to_pk(out->pk, out->sk);
  /* The public half is stored next to the seed; a file whose halves
   * disagree would sign with one key and announce another. */
  crypto_sign_seed_keypair(check_pk, check_sk, out->sk);
  if (sodium_memcmp(check_pk, out->pk, IDENTITY_PK_LEN) != 0) {
    set_err(err, errlen, "%s in %s: public key does not match the secret key", KEY_FILE, dir);
    goto out;
  }
  identity_id_of(out->pk, out->id);
  ok = true;
out:
  sodium_memzero(text, sizeof text);
  sodium_memzero(check_sk, sizeof check_sk);
  return ok;
}

/* Writes a fresh key to fd (just created with O_EXCL) and syncs it. */
static bool create_key(int fd, const char *dir, Identity *out, char *err, size_t errlen)
{
  char text[KEY_FILE_LEN + 1];
  bool ok = false;
  size_t put = 0;

  if (!identity_generate(out)) {
    set_err(err, errlen, "cannot generate a key pair");
    goto out;
  }
  hex_encode(out->sk, IDENTITY_SK_LEN, text);
  text[KEY_HEX_LEN] = '\n';
  while (put < KEY_FILE_LEN) {
    ssize_t w = write(fd, text + put, KEY_FILE_LEN - put);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0) {
      set_err(err, errlen, "%s in %s: write: %s", KEY_FILE, dir, strerror(errno));
      goto out;
    }
    put += (size_t)w;
  }
  if (fsync(fd) != 0) {
    set_err(err, errlen, "%s in %s: fsync: %s", KEY_FILE, dir, strerror(errno));
    goto out;
  }
  ok = true;
out:
  sodium_memzero(text, sizeof text);
  return ok;
}

/* Best effort: makes the new directory entry durable, so a crash right after
 * first start does not lose the key and with it the node id. */
static void sync_dir(const char *dir)
{
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
}

bool identity_load_or_create(const char *dir, Identity *out, char *err, size_t errlen)
{
  char path[PATH_MAX];
  bool ok = false;
  int fd = -1;

  memset(out, 0, sizeof *out);
  if (!crypto_ready()) {
    set_err(err, errlen, "libsodium failed to initialise");
    return false;
  }
  if (!make_dirs(dir, err, errlen))
    return false;
  if (snprintf(path, sizeof path, "%s/%s", dir, KEY_FILE) >= (int)sizeof path) {
    set_err(err, errlen, "state directory name too long");
    return false;
  }

  /* Two rounds: if another process creates the file between our open and our
   * O_EXCL create, the second round loads what it wrote. */
  for (int round = 0; round < 2; round++) {
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      ok = load_key(fd, dir, out, err, errlen);
      goto out;
    }
    if (errno != ENOENT) {
      set_err(err, errlen, "%s in %s: %s", KEY_FILE, dir, strerror(errno));
      goto out;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ok = create_key(fd, dir, out, err, errlen);
      if (!ok)
        unlink(path); /* a half-written key would block every later start */
      else
        sync_dir(dir);
      goto out;
    }
    if (errno != EEXIST) {
      set_err(err, errlen, "cannot create %s in %s: %s", KEY_FILE, dir, strerror(errno));
      goto out;
    }
  }
  set_err(err, errlen, "%s in %s: appears and disappears", KEY_FILE, dir);
out:
  if (fd >= 0)
    close(fd);
  if (!ok)
    identity_clear(out);
  return ok;
}
