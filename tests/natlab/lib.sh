# lib.sh - real NATs in network namespaces, for tests/natlab (run as root).
#
# Topology (see /work/shared/handbook/LAB.md for why each rule is there):
#
#   "public" namespace ${NL}pub: bridge br0, 203.0.113.1/24 (TEST-NET-3);
#   super nodes and coturn listen here.
#       |  veth (router side "wan", public side "w-NAME" on br0)
#   NAT router ${NL}NAME: wan 203.0.113.N/24, bridge "lan" with LAN_SUBNET.1,
#   ip_forward on, nftables home-router rules (cone or symmetric).
#       |  veth (host side "eth0", router side "hK" on the lan bridge)
#   host ${NL}HOST: eth0 LAN_SUBNET.K/24, default route via the router.
#
# Usage: . lib.sh; make_nat A cone 10.1.0; make_host a1 A; start_coturn;
#        in_ns a1 CMD... ; start_in a1 LOGNAME CMD... (background, tracked).
# Everything created - namespaces (and with them every veth and bridge) and
# every process - goes away in the EXIT trap, also on failure. Names carry a
# per-run prefix (cnpy<pid>-); namespaces left by a run that was killed
# outright are removed at start.
#
# Not root: prints "SKIP: natlab needs root" and exits 77 (reported as
# skipped, never as passed).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: natlab needs root"
  exit 77
fi
for tool in ip nft sysctl setsid; do
  command -v "$tool" >/dev/null 2>&1 || { echo "SKIP: natlab needs $tool (apt-get install iproute2 nftables)"; exit 77; }
done

NL="cnpy$$-"                  # namespace prefix of this run
PUB="${NL}pub"
PUB_IP=203.0.113.1
NL_T=$(mktemp -d "${TMPDIR:-/tmp}/canopy-natlab.XXXXXX")
NL_PIDS=()                    # every background process we started
NL_NS=()                      # every namespace we created
NL_WAN_NEXT=10                # next router WAN address 203.0.113.N
declare -A NL_NAT_SUBNET=() NL_NAT_HOSTS=() NL_HOST_IP=()

nl_log() { echo "  [natlab] $*" >&2; }

