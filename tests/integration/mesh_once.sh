#!/usr/bin/env bash
# Five super nodes with discovery on: each joins through S1 alone, learns the
# others and links beyond the star; then one search floods the whole mesh and
# every super node handles it exactly once (the counters say so).
. "$(dirname "$0")/lib.sh"

start_sn s1 1 --degree 3
for i in 2 3 4 5; do start_sn "s$i" "$i" --degree 3 --peer "127.0.0.1:$(port 1)"; done

# Discovery: nodes that only knew S1 link to each other.
for i in 2 3 4 5; do
  wait_for 20 links_at_least "s$i" 2 || fail "s$i learned no neighbour beyond s1 ($(snstat s$i links) links)"
done
total=0
for i in 1 2 3 4 5; do total=$((total + $(snstat "s$i" links))); done
note "links per node: $(for i in 1 2 3 4 5; do printf 's%s=%s ' $i "$(snstat s$i links)"; done)"
[ $total -gt 8 ] || fail "mesh is only a star ($total link ends)"

mkdir -p "$T/la-share" "$T/lb-share"
echo a >"$T/la-share/asker.txt"
echo b >"$T/lb-share/Needle in the Haystack.ogg"
start_leaf la 1
start_leaf lb 5

declare -A before
for i in 1 2 3 4 5; do before[$i]=$(snstat "s$i" queries_handled); done
out=$(search la --ttl 7 needle haystack)
[ "$(echo "$out" | grep -c content_id)" -eq 1 ] || fail "expected exactly one hit, got: $out"
sleep 0.5 # let the flood's last duplicates arrive before reading counters
dups=0
for i in 1 2 3 4 5; do
  handled=$(( $(snstat "s$i" queries_handled) - ${before[$i]} ))
  [ "$handled" -eq 1 ] || fail "s$i handled the query $handled times"
  dups=$((dups + $(snstat "s$i" queries_duplicate)))
done
note "each of 5 super nodes handled the query once; $dups duplicate copies dropped"
[ $dups -gt 0 ] || fail "a mesh with cycles must see duplicates (suppression untested)"
echo "mesh_once: ok"
