#!/usr/bin/env bash
# partial_frames.sh - peers that send most of a large frame and never the
# rest cannot make the super node hold their input without bound (issue 12:
# an idle session is planned at 4 KiB, so what a session holds of its
# peer's input between reads is charged to the input budget, spare / 8 in
# all and a quarter of that per address).
#
# Under --memory-limit 200 (the plan gives input ~20 MiB, ~5 MiB per
# address), 200 sessions from 127.0.0.3 each hold 50 KB of a 60 KB frame
# (64 KiB of buffer each, 12.5 MiB together): the super node cuts those
# over its address's share, so about 80 stay; an honest leaf on another
# address publishes and finds its file all along.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh
ip addr show lo 2>/dev/null | grep -q "127.0.0.1/8" || { echo "SKIP: needs 127.0.0.0/8 on lo"; exit 0; }
SESSIONS=200
# Keepalive longer than the attack: the sessions that stay are ended by the
# input budget or not at all, not by their silence.
KEEPALIVE=20000
start_sn s1 1 --max-leaves 400 --memory-limit 200 --stun off
addr="127.0.0.1:$(port 1)"
mkdir -p "$T/h-share"
echo hello >"$T/h-share/honest partial report.txt"
start_leaf h 1
wait_for 20 sh -c "[ \$(\"$SN\" stats --state-dir \"$T/s1\" --json | jq -r .index_entries) -ge 1 ]" ||
  fail "the honest leaf's file was not indexed"

"$HOSTILE" partial "$addr" $SESSIONS 8 127.0.0.3 >"$T/partial.out" 2>&1 &
PIDS+=($!)
hostile=$!
sleep 4
[ "$(hits h --ttl 1 --wait 1000 honest partial)" -eq 1 ] || fail "the honest leaf's file is not found during the attack"
wait "$hostile" || fail "canopy-hostile partial failed: $(cat "$T/partial.out")"
read -r _ opened _ cut < "$T/partial.out"
overruns=$("$SN" stats --state-dir "$T/s1" --json | jq -r .output_overruns)
note "partial frames: $opened sessions opened, $cut cut off by the super node ($overruns overruns counted)"
[ "$opened" -ge $((SESSIONS * 9 / 10)) ] || fail "only $opened of $SESSIONS sessions opened"
# 5 MiB / 64 KiB = 80 may stay; the rest must have been cut.
[ "$cut" -ge $((opened - 100)) ] || fail "only $cut of $opened sessions holding partial frames were cut"
[ "$cut" -lt "$opened" ] || fail "every session was cut (the share should keep some)"
[ "$overruns" -ge "$cut" ] || fail "cuts not counted ($overruns < $cut)"
connected h || fail "the honest leaf lost its session"
[ "$(hits h --ttl 1 --wait 1000 honest partial)" -eq 1 ] || fail "the honest leaf's file is not found after the attack"
echo "PASS partial_frames"
