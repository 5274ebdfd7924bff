/* test_config.c - the table-driven settings: file syntax and line numbers,
 * every type's checks, precedence of the command line, --print-config read
 * back, SIGHUP reloads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib/gstdio.h>

#include "config.h"

static const CfgDef defs[] = {
    {.key = "listen", .type = CFG_ADDR, .arg = "HOST:PORT", .help = "Address"},
    {.key = "peer", .type = CFG_HOSTPORT, .flags = CFG_LIST, .arg = "HOST:PORT", .help = "Peers"},
    {.key = "stun",
     .type = CFG_ADDR,
     .flags = CFG_OFF | CFG_PORT_OPT,
     .arg = "HOST:PORT",
     .help = "STUN"},
    {.key = "ice", .type = CFG_IP, .flags = CFG_LIST, .arg = "IP", .help = "Local addresses"},
    {.key = "degree",
     .type = CFG_INT,
     .flags = CFG_RELOAD,
     .min = 1,
     .max = 64,
     .def = "4",
     .arg = "N",
     .help = "Links"},
    {.key = "discovery", .type = CFG_BOOL, .def = "false", .help = "Discover"},
    {.key = "level",
     .type = CFG_ENUM,
     .flags = CFG_RELOAD,
     .def = "info",
     .choices = "error|warning|info|debug",
     .arg = "LEVEL",
     .help = "Log level"},
    {.key = "share", .type = CFG_PATH, .arg = "DIR", .help = "Folder"},
    {.key = "name", .type = CFG_STRING, .max = 8, .arg = "NAME", .help = "Name"},
    {.key = NULL}};

/* --- helpers ------------------------------------------------------------------ */

/* Loads text named "t.conf"; returns its errors joined by newlines ("" if
 * none). g_free it. */
static char *load(Cfg *cfg, const char *text)
{
  GPtrArray *errors = g_ptr_array_new_with_free_func(g_free);
  gboolean ok = cfg_load_data(cfg, "t.conf", text, strlen(text), errors);
  assert_int_equal(ok, errors->len == 0);
  g_ptr_array_add(errors, NULL);
  char *out = g_strjoinv("\n", (char **)errors->pdata);
  g_ptr_array_unref(errors);
  return out;
}

static void expect_errors(const char *text, const char *want)
{
  Cfg *cfg = cfg_new("node", defs);
  char *got = load(cfg, text);
  assert_string_equal(got, want);
  g_free(got);
  cfg_free(cfg);
}

/* One value of key, in a [node] file: its error ("" when valid). */
static char *value_error(const char *key, const char *value)
{
  char *text = g_strdup_printf("[node]\n%s = %s\n", key, value);
  Cfg *cfg = cfg_new("node", defs);
  char *got = load(cfg, text);
  cfg_free(cfg);
  g_free(text);
  return got;
}

static void expect_valid(const char *key, const char *value)
{
  char *got = value_error(key, value);
  if (*got)
    fail_msg("%s = %s: %s", key, value, got);
  g_free(got);
}

static void expect_invalid(const char *key, const char *value, const char *want)
{
  char *got = value_error(key, value);
  char *full = g_strdup_printf("t.conf:2: %s: %s", key, want);
  assert_string_equal(got, full);
  g_free(full);
  g_free(got);
}

static char *write_tmp(const char *text)
{
  char *path = NULL;
  int fd = g_file_open_tmp("test_config-XXXXXX.conf", &path, NULL);
  assert_true(fd >= 0);
  close(fd);
  assert_true(g_file_set_contents(path, text, -1, NULL));
  return path;
}

/* Runs cfg_parse_args over a NULL-terminated argument list. */
static int parse(Cfg *cfg, const char *const *args)
{
  GPtrArray *v = g_ptr_array_new();
  g_ptr_array_add(v, "prog");
  for (; *args; args++)
    g_ptr_array_add(v, (char *)*args);
  int argc = (int)v->len;
  g_ptr_array_add(v, NULL);
  char **argv = (char **)v->pdata;
  GOptionContext *oc = g_option_context_new(NULL);
  g_option_context_set_main_group(oc, cfg_option_group(cfg));
  int rc = cfg_parse_args(cfg, oc, "prog", &argc, &argv);
  g_option_context_free(oc);
  g_ptr_array_free(v, TRUE);
  return rc;
}

