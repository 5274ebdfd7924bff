#!/usr/bin/env bash
# mesh_at_size.sh - the mesh at size (issue 12): N super nodes on loopback,
# each started with one --peer to a random earlier node, discovery and
# degree at their defaults, a leaf on each sharing one unique file. Prints
# the time until the mesh is one component with every node within
# --degree..2x--degree links (from the first node's start and from the
# last's), links per node (min/median/max), the hop distances from the last
# node, the churn in the CHURN_S (60) seconds after that (links shed,
# trimmed, evicted and made; sheds per node per minute), and recall at
# TTL 4 (the default) from a leaf on the last node, then the same after the
# node most others joined through is killed.
#
#   CANOPY_BIN=$PWD/build bash tests/bench/mesh_at_size.sh [N ...]   (default: 100)
CANOPY_PORT_BASE=${CANOPY_PORT_BASE:-$((20000 + (RANDOM % 120) * 100))}
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/mesh_lib.sh"
ulimit -n 20000 2>/dev/null || true
export KEEPALIVE=2000
D=4

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
distances() { # distances LIVE_NODE_NAME: "hops:count ..." from that node
  python3 - "$T/graph.jsonl" "$1" <<'EOF'
import json, sys
from collections import Counter
nodes = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
adj = {x["id"]: set() for x in nodes}
for x in nodes:
    for y in x["nb"]:
        if y in adj:
            adj[x["id"]].add(y)
            adj[y].add(x["id"])
src = [x["id"] for x in nodes if x["n"] == sys.argv[2]][0]
dist, q = {src: 0}, [src]
for u in q:
    for v in adj[u]:
        if v not in dist:
            dist[v] = dist[u] + 1
            q.append(v)
print(" ".join(f"{k}:{v}" for k, v in sorted(Counter(dist.values()).items())))
EOF
}

for N in "${@:-100}"; do
  echo "=== $N super nodes"
  t0=$(date +%s%N)
  mesh_start "$N"
  echo "started in $(ms "$t0") ms"
  if wait_for 180 mesh_ok "$N" "$D" $((2 * D)) ""; then
    echo "one component within $D..$((2 * D)) links after $(ms "$t0") ms from the first start, $(ms "$MESH_LAST_START") ms from the last"
  else
    echo "NOT one component within bounds after $(ms "$t0") ms"
  fi
  tc=$(date +%s%N)
  echo "graph: $(cat "$T/graph.txt")"
  read -r shed0 trim0 evict0 made0 < <(mesh_counts)
  mesh_edges "$T/edges0"
  echo "hops from s$N: $(distances "s$N")"
  for k in 1 2 3; do
    echo "recall at TTL 4 from l$N (+$(ms "$t0") ms): $(mesh_recall "l$N") of $N"
    sleep 5
  done
  # Churn once the mesh is whole: links closed by their own node's rules
  # (shed, trimmed, evicted) and links made, over CHURN_S seconds.
  CHURN_S=${CHURN_S:-60}
  sleep $(( CHURN_S - $(ms "$tc") / 1000 > 0 ? CHURN_S - $(ms "$tc") / 1000 : 0 ))
  MESH_LO=0 MESH_HI=999 mesh_graph "$N" >/dev/null
  el=$(ms "$tc")
  read -r shed1 trim1 evict1 made1 < <(mesh_counts)
  mesh_edges "$T/edges1"
  echo "in the $el ms after one component: shed $((shed1 - shed0)) (trimmed $((trim1 - trim0)), evicted $((evict1 - evict0))), links made $((made1 - made0)); links gone $(comm -23 "$T/edges0" "$T/edges1" | wc -l), new $(comm -13 "$T/edges0" "$T/edges1" | wc -l) of $(wc -l <"$T/edges0")"
  echo "sheds per node per minute after convergence: $(python3 -c "print(f'{($shed1 - $shed0) / $N / ($el / 60000):.3f}')")"
  echo "recall at TTL 4 from l$N (+$(ms "$t0") ms): $(mesh_recall "l$N") of $N"
  echo "graph after: $(cat "$T/graph.txt")"
  echo "refusals sent $(mesh_sum "$N" link_refusals_sent), links shed $(mesh_sum "$N" links_shed), queries re-forwarded $(mesh_sum "$N" queries_reforwarded)"
  # MESH_LOGS=DIR keeps the super nodes' logs up to here (close reasons).
  [ -z "${MESH_LOGS:-}" ] || { mkdir -p "$MESH_LOGS/$N" && cp "$T"/s*.log "$MESH_LOGS/$N/"; }
  dir=$(mesh_direction_node "$N")
  t1=$(date +%s%N)
  kill "$(eval echo "\$PID_s$dir")"
  echo "killed s$dir (the --peer of $(mesh_joined_through "$N" "$dir") nodes)"
  if wait_for 60 mesh_ok "$N" "$D" $((2 * D)) "$dir"; then
    echo "one component within bounds again after $(ms "$t1") ms"
  else
    echo "NOT one component within bounds after $(ms "$t1") ms"
  fi
  echo "graph: $(cat "$T/graph.txt")"
  s=l$N
  [ "$dir" -ne "$N" ] || s=l1
  echo "recall at TTL 4 from $s: $(mesh_recall "$s") of $((N - 1))"
  # The next size on fresh processes.
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
  rm -rf "${T:?}"/*
  CANOPY_PORT_BASE=$((CANOPY_PORT_BASE + 400))
  BASE=$CANOPY_PORT_BASE
done
