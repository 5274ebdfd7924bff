#!/usr/bin/env bash
# nat_throughput.sh - how fast leaf-to-leaf transfers go through real NATs:
# plain TCP versus the ICE path (nat/bulk.c over libnice) at several RTTs.
#
#   sudo tests/bench/nat_throughput.sh [BUILD_DIR]
#
# A benchmark, not a test: it prints figures and exits 0 unless the lab
# itself cannot be set up. Not root (or a tool missing): prints SKIP, exits 0.
#
# Lab (tests/natlab/lib.sh): leaves a and b behind two port-restricted cone
# NATs A and B; leaves c and d behind two symmetric NATs C and D; coturn on
# the public side. Each NAT router's WAN-bound traffic goes through a
# canopy-delay stage (NFQUEUE, tests/natlab/delay.c) holding it RTT/2 and
# dropping 0.1 % of it, so each direction sees RTT/2 and 0.1 % loss.
#
# For RTT 0, 20 and 50 ms it measures
#   tcp: plain TCP a -> b through both NATs, via a port forward on B (DNAT +
#        forward accept), socat, a 200 MB file or at most NAT_BENCH_TCP_S
#        (default 12) seconds; bytes received / (connect .. receiver's EOF);
#   ice: canopy-icepair a -> b, a 200 MB transfer (NAT_BENCH_ICE_MB), the
#        receiver's rate (first byte .. last);
# and prints the medians of NAT_BENCH_RUNS (default 7) runs and the median of
# the runs' ICE/TCP ratios (each ICE run right after its TCP run):
#   throughput_rtt20_loss0.1: tcp 70.0 MB/s, ice 140.0 MB/s, ratio 2.000 (...)
# With NAT_BENCH_GET=1 (the default) each RTT also times NAT_BENCH_GET_RUNS
# (default 3) `canopy-leaf get`s of a NAT_BENCH_ICE_MB random file from leaf
# b to leaf a, real daemons under a super node on the public side: the whole
# path a user sees (ICE set-up, secure channel, every chunk verified and
# written), from the command's start to its exit:
#   leaf_get_rtt20_loss0.1: 120.0 MB/s, 1.700 of tcp (median of 3; ...)
# Then the relayed ICE rate (c <-> d through coturn) at RTT 0, and the ICE
# set-up time (median and p95 of NAT_BENCH_SETUPS, default 20, connections)
# direct and relayed: setup_ms of canopy-icepair, from the moment a side has
# the other's description to its usable path (answer side: from receiving
# the offer, i.e. the first signalling it sees). With the leaf daemons
# (NAT_BENCH_GET=1) also the whole set-up a user waits for, from
# NAT_BENCH_SETUPS `canopy-leaf get`s of a 1 MB file each, a <- b (direct)
# and c <- d (relayed): each source's setup_ms, from the downloading leaf
# starting the link (gathering, then the offer through the super node) to the
# secure session being open over the ICE path.
#
# Environment: NAT_BENCH_RUNS, NAT_BENCH_SETUPS, NAT_BENCH_TCP_S, NAT_BENCH_ICE_MB,
# NAT_BENCH_GET_RUNS as above; NAT_BENCH_RTTS (default "0 20 50"; "none"
# for the set-up figures alone);
# NAT_BENCH_RELAYED=0, NAT_BENCH_GET=0 and NAT_BENCH_SETUPS=0 skip those parts;
# NAT_BENCH_GSO=1 runs the delay stages with --gso: faster TCP at RTT 0, but
# a drop then takes a whole TSO burst (fewer, larger loss events: TCP looks
# better than under 0.1 % per-packet loss).
#
# Packages: iptables (NFQUEUE through nft_compat: this kernel has no
# nft "queue"), socat, coturn, jq, nftables, iproute2, iputils-ping (for the
# RTT check, optional), libnetfilter-queue-dev to build canopy-delay.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" 2>/dev/null && pwd) || { echo "SKIP: no build directory ${1:-$ROOT/build}"; exit 0; }
RUNS=${NAT_BENCH_RUNS:-7}
SETUPS=${NAT_BENCH_SETUPS:-20}
TCP_S=${NAT_BENCH_TCP_S:-12}
ICE_BYTES=$(( ${NAT_BENCH_ICE_MB:-200} * 1000000 ))
RTTS=${NAT_BENCH_RTTS:-0 20 50}
[ "$RTTS" = none ] && RTTS=
RELAYED=${NAT_BENCH_RELAYED:-1}
GET=${NAT_BENCH_GET:-1}
GET_RUNS=${NAT_BENCH_GET_RUNS:-3}
STAGE_FLAGS=()
[ "${NAT_BENCH_GSO:-0}" = 1 ] && STAGE_FLAGS=(--gso)
TCP_MB=200
LOSS=0.001
LOSS_PCT=0.1

