#!/usr/bin/env bash
# memory_hold.sh - a super node's resident size under the memory attacks of
# issue 11 (finding 2), with the default budgets (--memory-limit 4096,
# --max-leaves 2000, nothing else set).
#
#   tests/bench/memory_hold.sh [BUILD_DIR] [HOLD_SECONDS] [SESSIONS]
#
# hold:  leaf h shares 150 files whose ~230-byte names hold "common";
#        SESSIONS (default 60) hostile leaves search "common" 10 times a
#        second each for HOLD_SECONDS (default 60) and never read; a session
#        cut off is redialled at once.
# sybil: on a fresh super node, one leaf publishes 100,000 entries of
#        255-byte names of 32 keywords no other entry has, then stays.
# VmRSS is sampled every 200 ms. Prints, per attack,
#   memory_<attack>_rss_mib: baseline B, peak P, steady S (median of the second half), limit L
# and what the budgets refused. A benchmark: exits 0 whatever the figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-$PWD/build}
HOLD_S=${2:-60}
SESSIONS=${3:-60}
for b in "$BUILD/supernode/canopy-supernode" "$BUILD/leafnode/canopy-leaf" "$BUILD/tests/canopy-hostile"; do
  [ -x "$b" ] || { echo "SKIP memory bench: $b is not built"; exit 0; }
done
command -v jq >/dev/null || { echo "SKIP memory bench: needs jq"; exit 0; }
export CANOPY_BIN=$BUILD
. tests/integration/lib.sh

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# sample PID WHILE_PID OUT [SECONDS]: VmRSS of PID every 200 ms while
# WHILE_PID runs (at most SECONDS)
sample() {
  local end=$((SECONDS + ${4:-100000}))
  while kill -0 "$2" 2>/dev/null && [ $SECONDS -lt $end ]; do
    rss_kib "$1" >>"$3" || break
    sleep 0.2
  done
}
# summary FILE BASELINE_KIB: "baseline B, peak P, steady S" in MiB
summary() {
  local n peak steady
  n=$(wc -l <"$1")
  peak=$(sort -n "$1" | tail -1)
  steady=$(tail -n $((n / 2)) "$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}')
  echo "baseline $(($2 / 1024)), peak $((peak / 1024)), steady $((steady / 1024))"
}
limit=$("$SN" --print-config 2>/dev/null | sed -n 's/^#\?memory-limit = //p' | head -1)

# --- hold ------------------------------------------------------------------
start_sn s1 1 --stun off --log-level info
pad=$(printf 'x%.0s' $(seq 1 200))
mkdir -p "$T/h-share"
for i in $(seq -w 1 150); do echo "$i" >"$T/h-share/common word $i $pad.txt"; done
start_leaf h 1 --log-level info
wait_for 30 sh -c "[ \$(\"$SN\" stats --state-dir \"$T/s1\" --json | jq -r .index_entries) -ge 150 ]" ||
  fail "the 150 files were not indexed"
base=$(rss_kib "$PID_s1")
"$HOSTILE" hold "127.0.0.1:$(port 1)" "$SESSIONS" 10 "$HOLD_S" common >"$T/hold.out" &
hold=$!
PIDS+=($hold)
sample "$PID_s1" "$hold" "$T/hold.rss"
read -r overruns refused < <("$SN" stats --state-dir "$T/s1" --json | jq -r '"\(.output_overruns) \(.output_refused)"')
echo "memory_hold_rss_mib: $(summary "$T/hold.rss" "$base"), limit $limit ($SESSIONS sessions x 10 searches/s, ${HOLD_S} s)"
echo "memory_hold_budgets: $(cat "$T/hold.out") sessions opened, $overruns cut off for not reading, $refused output charges refused"
kill "$PID_s1" "$PID_h" 2>/dev/null || true

# --- sybil -----------------------------------------------------------------
start_sn s2 2 --stun off --log-level info
base=$(rss_kib "$PID_s2")
"$HOSTILE" sybilpub "127.0.0.1:$(port 2)" 100000 60 >"$T/sybil.out" &
sybil=$!
PIDS+=($sybil)
sample "$PID_s2" "$sybil" "$T/sybil.rss" 20
read -r entries bytes max rejected over throttled < <("$SN" stats --state-dir "$T/s2" --json |
  jq -r '"\(.index_entries) \(.index_bytes) \(.index_bytes_max) \(.entries_rejected) \(.entries_over_share) \(.publish_throttled)"')
echo "memory_sybil_rss_mib: $(summary "$T/sybil.rss" "$base"), limit $limit (100,000 entries of 255-byte names, 32 new keywords each)"
echo "memory_sybil_index: $entries entries held, $((bytes >> 20)) of $((max >> 20)) MiB counted; refused $rejected over the leaf's share, $over over its address's, $throttled over the publish rate"
kill "$sybil" 2>/dev/null || true
