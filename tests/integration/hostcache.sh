#!/usr/bin/env bash
# A leaf knows more than one super node (issue 12): its host cache.
#  (b) started with an unreachable first --supernode, it attaches to the next;
#  (c) a full super node (--max-leaves reached) refuses a new leaf with the
#      addresses of others, and the leaf attaches to one of them;
#  (a) a super node outside any group is killed: its leaf attaches to one
#      it learned from HOSTS within HOSTCACHE_FAILOVER_S, republishes, and a
#      search from another super node finds its file again;
#  and the host cache survives a restart of the leaf (STATE_DIR/supernodes,
#  0600), while a corrupt file is reported and ignored.
. "$(dirname "$0")/lib.sh"
KEEPALIVE=1000
# The bound for (a): the lost session is redialed once after ~250 ms (it is
# refused at once: the process is gone), then the next host after ~250 ms,
# and a handshake; 5 s leaves room for a loaded 2-core machine (ASan).
HOSTCACHE_FAILOVER_S=5

addr() { echo "127.0.0.1:$(port "$1")"; }

# leaf NAME SN_ADDR... : a leaf with one --supernode per address
leaf() {
  local name=$1; shift
  local args=()
  for a in "$@"; do args+=(--supernode "$a"); done
  mkdir -p "$T/$name-share"
  "$LEAF" "${args[@]}" --share "$T/$name-share" --state-dir "$T/$name" \
          --keepalive-ms "$KEEPALIVE" --log-level debug >>"$T/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$name=$!"
}
status() { "$LEAF" status --state-dir "$T/$1" --json 2>/dev/null; }
attached_to() { [ "$(status "$1" | jq -r 'if .connected then .supernode else "" end')" = "$2" ]; }
attached_not_to() {
  local s; s=$(status "$1" | jq -r 'if .connected then .supernode else "" end')
  [ -n "$s" ] && [ "$s" != "$2" ]
}
knows() { status "$1" | jq -e --arg a "$2" '[.hosts[].address] | index($a) != null' >/dev/null; }

start_sn s1 1
start_sn s2 2 --peer "$(addr 1)"
start_sn s3 3 --peer "$(addr 1)" --peer "$(addr 2)"
start_sn s4 4 --peer "$(addr 1)" --max-leaves 1
wait_for 15 links_at_least s1 3 || fail "the super nodes did not link"

# (b) The first --supernode does not answer (nothing listens on port 9).
leaf asker "$(addr 9)" "$(addr 1)"
wait_for 10 attached_to asker "$(addr 1)" || fail "(b) the leaf did not attach to its second --supernode"
status asker | jq -e --arg a "$(addr 9)" '.hosts[] | select(.address == $a) | .failures >= 1' >/dev/null \
  || fail "(b) the unreachable super node is not marked as failing"
note "(b) unreachable first --supernode: attached to the second"

# (c) s4 holds one leaf; the next is refused with others' addresses.
leaf filler "$(addr 4)"
wait_for 10 attached_to filler "$(addr 4)" || fail "(c) filler did not attach to s4"
leaf newcomer "$(addr 4)"
wait_for 15 attached_not_to newcomer "$(addr 4)" || fail "(c) the refused leaf did not attach elsewhere"
refusal=$(status newcomer | jq -r '.last_refusal // ""')
echo "$refusal" | grep -q "leaves full" || fail "(c) no refusal recorded: '$refusal'"
echo "$refusal" | grep -Eq "127\.0\.0\.1:$(port 1)|127\.0\.0\.1:$(port 2)|127\.0\.0\.1:$(port 3)" \
  || fail "(c) the refusal named no other super node: '$refusal'"
grep -q "refused by $(addr 4) (leaves full" "$T/newcomer.log" || fail "(c) the refusal is not in the leaf's log"
[ "$(snstat s4 leaves)" -eq 1 ] || fail "(c) s4 holds more than max-leaves"
note "(c) refused by the full super node: $refusal; attached to $(status newcomer | jq -r .supernode)"

# (a) A leaf on s3 shares a file and learns the others from HOSTS.
mkdir -p "$T/mover-share"
echo unique >"$T/mover-share/zebra unique tune.ogg"
leaf mover "$(addr 3)"
wait_for 10 attached_to mover "$(addr 3)" || fail "(a) mover did not attach to s3"
wait_for 10 knows mover "$(addr 1)" || fail "(a) mover learned no other super node (HOSTS)"
wait_for 10 sh -c "[ \"\$('$LEAF' search --state-dir '$T/asker' --json --ttl 2 zebra | grep -c content_id)\" -eq 1 ]" \
  || fail "(a) the file is not found before the kill"
