/* control_request.c - one control request line to a JSON object. */
#include "control_request.h"

#include <string.h>

JsonObject *control_request_parse(const char *line, size_t len, const char **why)
{
  *why = NULL;
  if (len > 0 && line[len - 1] == '\r')
    len--;
  if (len > CONTROL_MAX_LINE) {
    *why = "bad request: line too long";
    return NULL;
  }
  /* json-glib would stop at a NUL and take the rest on trust. */
  if (memchr(line, '\0', len) || !g_utf8_validate(line, (gssize)len, NULL)) {
    *why = "bad request: not UTF-8 text";
    return NULL;
  }
  JsonObject *obj = NULL;
  JsonParser *parser = json_parser_new_immutable();
  if (json_parser_load_from_data(parser, line, (gssize)len, NULL)) {
    JsonNode *root = json_parser_get_root(parser);
    if (root && JSON_NODE_HOLDS_OBJECT(root))
      obj = json_object_ref(json_node_get_object(root));
  }
  g_object_unref(parser);
  if (!obj)
    *why = "bad request: expected one JSON object";
  return obj;
}
