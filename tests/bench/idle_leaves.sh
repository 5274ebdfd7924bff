#!/usr/bin/env bash
# idle_leaves.sh - what idle leaves cost one super node (issue 12): resident
# memory per leaf session and CPU while they only keep alive.
#
#   tests/bench/idle_leaves.sh [BUILD_DIR] [LEAVES] [IDLE_SECONDS] [KEEPALIVE_MS]
#
# Starts a super node (max-leaves LEAVES, memory-limit large enough), reads
# its VmRSS, attaches LEAVES canopy-swarm leaves with no entries (one swarm
# process, default keepalive 5000 ms), waits until all are attached and
# 5 s more, reads VmRSS again, then samples the super node's CPU time over
# IDLE_SECONDS (default 30). Prints
#   idle_leaves: N leaves, rss base B KiB, with leaves R KiB, per leaf P B
#   idle_cpu: C % of one core over S s (keepalive K ms), attach A leaves/s
# With PERF_OUT=FILE set, `perf record -g` profiles the super node during
# the idle window into FILE. A benchmark: exits 0 whatever the figures.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-$PWD/build}
N=${2:-2000}
IDLE_S=${3:-30}
KA=${4:-5000}
SWARM="$BUILD/tests/canopy-swarm"
for b in "$BUILD/supernode/canopy-supernode" "$SWARM"; do
  [ -x "$b" ] || { echo "SKIP idle_leaves: $b is not built"; exit 0; }
done
command -v jq >/dev/null || { echo "SKIP idle_leaves: needs jq"; exit 0; }
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
export CANOPY_BIN=$BUILD
. tests/integration/lib.sh

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

KEEPALIVE=$KA start_sn s 1 --max-leaves "$N" --memory-limit 65536 --log-level warning
sleep 1
base=$(rss_kib "$PID_s")
t0=$(date +%s.%N)
"$SWARM" --supernode "127.0.0.1:$(port 1)" --leaves "$N" --state-dir "$T/swarm" \
  --files-per-leaf 0 --keepalive-ms "$KA" --log-level warning >"$T/swarm.log" 2>&1 &
PIDS+=($!)
attached() { "$SWARM" status --state-dir "$T/swarm" --json 2>/dev/null | jq -r '.attached // 0'; }
for _ in $(seq 1 600); do
  a=$(attached || echo 0)
  [ "${a:-0}" -ge "$N" ] && break
  sleep 0.2
done
t1=$(date +%s.%N)
a=$(attached || echo 0)
sleep 5
rss=$(rss_kib "$PID_s")
hz=$(getconf CLK_TCK)
c0=$(cpu_ticks "$PID_s")
if [ -n "${PERF_OUT:-}" ] && command -v perf >/dev/null; then
  perf record -q -g -p "$PID_s" -o "$PERF_OUT" -- sleep "$IDLE_S" >/dev/null 2>&1 || sleep "$IDLE_S"
else
  sleep "$IDLE_S"
fi
c1=$(cpu_ticks "$PID_s")
echo "idle_leaves: $a of $N leaves, rss base $base KiB, with leaves $rss KiB, per leaf $(( (rss - base) * 1024 / (a > 0 ? a : 1) )) B"
awk -v c=$((c1 - c0)) -v hz="$hz" -v s="$IDLE_S" -v ka="$KA" -v n="$a" -v t0="$t0" -v t1="$t1" \
  'BEGIN { printf "idle_cpu: %.2f %% of one core over %d s (keepalive %d ms), attach %.0f leaves/s\n", 100 * c / hz / s, s, ka, n / (t1 - t0) }'
