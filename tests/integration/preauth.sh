#!/usr/bin/env bash
# Pre-auth slot exhaustion (issue 11, finding 1): 200 silent connections from
# 8 /24s, each redialled as soon as it is closed, against a super node with
# --max-leaves 10 and a pre-auth budget of 64. While they run, a new honest
# leaf attaches and finds a file, and the silent connections are closed
# within the silent deadline (3 s by default), not the old 10 s; and one that
# completes the handshake but never says HELLO is closed at the handshake
# deadline (5 s by default).
# (Before the budget, 200 such connections kept every new leaf out.)
# Keepalives of 5 s: the core's own sweep of sessions without HELLO (3
# intervals) must not be what closes the quiet one.
KEEPALIVE=5000
. "$(dirname "$0")/lib.sh"

ATTACK_S=${PREAUTH_ATTACK_S:-24}
SILENT_MS=3000 # the default of --silent-timeout-ms

start_sn s1 1 --no-discovery --max-leaves 10 --max-handshakes 64 --metrics "127.0.0.1:$(port 9)" ${PREAUTH_SN_ARGS:-}
mkdir -p "$T/old-share"
echo x >"$T/old-share/slot flood target.txt"
start_leaf old 1
indexed() { [ "$(snstat s1 index_entries)" -ge 1 ]; }
wait_for 10 indexed || fail "the old leaf's file was not indexed"

addr="127.0.0.1:$(port 1)"
"$HOSTILE" slots "$addr" 200 "$ATTACK_S" 8 25 >"$T/slots.out" &
flood=$!
PIDS+=($flood)
"$HOSTILE" quiet "$addr" >"$T/quiet.out" &
quiet=$!
PIDS+=($quiet)
sleep 5 # the flood holds every slot it can, and its first ones hit the deadline

# A new leaf attaches under the flood, and its search finds the old leaf's file.
t0=$(date +%s%N)
mkdir -p "$T/new-share"
"$LEAF" --supernode "$addr" --share "$T/new-share" --state-dir "$T/new" \
        --keepalive-ms "${KEEPALIVE:-1000}" --log-level debug >"$T/new.log" 2>&1 &
PIDS+=($!)
wait_for 12 connected new || fail "a new leaf could not attach during the slot flood"
note "new leaf attached in $(( ($(date +%s%N) - t0) / 1000000 )) ms during the flood"
n=$(hits new --ttl 1 --wait 2000 slot flood target)
[ "$n" -ge 1 ] || fail "the new leaf's search found nothing during the flood"
note "its search found $n hit(s)"
kill -0 "$flood" 2>/dev/null || fail "the flood ended before the honest leaf was done (raise PREAUTH_ATTACK_S)"

wait "$quiet" || fail "a session without HELLO was kept 30 s"
quiet_ms=$(cat "$T/quiet.out")
note "a session that never said HELLO was closed after $quiet_ms ms"
[ "$quiet_ms" -ge 4000 ] && [ "$quiet_ms" -le 7000 ] ||
  fail "a session without HELLO was closed after $quiet_ms ms (deadline 5000)"
[ "$(snstat s1 preauth_timeouts)" -ge 1 ] || fail "preauth_timeouts did not move"

pending=$(snstat s1 handshakes)
[ "$pending" -le 64 ] || fail "$pending connections in the pre-auth budget of 64"
wait "$flood" || fail "canopy-hostile slots failed"
read -r line <"$T/slots.out"
note "flood: $line"
val() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
[ "$(val connects)" -ge 200 ] || fail "the flood made fewer connections than slots ($line)"
# Accepted silent connections were held until the deadline, and no longer.
[ "$(val held)" -ge 10 ] || fail "no silent connection was held to the deadline ($line)"
[ "$(val held_max_ms)" -le $((SILENT_MS + 2000)) ] ||
  fail "a silent connection was held $(val held_max_ms) ms (deadline $SILENT_MS ms)"
silent=$(snstat s1 preauth_silent)
refused=$(snstat s1 preauth_refused)
shed=$(snstat s1 preauth_shed)
note "super node: $silent closed silent, $refused refused, $shed shed"
[ "$silent" -ge 10 ] || fail "preauth_silent is $silent"
[ "$refused" -ge 1 ] || fail "preauth_refused is $refused"
[ "$shed" -ge 1 ] || fail "nothing was shed: the budget was never full"
curl -fsS --max-time 5 "http://127.0.0.1:$(port 9)/metrics" >"$T/metrics" || fail "cannot scrape /metrics"
full=$(sed -n 's/^canopy_preauth_refused_total{reason="full"} //p' "$T/metrics")
silent_m=$(sed -n 's/^canopy_preauth_silent_total //p' "$T/metrics")
[ "${full:-0}" -ge 1 ] && [ "${silent_m:-0}" -ge 10 ] && grep -q '^canopy_handshakes ' "$T/metrics" ||
  fail "the pre-auth metrics are missing or did not move: $(grep -E 'preauth|handshakes' "$T/metrics")"

# The leaves are still attached and the super node alive.
kill -0 "$PID_s1" || fail "super node died"
[ "$(snstat s1 leaves)" -eq 2 ] || fail "expected 2 leaves, have $(snstat s1 leaves)"
echo "preauth: ok"
