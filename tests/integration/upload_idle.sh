#!/usr/bin/env bash
# A downloader that vanishes (kill -9: no FIN, like a sleeping laptop) does
# not keep its upload links on the source: an inbound link silent for the
# idle timeout ends and gives its offer-gate slot back (a peer may hold
# OFFERGATE_PER_PEER = 4). The timeout is 60 s; the test sets it to 15 s
# (CANOPY_UPLOAD_IDLE_MS, for tests only).
#
# Killed four times mid-transfer, the same downloader identity then asks
# again at once: the source refuses it ("busy", its share is held by the
# dead links), and the download tries again after a back-off (4, 8, 16 s)
# instead of counting the source as bad, and completes once the dead links
# have timed out. Without the timeout it never completes; with a refusal
# counted as a failure it fails at once.
#
# Then five gets at once from one source: the downloader links at most 4 at
# a time to one peer (its share on the source), so the fifth waits for a
# free one instead of being refused.
. "$(dirname "$0")/lib.sh"
IDLE_MS=16000

start_sn s1 1 --no-discovery --stun "127.0.0.1:$(port 51)"
mkdir -p "$T/b-share"
head -c 60000000 /dev/urandom >"$T/b-share/big.bin"
for i in 1 2 3 4 5; do head -c 30000000 /dev/urandom >"$T/b-share/many$i.bin"; done
ICE=(--ice-local 127.0.0.1)
CANOPY_UPLOAD_IDLE_MS=$IDLE_MS start_leaf b 1 "${ICE[@]}"
start_leaf a 1 "${ICE[@]}"
cid=$(search a --ttl 1 big | jq -r .content_id | head -1)
[ ${#cid} -eq 64 ] || fail "no content id found"

idle_ended() { [ "$(grep -c "sent nothing for $IDLE_MS ms" "$T/b.log")" -ge "$1" ]; }
for i in 1 2 3 4; do
  "$LEAF" get --state-dir "$T/a" -o "$T/got.bin" "$cid" >/dev/null 2>&1 &
  getter=$!
  wait_for 30 sh -c "s=\$(stat -c %s '$T'/.canopy-$cid-*.part 2>/dev/null | head -1); [ \"\${s:-0}\" -gt 0 ]" \
    || fail "round $i: the transfer did not start"
  kill -9 "$PID_a"; wait "$getter" 2>/dev/null || true; wait "$PID_a" 2>/dev/null || true
  [ $i -gt 1 ] || first_kill=$(date +%s)
  rm -f "$T"/.canopy-$cid-*.part
  start_leaf a 1 "${ICE[@]}"
done
note "downloader killed mid-transfer 4 times"

t0=$(date +%s)
out=$(timeout 80 "$LEAF" get --state-dir "$T/a" --json -o "$T/got.bin" "$cid" 2>&1) \
  || fail "download after the kills failed: $out"
cmp "$T/got.bin" "$T/b-share/big.bin" || fail "bytes differ"
idle_ended 4 || fail "the dead downloader's upload links did not end as idle"
if ! grep -q "the peer refused: busy" "$T/a.log"; then
  # The first dead link may have timed out before the get if the rounds
  # took nearly the idle timeout (a very loaded machine): then the share
  # was never full and there was nothing to refuse.
  [ $((t0 - first_kill)) -ge $((IDLE_MS / 1000 - 3)) ] \
    || fail "the source did not refuse while the dead links held the share"
  note "(rounds took $((t0 - first_kill)) s: the dead links were gone before the get; no refusal to wait out)"
fi
note "downloaded again after $(( $(date +%s) - t0 )) s ($(grep -c "the peer refused" "$T/a.log" || true) refusal(s) waited out); idle upload links ended: $(grep -c "sent nothing for" "$T/b.log")"

refused_before=$(grep -c "the peer refused" "$T/a.log" || true)
cids=()
for i in 1 2 3 4 5; do
  c=$(search a --ttl 1 "many$i" | jq -r .content_id | head -1)
  [ ${#c} -eq 64 ] || fail "many$i not found"
  cids+=("$c")
done
pids=()
for i in 1 2 3 4 5; do
  "$LEAF" get --state-dir "$T/a" -o "$T/many$i.bin" "${cids[$((i - 1))]}" >"$T/many$i.out" 2>&1 &
  pids+=($!)
done
for i in 1 2 3 4 5; do
  wait "${pids[$((i - 1))]}" || fail "get many$i failed: $(cat "$T/many$i.out")"
  cmp "$T/many$i.bin" "$T/b-share/many$i.bin" || fail "many$i differs"
done
[ "$(grep -c "the peer refused" "$T/a.log" || true)" -eq "$refused_before" ] \
  || fail "a get was refused: the downloader offered more links than its share"
note "five gets at once from one source: all complete, none refused ($(grep -c "already (its share)" "$T/a.log" || true) link(s) put off for the share)"
# A downloader that shuts down (SIGTERM) mid-transfer says so: its links'
# FINs go out before it exits, and the source ends the upload at once, not
# after the idle timeout.
ended_before=$(grep -c "(upload) ended" "$T/b.log" || true)
"$LEAF" get --state-dir "$T/a" -o "$T/term.bin" "$cid" >/dev/null 2>&1 &
getter=$!
wait_for 30 sh -c "s=\$(stat -c %s '$T'/.canopy-$cid-*.part 2>/dev/null | head -1); [ \"\${s:-0}\" -gt 0 ]" \
  || fail "the transfer to be interrupted did not start"
kill -TERM "$PID_a"; wait "$getter" 2>/dev/null || true; wait "$PID_a" 2>/dev/null || true
upload_ended() { [ "$(grep -c "(upload) ended" "$T/b.log" || true)" -gt "$ended_before" ]; }
wait_for 5 upload_ended || fail "the source did not end the upload when the downloader shut down"
grep "(upload) ended" "$T/b.log" | tail -1 | grep -vq "sent nothing" || fail "ended only as idle"
note "downloader shut down mid-transfer: the source ended the upload at once ($(grep "(upload) ended" "$T/b.log" | tail -1 | sed 's/.*ended: //'))"
echo "upload_idle: ok"
