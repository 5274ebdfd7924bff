#!/usr/bin/env bash
# swarm_sources.sh - canopy-swarm --source-addresses K spreads its leaves'
# connections over K loopback sources (tests/tools/swarm_dial.h: past about
# 14,000 connections from one address to one super node the kernel's search
# for a source port cost the load generator half its CPU).
#
# One canopy-supernode and a swarm of 400 leaves (200 under ASan) dialing
# from 4 sources. What the operator sees: every leaf attaches, the super
# node's established connections come from exactly 127.0.0.1 .. 127.0.0.4
# with a quarter of the leaves each, no bind failed and no dial is left
# pending. Then a swarm without the option, naming the super node by host
# name (GSocketClient's path rather than the direct connect), still dials
# from 127.0.0.1 alone.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../tools/swarm_procs.sh"
command -v jq >/dev/null || { echo "SKIP: needs jq"; exit 0; }
command -v ss >/dev/null || { echo "SKIP: needs ss"; exit 0; }
if [ -n "${ASAN_OPTIONS:-}" ]; then N=200; else N=400; fi
K=4

SN_ARGS=(--stun off --max-leaves $((2 * N + 100)) --memory-limit $((4096 + 4 * N))
  --max-handshakes-per-address 100000 --max-handshakes-per-prefix 100000 --log-level warning)
attached() { [ "$(swarm_status "$1" | jq .attached)" -eq "$2" ] 2>/dev/null; }
# Established connections to the super node's port, by local (source) address.
by_source() {
  ss -Htn state established "( dport = :$(port 1) )" | awk '{ sub(/:[0-9]+$/, "", $3); print $3 }' |
    sort | uniq -c | awk '{ print $2 "=" $1 }' | tr '\n' ' '
}

KEEPALIVE=5000 start_sn sn 1 "${SN_ARGS[@]}"
swarm_start sw "$N" 1 --supernode "127.0.0.1:$(port 1)" --files-per-leaf 1 \
  --start-rate 0 --max-pending 100 --source-addresses $K --log-level warning
wait_for 60 attached sw "$N" || fail "only $(swarm_status sw | jq .attached) of $N leaves attached within 60 s"
[ "$(snstat sn leaves)" -eq "$N" ] || fail "the super node holds $(snstat sn leaves) leaves, not $N"
failures=$("$SWARM" status --state-dir "$T/sw.0" --json | jq .source_bind_failures)
[ "$failures" = 0 ] || fail "$failures binds to a source failed"
pending=$("$SWARM" status --state-dir "$T/sw.0" --json | jq .dials_pending)
[ "$pending" = 0 ] || fail "$pending dials left pending with every leaf attached"
got=$(by_source)
note "connections by source: $got"
want=""
for ((i = 1; i <= K; i++)); do want+="127.0.0.$i=$((N / K)) "; done
[ "$got" = "$want" ] || fail "connections by source: $got, want $want"

# Without the option: the kernel's choice, 127.0.0.1 alone.
swarm_start plain 50 1 --supernode "localhost:$(port 1)" --files-per-leaf 1 \
  --start-rate 0 --log-level warning
wait_for 60 attached plain 50 || fail "only $(swarm_status plain | jq .attached) of 50 plain leaves attached"
got=$(by_source)
want="127.0.0.1=$((N / K + 50)) "
for ((i = 2; i <= K; i++)); do want+="127.0.0.$i=$((N / K)) "; done
[ "$got" = "$want" ] || fail "with a plain swarm too, connections by source: $got, want $want"
echo "swarm_sources: ok"
