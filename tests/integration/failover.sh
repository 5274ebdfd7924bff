#!/usr/bin/env bash
# failover.sh - groups (supernode/GROUPS.md): failover drills with real
# processes on loopback.
#
#   CANOPY_BIN=build bash tests/integration/failover.sh
#
# Group g1 is super nodes a, b, c, each on its own loopback address (so that
# nftables can cut one off by address), started in that order: a leads, b is
# its backup, c stands by. d leads group g2 and links to all three. Leaves
# l1, l2 (given a's address) and l3 (given c's: it must end up on the leader)
# share two files each. Leaf s on d searches for all six every 200 ms from
# start to end and logs each search (searches.log: start end ok|fail hits).
#
# Drills, in this order, each asserted:
#   a. kill -9 the leader: its backup leads with a higher term within 2 s,
#      every g1 leaf is attached to it with that term, the standby becomes
#      the backup, searches find every file again, no leaf re-published.
#   b. restart the old leader (same state dir): it rejoins as standby or
#      backup, never leading; leader and term unchanged.
#   c. SIGSTOP the leader: its backup takes over within 3 s; SIGCONT: the
#      old leader steps down within 5 s; exactly one leader.
#   d. kill -9 the backup: the leader names another backup within 5 s
#      (then the killed node is restarted and rejoins).
#   e. (root) cut only the leader-backup link with nftables: after 4 s the
#      same leader leads with the same term and nobody took over.
#   f. (root) cut every packet to and from the leader: its backup takes over
#      within 3 s; once healed, the cut leader steps down; exactly one leader,
#      every leaf on the new one.
#   g. kill -9 the new leader in turn: its backup takes over within 2 s.
# After each: the group settles (leader, backup, every leaf attached to the
# leader and watching the backup), the leaves' "publishes" are unchanged, a
# search started afterwards finds all six files; the drill prints how many
# searches failed and over how long. Not root: e and f print SKIP.
. "$(dirname "$0")/lib.sh"
KEEPALIVE=${KEEPALIVE:-1000}

# Addresses per run, like the ports, so leftover or parallel runs do not meet.
NET=127.$((BASE / 100 % 250 + 1)).0
declare -A IP=([a]=$NET.11 [b]=$NET.12 [c]=$NET.13 [d]=$NET.14)
declare -A IDX=([a]=1 [b]=2 [c]=3 [d]=4)
declare -A GROUP=([a]=g1 [b]=g1 [c]=g1 [d]=g2)
declare -A NODE_ID=() NAME_OF=() PUB=()
G1="a b c"
LEAVES="l1 l2 l3"
DEAD=""    # g1 nodes killed and not restarted
STOPPED="" # a g1 node under SIGSTOP: its control socket would not answer

NFT_TABLE=canopy_failover_$$
NFT_ON=0
nft_heal() {
  [ "$NFT_ON" -eq 1 ] || return 0
  nft delete table inet "$NFT_TABLE" 2>/dev/null || true
  NFT_ON=0
}
# CANOPY_KEEP_LOGS=DIR keeps a copy of the scratch dir (logs, searches.log).
keep_logs() { [ -z "${CANOPY_KEEP_LOGS:-}" ] || cp -r "$T" "$CANOPY_KEEP_LOGS"; }
trap 'rc=$?; set +e; nft_heal; keep_logs; (exit $rc); cleanup' EXIT

# nft_cut MATCH...: drops every packet matching one of the MATCH strings
# ("ip saddr X ip daddr Y"). On the input hook: loopback traffic passes it
# once, and nothing tells the sender (a hung link, not a refused one).
nft_cut() {
  nft add table inet "$NFT_TABLE"
  NFT_ON=1
  nft add chain inet "$NFT_TABLE" input '{ type filter hook input priority -10; policy accept; }'
  local m
  for m in "$@"; do
    # shellcheck disable=SC2086 # MATCH is several nft words
    nft add rule inet "$NFT_TABLE" input $m drop
  done
}

now_ms() {
  local t=${EPOCHREALTIME/[.,]/}
  echo $((t / 1000))
}

