#!/usr/bin/env bash
# The command-line contract: clear errors and exit codes when things are
# missing, config files equivalent to flags, state dirs created 0700.
. "$(dirname "$0")/lib.sh"

# No daemon on the state dir: non-zero and a message naming the problem.
if out=$("$LEAF" search --state-dir "$T/nobody" anything 2>&1); then fail "search without a daemon exited 0"; fi
echo "$out" | grep -q "daemon not running" || fail "unclear message: $out"
note "no daemon: $out"

# A leaf whose super node is down: the search says so and exits non-zero.
mkdir -p "$T/lonely-share"
"$LEAF" --supernode "127.0.0.1:$(port 9)" --share "$T/lonely-share" --state-dir "$T/lonely" \
  >"$T/lonely.log" 2>&1 &
PIDS+=($!)
wait_for 5 test -S "$T/lonely/control.sock" || fail "leaf did not start"
sleep 0.5
if out=$("$LEAF" search --state-dir "$T/lonely" anything 2>&1); then fail "search without a super node exited 0"; fi
echo "$out" | grep -q "not connected to a super node" || fail "unclear message: $out"
echo "$out" | grep -q "127.0.0.1:$(port 9)" || fail "message does not name the address tried: $out"
note "no super node: $out"
[ "$(stat -c %a "$T/lonely")" = 700 ] || fail "state dir is not 0700"
[ "$(stat -c %a "$T/lonely/identity.key")" = 600 ] || fail "identity.key is not 0600"
[ "$(stat -c %a "$T/lonely/control.sock")" = 600 ] || fail "control socket is not 0600"

# The same super node from a config file; the command line overrides it.
cat >"$T/sn.conf" <<CONF
[supernode]
listen = 127.0.0.1:$(port 1)
state-dir = $T/cfgsn
no-discovery = true
keepalive-ms = 1000
CONF
"$SN" --config "$T/sn.conf" >"$T/cfgsn.log" 2>&1 &
PIDS+=($!)
wait_for 5 test -S "$T/cfgsn/control.sock" || fail "super node from config did not start"
[ "$("$SN" stats --state-dir "$T/cfgsn" --json | jq -r .listen)" = "127.0.0.1:$(port 1)" ] || fail "config listen"
cat >"$T/leaf.conf" <<CONF
[leaf]
supernode = 127.0.0.1:$(port 1)
share = $T/lonely-share
state-dir = $T/cfgleaf
CONF
echo hi >"$T/lonely-share/configured file.txt"
"$LEAF" --config "$T/leaf.conf" >"$T/cfgleaf.log" 2>&1 &
PIDS+=($!)
wait_for 5 connected cfgleaf || fail "leaf from config did not connect"
[ "$(hits cfgleaf --ttl 0 configured)" -eq 1 ] || fail "leaf from config does not share"
note "daemons run from --config files"

# A state dir inside the share is never published: it holds the secret key.
mkdir -p "$T/home"
echo doc >"$T/home/identity notes.txt"
"$LEAF" --supernode "127.0.0.1:$(port 1)" --share "$T/home" --state-dir "$T/home/.canopy" \
  >"$T/nested.log" 2>&1 &
PIDS+=($!)
wait_for 5 sh -c "'$LEAF' status --state-dir '$T/home/.canopy' --json 2>/dev/null | jq -e .connected >/dev/null" \
  || fail "nested leaf did not connect"
[ "$("$LEAF" search --state-dir "$T/home/.canopy" --json --ttl 0 identity | grep -c content_id)" -eq 1 ] \
  || fail "the state dir's identity.key was published (or the notes were not)"
note "state dir inside the share is not published"

# Bad configs and flags: exit non-zero with the file and key named.
printf '[supernode]\nlisten = 127.0.0.1:1\nfrobnicate = 3\n' >"$T/bad.conf"
if out=$("$SN" --config "$T/bad.conf" --state-dir "$T/x" 2>&1); then fail "unknown key accepted"; fi
echo "$out" | grep -q "bad.conf.*frobnicate.*unknown key" || fail "unclear: $out"
printf '[supernode]\nkeepalive-ms = soon\n' >"$T/bad2.conf"
if out=$("$SN" --config "$T/bad2.conf" 2>&1); then fail "bad value accepted"; fi
echo "$out" | grep -q "keepalive-ms" || fail "unclear: $out"
if out=$("$SN" --listen nonsense --state-dir "$T/y" 2>&1); then fail "bad --listen accepted"; fi
note "bad config: $out"
if "$SN" --state-dir "$T/y" 2>/dev/null; then fail "missing --listen accepted"; fi
if "$LEAF" search --state-dir "$T/lonely" --ttl 9 x 2>/dev/null; then fail "--ttl 9 accepted"; fi
echo "cli: ok"
