/* fuzz_control.c - libFuzzer target for control requests
 * (shared/control_request.h): the bytes of one request line, as a local
 * client sends them.
 *
 * The parser must never crash, must refuse what is over CONTROL_MAX_LINE,
 * not UTF-8 or holds a NUL, and what it accepts must round-trip: the
 * object written back as JSON parses again to an equal object.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  const char *why = NULL;
  JsonObject *o = control_request_parse((const char *)data, size, &why);
  if (!o) {
    if (!why)
      abort(); /* a refusal always says why */
    return 0;
  }
  size_t len = size && data[size - 1] == '\r' ? size - 1 : size;
  if (why || len > CONTROL_MAX_LINE || memchr(data, '\0', size) ||
      !g_utf8_validate((const char *)data, (gssize)len, NULL))
    abort();
  JsonNode *node = json_node_new(JSON_NODE_OBJECT);
  json_node_set_object(node, o);
  gchar *text = json_to_string(node, FALSE);
  JsonObject *again = control_request_parse(text, strlen(text), &why);
  /* Written back, it may be longer (escapes), so only when it fits. */
  if (strlen(text) <= CONTROL_MAX_LINE) {
    if (!again)
      abort();
    JsonNode *n2 = json_node_new(JSON_NODE_OBJECT);
    json_node_set_object(n2, again);
    if (!json_node_equal(node, n2))
      abort();
    json_node_unref(n2);
  }
  if (again)
    json_object_unref(again);
  g_free(text);
  json_node_unref(node);
  json_object_unref(o);
  return 0;
}
