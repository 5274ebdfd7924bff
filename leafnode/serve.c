/* serve.c - chunk hashes and chunks for other leaves. */
#include "serve.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "content.h"
#include "hashcache.h"

/* A tree cache that could not be opened (none yet, another version) is
 * tried again after this long. */
#define TREE_CACHE_RETRY_US (5 * G_USEC_PER_SEC)

typedef struct {
  uint8_t cid[32];
  uint64_t size;
  uint32_t n;
  uint8_t (*leaves)[32];
} Tree;

struct Server {
  ShareSet *shares;
  GHashTable *trees; /* cid (in Tree) -> Tree*; a few KiB per file asked for */
  char *state_dir;   /* of the hash cache the trees come from; NULL: none */
  HashCache *tree_cache;
  gint64 tree_cache_retry; /* monotonic us before which not to reopen it */
  uint64_t bytes_sent;
  uint64_t chunks_sent;
  uint64_t trees_hashed;
  GHashTable *refused; /* cid -> HashCacheKey: a version that did not make its id */
};

static guint cid_hash(gconstpointer k)
{
  guint h;
  memcpy(&h, k, sizeof h);
  return h;
}

static gboolean cid_equal(gconstpointer a, gconstpointer b)
{
  return memcmp(a, b, 32) == 0;
}

static void tree_free(gpointer p)
{
  Tree *t = p;
  g_free(t->leaves);
  g_free(t);
}

Server *server_new(ShareSet *shares)
{
  Server *sv = g_new0(Server, 1);
  sv->shares = shares;
  sv->trees = g_hash_table_new_full(cid_hash, cid_equal, NULL, tree_free);
  sv->refused = g_hash_table_new_full(cid_hash, cid_equal, g_free, g_free);
  return sv;
}

void server_free(Server *sv)
{
  if (!sv)
    return;
  g_hash_table_destroy(sv->trees);
  g_hash_table_destroy(sv->refused);
  hashcache_close(sv->tree_cache);
  g_free(sv->state_dir);
  g_free(sv);
}

void server_use_tree_cache(Server *sv, const char *state_dir)
{
  g_clear_pointer(&sv->tree_cache, hashcache_close);
  g_free(sv->state_dir);
  sv->state_dir = g_strdup(state_dir);
  sv->tree_cache_retry = 0;
}

uint64_t server_trees_hashed(const Server *sv)
{
  return sv->trees_hashed;
}

uint64_t server_bytes_sent(const Server *sv)
{
  return sv->bytes_sent;
}

uint64_t server_chunks_sent(const Server *sv)
{
  return sv->chunks_sent;
}

/* Opens rel under root one component at a time, never following a symlink
 * (O_NOFOLLOW on each): a directory of the share replaced by a link since
 * the scan cannot lead outside it. rel comes from our own scan, relative,
 * without "." or ".." parts; refused if it holds one anyway. -1 on failure. */
static int open_beneath(const char *root, const char *rel)
{
  int dir = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0)
    return -1;
  gchar **parts = g_strsplit(rel, "/", -1);
  int fd = -1;
  for (guint i = 0; parts[i]; i++) {
    const char *p = parts[i];
    if (!*p || strcmp(p, ".") == 0 || strcmp(p, "..") == 0)
      break;
    if (!parts[i + 1]) {
      fd = openat(dir, p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
      break;
    }
    int next = openat(dir, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(dir);
    dir = next;
    if (dir < 0)
      break;
  }
  if (dir >= 0)
    close(dir);
  g_strfreev(parts);
  return fd;
}

/* Opens the shared file for cid, refusing symlinks and a file whose size
 * moved since the scan. -1 if we do not (any longer) have it. With root and
 * version, also the share root it is under (borrowed until the next scan)
 * and the version opened (relpath borrowed likewise). */
static int open_shared(Server *sv, const uint8_t cid[32], uint64_t *size, const char **root,
                       HashCacheKey *version)
{
  const char *top, *rel;
  if (!shareset_find(sv->shares, cid, &top, &rel, size))
    return -1;
  int fd = open_beneath(top, rel);
  if (fd < 0)
    return -1;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != *size) {
    close(fd);
    return -1;
  }
  if (root)
    *root = top;
  if (version)
    *version = hashcache_key_of_stat(rel, &st);
  return fd;
}

