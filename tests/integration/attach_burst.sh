#!/usr/bin/env bash
# attach_burst.sh - a crowd of honest leaves attaching at once is not made to
# solve puzzles (issue 12), while the handshake cookie keeps its defaults.
#
# One canopy-supernode with the default cookie settings (shared/cookie.h: the
# step engages above 3,500 M1s a second, 512 handshakes in progress, or 100
# handshakes abandoned in a second) and a canopy-swarm of BURST_LEAVES leaves
# (default 2000; 500 under ASan) started all at once with 400 handshakes in
# flight. The pre-auth caps per address and prefix are opened because every
# leaf comes from 127.0.0.1. What the operator and the leaves notice:
#   - every leaf attaches within 60 s and no challenge was sent: with the old
#     thresholds (200 a second, 32 in progress) this crowd got thousands;
#   - the super node is killed (kill -9) and restarted on the same address:
#     every leaf is back within 60 s, again without a challenge;
#   - an M1 flood then still engages the step (abandoned handshakes), as in
#     handshake_flood.sh.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../tools/swarm_procs.sh"
command -v jq >/dev/null || { echo "SKIP: needs jq"; exit 0; }
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ -n "${ASAN_OPTIONS:-}" ]; then N=${BURST_LEAVES:-500}; else N=${BURST_LEAVES:-2000}; fi
[ "$(ulimit -n)" -gt $((N + 100)) ] || N=$(($(ulimit -n) - 100))

SN_ARGS=(--stun off --max-leaves $((N + 100)) --memory-limit $((4096 + 2 * N))
  --max-handshakes-per-address 100000 --max-handshakes-per-prefix 100000 --log-level warning)
attached() { [ "$(swarm_status sw | jq .attached)" -eq "$N" ] 2>/dev/null; }
sn_has_all() { [ "$(snstat sn leaves)" -eq "$N" ] 2>/dev/null; }
# Engaged for everyone, or for the flood's own prefix (it abandons its
# handshakes, shared/cookie.h): either way the flood must solve puzzles.
step_on() { [ "$(snstat sn handshake_cookie_step)" = true ] || [ "$(snstat sn handshake_cookie_prefixes)" -ge 1 ]; }

KEEPALIVE=5000 start_sn sn 1 "${SN_ARGS[@]}"
t0=$(date +%s%N)
swarm_start sw "$N" 1 --supernode "127.0.0.1:$(port 1)" --files-per-leaf 0 \
  --start-rate 0 --max-pending 400 --log-level warning
wait_for 60 attached || fail "only $(swarm_status sw | jq .attached) of $N leaves attached within 60 s"
note "$N leaves attached in $((($(date +%s%N) - t0) / 1000000)) ms"
sent=$(snstat sn handshake_cookies_sent)
[ "$sent" -eq 0 ] || fail "$sent honest leaves were sent a cookie challenge on attaching ($("$SN" stats --state-dir "$T/sn" --json | jq -c "{handshakes_abandoned, handshakes_pending, preauth_shed, preauth_refused, preauth_timeouts, preauth_silent}"))"

# A restart: every leaf redials at once (after its back-off).
kill -9 "$PID_sn"
wait "$PID_sn" 2>/dev/null || true
rm -f "$T/sn/control.sock"
t0=$(date +%s%N)
KEEPALIVE=5000 start_sn sn 1 "${SN_ARGS[@]}"
wait_for 60 sn_has_all || fail "only $(snstat sn leaves) of $N leaves came back within 60 s of a restart"
note "all $N leaves back $((($(date +%s%N) - t0) / 1000000)) ms after the restart"
sent=$(snstat sn handshake_cookies_sent)
[ "$sent" -eq 0 ] || fail "$sent reconnecting leaves were sent a cookie challenge"
abandoned=$(snstat sn handshakes_abandoned)
note "handshakes abandoned during the reconnect: $abandoned"

# The defaults still catch a flood: its handshakes are abandoned.
"$HOSTILE" m1flood "127.0.0.1:$(port 1)" 3 >"$T/flood.out" &
PIDS+=($!)
wait_for 5 step_on || fail "an M1 flood did not engage the cookie step"
wait $! || true
note "flood: $(cat "$T/flood.out"); challenges $(snstat sn handshake_cookies_sent)"
[ "$(snstat sn handshake_cookies_sent)" -gt 0 ] || fail "the flood got no challenge"
sn_has_all || fail "leaves were lost during the flood"
echo "attach_burst: ok"
