/* memplan.c - the memory ceiling split into budgets (MEMORY.md). */
#include "memplan.h"

#include <stdio.h>
#include <string.h>

/* Entries are capped at index bytes / this: about the cost of the
 * shortest names (a one-byte name of one keyword counts 420), so the entry
 * cap binds only for floods of tiny names. */
#define MIN_ENTRY_COST 512

static uint64_t min_u64(uint64_t a, uint64_t b)
{
  return a < b ? a : b;
}

bool sn_mem_plan(uint64_t limit_mib, unsigned max_sessions, unsigned max_links,
                 uint64_t leaf_output, uint64_t max_entries_per_leaf, SnMemPlan *p, char *err,
                 size_t errlen)
{
  memset(p, 0, sizeof *p);
  p->limit = limit_mib << 20;
  p->fixed = SN_MEM_FIXED;
  p->sessions = (uint64_t)max_sessions * SN_MEM_PER_SESSION;
  if (p->limit < p->fixed + p->sessions + SN_MEM_MIN_SPARE) {
    snprintf(err, errlen,
             "memory-limit %llu MiB is too small: %u sessions may take %llu MiB and the "
             "program %llu MiB, and at least %llu MiB must be left for queues and the index "
             "(raise memory-limit or lower max-leaves)",
             (unsigned long long)limit_mib, max_sessions, (unsigned long long)(p->sessions >> 20),
             (unsigned long long)(p->fixed >> 20), (unsigned long long)(SN_MEM_MIN_SPARE >> 20));
    return false;
  }
  p->spare = p->limit - p->fixed - p->sessions;
  /* An eighth for output buffers (charged as their capacity), an eighth
   * for input buffers, half for the index; a quarter stays slack for the
   * allocator's fragmentation and what no budget counts. */
  p->output_total = p->spare / 8;
  p->input_total = p->spare / 8;
  p->input_share = p->input_total / 4;
  /* Links get a part of their own, as much as all of them at their cap
   * need but at most half: leaves that do not read can then fill only
   * theirs, and never get an honest link cut for the total. */
  p->link_output = min_u64(SN_LINK_OUTPUT_MAX, p->output_total / 2);
  p->links_output =
      min_u64((uint64_t)(max_links ? max_links : 1) * p->link_output, p->output_total / 2);
  p->leaves_output = p->output_total - p->links_output;
  p->output_share = p->leaves_output / 4;
  p->leaf_output = min_u64(leaf_output, p->output_share);
  p->index_bytes = p->spare / 2;
  p->index_entries = p->index_bytes / MIN_ENTRY_COST;
  /* One leaf an eighth, one address a quarter: a Sybil behind one address
   * leaves three quarters to everyone else. */
  p->leaf_entries = min_u64(max_entries_per_leaf, p->index_entries / 8);
  p->leaf_bytes = p->index_bytes / 8;
  p->source_entries = p->index_entries / 4;
  p->source_bytes = p->index_bytes / 4;
  return true;
}
