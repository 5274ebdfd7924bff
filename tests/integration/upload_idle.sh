#!/usr/bin/env bash
# A downloader that vanishes (kill -9: no FIN, like a sleeping laptop) does
# not keep its upload links on the source: an inbound link silent for the
# idle timeout ends and gives its offer-gate slot back (a peer may hold
# OFFERGATE_PER_PEER = 4). Killed five times mid-transfer, the same
# downloader identity then still downloads from that source. The timeout is
# 60 s; the test sets it to 3 s (CANOPY_UPLOAD_IDLE_MS, for tests only).
# Without the timeout the fifth and later offers are refused for good.
. "$(dirname "$0")/lib.sh"
IDLE_MS=3000

start_sn s1 1 --no-discovery --stun "127.0.0.1:$(port 51)"
mkdir -p "$T/b-share"
head -c 60000000 /dev/urandom >"$T/b-share/big.bin"
ICE=(--ice-local 127.0.0.1)
CANOPY_UPLOAD_IDLE_MS=$IDLE_MS start_leaf b 1 "${ICE[@]}"
start_leaf a 1 "${ICE[@]}"
cid=$(search a --ttl 1 big | jq -r .content_id | head -1)
[ ${#cid} -eq 64 ] || fail "no content id found"

idle_ended() { [ "$(grep -c "sent nothing for $IDLE_MS ms" "$T/b.log")" -ge "$1" ]; }
for i in 1 2 3 4 5; do
  # Four dead links fill the downloader's share on b: the fifth round waits
  # for them to time out (the bound is the idle timeout, plus margin for a
  # loaded machine). Without the timeout they never do.
  [ $i -lt 5 ] || wait_for $((IDLE_MS / 1000 + 20)) idle_ended 4 \
    || fail "the dead downloader's upload links did not end within the idle timeout"
  "$LEAF" get --state-dir "$T/a" -o "$T/got.bin" "$cid" >/dev/null 2>&1 &
  getter=$!
  wait_for 30 sh -c "s=\$(stat -c %s '$T'/.canopy-$cid-*.part 2>/dev/null | head -1); [ \"\${s:-0}\" -gt 0 ]" \
    || fail "round $i: the transfer did not start"
  kill -9 "$PID_a"; wait "$getter" 2>/dev/null || true; wait "$PID_a" 2>/dev/null || true
  rm -f "$T"/.canopy-$cid-*.part
  start_leaf a 1 "${ICE[@]}"
done
note "downloader killed mid-transfer 5 times"

# The source lets the dead links go, and a new download from the same
# identity works.
wait_for $((IDLE_MS / 1000 + 20)) idle_ended 5 || fail "the fifth dead link did not end"
t0=$(date +%s)
out=$(timeout 60 "$LEAF" get --state-dir "$T/a" --json -o "$T/got.bin" "$cid" 2>&1) \
  || fail "download after the kills failed: $out"
cmp "$T/got.bin" "$T/b-share/big.bin" || fail "bytes differ"
note "downloaded again after $(( $(date +%s) - t0 )) s; idle upload links ended: $(grep -c "sent nothing for" "$T/b.log")"
echo "upload_idle: ok"