/* Log lines, captured by a writer installed once for the whole run. */
static GPtrArray *logged;

static GLogWriterOutput capture(GLogLevelFlags level, const GLogField *fields, gsize n, gpointer ud)
{
  for (gsize i = 0; i < n; i++)
    if (strcmp(fields[i].key, "MESSAGE") == 0)
      g_ptr_array_add(logged, g_strdup(fields[i].value));
  return G_LOG_WRITER_HANDLED;
}

static gboolean was_logged(const char *line)
{
  for (guint i = 0; i < logged->len; i++)
    if (strcmp(logged->pdata[i], line) == 0)
      return TRUE;
  return FALSE;
}

/* --- defaults and values ------------------------------------------------------ */

static void test_defaults(void **state)
{
  (void)state;
  Cfg *cfg = cfg_new("node", defs);
  assert_int_equal(cfg_get_int(cfg, "degree"), 4);
  assert_false(cfg_get_bool(cfg, "discovery"));
  assert_string_equal(cfg_get_str(cfg, "level"), "info");
  assert_null(cfg_get_str(cfg, "listen"));
  assert_null(cfg_get_list(cfg, "peer"));
  assert_int_equal(cfg_get_source(cfg, "degree"), CFG_SRC_DEFAULT);
  assert_null(cfg_file(cfg));
  cfg_free(cfg);
  cfg_free(NULL);
}

static void test_good_file(void **state)
{
  (void)state;
  Cfg *cfg = cfg_new("node", defs);
  /* GKeyFile's liberties: indented comments, blanks after a header and
   * around "=", CRLF, escapes, a list ending in its separator. */
  char *errs = load(cfg, "  # comment\n"
                         "[node]  \r\n"
                         "listen=127.0.0.1:7400\r\n"
                         "peer = a.example:1 ; [2001:db8::1]:2;\n"
                         "degree = 64   \n"
                         "discovery = 1\n"
                         "share = /srv/my\\sfiles\n"
                         "name = \\sx\n"
                         "\n"
                         "# trailing comment");
  assert_string_equal(errs, "");
  g_free(errs);
  assert_string_equal(cfg_get_str(cfg, "listen"), "127.0.0.1:7400");
  const char *const *peers = cfg_get_list(cfg, "peer");
  assert_non_null(peers);
  assert_string_equal(peers[0], "a.example:1");
  assert_string_equal(peers[1], "[2001:db8::1]:2");
  assert_null(peers[2]);
  assert_int_equal(cfg_get_int(cfg, "degree"), 64);
  assert_true(cfg_get_bool(cfg, "discovery"));
  assert_string_equal(cfg_get_str(cfg, "share"), "/srv/my files");
  assert_string_equal(cfg_get_str(cfg, "name"), " x");
  assert_int_equal(cfg_get_source(cfg, "degree"), CFG_SRC_FILE);
  assert_int_equal(cfg_get_source(cfg, "level"), CFG_SRC_DEFAULT);
  assert_string_equal(cfg_file(cfg), "t.conf");
  cfg_free(cfg);
}

static void test_empty_list(void **state)
{
  (void)state;
  Cfg *cfg = cfg_new("node", defs);
  char *errs = load(cfg, "[node]\npeer =\n");
  assert_string_equal(errs, "");
  g_free(errs);
  const char *const *peers = cfg_get_list(cfg, "peer");
  assert_non_null(peers); /* set, and empty: no peers */
  assert_null(peers[0]);
  cfg_free(cfg);
}

/* --- syntax ------------------------------------------------------------------- */

