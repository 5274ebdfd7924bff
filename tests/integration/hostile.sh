#!/usr/bin/env bash
# Hostile peers: garbage, absurd lengths, tampered frames, malformed and
# misplaced messages and a query flood each get their own session closed or
# throttled, while a concurrent search from an honest leaf keeps working.
. "$(dirname "$0")/lib.sh"

start_sn s1 1 --no-discovery
start_sn s2 2 --no-discovery --peer "127.0.0.1:$(port 1)"
wait_for 10 links_at_least s1 1 || fail "no link"
mkdir -p "$T/honest-share" "$T/far-share"
echo x >"$T/far-share/flood target.txt"
start_leaf honest 1
start_leaf far 2

# Honest searches run the whole time in the background.
( ok=0; bad=0
  while [ -d "$T" ] && [ ! -e "$T/stop" ]; do
    if [ "$("$LEAF" search --state-dir "$T/honest" --json --ttl 1 --wait 300 flood target | grep -c content_id)" -eq 1 ]; then
      ok=$((ok + 1)); else bad=$((bad + 1)); fi
  done
  echo "$ok $bad" >"$T/honest.result" ) &
searcher=$!
PIDS+=($searcher)

addr="127.0.0.1:$(port 1)"
for mode in garbage hugeframe tamper truncated wrongplace nohello; do
  "$HOSTILE" $mode "$addr" || fail "super node kept a $mode session open"
  note "$mode: session closed"
done
before=$(snstat s1 malformed)
[ "$before" -ge 3 ] || fail "malformed counter did not move ($before)"

answered=$("$HOSTILE" flood "$addr" 2000)
throttled=$(snstat s1 queries_throttled)
note "flood of 2000 searches: $answered answered, $throttled throttled"
[ "$throttled" -gt 0 ] || fail "a query flood was not throttled"
[ "$answered" -lt 2000 ] || fail "every flooded query was answered"

touch "$T/stop"; wait $searcher
read -r ok bad <"$T/honest.result"
note "honest searches during the attack: $ok ok, $bad failed"
[ "$ok" -ge 3 ] && [ "$bad" -eq 0 ] || fail "honest searches disturbed ($ok ok, $bad failed)"
kill -0 "$PID_s1" || fail "super node died"
[ "$(snstat s1 leaves)" -eq 1 ] || fail "honest leaf lost its session"
echo "hostile: ok"
