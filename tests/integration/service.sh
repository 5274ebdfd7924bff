#!/usr/bin/env bash
# The daemons as their systemd units run them, and every leaf command.
#
#   tests/integration/service.sh            (CANOPY_BIN=BUILD_DIR)
#
# A super node and two leaves (alice, bob) are started with the ExecStart
# lines read from deploy/systemd/*.service: /usr/bin is $CANOPY_BIN, the
# config files are copies of deploy/config/*.conf with only the values a
# test on loopback needs set (ports, the folders, ice-local, and the super
# node's metrics address), ${STATE_DIRECTORY} and %E/%S (the user unit's
# XDG_CONFIG_HOME under systemd 252) point into the scratch dir, and the
# units' UMask applies. The leaf commands run without --state-dir, so they
# find the user unit's state dir as a user's would.
#
# Then: status, share add/list/remove (and the list surviving a restart),
# search, get between the leaves, downloads list/pause/resume/cancel on a
# 300 MB file, the exit codes (0 done, 1 failed, 2 usage, 3 no daemon) and
# the JSON of each command; /metrics scraped with curl before and after
# (queries, leaves, index entries and session bytes move); ExecReload after
# editing a reloadable key, the change logged; and, with the super node
# gone, "no super node reachable (tried ...: connection refused)".
#
# Exits 77 (skipped) without curl or jq.
. "$(dirname "$0")/lib.sh"

for tool in curl jq; do
  command -v "$tool" >/dev/null || { echo "SKIP: service.sh needs $tool"; exit 77; }
done
REPO=$(cd "$(dirname "$0")/../.." && pwd)
UNITS=$REPO/deploy/systemd
CONFIGS=$REPO/deploy/config

# key UNIT KEY: the unit's KEY= value (the first)
key() { sed -n "s/^$2=//p" "$UNITS/$1" | head -n 1; }

# set_key FILE KEY VALUE: sets KEY in a config file: the first "KEY =" or
# "#KEY =" line takes the value, or the line is appended (the file's one
# section is its last).
set_key() {
  if grep -qE "^#?$2 =" "$1"; then
    sed -i -E "0,/^#?$2 =.*/s||$2 = $3|" "$1"
  else
    echo "$2 = $3" >>"$1"
  fi
}