static void test_every_error_with_its_line(void **state)
{
  (void)state;
  expect_errors("x = 1\n"
                "[nodes]\n"
                "whatever = 1\n"
                "[node\n"
                "degree = 1\n"
                "[node] x\n"
                "[]\n"
                "[node]\n"
                "junk\n"
                "= 3\n"
                "degre = 3\n"
                "frobnicate = 1\n"
                "degree = 0\n"
                "degree = 5\n"
                "; semicolon\n",
                "t.conf:1: x: outside any section ([node] must come first)\n"
                "t.conf:2: [nodes]: unknown section (expected [node])\n"
                "t.conf:4: '[node': section header without a closing ']'\n"
                "t.conf:6: '[node] x': text after the section header\n"
                "t.conf:7: '[]': invalid section name\n"
                "t.conf:9: 'junk': not a key = value line, a [section] or a # comment\n"
                "t.conf:10: '= 3': no key before the '='\n"
                "t.conf:11: degre: unknown key (did you mean 'degree'?)\n"
                "t.conf:12: frobnicate: unknown key\n"
                "t.conf:13: degree: 0 is below the minimum 1\n"
                "t.conf:14: degree: repeated (first set on line 13)\n"
                "t.conf:15: '; semicolon': not a key = value line, a [section] or a # comment");
}

static void test_repeated_section_merges(void **state)
{
  (void)state;
  /* GKeyFile merges a repeated group; a key set in both is still twice. */
  expect_errors("[node]\ndegree = 2\n[node]\nshare = /x\n", "");
  expect_errors("[node]\ndegree = 2\n[node]\ndegree = 3\n",
                "t.conf:4: degree: repeated (first set on line 2)");
}

static void test_encoding(void **state)
{
  (void)state;
  expect_errors("[node]\nname = caf\xe9\n", "t.conf:2: not valid UTF-8");
  expect_errors("[node]\nname = caf\xc3\xa9\n", "");
  static const char nul[] = "[node]\nname = a\0b\n";
  Cfg *cfg = cfg_new("node", defs);
  GPtrArray *errors = g_ptr_array_new_with_free_func(g_free);
  assert_false(cfg_load_data(cfg, "t.conf", nul, sizeof nul - 1, errors));
  assert_int_equal(errors->len, 1);
  assert_string_equal(errors->pdata[0], "t.conf:2: contains a NUL byte");
  g_ptr_array_unref(errors);
  cfg_free(cfg);
}

static void test_suggestions(void **state)
{
  (void)state;
  expect_errors("[node]\nsahre = /x\n", "t.conf:2: sahre: unknown key (did you mean 'share'?)");
  expect_errors("[node]\nLISTEN = 1.2.3.4:5\n",
                "t.conf:2: LISTEN: unknown key (did you mean 'listen'?)");
  expect_errors("[node]\n--degree = 3\n",
                "t.conf:2: --degree: unknown key (did you mean 'degree'?)");
  expect_errors("[node]\nxy = 3\n", "t.conf:2: xy: unknown key");
}

/* Every prefix of a file parses without crashing, with or without errors. */
static void test_prefix_sweep(void **state)
{
  (void)state;
  const char *text = "# c\n[node]\nlisten = [::1]:7400\npeer = a:1;b:2\\;\ndegree = 9\n[x\n";
  for (size_t n = 0; n <= strlen(text); n++) {
    Cfg *cfg = cfg_new("node", defs);
    GPtrArray *errors = g_ptr_array_new_with_free_func(g_free);
    cfg_load_data(cfg, "t.conf", text, n, errors);
    g_ptr_array_unref(errors);
    cfg_free(cfg);
  }
}

/* --- the types ---------------------------------------------------------------- */

static void test_int(void **state)
{
  (void)state;
  expect_valid("degree", "1");
  expect_valid("degree", "64");
  expect_valid("degree", "007");
  expect_invalid("degree", "0", "0 is below the minimum 1");
  expect_invalid("degree", "65", "65 is above the maximum 64");
  expect_invalid("degree", "-3", "-3 is below the minimum 1");
  expect_invalid("degree", "99999999999999999999", "99999999999999999999 is above the maximum 64");
  expect_invalid("degree", "four", "'four' is not an integer");
  expect_invalid("degree", "4x", "'4x' is not an integer");
  expect_invalid("degree", "0x10", "'0x10' is not an integer");
  expect_invalid("degree", "", "empty value");
}

