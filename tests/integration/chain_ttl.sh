#!/usr/bin/env bash
# A 4-super-node chain S1-S2-S3-S4 with leaves at both ends: the TTL rule.
# A leaf on S1 finds a file shared on S4 with --ttl 3 and not with --ttl 2.
. "$(dirname "$0")/lib.sh"

start_sn s1 1 --no-discovery
start_sn s2 2 --no-discovery --peer "127.0.0.1:$(port 1)"
start_sn s3 3 --no-discovery --peer "127.0.0.1:$(port 2)"
start_sn s4 4 --no-discovery --peer "127.0.0.1:$(port 3)"
wait_for 10 links_at_least s2 2 || fail "s2 not linked both ways"
wait_for 10 links_at_least s3 2 || fail "s3 not linked both ways"

mkdir -p "$T/l1-share" "$T/l4-share/deep/er"
echo "left side" >"$T/l1-share/Left Only.txt"
head -c 300000 /dev/urandom >"$T/l4-share/deep/er/Zebra Crossing - Live (1969).flac"
start_leaf l1 1
start_leaf l4 4
L4=$(leaf_id l4)

out=$(search l1 --ttl 3 zebra crossing)
[ "$(echo "$out" | grep -c content_id)" -eq 1 ] || fail "ttl 3: expected 1 hit, got: $out"
echo "$out" | jq -e --arg p "$L4" 'select(.peer == $p and .size == 300000)' >/dev/null \
  || fail "ttl 3: hit does not name l4 as the sharing peer: $out"
echo "$out" | jq -e '.name == "deep/er/Zebra Crossing - Live (1969).flac"' >/dev/null || fail "name: $out"
note "ttl 3 from s1 reaches s4: $(echo "$out" | jq -c '{name,size}')"

[ "$(hits l1 --ttl 2 zebra)" -eq 0 ] || fail "ttl 2 must not reach s4"
note "ttl 2 from s1 stops at s3"

# Case-insensitive, all terms must match, hits come back the other way too.
[ "$(hits l4 --ttl 3 LEFT only)" -eq 1 ] || fail "l4 should find l1's file with ttl 3"
[ "$(hits l4 --ttl 3 left nothere)" -eq 0 ] || fail "a term that matches nothing must give no hit"
[ "$(hits l4 --ttl 2 left)" -eq 0 ] || fail "ttl 2 from s4 must not reach s1"

# Content-id search finds the same file.
cid=$(search l1 --ttl 3 zebra | jq -r .content_id)
[ "$(hits l1 --ttl 3 --content-id "$cid")" -eq 1 ] || fail "content id search"

# Each super node on the path handled each query once.
for s in s1 s2 s3 s4; do
  [ "$(snstat $s queries_duplicate)" -eq 0 ] || fail "$s saw duplicates on a chain"
done
echo "chain_ttl: ok"
