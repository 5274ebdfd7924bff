# lib.sh - helpers for integration tests: real daemons on loopback.
#
# Each test sources this, starts processes with start_sn / start_leaf, and
# relies on the EXIT trap to stop exactly the processes it started and remove
# its scratch dir, also on failure. Binaries come from $CANOPY_BIN (a build
# dir), so the same tests run against the sanitizer build.
set -euo pipefail

: "${CANOPY_BIN:?set CANOPY_BIN to a build directory}"
SN="$CANOPY_BIN/supernode/canopy-supernode"
LEAF="$CANOPY_BIN/leafnode/canopy-leaf"
HOSTILE="$CANOPY_BIN/tests/canopy-hostile"
T=$(mktemp -d "${TMPDIR:-/tmp}/canopy-it.XXXXXX")
PIDS=()
# A random port range per test run, so parallel or leftover runs do not clash.
# It stays below the kernel's ephemeral range (32768 up, by default), where
# the outgoing connections of a large swarm would take our listen ports.
BASE=${CANOPY_PORT_BASE:-$((20000 + (RANDOM % 120) * 100))}

cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ $rc -ne 0 ]; then
    echo "--- logs of the failed test ($T) ---"
    for f in "$T"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 30 "$f"; }; done
  fi
  rm -rf "$T"
  exit $rc
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "  $*"; }

port() { echo $((BASE + $1)); }

# start_sn NAME INDEX [extra args...]: super node NAME on 127.0.0.1:BASE+INDEX
start_sn() {
  local name=$1 idx=$2; shift 2
  "$SN" --listen "127.0.0.1:$(port "$idx")" --state-dir "$T/$name" --keepalive-ms "${KEEPALIVE:-1000}" \
        --log-level debug "$@" >"$T/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$name=$!"
  wait_for 5 test -S "$T/$name/control.sock" || fail "super node $name did not start"
}

# start_leaf NAME SN_INDEX [extra args...]: leaf sharing $T/NAME-share
start_leaf() {
  local name=$1 idx=$2; shift 2
  mkdir -p "$T/$name-share"
  "$LEAF" --supernode "127.0.0.1:$(port "$idx")" --share "$T/$name-share" --state-dir "$T/$name" \
          --keepalive-ms "${KEEPALIVE:-1000}" --log-level debug "$@" >"$T/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$name=$!"
  wait_for 5 connected "$name" || fail "leaf $name did not connect"
}

# (jq -e succeeds on empty input: compare the value itself.)
connected() { [ "$("$LEAF" status --state-dir "$T/$1" --json 2>/dev/null | jq -r '.connected')" = true ]; }
leaf_id() { "$LEAF" status --state-dir "$T/$1" --json | jq -r .id; }

# snstat SN KEY: one counter of a super node
snstat() { "$SN" stats --state-dir "$T/$1" --json | jq -r ".$2"; }

# search LEAF [args...]: JSON hits, one per line
search() { local l=$1; shift; "$LEAF" search --state-dir "$T/$l" --json "$@"; }
hits() { search "$@" | grep -c '"content_id"' || true; }

# wait_for SECONDS CMD...: poll until CMD succeeds
wait_for() {
  local end=$(( $(date +%s%N) / 1000000 + $1 * 1000 )); shift
  until "$@"; do
    [ $(( $(date +%s%N) / 1000000 )) -lt $end ] || return 1
    sleep 0.1
  done
}

links_at_least() { [ "$(snstat "$1" links)" -ge "$2" ]; }