skip() { echo "SKIP: $*"; exit 0; }
[ "$(id -u)" -eq 0 ] || skip "nat_throughput needs root (network namespaces)"
DELAY=$BUILD/tests/natlab/canopy-delay
ICEPAIR=$BUILD/nat/canopy-icepair
SN=$BUILD/supernode/canopy-supernode
LEAF=$BUILD/leafnode/canopy-leaf
[ -x "$DELAY" ] || skip "$DELAY is not built (libnetfilter-queue-dev; make canopy-delay)"
[ -x "$ICEPAIR" ] || skip "$ICEPAIR is not built (make canopy-icepair)"
for t in iptables socat jq turnserver nft openssl timeout; do
  command -v "$t" >/dev/null 2>&1 || skip "needs $t (apt-get install iptables socat jq coturn nftables)"
done

# lib.sh: namespaces, processes, and the EXIT trap that removes them all.
. "$ROOT/tests/natlab/lib.sh"

T0=$(date +%s)
echo "nat_throughput: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

make_nat A cone 10.1.0
make_nat B cone 10.2.0
make_nat C symmetric 10.3.0
make_nat D symmetric 10.4.0
make_host a A
make_host b B
make_host c C
make_host d D
start_coturn

# Every router queues what leaves by its WAN side to NFQUEUE 0; while no
# canopy-delay is bound (between settings) it passes (--queue-bypass).
for r in A B C D; do
  in_ns "$r" iptables -t mangle -A FORWARD -o wan -j NFQUEUE --queue-num 0 --queue-bypass
done

# Port forward on B, for the TCP baseline: WAN_B:5001 -> b:5001, and ICMP
# echo to b, so that ping from a measures the leaf-to-leaf RTT.
in_ns B nft -f - <<EOF
table ip portfwd {
  chain pre { type nat hook prerouting priority -100;
    iifname "wan" tcp dport 5001 dnat to $(host_ip b):5001
    iifname "wan" icmp type echo-request dnat to $(host_ip b)
  }
}
add rule ip filter forward_filter iifname "wan" ip daddr $(host_ip b) tcp dport 5001 accept
add rule ip filter forward_filter iifname "wan" ip daddr $(host_ip b) icmp type echo-request accept
EOF

BLOB=$NL_T/blob
head -c "${TCP_MB}000000" /dev/zero >"$BLOB"

declare -A STAGE_PID=()
SEED=1
# set_path RTT_MS ROUTERS...: (re)start the delay stage of each router with
# RTT/2 and the loss rate, each with its own seed.
set_path() {
  local rtt=$1 r half; shift
  half=$(awk -v r="$rtt" 'BEGIN { printf "%g", r / 2 }')
  for r in "$@"; do
    [ -n "${STAGE_PID[$r]:-}" ] && stop_pid "${STAGE_PID[$r]}"
    SEED=$((SEED + 1))
    start_in "$r" "delay-$r-$rtt" "$DELAY" --queue 0 --delay-ms "$half" --loss "$LOSS" --seed "$SEED" --stats "${STAGE_FLAGS[@]}"
    STAGE_PID[$r]=$NL_LAST_PID
  done
  sleep 0.2
  for r in "$@"; do
    kill -0 "${STAGE_PID[$r]}" 2>/dev/null || nl_fail "canopy-delay on $r did not start: $(cat "$NL_T/delay-$r-$rtt.log")"
  done
}

