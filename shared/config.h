/* config.h - settings tables, --config files, state dirs and logging for
 * both daemons.
 *
 * Each daemon describes its settings in one static table of CfgDef (key,
 * type, range, default, reloadable, help). The table gives the command-line
 * options (--KEY) and the keys of the config file, a GKeyFile with one
 * [GROUP] section ("listen = 127.0.0.1:7400", "peer = a:1;b:2",
 * "no-discovery = true"). A value comes from the command line if given
 * there, else from the file, else from the table's default: a list given on
 * the command line replaces the file's list.
 *
 * Errors name the file, the line and the key, one line each:
 *   "supernode.conf:12: keepalive-ms: 50 is below the minimum 100"
 * GKeyFile keeps no line numbers, so the file's text is scanned here with
 * GKeyFile's syntax (# comments, [groups], key = value, ';' lists, the \s \n
 * \t \r \\ escapes); GKeyFile itself decodes the values.
 */
#ifndef CANOPY_CONFIG_H
#define CANOPY_CONFIG_H

#include <glib.h>
#include <json-glib/json-glib.h>

typedef enum {
  CFG_STRING,   /* text; min/max bound its length in bytes (max 0: any) */
  CFG_INT,      /* decimal integer in min..max */
  CFG_BOOL,     /* true/false (or 1/0); on the command line a flag (--KEY) */
  CFG_ENUM,     /* one of the '|'-separated words of choices */
  CFG_ADDR,     /* numeric IP address and port: 192.0.2.1:7400, [2001:db8::1]:7400 */
  CFG_HOSTPORT, /* host name or numeric IP address, and port */
  CFG_IP,       /* numeric IP address, no port */
  CFG_PATH,     /* a file or directory name, not empty */
} CfgType;

enum {
  CFG_LIST = 1 << 0,     /* ';'-separated in the file, repeated on the command line */
  CFG_RELOAD = 1 << 1,   /* SIGHUP applies a new value */
  CFG_OFF = 1 << 2,      /* CFG_ADDR: the word "off" is a value too */
  CFG_PORT_OPT = 1 << 3, /* CFG_ADDR: the port may be left out */
};

/* One setting. A table ends with an entry whose key is NULL. */
typedef struct {
  const char *key;     /* long option name without "--", and config key */
  CfgType type;        /* of the value, or of each item of a CFG_LIST */
  unsigned flags;      /* CFG_LIST, CFG_RELOAD, CFG_OFF, CFG_PORT_OPT */
  gint64 min, max;     /* CFG_INT: range; CFG_STRING: length in bytes */
  const char *def;     /* default as config-file text, or NULL: not set */
  const char *choices; /* CFG_ENUM: "error|warning|info|debug" */
  const char *arg;     /* --help's name of the argument: "HOST:PORT" */
  const char *help;    /* one line, without the range and default */
} CfgDef;

typedef enum { CFG_SRC_DEFAULT, CFG_SRC_FILE, CFG_SRC_CMDLINE } CfgSource;

typedef struct Cfg Cfg;

/* Settings of group (the file's section name) described by defs, which is
 * borrowed and must outlive the Cfg (a static table). All values start at
 * their defaults. */
Cfg *cfg_new(const char *group, const CfgDef *defs);
void cfg_free(Cfg *cfg);

/* A GOptionGroup with --KEY for every setting plus --config FILE,
 * --check-config FILE and --print-config, for
 * g_option_context_set_main_group (which takes it). Further options can be
 * added to it with g_option_context_add_main_entries. */
GOptionGroup *cfg_option_group(Cfg *cfg);

/* The daemons' command line:
 *   --check-config FILE  checks FILE, prints one line per error on stderr,
 *                        returns 0 if it is valid, else 1;
 *   --config FILE        is read before the other options are parsed (so
 *                        "--config FILE --help" fails on a bad file);
 *   --print-config       prints the effective settings as a config file on
 *                        stdout and returns 0.
 * Other errors are printed as "prog: error" and return 1. Returns -1 when
 * the daemon should run; *argc and *argv are left as g_option_context_parse
 * leaves them. */
int cfg_parse_args(Cfg *cfg, GOptionContext *oc, const char *prog, int *argc, char ***argv);

/* Reads path into the file layer ("cfg_load_data" for text in memory, named
 * name in the errors). On errors appends one message per error to errors
 * (g_free'd strings, "FILE:LINE: KEY: problem") and changes nothing. */
gboolean cfg_load(Cfg *cfg, const char *path, GPtrArray *errors);
gboolean cfg_load_data(Cfg *cfg, const char *name, const char *text, gsize len, GPtrArray *errors);

/* SIGHUP: re-reads the file given to --config. A file with errors is
 * refused: its errors are logged (g_warning), nothing changes and FALSE is
 * returned. Otherwise each changed value is logged (g_message,
 * "keepalive-ms: 5000 -> 2000"): a reloadable one takes its new value, any
 * other is logged as needing a restart and keeps its value. *changed tells
 * whether a reloadable value changed; the caller then applies them. A value
 * given on the command line stays. */
gboolean cfg_reload(Cfg *cfg, gboolean *changed);

/* Effective values. key must be in the table (anything else is a bug and
 * aborts). Strings and lists are borrowed: non-reloadable ones stay valid
 * until cfg_free; reloadable ones until the next cfg_reload. */
const char *cfg_get_str(const Cfg *cfg, const char *key); /* NULL: not set */
gint64 cfg_get_int(const Cfg *cfg, const char *key);
gboolean cfg_get_bool(const Cfg *cfg, const char *key);
const char *const *cfg_get_list(const Cfg *cfg, const char *key); /* NULL: not set */
CfgSource cfg_get_source(const Cfg *cfg, const char *key);
/* The --config file, or NULL. Borrowed. */
const char *cfg_file(const Cfg *cfg);

/* The effective settings as the text of a config file: every key, with its
 * help and where its value came from as comments. g_free it. */
char *cfg_print(const Cfg *cfg, const char *prog);

/* A new JSON object of the effective values (typed; keys as in the file),
 * only the reloadable ones if reloadable_only. */
JsonObject *cfg_to_json(const Cfg *cfg, gboolean reloadable_only);

/* Creates dir (0700, parents too) if missing; refuses anything that is not a
 * directory we can write. */
gboolean statedir_prepare(const char *dir, GError **error);

/* Log to stderr (or journald when stderr is the journal) at level
 * "error", "warning", "info" or "debug". Call again to change the level. */
gboolean log_setup(const char *level, GError **error);

#endif