static void test_bool_and_enum(void **state)
{
  (void)state;
  expect_valid("discovery", "true");
  expect_valid("discovery", "false");
  expect_valid("discovery", "0");
  expect_invalid("discovery", "yes", "'yes' is not a boolean (true or false)");
  expect_invalid("discovery", "True", "'True' is not a boolean (true or false)");
  expect_valid("level", "debug");
  expect_invalid("level", "verbose", "'verbose' is not one of error, warning, info, debug");
}

static void test_addresses(void **state)
{
  (void)state;
  expect_valid("listen", "0.0.0.0:7400");
  expect_valid("listen", "[2001:db8::1]:7400");
  expect_invalid("listen", "localhost:7400",
                 "'localhost:7400' is not a numeric IP address and port (like 192.0.2.1:7400 or "
                 "[2001:db8::1]:7400)");
  expect_invalid("listen", "127.0.0.1", "'127.0.0.1' has no port (like 127.0.0.1:7400)");
  expect_invalid("listen", "[::1]", "'[::1]' has no port (like [::1]:7400)");
  expect_invalid("listen", "127.0.0.1:0",
                 "'127.0.0.1:0': the port is not a number from 1 to 65535");
  expect_invalid("listen", "127.0.0.1:65536",
                 "'127.0.0.1:65536': the port is not a number from 1 to 65535");
  expect_invalid("listen", "2001:db8::1:7400",
                 "'2001:db8::1:7400': write an IPv6 address in brackets, like [2001:db8::1]:7400");
  expect_invalid("listen", "[::1]x",
                 "'[::1]x' is not a numeric IP address and port (like 192.0.2.1:7400 or "
                 "[2001:db8::1]:7400)");
  /* Host names are fine where the daemon resolves them. */
  expect_valid("peer", "seed.example.org:7400;192.0.2.1:1;[::1]:2");
  expect_invalid("peer", "a:1;;b:2", "empty item in the list");
  expect_invalid("peer", "bad host:1",
                 "'bad host:1' is not a host name or IP address and port (like example.org:7400)");
  /* "off", and a port that may be left out. */
  expect_valid("stun", "off");
  expect_valid("stun", "192.0.2.1");
  expect_valid("stun", "::1");
  expect_valid("stun", "[::1]:3479");
  expect_invalid("stun", "on",
                 "'on' is not a numeric IP address with an optional port (like 192.0.2.1:7400 "
                 "or [2001:db8::1]:7400, or off)");
  expect_valid("ice", "192.168.1.20;2001:db8::20");
  expect_invalid("ice", "192.168.1.20:5", "'192.168.1.20:5' is not a numeric IP address");
}