# Namespaces of runs that died without their trap (kill -9): their pid is gone.
nl_sweep_stale() {
  local ns pid
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^cnpy[0-9]+-' || true); do
    pid=${ns#cnpy}; pid=${pid%%-*}
    if ! kill -0 "$pid" 2>/dev/null; then
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
}

nl_cleanup() {
  local rc=$? p i
  set +e
  # Processes: TERM first, KILL whatever is left after a grace period. Each
  # was started in its own process group (setsid), so its children go too.
  for p in "${NL_PIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
  for i in $(seq 1 20); do
    local alive=0
    for p in "${NL_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for p in "${NL_PIDS[@]}"; do kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null; done
  for p in "${NL_PIDS[@]}"; do wait "$p" 2>/dev/null; done
  # Anything else still inside our namespaces (it should be nothing).
  for i in "${NL_NS[@]}"; do
    ip netns pids "$i" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
  done
  # Deleting a namespace deletes its veth ends (and so their peers) and bridges.
  for i in "${NL_NS[@]}"; do ip netns del "$i" 2>/dev/null; done
  if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then
    echo "--- natlab logs ($NL_T) ---"
    for f in "$NL_T"/*.log; do [ -f "$f" ] && { echo "== $f"; tail -n 25 "$f"; }; done
  fi
  [ -n "${NL_KEEP:-}" ] || rm -rf "$NL_T"
  exit $rc
}
trap nl_cleanup EXIT
trap 'exit 130' INT TERM

nl_sweep_stale

nl_fail() { echo "FAIL: $*" >&2; exit 1; }

# in_ns NAME CMD...: run CMD inside namespace NAME (pub, a NAT or a host).
in_ns() { local n=$1; shift; ip netns exec "$NL$n" "$@"; }

nl_new_ns() {
  ip netns add "$1"
  NL_NS+=("$1")
  ip -n "$1" link set lo up
}

# The public side, created on first use.
nl_pub() {
  [ -e "/run/netns/$PUB" ] && return 0
  nl_new_ns "$PUB"
  ip -n "$PUB" link add br0 type bridge
  ip -n "$PUB" addr add "$PUB_IP/24" dev br0
  ip -n "$PUB" link set br0 up
}

# make_nat NAME cone|symmetric LAN_PREFIX: a home router NAME whose LAN is
# LAN_PREFIX.0/24 (e.g. 10.1.0), router at LAN_PREFIX.1, WAN 203.0.113.N.
#   cone: endpoint-independent mapping (port kept), address-and-port-dependent
#         filtering - a port-restricted cone NAT, as LAB.md's ruleset gives;
#   symmetric: masquerade random,fully-random - a new port per destination.
make_nat() {
  local name=$1 type=$2 lan=$3 ns="$NL$1" wan_ip masq
  case $type in
    cone) masq="masquerade" ;;
    symmetric) masq="masquerade random,fully-random" ;;
    *) nl_fail "make_nat: type must be cone or symmetric, not '$type'" ;;
  esac
  [[ $name =~ ^[A-Za-z0-9_]{1,12}$ ]] || nl_fail "make_nat: name '$name': 1-12 letters, digits, _"
  nl_pub
  wan_ip="203.0.113.$NL_WAN_NEXT"; NL_WAN_NEXT=$((NL_WAN_NEXT + 1))
  nl_new_ns "$ns"
  ip link add wan netns "$ns" type veth peer name "w-$name" netns "$PUB"
  ip -n "$PUB" link set "w-$name" master br0 up
  ip -n "$ns" addr add "$wan_ip/24" dev wan
  ip -n "$ns" link set wan up
  ip -n "$ns" link add lan type bridge
  ip -n "$ns" addr add "$lan.1/24" dev lan
  ip -n "$ns" link set lan up
  ip -n "$ns" route add default via "$PUB_IP"
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
  # LAB.md's home router (written out on several lines: nft 1.0.6 wants a
  # newline or ';' between "}" and "}"). input_filter matters: without it a punch packet
  # that beats the leaf's own creates a conntrack entry on the router and
  # the leaf's mapping changes port.
  ip netns exec "$ns" nft -f - <<EOF
table ip nat {
  chain post { type nat hook postrouting priority 100; oifname "wan" $masq; }
}
table ip filter {
  chain forward_filter { type filter hook forward priority 0; policy drop;
    iifname "lan" accept; ct state established,related accept; }
  chain input_filter   { type filter hook input priority 0; policy drop;
    iifname { "lan", "lo" } accept; ct state established,related accept; }
}
EOF
  NL_NAT_SUBNET[$name]=$lan
  NL_NAT_HOSTS[$name]=0
  eval "WAN_$name=$wan_ip"
  nl_log "NAT $name ($type): WAN $wan_ip, LAN $lan.0/24"
}

# make_host NAME NAT: a host on NAT's LAN, at LAN_PREFIX.(10+K); its address
# is in HOST_IP_<NAME> and host_ip NAME.
make_host() {
  local name=$1 nat=$2 ns="$NL$1" rns="$NL$2" lan k ip
  [[ $name =~ ^[A-Za-z0-9_]{1,12}$ ]] || nl_fail "make_host: name '$name': 1-12 letters, digits, _"
  lan=${NL_NAT_SUBNET[$nat]:?make_host: no NAT $nat}
  k=$(( ${NL_NAT_HOSTS[$nat]} + 1 )); NL_NAT_HOSTS[$nat]=$k
  ip="$lan.$((10 + k))"
  nl_new_ns "$ns"
  ip link add eth0 netns "$ns" type veth peer name "h$k" netns "$rns"
  ip -n "$rns" link set "h$k" master lan up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$lan.1"
  NL_HOST_IP[$name]=$ip
  eval "HOST_IP_$name=$ip"
  nl_log "host $name: $ip behind $nat"
}

host_ip() { echo "${NL_HOST_IP[$1]}"; }

# start_in NS LOGNAME CMD...: CMD in the background inside NS, in its own
# process group, output to $NL_T/LOGNAME.log; its pid is in $NL_LAST_PID.
start_in() {
  local n=$1 log=$2; shift 2
  setsid ip netns exec "$NL$n" "$@" >"$NL_T/$log.log" 2>&1 &
  NL_LAST_PID=$!
  NL_PIDS+=("$NL_LAST_PID")
}

# stop_pid PID: TERM (then KILL) one process we started, and reap it.
stop_pid() {
  local p=$1 i
  kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
  for i in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

# wait_for SECONDS CMD...: poll until CMD succeeds.
wait_for() {
  local end=$(( $(date +%s%N) / 1000000 + $1 * 1000 )); shift
  until "$@"; do
    [ $(( $(date +%s%N) / 1000000 )) -lt $end ] || return 1
    sleep 0.1
  done
}

# start_coturn: coturn in the public namespace on $PUB_IP:3478 (it answers
# STUN there too), REST-API auth with $TURN_SECRET. --denied-peer-ip for the
# private ranges is required (LAB.md): without it coturn 4.6.1 relays to a
# peer's private host candidate, gets "Network is unreachable" and closes
# the whole allocation. Stopped by the pid it wrote, in the trap.
TURN_SECRET=${TURN_SECRET:-natlab-secret-$$}
TURN_REALM=canopy.test
start_coturn() {
  command -v turnserver >/dev/null 2>&1 || { echo "SKIP: natlab needs coturn (apt-get install coturn)"; exit 77; }
  nl_pub
  local pidfile="$NL_T/turnserver.pid"
  start_in pub coturn turnserver -n --listening-ip="$PUB_IP" --relay-ip="$PUB_IP" \
    --listening-port=3478 --min-port=50000 --max-port=50999 \
    --no-tls --no-dtls --no-cli --realm="$TURN_REALM" \
    --use-auth-secret --static-auth-secret="$TURN_SECRET" \
    --denied-peer-ip=10.0.0.0-10.255.255.255 --denied-peer-ip=172.16.0.0-172.31.255.255 \
    --denied-peer-ip=192.168.0.0-192.168.255.255 \
    --pidfile="$pidfile" --log-file=stdout --simple-log --no-software-attribute
  COTURN_PID=$NL_LAST_PID
  wait_for 5 test -s "$pidfile" || nl_fail "coturn did not start"
  local written; written=$(cat "$pidfile")
  # setsid + ip netns exec both exec: the pid written is the one we track.
  [ "$written" = "$COTURN_PID" ] || NL_PIDS+=("$written")
  wait_for 5 in_ns pub sh -c "ss -lun | grep -q '$PUB_IP:3478'" || nl_fail "coturn is not listening"
  nl_log "coturn on $PUB_IP:3478 (pid $written)"
}

# start_coturn_stun [PORT]: a second coturn, STUN only (no TURN), on
# $PUB_IP:PORT (default 3480); sets STUN_PORT. Why a second one: when the
# STUN server is the TURN server's own address and port, libnice 0.1.21
# takes the (classic, cookie-less) binding response for a TURN message on
# the socket that holds the allocation, drops it as "incorrectly
# multiplexed", and gathering waits about 2 s for the discovery to time out
# (the srflx candidate still comes from the Allocate response). Super nodes
# answer STUN on their own port, so this is the realistic layout.
start_coturn_stun() {
  command -v turnserver >/dev/null 2>&1 || { echo "SKIP: natlab needs coturn (apt-get install coturn)"; exit 77; }
  nl_pub
  STUN_PORT=${1:-3480}
  local pidfile="$NL_T/stunserver.pid"
  start_in pub coturn-stun turnserver -n --stun-only --listening-ip="$PUB_IP" \
    --listening-port="$STUN_PORT" --no-tls --no-dtls --no-cli --realm="$TURN_REALM" \
    --pidfile="$pidfile" --log-file=stdout --simple-log --no-software-attribute
  wait_for 5 test -s "$pidfile" || nl_fail "coturn (STUN only) did not start"
  local written; written=$(cat "$pidfile")
  [ "$written" = "$NL_LAST_PID" ] || NL_PIDS+=("$written")
  wait_for 5 in_ns pub sh -c "ss -lun | grep -q '$PUB_IP:$STUN_PORT'" || nl_fail "STUN is not listening"
  nl_log "coturn STUN-only on $PUB_IP:$STUN_PORT (pid $written)"
}

# turn_credentials NAME [TTL]: coturn REST-API credentials for NAME, valid
# TTL seconds (default 3600): sets TURN_USER and TURN_PASS.
turn_credentials() {
  local name=$1 ttl=${2:-3600}
  TURN_USER="$(( $(date +%s) + ttl )):$name"
  TURN_PASS=$(printf '%s' "$TURN_USER" | openssl dgst -sha1 -hmac "$TURN_SECRET" -binary | base64)
}
