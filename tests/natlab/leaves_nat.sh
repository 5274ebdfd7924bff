#!/usr/bin/env bash
# leaves_nat.sh - the real daemons through real NATs: a super node and coturn
# on the public side, leaves behind home routers in network namespaces, and
# `canopy-leaf get` between them. The super node answers STUN itself and
# hands out coturn credentials; the leaves find each other by search.
#
#   (a) cone <-> cone: a direct pair, server-reflexive on both sides, 50 MB
#   (b) symmetric <-> symmetric: relayed through coturn
#   (c) cone <-> symmetric: connects and transfers
#   (d) two leaves on one LAN behind one NAT: host candidates
#   (e) two sources behind different NATs, one killed mid-transfer (after
#       a fifth of the file, both sources sending): it completes from the
#       other
#   (f) symmetric <-> symmetric under a super node with no TURN configured:
#       fails, and says why
#   (g) a source that serves corrupted chunks (its file went bad after it
#       described it): detected and dropped; the file completes from the
#       honest source, correct
# Every case prints the selected pair. Exit 77 (skipped) when not root.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
: "${CANOPY_BIN:?set CANOPY_BIN to a build directory}"
BIN=$(cd "$CANOPY_BIN" && pwd)
SN="$BIN/supernode/canopy-supernode"
LEAF="$BIN/leafnode/canopy-leaf"
MB=${LEAVES_NAT_MB:-50}

make_nat coneA cone 10.1.0
make_nat coneB cone 10.2.0
make_nat symC symmetric 10.3.0
make_nat symD symmetric 10.4.0
make_host a1 coneA
make_host a2 coneA
make_host b1 coneB
make_host c1 symC
make_host d1 symD
make_host c2 symC
make_host d2 symD
start_coturn
printf '%s\n' "$TURN_SECRET" >"$NL_T/turn.secret"
chmod 600 "$NL_T/turn.secret"

start_in pub sn "$SN" --listen "$PUB_IP:7400" --stun "$PUB_IP:3479" --turn "$PUB_IP:3478" \
  --turn-secret-file "$NL_T/turn.secret" --state-dir "$NL_T/sn" --keepalive-ms 2000
wait_for 5 test -S "$NL_T/sn/control.sock" || nl_fail "super node did not start"

leaf() { # leaf HOST: a leaf daemon in HOST's namespace sharing $NL_T/HOST-share
  mkdir -p "$NL_T/$1-share"
  start_in "$1" "leaf-$1" "$LEAF" --supernode "$PUB_IP:7400" --share "$NL_T/$1-share" \
    --state-dir "$NL_T/$1" --rescan-s 1 --keepalive-ms 2000 --log-level debug
  eval "LEAF_PID_$1=$NL_LAST_PID"
  wait_for 10 sh -c "'$LEAF' status --state-dir '$NL_T/$1' --json 2>/dev/null | jq -e .connected >/dev/null" \
    || nl_fail "leaf $1 did not connect"
}
for h in a1 a2 b1 c1 d1; do leaf "$h"; done

# share HOST NAME MB: a random file, found by search once published
share() {
  head -c $(($3 * 1000000)) /dev/urandom >"$NL_T/$1-share/$2"
  wait_for 10 sh -c "'$LEAF' search --state-dir '$NL_T/a1' --json --ttl 0 '$2' | grep -q content_id" \
    || nl_fail "$2 shared by $1 is not found"
}
cid_of() { "$LEAF" search --state-dir "$NL_T/a1" --json --ttl 0 "$1" | jq -r .content_id | head -1; }