static void test_strings_and_paths(void **state)
{
  (void)state;
  expect_valid("name", "");
  expect_valid("name", "12345678");
  expect_invalid("name", "123456789", "'123456789' is longer than 8 bytes");
  expect_invalid("share", "", "empty value");
  expect_invalid("share", "C:\\x", "'C:\\x': bad escape sequence (known: \\s \\n \\t \\r \\\\)");
  /* A long bad value is cut short in the message. */
  char *got = value_error(
      "level", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
  assert_non_null(
      strstr(got, "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' is not"));
  g_free(got);
}

/* --- command line --------------------------------------------------------------- */

static void test_command_line_wins(void **state)
{
  (void)state;
  char *path = write_tmp("[node]\ndegree = 3\npeer = a:1;b:2\nlevel = debug\n");
  Cfg *cfg = cfg_new("node", defs);
  const char *args[] = {"--config", path,  "--degree",    "9",
                        "--peer",   "c:3", "--discovery", "--listen=127.0.0.1:1",
                        NULL};
  assert_int_equal(parse(cfg, args), -1);
  assert_int_equal(cfg_get_int(cfg, "degree"), 9);
  assert_int_equal(cfg_get_source(cfg, "degree"), CFG_SRC_CMDLINE);
  const char *const *peers = cfg_get_list(cfg, "peer"); /* replaces the file's list */
  assert_string_equal(peers[0], "c:3");
  assert_null(peers[1]);
  assert_true(cfg_get_bool(cfg, "discovery"));
  assert_string_equal(cfg_get_str(cfg, "level"), "debug");
  assert_int_equal(cfg_get_source(cfg, "level"), CFG_SRC_FILE);
  assert_string_equal(cfg_get_str(cfg, "listen"), "127.0.0.1:1");
  assert_string_equal(cfg_file(cfg), path);
  cfg_free(cfg);
  g_unlink(path);
  g_free(path);
}

static void test_command_line_errors(void **state)
{
  (void)state;
  Cfg *cfg = cfg_new("node", defs);
  const char *bad_value[] = {"--degree", "0", NULL};
  assert_int_equal(parse(cfg, bad_value), 1);
  cfg_free(cfg);
  cfg = cfg_new("node", defs);
  const char *bad_file[] = {"--config", "/nonexistent/x.conf", NULL};
  assert_int_equal(parse(cfg, bad_file), 1);
  cfg_free(cfg);
}

static void test_check_config(void **state)
{
  (void)state;
  char *good = write_tmp("[node]\ndegree = 3\n");
  char *bad = write_tmp("[node]\ndegree = 300\n");
  Cfg *cfg = cfg_new("node", defs);
  const char *a[] = {"--check-config", good, NULL};
  assert_int_equal(parse(cfg, a), 0);
  cfg_free(cfg);
  cfg = cfg_new("node", defs);
  const char *b[] = {"--check-config=/nonexistent", "--check-config", bad, NULL};
  assert_int_equal(parse(cfg, b), 1);
  cfg_free(cfg);
  g_unlink(good);
  g_unlink(bad);
  g_free(good);
  g_free(bad);
}

/* --- --print-config --------------------------------------------------------------- */

static void test_print_reads_back(void **state)
{
  (void)state;
  Cfg *cfg = cfg_new("node", defs);
  char *errs = load(cfg, "[node]\nlisten = [::1]:7400\npeer = a:1;b:2\nname = \\sx;y\\\\z\n"
                         "share = /a b\n");
  assert_string_equal(errs, "");
  g_free(errs);
  char *text = cfg_print(cfg, "prog");
  assert_non_null(strstr(text, "\n[node]\n"));
  assert_non_null(strstr(text, "# from: t.conf:2\nlisten = [::1]:7400\n"));
  assert_non_null(strstr(text, "# from: default\ndegree = 4\n"));
  assert_non_null(strstr(text, "# from: not set\n#stun =\n"));
  assert_non_null(strstr(text, "(1..64; default 4; SIGHUP reloads it)"));

  Cfg *back = cfg_new("node", defs);
  char *errs2 = load(back, text);
  assert_string_equal(errs2, "");
  g_free(errs2);
  for (const CfgDef *d = defs; d->key; d++) {
    if (d->flags & CFG_LIST) {
      const char *const *x = cfg_get_list(cfg, d->key), *const *y = cfg_get_list(back, d->key);
      assert_int_equal(x == NULL, y == NULL);
      if (x)
        assert_true(g_strv_equal(x, y));
    } else {
      assert_string_equal(cfg_get_str(cfg, d->key) ? cfg_get_str(cfg, d->key) : "(null)",
                          cfg_get_str(back, d->key) ? cfg_get_str(back, d->key) : "(null)");
    }
  }
  assert_string_equal(cfg_get_str(back, "name"), " x;y\\z");
  cfg_free(back);
  g_free(text);
  cfg_free(cfg);
}

static void test_json(void **state)
{
  (void)state;
  Cfg *cfg = cfg_new("node", defs);
  char *errs = load(cfg, "[node]\ndegree = 7\npeer = a:1\n");
  g_free(errs);
  JsonObject *all = cfg_to_json(cfg, FALSE);
  assert_int_equal(json_object_get_int_member(all, "degree"), 7);
  assert_false(json_object_get_boolean_member(all, "discovery"));
  assert_string_equal(json_object_get_string_member(all, "level"), "info");
  assert_int_equal(json_array_get_length(json_object_get_array_member(all, "peer")), 1);
  assert_true(json_object_get_null_member(all, "listen"));
  json_object_unref(all);
  JsonObject *reload = cfg_to_json(cfg, TRUE);
  assert_int_equal(json_object_get_size(reload), 2); /* degree, level */
  json_object_unref(reload);
  cfg_free(cfg);
}

/* --- SIGHUP -------------------------------------------------------------------------- */

static void test_reload(void **state)
{
  (void)state;
  char *path = write_tmp("[node]\nlisten = 127.0.0.1:1\ndegree = 4\nshare = /a\n");
  Cfg *cfg = cfg_new("node", defs);
  const char *args[] = {"--config", path, "--share", "/cmd", NULL};
  assert_int_equal(parse(cfg, args), -1);

  /* Reloadable: applied. Not reloadable: logged, kept. Command line: kept. */
  assert_true(g_file_set_contents(
      path, "[node]\nlisten = 127.0.0.1:2\ndegree = 6\nlevel = debug\nshare = /b\n", -1, NULL));
  g_ptr_array_set_size(logged, 0);
  gboolean changed = FALSE;
  assert_true(cfg_reload(cfg, &changed));
  assert_true(changed);
  assert_int_equal(cfg_get_int(cfg, "degree"), 6);
  assert_string_equal(cfg_get_str(cfg, "level"), "debug");
  assert_string_equal(cfg_get_str(cfg, "listen"), "127.0.0.1:1");
  assert_string_equal(cfg_get_str(cfg, "share"), "/cmd");
  assert_true(was_logged("degree: 4 -> 6"));
  assert_true(was_logged("level: info -> debug"));
  assert_true(was_logged("listen: 127.0.0.1:1 -> 127.0.0.1:2 needs a restart"));
  assert_true(was_logged("share: given on the command line, which wins over the file"));

  /* A bad file: refused, each error logged, nothing changed. */
  assert_true(g_file_set_contents(path, "[node]\ndegree = 65\nfoo = 1\nlevel = info\n", -1, NULL));
  g_ptr_array_set_size(logged, 0);
  assert_false(cfg_reload(cfg, &changed));
  assert_false(changed);
  assert_int_equal(cfg_get_int(cfg, "degree"), 6);
  assert_string_equal(cfg_get_str(cfg, "level"), "debug");
  char *want = g_strdup_printf("%s:2: degree: 65 is above the maximum 64", path);
  assert_true(was_logged(want));
  g_free(want);
  want = g_strdup_printf("%s:3: foo: unknown key", path);
  assert_true(was_logged(want));
  g_free(want);

  /* A key removed from the file goes back to its default. */
  assert_true(g_file_set_contents(path, "[node]\nlisten = 127.0.0.1:1\n", -1, NULL));
  g_ptr_array_set_size(logged, 0);
  assert_true(cfg_reload(cfg, &changed));
  assert_true(changed);
  assert_int_equal(cfg_get_int(cfg, "degree"), 4);
  assert_int_equal(cfg_get_source(cfg, "degree"), CFG_SRC_DEFAULT);
  assert_true(was_logged("degree: 6 -> 4"));

  /* The same file again: nothing changes. */
  g_ptr_array_set_size(logged, 0);
  assert_true(cfg_reload(cfg, &changed));
  assert_false(changed);
  assert_true(was_logged("SIGHUP: nothing changed"));

  cfg_free(cfg);
  g_unlink(path);
  g_free(path);

  /* Without --config there is nothing to reload. */
  cfg = cfg_new("node", defs);
  assert_false(cfg_reload(cfg, &changed));
  cfg_free(cfg);
}

int main(void)
{
  logged = g_ptr_array_new_with_free_func(g_free);
  g_log_set_writer_func(capture, NULL, NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_good_file),
      cmocka_unit_test(test_empty_list),
      cmocka_unit_test(test_every_error_with_its_line),
      cmocka_unit_test(test_repeated_section_merges),
      cmocka_unit_test(test_encoding),
      cmocka_unit_test(test_suggestions),
      cmocka_unit_test(test_prefix_sweep),
      cmocka_unit_test(test_int),
      cmocka_unit_test(test_bool_and_enum),
      cmocka_unit_test(test_addresses),
      cmocka_unit_test(test_strings_and_paths),
      cmocka_unit_test(test_command_line_wins),
      cmocka_unit_test(test_command_line_errors),
      cmocka_unit_test(test_check_config),
      cmocka_unit_test(test_print_reads_back),
      cmocka_unit_test(test_json),
      cmocka_unit_test(test_reload),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  g_ptr_array_unref(logged);
  return rc;
}
