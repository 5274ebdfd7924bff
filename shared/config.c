/* config.c - settings tables, config files, command line, reload; state
 * dir; log filter.
 *
 * A setting has three layers: the table's default, the --config file and
 * the command line; the effective value is the highest one set. The file is
 * scanned line by line here (GKeyFile has no line numbers) with GKeyFile's
 * rules: leading blanks ignored, "#" comments, "[group]" headers (blanks
 * allowed after the "]"), "key = value" split at the first "=", a trailing
 * "\r" dropped. Values are decoded by GKeyFile itself (escapes, ';' lists),
 * so a file that passes here also loads in GKeyFile; that is checked too.
 */
#include "config.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_MAX_FILE (1 << 20) /* a settings file is small; refuse anything else */
#define CFG_SHOW_MAX 60        /* characters of a value or line quoted in an error */

typedef struct {
  gboolean set;
  char *text;  /* scalar value, normalized ("true", "4", "127.0.0.1:7400") */
  char **list; /* CFG_LIST: the items */
  int line;    /* file layer: the line that set it */
} CfgVal;

struct Cfg {
  char *group;
  const CfgDef *defs;
  size_t n;
  char *file;       /* the --config file that was loaded */
  CfgVal *file_v;   /* file layer */
  CfgVal *cli_v;    /* command-line layer */
  CfgVal *eff;      /* effective values */
  CfgSource *src;   /* where each effective value came from */
  char **eff_where; /* "FILE:LINE" of each value from the file, else NULL */
  char *config_arg; /* GOption's --config, --check-config, --print-config */
  char *check_arg;
  gboolean print;
  GPtrArray *help; /* --help texts the option group points to */
};

/* --- values ------------------------------------------------------------------- */

static void val_clear(CfgVal *v)
{
  g_free(v->text);
  g_strfreev(v->list);
  memset(v, 0, sizeof *v);
}

static void val_copy(CfgVal *dst, const CfgVal *src)
{
  val_clear(dst);
  dst->set = src->set;
  dst->text = g_strdup(src->text);
  dst->list = g_strdupv(src->list);
  dst->line = src->line;
}

static gboolean val_equal(const CfgVal *a, const CfgVal *b)
{
  if (a->set != b->set)
    return FALSE;
  if (!a->set)
    return TRUE;
  if (a->list || b->list)
    return a->list && b->list &&
           g_strv_equal((const char *const *)a->list, (const char *const *)b->list);
  return g_strcmp0(a->text, b->text) == 0;
}

static void vals_free(CfgVal *v, size_t n)
{
  if (!v)
    return;
  for (size_t i = 0; i < n; i++)
    val_clear(&v[i]);
  g_free(v);
}

/* A value as a person reads it in a log line. g_free it. */
static char *val_show(const CfgVal *v)
{
  if (!v->set)
    return g_strdup("(not set)");
  if (v->list)
    return v->list[0] ? g_strjoinv(";", v->list) : g_strdup("(empty list)");
  return g_strdup(v->text);
}

/* s, cut short for an error message. g_free it. */
static char *shorten(const char *s)
{
  if (g_utf8_strlen(s, -1) <= CFG_SHOW_MAX)
    return g_strdup(s);
  char *head = g_utf8_substring(s, 0, CFG_SHOW_MAX - 3);
  char *out = g_strconcat(head, "...", NULL);
  g_free(head);
  return out;
}

/* "'VALUE'REST", the value cut short: the reason given for a bad value. */
static char *quoted(const char *value, const char *rest)
{
  char *shown = shorten(value);
  char *out = g_strdup_printf("'%s'%s", shown, rest);
  g_free(shown);
  return out;
}

/* --- checking one value ------------------------------------------------------- */

static gboolean hostname_ok(const char *h)
{
  size_t len = strlen(h);
  if (len == 0 || len > 253 || h[0] == '.' || h[0] == '-')
    return FALSE;
  for (const char *p = h; *p; p++)
    if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != '_')
      return FALSE;
  return TRUE;
}

static char *check_ip(const char *s, char **why)
{
  if (g_hostname_is_ip_address(s))
    return g_strdup(s);
  *why = quoted(s, " is not a numeric IP address");
  return NULL;
}

/* What s is not, for CFG_ADDR and CFG_HOSTPORT. g_free it. */
static char *not_an_address(const CfgDef *d, const char *s)
{
  gboolean numeric = d->type == CFG_ADDR;
  char *shown = shorten(s);
  char *why = g_strdup_printf("'%s' is not %s%s (like %s%s)", shown,
                              numeric ? "a numeric IP address" : "a host name or IP address",
                              (d->flags & CFG_PORT_OPT) ? " with an optional port" : " and port",
                              numeric ? "192.0.2.1:7400 or [2001:db8::1]:7400" : "example.org:7400",
                              (d->flags & CFG_OFF) ? ", or off" : "");
  g_free(shown);
  return why;
}

/* CFG_ADDR and CFG_HOSTPORT: "host:port", "[v6]:port"; with CFG_PORT_OPT
 * the port may be left out (and a bare IPv6 address is fine). */