# wait_ms MS CMD...: poll CMD every 50 ms until it succeeds or MS pass.
wait_ms() {
  local end=$(($(now_ms) + $1))
  shift
  until "$@"; do
    [ "$(now_ms)" -lt "$end" ] || return 1
    sleep 0.05
  done
}

addr() { echo "${IP[$1]}:$(port "${IDX[$1]}")"; }
sn_json() { "$SN" status --state-dir "$T/$1" --json 2>/dev/null; }
leaf_json() { "$LEAF" status --state-dir "$T/$1" --json 2>/dev/null; }
snq() { sn_json "$1" | jq -r "$2"; } # snq NODE FILTER
role_is() { [ "$(snq "$1" .role)" = "$2" ]; }
not_leader() {
  local r
  r=$(snq "$1" .role) && [ -n "$r" ] && [ "$r" != leader ]
}
member_of() { # member_of NODE LEADER: standby or backup, following LEADER's term
  local j
  j=$(sn_json "$1") || return 1
  jq -e --arg l "${NODE_ID[$2]}" --argjson t "$(snq "$2" .term)" \
    '(.role == "standby" or .role == "backup") and .leader.id == $l and .term == $t' \
    <<<"$j" >/dev/null
}
leads_above() { # leads_above NODE TERM
  local j
  j=$(sn_json "$1") || return 1
  jq -e --argjson t "$2" '.role == "leader" and .term > $t' <<<"$j" >/dev/null
}
live_g1() {
  local n
  for n in $G1; do
    case " $DEAD $STOPPED " in *" $n "*) ;; *) echo "$n" ;; esac
  done
}
leaders() {
  local n
  for n in $(live_g1); do
    if [ "$(snq "$n" .role)" = leader ]; then echo "$n"; fi
  done
}
one_leader() { [ "$(leaders | wc -l)" -eq 1 ]; }
backup_of() { # the node the leader names as its backup (empty if none)
  local id
  id=$(snq "$1" '.backup.id // empty')
  [ -n "$id" ] && echo "${NAME_OF[$id]:-unknown}"
  return 0
}
takeovers() {
  local n sum=0
  for n in $(live_g1); do sum=$((sum + $(snq "$n" .takeovers))); done
  echo $sum
}

# Every g1 leaf attached to NODE, which leads, with NODE's term.
leaves_on() {
  local j l
  j=$(sn_json "$1") || return 1
  jq -e '.role == "leader"' <<<"$j" >/dev/null || return 1
  for l in $LEAVES; do
    leaf_json "$l" | jq -e --arg id "${NODE_ID[$1]}" --argjson t "$(jq .term <<<"$j")" \
      '.connected and .supernode_id == $id and .supernode_role == "leader" and .term == $t' \
      >/dev/null || return 1
  done
}

# The group around leader NODE is whole: it names a backup that agrees, every
# leaf is on NODE and watches that backup, and no other live node leads.
settled() {
  local bid k l
  leaves_on "$1" || return 1
  bid=$(snq "$1" '.backup.id // empty')
  [ -n "$bid" ] || return 1 # no backup named yet (an empty subscript is an error)
  k=${NAME_OF[$bid]:-}
  [ -n "$k" ] && role_is "$k" backup || return 1
  for l in $LEAVES; do
    leaf_json "$l" | jq -e --arg b "$bid" '.backup.id == $b and .watching' >/dev/null || return 1
  done
  one_leader
}

publishes_unchanged() {
  local l p
  for l in $LEAVES; do
    p=$(leaf_json "$l" | jq -r .publishes)
    [ "$p" = "${PUB[$l]}" ] || fail "$1: leaf $l published again (publishes ${PUB[$l]} -> $p)"
  done
}

# start_gsn NODE: (re)starts super node NODE in its group, linked to the other three.
start_gsn() {
  local n=$1 o args=()
  for o in a b c d; do
    if [ "$o" != "$n" ]; then args+=(--peer "$(addr "$o")"); fi
  done
  rm -f "$T/$n/control.sock" # a killed node's socket file would look alive to test -S
  [ -f "$T/${GROUP[$n]}.key" ] || (umask 077 && echo "failover drill secret of ${GROUP[$n]}" >"$T/${GROUP[$n]}.key")
  "$SN" --listen "$(addr "$n")" --state-dir "$T/$n" --group "${GROUP[$n]}" \
    --group-key-file "$T/${GROUP[$n]}.key" --no-discovery \
    --stun off --keepalive-ms "$KEEPALIVE" --log-level debug "${args[@]}" >>"$T/$n.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$n=$!"
  wait_for 5 sn_json "$n" >/dev/null || fail "super node $n did not start"
  NODE_ID[$n]=$(snq "$n" .id)
  NAME_OF[${NODE_ID[$n]}]=$n
  DEAD=$(for o in $DEAD; do [ "$o" = "$n" ] || echo "$o"; done)
}

