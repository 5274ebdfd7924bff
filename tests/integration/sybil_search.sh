#!/usr/bin/env bash
# Sybil search starvation (issue 11, finding 5): 100 leaf sessions on s1,
# each searching at exactly its own limit (10/s), flood the mesh; an honest
# leaf on s1 still finds a file on s2's leaf at least 19 times in 20.
# s1 handles --query-rate queries a second shared fairly per leaf, so its
# forwards stay under s2's per-link limit and the Sybils' excess is shed
# where it came in.
. "$(dirname "$0")/lib.sh"

SYBILS=${SYBILS:-100}
start_sn s1 1 --no-discovery
start_sn s2 2 --no-discovery --peer "127.0.0.1:$(port 1)"
wait_for 10 links_at_least s1 1 || fail "no link"
mkdir -p "$T/far-share"
echo x >"$T/far-share/sybil target.txt"
start_leaf honest 1
start_leaf far 2
wait_for 10 sh -c "[ \"\$('$LEAF' search --state-dir '$T/honest' --json --ttl 1 --wait 500 sybil target | grep -c content_id)\" -ge 1 ]" ||
  fail "the file cannot be found even without an attack"

"$HOSTILE" sybil "127.0.0.1:$(port 1)" "$SYBILS" 10 120 >"$T/sybil.out" 2>&1 &
sybil=$!
PIDS+=($sybil)
# The crowd is up when s1 has every session.
wait_for 60 sh -c "[ \$('$SN' stats --state-dir '$T/s1' --json | jq -r .leaves) -ge $((SYBILS + 1)) ]" ||
  fail "the Sybil sessions did not come up ($(snstat s1 leaves) leaves)"
sleep 2
r0=$(snstat s1 queries_received); t0=$(date +%s%N)

ok=0; bad=0; lat=()
for i in $(seq 1 20); do
  a=$(date +%s%N)
  n=$(search honest --ttl 1 --wait 2000 --limit 1 sybil target | grep -c content_id || true)
  b=$(date +%s%N)
  if [ "$n" -ge 1 ]; then ok=$((ok + 1)); lat+=($(( (b - a) / 1000000 ))); else bad=$((bad + 1)); fi
  sleep 0.15 # the honest leaf stays under its own 10 searches/s
done
r1=$(snstat s1 queries_received); t1=$(date +%s%N)
rate=$(( (r1 - r0) * 1000 / ((t1 - t0) / 1000000) ))
kill -0 "$sybil" 2>/dev/null || fail "the Sybil crowd ended early: $(cat "$T/sybil.out")"
kill "$sybil"; wait "$sybil" 2>/dev/null || true

note "s1 received $rate queries/s during the honest searches"
note "s1 throttled $(snstat s1 queries_throttled), s2 throttled $(snstat s2 queries_throttled)"
note "honest searches under the flood: $ok of 20 found the file (ms: ${lat[*]:-})"
[ "$rate" -ge $((SYBILS * 5)) ] || fail "the flood was too weak to prove anything ($rate/s)"
[ "$ok" -ge 19 ] || fail "honest search starved: $ok of 20"
kill -0 "$PID_s1" && kill -0 "$PID_s2" || fail "a super node died"
echo "sybil_search: ok"
