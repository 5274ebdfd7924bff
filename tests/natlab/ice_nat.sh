#!/usr/bin/env bash
# ice_nat.sh - two leaves reach each other through real NATs by ICE
# (nat/ice.c via canopy-icepair), coturn as STUN server and TURN relay.
#
#   (a) port-restricted cone <-> port-restricted cone: direct, not relayed
#   (b) symmetric <-> symmetric: only the relay works
#   (c) cone <-> symmetric: connects (whichever way ICE finds)
#   (d) two hosts on one LAN behind one NAT: host/host
#   (e) symmetric <-> symmetric with a wrong TURN secret: fails, and says the
#       TURN server gave no relay candidate
#   (f) cone <-> cone where one NAT's uplink carries only 1400-byte packets
#       (and drops larger ones without a word): the path MTU search settles
#       under it and the file arrives; (a) settles on a full 1500-byte frame
# Every case prints the selected pair, the setup time and the throughput.
#
#   sudo CANOPY_BIN=build bash tests/natlab/ice_nat.sh
# Sizes: ICE_NAT_DIRECT_MB (default 50), ICE_NAT_RELAY_MB (default 20),
# ICE_NAT_MTU_MB (default 200).
# Exit 0: all passed; 1: a case failed; 77: skipped (not root, no coturn).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

: "${CANOPY_BIN:?set CANOPY_BIN to a build directory}"
ICEPAIR=$(cd "$CANOPY_BIN" && pwd)/nat/canopy-icepair
[ -x "$ICEPAIR" ] || nl_fail "$ICEPAIR is not built (make canopy-icepair)"
command -v jq >/dev/null || nl_fail "jq is needed"
DIRECT_MB=${ICE_NAT_DIRECT_MB:-50}
RELAY_MB=${ICE_NAT_RELAY_MB:-20}

make_nat coneA cone 10.1.0
make_nat coneB cone 10.2.0
make_nat symC symmetric 10.3.0
make_nat symD symmetric 10.4.0
make_host a1 coneA
make_host a2 coneA
make_host b1 coneB
make_host c1 symC
make_host d1 symD
make_nat mtuE cone 10.5.0
make_host e1 mtuE
# E's uplink: a 1400-byte link (a tunnel, say). Both ends, so that neither
# direction carries a larger frame.
ip -n "${NL}mtuE" link set wan mtu 1400
ip -n "$PUB" link set "w-mtuE" mtu 1400
start_coturn
start_coturn_stun 3480

if command -v ping >/dev/null; then
  for h in a1 b1 c1 d1; do
    in_ns "$h" ping -c 1 -W 2 "$PUB_IP" >/dev/null || nl_fail "$h cannot reach the public side"
  done
fi

SUMMARY=()
FAILED=0

# run_pair CASE OFFER_HOST ANSWER_HOST MB good|bad: runs both sides, leaves
# each side's JSON in $NL_T/CASE-{offer,answer}.json and their exit codes in
# RC_OFFER / RC_ANSWER.
run_pair() {
  local c=$1 off=$2 ans=$3 mb=$4 cred=$5 dir="$NL_T/x-$1"
  local bytes=$((mb * 1000000))
  mkdir -p "$dir"
  local common=(--stun "$PUB_IP:$STUN_PORT" --turn "$PUB_IP:3478" --exchange-dir "$dir"
                --bytes "$bytes" --deadline-s 240)
  turn_credentials "$ans"
  [ "$cred" = bad ] && TURN_PASS=$(printf '%s' "$TURN_USER" | openssl dgst -sha1 -hmac wrong -binary | base64)
  start_in "$ans" "$c-answer" "$ICEPAIR" answer --local "$(host_ip "$ans")" \
    --turn-user "$TURN_USER" --turn-pass "$TURN_PASS" "${common[@]}"
  local apid=$NL_LAST_PID
  turn_credentials "$off"
  [ "$cred" = bad ] && TURN_PASS=$(printf '%s' "$TURN_USER" | openssl dgst -sha1 -hmac wrong -binary | base64)
  RC_OFFER=0
  in_ns "$off" timeout 260 "$ICEPAIR" offer --local "$(host_ip "$off")" \
    --turn-user "$TURN_USER" --turn-pass "$TURN_PASS" "${common[@]}" \
    >"$NL_T/$c-offer.log" 2>&1 || RC_OFFER=$?
  RC_ANSWER=0
  wait "$apid" || RC_ANSWER=$?
  grep '^{' "$NL_T/$c-offer.log" >"$NL_T/$c-offer.json" || true
  grep '^{' "$NL_T/$c-answer.log" >"$NL_T/$c-answer.json" || true
}

j() { jq -r "$2" "$NL_T/$1.json"; }

# describe CASE LABEL: one line with the pair, setup and throughput.
describe() {
  local c=$1 label=$2
  local line
  line=$(printf '%-24s %s %s -> %s %s%s, gather %s/%s ms, setup %s/%s ms, %s MB: sender %s MB/s, receiver %s MB/s' \
    "$label" "$(j "$c-offer" .local_type)" "$(j "$c-offer" .local_addr)" \
    "$(j "$c-offer" .remote_type)" "$(j "$c-offer" .remote_addr)" \
    "$( [ "$(j "$c-offer" .relayed)" = true ] && echo ' (relayed)')" \
    "$(j "$c-offer" .gather_ms)" "$(j "$c-answer" .gather_ms)" \
    "$(j "$c-offer" .setup_ms)" "$(j "$c-answer" .setup_ms)" \
    "$(( $(j "$c-offer" .bytes) / 1000000 ))" "$(j "$c-offer" .MBps)" "$(j "$c-answer" .MBps)")
  echo "  $line"
  SUMMARY+=("$line")
}

