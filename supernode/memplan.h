/* memplan.h - from one memory ceiling (--memory-limit) to every budget of
 * the super node. supernode/MEMORY.md explains the arithmetic; in short:
 *
 *   limit = fixed + sessions x per-session + output + input + index + slack
 *
 * where fixed (SN_MEM_FIXED) is the program, its libraries and its
 * fixed-size tables, each possible session (leaves, links and handshakes
 * together) costs SN_MEM_PER_SESSION while idle (an idle session holds no
 * buffer: issue 12), output is the memory of all output queues (charged
 * as buffer capacity while anything is queued), up to half of it reserved
 * for links (as much as max_links links at their cap need), input is the
 * memory of the partial frames and last plaintexts of leaves and sessions
 * not yet known, index is the index's own bound (index_entry_cost summed),
 * and what is left stays as slack. Sans I/O; the shell logs the plan at
 * start.
 */
#ifndef CANOPY_MEMPLAN_H
#define CANOPY_MEMPLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SN_MEM_FIXED (32ull << 20)
/* What one idle session costs: its Session, Channel (keys, no buffers),
 * GSocketConnection and GSocket with their streams, epoll watch, Peer with
 * its rate limiters, roster record and the slots of the tables that find
 * it. Measured 3.1 KiB of RSS per idle leaf at 2,000 leaves
 * (tests/bench/idle_leaves.sh). Its buffers, when it has any, are charged
 * to the output and input budgets. Links' input buffers (16 x at most two
 * frames and a plaintext, 6 MiB) are inside SN_MEM_FIXED. */
#define SN_MEM_PER_SESSION (4ull << 10)
/* What must be left for queues and index once the rest is paid. */
#define SN_MEM_MIN_SPARE (16ull << 20)
/* A link's output cap: a snapshot is sent in pieces below it (group.c). */
#define SN_LINK_OUTPUT_MAX (8ull << 20)

typedef struct {
  uint64_t limit;    /* bytes */
  uint64_t fixed;    /* SN_MEM_FIXED */
  uint64_t sessions; /* max_sessions x SN_MEM_PER_SESSION */
  uint64_t spare;    /* limit - fixed - sessions */
  /* Queued output (bytes queued in user space, charged as queued): all
   * sessions together, split in two budgets so that leaves that do not
   * read cannot crowd links out: links_output is reserved for links (a
   * budget of its own, share link_output per address), leaves_output is
   * for leaves and sessions not yet known, one address's share of it
   * output_share. links_output + leaves_output = output_total. */
  uint64_t output_total, output_share;
  uint64_t links_output, leaves_output;
  uint64_t leaf_output, link_output; /* per session */
  /* Input buffers held between reads (partial frames, the last
   * plaintext) of leaves and sessions not yet known: in total, and one
   * address's share. */
  uint64_t input_total, input_share;
  /* The index (entries; bytes as index_entry_cost counts them): in total,
   * per leaf and per source address. */
  uint64_t index_entries, index_bytes;
  uint64_t leaf_entries, leaf_bytes;
  uint64_t source_entries, source_bytes;
} SnMemPlan;

/* Splits limit_mib among the budgets for max_sessions sessions of which
 * up to max_links are links, a leaf output cap of leaf_output bytes and at
 * most max_entries_per_leaf entries per leaf. False, with a message in
 * err, when the limit is too small. */
bool sn_mem_plan(uint64_t limit_mib, unsigned max_sessions, unsigned max_links,
                 uint64_t leaf_output, uint64_t max_entries_per_leaf, SnMemPlan *out, char *err,
                 size_t errlen);

#endif
