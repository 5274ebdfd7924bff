/* network.c - certificate files and the network-key command (network.h). */
#include "network.h"

#include "clock.h"

#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>

#define CERT_HEX_LEN (NETCERT_LEN * 2)
#define DEFAULT_DAYS 90

static void show_date(uint64_t unix_s, char *out, size_t len)
{
  GDateTime *t = g_date_time_new_from_unix_utc((gint64)MIN(unix_s, (uint64_t)G_MAXINT64 / 2));
  gchar *s = t ? g_date_time_format(t, "%Y-%m-%d %H:%M UTC") : NULL;
  g_strlcpy(out, s ? s : "?", len);
  g_free(s);
  if (t)
    g_date_time_unref(t);
}

bool network_load_cert(const char *path, const uint8_t network_pk[IDENTITY_PK_LEN],
                       const uint8_t self_id[IDENTITY_ID_LEN], uint8_t cert[NETCERT_LEN], char *err,
                       size_t errlen)
{
  gchar *text = NULL;
  gsize len = 0;
  GError *e = NULL;
  if (!g_file_get_contents(path, &text, &len, &e)) {
    snprintf(err, errlen, "%s (create it with `canopy-supernode network-key certify`)", e->message);
    g_error_free(e);
    return false;
  }
  g_strstrip(text);
  bool ok = false;
  if (strlen(text) != CERT_HEX_LEN || !hex_decode(text, cert, NETCERT_LEN)) {
    snprintf(err, errlen, "%s: not a network certificate (%d hex digits)", path, CERT_HEX_LEN);
    goto out;
  }
  uint64_t now = clock_unix_s();
  NetcertResult r = netcert_check(cert, NETCERT_LEN, network_pk, self_id, now);
  if (r != NETCERT_OK) {
    char when[64] = "";
    if (r == NETCERT_EXPIRED) {
      show_date(netcert_not_after(cert, NETCERT_LEN), when, sizeof when);
      snprintf(err, errlen, "%s: this node is %s on %s", path, netcert_result_str(r), when);
    } else {
      snprintf(err, errlen, "%s: this node is %s", path, netcert_result_str(r));
    }
    goto out;
  }
  ok = true;
out:
  g_free(text);
  return ok;
}

/* --- the operator's command ------------------------------------------------------ */

/* Prints what is wrong (problem, then arg if any) and the usage; 2. */
static int usage(const char *problem, const char *arg)
{
  if (problem)
    fprintf(stderr, "canopy-supernode network-key: %s%s%s\n", problem, arg ? " " : "",
            arg ? arg : "");
  fprintf(
      stderr,
      "usage: canopy-supernode network-key new DIR\n"
      "       canopy-supernode network-key show DIR\n"
      "       canopy-supernode network-key certify DIR (--node-pk HEX | --node-state-dir SDIR)\n"
      "                                        [--days N] [--output FILE]\n"
      "\n"
      "A network key admits super nodes: one created with `new` (keep DIR offline,\n"
      "its identity.key is the network's secret), its public key given to every\n"
      "super node and leaf as --network-key, and a certificate from `certify` for\n"
      "each super node (its --network-cert, by default STATE_DIR/" NETWORK_CERT_FILE
      "). The node's\n"
      "public key is `public_key` in `canopy-supernode status --json`.\n");
  return 2;
}

static bool has_key(const char *dir)
{
  gchar *key = g_build_filename(dir, "identity.key", NULL);
  bool has = g_file_test(key, G_FILE_TEST_EXISTS);
  g_free(key);
  return has;
}

/* Loads the key pair in dir, which must exist already (identity.h would
 * create one); else prints missing, or why it cannot be read, and fails. */
static bool load_existing(const char *dir, Identity *out, const char *missing)
{
  char msg[256];
  if (has_key(dir) && identity_load_or_create(dir, out, msg, sizeof msg))
    return true;
  if (has_key(dir))
    fprintf(stderr, "canopy-supernode network-key: %s\n", msg);
  else
    fprintf(stderr, "canopy-supernode network-key: %s: %s\n", dir, missing);
  return false;
}

static int key_new_or_show(const char *dir, bool create)
{
  Identity net;
  char msg[256];
  if (create && has_key(dir)) {
    fprintf(stderr,
            "canopy-supernode network-key: %s already holds a network key (`show` prints it)\n",
            dir);
    return 1;
  }
  if (create ? !identity_load_or_create(dir, &net, msg, sizeof msg)
             : !load_existing(dir, &net, "no network key (`new` creates one)")) {
    if (create)
      fprintf(stderr, "canopy-supernode network-key: %s\n", msg);
    return 1;
  }
  char hex[IDENTITY_PK_LEN * 2 + 1];
  hex_encode(net.pk, IDENTITY_PK_LEN, hex);
  identity_clear(&net);
  printf("%s\n", hex);
  if (create)
    fprintf(stderr,
            "network key created in %s: keep it offline; give super nodes and leaves\n"
            "  --network-key %s\n",
            dir, hex);
  return 0;
}

