#!/usr/bin/env bash
# Address book under lies (issue 11, finding 15): a hostile "super node"
# claims a listen address nobody answers on and gossips thousands of made-up
# addresses. The super node passes on only the address it dialled and saw
# answer (the honest neighbour's), its book stays bounded, and a search
# across the honest link still finds the file.
. "$(dirname "$0")/lib.sh"

# --degree 2: s1 has its two links (s2 and the liar), so it dials none of
# the gossip and the made-up addresses stay in its book untried: only
# verification keeps them from being passed on. (Its soft max of 4 links
# leaves room for the asker, which a full node would REFUSE.)
start_sn s1 1 --degree 2
start_sn s2 2 --peer "127.0.0.1:$(port 1)"
wait_for 10 links_at_least s1 1 || fail "no link"
book() { "$SN" stats --state-dir "$T/$1" --json | jq -r ".address_book.$2"; }
verified_at_least() { [ "$(book "$1" verified)" -ge "$2" ]; }
# s2 dialled s1; s1 dials s2's HELLO address back before passing it on.
wait_for 10 verified_at_least s1 1 || fail "s1 never verified s2's address"
mkdir -p "$T/far-share"
echo "far away" >"$T/far-share/book keeper.txt"
start_leaf far 2
start_leaf near 1

claim="127.0.0.1:$(port 9)" # nothing listens there
"$HOSTILE" gossip "127.0.0.1:$(port 1)" 3000 "$claim" >"$T/passed-on" ||
  fail "hostile gossip run failed"
note "s1 passes on: $(tr '\n' ' ' <"$T/passed-on")"
grep -qx "127.0.0.1:$(port 2)" "$T/passed-on" || fail "the honest neighbour's address was not passed on"
[ "$(wc -l <"$T/passed-on")" -eq 1 ] || fail "unverified addresses were passed on"
size=$(book s1 size)
note "book: size $size, verified $(book s1 verified), evicted $(book s1 evicted), refused $(book s1 refused), probes failed $(book s1 probes_failed)"
[ "$size" -le 256 ] || fail "address book grew to $size"
[ "$(book s1 evicted)" -gt 0 ] || fail "nothing was evicted"
links_at_least s1 1 || fail "the honest link is gone"
n=$(hits near --wait 2000 book keeper)
[ "$n" -eq 1 ] || fail "search across the honest link found $n hits"
kill -0 "$PID_s1" || fail "super node died"
echo "address_book: ok"
