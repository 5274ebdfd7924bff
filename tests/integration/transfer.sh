#!/usr/bin/env bash
# Downloads between leaves over ICE on loopback: a file shared by two leaves
# comes from both, verified; a source killed mid-transfer is replaced by the
# other; a downloader killed mid-transfer resumes with only the missing
# chunks; an existing file is not overwritten; an unknown id fails clearly.
. "$(dirname "$0")/lib.sh"

start_sn s1 1 --no-discovery --stun "127.0.0.1:$(port 51)"
start_sn s2 2 --no-discovery --peer "127.0.0.1:$(port 1)" --stun "127.0.0.1:$(port 52)"
wait_for 10 links_at_least s1 1 || fail "no link"
mkdir -p "$T/b-share" "$T/c-share" "$T/a-share"
head -c 60000000 /dev/urandom >"$T/b-share/Big Movie.mkv"
cp "$T/b-share/Big Movie.mkv" "$T/c-share/big movie copy.mkv"
head -c 20000000 /dev/urandom >"$T/b-share/small.bin"
ICE=(--ice-local 127.0.0.1)
start_leaf a 1 "${ICE[@]}"
start_leaf b 2 "${ICE[@]}"
start_leaf c 2 "${ICE[@]}"
cid=$(search a --ttl 1 big movie | jq -r .content_id | head -1)
[ ${#cid} -eq 64 ] || fail "no content id found"

# Two sources, both used, the bytes verified.
out=$("$LEAF" get --state-dir "$T/a" --json "$cid") || fail "get failed: $out"
res=$(echo "$out" | tail -n 1)
path=$(echo "$res" | jq -r .path)
cmp "$path" "$T/b-share/Big Movie.mkv" || fail "downloaded bytes differ"
[ "$(echo "$res" | jq '.sources | length')" -eq 2 ] || fail "expected 2 sources: $res"
[ "$(echo "$res" | jq '[.sources[].bytes] | add')" -eq 60000000 ] || fail "source bytes do not add up: $res"
echo "$res" | jq -e 'all(.sources[]; .bytes > 0 and .path_type == "direct")' >/dev/null \
  || fail "not every source contributed over a direct path: $res"
note "two sources: $(echo "$res" | jq -c '[.sources[] | {bytes, path_type, setup_ms}]')"

# Not overwritten without --force; overwritten with it.
if "$LEAF" get --state-dir "$T/a" "$cid" 2>"$T/err"; then fail "existing file overwritten"; fi
grep -q "already exists" "$T/err" || fail "unclear: $(cat "$T/err")"
"$LEAF" get --state-dir "$T/a" --force "$cid" >/dev/null || fail "--force did not overwrite"

# A source killed mid-transfer: the other one finishes.
rm -f "$path"
"$LEAF" get --state-dir "$T/a" --json -o "$T/second.mkv" "$cid" >"$T/second.out" 2>&1 &
getter=$!
wait_for 20 sh -c "[ -s '$T/.canopy-$cid.part' ]"
sleep 0.5
kill -9 "$PID_c"
wait "$getter" || fail "download did not survive losing a source: $(cat "$T/second.out")"
cmp "$T/second.mkv" "$T/b-share/Big Movie.mkv" || fail "bytes differ after losing a source"
note "source killed mid-transfer: completed from the other"

# The downloader killed mid-transfer resumes with only the missing chunks.
"$LEAF" get --state-dir "$T/a" -o "$T/third.mkv" "$cid" >/dev/null 2>&1 &
getter=$!
wait_for 20 sh -c "[ \$(stat -c %s '$T/.canopy-$cid.part' 2>/dev/null || echo 0) -gt 10000000 ]" \
  || fail "transfer did not start"
kill -9 "$PID_a"; wait "$getter" 2>/dev/null || true
start_leaf a 1 "${ICE[@]}"
out=$("$LEAF" get --state-dir "$T/a" --json -o "$T/third.mkv" "$cid") || fail "resume failed: $out"
moved=$(echo "$out" | tail -n 1 | jq '[.sources[].bytes] | add')
cmp "$T/third.mkv" "$T/b-share/Big Movie.mkv" || fail "bytes differ after resume"
grep -q "resuming" "$T/a.log" || fail "no resume logged"
[ "$moved" -lt 60000000 ] || fail "resume moved the whole file again ($moved bytes)"
note "resumed: $moved of 60000000 bytes moved after the restart"

# The `get` command interrupted (Ctrl-C): the daemon carries on, and asking
# again follows the running download instead of starting a second one.
"$LEAF" get --state-dir "$T/a" -o "$T/fourth.mkv" "$cid" >/dev/null 2>&1 &
cli=$!
wait_for 20 test -e "$T/.canopy-$cid.part" || fail "interrupted get did not start"
kill -INT "$cli"; wait "$cli" 2>/dev/null || true
out=$("$LEAF" get --state-dir "$T/a" --json -o "$T/fourth.mkv" "$cid" 2>&1) || echo "$out" | grep -q "already exists" \
  || fail "asking again after an interrupted get failed: $out"
cmp "$T/fourth.mkv" "$T/b-share/Big Movie.mkv" || fail "bytes differ after an interrupted get"
note "interrupted get: the daemon finished it; asking again followed it"

# A source whose file went bad on disk after it was published (no rescan):
# its chunks fail verification (or it refuses the tree); it is dropped and
# the file still completes, correct, from the honest source.
mkdir -p "$T/bad-share"
cp "$T/b-share/small.bin" "$T/bad-share/small.bin"
start_leaf bad 2 "${ICE[@]}" --rescan-s 0
wait_for 15 sh -c "[ \$('$LEAF' search --state-dir '$T/a' --json --ttl 1 small | grep -c content_id) -eq 2 ]" \
  || fail "small.bin not published twice"
dd if=/dev/urandom of="$T/bad-share/small.bin" bs=1M count=19 conv=notrunc status=none
scid=$(search a --ttl 1 small | jq -r .content_id | head -1)
out=$("$LEAF" get --state-dir "$T/a" --json -o "$T/small.bin" "$scid") || fail "get with a bad source failed: $out"
cmp "$T/small.bin" "$T/b-share/small.bin" || fail "a corrupt source's bytes got through"
badid=$(leaf_id bad)
echo "$out" | tail -n 1 | jq -e --arg p "$badid" '[.sources[] | select(.peer == $p) | .bytes] | add // 0 | . < 20000000' >/dev/null \
  || fail "the corrupt source delivered the whole file?"
grep -Eq "failed verification|does not have the file" "$T/a.log" || fail "the bad source was not detected"
note "corrupt source dropped ($(grep -Eo "failed verification|does not have the file" "$T/a.log" | head -1)); file verified"

# A full disk: a clear error naming it, and nothing half-written in place.
if [ "$(id -u)" -eq 0 ]; then
  mkdir -p "$T/tiny"
  mount -t tmpfs -o size=8m tmpfs "$T/tiny"
  if "$LEAF" get --state-dir "$T/a" -o "$T/tiny/movie.mkv" "$cid" 2>"$T/err"; then
    umount "$T/tiny"; fail "a download to a full disk succeeded"
  fi
  [ ! -e "$T/tiny/movie.mkv" ] || { umount "$T/tiny"; fail "a partial file took the final name"; }
  umount "$T/tiny"
  grep -q "disk full" "$T/err" || fail "unclear: $(cat "$T/err")"
  note "full disk: $(cat "$T/err")"
fi

# Unknown content id: a clear error, non-zero.
if "$LEAF" get --state-dir "$T/a" "$(printf '%064d' 0)" 2>"$T/err"; then fail "unknown id succeeded"; fi
grep -q "no leaf shares" "$T/err" || fail "unclear: $(cat "$T/err")"
echo "transfer: ok"
