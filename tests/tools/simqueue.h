/* simqueue.h - the event queue and RNG of the datagram-link simulators in
 * tests/unit/test_bulk.c and tests/bench/bench_bulk.c: a binary min-heap of
 * datagram deliveries ordered by (time, insertion order), so equal times keep
 * FIFO order and every run is deterministic, and splitmix64. */
#ifndef CANOPY_SIMQUEUE_H
#define CANOPY_SIMQUEUE_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
  uint64_t t_ns, seq;
  int to;
  size_t len;
  uint8_t *data;
} SimEv;

typedef struct {
  SimEv *v;
  size_t n, cap;
} SimQueue;

static inline uint64_t splitmix64(uint64_t *state)
{
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline int simq_less(const SimEv *a, const SimEv *b)
{
  return a->t_ns < b->t_ns || (a->t_ns == b->t_ns && a->seq < b->seq);
}

static inline void simq_push(SimQueue *q, SimEv e)
{
  if (q->n == q->cap) {
    q->cap = q->cap ? 2 * q->cap : 4096;
    q->v = realloc(q->v, q->cap * sizeof *q->v);
    if (!q->v)
      abort();
  }
  size_t i = q->n++;
  while (i && simq_less(&e, &q->v[(i - 1) / 2])) {
    q->v[i] = q->v[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  q->v[i] = e;
}

/* The earliest event; the queue must not be empty. */
static inline SimEv simq_pop(SimQueue *q)
{
  SimEv top = q->v[0], last = q->v[--q->n];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= q->n)
      break;
    if (c + 1 < q->n && simq_less(&q->v[c + 1], &q->v[c]))
      c++;
    if (!simq_less(&q->v[c], &last))
      break;
    q->v[i] = q->v[c];
    i = c;
  }
  if (q->n)
    q->v[i] = last;
  return top;
}

#endif
