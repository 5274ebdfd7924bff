#!/usr/bin/env bash
# Configuration: --check-config gives every bad file in tests/config exactly
# its golden errors (file, line, key; all of them) and exit 1, and passes the
# good ones and the shipped deploy/config files; --print-config prints every
# setting as a file that checks clean and reads back the same; SIGHUP on a
# running super node and leaf applies the reloadable settings, says what
# changed, and refuses a bad file without changing anything.
#
# UPDATE_GOLDEN=1 rewrites tests/config/*.expected instead of comparing.
. "$(dirname "$0")/lib.sh"
CONF_DIR=$(cd "$(dirname "$0")/../config" && pwd)
DEPLOY_DIR=$(cd "$(dirname "$0")/../../deploy/config" && pwd)

# --- golden files -----------------------------------------------------------------
bad=0 good=0
for conf in "$CONF_DIR"/*.conf; do
  name=$(basename "$conf" .conf)
  case $name in
    supernode-*) bin=$SN ;;
    leaf-*) bin=$LEAF ;;
    *) fail "tests/config/$name.conf: name it supernode-*.conf or leaf-*.conf" ;;
  esac
  rc=0
  (cd "$CONF_DIR" && "$bin" --check-config "$name.conf") >"$T/out" 2>"$T/err" || rc=$?
  if [ "${UPDATE_GOLDEN:-}" = 1 ]; then
    cp "$T/err" "$CONF_DIR/$name.expected"
  fi
  [ -f "$CONF_DIR/$name.expected" ] || fail "tests/config/$name.conf has no $name.expected"
  [ ! -s "$T/out" ] || fail "$name: --check-config wrote to stdout: $(cat "$T/out")"
  diff -u "$CONF_DIR/$name.expected" "$T/err" || fail "$name: errors differ from $name.expected"
  if [ -s "$CONF_DIR/$name.expected" ]; then
    [ $rc -eq 1 ] || fail "$name: exit status $rc for a file with errors, expected 1"
    bad=$((bad + 1))
  else
    [ $rc -eq 0 ] || fail "$name: exit status $rc for a valid file"
    good=$((good + 1))
  fi
done
note "--check-config: $bad bad files each got their exact errors, $good good ones passed"

rc=0
out=$("$SN" --check-config "$T/missing.conf" 2>&1) || rc=$?
[ $rc -eq 1 ] && [ "$out" = "$T/missing.conf: cannot read: No such file or directory" ] ||
  fail "missing file: exit $rc, '$out'"

# The shipped files, as the units pass them.
"$SN" --check-config "$DEPLOY_DIR/supernode.conf" || fail "deploy/config/supernode.conf does not check"
"$LEAF" --check-config "$DEPLOY_DIR/leaf.conf" || fail "deploy/config/leaf.conf does not check"
# Their commented-out examples are valid settings too, once uncommented.
for f in supernode leaf; do
  sed 's/^#\([a-z-]* = \)/\1/' "$DEPLOY_DIR/$f.conf" >"$T/uncommented-$f.conf"
done
"$SN" --check-config "$T/uncommented-supernode.conf" || fail "an example in deploy/config/supernode.conf is wrong"
"$LEAF" --check-config "$T/uncommented-leaf.conf" || fail "an example in deploy/config/leaf.conf is wrong"
note "deploy/config/*.conf pass, and so do their commented-out examples"

# A daemon refuses to start on a bad file, with the same lines (all of
# them), even when only asked for --help.
rc=0
"$SN" --config "$CONF_DIR/supernode-many-errors.conf" --state-dir "$T/x" 2>"$T/err" || rc=$?
[ $rc -eq 1 ] || fail "started on a bad config (exit $rc)"
diff -u <(sed "s|^|canopy-supernode: $CONF_DIR/|" "$CONF_DIR/supernode-many-errors.expected") "$T/err" ||
  fail "start-up errors differ from --check-config's"
if "$LEAF" --config "$CONF_DIR/leaf-unknown-key.conf" --help >/dev/null 2>&1; then
  fail "--config with a bad file and --help exited 0"
fi
# Command-line values go through the same table.
rc=0
out=$("$SN" --listen 127.0.0.1:1 --state-dir "$T/x" --degree 0 2>&1) || rc=$?
[ $rc -eq 1 ] && [ "$out" = "canopy-supernode: --degree: 0 is below the minimum 1" ] ||
  fail "--degree 0: exit $rc, '$out'"
note "bad files and flags stop the daemons with the same messages"

# --- --print-config -----------------------------------------------------------------
# keys BIN: every setting, from --help (the table is the only source of both)
keys() { "$1" --help | sed -n 's/^  --\([a-z-]*\).*/\1/p' | grep -vx 'help\|config\|check-config\|print-config'; }

