#!/usr/bin/env bash
# Issue 11 finding 3: leaves that publish a file's content id under 16 names
# each and never answer an ICE offer, on the downloader's own super node and
# newer there than the honest source, do not block the download: `get`
# finishes with the right bytes well before a silent source's link times out
# (10 s), every time.
. "$(dirname "$0")/lib.sh"

start_sn s1 1 --no-discovery --stun "127.0.0.1:$(port 51)"
ICE=(--ice-local 127.0.0.1)
mkdir -p "$T/honest-share"
head -c 4000000 /dev/urandom >"$T/honest-share/wanted.bin"
start_leaf honest 1 "${ICE[@]}"
start_leaf a 1 "${ICE[@]}"
wait_for 10 sh -c "'$LEAF' search --state-dir '$T/a' --json --ttl 0 wanted | grep -q content_id" \
  || fail "the honest file is not found"
cid=$(search a --ttl 0 wanted | jq -r .content_id | head -1)

# get_within NAME SECONDS: one get to $T/NAME, timed; checks the bytes.
get_within() {
  local t0 t1 out
  t0=$(date +%s%N)
  out=$(timeout 30 "$LEAF" get --state-dir "$T/a" --json -o "$T/$1" "$cid" 2>&1) \
    || fail "get $1 failed: $out (super node: $("$SN" stats --state-dir "$T/s1" --json |
      jq -c '{signals_dropped, signals_delivered, stun_requests, stun_dropped}'))"
  t1=$(date +%s%N)
  cmp "$T/$1" "$T/honest-share/wanted.bin" || fail "get $1: bytes differ"
  local ms=$(( (t1 - t0) / 1000000 ))
  [ "$ms" -lt $(( $2 * 1000 )) ] || fail "get $1 took $ms ms (bound $2 s): the liars held it up"
  note "get $1: $ms ms from $(echo "$out" | tail -n 1 | jq -c '[.sources[] | .peer[0:8]]')"
}

# One liar, 16 names.
"$HOSTILE" liarnames "127.0.0.1:$(port 1)" wanted.bin "$cid" 4000000 120 16 >"$T/liar0.log" 2>&1 &
PIDS+=($!)
wait_for 10 sh -c "[ \$('$LEAF' search --state-dir '$T/a' --json --ttl 0 --content-id '$cid' | grep -c content_id) -ge 2 ]" \
  || fail "the liar's entries are not found"
for i in 1 2 3; do get_within "one-liar-$i" 6; done
n=$(search a --ttl 0 --content-id "$cid" | grep -c content_id)
[ "$n" -eq 2 ] || fail "expected one hit per leaf (honest + liar), got $n"

# Six such liars: more than the 4 slots of a download, so the honest source
# may be left out of the first round; a liar's slot is given up after 5 s
# while the honest one waits.
for i in 1 2 3 4 5; do
  "$HOSTILE" liarnames "127.0.0.1:$(port 1)" "wanted $i.bin" "$cid" 4000000 120 16 >"$T/liar$i.log" 2>&1 &
  PIDS+=($!)
done
wait_for 10 sh -c "[ \$('$LEAF' search --state-dir '$T/a' --json --ttl 0 --content-id '$cid' | grep -c content_id) -eq 7 ]" \
  || fail "expected 7 hits (one per leaf)"
for i in 1 2 3; do get_within "six-liars-$i" 15; done
note "liar.sh: ok"
