#!/usr/bin/env bash
# leaves_at_size.sh - what one super node pays for N idle leaves.
#
#   tests/bench/leaves_at_size.sh [BUILD_DIR]
#
# For each N in SIZES (default "1000 5000 10000 19000") and each E in ENTRIES
# (default "0 10 100"): one fresh canopy-supernode on 127.0.0.1 (default
# keepalive, --max-leaves N plus a margin, --memory-limit raised so that the
# memory plan admits that many sessions (a ceiling, not an allocation), the
# pre-auth caps per address and prefix opened because every leaf comes from
# 127.0.0.1), and a canopy-swarm
# of N leaves (split over SWARM_PROCS processes, default one per 10,000
# leaves) publishing E entries each with realistic names
# (tests/tools/swarmnames.c). Measured:
#   attach_rate      N / the time from the first leaf started until all N
#                    attached (sessions/s; the swarm keeps at most
#                    MAX_PENDING handshakes in flight, default 400, starting
#                    START_RATE leaves a second, default 3000, from
#                    SWARM_SOURCES loopback addresses, default 16:
#                    tests/tools/swarm_dial.h); attach_cookies says whether
#                    the super node's cookie step asked for puzzles meanwhile
#   rss_per_leaf     (super node RSS - the empty daemon's) / N, and the same
#                    minus the index bytes its stats report ("beyond the
#                    charged index": those bytes are an upper bound, so this
#                    is often negative; rss_per_entry is the real figure)
#   index_per_entry  index bytes / entries, as the super node accounts them
#   idle_cpu         utime+stime of the super node over IDLE_S s (default 60)
#                    with every leaf attached and published, % of one core
#   cpu_per_keepalive the same CPU seconds / PINGs the swarm sent meanwhile
#   wakeups          the super node's voluntary context switches a second
#                    over that window (each one a sleep in poll)
#   search           p50/p99 from sending a search to its first hit, at
#                    SEARCH_RATE (default 100) searches/s for SEARCH_S s
#                    (default 20), two keywords of another leaf's entry each
# One line per figure ("at_size N=.. E=.. figure: value"). E=0 gives the
# bare session cost (no index, no searches); after it, rss_per_entry is what
# an entry really costs, since the index bytes the super node reports are
# what it charges against its budget, not its heap. STRACE_S=10 counts its
# syscalls (strace -c -f) over that many seconds after the idle window (to
# $RESULTS/strace_N_E.txt; strace slows it, so calls batch). PERF=1 also
# records `perf record -g` of the super node over the idle window and writes
# the top of `perf report` to $RESULTS/perf_N_E.txt. PERF_ATTACH=1 records
# the swarm's processes and the super node (`perf record -g`, one each) from
# the swarm's start until every leaf attached, to
# $RESULTS/attach_{swarm,sn}_N_E.txt (self time per symbol). ATTACH_ONLY=1
# stops after the attach figures (no idle window, no searches).
#
# A benchmark: exits 0 (a size that does not attach within ATTACH_S, default
# 300, is reported and skipped); SKIP when a binary or jq is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-$PWD/build}
export CANOPY_BIN=$BUILD
SIZES=${SIZES:-"1000 5000 10000 19000"}
ENTRIES=${ENTRIES:-"0 10 100"}
declare -A BARE=() # N -> RSS growth per leaf with E=0, the session alone
IDLE_S=${IDLE_S:-60}
SEARCH_S=${SEARCH_S:-20}
SEARCH_RATE=${SEARCH_RATE:-100}
ATTACH_S=${ATTACH_S:-300}
MAX_PENDING=${MAX_PENDING:-400}
# Leaves started a second over all swarm processes: under the super node's
# handshake budget (shared/cookie.h, 3,500 M1s a second by default), above
# which its cookie step asks every leaf for a puzzle (0 starts all at once).
START_RATE=${START_RATE:-3000}
# Loopback sources the swarm spreads its leaves over (0: no such option, for
# a canopy-swarm from before it; SWARM=path picks the binary).
SWARM_SOURCES=${SWARM_SOURCES:-16}
SOURCES_ARG=()
[ "$SWARM_SOURCES" = 0 ] || SOURCES_ARG=(--source-addresses "$SWARM_SOURCES")
RESULTS=${RESULTS:-$PWD/tests/bench/results}
for b in "$BUILD/supernode/canopy-supernode" "$BUILD/tests/canopy-swarm"; do
  [ -x "$b" ] || {
    echo "SKIP leaves_at_size: $b is not built"
    exit 0
  }
