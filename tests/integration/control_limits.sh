#!/usr/bin/env bash
# Control socket and metrics endpoint under misbehaving local clients
# (issue 11, finding 17): an endless request line is cut off while `stats`
# keeps answering; past 32 control clients without a request (the pending
# slots: clients being answered have 256 in all) a new one is told so, and
# idle ones are dropped after 10 s; the metrics endpoint refuses its 17th idle
# connection, yet curl gets /metrics once some close or time out.
. "$(dirname "$0")/lib.sh"

mport=$(port 50)
start_sn s1 1 --metrics "127.0.0.1:$mport"
sock="$T/s1/control.sock"

# 1. An endless line: dropped, and stats answers meanwhile and after.
( rc=0
  timeout 30 bash -c 'printf "{\"cmd\":\""; yes | tr -d "\n"' |
    timeout 30 socat -u - "UNIX-CONNECT:$sock" || rc=$?
  echo $rc >"$T/endless.rc" ) 2>/dev/null &
PIDS+=($!)
snstat s1 links >/dev/null || fail "stats did not answer during the endless line"
wait_for 10 test -s "$T/endless.rc" || fail "the endless line was not cut off"
[ "$(cat "$T/endless.rc")" != 124 ] || fail "the endless line ran until the timeout"
[ "$(snstat s1 links)" = 0 ] || fail "stats wrong after the endless line"
note "endless line: cut off"

# 2. 32 silent clients fill the pending control slots; the 33rd is told so.
# (Each socat reads a FIFO we hold open and never write: no stray sleeps.)
wfds=()
for i in $(seq 32); do
  mkfifo "$T/fifo$i"
  socat -u "OPEN:$T/fifo$i" "UNIX-CONNECT:$sock" 2>/dev/null &
  PIDS+=($!)
  exec {w}>"$T/fifo$i"
  wfds+=("$w")
done
sleep 1
out=$("$SN" stats --state-dir "$T/s1" 2>&1 || true)
case "$out" in *"too many control clients"*) note "33rd client: $out" ;;
  *) fail "a 33rd control client was not refused: $out" ;; esac
# They never send a request: dropped after 10 s, then stats works again.
stats_ok() { "$SN" stats --state-dir "$T/s1" >/dev/null 2>&1; }
wait_for 15 stats_ok || fail "control slots never freed"
for w in "${wfds[@]}"; do exec {w}>&-; done
note "silent clients dropped; stats answers"

# 3. Metrics: 16 idle connections, the 17th is closed at once.
# (curl to a file: grep -q in a pipe would break curl's pipe under pipefail)
scrape() { curl -sf -m 3 -o "$T/metrics.txt" "http://127.0.0.1:$mport/metrics" && grep -q '^canopy_links ' "$T/metrics.txt"; }
scrape || fail "no metrics"
fds=()
for i in $(seq 16); do exec {fd}<>"/dev/tcp/127.0.0.1/$mport"; fds+=("$fd"); done
sleep 0.5
exec {extra}<>"/dev/tcp/127.0.0.1/$mport"
timeout 2 cat <&"$extra" >/dev/null || fail "the 17th metrics connection was kept open"
exec {extra}<&-
if scrape; then
  fail "a scrape got through with every slot taken"
fi
exec {fd}<&-; fd=${fds[0]}; exec {fd}<&-
sleep 0.5
scrape || fail "curl got no metrics after a connection closed"
# The idle ones are closed after 10 s.
timeout 15 cat <&"${fds[1]}" >/dev/null || fail "an idle metrics connection stayed open"
note "metrics: 17th refused, idle ones closed, curl served"
kill -0 "$PID_s1" || fail "super node died"
echo "control_limits: ok"
