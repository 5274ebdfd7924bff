#!/usr/bin/env bash
# snapshot.sh - a leader's snapshot reaches its backup whole, in pieces
# under flow control (issue 11, finding 9). Leader s1 holds 100,000 entries
# of 255-byte names from one leaf before backup s2 joins its group; s2 must
# end up with every one of them, the link never cut (the old code queued
# the whole snapshot past the output cap: cut 44 times in 15 s, 7,040 of
# 100,000 entries held), and s1's replication_lag_ops must say how much
# was left while it ran and 0 once done.
. "$(dirname "$0")/lib.sh"

COUNT=${SNAPSHOT_ENTRIES:-100000}
# Room for COUNT such entries in one leaf's share of the index.
(umask 077 && echo "snapshot test group secret" >"$T/g.key")
ARGS=(--group g --group-key-file "$T/g.key" --no-discovery --stun off --memory-limit 4096
      --max-leaves 50 --log-level info)
start_sn s1 1 "${ARGS[@]}"
wait_for 10 sh -c "[ \"\$(\"$SN\" stats --state-dir \"$T/s1\" --json | jq -r .role)\" = leader ]" ||
  fail "s1 did not take the lead"
"$HOSTILE" sybilpub "127.0.0.1:$(port 1)" "$COUNT" 300 3 >"$T/pub.out" 2>&1 &
PIDS+=($!)
wait_for 60 sh -c "[ \$(\"$SN\" stats --state-dir \"$T/s1\" --json | jq -r .index_entries) -ge $COUNT ]" ||
  fail "s1 holds $(snstat s1 index_entries) of $COUNT entries"
note "s1 holds $COUNT entries"

start_sn s2 2 "${ARGS[@]}" --peer "127.0.0.1:$(port 1)"
max_lag=0
done_at=
t0=$(date +%s%N)
for i in $(seq 1 1200); do
  read -r lag backup < <("$SN" stats --state-dir "$T/s1" --json | jq -r '"\(.replication_lag_ops) \(.backup.id // "none")"')
  [ "$lag" -gt "$max_lag" ] && max_lag=$lag
  held=$(snstat s2 index_entries)
  if [ "$backup" != none ] && [ "$lag" -eq 0 ] && [ "$held" -ge "$COUNT" ]; then done_at=$((($(date +%s%N) - t0) / 1000000)); break; fi
  sleep 0.05
done
[ -n "$done_at" ] || fail "s2 holds $held of $COUNT entries after 60 s (s1's lag $lag)"
note "s2 holds all $COUNT entries within $done_at ms; s1's lag peaked at $max_lag ops"
[ "$(snstat s2 role)" = backup ] || fail "s2 is $(snstat s2 role), not the backup"
[ "$(snstat s2 records)" -eq 1 ] || fail "s2 holds $(snstat s2 records) records"
[ "$max_lag" -gt 0 ] || fail "the lag never showed the snapshot under way"
[ "$(snstat s1 output_overruns)" -eq 0 ] || fail "s1 cut a session for not reading"
[ "$(snstat s2 sessions_opened)" -eq 1 ] || fail "the link was cut and redialled"
echo "snapshot: ok"