# case_ok CASE: both sides exited 0 and reported a result.
case_ok() {
  local c=$1
  if [ "$RC_OFFER" -ne 0 ] || [ "$RC_ANSWER" -ne 0 ] || [ ! -s "$NL_T/$c-offer.json" ] ||
     [ ! -s "$NL_T/$c-answer.json" ]; then
    echo "  offer (rc $RC_OFFER):";  sed 's/^/    /' "$NL_T/$c-offer.log" | tail -n 15
    echo "  answer (rc $RC_ANSWER):"; sed 's/^/    /' "$NL_T/$c-answer.log" | tail -n 15
    return 1
  fi
}

verdict() { # verdict CASE-LABEL OK?
  if [ "$2" = 0 ]; then echo "PASS $1"; else echo "FAIL $1"; FAILED=$((FAILED + 1)); SUMMARY+=("$1: FAILED"); fi
}

echo "--- (a) cone <-> cone, $DIRECT_MB MB"
ok=0
run_pair a a1 b1 "$DIRECT_MB" good
if case_ok a; then
  describe a "(a) cone-cone"
  for s in offer answer; do
    [ "$(j "a-$s" .relayed)" = false ] || { echo "  $s: relayed, expected a direct pair"; ok=1; }
    case "$(j "a-$s" .remote_type)" in srflx|prflx) ;; *) echo "  $s: remote $(j "a-$s" .remote_type), expected srflx or prflx"; ok=1 ;; esac
  done
  # 1500-byte frames all the way: 1472 bytes of UDP payload, 8 of them the tag.
  mtu=$(j a-offer .transport.mtu)
  echo "  datagrams: $mtu bytes + tag after $(j a-offer .transport.mtu_probes) probes"
  [ "$mtu" = 1464 ] || { echo "  sender's datagrams $mtu bytes, expected 1464 (a full frame)"; ok=1; }
else ok=1; fi
verdict "(a) cone-cone direct" $ok

echo "--- (b) symmetric <-> symmetric, $RELAY_MB MB"
ok=0
run_pair b c1 d1 "$RELAY_MB" good
if case_ok b; then
  describe b "(b) symmetric-symmetric"
  for s in offer answer; do
    [ "$(j "b-$s" .relayed)" = true ] || { echo "  $s: not relayed, expected the TURN relay"; ok=1; }
  done
else ok=1; fi
verdict "(b) symmetric-symmetric relayed" $ok

echo "--- (c) cone <-> symmetric, $RELAY_MB MB"
ok=0
run_pair c a1 c1 "$RELAY_MB" good
if case_ok c; then describe c "(c) cone-symmetric"; else ok=1; fi
verdict "(c) cone-symmetric connects" $ok

echo "--- (d) same LAN behind one NAT, $DIRECT_MB MB"
ok=0
run_pair d a1 a2 "$DIRECT_MB" good
if case_ok d; then
  describe d "(d) same LAN"
  for s in offer answer; do
    [ "$(j "d-$s" .local_type)/$(j "d-$s" .remote_type)" = host/host ] ||
      { echo "  $s: $(j "d-$s" .local_type)/$(j "d-$s" .remote_type), expected host/host"; ok=1; }
  done
else ok=1; fi
verdict "(d) same-LAN host/host" $ok

echo "--- (e) symmetric <-> symmetric, wrong TURN secret"
ok=0
run_pair e c1 d1 1 bad
if [ "$RC_OFFER" -eq 0 ] || [ "$RC_ANSWER" -eq 0 ]; then
  echo "  connected without a relay between two symmetric NATs?"; ok=1
elif ! grep -q "TURN server gave no relay candidate" "$NL_T/e-offer.log"; then
  echo "  the failure does not name the TURN credential:"; sed 's/^/    /' "$NL_T/e-offer.log" | tail -n 5; ok=1
else
  echo "  $(grep '^FAILED' "$NL_T/e-offer.log")"
fi
verdict "(e) bad TURN credential reported" $ok

# (f) moves more: the search takes about 10 probes, each a round trip or
# three, and a loaded machine stretches that past a 50 MB transfer.
MTU_MB=${ICE_NAT_MTU_MB:-200}
echo "--- (f) cone <-> cone through a 1400-byte link, $MTU_MB MB"
ok=0
run_pair f a1 e1 "$MTU_MB" good
if case_ok f; then
  describe f "(f) 1400-byte link"
  # 1400 - 20 (IPv4) - 8 (UDP) - 8 (tag) = 1364 at most; more than the
  # 1342-byte base once the search has run.
  mtu=$(j f-offer .transport.mtu)
  echo "  datagrams: $mtu bytes + tag after $(j f-offer .transport.mtu_probes) probes"
  { [ "$mtu" -gt 1342 ] && [ "$mtu" -le 1364 ]; } ||
    { echo "  sender's datagrams $mtu bytes, expected 1343..1364"; ok=1; }
else ok=1; fi
verdict "(f) path MTU found under a 1400-byte link" $ok

echo "--- summary"
for l in "${SUMMARY[@]}"; do echo "  $l"; done
[ $FAILED -eq 0 ] || nl_fail "$FAILED case(s) failed"
echo "ice_nat: all cases passed"