kill -9 "$PID_s3"
wait "$PID_s3" 2>/dev/null || true
t0=$(date +%s%N)
wait_for $((HOSTCACHE_FAILOVER_S + 5)) attached_not_to mover "$(addr 3)" || fail "(a) mover did not attach elsewhere"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
new=$(status mover | jq -r .supernode)
note "(a) s3 killed: mover attached to $new after ${ms} ms (bound ${HOSTCACHE_FAILOVER_S} s)"
[ $ms -le $((HOSTCACHE_FAILOVER_S * 1000)) ] || fail "(a) took ${ms} ms"
[ "$(status mover | jq -r .publishes)" -ge 2 ] || fail "(a) mover did not republish"
wait_for 10 sh -c "[ \"\$('$LEAF' search --state-dir '$T/asker' --json --ttl 2 zebra | grep -c content_id)\" -eq 1 ]" \
  || fail "(a) the file is not found again after the move"
note "(a) its file is found again from s1"

# The host cache survives a restart: mover comes back configured with the
# dead s3 only, and still attaches (to what it learned).
kill "$PID_mover"
wait "$PID_mover" 2>/dev/null || true
f="$T/mover/supernodes"
[ -f "$f" ] || fail "no host cache file"
[ "$(stat -c %a "$f")" = 600 ] || fail "host cache file mode $(stat -c %a "$f")"
grep -q "^$(addr 1) " "$f" || fail "host cache file lacks s1: $(cat "$f")"
leaf mover "$(addr 3)"
wait_for 15 attached_not_to mover "$(addr 3)" || fail "restarted with only the dead s3 configured, mover did not attach from its cache"
note "restart: the host cache file brought mover to $(status mover | jq -r .supernode)"

# A corrupt file is reported and ignored.
kill "$PID_filler"
wait "$PID_filler" 2>/dev/null || true
printf 'garbage\n\x01\x02\n' >"$T/filler/supernodes"
leaf filler "$(addr 1)"
wait_for 10 attached_to filler "$(addr 1)" || fail "a corrupt host cache file kept the leaf from attaching"
grep -q "supernodes is corrupt" "$T/filler.log" || fail "the corrupt file was not reported"
note "corrupt host cache file reported and ignored"
# A super node fills the host cache with made-up super nodes claiming no
# load (canopy-hostile hostsflood: 20 HOSTS of 32). The caps hold (8 per /24,
# 32 from one super node, 64 in all), and when it hangs up the leaf goes at
# once to one that took it before, not through 32 dead addresses first.
leaf victim "$(addr 2)"
wait_for 10 attached_to victim "$(addr 2)" || fail "victim did not attach to s2"
wait_for 10 grep -q "^$(addr 2) .* 2\$" "$T/victim/supernodes" || fail "s2 not saved as the last that worked"
kill "$PID_victim"
wait "$PID_victim" 2>/dev/null || true
"$HOSTILE" hostsflood "$(addr 7)" 20 >"$T/hostile.log" 2>&1 &
HPID=$!
PIDS+=($HPID)
sleep 0.5
leaf victim "$(addr 7)"
wait "$HPID" || fail "the hostile super node got no leaf: $(cat "$T/hostile.log")"
grep -q "hosts sent 640" "$T/hostile.log" || fail "hostsflood: $(cat "$T/hostile.log")"
t0=$(date +%s%N)
wait_for 10 attached_to victim "$(addr 2)" || fail "victim did not go back to s2"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
hosts=$(status victim | jq -r '.hosts[].address')
narrow=$(echo "$hosts" | grep -c '^10\.66\.0\.' || true)
fake=$(echo "$hosts" | grep -c '^10\.' || true)
total=$(echo "$hosts" | grep -c . || true)
note "hostsflood: 640 made-up hosts; the cache kept $narrow of 10.66.0.0/24, $fake in all of them, $total entries; back on s2 after ${ms} ms"
[ "$narrow" -ge 1 ] && [ "$narrow" -le 8 ] || fail "$narrow entries of one /24 (cap 8)"
[ "$fake" -le 32 ] || fail "$fake entries named by one super node (cap 32)"
[ "$total" -le 64 ] || fail "$total entries (cap 64)"
[ $ms -le 3000 ] || fail "the leaf took ${ms} ms to reach a super node it knew (dead addresses first?)"
echo "hostcache: ok"
