#!/usr/bin/env bash
# Downloads between leaves over ICE on loopback: a file shared by two leaves
# comes from both, verified; a source killed mid-transfer is replaced by the
# other; a downloader killed mid-transfer resumes with only the missing
# chunks; an existing file is not overwritten; leaves that lie about a file's
# size do not stop it; a share's symlink leads nowhere outside it; a full
# disk and an unknown id fail clearly.
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
wait_for 20 sh -c "[ -s \"\$(ls '$T'/.canopy-$cid-*.part 2>/dev/null | head -1)\" ]"
sleep 0.5
kill -9 "$PID_c"
wait "$getter" || fail "download did not survive losing a source: $(cat "$T/second.out")"
cmp "$T/second.mkv" "$T/b-share/Big Movie.mkv" || fail "bytes differ after losing a source"
note "source killed mid-transfer: completed from the other"

# The downloader killed mid-transfer resumes with only the missing chunks.
"$LEAF" get --state-dir "$T/a" -o "$T/third.mkv" "$cid" >/dev/null 2>&1 &
getter=$!
wait_for 20 sh -c "s=\$(stat -c %s '$T'/.canopy-$cid-*.part 2>/dev/null | head -1); [ \"\${s:-0}\" -gt 10000000 ]" \
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
wait_for 20 sh -c "ls '$T'/.canopy-$cid-*.part >/dev/null 2>&1" || fail "interrupted get did not start"
kill -TERM "$cli"; wait "$cli" 2>/dev/null || true  # (background jobs ignore SIGINT)
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

# Leaves that lie about the size of a file they publish under its content
# id, both on the downloader's own super node so their hits come first: one
# says a petabyte (more than the disk holds: given up at once), one says a
# byte more than the truth and never answers (given up when its link times
# out). The file still comes, from the honest source, whole.
"$HOSTILE" liar "127.0.0.1:$(port 1)" small.bin "$scid" 1000000000000000 40 >"$T/liar1.log" 2>&1 &
PIDS+=($!)
"$HOSTILE" liar "127.0.0.1:$(port 1)" small.bin "$scid" 20000001 40 >"$T/liar2.log" 2>&1 &
PIDS+=($!)
wait_for 10 sh -c "[ \$('$LEAF' search --state-dir '$T/a' --json --ttl 1 --content-id '$scid' | grep -c content_id) -ge 4 ]" \
  || fail "the liars' entries are not found"
out=$("$LEAF" get --state-dir "$T/a" --json -o "$T/small-liars.bin" "$scid") || fail "liars stopped the download: $out"
cmp "$T/small-liars.bin" "$T/b-share/small.bin" || fail "bytes differ with liars about"
[ "$(stat -c %s "$T/small-liars.bin")" -eq 20000000 ] || fail "wrong size with liars about"
grep -q "no source proved 20000001 bytes" "$T/a.log" || fail "the plausible liar was not given up"
note "liars about the size (1 PB, +1 byte): given up, file whole from $(echo "$out" | tail -n 1 | jq -c '[.sources[] | {bytes, path_type}]')"

# A `get` to another path while the same file is still coming to one:
# refused, naming where it goes (a ghost file whose one source never answers
# keeps the first download from finishing).
ghost=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$HOSTILE" liar "127.0.0.1:$(port 1)" ghost.bin "$ghost" 1000000 40 >"$T/liar3.log" 2>&1 &
PIDS+=($!)
wait_for 10 sh -c "'$LEAF' search --state-dir '$T/a' --json --ttl 0 --content-id '$ghost' | grep -q content_id" \
  || fail "the ghost file is not found"
"$LEAF" get --state-dir "$T/a" -o "$T/ghost-1" "$ghost" >/dev/null 2>&1 &
cli=$!
ghost_running() {
  "$LEAF" downloads --state-dir "$T/a" --json |
    jq -e --arg c "$ghost" '.downloads[] | select(.content_id == $c and .state == "running")' >/dev/null
}
wait_for 10 ghost_running || fail "the ghost download did not start"
kill -TERM "$cli"; wait "$cli" 2>/dev/null || true  # (background jobs ignore SIGINT)
# Paused, it stays (its one source would time out otherwise) and still counts.
gid=$("$LEAF" downloads --state-dir "$T/a" --json | jq --arg c "$ghost" '.downloads[] | select(.content_id == $c) | .id' | head -1)
"$LEAF" downloads pause --state-dir "$T/a" "$gid" >/dev/null || fail "cannot pause the ghost download (id $gid)"
if out=$("$LEAF" get --state-dir "$T/a" -o "$T/ghost-2" "$ghost" 2>&1); then
  fail "a get to another path followed the running download"
fi
[[ $out == *"already being downloaded to $T/ghost-1"* ]] || fail "unclear: $out"
note "a second get to another path: $(echo "$out" | tail -n 1)"

# A symlink in a share that points outside it: never published, never served,
# even when it replaces a shared file after the scan.
mkdir -p "$T/outside" "$T/e-share"
head -c 3000000 /dev/urandom >"$T/outside/secret.bin"
ln -s "$T/outside/secret.bin" "$T/e-share/secret-link.bin"
head -c 3000000 /dev/urandom >"$T/e-share/swapped.bin"
start_leaf e 2 "${ICE[@]}" --rescan-s 0
wait_for 15 sh -c "'$LEAF' search --state-dir '$T/a' --json --ttl 1 swapped | grep -q content_id" \
  || fail "swapped.bin not published"
[ "$(hits a --ttl 1 secret)" -eq 0 ] || fail "a symlink to a file outside the share was published"
wcid=$(search a --ttl 1 swapped | jq -r .content_id | head -1)
# The bytes outside become those the id promises, and the shared name a
# link to them: the id alone would now verify, so only the link rule stands
# between a peer and the outside file.
cp "$T/e-share/swapped.bin" "$T/outside/swapped.bin"
ln -sf "$T/outside/swapped.bin" "$T/e-share/swapped.bin"
if out=$("$LEAF" get --state-dir "$T/a" -o "$T/swapped.bin" "$wcid" 2>&1); then
  fail "a file reached through a symlink out of the share was served"
fi
note "symlink out of the share: not published; a shared file swapped for one is not served ($(echo "$out" | grep "canopy-leaf get:" | cut -c1-160))"

# A full disk: a clear error naming it, and nothing half-written in place;
# first when the file cannot fit from the start, then when the space runs
# out mid-transfer (a sparse part file makes it look as if it fits).
if [ "$(id -u)" -eq 0 ]; then
  mkdir -p "$T/tiny"
  mount -t tmpfs -o size=8m tmpfs "$T/tiny"
  if "$LEAF" get --state-dir "$T/a" -o "$T/tiny/movie.mkv" "$cid" 2>"$T/err"; then
    umount "$T/tiny"; fail "a download to a full disk succeeded"
  fi
  [ ! -e "$T/tiny/movie.mkv" ] || { umount "$T/tiny"; fail "a partial file took the final name"; }
  grep -q "bytes free beside $T/tiny/movie.mkv" "$T/err" || { umount "$T/tiny"; fail "unclear: $(cat "$T/err")"; }
  note "no room: $(cat "$T/err")"
  # (the part file's name: .canopy-CID-TAG.part, TAG from the leaf's id and the target)
  tag=$(printf '%s\0%s' "$(leaf_id a)" "$T/tiny/movie.mkv" | sha256sum | cut -c1-16)
  truncate -s 60000000 "$T/tiny/.canopy-$cid-$tag.part"
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
