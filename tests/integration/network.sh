#!/usr/bin/env bash
# network.sh - a network key admits super nodes: super nodes certified by it
# link and carry searches; a stranger (no certificate) and a node of another
# network are refused by them; a leaf given the network key refuses a super
# node that cannot prove membership and works with one that can; a node
# whose certificate names another node does not start; a renewed
# certificate is taken on SIGHUP.
. "$(dirname "$0")/lib.sh"

umask 077
# The operator's key: created once, shown again the same, never overwritten.
NET=$("$SN" network-key new "$T/netkey" 2>"$T/new.err") || fail "network-key new failed: $(cat "$T/new.err")"
[ ${#NET} -eq 64 ] || fail "network-key new printed '$NET'"
[ "$("$SN" network-key show "$T/netkey")" = "$NET" ] || fail "network-key show differs from new"
if "$SN" network-key new "$T/netkey" 2>"$T/err"; then fail "network-key new overwrote a key"; fi
grep -q "already holds a network key" "$T/err" || fail "unclear: $(cat "$T/err")"

# A node of the network without its certificate does not start, and says
# how to get one; its key is made, so the operator can certify it.
if "$SN" --listen "127.0.0.1:$(port 1)" --state-dir "$T/s1" --network-key "$NET" --stun off \
     >"$T/nocert.out" 2>&1; then
  fail "a super node started without its network certificate"
fi
grep -q "network-key certify" "$T/nocert.out" || fail "unclear: $(cat "$T/nocert.out")"
for n in s1 s2; do
  mkdir -p "$T/$n"
  [ -f "$T/$n/identity.key" ] || "$SN" --listen "127.0.0.1:$(port 9)" --state-dir "$T/$n" \
      --network-key "$NET" --stun off >/dev/null 2>&1 || true
  "$SN" network-key certify "$T/netkey" --node-state-dir "$T/$n" --days 30 \
    -o "$T/$n/network.cert" 2>>"$T/certify.log" || fail "certify $n failed: $(cat "$T/certify.log")"
done
note "$(tail -n 1 "$T/certify.log")"

start_sn s1 1 --no-discovery --network-key "$NET" --stun off
start_sn s2 2 --no-discovery --network-key "$NET" --stun off --peer "127.0.0.1:$(port 1)"
wait_for 10 links_at_least s1 1 || fail "two certified super nodes did not link"
[ "$("$SN" status --state-dir "$T/s1" --json | jq -r .network)" = "$NET" ] || fail "status lacks the network"

# A stranger (an open super node) and a node of another network dial s1.
start_sn s3 3 --no-discovery --stun off --peer "127.0.0.1:$(port 1)"
OTHER=$("$SN" network-key new "$T/otherkey" 2>/dev/null)
mkdir -p "$T/s4"
"$SN" --listen "127.0.0.1:$(port 9)" --state-dir "$T/s4" --network-key "$OTHER" --stun off >/dev/null 2>&1 || true
"$SN" network-key certify "$T/otherkey" --node-state-dir "$T/s4" -o "$T/s4/network.cert" 2>/dev/null
start_sn s4 4 --no-discovery --network-key "$OTHER" --stun off --peer "127.0.0.1:$(port 1)"
wait_for 10 grep -q "not admitted to the network (no certificate)" "$T/s1.log" ||
  fail "s1 did not refuse the stranger s3, or did not say why"
wait_for 10 grep -q "not admitted to the network (certificate of another network)" "$T/s1.log" ||
  fail "s1 did not refuse s4 of another network, or did not say why"
wait_for 10 grep -q "not admitted to the network (certificate of another network)" "$T/s4.log" ||
  fail "s4 did not refuse s1 in turn"
sleep 1 # redials (with backoff) stay refused
[ "$(snstat s1 links_refused)" -ge 2 ] || fail "s1 counts $(snstat s1 links_refused) refusals"
[ "$(snstat s1 links)" = 1 ] || fail "s1 has $(snstat s1 links) links: a stranger got in"
[ "$(snstat s3 links)" = 0 ] || fail "the stranger s3 is linked"
[ "$(snstat s4 links)" = 0 ] || fail "s4 of another network is linked"
note "s1 linked to s2 only; refused: $(snstat s1 links_refused) (a stranger, another network)"

# Leaves: with the network key they search across the certified mesh;
# one aimed at the stranger refuses it; one without the key needs none.
mkdir -p "$T/lb-share"
head -c 100000 /dev/urandom >"$T/lb-share/network manual.pdf"
start_leaf la 1 --network-key "$NET"
start_leaf lb 2 --network-key "$NET"
wait_for 10 sh -c "[ \$(\"$LEAF\" search --state-dir '$T/la' --json --ttl 1 manual | grep -c content_id) -ge 1 ]" ||
  fail "a search did not cross the certified mesh"
mkdir -p "$T/lc-share"
"$LEAF" --supernode "127.0.0.1:$(port 3)" --share "$T/lc-share" --state-dir "$T/lc" \
  --keepalive-ms 1000 --network-key "$NET" --log-level debug >"$T/lc.log" 2>&1 &
PIDS+=($!)
lc_refused() { "$LEAF" status --state-dir "$T/lc" --json 2>/dev/null | jq -r .last_error | grep -q "not admitted"; }
wait_for 10 lc_refused || fail "the leaf did not refuse the stranger: $("$LEAF" status --state-dir "$T/lc" --json 2>&1 | head -c 300)"
! connected lc || fail "the leaf counts the stranger as its super node"
[ "$(snstat s3 index_entries)" = 0 ] || fail "the leaf published to a super node it refused"
note "leaf aimed at the stranger: $("$LEAF" status --state-dir "$T/lc" --json | jq -r .last_error)"
start_leaf ld 1
note "leaves need no certificate: ld on s1 without --network-key is connected"

# A certificate for another node: refused at start, naming it.
mkdir -p "$T/s5"
"$SN" --listen "127.0.0.1:$(port 9)" --state-dir "$T/s5" --network-key "$NET" --stun off >/dev/null 2>&1 || true
cp "$T/s1/network.cert" "$T/s5/network.cert"
if "$SN" --listen "127.0.0.1:$(port 5)" --state-dir "$T/s5" --network-key "$NET" --stun off \
     >"$T/s5.out" 2>&1; then
  fail "a super node started with another node's certificate"
fi
grep -q "certificate of another node" "$T/s5.out" || fail "unclear: $(cat "$T/s5.out")"

# Renewal: a new certificate in place, SIGHUP, and status shows it.
before=$("$SN" status --state-dir "$T/s1" --json | jq .network_cert_expires)
"$SN" network-key certify "$T/netkey" --node-state-dir "$T/s1" --days 90 -o "$T/s1/network.cert" 2>/dev/null
kill -HUP "$PID_s1"
renewed() { [ "$("$SN" status --state-dir "$T/s1" --json | jq .network_cert_expires)" -gt "$before" ]; }
wait_for 5 renewed || fail "the renewed certificate was not taken on SIGHUP"
note "renewed on SIGHUP: expiry $before -> $("$SN" status --state-dir "$T/s1" --json | jq .network_cert_expires)"
echo "network: ok"