static int certify(const char *dir, const char *node_pk_hex, const char *node_dir, gint64 days,
                   const char *output)
{
  uint8_t node_pk[IDENTITY_PK_LEN];
  if (!node_pk_hex == !node_dir)
    return usage("certify needs exactly one of --node-pk and --node-state-dir", NULL);
  if (days < 1 || days > 36500)
    return usage("--days must be 1..36500", NULL);
  if (node_pk_hex && !hex_decode(node_pk_hex, node_pk, sizeof node_pk))
    return usage("--node-pk is not 64 hex digits:", node_pk_hex);
  if (node_dir) {
    Identity node;
    if (!load_existing(node_dir, &node, "no node key (start the node once first)"))
      return 1;
    memcpy(node_pk, node.pk, sizeof node_pk);
    identity_clear(&node);
  }
  Identity net;
  if (!load_existing(dir, &net, "no network key (`new` creates one)"))
    return 1;
  uint64_t not_after = clock_unix_s() + (uint64_t)days * 86400;
  uint8_t cert[NETCERT_LEN];
  netcert_sign(&net, node_pk, not_after, cert);
  identity_clear(&net);
  char hex[CERT_HEX_LEN + 2];
  hex_encode(cert, NETCERT_LEN, hex);
  strcat(hex, "\n");
  char when[64];
  show_date(not_after, when, sizeof when);
  if (!output) {
    fputs(hex, stdout);
  } else {
    GError *e = NULL;
    if (!g_file_set_contents(output, hex, -1, &e)) {
      fprintf(stderr, "canopy-supernode network-key: %s\n", e->message);
      g_error_free(e);
      return 1;
    }
    g_chmod(output, 0644); /* public: it proves nothing without the node's key */
  }
  uint8_t id[IDENTITY_ID_LEN];
  char id_hex[IDENTITY_HEX_LEN];
  identity_id_of(node_pk, id);
  hex_encode(id, IDENTITY_ID_LEN, id_hex);
  fprintf(stderr, "certified node %.16s… until %s%s%s\n", id_hex, when, output ? " in " : "",
          output ? output : "");
  return 0;
}

int network_key_command(int argc, char **argv)
{
  if (argc < 3)
    return usage(argc < 2 ? NULL : "a directory is needed after", argc < 2 ? NULL : argv[1]);
  if (!crypto_ready()) {
    fprintf(stderr, "canopy-supernode network-key: libsodium failed to initialise\n");
    return 1;
  }
  const char *verb = argv[1];
  if (strcmp(verb, "new") == 0 && argc == 3)
    return key_new_or_show(argv[2], true);
  if (strcmp(verb, "show") == 0 && argc == 3)
    return key_new_or_show(argv[2], false);
  if (strcmp(verb, "certify") != 0)
    return usage("unknown or incomplete command:", verb);
  gchar *node_pk = NULL, *node_dir = NULL, *output = NULL;
  gint days = DEFAULT_DAYS;
  GOptionEntry entries[] = {
      {"node-pk", 0, 0, G_OPTION_ARG_STRING, &node_pk, "The super node's public key (hex)", "HEX"},
      {"node-state-dir", 0, 0, G_OPTION_ARG_FILENAME, &node_dir,
       "Read the public key from this node's state directory", "SDIR"},
      {"days", 0, 0, G_OPTION_ARG_INT, &days, "Valid for N days (default 90)", "N"},
      {"output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Write it to FILE (default: stdout)",
       "FILE"},
      {NULL}};
  GOptionContext *oc = g_option_context_new("DIR - certify a super node");
  g_option_context_add_main_entries(oc, entries, NULL);
  GError *e = NULL;
  int sub_argc = argc - 1; /* "certify" stands for the program name */
  char **sub_argv = argv + 1;
  int rc;
  if (!g_option_context_parse(oc, &sub_argc, &sub_argv, &e)) {
    rc = usage(e->message, NULL);
    g_error_free(e);
  } else if (sub_argc != 2) {
    rc = usage(sub_argc < 2 ? "certify needs the network key's directory" : "unexpected argument:",
               sub_argc < 2 ? NULL : sub_argv[2]);
  } else {
    rc = certify(sub_argv[1], node_pk, node_dir, days, output);
  }
  g_option_context_free(oc);
  g_free(node_pk);
  g_free(node_dir);
  g_free(output);
  return rc;
}
