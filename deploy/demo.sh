#!/usr/bin/env bash
# deploy/demo.sh - run a small Canopy overlay on this machine and show it work.
#
# Builds Canopy, starts four super nodes in a chain (S1-S2-S3-S4) and three
# leaves sharing a few files, then searches from the leaf on S1, shows the
# hits that crossed the mesh, downloads one over an ICE path (verified chunk by
# chunk) and shows each super node's counters. S4 leads group "east" with S5
# as its backup: the demo kills S4 and shows its leaf following S5 and the
# search still finding the file. That part runs on 127.0.0.1 only. Run as
# root, it then puts four leaves behind home-router NATs in network
# namespaces (a cone pair that punches through, a symmetric pair relayed by
# coturn) and downloads between them. Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
. deploy/deps.sh
canopy_deps || exit 1

BUILD=${BUILD:-$ROOT/build}
echo "== building into $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
make -C "$BUILD" -j"$(nproc)" canopy-supernode canopy-leaf >/dev/null
SN="$BUILD/supernode/canopy-supernode"
LEAF="$BUILD/leafnode/canopy-leaf"

D=$(mktemp -d "${TMPDIR:-/tmp}/canopy-demo.XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$D"
}
trap cleanup EXIT
BASE=${DEMO_PORT_BASE:-$((30000 + (RANDOM % 200) * 10))}

wait_for() { local n=$1; shift; for _ in $(seq $((n * 10))); do "$@" && return 0; sleep 0.1; done; return 1; }

