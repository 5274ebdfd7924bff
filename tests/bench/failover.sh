#!/usr/bin/env bash
# failover.sh - how long a group's leaves take to follow a new leader.
#
#   tests/bench/failover.sh [BUILD_DIR] [LEAVES] [DRILLS]
#
# Group g1 is super nodes a, b, c (each on its own loopback address, started
# in that order: a leads, b is the backup, c stands by) with LEAVES (default
# 200) leaves of canopy-swarm (tests/tools/swarm.c) attached, each publishing
# 5 entries "swarm-<i>-<k>". A leaf holds two sessions (leader and backup),
# so the swarm is split over one process per SWARM_PER_PROC (default 8,000)
# leaves (tests/tools/swarm_procs.sh) to stay under the 20,000 fd limit; the
# super nodes get --max-leaves and --memory-limit for LEAVES, and every wait
# grows with LEAVES (10,000 leaves: LEAVES=10000 DRILLS=5). d leads group g2, linked to all
# three; leaf s on d searches every 100 ms for one swarm entry (a different
# one each time) and counts a search failed unless that entry comes back.
#
# DRILLS (default 20) times each (from the signal: the kill(2) is sent by a
# perl one-liner that first reads CLOCK_MONOTONIC, the swarm's clock, and the
# swarm reports the moment the last leaf moved on that clock):
#   kill9:   arm the swarm's wait_moved (every leaf attached to a node other
#            than the leader, with a higher term), kill -9 the leader, read
#            the elapsed time; restart the killed node (same state dir, it
#            rejoins as standby) and wait until the group is whole again;
#   sigstop: the same with SIGSTOP; then SIGCONT, wait until the old leader
#            stood down and the group is whole again.
# Prints
#   failover_kill9_200leaves: median X ms, p99 Y ms (20 drills)
#   failover_sigstop_200leaves: median X ms, p99 Y ms (20 drills)
#   failover_searches_kill9: F of N searches from g2 failed (every 100 ms)
#   failover_searches_sigstop: ...
# p99 is nearest-rank (of 20 drills: the slowest). A drill whose leaves did
# not all move within MOVE_MS (default 10 s, plus 1 s per 1,000 leaves) is
# counted as timed out, not timed.
#
# Also, per kind: the time by which half the leaves had moved (the median
# leaf; of each swarm process, the slower), median and p99 over the drills.
#
# TRACE_DIR=DIR: every super node's log line gets a timestamp (µs, wall
# clock), the kill is logged in DIR/trace.log, and the logs are copied to
# DIR at the end; TRACE_PERF=1 also profiles the machine (perf record -a
# -g: the backup, the swarm, the kernel) through the first kill -9 drill, TRACE_POLL=1 logs the swarm's progress
# every 50 ms (both slow the drill: not for figures).
#
# A benchmark: exits 0, also when drills time out; prints SKIP (and exits 0)
# when a binary or jq is missing; exits 1 only when the group cannot be set up.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-$PWD/build}
NLEAVES=${2:-200}
DRILLS=${3:-20}
SWARM=$BUILD/tests/canopy-swarm
for b in "$BUILD/supernode/canopy-supernode" "$BUILD/leafnode/canopy-leaf" "$SWARM"; do
  [ -x "$b" ] || {
    echo "SKIP failover bench: $b is not built"
    exit 0
  }
