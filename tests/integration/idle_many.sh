#!/usr/bin/env bash
# idle_many.sh - one super node holds many idle leaves cheaply (issue 12):
# N real leaves (canopy-swarm: real handshakes, encryption, keepalives)
# attach; while they keep alive none is dropped; each costs the super node
# at most 4 KiB of RSS (SN_MEM_PER_SESSION, supernode/MEMORY.md); once they
# all fall silent (SIGSTOP) the super node drops every one of them within
# 3 keepalive intervals and a sweep. N is 2000 (300 under ASan, whose
# allocator makes the RSS figure meaningless: that check is skipped), or
# IDLE_MANY_LEAVES.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tests/integration/lib.sh
SWARM="$CANOPY_BIN/tests/canopy-swarm"
[ -x "$SWARM" ] || { echo "SKIP: $SWARM is not built"; exit 0; }
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ -n "${ASAN_OPTIONS:-}" ]; then N=${IDLE_MANY_LEAVES:-300}; else N=${IDLE_MANY_LEAVES:-2000}; fi
KA=1000
KEEPALIVE=$KA start_sn s 1 --max-leaves $((N + 10)) --stun off --log-level info
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
sleep 0.5
base=$(rss_kib "$PID_s")
"$SWARM" --supernode "127.0.0.1:$(port 1)" --leaves "$N" --state-dir "$T/swarm" --files-per-leaf 0 \
  --keepalive-ms $KA --stagger-ms 2 --log-level warning >"$T/swarm.log" 2>&1 &
PIDS+=($!)
PID_swarm=$!
leaves() { snstat s leaves; }
wait_for 80 sh -c "[ \"\$('$SN' stats --state-dir '$T/s' --json | jq -r .leaves)\" -ge $N ]" ||
  fail "only $(leaves) of $N leaves attached"
note "$N leaves attached"
# Five keepalive intervals of idling: pings answered, nobody dropped.
sleep $((5 * KA / 1000))
[ "$(leaves)" -eq "$N" ] || fail "idle leaves were dropped: $(leaves) of $N left"
timeouts=$(grep -c "keepalive timeout" "$T/s.log" || true)
[ "$timeouts" -eq 0 ] || fail "$timeouts keepalive timeouts while every leaf pinged"
rss=$(rss_kib "$PID_s")
per=$(((rss - base) * 1024 / N))
note "super node RSS $base -> $rss KiB: $per bytes per idle leaf"
if [ -z "${ASAN_OPTIONS:-}" ]; then
  [ "$per" -le 4096 ] || fail "an idle leaf costs $per bytes (> 4 KiB)"
fi
# All fall silent at once: dropped within 3 intervals (plus a sweep and
# the time to close N sessions).
kill -STOP "$PID_swarm"
ms() { echo $(($(date +%s%N) / 1000000)); }
t0=$(ms)
wait_for 10 sh -c "[ \"\$('$SN' stats --state-dir '$T/s' --json | jq -r .leaves)\" -eq 0 ]" ||
  fail "$(leaves) silent leaves still attached after 10 s"
took=$(($(ms) - t0))
note "all $N silent leaves dropped $took ms after they fell silent (keepalive $KA ms)"
# Their last pings were at most an interval before the stop: none may go
# before 3 intervals less a sweep (250 ms) after it.
[ "$took" -ge $((2 * KA - 250)) ] || fail "silent leaves dropped too early ($took ms)"
timeouts=$(grep -c "keepalive timeout" "$T/s.log" || true)
[ "$timeouts" -ge "$N" ] || fail "only $timeouts of $N closed by the keepalive"
kill -CONT "$PID_swarm"
echo "PASS idle_many"
