#!/usr/bin/env bash
# Issue 11 finding 11: names from the network reach neither a terminal nor
# the disk raw. A leaf shares a file whose name holds an escape sequence, a
# carriage return and U+202E; a hostile leaf publishes the same content id as
# "../../" plus an OSC title sequence, BEL, CR, a leading dash and U+202E.
# `search` prints no raw control or bidi byte (its --json keeps the exact
# name); `get` saves the file under a clean name inside the download folder;
# `downloads` prints no raw control byte either.
. "$(dirname "$0")/lib.sh"

start_sn s1 1 --no-discovery --stun "127.0.0.1:$(port 51)"
ICE=(--ice-local 127.0.0.1)
mkdir -p "$T/src-share"
evil=$'-\e[2J\rtotally safe \u202Egnp.sh'
head -c 300000 /dev/urandom >"$T/src-share/$evil"
start_leaf src 1 "${ICE[@]}"
start_leaf a 1 "${ICE[@]}"
wait_for 10 sh -c "'$LEAF' search --state-dir '$T/a' --json --ttl 0 totally | grep -q content_id" \
  || fail "the file is not found"
cid=$(search a --ttl 0 totally | jq -r .content_id | head -1)
liar=$'../../\e]0;pwned\a\r-rm \u202Etxt.exe'
"$HOSTILE" liar "127.0.0.1:$(port 1)" "$liar" "$cid" 300000 60 >"$T/liar.log" 2>&1 &
PIDS+=($!)
wait_for 10 sh -c "[ \$('$LEAF' search --state-dir '$T/a' --json --ttl 0 --content-id '$cid' | grep -c content_id) -ge 2 ]" \
  || fail "the hostile name is not found"

# raw_controls FILE: true if FILE holds a C0 control other than \n, DEL, a C1
# control (as UTF-8) or a bidi control.
raw_controls() {
  LC_ALL=C grep -qP '[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\x8e\x8f\xaa-\xae\xa8\xa9]|\xe2\x81[\xa6-\xa9]|\xd8\x9c' "$1"
}

"$LEAF" search --state-dir "$T/a" --ttl 0 --content-id "$cid" >"$T/search.out"
grep -q "2 hits" "$T/search.out" || fail "expected 2 hits: $(cat -v "$T/search.out")"
if raw_controls "$T/search.out"; then fail "raw control bytes in search output: $(cat -v "$T/search.out")"; fi
grep -qF '\x1B[2J\x0Dtotally safe \u{202E}gnp.sh' "$T/search.out" || fail "name not shown escaped: $(cat -v "$T/search.out")"
note "search shows: $(grep -F 'totally' "$T/search.out" | cut -c1-60)"
# JSON stays exact (control characters escaped by JSON's own rules).
search a --ttl 0 --content-id "$cid" >"$T/search.json"
LC_ALL=C grep -qP '[\x00-\x09\x0b-\x1f]' "$T/search.json" && fail "raw C0 byte in JSON output"
jq -r .name "$T/search.json" | grep -qxF -e "$evil" || fail "the JSON name is not exact"
jq -r .name "$T/search.json" | grep -qF "pwned" || fail "the hostile name is missing from the JSON"

out=$("$LEAF" get --state-dir "$T/a" "$cid" 2>"$T/get.err") || fail "get failed: $(cat -v "$T/get.err")"
echo "$out" >"$T/get.out"
if raw_controls "$T/get.out" || raw_controls "$T/get.err"; then fail "raw control bytes in get output"; fi
n=$(find "$T/a/downloads" -mindepth 1 ! -name '.canopy-*' | wc -l)
[ "$n" -eq 1 ] || fail "expected one file in the download folder: $(ls -la "$T/a/downloads" | cat -v)"
f=$(find "$T/a/downloads" -mindepth 1 ! -name '.canopy-*')
name=$(basename "$f")
[ "$(dirname "$f")" = "$T/a/downloads" ] || fail "saved outside the download folder: $f"
printf '%s' "$name" >"$T/name"
if raw_controls "$T/name"; then fail "raw control bytes in the saved name: $(cat -v "$T/name")"; fi
case "$name" in .* | -* | *\\*) fail "unclean saved name: $(cat -v "$T/name")" ;; esac
cmp "$f" "$T/src-share/$evil" || fail "bytes differ"
# Nothing was written outside the download folder.
[ -z "$(find "$T" -maxdepth 2 -name '*txt.exe' -o -maxdepth 2 -name '*pwned*' | grep -v "^$T/a/downloads/")" ] \
  || fail "a file escaped the download folder"
note "saved as: $name"

"$LEAF" downloads --state-dir "$T/a" >"$T/list.out"
if raw_controls "$T/list.out"; then fail "raw control bytes in the downloads list: $(cat -v "$T/list.out")"; fi
note "names.sh: ok"