# start_leaf_at LEAF NODE: leaf sharing $T/LEAF-share, given NODE's address.
start_leaf_at() {
  local l=$1
  mkdir -p "$T/$l-share"
  "$LEAF" --supernode "$(addr "$2")" --share "$T/$l-share" --state-dir "$T/$l" \
    --keepalive-ms "$KEEPALIVE" --log-level debug >"$T/$l.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$l=$!"
  wait_for 10 connected "$l" || fail "leaf $l did not attach"
}

pid_of() { eval "echo \$PID_$1"; }
kill9() {
  local p
  p=$(pid_of "$1")
  kill -9 "$p"
  wait "$p" 2>/dev/null || true
  DEAD="$DEAD $1"
}

# --- searches from the other group ------------------------------------------------
FILES=()
for l in $LEAVES; do
  mkdir -p "$T/$l-share"
  for f in one two; do
    echo "$l $f" >"$T/$l-share/drillfile $l $f.mp3"
    FILES+=("drillfile $l $f.mp3")
  done
done
NFILES=${#FILES[@]}
EXPECTED=$(printf '%s\n' "${FILES[@]}" | sort)

searcher() {
  set +e
  local t0 out names r
  while :; do
    t0=$(now_ms)
    out=$("$LEAF" search --state-dir "$T/s" --json --wait 1500 --limit "$NFILES" drillfile 2>&1)
    names=$(jq -r 'select(.name != null) | .name' <<<"$out" 2>/dev/null | sort -u)
    if [ "$names" = "$EXPECTED" ]; then r=ok; else r=fail; fi
    echo "$t0 $(now_ms) $r $(grep -c content_id <<<"$out")" >>"$T/searches.log"
    sleep 0.2
  done
}

# A search that started at or after MS found every file.
search_ok_since() { awk -v s="$1" '$1 >= s && $3 == "ok" { f = 1 } END { exit !f }' "$T/searches.log"; }

TOTAL_FAILED=0
# report DRILL START_MS: the searches that ran between START_MS and now.
report() {
  local line
  line=$(awk -v s="$2" -v e="$(now_ms)" '
    $2 >= s && $1 <= e { n++; if ($3 == "fail") { f++; if (first == "") first = $1; last = $2 } }
    END { printf "%d %d %d %d", n, f, f ? first - s : 0, f ? last - first : 0 }' "$T/searches.log")
  set -- "$1" $line
  if [ "$3" -gt 0 ]; then
    note "drill $1: $3 of $2 searches from g2 failed, the first started at +${4} ms," \
      "over ${5} ms"
  else
    note "drill $1: 0 of $2 searches from g2 failed"
  fi
  TOTAL_FAILED=$((TOTAL_FAILED + $3))
}

# after_drill DRILL LEADER START_MS: the group settles around LEADER, nobody
# re-published, a search started now finds everything.
after_drill() {
  wait_ms 10000 settled "$2" || fail "drill $1: the group did not settle around $2" \
    "($(sn_json "$2"); leaves: $(for l in $LEAVES; do leaf_json "$l"; done))"
  publishes_unchanged "drill $1"
  local since
  since=$(now_ms)
  wait_ms 6000 search_ok_since "$since" || fail "drill $1: searches from g2 no longer find all" \
    "of g1's files ($(tail -n 3 "$T/searches.log"))"
  report "$1" "$3"
}

# --- bring-up -----------------------------------------------------------------------
echo "failover: g1 = a ${IP[a]}, b ${IP[b]}, c ${IP[c]}; g2 = d ${IP[d]}"
start_gsn a
wait_ms 5000 role_is a leader || fail "a alone did not take the lead: $(sn_json a)"
start_gsn b
wait_ms 5000 member_of b a || fail "b did not join a's group: $(sn_json b)"
wait_ms 5000 role_is b backup || fail "b is not a's backup: $(sn_json b)"
start_gsn c
wait_ms 5000 member_of c a || fail "c did not join a's group: $(sn_json c)"
role_is c standby || fail "c should stand by: $(sn_json c)"
start_gsn d
wait_ms 5000 role_is d leader || fail "d did not lead g2: $(sn_json d)"
[ "$(snq d .group)" = g2 ] && [ "$(snq a .group)" = g1 ] || fail "group names"
start_leaf_at l1 a
start_leaf_at l2 a
start_leaf_at l3 c
start_leaf_at s d
wait_ms 10000 settled a || fail "g1 did not settle around a"
note "l3, given standby c's address, is attached to leader a"
for l in $LEAVES; do
  PUB[$l]=$(leaf_json "$l" | jq -r .publishes)
  [ "${PUB[$l]}" -ge 1 ] || fail "leaf $l never published"
done
: >"$T/searches.log"
searcher &
PIDS+=($!)
wait_ms 10000 search_ok_since 0 || fail "searches from g2 do not find g1's files: $(tail -n 3 "$T/searches.log")"
note "a leads g1 (term $(snq a .term)) with backup b and standby c; s on d finds all $NFILES files"

# --- a: kill -9 the leader ------------------------------------------------------------
L=a
K=$(backup_of $L)
[ "$K" = b ] || fail "a's backup is '$K', not b"
term=$(snq $L .term)
s0=$(now_ms)
kill9 $L
wait_ms 2000 leads_above "$K" "$term" || fail "drill a: $K did not lead within 2 s: $(sn_json "$K")"
note "drill a: $K leads (term $(snq "$K" .term), was $term) $(($(now_ms) - s0)) ms after kill -9 of $L"
wait_ms 3000 leaves_on "$K" || fail "drill a: the leaves did not follow $K"
wait_ms 5000 eval '[ "$(backup_of "$K")" = c ]' || fail "drill a: c is not the new backup: $(sn_json "$K")"
[ "$(snq "$K" .takeovers)" -ge 1 ] || fail "drill a: $K does not count its takeover"
after_drill a "$K" "$s0"
L=$K

# --- b: the old leader comes back -------------------------------------------------------
term=$(snq $L .term)
s0=$(now_ms)
start_gsn a
# It must not lead, not even before it hears from the group (joining lasts ~1 s).
end=$(($(now_ms) + 3000))
while [ "$(now_ms)" -lt "$end" ]; do
  r=$(snq a .role) || r=
  [ "$r" != leader ] || fail "drill b: the restarted a leads: $(sn_json a)"
  sleep 0.1
done
wait_ms 5000 member_of a $L || fail "drill b: a did not rejoin under $L: $(sn_json a)"
[ "$(snq $L .term)" = "$term" ] && role_is $L leader || fail "drill b: leadership changed: $(sn_json $L)"
note "drill b: a rejoined as $(snq a .role), $L still leads with term $term"
after_drill b "$L" "$s0"

# --- c: SIGSTOP the leader ------------------------------------------------------------------
K=$(backup_of $L)
[ -n "$K" ] || fail "drill c: $L has no backup"
term=$(snq $L .term)
s0=$(now_ms)
kill -STOP "$(pid_of $L)"
STOPPED=$L
wait_ms 3000 leads_above "$K" "$term" || fail "drill c: $K did not take over within 3 s: $(sn_json "$K")"
note "drill c: $K leads (term $(snq "$K" .term)) $(($(now_ms) - s0)) ms after SIGSTOP of $L"
wait_ms 3000 leaves_on "$K" || fail "drill c: the leaves did not follow $K"
c0=$(now_ms)
kill -CONT "$(pid_of $L)"
STOPPED=""
wait_ms 5000 not_leader $L || fail "drill c: $L still leads 5 s after SIGCONT: $(sn_json $L)"
note "drill c: $L stepped down $(($(now_ms) - c0)) ms after SIGCONT (now $(snq $L .role))"
one_leader || fail "drill c: leaders: $(leaders | xargs)"
after_drill c "$K" "$s0"
L=$K

# --- d: kill -9 the backup ----------------------------------------------------------------------
X=$(backup_of $L)
[ -n "$X" ] || fail "drill d: $L has no backup"
term=$(snq $L .term)
s0=$(now_ms)
kill9 "$X"
new_backup() {
  local b
  b=$(backup_of $L)
  [ -n "$b" ] && [ "$b" != "$X" ] && role_is "$b" backup
}
wait_ms 5000 new_backup || fail "drill d: $L named no new backup after $X died: $(sn_json $L)"
note "drill d: $L's backup is now $(backup_of $L) (was $X), $(($(now_ms) - s0)) ms after the kill"
[ "$(snq $L .term)" = "$term" ] && role_is $L leader || fail "drill d: the leader changed"
after_drill d "$L" "$s0"
start_gsn "$X"
wait_ms 5000 member_of "$X" $L || fail "drill d: the restarted $X did not rejoin: $(sn_json "$X")"
wait_ms 10000 settled $L || fail "drill d: no settled group after $X came back"

# --- e: cut only the leader-backup link --------------------------------------------------------------
can_cut=0
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP drills e and f: cutting links with nftables needs root"
elif ! command -v nft >/dev/null || ! nft list tables >/dev/null 2>&1; then
  echo "SKIP drills e and f: nftables is not usable here"
else
  can_cut=1
fi
if [ $can_cut -eq 1 ]; then
  K=$(backup_of $L)
  term=$(snq $L .term)
  tk=$(takeovers)
  s0=$(now_ms)
  nft_cut "ip saddr ${IP[$L]} ip daddr ${IP[$K]}" "ip saddr ${IP[$K]} ip daddr ${IP[$L]}"
  sleep 4
  role_is $L leader && [ "$(snq $L .term)" = "$term" ] ||
    fail "drill e: cutting $L-$K changed the leadership: $(sn_json $L)"
  not_leader "$K" || fail "drill e: backup $K took over over a cut link: $(sn_json "$K")"
  one_leader || fail "drill e: leaders: $(leaders | xargs)"
  [ "$(takeovers)" = "$tk" ] || fail "drill e: a takeover happened"
  leaves_on $L || fail "drill e: the leaves left $L"
  note "drill e: 4 s with $L-$K cut: $L still leads with term $term, no takeover"
  nft_heal
  after_drill e "$L" "$s0"
fi

# --- f: cut the leader off entirely ----------------------------------------------------------------
if [ $can_cut -eq 1 ]; then
  K=$(backup_of $L)
  term=$(snq $L .term)
  s0=$(now_ms)
  nft_cut "ip saddr ${IP[$L]}" "ip daddr ${IP[$L]}"
  wait_ms 3000 leads_above "$K" "$term" || fail "drill f: $K did not take over within 3 s: $(sn_json "$K")"
  note "drill f: $K leads (term $(snq "$K" .term)) $(($(now_ms) - s0)) ms after $L was cut off"
  wait_ms 3000 leaves_on "$K" || fail "drill f: the leaves did not follow $K"
  h0=$(now_ms)
  nft_heal
  wait_ms 20000 not_leader $L || fail "drill f: $L still leads 20 s after the heal: $(sn_json $L)"
  note "drill f: $L stepped down $(($(now_ms) - h0)) ms after the heal (now $(snq $L .role))"
  one_leader || fail "drill f: leaders: $(leaders | xargs)"
  after_drill f "$K" "$s0"
  L=$K
fi

# --- g: kill -9 the new leader in turn ----------------------------------------------------------------
K=$(backup_of $L)
[ -n "$K" ] || fail "drill g: $L has no backup"
term=$(snq $L .term)
s0=$(now_ms)
kill9 $L
wait_ms 2000 leads_above "$K" "$term" || fail "drill g: $K did not lead within 2 s: $(sn_json "$K")"
note "drill g: $K leads (term $(snq "$K" .term)) $(($(now_ms) - s0)) ms after kill -9 of $L"
after_drill g "$K" "$s0"

note "searches from g2 during the whole run: $(awk '$3 == "fail" { f++ } END { print f + 0 }' \
  "$T/searches.log") failed of $(wc -l <"$T/searches.log")"
echo "failover: ok"
