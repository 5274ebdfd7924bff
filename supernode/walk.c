/* walk.c - random walks over the mesh (walk.h). */
#include "walk.h"

#include <string.h>

bool walk_budget_take(WalkBudget *b, unsigned burst, uint64_t now)
{
  if (now >= b->window + 1000 || now < b->window) {
    b->window = now;
    b->count = 0;
  }
  if (b->count >= burst)
    return false;
  b->count++;
  return true;
}

static const uint8_t *path_id(const WireMsg *m, size_t i)
{
  return m->u.walk.path + i * WIRE_ID_LEN;
}

static bool on_path(const WireMsg *m, const uint8_t id[WIRE_ID_LEN])
{
  for (size_t i = 0; i < m->u.walk.path_len; i++)
    if (memcmp(path_id(m, i), id, WIRE_ID_LEN) == 0)
      return true;
  return false;
}

WalkStep walk_step(const WireMsg *m, const uint8_t self[WIRE_ID_LEN],
                   const uint8_t from[WIRE_ID_LEN])
{
  size_t n = m->u.walk.path_len;
  /* The sender appends itself: a path that does not end with it is made
   * up, and replies along it would go where the sender chose. Our own walk
   * coming back to us would end on ourselves: nothing to link to. */
  if (n == 0 || memcmp(path_id(m, n - 1), from, WIRE_ID_LEN) != 0 ||
      memcmp(path_id(m, 0), self, WIRE_ID_LEN) == 0)
    return WALK_BAD;
  if (m->u.walk.hops_left == 0 || n >= WIRE_MAX_WALK)
    return WALK_END;
  return WALK_FORWARD;
}

void walk_extend(const WireMsg *m, const uint8_t self[WIRE_ID_LEN], uint8_t *path_buf, WireMsg *out)
{
  size_t n = m->u.walk.path_len;
  memcpy(path_buf, m->u.walk.path, n * WIRE_ID_LEN);
  memcpy(path_buf + n * WIRE_ID_LEN, self, WIRE_ID_LEN);
  memset(out, 0, sizeof *out);
  out->type = MSG_WALK;
  out->u.walk.id = m->u.walk.id;
  out->u.walk.hops_left = (uint8_t)(m->u.walk.hops_left - 1);
  out->u.walk.path_len = (uint8_t)(n + 1);
  out->u.walk.path = path_buf;
}

static bool fits(const WireMsg *m, const uint8_t id[WIRE_ID_LEN], const uint8_t from[WIRE_ID_LEN],
                 int pass)
{
  if (pass == 0)
    return !on_path(m, id);
  return memcmp(id, from, WIRE_ID_LEN) != 0 && memcmp(id, path_id(m, 0), WIRE_ID_LEN) != 0;
}

size_t walk_pick(const WireMsg *m, const uint8_t (*ids)[WIRE_ID_LEN], size_t n,
                 const uint8_t from[WIRE_ID_LEN], uint32_t rnd)
{
  /* Two passes: off the path first (a walk that steps back mixes slower),
   * else anything but the sender and the origin (which would drop it). */
  for (int pass = 0; pass < 2; pass++) {
    size_t fit = 0;
    for (size_t i = 0; i < n; i++)
      fit += fits(m, ids[i], from, pass);
    if (fit == 0)
      continue;
    size_t k = rnd % fit;
    for (size_t i = 0; i < n; i++)
      if (fits(m, ids[i], from, pass) && k-- == 0)
        return i;
  }
  return n;
}

void walk_reply(const WireMsg *m, const WireHost *self_host, WireMsg *out)
{
  memset(out, 0, sizeof *out);
  out->type = MSG_WALK_REPLY;
  out->u.walk.id = m->u.walk.id;
  out->u.walk.path_len = m->u.walk.path_len;
  out->u.walk.path = m->u.walk.path;
  out->u.walk.end = *self_host;
}

WalkReplyStep walk_on_reply(const WireMsg *m, const uint8_t self[WIRE_ID_LEN], WireMsg *out,
                            const uint8_t **next)
{
  size_t n = m->u.walk.path_len;
  if (n == 0 || memcmp(path_id(m, n - 1), self, WIRE_ID_LEN) != 0)
    return WALK_REPLY_BAD;
  if (n == 1)
    return WALK_REPLY_ORIGIN;
  *out = *m;
  out->u.walk.path_len = (uint8_t)(n - 1);
  *next = path_id(m, n - 2);
  return WALK_REPLY_BACK;
}

void walk_ends_add(WalkEnds *e, const uint8_t origin[WIRE_ID_LEN], uint64_t now)
{
  WalkEnd *slot = &e->ends[e->next];
  e->next = (e->next + 1) % WALK_ENDS;
  memcpy(slot->id, origin, WIRE_ID_LEN);
  slot->until = now + WALK_END_MEMORY_MS;
}

bool walk_ends_take(WalkEnds *e, const uint8_t id[WIRE_ID_LEN], uint64_t now)
{
  for (size_t i = 0; i < WALK_ENDS; i++) {
    WalkEnd *w = &e->ends[i];
    if (w->until > now && memcmp(w->id, id, WIRE_ID_LEN) == 0) {
      w->until = 0;
      return true;
    }
  }
  return false;
}