FAILED=0
# get CASE HOST NAME EXPECT: HOST downloads NAME; EXPECT is direct|relayed|host|any
get() {
  local c=$1 h=$2 name=$3 want=$4 cid out res
  cid=$(cid_of "$name")
  local t0=$(date +%s%N)
  if ! out=$("$LEAF" get --state-dir "$NL_T/$h" --json -o "$NL_T/$h-$name" "$cid" 2>&1); then
    echo "  ($c) FAILED: $out"; FAILED=1; return
  fi
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  res=$(echo "$out" | tail -n 1)
  local orig; orig=$(ls "$NL_T"/*-share/"$name" | head -1)
  if ! cmp -s "$NL_T/$h-$name" "$orig"; then echo "  ($c) FAILED: bytes differ"; FAILED=1; return; fi
  local types; types=$(echo "$res" | jq -r '[.sources[].path_type] | unique | join(",")')
  local paths; paths=$(echo "$res" | jq -r '[.sources[].path] | join("; ")')
  local mbs; mbs=$(echo "$res" | jq --argjson ms "$ms" '.bytes / 1000000 / ($ms / 1000) | . * 10 | floor / 10')
  echo "  ($c) $h got $name: $types [$paths] in $ms ms ($mbs MB/s)"
  case $want in
    # Server-reflexive on both sides: our NAT's public mapping to theirs
    # (the far side may show as peer-reflexive when its check came first:
    # the same public mapping, learned from the check).
    direct) [[ $types == direct && $paths =~ ^srflx\ 203\.0\.113\.[0-9]+:[0-9]+\ -\>\ (srflx|prflx)\ 203\.0\.113\.[0-9]+:[0-9]+$ ]] || { echo "  ($c) FAILED: expected a server-reflexive pair on both sides"; FAILED=1; } ;;
    relayed) [[ $types == relayed ]] || { echo "  ($c) FAILED: expected a relayed pair"; FAILED=1; } ;;
    host) [[ $types == direct && $paths =~ ^host.*host ]] || { echo "  ($c) FAILED: expected host/host"; FAILED=1; } ;;
  esac
}

share b1 cone-file.bin "$MB"
get "a: cone-cone" a1 cone-file.bin direct
share d1 sym-file.bin 20
get "b: sym-sym" c1 sym-file.bin relayed
get "c: cone-sym" a1 sym-file.bin any
share a2 lan-file.bin 20
get "d: same LAN" a1 lan-file.bin host

# (e) two sources behind different NATs; one dies mid-transfer. Their
# uplinks are held to 40 Mbit/s each (tbf on the routers' WAN side) so the
# transfer takes seconds, and b1 is killed only once the download is under
# way: it must have delivered part of the file, d1 the rest.
head -c $((MB * 1000000)) /dev/urandom >"$NL_T/b1-share/two-src.bin"
cp "$NL_T/b1-share/two-src.bin" "$NL_T/d1-share/two-src.bin"
wait_for 10 sh -c "[ \$('$LEAF' search --state-dir '$NL_T/a1' --json --ttl 0 two-src | grep -c content_id) -eq 2 ]" \
  || nl_fail "two-src not shared twice"
cid=$(cid_of two-src.bin)
for r in coneB symD; do in_ns "$r" tc qdisc add dev wan root tbf rate 40mbit burst 64kb latency 100ms; done
"$LEAF" get --state-dir "$NL_T/a1" --json -o "$NL_T/a1-two" "$cid" >"$NL_T/two.out" 2>&1 &
getter=$!
two_done() { # bytes of two-src verified so far by a1's running download
  "$LEAF" downloads --state-dir "$NL_T/a1" --json |
    jq --arg c "$cid" '[.downloads[] | select(.content_id == $c and .state == "running") | .bytes_done] | add // 0'
}
under_way() { [ "$(two_done)" -ge $((MB * 200000)) ]; }
wait_for 60 under_way || true
at_kill=$(two_done)
stop_pid "$LEAF_PID_b1"
if wait "$getter" && cmp -s "$NL_T/a1-two" "$NL_T/d1-share/two-src.bin"; then
  res=$(tail -n 1 "$NL_T/two.out")
  n_src=$(jq '[.sources[] | select(.bytes > 0)] | length' <<<"$res")
  if [ "$at_kill" -lt $((MB * 200000)) ] || [ "$at_kill" -ge $((MB * 1000000)) ]; then
    echo "  (e) FAILED: the kill did not land mid-transfer ($at_kill of $((MB * 1000000)) bytes in)"; FAILED=1
  elif [ "$n_src" -ne 2 ]; then
    echo "  (e) FAILED: expected both sources to have sent part of the file: $res"; FAILED=1
  else
    echo "  (e) source killed at $at_kill of $((MB * 1000000)) bytes: completed from the other [$(jq -r '[.sources[] | "\(.bytes) bytes, \(.path_type) \(.path)"] | join("; ")' <<<"$res")]"
  fi
else
  echo "  (e) FAILED: $(tail -n 3 "$NL_T/two.out")"; FAILED=1
fi
for r in coneB symD; do in_ns "$r" tc qdisc del dev wan root 2>/dev/null || true; done
# (g) a source serving corrupted chunks. The bad leaf (on c2, no rescans)
# first serves the file alone, so it holds the tree; then half its copy is
# overwritten in place and d1 shares the good copy: a1's download gets bad
# chunks from one source, drops it and completes from the other.
mkdir -p "$NL_T/bad-share"
head -c $((MB * 1000000)) /dev/urandom >"$NL_T/bad-share/corrupt.bin"
start_in c2 leaf-bad "$LEAF" --supernode "$PUB_IP:7400" --share "$NL_T/bad-share" \
  --state-dir "$NL_T/bad" --rescan-s 0 --keepalive-ms 2000 --log-level debug
bad_pid=$NL_LAST_PID
wait_for 10 sh -c "'$LEAF' status --state-dir '$NL_T/bad' --json 2>/dev/null | jq -e .connected >/dev/null" \
  || nl_fail "the bad leaf did not connect"
wait_for 15 sh -c "'$LEAF' search --state-dir '$NL_T/a1' --json --ttl 0 corrupt.bin | grep -q content_id" \
  || nl_fail "corrupt.bin is not found"
ccid=$(cid_of corrupt.bin)
"$LEAF" get --state-dir "$NL_T/a2" -o "$NL_T/a2-corrupt" "$ccid" >/dev/null 2>&1 \
  || nl_fail "priming download from the bad leaf failed"
cp "$NL_T/bad-share/corrupt.bin" "$NL_T/d1-share/corrupt.bin"
wait_for 15 sh -c "[ \$('$LEAF' search --state-dir '$NL_T/a1' --json --ttl 0 corrupt.bin | grep -c content_id) -eq 2 ]" \
  || nl_fail "corrupt.bin not shared twice"
dd if=/dev/urandom of="$NL_T/bad-share/corrupt.bin" bs=1M count=$(( (MB + 1) / 2 )) conv=notrunc status=none
badid=$("$LEAF" status --state-dir "$NL_T/bad" --json | jq -r .id)
if out=$("$LEAF" get --state-dir "$NL_T/a1" --json -o "$NL_T/a1-corrupt" "$ccid" 2>&1) &&
   cmp -s "$NL_T/a1-corrupt" "$NL_T/d1-share/corrupt.bin"; then
  bad_bytes=$(tail -n 1 <<<"$out" | jq --arg p "$badid" '[.sources[] | select(.peer == $p) | .bytes] | add // 0')
  if ! grep -q "failed verification" "$NL_T/leaf-a1.log"; then
    echo "  (g) FAILED: no chunk failed verification (did the bad source serve any?)"; FAILED=1
  elif [ "$bad_bytes" -ge $((MB * 1000000)) ]; then
    echo "  (g) FAILED: the bad source is credited with the whole file"; FAILED=1
  else
    echo "  (g) corrupt source dropped (\"$(grep -o 'it sent a chunk that failed verification' "$NL_T/leaf-a1.log" | head -1)\"); $bad_bytes verified bytes from it before that, the file correct [$(tail -n 1 <<<"$out" | jq -r '[.sources[] | "\(.path_type) \(.path)"] | join("; ")')]"
  fi
else
  echo "  (g) FAILED: $(tail -n 3 <<<"$out")"; FAILED=1
fi
stop_pid "$bad_pid"

# (f) no TURN relay configured: symmetric NATs cannot meet, and say so.
start_in pub sn2 "$SN" --listen "$PUB_IP:7401" --stun "$PUB_IP:3480" --state-dir "$NL_T/sn2"
wait_for 5 test -S "$NL_T/sn2/control.sock" || nl_fail "second super node did not start"
for h in c2 d2; do
  mkdir -p "$NL_T/$h-share"
  start_in "$h" "leaf-$h" "$LEAF" --supernode "$PUB_IP:7401" --share "$NL_T/$h-share" \
    --state-dir "$NL_T/$h" --rescan-s 1 --log-level debug
  wait_for 10 sh -c "'$LEAF' status --state-dir '$NL_T/$h' --json 2>/dev/null | jq -e .connected >/dev/null" \
    || nl_fail "leaf $h did not connect"
done
head -c 1000000 /dev/urandom >"$NL_T/d2-share/noturn.bin"
wait_for 10 sh -c "'$LEAF' search --state-dir '$NL_T/c2' --json --ttl 0 noturn | grep -q content_id" \
  || nl_fail "noturn.bin not found"
ncid=$("$LEAF" search --state-dir "$NL_T/c2" --json --ttl 0 noturn | jq -r .content_id)
if out=$("$LEAF" get --state-dir "$NL_T/c2" "$ncid" 2>&1); then
  echo "  (f) FAILED: symmetric pair connected without a relay"; FAILED=1
elif [[ $out == *"no TURN relay is configured"* ]]; then
  echo "  (f) no TURN: $(echo "$out" | tail -n 1)"
else
  echo "  (f) FAILED: unclear message: $out"; FAILED=1
fi
[ $FAILED -eq 0 ] || { echo "--- leaf a1 log"; tail -n 40 "$NL_T/leaf-a1.log"; exit 1; }
echo "leaves_nat: ok"