static char *check_hostport(const CfgDef *d, const char *s, char **why)
{
  gboolean numeric = d->type == CFG_ADDR;
  gboolean port_opt = (d->flags & CFG_PORT_OPT) != 0;
  char *host = NULL, *out = NULL;
  const char *port = NULL;

  if ((d->flags & CFG_OFF) && strcmp(s, "off") == 0)
    return g_strdup(s);
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || (close[1] != '\0' && close[1] != ':'))
      goto bad;
    host = g_strndup(s + 1, (gsize)(close - s - 1));
    if (close[1] == ':')
      port = close + 2;
  } else {
    const char *colon = strchr(s, ':');
    if (colon && strchr(colon + 1, ':')) {
      /* More than one colon: an IPv6 address without brackets. */
      if (port_opt && g_hostname_is_ip_address(s))
        return g_strdup(s);
      *why = quoted(s, ": write an IPv6 address in brackets, like [2001:db8::1]:7400");
      return NULL;
    }
    host = colon ? g_strndup(s, (gsize)(colon - s)) : g_strdup(s);
    if (colon)
      port = colon + 1;
  }
  if (!g_hostname_is_ip_address(host) && (numeric || !hostname_ok(host)))
    goto bad;
  if (!port) {
    if (port_opt) {
      out = g_strdup(s);
      goto done;
    }
    char *shown = shorten(s);
    *why = g_strdup_printf("'%s' has no port (like %s%s%s:7400)", shown,
                           strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "");
    g_free(shown);
    goto done;
  }
  guint64 p = 0;
  if (!g_ascii_string_to_unsigned(port, 10, 1, 65535, &p, NULL)) {
    *why = quoted(s, ": the port is not a number from 1 to 65535");
    goto done;
  }
  out = g_strdup(s);
  goto done;
bad:
  *why = not_an_address(d, s);
done:
  g_free(host);
  return out;
}

static char *check_int(const CfgDef *d, const char *s, char **why)
{
  gint64 v = 0;
  char *end = NULL;
  errno = 0;
  if (*s && !g_ascii_isspace(*s))
    v = g_ascii_strtoll(s, &end, 10);
  /* Out of gint64's range (ERANGE) is out of the setting's range too. */
  if (!end || end == s || *end || (errno && errno != ERANGE)) {
    *why = quoted(s, " is not an integer");
    return NULL;
  }
  if (v < d->min || v > d->max) {
    char *shown = shorten(s);
    *why = g_strdup_printf("%s is %s %" G_GINT64_FORMAT, shown,
                           v < d->min ? "below the minimum" : "above the maximum",
                           v < d->min ? d->min : d->max);
    g_free(shown);
    return NULL;
  }
  return g_strdup_printf("%" G_GINT64_FORMAT, v);
}

static char *check_enum(const CfgDef *d, const char *s, char **why)
{
  char **words = g_strsplit(d->choices, "|", 0);
  char *out = NULL;
  for (char **w = words; *w; w++)
    if (strcmp(*w, s) == 0)
      out = g_strdup(s);
  if (!out) {
    char *all = g_strjoinv(", ", words);
    char *shown = shorten(s);
    *why = g_strdup_printf("'%s' is not one of %s", shown, all);
    g_free(shown);
    g_free(all);
  }
  g_strfreev(words);
  return out;
}

/* One value (one item of a list) of d: its normalized text, or NULL with
 * *why (g_free it) saying what is wrong. */
static char *check_value(const CfgDef *d, const char *s, char **why)
{
  *why = NULL;
  if (*s == '\0' && d->type != CFG_STRING) {
    *why = g_strdup("empty value");
    return NULL;
  }
  switch (d->type) {
  case CFG_STRING: {
    gint64 len = (gint64)strlen(s);
    if (d->max > 0 && len > d->max) {
      char *shown = shorten(s);
      *why = g_strdup_printf("'%s' is longer than %" G_GINT64_FORMAT " bytes", shown, d->max);
      g_free(shown);
      return NULL;
    }
    if (len < d->min) {
      *why = len == 0 ? g_strdup("empty value") : quoted(s, " is too short");
      return NULL;
    }
    return g_strdup(s);
  }
  case CFG_INT:
    return check_int(d, s, why);
  case CFG_BOOL:
    if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0)
      return g_strdup("true");
    if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0)
      return g_strdup("false");
    *why = quoted(s, " is not a boolean (true or false)");
    return NULL;
  case CFG_ENUM:
    return check_enum(d, s, why);
  case CFG_ADDR:
  case CFG_HOSTPORT:
    return check_hostport(d, s, why);
  case CFG_IP:
    return check_ip(s, why);
  case CFG_PATH:
    return g_strdup(s);
  }
  *why = g_strdup("unknown type"); /* not reached */
  return NULL;
}

/* Decodes raw, the text after "key =" in a file, with GKeyFile's rules and
 * checks it into *out. FALSE with *why (g_free it) when it is wrong; a list
 * may have several wrong items: each goes to whys. */