done
command -v jq >/dev/null || {
  echo "SKIP leaves_at_size: needs jq"
  exit 0
}
. tests/integration/lib.sh
. tests/tools/swarm_procs.sh
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
HZ=$(getconf CLK_TCK)

wait_slow() {
  local end=$(($(date +%s) + $1))
  shift
  until "$@"; do
    [ "$(date +%s)" -lt $end ] || return 1
    sleep 1
  done
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Times the process went to sleep (voluntary context switches, all its
# threads): one per wakeup of its loop.
sleeps() { cat /proc/$1/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches:/ { s += $2 } END { print s + 0 }'; }
snj() { "$SN" stats --state-dir "$T/$1" --json 2>/dev/null; }
all_attached() { [ "$(swarm_status "$1" | jq .attach_all_ms)" -ge 0 ] 2>/dev/null; }
all_published() { [ "$(snj "$1" | jq .index_entries)" -ge "$2" ] 2>/dev/null; }

run_one() {
  local n=$1 e=$2 k=$3 tag="N=$1 E=$2" procs sn sw pid
  procs=${SWARM_PROCS:-$(((n + 9999) / 10000))}
  sn=sn$k
  sw=sw$k
  # Other tests on this machine take ports too: a few tries.
  local try
  for try in 0 1 2 3; do
    rm -f "$T/$sn/control.sock"
    "$SN" --listen "127.0.0.1:$(port $((k + 20 * try)))" --state-dir "$T/$sn" --stun off \
      --max-leaves $((n + 100)) --memory-limit $((4096 + 2 * n)) \
      --max-handshakes-per-address 100000 \
      --max-handshakes-per-prefix 100000 --log-level warning ${SN_ARGS:-} >"$T/$sn.log" 2>&1 &
    pid=$!
    PIDS+=($pid)
    if wait_for 5 test -S "$T/$sn/control.sock"; then break; fi
    [ $try -lt 3 ] || fail "super node did not start: $(cat "$T/$sn.log")"
  done
  k=$((k + 20 * try))
  sleep 1
  local rss0 snc0
  rss0=$(rss_kib $pid)
  snc0=$(cpu_ticks $pid)
  swarm_start "$sw" "$n" "$procs" --supernode "127.0.0.1:$(port "$k")" --files-per-leaf 0 \
    --entries-per-leaf "$e" --start-rate "$(awk -v r="$START_RATE" -v p="$procs" 'BEGIN { print r / p }')" --max-pending $((MAX_PENDING / procs)) \
    ${SOURCES_ARG[@]+"${SOURCES_ARG[@]}"} --log-level warning
  local aperf=()
  if [ "${PERF_ATTACH:-0}" = 1 ]; then
    local swpids=() j
    for ((j = 0; j < procs; j++)); do swpids+=("$(eval echo "\$SWARM_PID_${sw}_$j")"); done
    perf record -g -o "$T/attach_swarm.data" -p "$(
      IFS=,
      echo "${swpids[*]}"
    )" >/dev/null 2>&1 &
    aperf+=($!)
    perf record -g -o "$T/attach_sn.data" -p "$pid" >/dev/null 2>&1 &
    aperf+=($!)
  fi
  # The swarm times the attach itself: polling its status (a walk of every
  # leaf, and jq) once a second keeps that off the two cores it measures on.
  if ! wait_slow "$ATTACH_S" all_attached "$sw"; then
    echo "at_size $tag attach: only $(swarm_status "$sw" | jq .attached) of $n attached after ${ATTACH_S} s (skipped)"
    stop_one
    return 0
  fi
  local st i swc=0 snc1
  snc1=$(cpu_ticks $pid)
  for ((i = 0; i < procs; i++)); do
    swc=$((swc + $(eval cpu_ticks "\$SWARM_PID_${sw}_$i")))
  done
  if [ ${#aperf[@]} -gt 0 ]; then
    kill -INT "${aperf[@]}" 2>/dev/null || true
    wait "${aperf[@]}" 2>/dev/null || true
    mkdir -p "$RESULTS"
    local what
    for what in swarm sn; do
      # By library first (libsodium: the handshakes' crypto), then by symbol.
      {
        perf report -i "$T/attach_$what.data" --stdio --no-children -g none --sort dso \
          2>/dev/null | grep -v '^$' | grep -v '^#' | head -12
        perf report -i "$T/attach_$what.data" --stdio --no-children -g none --percent-limit 0.3 \
          2>/dev/null | grep -v '^$' | head -100
      } >"$RESULTS/attach_${what}_${n}_${e}.txt" || true
    done
  fi
  st=$(swarm_status "$sw")
  echo "at_size $tag attach_rate: $(jq -r --argjson n "$n" '($n * 1000 / .attach_all_ms | floor | tostring) + " sessions/s (all attached in " + (.attach_all_ms | tostring) + " ms)"' <<<"$st")"
  # CPU per attach, the generator's (all its CPU from start, identities
  # included) and the super node's: both share this machine's cores.
  awk -v sw="$swc" -v sn="$((snc1 - snc0))" -v hz="$HZ" -v n="$n" -v tag="$tag" 'BEGIN {
    printf "at_size %s cpu_per_attach: swarm %.0f us, super node %.0f us\n", tag, 1e6 * sw / hz / n, 1e6 * sn / hz / n }'
  # A crowd that trips the handshake cookie step (shared/cookie.h) solves
  # puzzles: that attach rate is the puzzle's, not the handshake's.
  echo "at_size $tag attach_cookies: $(snj "$sn" | jq -r '"\(.handshake_cookies_sent) challenges, \(.handshakes_abandoned) abandoned, step \(.handshake_cookie_step), \(.handshake_cookie_prefixes) prefixes held"')"
  if [ "${ATTACH_ONLY:-0}" = 1 ]; then
    stop_one
    return 0
  fi
  wait_for 120 all_published "$sn" $((n * e)) || echo "at_size $tag: not every entry indexed after 120 s"
  sleep 2
  # Idle: every leaf attached and published, nothing but keepalives.
  local c0 c1 p0 p1 t0 t1 w0 w1 perfpid=""
  if [ "${PERF:-0}" = 1 ]; then
    mkdir -p "$RESULTS"
    perf record -g -o "$T/perf.data" -p $pid -- sleep "$IDLE_S" >/dev/null 2>&1 &
    perfpid=$!
  fi
  p0=$(swarm_status "$sw" | jq .pings_sent)
  c0=$(cpu_ticks $pid)
  w0=$(sleeps $pid)
  t0=$(date +%s%N)
  sleep "$IDLE_S"
  c1=$(cpu_ticks $pid)
  w1=$(sleeps $pid)
  t1=$(date +%s%N)
  p1=$(swarm_status "$sw" | jq .pings_sent)
  if [ -n "$perfpid" ]; then
    wait $perfpid || true
    perf report -i "$T/perf.data" --stdio 2>/dev/null | head -60 >"$RESULTS/perf_${n}_${e}.txt" || true
    # Self time per symbol: where the cycles go, without the call chains.
    perf report -i "$T/perf.data" --stdio --no-children -g none --percent-limit 0.5 2>/dev/null |
      grep -v '^$' | head -80 >"$RESULTS/perf_${n}_${e}_self.txt" || true
  fi
  # STRACE_S=10: the super node's syscalls over that many idle seconds,
  # after the CPU window (strace itself slows the traced process), per
  # keepalive the swarm sent meanwhile, to $RESULTS/strace_N_E.txt.
  if [ "${STRACE_S:-0}" -gt 0 ] && command -v strace >/dev/null; then
    mkdir -p "$RESULTS"
    local sp0 sp1
    sp0=$(swarm_status "$sw" | jq .pings_sent)
    timeout -s INT "$STRACE_S" strace -c -f -p $pid -o "$RESULTS/strace_${n}_${e}.txt" 2>/dev/null || true
    sp1=$(swarm_status "$sw" | jq .pings_sent)
    echo "at_size $tag strace: $((sp1 - sp0)) keepalives in ${STRACE_S} s, $(awk '/total/ { print $4 }' "$RESULTS/strace_${n}_${e}.txt") syscalls"
  fi
  local rss s
  rss=$(rss_kib $pid)
  [ "$e" -ne 0 ] || BARE[$n]=$(((rss - rss0) * 1024 / n))
  s=$(snj "$sn")
  awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$HZ" -v p0="$p0" -v p1="$p1" \
    -v tag="$tag" -v n="$n" -v rss="$rss" -v rss0="$rss0" -v w0="$w0" -v w1="$w1" \
    -v ib="$(jq .index_bytes <<<"$s")" -v ie="$(jq .index_entries <<<"$s")" -v bare="${BARE[$n]:-}" 'BEGIN {
      cpu = (c1 - c0) / hz; wall = (t1 - t0) / 1e9
      printf "at_size %s idle_cpu: %.1f %% of one core over %.0f s\n", tag, 100 * cpu / wall, wall
      printf "at_size %s cpu_per_keepalive: %.1f us (%d keepalives)\n", tag, \
        (p1 > p0 ? 1e6 * cpu / (p1 - p0) : 0), p1 - p0
      printf "at_size %s wakeups: %.0f /s (%.2f per keepalive)\n", tag, (w1 - w0) / wall, \
        (p1 > p0 ? (w1 - w0) / (p1 - p0) : 0)
      printf "at_size %s rss_per_leaf: %.0f B (%.1f MiB over the empty daemon), beyond the charged index %.0f B\n", \
        tag, (rss - rss0) * 1024 / n, (rss - rss0) / 1024, ((rss - rss0) * 1024 - ib) / n
      printf "at_size %s index_per_entry: %.0f B (%d entries, %d B)\n", tag, ie ? ib / ie : 0, ie, ib
      if (bare != "" && ie > 0)
        printf "at_size %s rss_per_entry: %.0f B (RSS per leaf minus E=0 RSS per leaf, over E)\n", \
          tag, ((rss - rss0) * 1024 / n - bare) / (ie / n)
    }'
  # Searches at SEARCH_RATE, from swarm process 0 (E=0: nothing to find).
  if [ "$e" -eq 0 ]; then
    stop_one
    return 0
  fi
  "$SWARM" search-rate --state-dir "$T/$sw.0" --rate "$SEARCH_RATE" >/dev/null
  sleep "$SEARCH_S"
  st=$("$SWARM" status --state-dir "$T/$sw.0" --json)
  "$SWARM" search-rate --state-dir "$T/$sw.0" --rate 0 >/dev/null
  echo "at_size $tag search: $(jq -r '"p50 \(.search_p50_ms) ms, p99 \(.search_p99_ms) ms (\(.searches_hit) hit, \(.searches_missed) missed, \(.searches_skipped) skipped of \(.searches_sent + .searches_skipped))"' <<<"$st") at $SEARCH_RATE/s"
  stop_one
}

stop_one() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

k=0
for n in $SIZES; do
  for e in $ENTRIES; do
    k=$((k + 1))
    run_one "$n" "$e" "$k"
  done
done
