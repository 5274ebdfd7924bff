#!/usr/bin/env bash
# Packaging: the .deb that CPack builds holds everything its systemd units
# point at, and systemd itself accepts the units.
#
#   tests/integration/units.sh BUILD_DIR     (or CANOPY_BIN=BUILD_DIR)
#
# Builds the .deb from BUILD_DIR's CPack config (into the scratch dir, so the
# build dir is left as it was), unpacks it with dpkg-deb -x into a scratch
# root, and checks for every unit it ships:
#   - each Exec*= program is executable at that path in the unpacked package,
#     or, not being ours (ExecReload's /bin/kill), on this host;
#   - the --config file of ExecStart ships (the templated unit's per-instance
#     file is the shipped supernode.conf copied, as its comment says to do);
#   - --state-dir is the unit's StateDirectory=;
#   - the Documentation= man page ships in the section it names;
#   - the shipped binary accepts the shipped config;
#   - `systemd-analyze verify` prints nothing about it and succeeds. System
#     units are verified as shipped with --root on the unpacked package (the
#     host's own units and /bin/kill copied in beside it, never over it); a
#     user manager cannot take --root in systemd 252, so the user unit's
#     copy has its program paths pointed into the scratch root instead.
# Before trusting the verifier, a unit with an unknown key and one whose
# program is missing must each be reported.
#
# Exits 77 (skipped) without systemd-analyze, dpkg-deb or cpack.
CANOPY_BIN=${1:-${CANOPY_BIN:-}}
export CANOPY_BIN
. "$(dirname "$0")/lib.sh"

for tool in systemd-analyze dpkg-deb cpack; do
  command -v "$tool" >/dev/null || { echo "SKIP: units.sh needs $tool"; exit 77; }
done
BUILD=$(cd "$CANOPY_BIN" && pwd)
[ -f "$BUILD/CPackConfig.cmake" ] || fail "$BUILD has no CPackConfig.cmake: not a configured build dir"

