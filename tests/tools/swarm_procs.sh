# swarm_procs.sh - one swarm of N leaves split over P canopy-swarm processes.
#
# Sourced by scripts that have sourced tests/integration/lib.sh (for $T,
# PIDS and fail). A process holds its fd limit's worth of sessions (20,000
# here, two per leaf in a group) and runs on one core; splitting spreads both.
#
#   swarm_start NAME N P [canopy-swarm args...]
#       starts P processes, $T/NAME.0 .. $T/NAME.(P-1) (state dirs; logs and
#       exit summaries beside them), leaf numbers 0..N-1 over all of them
#       (--first-index), so "swarm-<i>-<k>" names stay unique. Arguments after
#       P go to every process; SWARM_ARGS0 (an array) to process 0 only.
#   swarm_status NAME
#       one JSON object merging every process's status: sums (leaves,
#       attached, started, watching, publishes, leader_changes, pings_sent,
#       searches_*), by_supernode summed, max_term the largest, attach_all_ms
#       the slowest (-1 while one is still attaching), attach_rate the
#       leaves over it (sessions/s, null until then), search_p50_ms/p99_ms
#       from process 0 (the one that searches).
#   swarm_wait_moved NAME FROM TIMEOUT_MS OUT
#       runs wait-moved on every process at once; writes {"waiting":N} to OUT
#       once all are armed, then {"elapsed_ms":E,"half_ms":H} with the slowest process's
#       time (or the first error) and returns its status.
SWARM=${SWARM:-$CANOPY_BIN/tests/canopy-swarm}
declare -A SWARM_NPROCS=()
declare -a SWARM_ARGS0 # kept if the caller set it

swarm_start() {
  local name=$1 n=$2 p=$3 i first=0 count
  shift 3
  SWARM_NPROCS[$name]=$p
  for ((i = 0; i < p; i++)); do
    count=$(((n * (i + 1)) / p - (n * i) / p))
    local extra=()
    [ $i -ne 0 ] || extra=("${SWARM_ARGS0[@]}")
    "$SWARM" --leaves "$count" --first-index "$first" --state-dir "$T/$name.$i" "$@" "${extra[@]}" \
      >"$T/$name.$i.out" 2>"$T/$name.$i.log" &
    PIDS+=($!)
    eval "SWARM_PID_${name}_$i=$!"
    first=$((first + count))
  done
  for ((i = 0; i < p; i++)); do
    wait_for 10 test -S "$T/$name.$i/control.sock" || fail "swarm process $name.$i did not start"
  done
}

swarm_status() {
  local name=$1 i
  for ((i = 0; i < ${SWARM_NPROCS[$name]}; i++)); do
    "$SWARM" status --state-dir "$T/$name.$i" --json 2>/dev/null || return 1
  done | jq -s -c '{
      leaves: (map(.leaves) | add), attached: (map(.attached) | add),
      started: (map(.started) | add), watching: (map(.watching) | add),
      publishes: (map(.publishes) | add), leader_changes: (map(.leader_changes) | add),
      pings_sent: (map(.pings_sent) | add), searches_sent: (map(.searches_sent) | add),
      searches_hit: (map(.searches_hit) | add), searches_missed: (map(.searches_missed) | add),
      searches_skipped: (map(.searches_skipped) | add),
      max_term: (map(.max_term) | max),
      attach_all_ms: (if any(.[]; .attach_all_ms < 0) then -1 else (map(.attach_all_ms) | max) end),
      attach_rate: (if any(.[]; .attach_all_ms < 0) then null
                    else (map(.leaves) | add) * 1000 / ([map(.attach_all_ms) | max, 1] | max) end),
      by_supernode: (map(.by_supernode | to_entries) | add | group_by(.key)
                     | map({key: .[0].key, value: (map(.value) | add)}) | from_entries),
      search_p50_ms: .[0].search_p50_ms, search_p99_ms: .[0].search_p99_ms }'
}

swarm_wait_moved() {
  local name=$1 from=$2 timeout=$3 out=$4 i rc=0 wp=()
  : >"$out"
  for ((i = 0; i < ${SWARM_NPROCS[$name]}; i++)); do
    "$SWARM" wait-moved --state-dir "$T/$name.$i" --from "$from" --timeout-ms "$timeout" \
      >"$out.$i" 2>&1 &
    wp+=($!)
  done
  for ((i = 0; i < ${SWARM_NPROCS[$name]}; i++)); do
    wait_for 10 grep -q waiting "$out.$i" || {
      echo "{\"error\":\"wait_moved of $name.$i not armed: $(tr -d '"' <"$out.$i")\"}" >>"$out"
      return 1
    }
  done
  echo '{"waiting":true}' >>"$out"
  for i in "${!wp[@]}"; do wait "${wp[$i]}" || rc=$?; done
  if [ $rc -eq 0 ]; then
    cat "$out".* | jq -s -c '{elapsed_ms: (map(select(.elapsed_ms != null) | .elapsed_ms) | max),
      half_ms: (map(select(.half_ms != null) | .half_ms) | max)}' >>"$out"
  else
    cat "$out".* | grep -v '"waiting"' | tail -n 1 >>"$out"
  fi
  return $rc
}
