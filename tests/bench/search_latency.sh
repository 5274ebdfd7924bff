#!/usr/bin/env bash
# search_latency.sh - search latency across the 4-super-node chain on loopback.
#
#   tests/bench/search_latency.sh [BUILD_DIR] [SEARCHES]
#
# Starts S1-S2-S3-S4 (no discovery), a leaf on S1 and a leaf on S4 sharing one
# file, then times SEARCHES (default 200)
# searches from the S1 leaf's control socket to its first hit from S4
# (bench_search.c). For scale it also times a search answered by S1 itself (a
# file shared on S1, ttl 0): the difference is what three super-node hops and
# the way back cost. A CLI invocation adds process start-up on top (about
# 15-20 ms on the 2-core development machine).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-$PWD/build}
N=${2:-200}
export CANOPY_BIN=$BUILD
. tests/integration/lib.sh

start_sn s1 1 --no-discovery
start_sn s2 2 --no-discovery --peer "127.0.0.1:$(port 1)"
start_sn s3 3 --no-discovery --peer "127.0.0.1:$(port 2)"
start_sn s4 4 --no-discovery --peer "127.0.0.1:$(port 3)"
wait_for 10 links_at_least s2 2 && wait_for 10 links_at_least s3 2 || fail "chain not up"
mkdir -p "$T/near-share" "$T/far-share"
echo near >"$T/near-share/local thing.txt"
echo far >"$T/far-share/remote thing.txt"
# The searching leaf must not be throttled by its own super node (10/s).
start_leaf near 1
start_leaf far 4

measure() { # measure LABEL TTL TERMS...
  local label=$1; shift
  printf '%s: ' "$label"
  "$BUILD/tests/bench_search" "$T/near" "$N" "$@"
}

measure search_latency_local_ttl0 0 local thing
measure search_latency_chain_s1_to_s4_ttl3 3 remote thing
