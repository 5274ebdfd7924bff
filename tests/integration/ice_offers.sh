#!/usr/bin/env bash
# ICE offers from a hostile leaf (issue 11, finding 8): a leaf sends the
# victim leaf many OFFERs, each with 100 candidates on addresses it chose.
# The victim refuses what is over its per-peer share, checks only a few
# candidates of each offer it takes, frees a slot nobody uses, and still
# serves an honest download meanwhile.
. "$(dirname "$0")/lib.sh"

start_sn s1 1 --no-discovery --stun "127.0.0.1:$(port 51)"
mkdir -p "$T/victim-share"
head -c 3000000 /dev/urandom >"$T/victim-share/wanted file.bin"
ICE=(--ice-local 127.0.0.1)
start_leaf victim 1 "${ICE[@]}"
start_leaf honest 1 "${ICE[@]}"
wait_for 10 sh -c "[ \$(\"$LEAF\" search --state-dir '$T/honest' --json --ttl 1 wanted | grep -c content_id) -ge 1 ]" \
  || fail "the victim's file is not found"
cid=$(search honest --ttl 1 wanted | jq -r .content_id | head -1)
victim=$(leaf_id victim)

OFFERS=${OFFERS:-40}
"$HOSTILE" offers "127.0.0.1:$(port 1)" "$victim" "$OFFERS" 20 >"$T/attack.out" &
attacker=$!
PIDS+=($attacker)
# 4 offers a second for 9 s: without the defence the victim's inbound slots
# were nearly all held by then (each up to 15 s; 4 of the 40 offers found
# them all taken). The honest download succeeded then too (slots free up
# as the hostile checks fail): what tells the defence apart are the counts
# below.
sleep 9

# An honest download from the victim while the offers keep coming.
out=$(timeout 40 "$LEAF" get --state-dir "$T/honest" --json -o "$T/got.bin" "$cid") \
  || fail "honest download failed during the offer flood: $out"
cmp "$T/got.bin" "$T/victim-share/wanted file.bin" || fail "downloaded bytes differ"
note "honest download during the flood: ok"
# Finding 16: both ends moved the link's datagram tags to keys from the
# secure channel, which the super node does not know.
grep -q "datagram tags keyed from the secure channel" "$T/honest.log" \
  || fail "the downloader's datagram tags stayed on the ICE-password keys"
grep -q "datagram tags keyed from the secure channel" "$T/victim.log" \
  || fail "the source's datagram tags stayed on the ICE-password keys"

wait $attacker || fail "the attacker failed"
read -r _ sent _ answered _ refused _ checks <"$T/attack.out"
note "attack: $sent offers of 100 candidates, $answered answered, $refused refused, $checks STUN checks to the attacker's addresses"
[ "$sent" -eq "$OFFERS" ] || fail "the attacker sent $sent offers"
# Without the defence 36 of 40 offers were answered and drew 10,800 checks.
# Now one peer gets OFFERGATE_BURST offers plus one per OFFERGATE_REFILL_MS
# (leafnode/offergate.h: 4 + 20 s / 4 s, so at most 9 plus one of slack),
# and each drew at most CANDIDATE_MAX_REMOTE (10) candidates' checks, each
# sent at most 3 times, against our one loopback candidate.
[ "$refused" -gt 0 ] || fail "no offer was refused"
[ "$answered" -le "${MAX_ANSWERED:-10}" ] || fail "$answered offers from one peer were answered"
[ "$checks" -le "${MAX_CHECKS:-300}" ] && [ "$checks" -le $((answered * 30)) ] \
  || fail "the victim sent $checks checks to the attacker's addresses ($answered offers taken)"
kill -0 "$PID_victim" || fail "the victim died"
echo "ice_offers: ok"
