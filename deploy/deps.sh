# deps.sh - sourced by deploy/demo.sh and tests/run.sh: make sure the Debian
# packages Canopy builds and tests with are installed. As root it installs
# what is missing; otherwise it prints the one apt-get line to run.
CANOPY_PKGS=(build-essential cmake pkg-config libglib2.0-dev libsodium-dev nettle-dev libjson-glib-dev
             libnice-dev libcmocka-dev jq curl libsystemd-dev libsqlite3-dev
             libsoup-3.0-dev
             # packaging and unit checks (cpack -G DEB, systemd-analyze verify)
             dpkg-dev systemd
             # real STUN/TURN peers and NAT tools for the tests
             coturn stun-client nftables iproute2 openssl
             # the NAT throughput benchmark (tests/bench/nat_throughput.sh)
             libnetfilter-queue-dev iptables socat)

canopy_deps() {
  local missing=() p
  for p in "${CANOPY_PKGS[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "Canopy needs these Debian packages; run as root:" >&2
    echo "  apt-get install -y ${missing[*]}" >&2
    return 1
  fi
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; }
}