static gboolean decode_value(const CfgDef *d, const char *raw, CfgVal *out, GPtrArray *whys)
{
  GKeyFile *kf = g_key_file_new();
  GError *err = NULL;
  gboolean ok = TRUE;
  /* GKeyFile keeps trailing blanks; nothing here wants them ("\s" does). */
  char *trimmed = g_strchomp(g_strdup(raw));
  g_key_file_set_value(kf, "v", "v", trimmed);
  val_clear(out);
  if (d->flags & CFG_LIST) {
    gsize n = 0;
    char **items = g_key_file_get_string_list(kf, "v", "v", &n, &err);
    if (err) { /* GKeyFile may return the list and an error */
      g_strfreev(items);
      g_ptr_array_add(whys, quoted(trimmed, ": bad escape sequence (known: \\s \\n \\t \\r "
                                            "\\\\ \\;)"));
      ok = FALSE;
      goto out;
    }
    GPtrArray *norm = g_ptr_array_new();
    for (gsize i = 0; i < n; i++) {
      char *why = NULL;
      if (!*g_strstrip(items[i])) {
        g_ptr_array_add(whys, g_strdup("empty item in the list"));
        ok = FALSE;
        continue;
      }
      char *v = check_value(d, items[i], &why);
      if (!v) {
        g_ptr_array_add(whys, why);
        ok = FALSE;
        continue;
      }
      g_ptr_array_add(norm, v);
    }
    g_ptr_array_add(norm, NULL);
    g_strfreev(items);
    out->list = (char **)g_ptr_array_free(norm, FALSE);
  } else {
    char *s = g_key_file_get_string(kf, "v", "v", &err);
    if (err) { /* GKeyFile may return the string and an error */
      g_free(s);
      g_ptr_array_add(whys, quoted(trimmed, ": bad escape sequence (known: \\s \\n \\t \\r \\\\)"));
      ok = FALSE;
      goto out;
    }
    char *why = NULL;
    out->text = check_value(d, s, &why);
    g_free(s);
    if (!out->text) {
      g_ptr_array_add(whys, why);
      ok = FALSE;
    }
  }
  out->set = ok;
out:
  if (!ok)
    val_clear(out);
  g_clear_error(&err);
  g_free(trimmed);
  g_key_file_free(kf);
  return ok;
}

/* --- the table ---------------------------------------------------------------- */

static gssize def_index(const Cfg *cfg, const char *key)
{
  for (size_t i = 0; i < cfg->n; i++)
    if (strcmp(cfg->defs[i].key, key) == 0)
      return (gssize)i;
  return -1;
}

static size_t must_index(const Cfg *cfg, const char *key)
{
  gssize i = def_index(cfg, key);
  if (i < 0)
    g_error("setting '%s' is not in the [%s] table", key, cfg->group);
  return (size_t)i;
}

/* Edit distance with adjacent transpositions (optimal string alignment),
 * ignoring case: "shaer" is 1 from "share". */
static size_t edit_distance(const char *a, const char *b)
{
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64)
    return G_MAXSIZE;
  size_t d[65][65];
  for (size_t i = 0; i <= la; i++)
    d[i][0] = i;
  for (size_t j = 0; j <= lb; j++)
    d[0][j] = j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      size_t cost = g_ascii_tolower(a[i - 1]) != g_ascii_tolower(b[j - 1]);
      size_t v = MIN(MIN(d[i - 1][j] + 1, d[i][j - 1] + 1), d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && g_ascii_tolower(a[i - 1]) == g_ascii_tolower(b[j - 2]) &&
          g_ascii_tolower(a[i - 2]) == g_ascii_tolower(b[j - 1]))
        v = MIN(v, d[i - 2][j - 2] + 1);
      d[i][j] = v;
    }
  return d[la][lb];
}

/* The known key closest to an unknown one, if it is close enough to be
 * what was meant; else NULL. */
static const char *suggest(const Cfg *cfg, const char *key)
{
  const char *best = NULL;
  size_t best_d = G_MAXSIZE;
  const char *bare = key;
  while (*bare == '-') /* "--listen = ..." */
    bare++;
  for (size_t i = 0; i < cfg->n; i++) {
    size_t dist = edit_distance(bare, cfg->defs[i].key);
    if (dist < best_d) {
      best_d = dist;
      best = cfg->defs[i].key;
    }
  }
  size_t len = MAX(strlen(bare), best ? strlen(best) : 0);
  return best && best_d <= 2 && best_d * 3 <= len ? best : NULL;
}

/* --- reading a file ----------------------------------------------------------- */

static void add_error(GPtrArray *errors, const char *name, int line, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);

static void add_error(GPtrArray *errors, const char *name, int line, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  if (line > 0)
    g_ptr_array_add(errors, g_strdup_printf("%s:%d: %s", name, line, msg));
  else
    g_ptr_array_add(errors, g_strdup_printf("%s: %s", name, msg));
  g_free(msg);
}

static gboolean group_name_ok(const char *g)
{
  if (!*g)
    return FALSE;
  for (const char *p = g; *p; p++)
    if (*p == '[' || *p == ']' || g_ascii_iscntrl(*p))
      return FALSE;
  return TRUE;
}

