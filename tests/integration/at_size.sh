#!/usr/bin/env bash
# at_size.sh - one super node holds a crowd of leaves and keeps answering.
#
# One canopy-supernode (default keepalive) and a canopy-swarm of
# AT_SIZE_LEAVES leaves (default 2000; 500 under ASan, whose shadow memory
# and slower code are not what is measured here), each with real handshakes,
# encryption and keepalives, publishing 10 entries with realistic names.
# What a user would notice:
#   - every leaf attaches within ATTACH_S (default 60 s), and every entry is
#     indexed;
#   - searches at 50 a second (two keywords of another leaf's entry each)
#     are all answered, p99 under 1 s (a CI bound, not the benchmark's
#     target: see tests/bench/leaves_at_size.sh);
#   - the idle super node costs under 20 % of a core (O(sessions) per wakeup
#     measured 17 % at 1,000 leaves before the epoll loop, issue 12);
#   - its RSS grows by under 4 KiB per leaf plus 512 B per entry (not under
#     ASan).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../tools/swarm_procs.sh"
command -v jq >/dev/null || { echo "SKIP: needs jq"; exit 0; }
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ -n "${ASAN_OPTIONS:-}" ]; then N=${AT_SIZE_LEAVES:-500}; else N=${AT_SIZE_LEAVES:-2000}; fi
E=10
ATTACH_S=${ATTACH_S:-60}
IDLE_S=5
[ "$(ulimit -n)" -gt $((N + 100)) ] || N=$(($(ulimit -n) - 100))

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
snj() { "$SN" stats --state-dir "$T/sn" --json; }
all_attached() { [ "$(swarm_status sw | jq .attach_all_ms)" -ge 0 ] 2>/dev/null; }
all_indexed() { [ "$(snj | jq .index_entries)" -eq $((N * E)) ]; }

KEEPALIVE=5000 start_sn sn 1 --stun off --max-leaves $((N + 100)) --memory-limit $((4096 + 2 * N)) \
  --max-handshakes-per-address 100000 --max-handshakes-per-prefix 100000 --log-level warning
sleep 1
rss0=$(rss_kib "$PID_sn")

swarm_start sw "$N" 1 --supernode "127.0.0.1:$(port 1)" --files-per-leaf 0 --entries-per-leaf $E \
  --start-rate 0 --max-pending 400 --log-level warning
wait_for "$ATTACH_S" all_attached sw ||
  fail "only $(swarm_status sw | jq .attached) of $N leaves attached within $ATTACH_S s"
st=$(swarm_status sw)
note "$N leaves attached in $(jq .attach_all_ms <<<"$st") ms ($(jq '.attach_rate | floor' <<<"$st") sessions/s)"
[ "$(snj | jq .leaves)" -eq "$N" ] || fail "the super node counts $(snj | jq .leaves) leaves, not $N"
wait_for 30 all_indexed || fail "$(snj | jq .index_entries) of $((N * E)) entries indexed after 30 s"

# Idle: keepalives only.
c0=$(cpu_ticks "$PID_sn")
t0=$(date +%s%N)
sleep $IDLE_S
c1=$(cpu_ticks "$PID_sn")
t1=$(date +%s%N)
cpu_pct=$(awk -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v ns="$((t1 - t0))" \
  'BEGIN { printf "%.1f", 100 * c / hz / (ns / 1e9) }')
note "idle super node: $cpu_pct % of one core with $N leaves"
awk -v p="$cpu_pct" 'BEGIN { exit !(p < 20) }' || fail "the idle super node takes $cpu_pct % of a core"

# The index bytes the super node reports are what it charges its budget, not
# its heap (they exceed the RSS growth): the bound is on the RSS itself, the
# issue's 4 KiB per idle session plus 512 B per realistic entry (about 400
# measured with the merged loop; 10.4 KiB per leaf in all before it).
if [ -z "${ASAN_OPTIONS:-}" ]; then
  rss=$(rss_kib "$PID_sn")
  per_leaf=$(((rss - rss0) * 1024 / N))
  bound=$((4096 + 512 * E))
  note "super node RSS: $per_leaf B per leaf with $E entries each (bound $bound)"
  [ "$per_leaf" -lt "$bound" ] || fail "$per_leaf B of RSS per leaf with $E entries (bound $bound)"
fi

# Searches from the crowd, every one answered.
"$SWARM" search-rate --state-dir "$T/sw.0" --rate 50 >/dev/null
sleep 6
st=$("$SWARM" status --state-dir "$T/sw.0" --json)
"$SWARM" search-rate --state-dir "$T/sw.0" --rate 0 >/dev/null
note "searches: $(jq -c '{searches_sent, searches_hit, searches_missed, searches_skipped, search_p50_ms, search_p99_ms}' <<<"$st")"
jq -e '.searches_sent >= 250 and .searches_missed == 0 and .searches_skipped == 0
       and .searches_hit >= .searches_sent - 25' <<<"$st" >/dev/null ||
  fail "not every search was answered: $st"
jq -e '.search_p99_ms >= 0 and .search_p99_ms < 1000' <<<"$st" >/dev/null ||
  fail "search p99 $(jq .search_p99_ms <<<"$st") ms"
# Still all there after the searches.
[ "$(swarm_status sw | jq .attached)" -eq "$N" ] || fail "leaves fell off: $(swarm_status sw)"
echo "PASS at_size"
