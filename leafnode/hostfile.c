/* hostfile.c - reading and writing the host cache's file (hostfile.h). */
#include "hostfile.h"

#include <glib.h>
#include <glib/gstdio.h>

void hostfile_load(HostCache *h, const char *state_dir, uint64_t now)
{
  gchar *path = g_build_filename(state_dir, HOSTCACHE_FILE, NULL);
  gchar *text = NULL;
  gsize len = 0;
  GError *err = NULL;
  GStatBuf st;
  if (g_stat(path, &st) != 0) {
    g_free(path);
    return; /* first start */
  }
  if (st.st_size > HOSTCACHE_FILE_MAX) {
    g_warning("%s: larger than %d bytes: ignored", path, HOSTCACHE_FILE_MAX);
  } else if (!g_file_get_contents(path, &text, &len, &err)) {
    g_warning("%s: %s: ignored", path, err->message);
    g_error_free(err);
  } else {
    char why[200];
    if (hostcache_parse(h, text, len, now, why, sizeof why))
      g_info("%zu super node%s known (%s)", hostcache_size(h), hostcache_size(h) == 1 ? "" : "s",
             path);
    else
      g_warning("%s is corrupt (%s): ignored; it is rewritten at the next change", path, why);
  }
  g_free(text);
  g_free(path);
}

bool hostfile_save(HostCache *h, const char *state_dir)
{
  if (!hostcache_dirty(h))
    return true;
  gchar *path = g_build_filename(state_dir, HOSTCACHE_FILE, NULL);
  char *text = hostcache_format(h);
  GError *err = NULL;
  /* CONSISTENT: a temporary file in the same folder, fsynced, renamed over
   * the old one, so a crash leaves the old list or the new one. */
  bool ok = g_file_set_contents_full(path, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, &err);
  if (!ok) {
    g_warning("cannot write %s: %s", path, err->message);
    g_error_free(err);
  }
  g_free(text);
  g_free(path);
  return ok;
}
