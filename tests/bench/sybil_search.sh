#!/usr/bin/env bash
# sybil_search.sh - honest search success and latency under a Sybil flood.
#
#   tests/bench/sybil_search.sh [BUILD_DIR] [SEARCHES] [SYBILS]
#
# S1 and S2 linked (no discovery), an honest leaf on S1 and a leaf on S2
# sharing one file. Times SEARCHES (default 50) searches from the honest leaf
# for that file (ttl 1, --wait 2000, --limit 1), first with no attack, then
# while SYBILS (default 100) leaf sessions on S1 each search at exactly the
# per-session limit (10/s, paced; canopy-hostile sybil). Prints the success
# rate and the median and p95 time to the first hit; times are per CLI
# invocation, so they include process start-up (15-20 ms on the 2-core
# development machine). Figures in README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-$PWD/build}
N=${2:-50}
SYBILS=${3:-100}
export CANOPY_BIN=$BUILD
. tests/integration/lib.sh

start_sn s1 1 --no-discovery
start_sn s2 2 --no-discovery --peer "127.0.0.1:$(port 1)"
wait_for 10 links_at_least s1 1 || fail "no link"
mkdir -p "$T/far-share"
echo x >"$T/far-share/bench target.txt"
start_leaf honest 1
start_leaf far 2
wait_for 10 sh -c "[ \"\$('$LEAF' search --state-dir '$T/honest' --json --ttl 1 --wait 500 bench target | grep -c content_id)\" -ge 1 ]" ||
  fail "the file cannot be found"

measure() { # measure LABEL
  local ok=0 ms=() a b n
  for _ in $(seq 1 "$N"); do
    a=$(date +%s%N)
    n=$(search honest --ttl 1 --wait 2000 --limit 1 bench target | grep -c content_id || true)
    b=$(date +%s%N)
    if [ "$n" -ge 1 ]; then ok=$((ok + 1)); ms+=($(( (b - a) / 1000000 ))); fi
    sleep 0.15 # the honest leaf stays under its own 10 searches/s
  done
  local sorted med p95
  if [ "$ok" -gt 0 ]; then
    sorted=$(printf '%s\n' "${ms[@]}" | sort -n)
    med=$(echo "$sorted" | sed -n "$(( (ok + 1) / 2 ))p")
    p95=$(echo "$sorted" | sed -n "$(( (ok * 95 + 99) / 100 ))p")
  else
    med=- p95=-
  fi
  printf '%s: %d of %d found (%d%%), median %s ms, p95 %s ms\n' "$1" "$ok" "$N" $((ok * 100 / N)) "$med" "$p95"
}

measure sybil_search_no_attack
"$HOSTILE" sybil "127.0.0.1:$(port 1)" "$SYBILS" 10 600 >"$T/sybil.out" 2>&1 &
sybil=$!
PIDS+=($sybil)
wait_for 60 sh -c "[ \$('$SN' stats --state-dir '$T/s1' --json | jq -r .leaves) -ge $((SYBILS + 1)) ]" ||
  fail "the Sybil sessions did not come up"
sleep 2
r0=$(snstat s1 queries_received); th1=$(snstat s1 queries_throttled); th2=$(snstat s2 queries_throttled)
t0=$(date +%s%N)
measure "sybil_search_under_${SYBILS}_sybils_at_10_per_s"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
per_s() { echo $(( ($1 - $2) * 1000 / ms )); }
echo "  meanwhile per second: s1 received $(per_s "$(snstat s1 queries_received)" "$r0")," \
     "s1 shed $(per_s "$(snstat s1 queries_throttled)" "$th1")," \
     "s2 throttled $(per_s "$(snstat s2 queries_throttled)" "$th2")"
kill "$sybil"; wait "$sybil" 2>/dev/null || true