done
command -v jq >/dev/null || {
  echo "SKIP failover bench: needs jq"
  exit 0
}
export CANOPY_BIN=$BUILD
. tests/integration/lib.sh
. tests/tools/swarm_procs.sh
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# The leaves' keepalive: 1 s, or the default 5 s from 5,000 leaves on (two
# sessions a leaf at 1 s is 20,000 PINGs a second at 10,000 leaves, more than
# the shared 2-core machine serves beside everything else).
KEEPALIVE=${KEEPALIVE:-$((NLEAVES >= 5000 ? 5000 : 1000))}
FILES_PER_LEAF=5
SWARM_PER_PROC=${SWARM_PER_PROC:-8000}
# Leaves started a second per swarm process: an unpaced storm of 10,000
# handshakes starves the leader's loop past the backup's 1 s heartbeat
# deadline on this shared machine, and the group flaps during bring-up.
START_RATE=${START_RATE:-200}
SWARM_PROCS=$(((NLEAVES + SWARM_PER_PROC - 1) / SWARM_PER_PROC))
MOVE_MS=${MOVE_MS:-$((10000 + NLEAVES))}
SETTLE_MS=$((30000 + 6 * NLEAVES)) # a group becoming whole: sessions, snapshot, replication

NET=127.$((BASE / 100 % 250 + 1)).0
declare -A IP=([a]=$NET.11 [b]=$NET.12 [c]=$NET.13 [d]=$NET.14)
declare -A IDX=([a]=1 [b]=2 [c]=3 [d]=4)
declare -A GROUP=([a]=g1 [b]=g1 [c]=g1 [d]=g2)
declare -A NODE_ID=() NAME_OF=()
G1="a b c"

now_ms() {
  local t=${EPOCHREALTIME/[.,]/}
  echo $((t / 1000))
}
wait_ms() {
  local end=$(($(now_ms) + $1))
  shift
  until "$@"; do
    [ "$(now_ms)" -lt "$end" ] || return 1
    sleep 0.05
  done
}
# signal_ms SIG PID: sends SIG to PID and prints the CLOCK_MONOTONIC time (ms)
# taken just before; prints nothing (the drill is then timed from the arming
# of wait_moved, up to a poll earlier) when perl is missing.
signal_ms() {
  if command -v perl >/dev/null; then
    perl -MTime::HiRes=clock_gettime,CLOCK_MONOTONIC -e \
      'my $t = clock_gettime(CLOCK_MONOTONIC); kill($ARGV[0], $ARGV[1]) or exit 1; printf "%d\n", $t * 1000' \
      "$1" "$2"
  else
    kill -"$1" "$2"
  fi
}
addr() { echo "${IP[$1]}:$(port "${IDX[$1]}")"; }
sn_json() { "$SN" status --state-dir "$T/$1" --json 2>/dev/null; }
snq() { sn_json "$1" | jq -r "$2"; }
role_is() { [ "$(snq "$1" .role)" = "$2" ]; }
not_leader() {
  local r
  r=$(snq "$1" .role) && [ -n "$r" ] && [ "$r" != leader ]
}
swarm_json() { swarm_status swarm 2>/dev/null; }
pid_of() { eval "echo \$PID_$1"; }
TRACE_DIR=${TRACE_DIR:-}
LOG_LEVEL=${LOG_LEVEL:-info}
# One timestamp (ms, wall clock) per log line.
stamp() {
  if command -v perl >/dev/null; then
    perl -MTime::HiRes=time -ne 'BEGIN { $| = 1 } printf "%d %s", time * 1e6, $_'
  else
    while IFS= read -r l; do echo "${EPOCHREALTIME/[.,]/} $l"; done
  fi
}

# Every swarm leaf comes from 127.0.0.1: the pre-auth caps per address and
# prefix (meant for one home address each) are opened for the bench.
start_gsn() {
  local n=$1 o args=()
  for o in a b c d; do
    if [ "$o" != "$n" ]; then args+=(--peer "$(addr "$o")"); fi
  done
  rm -f "$T/$n/control.sock"
  [ -f "$T/${GROUP[$n]}.key" ] || (umask 077 && echo "failover bench secret of ${GROUP[$n]}" >"$T/${GROUP[$n]}.key")
  "$SN" --listen "$(addr "$n")" --state-dir "$T/$n" --group "${GROUP[$n]}" \
    --group-key-file "$T/${GROUP[$n]}.key" --no-discovery \
    --max-leaves $((NLEAVES + 100)) --memory-limit $((4096 + 4 * NLEAVES)) \
    --max-handshakes-per-address 100000 --max-handshakes-per-prefix 100000 \
    --stun off --keepalive-ms "$KEEPALIVE" --log-level "$LOG_LEVEL" "${args[@]}" \
    >>"$T/$n.log" 2> >(if [ -n "$TRACE_DIR" ]; then stamp; else cat; fi >>"$T/$n.log") &
  PIDS+=($!)
  eval "PID_$n=$!"
  wait_for 5 sn_json "$n" >/dev/null || fail "super node $n did not start"
  NODE_ID[$n]=$(snq "$n" .id)
  NAME_OF[${NODE_ID[$n]}]=$n
}