/* Parses text into out[] (one CfgVal per def, all unset on entry); every
 * error goes to errors. TRUE if there was none. */
static gboolean parse_text(const Cfg *cfg, const char *name, const char *text, gsize len,
                           CfgVal *out, GPtrArray *errors)
{
  enum { NO_GROUP, OUR_GROUP, OTHER_GROUP } where = NO_GROUP;
  guint before = errors->len;
  int *seen = g_new0(int, cfg->n); /* line of each key's first setting */
  const char *p = text, *end = text + len;
  int lineno = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    gsize n = (gsize)(le - p);
    lineno++;
    if (n > 0 && p[n - 1] == '\r')
      n--;
    gboolean has_nul = memchr(p, '\0', n) != NULL;
    char *line = g_strndup(p, n);
    p = nl ? nl + 1 : end;
    if (has_nul || !g_utf8_validate(line, -1, NULL)) {
      add_error(errors, name, lineno, "%s", has_nul ? "contains a NUL byte" : "not valid UTF-8");
      g_free(line);
      continue;
    }
    char *s = line;
    while (g_ascii_isspace(*s))
      s++;
    if (*s == '\0' || *s == '#') {
      g_free(line);
      continue;
    }
    char *shown = shorten(s);
    if (*s == '[') {
      char *close = strchr(s, ']');
      char *after = close ? close + 1 : NULL;
      while (after && (*after == ' ' || *after == '\t'))
        after++;
      char *gname = close ? g_strndup(s + 1, (gsize)(close - s - 1)) : NULL;
      where = OTHER_GROUP; /* the keys under a broken header are skipped */
      if (!close)
        add_error(errors, name, lineno, "'%s': section header without a closing ']'", shown);
      else if (*after)
        add_error(errors, name, lineno, "'%s': text after the section header", shown);
      else if (!group_name_ok(gname))
        add_error(errors, name, lineno, "'%s': invalid section name", shown);
      else if (strcmp(gname, cfg->group) != 0)
        add_error(errors, name, lineno, "[%s]: unknown section (expected [%s])", gname, cfg->group);
      else
        where = OUR_GROUP;
      g_free(gname);
      goto next;
    }
    char *eq = strchr(s, '=');
    if (!eq) {
      add_error(errors, name, lineno, "'%s': not a key = value line, a [section] or a # comment",
                shown);
      goto next;
    }
    if (eq == s) {
      add_error(errors, name, lineno, "'%s': no key before the '='", shown);
      goto next;
    }
    *eq = '\0';
    const char *key = g_strchomp(s);
    const char *raw = eq + 1;
    while (g_ascii_isspace(*raw))
      raw++;
    if (where == NO_GROUP) {
      add_error(errors, name, lineno, "%s: outside any section ([%s] must come first)", key,
                cfg->group);
      goto next;
    }
    if (where == OTHER_GROUP)
      goto next;
    gssize i = def_index(cfg, key);
    if (i < 0) {
      const char *hint = suggest(cfg, key);
      if (hint)
        add_error(errors, name, lineno, "%s: unknown key (did you mean '%s'?)", key, hint);
      else
        add_error(errors, name, lineno, "%s: unknown key", key);
      goto next;
    }
    if (seen[i]) {
      add_error(errors, name, lineno, "%s: repeated (first set on line %d)", key, seen[i]);
      goto next;
    }
    seen[i] = lineno;
    GPtrArray *whys = g_ptr_array_new_with_free_func(g_free);
    if (decode_value(&cfg->defs[i], raw, &out[i], whys))
      out[i].line = lineno;
    for (guint k = 0; k < whys->len; k++)
      add_error(errors, name, lineno, "%s: %s", key, (char *)whys->pdata[k]);
    g_ptr_array_unref(whys);
  next:
    g_free(shown);
    g_free(line);
  }
  g_free(seen);
  if (errors->len == before) {
    /* Belt and braces: what passed here must load in GKeyFile too. */
    GKeyFile *kf = g_key_file_new();
    GError *err = NULL;
    if (!g_key_file_load_from_data(kf, text, len, G_KEY_FILE_NONE, &err)) {
      add_error(errors, name, 0, "%s", err->message);
      g_error_free(err);
    }
    g_key_file_free(kf);
  }
  return errors->len == before;
}

static gboolean read_text(const char *path, char **text, gsize *len, GPtrArray *errors)
{
  FILE *f = fopen(path, "rb");
  if (!f) {
    add_error(errors, path, 0, "cannot read: %s", g_strerror(errno));
    return FALSE;
  }
  GString *buf = g_string_new(NULL);
  char chunk[4096];
  size_t n;
  gboolean ok = TRUE;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    g_string_append_len(buf, chunk, (gssize)n);
    if (buf->len > CFG_MAX_FILE) {
      add_error(errors, path, 0, "larger than %d bytes: not a settings file", CFG_MAX_FILE);
      ok = FALSE;
      break;
    }
  }
  if (ok && ferror(f)) {
    add_error(errors, path, 0, "cannot read: %s", g_strerror(errno));
    ok = FALSE;
  }
  fclose(f);
  *len = buf->len;
  *text = g_string_free(buf, !ok);
  return ok;
}

