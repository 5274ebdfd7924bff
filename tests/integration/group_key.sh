#!/usr/bin/env bash
# group_key.sh - a group with a secret (--group-key-file) admits only the
# super nodes that prove it: one that has another secret links as an
# ordinary neighbour, is never elected backup, and its GROUP_STATE cannot
# make the leader step down. A group without any way to prove membership
# (no key, no network key) is refused at start.
. "$(dirname "$0")/lib.sh"

umask 077
printf 'correct horse battery staple\n' >"$T/key"
printf 'another secret of some length\n' >"$T/wrong"
start_sn a 1 --group g1 --group-key-file "$T/key"
sleep 1.2 # a leads (nobody else yet)
start_sn x 3 --group g1 --group-key-file "$T/wrong" --peer "127.0.0.1:$(port 1)"
start_sn b 2 --group g1 --group-key-file "$T/key" --peer "127.0.0.1:$(port 1)"

role_is() { [ "$(snstat "$1" role)" = "$2" ]; }
wait_for 10 role_is b backup || fail "b (with the secret) did not become the backup: $(snstat b role)"
wait_for 10 links_at_least a 2 || fail "a did not link to x and b"
[ "$(snstat a role)" = leader ] || fail "a stopped leading"
[ "$(snstat a members)" = 1 ] || fail "a counts $(snstat a members) members (only b has the secret)"
backup=$("$SN" stats --state-dir "$T/a" --json | jq -r .backup.address)
[ "$backup" = "127.0.0.1:$(port 2)" ] || fail "a's backup is $backup, not b"
grep -q "claims membership without the group's secret" "$T/a.log" ||
  fail "a did not log the intruders"
# x, alone in its view of g1, leads a group of its own at most: the real
# group is untouched.
sleep 1.5
[ "$(snstat a role)" = leader ] && [ "$(snstat a stepdowns)" = 0 ] ||
  fail "an intruder made a step down"
note "a leads g1 with b as backup; x (wrong secret) is not a member"

# A group without a way to prove membership is refused at start (any super
# node saying the name would be a member: issue 11).
# (timeout: a daemon that does start would never return.)
if timeout 5 "$SN" --listen "127.0.0.1:$(port 8)" --state-dir "$T/y" --stun off --group g1 >"$T/y.out" 2>&1; then
  fail "a group without a key or a network key was started"
fi
grep -q "must prove membership" "$T/y.out" || fail "unclear error: $(cat "$T/y.out")"

# A secret shorter than 16 characters is refused at start.
printf 'short\n' >"$T/short"
if "$SN" --listen "127.0.0.1:$(port 9)" --state-dir "$T/z" --group g1 --group-key-file "$T/short" \
  >"$T/z.out" 2>&1; then
  fail "a 5-character group secret was accepted"
fi
grep -q "at least 16 characters" "$T/z.out" || fail "unclear error: $(cat "$T/z.out")"
echo "group_key: ok"
