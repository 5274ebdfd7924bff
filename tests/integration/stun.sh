#!/usr/bin/env bash
# STUN responder: clients nobody here wrote ask a super node for their
# server-reflexive address. coturn's turnutils_stunclient speaks RFC 5389
# (XOR-MAPPED-ADDRESS); Debian's stun client speaks classic RFC 3489
# (MAPPED-ADDRESS), as libnice 0.1.21 does. Both are first pointed at a
# silent port, to prove this test notices a server that does not answer.
# A burst of garbage datagrams must leave the super node alive and answering.
. "$(dirname "$0")/lib.sh"

# The clients are test dependencies (deploy/deps.sh): missing is a failure.
command -v turnutils_stunclient >/dev/null || fail "turnutils_stunclient missing (Debian package coturn)"
command -v stun >/dev/null || fail "stun missing (Debian package stun-client)"

# rfc5389 HOST PORT: turnutils_stunclient must report HOST as our address.
rfc5389() {
  local out
  if ! out=$(timeout 5 turnutils_stunclient -p "$2" "$1" 2>&1); then
    note "turnutils_stunclient: no answer"
    return 1
  fi
  echo "$out" >"$T/turnutils.out"
  grep -qE "UDP reflexive addr: $1:[0-9]+\$" <<<"$out" ||
    { note "turnutils_stunclient said: $out"; return 1; }
  note "turnutils_stunclient: $(grep -m1 -o 'UDP reflexive addr: .*' <<<"$out")"
}

# rfc3489 PORT SRCPORT: Debian's stun client, sending from 127.0.0.1:SRCPORT,
# must get a Binding Response (type 257) whose MAPPED-ADDRESS is exactly
# that. Its exit status is the NAT type it guessed, not success.
rfc3489() {
  local out
  out=$(timeout 20 stun "127.0.0.1:$1" -v -p "$2" 2>&1 || true)
  echo "$out" >"$T/stun.out"
  grep -q "Received message of type 257" <<<"$out" || { note "stun: no binding response"; return 1; }
  grep -qx "MappedAddress = 127.0.0.1:$2" <<<"$out" ||
    { note "stun said: $(grep -m3 -E 'MappedAddress|Primary' <<<"$out" | tr '\n' ' ')"; return 1; }
  note "stun: $(grep -m1 MappedAddress <<<"$out"), $(grep -m1 -o 'Primary: [A-Za-z ]*' <<<"$out")"
}

SP=$(port 50)
start_sn s1 1 --no-discovery --stun "127.0.0.1:$SP"

# Nothing listens on port 51: both checks must fail there.
! rfc5389 127.0.0.1 "$(port 51)" || fail "turnutils_stunclient reported an address from a silent port"
! rfc3489 "$(port 51)" "$(port 60)" || fail "stun reported an address from a silent port"

rfc5389 127.0.0.1 "$SP" || fail "RFC 5389 binding request not answered with 127.0.0.1"
rfc3489 "$SP" "$(port 60)" || fail "RFC 3489 binding request not answered with 127.0.0.1:$(port 60)"
answered=$(snstat s1 stun_requests)
[ "$answered" -ge 2 ] || fail "stun_requests is $answered after two clients"

# Garbage: random bytes of many sizes, torn and wrong STUN headers,
# indications, responses, oversized datagrams. One write is one datagram.
dropped_before=$(snstat s1 stun_dropped)
exec 3>"/dev/udp/127.0.0.1/$SP"
for i in $(seq 1 300); do
  head -c $((i % 64 + 1)) /dev/urandom >&3
  head -c 1400 /dev/urandom >&3
  c='\x21\x12\xa4\x42' id=012345678901
  printf "\x00\x01\x00\x08$c" >&3                      # torn header
  printf "\x00\x01\x00\x04$c$id" >&3                   # length says 4, none follow
  printf "\x00\x11\x00\x00$c$id" >&3                   # indication
  printf "\x01\x01\x00\x00$c$id" >&3                   # response
  printf "\x00\x03\x00\x00$c$id" >&3                   # Allocate request
  printf "\x00\x01\x00\x04$c$id\x00\x01\xff\xff" >&3   # attribute overruns
