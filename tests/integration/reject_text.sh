#!/usr/bin/env bash
# A source's refusal text is the peer's own words: it reaches the user only
# escaped, and cut on a character boundary. A hostile source publishes a
# file and refuses every download with an OSC title sequence, BEL, CR and
# 60 two-byte characters (a cut at 100 bytes would split one). `get` tries
# it again after the back-off (a refusal is not a failure), then fails; its
# stderr holds no raw control byte, and `downloads --json` is valid JSON
# whose error holds the text cut on a character boundary.
. "$(dirname "$0")/lib.sh"

start_sn s1 1 --no-discovery --stun "127.0.0.1:$(port 51)"
start_leaf a 1 --ice-local 127.0.0.1
cid=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
text=$'\e]0;pwned\a\r'
for i in $(seq 60); do text+=$'\u00e9'; done
"$HOSTILE" rejecter "127.0.0.1:$(port 1)" "refuser.bin" "$cid" 300000 80 "$text" >"$T/hostile.log" 2>&1 &
PIDS+=($!)
wait_for 10 sh -c "'$LEAF' search --state-dir '$T/a' --json --ttl 0 refuser | grep -q content_id" \
  || fail "the hostile source is not found"

t0=$(date +%s)
if timeout 80 "$LEAF" get --state-dir "$T/a" "$cid" >"$T/get.out" 2>"$T/get.err"; then
  fail "the download succeeded from a source that refuses everything"
fi
took=$(( $(date +%s) - t0 ))
grep -q "the peer refused" "$T/get.err" || fail "the refusal is not told: $(cat -v "$T/get.err")"
# raw_controls FILE: a C0 control other than \n, DEL, or a C1 control (UTF-8)
if LC_ALL=C grep -qP '[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]' "$T/get.err"; then
  fail "get printed a raw control byte: $(cat -v "$T/get.err")"
fi
grep -qF '\x1B]0;pwned\x07\x0D' "$T/get.err" || fail "the text is not shown escaped: $(cat -v "$T/get.err")"
tries=$(grep -c "the peer refused" "$T/a.log" || true)
[ "$tries" -ge 2 ] || fail "the refusing source was not tried again ($tries tries)"
note "get failed after $took s and $tries refusals; stderr: $(cut -c1-110 "$T/get.err" | head -1)..."

"$LEAF" downloads --state-dir "$T/a" --json >"$T/list.json" || fail "downloads failed"
err=$(jq -r '.downloads[0].error' "$T/list.json") || fail "downloads --json is not valid JSON"
printf '%s' "$err" | iconv -f UTF-8 -t UTF-8 >/dev/null || fail "the stored error is not valid UTF-8"
echo "$err" | grep -q "the peer refused: " || fail "unexpected error: $err"
note "stored error is valid UTF-8 JSON, the text cut on a character boundary"
echo "reject_text: ok"