# --- the package ----------------------------------------------------------------
# cpack runs its "preinstall" build in the current directory.
if ! (cd "$BUILD" && cpack -G DEB -B "$T/pkg") >"$T/cpack.log" 2>&1; then
  cat "$T"/pkg/_CPack_Packages/*/DEB/PreinstallOutput.log >"$T/preinstall.log" 2>/dev/null || true
  fail "cpack failed: $(tail -n 5 "$T/cpack.log")"
fi
debs=("$T"/pkg/canopy_*.deb)
if [ ${#debs[@]} -ne 1 ] || [ ! -f "${debs[0]}" ]; then
  fail "cpack made no single canopy .deb: ${debs[*]}"
fi
DEB=${debs[0]}
ROOT=$T/root
mkdir -p "$ROOT"
dpkg-deb -x "$DEB" "$ROOT"
dpkg-deb -c "$DEB" | awk '{print $6}' | sed 's#^\.##' >"$T/files"
note "$(basename "$DEB"): $(dpkg-deb -c "$DEB" | grep -vc '/$') files; Depends: $(dpkg-deb -f "$DEB" Depends)"
dpkg-deb -I "$DEB" conffiles >"$T/conffiles"
for f in /etc/canopy/supernode.conf /etc/canopy/leaf.conf; do
  grep -qx "$f" "$T/conffiles" || fail "$f is not a conffile"
done

SYSTEM_UNITS=(canopy-supernode.service canopy-supernode@.service)
USER_UNITS=(canopy-leaf.service)
for u in "${SYSTEM_UNITS[@]}"; do
  [ -f "$ROOT/usr/lib/systemd/system/$u" ] || fail "$u is not in /usr/lib/systemd/system"
done
for u in "${USER_UNITS[@]}"; do
  [ -f "$ROOT/usr/lib/systemd/user/$u" ] || fail "$u is not in /usr/lib/systemd/user"
done
shipped=$(find "$ROOT/usr/lib/systemd" -name '*.service' | wc -l)
[ "$shipped" -eq $((${#SYSTEM_UNITS[@]} + ${#USER_UNITS[@]})) ] ||
  fail "the package ships $shipped units; this test knows ${SYSTEM_UNITS[*]} ${USER_UNITS[*]}"

# key FILE KEY: every value of KEY= in a unit file, one per line
key() { sed -n "s/^$2=//p" "$1"; }

# check_unit FILE INSTANCE: what the unit points at is where it points.
check_unit() {
  local unit=$1 inst=$2 name line prog cfg sd state man sec
  name=$(basename "$unit")
  [ "$(key "$unit" ExecStart | wc -l)" -eq 1 ] || fail "$name: not exactly one ExecStart"
  while read -r line; do
    prog=${line%% *}
    prog=${prog##[-@:+!]}
    prog=${prog##[-@:+!]}
    if grep -qxF "$prog" "$T/files"; then
      [ -f "$ROOT$prog" ] || fail "$name: $prog is not a file"
      [ -x "$ROOT$prog" ] || fail "$name: $prog is not executable"
    elif [ -x "$prog" ]; then
      # Not ours (ExecReload's /bin/kill, from procps): the host's stands
      # in for the dependency, in the scratch root for --root.
      mkdir -p "$ROOT$(dirname "$prog")"
      cp -L "$prog" "$ROOT$prog"
      note "$name: $prog is not in the package; the host's is"
    else
      fail "$name: $prog is neither in the package nor on this host"
    fi
  done < <(sed -n 's/^Exec[A-Za-z]*=//p' "$unit")

  line=$(key "$unit" ExecStart)
  [[ $line == /usr/bin/canopy-* ]] || fail "$name: ExecStart is not a canopy binary: $line"
  prog=${line%% *}
  cfg=$(sed -n 's/.* --config \([^ ]*\).*/\1/p' <<<"$line")
  [ -n "$cfg" ] || fail "$name: ExecStart has no --config"
  # %E is /etc for the system manager; for a user it is ~/.config, and the
  # shipped /etc/canopy copy is what the user copies there.
  cfg=${cfg//%E//etc}
  cfg=${cfg//%i/$inst}
  if [ -n "$inst" ] && [ ! -e "$ROOT$cfg" ]; then
    [ -f "$ROOT/etc/canopy/supernode.conf" ] || fail "$name: no supernode.conf to copy for an instance"
    cp "$ROOT/etc/canopy/supernode.conf" "$ROOT$cfg"
  fi
  [ -f "$ROOT$cfg" ] || fail "$name: its config $cfg is not in the package"
  # The --help after --config exits 0 only if the file parsed.
  "$ROOT$prog" --config "$ROOT$cfg" --help >/dev/null 2>"$T/cfg.err" ||
    fail "$name: $prog rejects $cfg: $(cat "$T/cfg.err")"

  sd=$(key "$unit" StateDirectory)
  [ -n "$sd" ] || fail "$name: no StateDirectory="
  state=$(sed -n 's/.* --state-dir \([^ ]*\).*/\1/p' <<<"$line")
  # shellcheck disable=SC2016 # the unit's text, expanded by systemd
  [ "$state" = '${STATE_DIRECTORY}' ] || [ "$state" = "%S/$sd" ] ||
    fail "$name: --state-dir $state is not its StateDirectory=$sd"

  for man in $(key "$unit" Documentation); do
    [[ $man == man:* ]] || continue
    man=${man#man:}
    sec=${man##*(}
    sec=${sec%)}
    man=${man%(*}
    [ -f "$ROOT/usr/share/man/man$sec/$man.$sec" ] || fail "$name: man page $man($sec) is not in the package"
  done
}

for u in "${SYSTEM_UNITS[@]}"; do
  inst=
  [[ $u == *@.service ]] && inst="test"
  check_unit "$ROOT/usr/lib/systemd/system/$u" "$inst"
done
for u in "${USER_UNITS[@]}"; do
  check_unit "$ROOT/usr/lib/systemd/user/$u" ""
done

# The checks above must be able to fail: a config the binary refuses.
printf '[supernode]\nlisten = 127.0.0.1:1\nno-such-key = 1\n' >"$T/bad.conf"
if "$ROOT/usr/bin/canopy-supernode" --config "$T/bad.conf" --help >/dev/null 2>&1; then
  fail "canopy-supernode accepted a config with an unknown key"
fi

# --- systemd-analyze verify -------------------------------------------------------
# What a system unit needs beside itself (sysinit.target, network-online.target,
# multi-user.target...) comes from this host, added without overwriting.
for d in /usr/lib/systemd/system /lib/systemd/system; do
  [ -d "$d" ] && cp -an "$d/." "$ROOT/usr/lib/systemd/system/"
done
mkdir -m 0700 "$T/xdg"
# The man pages are looked up in the package (Documentation=man:...).
export MANPATH=$ROOT/usr/share/man XDG_RUNTIME_DIR=$T/xdg

# verify LOG ARGS...: systemd-analyze ARGS; returns 1 on a non-zero exit or
# any line about our units. Lines about the host's own units are shown, not
# held against us.
verify() {
  local log=$1 rc=0
  shift
  systemd-analyze "$@" >"$log" 2>&1 || rc=$?
  if [ $rc -ne 0 ] || grep -qi canopy "$log"; then
    sed 's/^/    /' "$log"
    return 1
  fi
  if [ -s "$log" ]; then note "systemd-analyze said, about host units:"; sed 's/^/    /' "$log"; fi
}

# verify_system UNIT_NAME: a unit of the unpacked package, as shipped.
verify_system() {
  verify "$T/verify-$1.log" verify --root="$ROOT" "$ROOT/usr/lib/systemd/system/$1"
}

# verify_user FILE: the user unit, its canopy programs taken from the root.
verify_user() {
  local dir
  dir=$(mktemp -d "$T/user.XXXXXX")
  sed "s#^\(Exec[A-Za-z]*=[-@:+!]*\)/usr/bin/canopy-#\1$ROOT/usr/bin/canopy-#" "$1" \
    >"$dir/$(basename "$1")"
  grep -q "^ExecStart=$ROOT/usr/bin/canopy-" "$dir/$(basename "$1")" ||
    fail "$(basename "$1"): could not point ExecStart into the scratch root"
  verify "$T/verify-user-$(basename "$1").log" --user verify "$dir/$(basename "$1")"
}

# First, the verifier must catch what it is here to catch.
B=$ROOT/usr/lib/systemd/system
sed 's/^LockPersonality=yes/LockPersonalty=yes/' "$B/canopy-supernode.service" >"$B/canopy-selftest1.service"
sed 's#^ExecStart=/usr/bin/canopy-supernode#ExecStart=/usr/bin/canopy-nonexistent#' \
  "$B/canopy-supernode.service" >"$B/canopy-selftest2.service"
sed 's/^LockPersonality=yes/LockPersonalty=yes/' "$ROOT/usr/lib/systemd/user/canopy-leaf.service" \
  >"$T/canopy-selftest3.service"
for u in canopy-selftest1.service canopy-selftest2.service; do
  if verify_system "$u" >/dev/null; then fail "systemd-analyze verify did not report $u"; fi
done
if verify_user "$T/canopy-selftest3.service" >/dev/null; then
  fail "systemd-analyze --user verify did not report an unknown key"
fi
rm -f "$B"/canopy-selftest*.service
note "systemd-analyze reports an unknown key and a missing program"

for u in "${SYSTEM_UNITS[@]}"; do
  [[ $u == *@.service ]] && u=${u/@.service/@test.service}
  verify_system "$u" || fail "systemd-analyze verify: $u"
  note "verified $u"
done
for u in "${USER_UNITS[@]}"; do
  verify_user "$ROOT/usr/lib/systemd/user/$u" || fail "systemd-analyze --user verify: $u"
  note "verified $u (user)"
done

echo "units: ok"
