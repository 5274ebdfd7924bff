/* swarmnames.c - realistic file names from (leaf, entry), see swarmnames.h. */
#include "swarmnames.h"

#include <stdio.h>
#include <string.h>

static const char *const WORDS[] = {
    "abbey",    "road",     "summer",   "night",    "river",    "blue",     "garden",   "silver",
    "morning",  "light",    "ocean",    "city",     "dream",    "fire",     "winter",   "forest",
    "golden",   "heart",    "shadow",   "storm",    "island",   "velvet",   "echo",     "desert",
    "harbor",   "midnight", "crystal",  "thunder",  "valley",   "empire",   "orchard",  "lantern",
    "mirror",   "paper",    "rain",     "stone",    "highway",  "northern", "southern", "broken",
    "wild",     "quiet",    "electric", "distant",  "hidden",   "lost",     "young",    "ancient",
    "spring",   "autumn",   "station",  "bridge",   "castle",   "meadow",   "canyon",   "harvest",
    "signal",   "engine",   "rocket",   "planet",   "comet",    "galaxy",   "tiger",    "falcon",
    "wolf",     "raven",    "horse",    "dragon",   "fox",      "owl",      "bear",     "salmon",
    "budget",   "report",   "minutes",  "invoice",  "thesis",   "chapter",  "draft",    "notes",
    "lecture",  "physics",  "history",  "grammar",  "recipe",   "kitchen",  "travel",   "guide",
    "wedding",  "birthday", "holiday",  "concert",  "festival", "vacation", "family",   "project",
    "network",  "protocol", "kernel",   "compiler", "database", "server",   "garden",   "window",
    "mountain", "lake",     "sunrise",  "sunset",   "harbour",  "village",  "market",   "street",
    "paris",    "berlin",   "lisbon",   "kyoto",    "oslo",     "vienna",   "prague",   "dublin",
    "madrid",   "boston",   "seattle",  "denver",   "austin",   "nairobi",  "lima",     "quito",
};
#define NWORDS (sizeof WORDS / sizeof WORDS[0])

/* splitmix64: a tiny, good mixer; the names need spread, not secrecy. */
static uint64_t mix(uint64_t *s)
{
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static const char *word(uint64_t *s)
{
  return WORDS[mix(s) % NWORDS];
}

static unsigned pick(uint64_t *s, unsigned n)
{
  return (unsigned)(mix(s) % n);
}

/* Copies w with its first letter upper-cased into a static-free buffer. */
static void cap_word(const char *w, char *out, size_t cap)
{
  snprintf(out, cap, "%s", w);
  if (out[0] >= 'a' && out[0] <= 'z')
    out[0] = (char)(out[0] - 'a' + 'A');
}

size_t swarmname_make(uint64_t leaf, uint64_t k, char *name, size_t cap, char *query, size_t qcap)
{
  uint64_t s = leaf * 0x100000001b3ULL ^ (k + 1) * 0xcbf29ce484222325ULL;
  char a[16], b[16], c[16], d[16], e[16];
  cap_word(word(&s), a, sizeof a);
  cap_word(word(&s), b, sizeof b);
  cap_word(word(&s), c, sizeof c);
  cap_word(word(&s), d, sizeof d);
  cap_word(word(&s), e, sizeof e);
  unsigned year = 1960 + pick(&s, 66);
  char q1[32], q2[32];
  snprintf(q1, sizeof q1, "%s", a);
  snprintf(q2, sizeof q2, "%s", b);
  switch (pick(&s, 5)) {
  case 0: { /* music: Artist/Album (year)/NN - Title.ext */
    static const char *const ext[] = {"mp3", "flac", "ogg", "m4a"};
    snprintf(name, cap, "%s %s/%s %s (%u)/%02u - %s %s %s.%s", a, b, c, d, year, 1 + pick(&s, 18),
             e, word(&s), word(&s), ext[pick(&s, 4)]);
    snprintf(q2, sizeof q2, "%s", c);
    break;
  }
  case 1: { /* a film release */
    static const char *const res[] = {"720p", "1080p", "2160p"};
    static const char *const src[] = {"BluRay", "WEB-DL", "HDTV", "DVDRip"};
    static const char *const grp[] = {"SPARKS", "NTb", "FLUX", "AMIABLE", "GECKOS"};
    static const char *const ext[] = {"mkv", "mp4", "avi"};
    snprintf(name, cap, "%s.%s.%s.%u.%s.%s.x264-%s.%s", a, b, c, year, res[pick(&s, 3)],
             src[pick(&s, 4)], grp[pick(&s, 5)], ext[pick(&s, 3)]);
    break;
  }
  case 2: { /* a camera's photo */
    unsigned mo = 1 + pick(&s, 12), dd = 1 + pick(&s, 28);
    unsigned hh = pick(&s, 24), mi = pick(&s, 60), ss = pick(&s, 60);
    snprintf(name, cap, "Photos/%u/%s %s/IMG_%04u%02u%02u_%02u%02u%02u.jpg", year, a, b, year, mo,
             dd, hh, mi, ss);
    snprintf(q1, sizeof q1, "%04u%02u%02u", year, mo, dd);
    snprintf(q2, sizeof q2, "%02u%02u%02u", hh, mi, ss);
    break;
  }
  case 3: { /* a document */
    static const char *const ext[] = {"pdf", "docx", "odt", "txt", "xlsx"};
    snprintf(name, cap, "Documents/%s %s %s - %s v%u.%s", a, b, c, d, 1 + pick(&s, 9),
             ext[pick(&s, 5)]);
    break;
  }
  default: { /* a book */
    static const char *const ext[] = {"epub", "pdf", "mobi"};
    snprintf(name, cap, "Books/%s %s - The %s of the %s %s (%u edition).%s", a, b, c, d, e, year,
             ext[pick(&s, 3)]);
    break;
  }
  }
  size_t len = strlen(name);
  /* Every template is at least 20 bytes; the longest words can pass 120:
   * keep the head (where the query's words are) and the tail (extension). */
  if (len > SWARMNAME_MAX) {
    memmove(name + SWARMNAME_MAX - 20, name + len - 20, 21);
    len = SWARMNAME_MAX;
  }
  if (query)
    snprintf(query, qcap, "%s %s", q1, q2);
  return len;
}
