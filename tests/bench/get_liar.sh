#!/usr/bin/env bash
# get_liar.sh - time for a `get` while a liar answers with 16 names (issue 11
# finding 3).
#
#   tests/bench/get_liar.sh [BUILD_DIR] [RUNS] [MB]
#
# One super node on loopback, an honest leaf sharing an MB-megabyte file
# (default 20) and a downloading leaf. Times RUNS (default 5) `canopy-leaf
# get` runs of the file with only the honest source, then again while a
# hostile leaf (canopy-hostile liarnames) publishes the same content id under
# 16 names and never answers an ICE offer, and prints the median and the
# worst of each, in ms (CLI start-up included). Before the fix the second
# kind never finished (every source slot went to the liar).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-$PWD/build}
RUNS=${2:-5}
MB=${3:-20}
export CANOPY_BIN=$BUILD
. tests/integration/lib.sh

start_sn s1 1 --no-discovery --stun "127.0.0.1:$(port 51)"
ICE=(--ice-local 127.0.0.1)
mkdir -p "$T/honest-share"
head -c $((MB * 1000000)) /dev/urandom >"$T/honest-share/wanted.bin"
start_leaf honest 1 "${ICE[@]}"
start_leaf a 1 "${ICE[@]}"
wait_for 10 sh -c "'$LEAF' search --state-dir '$T/a' --json --ttl 0 wanted | grep -q content_id" \
  || fail "the file is not found"
cid=$(search a --ttl 0 wanted | jq -r .content_id | head -1)

# times LABEL: RUNS gets, prints "LABEL: median X ms, worst Y ms (n=RUNS)"
times() {
  local label=$1 all=() i t0 t1
  for i in $(seq 1 "$RUNS"); do
    rm -f "$T/out.bin"
    t0=$(date +%s%N)
    timeout 60 "$LEAF" get --state-dir "$T/a" -o "$T/out.bin" "$cid" >/dev/null 2>"$T/err" \
      || fail "$label: get failed: $(cat "$T/err")"
    t1=$(date +%s%N)
    cmp -s "$T/out.bin" "$T/honest-share/wanted.bin" || fail "$label: bytes differ"
    all+=($(( (t1 - t0) / 1000000 )))
  done
  local sorted
  sorted=$(printf '%s\n' "${all[@]}" | sort -n)
  printf '%s: median %s ms, worst %s ms (n=%s, %s MB; all: %s)\n' "$label" \
    "$(echo "$sorted" | sed -n "$(( (RUNS + 1) / 2 ))p")" "$(echo "$sorted" | tail -1)" "$RUNS" "$MB" \
    "$(echo "$sorted" | tr '\n' ' ' | sed 's/ $//')"
}

times get_honest_only
"$HOSTILE" liarnames "127.0.0.1:$(port 1)" wanted.bin "$cid" $((MB * 1000000)) 600 16 >"$T/liar.log" 2>&1 &
PIDS+=($!)
wait_for 10 sh -c "[ \$('$LEAF' search --state-dir '$T/a' --json --ttl 0 --content-id '$cid' | grep -c content_id) -ge 2 ]" \
  || fail "the liar's entries are not found"
times get_with_liar_16_names
