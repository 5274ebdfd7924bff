#!/usr/bin/env bash
# Issue 11 finding 12: two leaves on one machine (separate state dirs) get
# the same content id into the same folder at the same time, as a.bin and
# b.bin: both finish with the right bytes (each daemon has its own, locked
# part file). And a part file another process deletes mid-download does not
# lose the download.
. "$(dirname "$0")/lib.sh"

start_sn s1 1 --no-discovery --stun "127.0.0.1:$(port 51)"
ICE=(--ice-local 127.0.0.1)
mkdir -p "$T/src-share" "$T/both"
head -c 60000000 /dev/urandom >"$T/src-share/shared file.bin"
start_leaf src 1 "${ICE[@]}"
start_leaf a 1 "${ICE[@]}"
start_leaf b 1 "${ICE[@]}"
wait_for 10 sh -c "'$LEAF' search --state-dir '$T/a' --json --ttl 0 shared | grep -q content_id" \
  || fail "the file is not found"
cid=$(search a --ttl 0 shared | jq -r .content_id | head -1)

for round in 1 2; do
  rm -f "$T/both/a.bin" "$T/both/b.bin"
  "$LEAF" get --state-dir "$T/a" -o "$T/both/a.bin" "$cid" >"$T/get-a.out" 2>&1 &
  ga=$!
  "$LEAF" get --state-dir "$T/b" -o "$T/both/b.bin" "$cid" >"$T/get-b.out" 2>&1 &
  gb=$!
  wait "$ga" || fail "round $round: a's get failed: $(cat "$T/get-a.out")"
  wait "$gb" || fail "round $round: b's get failed: $(cat "$T/get-b.out")"
  cmp "$T/both/a.bin" "$T/src-share/shared file.bin" || fail "round $round: a.bin differs"
  cmp "$T/both/b.bin" "$T/src-share/shared file.bin" || fail "round $round: b.bin differs"
  left=$(find "$T/both" -name '.canopy-*' | wc -l)
  [ "$left" -eq 0 ] || fail "round $round: part files left behind: $(ls -a "$T/both")"
done
note "two daemons, one folder, one content id: both files whole (2 rounds)"

# Another process deletes the part file while the source is held still:
# the download finishes all the same, from the bytes it holds.
rm -f "$T/both/a.bin"
"$LEAF" get --state-dir "$T/a" -o "$T/both/a.bin" "$cid" >"$T/get-a.out" 2>&1 &
ga=$!
part_has_bytes() {
  local p
  p=$(ls "$T"/both/.canopy-"$cid"-*.part 2>/dev/null | head -1)
  [ -n "$p" ] && [ "$(stat -c %s "$p")" -gt 0 ]
}
wait_for 20 part_has_bytes || fail "the download did not start"
kill -STOP "$PID_src"
rm -f "$T"/both/.canopy-"$cid"-*.part
sleep 0.5
kill -CONT "$PID_src"
wait "$ga" || fail "a deleted part file lost the download: $(cat "$T/get-a.out")"
cmp "$T/both/a.bin" "$T/src-share/shared file.bin" || fail "bytes differ after the part file was deleted"
grep -q "moved or replaced by another process" "$T/a.log" || fail "the deletion went unnoticed?"
note "part file deleted mid-download: written out again, file whole"
note "partfile.sh: ok"