/* Reads and checks path into a new file layer; NULL on errors. */
static CfgVal *read_layer(const Cfg *cfg, const char *name, const char *text, gsize len,
                          GPtrArray *errors)
{
  CfgVal *v = g_new0(CfgVal, cfg->n);
  if (!parse_text(cfg, name, text, len, v, errors)) {
    vals_free(v, cfg->n);
    return NULL;
  }
  return v;
}

/* The effective value of setting i over file layer fv. */
static void resolve_one(const Cfg *cfg, size_t i, const CfgVal *fv, CfgVal *out, CfgSource *src)
{
  const CfgDef *d = &cfg->defs[i];
  val_clear(out);
  if (cfg->cli_v[i].set) {
    val_copy(out, &cfg->cli_v[i]);
    *src = CFG_SRC_CMDLINE;
  } else if (fv && fv[i].set) {
    val_copy(out, &fv[i]);
    *src = CFG_SRC_FILE;
  } else {
    *src = CFG_SRC_DEFAULT;
    GPtrArray *whys = g_ptr_array_new_with_free_func(g_free);
    if (d->def && !decode_value(d, d->def, out, whys))
      g_error("default of %s: %s", d->key, (char *)whys->pdata[0]);
    g_ptr_array_unref(whys);
  }
}

static void resolve_all(Cfg *cfg)
{
  for (size_t i = 0; i < cfg->n; i++) {
    resolve_one(cfg, i, cfg->file_v, &cfg->eff[i], &cfg->src[i]);
    g_clear_pointer(&cfg->eff_where[i], g_free);
    if (cfg->src[i] == CFG_SRC_FILE)
      cfg->eff_where[i] = g_strdup_printf("%s:%d", cfg->file, cfg->eff[i].line);
  }
}

gboolean cfg_load_data(Cfg *cfg, const char *name, const char *text, gsize len, GPtrArray *errors)
{
  CfgVal *v = read_layer(cfg, name, text, len, errors);
  if (!v)
    return FALSE;
  vals_free(cfg->file_v, cfg->n);
  cfg->file_v = v;
  g_free(cfg->file);
  cfg->file = g_strdup(name);
  resolve_all(cfg);
  return TRUE;
}

gboolean cfg_load(Cfg *cfg, const char *path, GPtrArray *errors)
{
  char *text = NULL;
  gsize len = 0;
  if (!read_text(path, &text, &len, errors))
    return FALSE;
  gboolean ok = cfg_load_data(cfg, path, text, len, errors);
  g_free(text);
  return ok;
}

/* --- life cycle and access ---------------------------------------------------- */

Cfg *cfg_new(const char *group, const CfgDef *defs)
{
  Cfg *cfg = g_new0(Cfg, 1);
  cfg->group = g_strdup(group);
  cfg->defs = defs;
  while (defs[cfg->n].key)
    cfg->n++;
  cfg->cli_v = g_new0(CfgVal, cfg->n);
  cfg->eff = g_new0(CfgVal, cfg->n);
  cfg->src = g_new0(CfgSource, cfg->n);
  cfg->eff_where = g_new0(char *, cfg->n);
  cfg->help = g_ptr_array_new_with_free_func(g_free);
  resolve_all(cfg);
  return cfg;
}

void cfg_free(Cfg *cfg)
{
  if (!cfg)
    return;
  vals_free(cfg->file_v, cfg->n);
  vals_free(cfg->cli_v, cfg->n);
  vals_free(cfg->eff, cfg->n);
  g_free(cfg->src);
  for (size_t i = 0; i < cfg->n; i++) /* sparse: not a NULL-terminated vector */
    g_free(cfg->eff_where[i]);
  g_free(cfg->eff_where);
  g_ptr_array_unref(cfg->help);
  g_free(cfg->config_arg);
  g_free(cfg->check_arg);
  g_free(cfg->file);
  g_free(cfg->group);
  g_free(cfg);
}

const char *cfg_get_str(const Cfg *cfg, const char *key)
{
  const CfgVal *v = &cfg->eff[must_index(cfg, key)];
  return v->set ? v->text : NULL;
}

gint64 cfg_get_int(const Cfg *cfg, const char *key)
{
  const CfgVal *v = &cfg->eff[must_index(cfg, key)];
  return v->set && v->text ? g_ascii_strtoll(v->text, NULL, 10) : 0;
}

gboolean cfg_get_bool(const Cfg *cfg, const char *key)
{
  const CfgVal *v = &cfg->eff[must_index(cfg, key)];
  return v->set && g_strcmp0(v->text, "true") == 0;
}

const char *const *cfg_get_list(const Cfg *cfg, const char *key)
{
  const CfgVal *v = &cfg->eff[must_index(cfg, key)];
  return v->set ? (const char *const *)v->list : NULL;
}