check_printed() { # check_printed BIN NAME FILE
  local bin=$1 name=$2 file=$3 k
  "$bin" --check-config "$file" || fail "$name: --print-config output does not check: $(cat "$file")"
  for k in $(keys "$bin"); do
    [ "$(grep -Ec "^#?$k =" "$file")" -eq 1 ] || fail "$name: --print-config has no line for $k"
  done
  # Read back, it prints the same settings.
  "$bin" --config "$file" --print-config >"$file.again"
  diff <(grep -v '^#' "$file") <(grep -v '^#' "$file.again") ||
    fail "$name: --print-config's output read back differs"
}

"$SN" --config "$CONF_DIR/supernode-good-full.conf" --degree 7 --peer 192.0.2.9:7400 \
  --print-config >"$T/sn-printed.conf"
check_printed "$SN" supernode "$T/sn-printed.conf"
grep -B1 -x "degree = 7" "$T/sn-printed.conf" | grep -qx "# from: the command line (--degree)" ||
  fail "--print-config: degree is not from the command line"
grep -qx "peer = 192.0.2.9:7400" "$T/sn-printed.conf" || fail "--print-config: a --peer does not replace the file's list"
grep -B1 -x "listen = 0.0.0.0:7400" "$T/sn-printed.conf" |
  grep -qx "# from: $CONF_DIR/supernode-good-full.conf:5" || fail "--print-config: listen's file and line"
grep -qx "state-dir = /var/lib/canopy data" "$T/sn-printed.conf" || fail "--print-config: escapes"
grep -qx "#advertise =" "$T/sn-printed.conf" && fail "--print-config: advertise was set"
grep -B1 -x "max-leaves = 1" "$T/sn-printed.conf" | grep -q "from: .*:11" || fail "--print-config: max-leaves"

"$SN" --print-config >"$T/sn-defaults.conf"
check_printed "$SN" "supernode (defaults)" "$T/sn-defaults.conf"
grep -B1 -x "keepalive-ms = 5000" "$T/sn-defaults.conf" | grep -qx "# from: default" ||
  fail "--print-config: default keepalive-ms"
grep -B1 -x "#listen =" "$T/sn-defaults.conf" | grep -qx "# from: not set" || fail "--print-config: unset listen"

"$LEAF" --config "$CONF_DIR/leaf-good-full.conf" --rescan-s 5 --print-config >"$T/leaf-printed.conf"
check_printed "$LEAF" leaf "$T/leaf-printed.conf"
grep -qx "ice-local = 192.168.1.20;2001:db8::20" "$T/leaf-printed.conf" || fail "--print-config: ice-local"
grep -qx "rescan-s = 5" "$T/leaf-printed.conf" || fail "--print-config: rescan-s"
note "--print-config prints every key with its origin; the output checks and reads back the same"

# --- SIGHUP: super node ---------------------------------------------------------------
sn_conf() { # sn_conf KEEPALIVE DEGREE LOGLEVEL LISTEN_INDEX MAXLEAVES [extra line]
  cat >"$T/sn.conf" <<CONF
# written by config.sh
[supernode]
listen = 127.0.0.1:$(port "$4")
state-dir = $T/sn
stun = off
no-discovery = true
keepalive-ms = $1
degree = $2
log-level = $3
max-leaves = $5
${6:-}
CONF
}
snconf() { "$SN" status --state-dir "$T/sn" --json | jq -r ".config[\"$1\"]"; }
logged() { grep -qF -- "$2" "$T/$1.log"; }

sn_conf 5000 4 info 1 20
# max-leaves on the command line wins over the file, also after a reload.
"$SN" --config "$T/sn.conf" --max-leaves 10 >"$T/sn.log" 2>&1 &
PIDS+=($!)
SN_PID=$!
wait_for 5 test -S "$T/sn/control.sock" || fail "super node did not start"
[ "$(snconf keepalive-ms)" = 5000 ] && [ "$(snconf degree)" = 4 ] && [ "$(snconf max-leaves)" = 10 ] ||
  fail "status before the reload: $("$SN" status --state-dir "$T/sn" --json | jq -c .config)"

sn_conf 2000 6 debug 2 30
kill -HUP "$SN_PID"
wait_for 5 logged sn "keepalive-ms: 5000 -> 2000" || fail "no 'keepalive-ms: 5000 -> 2000' in the log"
logged sn "degree: 4 -> 6" || fail "degree change not logged"
logged sn "log-level: info -> debug" || fail "log-level change not logged"
logged sn "listen: 127.0.0.1:$(port 1) -> 127.0.0.1:$(port 2) needs a restart" ||
  fail "listen change not logged as needing a restart"
logged sn "max-leaves: given on the command line, which wins over the file" ||
  fail "command-line max-leaves not logged"
[ "$(snconf keepalive-ms)" = 2000 ] || fail "keepalive-ms after the reload: $(snconf keepalive-ms)"
[ "$(snconf degree)" = 6 ] && [ "$(snconf log-level)" = debug ] && [ "$(snconf max-leaves)" = 10 ] ||
  fail "status after the reload: $("$SN" status --state-dir "$T/sn" --json | jq -c .config)"
[ "$("$SN" status --state-dir "$T/sn" --json | jq -r .listen)" = "127.0.0.1:$(port 1)" ] ||
  fail "listen changed without a restart"
note "super node SIGHUP: keepalive-ms 5000 -> 2000, degree 4 -> 6 applied; listen needs a restart"

# A bad file: every error logged with its line, nothing changed, still running.
sn_conf 50 8 info 2 30 "shaer = 1"
kill -HUP "$SN_PID"
wait_for 5 logged sn "not reloaded (2 errors)" || fail "a bad file was not refused"
logged sn "$T/sn.conf:7: keepalive-ms: 50 is below the minimum 100" || fail "reload error without file and line"
logged sn "$T/sn.conf:11: shaer: unknown key" || fail "second reload error not logged"
[ "$(snconf keepalive-ms)" = 2000 ] && [ "$(snconf degree)" = 6 ] || fail "a refused file changed settings"
kill -0 "$SN_PID" || fail "super node died on a bad reload"
note "super node SIGHUP with a bad file: refused, errors logged, nothing changed"

# max-leaves and max-handshakes cannot grow past the memory plan made at
# start: a reload asking for more keeps the planned values, and status shows
# the values in force, not the file's.
plan_conf() { # plan_conf MAXLEAVES MAXHANDSHAKES
  cat >"$T/plan.conf" <<CONF
[supernode]
listen = 127.0.0.1:$(port 4)
state-dir = $T/plan
stun = off
no-discovery = true
max-leaves = $1
max-handshakes = $2
CONF
}
planconf() { "$SN" status --state-dir "$T/plan" --json | jq -r ".config[\"$1\"]"; }
plan_conf 20 64
"$SN" --config "$T/plan.conf" >"$T/plan.log" 2>&1 &
PIDS+=($!)
PLAN_PID=$!
wait_for 5 test -S "$T/plan/control.sock" || fail "plan super node did not start"
plan_conf 40 128
kill -HUP "$PLAN_PID"
wait_for 5 logged plan "max-handshakes 128 needs a restart" || fail "max-handshakes over the plan not refused"
logged plan "max-leaves 40 needs a restart (the memory plan was made for 20)" ||
  fail "max-leaves over the plan not refused"
[ "$(planconf max-leaves)" = 20 ] && [ "$(planconf max-handshakes)" = 64 ] ||
  fail "status shows what is not in force: $("$SN" status --state-dir "$T/plan" --json | jq -c .config)"
plan_conf 15 32 # lower: applied, and shown
kill -HUP "$PLAN_PID"
wait_for 5 sh -c "[ \"\$('$SN' status --state-dir '$T/plan' --json | jq -r '.config[\"max-leaves\"]')\" = 15 ]" ||
  fail "max-leaves 15 not in force after the reload"
[ "$(planconf max-handshakes)" = 32 ] || fail "max-handshakes 32 not in force: $(planconf max-handshakes)"
note "super node SIGHUP past the memory plan: max-leaves 40 / max-handshakes 128 kept at 20 / 64, and status says so"

# Without --config there is nothing to reload, and SIGHUP does not kill.
start_sn plain 3 --stun off
kill -HUP "$PID_plain"
wait_for 5 logged plain "started without --config, nothing to reload" || fail "plain SIGHUP not logged"
kill -0 "$PID_plain" || fail "SIGHUP ended a super node started without --config"

# --- SIGHUP: leaf -----------------------------------------------------------------------
mkdir -p "$T/share"
leaf_conf() { # leaf_conf RESCAN_S KEEPALIVE
  cat >"$T/leaf.conf" <<CONF
[leaf]
supernode = 127.0.0.1:$(port 1)
share = $T/share
state-dir = $T/leaf
rescan-s = $1
keepalive-ms = $2
CONF
}
lfconf() { "$LEAF" status --state-dir "$T/leaf" --json | jq -r ".config[\"$1\"]"; }
found() { [ "$(hits leaf --ttl 0 --limit 1 arrival)" -eq 1 ]; }

leaf_conf 3600 5000
"$LEAF" --config "$T/leaf.conf" >"$T/leaf.log" 2>&1 &
PIDS+=($!)
LEAF_PID=$!
wait_for 5 connected leaf || fail "leaf from config did not connect"
[ "$(lfconf rescan-s)" = 3600 ] && [ "$(lfconf keepalive-ms)" = 5000 ] || fail "leaf status before the reload"
echo late >"$T/share/late arrival.txt"
sleep 1
found && fail "a file appeared without a rescan"

leaf_conf 1 2000
kill -HUP "$LEAF_PID"
wait_for 5 logged leaf "rescan-s: 3600 -> 1" || fail "no 'rescan-s: 3600 -> 1' in the leaf's log"
logged leaf "keepalive-ms: 5000 -> 2000" || fail "leaf keepalive change not logged"
[ "$(lfconf rescan-s)" = 1 ] && [ "$(lfconf keepalive-ms)" = 2000 ] || fail "leaf status after the reload"
# What a user notices: the new file is found once the shorter rescan runs.
wait_for 10 found || fail "the file added before the reload was not published by the new rescan interval"
note "leaf SIGHUP: rescan-s 3600 -> 1 (a new file is found), keepalive-ms 5000 -> 2000"

printf '[leaf]\nrescan-s = soon\n' >"$T/leaf.conf"
kill -HUP "$LEAF_PID"
wait_for 5 logged leaf "$T/leaf.conf:2: rescan-s: 'soon' is not an integer" || fail "leaf reload error not logged"
logged leaf "not reloaded (1 error)" || fail "leaf: bad file not refused"
[ "$(lfconf rescan-s)" = 1 ] || fail "leaf: a refused file changed settings"
connected leaf || fail "leaf lost its super node over a bad reload"
echo "config: ok"
