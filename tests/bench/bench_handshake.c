/* bench_handshake.c - CPU per handshake attempt, with and without the cookie step.
 *
 *   bench_handshake [N]
 *
 * Issue 11, finding 10: a responder spent about 150 µs of public-key work on
 * a 41-byte M1 that costs an attacker nothing. This measures, on one core,
 * with the real channel (thread CPU time, N attempts each):
 *   (a) the responder's CPU for an honest full handshake, no cookie step
 *   (b) the responder's CPU for an attacker's random M1, no cookie step
 *   (c) the responder's CPU for an attacker's random M1, cookie step engaged
 *   (d) an honest initiator's CPU for a whole handshake with the puzzle at the
 *       default difficulty, and the puzzle alone at each difficulty
 *   (e) the responder's CPU for an M1 that returns a solved cookie (the most
 *       an attacker can make it spend per solved puzzle)
 * and the ratio server/client under load: (e) over the puzzle's cost, the
 * least an attacker must spend to get (e) out of us. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "channel.h"
#include "cookie.h"
#include "identity.h"

static uint64_t fake_ms = 1000000;

static uint64_t fake_clock(void *ud)
{
  return fake_ms;
}

static double cpu_us(void)
{
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* Moves a's output into b; returns the bytes moved. */
static size_t move(Channel *a, Channel *b)
{
  size_t n;
  const uint8_t *p = channel_output(a, &n);
  if (n == 0)
    return 0;
  uint8_t *copy = malloc(n);
  memcpy(copy, p, n);
  channel_output_consume(a, n);
  channel_feed(b, copy, n);
  free(copy);
  return n;
}

static const uint8_t addr[4] = {198, 51, 100, 7};

static CookieJar *jar_with(unsigned pending, unsigned difficulty)
{
  CookieConfig cfg = {.max_pending = pending, .max_rate = 1000000000, .difficulty = difficulty};
  return cookie_jar_new(&cfg, fake_clock, NULL);
}

/* One handshake between i and r, timing each side's feeds. */
static void handshake(const Identity *id_i, const Identity *id_r, CookieJar *jar, double *t_i,
                      double *t_r)
{
  double t0 = cpu_us();
  Channel *i = channel_new(id_i, CHANNEL_INITIATOR);
  double t1 = cpu_us();
  Channel *r = channel_new(id_r, CHANNEL_RESPONDER);
  if (jar)
    channel_set_cookie_jar(r, jar, addr, sizeof addr);
  double t2 = cpu_us();
  *t_i += t1 - t0;
  *t_r += t2 - t1;
  /* Each feed runs the receiver's work. */
  for (;;) {
    double a = cpu_us();
    size_t n1 = move(i, r);
    double b = cpu_us();
    size_t n2 = move(r, i);
    double c = cpu_us();
    *t_r += b - a;
    *t_i += c - b;
    if (n1 == 0 && n2 == 0)
      break;
  }
  if (channel_state(i) != CHANNEL_OPEN || channel_state(r) != CHANNEL_OPEN) {
    fprintf(stderr, "handshake failed: %s / %s\n", channel_error(i), channel_error(r));
    exit(1);
  }
  double a = cpu_us();
  channel_free(r);
  *t_r += cpu_us() - a;
  channel_free(i);
}

/* The responder's CPU for one random M1 (accept, feed, answer, free). */
static double random_m1(const Identity *id_r, CookieJar *jar, int n)
{
  uint8_t m1[41];
  memcpy(m1,
         "\0\0\0\x25"
         "CNPY\x02",
         9);
  double sum = 0;
  for (int k = 0; k < n; k++) {
    randombytes_buf(m1 + 9, 32);
    double a = cpu_us();
    Channel *r = channel_new(id_r, CHANNEL_RESPONDER);
    if (jar)
      channel_set_cookie_jar(r, jar, addr, sizeof addr);
    channel_feed(r, m1, sizeof m1);
    size_t len;
    channel_output(r, &len);
    channel_output_consume(r, len);
    channel_free(r);
    sum += cpu_us() - a;
  }
  return sum / n;
}

