# mesh_lib.sh - a mesh of N super nodes on loopback, each with a leaf sharing
# one unique file, and the helpers that read its graph. Sourced after
# tests/integration/lib.sh by tests/integration/mesh_at_size.sh and
# tests/bench/mesh_at_size.sh.
#
# Node i listens on 127.i.0.1:BASE+i (mesh_ip) and is started with one
# --peer: a random earlier node (MESH_SEED makes the choice repeatable;
# $T/peer.i holds it). Leaf li shares "meshfile i.txt". Each node has an IP
# address of its own, in a /16 of its own, as super nodes on the internet
# have: on one address, the address book's caps per prefix (16 per /24,
# 64 per /16, supernode/mesh.h) and the pre-auth share per address would
# let each node learn only 16 others, which is a test artefact.

MESH_SEED=${MESH_SEED:-$RANDOM}

# mesh_ip I: node I's address (a /16 each up to 254 nodes, then a /24 each).
mesh_ip() {
  if [ "$1" -le 254 ]; then echo "127.$1.0.1"; else echo "127.$(($1 % 254 + 1)).$(($1 / 254)).1"; fi
}

# mesh_start N [extra super-node args...]
mesh_start() {
  local n=$1 i p
  shift
  RANDOM=$MESH_SEED
  note "mesh seed $MESH_SEED"
  for i in $(seq 1 "$n"); do
    local args=()
    if [ "$i" -gt 1 ]; then
      p=$((1 + RANDOM % (i - 1)))
      echo "$p" >"$T/peer.$i"
      args=(--peer "$(mesh_ip "$p"):$(port "$p")")
    fi
    "$SN" --listen "$(mesh_ip "$i"):$(port "$i")" --state-dir "$T/s$i" --keepalive-ms "${KEEPALIVE:-2000}" \
      --log-level "${MESH_LOG:-info}" "${args[@]}" "$@" >"$T/s$i.log" 2>&1 &
    PIDS+=($!)
    eval "PID_s$i=$!"
  done
  # When the last super node was started (date +%s%N): the start-up pacing
  # of the loop above is not the mesh's time.
  MESH_LAST_START=$(date +%s%N)
  for i in $(seq 1 "$n"); do
    wait_for 20 test -S "$T/s$i/control.sock" || fail "super node s$i did not start"
  done
  for i in $(seq 1 "$n"); do
    mkdir -p "$T/l$i-share"
    echo "unique file of node $i" >"$T/l$i-share/meshfile $i.txt"
    "$LEAF" --supernode "$(mesh_ip "$i"):$(port "$i")" --share "$T/l$i-share" --state-dir "$T/l$i" \
      --keepalive-ms "${KEEPALIVE:-2000}" --log-level info >"$T/l$i.log" 2>&1 &
    PIDS+=($!)
    eval "PID_l$i=$!"
  done
  for i in $(seq 1 "$n"); do
    wait_for 30 connected "l$i" || fail "leaf l$i did not connect"
  done
}

# mesh_graph N [DEAD]: reads every live node's links; writes a summary to
# $T/graph.txt and "components min median max below above" to stdout.
mesh_graph() {
  local n=$1 dead=${2:-} i
  : >"$T/graph.jsonl"
  for i in $(seq 1 "$n"); do
    [ "$i" = "$dead" ] && continue
    "$SN" stats --state-dir "$T/s$i" --json 2>/dev/null |
      jq -c --arg n "s$i" '{n: $n, id: .id, links: .links, nb: [.neighbours[].id],
        shed: .links_shed, trimmed: .links_trimmed, evicted: .links_evicted, made: .links_made}' \
        >>"$T/graph.jsonl" || echo "{\"n\":\"s$i\",\"id\":\"?$i\",\"links\":0,\"nb\":[]}" >>"$T/graph.jsonl"
  done
  python3 - "$T/graph.jsonl" "${MESH_LO:-0}" "${MESH_HI:-999}" >"$T/graph.txt" <<'EOF'
import json, sys
nodes = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
lo, hi = int(sys.argv[2]), int(sys.argv[3])
ids = {x["id"]: x["n"] for x in nodes}
adj = {x["id"]: set() for x in nodes}
for x in nodes:
    for y in x["nb"]:
        if y in adj and y != x["id"]:
            adj[x["id"]].add(y)
            adj[y].add(x["id"])
seen, comps = set(), 0
for s in adj:
    if s in seen:
        continue
    comps += 1
    stack = [s]
    seen.add(s)
    while stack:
        u = stack.pop()
        for v in adj[u]:
            if v not in seen:
                seen.add(v)
                stack.append(v)
deg = sorted(len(v) for v in adj.values())
out = [x["n"] + ":" + str(len(adj[x["id"]])) for x in nodes if not lo <= len(adj[x["id"]]) <= hi]
med = deg[len(deg) // 2] if deg else 0
print(f"components {comps} links min {deg[0] if deg else 0} median {med} max {deg[-1] if deg else 0}"
      f" outside {lo}..{hi}: {' '.join(out) if out else 'none'}")
EOF
}

# mesh_ok N LO HI [DEAD]: one component and every live node within LO..HI.
mesh_ok() {
  MESH_LO=$2 MESH_HI=$3 mesh_graph "$1" "${4:-}"
  grep -q "^components 1 .*outside [0-9]*\.\.[0-9]*: none$" "$T/graph.txt"
}

# mesh_sum N KEY: a stats counter summed over the nodes still running.
mesh_sum() {
  local n=$1 key=$2 i sum=0 v
  for i in $(seq 1 "$n"); do
    v=$("$SN" stats --state-dir "$T/s$i" --json 2>/dev/null | jq -r ".$key" || echo 0)
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}

# mesh_counts: "shed trimmed evicted made" summed over the last mesh_graph.
mesh_counts() {
  jq -s -r '[map(.shed // 0), map(.trimmed // 0), map(.evicted // 0), map(.made // 0)]
    | map(add) | map(tostring) | join(" ")' "$T/graph.jsonl"
}

# mesh_edges FILE: writes the graph's links (one "idA idB" per line, sorted)
# from the last mesh_graph, so that two readings can be compared.
mesh_edges() {
  jq -r '.id as $a | .nb[] | if $a < . then "\($a) \(.)" else "\(.) \($a)" end' "$T/graph.jsonl" |
    sort -u >"$1"
}

# mesh_recall LEAF [TTL]: distinct unique files it finds (at the leaf's
# default TTL unless given).
mesh_recall() {
  local ttl=()
  [ -z "${2:-}" ] || ttl=(--ttl "$2")
  "$LEAF" search --state-dir "$T/$1" --json --wait "${MESH_WAIT:-4000}" "${ttl[@]}" meshfile |
    jq -r .name | sort -u | grep -c '^meshfile ' || true
}

# mesh_joined_through N I: how many nodes were started with --peer sI.
mesh_joined_through() {
  cat "$T"/peer.* | grep -cx "$2" || true
}

# mesh_direction_node N: the node most others were started with as --peer.
mesh_direction_node() {
  cat "$T"/peer.* | sort -n | uniq -c | sort -k1,1nr -k2,2n | awk 'NR == 1 { print $2 }'
}