static gboolean read_full(int fd, uint8_t *buf, size_t len, uint64_t off)
{
  while (len > 0) {
    ssize_t n = pread(fd, buf, len, (off_t)off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return FALSE;
    buf += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return TRUE;
}

static gboolean same_version(const HashCacheKey *a, const HashCacheKey *b)
{
  return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns &&
         a->ctime_ns == b->ctime_ns;
}

/* The tree the scan stored for exactly this version k of the file under
 * root, if it rebuilds t's id: no need to read the file again. */
static gboolean tree_from_cache(Server *sv, Tree *t, const char *root, const HashCacheKey *k)
{
  if (!sv->state_dir)
    return FALSE;
  gint64 now = g_get_monotonic_time();
  if (!sv->tree_cache && now >= sv->tree_cache_retry) {
    sv->tree_cache = hashcache_open_reader(sv->state_dir);
    sv->tree_cache_retry = now + TREE_CACHE_RETRY_US;
  }
  if (!sv->tree_cache)
    return FALSE;
  size_t n = 0;
  uint8_t *leaves = hashcache_tree(sv->tree_cache, root, k, t->cid, &n);
  uint8_t check[32];
  if (leaves && n == t->n)
    content_id_from_leaves((const uint8_t(*)[32])leaves, n, t->size, check);
  if (!leaves || n != t->n || memcmp(check, t->cid, 32) != 0) {
    g_free(leaves);
    return FALSE;
  }
  t->leaves = (uint8_t(*)[32])leaves;
  return TRUE;
}

/* The file's tree, once per content id: from the hash cache when it holds
 * this very version of the file, else by hashing it (which blocks: a file
 * not in the cache is one the scan did not trust, or there is no cache).
 * A file edited since the scan no longer matches and is not served, and
 * that version is remembered, so asking again costs no second read. */
static Tree *tree_for(Server *sv, const uint8_t cid[32])
{
  const char *root, *rel;
  uint64_t size;
  Tree *t = g_hash_table_lookup(sv->trees, cid);
  /* A file no longer shared (its folder removed) is not described either. */
  if (t && shareset_find(sv->shares, cid, &root, &rel, &size) && size == t->size)
    return t;
  if (t)
    g_hash_table_remove(sv->trees, cid);
  HashCacheKey k;
  int fd = open_shared(sv, cid, &size, &root, &k);
  if (fd < 0)
    return NULL;
  const HashCacheKey *bad = g_hash_table_lookup(sv->refused, cid);
  if (bad && same_version(bad, &k)) {
    close(fd);
    return NULL;
  }
  uint64_t n = size == 0 ? 1 : (size + CONTENT_CHUNK_SIZE - 1) / CONTENT_CHUNK_SIZE;
  t = g_new0(Tree, 1);
  memcpy(t->cid, cid, 32);
  t->size = size;
  t->n = (uint32_t)n;
  if (tree_from_cache(sv, t, root, &k)) {
    close(fd);
    g_hash_table_insert(sv->trees, t->cid, t);
    return t;
  }
  sv->trees_hashed++;
  t->leaves = g_malloc0_n(t->n, 32);
  uint8_t *buf = g_malloc(CONTENT_CHUNK_SIZE);
  gboolean ok = TRUE;
  for (uint32_t i = 0; ok && i < t->n; i++) {
    uint64_t off = (uint64_t)i * CONTENT_CHUNK_SIZE;
    size_t len = (size_t)MIN((uint64_t)CONTENT_CHUNK_SIZE, size - MIN(size, off));
    ok = read_full(fd, buf, len, off);
    if (ok)
      content_leaf_hash(buf, len, t->leaves[i]);
  }
  g_free(buf);
  close(fd);
  uint8_t check[32];
  if (ok)
    content_id_from_leaves((const uint8_t(*)[32])t->leaves, t->n, t->size, check);
  if (!ok || memcmp(check, cid, 32) != 0) {
    g_warning("not serving %02x%02x%02x%02x…: the file changed since it was scanned", cid[0],
              cid[1], cid[2], cid[3]);
    if (ok) { /* until it changes again (a rescan publishes its new id) */
      HashCacheKey *v = g_memdup2(&k, sizeof k);
      v->relpath = NULL;
      g_hash_table_insert(sv->refused, g_memdup2(cid, 32), v);
    }
    tree_free(t);
    return NULL;
  }
  g_hash_table_insert(sv->trees, t->cid, t);
  return t;
}

static void send_error(const uint8_t cid[32], uint8_t code, ServeSendFn send, void *ud)
{
  WireMsg m = {.type = MSG_XFER_ERROR};
  memcpy(m.u.xfer_error.cid, cid, 32);
  m.u.xfer_error.code = code;
  Buf b;
  buf_init(&b);
  if (wire_encode(&m, &b))
    send(b.data, b.len, ud);
  buf_free(&b);
}

static void send_tree(Server *sv, const WireMsg *req, ServeSendFn send, void *ud)
{
  Tree *t = tree_for(sv, req->u.get_tree.cid);
  if (!t) {
    send_error(req->u.get_tree.cid, XFER_NOT_FOUND, send, ud);
    return;
  }
  uint32_t first = req->u.get_tree.first;
  if (first >= t->n) {
    send_error(req->u.get_tree.cid, XFER_BAD_REQUEST, send, ud);
    return;
  }
  WireMsg m = {.type = MSG_TREE};
  memcpy(m.u.tree.cid, t->cid, 32);
  m.u.tree.size = t->size;
  m.u.tree.total = t->n;
  m.u.tree.first = first;
  m.u.tree.count = (uint16_t)MIN((uint32_t)req->u.get_tree.count, t->n - first);
  m.u.tree.hashes = t->leaves[first];
  Buf b;
  buf_init(&b);
  if (wire_encode(&m, &b))
    send(b.data, b.len, ud);
  buf_free(&b);
}

static void send_chunk(Server *sv, const WireMsg *req, ServeSendFn send, void *ud)
{
  const uint8_t *cid = req->u.get_chunk.cid;
  uint64_t size = 0;
  int fd = open_shared(sv, cid, &size, NULL, NULL);
  uint64_t n = size == 0 ? 1 : (size + CONTENT_CHUNK_SIZE - 1) / CONTENT_CHUNK_SIZE;
  if (fd < 0) {
    send_error(cid, XFER_NOT_FOUND, send, ud);
    return;
  }
  if (req->u.get_chunk.index >= n) {
    close(fd);
    send_error(cid, XFER_BAD_REQUEST, send, ud);
    return;
  }
  uint64_t off = (uint64_t)req->u.get_chunk.index * CONTENT_CHUNK_SIZE;
  size_t len = (size_t)MIN((uint64_t)CONTENT_CHUNK_SIZE, size - off);
  uint8_t *buf = g_malloc(MAX(len, 1));
  gboolean ok = read_full(fd, buf, len, off);
  close(fd);
  if (!ok) {
    g_free(buf);
    send_error(cid, XFER_NOT_FOUND, send, ud);
    return;
  }
  Buf b;
  buf_init(&b);
  size_t piece = 0;
  do {
    WireMsg m = {.type = MSG_CHUNK};
    memcpy(m.u.chunk.cid, cid, 32);
    m.u.chunk.index = req->u.get_chunk.index;
    m.u.chunk.offset = (uint32_t)piece;
    m.u.chunk.len = (uint16_t)MIN(len - piece, (size_t)WIRE_PIECE);
    m.u.chunk.data = buf + piece;
    buf_reset(&b);
    if (!wire_encode(&m, &b) || !send(b.data, b.len, ud))
      break;
    sv->bytes_sent += m.u.chunk.len;
    piece += m.u.chunk.len;
  } while (piece < len);
  if (piece == len)
    sv->chunks_sent++;
  buf_free(&b);
  g_free(buf);
}

void server_handle(Server *sv, const WireMsg *req, ServeSendFn send, void *ud)
{
  if (req->type == MSG_GET_TREE)
    send_tree(sv, req, send, ud);
  else if (req->type == MSG_GET_CHUNK)
    send_chunk(sv, req, send, ud);
}