echo "== starting super nodes S1-S2-S3-S4 on 127.0.0.1:$((BASE + 1))..$((BASE + 4)), and S5 as S4's backup"
start_sn() { # I [args...]: super node S<I> on BASE+I
  local i=$1; shift
  "$SN" --listen "127.0.0.1:$((BASE + i))" --stun "127.0.0.1:$((BASE + 50 + i))" --no-discovery "$@" \
    --state-dir "$D/s$i" >"$D/s$i.log" 2>&1 &
  PIDS+=($!)
  eval "SN_PID_$i=$!"
  wait_for 5 test -S "$D/s$i/control.sock"
}
start_sn 1
start_sn 2 --peer "127.0.0.1:$((BASE + 1))"
start_sn 3 --peer "127.0.0.1:$((BASE + 2))"
# S4 leads group "east"; S5 joins it and becomes its backup (GROUPS.md).
# Members prove membership with a secret they share (--group-key-file).
(umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$D/east.key")
start_sn 4 --peer "127.0.0.1:$((BASE + 3))" --group east --group-key-file "$D/east.key"
start_sn 5 --peer "127.0.0.1:$((BASE + 3))" --peer "127.0.0.1:$((BASE + 4))" --group east \
  --group-key-file "$D/east.key"
links() { [ "$("$SN" stats --state-dir "$D/s$1" --json | jq .links)" -ge "$2" ]; }
role() { "$SN" stats --state-dir "$D/s$1" --json | jq -r .role; }
is_role() { [ "$(role "$1")" = "$2" ]; }
wait_for 10 links 2 2 && wait_for 10 links 3 2 && wait_for 10 is_role 5 backup
echo "   group east: S4 $(role 4), S5 $(role 5)"

mkdir -p "$D/alice" "$D/bob/albums/1969" "$D/carol"
echo "notes" >"$D/alice/holiday notes.txt"
head -c 2000000 /dev/urandom >"$D/bob/albums/1969/Abbey Road - Come Together.flac"
head -c 1500000 /dev/urandom >"$D/carol/Come Together (live).ogg"
head -c 700000 /dev/urandom >"$D/carol/Road Trip Map.pdf"
start_leaf() { # NAME SN
  "$LEAF" --supernode "127.0.0.1:$((BASE + $2))" --share "$D/$1" --state-dir "$D/$1-state" \
    --ice-local 127.0.0.1 >"$D/$1.log" 2>&1 &
  PIDS+=($!)
  wait_for 10 sh -c "'$LEAF' status --state-dir '$D/$1-state' --json 2>/dev/null | jq -e .connected >/dev/null"
  echo "   leaf $1 on S$2 shares $(find "$D/$1" -type f | wc -l) file(s)"
}
echo "== starting leaves"
start_leaf alice 1
start_leaf bob 4
start_leaf carol 3

echo
echo "== alice (on S1) searches 'come together' with --ttl 3 (reaches S4):"
"$LEAF" search --state-dir "$D/alice-state" --ttl 3 come together
echo
echo "== the same search with --ttl 1 reaches only S1 and S2 (no hits there):"
"$LEAF" search --state-dir "$D/alice-state" --ttl 1 come together
echo
echo "== 'road' with --ttl 3, as JSON for scripts:"
"$LEAF" search --state-dir "$D/alice-state" --ttl 3 --json road
echo
cid=$("$LEAF" search --state-dir "$D/alice-state" --ttl 3 --json abbey | jq -r .content_id)
echo "== alice downloads $cid (the .flac) straight from bob, through ICE:"
"$LEAF" get --state-dir "$D/alice-state" "$cid"
cmp "$D/alice-state/downloads/Abbey Road - Come Together.flac" "$D/bob/albums/1969/Abbey Road - Come Together.flac" \
  && echo "   (byte for byte the same as bob's file)"
echo
echo "== super node counters (each handled each query once):"
printf '   %-4s %-8s %-9s %-9s %-6s %-6s\n' node received handled forwarded hits leaves
for i in 1 2 3 4 5; do
  "$SN" stats --state-dir "$D/s$i" --json |
    jq -r --arg n "S$i" '"   \($n)   \(.queries_received)        \(.queries_handled)         \(.queries_forwarded)         \(.hits_sent)      \(.leaves)"'
done
echo
echo "== failover: kill -9 S4, the leader of group east (bob's super node)"
bob_status() { "$LEAF" status --state-dir "$D/bob-state" --json; }
echo "   bob before: $(bob_status | jq -r '"attached to \(.supernode), election \(.term / 4294967296 | floor), backup \(.backup.address), published \(.publishes)x"')"
t0=$(date +%s%N)
kill -9 "$SN_PID_4"
wait "$SN_PID_4" 2>/dev/null || true
wait_for 10 is_role 5 leader
wait_for 10 sh -c "'$LEAF' status --state-dir '$D/bob-state' --json | jq -e '.connected and .supernode == \"127.0.0.1:$((BASE + 5))\"' >/dev/null"
echo "   S5 is leader (election $("$SN" stats --state-dir "$D/s5" --json | jq .election)); bob followed it $(( ($(date +%s%N) - t0) / 1000000 )) ms after the kill"
echo "   bob after:  $(bob_status | jq -r '"attached to \(.supernode), election \(.term / 4294967296 | floor), published \(.publishes)x (no re-publish: S5 had a replica)"')"
echo "   alice searches 'abbey' again (through S1-S2-S3-S5):"
"$LEAF" search --state-dir "$D/alice-state" --ttl 3 abbey | sed 's/^/   /'
echo "== stopping the loopback overlay"
cleanup
trap - EXIT

# As root, the same again with the leaves behind real home NATs: network
# namespaces, nftables NAT routers (two port-restricted cone, two symmetric)
# and coturn as the relay, as tests/natlab does it.
if [ "$(id -u)" -ne 0 ] || ! command -v turnserver >/dev/null || ! ip netns list >/dev/null 2>&1; then
  echo
  echo "(run as root to also see leaves behind NATs in network namespaces)"
  exit 0
fi
echo
echo "== leaves behind NATs: a super node and coturn on 203.0.113.1, four home routers"
(
  CANOPY_BIN=$BUILD
  . tests/natlab/lib.sh
  make_nat homeA cone 10.1.0
  make_nat homeB cone 10.2.0
  make_nat mobileC symmetric 10.3.0
  make_nat mobileD symmetric 10.4.0
  make_host dora homeA
  make_host eve homeB
  make_host finn mobileC
  make_host gus mobileD
  start_coturn
  printf '%s\n' "$TURN_SECRET" >"$NL_T/turn.secret"
  start_in pub sn "$SN" --listen "$PUB_IP:7400" --stun "$PUB_IP:3479" --turn "$PUB_IP:3478" \
    --turn-secret-file "$NL_T/turn.secret" --state-dir "$NL_T/sn"
  wait_for 5 test -S "$NL_T/sn/control.sock"
  for h in dora eve finn gus; do
    mkdir -p "$NL_T/$h-share"
    start_in "$h" "leaf-$h" "$LEAF" --supernode "$PUB_IP:7400" --share "$NL_T/$h-share" \
      --state-dir "$NL_T/$h" --rescan-s 1
    wait_for 10 sh -c "'$LEAF' status --state-dir '$NL_T/$h' --json 2>/dev/null | jq -e .connected >/dev/null"
  done
  head -c 5000000 /dev/urandom >"$NL_T/eve-share/eve holiday video.mp4"
  head -c 3000000 /dev/urandom >"$NL_T/gus-share/gus garage band.ogg"
  wait_for 10 sh -c "'$LEAF' search --state-dir '$NL_T/dora' --json --ttl 0 holiday | grep -q content_id"
  wait_for 10 sh -c "'$LEAF' search --state-dir '$NL_T/finn' --json --ttl 0 garage | grep -q content_id"
  nat_get() { # GETTER TERM ORIGINAL: search, get, compare with the original
    local out="$NL_T/$1-got"
    "$LEAF" get --state-dir "$NL_T/$1" -o "$out" \
      "$("$LEAF" search --state-dir "$NL_T/$1" --json --ttl 0 "$2" | jq -r .content_id)"
    if cmp -s "$out" "$3"; then echo "   (byte for byte the sharer's file)"; else echo "   NOT the sharer's file"; fi
  }
  echo "   dora (cone NAT) downloads eve's video (eve behind another cone NAT):"
  nat_get dora holiday "$NL_T/eve-share/eve holiday video.mp4"
  echo "   finn (symmetric NAT) downloads gus's song (gus behind another symmetric NAT):"
  nat_get finn garage "$NL_T/gus-share/gus garage band.ogg"
  "$SN" stats --state-dir "$NL_T/sn" --json |
    jq -r '"   super node: \(.stun_requests) STUN requests answered, \(.turn_credentials_issued) TURN credentials issued, \(.signals_delivered) ICE offers delivered"'
  echo "== stopping everything"
)