current_leader() {
  local n
  for n in $G1; do
    if [ "$(snq "$n" .role)" = leader ]; then
      echo "$n"
      return 0
    fi
  done
  return 1
}

# The group around leader L is whole: L holds every leaf's session and has
# no unacknowledged replication, its backup holds every leaf's watch session,
# the third g1 node follows L, and the swarm sees every leaf attached to L
# and watching.
whole() {
  local L=$1 j n bid sj
  j=$(sn_json "$L") || return 1
  jq -e --argjson n "$NLEAVES" '.role == "leader" and .leaves == $n and .replication_lag_ops == 0' \
    <<<"$j" >/dev/null || return 1
  bid=$(jq -r '.backup.id // empty' <<<"$j")
  [ -n "$bid" ] || return 1
  sn_json "${NAME_OF[$bid]:-x}" | jq -e --argjson n "$NLEAVES" '.role == "backup" and .watchers == $n' \
    >/dev/null || return 1
  for n in $G1; do
    [ "$n" = "$L" ] && continue
    sn_json "$n" | jq -e --arg l "${NODE_ID[$L]}" '.leader.id == $l' >/dev/null || return 1
  done
  sj=$(swarm_json) || return 1
  jq -e --arg l "${NODE_ID[$L]}" --argjson n "$NLEAVES" \
    '.attached == $n and .by_supernode[$l] == $n and .watching == $n' <<<"$sj" >/dev/null
}

# --- bring-up ---------------------------------------------------------------------
start_gsn a
wait_ms 5000 role_is a leader || fail "a did not lead"
start_gsn b
wait_ms 5000 role_is b backup || fail "b did not become a's backup"
start_gsn c
wait_ms 5000 role_is c standby || fail "c did not stand by"
start_gsn d
wait_ms 5000 role_is d leader || fail "d did not lead g2"
swarm_start swarm "$NLEAVES" "$SWARM_PROCS" --supernode "$(addr a)" \
  --files-per-leaf $FILES_PER_LEAF --keepalive-ms $KEEPALIVE --start-rate "$START_RATE" --max-pending 100
mkdir -p "$T/s-share"
"$LEAF" --supernode "$(addr d)" --share "$T/s-share" --state-dir "$T/s" --keepalive-ms $KEEPALIVE \
  >"$T/s.log" 2>&1 &
PIDS+=($!)
wait_for 10 connected s || fail "leaf s did not attach to d"
wait_ms $((60000 + 12 * NLEAVES)) whole a || fail "the swarm did not settle on a: $(swarm_json)"
echo "  $NLEAVES leaves attached to a in $(swarm_json | jq .attach_all_ms) ms ($SWARM_PROCS swarm processes)"
publishes0=$(swarm_json | jq .publishes)

