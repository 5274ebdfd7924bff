#!/usr/bin/env bash
# A super-node link floods random walks (supernode/walk.h, MESH.md): 500
# WALKs a second for 5 s, each ending at the victim, so each would ask for
# a WALK_REPLY. The victim answers at most WALK_LINK_BURST (8) a second,
# drops and counts the rest, keeps its honest link, and a leaf on it still
# finds a file on the other super node.
. "$(dirname "$0")/lib.sh"

start_sn s1 1
start_sn s2 2 --peer "127.0.0.1:$(port 1)"
wait_for 10 links_at_least s1 1 || fail "no link"
mkdir -p "$T/far-share"
echo x >"$T/far-share/walk target.txt"
start_leaf honest 1
start_leaf far 2
wait_for 10 eval '[ "$(hits honest --ttl 1 --wait 500 walk target)" -eq 1 ]' ||
  fail "no hit before the attack"

RATE=500 SECS=5
out=$("$HOSTILE" walkflood "127.0.0.1:$(port 1)" "$RATE" "$SECS") || fail "walkflood: $out"
read -r _ sent _ replies _ link <<<"$out"
dropped=$(snstat s1 walks_dropped)
note "walkflood: $out; s1 dropped $dropped"
[ "$link" = up ] || fail "the victim hung up on a link within its limits"
[ "$sent" -ge $((RATE * SECS * 8 / 10)) ] || fail "the flood sent only $sent"
# 8 a second per link; one window more for the edges.
[ "$replies" -ge 1 ] || fail "no walk answered at all"
[ "$replies" -le $((8 * (SECS + 1))) ] || fail "$replies replies: over the per-link budget"
[ "$dropped" -ge $((sent - 8 * (SECS + 1))) ] || fail "only $dropped of $sent dropped"
kill -0 "$PID_s1" || fail "super node died"
links_at_least s1 1 || fail "s1 lost its honest link"
[ "$(hits honest --ttl 1 --wait 1000 walk target)" -eq 1 ] || fail "honest search failed after the flood"
echo "walk_flood: ok"
