#!/usr/bin/env bash
# Flood-table hash (issue 11, finding 7): a neighbour sends queries whose
# ids agree in their first 4 bytes. With a hash over a prefix they
# all share one probe chain and every new id costs a walk of it; with a
# keyed hash over the whole id they cost what random ids cost.
. "$(dirname "$0")/lib.sh"

RATE=${RATE:-480}   # per link: under the 500/s a link may send
LINKS=${LINKS:-8}   # hostile links at once (a super node takes 16)
SECS=${SECS:-10}
start_sn s1 1 --no-discovery
addr="127.0.0.1:$(port 1)"

# CPU seconds (user + system, in clock ticks) the super node has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID_s1/stat"; }

run() {
  local kind=$1 c0 c1 i pids=()
  c0=$(cpu_ticks)
  for i in $(seq 1 "$LINKS"); do
    "$HOSTILE" qidflood "$addr" "$RATE" "$SECS" "$kind" >"$T/$kind.$i.out" &
    pids+=($!); PIDS+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || fail "$kind: a link was closed"; done
  c1=$(cpu_ticks)
  echo $((c1 - c0))
}
tck=$(getconf CLK_TCK)
random=$(run random)
same=$(run same)
note "super node CPU over ${SECS} s at $LINKS x $RATE queries/s: random ids $((random * 1000 / tck)) ms, colliding ids $((same * 1000 / tck)) ms"
# Colliding ids may cost no more than twice the random ones (plus 1 s of
# slack for a busy machine).
[ "$same" -le $((2 * random + tck)) ] || fail "colliding query ids cost $same ticks against $random"
[ "$(snstat s1 queries_received)" -ge $((LINKS * RATE * SECS * 2 * 8 / 10)) ] || fail "the queries did not arrive"
kill -0 "$PID_s1" || fail "super node died"
echo "flood_hash: ok"