searcher() {
  set +e
  local t0 i k r
  while :; do
    i=$((FILES_PER_LEAF + RANDOM % (NLEAVES - FILES_PER_LEAF)))
    k=$((RANDOM % FILES_PER_LEAF))
    t0=$(now_ms)
    if "$LEAF" search --state-dir "$T/s" --json --wait 1000 --limit 1 swarm $i $k 2>/dev/null |
      grep -q "\"swarm-$i-$k\""; then r=ok; else r=fail; fi
    echo "$t0 $(now_ms) $r" >>"$T/searches.log"
    sleep 0.1
  done
}
[ "$NLEAVES" -gt "$FILES_PER_LEAF" ] || fail "needs more than $FILES_PER_LEAF leaves"
searcher &
PIDS+=($!)
sleep 2
awk '$3 == "ok" { f = 1 } END { exit !f }' "$T/searches.log" || fail "searches from g2 find nothing"

# --- drills -------------------------------------------------------------------------
# drill KIND: one failure of the current leader; appends the time to $T/KIND.ms
# and the search window to $T/KIND.win.
drill() {
  local kind=$1 L K w0 rc elapsed half s0 m0
  L=$(current_leader) || fail "no leader before a $kind drill"
  local B tpid="" ppid=""
  if [ -n "$TRACE_DIR" ]; then
    B=${NAME_OF[$(snq "$L" '.backup.id // empty')]:-}
    if [ -n "${TRACE_PERF:-}" ] && [ "$kind" = kill9 ] && [ "$i" -eq 0 ] && [ -n "$B" ] &&
      command -v perf >/dev/null; then
      perf record -a -g -o "$T/perf-$B.data" >/dev/null 2>&1 &
      ppid=$!
      sleep 0.5
    fi
  fi
  swarm_wait_moved swarm "${NODE_ID[$L]}" "$MOVE_MS" "$T/wait.out" &
  local wpid=$!
  wait_ms 12000 grep -q waiting "$T/wait.out" || fail "wait_moved not armed: $(cat "$T/wait.out")"
  if [ -n "$TRACE_DIR" ]; then
    echo "${EPOCHREALTIME/[.,]/} drill $kind $((i + 1)): $L fails, backup ${B:-none}" >>"$T/trace.log"
    if [ -n "${TRACE_POLL:-}" ]; then
      (while :; do
        echo "${EPOCHREALTIME/[.,]/} $(swarm_json | jq -c '[.attached, .by_supernode]')"
        sleep 0.05
      done >>"$T/trace.log") &
      tpid=$!
    fi
  fi
  s0=$(now_ms)
  [ -z "$TRACE_DIR" ] || echo "${EPOCHREALTIME/[.,]/} kill $kind $L" >>"$T/trace.log"
  # Time zero is the signal itself, stamped on the swarm's clock
  # (CLOCK_MONOTONIC) just before the kill(2) by the process that sends it.
  if [ "$kind" = kill9 ]; then
    m0=$(signal_ms KILL "$(pid_of $L)")
    wait "$(pid_of $L)" 2>/dev/null || true
  else
    m0=$(signal_ms STOP "$(pid_of $L)")
  fi
  rc=0
  wait $wpid || rc=$?
  [ -z "$tpid" ] || kill "$tpid" 2>/dev/null || true
  if [ -n "$ppid" ]; then
    kill -INT "$ppid" 2>/dev/null || true
    wait "$ppid" 2>/dev/null || true
  fi
  if [ $rc -eq 0 ]; then
    elapsed=$(jq -r 'select(.elapsed_ms != null) | .elapsed_ms' "$T/wait.out")
    half=$(jq -r 'select(.half_ms != null) | .half_ms' "$T/wait.out")
    # From the signal: the slowest swarm process's moments on the same clock.
    if [ -n "$m0" ]; then
      local armed=$elapsed
      elapsed=$(cat "$T"/wait.out.* | jq -s --argjson m0 "$m0" \
        'map(select(.done_at_ms != null) | .done_at_ms) | max - $m0')
      half=$(cat "$T"/wait.out.* | jq -s --argjson m0 "$m0" \
        'map(select(.half_at_ms != null) | .half_at_ms) | max - $m0')
      echo "$((armed - elapsed))" >>"$T/$kind.gap"
    fi
    echo "$elapsed" >>"$T/$kind.ms"
    echo "$half" >>"$T/$kind.half"
    echo "  $kind drill $((i + 1)): $elapsed ms, half the leaves in $half ms ($L failed)"
  else
    echo "  $kind drill: timed out ($(tail -n 1 "$T/wait.out"))"
    TIMEOUTS[$kind]=$((${TIMEOUTS[$kind]} + 1))
  fi
  if [ "$kind" = kill9 ]; then
    start_gsn "$L"
  else
    kill -CONT "$(pid_of $L)"
    wait_ms 20000 not_leader "$L" || echo "  $kind drill: $L still leads 20 s after SIGCONT"
  fi
  K=$(current_leader) || fail "no leader after a $kind drill"
  wait_ms $SETTLE_MS whole "$K" || fail "the group did not become whole around $K after a $kind drill"
  echo "$s0 $(now_ms)" >>"$T/$kind.win"
  sleep 0.5
}

