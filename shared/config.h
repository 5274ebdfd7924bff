/* config.h - state dirs, --config files and logging setup for both daemons.
 *
 * A config file is a GKeyFile whose [GROUP] keys are the long option names
 * ("listen = 127.0.0.1:7400", "peer = a:1;b:2", "no-discovery = true"). The
 * file's settings are turned into options placed before the command line's,
 * so a flag given on the command line overrides the file.
 */
#ifndef CANOPY_CONFIG_H
#define CANOPY_CONFIG_H

#include <glib.h>

typedef enum { CFG_STRING, CFG_INT, CFG_FLAG, CFG_LIST } CfgType;

typedef struct {
  const char *key;
  CfgType type;
} CfgKey;

/* Creates dir (0700, parents too) if missing; refuses anything that is not a
 * directory we can write. */
gboolean statedir_prepare(const char *dir, GError **error);

/* Finds "--config FILE" / "--config=FILE" in argv; if present, reads [group]
 * from FILE and rewrites *argv with the file's options first. Unknown keys
 * and bad values are errors naming the file and key. The new argv is owned
 * by the caller (g_strfreev). */
gboolean config_merge_args(const char *group, const CfgKey *keys, int *argc, char ***argv,
                           GError **error);

/* Log to stderr (or journald when stderr is the journal) at level
 * "error", "warning", "info" or "debug". */
gboolean log_setup(const char *level, GError **error);

#endif