# resolve LINE: a unit's command line with this test's paths, as systemd
# would expand it for the unit; the variables named below must be set.
resolve() {
  local s=$1
  s=${s//\/usr\/bin\/canopy-supernode/$SN}
  s=${s//\/usr\/bin\/canopy-leaf/$LEAF}
  s=${s//\/etc\/canopy\//$ETC\/}
  s=${s//'${STATE_DIRECTORY}'/${U_STATE:-}}
  s=${s//%E/${U_XDG:-}}
  s=${s//%S/${U_XDG:-}}
  s=${s//'$MAINPID'/${U_PID:-}}
  [[ $s != *%* && $s != *'$'* ]] || fail "unresolved specifier left in: $s"
  echo "$s"
}

P_SN=$(port 1) P_STUN=$(port 2) P_METRICS=$(port 3)
ETC=$T/etc/canopy
mkdir -p "$ETC"

# --- the super node, as canopy-supernode.service ---------------------------------------
cp "$CONFIGS/supernode.conf" "$ETC/supernode.conf"
set_key "$ETC/supernode.conf" listen "127.0.0.1:$P_SN"
set_key "$ETC/supernode.conf" stun "127.0.0.1:$P_STUN"
set_key "$ETC/supernode.conf" metrics "127.0.0.1:$P_METRICS"
set_key "$ETC/supernode.conf" keepalive-ms 1000
"$SN" --check-config "$ETC/supernode.conf" || fail "the edited supernode.conf does not check"
U_STATE=$T/var/lib/$(key canopy-supernode.service StateDirectory)
mkdir -p -m 0700 "$U_STATE"
SN_STATE=$U_STATE
read -ra sn_cmd <<<"$(resolve "$(key canopy-supernode.service ExecStart)")"
(umask 077; exec env STATE_DIRECTORY="$SN_STATE" "${sn_cmd[@]}") >"$T/sn.log" 2>&1 &
SN_PID=$!
PIDS+=("$SN_PID")
wait_for 5 test -S "$SN_STATE/control.sock" || fail "the super node did not start: ${sn_cmd[*]}"
note "super node: ${sn_cmd[*]}"

# jqok JSON FILTER [jq args...]: JSON is there and FILTER holds (jq -e alone
# says yes to no input at all)
jqok() {
  local js=$1 filter=$2
  shift 2
  [ -n "$js" ] && jq -e "$@" "$filter" <<<"$js" >/dev/null
}

# metric FILE NAME: the sum of the samples of NAME (all label sets)
metric() { awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { print s + 0 }' "$1"; }
scrape() { curl -fsS --max-time 5 "http://127.0.0.1:$P_METRICS/metrics" >"$1" || fail "cannot scrape /metrics"; }
scrape "$T/metrics.before"
grep -q '^canopy_leaves ' "$T/metrics.before" || fail "no canopy_leaves in /metrics"

# --- two leaves, as canopy-leaf.service (a user unit) -------------------------------------
# leaf_start NAME: the unit's ExecStart for the user NAME (HOME $T/NAME)
leaf_start() {
  local name=$1 xdg=$T/$1/.config line
  U_XDG=$xdg
  line=$(resolve "$(key canopy-leaf.service ExecStart)")
  read -ra cmd <<<"$line"
  (umask 077; cd "$T/$name" || exit; exec env HOME="$T/$name" XDG_CONFIG_HOME="$xdg" "${cmd[@]}") \
    >>"$T/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$name=$!"
  wait_for 10 is_connected "$name" || fail "leaf $name did not connect: $line"
}
# finds N NAME TERMS...: NAME's search (its own super node) ran and found N hits
finds() {
  local n=$1 name=$2 out
  shift 2
  out=$(as "$name" search --json --ttl 0 "$@" 2>/dev/null) || return 1
  [ "$(grep -c content_id <<<"$out")" -eq "$n" ]
}
# is_connected NAME: the daemon answers and says so (jq -e alone takes no
# output, a daemon not up yet, for a yes)
is_connected() {
  local out
  out=$(as "$1" status --json 2>/dev/null) && jqok "$out" '.connected == true'
}
# as NAME COMMAND...: a leaf command run by the user NAME (no --state-dir)
as() {
  local name=$1
  shift
  (cd "$T/$name" && HOME="$T/$name" XDG_CONFIG_HOME="$T/$name/.config" "$LEAF" "$@")
}
for u in alice bob; do
  mkdir -p "$T/$u/.config/canopy" "$T/$u/Music"
  mkdir -p -m 0700 "$T/$u/.config/$(key canopy-leaf.service StateDirectory)"
  cp "$CONFIGS/leaf.conf" "$T/$u/.config/canopy/leaf.conf"
  set_key "$T/$u/.config/canopy/leaf.conf" supernode "127.0.0.1:$P_SN"
  set_key "$T/$u/.config/canopy/leaf.conf" share "$T/$u/Music"
  set_key "$T/$u/.config/canopy/leaf.conf" ice-local 127.0.0.1
  "$LEAF" --check-config "$T/$u/.config/canopy/leaf.conf" || fail "the edited leaf.conf does not check"
done
ALICE_STATE=$T/alice/.config/canopy-leaf
echo "alice's tune" >"$T/alice/Music/Penny Lane.flac"
head -c 300000000 /dev/urandom >"$T/bob/Music/Big Concert.mkv"
leaf_start alice
leaf_start bob
note "leaves: $(resolve "$(key canopy-leaf.service ExecStart)") (per user)"

# --- status ---------------------------------------------------------------------------
out=$(as alice status) || fail "status exited $?"
echo "$out" | grep -Eq "^super node +127\.0\.0\.1:$P_SN " || fail "status does not show the super node: $out"
echo "$out" | grep -Eq "^shared +1 file from 1 folder" || fail "status does not show the share: $out"
echo "$out" | grep -Eq "^transfers +0 downloads running" || fail "status does not show transfers: $out"
js=$(as alice status --json) || fail "status --json exited $?"
jqok "$js" '.connected == true and .supernode == $a and .supernode_role == "leader"
  and (.supernode_id | length) == 64 and .shared_files == 1 and (.shares | length) == 1
  and .shares[0].fixed == true and .transfers.downloads_running == 0 and (.members | type) == "array"
  and .config["rescan-s"] == 60' --arg a "127.0.0.1:$P_SN" || fail "status --json: $js"
[ "$(stat -c %a "$ALICE_STATE")" = 700 ] || fail "the state dir is not 0700"
note "status: $(echo "$out" | sed -n 2p | tr -s ' ')"

# --- share add / list / remove ------------------------------------------------------------
mkdir -p "$T/alice/Pictures/trip" "$T/alice/other/Music"
for i in 1 2 3; do head -c 2000000 /dev/urandom >"$T/alice/Pictures/trip/beach $i.jpg"; done
echo "same name, other folder" >"$T/alice/other/Music/Penny Lane.flac"
out=$(as alice share add Pictures) || fail "share add exited $?: $out"
echo "$out" | grep -q "sharing $T/alice/Pictures as Pictures: 3 files" || fail "share add said: $out"
js=$(as alice share add --json other/Music) || fail "share add --json exited $?"
# Its base name is the --share folder's too, but that one publishes unprefixed.
jqok "$js" '.name == "Music" and .path == $p and .files == 1 and .hashed == 1' --arg p "$T/alice/other/Music" ||
  fail "share add --json: $js"
js=$(as alice share list --json) || fail "share list --json exited $?"
jqok "$js" '[.shares[] | .name] == ["", "Pictures", "Music"] and all(.shares[]; .state == "ok")' ||
  fail "share list --json: $js"
out=$(as alice share) || fail "share (list) exited $?"
echo "$out" | grep -Eq "^Pictures +3 files .* $T/alice/Pictures$" || fail "share list: $out"
grep -q "path=$T/alice/Pictures" "$ALICE_STATE/shares" || fail "the added folder is not listed in the state dir"
# What another leaf sees: the added folders' names carry their prefix, and the
# two "Penny Lane.flac" do not collide.
wait_for 5 finds 2 bob penny lane ||
  fail "bob does not find both Penny Lanes: $(as bob search --json --ttl 0 penny lane)"
names=$(as bob search --json --ttl 0 penny lane | jq -r .name | sort | tr '\n' '|')
[ "$names" = "Music/Penny Lane.flac|Penny Lane.flac|" ] || fail "published names: $names"
[ "$(as bob search --json --ttl 0 beach | jq -r .name | sort | head -n 1)" = "Pictures/trip/beach 1.jpg" ] ||
  fail "an added folder's file is not found under its prefix"
note "share add: Pictures (3 files) and other/Music as Music; bob finds $names"

rc=0; as alice share add Pictures/trip 2>"$T/err" || rc=$?
[ $rc -eq 1 ] && grep -q "inside $T/alice/Pictures" "$T/err" || fail "a folder inside a share: exit $rc, $(cat "$T/err")"
rc=0; as alice share add "$T/alice/nowhere" 2>"$T/err" || rc=$?
[ $rc -eq 1 ] || fail "a missing folder: exit $rc"
rc=0; as alice share add 2>"$T/err" || rc=$?
[ $rc -eq 2 ] || fail "share add without a folder: exit $rc"
rc=0; as alice share remove Music/nothing 2>"$T/err" || rc=$?
[ $rc -eq 1 ] && grep -q "is not shared" "$T/err" || fail "removing what is not shared: exit $rc, $(cat "$T/err")"

# The list survives a restart of the leaf.
kill "$PID_alice"; wait "$PID_alice" 2>/dev/null || true
leaf_start alice
js=$(as alice share list --json)
[ "$(jq -c '[.shares[] | .name]' <<<"$js")" = '["","Pictures","Music"]' ] || fail "after a restart: $js"
note "the shared folders survive a restart: $(jq -c '[.shares[] | {name, files}]' <<<"$js")"

js=$(as alice share remove --json Music) || fail "share remove (by name) exited $?"
jqok "$js" '.name == "Music" and .state == "removed" and .files == 1' || fail "share remove: $js"
out=$(as alice share remove "$T/alice/Pictures") || fail "share remove (by path) exited $?"
echo "$out" | grep -q "no longer sharing $T/alice/Pictures (Pictures): 3 files unpublished" || fail "share remove: $out"
wait_for 5 finds 0 bob beach ||
  fail "a removed folder's files are still found"
[ "$(as alice share list --json | jq '.shares | length')" -eq 1 ] || fail "share list after the removals"
grep -q "Pictures" "$ALICE_STATE/shares" && fail "a removed folder is still listed in the state dir"
note "share remove: by name and by path; the files are no longer found"

# --- search, get, downloads ---------------------------------------------------------------
js=$(as alice search --json --ttl 0 big concert) || fail "search exited $?"
cid=$(jq -r .content_id <<<"$js" | head -n 1)
[ ${#cid} -eq 64 ] || fail "search --json: $js"
out=$(as alice search --ttl 0 big concert) || fail "search exited $?"
echo "$out" | grep -q "^1 hit$" || fail "search: $out"
# (part files are .canopy-CID-TAG.part, TAG from the leaf's id and the target)
part_in() { ls "$1"/.canopy-$cid-*.part 2>/dev/null | head -1; }
# dl FIELD: of alice's download of $cid, from downloads --json
dl() { as alice downloads --json | jq -r --arg c "$cid" "[.downloads[] | select(.content_id == \$c)] | last | .$1"; }
moving() { [ "$(dl state)" = running ] && [ "$(dl bytes_done)" -gt 0 ]; }

as alice get --json "$cid" >"$T/get.out" 2>"$T/get.err" &
getter=$!
wait_for 20 moving || fail "the download did not start: $(as alice downloads --json)"
id=$(dl id)
js=$(as alice downloads pause --json "$id") || fail "downloads pause exited $?"
jqok "$js" '.state == "paused"' || fail "downloads pause: $js"
at=$(dl bytes_done)
sleep 1
[ "$(dl bytes_done)" = "$at" ] || fail "a paused download moved on"
[ -f "$(part_in "$ALICE_STATE/downloads")" ] || fail "pausing lost the part file"
kill -0 "$getter" || fail "get ended when its download was paused"
out=$(as alice downloads) || fail "downloads exited $?"
echo "$out" | grep -Eq "^ +$id +paused .*Big Concert\.mkv" || fail "downloads list: $out"
[ "$(as alice status --json | jq .transfers.downloads_paused)" -eq 1 ] || fail "status: no paused transfer"
note "paused at $at of 300000000 bytes: $(echo "$out" | sed -n 2p | tr -s ' ')"
out=$(as alice downloads resume "$id") || fail "downloads resume exited $?"
wait "$getter" || fail "get failed after the resume: $(cat "$T/get.err")"
res=$(tail -n 1 "$T/get.out")
cmp "$(jq -r .path <<<"$res")" "$T/bob/Music/Big Concert.mkv" || fail "the downloaded bytes differ"
moved=$(jq '[.sources[].bytes] | add' <<<"$res")
[ "$moved" -lt 300000000 ] || fail "the resume fetched the whole file again ($moved bytes)"
[ "$(dl state)" = finished ] || fail "downloads: not finished: $(as alice downloads --json)"
[ "$(as bob status --json | jq .transfers.bytes_uploaded)" -ge "$moved" ] || fail "bob's status: no upload counted"
note "resumed: $moved bytes moved after the resume; the file verified"

as alice get -o "$T/alice/copy.mkv" "$cid" >"$T/get2.out" 2>"$T/get2.err" &
getter=$!
wait_for 20 moving || fail "the second download did not start"
id=$(dl id)
[ -f "$(part_in "$T/alice")" ] || fail "no part file beside -o"
out=$(as alice downloads cancel "$id") || fail "downloads cancel exited $?"
echo "$out" | grep -q "cancelled" || fail "downloads cancel: $out"
rc=0; wait "$getter" || rc=$?
[ $rc -eq 1 ] && grep -q "cancelled" "$T/get2.err" || fail "get of a cancelled download: exit $rc, $(cat "$T/get2.err")"
[ -z "$(part_in "$T/alice")" ] || fail "cancel left the part file"
[ ! -e "$T/alice/copy.mkv" ] || fail "a cancelled download appeared"
[ "$(dl state)" = cancelled ] || fail "downloads: not cancelled"
rc=0; as alice downloads resume "$id" 2>"$T/err" || rc=$?
[ $rc -eq 1 ] || fail "resuming a cancelled download: exit $rc"
note "cancelled download $id: get exited 1 ($(cat "$T/get2.err")), the part file is gone"

# --- exit codes, --json, --help ------------------------------------------------------------
expect() { # expect RC COMMAND...
  local want=$1 rc=0
  shift
  "$@" >/dev/null 2>&1 || rc=$?
  [ $rc -eq "$want" ] || fail "exit $rc, not $want: $*"
}
expect 0 as alice downloads list
expect 1 as alice downloads pause 999
expect 2 as alice downloads pause nine
expect 2 as alice downloads frobnicate
expect 2 as alice search
expect 2 as alice search --ttl 9 x
expect 2 as alice status --no-such-option
expect 2 as alice get
expect 1 as alice get 0000
expect 2 "$LEAF" no-such-command
for c in status share downloads "search x" "get $cid" "downloads pause 1" "share add $T"; do
  # shellcheck disable=SC2086 # the words of the command
  expect 3 "$LEAF" $c --state-dir "$T/nobody"
done
out=$(as alice status --state-dir "$T/nobody" 2>&1) || true
echo "$out" | grep -q "daemon not running for state dir $T/nobody" || fail "no daemon: $out"
for c in status search get share "share add" "share remove" "share list" downloads \
         "downloads list" "downloads pause" "downloads resume" "downloads cancel"; do
  # shellcheck disable=SC2086 # the sub-command is a separate word
  out=$("$LEAF" $c --help) || fail "$c --help exited $?"
  grep -q "^Examples:" <<<"$out" && grep -q -- "--json" <<<"$out" || fail "$c --help has no examples or --json"
done
"$LEAF" help status | grep -q "^Examples:" || fail "canopy-leaf help status"
for c in "status" "share list" "downloads" "search --ttl 0 concert" "get --force $cid"; do
  # shellcheck disable=SC2086
  js=$(as alice $c --json) && jqok "$js" 'type == "object"' || fail "$c --json is not JSON: $js"
done
note "exit codes 0/1/2/3, --help with examples and --json on every command"

# --- metrics ---------------------------------------------------------------------------
scrape "$T/metrics.after"
for m in canopy_queries_received_total canopy_index_entries canopy_session_bytes_total; do
  b=$(metric "$T/metrics.before" $m) a=$(metric "$T/metrics.after" $m)
  [ "$a" -gt "$b" ] || fail "$m did not move: $b -> $a"
  note "$m: $b -> $a"
done
b=$(metric "$T/metrics.before" canopy_leaves) a=$(metric "$T/metrics.after" canopy_leaves)
[ "$b" -eq 0 ] && [ "$a" -eq 2 ] || fail "canopy_leaves: $b -> $a, expected 0 -> 2"
note "canopy_leaves: $b -> $a"

# --- reload (ExecReload) -------------------------------------------------------------------
set_key "$ETC/supernode.conf" degree 6
U_PID=$SN_PID
read -ra reload <<<"$(resolve "$(key canopy-supernode.service ExecReload)")"
"${reload[@]}" || fail "ExecReload failed: ${reload[*]}"
wait_for 5 grep -q "degree: 4 -> 6" "$T/sn.log" || fail "the super node did not log 'degree: 4 -> 6'"
[ "$("$SN" status --state-dir "$SN_STATE" --json | jq '.config.degree')" = 6 ] || fail "degree not reloaded"
set_key "$T/alice/.config/canopy/leaf.conf" rescan-s 5
U_PID=$PID_alice
read -ra reload <<<"$(resolve "$(key canopy-leaf.service ExecReload)")"
"${reload[@]}" || fail "ExecReload failed: ${reload[*]}"
wait_for 5 grep -q "rescan-s: 60 -> 5" "$T/alice.log" || fail "the leaf did not log 'rescan-s: 60 -> 5'"
[ "$(as alice status --json | jq '.config["rescan-s"]')" = 5 ] || fail "rescan-s not reloaded"
note "ExecReload: degree 4 -> 6 and rescan-s 60 -> 5 applied and logged"

# --- no super node ---------------------------------------------------------------------------
kill "$SN_PID"; wait "$SN_PID" 2>/dev/null || true
want="no super node reachable (tried 127.0.0.1:$P_SN: connection refused)"
wait_for 10 sh -c "HOME='$T/alice' XDG_CONFIG_HOME='$T/alice/.config' '$LEAF' status | grep -qF '$want'" ||
  fail "status does not say '$want': $(as alice status)"
rc=0; as alice search anything 2>"$T/err" || rc=$?
[ $rc -eq 1 ] && grep -qF "$want" "$T/err" || fail "search without a super node: exit $rc, $(cat "$T/err")"
note "super node gone: $(cat "$T/err")"
echo "service: ok"