declare -A TIMEOUTS=([kill9]=0 [sigstop]=0)
for kind in kill9 sigstop; do
  : >"$T/$kind.ms"
  : >"$T/$kind.half"
  : >"$T/$kind.win"
  : >"$T/$kind.gap"
  for ((i = 0; i < DRILLS; i++)); do drill $kind; done
done

# --- figures ------------------------------------------------------------------------
stats() { # stats FILE: "median X ms, p99 Y ms" (p99 nearest-rank)
  grep -E '^[0-9]+$' "$1" | sort -n | awk '{ v[NR] = $1 } END {
    if (NR == 0) { printf "no completed drill"; exit }
    med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    r = int(0.99 * NR); if (r < 0.99 * NR) r++
    printf "median %g ms, p99 %d ms", med, v[r] }'
}
searches() { # searches KIND: failed and total searches that overlapped KIND's drills
  awk 'NR == FNR { s[NR] = $1; e[NR] = $2; n = NR; next }
       { for (i = 1; i <= n; i++) if ($2 >= s[i] && $1 <= e[i]) { t++; if ($3 == "fail") f++; break } }
       END { printf "%d of %d", f, t }' "$T/$1.win" "$T/searches.log"
}
for kind in kill9 sigstop; do
  extra=""
  [ "${TIMEOUTS[$kind]}" -eq 0 ] || extra=", ${TIMEOUTS[$kind]} timed out"
  echo "failover_${kind}_${NLEAVES}leaves: $(stats "$T/$kind.ms") ($DRILLS drills$extra)"
  echo "failover_${kind}_${NLEAVES}leaves_half: $(stats "$T/$kind.half") (half the leaves moved)"
  [ ! -s "$T/$kind.gap" ] || echo "failover_${kind}_armed_before_signal: $(stats "$T/$kind.gap")" \
    "(wait_moved armed before the signal; the figures above start at the signal)"
done
for kind in kill9 sigstop; do
  echo "failover_searches_${kind}: $(searches $kind) searches from g2 failed (one every 100 ms," \
    "from each failure to the group being whole again)"
done
if [ -n "$TRACE_DIR" ]; then
  mkdir -p "$TRACE_DIR"
  cp "$T"/*.log "$TRACE_DIR"/ 2>/dev/null || true
  for f in "$T"/perf-*.data; do
    [ -f "$f" ] || continue
    perf report -i "$f" --sort comm --stdio -g none 2>/dev/null | head -n 40 >"$TRACE_DIR/$(basename "$f" .data).txt"
    perf report -i "$f" --sort comm,dso,sym --no-children --stdio -g none --percent-limit 0.5 2>/dev/null |
      head -n 150 >>"$TRACE_DIR/$(basename "$f" .data).txt"
    cp "$f" "$TRACE_DIR"/
  done
fi
publishes1=$(swarm_json | jq .publishes)
echo "failover_republishes: $((publishes1 - publishes0)) manifest uploads by the swarm during the drills"