/* The puzzle alone at difficulty d: mean CPU over n challenges. */
static double puzzle(unsigned d, int n)
{
  uint8_t chal[COOKIE_CHALLENGE_LEN], resp[COOKIE_RESPONSE_LEN];
  double sum = 0;
  for (int k = 0; k < n; k++) {
    randombytes_buf(chal, sizeof chal);
    chal[0] = (uint8_t)d;
    double a = cpu_us();
    cookie_solve(chal, resp);
    sum += cpu_us() - a;
  }
  return sum / n;
}

/* (e): n solved M1s made ahead (not timed), then fed to fresh responders. */
static double solved_m1(const Identity *id_i, const Identity *id_r, unsigned d, int n)
{
  CookieJar *jar = jar_with(0, d);
  uint8_t(*frames)[4 + 37 + COOKIE_RESPONSE_LEN] = malloc((size_t)n * sizeof *frames);
  for (int k = 0; k < n; k++) {
    Channel *i = channel_new(id_i, CHANNEL_INITIATOR);
    Channel *r = channel_new(id_r, CHANNEL_RESPONDER);
    channel_set_cookie_jar(r, jar, addr, sizeof addr);
    move(i, r);
    move(r, i); /* the challenge; i solves it */
    size_t len;
    const uint8_t *p = channel_output(i, &len);
    if (len != sizeof frames[k]) {
      fprintf(stderr, "unexpected M1 size %zu\n", len);
      exit(1);
    }
    memcpy(frames[k], p, len);
    channel_free(i);
    channel_free(r);
  }
  double sum = 0;
  for (int k = 0; k < n; k++) {
    double a = cpu_us();
    Channel *r = channel_new(id_r, CHANNEL_RESPONDER);
    channel_set_cookie_jar(r, jar, addr, sizeof addr);
    channel_feed(r, frames[k], sizeof frames[k]);
    size_t len;
    channel_output(r, &len);
    if (len == 0 || channel_state(r) != CHANNEL_HANDSHAKE) {
      fprintf(stderr, "solved M1 refused: %s\n", channel_error(r));
      exit(1);
    }
    channel_output_consume(r, len);
    channel_free(r);
    sum += cpu_us() - a;
  }
  free(frames);
  cookie_jar_free(jar);
  return sum / n;
}

int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 2000;
  Identity id_i, id_r;
  if (n < 10 || !crypto_ready() || !identity_generate(&id_i) || !identity_generate(&id_r))
    return 2;

  double ti = 0, tr = 0;
  for (int k = 0; k < n; k++)
    handshake(&id_i, &id_r, NULL, &ti, &tr);
  double a_r = tr / n, a_i = ti / n;

  double b = random_m1(&id_r, NULL, n);
  CookieJar *busy = jar_with(0, COOKIE_DEFAULT_DIFFICULTY);
  double c = random_m1(&id_r, busy, n);
  cookie_jar_free(busy);

  ti = tr = 0;
  busy = jar_with(0, COOKIE_DEFAULT_DIFFICULTY);
  for (int k = 0; k < n; k++)
    handshake(&id_i, &id_r, busy, &ti, &tr);
  cookie_jar_free(busy);
  double d_i = ti / n, d_r = tr / n;
  double e = solved_m1(&id_i, &id_r, COOKIE_DEFAULT_DIFFICULTY, n);

  printf("bench_handshake: %d attempts per figure, CPU time of one thread\n", n);
  printf("(a) honest handshake, no cookie step: responder %.1f us, initiator %.1f us\n", a_r, a_i);
  printf("(b) random M1, no cookie step:        responder %.1f us\n", b);
  printf("(c) random M1, cookie step engaged:   responder %.2f us (%.0fx less than (b))\n", c,
         b / c);
  printf("(d) honest handshake with the cookie step (puzzle %u bits): initiator %.1f us, "
         "responder %.1f us\n",
         COOKIE_DEFAULT_DIFFICULTY, d_i, d_r);
  printf("(e) M1 with a solved cookie:          responder %.1f us\n", e);
  printf("puzzle alone, and server/client under load = (e) / puzzle:\n");
  for (unsigned d = 0; d <= 16; d += 2) {
    int reps = d <= 10 ? n : n / 4 > 50 ? n / 4 : 50;
    double p = puzzle(d, reps);
    printf("  %2u bits: %9.1f us   ratio %6.2f%s\n", d, p, e / p,
           d == COOKIE_DEFAULT_DIFFICULTY ? "   <- default" : "");
  }
  identity_clear(&id_i);
  identity_clear(&id_r);
  return 0;
}
