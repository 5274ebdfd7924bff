/* config.c - state dir, config file merge, log filter. */
#include "config.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

gboolean statedir_prepare(const char *dir, GError **error)
{
  if (g_mkdir_with_parents(dir, 0700) != 0) {
    g_set_error(error, G_FILE_ERROR, g_file_error_from_errno(errno),
                "cannot create state dir %s: %s", dir, g_strerror(errno));
    return FALSE;
  }
  GStatBuf st;
  if (g_stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK | X_OK) != 0) {
    g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_NOTDIR,
                "state dir %s is not a writable directory", dir);
    return FALSE;
  }
  return TRUE;
}

static const CfgKey *find_key(const CfgKey *keys, const char *name)
{
  for (; keys->key; keys++)
    if (strcmp(keys->key, name) == 0)
      return keys;
  return NULL;
}

static const char *config_path(int argc, char **argv)
{
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0)
      break;
    if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
      return argv[i + 1];
    if (g_str_has_prefix(argv[i], "--config="))
      return argv[i] + strlen("--config=");
  }
  return NULL;
}

gboolean config_merge_args(const char *group, const CfgKey *keys, int *argc, char ***argv,
                           GError **error)
{
  const char *path = config_path(*argc, *argv);
  GPtrArray *out = g_ptr_array_new();
  g_ptr_array_add(out, g_strdup((*argv)[0]));
  GKeyFile *kf = g_key_file_new();
  gboolean ok = TRUE;
  if (path) {
    GError *err = NULL;
    if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &err)) {
      g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE, "%s: %s", path, err->message);
      g_error_free(err);
      ok = FALSE;
      goto out;
    }
    gchar **groups = g_key_file_get_groups(kf, NULL);
    for (gchar **g = groups; *g; g++)
      if (strcmp(*g, group) != 0) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_GROUP_NOT_FOUND,
                    "%s: unknown section [%s] (expected [%s])", path, *g, group);
        ok = FALSE;
      }
    g_strfreev(groups);
    if (!ok)
      goto out;
    gchar **names = g_key_file_get_keys(kf, group, NULL, NULL);
    for (gchar **k = names; names && *k; k++) {
      const CfgKey *def = find_key(keys, *k);
      if (!def) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_KEY_NOT_FOUND,
                    "%s: [%s] %s: unknown key", path, group, *k);
        ok = FALSE;
        break;
      }
      GError *verr = NULL;
      if (def->type == CFG_FLAG) {
        if (g_key_file_get_boolean(kf, group, *k, &verr))
          g_ptr_array_add(out, g_strdup_printf("--%s", *k));
      } else if (def->type == CFG_LIST) {
        gchar **vals = g_key_file_get_string_list(kf, group, *k, NULL, &verr);
        for (gchar **v = vals; vals && *v; v++)
          g_ptr_array_add(out, g_strdup_printf("--%s=%s", *k, g_strstrip(*v)));
        g_strfreev(vals);
      } else if (def->type == CFG_INT) {
        gint64 v = g_key_file_get_int64(kf, group, *k, &verr);
        if (!verr)
          g_ptr_array_add(out, g_strdup_printf("--%s=%" G_GINT64_FORMAT, *k, v));
      } else {
        gchar *v = g_key_file_get_string(kf, group, *k, &verr);
        if (v)
          g_ptr_array_add(out, g_strdup_printf("--%s=%s", *k, v));
        g_free(v);
      }
      if (verr) {
        g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, "%s: [%s] %s: %s",
                    path, group, *k, verr->message);
        g_error_free(verr);
        ok = FALSE;
        break;
      }
    }
    g_strfreev(names);
  }
out:
  g_key_file_free(kf);
  if (!ok) {
    g_ptr_array_free(out, TRUE);
    return FALSE;
  }
  for (int i = 1; i < *argc; i++)
    g_ptr_array_add(out, g_strdup((*argv)[i]));
  g_ptr_array_add(out, NULL);
  *argc = (int)out->len - 1;
  *argv = (char **)g_ptr_array_free(out, FALSE);
  return TRUE;
}

static GLogLevelFlags max_level = G_LOG_LEVEL_INFO;

static GLogWriterOutput log_writer(GLogLevelFlags level, const GLogField *fields, gsize n,
                                   gpointer ud)
{
  const char *domain = NULL;
  for (gsize i = 0; i < n; i++)
    if (strcmp(fields[i].key, "GLIB_DOMAIN") == 0)
      domain = fields[i].value;
  /* Lower numeric value = more severe. Debug output of libraries (GIO,
   * dconf) is noise for an operator: our own domains only. */
  if ((level & G_LOG_LEVEL_MASK) > max_level)
    return G_LOG_WRITER_HANDLED;
  if ((level & G_LOG_LEVEL_DEBUG) &&
      (!domain || !(strcmp(domain, "supernode") == 0 || strcmp(domain, "leaf") == 0 ||
                    strcmp(domain, "canopy") == 0 || strcmp(domain, "nat") == 0)))
    return G_LOG_WRITER_HANDLED;
  if (g_log_writer_is_journald(fileno(stderr)) &&
      g_log_writer_journald(level, fields, n, ud) == G_LOG_WRITER_HANDLED)
    return G_LOG_WRITER_HANDLED;
  const char *msg = "";
  for (gsize i = 0; i < n; i++)
    if (strcmp(fields[i].key, "MESSAGE") == 0)
      msg = fields[i].value;
  const char *lvl = level & G_LOG_LEVEL_ERROR      ? "error"
                    : level & G_LOG_LEVEL_CRITICAL ? "critical"
                    : level & G_LOG_LEVEL_WARNING  ? "warning"
                    : level & G_LOG_LEVEL_MESSAGE  ? "notice"
                    : level & G_LOG_LEVEL_INFO     ? "info"
                                                   : "debug";
  fprintf(stderr, "%s%s%s: %s\n", domain ? domain : "", domain ? " " : "", lvl, msg);
  return G_LOG_WRITER_HANDLED;
}

gboolean log_setup(const char *level, GError **error)
{
  if (!level || strcmp(level, "info") == 0)
    max_level = G_LOG_LEVEL_INFO;
  else if (strcmp(level, "debug") == 0)
    max_level = G_LOG_LEVEL_DEBUG;
  else if (strcmp(level, "warning") == 0)
    max_level = G_LOG_LEVEL_WARNING;
  else if (strcmp(level, "error") == 0)
    max_level = G_LOG_LEVEL_CRITICAL;
  else {
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                "unknown log level '%s' (error, warning, info, debug)", level);
    return FALSE;
  }
  g_log_set_writer_func(log_writer, NULL, NULL);
  return TRUE;
}