done
exec 3>&-
dropped_over() { [ "$(snstat s1 stun_dropped)" -gt "$1" ]; }
wait_for 5 dropped_over $((dropped_before + 300)) ||
  fail "garbage was not counted as dropped ($(snstat s1 stun_dropped))"
kill -0 "$PID_s1" 2>/dev/null || fail "super node died on garbage"
note "garbage burst: $(($(snstat s1 stun_dropped) - dropped_before)) datagrams dropped," \
     "$(snstat s1 stun_requests) answered in all"

rfc5389 127.0.0.1 "$SP" || fail "no RFC 5389 answer after the garbage"
rfc3489 "$SP" "$(port 62)" || fail "no RFC 3489 answer after the garbage"

# One source floods (issue 11, finding 14): 4,000 requests a second from
# 127.0.1.1, over the global budget of 2,000 that it alone used to exhaust.
# It gets its own address's budget; an honest client on another address is
# answered every time, and so are the real clients.
"$HOSTILE" stunflood "127.0.0.1:$SP" 127.0.1.1 4 >"$T/flood.out" &
flooder=$!
PIDS+=($flooder)
sleep 1
rfc5389 127.0.0.1 "$SP" || fail "no RFC 5389 answer during the flood"
rfc3489 "$SP" "$(port 63)" || fail "no RFC 3489 answer during the flood"
wait $flooder || fail "the flooder failed"
read -r _ fsent _ fgot _ hsent _ hgot <"$T/flood.out"
note "flood from 127.0.1.1: $fgot of $fsent answered; honest client: $hgot of $hsent"
[ "$hgot" -eq "$hsent" ] && [ "$hsent" -ge 30 ] || fail "the honest client got $hgot of $hsent answers"
# Its address's burst (40) and 20 a second; its /24 allows no more than 200 + 100/s.
[ "$fgot" -le 200 ] || fail "the flooding source got $fgot answers"

# IPv6 where the host has a loopback address for it.
if ip -6 addr show dev lo 2>/dev/null | grep -q 'inet6 ::1/'; then
  start_sn s2 2 --no-discovery --stun "[::1]:$(port 52)"
  rfc5389 ::1 "$(port 52)" || fail "RFC 5389 over IPv6 not answered with ::1"
else
  note "no ::1 on this host: IPv6 not checked"
fi

# --turn by host name: resolved once at start, and leaves are handed the
# address (libnice takes no names); a name that does not resolve stops the
# super node with a clear message.
printf 'not-a-real-secret\n' >"$T/turn.secret"; chmod 600 "$T/turn.secret"
start_sn s3 3 --no-discovery --stun off --turn "localhost:$(port 70)" --turn-secret-file "$T/turn.secret"
start_leaf l3 3
wait_for 5 grep -q "TURN 127.0.0.1:$(port 70)" "$T/l3.log" \
  || fail "the leaf was not handed coturn's address for localhost: $(grep 'NAT info' "$T/l3.log")"
rc=0
timeout 60 "$SN" --listen "127.0.0.1:$(port 4)" --state-dir "$T/s4" --stun off \
  --turn "no-such-host.invalid:3478" --turn-secret-file "$T/turn.secret" 2>"$T/err" || rc=$?
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "a super node with an unresolvable --turn ran on (status $rc)"
grep -q "\-\-turn no-such-host.invalid:3478:" "$T/err" || fail "unclear: $(cat "$T/err")"
note "--turn by name: leaves got 127.0.0.1:$(port 70) for localhost; unresolvable: $(grep -- --turn "$T/err" | head -c 120)"

kill -0 "$PID_s1" 2>/dev/null || fail "super node died"
echo "stun: ok"