CfgSource cfg_get_source(const Cfg *cfg, const char *key)
{
  return cfg->src[must_index(cfg, key)];
}

const char *cfg_file(const Cfg *cfg)
{
  return cfg->file;
}

/* --- command line ------------------------------------------------------------- */

/* " (1..64; default 4)" and the like; "" when there is nothing to say. For
 * a config file (for_file), also how to write a list and whether SIGHUP
 * applies the setting. g_free it. */
static char *describe(const CfgDef *d, gboolean for_file)
{
  GPtrArray *parts = g_ptr_array_new_with_free_func(g_free);
  if (d->type == CFG_INT)
    g_ptr_array_add(
        parts, d->max == G_MAXINT || d->max == G_MAXINT64
                   ? g_strdup_printf("at least %" G_GINT64_FORMAT, d->min)
                   : g_strdup_printf("%" G_GINT64_FORMAT "..%" G_GINT64_FORMAT, d->min, d->max));
  if (d->type == CFG_ENUM) {
    char **words = g_strsplit(d->choices, "|", 0);
    g_ptr_array_add(parts, g_strjoinv(", ", words));
    g_strfreev(words);
  }
  if (d->flags & CFG_LIST)
    g_ptr_array_add(parts, g_strdup(for_file ? "a list: separate items with ;" : "repeat"));
  if (d->def && d->type != CFG_BOOL)
    g_ptr_array_add(parts, g_strdup_printf("default %s", d->def));
  if (for_file && (d->flags & CFG_RELOAD))
    g_ptr_array_add(parts, g_strdup("SIGHUP reloads it"));
  g_ptr_array_add(parts, NULL);
  char *joined = g_strjoinv("; ", (char **)parts->pdata);
  char *out = *joined ? g_strdup_printf(" (%s)", joined) : g_strdup("");
  g_free(joined);
  g_ptr_array_unref(parts);
  return out;
}

/* help followed by extra (" (1..64; default 4)", taken), merged into one
 * pair of parentheses when help ends in its own. g_free it. */
static char *help_text(const char *help, char *extra)
{
  size_t n = strlen(help);
  char *out;
  if (*extra && n > 0 && help[n - 1] == ')')
    out = g_strdup_printf("%.*s; %s", (int)(n - 1), help, extra + 2); /* extra: " (...)" */
  else
    out = g_strconcat(help, extra, NULL);
  g_free(extra);
  return out;
}

static gboolean on_option(const gchar *name, const gchar *value, gpointer data, GError **error)
{
  Cfg *cfg = data;
  const char *key = name;
  while (*key == '-')
    key++;
  gssize i = def_index(cfg, key);
  if (i < 0) { /* not ours: cannot happen, the group has only our keys */
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION, "%s: unknown option", name);
    return FALSE;
  }
  const CfgDef *d = &cfg->defs[i];
  char *why = NULL;
  char *v = check_value(d, d->type == CFG_BOOL ? "true" : value, &why);
  if (!v) {
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "%s: %s", name, why);
    g_free(why);
    return FALSE;
  }
  CfgVal *cv = &cfg->cli_v[i];
  if (d->flags & CFG_LIST) {
    guint n = cv->list ? g_strv_length(cv->list) : 0;
    cv->list = g_renew(char *, cv->list, n + 2);
    cv->list[n] = v;
    cv->list[n + 1] = NULL;
  } else {
    g_free(cv->text);
    cv->text = v;
  }
  cv->set = TRUE;
  return TRUE;
}

GOptionGroup *cfg_option_group(Cfg *cfg)
{
  GOptionGroup *g = g_option_group_new(NULL, NULL, NULL, cfg, NULL);
  GArray *entries = g_array_new(TRUE, TRUE, sizeof(GOptionEntry));
  for (size_t i = 0; i < cfg->n; i++) {
    const CfgDef *d = &cfg->defs[i];
    char *help = help_text(d->help, describe(d, FALSE));
    g_ptr_array_add(cfg->help, help);
    GOptionEntry e = {d->key,
                      0,
                      d->type == CFG_BOOL   ? G_OPTION_FLAG_NO_ARG
                      : d->type == CFG_PATH ? G_OPTION_FLAG_FILENAME
                                            : 0,
                      G_OPTION_ARG_CALLBACK,
                      (gpointer)on_option,
                      help,
                      d->type == CFG_BOOL ? NULL : d->arg};
    g_array_append_val(entries, e);
  }
  char *config_help = g_strdup_printf("Settings file with a [%s] section", cfg->group);
  g_ptr_array_add(cfg->help, config_help);
  GOptionEntry more[] = {
      {"config", 0, 0, G_OPTION_ARG_FILENAME, &cfg->config_arg, config_help, "FILE"},
      {"check-config", 0, 0, G_OPTION_ARG_FILENAME, &cfg->check_arg,
       "Check a settings file, print each error and exit (0: valid, 1: errors)", "FILE"},
      {"print-config", 0, 0, G_OPTION_ARG_NONE, &cfg->print,
       "Print the effective settings as a settings file and exit", NULL}};
  g_array_append_vals(entries, more, G_N_ELEMENTS(more));
  g_option_group_add_entries(g, (GOptionEntry *)(void *)entries->data);
  g_array_unref(entries);
  return g;
}

