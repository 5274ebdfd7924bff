/* fuzz_ice.c - libFuzzer target for the ICE descriptions (offers and
 * answers) a leaf receives from strangers through the signalling path
 * (nat/ice.h's format: m=, c=, a=ice-ufrag, a=ice-pwd, a=candidate lines).
 *
 * The checker must never crash, and what it accepts must be what the
 * format promises: printable ASCII lines, the credentials of the right
 * characters and lengths, present in the text as given; at most
 * CANDIDATE_MAX_REMOTE candidates kept; and every candidate line it keeps
 * must also be accepted by libnice's own parser, which is what reads them
 * afterwards (the differential check).
 */
#include <nice/agent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "candidate.h"
#include "ice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static NiceAgent *agent;
static guint stream;

static gboolean ice_chars(const char *s, size_t min, size_t max)
{
  size_t n = strlen(s);
  if (n < min || n > max)
    return FALSE;
  for (size_t i = 0; i < n; i++)
    if (!g_ascii_isalnum(s[i]) && s[i] != '+' && s[i] != '/')
      return FALSE;
  return TRUE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!agent) {
    agent = nice_agent_new(NULL, NICE_COMPATIBILITY_RFC5245);
    stream = nice_agent_add_stream(agent, 1);
    if (!agent || !stream)
      abort();
  }
  if (size > ICE_DESCRIPTION_MAX + 16)
    return 0;
  char *text = g_strndup((const char *)data, size); /* stops at a NUL, as a C string would */
  char *ufrag = NULL, *pwd = NULL, *kept = NULL;
  GError *err = NULL;
  gboolean ok = ice_description_parse(text, size & 1, &ufrag, &pwd, &kept, &err);
  if (!ok) {
    if (!err || !g_error_matches(err, G_IO_ERROR, G_IO_ERROR_INVALID_DATA))
      abort(); /* a refusal always says why */
    g_error_free(err);
    g_free(text);
    return 0;
  }
  if (err || !ufrag || !pwd || !kept || strlen(text) > ICE_DESCRIPTION_MAX)
    abort();
  if (!ice_chars(ufrag, 4, 256) || !ice_chars(pwd, 22, 256))
    abort();
  for (const char *p = text; *p; p++)
    if (*p != '\n' && (*p < 0x20 || *p > 0x7e))
      abort();
  char *uline = g_strconcat("a=ice-ufrag:", ufrag, NULL);
  char *pline = g_strconcat("a=ice-pwd:", pwd, NULL);
  char **lines = g_strsplit(kept, "\n", 0);
  gboolean saw_u = FALSE, saw_p = FALSE;
  int candidates = 0;
  for (char **l = lines; *l; l++) {
    saw_u |= strcmp(*l, uline) == 0;
    saw_p |= strcmp(*l, pline) == 0;
    if (g_str_has_prefix(*l, "a=candidate:")) {
      if (++candidates > CANDIDATE_MAX_REMOTE)
        abort();
      NiceCandidate *c = nice_agent_parse_remote_candidate_sdp(agent, stream, *l);
      if (!c)
        abort(); /* we accepted a line libnice cannot read */
      nice_candidate_free(c);
    }
  }
  if (!saw_u || !saw_p)
    abort();
  g_strfreev(lines);
  g_free(uline);
  g_free(pline);
  g_free(ufrag);
  g_free(pwd);
  g_free(kept);
  g_free(text);
  return 0;
}
