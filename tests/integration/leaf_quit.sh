#!/usr/bin/env bash
# A leaf's files leave the index when it goes: at once when it quits (its
# connection closes), within 3 keepalive intervals when it hangs (SIGSTOP).
# A leaf whose super node restarts reconnects and republishes by itself.
. "$(dirname "$0")/lib.sh"
KEEPALIVE=500

start_sn s1 1 --no-discovery
start_sn s2 2 --no-discovery --peer "127.0.0.1:$(port 1)"
wait_for 10 links_at_least s1 1 || fail "no link"
mkdir -p "$T/asker-share" "$T/quitter-share" "$T/hanger-share"
echo q >"$T/quitter-share/quitter song.mp3"
echo h >"$T/hanger-share/hanger song.mp3"
start_leaf asker 1
start_leaf quitter 2
start_leaf hanger 2

[ "$(hits asker --ttl 1 song)" -eq 2 ] || fail "expected both songs before anyone leaves"

kill "$PID_quitter"
wait "$PID_quitter" 2>/dev/null || true
[ "$(hits asker --ttl 1 quitter)" -eq 0 ] || fail "a leaf that quit is still in the results"
note "quitting leaf gone from results at once"

kill -STOP "$PID_hanger"
t0=$(date +%s%N)
wait_for 5 sh -c "[ \"\$('$SN' stats --state-dir '$T/s2' --json | jq .index_entries)\" -eq 0 ]" \
  || fail "a hung leaf's entries outlived 3 keepalive intervals"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
note "hung leaf's entries gone after ${ms} ms (keepalive ${KEEPALIVE} ms: limit 3 intervals, plus 500 ms for polling a loaded machine; the exact bound is asserted in test_sncore)"
[ $ms -le $((3 * KEEPALIVE + 500)) ] || fail "took ${ms} ms"
[ "$(hits asker --ttl 1 hanger)" -eq 0 ] || fail "hung leaf still found"
kill -CONT "$PID_hanger"

# The hung leaf notices its session is gone and comes back with its files.
wait_for 10 sh -c "[ \"\$('$LEAF' search --state-dir '$T/asker' --json --ttl 1 hanger | grep -c content_id)\" -eq 1 ]" \
  || fail "resumed leaf did not republish"
note "resumed leaf republished"

# Restart s2: its leaf reconnects with backoff and republishes.
kill "$PID_s2"; wait "$PID_s2" 2>/dev/null || true
sleep 1
start_sn s2 2 --no-discovery --peer "127.0.0.1:$(port 1)"
wait_for 15 sh -c "[ \"\$('$LEAF' search --state-dir '$T/asker' --json --ttl 1 hanger | grep -c content_id)\" -eq 1 ]" \
  || fail "leaf did not republish after its super node restarted"
note "leaf reconnected and republished after its super node restarted"
echo "leaf_quit: ok"