/* The value of the last "--opt VALUE" or "--opt=VALUE" before any "--". */
static const char *find_arg(int argc, char **argv, const char *opt)
{
  const char *found = NULL;
  size_t n = strlen(opt);
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0)
      break;
    if (strcmp(argv[i], opt) == 0 && i + 1 < argc)
      found = argv[++i];
    else if (strncmp(argv[i], opt, n) == 0 && argv[i][n] == '=')
      found = argv[i] + n + 1;
  }
  return found;
}

int cfg_parse_args(Cfg *cfg, GOptionContext *oc, const char *prog, int *argc, char ***argv)
{
  GPtrArray *errors = g_ptr_array_new_with_free_func(g_free);
  GError *err = NULL;
  int rc = -1;
  const char *check = find_arg(*argc, *argv, "--check-config");
  if (check) {
    gboolean ok = cfg_load(cfg, check, errors);
    for (guint i = 0; i < errors->len; i++)
      fprintf(stderr, "%s\n", (char *)errors->pdata[i]);
    rc = ok ? 0 : 1;
    goto out;
  }
  /* The file first, so that a bad one fails even with --help. */
  const char *path = find_arg(*argc, *argv, "--config");
  if (path && !cfg_load(cfg, path, errors)) {
    for (guint i = 0; i < errors->len; i++)
      fprintf(stderr, "%s: %s\n", prog, (char *)errors->pdata[i]);
    rc = 1;
    goto out;
  }
  if (!g_option_context_parse(oc, argc, argv, &err)) {
    fprintf(stderr, "%s: %s\n", prog, err->message);
    rc = 1;
    goto out;
  }
  resolve_all(cfg);
  if (cfg->print) {
    char *text = cfg_print(cfg, prog);
    fputs(text, stdout);
    fflush(stdout);
    g_free(text);
    rc = 0;
  }
out:
  g_clear_error(&err);
  g_ptr_array_unref(errors);
  return rc;
}

/* --- --print-config ----------------------------------------------------------- */

/* v as the text after "key =" (GKeyFile escapes). g_free it. */
static char *val_as_file_text(const CfgVal *v)
{
  GKeyFile *kf = g_key_file_new();
  if (v->list) {
    gsize n = g_strv_length(v->list);
    g_key_file_set_string_list(kf, "v", "v", (const char *const *)v->list, n);
  } else {
    g_key_file_set_string(kf, "v", "v", v->text);
  }
  char *raw = g_key_file_get_value(kf, "v", "v", NULL);
  g_key_file_free(kf);
  size_t len = strlen(raw);
  /* A list ends in its separator; "a;b" reads the same and looks better. */
  if (v->list && len > 0 && raw[len - 1] == ';' && (len < 2 || raw[len - 2] != '\\'))
    raw[len - 1] = '\0';
  return raw;
}

char *cfg_print(const Cfg *cfg, const char *prog)
{
  GString *s = g_string_new(NULL);
  g_string_append_printf(s,
                         "# Effective settings of %s (--print-config): every key, with where\n"
                         "# its value came from. Check a file with %s --check-config FILE.\n"
                         "\n[%s]\n",
                         prog, prog, cfg->group);
  for (size_t i = 0; i < cfg->n; i++) {
    const CfgDef *d = &cfg->defs[i];
    const CfgVal *v = &cfg->eff[i];
    char *help = help_text(d->help, describe(d, TRUE));
    g_string_append_printf(s, "\n# %s\n", help);
    g_free(help);
    switch (cfg->src[i]) {
    case CFG_SRC_DEFAULT:
      g_string_append(s, v->set ? "# from: default\n" : "# from: not set\n");
      break;
    case CFG_SRC_FILE:
      g_string_append_printf(s, "# from: %s\n", cfg->eff_where[i]);
      break;
    case CFG_SRC_CMDLINE:
      g_string_append_printf(s, "# from: the command line (--%s)\n", d->key);
      break;
    }
    if (!v->set) {
      g_string_append_printf(s, "#%s =\n", d->key);
      continue;
    }
    char *text = val_as_file_text(v);
    g_string_append_printf(s, "%s =%s%s\n", d->key, *text ? " " : "", text);
    g_free(text);
  }
  return g_string_free(s, FALSE);
}

JsonObject *cfg_to_json(const Cfg *cfg, gboolean reloadable_only)
{
  JsonObject *o = json_object_new();
  for (size_t i = 0; i < cfg->n; i++) {
    const CfgDef *d = &cfg->defs[i];
    const CfgVal *v = &cfg->eff[i];
    if (reloadable_only && !(d->flags & CFG_RELOAD))
      continue;
    if (!v->set) {
      json_object_set_null_member(o, d->key);
    } else if (d->flags & CFG_LIST) {
      JsonArray *a = json_array_new();
      for (char **it = v->list; it && *it; it++)
        json_array_add_string_element(a, *it);
      json_object_set_array_member(o, d->key, a);
    } else if (d->type == CFG_INT) {
      json_object_set_int_member(o, d->key, g_ascii_strtoll(v->text, NULL, 10));
    } else if (d->type == CFG_BOOL) {
      json_object_set_boolean_member(o, d->key, strcmp(v->text, "true") == 0);
    } else {
      json_object_set_string_member(o, d->key, v->text);
    }
  }
  return o;
}