# median / p95 of the numeric arguments ("nan" when there are none).
median() { printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
p95() { printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) { print "nan"; exit } i = int(NR * 0.95 + 0.999); if (i < 1) i = 1; print v[i] }'; }
ms_now() { echo $(( $(date +%s%N) / 1000000 )); }
fmt() { awk -v x="$1" 'BEGIN { if (x == "nan" || x == "") { print "n/a"; exit } f = x >= 10 ? "%.1f" : (x >= 1 ? "%.2f" : "%.3f"); printf f, x }'; }
# exited PID: our child PID has ended (gone, or a zombie not yet reaped).
exited() { [ ! -e "/proc/$1/stat" ] || grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }

# tcp_run: one TCP transfer a -> b; its rate (MB/s) in TCP_RATE.
TCP_N=0
tcp_run() {
  TCP_N=$((TCP_N + 1))
  local log="tcp-$TCP_N" t0 t1 bytes pid
  start_in b "$log" sh -c 'socat -u -b 262144 TCP-LISTEN:5001,reuseaddr STDOUT | wc -c; date +%s%N'
  pid=$NL_LAST_PID
  wait_for 5 in_ns b sh -c "ss -ltn | grep -q ':5001 '" || nl_fail "TCP sink did not listen"
  t0=$(date +%s%N)
  in_ns a timeout "$TCP_S" socat -u -b 262144 "FILE:$BLOB" "TCP:$WAN_B:5001" 2>/dev/null || true
  wait_for 30 exited "$pid" || { stop_pid "$pid"; TCP_RATE=0; return; }
  wait "$pid" 2>/dev/null || true
  bytes=$(sed -n 1p "$NL_T/$log.log"); t1=$(sed -n 2p "$NL_T/$log.log")
  TCP_RATE=$(awk -v b="$bytes" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.3f\n", (t1 > t0 && b > 0) ? b / 1e6 / ((t1 - t0) / 1e9) : 0 }')
}

# ice_run OFFER ANSWER BYTES [setup]: one canopy-icepair connection. With
# BYTES, a transfer: the two JSON lines end up in ICE_OFFER / ICE_ANSWER
# (both empty on failure). With "setup", both sides are stopped as soon as
# both report their path; ICE_SETUP_A / ICE_SETUP_O are then each side's
# setup_ms (description in hand -> stream handed to the application),
# ICE_CONN_A libnice's own "connected" (remote candidates added -> first
# nominated pair, from the nat debug log), ICE_GATHER the answer's gathering
# time.
ICE_N=0
ice_run() {
  local off=$1 ans=$2 bytes=$3 mode=${4:-transfer} dir apid opid oport aport
  ICE_N=$((ICE_N + 1))
  local alog="$NL_T/ice-$ICE_N-answer.log" olog="$NL_T/ice-$ICE_N-offer.log"
  dir="$NL_T/ice-$ICE_N"; mkdir -p "$dir"
  local common=(--stun "$PUB_IP:3478" --turn "$PUB_IP:3478" --exchange-dir "$dir"
                --bytes "$bytes" --deadline-s 120)
  ICE_OFFER='' ICE_ANSWER='' ICE_SETUP_A='' ICE_SETUP_O='' ICE_CONN_A='' ICE_GATHER=''
  turn_credentials "$ans"
  G_MESSAGES_DEBUG=nat start_in "$ans" "ice-$ICE_N-answer" "$ICEPAIR" answer --local "$(host_ip "$ans")" \
    --turn-user "$TURN_USER" --turn-pass "$TURN_PASS" "${common[@]}"
  apid=$NL_LAST_PID
  turn_credentials "$off"
  G_MESSAGES_DEBUG=nat start_in "$off" "ice-$ICE_N-offer" "$ICEPAIR" offer --local "$(host_ip "$off")" \
    --turn-user "$TURN_USER" --turn-pass "$TURN_PASS" "${common[@]}"
  opid=$NL_LAST_PID
  both_connected() { grep -q "offer: connected" "$olog" && grep -q "answer: connected" "$alog"; }
  wait_for 60 sh -c "grep -q 'offer: connected' '$olog' && grep -q 'answer: connected' '$alog' || \
    grep -q '^FAILED' '$olog' '$alog'" || true
  ICE_T_BOTH=$(ms_now)
  if both_connected; then
    ICE_SETUP_A=$(sed -n 's/.*answer: connected .* in \([0-9]*\) ms$/\1/p' "$alog")
    ICE_SETUP_O=$(sed -n 's/.*offer: connected .* in \([0-9]*\) ms$/\1/p' "$olog")
    ICE_GATHER=$(sed -n 's/.*answer: gathered in \([0-9]*\) ms.*/\1/p' "$alog")
    # libnice's "connected" less "connecting" (both logged by nat/ice.c).
    ICE_CONN_A=$(awk '/nat-DEBUG.*ICE component connecting/ && !c { c = $3 }
                      /nat-DEBUG.*ICE component connected/ && !d { d = $3 }
                      function s(t, a) { split(t, a, ":"); return a[1] * 3600 + a[2] * 60 + a[3] }
                      END { if (c && d) { x = s(d) - s(c); if (x < 0) x += 86400; printf "%d", x * 1000 } }' "$alog")
  fi
  if [ "$mode" = setup ]; then
    stop_pid "$opid"; stop_pid "$apid"
    [ -n "$ICE_SETUP_A" ] || echo "    ice connection $ICE_N failed: $(grep -h '^FAILED' "$olog" "$alog" | head -2 | tr '\n' ' ')" >&2
    return 0
  fi
  # Block in wait(2), not a polling loop: forks every 0.1 s cost a tenth of
  # these two cores and TCP's run has none (icepair keeps its own deadline;
  # the watchdog only guards against a hung one).
  ( sleep 130; kill -TERM -- "-$opid" "-$apid" ) 2>/dev/null &
  local watchdog=$!
  wait "$opid" 2>/dev/null || true
  wait_for 10 exited "$apid" || true
  pkill -P "$watchdog" 2>/dev/null || true
  kill "$watchdog" 2>/dev/null || true
  wait "$watchdog" 2>/dev/null || true
  for p in "$opid" "$apid"; do stop_pid "$p"; done
  ICE_OFFER=$(grep '^{' "$olog" || true)
  ICE_ANSWER=$(grep '^{' "$alog" || true)
  if [ -z "$ICE_OFFER" ] || [ -z "$ICE_ANSWER" ]; then
    echo "    ice run $ICE_N failed: $(grep -h '^FAILED' "$olog" "$alog" | head -2 | tr '\n' ' ')" >&2
    ICE_OFFER='' ICE_ANSWER=''
  fi
}

# What the transport saw on the receiving side of the last run.
transport_note() {
  local rtt cpu
  rtt=$(jq -r '.transport | "srtt \(.srtt_us / 1000) ms, lost \(.packets_lost) of \(.packets_sent) sent, \(.mtu)-byte datagrams"' <<<"$ICE_OFFER")
  cpu=$(jq -rs '"CPU s (wakeups): sender \(.[0].cpu_s) (\(.[0].wakeups)), receiver \(.[1].cpu_s) (\(.[1].wakeups))"' \
    <<<"$ICE_OFFER$ICE_ANSWER")
  echo "$rtt; $cpu"
}

path_rtt() { # RTT a -> b: "min/avg ms" of 10 pings, or n/a without ping
  command -v ping >/dev/null 2>&1 || { echo n/a; return; }
  in_ns a ping -q -c 10 -i 0.1 -W 2 "$WAN_B" 2>/dev/null |
    awk '/^rtt/ { split($0, p, "= "); split(p[2], v, "/"); printf "min %s, avg %s ms", v[1], v[2]; f = 1 } END { if (!f) print "n/a" }'
}

# The leaf daemons for NAT_BENCH_GET: a super node on the public side (STUN
# on its own port; coturn is there for symmetric pairs, not used by a and b),
# leaf b sharing a random file, leaf a fetching it.
GET_CID=
if [ "$GET" = 1 ]; then
  if [ -x "$SN" ] && [ -x "$LEAF" ]; then
    printf '%s\n' "$TURN_SECRET" >"$NL_T/turn.secret"; chmod 600 "$NL_T/turn.secret"
    start_in pub sn "$SN" --listen "$PUB_IP:7400" --stun "$PUB_IP:3479" --turn "$PUB_IP:3478" \
      --turn-secret-file "$NL_T/turn.secret" --state-dir "$NL_T/sn" --keepalive-ms 2000
    wait_for 5 test -S "$NL_T/sn/control.sock" || nl_fail "super node did not start"
    for h in a b c d; do
      mkdir -p "$NL_T/$h-share"
      start_in "$h" "leaf-$h" "$LEAF" --supernode "$PUB_IP:7400" --share "$NL_T/$h-share" \
        --state-dir "$NL_T/$h" --rescan-s 1 --keepalive-ms 2000
      wait_for 10 sh -c "'$LEAF' status --state-dir '$NL_T/$h' --json 2>/dev/null | jq -e .connected >/dev/null" \
        || nl_fail "leaf $h did not connect"
    done
    head -c "$ICE_BYTES" /dev/urandom >"$NL_T/b-share/bench.bin"
    wait_for 30 sh -c "'$LEAF' search --state-dir '$NL_T/a' --json --ttl 0 bench.bin | grep -q content_id" \
      || nl_fail "the shared file is not found"
    GET_CID=$("$LEAF" search --state-dir "$NL_T/a" --json --ttl 0 bench.bin | jq -r .content_id | head -1)
    head -c 1000000 /dev/urandom >"$NL_T/b-share/setup-direct.bin"
    head -c 1000000 /dev/urandom >"$NL_T/d-share/setup-relayed.bin"
    wait_for 30 sh -c "'$LEAF' search --state-dir '$NL_T/a' --json --ttl 0 setup-relayed.bin | grep -q content_id" \
      || nl_fail "the set-up files are not found"
  else
    echo "(no leaf get figures: $SN or $LEAF is not built)"
  fi
fi
GET_N=0
# get_run: one `canopy-leaf get` on a into a fresh folder (nothing to
# resume); its rate (MB/s, command start to exit) in GET_RATE, its source's
# path type in GET_PATH (empty on failure).
get_run() {
  GET_N=$((GET_N + 1))
  local out="$NL_T/get-$GET_N" t0 t1 res
  mkdir -p "$out"
  GET_RATE='' GET_PATH=''
  t0=$(date +%s%N)
  if res=$(timeout 120 "$LEAF" get --state-dir "$NL_T/a" --json -o "$out/bench.bin" "$GET_CID" 2>&1); then
    t1=$(date +%s%N)
    res=$(tail -n 1 <<<"$res")
    GET_RATE=$(awk -v b="$(jq -r .bytes <<<"$res")" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.3f", b / 1e6 / ((t1 - t0) / 1e9) }')
    GET_PATH=$(jq -r '[.sources[] | "\(.path_type) \(.path)"] | join("; ")' <<<"$res")
  else
    echo "    get $GET_N failed: $(tail -n 2 <<<"$res" | tr '\n' ' ')" >&2
  fi
  rm -rf "$out"
}

TCP0=
for rtt in $RTTS; do
  set_path "$rtt" A B
  echo "--- RTT $rtt ms, loss $LOSS_PCT % each way (ping a->b: $(path_rtt))"
  tcps=() ices=() kinds=() ratios=()
  for i in $(seq 1 "$RUNS"); do
    tcp_run
    tcps+=("$TCP_RATE")
    ice_run a b "$ICE_BYTES"
    if [ -n "$ICE_ANSWER" ]; then
      r=$(jq -r .MBps <<<"$ICE_ANSWER")
      ices+=("$r")
      ratios+=("$(awk -v i="$r" -v t="${tcps[-1]}" 'BEGIN { if (t > 0) printf "%.3f", i / t }')")
      kinds+=("$(jq -r '"\(.local_type)->\(.remote_type)\(if .relayed then " relayed" else "" end)"' <<<"$ICE_OFFER")")
      echo "    run $i: tcp $(fmt "${tcps[-1]}") MB/s, ice $(fmt "$r") MB/s, ratio ${ratios[-1]} ($(jq -r .bytes <<<"$ICE_ANSWER") bytes, ${kinds[-1]}, setup $(jq -r .setup_ms <<<"$ICE_ANSWER") ms; sender: $(transport_note))"
    else
      echo "    run $i: tcp $(fmt "${tcps[-1]}") MB/s, ice failed"
    fi
  done
  tm=$(median "${tcps[@]}")
  im=$(median "${ices[@]}")
  [ "$rtt" = 0 ] && TCP0=$tm
  # The ratio is the median of each run's own ratio: a TCP run and the ICE
  # run right after it see the same machine, and this one's speed drifts by
  # a quarter between minutes (TCP 200-290 MB/s at 0 ms).
  ratio=$(median "${ratios[@]}")
  echo "throughput_rtt${rtt}_loss${LOSS_PCT}: tcp $(fmt "$tm") MB/s, ice $(fmt "$im") MB/s, ratio $ratio (median of $RUNS runs' ratios; range $(printf '%s\n' "${ratios[@]}" | sort -g | sed -n '1p;$p' | paste -sd- -))"
  if [ -n "$GET_CID" ]; then
    gets=()
    for i in $(seq 1 "$GET_RUNS"); do
      get_run
      [ -n "$GET_RATE" ] || continue
      gets+=("$GET_RATE")
      echo "    get $i: $(fmt "$GET_RATE") MB/s ($GET_PATH)"
    done
    gm=$(median "${gets[@]}")
    echo "leaf_get_rtt${rtt}_loss${LOSS_PCT}: $(fmt "$gm") MB/s, $(awk -v g="$gm" -v t="$tm" 'BEGIN { if (g == "nan" || t <= 0) print "n/a"; else printf "%.3f", g / t }') of tcp (median of ${#gets[@]} of $GET_RUNS gets; $(( ICE_BYTES / 1000000 )) MB, canopy-leaf get start to exit)"
  fi
done

# Relayed: symmetric <-> symmetric through coturn, RTT 0.
if [ "$RELAYED" = 1 ]; then
set_path 0 C D
echo "--- relayed (symmetric NATs, coturn), RTT 0 ms, loss $LOSS_PCT % each way"
rel=()
for i in $(seq 1 "$RUNS"); do
  ice_run c d "$ICE_BYTES"
  if [ -n "$ICE_ANSWER" ]; then
    r=$(jq -r .MBps <<<"$ICE_ANSWER"); rel+=("$r")
    echo "    run $i: ice $(fmt "$r") MB/s ($(jq -r .bytes <<<"$ICE_ANSWER") bytes, $(jq -r '"\(.local_type)->\(.remote_type)\(if .relayed then " relayed" else " NOT relayed" end)"' <<<"$ICE_OFFER"))"
  else
    echo "    run $i: failed"
  fi
done
rel_m=$(median "${rel[@]}")
echo "throughput_relayed_rtt0_loss${LOSS_PCT}: ice $(fmt "$rel_m") MB/s, ratio to direct tcp $(awk -v i="$rel_m" -v t="$TCP0" 'BEGIN { if (i == "nan" || t <= 0) print "n/a"; else printf "%.3f", i / t }')"
fi

# Set-up time: SETUPS connections each, a tiny transfer (a receipt).
setup_series() { # LABEL OFFER ANSWER
  local label=$1 off=$2 ans=$3 i fails=0 A_MS=() O_MS=() C_MS=() G_MS=() W_MS=() t0
  for i in $(seq 1 "$SETUPS"); do
    t0=$(ms_now)
    ice_run "$off" "$ans" 1000 setup
    if [ -n "$ICE_SETUP_A" ] && [ -n "$ICE_SETUP_O" ]; then
      A_MS+=("$ICE_SETUP_A"); O_MS+=("$ICE_SETUP_O"); C_MS+=("$ICE_CONN_A"); G_MS+=("$ICE_GATHER")
      W_MS+=("$(( ICE_T_BOTH - t0 ))")
    else
      fails=$((fails + 1))
    fi
  done
  echo "ice_setup_${label}: median $(median "${A_MS[@]}") ms, p95 $(p95 "${A_MS[@]}") ms" \
       "(answer side, offer received -> stream usable; offer side: median $(median "${O_MS[@]}") ms," \
       "p95 $(p95 "${O_MS[@]}") ms; ${#A_MS[@]} connections, $fails failed)"
  echo "    libnice 'connected' (first nominated pair) after median $(median "${C_MS[@]}") ms, p95 $(p95 "${C_MS[@]}") ms;" \
       "gathering median $(median "${G_MS[@]}") ms; process start -> both usable median $(median "${W_MS[@]}") ms"
}
# leaf_setup_series LABEL GETTER FILE EXPECT: SETUPS gets of FILE by GETTER,
# each source's setup_ms from the get's JSON summary.
leaf_setup_series() {
  local label=$1 h=$2 name=$3 want=$4 cid i res ms=() fails=0 other=0
  cid=$("$LEAF" search --state-dir "$NL_T/$h" --json --ttl 0 "$name" | jq -r .content_id | head -1)
  for i in $(seq 1 "$SETUPS"); do
    rm -f "$NL_T/setup-$label.bin"
    if res=$(timeout 60 "$LEAF" get --state-dir "$NL_T/$h" --json -o "$NL_T/setup-$label.bin" "$cid" 2>&1); then
      res=$(tail -n 1 <<<"$res")
      [ "$(jq -r '.sources[0].path_type' <<<"$res")" = "$want" ] || other=$((other + 1))
      ms+=("$(jq -r '.sources[0].setup_ms' <<<"$res")")
    else
      fails=$((fails + 1))
    fi
  done
  echo "leaf_setup_${label}: median $(median "${ms[@]}") ms, p95 $(p95 "${ms[@]}") ms" \
       "(canopy-leaf get: link start -> secure session open over ICE, signalling through the super node;" \
       "${#ms[@]} gets, $fails failed, $other not $want)"
}
if [ "$SETUPS" -gt 0 ]; then
  echo "--- ICE set-up time, $SETUPS connections each (RTT 20 ms, loss $LOSS_PCT % each way)"
  set_path 20 A B C D
  setup_series direct a b
  setup_series relayed c d
  if [ -n "$GET_CID" ]; then
    leaf_setup_series direct a setup-direct.bin direct
    leaf_setup_series relayed c setup-relayed.bin relayed
  fi
fi

echo "nat_throughput: done in $(( $(date +%s) - T0 )) s"