/* --- SIGHUP ------------------------------------------------------------------- */

gboolean cfg_reload(Cfg *cfg, gboolean *changed)
{
  *changed = FALSE;
  if (!cfg->file) {
    g_message("SIGHUP: started without --config, nothing to reload");
    return FALSE;
  }
  g_message("SIGHUP: reloading %s", cfg->file);
  GPtrArray *errors = g_ptr_array_new_with_free_func(g_free);
  char *text = NULL;
  gsize len = 0;
  CfgVal *fv = read_text(cfg->file, &text, &len, errors)
                   ? read_layer(cfg, cfg->file, text, len, errors)
                   : NULL;
  g_free(text);
  if (!fv) {
    for (guint i = 0; i < errors->len; i++)
      g_warning("%s", (char *)errors->pdata[i]);
    g_warning("SIGHUP: %s not reloaded (%u error%s), the settings are unchanged", cfg->file,
              errors->len, errors->len == 1 ? "" : "s");
    g_ptr_array_unref(errors);
    return FALSE;
  }
  g_ptr_array_unref(errors);
  guint noted = 0;
  for (size_t i = 0; i < cfg->n; i++) {
    const CfgDef *d = &cfg->defs[i];
    CfgVal nv = {0};
    CfgSource src;
    resolve_one(cfg, i, fv, &nv, &src);
    if (val_equal(&nv, &cfg->eff[i])) {
      CfgVal none = {0};
      if (cfg->cli_v[i].set && !val_equal(&fv[i], cfg->file_v ? &cfg->file_v[i] : &none)) {
        g_message("%s: given on the command line, which wins over the file", d->key);
        noted++;
      }
      if (src == CFG_SRC_FILE && cfg->src[i] == CFG_SRC_FILE) { /* it may have moved */
        g_free(cfg->eff_where[i]);
        cfg->eff_where[i] = g_strdup_printf("%s:%d", cfg->file, fv[i].line);
      }
      val_clear(&nv);
      continue;
    }
    char *was = val_show(&cfg->eff[i]), *now = val_show(&nv);
    noted++;
    if (d->flags & CFG_RELOAD) {
      g_message("%s: %s -> %s", d->key, was, now);
      val_clear(&cfg->eff[i]);
      cfg->eff[i] = nv;
      cfg->src[i] = src;
      g_clear_pointer(&cfg->eff_where[i], g_free);
      if (src == CFG_SRC_FILE)
        cfg->eff_where[i] = g_strdup_printf("%s:%d", cfg->file, nv.line);
      *changed = TRUE;
    } else {
      g_message("%s: %s -> %s needs a restart", d->key, was, now);
      val_clear(&nv);
    }
    g_free(was);
    g_free(now);
  }
  vals_free(cfg->file_v, cfg->n);
  cfg->file_v = fv;
  if (!noted)
    g_message("SIGHUP: nothing changed");
  return TRUE;
}

/* --- state dir ---------------------------------------------------------------- */

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

/* --- logging ------------------------------------------------------------------ */

/* Read by the writer from any thread that logs; changed by SIGHUP. */
static gint max_level = G_LOG_LEVEL_INFO;

static GLogWriterOutput log_writer(GLogLevelFlags level, const GLogField *fields, gsize n,
                                   gpointer ud)
{
  const char *domain = NULL;
  for (gsize i = 0; i < n; i++)
    if (strcmp(fields[i].key, "GLIB_DOMAIN") == 0)
      domain = fields[i].value;
  /* Lower numeric value = more severe. Debug output of libraries (GIO,
   * dconf) is noise for an operator: our own domains only. */
  if ((gint)(level & G_LOG_LEVEL_MASK) > g_atomic_int_get(&max_level))
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
  static gsize installed = 0;
  GLogLevelFlags max;
  if (!level || strcmp(level, "info") == 0)
    max = G_LOG_LEVEL_INFO;
  else if (strcmp(level, "debug") == 0)
    max = G_LOG_LEVEL_DEBUG;
  else if (strcmp(level, "warning") == 0)
    max = G_LOG_LEVEL_WARNING;
  else if (strcmp(level, "error") == 0)
    max = G_LOG_LEVEL_CRITICAL;
  else {
    g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                "unknown log level '%s' (error, warning, info, debug)", level);
    return FALSE;
  }
  g_atomic_int_set(&max_level, (gint)max);
  /* glib takes one writer per process: install it once. */
  if (g_once_init_enter(&installed)) {
    g_log_set_writer_func(log_writer, NULL, NULL);
    g_once_init_leave(&installed, 1);
  }
  return TRUE;
}
